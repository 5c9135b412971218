/*
 * Device descriptors.  Each device file registers one descriptor with
 * DEVICE_REGISTER(); vm.c walks them all at start-up, so there is no second
 * list to keep in step.
 */
#ifndef KHYVE_DEVICE_H
#define KHYVE_DEVICE_H

struct vm;

struct device_ops {
	const char *name;
	/* Create the device if the configuration asks for it.  Returns 0 and
	 * sets *priv (NULL: not present in this VM), or -errno. */
	int (*init)(struct vm *vm, void **priv);
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

int device__init_all(struct vm *vm);
void device__exit_all(struct vm *vm);

#endif
