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

/* A device set up by tg_vpci_setup. */
struct vpci_dev {
	volatile uint8_t *common;	/* common configuration structure */
	volatile uint16_t *notify;	/* the set-up queue's notify register */
};

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
 * Find the virtio PCI device pci_id, negotiate VIRTIO_F_VERSION_1 and
 * VIRTIO_F_INDIRECT_DESC, set up and enable queue q, set DRIVER_OK, and
 * fill *d.  NULL, or "NAME: what
 * went wrong" (a static buffer; "NAME: no DEVICE PCI device" if absent).
 */
const char *tg_vpci_setup(const char *name, const char *device, uint16_t pci_id,
			  const struct vpci_queue *q, struct vpci_dev *d);

#endif
