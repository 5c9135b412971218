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
 * a pool of DISK_WORKERS threads does the same system calls synchronously
 * and completes through the same eventfd (both are src/disk/, behind
 * khyve/disk.h; this file knows requests and rings, not system calls).
 * When every request slot is busy the rest stays in the avail ring until
 * a completion frees a slot.
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
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <xxhash.h>

#include "khyve/disk.h"
#include "khyve/log.h"
#include "khyve/seccomp.h"
#include "khyve/snapfmt.h"
#include "khyve/util.h"
#include "khyve/vblk.h"
#include "khyve/virtio.h"
#include "khyve/vm.h"

#include "blk.h"

#define BLK_QUEUE_SIZE		256
#define BLK_DEPTH		128		/* requests in flight */
#define BLK_SEG_MAX		128		/* data buffers per request (seg_max) */
#define BLK_SIZE_MAX		(1u << 20)	/* size_max: bytes per buffer, advisory */
#define BLK_REQ_MAX		(1u << 30)	/* data bytes per request */
#define BLK_DWZ_SEG_MAX		32		/* ranges per discard / write zeroes */
#define BLK_DWZ_SECTORS		65536u		/* sectors per range (32 MiB) */
#define BLK_DWZ_ALIGN		8u		/* discard_sector_alignment: 4 KiB */
#define BLK_CONFIG_SIZE		60		/* up to write_zeroes_may_unmap + padding */
#define BLK_ZBUF		(64u << 10)
#define BLK_PAUSE_WAIT_MS	5000		/* for requests in flight at a pause */
#define BLK_EXIT_WAIT_MS	5000		/* and when khyve ends */
#define BLK_ZIOV		16		/* zeros written per system call: 1 MiB */

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


/* how a discard / write zeroes range is being zeroed */
enum { Z_PUNCH, Z_ZERO, Z_WRITE };

struct blk_range {
	uint64_t sector;
	uint32_t n;
};

struct blk;

struct blk_req {
	struct blk *b;
	struct blk_req *next;		/* free list */
	uint16_t head;
	uint8_t type;
	uint8_t *status;		/* the chain's status byte (guest RAM) */
	uint32_t written;		/* bytes put into the chain besides status */
	/* the operation in flight */
	enum disk_op op;
	bool dsync;			/* DISK_WRITE: write-through (no FLUSH negotiated) */
	bool zeros;			/* DISK_WRITE from the zero buffer */
	int mode;			/* DISK_FALLOC */
	uint64_t off, left;		/* file offset and bytes still to do */
	struct iovec *iov;		/* data or ziov */
	unsigned int iov0, niov;	/* iov[iov0, niov) is what is left */
	/* discard / write zeroes */
	unsigned int nrange, range;
	unsigned int how;		/* index in zero_order[unmap] for the current range */
	bool unmap;
	union {
		struct iovec data[BLK_SEG_MAX];
		struct blk_range ranges[BLK_DWZ_SEG_MAX];
	};
	struct iovec ziov[BLK_ZIOV];
	struct disk_io io;		/* what the queue was given */
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

/* ---------- the disk queue (src/disk/) ---------- */

static void complete_op(struct blk *b, struct blk_req *r, int res);

/* Queue r's operation (sent to the kernel by be_commit). */
static void be_submit(struct blk *b, struct blk_req *r)
{
	r->io = (struct disk_io){
		.fd = b->fd, .op = r->op, .dsync = r->dsync, .mode = r->mode, .off = r->off, .len = r->left,
		.iov = r->iov + r->iov0, .niov = r->niov - r->iov0,
	};
	disk_queue__submit(b->q, &r->io);
}

/* Send what be_submit queued. */
static void be_commit(struct blk *b)
{
	disk_queue__commit(b->q);
}

static void be_done(void *opaque, struct disk_io *io, int res)
{
	complete_op(opaque, (struct blk_req *)((char *)io - offsetof(struct blk_req, io)), res);
}

/*
 * Reap completions; with wait, at least one (there must be one in flight),
 * until *until at the latest (NULL: no bound).  0 or -ETIMEDOUT.
 */
static int be_reap(struct blk *b, bool wait, const struct timespec *until)
{
	return disk_queue__reap(b->q, wait, until, be_done, b);
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

		r->op = DISK_WRITE;
		r->zeros = true;
		r->iov = r->ziov;
		r->iov0 = 0;
		for (r->niov = 0; r->niov < BLK_ZIOV && left; r->niov++) {
			size_t l = left < BLK_ZBUF ? (size_t)left : BLK_ZBUF;

			r->ziov[r->niov] = (struct iovec){ .iov_base = zero_buf, .iov_len = l };
			left -= l;
		}
	} else {
		r->op = DISK_FALLOC;
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
	case DISK_READ:
	case DISK_WRITE:
		if (res < 0 || (res == 0 && r->left)) {
			if (res < 0)
				pr_debug("%s: %s at %llu: %s", b->vd.pd->name, r->op == DISK_READ ? "read" : "write",
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
	case DISK_FSYNC:
		finish(b, r, res < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK);
		return;
	case DISK_FALLOC:
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
		r->op = type == VIRTIO_BLK_T_IN ? DISK_READ : DISK_WRITE;
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
		r->op = DISK_FSYNC;
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
	be_reap(b, false, NULL);
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
	be_reap(b, false, NULL);
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

int blk__drain(struct blk *b, bool serve_all, const struct timespec *until)
{
	struct virtio_dev *vd = &b->vd;
	uint16_t old = vd->st.q[0].used_idx;
	int ret = 0;

	for (;;) {
		if (serve_all && serving(vd))
			serve(b);
		if (!b->inflight)
			break;
		ret = be_reap(b, true, until);
		if (ret)
			break;
	}
	/* after a timeout, the next completion finds a stalled queue as usual */
	if (!ret)
		b->stalled = false;
	if (!b->dropping)
		virtq__notify(vd, 0, old);
	return ret;
}

static void deadline_ms(struct timespec *until, unsigned int ms)
{
	clock_gettime(CLOCK_MONOTONIC, until);
	until->tv_sec += ms / 1000;
	until->tv_nsec += (ms % 1000) * 1000000L;
	if (until->tv_nsec >= 1000000000L) {
		until->tv_sec++;
		until->tv_nsec -= 1000000000L;
	}
}

/*
 * The VM pauses.  Finish everything: what is in flight, and what the driver
 * made available but was not taken yet (a restored VM would never be told
 * of those: its notifications were given to this process).  A disk whose
 * storage stalls (a dead NFS server, a frozen file system) may never
 * finish: wait BLK_PAUSE_WAIT_MS at most, then fail the pause, and the
 * requests complete whenever the storage comes back, the VM running.
 */
static int blk__quiesce(struct virtio_dev *vd, char *err, size_t errlen)
{
	struct blk *b = (struct blk *)vd;
	struct timespec until;
	int ret;

	deadline_ms(&until, BLK_PAUSE_WAIT_MS);
	ret = blk__drain(b, true, &until);
	if (ret)
		return util__fail(-ETIMEDOUT, err, errlen,
				  "%s (%s): %u disk request%s still in flight after %u s: is its storage stalled?",
				  vd->pd->name, b->path, b->inflight, b->inflight == 1 ? "" : "s",
				  BLK_PAUSE_WAIT_MS / 1000);
	return 0;
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
	blk__drain(b, false, NULL);
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
const struct virtio_type blk_types[2] = {
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

bool blk__overridden(const struct pci_dev *pd)
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

static int backend_start(struct blk *b)
{
	const char *no = getenv(VBLK_ENV_NO_URING);

	return disk_queue__start(&b->q, !no || !*no || !strcmp(no, "0"), BLK_DEPTH, b->efd, b->vd.pd->name);
}

static void blk__free(struct blk *b)
{
	disk_queue__stop(b->q);
	if (b->efd >= 0)
		close(b->efd);
	if (b->fd >= 0)
		close(b->fd);
	free(b->reqs);
	free(b);
}

int blk__init(struct pci_dev *pd, const char *opts, char *err, size_t errlen)
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
		ret = disk__open("virtio-blk", o->path, o->ro, &b->fd, &b->size, b->path, err, errlen);
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

/* disks whose requests outlived khyve's end: kept, and reachable for LSan */
static struct blk *left_behind;

static void blk__exit(struct pci_dev *pd)
{
	struct blk *b = pd->priv;
	struct timespec until;
	bool stuck;

	if (!b)
		return;
	deadline_ms(&until, BLK_EXIT_WAIT_MS);
	/* no I/O thread from here on; one that submitted to io_uring cannot
	   end while its requests hang */
	stuck = virtio__exit_until(&b->vd, &until) != 0;
	if (!stuck) {
		pthread_mutex_lock(&pd->lock);
		b->dropping = true;	/* guest memory may be going: wait, touch nothing */
		stuck = blk__drain(b, false, &until) != 0;
		pthread_mutex_unlock(&pd->lock);
	}
	pd->priv = NULL;
	if (stuck) {
		/*
		 * Stalled storage must not keep khyve from ending (SIGTERM at
		 * any moment).  The requests stay with the kernel: a thread
		 * blocked in a frozen file system cannot be stopped, and the
		 * process is reaped when its storage returns.  Their queue,
		 * buffers and I/O thread stay (never freed under a thread still
		 * using them); guest memory goes, and a late copy into it
		 * fails in the kernel, not here.
		 */
		pr_warn("%s (%s): %u disk request%s still in flight %u s after the stop: left to the kernel",
			pd->name, b->path, b->inflight, b->inflight == 1 ? "" : "s", BLK_EXIT_WAIT_MS / 1000);
		b->left_next = left_behind;
		left_behind = b;
		return;
	}
	blk__free(b);
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

static const struct pci_devtype blk_pci = {
	.ops = &blk_ops,
	.check = blk__check,
	.init = blk__init,
	.exit = blk__exit,
};
PCI_DEVTYPE_REGISTER(blk_pci, DEVICE_ORDER_VIRTIO_BLK);
