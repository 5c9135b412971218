/*
 * Intel MultiProcessor Specification 1.4 tables: the floating pointer and a
 * configuration table listing every vCPU, the ISA bus, the IOAPIC and the
 * ISA interrupt routing, placed in the BIOS area where guests search.
 */
#ifndef KHYVE_MPTABLE_H
#define KHYVE_MPTABLE_H

#include <stdbool.h>
#include <stdint.h>

#include "khyve/memmap.h"

#define MPTABLE_ADDR		0xF0000ULL
#define IOAPIC_ADDR		0xFEC00000u
#define LAPIC_ADDR		0xFEE00000u

/* One PCI interrupt line: device (slot) and pin (1 = INTA#) on IOAPIC pin gsi. */
struct mptable_pci_irq {
	uint8_t slot, pin, gsi;
};

/* Write the tables at MPTABLE_ADDR.  0, or -ENOSPC if ncpus cannot fit. */
int mptable__write(struct guest_mem *mem, unsigned int ncpus);
/*
 * The same with a PCI bus 0.  Guests match PCI interrupt entries by MP bus
 * ID = PCI bus number, so then the PCI bus is MP bus 0 and ISA is bus 1;
 * without PCI the table is exactly mptable__write's.
 */
int mptable__write_pci(struct guest_mem *mem, unsigned int ncpus, bool pci,
		       const struct mptable_pci_irq *irqs, unsigned int nirqs);

#endif
