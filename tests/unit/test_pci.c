/*
 * PCI bus, virtio-pci transport, split virtqueues and virtio-rnd, driven
 * the way a guest drives them: configuration mechanism #1 on ports
 * 0xCF8/0xCFC, MMIO on the BAR, rings in (host-allocated) guest memory.
 * No KVM: interrupts are observed through ISR, INTx status and MSI-X PBA.
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

#include "fakevm.h"

#define SLOT 3
#define RING 0x100000ULL	/* desc table; avail at +0x1000, used at +0x2000 */
#define BUFS 0x200000ULL
#define QSIZE 8

static char dev_name[] = "virtio-rnd";

/*
 * A virtio device type with a device-specific configuration, registered in
 * this test binary only (khyve itself has no such device): 12 bytes, a
 * read-only 32-bit id at 0, a driver-writable 16-bit mode at 4, a byte at 6
 * and a 32-bit word at 8.
 */
#define CFG_SLOT 4
#define CFG_SIZE 12

static char cfgdev_name[] = "virtio-test-config";

struct cfgdev {
	struct virtio_dev vd;
	uint8_t cfg[CFG_SIZE];
	unsigned int reads, writes;	/* callbacks the transport made */
};

static struct cfgdev *g_cfgdev;

static void cfgdev_notify(struct virtio_dev *vd, unsigned int q)
{
	(void)vd; (void)q;
}

static void cfgdev_read(struct virtio_dev *vd, unsigned int off, uint8_t *data, unsigned int len)
{
	struct cfgdev *c = (struct cfgdev *)vd;

	assert_true(off + len <= CFG_SIZE && !(off & (len - 1)));
	c->reads++;
	memcpy(data, c->cfg + off, len);
}

static void cfgdev_write(struct virtio_dev *vd, unsigned int off, const uint8_t *data, unsigned int len)
{
	struct cfgdev *c = (struct cfgdev *)vd;

	assert_true(off + len <= CFG_SIZE && !(off & (len - 1)));
	c->writes++;
	if (off == 4 && len == 2)	/* only the mode is writable */
		memcpy(c->cfg + 4, data, 2);
}

static const struct virtio_type cfgdev_vtype = {
	.device_id = 63,
	.class_code = 0xff0000,
	.nqueues = 1,
	.queue_max = 16,
	.queue_notify = cfgdev_notify,
	.config_size = CFG_SIZE,
	.config_read = cfgdev_read,
	.config_write = cfgdev_write,
};

static int cfgdev_init(struct pci_dev *pd, const char *opts, char *err, size_t errlen)
{
	struct cfgdev *c = calloc(1, sizeof(*c));
	static const uint8_t init[CFG_SIZE] = { 0x44, 0x33, 0x22, 0x11, 0x66, 0x55, 0x77, 0, 0xdd, 0xcc, 0xbb, 0xaa };
	int ret;

	(void)opts; (void)err; (void)errlen;
	if (!c)
		return -ENOMEM;
	memcpy(c->cfg, init, sizeof(init));
	ret = virtio__init(pd, &c->vd, &cfgdev_vtype);
	if (ret) {
		free(c);
		return ret;
	}
	g_cfgdev = c;
	return 0;
}

static void cfgdev_exit(struct pci_dev *pd)
{
	free(pd->priv);
	g_cfgdev = NULL;
}

static const struct device_ops cfgdev_ops = { .name = cfgdev_name };
static const struct pci_devtype cfgdev_pci = { .ops = &cfgdev_ops, .init = cfgdev_init, .exit = cfgdev_exit };
PCI_DEVTYPE_REGISTER(cfgdev_pci, DEVICE_ORDER_TEST);

static void setup_vm(struct fakevm *f, bool with_cfgdev)
{
	fakevm_init(f, &(struct fakevm_conf){ .name = dev_name, .slot = SLOT, .device = dev_name,
					       .ring = { RING }, .qsize = QSIZE, .qmax = 256 });
	if (with_cfgdev)
		f->cfg.slots[f->cfg.nslots++] = (struct slot_config){ .slot = CFG_SLOT, .device = cfgdev_name };
	fakevm_up(f);
}

static int setup(void **state)
{
	struct fakevm *f = malloc(sizeof(*f));

	setup_vm(f, false);
	*state = f;
	return 0;
}

static int setup_cfgdev(void **state)
{
	struct fakevm *f = malloc(sizeof(*f));

	setup_vm(f, true);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fakevm *f = *state;

	fakevm_down(f);
	free(f);
	return 0;
}

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

static uint8_t *load(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	uint8_t *p;
	long n;

	if (!fp)
		fail_msg("cannot open %s (unit tests run from the source tree)", path);
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	rewind(fp);
	p = malloc((size_t)n);
	assert_non_null(p);
	assert_int_equal(fread(p, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	*len = (size_t)n;
	return p;
}

/*
 * A state file from the sections of secs (uart.com1 and i8042 left out:
 * their device models are not in this test binary, and play no part in
 * PCI), the configuration given nslots slots, a 'pci' section when pci,
 * and a virtio-rnd.3 section when rnd is not NULL; then parsed back as
 * phase one of a restore does.  0 or -errno with err.
 */
static int rebuild_pci(const uint8_t uuid[16], const struct snap_section *secs, unsigned int nsecs,
		       const struct slot_config *slots, unsigned int nslots, bool pci,
		       const struct device_ops *ops, const void *rnd, char *err, size_t errlen)
{
	struct sbuf img = { 0 }, pl = { 0 };
	struct snap_state back;
	unsigned int count = 0;
	int ret;

	snapfmt__header(&img, uuid);
	for (unsigned int i = 0; i < nsecs; i++) {
		uint32_t version = secs[i].version;

		if (!strcmp(secs[i].name, "uart.com1") || !strcmp(secs[i].name, "i8042"))
			continue;
		pl.len = 0;
		if (!strcmp(secs[i].name, "config")) {
			struct dec d = { .section = "config", .err = err, .errlen = errlen };
			struct vm_config c;
			cbor_item_t *m = dec__load(&d, secs[i].payload, secs[i].len);

			snapsec__decode_config_version(&d, m, version, &c);
			cbor_decref(&m);
			assert_int_equal(d.ret, 0);
			assert_int_equal(c.nslots, 0);
			for (unsigned int k = 0; k < nslots; k++)
				c.slots[k] = slots[k];
			c.nslots = nslots;
			snapsec__encode_config(&pl, &c);
			c.nslots = 0;	/* the slots' strings are the caller's */
			config__free(&c);
			version = CONFIG_VERSION;
		} else {
			sbuf__put(&pl, secs[i].payload, secs[i].len);
		}
		snapfmt__section(&img, secs[i].name, version, secs[i].flags, &pl);
		count++;
	}
	if (pci) {
		const struct device_ops *bus = device__find("pci");
		void *st = calloc(1, bus->state_size);	/* latch 0: valid */

		assert_non_null(st);
		pl.len = 0;
		bus->encode(&pl, st);
		free(st);
		snapfmt__section(&img, "pci", bus->state_version, SNAP_FLAG_REQUIRED, &pl);
		count++;
	}
	if (rnd) {
		pl.len = 0;
		ops->encode(&pl, rnd);
		snapfmt__section(&img, "virtio-rnd.3", ops->state_version, SNAP_FLAG_REQUIRED, &pl);
		count++;
	}
	snapfmt__finish(&img, count);
	assert_int_equal(img.err, 0);
	ret = snapsec__read_state(img.p, img.len, &back, err, errlen);
	if (!ret) {
		bool found = false;

		for (unsigned int i = 0; i < back.ndevs; i++)
			found |= !strcmp(back.devs[i].name, "virtio-rnd.3");
		assert_int_equal(found, rnd != NULL);
		snap_state__free(&back);
	}
	sbuf__free(&pl);
	sbuf__free(&img);
	return ret;
}

/* the 'pci' section exactly when there are slots, as khyve writes it */
static int rebuild(const uint8_t uuid[16], const struct snap_section *secs, unsigned int nsecs,
		   const struct slot_config *slots, unsigned int nslots, const struct device_ops *ops,
		   const void *rnd, char *err, size_t errlen)
{
	return rebuild_pci(uuid, secs, nsecs, slots, nslots, nslots > 0, ops, rnd, err, errlen);
}

/*
 * Phase one of a restore refuses, by name, a snapshot whose PCI sections
 * and configured slots disagree, before anything is built: a real state
 * file (tests/data/v1) given a virtio-rnd.3 section, a slot, or both.
 */
static void test_sections_match_slots(void **state)
{
	struct fakevm *f = *state;
	struct snap_section *secs = NULL;
	struct device_instance *d;
	unsigned int nsecs = 0;
	uint8_t uuid[16];
	uint32_t fmt;
	char err[256];
	size_t len;
	uint8_t *img = load("tests/data/v1/guest-2cpu.state", &len);
	struct slot_config slot3 = { .slot = 3, .device = dev_name }, slot4 = { .slot = 4, .device = dev_name };
	void *rnd;

	if (snapfmt__parse(img, len, &fmt, uuid, &secs, &nsecs, false, err, sizeof(err)))
		fail_msg("tests/data/v1/guest-2cpu.state: %s", err);
	for (d = f->vm.devices; d && strcmp(d->name, "virtio-rnd.3"); d = d->next)
		;
	assert_non_null(d);
	rnd = calloc(1, d->ops->state_size);
	assert_non_null(rnd);
	d->ops->save(d->priv, rnd);

	/* controls: neither, and both */
	if (rebuild(uuid, secs, nsecs, NULL, 0, d->ops, NULL, err, sizeof(err)))
		fail_msg("the sample without PCI: %s", err);
	if (rebuild(uuid, secs, nsecs, &slot3, 1, d->ops, rnd, err, sizeof(err)))
		fail_msg("slot 3 and its section: %s", err);
	/* a slot 3 in the configuration, no section for it */
	assert_int_equal(rebuild(uuid, secs, nsecs, &slot3, 1, d->ops, NULL, err, sizeof(err)), -EINVAL);
	print_message("    refused: %s\n", err);
	assert_string_equal(err, "required section 'virtio-rnd.3' is missing");
	/* the section without the slot */
	assert_int_equal(rebuild(uuid, secs, nsecs, NULL, 0, d->ops, rnd, err, sizeof(err)), -EINVAL);
	print_message("    refused: %s\n", err);
	assert_string_equal(err, "section 'virtio-rnd.3' names no PCI function of section 'config'");
	/* the section for another slot than the configured one */
	assert_int_equal(rebuild(uuid, secs, nsecs, &slot4, 1, d->ops, rnd, err, sizeof(err)), -EINVAL);
	print_message("    refused: %s\n", err);
	assert_string_equal(err, "section 'virtio-rnd.3' names no PCI function of section 'config'");
	/* the PCI bus's own section: missing with slots, extra without */
	assert_int_equal(rebuild_pci(uuid, secs, nsecs, &slot3, 1, false, d->ops, rnd, err, sizeof(err)), -EINVAL);
	print_message("    refused: %s\n", err);
	assert_string_equal(err, "required section 'pci' is missing");
	assert_int_equal(rebuild_pci(uuid, secs, nsecs, NULL, 0, true, d->ops, NULL, err, sizeof(err)), -EINVAL);
	print_message("    refused: %s\n", err);
	assert_string_equal(err, "section 'pci' names no device of section 'config'");
	free(rnd);
	free(secs);
	free(img);
}

static int parse(struct vm_config *c, const char *s1, const char *s2)
{
	char *argv[] = { (char *)"khyve", (char *)"-k", (char *)"k", (char *)"-s", (char *)s1,
			 (char *)"-s", (char *)s2, (char *)"vm", NULL };
	int argc = 8;

	if (!s2) {
		argv[5] = argv[7];
		argv[6] = NULL;
		argc = 6;
	}
	return config__parse(c, argc, argv);
}

static void test_slot_syntax(void **state)
{
	static const char *const bad[][2] = {
		{ "32,virtio-rnd", NULL }, { "3:8,virtio-rnd", NULL }, { "-1,virtio-rnd", NULL },
		{ "3", NULL }, { "3,", NULL }, { ",virtio-rnd", NULL }, { "3,virtio-foo", NULL },
		{ "3,virtio-rnd,bogus=1", NULL }, { "0,virtio-rnd", NULL }, { "3,hostbridge", NULL },
		{ "3:1,virtio-rnd", NULL }, { "3,virtio-rnd", "3:0,virtio-rnd" },
		{ "0,hostbridge,x", NULL },
	};
	struct vm_config c;

	(void)state;
	assert_int_equal(parse(&c, "3,virtio-rnd", "3:1,virtio-rnd"), 0);
	assert_int_equal(c.nslots, 2);
	assert_int_equal(c.slots[1].slot, 3);
	assert_int_equal(c.slots[1].func, 1);
	assert_string_equal(c.slots[1].device, "virtio-rnd");
	assert_null(c.slots[1].opts);
	assert_true(c.given & GIVEN_SLOTS);
	config__free(&c);
	assert_int_equal(parse(&c, "0,hostbridge", "0x1f:7,virtio-rnd"), -EINVAL);	/* no 31:0 */
	config__free(&c);
	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("    -s %s%s%s\n", bad[i][0], bad[i][1] ? " -s " : "", bad[i][1] ? bad[i][1] : "");
		assert_int_equal(parse(&c, bad[i][0], bad[i][1]), -EINVAL);
		config__free(&c);
	}
}

/* config version 2 records the slots; a version 1 payload (no slots) upgrades */
static void test_config_section(void **state)
{
	struct vm_config a, c;
	struct sbuf b = { 0 }, b2 = { 0 };
	char err[256];
	struct dec d = { .section = "config", .err = err, .errlen = sizeof(err) };
	static const uint8_t empty_slots[] = { 0x65, 's', 'l', 'o', 't', 's', 0x9f, 0xff };
	cbor_item_t *m;
	uint8_t *at;

	(void)state;
	assert_int_equal(parse(&a, "3,virtio-rnd", "0,hostbridge"), 0);
	snapsec__encode_config(&b, &a);
	m = dec__load(&d, b.p, b.len);
	snapsec__decode_config(&d, m, &c);
	cbor_decref(&m);
	if (d.ret)
		fail_msg("decode: %s", err);
	assert_int_equal(c.nslots, 2);
	assert_string_equal(c.slots[1].device, "hostbridge");
	snapsec__encode_config(&b2, &c);
	assert_int_equal(b.len, b2.len);
	assert_memory_equal(b.p, b2.p, b.len);
	config__free(&c);

	/* refused: a duplicate slot */
	free(a.slots[1].device);
	a.slots[1] = (struct slot_config){ .slot = 3, .device = strdup("virtio-rnd") };
	b.len = 0;
	snapsec__encode_config(&b, &a);
	m = dec__load(&d, b.p, b.len);
	snapsec__decode_config(&d, m, &c);
	cbor_decref(&m);
	assert_int_not_equal(d.ret, 0);
	assert_non_null(strstr(err, "duplicate PCI slot 3:0"));
	config__free(&c);
	config__free(&a);

	/* a version 1 payload: the same map without "slots" */
	memset(&a, 0, sizeof(a));
	assert_int_equal(parse(&a, "3,virtio-rnd", NULL), 0);
	a.nslots = 0;	/* what v1 could say */
	b.len = 0;
	snapsec__encode_config(&b, &a);
	at = memmem(b.p, b.len, empty_slots, sizeof(empty_slots));
	assert_non_null(at);
	memmove(at, at + sizeof(empty_slots), b.len - (size_t)(at - b.p) - sizeof(empty_slots));
	b.len -= sizeof(empty_slots);
	d.ret = 0;
	m = dec__load(&d, b.p, b.len);
	snapsec__decode_config_version(&d, m, 1, &c);
	assert_int_equal(d.ret, 0);
	assert_int_equal(c.nslots, 0);
	config__free(&c);
	snapsec__decode_config_version(&d, m, 2, &c);	/* at version 2 it is missing */
	assert_int_not_equal(d.ret, 0);
	cbor_decref(&m);
	config__free(&c);
	a.nslots = 1;
	config__free(&a);
	sbuf__free(&b);
	sbuf__free(&b2);
}

/* With PCI: bus 0 is PCI, ISA moves to bus 1, one level/low entry per INTx line */
static void test_mptable_pci(void **state)
{
	struct guest_mem mem;
	struct vm_config c;
	struct mptable_pci_irq irqs[CONFIG_MAX_SLOTS];
	const uint8_t *f, *h, *p, *end;
	unsigned int n, pci_bus = 0, isa_bus = 0, pci_ints = 0, isa_ints = 0;

	(void)state;
	assert_int_equal(parse(&c, "3,virtio-rnd", "3:1,virtio-rnd"), 0);
	n = pci__irq_routes(&c, irqs);
	assert_int_equal(n, 2);
	assert_int_equal(irqs[1].pin, 2);
	assert_int_equal(irqs[1].gsi, pci__intx_gsi(3, 1));
	memmap__layout(&mem, 16 << 20);
	assert_int_equal(memmap__alloc(&mem), 0);
	assert_int_equal(mptable__write_pci(&mem, 2, true, irqs, n), 0);
	f = memmap__gpa_to_hva(&mem, MPTABLE_ADDR, 16);
	assert_memory_equal(f, "_MP_", 4);
	h = f + 16;
	assert_int_equal(sum(h, h[4] | h[5] << 8), 0);
	end = h + (h[4] | h[5] << 8);
	for (p = h + 44; p < end; p += p[0] == 0 ? 20 : 8) {
		if (p[0] == 1 && !memcmp(p + 2, "PCI", 3))
			pci_bus = 0x100 | p[1];
		if (p[0] == 1 && !memcmp(p + 2, "ISA", 3))
			isa_bus = 0x100 | p[1];
		if (p[0] == 3 && p[4] == 0 && (isa_bus & 0xff) != 0) {
			/* PCI: device 3 INTA/INTB, level and active low, pins 16-23 */
			assert_int_equal(p[2], 0xf);
			assert_int_equal(p[5] >> 2, 3);
			assert_true(p[7] >= 16 && p[7] < 24);
			pci_ints++;
		}
		if (p[0] == 3 && p[4] == 1)
			isa_ints++;
	}
	assert_int_equal(pci_bus, 0x100);
	assert_int_equal(isa_bus, 0x101);
	assert_int_equal(pci_ints, 2);
	assert_int_equal(isa_ints, 16);
	config__free(&c);
	memmap__free(&mem);
}

/* ---------- ECAM: the same configuration space as 0xCF8/0xCFC ---------- */

static uint64_t ecam_rd(struct vm *vm, unsigned int dev, unsigned int fn, unsigned int reg, unsigned int len)
{
	uint64_t v = 0;

	bus__access(&vm->bus, BUS_MMIO, PCI_ECAM_BASE + (dev << 15 | fn << 12 | reg), (uint8_t *)&v, len, false);
	return v;
}

static void ecam_wr(struct vm *vm, unsigned int dev, unsigned int fn, unsigned int reg, uint64_t v, unsigned int len)
{
	bus__access(&vm->bus, BUS_MMIO, PCI_ECAM_BASE + (dev << 15 | fn << 12 | reg), (uint8_t *)&v, len, true);
}

/* Mechanism #1 with any width at any offset of 0xCFC. */
static uint32_t cfc_rd(struct vm *vm, unsigned int dev, unsigned int fn, unsigned int reg, unsigned int len)
{
	uint32_t v = 0;

	out32(vm, 0xcf8, 0x80000000u | dev << 11 | fn << 8 | (reg & 0xfc));
	bus__access(&vm->bus, BUS_PIO, 0xcfc + (reg & 3), (uint8_t *)&v, len, false);
	return v;
}

static void cfc_wr(struct vm *vm, unsigned int dev, unsigned int fn, unsigned int reg, uint32_t v, unsigned int len)
{
	out32(vm, 0xcf8, 0x80000000u | dev << 11 | fn << 8 | (reg & 0xfc));
	bus__access(&vm->bus, BUS_PIO, 0xcfc + (reg & 3), (uint8_t *)&v, len, true);
}

/* Every register of every function, present or not, at every width, both ways. */
static void test_ecam_equals_cf8(void **state)
{
	struct fakevm *f = *state;
	struct vm *vm = &f->vm;
	static const unsigned int devs[] = { 0, SLOT, CFG_SLOT, 5, 31 };

	for (unsigned int i = 0; i < ARRAY_SIZE(devs); i++) {
		for (unsigned int fn = 0; fn < 2; fn++) {
			for (unsigned int reg = 0; reg < 256; reg += 4) {
				uint32_t d = cfg_rd(vm, devs[i], reg | fn << 8);

				assert_int_equal(ecam_rd(vm, devs[i], fn, reg, 4), d);
				for (unsigned int b = 0; b < 4; b += 2)
					assert_int_equal(ecam_rd(vm, devs[i], fn, reg + b, 2), (d >> 8 * b) & 0xffff);
				for (unsigned int b = 0; b < 4; b++) {
					assert_int_equal(ecam_rd(vm, devs[i], fn, reg + b, 1), (d >> 8 * b) & 0xff);
					assert_int_equal(cfc_rd(vm, devs[i], fn, reg + b, 1), (d >> 8 * b) & 0xff);
				}
			}
		}
	}
	/* a write through one is seen through the other: command, BAR sizing */
	ecam_wr(vm, SLOT, 0, PCI_COMMAND, 0, 2);
	assert_int_equal(cfg_rd(vm, SLOT, PCI_COMMAND) & 0xffff, 0);
	cfc_wr(vm, SLOT, 0, PCI_COMMAND, PCI_CMD_MEM, 2);
	assert_int_equal(ecam_rd(vm, SLOT, 0, PCI_COMMAND, 2), PCI_CMD_MEM);
	ecam_wr(vm, SLOT, 0, PCI_BAR0, 0xffffffff, 4);
	assert_int_equal(cfg_rd(vm, SLOT, PCI_BAR0), (uint32_t)~(VIRTIO_BAR_SIZE - 1));
	assert_int_equal(mmio_rd(f, 0x12, 2), 0xffff);		/* moved: no decoding */
	ecam_wr(vm, SLOT, 0, PCI_BAR0 + 2, f->bar >> 16, 2);	/* a 2-byte write of the upper half */
	ecam_wr(vm, SLOT, 0, PCI_BAR0, f->bar & 0xffff, 2);
	assert_int_equal(ecam_rd(vm, SLOT, 0, PCI_BAR0, 4), f->bar);
	assert_int_equal(mmio_rd(f, 0x12, 2), 1);		/* num_queues */
	ecam_wr(vm, SLOT, 0, PCI_INT_LINE, 0x42, 1);
	assert_int_equal(cfc_rd(vm, SLOT, 0, PCI_INT_LINE, 1), 0x42);
}

/* Widths, alignment, the extended space and what lies outside bus 0's 1 MiB. */
static void test_ecam_odd_accesses(void **state)
{
	struct fakevm *f = *state;
	struct vm *vm = &f->vm;
	uint32_t cmd = cfg_rd(vm, SLOT, PCI_COMMAND) & 0xffff;
	uint64_t v;

	/* misaligned or not 1, 2 or 4 bytes: all-ones, for a function that exists too */
	assert_int_equal(ecam_rd(vm, SLOT, 0, 1, 2), 0xffff);
	assert_int_equal(ecam_rd(vm, SLOT, 0, 2, 4), 0xffffffff);
	assert_int_equal(ecam_rd(vm, SLOT, 0, 0, 3), 0xffffff);
	assert_int_equal(ecam_rd(vm, SLOT, 0, 0, 8), UINT64_MAX);
	assert_int_equal(cfc_rd(vm, SLOT, 0, 1, 2), 0xffff);	/* 0xCFD, 2 bytes */
	assert_int_equal(cfc_rd(vm, SLOT, 0, 2, 4), 0xffffffff);	/* 0xCFE, 4 bytes */
	/* ... and writes nothing */
	ecam_wr(vm, SLOT, 0, PCI_COMMAND + 1, 0, 2);
	ecam_wr(vm, SLOT, 0, PCI_COMMAND, 0, 8);
	ecam_wr(vm, SLOT, 0, PCI_COMMAND, 0, 3);
	cfc_wr(vm, SLOT, 0, PCI_COMMAND + 1, 0, 2);
	assert_int_equal(cfg_rd(vm, SLOT, PCI_COMMAND) & 0xffff, cmd);
	/* extended configuration space: zero where a function is, all-ones where none is */
	for (unsigned int reg = 0x100; reg < 0x1000; reg += 0x1fc) {
		assert_int_equal(ecam_rd(vm, SLOT, 0, reg, 4), 0);
		assert_int_equal(ecam_rd(vm, 0, 0, reg, 2), 0);
		assert_int_equal(ecam_rd(vm, 5, 0, reg, 4), 0xffffffff);
		assert_int_equal(ecam_rd(vm, SLOT, 1, reg, 4), 0xffffffff);
	}
	ecam_wr(vm, SLOT, 0, 0x100, 0x12345678, 4);
	assert_int_equal(ecam_rd(vm, SLOT, 0, 0x100, 4), 0);
	assert_int_equal(ecam_rd(vm, SLOT, 0, 0xffc, 4), 0);
	/* the last byte of the window, and the first beyond it */
	assert_int_equal(ecam_rd(vm, 31, 7, 0xfff, 1), 0xff);
	v = 0;
	bus__access(&vm->bus, BUS_MMIO, PCI_ECAM_BASE + PCI_ECAM_SIZE, (uint8_t *)&v, 4, false);
	assert_int_equal(v, 0xffffffff);
	/* the window is neither in the BARs' range nor under a BAR */
	assert_true(PCI_ECAM_BASE >= PCI_MMIO_END);
	assert_true(f->bar + VIRTIO_BAR_SIZE <= PCI_ECAM_BASE);
}

/* No -s: no PCI at all, ECAM included. */
static void test_ecam_only_with_pci(void **state)
{
	struct fakevm f;
	struct vm *vm = &f.vm;
	char err[256];
	uint32_t v = 0;

	(void)state;
	fakevm_init(&f, &(struct fakevm_conf){ .name = dev_name });	/* no slot */
	if (fakevm_start(&f, err, sizeof(err)))
		fail_msg("device__init_all: %s", err);
	bus__access(&vm->bus, BUS_MMIO, PCI_ECAM_BASE, (uint8_t *)&v, 4, false);
	assert_int_equal(v, 0xffffffff);
	for (unsigned int i = 0; i < vm->bus.n[BUS_MMIO]; i++)
		assert_false(vm->bus.ranges[BUS_MMIO][i].start == PCI_ECAM_BASE);
	fakevm_down(&f);
}

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
		cmocka_unit_test_setup_teardown(test_sections_match_slots, setup, teardown),
		cmocka_unit_test(test_slot_syntax),
		cmocka_unit_test(test_config_section),
		cmocka_unit_test(test_mptable_pci),
		cmocka_unit_test_setup_teardown(test_ecam_equals_cf8, setup_cfgdev, teardown),
		cmocka_unit_test_setup_teardown(test_ecam_odd_accesses, setup, teardown),
		cmocka_unit_test(test_ecam_only_with_pci),
		cmocka_unit_test(test_bar64_arguments),
		cmocka_unit_test(test_bar64),
		cmocka_unit_test_setup_teardown(test_msix_irqfd_routes, setup_fake_kvm, teardown_fake_kvm),
		cmocka_unit_test_setup_teardown(test_msix_routes_after_restore, setup_fake_kvm, teardown_fake_kvm),
		cmocka_unit_test_setup_teardown(test_msix_without_irqfd, setup_fake_kvm, teardown_fake_kvm),
		cmocka_unit_test(test_msix_irqfd_kvm),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
