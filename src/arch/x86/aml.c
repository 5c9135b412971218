/*
 * AML encoding, from the ACPI 6.5 specification: 20.2 (the grammar:
 * PkgLength, NameString, integer prefixes, Scope/Device/Name/Package/Buffer
 * opcodes) and 6.4 (resource descriptors in a _CRS buffer).
 */
#include <string.h>

#include "khyve/aml.h"

#define OP_ZERO		0x00
#define OP_ONE		0x01
#define OP_NAME		0x08
#define OP_BYTE		0x0A
#define OP_WORD		0x0B
#define OP_DWORD	0x0C
#define OP_STRING	0x0D
#define OP_QWORD	0x0E
#define OP_SCOPE	0x10
#define OP_BUFFER	0x11
#define OP_PACKAGE	0x12
#define OP_METHOD	0x14
#define OP_NOTIFY	0x86
#define OP_EXT		0x5B
#define OP_DEVICE	0x82	/* after OP_EXT */
#define ROOT_CHAR	'\\'
#define DUAL_NAME	0x2E
#define MULTI_NAME	0x2F

void aml__init(struct aml *a, uint8_t *buf, size_t cap)
{
	memset(a, 0, sizeof(*a));
	a->buf = buf;
	a->cap = cap;
}

void aml__bytes(struct aml *a, const void *p, size_t n)
{
	if (a->overflow || n > a->cap - a->len) {
		a->overflow = true;
		return;
	}
	memcpy(a->buf + a->len, p, n);
	a->len += n;
}

static void byte(struct aml *a, uint8_t b)
{
	aml__bytes(a, &b, 1);
}

static void le(struct aml *a, uint64_t v, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		byte(a, (uint8_t)(v >> (8 * i)));
}

void aml__name(struct aml *a, const char *name)
{
	const char *p = name;
	unsigned int nseg = 0;

	if (*p == ROOT_CHAR) {
		byte(a, ROOT_CHAR);
		p++;
	}
	for (const char *q = p; *q; q += strcspn(q, ".") + (q[strcspn(q, ".")] == '.'))
		nseg++;
	if (nseg == 2) {
		byte(a, DUAL_NAME);
	} else if (nseg > 2) {
		byte(a, MULTI_NAME);
		byte(a, (uint8_t)nseg);
	}
	while (*p) {
		size_t n = strcspn(p, ".");

		/* a NameSeg is 4 characters, padded with '_' */
		for (size_t i = 0; i < 4; i++)
			byte(a, i < n ? (uint8_t)p[i] : '_');
		p += n + (p[n] == '.');
	}
	if (!nseg)
		byte(a, 0);	/* NullName */
}

void aml__int(struct aml *a, uint64_t v)
{
	if (v == 0) {
		byte(a, OP_ZERO);
	} else if (v == 1) {
		byte(a, OP_ONE);
	} else if (v <= 0xff) {
		byte(a, OP_BYTE);
		le(a, v, 1);
	} else if (v <= 0xffff) {
		byte(a, OP_WORD);
		le(a, v, 2);
	} else if (v <= 0xffffffff) {
		byte(a, OP_DWORD);
		le(a, v, 4);
	} else {
		byte(a, OP_QWORD);
		le(a, v, 8);
	}
}

void aml__string(struct aml *a, const char *s)
{
	byte(a, OP_STRING);
	aml__bytes(a, s, strlen(s) + 1);
}

void aml__eisaid(struct aml *a, const char *id)
{
	uint32_t v = 0;

	/* three letters of 5 bits (A = 1), then four hex digits; stored big-endian */
	for (int i = 0; i < 3; i++)
		v |= (uint32_t)((id[i] - 0x40) & 0x1f) << (26 - 5 * i);
	for (int i = 3; i < 7; i++) {
		char c = id[i];
		uint32_t d = c >= '0' && c <= '9' ? (uint32_t)(c - '0') : (uint32_t)((c | 0x20) - 'a' + 10);

		v |= (d & 0xf) << (4 * (6 - i));
	}
	byte(a, OP_DWORD);
	le(a, __builtin_bswap32(v), 4);
}

void aml__name_decl(struct aml *a, const char *name)
{
	byte(a, OP_NAME);
	aml__name(a, name);
}

static void open_at_here(struct aml *a, bool is_buffer)
{
	if (a->depth == AML_MAX_DEPTH) {
		a->overflow = true;
		return;
	}
	a->is_buffer[a->depth] = is_buffer;
	a->open[a->depth++] = a->len;
}

void aml__open_scope(struct aml *a, const char *name)
{
	byte(a, OP_SCOPE);
	open_at_here(a, false);
	aml__name(a, name);
}

void aml__open_device(struct aml *a, const char *name)
{
	byte(a, OP_EXT);
	byte(a, OP_DEVICE);
	open_at_here(a, false);
	aml__name(a, name);
}

void aml__open_package(struct aml *a, unsigned int n)
{
	byte(a, OP_PACKAGE);
	open_at_here(a, false);
	byte(a, (uint8_t)n);
}

void aml__open_method(struct aml *a, const char *name, unsigned int nargs)
{
	byte(a, OP_METHOD);
	open_at_here(a, false);
	aml__name(a, name);
	byte(a, (uint8_t)(nargs & 7));		/* NotSerialized, SyncLevel 0 */
}

void aml__notify(struct aml *a, const char *target, uint8_t value)
{
	byte(a, OP_NOTIFY);
	aml__name(a, target);
	aml__int(a, value);
}

void aml__open_resources(struct aml *a)
{
	byte(a, OP_BUFFER);
	open_at_here(a, true);
}

/* Insert n bytes at pos, moving the rest up. */
static void insert(struct aml *a, size_t pos, const uint8_t *p, size_t n)
{
	if (a->overflow || n > a->cap - a->len) {
		a->overflow = true;
		return;
	}
	memmove(a->buf + pos + n, a->buf + pos, a->len - pos);
	memcpy(a->buf + pos, p, n);
	a->len += n;
}

void aml__close(struct aml *a)
{
	uint8_t head[4 + 9];
	size_t pos, body, nhead = 0, nlen;
	bool is_buffer;

	if (a->overflow || !a->depth) {
		a->overflow = true;
		return;
	}
	pos = a->open[--a->depth];
	is_buffer = a->is_buffer[a->depth];
	if (is_buffer) {
		uint8_t end[2] = { 0x79, 0x00 };	/* end tag, checksum 0: "not computed" */
		struct aml size;
		uint8_t sbuf[9];

		aml__bytes(a, end, sizeof(end));
		if (a->overflow)
			return;
		/* BufferSize comes after the PkgLength and counts in it */
		aml__init(&size, sbuf, sizeof(sbuf));
		aml__int(&size, a->len - pos);
		memcpy(head + 4, sbuf, size.len);
		nhead = size.len;
	}
	body = a->len - pos + nhead;
	/* the PkgLength counts its own bytes: 1 up to 63, else 2-4 with a nibble first */
	for (nlen = 1; nlen <= 4; nlen++)
		if (body + nlen < (nlen == 1 ? 64u : 1u << (4 + 8 * (nlen - 1))))
			break;
	if (nlen > 4) {
		a->overflow = true;
		return;
	}
	size_t total = body + nlen;
	uint8_t enc[4];

	if (nlen == 1) {
		enc[0] = (uint8_t)total;
	} else {
		enc[0] = (uint8_t)((nlen - 1) << 6 | (total & 0xf));
		for (size_t i = 1; i < nlen; i++)
			enc[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	}
	memmove(head + nlen, head + 4, nhead);
	memcpy(head, enc, nlen);
	insert(a, pos, head, nlen + nhead);
}

void aml__res_io(struct aml *a, uint16_t base, uint8_t len)
{
	uint8_t d[8] = { 0x47, 0x01, (uint8_t)base, (uint8_t)(base >> 8), (uint8_t)base,
			 (uint8_t)(base >> 8), 1, len };

	aml__bytes(a, d, sizeof(d));
}

void aml__res_irq(struct aml *a, unsigned int irq)
{
	uint16_t mask = (uint16_t)(1u << (irq & 15));
	uint8_t d[3] = { 0x22, (uint8_t)mask, (uint8_t)(mask >> 8) };

	aml__bytes(a, d, sizeof(d));
}

/* Word/DWord/QWord Address Space descriptors: a producer with fixed min and max */
static void addr_space(struct aml *a, uint8_t tag, unsigned int width, uint8_t type, uint8_t tflags,
		       uint64_t first, uint64_t last)
{
	uint16_t len = (uint16_t)(3 + 5 * width);

	byte(a, tag);
	le(a, len, 2);
	byte(a, type);
	byte(a, 0x0c);		/* MinFixed | MaxFixed, positive decode, producer */
	byte(a, tflags);
	le(a, 0, width);	/* granularity */
	le(a, first, width);
	le(a, last, width);
	le(a, 0, width);	/* translation */
	le(a, last - first + 1, width);
}

void aml__res_bus(struct aml *a, uint16_t first, uint16_t last)
{
	addr_space(a, 0x88, 2, 2, 0, first, last);
}

void aml__res_io_window(struct aml *a, uint16_t first, uint16_t last)
{
	addr_space(a, 0x88, 2, 1, 0x03, first, last);	/* ISA and non-ISA ranges */
}

void aml__res_mem32(struct aml *a, uint32_t first, uint32_t last)
{
	addr_space(a, 0x87, 4, 0, 0x01, first, last);	/* read-write, non-cacheable */
}

void aml__res_mem64(struct aml *a, uint64_t first, uint64_t last)
{
	addr_space(a, 0x8a, 8, 0, 0x01, first, last);
}

void aml__res_mem32_fixed(struct aml *a, uint32_t base, uint32_t len)
{
	byte(a, 0x86);
	le(a, 9, 2);
	byte(a, 0x01);		/* read-write */
	le(a, base, 4);
	le(a, len, 4);
}

void aml__res_interrupt_edge(struct aml *a, uint32_t gsi)
{
	byte(a, 0x89);
	le(a, 6, 2);
	byte(a, 0x03);		/* consumer, edge, active high, exclusive */
	byte(a, 1);		/* one interrupt */
	le(a, gsi, 4);
}
