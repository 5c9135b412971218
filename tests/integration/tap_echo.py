#!/usr/bin/env python3
"""Echo the test guest's net workload frames back to it.

    tap_echo.py [--noise] IFACE [READY_FILE]

Binds an AF_PACKET socket to IFACE (a tap whose other end is the guest's
virtio-net device) for ethertype 0x88b5 and sends every such frame that
arrives from the guest back, unchanged, through the same interface.  Frames
the host itself transmits (our own echoes included, PACKET_OUTGOING) are
not echoed again.  Creates READY_FILE once bound; on SIGTERM/SIGINT prints
"echoed N frames" on stderr and exits 0.

--noise also sends, before each echo, frames the guest must ignore: one of
ethertype 0x88b6 and one of 0x88b5 with a wrong magic; and after every
fifth echo, the previous echo again (a duplicate, sometimes of an earlier
round).  The guest's digest must not change.
"""
import signal
import socket
import sys

ETH_P = 0x88B5
PACKET_OUTGOING = 4


def main():
    args = sys.argv[1:]
    noise = bool(args) and args[0] == "--noise"
    if noise:
        args = args[1:]
    if len(args) not in (1, 2):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    iface = args[0]
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P))
    sock.bind((iface, ETH_P))
    count = 0

    def stop(_sig, _frame):
        print(f"echoed {count} frames", file=sys.stderr)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
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
        if noise:
            sock.send(data[:12] + b"\x88\xb6" + data[14:])
            sock.send(data[:14] + b"khyveNET" + data[22:])
        sock.send(data)
        count += 1
        if noise and count % 5 == 0 and prev is not None:
            sock.send(prev)
        prev = data


if __name__ == "__main__":
    sys.exit(main())
