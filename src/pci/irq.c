/*
 * PCI interrupts: INTx (pins rotate by slot onto IOAPIC inputs
 * PCI_INTX_GSI_BASE..; the MP table's entries) and MSI-X delivery.  Each
 * MSI-X vector has an eventfd registered with KVM_IRQFD on a GSI of its
 * own; KVM's GSI routing table, replaced whole by KVM_SET_GSI_ROUTING,
 * routes the GSIs of the vectors that can fire (see pci.c's top comment).
 * Lock order: pd->lock before bus->route_lock, never the reverse.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "khyve/irqchip.h"
#include "khyve/log.h"
#include "khyve/pci.h"
#include "khyve/vm.h"

#include "internal.h"

/* function f uses INT(A + f % 4)#, the pins rotate by slot as on real boards */
unsigned int pci__intx_gsi(uint8_t slot, uint8_t func)
{
	return PCI_INTX_GSI_BASE + (slot + func % 4u) % PCI_INTX_GSI_COUNT;
}

unsigned int pci__irq_routes(const struct vm_config *cfg, struct mptable_pci_irq *out)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < cfg->nslots; i++) {
		const struct slot_config *sc = &cfg->slots[i];
		uint8_t pin = (uint8_t)(1 + sc->func % 4);
		bool dup = false;

		if (!strcmp(sc->device, "hostbridge"))
			continue;
		for (unsigned int j = 0; j < n; j++)
			dup |= out[j].slot == sc->slot && out[j].pin == pin;
		if (!dup)
			out[n++] = (struct mptable_pci_irq){ .slot = sc->slot, .pin = pin,
							     .gsi = (uint8_t)pci__intx_gsi(sc->slot, sc->func) };
	}
	return n;
}

bool pci__msix_enabled(const struct pci_dev *pd)
{
	return pd->msix_cap && (msix_ctrl(pd) & PCI_MSIX_ENABLE);
}

/* ---------- MSI-X delivery ---------- */

/*
 * Replace KVM's table with the default routes and every routed vector of
 * the bus.  Caller holds bus->route_lock, which guards the routed vectors
 * of every function.  0 or -errno.
 */
static int routing_submit(struct pci_bus *bus, int vm_fd)
{
	unsigned int n, max = IRQCHIP_DEFAULT_ROUTES + (bus->gsi_next - PCI_MSI_GSI_BASE);
	struct kvm_irq_routing *r = calloc(1, sizeof(*r) + max * sizeof(r->entries[0]));
	int ret = 0;

	if (!r)
		return -ENOMEM;
	n = irqchip__default_routes(r->entries);
	for (unsigned int s = 0; s < 32; s++) {
		for (unsigned int f = 0; f < 8; f++) {
			const struct pci_dev *pd = bus->dev[s][f];

			for (unsigned int v = 0; pd && v < PCI_MSIX_MAX; v++) {
				const struct pci_msix_route *rt = &pd->msix_route[v];

				if (!rt->routed || n >= max)
					continue;
				r->entries[n++] = (struct kvm_irq_routing_entry){
					.gsi = rt->gsi, .type = KVM_IRQ_ROUTING_MSI,
					.u.msi = { .address_lo = (uint32_t)rt->addr,
						   .address_hi = (uint32_t)(rt->addr >> 32), .data = rt->data },
				};
			}
		}
	}
	r->nr = n;
	if (pci__vm_ioctl(vm_fd, KVM_SET_GSI_ROUTING, r) < 0)
		ret = -errno;
	free(r);
	return ret;
}

static bool msix_masked(const struct pci_dev *pd, unsigned int v)
{
	return (msix_ctrl(pd) & PCI_MSIX_MASKALL) || (pd->st.msix[v].ctrl & 1);
}

/* The vector's route is in KVM's table with the entry's address and data. */
static bool msix_routed(const struct pci_dev *pd, unsigned int v)
{
	const struct pci_msix_route *r = &pd->msix_route[v];

	return r->efd >= 0 && r->routed && r->addr == pd->st.msix[v].addr && r->data == pd->st.msix[v].data;
}

/*
 * Give every vector that can fire now (MSI-X enabled, function and vector
 * unmasked) a route to its current address and data.  A masked vector
 * keeps whatever route it had: nothing goes through it while it is
 * masked, and unmasking it unchanged costs nothing.  If KVM refuses, the
 * vectors concerned go by KVM_SIGNAL_MSI.  Caller holds pd->lock.
 */
void msix_sync(struct pci_dev *pd)
{
	struct pci_bus *bus = pd->bus;
	unsigned int changed = 0;
	int ret;

	if (!bus || !pci__msix_enabled(pd))
		return;
	pthread_mutex_lock(&bus->route_lock);
	for (unsigned int v = 0; v < pd->st.msix_nvec; v++) {
		struct pci_msix_route *r = &pd->msix_route[v];

		if (r->efd < 0 || msix_masked(pd, v) || msix_routed(pd, v))
			continue;
		r->routed = true;
		r->addr = pd->st.msix[v].addr;
		r->data = pd->st.msix[v].data;
		changed |= 1u << v;
	}
	if (changed) {
		ret = routing_submit(bus, pd->vm->vm_fd);
		if (ret) {
			for (unsigned int v = 0; v < pd->st.msix_nvec; v++)
				if (changed & (1u << v))
					pd->msix_route[v].routed = false;
			if (!bus->route_failed)
				pr_warn("%s: KVM_SET_GSI_ROUTING: %s; MSI-X goes by KVM_SIGNAL_MSI",
					pd->name, strerror(-ret));
			bus->route_failed = true;
		}
	}
	pthread_mutex_unlock(&bus->route_lock);
}

static void msix_signal(struct pci_dev *pd, unsigned int v)
{
	struct kvm_msi msi = {
		.address_lo = (uint32_t)pd->st.msix[v].addr,
		.address_hi = (uint32_t)(pd->st.msix[v].addr >> 32),
		.data = pd->st.msix[v].data,
	};

	if (pd->vm->vm_fd >= 0 && pci__vm_ioctl(pd->vm->vm_fd, KVM_SIGNAL_MSI, &msi) < 0)
		pr_debug("%s: KVM_SIGNAL_MSI vector %u: %s", pd->name, v, strerror(errno));
}

/* Send an unmasked vector.  Caller holds pd->lock. */
static void msix_send(struct pci_dev *pd, unsigned int v)
{
	uint64_t one = 1;

	if (msix_routed(pd, v) && write(pd->msix_route[v].efd, &one, sizeof(one)) == sizeof(one))
		return;
	msix_signal(pd, v);
}

/* Caller holds pd->lock. */
void pci__msix_notify(struct pci_dev *pd, unsigned int v)
{
	if (v >= pd->st.msix_nvec || !pci__msix_enabled(pd))
		return;
	if (msix_masked(pd, v))
		pd->st.msix_pba |= (uint8_t)(1u << v);
	else
		msix_send(pd, v);
}

/*
 * The table or the control register changed: routes for what can fire,
 * then deliver what became unmasked.  Caller holds pd->lock.
 */
void msix_update(struct pci_dev *pd)
{
	if (!pci__msix_enabled(pd))
		return;
	msix_sync(pd);
	for (unsigned int v = 0; v < pd->st.msix_nvec; v++) {
		if ((pd->st.msix_pba & (1u << v)) && !msix_masked(pd, v)) {
			pd->st.msix_pba &= (uint8_t)~(1u << v);
			msix_send(pd, v);
		}
	}
}

/*
 * An eventfd and a GSI for each vector, registered with KVM_IRQFD; a
 * vector without them (no KVM, KVM refused) goes by KVM_SIGNAL_MSI.
 */
void msix_irqfds(struct pci_bus *bus, struct pci_dev *pd)
{
	for (unsigned int v = 0; pd->vm->vm_fd >= 0 && v < pd->st.msix_nvec; v++) {
		struct kvm_irqfd irqfd = { .gsi = bus->gsi_next };
		int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

		irqfd.fd = (uint32_t)efd;
		if (efd < 0 || pci__vm_ioctl(pd->vm->vm_fd, KVM_IRQFD, &irqfd) < 0) {
			pr_debug("%s: no irqfd for MSI-X vector %u: %s; KVM_SIGNAL_MSI instead",
				 pd->name, v, strerror(errno));
			if (efd >= 0)
				close(efd);
			return;
		}
		pd->msix_route[v].efd = efd;
		pd->msix_route[v].gsi = bus->gsi_next++;
	}
}

/* Deassign and close the irqfds (their routes stay in KVM's table, unused). */
void msix_release(struct pci_dev *pd)
{
	pthread_mutex_lock(&pd->bus->route_lock);
	for (unsigned int v = 0; v < PCI_MSIX_MAX; v++) {
		struct pci_msix_route *r = &pd->msix_route[v];
		struct kvm_irqfd irqfd = { .fd = (uint32_t)r->efd, .gsi = r->gsi, .flags = KVM_IRQFD_FLAG_DEASSIGN };

		if (r->efd < 0)
			continue;
		if (pd->vm->vm_fd >= 0)
			pci__vm_ioctl(pd->vm->vm_fd, KVM_IRQFD, &irqfd);
		close(r->efd);
		r->efd = -1;
		r->routed = false;
	}
	pthread_mutex_unlock(&pd->bus->route_lock);
}

bool pci__msix_access(struct pci_dev *pd, unsigned int bar, uint64_t off, uint8_t *data,
		      unsigned int len, bool is_write)
{
	if (!pd->msix_cap || bar != pd->msix_bar)
		return false;
	if (off >= pd->msix_table && off < pd->msix_table + 16u * pd->st.msix_nvec) {
		uint64_t rel = off - pd->msix_table;
		struct pci_msix_entry *e = &pd->st.msix[rel / 16];
		unsigned int field = (unsigned int)(rel % 16);
		uint8_t raw[16];

		/* the spec allows aligned 4- and 8-byte accesses only */
		if ((len != 4 && len != 8) || (field & (len - 1))) {
			if (!is_write)
				memset(data, 0xff, len);
			return true;
		}
		put32(raw, (uint32_t)e->addr);
		put32(raw + 4, (uint32_t)(e->addr >> 32));
		put32(raw + 8, e->data);
		put32(raw + 12, e->ctrl);
		if (!is_write) {
			memcpy(data, raw + field, len);
			return true;
		}
		memcpy(raw + field, data, len);
		e->addr = (uint64_t)(raw[0] | raw[1] << 8 | raw[2] << 16 | (uint32_t)raw[3] << 24) |
			  (uint64_t)(raw[4] | raw[5] << 8 | raw[6] << 16 | (uint32_t)raw[7] << 24) << 32;
		e->data = (uint32_t)(raw[8] | raw[9] << 8 | raw[10] << 16 | (uint32_t)raw[11] << 24);
		e->ctrl = raw[12] & 1;	/* only the mask bit is defined */
		msix_update(pd);
		return true;
	}
	if (off >= pd->msix_pba && off < pd->msix_pba + 8) {
		if (!is_write)	/* PBA is read-only */
			for (unsigned int i = 0; i < len; i++)
				data[i] = off + i == pd->msix_pba ? pd->st.msix_pba : 0;
		return true;
	}
	return false;
}

void pci__set_intx(struct pci_dev *pd, int level)
{
	bool off = pd->st.cfg[PCI_COMMAND + 1] & (PCI_CMD_INTX_OFF >> 8);
	int line = level && !off;

	if (level)
		pd->st.cfg[PCI_STATUS] |= PCI_STATUS_INTX;
	else
		pd->st.cfg[PCI_STATUS] &= (uint8_t)~PCI_STATUS_INTX;
	if (line != pd->st.intx_level) {
		pd->st.intx_level = (uint8_t)line;
		if (pd->vm->vm_fd >= 0)
			irqchip__set_line(pd->vm->vm_fd, pci__intx_gsi(pd->slot, pd->func), line);
	}
}
