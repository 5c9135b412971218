/*
 * Intel MultiProcessor Specification 1.4 tables: the floating pointer and a
 * configuration table listing every vCPU, the ISA bus, the IOAPIC and the
 * ISA interrupt routing, placed in the BIOS area where guests search.
 */
#ifndef KHYVE_MPTABLE_H
#define KHYVE_MPTABLE_H

#include <stdint.h>

#include "khyve/memmap.h"

#define MPTABLE_ADDR		0xF0000ULL
#define IOAPIC_ADDR		0xFEC00000u
#define LAPIC_ADDR		0xFEE00000u

/* Write the tables at MPTABLE_ADDR.  0, or -ENOSPC if ncpus cannot fit. */
int mptable__write(struct guest_mem *mem, unsigned int ncpus);

#endif
