#!/usr/bin/env python3
"""Echo the test guest's net workload frames back to it.

    tap_echo.py [--noise] [--drop N] IFACE [READY_FILE]

Binds an AF_PACKET socket to IFACE (a tap whose other end is the guest's
virtio-net device) for ethertype 0x88b5 and sends every such frame that
arrives from the guest back, unchanged, through the same interface.  Frames
the host itself transmits (our own echoes included, PACKET_OUTGOING) are
not echoed again.  Creates READY_FILE once bound; on SIGTERM/SIGINT prints
"echoed N frames" (N different frames: the guest resends a frame whose echo
is late or lost, and a resent frame is echoed again but counted once) and
"R echoed again, F sends failed" on stderr and exits 0.  A send that fails
(OSError: EMSGSIZE for a frame longer than the MTU, which the hostile
workload makes; ENOBUFS; the interface gone) is counted and skipped, like a
lost frame.

--noise also sends, before each echo, frames the guest must ignore: one of
ethertype 0x88b6 and one of 0x88b5 with a wrong magic; and after every
fifth echo, the previous echo again (a duplicate, sometimes of an earlier
round).  The guest's digest must not change.

--drop N echoes no frame whose number (counting every 0x88b5 frame from
the guest, resent ones too) is a multiple of N: the guest must send it
again.  "D dropped" is printed too.

It is meant to be stopped; if nobody does within 900 s times
KHYVE_TIMEOUT_SCALE (the longest a test script may run), it prints its
counts, says so and exits 1.
"""
import hashlib
import os
import signal
import socket
import sys

LIFETIME = 900 * int(os.environ.get("KHYVE_TIMEOUT_SCALE", "1"))

ETH_P = 0x88B5
PACKET_OUTGOING = 4


def main():
    args = sys.argv[1:]
    noise = False
    drop = 0
    while args and args[0].startswith("--"):
        if args[0] == "--noise":
            noise = True
            args = args[1:]
        elif args[0] == "--drop" and len(args) > 1 and args[1].isdigit() and int(args[1]) > 1:
            drop = int(args[1])
            args = args[2:]
        else:
            args = []
    if len(args) not in (1, 2):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    iface = args[0]
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P))
    sock.bind((iface, ETH_P))
    count = 0           # echoes sent
    seen = set()        # digests of the different frames echoed
    failed = 0
    received = 0        # frames from the guest
    dropped = 0

    def stop(sig, _frame):
        print(f"echoed {len(seen)} frames", file=sys.stderr)
        print(f"{count - len(seen)} echoed again, {failed} sends failed", file=sys.stderr)
        if drop:
            print(f"{dropped} dropped", file=sys.stderr)
        if sig == signal.SIGALRM:
            print(f"tap_echo.py: nobody stopped it within {LIFETIME} s", file=sys.stderr)
            sys.exit(1)
        sys.exit(0)

    def send(frame):
        nonlocal failed
        try:
            sock.send(frame)
            return True
        except OSError:
            failed += 1
            return False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGALRM, stop)
    signal.alarm(LIFETIME)
    if len(args) == 2:
        with open(args[1], "w") as f:
            f.write("ready\n")
    prev = None
    while True:
        data, addr = sock.recvfrom(65536)
        if addr[2] == PACKET_OUTGOING or len(data) < 14:
            continue
        if int.from_bytes(data[12:14], "big") != ETH_P:
            continue
        received += 1
        if drop and received % drop == 0:
            dropped += 1
            continue
        if noise:
            send(data[:12] + b"\x88\xb6" + data[14:])
            send(data[:14] + b"khyveNET" + data[22:])
        if not send(data):
            continue
        count += 1
        seen.add(hashlib.blake2b(data, digest_size=16).digest())
        if noise and count % 5 == 0 and prev is not None:
            send(prev)
        prev = data


if __name__ == "__main__":
    sys.exit(main())
