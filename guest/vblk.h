/* SPDX-License-Identifier: MIT */
/* khyve test guest: ring-3 virtio-pci driver for the block device. */
#ifndef TG_VBLK_H
#define TG_VBLK_H

#include <stdint.h>
#include "work.h"

/* Find and set up the device (p is kept); NULL, or what went wrong. */
const char *tg_vblk_init(const struct tg_params *p);
/* Round `round` (see work.h), tallied into *t; NULL or what went wrong. */
const char *tg_vblk_round(uint64_t round, struct tg_blk_tally *t);

/* vblk.c's 4 MiB of data buffers, which blkbench (bench.c) borrows */
#define TG_BLK_POOL_BYTES (4u << 20)
extern uint8_t tg_blk_pool[1024][4096];

#endif
