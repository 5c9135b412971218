/*
 * ACPI tables (ACPI 6.5) that describe PCI Express configuration space
 * (MCFG) and the interrupt controllers (MADT) to guests that look for
 * them: an RSDP in the BIOS area, pointing at an XSDT (and an RSDT for
 * ACPI 1.0 readers), which list the MADT and MCFG.  Written only when the
 * VM has PCI; the MP table (mptable.h) stays, and describes the same
 * machine.
 *
 * There is no FADT and no DSDT.  An operating system that implements ACPI
 * fully (Linux) needs both before its ACPI interpreter runs; without them
 * it may still take the processors and the IOAPIC from the MADT and ECAM
 * from the MCFG, but finds no _PRT (PCI INTx routing, which only the MP
 * table describes: such a guest should use MSI-X) and no _CRS (the PCI
 * windows, the 64-bit one included, are described nowhere).  The test
 * guest and guests that read the MP table need neither.
 */
#ifndef KHYVE_ACPI_H
#define KHYVE_ACPI_H

#include <stdint.h>

#include "khyve/memmap.h"

/*
 * The tables live in [ACPI_ADDR, ACPI_END): below the MP table at
 * 0xF0000, in the part of the BIOS area (0xE0000-0xFFFFF) the multiboot
 * memory map does not report as RAM and the loader never uses.  The RSDP
 * is first, 16-byte aligned, where guests search for it.
 */
#define ACPI_ADDR		0xE0000ULL
#define ACPI_END		0xF0000ULL
#define ACPI_RSDP_ADDR		ACPI_ADDR

/*
 * Write the tables for ncpus processors (APIC IDs 0..ncpus-1, the IOAPIC's
 * ID is ncpus, as in the MP table) and, if ecam_base is not 0, an MCFG with
 * one allocation: segment 0, buses 0-0 at ecam_base.  0, or -ENOSPC if
 * they cannot fit (or ncpus is 0 or above 254).
 */
int acpi__write(struct guest_mem *mem, unsigned int ncpus, uint64_t ecam_base);

#endif
