/*
 * COM1: a 16550A at 0x3f8, IRQ 4, connected to the backend chosen with
 * -l com1,stdio|file:PATH|null.
 *
 * Output to a regular file is written at once, on the vCPU thread.  Any
 * other output (a terminal, a pipe, a socket, a FIFO) goes through a
 * bounded queue (outq.h, COM1_OUTQ bytes) and its writer thread, so a
 * reader that stops reading never holds a vCPU: when the queue is full,
 * output is dropped and counted (status: output_dropped).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "khyve/device.h"
#include "khyve/irqchip.h"
#include "khyve/log.h"
#include "khyve/outq.h"
#include "khyve/serial.h"
#include "khyve/snapfmt.h"
#include "khyve/uart16550.h"
#include "khyve/util.h"
#include "khyve/vm.h"

#define COM1_PORT 0x3f8
#define COM1_IRQ  4
#define COM1_OUTQ (64u << 10)

struct serial {
	pthread_mutex_t lock;
	struct uart16550 uart;
	struct vm *vm;
	int out_fd;		/* -1: output discarded */
	bool out_owned;
	bool out_broken;	/* reported once, then dropped */
	struct outq *outq;	/* output that is not a regular file */
};

static void serial__tx(void *opaque, uint8_t byte)
{
	struct serial *s = opaque;
	int r;

	if (s->outq) {
		outq__write(s->outq, &byte, 1);
		return;
	}
	if (s->out_fd < 0 || s->out_broken)
		return;
	r = util__write_all(s->out_fd, &byte, 1);
	if (r) {
		s->out_broken = true;
		pr_warn("COM1 output failed, further output is discarded: %s", strerror(-r));
	}
}

static void serial__irq(void *opaque, int level)
{
	struct serial *s = opaque;

	irqchip__set_line(s->vm->vm_fd, COM1_IRQ, level);
}

static void serial__io_read(void *opaque, uint64_t off, uint8_t *data, unsigned int len)
{
	struct serial *s = opaque;

	pthread_mutex_lock(&s->lock);
	data[0] = uart__read(&s->uart, (unsigned int)off);
	pthread_mutex_unlock(&s->lock);
	for (unsigned int i = 1; i < len; i++)
		data[i] = 0xff;
}

static void serial__io_write(void *opaque, uint64_t off, const uint8_t *data, unsigned int len)
{
	struct serial *s = opaque;

	(void)len;	/* wider writes reach only the addressed register */
	pthread_mutex_lock(&s->lock);
	uart__write(&s->uart, (unsigned int)off, data[0]);
	pthread_mutex_unlock(&s->lock);
}

unsigned int serial__input(void *opaque, const uint8_t *buf, unsigned int len)
{
	struct serial *s = opaque;
	unsigned int n;

	pthread_mutex_lock(&s->lock);
	n = uart__rx_push(&s->uart, buf, len);
	pthread_mutex_unlock(&s->lock);
	return n;
}

unsigned int serial__input_space(void *opaque)
{
	struct serial *s = opaque;
	unsigned int n;

	pthread_mutex_lock(&s->lock);
	n = (s->uart.mcr & UART_MCR_LOOP) ? 0 : uart__rx_space(&s->uart);
	pthread_mutex_unlock(&s->lock);
	return n;
}

static int open_output(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

	if (fd < 0) {
		fd = -errno;
		snprintf(err, errlen, "cannot open COM1 output file '%s': %s", path, strerror(errno));
	}
	return fd;
}

int serial__check_output(const struct vm_config *cfg, char *err, size_t errlen)
{
	int fd;

	if (cfg->com1 != CONSOLE_FILE)
		return 0;
	fd = open_output(cfg->com1_path, err, errlen);
	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

static int serial__init(struct vm *vm, void **priv, char *err, size_t errlen)
{
	struct serial *s = calloc(1, sizeof(*s));
	struct stat st;
	int ret;

	if (!s)
		return -ENOMEM;
	s->vm = vm;
	s->out_fd = -1;
	switch (vm->cfg->com1) {
	case CONSOLE_STDIO:
		s->out_fd = STDOUT_FILENO;
		vm->console = s;
		break;
	case CONSOLE_FILE:
		s->out_fd = open_output(vm->cfg->com1_path, err, errlen);
		if (s->out_fd < 0) {
			ret = s->out_fd;
			goto fail;
		}
		s->out_owned = true;
		break;
	case CONSOLE_NULL:
		break;
	}
	if (s->out_fd >= 0 && (fstat(s->out_fd, &st) < 0 || !S_ISREG(st.st_mode))) {
		s->outq = outq__create(s->out_fd, COM1_OUTQ, "com1-out");
		if (!s->outq) {
			ret = util__fail(-errno, err, errlen, "COM1 output queue: %s", strerror(errno));
			goto fail;
		}
	}
	pthread_mutex_init(&s->lock, NULL);
	uart__init(&s->uart, serial__tx, serial__irq, s);
	ret = bus__register(&vm->bus, BUS_PIO, COM1_PORT, 8, serial__io_read, serial__io_write, s, "com1");
	if (ret)
		goto fail;
	*priv = s;
	return 0;
fail:
	outq__destroy(s->outq);
	if (s->out_owned)
		close(s->out_fd);
	if (vm->console == s)
		vm->console = NULL;
	free(s);
	return ret;
}

static void serial__exit(struct vm *vm, void *priv)
{
	struct serial *s = priv;

	(void)vm;
	outq__destroy(s->outq);	/* flushed, within OUTQ_FLUSH_MAX_MS */
	if (s->out_owned)
		close(s->out_fd);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static void serial__save(void *priv, void *state)
{
	struct serial *s = priv;

	pthread_mutex_lock(&s->lock);
	uart__save(&s->uart, state);
	pthread_mutex_unlock(&s->lock);
}

static void serial__encode(struct sbuf *b, const void *state)
{
	const struct uart16550_state *u = state;

	enc__map(b);
	enc__u8(b, "ier", u->ier); enc__u8(b, "lcr", u->lcr); enc__u8(b, "mcr", u->mcr);
	enc__u8(b, "lsr", u->lsr); enc__u8(b, "msr", u->msr); enc__u8(b, "scr", u->scr);
	enc__u8(b, "dll", u->dll); enc__u8(b, "dlm", u->dlm); enc__u8(b, "fcr", u->fcr);
	enc__bool(b, "thri_pending", u->thri_pending);
	enc__bytes(b, "rx_fifo", u->rx, u->rx_count);
	enc__u8(b, "irq_level", u->irq_level);
	enc__end(b);
}

static void serial__decode(struct dec *d, const cbor_item_t *m, uint32_t version, void *state)
{
	struct uart16550_state *u = state;
	char why[128];

	(void)version;	/* version 1 is the only one so far */
	memset(u, 0, sizeof(*u));
	u->ier = dec__u8(d, m, "ier"); u->lcr = dec__u8(d, m, "lcr"); u->mcr = dec__u8(d, m, "mcr");
	u->lsr = dec__u8(d, m, "lsr"); u->msr = dec__u8(d, m, "msr"); u->scr = dec__u8(d, m, "scr");
	u->dll = dec__u8(d, m, "dll"); u->dlm = dec__u8(d, m, "dlm"); u->fcr = dec__u8(d, m, "fcr");
	u->thri_pending = dec__bool(d, m, "thri_pending");
	u->rx_count = (uint8_t)dec__bytes_var(d, m, "rx_fifo", u->rx, sizeof(u->rx));
	u->irq_level = dec__u8(d, m, "irq_level");
	if (!d->ret && uart__check_state(u, why, sizeof(why)))
		dec__fail(d, "%s", why);
}

static int serial__restore(void *priv, const void *state, char *err, size_t errlen)
{
	struct serial *s = priv;

	(void)err; (void)errlen;	/* decode validated everything */
	pthread_mutex_lock(&s->lock);
	uart__restore(&s->uart, state);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static const struct device_ops serial_ops = {
	.name = "uart.com1",
	.init = serial__init,
	.exit = serial__exit,
	.state_version = 1,
	.state_size = sizeof(struct uart16550_state),
	.save = serial__save,
	.encode = serial__encode,
	.decode = serial__decode,
	.restore = serial__restore,
};
DEVICE_REGISTER(serial_ops, DEVICE_ORDER_SERIAL);
