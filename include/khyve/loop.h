/* The main thread's event loop while vCPUs run. */
#ifndef KHYVE_LOOP_H
#define KHYVE_LOOP_H

#include "khyve/vm.h"

/*
 * Serve the console, signals and exit requests until the VM stops; returns
 * khyve's exit status.  sigfd is a signalfd for SIGINT, SIGTERM and SIGHUP.
 */
struct control;
int loop__run(struct vm *vm, int sigfd, bool tty, struct control *ctl);

#endif
