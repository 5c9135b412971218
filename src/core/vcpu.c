/*
 * vCPU threads and the pause protocol.
 *
 * Each vCPU has a thread looping on KVM_RUN and handing exits to the bus.
 * To pause, the main thread sets vm->pause_req, sets immediate_exit in every
 * kvm_run and sends SIGUSR1 to each thread: a thread inside KVM_RUN returns
 * with EINTR, one about to enter returns at once because of immediate_exit.
 * Each thread then parks on pause_cond until resumed.  pause_req is set
 * before immediate_exit, and a thread clears immediate_exit before it reads
 * pause_req, so no kick is lost.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "khyve/arch.h"
#include "khyve/log.h"
#include "khyve/seccomp.h"
#include "khyve/util.h"
#include "khyve/vm.h"

#define KICK_SIGNAL SIGUSR1

static void kick_handler(int sig)
{
	(void)sig;
}

/*
 * The halt check reads a few of KVM's per-vCPU statistics, which a read of
 * the stats fd returns without taking the vCPU's mutex - unlike the vCPU
 * ioctls, which would wait for KVM_RUN to return.  Opened here, as the
 * main thread's seccomp list has no KVM_GET_STATS_FD.  Without them (no
 * fd, or a kernel without "blocking") stats_fd stays -1.
 */
static void vcpu__open_stats(struct vcpu *v)
{
	struct kvm_stats_header h;
	size_t dsize;
	char *descs = NULL;
	bool have_blocking = false;
	int fd = ioctl(v->fd, KVM_GET_STATS_FD, NULL);

	if (fd < 0)
		return;
	if (pread(fd, &h, sizeof(h), 0) != sizeof(h) || h.name_size > 4096 || h.num_desc > 4096)
		goto out;
	dsize = sizeof(struct kvm_stats_desc) + h.name_size;
	descs = malloc(dsize * h.num_desc);
	if (!descs || pread(fd, descs, dsize * h.num_desc, h.desc_offset) != (ssize_t)(dsize * h.num_desc))
		goto out;
	for (uint32_t i = 0; i < h.num_desc; i++) {
		struct kvm_stats_desc *d = (struct kvm_stats_desc *)(descs + i * dsize);

		d->name[h.name_size - 1] = '\0';
		if (d->size != 1)
			continue;
		if (!strcmp(d->name, "blocking")) {
			v->st_blocking = h.data_offset + d->offset;
			have_blocking = true;
		} else if (!strcmp(d->name, "halt_exits")) {
			v->st_count[0] = h.data_offset + d->offset;
		} else if (!strcmp(d->name, "halt_wakeup")) {
			v->st_count[1] = h.data_offset + d->offset;
		}
	}
	if (have_blocking && (v->st_count[0] || v->st_count[1])) {
		v->stats_fd = fd;
		fd = -1;
	}
out:
	free(descs);
	if (fd >= 0)
		close(fd);
}

int vcpu__create(struct vm *vm, unsigned int id)
{
	struct vcpu *v = &vm->vcpus[id];
	int ret;

	v->vm = vm;
	v->id = id;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (v->fd < 0)
		return -errno;
	v->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		return -errno;
	}
	ret = arch__vcpu_init(vm, v);
	if (ret)
		return ret;
	vcpu__open_stats(v);
	return 0;
}

/* Returns true when the thread must stop. */
static bool vcpu__handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	struct vm *vm = v->vm;

	switch (run->exit_reason) {
	case KVM_EXIT_IO: {
		uint8_t *p = (uint8_t *)run + run->io.data_offset;

		for (uint32_t i = 0; i < run->io.count; i++, p += run->io.size)
			bus__access(&vm->bus, BUS_PIO, run->io.port, p, run->io.size,
				    run->io.direction == KVM_EXIT_IO_OUT);
		return false;
	}
	case KVM_EXIT_MMIO:
		bus__access(&vm->bus, BUS_MMIO, run->mmio.phys_addr, run->mmio.data,
			    run->mmio.len > 8 ? 8 : run->mmio.len, run->mmio.is_write);
		return false;
	case KVM_EXIT_SHUTDOWN:
		pr_info("vCPU %u: triple fault", v->id);
		arch__vcpu_dump(v);
		exit__request(vm, VM_EXIT_TRIPLEFAULT);
		return true;
	case KVM_EXIT_HLT:
		exit__request(vm, VM_EXIT_HALT);
		return true;
	case KVM_EXIT_SYSTEM_EVENT:
		switch (run->system_event.type) {
		case KVM_SYSTEM_EVENT_SHUTDOWN:
			exit__request(vm, VM_EXIT_POWEROFF);
			break;
		case KVM_SYSTEM_EVENT_RESET:
			exit__request(vm, VM_EXIT_RESET);
			break;
		default:
			pr_err("vCPU %u: system event %u", v->id, run->system_event.type);
			exit__request(vm, VM_EXIT_ERROR);
			break;
		}
		return true;
	case KVM_EXIT_INTERNAL_ERROR:
		pr_err("vCPU %u: KVM internal error, suberror %u", v->id, run->internal.suberror);
		arch__vcpu_dump(v);
		exit__request(vm, VM_EXIT_ERROR);
		return true;
	case KVM_EXIT_FAIL_ENTRY:
		pr_err("vCPU %u: VM entry failed, hardware reason 0x%llx", v->id,
		       (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		arch__vcpu_dump(v);
		exit__request(vm, VM_EXIT_ERROR);
		return true;
	default:
		pr_err("vCPU %u: unhandled KVM exit reason %u", v->id, run->exit_reason);
		arch__vcpu_dump(v);
		exit__request(vm, VM_EXIT_ERROR);
		return true;
	}
}

static void vcpu__park(struct vcpu *v)
{
	struct vm *vm = v->vm;

	/*
	 * An I/O exit we just handled is completed by KVM only on the next
	 * KVM_RUN.  Enter once with immediate_exit so the instruction retires
	 * (and nothing else runs) before anyone reads this vCPU's state.
	 */
	for (unsigned int i = 0; i < 16; i++) {
		v->run->immediate_exit = 1;
		if (ioctl(v->fd, KVM_RUN, 0) < 0)
			break;	/* EINTR: the instruction retired */
		/*
		 * Finishing a string or split MMIO access can take another
		 * exit to us: serve it, or its data is lost (an OUT) or the
		 * guest reads whatever the run page held (an IN).
		 */
		if (vcpu__handle_exit(v))
			break;
	}
	v->run->immediate_exit = 0;

	pthread_mutex_lock(&vm->pause_lock);
	v->parked = true;
	vm->nparked++;
	pthread_cond_broadcast(&vm->pause_cond);
	while (atomic_load(&vm->pause_req) && !atomic_load(&vm->stopping))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	v->parked = false;
	vm->nparked--;
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
}

static void *vcpu__thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	char name[16];
	sigset_t set;

	snprintf(name, sizeof(name), "khyve-vcpu%u", v->id);
	pthread_setname_np(pthread_self(), name);
	sigemptyset(&set);
	sigaddset(&set, KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	/* on failure the VM is told to exit, and the loop below ends at once */
	seccomp__thread(SECCOMP_VCPU);

	if (v->id == 0) {
		uint64_t now = util__now_ns();

		/* read by bench/boot.py: khyve's own share of start-up */
		pr_debug("startup: main at %llu ns, first KVM_RUN at %llu ns (+%.3f ms)",
			 (unsigned long long)vm->t_main_ns, (unsigned long long)now,
			 (now - vm->t_main_ns) / 1e6);
	}
	for (;;) {
		/* once an exit is requested no vCPU runs guest code again */
		if (atomic_load(&vm->stopping) || atomic_load(&vm->exit_status) >= 0)
			break;
		if (atomic_load(&vm->pause_req)) {
			vcpu__park(v);
			continue;
		}
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				v->run->immediate_exit = 0;
				continue;
			}
			pr_err("vCPU %u: KVM_RUN failed: %s", v->id, strerror(errno));
			exit__request(vm, VM_EXIT_ERROR);
			break;
		}
		if (vcpu__handle_exit(v))
			break;
	}

	pthread_mutex_lock(&vm->pause_lock);
	v->exited = true;
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	return NULL;
}

int vcpu__start_all(struct vm *vm)
{
	struct sigaction sa = { .sa_handler = kick_handler };
	sigset_t set;
	int ret = 0;

	sigemptyset(&sa.sa_mask);
	if (sigaction(KICK_SIGNAL, &sa, NULL) < 0)
		return -errno;
	/* Only vCPU threads take the kick signal; they unblock it themselves. */
	sigemptyset(&set);
	sigaddset(&set, KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	for (unsigned int i = 0; i < vm->ncpus; i++) {
		ret = -pthread_create(&vm->vcpus[i].thread, NULL, vcpu__thread, &vm->vcpus[i]);
		if (ret)
			break;
		vm->vcpus[i].thread_started = true;
	}
	return ret;
}

static void vcpu__kick_all(struct vm *vm)
{
	for (unsigned int i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (!v->thread_started)
			continue;
		v->run->immediate_exit = 1;
		pthread_kill(v->thread, KICK_SIGNAL);
	}
}

static unsigned int vcpu__nrunning(struct vm *vm)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < vm->ncpus; i++)
		if (vm->vcpus[i].thread_started && !vm->vcpus[i].exited)
			n++;
	return n;
}

void vcpu__pause_all(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	atomic_store(&vm->pause_req, true);
	vcpu__kick_all(vm);
	while (vm->nparked < vcpu__nrunning(vm))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	pthread_mutex_unlock(&vm->pause_lock);
}

void vcpu__resume_all(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	atomic_store(&vm->pause_req, false);
	pthread_cond_broadcast(&vm->pause_cond);
	while (vm->nparked)
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	pthread_mutex_unlock(&vm->pause_lock);
}

void vcpu__stop_all(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	atomic_store(&vm->stopping, true);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	vcpu__kick_all(vm);
	for (unsigned int i = 0; i < vm->ncpus; i++) {
		if (vm->vcpus[i].thread_started) {
			pthread_join(vm->vcpus[i].thread, NULL);
			vm->vcpus[i].thread_started = false;
		}
	}
}

int vcpu__all_blocked(struct vm *vm, uint64_t *sig)
{
	*sig = 0;
	for (unsigned int i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		uint64_t blocking, n;

		if (v->stats_fd < 0)
			return -1;
		if (pread(v->stats_fd, &blocking, 8, v->st_blocking) != 8)
			return -1;
		if (!blocking)
			return 0;
		/* every HLT, and every wake-up from one, moves these */
		for (unsigned int k = 0; k < 2; k++) {
			if (!v->st_count[k])
				continue;
			if (pread(v->stats_fd, &n, 8, v->st_count[k]) != 8)
				return -1;
			*sig += n;
		}
	}
	return 1;
}
