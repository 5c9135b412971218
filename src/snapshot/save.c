/*
 * Saving a VM: FILE (guest memory, sparse) and FILE.state.
 *
 * Order of work, so that a failure at any point leaves the VM running and
 * nothing at FILE/FILE.state that was not there before:
 *   1. create both files under temporary names next to FILE;
 *   2. while the guest runs, with KVM dirty-page logging on, write every
 *      non-zero page of guest memory (pre-copy);
 *   3. pause the vCPUs, write again only the pages the guest wrote during
 *      step 2 (or punch them out if they became zero), capture every vCPU,
 *      the irqchip, PIT, clock and devices, resume: the guest is stopped
 *      only for the pages it dirtied, not for all of its memory.  (A VM a
 *      user paused, or one where dirty logging is unavailable, is written
 *      whole in this step instead.)
 *   3. write the memory file's trailer and the state file, fsync both;
 *   4. rename the memory file, then the state file, over FILE and
 *      FILE.state, and fsync the directory.
 * Any error before step 4 unlinks the temporary files.  Between the two
 * renames a reader sees a new memory file with the old state file: their
 * UUIDs differ, so restore refuses the pair rather than mixing them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "khyve/device.h"
#include "khyve/log.h"
#include "khyve/snapsec.h"
#include "khyve/snapshot.h"
#include "khyve/util.h"
#include "khyve/vm.h"

#define PAGE 4096u
#define CHUNK (2u << 20)

struct save_ctx {
	struct vm *vm;
	const struct snapshot_save_opts *opts;
	int dfd;
	char base[256];
	char mem_tmp[300], state_tmp[300], state_name[300];
	int mem_fd, state_fd;
	/* fault injection for tests: fail the Nth write with EIO */
	long fault_at, nwrites;
	uint64_t *written;	/* one bit per page of the file holding data */
	uint64_t dirty_pages;	/* pages rewritten while paused */
	char *err;
	size_t errlen;
};

__attribute__((format(printf, 3, 4)))
static int fail(struct save_ctx *c, int ret, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, c->errlen, fmt, ap);
	va_end(ap);
	return ret;
}

static int save_pwrite(struct save_ctx *c, int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	if (c->fault_at && ++c->nwrites == c->fault_at)
		return -EIO;
	while (len) {
		ssize_t r = pwrite(fd, p, len, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;
		p += r;
		len -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

static void mark(uint64_t *bm, uint64_t page, uint64_t n, bool set)
{
	for (uint64_t i = page; i < page + n; i++) {
		if (set)
			bm[i / 64] |= 1ULL << (i % 64);
		else
			bm[i / 64] &= ~(1ULL << (i % 64));
	}
}

static bool test_bit(const uint64_t *bm, uint64_t i)
{
	return bm[i / 64] >> (i % 64) & 1;
}

/* Write pages [page, page+n) of guest RAM (host-mapping order) to the file. */
static int write_run(struct save_ctx *c, uint64_t page, uint64_t n)
{
	uint64_t o = page * PAGE;
	int ret = save_pwrite(c, c->mem_fd, c->vm->mem.base + o, n * PAGE, o);

	if (ret)
		return fail(c, ret, "writing guest memory to '%s': %s", c->opts->path, strerror(-ret));
	mark(c->written, page, n, true);
	return 0;
}

static bool page_is_zero(const uint8_t *p)
{
	static const uint8_t zero[PAGE];

	return !memcmp(p, zero, PAGE);
}

/*
 * Write every non-zero page of guest RAM at its offset; zero pages stay
 * holes.  Pages that mincore() says are not resident are zero without
 * being read, except where the RAM is mapped from an earlier snapshot's
 * memory file and that file has data there (SEEK_DATA).
 */
static int write_memory(struct save_ctx *c)
{
	const struct guest_mem *mem = &c->vm->mem;
	unsigned char vec[CHUNK / PAGE];
	int ret;

	for (uint64_t off = 0; off < mem->size; off += CHUNK) {
		uint64_t len = mem->size - off < CHUNK ? mem->size - off : CHUNK;
		unsigned int npages = (unsigned int)(len / PAGE);
		bool use_mincore = true;
		int run = -1;

		if (mem->src_fd >= 0) {
			off_t d = lseek(mem->src_fd, (off_t)off, SEEK_DATA);

			if (d >= 0 && (uint64_t)d < off + len)
				use_mincore = false;
		}
		if (use_mincore && mincore(mem->base + off, len, vec) < 0)
			use_mincore = false;
		for (unsigned int i = 0; i <= npages; i++) {
			bool zero = i == npages ||
				    (use_mincore && !(vec[i] & 1)) ||
				    page_is_zero(mem->base + off + (uint64_t)i * PAGE);

			if (!zero) {
				if (run < 0)
					run = (int)i;
				continue;
			}
			if (run >= 0) {
				ret = write_run(c, off / PAGE + (uint64_t)run, (uint64_t)(i - run));
				if (ret)
					return ret;
				run = -1;
			}
		}
		if (c->opts->progress)
			c->opts->progress(c->opts->progress_arg, off + len, mem->size);
	}
	return 0;
}

/*
 * With the vCPUs stopped: the pages the guest wrote since dirty logging
 * started hold what they hold now; rewrite them, or make them holes again
 * if they became zero.
 */
static int write_dirty(struct save_ctx *c)
{
	struct vm *vm = c->vm;
	int ret = 0;

	for (unsigned int r = 0; r < vm->mem.nregions && !ret; r++) {
		const struct mem_region *rg = &vm->mem.regions[r];
		uint64_t npages = rg->size / PAGE, base = rg->offset / PAGE, run = 0, nrun = 0;
		uint64_t *dirty = calloc((npages + 63) / 64, sizeof(uint64_t));

		if (!dirty)
			return fail(c, -ENOMEM, "out of memory");
		ret = vm__get_dirty(vm, r, dirty);
		if (ret) {
			free(dirty);
			return fail(c, ret, "KVM_GET_DIRTY_LOG: %s", strerror(-ret));
		}
		for (uint64_t i = 0; i <= npages && !ret; i++) {
			bool data = false;

			if (i < npages && test_bit(dirty, i)) {
				c->dirty_pages++;
				data = !page_is_zero(vm->mem.base + (base + i) * PAGE);
				if (!data && test_bit(c->written, base + i)) {
					if (fallocate(c->mem_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
						      (off_t)((base + i) * PAGE), PAGE) < 0) {
						static const uint8_t zero[PAGE];

						ret = save_pwrite(c, c->mem_fd, zero, PAGE, (base + i) * PAGE);
						if (ret)
							ret = fail(c, ret, "writing guest memory to '%s': %s",
								   c->opts->path, strerror(-ret));
					}
					mark(c->written, base + i, 1, false);
				}
			}
			if (data) {
				if (!nrun)
					run = i;
				nrun++;
			} else if (nrun) {
				ret = write_run(c, base + run, nrun);
				nrun = 0;
			}
		}
		free(dirty);
	}
	return ret;
}

static uint64_t data_bytes(const struct save_ctx *c)
{
	uint64_t n = 0, words = (c->vm->mem.size / PAGE + 63) / 64;

	for (uint64_t i = 0; i < words; i++)
		n += (uint64_t)__builtin_popcountll(c->written[i]);
	return n * PAGE;
}

static int write_trailer(struct save_ctx *c, const uint8_t uuid[16])
{
	uint8_t t[MEMFILE_TRAILER] = { 0 };
	uint32_t v32;
	uint64_t v64;
	int ret;

	memcpy(t, MEMFILE_MAGIC, 8);
	v32 = 1;
	memcpy(t + 8, &v32, 4);
	v32 = MEMFILE_TRAILER;
	memcpy(t + 12, &v32, 4);
	memcpy(t + 16, uuid, 16);
	v64 = c->vm->mem.size;
	memcpy(t + 32, &v64, 8);
	v64 = snapfmt__hash(t, 40);
	memcpy(t + 40, &v64, 8);
	ret = save_pwrite(c, c->mem_fd, t, sizeof(t), c->vm->mem.size);
	if (ret)
		return fail(c, ret, "writing the memory file trailer of '%s': %s", c->opts->path, strerror(-ret));
	return 0;
}

static void new_uuid(uint8_t u[16])
{
	if (getrandom(u, 16, 0) != 16) {
		/* no entropy source at all: time and pid still make it unique here */
		uint64_t t = vm__now_ns(), p = (uint64_t)getpid();

		memcpy(u, &t, 8);
		memcpy(u + 8, &p, 8);
	}
	u[6] = (uint8_t)((u[6] & 0x0f) | 0x40);	/* version 4 */
	u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);	/* RFC 4122 variant */
}

static int open_target(struct save_ctx *c)
{
	const char *path = c->opts->path, *slash = strrchr(path, '/');
	char dir[4096];
	struct stat st;

	if (!*path)
		return fail(c, -EINVAL, "empty snapshot file name");
	if (slash) {
		size_t n = (size_t)(slash - path);

		if (n >= sizeof(dir))
			return fail(c, -ENAMETOOLONG, "snapshot path '%s' is too long", path);
		memcpy(dir, path, n);
		dir[n] = '\0';
		if (!n)
			strcpy(dir, "/");
	} else {
		strcpy(dir, ".");
	}
	if (snprintf(c->base, sizeof(c->base), "%s", slash ? slash + 1 : path) >= (int)sizeof(c->base) - 32)
		return fail(c, -ENAMETOOLONG, "snapshot file name '%s' is too long", path);
	if (!c->base[0] || !strcmp(c->base, ".") || !strcmp(c->base, ".."))
		return fail(c, -EISDIR, "snapshot path '%s' names a directory, not a file", path);
	c->dfd = openat(c->opts->dirfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c->dfd < 0)
		return fail(c, -errno, "cannot open directory '%s': %s", dir, strerror(errno));
	snprintf(c->state_name, sizeof(c->state_name), "%s.state", c->base);
	snprintf(c->mem_tmp, sizeof(c->mem_tmp), ".%s.tmp-%d", c->base, (int)getpid());
	snprintf(c->state_tmp, sizeof(c->state_tmp), ".%s.state.tmp-%d", c->base, (int)getpid());
	if (fstatat(c->dfd, c->base, &st, 0) == 0 && S_ISDIR(st.st_mode))
		return fail(c, -EISDIR, "'%s' is a directory", path);
	if (fstatat(c->dfd, c->state_name, &st, 0) == 0 && S_ISDIR(st.st_mode))
		return fail(c, -EISDIR, "'%s.state' is a directory", path);
	/* 0600: guest memory is as private as the guest */
	c->mem_fd = openat(c->dfd, c->mem_tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (c->mem_fd < 0)
		return fail(c, -errno, "cannot create a file in '%s': %s", dir, strerror(errno));
	c->state_fd = openat(c->dfd, c->state_tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (c->state_fd < 0)
		return fail(c, -errno, "cannot create a file in '%s': %s", dir, strerror(errno));
	if (ftruncate(c->mem_fd, (off_t)(c->vm->mem.size + MEMFILE_TRAILER)) < 0)
		return fail(c, -errno, "cannot size the memory file: %s", strerror(errno));
	return 0;
}

/* Everything but memory, while the vCPUs are parked. */
static int capture(struct save_ctx *c, struct snap_state *st)
{
	struct vm *vm = c->vm;
	int ret;

	st->ncpus = vm->ncpus;
	st->vcpus = calloc(vm->ncpus, sizeof(*st->vcpus));
	if (!st->vcpus)
		return fail(c, -ENOMEM, "out of memory");
	for (unsigned int i = 0; i < vm->ncpus; i++) {
		ret = vmstate__save_vcpu(vm, &vm->vcpus[i], &st->vcpus[i], c->err, c->errlen);
		if (ret)
			return ret;
	}
	ret = vmstate__save_vm(vm, &st->vmk, c->err, c->errlen);
	if (ret)
		return ret;
	for (struct device_instance *d = vm->devices; d; d = d->next) {
		if (!d->priv || !d->ops->save)
			continue;
		if (st->ndevs == SNAP_MAX_DEVICES)
			return fail(c, -E2BIG, "too many devices to save");
		st->devs[st->ndevs].state = calloc(1, d->ops->state_size);
		if (!st->devs[st->ndevs].state)
			return fail(c, -ENOMEM, "out of memory");
		st->devs[st->ndevs].ops = d->ops;
		d->ops->save(d->priv, st->devs[st->ndevs].state);
		st->ndevs++;
	}
	return 0;
}

static int write_state(struct save_ctx *c, struct snap_state *st, uint64_t *bytes)
{
	struct sbuf out = { 0 };
	int ret;

	ret = snapsec__write_state(&out, st);
	if (ret) {
		sbuf__free(&out);
		return fail(c, ret, "encoding the state: %s", strerror(-ret));
	}
	ret = save_pwrite(c, c->state_fd, out.p, out.len, 0);
	*bytes = out.len;
	sbuf__free(&out);
	if (ret)
		return fail(c, ret, "writing '%s.state': %s", c->opts->path, strerror(-ret));
	return 0;
}

int snapshot__save(struct vm *vm, const struct snapshot_save_opts *opts,
		   struct snapshot_save_result *res, char *err, size_t errlen)
{
	struct save_ctx c = {
		.vm = vm, .opts = opts, .dfd = -1, .mem_fd = -1, .state_fd = -1,
		.err = err, .errlen = errlen,
	};
	struct snap_state st;
	uint64_t t0 = vm__now_ns(), tp = 0;
	bool paused_here = false, live = false;
	const char *fault = getenv("KHYVE_FAULT_SAVE_WRITE");
	int ret;

	memset(&st, 0, sizeof(st));
	memset(res, 0, sizeof(*res));
	c.fault_at = fault ? strtol(fault, NULL, 10) : 0;
	c.written = calloc((vm->mem.size / PAGE + 63) / 64, sizeof(uint64_t));
	if (!c.written) {
		ret = fail(&c, -ENOMEM, "out of memory");
		goto out;
	}
	ret = open_target(&c);
	if (ret)
		goto out;

	new_uuid(st.uuid);
	new_uuid(st.memory.uuid);
	snapsec__host_meta(&st.meta);
	st.cfg = *vm->cfg;	/* borrowed strings: not freed below */
	st.memory.mem_size = vm->mem.size;
	st.memory.file_size = vm->mem.size + MEMFILE_TRAILER;
	st.memory.nregions = vm->mem.nregions;
	memcpy(st.memory.regions, vm->mem.regions, sizeof(st.memory.regions));

	/* pre-copy while the guest runs; KHYVE_SAVE_STOP_COPY=1 turns it off */
	if (!vm->user_paused && !getenv("KHYVE_SAVE_STOP_COPY")) {
		live = vm__dirty_log(vm, true) == 0;
		if (!live)
			pr_debug("dirty logging unavailable: saving with the vCPUs stopped throughout");
	}
	if (live) {
		ret = write_dirty(&c);	/* starts the interval; nothing is dirty yet */
		c.dirty_pages = 0;
		if (!ret)
			ret = write_memory(&c);
		if (ret)
			goto out;
	}
	if (!vm->user_paused) {
		vcpu__pause_all(vm);
		paused_here = true;
	}
	tp = vm__now_ns();
	ret = capture(&c, &st);
	if (!ret)
		ret = live ? write_dirty(&c) : write_memory(&c);
	if (paused_here)
		vcpu__resume_all(vm);
	res->pause_ns = vm__now_ns() - tp;
	if (ret)
		goto out;

	st.meta.tsc_khz = st.vcpus[0].tsc_khz;
	st.memory.data_bytes = data_bytes(&c);
	ret = write_trailer(&c, st.memory.uuid);
	if (ret)
		goto out;
	ret = write_state(&c, &st, &res->state_bytes);
	if (ret)
		goto out;
	if (fsync(c.mem_fd) < 0 || fsync(c.state_fd) < 0) {
		ret = fail(&c, -errno, "syncing the snapshot to disk: %s", strerror(errno));
		goto out;
	}
	if (renameat(c.dfd, c.mem_tmp, c.dfd, c.base) < 0) {
		ret = fail(&c, -errno, "renaming the memory file to '%s': %s", opts->path, strerror(errno));
		goto out;
	}
	if (renameat(c.dfd, c.state_tmp, c.dfd, c.state_name) < 0) {
		ret = fail(&c, -errno, "renaming the state file to '%s.state': %s", opts->path, strerror(errno));
		goto out;
	}
	c.mem_tmp[0] = c.state_tmp[0] = '\0';	/* nothing left to clean up */
	if (fsync(c.dfd) < 0)
		pr_warn("fsync of the snapshot directory: %s", strerror(errno));

	res->mem_bytes = vm->mem.size;
	res->data_bytes = st.memory.data_bytes;
	res->dirty_pages = c.dirty_pages;
	snapfmt__uuid_str(st.uuid, res->uuid);
	ret = 0;
out:
	if (live && vm__dirty_log(vm, false))
		pr_warn("could not turn dirty-page logging off: %s", strerror(errno));
	free(c.written);
	if (c.mem_fd >= 0)
		close(c.mem_fd);
	if (c.state_fd >= 0)
		close(c.state_fd);
	if (c.dfd >= 0) {
		if (c.mem_tmp[0])
			unlinkat(c.dfd, c.mem_tmp, 0);
		if (c.state_tmp[0])
			unlinkat(c.dfd, c.state_tmp, 0);
		close(c.dfd);
	}
	free(st.vcpus);
	for (unsigned int i = 0; i < st.ndevs; i++)
		free(st.devs[i].state);
	res->total_ns = vm__now_ns() - t0;
	return ret;
}
