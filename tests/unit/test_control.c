/*
 * test_control.c - Check suite for src/control.c (the status line, its JSON
 * and the message parser).
 *
 * Formatting is tested from clone_status snapshots, so no clone is mounted.
 * The JSON tests also hold the contract clonefs wait relies on: the output is
 * valid JSON and each key it reads appears exactly once as "key": .
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "clonefs/control.h"
#include "clonefs/options.h"

#include <check.h>
#include <errno.h>
#include <glib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static char err[256];

/* --- a tiny JSON syntax checker (strict enough for flat objects) --------- */

static const char *json_value(const char *p);

static const char *json_ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return p;
}

static const char *json_string(const char *p)
{
	if (*p++ != '"')
		return NULL;
	while (*p && *p != '"') {
		if ((unsigned char)*p < 0x20)
			return NULL;
		if (*p == '\\') {
			p++;
			if (*p == 'u') {
				for (int i = 1; i <= 4; i++)
					if (!g_ascii_isxdigit(p[i]))
						return NULL;
				p += 4;
			} else if (!strchr("\"\\/bfnrt", *p) || !*p) {
				return NULL;
			}
		}
		p++;
	}
	return *p == '"' ? p + 1 : NULL;
}

static const char *json_number(const char *p)
{
	const char *s = p;

	if (*p == '-')
		p++;
	if (!g_ascii_isdigit(*p))
		return NULL;
	if (*p == '0' && g_ascii_isdigit(p[1]))
		return NULL;
	while (g_ascii_isdigit(*p))
		p++;
	if (*p == '.') {
		if (!g_ascii_isdigit(*++p))
			return NULL;
		while (g_ascii_isdigit(*p))
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!g_ascii_isdigit(*p))
			return NULL;
		while (g_ascii_isdigit(*p))
			p++;
	}
	return p > s ? p : NULL;
}

static const char *json_seq(const char *p, char close, bool object)
{
	p = json_ws(p + 1);
	if (*p == close)
		return p + 1;
	for (;;) {
		if (object) {
			if (!(p = json_string(json_ws(p))))
				return NULL;
			p = json_ws(p);
			if (*p++ != ':')
				return NULL;
		}
		if (!(p = json_value(p)))
			return NULL;
		p = json_ws(p);
		if (*p == close)
			return p + 1;
		if (*p++ != ',')
			return NULL;
	}
}

static const char *json_value(const char *p)
{
	p = json_ws(p);
	switch (*p) {
	case '{': return json_seq(p, '}', true);
	case '[': return json_seq(p, ']', false);
	case '"': return json_string(p);
	case 't': return strncmp(p, "true", 4) ? NULL : p + 4;
	case 'f': return strncmp(p, "false", 5) ? NULL : p + 5;
	case 'n': return strncmp(p, "null", 4) ? NULL : p + 4;
	default: return json_number(p);
	}
}

static bool json_valid(const char *s)
{
	const char *end = json_value(s);

	return end && *json_ws(end) == '\0';
}

static int count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

/* --- status snapshots -------------------------------------------------- */

/* The example of spec 5.1. */
static struct clone_status spec_example(void)
{
	struct clone_status st;

	memset(&st, 0, sizeof(st));
	st.mode = MD_MODE_RW;
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

START_TEST(json_fields)
{
	struct clone_status st = spec_example();
	char *s = control_format_json(&st);

	ck_assert_msg(json_valid(s), "invalid JSON: %s", s);
	ck_assert_ptr_nonnull(strstr(s, "\"metadata_block_size\": 8,"));
	ck_assert_ptr_nonnull(strstr(s, "\"metadata_used\": 105,"));
	ck_assert_ptr_nonnull(strstr(s, "\"metadata_total\": 4096,"));
	ck_assert_ptr_nonnull(strstr(s, "\"region_size\": 128,"));
	ck_assert_ptr_nonnull(strstr(s, "\"hydrated_regions\": 1024,"));
	ck_assert_ptr_nonnull(strstr(s, "\"total_regions\": 262144,"));
	ck_assert_ptr_nonnull(strstr(s, "\"hydrating_regions\": 1,"));
	ck_assert_ptr_nonnull(strstr(s, "\"features\": [\"no_hydration\"]"));
	ck_assert_ptr_nonnull(strstr(s, "\"hydration_threshold\": 1,"));
	ck_assert_ptr_nonnull(strstr(s, "\"hydration_batch_size\": 1,"));
	ck_assert_ptr_nonnull(strstr(s, "\"mode\": \"rw\""));
	ck_assert_ptr_nonnull(strstr(s, "\"metadata_mode\": \"rw\""));
	ck_assert_ptr_nonnull(strstr(s, "\"region_size_bytes\": 65536,"));
	ck_assert_ptr_nonnull(strstr(s, "\"bytes_hydrated\": 67108864,"));
	ck_assert_ptr_nonnull(strstr(s, "\"bytes_total\": 17179869184,"));
	ck_assert_ptr_nonnull(strstr(s, "\"hydration_done\": false"));
	ck_assert_ptr_nonnull(strstr(s, "\"hydration_enabled\": false"));
	ck_assert_ptr_nonnull(strstr(s, "\"last_error\": \"\""));
	g_free(s);
}
END_TEST

START_TEST(json_features_and_done)
{
	struct clone_status st = spec_example();
	char *s;

	st.discard_passdown = false;
	s = control_format_json(&st);
	ck_assert_msg(json_valid(s), "invalid JSON: %s", s);
	ck_assert_ptr_nonnull(strstr(s, "\"features\": [\"no_hydration\", "
				     "\"no_discard_passdown\"]"));
	g_free(s);

	st.hy.enabled = true;
	st.discard_passdown = true;
	st.nr_hydrated = st.nr_regions;
	st.hy.rate = 123456789.4;
	st.hy.copy_on_read = true;
	st.hy.copy_errors = 3;
	s = control_format_json(&st);
	ck_assert_msg(json_valid(s), "invalid JSON: %s", s);
	ck_assert_ptr_nonnull(strstr(s, "\"features\": []"));
	ck_assert_ptr_nonnull(strstr(s, "\"hydration_done\": true"));
	ck_assert_ptr_nonnull(strstr(s, "\"hydration_enabled\": true"));
	ck_assert_ptr_nonnull(strstr(s, "\"hydration_rate\": 123456789,"));
	ck_assert_ptr_nonnull(strstr(s, "\"copy_on_read\": true"));
	ck_assert_ptr_nonnull(strstr(s, "\"copy_errors\": 3,"));
	g_free(s);
}
END_TEST

START_TEST(json_modes)
{
	struct clone_status st = spec_example();
	char *s;

	st.mode = MD_MODE_FAIL;
	s = control_format_json(&st);
	ck_assert_msg(json_valid(s), "invalid JSON: %s", s);
	ck_assert_ptr_nonnull(strstr(s, "\"metadata_mode\": \"fail\""));
	ck_assert_ptr_nonnull(strstr(s, "\"mode\": \"ro\""));
	g_free(s);

	st.mode = MD_MODE_RO;
	s = control_format_json(&st);
	ck_assert_ptr_nonnull(strstr(s, "\"metadata_mode\": \"ro\""));
	ck_assert_ptr_nonnull(strstr(s, "\"mode\": \"ro\""));
	g_free(s);

	st.mode = MD_MODE_RW;
	st.ro = true;
	s = control_format_json(&st);
	ck_assert_ptr_nonnull(strstr(s, "\"mode\": \"ro\""));
	g_free(s);
}
END_TEST

/* last_error is free text: it must be escaped, and must not fool a reader
 * that looks keys up as "key": (clonefs wait does). */
START_TEST(json_last_error_escaped)
{
	static const char *keys[] = { "hydrated_regions", "total_regions",
		"bytes_hydrated", "bytes_total", "hydration_rate", "copy_errors",
		"hydration_enabled", "mode", "metadata_mode", NULL };
	struct clone_status st = spec_example();
	char *s;

	snprintf(st.hy.last_error, sizeof(st.hy.last_error),
		 "read \"/x\\y\": EIO\n\t\"total_regions\": 1, \"mode\": \"ro\"");
	s = control_format_json(&st);
	ck_assert_msg(json_valid(s), "invalid JSON: %s", s);
	for (int i = 0; keys[i]; i++) {
		char *pat = g_strdup_printf("\"%s\": ", keys[i]);

		ck_assert_msg(count(s, pat) == 1, "%s appears %d times in %s",
			      pat, count(s, pat), s);
		g_free(pat);
	}
	ck_assert_ptr_nonnull(strstr(s, "\"total_regions\": 262144,"));
	g_free(s);
}
END_TEST

/* The daemon's strerror() text follows its locale, so last_error may hold
 * UTF-8 (and, in principle, control characters): still valid JSON. */
START_TEST(json_last_error_utf8)
{
	struct clone_status st = spec_example();
	char *s;

	snprintf(st.hy.last_error, sizeof(st.hy.last_error),
		 "copy of regions 0+1 failed: Erreur d'entr\xc3\xa9" "e/sortie \x01");
	s = control_format_json(&st);
	ck_assert_msg(json_valid(s), "invalid JSON: %s", s);
	g_free(s);
}
END_TEST

START_TEST(json_large_counts)
{
	struct clone_status st = spec_example();
	char *s;

	st.region_size = 4096;
	st.nr_regions = (1ULL << 40) + 3;
	st.nr_hydrated = (1ULL << 33) + 1;
	st.image_size = UINT64_MAX - 4095;
	st.bytes_hydrated = st.nr_hydrated * 4096;
	s = control_format_json(&st);
	ck_assert_msg(json_valid(s), "invalid JSON: %s", s);
	ck_assert_ptr_nonnull(strstr(s, "\"total_regions\": 1099511627779,"));
	ck_assert_ptr_nonnull(strstr(s, "\"hydrated_regions\": 8589934593,"));
	ck_assert_ptr_nonnull(strstr(s, "\"bytes_total\": 18446744073709547520,"));
	ck_assert_ptr_nonnull(strstr(s, "\"bytes_hydrated\": 35184372092928,"));
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
}
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
	tcase_add_test(tc, parse_short_err_buffer);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(control_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
