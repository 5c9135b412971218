/*
 * Unit tests for the multiboot (v1) loader (src/arch/x86/multiboot.c), the
 * ELF part: ELF32 and ELF64 executables built by mbhelp.c, their segments,
 * entry points and the headers the loader must refuse (see
 * test_multiboot.c).
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

/* Patch program header fields after build_elf. */
enum pf { P_OFFSET, P_FILESZ, P_MEMSZ, P_PADDR };

static void patch_phdr(bool is64, unsigned int i, enum pf f, uint64_t v)
{
	size_t o = ehdr_size(is64) + i * phdr_size(is64);

	if (is64) {
		Elf64_Phdr p;

		memcpy(&p, img + o, sizeof(p));
		switch (f) {
		case P_OFFSET: p.p_offset = v; break;
		case P_FILESZ: p.p_filesz = v; break;
		case P_MEMSZ: p.p_memsz = v; break;
		case P_PADDR: p.p_paddr = v; break;
		}
		memcpy(img + o, &p, sizeof(p));
	} else {
		Elf32_Phdr p;

		memcpy(&p, img + o, sizeof(p));
		switch (f) {
		case P_OFFSET: p.p_offset = (uint32_t)v; break;
		case P_FILESZ: p.p_filesz = (uint32_t)v; break;
		case P_MEMSZ: p.p_memsz = (uint32_t)v; break;
		case P_PADDR: p.p_paddr = (uint32_t)v; break;
		}
		memcpy(img + o, &p, sizeof(p));
	}
}

/* ------------------------------------------------------------------- ELF */

static void check_two_segments(bool is64)
{
	struct elf e = {
		.is64 = is64, .entry = 0x200080, .nsegs = 4,
		.segs = {
			{ .vaddr = 0x100000, .paddr = 0x100000, .filesz = 0x234, .memsz = 0x1000 },
			{ .type = PT_NOTE, .paddr = 0x9fc00, .filesz = 0x10, .memsz = 0x10 },
			{ .vaddr = 0x200000, .paddr = 0x200000, .filesz = 0x100, .memsz = 0x1800 },
			{ .vaddr = 0x300000, .paddr = 0x300000, .filesz = 0, .memsz = 0 },
		},
	};
	size_t len = build_elf(&e);

	assert_loads(load(len));
	check_loaded(0x100000, seg_offset(&e, 0), 0x234, 0x1000);
	check_loaded(0x200000, seg_offset(&e, 2), 0x100, 0x1800);
	assert_int_not_equal(g(0x100000, 1)[0], 0);	/* real data, not zeros */
	/* nothing outside the segments; the note was not loaded */
	check_untouched(0xff000, 0x1000);
	check_untouched(0x101000, 0x200000 - 0x101000);
	check_untouched(0x201800, 0x800);		/* rest of the last page */
	check_untouched(0x9f000, 0x1000);
	check_untouched(0x300000, 0x1000);
	assert_int_equal(boot.entry, 0x200080);
	assert_int_equal(boot.load_start, 0x100000);
	assert_int_equal(boot.load_end, 0x201800);
}

static void test_elf32_segments(void **state)
{
	(void)state;
	check_two_segments(false);
}

static void test_elf64_segments(void **state)
{
	(void)state;
	check_two_segments(true);
}

static void test_elf32_higher_half(void **state)
{
	struct elf e = {
		.is64 = false, .entry = 0xC0100020, .nsegs = 2,
		.segs = {
			{ .vaddr = 0xC0100000, .paddr = 0x100000, .filesz = 0x800, .memsz = 0x2000 },
			{ .vaddr = 0xC0200000, .paddr = 0x200000, .filesz = 0x40, .memsz = 0x40 },
		},
	};

	(void)state;
	assert_loads(load(build_elf(&e)));
	assert_int_equal(boot.entry, 0x100020);
	check_loaded(0x100000, seg_offset(&e, 0), 0x800, 0x2000);
	check_loaded(0x200000, seg_offset(&e, 1), 0x40, 0x40);
	assert_int_equal(boot.load_start, 0x100000);
	assert_int_equal(boot.load_end, 0x200040);
	/* entry in the second segment's range */
	e.entry = 0xC0200004;
	assert_loads(load(build_elf(&e)));
	assert_int_equal(boot.entry, 0x200004);
	/* entry in the bss of the first segment still counts as inside */
	e.entry = 0xC0101FFF;
	assert_loads(load(build_elf(&e)));
	assert_int_equal(boot.entry, 0x101FFF);
}

static void test_elf64_higher_half(void **state)
{
	struct elf e = {
		.is64 = true, .entry = 0x100040, .nsegs = 2,
		.segs = {
			{ .vaddr = 0x100000, .paddr = 0x100000, .filesz = 0x100, .memsz = 0x100 },
			{ .vaddr = 0xFFFFFFFF80200000ULL, .paddr = 0x200000, .filesz = 0x300, .memsz = 0x1000 },
		},
	};

	(void)state;
	assert_loads(load(build_elf(&e)));
	assert_int_equal(boot.entry, 0x100040);
	check_loaded(0x200000, seg_offset(&e, 1), 0x300, 0x1000);
	e.entry = 0xFFFFFFFF80200010ULL;
	assert_loads(load(build_elf(&e)));
	assert_int_equal(boot.entry, 0x200010);
}

/*
 * The entry point is translated with the segment whose *virtual* range holds
 * e_entry.  A later segment whose virtual range happens to hold the already
 * translated (physical) address must not translate it a second time.
 */
static void test_elf_entry_translated_once(void **state)
{
	struct elf e = {
		.is64 = false, .entry = 0xC0100020, .nsegs = 2,
		.segs = {
			{ .vaddr = 0xC0100000, .paddr = 0x100000, .filesz = 0x100, .memsz = 0x1000 },
			{ .vaddr = 0x100000, .paddr = 0x200000, .filesz = 0x100, .memsz = 0x1000 },
		},
	};

	(void)state;
	assert_loads(load(build_elf(&e)));
	assert_int_equal(boot.entry, 0x100020);
	/* the same with the program headers in the other order */
	struct seg t = e.segs[0];
	e.segs[0] = e.segs[1];
	e.segs[1] = t;
	assert_loads(load(build_elf(&e)));
	assert_int_equal(boot.entry, 0x100020);
}

static void test_elf_entry_outside_segments(void **state)
{
	static const uint64_t bad[] = { 0x300000, 0x101000, 0xfffff, 0 };

	(void)state;
	for (unsigned int i = 0; i < ARRAY_SIZE(bad); i++) {
		struct elf e = simple_elf(i & 1);

		e.entry = bad[i];
		assert_fails(load(build_elf(&e)), -ENOEXEC, "entry");
		check_untouched(KERNEL_BASE, 0x1000);
	}
	/* the last byte of memsz is inside */
	struct elf e = simple_elf(false);
	e.entry = KERNEL_BASE + 0xfff;
	assert_loads(load(build_elf(&e)));
	assert_int_equal(boot.entry, KERNEL_BASE + 0xfff);
	/* a 64-bit entry that translates above 4 GiB is refused */
	e = simple_elf(true);
	e.entry = 0xFFFFFFFF80100000ULL;	/* no segment at that vaddr */
	assert_fails(load(build_elf(&e)), -ENOEXEC, "entry");
}

static void test_elf_wrong_machine(void **state)
{
	struct elf e32 = simple_elf(false), e64 = simple_elf(true);
	size_t len;

	(void)state;
	len = build_elf(&e32);
	patch_ehdr(false, E_MACHINE, EM_X86_64);
	assert_fails(load(len), -ENOEXEC, "e_machine");
	patch_ehdr(false, E_MACHINE, EM_ARM);
	assert_fails(load(len), -ENOEXEC, "e_machine");
	len = build_elf(&e64);
	patch_ehdr(true, E_MACHINE, EM_386);
	assert_fails(load(len), -ENOEXEC, "e_machine");
	patch_ehdr(true, E_MACHINE, EM_AARCH64);
	assert_fails(load(len), -ENOEXEC, "e_machine");
	check_untouched(KERNEL_BASE, 0x1000);
}

static void test_elf_big_endian(void **state)
{
	struct elf e = simple_elf(false);
	size_t len = build_elf(&e);

	(void)state;
	img[EI_DATA] = ELFDATA2MSB;
	assert_fails(load(len), -ENOEXEC, "little-endian");
	img[EI_DATA] = ELFDATANONE;
	assert_fails(load(len), -ENOEXEC, "little-endian");
	e.is64 = true;
	len = build_elf(&e);
	img[EI_DATA] = ELFDATA2MSB;
	assert_fails(load(len), -ENOEXEC, "little-endian");
}

static void test_elf_bad_class(void **state)
{
	struct elf e = simple_elf(false);
	size_t len = build_elf(&e);

	(void)state;
	img[EI_CLASS] = ELFCLASSNONE;
	assert_fails(load(len), -ENOEXEC, "class");
	img[EI_CLASS] = 3;
	assert_fails(load(len), -ENOEXEC, "class");
	/* not ELF at all, and no a.out kludge */
	img[0] = 0x7e;
	assert_fails(load(len), -ENOEXEC, "not an ELF");
}

static void test_elf_not_exec(void **state)
{
	static const uint16_t types[] = { ET_DYN, ET_REL, ET_CORE, ET_NONE };

	(void)state;
	for (unsigned int i = 0; i < ARRAY_SIZE(types); i++) {
		struct elf e = simple_elf(i & 1);
		size_t len = build_elf(&e);

		patch_ehdr(e.is64, E_TYPE, types[i]);
		assert_fails(load(len), -ENOEXEC, "not an executable");
	}
}

static void test_elf_no_program_headers(void **state)
{
	struct elf e = simple_elf(false);
	size_t len = build_elf(&e);

	(void)state;
	patch_ehdr(false, E_PHNUM, 0);
	assert_fails(load(len), -ENOEXEC, "no program headers");
	e.is64 = true;
	len = build_elf(&e);
	patch_ehdr(true, E_PHNUM, 0);
	assert_fails(load(len), -ENOEXEC, "no program headers");
	/* headers, but nothing loadable */
	e.segs[0].type = PT_NOTE;
	assert_fails(load(build_elf(&e)), -ENOEXEC, "no loadable segment");
	e.segs[0].type = 0;
	e.segs[0].filesz = 0;
	e.segs[0].memsz = 0;
	assert_fails(load(build_elf(&e)), -ENOEXEC, "no loadable segment");
}

static void test_elf_truncated_program_headers(void **state)
{
	(void)state;
	for (int is64 = 0; is64 < 2; is64++) {
		struct elf e = {
			.is64 = is64, .entry = 0x100000, .nsegs = 2,
			.segs = {
				{ .vaddr = 0x100000, .paddr = 0x100000, .filesz = 0x100, .memsz = 0x100 },
				{ .vaddr = 0x200000, .paddr = 0x200000, .filesz = 0x100, .memsz = 0x100 },
			},
		};
		size_t len = build_elf(&e), phsz = phdr_size(is64);
		size_t newoff = len - 2 * phsz + 8;	/* the second one 8 bytes short */

		memmove(img + newoff, img + ehdr_size(is64), 2 * phsz - 8);
		patch_ehdr(is64, E_PHOFF, newoff);
		assert_fails(load(len), -ENOEXEC, "program header 1 is truncated");
		check_untouched(0x100000, 0x100);	/* validated before copying */

		len = build_elf(&e);
		patch_ehdr(is64, E_PHNUM, 0xffff);
		assert_fails(load(len), -ENOEXEC, "truncated");
		len = build_elf(&e);
		patch_ehdr(is64, E_PHOFF, len);
		assert_fails(load(len), -ENOEXEC, "program header 0 is truncated");
		len = build_elf(&e);
		patch_ehdr(is64, E_PHOFF, 0xfffffff0u);
		assert_fails(load(len), -ENOEXEC, "truncated");
		len = build_elf(&e);
		patch_ehdr(is64, E_PHENTSIZE, phsz - 1);
		assert_fails(load(len), -ENOEXEC, "truncated");
	}
	/* ELF64 file shorter than its 64-byte header */
	struct elf e = simple_elf(true);
	build_elf(&e);
	put_mb_header(40, 0);	/* over e_shoff and e_flags */
	assert_fails(load(60), -ENOEXEC, "ELF header is truncated");
	/* ELF32 file shorter than its 52-byte header */
	e = simple_elf(false);
	build_elf(&e);
	put_mb_header(32, 0);
	assert_fails(load(48), -ENOEXEC, "not an ELF");
}

/*
 * e_phoff is a 64-bit value from the file.  Near UINT64_MAX, phoff plus the
 * header size wraps around and must still be refused, not read from memory
 * in front of the image.  The 56 bytes before the image here hold a valid
 * PT_LOAD header, so reading them would load a kernel.
 */
static void test_elf64_phoff_wraps(void **state)
{
	static uint8_t buf[64 + IMG_CAP] __attribute__((aligned(16)));
	struct elf e = simple_elf(true);
	size_t len = build_elf(&e);
	Elf64_Phdr ph = {
		.p_type = PT_LOAD, .p_offset = 0, .p_vaddr = KERNEL_BASE, .p_paddr = KERNEL_BASE,
		.p_filesz = 0x40, .p_memsz = 0x1000,
	};

	(void)state;
	patch_ehdr(true, E_PHOFF, (uint64_t)0 - sizeof(Elf64_Phdr));
	memcpy(buf + 64, img, len);
	memcpy(buf + 64 - sizeof(ph), &ph, sizeof(ph));
	memset(mem.base, FILL, mem.size);
	assert_fails(load_from(&mem, buf + 64, len, "", NULL, 0), -ENOEXEC, "truncated");
	check_untouched(KERNEL_BASE, 0x1000);
}

static void test_elf_segment_beyond_file(void **state)
{
	(void)state;
	for (int is64 = 0; is64 < 2; is64++) {
		struct elf e = simple_elf(is64);
		size_t len = build_elf(&e);
		uint64_t off = seg_offset(&e, 0);

		assert_loads(load(len));
		/* data one byte longer than the file */
		patch_phdr(is64, 0, P_FILESZ, len - off + 1);
		assert_fails(load(len), -ENOEXEC, "segment 0 is truncated");
		/* offset past the end */
		len = build_elf(&e);
		patch_phdr(is64, 0, P_OFFSET, len + 16);
		assert_fails(load(len), -ENOEXEC, "truncated");
		/* offset that would wrap */
		len = build_elf(&e);
		patch_phdr(is64, 0, P_OFFSET, is64 ? UINT64_MAX - 0x10 : UINT32_MAX - 0x10);
		assert_fails(load(len), -ENOEXEC, "truncated");
		/* ending exactly at the end of the file is fine */
		len = build_elf(&e);
		patch_phdr(is64, 0, P_FILESZ, len - off);
		assert_loads(load(len));
		check_loaded(KERNEL_BASE, off, len - off, 0x1000);
		/* the file cut one byte short */
		assert_fails(load(len - 1), -ENOEXEC, "truncated");
		check_untouched(KERNEL_BASE, 0x1000);
	}
}

static void test_elf_filesz_above_memsz(void **state)
{
	(void)state;
	for (int is64 = 0; is64 < 2; is64++) {
		struct elf e = simple_elf(is64);

		e.segs[0].filesz = 0x300;
		e.segs[0].memsz = 0x2ff;
		assert_fails(load(build_elf(&e)), -ENOEXEC, "file size exceeds memory size");
		e.segs[0].memsz = 0x300;
		assert_loads(load(build_elf(&e)));
	}
}

static void test_elf_segment_beyond_ram(void **state)
{
	static const struct { uint64_t paddr, memsz; } bad[] = {
		{ MEM_SIZE - 0x1000, 0x2000 },		/* straddles the end of RAM */
		{ MEM_SIZE, 0x1000 },			/* just past it */
		{ MEM_SIZE - 0x1000, 0x1001 },
		{ 0xD0000000, 0x1000 },			/* in the MMIO hole */
		{ 0xFFFFF000, 0x2000 },			/* wraps 32 bits */
	};

	(void)state;
	for (unsigned int i = 0; i < ARRAY_SIZE(bad); i++) {
		struct elf e = simple_elf(i & 1);

		e.segs[0].vaddr = e.segs[0].paddr = bad[i].paddr;
		e.segs[0].memsz = bad[i].memsz;
		e.entry = bad[i].paddr;
		print_message("segment 0x%llx+0x%llx\n", (unsigned long long)bad[i].paddr,
			      (unsigned long long)bad[i].memsz);
		assert_fails(load(build_elf(&e)), -ENOSPC, "does not fit");
	}
	/* 64-bit addresses that wrap around */
	struct elf e = simple_elf(true);
	size_t len = build_elf(&e);
	patch_phdr(true, 0, P_PADDR, 0xFFFFFFFFFFFFF000ULL);
	patch_phdr(true, 0, P_MEMSZ, 0x2000);
	assert_fails(load(len), -ENOSPC, "does not fit");
	/* and the last page of RAM is usable, though then the info block has no room */
	e = simple_elf(false);
	e.segs[0].vaddr = e.segs[0].paddr = MEM_SIZE - 0x1000;
	e.entry = MEM_SIZE - 0x1000;
	assert_fails(load(build_elf(&e)), -ENOSPC, "boot information");
	check_loaded(MEM_SIZE - 0x1000, seg_offset(&e, 0), 0x300, 0x1000);
}

static void test_elf_segment_in_reserved_area(void **state)
{
	static const struct { uint64_t paddr, memsz; } bad[] = {
		{ 0x9F000, 0x1000 },	/* ends in the EBDA */
		{ 0x9FC00, 0x1 },
		{ 0xA0000, 0x100 },
		{ 0xF0000, 0x100 },	/* the MP table's home */
		{ 0xFFFFF, 0x1 },
		{ 0xFF000, 0x2000 },	/* straddles 1 MiB */
		{ 0x90000, 0x80000 },	/* covers it all */
	};

	(void)state;
	for (unsigned int i = 0; i < ARRAY_SIZE(bad); i++) {
		struct elf e = simple_elf(i & 1);

		e.segs[0].vaddr = e.segs[0].paddr = bad[i].paddr;
		e.segs[0].memsz = bad[i].memsz;
		e.segs[0].filesz = bad[i].memsz < 0x300 ? bad[i].memsz : 0x300;
		e.entry = bad[i].paddr;
		print_message("segment 0x%llx+0x%llx\n", (unsigned long long)bad[i].paddr,
			      (unsigned long long)bad[i].memsz);
		assert_fails(load(build_elf(&e)), -ENOEXEC, "reserved");
		check_untouched(0x9F000, 0x1000);
	}
	/* touching the area from either side is fine */
	struct elf e = {
		.is64 = false, .entry = 0x100000, .nsegs = 2,
		.segs = {
			{ .vaddr = 0x9E000, .paddr = 0x9E000, .filesz = 0x100, .memsz = 0x1C00 },
			{ .vaddr = 0x100000, .paddr = 0x100000, .filesz = 0x100, .memsz = 0x100 },
		},
	};
	assert_loads(load(build_elf(&e)));
	check_loaded(0x9E000, seg_offset(&e, 0), 0x100, 0x1C00);
	check_loaded(0x100000, seg_offset(&e, 1), 0x100, 0x100);
	assert_int_equal(boot.load_start, 0x9E000);
	assert_int_equal(boot.load_end, 0x100100);
}

static void test_elf_nothing_copied_on_error(void **state)
{
	struct elf e = {
		.is64 = false, .entry = 0x100000, .nsegs = 2,
		.segs = {
			{ .vaddr = 0x100000, .paddr = 0x100000, .filesz = 0x100, .memsz = 0x1000 },
			{ .vaddr = 0x200000, .paddr = MEM_SIZE, .filesz = 0x100, .memsz = 0x1000 },
		},
	};

	(void)state;
	assert_fails(load(build_elf(&e)), -ENOSPC, "does not fit");
	check_untouched(0x100000, 0x1000);
}


int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_elf32_segments),
		cmocka_unit_test(test_elf64_segments),
		cmocka_unit_test(test_elf32_higher_half),
		cmocka_unit_test(test_elf64_higher_half),
		cmocka_unit_test(test_elf_entry_translated_once),
		cmocka_unit_test(test_elf_entry_outside_segments),
		cmocka_unit_test(test_elf_wrong_machine),
		cmocka_unit_test(test_elf_big_endian),
		cmocka_unit_test(test_elf_bad_class),
		cmocka_unit_test(test_elf_not_exec),
		cmocka_unit_test(test_elf_no_program_headers),
		cmocka_unit_test(test_elf_truncated_program_headers),
		cmocka_unit_test(test_elf64_phoff_wraps),
		cmocka_unit_test(test_elf_segment_beyond_file),
		cmocka_unit_test(test_elf_filesz_above_memsz),
		cmocka_unit_test(test_elf_segment_beyond_ram),
		cmocka_unit_test(test_elf_segment_in_reserved_area),
		cmocka_unit_test(test_elf_nothing_copied_on_error),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
