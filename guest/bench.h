/* SPDX-License-Identifier: MIT */
/* khyve test guest: benchmark workloads blkbench and netbench (bench.c). */
#ifndef TG_BENCH_H
#define TG_BENCH_H

#include <stdint.h>
#include "work.h"

/* Find and set up the device (p is kept); NULL, or what went wrong. */
const char *tg_blkbench_init(const struct tg_params *p);
/* p->blkops requests (then a flush after writes) between the BENCH begin
 * and end lines; *ops, *bytes completed, *status_or every status ORed. */
const char *tg_blkbench_round(uint64_t round, uint64_t *ops, uint64_t *bytes, uint32_t *status_or);

const char *tg_netbench_init(const struct tg_params *p);
/* p->netframes frames of p->netsize bytes as fast as the transmitq takes them. */
const char *tg_netbench_round(uint64_t round, uint64_t *frames, uint64_t *bytes);

#endif
