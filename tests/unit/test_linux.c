/*
 * Unit tests for the Linux bzImage loader (src/arch/x86/linux.c).  Images
 * are built in memory: a setup header with the fields the boot protocol
 * (Documentation/arch/x86/boot.rst) defines, at their file offsets, and a
 * patterned "protected-mode kernel" after the setup sectors.  The zero
 * page, page tables and GDT are read back at the offsets the protocol and
 * the x86 architecture define, not through linux.c's own names.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "khyve/acpi.h"
#include "khyve/linux.h"
#include "khyve/memmap.h"
#include "khyve/util.h"

#define MEM_SIZE	(128 * MiB)
#define IMG_SIZE	(64 * 1024)
#define SETUP_SECTS	4
#define KOFF		((SETUP_SECTS + 1) * 512)

static uint8_t img[IMG_SIZE];
static struct guest_mem mem;
static struct linux_boot lb;
static char err[256];

static void w16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void w32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void w64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint16_t r16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t r32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t r64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static uint8_t *gpa(uint64_t a, uint64_t n)
{
	uint8_t *p = memmap__gpa_to_hva(&mem, a, n);

	assert_non_null(p);
	return p;
}

/* A bzImage as Debian's 6.1 kernel has it: protocol 2.15, relocatable, 64-bit. */
static void make_image(void)
{
	memset(img, 0, sizeof(img));
	for (size_t i = KOFF; i < IMG_SIZE; i++)
		img[i] = (uint8_t)(i * 13 + 1);
	img[0x1f1] = SETUP_SECTS;
	w16(img + 0x1fe, 0xAA55);
	img[0x200] = 0xeb;			/* jmp: the header ends at 0x202 + img[0x201] */
	img[0x201] = 0x6a;
	memcpy(img + 0x202, "HdrS", 4);
	w16(img + 0x206, 0x020f);
	img[0x211] = 0x01;			/* LOADED_HIGH */
	w32(img + 0x22c, 0x7fffffff);		/* initrd_addr_max */
	w32(img + 0x230, 0x200000);		/* kernel_alignment */
	img[0x234] = 1;				/* relocatable */
	w16(img + 0x236, 0x1);			/* XLF_KERNEL_64 */
	w32(img + 0x238, 2047);			/* cmdline_size */
	w64(img + 0x258, 0x1000000);		/* pref_address */
	w32(img + 0x260, 4 * MiB);		/* init_size */
}

static int setup(void **state)
{
	(void)state;
	memmap__layout(&mem, MEM_SIZE);
	assert_int_equal(memmap__alloc(&mem), 0);
	memset(mem.base, 0xAA, MEM_SIZE);
	make_image();
	err[0] = 0;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	memmap__free(&mem);
	return 0;
}

static int load(const char *cmdline, const void *initrd, size_t initrd_len)
{
	return linux__load(&mem, img, sizeof(img), cmdline, initrd, initrd_len, &lb, err, sizeof(err));
}

static void test_loads(void **state)
{
	static const uint8_t initrd[10000] = { 1, 2, 3 };
	const uint8_t *zp, *k;

	(void)state;
	assert_int_equal(load("console=ttyS0 quiet", initrd, sizeof(initrd)), 0);
	assert_int_equal(lb.entry, 0x1000200);		/* 64-bit entry: load address + 0x200 */
	assert_int_equal(lb.version, 0x020f);
	zp = gpa(lb.zero_page, 4096);
	/* the setup header is the file's, with the loader's fields set */
	assert_memory_equal(zp + 0x202, "HdrS", 4);
	assert_int_equal(zp[0x1f1], SETUP_SECTS);
	assert_int_equal(zp[0x210], 0xff);		/* type_of_loader: undefined */
	assert_true(zp[0x211] & 0x01);
	assert_int_equal(r16(zp + 0x1fa), 0xffff);	/* vid_mode: normal */
	assert_string_equal((const char *)gpa(r32(zp + 0x228), 20), "console=ttyS0 quiet");
	/* the initrd: page-aligned, as high as RAM and initrd_addr_max allow, intact */
	assert_int_equal(r32(zp + 0x21c), sizeof(initrd));
	assert_int_equal(r32(zp + 0x218) % 4096, 0);
	assert_true(r32(zp + 0x218) + sizeof(initrd) <= MEM_SIZE);
	assert_true(r32(zp + 0x218) + sizeof(initrd) > MEM_SIZE - 4096);
	assert_memory_equal(gpa(r32(zp + 0x218), sizeof(initrd)), initrd, sizeof(initrd));
	assert_int_equal(r64(zp + 0x070), ACPI_RSDP_ADDR);
	/* the kernel after the setup sectors, its init_size zeroed beyond */
	k = gpa(0x1000000, 4 * MiB);
	assert_memory_equal(k, img + KOFF, IMG_SIZE - KOFF);
	for (size_t i = IMG_SIZE - KOFF; i < 4 * MiB; i += 4093)
		assert_int_equal(k[i], 0);
	/* e820: RAM below the EBDA and from 1 MiB, the rest reserved or absent */
	assert_int_equal(zp[0x1e8], 4);
	assert_int_equal(r64(zp + 0x2d0), 0);
	assert_int_equal(r32(zp + 0x2d0 + 16), 1);
	assert_int_equal(r64(zp + 0x2d0 + 60), 0x100000);
	assert_int_equal(r64(zp + 0x2d0 + 68), MEM_SIZE - 0x100000);
	assert_int_equal(r32(zp + 0x2d0 + 76), 1);
}

static void test_page_tables_and_gdt(void **state)
{
	const uint8_t *pml4, *pdpt, *pd, *gdt;

	(void)state;
	assert_int_equal(load("", NULL, 0), 0);
	pml4 = gpa(LINUX_PML4_ADDR, 4096);
	pdpt = gpa(r64(pml4) & ~0xfffULL, 4096);
	assert_int_equal(r64(pml4) & 3, 3);
	for (unsigned int g = 0; g < 4; g++) {
		assert_int_equal(r64(pdpt + 8 * g) & 3, 3);
		pd = gpa(r64(pdpt + 8 * g) & ~0xfffULL, 4096);
		/* 2 MiB pages, identity: virtual = physical for the first 4 GiB */
		for (unsigned int i = 0; i < 512; i += 97)
			assert_int_equal(r64(pd + 8 * i), ((uint64_t)g << 30 | (uint64_t)i << 21) | 0x83);
	}
	gdt = gpa(LINUX_GDT_ADDR, 32);
	/* __BOOT_CS (0x10): present, code, L = 1; __BOOT_DS (0x18): present, data */
	assert_true(r64(gdt + 0x10) & (1ULL << 47));
	assert_true(r64(gdt + 0x10) & (1ULL << 53));
	assert_true(r64(gdt + 0x10) & (1ULL << 43));
	assert_true(r64(gdt + 0x18) & (1ULL << 47));
	assert_false(r64(gdt + 0x18) & (1ULL << 43));
}

/* Each bad field: refused with its name, and guest memory untouched. */
static void refused(int want, const char *needle)
{
	uint8_t before[64];

	memcpy(before, gpa(LINUX_ZERO_PAGE, sizeof(before)), sizeof(before));
	assert_int_equal(load("", NULL, 0), want);
	if (!strstr(err, needle))
		fail_msg("error '%s' does not name '%s'", err, needle);
	assert_memory_equal(gpa(LINUX_ZERO_PAGE, sizeof(before)), before, sizeof(before));
	make_image();
}

static void test_refusals(void **state)
{
	static uint8_t big[20000];

	(void)state;
	memcpy(img + 0x202, "HdrX", 4);
	refused(-ENOEXEC, "bzImage");
	w16(img + 0x206, 0x0209);
	refused(-ENOEXEC, "2.10");
	w16(img + 0x1fe, 0x1234);
	refused(-ENOEXEC, "boot_flag");
	img[0x211] = 0;
	refused(-ENOEXEC, "zImage");
	w16(img + 0x236, 0);
	refused(-ENOEXEC, "64-bit");
	img[0x1f1] = 200;			/* setup runs past the end of the file */
	refused(-ENOEXEC, "truncated");
	w32(img + 0x260, 100);
	refused(-ENOEXEC, "init_size");
	w64(img + 0x258, 0x1001000);
	refused(-ENOEXEC, "kernel_alignment");
	w64(img + 0x258, 0x1000);
	img[0x234] = 0;
	refused(-ENOEXEC, "pref_address");
	w32(img + 0x260, 200 * MiB);
	refused(-ENOSPC, "does not fit");
	w32(img + 0x238, 5);
	assert_int_equal(load("console=ttyS0", NULL, 0), -E2BIG);
	assert_non_null(strstr(err, "command line"));
	make_image();
	w32(img + 0x22c, 0x1000000 + 4 * MiB + 4096);	/* initrd_addr_max: inside the kernel */
	assert_int_equal(load("", big, sizeof(big)), -ENOSPC);
	assert_non_null(strstr(err, "initrd"));
}

/* A protocol 2.10-2.11 kernel has no xloadflags: accepted on its 64-bit entry. */
static void test_old_protocol(void **state)
{
	(void)state;
	w16(img + 0x206, 0x020a);
	w16(img + 0x236, 0);
	assert_int_equal(load("", NULL, 0), 0);
	/* before 2.14 there is no acpi_rsdp_addr: left 0, Linux scans for the RSDP */
	assert_int_equal(r64(gpa(LINUX_ZERO_PAGE + 0x70, 8)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_loads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_page_tables_and_gdt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_old_protocol, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
