/*
 * Linux bzImage loader, from the kernel's Documentation/arch/x86/boot.rst
 * (the 64-bit boot protocol) and zero-page.rst.  The image is untrusted:
 * every field used is checked against the file and guest RAM, and a field
 * the kernel would misread is refused with its name.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "khyve/acpi.h"
#include "khyve/linux.h"
#include "khyve/multiboot.h"
#include "khyve/util.h"

#define PAGE			4096ULL

/* boot_params (the zero page), offsets from zero-page.rst */
#define BP_ACPI_RSDP		0x070
#define BP_E820_ENTRIES		0x1e8
#define BP_HDR			0x1f1	/* setup_header starts here, in file and zero page */
#define BP_E820_TABLE		0x2d0
#define BP_E820_MAX		128

/* setup_header fields, at their zero-page (= file) offsets */
#define H_SETUP_SECTS		0x1f1
#define H_BOOT_FLAG		0x1fe
#define H_JUMP			0x200
#define H_MAGIC			0x202
#define H_VERSION		0x206
#define H_VID_MODE		0x1fa
#define H_TYPE_OF_LOADER	0x210
#define H_LOADFLAGS		0x211
#define H_RAMDISK_IMAGE		0x218
#define H_RAMDISK_SIZE		0x21c
#define H_CMD_LINE_PTR		0x228
#define H_INITRD_ADDR_MAX	0x22c
#define H_KERNEL_ALIGNMENT	0x230
#define H_RELOCATABLE		0x234
#define H_XLOADFLAGS		0x236
#define H_CMDLINE_SIZE		0x238
#define H_PREF_ADDRESS		0x258
#define H_INIT_SIZE		0x260

#define LOADED_HIGH		0x01
#define KEEP_SEGMENTS		0x40
#define CAN_USE_HEAP		0x80
#define XLF_KERNEL_64		0x01

static uint16_t rd16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static void wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, sizeof(v)); }
static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, sizeof(v)); }
static void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, sizeof(v)); }

bool linux__is_bzimage(const void *image, size_t len)
{
	return len >= H_MAGIC + 4 && !memcmp((const uint8_t *)image + H_MAGIC, "HdrS", 4);
}

/*
 * Identity map of the first 4 GiB with 2 MiB pages: the kernel, zero page
 * and command line must be mapped at entry, and 4 GiB covers any place
 * this loader puts them.
 */
static void write_page_tables(struct guest_mem *mem)
{
	uint8_t *pml4 = memmap__gpa_to_hva(mem, LINUX_PML4_ADDR, 6 * PAGE);
	uint8_t *pdpt = pml4 + PAGE, *pd = pml4 + 2 * PAGE;

	memset(pml4, 0, 6 * PAGE);
	wr64(pml4, (LINUX_PML4_ADDR + PAGE) | 0x3);			/* present, writable */
	for (uint64_t i = 0; i < 4; i++)
		wr64(pdpt + 8 * i, (LINUX_PML4_ADDR + (2 + i) * PAGE) | 0x3);
	for (uint64_t i = 0; i < 4 * 512; i++)
		wr64(pd + 8 * i, (i << 21) | 0x83);			/* + page size */
}

static void write_gdt(struct guest_mem *mem)
{
	uint8_t *gdt = memmap__gpa_to_hva(mem, LINUX_GDT_ADDR, 4 * 8);

	wr64(gdt, 0);
	wr64(gdt + 8, 0);
	wr64(gdt + LINUX_BOOT_CS, 0x00af9b000000ffffULL);	/* 64-bit code, DPL 0 */
	wr64(gdt + LINUX_BOOT_DS, 0x00cf93000000ffffULL);	/* flat data */
}

static void write_e820(const struct guest_mem *mem, uint8_t *zp)
{
	struct mb_mmap_entry e[8];
	unsigned int n = multiboot__mmap(mem, e, 8);

	/* the multiboot map's types are e820's: 1 RAM, 2 reserved */
	for (unsigned int i = 0; i < n && i < BP_E820_MAX; i++) {
		uint8_t *d = zp + BP_E820_TABLE + 20 * i;

		wr64(d, e[i].addr);
		wr64(d + 8, e[i].len);
		wr32(d + 16, e[i].type);
	}
	zp[BP_E820_ENTRIES] = (uint8_t)n;
}

static int check_ram(struct guest_mem *mem, uint64_t addr, uint64_t size, const char *what,
		     char *err, size_t errlen)
{
	if (addr + size < addr || !memmap__gpa_to_hva(mem, addr, size))
		return util__fail(-ENOSPC, err, errlen,
				  "%s at 0x%" PRIx64 "-0x%" PRIx64 " does not fit in guest memory "
				  "(RAM below 4 GiB ends at 0x%" PRIx64 ")",
				  what, addr, addr + size, memmap__low_end(mem));
	return 0;
}

int linux__load(struct guest_mem *mem, const void *image, size_t len, const char *cmdline,
		const void *initrd, size_t initrd_len, struct linux_boot *out, char *err,
		size_t errlen)
{
	const uint8_t *img = image;
	uint64_t load, kernel_off, payload, init_size, align, low = memmap__low_end(mem);
	uint64_t initrd_max, initrd_at = 0;
	size_t hdr_end, clen = strlen(cmdline);
	unsigned int setup_sects;
	uint16_t version;
	uint8_t *zp;
	int ret;

	memset(out, 0, sizeof(*out));
	if (!linux__is_bzimage(image, len))
		return util__fail(-ENOEXEC, err, errlen, "not a Linux bzImage (no 'HdrS' setup header)");
	if (len < PAGE)
		return util__fail(-ENOEXEC, err, errlen,
				  "image is truncated: %zu bytes, less than its setup header and code", len);
	version = rd16(img + H_VERSION);
	if (version < 0x020a)
		return util__fail(-ENOEXEC, err, errlen,
				  "boot protocol %u.%02u is too old: 2.10 or later is needed",
				  version >> 8, version & 0xff);
	if (rd16(img + H_BOOT_FLAG) != 0xAA55)
		return util__fail(-ENOEXEC, err, errlen, "setup header: boot_flag is 0x%04x, not 0xaa55",
				  rd16(img + H_BOOT_FLAG));
	if (!(img[H_LOADFLAGS] & LOADED_HIGH))
		return util__fail(-ENOEXEC, err, errlen,
				  "setup header: a zImage (loaded low) is not supported, only a bzImage");
	if (version >= 0x020c && !(rd16(img + H_XLOADFLAGS) & XLF_KERNEL_64))
		return util__fail(-ENOEXEC, err, errlen,
				  "setup header: the kernel has no 64-bit entry (xloadflags bit 0 clear)");
	hdr_end = H_JUMP + 2 + img[H_JUMP + 1];
	setup_sects = img[H_SETUP_SECTS] ? img[H_SETUP_SECTS] : 4;
	kernel_off = (setup_sects + 1ULL) * 512;
	if (hdr_end > kernel_off || hdr_end > PAGE)
		return util__fail(-ENOEXEC, err, errlen,
				  "setup header: it ends at 0x%zx, past the setup code (0x%" PRIx64 ")",
				  hdr_end, kernel_off);
	if (kernel_off >= len)
		return util__fail(-ENOEXEC, err, errlen,
				  "image is truncated: setup_sects %u puts the kernel at %" PRIu64
				  ", the file has %zu bytes", setup_sects, kernel_off, len);
	payload = len - kernel_off;
	init_size = rd32(img + H_INIT_SIZE);
	if (init_size < payload)
		return util__fail(-ENOEXEC, err, errlen,
				  "setup header: init_size %" PRIu64 " is smaller than the kernel's %" PRIu64
				  " bytes", init_size, payload);
	align = rd32(img + H_KERNEL_ALIGNMENT);
	load = rd64(img + H_PREF_ADDRESS);
	if (load < MEM_BIOS_END) {
		if (!img[H_RELOCATABLE])
			return util__fail(-ENOEXEC, err, errlen,
					  "setup header: pref_address 0x%" PRIx64 " is below 1 MiB", load);
		load = LINUX_DEFAULT_LOAD;
	}
	if (align & (align - 1) || (align && load % align))
		return util__fail(-ENOEXEC, err, errlen,
				  "setup header: pref_address 0x%" PRIx64 " is not aligned to kernel_alignment 0x%"
				  PRIx64, load, align);
	ret = check_ram(mem, load, init_size, "kernel (init_size)", err, errlen);
	if (ret)
		return ret;
	if (clen + 1 > rd32(img + H_CMDLINE_SIZE) + 1ULL || clen + 1 > LINUX_CMDLINE_MAX)
		return util__fail(-E2BIG, err, errlen,
				  "command line is %zu bytes; the kernel takes at most %u", clen,
				  rd32(img + H_CMDLINE_SIZE));
	if (initrd_len) {
		initrd_max = (uint64_t)rd32(img + H_INITRD_ADDR_MAX) + 1;
		if (initrd_max > low)
			initrd_max = low;
		/* as high as it goes, as boot loaders do: clear of the kernel's decompression */
		if (initrd_len > initrd_max)
			initrd_at = 0;
		else
			initrd_at = (initrd_max - initrd_len) & ~(PAGE - 1);
		if (initrd_at < load + init_size)
			return util__fail(-ENOSPC, err, errlen,
					  "initrd of %zu bytes does not fit between the kernel (ends at 0x%"
					  PRIx64 ") and 0x%" PRIx64, initrd_len, load + init_size, initrd_max);
	}

	/* all checked: now write */
	write_gdt(mem);
	write_page_tables(mem);
	zp = memmap__gpa_to_hva(mem, LINUX_ZERO_PAGE, PAGE);
	memset(zp, 0, PAGE);
	memcpy(zp + BP_HDR, img + BP_HDR, hdr_end - BP_HDR);
	wr16(zp + H_VID_MODE, 0xffff);			/* "normal" */
	zp[H_TYPE_OF_LOADER] = 0xff;			/* undefined loader */
	zp[H_LOADFLAGS] = (uint8_t)((zp[H_LOADFLAGS] | CAN_USE_HEAP) & ~KEEP_SEGMENTS);
	wr32(zp + H_CMD_LINE_PTR, (uint32_t)LINUX_CMDLINE_ADDR);
	wr32(zp + H_RAMDISK_IMAGE, (uint32_t)initrd_at);
	wr32(zp + H_RAMDISK_SIZE, (uint32_t)initrd_len);
	if (version >= 0x020e)
		wr64(zp + BP_ACPI_RSDP, ACPI_RSDP_ADDR);
	write_e820(mem, zp);
	memcpy(memmap__gpa_to_hva(mem, LINUX_CMDLINE_ADDR, clen + 1), cmdline, clen + 1);

	uint8_t *k = memmap__gpa_to_hva(mem, load, init_size);

	memcpy(k, img + kernel_off, payload);
	memmap__zero(mem, k + payload, init_size - payload);
	if (initrd_len)
		memcpy(memmap__gpa_to_hva(mem, initrd_at, initrd_len), initrd, initrd_len);

	out->entry = load + 0x200;
	out->zero_page = LINUX_ZERO_PAGE;
	out->load_start = load;
	out->load_end = load + init_size;
	out->initrd_start = initrd_at;
	out->initrd_size = initrd_len;
	out->version = version;
	return 0;
}
