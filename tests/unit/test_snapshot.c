/*
 * Unit tests for the snapshot state file (src/snapshot/format.c, vmstate.c,
 * sections.c; normative spec: docs/snapshot-format.md).  No /dev/kvm: every
 * state is built by hand from a seeded PRNG, every field non-zero.
 *
 *  - round trips of every section codec and of the whole file;
 *  - fixed-width integers;
 *  - corruption of a valid image: truncation, flipped bits, versions,
 *    missing/duplicate/unknown sections, bad values behind valid checksums;
 *  - the memory file's trailer;
 *  - thousands of mutated images (run under SAN=1 as well).
 *
 * Every image handed to the reader is first copied into a buffer of exactly
 * its length, so that ASan sees any read past its end.
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

#include <cbor.h>
#include <xxhash.h>

#include "khyve/config.h"
#include "khyve/memmap.h"
#include "khyve/snapfmt.h"
#include "khyve/snapsec.h"
#include "khyve/util.h"
#include "khyve/vmstate.h"

#define ERRLEN 512

/* ------------------------------------------------------------------ */
/* deterministic PRNG (splitmix64)                                     */

struct rng {
	uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint32_t rnd32(struct rng *r)
{
	return (uint32_t)(rnd(r) | 1);
}

/* every byte non-zero, so that a field the decoder drops is always seen */
static void rnd_fill(struct rng *r, void *p, size_t n)
{
	uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(rnd(r) % 255 + 1);
}

static uint64_t rnd_nz64(struct rng *r)
{
	uint64_t v;

	rnd_fill(r, &v, sizeof(v));
	return v;
}

/* ------------------------------------------------------------------ */
/* building states                                                     */

static void make_vcpu(struct rng *r, struct vcpu_state *v, uint32_t xsave_len, unsigned int nmsrs,
		      unsigned int ncpuid, unsigned int nxcrs)
{
	struct kvm_segment *segs[] = { &v->sregs.cs, &v->sregs.ds, &v->sregs.es, &v->sregs.fs,
				       &v->sregs.gs, &v->sregs.ss, &v->sregs.tr, &v->sregs.ldt };

	/* member by member: the compiler's holes between members stay zero */
	memset(v, 0, sizeof(*v));
	rnd_fill(r, &v->regs, sizeof(v->regs));
	rnd_fill(r, &v->sregs, sizeof(v->sregs));
	for (unsigned int i = 0; i < ARRAY_SIZE(segs); i++)
		segs[i]->padding = 0;
	memset(v->sregs.gdt.padding, 0, sizeof(v->sregs.gdt.padding));
	memset(v->sregs.idt.padding, 0, sizeof(v->sregs.idt.padding));
	v->xcrs.nr_xcrs = nxcrs;
	v->xcrs.flags = rnd32(r);
	for (unsigned int i = 0; i < nxcrs; i++) {
		v->xcrs.xcrs[i].xcr = rnd32(r);
		v->xcrs.xcrs[i].value = rnd_nz64(r);
	}
	rnd_fill(r, &v->lapic, sizeof(v->lapic));
	v->mp.mp_state = 1 + (uint32_t)(rnd(r) % KVM_MP_STATE_AP_RESET_HOLD);
	rnd_fill(r, &v->events, sizeof(v->events));
	v->events.nmi.pad = 0;
	memset(v->events.reserved, 0, sizeof(v->events.reserved));
	rnd_fill(r, &v->dregs, sizeof(v->dregs));
	/* the format's debugregs.flags is a u32 (KVM accepts only 0) */
	v->dregs.flags = rnd32(r);
	memset(v->dregs.reserved, 0, sizeof(v->dregs.reserved));
	v->tsc_khz = rnd32(r);
	v->nmsrs = nmsrs;
	for (unsigned int i = 0; i < nmsrs; i++) {
		v->msrs[i].index = rnd32(r);
		v->msrs[i].data = rnd_nz64(r);
	}
	v->ncpuid = ncpuid;
	for (unsigned int i = 0; i < ncpuid; i++) {
		struct kvm_cpuid_entry2 *c = &v->cpuid[i];

		c->function = rnd32(r);
		c->index = rnd32(r);
		c->flags = rnd32(r);
		c->eax = rnd32(r);
		c->ebx = rnd32(r);
		c->ecx = rnd32(r);
		c->edx = rnd32(r);
	}
	v->xsave_len = xsave_len;
	rnd_fill(r, v->xsave, xsave_len);
}

static void make_vmk(struct rng *r, struct vmkvm_state *k)
{
	memset(k, 0, sizeof(*k));
	rnd_fill(r, k->pic, sizeof(k->pic));
	rnd_fill(r, &k->ioapic, sizeof(k->ioapic));
	k->ioapic.pad = 0;
	rnd_fill(r, &k->pit, sizeof(k->pit));
	/* KVM_SET_PIT2 ignores count_load_time (it reloads the counters) */
	for (unsigned int i = 0; i < 3; i++)
		k->pit.channels[i].count_load_time = 0;
	memset(k->pit.reserved, 0, sizeof(k->pit.reserved));
	k->clock = rnd_nz64(r);
}

static void make_meta(struct rng *r, struct snap_meta *m)
{
	memset(m, 0, sizeof(*m));
	snprintf(m->khyve_version, sizeof(m->khyve_version), "0.2-test-%08x", rnd32(r));
	m->created = rnd_nz64(r);
	for (unsigned int i = 0; i < 12; i++)
		m->vendor[i] = (char)('A' + rnd(r) % 26);
	m->family = rnd32(r);
	m->model = rnd32(r);
	m->stepping = rnd32(r);
	m->tsc_khz = rnd32(r);
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	assert_true(n >= 0);
	return s;
}

/* com1: CONSOLE_STDIO, CONSOLE_FILE or CONSOLE_NULL */
static void make_config(struct rng *r, struct vm_config *c, unsigned int ncpus, uint64_t mem,
			enum console_backend com1, unsigned int nmodules)
{
	memset(c, 0, sizeof(*c));
	c->name = xasprintf("vm-%08x", rnd32(r));
	c->ncpus = ncpus;
	c->mem_size = mem;
	c->kernel = xasprintf("/boot/kernel-%08x.elf", rnd32(r));
	c->cmdline = xasprintf("console=ttyS0 workload=mem,fpu seed=%08x", rnd32(r));
	c->nmodules = nmodules;
	for (unsigned int i = 0; i < nmodules; i++) {
		c->modules[i].path = xasprintf("/mods/m%u-%08x", i, rnd32(r));
		/* module 1 has an empty string: "" must stay "", not become NULL */
		c->modules[i].string = i == 1 ? xasprintf("%s", "")
					      : xasprintf("%s arg=%08x", c->modules[i].path, rnd32(r));
	}
	c->com1 = com1;
	c->com1_path = com1 == CONSOLE_STDIO ? NULL : xasprintf("/var/log/com1-%08x.log", rnd32(r));
	c->debug_exit = true;
	c->debug_exit_port = (uint16_t)(1 + rnd(r) % 0xfffc);
}

static void make_memory(struct rng *r, struct snap_memory *m, uint64_t mem, const uint8_t uuid[16])
{
	struct guest_mem g;

	memset(m, 0, sizeof(*m));
	memmap__layout(&g, mem);
	m->mem_size = mem;
	m->file_size = mem + MEMFILE_TRAILER;
	m->data_bytes = 1 + rnd(r) % mem;
	memcpy(m->uuid, uuid, 16);
	m->nregions = g.nregions;
	memcpy(m->regions, g.regions, sizeof(m->regions));
}

static void make_state(uint64_t seed, struct snap_state *s, unsigned int ncpus, uint64_t mem)
{
	struct rng r = { seed };

	memset(s, 0, sizeof(*s));
	rnd_fill(&r, s->uuid, sizeof(s->uuid));
	make_meta(&r, &s->meta);
	make_config(&r, &s->cfg, ncpus, mem, CONSOLE_FILE, 3);
	{
		uint8_t mem_uuid[16];	/* the memory file's UUID is another one */

		rnd_fill(&r, mem_uuid, sizeof(mem_uuid));
		make_memory(&r, &s->memory, mem, mem_uuid);
	}
	make_vmk(&r, &s->vmk);
	s->ncpus = ncpus;
	s->vcpus = calloc(ncpus, sizeof(*s->vcpus));
	assert_non_null(s->vcpus);
	for (unsigned int i = 0; i < ncpus; i++)
		make_vcpu(&r, &s->vcpus[i], i & 1 ? 11008 : 4096, 20 + 7 * i, 15 + 5 * i, 1 + i % 3);
}

/* ------------------------------------------------------------------ */
/* comparing states, field by field                                    */

#define SAME_MEM(what, a, b, n)						\
	do {								\
		if (memcmp((a), (b), (n)))				\
			fail_msg("%s differs after the round trip", what); \
	} while (0)
#define SAME_FIELD(what, a, b, f) SAME_MEM(what "." #f, &(a)->f, &(b)->f, sizeof((a)->f))

static void check_vcpu_equal(const struct vcpu_state *a, const struct vcpu_state *b)
{
	SAME_FIELD("vcpu", a, b, regs);
	SAME_FIELD("vcpu", a, b, sregs);
	SAME_FIELD("vcpu", a, b, xcrs);
	SAME_FIELD("vcpu", a, b, lapic);
	SAME_FIELD("vcpu", a, b, mp);
	SAME_FIELD("vcpu", a, b, events);
	SAME_FIELD("vcpu", a, b, dregs);
	SAME_FIELD("vcpu", a, b, tsc_khz);
	SAME_FIELD("vcpu", a, b, nmsrs);
	SAME_FIELD("vcpu", a, b, msrs);
	SAME_FIELD("vcpu", a, b, ncpuid);
	SAME_FIELD("vcpu", a, b, cpuid);
	SAME_FIELD("vcpu", a, b, xsave_len);
	SAME_MEM("vcpu.xsave", a->xsave, b->xsave, a->xsave_len);
	/* and nothing in between (holes) before the XSAVE area */
	SAME_MEM("vcpu (whole)", a, b, offsetof(struct vcpu_state, xsave));
}

static void check_irqchip_equal(const struct vmkvm_state *a, const struct vmkvm_state *b)
{
	SAME_FIELD("irqchip", a, b, pic[0]);
	SAME_FIELD("irqchip", a, b, pic[1]);
	SAME_FIELD("irqchip", a, b, ioapic);
}

static void check_vmk_equal(const struct vmkvm_state *a, const struct vmkvm_state *b)
{
	check_irqchip_equal(a, b);
	SAME_FIELD("vmk", a, b, pit);
	SAME_FIELD("vmk", a, b, clock);
}

static void check_meta_equal(const struct snap_meta *a, const struct snap_meta *b)
{
	assert_string_equal(a->khyve_version, b->khyve_version);
	assert_int_equal(a->created, b->created);
	assert_string_equal(a->vendor, b->vendor);
	assert_int_equal(a->family, b->family);
	assert_int_equal(a->model, b->model);
	assert_int_equal(a->stepping, b->stepping);
	assert_int_equal(a->tsc_khz, b->tsc_khz);
}

/* "" and NULL are the same for the optional strings (kernel, cmdline, com1 path) */
static void check_optstr(const char *what, const char *a, const char *b)
{
	if (!a || !*a) {
		if (b)
			fail_msg("config.%s: expected NULL, got '%s'", what, b);
		return;
	}
	if (!b || strcmp(a, b))
		fail_msg("config.%s: expected '%s', got '%s'", what, a, b ? b : "(null)");
}

static void check_config_equal(const struct vm_config *a, const struct vm_config *b)
{
	assert_non_null(b->name);
	assert_string_equal(a->name, b->name);
	assert_int_equal(a->ncpus, b->ncpus);
	assert_int_equal(a->mem_size, b->mem_size);
	check_optstr("kernel", a->kernel, b->kernel);
	check_optstr("cmdline", a->cmdline, b->cmdline);
	assert_int_equal(a->nmodules, b->nmodules);
	for (unsigned int i = 0; i < a->nmodules; i++) {
		assert_non_null(b->modules[i].path);
		assert_non_null(b->modules[i].string);
		assert_string_equal(a->modules[i].path, b->modules[i].path);
		assert_string_equal(a->modules[i].string, b->modules[i].string);
	}
	assert_int_equal(a->com1, b->com1);
	check_optstr("com1_path", a->com1_path, b->com1_path);
	assert_int_equal(a->debug_exit, b->debug_exit);
	assert_int_equal(a->debug_exit_port, b->debug_exit_port);
	assert_null(b->rundir);
	assert_null(b->restore);
}

static void check_memory_equal(const struct snap_memory *a, const struct snap_memory *b)
{
	SAME_FIELD("memory", a, b, mem_size);
	SAME_FIELD("memory", a, b, file_size);
	SAME_FIELD("memory", a, b, data_bytes);
	SAME_FIELD("memory", a, b, uuid);
	SAME_FIELD("memory", a, b, nregions);
	SAME_FIELD("memory", a, b, regions);
}

static void check_state_equal(const struct snap_state *a, const struct snap_state *b)
{
	SAME_FIELD("state", a, b, uuid);
	check_meta_equal(&a->meta, &b->meta);
	check_config_equal(&a->cfg, &b->cfg);
	check_memory_equal(&a->memory, &b->memory);
	check_vmk_equal(&a->vmk, &b->vmk);
	assert_int_equal(a->ncpus, b->ncpus);
	assert_non_null(b->vcpus);
	for (unsigned int i = 0; i < a->ncpus; i++)
		check_vcpu_equal(&a->vcpus[i], &b->vcpus[i]);
	assert_int_equal(b->ndevs, 0);
}

/* ------------------------------------------------------------------ */
/* error checks                                                         */

static bool all_zero(const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

/* snapsec__read_state on an exact-size copy; a failure must leave s empty */
static int read_img(const uint8_t *p, size_t len, struct snap_state *s, char *err)
{
	uint8_t *copy = malloc(len ? len : 1);
	int ret;

	assert_non_null(copy);
	if (len)
		memcpy(copy, p, len);
	strcpy(err, "(no message)");
	ret = snapsec__read_state(copy, len, s, err, ERRLEN);
	free(copy);
	if (ret) {
		if (ret > 0)
			fail_msg("read_state returned %d (positive)", ret);
		if (!err[0] || !strcmp(err, "(no message)"))
			fail_msg("read_state failed (%d) without a message", ret);
		/* nothing allocated, nothing half-decoded (the header's UUID may stay) */
		struct snap_state z = *s;

		memset(z.uuid, 0, sizeof(z.uuid));
		if (!all_zero(&z, sizeof(z)))
			fail_msg("read_state failed (%s) but left state behind", err);
	}
	return ret;
}

/* The image must be refused, with every given substring in the message. */
static void expect_refused_(const char *file, int line, const uint8_t *p, size_t len, int want_ret, ...)
{
	struct snap_state s;
	char err[ERRLEN];
	const char *sub;
	va_list ap;
	int ret;

	ret = read_img(p, len, &s, err);
	if (ret == 0) {
		snap_state__free(&s);
		print_error("image of %zu bytes was accepted\n", len);
		_fail(file, line);
	}
	if (want_ret && ret != want_ret) {
		print_error("returned %d, expected %d: %s\n", ret, want_ret, err);
		_fail(file, line);
	}
	va_start(ap, want_ret);
	while ((sub = va_arg(ap, const char *))) {
		if (!strstr(err, sub)) {
			va_end(ap);
			print_error("message \"%s\" lacks \"%s\"\n", err, sub);
			_fail(file, line);
		}
	}
	va_end(ap);
}

#define expect_refused(p, len, ret, ...) \
	expect_refused_(__FILE__, __LINE__, p, len, ret, __VA_ARGS__, (const char *)NULL)

static void expect_dec_error(const struct dec *d, const char *err, const char *a, const char *b)
{
	if (d->ret != -EINVAL)
		fail_msg("decoder returned %d, expected -EINVAL (%s)", d->ret, err);
	if (a && !strstr(err, a))
		fail_msg("message \"%s\" lacks \"%s\"", err, a);
	if (b && !strstr(err, b))
		fail_msg("message \"%s\" lacks \"%s\"", err, b);
}

/* ------------------------------------------------------------------ */
/* the baseline image (2 vCPUs) and an independent frame walker          */

#define BASE_SEED	0x5eed0001
#define BASE_MEM	(128 * MiB)
#define MAX_FRAMES	32

struct frame {
	char name[SNAP_NAME_MAX + 1];
	size_t off, nl, ver_off, flags_off, len_off, hash_off, payload_off, plen, end;
};

static struct snap_state g_state;
static struct sbuf g_img;
static struct frame g_fr[MAX_FRAMES];
static unsigned int g_nfr;	/* including "end" */

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* Walk the frames of a well-formed image as docs/snapshot-format.md 3.2 says. */
static unsigned int index_frames(const uint8_t *p, size_t len, struct frame *f, unsigned int max)
{
	size_t off = SNAP_HEADER_SIZE;
	unsigned int n = 0;

	assert_memory_equal(p, SNAP_MAGIC, 8);
	while (off < len) {
		struct frame *x = &f[n];

		assert_true(n < max);
		assert_memory_equal(p + off, SNAP_SECTION_MAGIC, 4);
		x->off = off;
		x->nl = (size_t)p[off + 4] | (size_t)p[off + 5] << 8;
		assert_true(x->nl >= 1 && x->nl <= SNAP_NAME_MAX);
		memcpy(x->name, p + off + 6, x->nl);
		x->name[x->nl] = '\0';
		x->ver_off = off + 6 + x->nl;
		x->flags_off = x->ver_off + 4;
		x->len_off = x->ver_off + 8;
		x->hash_off = x->ver_off + 16;
		x->payload_off = x->ver_off + 24;
		assert_int_equal(x->payload_off, off + SNAP_SECTION_HDR + x->nl);
		x->plen = (size_t)le64(p + x->len_off);
		x->end = x->payload_off + x->plen;
		assert_true(x->end <= len);
		assert_int_equal(le64(p + x->hash_off), XXH3_64bits(p + x->payload_off, x->plen));
		off = x->end;
		n++;
		if (!strcmp(x->name, "end"))
			break;
	}
	assert_int_equal(off, len);
	assert_string_equal(f[n - 1].name, "end");
	return n;
}

static int group_setup(void **state)
{
	(void)state;
	make_state(BASE_SEED, &g_state, 2, BASE_MEM);
	if (snapsec__write_state(&g_img, &g_state))
		return -1;
	g_nfr = index_frames(g_img.p, g_img.len, g_fr, MAX_FRAMES);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	snap_state__free(&g_state);
	sbuf__free(&g_img);
	return 0;
}

/* ------------------------------------------------------------------ */
/* an image builder with faults, from the same public encoders           */

struct extra_sec {
	const char *name;
	uint32_t version, flags;
	const struct sbuf *payload;
};

struct bopts {
	const char *skip;		/* leave this section out */
	const char *dup;		/* write this section twice */
	const char *ver_of;		/* write this section with version ver */
	uint32_t ver;
	const char *repl_of;		/* this section's payload is repl */
	const struct sbuf *repl;
	struct extra_sec extra;		/* one more section before "end" */
	int end_delta;			/* added to the count in "end" */
	bool no_end;
};

static unsigned int section_names(const struct snap_state *s, char names[][16])
{
	unsigned int n = 0;

	strcpy(names[n++], "meta");
	strcpy(names[n++], "config");
	strcpy(names[n++], "memory");
	for (unsigned int i = 0; i < s->ncpus; i++)
		snprintf(names[n++], 16, "vcpu.%u", i);
	strcpy(names[n++], "irqchip");
	strcpy(names[n++], "pit");
	strcpy(names[n++], "clock");
	return n;
}

static void encode_section(const struct snap_state *s, const char *name, struct sbuf *b)
{
	b->len = 0;
	if (!strcmp(name, "meta"))
		snapsec__encode_meta(b, &s->meta);
	else if (!strcmp(name, "config"))
		snapsec__encode_config(b, &s->cfg);
	else if (!strcmp(name, "memory"))
		snapsec__encode_memory(b, &s->memory);
	else if (!strcmp(name, "irqchip"))
		vmstate__encode_irqchip(b, &s->vmk);
	else if (!strcmp(name, "pit"))
		vmstate__encode_pit(b, &s->vmk);
	else if (!strcmp(name, "clock"))
		vmstate__encode_clock(b, &s->vmk);
	else if (!strncmp(name, "vcpu.", 5))
		vmstate__encode_vcpu(b, &s->vcpus[atoi(name + 5)]);
	else
		fail_msg("no encoder for '%s'", name);
	assert_int_equal(b->err, 0);
}

static void build(struct sbuf *out, const struct snap_state *s, const struct bopts *o)
{
	static const struct bopts none;
	char names[8 + 256][16];
	unsigned int n = section_names(s, names), count = 0;
	struct sbuf b = { 0 };

	if (!o)
		o = &none;
	out->len = 0;
	snapfmt__header(out, s->uuid);
	for (unsigned int i = 0; i < n; i++) {
		const struct sbuf *pl = &b;
		/* every section of format 1 is at version 1, but config (2: PCI slots) */
		uint32_t ver = !strcmp(names[i], "config") ? CONFIG_VERSION : 1;

		if (o->skip && !strcmp(o->skip, names[i]))
			continue;
		if (o->repl_of && !strcmp(o->repl_of, names[i]))
			pl = o->repl;
		else
			encode_section(s, names[i], &b);
		if (o->ver_of && !strcmp(o->ver_of, names[i]))
			ver = o->ver;
		snapfmt__section(out, names[i], ver, SNAP_FLAG_REQUIRED, pl);
		count++;
		if (o->dup && !strcmp(o->dup, names[i])) {
			snapfmt__section(out, names[i], ver, SNAP_FLAG_REQUIRED, pl);
			count++;
		}
	}
	if (o->extra.name) {
		snapfmt__section(out, o->extra.name, o->extra.version, o->extra.flags, o->extra.payload);
		count++;
	}
	if (!o->no_end)
		snapfmt__finish(out, (unsigned int)((int)count + o->end_delta));
	sbuf__free(&b);
	assert_int_equal(out->err, 0);
}

/* ------------------------------------------------------------------ */
/* payload surgery (valid checksums are restored by build())             */

/* the length of the one CBOR item at p */
static size_t item_len(const uint8_t *p, size_t n)
{
	struct cbor_load_result r;
	cbor_item_t *it = cbor_load(p, n, &r);

	assert_non_null(it);
	cbor_decref(&it);
	return r.read;
}

/* offset of the value of the only key `key` in payload b */
static size_t find_key(const struct sbuf *b, const char *key)
{
	size_t n = strlen(key), found = 0;
	unsigned int hits = 0;

	assert_true(n < 24);
	for (size_t i = 0; i + 1 + n < b->len; i++) {
		if (b->p[i] == 0x60 + n && !memcmp(b->p + i + 1, key, n)) {
			found = i + 1 + n;
			hits++;
		}
	}
	if (hits != 1)
		fail_msg("key '%s' occurs %u times in the payload", key, hits);
	return found;
}

static void patch(struct sbuf *b, size_t off, size_t del, const void *ins, size_t n)
{
	uint8_t *p = malloc(b->len - del + n);

	assert_non_null(p);
	assert_true(off + del <= b->len);
	memcpy(p, b->p, off);
	if (n)
		memcpy(p + off, ins, n);
	memcpy(p + off + n, b->p + off + del, b->len - off - del);
	free(b->p);
	b->p = p;
	b->len = b->len - del + n;
	b->cap = b->len;
}

static void set_value(struct sbuf *b, const char *key, const void *v, size_t n)
{
	size_t off = find_key(b, key);

	patch(b, off, item_len(b->p + off, b->len - off), v, n);
}

/* CBOR unsigned integer of an exact width: 8, 16, 32 or 64 */
static size_t cbor_uint_w(uint8_t *o, unsigned int width, uint64_t v)
{
	switch (width) {
	case 8:
		return cbor_encode_uint8((uint8_t)v, o, 9);
	case 16:
		return cbor_encode_uint16((uint16_t)v, o, 9);
	case 32:
		return cbor_encode_uint32((uint32_t)v, o, 9);
	default:
		return cbor_encode_uint64(v, o, 9);
	}
}

static void set_uint(struct sbuf *b, const char *key, unsigned int width, uint64_t v)
{
	uint8_t h[9];

	set_value(b, key, h, cbor_uint_w(h, width, v));
}

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

static void payload_of(const char *name, struct sbuf *b)
{
	encode_section(&g_state, name, b);
}

/* build the baseline with section `name`'s payload replaced, expect refusal */
static void expect_payload_refused_(const char *file, int line, const char *name, const struct sbuf *pl,
				    const char *a, const char *b)
{
	struct bopts o = { .repl_of = name, .repl = pl };
	struct sbuf img = { 0 };

	build(&img, &g_state, &o);
	expect_refused_(file, line, img.p, img.len, -EINVAL, a, b, (const char *)NULL);
	sbuf__free(&img);
}

#define expect_payload_refused(name, pl, a, b) expect_payload_refused_(__FILE__, __LINE__, name, pl, a, b)

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

static void assert_same_bytes(const struct sbuf *a, const struct sbuf *b)
{
	assert_int_equal(a->err, 0);
	assert_int_equal(b->err, 0);
	assert_int_equal(a->len, b->len);
	assert_memory_equal(a->p, b->p, a->len);
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
		cmocka_unit_test(test_payload_vcpu_fields),
		cmocka_unit_test(test_payload_vm_fields),
		cmocka_unit_test(test_payload_config_fields),
		cmocka_unit_test(test_payload_memory_fields),
		cmocka_unit_test(test_payload_meta_fields),
		cmocka_unit_test(test_memfile_trailer),
		cmocka_unit_test(test_memfile_trailer_version),
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
