/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest: a virtio 1.x PCI driver for virtio-rnd, in ring 3.
 *
 * Ring 0 is emulated (slow) under PVM and ring 3 cannot do port I/O there,
 * so the only ring-0 help is the PCICFG system call for configuration
 * space; everything else - capabilities, feature negotiation, the split
 * virtqueue, notifications - is ring-3 MMIO on the BARs the capabilities
 * name (below 4 GiB: identity-mapped, uncached) and plain memory.  Completions are polled, not interrupted:
 * the device serves a request inside the notifying MMIO write, and the
 * driver asks for no interrupts.  Rings live in .bss (physical = virtual).
 */
#include "abi.h"
#include "vpci.h"
#include "vrng.h"
#include "work.h"

#define VIRTIO_RNG_ID   0x1044          /* 0x1040 + device ID 4 */
#define QN              8

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
static uint8_t bufs[TG_RNG_REQS][2][TG_RNG_BUF];

static struct vpci_dev dev;

const char *tg_vrng_init(void)
{
	const struct vpci_queue q = {
		.index = 0, .size = QN, .desc = ring_desc, .avail = &avail, .used = &used,
	};

	return tg_vpci_setup("rng", "virtio-rnd", VIRTIO_RNG_ID, &q, &dev);
}

static int constant(const uint8_t *p, unsigned int n)
{
	for (unsigned int i = 1; i < n; i++)
		if (p[i] != p[0])
			return 0;
	return 1;
}

const char *tg_vrng_round(void)
{
	uint16_t start = avail.idx, want = (uint16_t)(start + TG_RNG_REQS);
	uint32_t seen = 0;

	for (unsigned int i = 0; i < TG_RNG_REQS; i++)
		for (unsigned int j = 0; j < 2; j++)
			for (unsigned int k = 0; k < TG_RNG_BUF; k++)
				bufs[i][j][k] = 0;
	/* requests 0..n-2: a chain of two; the last: an indirect table of two */
	for (unsigned int i = 0; i < TG_RNG_REQS; i++) {
		struct desc *d = &ring_desc[2 * i];
		if (i < TG_RNG_REQS - 1) {
			d[0] = (struct desc){ (uint64_t)bufs[i][0], TG_RNG_BUF, D_WRITE | D_NEXT, (uint16_t)(2 * i + 1) };
			d[1] = (struct desc){ (uint64_t)bufs[i][1], TG_RNG_BUF, D_WRITE, 0 };
		} else {
			itable[0] = (struct desc){ (uint64_t)bufs[i][0], TG_RNG_BUF, D_WRITE | D_NEXT, 1 };
			itable[1] = (struct desc){ (uint64_t)bufs[i][1], TG_RNG_BUF, D_WRITE, 0 };
			d[0] = (struct desc){ (uint64_t)itable, sizeof(itable), D_INDIRECT, 0 };
		}
		avail.ring[(uint16_t)(start + i) % QN] = (uint16_t)(2 * i);
	}
	{
		const char *e = tg_vpci_kick_wait("rng", &dev, 0, &avail.idx, &used.idx, want);

		if (e)
			return e;
	}
	for (uint16_t u = start; u != want; u++) {
		uint32_t id = used.ring[u % QN].id;
		if (id >= 2 * TG_RNG_REQS || (id & 1) || (seen & (1u << id)))
			return "rng: bad id in the used ring";
		seen |= 1u << id;
		if (used.ring[u % QN].len != 2 * TG_RNG_BUF)
			return "rng: short read";
		if (constant(bufs[id / 2][0], 2 * TG_RNG_BUF))
			return "rng: bytes are constant";
	}
	return 0;
}
