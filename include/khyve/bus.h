/*
 * Port-I/O and MMIO dispatch.  Devices register ranges once at start-up;
 * lookups afterwards are lock-free because the tables never change while
 * vCPUs run.  Devices do their own locking.
 */
#ifndef KHYVE_BUS_H
#define KHYVE_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

enum bus_space { BUS_PIO = 0, BUS_MMIO = 1 };

/* offset is relative to the start of the registered range. */
typedef void (*bus_read_fn)(void *opaque, uint64_t offset, uint8_t *data, unsigned int len);
typedef void (*bus_write_fn)(void *opaque, uint64_t offset, const uint8_t *data, unsigned int len);

struct bus_range {
	uint64_t start;
	uint64_t len;
	bus_read_fn read;
	bus_write_fn write;
	void *opaque;
	const char *name;
};

#define BUS_MAX_RANGES 64
#define BUS_MMIO_LOG_MAX 64

struct bus {
	unsigned int n[2];
	struct bus_range ranges[2][BUS_MAX_RANGES];
	/* unclaimed ports already logged, so each is reported once */
	uint8_t pio_logged[65536 / 8];
	/* unclaimed MMIO addresses already logged; when full, no more logs */
	uint64_t mmio_logged[BUS_MMIO_LOG_MAX];
	unsigned int nmmio_logged;
	pthread_mutex_t log_lock;
};

void bus__init(struct bus *bus);
/* Returns -EBUSY on overlap, -ENOSPC when full. */
int bus__register(struct bus *bus, enum bus_space space, uint64_t start, uint64_t len,
		  bus_read_fn read, bus_write_fn write, void *opaque, const char *name);
/* Dispatch one access.  Unclaimed reads return all-ones; writes are dropped. */
void bus__access(struct bus *bus, enum bus_space space, uint64_t addr, uint8_t *data,
		 unsigned int len, bool is_write);

#endif
