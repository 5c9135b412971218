/*
 * Unit tests for the character backends (src/console/chardev.c), which
 * virtio-console and COM1 share: what -s/-l accept and refuse, null
 * swallowing output with no input, a file kept (appended to) or
 * truncated, cut back to a saved length, and a pipe's output going
 * through the queue so a write never waits for its reader.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "khyve/chardev.h"

static void test_parse(void **state)
{
	enum chardev_kind kind;
	const char *path;
	char err[200];

	(void)state;
	assert_int_equal(chardev__parse("x", "stdio", &kind, &path, err, sizeof(err)), 0);
	assert_int_equal(kind, CHARDEV_STDIO);
	assert_null(path);
	assert_int_equal(chardev__parse("x", "null", &kind, &path, err, sizeof(err)), 0);
	assert_int_equal(kind, CHARDEV_NULL);
	assert_null(path);
	assert_int_equal(chardev__parse("x", "file:/tmp/a", &kind, &path, err, sizeof(err)), 0);
	assert_int_equal(kind, CHARDEV_FILE);
	assert_string_equal(path, "/tmp/a");
	assert_int_equal(chardev__parse("x", "socket:/tmp/s", &kind, &path, err, sizeof(err)), 0);
	assert_int_equal(kind, CHARDEV_SOCKET);

	assert_int_equal(chardev__parse("x", "tcp:1", &kind, &path, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "x: unknown backend 'tcp:1' (stdio, file:PATH, socket:PATH or null)");
	assert_int_equal(chardev__parse("x", "file:", &kind, &path, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "x: empty path in 'file:'");
	assert_int_equal(chardev__parse("x", "", &kind, &path, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "x needs a backend: stdio, file:PATH, socket:PATH or null");
	assert_int_equal(chardev__parse("x", "nullx", &kind, &path, err, sizeof(err)), -EINVAL);
}

static void test_null(void **state)
{
	struct chardev cd;
	char err[200];

	(void)state;
	assert_int_equal(chardev__open(&cd, "x", "x", CHARDEV_NULL, NULL, false, 4096, "t-null", err,
				       sizeof(err)), 0);
	assert_int_equal(cd.fd, -1);
	assert_null(cd.outq);
	assert_true(chardev__write(&cd, "hello", 5));
	assert_false(cd.broken);
	assert_int_equal(chardev__input_fd(&cd, true), -1);
	chardev__truncate(&cd, 0);	/* a no-op, not an error */
	assert_false(cd.broken);
	chardev__close(&cd);
}

static off_t size_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

static void test_file(void **state)
{
	char dir[] = "/tmp/test_chardev.XXXXXX", path[64], err[200];
	struct chardev cd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/out", dir);
	/* created, written at once (no queue) */
	assert_int_equal(chardev__open(&cd, "x", "x", CHARDEV_FILE, path, false, 4096, "t-file", err,
				       sizeof(err)), 0);
	assert_null(cd.outq);
	assert_int_equal(chardev__input_fd(&cd, true), -1);
	assert_true(chardev__write(&cd, "0123456789", 10));
	assert_int_equal(size_of(path), 10);
	chardev__close(&cd);
	/* kept: appended to (COM1, and a restore) */
	assert_int_equal(chardev__open(&cd, "x", "x", CHARDEV_FILE, path, true, 4096, "t-file", err,
				       sizeof(err)), 0);
	assert_true(chardev__write(&cd, "ab", 2));
	assert_int_equal(size_of(path), 12);
	/* cut to a saved length, written from there on */
	chardev__truncate(&cd, 4);
	assert_true(chardev__write(&cd, "xy", 2));
	assert_int_equal(size_of(path), 6);
	chardev__close(&cd);
	/* not kept: truncated */
	assert_int_equal(chardev__open(&cd, "x", "x", CHARDEV_FILE, path, false, 4096, "t-file", err,
				       sizeof(err)), 0);
	assert_int_equal(size_of(path), 0);
	chardev__close(&cd);
	/* a directory that does not exist: named */
	snprintf(path, sizeof(path), "%s/no/out", dir);
	assert_int_equal(chardev__open(&cd, "who", "x", CHARDEV_FILE, path, true, 4096, "t-file", err,
				       sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "who: "));
	assert_non_null(strstr(err, "No such file or directory"));
	snprintf(path, sizeof(path), "%s/out", dir);
	unlink(path);
	rmdir(dir);
}

static void test_pipe_queued(void **state)
{
	int p[2], saved = dup(STDOUT_FILENO);
	struct chardev cd;
	char err[200], buf[64];

	(void)state;
	signal(SIGPIPE, SIG_IGN);	/* as khyve does */
	/* stdio on a pipe nobody reads yet: queued, so writing more than the pipe holds never waits */
	assert_int_equal(pipe(p), 0);
	assert_int_equal(dup2(p[1], STDOUT_FILENO), STDOUT_FILENO);
	assert_int_equal(chardev__open(&cd, "x", "x", CHARDEV_STDIO, NULL, false, 4096, "t-pipe", err,
				       sizeof(err)), 0);
	assert_non_null(cd.outq);
	assert_int_equal(chardev__input_fd(&cd, true), STDIN_FILENO);
	assert_int_equal(chardev__input_fd(&cd, false), -1);
	for (int i = 0; i < 200000; i++)
		assert_true(chardev__write(&cd, "z", 1));
	/* what was queued arrives */
	assert_true(read(p[0], buf, sizeof(buf)) > 0);
	assert_int_equal(buf[0], 'z');
	/* the writer gives up on a pipe without a reader; close flushes within its bound */
	close(p[0]);
	chardev__close(&cd);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	close(p[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_null),
		cmocka_unit_test(test_file),
		cmocka_unit_test(test_pipe_queued),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
