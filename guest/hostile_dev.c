/* SPDX-License-Identifier: MIT */
/* khyve test guest, hostile workload: malformed requests of each device. */
#include "hostile_internal.h"

/* ---- virtio-blk ---- */

static void blk_send(struct actx *c, struct chain *ch)
{
	hostile__avail_add(c, hostile__ring_put(c, ch, 0));
	kick(c);
}

static void a_blk_short_hdr(struct actx *c)
{
	struct chain ch = { .n = 0 };
	uint64_t hdr = hostile__blk_hdr(0, 0, 0);

	hostile__setup(c);
	switch (variant(c, 4)) {
	case 0: ch_add(&ch, hdr, 8, 0); break;
	case 1: ch_add(&ch, hdr, 15, 0); break;
	case 2: ch_add(&ch, hdr, 4, 0); ch_add(&ch, hdr + 4, 4, 0); break;
	default: break;                                 /* no header at all */
	}
	if (rb(c, 2))
		ch_add(&ch, (uint64_t)data(4), 512, D_WRITE);
	ch_add(&ch, hostile__blk_status(c), 1, D_WRITE);
	blk_send(c, &ch);
}

static void a_blk_status_ro(struct actx *c)
{
	struct chain ch = { .n = 0 };
	uint64_t v = variant(c, 3);

	hostile__setup(c);
	ch_add(&ch, hostile__blk_hdr(0, v == 2 ? 1 : 0, 0), 16, 0);
	if (v == 0)
		ch_add(&ch, (uint64_t)data(4), 512, D_WRITE);   /* the status then is data's last byte */
	if (v == 2)
		ch_add(&ch, (uint64_t)data(4), 512, 0);
	ch_add(&ch, hostile__blk_status(c), 1, 0);                   /* read-only status */
	blk_send(c, &ch);
}

static void a_blk_beyond(struct actx *c)
{
	struct chain ch = { .n = 0 };
	uint64_t cap = c->h->capacity, sec;
	uint32_t len = 512, type = rb(c, 2) ? 1 : 0;

	hostile__setup(c);
	switch (variant(c, 6)) {
	case 0: sec = cap; break;
	case 1: sec = cap - 1; len = 1024; break;
	case 2: sec = cap + rb(c, 1ull << 40); break;
	case 3: sec = 1ull << 63; break;
	case 4: sec = ~0ull; break;
	default: sec = ~0ull / 512 - rb(c, 4); len = 4096; break;   /* sector * 512 overflows */
	}
	ch_add(&ch, hostile__blk_hdr(0, type, sec), 16, 0);
	ch_add(&ch, (uint64_t)data(4), len, type ? 0 : D_WRITE);
	ch_add(&ch, hostile__blk_status(c), 1, D_WRITE);
	blk_send(c, &ch);
}

static void a_blk_unknown(struct actx *c)
{
	static const uint32_t types[] = { 2, 3, 5, 6, 7, 9, 10, 12, 14, 15, 16, 0x80000000u, 0xffffffffu, 0x100 };
	struct chain ch = { .n = 0 };

	hostile__setup(c);
	ch_add(&ch, hostile__blk_hdr(0, types[variant(c, 14)], rb(c, 1000)), 16, 0);
	if (rb(c, 2))
		ch_add(&ch, (uint64_t)data(4), 512, rb(c, 2) ? D_WRITE : 0);
	ch_add(&ch, hostile__blk_status(c), 1, D_WRITE);
	blk_send(c, &ch);
}

static void a_blk_direction(struct actx *c)
{
	struct chain ch = { .n = 0 };
	uint64_t v = variant(c, 2);

	hostile__setup(c);
	ch_add(&ch, hostile__blk_hdr(0, (uint32_t)v, 0), 16, 0);
	ch_add(&ch, (uint64_t)data(4), 512, v ? D_WRITE : 0);   /* OUT from writable, IN into readable */
	ch_add(&ch, hostile__blk_status(c), 1, D_WRITE);
	blk_send(c, &ch);
}

static void a_blk_odd_len(struct actx *c)
{
	static const uint32_t lens[] = { 1, 100, 511, 513, 4097, 1000 };
	struct chain ch = { .n = 0 };
	uint32_t type = rb(c, 2) ? 1 : 0;

	hostile__setup(c);
	ch_add(&ch, hostile__blk_hdr(0, type, 1), 16, 0);
	ch_add(&ch, (uint64_t)data(4), lens[variant(c, 6)], type ? 0 : D_WRITE);
	ch_add(&ch, hostile__blk_status(c), 1, D_WRITE);
	blk_send(c, &ch);
}

static void a_blk_dwz(struct actx *c)
{
	struct chain ch = { .n = 0 };
	struct hdev *h = c->h;
	uint64_t v = variant(c, 6);
	uint32_t type = rb(c, 2) ? 13 : 11, nseg;
	uint64_t *seg = (uint64_t *)data(8);
	uint64_t f = hostile__def_features(h);

	/* sometimes the command is not negotiated: UNSUPP */
	if (rb(c, 3))
		f |= h->d.offered & (1ull << 13 | 1ull << 14);
	hostile__std_setup(c, f, QS);
	nseg = v == 0 ? 0 : v == 1 ? 33 : (uint32_t)(1 + rb(c, 4));
	for (uint32_t i = 0; i < nseg; i++) {
		uint64_t sec = rb(c, h->capacity);
		uint32_t n = (uint32_t)(1 + rb(c, 16)), fl = 0;
		switch (v) {
		case 2: sec = h->capacity + rb(c, 100); break;
		case 3: n = 0xffffffffu; break;
		case 4: fl = (uint32_t)rn(c) | 2; break;
		default: if (sec + n > h->capacity) sec = 0; break;
		}
		seg[2 * i] = sec;
		seg[2 * i + 1] = n | (uint64_t)fl << 32;
	}
	ch_add(&ch, hostile__blk_hdr(0, type, 0), 16, 0);
	if (nseg)
		ch_add(&ch, (uint64_t)seg, nseg * 16 - (v == 5 ? 3 : 0), 0);
	ch_add(&ch, hostile__blk_status(c), 1, D_WRITE);
	blk_send(c, &ch);
}

static void a_blk_id_flush(struct actx *c)
{
	static const uint32_t lens[] = { 0, 1, 19, 20, 1000 };
	struct chain ch = { .n = 0 };
	uint64_t v = variant(c, 5);

	if (v == 4) {
		hostile__std_setup(c, F_V1, QS);                 /* FLUSH not negotiated */
		ch_add(&ch, hostile__blk_hdr(0, 4, 0), 16, 0);
	} else {
		hostile__setup(c);
		ch_add(&ch, hostile__blk_hdr(0, v == 3 ? 4 : 8, rn(c)), 16, 0);
	}
	if (v == 3)
		ch_add(&ch, (uint64_t)data(4), 512, rb(c, 2) ? 0 : D_WRITE);     /* FLUSH with data */
	else if (v < 3) {
		uint32_t len = lens[rb(c, 5)];
		if (len)
			ch_add(&ch, (uint64_t)data(4), len, rb(c, 4) ? D_WRITE : 0);
	}
	ch_add(&ch, hostile__blk_status(c), 1, D_WRITE);
	blk_send(c, &ch);
}

/* one read whose data lands on the rings themselves (legal, if mad) */
static void a_blk_over_rings(struct actx *c)
{
	struct chain ch = { .n = 0 };
	uint64_t v = variant(c, 3);
	uint64_t dst = v == 0 ? (uint64_t)c->desc + 4096 : v == 1 ? (uint64_t)c->avail : (uint64_t)c->used + 4096;

	hostile__setup(c);
	ch_add(&ch, hostile__blk_hdr(0, 0, rb(c, c->h->capacity > 8 ? c->h->capacity - 8 : 1)), 16, 0);
	if (v == 1) {
		/* the ring and what follows, the request's own entry included */
		ch_add(&ch, dst, 4096, D_WRITE);
	} else {
		ch_add(&ch, dst, 4096, D_WRITE);
	}
	ch_add(&ch, hostile__blk_status(c), 1, D_WRITE);
	blk_send(c, &ch);
	c->nst = 0;                             /* may be overwritten: not counted */
	if (v == 1)
		c->want = 0;
}

/* ---- virtio-net ---- */

static void a_net_tx_empty(struct actx *c)
{
	struct chain ch = { .n = 0 };

	hostile__setup(c);
	hostile__net_frame(data(4), 40);
	switch (variant(c, 5)) {
	case 0: ch_add(&ch, (uint64_t)data(4), 12, 0); break;                /* header only */
	case 1: ch_add(&ch, (uint64_t)data(4), 0, 0); break;                 /* nothing */
	case 2: ch_add(&ch, (uint64_t)data(4), 12, 0); ch_add(&ch, (uint64_t)data(5), 0, 0); break;
	case 3: ch_add(&ch, (uint64_t)data(4), 13, 0); break;
	default: ch_add(&ch, (uint64_t)data(4), 12 + 13, 0); break;          /* shorter than Ethernet */
	}
	hostile__avail_add(c, hostile__ring_put(c, &ch, 0));
	kick(c);
}

static void a_net_tx_huge(struct actx *c)
{
	static const uint32_t totals[] = { 12 + 70000, 65550, 65551, 12 + 65535, 12 + 9000, 0xffff0 };
	struct chain ch = { .n = 0 };
	uint32_t total = totals[variant(c, 6)], left, piece = (uint32_t)(1 + rb(c, 4)) * 16384;

	hostile__setup(c);
	hostile__net_frame(data(0), 60);
	for (left = total; left && ch.n < 40;) {
		uint32_t l = left < piece ? left : piece;
		uint64_t a = (uint64_t)data(0) + (total - left) % (DATA_BYTES - piece);
		if (l > DATA_BYTES)
			l = DATA_BYTES;
		ch_add(&ch, ch.n ? a : (uint64_t)data(0), l, 0);
		left -= l;
	}
	hostile__avail_add(c, hostile__ring_put(c, &ch, 0));
	kick(c);
}

static void a_net_tx_writable(struct actx *c)
{
	struct chain ch = { .n = 0 };

	hostile__setup(c);
	hostile__net_frame(data(4), 80);
	switch (variant(c, 3)) {
	case 0: ch_add(&ch, (uint64_t)data(4), 12 + 80, D_WRITE); break;
	case 1: ch_add(&ch, (uint64_t)data(4), 12, 0); ch_add(&ch, (uint64_t)data(4) + 12, 80, D_WRITE); break;
	default: ch_add(&ch, (uint64_t)data(4), 12 + 80, 0); ch_add(&ch, (uint64_t)data(6), 64, D_WRITE); break;
	}
	hostile__avail_add(c, hostile__ring_put(c, &ch, 0));
	kick(c);
}

/* receive buffers that cannot take a frame; a frame sent that an echo would bring back */
static void a_net_rx_small(struct actx *c)
{
	struct hdev *h = c->h;
	struct desc *rd = (struct desc *)A(AR_DESC) + 512;
	volatile uint16_t *ra = (volatile uint16_t *)(A(AR_AVAIL) + 8192);
	volatile uint16_t *ru = (volatile uint16_t *)(A(AR_USED) + 8192);
	uint64_t v = variant(c, 5);

	hostile__setup(c);
	/* the receive queue: 8 bad buffers */
	hostile__queue(h, 0, QS, (uint64_t)rd, (uint64_t)ra, (uint64_t)ru, 0);
	ra[0] = 1;
	W16(h, 0x1c, 1);
	for (uint16_t i = 0; i < 8; i++) {
		uint64_t b = (uint64_t)data(100 + 4 * i);
		switch (v) {
		case 0: rd[i] = (struct desc){ b, 4, D_WRITE, 0 }; break;
		case 1: rd[i] = (struct desc){ b, 11, D_WRITE, 0 }; break;
		case 2: rd[i] = (struct desc){ b, 0, D_WRITE, 0 }; break;
		case 3: rd[i] = (struct desc){ b, 1526, 0, 0 }; break;              /* read-only */
		default: rd[i] = (struct desc){ b, 30 + 8 * i, D_WRITE, 0 }; break;  /* shorter than frames */
		}
		ra[2 + i] = i;
	}
	__atomic_store_n(&ra[1], 8, __ATOMIC_RELEASE);
	hostile__notify(h, 0);
	/* a frame an echo would send back (tests/integration/tap_echo.py) */
	hostile__send_natural(c, 0, 4);
	kick(c);
	c->used2 = ru;
	c->want2 = 8;
}

static void a_net_tx_pieces(struct actx *c)
{
	struct desc *t = (struct desc *)A(AR_ITAB);
	uint64_t v = variant(c, 3);
	uint32_t n = v == 0 ? 1024 : v == 1 ? 1023 : 100, each = v == 2 ? 1 : 64;

	if (!(c->h->d.offered & F_INDIRECT)) {
		hostile__single(c, (uint64_t)data(4), 60);
		return;
	}
	hostile__setup(c);
	hostile__net_frame(data(0), 60);
	for (uint32_t i = 0; i < n; i++)
		t[i] = (struct desc){ (uint64_t)data(0) + i * each, each, (uint16_t)(i + 1 < n ? D_NEXT : 0),
		                      (uint16_t)(i + 1) };
	c->desc[0] = (struct desc){ (uint64_t)t, n * 16, D_INDIRECT, 0 };
	hostile__avail_add(c, 0);
	kick(c);
}

static void a_net_tx_hdr(struct actx *c)
{
	struct chain ch = { .n = 0 };
	uint8_t *p = data(4);

	hostile__setup(c);
	hostile__net_frame(p, 12 + 100);
	for (int i = 0; i < 12; i++)
		p[i] = (uint8_t)rn(c);
	(void)variant(c, 1);
	ch_add(&ch, (uint64_t)p, 12 + 100, 0);
	hostile__avail_add(c, hostile__ring_put(c, &ch, 0));
	kick(c);
}

/* ---- virtio-console ---- */

static void a_con_tx_writable(struct actx *c)
{
	struct chain ch = { .n = 0 };

	hostile__setup(c);
	if (variant(c, 2))
		ch_add(&ch, (uint64_t)data(4), 16, 0);
	ch_add(&ch, (uint64_t)data(5), 64, D_WRITE);
	hostile__avail_add(c, hostile__ring_put(c, &ch, 0));
	kick(c);
}

static void a_con_rx_garbage(struct actx *c)
{
	struct chain ch = { .n = 0 };
	uint64_t v = variant(c, 3);

	c->q = 0;                               /* receiveq */
	hostile__setup(c);
	ch_add(&ch, (uint64_t)data(4), v == 0 ? 0 : 64, v == 1 ? 0 : D_WRITE);
	if (v == 2)
		ch_add(&ch, (uint64_t)data(5), 64, 0);
	hostile__avail_add(c, hostile__ring_put(c, &ch, 0));
	kick(c);
}

/* buffers that overlap, far more than any sane request: the device bounds its work */
static void a_huge_overlap(struct actx *c, uint16_t flags)
{
	struct desc *t = (struct desc *)A(AR_ITAB);
	uint32_t n = (uint32_t)(1 + rb(c, 1024));

	(void)variant(c, 1);
	if (!(c->h->d.offered & F_INDIRECT)) {
		hostile__single(c, (uint64_t)data(4), 64);
		return;
	}
	hostile__setup(c);
	for (uint32_t i = 0; i < n; i++)
		t[i] = (struct desc){ (uint64_t)data(0) + rb(c, 64) * 8, DATA_BYTES - 512,
		                      (uint16_t)(flags | (i + 1 < n ? D_NEXT : 0)), (uint16_t)(i + 1) };
	c->desc[0] = (struct desc){ (uint64_t)t, n * 16, D_INDIRECT, 0 };
	hostile__avail_add(c, 0);
	kick(c);
}

static void a_con_tx_huge(struct actx *c) { a_huge_overlap(c, 0); }

/* ---- virtio-rnd ---- */

static void a_rng_readable(struct actx *c)
{
	struct chain ch = { .n = 0 };

	hostile__setup(c);
	ch_add(&ch, (uint64_t)data(4), 64, 0);
	if (variant(c, 2))
		ch_add(&ch, (uint64_t)data(5), 64, 0);
	hostile__avail_add(c, hostile__ring_put(c, &ch, 0));
	kick(c);
}

static void a_rng_huge(struct actx *c) { a_huge_overlap(c, D_WRITE); }

/* ------------------------------------------------------------------ */
/* this file's part of the table (hostile.c merges them) */

const struct kind hostile__dev_kinds[TG_HA_N] = {
	[TG_HA_BLK_SHORT_HDR] = { a_blk_short_hdr, 0, D_BLK },
	[TG_HA_BLK_STATUS_RO] = { a_blk_status_ro, 0, D_BLK },
	[TG_HA_BLK_BEYOND] = { a_blk_beyond, 0, D_BLK },
	[TG_HA_BLK_UNKNOWN] = { a_blk_unknown, 0, D_BLK },
	[TG_HA_BLK_DIRECTION] = { a_blk_direction, 0, D_BLK },
	[TG_HA_BLK_ODD_LEN] = { a_blk_odd_len, 0, D_BLK },
	[TG_HA_BLK_DWZ] = { a_blk_dwz, 0, D_BLK },
	[TG_HA_BLK_ID_FLUSH] = { a_blk_id_flush, 0, D_BLK },
	[TG_HA_BLK_OVER_RINGS] = { a_blk_over_rings, 0, D_BLK },
	[TG_HA_NET_TX_EMPTY] = { a_net_tx_empty, 0, D_NET },
	[TG_HA_NET_TX_HUGE] = { a_net_tx_huge, 0, D_NET },
	[TG_HA_NET_TX_WRITABLE] = { a_net_tx_writable, 0, D_NET },
	[TG_HA_NET_RX_SMALL] = { a_net_rx_small, 0, D_NET },
	[TG_HA_NET_TX_PIECES] = { a_net_tx_pieces, 0, D_NET },
	[TG_HA_NET_TX_HDR] = { a_net_tx_hdr, 0, D_NET },
	[TG_HA_CON_TX_WRITABLE] = { a_con_tx_writable, 0, D_CON },
	[TG_HA_CON_RX_GARBAGE] = { a_con_rx_garbage, 0, D_CON },
	[TG_HA_CON_TX_HUGE] = { a_con_tx_huge, 0, D_CON },
	[TG_HA_RNG_READABLE] = { a_rng_readable, 0, D_RNG },
	[TG_HA_RNG_HUGE] = { a_rng_huge, 0, D_RNG },
};
