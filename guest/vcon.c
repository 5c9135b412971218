/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest: a virtio 1.x PCI driver for virtio-console, in ring 3,
 * built like the virtio-rnd driver (vrng.c; see there for why ring 3 and
 * polling).  Single port, no multiport: only transmitq (queue 1) is set up;
 * receiveq 0 stays disabled.  Each round's bytes (tg_con_stream) leave in
 * TG_CON_REQS requests of two device-readable buffers, the last one through
 * an indirect table.
 */
#include "abi.h"
#include "vcon.h"
#include "work.h"

#define VIRTIO_VENDOR   0x1af4
#define VIRTIO_CON_ID   0x1043          /* 0x1040 + device ID 3 */
#define QN              8
#define TXQ             1

#define D_NEXT          1
#define D_WRITE         2
#define D_INDIRECT      4

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

static struct desc ring_desc[QN] __attribute__((aligned(16)));
static struct desc itable[2] __attribute__((aligned(16)));
static struct {
	uint16_t flags, idx, ring[QN], used_event;
} avail __attribute__((aligned(4)));
static struct {
	uint16_t flags, idx;
	struct { uint32_t id, len; } ring[QN];
	uint16_t avail_event;
} used __attribute__((aligned(4)));
static char stream[TG_CON_BYTES];

static volatile uint8_t *common;
static volatile uint16_t *notify;

static inline long sys(long n, long a, long b, long c)
{
	long r;
	asm volatile("ud2" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "memory");
	return r;
}

static uint32_t cfg(uint32_t dev, uint32_t reg)
{
	return (uint32_t)sys(TG_SYS_PCICFG, dev << 11 | reg, 0, 0);
}

static void cfg_write(uint32_t dev, uint32_t reg, uint32_t v)
{
	sys(TG_SYS_PCICFG, dev << 11 | reg, v, 1);
}

/* common configuration registers (virtio 1.2, 4.1.4.3) */
static inline void w8(unsigned int off, uint8_t v) { *(volatile uint8_t *)(common + off) = v; }
static inline void w16(unsigned int off, uint16_t v) { *(volatile uint16_t *)(common + off) = v; }
static inline void w32(unsigned int off, uint32_t v) { *(volatile uint32_t *)(common + off) = v; }
static inline uint8_t r8(unsigned int off) { return *(volatile uint8_t *)(common + off); }
static inline uint16_t r16(unsigned int off) { return *(volatile uint16_t *)(common + off); }
static inline uint32_t r32(unsigned int off) { return *(volatile uint32_t *)(common + off); }

static void w64(unsigned int off, const void *p)
{
	uint64_t v = (uint64_t)p;
	w32(off, (uint32_t)v);
	w32(off + 4, (uint32_t)(v >> 32));
}

/* The address of BAR n (memory, 32- or 64-bit), or 0 if it is none. */
static uint64_t bar_addr(uint32_t dev, uint32_t n)
{
	uint32_t lo = cfg(dev, 0x10 + 4 * n);
	if (n > 5 || (lo & 1))
		return 0;
	if ((lo & 6) == 4)
		return n < 5 ? (lo & ~0xfull) | (uint64_t)cfg(dev, 0x14 + 4 * n) << 32 : 0;
	return lo & ~0xfull;
}

const char *tg_vcon_init(void)
{
	uint32_t dev, mult = 0, guard = 0;
	uint8_t *notify_base = 0;

	for (dev = 0; dev < 32; dev++)
		if (cfg(dev, 0) == (VIRTIO_CON_ID << 16 | VIRTIO_VENDOR))
			break;
	if (dev == 32)
		return "console: no virtio-console PCI device";
	cfg_write(dev, 0x04, (cfg(dev, 0x04) & 0xffff) | 0x6);	/* memory, bus master */
	if (!(cfg(dev, 0x04) & (0x10 << 16)))
		return "console: no capability list";
	for (uint32_t p = cfg(dev, 0x34) & 0xfc; p; p = (cfg(dev, p) >> 8) & 0xfc) {
		uint32_t h = cfg(dev, p), off = cfg(dev, p + 8);
		uint64_t base;
		if (++guard > 48)
			return "console: capability list loops";
		if ((h & 0xff) != 0x09)
			continue;               /* not a virtio structure */
		base = bar_addr(dev, cfg(dev, p + 4) & 0xff);
		/* the page tables map 0..4 GiB identity (and RAM above) */
		if (!base || base + off >= (1ull << 32))
			continue;
		if (h >> 24 == 1)
			common = (volatile uint8_t *)(base + off);
		else if (h >> 24 == 2) {
			notify_base = (uint8_t *)(base + off);
			mult = cfg(dev, p + 16);
		}
	}
	if (!common || !notify_base)
		return "console: common or notify capability missing";

	/* initialisation, virtio 1.2 section 3.1.1 */
	w8(0x14, 0);
	if (r8(0x14))
		return "console: device did not reset";
	w8(0x14, 1);
	w8(0x14, 3);
	w32(0x00, 1);
	if (!(r32(0x04) & 1))
		return "console: device does not offer VIRTIO_F_VERSION_1";
	w32(0x00, 0);
	if (!(r32(0x04) & (1u << 28)))
		return "console: device does not offer VIRTIO_F_INDIRECT_DESC";
	w32(0x08, 0);
	w32(0x0c, 1u << 28);
	w32(0x08, 1);
	w32(0x0c, 1);
	w8(0x14, 3 | 8);
	if (!(r8(0x14) & 8))
		return "console: FEATURES_OK not accepted";
	w16(0x16, TXQ);
	if (r16(0x18) < QN)
		return "console: transmitq too small";
	w16(0x18, QN);
	w64(0x20, ring_desc);
	w64(0x28, &avail);
	w64(0x30, &used);
	avail.flags = 1;                        /* no interrupts: we poll */
	notify = (volatile uint16_t *)(notify_base + (uint64_t)r16(0x1e) * mult);
	w16(0x1c, 1);
	if (r16(0x1c) != 1)
		return "console: transmitq not enabled";
	w8(0x14, 3 | 8 | 4);
	return 0;
}

const char *tg_vcon_round(uint64_t seed, uint64_t round)
{
	uint16_t start = avail.idx, want = (uint16_t)(start + TG_CON_REQS);
	uint32_t seen = 0;

	tg_con_stream(stream, seed, round);
	/* requests 0..n-2: a chain of two; the last: an indirect table of two */
	for (unsigned int i = 0; i < TG_CON_REQS; i++) {
		struct desc *d = &ring_desc[2 * i];
		char *b0 = stream + 2 * i * TG_CON_BUF, *b1 = b0 + TG_CON_BUF;
		if (i < TG_CON_REQS - 1) {
			d[0] = (struct desc){ (uint64_t)b0, TG_CON_BUF, D_NEXT, (uint16_t)(2 * i + 1) };
			d[1] = (struct desc){ (uint64_t)b1, TG_CON_BUF, 0, 0 };
		} else {
			itable[0] = (struct desc){ (uint64_t)b0, TG_CON_BUF, D_NEXT, 1 };
			itable[1] = (struct desc){ (uint64_t)b1, TG_CON_BUF, 0, 0 };
			d[0] = (struct desc){ (uint64_t)itable, sizeof(itable), D_INDIRECT, 0 };
		}
		avail.ring[(uint16_t)(start + i) % QN] = (uint16_t)(2 * i);
	}
	__atomic_store_n(&avail.idx, want, __ATOMIC_RELEASE);
	*notify = TXQ;
	for (uint64_t spins = 0; __atomic_load_n(&used.idx, __ATOMIC_ACQUIRE) != want; spins++) {
		if (spins > (1u << 26))
			return (r8(0x14) & 0x40) ? "console: device needs reset" : "console: requests not completed";
		asm volatile("pause");
	}
	for (uint16_t u = start; u != want; u++) {
		uint32_t id = used.ring[u % QN].id;
		if (id >= 2 * TG_CON_REQS || (id & 1) || (seen & (1u << id)))
			return "console: bad id in the used ring";
		seen |= 1u << id;
	}
	return 0;
}
