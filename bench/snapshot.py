#!/usr/bin/env python3
"""Snapshot benchmark (make bench), khyve and QEMU on the same guest.

For guests of 256 MiB, 1 GiB and 4 GiB running the test guest's `mem`
workload over half of their memory:

save      khyve: a checkpoint through the control socket; its reply gives the
          time the vCPUs were paused and the total.  Measured with the
          default forked copy-on-write writer, then again with
          KHYVE_SAVE_STOP_COPY=1 (memory written with the vCPUs stopped).  Baseline: a plain
          sequential write (4 MiB writes from a buffer as large as the data,
          then fsync) of as many bytes to the same directory, right after, in
          the same run.  Ratio = save throughput / baseline throughput
          (>= 0.9 is the target).
size      allocated bytes of the memory file (st_blocks) / guest memory
          touched (Rss of the guest-RAM mapping at the checkpoint).
restore   exec of `khyve -r` to the first KVM_RUN of the restored guest
          (khyve's -vv startup line, CLOCK_MONOTONIC): median of N runs.
QEMU      stop, then migrate to a file through QMP (exec:cat > FILE), the
          way a QEMU user saves a VM to a file (a live migration of this
          guest never converges: it rewrites its memory faster than it can
          be sent); file size; restore with -incoming "exec:cat FILE" and
          'cont', exec to QMP status 'running'.
"""
import json, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
SIZES = [int(s) for s in os.environ.get("BENCH_SIZES_MIB", "256,1024,4096").split(",")]
RESTORES = int(os.environ.get("BENCH_RESTORES", "11"))
QEMU_RESTORES = int(os.environ.get("BENCH_QEMU_RESTORES", "3"))
KHYVE, CTL, GUEST = f"{BUILD}/khyve", f"{BUILD}/khyvectl", f"{BUILD}/guest/testguest"
DIR = tempfile.mkdtemp(prefix="khyve-bench.", dir=os.environ.get("BENCH_DIR", "/var/tmp"))


def now_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def wait_for(pred, timeout=120.0, step=0.01):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise TimeoutError("timed out")


def out_has(path, text):
    try:
        return text in open(path, errors="replace").read()
    except FileNotFoundError:
        return False


def guest_rss(pid, size):
    cur, rss = 0, 0
    for line in open(f"/proc/{pid}/smaps"):
        m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) ", line)
        if m:
            cur = int(m.group(2), 16) - int(m.group(1), 16)
        elif line.startswith("Rss:") and cur == size:
            rss += int(line.split()[1]) * 1024
    return rss


def allocated(path):
    return os.stat(path).st_blocks * 512


def baseline_write(nbytes):
    """Write nbytes from a buffer as large (so, like guest memory, mostly
    not in the CPU caches) in 4 MiB writes, then fsync."""
    path = os.path.join(DIR, "baseline")
    block = os.urandom(16 << 20)
    buf = memoryview(block * (nbytes // len(block) + 1))
    t0 = now_ns()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    off = 0
    while off < nbytes:
        off += os.write(fd, buf[off:min(nbytes, off + (4 << 20))])
    os.fsync(fd)
    os.close(fd)
    t = now_ns() - t0
    os.unlink(path)
    return t


def ctl_request(sock_path, req):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    s.sendall((json.dumps(req) + "\n").encode())
    f = s.makefile()
    while True:
        msg = json.loads(f.readline())
        if "ok" in msg:
            s.close()
            return msg


def khyve_run(mib, stop_copy=False):
    memmb = mib // 2
    cmd = f"workload=mem rounds=1000000 memmb={memmb} seed=1"
    rundir = os.path.join(DIR, "run")
    out = os.path.join(DIR, f"k{mib}.out")
    env = dict(os.environ)
    if stop_copy:
        env["KHYVE_SAVE_STOP_COPY"] = "1"
    if os.path.exists(out):
        os.unlink(out)
    p = subprocess.Popen([KHYVE, "-c", "1", "-m", f"{mib}M", "-k", GUEST, "-A", cmd, "--rundir", rundir,
                          "-l", f"com1,file:{out}", f"bench{mib}"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wait_for(lambda: out_has(out, "round 1"), 300)
    snap = os.path.join(DIR, f"k{mib}")
    rss = guest_rss(p.pid, mib << 20)
    r = ctl_request(os.path.join(rundir, f"bench{mib}.sock"), {"cmd": "checkpoint", "args": {"file": snap}})
    if not r.get("ok"):
        sys.exit(f"checkpoint failed: {r}")
    res = r["result"]
    alloc = allocated(snap)
    p.terminate()
    p.wait()
    base_ns = baseline_write(res["data_bytes"])
    lat = []
    for _ in range(0 if stop_copy else RESTORES):
        t0 = now_ns()
        q = subprocess.Popen([KHYVE, "-vv", "-r", snap, "--rundir", rundir, "-l", "com1,null", f"r{mib}"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        line = b""
        while True:
            b = q.stderr.readline()
            if not b or b"first KVM_RUN" in b:
                line = b
                break
        t_run = int(re.search(rb"first KVM_RUN at (\d+) ns", line).group(1))
        lat.append((t_run - t0) / 1e6)
        q.terminate()
        q.communicate()
    os.unlink(snap)
    os.unlink(snap + ".state")
    return {
        "data": res["data_bytes"], "total_ms": res["total_ms"], "pause_ms": res["pause_ms"],
        "base_ms": base_ns / 1e6, "alloc": alloc, "rss": rss,
        "restore_ms": statistics.median(lat) if lat else 0.0,
    }


class QMP:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        wait_for(lambda: self._try(path), 60)
        self.f = self.s.makefile()
        self.f.readline()
        self.cmd("qmp_capabilities")

    def _try(self, path):
        try:
            self.s.connect(path)
            return True
        except OSError:
            return False

    def cmd(self, name, **args):
        self.s.sendall((json.dumps({"execute": name, "arguments": args}) + "\n").encode())
        while True:
            m = json.loads(self.f.readline())
            if "return" in m or "error" in m:
                return m


def qemu_argv(mib, qmp, extra):
    return ["qemu-system-x86_64", "-enable-kvm", "-cpu", "host,-arch-capabilities", "-smp", "1",
            "-m", str(mib), "-display", "none", "-nodefaults", "-monitor", "none",
            "-qmp", f"unix:{qmp},server=on,wait=off", "-serial", "null"] + extra


def qemu_run(mib):
    memmb = mib // 2
    cmd = f"workload=mem rounds=1000000 memmb={memmb} seed=1"
    qmp = os.path.join(DIR, "qmp.sock")
    out = os.path.join(DIR, f"q{mib}.out")
    snap = os.path.join(DIR, f"q{mib}.mig")
    argv = qemu_argv(mib, qmp, ["-kernel", GUEST, "-append", cmd])
    argv[argv.index("null")] = f"file:{out}"
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    m = QMP(qmp)
    wait_for(lambda: out_has(out, "round 1"), 600)
    # Stop first: a guest rewriting its memory never lets a live migration
    # converge, and khyve's checkpoint stops the vCPUs too.
    t0 = now_ns()
    m.cmd("stop")
    m.cmd("migrate", uri=f"exec:cat > {snap}")
    st = wait_for(lambda: (lambda r: r if r["return"].get("status") in ("completed", "failed") else None)(
        m.cmd("query-migrate")), 600, 0.005)["return"]
    save_ms = (now_ns() - t0) / 1e6
    p.kill()
    p.wait()
    os.unlink(qmp)
    lat = []
    for _ in range(QEMU_RESTORES):
        t0 = now_ns()
        q = subprocess.Popen(qemu_argv(mib, qmp, ["-incoming", f"exec:cat {snap}"]), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        c = QMP(qmp)
        # the source was stopped, so the destination comes up paused: continue it
        wait_for(lambda: c.cmd("query-status")["return"]["status"] != "inmigrate", 300, 0.001)
        c.cmd("cont")
        wait_for(lambda: c.cmd("query-status")["return"]["status"] == "running", 300, 0.001)
        lat.append((now_ns() - t0) / 1e6)
        q.kill()
        q.wait()
        os.unlink(qmp)
    size = os.stat(snap).st_blocks * 512
    os.unlink(snap)
    return {"status": st.get("status"), "save_ms": save_ms, "downtime_ms": st.get("downtime", 0),
            "size": size, "restore_ms": statistics.median(lat)}


def main():
    have_qemu = shutil.which("qemu-system-x86_64") is not None
    print(f"# snapshot benchmark in {DIR}; khyve restores: median of {RESTORES}, QEMU: {QEMU_RESTORES}; "
          f"load average at start {os.getloadavg()[0]:.2f} (2 cores, shared machine)")
    print("#  RAM  touched |  khyve save: data MiB  total ms  pause ms  baseline ms  ratio | file/touched | restore ms"
          + (" ||  QEMU save ms  downtime ms  file MiB  restore ms | khyve/QEMU save  size  restore" if have_qemu else ""))
    try:
        for mib in SIZES:
            k = khyve_run(mib)
            line = (f"{mib:5d}M {k['rss'] / 2**20:7.0f}M | {k['data'] / 2**20:20.0f} {k['total_ms']:9.1f} "
                    f"{k['pause_ms']:9.1f} {k['base_ms']:12.1f} {k['base_ms'] / k['total_ms']:6.2f} | "
                    f"{k['alloc'] / max(k['rss'], 1):12.3f} | {k['restore_ms']:10.2f}")
            if have_qemu:
                q = qemu_run(mib)
                line += (f" || {q['save_ms']:12.1f} {q['downtime_ms']:12} {q['size'] / 2**20:9.0f} "
                         f"{q['restore_ms']:11.1f} | {k['total_ms'] / q['save_ms']:15.3f} "
                         f"{k['alloc'] / max(q['size'], 1):5.2f} {k['restore_ms'] / q['restore_ms']:8.4f}")
            print(line, flush=True)
            s = khyve_run(mib, stop_copy=True)
            print(f"{'':15}| stop-and-copy (KHYVE_SAVE_STOP_COPY=1): total {s['total_ms']:.1f} ms, "
                  f"pause {s['pause_ms']:.1f} ms, baseline {s['base_ms']:.1f} ms, ratio "
                  f"{s['base_ms'] / s['total_ms']:.2f}", flush=True)
    finally:
        shutil.rmtree(DIR, ignore_errors=True)


if __name__ == "__main__":
    main()
