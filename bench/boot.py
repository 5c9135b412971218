#!/usr/bin/env python3
"""Start-up and memory benchmark (make bench).

Start-up: time from exec of khyve to the guest's first byte on COM1, median
of N runs, split into
  exec -> main()          process loading (dynamic linker, libc)
  main() -> first KVM_RUN khyve's own set-up (VM, memory, irqchip, vCPUs,
                          kernel load), from khyve's -vv 'startup:' line
  first KVM_RUN -> byte   guest time (under PVM, guest ring 0 is emulated)
All timestamps are CLOCK_MONOTONIC, shared by this script and khyve.

Memory: khyve's resident set beyond guest RAM, read from /proc/PID/smaps
while a guest waits for input: total Rss minus the Rss of the guest-RAM
mapping.  Private (not shared with other processes) bytes are given too.

QEMU is measured the same way on the same guest, in the same run, when
installed (fewer runs: its firmware runs in emulated ring 0 here).
"""
import os, re, select, signal, statistics, subprocess, sys, time

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
RUNS = int(os.environ.get("BENCH_RUNS", "21"))
QEMU_RUNS = int(os.environ.get("BENCH_QEMU_RUNS", "5"))
KHYVE = f"{BUILD}/khyve"
GUEST = f"{BUILD}/guest/testguest"
WAIT_KERNEL = f"{BUILD}/tests/fixtures/echo.elf"
CMDLINE = "workload=time rounds=1"


def now_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def first_byte(argv, timeout=60.0):
    """Spawn argv; return (t_exec, t_first_byte, stderr text)."""
    t0 = now_ns()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    r, _, _ = select.select([p.stdout], [], [], timeout)
    t1 = now_ns() if r and p.stdout.read(1) else None
    p.send_signal(signal.SIGTERM)
    try:
        _, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
    return t0, t1, err.decode(errors="replace")


def khyve_startup():
    rows = []
    for _ in range(RUNS):
        t0, t1, err = first_byte([KHYVE, "-vv", "-c", "1", "-m", "256M", "-k", GUEST,
                                  "-A", CMDLINE, "startup-bench"])
        m = re.search(r"startup: main at (\d+) ns, first KVM_RUN at (\d+) ns", err)
        if t1 is None or not m:
            sys.exit(f"khyve run failed: {err[:500]}")
        t_main, t_run = int(m.group(1)), int(m.group(2))
        rows.append(((t_main - t0) / 1e6, (t_run - t_main) / 1e6, (t1 - t_run) / 1e6,
                     (t1 - t0) / 1e6))
    return [statistics.median(c) for c in zip(*rows)]


def qemu_startup():
    out = []
    for _ in range(QEMU_RUNS):
        t0, t1, err = first_byte(["qemu-system-x86_64", "-enable-kvm", "-cpu", "host,-arch-capabilities",
                                  "-smp", "1", "-m", "256", "-kernel", GUEST, "-append", CMDLINE,
                                  "-serial", "stdio", "-display", "none", "-no-reboot",
                                  "-nodefaults", "-monitor", "none"], timeout=120)
        if t1 is None:
            sys.exit(f"qemu run failed: {err[:500]}")
        out.append((t1 - t0) / 1e6)
    return statistics.median(out)


def rss_overhead(argv, guest_bytes):
    """(total Rss, guest-RAM Rss, private bytes outside guest RAM), in KiB."""
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    total = guest = private = 0
    cur_size = 0
    with open(f"/proc/{p.pid}/smaps") as f:
        for line in f:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) ", line)
            if m:
                cur_size = int(m.group(2), 16) - int(m.group(1), 16)
                continue
            k, _, v = line.partition(":")
            if k == "Rss":
                kb = int(v.split()[0])
                total += kb
                if cur_size == guest_bytes:
                    guest += kb
            elif k in ("Private_Clean", "Private_Dirty") and cur_size != guest_bytes:
                private += int(v.split()[0])
    p.kill()
    p.wait()
    return total, guest, private


def main():
    for f in (KHYVE, GUEST, WAIT_KERNEL):
        if not os.path.exists(f):
            sys.exit(f"{f} missing: run make first")
    print(f"# start-up, median of {RUNS} runs, 1 vCPU, 256 MiB, guest '{CMDLINE}'")
    e, s, g, t = khyve_startup()
    print(f"khyve  exec->main {e:7.3f} ms | khyve set-up {s:7.3f} ms | guest to 1st byte {g:8.3f} ms | total {t:8.3f} ms")
    have_qemu = subprocess.call(["sh", "-c", "command -v qemu-system-x86_64"],
                                stdout=subprocess.DEVNULL) == 0
    if have_qemu:
        q = qemu_startup()
        print(f"qemu   exec to 1st byte {q:8.3f} ms (median of {QEMU_RUNS})   khyve/qemu = {t / q:.4f}")
    mem = 256 << 20
    tot, gst, prv = rss_overhead([KHYVE, "-m", "256M", "-k", WAIT_KERNEL, "mem-bench"], mem)
    print(f"# resident memory with a guest waiting for input, 256 MiB guest")
    print(f"khyve  Rss {tot} KiB, guest RAM {gst} KiB, beyond guest RAM {tot - gst} KiB "
          f"({prv} KiB private)")
    if have_qemu:
        qt, qg, qp = rss_overhead(["qemu-system-x86_64", "-enable-kvm", "-cpu", "host,-arch-capabilities",
                                   "-m", "256", "-kernel", WAIT_KERNEL, "-serial", "stdio",
                                   "-display", "none", "-nodefaults", "-monitor", "none"], mem)
        print(f"qemu   Rss {qt} KiB, guest RAM {qg} KiB, beyond guest RAM {qt - qg} KiB ({qp} KiB private)"
              f"   khyve/qemu = {(tot - gst) / max(qt - qg, 1):.3f}")


if __name__ == "__main__":
    main()
