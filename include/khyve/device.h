/*
 * Device descriptors.  Each device file registers one descriptor with
 * DEVICE_REGISTER(); vm.c walks them all at start-up, so there is no second
 * list to keep in step.
 */
#ifndef KHYVE_DEVICE_H
#define KHYVE_DEVICE_H

#include <stddef.h>

struct vm;

struct device_ops {
	const char *name;
	/* Create the device if the configuration asks for it.  Returns 0 and
	 * sets *priv (NULL: nothing to tear down), or -errno with a one-line
	 * reason in err. */
	int (*init)(struct vm *vm, void **priv, char *err, size_t errlen);
	void (*exit)(struct vm *vm, void *priv);
};

struct device_instance {
	const struct device_ops *ops;
	void *priv;
	struct device_instance *next;
};

#define DEVICE_REGISTER(ops_)						\
	static const struct device_ops *const __device_##ops_		\
	__attribute__((used, section("khyve_devices"))) = &(ops_)

int device__init_all(struct vm *vm, char *err, size_t errlen);
void device__exit_all(struct vm *vm);

#endif
