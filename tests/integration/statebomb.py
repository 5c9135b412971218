#!/usr/bin/env python3
"""statebomb.py IN OUT KIND: OUT is the khyve state file IN with a payload
made to cost a reader as much as it can, every checksum valid again.
KIND: maps16m   the clock section holds 16 million empty CBOR maps in a key
                the reader ignores (16 MB)
      maps4m    the same in 4 MiB, the largest payload a reader takes
      deep      the clock section nests 100000 arrays
      big       OUT is 40 MiB, its header valid
      drop=NAME the section NAME is left out
      add-pci   a 'pci' section (config_address 0) is added
      cpuid-all vcpu.0's CPUID leaf 7.0 EBX claims every feature"""
import ctypes, ctypes.util, struct, sys

xxh = ctypes.CDLL(ctypes.util.find_library("xxhash") or "libxxhash.so.0")
xxh.XXH3_64bits.restype = ctypes.c_uint64
xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
h = lambda b: xxh.XXH3_64bits(bytes(b), len(b))

src, dst, kind = sys.argv[1:4]
d = open(src, "rb").read()
head, off, secs = d[:32], 32, []
while off < len(d):
    n = struct.unpack_from("<H", d, off + 4)[0]
    name = d[off + 6:off + 6 + n].decode()
    ver, flags, ln = struct.unpack_from("<IIQ", d, off + 6 + n)
    secs.append([name, ver, flags, d[off + 30 + n:off + 30 + n + ln]])
    off += 30 + n + ln
secs = [s for s in secs if s[0] != "end"]

junk = b"\x64junk"
clock = [s for s in secs if s[0] == "clock"][0]
body = clock[3][1:-1]		# the clock's fields, inside its indefinite map
if kind in ("maps16m", "maps4m"):
    size = 16_000_000 if kind == "maps16m" else (4 << 20)
    fill = size - len(body) - len(junk) - 4
    clock[3] = b"\xbf" + body + junk + b"\x9f" + b"\xa0" * fill + b"\xff\xff"
elif kind == "deep":
    clock[3] = b"\xbf" + body + junk + b"\x81" * 100000 + b"\x00" + b"\xff"
elif kind.startswith("drop="):
    secs = [s for s in secs if s[0] != kind[5:]]
elif kind == "add-pci":
    secs.append(["pci", 1, 1, b"\xbf\x6econfig_address\x1a\0\0\0\0\xff"])
elif kind == "cpuid-all":
    v0 = [s for s in secs if s[0] == "vcpu.0"][0]
    leaf = b"\x68function\x1a\0\0\0\x07\x65index\x1a\0\0\0\0"
    at = v0[3].index(leaf)
    at = v0[3].index(b"\x63ebx\x1a", at) + 5
    v0[3] = v0[3][:at] + b"\xff\xff\xff\xff" + v0[3][at + 4:]
elif kind != "big":
    sys.exit("unknown kind " + kind)

out = bytearray(head)
for name, ver, flags, pl in secs:
    nm = name.encode()
    out += b"SECT" + struct.pack("<H", len(nm)) + nm + struct.pack("<IIQQ", ver, flags, len(pl), h(pl)) + pl
end = b"\xbf\x68sections\x1a" + struct.pack(">I", len(secs)) + b"\x69file_hash\x1b" + struct.pack(">Q", h(out)) + b"\xff"
out += b"SECT" + struct.pack("<H", 3) + b"end" + struct.pack("<IIQQ", 1, 1, len(end), h(end)) + end
if kind == "big":
    out += b"\0" * ((40 << 20) - len(out))
open(dst, "wb").write(out)
