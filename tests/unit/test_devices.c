/*
 * Every registered device with snapshot hooks, the Firecracker way:
 * drive the live device into a non-trivial state, save -> encode -> decode
 * -> restore into a freshly created device -> save -> encode, and require
 * the two encodings to be identical byte for byte.  No KVM is needed: the
 * devices are created on a VM that has a bus and a configuration only.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "khyve/device.h"
#include "khyve/pci.h"
#include "khyve/serial.h"
#include "khyve/snapfmt.h"
#include "khyve/util.h"
#include "khyve/vm.h"

#include "fakevm.h"

struct fake {
	struct vm vm;
	struct vm_config cfg;
};

static void fake_vm(struct fake *f)
{
	static char name[] = "t", rnd[] = "virtio-rnd";
	char err[256];

	memset(f, 0, sizeof(*f));
	f->cfg.name = name;
	f->cfg.ncpus = 1;
	f->cfg.mem_size = 16 << 20;
	f->cfg.com1 = CONSOLE_STDIO;	/* so vm.console lets us feed input */
	f->cfg.debug_exit = true;
	f->cfg.debug_exit_port = 0xf4;
	f->cfg.nslots = 1;		/* PCI: the bus, its host bridge and one virtio-rnd */
	f->cfg.slots[0] = (struct slot_config){ .slot = 3, .device = rnd };
	f->vm.cfg = &f->cfg;
	f->vm.kvm_fd = f->vm.vm_fd = f->vm.exit_efd = -1;
	f->vm.mem.src_fd = -1;
	atomic_store(&f->vm.exit_status, -1);
	bus__init(&f->vm.bus);
	if (device__init_all(&f->vm, err, sizeof(err)))
		fail_msg("device__init_all: %s", err);
}

static void out8(struct vm *vm, uint16_t port, uint8_t v)
{
	bus__access(&vm->bus, BUS_PIO, port, &v, 1, true);
}

static uint8_t in8(struct vm *vm, uint16_t port)
{
	uint8_t v = 0;

	bus__access(&vm->bus, BUS_PIO, port, &v, 1, false);
	return v;
}

/* Put every device with state somewhere far from its reset state. */
static void drive(struct vm *vm)
{
	static const uint8_t input[] = "hello";
	uint32_t bar;

	out8(vm, 0x3fb, 0x83);		/* LCR: DLAB */
	out8(vm, 0x3f8, 0x01);		/* DLL */
	out8(vm, 0x3f9, 0x00);		/* DLM */
	out8(vm, 0x3fb, 0x1b);		/* LCR: 8E1 */
	out8(vm, 0x3fa, 0xc7);		/* FCR: FIFO on, cleared, trigger 14 */
	out8(vm, 0x3f9, 0x05);		/* IER: RDI | RLSI */
	out8(vm, 0x3fc, 0x0b);		/* MCR: DTR RTS OUT2 */
	out8(vm, 0x3ff, 0x5a);		/* SCR */
	assert_int_equal(serial__input(vm->console, input, 5), 5);
	assert_int_equal(in8(vm, 0x3f8), 'h');	/* four bytes stay in the FIFO */
	out8(vm, 0x64, 0xd1);		/* i8042: output-port write pending */

	/* virtio-rnd at 00:03.0: memory decoding on, features and a queue set up
	 * (not enabled: this VM has no RAM for rings), an MSI-X entry written */
	out32(vm, 0xcf8, 0x80001810u);			/* BAR 0 */
	bar = in32(vm, 0xcfc) & ~0xfu;
	out32(vm, 0xcf8, 0x80001804u);
	out32(vm, 0xcfc, 0x0006);			/* memory, bus master */
	mem_wr(vm, bar + 0x14, 3, 1);			/* ACKNOWLEDGE | DRIVER */
	mem_wr(vm, bar + 0x08, 1, 4);
	mem_wr(vm, bar + 0x0c, 1, 4);			/* VERSION_1 */
	mem_wr(vm, bar + 0x14, 11, 1);			/* | FEATURES_OK */
	mem_wr(vm, bar + 0x18, 64, 2);
	mem_wr(vm, bar + 0x20, 0x10000, 4);
	mem_wr(vm, bar + 0x3000, 0xfee00000u, 4);	/* MSI-X entry 0 */
	mem_wr(vm, bar + 0x3008, 0x51, 4);
	/* the PCI bus: an address latched, its data access not yet done */
	out32(vm, 0xcf8, 0x80001808u);
}

static void encode(const struct device_ops *ops, const void *st, struct sbuf *b)
{
	b->len = 0;
	ops->encode(b, st);
	assert_int_equal(b->err, 0);
}

static struct device_instance *find(struct vm *vm, const char *name)
{
	for (struct device_instance *d = vm->devices; d; d = d->next)
		if (!strcmp(d->name, name))
			return d;
	return NULL;
}

static void test_round_trip_every_device(void **state)
{
	struct fake a, b, fresh;
	unsigned int tested = 0;

	(void)state;
	fake_vm(&a);
	fake_vm(&b);
	fake_vm(&fresh);
	drive(&a.vm);
	for (struct device_instance *d = a.vm.devices; d; d = d->next) {
		const struct device_ops *ops = d->ops;
		struct sbuf e1 = { 0 }, e3 = { 0 }, e0 = { 0 };
		struct dec dec = { .section = d->name };
		char err[256] = "";
		void *s1, *s2, *s3, *s0;
		cbor_item_t *m;

		if (!d->priv || !ops->save)
			continue;
		assert_non_null(ops->encode);
		assert_non_null(ops->decode);
		assert_non_null(ops->restore);
		dec.err = err;
		dec.errlen = sizeof(err);
		s0 = calloc(1, ops->state_size);
		s1 = calloc(1, ops->state_size);
		s2 = calloc(1, ops->state_size);
		s3 = calloc(1, ops->state_size);
		ops->save(d->priv, s1);
		encode(ops, s1, &e1);
		/* driving changed something, or the test proves nothing */
		ops->save(find(&fresh.vm, d->name)->priv, s0);
		encode(ops, s0, &e0);
		if (e0.len == e1.len && !memcmp(e0.p, e1.p, e1.len))
			fail_msg("device %s: driven state encodes like a fresh one", d->name);
		m = dec__load(&dec, e1.p, e1.len);
		assert_non_null(m);
		ops->decode(&dec, m, ops->state_version, s2);
		cbor_decref(&m);
		if (dec.ret)
			fail_msg("device %s: decode: %s", d->name, err);
		assert_int_equal(ops->restore(find(&b.vm, d->name)->priv, s2, err, sizeof(err)), 0);
		ops->save(find(&b.vm, d->name)->priv, s3);
		encode(ops, s3, &e3);
		assert_int_equal(e1.len, e3.len);
		if (memcmp(e1.p, e3.p, e1.len))
			fail_msg("device %s: save after restore differs", d->name);
		print_message("    %s: %zu bytes, round trip identical\n", d->name, e1.len);
		tested++;
		free(s0); free(s1); free(s2); free(s3);
		sbuf__free(&e0); sbuf__free(&e1); sbuf__free(&e3);
	}
	assert_true(tested >= 4);	/* uart.com1, i8042, pci, virtio-rnd.3 at least */
	device__exit_all(&a.vm);
	device__exit_all(&b.vm);
	device__exit_all(&fresh.vm);
}

/* A decoder must refuse what its device could never be in. */
static void test_decode_refuses_impossible_state(void **state)
{
	static const struct { const char *dev, *key; uint8_t val; } bad[] = {
		{ "uart.com1", "ier", 0xf0 }, { "uart.com1", "mcr", 0xe0 },
		{ "uart.com1", "irq_level", 2 }, { "i8042", "pending_cmd", 0x42 },
		{ "virtio-rnd.3", "isr", 0x80 }, { "virtio-rnd.3", "status", 0x20 },
		{ "virtio-rnd.3", "intx_level", 2 }, { "virtio-rnd.3", "msix_pending", 0x10 },
	};

	(void)state;
	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const struct device_ops *ops = device__find(bad[i].dev);
		struct fake f;
		struct sbuf e = { 0 }, patched = { 0 };
		struct dec dec = { .section = bad[i].dev };
		char err[256] = "", key[32];
		void *s = calloc(1, ops->state_size);
		uint8_t *at;
		cbor_item_t *m;

		assert_non_null(ops);
		fake_vm(&f);
		ops->save(find(&f.vm, bad[i].dev)->priv, s);
		encode(ops, s, &e);
		/* find "key" followed by 0x18 xx and change xx */
		snprintf(key, sizeof(key), "%c%s", (char)(0x60 + strlen(bad[i].key)), bad[i].key);
		at = memmem(e.p, e.len, key, strlen(key));
		assert_non_null(at);
		at += strlen(key);
		assert_int_equal(at[0], 0x18);
		at[1] = bad[i].val;
		dec.err = err;
		dec.errlen = sizeof(err);
		m = dec__load(&dec, e.p, e.len);
		assert_non_null(m);
		ops->decode(&dec, m, ops->state_version, s);
		cbor_decref(&m);
		if (!dec.ret)
			fail_msg("%s.%s = 0x%x was accepted", bad[i].dev, bad[i].key, bad[i].val);
		assert_non_null(strstr(err, bad[i].dev));
		free(s);
		sbuf__free(&e);
		sbuf__free(&patched);
		device__exit_all(&f.vm);
	}
}

/*
 * One registration per device type: every PCI device type's ops are in the
 * device registry (snapshots find sections there) exactly once, and carry
 * every snapshot hook unless the type says it is stateless.  A type whose
 * ops lack a hook, or that is registered twice, fails here.
 */
static void test_pci_types_carry_snapshot_ops(void **state)
{
	unsigned int ntypes = 0;

	(void)state;
	for (unsigned int i = 0; pci__type(i); i++) {
		const struct pci_devtype *t = pci__type(i);
		const struct device_ops *ops = t->ops;
		char section[DEVICE_NAME_MAX + 8];
		unsigned int found = 0;

		assert_non_null(ops);
		assert_non_null(ops->name);
		assert_null(ops->init);		/* the bus creates its instances */
		for (unsigned int k = 0; device__type(k); k++)
			found += device__type(k) == ops;
		if (found != 1)
			fail_msg("PCI type %s: its ops are in the device registry %u times, not once", ops->name, found);
		snprintf(section, sizeof(section), "%s.3", ops->name);
		assert_ptr_equal(device__find(section), ops);
		if (t->stateless) {
			if (ops->save || ops->encode || ops->decode || ops->restore || ops->state_size)
				fail_msg("PCI type %s is stateless but has snapshot hooks", ops->name);
			continue;
		}
		if (!ops->save || !ops->encode || !ops->decode || !ops->restore || !ops->state_size ||
		    !ops->state_version)
			fail_msg("PCI type %s lacks snapshot ops (save %d encode %d decode %d restore %d size %zu version %u)",
				 ops->name, !!ops->save, !!ops->encode, !!ops->decode, !!ops->restore, ops->state_size,
				 (unsigned int)ops->state_version);
		ntypes++;
	}
	assert_true(ntypes >= 4);	/* virtio-rnd, -console, -blk, -net at least */
	/* and no device type twice under one name */
	for (unsigned int i = 0; device__type(i); i++)
		for (unsigned int k = i + 1; device__type(k); k++)
			if (!strcmp(device__type(i)->name, device__type(k)->name))
				fail_msg("device type %s is registered twice", device__type(i)->name);
}

extern const struct device_reg __start_khyve_devices[];
extern const struct device_reg __stop_khyve_devices[];

/*
 * The registry in device order, whatever the link order: device__type walks
 * the sorted registry, and device__init_all created the instances in it.
 * The order is the one khyve had when it followed the link order, and the
 * sections of saved snapshots are in it.
 */
static void test_init_order_is_sorted(void **state)
{
	static const char *const want[] = {
		"uart.com1", "i8042", "debug-exit", "acpi-pm", "hostbridge", "pci",
		"virtio-rnd", "virtio-console", "virtio-net", "virtio-blk",
	};
	static const char *const created[] = {
		"uart.com1", "i8042", "debug-exit", "acpi-pm", "hostbridge.0", "virtio-rnd.3", "pci",
	};
	const struct device_reg *regs[64];
	size_t n = (size_t)(__stop_khyve_devices - __start_khyve_devices), i;
	struct device_instance *d;
	struct fake *f = malloc(sizeof(*f));

	(void)state;
	assert_true(n <= 64);
	assert_int_equal(n, ARRAY_SIZE(want));
	for (i = 0; i < n; i++)
		regs[i] = &__start_khyve_devices[i];
	device__sort(regs, n);
	for (i = 0; i < n; i++) {
		assert_ptr_equal(device__type((unsigned int)i), *regs[i]->ops);
		assert_string_equal(device__type((unsigned int)i)->name, want[i]);
		if (i)
			assert_true(regs[i - 1]->order < regs[i]->order);	/* no ties today */
	}
	assert_null(device__type((unsigned int)n));

	assert_non_null(f);
	fake_vm(f);
	for (i = 0, d = f->vm.devices; d; d = d->next, i++) {
		assert_true(i < ARRAY_SIZE(created));
		assert_string_equal(d->name, created[i]);
	}
	assert_int_equal(i, ARRAY_SIZE(created));
	device__exit_all(&f->vm);
	free(f);
}

/*
 * A link in another order hands device__sort another permutation: every
 * one must come out the same, ties by name, equal entries in place.
 */
static void test_sort_ignores_link_order(void **state)
{
	static const struct device_ops a = { .name = "a" }, b = { .name = "b" }, c = { .name = "c" };
	static const struct device_ops *const pa = &a, *const pb = &b, *const pc = &c;
	static const struct device_reg fake[] = {
		{ &pc, 10 }, { &pa, 20 }, { &pb, 20 }, { &pa, 30 }, { &pa, 30 },
	};
	const struct device_reg *regs[64], *want[64];
	size_t n = (size_t)(__stop_khyve_devices - __start_khyve_devices), i, j;

	(void)state;
	assert_true(n <= 64);
	for (i = 0; i < n; i++)
		want[i] = &__start_khyve_devices[i];
	device__sort(want, n);
	srand(11);
	for (unsigned int round = 0; round < 200; round++) {
		for (i = 0; i < n; i++)
			regs[i] = &__start_khyve_devices[i];
		for (i = n; i > 1; i--) {	/* Fisher-Yates */
			const struct device_reg *t;

			j = (size_t)rand() % i;
			t = regs[i - 1];
			regs[i - 1] = regs[j];
			regs[j] = t;
		}
		if (round == 0)		/* and the reverse of the link order */
			for (i = 0; i < n; i++)
				regs[i] = &__start_khyve_devices[n - 1 - i];
		device__sort(regs, n);
		for (i = 0; i < n; i++)
			assert_ptr_equal(regs[i], want[i]);
	}

	/* ties: by name whichever comes first; equal entries keep their places */
	regs[0] = &fake[4]; regs[1] = &fake[2]; regs[2] = &fake[3]; regs[3] = &fake[1]; regs[4] = &fake[0];
	device__sort(regs, 5);
	assert_ptr_equal(regs[0], &fake[0]);
	assert_ptr_equal(regs[1], &fake[1]);
	assert_ptr_equal(regs[2], &fake[2]);
	assert_ptr_equal(regs[3], &fake[4]);
	assert_ptr_equal(regs[4], &fake[3]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_every_device),
		cmocka_unit_test(test_decode_refuses_impossible_state),
		cmocka_unit_test(test_pci_types_carry_snapshot_ops),
		cmocka_unit_test(test_init_order_is_sorted),
		cmocka_unit_test(test_sort_ignores_link_order),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
