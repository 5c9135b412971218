/*
 * virtio-blk (virtio 1.2 section 5.2, device ID 2): one request queue over
 * a disk image, a regular file or a block device.
 *
 *   -s N,virtio-blk,PATH[,ro][,serial=ID]
 *   -s N,virtio-blk,path=PATH[,ro][,serial=ID]
 *
 * "ro" opens the image read-only and offers VIRTIO_BLK_F_RO (writes fail).
 * serial=ID (1-20 printable characters, no comma) is what GET_ID returns;
 * without it the ID is "KHYVE-XXXX-XXXX-XXXX" from a hash of the image's
 * absolute path.  The capacity is the image's size in 512-byte sectors,
 * rounded down: a tail of less than a sector is never read or written.
 * The image is locked (an OFD lock: shared with ro, else exclusive) so two
 * VMs never write one disk.
 *
 * Requests: IN, OUT, FLUSH (fdatasync), GET_ID, DISCARD and WRITE_ZEROES.
 * After a DISCARD the sectors read as zeros, as after WRITE_ZEROES: holes
 * are punched (FALLOC_FL_PUNCH_HOLE), else the range is zeroed
 * (FALLOC_FL_ZERO_RANGE), else zeros are written.  WRITE_ZEROES tries
 * ZERO_RANGE first unless the driver allows unmapping.  Without
 * VIRTIO_BLK_F_FLUSH negotiated, writes are write-through (RWF_DSYNC).
 * Anything the driver gets wrong is its request's error, never the host's:
 * a request whose layout or range is wrong ends with VIRTIO_BLK_S_IOERR, an
 * unknown type with VIRTIO_BLK_S_UNSUPP, and a chain with no byte to put a
 * status in marks the device DEVICE_NEEDS_RESET.
 *
 * I/O leaves the notifying thread: up to BLK_DEPTH requests are in flight
 * on an io_uring, whose completions signal an eventfd that the device's
 * I/O thread watches (virtio__watch); they are reaped there under the
 * device lock, and the driver is interrupted once per batch.  Where
 * io_uring cannot be had (an old kernel, seccomp, or KHYVE_BLK_NO_URING=1)
 * a pool of BLK_WORKERS threads does the same system calls synchronously
 * and completes through the same eventfd.  When every request slot is
 * busy the rest stays in the avail ring until a completion frees a slot.
 *
 * Pause (quiesce): every request in flight is finished and in the used
 * ring, and so is every request the driver had made available, so the
 * snapshot holds no I/O at all and the restored device has nothing to be
 * told about.  The section records the disk's identity (size, device,
 * inode, modification time, a hash of sampled blocks); restore refuses a
 * disk that changed unless --force-disk.
 */
#include <errno.h>
#include <endian.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <liburing.h>
#include <xxhash.h>

#include "khyve/log.h"
#include "khyve/seccomp.h"
#include "khyve/snapfmt.h"
#include "khyve/util.h"
#include "khyve/vblk.h"
#include "khyve/virtio.h"
#include "khyve/vm.h"

#define BLK_STATE_VERSION	2	/* 2: the function's placement */
#define BLK_QUEUE_SIZE		256
#define BLK_DEPTH		128		/* requests in flight */
#define BLK_SEG_MAX		128		/* data buffers per request (seg_max) */
#define BLK_SIZE_MAX		(1u << 20)	/* size_max: bytes per buffer, advisory */
#define BLK_REQ_MAX		(1u << 30)	/* data bytes per request */
#define BLK_DWZ_SEG_MAX		32		/* ranges per discard / write zeroes */
#define BLK_DWZ_SECTORS		65536u		/* sectors per range (32 MiB) */
#define BLK_DWZ_ALIGN		8u		/* discard_sector_alignment: 4 KiB */
#define BLK_ID_BYTES		20
#define BLK_CONFIG_SIZE		60		/* up to write_zeroes_may_unmap + padding */
#define BLK_WORKERS		4
#define BLK_ZBUF		(64u << 10)
#define BLK_ZIOV		16		/* zeros written per system call: 1 MiB */
#define BLK_SAMPLES		66		/* blocks hashed for the disk's identity */
#define BLK_SAMPLE_SIZE		4096u
#define SECTOR			512u

/* feature bits */
#define VIRTIO_BLK_F_SIZE_MAX	1
#define VIRTIO_BLK_F_SEG_MAX	2
#define VIRTIO_BLK_F_RO		5
#define VIRTIO_BLK_F_BLK_SIZE	6
#define VIRTIO_BLK_F_FLUSH	9
#define VIRTIO_BLK_F_DISCARD	13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* request types and status */
#define VIRTIO_BLK_T_IN		0
#define VIRTIO_BLK_T_OUT	1
#define VIRTIO_BLK_T_FLUSH	4
#define VIRTIO_BLK_T_GET_ID	8
#define VIRTIO_BLK_T_DISCARD	11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK		0
#define VIRTIO_BLK_S_IOERR	1
#define VIRTIO_BLK_S_UNSUPP	2
#define VIRTIO_BLK_WZ_UNMAP	1u

#define BLK_HDR			16
#define BLK_DWZ			16

struct blk_ident {
	uint64_t size, dev, ino, mtime_ns, hash;
};

struct blk_state {
	struct pci_func_state pci;
	struct virtio_state virtio;
	char path[PATH_MAX];		/* absolute */
	bool read_only;
	uint64_t capacity;		/* sectors */
	char serial[BLK_ID_BYTES + 1];
	struct blk_ident disk;		/* at save time */
	char copy[PATH_MAX];		/* a copy of the disk in the snapshot, or "" */
};

enum blk_op { OP_READ, OP_WRITE, OP_FSYNC, OP_FALLOC };
/* how a discard / write zeroes range is being zeroed */
enum { Z_PUNCH, Z_ZERO, Z_WRITE };

struct blk_range {
	uint64_t sector;
	uint32_t n;
};

struct blk;

struct blk_req {
	struct blk *b;
	struct blk_req *next;		/* free list, or a pool list */
	uint16_t head;
	uint8_t type;
	uint8_t *status;		/* the chain's status byte (guest RAM) */
	uint32_t written;		/* bytes put into the chain besides status */
	/* the operation in flight */
	enum blk_op op;
	bool dsync;			/* OP_WRITE: write-through (no FLUSH negotiated) */
	bool zeros;			/* OP_WRITE from the zero buffer */
	int mode;			/* OP_FALLOC */
	uint64_t off, left;		/* file offset and bytes still to do */
	struct iovec *iov;		/* data or ziov */
	unsigned int iov0, niov;	/* iov[iov0, niov) is what is left */
	int res;			/* pool: the system call's result */
	/* discard / write zeroes */
	unsigned int nrange, range;
	unsigned int how;		/* index in zero_order[unmap] for the current range */
	bool unmap;
	union {
		struct iovec data[BLK_SEG_MAX];
		struct blk_range ranges[BLK_DWZ_SEG_MAX];
	};
	struct iovec ziov[BLK_ZIOV];
};

struct blk_pool {
	pthread_mutex_t lock;
	pthread_cond_t work, done_cond;
	struct blk_req *jobs, **jobs_tail;
	struct blk_req *done, **done_tail;
	pthread_t thread[BLK_WORKERS];
	unsigned int nthreads;
	bool stop;
	int efd;
};

struct blk {
	struct virtio_dev vd;		/* first: the transport's pointer is ours */
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
	bool uring;
	struct io_uring ring;
	struct blk_pool pool;
	struct virtq_elem elem;		/* large: not on a vCPU's stack */
};

/* read-only by _every_ writer: a zero source for WRITE_ZEROES by writing */
static uint8_t zero_buf[BLK_ZBUF];

static void put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return le32toh(v);
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return le64toh(v);
}

/* ---------- options ---------- */

struct blk_opts {
	char path[PATH_MAX];
	bool ro;
	char serial[BLK_ID_BYTES + 1];	/* "" : derived */
};

static int blk__parse(const char *opts, struct blk_opts *o, char *err, size_t errlen)
{
	const char *p = opts;
	bool first = true, have_path = false;

	memset(o, 0, sizeof(*o));
	while (p && *p) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		const char *val = NULL;
		size_t vlen = 0;

		if (!n)
			return util__fail(-EINVAL, err, errlen, "virtio-blk: empty option in '%s'", opts);
		if (n == 2 && !strncmp(p, "ro", 2)) {
			o->ro = true;
		} else if (n > 7 && !strncmp(p, "serial=", 7)) {
			vlen = n - 7;
			if (vlen > BLK_ID_BYTES)
				return util__fail(-EINVAL, err, errlen, "virtio-blk: serial '%.*s' is longer than %u bytes",
						  (int)vlen, p + 7, BLK_ID_BYTES);
			for (size_t i = 0; i < vlen; i++)
				if (p[7 + i] < 0x20 || p[7 + i] > 0x7e)
					return util__fail(-EINVAL, err, errlen,
							  "virtio-blk: serial may hold printable ASCII only");
			memcpy(o->serial, p + 7, vlen);
			o->serial[vlen] = '\0';
		} else if ((n > 5 && !strncmp(p, "path=", 5)) || (first && !memchr(p, '=', n))) {
			val = p[4] == '=' && !strncmp(p, "path=", 5) ? p + 5 : p;
			vlen = n - (size_t)(val - p);
			if (have_path)
				return util__fail(-EINVAL, err, errlen, "virtio-blk: more than one disk image in '%s'", opts);
			if (vlen >= sizeof(o->path))
				return util__fail(-EINVAL, err, errlen, "virtio-blk: disk image path too long");
			memcpy(o->path, val, vlen);
			o->path[vlen] = '\0';
			have_path = true;
		} else {
			return util__fail(-EINVAL, err, errlen, "virtio-blk: unknown option '%.*s'", (int)n, p);
		}
		first = false;
		p = end ? end + 1 : NULL;
		if (end && !*p)
			return util__fail(-EINVAL, err, errlen, "virtio-blk: empty option in '%s'", opts);
	}
	if (!have_path)
		return util__fail(-EINVAL, err, errlen,
				  "virtio-blk needs a disk image: -s SLOT,virtio-blk,PATH[,ro][,serial=ID]");
	return 0;
}

static int blk__check(const char *opts, char *err, size_t errlen)
{
	struct blk_opts *o = malloc(sizeof(*o));
	int ret;

	if (!o)
		return util__fail(-ENOMEM, err, errlen, "virtio-blk: out of memory");
	ret = blk__parse(opts, o, err, errlen);
	free(o);
	return ret;
}

/* ---------- the disk ---------- */

/* Open, check and lock an image; on success *fdp, *sizep and abs (PATH_MAX). */
static int disk_open(const char *path, bool ro, int *fdp, uint64_t *sizep, char *abs, char *err, size_t errlen)
{
	struct flock fl = { .l_type = ro ? F_RDLCK : F_WRLCK, .l_whence = SEEK_SET };
	struct stat st;
	uint64_t size;
	int fd, ret;

	/* O_NONBLOCK: a FIFO must not hang us; it has no effect on files and disks */
	fd = open(path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return util__fail(-errno, err, errlen, "virtio-blk: cannot open disk image '%s': %s", path,
				  strerror(errno));
	if (fstat(fd, &st) < 0) {
		ret = util__fail(-errno, err, errlen, "virtio-blk: disk image '%s': %s", path, strerror(errno));
		goto fail;
	}
	if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
			ret = util__fail(-errno, err, errlen, "virtio-blk: disk image '%s': size: %s", path,
					 strerror(errno));
			goto fail;
		}
	} else {
		ret = util__fail(-EINVAL, err, errlen, "virtio-blk: disk image '%s' is not a regular file or a block device",
				 path);
		goto fail;
	}
	if (fcntl(fd, F_SETFL, 0) < 0) {
		ret = util__fail(-errno, err, errlen, "virtio-blk: disk image '%s': %s", path, strerror(errno));
		goto fail;
	}
	if (fcntl(fd, F_OFD_SETLK, &fl) < 0 && (errno == EAGAIN || errno == EACCES)) {
		ret = util__fail(-EBUSY, err, errlen, "virtio-blk: disk image '%s' is in use by another process (locked)",
				 path);
		goto fail;
	}
	if (!realpath(path, abs))
		snprintf(abs, PATH_MAX, "%s", path);
	*fdp = fd;
	*sizep = size;
	return 0;
fail:
	close(fd);
	return ret;
}

static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;

	while (got < len) {
		ssize_t r = pread(fd, (uint8_t *)buf + got, len - got, (off_t)(off + got));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		got += (size_t)r;
	}
	return 0;
}

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = pwrite(fd, (const uint8_t *)buf + done, len - done, (off_t)(off + done));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		done += (size_t)r;
	}
	return 0;
}

/*
 * What identifies a disk: size, device and inode, modification time, and
 * a hash of BLK_SAMPLES blocks spread evenly from the first to the last.
 */
static void disk_ident(int fd, uint64_t size, struct blk_ident *id)
{
	uint8_t buf[BLK_SAMPLE_SIZE];
	uint64_t nblk = (size + BLK_SAMPLE_SIZE - 1) / BLK_SAMPLE_SIZE, prev = UINT64_MAX;
	struct stat st;

	memset(id, 0, sizeof(*id));
	id->size = size;
	if (fstat(fd, &st) == 0) {
		id->dev = st.st_dev;
		id->ino = st.st_ino;
		id->mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000ULL + (uint64_t)st.st_mtim.tv_nsec;
	}
	id->hash = XXH3_64bits(&size, sizeof(size));
	for (uint64_t i = 0; nblk && i < BLK_SAMPLES; i++) {
		uint64_t k = i * (nblk - 1) / (BLK_SAMPLES - 1);
		uint64_t off = k * BLK_SAMPLE_SIZE;
		size_t len = size - off < BLK_SAMPLE_SIZE ? (size_t)(size - off) : BLK_SAMPLE_SIZE;

		if (k == prev)
			continue;
		prev = k;
		if (pread_full(fd, buf, len, off))
			memset(buf, 0xff, len);	/* unreadable: unlike any content */
		id->hash = XXH3_64bits_withSeed(buf, len, id->hash ^ k);
	}
}

/* ---------- the backends: io_uring, or a thread pool ---------- */

static void *worker(void *arg);

static int pool_start(struct blk *b)
{
	struct blk_pool *p = &b->pool;
	pthread_attr_t attr;
	int ret = 0;

	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done_cond, NULL);
	p->jobs_tail = &p->jobs;
	p->done_tail = &p->done;
	p->efd = b->efd;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 << 10);
	for (p->nthreads = 0; p->nthreads < BLK_WORKERS; p->nthreads++) {
		ret = -pthread_create(&p->thread[p->nthreads], &attr, worker, b);
		if (ret)
			break;
	}
	pthread_attr_destroy(&attr);
	return p->nthreads ? 0 : ret;
}

static void pool_stop(struct blk *b)
{
	struct blk_pool *p = &b->pool;

	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (unsigned int i = 0; i < p->nthreads; i++)
		pthread_join(p->thread[i], NULL);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done_cond);
	pthread_mutex_destroy(&p->lock);
}

static int do_op(struct blk *b, struct blk_req *r)
{
	unsigned int n = r->niov - r->iov0;
	ssize_t res;

	switch (r->op) {
	case OP_READ:
		res = preadv(b->fd, r->iov + r->iov0, (int)n, (off_t)r->off);
		break;
	case OP_WRITE:
		res = pwritev2(b->fd, r->iov + r->iov0, (int)n, (off_t)r->off, r->dsync ? RWF_DSYNC : 0);
		break;
	case OP_FSYNC:
		res = fdatasync(b->fd);
		break;
	case OP_FALLOC:
		res = fallocate(b->fd, r->mode, (off_t)r->off, (off_t)r->left);
		break;
	default:
		return -EINVAL;
	}
	return res < 0 ? -errno : (int)res;
}

static void *worker(void *arg)
{
	struct blk *b = arg;
	struct blk_pool *p = &b->pool;
	uint64_t one = 1;

	if (seccomp__thread(SECCOMP_DEVICE))
		return NULL;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct blk_req *r;

		while (!p->jobs && !p->stop)
			pthread_cond_wait(&p->work, &p->lock);
		if (!p->jobs)
			break;
		r = p->jobs;
		p->jobs = r->next;
		if (!p->jobs)
			p->jobs_tail = &p->jobs;
		pthread_mutex_unlock(&p->lock);
		r->res = do_op(b, r);
		pthread_mutex_lock(&p->lock);
		r->next = NULL;
		*p->done_tail = r;
		p->done_tail = &r->next;
		pthread_cond_broadcast(&p->done_cond);
		if (write(p->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			pr_warn("virtio-blk: completion eventfd: %s", strerror(errno));
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Queue r's operation (sent to the kernel by be_commit). */
static void be_submit(struct blk *b, struct blk_req *r)
{
	struct io_uring_sqe *sqe;
	unsigned int n = r->niov - r->iov0;

	if (!b->uring) {
		struct blk_pool *p = &b->pool;

		pthread_mutex_lock(&p->lock);
		r->next = NULL;
		*p->jobs_tail = r;
		p->jobs_tail = &r->next;
		pthread_cond_signal(&p->work);
		pthread_mutex_unlock(&p->lock);
		return;
	}
	sqe = io_uring_get_sqe(&b->ring);
	while (!sqe) {
		/* cannot stay full: there are as many entries as requests */
		io_uring_submit(&b->ring);
		sqe = io_uring_get_sqe(&b->ring);
	}
	switch (r->op) {
	case OP_READ:
		io_uring_prep_readv(sqe, b->fd, r->iov + r->iov0, n, r->off);
		break;
	case OP_WRITE:
		io_uring_prep_writev(sqe, b->fd, r->iov + r->iov0, n, r->off);
		if (r->dsync)
			sqe->rw_flags = RWF_DSYNC;
		break;
	case OP_FSYNC:
		io_uring_prep_fsync(sqe, b->fd, IORING_FSYNC_DATASYNC);
		break;
	case OP_FALLOC:
		io_uring_prep_fallocate(sqe, b->fd, r->mode, (off_t)r->off, (off_t)r->left);
		break;
	}
	io_uring_sqe_set_data(sqe, r);
}

/* Send what be_submit queued. */
static void be_commit(struct blk *b)
{
	unsigned int tries = 0;

	if (!b->uring)
		return;
	while (io_uring_sq_ready(&b->ring)) {
		int ret = io_uring_submit(&b->ring);

		if (ret >= 0 || ret == -EINTR)
			continue;
		if ((ret == -EAGAIN || ret == -EBUSY) && tries++ < 10000) {
			usleep(100);
			continue;
		}
		pr_warn("%s: io_uring_submit: %s", b->vd.pd->name, strerror(-ret));
		return;
	}
}

static void complete_op(struct blk *b, struct blk_req *r, int res);

/* Reap completions; with wait, at least one (there must be one in flight). */
static void be_reap(struct blk *b, bool wait)
{
	if (b->uring) {
		struct io_uring_cqe *cqe;

		if (wait) {
			int ret;

			be_commit(b);
			do
				ret = io_uring_wait_cqe(&b->ring, &cqe);
			while (ret == -EINTR || ret == -EAGAIN);
			if (ret < 0) {
				pr_warn("%s: io_uring_wait_cqe: %s", b->vd.pd->name, strerror(-ret));
				return;
			}
		}
		while (io_uring_peek_cqe(&b->ring, &cqe) == 0) {
			struct blk_req *r = io_uring_cqe_get_data(cqe);
			int res = cqe->res;

			io_uring_cqe_seen(&b->ring, cqe);
			complete_op(b, r, res);
		}
	} else {
		struct blk_pool *p = &b->pool;
		struct blk_req *list;

		pthread_mutex_lock(&p->lock);
		while (wait && !p->done)
			pthread_cond_wait(&p->done_cond, &p->lock);
		list = p->done;
		p->done = NULL;
		p->done_tail = &p->done;
		pthread_mutex_unlock(&p->lock);
		while (list) {
			struct blk_req *r = list;

			list = r->next;
			complete_op(b, r, r->res);
		}
	}
}

/* ---------- requests ---------- */

static size_t iov_total(const struct iovec *v, unsigned int n)
{
	size_t t = 0;

	for (unsigned int i = 0; i < n; i++)
		t += v[i].iov_len;
	return t;
}

/* Bytes [skip, skip + len) of v as at most max iovecs in dst: how many, or -1. */
static int iov_slice(const struct iovec *v, unsigned int n, size_t skip, size_t len,
		     struct iovec *dst, unsigned int max)
{
	unsigned int k = 0;

	for (unsigned int i = 0; i < n && len; i++) {
		size_t l = v[i].iov_len, take;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		take = l - skip < len ? l - skip : len;
		if (k == max)
			return -1;
		dst[k++] = (struct iovec){ .iov_base = (uint8_t *)v[i].iov_base + skip, .iov_len = take };
		len -= take;
		skip = 0;
	}
	return (int)k;
}

/* Copy bytes [skip, skip + len) of v to dst (the caller checked the total). */
static void iov_read(const struct iovec *v, unsigned int n, size_t skip, void *dst, size_t len)
{
	struct iovec part[BLK_HDR];	/* len <= BLK_HDR: a byte per buffer at most */
	int k = iov_slice(v, n, skip, len, part, (unsigned int)(sizeof(part) / sizeof(part[0])));
	uint8_t *d = dst;

	for (int i = 0; i < k; i++) {
		memcpy(d, part[i].iov_base, part[i].iov_len);
		d += part[i].iov_len;
	}
}

static uint8_t *iov_byte(const struct iovec *v, unsigned int n, size_t pos)
{
	for (unsigned int i = 0; i < n; i++) {
		if (pos < v[i].iov_len)
			return (uint8_t *)v[i].iov_base + pos;
		pos -= v[i].iov_len;
	}
	return NULL;
}

static bool range_ok(const struct blk *b, uint64_t sector, uint64_t nsect)
{
	return sector <= b->capacity && nsect <= b->capacity - sector;
}

/* A request finished: its status in the chain, the chain in the used ring. */
static void finish(struct blk *b, struct blk_req *r, uint8_t status)
{
	if (!b->dropping) {
		*r->status = status;
		virtq__push(&b->vd, 0, r->head, r->written + 1);
	}
	r->next = b->free;
	b->free = r;
	b->inflight--;
}

/*
 * How a range is zeroed, in order of preference: unmapping first when the
 * request allows it (discard, write zeroes with unmap), else zeroing in
 * place; writing zeros always works.
 */
static const uint8_t zero_order[2][3] = {
	{ Z_ZERO, Z_PUNCH, Z_WRITE },
	{ Z_PUNCH, Z_ZERO, Z_WRITE },
};

static bool zero_disabled(const struct blk *b, unsigned int how)
{
	return (how == Z_PUNCH && b->no_punch) || (how == Z_ZERO && b->no_zero);
}

/* The next step of a discard / write zeroes (r->range, r->left: what is left). */
static void dwz_step(struct blk *b, struct blk_req *r)
{
	unsigned int how;

	while (!r->left) {
		const struct blk_range *g;

		if (r->range == r->nrange) {
			finish(b, r, VIRTIO_BLK_S_OK);
			return;
		}
		g = &r->ranges[r->range++];
		r->off = g->sector * SECTOR;
		r->left = (uint64_t)g->n * SECTOR;
		r->how = 0;
	}
	while (zero_disabled(b, zero_order[r->unmap][r->how]))
		r->how++;
	how = zero_order[r->unmap][r->how];
	if (how == Z_WRITE) {
		uint64_t left = r->left;

		r->op = OP_WRITE;
		r->zeros = true;
		r->iov = r->ziov;
		r->iov0 = 0;
		for (r->niov = 0; r->niov < BLK_ZIOV && left; r->niov++) {
			size_t l = left < BLK_ZBUF ? (size_t)left : BLK_ZBUF;

			r->ziov[r->niov] = (struct iovec){ .iov_base = zero_buf, .iov_len = l };
			left -= l;
		}
	} else {
		r->op = OP_FALLOC;
		r->zeros = false;
		r->mode = FALLOC_FL_KEEP_SIZE | (how == Z_PUNCH ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE);
	}
	be_submit(b, r);
}

static void iov_advance(struct blk_req *r, size_t n)
{
	while (n && r->iov0 < r->niov) {
		struct iovec *v = &r->iov[r->iov0];

		if (n < v->iov_len) {
			v->iov_base = (uint8_t *)v->iov_base + n;
			v->iov_len -= n;
			return;
		}
		n -= v->iov_len;
		r->iov0++;
	}
}

/* An operation of r ended with res (bytes, or -errno). */
static void complete_op(struct blk *b, struct blk_req *r, int res)
{
	if (b->dropping) {
		finish(b, r, VIRTIO_BLK_S_IOERR);
		return;
	}
	if (res == -EAGAIN || res == -EINTR) {
		be_submit(b, r);
		return;
	}
	switch (r->op) {
	case OP_READ:
	case OP_WRITE:
		if (res < 0 || (res == 0 && r->left)) {
			if (res < 0)
				pr_debug("%s: %s at %llu: %s", b->vd.pd->name, r->op == OP_READ ? "read" : "write",
					 (unsigned long long)r->off, strerror(-res));
			finish(b, r, VIRTIO_BLK_S_IOERR);
			return;
		}
		if ((uint64_t)res > r->left)
			res = (int)r->left;
		r->off += (uint64_t)res;
		r->left -= (uint64_t)res;
		if (r->type == VIRTIO_BLK_T_IN)
			r->written += (uint32_t)res;
		if (r->zeros) {
			dwz_step(b, r);		/* rebuilds the zero buffers for what is left */
			return;
		}
		iov_advance(r, (size_t)res);
		if (r->left) {
			be_submit(b, r);	/* a short transfer: the rest */
			return;
		}
		finish(b, r, VIRTIO_BLK_S_OK);
		return;
	case OP_FSYNC:
		finish(b, r, res < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK);
		return;
	case OP_FALLOC:
		if (res == -EOPNOTSUPP || res == -ENOSYS || res == -EINVAL) {
			/* this image cannot: never try that mode again, go on with the next */
			if (zero_order[r->unmap][r->how] == Z_PUNCH)
				b->no_punch = true;
			else
				b->no_zero = true;
			dwz_step(b, r);
			return;
		}
		if (res < 0) {
			finish(b, r, VIRTIO_BLK_S_IOERR);
			return;
		}
		r->left = 0;
		dwz_step(b, r);
		return;
	}
}

/* Return a chain at once, with status (and nothing in flight). */
static void done_now(struct blk *b, uint16_t head, uint8_t *status, uint8_t s, uint32_t written)
{
	*status = s;
	virtq__push(&b->vd, 0, head, written + 1);
}

/* Take one popped chain: validate, then serve it or start its I/O. */
static void start(struct blk *b, const struct virtq_elem *e)
{
	size_t in_len = iov_total(e->in, e->nin), out_len = iov_total(e->out, e->nout), data;
	uint8_t hdr[BLK_HDR], *status;
	struct blk_req *r;
	uint32_t type;
	uint64_t sector;
	int n;

	status = in_len ? iov_byte(e->in, e->nin, in_len - 1) : NULL;
	if (!status) {
		virtio__needs_reset(&b->vd, "virtio-blk request with no device-writable status byte");
		return;
	}
	if (out_len < BLK_HDR) {
		done_now(b, e->head, status, VIRTIO_BLK_S_IOERR, 0);
		return;
	}
	iov_read(e->out, e->nout, 0, hdr, BLK_HDR);
	type = get32(hdr);
	sector = get64(hdr + 8);
	r = b->free;
	r->head = e->head;
	r->type = (uint8_t)type;
	r->status = status;
	r->written = 0;
	r->zeros = false;
	r->dsync = !virtio__has(&b->vd, VIRTIO_BLK_F_FLUSH);

	switch (type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		data = type == VIRTIO_BLK_T_IN ? in_len - 1 : out_len - BLK_HDR;
		if ((type == VIRTIO_BLK_T_IN ? out_len != BLK_HDR : in_len != 1) || data % SECTOR || data > BLK_REQ_MAX ||
		    !range_ok(b, sector, data / SECTOR) || (type == VIRTIO_BLK_T_OUT && b->read_only)) {
			done_now(b, e->head, status, VIRTIO_BLK_S_IOERR, 0);
			return;
		}
		if (type == VIRTIO_BLK_T_IN)
			n = iov_slice(e->in, e->nin, 0, data, r->data, BLK_SEG_MAX);
		else
			n = iov_slice(e->out, e->nout, BLK_HDR, data, r->data, BLK_SEG_MAX);
		if (n < 0) {
			done_now(b, e->head, status, VIRTIO_BLK_S_IOERR, 0);
			return;
		}
		if (!data) {
			done_now(b, e->head, status, VIRTIO_BLK_S_OK, 0);
			return;
		}
		r->op = type == VIRTIO_BLK_T_IN ? OP_READ : OP_WRITE;
		r->iov = r->data;
		r->iov0 = 0;
		r->niov = (unsigned int)n;
		r->off = sector * SECTOR;
		r->left = data;
		break;
	case VIRTIO_BLK_T_FLUSH:
		if (out_len != BLK_HDR || in_len != 1) {
			done_now(b, e->head, status, VIRTIO_BLK_S_IOERR, 0);
			return;
		}
		r->op = OP_FSYNC;
		break;
	case VIRTIO_BLK_T_GET_ID: {
		uint8_t id[BLK_ID_BYTES] = { 0 };
		size_t len = in_len - 1 < BLK_ID_BYTES ? in_len - 1 : BLK_ID_BYTES;
		struct iovec part[BLK_ID_BYTES];
		const uint8_t *p = id;

		if (out_len != BLK_HDR) {
			done_now(b, e->head, status, VIRTIO_BLK_S_IOERR, 0);
			return;
		}
		/* NUL-padded, not terminated at 20 bytes */
		memcpy(id, b->serial, strlen(b->serial));
		n = iov_slice(e->in, e->nin, 0, len, part, BLK_ID_BYTES);
		for (int i = 0; i < n; i++) {
			memcpy(part[i].iov_base, p, part[i].iov_len);
			p += part[i].iov_len;
		}
		done_now(b, e->head, status, VIRTIO_BLK_S_OK, (uint32_t)len);
		return;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES: {
		bool discard = type == VIRTIO_BLK_T_DISCARD;
		uint8_t st = VIRTIO_BLK_S_OK;

		data = out_len - BLK_HDR;
		if (!virtio__has(&b->vd, discard ? VIRTIO_BLK_F_DISCARD : VIRTIO_BLK_F_WRITE_ZEROES)) {
			done_now(b, e->head, status, VIRTIO_BLK_S_UNSUPP, 0);
			return;
		}
		if (in_len != 1 || !data || data % BLK_DWZ || data / BLK_DWZ > BLK_DWZ_SEG_MAX || b->read_only) {
			done_now(b, e->head, status, VIRTIO_BLK_S_IOERR, 0);
			return;
		}
		/* a copy: the driver cannot change a range after it was checked */
		r->nrange = (unsigned int)(data / BLK_DWZ);
		r->unmap = true;
		for (unsigned int i = 0; i < r->nrange; i++) {
			uint8_t seg[BLK_DWZ];
			uint32_t flags;

			iov_read(e->out, e->nout, BLK_HDR + i * BLK_DWZ, seg, BLK_DWZ);
			r->ranges[i].sector = get64(seg);
			r->ranges[i].n = get32(seg + 8);
			flags = get32(seg + 12);
			/* 5.2.6.2: unknown flags, or unmap on a discard, are unsupported */
			if ((flags & ~VIRTIO_BLK_WZ_UNMAP) || (discard && flags))
				st = VIRTIO_BLK_S_UNSUPP;
			else if (st == VIRTIO_BLK_S_OK &&
				 (r->ranges[i].n > BLK_DWZ_SECTORS || !range_ok(b, r->ranges[i].sector, r->ranges[i].n)))
				st = VIRTIO_BLK_S_IOERR;
			/* write zeroes may unmap only if every range allows it */
			if (!discard && !(flags & VIRTIO_BLK_WZ_UNMAP))
				r->unmap = false;
		}
		if (st != VIRTIO_BLK_S_OK) {
			done_now(b, e->head, status, st, 0);
			return;
		}
		r->range = 0;
		r->left = 0;
		b->free = r->next;
		b->inflight++;
		dwz_step(b, r);
		return;
	}
	default:
		done_now(b, e->head, status, VIRTIO_BLK_S_UNSUPP, 0);
		return;
	}
	b->free = r->next;
	b->inflight++;
	be_submit(b, r);
}

/* Take what the driver made available, while there are free slots. */
static void serve(struct blk *b)
{
	struct virtio_dev *vd = &b->vd;

	while (b->free) {
		if (virtq__pop(vd, 0, &b->elem) != 1)
			return;
		start(b, &b->elem);
	}
	b->stalled = true;
}

/*
 * Submit, then take what has completed already: io_uring serves page-cache
 * hits inside the submit, and answering them now saves the round trip
 * through the completion eventfd and the I/O thread's next wake-up.
 */
static void pump(struct blk *b)
{
	serve(b);
	be_commit(b);
	be_reap(b, false);
	if (b->stalled && b->free) {
		b->stalled = false;
		serve(b);
		be_commit(b);
	}
}

static void blk__notify(struct virtio_dev *vd, unsigned int q)
{
	struct blk *b = (struct blk *)vd;
	uint16_t old = vd->st.q[0].used_idx;

	if (q)
		return;
	pump(b);
	virtq__notify(vd, 0, old);
}

/* The completion eventfd is readable: on the I/O thread, under the lock. */
static void blk__ready(struct virtio_dev *vd, int fd)
{
	struct blk *b = (struct blk *)vd;
	uint16_t old = vd->st.q[0].used_idx;
	uint64_t n;

	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		pr_debug("%s: completion eventfd: %s", vd->pd->name, strerror(errno));
	be_reap(b, false);
	be_commit(b);
	if (b->stalled && b->free) {
		b->stalled = false;
		pump(b);
	}
	virtq__notify(vd, 0, old);
}

static bool serving(const struct virtio_dev *vd)
{
	return (vd->st.status & VIRTIO_S_DRIVER_OK) && !(vd->st.status & VIRTIO_S_NEEDS_RESET) &&
	       vd->st.nqueues && vd->st.q[0].enabled;
}

/* Wait until nothing is in flight; with serve_all, until the avail ring is empty too. */
static void drain(struct blk *b, bool serve_all)
{
	struct virtio_dev *vd = &b->vd;
	uint16_t old = vd->st.q[0].used_idx;

	for (;;) {
		if (serve_all && serving(vd))
			serve(b);
		if (!b->inflight)
			break;
		be_reap(b, true);
	}
	b->stalled = false;
	if (!b->dropping)
		virtq__notify(vd, 0, old);
}

/*
 * The VM pauses.  Finish everything: what is in flight, and what the driver
 * made available but was not taken yet (a restored VM would never be told
 * of those: its notifications were given to this process).
 */
static void blk__quiesce(struct virtio_dev *vd)
{
	drain((struct blk *)vd, true);
}

static void blk__resume(struct virtio_dev *vd)
{
	(void)vd;	/* quiesce left nothing behind */
}

/* A device reset: requests in flight end, and nothing goes into the old rings. */
static void blk__reset(struct virtio_dev *vd)
{
	struct blk *b = (struct blk *)vd;

	b->dropping = true;
	drain(b, false);
	b->dropping = false;
}

static void blk__config_read(struct virtio_dev *vd, unsigned int off, uint8_t *data, unsigned int len)
{
	struct blk *b = (struct blk *)vd;
	uint8_t cfg[BLK_CONFIG_SIZE] = { 0 };

	put64(cfg + 0, b->capacity);
	put32(cfg + 8, BLK_SIZE_MAX);
	put32(cfg + 12, BLK_SEG_MAX);
	put32(cfg + 20, SECTOR);			/* blk_size */
	if (!b->read_only) {
		put32(cfg + 36, BLK_DWZ_SECTORS);	/* max_discard_sectors */
		put32(cfg + 40, BLK_DWZ_SEG_MAX);	/* max_discard_seg */
		put32(cfg + 44, BLK_DWZ_ALIGN);		/* discard_sector_alignment */
		put32(cfg + 48, BLK_DWZ_SECTORS);	/* max_write_zeroes_sectors */
		put32(cfg + 52, BLK_DWZ_SEG_MAX);	/* max_write_zeroes_seg */
		cfg[56] = 1;				/* write_zeroes_may_unmap */
	}
	memcpy(data, cfg + off, len);
}

static void blk__config_write(struct virtio_dev *vd, unsigned int off, const uint8_t *data, unsigned int len)
{
	/* only writeback is writable, and only with VIRTIO_BLK_F_CONFIG_WCE */
	(void)vd; (void)off; (void)data; (void)len;
}

#define BLK_FEATURES_COMMON (1ULL << VIRTIO_BLK_F_SIZE_MAX | 1ULL << VIRTIO_BLK_F_SEG_MAX | \
			     1ULL << VIRTIO_BLK_F_BLK_SIZE | 1ULL << VIRTIO_BLK_F_FLUSH)

/* [0] read-write, [1] read-only: what is offered differs */
static const struct virtio_type blk_types[2] = {
	{
		.device_id = 2,
		.class_code = 0x010000,		/* mass storage, SCSI (as QEMU's) */
		.features = BLK_FEATURES_COMMON | 1ULL << VIRTIO_BLK_F_DISCARD | 1ULL << VIRTIO_BLK_F_WRITE_ZEROES,
		.nqueues = 1,
		.queue_max = BLK_QUEUE_SIZE,
		.queue_notify = blk__notify,
		.reset = blk__reset,
		.config_size = BLK_CONFIG_SIZE,
		.config_read = blk__config_read,
		.config_write = blk__config_write,
		.quiesce = blk__quiesce,
		.resume = blk__resume,
	},
	{
		.device_id = 2,
		.class_code = 0x010000,
		.features = BLK_FEATURES_COMMON | 1ULL << VIRTIO_BLK_F_RO,
		.nqueues = 1,
		.queue_max = BLK_QUEUE_SIZE,
		.queue_notify = blk__notify,
		.reset = blk__reset,
		.config_size = BLK_CONFIG_SIZE,
		.config_read = blk__config_read,
		.config_write = blk__config_write,
		.quiesce = blk__quiesce,
		.resume = blk__resume,
	},
};

/* ---------- life cycle ---------- */

static const struct slot_config *blk__slot(const struct pci_dev *pd)
{
	const struct vm_config *c = pd->vm->cfg;

	for (unsigned int i = 0; c && i < c->nslots; i++)
		if (c->slots[i].slot == pd->slot && c->slots[i].func == pd->func)
			return &c->slots[i];
	return NULL;
}

static bool blk__overridden(const struct pci_dev *pd)
{
	const struct slot_config *sc = blk__slot(pd);

	return sc && sc->overridden;
}

static void derive_serial(const char *abs, char *out)
{
	uint64_t h = XXH3_64bits(abs, strlen(abs));

	snprintf(out, BLK_ID_BYTES + 1, "KHYVE-%04X-%04X-%04X", (unsigned int)(h >> 32) & 0xffff,
		 (unsigned int)(h >> 16) & 0xffff, (unsigned int)h & 0xffff);
}

static void backend_stop(struct blk *b)
{
	if (b->uring)
		io_uring_queue_exit(&b->ring);
	else if (b->pool.nthreads)
		pool_stop(b);
	b->uring = false;
	b->pool.nthreads = 0;
}

static int backend_start(struct blk *b)
{
	const char *no = getenv(VBLK_ENV_NO_URING);
	int ret;

	if (!no || !*no || !strcmp(no, "0")) {
		ret = io_uring_queue_init(BLK_DEPTH, &b->ring, 0);
		if (!ret) {
			ret = io_uring_register_eventfd(&b->ring, b->efd);
			if (!ret) {
				b->uring = true;
				return 0;
			}
			io_uring_queue_exit(&b->ring);
		}
		pr_debug("%s: no io_uring (%s): a thread pool serves the disk", b->vd.pd->name, strerror(-ret));
	}
	return pool_start(b);
}

static void blk__free(struct blk *b)
{
	backend_stop(b);
	if (b->efd >= 0)
		close(b->efd);
	if (b->fd >= 0)
		close(b->fd);
	free(b->reqs);
	free(b);
}

static int blk__init(struct pci_dev *pd, const char *opts, char *err, size_t errlen)
{
	struct blk_opts *o = malloc(sizeof(*o));
	struct blk *b = NULL;
	int ret;

	if (!o)
		return -ENOMEM;
	ret = blk__parse(opts, o, err, errlen);
	if (ret)
		goto out;
	ret = -ENOMEM;
	b = calloc(1, sizeof(*b));
	if (!b)
		goto out;
	b->fd = b->efd = -1;
	b->read_only = o->ro;
	b->reqs = calloc(BLK_DEPTH, sizeof(*b->reqs));
	if (!b->reqs)
		goto out;
	for (unsigned int i = 0; i < BLK_DEPTH; i++) {
		b->reqs[i].b = b;
		b->reqs[i].next = b->free;
		b->free = &b->reqs[i];
	}
	if (pd->vm->cfg && pd->vm->cfg->restore && !blk__overridden(pd)) {
		/*
		 * A restore with the snapshot's own options: which file to open
		 * is known only from the state (the snapshot's disk copy, the
		 * options' path, or the recorded absolute one), so restore opens
		 * it.  Opening the options' path here would lock the original,
		 * which the VM the snapshot came from may still be running on.
		 */
		snprintf(b->path, sizeof(b->path), "%s", o->path);
	} else {
		ret = disk_open(o->path, o->ro, &b->fd, &b->size, b->path, err, errlen);
		if (ret)
			goto out;
	}
	b->capacity = b->size / SECTOR;
	if (o->serial[0])
		snprintf(b->serial, sizeof(b->serial), "%s", o->serial);
	else
		derive_serial(b->path, b->serial);
	ret = virtio__init(pd, &b->vd, &blk_types[b->read_only]);
	if (ret) {
		snprintf(err, errlen, "PCI %s: %s", pd->name, strerror(-ret));
		goto out;
	}
	b->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (b->efd < 0) {
		ret = util__fail(-errno, err, errlen, "%s: eventfd: %s", pd->name, strerror(errno));
		goto out;
	}
	ret = backend_start(b);
	if (ret) {
		snprintf(err, errlen, "%s: I/O threads: %s", pd->name, strerror(-ret));
		goto out;
	}
	ret = virtio__watch(&b->vd, b->efd, blk__ready);
	if (ret) {
		snprintf(err, errlen, "%s: I/O thread: %s", pd->name, strerror(-ret));
		goto out;
	}
	free(o);
	return 0;
out:
	if (b) {
		if (b->vd.pd)
			virtio__exit(&b->vd);
		blk__free(b);
	}
	pd->priv = NULL;
	free(o);
	return ret;
}

static void blk__exit(struct pci_dev *pd)
{
	struct blk *b = pd->priv;

	if (!b)
		return;
	virtio__exit(&b->vd);	/* no I/O thread from here on */
	pthread_mutex_lock(&pd->lock);
	b->dropping = true;	/* guest memory may be going: wait, touch nothing */
	drain(b, false);
	pthread_mutex_unlock(&pd->lock);
	blk__free(b);
	pd->priv = NULL;
}

/* ---------- disk copies (checkpoints with disks) ---------- */

/* Copy [off, off + len) of in to the same place in out. */
static int copy_range(int in, int out, uint64_t off, uint64_t len, uint8_t **buf)
{
	while (len) {
		size_t chunk = len < (1u << 30) ? (size_t)len : (1u << 30);
		ssize_t r;

		if (!*buf) {
			loff_t a = (loff_t)off, c = (loff_t)off;

			r = copy_file_range(in, &a, out, &c, chunk, 0);
			if (r < 0 && errno != EINTR && errno != EIO && errno != ENOSPC && errno != EDQUOT) {
				/* not between these files: read and write */
				*buf = malloc(1 << 20);
				if (!*buf)
					return -ENOMEM;
				continue;
			}
		} else {
			r = pread(in, *buf, chunk < (1u << 20) ? chunk : (1u << 20), (off_t)off);
			if (r > 0) {
				int w = pwrite_full(out, *buf, (size_t)r, off);

				if (w)
					return w;
			}
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;	/* the disk shrank under us */
		off += (uint64_t)r;
		len -= (uint64_t)r;
	}
	return 0;
}

int vblk__copy_disk(struct pci_dev *pd, const char *dest, char *err, size_t errlen)
{
	struct blk *b = pd->priv;
	uint64_t off = 0, size;
	uint8_t *buf = NULL;
	int out, ret = 0;

	if (!b || pd->type->init != blk__init)
		return util__fail(-EINVAL, err, errlen, "%s is not a virtio-blk disk", pd->name);
	pthread_mutex_lock(&pd->lock);
	if (b->inflight)
		drain(b, false);
	size = b->size;
	out = open(dest, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (out < 0) {
		ret = util__fail(-errno, err, errlen, "cannot create disk copy '%s': %s", dest, strerror(errno));
		goto unlock;
	}
	if (ioctl(out, FICLONE, b->fd) == 0)
		goto sync;
	/* a sparse copy: only the data, the holes stay holes */
	if (ftruncate(out, (off_t)size) < 0) {
		ret = -errno;
		goto fail;
	}
	while (off < size) {
		off_t data = lseek(b->fd, (off_t)off, SEEK_DATA), hole;

		if (data < 0 && errno == ENXIO)
			break;			/* only a hole is left */
		if (data < 0) {
			data = (off_t)off;	/* no SEEK_DATA here: copy everything */
			hole = (off_t)size;
		} else {
			hole = lseek(b->fd, data, SEEK_HOLE);
			if (hole < 0 || (uint64_t)hole > size)
				hole = (off_t)size;
		}
		if ((uint64_t)data >= size)
			break;
		ret = copy_range(b->fd, out, (uint64_t)data, (uint64_t)(hole - data), &buf);
		if (ret)
			goto fail;
		off = (uint64_t)hole;
	}
sync:
	if (fsync(out) < 0) {
		ret = -errno;
		goto fail;
	}
	close(out);
	goto unlock;
fail:
	util__fail(ret, err, errlen, "copying disk '%s' to '%s': %s", b->path, dest, strerror(-ret));
	close(out);
	unlink(dest);
unlock:
	pthread_mutex_unlock(&pd->lock);
	free(buf);
	return ret;
}

void vblk__set_copy(void *state, const char *name)
{
	struct blk_state *s = state;

	snprintf(s->copy, sizeof(s->copy), "%s", name ? name : "");
}

/* ---------- snapshot ---------- */

static void blk__save(void *priv, void *state)
{
	struct pci_dev *pd = priv;
	struct blk *b = pd->priv;
	struct blk_state *s = state;

	pthread_mutex_lock(&pd->lock);
	if (b->inflight)
		drain(b, false);	/* the pause does this; in case a caller did not pause */
	pci__save(pd, &s->pci);
	s->virtio = b->vd.st;
	snprintf(s->path, sizeof(s->path), "%s", b->path);
	s->read_only = b->read_only;
	s->capacity = b->capacity;
	snprintf(s->serial, sizeof(s->serial), "%s", b->serial);
	if (b->fd >= 0)
		disk_ident(b->fd, b->size, &s->disk);
	else
		memset(&s->disk, 0, sizeof(s->disk));
	s->copy[0] = '\0';
	pthread_mutex_unlock(&pd->lock);
}

static void blk__encode(struct sbuf *b, const void *state)
{
	const struct blk_state *s = state;

	enc__map(b);
	pci__encode(b, &s->pci);
	virtio__encode(b, &s->virtio);
	enc__str(b, "path", s->path);
	enc__bool(b, "read_only", s->read_only);
	enc__u64(b, "capacity", s->capacity);
	enc__str(b, "serial", s->serial);
	enc__map_key(b, "disk");
	enc__u64(b, "size", s->disk.size);
	enc__u64(b, "dev", s->disk.dev);
	enc__u64(b, "ino", s->disk.ino);
	enc__u64(b, "mtime_ns", s->disk.mtime_ns);
	enc__u64(b, "sample_hash", s->disk.hash);
	enc__end(b);
	enc__str(b, "copy", s->copy);
	enc__end(b);
}

/* A copy's name: relative, inside the snapshot's directory (no ".."). */
static bool copy_name_ok(const char *s)
{
	const char *p = s;

	if (s[0] == '/')
		return false;
	while (*p) {
		size_t n = strcspn(p, "/");

		if ((n == 2 && !strncmp(p, "..", 2)) || !n)
			return false;
		p += n;
		if (*p == '/')
			p++;
	}
	return true;
}

/* Version 1 did not record where the function was (pci.h). */
static void virtio_blk_v1_to_v2(struct blk_state *s)
{
	pci__func_unrecorded(&s->pci);
}

static void blk__decode(struct dec *d, const cbor_item_t *m, uint32_t version, void *state)
{
	struct blk_state *s = state;
	const cbor_item_t *disk;

	memset(s, 0, sizeof(*s));
	s->read_only = dec__bool(d, m, "read_only");
	pci__decode(d, m, &s->pci, VIRTIO_PCI_VENDOR, VIRTIO_PCI_DEVICE_BASE + blk_types[0].device_id,
		    blk_types[0].nqueues + 1u, version >= 2);
	if (version < 2)
		virtio_blk_v1_to_v2(s);
	virtio__decode(d, m, &s->virtio, &blk_types[s->read_only], d->mem_size);
	dec__str(d, m, "path", s->path, sizeof(s->path));
	s->capacity = dec__u64(d, m, "capacity");
	dec__str(d, m, "serial", s->serial, sizeof(s->serial));
	disk = dec__map(d, m, "disk");
	s->disk.size = dec__u64(d, disk, "size");
	s->disk.dev = dec__u64(d, disk, "dev");
	s->disk.ino = dec__u64(d, disk, "ino");
	s->disk.mtime_ns = dec__u64(d, disk, "mtime_ns");
	s->disk.hash = dec__u64(d, disk, "sample_hash");
	dec__str(d, m, "copy", s->copy, sizeof(s->copy));
	if (d->ret)
		return;
	if (s->path[0] != '/')
		dec__fail(d, "field 'path' is '%s', not an absolute path", s->path);
	else if (s->capacity != s->disk.size / SECTOR)
		dec__fail(d, "field 'capacity' is %llu sectors, but the disk's size of %llu bytes makes %llu",
			  (unsigned long long)s->capacity, (unsigned long long)s->disk.size,
			  (unsigned long long)(s->disk.size / SECTOR));
	else if (s->disk.size > (uint64_t)INT64_MAX)
		dec__fail(d, "field 'disk.size' is %llu, beyond any file", (unsigned long long)s->disk.size);
	else if (s->copy[0] && !copy_name_ok(s->copy))
		dec__fail(d, "field 'copy' is '%s': not a name inside the snapshot's directory", s->copy);
}

/*
 * A disk copy the snapshot carries was written before the state file: if it
 * was modified later (a VM restored from it ran), it is no longer the
 * snapshot's disk.
 */
static bool copy_modified(const struct blk *b, const char *restore)
{
	char state[PATH_MAX + 8];
	struct stat st, cp;

	snprintf(state, sizeof(state), "%s.state", restore);
	if (stat(state, &st) < 0 || fstat(b->fd, &cp) < 0)
		return false;
	return cp.st_mtim.tv_sec > st.st_mtim.tv_sec ||
	       (cp.st_mtim.tv_sec == st.st_mtim.tv_sec && cp.st_mtim.tv_nsec > st.st_mtim.tv_nsec);
}

/*
 * The disk of a restore, compared with the one the snapshot recorded:
 * same_file, the very file (device, inode, modification time too); else a
 * copy (size and content), with copy_of the snapshot it belongs to.
 */
static int check_disk(struct blk *b, const struct blk_state *s, bool same_file, const char *copy_of,
		      char *err, size_t errlen)
{
	const struct vm_config *cfg = b->vd.pd->vm->cfg;
	struct blk_ident now;
	char what[160] = "";
	size_t n = 0;

	if (b->read_only != s->read_only)
		return util__fail(-EINVAL, err, errlen, "disk %s is %s, but was %s in the snapshot", b->path,
				  b->read_only ? "read-only" : "read-write", s->read_only ? "read-only" : "read-write");
	if (b->capacity != s->capacity)
		return util__fail(-EINVAL, err, errlen,
				  "disk %s has %llu sectors, the snapshot's had %llu: a guest cannot see its disk change size (not even with --force-disk)",
				  b->path, (unsigned long long)b->capacity, (unsigned long long)s->capacity);
	disk_ident(b->fd, b->size, &now);
#define WHAT(s_) (n += (size_t)snprintf(what + n, sizeof(what) - n, "%s%s", n ? ", " : "", (s_)))
	if (now.size != s->disk.size)
		WHAT("size");
	if (same_file && (now.dev != s->disk.dev || now.ino != s->disk.ino))
		WHAT("another file: device and inode");
	if ((same_file && now.mtime_ns != s->disk.mtime_ns) || (copy_of && copy_modified(b, copy_of)))
		WHAT("modification time");
	if (now.hash != s->disk.hash)
		WHAT("content");
#undef WHAT
	if (!n)
		return 0;
	if (!cfg || !cfg->force_disk)
		return util__fail(-EINVAL, err, errlen,
				  "disk %s changed since the snapshot (%s); use --force-disk to restore anyway", b->path, what);
	pr_warn("%s: disk %s changed since the snapshot (%s); restoring anyway (--force-disk)", b->vd.pd->name,
		b->path, what);
	return 0;
}

/* Make path the device's disk, in place of what init opened. */
static int reopen(struct blk *b, const char *path, char *err, size_t errlen)
{
	char abs[PATH_MAX];
	uint64_t size;
	int fd, ret;

	if (b->fd >= 0) {
		/* our own lock must not stand in the way of reopening the same file */
		close(b->fd);
		b->fd = -1;
	}
	ret = disk_open(path, b->read_only, &fd, &size, abs, err, errlen);
	if (ret)
		return ret;
	b->fd = fd;
	b->size = size;
	b->capacity = size / SECTOR;
	snprintf(b->path, sizeof(b->path), "%s", abs);
	return 0;
}

static int blk__restore(void *priv, const void *state, char *err, size_t errlen)
{
	struct pci_dev *pd = priv;
	struct blk *b = pd->priv;
	const struct blk_state *s = state;
	const struct vm_config *cfg = pd->vm->cfg;
	bool overridden = blk__overridden(pd), same_file = !overridden;
	const char *copy_of = NULL;
	int ret = 0;

	pthread_mutex_lock(&pd->lock);
	ret = pci__check_placement(pd, &s->pci, err, errlen);
	if (ret)
		goto out;
	if (s->copy[0] && !overridden && cfg && cfg->restore) {
		/* the snapshot carries its disk: run on that copy */
		const char *slash = strrchr(cfg->restore, '/');
		char path[PATH_MAX];

		if (slash)
			ret = snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - cfg->restore), cfg->restore, s->copy);
		else
			ret = snprintf(path, sizeof(path), "%s", s->copy);
		ret = ret >= (int)sizeof(path) ? util__fail(-ENAMETOOLONG, err, errlen, "disk copy path too long") :
						 reopen(b, path, err, errlen);
		same_file = false;
		copy_of = cfg->restore;
	} else if (b->fd < 0) {
		/*
		 * The options' path, as the command line would have opened it;
		 * where that names nothing (a relative path, restored elsewhere),
		 * the absolute one recorded at the save.
		 */
		char opt[PATH_MAX];

		snprintf(opt, sizeof(opt), "%s", b->path);
		ret = reopen(b, opt, err, errlen);
		if (ret == -ENOENT && strcmp(opt, s->path))
			ret = reopen(b, s->path, err, errlen);
	}
	if (!ret)
		ret = check_disk(b, s, same_file, copy_of, err, errlen);
	if (!ret)
		ret = virtio__restore(&b->vd, &s->virtio, err, errlen);
	if (!ret) {
		pci__restore(pd, &s->pci);
		/* the guest has seen this ID already */
		snprintf(b->serial, sizeof(b->serial), "%s", s->serial);
	}
out:
	pthread_mutex_unlock(&pd->lock);
	return ret;
}

static int blk__copy_files(void *priv, void *state, const char *path, const char *name, char *err, size_t errlen)
{
	int ret = vblk__copy_disk(priv, path, err, errlen);

	if (!ret)
		vblk__set_copy(state, name);
	return ret;
}

static const struct device_ops blk_ops = {
	.name = "virtio-blk",
	.copy_files = blk__copy_files,
	.state_version = BLK_STATE_VERSION,
	.state_size = sizeof(struct blk_state),
	.save = blk__save,
	.encode = blk__encode,
	.decode = blk__decode,
	.restore = blk__restore,
};
DEVICE_REGISTER(blk_ops);

static const struct pci_devtype blk_pci = {
	.ops = &blk_ops,
	.check = blk__check,
	.init = blk__init,
	.exit = blk__exit,
};
PCI_DEVTYPE_REGISTER(blk_pci);
