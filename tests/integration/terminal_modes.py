"""Terminal handling: raw mode while the guest runs, the original mode back
on every way out (guest exit, SIGTERM, Ctrl-A x).  Prints PASS/FAIL lines.
Every wait is bounded, times KHYVE_TIMEOUT_SCALE (tests/lib.sh)."""
import os, pty, signal, subprocess, sys, termios, threading, time

khyve, fix = sys.argv[1], sys.argv[2]
SCALE = int(os.environ.get("KHYVE_TIMEOUT_SCALE", "1"))


def drain(fd, buf):
    try:
        while True:
            d = os.read(fd, 4096)
            if not d:
                return
            buf.append(d)
    except OSError:
        return


def case(name, kernel, action, want_rc):
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    out = []
    t = threading.Thread(target=drain, args=(master, out), daemon=True)
    t.start()
    p = subprocess.Popen([khyve, "--debug-exit", "-k", kernel, "tty"],
                         stdin=slave, stdout=slave, stderr=slave)
    raw_seen = False
    deadline = time.time() + 5 * SCALE
    while time.time() < deadline and p.poll() is None:
        if not termios.tcgetattr(slave)[3] & termios.ICANON:
            raw_seen = True
            break
        time.sleep(0.01)
    if action == "sigterm":
        p.send_signal(signal.SIGTERM)
    elif action == "ctrl-a-x":
        os.write(master, b"\x01x")
    try:
        rc = p.wait(timeout=20 * SCALE)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        rc = "none: did not finish within %d s" % (20 * SCALE)
    after = termios.tcgetattr(slave)
    os.close(slave)
    problems = []
    if rc != want_rc:
        problems.append(f"exit status {rc}, want {want_rc}")
    if action and not raw_seen:
        problems.append("terminal never entered raw mode")
    if after != before:
        problems.append("terminal mode not restored")
    text = b"".join(out).decode(errors="replace")
    if "Sanitizer" in text or "runtime error" in text:
        problems.append("sanitizer report: " + text[:300])
    print(f"FAIL {name}: {'; '.join(problems)}" if problems else f"PASS {name}")
    os.close(master)


case("tty-restored-after-guest-exit", f"{fix}/ok.elf", None, 1)
case("tty-restored-after-sigterm", f"{fix}/echo.elf", "sigterm", 0)
case("tty-restored-after-ctrl-a-x", f"{fix}/echo.elf", "ctrl-a-x", 0)
