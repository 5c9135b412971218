/*
 * What the virtio-blk unit tests share (see vblkhelp.h).
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

static char vm_name[] = "vblk";
static char dev_name[] = "virtio-blk";
bool pool;

int group_uring(void **state)
{
	(void)state;
	unsetenv(VBLK_ENV_NO_URING);
	pool = false;
	return 0;
}

int group_pool(void **state)
{
	(void)state;
	setenv(VBLK_ENV_NO_URING, "1", 1);
	pool = true;
	return 0;
}

uint8_t pattern(uint64_t off)
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

bool disk_is(const char *path, uint64_t off, size_t len, int byte)
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
int setup_vm_err(struct fakevm *f, const char *opts, bool restoring, char *err, size_t errlen)
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

void setup_vm(struct fakevm *f, const char *opts, bool restoring)
{
	char err[512];

	if (setup_vm_err(f, opts, restoring, err, sizeof(err)))
		fail_msg("device__init_all: %s", err);
}

int setup(void **state)
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

int teardown(void **state)
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

struct pci_dev *pdev(struct fakevm *f)
{
	return device_named(&f->vm, "virtio-blk.4")->priv;
}

/* Negotiate features (VERSION_1, indirect descriptors and feat), set up queue 0, DRIVER_OK. */
void drive(struct fakevm *f, uint32_t feat)
{
	fakevm_drive(f, 1ULL << VIRTIO_F_VERSION_1 | feat | 1u << VIRTIO_F_INDIRECT_DESC, 1);
	f->used = 0;
}


/* A chain in descriptors head, head+1, ... of the ring's table. */
void put_chain(struct fakevm *f, unsigned int head, const struct seg *s, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		set_desc(f, RING, head + i, s[i].addr, s[i].len,
			 (uint16_t)((s[i].w ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
			 (uint16_t)(head + i + 1));
}

/* A chain as an indirect table (TABLES + 64 * head) behind descriptor head. */
void put_indirect(struct fakevm *f, unsigned int head, const struct seg *s, unsigned int n)
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
void wait_more(struct fakevm *f, unsigned int n)
{
	f->used = (uint16_t)(f->used + n);
	wait_used(f, 0, f->used);
}

uint64_t hdr_at(unsigned int i)
{
	return HDRS + 32ULL * i;
}

uint8_t *status_of(struct fakevm *f, unsigned int i)
{
	return gpa(f, hdr_at(i) + 16);
}

void set_hdr(struct fakevm *f, unsigned int i, uint32_t type, uint64_t sector)
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
uint8_t request(struct fakevm *f, uint32_t type, uint64_t sector, uint32_t len)
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

void set_range(struct fakevm *f, unsigned int k, uint64_t sector, uint32_t n, uint32_t flags)
{
	uint8_t *p = gpa(f, DATA + 16ULL * k);

	memcpy(p, &sector, 8);
	memcpy(p + 8, &n, 4);
	memcpy(p + 12, &flags, 4);
}

void pause_vm(struct fakevm *f)
{
	char err[256];

	assert_int_equal(virtio__pause(pdev(f), err, sizeof(err)), 0);
}

void resume_vm(struct fakevm *f)
{
	virtio__resume(pdev(f));
}

/* n writes of 4 KiB (sector 8 * i, byte i + 1) as indirect chains, one kick */
void post_writes(struct fakevm *f, unsigned int n)
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

void check_writes(struct ctx *c, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		if (*status_of(&c->f, i) != S_OK)
			fail_msg("request %u: status %u", i, *status_of(&c->f, i));
		if (!disk_is(c->disk, 4096ULL * i, 4096, (int)(i + 1)))
			fail_msg("request %u: not on the disk", i);
	}
}
