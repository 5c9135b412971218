/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest: shared workload code (guest ring 3 and host reference).
 */
#include "work.h"

#define GOLDEN 0x9e3779b97f4a7c15ULL

/* ------------------------------------------------------------------ */
/* strings */

size_t tg_strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

char *tg_stpcpy(char *d, const char *s)
{
	while (*s)
		*d++ = *s++;
	*d = 0;
	return d;
}

char *tg_fmt_u64(char *d, uint64_t v)
{
	char b[24];
	int i = 0;
	do {
		b[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (i)
		*d++ = b[--i];
	*d = 0;
	return d;
}

char *tg_fmt_hex16(char *d, uint64_t v)
{
	for (int s = 60; s >= 0; s -= 4)
		*d++ = "0123456789abcdef"[(v >> s) & 0xf];
	*d = 0;
	return d;
}

/* ------------------------------------------------------------------ */
/* command line */

static int word_eq(const char *s, size_t n, const char *lit)
{
	size_t i = 0;
	for (; i < n && lit[i]; i++)
		if (s[i] != lit[i])
			return 0;
	return i == n && lit[i] == 0;
}

static int parse_u64(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	size_t i = 0;
	unsigned base = 10;
	if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		i = 2;
	}
	if (i == n)
		return -1;
	for (; i < n; i++) {
		unsigned d;
		char c = s[i];
		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else if (base == 16 && c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else
			return -1;
		if (v > (UINT64_MAX - d) / base)
			return -1;                         /* overflow */
		v = v * base + d;
	}
	*out = v;
	return 0;
}

static int set_err(char *err, size_t errlen, const char *what, const char *tok, size_t toklen)
{
	size_t i = 0;
	if (!errlen)
		return -1;
	for (const char *w = what; *w && i + 1 < errlen; w++)
		err[i++] = *w;
	for (size_t j = 0; j < toklen && i + 1 < errlen; j++)
		err[i++] = tok[j];
	err[i] = 0;
	return -1;
}

int tg_params_parse(const char *s, struct tg_params *p, char *err, size_t errlen)
{
	p->workloads = TG_W_ALL;
	p->rounds = 4;
	p->memmb = 16;
	p->seed = 1;
	p->blkmb = 4;
	p->netframes = 32;
	p->fpuiters = TG_FPU_ITERS;
	p->fpu = TG_FPU_AUTO;
	p->fault = TG_FAULT_NONE;
	p->hostattack = -1;
	p->hosthold = 0;
	p->hostlog = 0;
	p->blkmode = TG_BLKMODE_RANDREAD;
	p->blkbs = 4096;
	p->blkqd = 32;
	p->blkops = 10000;
	p->netsize = 1514;

	while (*s) {
		while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
			s++;
		if (!*s)
			break;
		const char *tok = s;
		while (*s && *s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
			s++;
		size_t tl = (size_t)(s - tok), kl = 0;
		while (kl < tl && tok[kl] != '=')
			kl++;
		if (kl == tl)
			continue;                          /* no '=': not ours */
		const char *v = tok + kl + 1;
		size_t vl = tl - kl - 1;
		uint64_t n;

		if (word_eq(tok, kl, "workload")) {
			uint32_t w = 0;
			size_t i = 0;
			if (!vl)
				return set_err(err, errlen, "empty workload list: ", tok, tl);
			while (i <= vl) {
				size_t j = i;
				while (j < vl && v[j] != ',')
					j++;
				if (word_eq(v + i, j - i, "mem"))
					w |= TG_W_MEM;
				else if (word_eq(v + i, j - i, "fpu"))
					w |= TG_W_FPU;
				else if (word_eq(v + i, j - i, "smp"))
					w |= TG_W_SMP;
				else if (word_eq(v + i, j - i, "time"))
					w |= TG_W_TIME;
				else if (word_eq(v + i, j - i, "rng"))
					w |= TG_W_RNG;
				else if (word_eq(v + i, j - i, "console"))
					w |= TG_W_CON;
				else if (word_eq(v + i, j - i, "blk"))
					w |= TG_W_BLK;
				else if (word_eq(v + i, j - i, "net"))
					w |= TG_W_NET;
				else if (word_eq(v + i, j - i, "hostile"))
					w |= TG_W_HOSTILE;
				else if (word_eq(v + i, j - i, "blkbench"))
					w |= TG_W_BLKBENCH;
				else if (word_eq(v + i, j - i, "netbench"))
					w |= TG_W_NETBENCH;
				else
					return set_err(err, errlen, "unknown workload in ", tok, tl);
				i = j + 1;
			}
			p->workloads = w;
		} else if (word_eq(tok, kl, "rounds")) {
			if (parse_u64(v, vl, &n) || n < 1 || n > 1000000)
				return set_err(err, errlen, "bad rounds (1..1000000): ", tok, tl);
			p->rounds = n;
		} else if (word_eq(tok, kl, "memmb")) {
			if (parse_u64(v, vl, &n) || n < 1 || n > 65536)
				return set_err(err, errlen, "bad memmb (1..65536): ", tok, tl);
			p->memmb = n;
		} else if (word_eq(tok, kl, "blkmb")) {
			if (parse_u64(v, vl, &n) || n < 1 || n > 1024)
				return set_err(err, errlen, "bad blkmb (1..1024): ", tok, tl);
			p->blkmb = n;
		} else if (word_eq(tok, kl, "netframes")) {
			/* net keeps at most 65536 per round: checked below */
			if (parse_u64(v, vl, &n) || n < 1 || n > 1000000000)
				return set_err(err, errlen, "bad netframes (1..65536, netbench 1..1000000000): ", tok, tl);
			p->netframes = n;
		} else if (word_eq(tok, kl, "hostattack")) {
			int f = -1;
			if (word_eq(v, vl, "all"))
				f = -2;
			for (int i = 0; i < TG_HA_N; i++)
				if (word_eq(v, vl, tg_hostile_names[i]))
					f = i;
			if (f == -1)
				return set_err(err, errlen, "unknown hostattack (all or an attack name): ", tok, tl);
			p->hostattack = f < 0 ? -1 : f;
		} else if (word_eq(tok, kl, "fpuiters")) {
			if (parse_u64(v, vl, &n) || n < 1 || n > (1u << 26))
				return set_err(err, errlen, "bad fpuiters (1..67108864): ", tok, tl);
			p->fpuiters = n;
		} else if (word_eq(tok, kl, "hosthold")) {
			if (parse_u64(v, vl, &n) || n > 60000)
				return set_err(err, errlen, "bad hosthold (0..60000 ms): ", tok, tl);
			p->hosthold = n;
		} else if (word_eq(tok, kl, "hostlog")) {
			if (parse_u64(v, vl, &n) || n > 1)
				return set_err(err, errlen, "bad hostlog (0 or 1): ", tok, tl);
			p->hostlog = (int)n;
		} else if (word_eq(tok, kl, "blkmode")) {
			int f = -1;
			for (int i = 0; i < 4; i++)
				if (word_eq(v, vl, tg_blkmode_names[i]))
					f = i;
			if (f < 0)
				return set_err(err, errlen, "bad blkmode (randread|randwrite|seqread|seqwrite): ", tok, tl);
			p->blkmode = f;
		} else if (word_eq(tok, kl, "blkbs")) {
			if (parse_u64(v, vl, &n) || n < 512 || n > (1u << 20) || n % 512)
				return set_err(err, errlen, "bad blkbs (512..1048576, a multiple of 512): ", tok, tl);
			p->blkbs = n;
		} else if (word_eq(tok, kl, "blkqd")) {
			if (parse_u64(v, vl, &n) || n < 1 || n > 256)
				return set_err(err, errlen, "bad blkqd (1..256): ", tok, tl);
			p->blkqd = n;
		} else if (word_eq(tok, kl, "blkops")) {
			if (parse_u64(v, vl, &n) || n < 1 || n > (1ull << 32))
				return set_err(err, errlen, "bad blkops (1..4294967296): ", tok, tl);
			p->blkops = n;
		} else if (word_eq(tok, kl, "netsize")) {
			if (parse_u64(v, vl, &n) || n < TG_NET_MIN || n > TG_NET_MAX)
				return set_err(err, errlen, "bad netsize (60..1514): ", tok, tl);
			p->netsize = n;
		} else if (word_eq(tok, kl, "seed")) {
			if (parse_u64(v, vl, &n))
				return set_err(err, errlen, "bad seed: ", tok, tl);
			p->seed = n;
		} else if (word_eq(tok, kl, "fpu")) {
			if (word_eq(v, vl, "auto"))
				p->fpu = TG_FPU_AUTO;
			else if (word_eq(v, vl, "sse"))
				p->fpu = TG_FPU_SSE;
			else if (word_eq(v, vl, "avx2"))
				p->fpu = TG_FPU_AVX2;
			else if (word_eq(v, vl, "avx512"))
				p->fpu = TG_FPU_AVX512;
			else
				return set_err(err, errlen, "bad fpu (auto|sse|avx2|avx512): ", tok, tl);
		} else if (word_eq(tok, kl, "fault")) {
			static const char *const kinds[] = { "none", "gp", "ud", "pf", "sys", "kpf", "df" };
			int f = -1;
			for (int i = 0; i < 7; i++)
				if (word_eq(v, vl, kinds[i]))
					f = i;
			if (f < 0)
				return set_err(err, errlen, "bad fault (none|gp|ud|pf|sys|kpf|df): ", tok, tl);
			p->fault = f;
		}
	}
	if ((p->workloads & TG_W_NET) && p->netframes > 65536)
		return set_err(err, errlen, "bad netframes (1..65536 with net)", "", 0);
	/* one driver per device: the hostile workload resets every device */
	if ((p->workloads & TG_W_HOSTILE) && (p->workloads & TG_W_DEVICES & ~TG_W_HOSTILE))
		return set_err(err, errlen, "hostile cannot be combined with another device workload", "", 0);
	if ((p->workloads & TG_W_BLKBENCH) && (p->workloads & TG_W_BLK))
		return set_err(err, errlen, "blkbench cannot be combined with blk", "", 0);
	if ((p->workloads & TG_W_NETBENCH) && (p->workloads & TG_W_NET))
		return set_err(err, errlen, "netbench cannot be combined with net", "", 0);
	return 0;
}

/* ------------------------------------------------------------------ */
/* digest */

uint64_t tg_mix64(uint64_t z)
{
	z ^= z >> 30;
	z *= 0xbf58476d1ce4e5b9ULL;
	z ^= z >> 27;
	z *= 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return z;
}

uint64_t tg_fold(uint64_t h, uint64_t w)
{
	return tg_mix64(h ^ w);
}

uint64_t tg_digest_init(const struct tg_params *p, uint32_t ncpu)
{
	uint64_t h = 0x6b68797665746731ULL;                /* "khyvetg1" */
	h = tg_fold(h, ncpu);
	h = tg_fold(h, p->workloads);
	h = tg_fold(h, p->rounds);
	h = tg_fold(h, p->memmb);
	h = tg_fold(h, p->seed);
	/* folded only when given, so every earlier digest stays what it was */
	if (p->fpuiters != TG_FPU_ITERS)
		h = tg_fold(h, p->fpuiters);
	return h;
}

uint64_t tg_digest_round(uint64_t h, const struct tg_params *p, uint32_t ncpu,
                         const uint64_t res[TG_NW][TG_NCPU_MAX], uint64_t smp_counter)
{
	for (int w = 0; w < TG_NW; w++) {
		if (!(p->workloads & (1u << w)))
			continue;
		for (uint32_t c = 0; c < ncpu; c++)
			h = tg_fold(h, res[w][c]);
		if ((1u << w) == TG_W_SMP)
			h = tg_fold(h, smp_counter);
	}
	return h;
}

/* ------------------------------------------------------------------ */
/* mem: a PRNG-filled buffer, random read-modify-write passes per round */

void tg_mem_slice(uint64_t words, uint32_t cpu, uint32_t ncpu, uint64_t *lo, uint64_t *hi)
{
	*lo = words * cpu / ncpu;
	*hi = words * (cpu + 1) / ncpu;
}

void tg_mem_fill(uint64_t *buf, uint64_t words, uint32_t cpu, uint32_t ncpu, uint64_t seed)
{
	uint64_t lo, hi;
	uint64_t s = tg_mix64(seed ^ 0x6d656d66696c6c31ULL);  /* "memfill1" */
	tg_mem_slice(words, cpu, ncpu, &lo, &hi);
	for (uint64_t i = lo; i < hi; i++)
		buf[i] = tg_mix64(s + i * GOLDEN);
}

uint64_t tg_mem_round(uint64_t *buf, uint64_t words, uint32_t cpu, uint32_t ncpu,
                      uint64_t seed, uint64_t round)
{
	uint64_t lo, hi;
	tg_mem_slice(words, cpu, ncpu, &lo, &hi);
	uint64_t len = hi - lo, acc = 0, sum = 0;
	uint64_t s = tg_mix64(seed ^ tg_mix64(round * GOLDEN + cpu) ^ 0x6d656d726e643131ULL);
	uint64_t *b = buf + lo;

	/* two random read-modify-write passes */
	for (uint64_t k = 0; k < 2 * len; k++) {
		s += GOLDEN;
		uint64_t z = tg_mix64(s);
		uint64_t idx = (uint64_t)(((unsigned __int128)z * len) >> 64);
		uint64_t x = b[idx];
		x = (x ^ (x >> 29) ^ z) * 0xbf58476d1ce4e5b9ULL + k;
		b[idx] = x;
		acc += x ^ idx;
	}
	/* one sequential pass: the whole slice is checked every round */
	for (uint64_t i = 0; i < len; i++)
		sum += (b[i] ^ i) * (2 * i + 1);
	return tg_fold(tg_fold(tg_fold(acc, sum), len), round);
}

/* ------------------------------------------------------------------ */
/* smp: own slice, neighbour's previous slice, shared LOCK XADD counter */

static inline void xadd64(volatile uint64_t *p, uint64_t v)
{
	asm volatile("lock xaddq %0, %1" : "+r"(v), "+m"(*p) : : "memory");
}

uint64_t tg_smp_round(tg_smp_slices_t *slices, volatile uint64_t *counter,
                      uint32_t cpu, uint32_t ncpu, uint64_t seed, uint64_t round)
{
	uint64_t *cur = (*slices)[round & 1][cpu];
	const uint64_t *prev = (*slices)[(round - 1) & 1][(cpu + 1) % ncpu];
	uint64_t st = tg_mix64(seed ^ ((uint64_t)(cpu + 1) << 40) ^ (round * GOLDEN) ^ 0x736d70ULL);
	uint64_t h = 0;

	for (uint64_t pass = 0; pass < TG_SMP_PASSES; pass++) {
		for (uint64_t i = 0; i < TG_SMP_WORDS; i++) {
			uint64_t v = tg_mix64(cur[i] ^ prev[i] ^ st ^ (pass * TG_SMP_WORDS + i));
			cur[i] = v;
			xadd64(counter, (v & 0xff) + 1);
		}
	}
	for (uint64_t i = 0; i < TG_SMP_WORDS; i++)
		h = h * 0x100000001b3ULL + cur[i];
	return tg_fold(h, round);
}

/* ------------------------------------------------------------------ */
/* rng: CPU 0 reads TG_RNG_BYTES per round; the others only take part */
uint64_t tg_rng_result(uint32_t cpu, uint64_t round)
{
	return cpu ? 0x726e67 : tg_mix64(0x726e6762797465ULL ^ (round << 16) ^ TG_RNG_BYTES);
}

/* console: CPU 0 writes TG_CON_BYTES per round; the others only take part */
void tg_con_stream(char *buf, uint64_t seed, uint64_t round)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t s = tg_mix64(seed ^ 0x636f6e736f6c6531ULL ^ tg_mix64(round * GOLDEN));  /* "console1" */

	for (unsigned int l = 0; l < TG_CON_LINES; l++) {
		char *p = buf + l * TG_CON_LINE;
		for (unsigned int k = 0; k < 4; k++) {
			uint64_t w = tg_mix64(s + (l * 4 + k) * GOLDEN);
			for (int d = 15; d >= 0; d--) {
				p[d] = hex[w & 15];
				w >>= 4;
			}
			p[16] = k < 3 ? ' ' : '\n';
			p += 17;
		}
	}
}

uint64_t tg_con_result(uint32_t cpu, uint64_t round)
{
	return cpu ? 0x636f6e : tg_mix64(0x636f6e736f6c65ULL ^ (round << 16) ^ TG_CON_BYTES);
}

/* ------------------------------------------------------------------ */
/* blk: CPU 0 reads, writes, flushes and zeroes the first blkmb MiB */

void tg_blk_plan(uint64_t seed, uint64_t round, int pass, uint64_t i, struct tg_blk_req *q)
{
	uint64_t z = tg_mix64(tg_mix64(seed ^ 0x626c6b706c616e31ULL ^ tg_mix64(round * GOLDEN + (uint64_t)pass)) +
	                      i * GOLDEN);                             /* "blkplan1" */
	unsigned int cls = (unsigned int)(z % 6);
	uint64_t y = z >> 8;

	/* 1..8 sectors (up to 4 KiB), then (4,8], (8,16], ... (64,128] KiB */
	if (cls == 0)
		q->sectors = (uint32_t)(1 + y % 8);
	else
		q->sectors = (uint32_t)((4u << cls) + 1 + y % (4u << cls));
	y >>= 16;
	q->segs = (uint32_t)(1 + y % TG_BLK_MAXSEGS);
	if (q->segs > q->sectors)
		q->segs = q->sectors;
	y >>= 8;
	q->indirect = (y & 7) != 0;                /* 7 in 8 through a table */
	y >>= 4;
	q->skew = (q->segs > 1 && (y & 7) == 0) ? 100 : 0;
}

void tg_blk_zero_range(uint64_t seed, uint64_t blkmb, uint64_t round,
                       uint64_t *start, uint64_t *count)
{
	uint64_t sectors = blkmb << 11, lim = sectors / 2;
	uint64_t z = tg_mix64(seed ^ 0x626c6b7a65726f31ULL ^ tg_mix64(round * GOLDEN));  /* "blkzero1" */

	if (lim > TG_BLK_MAXZERO)
		lim = TG_BLK_MAXZERO;
	*count = 1 + (z & 0xffffffff) % lim;
	*start = (z >> 32) % (sectors - *count + 1);
}

void tg_blk_sector_raw(uint64_t *w, uint64_t seed, uint64_t round, uint64_t s)
{
	uint64_t k = tg_mix64(seed ^ 0x626c6b6461746131ULL ^ tg_mix64(round * GOLDEN));  /* "blkdata1" */
	uint64_t x = k + s * TG_BLK_SWORDS * GOLDEN;

	/* word 0 names the sector in a hex dump: "kb", round, sector */
	w[0] = 0x6b62000000000000ULL | (round & 0xffff) << 32 | (s & 0xffffffff);
	for (unsigned int i = 1; i < TG_BLK_SWORDS; i++)
		w[i] = tg_mix64(x + i * GOLDEN);
}

void tg_blk_sector(uint64_t *w, uint64_t seed, uint64_t blkmb, uint64_t round, uint64_t s)
{
	uint64_t zs, zn;

	if (round) {
		tg_blk_zero_range(seed, blkmb, round, &zs, &zn);
		if (s < zs || s >= zs + zn) {
			tg_blk_sector_raw(w, seed, round, s);
			return;
		}
	}
	for (unsigned int i = 0; i < TG_BLK_SWORDS; i++)
		w[i] = 0;
}

uint64_t tg_blk_sector_hash(const uint64_t *w, uint64_t s)
{
	uint64_t h = 0;

	for (unsigned int i = 0; i < TG_BLK_SWORDS; i++)
		h = h * 0x100000001b3ULL + w[i];
	return tg_mix64(h ^ (s * GOLDEN));
}

/* requests of one pass over `sectors` sectors */
static uint64_t blk_requests(uint64_t seed, uint64_t round, int pass, uint64_t sectors)
{
	struct tg_blk_req q;
	uint64_t i = 0;

	for (uint64_t s = 0; s < sectors; s += q.sectors)
		tg_blk_plan(seed, round, pass, i++, &q);
	return i;
}

static uint64_t blk_pass_hash(const struct tg_params *p, uint64_t round)
{
	uint64_t w[TG_BLK_SWORDS], h = 0;

	for (uint64_t s = 0; s < p->blkmb << 11; s++) {
		tg_blk_sector(w, p->seed, p->blkmb, round, s);
		h += tg_blk_sector_hash(w, s);
	}
	return h;
}

void tg_blk_expect(const struct tg_params *p, uint64_t round, struct tg_blk_tally *t)
{
	uint64_t sectors = p->blkmb << 11;

	t->read_hash = blk_pass_hash(p, round - 1);
	t->reads = blk_requests(p->seed, round, TG_BLK_READ, sectors);
	t->writes = blk_requests(p->seed, round, TG_BLK_WRITE, sectors);
	t->others = 2 + (round == 1);                  /* two flushes, GET_ID */
	t->final_hash = 0;
	if (round == p->rounds) {
		t->final_hash = blk_pass_hash(p, round);
		t->reads += blk_requests(p->seed, round + 1, TG_BLK_READ, sectors);
	}
	t->status_or = 0;
}

uint64_t tg_blk_fold(const struct tg_params *p, uint64_t round, const struct tg_blk_tally *t)
{
	uint64_t h = tg_mix64(0x626c6b726f756e64ULL ^ (round << 16) ^ p->blkmb);  /* "blkround" */

	h = tg_fold(h, t->read_hash);
	h = tg_fold(h, t->final_hash);
	h = tg_fold(h, t->reads);
	h = tg_fold(h, t->writes);
	h = tg_fold(h, t->others);
	return tg_fold(h, t->status_or);
}

uint64_t tg_blk_result(const struct tg_params *p, uint32_t cpu, uint64_t round)
{
	struct tg_blk_tally t;

	if (cpu)
		return 0x626c6b;
	tg_blk_expect(p, round, &t);
	return tg_blk_fold(p, round, &t);
}

/* ------------------------------------------------------------------ */
/* net: CPU 0 sends netframes frames per round, the host echoes them */

uint32_t tg_net_frame(uint8_t *f, const uint8_t mac[6], uint64_t seed, uint64_t round,
                      uint32_t seq)
{
	uint64_t k = tg_mix64(tg_mix64(seed ^ 0x6e65746672616d31ULL ^ tg_mix64(round * GOLDEN)) +
	                      seq * GOLDEN);                        /* "netfram1" */
	uint32_t len = TG_NET_MIN + (uint32_t)(k % (TG_NET_MAX - TG_NET_MIN + 1));
	static const char magic[] = TG_NET_MAGIC;

	for (int i = 0; i < 6; i++) {
		f[i] = 0xff;
		f[6 + i] = mac[i];
	}
	f[12] = TG_NET_ETHERTYPE >> 8;
	f[13] = TG_NET_ETHERTYPE & 0xff;
	for (int i = 0; i < 8; i++) {
		f[14 + i] = (uint8_t)magic[i];
		f[22 + i] = (uint8_t)(round >> (8 * i));
	}
	for (int i = 0; i < 4; i++)
		f[30 + i] = (uint8_t)(seq >> (8 * i));
	f[34] = (uint8_t)len;
	f[35] = (uint8_t)(len >> 8);
	for (uint32_t i = TG_NET_HDR; i < len; i += 8) {
		uint64_t w = tg_mix64(k + i * GOLDEN);
		for (uint32_t j = 0; j < 8 && i + j < len; j++)
			f[i + j] = (uint8_t)(w >> (8 * j));
	}
	return len;
}

uint64_t tg_net_frame_hash(const uint8_t *f, uint32_t len, uint32_t seq)
{
	uint64_t h = len;

	for (uint32_t i = 0; i < len; i++)
		if (i < 6 || i >= 12)                  /* not the source MAC */
			h = h * 0x100000001b3ULL + f[i];
	return tg_mix64(h ^ ((uint64_t)seq * GOLDEN));
}

uint64_t tg_net_fold(const struct tg_params *p, uint64_t round, uint64_t hash_sum)
{
	uint64_t h = tg_mix64(0x6e6574726f756e64ULL ^ (round << 16));  /* "netround" */

	return tg_fold(tg_fold(h, p->netframes), hash_sum);
}

uint64_t tg_net_result(const struct tg_params *p, uint32_t cpu, uint64_t round)
{
	static const uint8_t mac[6];
	uint8_t f[TG_NET_MAX];
	uint64_t sum = 0;

	if (cpu)
		return 0x6e6574;
	for (uint32_t seq = 0; seq < p->netframes; seq++) {
		uint32_t len = tg_net_frame(f, mac, p->seed, round, seq);
		sum += tg_net_frame_hash(f, len, seq);
	}
	return tg_net_fold(p, round, sum);
}

/* ------------------------------------------------------------------ */
/* hostile: the digest sees the rounds and the recoveries, never how the
 * devices reacted (that may legitimately differ) */

#define TG_HA_NAME(id, name) name,
const char *const tg_hostile_names[TG_HA_N] = { TG_HOSTILE_ATTACKS(TG_HA_NAME) };
#undef TG_HA_NAME

uint64_t tg_hostile_fold(uint64_t round, uint64_t recoveries)
{
	return tg_fold(tg_mix64(0x686f7374696c6531ULL ^ (round << 16)), recoveries);  /* "hostile1" */
}

uint64_t tg_hostile_result(uint32_t cpu, uint64_t round)
{
	return cpu ? 0x686f7374 : tg_hostile_fold(round, TG_HOSTILE_PER_ROUND);
}

/* ------------------------------------------------------------------ */
/* blkbench, netbench: the digest sees what was asked, and that it all
 * completed */

const char *const tg_blkmode_names[4] = { "randread", "randwrite", "seqread", "seqwrite" };

uint64_t tg_blkbench_next(const struct tg_params *p, uint64_t *state, uint64_t *seq)
{
	uint64_t span = p->blkmb << 20, off;

	if (p->blkmode == TG_BLKMODE_RANDREAD || p->blkmode == TG_BLKMODE_RANDWRITE) {
		*state += GOLDEN;                          /* bench/blkhost.c's next() */
		return (tg_mix64(*state) % (span / p->blkbs)) * p->blkbs;
	}
	off = *seq;
	*seq = *seq + p->blkbs >= span ? 0 : *seq + p->blkbs;
	return off;
}

uint64_t tg_blkbench_fold(const struct tg_params *p, uint64_t round, uint64_t ops, uint64_t bytes,
                          uint32_t status_or)
{
	uint64_t h = tg_mix64(0x626c6b62656e6368ULL ^ (round << 16));  /* "blkbench" */

	h = tg_fold(h, (uint64_t)p->blkmode << 32 | p->blkqd);
	h = tg_fold(h, p->blkbs);
	h = tg_fold(h, p->blkmb);
	h = tg_fold(h, ops);
	h = tg_fold(h, bytes);
	return tg_fold(h, status_or);
}

uint64_t tg_blkbench_result(const struct tg_params *p, uint32_t cpu, uint64_t round)
{
	return cpu ? 0x626c6b62 : tg_blkbench_fold(p, round, p->blkops, p->blkops * p->blkbs, 0);
}

uint64_t tg_netbench_fold(const struct tg_params *p, uint64_t round, uint64_t frames, uint64_t bytes)
{
	uint64_t h = tg_mix64(0x6e657462656e6368ULL ^ (round << 16));  /* "netbench" */

	h = tg_fold(h, p->netsize);
	h = tg_fold(h, frames);
	return tg_fold(h, bytes);
}

uint64_t tg_netbench_result(const struct tg_params *p, uint32_t cpu, uint64_t round)
{
	return cpu ? 0x6e657462 : tg_netbench_fold(p, round, p->netframes, p->netframes * p->netsize);
}

/* time: the checks live in the guest; the contribution is a constant */

uint64_t tg_time_result(uint32_t cpu, uint64_t round)
{
	return tg_fold(0x74696d6500000000ULL + round, cpu);
}
