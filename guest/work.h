/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest: workloads shared by the guest's ring-3 task and the host
 * reference (testguest-ref). Pure computation: no system calls, no globals
 * that depend on the platform. Every result depends only on the parameters,
 * the CPU index and the number of CPUs.
 */
#ifndef TG_WORK_H
#define TG_WORK_H

#include <stddef.h>
#include <stdint.h>

#define TG_NCPU_MAX   64

/* workload bits, also the fold order */
#define TG_W_MEM      1u
#define TG_W_FPU      2u
#define TG_W_SMP      4u
#define TG_W_TIME     8u
#define TG_W_RNG      16u              /* needs a virtio-rnd PCI device */
#define TG_W_CON      32u              /* needs a virtio-console PCI device */
#define TG_W_ALL      15u              /* the default: every one needing no device */
#define TG_NW         6

/* fpu code paths; the digest is the same for all of them */
#define TG_FPU_AUTO   0
#define TG_FPU_SSE    1
#define TG_FPU_AVX2   2
#define TG_FPU_AVX512 3

struct tg_params {
	uint32_t workloads;            /* TG_W_* bits */
	uint64_t rounds;               /* 1..1000000 */
	uint64_t memmb;                /* 1..65536 */
	uint64_t seed;
	int fpu;                       /* TG_FPU_*: code path, not in the digest */
	int fault;                     /* TG_FAULT_*: deliberate failure (tests) */
};

/* fault=KIND: the last CPU faults at the start of round 1 (testing the FAIL
 * path of a VMM); not part of the digest, ignored by the reference */
#define TG_FAULT_NONE 0
#define TG_FAULT_GP   1                 /* ring 3 executes HLT: #GP */
#define TG_FAULT_UD   2                 /* ring 3 executes UD1: #UD, not the gate */
#define TG_FAULT_PF   3                 /* ring 3 reads an unmapped address */
#define TG_FAULT_SYS  4                 /* unknown system call */
#define TG_FAULT_KPF  5                 /* ring 0 faults on a bad syscall pointer */

/* --- command line ------------------------------------------------- */
/* Returns 0, or -1 with a message in err. Unknown keys are ignored. */
int tg_params_parse(const char *cmdline, struct tg_params *p, char *err, size_t errlen);

/* --- digest --------------------------------------------------------- */
uint64_t tg_mix64(uint64_t z);                  /* splitmix64 finalizer */
uint64_t tg_fold(uint64_t h, uint64_t w);       /* h' = mix64(h ^ w) */
uint64_t tg_digest_init(const struct tg_params *p, uint32_t ncpu);
/*
 * Fold one round: for each selected workload in the order mem, fpu, smp,
 * time: the result of CPU 0..ncpu-1; after smp also the shared counter.
 */
uint64_t tg_digest_round(uint64_t h, const struct tg_params *p, uint32_t ncpu,
                         const uint64_t res[TG_NW][TG_NCPU_MAX], uint64_t smp_counter);

/* --- mem ------------------------------------------------------------ */
/* buf has `words` 64-bit words; CPU cpu owns words [lo, hi) of it */
void tg_mem_slice(uint64_t words, uint32_t cpu, uint32_t ncpu, uint64_t *lo, uint64_t *hi);
void tg_mem_fill(uint64_t *buf, uint64_t words, uint32_t cpu, uint32_t ncpu, uint64_t seed);
uint64_t tg_mem_round(uint64_t *buf, uint64_t words, uint32_t cpu, uint32_t ncpu,
                      uint64_t seed, uint64_t round);

/* --- fpu ------------------------------------------------------------ */
#define TG_FPU_ITERS  (3u << 20)       /* loop iterations per round */
int tg_fpu_detect(void);                         /* best available path */
const char *tg_fpu_name(int path);
/* Returns the result; on a mismatch sets *err (static string) */
uint64_t tg_fpu_round(int path, uint64_t seed, uint32_t cpu, uint64_t round,
                      uint64_t iters, const char **err);

/* --- smp ------------------------------------------------------------ */
#define TG_SMP_WORDS  2048
#define TG_SMP_PASSES 32
/*
 * slices[b][c] is CPU c's slice in buffer b. Round r writes buffer r&1 and
 * reads the neighbour's slice in buffer (r-1)&1 (written in round r-1).
 * Each word written also adds (v & 255) + 1 to *counter with LOCK XADD.
 */
typedef uint64_t tg_smp_slices_t[2][TG_NCPU_MAX][TG_SMP_WORDS];
uint64_t tg_smp_round(tg_smp_slices_t *slices, volatile uint64_t *counter,
                      uint32_t cpu, uint32_t ncpu, uint64_t seed, uint64_t round);

/* --- time ----------------------------------------------------------- */
uint64_t tg_time_result(uint32_t cpu, uint64_t round);

/* --- rng ------------------------------------------------------------ */
/* bytes CPU 0 reads from the virtio-rnd device per round, in this layout */
#define TG_RNG_REQS   4                /* requests per round */
#define TG_RNG_BUF    32               /* bytes per buffer, 2 buffers each */
#define TG_RNG_BYTES  (TG_RNG_REQS * 2 * TG_RNG_BUF)
/* The random bytes are checked, never folded: the result depends only on
 * the parameters (how many bytes, which round, which CPU). */
uint64_t tg_rng_result(uint32_t cpu, uint64_t round);

/* --- console ------------------------------------------------------ */
/* CPU 0 writes TG_CON_BYTES per round through the virtio-console transmitq:
 * TG_CON_LINES lines of 4 words of 16 hex digits, space-separated, each
 * line ending in '\n' - text, never a NUL byte. */
#define TG_CON_LINES  64
#define TG_CON_LINE   68               /* 4 * 16 + 3 spaces + newline */
#define TG_CON_BYTES  (TG_CON_LINES * TG_CON_LINE)
#define TG_CON_REQS   4                /* requests per round */
#define TG_CON_BUF    (TG_CON_BYTES / (2 * TG_CON_REQS))  /* 2 buffers each */
/* buf gets round `round`'s TG_CON_BYTES bytes of the stream */
void tg_con_stream(char *buf, uint64_t seed, uint64_t round);
/* The bytes are checked by the host, never folded: the result depends only
 * on the parameters (how many bytes, which round, which CPU). */
uint64_t tg_con_result(uint32_t cpu, uint64_t round);

/* --- small formatting helpers (no libc) ----------------------------- */
size_t tg_strlen(const char *s);
char *tg_stpcpy(char *d, const char *s);
char *tg_fmt_u64(char *d, uint64_t v);
char *tg_fmt_hex16(char *d, uint64_t v);        /* 16 lowercase digits */

#endif
