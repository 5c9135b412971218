/*
 * In-kernel interrupt controllers: 8259 pair, IOAPIC, LAPICs and the 8254
 * PIT.  The GSI routing is the PC convention (ISA IRQ 0 on IOAPIC pin 2)
 * that mptable.c describes to the guest.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <linux/kvm.h>

#include "khyve/irqchip.h"


unsigned int irqchip__default_routes(struct kvm_irq_routing_entry *e)
{
	unsigned int n = 0;

	for (unsigned int gsi = 0; gsi < 16; gsi++) {
		if (gsi == 2)
			continue;
		e[n++] = (struct kvm_irq_routing_entry){
			.gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
			.u.irqchip = { .irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
				       .pin = gsi % 8 },
		};
	}
	for (unsigned int gsi = 0; gsi < IRQCHIP_IOAPIC_PINS; gsi++) {
		if (gsi == 2)
			continue;
		e[n++] = (struct kvm_irq_routing_entry){
			.gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
			.u.irqchip = { .irqchip = KVM_IRQCHIP_IOAPIC, .pin = gsi == 0 ? 2 : gsi },
		};
	}
	return n;
}

static int irqchip__routing(int vm_fd)
{
	struct kvm_irq_routing *r;
	int ret = 0;

	r = calloc(1, sizeof(*r) + IRQCHIP_DEFAULT_ROUTES * sizeof(r->entries[0]));
	if (!r)
		return -ENOMEM;
	r->nr = irqchip__default_routes(r->entries);
	if (ioctl(vm_fd, KVM_SET_GSI_ROUTING, r) < 0)
		ret = -errno;
	free(r);
	return ret;
}

int irqchip__create(int vm_fd, uint8_t ioapic_id)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	struct kvm_irqchip chip = { .chip_id = KVM_IRQCHIP_IOAPIC };
	int ret;

	if (ioctl(vm_fd, KVM_CREATE_IRQCHIP) < 0)
		return -errno;
	ret = irqchip__routing(vm_fd);
	if (ret)
		return ret;
	if (ioctl(vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		return -errno;
	/* The IOAPIC's ID register must agree with the MP table. */
	if (ioctl(vm_fd, KVM_GET_IRQCHIP, &chip) < 0)
		return -errno;
	chip.chip.ioapic.id = ioapic_id;
	if (ioctl(vm_fd, KVM_SET_IRQCHIP, &chip) < 0)
		return -errno;
	return 0;
}

int irqchip__set_line(int vm_fd, unsigned int gsi, int level)
{
	struct kvm_irq_level l = { .irq = gsi, .level = level };

	if (ioctl(vm_fd, KVM_IRQ_LINE, &l) < 0)
		return -errno;
	return 0;
}
