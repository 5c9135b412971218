/* COM1 wiring: feeding host input to the guest's UART. */
#ifndef KHYVE_SERIAL_H
#define KHYVE_SERIAL_H

#include <stdint.h>

/* opaque is vm->console.  Returns the bytes taken. */
unsigned int serial__input(void *opaque, const uint8_t *buf, unsigned int len);
/*
 * With -l com1,file:PATH, open PATH as the VM will (so that a bad path is
 * reported before /dev/kvm is opened).  0 or -errno with err set.
 */
struct vm_config;
int serial__check_output(const struct vm_config *cfg, char *err, size_t errlen);

#endif
