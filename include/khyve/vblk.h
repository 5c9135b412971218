/*
 * virtio-blk (src/virtio/blk.c, blk_snap.c): what other modules need of
 * it.  The device itself is registered like every PCI device type
 * ("virtio-blk").
 */
#ifndef KHYVE_VBLK_H
#define KHYVE_VBLK_H

#include <stddef.h>

#include "khyve/pci.h"

/* Set to 1 in the environment: serve I/O with a thread pool, not io_uring. */
#define VBLK_ENV_NO_URING "KHYVE_BLK_NO_URING"

/*
 * Make dest (created or truncated, mode 0600) a copy of the live disk of
 * the virtio-blk function pd, fsync'ed: a reflink (FICLONE) where the file
 * system can, else a sparse copy (holes stay holes).  For a VM that is
 * paused (requests in flight are finished first).  0, or -errno with one
 * line in err.
 */
int vblk__copy_disk(struct pci_dev *pd, const char *dest, char *err, size_t errlen);

/*
 * Record in a saved virtio-blk state (the device's save output) that the
 * snapshot carries a copy of the disk named name, relative to the
 * snapshot's directory.  A restore that does not override the slot's
 * options then runs on that copy.
 */
void vblk__set_copy(void *state, const char *name);

#endif
