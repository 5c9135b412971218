/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest: multiboot v1 entry (32-bit), switch to long mode,
 * AP trampoline (real mode -> long mode), interrupt stubs, ring-3 entry.
 * Linked at 1 MiB, physical = virtual.
 */
#include "abi.h"

#define MB_MAGIC  0x1BADB002
#define MB_FLAGS  0x00000003            /* page-aligned modules, memory info */

#define PTE_P     0x001
#define PTE_W     0x002
#define PTE_U     0x004
#define PTE_PS    0x080
#define MSR_EFER  0xC0000080
#define PDE_2M    (PTE_P | PTE_W | PTE_U | PTE_PS)
#define PTE_UC    0x018                  /* PCD | PWT */

/* PAE, CR3, EFER.LME, CR0.PG (no stack needed): BSP and APs */
.macro ENTER_LONG
	movl %cr4, %eax
	orl $0x20, %eax
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $MSR_EFER, %ecx
	rdmsr
	orl $0x100, %eax
	wrmsr
	movl %cr0, %eax
	orl $0x80000001, %eax
	movl %eax, %cr0
.endm

	.section .multiboot, "a"
	.align 4
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

/* ------------------------------------------------------------------ */
	.section .text.boot, "ax"
	.code32
	.globl _start32
_start32:
	cli
	cld
	movl %eax, mb_magic
	movl %ebx, mb_info
	rdtsc
	movl %eax, boot_tsc
	movl %edx, boot_tsc + 4
	movl $(tg_kstacks + TG_KSTACK_SIZE), %esp

	/* page tables are static (see .data below): nothing to build */
	ENTER_LONG
	lgdt gdt_ptr
	ljmp $TG_SEL_KCODE, $start64

	.code64
start64:
	movw $TG_SEL_KDATA, %ax
	movw %ax, %ss
	xorl %eax, %eax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %fs
	movw %ax, %gs
	movq $(tg_kstacks + TG_KSTACK_SIZE), %rsp
	movl mb_magic(%rip), %edi
	movl mb_info(%rip), %esi
	call kmain
2:	cli
	hlt
	jmp 2b

/* ------------------------------------------------------------------ */
/*
 * AP trampoline: copied to a free page P below 1 MiB; the SIPI vector is
 * P >> 12, so it starts in real mode with CS = P >> 4, IP = 0. Position
 * independent: the GDT pointer is read CS-relative, the jump goes to the
 * kernel image. APs start in parallel: no stack until each has found its
 * own from its APIC ID.
 */
	.code16
	.globl tramp_start, tramp_end
tramp_start:
	cli
	lgdtl %cs:(tramp_gdtp - tramp_start)
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	ljmpl $TG_SEL_KCODE32, $ap_entry32
	.align 8
tramp_gdtp:
	.word gdt_end - gdt - 1
	.long gdt
tramp_end:

	.code32
ap_entry32:
	movw $TG_SEL_KDATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	ENTER_LONG
	ljmp $TG_SEL_KCODE, $ap_entry64

	.code64
ap_entry64:
	movw $TG_SEL_KDATA, %ax
	movw %ax, %ss
	xorl %eax, %eax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %fs
	movw %ax, %gs
	movl $0xfee00020, %eax          /* LAPIC ID register */
	movl (%rax), %eax
	shrl $24, %eax
	movzbl ap_apic_to_cpu(%rax), %edi  /* CPU index + 1, 0: not ours */
	testl %edi, %edi
	jz 3f
	movl %edi, %esp
	shlq $14, %rsp                  /* TG_KSTACK_SIZE */
	addq $tg_kstacks, %rsp
	decl %edi
	call ap_main
3:	cli
	hlt
	jmp 3b

/* ------------------------------------------------------------------ */
/* Interrupt stubs: 16 bytes each, vector v at isr_stubs + 16*v. */
	.align 16
	.globl isr_stubs
isr_stubs:
	.set vec, 0
	.rept 256
	.align 16
	.if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
	.else
	pushq $0
	.endif
	pushq $vec
	jmp isr_common
	.set vec, vec + 1
	.endr

/* Saves the general-purpose registers only: vector state is never touched. */
isr_common:
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	cld
	movq %rsp, %rdi
	call isr_dispatch
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rbp
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rbx
	popq %rax
	addq $16, %rsp
	iretq

/*
 * void enter_user(uint64_t rip, uint64_t rsp, uint64_t arg) -- no return.
 * rsp must be 16-byte aligned; the task starts as if called (rsp - 8).
 */
	.globl enter_user
enter_user:
	subq $8, %rsi
	pushq $TG_SEL_UDATA
	pushq %rsi
	pushq $0x202
	pushq $TG_SEL_UCODE
	pushq %rdi
	movq %rdx, %rdi
	xorl %eax, %eax
	xorl %ebx, %ebx
	xorl %ecx, %ecx
	xorl %edx, %edx
	xorl %esi, %esi
	xorl %ebp, %ebp
	iretq

/* ------------------------------------------------------------------ */
	.section .data
	.align 16
	.globl gdt, gdt_tss, gdt_end, gdt_ptr
gdt:
	.quad 0
	.quad 0x00AF9A000000FFFF        /* 0x08 kernel code 64 */
	.quad 0x00CF92000000FFFF        /* 0x10 kernel data */
	.quad 0x00CF9A000000FFFF        /* 0x18 kernel code 32 */
	.quad 0x00CFF2000000FFFF        /* 0x20 user data */
	.quad 0x00AFFA000000FFFF        /* 0x28 user code 64 */
gdt_tss:
	.skip 16 * TG_MAXCPU            /* 0x30 + 16*i: TSS of CPU i */
gdt_end:
	.align 8
gdt_ptr:
	.word gdt_end - gdt - 1
	.quad gdt

	.globl mb_magic, mb_info, boot_tsc
	.align 8
boot_tsc: .quad 0
mb_magic: .long 0
mb_info:  .long 0

/*
 * Static page tables: identity map of 0..4 GiB with 2 MiB user-accessible
 * pages (3..4 GiB, the PCI hole with the LAPIC and IOAPIC, uncached); RAM above 4 GiB and the RAM
 * window are added by the kernel in the zeroed tables in .bss.
 */
	.align 4096
	.globl pml4, pdpt, pd_low
pml4:
	.quad pdpt + 7
	.quad 0                         /* slot 1: RAM window, set by kmain */
	.fill 510, 8, 0
pdpt:
	.quad pd_low + 0x0000 + 7
	.quad pd_low + 0x1000 + 7
	.quad pd_low + 0x2000 + 7
	.quad pd_low + 0x3000 + 7
	.fill 508, 8, 0
pd_low:
	.set blk, 0
	.rept 2048
	.if blk >= (0xc0000000 >> 21)          /* PCI BARs, IOAPIC, LAPIC: uncached */
	.quad (blk << 21) | PDE_2M | PTE_UC
	.else
	.quad (blk << 21) | PDE_2M
	.endif
	.set blk, blk + 1
	.endr

	.section .bss
	.align 4096
	.globl pd_high, pdpt_win, pd_win
pd_high:  .skip 4096 * 60               /* identity map 4..64 GiB */
pdpt_win: .skip 4096
pd_win:   .skip 4096 * TG_WIN_MAX_PD    /* RAM window at TG_WIN_VA */

	.section .note.GNU-stack, "", @progbits
