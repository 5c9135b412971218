/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest: benchmark workloads, ring 3 on CPU 0, polled like the
 * other drivers (vblk.c, vnet.c).  Each round prints
 *
 *   khyve-testguest: BENCH begin
 *   khyve-testguest: BENCH end ops=N bytes=B
 *
 * right before the first request and right after the last completion, and
 * nothing in between (COM1 output is slow under PVM): the host times the
 * interval between the two lines (bench/devices.py).
 *
 * blkbench: blkops requests of blkbs bytes at block-aligned offsets in the
 * first blkmb MiB, random (bench/blkhost.c's generator, tg_blkbench_next)
 * or sequential and wrapping, blkqd in flight, each through an indirect
 * table (header, data, status), then one FLUSH after writes.  The data
 * buffers are vblk.c's pool (blk and blkbench never run together), shared
 * modulo its 4 MiB: the content is never looked at.
 *
 * netbench: netframes frames of netsize bytes (broadcast, ethertype
 * 0x88b6, so that tap_echo.py leaves them alone), one descriptor each
 * (header and frame), the transmitq kept full and descriptors recycled as
 * the device returns them.
 */
#include "abi.h"
#include "bench.h"
#include "vblk.h"
#include "vpci.h"
#include "work.h"

#define STALL_CYCLES    (1ull << 35)
#define QMAX            256

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static inline long sys(long n, long a, long b, long c)
{
	long r;
	asm volatile("ud2" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "memory");
	return r;
}

static void out(const char *s)
{
	sys(TG_SYS_WRITE, (long)s, (long)tg_strlen(s), 0);
}

static void bench_end(uint64_t ops, uint64_t bytes)
{
	static char line[96];
	char *p = tg_stpcpy(line, "khyve-testguest: BENCH end ops=");
	p = tg_fmt_u64(p, ops);
	p = tg_stpcpy(p, " bytes=");
	p = tg_fmt_u64(p, bytes);
	tg_stpcpy(p, "\n");
	out(line);
}

#define RING(n) struct { \
	struct desc desc[n] __attribute__((aligned(16))); \
	struct { \
		uint16_t flags, idx, ring[n], used_event; \
	} avail __attribute__((aligned(4))); \
	struct { \
		uint16_t flags, idx; \
		struct { uint32_t id, len; } ring[n]; \
		uint16_t avail_event; \
	} used __attribute__((aligned(4))); \
}

static const struct tg_params *P;

/* ------------------------------------------------------------------ */
/* blkbench */

#define F_FLUSH         (1ull << 9)

static RING(QMAX) br;
static struct vpci_dev bdev;
static struct vq bq;
static struct {
	struct desc itab[3];
	struct { uint32_t type, reserved; uint64_t sector; } hdr;
	volatile uint8_t status;
} __attribute__((aligned(16))) bslot[QMAX];
static uint16_t bfree[QMAX], nbfree;
static uint64_t bcapacity;

const char *tg_blkbench_init(const struct tg_params *p)
{
	const char *e = tg_vpci_open("blkbench", "virtio-blk", 0x1042, &bdev);
	uint64_t f = VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC;
	uint16_t qs;

	P = p;
	if (e)
		return e;
	if (!bdev.devcfg)
		return "blkbench: no device-specific configuration capability";
	if (!(bdev.offered & VIRTIO_F_INDIRECT_DESC))
		return "blkbench: device does not offer VIRTIO_F_INDIRECT_DESC";
	f |= bdev.offered & F_FLUSH;
	e = tg_vpci_features("blkbench", &bdev, f);
	if (e)
		return e;
	bcapacity = *(volatile uint32_t *)bdev.devcfg | (uint64_t)*(volatile uint32_t *)(bdev.devcfg + 4) << 32;
	if (bcapacity < p->blkmb << 11)
		return "blkbench: the disk is smaller than blkmb";
	if (p->blkbs > p->blkmb << 20)
		return "blkbench: blkbs larger than blkmb";
	/* the largest queue up to 256 entries, at least blkqd */
	*(volatile uint16_t *)(bdev.common + 0x16) = 0;
	qs = *(volatile uint16_t *)(bdev.common + 0x18);
	if (qs > QMAX)
		qs = QMAX;
	if (qs < p->blkqd)
		return "blkbench: the queue is smaller than blkqd";
	{
		const struct vpci_queue vq = { .index = 0, .size = qs, .desc = br.desc, .avail = &br.avail,
		                               .used = &br.used };
		e = tg_vpci_queue("blkbench", &bdev, &vq, &bq.notify);
		if (e)
			return e;
	}
	bq.index = 0;
	bq.size = qs;
	bq.desc = br.desc;
	bq.avail = &br.avail.flags;
	bq.used = &br.used.flags;
	tg_vpci_ready(&bdev);
	for (uint16_t i = 0; i < p->blkqd; i++)
		bfree[nbfree++] = (uint16_t)(p->blkqd - 1 - i);
	return 0;
}

static void bsubmit(uint16_t s, uint32_t type, uint64_t off, uint32_t len, uint64_t buf)
{
	int write = type == 1;

	bslot[s].hdr.type = type;
	bslot[s].hdr.reserved = 0;
	bslot[s].hdr.sector = off / 512;
	bslot[s].status = 0xff;
	bslot[s].itab[0] = (struct desc){ (uint64_t)&bslot[s].hdr, 16, D_NEXT, 1 };
	if (len) {
		bslot[s].itab[1] = (struct desc){ buf, len, (uint16_t)(D_NEXT | (write ? 0 : D_WRITE)), 2 };
		bslot[s].itab[2] = (struct desc){ (uint64_t)&bslot[s].status, 1, D_WRITE, 0 };
	} else {
		bslot[s].itab[0].next = 1;
		bslot[s].itab[1] = (struct desc){ (uint64_t)&bslot[s].status, 1, D_WRITE, 0 };
	}
	br.desc[s] = (struct desc){ (uint64_t)bslot[s].itab, (len ? 3u : 2u) * 16, D_INDIRECT, 0 };
	tg_vq_add(&bq, s);
}

/* wait for at least one completion (bounded); NULL or what went wrong */
static const char *breap(uint64_t *done, uint32_t *status_or)
{
	uint64_t t0 = 0;

	for (uint64_t spins = 0;; spins++) {
		uint32_t id, len;
		int got = 0;

		while (tg_vq_get(&bq, &id, &len)) {
			if (id >= bq.size)
				return "blkbench: the used ring names no request";
			*status_or |= bslot[id].status;
			bfree[nbfree++] = (uint16_t)id;
			(*done)++;
			got = 1;
		}
		if (got)
			return 0;
		if (!t0)
			t0 = rdtsc();
		else if ((spins & 1023) == 0 && rdtsc() - t0 > STALL_CYCLES)
			return (tg_vpci_status(&bdev) & 0x40) ? "blkbench: device needs reset" :
			       "blkbench: no completion for ~10 s";
		asm volatile("pause");
	}
}

const char *tg_blkbench_round(uint64_t round, uint64_t *ops, uint64_t *bytes, uint32_t *status_or)
{
	uint64_t issued = 0, done = 0, state = P->seed, seq = 0, bs = P->blkbs;
	uint64_t nbuf = TG_BLK_POOL_BYTES / bs;      /* blkbs <= 1 MiB: at least 4 */
	int write = P->blkmode == TG_BLKMODE_RANDWRITE || P->blkmode == TG_BLKMODE_SEQWRITE;
	const char *e;

	(void)round;
	*status_or = 0;
	out("khyve-testguest: BENCH begin\n");
	while (done < P->blkops) {
		while (issued < P->blkops && nbfree) {
			uint16_t s = bfree[--nbfree];
			uint64_t off = tg_blkbench_next(P, &state, &seq);
			uint64_t buf = (uint64_t)tg_blk_pool + (issued % nbuf) * bs;

			bsubmit(s, write ? 1 : 0, off, (uint32_t)bs, buf);
			issued++;
		}
		tg_vq_kick(&bq);
		e = breap(&done, status_or);
		if (e)
			return e;
	}
	if (write) {
		uint64_t f = 0;
		bsubmit(bfree[--nbfree], 4, 0, 0, 0);
		tg_vq_kick(&bq);
		while (!f)
			if ((e = breap(&f, status_or)))
				return e;
	}
	*ops = done;
	*bytes = done * bs;
	bench_end(*ops, *bytes);
	if (*status_or)
		return "blkbench: a request failed (status not 0)";
	return 0;
}

/* ------------------------------------------------------------------ */
/* netbench */

#define NET_HDR         12
#define F_MAC           (1ull << 5)

static RING(QMAX) nt;
static struct vpci_dev ndev;
static struct vq ntq;
static uint8_t nframe[NET_HDR + TG_NET_MAX] __attribute__((aligned(64)));
static uint16_t nfree[QMAX], nnfree;

const char *tg_netbench_init(const struct tg_params *p)
{
	const char *e = tg_vpci_open("netbench", "virtio-net", 0x1041, &ndev);
	uint64_t f = VIRTIO_F_VERSION_1;
	uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
	uint16_t qs;

	P = p;
	if (e)
		return e;
	if ((ndev.offered & F_MAC) && ndev.devcfg)
		f |= F_MAC;
	e = tg_vpci_features("netbench", &ndev, f);
	if (e)
		return e;
	if (f & F_MAC)
		for (int i = 0; i < 6; i++)
			mac[i] = ndev.devcfg[i];
	*(volatile uint16_t *)(ndev.common + 0x16) = 1;
	qs = *(volatile uint16_t *)(ndev.common + 0x18);
	if (qs > QMAX)
		qs = QMAX;
	if (qs < 16)
		return "netbench: the transmitq is smaller than 16";
	{
		const struct vpci_queue vq = { .index = 1, .size = qs, .desc = nt.desc, .avail = &nt.avail,
		                               .used = &nt.used };
		e = tg_vpci_queue("netbench", &ndev, &vq, &ntq.notify);
		if (e)
			return e;
	}
	ntq.index = 1;
	ntq.size = qs;
	ntq.desc = nt.desc;
	ntq.avail = &nt.avail.flags;
	ntq.used = &nt.used.flags;
	tg_vpci_ready(&ndev);
	for (int i = 0; i < 6; i++) {
		nframe[NET_HDR + i] = 0xff;
		nframe[NET_HDR + 6 + i] = mac[i];
	}
	nframe[NET_HDR + 12] = 0x88;
	nframe[NET_HDR + 13] = 0xb6;
	for (uint32_t i = 14; i < TG_NET_MAX; i++)
		nframe[NET_HDR + i] = (uint8_t)(i * 7);
	for (uint16_t i = 0; i < qs; i++)
		nfree[nnfree++] = (uint16_t)(qs - 1 - i);
	return 0;
}

const char *tg_netbench_round(uint64_t round, uint64_t *frames, uint64_t *bytes)
{
	uint64_t sent = 0, done = 0, t0 = 0;
	uint32_t len = NET_HDR + (uint32_t)P->netsize;

	(void)round;
	out("khyve-testguest: BENCH begin\n");
	while (done < P->netframes) {
		uint32_t id, l;
		int got = 0;

		while (sent < P->netframes && nnfree) {
			uint16_t d = nfree[--nnfree];
			nt.desc[d] = (struct desc){ (uint64_t)nframe, len, 0, 0 };
			tg_vq_add(&ntq, d);
			sent++;
		}
		tg_vq_kick(&ntq);
		while (tg_vq_get(&ntq, &id, &l)) {
			if (id >= ntq.size)
				return "netbench: the used ring names no frame";
			nfree[nnfree++] = (uint16_t)id;
			done++;
			got = 1;
		}
		if (got) {
			t0 = 0;
		} else if (!t0) {
			t0 = rdtsc();
		} else if (rdtsc() - t0 > STALL_CYCLES) {
			return (tg_vpci_status(&ndev) & 0x40) ? "netbench: device needs reset" :
			       "netbench: no frame completed for ~10 s";
		} else {
			asm volatile("pause");
		}
	}
	*frames = done;
	*bytes = done * P->netsize;
	bench_end(*frames, *bytes);
	return 0;
}
