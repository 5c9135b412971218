#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "khyve/log.h"
#include "khyve/vm.h"

void exit__request(struct vm *vm, int status)
{
	int expected = -1;
	uint64_t one = 1;

	if (atomic_compare_exchange_strong(&vm->exit_status, &expected, status)) {
		if (write(vm->exit_efd, &one, sizeof(one)) < 0)
			pr_debug("exit eventfd: %s", strerror(errno));
	}
}
