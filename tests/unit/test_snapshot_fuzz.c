/*
 * Unit tests for the snapshot state file (see test_snapshot.c), part 5:
 * thousands of mutated images (run under SAN=1 as well), CBOR count,
 * item and nesting bombs, the largest state, the state file's limits and
 * the field paths in messages.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "snaphelp.h"

/* ------------------------------------------------------------------ */
/* 5. mutated images: the reader only ever returns                      */

/* A definite array/map head counting more items than bytes follow. */
struct bomb {
	size_t left;
	bool found;
};

static void bomb_array(void *ctx, size_t n)
{
	struct bomb *b = ctx;

	if (n > b->left)
		b->found = true;
}

static void bomb_map(void *ctx, size_t n)
{
	struct bomb *b = ctx;

	if (n > b->left / 2)
		b->found = true;
}

static bool has_count_bomb(const uint8_t *p, size_t len)
{
	struct cbor_callbacks cb = cbor_empty_callbacks;
	struct bomb b = { 0, false };
	size_t pos = 0;

	cb.array_start = bomb_array;
	cb.map_start = bomb_map;
	while (pos < len && !b.found) {
		struct cbor_decoder_result r;

		b.left = len - pos;
		r = cbor_stream_decode(p + pos, len - pos, &cb, &b);
		if (r.status != CBOR_DECODER_FINISHED || !r.read)
			break;
		pos += r.read;
	}
	return b.found;
}

static void mutate(struct rng *r, uint8_t *p, size_t *len, unsigned int nops)
{
	for (unsigned int i = 0; i < nops && *len; i++) {
		size_t at = (size_t)(rnd(r) % *len);

		switch (rnd(r) % 5) {
		case 0:
		case 1:
			p[at] ^= (uint8_t)(1u << (rnd(r) % 8));
			break;
		case 2:
		case 3:
			p[at] = (uint8_t)rnd(r);
			break;
		default:
			*len = at;
			break;
		}
	}
}

/* raw mutations: whatever is accepted must be the baseline itself */
static void test_fuzz_raw(void **state)
{
	struct rng r = { 0xf00d };
	uint8_t *p = malloc(g_img.len);
	unsigned int accepted = 0;

	(void)state;
	assert_non_null(p);
	for (unsigned int i = 0; i < 3000; i++) {
		size_t len = g_img.len;
		struct snap_state s;
		char err[ERRLEN];

		memcpy(p, g_img.p, len);
		mutate(&r, p, &len, 1 + (unsigned int)(rnd(&r) % 4));
		if (read_img(p, len, &s, err) == 0) {
			struct sbuf again = { 0 };

			/* an undetected change must have changed nothing that matters */
			accepted++;
			assert_int_equal(snapsec__write_state(&again, &s), 0);
			assert_same_bytes(&g_img, &again);
			sbuf__free(&again);
			snap_state__free(&s);
		}
	}
	free(p);
	print_message("    raw mutants: %u of 3000 accepted unchanged\n", accepted);
}

/*
 * Payload mutations behind valid checksums: the decoders see them.  What is
 * accepted must survive write -> read unchanged.  Payloads with a definite
 * array/map count larger than the bytes that follow are left out here: with
 * libcbor 0.8 they make the reader allocate count * 8 bytes up front (an
 * ASan build aborts on the largest), which test_cbor_count_bomb covers.
 * Once dec__load bounds those counts, the filter can go.
 */
static void test_fuzz_payloads(void **state)
{
	struct rng r = { 0xbeef };
	unsigned int accepted = 0, bombs = 0, runs = 4000;
	struct sbuf pl = { 0 }, img = { 0 };

	(void)state;
	for (unsigned int i = 0; i < runs; i++) {
		const struct frame *f = &g_fr[rnd(&r) % (g_nfr - 1)];
		struct bopts o = { .repl_of = f->name, .repl = &pl };
		struct snap_state s;
		char err[ERRLEN];
		size_t len = f->plen;

		pl.len = 0;
		sbuf__put(&pl, g_img.p + f->payload_off, f->plen);
		/* small sections get fewer mutations; some get many */
		{
			uint64_t many = rnd(&r) % 8 == 0;

			mutate(&r, pl.p, &len, 1 + (unsigned int)(rnd(&r) % (many ? 40 : 3)));
		}
		pl.len = len;
		/* count bombs are fed too: dec__load must refuse them cheaply */
		if (has_count_bomb(pl.p, pl.len))
			bombs++;
		build(&img, &g_state, &o);
		if (read_img(img.p, img.len, &s, err) == 0) {
			struct sbuf again = { 0 };
			struct snap_state s2;

			accepted++;
			assert_int_equal(snapsec__write_state(&again, &s), 0);
			if (read_img(again.p, again.len, &s2, err))
				fail_msg("an accepted state re-written is refused: %s", err);
			check_state_equal(&s, &s2);
			snap_state__free(&s2);
			sbuf__free(&again);
			snap_state__free(&s);
		} else if (!strstr(err, "section '")) {
			fail_msg("error does not name the section: %s", err);
		}
	}
	sbuf__free(&pl);
	sbuf__free(&img);
	print_message("    payload mutants: %u of %u accepted; %u count bombs among the mutants\n", accepted, runs, bombs);
}

/* header and frame mutations with a recomputed file hash (a valid "end") */
static void test_fuzz_frames(void **state)
{
	struct rng r = { 0xcafe };
	const size_t end_off = g_fr[g_nfr - 1].off;
	struct sbuf img = { 0 };
	unsigned int accepted = 0;

	(void)state;
	for (unsigned int i = 0; i < 2000; i++) {
		struct snap_state s;
		char err[ERRLEN];
		size_t len = end_off;

		img.len = 0;
		sbuf__put(&img, g_img.p, end_off);
		if (i & 1) {
			mutate(&r, img.p, &len, 1 + (unsigned int)(rnd(&r) % 3));
		} else {
			/* only frame headers */
			unsigned int nk = 1 + (unsigned int)(rnd(&r) % 3);

			for (unsigned int k = 0; k < nk; k++) {
				const struct frame *f = &g_fr[rnd(&r) % (g_nfr - 1)];
				size_t at = f->off + (size_t)(rnd(&r) % (SNAP_SECTION_HDR + f->nl));

				if (rnd(&r) & 1)
					img.p[at] ^= (uint8_t)(1u << (rnd(&r) % 8));
				else
					img.p[at] = (uint8_t)rnd(&r);
			}
		}
		img.len = len;
		snapfmt__finish(&img, g_nfr - 1);
		if (read_img(img.p, img.len, &s, err) == 0) {
			accepted++;
			snap_state__free(&s);
		}
	}
	sbuf__free(&img);
	print_message("    frame mutants: %u of 2000 accepted\n", accepted);
}

static long proc_status_kb(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, strlen(key)))
			v = strtol(line + strlen(key), NULL, 10);
	fclose(f);
	return v;
}

/*
 * A payload whose CBOR array head claims 2^24 elements in a 9-byte payload:
 * the reader must refuse it without allocating memory for 2^24 elements
 * (libcbor 0.8 allocates and clears the whole element vector on the head).
 */
static void test_cbor_count_bomb(void **state)
{
	static const uint8_t bomb[] = { 0xbf, 0x6b, 'k', 'v', 'm', 'c', 'l', 'o', 'c', 'k', '_', 'n', 's',
					0x9a, 0x01, 0x00, 0x00, 0x00, 0xff };
	struct sbuf pl = { 0 }, img = { 0 };
	struct bopts o = { .repl_of = "clock", .repl = &pl };
	long before, after;
	FILE *f;

	(void)state;
	sbuf__put(&pl, bomb, sizeof(bomb));
	assert_true(has_count_bomb(pl.p, pl.len));
	build(&img, &g_state, &o);
	f = fopen("/proc/self/clear_refs", "w");
	if (!f || fputs("5", f) < 0 || fclose(f)) {	/* resets VmHWM */
		sbuf__free(&pl);
		sbuf__free(&img);
		skip();
	}
	before = proc_status_kb("VmHWM:");
	expect_refused(img.p, img.len, -EINVAL, "section 'clock'");
	after = proc_status_kb("VmHWM:");
	sbuf__free(&pl);
	sbuf__free(&img);
	if (before < 0 || after < 0)
		skip();
	if (after - before > 32 * 1024)
		fail_msg("a 19-byte payload made the reader's peak RSS grow by %ld MiB", (after - before) / 1024);
}

/*
 * Memory bombs: a payload of the largest size a section may have (4 MiB),
 * every byte an item, in a key the reader ignores.  Before the item limit
 * 16 MB of empty maps cost 1.6 GB; now the walk refuses it at item 65537.
 */
static void bomb_payload(struct sbuf *pl, uint8_t item, size_t bytes)
{
	static const uint8_t head[] = { 0xbf, 0x6b, 'k', 'v', 'm', 'c', 'l', 'o', 'c', 'k', '_', 'n', 's',
					0x1b, 0, 0, 0, 0, 0, 0, 0, 1,
					0x64, 'j', 'u', 'n', 'k', 0x9f };
	static const uint8_t tail[] = { 0xff, 0xff };
	size_t n = bytes - sizeof(head) - sizeof(tail);
	uint8_t *fill = malloc(n);

	assert_non_null(fill);
	memset(fill, item, n);
	pl->len = 0;
	sbuf__put(pl, head, sizeof(head));
	sbuf__put(pl, fill, n);
	sbuf__put(pl, tail, sizeof(tail));
	free(fill);
	assert_int_equal(pl->err, 0);
}

static void test_bomb_empty_maps(void **state)
{
	static const uint8_t items[] = { 0xa0, 0x80, 0x00, 0xf6 };	/* {}, [], 0, null */
	struct sbuf pl = { 0 }, img = { 0 };
	struct bopts o = { .repl_of = "clock", .repl = &pl };
	long before, after;
	bool hwm;
	FILE *f;

	(void)state;
	for (unsigned int i = 0; i < ARRAY_SIZE(items); i++) {
		f = fopen("/proc/self/clear_refs", "w");
		hwm = f && fputs("5", f) >= 0 && !fclose(f);	/* resets VmHWM */
		bomb_payload(&pl, items[i], SNAP_SECTION_MAX);
		build(&img, &g_state, &o);
		before = proc_status_kb("VmHWM:");
		expect_refused(img.p, img.len, -EINVAL, "section 'clock': payload holds more than 65536 CBOR items");
		after = proc_status_kb("VmHWM:");
		if (hwm && before >= 0 && after >= 0 && after - before > 32 * 1024)
			fail_msg("a 4 MiB bomb made the reader's peak RSS grow by %ld MiB", (after - before) / 1024);
	}
	/* at the limit it is accepted: the limit is on items, not on bytes */
	bomb_payload(&pl, 0xa0, 28 + SNAP_SECTION_ITEMS - 6 + 2);
	build(&img, &g_state, &o);
	{
		struct snap_state s;
		char err[ERRLEN];

		if (read_img(img.p, img.len, &s, err))
			fail_msg("a clock section of %u items was refused: %s", SNAP_SECTION_ITEMS, err);
		snap_state__free(&s);
	}
	sbuf__free(&pl);
	sbuf__free(&img);
}

/* Nesting: libcbor frees a tree recursively; deep nesting is refused. */
static void test_bomb_deep_nesting(void **state)
{
	static const uint8_t head[] = { 0xbf, 0x6b, 'k', 'v', 'm', 'c', 'l', 'o', 'c', 'k', '_', 'n', 's',
					0x1b, 0, 0, 0, 0, 0, 0, 0, 1, 0x64, 'j', 'u', 'n', 'k' };
	static const unsigned int depths[] = { SNAP_DEPTH_MAX, 40000 };
	struct sbuf pl = { 0 }, img = { 0 };
	struct bopts o = { .repl_of = "clock", .repl = &pl };

	(void)state;
	for (unsigned int i = 0; i < ARRAY_SIZE(depths); i++) {
		pl.len = 0;
		sbuf__put(&pl, head, sizeof(head));
		/* the section map is one level: depth-1 arrays more make depth levels */
		for (unsigned int k = 0; k < depths[i]; k++)
			sbuf__put(&pl, (const uint8_t[]){ k & 1 ? 0x81 : 0x9f }, 1);
		sbuf__put(&pl, (const uint8_t[]){ 0x00 }, 1);
		for (unsigned int k = depths[i]; k-- > 0;)
			if (!(k & 1))
				sbuf__put(&pl, (const uint8_t[]){ 0xff }, 1);
		sbuf__put(&pl, (const uint8_t[]){ 0xff }, 1);
		build(&img, &g_state, &o);
		expect_refused(img.p, img.len, -EINVAL,
			       "section 'clock': payload nests CBOR maps and arrays deeper than 16");
	}
	/* one level less is accepted */
	pl.len = 0;
	sbuf__put(&pl, head, sizeof(head));
	for (unsigned int k = 0; k < SNAP_DEPTH_MAX - 1; k++)
		sbuf__put(&pl, (const uint8_t[]){ 0x81 }, 1);
	sbuf__put(&pl, (const uint8_t[]){ 0x00, 0xff }, 2);
	build(&img, &g_state, &o);
	{
		struct snap_state s;
		char err[ERRLEN];

		if (read_img(img.p, img.len, &s, err))
			fail_msg("a payload nested %d deep was refused: %s", SNAP_DEPTH_MAX, err);
		snap_state__free(&s);
	}
	sbuf__free(&pl);
	sbuf__free(&img);
}

/* The whole file's item budget, shared by every section's dec__load. */
static void test_bomb_file_items(void **state)
{
	struct sbuf pl = { 0 };
	char err[ERRLEN];
	size_t left = SNAP_STATE_ITEMS;
	unsigned int loaded = 0;

	(void)state;
	bomb_payload(&pl, 0xa0, 60000);	/* some 60000 items: within one section's limit */
	for (;;) {
		struct dec d = { .section = "vcpu.7", .err = err, .errlen = sizeof(err), .items_left = &left };
		cbor_item_t *m = dec__load(&d, pl.p, pl.len);

		if (!m)
			break;
		cbor_decref(&m);
		if (++loaded > SNAP_STATE_ITEMS / 50000)
			fail_msg("%u payloads of 60000 items loaded: no budget", loaded);
	}
	assert_int_equal(loaded, SNAP_STATE_ITEMS / 60000);
	assert_string_equal(err, "section 'vcpu.7': the state file holds more than 2097152 CBOR items");
	sbuf__free(&pl);
}

/*
 * The largest state a khyve can write - 254 vCPUs, each with a 64 KiB
 * XSAVE area, 256 MSRs, 256 CPUID entries, 16 XCRs - is within every limit.
 */
static void test_largest_state_accepted(void **state)
{
	struct snap_state big, back;
	struct sbuf img = { 0 };
	struct rng r = { 777 };
	char err[ERRLEN];

	(void)state;
	/* make_state's vCPUs grow with their number: only one from it */
	make_state(778, &big, 1, 64 * MiB);
	free(big.vcpus);
	big.ncpus = big.cfg.ncpus = 254;
	big.vcpus = calloc(big.ncpus, sizeof(*big.vcpus));
	assert_non_null(big.vcpus);
	for (unsigned int i = 0; i < big.ncpus; i++)
		make_vcpu(&r, &big.vcpus[i], 65536, VCPU_MAX_MSRS, VCPU_MAX_CPUID, 16);
	assert_int_equal(snapsec__write_state(&img, &big), 0);
	print_message("    largest state: %zu bytes\n", img.len);
	assert_true(img.len <= SNAP_STATE_MAX);
	if (read_img(img.p, img.len, &back, err))
		fail_msg("the largest state is refused: %s", err);
	snap_state__free(&back);
	snap_state__free(&big);
	sbuf__free(&img);
}

/*
 * snapsec__read_state_file reads the header before the rest: a file that
 * is not a state file is refused as such whatever its size; a state file
 * larger than the limit is refused by size, before it is read.
 */
static void test_state_file_limits(void **state)
{
	char dir[] = "/tmp/khyve-unit.XXXXXX", path[64], why[256];
	void *buf = NULL;
	size_t len = 0;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/s.state", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, g_img.p, SNAP_HEADER_SIZE), SNAP_HEADER_SIZE);
	assert_int_equal(ftruncate(fd, 1ULL << 30), 0);	/* sparse: costs no disk */
	assert_int_equal(snapsec__read_state_file(path, &buf, &len, why, sizeof(why)), -EFBIG);
	assert_string_equal(why, "1073741824 bytes, larger than any khyve state file (at most 32 MiB)");
	assert_int_equal(pwrite(fd, "X", 1, 0), 1);
	assert_int_equal(snapsec__read_state_file(path, &buf, &len, why, sizeof(why)), -EINVAL);
	assert_string_equal(why, "not a khyve snapshot state file (wrong magic)");
	assert_int_equal(pwrite(fd, "K", 1, 0), 1);
	assert_int_equal(ftruncate(fd, (off_t)g_img.len), 0);
	assert_int_equal(pwrite(fd, g_img.p, g_img.len, 0), (ssize_t)g_img.len);
	close(fd);
	assert_int_equal(snapsec__read_state_file(path, &buf, &len, why, sizeof(why)), 0);
	assert_int_equal(len, g_img.len);
	assert_memory_equal(buf, g_img.p, len);
	free(buf);
	unlink(path);
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_int_equal(snapsec__read_state_file(path, &buf, &len, why, sizeof(why)), -EINVAL);
	assert_string_equal(why, "it is a FIFO, not a regular file");
	unlink(path);
	rmdir(dir);
}

/* An indefinite-length array as an array element (CBOR 0x9f): khyve writes none. */
static void enc_array(struct sbuf *b)
{
	static const uint8_t start = 0x9f;

	sbuf__put(b, &start, 1);
}

/*
 * Messages name a field by its path: the array entry and the map it is
 * in, so that "field 'function' is missing" says which cpuid entry.
 */
static void test_field_paths(void **state)
{
	struct sbuf pl = { 0 }, arr = { 0 };

	(void)state;
	/* the second region has no size */
	payload_of("memory", &pl);
	enc_array(&arr);
	enc__map(&arr);
	enc__u64(&arr, "gpa", 0);
	enc__u64(&arr, "size", BASE_MEM);
	enc__u64(&arr, "offset", 0);
	enc__end(&arr);
	enc__map(&arr);
	enc__u64(&arr, "gpa", 4ULL << 30);
	enc__u64(&arr, "offset", BASE_MEM);
	enc__end(&arr);
	enc__end(&arr);
	set_value(&pl, "regions", arr.p, arr.len);
	expect_payload_refused("memory", &pl, "section 'memory': field 'regions[1].size' is missing", NULL);

	/* the third cpuid entry has no function; the first a u16 eax */
	payload_of("vcpu.0", &pl);
	arr.len = 0;
	enc_array(&arr);
	for (unsigned int i = 0; i < 3; i++) {
		enc__map(&arr);
		if (i != 2)
			enc__u32(&arr, "function", i);
		enc__u32(&arr, "index", 0);
		enc__u32(&arr, "flags", 0);
		enc__u32(&arr, "eax", 0);
		enc__u32(&arr, "ebx", 0);
		enc__u32(&arr, "ecx", 0);
		enc__u32(&arr, "edx", 0);
		enc__end(&arr);
	}
	enc__end(&arr);
	set_value(&pl, "cpuid", arr.p, arr.len);
	expect_payload_refused("vcpu.0", &pl, "section 'vcpu.0': field 'cpuid[2].function' is missing", NULL);

	/* nested maps: sregs.cs.limit of the wrong width */
	payload_of("vcpu.0", &pl);
	{
		size_t off = find_key(&pl, "cs");
		struct sbuf seg = { 0 };

		enc__map(&seg);
		enc__u64(&seg, "base", 0);
		enc__u64(&seg, "limit", 0xffff);
		enc__end(&seg);
		patch(&pl, off, item_len(pl.p + off, pl.len - off), seg.p, seg.len);
		sbuf__free(&seg);
	}
	expect_payload_refused("vcpu.0", &pl, "section 'vcpu.0': field 'sregs.cs.limit' is not a fixed-width u32",
			       NULL);

	/* an array of integers: interrupt_bitmap[2] */
	payload_of("vcpu.0", &pl);
	arr.len = 0;
	enc_array(&arr);
	for (unsigned int i = 0; i < 4; i++) {
		uint8_t h[9];

		if (i == 2)
			sbuf__put(&arr, h, cbor_encode_uint32(7, h, sizeof(h)));
		else
			enc__elem_u64(&arr, 7);
	}
	enc__end(&arr);
	set_value(&pl, "interrupt_bitmap", arr.p, arr.len);
	expect_payload_refused("vcpu.0", &pl,
			       "section 'vcpu.0': field 'sregs.interrupt_bitmap[2]' is not a fixed-width u64", NULL);
	sbuf__free(&arr);
	sbuf__free(&pl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fuzz_raw),
		cmocka_unit_test(test_fuzz_payloads),
		cmocka_unit_test(test_fuzz_frames),
		cmocka_unit_test(test_cbor_count_bomb),
		cmocka_unit_test(test_bomb_empty_maps),
		cmocka_unit_test(test_bomb_deep_nesting),
		cmocka_unit_test(test_bomb_file_items),
		cmocka_unit_test(test_largest_state_accepted),
		cmocka_unit_test(test_state_file_limits),
		cmocka_unit_test(test_field_paths),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
