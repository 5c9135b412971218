/*
 * Character backends: stdio, file:PATH, socket:PATH and null (see chardev.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "khyve/chardev.h"
#include "khyve/log.h"
#include "khyve/outq.h"
#include "khyve/util.h"

int chardev__parse(const char *who, const char *spec, enum chardev_kind *kind, const char **path, char *err,
		   size_t errlen)
{
	if (!spec || !*spec) {
		snprintf(err, errlen, "%s needs a backend: stdio, file:PATH, socket:PATH or null", who);
		return -EINVAL;
	}
	*path = NULL;
	if (!strcmp(spec, "stdio")) {
		*kind = CHARDEV_STDIO;
		return 0;
	}
	if (!strcmp(spec, "null")) {
		*kind = CHARDEV_NULL;
		return 0;
	}
	if (!strncmp(spec, "file:", 5)) {
		*kind = CHARDEV_FILE;
		*path = spec + 5;
	} else if (!strncmp(spec, "socket:", 7)) {
		*kind = CHARDEV_SOCKET;
		*path = spec + 7;
	} else {
		snprintf(err, errlen, "%s: unknown backend '%s' (stdio, file:PATH, socket:PATH or null)", who, spec);
		return -EINVAL;
	}
	if (!**path) {
		snprintf(err, errlen, "%s: empty path in '%s'", who, spec);
		return -EINVAL;
	}
	if (*kind == CHARDEV_SOCKET && strlen(*path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		snprintf(err, errlen, "%s: socket path too long: '%s'", who, *path);
		return -EINVAL;
	}
	return 0;
}

static int open_fd(enum chardev_kind kind, const char *who, const char *path, bool keep, char *err,
		   size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, ret;

	switch (kind) {
	case CHARDEV_NULL:
		return -1;	/* not an error: chardev__open checks the kind first */
	case CHARDEV_STDIO:
		return STDOUT_FILENO;
	case CHARDEV_FILE:
		fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (keep ? 0 : O_TRUNC), 0644);
		if (fd < 0)
			return util__fail(-errno, err, errlen, "%s: %s: %s", who, path, strerror(errno));
		return fd;
	case CHARDEV_SOCKET:
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return util__fail(-errno, err, errlen, "%s: socket: %s", who, strerror(errno));
		memcpy(sa.sun_path, path, strlen(path) + 1);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			ret = util__fail(-errno, err, errlen, "%s: connect %s: %s", who, path, strerror(errno));
			close(fd);
			return ret;
		}
		return fd;
	}
	return -EINVAL;
}

int chardev__open(struct chardev *cd, const char *who, const char *label, enum chardev_kind kind,
		  const char *path, bool keep, size_t qsize, const char *qname, char *err, size_t errlen)
{
	struct stat st;
	int fd;

	cd->kind = kind;
	cd->fd = -1;
	cd->outq = NULL;
	cd->broken = false;
	snprintf(cd->who, sizeof(cd->who), "%s", label);
	if (kind == CHARDEV_NULL)
		return 0;
	fd = open_fd(kind, who, path, keep, err, errlen);
	if (fd < 0)
		return fd;
	cd->fd = fd;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
		return 0;
	cd->outq = outq__create(fd, qsize, qname);
	if (!cd->outq) {
		int ret = util__fail(-errno, err, errlen, "%s: output queue: %s", who, strerror(errno));

		if (kind != CHARDEV_STDIO)
			close(fd);
		cd->fd = -1;
		return ret;
	}
	return 0;
}

int chardev__input_fd(const struct chardev *cd, bool stdin_free)
{
	if (cd->kind == CHARDEV_SOCKET)
		return cd->fd;
	if (cd->kind == CHARDEV_STDIO && stdin_free)
		return STDIN_FILENO;
	return -1;
}

bool chardev__write(struct chardev *cd, const void *p, size_t len)
{
	const uint8_t *b = p;

	if (cd->broken)
		return false;
	if (cd->kind == CHARDEV_NULL)
		return true;
	if (cd->outq) {
		outq__write(cd->outq, p, len);
		return true;
	}
	while (len) {
		ssize_t r = write(cd->fd, b, len);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			pr_warn("%s: write: %s; output dropped from now on", cd->who, strerror(errno));
			cd->broken = true;
			return false;
		}
		b += r;
		len -= (size_t)r;
	}
	return true;
}

void chardev__truncate(struct chardev *cd, uint64_t len)
{
	if (cd->kind != CHARDEV_FILE)
		return;
	if (ftruncate(cd->fd, (off_t)len) < 0) {
		pr_warn("%s: truncate: %s; output dropped", cd->who, strerror(errno));
		cd->broken = true;
	}
}

void chardev__close(struct chardev *cd)
{
	outq__destroy(cd->outq);	/* flushed, within OUTQ_FLUSH_MAX_MS */
	cd->outq = NULL;
	if (cd->kind != CHARDEV_STDIO && cd->fd >= 0)
		close(cd->fd);
	cd->fd = -1;
}
