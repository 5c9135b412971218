/*
 * i8042 keyboard controller, only as far as guests use it to reset the
 * machine: command 0xFE (pulse reset line) or a write of the output port
 * (command 0xD1) with the reset bit low.  No keyboard is attached.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "khyve/device.h"
#include "khyve/log.h"
#include "khyve/snapfmt.h"
#include "khyve/vm.h"

#define I8042_DATA	0x60
#define I8042_CMD	0x64
#define STATUS_SYS	0x04	/* system flag: self-test passed */

struct i8042 {
	struct vm *vm;
	pthread_mutex_t lock;
	uint8_t pending_cmd;
};

static void i8042__read(void *opaque, uint64_t off, uint8_t *data, unsigned int len)
{
	(void)opaque;
	for (unsigned int i = 0; i < len; i++)
		data[i] = 0xff;
	if (off == 0)
		data[0] = 0;	/* no keyboard data */
	/* status: output buffer empty, input buffer empty, self-test passed */
	if (off == I8042_CMD - I8042_DATA)
		data[0] = STATUS_SYS;
}

static void i8042__write(void *opaque, uint64_t off, const uint8_t *data, unsigned int len)
{
	struct i8042 *k = opaque;
	bool reset = false;

	(void)len;
	pthread_mutex_lock(&k->lock);
	if (off == I8042_CMD - I8042_DATA) {
		k->pending_cmd = 0;
		if (data[0] == 0xfe)
			reset = true;
		else if (data[0] == 0xd1)
			k->pending_cmd = 0xd1;
	} else if (off == 0 && k->pending_cmd == 0xd1) {
		k->pending_cmd = 0;
		reset = !(data[0] & 1);
	}
	pthread_mutex_unlock(&k->lock);
	if (reset) {
		pr_debug("guest reset through the i8042");
		exit__request(k->vm, VM_EXIT_RESET);
	}
}

static int i8042__init(struct vm *vm, void **priv, char *err, size_t errlen)
{
	struct i8042 *k = calloc(1, sizeof(*k));
	int ret;

	if (!k)
		return -ENOMEM;
	(void)err;
	(void)errlen;
	k->vm = vm;
	pthread_mutex_init(&k->lock, NULL);
	/* 0x60..0x64 as one range; 0x61 (speaker) is handled by the in-kernel
	 * PIT and never reaches us */
	ret = bus__register(&vm->bus, BUS_PIO, I8042_DATA, 5, i8042__read, i8042__write, k, "i8042");
	if (ret) {
		free(k);
		return ret;
	}
	*priv = k;
	return 0;
}

static void i8042__exit(struct vm *vm, void *priv)
{
	(void)vm;
	free(priv);
}

struct i8042_state {
	uint8_t pending_cmd;
};

static void i8042__save(void *priv, void *state)
{
	struct i8042 *k = priv;
	struct i8042_state *s = state;

	pthread_mutex_lock(&k->lock);
	s->pending_cmd = k->pending_cmd;
	pthread_mutex_unlock(&k->lock);
}

static void i8042__encode(struct sbuf *b, const void *state)
{
	const struct i8042_state *s = state;

	enc__map(b);
	enc__u8(b, "pending_cmd", s->pending_cmd);
	enc__end(b);
}

static void i8042__decode(struct dec *d, const cbor_item_t *m, uint32_t version, void *state)
{
	struct i8042_state *s = state;

	(void)version;
	s->pending_cmd = dec__u8(d, m, "pending_cmd");
	if (!d->ret && s->pending_cmd != 0 && s->pending_cmd != 0xd1)
		dec__fail(d, "pending_cmd 0x%x is not a command this i8042 waits on", s->pending_cmd);
}

static int i8042__restore(void *priv, const void *state, char *err, size_t errlen)
{
	struct i8042 *k = priv;
	const struct i8042_state *s = state;

	(void)err; (void)errlen;
	k->pending_cmd = s->pending_cmd;
	return 0;
}

static const struct device_ops i8042_ops = {
	.name = "i8042",
	.init = i8042__init,
	.exit = i8042__exit,
	.state_version = 1,
	.state_size = sizeof(struct i8042_state),
	.save = i8042__save,
	.encode = i8042__encode,
	.decode = i8042__decode,
	.restore = i8042__restore,
};
DEVICE_REGISTER(i8042_ops, DEVICE_ORDER_I8042);
