/*
 * What the unit tests share: the fake VM and its guest driver, and bare
 * guest memory for the firmware-table tests (see fakevm.h).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "khyve/bus.h"
#include "khyve/pci.h"
#include "khyve/snapfmt.h"
#include "khyve/util.h"
#include "khyve/virtio.h"

#include "fakevm.h"

/* ---------- the VM ---------- */

void fakevm_init(struct fakevm *f, const struct fakevm_conf *c)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->name, sizeof(f->name), "%s", c->name);
	if (c->opts)
		snprintf(f->opts, sizeof(f->opts), "%s", c->opts);
	f->slot = c->slot;
	memcpy(f->ring, c->ring, sizeof(f->ring));
	f->qsize = c->qsize;
	f->qmax = c->qmax;
	f->cfg.name = f->name;
	f->cfg.ncpus = 1;
	f->cfg.mem_size = c->mem_size ? c->mem_size : 16 << 20;
	f->cfg.com1 = CONSOLE_NULL;
	f->cfg.restore = c->restoring ? f->name : NULL;
	if (c->device)
		f->cfg.slots[f->cfg.nslots++] = (struct slot_config){ .slot = (uint8_t)c->slot,
								      .device = (char *)c->device,
								      .opts = c->opts ? f->opts : NULL };
	f->vm.cfg = &f->cfg;
	f->vm.kvm_fd = f->vm.vm_fd = f->vm.exit_efd = -1;
	f->vm.mem.src_fd = -1;
}

int fakevm_start(struct fakevm *f, char *err, size_t errlen)
{
	int ret;

	bus__init(&f->vm.bus);
	memmap__layout(&f->vm.mem, f->cfg.mem_size);
	assert_int_equal(memmap__alloc(&f->vm.mem), 0);
	ret = device__init_all(&f->vm, err, errlen);
	if (ret) {
		device__exit_all(&f->vm);
		memmap__free(&f->vm.mem);
		return ret;
	}
	f->up = true;
	if (f->cfg.nslots)
		f->bar = cfg_rd(&f->vm, f->slot, PCI_BAR0) & ~0xfu;
	return 0;
}

void fakevm_enable(struct fakevm *f)
{
	cfg_wr(&f->vm, f->slot, PCI_COMMAND, PCI_CMD_MEM | PCI_CMD_MASTER);
}

void fakevm_up(struct fakevm *f)
{
	char err[512];

	if (fakevm_start(f, err, sizeof(err)))
		fail_msg("device__init_all: %s", err);
	fakevm_enable(f);
}

void fakevm_down(struct fakevm *f)
{
	if (!f->up)
		return;
	device__exit_all(&f->vm);
	memmap__free(&f->vm.mem);
	f->up = false;
}

struct device_instance *device_named(struct vm *vm, const char *name)
{
	for (struct device_instance *d = vm->devices; d; d = d->next)
		if (!strcmp(d->name, name))
			return d;
	fail_msg("no %s", name);
	return NULL;
}

/* ---------- port I/O, configuration space, MMIO, memory ---------- */

void out32(struct vm *vm, uint16_t port, uint32_t v)
{
	bus__access(&vm->bus, BUS_PIO, port, (uint8_t *)&v, 4, true);
}

uint32_t in32(struct vm *vm, uint16_t port)
{
	uint32_t v = 0;

	bus__access(&vm->bus, BUS_PIO, port, (uint8_t *)&v, 4, false);
	return v;
}

uint32_t cfg_rd(struct vm *vm, unsigned int slot, unsigned int reg)
{
	out32(vm, 0xcf8, 0x80000000u | slot << 11 | reg);
	return in32(vm, 0xcfc);
}

void cfg_wr(struct vm *vm, unsigned int slot, unsigned int reg, uint32_t v)
{
	out32(vm, 0xcf8, 0x80000000u | slot << 11 | reg);
	out32(vm, 0xcfc, v);
}

uint64_t mem_rd(struct vm *vm, uint64_t addr, unsigned int len)
{
	uint64_t v = 0;

	bus__access(&vm->bus, BUS_MMIO, addr, (uint8_t *)&v, len, false);
	return v;
}

void mem_wr(struct vm *vm, uint64_t addr, uint64_t v, unsigned int len)
{
	bus__access(&vm->bus, BUS_MMIO, addr, (uint8_t *)&v, len, true);
}

uint64_t mmio_rd(struct fakevm *f, uint64_t off, unsigned int len)
{
	return mem_rd(&f->vm, f->bar + off, len);
}

void mmio_wr(struct fakevm *f, uint64_t off, uint64_t v, unsigned int len)
{
	mem_wr(&f->vm, f->bar + off, v, len);
}

void *gpa(struct fakevm *f, uint64_t a)
{
	return memmap__gpa_to_hva(&f->vm.mem, a, 1);
}

/* ---------- the virtio driver ---------- */

static uint64_t ring_of(struct fakevm *f, unsigned int q)
{
	assert_true(q < FAKEVM_MAXQ);
	return f->ring[q] ? f->ring[q] : f->ring[0];
}

uint8_t fakevm_negotiate(struct fakevm *f, uint64_t features)
{
	mmio_wr(f, 0x14, 0, 1);
	mmio_wr(f, 0x14, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER, 1);
	mmio_wr(f, 0x08, 0, 4);
	mmio_wr(f, 0x0c, (uint32_t)features, 4);
	mmio_wr(f, 0x08, 1, 4);
	mmio_wr(f, 0x0c, features >> 32, 4);
	mmio_wr(f, 0x14, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK, 1);
	return (uint8_t)mmio_rd(f, 0x14, 1);
}

void fakevm_queue(struct fakevm *f, unsigned int q, bool halves)
{
	uint64_t ring = ring_of(f, q);

	memset(gpa(f, ring), 0, 0x3000);
	mmio_wr(f, 0x16, q, 2);
	assert_int_equal(mmio_rd(f, 0x18, 2), f->qmax);
	mmio_wr(f, 0x18, f->qsize, 2);
	mmio_wr(f, 0x20, ring, 8);
	if (halves) {	/* a 64-bit field as two halves */
		mmio_wr(f, 0x28, (uint32_t)(ring + 0x1000), 4);
		mmio_wr(f, 0x2c, (ring + 0x1000) >> 32, 4);
	} else {
		mmio_wr(f, 0x28, ring + 0x1000, 8);
	}
	mmio_wr(f, 0x30, ring + 0x2000, 8);
	mmio_wr(f, 0x1c, 1, 2);
}

void fakevm_drive(struct fakevm *f, uint64_t features, uint32_t queues)
{
	uint8_t s = fakevm_negotiate(f, features);

	assert_true(s & VIRTIO_S_FEATURES_OK);
	for (unsigned int q = 0; q < FAKEVM_MAXQ; q++)
		if (queues & 1u << q)
			fakevm_queue(f, q, false);
	mmio_wr(f, 0x14, s | VIRTIO_S_DRIVER_OK, 1);
}

void set_desc(struct fakevm *f, uint64_t table, unsigned int i, uint64_t addr, uint32_t len,
	      uint16_t flags, uint16_t next)
{
	uint8_t *d = gpa(f, table + 16 * i);

	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

/* the device's I/O thread may be reading the ring: the index goes last */
void make_avail(struct fakevm *f, unsigned int q, uint16_t head)
{
	uint16_t *avail = gpa(f, ring_of(f, q) + 0x1000);
	uint16_t idx = avail[1];

	avail[2 + idx % f->qsize] = head;
	__atomic_store_n(&avail[1], (uint16_t)(idx + 1), __ATOMIC_RELEASE);
}

void kick(struct fakevm *f, unsigned int q)
{
	mmio_wr(f, VIRTIO_NOTIFY_OFF + VIRTIO_NOTIFY_MULT * q, q, 2);
}

void post(struct fakevm *f, unsigned int q, uint16_t head)
{
	make_avail(f, q, head);
	kick(f, q);
}

uint16_t used_idx(struct fakevm *f, unsigned int q)
{
	return __atomic_load_n((uint16_t *)gpa(f, ring_of(f, q) + 0x2000) + 1, __ATOMIC_ACQUIRE);
}

static uint32_t *used_elem(struct fakevm *f, unsigned int q, unsigned int i)
{
	return gpa(f, ring_of(f, q) + 0x2000 + 4 + 8 * (i % f->qsize));
}

uint32_t used_id(struct fakevm *f, unsigned int q, unsigned int i)
{
	return used_elem(f, q, i)[0];
}

uint32_t used_len(struct fakevm *f, unsigned int q, unsigned int i)
{
	return used_elem(f, q, i)[1];
}

uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void wait_used(struct fakevm *f, unsigned int q, uint16_t want)
{
	uint64_t t0 = now_ms();

	while (used_idx(f, q) != want) {
		if (now_ms() - t0 > 5000)
			fail_msg("queue %u: used idx %u, want %u", q, used_idx(f, q), want);
		usleep(500);
	}
}

/* ---------- snapshots ---------- */

void encode_decode(const struct device_ops *ops, struct dec *dec, const void *st, struct sbuf *b, void *out)
{
	cbor_item_t *m;

	ops->encode(b, st);
	m = dec__load(dec, b->p, b->len);
	ops->decode(dec, m, ops->state_version, out);
	cbor_decref(&m);
	if (dec->ret)
		fail_msg("decode: %s", dec->err);
}

/* ---------- guest memory for the firmware tables ---------- */

struct guest_mem table_mem;

int table_mem_alloc(void **state)
{
	(void)state;
	memmap__layout(&table_mem, 16 * MiB);
	return memmap__alloc(&table_mem);
}

int table_mem_free(void **state)
{
	(void)state;
	memmap__free(&table_mem);
	return 0;
}

int table_mem_fill(void **state)
{
	(void)state;
	memset(table_mem.base, 0xAA, 2 * MiB);
	return 0;
}

const uint8_t *table_at(uint64_t a, uint64_t len)
{
	const uint8_t *p = memmap__gpa_to_hva(&table_mem, a, len);

	assert_non_null(p);
	return p;
}

uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t rd64(const uint8_t *p)
{
	return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

uint8_t sum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	while (len--)
		s += *p++;
	return s;
}
