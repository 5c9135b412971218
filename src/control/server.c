/*
 * The control socket's commands (docs/control-protocol.md is the
 * specification; this file follows it): a request line is parsed against
 * commands[] (argument names and types) and run, and its reply queued.
 * socket.c owns the socket, its clients and their buffers.  Everything
 * runs on the main thread, so nothing is locked; a save runs here too,
 * and other clients wait for it.
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "khyve/control.h"
#include "khyve/device.h"
#include "khyve/log.h"
#include "khyve/outq.h"
#include "khyve/snapshot.h"
#include "khyve/util.h"
#include "khyve/vm.h"

#include "internal.h"

/* A parsed, validated request. */
struct request {
	json_t *id;		/* borrowed; json null when the request had none */
	json_t *args;		/* borrowed; NULL when the request had none */
	int dirfd;		/* passed with the request (SCM_RIGHTS), or -1 */
};

struct arg_spec {
	const char *name;
	json_type type;
	bool required;
};

struct command {
	const char *name;
	const struct arg_spec *args;	/* ends with a NULL name */
	bool needs_running_vm;		/* refused once the VM is stopping */
	bool exits;			/* on success, khyve exits after the reply */
	int (*run)(struct control *ctl, struct client *c, const struct request *rq,
		   json_t **result, char *err, size_t errlen);
};

/* ---- commands -------------------------------------------------------- */

static bool vm_stopping(struct vm *vm)
{
	return atomic_load(&vm->exit_status) >= 0;
}

static int cmd_status(struct control *ctl, struct client *c, const struct request *rq,
		      json_t **result, char *err, size_t errlen)
{
	struct vm *vm = ctl->vm;
	json_t *devs = json_array();
	uint64_t now = vm__now_ns();

	(void)c; (void)rq;
	if (!devs)
		return util__fail(-ENOMEM, err, errlen, "out of memory");
	for (struct device_instance *d = vm->devices; d; d = d->next) {
		if (json_array_append_new(devs, json_string(d->ops->name))) {
			json_decref(devs);
			return util__fail(-ENOMEM, err, errlen, "out of memory");
		}
	}
	*result = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:o}",
			    "name", vm->cfg->name,
			    "state", vm->user_paused ? "paused" : "running",
			    "vcpus", (json_int_t)vm->ncpus,
			    "memory", (json_int_t)vm->cfg->mem_size,
			    "uptime_ms", (json_int_t)(now > vm->t_run_ns ? (now - vm->t_run_ns) / 1000000 : 0),
			    "pid", (json_int_t)getpid(),
			    "output_dropped", (json_int_t)outq__dropped_total(),
			    "devices", devs);
	if (!*result)
		return util__fail(-ENOMEM, err, errlen, "out of memory");
	return 0;
}

static int cmd_pause(struct control *ctl, struct client *c, const struct request *rq,
		     json_t **result, char *err, size_t errlen)
{
	(void)c; (void)rq;
	if (vm__pause(ctl->vm) == -EALREADY)
		return util__fail(-EALREADY, err, errlen, "already paused");
	pr_debug("control: paused by pid %d", (int)c->pid);
	*result = json_pack("{s:s}", "state", "paused");
	return 0;
}

static int cmd_resume(struct control *ctl, struct client *c, const struct request *rq,
		      json_t **result, char *err, size_t errlen)
{
	(void)c; (void)rq;
	if (vm__resume(ctl->vm) == -EALREADY)
		return util__fail(-EALREADY, err, errlen, "not paused");
	pr_debug("control: resumed by pid %d", (int)c->pid);
	*result = json_pack("{s:s}", "state", "running");
	return 0;
}

struct save_progress {
	struct client *c;
	json_t *id;
	uint64_t last_ns;
};

/*
 * snapshot__save() calls this on the main thread while it writes.  Progress
 * is a courtesy: a message goes out only when the client has taken all the
 * previous output, so a slow reader just sees fewer of them.
 */
static void save_progress(void *arg, uint64_t done, uint64_t total)
{
	struct save_progress *p = arg;
	uint64_t now = vm__now_ns();

	if (done < total && p->last_ns && now - p->last_ns < PROGRESS_INTERVAL_NS)
		return;
	if (p->c->dead)
		return;
	client__flush(p->c);
	if (p->c->outlen)
		return;
	p->last_ns = now;
	client__send(p->c, json_pack("{s:O, s:{s:I, s:I}}", "id", p->id, "progress",
				     "done", (json_int_t)done, "total", (json_int_t)total));
}

static double ns_to_ms(uint64_t ns)
{
	return (double)(ns / 1000) / 1000.0;
}

static int cmd_save(struct control *ctl, struct client *c, const struct request *rq,
		    json_t **result, char *err, size_t errlen, const char *verb)
{
	const char *file = json_string_value(json_object_get(rq->args, "file"));
	struct save_progress prog = { .c = c, .id = rq->id };
	struct snapshot_save_opts opts = {
		.dirfd = AT_FDCWD,
		.path = file,
		.progress = save_progress,
		.progress_arg = &prog,
		/* a suspended VM stops anyway: no writer process, whole host for the write */
		.stop_copy = !strcmp(verb, "suspend"),
		.disks = json_is_true(json_object_get(rq->args, "disks")),
	};
	struct snapshot_save_result res;
	struct stat st;
	int ret;

	if (!file[0])
		return util__fail(-EINVAL, err, errlen, "argument \"file\" is empty");
	if (strlen(file) >= PATH_MAX)
		return util__fail(-ENAMETOOLONG, err, errlen, "argument \"file\" is longer than %d bytes",
			    PATH_MAX - 1);
	if (file[0] != '/') {
		/* khyve's own working directory means nothing to the client */
		if (rq->dirfd < 0)
			return util__fail(-EINVAL, err, errlen,
				    "relative path \"%.200s\" needs a directory descriptor passed with "
				    "the request (SCM_RIGHTS); pass one or give an absolute path", file);
		if (fstat(rq->dirfd, &st) < 0 || !S_ISDIR(st.st_mode))
			return util__fail(-ENOTDIR, err, errlen,
				    "the descriptor passed with the request is not a directory");
		opts.dirfd = rq->dirfd;
	}
	memset(&res, 0, sizeof(res));
	err[0] = '\0';
	ret = snapshot__save(ctl->vm, &opts, &res, err, errlen);
	if (ret) {
		if (!err[0])
			snprintf(err, errlen, "cannot save to %.200s: %s", file, strerror(-ret));
		pr_info("control: %s to %s failed: %s", verb, file, err);
		return ret;
	}
	pr_info("control: %s saved to %s (%.3f ms paused, %.3f ms in all)", verb, file,
		ns_to_ms(res.pause_ns), ns_to_ms(res.total_ns));
	*result = json_pack("{s:s, s:s, s:I, s:I, s:I, s:f, s:f, s:I}",
			    "file", file,
			    "uuid", res.uuid,
			    "mem_bytes", (json_int_t)res.mem_bytes,
			    "data_bytes", (json_int_t)res.data_bytes,
			    "state_bytes", (json_int_t)res.state_bytes,
			    "pause_ms", ns_to_ms(res.pause_ns),
			    "total_ms", ns_to_ms(res.total_ns),
			    "disks", (json_int_t)res.ndisks);
	return 0;
}

static int cmd_checkpoint(struct control *ctl, struct client *c, const struct request *rq,
			  json_t **result, char *err, size_t errlen)
{
	return cmd_save(ctl, c, rq, result, err, errlen, "checkpoint");
}

static int cmd_suspend(struct control *ctl, struct client *c, const struct request *rq,
		       json_t **result, char *err, size_t errlen)
{
	return cmd_save(ctl, c, rq, result, err, errlen, "suspend");
}

static const struct arg_spec no_args[] = { { NULL, JSON_NULL, false } };
static const struct arg_spec save_args[] = {
	{ "file", JSON_STRING, true },
	{ "disks", JSON_TRUE, false },	/* a boolean */
	{ NULL, JSON_NULL, false },
};

static const struct command commands[] = {
	{ "checkpoint", save_args, true, false, cmd_checkpoint },
	{ "suspend", save_args, true, true, cmd_suspend },
	{ "pause", no_args, true, false, cmd_pause },
	{ "resume", no_args, true, false, cmd_resume },
	{ "status", no_args, false, false, cmd_status },
};

static const char *type_name(json_type t)
{
	switch (t) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a number";
	case JSON_TRUE: case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "a value";
}

/* Check the request's shape; sets *cmd and rq->args, or err. */
static int request__parse(json_t *msg, struct request *rq, const struct command **cmd,
			  char *err, size_t errlen)
{
	const struct arg_spec *a;
	const char *key, *name;
	json_t *v;

	json_object_foreach(msg, key, v) {
		if (strcmp(key, "id") && strcmp(key, "cmd") && strcmp(key, "args"))
			return util__fail(-EINVAL, err, errlen, "unknown member \"%.64s\" in the request "
				    "(expected \"id\", \"cmd\" and \"args\")", key);
	}
	v = json_object_get(msg, "cmd");
	if (!v)
		return util__fail(-EINVAL, err, errlen, "missing \"cmd\"");
	if (!json_is_string(v))
		return util__fail(-EINVAL, err, errlen, "\"cmd\" must be a string, not %s",
			    type_name(json_typeof(v)));
	name = json_string_value(v);
	*cmd = NULL;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(name, commands[i].name))
			*cmd = &commands[i];
	if (!*cmd)
		return util__fail(-EINVAL, err, errlen, "unknown command \"%.64s\" (expected checkpoint, "
			    "suspend, pause, resume or status)", name);

	rq->args = json_object_get(msg, "args");
	if (rq->args && !json_is_object(rq->args))
		return util__fail(-EINVAL, err, errlen, "\"args\" must be an object, not %s",
			    type_name(json_typeof(rq->args)));
	json_object_foreach(rq->args, key, v) {
		for (a = (*cmd)->args; a->name; a++)
			if (!strcmp(a->name, key))
				break;
		if (!a->name)
			return util__fail(-EINVAL, err, errlen, "unknown argument \"%.64s\" for %s%s", key,
				    name, (*cmd)->args[0].name ? "" : " (it takes none)");
		/* JSON_TRUE in a spec stands for either boolean */
		if (json_typeof(v) != a->type && !(a->type == JSON_TRUE && json_is_boolean(v)))
			return util__fail(-EINVAL, err, errlen, "argument \"%s\" of %s must be %s, not %s",
				    a->name, name, type_name(a->type), type_name(json_typeof(v)));
	}
	for (a = (*cmd)->args; a->name; a++)
		if (a->required && !json_object_get(rq->args, a->name))
			return util__fail(-EINVAL, err, errlen, "%s needs the argument \"%s\"", name, a->name);
	return 0;
}

/* One complete request line (without its newline). */
void client__line(struct control *ctl, struct client *c, const char *line, size_t len)
{
	const struct command *cmd = NULL;
	struct request rq = { .dirfd = c->line_fd };
	unsigned int nfds = c->line_nfds;
	json_t *msg = NULL, *result = NULL;
	json_error_t jerr;
	char err[ERR_MAX] = "";
	size_t i;
	int ret;

	c->line_fd = -1;
	c->line_nfds = 0;
	for (i = 0; i < len; i++)
		if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
			break;
	if (i == len)
		goto out;	/* blank lines are ignored (handy with socat) */

	msg = json_loadb(line, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
	if (!msg) {
		snprintf(err, sizeof(err), "invalid JSON at column %d: %s", jerr.column, jerr.text);
		goto reply;
	}
	if (!json_is_object(msg)) {
		snprintf(err, sizeof(err), "a request must be a JSON object, not %s",
			 type_name(json_typeof(msg)));
		goto reply;
	}
	rq.id = json_object_get(msg, "id");
	if (nfds > 1) {
		snprintf(err, sizeof(err), "at most one file descriptor per request (got %u)", nfds);
		goto reply;
	}
	if (request__parse(msg, &rq, &cmd, err, sizeof(err)))
		goto reply;
	if (cmd->needs_running_vm && vm_stopping(ctl->vm)) {
		snprintf(err, sizeof(err), "the VM is stopping");
		goto reply;
	}
	ret = cmd->run(ctl, c, &rq, &result, err, sizeof(err));
	if (!ret && !result)
		snprintf(err, sizeof(err), "out of memory");
reply:
	if (rq.dirfd >= 0) {
		close(rq.dirfd);
		rq.dirfd = -1;
	}
	if (result) {
		client__send(c, json_pack("{s:O, s:b, s:o}", "id", rq.id ? rq.id : json_null(),
					  "ok", 1, "result", result));
		if (cmd->exits) {
			/* the reply first: khyve stops polling once the exit is requested */
			pr_info("control: suspended by pid %d: exiting", (int)c->pid);
			vm__request_exit(ctl->vm, VM_EXIT_SUSPEND);
		}
	} else {
		client__error(c, rq.id, err);
	}
out:
	if (rq.dirfd >= 0)
		close(rq.dirfd);
	json_decref(msg);
}
