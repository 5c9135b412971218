/* In-kernel PIC/IOAPIC/LAPIC and PIT, and interrupt lines into them. */
#ifndef KHYVE_IRQCHIP_H
#define KHYVE_IRQCHIP_H

#include <stdint.h>
#include <linux/kvm.h>

#define IRQCHIP_IOAPIC_PINS	24
#define IRQCHIP_DEFAULT_ROUTES	(15 + 23)	/* 8259 pins but 2, IOAPIC pins but 2 */

int irqchip__create(int vm_fd, uint8_t ioapic_id);
/*
 * The GSI routes the in-kernel irqchip gets (the PC convention: GSI 0 is
 * IOAPIC pin 2, GSI 2 is nothing): written to e (IRQCHIP_DEFAULT_ROUTES
 * entries); returns how many.  Every KVM_SET_GSI_ROUTING must repeat them,
 * since it replaces the whole table.
 */
unsigned int irqchip__default_routes(struct kvm_irq_routing_entry *e);
int irqchip__set_line(int vm_fd, unsigned int gsi, int level);

#endif
