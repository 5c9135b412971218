#!/usr/bin/env python3
"""Stock Linux benchmark: khyve against QEMU on the same guest.

    python3 bench/linux.py [BUILD]

The guest is the one `make linux-image` builds (BUILD/linux/vmlinuz, Debian's
kernel, and BUILD/linux/initramfs.gz, whose init is scripts/linux-init) on
2 vCPUs and 512 MiB, with a 64 MiB ext4 virtio-blk disk made here with
mke2fs -d whose run.sh prints "tick N" on the console every TICK ms.
Both VMMs get the same kernel command line, and each run a fresh disk.
khyve: -l com1,stdio -s 2,virtio-blk,IMG.  QEMU: -enable-kvm -cpu host -M q35
-nodefaults -display none -no-reboot -serial stdio -kernel -initrd -append,
virtio-blk-pci on a raw -drive.  The console is the VMM's standard output,
read here line by line, each line stamped with CLOCK_MONOTONIC (the clock
khyve's -vv start-up line uses) as it arrives.

start       exec of the VMM -> the line "linux-init: ready" (the kernel is up
            and the virtio/ext4 modules are loaded).  For khyve, its own
            share (exec -> first KVM_RUN, from its -vv 'startup:' line) is
            given too.  Goal: khyve/QEMU <= 0.5.
pause       how long the guest is stopped for a save.  khyve: the pause_ms
            khyve itself reports in the reply to the control socket's
            `checkpoint` (vCPUs stopped while the state is collected and a
            copy-on-write writer forked) and `suspend` (guest memory written
            with the vCPUs stopped, then khyve exits with status 5).  QEMU:
            `stop`, then `migrate` to "exec:cat > FILE" through QMP with
            max-bandwidth unlimited (as libvirt's save does), timed from the
            stop to query-migrate's 'completed': the guest is stopped all
            along.  (QEMU's own 'downtime' counts only the last iteration.)
restore     exec of `khyve -r SUSPEND` / of QEMU with -incoming "exec:cat
            FILE" (then 'cont' once the stream is in, polled with
            query-status every 2 ms) -> the first complete new "tick" line
            from the restored guest.  The guest's clock does not run while
            it is saved, in either VMM, so the figure includes what was left
            of the guest's sleep when it was stopped: up to one tick, on
            average half (5 ms at TICK 10 ms), for both alike.  For khyve,
            exec -> first KVM_RUN is given too, for QEMU exec -> 'running'.
            Goal: khyve/QEMU <= 0.05.

Each run boots khyve and QEMU one after the other (the order swapped every
run, so that noise hits both), medians over RUNS; ratios are khyve/QEMU from
the same invocation.  Without qemu-system-x86_64, or after a QEMU run
failed, khyve alone is measured and the output says so.

Where KVM cannot run a stock Linux (scripts/kvm-usable --linux: not
kvm_intel/kvm_amd, e.g. KVM PVM), the benchmark runs itself in the test
machine (scripts/testvm: QEMU TCG emulating AMD-V, where everything is 5-20x
slower than on hardware; the ratios are what matter there).

Prints a table, the method with the date and load average, then one JSON
line with every run's figures.  Environment: BENCH_LINUX_RUNS (default 5),
BENCH_LINUX_TICK_MS (10), BENCH_LINUX_APPEND (kernel command line, default
"console=ttyS0 quiet"), BENCH_LINUX_QEMU_MACHINE (q35), BENCH_LINUX_QEMU_CPU
(host), BENCH_DIR (where the disks and snapshots go, default /var/tmp);
KHYVE_TIMEOUT_SCALE multiplies every time limit (the test machine sets 10).
In the test machine a run takes about a minute (two Linux boots of 15-25 s,
two saves, two restores), so the default 5 runs take 5-8 minutes.
"""
import json, os, re, shlex, shutil, signal, socket, statistics, subprocess, sys, tempfile, threading, time

ARGS = [a for a in sys.argv[1:] if not a.startswith("-")]
BUILD = ARGS[0] if ARGS else "build"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = int(os.environ.get("BENCH_LINUX_RUNS", "5"))
TICK_MS = int(os.environ.get("BENCH_LINUX_TICK_MS", "10"))
APPEND = os.environ.get("BENCH_LINUX_APPEND", "console=ttyS0 quiet")
QEMU_MACHINE = os.environ.get("BENCH_LINUX_QEMU_MACHINE", "q35")
QEMU_CPU = os.environ.get("BENCH_LINUX_QEMU_CPU", "host")
SCALE = max(1, int(os.environ.get("KHYVE_TIMEOUT_SCALE", "1") or "1"))
KHYVE = f"{BUILD}/khyve"
VMLINUZ, INITRD = f"{BUILD}/linux/vmlinuz", f"{BUILD}/linux/initramfs.gz"
QEMU = "qemu-system-x86_64"
NCPU, MEM_MIB = 2, 512
SETTLE_TICKS = 50       # ticks the guest prints before the first save
READY_RE = re.compile(r"linux-init: ready")
TICK_RE = re.compile(r"^tick (\d+)$")
# time limits in seconds on this host, times KHYVE_TIMEOUT_SCALE
BOOT_S, SAVE_S, RESTORE_S, EXIT_S = 30, 30, 30, 10

DIR = RUNDIR = None     # made by bench()
LIVE = set()            # VMs running, stopped in bench()'s finally


class BenchError(Exception):
    pass


def now_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def ms(ns):
    return ns / 1e6


def tmo(secs):
    return secs * SCALE


def poll(pred, timeout, step, what):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise BenchError(f"no {what} within {timeout:.0f} s")
        time.sleep(step)


def remove(*paths):
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


class Console:
    """A VMM's serial console (its stdout), read line by line on a thread of
    its own, each line stamped with CLOCK_MONOTONIC when it arrived."""

    def __init__(self, stream):
        self.lines = []         # (t_ns, text)
        self.eof = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream):
        try:
            for raw in iter(stream.readline, b""):
                t = now_ns()
                with self.cond:
                    self.lines.append((t, raw.decode(errors="replace").rstrip("\r\n")))
                    self.cond.notify_all()
        except (OSError, ValueError):
            pass
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def count(self):
        with self.cond:
            return len(self.lines)

    def wait(self, rx, timeout, what, vm, start=0, cond=None):
        """The first line from index start on matching rx (and cond(match)):
        (index, t_ns, match).  BenchError at the timeout or the end of output."""
        end = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i][1])
                    if m and (cond is None or cond(m)):
                        return i, self.lines[i][0], m
                    i += 1
                if self.eof:
                    raise BenchError(f"{vm.label}: output ended before {what}: {vm.describe()}")
                left = end - time.monotonic()
                if left <= 0:
                    raise BenchError(f"{vm.label}: no {what} within {timeout:.0f} s: {vm.describe()}")
                self.cond.wait(left)

    def last_tick(self):
        with self.cond:
            for _, text in reversed(self.lines):
                m = TICK_RE.search(text)
                if m:
                    return int(m.group(1))
        return None


class VM:
    """A VMM process: console on its stdout (Console), stderr in a file."""

    def __init__(self, label, argv, tag):
        self.label = label
        self.err_path = os.path.join(DIR, f"{tag}.err")
        self.errf = open(self.err_path, "wb")
        self.t_exec = now_ns()
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.errf)
        LIVE.add(self)
        self.con = Console(self.p.stdout)

    def stderr_text(self):
        try:
            with open(self.err_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def describe(self):
        rc = self.p.poll()
        state = "running" if rc is None else f"exit status {rc}"
        with self.con.cond:
            tail = [t for _, t in self.con.lines[-3:]]
        err = " ".join(l for l in self.stderr_text().splitlines() if "unclaimed" not in l)
        return f"{state}; console {tail}; stderr: {err[-300:]}"

    def first_kvm_run_ms(self):
        """khyve -vv: exec -> the first KVM_RUN, or None."""
        m = re.search(r"first KVM_RUN at (\d+) ns", self.stderr_text())
        return ms(int(m.group(1)) - self.t_exec) if m else None

    def wait_exit(self, timeout):
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{self.label}: did not exit within {timeout:.0f} s: {self.describe()}")

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(tmo(EXIT_S))
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.con.thread.join(5)
        self.p.stdout.close()
        self.errf.close()
        LIVE.discard(self)


def make_disk(tag):
    """A 64 MiB ext4 image whose run.sh prints a tick line every TICK_MS."""
    d = os.path.join(DIR, "disk.d")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    with open(os.path.join(d, "run.sh"), "w") as f:
        f.write("# bench/linux.py: a counter on the console until the VM is stopped\n"
                f"i=0\nwhile :; do\n\techo \"tick $i\"\n\ti=$((i + 1))\n\tusleep {TICK_MS * 1000}\ndone\n")
    img = os.path.join(DIR, f"{tag}.img")
    mke2fs = shutil.which("mke2fs") or "/sbin/mke2fs"
    r = subprocess.run([mke2fs, "-q", "-F", "-t", "ext4", "-d", d, img, "64M"], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=tmo(60))
    if r.returncode:
        raise BenchError(f"mke2fs failed: {r.stderr.strip()[:300]}")
    return img


# ---- khyve ------------------------------------------------------------------

def ctl(sock_path, cmd, file, timeout):
    """A checkpoint or suspend through khyve's control socket: its result."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        s.sendall((json.dumps({"id": 1, "cmd": cmd, "args": {"file": file}}) + "\n").encode())
        f = s.makefile("rb")
        while True:
            line = f.readline()
            if not line:
                raise BenchError(f"khyve closed the control connection without answering {cmd}")
            msg = json.loads(line)
            if "ok" in msg:
                break
    except OSError as e:
        raise BenchError(f"{cmd} through {sock_path}: {e}")
    finally:
        s.close()
    if not msg["ok"]:
        raise BenchError(f"{cmd} failed: {msg.get('error')}")
    return msg["result"]


def khyve_run(i):
    r = {}
    img = make_disk(f"k{i}")
    name = f"lb{os.getpid()}-k{i}"
    cp, snap = os.path.join(DIR, f"k{i}.cp"), os.path.join(DIR, f"k{i}.snap")
    vm = VM("khyve", [KHYVE, "-vv", "-c", str(NCPU), "-m", f"{MEM_MIB}M", "-k", VMLINUZ, "-i", INITRD,
                      "-A", APPEND, "-l", "com1,stdio", "-s", f"2,virtio-blk,{img}", "--rundir", RUNDIR, name],
            f"k{i}")
    try:
        _, t, _ = vm.con.wait(READY_RE, tmo(BOOT_S), "'linux-init: ready'", vm)
        r["start_ms"] = ms(t - vm.t_exec)
        r["start_kvm_run_ms"] = vm.first_kvm_run_ms()
        _, _, m = vm.con.wait(TICK_RE, tmo(BOOT_S), f"'tick {SETTLE_TICKS}'", vm,
                              cond=lambda m: int(m.group(1)) >= SETTLE_TICKS)
        sock = os.path.join(RUNDIR, f"{name}.sock")
        res = ctl(sock, "checkpoint", cp, tmo(SAVE_S))
        r["cp_pause_ms"], r["cp_total_ms"], r["cp_data_bytes"] = res["pause_ms"], res["total_ms"], res["data_bytes"]
        remove(cp, cp + ".state")
        # the guest runs on after the checkpoint
        n = int(m.group(1)) + 5
        vm.con.wait(TICK_RE, tmo(SAVE_S), f"'tick {n}' after the checkpoint", vm, cond=lambda m: int(m.group(1)) >= n)
        res = ctl(sock, "suspend", snap, tmo(SAVE_S))
        r["suspend_pause_ms"], r["suspend_data_bytes"] = res["pause_ms"], res["data_bytes"]
        rc = vm.wait_exit(tmo(EXIT_S))
        if rc != 5:
            raise BenchError(f"khyve: exit status {rc} after the suspend, want 5: {vm.describe()}")
        r["last_tick"] = vm.con.last_tick()
    finally:
        vm.stop()
        remove(cp, cp + ".state")
    try:
        rv = VM("khyve -r", [KHYVE, "-vv", "-r", snap, "-l", "com1,stdio", "--rundir", RUNDIR, f"{name}r"], f"k{i}r")
        try:
            _, t, m = rv.con.wait(TICK_RE, tmo(RESTORE_S), "tick line from the restored guest", rv)
            r["restore_ms"] = ms(t - rv.t_exec)
            r["restore_kvm_run_ms"] = rv.first_kvm_run_ms()
            r["first_tick"] = int(m.group(1))
        finally:
            rv.stop()
    finally:
        remove(snap, snap + ".state", img)
    return r


# ---- QEMU -------------------------------------------------------------------

class QMP:
    def __init__(self, path, vm, timeout):
        end = time.monotonic() + timeout
        while True:
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(path)
                break
            except OSError:
                s.close()
            if vm.p.poll() is not None:
                raise BenchError(f"{vm.label}: exited before its QMP socket answered: {vm.describe()}")
            if time.monotonic() > end:
                raise BenchError(f"{vm.label}: no QMP socket within {timeout:.0f} s: {vm.describe()}")
            time.sleep(0.001)
        s.settimeout(timeout)
        self.s, self.vm = s, vm
        self.f = s.makefile("rb")
        self.f.readline()       # the greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        try:
            self.s.sendall((json.dumps(msg) + "\n").encode())
            while True:
                line = self.f.readline()
                if not line:
                    raise BenchError(f"{self.vm.label}: QMP closed during {name}: {self.vm.describe()}")
                m = json.loads(line)
                if "return" in m:
                    return m["return"]
                if "error" in m:
                    raise BenchError(f"{self.vm.label}: QMP {name}: {m['error'].get('desc')}")
        except OSError as e:
            raise BenchError(f"{self.vm.label}: QMP {name}: {e}: {self.vm.describe()}")

    def close(self):
        self.s.close()


def qemu_argv(img, qmp):
    return [QEMU, "-enable-kvm", "-cpu", QEMU_CPU, "-M", QEMU_MACHINE, "-smp", str(NCPU), "-m", str(MEM_MIB),
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-monitor", "none",
            "-qmp", f"unix:{qmp},server=on,wait=off", "-serial", "stdio",
            "-kernel", VMLINUZ, "-initrd", INITRD, "-append", APPEND,
            "-drive", f"file={img},format=raw,if=none,id=vda", "-device", "virtio-blk-pci,drive=vda"]


def qemu_run(i):
    r = {}
    img = make_disk(f"q{i}")
    snap = os.path.join(DIR, f"q{i}.mig")
    qmp1, qmp2 = os.path.join(DIR, f"q{i}.qmp"), os.path.join(DIR, f"q{i}r.qmp")
    try:
        vm = VM("QEMU", qemu_argv(img, qmp1), f"q{i}")
        q = None
        try:
            _, t, _ = vm.con.wait(READY_RE, tmo(BOOT_S), "'linux-init: ready'", vm)
            r["start_ms"] = ms(t - vm.t_exec)
            q = QMP(qmp1, vm, tmo(EXIT_S))
            try:
                q.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 40})
                r["bandwidth"] = "unlimited"
            except BenchError as e:
                r["bandwidth"] = f"default ({e})"
            vm.con.wait(TICK_RE, tmo(BOOT_S), f"'tick {SETTLE_TICKS}'", vm,
                        cond=lambda m: int(m.group(1)) >= SETTLE_TICKS)
            t0 = now_ns()
            q.cmd("stop")
            q.cmd("migrate", uri=f"exec:cat > {shlex.quote(snap)}")
            st = poll(lambda: (lambda s: s if s.get("status") in ("completed", "failed", "cancelled") else None)(
                q.cmd("query-migrate")), tmo(SAVE_S), 0.002, "end of QEMU's migration to a file")
            t1 = now_ns()
            if st["status"] != "completed":
                raise BenchError(f"QEMU: migration {st['status']}: {st.get('error-desc', '')}")
            r["pause_ms"] = ms(t1 - t0)
            r["migrate_total_ms"] = st.get("total-time")
            r["file_bytes"] = os.path.getsize(snap)
            r["last_tick"] = vm.con.last_tick()
        finally:
            if q:
                q.close()
            vm.stop()
        rv = VM("QEMU -incoming", qemu_argv(img, qmp2) + ["-incoming", f"exec:cat {shlex.quote(snap)}"], f"q{i}r")
        q = None
        try:
            q = QMP(qmp2, rv, tmo(RESTORE_S))
            # the source was stopped, so the destination comes up paused
            status = poll(lambda: (lambda s: s if s != "inmigrate" else None)(q.cmd("query-status")["status"]),
                          tmo(RESTORE_S), 0.002, "end of QEMU's incoming migration")
            if status != "running":
                q.cmd("cont")
            r["restore_running_ms"] = ms(now_ns() - rv.t_exec)
            _, t, m = rv.con.wait(TICK_RE, tmo(RESTORE_S), "tick line from the restored guest", rv)
            r["restore_ms"] = ms(t - rv.t_exec)
            r["first_tick"] = int(m.group(1))
        finally:
            if q:
                q.close()
            rv.stop()
    finally:
        remove(snap, img, qmp1, qmp2)
    return r


# ---- the benchmark ----------------------------------------------------------

def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def fmt(v, width=10, prec=1):
    return f"{v:{width}.{prec}f}" if v is not None else f"{'-':>{width}}"


def ratio(a, b):
    return a / b if a is not None and b else None


def rounded(v):
    if isinstance(v, float):
        return round(v, 3)
    if isinstance(v, dict):
        return {k: rounded(x) for k, x in v.items()}
    if isinstance(v, list):
        return [rounded(x) for x in v]
    return v


def bench():
    global DIR, RUNDIR
    t_start = time.time()
    load0 = os.getloadavg()
    have_qemu = shutil.which(QEMU) is not None
    qemu_note = "" if have_qemu else f"{QEMU} not found: khyve alone is measured"
    qver = "?"
    if have_qemu:
        # also brings QEMU's binary and libraries into the page cache
        try:
            out = subprocess.run([QEMU, "-version"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                 timeout=tmo(30)).stdout
            m = re.search(r"version (\S+)", out)
            qver = m.group(1) if m else "?"
        except (OSError, subprocess.TimeoutExpired) as e:
            have_qemu, qemu_note = False, f"{QEMU} -version failed ({e}): khyve alone is measured"
    for f in (KHYVE, VMLINUZ, INITRD):     # into the page cache, for both alike
        with open(f, "rb") as fh:
            while fh.read(1 << 20):
                pass
    try:
        with open(f"{BUILD}/linux/version") as f:
            kver = f.read().split()[-1]
    except (OSError, IndexError):
        kver = "?"
    where = " in the test machine" if os.environ.get("KHYVE_IN_TESTVM") == "1" else ""
    print(f"# Linux {kver}{where}: {NCPU} vCPUs, {MEM_MIB} MiB, virtio-blk, '{APPEND}'; khyve vs QEMU {qver} "
          f"(-M {QEMU_MACHINE} -cpu {QEMU_CPU}); median of {RUNS} runs, the order swapped every run", flush=True)
    if qemu_note:
        print(f"# {qemu_note}", flush=True)

    DIR = tempfile.mkdtemp(prefix="khyve-linuxbench.", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    RUNDIR = os.path.join(DIR, "run")
    K, Q = [], []
    try:
        for i in range(RUNS):
            for which in (("k", "q") if i % 2 == 0 else ("q", "k")):
                if which == "k":
                    K.append(khyve_run(i))
                elif have_qemu:
                    try:
                        Q.append(qemu_run(i))
                    except BenchError as e:
                        have_qemu = False
                        qemu_note = f"QEMU failed in run {i + 1} ({e}); khyve alone from then on"
                        print(f"# {qemu_note}", flush=True)
            k = K[-1]
            line = (f"# run {i + 1}/{RUNS}: khyve start {k['start_ms']:.1f} ms, checkpoint pause "
                    f"{k['cp_pause_ms']:.1f} ms, suspend pause {k['suspend_pause_ms']:.1f} ms, restore "
                    f"{k['restore_ms']:.1f} ms")
            if len(Q) == i + 1:
                q = Q[-1]
                line += (f" | QEMU start {q['start_ms']:.1f} ms, pause {q['pause_ms']:.1f} ms, restore "
                         f"{q['restore_ms']:.1f} ms")
            print(line, flush=True)
    finally:
        for vm in list(LIVE):
            vm.stop()
        shutil.rmtree(DIR, ignore_errors=True)
    report(K, Q, kver, qver, qemu_note, load0, t_start)


def report(K, Q, kver, qver, qemu_note, load0, t_start):
    ks, qs = med(K, "start_ms"), med(Q, "start_ms")
    kcp, ksp, qp = med(K, "cp_pause_ms"), med(K, "suspend_pause_ms"), med(Q, "pause_ms")
    kr, qr = med(K, "restore_ms"), med(Q, "restore_ms")
    rows = [
        ("start: exec -> 'linux-init: ready'", ks, qs, "<= 0.5"),
        ("pause: checkpoint", kcp, qp, ""),
        ("pause: suspend", ksp, qp, ""),
        ("restore: exec -> first new tick", kr, qr, "<= 0.05"),
    ]
    print(f"{'':36} {'khyve ms':>10} {'QEMU ms':>10} {'khyve/QEMU':>11}  goal")
    for label, k, q, goal in rows:
        rt = ratio(k, q)
        verdict = "" if not goal or rt is None else (" met" if rt <= float(goal.split()[1]) else " not met")
        print(f"{label:36} {fmt(k)} {fmt(q)} {fmt(rt, 11, 3)}  {goal}{verdict}")
    data = med(K, "suspend_data_bytes")
    print(f"# khyve: exec -> first KVM_RUN {fmt(med(K, 'start_kvm_run_ms'), 0)} ms at boot, "
          f"{fmt(med(K, 'restore_kvm_run_ms'), 0, 2)} ms at restore; checkpoint {fmt(med(K, 'cp_total_ms'), 0)} ms "
          f"in all; {fmt(data / 2**20 if data else None, 0)} MiB of memory data in the suspend")
    if Q:
        print(f"# QEMU: the pause is stop -> migrate 'completed' (max-bandwidth {Q[0].get('bandwidth')}), "
              f"{fmt(med(Q, 'file_bytes') / 2**20, 0)} MiB file; restore exec -> 'running' "
              f"{fmt(med(Q, 'restore_running_ms'), 0)} ms")
    if qemu_note:
        print(f"# {qemu_note}")
    load1 = os.getloadavg()
    print(f"# method: CLOCK_MONOTONIC, exec of the VMM to console lines stamped as read from its stdout; the guest "
          f"prints 'tick N' every {TICK_MS} ms, so a restore includes up to one tick of its sleep (both VMMs); "
          f"{time.strftime('%Y-%m-%d %H:%M:%S %z')}; load average {load0[0]:.2f} at start, {load1[0]:.2f} at end "
          f"({os.cpu_count()} CPUs); took {time.time() - t_start:.0f} s")
    print(json.dumps(rounded({"kernel": kver, "qemu": qver if Q else None, "append": APPEND, "tick_ms": TICK_MS,
                              "khyve": K, "qemu_runs": Q}), separators=(",", ":")))


def in_testvm(reason):
    """Run this benchmark in the test machine; its output passes through."""
    env = dict(os.environ)
    env.setdefault("KHYVE_TESTVM_TIMEOUT", "1800")
    # scripts/testvm passes on KHYVE_* only: the BENCH_* settings go through env(1)
    settings = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("BENCH_")]
    argv = [os.path.join(REPO, "scripts", "testvm"), "--linux", "env"] + settings + \
        ["python3", os.path.abspath(__file__), BUILD]
    print(f"# {reason}: the benchmark runs in the test machine (scripts/testvm: QEMU TCG emulating AMD-V, so "
          f"absolute numbers are 5-20x slower than on hardware; the ratios are what matter); host load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=env)
    try:
        return p.wait(int(env["KHYVE_TESTVM_TIMEOUT"]) + 300)
    except subprocess.TimeoutExpired:
        print("linux bench: the test machine did not finish; stopped", file=sys.stderr)
        return 124
    finally:
        if p.poll() is None:
            p.terminate()       # scripts/testvm's trap stops its QEMU
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def main():
    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        print(__doc__)
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for f in (KHYVE, VMLINUZ, INITRD):
        if not os.path.isfile(f):
            sys.exit(f"linux bench: {f} missing: run make and make linux-image first")
    if not (shutil.which("mke2fs") or os.path.exists("/sbin/mke2fs")):
        sys.exit("linux bench: mke2fs (e2fsprogs) is needed for the guest's disk")
    try:
        kvm = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "kvm-usable"), "--linux", "-v"],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        ok, why = kvm.returncode == 0, kvm.stderr.strip().replace("kvm-usable: ", "")
    except subprocess.TimeoutExpired:
        ok, why = False, "scripts/kvm-usable did not answer"
    if not ok:
        if os.environ.get("KHYVE_IN_TESTVM") == "1":
            sys.exit(f"linux bench: the test machine's KVM does not run Linux: {why}")
        return in_testvm(why or "KVM here does not run a stock Linux")
    try:
        bench()
    except BenchError as e:
        sys.exit(f"linux bench: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
