/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest, ring 0: the processors, from the Intel MP table first,
 * the ACPI MADT as fallback.
 */
#include <stddef.h>
#include "kernel.h"

void *memcpy(void *dst, const void *src, size_t n);

static u8 *cpu_apic;                                       /* the caller's */
static u32 ncpu;
static u32 bsp_apic;

static void cpu_add(u32 apic)
{
	if (apic == bsp_apic)
		return;                                    /* index 0, added first */
	for (u32 i = 0; i < ncpu; i++)
		if (cpu_apic[i] == apic)
			return;
	if (ncpu < TG_MAXCPU)
		cpu_apic[ncpu++] = (u8)apic;
}

static int checksum_ok(const u8 *p, u64 n)
{
	u8 s = 0;
	for (u64 i = 0; i < n; i++)
		s = (u8)(s + p[i]);
	return s == 0;
}

/*
 * Find a 16-byte aligned structure starting with sig (4 or 8 bytes) and
 * with a valid checksum over cklen bytes. REPNE SCASD does the search in
 * one (emulated) instruction instead of thousands.
 */
static const u8 *scan(u64 start, u64 len, u64 sig, int siglen, u64 cklen)
{
	u64 p = start, n = len / (u64)siglen;
	while (n) {
		u64 c;
		if (siglen == 8) {
			asm volatile("repne scasq" : "+D"(p), "+c"(n) : "a"(sig) : "cc", "memory");
			c = p - 8;
			if (*(const u64 *)c != sig)
				break;                     /* not found */
		} else {
			asm volatile("repne scasl" : "+D"(p), "+c"(n) : "a"((u32)sig) : "cc", "memory");
			c = p - 4;
			if (*(const u32 *)c != (u32)sig)
				break;
		}
		if ((c & 15) == 0 && checksum_ok((const u8 *)c, cklen))
			return (const u8 *)c;
	}
	return NULL;
}

static u64 ebda_base(void)
{
	const u16 *bda = (const u16 *)0x40e;
	asm("" : "+r"(bda));                               /* hide the constant address */
	u64 seg = *bda;
	u64 a = seg << 4;
	return (a >= 0x80000 && a < 0xa0000) ? a : 0;
}

/* 0: no MP table, 1: MP table, 2: MP table built by SeaBIOS */
static int mp_parse(void)
{
	const u64 sig = 0x5f504d5f;                        /* "_MP_" */
	const u8 *f = NULL;
	u64 e = ebda_base();
	if (e)
		f = scan(e, 1024, sig, 4, 16);
	if (!f)
		f = scan(0xf0000, 0x10000, sig, 4, 16);
	if (!f || f[11] != 0)
		return 0;                                  /* none, or a default config */
	const u8 *t = (const u8 *)(u64)*(const u32 *)(f + 4);
	if (!t || *(const u32 *)t != 0x504d4350)       /* "PCMP" */
		return 0;
	u16 len = *(const u16 *)(t + 4);
	if (!checksum_ok(t, len))
		return 0;
	u16 count = *(const u16 *)(t + 34);
	const u8 *p = t + 44, *end = t + len;
	int seabios = *(const u64 *)(t + 8) == 0x5550435348434f42ULL;  /* OEM "BOCHSCPU" */
	for (u16 i = 0; i < count && p < end; i++) {
		if (p[0] == 0) {                           /* processor */
			if (p[3] & 1)                      /* enabled */
				cpu_add(p[1]);
			p += 20;
		} else if (p[0] <= 4) {
			p += 8;
		} else {
			break;
		}
	}
	return seabios ? 2 : 1;
}

static int madt_parse(void)
{
	const u64 sig = 0x2052545020445352ULL;             /* "RSD PTR " */
	const u8 *r = NULL;
	u64 e = ebda_base();
	if (e)
		r = scan(e, 1024, sig, 8, 20);
	if (!r)
		r = scan(0xe0000, 0x20000, sig, 8, 20);
	if (!r)
		return 0;
	const u8 *sdt;
	int w;
	if (r[15] >= 2 && *(const u64 *)(r + 24)) {
		sdt = (const u8 *)*(const u64 *)(r + 24);
		w = 8;
	} else {
		sdt = (const u8 *)(u64)*(const u32 *)(r + 16);
		w = 4;
	}
	if (!sdt)
		return 0;
	u32 len = *(const u32 *)(sdt + 4);
	for (u32 off = 36; off + w <= len; off += w) {
		const u8 *t = (const u8 *)(w == 8 ? *(const u64 *)(sdt + off)
		                                  : (u64)*(const u32 *)(sdt + off));
		if (!t || *(const u32 *)t != 0x43495041)   /* "APIC" */
			continue;
		u32 tl = *(const u32 *)(t + 4);
		for (u32 o = 44; o + 2 <= tl;) {
			const u8 *p = t + o;
			if (p[1] < 2)
				break;
			if (p[0] == 0 && (*(const u32 *)(p + 4) & 1))
				cpu_add(p[3]);
			o += p[1];
		}
		return 1;
	}
	return 0;
}

/*
 * The MP table is the source (khyve provides one). But QEMU's SeaBIOS builds
 * its MP table (OEM ID "BOCHSCPU") from the processors it woke up itself,
 * and under PVM it misses the APs (its real-mode wait is too short), while
 * QEMU's own ACPI MADT lists them all. So the MADT is read when there is no
 * MP table or SeaBIOS made it, and wins if it lists more processors. (The
 * MADT search costs ~10 ms of emulated ring 0 when there is no ACPI.)
 */
u32 kernel__cpus_discover(u8 apic[TG_MAXCPU], u32 bsp)
{
	u8 mp_apic[TG_MAXCPU];
	u32 mp_n;

	cpu_apic = apic;
	bsp_apic = bsp;
	cpu_apic[0] = (u8)bsp_apic;
	ncpu = 1;
	int mp = mp_parse();
	tg_info.cpu_source = mp ? 1 : 0;
	if (mp == 1) {
		tg_info.ncpu = ncpu;
		return ncpu;
	}
	mp_n = ncpu;
	memcpy(mp_apic, cpu_apic, sizeof(mp_apic));
	ncpu = 1;
	if (madt_parse() && (!mp || ncpu > mp_n)) {
		tg_info.cpu_source = 2;
	} else {
		memcpy(cpu_apic, mp_apic, sizeof(mp_apic));
		ncpu = mp_n;
	}
	tg_info.ncpu = ncpu;
	return ncpu;
}
