/*
 * Unit tests for the per-vCPU CPUID adjustments (src/arch/x86/cpuid.c), on
 * a hand-built table standing in for KVM_GET_SUPPORTED_CPUID.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "khyve/cpuid.h"
#include "khyve/util.h"

#define SIG KVM_CPUID_FLAG_SIGNIFCANT_INDEX
#define HTT (1u << 28)
#define HYPERVISOR (1u << 31)

/* cache descriptors for leaf 4 / 0x8000001d: type | level << 5 | self-init */
#define CACHE(type, level) ((type) | ((level) << 5) | 0x100u)
/* junk in the sharing fields, to prove they are rewritten */
#define CACHE_JUNK ((0x3fu << 26) | (0xfffu << 14))

static const struct kvm_cpuid_entry2 template[] = {
	{ .function = 0, .eax = 0x1f, .ebx = 0x756e6547, .ecx = 0x6c65746e, .edx = 0x49656e69 },
	{ .function = 1, .eax = 0x000806ec, .ebx = 0xaabb0800, .ecx = 0x7ffafbbf, .edx = 0x178bfbff },
	{ .function = 4, .index = 0, .flags = SIG, .eax = CACHE(1, 1) | CACHE_JUNK, .ebx = 0x01c0003f },
	{ .function = 4, .index = 1, .flags = SIG, .eax = CACHE(2, 1) | CACHE_JUNK, .ebx = 0x01c0003f },
	{ .function = 4, .index = 2, .flags = SIG, .eax = CACHE(3, 2) | CACHE_JUNK, .ebx = 0x03c0003f },
	{ .function = 4, .index = 3, .flags = SIG, .eax = CACHE(3, 3) | CACHE_JUNK, .ebx = 0x03c0003f },
	{ .function = 4, .index = 4, .flags = SIG, .eax = 0, .ebx = 0x12345678 },
	{ .function = 0xb, .index = 0, .flags = SIG, .eax = 0x11, .ebx = 0x22, .ecx = 0x33, .edx = 0x44 },
	{ .function = 0xb, .index = 1, .flags = SIG, .eax = 0x11, .ebx = 0x22, .ecx = 0x33, .edx = 0x44 },
	{ .function = 0xb, .index = 2, .flags = SIG, .eax = 0x11, .ebx = 0x22, .ecx = 0x33, .edx = 0x44 },
	{ .function = 0x80000000, .eax = 0x80000021 },
	{ .function = 0x80000001, .eax = 0x1234, .ecx = 0x5678, .edx = 0x9abc },
	{ .function = 0x80000008, .eax = 0x3030, .ebx = 0x0100d000, .ecx = 0xffffffff, .edx = 0x55 },
	{ .function = 0x8000001d, .index = 0, .flags = SIG, .eax = CACHE(1, 1) | CACHE_JUNK },
	{ .function = 0x8000001d, .index = 3, .flags = SIG, .eax = CACHE(3, 3) | CACHE_JUNK },
	{ .function = 0x8000001e, .eax = 0xdead, .ebx = 0xbeef, .ecx = 0xcafe, .edx = 0x77 },
};

static struct kvm_cpuid2 *make_table(void)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + sizeof(template));

	assert_non_null(c);
	c->nent = ARRAY_SIZE(template);
	memcpy(c->entries, template, sizeof(template));
	return c;
}

static struct kvm_cpuid_entry2 *get(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	struct kvm_cpuid_entry2 *e = cpuid__find(c, fn, idx);

	assert_non_null(e);
	return e;
}

/* cpu, ncpus, bits of APIC ID for the core level, addressable IDs */
static const struct topo {
	unsigned int cpu, ncpus, bits, addressable;
} cases[] = {
	{ 0, 1, 0, 1 },
	{ 3, 4, 2, 4 },
	{ 2, 3, 2, 4 },
	{ 5, 6, 3, 8 },
};

static void test_find(void **state)
{
	struct kvm_cpuid2 *c = make_table();
	struct kvm_cpuid_entry2 *e;

	(void)state;
	/* no significant index: any subleaf matches */
	e = cpuid__find(c, 1, 0);
	assert_ptr_equal(e, &c->entries[1]);
	assert_ptr_equal(cpuid__find(c, 1, 7), &c->entries[1]);
	assert_ptr_equal(cpuid__find(c, 0x80000008, 3), &c->entries[12]);
	/* significant index: only that subleaf */
	assert_ptr_equal(cpuid__find(c, 4, 0), &c->entries[2]);
	assert_ptr_equal(cpuid__find(c, 4, 3), &c->entries[5]);
	assert_ptr_equal(cpuid__find(c, 0xb, 2), &c->entries[9]);
	assert_null(cpuid__find(c, 4, 5));
	assert_null(cpuid__find(c, 0xb, 3));
	assert_null(cpuid__find(c, 0x8000001d, 1));
	/* absent leaves */
	assert_null(cpuid__find(c, 2, 0));
	assert_null(cpuid__find(c, 0x40000000, 0));
	/* empty table */
	c->nent = 0;
	assert_null(cpuid__find(c, 0, 0));
	free(c);
}

static void test_leaf1(void **state)
{
	(void)state;
	for (unsigned int i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct topo *t = &cases[i];
		struct kvm_cpuid2 *c = make_table();
		struct kvm_cpuid_entry2 *e = get(c, 1, 0);

		/* start with HTT the opposite of what is expected */
		if (t->ncpus > 1)
			e->edx &= ~HTT;
		else
			e->edx |= HTT;
		cpuid__setup_vcpu(c, t->cpu, t->ncpus);
		print_message("cpu %u of %u\n", t->cpu, t->ncpus);
		assert_int_equal(e->eax, 0x000806ec);
		assert_int_equal(e->ebx >> 24, t->cpu);			/* initial APIC ID */
		assert_int_equal((e->ebx >> 16) & 0xff, t->addressable);	/* addressable IDs */
		assert_int_equal(e->ebx & 0xffff, 0x0800);			/* CLFLUSH etc. kept */
		assert_int_equal(e->ecx, 0x7ffafbbf | HYPERVISOR);
		assert_int_equal(e->edx & ~HTT, 0x178bfbff & ~HTT);
		if (t->ncpus > 1)
			assert_int_equal(e->edx & HTT, HTT);
		else
			assert_int_equal(e->edx & HTT, 0);
		free(c);
	}
}

static void test_leaf4(void **state)
{
	(void)state;
	for (unsigned int i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct topo *t = &cases[i];
		struct kvm_cpuid2 *c = make_table();
		uint32_t cores = (1u << t->bits) - 1;

		cpuid__setup_vcpu(c, t->cpu, t->ncpus);
		print_message("cpu %u of %u\n", t->cpu, t->ncpus);
		/* L1d, L1i, L2: one core; EAX[31:26] cores per package - 1 */
		assert_int_equal(get(c, 4, 0)->eax, CACHE(1, 1) | cores << 26);
		assert_int_equal(get(c, 4, 1)->eax, CACHE(2, 1) | cores << 26);
		assert_int_equal(get(c, 4, 2)->eax, CACHE(3, 2) | cores << 26);
		/* L3: shared by all */
		assert_int_equal(get(c, 4, 3)->eax, CACHE(3, 3) | cores << 26 | cores << 14);
		assert_int_equal(get(c, 4, 0)->ebx, 0x01c0003f);
		/* the terminating null descriptor is left alone */
		assert_int_equal(get(c, 4, 4)->eax, 0);
		assert_int_equal(get(c, 4, 4)->ebx, 0x12345678);
		/* AMD 0x8000001d: L1 not shared, L3 shared by ncpus */
		assert_int_equal(get(c, 0x8000001d, 0)->eax, CACHE(1, 1) | (0x3fu << 26));
		assert_int_equal(get(c, 0x8000001d, 3)->eax,
				 CACHE(3, 3) | (0x3fu << 26) | (t->ncpus - 1) << 14);
		free(c);
	}
}

static void test_leaf_b(void **state)
{
	(void)state;
	for (unsigned int i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct topo *t = &cases[i];
		struct kvm_cpuid2 *c = make_table();
		struct kvm_cpuid_entry2 *e;

		cpuid__setup_vcpu(c, t->cpu, t->ncpus);
		print_message("cpu %u of %u\n", t->cpu, t->ncpus);
		/* level 0: SMT, one thread, shift 0 */
		e = get(c, 0xb, 0);
		assert_int_equal(e->eax, 0);
		assert_int_equal(e->ebx, 1);
		assert_int_equal(e->ecx, (1u << 8) | 0);
		assert_int_equal(e->edx, t->cpu);
		/* level 1: core, shift to the package ID */
		e = get(c, 0xb, 1);
		assert_int_equal(e->eax, t->bits);
		assert_int_equal(e->ebx, t->ncpus);
		assert_int_equal(e->ecx, (2u << 8) | 1);
		assert_int_equal(e->edx, t->cpu);
		/* level 2: invalid, ECX[7:0] echoes the level */
		e = get(c, 0xb, 2);
		assert_int_equal(e->eax, 0);
		assert_int_equal(e->ebx, 0);
		assert_int_equal(e->ecx, 2);
		assert_int_equal(e->edx, t->cpu);
		free(c);
	}
}

static void test_amd_leaves(void **state)
{
	(void)state;
	for (unsigned int i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct topo *t = &cases[i];
		struct kvm_cpuid2 *c = make_table();
		struct kvm_cpuid_entry2 *e;

		cpuid__setup_vcpu(c, t->cpu, t->ncpus);
		print_message("cpu %u of %u\n", t->cpu, t->ncpus);
		e = get(c, 0x80000008, 0);
		assert_int_equal(e->eax, 0x3030);
		assert_int_equal(e->ebx, 0x0100d000);
		/* NC = ncpus - 1 in [7:0], ApicIdCoreIdSize in [15:12], rest kept */
		assert_int_equal(e->ecx, 0xffff0f00u | (t->ncpus - 1) | (t->bits << 12));
		assert_int_equal(e->edx, 0x55);
		e = get(c, 0x8000001e, 0);
		assert_int_equal(e->eax, t->cpu);	/* extended APIC ID */
		assert_int_equal(e->ebx, t->cpu);	/* core ID, 1 thread per core */
		assert_int_equal(e->ecx, 0);		/* node 0, 1 node */
		/* untouched leaves */
		e = get(c, 0x80000001, 0);
		assert_int_equal(e->eax, 0x1234);
		assert_int_equal(e->ecx, 0x5678);
		assert_int_equal(e->edx, 0x9abc);
		e = get(c, 0, 0);
		assert_int_equal(e->eax, 0x1f);
		assert_int_equal(e->ebx, 0x756e6547);
		free(c);
	}
}

/* Each vCPU gets its own copy; APIC IDs across vCPUs are distinct. */
static void test_distinct_apic_ids(void **state)
{
	(void)state;
	for (unsigned int cpu = 0; cpu < 8; cpu++) {
		struct kvm_cpuid2 *c = make_table();

		cpuid__setup_vcpu(c, cpu, 8);
		assert_int_equal(get(c, 1, 0)->ebx >> 24, cpu);
		assert_int_equal(get(c, 0xb, 1)->edx, cpu);
		assert_int_equal(get(c, 0xb, 1)->eax, 3);
		assert_int_equal((get(c, 1, 0)->ebx >> 16) & 0xff, 8);
		free(c);
	}
}

/*
 * More than 128 vCPUs (the MP table allows up to 254): the 8-bit field
 * CPUID.1:EBX[23:16] cannot hold 256, but must not read as zero either.
 */
static void test_leaf1_many_cpus(void **state)
{
	static const unsigned int counts[] = { 128, 129, 200, 254 };

	(void)state;
	for (unsigned int i = 0; i < ARRAY_SIZE(counts); i++) {
		struct kvm_cpuid2 *c = make_table();
		unsigned int n = counts[i], field;

		cpuid__setup_vcpu(c, n - 1, n);
		field = (get(c, 1, 0)->ebx >> 16) & 0xff;
		assert_int_equal(get(c, 1, 0)->ebx >> 24, n - 1);
		assert_int_equal(get(c, 0xb, 1)->ebx, n);
		assert_int_equal(get(c, 0xb, 1)->eax, n > 128 ? 8 : 7);
		free(c);
		if (field < n && field != 0xff)
			fail_msg("%u vCPUs: CPUID.1:EBX[23:16] is %u", n, field);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_find),
		cmocka_unit_test(test_leaf1),
		cmocka_unit_test(test_leaf4),
		cmocka_unit_test(test_leaf_b),
		cmocka_unit_test(test_amd_leaves),
		cmocka_unit_test(test_distinct_apic_ids),
		cmocka_unit_test(test_leaf1_many_cpus),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
