/*
 * -u USER: khyve gives up root once everything is open.  The user is
 * looked up first, while NSS may still open files and sockets (before any
 * thread and any seccomp list); the drop comes after the last privileged
 * open and before any vCPU runs.
 */
#ifndef KHYVE_USER_H
#define KHYVE_USER_H

#include <stddef.h>
#include <sys/types.h>

#define USER_GROUPS_MAX 256

struct user_creds {
	uid_t uid;
	gid_t gid;
	int ngroups;
	gid_t groups[USER_GROUPS_MAX];	/* supplementary, gid among them */
};

/* USER's ids and supplementary groups.  0, or -errno with one line in err. */
int user__lookup(const char *name, struct user_creds *c, char *err, size_t errlen);
/*
 * Become c for every thread: groups, then gid, then uid (real, effective
 * and saved), and check that root cannot be taken back.  0, or -errno with
 * err.
 */
int user__drop(const struct user_creds *c, char *err, size_t errlen);

#endif
