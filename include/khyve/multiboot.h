/*
 * Multiboot (version 1) loader: finds the header, loads an ELF32, ELF64 or
 * a.out-kludge image into guest RAM, and builds the information structure
 * (memory map, command line, modules) the kernel receives in EBX.
 */
#ifndef KHYVE_MULTIBOOT_H
#define KHYVE_MULTIBOOT_H

#include <stddef.h>
#include <stdint.h>

#include "khyve/memmap.h"

#define MB_HEADER_MAGIC		0x1BADB002u
#define MB_BOOT_MAGIC		0x2BADB002u
#define MB_SEARCH_LEN		8192

/* header flags */
#define MB_HF_PAGE_ALIGN	(1u << 0)
#define MB_HF_MEMINFO		(1u << 1)
#define MB_HF_VIDEO		(1u << 2)
#define MB_HF_AOUT_KLUDGE	(1u << 16)

/* info flags */
#define MB_IF_MEM		(1u << 0)
#define MB_IF_CMDLINE		(1u << 2)
#define MB_IF_MODS		(1u << 3)
#define MB_IF_MMAP		(1u << 6)
#define MB_IF_LOADER_NAME	(1u << 9)

struct mb_info {
	uint32_t flags;
	uint32_t mem_lower, mem_upper;
	uint32_t boot_device;
	uint32_t cmdline;
	uint32_t mods_count, mods_addr;
	uint32_t syms[4];
	uint32_t mmap_length, mmap_addr;
	uint32_t drives_length, drives_addr;
	uint32_t config_table;
	uint32_t boot_loader_name;
	uint32_t apm_table;
	uint32_t vbe[6];
} __attribute__((packed));

struct mb_mod_entry {
	uint32_t mod_start, mod_end, string, reserved;
} __attribute__((packed));

struct mb_mmap_entry {
	uint32_t size;		/* 20: bytes following this field */
	uint64_t addr, len;
	uint32_t type;
} __attribute__((packed));

#define MB_MMAP_AVAILABLE 1
#define MB_MMAP_RESERVED  2

struct mb_module {
	const void *data;
	size_t len;
	const char *string;
};

struct mb_boot {
	uint32_t entry;		/* physical, 32-bit protected mode */
	uint32_t info;		/* physical address of struct mb_info */
	uint64_t load_start, load_end;	/* kernel image span */
	uint64_t end;		/* first byte after everything the loader placed */
};

/*
 * Load image into mem.  On failure returns -ENOEXEC (not a loadable multiboot
 * image) or -ENOSPC (does not fit in guest RAM) and writes a one-line reason
 * into err.  Nothing is assumed about mem's content beforehand.
 */
int multiboot__load(struct guest_mem *mem, const void *image, size_t len,
		    const char *cmdline, const struct mb_module *mods, unsigned int nmods,
		    struct mb_boot *out, char *err, size_t errlen);

/* Fill up to max multiboot memory-map entries for mem; returns the count. */
unsigned int multiboot__mmap(const struct guest_mem *mem, struct mb_mmap_entry *e, unsigned int max);

#endif
