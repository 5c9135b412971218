/*
 * COM1: a 16550A at 0x3f8, IRQ 4, connected to the character backend
 * (chardev.h) chosen with -l com1,stdio|file:PATH|null.
 *
 * Output to a regular file is written at once, on the vCPU thread.  Any
 * other output (a terminal, a pipe, a FIFO) goes through the backend's
 * bounded queue (COM1_OUTQ bytes) and its writer thread, so a reader
 * that stops reading never holds a vCPU: when the queue is full, output
 * is dropped and counted (status: output_dropped).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "khyve/chardev.h"
#include "khyve/device.h"
#include "khyve/irqchip.h"
#include "khyve/log.h"
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
	struct chardev out;	/* where the guest's bytes go */
};

/* Under s->lock, on a vCPU thread: queued or appended to a file, never waiting for a reader. */
static void serial__tx(void *opaque, uint8_t byte)
{
	struct serial *s = opaque;

	chardev__write(&s->out, &byte, 1);
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

#define COM1_WHO "cannot open COM1 output file"

/* -l com1,BACKEND as a chardev; COM1 has no socket (its input is stdin's). */
static enum chardev_kind serial__kind(enum console_backend k)
{
	return k == CONSOLE_STDIO ? CHARDEV_STDIO : k == CONSOLE_FILE ? CHARDEV_FILE : CHARDEV_NULL;
}

int serial__check_output(const struct vm_config *cfg, char *err, size_t errlen)
{
	struct chardev cd;
	int ret;

	if (cfg->com1 != CONSOLE_FILE)
		return 0;
	ret = chardev__open(&cd, COM1_WHO, "COM1", CHARDEV_FILE, cfg->com1_path, true, COM1_OUTQ,
			    "com1-out", err, errlen);
	if (!ret)
		chardev__close(&cd);
	return ret;
}

static int serial__init(struct vm *vm, void **priv, char *err, size_t errlen)
{
	struct serial *s = calloc(1, sizeof(*s));
	int ret;

	if (!s)
		return -ENOMEM;
	s->vm = vm;
	/* a file is appended to, as a log: a restore's output goes after the original's */
	ret = chardev__open(&s->out, COM1_WHO, "COM1", serial__kind(vm->cfg->com1), vm->cfg->com1_path,
			    true, COM1_OUTQ, "com1-out", err, errlen);
	if (ret) {
		free(s);
		return ret;
	}
	pthread_mutex_init(&s->lock, NULL);
	uart__init(&s->uart, serial__tx, serial__irq, s);
	ret = bus__register(&vm->bus, BUS_PIO, COM1_PORT, 8, serial__io_read, serial__io_write, s, "com1");
	if (ret) {
		chardev__close(&s->out);
		pthread_mutex_destroy(&s->lock);
		free(s);
		return ret;
	}
	if (vm->cfg->com1 == CONSOLE_STDIO)
		vm->console = s;
	*priv = s;
	return 0;
}

static void serial__exit(struct vm *vm, void *priv)
{
	struct serial *s = priv;

	(void)vm;
	chardev__close(&s->out);	/* a queue flushed within OUTQ_FLUSH_MAX_MS */
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
