/*
 * PCI in the VM's configuration: the -s syntax, the config section, the MP
 * table with PCI, and a restore's PCI sections against the configured
 * slots; then configuration space through ECAM, the same as through
 * 0xCF8/0xCFC (see test_pci.c).
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sections_match_slots, setup, teardown),
		cmocka_unit_test(test_slot_syntax),
		cmocka_unit_test(test_config_section),
		cmocka_unit_test(test_mptable_pci),
		cmocka_unit_test_setup_teardown(test_ecam_equals_cf8, setup_cfgdev, teardown),
		cmocka_unit_test_setup_teardown(test_ecam_odd_accesses, setup, teardown),
		cmocka_unit_test(test_ecam_only_with_pci),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
