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
#include "vpci.h"
#include "vcon.h"
#include "work.h"

#define VIRTIO_CON_ID   0x1043          /* 0x1040 + device ID 3 */
#define QN              8
#define TXQ             1

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

static struct vpci_dev dev;

const char *tg_vcon_init(void)
{
	const struct vpci_queue q = {
		.index = TXQ, .size = QN, .desc = ring_desc, .avail = &avail, .used = &used,
	};

	return tg_vpci_setup("console", "virtio-console", VIRTIO_CON_ID, &q, &dev);
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
	{
		const char *e = tg_vpci_kick_wait("console", &dev, TXQ, &avail.idx, &used.idx, want);

		if (e)
			return e;
	}
	for (uint16_t u = start; u != want; u++) {
		uint32_t id = used.ring[u % QN].id;
		if (id >= 2 * TG_CON_REQS || (id & 1) || (seen & (1u << id)))
			return "console: bad id in the used ring";
		seen |= 1u << id;
	}
	return 0;
}
