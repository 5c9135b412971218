/*
 * virtio-net driven the way a guest drives it (see test_vconsole.c), with
 * a SOCK_SEQPACKET socket pair in place of the tap (one message = header +
 * frame, as the tap's IFF_VNET_HDR framing): option checking, identity and
 * configuration, transmit (bytes, header, bad chains, a full backend),
 * receive through the device's I/O thread (header rewritten, chains split
 * anywhere, frames too large, bad chains, no buffers: one frame held and
 * delivered later), reset, pause, a backend that goes away, and the
 * snapshot round trip with the MAC rules.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>

#include "khyve/config.h"
#include "khyve/device.h"
#include "khyve/pci.h"
#include "khyve/snapfmt.h"
#include "khyve/virtio.h"
#include "khyve/vm.h"

#include "fakevm.h"

/* net.c's test hooks */
void vnet__test_backend(int fd);
void vnet__test_stats(struct pci_dev *pd, uint64_t out[6]);
enum { ST_TX, ST_TX_DROP, ST_TX_BAD, ST_RX, ST_RX_DROP, ST_RX_BAD, ST_N };

#define SLOT 4
#define QSIZE 8
#define RXQ 0
#define TXQ 1
#define HDR 12
#define RXBUF 1526
/* per queue: desc table, avail at +0x1000, used at +0x2000 */
static const uint64_t ring_at[2] = { 0x100000, 0x110000 };
#define RXBUFS 0x200000ULL	/* QSIZE buffers of 0x800 */
#define TXBUFS 0x300000ULL
#define BIG 0x400000ULL		/* room for a 64 KiB frame */

/*
 * The VM's tap is a socket pair: its peer is the "tap" side, what the host
 * network sees, its devfd the device's end (owned by the device).
 */

static char vm_name[] = "vnet";
static char dev_name[] = "virtio-net";

static struct pci_dev *pdev(struct fakevm *f)
{
	return device_named(&f->vm, "virtio-net.4")->priv;
}

static void setup_vm(struct fakevm *f, const char *opts, const char *name)
{
	int sv[2];

	fakevm_init(f, &(struct fakevm_conf){ .name = name, .slot = SLOT, .device = dev_name, .opts = opts,
					       .ring = { ring_at[RXQ], ring_at[TXQ] }, .qsize = QSIZE,
					       .qmax = 256 });
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	f->peer = sv[0];
	f->devfd = sv[1];
	vnet__test_backend(sv[1]);
	fakevm_up(f);
}

static void teardown_vm(struct fakevm *f)
{
	fakevm_down(f);
	close(f->peer);
}

static int setup(void **state)
{
	struct fakevm *f = malloc(sizeof(*f));

	setup_vm(f, "tap=ktest0", vm_name);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	teardown_vm(*state);
	free(*state);
	return 0;
}

/* ---------- the driver's side ---------- */

/* reset, negotiate (VERSION_1 plus features_lo), both queues, DRIVER_OK */
static void driver_up(struct fakevm *f, uint32_t features_lo)
{
	fakevm_drive(f, 1ULL << VIRTIO_F_VERSION_1 | features_lo, 1u << RXQ | 1u << TXQ);
}

/* RX descriptor i: one writable buffer of len bytes, its own chain */
static void post_rx(struct fakevm *f, uint16_t i, uint32_t len)
{
	set_desc(f, ring_at[RXQ], i, RXBUFS + 0x800 * i, len, VIRTQ_DESC_F_WRITE, 0);
	post(f, RXQ, i);
}

static void stats(struct fakevm *f, uint64_t out[ST_N])
{
	vnet__test_stats(pdev(f), out);
}

/* The device's I/O thread has taken every frame we sent and finished with it. */
static void wait_drained(struct fakevm *f)
{
	uint64_t t0 = now_ms();
	int inq = 1;

	for (;;) {
		assert_int_equal(ioctl(f->devfd, SIOCINQ, &inq), 0);
		if (!inq)
			break;
		if (now_ms() - t0 > 5000)
			fail_msg("the device did not read its backend");
		usleep(500);
	}
	/* it read under the device lock: once we hold it, that callback is over */
	pthread_mutex_lock(&pdev(f)->lock);
	pthread_mutex_unlock(&pdev(f)->lock);
}

/* a frame of len bytes (header included): hdr flags, then a pattern from seed */
static size_t make_frame(uint8_t *p, size_t len, uint8_t hdr_flags, unsigned int seed)
{
	memset(p, 0, HDR);
	p[0] = hdr_flags;
	p[10] = 0x77;		/* num_buffers as the tap leaves it: not ours to trust */
	for (size_t i = HDR; i < len; i++)
		p[i] = (uint8_t)(seed * 31 + i * 7);
	return len;
}

static void send_frame(struct fakevm *f, const uint8_t *p, size_t len)
{
	assert_int_equal(send(f->peer, p, len, 0), (ssize_t)len);
}

/* what the guest got: num_buffers 1, flags 0, the frame as sent */
static void check_rx(const uint8_t *got, const uint8_t *sent, size_t len)
{
	static const uint8_t want_hdr[HDR] = { [10] = 1 };

	assert_memory_equal(got, want_hdr, HDR);
	assert_memory_equal(got + HDR, sent + HDR, len - HDR);
}

/* ---------- tests ---------- */

static void test_options(void **state)
{
	static const struct { const char *opts, *msg; } bad[] = {
		{ NULL, "virtio-net needs a tap device: -s SLOT,virtio-net,tap=NAME[,mac=MAC]" },
		{ "", "virtio-net needs a tap device" },
		{ "mac=52:54:00:01:02:03", "virtio-net: no tap device in 'mac=52:54:00:01:02:03' (tap=NAME)" },
		{ "tap=", "virtio-net: invalid tap name ''" },
		{ "tap=0123456789abcdef", "virtio-net: invalid tap name '0123456789abcdef'" },
		{ "tap=a/b", "invalid tap name 'a/b'" },
		{ "tap=a b", "invalid tap name 'a b'" },
		{ "tap=a:1", "invalid tap name 'a:1'" },
		{ "tap=tap%d", "invalid tap name 'tap%d'" },
		{ "tap=..", "invalid tap name '..'" },
		{ "tap0,tap=tap1", "virtio-net: more than one tap device in 'tap0,tap=tap1'" },
		{ "tap=t0,fast=1", "virtio-net: unknown option 'fast' (tap=NAME, mac=MAC)" },
		{ "tap=t0,=1", "virtio-net: unknown option ''" },
		{ "tap=t0,,mac=52:54:00:01:02:03", "virtio-net: empty option in 'tap=t0,,mac=52:54:00:01:02:03'" },
		{ "tap=t0,", "virtio-net: empty option" },
		{ ",tap=t0", "virtio-net: empty option" },
		{ "tap=t0,mac=52:54:00:01:02", "virtio-net: invalid MAC address '52:54:00:01:02' (want xx:xx:xx:xx:xx:xx in hex)" },
		{ "tap=t0,mac=52:54:00:01:02:0g", "invalid MAC address '52:54:00:01:02:0g'" },
		{ "tap=t0,mac=52-54-00-01-02-03", "invalid MAC address" },
		{ "tap=t0,mac=52:54:00:01:02:03:04", "invalid MAC address" },
		{ "tap=t0,mac=53:54:00:01:02:03", "virtio-net: MAC address '53:54:00:01:02:03' is a multicast address" },
		{ "tap=t0,mac=ff:ff:ff:ff:ff:ff", "is a multicast address" },
		{ "tap=t0,mac=00:00:00:00:00:00", "virtio-net: MAC address '00:00:00:00:00:00' is all zeros" },
		{ "tap=t0,mac=52:54:00:01:02:03,mac=52:54:00:01:02:03", "virtio-net: mac= given twice" },
	};
	static const char *const good[] = {
		"tap=tap0", "tap0", "tap0,mac=52:54:00:ab:CD:ef", "mac=02:00:00:00:00:01,tap=x",
		"tap=0123456789abcde", "tap=a.b-c_d",
	};
	char err[256];

	(void)state;
	for (unsigned int i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (pci__check_device("virtio-net", good[i], err, sizeof(err)))
			fail_msg("'%s' refused: %s", good[i], err);
	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (pci__check_device("virtio-net", bad[i].opts, err, sizeof(err)) != -EINVAL)
			fail_msg("'%s' accepted", bad[i].opts ? bad[i].opts : "(null)");
		if (!strstr(err, bad[i].msg))
			fail_msg("'%s': message '%s' lacks '%s'", bad[i].opts ? bad[i].opts : "(null)", err, bad[i].msg);
		assert_null(strchr(err, '\n'));
	}
}

static void read_mac(struct fakevm *f, uint8_t mac[6])
{
	for (unsigned int i = 0; i < 6; i++)
		mac[i] = (uint8_t)mmio_rd(f, VIRTIO_DEVCFG_OFF + i, 1);
}

static void test_identity(void **state)
{
	struct fakevm *f = *state, g;
	uint8_t mac[6], mac2[6];

	assert_int_equal(cfg_rd(&f->vm, SLOT, 0), 0x10411af4);	/* virtio 1.x network */
	assert_int_equal(cfg_rd(&f->vm, SLOT, 8) >> 8, 0x020000);	/* Ethernet controller */
	assert_int_equal(mmio_rd(f, 0x12, 2), 2);		/* receiveq, transmitq */
	mmio_wr(f, 0x00, 0, 4);
	assert_int_equal(mmio_rd(f, 0x04, 4), 3u << 28 | 1u << 16 | 1u << 5);	/* MAC, STATUS */
	mmio_wr(f, 0x00, 1, 4);
	assert_int_equal(mmio_rd(f, 0x04, 4), 1);		/* VERSION_1 */
	/* the default MAC: locally administered unicast, from name and slot */
	read_mac(f, mac);
	assert_int_equal(mac[0], 0x52);
	assert_int_equal(mac[1], 0x54);
	assert_int_equal(mac[2], 0x00);
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF + 6, 2), 1);	/* link up */
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF + 8, 2), 1);	/* max_virtqueue_pairs */
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF + 4, 4) & 0xffff, mac[4] | mac[5] << 8);
	/* the driver cannot change it */
	mmio_wr(f, VIRTIO_DEVCFG_OFF, 0x42, 1);
	read_mac(f, mac2);
	assert_memory_equal(mac, mac2, 6);

	/* the same name and slot: the same MAC; another name: another */
	setup_vm(&g, "tap=ktest0", vm_name);
	read_mac(&g, mac2);
	assert_memory_equal(mac, mac2, 6);
	teardown_vm(&g);
	setup_vm(&g, "ktest0", "other-vm");
	read_mac(&g, mac2);
	assert_memory_not_equal(mac, mac2, 6);
	teardown_vm(&g);
	/* mac= wins */
	setup_vm(&g, "tap=ktest0,mac=02:aa:bb:cc:dd:ee", vm_name);
	read_mac(&g, mac2);
	assert_memory_equal(mac2, "\x02\xaa\xbb\xcc\xdd\xee", 6);
	teardown_vm(&g);
}

static void test_transmit(void **state)
{
	struct fakevm *f = *state;
	uint8_t frame[200], got[400];
	uint64_t st[ST_N];

	driver_up(f, 1u << VIRTIO_F_INDIRECT_DESC | 1u << 5);
	/* header and frame in one descriptor; the driver's header is ignored */
	make_frame(frame, 74, 0, 1);
	memcpy(gpa(f, TXBUFS), frame, 74);
	((uint8_t *)gpa(f, TXBUFS))[0] = 1;	/* NEEDS_CSUM, never negotiated */
	((uint8_t *)gpa(f, TXBUFS))[1] = 1;	/* GSO_TCPV4, neither */
	set_desc(f, ring_at[TXQ], 0, TXBUFS, 74, 0, 0);
	post(f, TXQ, 0);
	assert_int_equal(used_idx(f, TXQ), 1);
	assert_int_equal(used_id(f, TXQ, 0), 0);
	assert_int_equal(used_len(f, TXQ, 0), 0);
	assert_int_equal(recv(f->peer, got, sizeof(got), MSG_DONTWAIT), 74);
	assert_memory_equal(got, "\0\0\0\0\0\0\0\0\0\0\0\0", HDR);
	assert_memory_equal(got + HDR, frame + HDR, 74 - HDR);

	/* header alone, then the frame in three pieces, one split mid-way */
	make_frame(frame, 160, 0, 2);
	memcpy(gpa(f, TXBUFS + 0x1000), frame, HDR);
	memcpy(gpa(f, TXBUFS + 0x2000), frame + HDR, 50);
	memcpy(gpa(f, TXBUFS + 0x3000), frame + HDR + 50, 1);
	memcpy(gpa(f, TXBUFS + 0x4000), frame + HDR + 51, 160 - HDR - 51);
	set_desc(f, ring_at[TXQ], 1, TXBUFS + 0x1000, HDR, VIRTQ_DESC_F_NEXT, 2);
	set_desc(f, ring_at[TXQ], 2, TXBUFS + 0x2000, 50, VIRTQ_DESC_F_NEXT, 3);
	set_desc(f, ring_at[TXQ], 3, TXBUFS + 0x3000, 1, VIRTQ_DESC_F_NEXT, 4);
	set_desc(f, ring_at[TXQ], 4, TXBUFS + 0x4000, 160 - HDR - 51, 0, 0);
	post(f, TXQ, 1);
	assert_int_equal(used_idx(f, TXQ), 2);
	assert_int_equal(recv(f->peer, got, sizeof(got), MSG_DONTWAIT), 160);
	assert_memory_equal(got + HDR, frame + HDR, 160 - HDR);

	/* the header split across descriptors (5 + 7 + frame), through an indirect table */
	make_frame(frame, 100, 0, 3);
	memcpy(gpa(f, TXBUFS + 0x5000), frame, 5);
	memcpy(gpa(f, TXBUFS + 0x5100), frame + 5, 95);
	set_desc(f, TXBUFS + 0x6000, 0, TXBUFS + 0x5000, 5, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, TXBUFS + 0x6000, 1, TXBUFS + 0x5100, 95, 0, 0);
	set_desc(f, ring_at[TXQ], 5, TXBUFS + 0x6000, 32, VIRTQ_DESC_F_INDIRECT, 0);
	post(f, TXQ, 5);
	assert_int_equal(used_idx(f, TXQ), 3);
	assert_int_equal(recv(f->peer, got, sizeof(got), MSG_DONTWAIT), 100);
	assert_memory_equal(got + HDR, frame + HDR, 100 - HDR);

	/* the largest frame there may be: 65550 bytes with the header */
	make_frame(gpa(f, BIG), 65550, 0, 4);
	set_desc(f, ring_at[TXQ], 6, BIG, 65550, 0, 0);
	post(f, TXQ, 6);
	assert_int_equal(used_idx(f, TXQ), 4);
	{
		uint8_t *big = malloc(70000);

		assert_int_equal(recv(f->peer, big, 70000, MSG_DONTWAIT), 65550);
		assert_memory_equal(big + HDR, (uint8_t *)gpa(f, BIG) + HDR, 65550 - HDR);
		free(big);
	}
	stats(f, st);
	assert_int_equal(st[ST_TX], 4);
	assert_int_equal(st[ST_TX_DROP] + st[ST_TX_BAD], 0);
	assert_false(mmio_rd(f, 0x14, 1) & VIRTIO_S_NEEDS_RESET);
}

/* Bad chains are dropped, returned all the same, and nothing reaches the tap. */
static void test_transmit_bad(void **state)
{
	struct fakevm *f = *state;
	uint8_t got[64];
	uint64_t st[ST_N];

	driver_up(f, 0);
	set_desc(f, ring_at[TXQ], 0, TXBUFS, HDR + 13, 0, 0);		/* shorter than an Ethernet header */
	post(f, TXQ, 0);
	set_desc(f, ring_at[TXQ], 1, BIG, 65551, 0, 0);			/* one byte too long */
	post(f, TXQ, 1);
	set_desc(f, ring_at[TXQ], 2, TXBUFS, 100, VIRTQ_DESC_F_NEXT, 3);	/* a writable buffer in it */
	set_desc(f, ring_at[TXQ], 3, TXBUFS + 0x1000, 100, VIRTQ_DESC_F_WRITE, 0);
	post(f, TXQ, 2);
	set_desc(f, ring_at[TXQ], 4, TXBUFS, HDR, 0, 0);			/* a header, no frame */
	post(f, TXQ, 4);
	assert_int_equal(used_idx(f, TXQ), 4);
	for (unsigned int i = 0; i < 4; i++)
		assert_int_equal(used_len(f, TXQ, i), 0);
	assert_int_equal(recv(f->peer, got, sizeof(got), MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
	stats(f, st);
	assert_int_equal(st[ST_TX_BAD], 4);
	assert_int_equal(st[ST_TX], 0);
	/* a good one still goes */
	make_frame(gpa(f, TXBUFS), 60, 0, 9);
	set_desc(f, ring_at[TXQ], 5, TXBUFS, 60, 0, 0);
	post(f, TXQ, 5);
	assert_int_equal(recv(f->peer, got, sizeof(got), MSG_DONTWAIT), 60);
	assert_false(mmio_rd(f, 0x14, 1) & VIRTIO_S_NEEDS_RESET);
}

/* A backend that cannot take more: frames dropped and counted, chains returned, no waiting. */
static void test_transmit_full(void **state)
{
	struct fakevm *f = *state;
	uint64_t st[ST_N];
	int sz = 4096;
	uint16_t n = 0;

	assert_int_equal(setsockopt(f->devfd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)), 0);
	driver_up(f, 0);
	make_frame(gpa(f, TXBUFS), 1514, 0, 5);
	for (unsigned int round = 0; round < 8; round++) {
		for (uint16_t i = 0; i < QSIZE; i++) {
			set_desc(f, ring_at[TXQ], i, TXBUFS, 1514, 0, 0);
			make_avail(f, TXQ, i);
		}
		kick(f, TXQ);
		n += QSIZE;
		assert_int_equal(used_idx(f, TXQ), n);
	}
	stats(f, st);
	assert_int_equal(st[ST_TX] + st[ST_TX_DROP], 64);
	assert_true(st[ST_TX_DROP] > 0);
	assert_true(st[ST_TX] > 0);
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF + 6, 2), 1);	/* a full tap is no failure */
}

static void test_receive(void **state)
{
	struct fakevm *f = *state;
	uint8_t frame[2000];
	uint64_t st[ST_N];

	driver_up(f, 0);
	for (uint16_t i = 0; i < 4; i++)
		post_rx(f, i, RXBUF);
	/* the tap's header says DATA_VALID: without GUEST_CSUM the driver sees 0 */
	make_frame(frame, 72, 2, 1);
	send_frame(f, frame, 72);
	wait_used(f, RXQ, 1);
	assert_int_equal(used_id(f, RXQ, 0), 0);
	assert_int_equal(used_len(f, RXQ, 0), 72);
	check_rx(gpa(f, RXBUFS), frame, 72);
	/* a full-size frame, exactly filling the buffer */
	make_frame(frame, RXBUF, 0, 2);
	send_frame(f, frame, RXBUF);
	wait_used(f, RXQ, 2);
	assert_int_equal(used_len(f, RXQ, 1), RXBUF);
	check_rx(gpa(f, RXBUFS + 0x800), frame, RXBUF);
	/* several at once, in order */
	for (unsigned int k = 0; k < 2; k++) {
		make_frame(frame, 60 + k, 0, 10 + k);
		send_frame(f, frame, 60 + k);
	}
	wait_used(f, RXQ, 4);
	for (unsigned int k = 0; k < 2; k++) {
		make_frame(frame, 60 + k, 0, 10 + k);
		assert_int_equal(used_len(f, RXQ, 2 + k), 60 + k);
		check_rx(gpa(f, RXBUFS + 0x800 * (2 + k)), frame, 60 + k);
	}
	stats(f, st);
	assert_int_equal(st[ST_RX], 4);
	assert_int_equal(st[ST_RX_DROP] + st[ST_RX_BAD], 0);
}

/* A chain split anywhere, the header across three descriptors. */
static void test_receive_split(void **state)
{
	struct fakevm *f = *state;
	uint8_t frame[300], got[300];
	static const uint32_t piece[] = { 3, 4, 6, 100, 187 };
	uint64_t at = RXBUFS;
	size_t off = 0;

	driver_up(f, 0);
	for (unsigned int i = 0; i < 5; i++) {
		set_desc(f, ring_at[RXQ], i, RXBUFS + 0x100 * i, piece[i], VIRTQ_DESC_F_WRITE | (i < 4 ? VIRTQ_DESC_F_NEXT : 0),
			 (uint16_t)(i + 1));
	}
	post(f, RXQ, 0);
	make_frame(frame, 300, 0, 7);
	send_frame(f, frame, 300);
	wait_used(f, RXQ, 1);
	assert_int_equal(used_len(f, RXQ, 0), 300);
	for (unsigned int i = 0; i < 5; i++, at += 0x100) {
		memcpy(got + off, gpa(f, at), piece[i]);
		off += piece[i];
	}
	check_rx(got, frame, 300);
}

/* Too large for the chain: the frame is dropped, the chain waits for the next one. */
static void test_receive_too_big(void **state)
{
	struct fakevm *f = *state;
	uint8_t frame[200];
	uint64_t st[ST_N];

	driver_up(f, 0);
	post_rx(f, 0, HDR + 50);
	make_frame(frame, HDR + 51, 0, 1);
	send_frame(f, frame, HDR + 51);
	wait_drained(f);
	assert_int_equal(used_idx(f, RXQ), 0);
	stats(f, st);
	assert_int_equal(st[ST_RX_DROP], 1);
	make_frame(frame, HDR + 50, 0, 2);
	send_frame(f, frame, HDR + 50);
	wait_used(f, RXQ, 1);
	assert_int_equal(used_len(f, RXQ, 0), HDR + 50);
	check_rx(gpa(f, RXBUFS), frame, HDR + 50);
	/* shorter than a header from the backend: dropped */
	post_rx(f, 1, RXBUF);
	send_frame(f, frame, 5);
	wait_drained(f);
	assert_int_equal(used_idx(f, RXQ), 1);
	/* the backend asked us to finish a checksum: we cannot, dropped */
	make_frame(frame, 80, 1, 3);
	send_frame(f, frame, 80);
	wait_drained(f);
	assert_int_equal(used_idx(f, RXQ), 1);
	stats(f, st);
	assert_int_equal(st[ST_RX_DROP], 3);
	assert_int_equal(st[ST_RX], 1);
	assert_false(mmio_rd(f, 0x14, 1) & VIRTIO_S_NEEDS_RESET);
}

/* Chains the driver should not post: returned unused, the frame goes to the next. */
static void test_receive_bad_chain(void **state)
{
	struct fakevm *f = *state;
	uint8_t frame[100];
	uint64_t st[ST_N];

	driver_up(f, 0);
	set_desc(f, ring_at[RXQ], 0, RXBUFS, RXBUF, 0, 0);	/* device-readable */
	post(f, RXQ, 0);
	post_rx(f, 1, HDR - 1);					/* no room for a header */
	post_rx(f, 2, RXBUF);
	make_frame(frame, 90, 0, 4);
	send_frame(f, frame, 90);
	wait_used(f, RXQ, 3);
	assert_int_equal(used_len(f, RXQ, 0), 0);
	assert_int_equal(used_len(f, RXQ, 1), 0);
	assert_int_equal(used_id(f, RXQ, 2), 2);
	assert_int_equal(used_len(f, RXQ, 2), 90);
	check_rx(gpa(f, RXBUFS + 0x1000), frame, 90);
	stats(f, st);
	assert_int_equal(st[ST_RX_BAD], 2);
	assert_int_equal(st[ST_RX], 1);
}

static uint64_t cpu_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* The I/O thread sleeps: 50 ms go by with (nearly) no CPU time used. */
static void assert_idle(void)
{
	uint64_t t0 = cpu_us(), used;

	usleep(50000);
	used = cpu_us() - t0;
	if (used > 20000)
		fail_msg("%llu us of CPU in 50 ms: the I/O thread spins", (unsigned long long)used);
}

/* Frames waiting in the backend, not read, while the driver has no buffer */
static void wait_backlog(struct fakevm *f, int want_bytes)
{
	int inq = -1;

	assert_idle();		/* time enough for the I/O thread to do something wrong */
	assert_int_equal(ioctl(f->devfd, SIOCINQ, &inq), 0);
	assert_int_equal(inq, want_bytes);
}

/*
 * No buffer: frames wait in the backend (nothing read, nothing dropped) and
 * arrive in order as the driver posts buffers, however few at a time.
 */
static void test_receive_no_buffers(void **state)
{
	struct fakevm *f = *state;
	uint8_t frame[200];
	uint64_t st[ST_N];
	uint16_t head = 0, used = 0;
	int queued = 0;

	driver_up(f, 0);
	for (unsigned int k = 0; k < 20; k++) {
		make_frame(frame, 100 + k, 0, 20 + k);
		send_frame(f, frame, 100 + k);
		queued += 100 + (int)k;
	}
	wait_backlog(f, queued);
	stats(f, st);
	assert_int_equal(st[ST_RX] + st[ST_RX_DROP], 0);
	/* one buffer: one frame; then three at a time */
	for (unsigned int batch = 1; used < 20; batch = 3) {
		for (unsigned int b = 0; b < batch && head < 20; b++, head++)
			post_rx(f, head % QSIZE, RXBUF);
		wait_used(f, RXQ, head);
		for (; used < head; used++) {
			make_frame(frame, 100 + used, 0, 20 + used);
			assert_int_equal(used_len(f, RXQ, used), 100 + used);
			check_rx(gpa(f, RXBUFS + 0x800 * (used % QSIZE)), frame, 100 + used);
		}
		if (used < 20) {
			queued = 0;
			for (unsigned int k = used; k < 20; k++)
				queued += 100 + (int)k;
			wait_backlog(f, queued);
		}
	}
	stats(f, st);
	assert_int_equal(st[ST_RX], 20);
	assert_int_equal(st[ST_RX_DROP], 0);
	/* and once there are buffers again, frames go straight in */
	post_rx(f, 0, RXBUF);
	make_frame(frame, 64, 0, 99);
	send_frame(f, frame, 64);
	wait_used(f, RXQ, 21);
	check_rx(gpa(f, RXBUFS), frame, 64);
}

/* Before the driver is ready there is nobody to give frames to: dropped. */
static void test_receive_before_driver(void **state)
{
	struct fakevm *f = *state;
	uint8_t frame[200];
	uint64_t st[ST_N];

	make_frame(frame, 64, 0, 1);
	send_frame(f, frame, 64);
	send_frame(f, frame, 64);
	wait_drained(f);
	stats(f, st);
	assert_int_equal(st[ST_RX_DROP], 2);
	driver_up(f, 0);
	post_rx(f, 0, RXBUF);
	usleep(20000);
	assert_int_equal(used_idx(f, RXQ), 0);
	/* after DRIVER_OK, before any buffer: it waits, then arrives */
	make_frame(frame, 70, 0, 2);
	driver_up(f, 0);
	send_frame(f, frame, 70);
	wait_backlog(f, 70);
	post_rx(f, 0, RXBUF);
	wait_used(f, RXQ, 1);
	check_rx(gpa(f, RXBUFS), frame, 70);
	/* a reset while frames wait: they are the old driver's, dropped */
	send_frame(f, frame, 70);
	wait_backlog(f, 70);
	mmio_wr(f, 0x14, 0, 1);
	wait_drained(f);
	stats(f, st);
	assert_int_equal(st[ST_RX_DROP], 3);
}

/*
 * A pause serves the transmit chains already posted (their notification
 * still on its way); nothing is read from the backend until resume.
 */
static void test_pause(void **state)
{
	struct fakevm *f = *state;
	struct pci_dev *pd = pdev(f);
	uint8_t frame[200], got[200];
	char err[256];

	driver_up(f, 0);
	make_frame(gpa(f, TXBUFS), 60, 0, 2);
	set_desc(f, ring_at[TXQ], 0, TXBUFS, 60, 0, 0);
	make_avail(f, TXQ, 0);
	assert_int_equal(pd->pause(pd, err, sizeof(err)), 0);
	assert_int_equal(used_idx(f, TXQ), 1);
	assert_int_equal(recv(f->peer, got, sizeof(got), MSG_DONTWAIT), 60);
	/* paused: frames wait in the backend, even with a buffer posted */
	set_desc(f, ring_at[RXQ], 0, RXBUFS, RXBUF, VIRTQ_DESC_F_WRITE, 0);
	make_avail(f, RXQ, 0);
	make_frame(frame, 80, 0, 1);
	send_frame(f, frame, 80);
	wait_backlog(f, 80);
	assert_int_equal(used_idx(f, RXQ), 0);
	pd->resume(pd);
	wait_used(f, RXQ, 1);
	check_rx(gpa(f, RXBUFS), frame, 80);
	/* paused with no buffer and frames waiting: still waiting after resume, then delivered */
	send_frame(f, frame, 80);
	wait_backlog(f, 80);
	assert_int_equal(pd->pause(pd, err, sizeof(err)), 0);
	pd->resume(pd);
	wait_backlog(f, 80);
	post_rx(f, 1, RXBUF);
	wait_used(f, RXQ, 2);
}

/* The backend goes away: link down with a configuration change, frames dropped, no spinning. */
static void test_backend_gone(void **state)
{
	struct fakevm *f = *state;
	uint64_t t0 = now_ms(), st[ST_N];
	uint8_t gen;

	driver_up(f, 0);
	gen = (uint8_t)mmio_rd(f, 0x15, 1);
	close(f->peer);
	f->peer = -1;
	while (mmio_rd(f, VIRTIO_DEVCFG_OFF + 6, 2) & 1)
		if (now_ms() - t0 > 5000)
			fail_msg("link still up");
		else
			usleep(500);
	assert_int_not_equal((uint8_t)mmio_rd(f, 0x15, 1), gen);
	make_frame(gpa(f, TXBUFS), 60, 0, 2);
	set_desc(f, ring_at[TXQ], 0, TXBUFS, 60, 0, 0);
	post(f, TXQ, 0);
	assert_int_equal(used_idx(f, TXQ), 1);
	stats(f, st);
	assert_int_equal(st[ST_TX_DROP], 1);
	assert_false(mmio_rd(f, 0x14, 1) & VIRTIO_S_NEEDS_RESET);
	/* the I/O thread sleeps though the socket reads as hung up */
	assert_idle();
}

/* save -> encode -> decode -> restore -> save: the same bytes, and the MAC rules. */
static void test_snapshot(void **state)
{
	struct fakevm *f = *state, g;
	struct pci_dev *pd;
	const struct device_ops *ops = device__find("virtio-net.4");
	struct sbuf b1 = { 0 }, b2 = { 0 };
	char err[256];
	struct dec dec = { .section = "virtio-net.4", .err = err, .errlen = sizeof(err), .mem_size = 16 << 20 };
	uint8_t mac[6], frame[100], got[100];
	void *s1, *s2;

	assert_non_null(ops);
	driver_up(f, 1u << 5);
	post_rx(f, 0, RXBUF);
	make_frame(frame, 70, 0, 1);
	send_frame(f, frame, 70);
	wait_used(f, RXQ, 1);
	post_rx(f, 1, RXBUF);		/* posted when saved */
	read_mac(f, mac);
	s1 = calloc(1, ops->state_size);
	s2 = calloc(1, ops->state_size);
	pd = pdev(f);
	assert_int_equal(pd->pause(pd, err, sizeof(err)), 0);
	ops->save(pd, s1);
	pd->resume(pd);
	encode_decode(ops, &dec, s1, &b1, s2);

	/* another VM name (another default MAC), another tap: the saved MAC stays */
	setup_vm(&g, "tap=ktest1", "clone");
	memcpy(gpa(&g, ring_at[RXQ]), gpa(f, ring_at[RXQ]), 0x3000);
	memcpy(gpa(&g, ring_at[TXQ]), gpa(f, ring_at[TXQ]), 0x3000);
	assert_int_equal(ops->restore(pdev(&g), s2, err, sizeof(err)), 0);
	memset(s2, 0, ops->state_size);
	ops->save(pdev(&g), s2);
	ops->encode(&b2, s2);
	/* the tap name is the one it was saved with: "ktest0" vs "ktest1" aside, identical */
	assert_int_equal(b1.len, b2.len);
	{
		uint8_t *at = memmem(b2.p, b2.len, "ktest1", 6);

		assert_non_null(at);
		at[5] = '0';
	}
	assert_memory_equal(b1.p, b2.p, b1.len);
	read_mac(&g, got);
	assert_memory_equal(got, mac, 6);
	/* and it goes on: the buffer posted before the save (in the rings copied) gets the next frame */
	make_frame(frame, 66, 0, 2);
	send_frame(&g, frame, 66);
	wait_used(&g, RXQ, 2);
	check_rx(gpa(&g, RXBUFS + 0x800), frame, 66);
	make_frame(gpa(&g, TXBUFS), 60, 0, 3);
	set_desc(&g, ring_at[TXQ], 0, TXBUFS, 60, 0, 0);
	post(&g, TXQ, 0);
	assert_int_equal(recv(g.peer, got, sizeof(got), MSG_DONTWAIT), 60);
	teardown_vm(&g);

	/*
	 * mac= on the restore command line: the saved one, or a clone's own,
	 * which the device reports from then on and its next save records
	 */
	{
		char opts[80], macs[18];

		snprintf(macs, sizeof(macs), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
			 mac[5]);
		snprintf(opts, sizeof(opts), "tap=ktest0,mac=%s", macs);
		setup_vm(&g, opts, vm_name);
		assert_int_equal(ops->restore(pdev(&g), s1, err, sizeof(err)), 0);
		teardown_vm(&g);
		setup_vm(&g, "tap=ktest0,mac=02:00:00:00:00:01", vm_name);
		assert_int_equal(ops->restore(pdev(&g), s1, err, sizeof(err)), 0);
		read_mac(&g, got);
		assert_memory_equal(got, "\x02\x00\x00\x00\x00\x01", 6);
		memset(s2, 0, ops->state_size);
		ops->save(pdev(&g), s2);
		assert_non_null(memmem(s2, ops->state_size, "\x02\x00\x00\x00\x00\x01", 6));
		assert_null(memmem(s2, ops->state_size, mac, 6));
		teardown_vm(&g);
	}
	sbuf__free(&b1);
	sbuf__free(&b2);
	free(s1);
	free(s2);
}

/* Decoding refuses what the device could never be in. */
static void test_decode_refuses(void **state)
{
	struct fakevm *f = *state;
	const struct device_ops *ops = device__find("virtio-net.4");
	static const struct { uint8_t mac0; uint16_t status; const char *tap, *msg; } bad[] = {
		{ 0x53, 1, "t0", "field 'mac' is a multicast address" },
		{ 0x52, 2, "t0", "field 'status' is 0x2" },
		{ 0x52, 1, "a/b", "field 'tap' ('a/b') is not an interface name" },
		{ 0x52, 1, "", "field 'tap' ('') is not an interface name" },
	};
	char err[256];

	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct dec dec = { .section = "virtio-net.4", .err = err, .errlen = sizeof(err), .mem_size = 16 << 20 };
		struct sbuf b = { 0 };
		uint8_t *s = calloc(1, ops->state_size), *s2 = calloc(1, ops->state_size);
		cbor_item_t *m;

		ops->save(pdev(f), s);
		ops->encode(&b, s);
		/* patch the encoded fields: "mac" (bytes), our "status" (u16; the transport's is a u8) */
		{
			uint8_t *at = memmem(b.p, b.len, "cmacF", 5);
			uint8_t *st = memmem(b.p, b.len, "fstatus\x19\x00", 9);

			assert_non_null(at);
			assert_non_null(st);
			at[5] = bad[i].mac0;
			st[9] = (uint8_t)bad[i].status;
		}
		if (strcmp(bad[i].tap, "t0")) {
			struct sbuf nb = { 0 };
			uint8_t *at = memmem(b.p, b.len, "ctapfktest0", 11);
			uint8_t len = (uint8_t)(0x60 + strlen(bad[i].tap));

			assert_non_null(at);
			sbuf__put(&nb, b.p, (size_t)(at - b.p) + 4);
			sbuf__put(&nb, &len, 1);
			sbuf__put(&nb, bad[i].tap, strlen(bad[i].tap));
			sbuf__put(&nb, at + 11, b.len - (size_t)(at + 11 - b.p));
			sbuf__free(&b);
			b = nb;
		}
		m = dec__load(&dec, b.p, b.len);
		assert_non_null(m);
		ops->decode(&dec, m, ops->state_version, s2);
		cbor_decref(&m);
		if (!dec.ret)
			fail_msg("case %u accepted", i);
		if (!strstr(err, bad[i].msg) || !strstr(err, "virtio-net.4"))
			fail_msg("case %u: '%s' lacks '%s'", i, err, bad[i].msg);
		sbuf__free(&b);
		free(s);
		free(s2);
	}
}

/* A reset empties everything the driver set up; the device works again after. */
static void test_reset(void **state)
{
	struct fakevm *f = *state;
	uint8_t frame[100];

	driver_up(f, 0);
	post_rx(f, 0, RXBUF);
	mmio_wr(f, 0x14, 0, 1);
	assert_int_equal(mmio_rd(f, 0x14, 1), 0);
	mmio_wr(f, 0x16, RXQ, 2);
	assert_int_equal(mmio_rd(f, 0x1c, 2), 0);
	assert_int_equal(mmio_rd(f, VIRTIO_DEVCFG_OFF + 6, 2), 1);
	make_frame(frame, 64, 0, 1);
	send_frame(f, frame, 64);
	wait_drained(f);
	assert_int_equal(used_idx(f, RXQ), 0);
	driver_up(f, 0);
	post_rx(f, 0, RXBUF);
	send_frame(f, frame, 64);
	wait_used(f, RXQ, 1);
	check_rx(gpa(f, RXBUFS), frame, 64);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_options),
		cmocka_unit_test_setup_teardown(test_identity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_transmit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_transmit_bad, setup, teardown),
		cmocka_unit_test_setup_teardown(test_transmit_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_receive, setup, teardown),
		cmocka_unit_test_setup_teardown(test_receive_split, setup, teardown),
		cmocka_unit_test_setup_teardown(test_receive_too_big, setup, teardown),
		cmocka_unit_test_setup_teardown(test_receive_bad_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_receive_no_buffers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_receive_before_driver, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backend_gone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_refuses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
