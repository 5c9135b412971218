#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "khyve/device.h"
#include "khyve/log.h"
#include "khyve/vm.h"

/* weak: a unit-test binary that links no device has no such section */
extern const struct device_ops *const __start_khyve_devices[] __attribute__((weak));
extern const struct device_ops *const __stop_khyve_devices[] __attribute__((weak));

int device__init_all(struct vm *vm, char *err, size_t errlen)
{
	struct device_instance **tail = &vm->devices;

	for (const struct device_ops *const *o = __start_khyve_devices; o < __stop_khyve_devices; o++) {
		struct device_instance *d = calloc(1, sizeof(*d));
		int ret;

		if (!d)
			return -ENOMEM;
		err[0] = '\0';
		ret = (*o)->init(vm, &d->priv, err, errlen);
		if (ret) {
			free(d);
			if (!err[0])
				snprintf(err, errlen, "device %s: %s", (*o)->name, strerror(-ret));
			return ret;
		}
		d->ops = *o;
		*tail = d;
		tail = &d->next;
	}
	return 0;
}

const struct device_ops *device__find(const char *name)
{
	for (const struct device_ops *const *o = __start_khyve_devices; o < __stop_khyve_devices; o++)
		if (!strcmp((*o)->name, name))
			return *o;
	return NULL;
}

void device__exit_all(struct vm *vm)
{
	struct device_instance *d = vm->devices, *next;

	for (; d; d = next) {
		next = d->next;
		if (d->ops->exit && d->priv)
			d->ops->exit(vm, d->priv);
		free(d);
	}
	vm->devices = NULL;
}
