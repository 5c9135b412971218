/*
 * Character backends (src/console/): where a console's bytes go and come
 * from, for virtio-console and COM1.  stdio (khyve's standard output and
 * input), file:PATH (output only), socket:PATH (a connected UNIX stream
 * socket, both ways) and null (output discarded, no input).  The
 * device model knows rings and buffers; this knows file descriptors, the
 * output queue and its writer thread, and nothing of virtio or snapshots.
 *
 * Output to a regular file is written at once, by the caller's thread.
 * Anything else (a socket, a pipe, a terminal) goes through a bounded
 * queue (outq.h) and a writer thread of its own, so a peer that stops
 * reading never holds the caller: a full queue drops and counts.
 */
#ifndef KHYVE_CHARDEV_H
#define KHYVE_CHARDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum chardev_kind { CHARDEV_STDIO, CHARDEV_FILE, CHARDEV_SOCKET, CHARDEV_NULL };

struct chardev {
	enum chardev_kind kind;
	int fd;			/* output; for a socket, input too; -1 for null */
	struct outq *outq;	/* output that is not a regular file, or NULL */
	bool broken;		/* a write failed: output is dropped from now on */
	char who[96];		/* for warnings */
};

/*
 * Parse "stdio", "file:PATH", "socket:PATH" or "null"; *path points into spec
 * (NULL for stdio).  Messages in err start with "who: " (the one for a
 * missing spec with "who needs a backend").  0 or -EINVAL.
 */
int chardev__parse(const char *who, const char *spec, enum chardev_kind *kind, const char **path, char *err,
		   size_t errlen);
/*
 * Open it: a file is created (mode 0644) and truncated unless keep, a
 * socket connected, null nothing.  Output that is not a regular file gets a queue of
 * qsize bytes whose writer thread is called qname (it must outlive the
 * chardev).  who starts the messages in err, label the warnings of later
 * failures.  0, or -errno with err.
 */
int chardev__open(struct chardev *cd, const char *who, const char *label, enum chardev_kind kind,
		  const char *path, bool keep, size_t qsize, const char *qname, char *err, size_t errlen);
/*
 * Where input comes from: the socket, or standard input for stdio (when
 * stdin_free: nobody else reads it); -1 for none.
 */
int chardev__input_fd(const struct chardev *cd, bool stdin_free);
/* Hand p over: queued (never waits), or written to the file.  False if it is broken now. */
bool chardev__write(struct chardev *cd, const void *p, size_t len);
/* A file backend cut (or extended) to len bytes, written from there on; no-op for others. */
void chardev__truncate(struct chardev *cd, uint64_t len);
/* Flush the queue (within OUTQ_FLUSH_MAX_MS) and close. */
void chardev__close(struct chardev *cd);

#endif
