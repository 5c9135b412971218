/*
 * Unit tests for the ACPI tables (src/arch/x86/acpi.c), parsed back from
 * guest memory as an operating system finds them: the RSDP by scanning
 * the BIOS area, then the XSDT (and RSDT), MADT and MCFG, with byte
 * offsets from the ACPI 6.5 specification, not from acpi.c's structs.
 * They must agree with the MP table, which stays, and overlap nothing.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "khyve/acpi.h"
#include "khyve/memmap.h"
#include "khyve/mptable.h"
#include "khyve/multiboot.h"
#include "khyve/pci.h"
#include "khyve/util.h"

#include "fakevm.h"

/* Scan 0xE0000-0xFFFFF on 16-byte boundaries, as guests do; the one RSDP found, checked. */
static uint64_t find_rsdp(void)
{
	uint64_t found = 0;
	unsigned int n = 0;

	for (uint64_t a = 0xE0000; a < 0x100000; a += 16) {
		const uint8_t *p = table_at(a, 16);

		if (!memcmp(p, "RSD PTR ", 8) && !sum(p, 20)) {
			found = a;
			n++;
		}
	}
	assert_int_equal(n, 1);
	return found;
}

/*
 * Check a description header at addr with signature sig and revision rev:
 * length, checksum, OEM fields; returns its length.  The table must lie
 * in the ACPI area.
 */
static uint32_t check_table(uint64_t addr, const char *sig, uint8_t rev)
{
	const uint8_t *h = table_at(addr, 36);
	uint32_t len = rd32(h + 4);

	assert_memory_equal(h, sig, 4);
	assert_true(len >= 36);
	assert_true(addr >= ACPI_ADDR && addr + len <= ACPI_END);
	h = table_at(addr, len);
	assert_int_equal(h[8], rev);
	assert_int_equal(sum(h, len), 0);
	assert_memory_equal(h + 10, "KHYVE ", 6);	/* OEMID, as the RSDP's */
	return len;
}

/* The tables the XSDT lists, by signature; the RSDT must list the same. */
struct root {
	uint64_t rsdp, xsdt, rsdt;
	uint64_t madt, mcfg;
	unsigned int ntables;
};

static void parse_root(struct root *r)
{
	const uint8_t *p, *x, *t;
	uint32_t xlen, rlen;

	memset(r, 0, sizeof(*r));
	r->rsdp = find_rsdp();
	p = table_at(r->rsdp, 36);
	assert_int_equal(r->rsdp % 16, 0);
	assert_int_equal(p[15], 2);			/* revision: ACPI 2.0+ */
	assert_int_equal(rd32(p + 20), 36);		/* length */
	assert_int_equal(sum(p, 36), 0);		/* extended checksum */
	assert_memory_equal(p + 9, "KHYVE ", 6);
	for (int i = 33; i < 36; i++)
		assert_int_equal(p[i], 0);
	r->rsdt = rd32(p + 16);
	r->xsdt = rd64(p + 24);

	xlen = check_table(r->xsdt, "XSDT", 1);
	assert_int_equal((xlen - 36) % 8, 0);
	r->ntables = (xlen - 36) / 8;
	rlen = check_table(r->rsdt, "RSDT", 1);
	assert_int_equal(rlen - 36, 4 * r->ntables);
	x = table_at(r->xsdt, xlen);
	t = table_at(r->rsdt, rlen);
	for (unsigned int i = 0; i < r->ntables; i++) {
		uint64_t a = rd64(x + 36 + 8 * i);
		const uint8_t *h = table_at(a, 4);

		assert_int_equal(rd32(t + 36 + 4 * i), a);
		if (!memcmp(h, "APIC", 4)) {
			assert_int_equal(r->madt, 0);
			r->madt = a;
		} else if (!memcmp(h, "MCFG", 4)) {
			assert_int_equal(r->mcfg, 0);
			r->mcfg = a;
		} else {
			fail_msg("unexpected table '%.4s'", (const char *)h);
		}
	}
}

/* The MADT, decoded. */
struct madt {
	uint32_t lapic_addr, flags;
	unsigned int nlapic, nioapic, niso, nnmi;
	struct { uint8_t uid, id; uint32_t flags; } lapic[256];
	uint8_t ioapic_id;
	uint32_t ioapic_addr, ioapic_gsi;
	struct { uint8_t bus, src; uint32_t gsi; uint16_t flags; } iso[16];
	struct { uint8_t uid, lint; uint16_t flags; } nmi[4];
};

static void parse_madt(uint64_t addr, struct madt *m)
{
	uint32_t len = check_table(addr, "APIC", 6);
	const uint8_t *t = table_at(addr, len), *e = t + 44, *end = t + len;

	memset(m, 0, sizeof(*m));
	m->lapic_addr = rd32(t + 36);
	m->flags = rd32(t + 40);
	while (e < end) {
		assert_true(e + 2 <= end && e[1] >= 2 && e + e[1] <= end);
		switch (e[0]) {
		case 0:
			assert_int_equal(e[1], 8);
			m->lapic[m->nlapic].uid = e[2];
			m->lapic[m->nlapic].id = e[3];
			m->lapic[m->nlapic].flags = rd32(e + 4);
			m->nlapic++;
			break;
		case 1:
			assert_int_equal(e[1], 12);
			assert_int_equal(e[3], 0);
			m->ioapic_id = e[2];
			m->ioapic_addr = rd32(e + 4);
			m->ioapic_gsi = rd32(e + 8);
			m->nioapic++;
			break;
		case 2:
			assert_int_equal(e[1], 10);
			assert_true(m->niso < 16);
			m->iso[m->niso].bus = e[2];
			m->iso[m->niso].src = e[3];
			m->iso[m->niso].gsi = rd32(e + 4);
			m->iso[m->niso].flags = rd16(e + 8);
			m->niso++;
			break;
		case 4:
			assert_int_equal(e[1], 6);
			assert_true(m->nnmi < 4);
			m->nmi[m->nnmi].uid = e[2];
			m->nmi[m->nnmi].flags = rd16(e + 3);
			m->nmi[m->nnmi].lint = e[5];
			m->nnmi++;
			break;
		default:
			fail_msg("unexpected MADT entry type %u", e[0]);
		}
		e += e[1];
	}
	assert_ptr_equal(e, end);
}

static void test_rsdp_and_roots(void **state)
{
	struct root r;

	(void)state;
	assert_int_equal(acpi__write(&table_mem, 2, PCI_ECAM_BASE), 0);
	parse_root(&r);
	assert_int_equal(r.rsdp, ACPI_RSDP_ADDR);
	assert_int_equal(r.ntables, 2);
	assert_true(r.madt && r.mcfg);
	/* the tables do not overlap one another */
	uint64_t a[4] = { r.xsdt, r.rsdt, r.madt, r.mcfg };
	for (unsigned int i = 0; i < 4; i++) {
		uint32_t li = rd32(table_at(a[i] + 4, 4));

		assert_true(a[i] >= r.rsdp + 36);
		for (unsigned int j = 0; j < 4; j++) {
			uint32_t lj = rd32(table_at(a[j] + 4, 4));

			if (i != j)
				assert_true(a[i] + li <= a[j] || a[j] + lj <= a[i]);
		}
	}
}

static void test_mcfg(void **state)
{
	struct root r;
	const uint8_t *t;

	(void)state;
	assert_int_equal(acpi__write(&table_mem, 1, PCI_ECAM_BASE), 0);
	parse_root(&r);
	assert_int_equal(check_table(r.mcfg, "MCFG", 1), 60);	/* one allocation */
	t = table_at(r.mcfg, 60);
	assert_int_equal(rd64(t + 36), 0);			/* reserved */
	assert_int_equal(rd64(t + 44), PCI_ECAM_BASE);
	assert_int_equal(rd16(t + 52), 0);			/* segment */
	assert_int_equal(t[54], 0);				/* buses 0-0 */
	assert_int_equal(t[55], 0);
	assert_int_equal(rd32(t + 56), 0);
	/* the window is 1 MiB per bus: exactly PCI_ECAM_SIZE, outside the BARs' window */
	assert_int_equal((t[55] - t[54] + 1) << 20, PCI_ECAM_SIZE);
	assert_true(PCI_ECAM_BASE >= PCI_MMIO_END || PCI_ECAM_BASE + PCI_ECAM_SIZE <= PCI_MMIO_BASE);
	assert_true(PCI_ECAM_BASE + PCI_ECAM_SIZE <= IOAPIC_ADDR);
}

static void test_no_mcfg(void **state)
{
	struct root r;

	(void)state;
	assert_int_equal(acpi__write(&table_mem, 1, 0), 0);
	parse_root(&r);
	assert_int_equal(r.ntables, 1);
	assert_true(r.madt);
	assert_int_equal(r.mcfg, 0);
}

static void test_madt(void **state)
{
	static const unsigned int counts[] = { 1, 2, 3, 8, 64, 254 };
	static struct madt m;
	struct root r;

	(void)state;
	for (unsigned int k = 0; k < ARRAY_SIZE(counts); k++) {
		unsigned int n = counts[k];

		print_message("    %u vCPUs\n", n);
		assert_int_equal(acpi__write(&table_mem, n, PCI_ECAM_BASE), 0);
		parse_root(&r);
		parse_madt(r.madt, &m);
		assert_int_equal(m.lapic_addr, LAPIC_ADDR);
		assert_int_equal(m.flags, 1);			/* PCAT_COMPAT: 8259s */
		assert_int_equal(m.nlapic, n);
		for (unsigned int i = 0; i < n; i++) {
			assert_int_equal(m.lapic[i].uid, i);
			assert_int_equal(m.lapic[i].id, i);	/* the APIC IDs cpuid.c gives */
			assert_int_equal(m.lapic[i].flags, 1);	/* enabled */
		}
		assert_int_equal(m.nioapic, 1);
		assert_int_equal(m.ioapic_id, n);
		assert_int_equal(m.ioapic_addr, IOAPIC_ADDR);
		assert_int_equal(m.ioapic_gsi, 0);
		/* ISA IRQ 0 on GSI 2, conforming to the bus; nothing else overridden */
		assert_int_equal(m.niso, 1);
		assert_int_equal(m.iso[0].bus, 0);
		assert_int_equal(m.iso[0].src, 0);
		assert_int_equal(m.iso[0].gsi, 2);
		assert_int_equal(m.iso[0].flags, 0);
		/* NMI on LINT1 of every processor */
		assert_int_equal(m.nnmi, 1);
		assert_int_equal(m.nmi[0].uid, 0xff);
		assert_int_equal(m.nmi[0].lint, 1);
		assert_int_equal(m.nmi[0].flags, 0);
	}
}

static void test_bad_counts(void **state)
{
	struct guest_mem none;

	(void)state;
	assert_int_equal(acpi__write(&table_mem, 0, PCI_ECAM_BASE), -ENOSPC);
	assert_int_equal(acpi__write(&table_mem, 255, PCI_ECAM_BASE), -ENOSPC);
	memmap__layout(&none, 16 * MiB);	/* laid out, not mapped */
	assert_int_equal(acpi__write(&none, 1, PCI_ECAM_BASE), -ENOSPC);
}

/* Only [ACPI_ADDR, ACPI_END) is written. */
static void test_writes_nothing_else(void **state)
{
	const uint8_t *lo = table_at(0, ACPI_ADDR), *hi = table_at(ACPI_END, 2 * MiB - ACPI_END);

	(void)state;
	assert_int_equal(acpi__write(&table_mem, 254, PCI_ECAM_BASE), 0);
	for (uint64_t i = 0; i < ACPI_ADDR; i++)
		if (lo[i] != 0xAA)
			fail_msg("byte at 0x%llx written", (unsigned long long)i);
	for (uint64_t i = 0; i < 2 * MiB - ACPI_END; i++)
		if (hi[i] != 0xAA)
			fail_msg("byte at 0x%llx written", (unsigned long long)(ACPI_END + i));
}

/*
 * With the MP table, in either order: both intact and saying the same
 * thing; the ACPI area is below the MP table and is never RAM the guest
 * is given (the multiboot memory map) or the loader uses (it refuses the
 * EBDA-1 MiB range).
 */
static void test_with_mptable(void **state)
{
	struct mptable_pci_irq irqs[2] = { { .slot = 3, .pin = 1, .gsi = 19 }, { .slot = 4, .pin = 1, .gsi = 20 } };
	struct mb_mmap_entry mm[8];
	static struct madt m;
	unsigned int nmm;
	struct root r;

	(void)state;
	for (int order = 0; order < 2; order++) {
		const uint8_t *f, *h, *e, *end;
		unsigned int ioapic = 0, irq0_pin = 0xff;

		if (order) {
			assert_int_equal(acpi__write(&table_mem, 254, PCI_ECAM_BASE), 0);
			assert_int_equal(mptable__write_pci(&table_mem, 254, true, irqs, 2), 0);
		} else {
			assert_int_equal(mptable__write_pci(&table_mem, 254, true, irqs, 2), 0);
			assert_int_equal(acpi__write(&table_mem, 254, PCI_ECAM_BASE), 0);
		}
		parse_root(&r);
		parse_madt(r.madt, &m);
		f = table_at(MPTABLE_ADDR, 16);
		assert_memory_equal(f, "_MP_", 4);
		assert_int_equal(sum(f, 16), 0);
		h = table_at(rd32(f + 4), 44);
		h = table_at(rd32(f + 4), rd16(h + 4));
		assert_int_equal(sum(h, rd16(h + 4)), 0);
		end = h + rd16(h + 4);
		for (e = h + 44; e < end; e += e[0] == 0 ? 20 : 8) {
			if (e[0] == 2)
				ioapic = e[1];
			/* the ISA bus is MP bus 1 with PCI; IRQ 0's pin */
			if (e[0] == 3 && e[4] == 1 && e[5] == 0 && e[1] == 0)
				irq0_pin = e[7];
		}
		assert_int_equal(ioapic, m.ioapic_id);
		assert_int_equal(irq0_pin, m.iso[0].gsi);
		assert_true(ACPI_END <= MPTABLE_ADDR);
	}
	nmm = multiboot__mmap(&table_mem, mm, ARRAY_SIZE(mm));
	for (unsigned int i = 0; i < nmm; i++)
		if (mm[i].type == MB_MMAP_AVAILABLE)
			assert_true(mm[i].addr + mm[i].len <= ACPI_ADDR || mm[i].addr >= ACPI_END);
	assert_true(ACPI_ADDR >= MEM_EBDA_START && ACPI_END <= MEM_BIOS_END);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_rsdp_and_roots, table_mem_fill),
		cmocka_unit_test_setup(test_mcfg, table_mem_fill),
		cmocka_unit_test_setup(test_no_mcfg, table_mem_fill),
		cmocka_unit_test_setup(test_madt, table_mem_fill),
		cmocka_unit_test_setup(test_bad_counts, table_mem_fill),
		cmocka_unit_test_setup(test_writes_nothing_else, table_mem_fill),
		cmocka_unit_test_setup(test_with_mptable, table_mem_fill),
	};

	return cmocka_run_group_tests(tests, table_mem_alloc, table_mem_free);
}
