/*
 * The TAP backend, and the socket that stands in for it in unit tests.
 *
 * khyve attaches to an existing tap and never creates one, so a mistyped
 * name is an error instead of a new, unconnected interface.  The header
 * size is set and the offloads turned off whatever a previous user of the
 * tap set, so the kernel hands over only complete, checksummed frames.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/if_tun.h>

#include "khyve/netdev.h"
#include "khyve/util.h"

int netdev__open_tap(struct netdev *nd, const char *who, const char *name, int hdrlen, char *err,
		     size_t errlen)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };
	unsigned int idx = if_nametoindex(name);
	size_t len = strlen(name);
	int fd, ret;

	nd->fd = -1;
	if (len >= IFNAMSIZ)
		return util__fail(-EINVAL, err, errlen, "%s: '%s' is not a valid interface name", who, name);
	if (!idx)
		return util__fail(-ENODEV, err, errlen,
				  "%s: tap device '%s' does not exist (create it first: ip tuntap add dev %s mode tap)",
				  who, name, name);
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return util__fail(-errno, err, errlen, "%s: /dev/net/tun: %s", who, strerror(errno));
	memcpy(ifr.ifr_name, name, len + 1);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		ret = -errno;
		if (errno == EBUSY)
			util__fail(ret, err, errlen, "%s: tap '%s' is busy (another process is attached to it)", who,
				   name);
		else if (errno == EINVAL)
			util__fail(ret, err, errlen, "%s: '%s' is not a single-queue tap device", who, name);
		else
			util__fail(ret, err, errlen, "%s: attaching to tap '%s': %s", who, name, strerror(errno));
		close(fd);
		return ret;
	}
	/* the one we checked, not a new one TUNSETIFF made because it vanished meanwhile */
	if (if_nametoindex(name) != idx) {
		close(fd);
		return util__fail(-ENODEV, err, errlen, "%s: tap device '%s' disappeared while attaching", who, name);
	}
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdrlen) < 0 || ioctl(fd, TUNSETOFFLOAD, 0UL) < 0) {
		ret = -errno;
		util__fail(ret, err, errlen, "%s: tap '%s': setting the header size and offloads: %s", who, name,
			   strerror(errno));
		close(fd);
		return ret;
	}
	nd->fd = fd;
	nd->seqpacket = false;
	memcpy(nd->name, name, len + 1);
	return 0;
}

void netdev__from_socket(struct netdev *nd, int fd)
{
	nd->fd = fd;
	nd->seqpacket = true;
	nd->name[0] = 0;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

ssize_t netdev__read(struct netdev *nd, struct iovec *iov, unsigned int cnt)
{
	ssize_t r = readv(nd->fd, iov, (int)cnt);

	if (!r && nd->seqpacket)
		return -ECONNRESET;	/* the peer closed */
	return r < 0 ? -errno : r;
}

ssize_t netdev__write(struct netdev *nd, struct iovec *iov, unsigned int cnt)
{
	ssize_t r;

	if (nd->seqpacket) {
		/* MSG_NOSIGNAL: a closed peer is an error, not a SIGPIPE */
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = cnt };

		r = sendmsg(nd->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
	} else {
		r = writev(nd->fd, iov, (int)cnt);
	}
	return r < 0 ? -errno : r;
}

void netdev__close(struct netdev *nd)
{
	if (nd->fd >= 0)
		close(nd->fd);
	nd->fd = -1;
}
