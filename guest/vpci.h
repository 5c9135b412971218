/* SPDX-License-Identifier: MIT */
/* khyve test guest: what the ring-3 virtio-pci drivers share. */
#ifndef TG_VPCI_H
#define TG_VPCI_H

#include <stdint.h>

#define VIRTIO_VENDOR   0x1af4

#define D_NEXT          1
#define D_WRITE         2
#define D_INDIRECT      4

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

/* Ring memory of one split virtqueue, owned by the driver. */
struct vpci_queue {
	uint16_t index;		/* which queue of the device */
	uint16_t size;
	void *desc, *avail, *used;
};

#define VIRTIO_F_INDIRECT_DESC	(1ull << 28)
#define VIRTIO_F_VERSION_1	(1ull << 32)

/* A device found by tg_vpci_open (or set up by tg_vpci_setup). */
struct vpci_dev {
	volatile uint8_t *common;	/* common configuration structure */
	volatile uint8_t *devcfg;	/* device-specific configuration, or NULL */
	volatile uint8_t *notify_base;	/* notification structure */
	uint32_t notify_mult;		/* notify_off_multiplier */
	uint64_t offered, features;	/* device features; negotiated features */
	volatile uint16_t *notify;	/* tg_vpci_setup: the queue's notify register */
	/* also found by tg_vpci_open (the hostile workload uses them) */
	uint32_t pcidev;		/* device number on bus 0 */
	volatile uint8_t *isr;		/* ISR status byte, or NULL */
	volatile uint8_t *bar0;		/* BAR 0, or NULL */
	uint8_t pcicfg_cap;		/* VIRTIO_PCI_CAP_PCI_CFG capability offset, or 0 */
	volatile uint8_t *msix_table, *msix_pba;	/* or NULL */
	uint32_t msix_n;		/* MSI-X table entries */
};

/* The device number on bus 0 of virtio device pci_id, or -1. */
int tg_vpci_find(uint16_t pci_id);

/*
 * One split virtqueue as the drivers that keep many requests in flight use
 * it (vblk.c, vnet.c): descriptors chained by the driver, heads added to
 * the available ring, used entries taken in whatever order the device
 * completes them.
 */
struct vq {
	uint16_t index, size;		/* queue number, entries */
	struct desc *desc;
	volatile uint16_t *avail;	/* flags, idx, ring[size], used_event */
	volatile uint16_t *used;	/* flags, idx, then { u32 id, len }[size] */
	volatile uint16_t *notify;
	uint16_t next_avail;		/* the driver's avail idx, not yet published */
	uint16_t published;		/* the avail idx last published */
	uint16_t last_used;		/* used entries taken */
};

/* Put descriptor chain `head` in the available ring (not yet visible). */
static inline void tg_vq_add(struct vq *q, uint16_t head)
{
	q->avail[2 + q->next_avail % q->size] = head;
	q->next_avail++;
}

/* Publish what tg_vq_add put in the ring and notify the device. */
static inline void tg_vq_kick(struct vq *q)
{
	if (q->next_avail == q->published)
		return;
	__atomic_store_n(&q->avail[1], q->next_avail, __ATOMIC_RELEASE);
	q->published = q->next_avail;
	*q->notify = q->index;
}

/* Take the next used entry: 1 with *id and *len, or 0 if there is none. */
static inline int tg_vq_get(struct vq *q, uint32_t *id, uint32_t *len)
{
	volatile uint32_t *e;

	if (__atomic_load_n(&q->used[1], __ATOMIC_ACQUIRE) == q->last_used)
		return 0;
	e = (volatile uint32_t *)(q->used + 2) + 2 * (q->last_used % q->size);
	*id = e[0];
	*len = e[1];
	q->last_used++;
	return 1;
}

/* The device status register (virtio 1.2, 2.1), e.g. for NEEDS_RESET. */
static inline uint8_t tg_vpci_status(const struct vpci_dev *d)
{
	return d->common[0x14];
}

/*
 * Publish avail index `want`, notify queue `queue`, and poll until the
 * device's used index reaches it.  NULL, or "NAME: ..." (needs reset, or
 * no completion within 2^26 spins).
 */
const char *tg_vpci_kick_wait(const char *name, const struct vpci_dev *d, uint16_t queue,
			      volatile uint16_t *avail_idx, volatile uint16_t *used_idx, uint16_t want);

/*
 * The steps of tg_vpci_setup, for drivers that need more than it does:
 * tg_vpci_open finds device pci_id, its capabilities (common, notify,
 * device-specific), resets it, sets ACKNOWLEDGE and DRIVER, and reads the
 * offered features into d->offered (VIRTIO_F_VERSION_1 required);
 * tg_vpci_features writes the driver's features and sets FEATURES_OK;
 * tg_vpci_queue sets up and enables one queue (avail.flags = no
 * interrupts) and gives its notify register; tg_vpci_ready sets DRIVER_OK.
 * NULL, or "NAME: what went wrong" (static buffer).
 */
const char *tg_vpci_open(const char *name, const char *device, uint16_t pci_id,
			 struct vpci_dev *d);
const char *tg_vpci_features(const char *name, struct vpci_dev *d, uint64_t features);
const char *tg_vpci_queue(const char *name, struct vpci_dev *d, const struct vpci_queue *q,
			  volatile uint16_t **notify);
void tg_vpci_ready(struct vpci_dev *d);

/*
 * Find the virtio PCI device pci_id, negotiate VIRTIO_F_VERSION_1 and
 * VIRTIO_F_INDIRECT_DESC, set up and enable queue q, set DRIVER_OK, and
 * fill *d.  NULL, or "NAME: what
 * went wrong" (a static buffer; "NAME: no DEVICE PCI device" if absent).
 */
const char *tg_vpci_setup(const char *name, const char *device, uint16_t pci_id,
			  const struct vpci_queue *q, struct vpci_dev *d);

#endif
