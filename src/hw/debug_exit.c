/*
 * --debug-exit: compatible with QEMU's isa-debug-exit.  A write of V to the
 * port ends khyve with status (V << 1) | 1, so a test guest can report
 * pass/fail through the exit status.  Also claims port 0x80 (POST codes),
 * which firmware-style code writes for delays and which is always ignored.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "khyve/device.h"
#include "khyve/log.h"
#include "khyve/vm.h"

#define POST_PORT 0x80
#define DEBUG_EXIT_SIZE 4

static void debug_exit__write(void *opaque, uint64_t off, const uint8_t *data, unsigned int len)
{
	struct vm *vm = opaque;
	uint32_t v = 0;

	(void)off;
	memcpy(&v, data, len < sizeof(v) ? len : sizeof(v));
	pr_debug("debug-exit: guest wrote 0x%x", v);
	exit__request(vm, (int)(((v << 1) | 1) & 0xff));
}

static int debug_exit__init(struct vm *vm, void **priv, char *err, size_t errlen)
{
	int ret;

	ret = bus__register(&vm->bus, BUS_PIO, POST_PORT, 1, NULL, NULL, NULL, "post");
	if (ret)
		return ret;
	*priv = NULL;
	if (!vm->cfg->debug_exit)
		return 0;
	ret = bus__register(&vm->bus, BUS_PIO, vm->cfg->debug_exit_port, DEBUG_EXIT_SIZE,
			    NULL, debug_exit__write, vm, "debug-exit");
	if (ret == -EBUSY)
		snprintf(err, errlen, "--debug-exit port 0x%x overlaps another device",
			 vm->cfg->debug_exit_port);
	return ret;
}

static const struct device_ops debug_exit_ops = {
	.name = "debug-exit",
	.init = debug_exit__init,
};
DEVICE_REGISTER(debug_exit_ops, DEVICE_ORDER_DEBUG_EXIT);
