/* Unit tests for the port-I/O / MMIO dispatch table (src/core/bus.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "khyve/bus.h"
#include "khyve/log.h"

/* A fake device that records its last access. */
struct dev {
	unsigned int reads, writes;
	uint64_t offset;
	unsigned int len;
	uint8_t wdata[8];
	uint8_t rvalue;		/* read returns rvalue, rvalue+1, ... */
};

static void dev_read(void *opaque, uint64_t offset, uint8_t *data, unsigned int len)
{
	struct dev *d = opaque;

	d->reads++;
	d->offset = offset;
	d->len = len;
	for (unsigned int i = 0; i < len; i++)
		data[i] = (uint8_t)(d->rvalue + i);
}

static void dev_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned int len)
{
	struct dev *d = opaque;

	d->writes++;
	d->offset = offset;
	d->len = len;
	memset(d->wdata, 0, sizeof(d->wdata));
	memcpy(d->wdata, data, len < sizeof(d->wdata) ? len : sizeof(d->wdata));
}

static struct bus bus;

static int setup(void **state)
{
	(void)state;
	bus__init(&bus);
	return 0;
}

static int reg(enum bus_space sp, uint64_t start, uint64_t len, struct dev *d)
{
	return bus__register(&bus, sp, start, len, dev_read, dev_write, d, "dev");
}

static void test_register_and_overlap(void **state)
{
	struct dev d = { 0 };

	(void)state;
	assert_int_equal(reg(BUS_PIO, 0x3f8, 8, &d), 0);
	assert_int_equal(bus.n[BUS_PIO], 1);
	/* same start, inside, straddling either end, covering */
	assert_int_equal(reg(BUS_PIO, 0x3f8, 8, &d), -EBUSY);
	assert_int_equal(reg(BUS_PIO, 0x3fb, 1, &d), -EBUSY);
	assert_int_equal(reg(BUS_PIO, 0x3f0, 9, &d), -EBUSY);
	assert_int_equal(reg(BUS_PIO, 0x3ff, 4, &d), -EBUSY);
	assert_int_equal(reg(BUS_PIO, 0x3f0, 0x20, &d), -EBUSY);
	assert_int_equal(bus.n[BUS_PIO], 1);
	/* adjacent on both sides is fine */
	assert_int_equal(reg(BUS_PIO, 0x3f0, 8, &d), 0);
	assert_int_equal(reg(BUS_PIO, 0x400, 8, &d), 0);
	assert_int_equal(bus.n[BUS_PIO], 3);
	/* the two spaces are independent */
	assert_int_equal(reg(BUS_MMIO, 0x3f8, 8, &d), 0);
	assert_int_equal(bus.n[BUS_MMIO], 1);
	assert_int_equal(reg(BUS_MMIO, 0x3fc, 1, &d), -EBUSY);
}

static void test_register_invalid(void **state)
{
	struct dev d = { 0 };

	(void)state;
	assert_int_equal(reg(BUS_PIO, 0x80, 0, &d), -EINVAL);
	assert_int_equal(reg(BUS_MMIO, UINT64_MAX - 3, 8, &d), -EINVAL);
	assert_int_equal(bus.n[BUS_PIO], 0);
	assert_int_equal(bus.n[BUS_MMIO], 0);
}

static void test_register_full(void **state)
{
	struct dev d = { 0 };

	(void)state;
	for (unsigned int i = 0; i < BUS_MAX_RANGES; i++)
		assert_int_equal(reg(BUS_MMIO, 0x1000 * (uint64_t)i, 0x100, &d), 0);
	assert_int_equal(bus.n[BUS_MMIO], BUS_MAX_RANGES);
	assert_int_equal(reg(BUS_MMIO, 0x100000, 0x100, &d), -ENOSPC);
	assert_int_equal(bus.n[BUS_MMIO], BUS_MAX_RANGES);
	/* the other space still has room */
	assert_int_equal(reg(BUS_PIO, 0x100000, 0x100, &d), 0);
}

static void test_dispatch_offsets(void **state)
{
	struct dev a = { .rvalue = 0x10 }, b = { .rvalue = 0x40 };
	uint8_t buf[4];

	(void)state;
	assert_int_equal(reg(BUS_PIO, 0x3f8, 8, &a), 0);
	assert_int_equal(reg(BUS_MMIO, 0xfec00000, 0x1000, &b), 0);

	memset(buf, 0, sizeof(buf));
	bus__access(&bus, BUS_PIO, 0x3fd, buf, 1, false);
	assert_int_equal(a.reads, 1);
	assert_int_equal(a.offset, 5);
	assert_int_equal(a.len, 1);
	assert_int_equal(buf[0], 0x10);
	assert_int_equal(buf[1], 0);
	assert_int_equal(b.reads, 0);

	buf[0] = 0x5a;
	buf[1] = 0xa5;
	bus__access(&bus, BUS_PIO, 0x3f8, buf, 2, true);
	assert_int_equal(a.writes, 1);
	assert_int_equal(a.offset, 0);
	assert_int_equal(a.len, 2);
	assert_int_equal(a.wdata[0], 0x5a);
	assert_int_equal(a.wdata[1], 0xa5);

	/* last byte of a range */
	bus__access(&bus, BUS_PIO, 0x3ff, buf, 1, false);
	assert_int_equal(a.reads, 2);
	assert_int_equal(a.offset, 7);

	memset(buf, 0, sizeof(buf));
	bus__access(&bus, BUS_MMIO, 0xfec00010, buf, 4, false);
	assert_int_equal(b.reads, 1);
	assert_int_equal(b.offset, 0x10);
	assert_int_equal(b.len, 4);
	assert_int_equal(buf[0], 0x40);
	assert_int_equal(buf[3], 0x43);

	uint8_t w[4] = { 1, 2, 3, 4 };
	bus__access(&bus, BUS_MMIO, 0xfec00ffc, w, 4, true);
	assert_int_equal(b.writes, 1);
	assert_int_equal(b.offset, 0xffc);
	assert_memory_equal(b.wdata, w, 4);

	/* a PIO access at an MMIO device's address does not reach it */
	bus__access(&bus, BUS_PIO, 0x3f8 + 8, buf, 1, false);
	assert_int_equal(a.reads, 2);
	assert_int_equal(b.reads, 1);
}

static void test_unclaimed(void **state)
{
	struct dev a = { .rvalue = 0x10 };
	uint8_t buf[8];
	int saved = log_level;

	(void)state;
	assert_int_equal(reg(BUS_PIO, 0x60, 1, &a), 0);
	for (int pass = 0; pass < 2; pass++) {
		/* second pass with debug logging on, to exercise that path */
		log_level = pass ? LOG_DEBUG : LOG_ERROR;
		for (unsigned int len = 1; len <= 4; len *= 2) {
			memset(buf, 0x00, sizeof(buf));
			bus__access(&bus, BUS_PIO, 0x61, buf, len, false);
			for (unsigned int i = 0; i < len; i++)
				assert_int_equal(buf[i], 0xff);
			assert_int_equal(buf[len], 0x00);	/* nothing beyond len */

			memset(buf, 0x00, sizeof(buf));
			bus__access(&bus, BUS_MMIO, 0xd0000000, buf, len, false);
			for (unsigned int i = 0; i < len; i++)
				assert_int_equal(buf[i], 0xff);
			assert_int_equal(buf[len], 0x00);
		}
		/* writes are dropped, and neither reach the neighbour */
		memset(buf, 0x12, sizeof(buf));
		bus__access(&bus, BUS_PIO, 0x61, buf, 1, true);
		bus__access(&bus, BUS_PIO, 0x5f, buf, 4, true);
		bus__access(&bus, BUS_MMIO, 0x60, buf, 4, true);
		assert_int_equal(buf[0], 0x12);
		assert_int_equal(a.reads, 0);
		assert_int_equal(a.writes, 0);
	}
	log_level = saved;
}

static void test_null_handlers(void **state)
{
	uint8_t buf[4];
	struct dev d = { .rvalue = 1 };

	(void)state;
	assert_int_equal(bus__register(&bus, BUS_PIO, 0x80, 1, NULL, dev_write, &d, "post"), 0);
	assert_int_equal(bus__register(&bus, BUS_PIO, 0x90, 4, dev_read, NULL, &d, "ro"), 0);
	for (unsigned int len = 1; len <= 4; len *= 2) {
		memset(buf, 0, sizeof(buf));
		bus__access(&bus, BUS_PIO, 0x80, buf, len, false);
		for (unsigned int i = 0; i < len; i++)
			assert_int_equal(buf[i], 0xff);
		if (len < 4)
			assert_int_equal(buf[len], 0);
	}
	assert_int_equal(d.reads, 0);
	buf[0] = 0x33;
	bus__access(&bus, BUS_PIO, 0x80, buf, 1, true);
	assert_int_equal(d.writes, 1);
	assert_int_equal(d.wdata[0], 0x33);
	/* NULL write handler: dropped, buffer untouched */
	bus__access(&bus, BUS_PIO, 0x91, buf, 1, true);
	assert_int_equal(d.writes, 1);
	assert_int_equal(buf[0], 0x33);
	bus__access(&bus, BUS_PIO, 0x93, buf, 1, false);
	assert_int_equal(d.reads, 1);
	assert_int_equal(d.offset, 3);
	assert_int_equal(buf[0], 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_register_and_overlap, setup),
		cmocka_unit_test_setup(test_register_invalid, setup),
		cmocka_unit_test_setup(test_register_full, setup),
		cmocka_unit_test_setup(test_dispatch_offsets, setup),
		cmocka_unit_test_setup(test_unclaimed, setup),
		cmocka_unit_test_setup(test_null_handlers, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
