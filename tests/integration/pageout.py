#!/usr/bin/env python3
"""pageout.py PID SIZE: push PID's mapping of exactly SIZE bytes (khyve's guest
RAM) out of memory with process_madvise(MADV_PAGEOUT): anonymous pages go to
swap, clean file pages leave the page cache.  Prints the bytes advised."""
import ctypes, os, sys
pid, size = int(sys.argv[1]), int(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)
SYS_pidfd_open, SYS_process_madvise, MADV_PAGEOUT = 434, 440, 21
class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
lo = None
for line in open(f"/proc/{pid}/maps"):
    a, b = (int(x, 16) for x in line.split()[0].split("-"))
    if b - a == size:
        lo = a
        break
if lo is None:
    sys.exit("no mapping of %d bytes" % size)
pfd = libc.syscall(SYS_pidfd_open, pid, 0)
if pfd < 0:
    sys.exit("pidfd_open: " + os.strerror(ctypes.get_errno()))
done = 0
step = 1 << 20
for off in range(0, size, step):
    iov = iovec(lo + off, step)
    r = libc.syscall(SYS_process_madvise, pfd, ctypes.byref(iov), 1, MADV_PAGEOUT, 0)
    if r < 0:
        sys.exit("process_madvise: " + os.strerror(ctypes.get_errno()))
    done += r
print(done)
