/*
 * The x86 machine under the generic VM (include/khyve/arch.h): what KVM
 * must offer, the host's CPUID and MSR tables, the VM's identity-map and
 * TSS pages, the in-kernel PIC/IOAPIC/PIT, the MP and ACPI tables of a
 * fresh boot, and what a restore checks and renews.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>

#include "khyve/acpi.h"
#include "khyve/arch.h"
#include "khyve/cpuid.h"
#include "khyve/irqchip.h"
#include "khyve/mptable.h"
#include "khyve/msr.h"
#include "khyve/pci.h"
#include "khyve/snapsec.h"
#include "khyve/util.h"
#include "khyve/vm.h"
#include "khyve/vmstate.h"

/* Top of the 32-bit hole, clear of the IOAPIC and LAPIC pages. */
#define IDENTITY_MAP_ADDR	0xFEFFC000ULL	/* one page */
#define TSS_ADDR		0xFEFFD000ULL	/* three pages */

int arch__check_kvm(int kvm_fd, char *err, size_t errlen)
{
	static const struct { int cap; const char *name; } needed[] = {
		{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
		{ KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" },
		{ KVM_CAP_PIT2, "KVM_CAP_PIT2" },
		{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
	};

	for (unsigned int i = 0; i < ARRAY_SIZE(needed); i++)
		if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, needed[i].cap) <= 0)
			return util__fail(-ENOTSUP, err, errlen, "KVM lacks %s", needed[i].name);
	return 0;
}

int arch__host_init(struct vm *vm, char *err, size_t errlen)
{
	int ret = cpuid__supported(vm->kvm_fd, &vm->cpuid);

	if (ret)
		return util__fail(ret, err, errlen, "KVM_GET_SUPPORTED_CPUID: %s", strerror(-ret));
	ret = msr__index_list(vm->kvm_fd, &vm->msr_list, &vm->nmsrs);
	if (ret)
		return util__fail(ret, err, errlen, "KVM_GET_MSR_INDEX_LIST: %s", strerror(-ret));
	return 0;
}

/* Intel's VMX needs both pages for real mode, inside guest-physical space. */
int arch__vm_init(struct vm *vm, char *err, size_t errlen)
{
	uint64_t ident = IDENTITY_MAP_ADDR;

	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &ident) < 0)
		return util__fail(-errno, err, errlen, "KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)TSS_ADDR) < 0)
		return util__fail(-errno, err, errlen, "KVM_SET_TSS_ADDR: %s", strerror(errno));
	return 0;
}

int arch__irqchip_init(struct vm *vm, char *err, size_t errlen)
{
	int ret = irqchip__create(vm->vm_fd, (uint8_t)vm->ncpus);

	if (ret)
		return util__fail(ret, err, errlen, "cannot create the in-kernel irqchip and PIT: %s",
				  strerror(-ret));
	return 0;
}

/* The MP table, and ACPI describing the same machine with a VM generation ID (acpi.h). */
int arch__write_tables(struct vm *vm, char *err, size_t errlen)
{
	const struct vm_config *cfg = vm->cfg;
	struct mptable_pci_irq irqs[CONFIG_MAX_SLOTS];
	struct acpi_config ac = { .ncpus = vm->ncpus, .irqs = irqs };
	unsigned int nirqs = pci__irq_routes(cfg, irqs);
	int ret;

	ret = mptable__write_pci(&vm->mem, vm->ncpus, cfg->nslots > 0, irqs, nirqs);
	if (ret)
		return util__fail(ret, err, errlen, "cannot write the MP table for %u vCPUs", vm->ncpus);
	if (getrandom(ac.genid, sizeof(ac.genid), 0) != sizeof(ac.genid))
		return util__fail(-EIO, err, errlen, "getrandom: %s", strerror(errno));
	if (cfg->nslots) {
		ac.ecam_base = PCI_ECAM_BASE;
		ac.nirqs = nirqs;
		pci__mmio64_window(vm, &ac.mmio64_base, &ac.mmio64_end);
	}
	ret = acpi__write(&vm->mem, &ac);
	if (ret)
		return util__fail(ret, err, errlen, "cannot write the ACPI tables for %u vCPUs", vm->ncpus);
	return 0;
}

void arch__free(struct vm *vm)
{
	free(vm->cpuid);
	free(vm->msr_list);
	vm->cpuid = NULL;
	vm->msr_list = NULL;
}

int arch__check_restore(struct vm *vm, const struct snap_state *st, const char *file,
			char *err, size_t errlen)
{
	struct snap_meta host = { 0 };
	uint32_t xsave = vmstate__xsave_size(vm->kvm_fd);

	arch__host_cpu(&host);
	if (strcmp(host.vendor, st->meta.vendor))
		return util__fail(-EINVAL, err, errlen, "snapshot '%s' was taken on a %s CPU; this host's is %s",
			    file, st->meta.vendor, host.vendor);
	if (st->ncpus > vm->max_vcpus)
		return util__fail(-EINVAL, err, errlen, "snapshot '%s' has %u vCPUs; KVM here allows at most %u",
			    file, st->ncpus, vm->max_vcpus);
	for (unsigned int i = 0; i < st->ncpus; i++)
		if (st->vcpus[i].xsave_len > xsave)
			return util__fail(-EINVAL, err, errlen,
				    "snapshot '%s' section 'vcpu.%u': XSAVE area of %u bytes, this host's is %u",
				    file, i, st->vcpus[i].xsave_len, xsave);
	return 0;
}

/*
 * Every restore is a new generation of the VM (it may be one of several
 * clones): a new VM generation ID, and its event, once the interrupt
 * controllers hold their saved state (acpi.h).
 */
int arch__new_generation(struct vm *vm, char *err, size_t errlen)
{
	uint8_t id[16];
	int ret;

	if (getrandom(id, sizeof(id), 0) != sizeof(id))
		return util__fail(-EIO, err, errlen, "getrandom: %s", strerror(errno));
	if (!acpi__genid_renew(&vm->mem, id))
		return 0;
	ret = irqchip__set_line(vm->vm_fd, ACPI_GED_GSI, 1) ?: irqchip__set_line(vm->vm_fd, ACPI_GED_GSI, 0);
	if (ret)
		return util__fail(ret, err, errlen, "cannot signal the new VM generation ID: %s", strerror(-ret));
	return 0;
}
