/* virtio-blk's options: -s N,virtio-blk,[path=]PATH[,ro][,serial=ID] (blk.c). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "khyve/util.h"

#include "blk.h"


int blk__parse(const char *opts, struct blk_opts *o, char *err, size_t errlen)
{
	const char *p = opts;
	bool first = true, have_path = false;

	memset(o, 0, sizeof(*o));
	while (p && *p) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		const char *val = NULL;
		size_t vlen = 0;

		if (!n)
			return util__fail(-EINVAL, err, errlen, "virtio-blk: empty option in '%s'", opts);
		if (n == 2 && !strncmp(p, "ro", 2)) {
			o->ro = true;
		} else if (n > 7 && !strncmp(p, "serial=", 7)) {
			vlen = n - 7;
			if (vlen > BLK_ID_BYTES)
				return util__fail(-EINVAL, err, errlen, "virtio-blk: serial '%.*s' is longer than %u bytes",
						  (int)vlen, p + 7, BLK_ID_BYTES);
			for (size_t i = 0; i < vlen; i++)
				if (p[7 + i] < 0x20 || p[7 + i] > 0x7e)
					return util__fail(-EINVAL, err, errlen,
							  "virtio-blk: serial may hold printable ASCII only");
			memcpy(o->serial, p + 7, vlen);
			o->serial[vlen] = '\0';
		} else if ((n > 5 && !strncmp(p, "path=", 5)) || (first && !memchr(p, '=', n))) {
			val = p[4] == '=' && !strncmp(p, "path=", 5) ? p + 5 : p;
			vlen = n - (size_t)(val - p);
			if (have_path)
				return util__fail(-EINVAL, err, errlen, "virtio-blk: more than one disk image in '%s'", opts);
			if (vlen >= sizeof(o->path))
				return util__fail(-EINVAL, err, errlen, "virtio-blk: disk image path too long");
			memcpy(o->path, val, vlen);
			o->path[vlen] = '\0';
			have_path = true;
		} else {
			return util__fail(-EINVAL, err, errlen, "virtio-blk: unknown option '%.*s'", (int)n, p);
		}
		first = false;
		p = end ? end + 1 : NULL;
		if (end && !*p)
			return util__fail(-EINVAL, err, errlen, "virtio-blk: empty option in '%s'", opts);
	}
	if (!have_path)
		return util__fail(-EINVAL, err, errlen,
				  "virtio-blk needs a disk image: -s SLOT,virtio-blk,PATH[,ro][,serial=ID]");
	return 0;
}

int blk__check(const char *opts, char *err, size_t errlen)
{
	struct blk_opts *o = malloc(sizeof(*o));
	int ret;

	if (!o)
		return util__fail(-ENOMEM, err, errlen, "virtio-blk: out of memory");
	ret = blk__parse(opts, o, err, errlen);
	free(o);
	return ret;
}
