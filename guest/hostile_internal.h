/* SPDX-License-Identifier: MIT */
/*
 * Inside the hostile workload: hostile.c runs the attacks and checks what
 * the devices did (see there); hostile_req.c builds the requests the
 * attacks send; hostile_ring.c, hostile_regs.c and hostile_dev.c are the
 * attacks on the rings, on the registers and on each device's requests,
 * each with a table of its kinds.
 */
#ifndef TG_HOSTILE_INTERNAL_H
#define TG_HOSTILE_INTERNAL_H

#include <stdint.h>

#include "abi.h"
#include "vpci.h"
#include "work.h"

#define PAGE            4096ull
#define QS              16              /* queue size of most attacks */
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

extern uint8_t hostile__arena[AR_PAGES][PAGE];

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

extern struct hdev hostile__devs[4];
extern uint64_t hostile__cur_variant;

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

/* the table: kind -> (attack, devices); one per file of attacks, indexed by
 * TG_HA_*, where a kind with no devices is another file's */
typedef void (*attack_fn)(struct actx *c);
typedef const char *(*check_fn)(struct actx *c);
struct kind {
	attack_fn fn;
	check_fn cfn;                           /* or this, when it can see a violation */
	uint32_t devs;
};

extern const struct kind hostile__ring_kinds[TG_HA_N];
extern const struct kind hostile__regs_kinds[TG_HA_N];
extern const struct kind hostile__dev_kinds[TG_HA_N];

/* ------------------------------------------------------------------ */
/* small helpers, inline: the attacks are made of little else */

static inline long sys(long n, long a, long b, long c)
{
	long r;
	asm volatile("ud2" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "memory");
	return r;
}

static inline uint32_t pcicfg(uint32_t dev, uint32_t reg, uint32_t v, int write)
{
	return (uint32_t)sys(TG_SYS_PCICFG, dev << 11 | reg, v, write);
}

static inline void mw(volatile uint8_t *p, unsigned int w, uint64_t v)
{
	switch (w) {
	case 1: *(volatile uint8_t *)p = (uint8_t)v; break;
	case 2: *(volatile uint16_t *)p = (uint16_t)v; break;
	case 4: *(volatile uint32_t *)p = (uint32_t)v; break;
	default: *(volatile uint64_t *)p = v; break;
	}
}

static inline uint64_t mr(volatile uint8_t *p, unsigned int w)
{
	switch (w) {
	case 1: return *(volatile uint8_t *)p;
	case 2: return *(volatile uint16_t *)p;
	case 4: return *(volatile uint32_t *)p;
	default: return *(volatile uint64_t *)p;
	}
}

/* common configuration registers */
static inline void W8(struct hdev *h, unsigned int o, uint8_t v) { mw(h->d.common + o, 1, v); }
static inline void W16(struct hdev *h, unsigned int o, uint16_t v) { mw(h->d.common + o, 2, v); }
static inline void W32(struct hdev *h, unsigned int o, uint32_t v) { mw(h->d.common + o, 4, v); }
static inline uint8_t R8(struct hdev *h, unsigned int o) { return (uint8_t)mr(h->d.common + o, 1); }
static inline uint16_t R16(struct hdev *h, unsigned int o) { return (uint16_t)mr(h->d.common + o, 2); }
static inline uint32_t R32(struct hdev *h, unsigned int o) { return (uint32_t)mr(h->d.common + o, 4); }
static inline void W64(struct hdev *h, unsigned int o, uint64_t v)
{
	W32(h, o, (uint32_t)v);
	W32(h, o + 4, (uint32_t)(v >> 32));
}
static inline uint64_t R64(struct hdev *h, unsigned int o)
{
	return R32(h, o) | (uint64_t)R32(h, o + 4) << 32;
}

static inline uint8_t status(struct hdev *h) { return R8(h, 0x14); }

static inline uint64_t A(unsigned int page) { return (uint64_t)hostile__arena[page]; }

static inline uint64_t rn(struct actx *c)
{
	c->r += GOLDEN;
	return tg_mix64(c->r);
}

static inline uint64_t rb(struct actx *c, uint64_t n)
{
	return n ? rn(c) % n : 0;
}

/* pick one of n variants (recorded for the FAIL message) */
static inline uint64_t variant(struct actx *c, uint64_t n)
{
	hostile__cur_variant = rb(c, n);
	return hostile__cur_variant;
}

static inline uint8_t *data(unsigned int k) { return hostile__arena[AR_DATA] + (uint64_t)k * 512; }
#define DATA_BYTES (AR_NDATA * PAGE)

static inline void ch_add(struct chain *ch, uint64_t a, uint32_t len, uint16_t flags)
{
	if (ch->n < 48)
		ch->d[ch->n++] = (struct desc){ a, len, flags, 0 };
}

static inline uint64_t ram_low(void) { return tg_info.ram_low_end; }

/* ------------------------------------------------------------------ */
/* hostile.c: failures, memory, the transport */

const char *hostile__fail(struct hdev *h, const char *what);
void hostile__pzero(void *p, uint64_t bytes);
int hostile__features(struct hdev *h, uint64_t f);
uint16_t hostile__queue(struct hdev *h, uint16_t q, uint16_t size, uint64_t desc, uint64_t drv,
                        uint64_t dev, int enable);
void hostile__ready(struct hdev *h);
void hostile__notify(struct hdev *h, uint16_t q);

static inline void kick(struct actx *c)
{
	hostile__notify(c->h, c->q);
}

/* ------------------------------------------------------------------ */
/* hostile_req.c: requests */

void hostile__net_frame(uint8_t *p, uint32_t len);
uint64_t hostile__blk_hdr(unsigned int k, uint32_t type, uint64_t sector);
uint64_t hostile__blk_status(struct actx *c);
uint16_t hostile__nat_flags(struct actx *c);
void hostile__nat_begin(struct actx *c, struct chain *ch);
void hostile__nat_end(struct actx *c, struct chain *ch);
void hostile__nat_mid(struct actx *c, struct chain *ch, unsigned int k, uint32_t len);
void hostile__natural(struct actx *c, struct chain *ch, unsigned int k);
uint16_t hostile__ring_put(struct actx *c, const struct chain *ch, uint16_t at);
uint32_t hostile__tab_put(struct desc *t, const struct chain *ch);
void hostile__avail_add(struct actx *c, uint16_t head);
void hostile__std_setup(struct actx *c, uint64_t features, uint16_t size);
uint64_t hostile__def_features(struct hdev *h);
void hostile__setup(struct actx *c);
void hostile__send_natural(struct actx *c, uint16_t at, unsigned int k);
void hostile__single(struct actx *c, uint64_t addr, uint32_t len);

#endif
