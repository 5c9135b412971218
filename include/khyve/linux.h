/*
 * Direct boot of a Linux bzImage (x86 boot protocol 2.10 or later, 64-bit
 * entry), as Firecracker and kvmtool do: no firmware, no real-mode setup
 * code.  The loader writes the zero page (boot_params with the e820 map,
 * command line and initrd), identity page tables and a GDT into guest RAM;
 * vcpu__setup_linux64() then starts the BSP in long mode at the kernel's
 * 64-bit entry with RSI pointing at the zero page.
 *
 * Fixed places in low RAM (below the EBDA, which e820 reports reserved):
 */
#ifndef KHYVE_LINUX_H
#define KHYVE_LINUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "khyve/memmap.h"

#define LINUX_GDT_ADDR		0x500ULL
#define LINUX_ZERO_PAGE		0x7000ULL
#define LINUX_PML4_ADDR		0x9000ULL	/* then the PDPT and 4 PDs: 0xA000-0xEFFF */
#define LINUX_CMDLINE_ADDR	0x20000ULL
#define LINUX_CMDLINE_MAX	0x10000ULL	/* up to the end of our area */
#define LINUX_DEFAULT_LOAD	0x1000000ULL	/* 16 MiB, for kernels without pref_address */

/* selectors the boot protocol names (__BOOT_CS, __BOOT_DS) */
#define LINUX_BOOT_CS		0x10
#define LINUX_BOOT_DS		0x18

struct linux_boot {
	uint64_t entry;		/* physical: load address + 0x200 */
	uint64_t zero_page;
	uint64_t load_start, load_end;	/* kernel span, init_size included */
	uint64_t initrd_start, initrd_size;
	uint16_t version;	/* boot protocol, e.g. 0x020f */
};

/* True if image carries a Linux x86 setup header ("HdrS" at 0x202). */
bool linux__is_bzimage(const void *image, size_t len);

/*
 * Load a bzImage and optional initrd into mem, and write the zero page,
 * command line, page tables and GDT.  The zero page points the kernel at
 * the RSDP (ACPI_RSDP_ADDR), which the caller writes.  On failure returns
 * -ENOEXEC (not a loadable kernel) or -ENOSPC (does not fit) with a
 * one-line reason in err.
 */
int linux__load(struct guest_mem *mem, const void *image, size_t len, const char *cmdline,
		const void *initrd, size_t initrd_len, struct linux_boot *out, char *err,
		size_t errlen);

#endif
