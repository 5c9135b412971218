/*
 * The sections of a snapshot: meta, config, memory, vcpu.N, irqchip, pit,
 * clock and one per device, in that order, then end.  Reading is phase
 * one of a restore: everything is decoded and validated here, before any
 * part of a VM exists.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "khyve/arch.h"
#include "khyve/pci.h"
#include "khyve/snapsec.h"
#include "khyve/util.h"

#define STR_MAX (64 * 1024)

void snap_state__free(struct snap_state *s)
{
	config__free(&s->cfg);
	free(s->vcpus);
	for (unsigned int i = 0; i < s->ndevs; i++)
		free(s->devs[i].state);
	memset(s, 0, sizeof(*s));
}

void snapsec__host_meta(struct snap_meta *m)
{
	memset(m, 0, sizeof(*m));
	snprintf(m->khyve_version, sizeof(m->khyve_version), "%s", KHYVE_VERSION);
	m->created = (uint64_t)time(NULL);
	arch__host_cpu(m);
}

void snapsec__encode_meta(struct sbuf *b, const struct snap_meta *m)
{
	enc__map(b);
	enc__str(b, "khyve_version", m->khyve_version);
	enc__u64(b, "created", m->created);
	enc__map_key(b, "host_cpu");
	enc__str(b, "vendor", m->vendor);
	enc__u32(b, "family", m->family);
	enc__u32(b, "model", m->model);
	enc__u32(b, "stepping", m->stepping);
	enc__end(b);
	enc__u32(b, "tsc_khz", m->tsc_khz);
	enc__end(b);
}

void snapsec__decode_meta(struct dec *d, const cbor_item_t *map, struct snap_meta *m)
{
	const cbor_item_t *cpu;

	dec__str(d, map, "khyve_version", m->khyve_version, sizeof(m->khyve_version));
	m->created = dec__u64(d, map, "created");
	cpu = dec__map(d, map, "host_cpu");
	dec__str(d, cpu, "vendor", m->vendor, sizeof(m->vendor));
	m->family = dec__u32(d, cpu, "family");
	m->model = dec__u32(d, cpu, "model");
	m->stepping = dec__u32(d, cpu, "stepping");
	m->tsc_khz = dec__u32(d, map, "tsc_khz");
}

static const char *const com1_names[] = { "stdio", "file", "null" };

void snapsec__encode_config(struct sbuf *b, const struct vm_config *c)
{
	enc__map(b);
	enc__str(b, "name", c->name);
	enc__u32(b, "vcpus", c->ncpus);
	enc__u64(b, "memory", c->mem_size);
	enc__str(b, "kernel", c->kernel ? c->kernel : "");
	enc__str(b, "cmdline", c->cmdline ? c->cmdline : "");
	enc__array_key(b, "modules");
	for (unsigned int i = 0; i < c->nmodules; i++) {
		enc__map(b);
		enc__str(b, "path", c->modules[i].path);
		enc__str(b, "string", c->modules[i].string);
		enc__end(b);
	}
	enc__end(b);
	enc__map_key(b, "com1");
	enc__str(b, "backend", com1_names[c->com1]);
	enc__str(b, "path", c->com1_path ? c->com1_path : "");
	enc__end(b);
	enc__map_key(b, "debug_exit");
	enc__bool(b, "enabled", c->debug_exit);
	enc__u16(b, "port", c->debug_exit_port);
	enc__end(b);
	enc__array_key(b, "slots");
	for (unsigned int i = 0; i < c->nslots; i++) {
		enc__map(b);
		enc__u8(b, "slot", c->slots[i].slot);
		enc__u8(b, "func", c->slots[i].func);
		enc__str(b, "device", c->slots[i].device);
		enc__str(b, "options", c->slots[i].opts ? c->slots[i].opts : "");
		enc__end(b);
	}
	enc__end(b);
	enc__end(b);
}

/* Decode a string field into a fresh allocation; "" becomes NULL if empty_null. */
static char *dec_strdup(struct dec *d, const cbor_item_t *m, const char *key, char *tmp, bool empty_null)
{
	char *s;

	dec__str(d, m, key, tmp, STR_MAX);
	if (d->ret || (empty_null && !tmp[0]))
		return NULL;
	s = strdup(tmp);
	if (!s)
		dec__fail(d, "out of memory");
	return s;
}

/* Version 1 had no PCI: a v1 machine is one without -s. */
static void config_v1_to_v2(struct vm_config *c)
{
	c->nslots = 0;
}

static void decode_slots(struct dec *d, const cbor_item_t *map, struct vm_config *c, char *tmp)
{
	cbor_item_t **sl;
	size_t n = 0;

	sl = dec__array(d, map, "slots", &n);
	if (!d->ret && n > CONFIG_MAX_SLOTS)
		dec__fail(d, "field 'slots' has %zu entries, at most %d", n, CONFIG_MAX_SLOTS);
	for (size_t i = 0; sl && !d->ret && i < n; i++) {
		struct slot_config *sc = &c->slots[i];

		c->nslots = (unsigned int)i + 1;
		sc->slot = dec__u8(d, sl[i], "slot");
		sc->func = dec__u8(d, sl[i], "func");
		sc->device = dec_strdup(d, sl[i], "device", tmp, false);
		sc->opts = dec_strdup(d, sl[i], "options", tmp, true);
	}
	if (!d->ret) {
		char why[256];

		if (config__check_slots(c, why, sizeof(why)))
			dec__fail(d, "field 'slots': %s", why);
	}
}

void snapsec__decode_config(struct dec *d, const cbor_item_t *map, struct vm_config *c)
{
	snapsec__decode_config_version(d, map, CONFIG_VERSION, c);
}

void snapsec__decode_config_version(struct dec *d, const cbor_item_t *map, uint32_t version,
				    struct vm_config *c)
{
	char *tmp = malloc(STR_MAX), backend[16];
	const cbor_item_t *x;
	cbor_item_t **mods;
	size_t n;
	uint64_t mem;

	memset(c, 0, sizeof(*c));
	if (!tmp) {
		dec__fail(d, "out of memory");
		return;
	}
	c->name = dec_strdup(d, map, "name", tmp, false);
	if (!d->ret && !config__valid_name(c->name))
		dec__fail(d, "field 'name' is not a valid VM name");
	c->ncpus = dec__u32(d, map, "vcpus");
	if (!d->ret && (c->ncpus < 1 || c->ncpus > 254))
		dec__fail(d, "field 'vcpus' is %u, outside 1..254", c->ncpus);
	mem = dec__u64(d, map, "memory");
	if (!d->ret && (mem < MEM_MIN_SIZE || (mem & 4095) || mem > (1ULL << 46)))
		dec__fail(d, "field 'memory' is %llu, not a valid guest RAM size", (unsigned long long)mem);
	c->mem_size = mem;
	c->kernel = dec_strdup(d, map, "kernel", tmp, true);
	c->cmdline = dec_strdup(d, map, "cmdline", tmp, true);
	mods = dec__array(d, map, "modules", &n);
	if (n > CONFIG_MAX_MODULES)
		dec__fail(d, "field 'modules' has %zu entries, at most %d", n, CONFIG_MAX_MODULES);
	for (size_t i = 0; mods && !d->ret && i < n; i++) {
		c->modules[i].path = dec_strdup(d, mods[i], "path", tmp, false);
		c->modules[i].string = dec_strdup(d, mods[i], "string", tmp, false);
		c->nmodules = (unsigned int)i + 1;
	}
	x = dec__map(d, map, "com1");
	dec__str(d, x, "backend", backend, sizeof(backend));
	c->com1_path = dec_strdup(d, x, "path", tmp, true);
	if (!d->ret) {
		unsigned int i;

		for (i = 0; i < 3 && strcmp(backend, com1_names[i]); i++)
			;
		if (i == 3)
			dec__fail(d, "field 'com1.backend' is '%s', not stdio, file or null", backend);
		c->com1 = (enum console_backend)i;
		if (c->com1 == CONSOLE_FILE && !c->com1_path)
			dec__fail(d, "field 'com1.path' is empty for a file backend");
	}
	x = dec__map(d, map, "debug_exit");
	c->debug_exit = dec__bool(d, x, "enabled");
	c->debug_exit_port = dec__u16(d, x, "port");
	if (!d->ret && c->debug_exit_port > 0xfffc)
		dec__fail(d, "field 'debug_exit.port' is 0x%x, above 0xfffc", c->debug_exit_port);
	if (version >= 2)
		decode_slots(d, map, c, tmp);
	else
		config_v1_to_v2(c);
	free(tmp);
}

void snapsec__encode_memory(struct sbuf *b, const struct snap_memory *m)
{
	enc__map(b);
	enc__u64(b, "size", m->mem_size);
	enc__u64(b, "file_size", m->file_size);
	enc__u64(b, "data_bytes", m->data_bytes);
	enc__bytes(b, "uuid", m->uuid, sizeof(m->uuid));
	enc__array_key(b, "regions");
	for (unsigned int i = 0; i < m->nregions; i++) {
		enc__map(b);
		enc__u64(b, "gpa", m->regions[i].gpa);
		enc__u64(b, "size", m->regions[i].size);
		enc__u64(b, "offset", m->regions[i].offset);
		enc__end(b);
	}
	enc__end(b);
	enc__end(b);
}

void snapsec__decode_memory(struct dec *d, const cbor_item_t *map, struct snap_memory *m)
{
	struct guest_mem expect;
	cbor_item_t **r;
	size_t n;

	memset(m, 0, sizeof(*m));
	m->mem_size = dec__u64(d, map, "size");
	m->file_size = dec__u64(d, map, "file_size");
	m->data_bytes = dec__u64(d, map, "data_bytes");
	dec__bytes(d, map, "uuid", m->uuid, sizeof(m->uuid));
	r = dec__array(d, map, "regions", &n);
	if (!d->ret && (n < 1 || n > MEM_MAX_REGIONS))
		dec__fail(d, "field 'regions' has %zu entries, expected 1..%d", n, MEM_MAX_REGIONS);
	for (size_t i = 0; r && !d->ret && i < n; i++) {
		m->regions[i].gpa = dec__u64(d, r[i], "gpa");
		m->regions[i].size = dec__u64(d, r[i], "size");
		m->regions[i].offset = dec__u64(d, r[i], "offset");
	}
	m->nregions = (unsigned int)n;
	if (d->ret)
		return;
	if (m->mem_size < MEM_MIN_SIZE || (m->mem_size & 4095) || m->mem_size > (1ULL << 46)) {
		dec__fail(d, "field 'size' is %llu, not a valid guest RAM size", (unsigned long long)m->mem_size);
		return;
	}
	if (m->file_size != m->mem_size + MEMFILE_TRAILER) {
		dec__fail(d, "field 'file_size' is %llu, expected size + %d", (unsigned long long)m->file_size,
			  MEMFILE_TRAILER);
		return;
	}
	/* the region table must be exactly the layout khyve builds */
	memmap__layout(&expect, m->mem_size);
	if (expect.nregions != m->nregions) {
		dec__fail(d, "field 'regions' has %u regions, %llu bytes of RAM have %u", m->nregions,
			  (unsigned long long)m->mem_size, expect.nregions);
		return;
	}
	for (unsigned int i = 0; i < m->nregions; i++) {
		if (memcmp(&expect.regions[i], &m->regions[i], sizeof(m->regions[i]))) {
			dec__fail(d, "field 'regions[%u]' (gpa 0x%llx size 0x%llx offset 0x%llx) does not match "
				  "the memory layout", i, (unsigned long long)m->regions[i].gpa,
				  (unsigned long long)m->regions[i].size, (unsigned long long)m->regions[i].offset);
			return;
		}
	}
}

static void section(struct sbuf *out, const char *name, uint32_t version, const struct sbuf *payload,
		    unsigned int *count)
{
	snapfmt__section(out, name, version, SNAP_FLAG_REQUIRED, payload);
	(*count)++;
}

int snapsec__write_state(struct sbuf *out, const struct snap_state *s)
{
	struct sbuf b = { 0 };
	unsigned int count = 0;
	char name[32];
	int ret;

	snapfmt__header(out, s->uuid);
#define SECTION(nm, ver, enc)						\
	do {								\
		b.len = 0;						\
		enc;							\
		section(out, nm, ver, &b, &count);			\
	} while (0)
	SECTION("meta", META_VERSION, snapsec__encode_meta(&b, &s->meta));
	SECTION("config", CONFIG_VERSION, snapsec__encode_config(&b, &s->cfg));
	SECTION("memory", MEMORY_VERSION, snapsec__encode_memory(&b, &s->memory));
	for (unsigned int i = 0; i < s->ncpus; i++) {
		snprintf(name, sizeof(name), "vcpu.%u", i);
		SECTION(name, VCPU_STATE_VERSION, vmstate__encode_vcpu(&b, &s->vcpus[i]));
	}
	SECTION("irqchip", IRQCHIP_STATE_VERSION, vmstate__encode_irqchip(&b, &s->vmk));
	SECTION("pit", PIT_STATE_VERSION, vmstate__encode_pit(&b, &s->vmk));
	SECTION("clock", CLOCK_STATE_VERSION, vmstate__encode_clock(&b, &s->vmk));
	for (unsigned int i = 0; i < s->ndevs; i++)
		SECTION(s->devs[i].name, s->devs[i].ops->state_version,
			s->devs[i].ops->encode(&b, s->devs[i].state));
#undef SECTION
	snapfmt__finish(out, count);
	ret = out->err ? out->err : b.err;
	sbuf__free(&b);
	return ret;
}

/* ---------- reading ---------- */

enum { K_META, K_CONFIG, K_MEMORY, K_IRQCHIP, K_PIT, K_CLOCK, K_NFIXED };

static const struct {
	const char *name;
	uint32_t version;
} fixed[K_NFIXED] = {
	[K_META] = { "meta", META_VERSION },
	[K_CONFIG] = { "config", CONFIG_VERSION },
	[K_MEMORY] = { "memory", MEMORY_VERSION },
	[K_IRQCHIP] = { "irqchip", IRQCHIP_STATE_VERSION },
	[K_PIT] = { "pit", PIT_STATE_VERSION },
	[K_CLOCK] = { "clock", CLOCK_STATE_VERSION },
};


static int newer(const struct snap_section *sec, uint32_t known, char *err, size_t errlen)
{
	if (sec->version > known)
		return util__fail(-EPROTO, err, errlen,
			     "section '%s' has version %u, newer than this khyve reads (%u)",
			     sec->name, sec->version, known);
	if (sec->version == 0)
		return util__fail(-EINVAL, err, errlen, "section '%s' has version 0", sec->name);
	return 0;
}

/* "vcpu.N" with N a plain decimal below 254 */
static int vcpu_index(const char *name)
{
	const char *p = name + 5;
	int n = 0;

	if (strncmp(name, "vcpu.", 5) || !*p || (*p == '0' && p[1]))
		return -1;
	for (; *p; p++) {
		if (*p < '0' || *p > '9' || n > 253)
			return -1;
		n = n * 10 + (*p - '0');
	}
	return n < 254 ? n : -1;
}

/*
 * Device sections against the configuration, still in phase one, so that
 * --inspect and -r refuse the same snapshots before anything is built:
 * one section per device the configuration creates (COM1, the i8042, the
 * PCI bus with -s, each PCI function whose type has state), and none for
 * a device it does not (a 'pci' section in a machine without -s).
 */
static int check_device_sections(const struct snap_state *s, char *err, size_t errlen)
{
	const struct device_ops *ops;
	char name[DEVICE_NAME_MAX + 1];
	bool found;

	for (unsigned int t = 0; (ops = device__type(t)); t++) {
		bool want;

		if (!ops->init || !ops->decode)
			continue;	/* bus-created (below), or no state */
		want = !ops->present || ops->present(&s->cfg);
		found = false;
		for (unsigned int i = 0; i < s->ndevs && !found; i++)
			found = !strcmp(s->devs[i].name, ops->name);
		if (want && !found)
			return util__fail(-EINVAL, err, errlen, "required section '%s' is missing", ops->name);
		if (!want && found)
			return util__fail(-EINVAL, err, errlen,
					  "section '%s' names no device of section 'config'", ops->name);
	}
	for (unsigned int i = 0; i < s->ndevs; i++) {
		if (s->devs[i].ops->init)
			continue;	/* not a bus-created instance */
		found = false;
		for (unsigned int j = 0; j < s->cfg.nslots && !found; j++) {
			pci__instance_name(&s->cfg.slots[j], name, sizeof(name));
			found = !strcmp(name, s->devs[i].name);
		}
		if (!found)
			return util__fail(-EINVAL, err, errlen,
					  "section '%s' names no PCI function of section 'config'", s->devs[i].name);
	}
	for (unsigned int j = 0; j < s->cfg.nslots; j++) {
		const struct pci_devtype *t = pci__find_type(s->cfg.slots[j].device);

		if (!t || !t->ops->save)
			continue;
		pci__instance_name(&s->cfg.slots[j], name, sizeof(name));
		found = false;
		for (unsigned int i = 0; i < s->ndevs && !found; i++)
			found = !strcmp(name, s->devs[i].name);
		if (!found)
			return util__fail(-EINVAL, err, errlen, "required section '%s' is missing", name);
	}
	return 0;
}

/* Pass 1: the sections everything else is checked against (meta, config, memory). */
static int read_base(struct snap_state *s, struct snap_section *secs, unsigned int nsecs, size_t *items_left,
		     char *err, size_t errlen)
{
	bool have[K_MEMORY + 1] = { 0 };
	int ret;

	for (unsigned int i = 0; i < nsecs; i++) {
		struct dec d = { .section = secs[i].name, .err = err, .errlen = errlen, .items_left = items_left };
		cbor_item_t *m;
		int k;

		for (k = 0; k < K_NFIXED && strcmp(secs[i].name, fixed[k].name); k++)
			;
		if (k > K_MEMORY)
			continue;
		ret = newer(&secs[i], fixed[k].version, err, errlen);
		if (ret)
			return ret;
		m = dec__load(&d, secs[i].payload, secs[i].len);
		if (k == K_META)
			snapsec__decode_meta(&d, m, &s->meta);
		else if (k == K_CONFIG)
			snapsec__decode_config_version(&d, m, secs[i].version, &s->cfg);
		else
			snapsec__decode_memory(&d, m, &s->memory);
		if (m)
			cbor_decref(&m);
		if (d.ret)
			return d.ret;
		have[k] = true;
	}
	for (int k = 0; k <= K_MEMORY; k++)
		if (!have[k])
			return util__fail(-EINVAL, err, errlen, "required section '%s' is missing", fixed[k].name);
	if (s->memory.mem_size != s->cfg.mem_size)
		return util__fail(-EINVAL, err, errlen,
				  "section 'memory' field 'size' (%llu) disagrees with section 'config' field "
				  "'memory' (%llu)", (unsigned long long)s->memory.mem_size,
				  (unsigned long long)s->cfg.mem_size);
	return 0;
}

/* A device section's payload m, decoded by its type (ops) into a new entry of s->devs. */
static void decode_device(struct snap_state *s, struct dec *d, const cbor_item_t *m, const struct snap_section *sec,
			  const struct device_ops *ops)
{
	void *st;

	if (s->ndevs == SNAP_MAX_DEVICES) {
		dec__fail(d, "too many device sections");
		return;
	}
	st = calloc(1, ops->state_size);
	if (!st) {
		dec__fail(d, "out of memory");
		return;
	}
	s->devs[s->ndevs].ops = ops;
	snprintf(s->devs[s->ndevs].name, sizeof(s->devs[s->ndevs].name), "%s", sec->name);
	s->devs[s->ndevs].state = st;
	s->ndevs++;
	ops->decode(d, m, sec->version, st);
}

/* Pass 2: machine and device state, with have_vcpu (s->ncpus entries) recording the vCPUs seen. */
static int read_machine(struct snap_state *s, struct snap_section *secs, unsigned int nsecs, bool *have_vcpu,
			size_t *items_left, char *err, size_t errlen)
{
	bool have[K_NFIXED] = { 0 };
	int ret;

	for (unsigned int i = 0; i < nsecs; i++) {
		struct snap_section *sec = &secs[i];
		struct dec d = { .section = sec->name, .err = err, .errlen = errlen,
				 .mem_size = s->cfg.mem_size, .items_left = items_left };
		const struct device_ops *ops = NULL;
		cbor_item_t *m;
		int k, cpu = vcpu_index(sec->name);

		for (k = 0; k < K_NFIXED && strcmp(sec->name, fixed[k].name); k++)
			;
		if (k <= K_MEMORY)
			continue;
		if (k == K_NFIXED && cpu < 0) {
			ops = device__find(sec->name);
			if (!ops || !ops->decode) {
				if (!(sec->flags & SNAP_FLAG_REQUIRED))
					continue;	/* optional and unknown: skip */
				return util__fail(-EINVAL, err, errlen,
						  "unknown required section '%s': this khyve cannot restore it",
						  sec->name);
			}
		}
		if (cpu >= 0 && (unsigned int)cpu >= s->ncpus)
			return util__fail(-EINVAL, err, errlen, "section '%s' names a vCPU beyond the %u configured",
					  sec->name, s->ncpus);
		ret = newer(sec, cpu >= 0 ? VCPU_STATE_VERSION : ops ? ops->state_version : fixed[k].version,
			    err, errlen);
		if (ret)
			return ret;
		m = dec__load(&d, sec->payload, sec->len);
		if (cpu >= 0) {
			vmstate__decode_vcpu(&d, m, &s->vcpus[cpu]);
			have_vcpu[cpu] = true;
		} else if (k == K_IRQCHIP) {
			vmstate__decode_irqchip(&d, m, &s->vmk);
		} else if (k == K_PIT) {
			vmstate__decode_pit(&d, m, &s->vmk);
		} else if (k == K_CLOCK) {
			vmstate__decode_clock(&d, m, &s->vmk);
		} else {
			decode_device(s, &d, m, sec, ops);
		}
		if (m)
			cbor_decref(&m);
		if (d.ret)
			return d.ret;
		if (k < K_NFIXED)
			have[k] = true;
	}
	for (int k = K_IRQCHIP; k < K_NFIXED; k++)
		if (!have[k])
			return util__fail(-EINVAL, err, errlen, "required section '%s' is missing", fixed[k].name);
	for (unsigned int i = 0; i < s->ncpus; i++)
		if (!have_vcpu[i])
			return util__fail(-EINVAL, err, errlen, "required section 'vcpu.%u' is missing", i);
	return 0;
}

int snapsec__read_state(const uint8_t *p, size_t len, struct snap_state *s, char *err, size_t errlen)
{
	struct snap_section *secs = NULL;
	bool *have_vcpu = NULL;
	unsigned int nsecs = 0;
	size_t items_left = SNAP_STATE_ITEMS;
	uint32_t fmt;
	int ret;

	memset(s, 0, sizeof(*s));
	ret = snapfmt__parse(p, len, &fmt, s->uuid, &secs, &nsecs, false, err, errlen);
	if (ret)
		return ret;
	ret = read_base(s, secs, nsecs, &items_left, err, errlen);
	if (ret)
		goto out;
	s->ncpus = s->cfg.ncpus;
	s->vcpus = calloc(s->ncpus, sizeof(*s->vcpus));
	have_vcpu = calloc(s->ncpus, sizeof(bool));
	if (!s->vcpus || !have_vcpu) {
		ret = util__fail(-ENOMEM, err, errlen, "out of memory");
		goto out;
	}
	ret = read_machine(s, secs, nsecs, have_vcpu, &items_left, err, errlen);
	if (!ret)
		ret = check_device_sections(s, err, errlen);
out:
	free(have_vcpu);
	free(secs);
	if (ret)
		snap_state__free(s);
	return ret;
}

int snapsec__check_memfile(int fd, const struct snap_memory *m, char *err, size_t errlen)
{
	uint8_t t[64];
	char want[37], got[37];
	struct stat st;
	uint64_t v;
	uint32_t v32;

	if (fstat(fd, &st) < 0)
		return util__fail(-errno, err, errlen, "memory file: %s", strerror(errno));
	if (!S_ISREG(st.st_mode))
		return util__fail(-EINVAL, err, errlen, "memory file is not a regular file");
	if ((uint64_t)st.st_size != m->file_size)
		return util__fail(-EINVAL, err, errlen,
			     "memory file is %llu bytes, the state file expects %llu (truncated or replaced?)",
			     (unsigned long long)st.st_size, (unsigned long long)m->file_size);
	if (pread(fd, t, sizeof(t), (off_t)m->mem_size) != (ssize_t)sizeof(t))
		return util__fail(-EIO, err, errlen, "memory file: cannot read its trailer");
	if (memcmp(t, MEMFILE_MAGIC, 8))
		return util__fail(-EINVAL, err, errlen, "memory file has no khyve trailer (wrong magic)");
	memcpy(&v, t + 40, 8);
	if (v != snapfmt__hash(t, 40))
		return util__fail(-EINVAL, err, errlen, "memory file trailer is corrupt (checksum mismatch)");
	memcpy(&v32, t + 8, 4);
	if (v32 != 1)
		return util__fail(v32 > 1 ? -EPROTO : -EINVAL, err, errlen,
			     "memory file trailer version %u %s", v32, v32 > 1 ? "is newer than this khyve reads" : "is invalid");
	memcpy(&v32, t + 12, 4);
	if (v32 != MEMFILE_TRAILER)
		return util__fail(-EINVAL, err, errlen, "memory file trailer size %u, expected %d", v32, MEMFILE_TRAILER);
	memcpy(&v, t + 32, 8);
	if (memcmp(t + 16, m->uuid, 16)) {
		snapfmt__uuid_str(m->uuid, want);
		snapfmt__uuid_str(t + 16, got);
		return util__fail(-EINVAL, err, errlen,
			     "memory file belongs to another snapshot (UUID %s, the state file expects %s)",
			     got, want);
	}
	/* the right file, but its trailer disagrees: say so, not "another snapshot" */
	if (v != m->mem_size)
		return util__fail(-EINVAL, err, errlen,
			     "memory file size mismatch: its trailer records %llu bytes of guest RAM, "
			     "the state file %llu", (unsigned long long)v, (unsigned long long)m->mem_size);
	return 0;
}

static const char *file_kind(mode_t m)
{
	if (S_ISDIR(m))
		return "a directory";
	if (S_ISFIFO(m))
		return "a FIFO";
	if (S_ISCHR(m))
		return "a character device";
	if (S_ISBLK(m))
		return "a block device";
	if (S_ISSOCK(m))
		return "a socket";
	return "of an unknown type";
}

/*
 * stat() first, so that a device is refused without being opened (an open
 * can have effects: a tape rewinds, a watchdog arms); then open with
 * O_NONBLOCK, as a FIFO with no writer would block open() forever (khyve
 * has SIGINT and SIGTERM blocked), and fstat() what was opened, in case
 * the name was replaced in between.
 */
int snapsec__open_file(const char *path, int *fdp, char *why, size_t whylen)
{
	struct stat st;
	int fd, flags;

	*fdp = -1;
	if (stat(path, &st) < 0)
		return util__fail(-errno, why, whylen, "%s", strerror(errno));
	if (!S_ISREG(st.st_mode))
		goto not_regular;
	fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return util__fail(-errno, why, whylen, "%s", strerror(errno));
	if (fstat(fd, &st) < 0) {
		int e = errno;

		close(fd);
		return util__fail(-e, why, whylen, "%s", strerror(e));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		goto not_regular;
	}
	/* reads of a regular file do not block anyway; leave no surprise */
	flags = fcntl(fd, F_GETFL);
	if (flags >= 0)
		fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
	*fdp = fd;
	return 0;
not_regular:
	return util__fail(S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL, why, whylen, "it is %s, not a regular file",
			  file_kind(st.st_mode));
}

int snapsec__read_state_file(const char *path, void **buf, size_t *len, char *why, size_t whylen)
{
	uint8_t *p = NULL, hdr[SNAP_HEADER_SIZE];
	size_t got = 0, hlen;
	struct stat st;
	uint32_t fmt;
	ssize_t r;
	int fd, ret;

	*buf = NULL;
	*len = 0;
	ret = snapsec__open_file(path, &fd, why, whylen);
	if (ret)
		return ret;
	if (fstat(fd, &st) < 0) {
		ret = util__fail(-errno, why, whylen, "%s", strerror(errno));
		goto out;
	}
	/*
	 * The header first: a file that is not a state file (or of a newer
	 * format) is refused by what it is, without reading it whole.
	 */
	hlen = (size_t)st.st_size < SNAP_HEADER_SIZE ? (size_t)st.st_size : SNAP_HEADER_SIZE;
	r = pread(fd, hdr, hlen, 0);
	if (r < 0) {
		ret = util__fail(-errno, why, whylen, "%s", strerror(errno));
		goto out;
	}
	ret = snapfmt__check_header(hdr, (size_t)r, &fmt, why, whylen);
	if (ret)
		goto out;
	if ((uint64_t)st.st_size > SNAP_STATE_MAX) {
		ret = util__fail(-EFBIG, why, whylen, "%llu bytes, larger than any khyve state file (at most %u MiB)",
				 (unsigned long long)st.st_size, SNAP_STATE_MAX >> 20);
		goto out;
	}
	p = malloc((size_t)st.st_size);
	if (!p) {
		ret = util__fail(-ENOMEM, why, whylen, "out of memory");
		goto out;
	}
	while (got < (size_t)st.st_size) {
		r = pread(fd, p + got, (size_t)st.st_size - got, (off_t)got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = util__fail(-errno, why, whylen, "%s", strerror(errno));
			goto out;
		}
		if (r == 0)
			break;	/* shrank meanwhile: the parser finds it truncated */
		got += (size_t)r;
	}
	*buf = p;
	*len = got;
	p = NULL;
	ret = 0;
out:
	free(p);
	close(fd);
	return ret;
}
