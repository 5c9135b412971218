/*
 * virtio-blk's snapshot side (blk.c is the device): save, the section's
 * codec and restore, which reopens the disk (the snapshot's copy, the
 * options' path or the recorded one) and refuses one that changed
 * (--force-disk), and the disk copies of a checkpoint with --disks.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "khyve/config.h"
#include "khyve/disk.h"
#include "khyve/log.h"
#include "khyve/snapfmt.h"
#include "khyve/util.h"
#include "khyve/vblk.h"
#include "khyve/virtio.h"
#include "khyve/vm.h"

#include "blk.h"

/* ---------- disk copies (checkpoints with disks) ---------- */

int vblk__copy_disk(struct pci_dev *pd, const char *dest, char *err, size_t errlen)
{
	struct blk *b = pd->priv;
	int ret;

	if (!b || pd->type->init != blk__init)
		return util__fail(-EINVAL, err, errlen, "%s is not a virtio-blk disk", pd->name);
	pthread_mutex_lock(&pd->lock);
	if (b->inflight)
		blk__drain(b, false, NULL);
	ret = disk__copy(b->fd, b->size, b->path, dest, err, errlen);
	pthread_mutex_unlock(&pd->lock);
	return ret;
}

void vblk__set_copy(void *state, const char *name)
{
	struct blk_state *s = state;

	snprintf(s->copy, sizeof(s->copy), "%s", name ? name : "");
}

/* ---------- snapshot ---------- */

void blk__save(void *priv, void *state)
{
	struct pci_dev *pd = priv;
	struct blk *b = pd->priv;
	struct blk_state *s = state;

	pthread_mutex_lock(&pd->lock);
	if (b->inflight)
		blk__drain(b, false, NULL);	/* the pause does this; in case a caller did not pause */
	pci__save(pd, &s->pci);
	s->virtio = b->vd.st;
	snprintf(s->path, sizeof(s->path), "%s", b->path);
	s->read_only = b->read_only;
	s->capacity = b->capacity;
	snprintf(s->serial, sizeof(s->serial), "%s", b->serial);
	if (b->fd >= 0)
		disk__ident(b->fd, b->size, &s->disk);
	else
		memset(&s->disk, 0, sizeof(s->disk));
	s->copy[0] = '\0';
	pthread_mutex_unlock(&pd->lock);
}

void blk__encode(struct sbuf *b, const void *state)
{
	const struct blk_state *s = state;

	enc__map(b);
	pci__encode(b, &s->pci);
	virtio__encode(b, &s->virtio);
	enc__str(b, "path", s->path);
	enc__bool(b, "read_only", s->read_only);
	enc__u64(b, "capacity", s->capacity);
	enc__str(b, "serial", s->serial);
	enc__map_key(b, "disk");
	enc__u64(b, "size", s->disk.size);
	enc__u64(b, "dev", s->disk.dev);
	enc__u64(b, "ino", s->disk.ino);
	enc__u64(b, "mtime_ns", s->disk.mtime_ns);
	enc__u64(b, "sample_hash", s->disk.hash);
	enc__end(b);
	enc__str(b, "copy", s->copy);
	enc__end(b);
}

/* A copy's name: relative, inside the snapshot's directory (no ".."). */
static bool copy_name_ok(const char *s)
{
	const char *p = s;

	if (s[0] == '/')
		return false;
	while (*p) {
		size_t n = strcspn(p, "/");

		if ((n == 2 && !strncmp(p, "..", 2)) || !n)
			return false;
		p += n;
		if (*p == '/')
			p++;
	}
	return true;
}

/* Version 1 did not record where the function was (pci.h). */
static void virtio_blk_v1_to_v2(struct blk_state *s)
{
	pci__func_unrecorded(&s->pci);
}

void blk__decode(struct dec *d, const cbor_item_t *m, uint32_t version, void *state)
{
	struct blk_state *s = state;
	const cbor_item_t *disk;

	memset(s, 0, sizeof(*s));
	s->read_only = dec__bool(d, m, "read_only");
	pci__decode(d, m, &s->pci, VIRTIO_PCI_VENDOR, VIRTIO_PCI_DEVICE_BASE + blk_types[0].device_id,
		    blk_types[0].nqueues + 1u, version >= 2);
	if (version < 2)
		virtio_blk_v1_to_v2(s);
	virtio__decode(d, m, &s->virtio, &blk_types[s->read_only], d->mem_size);
	dec__str(d, m, "path", s->path, sizeof(s->path));
	s->capacity = dec__u64(d, m, "capacity");
	dec__str(d, m, "serial", s->serial, sizeof(s->serial));
	disk = dec__map(d, m, "disk");
	s->disk.size = dec__u64(d, disk, "size");
	s->disk.dev = dec__u64(d, disk, "dev");
	s->disk.ino = dec__u64(d, disk, "ino");
	s->disk.mtime_ns = dec__u64(d, disk, "mtime_ns");
	s->disk.hash = dec__u64(d, disk, "sample_hash");
	dec__str(d, m, "copy", s->copy, sizeof(s->copy));
	if (d->ret)
		return;
	if (s->path[0] != '/')
		dec__fail(d, "field 'path' is '%s', not an absolute path", s->path);
	else if (s->capacity != s->disk.size / SECTOR)
		dec__fail(d, "field 'capacity' is %llu sectors, but the disk's size of %llu bytes makes %llu",
			  (unsigned long long)s->capacity, (unsigned long long)s->disk.size,
			  (unsigned long long)(s->disk.size / SECTOR));
	else if (s->disk.size > (uint64_t)INT64_MAX)
		dec__fail(d, "field 'disk.size' is %llu, beyond any file", (unsigned long long)s->disk.size);
	else if (s->copy[0] && !copy_name_ok(s->copy))
		dec__fail(d, "field 'copy' is '%s': not a name inside the snapshot's directory", s->copy);
}

/*
 * A disk copy the snapshot carries was written before the state file: if it
 * was modified later (a VM restored from it ran), it is no longer the
 * snapshot's disk.
 */
static bool copy_modified(const struct blk *b, const char *restore)
{
	char state[PATH_MAX + 8];
	struct stat st, cp;

	snprintf(state, sizeof(state), "%s.state", restore);
	if (stat(state, &st) < 0 || fstat(b->fd, &cp) < 0)
		return false;
	return cp.st_mtim.tv_sec > st.st_mtim.tv_sec ||
	       (cp.st_mtim.tv_sec == st.st_mtim.tv_sec && cp.st_mtim.tv_nsec > st.st_mtim.tv_nsec);
}

/*
 * The disk of a restore, compared with the one the snapshot recorded:
 * same_file, the very file (device, inode, modification time too); else a
 * copy (size and content), with copy_of the snapshot it belongs to.
 */
static int check_disk(struct blk *b, const struct blk_state *s, bool same_file, const char *copy_of,
		      char *err, size_t errlen)
{
	const struct vm_config *cfg = b->vd.pd->vm->cfg;
	struct disk_ident now;
	char what[160] = "";
	size_t n = 0;

	if (b->read_only != s->read_only)
		return util__fail(-EINVAL, err, errlen, "disk %s is %s, but was %s in the snapshot", b->path,
				  b->read_only ? "read-only" : "read-write", s->read_only ? "read-only" : "read-write");
	if (b->capacity != s->capacity)
		return util__fail(-EINVAL, err, errlen,
				  "disk %s has %llu sectors, the snapshot's had %llu: a guest cannot see its disk change size (not even with --force-disk)",
				  b->path, (unsigned long long)b->capacity, (unsigned long long)s->capacity);
	disk__ident(b->fd, b->size, &now);
#define WHAT(s_) (n += (size_t)snprintf(what + n, sizeof(what) - n, "%s%s", n ? ", " : "", (s_)))
	if (now.size != s->disk.size)
		WHAT("size");
	if (same_file && (now.dev != s->disk.dev || now.ino != s->disk.ino))
		WHAT("another file: device and inode");
	if ((same_file && now.mtime_ns != s->disk.mtime_ns) || (copy_of && copy_modified(b, copy_of)))
		WHAT("modification time");
	if (now.hash != s->disk.hash)
		WHAT("content");
#undef WHAT
	if (!n)
		return 0;
	if (!cfg || !cfg->force_disk)
		return util__fail(-EINVAL, err, errlen,
				  "disk %s changed since the snapshot (%s); use --force-disk to restore anyway", b->path, what);
	pr_warn("%s: disk %s changed since the snapshot (%s); restoring anyway (--force-disk)", b->vd.pd->name,
		b->path, what);
	return 0;
}

/* Make path the device's disk, in place of what init opened. */
static int reopen(struct blk *b, const char *path, char *err, size_t errlen)
{
	char abs[PATH_MAX];
	uint64_t size;
	int fd, ret;

	if (b->fd >= 0) {
		/* our own lock must not stand in the way of reopening the same file */
		close(b->fd);
		b->fd = -1;
	}
	ret = disk__open("virtio-blk", path, b->read_only, &fd, &size, abs, err, errlen);
	if (ret)
		return ret;
	b->fd = fd;
	b->size = size;
	b->capacity = size / SECTOR;
	snprintf(b->path, sizeof(b->path), "%s", abs);
	return 0;
}

int blk__restore(void *priv, const void *state, char *err, size_t errlen)
{
	struct pci_dev *pd = priv;
	struct blk *b = pd->priv;
	const struct blk_state *s = state;
	const struct vm_config *cfg = pd->vm->cfg;
	bool overridden = blk__overridden(pd), same_file = !overridden;
	const char *copy_of = NULL;
	int ret = 0;

	pthread_mutex_lock(&pd->lock);
	ret = pci__check_placement(pd, &s->pci, err, errlen);
	if (ret)
		goto out;
	if (s->copy[0] && !overridden && cfg && cfg->restore) {
		/* the snapshot carries its disk: run on that copy */
		const char *slash = strrchr(cfg->restore, '/');
		char path[PATH_MAX];

		if (slash)
			ret = snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - cfg->restore), cfg->restore, s->copy);
		else
			ret = snprintf(path, sizeof(path), "%s", s->copy);
		ret = ret >= (int)sizeof(path) ? util__fail(-ENAMETOOLONG, err, errlen, "disk copy path too long") :
						 reopen(b, path, err, errlen);
		same_file = false;
		copy_of = cfg->restore;
	} else if (b->fd < 0) {
		/*
		 * The options' path, as the command line would have opened it;
		 * where that names nothing (a relative path, restored elsewhere),
		 * the absolute one recorded at the save.
		 */
		char opt[PATH_MAX];

		snprintf(opt, sizeof(opt), "%s", b->path);
		ret = reopen(b, opt, err, errlen);
		if (ret == -ENOENT && strcmp(opt, s->path))
			ret = reopen(b, s->path, err, errlen);
	}
	if (!ret)
		ret = check_disk(b, s, same_file, copy_of, err, errlen);
	if (!ret)
		ret = virtio__restore(&b->vd, &s->virtio, err, errlen);
	if (!ret) {
		pci__restore(pd, &s->pci);
		/* the guest has seen this ID already */
		snprintf(b->serial, sizeof(b->serial), "%s", s->serial);
	}
out:
	pthread_mutex_unlock(&pd->lock);
	return ret;
}

int blk__copy_files(void *priv, void *state, const char *path, const char *name, char *err, size_t errlen)
{
	int ret = vblk__copy_disk(priv, path, err, errlen);

	if (!ret)
		vblk__set_copy(state, name);
	return ret;
}
