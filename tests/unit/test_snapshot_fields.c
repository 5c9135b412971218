/*
 * Unit tests for the snapshot state file (see test_snapshot.c), parts 3
 * and 4: bad values behind valid checksums, each named by section and
 * field; the memory file's trailer.
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
#include <unistd.h>
#include <cmocka.h>

#include <xxhash.h>

#include "snaphelp.h"

/* ------------------------------------------------------------------ */
/* payload surgery (valid checksums are restored by build())             */

/* rename a key (same length): the field is then missing */
static void rename_key(struct sbuf *b, const char *key)
{
	size_t off = find_key(b, key);

	b->p[off - 1] ^= 0x01;	/* last letter of the key */
}

/* insert a copy of the first element of the (indefinite) array `key` */
static void array_grow(struct sbuf *b, const char *key)
{
	size_t off = find_key(b, key), l;
	uint8_t *copy;

	assert_int_equal(b->p[off], 0x9f);
	l = item_len(b->p + off + 1, b->len - off - 1);
	copy = malloc(l);
	assert_non_null(copy);
	memcpy(copy, b->p + off + 1, l);
	patch(b, off + 1, 0, copy, l);
	free(copy);
}

static void array_shrink(struct sbuf *b, const char *key)
{
	size_t off = find_key(b, key);

	assert_int_equal(b->p[off], 0x9f);
	patch(b, off + 1, item_len(b->p + off + 1, b->len - off - 1), NULL, 0);
}

/* ------------------------------------------------------------------ */
/* 3. corruption of a valid image (continued)                          */

/* bad values behind valid checksums: each names section and field */
static void test_payload_vcpu_fields(void **state)
{
	struct sbuf pl = { 0 };
	static const uint8_t neg32[] = { 0x3a, 0, 0, 0, 1 };
	static const uint8_t text4[] = { 0x64, 'a', 'b', 'c', 'd' };

	(void)state;
	payload_of("vcpu.1", &pl);
	set_uint(&pl, "mp_state", 32, 99);
	expect_payload_refused("vcpu.1", &pl, "section 'vcpu.1'", "field 'mp_state' is 99, not a KVM MP state");
	payload_of("vcpu.1", &pl);
	set_uint(&pl, "mp_state", 32, KVM_MP_STATE_AP_RESET_HOLD + 1);
	expect_payload_refused("vcpu.1", &pl, "section 'vcpu.1'", "field 'mp_state' is 10");
	payload_of("vcpu.1", &pl);
	rename_key(&pl, "mp_state");
	expect_payload_refused("vcpu.1", &pl, "section 'vcpu.1'", "field 'mp_state' is missing");
	payload_of("vcpu.1", &pl);
	set_value(&pl, "mp_state", neg32, sizeof(neg32));
	expect_payload_refused("vcpu.1", &pl, "section 'vcpu.1'", "field 'mp_state' is not an unsigned integer");
	payload_of("vcpu.0", &pl);
	set_value(&pl, "tsc_khz", text4, sizeof(text4));
	expect_payload_refused("vcpu.0", &pl, "section 'vcpu.0'", "field 'tsc_khz' is not an unsigned integer");

	/* XSAVE: too big, too small, not matching the bytes */
	payload_of("vcpu.0", &pl);
	set_uint(&pl, "xsave_len", 32, VCPU_MAX_XSAVE + 1);
	expect_payload_refused("vcpu.0", &pl, "section 'vcpu.0'", "field 'xsave_len' is 65537, outside");
	payload_of("vcpu.0", &pl);
	set_uint(&pl, "xsave_len", 32, 0xffffffffu);
	expect_payload_refused("vcpu.0", &pl, "section 'vcpu.0'", "field 'xsave_len' is 4294967295, outside");
	payload_of("vcpu.0", &pl);
	set_uint(&pl, "xsave_len", 32, 4095);
	expect_payload_refused("vcpu.0", &pl, "section 'vcpu.0'", "field 'xsave_len' is 4095, outside");
	payload_of("vcpu.0", &pl);
	set_uint(&pl, "xsave_len", 32, 4100);
	expect_payload_refused("vcpu.0", &pl, "section 'vcpu.0'", "field 'xsave' has 4096 bytes, expected 4100");
	payload_of("vcpu.1", &pl);
	rename_key(&pl, "xsave");
	expect_payload_refused("vcpu.1", &pl, "section 'vcpu.1'", "field 'xsave' is missing");

	/* tables one entry too long (they would overflow the state's arrays) */
	payload_of("vcpu.0", &pl);
	array_shrink(&pl, "interrupt_bitmap");
	expect_payload_refused("vcpu.0", &pl, "section 'vcpu.0'", "field 'interrupt_bitmap' has 3 words, expected 4");
	payload_of("vcpu.0", &pl);
	array_grow(&pl, "interrupt_bitmap");
	expect_payload_refused("vcpu.0", &pl, "section 'vcpu.0'", "field 'interrupt_bitmap' has 5 words");
	{
		struct snap_state big;
		struct rng r = { 600 };
		struct sbuf img = { 0 };

		/* a 1-vCPU state with full tables, then one entry more in each */
		make_state(601, &big, 1, 2 * MiB);
		make_vcpu(&r, &big.vcpus[0], 4096, VCPU_MAX_MSRS, VCPU_MAX_CPUID, KVM_MAX_XCRS);
		build(&img, &big, NULL);
		{
			struct snap_state s;
			char err[ERRLEN];

			if (read_img(img.p, img.len, &s, err))
				fail_msg("full tables refused: %s", err);
			check_state_equal(&big, &s);
			snap_state__free(&s);
		}
		static const char *const tabs[][2] = {
			{ "msrs", "field 'msrs' has 257 entries, at most 256" },
			{ "cpuid", "field 'cpuid' has 257 entries, at most 256" },
			{ "xcrs", "field 'xcrs' has 17 entries, at most 16" },
		};
		for (unsigned int i = 0; i < ARRAY_SIZE(tabs); i++) {
			struct bopts o = { .repl_of = "vcpu.0", .repl = &pl };

			encode_section(&big, "vcpu.0", &pl);
			array_grow(&pl, tabs[i][0]);
			build(&img, &big, &o);
			expect_refused(img.p, img.len, -EINVAL, "section 'vcpu.0'", tabs[i][1]);
		}
		/* an msrs entry that is not a map */
		{
			struct bopts o = { .repl_of = "vcpu.0", .repl = &pl };
			static const uint8_t one[] = { 0x9f, 0x18, 0x01, 0xff };

			encode_section(&big, "vcpu.0", &pl);
			set_value(&pl, "msrs", one, sizeof(one));
			build(&img, &big, &o);
			expect_refused(img.p, img.len, -EINVAL, "section 'vcpu.0': field 'msrs[0].index' is missing");
		}
		snap_state__free(&big);
		sbuf__free(&img);
	}
	/* lapic of the wrong size or type; a nested map of the wrong type */
	payload_of("vcpu.0", &pl);
	set_uint(&pl, "lapic", 64, 1);
	expect_payload_refused("vcpu.0", &pl, "section 'vcpu.0'", "field 'lapic' is not a byte string");
	payload_of("vcpu.0", &pl);
	{
		size_t off = find_key(&pl, "lapic");

		pl.p[off + 2] = 0xff;			/* 1023 bytes */
		patch(&pl, off + 3, 1, NULL, 0);
		pl.p[off + 1] = 0x03;
	}
	expect_payload_refused("vcpu.0", &pl, "section 'vcpu.0'", "field 'lapic' has 1023 bytes, expected 1024");
	payload_of("vcpu.0", &pl);
	set_uint(&pl, "regs", 64, 1);
	expect_payload_refused("vcpu.0", &pl, "section 'vcpu.0'", "field 'regs' is not a map");
	payload_of("vcpu.0", &pl);
	rename_key(&pl, "rflags");
	expect_payload_refused("vcpu.0", &pl, "section 'vcpu.0'", "field 'regs.rflags' is missing");
	payload_of("vcpu.1", &pl);
	rename_key(&pl, "smm_inside_nmi");
	expect_payload_refused("vcpu.1", &pl, "section 'vcpu.1'", "field 'events.smi.smm_inside_nmi' is missing");
	sbuf__free(&pl);
}

static void test_payload_vm_fields(void **state)
{
	struct sbuf pl = { 0 };
	static const uint8_t neg64[] = { 0x3b, 0, 0, 0, 0, 0, 0, 0, 1 };

	(void)state;
	payload_of("irqchip", &pl);
	array_shrink(&pl, "redirtbl");
	expect_payload_refused("irqchip", &pl, "section 'irqchip'", "field 'redirtbl' has 23 entries, expected 24");
	payload_of("irqchip", &pl);
	array_grow(&pl, "redirtbl");
	expect_payload_refused("irqchip", &pl, "section 'irqchip'", "field 'redirtbl' has 25 entries, expected 24");
	payload_of("irqchip", &pl);
	rename_key(&pl, "pic_slave");
	expect_payload_refused("irqchip", &pl, "section 'irqchip'", "field 'pic_slave' is missing");
	payload_of("pit", &pl);
	array_grow(&pl, "channels");
	expect_payload_refused("pit", &pl, "section 'pit'", "field 'channels' has 4 entries, expected 3");
	payload_of("pit", &pl);
	array_shrink(&pl, "channels");
	expect_payload_refused("pit", &pl, "section 'pit'", "field 'channels' has 2 entries, expected 3");
	payload_of("pit", &pl);
	set_uint(&pl, "channels", 8, 3);
	expect_payload_refused("pit", &pl, "section 'pit'", "field 'channels' is not an array");
	payload_of("clock", &pl);
	set_value(&pl, "kvmclock_ns", neg64, sizeof(neg64));
	expect_payload_refused("clock", &pl, "section 'clock'", "field 'kvmclock_ns' is not an unsigned integer");
	payload_of("clock", &pl);
	rename_key(&pl, "kvmclock_ns");
	expect_payload_refused("clock", &pl, "section 'clock'", "field 'kvmclock_ns' is missing");
	/* not CBOR at all, a CBOR map with trailing garbage, an empty payload */
	payload_of("clock", &pl);
	pl.p[0] = 0x1c;	/* reserved additional information */
	expect_payload_refused("clock", &pl, "section 'clock'",
			       "section 'clock': payload is not valid CBOR: a malformed item (reserved or "
			       "invalid head byte) at byte 0");
	payload_of("clock", &pl);
	pl.len -= 3;	/* inside kvmclock_ns's 8 bytes */
	expect_payload_refused("clock", &pl, "section 'clock'",
			       "section 'clock': payload is not valid CBOR: it ends inside an item (truncated) at byte");
	payload_of("clock", &pl);
	sbuf__put(&pl, "\x00", 1);
	expect_payload_refused("clock", &pl, "section 'clock'", "1 bytes of garbage after the payload");
	{
		static const uint8_t one = 0xa0;	/* an empty definite map is a map */

		pl.len = 0;
		sbuf__put(&pl, &one, 1);
		expect_payload_refused("clock", &pl, "section 'clock'", "field 'kvmclock_ns' is missing");
	}
	sbuf__free(&pl);
}

static void test_payload_config_fields(void **state)
{
	struct sbuf pl = { 0 };
	static const uint8_t bad_name[] = { 0x62, '-', 'x' };
	static const uint8_t empty[] = { 0x60 };
	static const uint8_t yes = 0xf5;

	(void)state;
	payload_of("config", &pl);
	set_uint(&pl, "vcpus", 32, 0);
	expect_payload_refused("config", &pl, "section 'config'", "field 'vcpus' is 0, outside 1..254");
	payload_of("config", &pl);
	set_uint(&pl, "vcpus", 32, 255);
	expect_payload_refused("config", &pl, "section 'config'", "field 'vcpus' is 255, outside 1..254");
	payload_of("config", &pl);
	set_uint(&pl, "memory", 64, BASE_MEM + 1);
	expect_payload_refused("config", &pl, "section 'config'", "field 'memory' is");
	payload_of("config", &pl);
	set_uint(&pl, "memory", 64, 1 * MiB);
	expect_payload_refused("config", &pl, "section 'config'", "field 'memory' is");
	/* a valid size, but not the memory section's */
	payload_of("config", &pl);
	set_uint(&pl, "memory", 64, 2 * BASE_MEM);
	expect_payload_refused("config", &pl, "section 'memory' field 'size'",
			       "disagrees with section 'config' field 'memory'");
	payload_of("config", &pl);
	set_value(&pl, "name", bad_name, sizeof(bad_name));
	expect_payload_refused("config", &pl, "section 'config'", "field 'name' is not a valid VM name");
	payload_of("config", &pl);
	set_value(&pl, "name", empty, sizeof(empty));
	expect_payload_refused("config", &pl, "section 'config'", "field 'name' is not a valid VM name");
	payload_of("config", &pl);
	{
		size_t off = find_key(&pl, "backend");

		assert_memory_equal(pl.p + off, "\x64" "file", 5);
		pl.p[off + 4] = 'x';	/* "filx" */
	}
	expect_payload_refused("config", &pl, "section 'config'", "field 'com1.backend' is 'filx'");
	payload_of("config", &pl);
	{
		/* the file backend's path emptied: the com1 map's "path" is the last "path" */
		size_t off = find_key(&pl, "backend");
		uint8_t *q = memmem(pl.p + off, pl.len - off, "\x64path", 5);
		size_t at;

		assert_non_null(q);
		at = (size_t)(q - pl.p) + 5;
		patch(&pl, at, item_len(pl.p + at, pl.len - at), empty, sizeof(empty));
	}
	expect_payload_refused("config", &pl, "section 'config'", "field 'com1.path' is empty for a file backend");
	payload_of("config", &pl);
	set_uint(&pl, "port", 16, 0xfffd);
	expect_payload_refused("config", &pl, "section 'config'", "field 'debug_exit.port' is 0xfffd");
	payload_of("config", &pl);
	set_uint(&pl, "port", 32, 0xf4);
	expect_payload_refused("config", &pl, "section 'config'",
			       "section 'config': field 'debug_exit.port' is not a fixed-width u16");
	payload_of("config", &pl);
	set_uint(&pl, "enabled", 8, 1);
	expect_payload_refused("config", &pl, "section 'config'", "field 'debug_exit.enabled' is not a boolean");
	payload_of("config", &pl);
	set_value(&pl, "modules", &yes, 1);
	expect_payload_refused("config", &pl, "section 'config'", "field 'modules' is not an array");
	{
		struct snap_state big;
		struct sbuf img = { 0 };
		struct bopts o = { .repl_of = "config", .repl = &pl };
		struct rng r = { 700 };

		make_state(701, &big, 1, 2 * MiB);
		config__free(&big.cfg);
		make_config(&r, &big.cfg, 1, 2 * MiB, CONSOLE_NULL, CONFIG_MAX_MODULES);
		encode_section(&big, "config", &pl);
		array_grow(&pl, "modules");
		build(&img, &big, &o);
		expect_refused(img.p, img.len, -EINVAL, "section 'config'", "field 'modules' has 33 entries, at most 32");
		snap_state__free(&big);
		sbuf__free(&img);
	}
	sbuf__free(&pl);
}

static void test_payload_memory_fields(void **state)
{
	struct snap_memory m;
	struct sbuf pl = { 0 };

	(void)state;
	/* memory structs with one thing wrong, encoded with valid framing */
#define MEM_CASE(change, a, b)						\
	do {								\
		m = g_state.memory;					\
		change;							\
		pl.len = 0;						\
		snapsec__encode_memory(&pl, &m);			\
		expect_payload_refused("memory", &pl, a, b);		\
	} while (0)
	MEM_CASE(m.regions[0].size -= 4096, "section 'memory'", "field 'regions[0]'");
	MEM_CASE(m.regions[0].gpa = 4096, "section 'memory'", "does not match the memory layout");
	MEM_CASE(m.regions[0].offset = 4096, "section 'memory'", "field 'regions[0]'");
	MEM_CASE((m.nregions = 2, m.regions[1] = m.regions[0]), "section 'memory'",
		 "field 'regions' has 2 regions, 134217728 bytes of RAM have 1");
	MEM_CASE(m.nregions = 0, "section 'memory'", "field 'regions' has 0 entries");
	MEM_CASE(m.file_size += 1, "section 'memory'", "field 'file_size'");
	MEM_CASE(m.file_size = m.mem_size, "section 'memory'", "field 'file_size'");
	MEM_CASE((m.mem_size = 1 * MiB, m.file_size = m.mem_size + MEMFILE_TRAILER), "section 'memory'",
		 "field 'size' is 1048576, not a valid guest RAM size");
	MEM_CASE((m.mem_size += 100, m.file_size += 100), "section 'memory'", "field 'size'");
	/* a valid layout of another size: disagrees with config */
	{
		uint8_t u[16];

		memcpy(u, g_state.memory.uuid, 16);
		m = g_state.memory;
		make_memory(&(struct rng){ 1 }, &m, 2 * BASE_MEM, u);
		pl.len = 0;
		snapsec__encode_memory(&pl, &m);
		expect_payload_refused("memory", &pl, "section 'memory' field 'size' (268435456)",
				       "disagrees with section 'config' field 'memory' (134217728)");
	}
#undef MEM_CASE
	/* three regions: more than MEM_MAX_REGIONS, the array is checked before use */
	payload_of("memory", &pl);
	array_grow(&pl, "regions");
	array_grow(&pl, "regions");
	expect_payload_refused("memory", &pl, "section 'memory'", "field 'regions' has 3 entries, expected 1..2");
	payload_of("memory", &pl);
	{
		size_t off = find_key(&pl, "uuid");

		assert_int_equal(pl.p[off], 0x50);	/* bytes(16) */
		pl.p[off] = 0x4f;
		patch(&pl, off + 1, 1, NULL, 0);
	}
	expect_payload_refused("memory", &pl, "section 'memory'", "field 'uuid' has 15 bytes, expected 16");
	sbuf__free(&pl);
}

static void test_payload_meta_fields(void **state)
{
	struct sbuf pl = { 0 };

	(void)state;
	payload_of("meta", &pl);
	{
		size_t off = find_key(&pl, "khyve_version");

		assert_int_equal(pl.p[off] & 0xe0, 0x60);
		pl.p[off] ^= 0x20;	/* text -> bytes, same length */
	}
	expect_payload_refused("meta", &pl, "section 'meta'", "field 'khyve_version' is not a text string");
	payload_of("meta", &pl);
	{
		static const uint8_t v13[] = { 0x6d, 'G', 'e', 'n', 'u', 'i', 'n', 'e', 'I', 'n', 't', 'e', 'l', 'X' };

		set_value(&pl, "vendor", v13, sizeof(v13));
	}
	expect_payload_refused("meta", &pl, "section 'meta'",
			       "section 'meta': field 'host_cpu.vendor' is longer than 12 bytes");
	payload_of("meta", &pl);
	{
		static const uint8_t nul[] = { 0x63, 'a', 0, 'b' };

		set_value(&pl, "vendor", nul, sizeof(nul));
	}
	expect_payload_refused("meta", &pl, "section 'meta'", "field 'host_cpu.vendor' contains a NUL byte");
	payload_of("meta", &pl);
	rename_key(&pl, "host_cpu");
	expect_payload_refused("meta", &pl, "section 'meta'", "field 'host_cpu' is missing");
	sbuf__free(&pl);
}

/* ------------------------------------------------------------------ */
/* 4. the memory file's trailer                                         */

/* the trailer at offset `at`, recording mem_size `mem` */
static void put_trailer_at(int fd, uint64_t at, uint64_t mem, const uint8_t uuid[16], const char *magic,
			   uint32_t version, uint32_t size, int hash_delta)
{
	uint8_t t[MEMFILE_TRAILER] = { 0 };
	uint64_t h;

	memcpy(t, magic, 8);
	for (unsigned int i = 0; i < 4; i++) {
		t[8 + i] = (uint8_t)(version >> (8 * i));
		t[12 + i] = (uint8_t)(size >> (8 * i));
	}
	memcpy(t + 16, uuid, 16);
	for (unsigned int i = 0; i < 8; i++)
		t[32 + i] = (uint8_t)(mem >> (8 * i));
	h = XXH3_64bits(t, 40) + (uint64_t)hash_delta;
	for (unsigned int i = 0; i < 8; i++)
		t[40 + i] = (uint8_t)(h >> (8 * i));
	assert_int_equal(pwrite(fd, t, sizeof(t), (off_t)at), (ssize_t)sizeof(t));
}

#define put_trailer(fd, mem, ...) put_trailer_at(fd, g_state.memory.mem_size, mem, __VA_ARGS__)

static int memfile(void)
{
	char path[] = "/tmp/khyve-test-memfile-XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	unlink(path);
	return fd;
}

static void expect_memfile(int fd, const struct snap_memory *m, const char *sub)
{
	char err[ERRLEN] = "";
	int ret = snapsec__check_memfile(fd, m, err, sizeof(err));

	if (!sub) {
		if (ret)
			fail_msg("memory file refused: %s", err);
		return;
	}
	if (ret >= 0)
		fail_msg("memory file accepted, expected \"%s\"", sub);
	if (!strstr(err, sub))
		fail_msg("message \"%s\" lacks \"%s\"", err, sub);
}

static void test_memfile_trailer(void **state)
{
	const struct snap_memory *m = &g_state.memory;
	const uint64_t mem = m->mem_size;
	struct snap_memory other = *m;
	uint8_t uuid2[16];
	int fd = memfile();

	(void)state;
	assert_int_equal(ftruncate(fd, (off_t)m->file_size), 0);
	put_trailer(fd, mem, m->uuid, MEMFILE_MAGIC, 1, MEMFILE_TRAILER, 0);
	expect_memfile(fd, m, NULL);

	/* wrong size: one byte more, one page less */
	assert_int_equal(ftruncate(fd, (off_t)m->file_size + 1), 0);
	expect_memfile(fd, m, "memory file is 134221825 bytes, the state file expects 134221824");
	assert_int_equal(ftruncate(fd, (off_t)m->file_size), 0);
	other.file_size -= 4096;
	expect_memfile(fd, &other, "the state file expects");
	other = *m;

	/* another snapshot's memory file */
	memcpy(uuid2, m->uuid, 16);
	uuid2[15] ^= 0x80;
	put_trailer(fd, mem, uuid2, MEMFILE_MAGIC, 1, MEMFILE_TRAILER, 0);
	expect_memfile(fd, m, "belongs to another snapshot");
	/* the right snapshot's UUID, another size: a size mismatch, not another snapshot */
	put_trailer(fd, mem - 4096, m->uuid, MEMFILE_MAGIC, 1, MEMFILE_TRAILER, 0);
	expect_memfile(fd, m, "memory file size mismatch: its trailer records 134213632 bytes of guest RAM, "
		       "the state file 134217728");

	/* a corrupt trailer, a wrong magic (with and without a valid hash) */
	put_trailer(fd, mem, m->uuid, MEMFILE_MAGIC, 1, MEMFILE_TRAILER, 1);
	expect_memfile(fd, m, "memory file trailer is corrupt (checksum mismatch)");
	for (unsigned int byte = 8; byte < 48; byte++) {
		uint8_t t[48], c;

		put_trailer(fd, mem, m->uuid, MEMFILE_MAGIC, 1, MEMFILE_TRAILER, 0);
		assert_int_equal(pread(fd, t, sizeof(t), (off_t)mem), (ssize_t)sizeof(t));
		c = t[byte] ^ (uint8_t)(1u << (byte % 8));
		assert_int_equal(pwrite(fd, &c, 1, (off_t)(mem + byte)), 1);
		expect_memfile(fd, m, "checksum mismatch");
	}
	put_trailer(fd, mem, m->uuid, "KHYVMEM2", 1, MEMFILE_TRAILER, 0);
	expect_memfile(fd, m, "wrong magic");
	put_trailer(fd, mem, m->uuid, "KHYVSNAP", 1, MEMFILE_TRAILER, 1);
	expect_memfile(fd, m, "wrong magic");
	/* no trailer at all (all zero) */
	{
		static const uint8_t zero[64];

		assert_int_equal(pwrite(fd, zero, sizeof(zero), (off_t)mem), (ssize_t)sizeof(zero));
		expect_memfile(fd, m, "wrong magic");
	}
	close(fd);

	/* not a regular file */
	fd = open("/tmp", O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	expect_memfile(fd, m, "not a regular file");
	close(fd);
}

/* The trailer's version and size fields (spec section 2) must be checked too. */
static void test_memfile_trailer_version(void **state)
{
	const struct snap_memory *m = &g_state.memory;
	int fd = memfile();

	(void)state;
	assert_int_equal(ftruncate(fd, (off_t)m->file_size), 0);
	put_trailer(fd, m->mem_size, m->uuid, MEMFILE_MAGIC, 2, MEMFILE_TRAILER, 0);
	expect_memfile(fd, m, "version");
	put_trailer(fd, m->mem_size, m->uuid, MEMFILE_MAGIC, 0, MEMFILE_TRAILER, 0);
	expect_memfile(fd, m, "version");
	put_trailer(fd, m->mem_size, m->uuid, MEMFILE_MAGIC, 1, 8192, 0);
	expect_memfile(fd, m, "");
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_payload_vcpu_fields),
		cmocka_unit_test(test_payload_vm_fields),
		cmocka_unit_test(test_payload_config_fields),
		cmocka_unit_test(test_payload_memory_fields),
		cmocka_unit_test(test_payload_meta_fields),
		cmocka_unit_test(test_memfile_trailer),
		cmocka_unit_test(test_memfile_trailer_version),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
