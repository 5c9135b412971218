/*
 * Virtio 1.x over PCI (the modern transport only) and split virtqueues.
 *
 * BAR 0 (16 KiB, memory) holds, at fixed offsets, the common configuration,
 * the ISR byte, the device configuration, the notification area (one 4-byte
 * slot per queue) and the MSI-X table and PBA.  A VIRTIO_PCI_CAP_PCI_CFG
 * capability, the last in the list, gives access to all of BAR 0 through
 * configuration space, for drivers that cannot map it.  Every guest address
 * and length is checked against guest RAM before it is used.
 *
 * Threads: each device has an I/O thread once it has something to wait
 * for.  Queue notifications reach it through an ioeventfd per queue (KVM
 * signals an eventfd instead of exiting to khyve; without KVM's help the
 * notify write that does exit hands over the same way; with no thread at
 * all, as in unit tests, the notifying vCPU serves the queue), and a device may watch its own
 * fds there (a tap, an io_uring completion eventfd).  Every device callback
 * runs under the device lock (pd->lock), on the I/O thread or a vCPU, and
 * none runs while the VM is paused: the pause calls the type's quiesce,
 * which finishes requests in flight, and the I/O thread then waits until
 * resume.
 */
#ifndef KHYVE_VIRTIO_H
#define KHYVE_VIRTIO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "khyve/pci.h"

#define VIRTIO_PCI_VENDOR	0x1af4
#define VIRTIO_PCI_DEVICE_BASE	0x1040	/* + virtio device ID */
#define VIRTIO_MAX_QUEUES	4
#define VIRTIO_QUEUE_MAX	1024	/* largest queue size any device offers */
#define VIRTIO_CHAIN_MAX	VIRTIO_QUEUE_MAX	/* descriptors in one chain */
#define VIRTIO_NO_VECTOR	0xffff

/* BAR 0 layout */
#define VIRTIO_BAR_SIZE		0x4000
#define VIRTIO_COMMON_OFF	0x0000
#define VIRTIO_COMMON_LEN	0x0038
#define VIRTIO_ISR_OFF		0x1000
#define VIRTIO_DEVCFG_OFF	0x1800
#define VIRTIO_DEVCFG_MAX	0x0800
#define VIRTIO_NOTIFY_OFF	0x2000
#define VIRTIO_NOTIFY_MULT	4
#define VIRTIO_MSIX_TABLE_OFF	0x3000
#define VIRTIO_MSIX_PBA_OFF	0x3800

/* device status */
#define VIRTIO_S_ACKNOWLEDGE	0x01
#define VIRTIO_S_DRIVER		0x02
#define VIRTIO_S_DRIVER_OK	0x04
#define VIRTIO_S_FEATURES_OK	0x08
#define VIRTIO_S_NEEDS_RESET	0x40
#define VIRTIO_S_FAILED		0x80
#define VIRTIO_S_RESERVED	0x30	/* bits 4 and 5: ignored when written */

/* transport features (bits) */
#define VIRTIO_F_INDIRECT_DESC	28
#define VIRTIO_F_EVENT_IDX	29
#define VIRTIO_F_VERSION_1	32

/* descriptor flags */
#define VIRTQ_DESC_F_NEXT	1
#define VIRTQ_DESC_F_WRITE	2
#define VIRTQ_DESC_F_INDIRECT	4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

struct virtio_queue_state {
	uint16_t size;		/* current; a power of two <= max */
	uint16_t vector;	/* MSI-X vector or VIRTIO_NO_VECTOR */
	uint8_t enabled;
	uint64_t desc, driver, device;	/* guest-physical */
	uint16_t last_avail;	/* next avail ring entry to take */
	uint16_t used_idx;	/* next used ring entry to fill */
};

/* The transport's state: plain, part of every virtio device's section. */
struct virtio_state {
	uint64_t dev_features;	/* offered */
	uint64_t drv_features;	/* accepted by the driver */
	uint32_t dev_feature_sel, drv_feature_sel;
	uint8_t status, isr, config_gen;
	uint16_t config_vector, queue_sel, nqueues;
	struct virtio_queue_state q[VIRTIO_MAX_QUEUES];
};

struct virtio_dev;

/* One element taken from a queue: a descriptor chain as host buffers. */
struct virtq_elem {
	uint16_t head;
	unsigned int nin, nout;	/* device-writable, device-readable buffers */
	struct iovec in[VIRTIO_CHAIN_MAX];
	struct iovec out[VIRTIO_CHAIN_MAX];
};

struct virtio_type {
	uint16_t device_id;	/* virtio device ID: 4 = entropy */
	uint32_t class_code;
	uint64_t features;	/* device-specific bits; transport bits are added */
	uint16_t nqueues;
	uint16_t queue_max;	/* size of each queue */
	/* queue q was notified: take, serve and return requests */
	void (*queue_notify)(struct virtio_dev *vd, unsigned int q);
	void (*reset)(struct virtio_dev *vd);
	/*
	 * Device-specific configuration: config_size bytes (0: none, and no
	 * VIRTIO_PCI_CAP_DEVICE_CFG capability), at most VIRTIO_DEVCFG_MAX.
	 * The callbacks run under the device lock for a naturally aligned
	 * access of 1, 2, 4 or 8 bytes inside [0, config_size); the transport
	 * drops every other access (reads see zeros).  A device that changes
	 * its configuration itself calls virtio__config_changed().
	 */
	uint32_t config_size;
	void (*config_read)(struct virtio_dev *vd, unsigned int off, uint8_t *data, unsigned int len);
	void (*config_write)(struct virtio_dev *vd, unsigned int off, const uint8_t *data, unsigned int len);
	/*
	 * Optional.  The VM pauses (the vCPUs are already stopped): finish
	 * every request in flight, its completion in the used ring, so that
	 * the device state and guest memory tell the whole story; start
	 * nothing new until resume.  Every wait is bounded: what cannot finish
	 * in a few seconds fails the pause with -errno and a message in err
	 * (naming the device), and the transport resumes the device.
	 */
	int (*quiesce)(struct virtio_dev *vd, char *err, size_t errlen);
	/* Optional: the VM runs again after quiesce. */
	void (*resume)(struct virtio_dev *vd);
};

struct virtio_io;
typedef void (*virtio_ready_fn)(struct virtio_dev *vd, int fd);

struct virtio_dev {
	struct pci_dev *pd;
	const struct virtio_type *type;
	struct virtio_state st;
	void *priv;
	uint8_t pci_cfg_cap;	/* offset of the VIRTIO_PCI_CAP_PCI_CFG capability */
	bool paused;		/* under pd->lock: the VM is paused, serve nothing */
	struct virtio_io *io;	/* the I/O thread, NULL until needed */
};

/* Set up pd as a virtio device of this type (IDs, BAR 0, capabilities). */
int virtio__init(struct pci_dev *pd, struct virtio_dev *vd, const struct virtio_type *type);
/*
 * Stop the I/O thread and release what the transport holds; a device's
 * exit calls it first, before freeing anything the callbacks use.
 */
void virtio__exit(struct virtio_dev *vd);
/*
 * The same, but waits for the I/O thread until the CLOCK_MONOTONIC time
 * until at most: -ETIMEDOUT if it has not ended by then (a thread whose
 * io_uring requests hang in the kernel cannot end), and its resources are
 * then left as they are, for the process's exit.
 */
int virtio__exit_until(struct virtio_dev *vd, const struct timespec *until);
/* pci_dev hooks virtio__init installs (io.c) */
int virtio__placed(struct pci_dev *pd);
void virtio__restored(struct virtio_dev *vd);
void virtio__sync_notify(struct virtio_dev *vd);
/* 0, or -errno with err: the device was not paused (it runs on). */
int virtio__pause(struct pci_dev *pd, char *err, size_t errlen);
void virtio__resume(struct pci_dev *pd);
/*
 * Call ready(vd, fd) on the I/O thread, under the device lock and never
 * while paused, whenever fd is readable (level-triggered: ready must
 * consume what it can or the thread comes straight back).  0 or -errno.
 */
int virtio__watch(struct virtio_dev *vd, int fd, virtio_ready_fn ready);
/*
 * Stop or restart watching fd (added with virtio__watch), e.g. while the
 * driver has posted no buffer to receive into.  Caller holds the device lock.
 */
void virtio__watch_enable(struct virtio_dev *vd, int fd, bool on);
/*
 * Serve queue q again soon, as if the driver had notified it (caller holds
 * the device lock): on the I/O thread, or at once if there is none.
 */
void virtio__kick(struct virtio_dev *vd, unsigned int q);

/*
 * Take the next available chain of queue q.  1 with elem filled, 0 when the
 * ring is empty, or -EINVAL when the driver broke the rules (the device is
 * then marked DEVICE_NEEDS_RESET and serves nothing until reset).
 */
int virtq__pop(struct virtio_dev *vd, unsigned int q, struct virtq_elem *elem);
/* Return a chain with len bytes written; interrupt the driver if it wants. */
void virtq__push(struct virtio_dev *vd, unsigned int q, uint16_t head, uint32_t len);
/* After a batch of pushes: interrupt unless suppressed (flags, event index). */
void virtq__notify(struct virtio_dev *vd, unsigned int q, uint16_t old_used);
bool virtio__has(const struct virtio_dev *vd, unsigned int bit);
/* Mark the device broken (DEVICE_NEEDS_RESET) and tell the driver. */
void virtio__needs_reset(struct virtio_dev *vd, const char *why);
/*
 * The device changed its device-specific configuration (caller holds the
 * device lock): a new config_generation, and a configuration change
 * notification once the driver is ready for interrupts (DRIVER_OK).
 */
void virtio__config_changed(struct virtio_dev *vd);

/* The transport's part of a device's section. */
void virtio__encode(struct sbuf *b, const struct virtio_state *s);
/*
 * Decode and validate against the type and guest RAM of mem_size bytes:
 * accepted features within offered ones, queue sizes powers of two within
 * the type's limit, rings of enabled queues inside RAM, vectors in range.
 */
void virtio__decode(struct dec *d, const struct cbor_item_t *map, struct virtio_state *s,
		    const struct virtio_type *type, uint64_t mem_size);
/* Put a decoded state into a freshly initialised device. 0 or -EINVAL. */
int virtio__restore(struct virtio_dev *vd, const struct virtio_state *s, char *err, size_t errlen);

#endif
