/*
 * fuzz_options.c - libFuzzer target for the option and message parsers
 * (issue 8): options_apply() the way mount.c feeds it (a comma-separated
 * -o list), control_parse(), the size/uint/bool parsers, and blockio's
 * fault-rule parser. Besides crashes it checks what a parser accepted is in
 * range, so "accepted" always means "usable".
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "clonefs/blockio.h"
#include "clonefs/control.h"
#include "clonefs/options.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_options(const struct clone_options *o)
{
	if (!options_region_size_valid(o->region_size) ||
	    o->hydration_threshold < 1 || o->hydration_threshold > (1u << 20) ||
	    o->hydration_batch_size < 1 || o->hydration_batch_size > (1u << 20) ||
	    o->commit_period_ms < 10 || o->commit_period_ms > 3600000u)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), *copy, *save = NULL, *tok;
	/* the first byte picks the error buffer size, truncation included */
	size_t errlen = size ? data[0] % 5 * 64 : 256;
	char *err = malloc(errlen ? errlen : 1);
	struct clone_options o;
	struct control_msg msg;
	uint64_t v;
	bool b;

	memcpy(text, data, size);
	text[size] = '\0';

	options_defaults(&o);
	copy = strdup(text);
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		if (options_apply(&o, tok, err, errlen) < 0 && errlen && !memchr(err, 0, errlen))
			abort(); /* the message must be terminated */
	free(copy);
	check_options(&o);

	if (!control_parse(text, &msg, err, errlen)) {
		if (msg.verb > MSG_PREFETCH)
			abort();
		if (msg.verb == MSG_PREFETCH && msg.path[0] != '/')
			abort();
		if ((msg.verb == MSG_HYDRATION_THRESHOLD || msg.verb == MSG_HYDRATION_BATCH_SIZE) &&
		    (msg.value < 1 || msg.value > (1u << 20)))
			abort();
		if ((msg.verb == MSG_COPY_ON_READ || msg.verb == MSG_READ_HINTS) && msg.value > 1)
			abort();
	}
	if (!options_parse_size(text, &v) && text[0] == '0' && text[1] == '\0' && v)
		abort();
	if (!options_parse_uint(text, 5, 100, &v) && (v < 5 || v > 100))
		abort();
	(void)options_parse_bool(text, &b);
	(void)bio_fault_parse(text, err, errlen);

	free(err);
	free(text);
	return 0;
}
