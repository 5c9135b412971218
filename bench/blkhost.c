/*
 * The host side of the virtio-blk benchmark: the I/O pattern the test
 * guest's blkbench workload issues through virtio-blk, run directly on the
 * host file with io_uring, buffered like khyve's disk backend.
 *
 *   blkhost FILE MODE BS QD MIB OPS SEED
 *     MODE: randread | randwrite | seqread | seqwrite
 *
 * Prints one JSON line: {"ops":N,"bytes":B,"ns":T}.  Random offsets are
 * block-aligned and uniform over the first MIB MiB; sequential ones wrap.
 * Writes end with one fdatasync, as the guest's end with one flush.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

int main(int argc, char **argv)
{
	struct io_uring ring;
	uint64_t bs, qd, span, ops, seed, issued = 0, done = 0, t0, t1, seq = 0;
	bool rnd, wr;
	uint8_t *buf;
	int fd, r;

	if (argc != 8) {
		fprintf(stderr, "usage: blkhost FILE randread|randwrite|seqread|seqwrite BS QD MIB OPS SEED\n");
		return 2;
	}
	rnd = !strncmp(argv[2], "rand", 4);
	wr = strstr(argv[2], "write") != NULL;
	bs = strtoull(argv[3], NULL, 0);
	qd = strtoull(argv[4], NULL, 0);
	span = strtoull(argv[5], NULL, 0) << 20;
	ops = strtoull(argv[6], NULL, 0);
	seed = strtoull(argv[7], NULL, 0);
	if (!bs || bs % 512 || !qd || qd > 1024 || span < bs || !ops) {
		fprintf(stderr, "blkhost: bad parameters\n");
		return 2;
	}
	fd = open(argv[1], O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "blkhost: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	buf = aligned_alloc(4096, bs * qd);
	if (!buf)
		return 1;
	memset(buf, 0x5a, bs * qd);
	r = io_uring_queue_init((unsigned int)qd, &ring, 0);
	if (r < 0) {
		fprintf(stderr, "blkhost: io_uring: %s\n", strerror(-r));
		return 1;
	}
	t0 = now_ns();
	while (done < ops) {
		struct io_uring_cqe *cqe;

		while (issued < ops && issued - done < qd) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			uint64_t off;
			uint8_t *p = buf + (issued % qd) * bs;

			if (!sqe)
				break;
			if (rnd) {
				off = (next(&seed) % (span / bs)) * bs;
			} else {
				off = seq;
				seq = seq + bs >= span ? 0 : seq + bs;
			}
			if (wr)
				io_uring_prep_write(sqe, fd, p, (unsigned int)bs, off);
			else
				io_uring_prep_read(sqe, fd, p, (unsigned int)bs, off);
			issued++;
		}
		r = io_uring_submit_and_wait(&ring, 1);
		if (r < 0 && r != -EINTR) {
			fprintf(stderr, "blkhost: submit: %s\n", strerror(-r));
			return 1;
		}
		while (io_uring_peek_cqe(&ring, &cqe) == 0) {
			if (cqe->res != (int)bs) {
				fprintf(stderr, "blkhost: I/O returned %d\n", cqe->res);
				return 1;
			}
			io_uring_cqe_seen(&ring, cqe);
			done++;
		}
	}
	if (wr && fdatasync(fd) < 0) {
		fprintf(stderr, "blkhost: fdatasync: %s\n", strerror(errno));
		return 1;
	}
	t1 = now_ns();
	printf("{\"ops\":%llu,\"bytes\":%llu,\"ns\":%llu}\n", (unsigned long long)done,
	       (unsigned long long)(done * bs), (unsigned long long)(t1 - t0));
	io_uring_queue_exit(&ring);
	close(fd);
	free(buf);
	return 0;
}
