/*
 * test_profile.c - access profiles (spec 3.9): the file format round trip,
 * corrupt and foreign profiles refused, merging, and the recorder.
 */
#include "clonefs/profile.h"

#include "unit.h"

#include <check.h>
#include <errno.h>
#include <glib.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define RS 65536u
#define NR 1000u

static struct profile make(const struct profile_run *runs, uint64_t n)
{
	struct profile p = { .region_size = RS, .nr_regions = NR,
			     .image_size = (uint64_t)NR * RS - 100, .nr_runs = n };

	p.runs = g_memdup2(runs, (n ? n : 1) * sizeof(*runs));
	for (uint64_t i = 0; i < n; i++)
		p.total += runs[i].n;
	return p;
}

static void assert_runs(const struct profile *p, const struct profile_run *want,
			uint64_t n)
{
	ck_assert_uint_eq(p->nr_runs, n);
	for (uint64_t i = 0; i < n; i++) {
		ck_assert_uint_eq(p->runs[i].first, want[i].first);
		ck_assert_uint_eq(p->runs[i].n, want[i].n);
	}
}

START_TEST(encode_decode_round_trip)
{
	const struct profile_run runs[] = { { 500, 3 }, { 2, 1 }, { 997, 3 }, { 10, 40 } };
	struct profile p = make(runs, 4), q;
	char err[256];
	size_t len;
	void *b = profile_encode(&p, &len);

	ck_assert_uint_eq(len, PROFILE_HEADER_SIZE + 4 * PROFILE_RUN_SIZE + PROFILE_CSUM_SIZE);
	ck_assert_mem_eq(b, PROFILE_MAGIC, 8);
	ck_assert_msg(profile_decode(b, len, &q, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(q.region_size, RS);
	ck_assert_uint_eq(q.nr_regions, NR);
	ck_assert_uint_eq(q.image_size, p.image_size);
	ck_assert_uint_eq(q.total, 47);
	assert_runs(&q, runs, 4);
	ck_assert_int_eq(profile_check_geometry(&q, RS, NR, p.image_size, err, sizeof(err)), 0);
	profile_clear(&q);
	profile_clear(&p);
	g_free(b);
}
END_TEST

START_TEST(empty_profile_round_trip)
{
	struct profile p = make(NULL, 0), q;
	char err[256];
	size_t len;
	void *b = profile_encode(&p, &len);

	ck_assert_int_eq(profile_decode(b, len, &q, err, sizeof(err)), 0);
	ck_assert_uint_eq(q.nr_runs, 0);
	ck_assert_uint_eq(q.total, 0);
	profile_clear(&q);
	profile_clear(&p);
	g_free(b);
}
END_TEST

/* Decoding @b (@len bytes) fails with -EINVAL and a message holding @why. */
static void assert_refused(const void *b, size_t len, const char *why)
{
	struct profile q;
	char err[256] = "";

	ck_assert_int_lt(profile_decode(b, len, &q, err, sizeof(err)), 0);
	ck_assert_msg(strstr(err, why), "'%s' does not say '%s'", err, why);
	ck_assert_ptr_null(q.runs);
}

START_TEST(corrupt_profiles_refused)
{
	const struct profile_run runs[] = { { 5, 3 }, { 100, 2 } };
	struct profile p = make(runs, 2);
	size_t len;
	uint8_t *b = profile_encode(&p, &len), *c = g_memdup2(b, len);

	assert_refused(b, 10, "bad magic");
	assert_refused(b, len - 1, "do not match its header");
	c[PROFILE_HEADER_SIZE + 3] ^= 1; /* a run's bit flips */
	assert_refused(c, len, "bad checksum");
	memcpy(c, b, len);
	c[len - 1] ^= 0x80; /* the checksum itself */
	assert_refused(c, len, "bad checksum");
	memcpy(c, b, len);
	c[0] = 'X';
	assert_refused(c, len, "bad magic");
	memcpy(c, b, len);
	c[8] = 9; /* version */
	assert_refused(c, len, "version 9");
	profile_clear(&p);
	g_free(b);
	g_free(c);
}
END_TEST

/* Well formed and checksummed, but naming what no clone would. */
START_TEST(inconsistent_profiles_refused)
{
	const struct profile_run twice[] = { { 5, 3 }, { 7, 2 } };
	const struct profile_run outside[] = { { 998, 3 } };
	const struct profile_run empty_run[] = { { 4, 0 } };
	struct profile p = make(twice, 2);
	size_t len;
	void *b = profile_encode(&p, &len);

	assert_refused(b, len, "named twice");
	g_free(b);
	profile_clear(&p);
	p = make(outside, 1);
	b = profile_encode(&p, &len);
	assert_refused(b, len, "outside the image");
	g_free(b);
	profile_clear(&p);
	p = make(empty_run, 1);
	b = profile_encode(&p, &len);
	assert_refused(b, len, "outside the image");
	g_free(b);
	p.runs[0].n = 1;
	p.total = 7; /* the header lies */
	b = profile_encode(&p, &len);
	assert_refused(b, len, "the header says 7");
	g_free(b);
	profile_clear(&p);
}
END_TEST

START_TEST(other_geometry_refused)
{
	struct profile p = make(NULL, 0);
	char err[256] = "";

	ck_assert_int_eq(profile_check_geometry(&p, RS * 2, NR / 2, p.image_size, err,
						sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "another geometry"));
	ck_assert_int_eq(profile_check_geometry(&p, RS, NR, p.image_size + 1, err,
						sizeof(err)), -EINVAL);
	profile_clear(&p);
}
END_TEST

START_TEST(file_round_trip_and_errors)
{
	const struct profile_run runs[] = { { 7, 1 }, { 3, 2 } };
	struct profile p = make(runs, 2), q;
	char *dir = g_dir_make_tmp("clonefs-profile-XXXXXX", NULL);
	char *path = g_build_filename(dir, "p", NULL), err[512] = "";

	ck_assert_msg(profile_save(path, &p, err, sizeof(err)) == 0, "%s", err);
	ck_assert_msg(profile_load(path, &q, err, sizeof(err)) == 0, "%s", err);
	assert_runs(&q, runs, 2);
	profile_clear(&q);
	ck_assert(g_file_set_contents(path, "garbage", 7, NULL));
	ck_assert_int_eq(profile_load(path, &q, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, path) && strstr(err, "bad magic"), "%s", err);
	unlink(path);
	ck_assert_int_eq(profile_load(path, &q, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, path));
	rmdir(dir);
	g_free(path);
	g_free(dir);
	profile_clear(&p);
}
END_TEST

START_TEST(merge_keeps_order_drops_repeats)
{
	const struct profile_run a_runs[] = { { 10, 5 }, { 0, 2 } };
	const struct profile_run b_runs[] = { { 12, 6 }, { 1, 1 }, { 30, 1 }, { 8, 4 } };
	/* b minus a: 15..17, -, 30, 8..9 */
	const struct profile_run want[] = { { 10, 5 }, { 0, 2 }, { 15, 3 }, { 30, 1 }, { 8, 2 } };
	struct profile a = make(a_runs, 2), b = make(b_runs, 4), m;
	char err[256];

	ck_assert_msg(profile_merge(&a, &b, &m, err, sizeof(err)) == 0, "%s", err);
	assert_runs(&m, want, 5);
	ck_assert_uint_eq(m.total, 13);
	profile_clear(&m);
	/* merging a profile with itself changes nothing */
	ck_assert_int_eq(profile_merge(&a, &a, &m, err, sizeof(err)), 0);
	assert_runs(&m, a_runs, 2);
	profile_clear(&m);
	b.region_size = RS * 2;
	ck_assert_int_eq(profile_merge(&a, &b, &m, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "another geometry"));
	profile_clear(&a);
	profile_clear(&b);
}
END_TEST

START_TEST(merge_too_big_refused)
{
	struct profile_run *ra = g_new(struct profile_run, PROFILE_MAX_RUNS);
	struct profile a, b, m;
	char err[256];

	for (uint64_t i = 0; i < PROFILE_MAX_RUNS; i++)
		ra[i] = (struct profile_run){ i * 2, 1 };
	a = make(ra, PROFILE_MAX_RUNS);
	a.nr_regions = b.nr_regions = 4 * PROFILE_MAX_RUNS;
	ra[0].first = 2 * PROFILE_MAX_RUNS + 1; /* one region a lacks */
	b = make(ra, 1);
	b.nr_regions = a.nr_regions;
	ck_assert_int_eq(profile_merge(&a, &b, &m, err, sizeof(err)), -EMSGSIZE);
	profile_clear(&a);
	profile_clear(&b);
	g_free(ra);
}
END_TEST

START_TEST(recorder_keeps_first_touch_order)
{
	struct profile_rec *r = profile_rec_new(RS, NR, (uint64_t)NR * RS);
	const struct profile_run want[] = { { 500, 4 }, { 3, 2 }, { 504, 1 }, { 999, 1 } };
	struct profile p;

	profile_rec_touch(r, 500, 2);
	profile_rec_touch(r, 502, 2);   /* joins the run before */
	profile_rec_touch(r, 3, 2);
	profile_rec_touch(r, 501, 1);   /* seen: nothing */
	profile_rec_touch(r, 499, 1);   /* new, before the run: a run of its own */
	profile_rec_get(r, &p);
	ck_assert_uint_eq(p.nr_runs, 3);
	profile_clear(&p);
	profile_rec_free(r);

	r = profile_rec_new(RS, NR, (uint64_t)NR * RS);
	profile_rec_touch(r, 500, 4);
	profile_rec_touch(r, 3, 2);
	profile_rec_touch(r, 502, 3);   /* only 504 is new */
	profile_rec_touch(r, 999, 5);   /* clipped at the end */
	profile_rec_touch(r, NR, 1);    /* outside: ignored */
	profile_rec_get(r, &p);
	assert_runs(&p, want, 4);
	ck_assert_uint_eq(p.total, 8);
	ck_assert_uint_eq(p.region_size, RS);
	ck_assert(!profile_rec_full(r));
	profile_clear(&p);
	profile_rec_free(r);
}
END_TEST

START_TEST(recorder_stops_when_full)
{
	uint64_t nr = 4 * PROFILE_MAX_RUNS;
	struct profile_rec *r = profile_rec_new(RS, nr, nr * RS);
	struct profile p, q;
	char err[256];
	size_t len;
	void *b;

	for (uint64_t i = 0; i < PROFILE_MAX_RUNS + 10; i++)
		profile_rec_touch(r, i * 2, 1);
	ck_assert(profile_rec_full(r));
	profile_rec_get(r, &p);
	ck_assert_uint_eq(p.nr_runs, PROFILE_MAX_RUNS);
	b = profile_encode(&p, &len);
	ck_assert_uint_le(len, PROFILE_MAX_SIZE);
	ck_assert_uint_lt(len, 65536); /* one extended attribute */
	ck_assert_int_eq(profile_decode(b, len, &q, err, sizeof(err)), 0);
	profile_clear(&q);
	profile_clear(&p);
	g_free(b);
	profile_rec_free(r);
}
END_TEST

/* Leaves far apart (a sparse bitmap), touched from several threads: each
 * region once. */
static struct profile_rec *shared;

static gpointer toucher(gpointer arg)
{
	uint64_t base = GPOINTER_TO_SIZE(arg);

	for (uint64_t i = 0; i < 1500; i++)
		profile_rec_touch(shared, (base + i * 7919) % 1000000 * 97, 3);
	return NULL;
}

START_TEST(recorder_threads_record_each_region_once)
{
	GThread *t[4];
	struct profile p;
	GHashTable *seen = g_hash_table_new(g_int64_hash, g_int64_equal);
	uint64_t *keys;

	shared = profile_rec_new(4096, 100000000ull, 100000000ull * 4096);
	for (int i = 0; i < 4; i++)
		t[i] = g_thread_new("touch", toucher, GSIZE_TO_POINTER((gsize)(i % 2) * 1000));
	for (int i = 0; i < 4; i++)
		g_thread_join(t[i]);
	profile_rec_get(shared, &p);
	keys = g_new(uint64_t, p.total);
	for (uint64_t i = 0, k = 0; i < p.nr_runs; i++)
		for (uint64_t j = 0; j < p.runs[i].n; j++, k++) {
			keys[k] = p.runs[i].first + j;
			ck_assert(g_hash_table_add(seen, &keys[k]));
		}
	/* two bases: 3000 distinct touches of 3 regions (runs of their own,
	 * below PROFILE_MAX_RUNS), none overlapping */
	ck_assert(!profile_rec_full(shared));
	ck_assert_uint_eq(p.total, 3000 * 3);
	g_hash_table_destroy(seen);
	g_free(keys);
	profile_clear(&p);
	profile_rec_free(shared);
}
END_TEST

static Suite *profile_suite(void)
{
	Suite *s = suite_create("profile");
	TCase *tc = tcase_create("profile");

	tcase_add_test(tc, encode_decode_round_trip);
	tcase_add_test(tc, empty_profile_round_trip);
	tcase_add_test(tc, corrupt_profiles_refused);
	tcase_add_test(tc, inconsistent_profiles_refused);
	tcase_add_test(tc, other_geometry_refused);
	tcase_add_test(tc, file_round_trip_and_errors);
	tcase_add_test(tc, merge_keeps_order_drops_repeats);
	tcase_add_test(tc, merge_too_big_refused);
	tcase_add_test(tc, recorder_keeps_first_touch_order);
	tcase_add_test(tc, recorder_stops_when_full);
	tcase_add_test(tc, recorder_threads_record_each_region_once);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(profile_suite());
}
