/*
 * control.h - status and messages of a running clone (spec 5.1, 5.2, 5.4).
 *
 * The daemon exposes these as extended attributes of MOUNTPOINT/image, so
 * they are readable without the clonefs tool (getfattr/setfattr):
 *   user.clonefs.status   the dm-clone status line
 *   user.clonefs.json     the same as JSON, plus bytes and rates
 *   user.clonefs.message  write-only: a message such as "hydration_threshold 8"
 */
#ifndef CLONEFS_CONTROL_H
#define CLONEFS_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clonefs/clone.h"

#define CONTROL_XATTR_STATUS "user.clonefs.status"
#define CONTROL_XATTR_JSON "user.clonefs.json"
#define CONTROL_XATTR_MESSAGE "user.clonefs.message"

/*
 * The keys of the JSON status, one flat object written by
 * control_format_json() and read by `clonefs wait` (and scripts). Counts,
 * sizes and the rate are JSON integers; *_done, *_enabled and copy_on_read
 * booleans; the modes "rw" or "ro" (metadata_mode also "fail"); features an
 * array of dm-clone feature words; last_error a string, "" for none.
 */
#define CONTROL_KEY_METADATA_BLOCK_SIZE "metadata_block_size" /* sectors */
#define CONTROL_KEY_METADATA_USED "metadata_used"             /* blocks */
#define CONTROL_KEY_METADATA_TOTAL "metadata_total"
#define CONTROL_KEY_REGION_SIZE "region_size"                 /* sectors */
#define CONTROL_KEY_HYDRATED_REGIONS "hydrated_regions"
#define CONTROL_KEY_TOTAL_REGIONS "total_regions"
#define CONTROL_KEY_HYDRATING_REGIONS "hydrating_regions"
#define CONTROL_KEY_FEATURES "features"
#define CONTROL_KEY_HYDRATION_THRESHOLD "hydration_threshold"
#define CONTROL_KEY_HYDRATION_BATCH_SIZE "hydration_batch_size"
#define CONTROL_KEY_MODE "mode"
#define CONTROL_KEY_METADATA_MODE "metadata_mode"
#define CONTROL_KEY_REGION_SIZE_BYTES "region_size_bytes"
#define CONTROL_KEY_BYTES_HYDRATED "bytes_hydrated"
#define CONTROL_KEY_BYTES_TOTAL "bytes_total"                 /* the image */
#define CONTROL_KEY_HYDRATION_DONE "hydration_done"
#define CONTROL_KEY_HYDRATION_ENABLED "hydration_enabled"
#define CONTROL_KEY_HYDRATION_RATE "hydration_rate"           /* bytes/s */
#define CONTROL_KEY_HYDRATION_RATE_LIMIT "hydration_rate_limit" /* 0: none */
#define CONTROL_KEY_COPY_ON_READ "copy_on_read"
#define CONTROL_KEY_BYTES_COPIED "bytes_copied"
#define CONTROL_KEY_COPY_ERRORS "copy_errors"
#define CONTROL_KEY_READ_ERRORS "read_errors"               /* reads SOURCE failed */
#define CONTROL_KEY_LOST_WRITES "lost_writes"
#define CONTROL_KEY_LAST_ERROR "last_error"
/* Reads as hints and prefetching (spec 3.9) */
#define CONTROL_KEY_READ_HINTS "read_hints"               /* boolean */
#define CONTROL_KEY_HINT_COPIES "hint_copies"             /* copies hints asked for */
#define CONTROL_KEY_HINT_REGIONS "hint_regions"           /* regions they copied */
#define CONTROL_KEY_PREFETCH_REGIONS "prefetch_regions"   /* in the profile; 0: none */
#define CONTROL_KEY_PREFETCH_HYDRATED "prefetch_hydrated" /* of those, hydrated */
#define CONTROL_KEY_PREFETCH_DONE "prefetch_done"         /* boolean */
/* The recorded access profile (binary, docs/profile.md): read-only, not listed */
#define CONTROL_XATTR_PROFILE "user.clonefs.profile"
/* Only when SOURCE is an NBD export: an object with these members. */
#define CONTROL_KEY_SOURCE "source"
#define CONTROL_KEY_SOURCE_STATE "state"      /* connected, retrying, stopped */
#define CONTROL_KEY_SOURCE_CONNECTIONS "connections"
#define CONTROL_KEY_SOURCE_MULTI_CONN "multi_conn"
#define CONTROL_KEY_SOURCE_READS "reads"
#define CONTROL_KEY_SOURCE_READ_BYTES "read_bytes"
#define CONTROL_KEY_SOURCE_READ_ERRORS "read_errors"
#define CONTROL_KEY_SOURCE_TIMEOUTS "timeouts"
#define CONTROL_KEY_SOURCE_CONNECTS "connects"
#define CONTROL_KEY_SOURCE_CONNECT_FAILURES "connect_failures"
#define CONTROL_KEY_SOURCE_ZERO_BYTES "zero_bytes"
#define CONTROL_KEY_SOURCE_LAST_ERROR "last_error"

enum control_verb {
	MSG_ENABLE_HYDRATION,
	MSG_DISABLE_HYDRATION,
	MSG_HYDRATION_THRESHOLD,
	MSG_HYDRATION_BATCH_SIZE,
	MSG_HYDRATION_RATE,
	MSG_COPY_ON_READ,
	MSG_READ_HINTS,
	MSG_PREFETCH,
};

struct control_msg {
	enum control_verb verb;
	uint64_t value;
	char path[OPTIONS_PATH_MAX]; /* MSG_PREFETCH: an absolute path */
};

/* Parse "verb [value]" (words separated by blanks). -EINVAL with @err. */
int control_parse(const char *text, struct control_msg *msg, char *err,
		  size_t errlen);
/* Parse and apply a message to a running clone. */
int control_message(struct clone *c, const char *text, char *err,
		    size_t errlen);

/* The status line (no newline) and JSON (one line, keys above). With @commit, pending metadata is
 * committed first so the counts are durable; without, they are those in
 * core. Return a g_malloc'd string. */
char *control_status_line(struct clone *c, bool commit);
char *control_status_json(struct clone *c, bool commit);
/* The recorded access profile (clone_profile), g_malloc'd, *@len bytes. */
void *control_profile(struct clone *c, size_t *len);
/* Format from a status snapshot (for tests). */
char *control_format_line(const struct clone_status *st);
char *control_format_json(const struct clone_status *st);

#endif
