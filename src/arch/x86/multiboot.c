/*
 * Multiboot v1 loader.  The image is untrusted input: every offset and size
 * from it is checked against the file length and guest RAM before use.
 */
#include <elf.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "khyve/multiboot.h"
#include "khyve/util.h"

#define PAGE 4096ULL

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}


unsigned int multiboot__mmap(const struct guest_mem *mem, struct mb_mmap_entry *e, unsigned int max)
{
	uint64_t low = memmap__low_end(mem);
	struct mb_mmap_entry all[5] = {
		{ 20, 0, MEM_EBDA_START, MB_MMAP_AVAILABLE },
		{ 20, MEM_EBDA_START, 0xA0000 - MEM_EBDA_START, MB_MMAP_RESERVED },
		{ 20, MEM_BIOS_START, MEM_BIOS_END - MEM_BIOS_START, MB_MMAP_RESERVED },
		{ 20, MEM_BIOS_END, low - MEM_BIOS_END, MB_MMAP_AVAILABLE },
	};
	unsigned int n = 4;

	if (mem->nregions > 1)
		all[n++] = (struct mb_mmap_entry){ 20, mem->regions[1].gpa, mem->regions[1].size,
						   MB_MMAP_AVAILABLE };
	if (n > max)
		n = max;
	memcpy(e, all, n * sizeof(*e));
	return n;
}

/* A loaded range must be RAM and must not cover the firmware area. */
static int check_range(struct guest_mem *mem, uint64_t addr, uint64_t size, const char *what,
		       char *err, size_t errlen)
{
	if (addr + size < addr || !memmap__gpa_to_hva(mem, addr, size))
		return util__fail(-ENOSPC, err, errlen,
			    "%s at 0x%" PRIx64 "-0x%" PRIx64 " does not fit in guest memory "
			    "(RAM below 4 GiB ends at 0x%" PRIx64 ")",
			    what, addr, addr + size, memmap__low_end(mem));
	if (addr < MEM_BIOS_END && addr + size > MEM_EBDA_START)
		return util__fail(-ENOEXEC, err, errlen,
			    "%s at 0x%" PRIx64 "-0x%" PRIx64 " overlaps the reserved area 0x%llx-0x%llx",
			    what, addr, addr + size, MEM_EBDA_START, MEM_BIOS_END);
	return 0;
}

static int load_aout(struct guest_mem *mem, const uint8_t *img, size_t len, size_t hoff,
		     struct mb_boot *out, char *err, size_t errlen)
{
	uint32_t header_addr, load_addr, load_end, bss_end, entry;
	uint64_t file_off, size, memsz;
	int ret;

	if (hoff + 32 > len)
		return util__fail(-ENOEXEC, err, errlen, "multiboot header is truncated");
	header_addr = rd32(img + hoff + 12);
	load_addr = rd32(img + hoff + 16);
	load_end = rd32(img + hoff + 20);
	bss_end = rd32(img + hoff + 24);
	entry = rd32(img + hoff + 28);

	if (load_addr > header_addr || header_addr - load_addr > hoff)
		return util__fail(-ENOEXEC, err, errlen,
			    "multiboot header: load_addr 0x%x inconsistent with header_addr 0x%x",
			    load_addr, header_addr);
	file_off = hoff - (header_addr - load_addr);
	if (load_end) {
		if (load_end < load_addr)
			return util__fail(-ENOEXEC, err, errlen, "multiboot header: load_end_addr below load_addr");
		size = load_end - load_addr;
		if (file_off + size > len)
			return util__fail(-ENOEXEC, err, errlen,
				    "image is truncated: load_end_addr needs %" PRIu64 " bytes, file has %zu",
				    file_off + size, len);
	} else {
		size = len - file_off;
	}
	memsz = size;
	if (bss_end) {
		if (bss_end < load_addr + size)
			return util__fail(-ENOEXEC, err, errlen, "multiboot header: bss_end_addr below load end");
		memsz = bss_end - load_addr;
	}
	ret = check_range(mem, load_addr, memsz, "kernel image", err, errlen);
	if (ret)
		return ret;
	uint8_t *dst = memmap__gpa_to_hva(mem, load_addr, memsz);
	memcpy(dst, img + file_off, size);
	memmap__zero(mem, dst + size, memsz - size);
	out->entry = entry;
	out->load_start = load_addr;
	out->load_end = load_addr + memsz;
	return 0;
}

/* ELF32 and ELF64 differ only in field widths: normalise to this. */
struct phdr {
	uint32_t type;
	uint64_t offset, vaddr, paddr, filesz, memsz;
};

static int read_phdr(const uint8_t *img, size_t len, bool is64, uint64_t phoff, unsigned int phentsize,
		     unsigned int i, struct phdr *ph)
{
	uint64_t off = phoff + (uint64_t)i * phentsize;

	if (is64) {
		Elf64_Phdr p;

		if (phentsize < sizeof(p) || off > len || len - off < sizeof(p))
			return -1;
		memcpy(&p, img + off, sizeof(p));
		*ph = (struct phdr){ p.p_type, p.p_offset, p.p_vaddr, p.p_paddr, p.p_filesz, p.p_memsz };
	} else {
		Elf32_Phdr p;

		if (phentsize < sizeof(p) || off > len || len - off < sizeof(p))
			return -1;
		memcpy(&p, img + off, sizeof(p));
		*ph = (struct phdr){ p.p_type, p.p_offset, p.p_vaddr, p.p_paddr, p.p_filesz, p.p_memsz };
	}
	return 0;
}

static int load_elf(struct guest_mem *mem, const uint8_t *img, size_t len,
		    struct mb_boot *out, char *err, size_t errlen)
{
	bool is64;
	uint64_t entry, e_entry, phoff, lo = UINT64_MAX, hi = 0;
	unsigned int phnum, phentsize, machine, type, loaded = 0;
	bool entry_mapped = false;
	struct phdr ph;
	int ret;

	if (len < sizeof(Elf32_Ehdr) || memcmp(img, ELFMAG, SELFMAG))
		return util__fail(-ENOEXEC, err, errlen,
			    "not an ELF file and its multiboot header has no address fields (flag 16)");
	if (img[EI_DATA] != ELFDATA2LSB)
		return util__fail(-ENOEXEC, err, errlen, "ELF file is not little-endian");
	if (img[EI_CLASS] == ELFCLASS32) {
		Elf32_Ehdr eh;

		memcpy(&eh, img, sizeof(eh));
		is64 = false;
		entry = eh.e_entry; phoff = eh.e_phoff; phnum = eh.e_phnum;
		phentsize = eh.e_phentsize; machine = eh.e_machine; type = eh.e_type;
	} else if (img[EI_CLASS] == ELFCLASS64) {
		Elf64_Ehdr eh;

		if (len < sizeof(eh))
			return util__fail(-ENOEXEC, err, errlen, "ELF header is truncated");
		memcpy(&eh, img, sizeof(eh));
		is64 = true;
		entry = eh.e_entry; phoff = eh.e_phoff; phnum = eh.e_phnum;
		phentsize = eh.e_phentsize; machine = eh.e_machine; type = eh.e_type;
	} else {
		return util__fail(-ENOEXEC, err, errlen, "unknown ELF class %u", img[EI_CLASS]);
	}
	if (machine != (is64 ? EM_X86_64 : EM_386))
		return util__fail(-ENOEXEC, err, errlen, "ELF%d file is not for %s (e_machine %u)",
			    is64 ? 64 : 32, is64 ? "x86-64" : "i386", machine);
	if (type != ET_EXEC)
		return util__fail(-ENOEXEC, err, errlen, "ELF file is not an executable (e_type %u)", type);
	if (!phnum)
		return util__fail(-ENOEXEC, err, errlen, "ELF file has no program headers");
	if (phoff > len)
		return util__fail(-ENOEXEC, err, errlen, "ELF program header table is truncated");
	e_entry = entry;

	/* validate everything before copying anything */
	for (unsigned int i = 0; i < phnum; i++) {
		if (read_phdr(img, len, is64, phoff, phentsize, i, &ph))
			return util__fail(-ENOEXEC, err, errlen, "ELF program header %u is truncated", i);
		if (ph.type != PT_LOAD || !ph.memsz)
			continue;
		if (ph.filesz > ph.memsz)
			return util__fail(-ENOEXEC, err, errlen, "ELF segment %u: file size exceeds memory size", i);
		if (ph.offset > len || ph.filesz > len - ph.offset)
			return util__fail(-ENOEXEC, err, errlen,
				    "ELF segment %u is truncated: needs bytes up to %" PRIu64 ", file has %zu",
				    i, ph.offset + ph.filesz, len);
		ret = check_range(mem, ph.paddr, ph.memsz, "kernel segment", err, errlen);
		if (ret)
			return ret;
		if (!entry_mapped && e_entry >= ph.vaddr && e_entry - ph.vaddr < ph.memsz) {
			entry = e_entry - ph.vaddr + ph.paddr;	/* higher-half kernels */
			entry_mapped = true;
		}
		lo = ph.paddr < lo ? ph.paddr : lo;
		hi = ph.paddr + ph.memsz > hi ? ph.paddr + ph.memsz : hi;
		loaded++;
	}
	if (!loaded)
		return util__fail(-ENOEXEC, err, errlen, "ELF file has no loadable segment");
	if (!entry_mapped || entry > UINT32_MAX)
		return util__fail(-ENOEXEC, err, errlen,
			    "ELF entry point 0x%" PRIx64 " is not inside a loaded segment", entry);

	for (unsigned int i = 0; i < phnum; i++) {
		read_phdr(img, len, is64, phoff, phentsize, i, &ph);
		if (ph.type != PT_LOAD || !ph.memsz)
			continue;
		uint8_t *dst = memmap__gpa_to_hva(mem, ph.paddr, ph.memsz);
		memcpy(dst, img + ph.offset, ph.filesz);
		memmap__zero(mem, dst + ph.filesz, ph.memsz - ph.filesz);
	}
	out->entry = (uint32_t)entry;
	out->load_start = lo;
	out->load_end = hi;
	return 0;
}

/* Move [addr, addr+size) above 1 MiB if it would cover the firmware area. */
static uint64_t skip_reserved(uint64_t addr, uint64_t size)
{
	if (addr < MEM_BIOS_END && addr + size > MEM_EBDA_START)
		return MEM_BIOS_END;
	return addr;
}

/*
 * Information block, placed on the page after the kernel:
 *   mb_info | mmap entries | module entries | strings
 * then each module on its own page-aligned range.
 */
static int build_info(struct guest_mem *mem, const char *cmdline, const struct mb_module *mods,
		      unsigned int nmods, struct mb_boot *out, char *err, size_t errlen)
{
	static const char loader[] = "khyve";
	struct mb_mmap_entry mmap[8];
	unsigned int nmmap = multiboot__mmap(mem, mmap, ARRAY_SIZE(mmap));
	uint64_t low = memmap__low_end(mem);
	uint64_t info = ALIGN_UP(out->load_end, PAGE);
	uint64_t strs, size, p, mod_addr;
	struct mb_info mbi;

	size = sizeof(mbi) + nmmap * sizeof(mmap[0]) + nmods * sizeof(struct mb_mod_entry);
	strs = size;
	size += strlen(cmdline) + 1 + sizeof(loader);
	for (unsigned int i = 0; i < nmods; i++)
		size += strlen(mods[i].string) + 1;
	info = skip_reserved(info, size);
	strs += info;
	if (info + size > low || info + size < info)
		return util__fail(-ENOSPC, err, errlen,
			    "boot information (%" PRIu64 " bytes) does not fit in guest memory after the kernel",
			    size);

	uint8_t *base = memmap__gpa_to_hva(mem, info, size);
	memset(base, 0, size);
	memset(&mbi, 0, sizeof(mbi));
	mbi.flags = MB_IF_MEM | MB_IF_CMDLINE | MB_IF_MMAP | MB_IF_LOADER_NAME | MB_IF_MODS;
	mbi.mem_lower = MEM_EBDA_START / 1024;
	mbi.mem_upper = (uint32_t)((low - MEM_BIOS_END) / 1024);
	mbi.mmap_addr = (uint32_t)(info + sizeof(mbi));
	mbi.mmap_length = nmmap * sizeof(mmap[0]);
	memcpy(base + sizeof(mbi), mmap, mbi.mmap_length);
	mbi.mods_addr = mbi.mmap_addr + mbi.mmap_length;
	mbi.mods_count = nmods;

	p = strs;
	mbi.cmdline = (uint32_t)p;
	memcpy(base + (p - info), cmdline, strlen(cmdline) + 1);
	p += strlen(cmdline) + 1;
	mbi.boot_loader_name = (uint32_t)p;
	memcpy(base + (p - info), loader, sizeof(loader));
	p += sizeof(loader);

	mod_addr = ALIGN_UP(info + size, PAGE);
	for (unsigned int i = 0; i < nmods; i++) {
		struct mb_mod_entry me = { 0 };
		size_t slen = strlen(mods[i].string) + 1;
		uint8_t *dst;

		mod_addr = skip_reserved(mod_addr, mods[i].len);

		if (mod_addr > low || mods[i].len > low - mod_addr)
			return util__fail(-ENOSPC, err, errlen,
				    "module '%s' (%zu bytes) does not fit in guest memory "
				    "(RAM below 4 GiB ends at 0x%" PRIx64 ")", mods[i].string, mods[i].len, low);
		dst = memmap__gpa_to_hva(mem, mod_addr, mods[i].len);
		memcpy(dst, mods[i].data, mods[i].len);
		me.mod_start = (uint32_t)mod_addr;
		me.mod_end = (uint32_t)(mod_addr + mods[i].len);
		me.string = (uint32_t)p;
		memcpy(base + (p - info), mods[i].string, slen);
		p += slen;
		memcpy(base + (mbi.mods_addr - info) + i * sizeof(me), &me, sizeof(me));
		mod_addr = ALIGN_UP(mod_addr + mods[i].len, PAGE);
	}
	memcpy(base, &mbi, sizeof(mbi));
	out->info = (uint32_t)info;
	out->end = nmods ? mod_addr : ALIGN_UP(info + size, PAGE);
	return 0;
}

int multiboot__load(struct guest_mem *mem, const void *image, size_t len,
		    const char *cmdline, const struct mb_module *mods, unsigned int nmods,
		    struct mb_boot *out, char *err, size_t errlen)
{
	const uint8_t *img = image;
	size_t hoff = SIZE_MAX;
	uint32_t flags;
	int ret;

	memset(out, 0, sizeof(*out));
	/* the whole 12-byte header must lie in the first 8192 bytes */
	for (size_t o = 0; o + 12 <= len && o + 12 <= MB_SEARCH_LEN; o += 4) {
		if (rd32(img + o) == MB_HEADER_MAGIC &&
		    rd32(img + o) + rd32(img + o + 4) + rd32(img + o + 8) == 0) {
			hoff = o;
			break;
		}
	}
	if (hoff == SIZE_MAX)
		return util__fail(-ENOEXEC, err, errlen,
			    "not a multiboot kernel: no multiboot header in the first %d bytes", MB_SEARCH_LEN);
	flags = rd32(img + hoff + 4);
	/* bits 0-15 are requirements; we meet 0 and 1, and treat a video mode
	 * request (2) as optional, as QEMU does, since there is no display. */
	if (flags & 0xFFF8u)
		return util__fail(-ENOEXEC, err, errlen,
			    "multiboot header requires unsupported features (flags 0x%x)", flags);

	if (flags & MB_HF_AOUT_KLUDGE)
		ret = load_aout(mem, img, len, hoff, out, err, errlen);
	else
		ret = load_elf(mem, img, len, out, err, errlen);
	if (ret)
		return ret;
	return build_info(mem, cmdline ? cmdline : "", mods, nmods, out, err, errlen);
}
