/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest: the ring-3 task, one per CPU.
 *
 * Runs natively under PVM. Enters the kernel only through the UD2 gate
 * (see abi.h). CPU 0 parses the command line, every CPU runs round r of
 * each selected workload, all meet at a barrier, CPU 0 folds the round into
 * the digest and prints "round r".
 */
#include "abi.h"
#include "bench.h"
#include "hostile.h"
#include "vblk.h"
#include "vcon.h"
#include "vnet.h"
#include "vrng.h"
#include "work.h"

void user_main(uint64_t cpu);

static inline long sys(long n, long a, long b, long c)
{
	long r;
	asm volatile("ud2" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "memory");
	return r;
}

static void uwrite(const char *s) { sys(TG_SYS_WRITE, (long)s, (long)tg_strlen(s), 0); }

static void __attribute__((noreturn)) ufinish(int status, const char *msg)
{
	for (;;)
		sys(TG_SYS_FINISH, status, (long)msg, (long)tg_strlen(msg));
}

static char failbuf[TG_MAXCPU][256];

static void __attribute__((noreturn)) ufail(uint64_t cpu, const char *what, const char *detail)
{
	char *p = failbuf[cpu];
	p = tg_stpcpy(p, "FAIL cpu ");
	p = tg_fmt_u64(p, cpu);
	p = tg_stpcpy(p, ": ");
	p = tg_stpcpy(p, what);
	if (detail) {
		p = tg_stpcpy(p, " ");
		tg_stpcpy(p, detail);
	}
	ufinish(1, failbuf[cpu]);
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static inline uint64_t gs_read(uint64_t off)
{
	uint64_t v;
	asm volatile("movq %%gs:(%1), %0" : "=r"(v) : "r"(off));
	return v;
}

static inline uint64_t fs_read(uint64_t off)
{
	uint64_t v;
	asm volatile("movq %%fs:(%1), %0" : "=r"(v) : "r"(off));
	return v;
}

/* ------------------------------------------------------------------ */
/* shared state */

static struct tg_params P;
static volatile uint32_t params_ready;
static int fpu_path;
static uint64_t results[2][TG_NW][TG_NCPU_MAX];
static volatile uint64_t smp_counter;
static uint64_t counter_snap[2];
static tg_smp_slices_t smp_slices __attribute__((aligned(64)));

struct barrier {
	volatile uint32_t count;
	volatile uint32_t gen;
} __attribute__((aligned(64)));
static struct barrier bar;

/* the last CPU to arrive runs hook(arg) while all others wait */
static void barrier_wait(uint32_t n, void (*hook)(uint64_t), uint64_t arg)
{
	uint32_t g = __atomic_load_n(&bar.gen, __ATOMIC_ACQUIRE);
	if (__atomic_fetch_add(&bar.count, 1, __ATOMIC_ACQ_REL) == n - 1) {
		if (hook)
			hook(arg);
		__atomic_store_n(&bar.count, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&bar.gen, g + 1, __ATOMIC_RELEASE);
	} else {
		while (__atomic_load_n(&bar.gen, __ATOMIC_ACQUIRE) == g)
			asm volatile("pause");
	}
}

static void snap_counter(uint64_t round)
{
	counter_snap[round & 1] = __atomic_load_n(&smp_counter, __ATOMIC_ACQUIRE);
}

/* ------------------------------------------------------------------ */
/* time: TSC and tick count never go backwards and move together */

#define TIME_TICKS        3             /* ticks to watch per round */
#define TIME_MIN_CYCLES   10000         /* per tick: catches runaway ticks */
#define TIME_STALL_SPINS  (1ULL << 28)  /* ~4-15 s of running without a tick */

static void time_round(uint64_t cpu)
{
	volatile struct tg_cpu *c = &tg_cpus[cpu];
	uint64_t t0 = rdtsc(), k0 = c->ticks, tp = t0, kp = k0, spins = 0;
	uint64_t ks = (uint64_t)sys(TG_SYS_TICKS, 0, 0, 0);
	if (ks < k0)
		ufail(cpu, "time: tick count from the kernel is behind memory", 0);
	for (;;) {
		uint64_t t = rdtsc(), k = c->ticks;
		if (t < tp)
			ufail(cpu, "time: TSC went backwards", 0);
		if (k < kp)
			ufail(cpu, "time: tick count went backwards", 0);
		tp = t;
		kp = k;
		if (k - k0 >= TIME_TICKS)
			break;
		if (++spins > TIME_STALL_SPINS)
			ufail(cpu, "time: timer ticks stopped", 0);
		asm volatile("pause");
	}
	if (tp - t0 < (kp - k0 - 1) * TIME_MIN_CYCLES)
		ufail(cpu, "time: ticks advance faster than the TSC", 0);
}

static void fault(int kind)
{
	volatile uint64_t *bad = (volatile uint64_t *)0x7000000000ULL;  /* unmapped */
	switch (kind) {
	case TG_FAULT_GP: asm volatile("hlt"); break;
	case TG_FAULT_UD: asm volatile(".byte 0x0f, 0xb9, 0xc0"); break;  /* ud1 */
	case TG_FAULT_PF: (void)*bad; break;
	case TG_FAULT_SYS: sys(99, 0, 0, 0); break;
	case TG_FAULT_KPF: sys(TG_SYS_WRITE, (long)bad, 8, 0); break;
	case TG_FAULT_DF: sys(TG_SYS_BADSTACK, 0, 0, 0); break;
	}
}

static void check_bases(uint64_t cpu)
{
	if (gs_read(0) != (uint64_t)&tg_cpus[cpu] || gs_read(8) != cpu)
		ufail(cpu, "GS base lost", 0);
	if (fs_read(0) != (uint64_t)&tg_tasks[cpu] || fs_read(8) != cpu ||
	    fs_read(16) != TG_TASK_MAGIC)
		ufail(cpu, "FS base lost", 0);
}

/* ------------------------------------------------------------------ */

static void setup(void)
{
	static char err[200], line[400];
	if (tg_params_parse(tg_info.cmdline, &P, err, sizeof(err)))
		ufail(0, "bad command line:", err);
	if ((P.workloads & TG_W_MEM) && (P.memmb << 20) > tg_info.win_size)
		ufail(0, "memmb larger than the free RAM window", 0);
	int best = tg_fpu_detect();
	fpu_path = P.fpu == TG_FPU_AUTO ? best : P.fpu;
	if (fpu_path > best)
		ufail(0, "fpu path not available on this CPU:", tg_fpu_name(P.fpu));
	if (P.workloads & TG_W_RNG) {
		const char *e = tg_vrng_init();
		if (e)
			ufail(0, e, 0);
	}
	if (P.workloads & TG_W_CON) {
		const char *e = tg_vcon_init();
		if (e)
			ufail(0, e, 0);
	}
	if (P.workloads & TG_W_BLK) {
		const char *e = tg_vblk_init(&P);
		if (e)
			ufail(0, e, 0);
	}
	if (P.workloads & TG_W_NET) {
		const char *e = tg_vnet_init(&P);
		if (e)
			ufail(0, e, 0);
	}
	if (P.workloads & TG_W_HOSTILE) {
		const char *e = tg_hostile_init(&P);
		if (e)
			ufail(0, e, 0);
	}
	if (P.workloads & TG_W_BLKBENCH) {
		const char *e = tg_blkbench_init(&P);
		if (e)
			ufail(0, e, 0);
	}
	if (P.workloads & TG_W_NETBENCH) {
		const char *e = tg_netbench_init(&P);
		if (e)
			ufail(0, e, 0);
	}

	char *p = tg_stpcpy(line, "khyve-testguest: workload=");
	static const char *names[TG_NW] = { "mem", "fpu", "smp", "time", "rng", "console", "blk", "net",
	                                    "hostile", "blkbench", "netbench" };
	int first = 1;
	for (int w = 0; w < TG_NW; w++)
		if (P.workloads & (1u << w)) {
			if (!first)
				p = tg_stpcpy(p, ",");
			p = tg_stpcpy(p, names[w]);
			first = 0;
		}
	p = tg_stpcpy(p, " rounds=");
	p = tg_fmt_u64(p, P.rounds);
	p = tg_stpcpy(p, " memmb=");
	p = tg_fmt_u64(p, P.memmb);
	p = tg_stpcpy(p, " seed=");
	p = tg_fmt_u64(p, P.seed);
	if (P.workloads & (TG_W_BLK | TG_W_BLKBENCH)) {
		p = tg_stpcpy(p, " blkmb=");
		p = tg_fmt_u64(p, P.blkmb);
	}
	if (P.workloads & (TG_W_NET | TG_W_NETBENCH)) {
		p = tg_stpcpy(p, " netframes=");
		p = tg_fmt_u64(p, P.netframes);
	}
	if (P.workloads & TG_W_NETBENCH) {
		p = tg_stpcpy(p, " netsize=");
		p = tg_fmt_u64(p, P.netsize);
	}
	if (P.workloads & TG_W_BLKBENCH) {
		p = tg_stpcpy(p, " blkmode=");
		p = tg_stpcpy(p, tg_blkmode_names[P.blkmode]);
		p = tg_stpcpy(p, " blkbs=");
		p = tg_fmt_u64(p, P.blkbs);
		p = tg_stpcpy(p, " blkqd=");
		p = tg_fmt_u64(p, P.blkqd);
		p = tg_stpcpy(p, " blkops=");
		p = tg_fmt_u64(p, P.blkops);
	}
	if (P.workloads & TG_W_HOSTILE) {
		p = tg_stpcpy(p, " hostattack=");
		p = tg_stpcpy(p, P.hostattack < 0 ? "all" : tg_hostile_names[P.hostattack]);
		if (P.hosthold) {
			p = tg_stpcpy(p, " hosthold=");
			p = tg_fmt_u64(p, P.hosthold);
		}
	}
	p = tg_stpcpy(p, " cpus=");
	p = tg_fmt_u64(p, tg_info.ncpu);
	p = tg_stpcpy(p, " fpu=");
	p = tg_stpcpy(p, tg_fpu_name(fpu_path));
	tg_stpcpy(p, "\n");
	uwrite(line);
}

void user_main(uint64_t cpu)
{
	uint32_t n = (uint32_t)tg_info.ncpu;
	uint64_t *membuf = (uint64_t *)tg_info.win_base;
	uint64_t h = 0;

	check_bases(cpu);
	if (cpu == 0) {
		setup();
		__atomic_store_n(&params_ready, 1, __ATOMIC_RELEASE);
	} else {
		while (!__atomic_load_n(&params_ready, __ATOMIC_ACQUIRE))
			asm volatile("pause");
	}
	uint64_t words = P.memmb << 17;
	if (P.workloads & TG_W_MEM)
		tg_mem_fill(membuf, words, (uint32_t)cpu, n, P.seed);
	if (cpu == 0)
		h = tg_digest_init(&P, n);
	barrier_wait(n, 0, 0);

	for (uint64_t r = 1; r <= P.rounds; r++) {
		uint64_t (*res)[TG_NCPU_MAX] = results[r & 1];
		check_bases(cpu);
		if (r == 1 && cpu == n - 1 && P.fault)
			fault(P.fault);
		if (P.workloads & TG_W_MEM)
			res[0][cpu] = tg_mem_round(membuf, words, (uint32_t)cpu, n, P.seed, r);
		if (P.workloads & TG_W_FPU) {
			const char *err;
			res[1][cpu] = tg_fpu_round(fpu_path, P.seed, (uint32_t)cpu, r, P.fpuiters, &err);
			if (err)
				ufail(cpu, err, 0);
		}
		if (P.workloads & TG_W_SMP)
			res[2][cpu] = tg_smp_round(&smp_slices, &smp_counter, (uint32_t)cpu, n, P.seed, r);
		if (P.workloads & TG_W_TIME) {
			time_round(cpu);
			res[3][cpu] = tg_time_result((uint32_t)cpu, r);
		}
		if (P.workloads & TG_W_RNG) {
			/* CPU 0 owns the device; the others only take part */
			if (cpu == 0) {
				const char *e = tg_vrng_round();
				if (e)
					ufail(cpu, e, 0);
			}
			res[4][cpu] = tg_rng_result((uint32_t)cpu, r);
		}
		if (P.workloads & TG_W_CON) {
			if (cpu == 0) {
				const char *e = tg_vcon_round(P.seed, r);
				if (e)
					ufail(cpu, e, 0);
			}
			res[5][cpu] = tg_con_result((uint32_t)cpu, r);
		}
		if (P.workloads & TG_W_BLK) {
			if (cpu == 0) {
				struct tg_blk_tally t;
				const char *e = tg_vblk_round(r, &t);
				if (e)
					ufail(cpu, e, 0);
				res[6][cpu] = tg_blk_fold(&P, r, &t);
			} else {
				res[6][cpu] = tg_blk_result(&P, (uint32_t)cpu, r);
			}
		}
		if (P.workloads & TG_W_NET) {
			if (cpu == 0) {
				uint64_t sum;
				const char *e = tg_vnet_round(r, &sum);
				if (e)
					ufail(cpu, e, 0);
				res[7][cpu] = tg_net_fold(&P, r, sum);
			} else {
				res[7][cpu] = tg_net_result(&P, (uint32_t)cpu, r);
			}
		}
		if (P.workloads & TG_W_HOSTILE) {
			if (cpu == 0) {
				uint64_t rec;
				const char *e = tg_hostile_round(r, &rec);
				if (e)
					ufail(cpu, e, 0);
				res[8][cpu] = tg_hostile_fold(r, rec);
			} else {
				res[8][cpu] = tg_hostile_result((uint32_t)cpu, r);
			}
		}
		if (P.workloads & TG_W_BLKBENCH) {
			if (cpu == 0) {
				uint64_t ops, bytes;
				uint32_t st;
				const char *e = tg_blkbench_round(r, &ops, &bytes, &st);
				if (e)
					ufail(cpu, e, 0);
				res[9][cpu] = tg_blkbench_fold(&P, r, ops, bytes, st);
			} else {
				res[9][cpu] = tg_blkbench_result(&P, (uint32_t)cpu, r);
			}
		}
		if (P.workloads & TG_W_NETBENCH) {
			if (cpu == 0) {
				uint64_t frames, bytes;
				const char *e = tg_netbench_round(r, &frames, &bytes);
				if (e)
					ufail(cpu, e, 0);
				res[10][cpu] = tg_netbench_fold(&P, r, frames, bytes);
			} else {
				res[10][cpu] = tg_netbench_result(&P, (uint32_t)cpu, r);
			}
		}
		barrier_wait(n, snap_counter, r);
		if (cpu == 0) {
			char line[32], *p;
			h = tg_digest_round(h, &P, n, (const uint64_t (*)[TG_NCPU_MAX])res,
			                    counter_snap[r & 1]);
			p = tg_stpcpy(line, "round ");
			p = tg_fmt_u64(p, r);
			tg_stpcpy(p, "\n");
			uwrite(line);
		}
	}
	if (cpu == 0) {
		static char msg[64];
		if (P.workloads & TG_W_HOSTILE)
			tg_hostile_summary(uwrite);
		tg_fmt_hex16(tg_stpcpy(msg, "PASS digest="), h);
		ufinish(0, msg);
	}
	sys(TG_SYS_HALT, 0, 0, 0);
	for (;;)
		;
}
