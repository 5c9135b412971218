/*
 * virtio-console driven the way a guest drives it (see test_pci.c): option
 * checking, identity and configuration, transmit chains written to a file
 * backend in order, input from a socket backend delivered into receive
 * buffers (and held, across a snapshot too, while none is posted), and the
 * snapshot round trip with the file continued from the saved length.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "khyve/config.h"
#include "khyve/device.h"
#include "khyve/pci.h"
#include "khyve/snapfmt.h"
#include "khyve/virtio.h"
#include "khyve/vm.h"

#define SLOT 4
#define RING 0x100000ULL	/* desc table; avail at +0x1000, used at +0x2000 */
#define BUFS 0x200000ULL
#define QSIZE 8
#define TXQ 1

struct fake {
	struct vm vm;
	struct vm_config cfg;
	uint32_t bar;
	char path[108];
	char opts[128];
};

static char vm_name[] = "vcon";
static char dev_name[] = "virtio-console";

static void out32(struct vm *vm, uint16_t port, uint32_t v)
{
	bus__access(&vm->bus, BUS_PIO, port, (uint8_t *)&v, 4, true);
}

static uint32_t in32(struct vm *vm, uint16_t port)
{
	uint32_t v = 0;

	bus__access(&vm->bus, BUS_PIO, port, (uint8_t *)&v, 4, false);
	return v;
}

static uint32_t cfg_rd(struct vm *vm, unsigned int reg)
{
	out32(vm, 0xcf8, 0x80000000u | SLOT << 11 | reg);
	return in32(vm, 0xcfc);
}

static void cfg_wr(struct vm *vm, unsigned int reg, uint32_t v)
{
	out32(vm, 0xcf8, 0x80000000u | SLOT << 11 | reg);
	out32(vm, 0xcfc, v);
}

static uint64_t mmio_rd(struct fake *f, uint64_t off, unsigned int len)
{
	uint64_t v = 0;

	bus__access(&f->vm.bus, BUS_MMIO, f->bar + off, (uint8_t *)&v, len, false);
	return v;
}

static void mmio_wr(struct fake *f, uint64_t off, uint64_t v, unsigned int len)
{
	bus__access(&f->vm.bus, BUS_MMIO, f->bar + off, (uint8_t *)&v, len, true);
}

static void *gpa(struct fake *f, uint64_t a)
{
	return memmap__gpa_to_hva(&f->vm.mem, a, 1);
}

/* restoring: as khyve -r (a file backend is not truncated at start-up) */
static void setup_vm_backend(struct fake *f, const char *kind, const char *path, bool restoring)
{
	char err[256];

	memset(f, 0, sizeof(*f));
	snprintf(f->path, sizeof(f->path), "%s", path);
	snprintf(f->opts, sizeof(f->opts), "%s:%s", kind, path);
	f->cfg.name = vm_name;
	f->cfg.ncpus = 1;
	f->cfg.mem_size = 16 << 20;
	f->cfg.com1 = CONSOLE_NULL;
	f->cfg.restore = restoring ? vm_name : NULL;
	f->cfg.nslots = 1;
	f->cfg.slots[0] = (struct slot_config){ .slot = SLOT, .device = dev_name, .opts = f->opts };
	f->vm.cfg = &f->cfg;
	f->vm.kvm_fd = f->vm.vm_fd = f->vm.exit_efd = -1;
	f->vm.mem.src_fd = -1;
	bus__init(&f->vm.bus);
	memmap__layout(&f->vm.mem, f->cfg.mem_size);
	assert_int_equal(memmap__alloc(&f->vm.mem), 0);
	if (device__init_all(&f->vm, err, sizeof(err)))
		fail_msg("device__init_all: %s", err);
	f->bar = cfg_rd(&f->vm, PCI_BAR0) & ~0xfu;
	cfg_wr(&f->vm, PCI_COMMAND, PCI_CMD_MEM | PCI_CMD_MASTER);
}

static void setup_vm(struct fake *f, const char *path, bool restoring)
{
	setup_vm_backend(f, "file", path, restoring);
}

static int setup(void **state)
{
	struct fake *f = malloc(sizeof(*f));
	char path[] = "/tmp/khyve-vcon.XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, "stale", 5), 5);	/* a fresh start empties it */
	close(fd);
	setup_vm(f, path, false);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fake *f = *state;

	device__exit_all(&f->vm);
	memmap__free(&f->vm.mem);
	unlink(f->path);
	free(f);
	return 0;
}

static size_t file_content(const char *path, char *buf, size_t max)
{
	FILE *fp = fopen(path, "rb");
	size_t n;

	assert_non_null(fp);
	n = fread(buf, 1, max, fp);
	fclose(fp);
	return n;
}

static void setup_queue(struct fake *f, unsigned int q)
{
	uint8_t s;

	mmio_wr(f, 0x14, 0, 1);
	mmio_wr(f, 0x14, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER, 1);
	mmio_wr(f, 0x08, 0, 4);
	mmio_wr(f, 0x0c, 1u << VIRTIO_F_INDIRECT_DESC, 4);
	mmio_wr(f, 0x08, 1, 4);
	mmio_wr(f, 0x0c, 1, 4);
	mmio_wr(f, 0x14, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK, 1);
	s = (uint8_t)mmio_rd(f, 0x14, 1);
	assert_true(s & VIRTIO_S_FEATURES_OK);
	memset(gpa(f, RING), 0, 0x3000);
	mmio_wr(f, 0x16, q, 2);
	assert_int_equal(mmio_rd(f, 0x18, 2), 128);
	mmio_wr(f, 0x18, QSIZE, 2);
	mmio_wr(f, 0x20, RING, 8);
	mmio_wr(f, 0x28, RING + 0x1000, 8);
	mmio_wr(f, 0x30, RING + 0x2000, 8);
	mmio_wr(f, 0x1c, 1, 2);
	mmio_wr(f, 0x14, s | VIRTIO_S_DRIVER_OK, 1);
}

static void set_desc(struct fake *f, uint64_t table, unsigned int i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	uint8_t *d = gpa(f, table + 16 * i);

	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

static void post(struct fake *f, unsigned int q, uint16_t head)
{
	uint16_t *avail = gpa(f, RING + 0x1000);

	avail[2 + avail[1] % QSIZE] = head;
	avail[1]++;
	mmio_wr(f, VIRTIO_NOTIFY_OFF + VIRTIO_NOTIFY_MULT * q, q, 2);
}

static uint16_t used_idx(struct fake *f)
{
	return ((uint16_t *)gpa(f, RING + 0x2000))[1];
}

static uint32_t used_len(struct fake *f, unsigned int i)
{
	return ((uint32_t *)gpa(f, RING + 0x2000 + 4 + 8 * i))[1];
}

static void test_options(void **state)
{
	char err[256];

	(void)state;
	assert_int_equal(pci__check_device("virtio-console", "stdio", err, sizeof(err)), 0);
	assert_int_equal(pci__check_device("virtio-console", "file:/x", err, sizeof(err)), 0);
	assert_int_equal(pci__check_device("virtio-console", "socket:/x", err, sizeof(err)), 0);
	assert_int_equal(pci__check_device("virtio-console", NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "needs a backend"));
	assert_int_equal(pci__check_device("virtio-console", "tty", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unknown backend 'tty'"));
	assert_int_equal(pci__check_device("virtio-console", "file:", err, sizeof(err)), -EINVAL);
	assert_int_equal(pci__check_device("virtio-console", "socket:", err, sizeof(err)), -EINVAL);
	char longp[200] = "socket:/";
	memset(longp + 8, 'a', 150);
	assert_int_equal(pci__check_device("virtio-console", longp, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "too long"));
}

static void test_identity(void **state)
{
	struct fake *f = *state;
	char buf[16];

	assert_int_equal(cfg_rd(&f->vm, 0), 0x10431af4);	/* virtio 1.x console */
	assert_int_equal(cfg_rd(&f->vm, PCI_SUBSYS_VENDOR) >> 16, 0x40);
	assert_int_equal(mmio_rd(f, 0x12, 2), 2);		/* receiveq, transmitq */
	mmio_wr(f, 0x00, 0, 4);
	assert_int_equal(mmio_rd(f, 0x04, 4), 3u << 28);	/* no console features */
	/* configuration: cols, rows, max_nr_ports, emerg_wr all 0 */
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF, 4), 0);
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF + 4, 4), 0);
	mmio_wr(f, VIRTIO_DEVCFG_OFF + 8, 0x41, 4);		/* emerg_wr: not offered, ignored */
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF + 8, 4), 0);
	/* a fresh start truncated the stale file */
	assert_int_equal(file_content(f->path, buf, sizeof(buf)), 0);
}

static void test_transmit(void **state)
{
	struct fake *f = *state;
	char buf[256];

	setup_queue(f, TXQ);
	memcpy(gpa(f, BUFS), "hello, ", 7);
	memcpy(gpa(f, BUFS + 0x100), "world\n", 6);
	set_desc(f, RING, 0, BUFS, 7, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, RING, 1, BUFS + 0x100, 6, 0, 0);
	post(f, TXQ, 0);
	assert_int_equal(used_idx(f), 1);
	assert_int_equal(used_len(f, 0), 0);	/* the device wrote nothing into it */
	/* an indirect table of two */
	memcpy(gpa(f, BUFS + 0x200), "abc", 3);
	memcpy(gpa(f, BUFS + 0x300), "def\n", 4);
	set_desc(f, BUFS + 0x800, 0, BUFS + 0x200, 3, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, BUFS + 0x800, 1, BUFS + 0x300, 4, 0, 0);
	set_desc(f, RING, 2, BUFS + 0x800, 32, VIRTQ_DESC_F_INDIRECT, 0);
	post(f, TXQ, 2);
	assert_int_equal(used_idx(f), 2);
	assert_int_equal(file_content(f->path, buf, sizeof(buf)), 20);
	assert_memory_equal(buf, "hello, world\nabcdef\n", 20);
	assert_false(mmio_rd(f, 0x14, 1) & VIRTIO_S_NEEDS_RESET);
}

static struct device_instance *find_dev(struct fake *f)
{
	struct device_instance *d;

	for (d = f->vm.devices; d && strcmp(d->name, "virtio-console.4"); d = d->next)
		;
	assert_non_null(d);
	return d;
}

/* save -> encode -> decode -> restore -> save: the same bytes; the restored
 * device continues the file from the saved length, whatever it holds now. */
static void test_snapshot(void **state)
{
	struct fake *f = *state, g;
	struct device_instance *d, *e;
	const struct device_ops *ops;
	struct sbuf b1 = { 0 }, b2 = { 0 };
	char err[256], buf[256];
	struct dec dec = { .section = "virtio-console.4", .err = err, .errlen = sizeof(err), .mem_size = 16 << 20 };
	void *s1, *s2;
	cbor_item_t *m;

	setup_queue(f, TXQ);
	memcpy(gpa(f, BUFS), "saved\n", 6);
	set_desc(f, RING, 0, BUFS, 6, 0, 0);
	post(f, TXQ, 0);
	d = find_dev(f);
	ops = d->ops;
	assert_ptr_equal(device__find("virtio-console.4"), ops);
	s1 = calloc(1, ops->state_size);
	s2 = calloc(1, ops->state_size);
	ops->save(d->priv, s1);
	ops->encode(&b1, s1);
	m = dec__load(&dec, b1.p, b1.len);
	ops->decode(&dec, m, ops->state_version, s2);
	cbor_decref(&m);
	if (dec.ret)
		fail_msg("decode: %s", err);

	/* the saved VM went on writing; the restored one starts after "saved\n" */
	memcpy(gpa(f, BUFS), "later\n", 6);
	post(f, TXQ, 0);
	assert_int_equal(file_content(f->path, buf, sizeof(buf)), 12);
	setup_vm(&g, f->path, true);
	e = find_dev(&g);
	assert_int_equal(ops->restore(e->priv, s2, err, sizeof(err)), 0);
	assert_int_equal(file_content(f->path, buf, sizeof(buf)), 6);
	assert_memory_equal(buf, "saved\n", 6);
	memset(s2, 0, ops->state_size);
	ops->save(e->priv, s2);
	ops->encode(&b2, s2);
	assert_int_equal(b1.len, b2.len);
	assert_memory_equal(b1.p, b2.p, b1.len);
	/* and its queue goes on where the saved one was (the rings as saved) */
	memcpy(gpa(&g, RING), gpa(f, RING), 0x3000);
	((uint16_t *)gpa(&g, RING + 0x1000))[1] = 1;	/* avail idx when saved */
	((uint16_t *)gpa(&g, RING + 0x2000))[1] = 1;	/* used idx when saved */
	memcpy(gpa(&g, BUFS), "again\n", 6);
	set_desc(&g, RING, 1, BUFS, 6, 0, 0);
	post(&g, TXQ, 1);
	assert_int_equal(file_content(f->path, buf, sizeof(buf)), 12);
	assert_memory_equal(buf, "saved\nagain\n", 12);
	device__exit_all(&g.vm);
	memmap__free(&g.vm.mem);

	/* restored onto a missing file: zero bytes up to the saved length */
	unlink(f->path);
	setup_vm(&g, f->path, true);
	e = find_dev(&g);
	m = dec__load(&dec, b1.p, b1.len);
	ops->decode(&dec, m, ops->state_version, s2);
	cbor_decref(&m);
	assert_int_equal(ops->restore(e->priv, s2, err, sizeof(err)), 0);
	assert_int_equal(file_content(f->path, buf, sizeof(buf)), 6);
	assert_memory_equal(buf, "\0\0\0\0\0\0", 6);
	device__exit_all(&g.vm);
	memmap__free(&g.vm.mem);

	sbuf__free(&b1);
	sbuf__free(&b2);
	free(s1);
	free(s2);
}

/* Wait up to 2 s for the device's I/O thread to complete n receive buffers. */
static bool wait_used(struct fake *f, uint16_t n)
{
	for (int i = 0; i < 2000; i++) {
		if (__atomic_load_n((uint16_t *)gpa(f, RING + 0x2000) + 1, __ATOMIC_ACQUIRE) == n)
			return true;
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	}
	return false;
}

/* A listening socket at dir/s; returns its fd, and the path in path. */
static int listener(char *dir, char *path, size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_non_null(mkdtemp(dir));
	snprintf(path, len, "%s/s", dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 4), 0);
	return fd;
}

/* How many input bytes a saved state holds, read back from its encoding. */
static uint32_t held_len(const struct device_ops *ops, const void *st)
{
	char err[256];
	struct dec dec = { .section = "virtio-console.4", .err = err, .errlen = sizeof(err) };
	struct sbuf b = { 0 };
	uint8_t buf[8192];
	cbor_item_t *m;
	size_t n;

	ops->encode(&b, st);
	m = dec__load(&dec, b.p, b.len);
	n = dec__bytes_var(&dec, m, "rx_held", buf, sizeof(buf));
	cbor_decref(&m);
	sbuf__free(&b);
	assert_int_equal(dec.ret, 0);
	return (uint32_t)n;
}

static void test_receive(void **state)
{
	struct fake *f = malloc(sizeof(*f)), g;
	char dir[] = "/tmp/khyve-vcon.XXXXXX", path[108], err[256];
	struct dec dec = { .section = "virtio-console.4", .err = err, .errlen = sizeof(err), .mem_size = 16 << 20 };
	struct device_instance *d;
	const struct device_ops *ops;
	struct sbuf b = { 0 };
	int lfd = listener(dir, path, sizeof(path)), peer, peer2;
	uint32_t held = 0;
	void *st = NULL;
	cbor_item_t *m;

	(void)state;
	setup_vm_backend(f, "socket", path, false);
	peer = accept(lfd, NULL, NULL);
	assert_true(peer >= 0);
	/* typed before the driver is ready: held, then delivered */
	assert_int_equal(write(peer, "abc", 3), 3);
	setup_queue(f, 0);
	set_desc(f, RING, 0, BUFS, 64, VIRTQ_DESC_F_WRITE, 0);
	post(f, 0, 0);
	assert_true(wait_used(f, 1));
	assert_int_equal(used_len(f, 0), 3);
	assert_memory_equal(gpa(f, BUFS), "abc", 3);
	/* a buffer smaller than the input: the rest goes into the next one */
	assert_int_equal(write(peer, "0123456789", 10), 10);
	set_desc(f, RING, 1, BUFS + 0x100, 4, VIRTQ_DESC_F_WRITE, 0);
	post(f, 0, 1);
	assert_true(wait_used(f, 2));
	assert_int_equal(used_len(f, 1), 4);
	assert_memory_equal(gpa(f, BUFS + 0x100), "0123", 4);

	/* no buffer posted: "456789" stays held, and a snapshot keeps it */
	d = find_dev(f);
	ops = d->ops;
	st = calloc(1, ops->state_size);
	for (int i = 0; i < 2000 && held != 6; i++) {
		ops->save(d->priv, st);
		held = held_len(ops, st);
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	}
	assert_int_equal(held, 6);
	ops->encode(&b, st);
	memset(st, 0, ops->state_size);
	m = dec__load(&dec, b.p, b.len);
	ops->decode(&dec, m, ops->state_version, st);
	cbor_decref(&m);
	if (dec.ret)
		fail_msg("decode: %s", err);
	/* a section of version 1 holds no input */
	m = dec__load(&dec, b.p, b.len);
	ops->decode(&dec, m, 1, st);
	cbor_decref(&m);
	assert_int_equal(dec.ret, 0);
	held = held_len(ops, st);
	assert_int_equal(held, 0);
	m = dec__load(&dec, b.p, b.len);
	ops->decode(&dec, m, ops->state_version, st);
	cbor_decref(&m);

	/* restored elsewhere: the held input reaches the restored driver */
	setup_vm_backend(&g, "socket", path, true);
	peer2 = accept(lfd, NULL, NULL);
	assert_true(peer2 >= 0);
	memcpy(gpa(&g, RING), gpa(f, RING), 0x3000);
	assert_int_equal(find_dev(&g)->ops->restore(find_dev(&g)->priv, st, err, sizeof(err)), 0);
	set_desc(&g, RING, 2, BUFS + 0x200, 64, VIRTQ_DESC_F_WRITE, 0);
	post(&g, 0, 2);
	assert_true(wait_used(&g, 3));
	assert_int_equal(used_len(&g, 2), 6);
	assert_memory_equal(gpa(&g, BUFS + 0x200), "456789", 6);
	/* and it reads on from its own connection */
	assert_int_equal(write(peer2, "xy", 2), 2);
	set_desc(&g, RING, 3, BUFS + 0x300, 64, VIRTQ_DESC_F_WRITE, 0);
	post(&g, 0, 3);
	assert_true(wait_used(&g, 4));
	assert_memory_equal(gpa(&g, BUFS + 0x300), "xy", 2);
	assert_false(mmio_rd(&g, 0x14, 1) & VIRTIO_S_NEEDS_RESET);

	device__exit_all(&g.vm);
	memmap__free(&g.vm.mem);
	device__exit_all(&f->vm);
	memmap__free(&f->vm.mem);
	close(peer);
	close(peer2);
	close(lfd);
	unlink(path);
	rmdir(dir);
	sbuf__free(&b);
	free(st);
	free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_options),
		cmocka_unit_test_setup_teardown(test_identity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_transmit, setup, teardown),
		cmocka_unit_test(test_receive),
		cmocka_unit_test_setup_teardown(test_snapshot, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
