/* SPDX-License-Identifier: MIT */
/* khyve test guest: ring-3 virtio-pci driver for the entropy device. */
#ifndef TG_VRNG_H
#define TG_VRNG_H

#include <stdint.h>

/* Find and set up the device; NULL, or what went wrong (static string). */
const char *tg_vrng_init(void);
/* One round's TG_RNG_REQS requests, checked; NULL or what went wrong. */
const char *tg_vrng_round(void);

#endif
