/*
 * KVM state of a VM as plain structs (no pointers, no fds), separate from
 * the live VM: captured with save (ioctls only), written and read with
 * encode/decode (named fields), and put back with restore.
 */
#ifndef KHYVE_VMSTATE_H
#define KHYVE_VMSTATE_H

#include <stdint.h>
#include <linux/kvm.h>

#include "khyve/snapfmt.h"

struct vm;
struct vcpu;

#define VCPU_STATE_VERSION	1
#define IRQCHIP_STATE_VERSION	1
#define PIT_STATE_VERSION	1
#define CLOCK_STATE_VERSION	1
#define VCPU_MAX_MSRS		256
#define VCPU_MAX_CPUID		256
#define VCPU_MAX_XSAVE		(64 * 1024)

struct vcpu_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_mp_state mp;
	struct kvm_vcpu_events events;
	struct kvm_debugregs dregs;
	uint32_t tsc_khz;
	uint32_t nmsrs;
	struct kvm_msr_entry msrs[VCPU_MAX_MSRS];
	uint32_t ncpuid;
	struct kvm_cpuid_entry2 cpuid[VCPU_MAX_CPUID];
	uint32_t xsave_len;
	uint8_t xsave[VCPU_MAX_XSAVE];
};

/* The in-kernel irqchip, PIT and kvmclock. */
struct vmkvm_state {
	struct kvm_pic_state pic[2];
	struct kvm_ioapic_state ioapic;
	struct kvm_pit_state2 pit;
	uint64_t clock;
};

/* Capture; the vCPU must be out of KVM_RUN.  0 or -errno with err set. */
int vmstate__save_vcpu(struct vm *vm, struct vcpu *v, struct vcpu_state *s, char *err, size_t errlen);
int vmstate__save_vm(struct vm *vm, struct vmkvm_state *s, char *err, size_t errlen);

/* Put back, in KVM's ordering rules (see vmstate.c). */
int vmstate__restore_vcpu(struct vcpu *v, const struct vcpu_state *s, char *err, size_t errlen);
int vmstate__restore_vm(struct vm *vm, const struct vmkvm_state *s, char *err, size_t errlen);

void vmstate__encode_vcpu(struct sbuf *b, const struct vcpu_state *s);
void vmstate__decode_vcpu(struct dec *d, const cbor_item_t *m, struct vcpu_state *s);
/* three sections: irqchip, pit, clock */
void vmstate__encode_irqchip(struct sbuf *b, const struct vmkvm_state *s);
void vmstate__decode_irqchip(struct dec *d, const cbor_item_t *m, struct vmkvm_state *s);
void vmstate__encode_pit(struct sbuf *b, const struct vmkvm_state *s);
void vmstate__decode_pit(struct dec *d, const cbor_item_t *m, struct vmkvm_state *s);
void vmstate__encode_clock(struct sbuf *b, const struct vmkvm_state *s);
void vmstate__decode_clock(struct dec *d, const cbor_item_t *m, struct vmkvm_state *s);

/* Size of the XSAVE area KVM_GET_XSAVE2 returns on this host. */
uint32_t vmstate__xsave_size(int kvm_fd);
/* 0 if this host's KVM has everything a save needs; else -ENOTSUP, err says what. */
int vmstate__check_save(struct vm *vm, char *err, size_t errlen);

#endif
