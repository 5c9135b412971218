/*
 * Unit tests for the snapshot state file (src/snapshot/format.c, vmstate.c,
 * sections.c; normative spec: docs/snapshot-format.md).  No /dev/kvm: every
 * state is built by hand from a seeded PRNG, every field non-zero.
 *
 *  - round trips of every section codec and of the whole file;
 *  - fixed-width integers;
 *  - corruption of a valid image: truncation, flipped bits, versions,
 *    missing/duplicate/unknown sections (test_snapshot_corrupt.c), bad
 *    values behind valid checksums (test_snapshot_fields.c);
 *  - the memory file's trailer (test_snapshot_fields.c);
 *  - thousands of mutated images (run under SAN=1 as well), and the
 *    reader's limits (test_snapshot_fuzz.c).
 *
 * This file has the first two; what the four share is in snaphelp.c.
 *
 * Every image handed to the reader is first copied into a buffer of exactly
 * its length, so that ASan sees any read past its end.
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
/* 1. round trips                                                      */

static cbor_item_t *load_ok(struct dec *d, const struct sbuf *b)
{
	cbor_item_t *m;

	assert_int_equal(b->err, 0);
	m = dec__load(d, b->p, b->len);
	if (!m)
		fail_msg("dec__load: %s", d->err);
	return m;
}

static void test_roundtrip_vcpu(void **state)
{
	static const struct {
		uint32_t xsave_len;
		unsigned int nmsrs, ncpuid, nxcrs;
	} v[] = {
		{ 4096, 40, 30, 1 },
		{ 11008, VCPU_MAX_MSRS, VCPU_MAX_CPUID, KVM_MAX_XCRS },	/* every table full */
		{ VCPU_MAX_XSAVE, 0, 0, 0 },				/* every table empty */
	};
	struct vcpu_state *a = malloc(sizeof(*a)), *c = malloc(sizeof(*c));

	(void)state;
	assert_non_null(a);
	assert_non_null(c);
	for (unsigned int i = 0; i < ARRAY_SIZE(v); i++) {
		struct rng r = { 100 + i };
		struct sbuf b1 = { 0 }, b2 = { 0 };
		char err[ERRLEN] = "";
		struct dec d = { .section = "vcpu.0", .err = err, .errlen = sizeof(err) };
		cbor_item_t *m;

		make_vcpu(&r, a, v[i].xsave_len, v[i].nmsrs, v[i].ncpuid, v[i].nxcrs);
		vmstate__encode_vcpu(&b1, a);
		m = load_ok(&d, &b1);
		memset(c, 0xa5, sizeof(*c));	/* the decoder must set every byte */
		vmstate__decode_vcpu(&d, m, c);
		cbor_decref(&m);
		if (d.ret)
			fail_msg("decode_vcpu: %s", err);
		check_vcpu_equal(a, c);
		vmstate__encode_vcpu(&b2, c);
		assert_same_bytes(&b1, &b2);
		sbuf__free(&b1);
		sbuf__free(&b2);
	}
	free(a);
	free(c);
}

typedef void (*vmk_enc)(struct sbuf *, const struct vmkvm_state *);
typedef void (*vmk_dec)(struct dec *, const cbor_item_t *, struct vmkvm_state *);

/* decode into a poisoned struct, compare with cmp, encode again */
static void roundtrip_vmk(const char *name, vmk_enc enc, vmk_dec dec, unsigned int what)
{
	struct vmkvm_state a, c;
	struct rng r = { 200 + what };
	struct sbuf b1 = { 0 }, b2 = { 0 };
	char err[ERRLEN] = "";
	struct dec d = { .section = name, .err = err, .errlen = sizeof(err) };
	cbor_item_t *m;

	make_vmk(&r, &a);
	enc(&b1, &a);
	m = load_ok(&d, &b1);
	memset(&c, 0xa5, sizeof(c));
	dec(&d, m, &c);
	cbor_decref(&m);
	if (d.ret)
		fail_msg("decode %s: %s", name, err);
	if (what == 0) {
		check_irqchip_equal(&a, &c);
	} else if (what == 1) {
		SAME_FIELD("pit", &a, &c, pit);
	} else {
		SAME_FIELD("clock", &a, &c, clock);
	}
	enc(&b2, &c);
	assert_same_bytes(&b1, &b2);
	sbuf__free(&b1);
	sbuf__free(&b2);
}

static void test_roundtrip_irqchip(void **state)
{
	(void)state;
	roundtrip_vmk("irqchip", vmstate__encode_irqchip, vmstate__decode_irqchip, 0);
}

static void test_roundtrip_pit(void **state)
{
	(void)state;
	roundtrip_vmk("pit", vmstate__encode_pit, vmstate__decode_pit, 1);
}

static void test_roundtrip_clock(void **state)
{
	(void)state;
	roundtrip_vmk("clock", vmstate__encode_clock, vmstate__decode_clock, 2);
}

static void test_roundtrip_meta(void **state)
{
	struct snap_meta a, c;
	struct rng r = { 300 };
	struct sbuf b1 = { 0 }, b2 = { 0 };
	char err[ERRLEN] = "";
	struct dec d = { .section = "meta", .err = err, .errlen = sizeof(err) };
	cbor_item_t *m;

	(void)state;
	make_meta(&r, &a);
	snapsec__encode_meta(&b1, &a);
	m = load_ok(&d, &b1);
	memset(&c, 0xa5, sizeof(c));
	snapsec__decode_meta(&d, m, &c);
	cbor_decref(&m);
	if (d.ret)
		fail_msg("decode meta: %s", err);
	check_meta_equal(&a, &c);
	snapsec__encode_meta(&b2, &c);
	assert_same_bytes(&b1, &b2);
	sbuf__free(&b1);
	sbuf__free(&b2);
}

static void roundtrip_config(const struct vm_config *a)
{
	struct vm_config c;
	struct sbuf b1 = { 0 }, b2 = { 0 };
	char err[ERRLEN] = "";
	struct dec d = { .section = "config", .err = err, .errlen = sizeof(err) };
	cbor_item_t *m;

	snapsec__encode_config(&b1, a);
	m = load_ok(&d, &b1);
	memset(&c, 0xa5, sizeof(c));
	snapsec__decode_config(&d, m, &c);
	cbor_decref(&m);
	if (d.ret)
		fail_msg("decode config: %s", err);
	check_config_equal(a, &c);
	snapsec__encode_config(&b2, &c);
	assert_same_bytes(&b1, &b2);
	config__free(&c);
	sbuf__free(&b1);
	sbuf__free(&b2);
}

static void test_roundtrip_config(void **state)
{
	struct vm_config a;
	struct rng r = { 400 };

	(void)state;
	/* file backend, 3 modules (one with an empty string), debug-exit on */
	make_config(&r, &a, 2, 256 * MiB, CONSOLE_FILE, 3);
	roundtrip_config(&a);
	config__free(&a);

	/* stdio, no modules, no kernel or cmdline recorded, debug-exit off */
	make_config(&r, &a, 1, 2 * MiB, CONSOLE_STDIO, 0);
	free(a.kernel);
	free(a.cmdline);
	a.kernel = a.cmdline = NULL;
	a.debug_exit = false;
	a.debug_exit_port = 0;
	roundtrip_config(&a);
	config__free(&a);

	/* null backend with a path, every module slot, highest values */
	make_config(&r, &a, 254, 1ULL << 46, CONSOLE_NULL, CONFIG_MAX_MODULES);
	free(a.name);
	a.name = xasprintf("%s", "A_name-of.64.chars_0123456789012345678901234567890123456789abcde");
	assert_int_equal(strlen(a.name), 64);
	a.debug_exit_port = 0xfffc;
	roundtrip_config(&a);
	config__free(&a);
}

static void roundtrip_memory(uint64_t mem, unsigned int nregions)
{
	struct snap_memory a, c;
	struct rng r = { 500 + nregions };
	uint8_t uuid[16];
	struct sbuf b1 = { 0 }, b2 = { 0 };
	char err[ERRLEN] = "";
	struct dec d = { .section = "memory", .err = err, .errlen = sizeof(err) };
	cbor_item_t *m;

	rnd_fill(&r, uuid, sizeof(uuid));
	make_memory(&r, &a, mem, uuid);
	assert_int_equal(a.nregions, nregions);
	snapsec__encode_memory(&b1, &a);
	m = load_ok(&d, &b1);
	memset(&c, 0xa5, sizeof(c));
	snapsec__decode_memory(&d, m, &c);
	cbor_decref(&m);
	if (d.ret)
		fail_msg("decode memory: %s", err);
	check_memory_equal(&a, &c);
	snapsec__encode_memory(&b2, &c);
	assert_same_bytes(&b1, &b2);
	sbuf__free(&b1);
	sbuf__free(&b2);
}

static void test_roundtrip_memory(void **state)
{
	(void)state;
	roundtrip_memory(2 * MiB, 1);
	roundtrip_memory(3 * GiB, 1);
	roundtrip_memory(3 * GiB + 4 * KiB, 2);
	roundtrip_memory(64 * GiB + 12 * KiB, 2);
}

static void roundtrip_file(uint64_t seed, unsigned int ncpus, uint64_t mem)
{
	struct snap_state a, c;
	struct sbuf i1 = { 0 }, i2 = { 0 };
	char err[ERRLEN];

	make_state(seed, &a, ncpus, mem);
	assert_int_equal(snapsec__write_state(&i1, &a), 0);
	if (read_img(i1.p, i1.len, &c, err))
		fail_msg("read_state: %s", err);
	check_state_equal(&a, &c);
	assert_int_equal(snapsec__write_state(&i2, &c), 0);
	assert_same_bytes(&i1, &i2);
	snap_state__free(&a);
	snap_state__free(&c);
	sbuf__free(&i1);
	sbuf__free(&i2);
}

static void test_roundtrip_file(void **state)
{
	(void)state;
	roundtrip_file(1, 1, 2 * MiB);
	roundtrip_file(2, 2, BASE_MEM);
	roundtrip_file(3, 5, 4 * GiB);
}

/* the builder the fault tests use writes exactly what the writer writes */
static void test_builder_matches_writer(void **state)
{
	struct sbuf img = { 0 };
	struct snap_section *secs;
	unsigned int nsecs;
	uint32_t fmt;
	uint8_t uuid[16];
	char err[ERRLEN];

	(void)state;
	build(&img, &g_state, NULL);
	assert_same_bytes(&g_img, &img);
	sbuf__free(&img);
	/* and the frame walker agrees with the parser */
	assert_int_equal(snapfmt__parse(g_img.p, g_img.len, &fmt, uuid, &secs, &nsecs, false, err,
					sizeof(err)), 0);
	assert_int_equal(fmt, SNAP_FORMAT_VERSION);
	assert_memory_equal(uuid, g_state.uuid, 16);
	assert_int_equal(nsecs, g_nfr - 1);
	assert_int_equal(g_nfr, 3 + 2 + 3 + 1);
	for (unsigned int i = 0; i < nsecs; i++) {
		assert_string_equal(secs[i].name, g_fr[i].name);
		assert_int_equal(secs[i].offset, g_fr[i].off);
		assert_int_equal(secs[i].len, g_fr[i].plen);
		assert_int_equal(secs[i].version, !strcmp(secs[i].name, "config") ? CONFIG_VERSION : 1);
		assert_int_equal(secs[i].flags, SNAP_FLAG_REQUIRED);
		assert_true(secs[i].hash_ok);
	}
	free(secs);
}

/* ------------------------------------------------------------------ */
/* 2. fixed width                                                      */

static void expect_dec_error(const struct dec *d, const char *err, const char *a, const char *b)
{
	if (d->ret != -EINVAL)
		fail_msg("decoder returned %d, expected -EINVAL (%s)", d->ret, err);
	if (a && !strstr(err, a))
		fail_msg("message \"%s\" lacks \"%s\"", err, a);
	if (b && !strstr(err, b))
		fail_msg("message \"%s\" lacks \"%s\"", err, b);
}

static void test_fixed_width_encoding(void **state)
{
	static const struct {
		unsigned int width;
		uint64_t v;
		uint8_t want[9];
		size_t n;
	} t[] = {
		{ 8, 5, { 0x18, 0x05 }, 2 },
		{ 8, 0, { 0x18, 0x00 }, 2 },
		{ 8, 0xff, { 0x18, 0xff }, 2 },
		{ 16, 5, { 0x19, 0x00, 0x05 }, 3 },
		{ 16, 0xffff, { 0x19, 0xff, 0xff }, 3 },
		{ 32, 5, { 0x1a, 0, 0, 0, 0x05 }, 5 },
		{ 32, 0x01020304, { 0x1a, 1, 2, 3, 4 }, 5 },
		{ 64, 5, { 0x1b, 0, 0, 0, 0, 0, 0, 0, 0x05 }, 9 },
		{ 64, 0x0102030405060708ULL, { 0x1b, 1, 2, 3, 4, 5, 6, 7, 8 }, 9 },
	};

	(void)state;
	for (unsigned int i = 0; i < ARRAY_SIZE(t); i++) {
		struct sbuf b = { 0 };
		uint8_t want[16] = { 0xbf, 0x61, 'x' };

		enc__map(&b);
		if (t[i].width == 8)
			enc__u8(&b, "x", (uint8_t)t[i].v);
		else if (t[i].width == 16)
			enc__u16(&b, "x", (uint16_t)t[i].v);
		else if (t[i].width == 32)
			enc__u32(&b, "x", (uint32_t)t[i].v);
		else
			enc__u64(&b, "x", t[i].v);
		enc__end(&b);
		memcpy(want + 3, t[i].want, t[i].n);
		want[3 + t[i].n] = 0xff;
		assert_int_equal(b.err, 0);
		assert_int_equal(b.len, 4 + t[i].n);
		assert_memory_equal(b.p, want, b.len);
		sbuf__free(&b);
	}
}

/* a map {"x": v} with v written at `width`, by hand */
static size_t map_x(uint8_t *o, unsigned int width, uint64_t v)
{
	size_t n = 0;

	o[n++] = 0xbf;
	n += cbor_encode_string_start(1, o + n, 9);
	o[n++] = 'x';
	n += cbor_uint_w(o + n, width, v);
	o[n++] = 0xff;
	return n;
}

static uint64_t dec_width(struct dec *d, const cbor_item_t *m, unsigned int width)
{
	switch (width) {
	case 8:
		return dec__u8(d, m, "x");
	case 16:
		return dec__u16(d, m, "x");
	case 32:
		return dec__u32(d, m, "x");
	default:
		return dec__u64(d, m, "x");
	}
}

static void test_fixed_width_decoding(void **state)
{
	static const unsigned int w[] = { 8, 16, 32, 64 };
	static const char *const names[] = { "u8", "u16", "u32", "u64" };

	(void)state;
	for (unsigned int wi = 0; wi < 4; wi++) {
		for (unsigned int ri = 0; ri < 4; ri++) {
			uint8_t buf[32];
			size_t n = map_x(buf, w[wi], 5);
			char err[ERRLEN] = "";
			struct dec d = { .section = "t", .err = err, .errlen = sizeof(err) };
			cbor_item_t *m = dec__load(&d, buf, n);
			uint64_t v;

			assert_non_null(m);
			v = dec_width(&d, m, w[ri]);
			cbor_decref(&m);
			if (wi == ri) {
				assert_int_equal(d.ret, 0);
				assert_int_equal(v, 5);
			} else {
				char want[64];

				assert_int_equal(v, 0);
				snprintf(want, sizeof(want), "not a fixed-width %s", names[ri]);
				expect_dec_error(&d, err, "section 't': field 'x'", want);
			}
		}
	}
}

/* the same in a real section: mp_state (u32) written as u8 and u64 */
static void test_fixed_width_in_image(void **state)
{
	struct sbuf pl = { 0 };

	(void)state;
	payload_of("vcpu.1", &pl);
	set_uint(&pl, "mp_state", 8, 3);
	expect_payload_refused("vcpu.1", &pl, "section 'vcpu.1'", "field 'mp_state' is not a fixed-width u32");
	payload_of("vcpu.1", &pl);
	set_uint(&pl, "mp_state", 64, 3);
	expect_payload_refused("vcpu.1", &pl, "section 'vcpu.1'", "field 'mp_state' is not a fixed-width u32");
	payload_of("clock", &pl);
	set_uint(&pl, "kvmclock_ns", 32, 3);
	expect_payload_refused("clock", &pl, "section 'clock'", "field 'kvmclock_ns' is not a fixed-width u64");
	/* and the correct width is accepted (the surgery itself is sound) */
	payload_of("clock", &pl);
	set_uint(&pl, "kvmclock_ns", 64, 3);
	{
		struct bopts o = { .repl_of = "clock", .repl = &pl };
		struct sbuf img = { 0 };
		struct snap_state s;
		char err[ERRLEN];

		build(&img, &g_state, &o);
		if (read_img(img.p, img.len, &s, err))
			fail_msg("read_state: %s", err);
		assert_int_equal(s.vmk.clock, 3);
		snap_state__free(&s);
		sbuf__free(&img);
	}
	sbuf__free(&pl);
}

/* after the first error every call does nothing and the first message stays */
static void test_decoder_sticky(void **state)
{
	uint8_t buf[32];
	size_t n = map_x(buf, 8, 7);
	char err[ERRLEN] = "";
	struct dec d = { .section = "t", .err = err, .errlen = sizeof(err) };
	cbor_item_t *m;
	char s[8] = "zz";

	(void)state;
	m = dec__load(&d, buf, n);
	assert_non_null(m);
	assert_int_equal(dec__u8(&d, m, "x"), 7);
	assert_int_equal(dec__u32(&d, m, "missing"), 0);
	expect_dec_error(&d, err, "section 't': field 'missing' is missing", NULL);
	assert_int_equal(dec__u8(&d, m, "x"), 0);	/* sticky: nothing read */
	assert_false(dec__bool(&d, m, "x"));
	dec__str(&d, m, "x", s, sizeof(s));
	assert_string_equal(s, "");
	assert_null(dec__map(&d, m, "x"));
	assert_string_equal(err, "section 't': field 'missing' is missing");
	assert_int_equal(d.ret, -EINVAL);
	cbor_decref(&m);

	/* wrong types name the field */
	{
		struct dec d2 = { .section = "t", .err = err, .errlen = sizeof(err) };

		m = dec__load(&d2, buf, n);
		dec__str(&d2, m, "x", s, sizeof(s));
		expect_dec_error(&d2, err, "field 'x' is not a text string", NULL);
		cbor_decref(&m);
	}
	/* a payload that is not a map, or has trailing bytes */
	{
		struct dec d3 = { .section = "t", .err = err, .errlen = sizeof(err) };
		static const uint8_t arr[] = { 0x9f, 0xff };

		assert_null(dec__load(&d3, arr, sizeof(arr)));
		expect_dec_error(&d3, err, "payload is not a CBOR map", NULL);
	}
	{
		struct dec d4 = { .section = "t", .err = err, .errlen = sizeof(err) };

		buf[n] = 0x00;
		assert_null(dec__load(&d4, buf, n + 1));
		expect_dec_error(&d4, err, "1 bytes of garbage after the payload", NULL);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_vcpu),
		cmocka_unit_test(test_roundtrip_irqchip),
		cmocka_unit_test(test_roundtrip_pit),
		cmocka_unit_test(test_roundtrip_clock),
		cmocka_unit_test(test_roundtrip_meta),
		cmocka_unit_test(test_roundtrip_config),
		cmocka_unit_test(test_roundtrip_memory),
		cmocka_unit_test(test_roundtrip_file),
		cmocka_unit_test(test_builder_matches_writer),
		cmocka_unit_test(test_fixed_width_encoding),
		cmocka_unit_test(test_fixed_width_decoding),
		cmocka_unit_test(test_fixed_width_in_image),
		cmocka_unit_test(test_decoder_sticky),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
