/*
 * seccomp-bpf confinement: one allow-list per kind of thread.
 *
 * The lists are compiled to BPF at build time.  The main thread installs
 * the SIGSYS handler before any thread exists (seccomp__prepare); each
 * thread then confines itself when it starts (seccomp__thread), and the
 * main thread last, once set-up is over and every thread exists, because a
 * filter is inherited by the threads created after it.  A call outside the
 * list raises SIGSYS, whose handler writes one line naming the call,
 * restores the terminal and ends the process with status VM_EXIT_ERROR.
 * The lists and why each call is there: src/core/seccomp_lists.c and
 * docs/khyve.8 (SECCOMP).
 */
#ifndef KHYVE_SECCOMP_H
#define KHYVE_SECCOMP_H

#include <stdbool.h>
#include <stddef.h>

enum seccomp_kind {
	SECCOMP_MAIN,		/* event loop, control socket, saves, the memory writer */
	SECCOMP_VCPU,		/* vcpu__thread: KVM_RUN and the device code of exits */
	SECCOMP_DEVICE,		/* a virtio I/O thread, a virtio-blk pool worker, an output writer */
	SECCOMP_WRITER,		/* a checkpoint's forked memory writer, on top of the main list */
	SECCOMP_NKINDS
};

/*
 * With enabled, install the SIGSYS handler; without, seccomp__thread() does
 * nothing from now on.  refuse(arg) is what a thread
 * that cannot be confined calls (main: end the VM).  0 or a negative errno,
 * with the reason in err.
 */
int seccomp__prepare(bool enabled, void (*refuse)(void *arg), void *arg, char *err, size_t errlen);

/*
 * Confine the calling thread (and any thread it creates) to KIND's list.  0
 * when seccomp is off or it worked; else a negative errno, after logging
 * why and calling refuse(arg): the thread must then stop what it does.
 */
int seccomp__thread(enum seccomp_kind kind);

/*
 * The forked memory writer of a checkpoint: narrow the list it inherited
 * from the main thread to SECCOMP_WRITER's (filters stack: the kernel
 * applies both, so a call must be on each).  Neither logs nor calls
 * refuse(): the writer is a lone thread of a forked multithreaded process
 * and must take no lock.  0 when seccomp is off or it worked, else -errno.
 */
int seccomp__writer(void);

/* Build time (seccomp_gen.c): KIND's list compiled to BPF, written to fd.  0 or -errno. */
int seccomp_lists__export(enum seccomp_kind kind, int fd);

/*
 * The line the SIGSYS handler writes, in buf (always terminated), e.g.
 * "khyve: seccomp: forbidden system call ptrace (101) in the main thread:
 * ending khyve\n" (ENDS is what ends: "khyve", "the memory writer");
 * returns its length.  nr's name comes from a table made at build time
 * (else "number NR").  Async-signal-safe.
 */
size_t seccomp__format_denied(char *buf, size_t len, const char *where, const char *ends, long nr,
			      bool native);

/* nr's name on this architecture, NULL if unknown. */
const char *seccomp__syscall_name(long nr);

#endif
