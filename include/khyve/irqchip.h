/* In-kernel PIC/IOAPIC/LAPIC and PIT, and interrupt lines into them. */
#ifndef KHYVE_IRQCHIP_H
#define KHYVE_IRQCHIP_H

#include <stdint.h>

int irqchip__create(int vm_fd, uint8_t ioapic_id);
int irqchip__set_line(int vm_fd, unsigned int gsi, int level);

#endif
