/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest: the part of a ring-3 virtio 1.x PCI driver that does
 * not depend on the device: finding it through the PCICFG system call (the
 * only ring-0 help; ring 0 is emulated and slow under PVM), the
 * capabilities, feature negotiation and one queue's set-up, all as ring-3
 * MMIO on the BARs (identity-mapped below 4 GiB, uncached).
 */
#include "abi.h"
#include "vpci.h"
#include "work.h"

/* the device being set up (drivers are set up one after another, on CPU 0) */
static volatile uint8_t *common;

static inline long sys(long n, long a, long b, long c)
{
	long r;
	asm volatile("ud2" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "memory");
	return r;
}

static uint32_t cfg(uint32_t dev, uint32_t reg)
{
	return (uint32_t)sys(TG_SYS_PCICFG, dev << 11 | reg, 0, 0);
}

static void cfg_write(uint32_t dev, uint32_t reg, uint32_t v)
{
	sys(TG_SYS_PCICFG, dev << 11 | reg, v, 1);
}

/* common configuration registers (virtio 1.2, 4.1.4.3) */
static inline void w8(unsigned int off, uint8_t v) { *(volatile uint8_t *)(common + off) = v; }
static inline void w16(unsigned int off, uint16_t v) { *(volatile uint16_t *)(common + off) = v; }
static inline void w32(unsigned int off, uint32_t v) { *(volatile uint32_t *)(common + off) = v; }
static inline uint8_t r8(unsigned int off) { return *(volatile uint8_t *)(common + off); }
static inline uint16_t r16(unsigned int off) { return *(volatile uint16_t *)(common + off); }
static inline uint32_t r32(unsigned int off) { return *(volatile uint32_t *)(common + off); }

static void w64(unsigned int off, const void *p)
{
	uint64_t v = (uint64_t)p;
	w32(off, (uint32_t)v);
	w32(off + 4, (uint32_t)(v >> 32));
}

/* The address of BAR n (memory, 32- or 64-bit), or 0 if it is none. */
static uint64_t bar_addr(uint32_t dev, uint32_t n)
{
	uint32_t lo = cfg(dev, 0x10 + 4 * n);
	if (n > 5 || (lo & 1))
		return 0;
	if ((lo & 6) == 4)
		return n < 5 ? (lo & ~0xfull) | (uint64_t)cfg(dev, 0x14 + 4 * n) << 32 : 0;
	return lo & ~0xfull;
}

/* "NAME: msg" in a static buffer (drivers run on CPU 0 only) */
static const char *why(const char *name, const char *msg)
{
	static char buf[96];
	char *p = tg_stpcpy(buf, name);

	tg_stpcpy(tg_stpcpy(p, ": "), msg);
	return buf;
}

/* "NAME: no DEVICE PCI device" */
static const char *nodev(const char *name, const char *device)
{
	static char buf[96];
	char *p = tg_stpcpy(tg_stpcpy(buf, name), ": no ");

	tg_stpcpy(tg_stpcpy(p, device), " PCI device");
	return buf;
}

int tg_vpci_find(uint16_t pci_id)
{
	for (uint32_t dev = 0; dev < 32; dev++)
		if (cfg(dev, 0) == ((uint32_t)pci_id << 16 | VIRTIO_VENDOR))
			return (int)dev;
	return -1;
}

const char *tg_vpci_open(const char *name, const char *device, uint16_t pci_id,
			 struct vpci_dev *d)
{
	uint32_t dev, guard = 0;
	uint64_t b0;

	d->common = 0;
	d->devcfg = 0;
	d->notify_base = 0;
	d->notify_mult = 0;
	d->isr = 0;
	d->pcicfg_cap = 0;
	d->msix_table = d->msix_pba = 0;
	d->msix_n = 0;
	for (dev = 0; dev < 32; dev++)
		if (cfg(dev, 0) == ((uint32_t)pci_id << 16 | VIRTIO_VENDOR))
			break;
	if (dev == 32)
		return nodev(name, device);
	d->pcidev = dev;
	cfg_write(dev, 0x04, (cfg(dev, 0x04) & 0xffff) | 0x6);	/* memory, bus master */
	if (!(cfg(dev, 0x04) & (0x10 << 16)))
		return why(name, "no capability list");
	b0 = bar_addr(dev, 0);
	d->bar0 = b0 && b0 < (1ull << 32) ? (volatile uint8_t *)b0 : 0;
	for (uint32_t p = cfg(dev, 0x34) & 0xfc; p; p = (cfg(dev, p) >> 8) & 0xfc) {
		uint32_t h = cfg(dev, p), off = cfg(dev, p + 8);
		uint64_t base;
		if (++guard > 48)
			return why(name, "capability list loops");
		if ((h & 0xff) == 0x11) {       /* MSI-X: table and PBA offsets, BIR */
			uint32_t t = cfg(dev, p + 4), pba = cfg(dev, p + 8);
			uint64_t tb = bar_addr(dev, t & 7), pb = bar_addr(dev, pba & 7);
			d->msix_n = ((h >> 16) & 0x7ff) + 1;
			if (tb && tb + (t & ~7u) < (1ull << 32))
				d->msix_table = (volatile uint8_t *)(tb + (t & ~7u));
			if (pb && pb + (pba & ~7u) < (1ull << 32))
				d->msix_pba = (volatile uint8_t *)(pb + (pba & ~7u));
			continue;
		}
		if ((h & 0xff) != 0x09)
			continue;               /* not a virtio structure */
		if (h >> 24 == 5 && !d->pcicfg_cap) {
			d->pcicfg_cap = (uint8_t)p;
			continue;
		}
		base = bar_addr(dev, cfg(dev, p + 4) & 0xff);
		/* the page tables map 0..4 GiB identity (and RAM above) */
		if (!base || base + off >= (1ull << 32))
			continue;
		if (h >> 24 == 1 && !d->common)
			d->common = (volatile uint8_t *)(base + off);
		else if (h >> 24 == 2 && !d->notify_base) {
			d->notify_base = (volatile uint8_t *)(base + off);
			d->notify_mult = cfg(dev, p + 16);
		} else if (h >> 24 == 4 && !d->devcfg)
			d->devcfg = (volatile uint8_t *)(base + off);
		else if (h >> 24 == 3 && !d->isr)
			d->isr = (volatile uint8_t *)(base + off);
	}
	if (!d->common || !d->notify_base)
		return why(name, "common or notify capability missing");
	common = d->common;

	/* initialisation, virtio 1.2 section 3.1.1 */
	w8(0x14, 0);
	if (r8(0x14))
		return why(name, "device did not reset");
	w8(0x14, 1);
	w8(0x14, 3);
	w32(0x00, 0);
	d->offered = r32(0x04);
	w32(0x00, 1);
	d->offered |= (uint64_t)r32(0x04) << 32;
	if (!(d->offered & VIRTIO_F_VERSION_1))
		return why(name, "device does not offer VIRTIO_F_VERSION_1");
	return 0;
}

const char *tg_vpci_features(const char *name, struct vpci_dev *d, uint64_t features)
{
	common = d->common;
	w32(0x08, 0);
	w32(0x0c, (uint32_t)features);
	w32(0x08, 1);
	w32(0x0c, (uint32_t)(features >> 32));
	w8(0x14, 3 | 8);
	if (!(r8(0x14) & 8))
		return why(name, "FEATURES_OK not accepted");
	d->features = features;
	return 0;
}

const char *tg_vpci_queue(const char *name, struct vpci_dev *d, const struct vpci_queue *q,
			  volatile uint16_t **notify)
{
	common = d->common;
	w16(0x16, q->index);
	if (r16(0x18) < q->size)
		return why(name, "queue too small");
	w16(0x18, q->size);
	w64(0x20, q->desc);
	w64(0x28, q->avail);
	w64(0x30, q->used);
	*(volatile uint16_t *)q->avail = 1;	/* avail.flags: no interrupts, we poll */
	*notify = (volatile uint16_t *)(d->notify_base + (uint64_t)r16(0x1e) * d->notify_mult);
	w16(0x1c, 1);
	if (r16(0x1c) != 1)
		return why(name, "queue not enabled");
	return 0;
}

void tg_vpci_ready(struct vpci_dev *d)
{
	common = d->common;
	w8(0x14, 3 | 8 | 4);
}

const char *tg_vpci_setup(const char *name, const char *device, uint16_t pci_id,
			  const struct vpci_queue *q, struct vpci_dev *d)
{
	const char *e = tg_vpci_open(name, device, pci_id, d);

	if (!e && !(d->offered & VIRTIO_F_INDIRECT_DESC))
		e = why(name, "device does not offer VIRTIO_F_INDIRECT_DESC");
	if (!e)
		e = tg_vpci_features(name, d, VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC);
	if (!e)
		e = tg_vpci_queue(name, d, q, &d->notify);
	if (!e)
		tg_vpci_ready(d);
	return e;
}

const char *tg_vpci_kick_wait(const char *name, const struct vpci_dev *d, uint16_t queue,
			      volatile uint16_t *avail_idx, volatile uint16_t *used_idx, uint16_t want)
{
	__atomic_store_n(avail_idx, want, __ATOMIC_RELEASE);
	*d->notify = queue;
	for (uint64_t spins = 0; __atomic_load_n(used_idx, __ATOMIC_ACQUIRE) != want; spins++) {
		if (spins > (1u << 26))
			return why(name, (tg_vpci_status(d) & 0x40) ? "device needs reset" : "requests not completed");
		asm volatile("pause");
	}
	return 0;
}
