/*
 * Unit tests for the multiboot (v1) loader (src/arch/x86/multiboot.c).
 *
 * Every image is built in memory by the helpers in mbhelp.c: ELF32 and
 * ELF64 executables with chosen PT_LOAD segments and a multiboot header at
 * a chosen offset, and a.out-kludge images (header flag 16).  Image bytes
 * follow a pattern (pat()) so copied data can be told from zeroed bss and
 * from the 0xAA the guest memory is filled with before every load.
 *
 * Here: the header search, the a.out kludge, the info block, modules; the
 * ELF loading is in test_multiboot_elf.c.
 */
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "khyve/memmap.h"
#include "khyve/multiboot.h"
#include "khyve/util.h"

#include "mbhelp.h"

/* ------------------------------------------------------- header search */

static void test_header_at_offset_0(void **state)
{
	struct aout a = simple_aout(0, 0x400);

	(void)state;
	assert_loads(load(build_aout(&a)));
	assert_int_equal(boot.entry, KERNEL_BASE + 32);
	assert_int_equal(boot.load_start, KERNEL_BASE);
	assert_int_equal(boot.load_end, KERNEL_BASE + 0x400);
	check_loaded(KERNEL_BASE, 0, 0x400, 0x400);
}

static void test_header_at_offset_4(void **state)
{
	struct aout a = simple_aout(4, 0x400);

	(void)state;
	assert_loads(load(build_aout(&a)));
	assert_int_equal(boot.entry, KERNEL_BASE + 4 + 32);
	assert_int_equal(boot.load_start, KERNEL_BASE);
	assert_int_equal(boot.load_end, KERNEL_BASE + 0x400);
	check_loaded(KERNEL_BASE, 0, 0x400, 0x400);
}

/* The spec wants the 12-byte header wholly inside the first 8192 bytes:
 * 8180 is the last offset that qualifies, 8184 is too late. */
static void test_header_at_offset_8180(void **state)
{
	struct elf e = simple_elf(false);
	struct aout a = simple_aout(8180, 0x3000);

	(void)state;
	e.mb_off = 8180;
	assert_loads(load(build_elf(&e)));
	assert_int_equal(boot.entry, KERNEL_BASE + 0x10);
	e.is64 = true;
	assert_loads(load(build_elf(&e)));
	assert_int_equal(boot.entry, KERNEL_BASE + 0x10);
	assert_loads(load(build_aout(&a)));
	assert_int_equal(boot.entry, KERNEL_BASE + 8180 + 32);
	check_loaded(KERNEL_BASE, 0, 0x3000, 0x3000);
}

static void test_header_at_offset_8184_not_found(void **state)
{
	struct elf e = simple_elf(false);

	(void)state;
	e.mb_off = 8184;
	assert_fails(load(build_elf(&e)), -ENOEXEC, "multiboot header");
}

static void test_header_at_offset_8192_not_found(void **state)
{
	struct elf e = simple_elf(false);
	struct aout a = simple_aout(8192, 0x3000);

	(void)state;
	e.mb_off = 8192;
	assert_fails(load(build_elf(&e)), -ENOEXEC, "multiboot header");
	assert_fails(load(build_aout(&a)), -ENOEXEC, "multiboot header");
	/* nothing was loaded */
	check_untouched(KERNEL_BASE, 0x3000);
}

static void test_header_not_aligned(void **state)
{
	struct aout a = simple_aout(0, 0x400);

	(void)state;
	build_aout(&a);
	memmove(img + 2, img, 32);	/* header at offset 2: not on a 4-byte boundary */
	assert_fails(load(0x400), -ENOEXEC, "multiboot header");
}

static void test_header_cut_off_by_file_end(void **state)
{
	struct aout a = simple_aout(0x3f8, 0x400);

	(void)state;
	/* magic and flags in the file, checksum beyond its end */
	assert_fails(load(build_aout(&a)), -ENOEXEC, "multiboot header");
	assert_fails(load(0), -ENOEXEC, "multiboot header");
	assert_fails(load(11), -ENOEXEC, "multiboot header");
}

static void test_bad_checksum(void **state)
{
	struct elf e = simple_elf(false);
	size_t len = build_elf(&e);
	size_t off = ALIGN_UP(sizeof(Elf32_Ehdr) + sizeof(Elf32_Phdr), 4);
	uint32_t v;

	(void)state;
	assert_loads(load(len));
	memcpy(&v, img + off + 8, 4);
	v++;
	memcpy(img + off + 8, &v, 4);
	assert_fails(load(len), -ENOEXEC, "multiboot header");
	/* a checksum made for other flags */
	put_mb_header(off, MB_HF_MEMINFO);
	v = MB_HF_PAGE_ALIGN;
	memcpy(img + off + 4, &v, 4);
	assert_fails(load(len), -ENOEXEC, "multiboot header");
	/* the boot magic is not the header magic */
	v = MB_BOOT_MAGIC;
	put_mb_header(off, 0);
	memcpy(img + off, &v, 4);
	v = (uint32_t)-MB_BOOT_MAGIC;
	memcpy(img + off + 8, &v, 4);
	assert_fails(load(len), -ENOEXEC, "multiboot header");
}

static void test_unsupported_flags(void **state)
{
	static const uint32_t bad[] = { 0x8, 0x10, 0x100, 0x8000, 0xfff8, 0x0b };

	(void)state;
	for (unsigned int i = 0; i < ARRAY_SIZE(bad); i++) {
		struct elf e = simple_elf(false);

		e.mb_flags = bad[i];
		print_message("flags 0x%x\n", bad[i]);
		assert_fails(load(build_elf(&e)), -ENOEXEC, "unsupported");
		check_untouched(KERNEL_BASE, 0x1000);
	}
}

static void test_accepted_flags(void **state)
{
	static const uint32_t ok[] = {
		0, MB_HF_PAGE_ALIGN, MB_HF_MEMINFO, MB_HF_VIDEO,
		MB_HF_PAGE_ALIGN | MB_HF_MEMINFO | MB_HF_VIDEO,
		0x80000000u,	/* optional bits above 16 are ignored */
	};

	(void)state;
	for (unsigned int i = 0; i < ARRAY_SIZE(ok); i++) {
		struct elf e = simple_elf(i & 1);

		e.mb_flags = ok[i];
		print_message("flags 0x%x\n", ok[i]);
		assert_loads(load(build_elf(&e)));
		assert_int_equal(boot.entry, KERNEL_BASE + 0x10);
	}
	/* and with the a.out kludge */
	struct aout a = simple_aout(0, 0x400);
	a.extra_flags = MB_HF_VIDEO | MB_HF_MEMINFO | MB_HF_PAGE_ALIGN;
	assert_loads(load(build_aout(&a)));
	a.extra_flags = 0x8;
	assert_fails(load(build_aout(&a)), -ENOEXEC, "unsupported");
}

/* ----------------------------------------------------------- a.out kludge */

static void test_aout_addresses(void **state)
{
	struct aout a = {
		.hoff = 0x200, .header_addr = 0x101100, .load_addr = 0x101000,
		.load_end = 0x101800, .bss_end = 0x101F00, .entry = 0x101234, .len = 0x1000,
	};

	(void)state;
	assert_loads(load(build_aout(&a)));
	/* file offset = hoff - (header_addr - load_addr) = 0x100 */
	check_loaded(0x101000, 0x100, 0x800, 0xF00);
	check_untouched(0x101F00, 0x100);
	check_untouched(0x100000, 0x1000);
	assert_int_equal(boot.entry, 0x101234);
	assert_int_equal(boot.load_start, 0x101000);
	assert_int_equal(boot.load_end, 0x101F00);
	/* the header itself landed at header_addr */
	assert_memory_equal(g(0x101100, 32), img + 0x200, 32);
}

static void test_aout_load_end_zero(void **state)
{
	struct aout a = {
		.hoff = 0x40, .header_addr = 0x100040, .load_addr = 0x100000,
		.load_end = 0, .bss_end = 0, .entry = 0x100060, .len = 0x1234,
	};

	(void)state;
	/* load_end_addr 0: the whole file from load_addr's offset */
	assert_loads(load(build_aout(&a)));
	check_loaded(0x100000, 0, 0x1234, 0x1234);
	check_untouched(0x101234, 0x2000 - 0x1234);
	assert_int_equal(boot.load_end, 0x101234);
	/* with a file offset: header 0x40 into the file, but load_addr 0x20 before it */
	a.header_addr = 0x100020;
	assert_loads(load(build_aout(&a)));
	check_loaded(0x100000, 0x20, 0x1234 - 0x20, 0x1234 - 0x20);
	assert_int_equal(boot.load_end, 0x100000 + 0x1234 - 0x20);
	/* with bss */
	a.bss_end = 0x103000;
	assert_loads(load(build_aout(&a)));
	check_loaded(0x100000, 0x20, 0x1234 - 0x20, 0x3000);
	assert_int_equal(boot.load_end, 0x103000);
}

static void test_aout_bss(void **state)
{
	struct aout a = {
		.hoff = 0, .header_addr = 0x200000, .load_addr = 0x200000,
		.load_end = 0x200100, .bss_end = 0, .entry = 0x200020, .len = 0x800,
	};

	(void)state;
	/* bss_end_addr 0: no bss, nothing after load_end is written */
	assert_loads(load(build_aout(&a)));
	check_loaded(0x200000, 0, 0x100, 0x100);
	check_untouched(0x200100, 0xF00);
	assert_int_equal(boot.load_end, 0x200100);
	/* bss_end == load_end: still no bss */
	a.bss_end = 0x200100;
	assert_loads(load(build_aout(&a)));
	check_untouched(0x200100, 0xF00);
	/* a big bss is zeroed in full */
	a.bss_end = 0x280000;
	assert_loads(load(build_aout(&a)));
	check_loaded(0x200000, 0, 0x100, 0x80000);
	assert_int_equal(boot.load_end, 0x280000);
}

static void test_aout_inconsistent(void **state)
{
	struct aout base = {
		.hoff = 0x100, .header_addr = 0x100100, .load_addr = 0x100000,
		.load_end = 0x100800, .bss_end = 0x101000, .entry = 0x100000, .len = 0x1000,
	};
	struct aout a;

	(void)state;
	a = base;
	assert_loads(load(build_aout(&a)));
	/* load_addr above header_addr */
	a = base;
	a.load_addr = 0x100200;
	assert_fails(load(build_aout(&a)), -ENOEXEC, "load_addr");
	/* header_addr - load_addr larger than the header's file offset */
	a = base;
	a.load_addr = 0x100000 - 1;
	assert_fails(load(build_aout(&a)), -ENOEXEC, "load_addr");
	/* load_end below load_addr */
	a = base;
	a.load_end = 0xFFFFF;
	assert_fails(load(build_aout(&a)), -ENOEXEC, "load_end_addr");
	/* load_end needs more than the file has */
	a = base;
	a.load_end = 0x100000 + 0x1000 + 1;
	a.bss_end = 0;
	assert_fails(load(build_aout(&a)), -ENOEXEC, "truncated");
	a.load_end = 0x100000 + 0x1000;	/* exactly the file: fine */
	assert_loads(load(build_aout(&a)));
	/* bss_end below load_end */
	a = base;
	a.bss_end = 0x1007FF;
	assert_fails(load(build_aout(&a)), -ENOEXEC, "bss_end_addr");
	/* header cut off by the end of the file after its checksum */
	a = simple_aout(0x3F0, 0x400);
	assert_fails(load(build_aout(&a)), -ENOEXEC, "truncated");
	check_untouched(0x100000, 0x1000);
}

static void test_aout_placement_errors(void **state)
{
	struct aout a;

	(void)state;
	a = simple_aout(0, 0x1000);
	a.header_addr = a.load_addr = MEM_SIZE - 0x800;
	assert_fails(load(build_aout(&a)), -ENOSPC, "does not fit");
	a = simple_aout(0, 0x1000);
	a.header_addr = a.load_addr = 0x200000;
	a.load_end = 0x200800;
	a.bss_end = MEM_SIZE + 0x1000;
	assert_fails(load(build_aout(&a)), -ENOSPC, "does not fit");
	a = simple_aout(0, 0x1000);
	a.header_addr = a.load_addr = 0xF0000;
	assert_fails(load(build_aout(&a)), -ENOEXEC, "reserved");
	a = simple_aout(0, 0x1000);
	a.header_addr = a.load_addr = 0x9F000;
	assert_fails(load(build_aout(&a)), -ENOEXEC, "reserved");
	a.header_addr = a.load_addr = 0xFFFFF000;
	assert_fails(load(build_aout(&a)), -ENOSPC, "does not fit");
}

/* ------------------------------------------------------- the info block */

static void check_mmap_entry(const struct mb_mmap_entry *e, uint64_t addr, uint64_t len, uint32_t type)
{
	assert_int_equal(e->size, 20);
	assert_int_equal(e->addr, addr);
	assert_int_equal(e->len, len);
	assert_int_equal(e->type, type);
}

static void test_info_basic(void **state)
{
	static const char cmd[] = "/boot/kernel.elf console=ttyS0 x=1";
	struct elf e = simple_elf(false);
	struct mb_info i;

	(void)state;
	assert_loads(load_mods(build_elf(&e), cmd, NULL, 0));
	assert_int_equal(boot.info % 4096, 0);
	assert_true(boot.info >= boot.load_end);
	assert_int_equal(boot.info, ALIGN_UP(boot.load_end, 4096));
	i = read_info(&mem);
	assert_int_equal(i.flags, MB_IF_MEM | MB_IF_CMDLINE | MB_IF_MODS | MB_IF_MMAP | MB_IF_LOADER_NAME);
	assert_int_equal(i.mem_lower, 639);
	assert_int_equal(i.mem_upper, (MEM_SIZE - MiB) / 1024);
	assert_string_equal(gstr(&mem, i.cmdline), cmd);
	assert_string_equal(gstr(&mem, i.boot_loader_name), "khyve");
	assert_int_equal(i.mods_count, 0);
	/* fields the loader does not provide are zero, whatever RAM held */
	assert_int_equal(i.boot_device, 0);
	for (int k = 0; k < 4; k++)
		assert_int_equal(i.syms[k], 0);
	assert_int_equal(i.drives_length, 0);
	assert_int_equal(i.drives_addr, 0);
	assert_int_equal(i.config_table, 0);
	assert_int_equal(i.apm_table, 0);
	for (int k = 0; k < 6; k++)
		assert_int_equal(i.vbe[k], 0);

	/* memory map: 4 entries for 16 MiB */
	assert_int_equal(i.mmap_length, 4 * sizeof(struct mb_mmap_entry));
	const struct mb_mmap_entry *m = (const void *)g(i.mmap_addr, i.mmap_length);
	check_mmap_entry(&m[0], 0, 0x9FC00, MB_MMAP_AVAILABLE);
	check_mmap_entry(&m[1], 0x9FC00, 0x400, MB_MMAP_RESERVED);
	check_mmap_entry(&m[2], 0xF0000, 0x10000, MB_MMAP_RESERVED);
	check_mmap_entry(&m[3], 0x100000, MEM_SIZE - 0x100000, MB_MMAP_AVAILABLE);

	/* everything the info block points at is after the kernel and inside boot.end */
	const uint32_t ptrs[] = { i.mmap_addr, i.cmdline, i.boot_loader_name };
	for (unsigned int k = 0; k < ARRAY_SIZE(ptrs); k++) {
		assert_true(ptrs[k] >= boot.info + sizeof(struct mb_info));
		assert_true(ptrs[k] < boot.end);
	}
	assert_true(i.cmdline + sizeof(cmd) <= boot.end);
	assert_false(overlaps(i.mmap_addr, i.mmap_length, i.cmdline, sizeof(cmd)));
	assert_false(overlaps(i.mmap_addr, i.mmap_length, i.boot_loader_name, 6));
	assert_false(overlaps(i.cmdline, sizeof(cmd), i.boot_loader_name, 6));
	assert_int_equal(boot.end % 4096, 0);
	/* the kernel is intact */
	check_loaded(KERNEL_BASE, seg_offset(&e, 0), 0x300, 0x1000);
}

static void test_info_null_cmdline(void **state)
{
	struct elf e = simple_elf(true);
	struct mb_info i;

	(void)state;
	assert_loads(load_mods(build_elf(&e), NULL, NULL, 0));
	i = read_info(&mem);
	assert_true(i.flags & MB_IF_CMDLINE);
	assert_string_equal(gstr(&mem, i.cmdline), "");
	assert_string_equal(gstr(&mem, i.boot_loader_name), "khyve");
}

static void test_info_after_kernel(void **state)
{
	struct elf e = {
		.is64 = false, .entry = 0x100000, .nsegs = 2,
		.segs = {
			{ .vaddr = 0x100000, .paddr = 0x100000, .filesz = 0x100, .memsz = 0x100 },
			{ .vaddr = 0x300000, .paddr = 0x300000, .filesz = 0x100, .memsz = 0x45678 },
		},
	};
	struct mb_info i;

	(void)state;
	assert_loads(load(build_elf(&e)));
	assert_int_equal(boot.load_start, 0x100000);
	assert_int_equal(boot.load_end, 0x345678);
	assert_int_equal(boot.info, 0x346000);
	i = read_info(&mem);
	assert_true(i.mmap_addr >= 0x346000);
	assert_true(boot.end > boot.info);
	assert_int_equal(boot.end, 0x347000);
	check_loaded(0x300000, seg_offset(&e, 1), 0x100, 0x45678);
	check_untouched(0x345678, 0x346000 - 0x345678);
	check_untouched(boot.end, 0x1000);
	/* the info block between the segments' span end is not placed below it */
	assert_false(overlaps(boot.info, boot.end - boot.info, boot.load_start,
			      boot.load_end - boot.load_start));
}

static void test_info_does_not_fit(void **state)
{
	struct elf e = simple_elf(false);

	(void)state;
	e.segs[0].vaddr = e.segs[0].paddr = MEM_SIZE - 0x2000;
	e.segs[0].memsz = 0x1F80;	/* leaves 0x80 bytes: too few for the info block */
	e.entry = MEM_SIZE - 0x2000;
	assert_fails(load(build_elf(&e)), -ENOSPC, "boot information");
	/* with one page free, it fits */
	e.segs[0].memsz = 0x1000;
	assert_loads(load(build_elf(&e)));
	assert_int_equal(boot.info, MEM_SIZE - 0x1000);
	assert_int_equal(boot.end, MEM_SIZE);
}

/* The block placed after a kernel that ends at the start of the EBDA. */
static void test_info_avoids_reserved_area(void **state)
{
	struct elf e = {
		.is64 = false, .entry = 0x9E000, .nsegs = 1,
		.segs = { { .vaddr = 0x9E000, .paddr = 0x9E000, .filesz = 0x100, .memsz = 0x1C00 } },
	};
	struct mb_info i;

	(void)state;
	assert_loads(load(build_elf(&e)));
	i = read_info(&mem);
	print_message("info block at 0x%x-0x%llx\n", boot.info, (unsigned long long)boot.end);
	/* the memory map given to the guest says this range is not RAM */
	if (overlaps(boot.info, boot.end - boot.info, MEM_EBDA_START, MEM_BIOS_END - MEM_EBDA_START))
		fail_msg("boot information at 0x%x-0x%llx lies in the reserved area 0x9fc00-0x100000",
			 boot.info, (unsigned long long)boot.end);
	assert_string_equal(gstr(&mem, i.boot_loader_name), "khyve");
}

static void test_mmap_direct(void **state)
{
	struct mb_mmap_entry m[8];
	struct guest_mem l;

	(void)state;
	memset(m, 0x77, sizeof(m));
	assert_int_equal(multiboot__mmap(&mem, m, 8), 4);
	check_mmap_entry(&m[0], 0, 0x9FC00, MB_MMAP_AVAILABLE);
	check_mmap_entry(&m[3], 0x100000, MEM_SIZE - 0x100000, MB_MMAP_AVAILABLE);
	assert_int_equal(m[4].size, 0x77777777);	/* not written past the count */

	/* max limits the count */
	memset(m, 0x77, sizeof(m));
	assert_int_equal(multiboot__mmap(&mem, m, 2), 2);
	check_mmap_entry(&m[1], 0x9FC00, 0x400, MB_MMAP_RESERVED);
	assert_int_equal(m[2].size, 0x77777777);
	assert_int_equal(multiboot__mmap(&mem, m, 0), 0);

	/* exactly 3 GiB: no high entry */
	memmap__layout(&l, 3 * GiB);
	assert_int_equal(multiboot__mmap(&l, m, 8), 4);
	check_mmap_entry(&m[3], 0x100000, 3 * GiB - 0x100000, MB_MMAP_AVAILABLE);

	/* 4 GiB + 1 MiB: low region ends at the hole, the rest at 4 GiB */
	memmap__layout(&l, 4 * GiB + MiB);
	assert_int_equal(multiboot__mmap(&l, m, 8), 5);
	check_mmap_entry(&m[0], 0, 0x9FC00, MB_MMAP_AVAILABLE);
	check_mmap_entry(&m[1], 0x9FC00, 0x400, MB_MMAP_RESERVED);
	check_mmap_entry(&m[2], 0xF0000, 0x10000, MB_MMAP_RESERVED);
	check_mmap_entry(&m[3], 0x100000, 0xC0000000 - 0x100000, MB_MMAP_AVAILABLE);
	check_mmap_entry(&m[4], 4 * GiB, 1 * GiB + MiB, MB_MMAP_AVAILABLE);
	assert_int_equal(m[3].addr + m[3].len, 0xC0000000);

	/* 2 MiB, the smallest guest */
	memmap__layout(&l, 2 * MiB);
	assert_int_equal(multiboot__mmap(&l, m, 8), 4);
	check_mmap_entry(&m[3], 0x100000, MiB, MB_MMAP_AVAILABLE);
}

static void test_info_high_memory(void **state)
{
	struct guest_mem big;
	struct elf e = simple_elf(false);
	size_t len = build_elf(&e);
	struct mb_info i;

	(void)state;
	memmap__layout(&big, 4 * GiB + MiB);
	if (memmap__alloc(&big))
		skip();
	/* NORESERVE and untouched: only the pages the loader writes cost memory */
	int r = load_from(&big, img, len, "high", NULL, 0);
	if (r) {
		memmap__free(&big);
		fail_msg("load failed with %d: %s", r, load_err);
	}
	i = read_info(&big);
	assert_int_equal(i.mem_lower, 639);
	assert_int_equal(i.mem_upper, (3 * GiB - MiB) / 1024);
	assert_int_equal(i.mmap_length, 5 * sizeof(struct mb_mmap_entry));
	const struct mb_mmap_entry *m = (const void *)gp(&big, i.mmap_addr, i.mmap_length);
	check_mmap_entry(&m[3], 0x100000, 0xC0000000 - 0x100000, MB_MMAP_AVAILABLE);
	check_mmap_entry(&m[4], 4 * GiB, 1 * GiB + MiB, MB_MMAP_AVAILABLE);
	assert_string_equal(gstr(&big, i.cmdline), "high");
	memmap__free(&big);
}

/* ------------------------------------------------------------- modules */

static uint8_t mod0[5000], mod1[1], mod2[4096];

static void test_modules(void **state)
{
	struct elf e = simple_elf(false);
	const struct mb_module mods[] = {
		{ mod0, sizeof(mod0), "/boot/mod0 arg=1" },
		{ mod1, sizeof(mod1), "one" },
		{ mod2, sizeof(mod2), "" },
	};
	struct mb_info i;
	uint64_t prev_end = 0;
	uint32_t prev_str = 0;

	(void)state;
	for (size_t k = 0; k < sizeof(mod0); k++)
		mod0[k] = (uint8_t)(k * 13 + 1);
	mod1[0] = 0x42;
	for (size_t k = 0; k < sizeof(mod2); k++)
		mod2[k] = (uint8_t)(k * 5 + 9);

	assert_loads(load_mods(build_elf(&e), "kernel", mods, 3));
	i = read_info(&mem);
	assert_true(i.flags & MB_IF_MODS);
	assert_int_equal(i.mods_count, 3);
	assert_true(i.mods_addr >= boot.info + sizeof(struct mb_info));
	const struct mb_mod_entry *me = (const void *)g(i.mods_addr, 3 * sizeof(*me));
	assert_false(overlaps(i.mods_addr, 3 * sizeof(*me), i.mmap_addr, i.mmap_length));

	for (unsigned int k = 0; k < 3; k++) {
		print_message("module %u at 0x%x-0x%x\n", k, me[k].mod_start, me[k].mod_end);
		assert_int_equal(me[k].mod_start % 4096, 0);
		assert_int_equal(me[k].mod_end, me[k].mod_start + mods[k].len);
		assert_true(me[k].mod_start >= prev_end);
		assert_memory_equal(g(me[k].mod_start, mods[k].len), mods[k].data, mods[k].len);
		assert_string_equal(gstr(&mem, me[k].string), mods[k].string);
		assert_int_equal(me[k].reserved, 0);
		/* strings in order, after the command line */
		assert_true(me[k].string > prev_str);
		assert_true(me[k].string > i.cmdline);
		prev_str = me[k].string;
		prev_end = me[k].mod_end;
		/* modules are after the kernel and the info block */
		assert_true(me[k].mod_start >= boot.load_end);
		assert_true(me[k].mod_start > i.boot_loader_name);
		assert_true(me[k].mod_start > me[k].string);
		assert_true(me[k].mod_start >= i.mods_addr + 3 * sizeof(*me));
	}
	/* tight packing: each next module on the page after the previous */
	assert_int_equal(me[1].mod_start, ALIGN_UP((uint64_t)me[0].mod_end, 4096));
	assert_int_equal(me[2].mod_start, ALIGN_UP((uint64_t)me[1].mod_end, 4096));
	assert_int_equal(boot.end, ALIGN_UP((uint64_t)me[2].mod_end, 4096));
	assert_string_equal(gstr(&mem, i.cmdline), "kernel");
	check_loaded(KERNEL_BASE, seg_offset(&e, 0), 0x300, 0x1000);
}

static void test_module_does_not_fit(void **state)
{
	static uint8_t small[100];
	struct elf e = simple_elf(false);
	size_t len = build_elf(&e);
	/* module data of its own: the loader copies it into guest memory */
	uint8_t *big = calloc(1, MEM_SIZE);
	struct mb_module mods[2] = {
		{ small, sizeof(small), "small.bin" },
		{ big, MEM_SIZE - 2 * MiB, "big.img x=1" },
	};

	(void)state;
	/* 14 MiB fits after a kernel at 1 MiB in 16 MiB */
	assert_loads(load_mods(len, "", mods, 2));
	/* one page more does not */
	mods[1].len = MEM_SIZE - 2 * MiB + 0x100000;
	assert_fails(load_mods(len, "", mods, 2), -ENOSPC, "big.img x=1");
	assert_true(strstr(load_err, "does not fit") != NULL);
	/* the first module cannot fit at all */
	mods[0] = mods[1];
	mods[0].string = "first";
	assert_fails(load_mods(len, "", mods, 1), -ENOSPC, "first");
	free(big);
}

/* A low kernel with a large module: the module must skip the BIOS area. */
static void test_modules_avoid_reserved_area(void **state)
{
	static uint8_t big[MiB];
	struct aout a = simple_aout(0, 0x1000);
	struct mb_module mod = { big, sizeof(big), "ramdisk" };
	struct mb_info i;

	(void)state;
	memset(big, 0x3c, sizeof(big));
	a.header_addr = a.load_addr = 0x10000;
	assert_loads(load_mods(build_aout(&a), "", &mod, 1));
	i = read_info(&mem);
	const struct mb_mod_entry *me = (const void *)g(i.mods_addr, sizeof(*me));
	print_message("module at 0x%x-0x%x\n", me->mod_start, me->mod_end);
	assert_memory_equal(g(me->mod_start, sizeof(big)), big, sizeof(big));
	if (overlaps(me->mod_start, me->mod_end - me->mod_start, MEM_EBDA_START,
		     MEM_BIOS_END - MEM_EBDA_START))
		fail_msg("module at 0x%x-0x%x overlaps the reserved area 0x9fc00-0x100000 "
			 "(where the MP table is written)", me->mod_start, me->mod_end);
}

/* ---------------------------------------------------------------- misc */

static void test_error_buffer(void **state)
{
	struct elf e = simple_elf(false);
	size_t len = build_elf(&e);
	char small[8];

	(void)state;
	patch_ehdr(false, E_MACHINE, EM_ARM);
	memset(mem.base, FILL, mem.size);
	assert_int_equal(multiboot__load(&mem, img, len, "", NULL, 0, &boot, NULL, 0), -ENOEXEC);
	memset(small, 'x', sizeof(small));
	assert_int_equal(multiboot__load(&mem, img, len, "", NULL, 0, &boot, small, sizeof(small)),
			 -ENOEXEC);
	assert_int_equal(strlen(small), sizeof(small) - 1);
}


int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_at_offset_0),
		cmocka_unit_test(test_header_at_offset_4),
		cmocka_unit_test(test_header_at_offset_8180),
		cmocka_unit_test(test_header_at_offset_8184_not_found),
		cmocka_unit_test(test_header_at_offset_8192_not_found),
		cmocka_unit_test(test_header_not_aligned),
		cmocka_unit_test(test_header_cut_off_by_file_end),
		cmocka_unit_test(test_bad_checksum),
		cmocka_unit_test(test_unsupported_flags),
		cmocka_unit_test(test_accepted_flags),
		cmocka_unit_test(test_aout_addresses),
		cmocka_unit_test(test_aout_load_end_zero),
		cmocka_unit_test(test_aout_bss),
		cmocka_unit_test(test_aout_inconsistent),
		cmocka_unit_test(test_aout_placement_errors),
		cmocka_unit_test(test_info_basic),
		cmocka_unit_test(test_info_null_cmdline),
		cmocka_unit_test(test_info_after_kernel),
		cmocka_unit_test(test_info_does_not_fit),
		cmocka_unit_test(test_info_avoids_reserved_area),
		cmocka_unit_test(test_mmap_direct),
		cmocka_unit_test(test_info_high_memory),
		cmocka_unit_test(test_modules),
		cmocka_unit_test(test_module_does_not_fit),
		cmocka_unit_test(test_modules_avoid_reserved_area),
		cmocka_unit_test(test_error_buffer),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
