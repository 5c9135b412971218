/* Unit tests for the guest physical memory layout (src/core/memmap.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "khyve/memmap.h"
#include "khyve/util.h"

/*
 * For layouts too large to allocate, gpa_to_hva is checked against a fake
 * base address: the function only does arithmetic on it, never touches it.
 */
#define FAKE_BASE ((uintptr_t)0x100000000000ULL)

static uintptr_t hva(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	return (uintptr_t)memmap__gpa_to_hva(m, gpa, len);
}

static void check_region(const struct mem_region *r, uint64_t gpa, uint64_t size, uint64_t offset)
{
	assert_int_equal(r->gpa, gpa);
	assert_int_equal(r->size, size);
	assert_int_equal(r->offset, offset);
}

static void test_layout_2m(void **state)
{
	struct guest_mem m;

	(void)state;
	memset(&m, 0x55, sizeof(m));
	memmap__layout(&m, 2 * MiB);
	assert_null(m.base);
	assert_int_equal(m.size, 2 * MiB);
	assert_int_equal(m.nregions, 1);
	check_region(&m.regions[0], 0, 2 * MiB, 0);
	assert_int_equal(memmap__low_end(&m), 2 * MiB);
}

static void test_layout_3g(void **state)
{
	struct guest_mem m;

	(void)state;
	memmap__layout(&m, 3 * GiB);
	assert_int_equal(m.size, 3 * GiB);
	assert_int_equal(m.nregions, 1);
	check_region(&m.regions[0], 0, 3 * GiB, 0);
	assert_int_equal(memmap__low_end(&m), 3 * GiB);
}

static void test_layout_3g_plus_page(void **state)
{
	struct guest_mem m;

	(void)state;
	memmap__layout(&m, 3 * GiB + 4 * KiB);
	assert_int_equal(m.size, 3 * GiB + 4 * KiB);
	assert_int_equal(m.nregions, 2);
	check_region(&m.regions[0], 0, 3 * GiB, 0);
	check_region(&m.regions[1], 4 * GiB, 4 * KiB, 3 * GiB);
	assert_int_equal(memmap__low_end(&m), 3 * GiB);
}

static void test_layout_4g(void **state)
{
	struct guest_mem m;

	(void)state;
	memmap__layout(&m, 4 * GiB);
	assert_int_equal(m.nregions, 2);
	check_region(&m.regions[0], 0, 3 * GiB, 0);
	check_region(&m.regions[1], 4 * GiB, 1 * GiB, 3 * GiB);
	assert_int_equal(memmap__low_end(&m), 3 * GiB);
}

static void test_layout_8g(void **state)
{
	struct guest_mem m;

	(void)state;
	memmap__layout(&m, 8 * GiB);
	assert_int_equal(m.size, 8 * GiB);
	assert_int_equal(m.nregions, 2);
	check_region(&m.regions[0], 0, 3 * GiB, 0);
	check_region(&m.regions[1], 4 * GiB, 5 * GiB, 3 * GiB);
	assert_int_equal(memmap__low_end(&m), 3 * GiB);
}

static void test_gpa_to_hva_single_region(void **state)
{
	struct guest_mem m;

	(void)state;
	memmap__layout(&m, 2 * MiB);
	/* not allocated yet: nothing translates */
	assert_null(memmap__gpa_to_hva(&m, 0, 1));
	assert_int_equal(memmap__alloc(&m), 0);
	assert_non_null(m.base);

	uintptr_t b = (uintptr_t)m.base;
	assert_int_equal(hva(&m, 0, 1), b);
	assert_int_equal(hva(&m, 0, 2 * MiB), b);
	assert_int_equal(hva(&m, 0x1234, 16), b + 0x1234);
	assert_int_equal(hva(&m, 2 * MiB - 1, 1), b + 2 * MiB - 1);	/* last byte */
	assert_int_equal(hva(&m, 0, 2 * MiB + 1), 0);			/* one too many */
	assert_int_equal(hva(&m, 2 * MiB, 1), 0);			/* one byte past */
	assert_int_equal(hva(&m, 2 * MiB - 4, 8), 0);			/* straddles the end */
	assert_int_equal(hva(&m, 2 * MiB - 1, UINT64_MAX), 0);
	assert_int_equal(hva(&m, UINT64_MAX, 1), 0);
	assert_int_equal(hva(&m, 4 * GiB, 1), 0);
	assert_int_equal(hva(&m, 0x1000, 0), b + 0x1000);		/* len 0 inside */
	assert_int_equal(hva(&m, 3 * MiB, 0), 0);			/* len 0 outside */

	/* the mapping is real and writable */
	uint8_t *p = memmap__gpa_to_hva(&m, 2 * MiB - 1, 1);
	*p = 0x5a;
	assert_int_equal(m.base[2 * MiB - 1], 0x5a);
	memmap__free(&m);
	assert_null(m.base);
	memmap__free(&m);	/* idempotent */
}

static void test_gpa_to_hva_two_regions(void **state)
{
	struct guest_mem m;

	(void)state;
	memmap__layout(&m, 8 * GiB);
	m.base = (uint8_t *)FAKE_BASE;

	uintptr_t b = FAKE_BASE;
	/* low region */
	assert_int_equal(hva(&m, 0, 1), b);
	assert_int_equal(hva(&m, 3 * GiB - 1, 1), b + 3 * GiB - 1);
	assert_int_equal(hva(&m, 3 * GiB - 4096, 4096), b + 3 * GiB - 4096);
	assert_int_equal(hva(&m, 3 * GiB - 4096, 4097), 0);	/* into the hole */
	/* the MMIO hole 3-4 GiB */
	assert_int_equal(hva(&m, 3 * GiB, 1), 0);
	assert_int_equal(hva(&m, 0xFEC00000, 4), 0);
	assert_int_equal(hva(&m, 4 * GiB - 1, 1), 0);
	assert_int_equal(hva(&m, 4 * GiB - 1, 2), 0);		/* straddles into high */
	assert_int_equal(hva(&m, 0xD0000000, 0), 0);		/* len 0 in the hole */
	/* high region: gpa 4 GiB is host offset 3 GiB */
	assert_int_equal(hva(&m, 4 * GiB, 1), b + 3 * GiB);
	assert_int_equal(hva(&m, 4 * GiB + 0x1000, 8), b + 3 * GiB + 0x1000);
	assert_int_equal(hva(&m, 9 * GiB - 1, 1), b + 8 * GiB - 1);	/* last byte */
	assert_int_equal(hva(&m, 4 * GiB, 5 * GiB), b + 3 * GiB);
	assert_int_equal(hva(&m, 9 * GiB, 1), 0);			/* one past */
	assert_int_equal(hva(&m, 9 * GiB - 2, 4), 0);			/* straddles the end */
	assert_int_equal(hva(&m, 64 * GiB, 1), 0);			/* far above */
	assert_int_equal(hva(&m, 4 * GiB, 5 * GiB + 1), 0);
	/* a range spanning both regions is refused */
	assert_int_equal(hva(&m, 0, 8 * GiB), 0);
}

static void test_gpa_to_hva_3g_plus_page(void **state)
{
	struct guest_mem m;

	(void)state;
	memmap__layout(&m, 3 * GiB + 4096);
	m.base = (uint8_t *)FAKE_BASE;
	assert_int_equal(hva(&m, 4 * GiB, 4096), FAKE_BASE + 3 * GiB);
	assert_int_equal(hva(&m, 4 * GiB + 4095, 1), FAKE_BASE + 3 * GiB + 4095);
	assert_int_equal(hva(&m, 4 * GiB + 4096, 1), 0);
	assert_int_equal(hva(&m, 4 * GiB, 4097), 0);
	assert_int_equal(hva(&m, 3 * GiB, 1), 0);
}

static void test_alloc_high(void **state)
{
	struct guest_mem m;

	(void)state;
	/* 3 GiB + 8 KiB, NORESERVE: only the touched pages cost memory */
	memmap__layout(&m, 3 * GiB + 8192);
	if (memmap__alloc(&m) != 0)
		skip();
	uint8_t *lo = memmap__gpa_to_hva(&m, 3 * GiB - 1, 1);
	uint8_t *hi = memmap__gpa_to_hva(&m, 4 * GiB, 1);
	assert_non_null(lo);
	assert_non_null(hi);
	assert_ptr_equal(hi, lo + 1);	/* contiguous in the host mapping */
	*hi = 0x77;
	assert_int_equal(m.base[3 * GiB], 0x77);
	memmap__free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout_2m),
		cmocka_unit_test(test_layout_3g),
		cmocka_unit_test(test_layout_3g_plus_page),
		cmocka_unit_test(test_layout_4g),
		cmocka_unit_test(test_layout_8g),
		cmocka_unit_test(test_gpa_to_hva_single_region),
		cmocka_unit_test(test_gpa_to_hva_two_regions),
		cmocka_unit_test(test_gpa_to_hva_3g_plus_page),
		cmocka_unit_test(test_alloc_high),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
