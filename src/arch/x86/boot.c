#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "khyve/boot.h"
#include "khyve/linux.h"
#include "khyve/multiboot.h"
#include "khyve/util.h"

static int read_input(const char *what, const char *path, uint64_t max, void **buf, size_t *len,
		      char *err, size_t errlen)
{
	int ret = util__read_file(path, buf, len, max);

	if (ret == -EFBIG)
		snprintf(err, errlen, "%s '%s' does not fit in guest memory (%llu MiB)", what, path,
			 (unsigned long long)(max >> 20));
	else if (ret)
		snprintf(err, errlen, "cannot read %s '%s': %s", what, path, strerror(-ret));
	return ret;
}

/* -i is the initrd of a Linux kernel; its "ARGS" part has no meaning there. */
static int load_linux(struct vm *vm, const void *image, size_t len, char *err, size_t errlen)
{
	struct vm_config *cfg = vm->cfg;
	struct linux_boot lb;
	void *initrd = NULL;
	size_t initrd_len = 0;
	char msg[256];
	int ret;

	if (cfg->nmodules > 1)
		return util__fail(-EINVAL, err, errlen,
				  "kernel '%s' is a Linux bzImage: it takes one -i (its initrd), not %u",
				  cfg->kernel, cfg->nmodules);
	if (cfg->nmodules && strcmp(cfg->modules[0].path, cfg->modules[0].string))
		return util__fail(-EINVAL, err, errlen,
				  "initrd '%s': a Linux initrd takes no arguments (they go in -A)",
				  cfg->modules[0].string);
	if (cfg->nmodules) {
		ret = read_input("initrd", cfg->modules[0].path, cfg->mem_size, &initrd, &initrd_len,
				 err, errlen);
		if (ret)
			return ret;
	}
	ret = linux__load(&vm->mem, image, len, cfg->cmdline ? cfg->cmdline : "", initrd, initrd_len,
			  &lb, msg, sizeof(msg));
	free(initrd);
	if (ret)
		return util__fail(ret, err, errlen, "kernel '%s': %s", cfg->kernel, msg);
	vm->boot_entry = lb.entry;
	vm->boot_info = lb.zero_page;
	vm->boot_linux = true;
	return 0;
}

/*
 * Before /dev/kvm is opened: a bad kernel or module is reported whether or
 * not this host has KVM, and costs nothing but the guest-RAM mapping.
 */
int boot__load(struct vm *vm, char *err, size_t errlen)
{
	struct vm_config *cfg = vm->cfg;
	struct mb_module mods[CONFIG_MAX_MODULES];
	void *bufs[CONFIG_MAX_MODULES] = { 0 };
	void *image = NULL;
	size_t len, clen;
	char *cmdline = NULL, msg[256];
	struct mb_boot mb;
	int ret;

	memmap__layout(&vm->mem, cfg->mem_size);
	ret = memmap__alloc(&vm->mem);
	if (ret) {
		snprintf(err, errlen, "cannot allocate %llu MiB of guest memory: %s",
			 (unsigned long long)(cfg->mem_size >> 20), strerror(-ret));
		goto out;
	}
	ret = read_input("kernel", cfg->kernel, cfg->mem_size, &image, &len, err, errlen);
	if (ret)
		goto out;
	if (linux__is_bzimage(image, len)) {
		ret = load_linux(vm, image, len, err, errlen);
		goto out;
	}
	for (unsigned int i = 0; i < cfg->nmodules; i++) {
		ret = read_input("module", cfg->modules[i].path, cfg->mem_size, &bufs[i], &mods[i].len,
				 err, errlen);
		if (ret)
			goto out;
		mods[i].data = bufs[i];
		mods[i].string = cfg->modules[i].string;
	}
	/* As GRUB and QEMU do, the kernel's own path is the first word. */
	clen = strlen(cfg->kernel) + 2 + (cfg->cmdline ? strlen(cfg->cmdline) : 0);
	cmdline = malloc(clen);
	if (!cmdline) {
		ret = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	snprintf(cmdline, clen, "%s%s%s", cfg->kernel, cfg->cmdline ? " " : "",
		 cfg->cmdline ? cfg->cmdline : "");
	ret = multiboot__load(&vm->mem, image, len, cmdline, mods, cfg->nmodules, &mb, msg, sizeof(msg));
	if (ret) {
		snprintf(err, errlen, "kernel '%s': %s", cfg->kernel, msg);
		goto out;
	}
	vm->boot_entry = mb.entry;
	vm->boot_info = mb.info;
out:
	free(cmdline);
	free(image);
	for (unsigned int i = 0; i < cfg->nmodules; i++)
		free(bufs[i]);
	return ret;
}

int boot__setup_bsp(struct vm *vm, char *err, size_t errlen)
{
	int ret = vm->boot_linux ?
		vcpu__setup_linux64(&vm->vcpus[0], vm->boot_entry, vm->boot_info) :
		vcpu__setup_multiboot(&vm->vcpus[0], (uint32_t)vm->boot_entry, (uint32_t)vm->boot_info);

	if (ret)
		snprintf(err, errlen, "cannot set the boot processor's registers: %s", strerror(-ret));
	return ret;
}
