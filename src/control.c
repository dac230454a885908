/*
 * control.c - the dm-clone status line, its JSON twin, and messages.
 */
#include "clonefs/control.h"
#include "clonefs/errf.h"

#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <string.h>

static const struct {
	const char *word;
	enum control_verb verb;
	bool has_value;
} verbs[] = {
	{ "enable_hydration", MSG_ENABLE_HYDRATION, false },
	{ "disable_hydration", MSG_DISABLE_HYDRATION, false },
	{ "hydration_threshold", MSG_HYDRATION_THRESHOLD, true },
	{ "hydration_batch_size", MSG_HYDRATION_BATCH_SIZE, true },
	{ "hydration_rate", MSG_HYDRATION_RATE, true },
	{ "copy_on_read", MSG_COPY_ON_READ, true },
	{ "read_hints", MSG_READ_HINTS, true },
	{ "prefetch", MSG_PREFETCH, true },
};

/* The value of @verb from @word into @msg; NULL, or why it is refused. */
static const char *parse_value(enum control_verb verb, const char *word,
			       struct control_msg *msg)
{
	bool on;

	msg->value = 0;
	switch (verb) {
	case MSG_HYDRATION_THRESHOLD:
	case MSG_HYDRATION_BATCH_SIZE:
		return options_parse_uint(word, 1, 1u << 20, &msg->value) ?
		       OPTIONS_COUNT_RULE : NULL;
	case MSG_HYDRATION_RATE:
		return options_parse_size(word, &msg->value) ?
		       OPTIONS_RATE_RULE : NULL;
	case MSG_PREFETCH:
		/* the daemon's working directory is not the sender's */
		if (word[0] != '/' || strlen(word) >= sizeof(msg->path))
			return "must be an absolute path";
		g_strlcpy(msg->path, word, sizeof(msg->path));
		return NULL;
	case MSG_COPY_ON_READ:
	case MSG_READ_HINTS:
		if (options_parse_bool(word, &on))
			return OPTIONS_BOOL_RULE;
		msg->value = on;
		return NULL;
	default:
		return NULL;
	}
}

int control_parse(const char *text, struct control_msg *msg, char *err,
		  size_t errlen)
{
	char **w = g_strsplit_set(text, " \t\n", -1);
	char *words[3] = { NULL, NULL, NULL };
	const char *why;
	int n = 0, ret;

	for (char **p = w; *p && n < 3; p++)
		if (**p)
			words[n++] = *p;
	if (n == 0) {
		ret = errf(err, errlen, -EINVAL, "empty message");
		goto out;
	}
	for (size_t i = 0; i < G_N_ELEMENTS(verbs); i++) {
		if (strcmp(words[0], verbs[i].word))
			continue;
		if (n != (verbs[i].has_value ? 2 : 1)) {
			ret = errf(err, errlen, -EINVAL, "%s takes %s", words[0],
				   verbs[i].has_value ? "one value" : "no value");
			goto out;
		}
		msg->verb = verbs[i].verb;
		why = parse_value(msg->verb, words[1], msg);
		ret = why ? errf(err, errlen, -EINVAL, "bad value '%s' for %s: %s",
				 words[1], words[0], why) : 0;
		goto out;
	}
	ret = errf(err, errlen, -EINVAL, "unknown message '%s'", words[0]);
out:
	g_strfreev(w);
	return ret;
}

int control_message(struct clone *c, const char *text, char *err,
		    size_t errlen)
{
	struct control_msg m;
	int ret = control_parse(text, &m, err, errlen);

	if (ret)
		return ret;
	if (clone_readonly(c))
		return errf(err, errlen, -EROFS, "the clone is mounted read-only");
	switch (m.verb) {
	case MSG_ENABLE_HYDRATION: clone_tune(c, CLONE_HYDRATION, 1); break;
	case MSG_DISABLE_HYDRATION: clone_tune(c, CLONE_HYDRATION, 0); break;
	case MSG_HYDRATION_THRESHOLD: clone_tune(c, CLONE_HYDRATION_THRESHOLD, m.value); break;
	case MSG_HYDRATION_BATCH_SIZE: clone_tune(c, CLONE_HYDRATION_BATCH_SIZE, m.value); break;
	case MSG_HYDRATION_RATE: clone_tune(c, CLONE_HYDRATION_RATE, m.value); break;
	case MSG_COPY_ON_READ: clone_tune(c, CLONE_COPY_ON_READ, m.value); break;
	case MSG_READ_HINTS: clone_tune(c, CLONE_READ_HINTS, m.value); break;
	case MSG_PREFETCH:
		/* any failure is the message's: EINVAL (ENOENT would read as
		 * "not a clonefs mount" to the tool) */
		if (clone_prefetch(c, m.path, err, errlen))
			return -EINVAL;
		break;
	}
	g_message("message: %s", text);
	return 0;
}

/* Features in force, dm-clone's names. */
static int features(const struct clone_status *st, const char *f[2])
{
	int n = 0;

	if (!st->hy.enabled)
		f[n++] = "no_hydration";
	if (!st->discard_passdown)
		f[n++] = "no_discard_passdown";
	return n;
}

static const char *mode_word(const struct clone_status *st)
{
	return st->ro || st->mode != MD_MODE_RW ? "ro" : "rw";
}

char *control_format_line(const struct clone_status *st)
{
	GString *s;
	const char *f[2];
	int nf = features(st, f);

	if (st->mode == MD_MODE_FAIL)
		return g_strdup("Fail");
	s = g_string_new(NULL);
	g_string_append_printf(s, "%u %" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT
			       " %u %" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT
			       " %" G_GUINT64_FORMAT " %d",
			       st->meta_block_size / 512, st->meta_used, st->meta_total,
			       st->region_size / 512, st->nr_hydrated,
			       st->nr_regions, st->hy.in_flight, nf);
	for (int i = 0; i < nf; i++)
		g_string_append_printf(s, " %s", f[i]);
	g_string_append_printf(s, " 4 hydration_threshold %u hydration_batch_size %u %s",
			       st->hy.threshold, st->hy.batch_size, mode_word(st));
	return g_string_free(s, FALSE);
}

/*
 * The JSON status is written here by a few lines rather than through
 * json-glib: linked into the daemon, json-glib brings GIO and 1.4 MiB of
 * resident pages, which the memory target (bench/README.md) has no room
 * for. The tool and the tests read it with json-glib. Keys are control.h's;
 * the output is one compact object, as json-glib writes it.
 */
static void add_key(GString *o, const char *key)
{
	if (o->len > 1)
		g_string_append_c(o, ',');
	g_string_append_printf(o, "\"%s\":", key);
}

static void add_int(GString *o, const char *key, uint64_t v)
{
	add_key(o, key);
	g_string_append_printf(o, "%" G_GUINT64_FORMAT, v);
}

static void add_bool(GString *o, const char *key, bool v)
{
	add_key(o, key);
	g_string_append(o, v ? "true" : "false");
}

/* A JSON string: valid UTF-8 (the daemon's strerror() follows its locale),
 * quotes, backslashes and control characters escaped. */
static void put_string(GString *o, const char *v)
{
	char *valid = g_utf8_make_valid(v, -1);

	g_string_append_c(o, '"');
	for (const unsigned char *p = (const unsigned char *)valid; *p; p++) {
		if (*p == '"' || *p == '\\')
			g_string_append_printf(o, "\\%c", *p);
		else if (*p < 0x20)
			g_string_append_printf(o, "\\u%04x", *p);
		else
			g_string_append_c(o, (char)*p);
	}
	g_string_append_c(o, '"');
	g_free(valid);
}

static void add_string(GString *o, const char *key, const char *v)
{
	add_key(o, key);
	put_string(o, v);
}

/* The members the status line has too, in its order. */
static void add_line_fields(GString *o, const struct clone_status *st)
{
	const char *f[2];
	int nf = features(st, f);

	add_int(o, CONTROL_KEY_METADATA_BLOCK_SIZE, st->meta_block_size / 512);
	add_int(o, CONTROL_KEY_METADATA_USED, st->meta_used);
	add_int(o, CONTROL_KEY_METADATA_TOTAL, st->meta_total);
	add_int(o, CONTROL_KEY_REGION_SIZE, st->region_size / 512);
	add_int(o, CONTROL_KEY_HYDRATED_REGIONS, st->nr_hydrated);
	add_int(o, CONTROL_KEY_TOTAL_REGIONS, st->nr_regions);
	add_int(o, CONTROL_KEY_HYDRATING_REGIONS, st->hy.in_flight);
	add_key(o, CONTROL_KEY_FEATURES);
	g_string_append_c(o, '[');
	for (int i = 0; i < nf; i++) {
		if (i)
			g_string_append_c(o, ',');
		put_string(o, f[i]);
	}
	g_string_append_c(o, ']');
	add_int(o, CONTROL_KEY_HYDRATION_THRESHOLD, st->hy.threshold);
	add_int(o, CONTROL_KEY_HYDRATION_BATCH_SIZE, st->hy.batch_size);
	add_string(o, CONTROL_KEY_MODE, mode_word(st));
}

/* An NBD SOURCE's state and counts, as one object. */
static void add_source(GString *o, const struct clone_status *st)
{
	const struct nbd_source_stats *s = &st->src;
	GString *n = g_string_new("{");

	add_string(n, CONTROL_KEY_SOURCE_STATE, nbd_source_state_word(s->state));
	add_int(n, CONTROL_KEY_SOURCE_CONNECTIONS, s->connections);
	add_bool(n, CONTROL_KEY_SOURCE_MULTI_CONN, s->multi_conn);
	add_int(n, CONTROL_KEY_SOURCE_READS, s->reads);
	add_int(n, CONTROL_KEY_SOURCE_READ_BYTES, s->read_bytes);
	add_int(n, CONTROL_KEY_SOURCE_READ_ERRORS, s->read_errors);
	add_int(n, CONTROL_KEY_SOURCE_TIMEOUTS, s->timeouts);
	add_int(n, CONTROL_KEY_SOURCE_CONNECTS, s->connects);
	add_int(n, CONTROL_KEY_SOURCE_CONNECT_FAILURES, s->connect_failures);
	add_int(n, CONTROL_KEY_SOURCE_ZERO_BYTES, s->zero_bytes);
	add_string(n, CONTROL_KEY_SOURCE_LAST_ERROR, s->last_error);
	g_string_append_c(n, '}');
	add_key(o, CONTROL_KEY_SOURCE);
	g_string_append(o, n->str);
	g_string_free(n, TRUE);
}

char *control_format_json(const struct clone_status *st)
{
	GString *o = g_string_new("{");

	add_line_fields(o, st);
	add_string(o, CONTROL_KEY_METADATA_MODE,
		   st->mode == MD_MODE_FAIL ? "fail" : mode_word(st));
	add_int(o, CONTROL_KEY_REGION_SIZE_BYTES, st->region_size);
	add_int(o, CONTROL_KEY_BYTES_HYDRATED, st->bytes_hydrated);
	add_int(o, CONTROL_KEY_BYTES_TOTAL, st->image_size);
	add_bool(o, CONTROL_KEY_HYDRATION_DONE, st->nr_hydrated == st->nr_regions);
	add_bool(o, CONTROL_KEY_HYDRATION_ENABLED, st->hy.enabled);
	add_int(o, CONTROL_KEY_HYDRATION_RATE,
		st->hy.rate > 0 ? (uint64_t)(st->hy.rate + 0.5) : 0);
	add_int(o, CONTROL_KEY_HYDRATION_RATE_LIMIT, st->hy.rate_limit);
	add_bool(o, CONTROL_KEY_COPY_ON_READ, st->hy.copy_on_read);
	add_int(o, CONTROL_KEY_BYTES_COPIED, st->hy.copied_bytes);
	add_int(o, CONTROL_KEY_COPY_ERRORS, st->hy.copy_errors);
	add_int(o, CONTROL_KEY_READ_ERRORS, st->hy.read_errors);
	add_int(o, CONTROL_KEY_LOST_WRITES, st->lost_writes);
	add_string(o, CONTROL_KEY_LAST_ERROR, st->hy.last_error);
	add_bool(o, CONTROL_KEY_READ_HINTS, st->hy.read_hints);
	add_int(o, CONTROL_KEY_HINT_COPIES, st->hy.hint_copies);
	add_int(o, CONTROL_KEY_HINT_REGIONS, st->hy.hint_regions);
	add_int(o, CONTROL_KEY_PREFETCH_REGIONS, st->hy.prefetch_total);
	add_int(o, CONTROL_KEY_PREFETCH_HYDRATED, st->hy.prefetch_hydrated);
	add_bool(o, CONTROL_KEY_PREFETCH_DONE,
		 st->hy.prefetch_hydrated == st->hy.prefetch_total);
	if (st->remote)
		add_source(o, st);
	g_string_append_c(o, '}');
	return g_string_free(o, FALSE);
}

char *control_status_line(struct clone *c, bool commit)
{
	struct clone_status st;

	if (commit)
		clone_commit(c);
	clone_get_status(c, &st);
	return control_format_line(&st);
}

char *control_status_json(struct clone *c, bool commit)
{
	struct clone_status st;

	if (commit)
		clone_commit(c);
	clone_get_status(c, &st);
	return control_format_json(&st);
}

void *control_profile(struct clone *c, size_t *len)
{
	return clone_profile(c, len);
}
