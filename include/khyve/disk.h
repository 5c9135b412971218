/*
 * Disk backends (src/disk/): a disk image opened, identified and copied
 * (raw.c), and the queue that runs its I/O off the device's thread, on an
 * io_uring (uring.c) or a pool of threads (pool.c).  The device model
 * (virtio-blk) knows requests and rings; this knows files and system
 * calls, and nothing of virtio or of snapshots.
 */
#ifndef KHYVE_DISK_H
#define KHYVE_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>

/* What identifies a disk's content, recorded in a snapshot (disk__ident). */
struct disk_ident {
	uint64_t size, dev, ino, mtime_ns, hash;
};

/*
 * Open, check and lock an image (an OFD lock: shared when ro, else
 * exclusive): a regular file or a block device.  On success *fdp, *sizep
 * (bytes) and abs (PATH_MAX bytes: the absolute path).  Messages in err
 * start with "who: ".  0, or -errno (-EBUSY: locked by another process).
 */
int disk__open(const char *who, const char *path, bool ro, int *fdp, uint64_t *sizep, char *abs,
	       char *err, size_t errlen);
/*
 * A disk's identity: size, device and inode, modification time, and a
 * hash of DISK_SAMPLES blocks spread evenly from the first to the last.
 */
void disk__ident(int fd, uint64_t size, struct disk_ident *id);
/*
 * Make dest (created or truncated, mode 0600) a copy of the first size
 * bytes of fd, fsync'ed: a reflink (FICLONE) where the file system can,
 * else a sparse copy.  path names fd in messages.  0, or -errno with err.
 */
int disk__copy(int fd, uint64_t size, const char *path, const char *dest, char *err, size_t errlen);

/* One operation on a disk.  The caller owns it until its completion. */
enum disk_op { DISK_READ, DISK_WRITE, DISK_FSYNC, DISK_FALLOC };

struct disk_io {
	int fd;
	enum disk_op op;
	bool dsync;			/* DISK_WRITE: RWF_DSYNC */
	int mode;			/* DISK_FALLOC: fallocate's mode */
	uint64_t off, len;		/* len: DISK_FALLOC's length */
	const struct iovec *iov;	/* DISK_READ, DISK_WRITE */
	unsigned int niov;
	/* the backend's */
	struct disk_io *next;
	int res;
};

/* A completion: res is the system call's result, or -errno. */
typedef void disk_done_fn(void *opaque, struct disk_io *io, int res);

struct disk_queue;

/*
 * Start a queue for up to depth operations in flight, which signals efd
 * (an eventfd) whenever operations complete: an io_uring if uring is true
 * and the kernel gives one, else a pool of DISK_WORKERS threads (each
 * confined with the device seccomp list).  name is for messages, and must
 * outlive the queue.  0 or -errno.
 */
int disk_queue__start(struct disk_queue **qp, bool uring, unsigned int depth, int efd, const char *name);
/* Stop it; nothing may be in flight. */
void disk_queue__stop(struct disk_queue *q);
/* Queue io (sent by disk_queue__commit; the pool starts it at once). */
void disk_queue__submit(struct disk_queue *q, struct disk_io *io);
void disk_queue__commit(struct disk_queue *q);
/*
 * Call done for every completion; with wait, for at least one (one must be
 * in flight), waiting no later than until (CLOCK_MONOTONIC; NULL: no
 * bound).  0, or -ETIMEDOUT when until passed with nothing completed.
 */
int disk_queue__reap(struct disk_queue *q, bool wait, const struct timespec *until,
		     disk_done_fn *done, void *opaque);

#endif
