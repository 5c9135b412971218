/*
 * A small ACPI Machine Language writer (ACPI 6.5, chapter 20), enough for
 * khyve's DSDT: scopes, devices, named integers, strings, packages and
 * resource-template buffers.  Nested objects are opened with aml__open_*
 * and closed with aml__close(), which inserts the PkgLength in front of
 * the body once its size is known.  Overflow is sticky: aml__close() and
 * the caller see it in a->overflow, and nothing is written past buf.
 */
#ifndef KHYVE_AML_H
#define KHYVE_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AML_MAX_DEPTH	8

struct aml {
	uint8_t *buf;
	size_t cap, len;
	bool overflow;
	unsigned int depth;
	size_t open[AML_MAX_DEPTH];	/* where each open object's body starts */
	bool is_buffer[AML_MAX_DEPTH];
};

void aml__init(struct aml *a, uint8_t *buf, size_t cap);
void aml__bytes(struct aml *a, const void *p, size_t n);
/* a NameString: "\\_SB_", "PCI0", "_S5_" (segments of 4 characters) */
void aml__name(struct aml *a, const char *name);
/* the shortest encoding of an integer constant */
void aml__int(struct aml *a, uint64_t v);
void aml__string(struct aml *a, const char *s);
/* a compressed EISA ID such as "PNP0A08", as an integer */
void aml__eisaid(struct aml *a, const char *id);

/* Name(NAME, <the next object written>) */
void aml__name_decl(struct aml *a, const char *name);
void aml__open_scope(struct aml *a, const char *name);
void aml__open_device(struct aml *a, const char *name);
/* Package(n) { ... }: the caller writes n objects */
void aml__open_package(struct aml *a, unsigned int n);
/* Method(NAME, nargs, NotSerialized) { ... } */
void aml__open_method(struct aml *a, const char *name, unsigned int nargs);
/* Notify(TARGET, value) */
void aml__notify(struct aml *a, const char *target, uint8_t value);
/* Buffer { resource descriptors }: the end tag and the size are added by aml__close() */
void aml__open_resources(struct aml *a);
void aml__close(struct aml *a);

/* resource descriptors (ACPI 6.5, 6.4), inside aml__open_resources() */
void aml__res_io(struct aml *a, uint16_t base, uint8_t len);
void aml__res_irq(struct aml *a, unsigned int irq);
void aml__res_bus(struct aml *a, uint16_t first, uint16_t last);
void aml__res_io_window(struct aml *a, uint16_t first, uint16_t last);
void aml__res_mem32(struct aml *a, uint32_t first, uint32_t last);
void aml__res_mem64(struct aml *a, uint64_t first, uint64_t last);
/* Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive) { gsi } */
void aml__res_interrupt_edge(struct aml *a, uint32_t gsi);
/* a fixed range the device itself occupies (not a window) */
void aml__res_mem32_fixed(struct aml *a, uint32_t base, uint32_t len);

#endif
