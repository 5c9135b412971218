#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "khyve/control.h"
#include "khyve/log.h"
#include "khyve/loop.h"
#include "khyve/serial.h"

#define HALT_CHECK_MS 1000
#define CTRL_A 0x01

/* What the halt check saw last (see halt__check). */
struct halt_watch {
	bool have_prev;
	uint64_t prev;		/* the vCPUs' halt counters a second ago */
	bool checked;
	uint64_t checked_sig;	/* ... when they were last stopped to look */
};

struct console_in {
	bool eof;
	bool escape;		/* saw Ctrl-A on a terminal */
	uint8_t buf[64];
	unsigned int len;	/* bytes read but not yet taken by the UART */
};

/* Terminal escape: Ctrl-A x quits, Ctrl-A Ctrl-A sends one Ctrl-A. */
static unsigned int console__filter(struct vm *vm, struct console_in *c, uint8_t *b, unsigned int n)
{
	unsigned int o = 0;

	for (unsigned int i = 0; i < n; i++) {
		if (c->escape) {
			c->escape = false;
			if (b[i] == 'x' || b[i] == 'X') {
				pr_info("Ctrl-A x: stopping the VM");
				exit__request(vm, VM_EXIT_POWEROFF);
				return o;
			}
			if (b[i] != CTRL_A)
				b[o++] = CTRL_A;
			b[o++] = b[i];
		} else if (b[i] == CTRL_A) {
			c->escape = true;
		} else {
			b[o++] = b[i];
		}
	}
	return o;
}

static void console__read(struct vm *vm, struct console_in *c, bool tty)
{
	ssize_t r = read(STDIN_FILENO, c->buf, sizeof(c->buf));

	if (r < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (r <= 0) {
		c->eof = true;
		return;
	}
	c->len = tty ? console__filter(vm, c, c->buf, (unsigned int)r) : (unsigned int)r;
}

static void console__flush(struct vm *vm, struct console_in *c)
{
	unsigned int n;

	if (!c->len)
		return;
	n = serial__input(vm->console, c->buf, c->len);
	memmove(c->buf, c->buf + n, c->len - n);
	c->len -= n;
}

/*
 * With the in-kernel LAPIC a guest's "cli; hlt" never exits to us; look
 * for it once a second so a dead guest ends with status 2 instead of
 * hanging.  Telling interrupts off from on needs RFLAGS, so the vCPUs are
 * stopped to look - but only when KVM's statistics (read without stopping
 * anything) say every vCPU has been blocked in HLT for a whole second with
 * no wake-up, and once per such quiet spell: a guest that computes, or
 * idles on a timer, is never stopped.  A guest halted with interrupts on
 * and nothing to wake it is looked at once.  A kernel without these
 * statistics gets the old check: every vCPU stopped once a second.
 */
static void halt__check(struct vm *vm, struct halt_watch *h)
{
	uint64_t sig;
	int r = vcpu__all_blocked(vm, &sig);
	bool dead;

	if (r == 0) {
		h->have_prev = h->checked = false;
		return;
	}
	if (r > 0) {
		bool quiet = h->have_prev && sig == h->prev;

		h->prev = sig;
		h->have_prev = true;
		if (!quiet || (h->checked && sig == h->checked_sig))
			return;
		h->checked = true;
		h->checked_sig = sig;
	}
	atomic_fetch_add(&vm->halt_check_pauses, 1);
	vcpu__pause_all(vm);
	dead = vcpu__all_dead_halted(vm);
	vcpu__resume_all(vm);
	if (dead) {
		pr_info("all vCPUs halted with interrupts disabled");
		exit__request(vm, VM_EXIT_HALT);
	}
}

int loop__run(struct vm *vm, int sigfd, bool tty, struct control *ctl)
{
	struct console_in con = { .eof = vm->console == NULL };
	struct halt_watch halt = { 0 };
	int waited = 0;

	while (atomic_load(&vm->exit_status) < 0) {
		struct pollfd p[3 + CONTROL_MAX_POLLFDS] = {
			{ .fd = vm->exit_efd, .events = POLLIN },
			{ .fd = sigfd, .events = POLLIN },
			{ .fd = -1, .events = POLLIN },
		};
		unsigned int nctl = ctl ? control__pollfds(ctl, p + 3, CONTROL_MAX_POLLFDS) : 0;
		int timeout = HALT_CHECK_MS, ct = control__timeout(ctl);

		console__flush(vm, &con);
		if (!con.eof) {
			if (!con.len)
				p[2].fd = STDIN_FILENO;
			else
				timeout = 10;	/* guest has not drained its FIFO yet */
		}
		if (ct >= 0 && ct < timeout)
			timeout = ct;	/* a save in flight is polled */
		int r = poll(p, 3 + nctl, timeout);

		if (r < 0 && errno != EINTR) {
			pr_err("poll: %s", strerror(errno));
			exit__request(vm, VM_EXIT_ERROR);
			break;
		}
		if (r > 0 && (p[1].revents & POLLIN)) {
			struct signalfd_siginfo si;

			if (read(sigfd, &si, sizeof(si)) == sizeof(si)) {
				pr_info("received signal %u: stopping the VM", si.ssi_signo);
				exit__request(vm, VM_EXIT_POWEROFF);
			}
		}
		if (r > 0 && (p[2].revents & (POLLIN | POLLHUP | POLLERR)))
			console__read(vm, &con, tty);
		if (r > 0 && (p[2].revents & POLLNVAL))
			con.eof = true;
		if (r > 0 && nctl)
			control__handle(ctl, p + 3, nctl);
		control__tick(ctl);

		/* a save pauses the vCPUs itself (and a suspend keeps them so) */
		waited = r == 0 ? waited + timeout : waited;
		if (waited >= HALT_CHECK_MS && !vm->user_paused && !control__saving(ctl)) {
			waited = 0;
			halt__check(vm, &halt);
		}
	}
	/* the VM is stopping: a save in flight is abandoned, its files removed */
	control__cancel_save(ctl);
	return atomic_load(&vm->exit_status);
}
