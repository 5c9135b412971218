/*
 * Restoring a VM from FILE.state + FILE, in two phases: first read and
 * validate everything (state sections, memory file, host compatibility,
 * command-line options), then build the VM.  Nothing runs until both
 * phases succeeded; the caller starts the vCPUs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "khyve/arch.h"
#include "khyve/device.h"
#include "khyve/log.h"
#include "khyve/snapsec.h"
#include "khyve/snapshot.h"
#include "khyve/util.h"
#include "khyve/vm.h"

static bool streq(const char *a, const char *b)
{
	return !strcmp(a ? a : "", b ? b : "");
}

/* "2:virtio-blk 3:virtio-net", for a message */
static void slots__describe(const struct vm_config *c, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (unsigned int i = 0; i < c->nslots && off < len; i++) {
		int n = snprintf(buf + off, len - off, "%s%u%s%.0u:%s", i ? " " : "", c->slots[i].slot,
				 c->slots[i].func ? "." : "", c->slots[i].func,
				 c->slots[i].device ? c->slots[i].device : "?");

		if (n < 0)
			break;
		off += (size_t)n;
	}
	if (!c->nslots)
		snprintf(buf, len, "none");
}

/*
 * Options given with -r must match the snapshot, except the COM1 backend
 * and the VM name, which may be chosen anew (clones need their own name
 * and console), and the OPTIONS of -s (same slots and devices), which name
 * backends that may have moved.  On success the snapshot's configuration replaces *cmd.
 */
static int merge_config(struct vm_config *cmd, struct vm_config *snap, char *err, size_t errlen)
{
	const char *r = cmd->restore;

	if ((cmd->given & GIVEN_CPUS) && cmd->ncpus != snap->ncpus)
		return util__fail(-EINVAL, err, errlen, "snapshot '%s': -c %u differs from the snapshot's %u vCPUs",
			    r, cmd->ncpus, snap->ncpus);
	if ((cmd->given & GIVEN_MEMORY) && cmd->mem_size != snap->mem_size)
		return util__fail(-EINVAL, err, errlen, "snapshot '%s': -m differs from the snapshot's %llu MiB",
			    r, (unsigned long long)(snap->mem_size >> 20));
	if ((cmd->given & GIVEN_KERNEL) && !streq(cmd->kernel, snap->kernel))
		return util__fail(-EINVAL, err, errlen, "snapshot '%s': -k '%s' differs from the snapshot's kernel '%s'",
			    r, cmd->kernel, snap->kernel ? snap->kernel : "");
	if ((cmd->given & GIVEN_CMDLINE) && !streq(cmd->cmdline, snap->cmdline))
		return util__fail(-EINVAL, err, errlen, "snapshot '%s': -A differs from the snapshot's command line", r);
	if (cmd->given & GIVEN_MODULE) {
		bool same = cmd->nmodules == snap->nmodules;

		for (unsigned int i = 0; same && i < cmd->nmodules; i++)
			same = streq(cmd->modules[i].string, snap->modules[i].string);
		if (!same)
			return util__fail(-EINVAL, err, errlen, "snapshot '%s': -i differs from the snapshot's modules", r);
	}
	if (cmd->given & GIVEN_SLOTS) {
		bool same = cmd->nslots == snap->nslots;

		for (unsigned int i = 0; same && i < cmd->nslots; i++)
			same = cmd->slots[i].slot == snap->slots[i].slot &&
			       cmd->slots[i].func == snap->slots[i].func &&
			       streq(cmd->slots[i].device, snap->slots[i].device);
		if (!same) {
			char want[256], got[256];

			slots__describe(snap, want, sizeof(want));
			slots__describe(cmd, got, sizeof(got));
			return util__fail(-EINVAL, err, errlen, "snapshot '%s': -s must give the snapshot's PCI slots "
					  "and devices, in order (%s), only their options may change; it gives %s",
					  r, want, got);
		}
		/* the options name backends, which may have moved: the command line's win */
		for (unsigned int i = 0; i < cmd->nslots; i++) {
			if (streq(cmd->slots[i].opts, snap->slots[i].opts))
				continue;
			free(snap->slots[i].opts);
			snap->slots[i].opts = cmd->slots[i].opts;
			snap->slots[i].overridden = true;
			cmd->slots[i].opts = NULL;
		}
	}
	if ((cmd->given & GIVEN_DEBUG_EXIT) &&
	    (!snap->debug_exit || cmd->debug_exit_port != snap->debug_exit_port))
		return util__fail(-EINVAL, err, errlen, "snapshot '%s': --debug-exit differs from the snapshot's (%s)", r,
			    snap->debug_exit ? "another port" : "none");

	/* take the snapshot's configuration, keeping what may be overridden */
	if (cmd->name) {
		free(snap->name);
		snap->name = cmd->name;
		cmd->name = NULL;
	}
	if (cmd->given & GIVEN_COM1) {
		free(snap->com1_path);
		snap->com1 = cmd->com1;
		snap->com1_path = cmd->com1_path;
		cmd->com1_path = NULL;
	}
	snap->rundir = cmd->rundir;
	snap->restore = cmd->restore;
	snap->force_disk = cmd->force_disk;
	snap->given = cmd->given;
	cmd->rundir = cmd->restore = NULL;
	config__free(cmd);
	*cmd = *snap;
	memset(snap, 0, sizeof(*snap));
	return 0;
}

struct snapshot_restore {
	struct snap_state st;
	int mem_fd;
	char path[4200];	/* FILE.state */
};

void snapshot__restore_free(struct snapshot_restore *r)
{
	if (!r)
		return;
	if (r->mem_fd >= 0)
		close(r->mem_fd);
	snap_state__free(&r->st);
	free(r);
}

/*
 * Phase one: everything that needs no KVM, so that a bad snapshot is
 * refused before /dev/kvm is opened (also on a host without it) and
 * before any device or backend exists - the same checks as --inspect,
 * which shares snapsec__read_state and snapsec__check_memfile.
 */
int snapshot__restore_open(struct vm_config *cfg, struct snapshot_restore **out, char *err, size_t errlen)
{
	struct snapshot_restore *r = calloc(1, sizeof(*r));
	const char *file = cfg->restore;
	char why[400];
	void *buf = NULL;
	size_t len;
	int ret;

	*out = NULL;
	if (!r)
		return util__fail(-ENOMEM, err, errlen, "out of memory");
	r->mem_fd = -1;
	if (snprintf(r->path, sizeof(r->path), "%s.state", file) >= (int)sizeof(r->path)) {
		ret = util__fail(-ENAMETOOLONG, err, errlen, "snapshot path '%s' is too long", file);
		goto out;
	}
	ret = snapsec__read_state_file(r->path, &buf, &len, why, sizeof(why));
	if (ret) {
		snprintf(err, errlen, "cannot read snapshot state '%s': %s", r->path, why);
		goto out;
	}
	ret = snapsec__read_state(buf, len, &r->st, why, sizeof(why));
	if (ret) {
		snprintf(err, errlen, "snapshot '%s': %s", r->path, why);
		goto out;
	}
	ret = snapsec__open_file(file, &r->mem_fd, why, sizeof(why));
	if (ret) {
		snprintf(err, errlen, "cannot open snapshot memory file '%s': %s", file, why);
		goto out;
	}
	ret = snapsec__check_memfile(r->mem_fd, &r->st.memory, why, sizeof(why));
	if (ret) {
		snprintf(err, errlen, "snapshot '%s': %s", file, why);
		goto out;
	}
	ret = merge_config(cfg, &r->st.cfg, err, errlen);
out:
	free(buf);
	if (ret)
		snapshot__restore_free(r);
	else
		*out = r;
	return ret;
}

int snapshot__restore(struct vm *vm, struct snapshot_restore *r, char *err, size_t errlen)
{
	struct snap_state *st = &r->st;
	const char *file = vm->cfg->restore, *path = r->path;
	bool used[SNAP_MAX_DEVICES] = { false };
	char why[400];
	int ret;

	/* phase one, the part that needs KVM: this host can run the snapshot */
	ret = arch__check_restore(vm, st, file, err, errlen);
	if (ret)
		goto out;

	/* phase two: build the VM in the saved state, devices last */
	ret = vm__create_machine(vm, r->mem_fd, err, errlen);
	r->mem_fd = -1;	/* the VM owns it now */
	if (ret)
		goto out;
	/* before any device opens a backend (a disk, a tap, a COM1 file) */
	ret = arch__check_features(vm, &st->vcpus[0], file, err, errlen) ?: device__init_all(vm, err, errlen);
	if (ret)
		goto out;
	/*
	 * Devices with I/O threads stay paused until the vCPUs and interrupt
	 * controllers are restored too: an interrupt a device raised now
	 * would be wiped by restoring the LAPIC it went to.
	 */
	ret = device__pause_all(vm, err, errlen);	/* nothing in flight yet */
	if (ret)
		goto out;
	for (struct device_instance *d = vm->devices; d; d = d->next) {
		unsigned int i;

		if (!d->priv || !d->ops->restore)
			continue;
		for (i = 0; i < st->ndevs && strcmp(st->devs[i].name, d->name); i++)
			;
		if (i == st->ndevs) {
			ret = util__fail(-EINVAL, err, errlen, "snapshot '%s': section '%s' is missing", path, d->name);
			goto out;
		}
		used[i] = true;
		ret = d->ops->restore(d->priv, st->devs[i].state, why, sizeof(why));
		if (ret) {
			snprintf(err, errlen, "snapshot '%s': device %s: %s", path, d->name, why);
			goto out;
		}
	}
	/* a device section the configuration does not create would be lost */
	for (unsigned int i = 0; i < st->ndevs; i++) {
		if (!used[i]) {
			ret = util__fail(-EINVAL, err, errlen, "snapshot '%s': section '%s' names no device of its configuration",
				   path, st->devs[i].name);
			goto out;
		}
	}
	for (unsigned int i = 0; i < vm->ncpus; i++) {
		ret = vmstate__restore_vcpu(&vm->vcpus[i], &st->vcpus[i], why, sizeof(why));
		if (ret) {
			snprintf(err, errlen, "snapshot '%s': %s", path, why);
			goto out;
		}
	}
	ret = vmstate__restore_vm(vm, &st->vmk, why, sizeof(why));
	if (ret) {
		snprintf(err, errlen, "snapshot '%s': %s", path, why);
		goto out;
	}
	ret = arch__new_generation(vm, err, errlen);
	if (ret)
		goto out;
	device__resume_all(vm);
	pr_debug("restored '%s': %u vCPUs, %llu MiB", file, vm->ncpus,
		 (unsigned long long)(vm->mem.size >> 20));
out:
	return ret;
}
