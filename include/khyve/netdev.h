/*
 * Network backends (src/net/): where a NIC's frames go and come from.  A
 * TAP device (tap.c), or for the unit tests a SOCK_SEQPACKET socket that
 * carries one frame per message.  Either way every frame starts with the
 * 12-byte virtio-net header and the backend does no offloads, so a frame
 * read is complete and checksummed.  The device model (virtio-net) knows
 * rings and headers; this knows file descriptors and the tun ioctls, and
 * nothing of virtio or of snapshots.
 */
#ifndef KHYVE_NETDEV_H
#define KHYVE_NETDEV_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

struct netdev {
	int fd;			/* non-blocking; poll it for EPOLLIN */
	bool seqpacket;		/* a socket (unit tests), not a tap */
	char name[IFNAMSIZ];	/* the tap's, "" for a socket */
};

/*
 * Attach to the existing tap name (never create one), with a vnet header
 * of hdrlen bytes and no offloads.  Messages in err start with "who: ".
 * 0, or -errno (-ENODEV: no such tap, -EBUSY: another process has it).
 */
int netdev__open_tap(struct netdev *nd, const char *who, const char *name, int hdrlen, char *err,
		     size_t errlen);
/* Use fd, a SOCK_SEQPACKET socket with the tap's framing; nd owns it. */
void netdev__from_socket(struct netdev *nd, int fd);
/*
 * One frame, header first, into iov: the bytes stored, or -errno
 * (-EAGAIN: none waiting; -ECONNRESET: the socket's peer closed).  A frame
 * longer than iov is cut and the rest lost without a word: give room for
 * one byte more than you take, to tell.
 */
ssize_t netdev__read(struct netdev *nd, struct iovec *iov, unsigned int cnt);
/* One frame, header first, never waiting: the bytes taken, or -errno (-EAGAIN: full now). */
ssize_t netdev__write(struct netdev *nd, struct iovec *iov, unsigned int cnt);
/* Close it (nd->fd -1 is closed already). */
void netdev__close(struct netdev *nd);

#endif
