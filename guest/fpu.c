/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest: the fpu workload (ring 3 in the guest; also the host
 * reference).
 *
 * The logical computation: 184 independent 64-bit "vector lanes" and 7
 * "mask lanes", each stepped `iters` times through xorshift64 (13, 7, 17),
 * and 7 x87 accumulators, each incremented `iters` times by the same
 * integer (exact in extended precision). Only the placement in registers
 * depends on the code path:
 *
 *   avx512: lanes 0-55 in ymm0-13, lanes 56-183 in zmm16-31, mask lanes in
 *           k1-k7, accumulators in st1-st7 (increment in st0): everything
 *           is live in registers for the whole loop, one asm statement.
 *   avx2:   56 lanes at a time in ymm0-13 (4 passes), mask lanes in
 *           general registers, x87 as above during the first pass.
 *   sse:    28 lanes at a time in xmm0-13 (8 passes), otherwise as avx2.
 *
 * The loops run for ~0.1 s, so timer interrupts arrive while the values are
 * live in registers; a VMM or kernel that loses vector state changes the
 * result. All operations are integer or exact, so every path gives the
 * same bits.
 */
#include "work.h"

#define GOLDEN   0x9e3779b97f4a7c15ULL
#define NV       184            /* vector lanes folded into the result */
#define NVPAD    224            /* multiple of 56 and 28 */
#define NK       7
#define FCW      0x027f         /* double precision, all exceptions masked */
#define MXCSR    0x5f80         /* round up, all exceptions masked */

struct lanes {
	uint64_t v[NVPAD];
	uint64_t k[8];
	int64_t x[8];           /* x[0]: increment, x[1..7]: accumulators */
} __attribute__((aligned(64)));

static inline uint64_t xs(uint64_t x)
{
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return x;
}

/* ------------------------------------------------------------------ */
/* asm building blocks */

#define X87_LOAD \
	"fildll 56(%[x])\n\t" "fildll 48(%[x])\n\t" "fildll 40(%[x])\n\t" \
	"fildll 32(%[x])\n\t" "fildll 24(%[x])\n\t" "fildll 16(%[x])\n\t" \
	"fildll 8(%[x])\n\t"  "fildll 0(%[x])\n\t"
#define X87_STEP \
	"fadd %%st, %%st(1)\n\t" "fadd %%st, %%st(2)\n\t" "fadd %%st, %%st(3)\n\t" \
	"fadd %%st, %%st(4)\n\t" "fadd %%st, %%st(5)\n\t" "fadd %%st, %%st(6)\n\t" \
	"fadd %%st, %%st(7)\n\t"
#define X87_STORE \
	"fstp %%st(0)\n\t" \
	"fistpll 8(%[x])\n\t"  "fistpll 16(%[x])\n\t" "fistpll 24(%[x])\n\t" \
	"fistpll 32(%[x])\n\t" "fistpll 40(%[x])\n\t" "fistpll 48(%[x])\n\t" \
	"fistpll 56(%[x])\n\t"
#define X87_CLOBBERS "st", "st(1)", "st(2)", "st(3)", "st(4)", "st(5)", "st(6)", "st(7)"

#define REP14(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13)
#define REP16Z(M) M(16) M(17) M(18) M(19) M(20) M(21) M(22) M(23) \
                  M(24) M(25) M(26) M(27) M(28) M(29) M(30) M(31)
#define REP7K(M) M(1) M(2) M(3) M(4) M(5) M(6) M(7)

/* ymm (VEX) */
#define Y_LOAD(r)  "vmovdqu 32*" #r "(%[v]), %%ymm" #r "\n\t"
#define Y_STORE(r) "vmovdqu %%ymm" #r ", 32*" #r "(%[v])\n\t"
#define Y_SH(op, n, r) op " $" #n ", %%ymm" #r ", %%ymm15\n\tvpxor %%ymm15, %%ymm" #r ", %%ymm" #r "\n\t"
#define Y_STEP(r) Y_SH("vpsllq", 13, r) Y_SH("vpsrlq", 7, r) Y_SH("vpsllq", 17, r)

/* zmm16-31 (EVEX), lanes 56 + 8*(r-16) */
#define Z_LOAD(r)  "vmovdqu64 64*" #r "-576(%[v]), %%zmm" #r "\n\t"
#define Z_STORE(r) "vmovdqu64 %%zmm" #r ", 64*" #r "-576(%[v])\n\t"
#define Z_SH(op, n, r) op " $" #n ", %%zmm" #r ", %%zmm14\n\tvpxorq %%zmm14, %%zmm" #r ", %%zmm" #r "\n\t"
#define Z_STEP(r) Z_SH("vpsllq", 13, r) Z_SH("vpsrlq", 7, r) Z_SH("vpsllq", 17, r)

/* k1-k7 */
#define K_LOAD(r)  "kmovq 8*" #r "-8(%[k]), %%k" #r "\n\t"
#define K_STORE(r) "kmovq %%k" #r ", 8*" #r "-8(%[k])\n\t"
#define K_SH(op, n, r) op " $" #n ", %%k" #r ", %%k0\n\tkxorq %%k0, %%k" #r ", %%k" #r "\n\t"
#define K_STEP(r) K_SH("kshiftlq", 13, r) K_SH("kshiftrq", 7, r) K_SH("kshiftlq", 17, r)

/* xmm (legacy SSE encoding) */
#define S_LOAD(r)  "movdqu 16*" #r "(%[v]), %%xmm" #r "\n\t"
#define S_STORE(r) "movdqu %%xmm" #r ", 16*" #r "(%[v])\n\t"
#define S_SH(op, n, r) "movdqa %%xmm" #r ", %%xmm15\n\t" op " $" #n ", %%xmm15\n\tpxor %%xmm15, %%xmm" #r "\n\t"
#define S_STEP(r) S_SH("psllq", 13, r) S_SH("psrlq", 7, r) S_SH("psllq", 17, r)

#define XMM_CLOBBERS "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", \
	"xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"

__attribute__((target("avx512f,avx512bw"), noinline))
static void run_avx512(struct lanes *L, uint64_t iters)
{
	asm volatile(
		REP14(Y_LOAD) REP16Z(Z_LOAD) REP7K(K_LOAD) X87_LOAD
		"1:\n\t"
		REP14(Y_STEP) REP16Z(Z_STEP) REP7K(K_STEP) X87_STEP
		"dec %[n]\n\t"
		"jnz 1b\n\t"
		REP14(Y_STORE) REP16Z(Z_STORE) REP7K(K_STORE) X87_STORE
		"vzeroupper\n\t"
		: [n] "+r"(iters)
		: [v] "r"(L->v), [k] "r"(L->k), [x] "r"(L->x)
		: "memory", "cc", XMM_CLOBBERS,
		  "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23",
		  "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31",
		  "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", X87_CLOBBERS);
}

__attribute__((target("avx2"), noinline))
static void run_avx2_chunk(uint64_t *v, int64_t *x, uint64_t iters)
{
	asm volatile(
		REP14(Y_LOAD) X87_LOAD
		"1:\n\t"
		REP14(Y_STEP) X87_STEP
		"dec %[n]\n\t"
		"jnz 1b\n\t"
		REP14(Y_STORE) X87_STORE
		"vzeroupper\n\t"
		: [n] "+r"(iters)
		: [v] "r"(v), [x] "r"(x)
		: "memory", "cc", XMM_CLOBBERS, X87_CLOBBERS);
}

__attribute__((noinline))
static void run_sse_chunk(uint64_t *v, int64_t *x, uint64_t iters)
{
	asm volatile(
		REP14(S_LOAD) X87_LOAD
		"1:\n\t"
		REP14(S_STEP) X87_STEP
		"dec %[n]\n\t"
		"jnz 1b\n\t"
		REP14(S_STORE) X87_STORE
		: [n] "+r"(iters)
		: [v] "r"(v), [x] "r"(x)
		: "memory", "cc", XMM_CLOBBERS, X87_CLOBBERS);
}

static void run_scalar_k(uint64_t *k, uint64_t iters)
{
	uint64_t a = k[0], b = k[1], c = k[2], d = k[3], e = k[4], f = k[5], g = k[6];
	for (uint64_t i = 0; i < iters; i++) {
		a = xs(a); b = xs(b); c = xs(c); d = xs(d);
		e = xs(e); f = xs(f); g = xs(g);
	}
	k[0] = a; k[1] = b; k[2] = c; k[3] = d; k[4] = e; k[5] = f; k[6] = g;
}

/* ------------------------------------------------------------------ */

static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	asm volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

int tg_fpu_detect(void)
{
	uint32_t r[4], max;
	cpuid(0, 0, r);
	max = r[0];
	cpuid(1, 0, r);
	if (!(r[2] & (1u << 27)) || !(r[2] & (1u << 28)))  /* OSXSAVE, AVX */
		return TG_FPU_SSE;
	uint32_t lo, hi;
	asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	uint64_t xcr0 = ((uint64_t)hi << 32) | lo;
	if ((xcr0 & 0x6) != 0x6 || max < 7)
		return TG_FPU_SSE;
	cpuid(7, 0, r);
	if (!(r[1] & (1u << 5)))                           /* AVX2 */
		return TG_FPU_SSE;
	if ((r[1] & (1u << 16)) && (r[1] & (1u << 30)) && (xcr0 & 0xe6) == 0xe6)
		return TG_FPU_AVX512;                      /* AVX512F, AVX512BW */
	return TG_FPU_AVX2;
}

const char *tg_fpu_name(int path)
{
	switch (path) {
	case TG_FPU_SSE: return "sse";
	case TG_FPU_AVX2: return "avx2";
	case TG_FPU_AVX512: return "avx512";
	default: return "auto";
	}
}

uint64_t tg_fpu_round(int path, uint64_t seed, uint32_t cpu, uint64_t round,
                      uint64_t iters, const char **err)
{
	struct lanes L;
	int64_t dummy_x[8] __attribute__((aligned(16)));
	uint64_t s = tg_mix64(seed ^ 0x6670753100000000ULL ^ ((uint64_t)(cpu + 1) << 20) ^ (round * GOLDEN));
	uint64_t chk[5], h;
	unsigned ci[4];

	*err = 0;
	if (path == TG_FPU_AUTO)
		path = tg_fpu_detect();
	for (int j = 0; j < NVPAD; j++) {
		s += GOLDEN;
		L.v[j] = tg_mix64(s) ? tg_mix64(s) : 1;
	}
	for (int j = 0; j < 8; j++) {
		s += GOLDEN;
		L.k[j] = tg_mix64(s) ? tg_mix64(s) : 1;
	}
	s += GOLDEN;
	L.x[0] = (int64_t)(1 + (tg_mix64(s) & 0xff));
	for (int j = 1; j < 8; j++) {
		s += GOLDEN;
		L.x[j] = (int64_t)(tg_mix64(s) & 0xffffffff);
	}
	for (int j = 0; j < 8; j++)
		dummy_x[j] = L.x[j];
	int64_t x0[8];
	for (int j = 0; j < 8; j++)
		x0[j] = L.x[j];
	/* lanes checked exactly in this round: rotate with cpu and round */
	for (int j = 0; j < 4; j++) {
		ci[j] = (unsigned)((round * 131 + cpu * 71 + (uint64_t)j * 47) % NV);
		chk[j] = L.v[ci[j]];
	}
	unsigned ck = (unsigned)((round + cpu) % NK);
	chk[4] = L.k[ck];

	/* non-default control state, which must survive the loop too */
	uint16_t fcw_old, fcw_new = FCW, fcw_after;
	uint32_t mx_old, mx_new = MXCSR, mx_after;
	asm volatile("fnstcw %0" : "=m"(fcw_old));
	asm volatile("stmxcsr %0" : "=m"(mx_old));
	asm volatile("fninit");
	asm volatile("fldcw %0" : : "m"(fcw_new));
	asm volatile("ldmxcsr %0" : : "m"(mx_new));

	if (iters) {
		if (path == TG_FPU_AVX512) {
			run_avx512(&L, iters);
		} else if (path == TG_FPU_AVX2) {
			for (int c = 0; c < NVPAD; c += 56)
				run_avx2_chunk(L.v + c, c ? dummy_x : L.x, iters);
			run_scalar_k(L.k, iters);
		} else {
			for (int c = 0; c < NVPAD; c += 28)
				run_sse_chunk(L.v + c, c ? dummy_x : L.x, iters);
			run_scalar_k(L.k, iters);
		}
	}

	asm volatile("fnstcw %0" : "=m"(fcw_after));
	asm volatile("stmxcsr %0" : "=m"(mx_after));
	asm volatile("fldcw %0" : : "m"(fcw_old));
	asm volatile("ldmxcsr %0" : : "m"(mx_old));
	if (fcw_after != FCW) {
		*err = "fpu: x87 control word changed";
		return 0;
	}
	if (mx_after != MXCSR) {
		*err = "fpu: MXCSR changed";
		return 0;
	}
	for (int j = 1; j < 8; j++)
		if (L.x[j] != x0[j] + (int64_t)iters * x0[0]) {
			*err = "fpu: x87 accumulator mismatch";
			return 0;
		}
	{
		uint64_t a = chk[0], b = chk[1], c = chk[2], d = chk[3], e = chk[4];
		for (uint64_t i = 0; i < iters; i++) {
			a = xs(a); b = xs(b); c = xs(c); d = xs(d); e = xs(e);
		}
		if (a != L.v[ci[0]] || b != L.v[ci[1]] || c != L.v[ci[2]] || d != L.v[ci[3]]) {
			*err = "fpu: vector register lane mismatch";
			return 0;
		}
		if (e != L.k[ck]) {
			*err = "fpu: opmask lane mismatch";
			return 0;
		}
	}

	h = tg_fold(0x6670750000000000ULL, round);
	for (int j = 0; j < NV; j++)
		h = tg_fold(h, L.v[j]);
	for (int j = 0; j < NK; j++)
		h = tg_fold(h, L.k[j]);
	for (int j = 1; j < 8; j++)
		h = tg_fold(h, (uint64_t)L.x[j]);
	return h;
}
