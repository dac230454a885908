/*
 * test_options.c - Check suite for src/options.c: the tunables, their
 * defaults and their parsing, shared by mount options and messages.
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
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static char err[256];

START_TEST(options_defaults_sane)
{
	struct clone_options o;

	memset(&o, 0xff, sizeof(o));
	options_defaults(&o);
	ck_assert_uint_eq(o.region_size, 64 * 1024);
	ck_assert_uint_eq(o.hydration_threshold, CLONE_DEFAULT_THRESHOLD);
	ck_assert_uint_eq(o.hydration_batch_size, CLONE_DEFAULT_BATCH);
	ck_assert_uint_eq(o.hydration_rate, 0);
	ck_assert_uint_eq(o.commit_period_ms, 1000);
	ck_assert_uint_eq(o.source_timeout_ms, 30000);
	ck_assert(!o.no_hydration && !o.copy_on_read && !o.no_discard_passdown &&
		  !o.ro && !o.nofollow);
	ck_assert(options_region_size_valid(o.region_size));
}
END_TEST

static void size_ok(const char *s, uint64_t want)
{
	uint64_t v = 0;

	ck_assert_msg(options_parse_size(s, &v) == 0, "'%s' refused", s);
	ck_assert_msg(v == want, "'%s' gave %" G_GUINT64_FORMAT, s, v);
}

static void size_bad(const char *s)
{
	uint64_t v = 12345;

	ck_assert_msg(options_parse_size(s, &v) == -EINVAL, "'%s' accepted", s);
	ck_assert_uint_eq(v, 12345);
}

START_TEST(options_sizes)
{
	size_ok("0", 0);
	size_ok("4096", 4096);
	size_ok("64k", 65536);
	size_ok("64K", 65536);
	size_ok("1M", 1ULL << 20);
	size_ok("1m", 1ULL << 20);
	size_ok("2G", 2ULL << 30);
	size_ok("3T", 3ULL << 40);
	size_ok("1KiB", 1024);
	size_ok("1kb", 1024);
	size_ok("1MB", 1ULL << 20);
	size_ok("16777215T", 16777215ULL << 40);
	size_ok("18446744073709551615", UINT64_MAX);
	size_bad(NULL);
	size_bad("");
	size_bad("k");
	size_bad("-1");
	size_bad("+1");
	size_bad(" 64");
	size_bad("64 k");
	size_bad("1.5M");
	size_bad("1X");
	size_bad("1kk");
	size_bad("1B"); /* a unit only after a multiplier */
	size_bad("18446744073709551616");
	size_bad("16777216T");
	size_bad("17179869184G");
}
END_TEST

START_TEST(options_uints)
{
	uint64_t v = 0;

	ck_assert_int_eq(options_parse_uint("5", 1, 10, &v), 0);
	ck_assert_uint_eq(v, 5);
	ck_assert_int_eq(options_parse_uint("1", 1, 10, &v), 0);
	ck_assert_int_eq(options_parse_uint("10", 1, 10, &v), 0);
	ck_assert_uint_eq(v, 10);
	v = 77;
	ck_assert_int_eq(options_parse_uint("0", 1, 10, &v), -EINVAL);
	ck_assert_int_eq(options_parse_uint("11", 1, 10, &v), -EINVAL);
	ck_assert_int_eq(options_parse_uint("-1", 0, 10, &v), -EINVAL);
	ck_assert_int_eq(options_parse_uint("+1", 0, 10, &v), -EINVAL);
	ck_assert_int_eq(options_parse_uint("1x", 0, 10, &v), -EINVAL);
	ck_assert_int_eq(options_parse_uint("", 0, 10, &v), -EINVAL);
	ck_assert_int_eq(options_parse_uint(NULL, 0, 10, &v), -EINVAL);
	ck_assert_int_eq(options_parse_uint("99999999999999999999", 0,
					    UINT64_MAX, &v), -EINVAL);
	ck_assert_uint_eq(v, 77);
	ck_assert_int_eq(options_parse_uint("18446744073709551615", 0,
					    UINT64_MAX, &v), 0);
	ck_assert_uint_eq(v, UINT64_MAX);
}
END_TEST

START_TEST(options_bools)
{
	static const char *yes[] = { "on", "1", "yes", NULL };
	static const char *no[] = { "off", "0", "no", NULL };
	bool b;

	for (int i = 0; yes[i]; i++) {
		b = false;
		ck_assert_int_eq(options_parse_bool(yes[i], &b), 0);
		ck_assert(b);
	}
	for (int i = 0; no[i]; i++) {
		b = true;
		ck_assert_int_eq(options_parse_bool(no[i], &b), 0);
		ck_assert(!b);
	}
	ck_assert_int_eq(options_parse_bool("maybe", &b), -EINVAL);
	ck_assert_int_eq(options_parse_bool("", &b), -EINVAL);
	ck_assert_int_eq(options_parse_bool("onn", &b), -EINVAL);
}
END_TEST

START_TEST(options_region_sizes)
{
	ck_assert(options_region_size_valid(4096));
	ck_assert(options_region_size_valid(65536));
	ck_assert(options_region_size_valid(1ULL << 30));
	ck_assert(!options_region_size_valid(0));
	ck_assert(!options_region_size_valid(2048));
	ck_assert(!options_region_size_valid(12288));
	ck_assert(!options_region_size_valid(65536 + 4096));
	ck_assert(!options_region_size_valid(2ULL << 30));
	ck_assert(!options_region_size_valid(1ULL << 63));
}
END_TEST

/* options_apply must return @want; on -EINVAL, @err names the option. */
static void apply(struct clone_options *o, const char *opt, int want)
{
	int ret;

	err[0] = '\0';
	ret = options_apply(o, opt, err, sizeof(err));
	ck_assert_msg(ret == want, "'%s' gave %d, want %d (%s)", opt, ret, want,
		      err);
	if (want == -EINVAL) {
		const char *eq = strchr(opt, '=');
		char *name = g_strndup(opt, eq ? (size_t)(eq - opt) : strlen(opt));

		ck_assert_msg(strstr(err, name), "'%s': error '%s'", opt, err);
		g_free(name);
	}
}

START_TEST(options_apply_flags)
{
	struct clone_options o;

	options_defaults(&o);
	apply(&o, "no_hydration", 0);
	apply(&o, "copy_on_read", 0);
	apply(&o, "no_discard_passdown", 0);
	apply(&o, "nofollow", 0);
	apply(&o, "ro", 0);
	ck_assert(o.no_hydration && o.copy_on_read && o.no_discard_passdown &&
		  o.nofollow && o.ro);
	apply(&o, "rw", 0);
	ck_assert(!o.ro);
	apply(&o, "no_hydration=off", 0);
	ck_assert(!o.no_hydration);
	apply(&o, "copy_on_read=0", 0);
	ck_assert(!o.copy_on_read);
	apply(&o, "no_hydration=yes", 0);
	ck_assert(o.no_hydration);
	ck_assert(!o.no_read_hints);
	apply(&o, "no_read_hints", 0);
	ck_assert(o.no_read_hints);
	apply(&o, "no_hydration=maybe", -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "bad value 'maybe' for no_hydration"));
	ck_assert(o.no_hydration);
}
END_TEST

/* The defaults with @opt applied, which must succeed. */
static struct clone_options applied(const char *opt)
{
	struct clone_options o;

	options_defaults(&o);
	apply(&o, opt, 0);
	return o;
}

START_TEST(options_apply_values)
{
	ck_assert_uint_eq(applied("region_size=1M").region_size, 1u << 20);
	ck_assert_uint_eq(applied("region_size=4096").region_size, 4096);
	ck_assert_uint_eq(applied("region_size=1G").region_size, 1u << 30);
	ck_assert(applied("region_size=64k").region_size_explicit);
	ck_assert_uint_eq(applied("hydration_threshold=8").hydration_threshold, 8);
	ck_assert_uint_eq(applied("hydration_batch_size=1048576").hydration_batch_size,
			  1048576);
	ck_assert_uint_eq(applied("hydration_rate=100M").hydration_rate, 100ULL << 20);
	ck_assert_uint_eq(applied("hydration_rate=0").hydration_rate, 0);
	ck_assert_uint_eq(applied("commit_period=5").commit_period_ms, 5000);
	ck_assert_uint_eq(applied("commit_period=250ms").commit_period_ms, 250);
	ck_assert_uint_eq(applied("commit_period=3600").commit_period_ms, 3600000);
	ck_assert_uint_eq(applied("source_timeout=5").source_timeout_ms, 5000);
	ck_assert_uint_eq(applied("source_timeout=250ms").source_timeout_ms, 250);
	ck_assert_int_eq(applied("uid=1000").uid, 1000);
	ck_assert_int_eq(applied("gid=0").gid, 0);
	ck_assert_int_eq(applied("umask=027").umask, 027);
	ck_assert_str_eq(applied("prefetch=/var/lib/vm/boot.profile").prefetch,
			 "/var/lib/vm/boot.profile");
	ck_assert_str_eq(applied("prefetch=boot.profile").prefetch, "boot.profile");
	ck_assert_str_eq(applied("ro").prefetch, "");
}
END_TEST

START_TEST(options_apply_bad_values)
{
	struct clone_options o, before;

	options_defaults(&o);
	before = o;
	apply(&o, "region_size=3k", -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "bad value '3k' for region_size"));
	apply(&o, "region_size=2k", -EINVAL);
	apply(&o, "region_size=2G", -EINVAL);
	apply(&o, "region_size=", -EINVAL);
	apply(&o, "region_size", -EINVAL);
	apply(&o, "hydration_threshold=0", -EINVAL);
	apply(&o, "hydration_threshold=1048577", -EINVAL);
	apply(&o, "hydration_threshold=8k", -EINVAL);
	apply(&o, "hydration_batch_size=0", -EINVAL);
	apply(&o, "hydration_batch_size", -EINVAL);
	apply(&o, "hydration_rate=lots", -EINVAL);
	apply(&o, "commit_period=0", -EINVAL);
	apply(&o, "commit_period=3601", -EINVAL);
	apply(&o, "commit_period=5ms", -EINVAL);
	apply(&o, "commit_period=1.5", -EINVAL);
	apply(&o, "prefetch=", -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "bad value '' for prefetch: must be a file name"));
	apply(&o, "prefetch", -EINVAL);
	{
		char *long_path = g_strnfill(OPTIONS_PATH_MAX, 'p');
		char *opt = g_strdup_printf("prefetch=%s", long_path);

		/* (the message quotes the value, so err holds only its start) */
		ck_assert_int_eq(options_apply(&o, opt, err, sizeof(err)), -EINVAL);
		g_free(opt);
		g_free(long_path);
	}
	apply(&o, "source_timeout=0", -EINVAL);
	apply(&o, "source_timeout", -EINVAL);
	apply(&o, "source_timeout=3601", -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "bad value '3601' for source_timeout"));
	ck_assert_mem_eq(&o, &before, sizeof(o));
}
END_TEST

START_TEST(options_apply_not_ours)
{
	struct clone_options o, before;
	char longname[100];

	options_defaults(&o);
	before = o;
	apply(&o, "allow_other", 1);
	apply(&o, "default_permissions", 1);
	apply(&o, "fsname=foo", 1);
	apply(&o, "max_read=131072", 1);
	apply(&o, "", 1);
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	apply(&o, longname, 1);
	ck_assert_mem_eq(&o, &before, sizeof(o));
}
END_TEST

/* A message and a mount option for the same tunable accept the same values. */
START_TEST(options_agree_with_messages)
{
	static const char *vals[] = { "0", "1", "64", "1048576", "1048577", "8k",
				      "-1", "x", NULL };
	struct clone_options o;
	struct control_msg m;

	for (int i = 0; vals[i]; i++) {
		char *opt = g_strdup_printf("hydration_threshold=%s", vals[i]);
		char *msg = g_strdup_printf("hydration_threshold %s", vals[i]);
		int a, b;

		options_defaults(&o);
		a = options_apply(&o, opt, err, sizeof(err));
		b = control_parse(msg, &m, err, sizeof(err));
		ck_assert_msg(a == b, "'%s' gave %d, '%s' gave %d", opt, a, msg, b);
		if (!a)
			ck_assert_uint_eq(o.hydration_threshold, m.value);
		g_free(opt);
		g_free(msg);
	}
}
END_TEST

static Suite *options_suite(void)
{
	Suite *s = suite_create("options");
	TCase *tc;

	tc = tcase_create("parsing");
	tcase_add_test(tc, options_defaults_sane);
	tcase_add_test(tc, options_sizes);
	tcase_add_test(tc, options_uints);
	tcase_add_test(tc, options_bools);
	tcase_add_test(tc, options_region_sizes);
	suite_add_tcase(s, tc);

	tc = tcase_create("apply");
	tcase_add_test(tc, options_apply_flags);
	tcase_add_test(tc, options_apply_values);
	tcase_add_test(tc, options_apply_bad_values);
	tcase_add_test(tc, options_apply_not_ours);
	tcase_add_test(tc, options_agree_with_messages);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(options_suite());
}
