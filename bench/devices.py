#!/usr/bin/env python3
"""Device benchmark: virtio-blk against the host, a checkpoint's pause with
requests in flight, virtio-net transmit.

    python3 bench/devices.py [BUILD]

blk        the test guest's blkbench workload under khyve on a 256 MiB disk
           file (filled with data first), for randread 4 KiB qd32, randwrite
           4 KiB qd32, seqread 128 KiB qd8 and seqwrite 128 KiB qd8.  Timed
           from the guest's "BENCH begin" line to its "BENCH end" line as
           they come out of khyve's COM1 (-l com1,stdio, each line stamped
           with CLOCK_MONOTONIC when read); writes end with one FLUSH.  The
           baseline: bench/blkhost on the same file in the same run (the
           same offsets from the same generator, io_uring, buffered like
           khyve's backend, one fdatasync after writes).  Guest and host
           alternate, REPS times each; medians; ratio = guest / host.  The
           "floor" is the same interval for a single request: mostly the
           time COM1 takes to print the end line (ring-0 port I/O, emulated
           under PVM), included in every guest figure.
pause      a checkpoint (control socket) of a guest keeping 128 random 4 KiB
           writes in flight (blkbench qd128), taken CHECKPOINTS times: its
           pause_ms (the vCPUs stopped; the device drains everything the
           driver made available first); against the same checkpoint of a
           guest running the mem workload on 8 MiB, no device, same run.
net        as root with /dev/net/tun: khyve in a network namespace of its
           own on a tap, the netbench workload sending FRAMES broadcast
           frames of 1514 bytes (ethertype 0x88b6) as fast as the transmitq
           takes them; an AF_PACKET socket on the tap counts what arrives
           (PACKET_STATISTICS: received and dropped by the counter alike);
           frames/s and Mb/s over the BENCH interval, median of NET_REPS.
           Skipped, with a message, without root or tun.

Prints a table, then one JSON line.  Environment: BENCH_DIR (default
/var/tmp), BENCH_DEV_REPS (5), BENCH_DEV_CHECKPOINTS (11), BENCH_DEV_FRAMES
(200000), BENCH_DEV_NET_REPS (3).  Expect noise: the guest's vCPU, khyve's
I/O thread and the host's I/O share the machine's cores.
"""
import json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
REPS = int(os.environ.get("BENCH_DEV_REPS", "5"))
CHECKPOINTS = int(os.environ.get("BENCH_DEV_CHECKPOINTS", "11"))
FRAMES = int(os.environ.get("BENCH_DEV_FRAMES", "200000"))
NET_REPS = int(os.environ.get("BENCH_DEV_NET_REPS", "3"))
KHYVE, GUEST, REF = f"{BUILD}/khyve", f"{BUILD}/guest/testguest", f"{BUILD}/guest/testguest-ref"
BLKHOST = f"{BUILD}/bench/blkhost"
DIR = tempfile.mkdtemp(prefix="khyve-devbench.", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
RUNDIR = os.path.join(DIR, "run")
DISK = os.path.join(DIR, "disk.img")
DISK_MIB = 256
SEED = 12345

# mode, block size, queue depth, requests per run
BLK_CASES = [
    ("randread", 4096, 32, 60000),
    ("randwrite", 4096, 32, 40000),
    ("seqread", 131072, 8, 4096),
    ("seqwrite", 131072, 8, 2048),
]


def now_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def ref_digest(cmd):
    out = subprocess.run([REF, "-c", "1", cmd], capture_output=True, text=True, check=True).stdout
    return out.strip().split("=", 1)[1]


class Guest:
    """khyve running the test guest, COM1 on its stdout, each line stamped."""

    def __init__(self, name, cmd, devices, mem="64M", netns=None):
        self.name, self.cmd = name, cmd
        argv = [KHYVE, "-c", "1", "-m", mem, "-k", GUEST, "-A", cmd, "--rundir", RUNDIR, "--debug-exit",
                "-l", "com1,stdio"] + devices + [name]
        if netns:
            argv = ["ip", "netns", "exec", netns] + argv
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self.lines = []

    def until(self, text, timeout=300.0):
        """Read lines until one contains text: its CLOCK_MONOTONIC stamp (ns)."""
        end = time.time() + timeout
        while time.time() < end:
            b = self.p.stdout.readline()
            t = now_ns()
            if not b:
                break
            line = b.decode(errors="replace").rstrip("\r\n")
            self.lines.append(line)
            if text in line:
                return t
            if "FAIL" in line:
                break
        self.kill()
        err = self.p.stderr.read().decode(errors="replace")
        sys.exit(f"{self.name}: no '{text}' from the guest; last lines: {self.lines[-3:]} {err[:300]}")

    def finish(self):
        """Wait for the end: PASS with the reference digest, status 1."""
        t = self.until("PASS digest=")
        digest = self.lines[-1].split("=", 1)[1]
        rc = self.p.wait()
        err = self.p.stderr.read().decode(errors="replace")
        if rc != 1 or digest != ref_digest(self.cmd):
            sys.exit(f"{self.name}: status {rc}, digest {digest} (reference {ref_digest(self.cmd)}) {err[:300]}")
        return t

    def kill(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


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


def wait_for(pred, timeout=60.0, step=0.01):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise TimeoutError("timed out")


def prepare_disk():
    block = os.urandom(1 << 20)
    with open(DISK, "wb") as f:
        for _ in range(DISK_MIB):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())


def build_blkhost():
    if os.access(BLKHOST, os.X_OK):
        return
    os.makedirs(os.path.dirname(BLKHOST), exist_ok=True)
    subprocess.run(["cc", "-O2", "-o", BLKHOST, "bench/blkhost.c", "-luring"], check=True)


def blk_guest(mode, bs, qd, ops, tag):
    cmd = f"workload=blkbench blkmode={mode} blkbs={bs} blkqd={qd} blkmb={DISK_MIB} blkops={ops} rounds=1 seed={SEED}"
    g = Guest(f"devbench-{tag}", cmd, ["-s", f"5,virtio-blk,{DISK}"])
    t0 = g.until("BENCH begin")
    t1 = g.until("BENCH end")
    done = int(g.lines[-1].split("ops=")[1].split()[0])
    g.finish()
    if done != ops:
        sys.exit(f"blkbench {mode}: {done} of {ops} requests")
    return t1 - t0


def blk_host(mode, bs, qd, ops):
    out = subprocess.run([BLKHOST, DISK, mode, str(bs), str(qd), str(DISK_MIB), str(ops), str(SEED)],
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"blkhost {mode}: {out.stderr.strip()}")
    r = json.loads(out.stdout)
    if r["ops"] != ops:
        sys.exit(f"blkhost {mode}: {r['ops']} of {ops} requests")
    return r["ns"]


def bench_blk():
    prepare_disk()
    build_blkhost()
    rows = []
    for mode, bs, qd, ops in BLK_CASES:
        g_ns, h_ns = [], []
        for _ in range(REPS):
            g_ns.append(blk_guest(mode, bs, qd, ops, mode))
            h_ns.append(blk_host(mode, bs, qd, ops))
        floor = blk_guest(mode, bs, qd, 1, mode + "-1")
        g, h = statistics.median(g_ns), statistics.median(h_ns)
        nbytes = ops * bs
        rows.append({
            "mode": mode, "bs": bs, "qd": qd, "ops": ops,
            "guest_mbs": nbytes / g * 1e3, "guest_iops": ops / g * 1e9,
            "host_mbs": nbytes / h * 1e3, "host_iops": ops / h * 1e9,
            "ratio": h / g, "floor_ms": floor / 1e6,
            "guest_ms": [round(x / 1e6, 2) for x in g_ns], "host_ms": [round(x / 1e6, 2) for x in h_ns],
        })
    return rows


def checkpoints(name, cmd, devices, ready):
    """CHECKPOINTS checkpoints of a running guest: their pause_ms."""
    g = Guest(name, cmd, devices)
    g.until(ready)
    sock = os.path.join(RUNDIR, f"{name}.sock")
    wait_for(lambda: os.path.exists(sock))
    pauses = []
    snap = os.path.join(DIR, "cp")
    for _ in range(CHECKPOINTS):
        time.sleep(0.2)
        r = ctl_request(sock, {"cmd": "checkpoint", "args": {"file": snap}})
        if not r.get("ok"):
            g.kill()
            sys.exit(f"{name}: checkpoint failed: {r}")
        pauses.append(r["result"]["pause_ms"])
        os.unlink(snap)
        os.unlink(snap + ".state")
    if g.p.poll() is not None:
        sys.exit(f"{name}: the guest ended during the checkpoints; make it run longer")
    g.kill()
    return pauses


def bench_pause():
    busy = checkpoints("devbench-cp-io",
                       f"workload=blkbench blkmode=randwrite blkbs=4096 blkqd=128 blkmb={DISK_MIB} "
                       f"blkops=100000000 rounds=1 seed={SEED}",
                       ["-s", f"5,virtio-blk,{DISK}"], "BENCH begin")
    idle = checkpoints("devbench-cp-idle", "workload=mem memmb=8 rounds=1000000 seed=1", [], "round 1")
    return {"inflight": 128, "io_pause_ms": statistics.median(busy), "idle_pause_ms": statistics.median(idle),
            "io_all_ms": busy, "idle_all_ms": idle}


COUNT_PY = r"""
import socket, struct, sys, signal
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b6))
s.bind((sys.argv[1], 0x88b6))
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM, signal.SIGINT])
open(sys.argv[2], "w").close()
signal.sigwait([signal.SIGTERM, signal.SIGINT])
packets, drops = struct.unpack("II", s.getsockopt(263, 6, 8))   # SOL_PACKET, PACKET_STATISTICS
print(packets, drops)
"""


def bench_net():
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun") or not shutil.which("ip"):
        return {"skipped": "needs root, /dev/net/tun and ip(8)"}
    ns = f"khyve-devbench{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode:
        return {"skipped": "ip netns add failed"}
    nsx = ["ip", "netns", "exec", ns]
    try:
        for c in (["ip", "tuntap", "add", "dev", "btap0", "mode", "tap"], ["ip", "link", "set", "btap0", "up"],
                  ["sysctl", "-qw", "net.ipv6.conf.btap0.disable_ipv6=1"]):
            subprocess.run(nsx + c, check=True, capture_output=True)
        runs = []
        for i in range(NET_REPS):
            ready = os.path.join(DIR, f"count{i}.ready")
            counter = subprocess.Popen(nsx + ["python3", "-c", COUNT_PY, "btap0", ready], stdout=subprocess.PIPE,
                                       text=True)
            wait_for(lambda: os.path.exists(ready))
            cmd = f"workload=netbench netframes={FRAMES} netsize=1514 rounds=1"
            g = Guest(f"devbench-net{i}", cmd, ["-s", "6,virtio-net,tap=btap0"], netns=ns)
            t0 = g.until("BENCH begin")
            t1 = g.until("BENCH end")
            g.finish()
            counter.send_signal(signal.SIGTERM)
            packets, drops = map(int, counter.communicate(timeout=30)[0].split())
            secs = (t1 - t0) / 1e9
            runs.append({"secs": secs, "sent_fps": FRAMES / secs, "seen": packets, "counter_drops": drops,
                         "seen_fps": packets / secs, "mbits": packets * 1514 * 8 / secs / 1e6})
        best = sorted(runs, key=lambda r: r["seen_fps"])[len(runs) // 2]
        return {"frames": FRAMES, "size": 1514, "fps": best["seen_fps"], "sent_fps": best["sent_fps"],
                "mbits": best["mbits"], "seen": best["seen"], "runs": runs}
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def main():
    for f in (KHYVE, GUEST, REF):
        if not os.access(f, os.X_OK):
            sys.exit(f"{f} missing: build first (make)")
    os.makedirs(RUNDIR, mode=0o700, exist_ok=True)
    t_start = time.time()
    try:
        blk = bench_blk()
        pause = bench_pause()
        net = bench_net()
    finally:
        shutil.rmtree(DIR, ignore_errors=True)

    print(f"virtio-blk: test guest blkbench under khyve vs bench/blkhost on the host, {DISK_MIB} MiB file, "
          f"buffered, median of {REPS}")
    print(f"{'pattern':>17} {'guest MB/s':>11} {'guest IOPS':>11} {'host MB/s':>10} {'host IOPS':>10} "
          f"{'guest/host':>10} {'floor ms':>9}")
    for r in blk:
        pat = f"{r['mode']} {r['bs'] // 1024}k qd{r['qd']}"
        print(f"{pat:>17} {r['guest_mbs']:11.1f} {r['guest_iops']:11.0f} {r['host_mbs']:10.1f} "
              f"{r['host_iops']:10.0f} {r['ratio']:10.2f} {r['floor_ms']:9.2f}")
    print(f"checkpoint pause: {pause['inflight']} random 4k writes in flight {pause['io_pause_ms']:.2f} ms, "
          f"idle guest {pause['idle_pause_ms']:.2f} ms (median of {CHECKPOINTS})")
    if "skipped" in net:
        print(f"virtio-net: skipped: {net['skipped']}")
    else:
        print(f"virtio-net transmit, {net['size']}-byte frames: {net['fps']:.0f} frames/s seen on the tap "
              f"({net['mbits']:.0f} Mb/s), {net['sent_fps']:.0f} frames/s sent, {net['seen']} of "
              f"{net['frames']} seen (median of {NET_REPS})")
    print(f"(took {time.time() - t_start:.0f} s)")
    print(json.dumps(rounded({"blk": blk, "checkpoint": pause, "net": net}), separators=(",", ":")))


def rounded(v):
    if isinstance(v, float):
        return round(v, 3)
    if isinstance(v, dict):
        return {k: rounded(x) for k, x in v.items()}
    if isinstance(v, list):
        return [rounded(x) for x in v]
    return v


if __name__ == "__main__":
    main()
