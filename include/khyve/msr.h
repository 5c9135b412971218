/* Model-specific registers: the values a vCPU has after a hardware reset. */
#ifndef KHYVE_MSR_H
#define KHYVE_MSR_H

#include <stdint.h>

/* Index list KVM saves/restores (KVM_GET_MSR_INDEX_LIST). 0 or -errno. */
int msr__index_list(int kvm_fd, uint32_t **list, unsigned int *n);

/* Set the reset values of the MSRs in list that have a defined reset value. */
int msr__reset(int vcpu_fd, const uint32_t *list, unsigned int n);

#endif
