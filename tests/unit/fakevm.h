/*
 * What the unit tests share (tests/unit/fakevm.c, linked into every unit
 * test binary).
 *
 * A fake VM: a struct vm with its configuration, a bus, guest memory and
 * the PCI functions of its -s slots, but no KVM (no vm_fd unless a test
 * gives one), driven the way a guest drives it: configuration mechanism #1
 * on ports 0xCF8/0xCFC, MMIO on BAR 0 of the function under test, and for
 * virtio devices a driver's split virtqueues in guest memory.
 *
 * Bare guest memory, for the tests that parse the firmware tables back.
 *
 * Whatever goes wrong fails the running cmocka test.
 */
#ifndef KHYVE_TESTS_FAKEVM_H
#define KHYVE_TESTS_FAKEVM_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "khyve/config.h"
#include "khyve/device.h"
#include "khyve/memmap.h"
#include "khyve/vm.h"

struct dec;
struct sbuf;

#define FAKEVM_MAXQ 4

/* A fake VM's parameters (fakevm_init). */
struct fakevm_conf {
	const char *name;		/* the VM's name; restoring, the snapshot's too */
	unsigned int slot;		/* the function under test: its slot, */
	const char *device;		/* type (NULL: no slot at all) */
	const char *opts;		/* and options after "TYPE,", or NULL */
	uint64_t mem_size;		/* RAM: 16 MiB if 0 */
	bool restoring;			/* as khyve -r FILE, the name as FILE */
	/*
	 * The driver's virtqueues: queue q's descriptor table at ring[q] (at
	 * ring[0] where ring[q] is 0), its available ring at +0x1000, its used
	 * ring at +0x2000; qsize entries, where the device offers qmax.
	 */
	uint64_t ring[FAKEVM_MAXQ];
	uint16_t qsize, qmax;
};

struct fakevm {
	struct vm vm;
	struct vm_config cfg;
	uint32_t bar;			/* BAR 0 of the function under test */
	unsigned int slot;		/* its slot */
	bool up;			/* started, not yet down */
	uint64_t ring[FAKEVM_MAXQ];	/* as in the conf */
	uint16_t qsize, qmax;
	char name[64];
	char opts[PATH_MAX + 64];
	/* the test's own: fakevm_init zeroes them, nothing here uses them */
	int peer, devfd;		/* a socket backend: the test's end, the device's */
	uint16_t used;			/* used entries the test has seen */
};

/*
 * The VM as c says, not started: one slot (c->device in c->slot with a copy
 * of c->opts), one vCPU, no serial console.  A test may change f->cfg or
 * f->vm (more slots, a vm_fd) before it starts it.
 */
void fakevm_init(struct fakevm *f, const struct fakevm_conf *c);
/*
 * Bus, memory and devices; then f->bar.  0, or -errno with err, everything
 * undone.  Memory decoding and bus mastering stay off.
 */
int fakevm_start(struct fakevm *f, char *err, size_t errlen);
/* memory decoding and bus mastering on, for the function under test */
void fakevm_enable(struct fakevm *f);
/* fakevm_start (failing the test on an error), fakevm_enable */
void fakevm_up(struct fakevm *f);
/* devices and memory gone; nothing if it is not up */
void fakevm_down(struct fakevm *f);

/* the device instance (its snapshot section) name, e.g. "virtio-blk.4" */
struct device_instance *device_named(struct vm *vm, const char *name);

void out32(struct vm *vm, uint16_t port, uint32_t v);
uint32_t in32(struct vm *vm, uint16_t port);
/* a configuration register of bus 0, device slot, function 0, through 0xCF8/0xCFC */
uint32_t cfg_rd(struct vm *vm, unsigned int slot, unsigned int reg);
void cfg_wr(struct vm *vm, unsigned int slot, unsigned int reg, uint32_t v);
/* MMIO at a guest-physical address */
uint64_t mem_rd(struct vm *vm, uint64_t addr, unsigned int len);
void mem_wr(struct vm *vm, uint64_t addr, uint64_t v, unsigned int len);
/* MMIO at an offset into BAR 0 of the function under test */
uint64_t mmio_rd(struct fakevm *f, uint64_t off, unsigned int len);
void mmio_wr(struct fakevm *f, uint64_t off, uint64_t v, unsigned int len);
/* guest memory (NULL outside RAM) */
void *gpa(struct fakevm *f, uint64_t a);

/* The driver's side of a virtio device (virtio 1.2, 3.1.1; 2.7). */
/* reset, ACKNOWLEDGE | DRIVER, the features, FEATURES_OK; the status read back */
uint8_t fakevm_negotiate(struct fakevm *f, uint64_t features);
/*
 * Queue q with its rings (zeroed) as in the conf, the maximum size checked,
 * then enabled.  halves: the driver area's address in two 32-bit writes.
 */
void fakevm_queue(struct fakevm *f, unsigned int q, bool halves);
/* negotiate (FEATURES_OK checked), set up queues (a mask), DRIVER_OK */
void fakevm_drive(struct fakevm *f, uint64_t features, uint32_t queues);
void set_desc(struct fakevm *f, uint64_t table, unsigned int i, uint64_t addr, uint32_t len,
	      uint16_t flags, uint16_t next);
/* head into queue q's available ring (the index published last) */
void make_avail(struct fakevm *f, unsigned int q, uint16_t head);
/* the notification for queue q */
void kick(struct fakevm *f, unsigned int q);
void post(struct fakevm *f, unsigned int q, uint16_t head);
uint16_t used_idx(struct fakevm *f, unsigned int q);
/* the used ring's entry for the i-th used chain (modulo the queue size) */
uint32_t used_id(struct fakevm *f, unsigned int q, unsigned int i);
uint32_t used_len(struct fakevm *f, unsigned int q, unsigned int i);
/* Wait (5 s at most, else fail) until queue q's used index is want. */
void wait_used(struct fakevm *f, unsigned int q, uint16_t want);
/* CLOCK_MONOTONIC in milliseconds */
uint64_t now_ms(void);

/* A device's saved state st encoded into b, decoded into out (failing the test on a refusal). */
void encode_decode(const struct device_ops *ops, struct dec *dec, const void *st, struct sbuf *b, void *out);

/* 16 MiB of guest memory alone, for the firmware-table tests */
extern struct guest_mem table_mem;
int table_mem_alloc(void **state);	/* group set-up */
int table_mem_free(void **state);	/* group tear-down */
int table_mem_fill(void **state);	/* set-up: 0xAA over the first 2 MiB */
/* len bytes at a, which must be in RAM */
const uint8_t *table_at(uint64_t a, uint64_t len);
/* little-endian fields; the byte sum a checksum makes 0 */
uint16_t rd16(const uint8_t *p);
uint32_t rd32(const uint8_t *p);
uint64_t rd64(const uint8_t *p);
uint8_t sum(const uint8_t *p, size_t len);

#endif
