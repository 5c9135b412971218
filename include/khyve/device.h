/*
 * Device descriptors.  Each device file registers one descriptor: a
 * struct device_ops with DEVICE_REGISTER(), or a PCI device type with
 * PCI_DEVTYPE_REGISTER() (pci.h), whose ops that one registration puts in
 * the same list.  device.c walks them all at start-up, so there is no
 * second list to keep in step.
 */
#ifndef KHYVE_DEVICE_H
#define KHYVE_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;

struct sbuf;
struct dec;
struct cbor_item_t;
struct vm_config;

#define DEVICE_NAME_MAX 64	/* = SNAP_NAME_MAX */

struct device_ops {
	/*
	 * The name of the device's snapshot section, or for a type whose
	 * instances a bus creates (init NULL: PCI functions, see pci.h) the
	 * base of its instances' names, "<name>.<slot>[.<func>]".
	 */
	const char *name;
	/* Create the device if the configuration asks for it.  Returns 0 and
	 * sets *priv (NULL: nothing to tear down), or -errno with a one-line
	 * reason in err.  NULL for bus-created types. */
	int (*init)(struct vm *vm, void **priv, char *err, size_t errlen);
	/*
	 * For a type with init and snapshot hooks: whether init creates the
	 * device for configuration cfg (NULL: always).  A snapshot's sections
	 * are checked against its configuration with it before anything of
	 * a VM exists.
	 */
	bool (*present)(const struct vm_config *cfg);
	void (*exit)(struct vm *vm, void *priv);
	/*
	 * Optional, for devices that work outside the vCPU threads.  pause:
	 * the vCPUs are stopped; finish everything in flight and change
	 * neither guest memory nor device state until resume.  Every wait in
	 * it is bounded (a disk's storage may stall for ever): what does not
	 * finish in a few seconds fails the pause with -errno (-ETIMEDOUT,
	 * -EBUSY) and a message in err that names the device; the device is
	 * then running as before, and resume is not called.
	 */
	int (*pause)(void *priv, char *err, size_t errlen);
	void (*resume)(void *priv);
	/*
	 * Optional: a snapshot that includes disks is being taken, with the VM
	 * paused and state just saved.  Copy the device's backing file to
	 * path (a temporary name the save renames to name, in the snapshot's
	 * directory, once everything else is written) and record name in
	 * state, so that restore uses the copy.  0, or -errno with err.
	 */
	int (*copy_files)(void *priv, void *state, const char *path, const char *name,
			  char *err, size_t errlen);

	/*
	 * Snapshot hooks (all or none).  The state is a plain struct of
	 * state_size bytes, with no pointers or fds.  save copies the live
	 * device into it and cannot fail; encode writes it with named fields;
	 * decode reads a section of any version up to state_version (older
	 * versions are upgraded there), validating every value; restore puts a
	 * decoded state into a freshly initialised device.
	 */
	uint32_t state_version;
	size_t state_size;
	void (*save)(void *priv, void *state);
	void (*encode)(struct sbuf *b, const void *state);
	void (*decode)(struct dec *d, const struct cbor_item_t *map, uint32_t version, void *state);
	int (*restore)(void *priv, const void *state, char *err, size_t errlen);
};

struct device_instance {
	const struct device_ops *ops;
	void *priv;
	char name[DEVICE_NAME_MAX + 1];	/* its snapshot section */
	struct device_instance *next;
};

/*
 * The order device__init_all creates devices in, given by each device's one
 * registration.  It is also the order of the instance list, hence of the
 * pause hooks and of the device sections in a snapshot file, so a value
 * here never changes for an existing device.  Ties (none today) are broken
 * by name: the order never depends on the order the linker laid the
 * registrations out in.  PCI device types have no init (the bus creates
 * their instances in slot order); their order places them in device__type.
 */
enum device_order {
	DEVICE_ORDER_SERIAL		= 100,	/* COM1 */
	DEVICE_ORDER_I8042		= 200,
	DEVICE_ORDER_DEBUG_EXIT		= 300,
	DEVICE_ORDER_ACPI_PM		= 400,
	DEVICE_ORDER_PCI_HOSTBRIDGE	= 500,	/* PCI type, slot 0 */
	DEVICE_ORDER_PCI_BUS		= 510,	/* creates the PCI functions */
	DEVICE_ORDER_VIRTIO_RNG		= 600,	/* PCI types */
	DEVICE_ORDER_VIRTIO_CONSOLE	= 610,
	DEVICE_ORDER_VIRTIO_NET		= 620,
	DEVICE_ORDER_VIRTIO_BLK		= 630,
	DEVICE_ORDER_TEST		= 900,	/* the unit tests' own types */
};

/*
 * One entry of the registry section.  ops points to a device_ops pointer,
 * so that a PCI type's descriptor is the one place its ops are named.
 * Aligned to its size so that the linker packs the section as an array.
 */
struct device_reg {
	const struct device_ops *const *ops;
	unsigned int order;		/* enum device_order */
} __attribute__((aligned(16)));

/*
 * Register a device type that is not a PCI device type (those register
 * with PCI_DEVTYPE_REGISTER alone, which puts their ops here too), to be
 * created at order (enum device_order).
 */
#define DEVICE_REGISTER(ops_, order_)					\
	static const struct device_ops *const __device_ptr_##ops_ = &(ops_);	\
	static const struct device_reg __device_##ops_			\
	__attribute__((used, section("khyve_devices"))) = { &__device_ptr_##ops_, (order_) }

int device__init_all(struct vm *vm, char *err, size_t errlen);
/*
 * Append an instance a bus created (exit is the bus's business, not the
 * ops'); 0 or -ENOMEM.
 */
int device__add(struct vm *vm, const struct device_ops *ops, void *priv, const char *name);
/*
 * The descriptor a section names: a device's exact name, or for a
 * bus-created type "<name>.<slot>" / "<name>.<slot>.<func>" (decimal, no
 * leading zeros, slot < 32, func 1..7).
 */
const struct device_ops *device__find(const char *name);
/* The i-th registered device type in device order, or NULL past the last. */
const struct device_ops *device__type(unsigned int i);
void device__exit_all(struct vm *vm);
/*
 * Sort n registrations by order, then name (a stable insertion sort: equal
 * entries keep their places).  What the registry is sorted with; public for
 * the unit tests.
 */
void device__sort(const struct device_reg **regs, size_t n);
/*
 * Every device's pause hook, in creation order; resume in reverse.  The
 * first pause that fails ends it: the devices paused before it resume, and
 * its -errno and message (err) are returned.
 */
int device__pause_all(struct vm *vm, char *err, size_t errlen);
void device__resume_all(struct vm *vm);

#endif
