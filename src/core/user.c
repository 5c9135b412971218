/*
 * Dropping root for -u USER (see user.h).  glibc's setgroups, setresgid and
 * setresuid change every thread of the process, each thread making the
 * system call itself: the threads that exist at the drop (virtio I/O
 * threads, disk workers, output writers, all on the device seccomp list)
 * are allowed exactly these three calls; vCPU threads start, and the main
 * thread loads its list, only afterwards.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

#include "khyve/user.h"
#include "khyve/util.h"

int user__lookup(const char *name, struct user_creds *c, char *err, size_t errlen)
{
	struct passwd *pw;

	errno = 0;
	pw = getpwnam(name);
	if (!pw)
		return errno && errno != ENOENT && errno != ESRCH ?
			util__fail(-errno, err, errlen, "-u %s: cannot look the user up: %s", name, strerror(errno)) :
			util__fail(-ENOENT, err, errlen, "-u %s: no such user", name);
	c->uid = pw->pw_uid;
	c->gid = pw->pw_gid;
	c->ngroups = USER_GROUPS_MAX;
	if (getgrouplist(name, pw->pw_gid, c->groups, &c->ngroups) < 0)
		return util__fail(-E2BIG, err, errlen, "-u %s: in more than %d groups", name, USER_GROUPS_MAX);
	return 0;
}

/* Nothing of root left: all three uids and gids are the user's, and root cannot be taken back. */
static bool dropped(const struct user_creds *c)
{
	uid_t r, e, s;
	gid_t rg, eg, sg;

	if (getresuid(&r, &e, &s) || r != c->uid || e != c->uid || s != c->uid)
		return false;
	if (getresgid(&rg, &eg, &sg) || rg != c->gid || eg != c->gid || sg != c->gid)
		return false;
	/* root's own uid needs no drop; anyone else must be refused */
	/* raw: glibc's setuid would have every thread try it, and theirs may not */
	return c->uid == 0 || (syscall(SYS_setuid, 0) < 0 && syscall(SYS_setgid, 0) < 0);
}

int user__drop(const struct user_creds *c, char *err, size_t errlen)
{
	if (setgroups((size_t)c->ngroups, c->groups) < 0)
		return util__fail(-errno, err, errlen, "-u: setgroups: %s", strerror(errno));
	if (setresgid(c->gid, c->gid, c->gid) < 0)
		return util__fail(-errno, err, errlen, "-u: setresgid(%u): %s", (unsigned int)c->gid,
				  strerror(errno));
	if (setresuid(c->uid, c->uid, c->uid) < 0)
		return util__fail(-errno, err, errlen, "-u: setresuid(%u): %s", (unsigned int)c->uid,
				  strerror(errno));
	if (!dropped(c))
		return util__fail(-EPERM, err, errlen, "-u: the privileges could be taken back");
	return 0;
}
