/*
 * The snapshot state file's building blocks (docs/snapshot-format.md):
 * the file header, framed sections with a version, flags, length and xxh3
 * checksum, and CBOR payloads in which every field is named and has a fixed
 * width.  Encoding and decoding are "sticky": after the first error every
 * call does nothing, and the caller checks once at the end.
 */
#ifndef KHYVE_SNAPFMT_H
#define KHYVE_SNAPFMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cbor.h>

#define SNAP_MAGIC		"KHYVSNAP"
#define SNAP_FORMAT_VERSION	1
#define SNAP_HEADER_SIZE	32
#define SNAP_SECTION_MAGIC	"SECT"
#define SNAP_SECTION_HDR	30	/* magic, name length, version, flags, length, hash */
#define SNAP_NAME_MAX		64
/*
 * What a state file may cost a reader (docs/snapshot-format.md 3.5): with
 * these, any file is refused or accepted within some 64 MiB and 1 s.
 * The largest a khyve writes (254 vCPUs with 64 KiB XSAVE areas, 256 MSRs
 * and CPUID entries each) is 23 MiB, its largest section 95 KiB and some
 * 5600 items.
 */
#define SNAP_SECTION_MAX	(4u << 20)	/* one section's payload */
#define SNAP_STATE_MAX		(32u << 20)	/* the whole state file */
#define SNAP_SECTION_ITEMS	65536u		/* CBOR items in one payload */
#define SNAP_STATE_ITEMS	(2u << 20)	/* CBOR items decoded from one file */
#define SNAP_DEPTH_MAX		16		/* nesting of maps and arrays */
#define SNAP_FLAG_REQUIRED	1u
#define SNAP_MAX_SECTIONS	1024

#define MEMFILE_MAGIC		"KHYVMEM1"
#define MEMFILE_TRAILER		4096

/* --- growable output buffer and CBOR encoder --- */

struct sbuf {
	uint8_t *p;
	size_t len, cap;
	int err;		/* -ENOMEM once an allocation failed */
};

void sbuf__free(struct sbuf *b);
void sbuf__put(struct sbuf *b, const void *data, size_t len);
void sbuf__put_le32(struct sbuf *b, uint32_t v);
void sbuf__put_le64(struct sbuf *b, uint64_t v);

/* Maps and arrays are CBOR indefinite-length; end each with enc__end(). */
void enc__map(struct sbuf *b);
void enc__map_key(struct sbuf *b, const char *key);	/* a nested map as value */
void enc__array_key(struct sbuf *b, const char *key);	/* an array as value */
void enc__end(struct sbuf *b);
void enc__u8(struct sbuf *b, const char *key, uint8_t v);
void enc__u16(struct sbuf *b, const char *key, uint16_t v);
void enc__u32(struct sbuf *b, const char *key, uint32_t v);
void enc__u64(struct sbuf *b, const char *key, uint64_t v);
void enc__bool(struct sbuf *b, const char *key, bool v);
void enc__str(struct sbuf *b, const char *key, const char *s);
void enc__bytes(struct sbuf *b, const char *key, const void *p, size_t len);
/* array elements without keys */
void enc__elem_u64(struct sbuf *b, uint64_t v);

/* --- decoder over a parsed CBOR tree --- */

/* A map or array the decoder handed out, so that messages can name a
 * field by its path ("regions[1].size", "cpuid[3].function"). */
#define DEC_NODES	48
struct dec_node {
	const cbor_item_t *item, *parent;
	char key[32];
};

struct dec {
	const char *section;	/* for messages */
	char *err;
	size_t errlen;
	int ret;		/* 0, or the first error */
	uint64_t mem_size;	/* guest RAM, for decoders checking guest addresses */
	size_t *items_left;	/* the file's CBOR item budget, or NULL (dec__load) */
	struct dec_node nodes[DEC_NODES];	/* filled by dec__map and dec__array */
	unsigned int nnodes;
};

__attribute__((format(printf, 2, 3)))
void dec__fail(struct dec *d, const char *fmt, ...);
/* Parse a whole payload into a tree; NULL (and d->ret set) on error. */
cbor_item_t *dec__load(struct dec *d, const uint8_t *p, size_t len);
/* Fetch map[key] with the given width; missing, wrong type or width fail. */
uint8_t dec__u8(struct dec *d, const cbor_item_t *map, const char *key);
uint16_t dec__u16(struct dec *d, const cbor_item_t *map, const char *key);
uint32_t dec__u32(struct dec *d, const cbor_item_t *map, const char *key);
uint64_t dec__u64(struct dec *d, const cbor_item_t *map, const char *key);
bool dec__bool(struct dec *d, const cbor_item_t *map, const char *key);
/* Copy a text string into dst (NUL-terminated, at most max-1 bytes). */
void dec__str(struct dec *d, const cbor_item_t *map, const char *key, char *dst, size_t max);
/* A byte string of exactly len bytes. */
void dec__bytes(struct dec *d, const cbor_item_t *map, const char *key, void *dst, size_t len);
/* A byte string of at most max bytes; returns its length. */
size_t dec__bytes_var(struct dec *d, const cbor_item_t *map, const char *key, void *dst, size_t max);
const cbor_item_t *dec__map(struct dec *d, const cbor_item_t *map, const char *key);
/* An array; returns its element vector and count (NULL on error). */
cbor_item_t **dec__array(struct dec *d, const cbor_item_t *map, const char *key, size_t *n);
uint64_t dec__elem_u64(struct dec *d, const cbor_item_t *item, const char *what);
/* The path of field key of map, for messages: "regions[0].size". */
const char *dec__path(const struct dec *d, const cbor_item_t *map, const char *key, char *buf, size_t n);

/* --- state file framing --- */

struct snap_section {
	char name[SNAP_NAME_MAX + 1];
	uint32_t version;
	uint32_t flags;
	uint64_t offset;	/* of the frame in the file */
	const uint8_t *payload;
	uint64_t len;
	uint64_t hash;
	bool hash_ok;
};

/* Writer: header, then sections, then finish() appends the "end" section. */
void snapfmt__header(struct sbuf *out, const uint8_t uuid[16]);
void snapfmt__section(struct sbuf *out, const char *name, uint32_t version, uint32_t flags,
		      const struct sbuf *payload);
void snapfmt__finish(struct sbuf *out, unsigned int nsections);

/* The header alone (the first SNAP_HEADER_SIZE bytes, or fewer). */
int snapfmt__check_header(const uint8_t *p, size_t len, uint32_t *format_version, char *err, size_t errlen);

/*
 * Reader: validate the header, every frame, checksum and the end section of
 * a whole state file in memory.  On success *secs (malloc'd) lists the
 * sections before "end".  With keep_going (inspect), a damaged section is
 * listed with hash_ok false instead of failing, where framing allows.
 */
int snapfmt__parse(const uint8_t *p, size_t len, uint32_t *format_version, uint8_t uuid[16],
		   struct snap_section **secs, unsigned int *nsecs, bool keep_going,
		   char *err, size_t errlen);

uint64_t snapfmt__hash(const void *p, size_t len);
void snapfmt__uuid_str(const uint8_t uuid[16], char out[37]);

#endif
