/*
 * Unit tests for the ACPI tables (src/arch/x86/acpi.c), parsed back from
 * guest memory as an operating system finds them: the RSDP by scanning
 * the BIOS area, then the XSDT (and RSDT), MADT and MCFG, with byte
 * offsets from the ACPI 6.5 specification, not from acpi.c's structs.
 * They must agree with the MP table, which stays, and overlap nothing.
 */
#include <errno.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "khyve/acpi.h"
#include "khyve/aml.h"
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
	uint64_t madt, mcfg, fadt;
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
		} else if (!memcmp(h, "FACP", 4)) {
			assert_int_equal(r->fadt, 0);
			r->fadt = a;
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


static const struct mptable_pci_irq test_irqs[2] = { { 2, 1, 18 }, { 3, 1, 19 } };

/* The tables as vm.c writes them: with PCI (ecam != 0), two INTx routes and a 64-bit window. */
static int write_tables(struct guest_mem *mem, unsigned int ncpus, uint64_t ecam)
{
	struct acpi_config c = { .ncpus = ncpus, .ecam_base = ecam };

	if (ecam) {
		c.irqs = test_irqs;
		c.nirqs = 2;
		c.mmio64_base = 1ULL << 32;
		c.mmio64_end = 1ULL << 40;
	}
	return acpi__write(mem, &c);
}

static void test_rsdp_and_roots(void **state)
{
	struct root r;

	(void)state;
	assert_int_equal(write_tables(&table_mem, 2, PCI_ECAM_BASE), 0);
	parse_root(&r);
	assert_int_equal(r.rsdp, ACPI_RSDP_ADDR);
	assert_int_equal(r.ntables, 3);
	assert_true(r.madt && r.mcfg && r.fadt);
	/* the tables do not overlap one another */
	uint64_t a[6] = { r.xsdt, r.rsdt, r.madt, r.mcfg, r.fadt, rd64(table_at(r.fadt + 140, 8)) };
	for (unsigned int i = 0; i < 6; i++) {
		uint32_t li = rd32(table_at(a[i] + 4, 4));

		assert_true(a[i] >= r.rsdp + 36);
		for (unsigned int j = 0; j < 6; j++) {
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
	assert_int_equal(write_tables(&table_mem, 1, PCI_ECAM_BASE), 0);
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
	assert_int_equal(write_tables(&table_mem, 1, 0), 0);
	parse_root(&r);
	assert_int_equal(r.ntables, 2);	/* MADT and FADT */
	assert_true(r.madt);
	assert_true(r.fadt);
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
		assert_int_equal(write_tables(&table_mem, n, PCI_ECAM_BASE), 0);
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
	assert_int_equal(write_tables(&table_mem, 0, PCI_ECAM_BASE), -ENOSPC);
	assert_int_equal(write_tables(&table_mem, 255, PCI_ECAM_BASE), -ENOSPC);
	memmap__layout(&none, 16 * MiB);	/* laid out, not mapped */
	assert_int_equal(write_tables(&none, 1, PCI_ECAM_BASE), -ENOSPC);
}

/*
 * Only [ACPI_ADDR, ACPI_END) is written, and the reset vector's 16 bytes:
 * "mov al, 1; mov dx, 0x602; out dx, al", the reset register's write.
 */
static void test_writes_nothing_else(void **state)
{
	static const uint8_t reset[] = { 0xb0, ACPI_RESET_VALUE, 0xba, 0x02, 0x06, 0xee };
	const uint8_t *lo = table_at(0, ACPI_ADDR), *hi = table_at(ACPI_END, 2 * MiB - ACPI_END);

	(void)state;
	assert_int_equal(write_tables(&table_mem, 254, PCI_ECAM_BASE), 0);
	for (uint64_t i = 0; i < ACPI_ADDR; i++)
		if (lo[i] != 0xAA)
			fail_msg("byte at 0x%llx written", (unsigned long long)i);
	for (uint64_t i = 0; i < 2 * MiB - ACPI_END; i++)
		if (hi[i] != 0xAA && (ACPI_END + i < ACPI_RESET_VECTOR || ACPI_END + i >= ACPI_RESET_VECTOR + 16))
			fail_msg("byte at 0x%llx written", (unsigned long long)(ACPI_END + i));
	assert_memory_equal(table_at(ACPI_RESET_VECTOR, sizeof(reset)), reset, sizeof(reset));
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
			assert_int_equal(write_tables(&table_mem, 254, PCI_ECAM_BASE), 0);
			assert_int_equal(mptable__write_pci(&table_mem, 254, true, irqs, 2), 0);
		} else {
			assert_int_equal(mptable__write_pci(&table_mem, 254, true, irqs, 2), 0);
			assert_int_equal(write_tables(&table_mem, 254, PCI_ECAM_BASE), 0);
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

/* Does needle occur in [p, p+len)? */
static bool contains(const uint8_t *p, size_t len, const uint8_t *needle, size_t n)
{
	for (size_t i = 0; i + n <= len; i++)
		if (!memcmp(p + i, needle, n))
			return true;
	return false;
}

/* FADT: hardware-reduced, sleep and reset on the acpi-pm ports, its DSDT whole. */
static void test_fadt_dsdt(void **state)
{
	static const uint8_t s5[] = { 0x08, '\\', '_', 'S', '5', '_', 0x12, 0x07, 0x04, 0x0a, 0x05, 0, 0, 0 };
	static const uint8_t pnp0a08[] = { 0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0a, 0x08 };
	static const uint8_t prt0[] = { 0x12, 0x0b, 0x04, 0x0c, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x0a, 18 };
	static const uint8_t com1_irq[] = { 0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08, 0x22, 0x10, 0x00,
					    0x79, 0x00 };
	static const uint8_t ecam[] = { 0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xe0, 0x00, 0x00, 0x10, 0x00 };
	struct root r;
	const uint8_t *f, *d;
	uint32_t dlen;

	(void)state;
	assert_int_equal(write_tables(&table_mem, 2, PCI_ECAM_BASE), 0);
	parse_root(&r);
	assert_int_equal(r.ntables, 3);
	assert_int_equal(check_table(r.fadt, "FACP", 6), 276);
	f = table_at(r.fadt, 276);
	assert_int_equal(f[131], 5);				/* minor revision */
	assert_true(rd32(f + 112) & (1u << 20));		/* HW_REDUCED_ACPI */
	assert_true(rd32(f + 112) & (1u << 10));		/* RESET_REG_SUP */
	assert_int_equal(rd16(f + 109), (1u << 2) | (1u << 5));	/* no VGA, no CMOS RTC, no 8042 */
	assert_int_equal(f[116], 1);				/* reset: system I/O, */
	assert_int_equal(f[117], 8);				/* 8 bits */
	assert_int_equal(rd64(f + 120), ACPI_RESET_PORT);
	assert_int_equal(f[128], ACPI_RESET_VALUE);
	assert_int_equal(f[244], 1);				/* SLEEP_CONTROL_REG */
	assert_int_equal(rd64(f + 248), ACPI_SLEEP_CTL_PORT);
	assert_int_equal(f[256], 1);				/* SLEEP_STATUS_REG */
	assert_int_equal(rd64(f + 260), ACPI_SLEEP_STS_PORT);
	for (int i = 48; i < 109; i++)				/* no legacy blocks */
		assert_int_equal(f[i], 0);
	assert_int_equal(rd32(f + 40), rd64(f + 140));		/* DSDT, 32- and 64-bit */
	dlen = check_table(rd64(f + 140), "DSDT", 2);
	d = table_at(rd64(f + 140), dlen);
	assert_true(contains(d, dlen, s5, sizeof(s5)));
	assert_true(contains(d, dlen, pnp0a08, sizeof(pnp0a08)));
	assert_true(contains(d, dlen, prt0, sizeof(prt0)));
	assert_true(contains(d, dlen, com1_irq, sizeof(com1_irq)));
	assert_true(contains(d, dlen, ecam, sizeof(ecam)));
	/* without PCI: no host bridge, COM1 and \_S5 still */
	assert_int_equal(write_tables(&table_mem, 1, 0), 0);
	parse_root(&r);
	f = table_at(r.fadt, 276);
	dlen = check_table(rd64(f + 140), "DSDT", 2);
	d = table_at(rd64(f + 140), dlen);
	assert_false(contains(d, dlen, pnp0a08, sizeof(pnp0a08)));
	assert_true(contains(d, dlen, s5, sizeof(s5)));
	assert_true(contains(d, dlen, com1_irq, sizeof(com1_irq)));
}

/* The generation ID: written with its marker, renewed only where the marker is. */
static void test_genid(void **state)
{
	static const uint8_t vgen_addr[] = { 0x08, 'A', 'D', 'D', 'R', 0x12, 0x08, 0x02, 0x0c, 0x00, 0xf0, 0x0e, 0x00, 0x00 };
	static const uint8_t evt[] = { 0x14, 0x13, '_', 'E', 'V', 'T', 0x01, 0x86, '\\', 0x2e, '_', 'S', 'B', '_',
				       'V', 'G', 'E', 'N', 0x0a, 0x80 };
	struct acpi_config c = { .ncpus = 1 };
	uint8_t id2[16] = { 9, 8, 7 };
	const uint8_t *g, *f, *d;
	struct root r;
	uint32_t dlen;

	(void)state;
	for (int i = 0; i < 16; i++)
		c.genid[i] = (uint8_t)(0x40 + i);
	assert_int_equal(acpi__write(&table_mem, &c), 0);
	g = table_at(ACPI_VMGENID_ADDR, 32);
	assert_memory_equal(g, c.genid, 16);
	parse_root(&r);
	f = table_at(r.fadt, 276);
	dlen = check_table(rd64(f + 140), "DSDT", 2);
	d = table_at(rd64(f + 140), dlen);
	assert_true(contains(d, dlen, vgen_addr, sizeof(vgen_addr)));
	assert_true(contains(d, dlen, evt, sizeof(evt)));
	assert_true(contains(d, dlen, (const uint8_t *)"VM_GEN_COUNTER", 15));
	assert_true(contains(d, dlen, (const uint8_t *)"ACPI0013", 9));
	/* the tables end before the ID's page */
	assert_true(rd64(f + 140) + dlen <= ACPI_VMGENID_ADDR);
	assert_true(acpi__genid_renew(&table_mem, id2));
	assert_memory_equal(table_at(ACPI_VMGENID_ADDR, 16), id2, 16);
	/* a memory image without the page (an older snapshot) is left alone */
	memset((uint8_t *)table_at(ACPI_VMGENID_ADDR, 32), 0, 32);
	assert_false(acpi__genid_renew(&table_mem, id2));
	assert_int_equal(table_at(ACPI_VMGENID_ADDR, 1)[0], 0);
}

/* The AML writer's encodings that the DSDT test does not reach: long PkgLengths, names. */
static void test_aml_encoding(void **state)
{
	static uint8_t buf[8192], zeros[5000];
	static const uint8_t dual[] = { 0x10, 0x0b, '\\', 0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I', '0' };
	static const uint8_t res[] = { 0x11, 0x08, 0x0a, 0x05, 0x22, 0x10, 0x00, 0x79, 0x00 };
	struct aml a;

	(void)state;
	aml__init(&a, buf, sizeof(buf));
	aml__open_scope(&a, "ABCD");
	aml__bytes(&a, zeros, 100);
	aml__close(&a);
	assert_int_equal(a.len, 107);
	assert_int_equal(buf[1], 0x40 | (106 & 0xf));		/* two bytes: 106 = 0x6A */
	assert_int_equal(buf[2], 106 >> 4);

	aml__init(&a, buf, sizeof(buf));
	aml__open_scope(&a, "ABCD");
	aml__bytes(&a, zeros, 5000);
	aml__close(&a);
	assert_int_equal(buf[1], 0x80 | (5007 & 0xf));		/* three bytes: 5007 = 0x138F */
	assert_int_equal(buf[2], (5007 >> 4) & 0xff);
	assert_int_equal(buf[3], 5007 >> 12);

	aml__init(&a, buf, sizeof(buf));
	aml__open_scope(&a, "\\_SB_.PCI0");
	aml__close(&a);
	assert_int_equal(a.len, sizeof(dual));
	assert_memory_equal(buf, dual, sizeof(dual));

	aml__init(&a, buf, sizeof(buf));
	aml__open_resources(&a);
	aml__res_irq(&a, 4);
	aml__close(&a);
	assert_int_equal(a.len, sizeof(res));
	assert_memory_equal(buf, res, sizeof(res));

	/* overflow is refused, not written past the buffer */
	aml__init(&a, buf, 10);
	aml__open_scope(&a, "ABCD");
	aml__bytes(&a, zeros, 100);
	aml__close(&a);
	assert_true(a.overflow);
	aml__init(&a, buf, sizeof(buf));
	aml__close(&a);
	assert_true(a.overflow);				/* close without open */
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
		cmocka_unit_test_setup(test_fadt_dsdt, table_mem_fill),
		cmocka_unit_test(test_aml_encoding),
		cmocka_unit_test_setup(test_genid, table_mem_fill),
	};

	return cmocka_run_group_tests(tests, table_mem_alloc, table_mem_free);
}
