#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "khyve/device.h"
#include "khyve/log.h"
#include "khyve/vm.h"

/*
 * weak: a unit-test binary that links no device has no such section.  Each
 * entry is a struct device_reg: DEVICE_REGISTER's, or PCI_DEVTYPE_REGISTER's
 * for a PCI type's ops.  The linker lays them out in link order; everything
 * here goes by the sorted copy instead (registry()).
 */
extern const struct device_reg __start_khyve_devices[] __attribute__((weak));
extern const struct device_reg __stop_khyve_devices[] __attribute__((weak));

#define DEVICE_TYPES_MAX 64

static const struct device_reg *sorted[DEVICE_TYPES_MAX];
static size_t nsorted;
static pthread_once_t sorted_once = PTHREAD_ONCE_INIT;

static int reg_cmp(const struct device_reg *a, const struct device_reg *b)
{
	if (a->order != b->order)
		return a->order < b->order ? -1 : 1;
	return strcmp((*a->ops)->name, (*b->ops)->name);
}

void device__sort(const struct device_reg **regs, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		const struct device_reg *r = regs[i];
		size_t j = i;

		for (; j > 0 && reg_cmp(regs[j - 1], r) > 0; j--)
			regs[j] = regs[j - 1];
		regs[j] = r;
	}
}

static void sort_registry(void)
{
	size_t n = (size_t)(__stop_khyve_devices - __start_khyve_devices);

	if (n > DEVICE_TYPES_MAX) {
		/* a build with more types than this must raise the limit */
		pr_err("%zu device types registered, only %d are used", n, DEVICE_TYPES_MAX);
		n = DEVICE_TYPES_MAX;
	}
	for (size_t i = 0; i < n; i++)
		sorted[i] = &__start_khyve_devices[i];
	device__sort(sorted, n);
	nsorted = n;
}

/* the i-th registered ops in device order, NULL past the last */
static const struct device_ops *registry(size_t i)
{
	pthread_once(&sorted_once, sort_registry);
	return i < nsorted ? *sorted[i]->ops : NULL;
}

int device__add(struct vm *vm, const struct device_ops *ops, void *priv, const char *name)
{
	struct device_instance **tail = &vm->devices;
	struct device_instance *d = calloc(1, sizeof(*d));

	if (!d)
		return -ENOMEM;
	d->ops = ops;
	d->priv = priv;
	snprintf(d->name, sizeof(d->name), "%s", name);
	while (*tail)
		tail = &(*tail)->next;
	*tail = d;
	return 0;
}

int device__init_all(struct vm *vm, char *err, size_t errlen)
{
	const struct device_ops *o;

	for (size_t i = 0; (o = registry(i)); i++) {
		void *priv = NULL;
		int ret;

		if (!o->init)
			continue;	/* instances come from a bus */
		err[0] = '\0';
		ret = o->init(vm, &priv, err, errlen);
		if (!ret && device__add(vm, o, priv, o->name)) {
			if (o->exit && priv)
				o->exit(vm, priv);
			ret = -ENOMEM;
		}
		if (ret) {
			if (!err[0])
				snprintf(err, errlen, "device %s: %s", o->name, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

/* "N" decimal without leading zeros, below max */
static bool small_number(const char *p, size_t len, unsigned int max)
{
	unsigned int n = 0;

	if (!len || (p[0] == '0' && len > 1) || len > 2)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		n = n * 10 + (unsigned int)(p[i] - '0');
	}
	return n < max;
}

static bool instance_suffix(const char *s)
{
	const char *dot = strchr(s, '.');

	if (!dot)
		return small_number(s, strlen(s), 32);
	return small_number(s, (size_t)(dot - s), 32) && small_number(dot + 1, strlen(dot + 1), 8) &&
	       strcmp(dot + 1, "0");
}

const struct device_ops *device__type(unsigned int i)
{
	return registry(i);
}

const struct device_ops *device__find(const char *name)
{
	const struct device_ops *o;

	for (size_t i = 0; (o = registry(i)); i++) {
		size_t n = strlen(o->name);

		if (o->init && !strcmp(o->name, name))
			return o;
		if (!o->init && !strncmp(o->name, name, n) && name[n] == '.' &&
		    instance_suffix(name + n + 1))
			return o;
	}
	return NULL;
}

/* Resume d and the devices after it, up to (not including) end, in reverse. */
static void resume_from(struct device_instance *d, struct device_instance *end)
{
	if (d == end)
		return;
	resume_from(d->next, end);
	if (d->ops->resume && d->priv)
		d->ops->resume(d->priv);
}

int device__pause_all(struct vm *vm, char *err, size_t errlen)
{
	for (struct device_instance *d = vm->devices; d; d = d->next) {
		int ret;

		if (!d->ops->pause || !d->priv)
			continue;
		err[0] = '\0';
		ret = d->ops->pause(d->priv, err, errlen);
		if (ret) {
			if (!err[0])
				snprintf(err, errlen, "device %s: cannot pause: %s", d->name, strerror(-ret));
			resume_from(vm->devices, d);
			return ret;
		}
	}
	return 0;
}

void device__resume_all(struct vm *vm)
{
	resume_from(vm->devices, NULL);
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
