/*
 * khyvectl: ask a running khyve to checkpoint, suspend, pause, resume or
 * report its status through RUNDIR/VMNAME.sock (docs/control-protocol.md),
 * or describe a snapshot offline.  Modelled on bhyvectl(8); docs/khyvectl.8
 * is its manual and follows usage() below.
 *
 * Exit status: 0 success, 1 the request failed (the reason on stderr),
 * 2 usage error.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "khyve/control.h"
#include "khyve/snapshot.h"
#include "khyve/config.h"
#include "khyve/util.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2

#define DEFAULT_TIMEOUT_S 60
#define REPLY_MAX (1024 * 1024)	/* longest server line we accept */
#define REQUEST_ID 1
#define VMNAME_MAX 64

enum action { ACT_NONE, ACT_CHECKPOINT, ACT_SUSPEND, ACT_PAUSE, ACT_RESUME, ACT_STATUS, ACT_INSPECT };

static const char *const action_cmd[] = {
	[ACT_CHECKPOINT] = "checkpoint",
	[ACT_SUSPEND] = "suspend",
	[ACT_PAUSE] = "pause",
	[ACT_RESUME] = "resume",
	[ACT_STATUS] = "status",
};

struct ctl_opts {
	enum action act;
	const char *act_opt;	/* the option that chose it, for messages */
	const char *vm;
	const char *rundir;
	const char *file;
	bool json;
	bool disks;		/* --disks: copy the disks into the snapshot */
	unsigned int timeout_s;	/* 0: wait forever */
};

static void usage(FILE *f)
{
	fprintf(f,
"Usage: khyvectl --vm=NAME [--rundir=DIR] [--timeout=SEC] ACTION\n"
"       khyvectl --inspect=FILE [--json]\n"
"\n"
"Control the running khyve virtual machine NAME through its control socket\n"
"DIR/NAME.sock, or describe a snapshot without any VM.\n"
"\n"
"Actions (exactly one):\n"
"      --checkpoint=FILE  save a snapshot to FILE and FILE.state; the VM keeps\n"
"                         running\n"
"      --suspend=FILE     save a snapshot, then khyve exits with status 5\n"
"      --disks            with --checkpoint or --suspend: also copy every disk\n"
"                         to FILE.<device>.disk (reflink, else sparse copy)\n"
"                         while the VM is paused; restore then uses the copy\n"
"      --pause            stop the VM's vCPUs\n"
"      --resume           let paused vCPUs run again\n"
"      --status           print the VM's state as JSON\n"
"      --inspect=FILE     describe the snapshot FILE (and FILE.state)\n"
"\n"
"Options:\n"
"      --vm=NAME          the VM, by the name it was started with\n"
"      --rundir=DIR       directory of the control sockets (default %s)\n"
"      --timeout=SEC      give up when the VM has said nothing for SEC seconds\n"
"                         (default %d; 0 waits forever)\n"
"      --json             with --inspect: JSON instead of text\n"
"  -h, --help             this help\n"
"\n"
"A relative FILE is relative to khyvectl's working directory.  On a terminal,\n"
"a save shows its progress.\n"
"\n"
"Exit status: 0 success, 1 the request failed (the reason is printed),\n"
"2 usage error.\n", CONTROL_DEFAULT_RUNDIR, DEFAULT_TIMEOUT_S);
}

__attribute__((format(printf, 1, 2)))
static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("khyvectl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'khyvectl --help' for more information.\n", stderr);
	return -EINVAL;
}


static int set_action(struct ctl_opts *o, enum action act, const char *opt, const char *file)
{
	if (o->act != ACT_NONE)
		return usage_error("%s and %s: give one action at a time", o->act_opt, opt);
	if (file && !file[0])
		return usage_error("%s needs a FILE", opt);
	o->act = act;
	o->act_opt = opt;
	o->file = file;
	return 0;
}

/* 0, 1 when --help was printed, or -EINVAL after a usage message. */
static int parse_args(struct ctl_opts *o, int argc, char **argv)
{
	enum { OPT_VM = 256, OPT_RUNDIR, OPT_CHECKPOINT, OPT_SUSPEND, OPT_PAUSE, OPT_RESUME,
	       OPT_STATUS, OPT_INSPECT, OPT_JSON, OPT_TIMEOUT, OPT_DISKS };
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, OPT_VM },
		{ "rundir", required_argument, NULL, OPT_RUNDIR },
		{ "checkpoint", required_argument, NULL, OPT_CHECKPOINT },
		{ "suspend", required_argument, NULL, OPT_SUSPEND },
		{ "pause", no_argument, NULL, OPT_PAUSE },
		{ "resume", no_argument, NULL, OPT_RESUME },
		{ "status", no_argument, NULL, OPT_STATUS },
		{ "inspect", required_argument, NULL, OPT_INSPECT },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "disks", no_argument, NULL, OPT_DISKS },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c, ret = 0;

	memset(o, 0, sizeof(*o));
	o->rundir = CONTROL_DEFAULT_RUNDIR;
	o->timeout_s = DEFAULT_TIMEOUT_S;
	opterr = 0;
	optind = 0;
	while (!ret && (c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_VM:
			if (!config__valid_name(optarg))
				return usage_error("invalid VM name '%s': 1 to %d of A-Z a-z 0-9 . _ -, "
						   "not starting with . or -", optarg, VMNAME_MAX);
			o->vm = optarg;
			break;
		case OPT_RUNDIR:
			if (!optarg[0])
				return usage_error("--rundir needs a directory");
			o->rundir = optarg;
			break;
		case OPT_CHECKPOINT:
			ret = set_action(o, ACT_CHECKPOINT, "--checkpoint", optarg);
			break;
		case OPT_SUSPEND:
			ret = set_action(o, ACT_SUSPEND, "--suspend", optarg);
			break;
		case OPT_PAUSE:
			ret = set_action(o, ACT_PAUSE, "--pause", NULL);
			break;
		case OPT_RESUME:
			ret = set_action(o, ACT_RESUME, "--resume", NULL);
			break;
		case OPT_STATUS:
			ret = set_action(o, ACT_STATUS, "--status", NULL);
			break;
		case OPT_INSPECT:
			ret = set_action(o, ACT_INSPECT, "--inspect", optarg);
			break;
		case OPT_JSON:
			o->json = true;
			break;
		case OPT_DISKS:
			o->disks = true;
			break;
		case OPT_TIMEOUT:
			if (util__parse_u64(optarg, &v) || v > 86400 * 365)
				return usage_error("invalid --timeout '%s': expected seconds, 0 for none",
						   optarg);
			o->timeout_s = (unsigned int)v;
			break;
		case 'h':
			usage(stdout);
			return 1;
		case ':':
			return usage_error("option '%s' needs an argument", argv[optind - 1]);
		default:
			/* getopt_long sets optopt to the option's value for "--pause=x" */
			if (optopt >= OPT_VM)
				return usage_error("option '%.*s' takes no argument",
						   (int)strcspn(argv[optind - 1], "="), argv[optind - 1]);
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (ret)
		return ret;
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (o->act == ACT_NONE)
		return usage_error("no action: give one of --checkpoint, --suspend, --pause, --resume, "
				   "--status or --inspect");
	if (o->act == ACT_INSPECT) {
		if (o->vm)
			return usage_error("--inspect reads a snapshot file and takes no --vm");
		return 0;
	}
	if (o->json)
		return usage_error("--json goes with --inspect only");
	if (o->disks && o->act != ACT_CHECKPOINT && o->act != ACT_SUSPEND)
		return usage_error("--disks goes with --checkpoint or --suspend only");
	if (!o->vm)
		return usage_error("%s needs --vm=NAME", o->act_opt);
	return 0;
}

/* ---- talking to khyve ------------------------------------------------ */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int ctl_connect(const struct ctl_opts *o, int *fdp, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t dlen = strlen(o->rundir);
	int fd, n;

	while (dlen > 1 && o->rundir[dlen - 1] == '/')
		dlen--;
	n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%.*s/%s.sock", (int)dlen, o->rundir, o->vm);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
		return util__fail(-ENAMETOOLONG, err, errlen, "socket path %.*s/%s.sock is too long (at most "
			    "%zu bytes)", (int)dlen, o->rundir, o->vm, sizeof(sa.sun_path) - 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return util__fail(-errno, err, errlen, "socket: %s", strerror(errno));
	if (o->timeout_s) {
		/* bounds connect() too: it blocks while khyve's listen backlog is full */
		struct timeval tv = { .tv_sec = o->timeout_s };

		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		close(fd);
		if (e == EAGAIN || e == EWOULDBLOCK || e == EINPROGRESS)
			return util__fail(-ETIMEDOUT, err, errlen, "VM %s does not accept connections (waited "
				    "%u s at %s)", o->vm, o->timeout_s, sa.sun_path);
		if (e == ENOENT)
			return util__fail(-e, err, errlen, "no VM named %s (no socket at %s)", o->vm, sa.sun_path);
		if (e == ECONNREFUSED)
			return util__fail(-e, err, errlen, "no VM named %s is running (stale socket %s)",
				    o->vm, sa.sun_path);
		return util__fail(-e, err, errlen, "cannot connect to %s: %s", sa.sun_path, strerror(e));
	}
	*fdp = fd;
	return 0;
}

/* Send the request line in one sendmsg(), with dirfd (if >= 0) attached. */
static int send_request(int fd, const char *line, size_t len, int dirfd)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} cbuf;
	size_t off = 0;

	while (off < len) {
		struct iovec iov = { .iov_base = (char *)line + off, .iov_len = len - off };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t w;

		if (dirfd >= 0 && off == 0) {
			struct cmsghdr *cm;

			memset(&cbuf, 0, sizeof(cbuf));
			mh.msg_control = cbuf.b;
			mh.msg_controllen = sizeof(cbuf.b);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &dirfd, sizeof(int));
		}
		w = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += (size_t)w;
	}
	return 0;
}

static void fmt_bytes(char *buf, size_t len, uint64_t b)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	unsigned int u = 0;

	while (v >= 1024 && u + 1 < sizeof(unit) / sizeof(unit[0])) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)b);
	else
		snprintf(buf, len, "%.1f %s", v, unit[u]);
}

struct progress {
	bool shown;		/* a progress line is on the terminal */
	uint64_t t0;
};

static void progress_show(struct progress *p, json_t *prog)
{
	json_int_t done = json_integer_value(json_object_get(prog, "done"));
	json_int_t total = json_integer_value(json_object_get(prog, "total"));
	double secs = (double)(now_ns() - p->t0) / 1e9;
	char d[32], t[32];

	if (done < 0 || total <= 0)
		return;
	fmt_bytes(d, sizeof(d), (uint64_t)done);
	fmt_bytes(t, sizeof(t), (uint64_t)total);
	printf("\r\033[Ksaving: %s of %s (%d%%), %.1f MB/s", d, t,
	       (int)(done >= total ? 100 : done * 100 / total),
	       secs > 0 ? (double)done / 1e6 / secs : 0.0);
	fflush(stdout);
	p->shown = true;
}

static void progress_clear(struct progress *p)
{
	if (p->shown) {
		printf("\r\033[K");
		fflush(stdout);
		p->shown = false;
	}
}

/*
 * Read lines until the reply (an object with "ok"); progress messages on
 * the way are shown when show_progress.  Returns the reply or NULL with err.
 */
static json_t *read_reply(int fd, const struct ctl_opts *o, bool show_progress,
			  struct progress *prog, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;
	uint64_t last = now_ns();
	json_t *reply = NULL;

	for (;;) {
		char *nl;

		while (len && (nl = memchr(buf, '\n', len)) != NULL) {
			size_t l = (size_t)(nl - buf);
			json_error_t jerr;
			json_t *m = json_loadb(buf, l, 0, &jerr);

			memmove(buf, nl + 1, len - l - 1);
			len -= l + 1;
			if (!m || !json_is_object(m)) {
				json_decref(m);
				if (m)
					util__fail(-EPROTO, err, errlen, "the VM sent JSON that is not an object");
				else
					util__fail(-EPROTO, err, errlen, "the VM sent invalid JSON: %s", jerr.text);
				goto out;
			}
			if (json_object_get(m, "ok")) {
				reply = m;
				goto out;
			}
			if (show_progress && json_object_get(m, "progress"))
				progress_show(prog, json_object_get(m, "progress"));
			json_decref(m);
		}
		if (cap - len < 4096) {
			char *n;

			if (cap >= REPLY_MAX) {
				util__fail(-EPROTO, err, errlen, "the VM sent a line longer than %d bytes",
				     REPLY_MAX);
				goto out;
			}
			cap = cap ? cap * 2 : 8192;
			n = realloc(buf, cap);
			if (!n) {
				util__fail(-ENOMEM, err, errlen, "out of memory");
				goto out;
			}
			buf = n;
		}

		struct pollfd p = { .fd = fd, .events = POLLIN };
		int timeout = -1;

		if (o->timeout_s) {
			uint64_t waited = now_ns() - last, limit = o->timeout_s * 1000000000ULL;

			if (waited >= limit) {
				util__fail(-ETIMEDOUT, err, errlen, "no answer from VM %s within %u s", o->vm,
				     o->timeout_s);
				goto out;
			}
			timeout = (int)((limit - waited) / 1000000) + 1;
		}
		int r = poll(&p, 1, timeout);

		if (r < 0 && errno != EINTR) {
			util__fail(-errno, err, errlen, "poll: %s", strerror(errno));
			goto out;
		}
		if (r <= 0)
			continue;
		ssize_t n = read(fd, buf + len, cap - len);

		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			util__fail(-errno, err, errlen, "reading from VM %s: %s", o->vm, strerror(errno));
			goto out;
		}
		if (n == 0) {
			util__fail(-ECONNRESET, err, errlen, "VM %s closed the connection without replying",
			     o->vm);
			goto out;
		}
		len += (size_t)n;
		last = now_ns();
	}
out:
	free(buf);
	return reply;
}

static void print_save(const struct ctl_opts *o, json_t *res)
{
	json_int_t ndisks = json_integer_value(json_object_get(res, "disks"));
	char mem[32], data[32], state[32], disks[48] = "";

	fmt_bytes(mem, sizeof(mem), (uint64_t)json_integer_value(json_object_get(res, "mem_bytes")));
	fmt_bytes(data, sizeof(data), (uint64_t)json_integer_value(json_object_get(res, "data_bytes")));
	fmt_bytes(state, sizeof(state),
		  (uint64_t)json_integer_value(json_object_get(res, "state_bytes")));
	if (ndisks)
		snprintf(disks, sizeof(disks), ", %lld disk cop%s", (long long)ndisks, ndisks == 1 ? "y" : "ies");
	printf("%s %s: %s of RAM, %s of data, %s of state%s; paused %.3f ms, %.3f ms in all "
	       "(uuid %s)\n", o->act == ACT_SUSPEND ? "suspended to" : "saved", o->file,
	       mem, data, state, disks, json_number_value(json_object_get(res, "pause_ms")),
	       json_number_value(json_object_get(res, "total_ms")),
	       json_string_value(json_object_get(res, "uuid")) ?: "?");
}

static int run_request(const struct ctl_opts *o, char *err, size_t errlen)
{
	bool tty = isatty(STDOUT_FILENO);
	struct progress prog = { .t0 = now_ns() };
	json_t *req = NULL, *reply = NULL, *res;
	char *line = NULL;
	int fd = -1, dirfd = -1, ret, sret;

	ret = ctl_connect(o, &fd, err, errlen);
	if (ret)
		return ret;
	req = json_pack("{s:i, s:s}", "id", REQUEST_ID, "cmd", action_cmd[o->act]);
	if (req && o->file &&
	    json_object_set_new(req, "args", o->disks ? json_pack("{s:s, s:b}", "file", o->file, "disks", 1)
						      : json_pack("{s:s}", "file", o->file))) {
		json_decref(req);
		req = NULL;
	}
	if (!req) {
		ret = util__fail(-EINVAL, err, errlen, "cannot build the request (is FILE valid UTF-8?)");
		goto out;
	}
	/* khyve opens a relative FILE from our directory, as we see it */
	if (o->file && o->file[0] != '/') {
		dirfd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (dirfd < 0) {
			ret = util__fail(-errno, err, errlen, "cannot open the current directory: %s",
				   strerror(errno));
			goto out;
		}
	}
	line = json_dumps(req, JSON_COMPACT);
	if (!line) {
		ret = util__fail(-ENOMEM, err, errlen, "out of memory");
		goto out;
	}
	size_t len = strlen(line);

	line[len] = '\n';	/* json_dumps' NUL becomes the newline */
	sret = send_request(fd, line, len + 1, dirfd);
	/* a refusal (too many clients, wrong user) may be waiting to be read */
	reply = read_reply(fd, o, tty, &prog, err, errlen);
	progress_clear(&prog);
	if (!reply) {
		ret = sret ? util__fail(sret, err, errlen, "cannot send to VM %s: %s", o->vm,
				  strerror(-sret)) : -EPROTO;
		goto out;
	}
	if (!json_is_true(json_object_get(reply, "ok"))) {
		const char *e = json_string_value(json_object_get(reply, "error"));

		ret = util__fail(-EIO, err, errlen, "%s", e ? e : "the request failed, for no reason given");
		goto out;
	}
	res = json_object_get(reply, "result");
	if (o->act == ACT_STATUS) {
		char *s = json_dumps(res, JSON_INDENT(2));

		if (s)
			printf("%s\n", s);
		free(s);
	} else if ((o->act == ACT_CHECKPOINT || o->act == ACT_SUSPEND) && tty) {
		print_save(o, res);
	}
	ret = 0;
	if (fflush(stdout) == EOF)
		ret = util__fail(-errno, err, errlen, "writing the output: %s", strerror(errno));
out:
	free(line);
	json_decref(req);
	json_decref(reply);
	if (dirfd >= 0)
		close(dirfd);
	if (fd >= 0)
		close(fd);
	return ret;
}

int main(int argc, char **argv)
{
	struct ctl_opts o;
	char err[1024] = "";
	int ret;

	ret = parse_args(&o, argc, argv);
	if (ret == 1)
		return 0;
	if (ret)
		return EXIT_USAGE;
	if (o.act == ACT_INSPECT) {
		ret = snapshot__inspect(o.file, o.json, stdout, err, sizeof(err));
		if (!ret && fflush(stdout) == EOF)
			ret = util__fail(-errno, err, sizeof(err), "writing the output: %s", strerror(errno));
	} else {
		ret = run_request(&o, err, sizeof(err));
	}
	if (ret) {
		fflush(stdout);
		fprintf(stderr, "khyvectl: %s\n", err[0] ? err : strerror(-ret));
		return EXIT_FAILED;
	}
	return 0;
}
