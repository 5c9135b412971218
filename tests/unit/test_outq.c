/*
 * Unit tests for the bounded output queue (src/core/outq.c): a write never
 * waits for a reader that does not read, what does not fit is dropped and
 * counted, what was queued arrives whole and in order, a broken reader
 * drops everything after it, and destroy gives up on a reader that does not
 * read within its bound.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "khyve/outq.h"

#define CAP	(64u << 10)

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* byte i of the test stream: not periodic within a queue's size */
static uint8_t pattern(uint64_t i)
{
	return (uint8_t)((i * 2654435761u) >> 13 ^ i >> 8);
}

struct reader {
	int fd;
	uint8_t *got;
	size_t len, cap;
};

/* read fd until EOF into r->got */
static void *reader_main(void *arg)
{
	struct reader *r = arg;

	for (;;) {
		ssize_t n;

		if (r->len == r->cap) {
			r->cap = r->cap ? 2 * r->cap : 1 << 20;
			r->got = realloc(r->got, r->cap);
			if (!r->got)
				abort();
		}
		n = read(r->fd, r->got + r->len, r->cap - r->len);
		if (n <= 0)
			break;
		r->len += (size_t)n;
	}
	return NULL;
}

/* (1) a pipe nobody reads: 16 MiB of writes return at once, all but what fits dropped */
static void test_never_blocks(void **state)
{
	int p[2];
	struct outq *q;
	uint8_t buf[1000];
	uint64_t t0, queued = 0, total = 0, base = outq__dropped_total();

	(void)state;
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	q = outq__create(p[1], CAP, "test");
	assert_non_null(q);
	t0 = now_ms();
	for (unsigned int i = 0; i < 16 * 1024 * 1024 / sizeof(buf); i++) {
		memset(buf, (int)i, sizeof(buf));
		queued += outq__write(q, buf, sizeof(buf));
		total += sizeof(buf);
	}
	/* one byte at a time too, as COM1 writes */
	for (unsigned int i = 0; i < 100000; i++) {
		queued += outq__write(q, buf, 1);
		total++;
	}
	assert_true(now_ms() - t0 < 3000);
	/* at most the queue and the pipe's 64 KiB were taken */
	assert_true(queued <= CAP + (64u << 10) + 4096);
	assert_true(queued >= CAP);
	assert_int_equal(outq__dropped(q), total - queued);
	assert_true(outq__dropped_total() - base >= total - queued);
	/* destroy gives up on the reader within its bounds */
	t0 = now_ms();
	outq__destroy(q);
	assert_true(now_ms() - t0 < OUTQ_FLUSH_STALL_MS + 2000);
	close(p[0]);
	close(p[1]);
}

/*
 * (2) order and counting: a reader that starts late gets exactly the bytes
 * outq__write accepted, in order, and the rest are counted as dropped.
 */
static void run_order(int rfd, int wfd, size_t piece)
{
	struct outq *q = outq__create(wfd, CAP, "test");
	struct reader r = { .fd = rfd };
	uint8_t *want = malloc(8u << 20), *buf = malloc(piece);
	size_t nwant = 0;
	uint64_t total = 0, i = 0;
	pthread_t t;

	assert_non_null(q);
	assert_non_null(want);
	assert_non_null(buf);
	for (int round = 0; round < 2; round++) {
		/* round 0: nobody reads, so most is dropped; round 1: a reader drains */
		if (round == 1)
			assert_int_equal(pthread_create(&t, NULL, reader_main, &r), 0);
		for (unsigned int k = 0; k < (2u << 20) / piece; k++) {
			size_t n;

			for (size_t j = 0; j < piece; j++)
				buf[j] = pattern(i + j);
			n = outq__write(q, buf, piece);
			memcpy(want + nwant, buf, n);
			nwant += n;
			total += piece;
			i += piece;
			if (round == 1)
				while (outq__pending(q) > CAP - piece)
					usleep(100);	/* the producer's choice here: no drop */
		}
	}
	assert_int_equal(outq__dropped(q), total - nwant);
	outq__destroy(q);	/* flushes to the reader */
	close(wfd);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(r.len, nwant);
	assert_memory_equal(r.got, want, nwant);
	close(rfd);
	free(r.got);
	free(want);
	free(buf);
}

static void test_order_pipe(void **state)
{
	int p[2];

	(void)state;
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	run_order(p[0], p[1], 1000);
}

static void test_order_socket(void **state)
{
	int s[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
	run_order(s[0], s[1], 4093);
}

/* (3) a reader gone: the queue drops and counts everything from then on, and never blocks */
static void test_broken(void **state)
{
	int s[2];
	struct outq *q;
	uint8_t buf[4096] = { 0 };
	uint64_t t0;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
	q = outq__create(s[1], CAP, "test");
	assert_non_null(q);
	close(s[0]);
	t0 = now_ms();
	/* the first write finds EPIPE; wait until the writer noticed */
	outq__write(q, buf, sizeof(buf));
	while (outq__pending(q) && now_ms() - t0 < 5000)
		usleep(1000);
	assert_int_equal(outq__pending(q), 0);
	assert_int_equal(outq__dropped(q), sizeof(buf));
	assert_int_equal(outq__write(q, buf, sizeof(buf)), 0);
	assert_int_equal(outq__dropped(q), 2 * sizeof(buf));
	outq__destroy(q);
	assert_true(now_ms() - t0 < 5000);
	close(s[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_never_blocks),
		cmocka_unit_test(test_order_pipe),
		cmocka_unit_test(test_order_socket),
		cmocka_unit_test(test_broken),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
