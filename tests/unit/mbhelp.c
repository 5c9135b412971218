/*
 * What the multiboot loader's unit tests share (see mbhelp.h).
 */
#include <elf.h>
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
#include "khyve/util.h"

#include "mbhelp.h"

uint8_t img[IMG_CAP];
struct guest_mem mem;
struct mb_boot boot;
char load_err[256];

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

void put_mb_header(size_t off, uint32_t flags)
{
	uint32_t h[3] = { MB_HEADER_MAGIC, flags, (uint32_t)-(MB_HEADER_MAGIC + flags) };

	memcpy(img + off, h, sizeof(h));
}

size_t ehdr_size(bool is64)
{
	return is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr);
}

size_t phdr_size(bool is64)
{
	return is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
}

/* Segment data starts at this file offset unless a segment says otherwise. */
#define DATA_START 0x1000

/* Build e into img; returns the file length. */
size_t build_elf(const struct elf *e)
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
struct elf simple_elf(bool is64)
{
	return (struct elf){
		.is64 = is64, .entry = KERNEL_BASE + 0x10, .nsegs = 1,
		.segs = { { .vaddr = KERNEL_BASE, .paddr = KERNEL_BASE, .filesz = 0x300, .memsz = 0x1000 } },
	};
}

/* File offset of the segment data build_elf chose for segment i. */
uint64_t seg_offset(const struct elf *e, unsigned int i)
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

void patch_ehdr(bool is64, enum ef f, uint64_t v)
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

size_t build_aout(const struct aout *a)
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
struct aout simple_aout(size_t hoff, size_t len)
{
	return (struct aout){
		.hoff = hoff, .header_addr = (uint32_t)(KERNEL_BASE + hoff),
		.load_addr = KERNEL_BASE, .entry = (uint32_t)(KERNEL_BASE + hoff + 32), .len = len,
	};
}

int load_from(struct guest_mem *m, const void *image, size_t len, const char *cmdline,
	      const struct mb_module *mods, unsigned int nmods)
{
	memset(load_err, 0, sizeof(load_err));
	memset(&boot, 0x55, sizeof(boot));
	return multiboot__load(m, image, len, cmdline, mods, nmods, &boot, load_err, sizeof(load_err));
}

int load_mods(size_t len, const char *cmdline, const struct mb_module *mods, unsigned int n)
{
	memset(mem.base, FILL, mem.size);
	return load_from(&mem, img, len, cmdline, mods, n);
}

int load(size_t len)
{
	return load_mods(len, "", NULL, 0);
}

uint8_t *gp(struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	uint8_t *p = memmap__gpa_to_hva(m, gpa, len);

	if (!p)
		fail_msg("guest range 0x%llx+0x%llx is not RAM", (unsigned long long)gpa,
			 (unsigned long long)len);
	return p;
}

uint8_t *g(uint64_t gpa, uint64_t len)
{
	return gp(&mem, gpa, len);
}

/* [paddr, paddr+filesz) is the file's [off, off+filesz), then zeros to memsz. */
void check_loaded(uint64_t paddr, uint64_t off, uint64_t filesz, uint64_t memsz)
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

void check_untouched(uint64_t gpa, uint64_t len)
{
	const uint8_t *p = g(gpa, len);

	for (uint64_t j = 0; j < len; j++)
		if (p[j] != FILL)
			fail_msg("guest 0x%llx was written (0x%02x)", (unsigned long long)(gpa + j), p[j]);
}

struct mb_info read_info(struct guest_mem *m)
{
	struct mb_info i;

	memcpy(&i, gp(m, boot.info, sizeof(i)), sizeof(i));
	return i;
}

/* A NUL-terminated string at gpa, inside RAM. */
const char *gstr(struct guest_mem *m, uint32_t gpa)
{
	const char *s = (const char *)gp(m, gpa, 1);
	uint64_t low = memmap__low_end(m);

	assert_true(gpa < low);
	assert_non_null(memchr(s, 0, low - gpa));
	return s;
}

bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

/* ---------------------------------------------------------- group set-up */

int group_setup(void **state)
{
	(void)state;
	memmap__layout(&mem, MEM_SIZE);
	return memmap__alloc(&mem);
}

int group_teardown(void **state)
{
	(void)state;
	memmap__free(&mem);
	return 0;
}
