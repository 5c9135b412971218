/*
 * An x86 vCPU (include/khyve/arch.h): its CPUID and MSRs when created,
 * the registers each boot protocol starts in, the log line of a fatal
 * exit, and whether a snapshot's CPU features are all on this host's.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "khyve/arch.h"
#include "khyve/cpuid.h"
#include "khyve/linux.h"
#include "khyve/log.h"
#include "khyve/msr.h"
#include "khyve/util.h"
#include "khyve/vm.h"
#include "khyve/vmstate.h"

/*
 * A new vCPU's CPUID (the host's supported table, with this vCPU's APIC
 * ID and topology) and MSRs at their reset values.
 */
int arch__vcpu_init(struct vm *vm, struct vcpu *v)
{
	size_t csize = sizeof(*vm->cpuid) + vm->cpuid->nent * sizeof(vm->cpuid->entries[0]);
	struct kvm_cpuid2 *c = malloc(csize);
	int ret;

	if (!c)
		return -ENOMEM;
	memcpy(c, vm->cpuid, csize);
	cpuid__setup_vcpu(c, v->id, vm->ncpus);
	ret = ioctl(v->fd, KVM_SET_CPUID2, c) < 0 ? -errno : 0;
	free(c);
	return ret ?: msr__reset(v->fd, vm->msr_list, vm->nmsrs);
}

/*
 * Multiboot machine state: 32-bit protected mode, flat 4 GiB segments,
 * paging off, EAX = magic, EBX = information structure.
 */
int vcpu__setup_multiboot(struct vcpu *v, uint32_t entry, uint32_t info)
{
	struct kvm_sregs s;
	struct kvm_regs r;
	struct kvm_segment code = {
		.base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 0xb,
		.present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1,
	};
	struct kvm_segment data = code;

	data.selector = 0x18;
	data.type = 0x3;
	if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
		return -errno;
	s.cs = code;
	s.ds = s.es = s.fs = s.gs = s.ss = data;
	s.cr0 = 0x11;	/* PE | ET */
	s.cr4 = 0;
	s.efer = 0;
	if (ioctl(v->fd, KVM_SET_SREGS, &s) < 0)
		return -errno;
	memset(&r, 0, sizeof(r));
	r.rip = entry;
	r.rax = 0x2BADB002;
	r.rbx = info;
	r.rflags = 0x2;
	if (ioctl(v->fd, KVM_SET_REGS, &r) < 0)
		return -errno;
	return 0;
}

/*
 * The 64-bit boot protocol: long mode, paging on with the loader's identity
 * map, __BOOT_CS a 64-bit code segment and the data segments __BOOT_DS, in
 * the loader's GDT (the kernel reloads its own at once).
 */
int vcpu__setup_linux64(struct vcpu *v, uint64_t entry, uint64_t zero_page)
{
	struct kvm_sregs s;
	struct kvm_regs r;
	struct kvm_segment code = {
		.base = 0, .limit = 0xffffffff, .selector = LINUX_BOOT_CS, .type = 0xb,
		.present = 1, .dpl = 0, .db = 0, .s = 1, .l = 1, .g = 1,
	};
	struct kvm_segment data = code;

	data.selector = LINUX_BOOT_DS;
	data.type = 0x3;
	data.l = 0;
	data.db = 1;
	if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
		return -errno;
	s.cs = code;
	s.ds = s.es = s.fs = s.gs = s.ss = data;
	s.gdt.base = LINUX_GDT_ADDR;
	s.gdt.limit = 4 * 8 - 1;
	s.cr3 = LINUX_PML4_ADDR;
	s.cr4 = 0x20;			/* PAE */
	s.cr0 = 0x80000033;		/* PG | NE | ET | MP | PE */
	s.efer = 0x500;			/* LMA | LME */
	if (ioctl(v->fd, KVM_SET_SREGS, &s) < 0)
		return -errno;
	memset(&r, 0, sizeof(r));
	r.rip = entry;
	r.rsi = zero_page;
	r.rflags = 0x2;
	if (ioctl(v->fd, KVM_SET_REGS, &r) < 0)
		return -errno;
	return 0;
}

void arch__vcpu_dump(struct vcpu *v)
{
	struct kvm_regs r;
	struct kvm_sregs s;

	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
		return;
	pr_info("vCPU %u: rip=0x%llx rsp=0x%llx rflags=0x%llx cs=0x%x cr0=0x%llx cr3=0x%llx "
		"cr4=0x%llx efer=0x%llx", v->id, (unsigned long long)r.rip, (unsigned long long)r.rsp,
		(unsigned long long)r.rflags, s.cs.selector, (unsigned long long)s.cr0,
		(unsigned long long)s.cr3, (unsigned long long)s.cr4, (unsigned long long)s.efer);
}

/*
 * The feature leaves a guest decides code paths on: every bit the guest was
 * shown must be one a new vCPU gets here, or the guest would run an
 * instruction this CPU lacks (AVX-512 on a host without it, say).  The
 * reference is what KVM reports for a freshly created vCPU given the
 * supported table, not KVM_GET_SUPPORTED_CPUID itself: under PVM the two
 * differ, and the former is what a new guest here would see.
 */
int arch__check_features(struct vm *vm, const struct vcpu_state *v, const char *file,
			 char *err, size_t errlen)
{
	struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[VCPU_MAX_CPUID];
	} fresh;
	static const struct { uint32_t fn, idx; } leaves[] = {
		{ 1, 0 }, { 7, 0 }, { 7, 1 }, { 0xd, 0 }, { 0xd, 1 }, { 0x80000001, 0 },
	};
	static const char *const regs[] = { "EAX", "EBX", "ECX", "EDX" };
	struct kvm_cpuid2 *host = &fresh.hdr;
	int ret = 0;

	memset(&fresh, 0, sizeof(fresh));
	fresh.hdr.nent = VCPU_MAX_CPUID;
	if (ioctl(vm->vcpus[0].fd, KVM_GET_CPUID2, &fresh) < 0)
		return util__fail(-EINVAL, err, errlen, "KVM_GET_CPUID2: %s", strerror(errno));
	for (unsigned int i = 0; i < ARRAY_SIZE(leaves) && !ret; i++) {
		const struct kvm_cpuid_entry2 *s = NULL;
		struct kvm_cpuid_entry2 *h = cpuid__find(host, leaves[i].fn, leaves[i].idx);
		uint32_t want[4], have[4];

		for (unsigned int j = 0; j < v->ncpuid; j++)
			if (v->cpuid[j].function == leaves[i].fn &&
			    (!(v->cpuid[j].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || v->cpuid[j].index == leaves[i].idx))
				s = &v->cpuid[j];
		if (!s)
			continue;
		/* leaf 1 EBX and leaf 0xD EBX/ECX are IDs and sizes, not features */
		want[0] = leaves[i].fn == 0xd ? s->eax : (leaves[i].fn == 7 ? s->eax : 0);
		want[1] = leaves[i].fn == 7 ? s->ebx : 0;
		want[2] = leaves[i].fn == 0xd ? 0 : s->ecx;
		/* OSXSAVE and OSPKE mirror the guest's CR4, not what the CPU has */
		if (leaves[i].fn == 1)
			want[2] &= ~(1u << 27);
		if (leaves[i].fn == 7 && leaves[i].idx == 0)
			want[2] &= ~(1u << 4);
		want[3] = leaves[i].fn == 0xd ? 0 : s->edx;
		if (leaves[i].fn == 7 && leaves[i].idx == 0)
			want[0] = 0;	/* max subleaf */
		have[0] = h ? h->eax : 0; have[1] = h ? h->ebx : 0;
		have[2] = h ? h->ecx : 0; have[3] = h ? h->edx : 0;
		if (leaves[i].fn == 1)
			have[2] |= 1u << 31;	/* hypervisor bit: khyve sets it */
		for (unsigned int r = 0; r < 4; r++) {
			if (want[r] & ~have[r]) {
				ret = util__fail(-EINVAL, err, errlen,
					   "snapshot '%s' needs CPU features this host lacks: CPUID leaf 0x%x.%u %s bits 0x%x",
					   file, leaves[i].fn, leaves[i].idx, regs[r], want[r] & ~have[r]);
				break;
			}
		}
	}
	return ret;
}

/*
 * Halted with interrupts off (or never started, beside such a BSP): on x86
 * nothing but an NMI or INIT wakes it, and nobody sends either.
 */
bool vcpu__all_dead_halted(struct vm *vm)
{
	bool bsp_dead = false;

	for (unsigned int i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		struct kvm_mp_state mp;
		struct kvm_regs r;

		if (ioctl(v->fd, KVM_GET_MP_STATE, &mp) < 0)
			return false;
		switch (mp.mp_state) {
		case KVM_MP_STATE_HALTED:
			if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || (r.rflags & 0x200))
				return false;
			if (i == 0)
				bsp_dead = true;
			break;
		case KVM_MP_STATE_UNINITIALIZED:
		case KVM_MP_STATE_INIT_RECEIVED:
			/* an AP nobody started stays dead only if the BSP is */
			if (i == 0)
				return false;
			break;
		default:
			return false;
		}
	}
	return bsp_dead;
}
