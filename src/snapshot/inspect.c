/*
 * khyvectl --inspect: describe a snapshot without a VM, and say whether
 * khyve would restore it (the same phase-one checks as khyve -r, minus
 * those that depend on the host's KVM).
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "khyve/snapsec.h"
#include "khyve/snapshot.h"
#include "khyve/util.h"

struct inspect {
	const char *file;
	char state_path[4200];
	size_t state_bytes;
	uint32_t format;
	uint8_t uuid[16];
	struct snap_section *secs;
	unsigned int nsecs;
	char frame_err[400];		/* framing problem, if any */
	struct snap_state st;
	bool decoded;			/* st holds a fully validated state */
	char state_err[400];
	bool have_mem;
	struct stat mem_st;
	char mem_err[400];
};

static const char *com1_desc(const struct vm_config *c, char *buf, size_t n)
{
	if (c->com1 == CONSOLE_FILE)
		snprintf(buf, n, "file:%s", c->com1_path);
	else
		snprintf(buf, n, "%s", c->com1 == CONSOLE_NULL ? "null" : "stdio");
	return buf;
}

static void print_text(const struct inspect *in, FILE *out)
{
	char uuid[37], when[64], buf[4200];
	const struct snap_state *st = &in->st;

	fprintf(out, "snapshot %s\n", in->file);
	fprintf(out, "  state file    %s, %zu bytes, format version %u\n", in->state_path, in->state_bytes,
		in->format);
	snapfmt__uuid_str(in->uuid, uuid);
	fprintf(out, "  uuid          %s\n", uuid);
	if (in->decoded) {
		time_t t = (time_t)st->meta.created;
		struct tm tm;

		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
		fprintf(out, "  written by    khyve %s, %s\n", st->meta.khyve_version, when);
		fprintf(out, "  host CPU      %s family %u model %u stepping %u, TSC %u kHz\n", st->meta.vendor,
			st->meta.family, st->meta.model, st->meta.stepping, st->meta.tsc_khz);
		fprintf(out, "  VM            %s: %u vCPUs, %llu MiB, kernel %s\n", st->cfg.name, st->cfg.ncpus,
			(unsigned long long)(st->cfg.mem_size >> 20), st->cfg.kernel ? st->cfg.kernel : "-");
		fprintf(out, "  cmdline       %s\n", st->cfg.cmdline ? st->cfg.cmdline : "");
		for (unsigned int i = 0; i < st->cfg.nmodules; i++)
			fprintf(out, "  module        %s\n", st->cfg.modules[i].string);
		fprintf(out, "  com1          %s\n", com1_desc(&st->cfg, buf, sizeof(buf)));
		if (st->cfg.debug_exit)
			fprintf(out, "  debug-exit    port 0x%x\n", st->cfg.debug_exit_port);
		snapfmt__uuid_str(st->memory.uuid, uuid);
		fprintf(out, "  memory        %llu bytes in %u region%s, %llu bytes of data, uuid %s\n",
			(unsigned long long)st->memory.mem_size, st->memory.nregions,
			st->memory.nregions > 1 ? "s" : "", (unsigned long long)st->memory.data_bytes, uuid);
		for (unsigned int i = 0; i < st->memory.nregions; i++)
			fprintf(out, "    region %u    guest 0x%llx-0x%llx at file offset 0x%llx\n", i,
				(unsigned long long)st->memory.regions[i].gpa,
				(unsigned long long)(st->memory.regions[i].gpa + st->memory.regions[i].size),
				(unsigned long long)st->memory.regions[i].offset);
	}
	if (in->have_mem)
		fprintf(out, "  memory file   %s: %llu bytes, %llu allocated (%.1f%%)%s%s\n", in->file,
			(unsigned long long)in->mem_st.st_size,
			(unsigned long long)in->mem_st.st_blocks * 512,
			in->mem_st.st_size ? 100.0 * in->mem_st.st_blocks * 512 / in->mem_st.st_size : 0.0,
			in->mem_err[0] ? ": " : ", matches the state file", in->mem_err);
	else
		fprintf(out, "  memory file   %s: %s\n", in->file, in->mem_err);
	fprintf(out, "  sections      %-12s %7s %-9s %9s %s\n", "name", "version", "flags", "bytes", "checksum");
	for (unsigned int i = 0; i < in->nsecs; i++)
		fprintf(out, "                %-12s %7u %-9s %9llu %s\n", in->secs[i].name, in->secs[i].version,
			in->secs[i].flags & SNAP_FLAG_REQUIRED ? "required" : "optional",
			(unsigned long long)in->secs[i].len, in->secs[i].hash_ok ? "ok" : "BAD");
	if (in->frame_err[0])
		fprintf(out, "  damaged       %s\n", in->frame_err);
}

static json_t *config_json(const struct vm_config *c)
{
	json_t *mods = json_array();
	char buf[4200];

	for (unsigned int i = 0; i < c->nmodules; i++)
		json_array_append_new(mods, json_pack("{s:s, s:s}", "path", c->modules[i].path,
						      "string", c->modules[i].string));
	/* "o" steals the fresh integer; "O" would take a second reference and leak it */
	return json_pack("{s:s, s:I, s:I, s:s, s:s, s:o, s:s, s:o}", "name", c->name,
			 "vcpus", (json_int_t)c->ncpus, "memory", (json_int_t)c->mem_size,
			 "kernel", c->kernel ? c->kernel : "", "cmdline", c->cmdline ? c->cmdline : "",
			 "modules", mods, "com1", com1_desc(c, buf, sizeof(buf)),
			 "debug_exit", c->debug_exit ? json_integer(c->debug_exit_port) : json_null());
}

static void print_json(const struct inspect *in, FILE *out, const char *verdict)
{
	const struct snap_state *st = &in->st;
	json_t *root, *secs = json_array();
	char uuid[37], muuid[37];
	char *text;

	snapfmt__uuid_str(in->uuid, uuid);
	for (unsigned int i = 0; i < in->nsecs; i++)
		json_array_append_new(secs, json_pack("{s:s, s:I, s:b, s:I, s:b}", "name", in->secs[i].name,
						      "version", (json_int_t)in->secs[i].version,
						      "required", (in->secs[i].flags & SNAP_FLAG_REQUIRED) != 0,
						      "bytes", (json_int_t)in->secs[i].len,
						      "checksum_ok", in->secs[i].hash_ok));
	root = json_pack("{s:s, s:s, s:I, s:I, s:s, s:o, s:b}", "file", in->file, "state_file", in->state_path,
			 "state_bytes", (json_int_t)in->state_bytes, "format_version", (json_int_t)in->format,
			 "uuid", uuid, "sections", secs, "valid", verdict == NULL);
	if (verdict)
		json_object_set_new(root, "error", json_string(verdict));
	if (in->decoded) {
		json_t *regions = json_array();

		for (unsigned int i = 0; i < st->memory.nregions; i++)
			json_array_append_new(regions, json_pack("{s:I, s:I, s:I}",
				"gpa", (json_int_t)st->memory.regions[i].gpa,
				"size", (json_int_t)st->memory.regions[i].size,
				"offset", (json_int_t)st->memory.regions[i].offset));
		snapfmt__uuid_str(st->memory.uuid, muuid);
		json_object_set_new(root, "meta", json_pack("{s:s, s:I, s:s, s:I, s:I, s:I, s:I}",
			"khyve_version", st->meta.khyve_version, "created", (json_int_t)st->meta.created,
			"cpu_vendor", st->meta.vendor, "cpu_family", (json_int_t)st->meta.family,
			"cpu_model", (json_int_t)st->meta.model, "cpu_stepping", (json_int_t)st->meta.stepping,
			"tsc_khz", (json_int_t)st->meta.tsc_khz));
		json_object_set_new(root, "config", config_json(&st->cfg));
		json_object_set_new(root, "memory", json_pack("{s:I, s:I, s:I, s:s, s:o}",
			"size", (json_int_t)st->memory.mem_size, "file_size", (json_int_t)st->memory.file_size,
			"data_bytes", (json_int_t)st->memory.data_bytes, "uuid", muuid, "regions", regions));
	}
	if (in->have_mem)
		json_object_set_new(root, "memory_file", json_pack("{s:s, s:I, s:I, s:b}", "path", in->file,
			"size", (json_int_t)in->mem_st.st_size,
			"allocated", (json_int_t)in->mem_st.st_blocks * 512, "matches", !in->mem_err[0]));
	text = json_dumps(root, JSON_INDENT(2));
	if (text)
		fprintf(out, "%s\n", text);
	free(text);
	json_decref(root);
}

int snapshot__inspect(const char *path, bool json, FILE *out, char *err, size_t errlen)
{
	struct inspect in;
	void *buf = NULL;
	size_t len = 0;
	const char *verdict = NULL;
	char why[300];
	int fd, ret;

	memset(&in, 0, sizeof(in));
	in.file = path;
	snprintf(in.state_path, sizeof(in.state_path), "%s.state", path);
	ret = snapsec__read_state_file(in.state_path, &buf, &len, why, sizeof(why));
	if (ret) {
		snprintf(err, errlen, "cannot read '%s': %s", in.state_path, why);
		return ret;
	}
	in.state_bytes = len;
	/* the frames as far as they go, damaged checksums included */
	ret = snapfmt__parse(buf, len, &in.format, in.uuid, &in.secs, &in.nsecs, true,
			     in.frame_err, sizeof(in.frame_err));
	if (!ret)
		in.frame_err[0] = '\0';
	else if (!in.nsecs && ret != -EINVAL && ret != -EPROTO)
		goto out;
	/* then the strict reading khyve -r does */
	ret = snapsec__read_state(buf, len, &in.st, in.state_err, sizeof(in.state_err));
	in.decoded = ret == 0;
	if (ret)
		verdict = in.state_err;

	if (snapsec__open_file(path, &fd, why, sizeof(why))) {
		snprintf(in.mem_err, sizeof(in.mem_err), "cannot open memory file '%s': %s", path, why);
	} else {
		in.have_mem = fstat(fd, &in.mem_st) == 0;
		if (in.decoded)
			snapsec__check_memfile(fd, &in.st.memory, in.mem_err, sizeof(in.mem_err));
		close(fd);
	}
	if (!verdict && in.mem_err[0])
		verdict = in.mem_err;

	if (json)
		print_json(&in, out, verdict);
	else
		print_text(&in, out);
	ret = 0;
	if (verdict) {
		snprintf(err, errlen, "snapshot '%s' would not restore: %s", path, verdict);
		ret = -EINVAL;
	} else if (!json) {
		fprintf(out, "  verdict       restorable\n");
	}
out:
	if (ret && !verdict)
		snprintf(err, errlen, "'%s': %s", in.state_path, in.frame_err);
	if (in.decoded)
		snap_state__free(&in.st);
	free(in.secs);
	free(buf);
	return ret;
}
