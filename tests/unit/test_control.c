/*
 * test_control.c - Check suite for src/control.c (the status line, its JSON
 * and the message parser).
 *
 * Formatting is tested from clone_status snapshots, so no clone is mounted.
 * The JSON tests read the output back with json-glib, as clonefs wait does,
 * and hold its contract: one object on one line, each member of its type.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "clonefs/control.h"
#include "clonefs/options.h"

#include "unit.h"

#include <check.h>
#include <errno.h>
#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char err[256];

/* --- reading the JSON back --------------------------------------------- */

/* @s parsed; it must be one JSON object on one line. Unref the result. */
static JsonObject *parse_json(const char *s)
{
	JsonParser *p = json_parser_new();
	GError *e = NULL;
	JsonObject *o;

	ck_assert_msg(json_parser_load_from_data(p, s, -1, &e),
		      "invalid JSON (%s): %s", e ? e->message : "", s);
	ck_assert_msg(JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p)),
		      "not an object: %s", s);
	ck_assert_msg(!strchr(s, '\n'), "more than one line: %s", s);
	o = json_object_ref(json_node_get_object(json_parser_get_root(p)));
	g_object_unref(p);
	return o;
}

/* Member @key of @o holds a value of @type (an integer is no double). */
static JsonNode *member(JsonObject *o, const char *key, GType type)
{
	JsonNode *n = json_object_get_member(o, key);

	ck_assert_msg(n && JSON_NODE_HOLDS_VALUE(n) &&
		      json_node_get_value_type(n) == type,
		      "%s: missing, or not a %s", key, g_type_name(type));
	return n;
}

static void expect_int(JsonObject *o, const char *key, gint64 want)
{
	gint64 v = json_node_get_int(member(o, key, G_TYPE_INT64));

	ck_assert_msg(v == want, "%s: %" G_GINT64_FORMAT ", want %"
		      G_GINT64_FORMAT, key, v, want);
}

static void expect_bool(JsonObject *o, const char *key, bool want)
{
	ck_assert_msg(json_node_get_boolean(member(o, key, G_TYPE_BOOLEAN)) == want,
		      "%s: not %s", key, want ? "true" : "false");
}

static void expect_str(JsonObject *o, const char *key, const char *want)
{
	const char *v = json_node_get_string(member(o, key, G_TYPE_STRING));

	ck_assert_msg(!strcmp(v, want), "%s: '%s', want '%s'", key, v, want);
}

/* The features array, joined with commas. */
static char *features_of(JsonObject *o)
{
	JsonArray *a = json_object_get_array_member(o, CONTROL_KEY_FEATURES);
	GString *s = g_string_new(NULL);

	ck_assert_ptr_nonnull(a);
	for (guint i = 0; i < json_array_get_length(a); i++)
		g_string_append_printf(s, "%s%s", i ? "," : "",
				       json_array_get_string_element(a, i));
	return g_string_free(s, FALSE);
}

/* --- status snapshots -------------------------------------------------- */

/* The example of spec 5.1. */
static struct clone_status spec_example(void)
{
	struct clone_status st;

	memset(&st, 0, sizeof(st));
	st.mode = MD_MODE_RW;
	st.meta_block_size = 4096;
	st.meta_used = 105;
	st.meta_total = 4096;
	st.region_size = 64 * 1024;
	st.nr_regions = 262144;
	st.nr_hydrated = 1024;
	st.image_size = st.nr_regions * st.region_size;
	st.bytes_hydrated = st.nr_hydrated * st.region_size;
	st.discard_passdown = true;
	st.hy.in_flight = 1;
	st.hy.enabled = false;
	st.hy.threshold = 1;
	st.hy.batch_size = 1;
	return st;
}

/* --- control_format_line ----------------------------------------------- */

START_TEST(line_spec_example)
{
	struct clone_status st = spec_example();
	char *s = control_format_line(&st);

	ck_assert_str_eq(s, "8 105/4096 128 1024/262144 1 1 no_hydration 4 "
			 "hydration_threshold 1 hydration_batch_size 1 rw");
	g_free(s);
}
END_TEST

START_TEST(line_no_features)
{
	struct clone_status st = spec_example();
	char *s;

	st.hy.enabled = true;
	st.hy.in_flight = 0;
	st.nr_hydrated = st.nr_regions;
	st.hy.threshold = 64;
	st.hy.batch_size = 16;
	s = control_format_line(&st);
	ck_assert_str_eq(s, "8 105/4096 128 262144/262144 0 0 4 "
			 "hydration_threshold 64 hydration_batch_size 16 rw");
	g_free(s);
}
END_TEST

START_TEST(line_both_features_in_order)
{
	struct clone_status st = spec_example();
	char *s;

	st.discard_passdown = false;
	s = control_format_line(&st);
	ck_assert_str_eq(s, "8 105/4096 128 1024/262144 1 2 no_hydration "
			 "no_discard_passdown 4 hydration_threshold 1 "
			 "hydration_batch_size 1 rw");
	g_free(s);

	st.hy.enabled = true;
	s = control_format_line(&st);
	ck_assert_str_eq(s, "8 105/4096 128 1024/262144 1 1 no_discard_passdown "
			 "4 hydration_threshold 1 hydration_batch_size 1 rw");
	g_free(s);
}
END_TEST

START_TEST(line_ro)
{
	struct clone_status st = spec_example();
	char *s;

	st.ro = true; /* mounted -o ro */
	s = control_format_line(&st);
	ck_assert(g_str_has_suffix(s, " hydration_batch_size 1 ro"));
	g_free(s);

	st.ro = false; /* a commit failed: metadata read-only */
	st.mode = MD_MODE_RO;
	s = control_format_line(&st);
	ck_assert(g_str_has_suffix(s, " hydration_batch_size 1 ro"));
	ck_assert(g_str_has_prefix(s, "8 105/4096 "));
	g_free(s);
}
END_TEST

START_TEST(line_fail)
{
	struct clone_status st = spec_example();
	char *s;

	st.mode = MD_MODE_FAIL;
	s = control_format_line(&st);
	ck_assert_str_eq(s, "Fail");
	g_free(s);
}
END_TEST

/* Spec 6.5/6.6: 64-bit counts print whole, never wrap. */
START_TEST(line_large_counts)
{
	struct clone_status st = spec_example();
	char *s;

	st.region_size = 4096;
	st.nr_regions = (1ULL << 40) + 3;
	st.nr_hydrated = (1ULL << 33) + 1;
	st.hy.in_flight = 5000000000ULL;
	st.meta_used = 5000000001ULL;
	st.meta_total = 9000000000ULL;
	s = control_format_line(&st);
	ck_assert_str_eq(s, "8 5000000001/9000000000 8 8589934593/1099511627779 "
			 "5000000000 1 no_hydration 4 hydration_threshold 1 "
			 "hydration_batch_size 1 rw");
	g_free(s);

	st.region_size = CLONE_MAX_REGION_SIZE;
	s = control_format_line(&st);
	ck_assert(g_str_has_prefix(s, "8 5000000001/9000000000 2097152 "));
	g_free(s);
}
END_TEST

START_TEST(line_field_count)
{
	struct clone_status st = spec_example();
	char *s = control_format_line(&st);
	char **f = g_strsplit(s, " ", -1);

	/* 5 fixed, #features + 1 feature, 4 + 4 core args, rw|ro */
	ck_assert_uint_eq(g_strv_length(f), 5 + 2 + 5 + 1);
	ck_assert_str_eq(f[5], "1");
	ck_assert_str_eq(f[7], "4");
	g_strfreev(f);
	g_free(s);
}
END_TEST

/* --- control_format_json ----------------------------------------------- */

/* One flat object with exactly the documented keys, in the line's order. */
START_TEST(json_keys)
{
	static const char *keys[] = { CONTROL_KEY_METADATA_BLOCK_SIZE,
		CONTROL_KEY_METADATA_USED, CONTROL_KEY_METADATA_TOTAL,
		CONTROL_KEY_REGION_SIZE, CONTROL_KEY_HYDRATED_REGIONS,
		CONTROL_KEY_TOTAL_REGIONS, CONTROL_KEY_HYDRATING_REGIONS,
		CONTROL_KEY_FEATURES, CONTROL_KEY_HYDRATION_THRESHOLD,
		CONTROL_KEY_HYDRATION_BATCH_SIZE, CONTROL_KEY_MODE,
		CONTROL_KEY_METADATA_MODE, CONTROL_KEY_REGION_SIZE_BYTES,
		CONTROL_KEY_BYTES_HYDRATED, CONTROL_KEY_BYTES_TOTAL,
		CONTROL_KEY_HYDRATION_DONE, CONTROL_KEY_HYDRATION_ENABLED,
		CONTROL_KEY_HYDRATION_RATE, CONTROL_KEY_HYDRATION_RATE_LIMIT,
		CONTROL_KEY_COPY_ON_READ, CONTROL_KEY_BYTES_COPIED,
		CONTROL_KEY_COPY_ERRORS, CONTROL_KEY_READ_ERRORS, CONTROL_KEY_LOST_WRITES,
		CONTROL_KEY_LAST_ERROR, CONTROL_KEY_READ_HINTS,
		CONTROL_KEY_HINT_COPIES, CONTROL_KEY_HINT_REGIONS,
		CONTROL_KEY_PREFETCH_REGIONS, CONTROL_KEY_PREFETCH_HYDRATED,
		CONTROL_KEY_PREFETCH_DONE };
	struct clone_status st = spec_example();
	char *s = control_format_json(&st);
	JsonObject *o = parse_json(s);
	GList *members = json_object_get_members(o), *m = members;

	ck_assert_uint_eq(g_list_length(members), G_N_ELEMENTS(keys));
	for (size_t i = 0; i < G_N_ELEMENTS(keys); i++, m = m->next)
		ck_assert_str_eq(m->data, keys[i]);
	g_list_free(members);
	json_object_unref(o);
	g_free(s);
}
END_TEST

/* An NBD SOURCE adds one member, "source", an object of its state and
 * counts; a local one adds nothing (json_keys). */
START_TEST(json_source)
{
	struct clone_status st = spec_example();
	char *s;
	JsonObject *o, *src;

	st.remote = true;
	st.src.state = NBD_RETRYING;
	st.src.connections = 3;
	st.src.multi_conn = true;
	st.src.reads = 7;
	st.src.read_bytes = 5000000000ULL;
	st.src.read_errors = 2;
	st.src.timeouts = 1;
	st.src.connects = 4;
	st.src.connect_failures = 9;
	st.src.zero_bytes = 65536;
	g_strlcpy(st.src.last_error, "connect: \"refused\"", sizeof(st.src.last_error));
	s = control_format_json(&st);
	o = parse_json(s);
	ck_assert(json_object_has_member(o, CONTROL_KEY_SOURCE));
	src = json_object_get_object_member(o, CONTROL_KEY_SOURCE);
	expect_str(src, "state", "retrying");
	expect_int(src, "connections", 3);
	expect_bool(src, "multi_conn", true);
	expect_int(src, "reads", 7);
	expect_int(src, "read_bytes", 5000000000LL);
	expect_int(src, "read_errors", 2);
	expect_int(src, "timeouts", 1);
	expect_int(src, "connects", 4);
	expect_int(src, "connect_failures", 9);
	expect_int(src, "zero_bytes", 65536);
	expect_str(src, "last_error", "connect: \"refused\"");
	expect_str(o, "last_error", "");
	json_object_unref(o);
	g_free(s);
}
END_TEST

START_TEST(json_fields)
{
	struct clone_status st = spec_example();
	char *s = control_format_json(&st), *f;
	JsonObject *o = parse_json(s);

	expect_int(o, "metadata_block_size", 8);
	expect_int(o, "metadata_used", 105);
	expect_int(o, "metadata_total", 4096);
	expect_int(o, "region_size", 128);
	expect_int(o, "hydrated_regions", 1024);
	expect_int(o, "total_regions", 262144);
	expect_int(o, "hydrating_regions", 1);
	ck_assert_str_eq(f = features_of(o), "no_hydration");
	expect_int(o, "hydration_threshold", 1);
	expect_int(o, "hydration_batch_size", 1);
	expect_str(o, "mode", "rw");
	expect_str(o, "metadata_mode", "rw");
	expect_int(o, "region_size_bytes", 65536);
	expect_int(o, "bytes_hydrated", 67108864);
	expect_int(o, "bytes_total", 17179869184);
	expect_bool(o, "hydration_done", false);
	expect_bool(o, "hydration_enabled", false);
	expect_int(o, "hydration_rate", 0);
	expect_int(o, "hydration_rate_limit", 0);
	expect_bool(o, "copy_on_read", false);
	expect_int(o, "bytes_copied", 0);
	expect_int(o, "copy_errors", 0);
	expect_int(o, "read_errors", 0);
	expect_int(o, "lost_writes", 0);
	expect_str(o, "last_error", "");
	json_object_unref(o);
	g_free(f);
	g_free(s);
}
END_TEST

START_TEST(json_features_and_done)
{
	struct clone_status st = spec_example();
	JsonObject *o;
	char *s, *f;

	st.discard_passdown = false;
	s = control_format_json(&st);
	o = parse_json(s);
	ck_assert_str_eq(f = features_of(o), "no_hydration,no_discard_passdown");
	json_object_unref(o);
	g_free(f);
	g_free(s);

	st.hy.enabled = true;
	st.discard_passdown = true;
	st.nr_hydrated = st.nr_regions;
	st.hy.rate = 123456789.4;
	st.hy.rate_limit = 4 << 20;
	st.hy.copy_on_read = true;
	st.hy.copy_errors = 3;
	st.hy.read_errors = 7;
	st.hy.copied_bytes = 5;
	st.lost_writes = 2;
	s = control_format_json(&st);
	o = parse_json(s);
	ck_assert_str_eq(f = features_of(o), "");
	expect_bool(o, "hydration_done", true);
	expect_bool(o, "hydration_enabled", true);
	expect_int(o, "hydration_rate", 123456789);
	expect_int(o, "hydration_rate_limit", 4 << 20);
	expect_bool(o, "copy_on_read", true);
	expect_int(o, "copy_errors", 3);
	expect_int(o, "read_errors", 7);
	expect_int(o, "bytes_copied", 5);
	expect_int(o, "lost_writes", 2);
	json_object_unref(o);
	g_free(f);
	g_free(s);
}
END_TEST

/* The modes of @st as JSON: mode and metadata_mode. */
static void expect_modes(const struct clone_status *st, const char *mode,
			 const char *metadata_mode)
{
	char *s = control_format_json(st);
	JsonObject *o = parse_json(s);

	expect_str(o, "mode", mode);
	expect_str(o, "metadata_mode", metadata_mode);
	json_object_unref(o);
	g_free(s);
}

START_TEST(json_modes)
{
	struct clone_status st = spec_example();

	st.mode = MD_MODE_FAIL;
	expect_modes(&st, "ro", "fail");
	st.mode = MD_MODE_RO;
	expect_modes(&st, "ro", "ro");
	st.mode = MD_MODE_RW;
	st.ro = true;
	expect_modes(&st, "ro", "ro");
}
END_TEST

/* last_error is free text: it reads back exactly, and cannot pass for
 * other members. */
START_TEST(json_last_error_escaped)
{
	static const char text[] =
		"read \"/x\\y\": EIO\n\t\"total_regions\": 1, \"mode\": \"ro\"";
	struct clone_status st = spec_example();
	JsonObject *o;
	char *s;

	snprintf(st.hy.last_error, sizeof(st.hy.last_error), "%s", text);
	s = control_format_json(&st);
	o = parse_json(s);
	expect_str(o, "last_error", text);
	expect_int(o, "total_regions", 262144);
	expect_str(o, "mode", "rw");
	json_object_unref(o);
	g_free(s);
}
END_TEST

/* The daemon's strerror() text follows its locale, so last_error may hold
 * UTF-8, control characters, or bytes that are not UTF-8 at all: still
 * valid JSON. */
START_TEST(json_last_error_utf8)
{
	static const char text[] =
		"copy of regions 0+1 failed: Erreur d'entr\xc3\xa9" "e/sortie \x01";
	struct clone_status st = spec_example();
	JsonObject *o;
	char *s;

	snprintf(st.hy.last_error, sizeof(st.hy.last_error), "%s", text);
	s = control_format_json(&st);
	o = parse_json(s);
	expect_str(o, "last_error", text);
	json_object_unref(o);
	g_free(s);

	snprintf(st.hy.last_error, sizeof(st.hy.last_error), "bad \xff byte");
	s = control_format_json(&st);
	json_object_unref(parse_json(s));
	g_free(s);
}
END_TEST

/* Counts past 32 bits, and the largest image a file can be (off_t). */
START_TEST(json_large_counts)
{
	struct clone_status st = spec_example();
	JsonObject *o;
	char *s;

	st.region_size = 4096;
	st.nr_regions = (1ULL << 40) + 3;
	st.nr_hydrated = (1ULL << 33) + 1;
	st.image_size = INT64_MAX - 4095;
	st.bytes_hydrated = st.nr_hydrated * 4096;
	s = control_format_json(&st);
	o = parse_json(s);
	expect_int(o, "total_regions", 1099511627779);
	expect_int(o, "hydrated_regions", 8589934593);
	expect_int(o, "bytes_total", 9223372036854771712);
	expect_int(o, "bytes_hydrated", 35184372092928);
	json_object_unref(o);
	g_free(s);
}
END_TEST

/* --- control_parse ----------------------------------------------------- */

static void parse_ok(const char *text, enum control_verb verb, uint64_t value)
{
	struct control_msg m;
	int ret;

	memset(&m, 0xaa, sizeof(m));
	err[0] = '\0';
	ret = control_parse(text, &m, err, sizeof(err));
	ck_assert_msg(ret == 0, "'%s' refused: %s", text, err);
	ck_assert_int_eq(m.verb, verb);
	ck_assert_uint_eq(m.value, value);
}

/* Refused with -EINVAL and an error containing @why. */
static void parse_bad(const char *text, const char *why)
{
	struct control_msg m;
	int ret;

	err[0] = '\0';
	ret = control_parse(text, &m, err, sizeof(err));
	ck_assert_msg(ret == -EINVAL, "'%s' gave %d, not -EINVAL", text, ret);
	ck_assert_msg(strstr(err, why), "'%s': error '%s' lacks '%s'", text,
		      err, why);
}

START_TEST(parse_each_verb)
{
	parse_ok("enable_hydration", MSG_ENABLE_HYDRATION, 0);
	parse_ok("disable_hydration", MSG_DISABLE_HYDRATION, 0);
	parse_ok("hydration_threshold 8", MSG_HYDRATION_THRESHOLD, 8);
	parse_ok("hydration_threshold 1", MSG_HYDRATION_THRESHOLD, 1);
	parse_ok("hydration_threshold 1048576", MSG_HYDRATION_THRESHOLD, 1048576);
	parse_ok("hydration_batch_size 16", MSG_HYDRATION_BATCH_SIZE, 16);
	parse_ok("hydration_rate 0", MSG_HYDRATION_RATE, 0);
	parse_ok("hydration_rate 4096", MSG_HYDRATION_RATE, 4096);
	parse_ok("hydration_rate 64M", MSG_HYDRATION_RATE, 64ULL << 20);
	parse_ok("hydration_rate 1GiB", MSG_HYDRATION_RATE, 1ULL << 30);
	parse_ok("copy_on_read on", MSG_COPY_ON_READ, 1);
	parse_ok("copy_on_read off", MSG_COPY_ON_READ, 0);
	parse_ok("copy_on_read 1", MSG_COPY_ON_READ, 1);
	parse_ok("copy_on_read no", MSG_COPY_ON_READ, 0);
	parse_ok("read_hints off", MSG_READ_HINTS, 0);
	parse_ok("read_hints on", MSG_READ_HINTS, 1);
	parse_ok("prefetch /var/lib/vm/boot.profile", MSG_PREFETCH, 0);
}
END_TEST

START_TEST(parse_blanks)
{
	parse_ok("  enable_hydration  ", MSG_ENABLE_HYDRATION, 0);
	parse_ok("hydration_threshold\t8", MSG_HYDRATION_THRESHOLD, 8);
	parse_ok("\thydration_batch_size   32\n", MSG_HYDRATION_BATCH_SIZE, 32);
	parse_ok("disable_hydration\n", MSG_DISABLE_HYDRATION, 0);
}
END_TEST

START_TEST(parse_unknown)
{
	parse_bad("", "empty message");
	parse_bad(" \t\n", "empty message");
	parse_bad("bogus", "unknown message 'bogus'");
	parse_bad("enable_hydratoin", "unknown message 'enable_hydratoin'");
	parse_bad("ENABLE_HYDRATION", "unknown message");
	parse_bad("hydration_threshold=8", "unknown message");
	parse_bad("region_size 4096", "unknown message 'region_size'");
}
END_TEST

START_TEST(parse_wrong_arity)
{
	parse_bad("enable_hydration now", "enable_hydration takes no value");
	parse_bad("disable_hydration 1", "takes no value");
	parse_bad("hydration_threshold", "hydration_threshold takes one value");
	parse_bad("hydration_batch_size", "takes one value");
	parse_bad("hydration_rate", "takes one value");
	parse_bad("copy_on_read", "takes one value");
	parse_bad("hydration_threshold 8 9", "takes one value");
	parse_bad("hydration_threshold 8 9 10 11", "takes one value");
}
END_TEST

START_TEST(parse_bad_values)
{
	parse_bad("hydration_threshold 0", "bad value '0' for hydration_threshold");
	parse_bad("hydration_threshold 1048577", "from 1 to 1048576");
	parse_bad("hydration_threshold -1", "bad value '-1'");
	parse_bad("hydration_threshold +8", "bad value '+8'");
	parse_bad("hydration_threshold 8x", "bad value '8x'");
	parse_bad("hydration_threshold 8k", "bad value '8k'");
	parse_bad("hydration_threshold 99999999999999999999", "bad value");
	parse_bad("hydration_batch_size 0", "bad value '0' for hydration_batch_size");
	parse_bad("hydration_rate fast", "bad value 'fast' for hydration_rate");
	parse_bad("hydration_rate 5Q", "bytes per second");
	parse_bad("hydration_rate -5", "bad value");
	parse_bad("copy_on_read maybe", "expected on or off");
	parse_bad("read_hints maybe", "expected on or off");
	parse_bad("prefetch boot.profile", "must be an absolute path");
	parse_bad("prefetch", "prefetch takes one value");
}

/* The prefetch path arrives whole. */
START_TEST(parse_prefetch_path)
{
	struct control_msg m;

	ck_assert_int_eq(control_parse("prefetch  /a/b.profile ", &m, err, sizeof(err)), 0);
	ck_assert_int_eq(m.verb, MSG_PREFETCH);
	ck_assert_str_eq(m.path, "/a/b.profile");
}
END_TEST

/* Prefetch progress and hint counts, and prefetch_done without a profile. */
START_TEST(json_prefetch_fields)
{
	struct clone_status st = spec_example();
	char *s;
	JsonObject *o;

	st.hy.read_hints = true;
	st.hy.hint_copies = 7;
	st.hy.hint_regions = 90;
	st.hy.prefetch_total = 640;
	st.hy.prefetch_hydrated = 600;
	s = control_format_json(&st);
	o = parse_json(s);
	ck_assert(json_object_get_boolean_member(o, CONTROL_KEY_READ_HINTS));
	ck_assert_int_eq(json_object_get_int_member(o, CONTROL_KEY_HINT_COPIES), 7);
	ck_assert_int_eq(json_object_get_int_member(o, CONTROL_KEY_HINT_REGIONS), 90);
	ck_assert_int_eq(json_object_get_int_member(o, CONTROL_KEY_PREFETCH_REGIONS), 640);
	ck_assert_int_eq(json_object_get_int_member(o, CONTROL_KEY_PREFETCH_HYDRATED), 600);
	ck_assert(!json_object_get_boolean_member(o, CONTROL_KEY_PREFETCH_DONE));
	json_object_unref(o);
	g_free(s);
	st.hy.prefetch_total = st.hy.prefetch_hydrated = 0;
	s = control_format_json(&st);
	o = parse_json(s);
	ck_assert(json_object_get_boolean_member(o, CONTROL_KEY_PREFETCH_DONE));
	json_object_unref(o);
	g_free(s);
}
END_TEST
END_TEST

/* A short error buffer is filled, not overrun. */
START_TEST(parse_short_err_buffer)
{
	struct control_msg m;
	char small[12];

	memset(small, 'x', sizeof(small));
	ck_assert_int_eq(control_parse("no_such_message_at_all", &m, small, 8),
			 -EINVAL);
	ck_assert_uint_eq(strlen(small), 7);
	ck_assert_int_eq(small[8], 'x');
}
END_TEST

static Suite *control_suite(void)
{
	Suite *s = suite_create("control");
	TCase *tc;

	tc = tcase_create("status_line");
	tcase_add_test(tc, line_spec_example);
	tcase_add_test(tc, line_no_features);
	tcase_add_test(tc, line_both_features_in_order);
	tcase_add_test(tc, line_ro);
	tcase_add_test(tc, line_fail);
	tcase_add_test(tc, line_large_counts);
	tcase_add_test(tc, line_field_count);
	suite_add_tcase(s, tc);

	tc = tcase_create("status_json");
	tcase_add_test(tc, json_keys);
	tcase_add_test(tc, json_source);
	tcase_add_test(tc, json_fields);
	tcase_add_test(tc, json_features_and_done);
	tcase_add_test(tc, json_modes);
	tcase_add_test(tc, json_last_error_escaped);
	tcase_add_test(tc, json_last_error_utf8);
	tcase_add_test(tc, json_large_counts);
	suite_add_tcase(s, tc);

	tc = tcase_create("messages");
	tcase_add_test(tc, parse_each_verb);
	tcase_add_test(tc, parse_blanks);
	tcase_add_test(tc, parse_unknown);
	tcase_add_test(tc, parse_wrong_arity);
	tcase_add_test(tc, parse_bad_values);
	tcase_add_test(tc, parse_prefetch_path);
	tcase_add_test(tc, json_prefetch_fields);
	tcase_add_test(tc, parse_short_err_buffer);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	return run_suite(control_suite());
}
