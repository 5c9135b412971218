/* SPDX-License-Identifier: MIT */
/* khyve test guest: what the ring-0 kernel's files share. */
#ifndef TG_KERNEL_H
#define TG_KERNEL_H

#include <stdint.h>
#include "abi.h"

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

/* kernel_cpus.c: the local APIC ids of the processors into apic[], the
 * BSP's (bsp) first; how many (also in tg_info.ncpu, the source in
 * tg_info.cpu_source) */
u32 kernel__cpus_discover(u8 apic[TG_MAXCPU], u32 bsp);

#endif
