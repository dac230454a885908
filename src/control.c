/*
 * control.c - the dm-clone status line, its JSON twin, and messages.
 */
#include "clonefs/control.h"
#include "clonefs/errf.h"

#include <errno.h>
#include <glib.h>
#include <json-glib/json-glib.h>
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

static void add_int(JsonBuilder *b, const char *key, uint64_t v)
{
	json_builder_set_member_name(b, key);
	json_builder_add_int_value(b, (gint64)v); /* sizes fit: they are off_t */
}

static void add_bool(JsonBuilder *b, const char *key, bool v)
{
	json_builder_set_member_name(b, key);
	json_builder_add_boolean_value(b, v);
}

static void add_string(JsonBuilder *b, const char *key, const char *v)
{
	json_builder_set_member_name(b, key);
	json_builder_add_string_value(b, v);
}

/* The members the status line has too, in its order. */
static void add_line_fields(JsonBuilder *b, const struct clone_status *st)
{
	const char *f[2];
	int nf = features(st, f);

	add_int(b, CONTROL_KEY_METADATA_BLOCK_SIZE, MD_BLOCK_SIZE / 512);
	add_int(b, CONTROL_KEY_METADATA_USED, st->meta_used);
	add_int(b, CONTROL_KEY_METADATA_TOTAL, st->meta_total);
	add_int(b, CONTROL_KEY_REGION_SIZE, st->region_size / 512);
	add_int(b, CONTROL_KEY_HYDRATED_REGIONS, st->nr_hydrated);
	add_int(b, CONTROL_KEY_TOTAL_REGIONS, st->nr_regions);
	add_int(b, CONTROL_KEY_HYDRATING_REGIONS, st->hy.in_flight);
	json_builder_set_member_name(b, CONTROL_KEY_FEATURES);
	json_builder_begin_array(b);
	for (int i = 0; i < nf; i++)
		json_builder_add_string_value(b, f[i]);
	json_builder_end_array(b);
	add_int(b, CONTROL_KEY_HYDRATION_THRESHOLD, st->hy.threshold);
	add_int(b, CONTROL_KEY_HYDRATION_BATCH_SIZE, st->hy.batch_size);
	add_string(b, CONTROL_KEY_MODE, mode_word(st));
}

char *control_format_json(const struct clone_status *st)
{
	JsonBuilder *b = json_builder_new();
	JsonGenerator *gen = json_generator_new();
	JsonNode *root;
	/* the daemon's strerror() follows its locale: JSON needs UTF-8 */
	char *last_error = g_utf8_make_valid(st->hy.last_error, -1), *out;

	json_builder_begin_object(b);
	add_line_fields(b, st);
	add_string(b, CONTROL_KEY_METADATA_MODE,
		   st->mode == MD_MODE_FAIL ? "fail" : mode_word(st));
	add_int(b, CONTROL_KEY_REGION_SIZE_BYTES, st->region_size);
	add_int(b, CONTROL_KEY_BYTES_HYDRATED, st->bytes_hydrated);
	add_int(b, CONTROL_KEY_BYTES_TOTAL, st->image_size);
	add_bool(b, CONTROL_KEY_HYDRATION_DONE, st->nr_hydrated == st->nr_regions);
	add_bool(b, CONTROL_KEY_HYDRATION_ENABLED, st->hy.enabled);
	add_int(b, CONTROL_KEY_HYDRATION_RATE,
		st->hy.rate > 0 ? (uint64_t)(st->hy.rate + 0.5) : 0);
	add_int(b, CONTROL_KEY_HYDRATION_RATE_LIMIT, st->hy.rate_limit);
	add_bool(b, CONTROL_KEY_COPY_ON_READ, st->hy.copy_on_read);
	add_int(b, CONTROL_KEY_BYTES_COPIED, st->hy.copied_bytes);
	add_int(b, CONTROL_KEY_COPY_ERRORS, st->hy.copy_errors);
	add_int(b, CONTROL_KEY_LOST_WRITES, st->lost_writes);
	add_string(b, CONTROL_KEY_LAST_ERROR, last_error);
	json_builder_end_object(b);

	root = json_builder_get_root(b);
	json_generator_set_root(gen, root);
	out = json_generator_to_data(gen, NULL);
	json_node_unref(root);
	g_object_unref(gen);
	g_object_unref(b);
	g_free(last_error);
	return out;
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
