/*
 * errf.h - the one way clonefs formats a user-facing error message.
 *
 * Functions that can fail in a way a user must understand take a buffer
 * (char *err, size_t errlen) and return a negative errno. errf() fills the
 * buffer and hands the errno back, so a failure is one statement:
 *
 *	return errf(err, errlen, -EINVAL, "bad value '%s' for %s", val, name);
 *
 * The errno is the real cause (-ENOENT, -EIO, -EROFS...), never a blanket
 * -EINVAL, so callers can act on it as well as print the message.
 */
#ifndef CLONEFS_ERRF_H
#define CLONEFS_ERRF_H

#include <stddef.h>

/*
 * Format @fmt into @err (at most @len bytes, always terminated; nothing
 * when @err is NULL or @len is 0) and return @neg_errno unchanged.
 */
int errf(char *err, size_t len, int neg_errno, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
