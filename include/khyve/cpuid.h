/*
 * CPUID for each vCPU: what KVM supports, with the APIC ID and topology
 * leaves made to describe one socket of ncpus cores, one thread each.
 */
#ifndef KHYVE_CPUID_H
#define KHYVE_CPUID_H

#include <stdint.h>
#include <linux/kvm.h>

/* KVM_GET_SUPPORTED_CPUID into a malloc'd table.  0 or -errno. */
int cpuid__supported(int kvm_fd, struct kvm_cpuid2 **out);

/* Adjust a copy of the supported table for vCPU cpu of ncpus. */
void cpuid__setup_vcpu(struct kvm_cpuid2 *c, unsigned int cpu, unsigned int ncpus);

/* Find leaf/subleaf in c, or NULL. */
struct kvm_cpuid_entry2 *cpuid__find(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx);

#endif
