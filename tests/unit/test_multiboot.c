/*
 * Unit tests for the multiboot (v1) loader (src/arch/x86/multiboot.c).
 *
 * Every image is built in memory by the helpers below: ELF32 and ELF64
 * executables with chosen PT_LOAD segments and a multiboot header at a
 * chosen offset, and a.out-kludge images (header flag 16).  Image bytes
 * follow a pattern (pat()) so copied data can be told from zeroed bss and
 * from the 0xAA the guest memory is filled with before every load.
 */
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "khyve/memmap.h"
#include "khyve/multiboot.h"
#include <stdlib.h>

#include "khyve/util.h"

#define IMG_CAP		(64 * 1024)
#define MEM_SIZE	(16 * MiB)
#define FILL		0xAA
#define KERNEL_BASE	0x100000ULL

static uint8_t img[IMG_CAP];
static struct guest_mem mem;
static struct mb_boot boot;
static char err[256];

/* ---------------------------------------------------------------- helpers */

static uint8_t pat(size_t off)
{
	return (uint8_t)(off * 7 + 3);
}

static void fill_pattern(void)
{
	for (size_t i = 0; i < IMG_CAP; i++)
		img[i] = pat(i);
}

static void put_mb_header(size_t off, uint32_t flags)
{
	uint32_t h[3] = { MB_HEADER_MAGIC, flags, (uint32_t)-(MB_HEADER_MAGIC + flags) };

	memcpy(img + off, h, sizeof(h));
}

struct seg {
	uint32_t type;		/* 0 means PT_LOAD */
	uint64_t vaddr, paddr, filesz, memsz;
	uint64_t offset;	/* 0: placed after the previous segment's data */
};

struct elf {
	bool is64;
	uint64_t entry;
	unsigned int nsegs;
	struct seg segs[4];
	size_t mb_off;		/* 0: right after the program headers */
	uint32_t mb_flags;
};

static size_t ehdr_size(bool is64)
{
	return is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr);
}

static size_t phdr_size(bool is64)
{
	return is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
}

/* Segment data starts at this file offset unless a segment says otherwise. */
#define DATA_START 0x1000

/* Build e into img; returns the file length. */
static size_t build_elf(const struct elf *e)
{
	size_t phoff = ehdr_size(e->is64), phsz = phdr_size(e->is64);
	size_t len = phoff + e->nsegs * phsz, data = DATA_START, mb_off;

	fill_pattern();
	for (unsigned int i = 0; i < e->nsegs; i++) {
		const struct seg *s = &e->segs[i];
		uint64_t off = s->offset ? s->offset : data;
		uint32_t type = s->type ? s->type : PT_LOAD;

		if (!s->offset)
			data = ALIGN_UP(off + s->filesz, 16);
		if (off + s->filesz > len)
			len = off + s->filesz;
		if (e->is64) {
			Elf64_Phdr p = {
				.p_type = type, .p_flags = PF_R | PF_W | PF_X, .p_offset = off,
				.p_vaddr = s->vaddr, .p_paddr = s->paddr, .p_filesz = s->filesz,
				.p_memsz = s->memsz, .p_align = 16,
			};
			memcpy(img + phoff + i * phsz, &p, sizeof(p));
		} else {
			Elf32_Phdr p = {
				.p_type = type, .p_flags = PF_R | PF_W | PF_X, .p_offset = (Elf32_Off)off,
				.p_vaddr = (Elf32_Addr)s->vaddr, .p_paddr = (Elf32_Addr)s->paddr,
				.p_filesz = (Elf32_Word)s->filesz, .p_memsz = (Elf32_Word)s->memsz,
				.p_align = 16,
			};
			memcpy(img + phoff + i * phsz, &p, sizeof(p));
		}
	}
	mb_off = e->mb_off ? e->mb_off : ALIGN_UP(phoff + e->nsegs * phsz, 4);
	put_mb_header(mb_off, e->mb_flags);
	if (mb_off + 12 > len)
		len = mb_off + 12;
	assert_true(len <= IMG_CAP);

	if (e->is64) {
		Elf64_Ehdr h = {
			.e_ident = { ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS64, ELFDATA2LSB, EV_CURRENT },
			.e_type = ET_EXEC, .e_machine = EM_X86_64, .e_version = EV_CURRENT,
			.e_entry = e->entry, .e_phoff = phoff, .e_ehsize = sizeof(h),
			.e_phentsize = (uint16_t)phsz, .e_phnum = (uint16_t)e->nsegs,
		};
		memcpy(img, &h, sizeof(h));
	} else {
		Elf32_Ehdr h = {
			.e_ident = { ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS32, ELFDATA2LSB, EV_CURRENT },
			.e_type = ET_EXEC, .e_machine = EM_386, .e_version = EV_CURRENT,
			.e_entry = (Elf32_Addr)e->entry, .e_phoff = (Elf32_Off)phoff, .e_ehsize = sizeof(h),
			.e_phentsize = (uint16_t)phsz, .e_phnum = (uint16_t)e->nsegs,
		};
		memcpy(img, &h, sizeof(h));
	}
	return len;
}

/* The usual kernel: one segment at 1 MiB, 0x300 bytes of code, 0x1000 in memory. */
static struct elf simple_elf(bool is64)
{
	return (struct elf){
		.is64 = is64, .entry = KERNEL_BASE + 0x10, .nsegs = 1,
		.segs = { { .vaddr = KERNEL_BASE, .paddr = KERNEL_BASE, .filesz = 0x300, .memsz = 0x1000 } },
	};
}

/* File offset of the segment data build_elf chose for segment i. */
static uint64_t seg_offset(const struct elf *e, unsigned int i)
{
	uint64_t data = DATA_START;

	for (unsigned int k = 0; k <= i; k++) {
		uint64_t off = e->segs[k].offset ? e->segs[k].offset : data;

		if (k == i)
			return off;
		if (!e->segs[k].offset)
			data = ALIGN_UP(off + e->segs[k].filesz, 16);
	}
	return 0;
}

/* Patch ELF header / program header fields after build_elf. */
enum ef { E_TYPE, E_MACHINE, E_PHOFF, E_PHNUM, E_PHENTSIZE };
enum pf { P_OFFSET, P_FILESZ, P_MEMSZ, P_PADDR };

static void patch_ehdr(bool is64, enum ef f, uint64_t v)
{
	if (is64) {
		Elf64_Ehdr h;

		memcpy(&h, img, sizeof(h));
		switch (f) {
		case E_TYPE: h.e_type = (uint16_t)v; break;
		case E_MACHINE: h.e_machine = (uint16_t)v; break;
		case E_PHOFF: h.e_phoff = v; break;
		case E_PHNUM: h.e_phnum = (uint16_t)v; break;
		case E_PHENTSIZE: h.e_phentsize = (uint16_t)v; break;
		}
		memcpy(img, &h, sizeof(h));
	} else {
		Elf32_Ehdr h;

		memcpy(&h, img, sizeof(h));
		switch (f) {
		case E_TYPE: h.e_type = (uint16_t)v; break;
		case E_MACHINE: h.e_machine = (uint16_t)v; break;
		case E_PHOFF: h.e_phoff = (uint32_t)v; break;
		case E_PHNUM: h.e_phnum = (uint16_t)v; break;
		case E_PHENTSIZE: h.e_phentsize = (uint16_t)v; break;
		}
		memcpy(img, &h, sizeof(h));
	}
}

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

struct aout {
	size_t hoff;
	uint32_t extra_flags;
	uint32_t header_addr, load_addr, load_end, bss_end, entry;
	size_t len;
};

static size_t build_aout(const struct aout *a)
{
	uint32_t flags = MB_HF_AOUT_KLUDGE | a->extra_flags;
	uint32_t h[8] = {
		MB_HEADER_MAGIC, flags, (uint32_t)-(MB_HEADER_MAGIC + flags),
		a->header_addr, a->load_addr, a->load_end, a->bss_end, a->entry,
	};

	assert_true(a->len <= IMG_CAP);
	fill_pattern();
	memcpy(img + a->hoff, h, sizeof(h));
	return a->len;
}

/* a.out image whose first file byte loads at 1 MiB, whole file, no bss. */
static struct aout simple_aout(size_t hoff, size_t len)
{
	return (struct aout){
		.hoff = hoff, .header_addr = (uint32_t)(KERNEL_BASE + hoff),
		.load_addr = KERNEL_BASE, .entry = (uint32_t)(KERNEL_BASE + hoff + 32), .len = len,
	};
}

static int load_from(struct guest_mem *m, const void *image, size_t len, const char *cmdline,
		     const struct mb_module *mods, unsigned int nmods)
{
	memset(err, 0, sizeof(err));
	memset(&boot, 0x55, sizeof(boot));
	return multiboot__load(m, image, len, cmdline, mods, nmods, &boot, err, sizeof(err));
}

static int load_mods(size_t len, const char *cmdline, const struct mb_module *mods, unsigned int n)
{
	memset(mem.base, FILL, mem.size);
	return load_from(&mem, img, len, cmdline, mods, n);
}

static int load(size_t len)
{
	return load_mods(len, "", NULL, 0);
}

#define assert_loads(expr) do { \
	int r_ = (expr); \
	if (r_ != 0) \
		fail_msg("load failed with %d: %s", r_, err); \
} while (0)

#define assert_fails(expr, expect, words) do { \
	int r_ = (expr); \
	if (r_ != (expect)) \
		fail_msg("returned %d, expected %d (error: \"%s\")", r_, (expect), err); \
	if (!strstr(err, (words))) \
		fail_msg("error \"%s\" does not mention \"%s\"", err, (words)); \
} while (0)

static uint8_t *gp(struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	uint8_t *p = memmap__gpa_to_hva(m, gpa, len);

	if (!p)
		fail_msg("guest range 0x%llx+0x%llx is not RAM", (unsigned long long)gpa,
			 (unsigned long long)len);
	return p;
}

static uint8_t *g(uint64_t gpa, uint64_t len)
{
	return gp(&mem, gpa, len);
}

/* [paddr, paddr+filesz) is the file's [off, off+filesz), then zeros to memsz. */
static void check_loaded(uint64_t paddr, uint64_t off, uint64_t filesz, uint64_t memsz)
{
	const uint8_t *p = g(paddr, memsz);

	for (uint64_t j = 0; j < filesz; j++)
		if (p[j] != img[off + j])
			fail_msg("guest 0x%llx is 0x%02x, file offset 0x%llx is 0x%02x",
				 (unsigned long long)(paddr + j), p[j], (unsigned long long)(off + j),
				 img[off + j]);
	for (uint64_t j = filesz; j < memsz; j++)
		if (p[j] != 0)
			fail_msg("bss byte at 0x%llx is 0x%02x, not zero", (unsigned long long)(paddr + j), p[j]);
}

static void check_untouched(uint64_t gpa, uint64_t len)
{
	const uint8_t *p = g(gpa, len);

	for (uint64_t j = 0; j < len; j++)
		if (p[j] != FILL)
			fail_msg("guest 0x%llx was written (0x%02x)", (unsigned long long)(gpa + j), p[j]);
}

static struct mb_info read_info(struct guest_mem *m)
{
	struct mb_info i;

	memcpy(&i, gp(m, boot.info, sizeof(i)), sizeof(i));
	return i;
}

/* A NUL-terminated string at gpa, inside RAM. */
static const char *gstr(struct guest_mem *m, uint32_t gpa)
{
	const char *s = (const char *)gp(m, gpa, 1);
	uint64_t low = memmap__low_end(m);

	assert_true(gpa < low);
	assert_non_null(memchr(s, 0, low - gpa));
	return s;
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

/* ---------------------------------------------------------- group set-up */

static int group_setup(void **state)
{
	(void)state;
	memmap__layout(&mem, MEM_SIZE);
	return memmap__alloc(&mem);
}

static int group_teardown(void **state)
{
	(void)state;
	memmap__free(&mem);
	return 0;
}

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
		fail_msg("load failed with %d: %s", r, err);
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
	assert_true(strstr(err, "does not fit") != NULL);
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
