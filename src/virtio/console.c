/*
 * virtio-console (virtio device ID 3): a single port, no
 * VIRTIO_CONSOLE_F_MULTIPORT, receiveq 0 and transmitq 1.
 *
 *   -s N,virtio-console,stdio        port 0 writes to khyve's standard output
 *   -s N,virtio-console,file:PATH    ... to PATH (created, mode 0644, or
 *                                    truncated at start-up)
 *   -s N,virtio-console,socket:PATH  ... to a listening UNIX stream socket at
 *                                    PATH, connected at start-up (error if none)
 *   -s N,virtio-console,null         output discarded, no input
 *
 * The backends are src/console/chardev.c's (khyve/chardev.h).  Transmit
 * buffers are taken whole, under the device lock, so a paused VM
 * never has one half-done.  A regular file (file:PATH, or a standard output
 * redirected to one) is written at once.  Anything else - a socket, a pipe,
 * a terminal - goes through a bounded queue (outq.h, CON_OUTQ bytes) written
 * by a thread of its own: a peer that stops reading never holds the device
 * lock, the I/O thread or a pause; when the queue is full, output is
 * dropped and counted (status: output_dropped).  Queued bytes are host-side
 * output, not device state: a save neither waits for them nor records them
 * (they already count in tx_bytes), and khyve's exit flushes them within
 * OUTQ_FLUSH_MAX_MS.
 *
 * Receive: a socket backend's input, and with stdio khyve's standard input
 * when COM1 does not use it (-l com1,null or file:PATH; otherwise COM1 has
 * the keyboard).  The I/O thread reads up to CON_RX_HOLD bytes when the
 * input is readable and delivers them into the driver's receive buffers;
 * while none is posted it holds them and stops reading, so input waits in
 * the socket or terminal (flow control, nothing dropped).  Held bytes are
 * part of the section (version 2): a snapshot loses no keystroke.
 *
 * The section records the bytes written so far (tx_bytes).  On restore, a
 * file backend is opened without truncation, then cut to tx_bytes (extended
 * with zero bytes if shorter) and written from there: the restored VM's
 * output continues exactly where the saved VM's stopped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "khyve/chardev.h"
#include "khyve/log.h"
#include "khyve/snapfmt.h"
#include "khyve/util.h"
#include "khyve/virtio.h"
#include "khyve/vm.h"

#define CON_STATE_VERSION	3	/* 2: rx_held; 3: the function's placement */
#define CON_RX_HOLD		4096	/* input read but not yet delivered */
#define CON_QUEUE_SIZE		128
#define CON_RX			0
#define CON_TX			1
#define CON_CONFIG_SIZE		12	/* cols, rows, max_nr_ports, emerg_wr */
#define CON_REQ_MAX		(64u << 10)	/* bytes per request: bounds the vCPU's time here */
#define CON_OUTQ		(128u << 10)	/* queued output for a socket, pipe or terminal */

struct con_state {
	struct pci_func_state pci;
	struct virtio_state virtio;
	uint16_t cols, rows;		/* the device configuration (no F_SIZE: 0) */
	uint64_t tx_bytes;		/* written to the backend so far */
	uint32_t rx_len;		/* input held for the driver (version 2) */
	uint8_t rx_held[CON_RX_HOLD];
};

struct con {
	struct virtio_dev vd;
	struct chardev be;		/* src/console/chardev.c */
	bool positioned;		/* a file backend holds exactly tx_bytes */
	uint16_t cols, rows;
	uint64_t tx_bytes;
	int infd;			/* input, or -1 */
	bool rx_eof;			/* the input ended or failed */
	uint32_t rx_len;
	uint8_t rx_held[CON_RX_HOLD];
	struct virtq_elem elem;		/* large: not on the vCPU's stack */
};

static int con__check(const char *opts, char *err, size_t errlen)
{
	enum chardev_kind k;
	const char *path;

	return chardev__parse("virtio-console", opts, &k, &path, err, errlen);
}

/* A file backend starts at tx_bytes: the saved VM's output, no more. */
static void con__position(struct con *c)
{
	if (c->positioned)
		return;
	c->positioned = true;
	chardev__truncate(&c->be, c->tx_bytes);
}

static uint32_t con__transmit(struct con *c, const struct virtq_elem *e)
{
	uint32_t done = 0;

	con__position(c);
	for (unsigned int i = 0; i < e->nout && done < CON_REQ_MAX; i++) {
		size_t len = e->out[i].iov_len;

		if (len > CON_REQ_MAX - done)
			len = CON_REQ_MAX - done;
		chardev__write(&c->be, e->out[i].iov_base, len);
		done += (uint32_t)len;
	}
	c->tx_bytes += done;
	return 0;	/* nothing written into the chain */
}

static bool con__rx_ready(const struct con *c)
{
	const struct virtio_state *s = &c->vd.st;

	return (s->status & VIRTIO_S_DRIVER_OK) && !(s->status & VIRTIO_S_NEEDS_RESET) &&
	       s->q[CON_RX].enabled && !c->vd.paused;
}

/*
 * Move held input into receive buffers; read more only when all of it is
 * delivered (then the input is watched again), so input is never read
 * faster than the driver takes it.  Caller holds the device lock.
 */
static void con__deliver(struct con *c)
{
	struct virtio_dev *vd = &c->vd;
	uint16_t old = vd->st.q[CON_RX].used_idx;

	while (c->rx_len && con__rx_ready(c) && virtq__pop(vd, CON_RX, &c->elem) == 1) {
		uint32_t done = 0;

		for (unsigned int i = 0; i < c->elem.nin && done < c->rx_len; i++) {
			size_t n = c->elem.in[i].iov_len;

			if (n > c->rx_len - done)
				n = c->rx_len - done;
			memcpy(c->elem.in[i].iov_base, c->rx_held + done, n);
			done += (uint32_t)n;
		}
		memmove(c->rx_held, c->rx_held + done, c->rx_len - done);
		c->rx_len -= done;
		virtq__push(vd, CON_RX, c->elem.head, done);
	}
	virtq__notify(vd, CON_RX, old);
	if (c->infd >= 0 && !c->rx_eof)
		virtio__watch_enable(vd, c->infd, c->rx_len == 0);
}

/* The input is readable (I/O thread, device lock held). */
static void con__input(struct virtio_dev *vd, int fd)
{
	struct con *c = (struct con *)vd;

	if (!c->rx_len && !c->rx_eof) {
		ssize_t r = read(fd, c->rx_held, sizeof(c->rx_held));

		if (r > 0) {
			c->rx_len = (uint32_t)r;
		} else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
			if (r < 0)
				pr_warn("virtio-console %s: input: %s", vd->pd->name, strerror(errno));
			c->rx_eof = true;
			virtio__watch_enable(vd, fd, false);
		}
	}
	con__deliver(c);
}

static void con__notify(struct virtio_dev *vd, unsigned int q)
{
	struct con *c = (struct con *)vd;
	uint16_t old = vd->st.q[q].used_idx;

	if (q == CON_RX) {
		con__deliver(c);	/* new receive buffers */
		return;
	}
	if (q != CON_TX)
		return;
	/* at most a queue's worth per notification: the driver cannot keep us here */
	for (unsigned int n = 0; n < vd->st.q[q].size; n++) {
		if (virtq__pop(vd, q, &c->elem) != 1)
			break;
		virtq__push(vd, q, c->elem.head, con__transmit(c, &c->elem));
	}
	virtq__notify(vd, q, old);
}

static void con__config_read(struct virtio_dev *vd, unsigned int off, uint8_t *data, unsigned int len)
{
	struct con *c = (struct con *)vd;
	uint8_t cfg[CON_CONFIG_SIZE] = { 0 };

	/* max_nr_ports and emerg_wr read as 0: neither feature is offered */
	cfg[0] = (uint8_t)c->cols;
	cfg[1] = (uint8_t)(c->cols >> 8);
	cfg[2] = (uint8_t)c->rows;
	cfg[3] = (uint8_t)(c->rows >> 8);
	memcpy(data, cfg + off, len);
}

static void con__config_write(struct virtio_dev *vd, unsigned int off, const uint8_t *data, unsigned int len)
{
	/* only emerg_wr is writable, and only with VIRTIO_CONSOLE_F_EMERG_WRITE */
	(void)vd; (void)off; (void)data; (void)len;
}

static const struct virtio_type con_type = {
	.device_id = 3,
	.class_code = 0x078000,		/* simple communication controller, other */
	.features = 0,			/* no F_SIZE, F_MULTIPORT, F_EMERG_WRITE */
	.nqueues = 2,
	.queue_max = CON_QUEUE_SIZE,
	.queue_notify = con__notify,
	.config_size = CON_CONFIG_SIZE,
	.config_read = con__config_read,
	.config_write = con__config_write,
};

static int con__init(struct pci_dev *pd, const char *opts, char *err, size_t errlen)
{
	struct con *c;
	enum chardev_kind k;
	const char *path;
	char label[sizeof(((struct chardev *)0)->who)];
	int in, ret = chardev__parse("virtio-console", opts, &k, &path, err, errlen);

	if (ret)
		return ret;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->positioned = !pd->vm->cfg->restore;	/* a fresh start truncated it */
	snprintf(label, sizeof(label), "virtio-console %s", pd->name);
	/* a restore keeps the saved VM's output: con__restore cuts it */
	ret = chardev__open(&c->be, "virtio-console", label, k, path, !c->positioned, CON_OUTQ, "con-out", err,
			    errlen);
	if (ret) {
		free(c);
		pd->priv = NULL;
		return ret;
	}
	ret = virtio__init(pd, &c->vd, &con_type);
	c->infd = -1;
	/* COM1 has the keyboard when it uses stdio */
	in = chardev__input_fd(&c->be, pd->vm->cfg->com1 != CONSOLE_STDIO);
	if (!ret && in >= 0) {
		int w = virtio__watch(&c->vd, in, con__input);

		/* a regular file or /dev/null cannot be watched: no input, as with file: */
		if (!w)
			c->infd = in;
		else
			pr_debug("virtio-console %s: input not watchable: %s", pd->name, strerror(-w));
	}
	if (ret) {
		snprintf(err, errlen, "PCI %s: %s", pd->name, strerror(-ret));
		chardev__close(&c->be);
		free(c);
		pd->priv = NULL;
	}
	return ret;
}

static void con__exit(struct pci_dev *pd)
{
	struct con *c = pd->priv;

	if (!c)
		return;
	virtio__exit(&c->vd);
	chardev__close(&c->be);	/* flushed, within OUTQ_FLUSH_MAX_MS */
	free(c);
}

static void con__save(void *priv, void *state)
{
	struct pci_dev *pd = priv;
	struct con *c = pd->priv;
	struct con_state *s = state;

	pthread_mutex_lock(&pd->lock);
	pci__save(pd, &s->pci);
	s->virtio = c->vd.st;
	s->cols = c->cols;
	s->rows = c->rows;
	s->tx_bytes = c->tx_bytes;
	s->rx_len = c->rx_len;
	memcpy(s->rx_held, c->rx_held, c->rx_len);
	pthread_mutex_unlock(&pd->lock);
}

static void con__encode(struct sbuf *b, const void *state)
{
	const struct con_state *s = state;

	enc__map(b);
	pci__encode(b, &s->pci);
	virtio__encode(b, &s->virtio);
	enc__u16(b, "cols", s->cols);
	enc__u16(b, "rows", s->rows);
	enc__u64(b, "tx_bytes", s->tx_bytes);
	enc__bytes(b, "rx_held", s->rx_held, s->rx_len);
	enc__end(b);
}

/* Version 1 had no receive path: nothing was held. */
static void virtio_console_v1_to_v2(struct con_state *s)
{
	s->rx_len = 0;
}

/* Version 2 did not record where the function was (pci.h). */
static void virtio_console_v2_to_v3(struct con_state *s)
{
	pci__func_unrecorded(&s->pci);
}

static void con__decode(struct dec *d, const cbor_item_t *m, uint32_t version, void *state)
{
	struct con_state *s = state;

	pci__decode(d, m, &s->pci, VIRTIO_PCI_VENDOR, VIRTIO_PCI_DEVICE_BASE + con_type.device_id,
		    con_type.nqueues + 1u, version >= 3);
	virtio__decode(d, m, &s->virtio, &con_type, d->mem_size);
	s->cols = dec__u16(d, m, "cols");
	s->rows = dec__u16(d, m, "rows");
	s->tx_bytes = dec__u64(d, m, "tx_bytes");
	if (s->tx_bytes > (uint64_t)INT64_MAX)
		dec__fail(d, "tx_bytes %llu out of range", (unsigned long long)s->tx_bytes);
	if (version >= 2)
		s->rx_len = (uint32_t)dec__bytes_var(d, m, "rx_held", s->rx_held, sizeof(s->rx_held));
	else
		virtio_console_v1_to_v2(s);
	if (version < 3)
		virtio_console_v2_to_v3(s);
}

static int con__restore(void *priv, const void *state, char *err, size_t errlen)
{
	struct pci_dev *pd = priv;
	struct con *c = pd->priv;
	const struct con_state *s = state;
	int ret;

	pthread_mutex_lock(&pd->lock);
	ret = pci__check_placement(pd, &s->pci, err, errlen);
	if (!ret)
		ret = virtio__restore(&c->vd, &s->virtio, err, errlen);
	if (!ret) {
		pci__restore(pd, &s->pci);
		c->cols = s->cols;
		c->rows = s->rows;
		c->tx_bytes = s->tx_bytes;
		c->rx_len = s->rx_len;
		memcpy(c->rx_held, s->rx_held, s->rx_len);
		c->positioned = false;
		con__position(c);
		/* held input waits for the restore's kick of the receive queue */
		if (c->infd >= 0 && c->rx_len)
			virtio__watch_enable(&c->vd, c->infd, false);
	}
	pthread_mutex_unlock(&pd->lock);
	return ret;
}

static const struct device_ops con_ops = {
	.name = "virtio-console",
	.state_version = CON_STATE_VERSION,
	.state_size = sizeof(struct con_state),
	.save = con__save,
	.encode = con__encode,
	.decode = con__decode,
	.restore = con__restore,
};

static const struct pci_devtype con_pci = {
	.ops = &con_ops,
	.check = con__check,
	.init = con__init,
	.exit = con__exit,
};
PCI_DEVTYPE_REGISTER(con_pci, DEVICE_ORDER_VIRTIO_CONSOLE);
