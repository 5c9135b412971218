/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest, hostile workload: the attacks on the registers (common
 * and device configuration, ISR, MSI-X, status, queue select, PCI).
 */
#include "hostile_internal.h"

/* a write of random width and offset to the common configuration; the ring
 * address registers only get arena addresses or ones far beyond RAM */
static void common_poke(struct actx *c)
{
	static const unsigned int widths[] = { 1, 2, 4, 8 };
	struct hdev *h = c->h;
	uint64_t off = rb(c, 8) ? rb(c, 0x38) : rb(c, 0x1000);
	unsigned int w = widths[rb(c, 4)];
	uint64_t v = rn(c);

	if (off + w > 0x1000)
		off = 0x1000 - w;
	if (rb(c, 3) == 0) {
		(void)mr(h->d.common + off, w);
		return;
	}
	if (off < 0x38 && off + w > 0x20) {
		unsigned int reg = off < 0x20 ? 0x20 : 0x20 + (unsigned int)((off - 0x20) / 8) * 8;
		if (reg > 0x30)
			reg = 0x30;
		switch (rb(c, 3)) {
		case 0: W64(h, reg, (0x100 + rb(c, 0xfff00)) << 32 | (uint32_t)v); break;
		case 1: W32(h, reg + 4, (uint32_t)(0x100 + rb(c, 0xfffffe00u))); break;
		default: W64(h, reg, A(ring_pages[rb(c, 4)]) + 8 * rb(c, 4)); break;
		}
		return;
	}
	mw(h->d.common + off, w, v);
}

static void a_common_random(struct actx *c)
{
	struct hdev *h = c->h;

	hostile__setup(c);
	/* every queue's rings in the arena (zeros: nothing to take) */
	for (uint16_t q = 0; q < h->nq; q++)
		if (q != c->q) {
			W16(h, 0x16, q);
			W64(h, 0x20, A(AR_DESC) + 4096);
			W64(h, 0x28, A(AR_AVAIL) + 2048);
			W64(h, 0x30, A(AR_USED) + 8192);
		}
	hostile__send_natural(c, 0, 4);
	(void)variant(c, 1);
	for (int i = 0; i < 48; i++)
		common_poke(c);
	kick(c);
}

static void region_garbage(struct actx *c, volatile uint8_t *base, uint64_t span, int n)
{
	static const unsigned int widths[] = { 1, 2, 4, 8 };

	for (int i = 0; i < n; i++) {
		unsigned int w = widths[rb(c, 4)];
		uint64_t off = rb(c, span);
		if (off + w > span)
			off = span - w;
		if (rb(c, 3))
			mw(base + off, w, rn(c));
		else
			(void)mr(base + off, w);
	}
}

static void a_isr_garbage(struct actx *c)
{
	struct hdev *h = c->h;

	hostile__setup(c);
	hostile__send_natural(c, 0, 4);
	(void)variant(c, 1);
	if (h->d.isr)
		region_garbage(c, h->d.isr, 8, 16);
	kick(c);
}

static void a_devcfg_garbage(struct actx *c)
{
	struct hdev *h = c->h;
	volatile uint8_t *cfg = h->d.devcfg ? h->d.devcfg : h->d.bar0 ? h->d.bar0 + 0x1800 : 0;

	hostile__setup(c);
	hostile__send_natural(c, 0, 4);
	(void)variant(c, 1);
	if (cfg)
		region_garbage(c, cfg, 0x800, 48);
	kick(c);
}

static void a_msix_garbage(struct actx *c)
{
	struct hdev *h = c->h;

	hostile__setup(c);
	hostile__send_natural(c, 0, 4);
	(void)variant(c, 1);
	if (h->d.msix_table)
		region_garbage(c, h->d.msix_table, 16 * h->d.msix_n + 16, 32);
	if (h->d.msix_pba)
		region_garbage(c, h->d.msix_pba, 16, 8);
	kick(c);
}

static void a_status_early(struct actx *c)
{
	struct hdev *h = c->h;

	W8(h, 0x14, 1);
	W8(h, 0x14, 3);
	W32(h, 0x08, 0);
	W32(h, 0x0c, (uint32_t)hostile__def_features(h));
	W32(h, 0x08, 1);
	W32(h, 0x0c, (uint32_t)(hostile__def_features(h) >> 32));
	W8(h, 0x14, variant(c, 2) ? 1 | 2 | 4 : 4);           /* DRIVER_OK, no FEATURES_OK */
	c->qsize = hostile__queue(h, c->q, QS, (uint64_t)c->desc, (uint64_t)c->avail, (uint64_t)c->used, 1);
	if (!c->qsize || c->qsize > 1024)
		c->qsize = QS;
	c->avail[0] = 1;
	hostile__send_natural(c, 0, 4);
	kick(c);
}

static const char *a_status_unoffered_check(struct actx *c)
{
	struct hdev *h = c->h;
	uint64_t off = h->d.offered, f;

	W8(h, 0x14, 1);
	W8(h, 0x14, 3);
	switch (variant(c, 3)) {
	case 0: f = ~0ull; break;
	case 1: f = F_V1 | ~off; break;
	default: {
		/* what was offered and one bit that was not */
		uint64_t bit;
		do
			bit = 1ull << rb(c, 64);
		while (off & bit);
		f = off | bit;
	}
	}
	W32(h, 0x08, 0);
	W32(h, 0x0c, (uint32_t)f);
	W32(h, 0x08, 1);
	W32(h, 0x0c, (uint32_t)(f >> 32));
	W8(h, 0x14, 3 | 8);
	if (status(h) & 8)
		return hostile__fail(h, "FEATURES_OK accepted with features the device never offered");
	h->t.refused++;
	/* go on regardless: a queue, DRIVER_OK, a request */
	c->qsize = hostile__queue(h, c->q, QS, (uint64_t)c->desc, (uint64_t)c->avail, (uint64_t)c->used, 1);
	if (!c->qsize || c->qsize > 1024)
		c->qsize = QS;
	c->avail[0] = 1;
	W8(h, 0x14, 3 | 4);
	hostile__send_natural(c, 0, 4);
	kick(c);
	return 0;
}

static void a_status_clear(struct actx *c)
{
	struct hdev *h = c->h;
	static const uint8_t vals[] = { 1 | 2 | 8, 1 | 2 | 4, 1 | 4 | 8, 2 | 4 | 8, 1, 8, 4, 0x80 };

	hostile__setup(c);
	W8(h, 0x14, vals[variant(c, 8)]);
	hostile__send_natural(c, 0, 4);
	kick(c);
}

static void a_status_random(struct actx *c)
{
	struct hdev *h = c->h;

	hostile__setup(c);
	(void)variant(c, 1);
	for (int i = 0; i < 8; i++) {
		uint8_t v = (uint8_t)(rn(c) & ~0x30u);
		if (!v)
			v = 0x80;
		W8(h, 0x14, v);
		/* features after FEATURES_OK: must not change what was accepted */
		W32(h, 0x08, (uint32_t)rb(c, 3));
		W32(h, 0x0c, (uint32_t)rn(c));
	}
	hostile__send_natural(c, 0, 4);
	kick(c);
}

static void a_status_reserved(struct actx *c)
{
	struct hdev *h = c->h;
	static const uint8_t bits[] = { 0x10, 0x20, 0x30 };

	hostile__setup(c);
	W8(h, 0x14, (uint8_t)(status(h) | bits[variant(c, 3)]));
	hostile__send_natural(c, 0, 4);
	kick(c);
}

static const char *a_qsel_check(struct actx *c)
{
	struct hdev *h = c->h;
	static const uint16_t sels[] = { 0, 0x8000, 0xffff };
	uint16_t sel;

	if (!hostile__features(h, hostile__def_features(h)))
		h->t.refused++;
	c->qsize = hostile__queue(h, c->q, QS, (uint64_t)c->desc, (uint64_t)c->avail, (uint64_t)c->used, 0);
	if (!c->qsize || c->qsize > 1024)
		c->qsize = QS;
	switch (variant(c, 4)) {
	case 0: sel = h->nq; break;
	case 1: sel = (uint16_t)(h->nq + 2); break;
	default: sel = sels[hostile__cur_variant - 1]; break;
	}
	W16(h, 0x16, sel);
	W16(h, 0x18, 8);
	W64(h, 0x20, 0xdead000000000000ull);
	W64(h, 0x28, A(AR_DATA));
	W64(h, 0x30, 0);
	W16(h, 0x1a, 0);
	W16(h, 0x1c, 1);
	if (R16(h, 0x18) != 0 || R16(h, 0x1c) != 0)
		return hostile__fail(h, "a queue beyond num_queues reads as present (size or enable not 0)");
	W16(h, 0x16, c->q);
	if (R64(h, 0x20) != (uint64_t)c->desc || R64(h, 0x28) != (uint64_t)c->avail ||
	    R64(h, 0x30) != (uint64_t)c->used || R16(h, 0x18) != c->qsize)
		return hostile__fail(h, "writes to a queue beyond num_queues changed a real queue");
	c->avail[0] = 1;
	W16(h, 0x1c, 1);
	hostile__ready(h);
	hostile__send_natural(c, 0, 4);
	kick(c);
	return 0;
}

/* the VIRTIO_PCI_CAP_PCI_CFG window with garbage: bar, offset, length */
static void a_pcicfg_window(struct actx *c)
{
	struct hdev *h = c->h;
	uint32_t cap = h->d.pcicfg_cap, dev = h->d.pcidev;
	static const uint32_t bars[] = { 0, 1, 5, 6, 0xff };
	static const uint32_t lens[] = { 0, 3, 8, 0xffffffffu, 1, 2, 4, 4 };

	hostile__setup(c);
	hostile__send_natural(c, 0, 4);
	(void)variant(c, 1);
	if (!cap) {
		kick(c);
		return;
	}
	for (int i = 0; i < 12; i++) {
		uint32_t bar = bars[rb(c, 5)], len = lens[rb(c, 8)], off;
		int safe = 0;

		switch (rb(c, 4)) {
		case 0: off = (uint32_t)rn(c); break;
		case 1: off = 0x4000 - (uint32_t)rb(c, 8); break;
		case 2: off = 0xfffffffcu; break;
		default: off = (uint32_t)rb(c, 0x4000); break;
		}
		/* through a valid window, write only where garbage cannot point the device into RAM */
		if (bar == 0 && (len == 1 || len == 2 || len == 4) && !(off & (len - 1)) && off + len <= 0x4000)
			safe = off == 0x14 || (off >= 0x1000 && off < 0x2000) || off >= 0x3000;
		pcicfg(dev, cap + 4, bar, 1);
		pcicfg(dev, cap + 8, off, 1);
		pcicfg(dev, cap + 12, len, 1);
		if (rb(c, 2) && (safe || !(bar == 0 && (len == 1 || len == 2 || len == 4))))
			pcicfg(dev, cap + 16, (uint32_t)rn(c), 1);
		else
			(void)pcicfg(dev, cap + 16, 0, 0);
	}
	pcicfg(dev, cap + 4, 0, 1);
	pcicfg(dev, cap + 8, 0, 1);
	pcicfg(dev, cap + 12, 0, 1);
	kick(c);
}

/* PCI configuration: memory decoding off, BAR 0 sized, moved, put back; a
 * request notified meanwhile at the old address.  A device that serves it
 * while its BAR does not decode there is counted (served-bar-off). */
static void a_pci_bar_command(struct actx *c)
{
	struct hdev *h = c->h;
	uint32_t dev = h->d.pcidev, cmd = pcicfg(dev, 0x04, 0, 0), bar = pcicfg(dev, 0x10, 0, 0);
	uint64_t v = variant(c, 4);
	static const uint32_t moves[] = { 0xfee00000u, 0xd0000000u, 0x00100000u };

	hostile__setup(c);
	hostile__send_natural(c, 0, 4);
	switch (v) {
	case 0:                                 /* memory decoding off */
		pcicfg(dev, 0x04, cmd & ~2u, 1);
		break;
	case 1:                                 /* sizing: all ones */
		pcicfg(dev, 0x10, 0xffffffffu, 1);
		(void)pcicfg(dev, 0x10, 0, 0);
		break;
	default:                                /* elsewhere: the LAPIC, the hole, RAM */
		pcicfg(dev, 0x10, moves[rb(c, 3)] | (bar & 0xf), 1);
		break;
	}
	if (v == 2) {
		/* another device's BAR, if there is one */
		for (int i = 0; i < 4; i++)
			if (hostile__devs[i].present && &hostile__devs[i] != h && hostile__devs[i].d.bar0)
				pcicfg(dev, 0x10, (uint32_t)(uint64_t)hostile__devs[i].d.bar0 | (bar & 0xf), 1);
	}
	/* garbage into where the registers were */
	for (int i = 0; i < 8; i++)
		mw(h->d.common + rb(c, 0x38), 1, rn(c));
	kick(c);
	c->bar_off = 1;
	c->pci_cmd = cmd;
	c->pci_bar = bar;
}

/* ------------------------------------------------------------------ */
/* this file's part of the table (hostile.c merges them) */

const struct kind hostile__regs_kinds[TG_HA_N] = {
	[TG_HA_COMMON_RANDOM] = { a_common_random, 0, D_ALL },
	[TG_HA_ISR_GARBAGE] = { a_isr_garbage, 0, D_ALL },
	[TG_HA_DEVCFG_GARBAGE] = { a_devcfg_garbage, 0, D_ALL },
	[TG_HA_MSIX_GARBAGE] = { a_msix_garbage, 0, D_ALL },
	[TG_HA_STATUS_EARLY] = { a_status_early, 0, D_ALL },
	[TG_HA_STATUS_UNOFFERED] = { 0, a_status_unoffered_check, D_ALL },
	[TG_HA_STATUS_CLEAR] = { a_status_clear, 0, D_ALL },
	[TG_HA_STATUS_RANDOM] = { a_status_random, 0, D_ALL },
	[TG_HA_STATUS_RESERVED] = { a_status_reserved, 0, D_ALL },
	[TG_HA_QSEL_GARBAGE] = { 0, a_qsel_check, D_ALL },
	[TG_HA_PCICFG_WINDOW] = { a_pcicfg_window, 0, D_ALL },
	[TG_HA_PCI_BAR_COMMAND] = { a_pci_bar_command, 0, D_ALL },
};
