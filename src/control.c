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
	case MSG_COPY_ON_READ:
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

/* JSON string contents: valid UTF-8, with quotes, backslashes and control
 * characters escaped (g_strescape writes octal escapes, which JSON lacks). */
static char *json_escape(const char *s)
{
	char *valid = g_utf8_make_valid(s, -1);
	GString *o = g_string_new(NULL);

	for (const unsigned char *p = (const unsigned char *)valid; *p; p++) {
		if (*p == '"' || *p == '\\')
			g_string_append_printf(o, "\\%c", *p);
		else if (*p < 0x20)
			g_string_append_printf(o, "\\u%04x", *p);
		else
			g_string_append_c(o, (char)*p);
	}
	g_free(valid);
	return g_string_free(o, FALSE);
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
			       MD_BLOCK_SIZE / 512, st->meta_used, st->meta_total,
			       st->region_size / 512, st->nr_hydrated,
			       st->nr_regions, st->hy.in_flight, nf);
	for (int i = 0; i < nf; i++)
		g_string_append_printf(s, " %s", f[i]);
	g_string_append_printf(s, " 4 hydration_threshold %u hydration_batch_size %u %s",
			       st->hy.threshold, st->hy.batch_size, mode_word(st));
	return g_string_free(s, FALSE);
}

char *control_format_json(const struct clone_status *st)
{
	GString *s = g_string_new("{");
	const char *f[2];
	int nf = features(st, f);
	char *err = json_escape(st->hy.last_error);

	g_string_append_printf(s,
		"\"metadata_block_size\": %u, \"metadata_used\": %" G_GUINT64_FORMAT
		", \"metadata_total\": %" G_GUINT64_FORMAT ", \"region_size\": %u"
		", \"hydrated_regions\": %" G_GUINT64_FORMAT ", \"total_regions\": %"
		G_GUINT64_FORMAT ", \"hydrating_regions\": %" G_GUINT64_FORMAT
		", \"features\": [",
		MD_BLOCK_SIZE / 512, st->meta_used, st->meta_total,
		st->region_size / 512, st->nr_hydrated, st->nr_regions,
		st->hy.in_flight);
	for (int i = 0; i < nf; i++)
		g_string_append_printf(s, "%s\"%s\"", i ? ", " : "", f[i]);
	g_string_append_printf(s,
		"], \"hydration_threshold\": %u, \"hydration_batch_size\": %u"
		", \"mode\": \"%s\", \"metadata_mode\": \"%s\""
		", \"region_size_bytes\": %u, \"bytes_hydrated\": %" G_GUINT64_FORMAT
		", \"bytes_total\": %" G_GUINT64_FORMAT ", \"hydration_done\": %s"
		", \"hydration_enabled\": %s, \"hydration_rate\": %.0f"
		", \"hydration_rate_limit\": %" G_GUINT64_FORMAT
		", \"copy_on_read\": %s, \"bytes_copied\": %" G_GUINT64_FORMAT
		", \"copy_errors\": %" G_GUINT64_FORMAT
		", \"lost_writes\": %" G_GUINT64_FORMAT
		", \"last_error\": \"%s\"}",
		st->hy.threshold, st->hy.batch_size, mode_word(st),
		st->mode == MD_MODE_FAIL ? "fail" : mode_word(st),
		st->region_size, st->bytes_hydrated, st->image_size,
		st->nr_hydrated == st->nr_regions ? "true" : "false",
		st->hy.enabled ? "true" : "false", st->hy.rate,
		st->hy.rate_limit, st->hy.copy_on_read ? "true" : "false",
		st->hy.copied_bytes, st->hy.copy_errors, st->lost_writes, err);
	g_free(err);
	return g_string_free(s, FALSE);
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
