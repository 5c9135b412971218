/* Diagnostics: one line per message on stderr, prefixed "khyve: ". */
#ifndef KHYVE_LOG_H
#define KHYVE_LOG_H

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

extern int log_level;

void log__msg(enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define pr_err(...)   log__msg(LOG_ERROR, __VA_ARGS__)
#define pr_warn(...)  log__msg(LOG_WARN, __VA_ARGS__)
#define pr_info(...)  log__msg(LOG_INFO, __VA_ARGS__)
#define pr_debug(...) do { if (log_level >= LOG_DEBUG) log__msg(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
