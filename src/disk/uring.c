/*
 * The io_uring backend: up to depth operations in flight on one ring,
 * whose completions signal the queue's eventfd (io_uring_register_eventfd).
 * Submissions and completions both happen on the device's side, under its
 * lock; the kernel does the rest.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include "khyve/log.h"

#include "backend.h"

struct uring {
	struct disk_queue q;		/* first */
	struct io_uring ring;
};

static void uring_submit(struct disk_queue *q, struct disk_io *io)
{
	struct uring *u = (struct uring *)q;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

	while (!sqe) {
		/* cannot stay full: there are as many entries as requests */
		io_uring_submit(&u->ring);
		sqe = io_uring_get_sqe(&u->ring);
	}
	switch (io->op) {
	case DISK_READ:
		io_uring_prep_readv(sqe, io->fd, io->iov, io->niov, io->off);
		break;
	case DISK_WRITE:
		io_uring_prep_writev(sqe, io->fd, io->iov, io->niov, io->off);
		if (io->dsync)
			sqe->rw_flags = RWF_DSYNC;
		break;
	case DISK_FSYNC:
		io_uring_prep_fsync(sqe, io->fd, IORING_FSYNC_DATASYNC);
		break;
	case DISK_FALLOC:
		io_uring_prep_fallocate(sqe, io->fd, io->mode, (off_t)io->off, (off_t)io->len);
		break;
	}
	io_uring_sqe_set_data(sqe, io);
}

static void uring_commit(struct disk_queue *q)
{
	struct uring *u = (struct uring *)q;
	unsigned int tries = 0;

	while (io_uring_sq_ready(&u->ring)) {
		int ret = io_uring_submit(&u->ring);

		if (ret >= 0 || ret == -EINTR)
			continue;
		if ((ret == -EAGAIN || ret == -EBUSY) && tries++ < 10000) {
			usleep(100);
			continue;
		}
		pr_warn("%s: io_uring_submit: %s", q->name, strerror(-ret));
		return;
	}
}

/* What is left of the time until *until, at least 0. */
static struct __kernel_timespec left(const struct timespec *until)
{
	struct timespec now;
	int64_t ns;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ns = (int64_t)(until->tv_sec - now.tv_sec) * 1000000000 + (until->tv_nsec - now.tv_nsec);
	if (ns < 0)
		ns = 0;
	return (struct __kernel_timespec){ .tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000 };
}

static int uring_reap(struct disk_queue *q, bool wait, const struct timespec *until,
		      disk_done_fn *done, void *opaque)
{
	struct uring *u = (struct uring *)q;
	struct io_uring_cqe *cqe;

	if (wait) {
		int ret;

		uring_commit(q);
		do {
			struct __kernel_timespec ts;

			if (!until) {
				ret = io_uring_wait_cqe(&u->ring, &cqe);
				continue;
			}
			ts = left(until);
			ret = io_uring_wait_cqe_timeout(&u->ring, &cqe, &ts);
			if (ret == -ETIME)
				return -ETIMEDOUT;
		} while (ret == -EINTR || ret == -EAGAIN);
		if (ret < 0) {
			pr_warn("%s: io_uring_wait_cqe: %s", q->name, strerror(-ret));
			return 0;
		}
	}
	while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
		struct disk_io *io = io_uring_cqe_get_data(cqe);
		int res = cqe->res;

		io_uring_cqe_seen(&u->ring, cqe);
		done(opaque, io, res);
	}
	return 0;
}

static void uring_stop(struct disk_queue *q)
{
	struct uring *u = (struct uring *)q;

	io_uring_queue_exit(&u->ring);
	free(u);
}

static const struct disk_queue_ops uring_ops = {
	.submit = uring_submit,
	.commit = uring_commit,
	.reap = uring_reap,
	.stop = uring_stop,
};

int uring__start(struct disk_queue **qp, unsigned int depth, int efd, const char *name)
{
	struct uring *u = calloc(1, sizeof(*u));
	int ret;

	if (!u)
		return -ENOMEM;
	ret = io_uring_queue_init(depth, &u->ring, 0);
	if (!ret) {
		ret = io_uring_register_eventfd(&u->ring, efd);
		if (!ret) {
			u->q = (struct disk_queue){ .ops = &uring_ops, .name = name, .efd = efd };
			*qp = &u->q;
			return 0;
		}
		io_uring_queue_exit(&u->ring);
	}
	free(u);
	return ret;
}
