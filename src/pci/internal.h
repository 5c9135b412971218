/*
 * Inside src/pci/: pci.c (the bus, configuration space, BARs, the common
 * snapshot part, the host bridge) and irq.c (MSI-X delivery through
 * irqfds and GSI routes, INTx) share these.
 */
#ifndef KHYVE_PCI_INTERNAL_H
#define KHYVE_PCI_INTERNAL_H

#include <stdint.h>

#include "khyve/pci.h"

static inline uint32_t cfg_read32(const struct pci_dev *pd, unsigned int off)
{
	const uint8_t *c = pd->st.cfg + off;

	return (uint32_t)c[0] | (uint32_t)c[1] << 8 | (uint32_t)c[2] << 16 | (uint32_t)c[3] << 24;
}

static inline void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }


static inline uint16_t msix_ctrl(const struct pci_dev *pd)
{
	return (uint16_t)(pd->st.cfg[pd->msix_cap + 2] | pd->st.cfg[pd->msix_cap + 3] << 8);
}

/* irq.c, called by pci.c under pd->lock */
/* Route every vector that can fire now (restore rebuilds KVM's routes with it). */
void msix_sync(struct pci_dev *pd);
/* The MSI-X capability or a table entry changed: sync, and send what is pending and unmasked. */
void msix_update(struct pci_dev *pd);
/* At creation: an eventfd and a GSI per vector, registered with KVM_IRQFD where KVM takes them. */
void msix_irqfds(struct pci_bus *bus, struct pci_dev *pd);
/* At teardown: deassign and close the irqfds. */
void msix_release(struct pci_dev *pd);

#endif
