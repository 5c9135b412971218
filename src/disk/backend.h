/*
 * Inside src/disk/: a queue is one of two backends behind the same four
 * operations (uring.c, pool.c); queue.c picks one and dispatches.
 */
#ifndef KHYVE_DISK_BACKEND_H
#define KHYVE_DISK_BACKEND_H

#include "khyve/disk.h"

#define DISK_WORKERS	4		/* threads of a pool */

struct disk_queue_ops {
	void (*submit)(struct disk_queue *q, struct disk_io *io);
	void (*commit)(struct disk_queue *q);
	int (*reap)(struct disk_queue *q, bool wait, const struct timespec *until,
		    disk_done_fn *done, void *opaque);
	void (*stop)(struct disk_queue *q);
};

struct disk_queue {
	const struct disk_queue_ops *ops;
	const char *name;
	int efd;
};

/* Each 0 and *qp, or -errno. */
int uring__start(struct disk_queue **qp, unsigned int depth, int efd, const char *name);
int pool__start(struct disk_queue **qp, int efd, const char *name);

/* pread/pwrite until len bytes are done: 0, -errno, or -EIO at the end of the file */
int disk__pread_full(int fd, void *buf, size_t len, uint64_t off);
int disk__pwrite_full(int fd, const void *buf, size_t len, uint64_t off);

#endif
