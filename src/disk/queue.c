/* A disk queue: io_uring where the kernel gives one, else a thread pool. */
#include <string.h>

#include "khyve/log.h"

#include "backend.h"

int disk_queue__start(struct disk_queue **qp, bool uring, unsigned int depth, int efd, const char *name)
{
	if (uring) {
		int ret = uring__start(qp, depth, efd, name);

		if (!ret)
			return 0;
		pr_debug("%s: no io_uring (%s): a thread pool serves the disk", name, strerror(-ret));
	}
	return pool__start(qp, efd, name);
}

void disk_queue__stop(struct disk_queue *q)
{
	if (q)
		q->ops->stop(q);
}

void disk_queue__submit(struct disk_queue *q, struct disk_io *io)
{
	q->ops->submit(q, io);
}

void disk_queue__commit(struct disk_queue *q)
{
	q->ops->commit(q);
}

int disk_queue__reap(struct disk_queue *q, bool wait, const struct timespec *until,
		     disk_done_fn *done, void *opaque)
{
	return q->ops->reap(q, wait, until, done, opaque);
}
