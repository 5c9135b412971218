/*
 * The control socket: RUNDIR/VMNAME.sock, JSON messages one per line
 * (docs/control-protocol.md).  Served from the main thread's poll loop.
 */
#ifndef KHYVE_CONTROL_H
#define KHYVE_CONTROL_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct vm;
struct control;

#define CONTROL_DEFAULT_RUNDIR "/run/khyve"
#define CONTROL_MAX_POLLFDS 17	/* listener + 16 clients */

/* Create RUNDIR (0700) and the socket (0600).  0 or -errno with err set. */
int control__open(struct vm *vm, const char *rundir, struct control **out, char *err, size_t errlen);
void control__close(struct control *ctl);
/*
 * -u USER: admit uid's clients too (besides root and the user who started
 * khyve), and make the socket file its, as connecting needs write
 * permission on it.  Before the drop.  0 or -errno with err set.
 */
int control__admit(struct control *ctl, uid_t uid, char *err, size_t errlen);

/* Fill pollfds for the listener and clients; returns how many. */
unsigned int control__pollfds(struct control *ctl, struct pollfd *p, unsigned int max);
/* Serve whatever the pollfds filled by control__pollfds report. */
void control__handle(struct control *ctl, const struct pollfd *p, unsigned int n);
/*
 * A save in flight is driven from the loop: the longest the loop may sleep
 * (ms, -1: no limit) and what to do each round (progress, and the reply
 * when it ends).  control__cancel_save ends it at once, removing its files
 * (khyve is stopping); control__saving: is one in flight.
 */
int control__timeout(const struct control *ctl);
void control__tick(struct control *ctl);
void control__cancel_save(struct control *ctl);
bool control__saving(const struct control *ctl);

#endif
