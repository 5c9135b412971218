/*
 * Unit tests for the seccomp allow-lists (src/core/seccomp.c): the SIGSYS
 * line, and, in forked children so this process stays unconfined, that a
 * loaded list reports itself in /proc, lets the calls its kind makes
 * through and ends the process with the denied call's name and status 4.
 */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "khyve/seccomp.h"
#include "khyve/vm.h"

static int setup(void **state)
{
	char err[256];

	(void)state;
	assert_int_equal(seccomp__prepare(true, NULL, NULL, err, sizeof(err)), 0);
	return 0;
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(seccomp__syscall_name(SYS_read), "read");
	assert_string_equal(seccomp__syscall_name(SYS_ptrace), "ptrace");
	assert_string_equal(seccomp__syscall_name(SYS_unshare), "unshare");
	assert_null(seccomp__syscall_name(-1));
	assert_null(seccomp__syscall_name(100000));
	/* the table made at build time is libseccomp's, number for number */
	for (int nr = 0; nr < 1024; nr++) {
		char *s = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
		const char *t = seccomp__syscall_name(nr);

		if (s && t)
			assert_string_equal(s, t);
		else if (nr < 512)
			assert_ptr_equal(s, t);
		free(s);
	}
}

static void test_format(void **state)
{
	char buf[200], small[24];
	size_t n;

	(void)state;
	n = seccomp__format_denied(buf, sizeof(buf), "a vCPU thread", "khyve", SYS_ptrace, true);
	assert_string_equal(buf, "khyve: seccomp: forbidden system call ptrace (101) in a vCPU thread: "
			    "ending khyve\n");
	assert_int_equal(n, strlen(buf));
	seccomp__format_denied(buf, sizeof(buf), "the main thread", "khyve", 4000, true);
	assert_string_equal(buf, "khyve: seccomp: forbidden system call number 4000 in the main thread: "
			    "ending khyve\n");
	seccomp__format_denied(buf, sizeof(buf), "x", "khyve", 3, false);
	assert_string_equal(buf, "khyve: seccomp: forbidden system call of another architecture "
			    "number 3 in x: ending khyve\n");
	/* cut, but still one terminated line */
	n = seccomp__format_denied(small, sizeof(small), "x", "khyve", SYS_ptrace, true);
	assert_int_equal(n, sizeof(small) - 1);
	assert_int_equal(small[n - 1], '\n');
	assert_int_equal(small[n], '\0');
	assert_int_equal(seccomp__format_denied(small, 0, "x", "khyve", 1, true), 0);
}

/*
 * Run fn in a child confined with KIND's list, its stderr into a pipe;
 * returns the child's wait status and what it wrote in out.
 */
static int run_confined(enum seccomp_kind kind, void (*fn)(void), char *out, size_t outlen)
{
	int p[2], status;
	ssize_t n, got = 0;
	pid_t pid;

	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char err[256];

		close(p[0]);
		dup2(p[1], STDERR_FILENO);
		/* again: cmocka puts its own SIGSYS handler in place around each test */
		if (seccomp__prepare(true, NULL, NULL, err, sizeof(err)) || seccomp__thread(kind))
			_exit(100);
		fn();
		_exit(0);
	}
	close(p[1]);
	while ((n = read(p[0], out + got, outlen - 1 - (size_t)got)) > 0)
		got += n;
	out[got] = '\0';
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static void forbidden_unshare(void)
{
	syscall(SYS_unshare, 0);
}

/* what the main list is for: files, and /proc/self/status says it is confined */
static void main_reads_status(void)
{
	char buf[4096];
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (n <= 0)
		_exit(101);
	buf[n] = '\0';
	if (!strstr(buf, "Seccomp:\t2\n") || !strstr(buf, "NoNewPrivs:\t1\n"))
		_exit(102);
	/* malloc and free of a large block: mmap and munmap, no PROT_EXEC */
	free(malloc(1 << 20));
	close(fd);
	/* the checkpoint's memory writer: fork, exit, wait */
	pid_t pid = fork();

	if (pid == 0)
		_exit(7);
	if (pid < 0 || waitpid(pid, &fd, 0) != pid || !WIFEXITED(fd) || WEXITSTATUS(fd) != 7)
		_exit(103);
}

static void *nothing(void *arg)
{
	return arg;
}

/* the main thread creates no thread once confined */
static void main_makes_thread(void)
{
	pthread_t t;

	if (!pthread_create(&t, NULL, nothing, NULL))
		pthread_join(t, NULL);
}

static void maps_code(void)
{
	mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

static void device_socket(void)
{
	socket(AF_UNIX, SOCK_STREAM, 0);
}

static void test_denied_call_ends_process(void **state)
{
	char out[512];
	int st;

	(void)state;
	st = run_confined(SECCOMP_DEVICE, forbidden_unshare, out, sizeof(out));
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), VM_EXIT_ERROR);
	assert_non_null(strstr(out, "forbidden system call unshare ("));
	assert_non_null(strstr(out, "in a device I/O thread"));

	/* a device thread makes no sockets */
	st = run_confined(SECCOMP_DEVICE, device_socket, out, sizeof(out));
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), VM_EXIT_ERROR);
	assert_non_null(strstr(out, "forbidden system call socket (41) in a device I/O thread"));

	/* nobody makes new code */
	st = run_confined(SECCOMP_MAIN, maps_code, out, sizeof(out));
	assert_int_equal(WEXITSTATUS(st), VM_EXIT_ERROR);
	assert_non_null(strstr(out, "forbidden system call mmap (9) in the main thread"));

	/*
	 * An ASan build's pthread_create blocks every signal around clone: a
	 * trap with SIGSYS blocked is the kernel's default action, death by
	 * SIGSYS, without the line.
	 */
	st = run_confined(SECCOMP_MAIN, main_makes_thread, out, sizeof(out));
	if (WIFSIGNALED(st)) {
		assert_int_equal(WTERMSIG(st), SIGSYS);
	} else {
		assert_int_equal(WEXITSTATUS(st), VM_EXIT_ERROR);
		assert_non_null(strstr(out, "forbidden system call "));
	}

	st = run_confined(SECCOMP_VCPU, forbidden_unshare, out, sizeof(out));
	assert_int_equal(WEXITSTATUS(st), VM_EXIT_ERROR);
	assert_non_null(strstr(out, "in a vCPU thread"));
}

/*
 * As the main thread forks a checkpoint's memory writer: the writer
 * narrows its list, may write and sync but not open, and its death ends
 * it alone, with its own line.
 */
static void main_forks_writer(void)
{
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		char buf[8] = "data";
		int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);

		if (fd < 0 || seccomp__writer())
			_exit(101);
		if (pwrite(fd, buf, sizeof(buf), 0) != sizeof(buf))
			_exit(102);
		/* not openat: sanitizer builds allow that everywhere */
		unlinkat(AT_FDCWD, "/nonexistent/khyve-writer", 0);
		_exit(103);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		_exit(104);
	/* the writer ended with the SIGSYS handler's status, its parent lives */
	_exit(WIFEXITED(status) && WEXITSTATUS(status) == VM_EXIT_ERROR ? 0 : 105);
}

static void test_writer(void **state)
{
	char out[512];
	int st;

	(void)state;
	st = run_confined(SECCOMP_MAIN, main_forks_writer, out, sizeof(out));
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_string_equal(out, "khyve: seccomp: forbidden system call unlinkat (263) in the checkpoint's "
			    "memory writer: ending the memory writer\n");
}

static void test_allowed_calls_pass(void **state)
{
	char out[512];
	int st;

	(void)state;
	st = run_confined(SECCOMP_MAIN, main_reads_status, out, sizeof(out));
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_string_equal(out, "");
}

static void test_disabled(void **state)
{
	char err[256];

	(void)state;
	assert_int_equal(seccomp__prepare(false, NULL, NULL, err, sizeof(err)), 0);
	assert_int_equal(seccomp__thread(SECCOMP_MAIN), 0);
	/* still unconfined: /proc says so */
	{
		char buf[4096];
		int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
		ssize_t n = read(fd, buf, sizeof(buf) - 1);

		close(fd);
		assert_true(n > 0);
		buf[n] = '\0';
		assert_null(strstr(buf, "Seccomp:\t2\n"));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_names, setup),
		cmocka_unit_test_setup(test_format, setup),
		cmocka_unit_test_setup(test_denied_call_ends_process, setup),
		cmocka_unit_test_setup(test_allowed_calls_pass, setup),
		cmocka_unit_test_setup(test_writer, setup),
		cmocka_unit_test(test_disabled),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
