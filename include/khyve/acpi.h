/*
 * ACPI tables (ACPI 6.5) for the machine khyve builds: an RSDP in the BIOS
 * area pointing at an XSDT (and an RSDT for ACPI 1.0 readers), which list
 * the MADT (interrupt controllers), the MCFG (PCI Express configuration
 * space) and a FADT with its DSDT.  The MP table (mptable.h) stays, and
 * describes the same machine.
 *
 * The FADT declares a hardware-reduced ACPI platform (as Firecracker and
 * Cloud Hypervisor do): no PM1 event/control blocks, no PM timer, no SCI
 * sources, no SMI command port.  Sleep and reset are the two extended
 * registers, on khyve's "acpi-pm" I/O ports (src/hw/acpi_pm.c):
 * SLEEP_CONTROL_REG at ACPI_SLEEP_CTL_PORT (a write of SLP_EN with
 * SLP_TYP 5, the DSDT's \_S5, powers off: khyve exits 0) and RESET_REG at
 * ACPI_RESET_PORT (ACPI_RESET_VALUE resets: khyve exits 1).  The boot
 * architecture flags say: no 8042, no VGA, no CMOS RTC.  At the real-mode
 * reset vector, where a BIOS would be, a stub writes RESET_REG too.
 *
 * The DSDT has the PCI host bridge \_SB.PCI0 (PNP0A08, bus 0, with _CRS
 * windows: I/O outside 0xCF8-0xCFF, the 32-bit MMIO window, the 64-bit one
 * above RAM; and a _PRT routing each slot's INTx to its IOAPIC pin), the
 * COM1 UART (PNP0501, 0x3F8, IRQ 4), a motherboard resource (PNP0C02) that
 * reserves ECAM, and \_S5.
 *
 * And a VM generation ID (Microsoft's "Virtual Machine Generation ID"
 * specification, as QEMU, Firecracker and Hyper-V give it): \_SB.VGEN
 * (_HID "VMGENCTR", _CID "VM_GEN_COUNTER") whose ADDR names the 16 bytes
 * at ACPI_VMGENID_ADDR, and a Generic Event Device (ACPI0013) on GSI
 * ACPI_GED_GSI (edge) whose _EVT notifies VGEN.  Every restore writes a
 * new ID there and pulses the GSI (acpi__genid_renew): Linux's vmgenid
 * driver then reseeds its random number generator, so clones of one
 * snapshot do not share it.  ACPI_VMGENID_MAGIC follows the ID, so that a
 * restore finds out from the memory image whether the VM has the device.
 */
#ifndef KHYVE_ACPI_H
#define KHYVE_ACPI_H

#include <stdbool.h>
#include <stdint.h>

#include "khyve/memmap.h"
#include "khyve/mptable.h"

/*
 * The tables live in [ACPI_ADDR, ACPI_END): below the MP table at
 * 0xF0000, in the part of the BIOS area (0xE0000-0xFFFFF) the multiboot
 * memory map does not report as RAM and the loader never uses.  The RSDP
 * is first, 16-byte aligned, where guests search for it.
 */
#define ACPI_ADDR		0xE0000ULL
#define ACPI_END		0xF0000ULL
#define ACPI_RSDP_ADDR		ACPI_ADDR

/* the generation ID's page, the last of the ACPI area (reserved, never RAM to the guest) */
#define ACPI_VMGENID_ADDR	(ACPI_END - 0x1000)
#define ACPI_VMGENID_MAGIC	"khyve-vmgenid-v1"	/* 16 bytes, after the ID */
#define ACPI_GED_GSI		5

/* the real-mode reset vector (F000:FFF0): a stub that writes RESET_REG */
#define ACPI_RESET_VECTOR	0xFFFF0ULL

#define ACPI_SLEEP_CTL_PORT	0x600
#define ACPI_SLEEP_STS_PORT	0x601
#define ACPI_RESET_PORT		0x602
#define ACPI_RESET_VALUE	0x01
#define ACPI_SLP_TYP_S5		5	/* \_S5's value, in SLEEP_CONTROL_REG bits 2-4 */
#define ACPI_SLP_EN		0x20

struct acpi_config {
	unsigned int ncpus;		/* APIC IDs 0..ncpus-1; the IOAPIC's ID is ncpus */
	uint64_t ecam_base;		/* 0: no PCI (no MCFG, no PCI0 in the DSDT) */
	const struct mptable_pci_irq *irqs;	/* INTx routes for _PRT */
	unsigned int nirqs;
	uint64_t mmio64_base, mmio64_end;	/* the 64-bit PCI window, [base, end) */
	uint8_t genid[16];		/* the first VM generation ID */
};

/*
 * Write the tables into [ACPI_ADDR, ACPI_END).  0, or -ENOSPC if they
 * cannot fit (or ncpus is 0 or above 254).
 */
int acpi__write(struct guest_mem *mem, const struct acpi_config *c);

/*
 * A restored VM's new generation ID: if the memory image holds the
 * generation ID page (ACPI_VMGENID_MAGIC), write id there and return true;
 * the caller then pulses ACPI_GED_GSI.  False (nothing written) for a VM
 * without it (a snapshot from before it existed).
 */
bool acpi__genid_renew(struct guest_mem *mem, const uint8_t id[16]);

#endif
