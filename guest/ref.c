/* SPDX-License-Identifier: MIT */
/*
 * testguest-ref: computes on the host the digest the test guest prints.
 *
 *   testguest-ref -c NCPU "CMDLINE"
 *   testguest-ref --console-stream "CMDLINE"
 *   testguest-ref --blk-image "CMDLINE" FILE
 *   testguest-ref --hostile-attacks
 *
 * prints "digest=<16 hex digits>" and exits 0; with --console-stream, writes
 * instead the bytes the console workload sends through virtio-console over
 * all rounds (whatever the workloads selected); with --blk-image, writes to
 * FILE the blkmb MiB the blk workload leaves on its disk after the last
 * round (whatever the workloads selected); --hostile-attacks lists the
 * hostile workload's attack kinds, one per line; bad arguments: a message on
 * stderr, exit 2. The NCPU processors are simulated one after the other:
 * their work is independent apart from the shared counter, whose total after
 * each round does not depend on the order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "work.h"

static void usage(void)
{
	fprintf(stderr, "usage: testguest-ref -c NCPU \"CMDLINE\"\n"
	                "       testguest-ref --console-stream \"CMDLINE\"\n"
	                "       testguest-ref --blk-image \"CMDLINE\" FILE\n"
	                "       testguest-ref --hostile-attacks\n"
	                "  CMDLINE: workload=mem,fpu,smp,time,rng,console,blk,net,hostile,blkbench,netbench\n"
	                "           rounds=N memmb=M seed=S [blkmb=N] [netframes=N] [fpu=auto|sse|avx2|avx512]\n"
	                "           [hostattack=NAME] [hosthold=MS] [blkmode=M blkbs=B blkqd=Q blkops=N] [netsize=B]\n");
	exit(2);
}

/* --blk-image: the disk content after the last round */
static int blk_image(const struct tg_params *p, const char *path)
{
	static uint64_t sec[TG_BLK_SWORDS * 2048];        /* 1 MiB */
	FILE *f = fopen(path, "wb");

	if (!f) {
		perror(path);
		return 1;
	}
	for (uint64_t mb = 0; mb < p->blkmb; mb++) {
		for (uint64_t k = 0; k < 2048; k++)
			tg_blk_sector(sec + k * TG_BLK_SWORDS, p->seed, p->blkmb, p->rounds, mb * 2048 + k);
		if (fwrite(sec, 1, sizeof(sec), f) != sizeof(sec)) {
			perror(path);
			fclose(f);
			return 1;
		}
	}
	if (fclose(f)) {
		perror(path);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	long ncpu = -1;
	int stream = 0;
	const char *cmdline = NULL, *image = NULL;
	char err[256];
	struct tg_params p;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-c") && i + 1 < argc) {
			char *end;
			ncpu = strtol(argv[++i], &end, 10);
			if (*end || end == argv[i] || ncpu < 1 || ncpu > TG_NCPU_MAX) {
				fprintf(stderr, "testguest-ref: bad cpu count '%s' (1..%d)\n", argv[i], TG_NCPU_MAX);
				return 2;
			}
		} else if (!strcmp(argv[i], "--hostile-attacks")) {
			for (int k = 0; k < TG_HA_N; k++)
				puts(tg_hostile_names[k]);
			return 0;
		} else if (!strcmp(argv[i], "--console-stream")) {
			stream = 1;
		} else if (!strcmp(argv[i], "--blk-image") && i + 2 < argc && !cmdline) {
			cmdline = argv[++i];
			image = argv[++i];
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage();
		} else if (!cmdline && argv[i][0] != '-') {
			cmdline = argv[i];
		} else {
			usage();
		}
	}
	if (ncpu < 1 && !stream && !image)
		usage();
	if (!cmdline)
		cmdline = "";
	if (tg_params_parse(cmdline, &p, err, sizeof(err))) {
		fprintf(stderr, "testguest-ref: bad command line: %s\n", err);
		return 2;
	}
	if (stream) {
		static char buf[TG_CON_BYTES];
		for (uint64_t r = 1; r <= p.rounds; r++) {
			tg_con_stream(buf, p.seed, r);
			if (fwrite(buf, 1, sizeof(buf), stdout) != sizeof(buf))
				return 1;
		}
		return fflush(stdout) ? 1 : 0;
	}
	if (image)
		return blk_image(&p, image);
	int best = tg_fpu_detect(), path = p.fpu == TG_FPU_AUTO ? best : p.fpu;
	if ((p.workloads & TG_W_FPU) && path > best) {
		fprintf(stderr, "testguest-ref: fpu path %s not available on this CPU\n", tg_fpu_name(path));
		return 2;
	}

	uint32_t n = (uint32_t)ncpu;
	uint64_t words = p.memmb << 17, *mem = NULL;
	tg_smp_slices_t *slices = NULL;
	volatile uint64_t counter = 0;
	uint64_t(*res)[TG_NCPU_MAX] = calloc(TG_NW, sizeof(*res));
	if (p.workloads & TG_W_MEM) {
		mem = malloc(words * sizeof(uint64_t));
		if (!mem) {
			fprintf(stderr, "testguest-ref: cannot allocate %llu MiB\n", (unsigned long long)p.memmb);
			return 2;
		}
		for (uint32_t c = 0; c < n; c++)
			tg_mem_fill(mem, words, c, n, p.seed);
	}
	if (p.workloads & TG_W_SMP)
		slices = calloc(1, sizeof(*slices));
	if (!res || ((p.workloads & TG_W_SMP) && !slices)) {
		fprintf(stderr, "testguest-ref: out of memory\n");
		return 2;
	}

	uint64_t h = tg_digest_init(&p, n);
	for (uint64_t r = 1; r <= p.rounds; r++) {
		for (uint32_t c = 0; c < n; c++) {
			if (p.workloads & TG_W_MEM)
				res[0][c] = tg_mem_round(mem, words, c, n, p.seed, r);
			if (p.workloads & TG_W_FPU) {
				const char *e;
				res[1][c] = tg_fpu_round(path, p.seed, c, r, p.fpuiters, &e);
				if (e) {
					fprintf(stderr, "testguest-ref: self-check failed: %s\n", e);
					return 1;
				}
			}
			if (p.workloads & TG_W_SMP)
				res[2][c] = tg_smp_round(slices, &counter, c, n, p.seed, r);
			if (p.workloads & TG_W_TIME)
				res[3][c] = tg_time_result(c, r);
			if (p.workloads & TG_W_RNG)
				res[4][c] = tg_rng_result(c, r);
			if (p.workloads & TG_W_CON)
				res[5][c] = tg_con_result(c, r);
			if (p.workloads & TG_W_BLK)
				res[6][c] = tg_blk_result(&p, c, r);
			if (p.workloads & TG_W_NET)
				res[7][c] = tg_net_result(&p, c, r);
			if (p.workloads & TG_W_HOSTILE)
				res[8][c] = tg_hostile_result(c, r);
			if (p.workloads & TG_W_BLKBENCH)
				res[9][c] = tg_blkbench_result(&p, c, r);
			if (p.workloads & TG_W_NETBENCH)
				res[10][c] = tg_netbench_result(&p, c, r);
		}
		h = tg_digest_round(h, &p, n, (const uint64_t(*)[TG_NCPU_MAX])res, counter);
	}
	printf("digest=%016llx\n", (unsigned long long)h);
	free(mem);
	free(slices);
	free(res);
	return 0;
}
