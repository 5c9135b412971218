/*
 * What the snapshot state file's unit tests share (see snaphelp.h).
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

#include <cbor.h>
#include <xxhash.h>

#include "khyve/config.h"
#include "khyve/memmap.h"
#include "khyve/snapfmt.h"
#include "khyve/snapsec.h"
#include "khyve/util.h"
#include "khyve/vmstate.h"

#include "snaphelp.h"

/* ------------------------------------------------------------------ */
/* deterministic PRNG (splitmix64)                                     */

uint64_t rnd(struct rng *r)
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
void rnd_fill(struct rng *r, void *p, size_t n)
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

void make_vcpu(struct rng *r, struct vcpu_state *v, uint32_t xsave_len, unsigned int nmsrs,
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

void make_vmk(struct rng *r, struct vmkvm_state *k)
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

void make_meta(struct rng *r, struct snap_meta *m)
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

char *xasprintf(const char *fmt, ...)
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
void make_config(struct rng *r, struct vm_config *c, unsigned int ncpus, uint64_t mem,
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

void make_memory(struct rng *r, struct snap_memory *m, uint64_t mem, const uint8_t uuid[16])
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

void make_state(uint64_t seed, struct snap_state *s, unsigned int ncpus, uint64_t mem)
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

void check_vcpu_equal(const struct vcpu_state *a, const struct vcpu_state *b)
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

void check_irqchip_equal(const struct vmkvm_state *a, const struct vmkvm_state *b)
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

void check_meta_equal(const struct snap_meta *a, const struct snap_meta *b)
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

void check_config_equal(const struct vm_config *a, const struct vm_config *b)
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

void check_memory_equal(const struct snap_memory *a, const struct snap_memory *b)
{
	SAME_FIELD("memory", a, b, mem_size);
	SAME_FIELD("memory", a, b, file_size);
	SAME_FIELD("memory", a, b, data_bytes);
	SAME_FIELD("memory", a, b, uuid);
	SAME_FIELD("memory", a, b, nregions);
	SAME_FIELD("memory", a, b, regions);
}

void check_state_equal(const struct snap_state *a, const struct snap_state *b)
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
int read_img(const uint8_t *p, size_t len, struct snap_state *s, char *err)
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
void expect_refused_(const char *file, int line, const uint8_t *p, size_t len, int want_ret, ...)
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

/* ------------------------------------------------------------------ */
/* the baseline image (2 vCPUs) and an independent frame walker          */

struct snap_state g_state;
struct sbuf g_img;
struct frame g_fr[MAX_FRAMES];
unsigned int g_nfr;

uint32_t le32(const uint8_t *p)
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

int group_setup(void **state)
{
	(void)state;
	make_state(BASE_SEED, &g_state, 2, BASE_MEM);
	if (snapsec__write_state(&g_img, &g_state))
		return -1;
	g_nfr = index_frames(g_img.p, g_img.len, g_fr, MAX_FRAMES);
	return 0;
}

int group_teardown(void **state)
{
	(void)state;
	snap_state__free(&g_state);
	sbuf__free(&g_img);
	return 0;
}

/* ------------------------------------------------------------------ */
/* an image builder with faults, from the same public encoders           */

unsigned int section_names(const struct snap_state *s, char names[][16])
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

void encode_section(const struct snap_state *s, const char *name, struct sbuf *b)
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

void build(struct sbuf *out, const struct snap_state *s, const struct bopts *o)
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
size_t item_len(const uint8_t *p, size_t n)
{
	struct cbor_load_result r;
	cbor_item_t *it = cbor_load(p, n, &r);

	assert_non_null(it);
	cbor_decref(&it);
	return r.read;
}

/* offset of the value of the only key `key` in payload b */
size_t find_key(const struct sbuf *b, const char *key)
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

void patch(struct sbuf *b, size_t off, size_t del, const void *ins, size_t n)
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

void set_value(struct sbuf *b, const char *key, const void *v, size_t n)
{
	size_t off = find_key(b, key);

	patch(b, off, item_len(b->p + off, b->len - off), v, n);
}

/* CBOR unsigned integer of an exact width: 8, 16, 32 or 64 */
size_t cbor_uint_w(uint8_t *o, unsigned int width, uint64_t v)
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

void set_uint(struct sbuf *b, const char *key, unsigned int width, uint64_t v)
{
	uint8_t h[9];

	set_value(b, key, h, cbor_uint_w(h, width, v));
}

void payload_of(const char *name, struct sbuf *b)
{
	encode_section(&g_state, name, b);
}

/* build the baseline with section `name`'s payload replaced, expect refusal */
void expect_payload_refused_(const char *file, int line, const char *name, const struct sbuf *pl,
			     const char *a, const char *b)
{
	struct bopts o = { .repl_of = name, .repl = pl };
	struct sbuf img = { 0 };

	build(&img, &g_state, &o);
	expect_refused_(file, line, img.p, img.len, -EINVAL, a, b, (const char *)NULL);
	sbuf__free(&img);
}

/* the same bytes, both written without error */
void assert_same_bytes(const struct sbuf *a, const struct sbuf *b)
{
	assert_int_equal(a->err, 0);
	assert_int_equal(b->err, 0);
	assert_int_equal(a->len, b->len);
	assert_memory_equal(a->p, b->p, a->len);
}
