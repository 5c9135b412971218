/*
 * The snapshot's sections and their versions (docs/snapshot-format.md),
 * shared by save, restore and inspect.
 */
#ifndef KHYVE_SNAPSEC_H
#define KHYVE_SNAPSEC_H

#include <stdbool.h>
#include <stdint.h>

#include "khyve/config.h"
#include "khyve/device.h"
#include "khyve/memmap.h"
#include "khyve/snapfmt.h"
#include "khyve/vmstate.h"

#define KHYVE_VERSION		"0.2"
#define META_VERSION		1
#define CONFIG_VERSION		2	/* 2: PCI slots (-s) */
#define MEMORY_VERSION		1
#define SNAP_MAX_DEVICES	64

struct snap_meta {
	char khyve_version[32];
	uint64_t created;		/* seconds since the epoch */
	char vendor[13];		/* CPUID leaf 0 */
	uint32_t family, model, stepping;
	uint32_t tsc_khz;
};

struct snap_memory {
	uint64_t mem_size;
	uint64_t file_size;		/* mem_size + MEMFILE_TRAILER */
	uint64_t data_bytes;		/* non-zero bytes written */
	uint8_t uuid[16];		/* the memory file's trailer carries it too */
	unsigned int nregions;
	struct mem_region regions[MEM_MAX_REGIONS];
};

/* Everything a snapshot holds but guest memory, as plain structs. */
struct snap_state {
	uint8_t uuid[16];
	struct snap_meta meta;
	struct vm_config cfg;		/* strings owned: snap_state__free */
	struct snap_memory memory;
	struct vmkvm_state vmk;
	unsigned int ncpus;
	struct vcpu_state *vcpus;	/* ncpus of them */
	unsigned int ndevs;
	struct {
		const struct device_ops *ops;
		char name[DEVICE_NAME_MAX + 1];	/* the instance: its section */
		void *state;
	} devs[SNAP_MAX_DEVICES];
};

void snap_state__free(struct snap_state *s);

void snapsec__host_meta(struct snap_meta *m);

void snapsec__encode_meta(struct sbuf *b, const struct snap_meta *m);
void snapsec__decode_meta(struct dec *d, const cbor_item_t *map, struct snap_meta *m);
void snapsec__encode_config(struct sbuf *b, const struct vm_config *c);
/* the current version */
void snapsec__decode_config(struct dec *d, const cbor_item_t *map, struct vm_config *c);
/* any version up to CONFIG_VERSION, upgraded (config_v1_to_v2) */
void snapsec__decode_config_version(struct dec *d, const cbor_item_t *map, uint32_t version,
				    struct vm_config *c);
void snapsec__encode_memory(struct sbuf *b, const struct snap_memory *m);
void snapsec__decode_memory(struct dec *d, const cbor_item_t *map, struct snap_memory *m);

/* Serialise a captured state into a complete state file image. */
int snapsec__write_state(struct sbuf *out, const struct snap_state *s);

/*
 * Parse and validate a whole state file into s (phase one of a restore:
 * nothing is touched but memory).  Every section known, of a version we
 * read, checksummed, decoded and range-checked; every required section
 * present.  -errno with err naming file, section and field.
 */
int snapsec__read_state(const uint8_t *p, size_t len, struct snap_state *s, char *err, size_t errlen);

/* Read and check a memory file's trailer against the state. */
int snapsec__check_memfile(int fd, const struct snap_memory *m, char *err, size_t errlen);

/*
 * Open a snapshot file (FILE or FILE.state) for reading, refusing anything
 * but a regular file without blocking: why gets "it is a FIFO, not a
 * regular file" or strerror.  Returns 0 with *fdp set, or -errno.
 */
int snapsec__open_file(const char *path, int *fdp, char *why, size_t whylen);
/* Read a whole state file, opened as above; why as above. */
int snapsec__read_state_file(const char *path, void **buf, size_t *len, char *why, size_t whylen);

#endif
