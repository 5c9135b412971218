#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "khyve/arch.h"
#include "khyve/device.h"
#include "khyve/log.h"
#include "khyve/util.h"
#include "khyve/vm.h"

int vm__open_kvm(struct vm *vm, char *err, size_t errlen)
{
	static const struct { int cap; const char *name; } needed[] = {
		{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
		{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
		{ KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING" },
	};
	int r;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0)
		return util__fail(-errno, err, errlen, "cannot open /dev/kvm: %s%s", strerror(errno),
			    errno == ENOENT ? " (is the kvm module loaded?)" :
			    errno == EACCES ? " (are you in the kvm group?)" : "");
	r = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (r != KVM_API_VERSION)
		return util__fail(-EINVAL, err, errlen, "/dev/kvm has API version %d, khyve needs %d",
			    r, KVM_API_VERSION);
	for (unsigned int i = 0; i < sizeof(needed) / sizeof(needed[0]); i++)
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, needed[i].cap) <= 0)
			return util__fail(-ENOTSUP, err, errlen, "KVM lacks %s", needed[i].name);
	r = arch__check_kvm(vm->kvm_fd, err, errlen);
	if (r)
		return r;
	r = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (r <= 0)
		r = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	vm->max_vcpus = r > 0 ? (unsigned int)r : 4;
	/* the MP table has 8-bit APIC IDs and we keep one for the IOAPIC */
	if (vm->max_vcpus > 254)
		vm->max_vcpus = 254;
	r = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (r <= 0)
		return util__fail(-EINVAL, err, errlen, "KVM_GET_VCPU_MMAP_SIZE failed: %s", strerror(errno));
	vm->run_size = (size_t)r;
	return 0;
}

static int vm__set_memory(struct vm *vm)
{
	for (unsigned int i = 0; i < vm->mem.nregions; i++) {
		const struct mem_region *rg = &vm->mem.regions[i];
		struct kvm_userspace_memory_region m = {
			.slot = i,
			.guest_phys_addr = rg->gpa,
			.memory_size = rg->size,
			.userspace_addr = (uint64_t)(uintptr_t)(vm->mem.base + rg->offset),
		};

		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &m) < 0)
			return -errno;
	}
	return 0;
}

int vm__create(struct vm *vm, int mem_fd, char *err, size_t errlen)
{
	return vm__create_machine(vm, mem_fd, err, errlen) ?: device__init_all(vm, err, errlen);
}

/*
 * vCPUs before devices: a restore checks the snapshot's CPU features
 * against a vCPU of this host before any device opens a backend.
 */
int vm__create_machine(struct vm *vm, int mem_fd, char *err, size_t errlen)
{
	struct vm_config *cfg = vm->cfg;
	int ret;

	/* the memory file is ours from here on, whatever fails; RAM that
	 * boot__load allocated (and filled) is kept */
	if (!vm->mem.base || mem_fd >= 0)
		memmap__layout(&vm->mem, cfg->mem_size);
	vm->mem.src_fd = mem_fd;
	vm->ncpus = cfg->ncpus;
	vm->exit_efd = -1;
	vm->vm_fd = -1;
	atomic_store(&vm->exit_status, -1);
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_cond_init(&vm->pause_cond, NULL);
	bus__init(&vm->bus);

	vm->exit_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->exit_efd < 0)
		return util__fail(-errno, err, errlen, "eventfd: %s", strerror(errno));
	ret = arch__host_init(vm, err, errlen);
	if (ret)
		return ret;
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return util__fail(-errno, err, errlen, "KVM_CREATE_VM: %s", strerror(errno));
	ret = arch__vm_init(vm, err, errlen);
	if (ret)
		return ret;

	ret = mem_fd >= 0 ? memmap__map_file(&vm->mem, mem_fd) :
	      vm->mem.base ? 0 : memmap__alloc(&vm->mem);
	if (ret)
		return util__fail(ret, err, errlen, "cannot %s %llu MiB of guest memory: %s",
			    mem_fd >= 0 ? "map" : "allocate",
			    (unsigned long long)(cfg->mem_size >> 20), strerror(-ret));
	ret = vm__set_memory(vm);
	if (ret)
		return util__fail(ret, err, errlen, "KVM_SET_USER_MEMORY_REGION: %s", strerror(-ret));
	ret = arch__irqchip_init(vm, err, errlen);
	/* a restored guest has its firmware tables in the memory image already */
	if (!ret && mem_fd < 0)
		ret = arch__write_tables(vm, err, errlen);
	if (ret)
		return ret;

	vm->vcpus = calloc(vm->ncpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return util__fail(-ENOMEM, err, errlen, "out of memory");
	for (unsigned int i = 0; i < vm->ncpus; i++) {
		vm->vcpus[i].fd = -1;
		vm->vcpus[i].stats_fd = -1;
		ret = vcpu__create(vm, i);
		if (ret)
			return util__fail(ret, err, errlen, "cannot create vCPU %u: %s", i, strerror(-ret));
	}
	return 0;
}

int vm__pause(struct vm *vm, char *err, size_t errlen)
{
	int ret;

	if (vm->user_paused)
		return -EALREADY;
	vcpu__pause_all(vm);
	ret = device__pause_all(vm, err, errlen);
	if (ret) {
		vcpu__resume_all(vm);	/* a device that cannot stop: the VM runs on */
		return ret;
	}
	vm->user_paused = true;
	return 0;
}

int vm__resume(struct vm *vm)
{
	if (!vm->user_paused)
		return -EALREADY;
	device__resume_all(vm);
	vcpu__resume_all(vm);
	vm->user_paused = false;
	return 0;
}

void vm__destroy(struct vm *vm)
{
	if (vm->vcpus) {
		for (unsigned int i = 0; i < vm->ncpus; i++) {
			struct vcpu *v = &vm->vcpus[i];

			if (v->run)
				munmap(v->run, vm->run_size);
			if (v->fd >= 0)
				close(v->fd);
			if (v->stats_fd >= 0)
				close(v->stats_fd);
		}
		free(vm->vcpus);
		vm->vcpus = NULL;
	}
	device__exit_all(vm);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	memmap__free(&vm->mem);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->exit_efd >= 0)
		close(vm->exit_efd);
	arch__free(vm);
	vm->vm_fd = vm->kvm_fd = vm->exit_efd = -1;
}
