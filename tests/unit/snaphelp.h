/*
 * What the snapshot state file's unit tests share (tests/unit/snaphelp.c,
 * linked into test_snapshot, test_snapshot_corrupt, test_snapshot_fields
 * and test_snapshot_fuzz): a seeded PRNG, states built from it with every
 * field non-zero, field-by-field comparison, the reader run on exact-size
 * copies, the baseline image (2 vCPUs) with an independent frame walker,
 * an image builder with faults, and payload surgery.
 *
 * Whatever goes wrong fails the running cmocka test.
 */
#ifndef KHYVE_TESTS_SNAPHELP_H
#define KHYVE_TESTS_SNAPHELP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cbor.h>

#include "khyve/config.h"
#include "khyve/snapfmt.h"
#include "khyve/snapsec.h"
#include "khyve/util.h"
#include "khyve/vmstate.h"

#define ERRLEN 512

/* ------------------------------------------------------------------ */
/* deterministic PRNG (splitmix64)                                     */

struct rng {
	uint64_t s;
};

uint64_t rnd(struct rng *r);
/* every byte non-zero, so that a field the decoder drops is always seen */
void rnd_fill(struct rng *r, void *p, size_t n);

/* ------------------------------------------------------------------ */
/* building states                                                     */

void make_vcpu(struct rng *r, struct vcpu_state *v, uint32_t xsave_len, unsigned int nmsrs,
	       unsigned int ncpuid, unsigned int nxcrs);
void make_vmk(struct rng *r, struct vmkvm_state *k);
void make_meta(struct rng *r, struct snap_meta *m);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* com1: CONSOLE_STDIO, CONSOLE_FILE or CONSOLE_NULL */
void make_config(struct rng *r, struct vm_config *c, unsigned int ncpus, uint64_t mem,
		 enum console_backend com1, unsigned int nmodules);
void make_memory(struct rng *r, struct snap_memory *m, uint64_t mem, const uint8_t uuid[16]);
void make_state(uint64_t seed, struct snap_state *s, unsigned int ncpus, uint64_t mem);

/* ------------------------------------------------------------------ */
/* comparing states, field by field                                    */

#define SAME_MEM(what, a, b, n)						\
	do {								\
		if (memcmp((a), (b), (n)))				\
			fail_msg("%s differs after the round trip", what); \
	} while (0)
#define SAME_FIELD(what, a, b, f) SAME_MEM(what "." #f, &(a)->f, &(b)->f, sizeof((a)->f))

void check_vcpu_equal(const struct vcpu_state *a, const struct vcpu_state *b);
void check_irqchip_equal(const struct vmkvm_state *a, const struct vmkvm_state *b);
void check_meta_equal(const struct snap_meta *a, const struct snap_meta *b);
void check_config_equal(const struct vm_config *a, const struct vm_config *b);
void check_memory_equal(const struct snap_memory *a, const struct snap_memory *b);
void check_state_equal(const struct snap_state *a, const struct snap_state *b);
void assert_same_bytes(const struct sbuf *a, const struct sbuf *b);

/* ------------------------------------------------------------------ */
/* error checks                                                         */

/* snapsec__read_state on an exact-size copy; a failure must leave s empty */
int read_img(const uint8_t *p, size_t len, struct snap_state *s, char *err);
/* The image must be refused, with every given substring in the message. */
void expect_refused_(const char *file, int line, const uint8_t *p, size_t len, int want_ret, ...);

#define expect_refused(p, len, ret, ...) \
	expect_refused_(__FILE__, __LINE__, p, len, ret, __VA_ARGS__, (const char *)NULL)

/* ------------------------------------------------------------------ */
/* the baseline image (2 vCPUs) and an independent frame walker          */

#define BASE_SEED	0x5eed0001
#define BASE_MEM	(128 * MiB)
#define MAX_FRAMES	32

struct frame {
	char name[SNAP_NAME_MAX + 1];
	size_t off, nl, ver_off, flags_off, len_off, hash_off, payload_off, plen, end;
};

extern struct snap_state g_state;
extern struct sbuf g_img;
extern struct frame g_fr[MAX_FRAMES];
extern unsigned int g_nfr;	/* including "end" */

uint32_t le32(const uint8_t *p);
/* the cmocka group's: the baseline state, its image and frames */
int group_setup(void **state);
int group_teardown(void **state);

/* ------------------------------------------------------------------ */
/* an image builder with faults, from the same public encoders           */

struct extra_sec {
	const char *name;
	uint32_t version, flags;
	const struct sbuf *payload;
};

struct bopts {
	const char *skip;		/* leave this section out */
	const char *dup;		/* write this section twice */
	const char *ver_of;		/* write this section with version ver */
	uint32_t ver;
	const char *repl_of;		/* this section's payload is repl */
	const struct sbuf *repl;
	struct extra_sec extra;		/* one more section before "end" */
	int end_delta;			/* added to the count in "end" */
	bool no_end;
};

unsigned int section_names(const struct snap_state *s, char names[][16]);
void encode_section(const struct snap_state *s, const char *name, struct sbuf *b);
void build(struct sbuf *out, const struct snap_state *s, const struct bopts *o);

/* ------------------------------------------------------------------ */
/* payload surgery (valid checksums are restored by build())             */

/* the length of the one CBOR item at p */
size_t item_len(const uint8_t *p, size_t n);
/* offset of the value of the only key `key` in payload b */
size_t find_key(const struct sbuf *b, const char *key);
void patch(struct sbuf *b, size_t off, size_t del, const void *ins, size_t n);
void set_value(struct sbuf *b, const char *key, const void *v, size_t n);
/* CBOR unsigned integer of an exact width: 8, 16, 32 or 64 */
size_t cbor_uint_w(uint8_t *o, unsigned int width, uint64_t v);
void set_uint(struct sbuf *b, const char *key, unsigned int width, uint64_t v);
void payload_of(const char *name, struct sbuf *b);
/* build the baseline with section `name`'s payload replaced, expect refusal */
void expect_payload_refused_(const char *file, int line, const char *name, const struct sbuf *pl,
			     const char *a, const char *b);

#define expect_payload_refused(name, pl, a, b) expect_payload_refused_(__FILE__, __LINE__, name, pl, a, b)

#endif
