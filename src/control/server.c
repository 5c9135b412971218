/*
 * The control socket's commands (docs/control-protocol.md is the
 * specification; this file follows it): a request line is parsed against
 * commands[] (argument names and types) and run, and its reply queued.
 * socket.c owns the socket, its clients and their buffers.  Everything
 * runs on the main thread, so nothing is locked.  A save is started here
 * and then driven by control__tick() from the loop while its writer
 * process writes guest memory: other clients are served meanwhile, and
 * the saving client's reply goes out when the save ends.
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
	int (*run)(struct control *ctl, struct client *c, const struct request *rq,
		   json_t **result, char *err, size_t errlen);
};

/* A command's run() returns this when its reply goes out later (a save). */
#define REPLY_LATER 1

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
	uint64_t now = util__now_ns();

	(void)c; (void)rq;
	if (!devs)
		return util__fail(-ENOMEM, err, errlen, "out of memory");
	for (struct device_instance *d = vm->devices; d; d = d->next) {
		if (json_array_append_new(devs, json_string(d->ops->name))) {
			json_decref(devs);
			return util__fail(-ENOMEM, err, errlen, "out of memory");
		}
	}
	json_t *save = json_null();

	if (ctl->save.job) {
		uint64_t done, total;

		snapshot__save_progress(ctl->save.job, &done, &total);
		save = json_pack("{s:s, s:s, s:I, s:I}", "cmd", ctl->save.suspend ? "suspend" : "checkpoint",
				 "file", ctl->save.file, "done", (json_int_t)done, "total", (json_int_t)total);
		if (!save) {
			json_decref(devs);
			return util__fail(-ENOMEM, err, errlen, "out of memory");
		}
	}
	*result = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}",
			    "name", vm->cfg->name,
			    "state", vm->user_paused ? "paused" : "running",
			    "vcpus", (json_int_t)vm->ncpus,
			    "memory", (json_int_t)vm->cfg->mem_size,
			    "uptime_ms", (json_int_t)(now > vm->t_run_ns ? (now - vm->t_run_ns) / 1000000 : 0),
			    "pid", (json_int_t)getpid(),
			    "output_dropped", (json_int_t)outq__dropped_total(),
			    "halt_check_pauses", (json_int_t)atomic_load(&vm->halt_check_pauses),
			    "devices", devs, "save", save);
	if (!*result)
		return util__fail(-ENOMEM, err, errlen, "out of memory");
	return 0;
}

static int cmd_pause(struct control *ctl, struct client *c, const struct request *rq,
		     json_t **result, char *err, size_t errlen)
{
	int ret;

	(void)c; (void)rq;
	if (ctl->save.job)
		return util__fail(-EBUSY, err, errlen, "a save is in progress (to %.200s)", ctl->save.file);
	ret = vm__pause(ctl->vm, err, errlen);
	if (ret == -EALREADY)
		return util__fail(-EALREADY, err, errlen, "already paused");
	if (ret)
		return ret;
	pr_debug("control: paused by pid %d", (int)c->pid);
	*result = json_pack("{s:s}", "state", "paused");
	return 0;
}

static int cmd_resume(struct control *ctl, struct client *c, const struct request *rq,
		      json_t **result, char *err, size_t errlen)
{
	(void)c; (void)rq;
	if (ctl->save.job)
		return util__fail(-EBUSY, err, errlen, "a save is in progress (to %.200s)", ctl->save.file);
	if (vm__resume(ctl->vm) == -EALREADY)
		return util__fail(-EALREADY, err, errlen, "not paused");
	pr_debug("control: resumed by pid %d", (int)c->pid);
	*result = json_pack("{s:s}", "state", "running");
	return 0;
}

/*
 * Progress is a courtesy: a message goes out only when the client has
 * taken all the previous output, so a slow reader just sees fewer of them.
 */
static void save_progress(struct control *ctl, bool final)
{
	struct client *c = ctl->save.c;
	uint64_t now = util__now_ns(), done, total;

	if (!c || c->dead ||
	    (!final && ctl->save.last_ns && now - ctl->save.last_ns < PROGRESS_INTERVAL_NS))
		return;
	client__flush(c);
	if (c->outlen)
		return;
	ctl->save.last_ns = now;
	snapshot__save_progress(ctl->save.job, &done, &total);
	client__send(c, json_pack("{s:O, s:{s:I, s:I}}", "id", ctl->save.id, "progress",
				  "done", (json_int_t)done, "total", (json_int_t)total));
}

static double ns_to_ms(uint64_t ns)
{
	return (double)(ns / 1000) / 1000.0;
}

static int cmd_save(struct control *ctl, struct client *c, const struct request *rq,
		    json_t **result, char *err, size_t errlen, bool suspend)
{
	const char *file = json_string_value(json_object_get(rq->args, "file"));
	struct snapshot_save_opts opts = {
		.dirfd = AT_FDCWD,
		.path = file,
		.stay_paused = suspend,
		.disks = json_is_true(json_object_get(rq->args, "disks")),
	};
	struct stat st;
	int ret;

	(void)result;
	if (ctl->save.job)
		return util__fail(-EBUSY, err, errlen, "a save is in progress (to %.200s): one at a time",
				  ctl->save.file);
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
	err[0] = '\0';
	ret = snapshot__save_start(ctl->vm, &opts, &ctl->save.job, err, errlen);
	if (ret) {
		if (!err[0])
			snprintf(err, errlen, "cannot save to %.200s: %s", file, strerror(-ret));
		pr_info("control: %s to %s failed: %s", suspend ? "suspend" : "checkpoint", file, err);
		return ret;
	}
	ctl->save.c = c;
	ctl->save.id = json_incref(rq->id ? rq->id : json_null());
	ctl->save.suspend = suspend;
	ctl->save.last_ns = 0;
	snprintf(ctl->save.file, sizeof(ctl->save.file), "%s", file);
	control__tick(ctl);	/* it may have ended already (no writer process) */
	return REPLY_LATER;
}

/* The save ended with ret (err): log it, answer its client, forget it. */
static void save_ended(struct control *ctl, int ret, const struct snapshot_save_result *res, char *err)
{
	const char *verb = ctl->save.suspend ? "suspend" : "checkpoint";
	struct client *c = ctl->save.c;
	json_t *result = NULL;

	if (ret) {
		if (!err[0])
			snprintf(err, ERR_MAX, "cannot save to %.200s: %s", ctl->save.file, strerror(-ret));
		pr_info("control: %s to %s failed: %s", verb, ctl->save.file, err);
	} else {
		save_progress(ctl, true);	/* 100%, before the reply */
		pr_info("control: %s saved to %s (%.3f ms paused, %.3f ms in all)", verb, ctl->save.file,
			ns_to_ms(res->pause_ns), ns_to_ms(res->total_ns));
		result = json_pack("{s:s, s:s, s:I, s:I, s:I, s:f, s:f, s:I}",
				   "file", ctl->save.file,
				   "uuid", res->uuid,
				   "mem_bytes", (json_int_t)res->mem_bytes,
				   "data_bytes", (json_int_t)res->data_bytes,
				   "state_bytes", (json_int_t)res->state_bytes,
				   "pause_ms", ns_to_ms(res->pause_ns),
				   "total_ms", ns_to_ms(res->total_ns),
				   "disks", (json_int_t)res->ndisks);
		if (!result)
			snprintf(err, ERR_MAX, "out of memory");
	}
	if (c && !c->dead) {
		if (result)
			client__send(c, json_pack("{s:O, s:b, s:o}", "id", ctl->save.id, "ok", 1,
						  "result", result));
		else
			client__error(c, ctl->save.id, err);
		result = NULL;
	}
	json_decref(result);
	if (!ret && ctl->save.suspend && atomic_load(&ctl->vm->exit_status) < 0) {
		/* the reply first: khyve stops polling once the exit is requested */
		pr_info("control: suspended by pid %d: exiting", c ? (int)c->pid : -1);
		exit__request(ctl->vm, VM_EXIT_SUSPEND);
	}
	snapshot__save_free(ctl->save.job);
	json_decref(ctl->save.id);
	ctl->save.job = NULL;
	ctl->save.c = NULL;
	ctl->save.id = NULL;
}

void control__tick(struct control *ctl)
{
	struct snapshot_save_result res;
	char err[ERR_MAX] = "";
	int ret;

	if (!ctl || !ctl->save.job)
		return;
	ret = snapshot__save_poll(ctl->save.job, false, &res, err, sizeof(err));
	if (ret == -EINPROGRESS) {
		save_progress(ctl, false);
		return;
	}
	save_ended(ctl, ret, &res, err);
}

void control__cancel_save(struct control *ctl)
{
	struct snapshot_save_result res;
	char err[ERR_MAX] = "";
	int ret;

	if (!ctl || !ctl->save.job)
		return;
	ret = snapshot__save_poll(ctl->save.job, true, &res, err, sizeof(err));
	save_ended(ctl, ret, &res, err);
}

int control__timeout(const struct control *ctl)
{
	/* the writer's end is seen by polling it (no descriptor to wait on) */
	return ctl && ctl->save.job ? 20 : -1;
}

bool control__saving(const struct control *ctl)
{
	return ctl && ctl->save.job;
}

static int cmd_checkpoint(struct control *ctl, struct client *c, const struct request *rq,
			  json_t **result, char *err, size_t errlen)
{
	return cmd_save(ctl, c, rq, result, err, errlen, false);
}

static int cmd_suspend(struct control *ctl, struct client *c, const struct request *rq,
		       json_t **result, char *err, size_t errlen)
{
	return cmd_save(ctl, c, rq, result, err, errlen, true);
}

static const struct arg_spec no_args[] = { { NULL, JSON_NULL, false } };
static const struct arg_spec save_args[] = {
	{ "file", JSON_STRING, true },
	{ "disks", JSON_TRUE, false },	/* a boolean */
	{ NULL, JSON_NULL, false },
};

static const struct command commands[] = {
	{ "checkpoint", save_args, true, cmd_checkpoint },
	{ "suspend", save_args, true, cmd_suspend },
	{ "pause", no_args, true, cmd_pause },
	{ "resume", no_args, true, cmd_resume },
	{ "status", no_args, false, cmd_status },
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
	if (ret == REPLY_LATER)
		goto out;
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
	} else {
		client__error(c, rq.id, err);
	}
out:
	if (rq.dirfd >= 0)
		close(rq.dirfd);
	json_decref(msg);
}
