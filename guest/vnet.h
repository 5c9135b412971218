/* SPDX-License-Identifier: MIT */
/* khyve test guest: ring-3 virtio-pci driver for the network device. */
#ifndef TG_VNET_H
#define TG_VNET_H

#include <stdint.h>
#include "work.h"

/* Find and set up the device, post the receive buffers (p is kept). */
const char *tg_vnet_init(const struct tg_params *p);
/* Send round `round`'s frames, wait for every echo; *hash_sum gets the sum
 * of their tg_net_frame_hash.  NULL or what went wrong. */
const char *tg_vnet_round(uint64_t round, uint64_t *hash_sum);

#endif
