/* COM1 wiring: feeding host input to the guest's UART. */
#ifndef KHYVE_SERIAL_H
#define KHYVE_SERIAL_H

#include <stdint.h>

/* opaque is vm->console.  Returns the bytes taken. */
unsigned int serial__input(void *opaque, const uint8_t *buf, unsigned int len);
unsigned int serial__input_space(void *opaque);

#endif
