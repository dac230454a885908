/*
 * errf.c - format a user-facing error message. See errf.h.
 */
#include "clonefs/errf.h"

#include <stdarg.h>
#include <stdio.h>

int errf(char *err, size_t len, int neg_errno, const char *fmt, ...)
{
	va_list ap;

	if (err && len) {
		va_start(ap, fmt);
		vsnprintf(err, len, fmt, ap);
		va_end(ap);
	}
	return neg_errno;
}
