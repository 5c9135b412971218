/*
 * What the virtio-blk unit tests share (tests/unit/vblkhelp.c, linked
 * into test_vblk and test_vblk_snap): a fake VM with a virtio-blk in slot
 * SLOT on a temporary 1 MiB disk image, and a driver's requests to it.
 *
 * Whatever goes wrong fails the running cmocka test.
 */
#ifndef KHYVE_TESTS_VBLKHELP_H
#define KHYVE_TESTS_VBLKHELP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "khyve/pci.h"

#include "fakevm.h"

#define SLOT 4
#define RING 0x100000ULL	/* desc table; avail at +0x1000, used at +0x2000 */
#define HDRS 0x110000ULL	/* 32 bytes per request: header, status at +16 */
#define TABLES 0x120000ULL	/* 64 bytes per request: an indirect table */
#define DATA 0x200000ULL	/* 8 KiB per request */
#define QSIZE 256
#define SECTORS 2048		/* a 1 MiB disk */
#define DISK_SIZE (SECTORS * 512)

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define T_GET_LIFETIME 10
#define T_DISCARD 11
#define T_WRITE_ZEROES 13
#define S_OK 0
#define S_IOERR 1
#define S_UNSUPP 2
#define F_RO 5
#define F_FLUSH 9
#define F_DISCARD 13
#define F_WRITE_ZEROES 14
#define RW_FEATURES (1u << 1 | 1u << 2 | 1u << 6 | 1u << F_FLUSH | 1u << F_DISCARD | 1u << F_WRITE_ZEROES)
#define RO_FEATURES (1u << 1 | 1u << 2 | 1u << 6 | 1u << F_FLUSH | 1u << F_RO)

struct ctx {
	struct fakevm f;	/* f.used: completions seen */
	char dir[64];		/* a temporary directory */
	char disk[128];		/* dir/disk.img */
};

extern bool pool;	/* this run is the thread pool's */

/* cmocka group set-ups: the disk backend of the group's VMs */
int group_uring(void **state);
int group_pool(void **state);	/* KHYVE_BLK_NO_URING=1 */

uint8_t pattern(uint64_t off);
bool disk_is(const char *path, uint64_t off, size_t len, int byte);

/* The VM with opts after "virtio-blk,"; restoring: as khyve -r. */
int setup_vm_err(struct fakevm *f, const char *opts, bool restoring, char *err, size_t errlen);
void setup_vm(struct fakevm *f, const char *opts, bool restoring);
/* cmocka set-up and tear-down: a struct ctx with its disk and VM */
int setup(void **state);
int teardown(void **state);

struct pci_dev *pdev(struct fakevm *f);
/* Negotiate features (VERSION_1, indirect descriptors and feat), set up queue 0, DRIVER_OK. */
void drive(struct fakevm *f, uint32_t feat);

struct seg {
	uint64_t addr;
	uint32_t len;
	bool w;			/* device-writable */
};

/* A chain in descriptors head, head+1, ... of the ring's table. */
void put_chain(struct fakevm *f, unsigned int head, const struct seg *s, unsigned int n);
/* A chain as an indirect table (TABLES + 64 * head) behind descriptor head. */
void put_indirect(struct fakevm *f, unsigned int head, const struct seg *s, unsigned int n);
/* Wait (5 s at most) until n more chains are used. */
void wait_more(struct fakevm *f, unsigned int n);
uint64_t hdr_at(unsigned int i);
uint8_t *status_of(struct fakevm *f, unsigned int i);
void set_hdr(struct fakevm *f, unsigned int i, uint32_t type, uint64_t sector);
/*
 * One request the usual way (header, data, status in three descriptors),
 * waited for; returns its status.  Data at DATA for IN/OUT/GET_ID, the
 * ranges at DATA for DISCARD/WRITE_ZEROES.
 */
uint8_t request(struct fakevm *f, uint32_t type, uint64_t sector, uint32_t len);
void set_range(struct fakevm *f, unsigned int k, uint64_t sector, uint32_t n, uint32_t flags);
void pause_vm(struct fakevm *f);
void resume_vm(struct fakevm *f);
/* n writes of 4 KiB (sector 8 * i, byte i + 1) as indirect chains, one kick */
void post_writes(struct fakevm *f, unsigned int n);
void check_writes(struct ctx *c, unsigned int n);

#endif
