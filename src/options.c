/*
 * options.c - parse and validate clone tunables. See options.h.
 */
#include "clonefs/options.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void options_defaults(struct clone_options *o)
{
	memset(o, 0, sizeof(*o));
	o->region_size = CLONE_DEFAULT_REGION_SIZE;
	o->hydration_threshold = CLONE_DEFAULT_THRESHOLD;
	o->hydration_batch_size = CLONE_DEFAULT_BATCH;
	o->commit_period_ms = CLONE_DEFAULT_COMMIT_MS;
	o->uid = o->gid = -1;
	o->umask = -1;
}

int options_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int options_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	}
	if (shift && (*end == 'i' || *end == 'I'))
		end++;
	if (shift && (*end == 'b' || *end == 'B'))
		end++;
	if (*end || (shift && v > (~0ULL >> shift)))
		return -EINVAL;
	*out = v << shift;
	return 0;
}

int options_parse_bool(const char *s, bool *out)
{
	if (!strcmp(s, "on") || !strcmp(s, "1") || !strcmp(s, "yes")) {
		*out = true;
		return 0;
	}
	if (!strcmp(s, "off") || !strcmp(s, "0") || !strcmp(s, "no")) {
		*out = false;
		return 0;
	}
	return -EINVAL;
}

bool options_region_size_valid(uint64_t size)
{
	return size >= CLONE_MIN_REGION_SIZE && size <= CLONE_MAX_REGION_SIZE &&
	       (size & (size - 1)) == 0;
}

static int bad(char *err, size_t errlen, const char *name, const char *val,
	       const char *why)
{
	snprintf(err, errlen, "bad value '%s' for %s: %s", val ? val : "",
		 name, why);
	return -EINVAL;
}

int options_apply(struct clone_options *o, const char *opt, char *err,
		  size_t errlen)
{
	const char *eq = strchr(opt, '=');
	size_t nlen = eq ? (size_t)(eq - opt) : strlen(opt);
	const char *val = eq ? eq + 1 : NULL;
	uint64_t v;
	char name[64];

	if (nlen >= sizeof(name))
		return 1;
	memcpy(name, opt, nlen);
	name[nlen] = '\0';

	struct flag { const char *name; bool *field; } flags[] = {
		{ "no_hydration", &o->no_hydration },
		{ "copy_on_read", &o->copy_on_read },
		{ "no_discard_passdown", &o->no_discard_passdown },
		{ "ro", &o->ro },
		{ "nofollow", &o->nofollow },
	};
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		if (strcmp(name, flags[i].name))
			continue;
		if (!val) {
			*flags[i].field = true;
			return 0;
		}
		if (options_parse_bool(val, flags[i].field))
			return bad(err, errlen, name, val, "expected on or off");
		return 0;
	}
	if (!strcmp(name, "rw") && !val) {
		o->ro = false;
		return 0;
	}
	if (!strcmp(name, "region_size")) {
		if (options_parse_size(val, &v) || !options_region_size_valid(v))
			return bad(err, errlen, name, val,
				   "must be a power of two from 4k to 1G");
		o->region_size = (uint32_t)v;
		o->region_size_explicit = true;
		return 0;
	}
	if (!strcmp(name, "hydration_threshold")) {
		if (options_parse_uint(val, 1, 1u << 20, &v))
			return bad(err, errlen, name, val,
				   "must be a number from 1 to 1048576");
		o->hydration_threshold = (uint32_t)v;
		return 0;
	}
	if (!strcmp(name, "hydration_batch_size")) {
		if (options_parse_uint(val, 1, 1u << 20, &v))
			return bad(err, errlen, name, val,
				   "must be a number from 1 to 1048576");
		o->hydration_batch_size = (uint32_t)v;
		return 0;
	}
	if (!strcmp(name, "hydration_rate")) {
		if (options_parse_size(val, &v))
			return bad(err, errlen, name, val,
				   "must be bytes per second (0 = unlimited)");
		o->hydration_rate = v;
		return 0;
	}
	if (!strcmp(name, "uid") || !strcmp(name, "gid")) {
		if (options_parse_uint(val, 0, UINT32_MAX - 1, &v))
			return bad(err, errlen, name, val, "must be a numeric id");
		*(name[0] == 'u' ? &o->uid : &o->gid) = (int64_t)v;
		return 0;
	}
	if (!strcmp(name, "umask")) {
		char *end;
		long m;

		errno = 0;
		m = val && *val >= '0' && *val <= '7' ? strtol(val, &end, 8) : -1;
		if (m < 0 || m > 0777 || errno || *end)
			return bad(err, errlen, name, val, "must be octal, 000 to 777");
		o->umask = (int32_t)m;
		return 0;
	}
	if (!strcmp(name, "commit_period")) {
		/* seconds, as dm-clone and the spec talk of "every 1 s"; "ms" suffix allowed */
		size_t l = val ? strlen(val) : 0;
		char tmp[32];
		if (l > 2 && l < sizeof(tmp) && !strcmp(val + l - 2, "ms")) {
			memcpy(tmp, val, l - 2);
			tmp[l - 2] = '\0';
			if (options_parse_uint(tmp, 10, 3600000, &v))
				return bad(err, errlen, name, val, "10ms to 3600s");
			o->commit_period_ms = (uint32_t)v;
			return 0;
		}
		if (options_parse_uint(val, 1, 3600, &v))
			return bad(err, errlen, name, val,
				   "must be seconds from 1 to 3600 (or NNNms)");
		o->commit_period_ms = (uint32_t)(v * 1000);
		return 0;
	}
	return 1;
}
