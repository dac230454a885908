/*
 * options.c - parse and validate clone tunables. See options.h.
 */
#include "clonefs/options.h"
#include "clonefs/errf.h"

#include <errno.h>
#include <glib.h>
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
	o->source_timeout_ms = CLONE_DEFAULT_SOURCE_TIMEOUT_MS;
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

/* "name" sets a flag, "name=on|off" says which. 1 if @name is no flag;
 * else 0, with *@why set when @val is bad. */
static int apply_flag(struct clone_options *o, const char *name,
		      const char *val, const char **why)
{
	struct flag { const char *name; bool *field; } flags[] = {
		{ "no_hydration", &o->no_hydration },
		{ "copy_on_read", &o->copy_on_read },
		{ "no_read_hints", &o->no_read_hints },
		{ "no_discard_passdown", &o->no_discard_passdown },
		{ "ro", &o->ro },
		{ "nofollow", &o->nofollow },
	};

	if (!strcmp(name, "rw") && !val) {
		o->ro = false;
		return 0;
	}
	for (size_t i = 0; i < G_N_ELEMENTS(flags); i++) {
		if (strcmp(name, flags[i].name))
			continue;
		if (!val)
			*flags[i].field = true;
		else if (options_parse_bool(val, flags[i].field))
			*why = OPTIONS_BOOL_RULE;
		return 0;
	}
	return 1;
}

/* commit_period and source_timeout: seconds, as dm-clone and the spec
 * talk of "every 1 s"; an "ms" suffix gives milliseconds. */
static const char *parse_commit_period(const char *val, uint32_t *ms)
{
	size_t l = val ? strlen(val) : 0;
	char tmp[32];
	uint64_t v;

	if (l > 2 && l < sizeof(tmp) && !strcmp(val + l - 2, "ms")) {
		memcpy(tmp, val, l - 2);
		tmp[l - 2] = '\0';
		if (options_parse_uint(tmp, 10, 3600000, &v))
			return "10ms to 3600s";
		*ms = (uint32_t)v;
		return NULL;
	}
	if (options_parse_uint(val, 1, 3600, &v))
		return "must be seconds from 1 to 3600 (or NNNms)";
	*ms = (uint32_t)(v * 1000);
	return NULL;
}

static const char *parse_umask(const char *val, int32_t *out)
{
	char *end;
	long m;

	errno = 0;
	m = val && *val >= '0' && *val <= '7' ? strtol(val, &end, 8) : -1;
	if (m < 0 || m > 0777 || errno || *end)
		return "must be octal, 000 to 777";
	*out = (int32_t)m;
	return NULL;
}

/* The tunables with a value. 1 if @name is none of them; else 0, with
 * *@why set when @val is bad (and @o unchanged). */
static int apply_value(struct clone_options *o, const char *name,
		       const char *val, const char **why)
{
	uint64_t v;

	if (!strcmp(name, "region_size")) {
		if (options_parse_size(val, &v) || !options_region_size_valid(v))
			*why = OPTIONS_REGION_SIZE_RULE;
		else {
			o->region_size = (uint32_t)v;
			o->region_size_explicit = true;
		}
	} else if (!strcmp(name, "hydration_threshold") ||
		   !strcmp(name, "hydration_batch_size")) {
		if (options_parse_uint(val, 1, 1u << 20, &v))
			*why = OPTIONS_COUNT_RULE;
		else
			*(!strcmp(name, "hydration_threshold") ?
			  &o->hydration_threshold : &o->hydration_batch_size) =
				(uint32_t)v;
	} else if (!strcmp(name, "hydration_rate")) {
		if (options_parse_size(val, &v))
			*why = OPTIONS_RATE_RULE;
		else
			o->hydration_rate = v;
	} else if (!strcmp(name, "uid") || !strcmp(name, "gid")) {
		if (options_parse_uint(val, 0, UINT32_MAX - 1, &v))
			*why = "must be a numeric id";
		else
			*(name[0] == 'u' ? &o->uid : &o->gid) = (int64_t)v;
	} else if (!strcmp(name, "umask")) {
		*why = parse_umask(val, &o->umask);
	} else if (!strcmp(name, "prefetch")) {
		if (!val || !*val || strlen(val) >= sizeof(o->prefetch))
			*why = OPTIONS_PATH_RULE;
		else
			g_strlcpy(o->prefetch, val, sizeof(o->prefetch));
	} else if (!strcmp(name, "commit_period")) {
		*why = parse_commit_period(val, &o->commit_period_ms);
	} else if (!strcmp(name, "source_timeout")) {
		*why = parse_commit_period(val, &o->source_timeout_ms);
	} else {
		return 1;
	}
	return 0;
}

int options_apply(struct clone_options *o, const char *opt, char *err,
		  size_t errlen)
{
	const char *eq = strchr(opt, '=');
	size_t nlen = eq ? (size_t)(eq - opt) : strlen(opt);
	const char *val = eq ? eq + 1 : NULL, *why = NULL;
	char name[64];
	int ret;

	if (nlen >= sizeof(name))
		return 1;
	memcpy(name, opt, nlen);
	name[nlen] = '\0';
	ret = apply_flag(o, name, val, &why);
	if (ret == 1)
		ret = apply_value(o, name, val, &why);
	if (why)
		return errf(err, errlen, -EINVAL, "bad value '%s' for %s: %s",
			    val ? val : "", name, why);
	return ret;
}
