/*
 * seccomp-bpf confinement at run time (include/khyve/seccomp.h).
 *
 * The lists (seccomp_lists.c) were compiled to BPF when khyve was built
 * (seccomp_gen.c writes seccomp_bpf.h), so a thread confines itself with
 * two system calls: PR_SET_NO_NEW_PRIVS, then seccomp(SECCOMP_SET_MODE_FILTER).
 *
 * What is not on a list traps: SIGSYS, whose handler (on the offending
 * thread, so under that thread's own list) writes one preformatted line
 * naming the call with write(2), restores the terminal (ioctls TCSETS and
 * TCGETS on fd 0, which every list allows for that reason alone) and ends the process
 * with _exit(VM_EXIT_ERROR).  It is the one place besides main() that ends
 * khyve: a thread that made a forbidden call may have been subverted, and
 * unwinding through it to main() would run its code further.  Names come
 * from a table made at build time with libseccomp's
 * seccomp_syscall_resolve_num_arch(), which allocates and so cannot be
 * called in a signal handler.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "khyve/log.h"
#include "khyve/seccomp.h"
#include "khyve/term.h"
#include "khyve/util.h"
#include "khyve/vm.h"

#include "seccomp_bpf.h"	/* generated: seccomp_bpf[], seccomp_names[] */

static const char *const where_names[SECCOMP_NKINDS] = {
	[SECCOMP_MAIN] = "the main thread",
	[SECCOMP_VCPU] = "a vCPU thread",
	[SECCOMP_DEVICE] = "a device I/O thread",
	[SECCOMP_WRITER] = "the checkpoint's memory writer",
};

static bool enabled;
static void (*refuse_fn)(void *arg);
static void *refuse_arg;
static pid_t main_pid;
/* the kind of list the calling thread loaded; -1: none */
static __thread int thread_kind = -1;

/* The decimal digits of v at p (no terminator); returns how many. */
static size_t put_dec(char *p, unsigned long v)
{
	char tmp[24];
	size_t n = 0, i;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (i = 0; i < n; i++)
		p[i] = tmp[n - 1 - i];
	return n;
}

/* Append s to buf (of len bytes, *at used), leaving room for "\n" and the terminator. */
static void put_str(char *buf, size_t len, size_t *at, const char *s)
{
	while (*s && *at + 2 < len)
		buf[(*at)++] = *s++;
}

const char *seccomp__syscall_name(long nr)
{
	if (nr < 0 || nr >= SECCOMP_NAMES)
		return NULL;
	return seccomp_names[nr];
}

size_t seccomp__format_denied(char *buf, size_t len, const char *where, const char *ends, long nr,
			      bool native)
{
	const char *name = native ? seccomp__syscall_name(nr) : NULL;
	char num[24];
	size_t at = 0, n;

	if (!len)
		return 0;
	put_str(buf, len, &at, "khyve: seccomp: forbidden system call ");
	if (!native)
		put_str(buf, len, &at, "of another architecture ");
	if (name) {
		put_str(buf, len, &at, name);
		put_str(buf, len, &at, " (");
	} else {
		put_str(buf, len, &at, "number ");
	}
	if (nr < 0) {
		put_str(buf, len, &at, "-");
		nr = -nr;
	}
	n = put_dec(num, (unsigned long)nr);
	num[n] = '\0';
	put_str(buf, len, &at, num);
	if (name)
		put_str(buf, len, &at, ")");
	put_str(buf, len, &at, " in ");
	put_str(buf, len, &at, where);
	put_str(buf, len, &at, ": ending ");
	put_str(buf, len, &at, ends);
	/* the newline even when the rest was cut */
	if (len >= 2)
		buf[at++] = '\n';
	buf[at] = '\0';
	return at;
}

/* Async-signal-safe: a formatted line, write(2), tcsetattr (an ioctl), _exit. */
static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	const char *where = "an unconfined thread";
	/* a forked memory writer ends alone: khyve and its terminal carry on */
	bool writer = getpid() != main_pid;
	char line[256];
	size_t n;

	(void)sig;
	(void)uc;
	if (thread_kind >= 0 && thread_kind < SECCOMP_NKINDS)
		where = where_names[thread_kind];
	if (writer)
		where = where_names[SECCOMP_WRITER];
	n = seccomp__format_denied(line, sizeof(line), where, writer ? "the memory writer" : "khyve",
				   si->si_syscall, si->si_arch == AUDIT_ARCH_X86_64);
	if (write(STDERR_FILENO, line, n) < 0) {
		/* nowhere left to say it; the exit status still does */
	}
	if (!writer)
		term__restore();
	_exit(VM_EXIT_ERROR);
}

int seccomp__prepare(bool on, void (*refuse)(void *arg), void *arg, char *err, size_t errlen)
{
	struct sigaction sa = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO };
	int ret;

	enabled = false;
	refuse_fn = refuse;
	refuse_arg = arg;
	if (!on)
		return 0;
	main_pid = getpid();
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0) {
		ret = util__fail(-errno, err, errlen, "seccomp: SIGSYS handler: %s", strerror(errno));
		return ret;
	}
	enabled = true;
	return 0;
}

static int load(enum seccomp_kind kind)
{
	if (kind < 0 || kind >= SECCOMP_NKINDS)
		return -EINVAL;
	/* no_new_privs: a filter may be installed without CAP_SYS_ADMIN, and no exec regains privileges */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	thread_kind = kind;
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &seccomp_bpf[kind]) < 0) {
		thread_kind = -1;
		return -errno;
	}
	return 0;
}

int seccomp__writer(void)
{
	return enabled ? load(SECCOMP_WRITER) : 0;
}

int seccomp__thread(enum seccomp_kind kind)
{
	int ret;

	if (!enabled)
		return 0;
	ret = load(kind);
	if (ret) {
		pr_err("seccomp: cannot confine %s: %s", kind >= 0 && kind < SECCOMP_NKINDS ?
		       where_names[kind] : "a thread", strerror(-ret));
		if (refuse_fn)
			refuse_fn(refuse_arg);
	}
	return ret;
}
