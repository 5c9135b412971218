/*
 * The control socket: RUNDIR/VMNAME.sock, JSON requests one per line, served
 * from the main thread's poll loop.  docs/control-protocol.md is the
 * specification.  This file creates the socket, admits clients, reads and
 * splits their lines (each complete line goes to client__line() in
 * server.c) and buffers their replies.
 *
 * Everything here runs on the main thread between two polls, so nothing is
 * locked.  No client can make the main thread wait: every socket is
 * non-blocking, each client has a bounded input buffer (one request line)
 * and a bounded output buffer (a client that leaves too many replies unread
 * is dropped), and clients are served in turn, one read each per round.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "khyve/control.h"
#include "khyve/log.h"
#include "khyve/util.h"
#include "khyve/vm.h"

#include "internal.h"

/* ---- output ---------------------------------------------------------- */

void client__flush(struct client *c)
{
	while (c->outlen && !c->dead) {
		ssize_t w = send(c->fd, c->out + c->outoff, c->outlen, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				pr_debug("control: client pid %d: %s", (int)c->pid, strerror(errno));
				c->dead = true;
			}
			return;
		}
		c->outoff += (size_t)w;
		c->outlen -= (size_t)w;
	}
	if (!c->outlen)
		c->outoff = 0;
}

/* Queue one message (taking the reference) and push it out if the socket takes it. */
void client__send(struct client *c, json_t *msg)
{
	char *s;
	size_t len;

	if (!msg || c->dead)
		goto out;
	/* real numbers are milliseconds with microsecond resolution */
	s = json_dumps(msg, JSON_COMPACT | JSON_REAL_PRECISION(15));
	if (!s) {
		c->dead = true;
		goto out;
	}
	len = strlen(s);
	client__flush(c);
	if (c->outlen + len + 1 > CONTROL_OUT_MAX) {
		/* It does not read its replies: dropping it costs nobody else anything. */
		pr_debug("control: client pid %d leaves its replies unread: dropped", (int)c->pid);
		c->dead = true;
		free(s);
		goto out;
	}
	if (c->outoff + c->outlen + len + 1 > c->outcap) {
		if (c->outoff) {
			memmove(c->out, c->out + c->outoff, c->outlen);
			c->outoff = 0;
		}
		if (c->outlen + len + 1 > c->outcap) {
			size_t cap = c->outcap ? c->outcap : 4096;
			char *n;

			while (cap < c->outlen + len + 1)
				cap *= 2;
			n = realloc(c->out, cap);
			if (!n) {
				c->dead = true;
				free(s);
				goto out;
			}
			c->out = n;
			c->outcap = cap;
		}
	}
	memcpy(c->out + c->outoff + c->outlen, s, len);
	c->out[c->outoff + c->outlen + len] = '\n';
	c->outlen += len + 1;
	free(s);
	client__flush(c);
out:
	json_decref(msg);
}

/* The protocol promises one line per error: no control characters in it. */
static void one_line(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
}

void client__error(struct client *c, json_t *id, char *err)
{
	if (!err[0])
		snprintf(err, ERR_MAX, "request failed");
	one_line(err);
	client__send(c, json_pack("{s:O, s:b, s:s}", "id", id ? id : json_null(), "ok", 0,
				  "error", err));
}

/* Refuse a connection with one error line, then close it. */
static void control__reject(int fd, const char *why)
{
	json_t *msg = json_pack("{s:n, s:b, s:s}", "id", "ok", 0, "error", why);
	char *s = msg ? json_dumps(msg, JSON_COMPACT) : NULL;

	if (s) {
		size_t len = strlen(s);

		s[len] = '\n';	/* json_dumps' NUL becomes the newline */
		if (send(fd, s, len + 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			pr_debug("control: reject: %s", strerror(errno));
		free(s);
	}
	json_decref(msg);
	/*
	 * Unread input at close() makes the peer's read fail with ECONNRESET
	 * after our line; take what is already there so it sees a plain EOF.
	 */
	for (int i = 0; i < 16; i++) {
		char buf[4096];

		if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0)
			break;
	}
	close(fd);
}

/* ---- input ----------------------------------------------------------- */

static void client__drop_line_fd(struct client *c)
{
	if (c->line_fd >= 0)
		close(c->line_fd);
	c->line_fd = -1;
	c->line_nfds = 0;
}

/* Descriptors received belong to the line they arrived with; keep the first. */
static void client__take_fds(struct client *c, int *fds, unsigned int nfds, unsigned int extra)
{
	for (unsigned int i = 0; i < nfds; i++) {
		if (c->line_fd < 0 && !c->discarding)
			c->line_fd = fds[i];
		else
			close(fds[i]);
	}
	c->line_nfds += nfds + extra;
}

/*
 * Split received bytes into lines.  With SOCK_STREAM, Linux returns the
 * descriptors of a sendmsg() together with the last bytes that recvmsg()
 * returns (it stops reading after a message that carried descriptors), so
 * the descriptors go to the line holding the last byte of this chunk: the
 * request that the client sent them with (docs/control-protocol.md).
 */
static void client__input(struct control *ctl, struct client *c, const char *data, size_t n,
			  int *fds, unsigned int nfds, unsigned int extra)
{
	size_t i = 0;

	while (i < n && !c->dead) {
		const char *nl = memchr(data + i, '\n', n - i);
		size_t seg = nl ? (size_t)(nl - (data + i)) : n - i;

		if ((nfds || extra) && (!nl || (size_t)(nl - data) + 1 == n)) {
			client__take_fds(c, fds, nfds, extra);
			nfds = extra = 0;
		}
		if (!c->discarding && c->inlen + seg > CONTROL_LINE_MAX - 1) {
			char err[ERR_MAX];

			snprintf(err, sizeof(err), "request line longer than %d bytes: discarded",
				 CONTROL_LINE_MAX);
			client__error(c, NULL, err);
			client__drop_line_fd(c);
			c->discarding = true;
			c->inlen = 0;
		}
		if (!c->discarding) {
			memcpy(c->in + c->inlen, data + i, seg);
			c->inlen += seg;
		}
		i += seg;
		if (nl) {
			i++;
			if (c->discarding)
				c->discarding = false;
			else
				client__line(ctl, c, c->in, c->inlen);
			c->inlen = 0;
			client__drop_line_fd(c);
		}
	}
	for (unsigned int k = 0; k < nfds; k++)
		close(fds[k]);
	if (c->discarding)
		client__drop_line_fd(c);
}

static void client__read(struct control *ctl, struct client *c)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(CONTROL_CMSG_FDS * sizeof(int))];
	} cbuf;
	struct iovec iov = { .iov_base = ctl->rbuf, .iov_len = sizeof(ctl->rbuf) };
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cbuf.b,
		.msg_controllen = sizeof(cbuf.b),
	};
	int fds[CONTROL_CMSG_FDS];
	unsigned int nfds = 0, extra = 0;
	ssize_t r;

	r = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (r < 0) {
		if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
			pr_debug("control: client pid %d: %s", (int)c->pid, strerror(errno));
			c->dead = true;
		}
		return;
	}
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

		for (size_t j = 0; j < k; j++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + j * sizeof(int), sizeof(int));
			if (nfds < CONTROL_CMSG_FDS)
				fds[nfds++] = fd;
			else
				close(fd);
		}
	}
	/* the kernel closed what did not fit; still count it as "too many" */
	if (mh.msg_flags & MSG_CTRUNC)
		extra = 1;
	if (r == 0) {
		for (unsigned int k = 0; k < nfds; k++)
			close(fds[k]);
		c->eof = true;
		if (c->inlen || c->discarding) {
			char err[ERR_MAX];

			snprintf(err, sizeof(err), "incomplete request at the end of the input "
				 "(a request ends with a newline)");
			client__error(c, NULL, err);
		}
		client__drop_line_fd(c);
		c->inlen = 0;
		return;
	}
	client__input(ctl, c, ctl->rbuf, (size_t)r, fds, nfds, extra);
}

/* ---- connections ----------------------------------------------------- */

static void client__free(struct client *c)
{
	client__drop_line_fd(c);
	if (c->fd >= 0)
		close(c->fd);
	free(c->in);
	free(c->out);
	free(c);
}

static void control__accept_one(struct control *ctl, int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct client *c;
	char why[160];

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		snprintf(why, sizeof(why), "cannot check the peer's credentials: %s", strerror(errno));
		control__reject(fd, why);
		return;
	}
	if (cred.uid != ctl->owner && cred.uid != 0 && cred.uid != ctl->user) {
		pr_info("control: refused pid %d: uid %u is neither the VM owner (uid %u), its user nor root",
			(int)cred.pid, (unsigned int)cred.uid, (unsigned int)ctl->owner);
		snprintf(why, sizeof(why), "permission denied: uid %u is neither the VM owner "
			 "(uid %u), its user nor root", (unsigned int)cred.uid, (unsigned int)ctl->owner);
		control__reject(fd, why);
		return;
	}
	if (ctl->nclients >= CONTROL_MAX_CLIENTS) {
		snprintf(why, sizeof(why), "too many clients (at most %d at a time)",
			 CONTROL_MAX_CLIENTS);
		control__reject(fd, why);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c)
		c->in = malloc(CONTROL_LINE_MAX);
	if (!c || !c->in) {
		if (c)
			free(c);
		control__reject(fd, "out of memory");
		return;
	}
	c->fd = fd;
	c->uid = cred.uid;
	c->pid = cred.pid;
	c->line_fd = -1;
	ctl->clients[ctl->nclients++] = c;
	pr_debug("control: client pid %d uid %u connected", (int)c->pid, (unsigned int)c->uid);
}

static void control__accept(struct control *ctl)
{
	for (int i = 0; i < CONTROL_ACCEPT_BURST; i++) {
		int fd = accept4(ctl->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			control__accept_one(ctl, fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if ((errno == EMFILE || errno == ENFILE) && ctl->spare_fd >= 0) {
			/*
			 * Out of descriptors: the pending connection would keep the
			 * listener readable and poll() would spin.  Free the spare,
			 * take the connection, refuse it, keep the spare again.
			 */
			close(ctl->spare_fd);
			fd = accept4(ctl->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd >= 0)
				control__reject(fd, "khyve is out of file descriptors");
			ctl->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
			continue;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			pr_warn("control: accept: %s", strerror(errno));
		return;
	}
}

/* Close clients that are gone or done, keeping the others in order. */
static void control__reap(struct control *ctl)
{
	unsigned int k = 0;

	for (unsigned int i = 0; i < ctl->nclients; i++) {
		struct client *c = ctl->clients[i];

		/* a client waiting for its save's reply stays until it is sent */
		if (c->dead || (c->eof && !c->outlen && ctl->save.c != c)) {
			pr_debug("control: client pid %d gone", (int)c->pid);
			if (ctl->save.c == c)
				ctl->save.c = NULL;
			client__free(c);
		} else {
			ctl->clients[k++] = c;
		}
	}
	for (unsigned int i = k; i < ctl->nclients; i++)
		ctl->clients[i] = NULL;
	ctl->nclients = k;
}

unsigned int control__pollfds(struct control *ctl, struct pollfd *p, unsigned int max)
{
	unsigned int n = 0;

	if (!ctl || !max)
		return 0;
	if (max > CONTROL_MAX_POLLFDS)
		max = CONTROL_MAX_POLLFDS;
	p[n] = (struct pollfd){ .fd = ctl->lfd, .events = POLLIN };
	ctl->poll_slot[n++] = -1;
	for (unsigned int i = 0; i < ctl->nclients && n < max; i++) {
		struct client *c = ctl->clients[i];
		short ev = 0;

		if (!c->eof)
			ev |= POLLIN;
		if (c->outlen)
			ev |= POLLOUT;
		p[n] = (struct pollfd){ .fd = c->fd, .events = ev };
		ctl->poll_slot[n++] = (int)i;
	}
	ctl->npoll = n;
	return n;
}

void control__handle(struct control *ctl, const struct pollfd *p, unsigned int n)
{
	bool listener = false;

	if (!ctl)
		return;
	for (unsigned int i = 0; i < n && i < ctl->npoll; i++) {
		struct client *c;
		short rev = p[i].revents;

		if (!rev)
			continue;
		if (ctl->poll_slot[i] < 0) {
			listener = true;
			continue;
		}
		c = ctl->clients[ctl->poll_slot[i]];
		if (!c || c->fd != p[i].fd)
			continue;
		if (rev & POLLNVAL) {
			c->dead = true;
			continue;
		}
		if (rev & POLLOUT)
			client__flush(c);
		if ((rev & (POLLIN | POLLHUP | POLLERR)) && !c->eof && !c->dead)
			client__read(ctl, c);
		else if ((rev & (POLLHUP | POLLERR)) && c->eof)
			client__flush(c);	/* fails and marks it dead if the peer is gone */
	}
	/*
	 * Clients first, new connections last: a slot freed by a client that
	 * hung up in this round is free for the next connection.
	 */
	control__reap(ctl);
	if (listener)
		control__accept(ctl);
}

/* ---- the socket ------------------------------------------------------ */

/* mkdir -p with mode 0700 for whatever is missing. */
static int mkdir_parents(const char *dir)
{
	char *p = strdup(dir);
	int ret = 0;

	if (!p)
		return -ENOMEM;
	for (char *s = p + 1; ; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char was = *s;

		*s = '\0';
		if (mkdir(p, 0700) < 0 && errno != EEXIST) {
			ret = -errno;
			break;
		}
		*s = was;
		if (!was)
			break;
	}
	free(p);
	return ret;
}

static int rundir__check(const char *dir, char *err, size_t errlen)
{
	mode_t old = umask(077);	/* what we create is 0700, whatever the caller's umask */
	struct stat st;
	int ret;

	ret = mkdir_parents(dir);
	umask(old);
	if (lstat(dir, &st) < 0)
		return util__fail(-errno, err, errlen, "cannot create run directory %s: %s", dir,
			    strerror(ret ? -ret : errno));
	if (S_ISLNK(st.st_mode))
		return util__fail(-ELOOP, err, errlen, "run directory %s is a symbolic link: refusing it",
			    dir);
	if (!S_ISDIR(st.st_mode))
		return util__fail(-ENOTDIR, err, errlen, "run directory %s is not a directory", dir);
	/* others who may write there could replace our socket with theirs */
	if (st.st_uid != geteuid() && st.st_uid != 0)
		return util__fail(-EPERM, err, errlen, "run directory %s belongs to uid %u, not to you or "
			    "root", dir, (unsigned int)st.st_uid);
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		return util__fail(-EPERM, err, errlen, "run directory %s is writable by others (mode %04o): "
			    "use a private directory", dir, (unsigned int)(st.st_mode & 07777));
	return 0;
}

/* An existing RUNDIR/NAME.sock: a running VM's (error), stale (removed), or not ours. */
static int control__check_existing(const struct sockaddr_un *sa, const char *name,
				   char *err, size_t errlen)
{
	struct stat st;
	int fd, ret;

	if (lstat(sa->sun_path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return util__fail(-errno, err, errlen, "cannot check %s: %s", sa->sun_path, strerror(errno));
	}
	if (!S_ISSOCK(st.st_mode))
		return util__fail(-EEXIST, err, errlen, "%s exists and is not a socket: refusing to replace it",
			    sa->sun_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return util__fail(-errno, err, errlen, "socket: %s", strerror(errno));
	ret = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	if (ret == 0 || errno == EAGAIN || errno == EINPROGRESS) {
		/* it answers (or its backlog is full): that VM is alive */
		close(fd);
		return util__fail(-EADDRINUSE, err, errlen, "a VM named %s is already running (%s)",
			    name, sa->sun_path);
	}
	ret = -errno;
	close(fd);
	if (ret != -ECONNREFUSED)
		return util__fail(ret, err, errlen, "cannot check the existing socket %s: %s",
			    sa->sun_path, strerror(-ret));
	/* nobody listens: left behind by a khyve that was killed */
	if (unlink(sa->sun_path) < 0 && errno != ENOENT)
		return util__fail(-errno, err, errlen, "cannot remove the stale socket %s: %s",
			    sa->sun_path, strerror(errno));
	pr_debug("control: removed stale socket %s", sa->sun_path);
	return 0;
}

int control__open(struct vm *vm, const char *rundir, struct control **out, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX }, tmp = { .sun_family = AF_UNIX };
	const char *name = vm->cfg->name;
	struct control *ctl = NULL;
	struct stat st;
	size_t dlen;
	mode_t old;
	int n, ret, dfd;

	*out = NULL;
	if (!name || !name[0])
		return util__fail(-EINVAL, err, errlen, "the VM has no name for its control socket");
	dlen = strlen(rundir);
	if (!dlen)
		return util__fail(-EINVAL, err, errlen, "invalid run directory ''");
	while (dlen > 1 && rundir[dlen - 1] == '/')
		dlen--;
	n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%.*s/%s.sock", (int)dlen, rundir, name);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
		return util__fail(-ENAMETOOLONG, err, errlen, "control socket path %.*s/%s.sock is too long "
			    "(%d bytes; at most %zu): choose a shorter --rundir", (int)dlen, rundir,
			    name, n, sizeof(sa.sun_path) - 1);
	sa.sun_path[dlen] = '\0';
	ret = rundir__check(sa.sun_path, err, errlen);
	if (ret)
		return ret;
	/*
	 * Khyves starting in one run directory take turns from the stale
	 * check to the link: two finding the same stale socket would
	 * otherwise both remove "it", the second removing the first's new one.
	 */
	dfd = open(sa.sun_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return util__fail(-errno, err, errlen, "cannot open run directory %s: %s", sa.sun_path,
				  strerror(errno));
	sa.sun_path[dlen] = '/';
	while (flock(dfd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			ret = util__fail(-errno, err, errlen, "cannot lock run directory %.*s: %s", (int)dlen,
					 rundir, strerror(errno));
			close(dfd);
			return ret;
		}
	}
	ret = control__check_existing(&sa, name, err, errlen);
	if (ret) {
		close(dfd);
		return ret;
	}

	ctl = calloc(1, sizeof(*ctl));
	if (!ctl) {
		ret = util__fail(-ENOMEM, err, errlen, "out of memory");
		goto err_free;
	}
	ctl->vm = vm;
	ctl->owner = getuid();
	ctl->user = (uid_t)-1;
	ctl->spare_fd = -1;
	memcpy(ctl->path, sa.sun_path, sizeof(ctl->path));
	ctl->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (ctl->lfd < 0) {
		ret = util__fail(-errno, err, errlen, "socket: %s", strerror(errno));
		goto err_free;
	}
	/*
	 * Bound and listening under a private name first, then linked to the
	 * public one: a socket that is bound but not yet listening refuses
	 * connections, and a second khyve of the same name starting in that
	 * moment would take it for stale, remove it and run beside us.
	 * link() fails if the name exists, so of two racing khyves one wins.
	 */
	n = snprintf(tmp.sun_path, sizeof(tmp.sun_path), "%.*s/.%s.%ld", (int)dlen, rundir,
		     name, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof(tmp.sun_path)) {
		ret = util__fail(-ENAMETOOLONG, err, errlen, "control socket path %.*s/.%s.%ld is too long "
				 "(%d bytes; at most %zu): choose a shorter --rundir", (int)dlen, rundir,
				 name, (long)getpid(), n, sizeof(tmp.sun_path) - 1);
		goto err_close;
	}
	unlink(tmp.sun_path);	/* ours by pid: only a killed khyve of this pid left it */
	/* born 0600: no moment at which others may connect */
	old = umask(0177);
	ret = bind(ctl->lfd, (struct sockaddr *)&tmp, sizeof(tmp));
	umask(old);
	if (ret < 0) {
		ret = util__fail(-errno, err, errlen, "cannot create the control socket %s: %s", tmp.sun_path,
				 strerror(errno));
		goto err_close;
	}
	if (lstat(tmp.sun_path, &st) < 0) {
		ret = util__fail(-errno, err, errlen, "cannot stat %s: %s", tmp.sun_path, strerror(errno));
		goto err_unlink;
	}
	ctl->dev = st.st_dev;
	ctl->ino = st.st_ino;
	if (listen(ctl->lfd, CONTROL_BACKLOG) < 0) {
		ret = util__fail(-errno, err, errlen, "listen on %s: %s", tmp.sun_path, strerror(errno));
		goto err_unlink;
	}
	if (link(tmp.sun_path, sa.sun_path) < 0) {
		ret = -errno;
		if (ret == -EEXIST)
			util__fail(ret, err, errlen, "a VM named %s is already running (%s)", name, sa.sun_path);
		else
			util__fail(ret, err, errlen, "cannot create the control socket %s: %s", sa.sun_path,
				   strerror(-ret));
		goto err_unlink;
	}
	unlink(tmp.sun_path);
	close(dfd);	/* the lock goes with it */
	ctl->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	pr_debug("control: listening on %s", sa.sun_path);
	*out = ctl;
	return 0;

err_unlink:
	unlink(tmp.sun_path);
err_close:
	close(ctl->lfd);
err_free:
	free(ctl);
	close(dfd);
	return ret;
}

/* Give replies still queued (the last one of a suspend) a moment to go out. */
static void control__flush_all(struct control *ctl)
{
	uint64_t deadline = util__now_ns() + CLOSE_FLUSH_MS * 1000000ULL;

	for (;;) {
		struct pollfd p[CONTROL_MAX_CLIENTS];
		unsigned int n = 0;
		uint64_t now;

		for (unsigned int i = 0; i < ctl->nclients; i++) {
			struct client *c = ctl->clients[i];

			client__flush(c);
			if (c->outlen && !c->dead)
				p[n++] = (struct pollfd){ .fd = c->fd, .events = POLLOUT };
		}
		now = util__now_ns();
		if (!n || now >= deadline)
			return;
		if (poll(p, n, (int)((deadline - now) / 1000000) + 1) <= 0)
			return;
	}
}

int control__admit(struct control *ctl, uid_t uid, char *err, size_t errlen)
{
	struct stat st;

	/* the socket we made, not whatever may have taken its name since */
	if (fstatat(AT_FDCWD, ctl->path, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_dev != ctl->dev ||
	    st.st_ino != ctl->ino)
		return util__fail(-ESTALE, err, errlen, "the control socket %s is no longer khyve's",
				  ctl->path);
	/* connect() needs write permission on the socket: it stays 0600, now the user's */
	if (fchownat(AT_FDCWD, ctl->path, uid, (gid_t)-1, AT_SYMLINK_NOFOLLOW) < 0)
		return util__fail(-errno, err, errlen, "cannot hand the control socket %s to uid %u: %s",
				  ctl->path, (unsigned int)uid, strerror(errno));
	ctl->user = uid;
	return 0;
}

void control__close(struct control *ctl)
{
	struct stat st;

	if (!ctl)
		return;
	control__cancel_save(ctl);
	control__flush_all(ctl);
	for (unsigned int i = 0; i < ctl->nclients; i++)
		client__free(ctl->clients[i]);
	ctl->nclients = 0;
	/* another khyve may have replaced a socket it found stale: leave that one */
	if (lstat(ctl->path, &st) == 0 && st.st_dev == ctl->dev && st.st_ino == ctl->ino)
		unlink(ctl->path);
	close(ctl->lfd);
	if (ctl->spare_fd >= 0)
		close(ctl->spare_fd);
	free(ctl);
}
