/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest: interface between the ring-0 kernel and the ring-3 task.
 * Included by assembly (boot.S), ring-0 C and ring-3 C.
 */
#ifndef TG_ABI_H
#define TG_ABI_H

#define TG_MAXCPU      64
#define TG_KSTACK_SIZE 16384          /* ring-0 stack per CPU (TSS.RSP0) */
#define TG_USTACK_SIZE 65536          /* ring-3 stack per CPU */
#define TG_CMDLINE_MAX 4096

/* GDT selectors */
#define TG_SEL_KCODE   0x08
#define TG_SEL_KDATA   0x10
#define TG_SEL_KCODE32 0x18
#define TG_SEL_UDATA   0x23           /* 0x20 | RPL 3 */
#define TG_SEL_UCODE   0x2b           /* 0x28 | RPL 3 */
#define TG_SEL_TSS0    0x30           /* TSS of CPU i: 0x30 + 16*i */

/* Interrupt vectors */
#define TG_VEC_PIC     0x20           /* 0x20-0x2f: remapped (masked) 8259 */
#define TG_VEC_TIMER   0x40           /* LAPIC timer, every CPU */
#define TG_VEC_SPUR    0xff           /* LAPIC spurious */

/* Virtual address of the RAM window used by the "mem" workload */
#define TG_WIN_VA      0x8000000000ULL /* 512 GiB: PML4 slot 1 */
#define TG_WIN_MAX_PD  8               /* page directories: at most 16 GiB */

/*
 * System calls: ring 3 loads the number into RAX, arguments into RDI, RSI,
 * RDX and executes UD2 (0F 0B). The #UD handler performs the call, puts the
 * result into RAX and resumes after the UD2.
 */
#define TG_SYS_NOP     0   /* -> 0 */
#define TG_SYS_WRITE   1   /* (buf, len) -> len: bytes to COM1 */
#define TG_SYS_FINISH  2   /* (status, msg, len): prints "khyve-testguest: "
                              msg "\n", writes status to port 0xf4, stops.
                              Only the first FINISH on any CPU is honoured; a
                              later caller just stops. */
#define TG_SYS_HALT    3   /* stop this CPU (cli; hlt forever) */
#define TG_SYS_TICKS   4   /* -> this CPU's timer tick count */
#define TG_SYS_CPU     5   /* -> this CPU's index */
#define TG_SYS_PCICFG  6   /* (addr, value, write) -> the PCI configuration
                              dword at addr (bus/dev/fn/reg as written to
                              0xCF8, enable bit set by the kernel), written
                              first if write != 0; ring 3 cannot do port I/O
                              here, so this is its only ring-0 path */
#define TG_SYS_BADSTACK 7  /* tests only (fault=df): ring 0 moves RSP to an
                              unmapped address and pushes, so the #PF cannot
                              be delivered: a double fault (IST 1) */

#ifndef __ASSEMBLER__
#include <stdint.h>

/* Per-CPU data; GS base (kernel and user) points at it. User-readable. */
struct tg_cpu {
	struct tg_cpu *self;           /* %gs:0  */
	uint64_t index;                /* %gs:8  */
	uint64_t apic_id;              /* %gs:16 */
	volatile uint64_t ticks;       /* %gs:24: LAPIC timer interrupts */
	uint64_t kstack_top;
	volatile uint64_t alive;       /* AP reached long mode */
	volatile uint64_t ready;       /* AP about to enter ring 3 */
	uint64_t pad;
} __attribute__((aligned(64)));

/* Per-task data; FS base of the ring-3 task points at it. */
struct tg_task {
	struct tg_task *self;          /* %fs:0 */
	uint64_t cpu;                  /* %fs:8 */
	uint64_t magic;                /* %fs:16: TG_TASK_MAGIC */
	uint64_t pad[5];
};
#define TG_TASK_MAGIC 0x6b73617474677431ULL

/* Boot information published by the kernel, read by ring 3. */
struct tg_info {
	uint64_t ncpu;
	uint64_t win_base;             /* = TG_WIN_VA */
	uint64_t win_size;             /* bytes of RAM mapped at win_base */
	uint64_t ram_bytes;            /* usable RAM in the memory map */
	uint64_t xcr0;                 /* value set with XSETBV (0: none) */
	uint64_t cpu_source;           /* 1 MP table, 2 ACPI MADT, 0 none */
	uint64_t ram_low_end;          /* end of the highest type-1 RAM range below 4 GiB */
	uint64_t ram_end;              /* end of the highest type-1 RAM range */
	uint64_t top_page_free;        /* the page below ram_low_end is not reserved
	                                  (image, info, modules; it may be in the window) */
	char cmdline[TG_CMDLINE_MAX];
};

extern struct tg_info tg_info;
extern struct tg_cpu tg_cpus[TG_MAXCPU];
extern struct tg_task tg_tasks[TG_MAXCPU];
#endif

#endif
