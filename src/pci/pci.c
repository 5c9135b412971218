/*
 * PCI bus 0 and its configuration space access: mechanism #1 (ports
 * 0xCF8/0xCFC) and ECAM (MMIO at PCI_ECAM_BASE), both through
 * config_access().  The bus is itself a device ("pci"): its one piece of
 * state is the address latch at 0xCF8, which a snapshot taken between a
 * guest's OUT to 0xCF8 and its IN from 0xCFC must keep.  It exists only
 * when -s gave at least one slot, so machines and snapshots without PCI
 * are exactly what they were.
 *
 * BARs are placed by khyve at creation, in slot order, naturally aligned:
 * 32-bit ones from PCI_MMIO_BASE up, 64-bit ones from max(4 GiB, end of
 * RAM) up; their MMIO ranges are registered on the bus once (the bus
 * tables never change while vCPUs run).  A BAR decodes when memory
 * decoding is on and it still holds that address (both halves, for a
 * 64-bit one); sizing it (all-ones) works as on hardware.
 *
 * MSI-X (irq.c, with INTx): each vector has an eventfd registered with
 * KVM_IRQFD on a GSI of its own, from PCI_MSI_GSI_BASE up.  Whenever a
 * vector can fire (MSI-X on, function and vector unmasked) KVM's GSI
 * routing table routes that GSI to the vector's address and data; the
 * table is replaced whole by KVM_SET_GSI_ROUTING, so it is rebuilt from
 * irqchip.c's default routes plus every routed vector of the bus.  Routes change only when the guest
 * unmasks a vector or rewrites an unmasked one (drivers mask, write and
 * unmask: one KVM call), not on every table write.  Notifying a vector is
 * then one write() to its eventfd.  When KVM refuses the irqfd or the
 * routing, that vector goes by KVM_SIGNAL_MSI, as without KVM.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "khyve/cpuid.h"
#include "khyve/irqchip.h"
#include "khyve/log.h"
#include "khyve/pci.h"
#include "khyve/snapfmt.h"
#include "khyve/util.h"
#include "khyve/vm.h"

#include "internal.h"

static int vm_ioctl(int vm_fd, unsigned long req, void *arg)
{
	return ioctl(vm_fd, req, arg);
}

int (*pci__vm_ioctl)(int vm_fd, unsigned long req, void *arg) = vm_ioctl;

extern const struct pci_devtype *const __start_khyve_pcidevs[] __attribute__((weak));
extern const struct pci_devtype *const __stop_khyve_pcidevs[] __attribute__((weak));

const struct pci_devtype *pci__find_type(const char *name)
{
	for (const struct pci_devtype *const *t = __start_khyve_pcidevs; t < __stop_khyve_pcidevs; t++)
		if (!strcmp((*t)->ops->name, name))
			return *t;
	return NULL;
}

const struct pci_devtype *pci__type(unsigned int i)
{
	return i < (size_t)(__stop_khyve_pcidevs - __start_khyve_pcidevs) ? __start_khyve_pcidevs[i] : NULL;
}

int pci__check_device(const char *name, const char *opts, char *err, size_t errlen)
{
	const struct pci_devtype *t = pci__find_type(name);
	char known[256] = "";
	size_t n = 0;

	if (t)
		return t->check ? t->check(opts, err, errlen) : 0;
	for (const struct pci_devtype *const *o = __start_khyve_pcidevs; o < __stop_khyve_pcidevs; o++)
		n += (size_t)snprintf(known + n, n < sizeof(known) ? sizeof(known) - n : 0, "%s%s",
				      n ? ", " : "", (*o)->ops->name);
	snprintf(err, errlen, "unknown PCI device '%s' (known: %s)", name, known);
	return -EINVAL;
}

void pci__instance_name(const struct slot_config *sc, char *buf, size_t len)
{
	if (sc->func)
		snprintf(buf, len, "%s.%u.%u", sc->device, sc->slot, sc->func);
	else
		snprintf(buf, len, "%s.%u", sc->device, sc->slot);
}

void pci__mmio64_window(const struct vm *vm, uint64_t *base, uint64_t *end)
{
	*base = PCI_MMIO64_MIN;
	for (unsigned int i = 0; i < vm->mem.nregions; i++) {
		uint64_t e = vm->mem.regions[i].gpa + vm->mem.regions[i].size;

		if (e > *base)
			*base = e;
	}
	*end = 1ULL << 52;	/* the architectural limit, unless the CPU says less */
	if (vm->cpuid) {
		const struct kvm_cpuid_entry2 *e = cpuid__find(vm->cpuid, 0x80000008, 0);

		if (e && (e->eax & 0xff) >= 32 && (e->eax & 0xff) < 52)
			*end = 1ULL << (e->eax & 0xff);
	}
}

void pci__set_ids(struct pci_dev *pd, uint16_t vendor, uint16_t device, uint8_t rev,
		  uint32_t class_code, uint16_t subvendor, uint16_t subsys)
{
	put16(pd->st.cfg + PCI_VENDOR_ID, vendor);
	put16(pd->st.cfg + PCI_DEVICE_ID, device);
	pd->st.cfg[PCI_REVISION] = rev;
	pd->st.cfg[PCI_CLASS_PROG] = (uint8_t)class_code;
	pd->st.cfg[PCI_CLASS_PROG + 1] = (uint8_t)(class_code >> 8);
	pd->st.cfg[PCI_CLASS_PROG + 2] = (uint8_t)(class_code >> 16);
	put16(pd->st.cfg + PCI_SUBSYS_VENDOR, subvendor);
	put16(pd->st.cfg + PCI_SUBSYS_ID, subsys);
}

/* BAR n is free: not used, and not the upper half of a 64-bit BAR n - 1 */
static bool bar_free(const struct pci_dev *pd, unsigned int n)
{
	return n < PCI_NBARS && !pd->bar[n].size && !(n > 0 && (pd->bar[n - 1].type & PCI_BAR_MEM64));
}

int pci__add_bar(struct pci_dev *pd, unsigned int n, uint32_t size, bus_read_fn read, bus_write_fn write)
{
	if (!bar_free(pd, n) || size < 4096 || (size & (size - 1)))
		return -EINVAL;
	pd->bar[n] = (struct pci_bar){ .size = size, .read = read, .write = write };
	put32(pd->wmask + PCI_BAR0 + 4 * n, ~(size - 1));
	return 0;
}

int pci__add_bar64(struct pci_dev *pd, unsigned int n, uint64_t size, unsigned int flags,
		   bus_read_fn read, bus_write_fn write)
{
	uint64_t mask = ~(size - 1);

	if (!bar_free(pd, n) || !bar_free(pd, n + 1) || size < 4096 || (size & (size - 1)) ||
	    (flags & ~(unsigned int)PCI_BAR_PREFETCH))
		return -EINVAL;
	pd->bar[n] = (struct pci_bar){ .size = size, .type = (uint8_t)(PCI_BAR_MEM64 | flags),
				       .read = read, .write = write };
	/* the type bits are read-only; from 4 GiB on, the low half has no address bits */
	put32(pd->st.cfg + PCI_BAR0 + 4 * n, pd->bar[n].type);
	put32(pd->wmask + PCI_BAR0 + 4 * n, (uint32_t)mask & ~0xfu);
	put32(pd->wmask + PCI_BAR0 + 4 * (n + 1), (uint32_t)(mask >> 32));
	return 0;
}

uint8_t pci__add_cap(struct pci_dev *pd, uint8_t id, uint8_t len)
{
	uint8_t off = (uint8_t)((pd->cap_end + 3) & ~3);

	if (len < 2 || off + len > 256)
		return 0;
	pd->st.cfg[off] = id;
	pd->st.cfg[off + 1] = 0;
	if (pd->cap_last)
		pd->st.cfg[pd->cap_last + 1] = off;
	else
		pd->st.cfg[PCI_CAP_PTR] = off;
	pd->st.cfg[PCI_STATUS] |= PCI_STATUS_CAPS;
	pd->cap_last = off;
	pd->cap_end = (uint8_t)(off + len < 256 ? off + len : 255);
	return off;
}

int pci__add_msix(struct pci_dev *pd, unsigned int nvec, unsigned int bar, uint32_t table, uint32_t pba)
{
	uint8_t off;

	if (!nvec || nvec > PCI_MSIX_MAX || bar >= PCI_NBARS || !pd->bar[bar].size ||
	    (table & 7) || (pba & 7) || table + 16 * nvec > pd->bar[bar].size || pba + 8 > pd->bar[bar].size)
		return -EINVAL;
	off = pci__add_cap(pd, PCI_CAP_MSIX, 12);
	if (!off)
		return -ENOSPC;
	put16(pd->st.cfg + off + 2, (uint16_t)(nvec - 1));
	put32(pd->st.cfg + off + 4, table | bar);
	put32(pd->st.cfg + off + 8, pba | bar);
	pd->wmask[off + 3] = (PCI_MSIX_ENABLE | PCI_MSIX_MASKALL) >> 8;
	pd->msix_cap = off;
	pd->msix_bar = (uint8_t)bar;
	pd->msix_table = table;
	pd->msix_pba = pba;
	pd->st.msix_nvec = (uint16_t)nvec;
	for (unsigned int i = 0; i < nvec; i++)
		pd->st.msix[i].ctrl = 1;	/* masked at reset */
	return 0;
}

/* ---------- BAR dispatch ---------- */

bool pci__bar_decodes(const struct pci_dev *pd, unsigned int n)
{
	uint64_t at = cfg_read32(pd, PCI_BAR0 + 4 * n) & ~0xfu;

	if (pd->bar[n].type & PCI_BAR_MEM64)
		at |= (uint64_t)cfg_read32(pd, PCI_BAR0 + 4 * (n + 1)) << 32;
	return (pd->st.cfg[PCI_COMMAND] & PCI_CMD_MEM) && at == pd->bar[n].addr;
}

/* the bus range's opaque is the struct pci_bar */
static void bar_read(void *opaque, uint64_t off, uint8_t *data, unsigned int len)
{
	struct pci_bar *b = opaque;

	if (!pci__bar_decodes(b->pd, b->n)) {
		memset(data, 0xff, len);
		return;
	}
	b->read(b->pd, off, data, len);
}

static void bar_write(void *opaque, uint64_t off, const uint8_t *data, unsigned int len)
{
	struct pci_bar *b = opaque;

	if (pci__bar_decodes(b->pd, b->n))
		b->write(b->pd, off, data, len);
}

/* ---------- configuration space ---------- */

static void cfg_write(struct pci_dev *pd, unsigned int off, const uint8_t *data, unsigned int len)
{
	bool msix_touched = false;
	uint16_t cmd_before = (uint16_t)(pd->st.cfg[PCI_COMMAND] | pd->st.cfg[PCI_COMMAND + 1] << 8);

	for (unsigned int i = 0; i < len && off + i < 256; i++) {
		unsigned int o = off + i;

		pd->st.cfg[o] = (uint8_t)((pd->st.cfg[o] & ~pd->wmask[o]) | (data[i] & pd->wmask[o]));
		if (pd->msix_cap && o >= pd->msix_cap && o < pd->msix_cap + 4u)
			msix_touched = true;
	}
	if (msix_touched)
		msix_update(pd);
	if ((cmd_before ^ pd->st.cfg[PCI_COMMAND + 1] << 8) & PCI_CMD_INTX_OFF)
		pci__set_intx(pd, !!(pd->st.cfg[PCI_STATUS] & PCI_STATUS_INTX));
}

static void conf_addr_io(void *opaque, uint64_t off, const uint8_t *data, unsigned int len, uint8_t *out)
{
	struct pci_bus *bus = opaque;

	/* only a 4-byte access at 0xCF8 is the address register (0xCF9 is not) */
	if (off != 0 || len != 4) {
		if (out)
			memset(out, 0xff, len);
		return;
	}
	pthread_mutex_lock(&bus->lock);
	if (out) {
		memcpy(out, &bus->conf_addr, 4);
	} else {
		memcpy(&bus->conf_addr, data, 4);
		bus->conf_addr &= 0x80fffffcu;
	}
	pthread_mutex_unlock(&bus->lock);
}

static void conf_addr_read(void *opaque, uint64_t off, uint8_t *data, unsigned int len)
{
	conf_addr_io(opaque, off, NULL, len, data);
}

static void conf_addr_write(void *opaque, uint64_t off, const uint8_t *data, unsigned int len)
{
	conf_addr_io(opaque, off, data, len, NULL);
}

/*
 * One configuration access, from either mechanism, to register reg of
 * function dev.fn on bus busno: 1, 2 or 4 bytes, naturally aligned,
 * reg < 4096.  Anything else, or a function that does not exist, reads
 * all-ones and writes nothing; the extended space (256-4095) of a
 * function that exists has nothing in it: it reads zero.
 */
static void config_access(struct pci_bus *bus, unsigned int busno, unsigned int dev, unsigned int fn,
			  unsigned int reg, uint8_t *data, unsigned int len, bool is_write)
{
	struct pci_dev *pd = !busno && dev < 32 && fn < 8 ? bus->dev[dev][fn] : NULL;

	if (!pd || (len != 1 && len != 2 && len != 4) || (reg & (len - 1)) || reg >= 4096) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	if (reg >= 256) {
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	pthread_mutex_lock(&pd->lock);
	if (is_write) {
		cfg_write(pd, reg, data, len);
		if (pd->cfg_access)
			pd->cfg_access(pd, reg, len, true);
	} else {
		if (pd->cfg_access)
			pd->cfg_access(pd, reg, len, false);
		memcpy(data, pd->st.cfg + reg, len);
	}
	pthread_mutex_unlock(&pd->lock);
}

/* Mechanism #1: the function and register 0xCF8 selects, plus the byte offset in 0xCFC. */
static void conf_data_io(struct pci_bus *bus, uint64_t off, uint8_t *data, unsigned int len, bool is_write)
{
	uint32_t a;

	pthread_mutex_lock(&bus->lock);
	a = bus->conf_addr;
	pthread_mutex_unlock(&bus->lock);
	if (!(a & 0x80000000u)) {	/* disabled */
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	config_access(bus, (a >> 16) & 0xff, (a >> 11) & 31, (a >> 8) & 7, (a & 0xfc) + (unsigned int)off,
		      data, len, is_write);
}

static void conf_data_read(void *opaque, uint64_t off, uint8_t *data, unsigned int len)
{
	conf_data_io(opaque, off, data, len, false);
}

static void conf_data_write(void *opaque, uint64_t off, const uint8_t *data, unsigned int len)
{
	conf_data_io(opaque, off, (uint8_t *)data, len, true);
}

/* ECAM: bits 19:15 of the offset are the device, 14:12 the function, 11:0 the register. */
static void ecam_read(void *opaque, uint64_t off, uint8_t *data, unsigned int len)
{
	config_access(opaque, 0, (off >> 15) & 31, (off >> 12) & 7, off & 0xfff, data, len, false);
}

static void ecam_write(void *opaque, uint64_t off, const uint8_t *data, unsigned int len)
{
	config_access(opaque, 0, (off >> 15) & 31, (off >> 12) & 7, off & 0xfff, (uint8_t *)data, len, true);
}

/* ---------- snapshot, common part ---------- */

void pci__save(const struct pci_dev *pd, struct pci_func_state *s)
{
	*s = pd->st;
	s->placement = true;
	s->nbars = 0;
	for (unsigned int n = 0; n < PCI_NBARS; n++)
		if (pd->bar[n].size)
			s->bars[s->nbars++] = (struct pci_bar_place){ .index = (uint8_t)n, .addr = pd->bar[n].addr,
								      .size = pd->bar[n].size };
	s->intx_gsi = (uint8_t)pci__intx_gsi(pd->slot, pd->func);
}

void pci__encode(struct sbuf *b, const struct pci_func_state *s)
{
	enc__map_key(b, "pci");
	enc__bytes(b, "config", s->cfg, sizeof(s->cfg));
	enc__u8(b, "intx_level", s->intx_level);
	enc__array_key(b, "msix");
	for (unsigned int i = 0; i < s->msix_nvec; i++) {
		enc__map(b);
		enc__u64(b, "addr", s->msix[i].addr);
		enc__u32(b, "data", s->msix[i].data);
		enc__u32(b, "ctrl", s->msix[i].ctrl);
		enc__end(b);
	}
	enc__end(b);
	enc__u8(b, "msix_pending", s->msix_pba);
	enc__array_key(b, "bars");
	for (unsigned int i = 0; i < s->nbars; i++) {
		enc__map(b);
		enc__u8(b, "index", s->bars[i].index);
		enc__u64(b, "addr", s->bars[i].addr);
		enc__u64(b, "size", s->bars[i].size);
		enc__end(b);
	}
	enc__end(b);
	enc__u8(b, "intx_gsi", s->intx_gsi);
	enc__end(b);
}

static void decode_placement(struct dec *d, const cbor_item_t *m, struct pci_func_state *s)
{
	cbor_item_t **v;
	size_t n = 0;
	unsigned int seen = 0;

	v = dec__array(d, m, "bars", &n);
	if (!d->ret && n > PCI_NBARS)
		dec__fail(d, "field 'pci.bars' has %zu BARs, a function has at most %d", n, PCI_NBARS);
	for (size_t i = 0; v && !d->ret && i < n; i++) {
		struct pci_bar_place *b = &s->bars[i];

		b->index = dec__u8(d, v[i], "index");
		b->addr = dec__u64(d, v[i], "addr");
		b->size = dec__u64(d, v[i], "size");
		if (d->ret)
			break;
		if (b->index >= PCI_NBARS || (seen & 1u << b->index))
			dec__fail(d, "field 'pci.bars[%zu].index' is %u: not a BAR, or a BAR named twice", i, b->index);
		else if (b->size < 16 || (b->size & (b->size - 1)) || (b->addr & (b->size - 1)) ||
			 b->addr + b->size < b->addr)
			dec__fail(d, "field 'pci.bars[%zu]' is 0x%llx+0x%llx: not a naturally aligned power-of-two range",
				  i, (unsigned long long)b->addr, (unsigned long long)b->size);
		seen |= 1u << b->index;
	}
	s->nbars = (uint8_t)n;
	s->intx_gsi = dec__u8(d, m, "intx_gsi");
	if (!d->ret && s->intx_gsi >= IRQCHIP_IOAPIC_PINS)
		dec__fail(d, "field 'pci.intx_gsi' is %u, the IOAPIC has %d inputs", s->intx_gsi, IRQCHIP_IOAPIC_PINS);
	s->placement = true;
}

void pci__func_unrecorded(struct pci_func_state *s)
{
	s->placement = false;
	s->nbars = 0;
	s->intx_gsi = 0;
}

int pci__check_placement(const struct pci_dev *pd, const struct pci_func_state *s, char *err, size_t errlen)
{
	unsigned int recorded = 0;
	unsigned int gsi = pci__intx_gsi(pd->slot, pd->func);

	if (!s->placement)
		return 0;
	for (unsigned int i = 0; i < s->nbars; i++) {
		const struct pci_bar_place *b = &s->bars[i];
		const struct pci_bar *here = &pd->bar[b->index];

		recorded |= 1u << b->index;
		if (here->size != b->size || here->addr != b->addr)
			return util__fail(-EINVAL, err, errlen,
					  "%s: the snapshot has BAR %u at 0x%llx (%llu bytes), this khyve puts it %s0x%llx (%llu bytes): restore it with the khyve that took it",
					  pd->name, b->index, (unsigned long long)b->addr, (unsigned long long)b->size,
					  here->size ? "at " : "nowhere, ", (unsigned long long)here->addr,
					  (unsigned long long)here->size);
	}
	for (unsigned int n = 0; n < PCI_NBARS; n++)
		if (pd->bar[n].size && !(recorded & 1u << n))
			return util__fail(-EINVAL, err, errlen,
					  "%s: this khyve gives the function a BAR %u the snapshot's does not have", pd->name, n);
	if (s->intx_gsi != gsi)
		return util__fail(-EINVAL, err, errlen,
				  "%s: the snapshot wires INTx to IOAPIC input %u, this khyve to %u", pd->name, s->intx_gsi,
				  gsi);
	return 0;
}

void pci__decode(struct dec *d, const cbor_item_t *map, struct pci_func_state *s,
		 uint16_t vendor, uint16_t device, unsigned int msix_nvec, bool placement)
{
	const cbor_item_t *m = dec__map(d, map, "pci");
	cbor_item_t **v;
	size_t n = 0;

	memset(s, 0, sizeof(*s));
	dec__bytes(d, m, "config", s->cfg, sizeof(s->cfg));
	s->intx_level = dec__u8(d, m, "intx_level");
	v = dec__array(d, m, "msix", &n);
	if (!d->ret && n != msix_nvec)
		dec__fail(d, "field 'pci.msix' has %zu vectors, the device has %u", n, msix_nvec);
	for (size_t i = 0; v && !d->ret && i < n; i++) {
		s->msix[i].addr = dec__u64(d, v[i], "addr");
		s->msix[i].data = dec__u32(d, v[i], "data");
		s->msix[i].ctrl = dec__u32(d, v[i], "ctrl");
		if (!d->ret && s->msix[i].ctrl > 1)
			dec__fail(d, "field 'pci.msix[%zu].ctrl' is 0x%x, only bit 0 exists", i, s->msix[i].ctrl);
	}
	s->msix_nvec = (uint16_t)n;
	s->msix_pba = dec__u8(d, m, "msix_pending");
	if (placement)
		decode_placement(d, m, s);
	else
		pci__func_unrecorded(s);
	if (d->ret)
		return;
	if (s->intx_level > 1)
		dec__fail(d, "field 'pci.intx_level' is %u, not 0 or 1", s->intx_level);
	else if (n < 8 && (s->msix_pba >> n))
		dec__fail(d, "field 'pci.msix_pending' is 0x%x, beyond %zu vectors", s->msix_pba, n);
	else if ((s->cfg[0] | s->cfg[1] << 8) != vendor || (s->cfg[2] | s->cfg[3] << 8) != device)
		dec__fail(d, "field 'pci.config' has IDs %02x%02x:%02x%02x, the device is %04x:%04x",
			  s->cfg[1], s->cfg[0], s->cfg[3], s->cfg[2], vendor, device);
}

/*
 * Only the guest-writable bits come from the snapshot, plus the bits the
 * device sets itself (status); everything read-only is this build's, which
 * decode checked to be the same device.
 */
void pci__restore(struct pci_dev *pd, const struct pci_func_state *s)
{
	for (unsigned int i = 0; i < 256; i++)
		pd->st.cfg[i] = (uint8_t)((pd->st.cfg[i] & ~pd->wmask[i]) | (s->cfg[i] & pd->wmask[i]));
	pd->st.cfg[PCI_STATUS] = (uint8_t)((pd->st.cfg[PCI_STATUS] & ~PCI_STATUS_INTX) |
					   (s->cfg[PCI_STATUS] & PCI_STATUS_INTX));
	memcpy(pd->st.msix, s->msix, sizeof(s->msix));
	pd->st.msix_pba = s->msix_pba;
	/* KVM's routes of this new VM, from the restored table */
	msix_sync(pd);
	/* the in-kernel IOAPIC has its own section; just agree with it */
	pd->st.intx_level = s->intx_level;
	if (s->intx_level && pd->vm->vm_fd >= 0)
		irqchip__set_line(pd->vm->vm_fd, pci__intx_gsi(pd->slot, pd->func), 1);
}

/* ---------- the bus device ---------- */

#define PCI_BUS_STATE_VERSION 1

struct pci_bus_state {
	uint32_t conf_addr;
};

static void pci_dev_free(struct pci_dev *pd)
{
	if (pd->type->exit)
		pd->type->exit(pd);
	msix_release(pd);
	pthread_mutex_destroy(&pd->lock);
	free(pd);
}

static int place_bars(struct vm *vm, struct pci_bus *bus, struct pci_dev *pd, char *err, size_t errlen)
{
	for (unsigned int n = 0; n < PCI_NBARS; n++) {
		struct pci_bar *b = &pd->bar[n];
		bool is64 = b->type & PCI_BAR_MEM64;
		uint64_t *next = is64 ? &bus->mmio64_next : &bus->mmio_next;
		uint64_t end = is64 ? bus->mmio64_end : PCI_MMIO_END;
		uint64_t at;
		int ret;

		if (!b->size)
			continue;
		at = ALIGN_UP(*next, b->size);
		if (at < *next || at > end || b->size > end - at) {
			snprintf(err, errlen, "PCI %s: no room for BAR %u (%llu bytes) below 0x%llx",
				 pd->name, n, (unsigned long long)b->size, (unsigned long long)end);
			return -ENOSPC;
		}
		b->addr = at;
		b->pd = pd;
		b->n = n;
		put32(pd->st.cfg + PCI_BAR0 + 4 * n, (uint32_t)at | b->type);
		if (is64)
			put32(pd->st.cfg + PCI_BAR0 + 4 * (n + 1), (uint32_t)(at >> 32));
		ret = bus__register(&vm->bus, BUS_MMIO, at, b->size, bar_read, bar_write, b, pd->name);
		if (ret) {
			snprintf(err, errlen, "PCI %s: BAR %u: %s", pd->name, n, strerror(-ret));
			return ret;
		}
		*next = at + b->size;
	}
	return 0;
}

static int create_function(struct vm *vm, struct pci_bus *bus, const struct slot_config *sc,
			   char *err, size_t errlen)
{
	const struct pci_devtype *t = pci__find_type(sc->device);
	struct pci_dev *pd;
	int ret;

	if (!t) {
		snprintf(err, errlen, "unknown PCI device '%s'", sc->device);
		return -EINVAL;
	}
	pd = calloc(1, sizeof(*pd));
	if (!pd)
		return -ENOMEM;
	pd->vm = vm;
	pd->type = t;
	pd->slot = sc->slot;
	pd->func = sc->func;
	pd->bus = bus;
	for (unsigned int v = 0; v < PCI_MSIX_MAX; v++)
		pd->msix_route[v].efd = -1;
	pci__instance_name(sc, pd->name, sizeof(pd->name));
	pthread_mutex_init(&pd->lock, NULL);
	pd->cap_end = 0x40;
	put16(pd->wmask + PCI_COMMAND, PCI_CMD_IO | PCI_CMD_MEM | PCI_CMD_MASTER | PCI_CMD_INTX_OFF);
	pd->wmask[PCI_INT_LINE] = 0xff;
	pd->st.cfg[PCI_INT_LINE] = (uint8_t)pci__intx_gsi(pd->slot, pd->func);
	pd->st.cfg[PCI_INT_PIN] = (uint8_t)(1 + pd->func % 4);	/* a bridge's init clears it */
	ret = t->init(pd, sc->opts, err, errlen);
	if (ret) {
		if (!err[0])
			snprintf(err, errlen, "PCI %s: %s", pd->name, strerror(-ret));
		pthread_mutex_destroy(&pd->lock);
		free(pd);
		return ret;
	}
	bus->dev[pd->slot][pd->func] = pd;
	msix_irqfds(bus, pd);
	ret = place_bars(vm, bus, pd, err, errlen);
	if (!ret && pd->placed) {
		ret = pd->placed(pd);
		if (ret)
			snprintf(err, errlen, "PCI %s: %s", pd->name, strerror(-ret));
	}
	if (!ret && device__add(vm, t->ops, pd, pd->name))
		ret = -ENOMEM;
	return ret;
}

static void pci_bus__exit(struct vm *vm, void *priv)
{
	struct pci_bus *bus = priv;

	(void)vm;
	for (unsigned int s = 0; s < 32; s++)
		for (unsigned int f = 0; f < 8; f++)
			if (bus->dev[s][f])
				pci_dev_free(bus->dev[s][f]);
	pthread_mutex_destroy(&bus->route_lock);
	pthread_mutex_destroy(&bus->lock);
	free(bus);
}

static int pci_bus__init(struct vm *vm, void **priv, char *err, size_t errlen)
{
	const struct vm_config *cfg = vm->cfg;
	struct slot_config bridge = { .slot = 0, .func = 0, .device = (char *)"hostbridge" };
	bool have_bridge = false;
	struct pci_bus *bus;
	int ret;

	if (!cfg->nslots)
		return 0;	/* no -s: no PCI, as before PCI existed */
	bus = calloc(1, sizeof(*bus));
	if (!bus)
		return -ENOMEM;
	pthread_mutex_init(&bus->lock, NULL);
	pthread_mutex_init(&bus->route_lock, NULL);
	bus->gsi_next = PCI_MSI_GSI_BASE;
	bus->mmio_next = PCI_MMIO_BASE;
	pci__mmio64_window(vm, &bus->mmio64_next, &bus->mmio64_end);
	ret = bus__register(&vm->bus, BUS_PIO, PCI_CONF_ADDR, 4, conf_addr_read, conf_addr_write, bus, "pci-addr");
	if (!ret)
		ret = bus__register(&vm->bus, BUS_PIO, PCI_CONF_DATA, 4, conf_data_read, conf_data_write, bus,
				    "pci-data");
	if (!ret)
		ret = bus__register(&vm->bus, BUS_MMIO, PCI_ECAM_BASE, PCI_ECAM_SIZE, ecam_read, ecam_write, bus,
				    "pci-ecam");
	if (ret) {
		snprintf(err, errlen, "PCI configuration space: %s", strerror(-ret));
		goto fail;
	}
	for (unsigned int i = 0; i < cfg->nslots; i++)
		have_bridge |= !cfg->slots[i].slot && !cfg->slots[i].func;
	/* 00:00.0 is the host bridge, given with -s 0,hostbridge or not */
	if (!have_bridge) {
		ret = create_function(vm, bus, &bridge, err, errlen);
		if (ret)
			goto fail;
	}
	for (unsigned int i = 0; i < cfg->nslots; i++) {
		ret = create_function(vm, bus, &cfg->slots[i], err, errlen);
		if (ret)
			goto fail;
	}
	for (unsigned int s = 0; s < 32; s++)
		for (unsigned int f = 1; f < 8; f++)
			if (bus->dev[s][f] && bus->dev[s][0])
				bus->dev[s][0]->st.cfg[PCI_HEADER_TYPE] |= 0x80;	/* multi-function */
	*priv = bus;
	return 0;
fail:
	/* instances already added point at functions freed here: drop them all */
	for (struct device_instance **p = &vm->devices; *p;) {
		if (!(*p)->ops->init) {
			struct device_instance *d = *p;

			*p = d->next;
			free(d);
		} else {
			p = &(*p)->next;
		}
	}
	pci_bus__exit(vm, bus);
	return ret;
}

static void pci_bus__save(void *priv, void *state)
{
	struct pci_bus *bus = priv;
	struct pci_bus_state *s = state;

	pthread_mutex_lock(&bus->lock);
	s->conf_addr = bus->conf_addr;
	pthread_mutex_unlock(&bus->lock);
}

static void pci_bus__encode(struct sbuf *b, const void *state)
{
	const struct pci_bus_state *s = state;

	enc__map(b);
	enc__u32(b, "config_address", s->conf_addr);
	enc__end(b);
}

static void pci_bus__decode(struct dec *d, const cbor_item_t *m, uint32_t version, void *state)
{
	struct pci_bus_state *s = state;

	(void)version;	/* version 1 is the only one so far */
	s->conf_addr = dec__u32(d, m, "config_address");
	if (!d->ret && (s->conf_addr & ~0x80fffffcu))
		dec__fail(d, "field 'config_address' is 0x%x: reserved bits set", s->conf_addr);
}

static int pci_bus__restore(void *priv, const void *state, char *err, size_t errlen)
{
	struct pci_bus *bus = priv;

	(void)err; (void)errlen;
	pthread_mutex_lock(&bus->lock);
	bus->conf_addr = ((const struct pci_bus_state *)state)->conf_addr;
	pthread_mutex_unlock(&bus->lock);
	return 0;
}

/*
 * Functions with threads of their own stop with the VM and start again with
 * it.  One that cannot stop fails the pause, and those stopped before it
 * run again.
 */
static int pci_bus__pause(void *priv, char *err, size_t errlen)
{
	struct pci_bus *bus = priv;

	for (unsigned int i = 0; i < 32 * 8; i++) {
		struct pci_dev *pd = bus->dev[i / 8][i % 8];
		int ret;

		if (!pd || !pd->pause)
			continue;
		ret = pd->pause(pd, err, errlen);
		if (!ret)
			continue;
		while (i--) {
			pd = bus->dev[i / 8][i % 8];
			if (pd && pd->resume)
				pd->resume(pd);
		}
		return ret;
	}
	return 0;
}

static void pci_bus__resume(void *priv)
{
	struct pci_bus *bus = priv;

	for (unsigned int s = 0; s < 32; s++)
		for (unsigned int f = 0; f < 8; f++)
			if (bus->dev[s][f] && bus->dev[s][f]->resume)
				bus->dev[s][f]->resume(bus->dev[s][f]);
}

/* the bus exists, and has a snapshot section, only with -s */
static bool pci_bus__present(const struct vm_config *cfg)
{
	return cfg->nslots > 0;
}

static const struct device_ops pci_bus_ops = {
	.name = "pci",
	.init = pci_bus__init,
	.present = pci_bus__present,
	.exit = pci_bus__exit,
	.pause = pci_bus__pause,
	.resume = pci_bus__resume,
	.state_version = PCI_BUS_STATE_VERSION,
	.state_size = sizeof(struct pci_bus_state),
	.save = pci_bus__save,
	.encode = pci_bus__encode,
	.decode = pci_bus__decode,
	.restore = pci_bus__restore,
};
DEVICE_REGISTER(pci_bus_ops, DEVICE_ORDER_PCI_BUS);

/* ---------- 00:00.0, the host bridge ---------- */

static int hostbridge__init(struct pci_dev *pd, const char *opts, char *err, size_t errlen)
{
	(void)opts; (void)err; (void)errlen;
	/* an i440FX host bridge's IDs: every guest knows it needs no driver */
	pci__set_ids(pd, 0x8086, 0x1237, 2, 0x060000, 0, 0);
	pd->st.cfg[PCI_INT_PIN] = 0;
	pd->st.cfg[PCI_INT_LINE] = 0;
	pd->wmask[PCI_INT_LINE] = 0;
	memset(pd->wmask + PCI_COMMAND, 0, 2);	/* nothing to decode, nothing to save */
	return 0;
}

static int hostbridge__check(const char *opts, char *err, size_t errlen)
{
	if (opts) {
		snprintf(err, errlen, "hostbridge takes no options, got '%s'", opts);
		return -EINVAL;
	}
	return 0;
}

/* no snapshot hooks: nothing in it can change */
static const struct device_ops hostbridge_ops = { .name = "hostbridge" };
static const struct pci_devtype hostbridge_type = {
	.ops = &hostbridge_ops,
	.stateless = true,
	.check = hostbridge__check,
	.init = hostbridge__init,
};
PCI_DEVTYPE_REGISTER(hostbridge_type, DEVICE_ORDER_PCI_HOSTBRIDGE);
