/*
 * A virtio device's I/O thread.
 *
 * Notifications: one eventfd per queue, registered with KVM_IOEVENTFD at
 * the queue's notify address, so a driver's notify write no longer exits
 * to khyve at all; the thread serves the queue.  Devices add fds of their
 * own (virtio__watch).  The thread takes the device lock for every event
 * and, while the VM is paused, waits for resume before serving anything,
 * so a pause (which holds the same lock to set vd->paused) is a clean cut.
 *
 * Without KVM_IOEVENTFD (unit tests' fake VM) there are no eventfds and the
 * notifying vCPU serves the queue itself, as before this thread existed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>

#include "khyve/log.h"
#include "khyve/seccomp.h"
#include "khyve/virtio.h"
#include "khyve/vm.h"

#define IO_WATCH_MAX	4

enum { EV_STOP, EV_KICK, EV_WATCH };

struct virtio_io {
	pthread_t thread;
	bool started;
	bool stopping;		/* under pd->lock */
	int epfd, stopfd;
	int kickfd[VIRTIO_MAX_QUEUES];	/* -1: the vCPU serves the queue */
	bool assigned[VIRTIO_MAX_QUEUES];	/* kickfd is a KVM ioeventfd */
	uint64_t kick_addr[VIRTIO_MAX_QUEUES];
	struct { int fd; virtio_ready_fn ready; } watch[IO_WATCH_MAX];
	unsigned int nwatch;
	pthread_cond_t resumed;
};

static uint64_t tag(unsigned int kind, unsigned int i)
{
	return (uint64_t)kind << 32 | i;
}

static bool serving(const struct virtio_dev *vd, unsigned int q)
{
	return (vd->st.status & VIRTIO_S_DRIVER_OK) && !(vd->st.status & VIRTIO_S_NEEDS_RESET) &&
	       q < vd->st.nqueues && vd->st.q[q].enabled;
}

static void handle(struct virtio_dev *vd, uint64_t ev)
{
	struct virtio_io *io = vd->io;
	unsigned int i = (unsigned int)ev;
	uint64_t n;

	switch (ev >> 32) {
	case EV_KICK:
		/* consume first: a notify that arrives while we serve is not lost */
		if (read(io->kickfd[i], &n, sizeof(n)) < 0 && errno != EAGAIN)
			pr_debug("%s: kick %u: %s", vd->pd->name, i, strerror(errno));
		if (serving(vd, i))
			vd->type->queue_notify(vd, i);
		break;
	case EV_WATCH:
		io->watch[i].ready(vd, io->watch[i].fd);
		break;
	}
}

static void *io_thread(void *arg)
{
	struct virtio_dev *vd = arg;
	struct virtio_io *io = vd->io;
	struct pci_dev *pd = vd->pd;
	struct epoll_event evs[8];

	if (seccomp__thread(SECCOMP_DEVICE))
		return NULL;	/* the VM is told to exit */
	for (;;) {
		int n = epoll_wait(io->epfd, evs, 8, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			pr_warn("%s: I/O thread: epoll_wait: %s", pd->name, strerror(errno));
			return NULL;
		}
		pthread_mutex_lock(&pd->lock);
		for (int k = 0; k < n; k++) {
			while (vd->paused && !io->stopping)
				pthread_cond_wait(&io->resumed, &pd->lock);
			if (io->stopping || evs[k].data.u64 == tag(EV_STOP, 0)) {
				pthread_mutex_unlock(&pd->lock);
				return NULL;
			}
			handle(vd, evs[k].data.u64);
		}
		pthread_mutex_unlock(&pd->lock);
	}
}

static int epoll_add(struct virtio_io *io, int fd, uint64_t t)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = t };

	return epoll_ctl(io->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* The thread and its epoll set, created on first need.  Caller holds pd->lock. */
static int io_get(struct virtio_dev *vd)
{
	struct virtio_io *io;
	int ret;

	if (vd->io)
		return 0;
	io = calloc(1, sizeof(*io));
	if (!io)
		return -ENOMEM;
	for (unsigned int q = 0; q < VIRTIO_MAX_QUEUES; q++)
		io->kickfd[q] = -1;
	io->epfd = epoll_create1(EPOLL_CLOEXEC);
	io->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (io->epfd < 0 || io->stopfd < 0) {
		ret = -errno;
		goto fail;
	}
	ret = epoll_add(io, io->stopfd, tag(EV_STOP, 0));
	if (ret)
		goto fail;
	pthread_cond_init(&io->resumed, NULL);
	vd->io = io;
	ret = -pthread_create(&io->thread, NULL, io_thread, vd);
	if (ret) {
		vd->io = NULL;
		pthread_cond_destroy(&io->resumed);
		goto fail;
	}
	io->started = true;
	return 0;
fail:
	if (io->epfd >= 0)
		close(io->epfd);
	if (io->stopfd >= 0)
		close(io->stopfd);
	free(io);
	return ret;
}

int virtio__watch(struct virtio_dev *vd, int fd, virtio_ready_fn ready)
{
	int ret = io_get(vd);

	if (ret)
		return ret;
	if (vd->io->nwatch == IO_WATCH_MAX)
		return -ENOSPC;
	vd->io->watch[vd->io->nwatch].fd = fd;
	vd->io->watch[vd->io->nwatch].ready = ready;
	ret = epoll_add(vd->io, fd, tag(EV_WATCH, vd->io->nwatch));
	if (!ret)
		vd->io->nwatch++;
	return ret;
}

void virtio__watch_enable(struct virtio_dev *vd, int fd, bool on)
{
	struct virtio_io *io = vd->io;

	for (unsigned int i = 0; io && i < io->nwatch; i++) {
		struct epoll_event ev = { .events = on ? EPOLLIN : 0, .data.u64 = tag(EV_WATCH, i) };

		if (io->watch[i].fd == fd && epoll_ctl(io->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
			pr_warn("%s: watching fd %d: %s", vd->pd->name, fd, strerror(errno));
	}
}

static int ioeventfd(struct vm *vm, int fd, uint64_t addr, bool assign)
{
	struct kvm_ioeventfd ev = {
		.addr = addr,
		.len = 2,	/* the driver writes the 16-bit queue index (4.1.4.4) */
		.fd = fd,
		.flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
	};

	return ioctl(vm->vm_fd, KVM_IOEVENTFD, &ev) < 0 ? -errno : 0;
}

/*
 * KVM signals a queue's eventfd only while BAR 0 decodes at the address
 * khyve gave it: a driver that turns memory decoding off, or sizes or moves
 * the BAR, must not reach the device through the old address.  Called
 * under pd->lock whenever the command register or BAR 0 may have changed,
 * and on resume (a restore brought a new configuration space).  A queue
 * whose eventfd KVM will not take is notified through the exit path,
 * which writes the same eventfd.
 */
void virtio__sync_notify(struct virtio_dev *vd)
{
	struct virtio_io *io = vd->io;
	bool on = pci__bar_decodes(vd->pd, 0);

	for (unsigned int q = 0; io && q < vd->type->nqueues; q++) {
		if (io->kickfd[q] < 0 || io->assigned[q] == on)
			continue;
		if (ioeventfd(vd->pd->vm, io->kickfd[q], io->kick_addr[q], on)) {
			pr_debug("%s: ioeventfd for queue %u: %s; the exit path notifies", vd->pd->name, q,
				 strerror(errno));
			continue;
		}
		io->assigned[q] = on;
	}
}

/*
 * BAR 0 has its address: an eventfd per queue, given to KVM as an
 * ioeventfd at the queue's notify register while the BAR decodes.
 * Without KVM (unit tests) the vCPUs serve notifications themselves;
 * that is slower, never wrong.
 */
int virtio__placed(struct pci_dev *pd)
{
	struct virtio_dev *vd = pd->priv;
	uint64_t base = pd->bar[0].addr + VIRTIO_NOTIFY_OFF;
	int ret = 0;

	if (pd->vm->vm_fd < 0)
		return 0;
	pthread_mutex_lock(&pd->lock);
	ret = io_get(vd);
	for (unsigned int q = 0; !ret && q < vd->type->nqueues; q++) {
		vd->io->kickfd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		vd->io->kick_addr[q] = base + VIRTIO_NOTIFY_MULT * q;
		ret = vd->io->kickfd[q] < 0 ? -errno : epoll_add(vd->io, vd->io->kickfd[q], tag(EV_KICK, q));
	}
	if (!ret)
		virtio__sync_notify(vd);
	pthread_mutex_unlock(&pd->lock);
	return ret;	/* virtio__exit releases what was made */
}

void virtio__kick(struct virtio_dev *vd, unsigned int q)
{
	uint64_t one = 1;

	if (q >= vd->st.nqueues)
		return;
	if (vd->io && vd->io->kickfd[q] >= 0) {
		if (write(vd->io->kickfd[q], &one, sizeof(one)) < 0 && errno != EAGAIN)
			pr_warn("%s: kick: %s", vd->pd->name, strerror(errno));
	} else if (serving(vd, q) && !vd->paused) {
		vd->type->queue_notify(vd, q);
	}
}

/*
 * A notification the saved VM had not served yet (its I/O thread was
 * paused) is not in the snapshot: have the thread look at every queue once,
 * after the restore is complete.  Without ioeventfds, notifications are
 * served before a pause completes, so none is ever pending.
 */
void virtio__restored(struct virtio_dev *vd)
{
	uint64_t one = 1;

	for (unsigned int q = 0; vd->io && q < vd->st.nqueues; q++)
		if (vd->io->kickfd[q] >= 0 && write(vd->io->kickfd[q], &one, sizeof(one)) < 0)
			pr_warn("%s: kick: %s", vd->pd->name, strerror(errno));
}

int virtio__pause(struct pci_dev *pd, char *err, size_t errlen)
{
	struct virtio_dev *vd = pd->priv;
	int ret = 0;

	pthread_mutex_lock(&pd->lock);
	vd->paused = true;
	if (vd->type->quiesce)
		ret = vd->type->quiesce(vd, err, errlen);
	pthread_mutex_unlock(&pd->lock);
	if (ret)
		virtio__resume(pd);
	return ret;
}

void virtio__resume(struct pci_dev *pd)
{
	struct virtio_dev *vd = pd->priv;

	pthread_mutex_lock(&pd->lock);
	vd->paused = false;
	virtio__sync_notify(vd);
	if (vd->type->resume)
		vd->type->resume(vd);
	if (vd->io)
		pthread_cond_broadcast(&vd->io->resumed);
	pthread_mutex_unlock(&pd->lock);
}

int virtio__exit_until(struct virtio_dev *vd, const struct timespec *until)
{
	struct virtio_io *io = vd->io;
	uint64_t one = 1;

	if (!io)
		return 0;
	pthread_mutex_lock(&vd->pd->lock);
	io->stopping = true;
	pthread_cond_broadcast(&io->resumed);
	pthread_mutex_unlock(&vd->pd->lock);
	if (write(io->stopfd, &one, sizeof(one)) < 0)
		pr_warn("%s: stopping the I/O thread: %s", vd->pd->name, strerror(errno));
	if (io->started) {
		int ret = until ? pthread_clockjoin_np(io->thread, NULL, CLOCK_MONOTONIC, until) :
				  pthread_join(io->thread, NULL);

		if (ret == ETIMEDOUT) {
			/* it has stopped serving; what it holds stays, and vd->io is
			   left as it is, so that nothing frees it under the thread */
			return -ETIMEDOUT;
		}
	}
	for (unsigned int q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		if (io->kickfd[q] < 0)
			continue;
		if (io->assigned[q])
			ioeventfd(vd->pd->vm, io->kickfd[q], io->kick_addr[q], false);
		close(io->kickfd[q]);
	}
	close(io->epfd);
	close(io->stopfd);
	pthread_cond_destroy(&io->resumed);
	free(io);
	vd->io = NULL;
	return 0;
}

void virtio__exit(struct virtio_dev *vd)
{
	virtio__exit_until(vd, NULL);
}
