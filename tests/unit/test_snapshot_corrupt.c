/*
 * Unit tests for the snapshot state file (see test_snapshot.c), part 3:
 * corruption of a valid image: truncation, flipped bits, versions,
 * missing/duplicate/unknown sections.  The baseline image and the builder
 * with faults are in snaphelp.c.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "snaphelp.h"

/* ------------------------------------------------------------------ */
/* 3. corruption of a valid image                                       */

/* every length from 0 to len-1 is refused, as truncated */
static void test_truncate_everywhere(void **state)
{
	(void)state;
	for (size_t cut = 0; cut < g_img.len; cut++) {
		if (cut < SNAP_HEADER_SIZE)
			expect_refused(g_img.p, cut, -EINVAL, "too short for a header");
		else
			expect_refused(g_img.p, cut, -EINVAL, "truncated");
	}
}

/* at each boundary and the named points inside each section, the exact reason */
static void test_truncate_points(void **state)
{
	char want[128];

	(void)state;
	expect_refused(g_img.p, SNAP_HEADER_SIZE, -EINVAL, "file is truncated: no 'end' section after 0 sections");
	for (unsigned int i = 0; i < g_nfr; i++) {
		const struct frame *f = &g_fr[i];

		/* right before the frame */
		snprintf(want, sizeof(want), "no 'end' section after %u sections", i);
		expect_refused(g_img.p, f->off, -EINVAL, "truncated", want);
		/* first byte of the frame */
		snprintf(want, sizeof(want), "no section frame at byte %zu (file is truncated)", f->off);
		expect_refused(g_img.p, f->off + 1, -EINVAL, want);
		/* inside the name, inside the header fields, at the hash */
		snprintf(want, sizeof(want), "file is truncated inside the section frame at byte %zu", f->off);
		expect_refused(g_img.p, f->off + 6 + f->nl / 2, -EINVAL, want);
		expect_refused(g_img.p, f->ver_off + 2, -EINVAL, want);
		expect_refused(g_img.p, f->len_off + 5, -EINVAL, want);
		expect_refused(g_img.p, f->payload_off - 1, -EINVAL, want);
		/* payload: first byte, middle, last byte */
		snprintf(want, sizeof(want), "section '%.64s': length %zu runs past the end", f->name, f->plen);
		expect_refused(g_img.p, f->payload_off, -EINVAL, want, "file is truncated");
		expect_refused(g_img.p, f->payload_off + f->plen / 2, -EINVAL, want, "file is truncated");
		expect_refused(g_img.p, f->end - 1, -EINVAL, want, "file is truncated");
	}
}

static void flip(uint8_t *p, size_t off, unsigned int bit)
{
	p[off] ^= (uint8_t)(1u << bit);
}

static uint8_t *img_copy(void)
{
	uint8_t *p = malloc(g_img.len);

	assert_non_null(p);
	memcpy(p, g_img.p, g_img.len);
	return p;
}

static void test_flip_header(void **state)
{
	uint8_t *p = img_copy();

	(void)state;
	for (size_t off = 0; off < SNAP_HEADER_SIZE; off++) {
		for (unsigned int bit = 0; bit < 8; bit++) {
			flip(p, off, bit);
			if (off < 8) {
				expect_refused(p, g_img.len, -EINVAL, "wrong magic");
			} else if (off < 12) {
				if (le32(p + 8) == 0)
					expect_refused(p, g_img.len, -EINVAL, "header is damaged (version 0");
				else
					expect_refused(p, g_img.len, -EPROTO, "newer than this khyve reads");
			} else if (off < 16) {
				expect_refused(p, g_img.len, -EINVAL, "header is damaged");
			} else {
				/* the UUID: only the end section's file hash covers it */
				expect_refused(p, g_img.len, -EINVAL, "file checksum mismatch");
			}
			flip(p, off, bit);
		}
	}
	assert_memory_equal(p, g_img.p, g_img.len);
	free(p);
}

/* the newer format version, with nothing else changed */
static void test_newer_format_version(void **state)
{
	uint8_t *p = img_copy();

	(void)state;
	p[8] = 2;
	expect_refused(p, g_img.len, -EPROTO, "format version 2 is newer than this khyve reads (1)");
	p[8] = 0;
	p[11] = 1;
	expect_refused(p, g_img.len, -EPROTO, "format version 16777216 is newer");
	free(p);
}

/*
 * Every bit of every frame field (magic, name length, name, version, flags,
 * length, hash) of every section but the end section's version and flags
 * (test_flip_end_frame_fields).
 */
static void test_flip_frames(void **state)
{
	uint8_t *p = img_copy();
	char want[128];

	(void)state;
	for (unsigned int i = 0; i < g_nfr; i++) {
		const struct frame *f = &g_fr[i];
		bool is_end = !strcmp(f->name, "end");

		for (size_t off = f->off; off < f->payload_off; off++) {
			const char *sub = NULL;

			if (off < f->off + 4) {
				snprintf(want, sizeof(want), "no section frame at byte %zu", f->off);
				sub = want;
			} else if (off >= f->ver_off && off < f->ver_off + 4 && !is_end) {
				sub = "file checksum mismatch";
			} else if (off >= f->ver_off && off < f->len_off) {
				/* flags, and the end frame's version: refused one way or
				 * another ("unknown flags", "file checksum mismatch",
				 * "section 'end' has version") */
				sub = NULL;
			} else if (off >= f->hash_off) {
				snprintf(want, sizeof(want), "section '%.64s': checksum mismatch", f->name);
				sub = want;
			}
			for (unsigned int bit = 0; bit < 8; bit++) {
				flip(p, off, bit);
				if (sub)
					expect_refused(p, g_img.len, -EINVAL, sub);
				else	/* name length, name, payload length: any clean error */
					expect_refused(p, g_img.len, 0, "");
				flip(p, off, bit);
			}
		}
	}
	free(p);
}

/* one bit of every payload byte: the checksum names the section */
static void test_flip_payloads(void **state)
{
	uint8_t *p = img_copy();
	char want[128];

	(void)state;
	for (unsigned int i = 0; i < g_nfr; i++) {
		const struct frame *f = &g_fr[i];

		snprintf(want, sizeof(want), "section '%.64s': checksum mismatch (corrupt)", f->name);
		for (size_t off = f->payload_off; off < f->end; off++) {
			flip(p, off, (unsigned int)(off % 8));
			expect_refused(p, g_img.len, -EINVAL, want);
			flip(p, off, (unsigned int)(off % 8));
		}
	}
	free(p);
}

/*
 * The end section's own version and flags are covered by no checksum (the
 * file hash stops at the end frame); the spec says "Version 1, required".
 * A flipped bit there must not go unnoticed.
 */
static void test_flip_end_frame_fields(void **state)
{
	const struct frame *f = &g_fr[g_nfr - 1];
	uint8_t *p = img_copy();
	unsigned int accepted = 0;

	(void)state;
	assert_string_equal(f->name, "end");
	for (size_t off = f->ver_off; off < f->len_off; off++) {
		for (unsigned int bit = 0; bit < 8; bit++) {
			struct snap_state s;
			char err[ERRLEN];

			flip(p, off, bit);
			if (read_img(p, g_img.len, &s, err) == 0) {
				accepted++;
				snap_state__free(&s);
			}
			flip(p, off, bit);
		}
	}
	free(p);
	if (accepted)
		fail_msg("%u of 64 single-bit flips in the 'end' frame's version/flags were accepted", accepted);
}

/* inspect's lenient parse: damaged checksums listed, frames as far as they go */
static void test_parse_keep_going(void **state)
{
	uint8_t *p = img_copy();
	struct snap_section *secs;
	unsigned int nsecs, ipit = 0;
	uint32_t fmt;
	uint8_t uuid[16];
	char err[ERRLEN];

	(void)state;
	while (strcmp(g_fr[ipit].name, "pit"))
		ipit++;
	flip(p, g_fr[ipit].payload_off + 3, 2);
	assert_int_equal(snapfmt__parse(p, g_img.len, &fmt, uuid, &secs, &nsecs, true, err, sizeof(err)), 0);
	assert_int_equal(nsecs, g_nfr - 1);
	for (unsigned int i = 0; i < nsecs; i++) {
		assert_string_equal(secs[i].name, g_fr[i].name);
		assert_int_equal(secs[i].hash_ok, i != ipit);
	}
	free(secs);
	/* strict: refused, nothing returned */
	secs = (void *)p;
	assert_int_equal(snapfmt__parse(p, g_img.len, &fmt, uuid, &secs, &nsecs, false, err, sizeof(err)),
			 -EINVAL);
	assert_null(secs);
	assert_int_equal(nsecs, 0);
	assert_non_null(strstr(err, "section 'pit': checksum mismatch"));
	/* cut inside pit's payload: an error, and the sections before it (caller frees) */
	assert_int_equal(snapfmt__parse(p, g_fr[ipit].payload_off + 5, &fmt, uuid, &secs, &nsecs, true, err,
					sizeof(err)), -EINVAL);
	assert_int_equal(nsecs, ipit);
	assert_non_null(secs);
	assert_string_equal(secs[ipit - 1].name, g_fr[ipit - 1].name);
	assert_non_null(strstr(err, "file is truncated"));
	free(secs);
	free(p);
}

/* a section at a version newer than this khyve knows, with a valid checksum */
static void test_newer_section_version(void **state)
{
	char names[16][16], want[128];
	unsigned int n = section_names(&g_state, names);

	(void)state;
	for (unsigned int i = 0; i < n; i++) {
		uint32_t known = !strcmp(names[i], "config") ? CONFIG_VERSION : 1;
		const uint32_t vers[] = { known + 1, 0xffffffffu };

		for (unsigned int j = 0; j < ARRAY_SIZE(vers); j++) {
			struct bopts o = { .ver_of = names[i], .ver = vers[j] };
			struct sbuf img = { 0 };

			build(&img, &g_state, &o);
			snprintf(want, sizeof(want), "section '%.15s' has version %u, newer than this khyve reads (%u)",
				 names[i], vers[j], known);
			expect_refused(img.p, img.len, -EPROTO, want);
			sbuf__free(&img);
		}
		{
			struct bopts o = { .ver_of = names[i], .ver = 0 };
			struct sbuf img = { 0 };

			build(&img, &g_state, &o);
			snprintf(want, sizeof(want), "section '%.15s' has version 0", names[i]);
			expect_refused(img.p, img.len, -EINVAL, want);
			sbuf__free(&img);
		}
	}
}

/* each required section left out: named as missing */
static void test_missing_section(void **state)
{
	char names[16][16], want[128];
	unsigned int n = section_names(&g_state, names);
	struct sbuf img = { 0 };

	(void)state;
	for (unsigned int i = 0; i < n; i++) {
		struct bopts o = { .skip = names[i] };

		build(&img, &g_state, &o);
		snprintf(want, sizeof(want), "required section '%.15s' is missing", names[i]);
		expect_refused(img.p, img.len, -EINVAL, want);
	}
	/* no end section at all */
	{
		struct bopts o = { .no_end = true };

		build(&img, &g_state, &o);
		expect_refused(img.p, img.len, -EINVAL, "no 'end' section after 8 sections");
	}
	sbuf__free(&img);
}

static void test_duplicate_section(void **state)
{
	char names[16][16], want[128];
	unsigned int n = section_names(&g_state, names);
	struct sbuf img = { 0 };

	(void)state;
	for (unsigned int i = 0; i < n; i++) {
		struct bopts o = { .dup = names[i] };

		build(&img, &g_state, &o);
		snprintf(want, sizeof(want), "section '%.15s' appears twice", names[i]);
		expect_refused(img.p, img.len, -EINVAL, want);
	}
	/* a second "end" section after the first is garbage after the end */
	build(&img, &g_state, NULL);
	sbuf__put(&img, g_img.p + g_fr[g_nfr - 1].off, g_fr[g_nfr - 1].end - g_fr[g_nfr - 1].off);
	expect_refused(img.p, img.len, -EINVAL, "bytes of garbage after the 'end' section");
	sbuf__free(&img);
}

/* a state decoded from img must be the baseline and re-encode to it */
static void expect_baseline(const struct sbuf *img)
{
	struct snap_state s;
	struct sbuf again = { 0 };
	char err[ERRLEN];

	if (read_img(img->p, img->len, &s, err))
		fail_msg("read_state refused: %s", err);
	check_state_equal(&g_state, &s);
	assert_int_equal(snapsec__write_state(&again, &s), 0);
	assert_same_bytes(&g_img, &again);
	sbuf__free(&again);
	snap_state__free(&s);
}

static void test_unknown_section(void **state)
{
	static const uint8_t map[] = { 0xbf, 0x63, 'i', 'e', 'r', 0x18, 0x01, 0xff };
	struct sbuf pl = { 0 }, empty = { 0 }, img = { 0 };
	static const char *const names[] = { "uart.com1", "i8042", "virtio-gpu.3", "vcpu.01", "vcpu.254",
					      "vcpu.", "vcpu.-1", "x" };

	(void)state;
	sbuf__put(&pl, map, sizeof(map));
	for (unsigned int i = 0; i < ARRAY_SIZE(names); i++) {
		struct bopts o = { .extra = { names[i], 1, SNAP_FLAG_REQUIRED, &pl } };
		char want[128];

		build(&img, &g_state, &o);
		snprintf(want, sizeof(want), "unknown required section '%s'", names[i]);
		expect_refused(img.p, img.len, -EINVAL, want);

		/* optional: skipped, whatever its version, and the result is the baseline */
		o.extra.flags = 0;
		build(&img, &g_state, &o);
		expect_baseline(&img);
		o.extra.version = 7;
		build(&img, &g_state, &o);
		expect_baseline(&img);
	}
	/*
	 * An optional section with an empty payload is skipped too.  (The
	 * buffer is non-NULL on purpose: sbuf__put(b, NULL, 0) is a
	 * memcpy(dst, NULL, 0), which UBSan aborts on: see the report.)
	 */
	sbuf__put(&empty, "", 1);
	empty.len = 0;
	{
		struct bopts o = { .extra = { "future-thing", 1, 0, &empty } };

		build(&img, &g_state, &o);
		expect_baseline(&img);
	}
	/* a name the frame rules forbid */
	{
		struct bopts o = { .extra = { "Uart", 1, 0, &pl } };

		build(&img, &g_state, &o);
		expect_refused(img.p, img.len, -EINVAL, "has an invalid name");
	}
	sbuf__free(&pl);
	sbuf__free(&empty);
	sbuf__free(&img);
}

static void test_vcpu_beyond_count(void **state)
{
	struct sbuf pl = { 0 }, img = { 0 };
	static const char *const names[] = { "vcpu.2", "vcpu.3", "vcpu.253" };

	(void)state;
	payload_of("vcpu.1", &pl);
	for (unsigned int i = 0; i < ARRAY_SIZE(names); i++) {
		struct bopts o = { .extra = { names[i], 1, SNAP_FLAG_REQUIRED, &pl } };
		char want[128];

		build(&img, &g_state, &o);
		snprintf(want, sizeof(want), "section '%s' names a vCPU beyond the 2 configured", names[i]);
		expect_refused(img.p, img.len, -EINVAL, want);
		o.extra.flags = 0;	/* optional or not: it is a known section */
		build(&img, &g_state, &o);
		expect_refused(img.p, img.len, -EINVAL, want);
	}
	/* config says 1 vCPU but the file holds two */
	{
		struct sbuf cfg = { 0 };
		struct bopts o = { .repl_of = "config", .repl = &cfg };

		payload_of("config", &cfg);
		set_uint(&cfg, "vcpus", 32, 1);
		build(&img, &g_state, &o);
		expect_refused(img.p, img.len, -EINVAL, "section 'vcpu.1' names a vCPU beyond the 1 configured");
		/* and 3 vCPUs configured but two sections */
		payload_of("config", &cfg);
		set_uint(&cfg, "vcpus", 32, 3);
		build(&img, &g_state, &o);
		expect_refused(img.p, img.len, -EINVAL, "required section 'vcpu.2' is missing");
		sbuf__free(&cfg);
	}
	sbuf__free(&pl);
	sbuf__free(&img);
}

static void test_end_section(void **state)
{
	struct sbuf img = { 0 };
	static const uint8_t junk[100] = { 'S', 'E', 'C', 'T' };

	(void)state;
	{
		struct bopts o = { .end_delta = 1 };

		build(&img, &g_state, &o);
		expect_refused(img.p, img.len, -EINVAL, "section 'end' counts 9 sections, file has 8");
	}
	{
		struct bopts o = { .end_delta = -1 };

		build(&img, &g_state, &o);
		expect_refused(img.p, img.len, -EINVAL, "section 'end' counts 7 sections, file has 8");
	}
	/* garbage after "end": one byte, a hundred, a whole valid-looking section */
	for (unsigned int n = 1; n <= sizeof(junk); n += 99) {
		build(&img, &g_state, NULL);
		sbuf__put(&img, junk, n);
		expect_refused(img.p, img.len, -EINVAL, "bytes of garbage after the 'end' section");
	}
	build(&img, &g_state, NULL);
	sbuf__put(&img, g_img.p + g_fr[0].off, g_fr[0].end - g_fr[0].off);
	expect_refused(img.p, img.len, -EINVAL, "garbage after the 'end' section");
	/* "end" with a missing field, or a wrong width */
	{
		struct sbuf end = { 0 };

		build(&img, &g_state, &(struct bopts){ .no_end = true });
		enc__map(&end);
		enc__u32(&end, "sections", 8);
		enc__end(&end);
		snapfmt__section(&img, "end", 1, SNAP_FLAG_REQUIRED, &end);
		expect_refused(img.p, img.len, -EINVAL, "section 'end': field 'file_hash' is missing");
		sbuf__free(&end);
	}
	sbuf__free(&img);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_truncate_everywhere),
		cmocka_unit_test(test_truncate_points),
		cmocka_unit_test(test_flip_header),
		cmocka_unit_test(test_newer_format_version),
		cmocka_unit_test(test_flip_frames),
		cmocka_unit_test(test_flip_payloads),
		cmocka_unit_test(test_flip_end_frame_fields),
		cmocka_unit_test(test_parse_keep_going),
		cmocka_unit_test(test_newer_section_version),
		cmocka_unit_test(test_missing_section),
		cmocka_unit_test(test_duplicate_section),
		cmocka_unit_test(test_unknown_section),
		cmocka_unit_test(test_vcpu_beyond_count),
		cmocka_unit_test(test_end_section),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
