/*
 * A plain PCI function with 64-bit BARs and MSI-X (see test_pci.c): BAR
 * placement, sizing and decoding above 4 GiB; MSI-X delivery through
 * irqfd against a fake KVM, and against real KVM when there is one.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "khyve/config.h"
#include "khyve/device.h"
#include "khyve/irqchip.h"
#include "khyve/mptable.h"
#include "khyve/pci.h"
#include "khyve/snapfmt.h"
#include "khyve/snapsec.h"
#include "khyve/util.h"
#include "khyve/virtio.h"
#include "khyve/vm.h"

#include "pcihelp.h"

/* ---------- a plain function with 64-bit BARs and MSI-X ---------- */

/*
 * Registered in this test binary only: BAR 0 (32-bit, 4 KiB) holds an
 * MSI-X table of T64_NVEC vectors at 0 and its PBA at 0x800; BAR 2 is
 * 64-bit, 1 MiB, prefetchable; BAR 4 is 64-bit, 8 GiB (or with the option
 * "huge", 4 PiB, which fits nowhere).  BARs 2 and 4 record the last
 * access and read back its offset.
 */
#define T64_SLOT 5
#define T64_NVEC 4
#define BAR2_SIZE (1ULL << 20)
#define BAR4_SIZE (8ULL << 30)

static char t64_name[] = "test-bar64";

struct t64 {
	unsigned int bar;		/* of the last access */
	uint64_t off, val;
	unsigned int len;
	bool write;
};

static void t64_msix_read(void *opaque, uint64_t off, uint8_t *data, unsigned int len)
{
	struct pci_dev *pd = opaque;

	memset(data, 0, len);
	pthread_mutex_lock(&pd->lock);
	pci__msix_access(pd, 0, off, data, len, false);
	pthread_mutex_unlock(&pd->lock);
}

static void t64_msix_write(void *opaque, uint64_t off, const uint8_t *data, unsigned int len)
{
	struct pci_dev *pd = opaque;
	uint8_t buf[8];

	memcpy(buf, data, len);
	pthread_mutex_lock(&pd->lock);
	pci__msix_access(pd, 0, off, buf, len, true);
	pthread_mutex_unlock(&pd->lock);
}

static void t64_record(struct pci_dev *pd, unsigned int bar, uint64_t off, uint8_t *data, unsigned int len,
		       bool write)
{
	struct t64 *t = pd->priv;

	*t = (struct t64){ .bar = bar, .off = off, .len = len, .write = write };
	if (write)
		memcpy(&t->val, data, len);
	else
		memcpy(data, &off, len);
}

static void t64_bar2_read(void *opaque, uint64_t off, uint8_t *data, unsigned int len)
{
	t64_record(opaque, 2, off, data, len, false);
}

static void t64_bar2_write(void *opaque, uint64_t off, const uint8_t *data, unsigned int len)
{
	t64_record(opaque, 2, off, (uint8_t *)data, len, true);
}

static void t64_bar4_read(void *opaque, uint64_t off, uint8_t *data, unsigned int len)
{
	t64_record(opaque, 4, off, data, len, false);
}

static void t64_bar4_write(void *opaque, uint64_t off, const uint8_t *data, unsigned int len)
{
	t64_record(opaque, 4, off, (uint8_t *)data, len, true);
}

static int t64_init(struct pci_dev *pd, const char *opts, char *err, size_t errlen)
{
	bool huge = opts && !strcmp(opts, "huge");
	int ret;

	(void)err; (void)errlen;
	pd->priv = calloc(1, sizeof(struct t64));
	if (!pd->priv)
		return -ENOMEM;
	pci__set_ids(pd, 0x1234, 0x6464, 0, 0xff0000, 0, 0);
	ret = pci__add_bar(pd, 0, 4096, t64_msix_read, t64_msix_write);
	if (!ret)
		ret = pci__add_bar64(pd, 2, BAR2_SIZE, PCI_BAR_PREFETCH, t64_bar2_read, t64_bar2_write);
	if (!ret)
		ret = pci__add_bar64(pd, 4, huge ? 1ULL << 52 : BAR4_SIZE, 0, t64_bar4_read, t64_bar4_write);
	if (!ret)
		ret = pci__add_msix(pd, T64_NVEC, 0, 0, 0x800);
	if (ret)
		free(pd->priv);
	return ret;
}

static void t64_exit(struct pci_dev *pd)
{
	free(pd->priv);
}

static const struct device_ops t64_ops = { .name = t64_name };
static const struct pci_devtype t64_pci = { .ops = &t64_ops, .init = t64_init, .exit = t64_exit };
PCI_DEVTYPE_REGISTER(t64_pci, DEVICE_ORDER_TEST);

/* A VM of mem bytes with nfuncs test-bar64 functions in slots 5, 6, ...; 0 or -errno with err. */
static int setup_t64(struct fakevm *f, uint64_t mem, unsigned int nfuncs, const char *opts, int vm_fd,
		     char *err, size_t errlen)
{
	fakevm_init(f, &(struct fakevm_conf){ .name = dev_name, .slot = T64_SLOT, .device = t64_name, .opts = opts,
					       .mem_size = mem });
	for (unsigned int i = 1; i < nfuncs; i++) {
		f->cfg.slots[f->cfg.nslots] = f->cfg.slots[0];
		f->cfg.slots[f->cfg.nslots++].slot = (uint8_t)(T64_SLOT + i);
	}
	f->vm.vm_fd = vm_fd;
	return fakevm_start(f, err, errlen);
}

static struct pci_dev *find_func(struct vm *vm, const char *name)
{
	return device_named(vm, name)->priv;
}

static uint64_t bar64_of(struct vm *vm, unsigned int slot, unsigned int n)
{
	return (cfg_rd(vm, slot, PCI_BAR0 + 4 * n) & ~0xfu) | (uint64_t)cfg_rd(vm, slot, PCI_BAR0 + 4 * (n + 1)) << 32;
}

/* pci__add_bar64's rules, on a bare function */
static void test_bar64_arguments(void **state)
{
	struct pci_dev *pd = calloc(1, sizeof(*pd));

	(void)state;
	assert_non_null(pd);
	assert_int_equal(pci__add_bar64(pd, 5, 4096, 0, NULL, NULL), -EINVAL);	/* no register for the upper half */
	assert_int_equal(pci__add_bar64(pd, 6, 4096, 0, NULL, NULL), -EINVAL);
	assert_int_equal(pci__add_bar64(pd, 0, 2048, 0, NULL, NULL), -EINVAL);	/* below 4 KiB */
	assert_int_equal(pci__add_bar64(pd, 0, 3 << 12, 0, NULL, NULL), -EINVAL);	/* not a power of two */
	assert_int_equal(pci__add_bar64(pd, 0, 4096, PCI_BAR_MEM64, NULL, NULL), -EINVAL);	/* unknown flag */
	assert_int_equal(pci__add_bar(pd, 1, 4096, NULL, NULL), 0);
	assert_int_equal(pci__add_bar64(pd, 0, 4096, 0, NULL, NULL), -EINVAL);	/* upper half taken */
	assert_int_equal(pci__add_bar64(pd, 1, 4096, 0, NULL, NULL), -EINVAL);	/* taken */
	assert_int_equal(pci__add_bar64(pd, 2, 1ULL << 33, 0, NULL, NULL), 0);
	assert_int_equal(pci__add_bar(pd, 3, 4096, NULL, NULL), -EINVAL);		/* the upper half of 2 */
	assert_int_equal(pci__add_bar64(pd, 3, 4096, 0, NULL, NULL), -EINVAL);
	assert_int_equal(pci__add_bar64(pd, 4, 4096, PCI_BAR_PREFETCH, NULL, NULL), 0);
	/* type bits, and which address bits the guest may write */
	assert_int_equal(pd->st.cfg[PCI_BAR0 + 8], PCI_BAR_MEM64);
	assert_int_equal(pd->st.cfg[PCI_BAR0 + 16], PCI_BAR_MEM64 | PCI_BAR_PREFETCH);
	assert_int_equal(pd->wmask[PCI_BAR0 + 8] | pd->wmask[PCI_BAR0 + 9] | pd->wmask[PCI_BAR0 + 10] |
			 pd->wmask[PCI_BAR0 + 11], 0);		/* 8 GiB: no address bits in the low half */
	assert_int_equal(pd->wmask[PCI_BAR0 + 12], 0xfe);
	free(pd);
}

/* Sizing through both halves, placement above RAM, decoding there, MMIO dispatch. */
static void test_bar64(void **state)
{
	static const uint64_t mems[] = { 16ULL << 20, 5ULL << 30 };
	struct fakevm *f = malloc(sizeof(*f));
	char err[256];

	(void)state;
	assert_non_null(f);
	for (unsigned int k = 0; k < ARRAY_SIZE(mems); k++) {
		struct vm *vm = &f->vm;
		uint64_t top, b2, b4;
		struct t64 *t;

		print_message("    %llu MiB of RAM\n", (unsigned long long)(mems[k] >> 20));
		if (setup_t64(f, mems[k], 1, NULL, -1, err, sizeof(err)))
			fail_msg("%s", err);
		t = find_func(vm, "test-bar64.5")->priv;
		top = mems[k] <= 3ULL << 30 ? 4ULL << 30 : mems[k] + (1ULL << 30);	/* RAM above 3 GiB starts at 4 */
		/* type bits: 64-bit, prefetchable for BAR 2 */
		assert_int_equal(cfg_rd(vm, T64_SLOT, PCI_BAR0 + 8) & 0xf, PCI_BAR_MEM64 | PCI_BAR_PREFETCH);
		assert_int_equal(cfg_rd(vm, T64_SLOT, PCI_BAR0 + 16) & 0xf, PCI_BAR_MEM64);
		b2 = bar64_of(vm, T64_SLOT, 2);
		b4 = bar64_of(vm, T64_SLOT, 4);
		/* above RAM and 4 GiB, naturally aligned, in order, not overlapping */
		assert_int_equal(b2, top);
		assert_int_equal(b2 % BAR2_SIZE, 0);
		assert_int_equal(b4 % BAR4_SIZE, 0);
		assert_true(b4 >= b2 + BAR2_SIZE);
		assert_int_equal(b4, ALIGN_UP(top + BAR2_SIZE, BAR4_SIZE));
		/* the 32-bit BAR stays in the hole */
		assert_true(f->bar >= PCI_MMIO_BASE && f->bar < PCI_MMIO_END);

		/* memory decoding off: nothing */
		assert_int_equal(mem_rd(vm, b2 + 0x10, 4), 0xffffffff);
		cfg_wr(vm, T64_SLOT, PCI_COMMAND, PCI_CMD_MEM);
		/* dispatch: offset within the BAR, width, data */
		assert_int_equal(mem_rd(vm, b2 + 0x10, 4), 0x10);
		assert_int_equal(t->bar, 2);
		assert_int_equal(t->len, 4);
		mem_wr(vm, b2 + BAR2_SIZE - 8, 0x1122334455667788ULL, 8);
		assert_int_equal(t->bar, 2);
		assert_true(t->write);
		assert_int_equal(t->off, BAR2_SIZE - 8);
		assert_int_equal(t->val, 0x1122334455667788ULL);
		assert_int_equal(mem_rd(vm, b4 + BAR4_SIZE - 4, 4), (uint32_t)(BAR4_SIZE - 4));
		assert_int_equal(t->bar, 4);
		assert_int_equal(t->off, BAR4_SIZE - 4);

		/* sizing: all-ones to both halves, the mask back; upper half all-ones below 4 GiB */
		cfg_wr(vm, T64_SLOT, PCI_BAR0 + 8, 0xffffffff);
		cfg_wr(vm, T64_SLOT, PCI_BAR0 + 12, 0xffffffff);
		assert_int_equal(cfg_rd(vm, T64_SLOT, PCI_BAR0 + 8),
				 (uint32_t)~(BAR2_SIZE - 1) | PCI_BAR_MEM64 | PCI_BAR_PREFETCH);
		assert_int_equal(cfg_rd(vm, T64_SLOT, PCI_BAR0 + 12), 0xffffffff);
		cfg_wr(vm, T64_SLOT, PCI_BAR0 + 16, 0xffffffff);
		cfg_wr(vm, T64_SLOT, PCI_BAR0 + 20, 0xffffffff);
		assert_int_equal(cfg_rd(vm, T64_SLOT, PCI_BAR0 + 16), PCI_BAR_MEM64);
		assert_int_equal(cfg_rd(vm, T64_SLOT, PCI_BAR0 + 20), (uint32_t)(~(BAR4_SIZE - 1) >> 32));
		/* sized, neither decodes at its address */
		assert_int_equal(mem_rd(vm, b2, 4), 0xffffffff);
		assert_int_equal(mem_rd(vm, b4, 4), 0xffffffff);
		/* one half back: still not; both: yes */
		cfg_wr(vm, T64_SLOT, PCI_BAR0 + 8, (uint32_t)b2);
		assert_int_equal(mem_rd(vm, b2, 4), 0xffffffff);
		cfg_wr(vm, T64_SLOT, PCI_BAR0 + 12, (uint32_t)(b2 >> 32));
		assert_int_equal(mem_rd(vm, b2 + 0x20, 2), 0x20);
		cfg_wr(vm, T64_SLOT, PCI_BAR0 + 16, (uint32_t)b4);
		cfg_wr(vm, T64_SLOT, PCI_BAR0 + 20, (uint32_t)(b4 >> 32));
		assert_int_equal(mem_rd(vm, b4 + 0x30, 1), 0x30);
		assert_int_equal(bar64_of(vm, T64_SLOT, 2), b2);
		/* only the upper half moved: not there any more */
		cfg_wr(vm, T64_SLOT, PCI_BAR0 + 12, (uint32_t)(b2 >> 32) + 1);
		assert_int_equal(mem_rd(vm, b2, 4), 0xffffffff);
		cfg_wr(vm, T64_SLOT, PCI_BAR0 + 12, (uint32_t)(b2 >> 32));
		/* the same through ECAM */
		assert_int_equal(ecam_rd(vm, T64_SLOT, 0, PCI_BAR0 + 12, 4), (uint32_t)(b2 >> 32));
		/* an unused BAR reads zero and cannot be written */
		cfg_wr(vm, T64_SLOT, PCI_BAR0 + 4, 0xffffffff);
		assert_int_equal(cfg_rd(vm, T64_SLOT, PCI_BAR0 + 4), 0);
		fakevm_down(f);
	}
	/* a BAR larger than the physical address space: refused by name */
	assert_int_equal(setup_t64(f, 16 << 20, 1, "huge", -1, err, sizeof(err)), -ENOSPC);
	print_message("    refused: %s\n", err);
	assert_non_null(strstr(err, "no room for BAR 4"));
	fakevm_down(f);
	free(f);
}

/* ---------- MSI-X delivery through irqfd, against a fake KVM ---------- */

#define FAKE_VM_FD 0x3ffffff0	/* never open: anything else gets EBADF */

static struct {
	unsigned int nrouting;			/* KVM_SET_GSI_ROUTING calls */
	bool fail_routing, fail_irqfd;
	unsigned int n;				/* the table last set */
	struct kvm_irq_routing_entry table[256];
	struct { int fd; uint32_t gsi; bool on; } irqfd[64];
	unsigned int nirqfd;
	struct kvm_msi msi[64];			/* KVM_SIGNAL_MSI calls */
	unsigned int nmsi;
} fk;

static int fake_ioctl(int fd, unsigned long req, void *arg)
{
	assert_int_equal(fd, FAKE_VM_FD);
	if (req == KVM_SET_GSI_ROUTING) {
		const struct kvm_irq_routing *r = arg;

		if (fk.fail_routing) {
			errno = EINVAL;
			return -1;
		}
		assert_true(r->nr <= ARRAY_SIZE(fk.table));
		fk.nrouting++;
		fk.n = r->nr;
		memcpy(fk.table, r->entries, r->nr * sizeof(r->entries[0]));
		return 0;
	}
	if (req == KVM_IRQFD) {
		const struct kvm_irqfd *i = arg;

		if (i->flags & KVM_IRQFD_FLAG_DEASSIGN) {
			for (unsigned int k = 0; k < fk.nirqfd; k++)
				if (fk.irqfd[k].on && fk.irqfd[k].fd == (int)i->fd && fk.irqfd[k].gsi == i->gsi) {
					fk.irqfd[k].on = false;
					return 0;
				}
			errno = ENOENT;
			return -1;
		}
		if (fk.fail_irqfd) {
			errno = ENOSYS;
			return -1;
		}
		assert_true(fk.nirqfd < ARRAY_SIZE(fk.irqfd));
		fk.irqfd[fk.nirqfd++] = (typeof(fk.irqfd[0])){ .fd = (int)i->fd, .gsi = i->gsi, .on = true };
		return 0;
	}
	if (req == KVM_SIGNAL_MSI) {
		assert_true(fk.nmsi < ARRAY_SIZE(fk.msi));
		fk.msi[fk.nmsi++] = *(const struct kvm_msi *)arg;
		return 1;
	}
	fail_msg("unexpected ioctl 0x%lx", req);
	return -1;
}

/* What KVM would deliver for gsi: the MSI route's address and data; false if none. */
static bool fake_route(uint32_t gsi, uint64_t *addr, uint32_t *data)
{
	for (unsigned int i = 0; i < fk.n; i++) {
		if (fk.table[i].gsi == gsi && fk.table[i].type == KVM_IRQ_ROUTING_MSI) {
			*addr = fk.table[i].u.msi.address_lo | (uint64_t)fk.table[i].u.msi.address_hi << 32;
			*data = fk.table[i].u.msi.data;
			return true;
		}
	}
	return false;
}

/* How many times the irqfd on gsi fired since last asked (its eventfd read and cleared). */
static uint64_t fired(uint32_t gsi)
{
	uint64_t v = 0;

	for (unsigned int k = 0; k < fk.nirqfd; k++)
		if (fk.irqfd[k].on && fk.irqfd[k].gsi == gsi) {
			if (read(fk.irqfd[k].fd, &v, sizeof(v)) != sizeof(v))
				v = 0;
			return v;
		}
	fail_msg("no irqfd on GSI %u", gsi);
	return 0;
}

/* The table's default part is exactly irqchip.c's (GSI 0 on IOAPIC pin 2, GSI 2 nowhere). */
static void check_default_routes(void)
{
	unsigned int pic = 0, ioapic = 0;

	for (unsigned int i = 0; i < fk.n; i++) {
		const struct kvm_irq_routing_entry *e = &fk.table[i];

		if (e->type != KVM_IRQ_ROUTING_IRQCHIP)
			continue;
		assert_true(e->gsi < PCI_MSI_GSI_BASE && e->gsi != 2);
		if (e->u.irqchip.irqchip == KVM_IRQCHIP_IOAPIC) {
			assert_int_equal(e->u.irqchip.pin, e->gsi == 0 ? 2 : e->gsi);
			ioapic |= 1u << e->gsi;
		} else {
			assert_int_equal(e->u.irqchip.irqchip, e->gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE);
			assert_int_equal(e->u.irqchip.pin, e->gsi % 8);
			pic |= 1u << e->gsi;
		}
	}
	assert_int_equal(ioapic, 0xfffffbu);
	assert_int_equal(pic, 0xfffbu);
}

static unsigned int msi_routes(void)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < fk.n; i++)
		n += fk.table[i].type == KVM_IRQ_ROUTING_MSI;
	return n;
}

static unsigned int msix_cap_of(struct vm *vm, unsigned int slot)
{
	for (unsigned int p = cfg_rd(vm, slot, PCI_CAP_PTR) & 0xff; p; p = (cfg_rd(vm, slot, p) >> 8) & 0xff)
		if ((cfg_rd(vm, slot, p) & 0xff) == PCI_CAP_MSIX)
			return p;
	fail_msg("no MSI-X capability");
	return 0;
}

static void msix_ctl(struct vm *vm, unsigned int slot, uint16_t ctl)
{
	cfg_wr(vm, slot, msix_cap_of(vm, slot), (uint32_t)ctl << 16);
}

/* Program vector v of the function in slot through its table (BAR 0), masked or not. */
static void msix_entry(struct vm *vm, unsigned int slot, unsigned int v, uint64_t addr, uint32_t data, bool masked)
{
	uint64_t bar = cfg_rd(vm, slot, PCI_BAR0) & ~0xfu;

	mem_wr(vm, bar + 16 * v, (uint32_t)addr, 4);
	mem_wr(vm, bar + 16 * v + 4, addr >> 32, 4);
	mem_wr(vm, bar + 16 * v + 8, data, 4);
	mem_wr(vm, bar + 16 * v + 12, masked, 4);
}

static void msix_mask(struct vm *vm, unsigned int slot, unsigned int v, bool masked)
{
	mem_wr(vm, (cfg_rd(vm, slot, PCI_BAR0) & ~0xfu) + 16 * v + 12, masked, 4);
}

static void notify(struct pci_dev *pd, unsigned int v)
{
	pthread_mutex_lock(&pd->lock);
	pci__msix_notify(pd, v);
	pthread_mutex_unlock(&pd->lock);
}

static int (*real_ioctl)(int vm_fd, unsigned long req, void *arg);

static int setup_fake_kvm(void **state)
{
	(void)state;
	memset(&fk, 0, sizeof(fk));
	real_ioctl = pci__vm_ioctl;
	pci__vm_ioctl = fake_ioctl;
	return 0;
}

static int teardown_fake_kvm(void **state)
{
	(void)state;
	for (unsigned int k = 0; k < fk.nirqfd; k++)
		if (fk.irqfd[k].on)
			fail_msg("irqfd on GSI %u left assigned", fk.irqfd[k].gsi);
	pci__vm_ioctl = real_ioctl;
	return 0;
}

static void test_msix_irqfd_routes(void **state)
{
	struct fakevm *f = malloc(sizeof(*f));
	struct vm *vm = &f->vm;
	struct pci_dev *a, *b;
	uint32_t gsi_a[T64_NVEC], gsi_b0, data;
	unsigned int calls;
	uint64_t addr;
	char err[256];

	(void)state;
	assert_non_null(f);
	if (setup_t64(f, 16 << 20, 2, NULL, FAKE_VM_FD, err, sizeof(err)))
		fail_msg("%s", err);
	a = find_func(vm, "test-bar64.5");
	b = find_func(vm, "test-bar64.6");
	cfg_wr(vm, T64_SLOT, PCI_COMMAND, PCI_CMD_MEM | PCI_CMD_MASTER);
	cfg_wr(vm, T64_SLOT + 1, PCI_COMMAND, PCI_CMD_MEM | PCI_CMD_MASTER);
	/* an irqfd per vector on GSIs of their own, from 24; no routing change yet */
	assert_int_equal(fk.nirqfd, 2 * T64_NVEC);
	for (unsigned int k = 0; k < fk.nirqfd; k++)
		assert_int_equal(fk.irqfd[k].gsi, PCI_MSI_GSI_BASE + k);
	for (unsigned int v = 0; v < T64_NVEC; v++)
		gsi_a[v] = a->msix_route[v].gsi;
	gsi_b0 = b->msix_route[0].gsi;
	assert_int_equal(fk.nrouting, 0);

	/* enabled, whole function masked: programming and unmasking vectors changes no route */
	msix_ctl(vm, T64_SLOT, PCI_MSIX_ENABLE | PCI_MSIX_MASKALL);
	msix_entry(vm, T64_SLOT, 0, 0xFEE00000u, 0x41, true);
	msix_mask(vm, T64_SLOT, 0, false);
	assert_int_equal(fk.nrouting, 0);
	/* a notification now is pending, in the PBA */
	notify(a, 0);
	assert_int_equal(mem_rd(vm, f->bar + 0x800, 4), 1);
	/* the function unmasked: one routing call, the defaults plus vector 0; the pending one goes by its irqfd */
	msix_ctl(vm, T64_SLOT, PCI_MSIX_ENABLE);
	assert_int_equal(fk.nrouting, 1);
	check_default_routes();
	assert_int_equal(msi_routes(), 1);
	assert_true(fake_route(gsi_a[0], &addr, &data));
	assert_int_equal(addr, 0xFEE00000u);
	assert_int_equal(data, 0x41);
	assert_int_equal(fired(gsi_a[0]), 1);
	assert_int_equal(mem_rd(vm, f->bar + 0x800, 4), 0);
	/* notifications: one eventfd write each, no ioctl */
	notify(a, 0);
	notify(a, 0);
	assert_int_equal(fired(gsi_a[0]), 2);
	assert_int_equal(fk.nmsi, 0);
	assert_int_equal(fk.nrouting, 1);

	/* the driver's way to change a vector: mask, write, unmask: one routing call, at the unmask */
	msix_mask(vm, T64_SLOT, 0, true);
	notify(a, 0);					/* masked: pending, nothing fires */
	assert_int_equal(fired(gsi_a[0]), 0);
	msix_entry(vm, T64_SLOT, 0, 0xFEE01000u, 0x42, true);
	assert_int_equal(fk.nrouting, 1);
	msix_mask(vm, T64_SLOT, 0, false);
	assert_int_equal(fk.nrouting, 2);
	assert_true(fake_route(gsi_a[0], &addr, &data));
	assert_int_equal(addr, 0xFEE01000u);
	assert_int_equal(data, 0x42);
	assert_int_equal(fired(gsi_a[0]), 1);		/* the pending one, through the new route */
	/* masking and unmasking unchanged costs nothing */
	msix_mask(vm, T64_SLOT, 0, true);
	msix_mask(vm, T64_SLOT, 0, false);
	assert_int_equal(fk.nrouting, 2);
	/* rewriting an unmasked vector (not what drivers do) moves its route at once */
	mem_wr(vm, f->bar + 8, 0x43, 4);
	assert_int_equal(fk.nrouting, 3);
	assert_true(fake_route(gsi_a[0], &addr, &data));
	assert_int_equal(data, 0x43);

	/* the table is the VM's: another function's vector joins, nothing is lost */
	msix_ctl(vm, T64_SLOT + 1, PCI_MSIX_ENABLE);
	msix_entry(vm, T64_SLOT + 1, 0, 0xFEE00000u, 0x51, false);
	msix_entry(vm, T64_SLOT, 3, 0xFEE00000u, 0x44, false);
	check_default_routes();
	assert_int_equal(msi_routes(), 3);
	assert_true(fake_route(gsi_a[0], &addr, &data));
	assert_int_equal(data, 0x43);
	assert_true(fake_route(gsi_b0, &addr, &data));
	assert_int_equal(data, 0x51);
	assert_true(fake_route(gsi_a[3], &addr, &data));
	assert_int_equal(data, 0x44);
	notify(b, 0);
	notify(a, 3);
	assert_int_equal(fired(gsi_b0), 1);
	assert_int_equal(fired(gsi_a[3]), 1);
	assert_int_equal(fired(gsi_a[0]), 0);
	/* a vector never programmed and unmasked has no route: masked vectors are not routed */
	assert_false(fake_route(gsi_a[1], &addr, &data));
	notify(a, 1);
	assert_int_equal(fired(gsi_a[1]), 0);
	assert_int_equal(mem_rd(vm, f->bar + 0x800, 4), 2);

	/* KVM refuses the routing: that vector goes by KVM_SIGNAL_MSI, the others keep their irqfds */
	fk.fail_routing = true;
	msix_entry(vm, T64_SLOT, 1, 0xFEE02000u, 0x45, false);	/* its pending notification too */
	assert_int_equal(fk.nmsi, 1);
	assert_int_equal(fk.msi[0].address_lo, 0xFEE02000u);
	assert_int_equal(fk.msi[0].data, 0x45);
	notify(a, 1);
	assert_int_equal(fk.nmsi, 2);
	assert_int_equal(fired(gsi_a[1]), 0);
	notify(a, 0);
	assert_int_equal(fired(gsi_a[0]), 1);
	assert_int_equal(fk.nmsi, 2);
	/* and when KVM takes it again, the irqfd is back */
	fk.fail_routing = false;
	msix_mask(vm, T64_SLOT, 1, true);
	msix_mask(vm, T64_SLOT, 1, false);
	assert_true(fake_route(gsi_a[1], &addr, &data));
	assert_int_equal(data, 0x45);
	notify(a, 1);
	assert_int_equal(fired(gsi_a[1]), 1);
	assert_int_equal(fk.nmsi, 2);

	/* MSI-X disabled: nothing is sent, nothing is pending */
	msix_ctl(vm, T64_SLOT, 0);
	calls = fk.nrouting;
	notify(a, 0);
	assert_int_equal(fired(gsi_a[0]), 0);
	assert_int_equal(fk.nmsi, 2);
	assert_int_equal(fk.nrouting, calls);
	fakevm_down(f);
	free(f);
}

/* A restored function's vectors are routed again, in the new VM, from the restored table. */
static void test_msix_routes_after_restore(void **state)
{
	struct fakevm *f = malloc(sizeof(*f));
	struct pci_func_state s;
	struct pci_dev *pd;
	uint32_t gsi[T64_NVEC], data;
	uint64_t addr;
	char err[256];

	(void)state;
	assert_non_null(f);
	if (setup_t64(f, 16 << 20, 1, NULL, FAKE_VM_FD, err, sizeof(err)))
		fail_msg("%s", err);
	cfg_wr(&f->vm, T64_SLOT, PCI_COMMAND, PCI_CMD_MEM | PCI_CMD_MASTER);
	msix_ctl(&f->vm, T64_SLOT, PCI_MSIX_ENABLE);
	msix_entry(&f->vm, T64_SLOT, 0, 0xFEE00000u, 0x61, false);
	msix_entry(&f->vm, T64_SLOT, 2, 0xFEE03000u, 0x62, false);
	msix_entry(&f->vm, T64_SLOT, 3, 0xFEE00000u, 0x63, true);	/* masked */
	pd = find_func(&f->vm, "test-bar64.5");
	pthread_mutex_lock(&pd->lock);
	pci__save(pd, &s);
	pthread_mutex_unlock(&pd->lock);
	fakevm_down(f);
	/* every irqfd of the old VM was deassigned */
	for (unsigned int k = 0; k < fk.nirqfd; k++)
		assert_false(fk.irqfd[k].on);

	memset(&fk, 0, sizeof(fk));
	if (setup_t64(f, 16 << 20, 1, NULL, FAKE_VM_FD, err, sizeof(err)))
		fail_msg("%s", err);
	pd = find_func(&f->vm, "test-bar64.5");
	for (unsigned int v = 0; v < T64_NVEC; v++)
		gsi[v] = pd->msix_route[v].gsi;
	assert_int_equal(fk.nrouting, 0);
	pthread_mutex_lock(&pd->lock);
	pci__restore(pd, &s);
	pthread_mutex_unlock(&pd->lock);
	assert_int_equal(fk.nrouting, 1);
	check_default_routes();
	assert_int_equal(msi_routes(), 2);
	assert_true(fake_route(gsi[0], &addr, &data));
	assert_int_equal(addr, 0xFEE00000u);
	assert_int_equal(data, 0x61);
	assert_true(fake_route(gsi[2], &addr, &data));
	assert_int_equal(addr, 0xFEE03000u);
	assert_int_equal(data, 0x62);
	notify(pd, 2);
	assert_int_equal(fired(gsi[2]), 1);
	notify(pd, 3);					/* still masked: pending */
	assert_int_equal(fired(gsi[3]), 0);
	assert_int_equal(fk.nmsi, 0);
	fakevm_down(f);
	free(f);
}

/* KVM refuses irqfds: every vector goes by KVM_SIGNAL_MSI, as before irqfds. */
static void test_msix_without_irqfd(void **state)
{
	struct fakevm *f = malloc(sizeof(*f));
	struct pci_dev *pd;
	char err[256];

	(void)state;
	assert_non_null(f);
	fk.fail_irqfd = true;
	if (setup_t64(f, 16 << 20, 1, NULL, FAKE_VM_FD, err, sizeof(err)))
		fail_msg("%s", err);
	pd = find_func(&f->vm, "test-bar64.5");
	assert_int_equal(fk.nirqfd, 0);
	for (unsigned int v = 0; v < T64_NVEC; v++)
		assert_int_equal(pd->msix_route[v].efd, -1);
	cfg_wr(&f->vm, T64_SLOT, PCI_COMMAND, PCI_CMD_MEM | PCI_CMD_MASTER);
	msix_ctl(&f->vm, T64_SLOT, PCI_MSIX_ENABLE);
	msix_entry(&f->vm, T64_SLOT, 1, 0xFEE00000u, 0x71, false);
	assert_int_equal(fk.nrouting, 0);		/* nothing to route */
	notify(pd, 1);
	assert_int_equal(fk.nmsi, 1);
	assert_int_equal(fk.msi[0].data, 0x71);
	fakevm_down(f);
	free(f);
}

/* ---------- the same against real KVM, when there is one ---------- */

struct kvm_vm {
	int kvm, vm, vcpu;
};

/*
 * False, with the reason in why, when this host's KVM cannot create a VM
 * (no /dev/kvm, no permission, or KVM refuses): the test is then skipped,
 * a missing host capability.  Anything failing after that is a failure.
 */
static bool kvm_open(struct kvm_vm *k, char *why, size_t len)
{
	uint64_t ident = 0xFEFFC000ULL;

	k->vm = k->vcpu = -1;
	k->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (k->kvm < 0) {
		snprintf(why, len, "cannot open /dev/kvm: %s", strerror(errno));
		return false;
	}
	k->vm = ioctl(k->kvm, KVM_CREATE_VM, 0);
	if (k->vm < 0) {
		snprintf(why, len, "/dev/kvm cannot create a VM: %s", strerror(errno));
		close(k->kvm);
		k->kvm = -1;
		return false;
	}
	assert_int_equal(ioctl(k->vm, KVM_SET_IDENTITY_MAP_ADDR, &ident), 0);
	assert_int_equal(ioctl(k->vm, KVM_SET_TSS_ADDR, 0xFEFFD000UL), 0);
	assert_int_equal(irqchip__create(k->vm, 1), 0);
	k->vcpu = ioctl(k->vm, KVM_CREATE_VCPU, 0);
	assert_true(k->vcpu >= 0);
	return true;
}

static void kvm_close(struct kvm_vm *k)
{
	if (k->vcpu >= 0)
		close(k->vcpu);
	if (k->vm >= 0)
		close(k->vm);
	if (k->kvm >= 0)
		close(k->kvm);
}

static void chips(int vm, uint32_t *ioapic, uint32_t *pic)
{
	struct kvm_irqchip c = { .chip_id = KVM_IRQCHIP_IOAPIC };
	struct kvm_irqchip m = { .chip_id = KVM_IRQCHIP_PIC_MASTER }, s = { .chip_id = KVM_IRQCHIP_PIC_SLAVE };

	assert_int_equal(ioctl(vm, KVM_GET_IRQCHIP, &c), 0);
	assert_int_equal(ioctl(vm, KVM_GET_IRQCHIP, &m), 0);
	assert_int_equal(ioctl(vm, KVM_GET_IRQCHIP, &s), 0);
	*ioapic = (uint32_t)c.chip.ioapic.irr;
	*pic = m.chip.pic.irr | (uint32_t)s.chip.pic.irr << 8;
}

/*
 * For each GSI 0-23: the IOAPIC and 8259 inputs its rising edge asserts
 * (the 8259s latch edges nobody acknowledges here: only new bits count).
 */
static void line_map(int vm, uint32_t ioapic[24], uint32_t pic[24])
{
	for (unsigned int gsi = 0; gsi < 24; gsi++) {
		uint32_t io0, pic0;

		chips(vm, &io0, &pic0);
		assert_int_equal(irqchip__set_line(vm, gsi, 1), 0);
		chips(vm, &ioapic[gsi], &pic[gsi]);
		pic[gsi] &= ~pic0;
		assert_int_equal(irqchip__set_line(vm, gsi, 0), 0);
	}
}

/*
 * Real KVM: the routing table pci.c submits is accepted, keeps every line
 * going where irqchip.c's table sends it, and a notification lands in the
 * vCPU's LAPIC IRR through the irqfd.
 */
static void test_msix_irqfd_kvm(void **state)
{
	struct fakevm *f;
	struct kvm_vm k, ref;
	struct kvm_lapic_state lapic;
	uint32_t io_ref[24], pic_ref[24], io[24], pic[24], irr = 0;
	struct pci_dev *pd;
	char err[256];

	(void)state;
	if (!kvm_open(&k, err, sizeof(err))) {
		print_message("    %s: skipped\n", err);
		skip();
	}
	f = malloc(sizeof(*f));
	assert_non_null(f);
	if (setup_t64(f, 16 << 20, 1, NULL, k.vm, err, sizeof(err)))
		fail_msg("%s", err);
	pd = find_func(&f->vm, "test-bar64.5");
	for (unsigned int v = 0; v < T64_NVEC; v++)
		assert_true(pd->msix_route[v].efd >= 0);
	/* the LAPIC software-enabled, so that it accepts interrupts */
	assert_int_equal(ioctl(k.vcpu, KVM_GET_LAPIC, &lapic), 0);
	lapic.regs[0xf0] = 0xff;
	lapic.regs[0xf1] |= 1;
	assert_int_equal(ioctl(k.vcpu, KVM_SET_LAPIC, &lapic), 0);

	cfg_wr(&f->vm, T64_SLOT, PCI_COMMAND, PCI_CMD_MEM | PCI_CMD_MASTER);
	msix_ctl(&f->vm, T64_SLOT, PCI_MSIX_ENABLE);
	msix_entry(&f->vm, T64_SLOT, 2, 0xFEE00000u, 0x45, false);	/* fixed, vector 0x45, APIC 0 */
	assert_true(pd->msix_route[2].routed);				/* KVM took the table */
	notify(pd, 2);
	for (int i = 0; i < 1000 && !(irr & (1u << (0x45 % 32))); i++) {
		assert_int_equal(ioctl(k.vcpu, KVM_GET_LAPIC, &lapic), 0);
		memcpy(&irr, lapic.regs + 0x200 + 0x10 * (0x45 / 32), 4);
		if (!(irr & (1u << (0x45 % 32))))
			usleep(1000);
	}
	assert_true(irr & (1u << (0x45 % 32)));

	/* the lines: as in a VM with irqchip.c's table alone */
	if (!kvm_open(&ref, err, sizeof(err)))
		fail_msg("a second VM: %s", err);
	line_map(ref.vm, io_ref, pic_ref);
	line_map(k.vm, io, pic);
	for (unsigned int gsi = 0; gsi < 24; gsi++) {
		print_message("    GSI %2u: IOAPIC 0x%06x 8259 0x%04x\n", gsi, io[gsi], pic[gsi]);
		assert_int_equal(io[gsi], io_ref[gsi]);
		assert_int_equal(pic[gsi], pic_ref[gsi]);
	}
	assert_int_equal(io[0], 1u << 2);	/* the PC convention, to be sure */
	assert_int_equal(pic[0], 1);
	assert_int_equal(io[2] | pic[2], 0);
	assert_int_equal(pic[16], 0);
	kvm_close(&ref);
	fakevm_down(f);
	free(f);
	kvm_close(&k);
}


int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bar64_arguments),
		cmocka_unit_test(test_bar64),
		cmocka_unit_test_setup_teardown(test_msix_irqfd_routes, setup_fake_kvm, teardown_fake_kvm),
		cmocka_unit_test_setup_teardown(test_msix_routes_after_restore, setup_fake_kvm, teardown_fake_kvm),
		cmocka_unit_test_setup_teardown(test_msix_without_irqfd, setup_fake_kvm, teardown_fake_kvm),
		cmocka_unit_test(test_msix_irqfd_kvm),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
