/* Loading the guest kernel named in the configuration. */
#ifndef KHYVE_BOOT_H
#define KHYVE_BOOT_H

#include <stddef.h>

#include "khyve/vm.h"

/* Load -k KERNEL and -i MODULEs and point the BSP at the entry.  On error
 * returns -errno with a one-line reason in err. */
/* Allocate guest RAM and load the multiboot kernel and modules (no KVM yet). */
int boot__load(struct vm *vm, char *err, size_t errlen);
/* Point the boot processor at the loaded kernel (after vm__create). */
int boot__setup_bsp(struct vm *vm, char *err, size_t errlen);

#endif
