/*
 * A disk image: a regular file or a block device, opened and locked
 * (disk__open), identified for snapshots (disk__ident), and copied for a
 * snapshot that carries its disks (disk__copy).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "khyve/util.h"

#include "backend.h"

#define DISK_SAMPLES		66		/* blocks hashed for the disk's identity */
#define DISK_SAMPLE_SIZE	4096u

int disk__open(const char *who, const char *path, bool ro, int *fdp, uint64_t *sizep, char *abs,
	       char *err, size_t errlen)
{
	struct flock fl = { .l_type = ro ? F_RDLCK : F_WRLCK, .l_whence = SEEK_SET };
	struct stat st;
	uint64_t size;
	int fd, ret;

	/* O_NONBLOCK: a FIFO must not hang us; it has no effect on files and disks */
	fd = open(path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return util__fail(-errno, err, errlen, "%s: cannot open disk image '%s': %s", who, path,
				  strerror(errno));
	if (fstat(fd, &st) < 0) {
		ret = util__fail(-errno, err, errlen, "%s: disk image '%s': %s", who, path, strerror(errno));
		goto fail;
	}
	if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
			ret = util__fail(-errno, err, errlen, "%s: disk image '%s': size: %s", who, path,
					 strerror(errno));
			goto fail;
		}
	} else {
		ret = util__fail(-EINVAL, err, errlen, "%s: disk image '%s' is not a regular file or a block device",
				 who, path);
		goto fail;
	}
	if (fcntl(fd, F_SETFL, 0) < 0) {
		ret = util__fail(-errno, err, errlen, "%s: disk image '%s': %s", who, path, strerror(errno));
		goto fail;
	}
	if (fcntl(fd, F_OFD_SETLK, &fl) < 0 && (errno == EAGAIN || errno == EACCES)) {
		ret = util__fail(-EBUSY, err, errlen, "%s: disk image '%s' is in use by another process (locked)",
				 who, path);
		goto fail;
	}
	if (!realpath(path, abs))
		snprintf(abs, PATH_MAX, "%s", path);
	*fdp = fd;
	*sizep = size;
	return 0;
fail:
	close(fd);
	return ret;
}

int disk__pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;

	while (got < len) {
		ssize_t r = pread(fd, (uint8_t *)buf + got, len - got, (off_t)(off + got));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		got += (size_t)r;
	}
	return 0;
}

int disk__pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = pwrite(fd, (const uint8_t *)buf + done, len - done, (off_t)(off + done));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		done += (size_t)r;
	}
	return 0;
}

void disk__ident(int fd, uint64_t size, struct disk_ident *id)
{
	uint8_t buf[DISK_SAMPLE_SIZE];
	uint64_t nblk = (size + DISK_SAMPLE_SIZE - 1) / DISK_SAMPLE_SIZE, prev = UINT64_MAX;
	struct stat st;

	memset(id, 0, sizeof(*id));
	id->size = size;
	if (fstat(fd, &st) == 0) {
		id->dev = st.st_dev;
		id->ino = st.st_ino;
		id->mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000ULL + (uint64_t)st.st_mtim.tv_nsec;
	}
	id->hash = XXH3_64bits(&size, sizeof(size));
	for (uint64_t i = 0; nblk && i < DISK_SAMPLES; i++) {
		uint64_t k = i * (nblk - 1) / (DISK_SAMPLES - 1);
		uint64_t off = k * DISK_SAMPLE_SIZE;
		size_t len = size - off < DISK_SAMPLE_SIZE ? (size_t)(size - off) : DISK_SAMPLE_SIZE;

		if (k == prev)
			continue;
		prev = k;
		if (disk__pread_full(fd, buf, len, off))
			memset(buf, 0xff, len);	/* unreadable: unlike any content */
		id->hash = XXH3_64bits_withSeed(buf, len, id->hash ^ k);
	}
}

/* Copy [off, off + len) of in to the same place in out. */
static int copy_range(int in, int out, uint64_t off, uint64_t len, uint8_t **buf)
{
	while (len) {
		size_t chunk = len < (1u << 30) ? (size_t)len : (1u << 30);
		ssize_t r;

		if (!*buf) {
			loff_t a = (loff_t)off, c = (loff_t)off;

			r = copy_file_range(in, &a, out, &c, chunk, 0);
			if (r < 0 && errno != EINTR && errno != EIO && errno != ENOSPC && errno != EDQUOT) {
				/* not between these files: read and write */
				*buf = malloc(1 << 20);
				if (!*buf)
					return -ENOMEM;
				continue;
			}
		} else {
			r = pread(in, *buf, chunk < (1u << 20) ? chunk : (1u << 20), (off_t)off);
			if (r > 0) {
				int w = disk__pwrite_full(out, *buf, (size_t)r, off);

				if (w)
					return w;
			}
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;	/* the disk shrank under us */
		off += (uint64_t)r;
		len -= (uint64_t)r;
	}
	return 0;
}

int disk__copy(int fd, uint64_t size, const char *path, const char *dest, char *err, size_t errlen)
{
	uint64_t off = 0;
	uint8_t *buf = NULL;
	int out, ret = 0;

	out = open(dest, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (out < 0)
		return util__fail(-errno, err, errlen, "cannot create disk copy '%s': %s", dest, strerror(errno));
	if (ioctl(out, FICLONE, fd) == 0)
		goto sync;
	/* a sparse copy: only the data, the holes stay holes */
	if (ftruncate(out, (off_t)size) < 0) {
		ret = -errno;
		goto fail;
	}
	while (off < size) {
		off_t data = lseek(fd, (off_t)off, SEEK_DATA), hole;

		if (data < 0 && errno == ENXIO)
			break;			/* only a hole is left */
		if (data < 0) {
			data = (off_t)off;	/* no SEEK_DATA here: copy everything */
			hole = (off_t)size;
		} else {
			hole = lseek(fd, data, SEEK_HOLE);
			if (hole < 0 || (uint64_t)hole > size)
				hole = (off_t)size;
		}
		if ((uint64_t)data >= size)
			break;
		ret = copy_range(fd, out, (uint64_t)data, (uint64_t)(hole - data), &buf);
		if (ret)
			goto fail;
		off = (uint64_t)hole;
	}
sync:
	if (fsync(out) < 0) {
		ret = -errno;
		goto fail;
	}
	close(out);
	free(buf);
	return 0;
fail:
	util__fail(ret, err, errlen, "copying disk '%s' to '%s': %s", path, dest, strerror(-ret));
	close(out);
	unlink(dest);
	free(buf);
	return ret;
}
