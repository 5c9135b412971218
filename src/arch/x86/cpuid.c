#include <cpuid.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "khyve/arch.h"
#include "khyve/cpuid.h"
#include "khyve/snapsec.h"

#define CPUID_HYPERVISOR	(1u << 31)
#define CPUID_HTT		(1u << 28)

int cpuid__supported(int kvm_fd, struct kvm_cpuid2 **out)
{
	unsigned int nent = 128;

	for (;;) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));

		if (!c)
			return -ENOMEM;
		c->nent = nent;
		if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			*out = c;
			return 0;
		}
		free(c);
		if (errno != E2BIG || nent >= 4096)
			return -errno;
		nent *= 2;
	}
}

struct kvm_cpuid_entry2 *cpuid__find(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function != fn)
			continue;
		if (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == idx)
			return e;
	}
	return NULL;
}

/* bits needed to number n things: 1 -> 0, 2 -> 1, 3..4 -> 2 */
static unsigned int order(unsigned int n)
{
	unsigned int b = 0;

	while ((1u << b) < n)
		b++;
	return b;
}

/*
 * Topology: one package of ncpus cores, one thread per core, APIC ID equal
 * to the vCPU index.  Leaves Intel and AMD guests read are both covered,
 * since KVM passes through whichever the host has.
 */
void cpuid__setup_vcpu(struct kvm_cpuid2 *c, unsigned int cpu, unsigned int ncpus)
{
	unsigned int bits = order(ncpus);

	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		switch (e->function) {
		case 1:
			e->ebx &= 0x0000ffffu;
			e->ebx |= (cpu & 0xffu) << 24;
			e->ebx |= (bits >= 8 ? 0xffu : 1u << bits) << 16;
			if (ncpus > 1)
				e->edx |= CPUID_HTT;
			else
				e->edx &= ~CPUID_HTT;
			e->ecx |= CPUID_HYPERVISOR;
			break;
		case 4:
			if ((e->eax & 0x1f) == 0)	/* no cache at this index */
				break;
			e->eax &= 0x00003fffu;
			e->eax |= (((1u << bits) - 1) & 0x3fu) << 26;
			if (((e->eax >> 5) & 7) == 3)	/* L3: shared by every core */
				e->eax |= (((1u << bits) - 1) & 0xfffu) << 14;
			break;
		case 0xb:
		case 0x1f:
			e->edx = cpu;
			if (e->index == 0) {
				e->eax = 0;
				e->ebx = 1;
				e->ecx = (1u << 8) | 0;
			} else if (e->index == 1) {
				e->eax = bits;
				e->ebx = ncpus;
				e->ecx = (2u << 8) | 1;
			} else {
				e->eax = 0;
				e->ebx = 0;
				e->ecx = e->index & 0xff;
			}
			break;
		case 0x80000008:
			e->ecx &= ~0xf0ffu;
			e->ecx |= (ncpus - 1) & 0xffu;
			e->ecx |= (bits & 0xfu) << 12;
			break;
		case 0x8000001e:
			e->eax = cpu;
			e->ebx = cpu & 0xffu;	/* core id, one thread per core */
			e->ecx = 0;
			break;
		case 0x8000001d:
			if ((e->eax & 0x1f) == 0)
				break;
			e->eax &= ~(0xfffu << 14);
			if (((e->eax >> 5) & 7) == 3)
				e->eax |= ((ncpus - 1) & 0xfffu) << 14;
			break;
		default:
			break;
		}
	}
}

/* For a snapshot's record of the host it was taken on (arch.h). */
void arch__host_cpu(struct snap_meta *m)
{
	unsigned int a, b, c, d;

	__cpuid(0, a, b, c, d);
	memcpy(m->vendor, &b, 4);
	memcpy(m->vendor + 4, &d, 4);
	memcpy(m->vendor + 8, &c, 4);
	__cpuid(1, a, b, c, d);
	m->stepping = a & 0xf;
	m->model = ((a >> 4) & 0xf) | ((a >> 12) & 0xf0);
	m->family = ((a >> 8) & 0xf) + ((a >> 20) & 0xff);
}
