/*
 * Capturing and restoring KVM's view of the VM.
 *
 * KVM ordering rules followed by vmstate__restore_vcpu (each matters):
 *  - CPUID is set when the vCPU is created, before anything else: KVM
 *    derives the guest's XSAVE layout and MSR validity from it.
 *  - SREGS before REGS: EFER/CR0/CR4 decide how RIP/RFLAGS are checked.
 *  - XSAVE and XCRS after SREGS (CR4.OSXSAVE gates XCR0).
 *  - MSRs before the LAPIC: IA32_APIC_BASE selects xAPIC/x2APIC mode that
 *    the LAPIC register page is interpreted in.  IA32_TSC is written as a
 *    host-initiated write, so KVM sets this vCPU's TSC offset and keeps the
 *    vCPUs' TSCs in sync (the guest TSC continues from the saved value).
 *  - IA32_TSC_DEADLINE after the LAPIC: KVM ignores a deadline while the
 *    timer is not in TSC-deadline mode.
 *  - MP_STATE after the LAPIC (KVM may reset a vCPU's MP state when the
 *    LAPIC is set), VCPU_EVENTS last: pending exceptions, NMIs and
 *    interrupt shadows are re-injected on the next KVM_RUN.
 *  - VM-wide: IRQCHIP and PIT after every vCPU, kvmclock (KVM_SET_CLOCK)
 *    last, so the guest's clock continues from the saved value.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "khyve/util.h"
#include "khyve/vm.h"
#include "khyve/vmstate.h"

#define MSR_IA32_TSC_DEADLINE 0x6e0


/*
 * KVM_CHECK_EXTENSION, except that the tests can make a capability absent:
 * KHYVE_FAULT_NO_CAP=XSAVE2,XCRS (names without KVM_CAP_), as on an older
 * kernel.
 */
static int have_cap(int kvm_fd, int cap, const char *name)
{
	const char *p = getenv("KHYVE_FAULT_NO_CAP");
	size_t n = strlen(name);

	while (p && *p) {
		size_t len = strcspn(p, ",");

		if (len == n && !strncmp(p, name, n))
			return 0;
		p += len;
		if (*p == ',')
			p++;
	}
	return ioctl(kvm_fd, KVM_CHECK_EXTENSION, cap);
}

uint32_t vmstate__xsave_size(int kvm_fd)
{
	int r = have_cap(kvm_fd, KVM_CAP_XSAVE2, "XSAVE2");

	return r > (int)sizeof(struct kvm_xsave) ? (uint32_t)r : (uint32_t)sizeof(struct kvm_xsave);
}

/*
 * What a save needs from KVM beyond what running a VM needs, checked
 * before a save begins so that a host that cannot save refuses the
 * request by name instead of failing half way.  KVM_CAP_XSAVE2 (Linux
 * 5.17) is not needed: without it KVM_GET_XSAVE gives the whole state in
 * 4096 bytes (such a kernel has no larger XSAVE features for guests).
 */
int vmstate__check_save(struct vm *vm, char *err, size_t errlen)
{
	static const struct { int cap; const char *name, *what; } caps[] = {
		{ KVM_CAP_XCRS, "XCRS", "the vCPUs' XCR0" },
		{ KVM_CAP_VCPU_EVENTS, "VCPU_EVENTS", "pending exceptions and interrupts" },
		{ KVM_CAP_DEBUGREGS, "DEBUGREGS", "debug registers" },
		{ KVM_CAP_MP_STATE, "MP_STATE", "the vCPUs' run states" },
		{ KVM_CAP_ADJUST_CLOCK, "ADJUST_CLOCK", "kvmclock" },
	};

	if (have_cap(vm->kvm_fd, KVM_CAP_XSAVE2, "XSAVE2") <= 0 &&
	    have_cap(vm->kvm_fd, KVM_CAP_XSAVE, "XSAVE") <= 0)
		return util__fail(-ENOTSUP, err, errlen, "this host cannot save a VM: KVM lacks KVM_CAP_XSAVE2 "
				  "and KVM_CAP_XSAVE (needed to save the vCPUs' FPU and vector state)");
	for (unsigned int i = 0; i < ARRAY_SIZE(caps); i++)
		if (have_cap(vm->kvm_fd, caps[i].cap, caps[i].name) <= 0)
			return util__fail(-ENOTSUP, err, errlen, "this host cannot save a VM: KVM lacks KVM_CAP_%s "
					  "(needed to save %s)", caps[i].name, caps[i].what);
	return 0;
}

/* tests: KHYVE_FAULT_MSR_MAX=N pretends a snapshot holds at most N MSRs */
static unsigned int msr_max(void)
{
	const char *f = getenv("KHYVE_FAULT_MSR_MAX");
	long n = f ? strtol(f, NULL, 10) : 0;

	return n > 0 && n < VCPU_MAX_MSRS ? (unsigned int)n : VCPU_MAX_MSRS;
}

/*
 * Read every listed MSR KVM can read back (KVM lists some that a vCPU of
 * this model cannot read: those are skipped).  However many KVM lists;
 * if more can be read than a snapshot holds, the save is refused rather
 * than losing some.
 */
static int save_msrs(struct vm *vm, struct vcpu *v, struct vcpu_state *s, char *err, size_t errlen)
{
	struct kvm_msrs *m = calloc(1, sizeof(*m) + (vm->nmsrs + 1) * sizeof(struct kvm_msr_entry));
	unsigned int next = 0, total = 0, max = msr_max();
	int ret = 0;

	if (!m)
		return util__fail(-ENOMEM, err, errlen, "out of memory");
	while (next < vm->nmsrs) {
		unsigned int want = vm->nmsrs - next;
		int r;

		memset(m, 0, sizeof(*m) + want * sizeof(m->entries[0]));
		m->nmsrs = want;
		for (unsigned int i = 0; i < want; i++)
			m->entries[i].index = vm->msr_list[next + i];
		r = ioctl(v->fd, KVM_GET_MSRS, m);
		if (r < 0) {
			ret = util__fail(-errno, err, errlen, "vCPU %u: KVM_GET_MSRS: %s", v->id, strerror(errno));
			goto out;
		}
		for (int i = 0; i < r; i++, total++)
			if (total < max)
				s->msrs[total] = m->entries[i];
		next += (unsigned int)r;
		if (next < vm->nmsrs)
			next++;	/* msr_list[next] is unreadable: skip it */
	}
	if (total > max) {
		ret = util__fail(-E2BIG, err, errlen, "vCPU %u: KVM reads back %u MSRs, more than the %u a "
				 "snapshot holds: saving would lose some", v->id, total, max);
		goto out;
	}
	s->nmsrs = total;
out:
	free(m);
	return ret;
}

int vmstate__save_vcpu(struct vm *vm, struct vcpu *v, struct vcpu_state *s, char *err, size_t errlen)
{
	struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[VCPU_MAX_CPUID];
	} c;
	int r;

	memset(s, 0, offsetof(struct vcpu_state, xsave));
#define GET(ioc, arg)							\
	do {								\
		if (ioctl(v->fd, ioc, arg) < 0)				\
			return util__fail(-errno, err, errlen, "vCPU %u: " #ioc ": %s", v->id, strerror(errno)); \
	} while (0)
	GET(KVM_GET_REGS, &s->regs);
	GET(KVM_GET_SREGS, &s->sregs);
	GET(KVM_GET_XCRS, &s->xcrs);
	GET(KVM_GET_LAPIC, &s->lapic);
	GET(KVM_GET_MP_STATE, &s->mp);
	GET(KVM_GET_VCPU_EVENTS, &s->events);
	GET(KVM_GET_DEBUGREGS, &s->dregs);
	s->xsave_len = vmstate__xsave_size(vm->kvm_fd);
	if (s->xsave_len > VCPU_MAX_XSAVE)
		return util__fail(-E2BIG, err, errlen, "XSAVE area of %u bytes is larger than khyve supports",
			    s->xsave_len);
	if (have_cap(vm->kvm_fd, KVM_CAP_XSAVE2, "XSAVE2") > 0)
		GET(KVM_GET_XSAVE2, s->xsave);
	else	/* before Linux 5.17: the same layout, in 4096 bytes */
		GET(KVM_GET_XSAVE, s->xsave);
#undef GET
	r = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
	s->tsc_khz = r > 0 ? (uint32_t)r : 0;
	memset(&c, 0, sizeof(c));
	c.hdr.nent = VCPU_MAX_CPUID;
	if (ioctl(v->fd, KVM_GET_CPUID2, &c) < 0)
		return util__fail(-errno, err, errlen, "vCPU %u: KVM_GET_CPUID2: %s", v->id, strerror(errno));
	s->ncpuid = c.hdr.nent;
	memcpy(s->cpuid, c.e, s->ncpuid * sizeof(c.e[0]));
	return save_msrs(vm, v, s, err, errlen);
}

static int set_msrs(struct vcpu *v, const struct vcpu_state *s, bool deadline, uint32_t *refused)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[VCPU_MAX_MSRS];
	} m;
	int r;

	memset(&m, 0, sizeof(m));
	for (unsigned int i = 0; i < s->nmsrs; i++)
		if ((s->msrs[i].index == MSR_IA32_TSC_DEADLINE) == deadline)
			m.e[m.hdr.nmsrs++] = s->msrs[i];
	r = ioctl(v->fd, KVM_SET_MSRS, &m);
	if (r < 0)
		return -errno;
	if ((unsigned int)r != m.hdr.nmsrs) {
		*refused = m.e[r].index;
		return -EINVAL;
	}
	return 0;
}

int vmstate__restore_vcpu(struct vcpu *v, const struct vcpu_state *s, char *err, size_t errlen)
{
	struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[VCPU_MAX_CPUID];
	} c;
	uint32_t refused = 0;
	int r;

	/* the CPUID the guest saw, before anything KVM derives from it */
	memset(&c, 0, sizeof(c));
	c.hdr.nent = s->ncpuid;
	memcpy(c.e, s->cpuid, s->ncpuid * sizeof(c.e[0]));
	if (ioctl(v->fd, KVM_SET_CPUID2, &c) < 0)
		return util__fail(-errno, err, errlen, "vCPU %u: KVM_SET_CPUID2: %s", v->id, strerror(errno));

#define SET(ioc, arg)							\
	do {								\
		if (ioctl(v->fd, ioc, arg) < 0)				\
			return util__fail(-errno, err, errlen, "vCPU %u: " #ioc ": %s", v->id, strerror(errno)); \
	} while (0)
	SET(KVM_SET_SREGS, &s->sregs);
	SET(KVM_SET_REGS, &s->regs);
	SET(KVM_SET_XSAVE, s->xsave);
	SET(KVM_SET_XCRS, &s->xcrs);
	r = set_msrs(v, s, false, &refused);
	if (r == -EINVAL)
		return util__fail(r, err, errlen, "vCPU %u: KVM refused the saved value of MSR 0x%x", v->id, refused);
	if (r)
		return util__fail(r, err, errlen, "vCPU %u: KVM_SET_MSRS: %s", v->id, strerror(-r));
	SET(KVM_SET_LAPIC, &s->lapic);
	r = set_msrs(v, s, true, &refused);
	if (r)
		return util__fail(r, err, errlen, "vCPU %u: KVM refused the TSC deadline", v->id);
	SET(KVM_SET_MP_STATE, &s->mp);
	SET(KVM_SET_VCPU_EVENTS, &s->events);
	SET(KVM_SET_DEBUGREGS, &s->dregs);
#undef SET
	return 0;
}

int vmstate__save_vm(struct vm *vm, struct vmkvm_state *s, char *err, size_t errlen)
{
	struct kvm_irqchip chip;
	struct kvm_clock_data clock;

	memset(s, 0, sizeof(*s));
	for (unsigned int i = 0; i < 3; i++) {
		memset(&chip, 0, sizeof(chip));
		chip.chip_id = i;
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chip) < 0)
			return util__fail(-errno, err, errlen, "KVM_GET_IRQCHIP %u: %s", i, strerror(errno));
		if (i < 2)
			s->pic[i] = chip.chip.pic;
		else
			s->ioapic = chip.chip.ioapic;
	}
	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &s->pit) < 0)
		return util__fail(-errno, err, errlen, "KVM_GET_PIT2: %s", strerror(errno));
	memset(&clock, 0, sizeof(clock));
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock) < 0)
		return util__fail(-errno, err, errlen, "KVM_GET_CLOCK: %s", strerror(errno));
	s->clock = clock.clock;
	return 0;
}

int vmstate__restore_vm(struct vm *vm, const struct vmkvm_state *s, char *err, size_t errlen)
{
	struct kvm_irqchip chip;
	struct kvm_pit_state2 pit = s->pit;
	struct kvm_clock_data clock;

	for (unsigned int i = 0; i < 3; i++) {
		memset(&chip, 0, sizeof(chip));
		chip.chip_id = i;
		if (i < 2)
			chip.chip.pic = s->pic[i];
		else
			chip.chip.ioapic = s->ioapic;
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chip) < 0)
			return util__fail(-errno, err, errlen, "KVM_SET_IRQCHIP %u: %s", i, strerror(errno));
	}
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, &pit) < 0)
		return util__fail(-errno, err, errlen, "KVM_SET_PIT2: %s", strerror(errno));
	memset(&clock, 0, sizeof(clock));
	clock.clock = s->clock;
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0)
		return util__fail(-errno, err, errlen, "KVM_SET_CLOCK: %s", strerror(errno));
	return 0;
}

/* ---------- encoding: every field by name ---------- */

#define E8(b, s, f)  enc__u8(b, #f, (s)->f)
#define E16(b, s, f) enc__u16(b, #f, (s)->f)
#define E32(b, s, f) enc__u32(b, #f, (s)->f)
#define E64(b, s, f) enc__u64(b, #f, (s)->f)
#define D8(d, m, s, f)  ((s)->f = dec__u8(d, m, #f))
#define D16(d, m, s, f) ((s)->f = dec__u16(d, m, #f))
#define D32(d, m, s, f) ((s)->f = dec__u32(d, m, #f))
#define D64(d, m, s, f) ((s)->f = dec__u64(d, m, #f))

static void enc_regs(struct sbuf *b, const struct kvm_regs *r)
{
	enc__map_key(b, "regs");
	E64(b, r, rax); E64(b, r, rbx); E64(b, r, rcx); E64(b, r, rdx);
	E64(b, r, rsi); E64(b, r, rdi); E64(b, r, rsp); E64(b, r, rbp);
	E64(b, r, r8);  E64(b, r, r9);  E64(b, r, r10); E64(b, r, r11);
	E64(b, r, r12); E64(b, r, r13); E64(b, r, r14); E64(b, r, r15);
	E64(b, r, rip); E64(b, r, rflags);
	enc__end(b);
}

static void dec_regs(struct dec *d, const cbor_item_t *m, struct kvm_regs *r)
{
	m = dec__map(d, m, "regs");
	D64(d, m, r, rax); D64(d, m, r, rbx); D64(d, m, r, rcx); D64(d, m, r, rdx);
	D64(d, m, r, rsi); D64(d, m, r, rdi); D64(d, m, r, rsp); D64(d, m, r, rbp);
	D64(d, m, r, r8);  D64(d, m, r, r9);  D64(d, m, r, r10); D64(d, m, r, r11);
	D64(d, m, r, r12); D64(d, m, r, r13); D64(d, m, r, r14); D64(d, m, r, r15);
	D64(d, m, r, rip); D64(d, m, r, rflags);
}

static void enc_seg(struct sbuf *b, const char *name, const struct kvm_segment *s)
{
	enc__map_key(b, name);
	E64(b, s, base); E32(b, s, limit); E16(b, s, selector); E8(b, s, type);
	E8(b, s, present); E8(b, s, dpl); E8(b, s, db); E8(b, s, s); E8(b, s, l);
	E8(b, s, g); E8(b, s, avl); E8(b, s, unusable);
	enc__end(b);
}

static void dec_seg(struct dec *d, const cbor_item_t *m, const char *name, struct kvm_segment *s)
{
	m = dec__map(d, m, name);
	D64(d, m, s, base); D32(d, m, s, limit); D16(d, m, s, selector); D8(d, m, s, type);
	D8(d, m, s, present); D8(d, m, s, dpl); D8(d, m, s, db); D8(d, m, s, s); D8(d, m, s, l);
	D8(d, m, s, g); D8(d, m, s, avl); D8(d, m, s, unusable);
}

static void enc_dt(struct sbuf *b, const char *name, const struct kvm_dtable *t)
{
	enc__map_key(b, name);
	E64(b, t, base); E16(b, t, limit);
	enc__end(b);
}

static void dec_dt(struct dec *d, const cbor_item_t *m, const char *name, struct kvm_dtable *t)
{
	m = dec__map(d, m, name);
	D64(d, m, t, base); D16(d, m, t, limit);
}

static void enc_sregs(struct sbuf *b, const struct kvm_sregs *s)
{
	enc__map_key(b, "sregs");
	enc_seg(b, "cs", &s->cs); enc_seg(b, "ds", &s->ds); enc_seg(b, "es", &s->es);
	enc_seg(b, "fs", &s->fs); enc_seg(b, "gs", &s->gs); enc_seg(b, "ss", &s->ss);
	enc_seg(b, "tr", &s->tr); enc_seg(b, "ldt", &s->ldt);
	enc_dt(b, "gdt", &s->gdt); enc_dt(b, "idt", &s->idt);
	E64(b, s, cr0); E64(b, s, cr2); E64(b, s, cr3); E64(b, s, cr4); E64(b, s, cr8);
	E64(b, s, efer); E64(b, s, apic_base);
	enc__array_key(b, "interrupt_bitmap");
	for (unsigned int i = 0; i < 4; i++)
		enc__elem_u64(b, s->interrupt_bitmap[i]);
	enc__end(b);
	enc__end(b);
}

static void dec_sregs(struct dec *d, const cbor_item_t *m, struct kvm_sregs *s)
{
	cbor_item_t **a;
	size_t n;

	m = dec__map(d, m, "sregs");
	dec_seg(d, m, "cs", &s->cs); dec_seg(d, m, "ds", &s->ds); dec_seg(d, m, "es", &s->es);
	dec_seg(d, m, "fs", &s->fs); dec_seg(d, m, "gs", &s->gs); dec_seg(d, m, "ss", &s->ss);
	dec_seg(d, m, "tr", &s->tr); dec_seg(d, m, "ldt", &s->ldt);
	dec_dt(d, m, "gdt", &s->gdt); dec_dt(d, m, "idt", &s->idt);
	D64(d, m, s, cr0); D64(d, m, s, cr2); D64(d, m, s, cr3); D64(d, m, s, cr4); D64(d, m, s, cr8);
	D64(d, m, s, efer); D64(d, m, s, apic_base);
	a = dec__array(d, m, "interrupt_bitmap", &n);
	if (a && n != 4)
		dec__fail(d, "field 'interrupt_bitmap' has %zu words, expected 4", n);
	for (size_t i = 0; a && i < n && i < 4; i++)
		s->interrupt_bitmap[i] = dec__elem_u64(d, a[i], "interrupt_bitmap");
}

static void enc_events(struct sbuf *b, const struct kvm_vcpu_events *e)
{
	enc__map_key(b, "events");
	enc__map_key(b, "exception");
	E8(b, &e->exception, injected); E8(b, &e->exception, nr);
	E8(b, &e->exception, has_error_code); E8(b, &e->exception, pending);
	E32(b, &e->exception, error_code);
	enc__end(b);
	enc__map_key(b, "interrupt");
	E8(b, &e->interrupt, injected); E8(b, &e->interrupt, nr);
	E8(b, &e->interrupt, soft); E8(b, &e->interrupt, shadow);
	enc__end(b);
	enc__map_key(b, "nmi");
	E8(b, &e->nmi, injected); E8(b, &e->nmi, pending); E8(b, &e->nmi, masked);
	enc__end(b);
	enc__map_key(b, "smi");
	E8(b, &e->smi, smm); E8(b, &e->smi, pending); E8(b, &e->smi, smm_inside_nmi);
	E8(b, &e->smi, latched_init);
	enc__end(b);
	E32(b, e, sipi_vector); E32(b, e, flags);
	enc__u8(b, "triple_fault_pending", e->triple_fault.pending);
	E8(b, e, exception_has_payload); E64(b, e, exception_payload);
	enc__end(b);
}

static void dec_events(struct dec *d, const cbor_item_t *m, struct kvm_vcpu_events *e)
{
	const cbor_item_t *x;

	m = dec__map(d, m, "events");
	x = dec__map(d, m, "exception");
	D8(d, x, &e->exception, injected); D8(d, x, &e->exception, nr);
	D8(d, x, &e->exception, has_error_code); D8(d, x, &e->exception, pending);
	D32(d, x, &e->exception, error_code);
	x = dec__map(d, m, "interrupt");
	D8(d, x, &e->interrupt, injected); D8(d, x, &e->interrupt, nr);
	D8(d, x, &e->interrupt, soft); D8(d, x, &e->interrupt, shadow);
	x = dec__map(d, m, "nmi");
	D8(d, x, &e->nmi, injected); D8(d, x, &e->nmi, pending); D8(d, x, &e->nmi, masked);
	x = dec__map(d, m, "smi");
	D8(d, x, &e->smi, smm); D8(d, x, &e->smi, pending); D8(d, x, &e->smi, smm_inside_nmi);
	D8(d, x, &e->smi, latched_init);
	D32(d, m, e, sipi_vector); D32(d, m, e, flags);
	e->triple_fault.pending = dec__u8(d, m, "triple_fault_pending");
	D8(d, m, e, exception_has_payload); D64(d, m, e, exception_payload);
}

void vmstate__encode_vcpu(struct sbuf *b, const struct vcpu_state *s)
{
	enc__map(b);
	enc_regs(b, &s->regs);
	enc_sregs(b, &s->sregs);
	enc__u32(b, "xsave_len", s->xsave_len);
	enc__bytes(b, "xsave", s->xsave, s->xsave_len);
	enc__array_key(b, "xcrs");
	for (unsigned int i = 0; i < s->xcrs.nr_xcrs && i < KVM_MAX_XCRS; i++) {
		enc__map(b);
		enc__u32(b, "index", s->xcrs.xcrs[i].xcr);
		enc__u64(b, "value", s->xcrs.xcrs[i].value);
		enc__end(b);
	}
	enc__end(b);
	enc__u32(b, "xcrs_flags", s->xcrs.flags);
	enc__array_key(b, "msrs");
	for (unsigned int i = 0; i < s->nmsrs; i++) {
		enc__map(b);
		enc__u32(b, "index", s->msrs[i].index);
		enc__u64(b, "value", s->msrs[i].data);
		enc__end(b);
	}
	enc__end(b);
	enc__bytes(b, "lapic", s->lapic.regs, sizeof(s->lapic.regs));
	enc__u32(b, "mp_state", s->mp.mp_state);
	enc_events(b, &s->events);
	enc__map_key(b, "debugregs");
	E64(b, &s->dregs, db[0]); E64(b, &s->dregs, db[1]); E64(b, &s->dregs, db[2]);
	E64(b, &s->dregs, db[3]); E64(b, &s->dregs, dr6); E64(b, &s->dregs, dr7);
	E32(b, &s->dregs, flags);
	enc__end(b);
	enc__u32(b, "tsc_khz", s->tsc_khz);
	enc__array_key(b, "cpuid");
	for (unsigned int i = 0; i < s->ncpuid; i++) {
		const struct kvm_cpuid_entry2 *c = &s->cpuid[i];

		enc__map(b);
		E32(b, c, function); E32(b, c, index); E32(b, c, flags);
		E32(b, c, eax); E32(b, c, ebx); E32(b, c, ecx); E32(b, c, edx);
		enc__end(b);
	}
	enc__end(b);
	enc__end(b);
}

void vmstate__decode_vcpu(struct dec *d, const cbor_item_t *m, struct vcpu_state *s)
{
	cbor_item_t **a;
	const cbor_item_t *x;
	size_t n;

	memset(s, 0, offsetof(struct vcpu_state, xsave));
	dec_regs(d, m, &s->regs);
	dec_sregs(d, m, &s->sregs);
	s->xsave_len = dec__u32(d, m, "xsave_len");
	if (!d->ret && (s->xsave_len < sizeof(struct kvm_xsave) || s->xsave_len > VCPU_MAX_XSAVE))
		dec__fail(d, "field 'xsave_len' is %u, outside %zu..%u", s->xsave_len,
			  sizeof(struct kvm_xsave), VCPU_MAX_XSAVE);
	if (!d->ret)
		dec__bytes(d, m, "xsave", s->xsave, s->xsave_len);
	a = dec__array(d, m, "xcrs", &n);
	if (n > KVM_MAX_XCRS)
		dec__fail(d, "field 'xcrs' has %zu entries, at most %d", n, KVM_MAX_XCRS);
	for (size_t i = 0; a && !d->ret && i < n; i++) {
		s->xcrs.xcrs[i].xcr = dec__u32(d, a[i], "index");
		s->xcrs.xcrs[i].value = dec__u64(d, a[i], "value");
	}
	s->xcrs.nr_xcrs = (uint32_t)n;
	s->xcrs.flags = dec__u32(d, m, "xcrs_flags");
	a = dec__array(d, m, "msrs", &n);
	if (n > VCPU_MAX_MSRS)
		dec__fail(d, "field 'msrs' has %zu entries, at most %d", n, VCPU_MAX_MSRS);
	for (size_t i = 0; a && !d->ret && i < n; i++) {
		s->msrs[i].index = dec__u32(d, a[i], "index");
		s->msrs[i].data = dec__u64(d, a[i], "value");
	}
	s->nmsrs = (uint32_t)n;
	dec__bytes(d, m, "lapic", s->lapic.regs, sizeof(s->lapic.regs));
	s->mp.mp_state = dec__u32(d, m, "mp_state");
	if (!d->ret && s->mp.mp_state > KVM_MP_STATE_AP_RESET_HOLD)
		dec__fail(d, "field 'mp_state' is %u, not a KVM MP state", s->mp.mp_state);
	dec_events(d, m, &s->events);
	x = dec__map(d, m, "debugregs");
	D64(d, x, &s->dregs, db[0]); D64(d, x, &s->dregs, db[1]); D64(d, x, &s->dregs, db[2]);
	D64(d, x, &s->dregs, db[3]); D64(d, x, &s->dregs, dr6); D64(d, x, &s->dregs, dr7);
	D32(d, x, &s->dregs, flags);
	s->tsc_khz = dec__u32(d, m, "tsc_khz");
	a = dec__array(d, m, "cpuid", &n);
	if (n > VCPU_MAX_CPUID)
		dec__fail(d, "field 'cpuid' has %zu entries, at most %d", n, VCPU_MAX_CPUID);
	for (size_t i = 0; a && !d->ret && i < n; i++) {
		struct kvm_cpuid_entry2 *c = &s->cpuid[i];

		D32(d, a[i], c, function); D32(d, a[i], c, index); D32(d, a[i], c, flags);
		D32(d, a[i], c, eax); D32(d, a[i], c, ebx); D32(d, a[i], c, ecx); D32(d, a[i], c, edx);
	}
	s->ncpuid = (uint32_t)n;
}

static void enc_pic(struct sbuf *b, const char *name, const struct kvm_pic_state *p)
{
	enc__map_key(b, name);
	E8(b, p, last_irr); E8(b, p, irr); E8(b, p, imr); E8(b, p, isr);
	E8(b, p, priority_add); E8(b, p, irq_base); E8(b, p, read_reg_select); E8(b, p, poll);
	E8(b, p, special_mask); E8(b, p, init_state); E8(b, p, auto_eoi);
	E8(b, p, rotate_on_auto_eoi); E8(b, p, special_fully_nested_mode); E8(b, p, init4);
	E8(b, p, elcr); E8(b, p, elcr_mask);
	enc__end(b);
}

static void dec_pic(struct dec *d, const cbor_item_t *m, const char *name, struct kvm_pic_state *p)
{
	m = dec__map(d, m, name);
	D8(d, m, p, last_irr); D8(d, m, p, irr); D8(d, m, p, imr); D8(d, m, p, isr);
	D8(d, m, p, priority_add); D8(d, m, p, irq_base); D8(d, m, p, read_reg_select); D8(d, m, p, poll);
	D8(d, m, p, special_mask); D8(d, m, p, init_state); D8(d, m, p, auto_eoi);
	D8(d, m, p, rotate_on_auto_eoi); D8(d, m, p, special_fully_nested_mode); D8(d, m, p, init4);
	D8(d, m, p, elcr); D8(d, m, p, elcr_mask);
}

void vmstate__encode_irqchip(struct sbuf *b, const struct vmkvm_state *s)
{
	const struct kvm_ioapic_state *io = &s->ioapic;

	enc__map(b);
	enc_pic(b, "pic_master", &s->pic[0]);
	enc_pic(b, "pic_slave", &s->pic[1]);
	enc__map_key(b, "ioapic");
	E64(b, io, base_address); E32(b, io, ioregsel); E32(b, io, id); E32(b, io, irr);
	enc__array_key(b, "redirtbl");
	for (unsigned int i = 0; i < KVM_IOAPIC_NUM_PINS; i++)
		enc__elem_u64(b, io->redirtbl[i].bits);
	enc__end(b);
	enc__end(b);
	enc__end(b);
}

void vmstate__encode_pit(struct sbuf *b, const struct vmkvm_state *s)
{
	enc__map(b);
	E32(b, &s->pit, flags);
	enc__array_key(b, "channels");
	for (unsigned int i = 0; i < 3; i++) {
		const struct kvm_pit_channel_state *c = &s->pit.channels[i];

		enc__map(b);
		E32(b, c, count); E16(b, c, latched_count); E8(b, c, count_latched);
		E8(b, c, status_latched); E8(b, c, status); E8(b, c, read_state);
		E8(b, c, write_state); E8(b, c, write_latch); E8(b, c, rw_mode); E8(b, c, mode);
		E8(b, c, bcd); E8(b, c, gate);
		enc__end(b);
	}
	enc__end(b);
	enc__end(b);
}

void vmstate__encode_clock(struct sbuf *b, const struct vmkvm_state *s)
{
	enc__map(b);
	enc__u64(b, "kvmclock_ns", s->clock);
	enc__end(b);
}

void vmstate__decode_irqchip(struct dec *d, const cbor_item_t *m, struct vmkvm_state *s)
{
	struct kvm_ioapic_state *io = &s->ioapic;
	const cbor_item_t *x;
	cbor_item_t **a;
	size_t n;

	memset(&s->pic, 0, sizeof(s->pic));
	memset(&s->ioapic, 0, sizeof(s->ioapic));
	dec_pic(d, m, "pic_master", &s->pic[0]);
	dec_pic(d, m, "pic_slave", &s->pic[1]);
	x = dec__map(d, m, "ioapic");
	D64(d, x, io, base_address); D32(d, x, io, ioregsel); D32(d, x, io, id); D32(d, x, io, irr);
	a = dec__array(d, x, "redirtbl", &n);
	if (a && n != KVM_IOAPIC_NUM_PINS)
		dec__fail(d, "field 'redirtbl' has %zu entries, expected %d", n, KVM_IOAPIC_NUM_PINS);
	for (size_t i = 0; a && !d->ret && i < n; i++)
		io->redirtbl[i].bits = dec__elem_u64(d, a[i], "redirtbl");
}

void vmstate__decode_pit(struct dec *d, const cbor_item_t *x, struct vmkvm_state *s)
{
	cbor_item_t **a;
	size_t n;

	memset(&s->pit, 0, sizeof(s->pit));
	D32(d, x, &s->pit, flags);
	a = dec__array(d, x, "channels", &n);
	if (a && n != 3)
		dec__fail(d, "field 'channels' has %zu entries, expected 3", n);
	for (size_t i = 0; a && !d->ret && i < n; i++) {
		struct kvm_pit_channel_state *c = &s->pit.channels[i];

		D32(d, a[i], c, count); D16(d, a[i], c, latched_count); D8(d, a[i], c, count_latched);
		D8(d, a[i], c, status_latched); D8(d, a[i], c, status); D8(d, a[i], c, read_state);
		D8(d, a[i], c, write_state); D8(d, a[i], c, write_latch); D8(d, a[i], c, rw_mode);
		D8(d, a[i], c, mode); D8(d, a[i], c, bcd); D8(d, a[i], c, gate);
	}
}

void vmstate__decode_clock(struct dec *d, const cbor_item_t *m, struct vmkvm_state *s)
{
	s->clock = dec__u64(d, m, "kvmclock_ns");
}
