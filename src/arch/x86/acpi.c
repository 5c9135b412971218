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
 * The FADT (5.2.9, revision 6.5) and the DSDT (5.2.11.1, AML written by
 * aml.c) are described in acpi.h.
 */
#include <errno.h>
#include <string.h>

#include "khyve/acpi.h"
#include "khyve/aml.h"
#include "khyve/pci.h"
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

struct acpi_gas {			/* Generic Address Structure, 5.2.3.2 */
	uint8_t space;			/* 1: system I/O */
	uint8_t bit_width, bit_offset;
	uint8_t access_size;		/* 1: byte */
	uint64_t addr;
} __attribute__((packed));

/* 5.2.9: only what a hardware-reduced platform fills is named */
struct acpi_fadt {
	struct acpi_header h;
	uint32_t firmware_ctrl, dsdt;
	uint8_t reserved0, pm_profile;
	uint16_t sci_int;
	uint8_t legacy_blocks[109 - 48];	/* SMI_CMD .. CENTURY: all 0 when hardware-reduced */
	uint16_t iapc_boot_arch;
	uint8_t reserved1;
	uint32_t flags;
	struct acpi_gas reset_reg;
	uint8_t reset_value;
	uint16_t arm_boot_arch;
	uint8_t minor_revision;
	uint64_t x_firmware_ctrl, x_dsdt;
	struct acpi_gas x_legacy[8];		/* X_PM1a_EVT_BLK .. X_GPE1_BLK */
	struct acpi_gas sleep_control, sleep_status;
	uint64_t hypervisor_id;
} __attribute__((packed));

#define FADT_REVISION		6
#define FADT_MINOR		5
#define FADT_WBINVD		(1u << 0)
#define FADT_PWR_BUTTON		(1u << 4)	/* set: no fixed power button */
#define FADT_SLP_BUTTON		(1u << 5)
#define FADT_RESET_REG_SUP	(1u << 10)
#define FADT_HW_REDUCED		(1u << 20)
#define BOOT_ARCH_NO_VGA	(1u << 2)
#define BOOT_ARCH_NO_CMOS_RTC	(1u << 5)
#define DSDT_REVISION		2	/* 64-bit integers */

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
_Static_assert(sizeof(struct acpi_fadt) == 276, "FADT");

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

static struct acpi_gas io_reg(uint16_t port)
{
	return (struct acpi_gas){ .space = 1, .bit_width = 8, .access_size = 1, .addr = port };
}

static size_t write_fadt(uint8_t *p, uint64_t dsdt)
{
	struct acpi_fadt *f = (struct acpi_fadt *)p;

	header(f, "FACP", FADT_REVISION, "KHYVEFAC");
	f->dsdt = (uint32_t)dsdt;
	f->x_dsdt = dsdt;
	f->iapc_boot_arch = BOOT_ARCH_NO_VGA | BOOT_ARCH_NO_CMOS_RTC;	/* and no 8042 */
	f->flags = FADT_WBINVD | FADT_PWR_BUTTON | FADT_SLP_BUTTON | FADT_RESET_REG_SUP | FADT_HW_REDUCED;
	f->reset_reg = io_reg(ACPI_RESET_PORT);
	f->reset_value = ACPI_RESET_VALUE;
	f->minor_revision = FADT_MINOR;
	f->sleep_control = io_reg(ACPI_SLEEP_CTL_PORT);
	f->sleep_status = io_reg(ACPI_SLEEP_STS_PORT);
	memcpy(&f->hypervisor_id, "KHYVE\0\0\0", 8);
	finish(f, sizeof(*f));
	return sizeof(*f);
}

static void dsdt_pci(struct aml *a, const struct acpi_config *c)
{
	aml__open_device(a, "PCI0");
	aml__name_decl(a, "_HID");
	aml__eisaid(a, "PNP0A08");
	aml__name_decl(a, "_CID");
	aml__eisaid(a, "PNP0A03");
	aml__name_decl(a, "_SEG");
	aml__int(a, 0);
	aml__name_decl(a, "_BBN");
	aml__int(a, 0);
	aml__name_decl(a, "_UID");
	aml__int(a, 0);
	aml__name_decl(a, "_CRS");
	aml__open_resources(a);
	aml__res_bus(a, 0, 0);
	aml__res_io(a, PCI_CONF_ADDR, 8);
	aml__res_io_window(a, 0x0000, PCI_CONF_ADDR - 1);
	aml__res_io_window(a, PCI_CONF_ADDR + 8, 0xffff);
	aml__res_mem32(a, (uint32_t)PCI_MMIO_BASE, (uint32_t)(PCI_MMIO_END - 1));
	if (c->mmio64_end > c->mmio64_base)
		aml__res_mem64(a, c->mmio64_base, c->mmio64_end - 1);
	aml__close(a);
	/* _PRT: Package { Address (slot << 16 | 0xFFFF), Pin (INTA = 0), Source 0 (a GSI), GSI } */
	aml__name_decl(a, "_PRT");
	aml__open_package(a, c->nirqs);
	for (unsigned int i = 0; i < c->nirqs; i++) {
		aml__open_package(a, 4);
		aml__int(a, (uint32_t)c->irqs[i].slot << 16 | 0xffff);
		aml__int(a, c->irqs[i].pin - 1u);
		aml__int(a, 0);
		aml__int(a, c->irqs[i].gsi);
		aml__close(a);
	}
	aml__close(a);
	aml__close(a);

	/* ECAM is claimed by this motherboard resource, which Linux checks before it uses MCFG */
	aml__open_device(a, "MRES");
	aml__name_decl(a, "_HID");
	aml__eisaid(a, "PNP0C02");
	aml__name_decl(a, "_UID");
	aml__int(a, 0);
	aml__name_decl(a, "_CRS");
	aml__open_resources(a);
	aml__res_mem32_fixed(a, (uint32_t)c->ecam_base, (uint32_t)PCI_ECAM_SIZE);
	aml__close(a);
	aml__close(a);
}

/* 0 and the table's length, or -ENOSPC */
static long write_dsdt(uint8_t *p, size_t cap, const struct acpi_config *c)
{
	struct aml a;

	if (cap < sizeof(struct acpi_header))
		return -ENOSPC;
	header(p, "DSDT", DSDT_REVISION, "KHYVEDSD");
	aml__init(&a, p + sizeof(struct acpi_header), cap - sizeof(struct acpi_header));
	aml__open_scope(&a, "\\_SB_");
	if (c->ecam_base)
		dsdt_pci(&a, c);
	/* the VM generation ID, and the event device that says it changed */
	aml__open_device(&a, "VGEN");
	aml__name_decl(&a, "_HID");
	aml__string(&a, "VMGENCTR");
	aml__name_decl(&a, "_CID");
	aml__string(&a, "VM_GEN_COUNTER");
	aml__name_decl(&a, "_DDN");
	aml__string(&a, "VM_Gen_Counter");
	aml__name_decl(&a, "ADDR");
	aml__open_package(&a, 2);
	aml__int(&a, ACPI_VMGENID_ADDR & 0xffffffffu);
	aml__int(&a, ACPI_VMGENID_ADDR >> 32);
	aml__close(&a);
	aml__close(&a);
	aml__open_device(&a, "GED0");
	aml__name_decl(&a, "_HID");
	aml__string(&a, "ACPI0013");
	aml__name_decl(&a, "_UID");
	aml__int(&a, 0);
	aml__name_decl(&a, "_CRS");
	aml__open_resources(&a);
	aml__res_interrupt_edge(&a, ACPI_GED_GSI);
	aml__close(&a);
	aml__open_method(&a, "_EVT", 1);
	aml__notify(&a, "\\_SB_.VGEN", 0x80);
	aml__close(&a);
	aml__close(&a);

	aml__open_device(&a, "COM1");
	aml__name_decl(&a, "_HID");
	aml__eisaid(&a, "PNP0501");
	aml__name_decl(&a, "_UID");
	aml__int(&a, 1);
	aml__name_decl(&a, "_CRS");
	aml__open_resources(&a);
	aml__res_io(&a, 0x3f8, 8);
	aml__res_irq(&a, 4);
	aml__close(&a);
	aml__close(&a);
	aml__close(&a);
	/* \_S5: SLP_TYPa, SLP_TYPb, two reserved */
	aml__name_decl(&a, "\\_S5_");
	aml__open_package(&a, 4);
	aml__int(&a, ACPI_SLP_TYP_S5);
	aml__int(&a, 0);
	aml__int(&a, 0);
	aml__int(&a, 0);
	aml__close(&a);
	if (a.overflow || a.depth)
		return -ENOSPC;
	finish(p, sizeof(struct acpi_header) + a.len);
	return (long)(sizeof(struct acpi_header) + a.len);
}

/*
 * The real-mode reset vector F000:FFF0, where there is no BIOS: a guest
 * that reboots by jumping there finds a write of ACPI_RESET_VALUE to the
 * reset register.  Linux does: on a hardware-reduced ACPI platform it
 * prefers EFI's reset, and without EFI falls back to the BIOS one
 * (reboot_type BOOT_EFI, then BOOT_BIOS), before ever trying RESET_REG or
 * the 8042.  The stub halts in a loop should the write not end the VM.
 */
static int write_reset_vector(struct guest_mem *mem)
{
	static const uint8_t stub[] = {
		0xb0, ACPI_RESET_VALUE,				/* mov al, ACPI_RESET_VALUE */
		0xba, ACPI_RESET_PORT & 0xff, ACPI_RESET_PORT >> 8, /* mov dx, ACPI_RESET_PORT */
		0xee,						/* out dx, al */
		0xfa, 0xf4,					/* 1: cli; hlt */
		0xeb, 0xfc,					/* jmp 1b */
	};
	uint8_t *p = memmap__gpa_to_hva(mem, ACPI_RESET_VECTOR, 16);

	if (!p)
		return -ENOSPC;
	_Static_assert(sizeof(stub) <= 16, "reset vector");
	memset(p, 0, 16);
	memcpy(p, stub, sizeof(stub));
	return 0;
}

int acpi__write(struct guest_mem *mem, const struct acpi_config *c)
{
	unsigned int ncpus = c->ncpus;
	uint64_t ecam_base = c->ecam_base;
	long dlen;
	uint8_t *base = memmap__gpa_to_hva(mem, ACPI_ADDR, ACPI_END - ACPI_ADDR);
	uint64_t tables[4], at, xsdt, rsdt, dsdt;
	unsigned int ntables = 0;
	struct acpi_rsdp *rsdp;
	uint8_t *x, *r;
	size_t len;
	int ret;

	/*
	 * At most 48 (RSDP) + 2104 (MADT for 254 processors) + 64 (MCFG) +
	 * 64 (XSDT) + 48 (RSDT) + 276 (FADT) bytes, and a DSDT of some 200
	 * bytes plus 20 per _PRT entry: far below the 64 KiB of the area,
	 * which write_dsdt() checks anyway.
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
	dsdt = at;
	dlen = write_dsdt(base + (at - ACPI_ADDR), ACPI_VMGENID_ADDR - at, c);
	if (dlen < 0)
		return (int)dlen;
	at = ALIGN_UP(at + (uint64_t)dlen, 16);
	if (at + sizeof(struct acpi_fadt) + 128 > ACPI_VMGENID_ADDR)
		return -ENOSPC;
	len = write_fadt(base + (at - ACPI_ADDR), dsdt);
	tables[ntables++] = at;
	at = ALIGN_UP(at + len, 16);

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

	ret = write_reset_vector(mem);
	if (ret)
		return ret;
	memcpy(base + (ACPI_VMGENID_ADDR - ACPI_ADDR), c->genid, 16);
	memcpy(base + (ACPI_VMGENID_ADDR - ACPI_ADDR) + 16, ACPI_VMGENID_MAGIC, 16);

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

bool acpi__genid_renew(struct guest_mem *mem, const uint8_t id[16])
{
	uint8_t *p = memmap__gpa_to_hva(mem, ACPI_VMGENID_ADDR, 32);

	if (!p || memcmp(p + 16, ACPI_VMGENID_MAGIC, 16))
		return false;
	memcpy(p, id, 16);
	return true;
}
