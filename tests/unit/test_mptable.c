/*
 * Unit tests for the MP table writer (src/arch/x86/mptable.c).  The tables
 * are parsed back from guest memory with layouts taken from the Intel MP
 * Specification 1.4, not from mptable.c's private structs.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "khyve/memmap.h"
#include "khyve/mptable.h"
#include "khyve/util.h"

#include "fakevm.h"

/* What the configuration table says, decoded. */
struct parsed {
	unsigned int ncpu, nbus, nioapic, nintsrc, nlint, nentries;
	struct { uint8_t id, ver, flags; } cpu[256];
	uint8_t bus_id;
	char bus_name[7];
	uint8_t ioapic_id, ioapic_flags;
	uint32_t ioapic_addr;
	struct { uint8_t irqtype, src_bus, src_irq, dst_apic, dst_pin; uint16_t flags; } intsrc[32], lint[4];
	uint32_t table_end;
};

static struct parsed P;

/* Check the floating pointer and the header; decode every entry into P. */
static void parse(void)
{
	const uint8_t *f = table_at(MPTABLE_ADDR, 1);
	const uint8_t *h, *e, *end;
	uint32_t phys;
	uint16_t len, count;

	memset(&P, 0, sizeof(P));
	/* floating pointer structure */
	assert_memory_equal(f, "_MP_", 4);
	assert_int_equal(f[8], 1);		/* length in 16-byte units */
	assert_int_equal(f[9], 4);		/* spec rev 1.4 */
	assert_int_equal(sum(f, 16), 0);
	for (int i = 11; i < 16; i++)
		assert_int_equal(f[i], 0);	/* feature bytes: config table present */
	phys = rd32(f + 4);
	assert_in_range(phys, MPTABLE_ADDR + 16, MEM_BIOS_END - 44);

	/* configuration table header */
	h = table_at(phys, 1);
	assert_memory_equal(h, "PCMP", 4);
	len = rd16(h + 4);
	assert_in_range(len, 44, MEM_BIOS_END - phys);
	assert_int_equal(h[6], 4);		/* spec rev */
	assert_int_equal(sum(h, len), 0);
	assert_int_equal(rd32(h + 28), 0);	/* no OEM table */
	assert_int_equal(rd16(h + 32), 0);
	count = rd16(h + 34);
	assert_int_equal(rd32(h + 36), LAPIC_ADDR);
	assert_int_equal(rd16(h + 40), 0);	/* no extended entries */

	e = h + 44;
	end = h + len;
	P.table_end = phys + len;
	while (e < end) {
		P.nentries++;
		switch (e[0]) {
		case 0:	/* processor, 20 bytes */
			assert_true(e + 20 <= end);
			P.cpu[P.ncpu].id = e[1];
			P.cpu[P.ncpu].ver = e[2];
			P.cpu[P.ncpu].flags = e[3];
			P.ncpu++;
			e += 20;
			break;
		case 1:	/* bus */
			assert_true(e + 8 <= end);
			P.bus_id = e[1];
			memcpy(P.bus_name, e + 2, 6);
			P.nbus++;
			e += 8;
			break;
		case 2:	/* I/O APIC */
			assert_true(e + 8 <= end);
			P.ioapic_id = e[1];
			P.ioapic_flags = e[3];
			P.ioapic_addr = rd32(e + 4);
			P.nioapic++;
			e += 8;
			break;
		case 3:	/* I/O interrupt assignment */
		case 4:	/* local interrupt assignment */
			assert_true(e + 8 <= end);
			if (e[0] == 3) {
				assert_true(P.nintsrc < 32);
				P.intsrc[P.nintsrc].irqtype = e[1];
				P.intsrc[P.nintsrc].flags = rd16(e + 2);
				P.intsrc[P.nintsrc].src_bus = e[4];
				P.intsrc[P.nintsrc].src_irq = e[5];
				P.intsrc[P.nintsrc].dst_apic = e[6];
				P.intsrc[P.nintsrc].dst_pin = e[7];
				P.nintsrc++;
			} else {
				assert_true(P.nlint < 4);
				P.lint[P.nlint].irqtype = e[1];
				P.lint[P.nlint].flags = rd16(e + 2);
				P.lint[P.nlint].src_bus = e[4];
				P.lint[P.nlint].src_irq = e[5];
				P.lint[P.nlint].dst_apic = e[6];
				P.lint[P.nlint].dst_pin = e[7];
				P.nlint++;
			}
			e += 8;
			break;
		default:
			fail_msg("unknown MP entry type %u at offset %td", e[0], e - h);
		}
	}
	assert_ptr_equal(e, end);
	assert_int_equal(count, P.nentries);
}

static void check_tables(unsigned int n)
{
	assert_int_equal(mptable__write(&table_mem, n), 0);
	parse();

	/* processors: APIC IDs 0..n-1, all enabled, BSP only on 0 */
	assert_int_equal(P.ncpu, n);
	for (unsigned int i = 0; i < n; i++) {
		assert_int_equal(P.cpu[i].id, i);
		assert_int_equal(P.cpu[i].flags & 1, 1);
		assert_int_equal(P.cpu[i].flags & 2, i == 0 ? 2 : 0);
		assert_int_equal(P.cpu[i].flags & ~3, 0);
		assert_true(P.cpu[i].ver >= 0x10);	/* an integrated APIC */
	}
	/* one ISA bus */
	assert_int_equal(P.nbus, 1);
	assert_string_equal(P.bus_name, "ISA   ");
	/* one IOAPIC, with the ID after the last CPU */
	assert_int_equal(P.nioapic, 1);
	assert_int_equal(P.ioapic_id, n);
	assert_int_equal(P.ioapic_flags & 1, 1);
	assert_int_equal(P.ioapic_addr, IOAPIC_ADDR);

	/* ISA IRQs: 0 on pin 2, the others identity, 2 is the cascade */
	bool seen[16] = { false };
	unsigned int extint = 0;
	for (unsigned int i = 0; i < P.nintsrc; i++) {
		assert_int_equal(P.intsrc[i].src_bus, P.bus_id);
		assert_int_equal(P.intsrc[i].dst_apic, n);
		assert_int_equal(P.intsrc[i].flags, 0);	/* conforms to the bus */
		if (P.intsrc[i].irqtype == 3) {
			extint++;
			assert_int_equal(P.intsrc[i].dst_pin, 0);
			continue;
		}
		assert_int_equal(P.intsrc[i].irqtype, 0);	/* INT */
		unsigned int irq = P.intsrc[i].src_irq;
		assert_in_range(irq, 0, 15);
		assert_false(seen[irq]);
		seen[irq] = true;
		assert_int_equal(P.intsrc[i].dst_pin, irq == 0 ? 2 : irq);
	}
	assert_int_equal(extint, 1);
	for (unsigned int irq = 0; irq < 16; irq++)
		if (irq != 2 && !seen[irq])
			fail_msg("ISA IRQ %u has no routing entry", irq);
	assert_false(seen[2]);

	/* local interrupts: LINT0 ExtINT, LINT1 NMI, to all local APICs */
	assert_int_equal(P.nlint, 2);
	for (unsigned int i = 0; i < 2; i++) {
		assert_int_equal(P.lint[i].dst_apic, 0xff);
		if (P.lint[i].dst_pin == 0)
			assert_int_equal(P.lint[i].irqtype, 3);
		else if (P.lint[i].dst_pin == 1)
			assert_int_equal(P.lint[i].irqtype, 1);
		else
			fail_msg("LINT%u is not LINT0 or LINT1", P.lint[i].dst_pin);
	}
	assert_int_not_equal(P.lint[0].dst_pin, P.lint[1].dst_pin);

	/* everything inside the BIOS area, nothing written outside */
	assert_true(P.table_end <= MEM_BIOS_END);
	assert_int_equal(*table_at(MPTABLE_ADDR - 1, 1), 0xAA);
	assert_int_equal(*table_at(P.table_end, 1), 0xAA);
	assert_int_equal(*table_at(MEM_BIOS_END, 1), 0xAA);
}

static void test_one_cpu(void **state)
{
	(void)state;
	check_tables(1);
}

static void test_two_cpus(void **state)
{
	(void)state;
	check_tables(2);
}

static void test_eight_cpus(void **state)
{
	(void)state;
	check_tables(8);
}

static void test_max_cpus(void **state)
{
	(void)state;
	check_tables(254);
}

static void test_rewrite_smaller(void **state)
{
	(void)state;
	check_tables(8);
	/* a second write replaces the first (stale bytes may remain after it) */
	assert_int_equal(mptable__write(&table_mem, 1), 0);
	parse();
	assert_int_equal(P.ncpu, 1);
	assert_int_equal(P.cpu[0].flags, 3);
	assert_int_equal(P.ioapic_id, 1);
	assert_int_equal(P.nintsrc, 16);
	assert_int_equal(P.nlint, 2);
}

static void test_too_many_cpus(void **state)
{
	(void)state;
	assert_int_equal(mptable__write(&table_mem, 255), -ENOSPC);
	assert_int_equal(mptable__write(&table_mem, 4096), -ENOSPC);
	/* nothing written */
	assert_int_equal(*table_at(MPTABLE_ADDR, 1), 0xAA);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_one_cpu, table_mem_fill),
		cmocka_unit_test_setup(test_two_cpus, table_mem_fill),
		cmocka_unit_test_setup(test_eight_cpus, table_mem_fill),
		cmocka_unit_test_setup(test_max_cpus, table_mem_fill),
		cmocka_unit_test_setup(test_rewrite_smaller, table_mem_fill),
		cmocka_unit_test_setup(test_too_many_cpus, table_mem_fill),
	};

	return cmocka_run_group_tests(tests, table_mem_alloc, table_mem_free);
}
