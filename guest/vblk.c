/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest: a virtio 1.x PCI driver for virtio-blk, in ring 3,
 * found and set up like the virtio-rnd driver (vrng.c: ring-3 MMIO on the
 * BARs, completions polled, no interrupts), but built to keep many requests
 * in flight: one queue of 128 entries, up to 128 requests outstanding,
 * refilled as the device completes them in whatever order it likes, after
 * the notifying write has returned.
 *
 * A request is a 16-byte header (device-readable), its data in 1 to 4
 * descriptors (read: device-writable; write: device-readable; the cuts
 * sometimes off sector boundaries) and a status byte; 7 in 8 go through an
 * indirect table, the rest are chained in the ring.  What each round reads,
 * writes and zeroes, and how the passes are cut into requests, is defined
 * in work.c (tg_blk_*); this file only moves it.  Data buffers come from
 * a 4 MiB pool in .bss (physical = virtual), in naturally aligned blocks
 * of 1..32 pages.
 */
#include "abi.h"
#include "vblk.h"
#include "vpci.h"
#include "work.h"

#define VIRTIO_BLK_ID   0x1042          /* 0x1040 + device ID 2 */
#define QN              128             /* queue entries */
#define NSLOT           128             /* requests in flight, at most */
#define PAGE            4096
#define POOL_PAGES      1024            /* 4 MiB of data buffers */

/* feature bits (virtio 1.2, 5.2.3) */
#define F_RO            (1ull << 5)
#define F_FLUSH         (1ull << 9)
#define F_WRITE_ZEROES  (1ull << 14)

/* request types and status (5.2.6) */
#define T_IN            0
#define T_OUT           1
#define T_FLUSH         4
#define T_GET_ID        8
#define T_WRITE_ZEROES  13
#define ID_BYTES        20

/* device configuration (5.2.4) */
#define CFG_CAPACITY    0               /* le64, 512-byte sectors */
#define CFG_MAX_WZ      0x30            /* le32 max_write_zeroes_sectors */

#define STALL_CYCLES    (1ull << 35)    /* ~10 s of TSC without a completion */

static struct desc ring_desc[QN] __attribute__((aligned(16)));
static struct {
	uint16_t flags, idx, ring[QN], used_event;
} avail __attribute__((aligned(4)));
static struct {
	uint16_t flags, idx;
	struct { uint32_t id, len; } ring[QN];
	uint16_t avail_event;
} used __attribute__((aligned(4)));

/* also the blkbench workload's buffers (bench.c): never both in one run */
uint8_t tg_blk_pool[POOL_PAGES][PAGE] __attribute__((aligned(PAGE)));
#define pool tg_blk_pool
static uint64_t pool_map[POOL_PAGES / 64];       /* 1: page in use */

struct slot {
	struct desc itab[2 + TG_BLK_MAXSEGS];    /* indirect table */
	struct { uint32_t type, reserved; uint64_t sector; } hdr;
	struct { uint64_t sector; uint32_t num, flags; } wz;    /* write-zeroes segment */
	uint8_t *buf;
	uint64_t sector;
	uint32_t sectors, writable;              /* bytes the device may write */
	uint32_t page0, pages;                   /* pool block */
	uint16_t ring[2 + TG_BLK_MAXSEGS], nring;   /* ring descriptors used */
	volatile uint8_t status;
} __attribute__((aligned(16)));

static struct slot slots[NSLOT];
static uint8_t free_slot[NSLOT], head_slot[QN];
static uint16_t free_desc[QN];
static uint32_t nfree_slot, nfree_desc, inflight;
static uint8_t head_busy[QN];

static struct vpci_dev dev;
static struct vq q;
static uint64_t max_wz;                          /* sectors per write-zeroes request */
static const struct tg_params *P;

/* what the completions are checked against */
static uint64_t cur_round, check_round;          /* reads must hold check_round's content */
static uint64_t *cur_hash;                        /* where read sectors are summed */
static struct tg_blk_tally *cur;
static char msg[160];

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

/* "blk: round R[ sector S]: what" in msg */
static const char *fail(const char *what, uint64_t sector, int with_sector)
{
	char *p = tg_stpcpy(msg, "blk: round ");
	p = tg_fmt_u64(p, cur_round);
	if (with_sector) {
		p = tg_stpcpy(p, " sector ");
		p = tg_fmt_u64(p, sector);
	}
	p = tg_stpcpy(p, ": ");
	tg_stpcpy(p, what);
	return msg;
}

const char *tg_vblk_init(const struct tg_params *p)
{
	const struct vpci_queue vq = {
		.index = 0, .size = QN, .desc = ring_desc, .avail = &avail, .used = &used,
	};
	const char *e = tg_vpci_open("blk", "virtio-blk", VIRTIO_BLK_ID, &dev);
	uint64_t capacity;

	P = p;
	if (e)
		return e;
	if (!dev.devcfg)
		return "blk: no device-specific configuration capability";
	if (!(dev.offered & VIRTIO_F_INDIRECT_DESC))
		return "blk: device does not offer VIRTIO_F_INDIRECT_DESC";
	if (!(dev.offered & F_FLUSH))
		return "blk: device does not offer VIRTIO_BLK_F_FLUSH";
	if (!(dev.offered & F_WRITE_ZEROES))
		return "blk: device does not offer VIRTIO_BLK_F_WRITE_ZEROES";
	if (dev.offered & F_RO)
		return "blk: the device is read-only (VIRTIO_BLK_F_RO)";
	e = tg_vpci_features("blk", &dev, VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC | F_FLUSH |
	                     F_WRITE_ZEROES);
	if (e)
		return e;
	capacity = *(volatile uint32_t *)(dev.devcfg + CFG_CAPACITY) |
	           (uint64_t)*(volatile uint32_t *)(dev.devcfg + CFG_CAPACITY + 4) << 32;
	if (capacity < p->blkmb << 11)
		return "blk: the disk is smaller than blkmb";
	max_wz = *(volatile uint32_t *)(dev.devcfg + CFG_MAX_WZ);
	if (!max_wz)
		return "blk: max_write_zeroes_sectors is 0";
	e = tg_vpci_queue("blk", &dev, &vq, &q.notify);
	if (e)
		return e;
	q.index = 0;
	q.size = QN;
	q.desc = ring_desc;
	q.avail = &avail.flags;
	q.used = &used.flags;
	tg_vpci_ready(&dev);
	for (uint32_t i = 0; i < QN; i++)
		free_desc[nfree_desc++] = (uint16_t)(QN - 1 - i);
	for (uint32_t i = 0; i < NSLOT; i++)
		free_slot[nfree_slot++] = (uint8_t)(NSLOT - 1 - i);
	return 0;
}

/* ------------------------------------------------------------------ */
/* data buffers: naturally aligned power-of-two blocks of pages */

static int pool_alloc(uint32_t pages, uint32_t *first)
{
	uint64_t mask = (1ull << pages) - 1;         /* pages <= 32 */

	for (uint32_t w = 0; w < POOL_PAGES / 64; w++) {
		if (pool_map[w] == ~0ull)
			continue;
		for (uint32_t off = 0; off < 64; off += pages)
			if (!(pool_map[w] & (mask << off))) {
				pool_map[w] |= mask << off;
				*first = w * 64 + off;
				return 1;
			}
	}
	return 0;
}

static void pool_free(uint32_t first, uint32_t pages)
{
	pool_map[first / 64] &= ~(((1ull << pages) - 1) << (first % 64));
}

static uint32_t pages_for(uint32_t bytes)
{
	uint32_t n = (bytes + PAGE - 1) / PAGE, p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

/* ------------------------------------------------------------------ */
/* requests */

/* a free slot with `bytes` of buffer, or NULL (nothing changed) */
static struct slot *slot_get(uint32_t bytes)
{
	struct slot *s;
	uint32_t first = 0, pages = bytes ? pages_for(bytes) : 0;

	if (!nfree_slot || (pages && !pool_alloc(pages, &first)))
		return 0;
	s = &slots[free_slot[--nfree_slot]];
	s->page0 = first;
	s->pages = pages;
	s->buf = pages ? pool[first] : 0;
	s->status = 0xff;                            /* the device must write it */
	return s;
}

static void slot_put(struct slot *s)
{
	if (s->pages)
		pool_free(s->page0, s->pages);
	free_slot[nfree_slot++] = (uint8_t)(s - slots);
}

/*
 * Hand a request to the ring (not yet published): the header, d[0..n-1]
 * and the status byte, through s->itab if indirect, else chained in the
 * ring.  The caller made sure there are enough free ring descriptors.
 */
static void submit(struct slot *s, uint32_t type, uint64_t sector, const struct desc *d,
                   uint32_t n, int indirect)
{
	struct desc all[2 + TG_BLK_MAXSEGS];
	uint32_t k = 0;

	s->hdr.type = type;
	s->hdr.reserved = 0;
	s->hdr.sector = sector;
	s->writable = 1;
	all[k++] = (struct desc){ (uint64_t)&s->hdr, sizeof(s->hdr), 0, 0 };
	for (uint32_t i = 0; i < n; i++) {
		all[k++] = d[i];
		if (d[i].flags & D_WRITE)
			s->writable += d[i].len;
	}
	all[k++] = (struct desc){ (uint64_t)&s->status, 1, D_WRITE, 0 };
	if (indirect) {
		for (uint32_t i = 0; i < k; i++) {
			s->itab[i] = all[i];
			s->itab[i].flags = (uint16_t)(all[i].flags | (i + 1 < k ? D_NEXT : 0));
			s->itab[i].next = (uint16_t)(i + 1);
		}
		s->nring = 1;
		s->ring[0] = free_desc[--nfree_desc];
		ring_desc[s->ring[0]] = (struct desc){ (uint64_t)s->itab, k * sizeof(struct desc),
		                                       D_INDIRECT, 0 };
	} else {
		s->nring = (uint16_t)k;
		for (uint32_t i = 0; i < k; i++)
			s->ring[i] = free_desc[--nfree_desc];
		for (uint32_t i = 0; i < k; i++) {
			ring_desc[s->ring[i]] = all[i];
			if (i + 1 < k) {
				ring_desc[s->ring[i]].flags |= D_NEXT;
				ring_desc[s->ring[i]].next = s->ring[i + 1];
			}
		}
	}
	head_slot[s->ring[0]] = (uint8_t)(s - slots);
	head_busy[s->ring[0]] = 1;
	inflight++;
	tg_vq_add(&q, s->ring[0]);
}

/* a read completed: every sector must hold check_round's content */
static const char *check_read(struct slot *s)
{
	uint64_t want[TG_BLK_SWORDS];

	for (uint32_t k = 0; k < s->sectors; k++) {
		const uint64_t *got = (const uint64_t *)(s->buf + (uint64_t)k * TG_BLK_SECTOR);
		uint64_t sec = s->sector + k;

		tg_blk_sector(want, P->seed, P->blkmb, check_round, sec);
		for (uint32_t i = 0; i < TG_BLK_SWORDS; i++)
			if (got[i] != want[i]) {
				static char what[64];
				char *p = tg_stpcpy(what, "read back wrong data (want round ");
				p = tg_fmt_u64(p, check_round);
				tg_stpcpy(p, "'s content)");
				return fail(what, sec, 1);
			}
		*cur_hash += tg_blk_sector_hash(got, sec);
	}
	return 0;
}

/* one used entry */
static const char *complete(uint32_t id, uint32_t len)
{
	struct slot *s;
	const char *e = 0;

	if (id >= QN || !head_busy[id])
		return fail("the used ring names a descriptor that is not a pending request", 0, 0);
	head_busy[id] = 0;
	s = &slots[head_slot[id]];
	for (uint32_t i = 0; i < s->nring; i++)
		free_desc[nfree_desc++] = s->ring[i];
	inflight--;
	cur->status_or |= s->status;
	if (s->status) {
		static char what[48];
		tg_fmt_u64(tg_stpcpy(what, "request failed, status "), s->status);
		e = fail(what, s->sector, 1);
	} else if (len > s->writable) {
		e = fail("used length larger than the request's writable buffers", s->sector, 1);
	} else if (s->hdr.type == T_IN) {
		e = check_read(s);
	} else if (s->hdr.type == T_GET_ID) {
		uint32_t n = 0;
		while (n < ID_BYTES && s->buf[n])
			n++;
		for (uint32_t i = 0; i < n && !e; i++)
			if (s->buf[i] < 0x20 || s->buf[i] > 0x7e)
				e = fail("GET_ID: the ID is not NUL-terminated text of at most 20 bytes", 0, 0);
	}
	slot_put(s);
	return e;
}

/*
 * Take every completion there is; with `block`, wait (bounded) until there
 * is at least one.  Publishes and notifies what was added first.
 */
static const char *reap(int block)
{
	uint64_t t0 = 0;

	tg_vq_kick(&q);
	for (uint64_t spins = 0;; spins++) {
		uint32_t id, len, got = 0;
		while (tg_vq_get(&q, &id, &len)) {
			const char *e = complete(id, len);
			if (e)
				return e;
			got++;
		}
		if (got || !block)
			return 0;
		if (!t0)
			t0 = rdtsc();
		else if ((spins & 1023) == 0 && rdtsc() - t0 > STALL_CYCLES)
			return fail((tg_vpci_status(&dev) & 0x40) ? "device needs reset" :
			            "requests not completed (no completion for ~10 s)", 0, 0);
		asm volatile("pause");
	}
}

static const char *drain(void)
{
	while (inflight) {
		const char *e = reap(1);
		if (e)
			return e;
	}
	return 0;
}

/* a slot with `bytes` of buffer and `ndesc` free ring descriptors, waiting for completions */
static const char *room(uint32_t bytes, uint32_t ndesc, struct slot **out)
{
	for (;;) {
		if (nfree_desc >= ndesc && (*out = slot_get(bytes)))
			return 0;
		const char *e = reap(1);
		if (e)
			return e;
	}
}

/* one pass over the first blkmb MiB: read (checked) or write (round's raw content) */
static const char *pass(int kind, uint64_t plan_round)
{
	uint64_t sectors = P->blkmb << 11, i = 0;

	for (uint64_t sec = 0; sec < sectors; i++) {
		struct tg_blk_req r;
		struct desc d[TG_BLK_MAXSEGS];
		struct slot *s;
		uint32_t n, bytes, cut[TG_BLK_MAXSEGS + 1];
		const char *e;

		tg_blk_plan(P->seed, plan_round, kind, i, &r);
		n = r.sectors;
		if (n > sectors - sec)
			n = (uint32_t)(sectors - sec);
		if (r.segs > n)
			r.segs = n;
		bytes = n * TG_BLK_SECTOR;
		e = room(bytes, r.indirect ? 1 : 2 + r.segs, &s);
		if (e)
			return e;
		s->sector = sec;
		s->sectors = n;
		if (kind == TG_BLK_WRITE) {
			for (uint32_t k = 0; k < n; k++)
				tg_blk_sector_raw((uint64_t *)(s->buf + (uint64_t)k * TG_BLK_SECTOR),
				                  P->seed, cur_round, sec + k);
		} else {
			/* poison: a sector the device does not write cannot pass */
			for (uint32_t k = 0; k < n; k++) {
				uint64_t *w = (uint64_t *)(s->buf + (uint64_t)k * TG_BLK_SECTOR);
				w[0] = w[TG_BLK_SWORDS - 1] = 0x706f69736f6e6564ULL;
			}
		}
		/* inner cuts on sector boundaries, sometimes moved by r.skew bytes */
		cut[0] = 0;
		cut[r.segs] = bytes;
		for (uint32_t j = 1; j < r.segs; j++)
			cut[j] = (n * j / r.segs) * TG_BLK_SECTOR + r.skew;
		for (uint32_t j = 0; j < r.segs; j++)
			d[j] = (struct desc){ (uint64_t)(s->buf + cut[j]), cut[j + 1] - cut[j],
			                      kind == TG_BLK_READ ? D_WRITE : 0, 0 };
		submit(s, kind == TG_BLK_READ ? T_IN : T_OUT, sec, d, r.segs, r.indirect);
		if (kind == TG_BLK_READ)
			cur->reads++;
		else
			cur->writes++;
		sec += n;
		if ((i & 7) == 7)
			tg_vq_kick(&q);
		e = reap(0);
		if (e)
			return e;
	}
	return drain();
}

static const char *flush(void)
{
	struct slot *s;
	const char *e = room(0, 2, &s);

	if (e)
		return e;
	s->sector = 0;
	submit(s, T_FLUSH, 0, 0, 0, 0);
	cur->others++;
	return drain();
}

/* the round's zeroed range, in requests of at most max_write_zeroes_sectors */
static const char *zero(void)
{
	uint64_t start, count;

	tg_blk_zero_range(P->seed, P->blkmb, cur_round, &start, &count);
	while (count) {
		uint64_t n = count < max_wz ? count : max_wz;
		struct slot *s;
		const char *e = room(0, 3, &s);
		if (e)
			return e;
		s->sector = start;
		s->wz.sector = start;
		s->wz.num = (uint32_t)n;
		s->wz.flags = 0;                     /* no unmap */
		struct desc d = { (uint64_t)&s->wz, sizeof(s->wz), 0, 0 };
		submit(s, T_WRITE_ZEROES, 0, &d, 1, 0);
		start += n;
		count -= n;
	}
	return drain();
}

static const char *get_id(void)
{
	struct slot *s;
	const char *e = room(ID_BYTES, 3, &s);

	if (e)
		return e;
	for (uint32_t i = 0; i < ID_BYTES; i++)
		s->buf[i] = 0xaa;
	s->sector = 0;
	struct desc d = { (uint64_t)s->buf, ID_BYTES, D_WRITE, 0 };
	submit(s, T_GET_ID, 0, &d, 1, 1);
	cur->others++;
	return drain();
}

const char *tg_vblk_round(uint64_t round, struct tg_blk_tally *t)
{
	const char *e = 0;

	*t = (struct tg_blk_tally){ 0 };
	cur = t;
	cur_round = round;
	if (round == 1)
		e = get_id();
	/* (a) the whole area holds round-1's content */
	check_round = round - 1;
	cur_hash = &t->read_hash;
	if (!e)
		e = pass(TG_BLK_READ, round);
	/* (b) round's content, (c) flush, (d) the zeroed range, flush */
	if (!e)
		e = pass(TG_BLK_WRITE, round);
	if (!e)
		e = flush();
	if (!e)
		e = zero();
	if (!e)
		e = flush();
	/* after the last round: read back what it left */
	if (!e && round == P->rounds) {
		check_round = round;
		cur_hash = &t->final_hash;
		e = pass(TG_BLK_READ, round + 1);
	}
	return e;
}
