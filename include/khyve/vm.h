/* One virtual machine: the KVM VM, its memory, vCPUs, bus and devices. */
#ifndef KHYVE_VM_H
#define KHYVE_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <linux/kvm.h>

#include "khyve/bus.h"
#include "khyve/config.h"
#include "khyve/memmap.h"

/* Exit status of khyve, as bhyve(8). */
enum vm_exit_status {
	VM_EXIT_POWEROFF = 0,
	VM_EXIT_RESET = 1,
	VM_EXIT_HALT = 2,
	VM_EXIT_TRIPLEFAULT = 3,
	VM_EXIT_ERROR = 4,
	VM_EXIT_SUSPEND = 5,
};

struct vm;

struct vcpu {
	struct vm *vm;
	unsigned int id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool thread_started;
	bool parked;		/* under vm->pause_lock */
	bool exited;		/* under vm->pause_lock */
	/* KVM's binary statistics of this vCPU (KVM_GET_STATS_FD), or -1;
	 * where its "blocking" flag and its "halt_exits" and "halt_wakeup"
	 * counters are in it (0: not there) */
	int stats_fd;
	uint32_t st_blocking, st_count[2];
};

struct vm {
	struct vm_config *cfg;
	int kvm_fd;
	int vm_fd;
	size_t run_size;
	unsigned int max_vcpus;
	struct guest_mem mem;
	struct bus bus;
	unsigned int ncpus;
	struct vcpu *vcpus;
	struct kvm_cpuid2 *cpuid;	/* KVM_GET_SUPPORTED_CPUID */
	uint32_t *msr_list;
	unsigned int nmsrs;

	/* exit: the first request wins; main thread is woken via exit_efd */
	atomic_int exit_status;		/* -1 while running */
	int exit_efd;
	atomic_bool stopping;

	/* times the halt check stopped the vCPUs (status "halt_check_pauses") */
	atomic_uint_fast64_t halt_check_pauses;

	/* paused by a control request (vm__pause), not just for a moment */
	bool user_paused;
	uint64_t t_run_ns;		/* when the vCPUs first started */

	/* pause protocol, see vcpu.c */
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;
	atomic_bool pause_req;
	unsigned int nparked;

	uint64_t t_main_ns;		/* CLOCK_MONOTONIC at main(), for start-up timing */

	struct device_instance *devices;	/* list, in init order */
	void *console;			/* COM1 when its backend is stdio */
	/* from boot__load, for the BSP: multiboot (entry, info) or Linux (entry, zero page) */
	uint64_t boot_entry, boot_info;
	bool boot_linux;
};

/* Open /dev/kvm and check the capabilities khyve needs.  0 or -errno. */
int vm__open_kvm(struct vm *vm, char *err, size_t errlen);
/*
 * Create the VM, its memory, irqchip, devices and vCPUs from vm->cfg.  With
 * mem_fd >= 0 (a restore), RAM is mapped from that snapshot memory file,
 * which the VM then owns, and nothing is written into it.
 */
int vm__create(struct vm *vm, int mem_fd, char *err, size_t errlen);
/* vm__create in two steps: the VM, memory, irqchip and vCPUs; then
 * device__init_all(), the devices and their backends. */
int vm__create_machine(struct vm *vm, int mem_fd, char *err, size_t errlen);
void vm__destroy(struct vm *vm);

/*
 * Control requests, main thread only: -EALREADY if already in that state.
 * vm__pause fails (-errno, err) when a device cannot stop in a few seconds
 * (device__pause_all); the VM then runs on.
 */
int vm__pause(struct vm *vm, char *err, size_t errlen);
int vm__resume(struct vm *vm);

/*
 * exit.c: ask the VM to stop with status; safe from any thread, first call
 * wins.  Its own file so that vcpu.c (and the devices) need nothing of
 * vm.c: vm.c calls vcpu.c, never the other way round.
 */
void exit__request(struct vm *vm, int status);

/* vcpu.c */
int vcpu__create(struct vm *vm, unsigned int id);
int vcpu__setup_multiboot(struct vcpu *vcpu, uint32_t entry, uint32_t info);
/* Long mode at a Linux kernel's 64-bit entry, RSI = zero page (linux.h). */
int vcpu__setup_linux64(struct vcpu *vcpu, uint64_t entry, uint64_t zero_page);
int vcpu__start_all(struct vm *vm);
/* Kick every vCPU out of KVM_RUN and wait until all are parked. */
void vcpu__pause_all(struct vm *vm);
void vcpu__resume_all(struct vm *vm);
/* Stop and join every vCPU thread (after vm->stopping is set). */
void vcpu__stop_all(struct vm *vm);
/*
 * Without stopping any vCPU: 1 when every vCPU sits blocked in KVM (halted,
 * or an AP never started), with *sig a sum of their wake-up counters that
 * changes whenever one of them woke up; 0 when one is not blocked; -1 when
 * KVM has no statistics to tell (older than Linux 5.16).
 */
int vcpu__all_blocked(struct vm *vm, uint64_t *sig);
/* True when every vCPU is halted with interrupts off, or never started (src/arch/x86/vcpu.c). */
bool vcpu__all_dead_halted(struct vm *vm);

#endif
