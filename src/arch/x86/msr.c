#include <errno.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <linux/kvm.h>

#include "khyve/log.h"
#include "khyve/msr.h"
#include "khyve/util.h"

int msr__index_list(int kvm_fd, uint32_t **list, unsigned int *n)
{
	struct kvm_msr_list probe = { .nmsrs = 0 }, *l;

	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return -errno;
	l = calloc(1, sizeof(*l) + probe.nmsrs * sizeof(uint32_t));
	if (!l)
		return -ENOMEM;
	l->nmsrs = probe.nmsrs;
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		int ret = -errno;

		free(l);
		return ret;
	}
	*list = malloc(l->nmsrs * sizeof(uint32_t) + 1);
	if (!*list) {
		free(l);
		return -ENOMEM;
	}
	for (unsigned int i = 0; i < l->nmsrs; i++)
		(*list)[i] = l->indices[i];
	*n = l->nmsrs;
	free(l);
	return 0;
}

/* Architectural values after RESET (SDM vol. 3, table 10-1; APM vol. 2). */
static const struct { uint32_t index; uint64_t value; } reset_values[] = {
	{ 0x1a0, 1 },				/* MISC_ENABLE: fast strings */
	{ 0x277, 0x0007040600070406ULL },	/* PAT */
	{ 0x174, 0 }, { 0x175, 0 }, { 0x176, 0 },	/* SYSENTER_CS/ESP/EIP */
	{ 0xc0000081, 0 }, { 0xc0000082, 0 },	/* STAR, LSTAR */
	{ 0xc0000083, 0 }, { 0xc0000084, 0 },	/* CSTAR, SFMASK */
	{ 0xc0000102, 0 },			/* KERNEL_GS_BASE */
	{ 0x2ff, 0 },				/* MTRRdefType: MTRRs disabled */
};

int msr__reset(int vcpu_fd, const uint32_t *list, unsigned int n)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[ARRAY_SIZE(reset_values)];
	} m = { 0 };
	int r;

	for (unsigned int i = 0; i < ARRAY_SIZE(reset_values); i++) {
		for (unsigned int j = 0; j < n; j++) {
			if (list[j] != reset_values[i].index)
				continue;
			m.e[m.hdr.nmsrs].index = reset_values[i].index;
			m.e[m.hdr.nmsrs].data = reset_values[i].value;
			m.hdr.nmsrs++;
			break;
		}
	}
	r = ioctl(vcpu_fd, KVM_SET_MSRS, &m);
	if (r < 0)
		return -errno;
	if ((unsigned int)r != m.hdr.nmsrs)
		pr_debug("KVM refused reset value of MSR 0x%x", m.e[r].index);
	return 0;
}
