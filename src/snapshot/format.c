/*
 * State file framing and the CBOR field encoder/decoder.  The reader treats
 * the file as hostile: every length is bounded before use, and nothing of a
 * section is believed before its checksum matched.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "khyve/snapfmt.h"
#include "khyve/util.h"

/* ---------- output buffer ---------- */

void sbuf__free(struct sbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static bool sbuf__reserve(struct sbuf *b, size_t more)
{
	size_t cap;
	uint8_t *p;

	if (b->err)
		return false;
	if (b->len + more <= b->cap)
		return true;
	cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p) {
		b->err = -ENOMEM;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

void sbuf__put(struct sbuf *b, const void *data, size_t len)
{
	if (!len || !sbuf__reserve(b, len))
		return;
	memcpy(b->p + b->len, data, len);
	b->len += len;
}

void sbuf__put_le32(struct sbuf *b, uint32_t v)
{
	uint8_t x[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };

	sbuf__put(b, x, sizeof(x));
}

void sbuf__put_le64(struct sbuf *b, uint64_t v)
{
	sbuf__put_le32(b, (uint32_t)v);
	sbuf__put_le32(b, (uint32_t)(v >> 32));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/* ---------- CBOR encoder ---------- */

/* libcbor writes each head into a caller buffer; 9 bytes is the largest. */
#define ENC(b, call)							\
	do {								\
		uint8_t h_[9];						\
		size_t n_ = call;					\
		sbuf__put(b, h_, n_);					\
	} while (0)

static void enc__key(struct sbuf *b, const char *key)
{
	size_t n = strlen(key);

	ENC(b, cbor_encode_string_start(n, h_, sizeof(h_)));
	sbuf__put(b, key, n);
}

void enc__map(struct sbuf *b)
{
	ENC(b, cbor_encode_indef_map_start(h_, sizeof(h_)));
}

void enc__map_key(struct sbuf *b, const char *key)
{
	enc__key(b, key);
	enc__map(b);
}

void enc__array_key(struct sbuf *b, const char *key)
{
	enc__key(b, key);
	ENC(b, cbor_encode_indef_array_start(h_, sizeof(h_)));
}

void enc__end(struct sbuf *b)
{
	ENC(b, cbor_encode_break(h_, sizeof(h_)));
}

/* Fixed width: the one-byte-argument form even for values below 24. */
void enc__u8(struct sbuf *b, const char *key, uint8_t v)
{
	uint8_t h[2] = { 0x18, v };

	enc__key(b, key);
	sbuf__put(b, h, sizeof(h));
}

void enc__u16(struct sbuf *b, const char *key, uint16_t v)
{
	enc__key(b, key);
	ENC(b, cbor_encode_uint16(v, h_, sizeof(h_)));
}

void enc__u32(struct sbuf *b, const char *key, uint32_t v)
{
	enc__key(b, key);
	ENC(b, cbor_encode_uint32(v, h_, sizeof(h_)));
}

void enc__u64(struct sbuf *b, const char *key, uint64_t v)
{
	enc__key(b, key);
	ENC(b, cbor_encode_uint64(v, h_, sizeof(h_)));
}

void enc__elem_u64(struct sbuf *b, uint64_t v)
{
	ENC(b, cbor_encode_uint64(v, h_, sizeof(h_)));
}

void enc__bool(struct sbuf *b, const char *key, bool v)
{
	enc__key(b, key);
	ENC(b, cbor_encode_bool(v, h_, sizeof(h_)));
}

void enc__str(struct sbuf *b, const char *key, const char *s)
{
	size_t n = strlen(s);

	enc__key(b, key);
	ENC(b, cbor_encode_string_start(n, h_, sizeof(h_)));
	sbuf__put(b, s, n);
}

void enc__bytes(struct sbuf *b, const char *key, const void *p, size_t len)
{
	enc__key(b, key);
	ENC(b, cbor_encode_bytestring_start(len, h_, sizeof(h_)));
	sbuf__put(b, p, len);
}

/* ---------- CBOR decoder ---------- */

void dec__fail(struct dec *d, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (d->ret)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	d->ret = -EINVAL;
	if (d->err)
		snprintf(d->err, d->errlen, "section '%s': %s", d->section ? d->section : "?", msg);
}

/*
 * What a payload may cost, checked by walking its items with libcbor's
 * streaming decoder before cbor_load() builds a tree of them:
 * - libcbor allocates a definite-length array or map for its declared
 *   count before reading any element, so a 19-byte payload could ask for
 *   gigabytes: a count may not exceed the bytes left (every element takes
 *   at least one byte, a map pair two) nor the items still allowed;
 * - each item costs a tree node (some 60 bytes and a malloc): at most
 *   SNAP_SECTION_ITEMS per payload, and SNAP_STATE_ITEMS over the whole
 *   file (dec->items_left), or 16 MB of empty maps would cost 1.6 GB;
 * - libcbor frees a tree recursively: nesting is bounded by SNAP_DEPTH_MAX.
 * A malformed payload stops the walk; cbor_load() then says what is wrong.
 */
struct walk {
	size_t left;		/* payload bytes not yet walked */
	size_t items, max_items;
	unsigned int depth;
	int64_t todo[SNAP_DEPTH_MAX];	/* per open container: elements to come, -1 indefinite */
	const char *bad;	/* why the payload is refused */
};

/* An item is complete: it is one element of the innermost open container. */
static void walk_done(struct walk *w)
{
	while (w->depth && w->todo[w->depth - 1] > 0 && --w->todo[w->depth - 1] == 0)
		w->depth--;	/* that container is complete too */
}

static bool walk_item(struct walk *w)
{
	if (w->bad)
		return false;
	if (++w->items > w->max_items) {
		w->bad = "items";
		return false;
	}
	return true;
}

static void walk_scalar(struct walk *w)
{
	if (walk_item(w))
		walk_done(w);
}

/* A container of n elements (n < 0: indefinite) opens. */
static void walk_open(struct walk *w, int64_t n)
{
	if (!walk_item(w))
		return;
	if (n == 0) {
		walk_done(w);
		return;
	}
	if (n > 0 && ((uint64_t)n > w->left || (uint64_t)n > w->max_items - w->items)) {
		w->bad = "count";
		return;
	}
	if (w->depth == SNAP_DEPTH_MAX) {
		w->bad = "depth";
		return;
	}
	w->todo[w->depth++] = n;
}

static void cb_u8(void *c, uint8_t v) { (void)v; walk_scalar(c); }
static void cb_u16(void *c, uint16_t v) { (void)v; walk_scalar(c); }
static void cb_u32(void *c, uint32_t v) { (void)v; walk_scalar(c); }
static void cb_u64(void *c, uint64_t v) { (void)v; walk_scalar(c); }
static void cb_str(void *c, cbor_data p, uint64_t n) { (void)p; (void)n; walk_scalar(c); }
static void cb_simple(void *c) { walk_scalar(c); }
static void cb_float(void *c, float v) { (void)v; walk_scalar(c); }
static void cb_double(void *c, double v) { (void)v; walk_scalar(c); }
static void cb_bool(void *c, bool v) { (void)v; walk_scalar(c); }
static void cb_indef(void *c) { walk_open(c, -1); }
static void cb_array(void *c, uint64_t n) { walk_open(c, n > INT64_MAX / 2 ? INT64_MAX / 2 : (int64_t)n); }
static void cb_map(void *c, uint64_t n) { walk_open(c, n > INT64_MAX / 4 ? INT64_MAX / 2 : 2 * (int64_t)n); }
static void cb_tag(void *c, uint64_t v) { (void)v; walk_open(c, 1); }	/* a tag holds one item */

static void cb_break(void *c)
{
	struct walk *w = c;

	if (w->bad || !w->depth || w->todo[w->depth - 1] != -1)
		return;		/* a stray break: cbor_load() refuses it */
	w->depth--;
	walk_done(w);
}

static const struct cbor_callbacks walk_callbacks = {
	.uint8 = cb_u8, .uint16 = cb_u16, .uint32 = cb_u32, .uint64 = cb_u64,
	.negint8 = cb_u8, .negint16 = cb_u16, .negint32 = cb_u32, .negint64 = cb_u64,
	.byte_string = cb_str, .string = cb_str,
	.byte_string_start = cb_indef, .string_start = cb_indef,
	.indef_array_start = cb_indef, .array_start = cb_array,
	.indef_map_start = cb_indef, .map_start = cb_map, .tag = cb_tag,
	.float2 = cb_float, .float4 = cb_float, .float8 = cb_double,
	.undefined = cb_simple, .null = cb_simple, .boolean = cb_bool, .indef_break = cb_break,
};

/* Walk the payload; false (d failed) if it would cost too much to load. */
static bool payload_affordable(struct dec *d, const uint8_t *p, size_t len)
{
	struct walk w = { .max_items = SNAP_SECTION_ITEMS };
	size_t off = 0;

	if (d->items_left && *d->items_left < w.max_items)
		w.max_items = *d->items_left;
	while (off < len && !w.bad) {
		struct cbor_decoder_result r;

		w.left = len - off;
		r = cbor_stream_decode(p + off, len - off, &walk_callbacks, &w);
		if (r.status != CBOR_DECODER_FINISHED || !r.read)
			break;	/* malformed: cbor_load reports it */
		off += r.read;
	}
	if (w.bad && !strcmp(w.bad, "count"))
		dec__fail(d, "payload declares more CBOR items than it has bytes");
	else if (w.bad && !strcmp(w.bad, "depth"))
		dec__fail(d, "payload nests CBOR maps and arrays deeper than %d", SNAP_DEPTH_MAX);
	else if (w.bad && w.max_items < SNAP_SECTION_ITEMS)
		dec__fail(d, "the state file holds more than %u CBOR items", SNAP_STATE_ITEMS);
	else if (w.bad)
		dec__fail(d, "payload holds more than %u CBOR items", SNAP_SECTION_ITEMS);
	if (w.bad)
		return false;
	if (d->items_left)
		*d->items_left -= w.items;
	return true;
}

/* libcbor's error codes, in words a user can act on */
static const char *cbor_error_words(cbor_error_code e)
{
	switch (e) {
	case CBOR_ERR_NOTENOUGHDATA:
		return "it ends inside an item (truncated)";
	case CBOR_ERR_NODATA:
		return "it is empty";
	case CBOR_ERR_MALFORMATED:
		return "a malformed item (reserved or invalid head byte)";
	case CBOR_ERR_MEMERROR:
		return "out of memory decoding it";
	case CBOR_ERR_SYNTAXERROR:
		return "an item out of place (a break outside an indefinite item, or a bad map)";
	default:
		return "an unknown libcbor error";
	}
}

cbor_item_t *dec__load(struct dec *d, const uint8_t *p, size_t len)
{
	struct cbor_load_result r;
	cbor_item_t *item;

	if (d->ret)
		return NULL;
	d->nnodes = 0;	/* nodes of an earlier tree would dangle */
	if (!payload_affordable(d, p, len))
		return NULL;
	item = cbor_load(p, len, &r);
	if (!item) {
		dec__fail(d, "payload is not valid CBOR: %s at byte %zu", cbor_error_words(r.error.code),
			  r.error.position);
		return NULL;
	}
	if (r.read != len) {
		dec__fail(d, "%zu bytes of garbage after the payload", len - r.read);
		cbor_decref(&item);
		return NULL;
	}
	if (!cbor_isa_map(item)) {
		dec__fail(d, "payload is not a CBOR map");
		cbor_decref(&item);
		return NULL;
	}
	return item;
}

static bool key_is(const cbor_item_t *k, const char *key)
{
	size_t n = strlen(key);

	return cbor_isa_string(k) && cbor_string_is_definite(k) && cbor_string_length(k) == n &&
	       !memcmp(cbor_string_handle(k), key, n);
}

static const cbor_item_t *lookup(const cbor_item_t *map, const char *key)
{
	struct cbor_pair *pairs;
	size_t n;

	if (!map || !cbor_isa_map(map))
		return NULL;
	pairs = cbor_map_handle(map);
	n = cbor_map_size(map);
	for (size_t i = 0; i < n; i++)
		if (key_is(pairs[i].key, key))
			return pairs[i].value;
	return NULL;
}

/* Remember where a map or array came from (dec__path). */
static void note(struct dec *d, const cbor_item_t *item, const cbor_item_t *parent, const char *key)
{
	struct dec_node *n;

	if (d->nnodes >= DEC_NODES)
		return;		/* messages then name the field without its path */
	n = &d->nodes[d->nnodes++];
	n->item = item;
	n->parent = parent;
	snprintf(n->key, sizeof(n->key), "%s", key);
}

static void path_of(const struct dec *d, const cbor_item_t *item, char *buf, size_t n, unsigned int depth)
{
	size_t len;

	buf[0] = '\0';
	if (!item || depth > SNAP_DEPTH_MAX)
		return;
	for (unsigned int i = 0; i < d->nnodes; i++) {
		if (d->nodes[i].item != item)
			continue;
		path_of(d, d->nodes[i].parent, buf, n, depth + 1);
		len = strlen(buf);
		snprintf(buf + len, n - len, "%s%s", len ? "." : "", d->nodes[i].key);
		return;
	}
	/* an element of an array handed out earlier: ARRAY[i] */
	for (unsigned int i = 0; i < d->nnodes; i++) {
		const cbor_item_t *a = d->nodes[i].item;
		cbor_item_t **e;

		if (!cbor_isa_array(a))
			continue;
		e = cbor_array_handle(a);
		for (size_t j = 0; j < cbor_array_size(a); j++) {
			if (e[j] != item)
				continue;
			path_of(d, a, buf, n, depth + 1);
			len = strlen(buf);
			snprintf(buf + len, n - len, "[%zu]", j);
			return;
		}
	}
}

const char *dec__path(const struct dec *d, const cbor_item_t *map, const char *key, char *buf, size_t n)
{
	size_t len;

	path_of(d, map, buf, n, 0);
	len = strlen(buf);
	snprintf(buf + len, n - len, "%s%s", len && key[0] != '[' ? "." : "", key);
	return buf;
}

#define PATH(map, key) dec__path(d, map, key, path, sizeof(path))

static const cbor_item_t *need(struct dec *d, const cbor_item_t *map, const char *key)
{
	const cbor_item_t *v;
	char path[160];

	if (d->ret)
		return NULL;
	v = lookup(map, key);
	if (!v)
		dec__fail(d, "field '%s' is missing", PATH(map, key));
	return v;
}

static uint64_t dec__uint(struct dec *d, const cbor_item_t *map, const char *key, cbor_int_width w)
{
	static const char *const names[] = { "u8", "u16", "u32", "u64" };
	const cbor_item_t *v = need(d, map, key);
	char path[160];

	if (!v)
		return 0;
	if (!cbor_isa_uint(v)) {
		dec__fail(d, "field '%s' is not an unsigned integer", PATH(map, key));
		return 0;
	}
	if (cbor_int_get_width(v) != w) {
		dec__fail(d, "field '%s' is not a fixed-width %s", PATH(map, key), names[w]);
		return 0;
	}
	return cbor_get_int(v);
}

uint8_t dec__u8(struct dec *d, const cbor_item_t *map, const char *key)
{
	return (uint8_t)dec__uint(d, map, key, CBOR_INT_8);
}

uint16_t dec__u16(struct dec *d, const cbor_item_t *map, const char *key)
{
	return (uint16_t)dec__uint(d, map, key, CBOR_INT_16);
}

uint32_t dec__u32(struct dec *d, const cbor_item_t *map, const char *key)
{
	return (uint32_t)dec__uint(d, map, key, CBOR_INT_32);
}

uint64_t dec__u64(struct dec *d, const cbor_item_t *map, const char *key)
{
	return dec__uint(d, map, key, CBOR_INT_64);
}

uint64_t dec__elem_u64(struct dec *d, const cbor_item_t *item, const char *what)
{
	char path[160];

	if (d->ret || !item)
		return 0;
	path_of(d, item, path, sizeof(path), 0);
	if (!path[0])
		snprintf(path, sizeof(path), "%s", what);
	if (!cbor_isa_uint(item)) {
		dec__fail(d, "field '%s' is not an unsigned integer", path);
		return 0;
	}
	if (cbor_int_get_width(item) != CBOR_INT_64) {
		dec__fail(d, "field '%s' is not a fixed-width u64", path);
		return 0;
	}
	return cbor_get_int(item);
}

bool dec__bool(struct dec *d, const cbor_item_t *map, const char *key)
{
	const cbor_item_t *v = need(d, map, key);
	char path[160];

	if (!v)
		return false;
	if (!cbor_isa_float_ctrl(v) || !cbor_is_bool(v)) {
		dec__fail(d, "field '%s' is not a boolean", PATH(map, key));
		return false;
	}
	return cbor_get_bool(v);
}

void dec__str(struct dec *d, const cbor_item_t *map, const char *key, char *dst, size_t max)
{
	const cbor_item_t *v = need(d, map, key);
	char path[160];
	size_t n;

	dst[0] = '\0';
	if (!v)
		return;
	if (!cbor_isa_string(v) || !cbor_string_is_definite(v)) {
		dec__fail(d, "field '%s' is not a text string", PATH(map, key));
		return;
	}
	n = cbor_string_length(v);
	if (n >= max) {
		dec__fail(d, "field '%s' is longer than %zu bytes", PATH(map, key), max - 1);
		return;
	}
	if (memchr(cbor_string_handle(v), 0, n)) {
		dec__fail(d, "field '%s' contains a NUL byte", PATH(map, key));
		return;
	}
	memcpy(dst, cbor_string_handle(v), n);
	dst[n] = '\0';
}

static const cbor_item_t *bytes_item(struct dec *d, const cbor_item_t *map, const char *key)
{
	const cbor_item_t *v = need(d, map, key);
	char path[160];

	if (v && (!cbor_isa_bytestring(v) || !cbor_bytestring_is_definite(v))) {
		dec__fail(d, "field '%s' is not a byte string", PATH(map, key));
		return NULL;
	}
	return v;
}

void dec__bytes(struct dec *d, const cbor_item_t *map, const char *key, void *dst, size_t len)
{
	const cbor_item_t *v = bytes_item(d, map, key);
	char path[160];

	if (!v)
		return;
	if (cbor_bytestring_length(v) != len) {
		dec__fail(d, "field '%s' has %zu bytes, expected %zu", PATH(map, key), cbor_bytestring_length(v), len);
		return;
	}
	memcpy(dst, cbor_bytestring_handle(v), len);
}

size_t dec__bytes_var(struct dec *d, const cbor_item_t *map, const char *key, void *dst, size_t max)
{
	const cbor_item_t *v = bytes_item(d, map, key);
	char path[160];
	size_t n;

	if (!v)
		return 0;
	n = cbor_bytestring_length(v);
	if (n > max) {
		dec__fail(d, "field '%s' has %zu bytes, at most %zu allowed", PATH(map, key), n, max);
		return 0;
	}
	memcpy(dst, cbor_bytestring_handle(v), n);
	return n;
}

const cbor_item_t *dec__map(struct dec *d, const cbor_item_t *map, const char *key)
{
	const cbor_item_t *v = need(d, map, key);
	char path[160];

	if (v && !cbor_isa_map(v)) {
		dec__fail(d, "field '%s' is not a map", PATH(map, key));
		return NULL;
	}
	if (v)
		note(d, v, map, key);
	return v;
}

cbor_item_t **dec__array(struct dec *d, const cbor_item_t *map, const char *key, size_t *n)
{
	const cbor_item_t *v = need(d, map, key);
	char path[160];

	*n = 0;
	if (!v)
		return NULL;
	if (!cbor_isa_array(v)) {
		dec__fail(d, "field '%s' is not an array", PATH(map, key));
		return NULL;
	}
	note(d, v, map, key);
	*n = cbor_array_size(v);
	return cbor_array_handle(v);
}

/* ---------- framing ---------- */

uint64_t snapfmt__hash(const void *p, size_t len)
{
	return XXH3_64bits(p, len);
}

void snapfmt__uuid_str(const uint8_t u[16], char out[37])
{
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
		 u[13], u[14], u[15]);
}

void snapfmt__header(struct sbuf *out, const uint8_t uuid[16])
{
	sbuf__put(out, SNAP_MAGIC, 8);
	sbuf__put_le32(out, SNAP_FORMAT_VERSION);
	sbuf__put_le32(out, SNAP_HEADER_SIZE);
	sbuf__put(out, uuid, 16);
}

void snapfmt__section(struct sbuf *out, const char *name, uint32_t version, uint32_t flags,
		      const struct sbuf *payload)
{
	uint16_t n = (uint16_t)strlen(name);
	uint8_t nl[2] = { (uint8_t)n, (uint8_t)(n >> 8) };

	if (payload->err) {
		out->err = payload->err;
		return;
	}
	sbuf__put(out, SNAP_SECTION_MAGIC, 4);
	sbuf__put(out, nl, 2);
	sbuf__put(out, name, n);
	sbuf__put_le32(out, version);
	sbuf__put_le32(out, flags);
	sbuf__put_le64(out, payload->len);
	sbuf__put_le64(out, snapfmt__hash(payload->p, payload->len));
	sbuf__put(out, payload->p, payload->len);
}

void snapfmt__finish(struct sbuf *out, unsigned int nsections)
{
	struct sbuf end = { 0 };

	if (out->err)
		return;
	enc__map(&end);
	enc__u32(&end, "sections", nsections);
	enc__u64(&end, "file_hash", snapfmt__hash(out->p, out->len));
	enc__end(&end);
	snapfmt__section(out, "end", 1, SNAP_FLAG_REQUIRED, &end);
	sbuf__free(&end);
}

static bool valid_section_name(const uint8_t *p, size_t n)
{
	if (!n || n > SNAP_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_'))
			return false;
	}
	return true;
}

int snapfmt__check_header(const uint8_t *p, size_t len, uint32_t *format_version, char *err, size_t errlen)
{
	if (len < SNAP_HEADER_SIZE)
		return util__fail(-EINVAL, err, errlen, "file is too short for a header (%zu bytes)", len);
	if (memcmp(p, SNAP_MAGIC, 8))
		return util__fail(-EINVAL, err, errlen, "not a khyve snapshot state file (wrong magic)");
	*format_version = get_le32(p + 8);
	if (*format_version > SNAP_FORMAT_VERSION)
		return util__fail(-EPROTO, err, errlen,
			    "format version %u is newer than this khyve reads (%u)",
			    *format_version, SNAP_FORMAT_VERSION);
	if (*format_version == 0 || get_le32(p + 12) != SNAP_HEADER_SIZE)
		return util__fail(-EINVAL, err, errlen, "header is damaged (version %u, size %u)",
			    *format_version, get_le32(p + 12));
	return 0;
}

/*
 * The section frame at off (after n sections): its fields in *s and its
 * name's length in *nlp.  The payload is checked for its length only.
 */
static int read_frame(const uint8_t *p, size_t len, uint64_t off, unsigned int n, struct snap_section *s,
		      uint16_t *nlp, char *err, size_t errlen)
{
	uint64_t left = len - off;
	uint16_t nl;

	if (left == 0)
		return util__fail(-EINVAL, err, errlen,
				  "file is truncated: no 'end' section after %u sections (at byte %llu)",
				  n, (unsigned long long)off);
	if (left < 6 || memcmp(p + off, SNAP_SECTION_MAGIC, 4))
		return util__fail(-EINVAL, err, errlen, "no section frame at byte %llu%s",
				  (unsigned long long)off, left < 6 ? " (file is truncated)" : "");
	nl = (uint16_t)(p[off + 4] | p[off + 5] << 8);
	if (left < (uint64_t)SNAP_SECTION_HDR + nl)
		return util__fail(-EINVAL, err, errlen, "file is truncated inside the section frame at byte %llu",
				  (unsigned long long)off);
	if (!valid_section_name(p + off + 6, nl))
		return util__fail(-EINVAL, err, errlen, "section at byte %llu has an invalid name",
				  (unsigned long long)off);
	memset(s, 0, sizeof(*s));
	memcpy(s->name, p + off + 6, nl);
	s->offset = off;
	s->version = get_le32(p + off + 6 + nl);
	s->flags = get_le32(p + off + 10 + nl);
	s->len = get_le64(p + off + 14 + nl);
	s->hash = get_le64(p + off + 22 + nl);
	s->payload = p + off + SNAP_SECTION_HDR + nl;
	if (s->len > SNAP_SECTION_MAX)
		return util__fail(-EINVAL, err, errlen, "section '%s': payload of %llu bytes, at most %u MiB",
				  s->name, (unsigned long long)s->len, SNAP_SECTION_MAX >> 20);
	if (s->len > left - SNAP_SECTION_HDR - nl)
		return util__fail(-EINVAL, err, errlen,
				  "section '%s': length %llu runs past the end of the file (%llu bytes left): file is truncated",
				  s->name, (unsigned long long)s->len,
				  (unsigned long long)(left - SNAP_SECTION_HDR - nl));
	if (s->flags & ~SNAP_FLAG_REQUIRED)
		return util__fail(-EINVAL, err, errlen, "section '%s' has unknown flags 0x%x", s->name, s->flags);
	*nlp = nl;
	return 0;
}

/*
 * The 'end' section s, framed at off after n sections: it counts them,
 * holds the checksum of everything before it, and nothing follows it.
 */
static int check_end(const uint8_t *p, size_t len, uint64_t off, uint16_t nl, unsigned int n,
		     const struct snap_section *s, bool keep_going, char *err, size_t errlen)
{
	struct dec d = { .section = "end", .err = err, .errlen = errlen };
	cbor_item_t *m;
	uint32_t count;
	uint64_t fh;

	if (s->version != 1 || s->flags != SNAP_FLAG_REQUIRED)
		return util__fail(-EINVAL, err, errlen, "section 'end' has version %u flags 0x%x, expected 1 and 0x1",
				  s->version, s->flags);
	if (!s->hash_ok)
		return util__fail(-EINVAL, err, errlen, "section 'end': checksum mismatch (corrupt)");
	m = dec__load(&d, s->payload, s->len);
	count = dec__u32(&d, m, "sections");
	fh = dec__u64(&d, m, "file_hash");
	if (m)
		cbor_decref(&m);
	if (d.ret)
		return d.ret;
	if (count != n)
		return util__fail(-EINVAL, err, errlen, "section 'end' counts %u sections, file has %u", count, n);
	if (fh != snapfmt__hash(p, off) && !keep_going)
		return util__fail(-EINVAL, err, errlen, "file checksum mismatch (corrupt header or frames)");
	off += SNAP_SECTION_HDR + nl + s->len;
	if (off != len)
		return util__fail(-EINVAL, err, errlen, "%llu bytes of garbage after the 'end' section",
				  (unsigned long long)(len - off));
	return 0;
}

int snapfmt__parse(const uint8_t *p, size_t len, uint32_t *format_version, uint8_t uuid[16],
		   struct snap_section **secs, unsigned int *nsecs, bool keep_going,
		   char *err, size_t errlen)
{
	struct snap_section *v = NULL, *s;
	unsigned int n = 0, cap = 0;
	uint64_t off = SNAP_HEADER_SIZE;
	int ret;

	*secs = NULL;
	*nsecs = 0;
	ret = snapfmt__check_header(p, len, format_version, err, errlen);
	if (ret)
		return ret;
	memcpy(uuid, p + 16, 16);

	for (;;) {
		struct snap_section f;
		uint16_t nl = 0;

		ret = read_frame(p, len, off, n, &f, &nl, err, errlen);
		if (ret)
			goto fail;
		if (n == cap) {
			struct snap_section *nv;

			cap = cap ? cap * 2 : 16;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				ret = util__fail(-ENOMEM, err, errlen, "out of memory");
				goto fail;
			}
			v = nv;
		}
		s = &v[n];
		*s = f;
		if (n == SNAP_MAX_SECTIONS) {
			ret = util__fail(-EINVAL, err, errlen, "more than %d sections", SNAP_MAX_SECTIONS);
			goto fail;
		}
		s->hash_ok = snapfmt__hash(s->payload, s->len) == s->hash;
		if (!s->hash_ok && !keep_going) {
			ret = util__fail(-EINVAL, err, errlen, "section '%s': checksum mismatch (corrupt)", s->name);
			goto fail;
		}
		for (unsigned int i = 0; i < n; i++) {
			if (!strcmp(v[i].name, s->name)) {
				ret = util__fail(-EINVAL, err, errlen, "section '%s' appears twice", s->name);
				goto fail;
			}
		}
		if (!strcmp(s->name, "end")) {
			ret = check_end(p, len, off, nl, n, s, keep_going, err, errlen);
			if (ret)
				goto fail;
			break;
		}
		off += SNAP_SECTION_HDR + nl + s->len;
		n++;
	}
	*secs = v;
	*nsecs = n;
	return 0;
fail:
	if (keep_going && n) {
		*secs = v;
		*nsecs = n;
		return ret;
	}
	free(v);
	return ret;
}
