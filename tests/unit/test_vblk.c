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
 * thread, as in a VM without ioeventfd.  The snapshot tests are in
 * test_vblk_snap.c; what the two share in vblkhelp.c.
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

#include "vblkhelp.h"

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
	cmocka_unit_test_setup_teardown(test_copy_disk, setup, teardown)

int main(void)
{
	const struct CMUnitTest common[] = {
		cmocka_unit_test(test_options),
	};
	const struct CMUnitTest io[] = { IO_TESTS(uring) };
	int failed;

	failed = cmocka_run_group_tests_name("virtio-blk", common, NULL, NULL);
	failed += cmocka_run_group_tests_name("virtio-blk on io_uring", io, group_uring, NULL);
	failed += cmocka_run_group_tests_name("virtio-blk on the thread pool", io, group_pool, NULL);
	return failed;
}
