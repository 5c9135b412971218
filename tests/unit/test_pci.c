/*
 * PCI bus, virtio-pci transport, split virtqueues and virtio-rnd, driven
 * the way a guest drives them: configuration mechanism #1 on ports
 * 0xCF8/0xCFC, MMIO on the BAR, rings in (host-allocated) guest memory.
 * No KVM: interrupts are observed through ISR, INTx status and MSI-X PBA.
 * PCI in the configuration and ECAM are in test_pci_config.c, 64-bit BARs
 * and MSI-X through irqfd in test_pci_msix.c; what they share in pcihelp.c.
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

static void test_enumeration(void **state)
{
	struct fakevm *f = *state;
	struct vm *vm = &f->vm;

	assert_int_equal(cfg_rd(vm, 0, 0), 0x12378086);		/* host bridge */
	assert_int_equal(cfg_rd(vm, 0, 8) >> 8, 0x060000);
	assert_int_equal(cfg_rd(vm, SLOT, 0), 0x10441af4);	/* virtio 1.x entropy */
	assert_int_equal(cfg_rd(vm, SLOT, PCI_SUBSYS_VENDOR) >> 16, 0x40);
	assert_int_equal(cfg_rd(vm, 5, 0), 0xffffffff);		/* empty slot */
	out32(vm, 0xcf8, SLOT << 11);				/* enable bit clear */
	assert_int_equal(in32(vm, 0xcfc), 0xffffffff);
	out32(vm, 0xcf8, 0x80010000u | SLOT << 11);		/* bus 1: nothing */
	assert_int_equal(in32(vm, 0xcfc), 0xffffffff);
	/* the address latch reads back, and only 4-byte accesses reach it */
	out32(vm, 0xcf8, 0x80001804u);
	assert_int_equal(in32(vm, 0xcf8), 0x80001804u);
	/* INTx: pin A, line = the GSI the MP table names */
	assert_int_equal((cfg_rd(vm, SLOT, PCI_INT_LINE) >> 8) & 0xff, 1);
	assert_int_equal(cfg_rd(vm, SLOT, PCI_INT_LINE) & 0xff, pci__intx_gsi(SLOT, 0));
}

static void test_bar_sizing_and_placement(void **state)
{
	struct fakevm *f = *state;

	assert_true(f->bar >= PCI_MMIO_BASE && f->bar + VIRTIO_BAR_SIZE <= PCI_MMIO_END);
	assert_int_equal(f->bar % VIRTIO_BAR_SIZE, 0);
	cfg_wr(&f->vm, SLOT, PCI_BAR0, 0xffffffff);
	assert_int_equal(cfg_rd(&f->vm, SLOT, PCI_BAR0), (uint32_t)~(VIRTIO_BAR_SIZE - 1));
	/* moved away, the BAR does not decode */
	assert_int_equal(mmio_rd(f, 0x12, 2), 0xffff);
	cfg_wr(&f->vm, SLOT, PCI_BAR0, f->bar);
	assert_int_equal(mmio_rd(f, 0x12, 2), 1);		/* num_queues */
	/* memory decoding off: no access */
	cfg_wr(&f->vm, SLOT, PCI_COMMAND, 0);
	assert_int_equal(mmio_rd(f, 0x12, 2), 0xffff);
	/* unused BARs are hard-wired to zero */
	cfg_wr(&f->vm, SLOT, PCI_BAR0 + 4, 0xffffffff);
	assert_int_equal(cfg_rd(&f->vm, SLOT, PCI_BAR0 + 4), 0);
}

static void test_capabilities(void **state)
{
	struct fakevm *f = *state;
	unsigned int seen = 0, guard = 0;

	assert_true(cfg_rd(&f->vm, SLOT, PCI_COMMAND) & (PCI_STATUS_CAPS << 16));
	for (unsigned int p = cfg_rd(&f->vm, SLOT, PCI_CAP_PTR) & 0xff; p; guard++) {
		uint32_t h = cfg_rd(&f->vm, SLOT, p);

		assert_true(guard < 16 && p >= 0x40 && !(p & 3));
		if ((h & 0xff) == PCI_CAP_MSIX) {
			assert_int_equal((h >> 16) & 0x7ff, 1);	/* 2 vectors */
			assert_int_equal(cfg_rd(&f->vm, SLOT, p + 4), VIRTIO_MSIX_TABLE_OFF);
			assert_int_equal(cfg_rd(&f->vm, SLOT, p + 8), VIRTIO_MSIX_PBA_OFF);
			seen |= 1;
		} else if ((h & 0xff) == PCI_CAP_VENDOR) {
			unsigned int type = h >> 24;

			assert_int_equal(cfg_rd(&f->vm, SLOT, p + 4) & 0xff, 0);	/* BAR 0 */
			if (type == 2)
				assert_int_equal(cfg_rd(&f->vm, SLOT, p + 16), VIRTIO_NOTIFY_MULT);
			if (type == 5)	/* PCI_CFG: 20 bytes, the last capability */
				assert_int_equal((h >> 16) & 0xff, 20);
			seen |= 1u << type;
		}
		p = (h >> 8) & 0xff;
	}
	/* MSI-X, common, notify, ISR, PCI_CFG; no device configuration */
	assert_int_equal(seen, 1 | 2 | 4 | 8 | 32);
}

/* Offset of the vendor capability of this virtio type in slot's function 0, or 0. */
static unsigned int find_vcap(struct vm *vm, unsigned int slot, unsigned int type)
{
	for (unsigned int p = cfg_rd(vm, slot, PCI_CAP_PTR) & 0xff, n = 0; p && n < 16; n++) {
		uint32_t h = cfg_rd(vm, slot, p);

		if ((h & 0xff) == PCI_CAP_VENDOR && h >> 24 == type)
			return p;
		p = (h >> 8) & 0xff;
	}
	return 0;
}

/* Set up the PCI_CFG window at cap for an access of len bytes at off of bar. */
static void window(struct vm *vm, unsigned int slot, unsigned int cap, uint8_t bar, uint32_t off, uint32_t len)
{
	cfg_wr(vm, slot, cap + 4, bar);
	cfg_wr(vm, slot, cap + 8, off);
	cfg_wr(vm, slot, cap + 12, len);
}

/* VIRTIO_PCI_CAP_PCI_CFG: the common configuration through configuration space */
static void test_pci_cfg_window(void **state)
{
	struct fakevm *f = *state;
	struct vm *vm = &f->vm;
	unsigned int cap = find_vcap(vm, SLOT, 5);

	assert_true(cap);
	/* at reset the window is closed: length 0 reaches nothing */
	assert_int_equal(cfg_rd(vm, SLOT, cap + 12), 0);
	assert_int_equal(cfg_rd(vm, SLOT, cap + 16), 0);
	/* the fields are read-write, the header is not */
	window(vm, SLOT, cap, 0, 0x12, 2);
	assert_int_equal(cfg_rd(vm, SLOT, cap + 4) & 0xff, 0);
	assert_int_equal(cfg_rd(vm, SLOT, cap + 8), 0x12);
	assert_int_equal(cfg_rd(vm, SLOT, cap + 12), 2);
	cfg_wr(vm, SLOT, cap, 0);
	assert_int_equal(cfg_rd(vm, SLOT, cap) >> 24, 5);
	/* a 2-byte read: num_queues */
	assert_int_equal(cfg_rd(vm, SLOT, cap + 16) & 0xffff, 1);
	/* it works with memory decoding off: that is what the window is for */
	cfg_wr(vm, SLOT, PCI_COMMAND, 0);
	assert_int_equal(mmio_rd(f, 0x12, 2), 0xffff);
	assert_int_equal(cfg_rd(vm, SLOT, cap + 16) & 0xffff, 1);
	/* 4-byte write of device_feature_select, then read device_feature */
	window(vm, SLOT, cap, 0, 0x00, 4);
	cfg_wr(vm, SLOT, cap + 16, 1);
	window(vm, SLOT, cap, 0, 0x04, 4);
	assert_int_equal(cfg_rd(vm, SLOT, cap + 16), 1);	/* VERSION_1, bit 32 */
	/* 1-byte write of the status; a byte read of it sees it, so does MMIO */
	window(vm, SLOT, cap, 0, 0x14, 1);
	cfg_wr(vm, SLOT, cap + 16, VIRTIO_S_ACKNOWLEDGE | 0xaabbcc00u);	/* only cap.length bytes go */
	cfg_wr(vm, SLOT, cap + 16, 0);
	assert_int_equal(cfg_rd(vm, SLOT, cap + 16) & 0xff, 0);	/* the write of 0 was a reset */
	cfg_wr(vm, SLOT, cap + 16, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER);
	assert_int_equal(cfg_rd(vm, SLOT, cap + 16) & 0xff, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER);
	cfg_wr(vm, SLOT, PCI_COMMAND, PCI_CMD_MEM);
	assert_int_equal(mmio_rd(f, 0x14, 1), VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER);
	/* the 64-bit queue_desc as two aligned 4-byte halves */
	window(vm, SLOT, cap, 0, 0x20, 4);
	cfg_wr(vm, SLOT, cap + 16, 0x12345000u);
	window(vm, SLOT, cap, 0, 0x24, 4);
	cfg_wr(vm, SLOT, cap + 16, 0x9);
	assert_int_equal(mmio_rd(f, 0x20, 8), 0x912345000ULL);
	assert_int_equal(cfg_rd(vm, SLOT, cap + 16), 0x9);
	/* the MSI-X table is in BAR 0 too */
	window(vm, SLOT, cap, 0, VIRTIO_MSIX_TABLE_OFF + 8, 4);
	cfg_wr(vm, SLOT, cap + 16, 0x4321);
	assert_int_equal(mmio_rd(f, VIRTIO_MSIX_TABLE_OFF + 8, 4), 0x4321);

	/* what the driver must not ask for reaches no register (4.1.4.9.2) */
	static const struct { uint8_t bar; uint32_t off, len; } bad[] = {
		{ 0, 0x13, 2 },				/* misaligned */
		{ 0, 0x12, 3 },				/* not 1, 2 or 4 */
		{ 0, 0x10, 8 },
		{ 0, 0x10, 0 },
		{ 1, 0x12, 2 },				/* a BAR that does not exist */
		{ 6, 0x12, 2 },
		{ 0xff, 0x12, 2 },
		{ 0, VIRTIO_BAR_SIZE, 4 },		/* past the BAR */
		{ 0, 0xfffffffcu, 4 },
	};
	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("    bar %u offset 0x%x length %u\n", bad[i].bar, bad[i].off, bad[i].len);
		window(vm, SLOT, cap, 0, 0x14, 1);
		cfg_wr(vm, SLOT, cap + 16, 0x5a5a5a03);	/* a status write, so data is known */
		window(vm, SLOT, cap, bad[i].bar, bad[i].off, bad[i].len);
		assert_int_equal(cfg_rd(vm, SLOT, cap + 16), 0x5a5a5a03);	/* read: nothing stored */
		cfg_wr(vm, SLOT, cap + 16, 0);		/* write: no reset */
		assert_int_equal(mmio_rd(f, 0x14, 1), VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER);
		assert_int_equal(mmio_rd(f, 0x20, 8), 0x912345000ULL);
	}
}

static uint64_t bar_rd(struct vm *vm, uint32_t bar, uint64_t off, unsigned int len)
{
	uint64_t v = 0;

	bus__access(&vm->bus, BUS_MMIO, bar + off, (uint8_t *)&v, len, false);
	return v;
}

static void bar_wr(struct vm *vm, uint32_t bar, uint64_t off, uint64_t v, unsigned int len)
{
	bus__access(&vm->bus, BUS_MMIO, bar + off, (uint8_t *)&v, len, true);
}

/* A device type's configuration: its capability, widths, bounds, generation. */
static void test_device_config(void **state)
{
	struct fakevm *f = *state;
	struct vm *vm = &f->vm;
	struct cfgdev *c = g_cfgdev;
	unsigned int cap = find_vcap(vm, CFG_SLOT, 4), win = find_vcap(vm, CFG_SLOT, 5);
	uint32_t bar = cfg_rd(vm, CFG_SLOT, PCI_BAR0) & ~0xfu;
	const uint64_t cfg = VIRTIO_DEVCFG_OFF;
	unsigned int reads, writes;
	uint8_t gen, g1, g2;

	assert_non_null(c);
	assert_true(cap && win);
	assert_int_equal(cfg_rd(vm, CFG_SLOT, cap + 4) & 0xff, 0);
	assert_int_equal(cfg_rd(vm, CFG_SLOT, cap + 8), VIRTIO_DEVCFG_OFF);
	assert_int_equal(cfg_rd(vm, CFG_SLOT, cap + 12), CFG_SIZE);
	assert_int_equal(find_vcap(vm, SLOT, 4), 0);	/* virtio-rnd has none */
	cfg_wr(vm, CFG_SLOT, PCI_COMMAND, PCI_CMD_MEM);

	/* every width, before any feature negotiation (2.5.1) */
	assert_int_equal(bar_rd(vm, bar, cfg, 4), 0x11223344);
	assert_int_equal(bar_rd(vm, bar, cfg + 4, 2), 0x5566);
	assert_int_equal(bar_rd(vm, bar, cfg + 6, 1), 0x77);
	assert_int_equal(bar_rd(vm, bar, cfg + 8, 4), 0xaabbccdd);
	assert_int_equal(bar_rd(vm, bar, cfg, 8), 0x0077556611223344ULL);
	/* misaligned, straddling or beyond the end: zeros, no callback */
	reads = c->reads;
	assert_int_equal(bar_rd(vm, bar, cfg + 1, 2), 0);
	assert_int_equal(bar_rd(vm, bar, cfg + 2, 4), 0);
	assert_int_equal(bar_rd(vm, bar, cfg + 8, 8), 0);
	assert_int_equal(bar_rd(vm, bar, cfg + CFG_SIZE, 1), 0);
	assert_int_equal(bar_rd(vm, bar, cfg + VIRTIO_DEVCFG_MAX - 4, 4), 0);
	assert_int_equal(c->reads, reads);
	/* writes: the type decides what is writable */
	bar_wr(vm, bar, cfg + 4, 0xbeef, 2);
	assert_int_equal(bar_rd(vm, bar, cfg + 4, 2), 0xbeef);
	bar_wr(vm, bar, cfg, 0, 4);
	assert_int_equal(bar_rd(vm, bar, cfg, 4), 0x11223344);
	writes = c->writes;
	bar_wr(vm, bar, cfg + 5, 0, 2);
	bar_wr(vm, bar, cfg + 10, 0, 4);
	bar_wr(vm, bar, cfg + CFG_SIZE, 0, 1);
	assert_int_equal(c->writes, writes);
	/* and through the PCI_CFG window */
	window(vm, CFG_SLOT, win, 0, VIRTIO_DEVCFG_OFF + 4, 2);
	assert_int_equal(cfg_rd(vm, CFG_SLOT, win + 16) & 0xffff, 0xbeef);
	cfg_wr(vm, CFG_SLOT, win + 16, 0x1234);
	assert_int_equal(bar_rd(vm, bar, cfg + 4, 2), 0x1234);

	/* a change the driver could have read half of: a new generation (4.1.4.3.1) */
	g1 = (uint8_t)bar_rd(vm, bar, 0x15, 1);
	assert_int_equal(bar_rd(vm, bar, cfg, 4), 0x11223344);
	pthread_mutex_lock(&c->vd.pd->lock);
	c->cfg[0] = 0x45;
	c->cfg[8] = 0xde;
	virtio__config_changed(&c->vd);
	pthread_mutex_unlock(&c->vd.pd->lock);
	assert_int_equal(bar_rd(vm, bar, cfg + 8, 4), 0xaabbccde);
	g2 = (uint8_t)bar_rd(vm, bar, 0x15, 1);
	assert_int_not_equal(g1, g2);
	/* the driver's retry then reads a consistent pair */
	assert_int_equal(bar_rd(vm, bar, cfg, 4), 0x11223345);
	assert_int_equal(bar_rd(vm, bar, 0x15, 1), g2);
	/* no notification before DRIVER_OK */
	assert_int_equal(bar_rd(vm, bar, VIRTIO_ISR_OFF, 1), 0);

	/* after DRIVER_OK: ISR bit 1 and INTx, or the config vector with MSI-X */
	bar_wr(vm, bar, 0x14, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER, 1);
	bar_wr(vm, bar, 0x08, 1, 4);
	bar_wr(vm, bar, 0x0c, 1, 4);	/* VERSION_1 */
	bar_wr(vm, bar, 0x14, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK, 1);
	assert_true(bar_rd(vm, bar, 0x14, 1) & VIRTIO_S_FEATURES_OK);
	bar_wr(vm, bar, 0x14, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK | VIRTIO_S_DRIVER_OK, 1);
	pthread_mutex_lock(&c->vd.pd->lock);
	virtio__config_changed(&c->vd);
	pthread_mutex_unlock(&c->vd.pd->lock);
	assert_int_equal(bar_rd(vm, bar, 0x15, 1), (uint8_t)(g2 + 1));
	assert_true(cfg_rd(vm, CFG_SLOT, PCI_COMMAND) & (PCI_STATUS_INTX << 16));
	assert_int_equal(bar_rd(vm, bar, VIRTIO_ISR_OFF, 1), 2);
	assert_false(cfg_rd(vm, CFG_SLOT, PCI_COMMAND) & (PCI_STATUS_INTX << 16));
	{
		unsigned int msix = 0;

		for (unsigned int p = cfg_rd(vm, CFG_SLOT, PCI_CAP_PTR) & 0xff; p;
		     p = (cfg_rd(vm, CFG_SLOT, p) >> 8) & 0xff)
			if ((cfg_rd(vm, CFG_SLOT, p) & 0xff) == PCI_CAP_MSIX)
				msix = p;
		assert_true(msix);
		cfg_wr(vm, CFG_SLOT, msix, (uint32_t)(PCI_MSIX_ENABLE | PCI_MSIX_MASKALL) << 16);
		bar_wr(vm, bar, 0x10, 0, 2);	/* config_vector 0 */
		assert_int_equal(bar_rd(vm, bar, 0x10, 2), 0);
		pthread_mutex_lock(&c->vd.pd->lock);
		virtio__config_changed(&c->vd);
		pthread_mutex_unlock(&c->vd.pd->lock);
		assert_int_equal(bar_rd(vm, bar, VIRTIO_MSIX_PBA_OFF, 4), 1);	/* masked: pending */
		assert_int_equal(bar_rd(vm, bar, VIRTIO_ISR_OFF, 1), 0);
	}
	/* a reset keeps the generation: the configuration did not change */
	gen = (uint8_t)bar_rd(vm, bar, 0x15, 1);
	assert_int_equal(gen, (uint8_t)(g2 + 2));
	bar_wr(vm, bar, 0x14, 0, 1);
	assert_int_equal(bar_rd(vm, bar, 0x14, 1), 0);
	assert_int_equal(bar_rd(vm, bar, 0x15, 1), gen);
	assert_int_equal(bar_rd(vm, bar, cfg, 4), 0x11223345);
}

/* Driver initialisation, queue 0 with its driver area's address written in halves. */
static void setup_queue(struct fakevm *f, uint64_t features)
{
	uint8_t s = fakevm_negotiate(f, features);

	assert_true(s & VIRTIO_S_FEATURES_OK);
	fakevm_queue(f, 0, true);
	assert_int_equal(mmio_rd(f, 0x1c, 2), 1);
	mmio_wr(f, 0x14, s | VIRTIO_S_DRIVER_OK, 1);
}

static bool not_constant(const uint8_t *p, size_t n)
{
	for (size_t i = 1; i < n; i++)
		if (p[i] != p[0])
			return true;
	return false;
}

static void test_rng_requests(void **state)
{
	struct fakevm *f = *state;
	uint64_t feat = 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_F_INDIRECT_DESC;

	setup_queue(f, feat);
	memset(gpa(f, BUFS), 0, 4096);
	/* a chain of two writable buffers */
	set_desc(f, RING, 0, BUFS, 64, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, RING, 1, BUFS + 64, 64, VIRTQ_DESC_F_WRITE, 0);
	post(f, 0, 0);
	assert_int_equal(used_idx(f, 0), 1);
	assert_int_equal(used_len(f, 0, 0), 128);
	assert_true(not_constant(gpa(f, BUFS), 128));
	/* INTx without MSI-X: ISR bit 0, cleared by reading it */
	assert_true(cfg_rd(&f->vm, SLOT, PCI_COMMAND) & (PCI_STATUS_INTX << 16));
	assert_int_equal(mmio_rd(f, VIRTIO_ISR_OFF, 1), 1);
	assert_int_equal(mmio_rd(f, VIRTIO_ISR_OFF, 1), 0);
	assert_false(cfg_rd(&f->vm, SLOT, PCI_COMMAND) & (PCI_STATUS_INTX << 16));
	/* an indirect table of three */
	set_desc(f, BUFS + 0x800, 0, BUFS + 0x100, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
	set_desc(f, BUFS + 0x800, 2, BUFS + 0x110, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, BUFS + 0x800, 1, BUFS + 0x120, 16, VIRTQ_DESC_F_WRITE, 0);
	set_desc(f, RING, 2, BUFS + 0x800, 48, VIRTQ_DESC_F_INDIRECT, 0);
	post(f, 0, 2);
	assert_int_equal(used_idx(f, 0), 2);
	assert_int_equal(used_len(f, 0, 1), 48);
	assert_false(mmio_rd(f, 0x14, 1) & VIRTIO_S_NEEDS_RESET);
}

static void test_features_subset(void **state)
{
	struct fakevm *f = *state;

	/* a bit never offered: FEATURES_OK does not stick */
	assert_false(fakevm_negotiate(f, 1ULL << VIRTIO_F_VERSION_1 | 1ULL << 40) & VIRTIO_S_FEATURES_OK);
	/* without VERSION_1 (a legacy driver): refused too */
	assert_false(fakevm_negotiate(f, 1ULL << VIRTIO_F_INDIRECT_DESC) & VIRTIO_S_FEATURES_OK);
	assert_true(fakevm_negotiate(f, 1ULL << VIRTIO_F_VERSION_1) & VIRTIO_S_FEATURES_OK);
	/* offered: version 1, indirect descriptors, event index */
	mmio_wr(f, 0x00, 1, 4);
	assert_int_equal(mmio_rd(f, 0x04, 4), 1);
	mmio_wr(f, 0x00, 0, 4);
	assert_int_equal(mmio_rd(f, 0x04, 4), 3u << 28);
}

static void expect_broken(struct fakevm *f, uint16_t before)
{
	assert_true(mmio_rd(f, 0x14, 1) & VIRTIO_S_NEEDS_RESET);
	assert_int_equal(used_idx(f, 0), before);
	/* and it serves nothing more until reset */
	set_desc(f, RING, 7, BUFS, 16, VIRTQ_DESC_F_WRITE, 0);
	post(f, 0, 7);
	assert_int_equal(used_idx(f, 0), before);
	mmio_wr(f, 0x14, 0, 1);
	assert_int_equal(mmio_rd(f, 0x14, 1), 0);
	mmio_wr(f, 0x16, 0, 2);
	assert_int_equal(mmio_rd(f, 0x1c, 2), 0);	/* queue disabled by the reset */
}

static void test_hostile_chains(void **state)
{
	struct fakevm *f = *state;
	uint64_t feat = 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_F_INDIRECT_DESC;
	static const struct { uint64_t addr; uint32_t len; uint16_t flags, next; bool two; } bad[] = {
		{ 0xF0000000ULL, 16, VIRTQ_DESC_F_WRITE, 0, false },		/* outside RAM */
		{ (16 << 20) - 8, 16, VIRTQ_DESC_F_WRITE, 0, false },		/* straddles the end */
		{ BUFS, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 9, false },	/* next beyond the queue */
		{ BUFS, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0, false },	/* a loop on itself */
		{ BUFS, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1, true },	/* a loop of two */
		{ BUFS + 0x800, 20, VIRTQ_DESC_F_INDIRECT, 0, false },		/* table not of 16 */
		{ BUFS + 0x800, 0xFFFFFFF0u, VIRTQ_DESC_F_INDIRECT, 0, false },	/* huge table */
		{ BUFS + 0x800, 16, VIRTQ_DESC_F_INDIRECT, 0, false },		/* nested indirect */
	};

	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint16_t before;

		setup_queue(f, feat);
		before = used_idx(f, 0);
		set_desc(f, RING, 0, bad[i].addr, bad[i].len, bad[i].flags, bad[i].next);
		if (bad[i].two)
			set_desc(f, RING, 1, BUFS, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
		/* the nested case: an indirect entry inside the indirect table */
		set_desc(f, BUFS + 0x800, 0, BUFS + 0x800, 16, VIRTQ_DESC_F_INDIRECT, 0);
		post(f, 0, 0);
		print_message("    case %u\n", i);
		expect_broken(f, before);
	}
	/* an avail index more than a queue ahead */
	setup_queue(f, feat);
	((uint16_t *)gpa(f, RING + 0x1000))[1] = QSIZE + 1;
	mmio_wr(f, VIRTIO_NOTIFY_OFF, 0, 2);
	expect_broken(f, 0);
	/* a queue whose rings are not in RAM is never enabled */
	fakevm_negotiate(f, feat);
	mmio_wr(f, 0x16, 0, 2);
	mmio_wr(f, 0x20, 0xFEBFF000ULL, 8);
	mmio_wr(f, 0x1c, 1, 2);
	assert_int_equal(mmio_rd(f, 0x1c, 2), 0);
	assert_true(mmio_rd(f, 0x14, 1) & VIRTIO_S_NEEDS_RESET);
	/* a size that is not a power of two is ignored */
	mmio_wr(f, 0x14, 0, 1);
	mmio_wr(f, 0x18, 6, 2);
	assert_int_equal(mmio_rd(f, 0x18, 2), 256);
}

static void test_event_idx(void **state)
{
	struct fakevm *f = *state;
	uint16_t *used = gpa(f, RING + 0x2000), *avail = gpa(f, RING + 0x1000);

	setup_queue(f, 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_F_EVENT_IDX);
	avail[2 + QSIZE] = 5;	/* used_event: interrupt only after the 6th */
	for (unsigned int i = 0; i < 6; i++) {
		set_desc(f, RING, i, BUFS + 16 * i, 16, VIRTQ_DESC_F_WRITE, 0);
		post(f, 0, (uint16_t)i);
		/* avail_event tells the driver we want the next notification */
		assert_int_equal(used[2 + 4 * QSIZE], i + 1);
		assert_int_equal(mmio_rd(f, VIRTIO_ISR_OFF, 1), i == 5 ? 1 : 0);
	}
}

static void test_msix_mask_and_pending(void **state)
{
	struct fakevm *f = *state;
	uint32_t cap = 0;

	for (unsigned int p = cfg_rd(&f->vm, SLOT, PCI_CAP_PTR) & 0xff; p; p = (cfg_rd(&f->vm, SLOT, p) >> 8) & 0xff)
		if ((cfg_rd(&f->vm, SLOT, p) & 0xff) == PCI_CAP_MSIX)
			cap = p;
	assert_true(cap);
	/* enable with the whole function masked */
	cfg_wr(&f->vm, SLOT, cap, (uint32_t)(PCI_MSIX_ENABLE | PCI_MSIX_MASKALL) << 16);
	mmio_wr(f, VIRTIO_MSIX_TABLE_OFF + 16, 0xFEE00000u, 4);
	mmio_wr(f, VIRTIO_MSIX_TABLE_OFF + 24, 0x41, 4);
	mmio_wr(f, VIRTIO_MSIX_TABLE_OFF + 28, 0, 4);	/* vector 1 unmasked */
	assert_int_equal(mmio_rd(f, VIRTIO_MSIX_TABLE_OFF + 24, 4), 0x41);
	setup_queue(f, 1ULL << VIRTIO_F_VERSION_1);
	mmio_wr(f, 0x16, 0, 2);
	mmio_wr(f, 0x1a, 1, 2);
	assert_int_equal(mmio_rd(f, 0x1a, 2), 1);
	mmio_wr(f, 0x1a, 7, 2);				/* no such vector */
	assert_int_equal(mmio_rd(f, 0x1a, 2), VIRTIO_NO_VECTOR);
	mmio_wr(f, 0x14, 0, 1);				/* vectors are set before DRIVER_OK */
	setup_queue(f, 1ULL << VIRTIO_F_VERSION_1);
	mmio_wr(f, 0x16, 0, 2);
	mmio_wr(f, 0x1a, 1, 2);
	set_desc(f, RING, 0, BUFS, 16, VIRTQ_DESC_F_WRITE, 0);
	post(f, 0, 0);
	assert_int_equal(used_idx(f, 0), 1);
	assert_int_equal(mmio_rd(f, VIRTIO_ISR_OFF, 1), 0);	/* MSI-X, not ISR */
	assert_int_equal(mmio_rd(f, VIRTIO_MSIX_PBA_OFF, 4), 2);	/* masked: pending */
	cfg_wr(&f->vm, SLOT, cap, (uint32_t)PCI_MSIX_ENABLE << 16);	/* unmask: delivered */
	assert_int_equal(mmio_rd(f, VIRTIO_MSIX_PBA_OFF, 4), 0);
}

/* save -> encode -> decode -> restore -> save: the same bytes; then the
 * decoder refuses states no device could be in. */
static void test_snapshot(void **state)
{
	struct fakevm *f = *state, g;
	struct device_instance *d, *e;
	const struct device_ops *ops;
	struct sbuf b1 = { 0 }, b2 = { 0 };
	char err[256];
	struct dec dec = { .section = "virtio-rnd.3", .err = err, .errlen = sizeof(err), .mem_size = 16 << 20 };
	void *s1, *s2;
	cbor_item_t *m;
	struct { struct pci_func_state pci; struct virtio_state v; } *st;

	setup_queue(f, 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_F_EVENT_IDX);
	set_desc(f, RING, 0, BUFS, 16, VIRTQ_DESC_F_WRITE, 0);
	post(f, 0, 0);
	d = device_named(&f->vm, "virtio-rnd.3");
	ops = d->ops;
	assert_ptr_equal(device__find("virtio-rnd.3"), ops);
	assert_ptr_equal(device__find("virtio-rnd.3.1"), ops);
	assert_null(device__find("virtio-rnd.32"));
	assert_null(device__find("virtio-rnd.03"));
	assert_null(device__find("virtio-rnd"));
	assert_null(device__find("virtio-rnd.3.0"));
	s1 = calloc(1, ops->state_size);
	s2 = calloc(1, ops->state_size);
	ops->save(d->priv, s1);
	encode_decode(ops, &dec, s1, &b1, s2);
	setup_vm(&g, false);
	e = device_named(&g.vm, "virtio-rnd.3");
	assert_int_equal(ops->restore(e->priv, s2, err, sizeof(err)), 0);
	memset(s2, 0, ops->state_size);
	ops->save(e->priv, s2);
	ops->encode(&b2, s2);
	assert_int_equal(b1.len, b2.len);
	assert_memory_equal(b1.p, b2.p, b1.len);
	fakevm_down(&g);

	/* states no device could be in */
	st = s1;
	for (unsigned int i = 0; i < 7; i++) {
		ops->save(d->priv, s1);
		switch (i) {
		case 0: st->v.drv_features |= 1ULL << 40; break;		/* accepted, not offered */
		case 1: st->v.dev_features |= 1ULL << 50; break;		/* an offer we lack */
		case 2: st->v.q[0].size = 12; break;				/* not a power of two */
		case 3: st->v.q[0].size = 512; break;				/* above the maximum */
		case 4: st->v.q[0].desc = 0xF0000000ULL; break;			/* outside RAM */
		case 5: st->v.q[0].device = (16 << 20) - 16; break;		/* runs past RAM */
		case 6: st->pci.cfg[2] = 0x42; break;				/* another device */
		}
		b1.len = 0;
		ops->encode(&b1, s1);
		dec.ret = 0;
		err[0] = '\0';
		m = dec__load(&dec, b1.p, b1.len);
		ops->decode(&dec, m, ops->state_version, s2);
		cbor_decref(&m);
		if (!dec.ret)
			fail_msg("impossible state %u accepted", i);
		print_message("    refused: %s\n", err);
	}
	free(s1);
	free(s2);
	sbuf__free(&b1);
	sbuf__free(&b2);
}

/*
 * Where khyve put the function (its BARs, its INTx input) is in the section
 * from version 2 on: a restore that would put it elsewhere is refused by
 * name; a version 1 section, which has no record, restores as before.
 */
static void test_placement(void **state)
{
	struct fakevm *f = *state, g;
	struct device_instance *d, *e;
	const struct device_ops *ops;
	struct sbuf b = { 0 };
	char err[256];
	struct dec dec = { .section = "virtio-rnd.3", .err = err, .errlen = sizeof(err), .mem_size = 16 << 20 };
	struct { struct pci_func_state pci; } *s1, *s2;
	cbor_item_t *m;

	d = device_named(&f->vm, "virtio-rnd.3");
	ops = d->ops;
	assert_true(ops->state_version >= 2);
	s1 = calloc(1, ops->state_size);
	s2 = calloc(1, ops->state_size);
	ops->save(d->priv, s1);
	assert_true(s1->pci.placement);
	assert_true(s1->pci.nbars > 0);
	assert_int_equal(s1->pci.intx_gsi, pci__intx_gsi(SLOT, 0));
	setup_vm(&g, false);
	e = device_named(&g.vm, "virtio-rnd.3");

	for (unsigned int i = 0; i < 4; i++) {
		ops->save(d->priv, s1);
		switch (i) {
		case 0: break;						/* as placed */
		case 1: s1->pci.bars[0].addr += s1->pci.bars[0].size; break;	/* moved */
		case 2: s1->pci.intx_gsi ^= 1; break;			/* rewired */
		case 3: s1->pci.nbars--; break;				/* a BAR less */
		}
		b.len = 0;
		dec.ret = 0;
		encode_decode(ops, &dec, s1, &b, s2);
		assert_true(s2->pci.placement);
		err[0] = '\0';
		if (i == 0) {
			assert_int_equal(ops->restore(e->priv, s2, err, sizeof(err)), 0);
			continue;
		}
		assert_int_equal(ops->restore(e->priv, s2, err, sizeof(err)), -EINVAL);
		print_message("    refused: %s\n", err);
		assert_non_null(strstr(err, "virtio-rnd.3: "));
		assert_non_null(strstr(err, i == 2 ? "INTx" : "BAR"));
		/* read as version 1, the same bytes have no record: restored */
		b.len = 0;
		ops->encode(&b, s1);
		dec.ret = 0;
		m = dec__load(&dec, b.p, b.len);
		ops->decode(&dec, m, 1, s2);
		cbor_decref(&m);
		assert_int_equal(dec.ret, 0);
		assert_false(s2->pci.placement);
		assert_int_equal(ops->restore(e->priv, s2, err, sizeof(err)), 0);
	}

	/* records no placement could have */
	for (unsigned int i = 0; i < 4; i++) {
		ops->save(d->priv, s1);
		switch (i) {
		case 0: s1->pci.bars[0].index = 6; break;
		case 1: s1->pci.bars[0].addr += 8; break;			/* unaligned */
		case 2: s1->pci.bars[0].size = 3 << 12; break;		/* not a power of two */
		case 3: s1->pci.intx_gsi = 24; break;
		}
		b.len = 0;
		ops->encode(&b, s1);
		dec.ret = 0;
		err[0] = '\0';
		m = dec__load(&dec, b.p, b.len);
		ops->decode(&dec, m, ops->state_version, s2);
		cbor_decref(&m);
		if (!dec.ret)
			fail_msg("impossible placement %u accepted", i);
		print_message("    refused: %s\n", err);
	}
	fakevm_down(&g);
	free(s1);
	free(s2);
	sbuf__free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_enumeration, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_sizing_and_placement, setup, teardown),
		cmocka_unit_test_setup_teardown(test_capabilities, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pci_cfg_window, setup, teardown),
		cmocka_unit_test_setup_teardown(test_device_config, setup_cfgdev, teardown),
		cmocka_unit_test_setup_teardown(test_features_subset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rng_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_chains, setup, teardown),
		cmocka_unit_test_setup_teardown(test_event_idx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msix_mask_and_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_placement, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
