/*
 * virtio-blk driven the way a guest drives it (see test_pci.c,
 * test_vconsole.c), on a temporary disk image: options, identity and
 * configuration, every request type, the requests a driver gets wrong,
 * read-only disks, discard and write zeroes content, many requests in
 * flight and the pause that finishes them, reset, disk copies, and the
 * snapshot round trip with the disk's identity checked on restore.  Every
 * I/O test runs twice: on io_uring, and on the thread pool
 * (KHYVE_BLK_NO_URING=1).  The fake VM has no KVM, so notifications are
 * served on the notifying thread and completions on the device's I/O
 * thread, as in a VM without ioeventfd.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "khyve/config.h"
#include "khyve/device.h"
#include "khyve/pci.h"
#include "khyve/snapfmt.h"
#include "khyve/vblk.h"
#include "khyve/virtio.h"
#include "khyve/vm.h"

#include "fakevm.h"

#define SLOT 4
#define RING 0x100000ULL	/* desc table; avail at +0x1000, used at +0x2000 */
#define HDRS 0x110000ULL	/* 32 bytes per request: header, status at +16 */
#define TABLES 0x120000ULL	/* 64 bytes per request: an indirect table */
#define DATA 0x200000ULL	/* 8 KiB per request */
#define QSIZE 256
#define SECTORS 2048		/* a 1 MiB disk */
#define DISK_SIZE (SECTORS * 512)

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define T_GET_LIFETIME 10
#define T_DISCARD 11
#define T_WRITE_ZEROES 13
#define S_OK 0
#define S_IOERR 1
#define S_UNSUPP 2
#define F_RO 5
#define F_FLUSH 9
#define F_DISCARD 13
#define F_WRITE_ZEROES 14
#define RW_FEATURES (1u << 1 | 1u << 2 | 1u << 6 | 1u << F_FLUSH | 1u << F_DISCARD | 1u << F_WRITE_ZEROES)
#define RO_FEATURES (1u << 1 | 1u << 2 | 1u << 6 | 1u << F_FLUSH | 1u << F_RO)

struct ctx {
	struct fakevm f;	/* f.used: completions seen */
	char dir[64];		/* a temporary directory */
	char disk[128];		/* dir/disk.img */
};

static char vm_name[] = "vblk";
static char dev_name[] = "virtio-blk";
static bool pool;	/* this run is the thread pool's */

static uint8_t pattern(uint64_t off)
{
	return (uint8_t)((off >> 9) * 31 + (off & 511)) ^ 0x5a;
}

static void make_disk(const char *path, uint64_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	uint8_t buf[4096];

	assert_true(fd >= 0);
	for (uint64_t off = 0; off < size; off += sizeof(buf)) {
		for (unsigned int i = 0; i < sizeof(buf); i++)
			buf[i] = pattern(off + i);
		assert_int_equal(pwrite(fd, buf, sizeof(buf), (off_t)off), (ssize_t)sizeof(buf));
	}
	close(fd);
}

static void disk_read(const char *path, uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static bool disk_is(const char *path, uint64_t off, size_t len, int byte)
{
	uint8_t *buf = malloc(len);
	bool same = true;

	disk_read(path, off, buf, len);
	for (size_t i = 0; i < len; i++)
		same &= buf[i] == (byte < 0 ? pattern(off + i) : (uint8_t)byte);
	free(buf);
	return same;
}

/* The VM with opts after "virtio-blk,"; restoring: as khyve -r. */
static int setup_vm_err(struct fakevm *f, const char *opts, bool restoring, char *err, size_t errlen)
{
	int ret;

	fakevm_init(f, &(struct fakevm_conf){ .name = vm_name, .slot = SLOT, .device = dev_name, .opts = opts,
					       .restoring = restoring, .ring = { RING }, .qsize = QSIZE,
					       .qmax = 256 });
	ret = fakevm_start(f, err, errlen);
	if (!ret)
		fakevm_enable(f);
	return ret;
}

static void setup_vm(struct fakevm *f, const char *opts, bool restoring)
{
	char err[512];

	if (setup_vm_err(f, opts, restoring, err, sizeof(err)))
		fail_msg("device__init_all: %s", err);
}

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));

	snprintf(c->dir, sizeof(c->dir), "/tmp/khyve-vblk.XXXXXX");
	assert_non_null(mkdtemp(c->dir));
	snprintf(c->disk, sizeof(c->disk), "%s/disk.img", c->dir);
	make_disk(c->disk, DISK_SIZE);
	setup_vm(&c->f, c->disk, false);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	DIR *d;
	struct dirent *e;

	fakevm_down(&c->f);
	d = opendir(c->dir);
	while (d && (e = readdir(d))) {
		char p[400];

		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", c->dir, e->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(c->dir);
	free(c);
	return 0;
}

static struct pci_dev *pdev(struct fakevm *f)
{
	return device_named(&f->vm, "virtio-blk.4")->priv;
}

/* Negotiate features (VERSION_1, indirect descriptors and feat), set up queue 0, DRIVER_OK. */
static void drive(struct fakevm *f, uint32_t feat)
{
	fakevm_drive(f, 1ULL << VIRTIO_F_VERSION_1 | feat | 1u << VIRTIO_F_INDIRECT_DESC, 1);
	f->used = 0;
}

struct seg {
	uint64_t addr;
	uint32_t len;
	bool w;			/* device-writable */
};

/* A chain in descriptors head, head+1, ... of the ring's table. */
static void put_chain(struct fakevm *f, unsigned int head, const struct seg *s, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		set_desc(f, RING, head + i, s[i].addr, s[i].len,
			 (uint16_t)((s[i].w ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
			 (uint16_t)(head + i + 1));
}

/* A chain as an indirect table (TABLES + 64 * head) behind descriptor head. */
static void put_indirect(struct fakevm *f, unsigned int head, const struct seg *s, unsigned int n)
{
	uint64_t t = TABLES + 64 * head;

	assert_true(n <= 4);
	for (unsigned int i = 0; i < n; i++)
		set_desc(f, t, i, s[i].addr, s[i].len,
			 (uint16_t)((s[i].w ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
			 (uint16_t)(i + 1));
	set_desc(f, RING, head, t, 16 * n, VIRTQ_DESC_F_INDIRECT, 0);
}

/* Wait (5 s at most) until n more chains are used. */
static void wait_more(struct fakevm *f, unsigned int n)
{
	f->used = (uint16_t)(f->used + n);
	wait_used(f, 0, f->used);
}

static uint64_t hdr_at(unsigned int i)
{
	return HDRS + 32ULL * i;
}

static uint8_t *status_of(struct fakevm *f, unsigned int i)
{
	return gpa(f, hdr_at(i) + 16);
}

static void set_hdr(struct fakevm *f, unsigned int i, uint32_t type, uint64_t sector)
{
	uint8_t *h = gpa(f, hdr_at(i));
	uint32_t zero = 0;

	memcpy(h, &type, 4);
	memcpy(h + 4, &zero, 4);
	memcpy(h + 8, &sector, 8);
	h[16] = 0xee;	/* status: the device must overwrite it */
}

/*
 * One request the usual way (header, data, status in three descriptors),
 * waited for; returns its status.  Data at DATA for IN/OUT/GET_ID, the
 * ranges at DATA for DISCARD/WRITE_ZEROES.
 */
static uint8_t request(struct fakevm *f, uint32_t type, uint64_t sector, uint32_t len)
{
	bool in = type == T_IN || type == T_GET_ID;
	struct seg s[3] = {
		{ hdr_at(0), 16, false },
		{ DATA, len, in },
		{ hdr_at(0) + 16, 1, true },
	};

	set_hdr(f, 0, type, sector);
	if (len) {
		put_chain(f, 0, s, 3);
	} else {
		s[1] = s[2];
		put_chain(f, 0, s, 2);
	}
	post(f, 0, 0);
	wait_more(f, 1);
	assert_int_equal(used_id(f, 0, (uint16_t)(f->used - 1)), 0);
	return *status_of(f, 0);
}

static void set_range(struct fakevm *f, unsigned int k, uint64_t sector, uint32_t n, uint32_t flags)
{
	uint8_t *p = gpa(f, DATA + 16ULL * k);

	memcpy(p, &sector, 8);
	memcpy(p + 8, &n, 4);
	memcpy(p + 12, &flags, 4);
}

static void pause_vm(struct fakevm *f)
{
	char err[256];

	assert_int_equal(virtio__pause(pdev(f), err, sizeof(err)), 0);
}

static void resume_vm(struct fakevm *f)
{
	virtio__resume(pdev(f));
}

/* ---------- tests ---------- */

static void test_options(void **state)
{
	static const struct { const char *opts, *msg; } bad[] = {
		{ NULL, "virtio-blk needs a disk image" },
		{ "ro", "virtio-blk needs a disk image" },
		{ "serial=abc", "virtio-blk needs a disk image" },
		{ "disk.img,fast", "virtio-blk: unknown option 'fast'" },
		{ "disk.img,nocache", "virtio-blk: unknown option 'nocache'" },
		{ "path=a,b", "virtio-blk: unknown option 'b'" },
		{ "ro,disk.img", "virtio-blk: unknown option 'disk.img'" },
		{ "disk.img,path=x", "virtio-blk: more than one disk image" },
		{ "disk.img,,ro", "virtio-blk: empty option" },
		{ "disk.img,", "virtio-blk: empty option" },
		{ ",disk.img", "virtio-blk: empty option" },
		{ "disk.img,serial=123456789012345678901", "longer than 20 bytes" },
		{ "disk.img,serial=a\tb", "printable ASCII" },
		{ "disk.img,size=3", "virtio-blk: unknown option 'size=3'" },
	};
	static const char *const good[] = {
		"disk.img", "path=disk.img", "disk.img,ro", "path=disk.img,ro", "ro,path=disk.img",
		"disk.img,serial=12345678901234567890", "/dev/sdz,ro,serial=x",
	};
	char err[256];

	(void)state;
	for (unsigned int i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (pci__check_device("virtio-blk", good[i], err, sizeof(err)))
			fail_msg("'%s' refused: %s", good[i], err);
	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(pci__check_device("virtio-blk", bad[i].opts, err, sizeof(err)), -EINVAL);
		if (!strstr(err, bad[i].msg))
			fail_msg("'%s': '%s' lacks '%s'", bad[i].opts, err, bad[i].msg);
		assert_null(strchr(err, '\n'));
	}
}

static void test_init_errors(void **state)
{
	struct ctx *c = *state;
	struct fakevm g;
	char err[512], opts[300];

	fakevm_down(&c->f);
	snprintf(opts, sizeof(opts), "%s/missing.img", c->dir);
	assert_int_equal(setup_vm_err(&g, opts, false, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "virtio-blk: cannot open disk image '"));
	assert_non_null(strstr(err, "missing.img': No such file or directory"));
	assert_int_equal(setup_vm_err(&g, c->dir, false, err, sizeof(err)), -EISDIR);
	assert_non_null(strstr(err, "Is a directory"));
	snprintf(opts, sizeof(opts), "%s,ro", c->dir);
	assert_int_equal(setup_vm_err(&g, opts, false, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "is not a regular file or a block device"));
	assert_int_equal(setup_vm_err(&g, "/dev/null", false, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "is not a regular file or a block device"));
	/* one writer at a time: a second VM on the disk is refused while the first runs */
	setup_vm(&c->f, c->disk, false);
	assert_int_equal(setup_vm_err(&g, c->disk, false, err, sizeof(err)), -EBUSY);
	assert_non_null(strstr(err, "is in use by another process"));
	snprintf(opts, sizeof(opts), "%s,ro", c->disk);
	assert_int_equal(setup_vm_err(&g, opts, false, err, sizeof(err)), -EBUSY);
	/* readers share */
	fakevm_down(&c->f);
	setup_vm(&c->f, opts, false);
	setup_vm(&g, opts, false);
	fakevm_down(&g);
}

static void test_identity(void **state)
{
	struct ctx *c = *state;
	struct fakevm *f = &c->f;
	char opts[300];

	assert_int_equal(cfg_rd(&f->vm, SLOT, 0), 0x10421af4);	/* virtio 1.x block device */
	assert_int_equal(cfg_rd(&f->vm, SLOT, PCI_CLASS_PROG - 1) >> 16, 0x0100);
	assert_int_equal(mmio_rd(f, 0x12, 2), 1);		/* one queue */
	mmio_wr(f, 0x00, 0, 4);
	assert_int_equal(mmio_rd(f, 0x04, 4), RW_FEATURES | 3u << 28);
	mmio_wr(f, 0x00, 1, 4);
	assert_int_equal(mmio_rd(f, 0x04, 4), 1);		/* VERSION_1 */
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF, 8), SECTORS);		/* capacity */
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF, 4), SECTORS);
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF + 4, 4), 0);
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF + 8, 4), 1u << 20);	/* size_max */
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF + 12, 4), 128);		/* seg_max */
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF + 20, 4), 512);		/* blk_size */
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF + 36, 4), 65536);	/* max_discard_sectors */
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF + 40, 4), 32);		/* max_discard_seg */
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF + 44, 4), 8);		/* discard alignment */
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF + 48, 4), 65536);	/* max_write_zeroes_sectors */
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF + 52, 4), 32);
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF + 56, 1), 1);		/* write_zeroes_may_unmap */
	mmio_wr(f, VIRTIO_DEVCFG_OFF + 32, 1, 1);				/* writeback: not offered */
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF + 32, 1), 0);
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF + 60, 4), 0);		/* beyond: nothing */

	/* read-only: F_RO, no discard or write zeroes */
	fakevm_down(f);
	snprintf(opts, sizeof(opts), "path=%s,ro", c->disk);
	setup_vm(f, opts, false);
	mmio_wr(f, 0x00, 0, 4);
	assert_int_equal(mmio_rd(f, 0x04, 4), RO_FEATURES | 3u << 28);
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF + 36, 4), 0);

	/* a size that is no multiple of 512: rounded down */
	fakevm_down(f);
	assert_int_equal(truncate(c->disk, DISK_SIZE + 300), 0);
	setup_vm(f, c->disk, false);
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF, 8), SECTORS);
}

static void test_read_write(void **state)
{
	struct ctx *c = *state;
	struct fakevm *f = &c->f;
	uint8_t *d = gpa(f, DATA);

	drive(f, RW_FEATURES);
	/* read sectors 3-4 */
	memset(d, 0, 1024);
	assert_int_equal(request(f, T_IN, 3, 1024), S_OK);
	assert_int_equal(used_len(f, 0, 0), 1025);
	for (unsigned int i = 0; i < 1024; i++)
		assert_int_equal(d[i], pattern(3 * 512 + i));
	/* write sector 10, read it back from the file */
	memset(d, 0xab, 512);
	assert_int_equal(request(f, T_OUT, 10, 512), S_OK);
	assert_int_equal(used_len(f, 0, 1), 1);
	assert_true(disk_is(c->disk, 10 * 512, 512, 0xab));
	assert_true(disk_is(c->disk, 9 * 512, 512, -1));
	assert_true(disk_is(c->disk, 11 * 512, 512, -1));
	/* the last sector, both ways */
	memset(d, 0xcd, 512);
	assert_int_equal(request(f, T_OUT, SECTORS - 1, 512), S_OK);
	memset(d, 0, 512);
	assert_int_equal(request(f, T_IN, SECTORS - 1, 512), S_OK);
	assert_int_equal(d[0], 0xcd);
	assert_int_equal(d[511], 0xcd);
	/* zero-length transfers are fine */
	assert_int_equal(request(f, T_IN, SECTORS, 0), S_OK);

	/* no assumption about framing: header and data in one buffer, data and status in one */
	{
		uint8_t *h = gpa(f, DATA + 0x1000);
		uint32_t type = T_OUT;
		uint64_t sector = 20;
		struct seg s[3] = {
			{ DATA + 0x1000, 16 + 700, false },	/* header + first 700 bytes */
			{ DATA + 0x1800, 324, false },		/* the rest of two sectors */
			{ hdr_at(0) + 16, 1, true },
		};

		memset(h, 0, 16);
		memcpy(h, &type, 4);
		memcpy(h + 8, &sector, 8);
		memset(h + 16, 0x11, 700);
		memset(gpa(f, DATA + 0x1800), 0x22, 324);
		put_chain(f, 0, s, 3);
		post(f, 0, 0);
		wait_more(f, 1);
		assert_int_equal(*status_of(f, 0), S_OK);
		assert_true(disk_is(c->disk, 20 * 512, 700, 0x11));
		assert_true(disk_is(c->disk, 20 * 512 + 700, 324, 0x22));
	}
	{
		struct seg s[3] = {
			{ hdr_at(1), 8, false }, { hdr_at(1) + 8, 8, false },	/* a split header */
			{ DATA, 1025, true },					/* 2 sectors + status */
		};

		set_hdr(f, 1, T_IN, 20);
		memset(d, 0, 1025);
		d[1024] = 0xee;
		put_chain(f, 0, s, 3);
		post(f, 0, 0);
		wait_more(f, 1);
		assert_int_equal(d[1024], S_OK);
		assert_int_equal(used_len(f, 0, (uint16_t)(f->used - 1)), 1025);
		assert_int_equal(d[0], 0x11);
		assert_int_equal(d[699], 0x11);
		assert_int_equal(d[700], 0x22);
	}
	/* a large request in many buffers: 64 of 512 bytes, through an indirect table of... several chains */
	{
		struct seg s[66];

		s[0] = (struct seg){ hdr_at(0), 16, false };
		for (unsigned int i = 0; i < 64; i++) {
			s[1 + i] = (struct seg){ DATA + 0x10000 + 1024ULL * i, 512, true };
			memset(gpa(f, DATA + 0x10000 + 1024ULL * i), 0, 512);
		}
		s[65] = (struct seg){ hdr_at(0) + 16, 1, true };
		set_hdr(f, 0, T_IN, 100);
		put_chain(f, 0, s, 66);
		post(f, 0, 0);
		wait_more(f, 1);
		assert_int_equal(*status_of(f, 0), S_OK);
		for (unsigned int i = 0; i < 64; i++) {
			uint8_t *p = gpa(f, DATA + 0x10000 + 1024ULL * i);

			assert_int_equal(p[0], pattern((100 + i) * 512ULL));
			assert_int_equal(p[511], pattern((100 + i) * 512ULL + 511));
		}
	}
	assert_false(mmio_rd(f, 0x14, 1) & VIRTIO_S_NEEDS_RESET);
}

static void test_flush_get_id(void **state)
{
	struct ctx *c = *state;
	struct fakevm *f = &c->f;
	uint8_t *d = gpa(f, DATA);
	char opts[300], want[21];

	drive(f, RW_FEATURES);
	assert_int_equal(request(f, T_FLUSH, 0, 0), S_OK);
	assert_int_equal(used_len(f, 0, 0), 1);
	/* derived: KHYVE-XXXX-XXXX-XXXX, 20 bytes, no NUL */
	memset(d, 0xff, 32);
	assert_int_equal(request(f, T_GET_ID, 0, 20), S_OK);
	assert_int_equal(used_len(f, 0, 1), 21);
	assert_memory_equal(d, "KHYVE-", 6);
	assert_int_equal(d[10], '-');
	assert_int_equal(d[20], 0xff);
	memcpy(want, d, 20);
	want[20] = '\0';
	/* the same disk, the same ID */
	fakevm_down(f);
	setup_vm(f, c->disk, false);
	drive(f, RW_FEATURES);
	memset(d, 0, 32);
	assert_int_equal(request(f, T_GET_ID, 0, 20), S_OK);
	assert_memory_equal(d, want, 20);
	/* given: NUL-padded */
	fakevm_down(f);
	snprintf(opts, sizeof(opts), "%s,serial=disk-7", c->disk);
	setup_vm(f, opts, false);
	drive(f, RW_FEATURES);
	memset(d, 0xff, 32);
	assert_int_equal(request(f, T_GET_ID, 0, 20), S_OK);
	assert_memory_equal(d, "disk-7\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 20);
	/* a short buffer gets what fits */
	memset(d, 0xff, 32);
	assert_int_equal(request(f, T_GET_ID, 0, 4), S_OK);
	assert_int_equal(used_len(f, 0, 1), 5);
	assert_memory_equal(d, "disk\xff", 5);
	/* without FLUSH negotiated writes are write-through (RWF_DSYNC), and still work */
	drive(f, RW_FEATURES & ~(1u << F_FLUSH));
	memset(d, 0x3c, 1024);
	assert_int_equal(request(f, T_OUT, 30, 1024), S_OK);
	assert_true(disk_is(c->disk, 30 * 512, 1024, 0x3c));
}

static void test_bad_requests(void **state)
{
	struct ctx *c = *state;
	struct fakevm *f = &c->f;
	uint8_t *d = gpa(f, DATA);

	drive(f, RW_FEATURES);
	memset(d, 0x77, 4096);
	/* out of range: past the end, straddling it, wrapping around */
	assert_int_equal(request(f, T_OUT, SECTORS, 512), S_IOERR);
	assert_int_equal(request(f, T_OUT, SECTORS - 1, 1024), S_IOERR);
	assert_int_equal(request(f, T_IN, SECTORS - 1, 1024), S_IOERR);
	assert_int_equal(request(f, T_IN, ~0ULL, 512), S_IOERR);
	assert_int_equal(request(f, T_OUT, ~0ULL >> 9, 512), S_IOERR);
	/* not whole sectors */
	assert_int_equal(request(f, T_OUT, 0, 100), S_IOERR);
	assert_int_equal(request(f, T_IN, 0, 513), S_IOERR);
	/* unknown and unsupported types */
	assert_int_equal(request(f, 99, 0, 512), S_UNSUPP);
	assert_int_equal(request(f, T_GET_LIFETIME, 0, 16), S_UNSUPP);
	assert_int_equal(request(f, 14 /* secure erase */, 0, 16), S_UNSUPP);
	/* nothing was written */
	assert_true(disk_is(c->disk, 0, DISK_SIZE, -1));

	/* a header of 8 bytes */
	{
		struct seg s[2] = { { hdr_at(0), 8, false }, { hdr_at(0) + 16, 1, true } };

		set_hdr(f, 0, T_IN, 0);
		put_chain(f, 0, s, 2);
		post(f, 0, 0);
		wait_more(f, 1);
		assert_int_equal(*status_of(f, 0), S_IOERR);
	}
	/* the header in a device-writable buffer */
	{
		struct seg s[2] = { { hdr_at(0), 16, true }, { hdr_at(0) + 16, 1, true } };

		set_hdr(f, 0, T_IN, 0);
		put_chain(f, 0, s, 2);
		post(f, 0, 0);
		wait_more(f, 1);
		assert_int_equal(*status_of(f, 0), S_IOERR);
	}
	/* OUT with device-writable data before the status; IN with readable data */
	{
		struct seg s[3] = { { hdr_at(0), 16, false }, { DATA, 512, true }, { hdr_at(0) + 16, 1, true } };

		set_hdr(f, 0, T_OUT, 0);
		put_chain(f, 0, s, 3);
		post(f, 0, 0);
		wait_more(f, 1);
		assert_int_equal(*status_of(f, 0), S_IOERR);
		s[1].w = false;
		set_hdr(f, 0, T_IN, 0);
		put_chain(f, 0, s, 3);
		post(f, 0, 0);
		wait_more(f, 1);
		assert_int_equal(*status_of(f, 0), S_IOERR);
		/* a flush with data */
		set_hdr(f, 0, T_FLUSH, 0);
		put_chain(f, 0, s, 3);
		post(f, 0, 0);
		wait_more(f, 1);
		assert_int_equal(*status_of(f, 0), S_IOERR);
	}
	/* more buffers than seg_max */
	{
		struct seg s[131];

		s[0] = (struct seg){ hdr_at(0), 16, false };
		for (unsigned int i = 0; i < 129; i++)
			s[1 + i] = (struct seg){ DATA + 512ULL * i, 512, true };
		s[130] = (struct seg){ hdr_at(0) + 16, 1, true };
		set_hdr(f, 0, T_IN, 0);
		put_chain(f, 0, s, 131);
		post(f, 0, 0);
		wait_more(f, 1);
		assert_int_equal(*status_of(f, 0), S_IOERR);
	}
	assert_true(disk_is(c->disk, 0, DISK_SIZE, -1));
	assert_false(mmio_rd(f, 0x14, 1) & VIRTIO_S_NEEDS_RESET);
	/* no byte for the status at all: the device cannot answer, and needs a reset */
	{
		struct seg s[2] = { { hdr_at(0), 16, false }, { DATA, 512, false } };

		set_hdr(f, 0, T_OUT, 0);
		put_chain(f, 0, s, 2);
		post(f, 0, 0);
		assert_true(mmio_rd(f, 0x14, 1) & VIRTIO_S_NEEDS_RESET);
		assert_int_equal(used_idx(f, 0), f->used);
	}
	/* a reset brings it back */
	drive(f, RW_FEATURES);
	assert_false(mmio_rd(f, 0x14, 1) & VIRTIO_S_NEEDS_RESET);
	assert_int_equal(request(f, T_IN, 0, 512), S_OK);
	assert_true(disk_is(c->disk, 0, DISK_SIZE, -1));
}

static void test_read_only(void **state)
{
	struct ctx *c = *state;
	struct fakevm *f = &c->f;
	uint8_t *d = gpa(f, DATA);
	char opts[300];

	fakevm_down(f);
	assert_int_equal(chmod(c->disk, 0444), 0);
	snprintf(opts, sizeof(opts), "%s,ro", c->disk);
	setup_vm(f, opts, false);
	drive(f, RO_FEATURES);
	memset(d, 0x99, 1024);
	assert_int_equal(request(f, T_OUT, 0, 512), S_IOERR);
	assert_int_equal(request(f, T_IN, 1, 512), S_OK);
	assert_int_equal(d[0], pattern(512));
	assert_int_equal(request(f, T_FLUSH, 0, 0), S_OK);
	set_range(f, 0, 0, 8, 0);
	assert_int_equal(request(f, T_DISCARD, 0, 16), S_UNSUPP);	/* not offered */
	assert_int_equal(request(f, T_WRITE_ZEROES, 0, 16), S_UNSUPP);
	assert_true(disk_is(c->disk, 0, DISK_SIZE, -1));
	/* a driver may not take a feature that was not offered */
	mmio_wr(f, 0x14, 0, 1);
	mmio_wr(f, 0x14, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER, 1);
	mmio_wr(f, 0x08, 0, 4);
	mmio_wr(f, 0x0c, RO_FEATURES | 1u << F_DISCARD, 4);
	mmio_wr(f, 0x08, 1, 4);
	mmio_wr(f, 0x0c, 1, 4);
	mmio_wr(f, 0x14, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK, 1);
	assert_false(mmio_rd(f, 0x14, 1) & VIRTIO_S_FEATURES_OK);
	chmod(c->disk, 0644);
}

static blkcnt_t blocks(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_blocks;
}

static void test_discard_write_zeroes(void **state)
{
	struct ctx *c = *state;
	struct fakevm *f = &c->f;
	blkcnt_t before = blocks(c->disk);

	drive(f, RW_FEATURES);
	/* discard 64 KiB at sector 128: zeros, and the blocks go */
	set_range(f, 0, 128, 128, 0);
	assert_int_equal(request(f, T_DISCARD, 0, 16), S_OK);
	assert_true(disk_is(c->disk, 128 * 512, 65536, 0));
	assert_true(disk_is(c->disk, 127 * 512, 512, -1));
	assert_true(disk_is(c->disk, 256 * 512, 512, -1));
	assert_true(blocks(c->disk) < before);
	/* write zeroes, with and without unmap, two ranges in one request */
	set_range(f, 0, 300, 3, 0);
	set_range(f, 1, 400, 5, 1);
	assert_int_equal(request(f, T_WRITE_ZEROES, 0, 32), S_OK);
	assert_true(disk_is(c->disk, 300 * 512, 3 * 512, 0));
	assert_true(disk_is(c->disk, 303 * 512, 512, -1));
	assert_true(disk_is(c->disk, 400 * 512, 5 * 512, 0));
	assert_true(disk_is(c->disk, 405 * 512, 512, -1));
	/* what the specification refuses: unmap on a discard, unknown flags */
	set_range(f, 0, 500, 1, 1);
	assert_int_equal(request(f, T_DISCARD, 0, 16), S_UNSUPP);
	set_range(f, 0, 500, 1, 2);
	assert_int_equal(request(f, T_WRITE_ZEROES, 0, 16), S_UNSUPP);
	/* out of range, too long, too many ranges, bad lengths: nothing happens */
	set_range(f, 0, SECTORS - 1, 2, 0);
	assert_int_equal(request(f, T_WRITE_ZEROES, 0, 16), S_IOERR);
	set_range(f, 0, 500, 1, 0);
	set_range(f, 1, ~0ULL, 1, 0);
	assert_int_equal(request(f, T_DISCARD, 0, 32), S_IOERR);
	set_range(f, 0, 0, 65537, 0);
	assert_int_equal(request(f, T_DISCARD, 0, 16), S_IOERR);
	for (unsigned int i = 0; i < 33; i++)
		set_range(f, i, 500 + i, 1, 0);
	assert_int_equal(request(f, T_WRITE_ZEROES, 0, 33 * 16), S_IOERR);
	assert_int_equal(request(f, T_WRITE_ZEROES, 0, 20), S_IOERR);
	assert_int_equal(request(f, T_WRITE_ZEROES, 0, 0), S_IOERR);
	assert_true(disk_is(c->disk, 500 * 512, 40 * 512, -1));
	/* 32 ranges are fine */
	assert_int_equal(request(f, T_WRITE_ZEROES, 0, 32 * 16), S_OK);
	assert_true(disk_is(c->disk, 500 * 512, 32 * 512, 0));
	assert_true(disk_is(c->disk, 532 * 512, 512, -1));
	/* the edges of the disk */
	set_range(f, 0, SECTORS - 1, 1, 0);
	set_range(f, 1, 0, 1, 0);
	assert_int_equal(request(f, T_DISCARD, 0, 32), S_OK);
	assert_true(disk_is(c->disk, (SECTORS - 1) * 512, 512, 0));
	assert_true(disk_is(c->disk, 0, 512, 0));
	assert_true(disk_is(c->disk, 512, 512, -1));
	/* the file never grows */
	{
		struct stat st;

		assert_int_equal(stat(c->disk, &st), 0);
		assert_int_equal(st.st_size, DISK_SIZE);
	}
	/* not negotiated: unsupported */
	drive(f, RW_FEATURES & ~(1u << F_DISCARD | 1u << F_WRITE_ZEROES));
	set_range(f, 0, 700, 1, 0);
	assert_int_equal(request(f, T_DISCARD, 0, 16), S_UNSUPP);
	assert_int_equal(request(f, T_WRITE_ZEROES, 0, 16), S_UNSUPP);
	assert_true(disk_is(c->disk, 700 * 512, 512, -1));
}

/* n writes of 4 KiB (sector 8 * i, byte i + 1) as indirect chains, one kick */
static void post_writes(struct fakevm *f, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		struct seg s[3] = {
			{ hdr_at(i), 16, false },
			{ DATA + 4096ULL * i, 4096, false },
			{ hdr_at(i) + 16, 1, true },
		};

		set_hdr(f, i, T_OUT, 8ULL * i);
		memset(gpa(f, DATA + 4096ULL * i), (int)(i + 1), 4096);
		put_indirect(f, i, s, 3);
		make_avail(f, 0, (uint16_t)i);
	}
	kick(f, 0);
}

static void check_writes(struct ctx *c, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		if (*status_of(&c->f, i) != S_OK)
			fail_msg("request %u: status %u", i, *status_of(&c->f, i));
		if (!disk_is(c->disk, 4096ULL * i, 4096, (int)(i + 1)))
			fail_msg("request %u: not on the disk", i);
	}
}

static void test_many_in_flight(void **state)
{
	struct ctx *c = *state;
	struct fakevm *f = &c->f;
	bool seen[QSIZE] = { false };

	drive(f, RW_FEATURES);
	/* more than can be in flight at once: the rest waits in the avail ring */
	post_writes(f, 240);
	wait_more(f, 240);
	check_writes(c, 240);
	for (uint16_t k = 0; k < 240; k++) {
		uint32_t id = used_id(f, 0, k);

		assert_true(id < 240 && !seen[id]);
		seen[id] = true;
		assert_int_equal(used_len(f, 0, k), 1);
	}
	/* the disk is only 1 MiB: sector 8 * 240 is past it, so read back instead */
}

static void test_pause_finishes_everything(void **state)
{
	struct ctx *c = *state;
	struct fakevm *f = &c->f;

	drive(f, RW_FEATURES);
	post_writes(f, 200);
	/* at once: most are still in flight or not even taken */
	pause_vm(f);
	assert_int_equal(used_idx(f, 0), 200);
	check_writes(c, 200);
	/* nothing happens while paused, and the device works after */
	resume_vm(f);
	f->used = 200;
	memset(gpa(f, DATA), 0x42, 512);
	assert_int_equal(request(f, T_OUT, 1500, 512), S_OK);
	assert_true(disk_is(c->disk, 1500 * 512ULL, 512, 0x42));
	/* a pause with nothing to do */
	pause_vm(f);
	resume_vm(f);
}

static void test_reset_in_flight(void **state)
{
	struct ctx *c = *state;
	struct fakevm *f = &c->f;
	uint8_t ring[0x3000];

	drive(f, RW_FEATURES);
	post_writes(f, 200);
	mmio_wr(f, 0x14, 0, 1);		/* reset: it drains before returning */
	assert_int_equal(mmio_rd(f, 0x14, 1), 0);
	memcpy(ring, gpa(f, RING), sizeof(ring));
	usleep(20000);
	/* and nothing touches the old rings after */
	assert_memory_equal(ring, gpa(f, RING), sizeof(ring));
	drive(f, RW_FEATURES);
	assert_int_equal(request(f, T_IN, 0, 512), S_OK);
}

static bool files_equal(const char *a, const char *b)
{
	uint8_t x[4096], y[4096];
	int fa = open(a, O_RDONLY), fb = open(b, O_RDONLY);
	bool same = fa >= 0 && fb >= 0;

	for (;;) {
		ssize_t na = read(fa, x, sizeof(x)), nb = read(fb, y, sizeof(y));

		if (na != nb || (na > 0 && memcmp(x, y, (size_t)na))) {
			same = false;
			break;
		}
		if (na <= 0)
			break;
	}
	close(fa);
	close(fb);
	return same;
}

static void test_copy_disk(void **state)
{
	struct ctx *c = *state;
	struct fakevm *f = &c->f;
	char copy[200], err[256];
	int fd;

	/* a sparse image: data, a hole, data */
	fakevm_down(f);
	fd = open(c->disk, O_RDWR | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 8 << 20), 0);
	assert_int_equal(pwrite(fd, "head", 4, 0), 4);
	assert_int_equal(pwrite(fd, "tail", 4, (8 << 20) - 4), 4);
	close(fd);
	setup_vm(f, c->disk, false);
	drive(f, RW_FEATURES);
	memset(gpa(f, DATA), 0x31, 512);
	assert_int_equal(request(f, T_OUT, 4096, 512), S_OK);
	snprintf(copy, sizeof(copy), "%s/copy.img", c->dir);
	pause_vm(f);
	assert_int_equal(vblk__copy_disk(pdev(f), copy, err, sizeof(err)), 0);
	resume_vm(f);
	assert_true(files_equal(c->disk, copy));
	assert_true(blocks(copy) <= blocks(c->disk) + 8);	/* the holes stayed holes */
	assert_true(blocks(copy) < (8 << 20) / 512 / 4);
	/* over an older copy */
	assert_int_equal(vblk__copy_disk(pdev(f), copy, err, sizeof(err)), 0);
	assert_true(files_equal(c->disk, copy));
	/* a bad destination */
	snprintf(copy, sizeof(copy), "%s/no/such/dir", c->dir);
	assert_true(vblk__copy_disk(pdev(f), copy, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "cannot create disk copy"));
}

/* ---------- snapshots ---------- */

struct snap {
	const struct device_ops *ops;
	void *state;
	struct sbuf enc;
	uint8_t mem[0x130000 - RING];	/* the rings and headers, as "guest memory" */
};

static void take(struct fakevm *f, struct snap *s)
{
	struct device_instance *d;

	d = device_named(&f->vm, "virtio-blk.4");
	s->ops = d->ops;
	assert_ptr_equal(device__find("virtio-blk.4"), s->ops);
	s->state = calloc(1, s->ops->state_size);
	pause_vm(f);
	s->ops->save(d->priv, s->state);
	resume_vm(f);
	memset(&s->enc, 0, sizeof(s->enc));
	s->ops->encode(&s->enc, s->state);
	assert_int_equal(s->enc.err, 0);
	memcpy(s->mem, gpa(f, RING), sizeof(s->mem));
}

static void drop(struct snap *s)
{
	free(s->state);
	sbuf__free(&s->enc);
}

static int decode(const struct snap *s, void *out, char *err, size_t errlen)
{
	struct dec dec = { .section = "virtio-blk.4", .err = err, .errlen = errlen, .mem_size = 16 << 20 };
	cbor_item_t *m = dec__load(&dec, s->enc.p, s->enc.len);

	assert_non_null(m);
	s->ops->decode(&dec, m, s->ops->state_version, out);
	cbor_decref(&m);
	return dec.ret;
}

/* Restore s into a new VM with opts; 0 or the restore's error. */
static int restore_into(struct fakevm *g, const struct snap *s, const char *opts, bool overridden, bool force,
			const char *snapfile, char *err, size_t errlen)
{
	void *st = calloc(1, s->ops->state_size);
	int ret;

	setup_vm(g, opts, true);
	g->cfg.slots[0].overridden = overridden;
	g->cfg.force_disk = force;
	if (snapfile)
		g->cfg.restore = (char *)snapfile;
	memcpy(gpa(g, RING), s->mem, sizeof(s->mem));
	if (decode(s, st, err, errlen))
		fail_msg("decode: %s", err);
	ret = s->ops->restore(pdev(g), st, err, errlen);
	free(st);
	if (!ret)
		g->used = used_idx(g, 0);
	return ret;
}

static void test_snapshot_round_trip(void **state)
{
	struct ctx *c = *state;
	struct fakevm *f = &c->f, g;
	struct snap s1, s2;
	char err[512];

	drive(f, RW_FEATURES);
	post_writes(f, 50);
	take(f, &s1);		/* the pause finished all 50 */
	f->used = 50;
	check_writes(c, 50);
	fakevm_down(f);

	/* restore -> save: the same bytes */
	assert_int_equal(restore_into(&g, &s1, c->disk, false, false, NULL, err, sizeof(err)), 0);
	take(&g, &s2);
	assert_int_equal(s1.enc.len, s2.enc.len);
	assert_memory_equal(s1.enc.p, s2.enc.p, s1.enc.len);
	/* and its queue goes on where the saved one was */
	assert_int_equal(g.used, 50);
	memset(gpa(&g, DATA), 0, 4096);
	assert_int_equal(request(&g, T_IN, 8 * 7, 4096), S_OK);
	assert_int_equal(((uint8_t *)gpa(&g, DATA))[0], 8);
	assert_int_equal(used_idx(&g, 0), 51);
	drop(&s2);
	fakevm_down(&g);
	drop(&s1);
}

static void set_mtime(const char *path, long delta_ns)
{
	struct stat st;
	struct timespec ts[2];

	assert_int_equal(stat(path, &st), 0);
	ts[0] = st.st_atim;
	ts[1] = st.st_mtim;
	ts[1].tv_nsec += delta_ns;
	while (ts[1].tv_nsec >= 1000000000L) {
		ts[1].tv_nsec -= 1000000000L;
		ts[1].tv_sec++;
	}
	while (ts[1].tv_nsec < 0) {
		ts[1].tv_nsec += 1000000000L;
		ts[1].tv_sec--;
	}
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static void copy_file(const char *from, const char *to)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, to);
	assert_int_equal(system(cmd), 0);
}

static void test_restore_checks_disk(void **state)
{
	struct ctx *c = *state;
	struct fakevm *f = &c->f, g;
	struct snap s;
	char err[512], copy[200], opts[300];
	int fd;

	drive(f, RW_FEATURES);
	memset(gpa(f, DATA), 0x61, 512);
	assert_int_equal(request(f, T_OUT, 1, 512), S_OK);
	take(f, &s);
	fakevm_down(f);

	/* the modification time moved */
	set_mtime(c->disk, 1000);
	assert_int_equal(restore_into(&g, &s, c->disk, false, false, NULL, err, sizeof(err)), -EINVAL);
	fakevm_down(&g);
	if (!strstr(err, "changed since the snapshot (modification time); use --force-disk to restore anyway") ||
	    !strstr(err, c->disk))
		fail_msg("message: %s", err);
	assert_int_equal(restore_into(&g, &s, c->disk, false, true, NULL, err, sizeof(err)), 0);
	fakevm_down(&g);
	set_mtime(c->disk, -1000);
	assert_int_equal(restore_into(&g, &s, c->disk, false, false, NULL, err, sizeof(err)), 0);
	fakevm_down(&g);

	/* the content changed behind an unchanged modification time (a sampled block: the first) */
	{
		struct stat st;
		struct timespec ts[2];

		assert_int_equal(stat(c->disk, &st), 0);
		fd = open(c->disk, O_RDWR);
		assert_int_equal(pwrite(fd, "x", 1, 7), 1);
		close(fd);
		ts[0] = st.st_atim;
		ts[1] = st.st_mtim;
		assert_int_equal(utimensat(AT_FDCWD, c->disk, ts, 0), 0);
		assert_int_equal(restore_into(&g, &s, c->disk, false, false, NULL, err, sizeof(err)), -EINVAL);
		fakevm_down(&g);
		if (!strstr(err, "changed since the snapshot (content)"))
			fail_msg("message: %s", err);
		fd = open(c->disk, O_RDWR);
		assert_int_equal(pwrite(fd, &(uint8_t){ pattern(7) }, 1, 7), 1);
		close(fd);
		assert_int_equal(utimensat(AT_FDCWD, c->disk, ts, 0), 0);
		assert_int_equal(restore_into(&g, &s, c->disk, false, false, NULL, err, sizeof(err)), 0);
		fakevm_down(&g);
	}
	/* another file at the same path: a copy moved into place */
	snprintf(copy, sizeof(copy), "%s/moved.img", c->dir);
	copy_file(c->disk, copy);
	assert_int_equal(rename(copy, c->disk), 0);
	assert_int_equal(restore_into(&g, &s, c->disk, false, false, NULL, err, sizeof(err)), -EINVAL);
	fakevm_down(&g);
	if (!strstr(err, "(another file: device and inode, modification time)"))
		fail_msg("message: %s", err);

	/* a copy given with -s: the size and content must match, not the file */
	snprintf(copy, sizeof(copy), "%s/moved.img", c->dir);
	copy_file(c->disk, copy);
	assert_int_equal(restore_into(&g, &s, copy, true, false, NULL, err, sizeof(err)), 0);
	memset(gpa(&g, DATA), 0, 512);
	assert_int_equal(request(&g, T_IN, 1, 512), S_OK);
	assert_int_equal(((uint8_t *)gpa(&g, DATA))[0], 0x61);
	fakevm_down(&g);
	/* the same copy, changed in a sampled block (the last) */
	fd = open(copy, O_RDWR);
	assert_int_equal(pwrite(fd, "y", 1, DISK_SIZE - 1), 1);
	close(fd);
	assert_int_equal(restore_into(&g, &s, copy, true, false, NULL, err, sizeof(err)), -EINVAL);
	fakevm_down(&g);
	if (!strstr(err, "changed since the snapshot (content)") || !strstr(err, copy))
		fail_msg("message: %s", err);
	assert_int_equal(restore_into(&g, &s, copy, true, true, NULL, err, sizeof(err)), 0);
	fakevm_down(&g);
	/* another size: never, not even forced */
	assert_int_equal(truncate(copy, DISK_SIZE + 4096), 0);
	assert_int_equal(restore_into(&g, &s, copy, true, true, NULL, err, sizeof(err)), -EINVAL);
	fakevm_down(&g);
	if (!strstr(err, "has 2056 sectors, the snapshot's had 2048"))
		fail_msg("message: %s", err);
	/* read-only now, read-write then */
	snprintf(opts, sizeof(opts), "%s,ro", c->disk);
	assert_int_equal(restore_into(&g, &s, opts, true, true, NULL, err, sizeof(err)), -EINVAL);
	fakevm_down(&g);
	assert_non_null(strstr(err, "is read-only, but was read-write in the snapshot"));
	drop(&s);
}

static void test_restore_paths(void **state)
{
	struct ctx *c = *state;
	struct fakevm *f = &c->f, g;
	struct snap s;
	char err[512], snapfile[200], copy[200];
	void *st;

	drive(f, RW_FEATURES);
	take(f, &s);

	/* the snapshot's options name nothing here (a relative path elsewhere): the recorded path */
	fakevm_down(f);
	assert_int_equal(restore_into(&g, &s, "no-such-relative.img", false, false, NULL, err, sizeof(err)), 0);
	assert_int_equal(request(&g, T_IN, 0, 512), S_OK);
	assert_int_equal(((uint8_t *)gpa(&g, DATA))[0], pattern(0));
	fakevm_down(&g);

	/* a snapshot that carries a copy of its disk runs on the copy */
	setup_vm(f, c->disk, false);
	drive(f, RW_FEATURES);
	snprintf(snapfile, sizeof(snapfile), "%s/snap", c->dir);
	snprintf(copy, sizeof(copy), "%s/snap.disk.4", c->dir);
	drop(&s);
	take(f, &s);
	pause_vm(f);
	assert_int_equal(vblk__copy_disk(pdev(f), copy, err, sizeof(err)), 0);
	resume_vm(f);
	{
		char statefile[220];
		int fd;

		/* the save writes the state file after the copy */
		snprintf(statefile, sizeof(statefile), "%s.state", snapfile);
		fd = open(statefile, O_WRONLY | O_CREAT, 0600);
		assert_true(fd >= 0);
		close(fd);
	}
	vblk__set_copy(s.state, "snap.disk.4");
	sbuf__free(&s.enc);
	memset(&s.enc, 0, sizeof(s.enc));
	s.ops->encode(&s.enc, s.state);
	/* the original goes on changing */
	memset(gpa(f, DATA), 0x55, 512);
	assert_int_equal(request(f, T_OUT, 0, 512), S_OK);
	fakevm_down(f);
	assert_int_equal(restore_into(&g, &s, c->disk, false, false, snapfile, err, sizeof(err)), 0);
	memset(gpa(&g, DATA), 0, 512);
	assert_int_equal(request(&g, T_IN, 0, 512), S_OK);
	assert_int_equal(((uint8_t *)gpa(&g, DATA))[0], pattern(0));	/* the copy's */
	/* a write to an unsampled block (sector 8: block 1) */
	usleep(20000);
	memset(gpa(&g, DATA), 0x66, 512);
	assert_int_equal(request(&g, T_OUT, 8, 512), S_OK);
	assert_true(disk_is(copy, 4096, 512, 0x66));
	assert_true(disk_is(c->disk, 4096, 512, -1));
	fakevm_down(&g);
	/* that copy is no longer the snapshot's disk */
	assert_int_equal(restore_into(&g, &s, c->disk, false, false, snapfile, err, sizeof(err)), -EINVAL);
	fakevm_down(&g);
	if (!strstr(err, "snap.disk.4 changed since the snapshot (modification time); use --force-disk"))
		fail_msg("message: %s", err);
	assert_int_equal(restore_into(&g, &s, c->disk, false, true, snapfile, err, sizeof(err)), 0);
	fakevm_down(&g);
	/* overridden, the copy is not used */
	assert_int_equal(restore_into(&g, &s, c->disk, true, true, snapfile, err, sizeof(err)), 0);
	assert_int_equal(request(&g, T_IN, 0, 512), S_OK);
	assert_int_equal(((uint8_t *)gpa(&g, DATA))[0], 0x55);
	fakevm_down(&g);
	/* the copy is gone */
	unlink(copy);
	assert_int_equal(restore_into(&g, &s, c->disk, false, false, snapfile, err, sizeof(err)), -ENOENT);
	fakevm_down(&g);
	assert_non_null(strstr(err, "snap.disk.4': No such file or directory"));

	/* what decode refuses */
	st = calloc(1, s.ops->state_size);
	assert_int_equal(decode(&s, st, err, sizeof(err)), 0);
	{
		static const char *const bad_copy[] = { "../x", "/abs", "a/../b", "a//b", ".." };
		struct snap t = s;

		for (unsigned int i = 0; i < sizeof(bad_copy) / sizeof(bad_copy[0]); i++) {
			void *x = calloc(1, s.ops->state_size);

			memcpy(x, s.state, s.ops->state_size);
			vblk__set_copy(x, bad_copy[i]);
			memset(&t.enc, 0, sizeof(t.enc));
			s.ops->encode(&t.enc, x);
			assert_int_equal(decode(&t, st, err, sizeof(err)), -EINVAL);
			assert_non_null(strstr(err, "copy"));
			sbuf__free(&t.enc);
			free(x);
		}
	}
	drop(&s);
	free(st);
}

/* The encoded state with one u64 field's value replaced. */
static void test_decode_refuses(void **state)
{
	static const struct { const char *key; uint64_t val; const char *msg; } bad[] = {
		{ "capacity", 5, "capacity" },
		{ "size", 1000, "capacity" },
		{ "size", ~0ULL, "capacity" },
	};
	struct ctx *c = *state;
	struct snap s;
	char err[512];

	take(&c->f, &s);
	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct snap t = s;
		char key[32];
		uint8_t *at;
		void *st = calloc(1, s.ops->state_size);

		t.enc.p = malloc(s.enc.len);
		memcpy(t.enc.p, s.enc.p, s.enc.len);
		snprintf(key, sizeof(key), "%c%s", (char)(0x60 + strlen(bad[i].key)), bad[i].key);
		/* "size" is also a queue's: the disk's comes after "disk" */
		at = strcmp(bad[i].key, "size") ? t.enc.p : memmem(t.enc.p, t.enc.len, "\x64" "disk", 5);
		assert_non_null(at);
		at = memmem(at, t.enc.len - (size_t)(at - t.enc.p), key, strlen(key));
		assert_non_null(at);
		at += strlen(key);
		assert_int_equal(at[0], 0x1b);
		for (int k = 0; k < 8; k++)
			at[1 + k] = (uint8_t)(bad[i].val >> (56 - 8 * k));
		assert_int_equal(decode(&t, st, err, sizeof(err)), -EINVAL);
		if (!strstr(err, bad[i].msg))
			fail_msg("%s = %llu: '%s'", bad[i].key, (unsigned long long)bad[i].val, err);
		free(t.enc.p);
		free(st);
	}
	/* a relative path: the recorded path's leading '/' made an 'x' */
	{
		struct snap t = s;
		void *st = calloc(1, s.ops->state_size);
		uint8_t *at;

		t.enc.p = malloc(s.enc.len);
		memcpy(t.enc.p, s.enc.p, s.enc.len);
		at = memmem(t.enc.p, t.enc.len, c->disk, strlen(c->disk));
		assert_non_null(at);
		at[0] = 'x';
		assert_int_equal(decode(&t, st, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "not an absolute path"));
		free(t.enc.p);
		free(st);
	}
	drop(&s);
}

static void test_backend(void **state)
{
	DIR *d = opendir("/proc/self/task");
	unsigned int n = 0;

	(void)state;
	while (d && readdir(d))
		n++;
	closedir(d);
	/* ".", "..", main, the I/O thread, and with the pool its 4 workers */
	if (pool)
		assert_true(n >= 8);
}

#define IO_TESTS(prefix)								\
	cmocka_unit_test_setup_teardown(test_backend, setup, teardown),			\
	cmocka_unit_test_setup_teardown(test_init_errors, setup, teardown),		\
	cmocka_unit_test_setup_teardown(test_identity, setup, teardown),		\
	cmocka_unit_test_setup_teardown(test_read_write, setup, teardown),		\
	cmocka_unit_test_setup_teardown(test_flush_get_id, setup, teardown),		\
	cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),		\
	cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),		\
	cmocka_unit_test_setup_teardown(test_discard_write_zeroes, setup, teardown),	\
	cmocka_unit_test_setup_teardown(test_many_in_flight, setup, teardown),		\
	cmocka_unit_test_setup_teardown(test_pause_finishes_everything, setup, teardown), \
	cmocka_unit_test_setup_teardown(test_reset_in_flight, setup, teardown),		\
	cmocka_unit_test_setup_teardown(test_copy_disk, setup, teardown),		\
	cmocka_unit_test_setup_teardown(test_snapshot_round_trip, setup, teardown),	\
	cmocka_unit_test_setup_teardown(test_restore_checks_disk, setup, teardown),	\
	cmocka_unit_test_setup_teardown(test_restore_paths, setup, teardown),		\
	cmocka_unit_test_setup_teardown(test_decode_refuses, setup, teardown)

int main(void)
{
	const struct CMUnitTest common[] = {
		cmocka_unit_test(test_options),
	};
	const struct CMUnitTest io[] = { IO_TESTS(uring) };
	int failed;

	failed = cmocka_run_group_tests_name("virtio-blk", common, NULL, NULL);
	unsetenv(VBLK_ENV_NO_URING);
	failed += cmocka_run_group_tests_name("virtio-blk on io_uring", io, NULL, NULL);
	setenv(VBLK_ENV_NO_URING, "1", 1);
	pool = true;
	failed += cmocka_run_group_tests_name("virtio-blk on the thread pool", io, NULL, NULL);
	return failed;
}
