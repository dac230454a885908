/*
 * options.h - the tunables of a clone, their defaults and their parsing.
 *
 * Shared by the mount helper (-o options), the control messages and the
 * tools, so a value means the same thing wherever it is given.
 */
#ifndef CLONEFS_OPTIONS_H
#define CLONEFS_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CLONE_DEFAULT_REGION_SIZE (64u * 1024)
#define CLONE_MIN_REGION_SIZE (4u * 1024)
#define CLONE_MAX_REGION_SIZE (1024u * 1024 * 1024)
/*
 * Background copies of 16 x 64 KiB = 1 MiB, up to 4 in flight (one per
 * worker). dm-clone's 1 and 1 copy a region at a time; scripts/bench
 * measures these at 0.75 x cp for a dense 1 GiB durable copy, and
 * 64/256 somewhat faster (a candidate for the next default).
 */
#define CLONE_DEFAULT_BATCH 16u
#define CLONE_DEFAULT_THRESHOLD 64u
#define CLONE_DEFAULT_COMMIT_MS 1000u
/* An NBD SOURCE: a read not served within this fails with EIO (spec 1.7). */
#define CLONE_DEFAULT_SOURCE_TIMEOUT_MS 30000u

/* The longest path an option takes (prefetch=). */
#define OPTIONS_PATH_MAX 4096

struct clone_options {
	uint32_t region_size;
	bool region_size_explicit; /* given, not the default: META's must match */
	uint32_t hydration_threshold;  /* regions in flight at most */
	uint32_t hydration_batch_size; /* contiguous regions per copy */
	uint64_t hydration_rate;       /* bytes/s, 0 = unlimited */
	uint32_t commit_period_ms;
	uint32_t source_timeout_ms;    /* NBD SOURCE reads and connects */
	bool no_hydration;
	bool copy_on_read;
	bool no_read_hints;  /* reads do not steer hydration (spec 3.9) */
	/* -o prefetch=FILE: a profile to hydrate first; "" for none */
	char prefetch[OPTIONS_PATH_MAX];
	bool no_discard_passdown;
	bool ro;
	bool nofollow;
	/* The image's owner and mode bits (spec 1.6); -1: the mounting user,
	 * and 0600 narrowed by SOURCE's read bits. */
	int64_t uid, gid;
	int32_t umask;
};

void options_defaults(struct clone_options *o);

/* "4096", "64k", "1M", "2G": bytes. -EINVAL on junk or overflow. */
int options_parse_size(const char *s, uint64_t *out);
/* A plain unsigned decimal within [min, max]. */
int options_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* "on"/"off"/"1"/"0"/"yes"/"no". */
int options_parse_bool(const char *s, bool *out);

/*
 * Why a value is refused: the same words for a mount option (options_apply)
 * and a message (control_parse), after "bad value 'V' for NAME: ".
 */
#define OPTIONS_REGION_SIZE_RULE "must be a power of two from 4k to 1G"
#define OPTIONS_COUNT_RULE "must be a number from 1 to 1048576"
#define OPTIONS_RATE_RULE "must be bytes per second (0 = unlimited)"
#define OPTIONS_BOOL_RULE "expected on or off"
#define OPTIONS_PATH_RULE "must be a file name (at most 4095 bytes)"

/* Apply "name" or "name=value" for a clone option. Returns 0 if applied,
 * 1 if @opt is not a clone option, -EINVAL (with @err) if the value is bad. */
int options_apply(struct clone_options *o, const char *opt, char *err,
		  size_t errlen);

/* A region size clonefs accepts: OPTIONS_REGION_SIZE_RULE says which. */
bool options_region_size_valid(uint64_t size);

#endif
