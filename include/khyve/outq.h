/*
 * A bounded output queue: bytes for a backend that may stop reading (a
 * pipe nobody reads, a socket peer that never reads, a busy terminal),
 * written by a thread of its own so that the producer - a vCPU thread
 * holding COM1's lock, an I/O thread holding a device lock - never waits
 * for the peer.
 *
 * outq__write() copies what fits into a ring of CAP bytes and drops the
 * rest, counting it (per queue and in a process-wide total shown by the
 * control protocol's status as output_dropped).  It takes the queue's
 * mutex for a memcpy and, when the ring was empty, writes the writer's
 * eventfd: it never waits for the fd.  The writer thread ("khyve-NAME")
 * polls the fd for POLLOUT and writes at most PIPE_BUF bytes at a time
 * (a pipe then does not block after POLLOUT; a socket is written with
 * MSG_DONTWAIT), in order.  A terminal with less room than that (one
 * stopped with Ctrl-S) can hold the writer in a write, never the producer.  If a write fails (EPIPE, EIO...),
 * one warning is logged and everything queued then and later is dropped
 * and counted.
 *
 * The writer thread confines itself with the device I/O list
 * (seccomp__thread(SECCOMP_DEVICE)): it needs poll, write, sendto and
 * read (its eventfd), all on that list.
 *
 * outq__destroy() flushes what is queued for as long as the fd takes it:
 * it gives up once the fd took nothing for OUTQ_FLUSH_STALL_MS, or after
 * OUTQ_FLUSH_MAX_MS in all, dropping (and counting) the rest.  So khyve's
 * exit waits at most that long for a peer that does not read (a writer
 * stuck in a terminal write is not waited for past that bound + 1 s).
 */
#ifndef KHYVE_OUTQ_H
#define KHYVE_OUTQ_H

#include <stddef.h>
#include <stdint.h>

#define OUTQ_FLUSH_STALL_MS	1000
#define OUTQ_FLUSH_MAX_MS	5000

struct outq;

/*
 * A queue of cap bytes (> 0) writing to fd (not closed by the queue), with
 * its writer thread started.  NULL with errno set on failure.  name (at
 * most 9 characters are kept) names the thread and the warnings.
 */
struct outq *outq__create(int fd, size_t cap, const char *name);

/* Queue what fits of buf; the rest is dropped and counted.  Returns the bytes queued. */
size_t outq__write(struct outq *q, const void *buf, size_t len);

/* Bytes queued and not yet written. */
size_t outq__pending(struct outq *q);

/* Bytes this queue dropped so far. */
uint64_t outq__dropped(struct outq *q);

/* Bytes every queue of this process dropped so far. */
uint64_t outq__dropped_total(void);

/* Flush (bounded, see above), stop the writer and free q.  NULL is ignored. */
void outq__destroy(struct outq *q);

#endif
