/*
 * The virtio 1.x PCI transport: capabilities, common configuration,
 * feature negotiation, status, queue setup, ISR, device configuration,
 * notifications, reset, and the configuration-space window into BAR 0.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "khyve/log.h"
#include "khyve/snapfmt.h"
#include "khyve/virtio.h"
#include "khyve/vm.h"

/* virtio PCI capability types */
enum { CAP_COMMON = 1, CAP_NOTIFY = 2, CAP_ISR = 3, CAP_DEVICE = 4, CAP_PCI_CFG = 5 };

/* struct virtio_pci_cap: bar at 4, offset at 8, length at 12; pci_cfg_data at 16 */
#define PCICFG_LEN 20

static const uint64_t transport_features =
	1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_F_INDIRECT_DESC | 1ULL << VIRTIO_F_EVENT_IDX;

bool virtio__has(const struct virtio_dev *vd, unsigned int bit)
{
	return vd->st.drv_features & (1ULL << bit);
}

static uint8_t add_vcap(struct pci_dev *pd, uint8_t type, uint32_t off, uint32_t len, uint8_t cap_len)
{
	uint8_t at = pci__add_cap(pd, PCI_CAP_VENDOR, cap_len);
	uint8_t *c;

	if (!at)
		return 0;
	c = pd->st.cfg + at;
	c[2] = cap_len;
	c[3] = type;
	c[4] = 0;			/* BAR 0 */
	memcpy(c + 8, &off, 4);
	memcpy(c + 12, &len, 4);
	if (type == CAP_NOTIFY) {
		uint32_t mult = VIRTIO_NOTIFY_MULT;

		memcpy(c + 16, &mult, 4);
	}
	return at;
}

static void reset(struct virtio_dev *vd)
{
	uint16_t nq = vd->st.nqueues;
	uint64_t offered = vd->st.dev_features;
	/* the configuration outlives a reset, so its generation does too */
	uint8_t gen = vd->st.config_gen;

	memset(&vd->st, 0, sizeof(vd->st));
	vd->st.nqueues = nq;
	vd->st.dev_features = offered;
	vd->st.config_gen = gen;
	vd->st.config_vector = VIRTIO_NO_VECTOR;
	for (unsigned int q = 0; q < nq; q++) {
		vd->st.q[q].size = vd->type->queue_max;
		vd->st.q[q].vector = VIRTIO_NO_VECTOR;
	}
	pci__set_intx(vd->pd, 0);
	if (vd->type->reset)
		vd->type->reset(vd);
}

static void interrupt(struct virtio_dev *vd, uint16_t vector, uint8_t isr_bit)
{
	if (pci__msix_enabled(vd->pd)) {
		if (vector != VIRTIO_NO_VECTOR)
			pci__msix_notify(vd->pd, vector);
		return;
	}
	vd->st.isr |= isr_bit;
	pci__set_intx(vd->pd, 1);
}

void virtio__needs_reset(struct virtio_dev *vd, const char *why)
{
	if (vd->st.status & VIRTIO_S_NEEDS_RESET)
		return;
	pr_debug("%s: device needs reset: %s", vd->pd->name, why);
	vd->st.status |= VIRTIO_S_NEEDS_RESET;
	if (vd->st.status & VIRTIO_S_DRIVER_OK)
		interrupt(vd, vd->st.config_vector, 2);
}

void virtio__config_changed(struct virtio_dev *vd)
{
	/*
	 * A new generation on every change is what 4.1.4.3.1 asks: a driver
	 * that read part of the configuration before the change sees another
	 * generation after it, and reads again.
	 */
	vd->st.config_gen++;
	if (vd->st.status & VIRTIO_S_DRIVER_OK)
		interrupt(vd, vd->st.config_vector, 2);
}

void virtq__notify(struct virtio_dev *vd, unsigned int q, uint16_t old_used)
{
	struct virtio_queue_state *vq = &vd->st.q[q];
	uint16_t now = vq->used_idx;
	const uint8_t *avail;

	if (now == old_used)
		return;
	avail = memmap__gpa_to_hva(&vd->pd->vm->mem, vq->driver, 6 + 2u * vq->size);
	if (!avail)
		return;
	/*
	 * Our used-index store must be visible before we read the driver's
	 * used_event or flags: the driver writes those, fences, then reads
	 * the used index.  x86 lets a load pass an earlier store, so without
	 * a full fence both sides can read the other's old value, we skip
	 * the interrupt and the driver sleeps on a request already done.
	 */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (virtio__has(vd, VIRTIO_F_EVENT_IDX)) {
		uint16_t event;

		memcpy(&event, avail + 4 + 2u * vq->size, 2);
		/* interrupt only if used_event lies in (old_used, now] */
		if ((uint16_t)(now - event - 1) >= (uint16_t)(now - old_used))
			return;
	} else {
		uint16_t flags;

		memcpy(&flags, avail, 2);
		if (flags & VIRTQ_AVAIL_F_NO_INTERRUPT)
			return;
	}
	interrupt(vd, vq->vector, 1);
}

/* Rings of a queue about to be enabled: inside RAM and aligned. */
static bool rings_ok(const struct guest_mem *mem, const struct virtio_queue_state *vq)
{
	uint64_t n = vq->size;

	return n && !(n & (n - 1)) && !(vq->desc & 15) && !(vq->driver & 1) && !(vq->device & 3) &&
	       memmap__gpa_to_hva(mem, vq->desc, 16 * n) &&
	       memmap__gpa_to_hva(mem, vq->driver, 6 + 2 * n) &&
	       memmap__gpa_to_hva(mem, vq->device, 6 + 8 * n);
}

static void set_status(struct virtio_dev *vd, uint8_t v)
{
	if (!v) {
		reset(vd);
		return;
	}
	if ((v & VIRTIO_S_FEATURES_OK) && !(vd->st.status & VIRTIO_S_FEATURES_OK)) {
		/* accept only a subset of what we offered, and only version 1 */
		if ((vd->st.drv_features & ~vd->st.dev_features) ||
		    !virtio__has(vd, VIRTIO_F_VERSION_1))
			v &= (uint8_t)~VIRTIO_S_FEATURES_OK;
	}
	/* NEEDS_RESET is the device's to set, never the driver's; reserved bits are no one's */
	vd->st.status = (uint8_t)((v & ~(VIRTIO_S_NEEDS_RESET | VIRTIO_S_RESERVED)) |
				  (vd->st.status & VIRTIO_S_NEEDS_RESET));
}

static uint64_t common_read(struct virtio_dev *vd, unsigned int off)
{
	struct virtio_state *s = &vd->st;
	struct virtio_queue_state *vq = s->queue_sel < s->nqueues ? &s->q[s->queue_sel] : NULL;

	switch (off) {
	case 0x00: return s->dev_feature_sel;
	case 0x04: return s->dev_feature_sel < 2 ? (uint32_t)(s->dev_features >> (32 * s->dev_feature_sel)) : 0;
	case 0x08: return s->drv_feature_sel;
	case 0x0c: return s->drv_feature_sel < 2 ? (uint32_t)(s->drv_features >> (32 * s->drv_feature_sel)) : 0;
	case 0x10: return s->config_vector;
	case 0x12: return s->nqueues;
	case 0x14: return s->status;
	case 0x15: return s->config_gen;
	case 0x16: return s->queue_sel;
	case 0x18: return vq ? vq->size : 0;
	case 0x1a: return vq ? vq->vector : VIRTIO_NO_VECTOR;
	case 0x1c: return vq ? vq->enabled : 0;
	case 0x1e: return vq ? s->queue_sel : 0;	/* queue_notify_off: slot q */
	case 0x20: return vq ? vq->desc : 0;
	case 0x28: return vq ? vq->driver : 0;
	case 0x30: return vq ? vq->device : 0;
	default: return 0;
	}
}

static void common_write(struct virtio_dev *vd, unsigned int off, uint64_t v, unsigned int len)
{
	struct virtio_state *s = &vd->st;
	struct virtio_queue_state *vq = s->queue_sel < s->nqueues ? &s->q[s->queue_sel] : NULL;
	/* queue registers are frozen once the queue is enabled (spec 4.1.4.3) */
	bool qw = vq && !vq->enabled;
	uint64_t *addr = NULL;

	switch (off) {
	case 0x00: s->dev_feature_sel = (uint32_t)v; break;
	case 0x08: s->drv_feature_sel = (uint32_t)v; break;
	case 0x0c:
		if (s->drv_feature_sel < 2 && !(s->status & VIRTIO_S_FEATURES_OK)) {
			unsigned int sh = 32 * s->drv_feature_sel;

			s->drv_features = (s->drv_features & ~(0xffffffffULL << sh)) | ((uint64_t)(uint32_t)v << sh);
		}
		break;
	case 0x10:
		s->config_vector = (uint16_t)v < vd->pd->st.msix_nvec ? (uint16_t)v : VIRTIO_NO_VECTOR;
		break;
	case 0x14: set_status(vd, (uint8_t)v); break;
	case 0x16: s->queue_sel = (uint16_t)v; break;
	case 0x18:
		/* a size that is no power of two within the maximum is ignored */
		if (qw && v && v <= vd->type->queue_max && !(v & (v - 1)))
			vq->size = (uint16_t)v;
		break;
	case 0x1a:
		if (vq)
			vq->vector = (uint16_t)v < vd->pd->st.msix_nvec ? (uint16_t)v : VIRTIO_NO_VECTOR;
		break;
	case 0x1c:
		if (qw && v == 1) {
			if (!rings_ok(&vd->pd->vm->mem, vq)) {
				virtio__needs_reset(vd, "queue rings outside guest memory or misaligned");
				break;
			}
			vq->enabled = 1;
		}
		break;
	case 0x20: case 0x24: addr = qw ? &vq->desc : NULL; break;
	case 0x28: case 0x2c: addr = qw ? &vq->driver : NULL; break;
	case 0x30: case 0x34: addr = qw ? &vq->device : NULL; break;
	default: break;	/* read-only or nonexistent */
	}
	if (addr) {
		unsigned int sh = (off & 4) * 8;
		uint64_t mask = len == 8 ? ~0ULL : 0xffffffffULL << sh;

		*addr = (*addr & ~mask) | ((v << sh) & mask);
	}
}

/* Registers and the width each must be accessed with. */
static unsigned int common_width(unsigned int off)
{
	if (off < 0x10)
		return 4;
	if (off == 0x14 || off == 0x15)
		return 1;
	if (off < 0x20)
		return 2;
	return off < VIRTIO_COMMON_LEN ? 8 : 0;
}

/* A device configuration access the type's callbacks may see (4.1.4.6). */
static bool devcfg_ok(const struct virtio_dev *vd, uint64_t off, unsigned int len)
{
	uint64_t rel = off - VIRTIO_DEVCFG_OFF;

	return off >= VIRTIO_DEVCFG_OFF && rel < vd->type->config_size && len <= vd->type->config_size - rel &&
	       (len == 1 || len == 2 || len == 4 || len == 8) && !(rel & (len - 1));
}

/* One access to BAR 0, from the bus or the PCI_CFG window.  Caller holds pd->lock. */
static void bar_io(struct pci_dev *pd, uint64_t off, uint8_t *data, unsigned int len, bool is_write)
{
	struct virtio_dev *vd = pd->priv;
	uint64_t v = 0;

	if (!is_write)
		memset(data, 0, len);
	else
		memcpy(&v, data, len);
	if (pci__msix_access(pd, 0, off, data, len, is_write)) {
		/* done */
	} else if (off < VIRTIO_COMMON_LEN) {
		unsigned int w = common_width((unsigned int)off & ~3u);

		/* 64-bit fields may be accessed as two 32-bit halves */
		if (is_write) {
			if (w == 8 && (len == 4 || len == 8) && !(off & (len - 1)))
				common_write(vd, (unsigned int)off, v, len);
			else if (common_width((unsigned int)off) == len && !(off & (len - 1)))
				common_write(vd, (unsigned int)off, v, len);
		} else if (w == 8 && (len == 4 || len == 8)) {
			v = common_read(vd, (unsigned int)off & ~7u) >> ((off & 4) * 8);
			memcpy(data, &v, len);
		} else if (common_width((unsigned int)off) == len && !(off & (len - 1))) {
			v = common_read(vd, (unsigned int)off);
			memcpy(data, &v, len);
		}
	} else if (off == VIRTIO_ISR_OFF) {
		if (!is_write) {
			/* reading the ISR clears it and the INTx line */
			data[0] = vd->st.isr;
			vd->st.isr = 0;
			pci__set_intx(pd, 0);
		}
	} else if (devcfg_ok(vd, off, len)) {
		unsigned int rel = (unsigned int)(off - VIRTIO_DEVCFG_OFF);

		if (is_write && vd->type->config_write)
			vd->type->config_write(vd, rel, data, len);
		else if (!is_write && vd->type->config_read)
			vd->type->config_read(vd, rel, data, len);
	} else if (is_write && off >= VIRTIO_NOTIFY_OFF &&
		   off < VIRTIO_NOTIFY_OFF + VIRTIO_NOTIFY_MULT * (uint64_t)vd->st.nqueues) {
		/* a width KVM's ioeventfd does not match, or the PCI_CFG window */
		virtio__kick(vd, (unsigned int)(off - VIRTIO_NOTIFY_OFF) / VIRTIO_NOTIFY_MULT);
	}
}

static void bar_read(void *opaque, uint64_t off, uint8_t *data, unsigned int len)
{
	struct pci_dev *pd = opaque;

	pthread_mutex_lock(&pd->lock);
	bar_io(pd, off, data, len, false);
	pthread_mutex_unlock(&pd->lock);
}

static void bar_write(void *opaque, uint64_t off, const uint8_t *data, unsigned int len)
{
	struct pci_dev *pd = opaque;
	uint8_t buf[8];

	/* bar_io takes a writable buffer (MSI-X shares it for reads); copy */
	if (len > sizeof(buf))
		return;
	memcpy(buf, data, len);
	pthread_mutex_lock(&pd->lock);
	bar_io(pd, off, buf, len, true);
	pthread_mutex_unlock(&pd->lock);
}

/*
 * VIRTIO_PCI_CAP_PCI_CFG (4.1.4.9): an access to pci_cfg_data becomes an
 * access of cap.length bytes at cap.offset of BAR cap.bar; a read leaves
 * what the BAR returned in pci_cfg_data, where the configuration read then
 * finds it.  The driver must ask for an aligned 1-, 2- or 4-byte access
 * inside a BAR; anything else reaches no register, so a hostile driver
 * cannot use the window to read or write past BAR 0.  Caller holds pd->lock.
 */
static void pci_cfg_access(struct pci_dev *pd, unsigned int off, unsigned int len, bool is_write)
{
	struct virtio_dev *vd = pd->priv;
	uint8_t *c = pd->st.cfg + vd->pci_cfg_cap;
	unsigned int data = vd->pci_cfg_cap + 16u;
	uint32_t boff, blen;
	uint8_t bar = c[4];

	/* memory decoding or BAR 0 may have changed: so may KVM's ioeventfds */
	if (is_write && off < PCI_BAR0 + 4 && off + len > PCI_COMMAND)
		virtio__sync_notify(vd);
	if (!vd->pci_cfg_cap || off + len <= data || off >= data + 4)
		return;
	boff = (uint32_t)c[8] | (uint32_t)c[9] << 8 | (uint32_t)c[10] << 16 | (uint32_t)c[11] << 24;
	blen = (uint32_t)c[12] | (uint32_t)c[13] << 8 | (uint32_t)c[14] << 16 | (uint32_t)c[15] << 24;
	/* BAR 0 is the only one a virtio function has */
	if ((blen != 1 && blen != 2 && blen != 4) || (boff & (blen - 1)) || bar != 0 ||
	    boff > pd->bar[0].size - blen)
		return;
	bar_io(pd, boff, c + 16, blen, is_write);
}

int virtio__init(struct pci_dev *pd, struct virtio_dev *vd, const struct virtio_type *type)
{
	int ret;

	if (type->nqueues > VIRTIO_MAX_QUEUES || type->queue_max > VIRTIO_QUEUE_MAX ||
	    (type->queue_max & (type->queue_max - 1)) || type->config_size > VIRTIO_DEVCFG_MAX)
		return -EINVAL;
	vd->pd = pd;
	vd->type = type;
	pd->priv = vd;
	pci__set_ids(pd, VIRTIO_PCI_VENDOR, (uint16_t)(VIRTIO_PCI_DEVICE_BASE + type->device_id), 1,
		     type->class_code, VIRTIO_PCI_VENDOR, 0x40);
	ret = pci__add_bar(pd, 0, VIRTIO_BAR_SIZE, bar_read, bar_write);
	if (ret)
		return ret;
	if (!add_vcap(pd, CAP_COMMON, VIRTIO_COMMON_OFF, VIRTIO_COMMON_LEN, 16) ||
	    !add_vcap(pd, CAP_ISR, VIRTIO_ISR_OFF, 1, 16) ||
	    (type->config_size && !add_vcap(pd, CAP_DEVICE, VIRTIO_DEVCFG_OFF, type->config_size, 16)) ||
	    !add_vcap(pd, CAP_NOTIFY, VIRTIO_NOTIFY_OFF, VIRTIO_NOTIFY_MULT * type->nqueues, 20))
		return -ENOSPC;
	ret = pci__add_msix(pd, type->nqueues + 1u, 0, VIRTIO_MSIX_TABLE_OFF, VIRTIO_MSIX_PBA_OFF);
	if (ret)
		return ret;
	/*
	 * Last, so that the capabilities before it keep the offsets they had
	 * in snapshots taken before it existed; its fields start at zero (no
	 * access) and only cap.bar, cap.offset, cap.length and pci_cfg_data
	 * are the driver's to write.
	 */
	vd->pci_cfg_cap = add_vcap(pd, CAP_PCI_CFG, 0, 0, PCICFG_LEN);
	if (!vd->pci_cfg_cap)
		return -ENOSPC;
	pd->wmask[vd->pci_cfg_cap + 4] = 0xff;
	memset(pd->wmask + vd->pci_cfg_cap + 8, 0xff, 12);
	pd->cfg_access = pci_cfg_access;
	pd->placed = virtio__placed;
	pd->pause = virtio__pause;
	pd->resume = virtio__resume;
	vd->st.nqueues = type->nqueues;
	vd->st.dev_features = type->features | transport_features;
	reset(vd);
	return 0;
}

/* ---------- snapshot ---------- */

void virtio__encode(struct sbuf *b, const struct virtio_state *s)
{
	enc__map_key(b, "virtio");
	enc__u64(b, "device_features", s->dev_features);
	enc__u64(b, "driver_features", s->drv_features);
	enc__u32(b, "device_feature_select", s->dev_feature_sel);
	enc__u32(b, "driver_feature_select", s->drv_feature_sel);
	enc__u8(b, "status", s->status);
	enc__u8(b, "isr", s->isr);
	enc__u8(b, "config_generation", s->config_gen);
	enc__u16(b, "config_vector", s->config_vector);
	enc__u16(b, "queue_select", s->queue_sel);
	enc__array_key(b, "queues");
	for (unsigned int i = 0; i < s->nqueues; i++) {
		const struct virtio_queue_state *q = &s->q[i];

		enc__map(b);
		enc__u16(b, "size", q->size);
		enc__u16(b, "vector", q->vector);
		enc__bool(b, "enabled", q->enabled);
		enc__u64(b, "desc", q->desc);
		enc__u64(b, "driver", q->driver);
		enc__u64(b, "device", q->device);
		enc__u16(b, "last_avail", q->last_avail);
		enc__u16(b, "used_idx", q->used_idx);
		enc__end(b);
	}
	enc__end(b);
	enc__end(b);
}

void virtio__decode(struct dec *d, const cbor_item_t *map, struct virtio_state *s,
		    const struct virtio_type *type, uint64_t mem_size)
{
	const cbor_item_t *m = dec__map(d, map, "virtio");
	uint64_t offer = type->features | transport_features;
	struct guest_mem layout;
	cbor_item_t **qs;
	size_t n = 0;

	memset(s, 0, sizeof(*s));
	s->dev_features = dec__u64(d, m, "device_features");
	s->drv_features = dec__u64(d, m, "driver_features");
	s->dev_feature_sel = dec__u32(d, m, "device_feature_select");
	s->drv_feature_sel = dec__u32(d, m, "driver_feature_select");
	s->status = dec__u8(d, m, "status");
	s->isr = dec__u8(d, m, "isr");
	s->config_gen = dec__u8(d, m, "config_generation");
	s->config_vector = dec__u16(d, m, "config_vector");
	s->queue_sel = dec__u16(d, m, "queue_select");
	qs = dec__array(d, m, "queues", &n);
	if (!d->ret && n != type->nqueues)
		dec__fail(d, "field 'virtio.queues' has %zu queues, the device has %u", n, type->nqueues);
	for (size_t i = 0; qs && !d->ret && i < n; i++) {
		struct virtio_queue_state *q = &s->q[i];

		q->size = dec__u16(d, qs[i], "size");
		q->vector = dec__u16(d, qs[i], "vector");
		q->enabled = dec__bool(d, qs[i], "enabled");
		q->desc = dec__u64(d, qs[i], "desc");
		q->driver = dec__u64(d, qs[i], "driver");
		q->device = dec__u64(d, qs[i], "device");
		q->last_avail = dec__u16(d, qs[i], "last_avail");
		q->used_idx = dec__u16(d, qs[i], "used_idx");
	}
	s->nqueues = (uint16_t)n;
	if (d->ret)
		return;
	if (s->dev_features & ~offer) {
		dec__fail(d, "field 'virtio.device_features' offers 0x%llx, which this khyve does not implement",
			  (unsigned long long)(s->dev_features & ~offer));
		return;
	}
	/*
	 * Before FEATURES_OK the field holds whatever the driver wrote, offered
	 * or not (the device refuses FEATURES_OK for it); after, a subset.
	 */
	if ((s->status & VIRTIO_S_FEATURES_OK) && (s->drv_features & ~s->dev_features)) {
		dec__fail(d, "field 'virtio.driver_features' accepts 0x%llx, which was never offered",
			  (unsigned long long)(s->drv_features & ~s->dev_features));
		return;
	}
	if (s->status & VIRTIO_S_RESERVED) {
		dec__fail(d, "field 'virtio.status' is 0x%x: reserved bits set", s->status);
		return;
	}
	if (s->isr > 3) {
		dec__fail(d, "field 'virtio.isr' is 0x%x, only bits 0 and 1 exist", s->isr);
		return;
	}
	if (s->config_vector != VIRTIO_NO_VECTOR && s->config_vector > type->nqueues) {
		dec__fail(d, "field 'virtio.config_vector' is %u, beyond the MSI-X table", s->config_vector);
		return;
	}
	memmap__layout(&layout, mem_size);
	for (unsigned int i = 0; i < n; i++) {
		const struct virtio_queue_state *q = &s->q[i];

		if (!q->size || q->size > type->queue_max || (q->size & (q->size - 1))) {
			dec__fail(d, "field 'virtio.queues[%u].size' is %u, not a power of two up to %u",
				  i, q->size, type->queue_max);
			return;
		}
		if (q->vector != VIRTIO_NO_VECTOR && q->vector > type->nqueues) {
			dec__fail(d, "field 'virtio.queues[%u].vector' is %u, beyond the MSI-X table", i, q->vector);
			return;
		}
		/* layout.base is NULL: rings_ok() would fail every range, so check the regions here */
		if (q->enabled) {
			struct { uint64_t gpa, len; const char *name; } r[3] = {
				{ q->desc, 16ULL * q->size, "desc" },
				{ q->driver, 6 + 2ULL * q->size, "driver" },
				{ q->device, 6 + 8ULL * q->size, "device" },
			};

			for (unsigned int k = 0; k < 3; k++) {
				bool inside = false;

				for (unsigned int g = 0; g < layout.nregions; g++)
					inside |= r[k].gpa >= layout.regions[g].gpa &&
						  r[k].gpa - layout.regions[g].gpa <= layout.regions[g].size &&
						  r[k].len <= layout.regions[g].size - (r[k].gpa - layout.regions[g].gpa);
				if (!inside) {
					dec__fail(d, "field 'virtio.queues[%u].%s' (0x%llx) is not inside guest memory",
						  i, r[k].name, (unsigned long long)r[k].gpa);
					return;
				}
			}
		}
	}
}

int virtio__restore(struct virtio_dev *vd, const struct virtio_state *s, char *err, size_t errlen)
{
	if (s->nqueues != vd->st.nqueues) {
		snprintf(err, errlen, "%u queues, the device has %u", s->nqueues, vd->st.nqueues);
		return -EINVAL;
	}
	vd->st = *s;
	virtio__restored(vd);
	return 0;
}
