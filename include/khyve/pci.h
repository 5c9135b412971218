/*
 * PCI bus 0: a host bridge at 00:00.0 and the functions given with -s.
 *
 * Configuration space: mechanism #1 (ports 0xCF8/0xCFC) and PCI Express
 * ECAM (1 MiB of MMIO at PCI_ECAM_BASE for bus 0, described by the ACPI
 * MCFG table, see acpi.h), one code path for both: 1-, 2- and 4-byte
 * naturally aligned accesses; anything else reads all-ones and writes
 * nothing; the extended space (256-4095) of a function reads zero.
 *
 * BARs: khyve places every BAR itself, as firmware would: 32-bit ones in
 * [PCI_MMIO_BASE, PCI_MMIO_END), 64-bit ones (a pair of registers) above
 * the top of guest RAM, from max(4 GiB, end of RAM) up.  A guest may size
 * a BAR (write all-ones, read back) but a BAR moved elsewhere stops
 * decoding (see pci.c).
 *
 * Interrupts: MSI-X, each vector delivered through a KVM irqfd and a GSI
 * route of its own (KVM_SIGNAL_MSI when KVM refuses them), or INTx
 * (function f on pin A + f % 4) on IOAPIC pin 16 + (slot + f % 4) % 8,
 * described in the MP table.
 */
#ifndef KHYVE_PCI_H
#define KHYVE_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "khyve/bus.h"
#include "khyve/config.h"
#include "khyve/device.h"
#include "khyve/mptable.h"

struct vm;
struct sbuf;
struct dec;
struct cbor_item_t;

#define PCI_CONF_ADDR		0xCF8
#define PCI_CONF_DATA		0xCFC
/*
 * The 32-bit MMIO hole (3-4 GiB): 32-bit BARs from 0xC0000000 up to ECAM,
 * then ECAM for bus 0; the IOAPIC, LAPIC and KVM's TSS pages are far above.
 */
#define PCI_MMIO_BASE		0xC0000000ULL
#define PCI_MMIO_END		0xE0000000ULL
#define PCI_ECAM_BASE		0xE0000000ULL
#define PCI_ECAM_SIZE		0x100000ULL	/* bus 0: 32 devices x 8 functions x 4 KiB */
#define PCI_MMIO64_MIN		0x100000000ULL	/* 64-bit BARs: at or above 4 GiB, above RAM */
#define PCI_MSI_GSI_BASE	24		/* GSIs of MSI-X vectors: after the IOAPIC's pins */
#define PCI_INTX_GSI_BASE	16		/* IOAPIC pins 16..23 */
#define PCI_INTX_GSI_COUNT	8
#define PCI_NBARS		6
#define PCI_MSIX_MAX		8		/* vectors per function */

/* config space registers */
#define PCI_VENDOR_ID		0x00
#define PCI_DEVICE_ID		0x02
#define PCI_COMMAND		0x04
#define PCI_STATUS		0x06
#define PCI_REVISION		0x08
#define PCI_CLASS_PROG		0x09
#define PCI_HEADER_TYPE		0x0e
#define PCI_BAR0		0x10
#define PCI_BAR_MEM64		0x4		/* BAR type bits 2:1 = 10b: 64-bit */
#define PCI_BAR_PREFETCH	0x8
#define PCI_SUBSYS_VENDOR	0x2c
#define PCI_SUBSYS_ID		0x2e
#define PCI_CAP_PTR		0x34
#define PCI_INT_LINE		0x3c
#define PCI_INT_PIN		0x3d

#define PCI_CMD_IO		0x0001
#define PCI_CMD_MEM		0x0002
#define PCI_CMD_MASTER		0x0004
#define PCI_CMD_INTX_OFF	0x0400
#define PCI_STATUS_INTX		0x0008
#define PCI_STATUS_CAPS		0x0010

#define PCI_CAP_MSIX		0x11
#define PCI_CAP_VENDOR		0x09
#define PCI_MSIX_ENABLE		0x8000
#define PCI_MSIX_MASKALL	0x4000

struct pci_msix_entry {
	uint64_t addr;
	uint32_t data;
	uint32_t ctrl;		/* bit 0: masked */
};

/* Where khyve put one BAR (not what the guest wrote in its register). */
struct pci_bar_place {
	uint8_t index;		/* 0-5 */
	uint64_t addr, size;
};

/* The state every function has, as a plain struct (part of its section). */
struct pci_func_state {
	uint8_t cfg[256];
	uint16_t msix_nvec;	/* 0: no MSI-X capability */
	struct pci_msix_entry msix[PCI_MSIX_MAX];
	uint8_t msix_pba;	/* pending bits, vector i = bit i */
	uint8_t intx_level;
	/*
	 * The placement the guest's drivers rely on, recorded so that a
	 * restore can tell when it would put the function elsewhere: false
	 * in a section older than the record (pci__func_unrecorded()).
	 */
	bool placement;
	uint8_t nbars;
	struct pci_bar_place bars[PCI_NBARS];
	uint8_t intx_gsi;	/* the IOAPIC input INTx is wired to */
};

struct pci_dev;
struct pci_bus;

/*
 * How an MSI-X vector reaches KVM (not state: rebuilt from the table on
 * restore).  efd is registered with KVM_IRQFD on gsi; KVM's GSI routing
 * table routes gsi to the MSI addr/data below when routed is true.  Written
 * under the function's lock and the bus's route_lock; read under either.
 */
struct pci_msix_route {
	int efd;		/* -1: no irqfd, vectors go by KVM_SIGNAL_MSI */
	uint32_t gsi;
	bool routed;
	uint64_t addr;
	uint32_t data;
};

/*
 * A PCI device type: its device_ops carries the name and the snapshot hooks
 * (priv is the struct pci_dev, sections are "<name>.<slot>[.<func>]"), all
 * of them unless stateless; check validates -s options before anything is
 * created; init builds the function's config space, BARs and capabilities.
 */
struct pci_devtype {
	const struct device_ops *ops;
	bool stateless;		/* nothing in it can change: no snapshot hooks, no section */
	int (*check)(const char *opts, char *err, size_t errlen);
	int (*init)(struct pci_dev *pd, const char *opts, char *err, size_t errlen);
	void (*exit)(struct pci_dev *pd);
};

/*
 * The one registration of a PCI device type: the type for -s and the bus,
 * and its ops for the device registry (device.h: start-up, snapshots,
 * --inspect), at order (enum device_order in device.h).  Such a type's
 * ops must not be DEVICE_REGISTERed as well.
 */
#define PCI_DEVTYPE_REGISTER(t_, order_)				\
	static const struct pci_devtype *const __pcidev_##t_		\
	__attribute__((used, section("khyve_pcidevs"))) = &(t_);	\
	static const struct device_reg __pcidev_ops_##t_		\
	__attribute__((used, section("khyve_devices"))) = { &(t_).ops, (order_) }

struct pci_bar {
	uint64_t size;		/* power of two >= 4096, 0: unused or a 64-bit BAR's upper half */
	uint64_t addr;		/* where khyve placed it */
	uint8_t type;		/* the low bits of the register: PCI_BAR_MEM64, PCI_BAR_PREFETCH */
	bus_read_fn read;	/* offset within the BAR, pd as opaque */
	bus_write_fn write;
	struct pci_dev *pd;	/* the bus range's opaque is this bar */
	unsigned int n;
};

struct pci_dev {
	struct vm *vm;
	const struct pci_devtype *type;
	uint8_t slot, func;
	char name[DEVICE_NAME_MAX + 1];	/* its section: "virtio-rnd.3" */
	pthread_mutex_t lock;	/* config space, MSI-X and the device's state */
	struct pci_func_state st;
	uint8_t wmask[256];	/* guest-writable bits of cfg */
	uint8_t cap_end;	/* next free config byte for a capability */
	uint8_t cap_last;	/* offset of the last capability, 0: none */
	uint8_t msix_cap;	/* offset of the MSI-X capability */
	uint8_t msix_bar;
	uint32_t msix_table, msix_pba;	/* offsets in that BAR */
	struct pci_bar bar[PCI_NBARS];
	struct pci_msix_route msix_route[PCI_MSIX_MAX];
	struct pci_bus *bus;
	void *priv;		/* the device type's */
	/*
	 * Optional, under lock: a configuration access to [off, off + len)
	 * is about to be read from cfg, or has just been written to it.  For
	 * registers whose content is not plain storage (virtio's pci_cfg_data
	 * window into a BAR).
	 */
	void (*cfg_access)(struct pci_dev *pd, unsigned int off, unsigned int len, bool is_write);
	/*
	 * Optional, set by the type's init: the BARs have their addresses
	 * (0 or -errno: the VM is not created); the VM pauses or resumes
	 * (see device_ops.pause).
	 */
	int (*placed)(struct pci_dev *pd);
	int (*pause)(struct pci_dev *pd, char *err, size_t errlen);
	void (*resume)(struct pci_dev *pd);
};

struct pci_bus {
	pthread_mutex_t lock;
	uint32_t conf_addr;	/* last value written to 0xCF8 */
	struct pci_dev *dev[32][8];
	uint64_t mmio_next;	/* 32-bit BAR placement */
	uint64_t mmio64_next;	/* 64-bit BAR placement, above RAM */
	uint64_t mmio64_end;	/* the guest's physical address limit (CPUID 0x80000008), or 2^52 */
	/*
	 * KVM's GSI routing table is VM-wide and replaced whole: it is
	 * rebuilt (the irqchip's default routes plus every routed vector)
	 * under route_lock, which is taken after a function's lock, never
	 * before.
	 */
	pthread_mutex_t route_lock;
	uint32_t gsi_next;	/* next free GSI for an MSI-X vector */
	bool route_failed;	/* KVM_SET_GSI_ROUTING failed once (logged) */
};

/* The snapshot section of the function sc: "<device>.<slot>[.<func>]". */
void pci__instance_name(const struct slot_config *sc, char *buf, size_t len);
/* A device type by name, or NULL. */
const struct pci_devtype *pci__find_type(const char *name);
/* The i-th registered PCI device type, or NULL past the last. */
const struct pci_devtype *pci__type(unsigned int i);
/* Validate DEVICE and OPTIONS of a -s argument; 0 or -EINVAL with err. */
int pci__check_device(const char *name, const char *opts, char *err, size_t errlen);

/* For device types' init: identity, BARs, capabilities. */
void pci__set_ids(struct pci_dev *pd, uint16_t vendor, uint16_t device, uint8_t rev,
		  uint32_t class_code, uint16_t subvendor, uint16_t subsys);
/* A 32-bit memory BAR n of size bytes (a power of two >= 4096). */
int pci__add_bar(struct pci_dev *pd, unsigned int n, uint32_t size, bus_read_fn read, bus_write_fn write);
/*
 * A 64-bit memory BAR: registers n (low half, type bits 0b100, plus
 * PCI_BAR_PREFETCH if flags has it) and n + 1 (high half); size is a power
 * of two >= 4096, possibly 4 GiB or more.  Placed above guest RAM.
 */
int pci__add_bar64(struct pci_dev *pd, unsigned int n, uint64_t size, unsigned int flags,
		   bus_read_fn read, bus_write_fn write);
/* Append a capability of len bytes (id, next filled in); returns its offset or 0. */
uint8_t pci__add_cap(struct pci_dev *pd, uint8_t id, uint8_t len);
/* MSI-X with nvec vectors, table and PBA in BAR bar at the given offsets. */
int pci__add_msix(struct pci_dev *pd, unsigned int nvec, unsigned int bar, uint32_t table, uint32_t pba);
bool pci__msix_enabled(const struct pci_dev *pd);
/* Memory decoding is on and BAR n still holds the address khyve gave it. */
bool pci__bar_decodes(const struct pci_dev *pd, unsigned int n);
/*
 * Raise vector (MSI-X must be enabled): delivered (its irqfd, or
 * KVM_SIGNAL_MSI), or left pending if masked.  Caller holds pd->lock.
 */
void pci__msix_notify(struct pci_dev *pd, unsigned int vector);
/* MSI-X table/PBA access for a BAR handler; true if [off, off+len) was one. */
bool pci__msix_access(struct pci_dev *pd, unsigned int bar, uint64_t off, uint8_t *data,
		      unsigned int len, bool is_write);
/* INTx level (0/1), honouring the command register's INTx disable. */
void pci__set_intx(struct pci_dev *pd, int level);
unsigned int pci__intx_gsi(uint8_t slot, uint8_t func);
/* The INTx lines of the configured functions, for the MP table; returns how many. */
/* The 64-bit BAR window: [*base, *end), above RAM and below the CPU's physical address limit. */
void pci__mmio64_window(const struct vm *vm, uint64_t *base, uint64_t *end);
unsigned int pci__irq_routes(const struct vm_config *cfg, struct mptable_pci_irq *out);

/* The common part of every function's section. */
void pci__save(const struct pci_dev *pd, struct pci_func_state *s);
void pci__encode(struct sbuf *b, const struct pci_func_state *s);
/* placement: the section's version records `bars` and `intx_gsi` */
void pci__decode(struct dec *d, const struct cbor_item_t *map, struct pci_func_state *s,
		 uint16_t vendor, uint16_t device, unsigned int msix_nvec, bool placement);
/*
 * The upgrade of a section written before placement was recorded: every
 * release that wrote one placed BARs and wired INTx as this one does
 * (pci.c's header), so restore takes this build's placement for it.
 */
void pci__func_unrecorded(struct pci_func_state *s);
/*
 * Before a restore touches the device: 0 if this build placed the function
 * where the snapshot says it was, else -EINVAL with a line in err.
 */
int pci__check_placement(const struct pci_dev *pd, const struct pci_func_state *s, char *err, size_t errlen);
/* Caller holds pd->lock; MSI-X vectors get their KVM routes again. */
void pci__restore(struct pci_dev *pd, const struct pci_func_state *s);

/*
 * The KVM ioctls pci.c makes on the VM for MSI-X (KVM_SET_GSI_ROUTING,
 * KVM_IRQFD, KVM_SIGNAL_MSI) go through this, ioctl() by default; unit
 * tests put a fake here to watch them.
 */
extern int (*pci__vm_ioctl)(int vm_fd, unsigned long req, void *arg);

#endif
