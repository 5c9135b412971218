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
#include <sys/ioctl.h>
#include <sys/random.h>
#include <unistd.h>

#include "khyve/acpi.h"
#include "khyve/cpuid.h"
#include "khyve/device.h"
#include "khyve/irqchip.h"
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

/*
 * The feature leaves a guest decides code paths on: every bit the guest was
 * shown must be one a new vCPU gets here, or the guest would run an
 * instruction this CPU lacks (AVX-512 on a host without it, say).  The
 * reference is what KVM reports for a freshly created vCPU given the
 * supported table, not KVM_GET_SUPPORTED_CPUID itself: under PVM the two
 * differ, and the former is what a new guest here would see.
 */
static int check_features(struct vm *vm, const struct vcpu_state *v, const char *file,
			  char *err, size_t errlen)
{
	struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[VCPU_MAX_CPUID];
	} fresh;
	static const struct { uint32_t fn, idx; } leaves[] = {
		{ 1, 0 }, { 7, 0 }, { 7, 1 }, { 0xd, 0 }, { 0xd, 1 }, { 0x80000001, 0 },
	};
	static const char *const regs[] = { "EAX", "EBX", "ECX", "EDX" };
	struct kvm_cpuid2 *host = &fresh.hdr;
	int ret = 0;

	memset(&fresh, 0, sizeof(fresh));
	fresh.hdr.nent = VCPU_MAX_CPUID;
	if (ioctl(vm->vcpus[0].fd, KVM_GET_CPUID2, &fresh) < 0)
		return util__fail(-EINVAL, err, errlen, "KVM_GET_CPUID2: %s", strerror(errno));
	for (unsigned int i = 0; i < ARRAY_SIZE(leaves) && !ret; i++) {
		const struct kvm_cpuid_entry2 *s = NULL;
		struct kvm_cpuid_entry2 *h = cpuid__find(host, leaves[i].fn, leaves[i].idx);
		uint32_t want[4], have[4];

		for (unsigned int j = 0; j < v->ncpuid; j++)
			if (v->cpuid[j].function == leaves[i].fn &&
			    (!(v->cpuid[j].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || v->cpuid[j].index == leaves[i].idx))
				s = &v->cpuid[j];
		if (!s)
			continue;
		/* leaf 1 EBX and leaf 0xD EBX/ECX are IDs and sizes, not features */
		want[0] = leaves[i].fn == 0xd ? s->eax : (leaves[i].fn == 7 ? s->eax : 0);
		want[1] = leaves[i].fn == 7 ? s->ebx : 0;
		want[2] = leaves[i].fn == 0xd ? 0 : s->ecx;
		/* OSXSAVE and OSPKE mirror the guest's CR4, not what the CPU has */
		if (leaves[i].fn == 1)
			want[2] &= ~(1u << 27);
		if (leaves[i].fn == 7 && leaves[i].idx == 0)
			want[2] &= ~(1u << 4);
		want[3] = leaves[i].fn == 0xd ? 0 : s->edx;
		if (leaves[i].fn == 7 && leaves[i].idx == 0)
			want[0] = 0;	/* max subleaf */
		have[0] = h ? h->eax : 0; have[1] = h ? h->ebx : 0;
		have[2] = h ? h->ecx : 0; have[3] = h ? h->edx : 0;
		if (leaves[i].fn == 1)
			have[2] |= 1u << 31;	/* hypervisor bit: khyve sets it */
		for (unsigned int r = 0; r < 4; r++) {
			if (want[r] & ~have[r]) {
				ret = util__fail(-EINVAL, err, errlen,
					   "snapshot '%s' needs CPU features this host lacks: CPUID leaf 0x%x.%u %s bits 0x%x",
					   file, leaves[i].fn, leaves[i].idx, regs[r], want[r] & ~have[r]);
				break;
			}
		}
	}
	return ret;
}

static int check_host(struct vm *vm, const struct snap_state *st, const char *file, char *err, size_t errlen)
{
	struct snap_meta host;
	uint32_t xsave = vmstate__xsave_size(vm->kvm_fd);

	snapsec__host_meta(&host);
	if (strcmp(host.vendor, st->meta.vendor))
		return util__fail(-EINVAL, err, errlen, "snapshot '%s' was taken on a %s CPU; this host's is %s",
			    file, st->meta.vendor, host.vendor);
	if (st->ncpus > vm->max_vcpus)
		return util__fail(-EINVAL, err, errlen, "snapshot '%s' has %u vCPUs; KVM here allows at most %u",
			    file, st->ncpus, vm->max_vcpus);
	for (unsigned int i = 0; i < st->ncpus; i++)
		if (st->vcpus[i].xsave_len > xsave)
			return util__fail(-EINVAL, err, errlen,
				    "snapshot '%s' section 'vcpu.%u': XSAVE area of %u bytes, this host's is %u",
				    file, i, st->vcpus[i].xsave_len, xsave);
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

/*
 * Every restore is a new generation of the VM (it may be one of several
 * clones): a new VM generation ID, and its event, once the interrupt
 * controllers hold their saved state (acpi.h).
 */
static int renew_genid(struct vm *vm, char *err, size_t errlen)
{
	uint8_t id[16];
	int ret;

	if (getrandom(id, sizeof(id), 0) != sizeof(id))
		return util__fail(-EIO, err, errlen, "getrandom: %s", strerror(errno));
	if (!acpi__genid_renew(&vm->mem, id))
		return 0;
	ret = irqchip__set_line(vm->vm_fd, ACPI_GED_GSI, 1) ?: irqchip__set_line(vm->vm_fd, ACPI_GED_GSI, 0);
	if (ret)
		return util__fail(ret, err, errlen, "cannot signal the new VM generation ID: %s", strerror(-ret));
	return 0;
}

int snapshot__restore(struct vm *vm, struct snapshot_restore *r, char *err, size_t errlen)
{
	struct snap_state *st = &r->st;
	const char *file = vm->cfg->restore, *path = r->path;
	bool used[SNAP_MAX_DEVICES] = { false };
	char why[400];
	int ret;

	/* phase one, the part that needs KVM: this host can run the snapshot */
	ret = check_host(vm, st, file, err, errlen);
	if (ret)
		goto out;

	/* phase two: build the VM in the saved state, devices last */
	ret = vm__create_machine(vm, r->mem_fd, err, errlen);
	r->mem_fd = -1;	/* the VM owns it now */
	if (ret)
		goto out;
	/* before any device opens a backend (a disk, a tap, a COM1 file) */
	ret = check_features(vm, &st->vcpus[0], file, err, errlen) ?: device__init_all(vm, err, errlen);
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
	ret = renew_genid(vm, err, errlen);
	if (ret)
		goto out;
	device__resume_all(vm);
	pr_debug("restored '%s': %u vCPUs, %llu MiB", file, vm->ncpus,
		 (unsigned long long)(vm->mem.size >> 20));
out:
	return ret;
}
