/*
 * A bounded output queue with a writer thread (include/khyve/outq.h).
 *
 * The ring is guarded by q->lock; only the writer thread touches the fd.
 * The producer wakes the writer through an eventfd only when the ring goes
 * from empty to non-empty: while bytes are queued the writer is either
 * writing or waiting for POLLOUT, and needs no wake-up.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "khyve/log.h"
#include "khyve/outq.h"
#include "khyve/seccomp.h"

#define OUTQ_CHUNK	PIPE_BUF	/* a pipe or tty takes this much after POLLOUT without blocking */
#define OUTQ_SOCK_CHUNK	(64u << 10)	/* a socket is written with MSG_DONTWAIT */

struct outq {
	pthread_mutex_t lock;
	pthread_t thread;
	int fd, efd;
	bool is_socket;
	char name[10];
	uint8_t *buf;
	size_t cap, head, len;		/* under lock */
	bool stop;			/* under lock: flush, then end */
	bool broken;			/* under lock: the fd failed, everything is dropped */
	_Atomic uint64_t dropped;
};

static _Atomic uint64_t dropped_total;

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void count_dropped(struct outq *q, size_t n)
{
	if (!n)
		return;
	atomic_fetch_add(&q->dropped, n);
	atomic_fetch_add(&dropped_total, n);
}

/* Drop everything queued (caller holds the lock). */
static void drop_all(struct outq *q)
{
	count_dropped(q, q->len);
	q->head = 0;
	q->len = 0;
}

static void wake(struct outq *q)
{
	uint64_t one = 1;

	if (write(q->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		pr_debug("output %s: eventfd: %s", q->name, strerror(errno));
}

static void drain_efd(struct outq *q)
{
	uint64_t v;

	while (read(q->efd, &v, sizeof(v)) > 0)
		;
}

static void *writer(void *arg)
{
	struct outq *q = arg;
	uint64_t stop_at = 0;		/* the flush's total bound, once stopping */

	if (seccomp__thread(SECCOMP_DEVICE)) {
		/* refused: the VM is ending; keep the producer from waiting on us */
		pthread_mutex_lock(&q->lock);
		q->broken = true;
		drop_all(q);
		pthread_mutex_unlock(&q->lock);
		return NULL;
	}
	for (;;) {
		struct pollfd pfd[2] = { { .fd = q->efd, .events = POLLIN }, { .fd = q->fd, .events = POLLOUT } };
		size_t n, max = q->is_socket ? OUTQ_SOCK_CHUNK : OUTQ_CHUNK;
		uint8_t *p;
		bool stop;
		int timeout = -1, r;
		ssize_t w;

		pthread_mutex_lock(&q->lock);
		stop = q->stop;
		n = q->len;
		if (n > q->cap - q->head)
			n = q->cap - q->head;
		if (n > max)
			n = max;
		p = q->buf + q->head;
		if (stop && n) {
			uint64_t t = now_ms();

			if (!stop_at)
				stop_at = t + OUTQ_FLUSH_MAX_MS;
			if (t >= stop_at) {
				drop_all(q);
				n = 0;
			}
			timeout = (int)(stop_at - t < OUTQ_FLUSH_STALL_MS ? stop_at - t : OUTQ_FLUSH_STALL_MS);
		}
		pthread_mutex_unlock(&q->lock);
		if (!n && stop)
			break;
		r = poll(pfd, n ? 2 : 1, timeout);
		if (r < 0 && errno != EINTR) {
			pr_warn("output %s: poll: %s; output dropped from now on", q->name, strerror(errno));
			goto broken;
		}
		if (r > 0 && (pfd[0].revents & POLLIN))
			drain_efd(q);
		if (r == 0 && stop) {
			/* nothing taken for OUTQ_FLUSH_STALL_MS while stopping: give up */
			pthread_mutex_lock(&q->lock);
			drop_all(q);
			pthread_mutex_unlock(&q->lock);
			break;
		}
		if (!n || r <= 0 || !pfd[1].revents)
			continue;
		/* p..p+n stays ours: the producer only appends, and only we advance head */
		if (q->is_socket)
			w = send(q->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		else
			w = write(q->fd, p, n);
		if (w < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			pr_warn("output %s: write: %s; output dropped from now on", q->name, strerror(errno));
			goto broken;
		}
		pthread_mutex_lock(&q->lock);
		q->head = (q->head + (size_t)w) % q->cap;
		q->len -= (size_t)w;
		if (!q->len)
			q->head = 0;
		pthread_mutex_unlock(&q->lock);
	}
	return NULL;
broken:
	pthread_mutex_lock(&q->lock);
	q->broken = true;
	drop_all(q);
	pthread_mutex_unlock(&q->lock);
	/* wait to be stopped, dropping nothing more here: outq__write counts */
	for (;;) {
		struct pollfd pfd = { .fd = q->efd, .events = POLLIN };
		bool stop;

		pthread_mutex_lock(&q->lock);
		stop = q->stop;
		pthread_mutex_unlock(&q->lock);
		if (stop)
			break;
		if (poll(&pfd, 1, -1) > 0)
			drain_efd(q);
	}
	return NULL;
}

struct outq *outq__create(int fd, size_t cap, const char *name)
{
	struct outq *q;
	struct stat st;
	char tname[16];
	int err;

	if (!cap) {
		errno = EINVAL;
		return NULL;
	}
	q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	q->buf = malloc(cap);
	q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!q->buf || q->efd < 0) {
		err = q->buf ? errno : ENOMEM;
		goto fail;
	}
	q->fd = fd;
	q->cap = cap;
	q->is_socket = fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
	snprintf(q->name, sizeof(q->name), "%s", name);
	pthread_mutex_init(&q->lock, NULL);
	err = pthread_create(&q->thread, NULL, writer, q);
	if (err) {
		pthread_mutex_destroy(&q->lock);
		goto fail;
	}
	snprintf(tname, sizeof(tname), "khyve-%s", q->name);
	pthread_setname_np(q->thread, tname);
	return q;
fail:
	if (q->efd >= 0)
		close(q->efd);
	free(q->buf);
	free(q);
	errno = err;
	return NULL;
}

size_t outq__write(struct outq *q, const void *buf, size_t len)
{
	const uint8_t *b = buf;
	size_t n, tail, first;
	bool was_empty;

	pthread_mutex_lock(&q->lock);
	if (q->broken || q->stop) {
		pthread_mutex_unlock(&q->lock);
		count_dropped(q, len);
		return 0;
	}
	n = q->cap - q->len;
	if (n > len)
		n = len;
	tail = (q->head + q->len) % q->cap;
	first = q->cap - tail < n ? q->cap - tail : n;
	memcpy(q->buf + tail, b, first);
	memcpy(q->buf, b + first, n - first);
	was_empty = q->len == 0;
	q->len += n;
	pthread_mutex_unlock(&q->lock);
	count_dropped(q, len - n);
	if (was_empty && n)
		wake(q);
	return n;
}

size_t outq__pending(struct outq *q)
{
	size_t n;

	pthread_mutex_lock(&q->lock);
	n = q->len;
	pthread_mutex_unlock(&q->lock);
	return n;
}

uint64_t outq__dropped(struct outq *q)
{
	return atomic_load(&q->dropped);
}

uint64_t outq__dropped_total(void)
{
	return atomic_load(&dropped_total);
}

void outq__destroy(struct outq *q)
{
	struct timespec ts;

	if (!q)
		return;
	pthread_mutex_lock(&q->lock);
	q->stop = true;
	pthread_mutex_unlock(&q->lock);
	wake(q);
	/*
	 * The writer ends within OUTQ_FLUSH_MAX_MS: its writes follow POLLOUT
	 * and take at most PIPE_BUF bytes, which a pipe accepts at once.  A
	 * terminal with too little room (stopped with Ctrl-S) can still hold
	 * one write: then the queue is left to the process's exit, not waited for.
	 */
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += OUTQ_FLUSH_MAX_MS / 1000 + 1;
	if (pthread_timedjoin_np(q->thread, NULL, &ts)) {
		pr_warn("output %s: the writer is stuck in a write; not waiting for it", q->name);
		return;
	}
	pthread_mutex_destroy(&q->lock);
	close(q->efd);
	free(q->buf);
	free(q);
}
