/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest, hostile workload: the attacks on descriptors, chains,
 * indirect tables, rings and notifications.
 */
#include "hostile_internal.h"

/* ------------------------------------------------------------------ */
/* bad addresses */

static uint64_t addr_beyond(struct actx *c)
{
	uint64_t lo = ram_low(), hi_end = tg_info.ram_end > (4ull << 30) ? tg_info.ram_end : (4ull << 30);

	switch (variant(c, 4)) {
	case 0:
		if (lo < 0xc0000000ull)
			return lo + rb(c, (0xc0000000ull - lo) / PAGE) * PAGE + rb(c, 64) * 8;
		/* fall through */
	case 1:
		return hi_end + rb(c, 1ull << 20) * PAGE;
	case 2:
		return (1ull << 40) + rn(c) % (1ull << 46);
	default:
		return 0x8000000000000000ull | rn(c);
	}
}

static uint64_t addr_hole(struct actx *c)
{
	switch (variant(c, 5)) {
	case 0: return 0xc0000000ull + rb(c, 0x3ec00000ull);
	case 1: return (uint64_t)c->h->d.bar0;                  /* the device's own registers */
	case 2: return 0xfec00000ull;                           /* IOAPIC */
	case 3: return 0xfee00000ull;                           /* LAPIC */
	default: return 0xfffff000ull;
	}
}

/* ------------------------------------------------------------------ */
/* the attacks */

static void a_addr_beyond(struct actx *c)
{
	hostile__single(c, addr_beyond(c), (uint32_t)(1 + rb(c, 4096)));
}

static void a_addr_hole(struct actx *c)
{
	hostile__single(c, addr_hole(c), (uint32_t)(1 + rb(c, 4096)));
}

static void a_addr_top(struct actx *c)
{
	static const uint32_t lens[] = { 4096, 8192, 1, 0xffffffff };
	uint64_t v = variant(c, 8);
	uint64_t a = v & 1 ? 0xfffffffffffff000ull : 0ull - 512 - rb(c, 8) * 8;

	hostile__single(c, a, lens[v / 2]);
}

static void a_addr_straddle(struct actx *c)
{
	uint64_t v = variant(c, 3), off = 1 + rb(c, 4095);

	if (v == 2 && tg_info.ram_end > (4ull << 30))
		hostile__single(c, tg_info.ram_end - off, (uint32_t)(off + 1 + rb(c, 4096)));
	else if (v == 1)
		hostile__single(c, ram_low(), (uint32_t)(1 + rb(c, 4096)));      /* just past the end */
	else
		hostile__single(c, ram_low() - off, (uint32_t)(off + 1 + rb(c, 4096)));
}

static void a_len_zero(struct actx *c)
{
	static const uint64_t addrs[] = { 0, 0x8000000000000000ull, 0xfffffffffffff000ull };
	struct chain ch = { .n = 0 };
	unsigned int n = 1 + (unsigned int)variant(c, 3);

	hostile__setup(c);
	hostile__nat_begin(c, &ch);
	for (unsigned int i = 0; i < n; i++)
		ch_add(&ch, rb(c, 2) ? (uint64_t)data(4 + i) : addrs[rb(c, 3)], 0, hostile__nat_flags(c));
	hostile__nat_end(c, &ch);
	hostile__avail_add(c, hostile__ring_put(c, &ch, 0));
	kick(c);
}

static void a_len_huge(struct actx *c)
{
	uint64_t a = (uint64_t)data(8), past = ram_low() - a;   /* bytes from a to the end of low RAM */
	uint32_t len;

	switch (variant(c, 4)) {
	case 0: len = 0xffffffffu; break;
	case 1: len = 0x80000000u; break;
	case 2: len = 0xfffffff0u; break;
	default: len = (uint32_t)(past + 1 + rb(c, 4096)); break;
	}
	if (a + len <= ram_low())               /* inside RAM: the device may write it all */
		len = (uint32_t)(past + 1);
	hostile__single(c, a, len);
}

/* a natural chain with three middle buffers whose last descriptor loops back */
static void a_chain_loop(struct actx *c)
{
	struct chain ch = { .n = 0 };
	uint64_t v = variant(c, 3);
	uint16_t head, last;

	hostile__setup(c);
	hostile__nat_begin(c, &ch);
	for (unsigned int i = 0; i < 3; i++)
		hostile__nat_mid(c, &ch, 4 + i, 64);
	hostile__nat_end(c, &ch);
	head = hostile__ring_put(c, &ch, 0);
	last = (uint16_t)(ch.n - 1);
	c->desc[last].flags |= D_NEXT;
	c->desc[last].next = v == 0 ? head : v == 1 ? last : (uint16_t)rb(c, last + 1u);
	hostile__avail_add(c, head);
	kick(c);
}

static void a_next_oob(struct actx *c)
{
	struct chain ch = { .n = 0 };
	uint16_t k;

	hostile__setup(c);
	hostile__natural(c, &ch, 4);
	hostile__ring_put(c, &ch, 0);
	k = (uint16_t)rb(c, (uint64_t)ch.n);
	c->desc[k].flags |= D_NEXT;
	switch (variant(c, 3)) {
	case 0: c->desc[k].next = c->qsize; break;
	case 1: c->desc[k].next = 0xffff; break;
	default: c->desc[k].next = (uint16_t)(c->qsize + rb(c, 0x10000u - c->qsize)); break;
	}
	hostile__avail_add(c, 0);
	kick(c);
}

static void a_chain_long(struct actx *c)
{
	struct desc *t = (struct desc *)A(AR_ITAB);
	uint16_t fl = hostile__nat_flags(c);
	uint64_t v = variant(c, 3);

	hostile__setup(c);
	if (v == 0) {
		/* every descriptor of the queue in one chain, the last back to the first */
		for (uint16_t i = 0; i < c->qsize; i++)
			c->desc[i] = (struct desc){ (uint64_t)data(4 + i % 200), 8, (uint16_t)(fl | D_NEXT),
			                            (uint16_t)((i + 1) % c->qsize) };
		hostile__avail_add(c, 0);
	} else {
		/* an indirect table of 1024 (legal, at most VIRTIO_QUEUE_MAX) or 1025 entries */
		uint32_t n = v == 1 ? 1024 : 1025;
		for (uint32_t i = 0; i < n && i < 1024; i++)
			t[i] = (struct desc){ (uint64_t)data(4) + (i % 512) * 64, 8, (uint16_t)(fl | (i + 1 < n ? D_NEXT : 0)),
			                      (uint16_t)(i + 1) };
		c->desc[0] = (struct desc){ (uint64_t)t, n * 16, D_INDIRECT, 0 };
		hostile__avail_add(c, 0);
	}
	kick(c);
}

/* the ring's descriptor 0 is INDIRECT to table A */
static void ind_send(struct actx *c, uint64_t table, uint32_t len, uint16_t extra_flags)
{
	c->desc[0] = (struct desc){ table, len, (uint16_t)(D_INDIRECT | extra_flags), 1 };
	if (extra_flags & D_NEXT) {
		struct chain ch = { .n = 0 };
		hostile__nat_mid(c, &ch, 20, 64);
		hostile__nat_end(c, &ch);
		hostile__ring_put(c, &ch, 1);
	}
	hostile__avail_add(c, 0);
	kick(c);
}

static void a_ind_nested(struct actx *c)
{
	struct desc *ta = (struct desc *)A(AR_ITAB), *tb = ta + 256;
	struct chain a = { .n = 0 }, b = { .n = 0 };
	uint32_t la;

	hostile__setup(c);
	hostile__natural(c, &b, 6);
	hostile__tab_put(tb, &b);
	if (variant(c, 2))
		hostile__nat_begin(c, &a);
	ch_add(&a, (uint64_t)tb, (uint32_t)b.n * 16, D_INDIRECT);
	la = hostile__tab_put(ta, &a);
	ind_send(c, (uint64_t)ta, la, 0);
}

static void a_ind_len(struct actx *c, uint32_t len)
{
	struct desc *t = (struct desc *)A(AR_ITAB);
	struct chain ch = { .n = 0 };

	hostile__setup(c);
	hostile__natural(c, &ch, 6);
	hostile__tab_put(t, &ch);
	ind_send(c, (uint64_t)t, len, 0);
}

static void a_ind_len_zero(struct actx *c) { a_ind_len(c, 0); }

static void a_ind_len_odd(struct actx *c)
{
	static const uint32_t lens[] = { 8, 17, 24, 31, 33, 1000, 15 };
	a_ind_len(c, lens[variant(c, 7)]);
}

static void a_ind_len_huge(struct actx *c)
{
	static const uint32_t lens[] = { 16 * 1025, 0x100000, 0xfffffff0u, 0xffffffffu, 0x7ffffff0 };
	a_ind_len(c, lens[variant(c, 5)]);
}

static void a_ind_next(struct actx *c)
{
	struct desc *t = (struct desc *)A(AR_ITAB);
	struct chain ch = { .n = 0 };

	hostile__setup(c);
	hostile__natural(c, &ch, 6);
	ind_send(c, (uint64_t)t, hostile__tab_put(t, &ch), D_NEXT);
	(void)variant(c, 1);
}

static void a_ind_loop(struct actx *c)
{
	struct desc *t = (struct desc *)A(AR_ITAB);
	struct chain ch = { .n = 0 };
	uint32_t len;
	int k;

	hostile__setup(c);
	hostile__nat_begin(c, &ch);
	for (unsigned int i = 0; i < 3; i++)
		hostile__nat_mid(c, &ch, 6 + i, 64);
	hostile__nat_end(c, &ch);
	len = hostile__tab_put(t, &ch);
	k = ch.n - 1;
	t[k].flags |= D_NEXT;
	switch (variant(c, 3)) {
	case 0: t[k].next = 0; break;                                   /* back to the start */
	case 1: t[k].next = (uint16_t)(ch.n + rb(c, 0x10000u - ch.n)); break;  /* out of the table */
	default: t[k].next = (uint16_t)k; break;                       /* itself */
	}
	ind_send(c, (uint64_t)t, len, 0);
}

static void a_ind_outside(struct actx *c)
{
	uint64_t v = rb(c, 4), a;

	hostile__setup(c);
	a = v == 0 ? addr_beyond(c) : v == 1 ? addr_hole(c) : v == 2 ? 0xfffffffffffff000ull : ram_low() - 32;
	hostile__cur_variant = v;
	ind_send(c, a, v == 3 ? 64 : 16 * (uint32_t)(1 + rb(c, 64)), 0);
}

static void a_ind_unnegotiated(struct actx *c)
{
	struct desc *t = (struct desc *)A(AR_ITAB);
	struct chain ch = { .n = 0 };

	hostile__std_setup(c, F_V1, QS);
	hostile__natural(c, &ch, 6);
	ind_send(c, (uint64_t)t, hostile__tab_put(t, &ch), 0);
	(void)variant(c, 1);
}

static void a_avail_jump(struct actx *c)
{
	hostile__setup(c);
	hostile__send_natural(c, 0, 4);
	switch (variant(c, 3)) {
	case 0: c->aidx = (uint16_t)(c->qsize + 1); break;
	case 1: c->aidx = 0x8000; break;
	default: c->aidx = (uint16_t)(c->qsize + 1 + rb(c, 0xffffu - c->qsize)); break;
	}
	__atomic_store_n(&c->avail[1], c->aidx, __ATOMIC_RELEASE);
	c->want = 0;
	kick(c);
}

static void a_avail_oob(struct actx *c)
{
	hostile__setup(c);
	hostile__send_natural(c, 0, 4);
	switch (variant(c, 3)) {
	case 0: c->avail[2] = c->qsize; break;
	case 1: c->avail[2] = 0xffff; break;
	default: c->avail[2] = (uint16_t)(c->qsize + rb(c, 0x10000u - c->qsize)); break;
	}
	kick(c);
}

/* one ring outside RAM (or misaligned, or straddling its end), then queue_enable */
static void a_rings_outside(struct actx *c)
{
	struct hdev *h = c->h;
	uint64_t r[3] = { (uint64_t)c->desc, (uint64_t)c->avail, (uint64_t)c->used };
	uint64_t v = rb(c, 15), which = v % 3, how = v / 3;

	if (!hostile__features(h, hostile__def_features(h)))
		h->t.refused++;
	switch (how) {
	case 0: r[which] = addr_beyond(c); break;
	case 1: r[which] = addr_hole(c); break;
	case 2: r[which] = 0xfffffffffffff000ull; break;
	case 3: r[which] = ram_low() - 16; break;                       /* straddles the end */
	default: r[which] += which == 0 ? 8 : which == 1 ? 1 : 2; break;    /* misaligned */
	}
	hostile__cur_variant = v;
	c->qsize = hostile__queue(h, c->q, QS, r[0], r[1], r[2], 1);
	c->avail[0] = 1;
	hostile__ready(h);
	if (!c->qsize || c->qsize > 1024)
		c->qsize = QS;
	hostile__send_natural(c, 0, 4);
	if (which == 2)
		c->want = 0;                    /* no used ring to watch */
	kick(c);
}

/* the used ring on top of the available ring or the descriptor table */
static void a_used_overlap(struct actx *c)
{
	struct hdev *h = c->h;
	uint64_t v = variant(c, 4);
	uint64_t u = v == 0 ? (uint64_t)c->avail : v == 1 ? (uint64_t)c->desc :
	             v == 2 ? (uint64_t)c->desc + 16 * 4 : A(AR_ITAB);

	if (!hostile__features(h, hostile__def_features(h)))
		h->t.refused++;
	c->qsize = hostile__queue(h, c->q, QS, (uint64_t)c->desc, (uint64_t)c->avail, u, 1);
	if (!c->qsize || c->qsize > 1024)
		c->qsize = QS;
	c->used = (volatile uint16_t *)u;
	c->avail[0] = 1;
	hostile__ready(h);
	hostile__send_natural(c, 8, 4);
	hostile__send_natural(c, 12, 5);
	c->want = 0;                            /* the ring may be overwritten: no target */
	kick(c);
}

static void a_qsize(struct actx *c)
{
	static const uint16_t sizes[] = { 0, 3, 65535, 1, 0x8000, 2048, 100 };
	struct hdev *h = c->h;
	uint64_t v = variant(c, 9);
	uint16_t want = v < 7 ? sizes[v] : v == 7 ? (uint16_t)(h->qmax[c->q] * 2) : (uint16_t)(h->qmax[c->q] + 1);

	if (!hostile__features(h, hostile__def_features(h)))
		h->t.refused++;
	W16(h, 0x16, c->q);
	W16(h, 0x18, want);
	c->qsize = R16(h, 0x18);
	hostile__queue(h, c->q, 0, (uint64_t)c->desc, (uint64_t)c->avail, (uint64_t)c->used, 1);
	c->avail[0] = 1;
	hostile__ready(h);
	if (!c->qsize || c->qsize > 1024)
		c->qsize = 1;                   /* nothing sensible: one entry */
	hostile__send_natural(c, 0, 4);
	kick(c);
}

static void a_read_after_write(struct actx *c)
{
	struct chain ch = { .n = 0 };

	hostile__setup(c);
	hostile__nat_begin(c, &ch);
	ch_add(&ch, (uint64_t)data(4), 64, D_WRITE);
	ch_add(&ch, (uint64_t)data(5), 64, 0);
	if (variant(c, 2))
		ch_add(&ch, (uint64_t)data(6), 64, D_WRITE);
	hostile__nat_end(c, &ch);
	hostile__avail_add(c, hostile__ring_put(c, &ch, 0));
	kick(c);
}

static void a_notify_garbage(struct actx *c)
{
	struct hdev *h = c->h;
	static const unsigned int widths[] = { 1, 2, 4, 8 };

	hostile__setup(c);
	hostile__send_natural(c, 0, 4);
	(void)variant(c, 1);
	for (int i = 0; i < 32; i++) {
		uint64_t off = rb(c, 0x1000) & ~(uint64_t)(rb(c, 2) ? 0 : 1);
		unsigned int w = widths[rb(c, 4)];
		if (off + w > 0x1000)
			off = 0x1000 - w;
		mw(h->d.notify_base + off, w, rn(c));
	}
	/* queue numbers the device does not have, where their slots would be */
	for (uint16_t q = h->nq; q < h->nq + 4; q++)
		mw(h->d.notify_base + (uint64_t)q * h->d.notify_mult, 2, q);
	mw(h->d.notify_base, 2, 0xffff);
}

static void a_notify_flood(struct actx *c)
{
	hostile__setup(c);
	if (variant(c, 2))
		hostile__send_natural(c, 0, 4);
	for (int i = 0; i < 1000; i++)
		kick(c);
}

/* many requests, then a reset at once: nothing may be written after it */
static void a_reset_inflight(struct actx *c)
{
	struct desc *t = (struct desc *)A(AR_ITAB);
	struct hdev *h = c->h;
	uint16_t n;

	hostile__std_setup(c, hostile__def_features(h), (uint16_t)(h->qmax[c->q] < 128 ? h->qmax[c->q] : 128));
	(void)variant(c, 1);
	n = c->qsize > 128 ? 128 : c->qsize;
	for (uint16_t i = 0; i < n; i++) {
		struct chain ch = { .n = 0 };
		if (h->bit == D_BLK) {
			/* reads of 4-64 KiB into the (shared) data area; headers and
			 * status bytes after the tables */
			uint32_t len = (uint32_t)(1 + rb(c, 16)) * 4096;
			uint8_t *hp = (uint8_t *)A(AR_ITAB) + 8192 + 16 * i;
			uint64_t sec = rb(c, h->capacity > 128 ? h->capacity - 128 : 1);
			*(uint32_t *)hp = 0;
			*(uint32_t *)(hp + 4) = 0;
			*(uint64_t *)(hp + 8) = sec;
			ch_add(&ch, (uint64_t)hp, 16, 0);
			ch_add(&ch, (uint64_t)data(0) + rb(c, (DATA_BYTES - len) / 4096 + 1) * 4096, len, D_WRITE);
			ch_add(&ch, A(AR_ITAB) + 12288 + i, 1, D_WRITE);
		} else {
			hostile__natural(c, &ch, 4 + i % 200);
		}
		if (h->d.offered & F_INDIRECT)
			c->desc[i] = (struct desc){ (uint64_t)(t + 4 * i), hostile__tab_put(t + 4 * i, &ch),
			                            D_INDIRECT, 0 };
		else
			c->desc[i] = ch.d[ch.n - 1];    /* a single buffer then */
		c->avail[2 + i] = i;
	}
	c->aidx = n;
	__atomic_store_n(&c->avail[1], n, __ATOMIC_RELEASE);
	kick(c);
	c->nowait = 1;
}

/* ------------------------------------------------------------------ */
/* this file's part of the table (hostile.c merges them) */

const struct kind hostile__ring_kinds[TG_HA_N] = {
	[TG_HA_ADDR_BEYOND_RAM] = { a_addr_beyond, 0, D_ALL },
	[TG_HA_ADDR_MMIO_HOLE] = { a_addr_hole, 0, D_ALL },
	[TG_HA_ADDR_TOP] = { a_addr_top, 0, D_ALL },
	[TG_HA_ADDR_STRADDLE] = { a_addr_straddle, 0, D_ALL },
	[TG_HA_LEN_ZERO] = { a_len_zero, 0, D_ALL },
	[TG_HA_LEN_HUGE] = { a_len_huge, 0, D_ALL },
	[TG_HA_CHAIN_LOOP] = { a_chain_loop, 0, D_ALL },
	[TG_HA_NEXT_OOB] = { a_next_oob, 0, D_ALL },
	[TG_HA_CHAIN_LONG] = { a_chain_long, 0, D_ALL },
	[TG_HA_IND_NESTED] = { a_ind_nested, 0, D_ALL },
	[TG_HA_IND_LEN_ZERO] = { a_ind_len_zero, 0, D_ALL },
	[TG_HA_IND_LEN_ODD] = { a_ind_len_odd, 0, D_ALL },
	[TG_HA_IND_LEN_HUGE] = { a_ind_len_huge, 0, D_ALL },
	[TG_HA_IND_NEXT] = { a_ind_next, 0, D_ALL },
	[TG_HA_IND_LOOP] = { a_ind_loop, 0, D_ALL },
	[TG_HA_IND_OUTSIDE] = { a_ind_outside, 0, D_ALL },
	[TG_HA_IND_UNNEGOTIATED] = { a_ind_unnegotiated, 0, D_ALL },
	[TG_HA_AVAIL_JUMP] = { a_avail_jump, 0, D_ALL },
	[TG_HA_AVAIL_OOB] = { a_avail_oob, 0, D_ALL },
	[TG_HA_RINGS_OUTSIDE] = { a_rings_outside, 0, D_ALL },
	[TG_HA_USED_OVERLAP] = { a_used_overlap, 0, D_ALL },
	[TG_HA_QSIZE] = { a_qsize, 0, D_ALL },
	[TG_HA_READ_AFTER_WRITE] = { a_read_after_write, 0, D_ALL },
	[TG_HA_NOTIFY_GARBAGE] = { a_notify_garbage, 0, D_ALL },
	[TG_HA_NOTIFY_FLOOD] = { a_notify_flood, 0, D_ALL },
	[TG_HA_RESET_INFLIGHT] = { a_reset_inflight, 0, D_ALL },
};
