/*
 * virtio-net (virtio device ID 1) on a TAP device: receiveq 0, transmitq 1,
 * no control queue, no multiqueue.
 *
 *   -s N,virtio-net,tap=NAME[,mac=52:54:00:xx:xx:xx]
 *   -s N,virtio-net,NAME[,mac=...]        (bhyve's spelling)
 *
 * The tap must exist already (`ip tuntap add dev NAME mode tap`): the
 * backend (src/net/tap.c, khyve/netdev.h) attaches to it and never creates
 * one, so a mistyped name is an error
 * instead of a new, unconnected interface.  Only one process can be
 * attached to a (single-queue) tap at a time.  Without mac=, the MAC is
 * 52:54:00 followed by three bytes of a hash of the VM name, slot and
 * function: the same VM on the same slot always gets the same address.
 *
 * Features: VIRTIO_NET_F_MAC and VIRTIO_NET_F_STATUS (the link is up
 * while the tap works); no checksum or segmentation offloads and no
 * mergeable receive buffers.  The backend speaks the same 12-byte header
 * (a tap's vnet header) with its offloads turned off, so every
 * frame it gives is complete and checksummed.
 *
 * Transmit: each chain (device-readable only, 12 + 14 to 65550 bytes) is
 * written to the tap with one writev, behind a zeroed header (the driver's
 * header means nothing without offloads).  Bad chains and frames the tap
 * will not take now (EAGAIN) are dropped and counted; the chain is returned
 * either way.  Nothing ever waits for the tap.
 *
 * Receive: the I/O thread watches the tap; each frame is read with one
 * readv straight into the next receive chain, whose header is then set to
 * "no offloads, num_buffers 1".  A frame larger than the chain (the readv
 * has one byte more than the chain to tell) is dropped and the chain kept
 * for the next frame.  While the driver has no buffer posted, the device
 * stops watching the tap and frames wait in the tap's own queue (the
 * kernel drops them once it holds txqueuelen frames, 500 by default), as
 * they would for a slow NIC; the driver's next receive notification starts
 * it again.  The watch is on a private epoll set
 * holding the tap, which the device can disarm: the transport's watch has
 * no "stop".  Before the driver is ready (and after it broke the queue),
 * frames are read and dropped, as a NIC without a driver drops them.
 *
 * Pause: nothing is ever half-done (every callback finishes what it
 * takes) and no frame is ever kept in khyve: the pause serves the transmit
 * chains already posted, and frames that reach the tap while the VM is
 * paused wait in the tap's queue.
 *
 * Snapshot (version 1): PCI and virtio state, the MAC and link status the
 * guest saw, and the tap name (for information).  Restore attaches to the
 * tap the slot options name now (they may name another), keeps the saved
 * MAC and link status, and refuses a mac= option that differs from it.
 * Frames the saved VM had sent and not yet seen answered are gone for the
 * restored one, as on any network: its guest must send them again.
 *
 * If the tap fails for good (deleted under us), the device reports the
 * link down, drops every frame, and stops watching it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "khyve/log.h"
#include "khyve/netdev.h"
#include "khyve/snapfmt.h"
#include "khyve/util.h"
#include "khyve/virtio.h"
#include "khyve/vm.h"

#define NET_STATE_VERSION	2	/* 2: the function's placement */
#define NET_QUEUE_SIZE		256
#define NET_RX			0
#define NET_TX			1
#define NET_HDR_LEN		12	/* struct virtio_net_hdr_v1 with num_buffers */
#define NET_ETH_HLEN		14
#define NET_TX_MAX		65550	/* header + frame, as the brief bounds it */
#define NET_RX_BUDGET		64	/* frames per wake-up: other events get their turn */
#define NET_CONFIG_SIZE		10	/* mac, status, max_virtqueue_pairs */

#define NET_F_MAC		5
#define NET_F_STATUS		16
#define NET_S_LINK_UP		1
#define NET_HDR_F_NEEDS_CSUM	1

enum { ST_TX, ST_TX_DROP, ST_TX_BAD, ST_RX, ST_RX_DROP, ST_RX_BAD, ST_N };

struct net_opts {
	char tap[IFNAMSIZ];
	uint8_t mac[6];
	bool mac_given;
};

struct net_state {
	struct pci_func_state pci;
	struct virtio_state virtio;
	uint8_t mac[6];
	uint16_t status;
	char tap[IFNAMSIZ];
};

struct net {
	struct virtio_dev vd;
	struct net_opts o;
	uint8_t mac[6];
	uint16_t status;
	struct netdev be;	/* the tap (src/net/tap.c) */
	bool broken;		/* the backend failed for good: drop everything */
	int ep;			/* epoll set with fd, the one the I/O thread watches */
	bool armed;		/* fd is in it with EPOLLIN */
	uint8_t *bounce;	/* NET_TX_MAX: a chain of more than IOV_MAX pieces */
	uint64_t stats[ST_N];
	struct virtq_elem elem;	/* large: not on a stack */
	struct iovec iov[VIRTIO_CHAIN_MAX + 1];
	uint8_t spill;		/* the byte after a receive chain */
};

static const uint8_t zero_hdr[NET_HDR_LEN];

/* ---------- options ---------- */

static bool valid_ifname(const char *s)
{
	size_t n = strlen(s);

	if (!n || n >= IFNAMSIZ || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	for (; *s; s++)
		if (*s <= ' ' || *s >= 0x7f || *s == '/' || *s == ':' || *s == '%')
			return false;
	return true;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool parse_mac(const char *s, uint8_t mac[6])
{
	if (strlen(s) != 17)
		return false;
	for (unsigned int i = 0; i < 6; i++) {
		int hi = hexval(s[3 * i]), lo = hexval(s[3 * i + 1]);

		if (hi < 0 || lo < 0 || (i < 5 && s[3 * i + 2] != ':'))
			return false;
		mac[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

static void fmt_mac(const uint8_t mac[6], char out[18])
{
	snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

static const char *mac_problem(const uint8_t mac[6])
{
	static const uint8_t zero[6];

	if (mac[0] & 1)
		return "a multicast address";
	if (!memcmp(mac, zero, 6))
		return "all zeros";
	return NULL;
}

static int net__parse(const char *opts, struct net_opts *o, char *err, size_t errlen)
{
	char *buf, *tok, *save = NULL;
	bool have_tap = false;
	int ret = -EINVAL;

	memset(o, 0, sizeof(*o));
	if (!opts || !*opts) {
		snprintf(err, errlen, "virtio-net needs a tap device: -s SLOT,virtio-net,tap=NAME[,mac=MAC]");
		return -EINVAL;
	}
	buf = strdup(opts);
	if (!buf)
		return -ENOMEM;
	if (strstr(opts, ",,") || opts[0] == ',' || opts[strlen(opts) - 1] == ',') {
		snprintf(err, errlen, "virtio-net: empty option in '%s'", opts);
		goto out;
	}
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		const char *name = NULL, *eq = strchr(tok, '=');

		if (!strncmp(tok, "tap=", 4)) {
			name = tok + 4;
		} else if (!strncmp(tok, "mac=", 4)) {
			const char *why;

			if (o->mac_given) {
				snprintf(err, errlen, "virtio-net: mac= given twice in '%s'", opts);
				goto out;
			}
			if (!parse_mac(tok + 4, o->mac)) {
				snprintf(err, errlen, "virtio-net: invalid MAC address '%s' (want xx:xx:xx:xx:xx:xx in hex)",
					 tok + 4);
				goto out;
			}
			why = mac_problem(o->mac);
			if (why) {
				snprintf(err, errlen, "virtio-net: MAC address '%s' is %s", tok + 4, why);
				goto out;
			}
			o->mac_given = true;
			continue;
		} else if (!eq) {
			name = tok;	/* bhyve: -s N,virtio-net,tap0 */
		} else {
			snprintf(err, errlen, "virtio-net: unknown option '%.*s' (tap=NAME, mac=MAC)", (int)(eq - tok), tok);
			goto out;
		}
		if (have_tap) {
			snprintf(err, errlen, "virtio-net: more than one tap device in '%s'", opts);
			goto out;
		}
		if (!valid_ifname(name)) {
			snprintf(err, errlen, "virtio-net: invalid tap name '%s' (1-15 characters, none of '/', ':', '%%' or spaces)",
				 name);
			goto out;
		}
		snprintf(o->tap, sizeof(o->tap), "%s", name);
		have_tap = true;
	}
	if (!have_tap) {
		snprintf(err, errlen, "virtio-net: no tap device in '%s' (tap=NAME)", opts);
		goto out;
	}
	ret = 0;
out:
	free(buf);
	return ret;
}

static int net__check(const char *opts, char *err, size_t errlen)
{
	struct net_opts o;

	return net__parse(opts, &o, err, errlen);
}

/* 52:54:00 and three bytes of FNV-1a over the VM name, slot and function */
static void default_mac(const char *vm_name, uint8_t slot, uint8_t func, uint8_t mac[6])
{
	uint64_t h = 0xcbf29ce484222325ULL;
	const uint8_t tail[2] = { slot, func };

	for (const char *p = vm_name ? vm_name : ""; *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
	for (unsigned int i = 0; i < 2; i++)
		h = (h ^ tail[i]) * 0x100000001b3ULL;
	mac[0] = 0x52;
	mac[1] = 0x54;
	mac[2] = 0x00;
	mac[3] = (uint8_t)(h >> 16);
	mac[4] = (uint8_t)(h >> 8);
	mac[5] = (uint8_t)h;
}

/* ---------- the backend ---------- */

#ifdef KHYVE_TEST_SEAMS
/* Seams for tests/unit/test_vnet.c, built only into the unit tests' copy of this file. */
static int test_fd = -1;

/*
 * The next virtio-net created uses fd, a SOCK_SEQPACKET
 * socket carrying one frame (12-byte header first) per message, instead of
 * opening the tap its options name.  The device owns fd from then on.
 */
void vnet__test_backend(int fd);
void vnet__test_backend(int fd)
{
	test_fd = fd;
}

/* The counters, in the order of the ST_ enum. */
void vnet__test_stats(struct pci_dev *pd, uint64_t out[ST_N]);
void vnet__test_stats(struct pci_dev *pd, uint64_t out[ST_N])
{
	struct net *n = pd->priv;

	pthread_mutex_lock(&pd->lock);
	memcpy(out, n->stats, sizeof(n->stats));
	pthread_mutex_unlock(&pd->lock);
}
#endif

/* The test seam's socket, or -1 (always, outside the unit tests). */
static int take_test_fd(void)
{
#ifdef KHYVE_TEST_SEAMS
	int fd = test_fd;

	test_fd = -1;
	return fd;
#else
	return -1;
#endif
}

/* Watch the backend (on) or let frames wait in its queue (off). */
static void arm(struct net *n, bool on)
{
	struct epoll_event ev = { .events = on ? EPOLLIN : 0 };

	if (n->armed == on || n->broken || n->ep < 0)
		return;
	if (epoll_ctl(n->ep, EPOLL_CTL_MOD, n->be.fd, &ev) < 0)
		pr_warn("%s: epoll_ctl: %s", n->vd.pd->name, strerror(errno));
	else
		n->armed = on;
}

/* The backend is gone for good (a deleted tap reads EBADFD forever): link down, stop watching it. */
static void be_failed(struct net *n, const char *what, int err)
{
	if (n->broken)
		return;
	pr_warn("%s: tap '%s': %s: %s; link down, frames dropped from now on", n->vd.pd->name, n->o.tap, what,
		strerror(-err));
	if (n->ep >= 0)
		epoll_ctl(n->ep, EPOLL_CTL_DEL, n->be.fd, NULL);
	n->broken = true;
	n->armed = false;
	n->status &= (uint16_t)~NET_S_LINK_UP;
	virtio__config_changed(&n->vd);
}

/* ---------- the queues ---------- */

static bool queue_ready(const struct virtio_dev *vd, unsigned int q)
{
	return (vd->st.status & VIRTIO_S_DRIVER_OK) && !(vd->st.status & VIRTIO_S_NEEDS_RESET) &&
	       vd->st.q[q].enabled;
}

/* Give back the chain just popped, untouched as far as the driver can tell. */
static void unpop(struct net *n)
{
	n->vd.st.q[NET_RX].last_avail--;
}

static size_t iov_size(const struct iovec *iov, unsigned int cnt)
{
	size_t s = 0;

	for (unsigned int i = 0; i < cnt; i++)
		s += iov[i].iov_len;
	return s;
}

static void iov_copy_to(const struct iovec *iov, unsigned int cnt, const uint8_t *src, size_t len)
{
	for (unsigned int i = 0; i < cnt && len; i++) {
		size_t k = iov[i].iov_len < len ? iov[i].iov_len : len;

		memcpy(iov[i].iov_base, src, k);
		src += k;
		len -= k;
	}
}

static void iov_copy_from(uint8_t *dst, const struct iovec *iov, unsigned int cnt, size_t len)
{
	for (unsigned int i = 0; i < cnt && len; i++) {
		size_t k = iov[i].iov_len < len ? iov[i].iov_len : len;

		memcpy(dst, iov[i].iov_base, k);
		dst += k;
		len -= k;
	}
}

/* The tap's header says "complete and checksummed"?  (Offloads are off: always.) */
static bool hdr_plain(const uint8_t *h)
{
	return !(h[0] & NET_HDR_F_NEEDS_CSUM) && h[1] == 0;	/* flags, gso_type NONE */
}

/* The header the driver gets: no offloads (flags 0, GSO_NONE), num_buffers 1. */
static void put_rx_hdr(const struct iovec *iov, unsigned int cnt)
{
	uint8_t h[NET_HDR_LEN] = { 0 };

	h[10] = 1;
	iov_copy_to(iov, cnt, h, sizeof(h));
}

/* A receive chain we can use: writable only, room for the header at least. */
static bool rx_chain_ok(const struct virtq_elem *e)
{
	return !e->nout && iov_size(e->in, e->nin) >= NET_HDR_LEN;
}

/* Read one frame and throw it away: 1 done, 0 none there, -1 backend failed. */
static int rx_discard(struct net *n)
{
	uint8_t buf[64];
	struct iovec iov = { buf, sizeof(buf) };
	ssize_t r = netdev__read(&n->be, &iov, 1);

	if (r == -EAGAIN || r == -EINTR)
		return 0;
	if (r < 0 && r != -EINVAL) {
		be_failed(n, "read", (int)r);
		return -1;
	}
	n->stats[ST_RX_DROP]++;
	return 1;
}

/* One frame straight into the chain just popped: 1 progress, 0 none there, -1 failed. */
static int rx_direct(struct net *n)
{
	struct virtq_elem *e = &n->elem;
	unsigned int cnt = e->nin;
	uint8_t h[NET_HDR_LEN];
	ssize_t r;

	if (!rx_chain_ok(e)) {
		n->stats[ST_RX_BAD]++;
		virtq__push(&n->vd, NET_RX, e->head, 0);
		return 1;
	}
	/* the chain, then a byte of ours: a frame that reaches it did not fit */
	memcpy(n->iov, e->in, cnt * sizeof(e->in[0]));
	if (cnt < IOV_MAX)
		n->iov[cnt++] = (struct iovec){ &n->spill, 1 };
	r = netdev__read(&n->be, n->iov, cnt);
	if (r < 0) {
		unpop(n);
		if (r == -EAGAIN || r == -EINTR)
			return 0;
		be_failed(n, "read", (int)r);
		return -1;
	}
	iov_copy_from(h, e->in, e->nin, sizeof(h));
	if (r < NET_HDR_LEN || (size_t)r > iov_size(e->in, e->nin) || !hdr_plain(h)) {
		/* cut short, or one we could not deliver correctly: drop it, keep the chain */
		unpop(n);
		n->stats[ST_RX_DROP]++;
		return 1;
	}
	put_rx_hdr(e->in, e->nin);
	virtq__push(&n->vd, NET_RX, e->head, (uint32_t)r);
	n->stats[ST_RX]++;
	return 1;
}

/* Frames from the tap into the receive queue, at most a budget of them. */
static void net__rx(struct net *n)
{
	struct virtio_dev *vd = &n->vd;
	uint16_t old = vd->st.q[NET_RX].used_idx;

	for (unsigned int i = 0; i < NET_RX_BUDGET && !n->broken; i++) {
		int r = queue_ready(vd, NET_RX) ? virtq__pop(vd, NET_RX, &n->elem) : -1;

		if (r == 0) {
			/* no buffer: frames wait in the tap until the driver posts some */
			arm(n, false);
			break;
		}
		/* no driver (or a broken queue): frames are dropped */
		r = r < 0 ? rx_discard(n) : rx_direct(n);
		if (r <= 0)
			break;
	}
	virtq__notify(vd, NET_RX, old);
}

static void net__ready(struct virtio_dev *vd, int fd)
{
	struct net *n = (struct net *)vd;
	struct pollfd p = { .fd = n->be.fd, .events = POLLIN };

	(void)fd;
	if (n->armed) {
		net__rx(n);
		return;
	}
	/*
	 * Not watching for frames, yet woken: epoll reports errors and hang-ups
	 * whatever it was asked (a deleted tap), or this is a wake-up from
	 * before the watch stopped.  Find out which, or the thread would spin.
	 */
	if (poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP | POLLNVAL)))
		rx_discard(n);
}

/* One transmit chain to the tap. */
static void tx_one(struct net *n, const struct virtq_elem *e)
{
	size_t total = iov_size(e->out, e->nout), skip = NET_HDR_LEN;
	unsigned int cnt = 1;
	ssize_t r;

	if (e->nin || total < NET_HDR_LEN + NET_ETH_HLEN || total > NET_TX_MAX) {
		n->stats[ST_TX_BAD]++;
		return;
	}
	if (n->broken) {
		n->stats[ST_TX_DROP]++;
		return;
	}
	/* our header (the driver's asks for nothing we offered), then the frame */
	n->iov[0] = (struct iovec){ (void *)zero_hdr, NET_HDR_LEN };
	for (unsigned int i = 0; i < e->nout; i++) {
		size_t len = e->out[i].iov_len;

		if (skip >= len) {
			skip -= len;
			continue;
		}
		n->iov[cnt++] = (struct iovec){ (uint8_t *)e->out[i].iov_base + skip, len - skip };
		skip = 0;
	}
	if (cnt > IOV_MAX) {
		memset(n->bounce, 0, NET_HDR_LEN);
		iov_copy_from(n->bounce + NET_HDR_LEN, n->iov + 1, cnt - 1, total - NET_HDR_LEN);
		n->iov[0] = (struct iovec){ n->bounce, total };
		cnt = 1;
	}
	r = netdev__write(&n->be, n->iov, cnt);
	if (r >= 0) {
		n->stats[ST_TX]++;
	} else if (r == -EAGAIN || r == -EINTR || r == -ENOBUFS || r == -EIO || r == -EINVAL) {
		/* full, the interface down, or a frame the tap refused: this one is lost */
		n->stats[ST_TX_DROP]++;
	} else {
		n->stats[ST_TX_DROP]++;
		be_failed(n, "write", (int)r);
	}
}

/* Transmit what the driver posted, a queue's worth at most; true if more may wait. */
static bool net__tx(struct net *n)
{
	struct virtio_dev *vd = &n->vd;
	uint16_t old = vd->st.q[NET_TX].used_idx;
	unsigned int i;

	for (i = 0; i < vd->st.q[NET_TX].size; i++) {
		if (virtq__pop(vd, NET_TX, &n->elem) != 1)
			break;
		tx_one(n, &n->elem);
		virtq__push(vd, NET_TX, n->elem.head, 0);
	}
	virtq__notify(vd, NET_TX, old);
	return i == vd->st.q[NET_TX].size;
}

static void net__notify(struct virtio_dev *vd, unsigned int q)
{
	struct net *n = (struct net *)vd;

	if (q == NET_TX) {
		if (net__tx(n))
			virtio__kick(vd, NET_TX);
	} else {
		/* new receive buffers: what waits in the tap first */
		arm(n, true);
		net__rx(n);
	}
}

/* The vCPUs are stopped: send what was posted.  Nothing else is ever in flight. */
static int net__quiesce(struct virtio_dev *vd, char *err, size_t errlen)
{
	struct net *n = (struct net *)vd;

	(void)err; (void)errlen;
	if (queue_ready(vd, NET_TX))
		while (net__tx(n))
			;
	return 0;
}

static void net__reset(struct virtio_dev *vd)
{
	/* no driver now: frames are read and dropped until there is one with buffers */
	arm((struct net *)vd, true);
}

static void net__config_read(struct virtio_dev *vd, unsigned int off, uint8_t *data, unsigned int len)
{
	struct net *n = (struct net *)vd;
	uint8_t cfg[NET_CONFIG_SIZE];

	memcpy(cfg, n->mac, 6);
	cfg[6] = (uint8_t)n->status;
	cfg[7] = (uint8_t)(n->status >> 8);
	cfg[8] = 1;	/* max_virtqueue_pairs (meaningful with VIRTIO_NET_F_MQ only) */
	cfg[9] = 0;
	memcpy(data, cfg + off, len);
}

static void net__config_write(struct virtio_dev *vd, unsigned int off, const uint8_t *data, unsigned int len)
{
	/* nothing is writable by a virtio 1.x driver (only legacy drivers set mac) */
	(void)vd; (void)off; (void)data; (void)len;
}

static const struct virtio_type net_type = {
	.device_id = 1,
	.class_code = 0x020000,		/* network controller, Ethernet */
	.features = 1ULL << NET_F_MAC | 1ULL << NET_F_STATUS,
	.nqueues = 2,
	.queue_max = NET_QUEUE_SIZE,
	.queue_notify = net__notify,
	.reset = net__reset,
	.config_size = NET_CONFIG_SIZE,
	.config_read = net__config_read,
	.config_write = net__config_write,
	.quiesce = net__quiesce,
};

/* ---------- life cycle ---------- */

static void net__free(struct net *n)
{
	if (n->ep >= 0)
		close(n->ep);
	netdev__close(&n->be);
	free(n->bounce);
	free(n);
}

static int net__init(struct pci_dev *pd, const char *opts, char *err, size_t errlen)
{
	struct net *n = calloc(1, sizeof(*n));
	int ret;

	if (!n)
		return -ENOMEM;
	n->be.fd = n->ep = -1;
	ret = net__parse(opts, &n->o, err, errlen);
	if (ret)
		goto fail;
	n->bounce = malloc(NET_TX_MAX);
	if (!n->bounce) {
		ret = -ENOMEM;
		goto fail;
	}
	ret = take_test_fd();
	if (ret >= 0) {
		netdev__from_socket(&n->be, ret);
	} else {
		ret = netdev__open_tap(&n->be, "virtio-net", n->o.tap, NET_HDR_LEN, err, errlen);
		if (ret < 0)
			goto fail;
	}
	n->ep = epoll_create1(EPOLL_CLOEXEC);
	if (n->ep < 0 || epoll_ctl(n->ep, EPOLL_CTL_ADD, n->be.fd, &(struct epoll_event){ .events = EPOLLIN }) < 0) {
		ret = -errno;
		snprintf(err, errlen, "virtio-net: epoll: %s", strerror(errno));
		goto fail;
	}
	n->armed = true;
	if (n->o.mac_given)
		memcpy(n->mac, n->o.mac, 6);
	else
		default_mac(pd->vm->cfg->name, pd->slot, pd->func, n->mac);
	n->status = NET_S_LINK_UP;
	ret = virtio__init(pd, &n->vd, &net_type);
	if (!ret) {
		pthread_mutex_lock(&pd->lock);
		ret = virtio__watch(&n->vd, n->ep, net__ready);
		pthread_mutex_unlock(&pd->lock);
	}
	if (ret) {
		snprintf(err, errlen, "PCI %s: %s", pd->name, strerror(-ret));
		virtio__exit(&n->vd);
		goto fail;
	}
	return 0;
fail:
	net__free(n);
	pd->priv = NULL;
	return ret;
}

static void net__exit(struct pci_dev *pd)
{
	struct net *n = pd->priv;

	if (!n)
		return;
	virtio__exit(&n->vd);
	pr_debug("%s: tx %llu frames (%llu dropped, %llu bad chains), rx %llu frames (%llu dropped, %llu bad chains)",
		 pd->name, (unsigned long long)n->stats[ST_TX], (unsigned long long)n->stats[ST_TX_DROP],
		 (unsigned long long)n->stats[ST_TX_BAD], (unsigned long long)n->stats[ST_RX],
		 (unsigned long long)n->stats[ST_RX_DROP], (unsigned long long)n->stats[ST_RX_BAD]);
	net__free(n);
}

/* ---------- snapshot ---------- */

static void net__save(void *priv, void *state)
{
	struct pci_dev *pd = priv;
	struct net *n = pd->priv;
	struct net_state *s = state;

	pthread_mutex_lock(&pd->lock);
	pci__save(pd, &s->pci);
	s->virtio = n->vd.st;
	memcpy(s->mac, n->mac, 6);
	s->status = n->status;
	memset(s->tap, 0, sizeof(s->tap));
	memcpy(s->tap, n->o.tap, strlen(n->o.tap));
	pthread_mutex_unlock(&pd->lock);
}

static void net__encode(struct sbuf *b, const void *state)
{
	const struct net_state *s = state;

	enc__map(b);
	pci__encode(b, &s->pci);
	virtio__encode(b, &s->virtio);
	enc__bytes(b, "mac", s->mac, 6);
	enc__u16(b, "status", s->status);
	enc__str(b, "tap", s->tap);
	enc__end(b);
}

/* Version 1 did not record where the function was (pci.h). */
static void virtio_net_v1_to_v2(struct net_state *s)
{
	pci__func_unrecorded(&s->pci);
}

static void net__decode(struct dec *d, const cbor_item_t *m, uint32_t version, void *state)
{
	struct net_state *s = state;
	const char *why;

	pci__decode(d, m, &s->pci, VIRTIO_PCI_VENDOR, VIRTIO_PCI_DEVICE_BASE + net_type.device_id,
		    net_type.nqueues + 1u, version >= 2);
	if (version < 2)
		virtio_net_v1_to_v2(s);
	virtio__decode(d, m, &s->virtio, &net_type, d->mem_size);
	dec__bytes(d, m, "mac", s->mac, 6);
	s->status = dec__u16(d, m, "status");
	dec__str(d, m, "tap", s->tap, sizeof(s->tap));
	if (d->ret)
		return;
	why = mac_problem(s->mac);
	if (why)
		dec__fail(d, "field 'mac' is %s", why);
	else if (s->status & ~NET_S_LINK_UP)
		dec__fail(d, "field 'status' is 0x%x, only bit 0 (link up) exists", s->status);
	else if (!valid_ifname(s->tap))
		dec__fail(d, "field 'tap' ('%s') is not an interface name", s->tap);
}

static int net__restore(void *priv, const void *state, char *err, size_t errlen)
{
	struct pci_dev *pd = priv;
	struct net *n = pd->priv;
	const struct net_state *s = state;
	char saved[18], given[18];
	int ret;

	pthread_mutex_lock(&pd->lock);
	ret = pci__check_placement(pd, &s->pci, err, errlen);
	if (ret) {
		pthread_mutex_unlock(&pd->lock);
		return ret;
	}
	memcpy(n->mac, s->mac, 6);
	/*
	 * A clone's own MAC: the device reports it from now on, and the next
	 * snapshot records it.  The running guest keeps the address its
	 * driver read at probe until it reads the device again (a rebind, a
	 * reboot), which its generation ID changing tells it to do.
	 */
	if (n->o.mac_given && memcmp(n->o.mac, s->mac, 6)) {
		fmt_mac(s->mac, saved);
		fmt_mac(n->o.mac, given);
		pr_info("%s: MAC %s replaces the snapshot's %s; the guest sees it when its driver next "
			"reads the device", pd->name, given, saved);
		memcpy(n->mac, n->o.mac, 6);
	}
	n->status = s->status;
	if (strcmp(n->o.tap, s->tap))
		pr_debug("%s: tap '%s' (the snapshot's was '%s')", pd->name, n->o.tap, s->tap);
	pci__restore(pd, &s->pci);
	/* last: it serves the queues once, in case a notification was pending */
	ret = virtio__restore(&n->vd, &s->virtio, err, errlen);
	pthread_mutex_unlock(&pd->lock);
	return ret;
}

static const struct device_ops net_ops = {
	.name = "virtio-net",
	.state_version = NET_STATE_VERSION,
	.state_size = sizeof(struct net_state),
	.save = net__save,
	.encode = net__encode,
	.decode = net__decode,
	.restore = net__restore,
};

static const struct pci_devtype net_pci = {
	.ops = &net_ops,
	.check = net__check,
	.init = net__init,
	.exit = net__exit,
};
PCI_DEVTYPE_REGISTER(net_pci, DEVICE_ORDER_VIRTIO_NET);
