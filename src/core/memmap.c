#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "khyve/memmap.h"

void memmap__layout(struct guest_mem *mem, uint64_t size)
{
	uint64_t low = size < MEM_MMIO_HOLE_START ? size : MEM_MMIO_HOLE_START;

	memset(mem, 0, sizeof(*mem));
	mem->src_fd = -1;
	mem->size = size;
	mem->regions[0] = (struct mem_region){ .gpa = 0, .size = low, .offset = 0 };
	mem->nregions = 1;
	if (size > low) {
		mem->regions[1] = (struct mem_region){
			.gpa = MEM_HIGH_START, .size = size - low, .offset = low,
		};
		mem->nregions = 2;
	}
}

void *memmap__gpa_to_hva(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	for (unsigned int i = 0; i < mem->nregions; i++) {
		const struct mem_region *r = &mem->regions[i];

		if (gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa)) {
			if (!mem->base)
				return NULL;
			return mem->base + r->offset + (gpa - r->gpa);
		}
	}
	return NULL;
}

void memmap__zero(const struct guest_mem *mem, uint8_t *p, uint64_t len)
{
	uintptr_t a = (uintptr_t)p, lo = (a + 4095) & ~(uintptr_t)4095, hi = (a + len) & ~(uintptr_t)4095;

	/* a file-backed (restored) mapping would drop back to the file's bytes */
	if (mem->src_fd >= 0 || hi <= lo || madvise((void *)lo, hi - lo, MADV_DONTNEED) < 0) {
		memset(p, 0, len);
		return;
	}
	memset(p, 0, lo - a);
	memset((void *)hi, 0, a + len - hi);
}

uint64_t memmap__low_end(const struct guest_mem *mem)
{
	return mem->regions[0].size;
}

int memmap__alloc(struct guest_mem *mem)
{
	void *p;

	/*
	 * NORESERVE: a 4 GiB guest that touches 64 MiB costs 64 MiB.  Pages
	 * are populated by the guest's own faults.
	 */
	p = mmap(NULL, mem->size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	madvise(p, mem->size, MADV_DONTDUMP);
	mem->base = p;
	return 0;
}

int memmap__map_file(struct guest_mem *mem, int fd)
{
	void *p;

	p = mmap(NULL, mem->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	madvise(p, mem->size, MADV_DONTDUMP);
	mem->base = p;
	mem->src_fd = fd;
	return 0;
}

void memmap__free(struct guest_mem *mem)
{
	if (mem->base)
		munmap(mem->base, mem->size);
	mem->base = NULL;
	if (mem->src_fd >= 0)
		close(mem->src_fd);
	mem->src_fd = -1;
}
