/*
 * Split virtqueues (virtio 1.2, section 2.7).  The rings live in guest
 * memory and the guest may change them at any time, so every index read
 * from them is bounded before use and every descriptor's buffer is checked
 * to lie inside guest RAM; a chain longer than the queue (a loop, in
 * particular) or an indirect table inside an indirect table breaks the
 * device: it is marked DEVICE_NEEDS_RESET, as the specification asks.
 */
#include <errno.h>
#include <string.h>

#include "khyve/virtio.h"
#include "khyve/vm.h"

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

static void *ring(struct virtio_dev *vd, uint64_t gpa, uint64_t len)
{
	return memmap__gpa_to_hva(&vd->pd->vm->mem, gpa, len);
}

static uint16_t load16(const void *p)
{
	return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE);
}

/* Add one descriptor's buffer to elem; -EINVAL when it is not guest RAM. */
static int add_buf(struct virtio_dev *vd, struct virtq_elem *e, const struct vring_desc *d)
{
	void *p = d->len ? ring(vd, d->addr, d->len) : NULL;

	if (d->len && !p)
		return -EINVAL;
	if (e->nin + e->nout >= VIRTIO_CHAIN_MAX)
		return -EINVAL;
	if (d->flags & VIRTQ_DESC_F_WRITE) {
		e->in[e->nin++] = (struct iovec){ .iov_base = p, .iov_len = d->len };
	} else {
		/* the spec puts readable buffers before writable ones */
		if (e->nin)
			return -EINVAL;
		e->out[e->nout++] = (struct iovec){ .iov_base = p, .iov_len = d->len };
	}
	return 0;
}

static int walk_indirect(struct virtio_dev *vd, struct virtq_elem *e, const struct vring_desc *ind)
{
	const struct vring_desc *t;
	unsigned int n = ind->len / 16, i = 0, steps = 0;

	if ((ind->len & 15) || !n || n > VIRTIO_CHAIN_MAX || (ind->flags & VIRTQ_DESC_F_NEXT))
		return -EINVAL;
	t = ring(vd, ind->addr, ind->len);
	if (!t)
		return -EINVAL;
	for (;;) {
		struct vring_desc d;

		memcpy(&d, &t[i], sizeof(d));
		if ((d.flags & VIRTQ_DESC_F_INDIRECT) || add_buf(vd, e, &d))
			return -EINVAL;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (d.next >= n || ++steps >= n)	/* out of the table, or a loop */
			return -EINVAL;
		i = d.next;
	}
}

int virtq__pop(struct virtio_dev *vd, unsigned int q, struct virtq_elem *e)
{
	struct virtio_queue_state *vq = &vd->st.q[q];
	unsigned int size = vq->size, steps = 0;
	const struct vring_desc *table = ring(vd, vq->desc, 16ULL * size);
	const uint8_t *avail = ring(vd, vq->driver, 6 + 2ULL * size);
	uint16_t idx, head, i;

	if (vd->st.status & VIRTIO_S_NEEDS_RESET)
		return 0;
	if (!table || !avail) {
		virtio__needs_reset(vd, "rings not in guest memory");
		return -EINVAL;
	}
	idx = load16(avail + 2);
	if (idx == vq->last_avail)
		return 0;
	if ((uint16_t)(idx - vq->last_avail) > size) {
		virtio__needs_reset(vd, "avail index ran more than a queue ahead");
		return -EINVAL;
	}
	memcpy(&head, avail + 4 + 2u * (vq->last_avail % size), 2);
	if (head >= size) {
		virtio__needs_reset(vd, "avail ring names a descriptor beyond the queue");
		return -EINVAL;
	}
	e->head = head;
	e->nin = e->nout = 0;
	for (i = head;;) {
		struct vring_desc d;
		int r;

		memcpy(&d, &table[i], sizeof(d));
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			r = virtio__has(vd, VIRTIO_F_INDIRECT_DESC) ? walk_indirect(vd, e, &d) : -EINVAL;
			if (r)
				goto broken;
			break;	/* an indirect descriptor ends the chain */
		}
		if (add_buf(vd, e, &d))
			goto broken;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			break;
		if (d.next >= size || ++steps >= size)
			goto broken;
		i = d.next;
	}
	vq->last_avail++;
	if (virtio__has(vd, VIRTIO_F_EVENT_IDX)) {
		uint8_t *used = ring(vd, vq->device, 6 + 8ULL * size);

		/* avail_event: notify us again once the driver passes this */
		if (used)
			__atomic_store_n((uint16_t *)(used + 4 + 8u * size), vq->last_avail, __ATOMIC_RELEASE);
		/*
		 * ...and that store visible before our next read of the avail
		 * index: the driver publishes an index, fences, then reads
		 * avail_event to decide whether to notify.  A load passing the
		 * store (x86 allows it) could see the old index while the
		 * driver sees the old avail_event: no notification, and a
		 * request left in the ring until the next one.
		 */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
	}
	return 1;
broken:
	virtio__needs_reset(vd, "bad descriptor chain (outside RAM, too long, a loop, or nested indirect)");
	return -EINVAL;
}

void virtq__push(struct virtio_dev *vd, unsigned int q, uint16_t head, uint32_t len)
{
	struct virtio_queue_state *vq = &vd->st.q[q];
	uint8_t *used = ring(vd, vq->device, 6 + 8ULL * vq->size);
	uint32_t ent[2] = { head, len };

	if (!used)
		return;
	memcpy(used + 4 + 8u * (vq->used_idx % vq->size), ent, sizeof(ent));
	vq->used_idx++;
	/* the entry must be visible before the index that publishes it */
	__atomic_store_n((uint16_t *)(used + 2), vq->used_idx, __ATOMIC_RELEASE);
}
