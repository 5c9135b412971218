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

#include "fakevm.h"

#define SLOT 4
#define RING 0x100000ULL	/* desc table; avail at +0x1000, used at +0x2000 */
#define BUFS 0x200000ULL
#define QSIZE 8
#define TXQ 1

static char vm_name[] = "vcon";
static char dev_name[] = "virtio-console";
static char backend_file[108];	/* the file backend of the tests' VM */

/* restoring: as khyve -r (a file backend is not truncated at start-up) */
static void setup_vm_backend(struct fakevm *f, const char *kind, const char *path, bool restoring)
{
	char opts[128];

	snprintf(opts, sizeof(opts), "%s:%s", kind, path);
	fakevm_init(f, &(struct fakevm_conf){ .name = vm_name, .slot = SLOT, .device = dev_name, .opts = opts,
					       .restoring = restoring, .ring = { RING }, .qsize = QSIZE,
					       .qmax = 128 });
	fakevm_up(f);
}

static void setup_vm(struct fakevm *f, const char *path, bool restoring)
{
	setup_vm_backend(f, "file", path, restoring);
}

static int setup(void **state)
{
	struct fakevm *f = malloc(sizeof(*f));
	char path[] = "/tmp/khyve-vcon.XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, "stale", 5), 5);	/* a fresh start empties it */
	close(fd);
	snprintf(backend_file, sizeof(backend_file), "%s", path);
	setup_vm(f, path, false);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fakevm *f = *state;

	fakevm_down(f);
	unlink(backend_file);
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

/* indirect descriptors; queue q alone */
static void setup_queue(struct fakevm *f, unsigned int q)
{
	fakevm_drive(f, 1ULL << VIRTIO_F_VERSION_1 | 1u << VIRTIO_F_INDIRECT_DESC, 1u << q);
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
	struct fakevm *f = *state;
	char buf[16];

	assert_int_equal(cfg_rd(&f->vm, SLOT, 0), 0x10431af4);	/* virtio 1.x console */
	assert_int_equal(cfg_rd(&f->vm, SLOT, PCI_SUBSYS_VENDOR) >> 16, 0x40);
	assert_int_equal(mmio_rd(f, 0x12, 2), 2);		/* receiveq, transmitq */
	mmio_wr(f, 0x00, 0, 4);
	assert_int_equal(mmio_rd(f, 0x04, 4), 3u << 28);	/* no console features */
	/* configuration: cols, rows, max_nr_ports, emerg_wr all 0 */
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF, 4), 0);
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF + 4, 4), 0);
	mmio_wr(f, VIRTIO_DEVCFG_OFF + 8, 0x41, 4);		/* emerg_wr: not offered, ignored */
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF + 8, 4), 0);
	/* a fresh start truncated the stale file */
	assert_int_equal(file_content(backend_file, buf, sizeof(buf)), 0);
}

static void test_transmit(void **state)
{
	struct fakevm *f = *state;
	char buf[256];

	setup_queue(f, TXQ);
	memcpy(gpa(f, BUFS), "hello, ", 7);
	memcpy(gpa(f, BUFS + 0x100), "world\n", 6);
	set_desc(f, RING, 0, BUFS, 7, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, RING, 1, BUFS + 0x100, 6, 0, 0);
	post(f, TXQ, 0);
	assert_int_equal(used_idx(f, TXQ), 1);
	assert_int_equal(used_len(f, TXQ, 0), 0);	/* the device wrote nothing into it */
	/* an indirect table of two */
	memcpy(gpa(f, BUFS + 0x200), "abc", 3);
	memcpy(gpa(f, BUFS + 0x300), "def\n", 4);
	set_desc(f, BUFS + 0x800, 0, BUFS + 0x200, 3, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, BUFS + 0x800, 1, BUFS + 0x300, 4, 0, 0);
	set_desc(f, RING, 2, BUFS + 0x800, 32, VIRTQ_DESC_F_INDIRECT, 0);
	post(f, TXQ, 2);
	assert_int_equal(used_idx(f, TXQ), 2);
	assert_int_equal(file_content(backend_file, buf, sizeof(buf)), 20);
	assert_memory_equal(buf, "hello, world\nabcdef\n", 20);
	assert_false(mmio_rd(f, 0x14, 1) & VIRTIO_S_NEEDS_RESET);
}

static struct device_instance *find_dev(struct fakevm *f)
{
	return device_named(&f->vm, "virtio-console.4");
}

/* save -> encode -> decode -> restore -> save: the same bytes; the restored
 * device continues the file from the saved length, whatever it holds now. */
static void test_snapshot(void **state)
{
	struct fakevm *f = *state, g;
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
	encode_decode(ops, &dec, s1, &b1, s2);

	/* the saved VM went on writing; the restored one starts after "saved\n" */
	memcpy(gpa(f, BUFS), "later\n", 6);
	post(f, TXQ, 0);
	assert_int_equal(file_content(backend_file, buf, sizeof(buf)), 12);
	setup_vm(&g, backend_file, true);
	e = find_dev(&g);
	assert_int_equal(ops->restore(e->priv, s2, err, sizeof(err)), 0);
	assert_int_equal(file_content(backend_file, buf, sizeof(buf)), 6);
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
	assert_int_equal(file_content(backend_file, buf, sizeof(buf)), 12);
	assert_memory_equal(buf, "saved\nagain\n", 12);
	fakevm_down(&g);

	/* restored onto a missing file: zero bytes up to the saved length */
	unlink(backend_file);
	setup_vm(&g, backend_file, true);
	e = find_dev(&g);
	m = dec__load(&dec, b1.p, b1.len);
	ops->decode(&dec, m, ops->state_version, s2);
	cbor_decref(&m);
	assert_int_equal(ops->restore(e->priv, s2, err, sizeof(err)), 0);
	assert_int_equal(file_content(backend_file, buf, sizeof(buf)), 6);
	assert_memory_equal(buf, "\0\0\0\0\0\0", 6);
	fakevm_down(&g);

	sbuf__free(&b1);
	sbuf__free(&b2);
	free(s1);
	free(s2);
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
	struct fakevm *f = malloc(sizeof(*f)), g;
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
	wait_used(f, 0, 1);
	assert_int_equal(used_len(f, 0, 0), 3);
	assert_memory_equal(gpa(f, BUFS), "abc", 3);
	/* a buffer smaller than the input: the rest goes into the next one */
	assert_int_equal(write(peer, "0123456789", 10), 10);
	set_desc(f, RING, 1, BUFS + 0x100, 4, VIRTQ_DESC_F_WRITE, 0);
	post(f, 0, 1);
	wait_used(f, 0, 2);
	assert_int_equal(used_len(f, 0, 1), 4);
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
	wait_used(&g, 0, 3);
	assert_int_equal(used_len(&g, 0, 2), 6);
	assert_memory_equal(gpa(&g, BUFS + 0x200), "456789", 6);
	/* and it reads on from its own connection */
	assert_int_equal(write(peer2, "xy", 2), 2);
	set_desc(&g, RING, 3, BUFS + 0x300, 64, VIRTQ_DESC_F_WRITE, 0);
	post(&g, 0, 3);
	wait_used(&g, 0, 4);
	assert_memory_equal(gpa(&g, BUFS + 0x300), "xy", 2);
	assert_false(mmio_rd(&g, 0x14, 1) & VIRTIO_S_NEEDS_RESET);

	fakevm_down(&g);
	fakevm_down(f);
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
