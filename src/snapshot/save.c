/*
 * Saving a VM: FILE (guest memory, sparse) and FILE.state.
 *
 * Order of work, so that a failure at any point leaves the VM running and
 * nothing at FILE/FILE.state that was not there before:
 *   1. create both files under temporary names next to FILE;
 *   2. pause the vCPUs (unless a user paused them), capture every vCPU,
 *      the irqchip, PIT, clock and devices, fork() a writer process, and
 *      resume: the child's copy-on-write view of guest memory is frozen at
 *      the pause, so the guest runs on while the child writes it.  The
 *      pause lasts as long as the capture and the fork (page tables only),
 *      not as long as writing memory; the price is that pages the guest
 *      writes meanwhile are copied once.  If fork() fails, memory is
 *      written with the vCPUs stopped instead;
 *   3. write the memory file's trailer and the state file, fsync both;
 *   4. rename the memory file, then the state file, over FILE and
 *      FILE.state, and fsync the directory.
 * With opts->disks, step 2 also copies every disk (reflink, or a sparse
 * copy) to a temporary name while the VM is paused, and step 4 renames the
 * copies to FILE.<section>.disk before the memory file.
 * Any error before step 4 unlinks the temporary files.  Between the two
 * renames a reader sees a new memory file with the old state file: their
 * UUIDs differ, so restore refuses the pair rather than mixing them.
 */
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "khyve/device.h"
#include "khyve/log.h"
#include "khyve/seccomp.h"
#include "khyve/snapsec.h"
#include "khyve/snapshot.h"
#include "khyve/util.h"
#include "khyve/vm.h"
#include "khyve/vmstate.h"

#define PAGE 4096u
#define CHUNK (2u << 20)

struct save_ctx {
	struct vm *vm;
	const struct snapshot_save_opts *opts;
	int dfd;
	char base[256];
	char mem_tmp[300], state_tmp[300], state_name[300];
	/* disk copies: temporary and final names in dfd, per saved device */
	char disk_tmp[SNAP_MAX_DEVICES][400], disk_name[SNAP_MAX_DEVICES][400];
	unsigned int ndisks;
	int mem_fd, state_fd;
	/* fault injection for tests: fail the Nth write with EIO */
	long fault_at, nwrites;
	uint64_t *written;	/* one bit per page of the file holding data */
	volatile uint64_t *done;	/* progress, shared with the parent when forked */
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

static void mark(uint64_t *bm, uint64_t page, uint64_t n)
{
	for (uint64_t i = page; i < page + n; i++)
		bm[i / 64] |= 1ULL << (i % 64);
}

/* Write pages [page, page+n) of guest RAM (host-mapping order) to the file. */
static int write_run(struct save_ctx *c, uint64_t page, uint64_t n)
{
	uint64_t o = page * PAGE;
	int ret = save_pwrite(c, c->mem_fd, c->vm->mem.base + o, n * PAGE, o);

	if (ret)
		return fail(c, ret, "writing guest memory to '%s': %s", c->opts->path, strerror(-ret));
	mark(c->written, page, n);
	return 0;
}

static bool page_is_zero(const uint8_t *p)
{
	static const uint8_t zero[PAGE];

	return !memcmp(p, zero, PAGE);
}

/*
 * /proc/self/pagemap: one 64-bit entry per page of our address space.  A
 * page that is neither present nor swapped out has never been written
 * (anonymous RAM) or still reads from the file it maps (a restored VM).
 */
#define PM_PRESENT (1ULL << 63)
#define PM_SWAPPED (1ULL << 62)

/*
 * Mark the pages of [off, off+len) of guest RAM that the memory file a
 * restored VM maps holds data for: until the guest writes such a page, it
 * is the file's, and pagemap says nothing about it (it may not even be in
 * the page cache).  Returns false if the file's extents are unknown.
 */
static bool mark_file_data(int fd, uint64_t off, uint64_t len, bool *need)
{
	uint64_t pos = off, end = off + len;

	while (pos < end) {
		off_t d = lseek(fd, (off_t)pos, SEEK_DATA), h;

		if (d < 0)
			return errno == ENXIO;	/* ENXIO: no data from pos on */
		if ((uint64_t)d >= end)
			return true;
		h = lseek(fd, d, SEEK_HOLE);
		if (h < 0)
			return false;
		for (uint64_t p = (uint64_t)d / PAGE * PAGE; p < (uint64_t)h && p < end; p += PAGE)
			need[(p - off) / PAGE] = true;
		pos = (uint64_t)h;
	}
	return true;
}

/*
 * Which pages of one chunk may hold data.  Not mincore(): it calls a page
 * absent when it is swapped out, or when it is a page of a restored VM's
 * memory file that is not in the page cache - live data either way.
 * Where the kernel cannot tell us, every page is read and zero-tested.
 */
static void chunk_pages(const struct guest_mem *mem, int pm_fd, uint64_t off, unsigned int npages,
			bool *need)
{
	uint64_t pm[CHUNK / PAGE];
	size_t want = npages * sizeof(pm[0]);
	off_t at = (off_t)((uintptr_t)(mem->base + off) / PAGE * sizeof(pm[0]));

	if (pm_fd < 0 || pread(pm_fd, pm, want, at) != (ssize_t)want) {
		memset(need, true, npages);
		return;
	}
	for (unsigned int i = 0; i < npages; i++)
		need[i] = (pm[i] & (PM_PRESENT | PM_SWAPPED)) != 0;
	if (mem->src_fd >= 0 && !mark_file_data(mem->src_fd, off, (uint64_t)npages * PAGE, need))
		memset(need, true, npages);
}

/*
 * Write every non-zero page of guest RAM at its offset; zero pages stay
 * holes.  Pages that were never written and are not backed by a file
 * (pagemap: neither present nor swapped) are zero without being read, so
 * the cost does not grow with untouched RAM.  pm_fd: the writing
 * process's own /proc/self/pagemap, or -1.
 */
static int write_memory(struct save_ctx *c, int pm_fd)
{
	const struct guest_mem *mem = &c->vm->mem;
	bool need[CHUNK / PAGE];
	int ret = 0;

	/* no pagemap (no /proc): every page is read; no log, as the forked
	 * writer must not take stdio locks another thread may have held */
	for (uint64_t off = 0; off < mem->size; off += CHUNK) {
		uint64_t len = mem->size - off < CHUNK ? mem->size - off : CHUNK;
		unsigned int npages = (unsigned int)(len / PAGE);
		int run = -1;

		chunk_pages(mem, pm_fd, off, npages, need);
		for (unsigned int i = 0; i <= npages; i++) {
			bool zero = i == npages || !need[i] ||
				    page_is_zero(mem->base + off + (uint64_t)i * PAGE);

			if (!zero) {
				if (run < 0)
					run = (int)i;
				continue;
			}
			if (run >= 0) {
				ret = write_run(c, off / PAGE + (uint64_t)run, (uint64_t)(i - run));
				if (ret)
					goto out;
				run = -1;
			}
		}
		if (c->done)
			*c->done = off + len;
		else if (c->opts->progress)
			c->opts->progress(c->opts->progress_arg, off + len, mem->size);
	}
out:
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

/* pagemap describes the opener's address space: each process opens its own */
static int open_pagemap(void)
{
	return open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
}

/* Memory and the trailer, by the main thread itself (no writer process). */
static int write_memory_here(struct save_ctx *c, const uint8_t uuid[16])
{
	int pm_fd = open_pagemap();
	int ret = write_memory(c, pm_fd) ?: write_trailer(c, uuid);

	if (pm_fd >= 0)
		close(pm_fd);
	return ret;
}

static void new_uuid(uint8_t u[16])
{
	if (getrandom(u, 16, 0) != 16) {
		/* no entropy source at all: time and pid still make it unique here */
		uint64_t t = util__now_ns(), p = (uint64_t)getpid();

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
/*
 * Copy one device's disk, paused: the copy is the disk as the guest saw
 * it at this instant.  Through /proc/self/fd, as the device opens paths.
 */
static int copy_disk(struct save_ctx *c, struct device_instance *d, void *state)
{
	unsigned int i = c->ndisks;
	char path[600];

	snprintf(c->disk_name[i], sizeof(c->disk_name[i]), "%s.%s.disk", c->base, d->name);
	snprintf(c->disk_tmp[i], sizeof(c->disk_tmp[i]), ".%s.%s.disk.tmp-%d", c->base, d->name, (int)getpid());
	snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", c->dfd, c->disk_tmp[i]);
	c->ndisks++;	/* from here on, the failure path removes it */
	return d->ops->copy_files(d->priv, state, path, c->disk_name[i], c->err, c->errlen);
}

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
		snprintf(st->devs[st->ndevs].name, sizeof(st->devs[st->ndevs].name), "%s", d->name);
		d->ops->save(d->priv, st->devs[st->ndevs].state);
		if (c->opts->disks && d->ops->copy_files) {
			ret = copy_disk(c, d, st->devs[st->ndevs].state);
			if (ret) {
				free(st->devs[st->ndevs].state);
				return ret;
			}
		}
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

/* What the writer process reports, in a page shared with the parent. */
struct writer_result {
	volatile uint64_t done;
	uint64_t data_bytes;
	long nwrites;		/* so fault injection counts across both processes */
	int ret;
	char msg[400];
};

/*
 * Fork the process that writes guest memory.  Called with the vCPUs parked
 * and the state captured, so the child's (copy-on-write) memory is exactly
 * the saved instant.  The child is one thread of a multithreaded process:
 * it only makes system calls and touches memory allocated before the fork,
 * then _exit()s.  Returns the child's pid, or -1 if there is none (the
 * caller then writes memory itself).
 */
static pid_t fork_writer(struct save_ctx *c, const struct snap_state *st, struct writer_result **out)
{
	struct writer_result *r = mmap(NULL, sizeof(*r), PROT_READ | PROT_WRITE,
				       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t pid;

	if (r == MAP_FAILED)
		return -1;
	pid = fork();
	if (pid < 0) {
		pr_debug("fork: %s; saving with the vCPUs stopped", strerror(errno));
		munmap(r, sizeof(*r));
		return -1;
	}
	if (pid == 0) {
		char msg[sizeof(r->msg)] = "";
		int pm_fd = open_pagemap();
		int ret;

		c->err = msg;
		c->errlen = sizeof(msg);
		c->done = &r->done;
		/* tests: a writer killed (say by the OOM killer) half way */
		if (getenv("KHYVE_FAULT_WRITER_KILL"))
			raise(SIGKILL);
		/* from here on only the calls of writing: it reads the guest's memory */
		ret = seccomp__writer();
		if (ret)
			ret = fail(c, ret, "confining the memory writer: %s", strerror(-ret));
		if (!ret)
			ret = write_memory(c, pm_fd);
		if (!ret)
			ret = write_trailer(c, st->memory.uuid);
		if (!ret && fsync(c->mem_fd) < 0)
			ret = fail(c, -errno, "syncing '%s' to disk: %s", c->opts->path, strerror(errno));
		r->data_bytes = data_bytes(c);
		r->nwrites = c->nwrites;
		memcpy(r->msg, msg, sizeof(msg));
		r->ret = ret;
		_exit(0);
	}
	*out = r;
	return pid;
}

/*
 * A save in flight: what snapshot__save_start() set up, kept until the
 * writer process ends and snapshot__save_poll() commits (or removes) the
 * files.
 */
struct snapshot_save {
	struct save_ctx c;
	struct snapshot_save_opts opts;
	char path[4096];
	struct snap_state st;
	struct snapshot_save_result res;
	uint64_t t0, tp;
	bool paused_here;	/* the VM stays paused until the save ends (suspend) */
	struct writer_result *cr;
	pid_t child;
	int ret;		/* the save's outcome, once known */
	bool ended;
	char msg[512];		/* why it failed */
};

/* Has the writer ended?  0 yes, -EINPROGRESS no, else the save failed. */
static int check_writer(struct snapshot_save *s, bool cancel)
{
	struct save_ctx *c = &s->c;
	int status;
	pid_t w;

	if (cancel) {
		/* SIGKILL: nothing it was writing is kept, so nothing to finish */
		kill(s->child, SIGKILL);
		while (waitpid(s->child, &status, 0) < 0 && errno == EINTR)
			;
		s->child = -1;
		return fail(c, -ECANCELED, "the save was cancelled: khyve is stopping");
	}
	w = waitpid(s->child, &status, WNOHANG);
	if (w == 0 || (w < 0 && errno == EINTR))
		return -EINPROGRESS;
	if (w < 0)
		return fail(c, -errno, "waiting for the memory writer: %s", strerror(errno));
	s->child = 0;	/* reaped: never killed or waited for again */
	if (WIFEXITED(status) && WEXITSTATUS(status) == VM_EXIT_ERROR)
		return fail(c, -EPERM, "the memory writer made a forbidden system call (named in khyve's "
			    "log) and was ended");
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		return fail(c, -EIO, "the memory writer process died (%s %d)",
			    WIFSIGNALED(status) ? "signal" : "status",
			    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	c->nwrites = s->cr->nwrites;
	if (s->cr->ret)
		return fail(c, s->cr->ret, "%s", s->cr->msg);
	return 0;
}

/* Memory is written: write the state, make both durable and rename them into place. */
static int commit(struct snapshot_save *s)
{
	struct save_ctx *c = &s->c;
	struct snap_state *st = &s->st;
	int ret;

	st->meta.tsc_khz = st->vcpus[0].tsc_khz;
	st->memory.data_bytes = s->cr ? s->cr->data_bytes : data_bytes(c);
	ret = write_state(c, st, &s->res.state_bytes);
	if (ret)
		return ret;
	if (fsync(c->mem_fd) < 0 || fsync(c->state_fd) < 0)
		return fail(c, -errno, "syncing the snapshot to disk: %s", strerror(errno));
	for (unsigned int i = 0; i < c->ndisks; i++) {
		int fd = openat(c->dfd, c->disk_tmp[i], O_RDONLY | O_CLOEXEC);

		if (fd < 0 || fsync(fd) < 0 || renameat(c->dfd, c->disk_tmp[i], c->dfd, c->disk_name[i]) < 0) {
			ret = fail(c, -errno, "storing the disk copy '%s': %s", c->disk_name[i], strerror(errno));
			if (fd >= 0)
				close(fd);
			return ret;
		}
		close(fd);
		c->disk_tmp[i][0] = '\0';
	}
	if (renameat(c->dfd, c->mem_tmp, c->dfd, c->base) < 0)
		return fail(c, -errno, "renaming the memory file to '%s': %s", s->opts.path, strerror(errno));
	if (renameat(c->dfd, c->state_tmp, c->dfd, c->state_name) < 0)
		return fail(c, -errno, "renaming the state file to '%s.state': %s", s->opts.path, strerror(errno));
	c->mem_tmp[0] = c->state_tmp[0] = '\0';	/* nothing left to clean up */
	if (fsync(c->dfd) < 0)
		pr_warn("fsync of the snapshot directory: %s", strerror(errno));

	s->res.mem_bytes = c->vm->mem.size;
	s->res.data_bytes = st->memory.data_bytes;
	s->res.ndisks = c->ndisks;
	snapfmt__uuid_str(st->uuid, s->res.uuid);
	return 0;
}

/* The save ended with s->ret: resume a VM it paused if it failed, remove what is left. */
static void finish(struct snapshot_save *s)
{
	struct save_ctx *c = &s->c;

	if (s->paused_here && s->ret) {	/* a failed suspend: the VM runs on */
		device__resume_all(c->vm);
		vcpu__resume_all(c->vm);
		s->paused_here = false;
	}
	if (s->child > 0) {
		kill(s->child, SIGKILL);
		while (waitpid(s->child, NULL, 0) < 0 && errno == EINTR)
			;
		s->child = -1;
	}
	if (c->mem_fd >= 0)
		close(c->mem_fd);
	if (c->state_fd >= 0)
		close(c->state_fd);
	c->mem_fd = c->state_fd = -1;
	if (c->dfd >= 0) {
		if (c->mem_tmp[0])
			unlinkat(c->dfd, c->mem_tmp, 0);
		if (c->state_tmp[0])
			unlinkat(c->dfd, c->state_tmp, 0);
		for (unsigned int i = 0; i < c->ndisks; i++)
			if (c->disk_tmp[i][0])
				unlinkat(c->dfd, c->disk_tmp[i], 0);
		close(c->dfd);
		c->dfd = -1;
	}
	s->res.total_ns = util__now_ns() - s->t0;
	s->ended = true;
}

int snapshot__save_start(struct vm *vm, const struct snapshot_save_opts *opts,
			 struct snapshot_save **out, char *err, size_t errlen)
{
	struct snapshot_save *s = calloc(1, sizeof(*s));
	struct save_ctx *c;
	struct snap_state *st;
	const char *fault = getenv("KHYVE_FAULT_SAVE_WRITE");
	int ret;

	*out = NULL;
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	c = &s->c;
	st = &s->st;
	s->opts = *opts;
	snprintf(s->path, sizeof(s->path), "%s", opts->path);
	s->opts.path = s->path;
	*c = (struct save_ctx){
		.vm = vm, .opts = &s->opts, .dfd = -1, .mem_fd = -1, .state_fd = -1,
		.err = s->msg, .errlen = sizeof(s->msg),
	};
	s->child = -1;
	s->t0 = util__now_ns();
	c->fault_at = fault ? strtol(fault, NULL, 10) : 0;
	/* a host that cannot save refuses before anything is paused or written */
	ret = vmstate__check_save(vm, s->msg, sizeof(s->msg));
	if (ret)
		goto out;
	c->written = calloc((vm->mem.size / PAGE + 63) / 64, sizeof(uint64_t));
	if (!c->written) {
		ret = fail(c, -ENOMEM, "out of memory");
		goto out;
	}
	ret = open_target(c);
	if (ret)
		goto out;

	new_uuid(st->uuid);
	new_uuid(st->memory.uuid);
	snapsec__host_meta(&st->meta);
	st->cfg = *vm->cfg;	/* borrowed strings: not freed below */
	st->memory.mem_size = vm->mem.size;
	st->memory.file_size = vm->mem.size + MEMFILE_TRAILER;
	st->memory.nregions = vm->mem.nregions;
	memcpy(st->memory.regions, vm->mem.regions, sizeof(st->memory.regions));

	if (!vm->user_paused) {
		vcpu__pause_all(vm);
		ret = device__pause_all(vm, s->msg, sizeof(s->msg));
		if (ret) {
			/* a disk whose storage stalls: no snapshot, the VM runs on */
			vcpu__resume_all(vm);
			goto out;
		}
		s->paused_here = true;
	}
	s->tp = util__now_ns();
	ret = capture(c, st);
	if (!ret) {
		/* KHYVE_SAVE_STOP_COPY=1: no writer process (for comparison) */
		s->child = !getenv("KHYVE_SAVE_STOP_COPY") ? fork_writer(c, st, &s->cr) : -1;
		if (s->child < 0)
			ret = write_memory_here(c, st->memory.uuid);
	}
	/*
	 * A suspend (stay_paused) keeps the VM stopped until khyve exits: a
	 * guest that ran on would change its disks after the snapshot recorded
	 * them.
	 */
	if (s->paused_here && (!opts->stay_paused || ret)) {
		device__resume_all(vm);
		vcpu__resume_all(vm);
		s->paused_here = false;
	}
	s->res.pause_ns = util__now_ns() - s->tp;
out:
	s->ret = ret;
	if (ret) {
		finish(s);
		snprintf(err, errlen, "%s", s->msg);
		snapshot__save_free(s);
		return ret;
	}
	if (s->child < 0) {	/* memory is written already */
		s->ret = commit(s);
		finish(s);
	}
	*out = s;
	return 0;
}

int snapshot__save_poll(struct snapshot_save *s, bool cancel, struct snapshot_save_result *res,
			char *err, size_t errlen)
{
	if (!s->ended) {
		s->ret = check_writer(s, cancel);
		if (s->ret == -EINPROGRESS)
			return -EINPROGRESS;
		if (!s->ret)
			s->ret = commit(s);
		finish(s);
	}
	if (s->ret)
		snprintf(err, errlen, "%s", s->msg);
	*res = s->res;
	return s->ret;
}

void snapshot__save_progress(const struct snapshot_save *s, uint64_t *done, uint64_t *total)
{
	*total = s->c.vm->mem.size;
	*done = s->ended ? *total : s->cr ? s->cr->done : 0;
}

void snapshot__save_free(struct snapshot_save *s)
{
	if (!s)
		return;
	if (!s->ended) {
		s->ret = -ECANCELED;
		finish(s);
	}
	if (s->cr)
		munmap(s->cr, sizeof(*s->cr));
	free(s->c.written);
	free(s->st.vcpus);
	for (unsigned int i = 0; i < s->st.ndevs; i++)
		free(s->st.devs[i].state);
	free(s);
}
