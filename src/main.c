/*
 * khyve: command line -> struct vm_config -> a running VM.
 * Only main() exits; everything below returns negative errno values.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "khyve/boot.h"
#include "khyve/config.h"
#include "khyve/control.h"
#include "khyve/log.h"
#include "khyve/loop.h"
#include "khyve/seccomp.h"
#include "khyve/serial.h"
#include "khyve/snapshot.h"
#include "khyve/term.h"
#include "khyve/user.h"
#include "khyve/util.h"
#include "khyve/vm.h"

/* A closed stdin/stdout/stderr must not be reused by /dev/kvm or a vCPU fd. */
static void ensure_std_fds(void)
{
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
			int n = open("/dev/null", O_RDWR);

			if (n >= 0 && n != fd) {
				dup2(n, fd);
				close(n);
			}
		}
	}
}

/* A thread that cannot be confined ends the VM (it logged why). */
static void stop_vm(void *vm)
{
	exit__request(vm, VM_EXIT_ERROR);
}

int main(int argc, char **argv)
{
	struct control *ctl = NULL;
	struct snapshot_restore *rs = NULL;
	struct vm_config cfg;
	struct user_creds user;
	bool drop_user = false;
	struct vm vm;
	char err[512];
	sigset_t sigs;
	int sigfd = -1, status = VM_EXIT_ERROR, ret;
	bool tty = false;

	uint64_t t_main = util__now_ns();

	ensure_std_fds();
	signal(SIGPIPE, SIG_IGN);
	memset(&vm, 0, sizeof(vm));
	vm.kvm_fd = vm.vm_fd = vm.exit_efd = -1;
	vm.mem.src_fd = -1;
	vm.cfg = &cfg;
	vm.t_main_ns = t_main;

	ret = config__parse(&cfg, argc, argv);
	if (ret == 1) {
		config__free(&cfg);
		return 0;
	}
	if (ret)
		goto out;
	/* NSS may open files and sockets: before any thread and any seccomp list */
	/* remembered here: a restore replaces cfg with the snapshot's configuration */
	drop_user = cfg.user != NULL;
	if (drop_user && user__lookup(cfg.user, &user, err, sizeof(err))) {
		pr_err("%s", err);
		goto out;
	}
	/* the SIGSYS handler, before any thread exists; each thread loads its own list */
	if (seccomp__prepare(!cfg.no_seccomp, stop_vm, &vm, err, sizeof(err))) {
		pr_err("%s", err);
		goto out;
	}

	/* Everything that can be checked without KVM is checked first. */
	if (!cfg.restore)
		ret = serial__check_output(&cfg, err, sizeof(err)) ?: boot__load(&vm, err, sizeof(err));
	else
		ret = snapshot__restore_open(&cfg, &rs, err, sizeof(err));
	if (ret) {
		pr_err("%s", err);
		goto out;
	}
	if (vm__open_kvm(&vm, err, sizeof(err))) {
		pr_err("%s", err);
		goto out;
	}
	if (cfg.ncpus > vm.max_vcpus) {
		pr_err("invalid vCPU count %u: KVM allows at most %u", cfg.ncpus, vm.max_vcpus);
		goto out;
	}
	/* Blocked before any thread exists, so only the signalfd sees them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	sigfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	if (sigfd < 0) {
		pr_err("signalfd: %s", strerror(errno));
		goto out;
	}
	if (cfg.restore)
		ret = snapshot__restore(&vm, rs, err, sizeof(err));
	else
		ret = vm__create(&vm, -1, err, sizeof(err)) ?: boot__setup_bsp(&vm, err, sizeof(err));
	if (ret) {
		pr_err("%s", err);
		goto out;
	}
	ret = control__open(&vm, cfg.rundir ? cfg.rundir : CONTROL_DEFAULT_RUNDIR, &ctl, err, sizeof(err));
	if (ret) {
		pr_err("%s", err);
		goto out;
	}
	/*
	 * Everything is open; no vCPU thread exists yet, and the threads that
	 * do (device I/O, disk workers, output writers) allow the drop's calls.
	 */
	if (drop_user && (control__admit(ctl, user.uid, err, sizeof(err)) ||
			  user__drop(&user, err, sizeof(err)))) {
		pr_err("%s", err);
		goto out;
	}
	if (vm.console)
		tty = term__raw();
	ret = vcpu__start_all(&vm);
	if (ret) {
		pr_err("cannot start vCPU threads: %s", strerror(-ret));
		exit__request(&vm, VM_EXIT_ERROR);
	}
	/*
	 * Last: every thread exists (a filter is inherited by threads created
	 * after it) and everything that opens or creates is done.
	 */
	seccomp__thread(SECCOMP_MAIN);
	vm.t_run_ns = util__now_ns();
	status = loop__run(&vm, sigfd, tty, ctl);
	vcpu__stop_all(&vm);
out:
	term__restore();
	if (ctl)
		control__close(ctl);
	vm__destroy(&vm);
	snapshot__restore_free(rs);
	if (sigfd >= 0)
		close(sigfd);
	config__free(&cfg);
	return status;
}
