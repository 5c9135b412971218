/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest: the ring-0 kernel.
 *
 * Everything here runs in ring 0, which under KVM PVM is emulated at about
 * 1 us per instruction: paths are short, and the file is built with
 * -mgeneral-regs-only (no x87/SSE/AVX, no XSAVE, no POPCNT).
 */
#include <stddef.h>
#include <stdint.h>
#include "abi.h"
#include "kernel.h"

void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);

/* boot.S */
extern u64 pml4[512], pdpt[512], pd_low[4][512], pd_high[60][512], pdpt_win[512];
extern u64 pd_win[TG_WIN_MAX_PD][512];
extern u64 gdt_tss[TG_MAXCPU][2];
extern char isr_stubs[], tramp_start[], tramp_end[];
extern char __image_start[], __image_end[];
void enter_user(u64 rip, u64 rsp, u64 arg) __attribute__((noreturn));
/* user.c (ring 3) */
void user_main(u64 cpu);

void kmain(u32 magic, u32 mbi);
void ap_main(u64 cpu);
struct frame;
void isr_dispatch(struct frame *f);

struct tg_info tg_info;
struct tg_cpu tg_cpus[TG_MAXCPU];
struct tg_task tg_tasks[TG_MAXCPU];
char tg_kstacks[TG_MAXCPU][TG_KSTACK_SIZE] __attribute__((aligned(4096)));
char tg_ustacks[TG_MAXCPU][TG_USTACK_SIZE] __attribute__((aligned(4096)));
u8 ap_apic_to_cpu[256];                                    /* boot.S: index + 1 */
extern u64 boot_tsc;                                       /* boot.S: TSC at entry */

#define PTE_P   0x001ULL
#define PTE_W   0x002ULL
#define PTE_U   0x004ULL
#define PTE_PWT 0x008ULL
#define PTE_PCD 0x010ULL
#define PTE_PS  0x080ULL
#define PDE_2M  (PTE_P | PTE_W | PTE_U | PTE_PS)
#define MIB     (1ULL << 20)
#define GIB     (1ULL << 30)
#define BLOCK   (2 * MIB)

#define MSR_APIC_BASE   0x1b
#define MSR_FS_BASE     0xc0000100
#define MSR_GS_BASE     0xc0000101
#define MSR_KGS_BASE    0xc0000102

#define LAPIC_BASE      0xfee00000ULL
#define LAPIC_ID        0x020
#define LAPIC_TPR       0x080
#define LAPIC_EOI       0x0b0
#define LAPIC_SVR       0x0f0
#define LAPIC_ICR_LO    0x300
#define LAPIC_ICR_HI    0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_LINT1 0x360
#define LAPIC_LVT_ERR   0x370
#define LAPIC_TIMER_ICR 0x380
#define LAPIC_TIMER_CCR 0x390
#define LAPIC_TIMER_DIV 0x3e0

/*
 * KVM's LAPIC counts at 1 GHz: divide by 16 and 625000 gives 100 Hz. No
 * calibration; the guest never relies on the exact rate.
 */
#define TIMER_DIVIDE    0x3             /* divide by 16 */
#define TIMER_COUNT     625000

#define COM1            0x3f8
#define DEBUG_EXIT_PORT 0xf4

/* ------------------------------------------------------------------ */
/* low-level helpers */

static inline void outb(u16 port, u8 v) { asm volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { asm volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u32 inl(u16 port)
{
	u32 v;
	asm volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline u8 inb(u16 port)
{
	u8 v;
	asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline u64 rdmsr(u32 msr)
{
	u32 lo, hi;
	asm volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((u64)hi << 32) | lo;
}

static inline void wrmsr(u32 msr, u64 v)
{
	asm volatile("wrmsr" : : "c"(msr), "a"((u32)v), "d"((u32)(v >> 32)));
}

static inline void cpuid(u32 leaf, u32 sub, u32 r[4])
{
	asm volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

static inline u64 rdtsc(void)
{
	u32 lo, hi;
	asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}

/* TSC rate from CPUID 0x15 or 0x16 (0: unknown); only for messages */
static u64 tsc_khz(void)
{
	u32 r[4], max;
	cpuid(0, 0, r);
	max = r[0];
	if (max >= 0x15) {
		cpuid(0x15, 0, r);
		if (r[0] && r[1] && r[2])
			return (u64)r[2] / 1000 * r[1] / r[0];
	}
	if (max >= 0x16) {
		cpuid(0x16, 0, r);
		if (r[0] & 0xffff)
			return (u64)(r[0] & 0xffff) * 1000;
	}
	return 0;
}

static inline u32 lapic_read(u32 reg) { return *(volatile u32 *)(LAPIC_BASE + reg); }
static inline void lapic_write(u32 reg, u32 v) { *(volatile u32 *)(LAPIC_BASE + reg) = v; }

static inline struct tg_cpu *this_cpu(void)
{
	struct tg_cpu *c;
	asm volatile("movq %%gs:0, %0" : "=r"(c));
	return c;
}

static void __attribute__((noreturn)) halt_forever(void)
{
	for (;;)
		asm volatile("cli; hlt");
}

/* ------------------------------------------------------------------ */
/* serial console (COM1, polled) */

static volatile u32 serial_lock;
static volatile u32 pci_lock;

static void serial_init(void)
{
	outb(COM1 + 1, 0x00);   /* no interrupts */
	outb(COM1 + 3, 0x80);   /* DLAB */
	outb(COM1 + 0, 0x01);   /* 115200 */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03);   /* 8N1 */
	outb(COM1 + 2, 0x07);   /* FIFO on, cleared */
	outb(COM1 + 4, 0x03);   /* DTR, RTS */
}

static void serial_putc(char c)
{
	u32 spins = 0;
	/* bounded wait: a missing UART must not hang the guest */
	while (!(inb(COM1 + 5) & 0x20) && ++spins < 100000)
		;
	outb(COM1, (u8)c);
}

static void lock(volatile u32 *l)
{
	while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
		asm volatile("pause");
}

static void unlock(volatile u32 *l) { __atomic_store_n(l, 0, __ATOMIC_RELEASE); }

static void kwrite(const char *s, u64 n)
{
	for (u64 i = 0; i < n; i++)
		serial_putc(s[i]);
}

static void kputs(const char *s)
{
	while (*s)
		serial_putc(*s++);
}

static void kput_dec(u64 v)
{
	char b[24];
	int i = 0;
	do {
		b[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (i)
		serial_putc(b[--i]);
}

static void kput_hex(u64 v)
{
	kputs("0x");
	int started = 0;
	for (int s = 60; s >= 0; s -= 4) {
		u32 d = (v >> s) & 0xf;
		if (d || started || s == 0) {
			serial_putc("0123456789abcdef"[d]);
			started = 1;
		}
	}
}

/* ------------------------------------------------------------------ */
/* the end: one final line, exit code on the debug-exit port */

static volatile u32 finished;

static int finish_claim(void)
{
	return __atomic_exchange_n(&finished, 1, __ATOMIC_ACQ_REL) == 0;
}

static void __attribute__((noreturn)) finish_exit(u32 status)
{
	outl(DEBUG_EXIT_PORT, status);
	halt_forever();
}

static void __attribute__((noreturn)) kfail(const char *why, u64 v)
{
	asm volatile("cli");
	if (!finish_claim())
		halt_forever();
	kputs("khyve-testguest: FAIL ");
	kputs(why);
	if (v != ~0ULL) {
		serial_putc(' ');
		kput_hex(v);
	}
	serial_putc('\n');
	finish_exit(1);
}

/* ------------------------------------------------------------------ */
/* multiboot information and memory map */

struct range { u64 start, end; };

#define MAX_MMAP 128
#define MAX_RESV 64
static struct { u64 base, len; u32 type; } mmap_ent[MAX_MMAP];
static u32 mmap_n;
static struct range resv[MAX_RESV];
static u32 resv_n;

static void reserve(u64 start, u64 len)
{
	if (!len)
		return;
	if (resv_n == MAX_RESV)
		kfail("too many reserved ranges", ~0ULL);
	resv[resv_n].start = start;
	resv[resv_n].end = start + len;
	resv_n++;
}

static u64 kstrnlen(const char *s, u64 max)
{
	u64 n = 0;
	while (n < max && s[n])
		n++;
	return n;
}

static void multiboot_read(u32 mbi_addr)
{
	const u8 *mbi = (const u8 *)(u64)mbi_addr;
	u32 flags = *(const u32 *)mbi;

	reserve(0, MIB);                                   /* BIOS, trampoline */
	reserve((u64)__image_start, (u64)__image_end - (u64)__image_start);
	reserve(mbi_addr, 128);

	if (flags & (1u << 2)) {                           /* command line */
		const char *cl = (const char *)(u64)*(const u32 *)(mbi + 16);
		u64 n = kstrnlen(cl, TG_CMDLINE_MAX - 1);
		memcpy(tg_info.cmdline, cl, n);
		tg_info.cmdline[n] = 0;
		reserve((u64)cl, n + 1);
	}
	if (flags & (1u << 3)) {                           /* modules */
		u32 cnt = *(const u32 *)(mbi + 20);
		u32 addr = *(const u32 *)(mbi + 24);
		reserve(addr, (u64)cnt * 16);
		for (u32 i = 0; i < cnt && i < 32; i++) {
			const u32 *m = (const u32 *)(u64)(addr + 16 * i);
			if (m[1] > m[0])
				reserve(m[0], m[1] - m[0]);
			if (m[2])
				reserve(m[2], kstrnlen((const char *)(u64)m[2], 4096) + 1);
		}
	}
	if (flags & (1u << 6)) {                           /* memory map */
		u32 len = *(const u32 *)(mbi + 44);
		u32 addr = *(const u32 *)(mbi + 48);
		reserve(addr, len);
		u64 p = addr, end = (u64)addr + len;
		while (p + 24 <= end && mmap_n < MAX_MMAP) {
			u32 sz = *(const u32 *)p;
			mmap_ent[mmap_n].base = *(const u64 *)(p + 4);
			mmap_ent[mmap_n].len = *(const u64 *)(p + 12);
			mmap_ent[mmap_n].type = *(const u32 *)(p + 20);
			mmap_n++;
			p += (u64)sz + 4;
		}
	} else if (flags & 1u) {                           /* mem_lower/upper */
		mmap_ent[0].base = 0;
		mmap_ent[0].len = (u64)*(const u32 *)(mbi + 4) * 1024;
		mmap_ent[0].type = 1;
		mmap_ent[1].base = MIB;
		mmap_ent[1].len = (u64)*(const u32 *)(mbi + 8) * 1024;
		mmap_ent[1].type = 1;
		mmap_n = 2;
	}
	if (!mmap_n)
		kfail("no memory map from the boot loader", ~0ULL);
}

/* ------------------------------------------------------------------ */
/* paging: identity map of all RAM (2 MiB pages), RAM window for "mem" */

static void map_ident_block(u64 pa)
{
	u64 g = pa >> 30;
	if (g >= 64)
		return;                                    /* beyond 64 GiB: unused */
	if (g < 4)
		return;                                    /* static, boot.S */
	if (!pdpt[g])
		pdpt[g] = (u64)&pd_high[g - 4][0] | PTE_P | PTE_W | PTE_U;
	pd_high[g - 4][(pa >> 21) & 511] = pa | PDE_2M;
}

/*
 * Upper bound of the RAM the "mem" workload needs: the largest memmb=N on
 * the command line (default 16). Ring 3 parses the command line properly;
 * this only keeps the window (and the ring-0 time to build it) small.
 */
static u64 window_want(void)
{
	u64 want = 16;
	const char *s = tg_info.cmdline;
	for (u64 i = 0; s[i]; i++) {
		if ((i == 0 || s[i - 1] == ' ') && s[i] == 'm' && s[i + 1] == 'e' && s[i + 2] == 'm' &&
		    s[i + 3] == 'm' && s[i + 4] == 'b' && s[i + 5] == '=') {
			u64 v = 0, j = i + 6, base = 10;
			if (s[j] == '0' && (s[j + 1] == 'x' || s[j + 1] == 'X')) {
				base = 16;
				j += 2;
			}
			for (; v < (1ULL << 40); j++) {
				char c = s[j];
				u64 d;
				if (c >= '0' && c <= '9')
					d = (u64)(c - '0');
				else if (base == 16 && (c | 0x20) >= 'a' && (c | 0x20) <= 'f')
					d = (u64)((c | 0x20) - 'a' + 10);
				else
					break;
				v = v * base + d;
			}
			if (v > want)
				want = v;
		}
	}
	return want * MIB;
}

static void paging_setup(void)
{
	u64 win_blocks = 0, win_max = (window_want() + BLOCK - 1) / BLOCK;

	if (win_max > (u64)TG_WIN_MAX_PD * 512)
		win_max = (u64)TG_WIN_MAX_PD * 512;
	/* sort the reserved ranges by start (few): one walk per RAM range */
	for (u32 i = 1; i < resv_n; i++)
		for (u32 j = i; j > 0 && resv[j].start < resv[j - 1].start; j--) {
			struct range t = resv[j];
			resv[j] = resv[j - 1];
			resv[j - 1] = t;
		}
	for (u32 i = 0; i < mmap_n; i++) {
		if (mmap_ent[i].type != 1)
			continue;
		u64 base = mmap_ent[i].base, end = base + mmap_ent[i].len;
		tg_info.ram_bytes += mmap_ent[i].len;
		if (end > tg_info.ram_end)
			tg_info.ram_end = end;
		if (end <= 4 * GIB && end > tg_info.ram_low_end)
			tg_info.ram_low_end = end;
		/* identity map RAM above 4 GiB (0..4 GiB is mapped statically) */
		if (end > 4 * GIB) {
			u64 a = base < 4 * GIB ? 4 * GIB : base & ~(BLOCK - 1);
			for (; a < end; a += BLOCK)
				map_ident_block(a);
		}
		/* RAM window: whole free 2 MiB blocks, in memory-map order */
		u32 r = 0;
		for (u64 a = (base + BLOCK - 1) & ~(BLOCK - 1); a + BLOCK <= end && win_blocks < win_max;
		     a += BLOCK) {
			while (r < resv_n && resv[r].end <= a)
				r++;
			int busy = 0;
			for (u32 k = r; k < resv_n && resv[k].start < a + BLOCK; k++)
				if (resv[k].end > a)
					busy = 1;
			if (busy)
				continue;
			pd_win[win_blocks >> 9][win_blocks & 511] = a | PDE_2M;
			win_blocks++;
		}
	}
	/* the last page of low RAM: free unless reserved (ring 3 checks the window) */
	tg_info.top_page_free = tg_info.ram_low_end >= 2 * MIB;
	for (u32 k = 0; k < resv_n; k++)
		if (resv[k].start < tg_info.ram_low_end && resv[k].end > tg_info.ram_low_end - 0x1000)
			tg_info.top_page_free = 0;
	for (u64 j = 0; j < TG_WIN_MAX_PD && (j << 9) < win_blocks; j++)
		pdpt_win[j] = (u64)&pd_win[j][0] | PTE_P | PTE_W | PTE_U;
	pml4[(TG_WIN_VA >> 39) & 511] = (u64)pdpt_win | PTE_P | PTE_W | PTE_U;
	tg_info.win_base = TG_WIN_VA;
	tg_info.win_size = win_blocks * BLOCK;
}

/* ------------------------------------------------------------------ */
/* processors (kernel_cpus.c finds them) */

static u8 cpu_apic[TG_MAXCPU];
static u32 ncpu;

/* ------------------------------------------------------------------ */
/* GDT/TSS/IDT, per-CPU state */

struct tss {
	u32 res0;
	u64 rsp[3];
	u64 res1;
	u64 ist[7];
	u64 res2;
	u16 res3;
	u16 iomap;
} __attribute__((packed));

static struct tss tss[TG_MAXCPU] __attribute__((aligned(128)));
static u64 idt[256][2] __attribute__((aligned(16)));

struct dtr {
	u16 limit;
	u64 base;
} __attribute__((packed));

/*
 * #DF runs on a stack of its own (IST 1): a fault that cannot push its
 * frame (a bad stack, a corrupted page) then ends in a FAIL line naming
 * the RIP and CR2 instead of a silent triple fault, which KVM reports with
 * the registers already reset.
 */
#define TG_DFSTACK_SIZE 4096
static char tg_dfstacks[TG_MAXCPU][TG_DFSTACK_SIZE] __attribute__((aligned(16)));

static void idt_gate(u64 v)
{
	u64 a = (u64)isr_stubs + 16 * v;
	u64 ist = v == 8 ? 1 : 0;

	idt[v][0] = (a & 0xffff) | ((u64)TG_SEL_KCODE << 16) | (ist << 32) | (0x8eULL << 40) |
	            (((a >> 16) & 0xffff) << 48);
	idt[v][1] = a >> 32;
}

/* only the vectors in use; any other one raises #NP (11): FAIL */
static void idt_build(void)
{
	for (u64 v = 0; v < 32; v++)
		idt_gate(v);
	for (u64 v = TG_VEC_PIC; v < TG_VEC_PIC + 16; v++)
		idt_gate(v);
	idt_gate(TG_VEC_TIMER);
	idt_gate(TG_VEC_SPUR);
}

static void tss_build(u32 i)
{
	u64 top = (u64)&tg_kstacks[i][TG_KSTACK_SIZE];
	u64 base = (u64)&tss[i], limit = sizeof(struct tss) - 1;
	tss[i].rsp[0] = top;
	tss[i].ist[0] = (u64)&tg_dfstacks[i][TG_DFSTACK_SIZE];
	tss[i].iomap = sizeof(struct tss);
	gdt_tss[i][0] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ULL << 40) |
	                (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
	gdt_tss[i][1] = base >> 32;
	tg_cpus[i].self = &tg_cpus[i];
	tg_cpus[i].index = i;
	tg_cpus[i].apic_id = cpu_apic[i];
	tg_cpus[i].kstack_top = top;
	tg_tasks[i].self = &tg_tasks[i];
	tg_tasks[i].cpu = i;
	tg_tasks[i].magic = TG_TASK_MAGIC;
}

static u64 xcr0_target;

static void fpu_probe(void)
{
	u32 r[4];
	cpuid(1, 0, r);
	if (!(r[2] & (1u << 26)))                          /* no XSAVE */
		return;
	cpuid(0xd, 0, r);
	u64 x = 0x3;                                       /* x87, SSE */
	if (r[0] & 0x4)
		x |= 0x4;                                  /* AVX */
	if ((x & 0x4) && (r[0] & 0xe0) == 0xe0)
		x |= 0xe0;                                 /* opmask, ZMM_Hi256, Hi16_ZMM */
	xcr0_target = x;
}

static void fpu_enable(void)
{
	u64 cr0, cr4;
	asm volatile("mov %%cr0, %0" : "=r"(cr0));
	cr0 |= (1u << 1) | (1u << 5);                      /* MP, NE */
	cr0 &= ~((1ULL << 2) | (1ULL << 3));               /* EM, TS */
	asm volatile("mov %0, %%cr0" : : "r"(cr0));
	asm volatile("mov %%cr4, %0" : "=r"(cr4));
	cr4 |= (1u << 9) | (1u << 10);                     /* OSFXSR, OSXMMEXCPT */
	if (xcr0_target)
		cr4 |= 1u << 18;                           /* OSXSAVE */
	asm volatile("mov %0, %%cr4" : : "r"(cr4));
	if (xcr0_target)
		asm volatile("xsetbv" : : "c"(0), "a"((u32)xcr0_target), "d"((u32)(xcr0_target >> 32)));
}

static void lapic_setup(void)
{
	lapic_write(LAPIC_TPR, 0);
	lapic_write(LAPIC_SVR, 0x100 | TG_VEC_SPUR);
	lapic_write(LAPIC_LVT_LINT0, 0x10000);             /* masked */
	lapic_write(LAPIC_LVT_LINT1, 0x10000);
	lapic_write(LAPIC_LVT_ERR, 0x10000);
	lapic_write(LAPIC_TIMER_DIV, TIMER_DIVIDE);
	lapic_write(LAPIC_LVT_TIMER, TG_VEC_TIMER | (1u << 17));  /* periodic */
	lapic_write(LAPIC_TIMER_ICR, TIMER_COUNT);
}

/* per-CPU part of the setup: runs on CPU i itself */
static void cpu_setup(u32 i)
{
	struct dtr d = { sizeof(idt) - 1, (u64)idt };
	asm volatile("lidt %0" : : "m"(d));
	asm volatile("ltr %w0" : : "r"(TG_SEL_TSS0 + 16 * i));
	wrmsr(MSR_GS_BASE, (u64)&tg_cpus[i]);
	wrmsr(MSR_KGS_BASE, (u64)&tg_cpus[i]);
	wrmsr(MSR_FS_BASE, (u64)&tg_tasks[i]);
	fpu_enable();
	lapic_setup();
}

static void __attribute__((noreturn)) enter_task(u32 i)
{
	enter_user((u64)user_main, (u64)&tg_ustacks[i][TG_USTACK_SIZE], i);
}

/* ------------------------------------------------------------------ */
/* interrupts, exceptions and the UD2 system-call gate */

struct frame {
	u64 r15, r14, r13, r12, r11, r10, r9, r8;
	u64 rbp, rdi, rsi, rdx, rcx, rbx, rax;
	u64 vector, error;
	u64 rip, cs, rflags, rsp, ss;
};

static void __attribute__((noreturn)) fail_exception(struct frame *f)
{
	u64 cr2;
	asm volatile("mov %%cr2, %0" : "=r"(cr2));
	if (!finish_claim())
		halt_forever();
	kputs("khyve-testguest: FAIL ");
	kputs(f->vector < 32 ? "exception " : "unexpected interrupt ");
	kput_dec(f->vector);
	kputs(" at ");
	kput_hex(f->rip);
	kputs(" (cpu ");
	kput_dec(this_cpu()->index);
	kputs(", cs ");
	kput_hex(f->cs);
	kputs(", error ");
	kput_hex(f->error);
	kputs(", cr2 ");
	kput_hex(cr2);
	kputs(")\n");
	finish_exit(1);
}

static void syscall(struct frame *f)
{
	switch (f->rax) {
	case TG_SYS_NOP:
		f->rax = 0;
		break;
	case TG_SYS_WRITE:
		lock(&serial_lock);
		kwrite((const char *)f->rdi, f->rsi);
		unlock(&serial_lock);
		f->rax = f->rsi;
		break;
	case TG_SYS_FINISH:
		if (!finish_claim())
			halt_forever();
		kputs("khyve-testguest: ");
		kwrite((const char *)f->rsi, f->rdx);
		serial_putc('\n');
		finish_exit((u32)f->rdi);
	case TG_SYS_HALT:
		halt_forever();
	case TG_SYS_TICKS:
		f->rax = this_cpu()->ticks;
		break;
	case TG_SYS_CPU:
		f->rax = this_cpu()->index;
		break;
	case TG_SYS_PCICFG:
		/* the address latch is shared: one CPU at a time */
		lock(&pci_lock);
		outl(0xcf8, 0x80000000u | ((u32)f->rdi & 0x00fffffcu));
		if (f->rdx)
			outl(0xcfc, (u32)f->rsi);
		f->rax = inl(0xcfc);
		unlock(&pci_lock);
		break;
	case TG_SYS_BADSTACK:
		asm volatile("movq %0, %%rsp\n\tpushq $0" : : "r"(0x7000000000ULL) : "memory");
		__builtin_unreachable();
	default:
		kfail("unknown system call", f->rax);
	}
}

void isr_dispatch(struct frame *f)
{
	u64 v = f->vector;
	if (v == TG_VEC_TIMER) {
		this_cpu()->ticks++;
		lapic_write(LAPIC_EOI, 0);
		return;
	}
	if (v == 6 && (f->cs & 3) == 3 && *(const u16 *)f->rip == 0x0b0f) {
		syscall(f);
		f->rip += 2;
		return;
	}
	if (v == TG_VEC_SPUR)
		return;
	if (v >= TG_VEC_PIC && v < TG_VEC_PIC + 16) {      /* spurious 8259 IRQ */
		if (v >= TG_VEC_PIC + 8)
			outb(0xa0, 0x20);
		outb(0x20, 0x20);
		return;
	}
	fail_exception(f);
}

/* ------------------------------------------------------------------ */
/* boot */

static void pic_disable(void)
{
	/* remap the 8259s to 0x20-0x2f, then mask everything */
	outb(0x20, 0x11);
	outb(0xa0, 0x11);
	outb(0x21, TG_VEC_PIC);
	outb(0xa1, TG_VEC_PIC + 8);
	outb(0x21, 4);
	outb(0xa1, 2);
	outb(0x21, 1);
	outb(0xa1, 1);
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
}

/*
 * Busy-wait on the LAPIC timer's current count (62.5 MHz with KVM's 1 GHz
 * bus and divide 16): sub-tick delays without calibration or interrupts.
 */
static void lapic_delay_us(u64 us)
{
	u64 want = us * 125 / 2, done = 0;
	u32 prev = lapic_read(LAPIC_TIMER_CCR), still = 0;
	while (done < want) {
		u32 c = lapic_read(LAPIC_TIMER_CCR);
		done += c <= prev ? prev - c : prev + TIMER_COUNT - c;
		if (c == prev && ++still > 1000000)
			kfail("the LAPIC timer count does not move", ~0ULL);
		prev = c;
	}
}

static void ipi(u32 apic, u32 lo)
{
	lapic_write(LAPIC_ICR_HI, apic << 24);
	lapic_write(LAPIC_ICR_LO, lo);
	for (u32 i = 0; i < 1000 && (lapic_read(LAPIC_ICR_LO) & (1u << 12)); i++)
		asm volatile("pause");
}

static u64 trampoline_page(void)
{
	u64 n = (u64)(tramp_end - tramp_start);
	for (u64 p = 0x8000; p < 0x9f000; p += 0x1000) {
		int ram = 0;
		for (u32 i = 0; i < mmap_n; i++)
			if (mmap_ent[i].type == 1 && mmap_ent[i].base <= p &&
			    p + 0x1000 <= mmap_ent[i].base + mmap_ent[i].len)
				ram = 1;
		int busy = 0;
		for (u32 i = 1; i < resv_n; i++)           /* resv[0] is 0..1 MiB */
			if (p < resv[i].end && resv[i].start < p + 0x1000)
				busy = 1;
		if (ram && !busy) {
			memcpy((void *)p, tramp_start, n);
			return p;
		}
	}
	kfail("no free page below 1 MiB for the AP trampoline", ~0ULL);
}

/*
 * Start all APs at once: INIT, SIPI, a second SIPI to those not alive after
 * 10 ms (KVM needs none of the MP spec's waits; the spec's 10 ms after INIT
 * is shortened to 1 ms), then wait up to 10 s: real mode is emulated under
 * PVM.
 */
static void aps_start(void)
{
	if (ncpu < 2)
		return;
	u64 page = trampoline_page();
	u32 sipi = 0x4600 | (u32)(page >> 12);
	for (u32 i = 1; i < ncpu; i++)
		ap_apic_to_cpu[cpu_apic[i]] = (u8)(i + 1);
	for (u32 i = 1; i < ncpu; i++)
		ipi(cpu_apic[i], 0x4500);
	lapic_delay_us(1000);
	for (u32 i = 1; i < ncpu; i++)
		ipi(cpu_apic[i], sipi);
	for (u32 t = 0; t < 10000; t++) {
		u32 ready = 0;
		for (u32 i = 1; i < ncpu; i++)
			ready += tg_cpus[i].ready != 0;
		if (ready == ncpu - 1)
			return;
		if (t == 10)
			for (u32 i = 1; i < ncpu; i++)
				if (!tg_cpus[i].alive)
					ipi(cpu_apic[i], sipi);
		lapic_delay_us(1000);
	}
	for (u32 i = 1; i < ncpu; i++) {
		if (!tg_cpus[i].alive)
			kfail("AP did not start, apic id", cpu_apic[i]);
		if (!tg_cpus[i].ready)
			kfail("AP did not finish its setup, apic id", cpu_apic[i]);
	}
}

void ap_main(u64 i)
{
	__atomic_store_n(&tg_cpus[i].alive, 1, __ATOMIC_RELEASE);
	cpu_setup((u32)i);
	__atomic_store_n(&tg_cpus[i].ready, 1, __ATOMIC_RELEASE);
	enter_task((u32)i);
}

void kmain(u32 magic, u32 mbi)
{
	serial_init();
	if (magic != 0x2badb002)
		kfail("not started by a multiboot loader, eax", magic);
	multiboot_read(mbi);
	paging_setup();
	ncpu = kernel__cpus_discover(cpu_apic, lapic_read(LAPIC_ID) >> 24);
	kputs("khyve-testguest: booting, ");
	kput_dec(ncpu);
	kputs(ncpu == 1 ? " cpu\n" : " cpus\n");

	idt_build();
	for (u32 i = 0; i < ncpu; i++)
		tss_build(i);
	fpu_probe();
	tg_info.xcr0 = xcr0_target;
	pic_disable();
	wrmsr(MSR_APIC_BASE, rdmsr(MSR_APIC_BASE) | (1u << 11));
	cpu_setup(0);
	u64 khz = tsc_khz();
	aps_start();
	u64 cycles = rdtsc() - boot_tsc;

	kputs("khyve-testguest: ");
	kput_dec(ncpu);
	kputs(" cpus up (");
	kputs(tg_info.cpu_source == 1 ? "MP table" : tg_info.cpu_source == 2 ? "ACPI MADT" : "no table");
	kputs("), ram ");
	kput_dec(tg_info.ram_bytes >> 20);
	kputs(" MiB, window ");
	kput_dec(tg_info.win_size >> 20);
	kputs(" MiB, xcr0 ");
	kput_hex(tg_info.xcr0);
	kputs(", kernel boot ");
	if (khz) {
		kput_dec(cycles / khz);
		kputs(" ms\n");
	} else {
		kput_dec(cycles / 1000);
		kputs(" kcycles\n");
	}
	enter_task(0);
}
