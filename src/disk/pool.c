/*
 * The thread-pool backend, where io_uring cannot be had (an old kernel,
 * seccomp, or KHYVE_BLK_NO_URING=1): DISK_WORKERS threads do the same
 * system calls synchronously and complete through the same eventfd.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "khyve/log.h"
#include "khyve/seccomp.h"

#include "backend.h"

struct pool {
	struct disk_queue q;		/* first */
	pthread_mutex_t lock;
	pthread_cond_t work, done_cond;
	struct disk_io *jobs, **jobs_tail;
	struct disk_io *done, **done_tail;
	pthread_t thread[DISK_WORKERS];
	unsigned int nthreads;
	bool stop;
};

static int do_op(struct disk_io *io)
{
	ssize_t res;

	switch (io->op) {
	case DISK_READ:
		res = preadv(io->fd, io->iov, (int)io->niov, (off_t)io->off);
		break;
	case DISK_WRITE:
		res = pwritev2(io->fd, io->iov, (int)io->niov, (off_t)io->off, io->dsync ? RWF_DSYNC : 0);
		break;
	case DISK_FSYNC:
		res = fdatasync(io->fd);
		break;
	case DISK_FALLOC:
		res = fallocate(io->fd, io->mode, (off_t)io->off, (off_t)io->len);
		break;
	default:
		return -EINVAL;
	}
	return res < 0 ? -errno : (int)res;
}

static void *worker(void *arg)
{
	struct pool *p = arg;
	uint64_t one = 1;

	if (seccomp__thread(SECCOMP_DEVICE))
		return NULL;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct disk_io *io;

		while (!p->jobs && !p->stop)
			pthread_cond_wait(&p->work, &p->lock);
		if (!p->jobs)
			break;
		io = p->jobs;
		p->jobs = io->next;
		if (!p->jobs)
			p->jobs_tail = &p->jobs;
		pthread_mutex_unlock(&p->lock);
		io->res = do_op(io);
		pthread_mutex_lock(&p->lock);
		io->next = NULL;
		*p->done_tail = io;
		p->done_tail = &io->next;
		pthread_cond_broadcast(&p->done_cond);
		if (write(p->q.efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			pr_warn("%s: completion eventfd: %s", p->q.name, strerror(errno));
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void pool_submit(struct disk_queue *q, struct disk_io *io)
{
	struct pool *p = (struct pool *)q;

	pthread_mutex_lock(&p->lock);
	io->next = NULL;
	*p->jobs_tail = io;
	p->jobs_tail = &io->next;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->lock);
}

static void pool_commit(struct disk_queue *q)
{
	(void)q;	/* the workers started each job when it was submitted */
}

static int pool_reap(struct disk_queue *q, bool wait, const struct timespec *until,
		     disk_done_fn *done, void *opaque)
{
	struct pool *p = (struct pool *)q;
	struct disk_io *list;

	pthread_mutex_lock(&p->lock);
	while (wait && !p->done) {
		if (!until) {
			pthread_cond_wait(&p->done_cond, &p->lock);
		} else if (pthread_cond_clockwait(&p->done_cond, &p->lock, CLOCK_MONOTONIC, until) == ETIMEDOUT &&
			   !p->done) {
			pthread_mutex_unlock(&p->lock);
			return -ETIMEDOUT;
		}
	}
	list = p->done;
	p->done = NULL;
	p->done_tail = &p->done;
	pthread_mutex_unlock(&p->lock);
	while (list) {
		struct disk_io *io = list;

		list = io->next;
		done(opaque, io, io->res);
	}
	return 0;
}

static void pool_stop(struct disk_queue *q)
{
	struct pool *p = (struct pool *)q;

	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (unsigned int i = 0; i < p->nthreads; i++)
		pthread_join(p->thread[i], NULL);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done_cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

static const struct disk_queue_ops pool_ops = {
	.submit = pool_submit,
	.commit = pool_commit,
	.reap = pool_reap,
	.stop = pool_stop,
};

int pool__start(struct disk_queue **qp, int efd, const char *name)
{
	struct pool *p = calloc(1, sizeof(*p));
	pthread_attr_t attr;
	int ret = 0;

	if (!p)
		return -ENOMEM;
	p->q = (struct disk_queue){ .ops = &pool_ops, .name = name, .efd = efd };
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done_cond, NULL);
	p->jobs_tail = &p->jobs;
	p->done_tail = &p->done;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 << 10);
	for (p->nthreads = 0; p->nthreads < DISK_WORKERS; p->nthreads++) {
		ret = -pthread_create(&p->thread[p->nthreads], &attr, worker, p);
		if (ret)
			break;
	}
	pthread_attr_destroy(&attr);
	if (!p->nthreads) {
		pool_stop(&p->q);
		return ret;
	}
	*qp = &p->q;
	return 0;
}
