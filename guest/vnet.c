/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest: a virtio 1.x PCI driver for virtio-net, in ring 3,
 * found and set up like the virtio-rnd driver (vrng.c: ring-3 MMIO on the
 * BARs, completions polled, no interrupts).
 *
 * Features: VIRTIO_F_VERSION_1 and, if offered, VIRTIO_NET_F_MAC - no
 * offloads, no mergeable buffers, no control queue, so every packet is the
 * 12-byte struct virtio_net_hdr (all zeros on transmit) and one Ethernet
 * frame without FCS.  Queue 0 (receiveq) keeps RXN buffers of 1526 bytes
 * posted; queue 1 (transmitq) takes frames as one descriptor (header and
 * frame together) or two (header, frame), alternately.
 *
 * Each round sends netframes frames (tg_net_frame), at most WINDOW not yet
 * echoed at a time, and waits until the host has echoed every one back.
 * A device may drop what arrives while no receive buffer is posted (real
 * NICs do, and so does khyve's), so WINDOW is kept well below RXN: the
 * host may send several frames per frame of ours (tap_echo.py --noise
 * sends up to four) before the guest has posted the buffers again.
 * Received frames that are not ours (another ethertype or magic: the host
 * kernel's IPv6 and ARP noise), of another round, or seen already are
 * ignored; one of ours that differs from what was sent is a FAIL.
 *
 * Frames get lost: dropped by a device while no receive buffer is posted,
 * or echoed to the VM a snapshot was taken of rather than to the VM
 * restored from it.  So a frame not echoed within RETX_FIRST TSC cycles of
 * its sending is sent again (the same bytes, built again), then after
 * twice as long, and so on up to RETX_MAX between sends; after RETRIES
 * resends (~2^35 cycles in all) it is "not echoed".  Which frames count is
 * unchanged: each sequence number once, on its first echo, so the digest
 * does not depend on what was lost or resent.
 *
 * Time is the TSC, but counted only while the driver runs (run_clock):
 * a restored VM's TSC may have jumped by however long the snapshot waited
 * (under PVM the guest sees the host's TSC), and that must neither count
 * as a stall nor as many timeouts at once.
 */
#include "abi.h"
#include "vnet.h"
#include "vpci.h"
#include "work.h"

#define VIRTIO_NET_ID   0x1041          /* 0x1040 + device ID 1 */
#define RXQ             0
#define TXQ             1
#define RXN             128             /* receiveq entries = posted buffers */
#define TXN             32              /* transmitq entries */
#define TX_SLOTS        (TXN / 2)       /* two descriptors each */
#define WINDOW          16              /* frames sent, not yet echoed */
#define HDR             12              /* struct virtio_net_hdr with num_buffers */
#define BUF             (HDR + TG_NET_MAX)
#define F_MAC           (1ull << 5)
#define CFG_MAC         0

#define STALL_CYCLES    (1ull << 35)    /* ~13 s at 2.6 GHz without progress */
#define CLOCK_STEP_MAX  (1ull << 24)    /* run_clock: the most one step counts */
#define RETX_FIRST      (1ull << 25)    /* ~13 ms at 2.6 GHz: the first resend */
#define RETX_MAX        (1ull << 30)    /* the backoff's ceiling, ~0.4 s */
#define RETRIES         36              /* 2^25 + ... + 2^30 + 30 * 2^30 ~ 2^35 */
#define STR_(x)         #x
#define STR(x)          STR_(x)

#define RING(n) struct { \
	struct desc desc[n] __attribute__((aligned(16))); \
	struct { \
		uint16_t flags, idx, ring[n], used_event; \
	} avail __attribute__((aligned(4))); \
	struct { \
		uint16_t flags, idx; \
		struct { uint32_t id, len; } ring[n]; \
		uint16_t avail_event; \
	} used __attribute__((aligned(4))); \
}
static RING(RXN) rx;
static RING(TXN) tx;

static uint8_t rxbuf[RXN][BUF] __attribute__((aligned(64)));
static uint8_t txbuf[TX_SLOTS][BUF] __attribute__((aligned(64)));
static uint8_t expect[TG_NET_MAX];
static uint64_t got[65536 / 64];                /* frames of this round echoed */
static uint8_t tx_busy[TX_SLOTS];
static uint32_t tx_inflight;

/* frames sent and not echoed yet (at most WINDOW), in no particular order */
static struct {
	uint32_t seq, resends;
	uint64_t due;                   /* run_clock() at which to send it again */
} pend[WINDOW];
static uint32_t npend;

static struct vpci_dev dev;
static struct vq rq, tq;
static uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static const struct tg_params *P;
static char msg[160];

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

/*
 * The TSC, except that a step longer than CLOCK_STEP_MAX (~6 ms: the VM
 * was paused, saved and restored, or its vCPU not run for a while) counts
 * as CLOCK_STEP_MAX, and one backwards as nothing.
 */
static uint64_t clock_tsc, clock_run;

static uint64_t run_clock(void)
{
	uint64_t t = rdtsc(), d = t - clock_tsc;

	clock_tsc = t;
	if ((int64_t)d < 0)
		d = 0;
	clock_run += d < CLOCK_STEP_MAX ? d : CLOCK_STEP_MAX;
	return clock_run;
}

/* "net: [frame N of ]round R: what" in msg */
static const char *fail(const char *what, uint64_t round, int64_t frame)
{
	char *p = tg_stpcpy(msg, "net: ");
	if (frame >= 0) {
		p = tg_stpcpy(p, "frame ");
		p = tg_fmt_u64(p, (uint64_t)frame);
		p = tg_stpcpy(p, " of ");
	}
	p = tg_stpcpy(p, "round ");
	p = tg_fmt_u64(p, round);
	p = tg_stpcpy(p, " ");
	tg_stpcpy(p, what);
	return msg;
}

static void vq_init(struct vq *v, uint16_t index, uint16_t size, struct desc *d,
                    uint16_t *avail, uint16_t *used)
{
	v->index = index;
	v->size = size;
	v->desc = d;
	v->avail = avail;
	v->used = used;
}

const char *tg_vnet_init(const struct tg_params *p)
{
	const struct vpci_queue qr = {
		.index = RXQ, .size = RXN, .desc = rx.desc, .avail = &rx.avail, .used = &rx.used,
	};
	const struct vpci_queue qt = {
		.index = TXQ, .size = TXN, .desc = tx.desc, .avail = &tx.avail, .used = &tx.used,
	};
	uint64_t features = VIRTIO_F_VERSION_1;
	const char *e = tg_vpci_open("net", "virtio-net", VIRTIO_NET_ID, &dev);

	P = p;
	if (e)
		return e;
	if ((dev.offered & F_MAC) && dev.devcfg)
		features |= F_MAC;
	e = tg_vpci_features("net", &dev, features);
	if (!e)
		e = tg_vpci_queue("net", &dev, &qr, &rq.notify);
	if (!e)
		e = tg_vpci_queue("net", &dev, &qt, &tq.notify);
	if (e)
		return e;
	vq_init(&rq, RXQ, RXN, rx.desc, &rx.avail.flags, &rx.used.flags);
	vq_init(&tq, TXQ, TXN, tx.desc, &tx.avail.flags, &tx.used.flags);
	if (features & F_MAC)
		for (int i = 0; i < 6; i++)
			mac[i] = dev.devcfg[CFG_MAC + i];
	tg_vpci_ready(&dev);
	/* every receive buffer posted, descriptor i = buffer i */
	for (uint16_t i = 0; i < RXN; i++) {
		rx.desc[i] = (struct desc){ (uint64_t)rxbuf[i], BUF, D_WRITE, 0 };
		tg_vq_add(&rq, i);
	}
	tg_vq_kick(&rq);
	clock_tsc = rdtsc();
	return 0;
}

/* one received packet: *ours = 1 if it is the echo of a frame we were waiting for */
static const char *received(const uint8_t *pkt, uint32_t len, uint64_t round, uint32_t sent,
                            uint64_t *sum, int *ours, uint32_t *seqp)
{
	const uint8_t *f = pkt + HDR;
	uint32_t flen, seq = 0;
	uint64_t r = 0;
	static const char magic[] = TG_NET_MAGIC;

	*ours = 0;
	if (len < HDR + TG_NET_HDR || len > BUF)
		return 0;                       /* not one of ours (or a runt) */
	flen = len - HDR;
	if (f[12] != (TG_NET_ETHERTYPE >> 8) || f[13] != (TG_NET_ETHERTYPE & 0xff))
		return 0;
	for (int i = 0; i < 8; i++)
		if (f[14 + i] != (uint8_t)magic[i])
			return 0;
	for (int i = 0; i < 8; i++)
		r |= (uint64_t)f[22 + i] << (8 * i);
	for (int i = 0; i < 4; i++)
		seq |= (uint32_t)f[30 + i] << (8 * i);
	if (r != round || seq >= sent || (got[seq / 64] >> (seq % 64) & 1))
		return 0;                       /* a stray or a duplicate */
	if (flen != tg_net_frame(expect, mac, P->seed, round, seq))
		return fail("came back with another length", round, seq);
	for (uint32_t i = 0; i < flen; i++)
		if (f[i] != expect[i])
			return fail("came back changed", round, seq);
	got[seq / 64] |= 1ull << (seq % 64);
	*sum += tg_net_frame_hash(f, flen, seq);
	*ours = 1;
	*seqp = seq;
	return 0;
}

/* the retransmit timeout after `resends` resends */
static uint64_t retx_after(uint32_t resends)
{
	uint64_t t = RETX_FIRST << (resends < 5 ? resends : 5);
	return t < RETX_MAX ? t : RETX_MAX;
}

/* frame seq of round into transmit slot `slot` (the same bytes every time) */
static void send(uint32_t slot, uint64_t round, uint32_t seq)
{
	uint8_t *b = txbuf[slot];
	uint16_t d = (uint16_t)(2 * slot);
	uint32_t len;

	for (int i = 0; i < HDR; i++)
		b[i] = 0;
	len = tg_net_frame(b + HDR, mac, P->seed, round, seq);
	if (seq & 1) {
		tx.desc[d] = (struct desc){ (uint64_t)b, HDR, D_NEXT, (uint16_t)(d + 1) };
		tx.desc[d + 1] = (struct desc){ (uint64_t)(b + HDR), len, 0, 0 };
	} else {
		tx.desc[d] = (struct desc){ (uint64_t)b, HDR + len, 0, 0 };
	}
	tx_busy[slot] = 1;
	tx_inflight++;
	tg_vq_add(&tq, d);
}

/* a free transmit slot, or TX_SLOTS */
static uint32_t free_slot(void)
{
	uint32_t s = 0;

	while (s < TX_SLOTS && tx_busy[s])
		s++;
	return s;
}

const char *tg_vnet_round(uint64_t round, uint64_t *hash_sum)
{
	uint32_t n = (uint32_t)P->netframes, sent = 0, echoed = 0;
	uint64_t last = run_clock();

	*hash_sum = 0;
	npend = 0;
	for (uint32_t i = 0; i < (n + 63) / 64; i++)
		got[i] = 0;
	while (echoed < n || tx_inflight) {
		uint32_t id, len, slot, progress = 0;
		uint64_t now = run_clock();
		const char *e;

		/* frames overdue are sent again, if the transmitq has room */
		for (uint32_t i = 0; i < npend; i++) {
			if ((int64_t)(now - pend[i].due) < 0)
				continue;
			if (pend[i].resends >= RETRIES) {
				if (tg_vpci_status(&dev) & 0x40)
					return fail("device needs reset", round, -1);
				return fail("not echoed (sent " STR(RETRIES) " times again)", round,
				            pend[i].seq);
			}
			if ((slot = free_slot()) == TX_SLOTS)
				break;
			send(slot, round, pend[i].seq);
			pend[i].resends++;
			pend[i].due = now + retx_after(pend[i].resends);
		}
		/* new frames while the window and the transmitq allow */
		while (sent < n && sent - echoed < WINDOW && (slot = free_slot()) < TX_SLOTS) {
			pend[npend].seq = sent;
			pend[npend].resends = 0;
			pend[npend].due = now + retx_after(0);
			npend++;
			send(slot, round, sent++);
			progress = 1;
		}
		tg_vq_kick(&tq);
		while (tg_vq_get(&tq, &id, &len)) {
			if (id >= TXN || (id & 1) || !tx_busy[id / 2])
				return fail("transmitq: the used ring names no pending frame", round, -1);
			tx_busy[id / 2] = 0;
			tx_inflight--;
			progress = 1;
		}
		while (tg_vq_get(&rq, &id, &len)) {
			int ours;
			uint32_t seq = 0;
			if (id >= RXN)
				return fail("receiveq: the used ring names no buffer", round, -1);
			e = received(rxbuf[id], len, round, sent, hash_sum, &ours, &seq);
			if (e)
				return e;
			if (ours) {
				for (uint32_t i = 0; i < npend; i++)
					if (pend[i].seq == seq) {
						pend[i] = pend[--npend];
						break;
					}
				echoed++;
				progress = 1;
			}
			tg_vq_add(&rq, (uint16_t)id);     /* posted again */
		}
		tg_vq_kick(&rq);
		if (progress) {
			last = run_clock();
		} else if (run_clock() - last > STALL_CYCLES) {
			/* nothing completed or echoed: resends cannot go out either */
			if (tg_vpci_status(&dev) & 0x40)
				return fail("device needs reset", round, -1);
			if (echoed < n) {
				uint32_t seq = 0;
				while (got[seq / 64] >> (seq % 64) & 1)
					seq++;
				return fail("not echoed (the transmitq stalled)", round, seq);
			}
			return fail("transmitq: frames not completed", round, -1);
		} else {
			asm volatile("pause");
		}
	}
	return 0;
}
