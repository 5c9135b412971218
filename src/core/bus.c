#include <errno.h>
#include <string.h>

#include "khyve/bus.h"
#include "khyve/log.h"

void bus__init(struct bus *bus)
{
	memset(bus, 0, sizeof(*bus));
	pthread_mutex_init(&bus->log_lock, NULL);
}

int bus__register(struct bus *bus, enum bus_space space, uint64_t start, uint64_t len,
		  bus_read_fn read, bus_write_fn write, void *opaque, const char *name)
{
	unsigned int n = bus->n[space];

	if (!len || start + len < start)
		return -EINVAL;
	for (unsigned int i = 0; i < n; i++) {
		const struct bus_range *r = &bus->ranges[space][i];

		if (start < r->start + r->len && r->start < start + len)
			return -EBUSY;
	}
	if (n == BUS_MAX_RANGES)
		return -ENOSPC;
	bus->ranges[space][n] = (struct bus_range){
		.start = start, .len = len, .read = read, .write = write,
		.opaque = opaque, .name = name,
	};
	bus->n[space] = n + 1;
	return 0;
}

static void bus__unclaimed(struct bus *bus, enum bus_space space, uint64_t addr,
			   unsigned int len, bool is_write)
{
	bool seen = false;

	if (log_level < LOG_DEBUG)
		return;
	pthread_mutex_lock(&bus->log_lock);
	if (space == BUS_PIO) {
		uint16_t port = (uint16_t)addr;
		uint8_t bit = 1u << (port & 7);

		seen = bus->pio_logged[port >> 3] & bit;
		bus->pio_logged[port >> 3] |= bit;
	} else {
		for (unsigned int i = 0; i < bus->nmmio_logged && !seen; i++)
			seen = bus->mmio_logged[i] == addr;
		if (!seen && bus->nmmio_logged < BUS_MMIO_LOG_MAX)
			bus->mmio_logged[bus->nmmio_logged++] = addr;
		else
			seen = true;
	}
	pthread_mutex_unlock(&bus->log_lock);
	if (seen)
		return;
	pr_debug("unclaimed %s %s at 0x%llx, size %u", space == BUS_PIO ? "port" : "MMIO",
		 is_write ? "write" : "read", (unsigned long long)addr, len);
}

void bus__access(struct bus *bus, enum bus_space space, uint64_t addr, uint8_t *data,
		 unsigned int len, bool is_write)
{
	unsigned int n = bus->n[space];

	for (unsigned int i = 0; i < n; i++) {
		const struct bus_range *r = &bus->ranges[space][i];

		if (addr >= r->start && addr - r->start < r->len) {
			if (is_write) {
				if (r->write)
					r->write(r->opaque, addr - r->start, data, len);
			} else if (r->read) {
				r->read(r->opaque, addr - r->start, data, len);
			} else {
				memset(data, 0xff, len);
			}
			return;
		}
	}
	if (!is_write)
		memset(data, 0xff, len);
	bus__unclaimed(bus, space, addr, len, is_write);
}
