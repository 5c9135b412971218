#!/usr/bin/env python3
"""Raw control-socket checks for tests/integration/10-control.sh.

Usage: control_client.py SOCKET SCENARIO [ARG...]

Each scenario talks to a running khyve through SOCKET, speaking the protocol
of docs/control-protocol.md by hand (no khyvectl), and exits 0 when khyve
behaved, or prints one line saying what went wrong and exits 1.  Every wait
is bounded, so a hung khyve fails the check instead of the whole run; every
bound and every wait for khyve is multiplied by KHYVE_TIMEOUT_SCALE (a
positive integer, default 1: tests/lib.sh).
"""
import array
import json
import os
import signal
import socket
import sys
import threading
import time

SCALE = int(os.environ.get("KHYVE_TIMEOUT_SCALE", "1"))
TIMEOUT = 10.0 * SCALE


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


class Conn:
    """One client connection with a line reader."""

    def __init__(self, path, timeout=TIMEOUT):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""

    def send(self, data, fds=()):
        if isinstance(data, str):
            data = data.encode()
        if fds:
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
            n = self.s.sendmsg([data], anc)
            data = data[n:]
        if data:
            self.s.sendall(data)

    def request(self, obj, fds=()):
        self.send(json.dumps(obj) + "\n", fds)

    def line(self):
        """The next line as a parsed object; None at EOF."""
        while b"\n" not in self.buf:
            try:
                chunk = self.s.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                check(not self.buf, "EOF after a partial line %r" % self.buf[:200])
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            msg = json.loads(line)
        except ValueError as e:
            raise Fail("khyve sent a line that is not JSON (%s): %r" % (e, line[:200]))
        check(isinstance(msg, dict), "khyve sent a line that is not an object: %r" % line[:200])
        return msg

    def reply(self):
        """The next reply, skipping progress messages."""
        while True:
            msg = self.line()
            check(msg is not None, "connection closed before the reply")
            if "progress" in msg:
                continue
            check("ok" in msg, "message without ok: %r" % msg)
            return msg

    def close(self):
        self.s.close()


def expect_error(msg, part, ident=None):
    check(msg.get("ok") is False, "want an error reply, got %r" % msg)
    check(part in msg.get("error", ""), "error %r lacks %r" % (msg.get("error"), part))
    check("\n" not in msg["error"], "error has a newline: %r" % msg["error"])
    check(msg.get("id") == ident, "reply id %r, want %r" % (msg.get("id"), ident))


def expect_status(msg, ident=None):
    check(msg.get("ok") is True, "status failed: %r" % msg)
    check(msg.get("id") == ident, "reply id %r, want %r" % (msg.get("id"), ident))
    res = msg.get("result", {})
    check(res.get("state") in ("running", "paused"), "bad status result %r" % res)


def good_status(c, ident=99):
    c.request({"id": ident, "cmd": "status"})
    expect_status(c.reply(), ident)


# ---- scenarios -------------------------------------------------------------

def s_bad_json(path):
    c = Conn(path)
    c.send('{"cmd": "status",\n')
    expect_error(c.reply(), "invalid JSON at column")
    c.send('{"cmd": "status"} trailing\n')
    expect_error(c.reply(), "invalid JSON")
    c.send(b'\xff\xfe{}\n')
    expect_error(c.reply(), "invalid JSON")
    c.send('{"cmd": "status", "cmd": "pause"}\n')
    expect_error(c.reply(), "invalid JSON")     # duplicate key
    good_status(c)      # the connection is still served


def s_not_object(path):
    c = Conn(path)
    for data, kind in (("[1, 2]", "an array"), ('"status"', "a string"), ("42", "an integer"),
                       ("null", "null")):
        c.send(data + "\n")
        expect_error(c.reply(), "a request must be a JSON object, not " + kind)
    good_status(c)


def s_bad_requests(path):
    c = Conn(path)
    cases = [
        ({"id": 5}, "missing \"cmd\"", 5),
        ({"id": "x", "cmd": 7}, "\"cmd\" must be a string", "x"),
        ({"cmd": "reboot"}, "unknown command \"reboot\"", None),
        ({"cmd": "status", "verbose": True}, "unknown member \"verbose\"", None),
        ({"cmd": "status", "args": {"verbose": True}}, "unknown argument \"verbose\" for status", None),
        ({"cmd": "status", "args": [1]}, "\"args\" must be an object", None),
        ({"cmd": "checkpoint", "args": {"file": 42}}, "argument \"file\" of checkpoint must be a string", None),
        ({"cmd": "suspend", "args": {"file": "/x", "now": 1}}, "unknown argument \"now\" for suspend", None),
        ({"cmd": "checkpoint", "args": {"file": "/x", "disks": "yes"}},
         "argument \"disks\" of checkpoint must be a boolean, not a string", None),
        ({"cmd": "checkpoint", "args": {"file": "", "disks": False}}, "argument \"file\" is empty", None),
        ({"cmd": "checkpoint"}, "checkpoint needs the argument \"file\"", None),
        ({"cmd": "checkpoint", "args": {"file": ""}}, "argument \"file\" is empty", None),
        ({"id": [1], "cmd": "checkpoint", "args": {"file": "rel"}}, "needs a directory descriptor", [1]),
        ({"cmd": "pause", "args": {"x": 1}}, "unknown argument \"x\" for pause (it takes none)", None),
    ]
    for req, part, ident in cases:
        c.request(req)
        expect_error(c.reply(), part, ident)
    good_status(c)


def s_id_echo(path):
    c = Conn(path)
    ident = {"a": [1, "two", None, 3.5], "b": {"c": True}}
    c.send("\n  \n")        # blank lines are ignored: no reply
    c.request({"id": ident, "cmd": "status"})
    expect_status(c.reply(), ident)
    # pipelined requests: replies in order
    c.send("".join(json.dumps({"id": i, "cmd": "status"}) + "\n" for i in range(1, 6)))
    for i in range(1, 6):
        expect_status(c.reply(), i)
    c.request({"cmd": "status"})
    expect_status(c.reply(), None)


def s_long_line(path):
    c = Conn(path)
    c.send('{"id": 1, "cmd": "status", "pad": "' + "x" * (100 * 1024) + '"}\n')
    expect_error(c.reply(), "request line longer than 65536 bytes")
    good_status(c, 2)   # the connection survives and the next line is served
    # the longest allowed line (65535 bytes and the newline) is parsed
    pad = 65535 - len('{"id":3,"cmd":"status","args":{"') - len('":1}}')
    c.send('{"id":3,"cmd":"status","args":{"' + "y" * pad + '":1}}\n')
    expect_error(c.reply(), "unknown argument", 3)
    # one byte more is too long
    c.send('{"id":4,"cmd":"status","args":{"' + "y" * (pad + 1) + '":1}}\n')
    expect_error(c.reply(), "request line longer than 65536 bytes")
    good_status(c, 5)


def s_eof_partial(path):
    c = Conn(path)
    c.send('{"cmd": "sta')
    c.s.shutdown(socket.SHUT_WR)
    expect_error(c.reply(), "incomplete request")
    check(c.line() is None, "no EOF after the reply")


def s_fds(path):
    """Descriptors: one is used, extra ones and unused ones are closed."""
    d = os.open(os.environ.get("TMPDIR_FD", "/tmp"), os.O_PATH | os.O_DIRECTORY)
    f = os.open("/dev/null", os.O_RDONLY)
    try:
        c = Conn(path)
        c.request({"id": 1, "cmd": "checkpoint", "args": {"file": "x"}}, fds=[d, d])
        expect_error(c.reply(), "at most one file descriptor per request (got 2)", 1)
        c.request({"id": 2, "cmd": "checkpoint", "args": {"file": "x"}}, fds=[f])
        expect_error(c.reply(), "not a directory", 2)
        c.request({"id": 3, "cmd": "status"}, fds=[d])     # unused: closed
        expect_status(c.reply(), 3)
        good_status(c, 4)
    finally:
        os.close(d)
        os.close(f)


def s_fd_loop(path, n):
    """n requests with descriptors passed; the shell counts khyve's fds."""
    d = os.open(os.environ.get("TMPDIR_FD", "/tmp"), os.O_PATH | os.O_DIRECTORY)
    try:
        c = Conn(path)
        for i in range(n):
            if i % 5 == 4:
                c.close()
                c = Conn(path)
            kind = i % 3
            if kind == 0:
                c.request({"id": i, "cmd": "status"}, fds=[d])
                expect_status(c.reply(), i)
            elif kind == 1:
                # bound to fail (no such directory) whether or not saving works
                c.request({"id": i, "cmd": "checkpoint", "args": {"file": "no/such/dir/snap"}}, fds=[d])
                expect_error(c.reply(), "", i)
            else:
                c.request({"id": i, "cmd": "status"}, fds=[d, d, d])
                expect_error(c.reply(), "at most one file descriptor", i)
        # a descriptor on a line that is never finished
        c.send('{"cmd": "stat', fds=[d])
        c.close()
    finally:
        os.close(d)


def s_stall(path):
    """A client with half a line blocks nobody; its line completes later."""
    a = Conn(path)
    a.send('{"id": "a", "cmd": "sta')
    time.sleep(0.2 * SCALE)     # khyve has read the half line
    b = Conn(path, timeout=3 * SCALE)
    t = time.monotonic()
    good_status(b, "b")
    check(time.monotonic() - t < 2 * SCALE,
          "status took %.1f s beside a stalled client (want < %d s)" % (time.monotonic() - t, 2 * SCALE))
    b.close()
    a.send('tus"}\n')
    expect_status(a.reply(), "a")


def s_many(path):
    """20 at once: 16 served, 4 told "too many clients"."""
    conns = [Conn(path) for _ in range(20)]
    for i, c in enumerate(conns[16:]):
        msg = c.line()
        check(msg is not None, "client %d: no refusal, just EOF" % (16 + i))
        expect_error(msg, "too many clients (at most 16 at a time)")
        check(c.line() is None, "client %d: not closed after its refusal" % (16 + i))
    for i, c in enumerate(conns[:16]):
        c.request({"id": i, "cmd": "status"})
    for i, c in enumerate(conns[:16]):
        expect_status(c.reply(), i)
    for c in conns:
        c.close()
    # slots are free again
    good_status(Conn(path))


def s_flood(path):
    """A client that sends and never reads is dropped; others are served meanwhile."""
    errors = []

    def other():
        try:
            for i in range(10):
                c = Conn(path, timeout=3 * SCALE)
                good_status(c, i)
                c.close()
                time.sleep(0.05)
        except Exception as e:      # reported by the main thread
            errors.append("other client: %r" % e)

    f = Conn(path, timeout=15 * SCALE)
    t = threading.Thread(target=other)
    t.start()
    req = (json.dumps({"cmd": "status"}) + "\n").encode() * 2000
    dropped = False
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 15 * SCALE:
            f.s.sendall(req)
    except (BrokenPipeError, ConnectionResetError):
        dropped = True
    except socket.timeout:
        pass
    t.join()
    f.close()
    check(not errors, "; ".join(errors))
    check(dropped, "the flooding client was not dropped within %d s" % (15 * SCALE))


def s_refused(path):
    """Run as another uid: one error line, then EOF."""
    c = Conn(path)
    msg = c.line()
    check(msg is not None, "closed without a refusal")
    expect_error(msg, "permission denied: uid %d is neither the VM owner" % os.getuid())
    try:
        c.request({"cmd": "pause"})
    except (BrokenPipeError, ConnectionResetError):
        pass
    check(c.line() is None, "still connected after the refusal")


def s_silent_server(path, seconds):
    """Not a khyve: a socket that accepts, reads and never answers.
    PATH.ready appears once it listens."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)
    open(path + ".ready", "w").close()
    srv.settimeout(seconds)
    held = []
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            c, _ = srv.accept()
            held.append(c)
    except socket.timeout:
        pass
    srv.close()
    os.unlink(path)


def s_status(path):
    c = Conn(path)
    good_status(c)


def s_snap(path, pid, hold, action, file=None, disks=None):
    """For tests/lib.sh's snap_now: khyve PID was stopped (SIGSTOP) at the
    moment wanted.  Connect (the kernel queues the connection), send ACTION
    (checkpoint FILE [disks], suspend FILE [disks], pause), then SIGCONT
    khyve, which finds the request waiting: the guest runs on for no more
    than it takes khyve to read it.  With HOLD "hold", stop khyve again as
    soon as the reply has come (the guest ran on while it was saved), so
    that what the test does before its next moment costs the guest
    nothing.  Prints the error and exits 1 if the request fails; khyve is
    continued on every path but that success."""
    pid = int(pid)
    try:
        c = Conn(path, timeout=60 * SCALE)
        args = {}
        if file is not None:
            args["file"] = file
        if disks == "disks":
            args["disks"] = True
        c.request({"id": 1, "cmd": action, "args": args} if args else {"id": 1, "cmd": action})
    finally:
        os.kill(pid, signal.SIGCONT)
    msg = c.reply()
    check(msg.get("ok") is True, msg.get("error", "no error message: %r" % msg))
    if hold == "hold":
        os.kill(pid, signal.SIGSTOP)


SCENARIOS = {
    "bad-json": s_bad_json,
    "not-object": s_not_object,
    "bad-requests": s_bad_requests,
    "id-echo": s_id_echo,
    "long-line": s_long_line,
    "eof-partial": s_eof_partial,
    "fds": s_fds,
    "fd-loop": s_fd_loop,
    "stall": s_stall,
    "many": s_many,
    "flood": s_flood,
    "refused": s_refused,
    "status": s_status,
    "silent-server": s_silent_server,
    "snap": s_snap,
}


def main():
    if len(sys.argv) < 3 or sys.argv[2] not in SCENARIOS:
        print("usage: control_client.py SOCKET {%s} [ARG]" % ",".join(SCENARIOS))
        return 2
    fn = SCENARIOS[sys.argv[2]]
    args = sys.argv[3:] if fn is s_snap else [int(a) for a in sys.argv[3:]]
    try:
        fn(sys.argv[1], *args)
    except Fail as e:
        print(e)
        return 1
    except (OSError, socket.timeout) as e:
        print("%s: %r" % (sys.argv[2], e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
