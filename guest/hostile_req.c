/* SPDX-License-Identifier: MIT */
/* khyve test guest, hostile workload: the requests the attacks send. */
#include "hostile_internal.h"

/* A net frame of len bytes (>= 26) after a 12-byte zero header, at p */
void hostile__net_frame(uint8_t *p, uint32_t len)
{
	hostile__pzero(p, 12);
	for (int i = 0; i < 6; i++)
		p[12 + i] = 0xff;
	p[18] = 0x52; p[19] = 0x54; p[20] = 0; p[21] = 0x12; p[22] = 0x34; p[23] = 0x56;
	p[24] = TG_NET_ETHERTYPE >> 8;
	p[25] = TG_NET_ETHERTYPE & 0xff;
	if (len >= 22)
		for (int i = 0; i < 8; i++)
			p[26 + i] = (uint8_t)"khyvehst"[i];
}

/* blk: a request header at data slot k */
uint64_t hostile__blk_hdr(unsigned int k, uint32_t type, uint64_t sector)
{
	uint8_t *p = data(k);
	*(uint32_t *)p = type;
	*(uint32_t *)(p + 4) = 0;
	*(uint64_t *)(p + 8) = sector;
	return (uint64_t)p;
}

/* blk: a status byte (device-writable), watched */
uint64_t hostile__blk_status(struct actx *c)
{
	volatile uint8_t *s = data(1) + c->sti++ % 256;
	*s = 0xff;
	if (c->nst < 8)
		c->st[c->nst++] = s;
	return (uint64_t)s;
}

/* the direction of the device's natural buffers (queue c->q) */
uint16_t hostile__nat_flags(struct actx *c)
{
	switch (c->h->bit) {
	case D_RNG: return D_WRITE;
	case D_BLK: return D_WRITE;      /* an IN request's data */
	case D_CON: return c->q == 0 ? D_WRITE : 0;
	default: return c->q == 0 ? D_WRITE : 0;
	}
}

/* what comes before the middle of a natural request: blk's header (IN sector 0) */
void hostile__nat_begin(struct actx *c, struct chain *ch)
{
	if (c->h->bit == D_BLK)
		ch_add(ch, hostile__blk_hdr(0, 0, 0), 16, 0);
	else if (c->h->bit == D_NET && c->q == 1) {
		hostile__net_frame(data(2), 12);
		ch_add(ch, (uint64_t)data(2), 12, 0);   /* the header alone */
	}
}

/* ... and after: blk's status byte */
void hostile__nat_end(struct actx *c, struct chain *ch)
{
	if (c->h->bit == D_BLK)
		ch_add(ch, hostile__blk_status(c), 1, D_WRITE);
}

/* a natural middle part: one good buffer (data slot k, len bytes) */
void hostile__nat_mid(struct actx *c, struct chain *ch, unsigned int k, uint32_t len)
{
	if (c->h->bit == D_NET && c->q == 1) {
		if (len < 60)
			len = 60;
		hostile__net_frame(data(k) - 12, len + 12);      /* frame without the header: shift */
		ch_add(ch, (uint64_t)data(k), len, 0);
		return;
	}
	ch_add(ch, (uint64_t)data(k), len, hostile__nat_flags(c));
}

/* a whole natural request (blk: IN of 512 bytes) */
void hostile__natural(struct actx *c, struct chain *ch, unsigned int k)
{
	hostile__nat_begin(c, ch);
	hostile__nat_mid(c, ch, k, c->h->bit == D_BLK ? 512 : 64);
	hostile__nat_end(c, ch);
}

/* chain ch into the ring from descriptor `at`; the head */
uint16_t hostile__ring_put(struct actx *c, const struct chain *ch, uint16_t at)
{
	for (int i = 0; i < ch->n; i++) {
		uint16_t k = (uint16_t)((at + i) % c->qsize);
		c->desc[k] = ch->d[i];
		if (i + 1 < ch->n) {
			c->desc[k].flags |= D_NEXT;
			c->desc[k].next = (uint16_t)((at + i + 1) % c->qsize);
		}
	}
	return at;
}

/* chain ch into an indirect table; its length in bytes */
uint32_t hostile__tab_put(struct desc *t, const struct chain *ch)
{
	for (int i = 0; i < ch->n; i++) {
		t[i] = ch->d[i];
		if (i + 1 < ch->n) {
			t[i].flags |= D_NEXT;
			t[i].next = (uint16_t)(i + 1);
		}
	}
	return (uint32_t)ch->n * 16;
}

void hostile__avail_add(struct actx *c, uint16_t head)
{
	c->avail[2 + c->aidx % c->qsize] = head;
	c->aidx++;
	c->want = c->aidx;
	__atomic_store_n(&c->avail[1], c->aidx, __ATOMIC_RELEASE);
}

/* reset done by the caller: features, queue c->q on the arena rings, DRIVER_OK */
void hostile__std_setup(struct actx *c, uint64_t features, uint16_t size)
{
	struct hdev *h = c->h;

	if (!hostile__features(h, features))
		h->t.refused++;
	c->features = features;
	c->qsize = hostile__queue(h, c->q, size, (uint64_t)c->desc, (uint64_t)c->avail, (uint64_t)c->used, 0);
	if (!c->qsize || c->qsize > 1024)
		c->qsize = QS;
	c->avail[0] = 1;
	W16(h, 0x1c, 1);
	hostile__ready(h);
}

uint64_t hostile__def_features(struct hdev *h)
{
	return F_V1 | (h->d.offered & F_INDIRECT);
}

void hostile__setup(struct actx *c)
{
	/* VIRTIO_F_EVENT_IDX half of the time: the device then writes avail_event */
	hostile__std_setup(c, hostile__def_features(c->h) | (rb(c, 2) ? c->h->d.offered & F_EVENT_IDX : 0),
	                   QS);
}

/* one natural request, published and notified */
void hostile__send_natural(struct actx *c, uint16_t at, unsigned int k)
{
	struct chain ch = { .n = 0 };
	hostile__natural(c, &ch, k);
	hostile__avail_add(c, hostile__ring_put(c, &ch, at));
}

void hostile__single(struct actx *c, uint64_t addr, uint32_t len)
{
	struct chain ch = { .n = 0 };

	hostile__setup(c);
	hostile__nat_begin(c, &ch);
	ch_add(&ch, addr, len, hostile__nat_flags(c));
	hostile__nat_end(c, &ch);
	hostile__avail_add(c, hostile__ring_put(c, &ch, 0));
	kick(c);
}
