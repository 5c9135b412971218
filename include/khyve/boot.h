/* Loading the guest kernel named in the configuration. */
#ifndef KHYVE_BOOT_H
#define KHYVE_BOOT_H

#include <stddef.h>

#include "khyve/vm.h"

/* Load -k KERNEL and -i MODULEs and point the BSP at the entry.  On error
 * returns -errno with a one-line reason in err. */
int boot__multiboot(struct vm *vm, char *err, size_t errlen);

#endif
