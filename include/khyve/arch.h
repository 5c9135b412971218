/*
 * What the generic rooms (core/, snapshot/) ask of the architecture.
 * Everything that knows x86 - CPUID, MSRs, the in-kernel PIC/IOAPIC/PIT,
 * the identity map and TSS pages, MP and ACPI tables, register set-up for
 * a boot protocol, the checks a snapshot's CPU must pass - is behind these
 * calls, in src/arch/x86/ (machine.c, vcpu.c, and the modules they use:
 * cpuid.c, msr.c, irqchip.c, mptable.c, acpi.c, vmstate.c).
 */
#ifndef KHYVE_ARCH_H
#define KHYVE_ARCH_H

#include <stddef.h>

struct vm;
struct vcpu;
struct snap_meta;
struct snap_state;
struct vcpu_state;

/* /dev/kvm has what this architecture's VMs need (beyond the generic capabilities). */
int arch__check_kvm(int kvm_fd, char *err, size_t errlen);

/*
 * Building a VM, in this order: host tables before KVM_CREATE_VM
 * (host_init), the VM's own set-up right after it (vm_init), the
 * interrupt controllers once memory is in place (irqchip_init), the
 * firmware tables of a fresh boot (write_tables; a restore has them in its
 * memory), and each vCPU (vcpu_init).  0 or -errno, with err set.
 */
int arch__host_init(struct vm *vm, char *err, size_t errlen);
int arch__vm_init(struct vm *vm, char *err, size_t errlen);
int arch__irqchip_init(struct vm *vm, char *err, size_t errlen);
int arch__write_tables(struct vm *vm, char *err, size_t errlen);
int arch__vcpu_init(struct vm *vm, struct vcpu *v);
/* What host_init allocated. */
void arch__free(struct vm *vm);

/* A vCPU's registers in the log (a fatal exit). */
void arch__vcpu_dump(struct vcpu *v);

/* The host CPU's identity (vendor, family, model, stepping) in m. */
void arch__host_cpu(struct snap_meta *m);

/*
 * Restoring: this host can hold the snapshot's vCPUs (before the VM is
 * built), then a vCPU made here has every CPU feature the saved guest was
 * shown (before any device opens a backend), and once the saved state is
 * back, the guest learns it is a new generation (VM generation ID).
 */
int arch__check_restore(struct vm *vm, const struct snap_state *st, const char *file,
			char *err, size_t errlen);
int arch__check_features(struct vm *vm, const struct vcpu_state *v, const char *file,
			 char *err, size_t errlen);
int arch__new_generation(struct vm *vm, char *err, size_t errlen);

#endif
