/*
 * Guest physical memory layout.  RAM is one contiguous host mapping split
 * into at most two guest regions: [0, low) and, when the guest has more RAM
 * than fits below the 32-bit MMIO hole, [4 GiB, 4 GiB + rest).
 */
#ifndef KHYVE_MEMMAP_H
#define KHYVE_MEMMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MEM_MMIO_HOLE_START	0xC0000000ULL	/* 3 GiB: PCI/LAPIC/IOAPIC */
#define MEM_HIGH_START		0x100000000ULL	/* 4 GiB */
#define MEM_MIN_SIZE		(2ULL << 20)
#define MEM_MAX_REGIONS		2

/* Areas below 1 MiB that firmware would own, reported reserved. */
#define MEM_EBDA_START		0x9FC00ULL
#define MEM_BIOS_START		0xF0000ULL	/* MP table lives here */
#define MEM_BIOS_END		0x100000ULL

struct mem_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t offset;	/* offset within the host mapping */
};

struct guest_mem {
	uint8_t *base;		/* host mapping of all RAM */
	uint64_t size;		/* total RAM bytes */
	unsigned int nregions;
	struct mem_region regions[MEM_MAX_REGIONS];
	int src_fd;		/* memory file RAM is mapped from (restore), or -1 */
};

/* Compute the region table for size bytes of RAM (no allocation). */
void memmap__layout(struct guest_mem *mem, uint64_t size);

/*
 * Host pointer for guest range [gpa, gpa+len), or NULL if any byte of it is
 * not RAM.  The range must not straddle regions.
 */
void *memmap__gpa_to_hva(const struct guest_mem *mem, uint64_t gpa, uint64_t len);

/*
 * Zero [p, p+len) of guest RAM.  Whole pages are dropped with
 * MADV_DONTNEED instead of written, so a large .bss costs no page faults
 * and no resident memory until the guest touches it.
 */
void memmap__zero(const struct guest_mem *mem, uint8_t *p, uint64_t len);

/* End of RAM below the MMIO hole. */
uint64_t memmap__low_end(const struct guest_mem *mem);

/* Map anonymous memory for an already laid-out mem.  0 or -errno. */
int memmap__alloc(struct guest_mem *mem);
/*
 * Map RAM copy-on-write from a snapshot memory file (RAM at offset 0, laid
 * out like the host mapping): pages are read in only when touched.  Takes
 * ownership of fd.
 */
int memmap__map_file(struct guest_mem *mem, int fd);
void memmap__free(struct guest_mem *mem);

#endif
