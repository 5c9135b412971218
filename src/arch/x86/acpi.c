/*
 * ACPI tables, from the ACPI 6.5 specification, chapter 5.2: the RSDP
 * (5.2.5, revision 2 = ACPI 2.0 and later, with an XSDT), the XSDT
 * (5.2.8) and for ACPI 1.0 readers an RSDT (5.2.7), the MADT (5.2.12,
 * revision 6) and the MCFG (PCI Firmware Specification 3.x, 4.1.2).
 *
 * The MADT describes what mptable.c describes and irqchip.c installs:
 * LAPIC IDs 0..ncpus-1, one IOAPIC with ID ncpus at 0xFEC00000 and GSI
 * base 0, ISA IRQ 0 on GSI 2 (the one interrupt source override; the
 * other ISA IRQs are identity-mapped, edge, active high, as the MP table
 * says), NMI on every LAPIC's LINT1, and dual 8259s (PCAT_COMPAT).
 * No FADT, no DSDT: see acpi.h.
 */
#include <errno.h>
#include <string.h>

#include "khyve/acpi.h"
#include "khyve/mptable.h"
#include "khyve/util.h"

struct acpi_rsdp {
	char sig[8];			/* "RSD PTR " */
	uint8_t checksum;		/* of the first 20 bytes */
	char oem_id[6];
	uint8_t revision;		/* 2: ACPI 2.0+, the fields below exist */
	uint32_t rsdt;
	uint32_t length;		/* of the whole structure, 36 */
	uint64_t xsdt;
	uint8_t ext_checksum;		/* of all 36 bytes */
	uint8_t reserved[3];
} __attribute__((packed));

struct acpi_header {
	char sig[4];
	uint32_t length;		/* of the table, header included */
	uint8_t revision;
	uint8_t checksum;		/* the table's bytes sum to 0 */
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	char creator_id[4];
	uint32_t creator_revision;
} __attribute__((packed));

struct acpi_madt {
	struct acpi_header h;
	uint32_t lapic_addr;
	uint32_t flags;			/* bit 0: PCAT_COMPAT, 8259s present */
} __attribute__((packed));

struct madt_lapic {			/* type 0 */
	uint8_t type, length;
	uint8_t uid, apic_id;
	uint32_t flags;			/* bit 0: enabled */
} __attribute__((packed));

struct madt_ioapic {			/* type 1 */
	uint8_t type, length;
	uint8_t id, reserved;
	uint32_t addr;
	uint32_t gsi_base;
} __attribute__((packed));

struct madt_iso {			/* type 2: interrupt source override */
	uint8_t type, length;
	uint8_t bus;			/* 0: ISA */
	uint8_t source;			/* the ISA IRQ */
	uint32_t gsi;
	uint16_t flags;			/* MPS INTI flags; 0: conforms to the bus */
} __attribute__((packed));

struct madt_lapic_nmi {			/* type 4 */
	uint8_t type, length;
	uint8_t uid;			/* 0xFF: every processor */
	uint16_t flags;
	uint8_t lint;
} __attribute__((packed));

struct mcfg_alloc {
	uint64_t base;
	uint16_t segment;
	uint8_t bus_start, bus_end;
	uint32_t reserved;
} __attribute__((packed));

#define MADT_REVISION	6	/* ACPI 6.5 */
#define MCFG_REVISION	1
#define XSDT_REVISION	1
#define RSDT_REVISION	1

_Static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP");
_Static_assert(sizeof(struct acpi_header) == 36, "header");
_Static_assert(sizeof(struct acpi_madt) == 44, "MADT");
_Static_assert(sizeof(struct madt_lapic) == 8, "LAPIC");
_Static_assert(sizeof(struct madt_ioapic) == 12, "IOAPIC");
_Static_assert(sizeof(struct madt_iso) == 10, "ISO");
_Static_assert(sizeof(struct madt_lapic_nmi) == 6, "LAPIC NMI");
_Static_assert(sizeof(struct mcfg_alloc) == 16, "MCFG allocation");

static uint8_t checksum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t s = 0;

	while (len--)
		s += *b++;
	return (uint8_t)-s;
}

/* Fill a table's header; its length and checksum are set by finish(). */
static void header(void *p, const char sig[4], uint8_t revision, const char table_id[8])
{
	struct acpi_header *h = p;

	memcpy(h->sig, sig, 4);
	h->revision = revision;
	memcpy(h->oem_id, "KHYVE ", 6);
	memcpy(h->oem_table_id, table_id, 8);
	h->oem_revision = 1;
	memcpy(h->creator_id, "KHYV", 4);
	h->creator_revision = 1;
}

static void finish(void *p, size_t len)
{
	struct acpi_header *h = p;

	h->length = (uint32_t)len;
	h->checksum = 0;
	h->checksum = checksum(p, len);
}

static size_t write_madt(uint8_t *p, unsigned int ncpus)
{
	struct acpi_madt *m = (struct acpi_madt *)p;
	size_t n = sizeof(*m);
	struct madt_ioapic io = {
		.type = 1, .length = sizeof(io), .id = (uint8_t)ncpus, .addr = IOAPIC_ADDR, .gsi_base = 0,
	};
	struct madt_iso iso = { .type = 2, .length = sizeof(iso), .bus = 0, .source = 0, .gsi = 2, .flags = 0 };
	struct madt_lapic_nmi nmi = { .type = 4, .length = sizeof(nmi), .uid = 0xff, .flags = 0, .lint = 1 };

	header(m, "APIC", MADT_REVISION, "KHYVEMAD");
	m->lapic_addr = LAPIC_ADDR;
	m->flags = 1;
	for (unsigned int i = 0; i < ncpus; i++) {
		struct madt_lapic l = { .type = 0, .length = sizeof(l), .uid = (uint8_t)i,
					.apic_id = (uint8_t)i, .flags = 1 };

		memcpy(p + n, &l, sizeof(l));
		n += sizeof(l);
	}
	memcpy(p + n, &io, sizeof(io));
	n += sizeof(io);
	memcpy(p + n, &iso, sizeof(iso));
	n += sizeof(iso);
	memcpy(p + n, &nmi, sizeof(nmi));
	n += sizeof(nmi);
	finish(m, n);
	return n;
}

static size_t write_mcfg(uint8_t *p, uint64_t ecam_base)
{
	struct mcfg_alloc a = { .base = ecam_base, .segment = 0, .bus_start = 0, .bus_end = 0 };
	size_t n = sizeof(struct acpi_header) + 8;	/* 8 reserved bytes after the header */

	header(p, "MCFG", MCFG_REVISION, "KHYVEMCF");
	memcpy(p + n, &a, sizeof(a));
	n += sizeof(a);
	finish(p, n);
	return n;
}

int acpi__write(struct guest_mem *mem, unsigned int ncpus, uint64_t ecam_base)
{
	uint8_t *base = memmap__gpa_to_hva(mem, ACPI_ADDR, ACPI_END - ACPI_ADDR);
	uint64_t tables[2], at, xsdt, rsdt;
	unsigned int ntables = 0;
	struct acpi_rsdp *rsdp;
	uint8_t *x, *r;
	size_t len;

	/*
	 * At most 48 (RSDP) + 2104 (MADT for 254 processors) + 64 (MCFG) +
	 * 64 (XSDT) + 48 (RSDT) bytes: far below the 64 KiB of the area.
	 */
	_Static_assert(48 + 44 + 254 * 8 + 12 + 10 + 6 + 16 + 64 + 64 + 48 < ACPI_END - ACPI_ADDR, "ACPI area");
	if (!base || !ncpus || ncpus > 254)
		return -ENOSPC;
	memset(base, 0, ACPI_END - ACPI_ADDR);
	at = ALIGN_UP(ACPI_RSDP_ADDR + sizeof(struct acpi_rsdp), 16);

	len = write_madt(base + (at - ACPI_ADDR), ncpus);
	tables[ntables++] = at;
	at = ALIGN_UP(at + len, 16);
	if (ecam_base) {
		len = write_mcfg(base + (at - ACPI_ADDR), ecam_base);
		tables[ntables++] = at;
		at = ALIGN_UP(at + len, 16);
	}

	/* XSDT: 64-bit pointers to the tables; RSDT: the same, 32-bit */
	xsdt = at;
	x = base + (xsdt - ACPI_ADDR);
	header(x, "XSDT", XSDT_REVISION, "KHYVEXSD");
	memcpy(x + sizeof(struct acpi_header), tables, ntables * sizeof(uint64_t));
	len = sizeof(struct acpi_header) + ntables * sizeof(uint64_t);
	finish(x, len);

	rsdt = ALIGN_UP(xsdt + len, 16);
	r = base + (rsdt - ACPI_ADDR);
	header(r, "RSDT", RSDT_REVISION, "KHYVERSD");
	for (unsigned int i = 0; i < ntables; i++) {
		uint32_t t = (uint32_t)tables[i];

		memcpy(r + sizeof(struct acpi_header) + 4 * i, &t, 4);
	}
	finish(r, sizeof(struct acpi_header) + ntables * sizeof(uint32_t));

	rsdp = (struct acpi_rsdp *)base;
	memcpy(rsdp->sig, "RSD PTR ", 8);
	memcpy(rsdp->oem_id, "KHYVE ", 6);
	rsdp->revision = 2;
	rsdp->rsdt = (uint32_t)rsdt;
	rsdp->length = sizeof(*rsdp);
	rsdp->xsdt = xsdt;
	rsdp->checksum = checksum(rsdp, 20);
	rsdp->ext_checksum = checksum(rsdp, sizeof(*rsdp));
	return 0;
}
