/*
 * What the PCI unit tests share (see pcihelp.h).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "khyve/bus.h"
#include "khyve/device.h"
#include "khyve/pci.h"
#include "khyve/virtio.h"
#include "khyve/vm.h"

#include "pcihelp.h"

char dev_name[] = "virtio-rnd";

/* the cfgdev of pcihelp.h */
static char cfgdev_name[] = "virtio-test-config";

struct cfgdev *g_cfgdev;

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

void setup_vm(struct fakevm *f, bool with_cfgdev)
{
	fakevm_init(f, &(struct fakevm_conf){ .name = dev_name, .slot = SLOT, .device = dev_name,
					       .ring = { RING }, .qsize = QSIZE, .qmax = 256 });
	if (with_cfgdev)
		f->cfg.slots[f->cfg.nslots++] = (struct slot_config){ .slot = CFG_SLOT, .device = cfgdev_name };
	fakevm_up(f);
}

int setup(void **state)
{
	struct fakevm *f = malloc(sizeof(*f));

	setup_vm(f, false);
	*state = f;
	return 0;
}

int setup_cfgdev(void **state)
{
	struct fakevm *f = malloc(sizeof(*f));

	setup_vm(f, true);
	*state = f;
	return 0;
}

int teardown(void **state)
{
	struct fakevm *f = *state;

	fakevm_down(f);
	free(f);
	return 0;
}

/* ---------- ECAM ---------- */

uint64_t ecam_rd(struct vm *vm, unsigned int dev, unsigned int fn, unsigned int reg, unsigned int len)
{
	uint64_t v = 0;

	bus__access(&vm->bus, BUS_MMIO, PCI_ECAM_BASE + (dev << 15 | fn << 12 | reg), (uint8_t *)&v, len, false);
	return v;
}
