/* SPDX-License-Identifier: MIT */
/* khyve test guest: the hostile workload (attacks on every virtio device). */
#ifndef TG_HOSTILE_H
#define TG_HOSTILE_H

#include <stdint.h>
#include "work.h"

/* Find the virtio devices (p is kept); NULL, or what went wrong (none found). */
const char *tg_hostile_init(const struct tg_params *p);
/* Round `round`: the attacks; *recoveries gets the recoveries per device
 * (TG_HOSTILE_PER_ROUND on success).  NULL or what went wrong. */
const char *tg_hostile_round(uint64_t round, uint64_t *recoveries);
/* One line per device: what was done and how the device reacted. */
void tg_hostile_summary(void (*out)(const char *line));

#endif
