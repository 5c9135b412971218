/*
 * virtio-rnd (virtio entropy device, ID 4): one request queue; each chain's
 * device-writable buffers are filled from getrandom().  Requests are served
 * whole on the notifying vCPU, so there is never one in flight to save.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "khyve/log.h"
#include "khyve/snapfmt.h"
#include "khyve/virtio.h"
#include "khyve/vm.h"

#define RNG_STATE_VERSION	2	/* 2: the function's placement */
#define RNG_QUEUE_SIZE		256
#define RNG_REQ_MAX		(64u << 10)	/* bytes per request: bounds the vCPU's time here */

struct rng_state {
	struct pci_func_state pci;
	struct virtio_state virtio;
};

struct rng {
	struct virtio_dev vd;
	struct virtq_elem elem;	/* large: not on the vCPU's stack */
};

static uint32_t fill(const struct virtq_elem *e)
{
	uint32_t done = 0;

	for (unsigned int i = 0; i < e->nin && done < RNG_REQ_MAX; i++) {
		uint8_t *p = e->in[i].iov_base;
		size_t want = e->in[i].iov_len, got = 0;

		if (want > RNG_REQ_MAX - done)
			want = RNG_REQ_MAX - done;
		while (got < want) {
			ssize_t r = getrandom(p + got, want - got, 0);

			if (r < 0) {
				if (errno == EINTR)
					continue;
				pr_warn("virtio-rnd: getrandom: %s", strerror(errno));
				return done + (uint32_t)got;
			}
			got += (size_t)r;
		}
		done += (uint32_t)got;
	}
	return done;
}

static void rng__notify(struct virtio_dev *vd, unsigned int q)
{
	struct rng *r = (struct rng *)vd;
	uint16_t old = vd->st.q[q].used_idx;

	/* at most a queue's worth per notification: the driver cannot keep us here */
	for (unsigned int n = 0; n < vd->st.q[q].size; n++) {
		if (virtq__pop(vd, q, &r->elem) != 1)
			break;
		virtq__push(vd, q, r->elem.head, fill(&r->elem));
	}
	virtq__notify(vd, q, old);
}

static const struct virtio_type rng_type = {
	.device_id = 4,
	.class_code = 0xff0000,		/* unclassified */
	.features = 0,
	.nqueues = 1,
	.queue_max = RNG_QUEUE_SIZE,
	.queue_notify = rng__notify,
};

static int rng__check(const char *opts, char *err, size_t errlen)
{
	if (opts) {
		snprintf(err, errlen, "virtio-rnd takes no options, got '%s'", opts);
		return -EINVAL;
	}
	return 0;
}

static int rng__init(struct pci_dev *pd, const char *opts, char *err, size_t errlen)
{
	struct rng *r = calloc(1, sizeof(*r));
	int ret;

	(void)opts;
	if (!r)
		return -ENOMEM;
	ret = virtio__init(pd, &r->vd, &rng_type);
	if (ret) {
		snprintf(err, errlen, "PCI %s: %s", pd->name, strerror(-ret));
		free(r);
		pd->priv = NULL;
	}
	return ret;
}

static void rng__exit(struct pci_dev *pd)
{
	if (pd->priv)
		virtio__exit(pd->priv);
	free(pd->priv);
}

static void rng__save(void *priv, void *state)
{
	struct pci_dev *pd = priv;
	struct virtio_dev *vd = pd->priv;
	struct rng_state *s = state;

	pthread_mutex_lock(&pd->lock);
	pci__save(pd, &s->pci);
	s->virtio = vd->st;
	pthread_mutex_unlock(&pd->lock);
}

static void rng__encode(struct sbuf *b, const void *state)
{
	const struct rng_state *s = state;

	enc__map(b);
	pci__encode(b, &s->pci);
	virtio__encode(b, &s->virtio);
	enc__end(b);
}

/* Version 1 did not record where the function was (pci.h). */
static void virtio_rnd_v1_to_v2(struct rng_state *s)
{
	pci__func_unrecorded(&s->pci);
}

static void rng__decode(struct dec *d, const cbor_item_t *m, uint32_t version, void *state)
{
	struct rng_state *s = state;

	pci__decode(d, m, &s->pci, VIRTIO_PCI_VENDOR, VIRTIO_PCI_DEVICE_BASE + rng_type.device_id,
		    rng_type.nqueues + 1u, version >= 2);
	virtio__decode(d, m, &s->virtio, &rng_type, d->mem_size);
	if (version < 2)
		virtio_rnd_v1_to_v2(s);
}

static int rng__restore(void *priv, const void *state, char *err, size_t errlen)
{
	struct pci_dev *pd = priv;
	const struct rng_state *s = state;
	int ret;

	pthread_mutex_lock(&pd->lock);
	ret = pci__check_placement(pd, &s->pci, err, errlen);
	if (!ret)
		ret = virtio__restore(pd->priv, &s->virtio, err, errlen);
	if (!ret)
		pci__restore(pd, &s->pci);
	pthread_mutex_unlock(&pd->lock);
	return ret;
}

static const struct device_ops rng_ops = {
	.name = "virtio-rnd",
	.state_version = RNG_STATE_VERSION,
	.state_size = sizeof(struct rng_state),
	.save = rng__save,
	.encode = rng__encode,
	.decode = rng__decode,
	.restore = rng__restore,
};

static const struct pci_devtype rng_pci = {
	.ops = &rng_ops,
	.check = rng__check,
	.init = rng__init,
	.exit = rng__exit,
};
PCI_DEVTYPE_REGISTER(rng_pci, DEVICE_ORDER_VIRTIO_RNG);
