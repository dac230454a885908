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

enum control_verb {
	MSG_ENABLE_HYDRATION,
	MSG_DISABLE_HYDRATION,
	MSG_HYDRATION_THRESHOLD,
	MSG_HYDRATION_BATCH_SIZE,
	MSG_HYDRATION_RATE,
	MSG_COPY_ON_READ,
};

struct control_msg {
	enum control_verb verb;
	uint64_t value;
};

/* Parse "verb [value]" (words separated by blanks). -EINVAL with @err. */
int control_parse(const char *text, struct control_msg *msg, char *err,
		  size_t errlen);
/* Parse and apply a message to a running clone. */
int control_message(struct clone *c, const char *text, char *err,
		    size_t errlen);

/* The status line (no newline) and JSON. With @commit, pending metadata is
 * committed first so the counts are durable; without, they are those in
 * core. Return a g_malloc'd string. */
char *control_status_line(struct clone *c, bool commit);
char *control_status_json(struct clone *c, bool commit);
/* Format from a status snapshot (for tests). */
char *control_format_line(const struct clone_status *st);
char *control_format_json(const struct clone_status *st);

#endif
