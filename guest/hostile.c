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
 * Memory: everything the device is given lives in `arena`, pages of rings,
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

#include "abi.h"
#include "hostile.h"
#include "vpci.h"
#include "work.h"

void *memcpy(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);

#define PAGE            4096ull
#define QS              16              /* queue size of most attacks */
#define HWAIT           (1ull << 23)    /* ~3 ms of TSC: bounded wait after an attack */
#define VWAIT           (1ull << 34)    /* ~6 s: the valid request after a reset */
#define GOLDEN          0x9e3779b97f4a7c15ULL

#define F_INDIRECT      VIRTIO_F_INDIRECT_DESC
#define F_EVENT_IDX     (1ull << 29)
#define F_V1            VIRTIO_F_VERSION_1

/* arena pages; the others (0, 5, 10, 15, 20, 53, 55, 57) are canaries */
enum {
	AR_DESC = 1,            /* 4 pages: a descriptor table of up to 1024 entries */
	AR_AVAIL = 6,           /* 4 pages */
	AR_USED = 11,           /* 4 pages */
	AR_ITAB = 16,           /* 4 pages: indirect tables */
	AR_DATA = 21,           /* 32 pages: buffers */
	AR_NDATA = 32,
	AR_CLEAN = 54,          /* the valid request's rings */
	AR_CBUF = 56,           /* the valid request's buffers */
	AR_PAGES = 58,
};
static const uint8_t canary_pages[] = { 0, 5, 10, 15, 20, 53, 55, 57 };
static const uint8_t ring_pages[] = { AR_DESC, AR_AVAIL, AR_USED, AR_ITAB };

static uint8_t arena[AR_PAGES][PAGE] __attribute__((aligned(4096)));
static uint8_t snap0[PAGE], snaptop[PAGE];

/* device types: bits for the attacks' applicability */
enum { D_RNG = 1, D_CON = 2, D_BLK = 4, D_NET = 8, D_ALL = 15 };

struct hdev {
	const char *name;
	uint16_t pci_id;
	uint32_t bit;
	uint16_t vq;                    /* queue of the valid request and most attacks */
	int present;
	struct vpci_dev d;
	uint16_t nq, qmax[4], noff[4];
	uint64_t capacity;              /* blk: sectors */
	uint64_t perm_seed;
	struct {
		uint64_t attacks, answered, needs_reset, unanswered, ioerr, unsupp, refused,
		         link_down, served_bar_off, recoveries;
	} t;
};

static struct hdev devs[4] = {
	{ .name = "rng", .pci_id = 0x1044, .bit = D_RNG, .vq = 0 },
	{ .name = "console", .pci_id = 0x1043, .bit = D_CON, .vq = 1 },
	{ .name = "blk", .pci_id = 0x1042, .bit = D_BLK, .vq = 0 },
	{ .name = "net", .pci_id = 0x1041, .bit = D_NET, .vq = 1 },
};

static const struct tg_params *P;
static uint64_t cur_round;
static int cur_kind;
static uint64_t cur_variant;
static char msg[256];
static uint64_t top_page;               /* the last page of low RAM, or 0: not checked */

extern uint64_t pd_win[TG_WIN_MAX_PD][512];

/* ------------------------------------------------------------------ */
/* small helpers */

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

static uint32_t pcicfg(uint32_t dev, uint32_t reg, uint32_t v, int write)
{
	return (uint32_t)sys(TG_SYS_PCICFG, dev << 11 | reg, v, write);
}

static void mw(volatile uint8_t *p, unsigned int w, uint64_t v)
{
	switch (w) {
	case 1: *(volatile uint8_t *)p = (uint8_t)v; break;
	case 2: *(volatile uint16_t *)p = (uint16_t)v; break;
	case 4: *(volatile uint32_t *)p = (uint32_t)v; break;
	default: *(volatile uint64_t *)p = v; break;
	}
}

static uint64_t mr(volatile uint8_t *p, unsigned int w)
{
	switch (w) {
	case 1: return *(volatile uint8_t *)p;
	case 2: return *(volatile uint16_t *)p;
	case 4: return *(volatile uint32_t *)p;
	default: return *(volatile uint64_t *)p;
	}
}

/* common configuration registers */
static void W8(struct hdev *h, unsigned int o, uint8_t v) { mw(h->d.common + o, 1, v); }
static void W16(struct hdev *h, unsigned int o, uint16_t v) { mw(h->d.common + o, 2, v); }
static void W32(struct hdev *h, unsigned int o, uint32_t v) { mw(h->d.common + o, 4, v); }
static uint8_t R8(struct hdev *h, unsigned int o) { return (uint8_t)mr(h->d.common + o, 1); }
static uint16_t R16(struct hdev *h, unsigned int o) { return (uint16_t)mr(h->d.common + o, 2); }
static uint32_t R32(struct hdev *h, unsigned int o) { return (uint32_t)mr(h->d.common + o, 4); }
static void W64(struct hdev *h, unsigned int o, uint64_t v)
{
	W32(h, o, (uint32_t)v);
	W32(h, o + 4, (uint32_t)(v >> 32));
}
static uint64_t R64(struct hdev *h, unsigned int o)
{
	return R32(h, o) | (uint64_t)R32(h, o + 4) << 32;
}

static uint8_t status(struct hdev *h) { return R8(h, 0x14); }

static uint64_t A(unsigned int page) { return (uint64_t)arena[page]; }

/* "hostile: DEV round R attack NAME (variant V): what" */
static const char *hfail(struct hdev *h, const char *what)
{
	char *p = tg_stpcpy(msg, "hostile: ");
	p = tg_stpcpy(p, h->name);
	p = tg_stpcpy(p, " round ");
	p = tg_fmt_u64(p, cur_round);
	if (cur_kind >= 0) {
		p = tg_stpcpy(p, " attack ");
		p = tg_stpcpy(p, tg_hostile_names[cur_kind]);
		p = tg_stpcpy(p, " (variant ");
		p = tg_fmt_u64(p, cur_variant);
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
	return hfail(h, b);
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

static void pzero(void *p, uint64_t bytes)
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
		if ((a = pcheck(arena[canary_pages[i]], PAGE, key))) {
			tg_stpcpy(tg_stpcpy(what, "a canary page written "), when);
			return hfail_at(h, what, a);
		}
	if ((a = pcheck(arena[AR_CLEAN], PAGE, key ^ 2)) || (a = pcheck(arena[AR_CBUF], PAGE, key ^ 2))) {
		tg_stpcpy(tg_stpcpy(what, "a page the device was not given written "), when);
		return hfail_at(h, what, a);
	}
	if (memcmp(snap0, page0(), PAGE)) {
		tg_stpcpy(tg_stpcpy(what, "guest page 0 written "), when);
		return hfail(h, what);
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
	return hfail(h, "the status does not read 0 after a reset");
}

/* ACKNOWLEDGE, DRIVER, features, FEATURES_OK: 1 if the device accepted them */
static int hfeatures(struct hdev *h, uint64_t f)
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
static uint16_t hqueue(struct hdev *h, uint16_t q, uint16_t size, uint64_t desc, uint64_t drv,
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

static void hready(struct hdev *h)
{
	W8(h, 0x14, (uint8_t)(status(h) | 4));
}

static void hnotify(struct hdev *h, uint16_t q)
{
	mw(h->d.notify_base + (uint64_t)h->noff[q < 4 ? q : 0] * h->d.notify_mult, 2, q);
}

/* ------------------------------------------------------------------ */
/* the valid request, on clean rings after a reset: it must succeed */

static const char *recover(struct hdev *h)
{
	struct desc *dt = (struct desc *)arena[AR_CLEAN];
	volatile uint16_t *av = (volatile uint16_t *)(arena[AR_CLEAN] + 1024);
	volatile uint16_t *us = (volatile uint16_t *)(arena[AR_CLEAN] + 2048);
	volatile uint32_t *ue = (volatile uint32_t *)(us + 2);
	uint8_t *b = arena[AR_CBUF];
	uint64_t t0;
	int n = 0;

	pzero(arena[AR_CLEAN], PAGE);
	pzero(b, PAGE);
	if (!hfeatures(h, F_V1))
		return hfail(h, "FEATURES_OK (VERSION_1 only) refused after a reset");
	if (hqueue(h, h->vq, 16, (uint64_t)dt, (uint64_t)av, (uint64_t)us, 0) != 16)
		return hfail(h, "queue size 16 not taken after a reset");
	av[0] = 1;                              /* no interrupts: we poll */
	W16(h, 0x1c, 1);
	if (R16(h, 0x1c) != 1)
		return hfail(h, "the queue does not enable after a reset");
	hready(h);
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
	hnotify(h, h->vq);
	t0 = rdtsc();
	while (__atomic_load_n(&us[1], __ATOMIC_ACQUIRE) != 1) {
		if (rdtsc() - t0 > VWAIT)
			return hfail(h, (status(h) & 0x40) ? "the valid request after a reset: device needs reset" :
			             "the valid request after a reset was not completed");
		asm volatile("pause");
	}
	if (ue[0] != 0)
		return hfail(h, "the valid request after a reset came back with another id");
	if (h->bit == D_BLK && b[2048] != 0) {
		static char w[64];
		tg_fmt_u64(tg_stpcpy(w, "reading sector 0 after a reset failed, status "), b[2048]);
		return hfail(h, w);
	}
	if (h->bit == D_RNG && (ue[1] == 0 || ue[1] > 64))
		return hfail(h, "the valid read after a reset returned no bytes or too many");
	return 0;
}

/* ------------------------------------------------------------------ */
/* an attack's context */

struct actx {
	struct hdev *h;
	uint64_t r;                     /* random state */
	uint16_t q, qsize;              /* the queue attacked */
	struct desc *desc;
	volatile uint16_t *avail, *used;
	uint16_t aidx;                  /* avail idx published */
	uint16_t want;                  /* used idx when all is answered (0: none expected) */
	volatile uint16_t *used2;       /* a second queue watched (net: receiveq) */
	uint16_t want2;
	int nowait;                     /* reset at once, no waiting */
	volatile uint8_t *st[8];        /* blk status bytes */
	int nst;
	uint8_t sti;                    /* next status byte slot */
	uint64_t features;
	int bar_off;                    /* pci-bar-command: put back after observing */
	uint32_t pci_cmd, pci_bar;
};

struct chain {
	struct desc d[48];
	int n;
};

static uint64_t rn(struct actx *c)
{
	c->r += GOLDEN;
	return tg_mix64(c->r);
}

static uint64_t rb(struct actx *c, uint64_t n)
{
	return n ? rn(c) % n : 0;
}

/* pick one of n variants (recorded for the FAIL message) */
static uint64_t variant(struct actx *c, uint64_t n)
{
	cur_variant = rb(c, n);
	return cur_variant;
}

static uint8_t *data(unsigned int k) { return arena[AR_DATA] + (uint64_t)k * 512; }
#define DATA_BYTES (AR_NDATA * PAGE)

static void ch_add(struct chain *ch, uint64_t a, uint32_t len, uint16_t flags)
{
	if (ch->n < 48)
		ch->d[ch->n++] = (struct desc){ a, len, flags, 0 };
}

/* A net frame of len bytes (>= 26) after a 12-byte zero header, at p */
static void net_frame(uint8_t *p, uint32_t len)
{
	pzero(p, 12);
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
static uint64_t blk_hdr(unsigned int k, uint32_t type, uint64_t sector)
{
	uint8_t *p = data(k);
	*(uint32_t *)p = type;
	*(uint32_t *)(p + 4) = 0;
	*(uint64_t *)(p + 8) = sector;
	return (uint64_t)p;
}

/* blk: a status byte (device-writable), watched */
static uint64_t blk_status(struct actx *c)
{
	volatile uint8_t *s = data(1) + c->sti++ % 256;
	*s = 0xff;
	if (c->nst < 8)
		c->st[c->nst++] = s;
	return (uint64_t)s;
}

/* the direction of the device's natural buffers (queue c->q) */
static uint16_t nat_flags(struct actx *c)
{
	switch (c->h->bit) {
	case D_RNG: return D_WRITE;
	case D_BLK: return D_WRITE;      /* an IN request's data */
	case D_CON: return c->q == 0 ? D_WRITE : 0;
	default: return c->q == 0 ? D_WRITE : 0;
	}
}

/* what comes before the middle of a natural request: blk's header (IN sector 0) */
static void nat_begin(struct actx *c, struct chain *ch)
{
	if (c->h->bit == D_BLK)
		ch_add(ch, blk_hdr(0, 0, 0), 16, 0);
	else if (c->h->bit == D_NET && c->q == 1) {
		net_frame(data(2), 12);
		ch_add(ch, (uint64_t)data(2), 12, 0);   /* the header alone */
	}
}

/* ... and after: blk's status byte */
static void nat_end(struct actx *c, struct chain *ch)
{
	if (c->h->bit == D_BLK)
		ch_add(ch, blk_status(c), 1, D_WRITE);
}

/* a natural middle part: one good buffer (data slot k, len bytes) */
static void nat_mid(struct actx *c, struct chain *ch, unsigned int k, uint32_t len)
{
	if (c->h->bit == D_NET && c->q == 1) {
		if (len < 60)
			len = 60;
		net_frame(data(k) - 12, len + 12);      /* frame without the header: shift */
		ch_add(ch, (uint64_t)data(k), len, 0);
		return;
	}
	ch_add(ch, (uint64_t)data(k), len, nat_flags(c));
}

/* a whole natural request (blk: IN of 512 bytes) */
static void natural(struct actx *c, struct chain *ch, unsigned int k)
{
	nat_begin(c, ch);
	nat_mid(c, ch, k, c->h->bit == D_BLK ? 512 : 64);
	nat_end(c, ch);
}

/* chain ch into the ring from descriptor `at`; the head */
static uint16_t ring_put(struct actx *c, const struct chain *ch, uint16_t at)
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
static uint32_t tab_put(struct desc *t, const struct chain *ch)
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

static void avail_add(struct actx *c, uint16_t head)
{
	c->avail[2 + c->aidx % c->qsize] = head;
	c->aidx++;
	c->want = c->aidx;
	__atomic_store_n(&c->avail[1], c->aidx, __ATOMIC_RELEASE);
}

static void kick(struct actx *c)
{
	hnotify(c->h, c->q);
}

/* reset done by the caller: features, queue c->q on the arena rings, DRIVER_OK */
static void std_setup(struct actx *c, uint64_t features, uint16_t size)
{
	struct hdev *h = c->h;

	if (!hfeatures(h, features))
		h->t.refused++;
	c->features = features;
	c->qsize = hqueue(h, c->q, size, (uint64_t)c->desc, (uint64_t)c->avail, (uint64_t)c->used, 0);
	if (!c->qsize || c->qsize > 1024)
		c->qsize = QS;
	c->avail[0] = 1;
	W16(h, 0x1c, 1);
	hready(h);
}

static uint64_t def_features(struct hdev *h)
{
	return F_V1 | (h->d.offered & F_INDIRECT);
}

static void setup(struct actx *c)
{
	/* VIRTIO_F_EVENT_IDX half of the time: the device then writes avail_event */
	std_setup(c, def_features(c->h) | (rb(c, 2) ? c->h->d.offered & F_EVENT_IDX : 0), QS);
}

/* one natural request, published and notified */
static void send_natural(struct actx *c, uint16_t at, unsigned int k)
{
	struct chain ch = { .n = 0 };
	natural(c, &ch, k);
	avail_add(c, ring_put(c, &ch, at));
}

/* ------------------------------------------------------------------ */
/* bad addresses */

static uint64_t ram_low(void) { return tg_info.ram_low_end; }

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

static void single(struct actx *c, uint64_t addr, uint32_t len)
{
	struct chain ch = { .n = 0 };

	setup(c);
	nat_begin(c, &ch);
	ch_add(&ch, addr, len, nat_flags(c));
	nat_end(c, &ch);
	avail_add(c, ring_put(c, &ch, 0));
	kick(c);
}

static void a_addr_beyond(struct actx *c)
{
	single(c, addr_beyond(c), (uint32_t)(1 + rb(c, 4096)));
}

static void a_addr_hole(struct actx *c)
{
	single(c, addr_hole(c), (uint32_t)(1 + rb(c, 4096)));
}

static void a_addr_top(struct actx *c)
{
	static const uint32_t lens[] = { 4096, 8192, 1, 0xffffffff };
	uint64_t v = variant(c, 8);
	uint64_t a = v & 1 ? 0xfffffffffffff000ull : 0ull - 512 - rb(c, 8) * 8;

	single(c, a, lens[v / 2]);
}

static void a_addr_straddle(struct actx *c)
{
	uint64_t v = variant(c, 3), off = 1 + rb(c, 4095);

	if (v == 2 && tg_info.ram_end > (4ull << 30))
		single(c, tg_info.ram_end - off, (uint32_t)(off + 1 + rb(c, 4096)));
	else if (v == 1)
		single(c, ram_low(), (uint32_t)(1 + rb(c, 4096)));      /* just past the end */
	else
		single(c, ram_low() - off, (uint32_t)(off + 1 + rb(c, 4096)));
}

static void a_len_zero(struct actx *c)
{
	static const uint64_t addrs[] = { 0, 0x8000000000000000ull, 0xfffffffffffff000ull };
	struct chain ch = { .n = 0 };
	unsigned int n = 1 + (unsigned int)variant(c, 3);

	setup(c);
	nat_begin(c, &ch);
	for (unsigned int i = 0; i < n; i++)
		ch_add(&ch, rb(c, 2) ? (uint64_t)data(4 + i) : addrs[rb(c, 3)], 0, nat_flags(c));
	nat_end(c, &ch);
	avail_add(c, ring_put(c, &ch, 0));
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
	single(c, a, len);
}

/* a natural chain with three middle buffers whose last descriptor loops back */
static void a_chain_loop(struct actx *c)
{
	struct chain ch = { .n = 0 };
	uint64_t v = variant(c, 3);
	uint16_t head, last;

	setup(c);
	nat_begin(c, &ch);
	for (unsigned int i = 0; i < 3; i++)
		nat_mid(c, &ch, 4 + i, 64);
	nat_end(c, &ch);
	head = ring_put(c, &ch, 0);
	last = (uint16_t)(ch.n - 1);
	c->desc[last].flags |= D_NEXT;
	c->desc[last].next = v == 0 ? head : v == 1 ? last : (uint16_t)rb(c, last + 1u);
	avail_add(c, head);
	kick(c);
}

static void a_next_oob(struct actx *c)
{
	struct chain ch = { .n = 0 };
	uint16_t k;

	setup(c);
	natural(c, &ch, 4);
	ring_put(c, &ch, 0);
	k = (uint16_t)rb(c, (uint64_t)ch.n);
	c->desc[k].flags |= D_NEXT;
	switch (variant(c, 3)) {
	case 0: c->desc[k].next = c->qsize; break;
	case 1: c->desc[k].next = 0xffff; break;
	default: c->desc[k].next = (uint16_t)(c->qsize + rb(c, 0x10000u - c->qsize)); break;
	}
	avail_add(c, 0);
	kick(c);
}

static void a_chain_long(struct actx *c)
{
	struct desc *t = (struct desc *)A(AR_ITAB);
	uint16_t fl = nat_flags(c);
	uint64_t v = variant(c, 3);

	setup(c);
	if (v == 0) {
		/* every descriptor of the queue in one chain, the last back to the first */
		for (uint16_t i = 0; i < c->qsize; i++)
			c->desc[i] = (struct desc){ (uint64_t)data(4 + i % 200), 8, (uint16_t)(fl | D_NEXT),
			                            (uint16_t)((i + 1) % c->qsize) };
		avail_add(c, 0);
	} else {
		/* an indirect table of 1024 (legal, at most VIRTIO_QUEUE_MAX) or 1025 entries */
		uint32_t n = v == 1 ? 1024 : 1025;
		for (uint32_t i = 0; i < n && i < 1024; i++)
			t[i] = (struct desc){ (uint64_t)data(4) + (i % 512) * 64, 8, (uint16_t)(fl | (i + 1 < n ? D_NEXT : 0)),
			                      (uint16_t)(i + 1) };
		c->desc[0] = (struct desc){ (uint64_t)t, n * 16, D_INDIRECT, 0 };
		avail_add(c, 0);
	}
	kick(c);
}

/* the ring's descriptor 0 is INDIRECT to table A */
static void ind_send(struct actx *c, uint64_t table, uint32_t len, uint16_t extra_flags)
{
	c->desc[0] = (struct desc){ table, len, (uint16_t)(D_INDIRECT | extra_flags), 1 };
	if (extra_flags & D_NEXT) {
		struct chain ch = { .n = 0 };
		nat_mid(c, &ch, 20, 64);
		nat_end(c, &ch);
		ring_put(c, &ch, 1);
	}
	avail_add(c, 0);
	kick(c);
}

static void a_ind_nested(struct actx *c)
{
	struct desc *ta = (struct desc *)A(AR_ITAB), *tb = ta + 256;
	struct chain a = { .n = 0 }, b = { .n = 0 };
	uint32_t la;

	setup(c);
	natural(c, &b, 6);
	tab_put(tb, &b);
	if (variant(c, 2))
		nat_begin(c, &a);
	ch_add(&a, (uint64_t)tb, (uint32_t)b.n * 16, D_INDIRECT);
	la = tab_put(ta, &a);
	ind_send(c, (uint64_t)ta, la, 0);
}

static void a_ind_len(struct actx *c, uint32_t len)
{
	struct desc *t = (struct desc *)A(AR_ITAB);
	struct chain ch = { .n = 0 };

	setup(c);
	natural(c, &ch, 6);
	tab_put(t, &ch);
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

	setup(c);
	natural(c, &ch, 6);
	ind_send(c, (uint64_t)t, tab_put(t, &ch), D_NEXT);
	(void)variant(c, 1);
}

static void a_ind_loop(struct actx *c)
{
	struct desc *t = (struct desc *)A(AR_ITAB);
	struct chain ch = { .n = 0 };
	uint32_t len;
	int k;

	setup(c);
	nat_begin(c, &ch);
	for (unsigned int i = 0; i < 3; i++)
		nat_mid(c, &ch, 6 + i, 64);
	nat_end(c, &ch);
	len = tab_put(t, &ch);
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

	setup(c);
	a = v == 0 ? addr_beyond(c) : v == 1 ? addr_hole(c) : v == 2 ? 0xfffffffffffff000ull : ram_low() - 32;
	cur_variant = v;
	ind_send(c, a, v == 3 ? 64 : 16 * (uint32_t)(1 + rb(c, 64)), 0);
}

static void a_ind_unnegotiated(struct actx *c)
{
	struct desc *t = (struct desc *)A(AR_ITAB);
	struct chain ch = { .n = 0 };

	std_setup(c, F_V1, QS);
	natural(c, &ch, 6);
	ind_send(c, (uint64_t)t, tab_put(t, &ch), 0);
	(void)variant(c, 1);
}

static void a_avail_jump(struct actx *c)
{
	setup(c);
	send_natural(c, 0, 4);
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
	setup(c);
	send_natural(c, 0, 4);
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

	if (!hfeatures(h, def_features(h)))
		h->t.refused++;
	switch (how) {
	case 0: r[which] = addr_beyond(c); break;
	case 1: r[which] = addr_hole(c); break;
	case 2: r[which] = 0xfffffffffffff000ull; break;
	case 3: r[which] = ram_low() - 16; break;                       /* straddles the end */
	default: r[which] += which == 0 ? 8 : which == 1 ? 1 : 2; break;    /* misaligned */
	}
	cur_variant = v;
	c->qsize = hqueue(h, c->q, QS, r[0], r[1], r[2], 1);
	c->avail[0] = 1;
	hready(h);
	if (!c->qsize || c->qsize > 1024)
		c->qsize = QS;
	send_natural(c, 0, 4);
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

	if (!hfeatures(h, def_features(h)))
		h->t.refused++;
	c->qsize = hqueue(h, c->q, QS, (uint64_t)c->desc, (uint64_t)c->avail, u, 1);
	if (!c->qsize || c->qsize > 1024)
		c->qsize = QS;
	c->used = (volatile uint16_t *)u;
	c->avail[0] = 1;
	hready(h);
	send_natural(c, 8, 4);
	send_natural(c, 12, 5);
	c->want = 0;                            /* the ring may be overwritten: no target */
	kick(c);
}

static void a_qsize(struct actx *c)
{
	static const uint16_t sizes[] = { 0, 3, 65535, 1, 0x8000, 2048, 100 };
	struct hdev *h = c->h;
	uint64_t v = variant(c, 9);
	uint16_t want = v < 7 ? sizes[v] : v == 7 ? (uint16_t)(h->qmax[c->q] * 2) : (uint16_t)(h->qmax[c->q] + 1);

	if (!hfeatures(h, def_features(h)))
		h->t.refused++;
	W16(h, 0x16, c->q);
	W16(h, 0x18, want);
	c->qsize = R16(h, 0x18);
	hqueue(h, c->q, 0, (uint64_t)c->desc, (uint64_t)c->avail, (uint64_t)c->used, 1);
	c->avail[0] = 1;
	hready(h);
	if (!c->qsize || c->qsize > 1024)
		c->qsize = 1;                   /* nothing sensible: one entry */
	send_natural(c, 0, 4);
	kick(c);
}

static void a_read_after_write(struct actx *c)
{
	struct chain ch = { .n = 0 };

	setup(c);
	nat_begin(c, &ch);
	ch_add(&ch, (uint64_t)data(4), 64, D_WRITE);
	ch_add(&ch, (uint64_t)data(5), 64, 0);
	if (variant(c, 2))
		ch_add(&ch, (uint64_t)data(6), 64, D_WRITE);
	nat_end(c, &ch);
	avail_add(c, ring_put(c, &ch, 0));
	kick(c);
}

static void a_notify_garbage(struct actx *c)
{
	struct hdev *h = c->h;
	static const unsigned int widths[] = { 1, 2, 4, 8 };

	setup(c);
	send_natural(c, 0, 4);
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
	setup(c);
	if (variant(c, 2))
		send_natural(c, 0, 4);
	for (int i = 0; i < 1000; i++)
		kick(c);
}

/* many requests, then a reset at once: nothing may be written after it */
static void a_reset_inflight(struct actx *c)
{
	struct desc *t = (struct desc *)A(AR_ITAB);
	struct hdev *h = c->h;
	uint16_t n;

	std_setup(c, def_features(h), (uint16_t)(h->qmax[c->q] < 128 ? h->qmax[c->q] : 128));
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
			natural(c, &ch, 4 + i % 200);
		}
		if (h->d.offered & F_INDIRECT)
			c->desc[i] = (struct desc){ (uint64_t)(t + 4 * i), tab_put(t + 4 * i, &ch), D_INDIRECT, 0 };
		else
			c->desc[i] = ch.d[ch.n - 1];    /* a single buffer then */
		c->avail[2 + i] = i;
	}
	c->aidx = n;
	__atomic_store_n(&c->avail[1], n, __ATOMIC_RELEASE);
	kick(c);
	c->nowait = 1;
}

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

	setup(c);
	/* every queue's rings in the arena (zeros: nothing to take) */
	for (uint16_t q = 0; q < h->nq; q++)
		if (q != c->q) {
			W16(h, 0x16, q);
			W64(h, 0x20, A(AR_DESC) + 4096);
			W64(h, 0x28, A(AR_AVAIL) + 2048);
			W64(h, 0x30, A(AR_USED) + 8192);
		}
	send_natural(c, 0, 4);
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

	setup(c);
	send_natural(c, 0, 4);
	(void)variant(c, 1);
	if (h->d.isr)
		region_garbage(c, h->d.isr, 8, 16);
	kick(c);
}

static void a_devcfg_garbage(struct actx *c)
{
	struct hdev *h = c->h;
	volatile uint8_t *cfg = h->d.devcfg ? h->d.devcfg : h->d.bar0 ? h->d.bar0 + 0x1800 : 0;

	setup(c);
	send_natural(c, 0, 4);
	(void)variant(c, 1);
	if (cfg)
		region_garbage(c, cfg, 0x800, 48);
	kick(c);
}

static void a_msix_garbage(struct actx *c)
{
	struct hdev *h = c->h;

	setup(c);
	send_natural(c, 0, 4);
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
	W32(h, 0x0c, (uint32_t)def_features(h));
	W32(h, 0x08, 1);
	W32(h, 0x0c, (uint32_t)(def_features(h) >> 32));
	W8(h, 0x14, variant(c, 2) ? 1 | 2 | 4 : 4);           /* DRIVER_OK, no FEATURES_OK */
	c->qsize = hqueue(h, c->q, QS, (uint64_t)c->desc, (uint64_t)c->avail, (uint64_t)c->used, 1);
	if (!c->qsize || c->qsize > 1024)
		c->qsize = QS;
	c->avail[0] = 1;
	send_natural(c, 0, 4);
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
		return hfail(h, "FEATURES_OK accepted with features the device never offered");
	h->t.refused++;
	/* go on regardless: a queue, DRIVER_OK, a request */
	c->qsize = hqueue(h, c->q, QS, (uint64_t)c->desc, (uint64_t)c->avail, (uint64_t)c->used, 1);
	if (!c->qsize || c->qsize > 1024)
		c->qsize = QS;
	c->avail[0] = 1;
	W8(h, 0x14, 3 | 4);
	send_natural(c, 0, 4);
	kick(c);
	return 0;
}

static void a_status_clear(struct actx *c)
{
	struct hdev *h = c->h;
	static const uint8_t vals[] = { 1 | 2 | 8, 1 | 2 | 4, 1 | 4 | 8, 2 | 4 | 8, 1, 8, 4, 0x80 };

	setup(c);
	W8(h, 0x14, vals[variant(c, 8)]);
	send_natural(c, 0, 4);
	kick(c);
}

static void a_status_random(struct actx *c)
{
	struct hdev *h = c->h;

	setup(c);
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
	send_natural(c, 0, 4);
	kick(c);
}

static void a_status_reserved(struct actx *c)
{
	struct hdev *h = c->h;
	static const uint8_t bits[] = { 0x10, 0x20, 0x30 };

	setup(c);
	W8(h, 0x14, (uint8_t)(status(h) | bits[variant(c, 3)]));
	send_natural(c, 0, 4);
	kick(c);
}

static const char *a_qsel_check(struct actx *c)
{
	struct hdev *h = c->h;
	static const uint16_t sels[] = { 0, 0x8000, 0xffff };
	uint16_t sel;

	if (!hfeatures(h, def_features(h)))
		h->t.refused++;
	c->qsize = hqueue(h, c->q, QS, (uint64_t)c->desc, (uint64_t)c->avail, (uint64_t)c->used, 0);
	if (!c->qsize || c->qsize > 1024)
		c->qsize = QS;
	switch (variant(c, 4)) {
	case 0: sel = h->nq; break;
	case 1: sel = (uint16_t)(h->nq + 2); break;
	default: sel = sels[cur_variant - 1]; break;
	}
	W16(h, 0x16, sel);
	W16(h, 0x18, 8);
	W64(h, 0x20, 0xdead000000000000ull);
	W64(h, 0x28, A(AR_DATA));
	W64(h, 0x30, 0);
	W16(h, 0x1a, 0);
	W16(h, 0x1c, 1);
	if (R16(h, 0x18) != 0 || R16(h, 0x1c) != 0)
		return hfail(h, "a queue beyond num_queues reads as present (size or enable not 0)");
	W16(h, 0x16, c->q);
	if (R64(h, 0x20) != (uint64_t)c->desc || R64(h, 0x28) != (uint64_t)c->avail ||
	    R64(h, 0x30) != (uint64_t)c->used || R16(h, 0x18) != c->qsize)
		return hfail(h, "writes to a queue beyond num_queues changed a real queue");
	c->avail[0] = 1;
	W16(h, 0x1c, 1);
	hready(h);
	send_natural(c, 0, 4);
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

	setup(c);
	send_natural(c, 0, 4);
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

	setup(c);
	send_natural(c, 0, 4);
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
			if (devs[i].present && &devs[i] != h && devs[i].d.bar0)
				pcicfg(dev, 0x10, (uint32_t)(uint64_t)devs[i].d.bar0 | (bar & 0xf), 1);
	}
	/* garbage into where the registers were */
	for (int i = 0; i < 8; i++)
		mw(h->d.common + rb(c, 0x38), 1, rn(c));
	kick(c);
	c->bar_off = 1;
	c->pci_cmd = cmd;
	c->pci_bar = bar;
}

/* ---- virtio-blk ---- */

static void blk_send(struct actx *c, struct chain *ch)
{
	avail_add(c, ring_put(c, ch, 0));
	kick(c);
}

static void a_blk_short_hdr(struct actx *c)
{
	struct chain ch = { .n = 0 };
	uint64_t hdr = blk_hdr(0, 0, 0);

	setup(c);
	switch (variant(c, 4)) {
	case 0: ch_add(&ch, hdr, 8, 0); break;
	case 1: ch_add(&ch, hdr, 15, 0); break;
	case 2: ch_add(&ch, hdr, 4, 0); ch_add(&ch, hdr + 4, 4, 0); break;
	default: break;                                 /* no header at all */
	}
	if (rb(c, 2))
		ch_add(&ch, (uint64_t)data(4), 512, D_WRITE);
	ch_add(&ch, blk_status(c), 1, D_WRITE);
	blk_send(c, &ch);
}

static void a_blk_status_ro(struct actx *c)
{
	struct chain ch = { .n = 0 };
	uint64_t v = variant(c, 3);

	setup(c);
	ch_add(&ch, blk_hdr(0, v == 2 ? 1 : 0, 0), 16, 0);
	if (v == 0)
		ch_add(&ch, (uint64_t)data(4), 512, D_WRITE);   /* the status then is data's last byte */
	if (v == 2)
		ch_add(&ch, (uint64_t)data(4), 512, 0);
	ch_add(&ch, blk_status(c), 1, 0);                   /* read-only status */
	blk_send(c, &ch);
}

static void a_blk_beyond(struct actx *c)
{
	struct chain ch = { .n = 0 };
	uint64_t cap = c->h->capacity, sec;
	uint32_t len = 512, type = rb(c, 2) ? 1 : 0;

	setup(c);
	switch (variant(c, 6)) {
	case 0: sec = cap; break;
	case 1: sec = cap - 1; len = 1024; break;
	case 2: sec = cap + rb(c, 1ull << 40); break;
	case 3: sec = 1ull << 63; break;
	case 4: sec = ~0ull; break;
	default: sec = ~0ull / 512 - rb(c, 4); len = 4096; break;   /* sector * 512 overflows */
	}
	ch_add(&ch, blk_hdr(0, type, sec), 16, 0);
	ch_add(&ch, (uint64_t)data(4), len, type ? 0 : D_WRITE);
	ch_add(&ch, blk_status(c), 1, D_WRITE);
	blk_send(c, &ch);
}

static void a_blk_unknown(struct actx *c)
{
	static const uint32_t types[] = { 2, 3, 5, 6, 7, 9, 10, 12, 14, 15, 16, 0x80000000u, 0xffffffffu, 0x100 };
	struct chain ch = { .n = 0 };

	setup(c);
	ch_add(&ch, blk_hdr(0, types[variant(c, 14)], rb(c, 1000)), 16, 0);
	if (rb(c, 2))
		ch_add(&ch, (uint64_t)data(4), 512, rb(c, 2) ? D_WRITE : 0);
	ch_add(&ch, blk_status(c), 1, D_WRITE);
	blk_send(c, &ch);
}

static void a_blk_direction(struct actx *c)
{
	struct chain ch = { .n = 0 };
	uint64_t v = variant(c, 2);

	setup(c);
	ch_add(&ch, blk_hdr(0, (uint32_t)v, 0), 16, 0);
	ch_add(&ch, (uint64_t)data(4), 512, v ? D_WRITE : 0);   /* OUT from writable, IN into readable */
	ch_add(&ch, blk_status(c), 1, D_WRITE);
	blk_send(c, &ch);
}

static void a_blk_odd_len(struct actx *c)
{
	static const uint32_t lens[] = { 1, 100, 511, 513, 4097, 1000 };
	struct chain ch = { .n = 0 };
	uint32_t type = rb(c, 2) ? 1 : 0;

	setup(c);
	ch_add(&ch, blk_hdr(0, type, 1), 16, 0);
	ch_add(&ch, (uint64_t)data(4), lens[variant(c, 6)], type ? 0 : D_WRITE);
	ch_add(&ch, blk_status(c), 1, D_WRITE);
	blk_send(c, &ch);
}

static void a_blk_dwz(struct actx *c)
{
	struct chain ch = { .n = 0 };
	struct hdev *h = c->h;
	uint64_t v = variant(c, 6);
	uint32_t type = rb(c, 2) ? 13 : 11, nseg;
	uint64_t *seg = (uint64_t *)data(8);
	uint64_t f = def_features(h);

	/* sometimes the command is not negotiated: UNSUPP */
	if (rb(c, 3))
		f |= h->d.offered & (1ull << 13 | 1ull << 14);
	std_setup(c, f, QS);
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
	ch_add(&ch, blk_hdr(0, type, 0), 16, 0);
	if (nseg)
		ch_add(&ch, (uint64_t)seg, nseg * 16 - (v == 5 ? 3 : 0), 0);
	ch_add(&ch, blk_status(c), 1, D_WRITE);
	blk_send(c, &ch);
}

static void a_blk_id_flush(struct actx *c)
{
	static const uint32_t lens[] = { 0, 1, 19, 20, 1000 };
	struct chain ch = { .n = 0 };
	uint64_t v = variant(c, 5);

	if (v == 4) {
		std_setup(c, F_V1, QS);                 /* FLUSH not negotiated */
		ch_add(&ch, blk_hdr(0, 4, 0), 16, 0);
	} else {
		setup(c);
		ch_add(&ch, blk_hdr(0, v == 3 ? 4 : 8, rn(c)), 16, 0);
	}
	if (v == 3)
		ch_add(&ch, (uint64_t)data(4), 512, rb(c, 2) ? 0 : D_WRITE);     /* FLUSH with data */
	else if (v < 3) {
		uint32_t len = lens[rb(c, 5)];
		if (len)
			ch_add(&ch, (uint64_t)data(4), len, rb(c, 4) ? D_WRITE : 0);
	}
	ch_add(&ch, blk_status(c), 1, D_WRITE);
	blk_send(c, &ch);
}

/* one read whose data lands on the rings themselves (legal, if mad) */
static void a_blk_over_rings(struct actx *c)
{
	struct chain ch = { .n = 0 };
	uint64_t v = variant(c, 3);
	uint64_t dst = v == 0 ? (uint64_t)c->desc + 4096 : v == 1 ? (uint64_t)c->avail : (uint64_t)c->used + 4096;

	setup(c);
	ch_add(&ch, blk_hdr(0, 0, rb(c, c->h->capacity > 8 ? c->h->capacity - 8 : 1)), 16, 0);
	if (v == 1) {
		/* the ring and what follows, the request's own entry included */
		ch_add(&ch, dst, 4096, D_WRITE);
	} else {
		ch_add(&ch, dst, 4096, D_WRITE);
	}
	ch_add(&ch, blk_status(c), 1, D_WRITE);
	blk_send(c, &ch);
	c->nst = 0;                             /* may be overwritten: not counted */
	if (v == 1)
		c->want = 0;
}

/* ---- virtio-net ---- */

static void a_net_tx_empty(struct actx *c)
{
	struct chain ch = { .n = 0 };

	setup(c);
	net_frame(data(4), 40);
	switch (variant(c, 5)) {
	case 0: ch_add(&ch, (uint64_t)data(4), 12, 0); break;                /* header only */
	case 1: ch_add(&ch, (uint64_t)data(4), 0, 0); break;                 /* nothing */
	case 2: ch_add(&ch, (uint64_t)data(4), 12, 0); ch_add(&ch, (uint64_t)data(5), 0, 0); break;
	case 3: ch_add(&ch, (uint64_t)data(4), 13, 0); break;
	default: ch_add(&ch, (uint64_t)data(4), 12 + 13, 0); break;          /* shorter than Ethernet */
	}
	avail_add(c, ring_put(c, &ch, 0));
	kick(c);
}

static void a_net_tx_huge(struct actx *c)
{
	static const uint32_t totals[] = { 12 + 70000, 65550, 65551, 12 + 65535, 12 + 9000, 0xffff0 };
	struct chain ch = { .n = 0 };
	uint32_t total = totals[variant(c, 6)], left, piece = (uint32_t)(1 + rb(c, 4)) * 16384;

	setup(c);
	net_frame(data(0), 60);
	for (left = total; left && ch.n < 40;) {
		uint32_t l = left < piece ? left : piece;
		uint64_t a = (uint64_t)data(0) + (total - left) % (DATA_BYTES - piece);
		if (l > DATA_BYTES)
			l = DATA_BYTES;
		ch_add(&ch, ch.n ? a : (uint64_t)data(0), l, 0);
		left -= l;
	}
	avail_add(c, ring_put(c, &ch, 0));
	kick(c);
}

static void a_net_tx_writable(struct actx *c)
{
	struct chain ch = { .n = 0 };

	setup(c);
	net_frame(data(4), 80);
	switch (variant(c, 3)) {
	case 0: ch_add(&ch, (uint64_t)data(4), 12 + 80, D_WRITE); break;
	case 1: ch_add(&ch, (uint64_t)data(4), 12, 0); ch_add(&ch, (uint64_t)data(4) + 12, 80, D_WRITE); break;
	default: ch_add(&ch, (uint64_t)data(4), 12 + 80, 0); ch_add(&ch, (uint64_t)data(6), 64, D_WRITE); break;
	}
	avail_add(c, ring_put(c, &ch, 0));
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

	setup(c);
	/* the receive queue: 8 bad buffers */
	hqueue(h, 0, QS, (uint64_t)rd, (uint64_t)ra, (uint64_t)ru, 0);
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
	hnotify(h, 0);
	/* a frame an echo would send back (tests/integration/tap_echo.py) */
	send_natural(c, 0, 4);
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
		single(c, (uint64_t)data(4), 60);
		return;
	}
	setup(c);
	net_frame(data(0), 60);
	for (uint32_t i = 0; i < n; i++)
		t[i] = (struct desc){ (uint64_t)data(0) + i * each, each, (uint16_t)(i + 1 < n ? D_NEXT : 0),
		                      (uint16_t)(i + 1) };
	c->desc[0] = (struct desc){ (uint64_t)t, n * 16, D_INDIRECT, 0 };
	avail_add(c, 0);
	kick(c);
}

static void a_net_tx_hdr(struct actx *c)
{
	struct chain ch = { .n = 0 };
	uint8_t *p = data(4);

	setup(c);
	net_frame(p, 12 + 100);
	for (int i = 0; i < 12; i++)
		p[i] = (uint8_t)rn(c);
	(void)variant(c, 1);
	ch_add(&ch, (uint64_t)p, 12 + 100, 0);
	avail_add(c, ring_put(c, &ch, 0));
	kick(c);
}

/* ---- virtio-console ---- */

static void a_con_tx_writable(struct actx *c)
{
	struct chain ch = { .n = 0 };

	setup(c);
	if (variant(c, 2))
		ch_add(&ch, (uint64_t)data(4), 16, 0);
	ch_add(&ch, (uint64_t)data(5), 64, D_WRITE);
	avail_add(c, ring_put(c, &ch, 0));
	kick(c);
}

static void a_con_rx_garbage(struct actx *c)
{
	struct chain ch = { .n = 0 };
	uint64_t v = variant(c, 3);

	c->q = 0;                               /* receiveq */
	setup(c);
	ch_add(&ch, (uint64_t)data(4), v == 0 ? 0 : 64, v == 1 ? 0 : D_WRITE);
	if (v == 2)
		ch_add(&ch, (uint64_t)data(5), 64, 0);
	avail_add(c, ring_put(c, &ch, 0));
	kick(c);
}

/* buffers that overlap, far more than any sane request: the device bounds its work */
static void a_huge_overlap(struct actx *c, uint16_t flags)
{
	struct desc *t = (struct desc *)A(AR_ITAB);
	uint32_t n = (uint32_t)(1 + rb(c, 1024));

	(void)variant(c, 1);
	if (!(c->h->d.offered & F_INDIRECT)) {
		single(c, (uint64_t)data(4), 64);
		return;
	}
	setup(c);
	for (uint32_t i = 0; i < n; i++)
		t[i] = (struct desc){ (uint64_t)data(0) + rb(c, 64) * 8, DATA_BYTES - 512,
		                      (uint16_t)(flags | (i + 1 < n ? D_NEXT : 0)), (uint16_t)(i + 1) };
	c->desc[0] = (struct desc){ (uint64_t)t, n * 16, D_INDIRECT, 0 };
	avail_add(c, 0);
	kick(c);
}

static void a_con_tx_huge(struct actx *c) { a_huge_overlap(c, 0); }

/* ---- virtio-rnd ---- */

static void a_rng_readable(struct actx *c)
{
	struct chain ch = { .n = 0 };

	setup(c);
	ch_add(&ch, (uint64_t)data(4), 64, 0);
	if (variant(c, 2))
		ch_add(&ch, (uint64_t)data(5), 64, 0);
	avail_add(c, ring_put(c, &ch, 0));
	kick(c);
}

static void a_rng_huge(struct actx *c) { a_huge_overlap(c, D_WRITE); }

/* ------------------------------------------------------------------ */
/* the table: kind -> (attack, devices) */

typedef void (*attack_fn)(struct actx *c);
typedef const char *(*check_fn)(struct actx *c);
struct kind {
	attack_fn fn;
	check_fn cfn;                           /* or this, when it can see a violation */
	uint32_t devs;
};

static const struct kind kinds[TG_HA_N] = {
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
		p = tg_fmt_u64(p, cur_variant);
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
	cur_variant = 0;
	if ((e = hreset(h)))
		return e;
	for (unsigned int i = 0; i < sizeof(canary_pages); i++)
		pfill(arena[canary_pages[i]], PAGE, key);
	for (unsigned int i = 0; i < sizeof(ring_pages); i++)
		pzero(arena[ring_pages[i]], 4 * PAGE);
	pfill(arena[AR_DATA], DATA_BYTES, key ^ 1);
	pfill(arena[AR_CLEAN], PAGE, key ^ 2);
	pfill(arena[AR_CBUF], PAGE, key ^ 2);
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
		pfill(arena[ring_pages[i]], 4 * PAGE, key ^ 3);
	pfill(arena[AR_DATA], DATA_BYTES, key ^ 3);
	pfill(arena[AR_CLEAN], PAGE, key ^ 2);
	pfill(arena[AR_CBUF], PAGE, key ^ 2);
	if ((e = recover(h)))
		return e;
	for (unsigned int i = 0; i < sizeof(ring_pages); i++)
		if ((a = pcheck(arena[ring_pages[i]], 4 * PAGE, key ^ 3)))
			return hfail_at(h, "the device wrote into the attack's rings after the reset", a);
	if ((a = pcheck(arena[AR_DATA], DATA_BYTES, key ^ 3)))
		return hfail_at(h, "the device wrote into the attack's buffers after the reset", a);
	for (unsigned int i = 0; i < sizeof(canary_pages); i++)
		if ((a = pcheck(arena[canary_pages[i]], PAGE, key)))
			return hfail_at(h, "canary page written by the valid request", a);
	if (memcmp(snap0, page0(), PAGE))
		return hfail(h, "guest page 0 written after the attack");
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
	/* the last page of low RAM, if nothing of ours lives there */
	if (tg_info.top_page_free) {
		uint64_t pg = tg_info.ram_low_end - PAGE;
		top_page = pg;
		for (uint64_t b = 0; b < tg_info.win_size / (2ull << 20); b++)
			if ((pd_win[b >> 9][b & 511] & ~((2ull << 20) - 1)) == (pg & ~((2ull << 20) - 1)))
				top_page = 0;
	}
	for (int i = 0; i < 4; i++) {
		struct hdev *h = &devs[i];
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
			return hfail(h, "fewer queues than the driver needs");
		if (h->nq > 4)
			h->nq = 4;
		for (uint16_t q = 0; q < h->nq; q++) {
			W16(h, 0x16, q);
			h->qmax[q] = R16(h, 0x18);
			h->noff[q] = R16(h, 0x1e);
			if (h->qmax[q] < 16)
				return hfail(h, "a queue smaller than 16 entries");
		}
		if (h->bit == D_BLK) {
			if (!h->d.devcfg)
				return hfail(h, "no device configuration");
			h->capacity = *(volatile uint32_t *)h->d.devcfg |
			              (uint64_t)*(volatile uint32_t *)(h->d.devcfg + 4) << 32;
			if (!h->capacity)
				return hfail(h, "the disk is empty");
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
		if (devs[i].present) {
			const char *e = hreset(&devs[i]);
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
		struct hdev *h = &devs[i];
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
		const struct hdev *h = &devs[i];
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
