/* Unit tests for command-line parsing (src/core/config.c). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "khyve/config.h"
#include "khyve/log.h"
#include "khyve/util.h"

#define MAX_ARGS 80

static struct vm_config cfg;
static int saved_log_level;

/*
 * Fully reinitialise glibc's getopt (optind = 0 does; optind = 1 leaves a
 * half-scanned option cluster behind), so that each test starts clean.
 */
static void getopt_reset(void)
{
	static char a0[] = "reset";
	char *av[] = { a0, NULL };

	opterr = 0;
	optind = 0;
	while (getopt(1, av, "") != -1)
		;
}

static int setup(void **state)
{
	(void)state;
	saved_log_level = log_level;
	memset(&cfg, 0, sizeof(cfg));
	getopt_reset();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	config__free(&cfg);
	log_level = saved_log_level;
	return 0;
}

/*
 * Parse a NULL-terminated list of arguments (argv[0] is added).  The copies
 * are writable, as getopt permutes argv; they are freed before returning.
 */
static int parse_list(const char *const *args)
{
	char *argv[MAX_ARGS + 2];
	int argc = 0, r;

	argv[argc++] = strdup("khyve");
	for (; *args; args++) {
		assert_true(argc <= MAX_ARGS);
		argv[argc++] = strdup(*args);
	}
	argv[argc] = NULL;
	config__free(&cfg);
	memset(&cfg, 0x5a, sizeof(cfg));	/* config__parse must not rely on it */
	getopt_reset();
	r = config__parse(&cfg, argc, argv);
	for (int i = 0; i < argc; i++)
		free(argv[i]);
	return r;
}

#define parse(...) parse_list((const char *const[]){ __VA_ARGS__, NULL })

/* Expect -EINVAL, then release whatever was parsed so far. */
#define assert_einval(...) do { \
	assert_int_equal(parse(__VA_ARGS__), -EINVAL); \
	config__free(&cfg); \
} while (0)

static void test_defaults(void **state)
{
	(void)state;
	assert_int_equal(parse("-k", "kernel.elf", "vm1"), 0);
	assert_string_equal(cfg.name, "vm1");
	assert_string_equal(cfg.kernel, "kernel.elf");
	assert_int_equal(cfg.ncpus, 1);
	assert_int_equal(cfg.mem_size, 256 * MiB);
	assert_int_equal(cfg.com1, CONSOLE_STDIO);
	assert_null(cfg.com1_path);
	assert_null(cfg.cmdline);
	assert_int_equal(cfg.nmodules, 0);
	assert_null(cfg.modules[0].path);
	assert_false(cfg.debug_exit);
	assert_int_equal(cfg.debug_exit_port, 0xf4);
	assert_int_equal(log_level, saved_log_level);
}

static void test_short_options(void **state)
{
	(void)state;
	assert_int_equal(parse("-c", "4", "-m", "1G", "-k", "/boot/k", "-A", "console=ttyS0 quiet",
			       "-i", "/boot/m1 a b", "-i", "/boot/m2", "-l", "com1,file:/tmp/out.log",
			       "-v", "myvm"), 0);
	assert_string_equal(cfg.name, "myvm");
	assert_int_equal(cfg.ncpus, 4);
	assert_int_equal(cfg.mem_size, 1 * GiB);
	assert_string_equal(cfg.kernel, "/boot/k");
	assert_string_equal(cfg.cmdline, "console=ttyS0 quiet");
	assert_int_equal(cfg.nmodules, 2);
	assert_string_equal(cfg.modules[0].path, "/boot/m1");
	assert_string_equal(cfg.modules[0].string, "/boot/m1 a b");
	assert_string_equal(cfg.modules[1].path, "/boot/m2");
	assert_string_equal(cfg.modules[1].string, "/boot/m2");
	assert_int_equal(cfg.com1, CONSOLE_FILE);
	assert_string_equal(cfg.com1_path, "/tmp/out.log");
	assert_false(cfg.debug_exit);
	assert_int_equal(log_level, saved_log_level + 1);
}

static void test_attached_short_options(void **state)
{
	(void)state;
	assert_int_equal(parse("-c2", "-m512M", "-kk", "-lcom1,null", "-vv", "vm"), 0);
	assert_int_equal(cfg.ncpus, 2);
	assert_int_equal(cfg.mem_size, 512 * MiB);
	assert_string_equal(cfg.kernel, "k");
	assert_int_equal(cfg.com1, CONSOLE_NULL);
	assert_int_equal(log_level, saved_log_level + 2);
}

static void test_long_options(void **state)
{
	(void)state;
	assert_int_equal(parse("--cpus", "3", "--memory=512M", "--kernel", "k.elf",
			       "--cmdline=a b c", "--module", "mod.bin x=1", "--module=m2",
			       "--lpc", "com1,null", "--debug-exit", "--verbose", "--verbose",
			       "vm-long"), 0);
	assert_string_equal(cfg.name, "vm-long");
	assert_int_equal(cfg.ncpus, 3);
	assert_int_equal(cfg.mem_size, 512 * MiB);
	assert_string_equal(cfg.kernel, "k.elf");
	assert_string_equal(cfg.cmdline, "a b c");
	assert_int_equal(cfg.nmodules, 2);
	assert_string_equal(cfg.modules[0].path, "mod.bin");
	assert_string_equal(cfg.modules[0].string, "mod.bin x=1");
	assert_string_equal(cfg.modules[1].path, "m2");
	assert_int_equal(cfg.com1, CONSOLE_NULL);
	assert_null(cfg.com1_path);
	assert_true(cfg.debug_exit);
	assert_int_equal(cfg.debug_exit_port, 0xf4);
	assert_int_equal(log_level, saved_log_level + 2);
}

static void test_name_anywhere(void **state)
{
	(void)state;
	/* GNU getopt permutes: the name may come first */
	assert_int_equal(parse("vmfirst", "-k", "k", "-c", "2"), 0);
	assert_string_equal(cfg.name, "vmfirst");
	assert_int_equal(cfg.ncpus, 2);
	/* "--" ends options */
	assert_int_equal(parse("-k", "k", "--", "vm2"), 0);
	assert_string_equal(cfg.name, "vm2");
}

static void test_last_wins(void **state)
{
	(void)state;
	assert_int_equal(parse("-c", "2", "-c", "5", "-k", "a", "-k", "b", "-A", "x", "-A", "y",
			       "-m", "64M", "-m", "128M", "-l", "com1,file:/a", "-l", "com1,stdio",
			       "vm"), 0);
	assert_int_equal(cfg.ncpus, 5);
	assert_string_equal(cfg.kernel, "b");
	assert_string_equal(cfg.cmdline, "y");
	assert_int_equal(cfg.mem_size, 128 * MiB);
	assert_int_equal(cfg.com1, CONSOLE_STDIO);
	assert_null(cfg.com1_path);
}

static void test_sizes(void **state)
{
	static const struct { const char *s; uint64_t v; } ok[] = {
		{ "512", 512 * MiB },
		{ "2", 2 * MiB },
		{ "2M", 2 * MiB },
		{ "65536K", 64 * MiB },
		{ "65536k", 64 * MiB },
		{ "4096K", 4 * MiB },
		{ "300m", 300 * MiB },
		{ "1G", 1 * GiB },
		{ "3g", 3 * GiB },
		{ "8G", 8 * GiB },
		{ "1T", 1024 * GiB },
		{ "1t", 1024 * GiB },
		{ "512MB", 512 * MiB },
		{ "512MiB", 512 * MiB },
		{ "2GiB", 2 * GiB },
		{ "3076K", 3076 * KiB },
	};

	(void)state;
	for (unsigned int i = 0; i < ARRAY_SIZE(ok); i++) {
		int r = parse("-m", ok[i].s, "-k", "k", "vm");

		if (r != 0)
			fail_msg("-m %s: returned %d", ok[i].s, r);
		if (cfg.mem_size != ok[i].v)
			fail_msg("-m %s: %llu bytes, expected %llu", ok[i].s,
				 (unsigned long long)cfg.mem_size, (unsigned long long)ok[i].v);
	}
}

static void test_size_errors(void **state)
{
	static const char *const bad[] = {
		"12Q", "abc", "", "-5", "0x100", "12MQ", "1.5G", "M", " 12",
		"0", "1", "1M", "2047K", "1536K",	/* below 2 MiB */
		"2049K", "3077K", "2097153K",		/* not a multiple of 4K */
		"99999999999999999999", "18014398509481984T",	/* out of range */
	};

	(void)state;
	for (unsigned int i = 0; i < ARRAY_SIZE(bad); i++) {
		int r = parse("-m", bad[i], "-k", "k", "vm");

		if (r != -EINVAL)
			fail_msg("-m '%s': returned %d, expected -EINVAL", bad[i], r);
		config__free(&cfg);
	}
}

static void test_cpus(void **state)
{
	static const char *const bad[] = { "0", "abc", "", "-1", "4097", "2x", "0x", "99999999999999999999" };

	(void)state;
	assert_int_equal(parse("-c", "4096", "-k", "k", "vm"), 0);
	assert_int_equal(cfg.ncpus, 4096);
	assert_int_equal(parse("-c", "0x10", "-k", "k", "vm"), 0);
	assert_int_equal(cfg.ncpus, 16);
	for (unsigned int i = 0; i < ARRAY_SIZE(bad); i++) {
		int r = parse("-c", bad[i], "-k", "k", "vm");

		if (r != -EINVAL)
			fail_msg("-c '%s': returned %d, expected -EINVAL", bad[i], r);
		config__free(&cfg);
	}
}

static void test_lpc(void **state)
{
	static const char *const bad[] = {
		"com2,stdio", "com1,", "com1", "com1,file:", "com1,file", "com1,tcp:1234",
		"stdio", "COM1,stdio", "com1,stdio,x", "com1,nul", "",
	};

	(void)state;
	assert_int_equal(parse("-l", "com1,stdio", "-k", "k", "vm"), 0);
	assert_int_equal(cfg.com1, CONSOLE_STDIO);
	assert_null(cfg.com1_path);
	assert_int_equal(parse("-l", "com1,null", "-k", "k", "vm"), 0);
	assert_int_equal(cfg.com1, CONSOLE_NULL);
	assert_int_equal(parse("--lpc=com1,file:rel/path:with:colons", "-k", "k", "vm"), 0);
	assert_int_equal(cfg.com1, CONSOLE_FILE);
	assert_string_equal(cfg.com1_path, "rel/path:with:colons");
	for (unsigned int i = 0; i < ARRAY_SIZE(bad); i++) {
		int r = parse("-l", bad[i], "-k", "k", "vm");

		if (r != -EINVAL)
			fail_msg("-l '%s': returned %d, expected -EINVAL", bad[i], r);
		config__free(&cfg);
	}
}

static void test_debug_exit(void **state)
{
	static const char *const bad[] = {
		"--debug-exit=0xfffd", "--debug-exit=0x10000", "--debug-exit=65535",
		"--debug-exit=abc", "--debug-exit=", "--debug-exit=-1", "--debug-exit=0x",
		"--debug-exit=12z",
	};

	(void)state;
	assert_int_equal(parse("-k", "k", "vm"), 0);
	assert_false(cfg.debug_exit);
	assert_int_equal(parse("--debug-exit", "-k", "k", "vm"), 0);
	assert_true(cfg.debug_exit);
	assert_int_equal(cfg.debug_exit_port, 0xf4);
	assert_int_equal(parse("--debug-exit=0x501", "-k", "k", "vm"), 0);
	assert_true(cfg.debug_exit);
	assert_int_equal(cfg.debug_exit_port, 0x501);
	assert_int_equal(parse("--debug-exit=80", "-k", "k", "vm"), 0);
	assert_int_equal(cfg.debug_exit_port, 80);
	assert_int_equal(parse("--debug-exit=0", "-k", "k", "vm"), 0);
	assert_int_equal(cfg.debug_exit_port, 0);
	assert_int_equal(parse("--debug-exit=0xfffc", "-k", "k", "vm"), 0);
	assert_int_equal(cfg.debug_exit_port, 0xfffc);
	/* the argument is optional, so it must be attached with '=' */
	assert_einval("--debug-exit", "0x501", "-k", "k", "vm");
	for (unsigned int i = 0; i < ARRAY_SIZE(bad); i++) {
		int r = parse(bad[i], "-k", "k", "vm");

		if (r != -EINVAL)
			fail_msg("'%s': returned %d, expected -EINVAL", bad[i], r);
		config__free(&cfg);
	}
}

static void test_modules(void **state)
{
	(void)state;
	assert_int_equal(parse("-k", "k", "-i", "/path/to/mod arg1 arg2", "-i", "tab\targ",
			       "-i", "plain", "-i", "trailing ", "vm"), 0);
	assert_int_equal(cfg.nmodules, 4);
	assert_string_equal(cfg.modules[0].path, "/path/to/mod");
	assert_string_equal(cfg.modules[0].string, "/path/to/mod arg1 arg2");
	assert_string_equal(cfg.modules[1].path, "tab");
	assert_string_equal(cfg.modules[1].string, "tab\targ");
	assert_string_equal(cfg.modules[2].path, "plain");
	assert_string_equal(cfg.modules[2].string, "plain");
	assert_string_equal(cfg.modules[3].path, "trailing");
	assert_string_equal(cfg.modules[3].string, "trailing ");
	/* path and string are separate allocations */
	assert_ptr_not_equal(cfg.modules[0].path, cfg.modules[0].string);

	assert_einval("-k", "k", "-i", " leading-space", "vm");
	assert_einval("-k", "k", "-i", "", "vm");
}

static void test_module_limit(void **state)
{
	const char *args[MAX_ARGS + 1];
	int n = 0;

	(void)state;
	args[n++] = "-k";
	args[n++] = "k";
	for (int i = 0; i < CONFIG_MAX_MODULES; i++) {
		args[n++] = "-i";
		args[n++] = "m";
	}
	args[n++] = "vm";
	args[n] = NULL;
	assert_int_equal(parse_list(args), 0);
	assert_int_equal(cfg.nmodules, CONFIG_MAX_MODULES);
	/* one more */
	args[n - 1] = "-i";
	args[n++] = "m";
	args[n++] = "vm";
	args[n] = NULL;
	assert_int_equal(parse_list(args), -EINVAL);
}

static void test_missing(void **state)
{
	(void)state;
	assert_einval("-k", "k");			/* no VMNAME */
	assert_einval("vm");				/* no -k */
	assert_einval("-c", "2", "vm");
	assert_einval("-k", "k", "vm", "extra");	/* argument after VMNAME */
	assert_einval("-k", "k", "vm", "-c", "2", "extra");
	assert_einval("-k");				/* -k needs an argument */
	assert_einval("vm", "-k");
	assert_einval("vm", "-k", "k", "-c");
	assert_einval("vm", "-k", "k", "--cpus");
	assert_einval("vm", "-k", "k", "--memory");
	assert_int_equal(parse_list((const char *const[]){ NULL }), -EINVAL);
}

static void test_unknown_options(void **state)
{
	(void)state;
	assert_einval("-x", "-k", "k", "vm");
	assert_einval("-k", "k", "-Z", "vm");
	assert_einval("--bogus", "-k", "k", "vm");
	assert_einval("--cpux=2", "-k", "k", "vm");
	assert_einval("--verbose=1", "-k", "k", "vm");
	assert_einval("-k", "k", "-q", "vm");
}

/* -r needs neither -k nor VMNAME; --rundir is recorded; "given" tracks options */
static void test_restore_options(void **state)
{
	(void)state;
	assert_int_equal(parse("-r", "snap"), 0);
	assert_string_equal(cfg.restore, "snap");
	assert_null(cfg.name);
	assert_null(cfg.kernel);
	assert_int_equal(cfg.given, 0);
	config__free(&cfg);
	assert_int_equal(parse("--restore=snap", "-l", "com1,null", "-c", "2", "--rundir", "/tmp/r", "clone"), 0);
	assert_string_equal(cfg.restore, "snap");
	assert_string_equal(cfg.rundir, "/tmp/r");
	assert_string_equal(cfg.name, "clone");
	assert_int_equal(cfg.given, GIVEN_COM1 | GIVEN_CPUS);
	config__free(&cfg);
	assert_einval("-r", "", "vm");
	assert_einval("--rundir=", "-k", "k", "vm");
}

static void test_names(void **state)
{
	static const char *const ok[] = {
		"a", "vm1", "A.b-c_d", "0", "x.", "a..b",
		"0123456789012345678901234567890123456789012345678901234567890123",	/* 64 */
	};
	static const char *const bad[] = {
		"bad/name", "a b", ".hidden", "vm!", "vm\n", "é", "a:b", "",
		"01234567890123456789012345678901234567890123456789012345678901234",	/* 65 */
	};

	(void)state;
	for (unsigned int i = 0; i < ARRAY_SIZE(ok); i++) {
		int r = parse("-k", "k", "--", ok[i]);

		if (r != 0)
			fail_msg("name '%s': returned %d", ok[i], r);
		assert_string_equal(cfg.name, ok[i]);
	}
	for (unsigned int i = 0; i < ARRAY_SIZE(bad); i++) {
		int r = parse("-k", "k", "--", bad[i]);

		if (r != -EINVAL)
			fail_msg("name '%s': returned %d, expected -EINVAL", bad[i], r);
		config__free(&cfg);
	}
	/* a leading '-' can only get through after "--" */
	assert_einval("-k", "k", "--", "-vm");
}

static void test_help(void **state)
{
	int out, devnull;

	(void)state;
	/* keep the usage text off the test output */
	fflush(stdout);
	out = dup(STDOUT_FILENO);
	devnull = open("/dev/null", O_WRONLY);
	assert_true(out >= 0 && devnull >= 0);
	dup2(devnull, STDOUT_FILENO);
	close(devnull);

	int r1 = parse("--help");
	config__free(&cfg);
	int r2 = parse("-h");
	config__free(&cfg);
	int r3 = parse("-k", "k", "-h", "vm");	/* --help wins over a valid line */
	config__free(&cfg);
	int r4 = parse("-c", "0", "-h");	/* an earlier error wins */

	fflush(stdout);
	dup2(out, STDOUT_FILENO);
	close(out);
	assert_int_equal(r1, 1);
	assert_int_equal(r2, 1);
	assert_int_equal(r3, 1);
	assert_int_equal(r4, -EINVAL);

	/* the usage text names every option */
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);
	config__usage(f);
	fclose(f);
	static const char *const words[] = {
		"--cpus", "--memory", "--kernel", "--cmdline", "--module", "com1,stdio",
		"file:PATH", "--debug-exit", "--verbose", "--help", "VMNAME",
	};
	for (unsigned int i = 0; i < ARRAY_SIZE(words); i++)
		if (!strstr(buf, words[i]))
			fail_msg("usage does not mention %s", words[i]);
	free(buf);
}

/*
 * config__parse must start from a clean getopt state however the previous
 * call ended.  Here a first call stops at an unknown option in the middle of
 * the cluster "-Zv"; the second call must not see the left-over "v".
 */
static void test_reparse_after_error_in_cluster(void **state)
{
	static char a0[] = "khyve", a1[] = "-Zv", a2[] = "vm";
	static char b0[] = "khyve", b1[] = "-k", b2[] = "k", b3[] = "vm";
	char *first[] = { a0, a1, a2, NULL };
	char *second[] = { b0, b1, b2, b3, NULL };

	(void)state;
	assert_int_equal(config__parse(&cfg, 3, first), -EINVAL);
	config__free(&cfg);
	/* no getopt_reset() here: config__parse alone must be enough */
	assert_int_equal(config__parse(&cfg, 4, second), 0);
	assert_string_equal(cfg.name, "vm");
	assert_string_equal(cfg.kernel, "k");
	assert_int_equal(log_level, saved_log_level);	/* no stray -v */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_short_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_attached_short_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_name_anywhere, setup, teardown),
		cmocka_unit_test_setup_teardown(test_last_wins, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_size_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cpus, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lpc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_debug_exit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_modules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_module_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_help, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reparse_after_error_in_cluster, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
