/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest: workloads shared by the guest's ring-3 task and the host
 * reference (testguest-ref). Pure computation: no system calls, no globals
 * that depend on the platform. Every result depends only on the parameters,
 * the CPU index and the number of CPUs.
 */
#ifndef TG_WORK_H
#define TG_WORK_H

#include <stddef.h>
#include <stdint.h>

#define TG_NCPU_MAX   64

/* workload bits, also the fold order */
#define TG_W_MEM      1u
#define TG_W_FPU      2u
#define TG_W_SMP      4u
#define TG_W_TIME     8u
#define TG_W_RNG      16u              /* needs a virtio-rnd PCI device */
#define TG_W_CON      32u              /* needs a virtio-console PCI device */
#define TG_W_BLK      64u              /* needs a virtio-blk PCI device */
#define TG_W_NET      128u             /* needs a virtio-net PCI device and an echo */
#define TG_W_HOSTILE  256u             /* attacks every virtio device it finds */
#define TG_W_BLKBENCH 512u             /* needs a virtio-blk PCI device (benchmark) */
#define TG_W_NETBENCH 1024u            /* needs a virtio-net PCI device (benchmark) */
#define TG_W_DEVICES  (TG_W_RNG | TG_W_CON | TG_W_BLK | TG_W_NET | TG_W_HOSTILE | \
                       TG_W_BLKBENCH | TG_W_NETBENCH)
#define TG_W_ALL      15u              /* the default: every one needing no device */
#define TG_NW         11

/* fpu code paths; the digest is the same for all of them */
#define TG_FPU_AUTO   0
#define TG_FPU_SSE    1
#define TG_FPU_AVX2   2
#define TG_FPU_AVX512 3

struct tg_params {
	uint32_t workloads;            /* TG_W_* bits */
	uint64_t rounds;               /* 1..1000000 */
	uint64_t memmb;                /* 1..65536 */
	uint64_t seed;
	uint64_t blkmb;                /* 1..1024: MiB of the disk `blk` uses */
	uint64_t netframes;            /* 1..65536: frames per round for `net` */
	uint64_t fpuiters;             /* 1..2^26: `fpu` loop iterations per round */
	int fpu;                       /* TG_FPU_*: code path, not in the digest */
	int fault;                     /* TG_FAULT_*: deliberate failure (tests) */
	int hostattack;                /* hostile: one attack kind (TG_HA_*), or -1: all */
	uint64_t hosthold;             /* hostile: ms the broken state is held (0..60000) */
	int hostlog;                   /* hostile: a line per attack (0 or 1), not in the digest */
	int blkmode;                   /* blkbench: TG_BLKMODE_* */
	uint64_t blkbs;                /* blkbench: bytes per request, 512..1 MiB, sectors */
	uint64_t blkqd;                /* blkbench: requests in flight, 1..256 */
	uint64_t blkops;               /* blkbench: requests per round, 1..2^32 */
	uint64_t netsize;              /* netbench: frame bytes, 60..1514 */
};

/* fault=KIND: the last CPU faults at the start of round 1 (testing the FAIL
 * path of a VMM); not part of the digest, ignored by the reference */
#define TG_FAULT_NONE 0
#define TG_FAULT_GP   1                 /* ring 3 executes HLT: #GP */
#define TG_FAULT_UD   2                 /* ring 3 executes UD1: #UD, not the gate */
#define TG_FAULT_PF   3                 /* ring 3 reads an unmapped address */
#define TG_FAULT_SYS  4                 /* unknown system call */
#define TG_FAULT_KPF  5                 /* ring 0 faults on a bad syscall pointer */
#define TG_FAULT_DF   6                 /* ring 0 faults on a bad stack: #DF */

/* --- command line ------------------------------------------------- */
/* Returns 0, or -1 with a message in err. Unknown keys are ignored. */
int tg_params_parse(const char *cmdline, struct tg_params *p, char *err, size_t errlen);

/* --- digest --------------------------------------------------------- */
uint64_t tg_mix64(uint64_t z);                  /* splitmix64 finalizer */
uint64_t tg_fold(uint64_t h, uint64_t w);       /* h' = mix64(h ^ w) */
uint64_t tg_digest_init(const struct tg_params *p, uint32_t ncpu);
/*
 * Fold one round: for each selected workload in the order mem, fpu, smp,
 * time: the result of CPU 0..ncpu-1; after smp also the shared counter.
 */
uint64_t tg_digest_round(uint64_t h, const struct tg_params *p, uint32_t ncpu,
                         const uint64_t res[TG_NW][TG_NCPU_MAX], uint64_t smp_counter);

/* --- mem ------------------------------------------------------------ */
/* buf has `words` 64-bit words; CPU cpu owns words [lo, hi) of it */
void tg_mem_slice(uint64_t words, uint32_t cpu, uint32_t ncpu, uint64_t *lo, uint64_t *hi);
void tg_mem_fill(uint64_t *buf, uint64_t words, uint32_t cpu, uint32_t ncpu, uint64_t seed);
uint64_t tg_mem_round(uint64_t *buf, uint64_t words, uint32_t cpu, uint32_t ncpu,
                      uint64_t seed, uint64_t round);

/* --- fpu ------------------------------------------------------------ */
#define TG_FPU_ITERS  (3u << 20)       /* loop iterations per round */
int tg_fpu_detect(void);                         /* best available path */
const char *tg_fpu_name(int path);
/* Returns the result; on a mismatch sets *err (static string) */
uint64_t tg_fpu_round(int path, uint64_t seed, uint32_t cpu, uint64_t round,
                      uint64_t iters, const char **err);

/* --- smp ------------------------------------------------------------ */
#define TG_SMP_WORDS  2048
#define TG_SMP_PASSES 32
/*
 * slices[b][c] is CPU c's slice in buffer b. Round r writes buffer r&1 and
 * reads the neighbour's slice in buffer (r-1)&1 (written in round r-1).
 * Each word written also adds (v & 255) + 1 to *counter with LOCK XADD.
 */
typedef uint64_t tg_smp_slices_t[2][TG_NCPU_MAX][TG_SMP_WORDS];
uint64_t tg_smp_round(tg_smp_slices_t *slices, volatile uint64_t *counter,
                      uint32_t cpu, uint32_t ncpu, uint64_t seed, uint64_t round);

/* --- time ----------------------------------------------------------- */
uint64_t tg_time_result(uint32_t cpu, uint64_t round);

/* --- rng ------------------------------------------------------------ */
/* bytes CPU 0 reads from the virtio-rnd device per round, in this layout */
#define TG_RNG_REQS   4                /* requests per round */
#define TG_RNG_BUF    32               /* bytes per buffer, 2 buffers each */
#define TG_RNG_BYTES  (TG_RNG_REQS * 2 * TG_RNG_BUF)
/* The random bytes are checked, never folded: the result depends only on
 * the parameters (how many bytes, which round, which CPU). */
uint64_t tg_rng_result(uint32_t cpu, uint64_t round);

/* --- console ------------------------------------------------------ */
/* CPU 0 writes TG_CON_BYTES per round through the virtio-console transmitq:
 * TG_CON_LINES lines of 4 words of 16 hex digits, space-separated, each
 * line ending in '\n' - text, never a NUL byte. */
#define TG_CON_LINES  64
#define TG_CON_LINE   68               /* 4 * 16 + 3 spaces + newline */
#define TG_CON_BYTES  (TG_CON_LINES * TG_CON_LINE)
#define TG_CON_REQS   4                /* requests per round */
#define TG_CON_BUF    (TG_CON_BYTES / (2 * TG_CON_REQS))  /* 2 buffers each */
/* buf gets round `round`'s TG_CON_BYTES bytes of the stream */
void tg_con_stream(char *buf, uint64_t seed, uint64_t round);
/* The bytes are checked by the host, never folded: the result depends only
 * on the parameters (how many bytes, which round, which CPU). */
uint64_t tg_con_result(uint32_t cpu, uint64_t round);

/* --- blk ----------------------------------------------------------- */
/*
 * CPU 0 drives a virtio-blk disk of at least blkmb MiB that starts all
 * zeros. The content round r leaves (r >= 1) is a pure function of seed,
 * blkmb, r and the sector: every sector written with tg_blk_sector_raw,
 * then the range tg_blk_zero_range zeroed. Round r reads the whole area
 * and checks it holds round r-1's content (round 0: zeros), writes round
 * r's content, flushes, zeroes the range, flushes; round 1 first asks for
 * the device ID; after the last round the area is read and checked again.
 * Reads and writes are cut into requests by tg_blk_plan: the cut depends
 * only on the parameters, never on timing.
 */
#define TG_BLK_SECTOR   512
#define TG_BLK_SWORDS   (TG_BLK_SECTOR / 8)    /* 64-bit words per sector */
#define TG_BLK_MAXSECT  256                    /* sectors per request: 128 KiB */
#define TG_BLK_MAXSEGS  4                      /* data descriptors per request */
#define TG_BLK_MAXZERO  4096                   /* sectors zeroed per round, at most */
#define TG_BLK_READ     0
#define TG_BLK_WRITE    1

struct tg_blk_req {
	uint32_t sectors;      /* 1..TG_BLK_MAXSECT, before clipping to the end */
	uint32_t segs;         /* data descriptors, 1..min(TG_BLK_MAXSEGS, sectors) */
	uint32_t skew;         /* bytes the inner cuts are moved off sector boundaries */
	int indirect;          /* through an indirect table */
};

/* request i of round `round`'s read or write pass */
void tg_blk_plan(uint64_t seed, uint64_t round, int pass, uint64_t i, struct tg_blk_req *q);
/* round's zeroed range: sectors [*start, *start + *count), count >= 1 */
void tg_blk_zero_range(uint64_t seed, uint64_t blkmb, uint64_t round,
                       uint64_t *start, uint64_t *count);
/* sector s as round's write pass writes it (before the zeroing), round >= 1 */
void tg_blk_sector_raw(uint64_t *w, uint64_t seed, uint64_t round, uint64_t s);
/* sector s as round leaves it (round 0: zeros) */
void tg_blk_sector(uint64_t *w, uint64_t seed, uint64_t blkmb, uint64_t round, uint64_t s);
/* the digest's view of one sector read; summed, so order does not matter */
uint64_t tg_blk_sector_hash(const uint64_t *w, uint64_t s);

/* What CPU 0 saw in one round (the last round includes the final read). */
struct tg_blk_tally {
	uint64_t read_hash;    /* sum of tg_blk_sector_hash over the round's reads */
	uint64_t final_hash;   /* the same for the read after the last round */
	uint64_t reads, writes;/* read and write requests (final read included) */
	uint64_t others;       /* flushes and GET_ID (write-zeroes: not counted,
	                          their number depends on the device's limit) */
	uint32_t status_or;    /* every status byte ORed (0: all OK) */
};
/* the tally a correct run gives (host reference: no disk needed) */
void tg_blk_expect(const struct tg_params *p, uint64_t round, struct tg_blk_tally *t);
uint64_t tg_blk_fold(const struct tg_params *p, uint64_t round, const struct tg_blk_tally *t);
/* CPU cpu's contribution: CPU 0 tg_blk_fold of the expected tally, the
 * others a constant */
uint64_t tg_blk_result(const struct tg_params *p, uint32_t cpu, uint64_t round);

/* --- net ------------------------------------------------------------ */
/*
 * CPU 0 sends netframes Ethernet frames per round (no FCS) through a
 * virtio-net device; the host echoes each back unchanged. Frame seq of
 * round r: destination ff:ff:ff:ff:ff:ff, source the device's MAC,
 * ethertype 0x88b5, then "khyvenet", the round (u64 LE), seq (u32 LE), the
 * length (u16 LE), seeded bytes; 60..1514 bytes in all.
 */
#define TG_NET_ETHERTYPE  0x88b5
#define TG_NET_MIN        60
#define TG_NET_MAX        1514
#define TG_NET_MAGIC      "khyvenet"
#define TG_NET_HDR        36                   /* bytes before the seeded ones */
/* writes frame seq of round into buf (TG_NET_MAX bytes), returns its length */
uint32_t tg_net_frame(uint8_t *buf, const uint8_t mac[6], uint64_t seed, uint64_t round,
                      uint32_t seq);
/* the digest's view of one frame, without its source MAC; summed */
uint64_t tg_net_frame_hash(const uint8_t *f, uint32_t len, uint32_t seq);
uint64_t tg_net_fold(const struct tg_params *p, uint64_t round, uint64_t hash_sum);
/* CPU 0: tg_net_fold of every frame's hash; the others a constant */
uint64_t tg_net_result(const struct tg_params *p, uint32_t cpu, uint64_t round);

/* --- hostile ------------------------------------------------------- */
/*
 * CPU 0 attacks every virtio device it finds (rng, console, blk, net) with
 * TG_HOSTILE_PER_ROUND attacks per device and round, each followed by a
 * reset and one valid request that must succeed (a recovery).  The attack
 * kinds, in the order of their index (TG_HA_* below):
 */
#define TG_HOSTILE_ATTACKS(X) \
	X(ADDR_BEYOND_RAM, "addr-beyond-ram") \
	X(ADDR_MMIO_HOLE, "addr-mmio-hole") \
	X(ADDR_TOP, "addr-top-of-space") \
	X(ADDR_STRADDLE, "addr-straddle-ram-end") \
	X(LEN_ZERO, "len-zero") \
	X(LEN_HUGE, "len-huge") \
	X(CHAIN_LOOP, "chain-loop") \
	X(NEXT_OOB, "next-out-of-queue") \
	X(CHAIN_LONG, "chain-longer-than-queue") \
	X(IND_NESTED, "indirect-nested") \
	X(IND_LEN_ZERO, "indirect-len-zero") \
	X(IND_LEN_ODD, "indirect-len-odd") \
	X(IND_LEN_HUGE, "indirect-len-huge") \
	X(IND_NEXT, "indirect-with-next") \
	X(IND_LOOP, "indirect-loop") \
	X(IND_OUTSIDE, "indirect-outside-ram") \
	X(IND_UNNEGOTIATED, "indirect-not-negotiated") \
	X(AVAIL_JUMP, "avail-idx-jump") \
	X(AVAIL_OOB, "avail-entry-out-of-queue") \
	X(RINGS_OUTSIDE, "rings-outside-ram") \
	X(USED_OVERLAP, "used-ring-overlap") \
	X(QSIZE, "queue-size-garbage") \
	X(READ_AFTER_WRITE, "readable-after-writable") \
	X(NOTIFY_GARBAGE, "notify-garbage") \
	X(NOTIFY_FLOOD, "notify-flood") \
	X(RESET_INFLIGHT, "reset-in-flight") \
	X(COMMON_RANDOM, "common-random") \
	X(ISR_GARBAGE, "isr-garbage") \
	X(DEVCFG_GARBAGE, "devcfg-garbage") \
	X(MSIX_GARBAGE, "msix-garbage") \
	X(STATUS_EARLY, "status-driver-ok-early") \
	X(STATUS_UNOFFERED, "status-features-unoffered") \
	X(STATUS_CLEAR, "status-clear-bits") \
	X(STATUS_RANDOM, "status-random") \
	X(STATUS_RESERVED, "status-reserved-bits") \
	X(QSEL_GARBAGE, "queue-select-garbage") \
	X(PCICFG_WINDOW, "pci-cfg-window") \
	X(PCI_BAR_COMMAND, "pci-bar-command") \
	X(BLK_SHORT_HDR, "blk-short-header") \
	X(BLK_STATUS_RO, "blk-status-read-only") \
	X(BLK_BEYOND, "blk-sector-beyond-capacity") \
	X(BLK_UNKNOWN, "blk-unknown-type") \
	X(BLK_DIRECTION, "blk-wrong-direction") \
	X(BLK_ODD_LEN, "blk-odd-length") \
	X(BLK_DWZ, "blk-discard-write-zeroes-garbage") \
	X(BLK_ID_FLUSH, "blk-get-id-flush-garbage") \
	X(BLK_OVER_RINGS, "blk-read-over-rings") \
	X(NET_TX_EMPTY, "net-tx-empty") \
	X(NET_TX_HUGE, "net-tx-huge") \
	X(NET_TX_WRITABLE, "net-tx-writable") \
	X(NET_RX_SMALL, "net-rx-small") \
	X(NET_TX_PIECES, "net-tx-many-pieces") \
	X(NET_TX_HDR, "net-tx-garbage-header") \
	X(CON_TX_WRITABLE, "console-tx-writable") \
	X(CON_RX_GARBAGE, "console-rx-garbage") \
	X(CON_TX_HUGE, "console-tx-huge") \
	X(RNG_READABLE, "rng-readable") \
	X(RNG_HUGE, "rng-huge")
#define TG_HA_ENUM(id, name) TG_HA_##id,
enum { TG_HOSTILE_ATTACKS(TG_HA_ENUM) TG_HA_N };
#undef TG_HA_ENUM
extern const char *const tg_hostile_names[TG_HA_N];
#define TG_HOSTILE_PER_ROUND 6           /* attacks per device and round */
/* CPU 0: a fold of the round and the recoveries per device; others: a constant */
uint64_t tg_hostile_result(uint32_t cpu, uint64_t round);
uint64_t tg_hostile_fold(uint64_t round, uint64_t recoveries);

/* --- blkbench, netbench --------------------------------------------- */
#define TG_BLKMODE_RANDREAD   0
#define TG_BLKMODE_RANDWRITE  1
#define TG_BLKMODE_SEQREAD    2
#define TG_BLKMODE_SEQWRITE   3
extern const char *const tg_blkmode_names[4];
/* byte offset of request i's block (the pattern of bench/blkhost.c):
 * *state starts at the seed; sequential offsets wrap at blkmb MiB */
uint64_t tg_blkbench_next(const struct tg_params *p, uint64_t *state, uint64_t *seq);
/* CPU 0: a fold of the round, requests, bytes and status bytes ORed; others: a constant */
uint64_t tg_blkbench_fold(const struct tg_params *p, uint64_t round, uint64_t ops, uint64_t bytes,
                          uint32_t status_or);
uint64_t tg_blkbench_result(const struct tg_params *p, uint32_t cpu, uint64_t round);
uint64_t tg_netbench_fold(const struct tg_params *p, uint64_t round, uint64_t frames, uint64_t bytes);
uint64_t tg_netbench_result(const struct tg_params *p, uint32_t cpu, uint64_t round);

/* --- small formatting helpers (no libc) ----------------------------- */
size_t tg_strlen(const char *s);
char *tg_stpcpy(char *d, const char *s);
char *tg_fmt_u64(char *d, uint64_t v);
char *tg_fmt_hex16(char *d, uint64_t v);        /* 16 lowercase digits */

#endif
