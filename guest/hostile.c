/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest: the hostile workload, in ring 3 on CPU 0.
 *
 * Every round, each virtio device found (virtio-rnd, -console, -blk, -net)
 * suffers TG_HOSTILE_PER_ROUND attacks, chosen from the kinds in work.h
 * (TG_HOSTILE_ATTACKS) by a seeded order that goes through all of them:
 * garbage in descriptors, rings, queue registers, the common and device
 * configuration, the ISR, the notification area, the MSI-X table, the
 * PCI_CFG window and the status, and malformed device requests.  After each
 * attack the driver notifies, then watches the used ring and the status
 * for a bounded time (a broken request may legitimately never be answered;
 * DEVICE_NEEDS_RESET is a legitimate answer), resets the device (status 0,
 * which must read back 0), sets it up again on clean rings and performs one
 * valid request, which must succeed: a recovery.
 *
 * Memory: everything the device is given lives in `hostile__arena`, pages of rings,
 * indirect tables and data between canary pages that are never handed to
 * it.  After an attack the canaries, the clean pages (rings of the valid
 * request), page 0 (where an address that wraps around 2^64 lands) and the
 * last page of RAM (where a buffer straddling its end starts) must be
 * unchanged; after the reset the attack's pages are filled with a pattern
 * that must survive the valid request (nothing written late into rings the
 * device was told to forget).  Addresses inside RAM given to the device are
 * always inside the arena: a device that writes where it was told to is
 * right, so the rings may be placed on top of each other, but never on top
 * of the guest.
 *
 * The digest sees only the rounds and the recoveries; how the devices
 * reacted (answered, needs reset, IOERR, nothing) may legitimately differ
 * and is printed, per device, by tg_hostile_summary.  What the
 * specification forbids a device (accepting features it never offered,
 * writing outside the buffers, not resetting, failing a valid request after
 * a reset) is a FAIL.
 */
#include <stddef.h>

#include "hostile.h"
#include "hostile_internal.h"

void *memcpy(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);

#define HWAIT           (1ull << 23)    /* ~3 ms of TSC: bounded wait after an attack */
#define VWAIT           (1ull << 34)    /* ~6 s: the valid request after a reset */

uint8_t hostile__arena[AR_PAGES][PAGE] __attribute__((aligned(4096)));
static uint8_t snap0[PAGE], snaptop[PAGE];

struct hdev hostile__devs[4] = {
	{ .name = "rng", .pci_id = 0x1044, .bit = D_RNG, .vq = 0 },
	{ .name = "console", .pci_id = 0x1043, .bit = D_CON, .vq = 1 },
	{ .name = "blk", .pci_id = 0x1042, .bit = D_BLK, .vq = 0 },
	{ .name = "net", .pci_id = 0x1041, .bit = D_NET, .vq = 1 },
};

static const struct tg_params *P;
static uint64_t cur_round;
static int cur_kind;
uint64_t hostile__cur_variant;
static char msg[256];
static uint64_t top_page;               /* the last page of low RAM, or 0: not checked */

extern uint64_t pd_win[TG_WIN_MAX_PD][512];

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

/* "hostile: DEV round R attack NAME (variant V): what" */
const char *hostile__fail(struct hdev *h, const char *what)
{
	char *p = tg_stpcpy(msg, "hostile: ");
	p = tg_stpcpy(p, h->name);
	p = tg_stpcpy(p, " round ");
	p = tg_fmt_u64(p, cur_round);
	if (cur_kind >= 0) {
		p = tg_stpcpy(p, " attack ");
		p = tg_stpcpy(p, tg_hostile_names[cur_kind]);
		p = tg_stpcpy(p, " (variant ");
		p = tg_fmt_u64(p, hostile__cur_variant);
		p = tg_stpcpy(p, ")");
	}
	p = tg_stpcpy(p, ": ");
	tg_stpcpy(p, what);
	return msg;
}

/* "what at 0xADDR" */
static const char *hfail_at(struct hdev *h, const char *what, uint64_t addr)
{
	static char b[128];
	char *p = tg_stpcpy(b, what);
	p = tg_stpcpy(p, " at 0x");
	tg_fmt_hex16(p, addr);
	return hostile__fail(h, b);
}

/* ------------------------------------------------------------------ */
/* memory: patterns, canaries, snapshots */

static void pfill(void *p, uint64_t bytes, uint64_t key)
{
	uint64_t *w = p;
	for (uint64_t i = 0; i < bytes / 8; i++)
		w[i] = key + (uint64_t)&w[i] * GOLDEN;
}

/* the first word that is not the pattern, or 0 */
static uint64_t pcheck(const void *p, uint64_t bytes, uint64_t key)
{
	const uint64_t *w = p;
	for (uint64_t i = 0; i < bytes / 8; i++)
		if (w[i] != key + (uint64_t)&w[i] * GOLDEN)
			return (uint64_t)&w[i];
	return 0;
}

void hostile__pzero(void *p, uint64_t bytes)
{
	uint64_t *w = p;
	for (uint64_t i = 0; i < bytes / 8; i++)
		w[i] = 0;
}

/* page 0: read through a laundered pointer (the compiler knows NULL) */
static uint8_t *page0(void)
{
	uint8_t *p = 0;
	asm volatile("" : "+r"(p));
	return p;
}

static void snap_take(void)
{
	memcpy(snap0, page0(), PAGE);
	if (top_page)
		memcpy(snaptop, (void *)top_page, PAGE);
}

/* canaries (key), clean pages (key ^ 2), page 0 and the top page unchanged */
static const char *check_outside(struct hdev *h, uint64_t key, const char *when)
{
	static char what[96];
	uint64_t a;

	for (unsigned int i = 0; i < sizeof(canary_pages); i++)
		if ((a = pcheck(hostile__arena[canary_pages[i]], PAGE, key))) {
			tg_stpcpy(tg_stpcpy(what, "a canary page written "), when);
			return hfail_at(h, what, a);
		}
	if ((a = pcheck(hostile__arena[AR_CLEAN], PAGE, key ^ 2)) ||
	    (a = pcheck(hostile__arena[AR_CBUF], PAGE, key ^ 2))) {
		tg_stpcpy(tg_stpcpy(what, "a page the device was not given written "), when);
		return hfail_at(h, what, a);
	}
	if (memcmp(snap0, page0(), PAGE)) {
		tg_stpcpy(tg_stpcpy(what, "guest page 0 written "), when);
		return hostile__fail(h, what);
	}
	if (top_page && memcmp(snaptop, (void *)top_page, PAGE)) {
		tg_stpcpy(tg_stpcpy(what, "the last page of RAM written "), when);
		return hfail_at(h, what, top_page);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* the transport, driver side */

static const char *hreset(struct hdev *h)
{
	W8(h, 0x14, 0);
	for (uint32_t i = 0; i < 100000; i++)
		if (status(h) == 0)
			return 0;
	return hostile__fail(h, "the status does not read 0 after a reset");
}

/* ACKNOWLEDGE, DRIVER, features, FEATURES_OK: 1 if the device accepted them */
int hostile__features(struct hdev *h, uint64_t f)
{
	W8(h, 0x14, 1);
	W8(h, 0x14, 3);
	W32(h, 0x08, 0);
	W32(h, 0x0c, (uint32_t)f);
	W32(h, 0x08, 1);
	W32(h, 0x0c, (uint32_t)(f >> 32));
	W8(h, 0x14, 3 | 8);
	return (status(h) & 8) != 0;
}

/* select queue q, ask for `size` (0: keep), the three ring addresses, enable if asked;
 * the size the device has */
uint16_t hostile__queue(struct hdev *h, uint16_t q, uint16_t size, uint64_t desc, uint64_t drv,
                        uint64_t dev, int enable)
{
	W16(h, 0x16, q);
	if (size)
		W16(h, 0x18, size);
	size = R16(h, 0x18);
	W64(h, 0x20, desc);
	W64(h, 0x28, drv);
	W64(h, 0x30, dev);
	if (enable)
		W16(h, 0x1c, 1);
	return size;
}

void hostile__ready(struct hdev *h)
{
	W8(h, 0x14, (uint8_t)(status(h) | 4));
}

void hostile__notify(struct hdev *h, uint16_t q)
{
	mw(h->d.notify_base + (uint64_t)h->noff[q < 4 ? q : 0] * h->d.notify_mult, 2, q);
}

/* ------------------------------------------------------------------ */
/* the valid request, on clean rings after a reset: it must succeed */

static const char *recover(struct hdev *h)
{
	struct desc *dt = (struct desc *)hostile__arena[AR_CLEAN];
	volatile uint16_t *av = (volatile uint16_t *)(hostile__arena[AR_CLEAN] + 1024);
	volatile uint16_t *us = (volatile uint16_t *)(hostile__arena[AR_CLEAN] + 2048);
	volatile uint32_t *ue = (volatile uint32_t *)(us + 2);
	uint8_t *b = hostile__arena[AR_CBUF];
	uint64_t t0;
	int n = 0;

	hostile__pzero(hostile__arena[AR_CLEAN], PAGE);
	hostile__pzero(b, PAGE);
	if (!hostile__features(h, F_V1))
		return hostile__fail(h, "FEATURES_OK (VERSION_1 only) refused after a reset");
	if (hostile__queue(h, h->vq, 16, (uint64_t)dt, (uint64_t)av, (uint64_t)us, 0) != 16)
		return hostile__fail(h, "queue size 16 not taken after a reset");
	av[0] = 1;                              /* no interrupts: we poll */
	W16(h, 0x1c, 1);
	if (R16(h, 0x1c) != 1)
		return hostile__fail(h, "the queue does not enable after a reset");
	hostile__ready(h);
	switch (h->bit) {
	case D_RNG:
		dt[n++] = (struct desc){ (uint64_t)b, 64, D_WRITE, 0 };
		break;
	case D_CON:
		tg_stpcpy((char *)b, "hostile: ok\n");
		dt[n++] = (struct desc){ (uint64_t)b, 12, 0, 0 };
		break;
	case D_BLK:
		*(uint32_t *)b = 0;             /* IN, sector 0 */
		*(uint64_t *)(b + 8) = 0;
		b[2048] = 0xff;
		dt[n++] = (struct desc){ (uint64_t)b, 16, D_NEXT, 1 };
		dt[n++] = (struct desc){ (uint64_t)(b + 512), 512, D_WRITE | D_NEXT, 2 };
		dt[n++] = (struct desc){ (uint64_t)(b + 2048), 1, D_WRITE, 0 };
		break;
	case D_NET:
		for (int i = 0; i < 6; i++)
			b[12 + i] = 0xff;
		b[18] = 0x52; b[19] = 0x54; b[20] = 0; b[21] = 0x12; b[22] = 0x34; b[23] = 0x56;
		b[24] = TG_NET_ETHERTYPE >> 8;
		b[25] = TG_NET_ETHERTYPE & 0xff;
		tg_stpcpy((char *)b + 26, "khyvehst");
		dt[n++] = (struct desc){ (uint64_t)b, 12 + 60, 0, 0 };
		break;
	}
	av[2] = 0;
	__atomic_store_n(&av[1], 1, __ATOMIC_RELEASE);
	hostile__notify(h, h->vq);
	t0 = rdtsc();
	while (__atomic_load_n(&us[1], __ATOMIC_ACQUIRE) != 1) {
		if (rdtsc() - t0 > VWAIT)
			return hostile__fail(h, (status(h) & 0x40) ?
			                     "the valid request after a reset: device needs reset" :
			                     "the valid request after a reset was not completed");
		asm volatile("pause");
	}
	if (ue[0] != 0)
		return hostile__fail(h, "the valid request after a reset came back with another id");
	if (h->bit == D_BLK && b[2048] != 0) {
		static char w[64];
		tg_fmt_u64(tg_stpcpy(w, "reading sector 0 after a reset failed, status "), b[2048]);
		return hostile__fail(h, w);
	}
	if (h->bit == D_RNG && (ue[1] == 0 || ue[1] > 64))
		return hostile__fail(h, "the valid read after a reset returned no bytes or too many");
	return 0;
}

/* ------------------------------------------------------------------ */
/* the table: kind -> (attack, devices), put together from the parts the
 * files of attacks export, so that their attacks can stay static */

static struct kind kinds[TG_HA_N];

static void kinds_merge(void)
{
	static const struct kind *const parts[] = {
		hostile__ring_kinds, hostile__regs_kinds, hostile__dev_kinds,
	};

	for (int k = 0; k < TG_HA_N; k++)
		for (unsigned int i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
			if (parts[i][k].devs)
				kinds[k] = parts[i][k];
}

/* ------------------------------------------------------------------ */
/* running one attack */

/* watch the used ring(s) and the status for a bounded time; tally the reaction */
static void observe(struct actx *c)
{
	struct hdev *h = c->h;
	uint64_t t0 = rdtsc();
	uint8_t st = 0;
	int moved = 0;

	for (uint64_t spins = 0;; spins++) {
		uint16_t u = __atomic_load_n(&c->used[1], __ATOMIC_ACQUIRE);
		uint16_t u2 = c->used2 ? __atomic_load_n(&c->used2[1], __ATOMIC_ACQUIRE) : 0;
		moved = u != 0 || u2 != 0;
		if (c->want && u == c->want && (!c->used2 || u2 == c->want2))
			break;
		if (!c->bar_off && (spins & 63) == 0 && ((st = status(h)) & 0x40))
			break;
		if (rdtsc() - t0 > HWAIT)
			break;
		asm volatile("pause");
	}
	if (c->bar_off) {
		/* the BAR back where it was, decoding again */
		pcicfg(h->d.pcidev, 0x10, c->pci_bar, 1);
		pcicfg(h->d.pcidev, 0x04, c->pci_cmd, 1);
		if (moved)
			h->t.served_bar_off++;
	}
	st = status(h);
	if (st & 0x40)
		h->t.needs_reset++;
	else if (moved)
		h->t.answered++;
	else
		h->t.unanswered++;
	for (int i = 0; i < c->nst; i++) {
		if (*c->st[i] == 1)
			h->t.ioerr++;
		else if (*c->st[i] == 2)
			h->t.unsupp++;
	}
	/* virtio-net: the link must stay up (VIRTIO_NET_F_STATUS, status at 6) */
	if (h->bit == D_NET && h->d.devcfg && (h->d.offered & (1ull << 16)) && !(h->d.devcfg[6] & 1))
		h->t.link_down++;
	if (P->hostlog) {
		static char line[200];
		char *p = tg_stpcpy(line, "hostile ");
		p = tg_stpcpy(p, h->name);
		p = tg_stpcpy(p, " ");
		p = tg_stpcpy(p, tg_hostile_names[cur_kind]);
		p = tg_stpcpy(p, " v");
		p = tg_fmt_u64(p, hostile__cur_variant);
		p = tg_stpcpy(p, st & 0x40 ? ": needs-reset" : moved ? ": answered" : ": unanswered");
		p = tg_stpcpy(p, " status=0x");
		*p++ = "0123456789abcdef"[st >> 4];
		*p++ = "0123456789abcdef"[st & 15];
		p = tg_stpcpy(p, " used=");
		p = tg_fmt_u64(p, __atomic_load_n(&c->used[1], __ATOMIC_ACQUIRE));
		for (int i = 0; i < c->nst; i++) {
			p = tg_stpcpy(p, i ? "," : " blk-status=");
			p = tg_fmt_u64(p, *c->st[i]);
		}
		tg_stpcpy(p, "\n");
		sys(TG_SYS_WRITE, (long)line, (long)tg_strlen(line), 0);
	}
}

static void hold(void)
{
	uint64_t t;

	if (!P->hosthold)
		return;
	t = tg_cpus[0].ticks + (P->hosthold + 9) / 10;
	while ((int64_t)(tg_cpus[0].ticks - t) < 0)
		asm volatile("pause");
}

static const char *attack(struct hdev *h, int kind, uint64_t seed)
{
	struct actx c = {
		.h = h, .r = seed, .q = h->vq, .qsize = QS,
		.desc = (struct desc *)A(AR_DESC),
		.avail = (volatile uint16_t *)A(AR_AVAIL), .used = (volatile uint16_t *)A(AR_USED),
	};
	uint64_t key = tg_mix64(seed ^ 0x63616e6172793121ULL), a;
	const char *e;

	cur_kind = kind;
	hostile__cur_variant = 0;
	if ((e = hreset(h)))
		return e;
	for (unsigned int i = 0; i < sizeof(canary_pages); i++)
		pfill(hostile__arena[canary_pages[i]], PAGE, key);
	for (unsigned int i = 0; i < sizeof(ring_pages); i++)
		hostile__pzero(hostile__arena[ring_pages[i]], 4 * PAGE);
	pfill(hostile__arena[AR_DATA], DATA_BYTES, key ^ 1);
	pfill(hostile__arena[AR_CLEAN], PAGE, key ^ 2);
	pfill(hostile__arena[AR_CBUF], PAGE, key ^ 2);
	snap_take();

	h->t.attacks++;
	if (kinds[kind].cfn) {
		if ((e = kinds[kind].cfn(&c)))
			return e;
	} else {
		kinds[kind].fn(&c);
	}
	if (!c.nowait)
		observe(&c);
	else if (P->hostlog) {
		static char line[120];
		char *p = tg_stpcpy(tg_stpcpy(tg_stpcpy(line, "hostile "), h->name), " ");
		tg_stpcpy(tg_stpcpy(p, tg_hostile_names[kind]), ": reset at once\n");
		sys(TG_SYS_WRITE, (long)line, (long)tg_strlen(line), 0);
	}
	hold();
	if ((e = check_outside(h, key, "by the attack")))
		return e;

	/* reset; whatever the attack left must stay as it is from now on */
	if ((e = hreset(h)))
		return e;
	for (unsigned int i = 0; i < sizeof(ring_pages); i++)
		pfill(hostile__arena[ring_pages[i]], 4 * PAGE, key ^ 3);
	pfill(hostile__arena[AR_DATA], DATA_BYTES, key ^ 3);
	pfill(hostile__arena[AR_CLEAN], PAGE, key ^ 2);
	pfill(hostile__arena[AR_CBUF], PAGE, key ^ 2);
	if ((e = recover(h)))
		return e;
	for (unsigned int i = 0; i < sizeof(ring_pages); i++)
		if ((a = pcheck(hostile__arena[ring_pages[i]], 4 * PAGE, key ^ 3)))
			return hfail_at(h, "the device wrote into the attack's rings after the reset", a);
	if ((a = pcheck(hostile__arena[AR_DATA], DATA_BYTES, key ^ 3)))
		return hfail_at(h, "the device wrote into the attack's buffers after the reset", a);
	for (unsigned int i = 0; i < sizeof(canary_pages); i++)
		if ((a = pcheck(hostile__arena[canary_pages[i]], PAGE, key)))
			return hfail_at(h, "canary page written by the valid request", a);
	if (memcmp(snap0, page0(), PAGE))
		return hostile__fail(h, "guest page 0 written after the attack");
	if (top_page && memcmp(snaptop, (void *)top_page, PAGE))
		return hfail_at(h, "the last page of RAM written after the attack", top_page);
	h->t.recoveries++;
	cur_kind = -1;
	return 0;
}

/* ------------------------------------------------------------------ */

static int applies(const struct hdev *h, int kind)
{
	return (kinds[kind].devs & h->bit) != 0;
}

const char *tg_hostile_init(const struct tg_params *p)
{
	int found = 0;

	P = p;
	cur_kind = -1;
	kinds_merge();
	/* the last page of low RAM, if nothing of ours lives there */
	if (tg_info.top_page_free) {
		uint64_t pg = tg_info.ram_low_end - PAGE;
		top_page = pg;
		for (uint64_t b = 0; b < tg_info.win_size / (2ull << 20); b++)
			if ((pd_win[b >> 9][b & 511] & ~((2ull << 20) - 1)) == (pg & ~((2ull << 20) - 1)))
				top_page = 0;
	}
	for (int i = 0; i < 4; i++) {
		struct hdev *h = &hostile__devs[i];
		const char *e;

		if (p->hostattack >= 0 && !applies(h, p->hostattack))
			continue;
		if (tg_vpci_find(h->pci_id) < 0)
			continue;
		e = tg_vpci_open(h->name, h->name, h->pci_id, &h->d);
		if (e)
			return e;
		h->nq = R16(h, 0x12);
		if (h->nq <= h->vq)
			return hostile__fail(h, "fewer queues than the driver needs");
		if (h->nq > 4)
			h->nq = 4;
		for (uint16_t q = 0; q < h->nq; q++) {
			W16(h, 0x16, q);
			h->qmax[q] = R16(h, 0x18);
			h->noff[q] = R16(h, 0x1e);
			if (h->qmax[q] < 16)
				return hostile__fail(h, "a queue smaller than 16 entries");
		}
		if (h->bit == D_BLK) {
			if (!h->d.devcfg)
				return hostile__fail(h, "no device configuration");
			h->capacity = *(volatile uint32_t *)h->d.devcfg |
			              (uint64_t)*(volatile uint32_t *)(h->d.devcfg + 4) << 32;
			if (!h->capacity)
				return hostile__fail(h, "the disk is empty");
		}
		h->perm_seed = tg_mix64(p->seed ^ 0x686f737470726d31ULL ^ h->pci_id);
		h->present = 1;
		found++;
	}
	if (!found)
		return p->hostattack >= 0 ? "hostile: no virtio device this attack applies to" :
		                            "hostile: no virtio device (virtio-rnd, -console, -blk or -net)";
	/* a clean state: every device reset, the first attack starts from there */
	for (int i = 0; i < 4; i++)
		if (hostile__devs[i].present) {
			const char *e = hreset(&hostile__devs[i]);
			if (e)
				return e;
		}
	return 0;
}

/* attack j (0-based, over the whole run) on device h: a seeded order that
 * goes through every kind that applies before repeating one */
static int pick(const struct hdev *h, uint64_t j)
{
	int list[TG_HA_N], n = 0;
	uint64_t cycle, s;

	if (P->hostattack >= 0)
		return P->hostattack;
	for (int k = 0; k < TG_HA_N; k++)
		if (applies(h, k))
			list[n++] = k;
	/* Fisher-Yates, seeded per cycle of n attacks */
	cycle = j / (uint64_t)n;
	s = tg_mix64(h->perm_seed + cycle * GOLDEN);
	for (int k = n - 1; k > 0; k--) {
		int r, t;
		s += GOLDEN;
		r = (int)(tg_mix64(s) % (uint64_t)(k + 1));
		t = list[k];
		list[k] = list[r];
		list[r] = t;
	}
	return list[j % (uint64_t)n];
}

const char *tg_hostile_round(uint64_t round, uint64_t *recoveries)
{
	uint64_t min = ~0ull;

	cur_round = round;
	for (int i = 0; i < 4; i++) {
		struct hdev *h = &hostile__devs[i];
		uint64_t before = h->t.recoveries;

		if (!h->present)
			continue;
		for (uint64_t j = 0; j < TG_HOSTILE_PER_ROUND; j++) {
			uint64_t n = (round - 1) * TG_HOSTILE_PER_ROUND + j;
			const char *e = attack(h, pick(h, n), tg_mix64(P->seed ^ tg_mix64(n * GOLDEN + h->pci_id)));
			if (e)
				return e;
		}
		if (h->t.recoveries - before < min)
			min = h->t.recoveries - before;
	}
	*recoveries = min;
	return 0;
}

void tg_hostile_summary(void (*out)(const char *line))
{
	static char line[256];

	for (int i = 0; i < 4; i++) {
		const struct hdev *h = &hostile__devs[i];
		char *p;

		if (!h->present)
			continue;
		p = tg_stpcpy(line, "khyve-testguest: hostile ");
		p = tg_stpcpy(p, h->name);
		p = tg_stpcpy(p, ": attacks=");
		p = tg_fmt_u64(p, h->t.attacks);
		p = tg_stpcpy(p, " recoveries=");
		p = tg_fmt_u64(p, h->t.recoveries);
		p = tg_stpcpy(p, " answered=");
		p = tg_fmt_u64(p, h->t.answered);
		p = tg_stpcpy(p, " needs-reset=");
		p = tg_fmt_u64(p, h->t.needs_reset);
		p = tg_stpcpy(p, " unanswered=");
		p = tg_fmt_u64(p, h->t.unanswered);
		if (h->bit == D_BLK) {
			p = tg_stpcpy(p, " ioerr=");
			p = tg_fmt_u64(p, h->t.ioerr);
			p = tg_stpcpy(p, " unsupp=");
			p = tg_fmt_u64(p, h->t.unsupp);
		}
		p = tg_stpcpy(p, " features-refused=");
		p = tg_fmt_u64(p, h->t.refused);
		p = tg_stpcpy(p, " served-bar-off=");
		p = tg_fmt_u64(p, h->t.served_bar_off);
		if (h->bit == D_NET) {
			p = tg_stpcpy(p, " link-down=");
			p = tg_fmt_u64(p, h->t.link_down);
		}
		tg_stpcpy(p, "\n");
		out(line);
	}
}
