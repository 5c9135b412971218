/*
 * The seccomp allow-lists, one per kind of thread, as libseccomp rules.
 *
 * Build time only: seccomp_gen.c links this file and writes each list,
 * compiled to classic BPF, into a header that seccomp.c (the run time)
 * includes.  Compiling them when khyve starts cost 1.5-2.5 ms (libseccomp
 * builds and optimises the filter, and its number-to-name lookup is a
 * linear search), as much again as khyve's whole set-up before this.
 *
 * A list is made of groups, each with the reason its calls are there.
 * What is not on a list traps (SIGSYS).  Everything set-up needs (opening
 * /dev/kvm, disks, the tap, the control socket; creating the VM, vCPUs and
 * threads) happens before any thread is confined, so none of it is here.
 */
#include <errno.h>
#include <linux/fs.h>
#include <linux/sched.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "khyve/seccomp.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

struct group {
	const int *calls;
	size_t ncalls;
	const unsigned long *ioctls;	/* ioctl request numbers, on any fd */
	size_t nioctls;
};

#define GROUP(c, i) { c, ARRAY_LEN(c), i, ARRAY_LEN(i) }
#define CALLS(c) { c, ARRAY_LEN(c), NULL, 0 }

/*
 * Every thread: what glibc does on its own in any thread, and logging.
 * mmap and mprotect are allowed too, for memory that is not executable
 * only (rules in seccomp_lists__export()): no confined thread makes code.
 */
static const int base_calls[] = {
	SCMP_SYS(futex),		/* mutexes and condition variables */
	SCMP_SYS(write),		/* log lines to stderr, eventfd signals, output to files and queues' fds */
	SCMP_SYS(exit),			/* a thread's end */
	SCMP_SYS(exit_group),		/* the process's end (and the SIGSYS handler's) */
	SCMP_SYS(rt_sigreturn),		/* return from a signal handler (the vCPU kick) */
	SCMP_SYS(rt_sigprocmask),	/* glibc blocks signals around a thread's exit */
	SCMP_SYS(madvise),		/* glibc drops a finished thread's stack, malloc trims */
	SCMP_SYS(munmap),		/* free() of large blocks */
	SCMP_SYS(mremap),		/* realloc() of large blocks (mmapped ones) */
	SCMP_SYS(brk),			/* malloc on the main arena */
	SCMP_SYS(clock_gettime),	/* the vDSO's fallback */
	SCMP_SYS(gettimeofday),
	SCMP_SYS(clock_nanosleep),	/* usleep: a memory writer being waited for */
	SCMP_SYS(nanosleep),
	SCMP_SYS(sched_yield),		/* glibc's and the sanitizers' spin loops */
	SCMP_SYS(getpid),		/* log and control replies; the SIGSYS handler */
	SCMP_SYS(gettid),
	SCMP_SYS(restart_syscall),	/* a sleep interrupted by the vCPU kick */
};

/*
 * An output writer thread (src/core/outq.c: COM1 or a virtio-console on
 * a pipe, terminal or socket) loads the device I/O list: it polls its fd
 * and eventfd, writes or sends, and reads the eventfd, all of which the
 * device code has; a kind of its own would differ only by epoll_wait.
 */

/*
 * Device code: what serving a virtqueue, resetting or quiescing a device
 * does.  It runs on the device's I/O thread, on a vCPU thread (register
 * writes: a reset drains virtio-blk, MSI-X and BAR changes re-route
 * interrupts and ioeventfds) and on the main thread (a pause quiesces
 * every device), so all three lists include it.
 */
static const int device_calls[] = {
	SCMP_SYS(read),			/* ioeventfds, completion eventfds, console input, tap */
	SCMP_SYS(readv),		/* virtio-net receive from the tap */
	SCMP_SYS(writev),		/* virtio-net transmit to the tap */
	SCMP_SYS(preadv),		/* virtio-blk without io_uring: the pool's requests */
	SCMP_SYS(pwritev2),		/* (RWF_DSYNC for a driver without a write cache) */
	SCMP_SYS(pread64),
	SCMP_SYS(fdatasync),		/* virtio-blk flush */
	SCMP_SYS(fallocate),		/* virtio-blk discard and write-zeroes */
	SCMP_SYS(io_uring_enter),	/* virtio-blk submit and reap */
	SCMP_SYS(sendto),		/* virtio-console to a socket (send, by its output writer) */
	SCMP_SYS(getrandom),		/* virtio-rnd; a snapshot's UUID */
	SCMP_SYS(epoll_ctl),		/* a backend fd watched or not (receive armed) */
	SCMP_SYS(poll),			/* virtio-net: is a woken, unarmed tap in error?
					   an output writer waiting for its fd (outq.c) */
};
static const unsigned long device_ioctls[] = {
	KVM_IRQ_LINE,			/* COM1, INTx */
	KVM_SIGNAL_MSI,			/* an MSI-X vector without an irqfd */
	KVM_IRQFD,			/* MSI-X vectors (un)masked by the driver */
	KVM_SET_GSI_ROUTING,		/* ... and their routes */
	KVM_IOEVENTFD,			/* queue notify addresses follow BAR 0 */
};

/*
 * An I/O thread's wait; and -u USER's drop, which glibc has every thread
 * make itself (the threads that exist then are these: vCPU threads start,
 * and the main thread loads its list, after it).  Once the ids are a
 * user's, the kernel refuses these calls any way back to root.
 */
static const int io_calls[] = {
	SCMP_SYS(epoll_wait),
	SCMP_SYS(epoll_pwait),
	SCMP_SYS(setgroups),
	SCMP_SYS(setresgid),
	SCMP_SYS(setresuid),
};

/* A vCPU thread: running the guest, and its registers for the log line of a fatal exit. */
static const unsigned long vcpu_ioctls[] = {
	KVM_RUN,
	KVM_GET_REGS,
	KVM_GET_SREGS,
};

/*
 * The main thread: the event loop, the control socket, saves, and tearing
 * down.  The forked memory writer inherits this list and narrows it to its
 * own (below) before it reads guest memory.
 */
static const int main_calls[] = {
	SCMP_SYS(poll),			/* the event loop */
	SCMP_SYS(ppoll),
	SCMP_SYS(accept4),		/* control clients */
	SCMP_SYS(recvmsg),		/* requests, and the client's directory fd */
	SCMP_SYS(recvfrom),
	SCMP_SYS(sendmsg),		/* replies and progress */
	SCMP_SYS(getsockopt),		/* SO_PEERCRED: only the owner or root is served */
	SCMP_SYS(getuid),
	SCMP_SYS(geteuid),
	SCMP_SYS(close),
	SCMP_SYS(fcntl),
	SCMP_SYS(openat),		/* snapshot files (under the client's directory fd),
					   /proc/self/pagemap, disk copies */
	SCMP_SYS(newfstatat),		/* the target directory, file kinds */
	SCMP_SYS(fstat),
	SCMP_SYS(lseek),		/* sparse copies: SEEK_DATA/SEEK_HOLE */
	SCMP_SYS(pwrite64),		/* memory, state and disk copies */
	SCMP_SYS(fsync),		/* ... made durable */
	SCMP_SYS(ftruncate),		/* ... sized */
	SCMP_SYS(renameat),		/* ... and renamed into place, */
	SCMP_SYS(renameat2),
	SCMP_SYS(unlinkat),		/* or removed after a failure; the socket at exit */
	SCMP_SYS(unlink),
	SCMP_SYS(copy_file_range),	/* --disks: a disk copy without a reflink */
	SCMP_SYS(set_robust_list),	/* glibc in the forked memory writer (clone: below) */
	SCMP_SYS(wait4),		/* ... reaped */
	SCMP_SYS(kill),			/* ... ended when the save fails */
	SCMP_SYS(tgkill),		/* SIGUSR1: a vCPU kicked out of KVM_RUN */
};
static const unsigned long main_ioctls[] = {
	KVM_CHECK_EXTENSION,		/* a save checks what this KVM can read */
	KVM_GET_MP_STATE,		/* the halt check, and a save's vCPU state */
	KVM_GET_REGS,
	KVM_GET_SREGS,
	KVM_GET_XCRS,
	KVM_GET_LAPIC,
	KVM_GET_VCPU_EVENTS,
	KVM_GET_DEBUGREGS,
	KVM_GET_XSAVE,
	KVM_GET_XSAVE2,
	KVM_GET_MSRS,
	KVM_GET_TSC_KHZ,
	KVM_GET_CPUID2,
	KVM_GET_IRQCHIP,		/* a save's VM state */
	KVM_GET_PIT2,
	KVM_GET_CLOCK,
	FICLONE,			/* --disks: a reflinked disk copy */
};

/*
 * A checkpoint's memory writer (src/snapshot/save.c), a process forked by
 * the main thread with the vCPUs stopped, which loads this list on top of
 * the main thread's once /proc/self/pagemap is open: which pages hold data
 * (pagemap, and SEEK_DATA in a restored VM's memory file), writing them to
 * the memory file and making it durable.  No opening, renaming, removing,
 * sockets or signals: the main thread puts the files in place, and a
 * writer that were taken over by the guest's memory could reach no file
 * but the ones it holds open.
 */
static const int writer_calls[] = {
	SCMP_SYS(pread64),		/* pagemap */
	SCMP_SYS(lseek),		/* SEEK_DATA/SEEK_HOLE in the memory file a restore mapped */
	SCMP_SYS(pwrite64),		/* pages and the trailer */
	SCMP_SYS(fsync),		/* ... made durable */
};

#ifdef KHYVE_SAN
/*
 * ASan/UBSan/LSan builds only (make asan): what the sanitizer runtimes do
 * in any thread, and in the main thread at exit for the leak check (LSan
 * stops the world with a ptrace()d clone and reads /proc/self).  A report
 * also starts the symbolizer.  Kept out of the production lists.
 */
static const int san_calls[] = {
	SCMP_SYS(sigaltstack), SCMP_SYS(rt_sigaction), SCMP_SYS(prctl), SCMP_SYS(mremap),
	SCMP_SYS(readlink), SCMP_SYS(readlinkat),
	SCMP_SYS(open), SCMP_SYS(openat), SCMP_SYS(close), SCMP_SYS(read), SCMP_SYS(pread64),
	SCMP_SYS(getdents), SCMP_SYS(getdents64), SCMP_SYS(newfstatat), SCMP_SYS(fstat), SCMP_SYS(lseek),
	SCMP_SYS(getrlimit), SCMP_SYS(prlimit64), SCMP_SYS(sched_getaffinity), SCMP_SYS(uname),
	SCMP_SYS(getppid), SCMP_SYS(ptrace), SCMP_SYS(clone), SCMP_SYS(wait4), SCMP_SYS(kill),
	SCMP_SYS(tgkill), SCMP_SYS(pipe), SCMP_SYS(pipe2), SCMP_SYS(dup2), SCMP_SYS(dup3),
	SCMP_SYS(execve), SCMP_SYS(set_robust_list), SCMP_SYS(mincore), SCMP_SYS(getuid),
};
#endif

static const struct group base_group = CALLS(base_calls);
static const struct group device_group = GROUP(device_calls, device_ioctls);
static const struct group io_group = CALLS(io_calls);
static const struct group vcpu_group = { NULL, 0, vcpu_ioctls, ARRAY_LEN(vcpu_ioctls) };
static const struct group main_group = GROUP(main_calls, main_ioctls);
static const struct group writer_group = CALLS(writer_calls);
#ifdef KHYVE_SAN
static const struct group san_group = CALLS(san_calls);
#endif

static const struct group *const kinds[SECCOMP_NKINDS][4] = {
	[SECCOMP_MAIN] = { &base_group, &device_group, &main_group },
	[SECCOMP_VCPU] = { &base_group, &device_group, &vcpu_group },
	[SECCOMP_DEVICE] = { &base_group, &device_group, &io_group },
	[SECCOMP_WRITER] = { &base_group, &writer_group },
};

static const unsigned long tty_ioctls[] = { TCSETS, TCGETS };

static int add_group(scmp_filter_ctx ctx, const struct group *g)
{
	int ret;

	for (size_t i = 0; i < g->ncalls; i++) {
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, g->calls[i], 0);
		if (ret)
			return ret;
	}
	/* the kernel compares the low 32 bits of an ioctl's request only */
	for (size_t i = 0; i < g->nioctls; i++) {
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				       SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL, g->ioctls[i]));
		if (ret)
			return ret;
	}
	return 0;
}

int seccomp_lists__export(enum seccomp_kind kind, int fd)
{
	scmp_filter_ctx ctx;
	int ret;

	if (kind < 0 || kind >= SECCOMP_NKINDS)
		return -EINVAL;
	ctx = seccomp_init(SCMP_ACT_TRAP);
	if (!ctx)
		return -ENOMEM;
	/* i386 (int 0x80) and x32 calls trap too, named as another architecture's */
	ret = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_TRAP);
	/*
	 * Every KVM_RUN, notify and completion goes through the filter: find
	 * the call in a binary tree (a few comparisons) rather than a list.
	 */
	if (!ret)
		ret = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
	for (size_t i = 0; !ret && i < ARRAY_LEN(kinds[kind]) && kinds[kind][i]; i++)
		ret = add_group(ctx, kinds[kind][i]);
#ifdef KHYVE_SAN
	if (!ret)
		ret = add_group(ctx, &san_group);
#endif
	/*
	 * Memory, but never new code: mmap (malloc's arenas; io_uring rings
	 * are set-up) and mprotect (a new arena's pages) without PROT_EXEC.
	 * The terminal: on stdin only, for the SIGSYS handler's restore of a
	 * raw terminal (glibc's tcsetattr reads the mode back to check it).
	 */
	if (!ret)
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
				       SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (!ret)
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
				       SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	for (size_t i = 0; !ret && i < ARRAY_LEN(tty_ioctls); i++)
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 2,
				       SCMP_A0(SCMP_CMP_EQ, STDIN_FILENO),
				       SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL, tty_ioctls[i]));
	/*
	 * The main thread forks the checkpoint's memory writer (glibc: clone
	 * with SIGCHLD and the tid flags), and nothing else: no thread, no
	 * shared memory, no namespace.
	 */
	if (!ret && kind == SECCOMP_MAIN)
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
				       SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD | CLONE_VM | CLONE_NEWNS |
					       CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
					       CLONE_NEWPID | CLONE_NEWNET, 0));
	/*
	 * ... and that writer confines itself further under this list:
	 * no_new_privs (set already, inherited) and one more filter, calls
	 * that can only take rights away.
	 */
	if (!ret && kind == SECCOMP_MAIN)
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
				       SCMP_A0(SCMP_CMP_EQ, PR_SET_NO_NEW_PRIVS));
	if (!ret && kind == SECCOMP_MAIN)
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(seccomp), 1,
				       SCMP_A0(SCMP_CMP_EQ, SECCOMP_SET_MODE_FILTER));
	if (!ret)
		ret = seccomp_export_bpf(ctx, fd);
	seccomp_release(ctx);
	return ret;
}
