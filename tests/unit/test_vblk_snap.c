/*
 * virtio-blk snapshots (see test_vblk.c): the round trip, the disk's
 * identity checked on restore, the disk a restore opens (the recorded
 * path, a copy the snapshot carries), and the states the decoder
 * refuses.  Every test runs twice: on io_uring, and on the thread pool
 * (KHYVE_BLK_NO_URING=1).
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

int main(void)
{
	const struct CMUnitTest snap[] = {
		cmocka_unit_test_setup_teardown(test_snapshot_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_checks_disk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_refuses, setup, teardown),
	};
	int failed;

	failed = cmocka_run_group_tests_name("virtio-blk snapshots on io_uring", snap, group_uring, NULL);
	failed += cmocka_run_group_tests_name("virtio-blk snapshots on the thread pool", snap, group_pool, NULL);
	return failed;
}
