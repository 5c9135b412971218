#ifndef KHYVE_UTIL_H
#define KHYVE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ALIGN_UP(x, a) (((x) + ((a) - 1)) & ~((__typeof__(x))(a) - 1))
#define KiB (1ULL << 10)
#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

/*
 * Parse a size such as "512M", "4G", "65536K" or "64" (no suffix means MiB,
 * as in bhyve).  Returns 0 and stores bytes, or -EINVAL / -ERANGE.
 */
int util__parse_size(const char *s, uint64_t *out);

/* Format a one-line reason into err (if any) and return ret. */
int util__fail(int ret, char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Parse a whole unsigned decimal or 0x-prefixed number; -EINVAL otherwise. */
int util__parse_u64(const char *s, uint64_t *out);

/* Read a whole file into a malloc'd buffer.  Returns 0 or -errno. */
int util__read_file(const char *path, void **buf, size_t *len, size_t max);

/* write() all of buf, retrying on EINTR and short writes.  0 or -errno. */
int util__write_all(int fd, const void *buf, size_t len);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t util__now_ns(void);

#endif
