/*
 * Inside virtio-blk: the device (blk.c: options, requests, life cycle) and
 * its snapshot codec (blk_snap.c: save, encode, decode, restore, disk
 * copies) share the device's struct and these few functions.
 */
#ifndef KHYVE_VIRTIO_BLK_H
#define KHYVE_VIRTIO_BLK_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "khyve/disk.h"
#include "khyve/pci.h"
#include "khyve/virtio.h"

#define BLK_STATE_VERSION	2	/* 2: the function's placement */
#define BLK_ID_BYTES		20
#define SECTOR			512u

struct sbuf;
struct dec;
struct blk_req;

struct blk_state {
	struct pci_func_state pci;
	struct virtio_state virtio;
	char path[PATH_MAX];		/* absolute */
	bool read_only;
	uint64_t capacity;		/* sectors */
	char serial[BLK_ID_BYTES + 1];
	struct disk_ident disk;		/* at save time */
	char copy[PATH_MAX];		/* a copy of the disk in the snapshot, or "" */
};

struct blk {
	struct virtio_dev vd;		/* first: the transport's pointer is ours */
	struct blk *left_next;		/* on left_behind (blk.c) */
	int fd;
	bool read_only;
	char path[PATH_MAX];
	uint64_t size, capacity;
	char serial[BLK_ID_BYTES + 1];
	bool no_punch, no_zero;		/* fallocate modes the image refused */

	struct blk_req *reqs, *free;
	unsigned int inflight;		/* requests started, not yet completed */
	bool stalled;			/* stopped taking requests: no free slot */
	bool dropping;			/* reset / exit: complete nothing into rings */

	int efd;			/* completions */
	struct disk_queue *q;		/* io_uring or a thread pool */
	struct virtq_elem elem;		/* large: not on a vCPU's stack */
};

/* blk_opts.c: -s N,virtio-blk,OPTIONS */
struct blk_opts {
	char path[PATH_MAX];
	bool ro;
	char serial[BLK_ID_BYTES + 1];	/* "" : derived */
};
int blk__parse(const char *opts, struct blk_opts *o, char *err, size_t errlen);
int blk__check(const char *opts, char *err, size_t errlen);

/* [0] read-write, [1] read-only: what is offered differs */
extern const struct virtio_type blk_types[2];

int blk__init(struct pci_dev *pd, const char *opts, char *err, size_t errlen);
/*
 * Wait until nothing is in flight; with serve_all, until the avail ring is
 * empty too.  until (CLOCK_MONOTONIC, NULL: no bound) ends the wait: then
 * -ETIMEDOUT, with what is still in flight left to complete as usual.
 */
int blk__drain(struct blk *b, bool serve_all, const struct timespec *until);
/* Whether the restore's command line gave this slot other options than the snapshot's. */
bool blk__overridden(const struct pci_dev *pd);

/* blk_snap.c: the device_ops hooks */
void blk__save(void *priv, void *state);
void blk__encode(struct sbuf *b, const void *state);
void blk__decode(struct dec *d, const struct cbor_item_t *m, uint32_t version, void *state);
int blk__restore(void *priv, const void *state, char *err, size_t errlen);
int blk__copy_files(void *priv, void *state, const char *path, const char *name, char *err, size_t errlen);

#endif
