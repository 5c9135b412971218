/*
 * Inside src/control/: socket.c owns the socket and its clients (accept,
 * read, line splitting, output buffers); server.c the commands, reached
 * through client__line().  Both run on the main thread only; a save's
 * memory is written by a child process the loop polls (control__tick).
 */
#ifndef KHYVE_CONTROL_INTERNAL_H
#define KHYVE_CONTROL_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/un.h>

#include "khyve/control.h"
#include "khyve/snapshot.h"

#define CONTROL_MAX_CLIENTS	(CONTROL_MAX_POLLFDS - 1)
#define CONTROL_LINE_MAX	65536		/* bytes per request line, newline included */
#define CONTROL_OUT_MAX		(256 * 1024)	/* unread output a client may leave */
#define CONTROL_BACKLOG		32
#define CONTROL_ACCEPT_BURST	64		/* accepts per round, so others get served */
#define CONTROL_CMSG_FDS	4		/* room for fds; the kernel closes the rest */
#define PROGRESS_INTERVAL_NS	100000000ULL	/* at most ~10 progress messages a second */
#define CLOSE_FLUSH_MS		1000		/* control__close: time left for last replies */
#define ERR_MAX			512

struct client {
	int fd;
	uid_t uid;
	pid_t pid;

	char *in;		/* the request line being received */
	size_t inlen;
	bool discarding;	/* the line was too long: dropping it through its newline */
	int line_fd;		/* descriptor passed with the line being received, or -1 */
	unsigned int line_nfds;	/* how many were passed with it (extras are closed) */

	char *out;		/* replies not yet taken by the socket */
	size_t outoff, outlen, outcap;

	bool eof;		/* peer shut its side: close once the replies are out */
	bool dead;		/* close at the end of this round */
};

struct control {
	struct vm *vm;
	int lfd;
	int spare_fd;		/* released to accept-and-close when out of fds */
	uid_t owner;
	uid_t user;		/* -u USER's uid, admitted too; (uid_t)-1: none */
	char path[sizeof(((struct sockaddr_un *)NULL)->sun_path)];
	dev_t dev;		/* the socket inode we created, to unlink only ours */
	ino_t ino;

	struct client *clients[CONTROL_MAX_CLIENTS];
	unsigned int nclients;
	/* what each pollfd of the last control__pollfds() is: -1 the listener */
	int poll_slot[CONTROL_MAX_POLLFDS];
	unsigned int npoll;

	/* the save in flight (one at a time), and whom to answer when it ends */
	struct {
		struct snapshot_save *job;
		struct client *c;	/* NULL once that client is gone */
		json_t *id;
		bool suspend;
		char file[4096];
		uint64_t last_ns;	/* the last progress message */
	} save;

	char rbuf[CONTROL_LINE_MAX];	/* one recvmsg() */
};

/* socket.c: output */
/* Push queued output as far as the socket takes it. */
void client__flush(struct client *c);
/* Queue one message (taking the reference) and push it out if the socket takes it. */
void client__send(struct client *c, json_t *msg);
/* An error reply for request id; err (ERR_MAX bytes) is made one line. */
void client__error(struct client *c, json_t *id, char *err);

/* server.c: one complete request line (without its newline) */
void client__line(struct control *ctl, struct client *c, const char *line, size_t len);

#endif
