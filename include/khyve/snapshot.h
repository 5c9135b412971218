/*
 * Saving and restoring a whole VM.  A snapshot named FILE is two files:
 * FILE (guest memory, raw and sparse, mappable) and FILE.state (everything
 * else, self-describing).  docs/snapshot-format.md is the specification.
 */
#ifndef KHYVE_SNAPSHOT_H
#define KHYVE_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct vm;

/* Called now and then while guest memory is written. */
typedef void (*snapshot_progress_fn)(void *arg, uint64_t done, uint64_t total);

struct snapshot_save_opts {
	int dirfd;		/* relative paths are relative to it (AT_FDCWD ok) */
	const char *path;	/* FILE; the state goes to FILE.state */
	snapshot_progress_fn progress;
	void *progress_arg;
	/* keep the VM paused from the save's start until khyve exits (a
	 * suspend: a guest that ran on would change its disks); the memory
	 * writer still runs apart, so the main thread is free meanwhile */
	bool stay_paused;
	/* copy every disk next to the snapshot (FILE.<section>.disk), and
	 * record the copies in the snapshot, which restore then uses */
	bool disks;
};

struct snapshot_save_result {
	uint64_t mem_bytes;		/* guest RAM size */
	uint64_t data_bytes;		/* non-zero bytes written to FILE */
	uint64_t state_bytes;		/* size of FILE.state */
	uint64_t pause_ns;		/* how long the vCPUs were stopped */
	unsigned int ndisks;		/* disks copied (opts.disks) */
	uint64_t total_ns;
	char uuid[37];
};

/*
 * Save the running (or paused) VM, in two steps so that the main thread
 * never waits for guest memory to be written.  snapshot__save_start (main
 * thread): pause the VM unless it was paused before, collect its state,
 * fork the process that writes memory, resume (unless opts->stay_paused).
 * Then snapshot__save_poll now and then: -EINPROGRESS while the writer
 * runs; once it ended, the state is written and both files are committed,
 * and it returns 0 or the failure.  With cancel, the writer is killed and
 * the save fails at once (-ECANCELED).  On failure nothing is left at
 * FILE/FILE.state that was not there before, a VM the save paused runs
 * again, and err holds one line.  snapshot__save_free after the end (or to
 * cancel).  0 or -errno (err set) from snapshot__save_start.
 */
struct snapshot_save;

int snapshot__save_start(struct vm *vm, const struct snapshot_save_opts *opts,
			 struct snapshot_save **s, char *err, size_t errlen);
int snapshot__save_poll(struct snapshot_save *s, bool cancel, struct snapshot_save_result *res,
			char *err, size_t errlen);
/* Bytes of guest memory gone through, of total. */
void snapshot__save_progress(const struct snapshot_save *s, uint64_t *done, uint64_t *total);
void snapshot__save_free(struct snapshot_save *s);

/*
 * Restoring is two calls.  snapshot__restore_open: read and validate the
 * snapshot cfg->restore - state, memory file, options - without KVM, and
 * replace *cfg with the snapshot's configuration (with the overrides the
 * command line may make).  snapshot__restore: check that this host can
 * run it, then create vm (opened with vm__open_kvm, not yet created) in
 * the saved state; vCPUs are not started.  On failure nothing ran; err
 * names the file, section and field.  snapshot__restore_free after both.
 */
struct snapshot_restore;
struct vm_config;
int snapshot__restore_open(struct vm_config *cfg, struct snapshot_restore **r, char *err, size_t errlen);
int snapshot__restore(struct vm *vm, struct snapshot_restore *r, char *err, size_t errlen);
void snapshot__restore_free(struct snapshot_restore *r);

/*
 * khyvectl --inspect: describe FILE.state (and FILE) without a VM; text or
 * JSON on out.  Returns 0, or -errno with err set (the snapshot is invalid:
 * the description printed so far says how far it got).
 */
int snapshot__inspect(const char *path, bool json, FILE *out, char *err, size_t errlen);

#endif
