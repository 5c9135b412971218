/*
 * What the PCI unit tests share (tests/unit/pcihelp.c, linked into
 * test_pci, test_pci_config and test_pci_msix): the fake VM with a
 * virtio-rnd in slot SLOT, and with it, or not, a device type with a
 * device-specific configuration in CFG_SLOT; ECAM reads.
 */
#ifndef KHYVE_TESTS_PCIHELP_H
#define KHYVE_TESTS_PCIHELP_H

#include <stdbool.h>
#include <stdint.h>

#include "khyve/virtio.h"
#include "khyve/vm.h"

#include "fakevm.h"

#define SLOT 3
#define RING 0x100000ULL	/* desc table; avail at +0x1000, used at +0x2000 */
#define BUFS 0x200000ULL
#define QSIZE 8

extern char dev_name[];		/* "virtio-rnd" */

/*
 * A virtio device type with a device-specific configuration, registered in
 * the PCI test binaries only (khyve itself has no such device): 12 bytes,
 * a read-only 32-bit id at 0, a driver-writable 16-bit mode at 4, a byte
 * at 6 and a 32-bit word at 8.
 */
#define CFG_SLOT 4
#define CFG_SIZE 12

struct cfgdev {
	struct virtio_dev vd;
	uint8_t cfg[CFG_SIZE];
	unsigned int reads, writes;	/* callbacks the transport made */
};

extern struct cfgdev *g_cfgdev;

void setup_vm(struct fakevm *f, bool with_cfgdev);
/* cmocka set-ups and tear-down: a fake VM, without or with the cfgdev */
int setup(void **state);
int setup_cfgdev(void **state);
int teardown(void **state);

/* ECAM: a read of len bytes of reg of function fn of device dev on bus 0 */
uint64_t ecam_rd(struct vm *vm, unsigned int dev, unsigned int fn, unsigned int reg, unsigned int len);

#endif
