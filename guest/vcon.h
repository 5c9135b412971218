/* SPDX-License-Identifier: MIT */
/* khyve test guest: ring-3 virtio-pci driver for the console device. */
#ifndef TG_VCON_H
#define TG_VCON_H

#include <stdint.h>

/* Find and set up the device; NULL, or what went wrong (static string). */
const char *tg_vcon_init(void);
/* Write round `round`'s part of the stream; NULL or what went wrong. */
const char *tg_vcon_round(uint64_t seed, uint64_t round);

#endif
