#include <stdarg.h>
#include <stdio.h>

#include "khyve/log.h"

int log_level = LOG_INFO;

void log__msg(enum log_level lvl, const char *fmt, ...)
{
	static const char *const prefix[] = { "", "warning: ", "", "debug: " };
	char buf[1024];
	va_list ap;

	if ((int)lvl > log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* One fprintf per line so concurrent vCPU threads do not interleave. */
	fprintf(stderr, "khyve: %s%s\n", prefix[lvl], buf);
}
