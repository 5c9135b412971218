/*
 * What the multiboot loader's unit tests share (tests/unit/mbhelp.c,
 * linked into test_multiboot and test_multiboot_elf): the image buffer,
 * the guest memory and the loader's results, and the helpers that build
 * images into that buffer, load them and check guest memory.
 *
 * Image bytes follow a pattern, so copied data can be told from zeroed
 * bss and from the FILL the guest memory is filled with before every load.
 */
#ifndef KHYVE_TESTS_MBHELP_H
#define KHYVE_TESTS_MBHELP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "khyve/memmap.h"
#include "khyve/multiboot.h"
#include "khyve/util.h"

#define IMG_CAP		(64 * 1024)
#define MEM_SIZE	(16 * MiB)
#define FILL		0xAA
#define KERNEL_BASE	0x100000ULL

extern uint8_t img[IMG_CAP];
extern struct guest_mem mem;
extern struct mb_boot boot;
extern char load_err[256];	/* the last load's error message */

/* ---------------------------------------------------------------- helpers */

void put_mb_header(size_t off, uint32_t flags);

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

size_t ehdr_size(bool is64);
size_t phdr_size(bool is64);
/* Build e into img; returns the file length. */
size_t build_elf(const struct elf *e);
/* The usual kernel: one segment at 1 MiB, 0x300 bytes of code, 0x1000 in memory. */
struct elf simple_elf(bool is64);
/* File offset of the segment data build_elf chose for segment i. */
uint64_t seg_offset(const struct elf *e, unsigned int i);

/* Patch ELF header fields after build_elf. */
enum ef { E_TYPE, E_MACHINE, E_PHOFF, E_PHNUM, E_PHENTSIZE };

void patch_ehdr(bool is64, enum ef f, uint64_t v);

struct aout {
	size_t hoff;
	uint32_t extra_flags;
	uint32_t header_addr, load_addr, load_end, bss_end, entry;
	size_t len;
};

size_t build_aout(const struct aout *a);
/* a.out image whose first file byte loads at 1 MiB, whole file, no bss. */
struct aout simple_aout(size_t hoff, size_t len);

int load_from(struct guest_mem *m, const void *image, size_t len, const char *cmdline,
	      const struct mb_module *mods, unsigned int nmods);
int load_mods(size_t len, const char *cmdline, const struct mb_module *mods, unsigned int n);
int load(size_t len);

#define assert_loads(expr) do { \
	int r_ = (expr); \
	if (r_ != 0) \
		fail_msg("load failed with %d: %s", r_, load_err); \
} while (0)

#define assert_fails(expr, expect, words) do { \
	int r_ = (expr); \
	if (r_ != (expect)) \
		fail_msg("returned %d, expected %d (error: \"%s\")", r_, (expect), load_err); \
	if (!strstr(load_err, (words))) \
		fail_msg("error \"%s\" does not mention \"%s\"", load_err, (words)); \
} while (0)

uint8_t *gp(struct guest_mem *m, uint64_t gpa, uint64_t len);
uint8_t *g(uint64_t gpa, uint64_t len);
/* [paddr, paddr+filesz) is the file's [off, off+filesz), then zeros to memsz. */
void check_loaded(uint64_t paddr, uint64_t off, uint64_t filesz, uint64_t memsz);
void check_untouched(uint64_t gpa, uint64_t len);
struct mb_info read_info(struct guest_mem *m);
/* A NUL-terminated string at gpa, inside RAM. */
const char *gstr(struct guest_mem *m, uint32_t gpa);
bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen);

/* ---------------------------------------------------------- group set-up */

int group_setup(void **state);
int group_teardown(void **state);

#endif
