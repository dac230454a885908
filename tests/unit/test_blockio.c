/*
 * test_blockio.c - Check suite for src/blockio.c: whole-buffer I/O, the
 * fault-injection rules (syntax, triggers, roles, ranges, the rules file) and
 * the write-log format that tests/replay/replay.c reads.
 *
 * main() points CLONEFS_WRITELOG at a temp file before the first I/O, so
 * every test also records; the log tests read it back.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "clonefs/blockio.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <linux/falloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/clonefs-blockio.XXXXXX";
static char logpath[4200];

static int tmpfile_fd(const char *name, enum bio_role role)
{
	char path[4200];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	bio_set_role(fd, role);
	return fd;
}

static void setup(void)
{
	bio_fault_clear();
}

START_TEST(test_plain_io)
{
	int fd = tmpfile_fd("plain", BIO_DEST);
	char buf[8192], back[8192];

	memset(buf, 'x', sizeof(buf));
	ck_assert_int_eq(bio_pwrite(fd, buf, 5000, 100), 0);
	ck_assert_int_eq(bio_pread(fd, back, 5000, 100), 0);
	ck_assert(!memcmp(buf, back, 5000));
	/* past the end reads zeros */
	memset(back, 1, sizeof(back));
	ck_assert_int_eq(bio_pread(fd, back, 8192, 4096), 0);
	ck_assert_int_eq(back[1003], 'x');
	ck_assert_int_eq(back[1004], 0);
	ck_assert_int_eq(back[8191], 0);
	ck_assert_int_eq(bio_flush(fd), 0);
	close(fd);
}
END_TEST

START_TEST(test_parse)
{
	static const char *good[] = {
		"", "  ", "dest:write:eio", "any:any:enospc:after=3:count=2",
		"source:read:eio:once, meta:flush:erofs:prob=0.5",
		"dest:write:eio:at=4096+8192 # comment\nmeta:write:eio",
		"source:read:eio:prob=0;dest:flush:eio:prob=1",
	};
	static const char *bad[] = {
		"dest", "dest:write", "disk:write:eio", "dest:erase:eio",
		"dest:write:eperm", "dest:write:eio:after", "dest:write:eio:after=x",
		"dest:write:eio:prob=1.5", "dest:write:eio:prob=-1",
		"dest:write:eio:at=5", "dest:write:eio:at=5+0",
		"dest:write:eio:at=18446744073709551615+2", "dest:write:eio:sometimes",
		"dest:write:eio:once=3", "dest:write:eio:count=-1",
	};
	char err[256];

	for (size_t i = 0; i < G_N_ELEMENTS(good); i++)
		ck_assert_msg(!bio_fault_parse(good[i], err, sizeof(err)),
			      "'%s' refused: %s", good[i], err);
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		err[0] = '\0';
		ck_assert_msg(bio_fault_parse(bad[i], err, sizeof(err)) == -EINVAL,
			      "'%s' accepted", bad[i]);
		ck_assert_msg(strstr(err, "fault rule"), "no reason for '%s'", bad[i]);
	}
	/* a bad spec leaves the rules in force alone */
	ck_assert_int_eq(bio_fault_set("dest:write:eio", NULL, 0), 0);
	ck_assert_int_eq(bio_fault_set("dest:write:bogus", err, sizeof(err)), -EINVAL);
	{
		int fd = tmpfile_fd("parse", BIO_DEST);

		ck_assert_int_eq(bio_pwrite(fd, "a", 1, 0), -EIO);
		close(fd);
	}
}
END_TEST

START_TEST(test_after_count_once)
{
	int fd = tmpfile_fd("after", BIO_DEST);
	uint64_t before = bio_fault_count();
	int results[10];

	ck_assert_int_eq(bio_fault_set("dest:write:enospc:after=3:count=2", NULL, 0), 0);
	for (int i = 0; i < 10; i++)
		results[i] = bio_pwrite(fd, "a", 1, (uint64_t)i);
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(results[i], i == 3 || i == 4 ? -ENOSPC : 0);
	ck_assert_uint_eq(bio_fault_count() - before, 2);

	ck_assert_int_eq(bio_fault_set("dest:flush:eio:once", NULL, 0), 0);
	ck_assert_int_eq(bio_flush(fd), -EIO);
	ck_assert_int_eq(bio_flush(fd), 0);
	ck_assert_int_eq(bio_pwrite(fd, "b", 1, 0), 0); /* writes untouched */

	/* after=N alone: every operation after the Nth fails */
	ck_assert_int_eq(bio_fault_set("dest:read:eio:after=2", NULL, 0), 0);
	{
		char c;

		ck_assert_int_eq(bio_pread(fd, &c, 1, 0), 0);
		ck_assert_int_eq(bio_pread(fd, &c, 1, 0), 0);
		for (int i = 0; i < 5; i++)
			ck_assert_int_eq(bio_pread(fd, &c, 1, 0), -EIO);
	}
	close(fd);
}
END_TEST

START_TEST(test_roles_and_untagged)
{
	int src = tmpfile_fd("r-src", BIO_SOURCE);
	int dst = tmpfile_fd("r-dst", BIO_DEST);
	int meta = tmpfile_fd("r-meta", BIO_META);
	int plain = tmpfile_fd("r-plain", BIO_META);
	char c = 'q';

	bio_forget(plain); /* untagged fds are never hooked */
	ck_assert_int_eq(bio_fault_set("meta:any:eio, source:read:erofs", NULL, 0), 0);
	ck_assert_int_eq(bio_pwrite(dst, &c, 1, 0), 0);
	ck_assert_int_eq(bio_pwrite(src, &c, 1, 0), 0); /* source writes: no rule */
	ck_assert_int_eq(bio_pread(src, &c, 1, 0), -EROFS);
	ck_assert_int_eq(bio_pwrite(meta, &c, 1, 0), -EIO);
	ck_assert_int_eq(bio_pread(meta, &c, 1, 0), -EIO);
	ck_assert_int_eq(bio_flush(meta), -EIO);
	ck_assert_int_eq(bio_pwrite(plain, &c, 1, 0), 0);
	ck_assert_int_eq(bio_flush(plain), 0);
	ck_assert_int_eq(bio_will_read(src, 0, 10), -EROFS);
	ck_assert_int_eq(bio_will_read(dst, 0, 10), 0);
	bio_fault_clear();
	ck_assert_int_eq(bio_pread(src, &c, 1, 0), 0);
	close(src);
	close(dst);
	close(meta);
	close(plain);
}
END_TEST

START_TEST(test_at_range)
{
	int fd = tmpfile_fd("at", BIO_SOURCE);
	char buf[4096] = { 0 };

	ck_assert_int_eq(bio_pwrite(fd, buf, sizeof(buf), 0), 0);
	ck_assert_int_eq(bio_fault_set("source:read:eio:at=1000+10", NULL, 0), 0);
	ck_assert_int_eq(bio_pread(fd, buf, 1000, 0), 0);       /* ends at 1000 */
	ck_assert_int_eq(bio_pread(fd, buf, 1, 1010), 0);       /* starts past */
	ck_assert_int_eq(bio_pread(fd, buf, 1001, 0), -EIO);    /* touches 1000 */
	ck_assert_int_eq(bio_pread(fd, buf, 1, 1009), -EIO);
	ck_assert_int_eq(bio_pread(fd, buf, 4096, 0), -EIO);
	ck_assert_int_eq(bio_will_read(fd, 900, 200), -EIO);
	close(fd);
}
END_TEST

START_TEST(test_prob_is_seeded)
{
	int fd = tmpfile_fd("prob", BIO_DEST);
	int fails = 0;

	ck_assert_int_eq(bio_fault_set("dest:write:eio:prob=0.25", NULL, 0), 0);
	for (int i = 0; i < 4000; i++)
		fails += bio_pwrite(fd, "z", 1, 0) == -EIO;
	ck_assert_int_gt(fails, 800);
	ck_assert_int_lt(fails, 1200);
	ck_assert_int_eq(bio_fault_set("dest:write:eio:prob=0", NULL, 0), 0);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(bio_pwrite(fd, "z", 1, 0), 0);
	close(fd);
}
END_TEST

START_TEST(test_fallocate_counts_as_write)
{
	int fd = tmpfile_fd("falloc", BIO_DEST);
	char buf[8192];

	memset(buf, 7, sizeof(buf));
	ck_assert_int_eq(bio_pwrite(fd, buf, sizeof(buf), 0), 0);
	ck_assert_int_eq(bio_fault_set("dest:write:enospc:once", NULL, 0), 0);
	ck_assert_int_eq(bio_fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				       0, 4096), -ENOSPC);
	ck_assert_int_eq(bio_fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				       0, 4096), 0);
	ck_assert_int_eq(bio_pread(fd, buf, 4096, 0), 0);
	for (int i = 0; i < 4096; i++)
		ck_assert_int_eq(buf[i], 0);
	/* while recording, reflinks are refused so that callers copy */
	ck_assert(bio_logging());
	ck_assert_int_eq(bio_clone_range(fd, fd, 0, 4096), -EOPNOTSUPP);
	close(fd);
}
END_TEST

/*
 * The rules file is read at start-up only when named in the environment, so
 * this runs in a fresh process: this binary again, with --faults-file-child.
 */
static int write_rules(const char *path, const char *text)
{
	char tmp[4300];

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (!g_file_set_contents(tmp, text, -1, NULL) || rename(tmp, path))
		return 1;
	return 0;
}

static int faults_file_child(const char *path)
{
	int fd = open(path, O_RDONLY), bad = 0;
	char c;

	/* the file's rules are in force; CLONEFS_FAULTS is ignored */
	bio_set_role(fd, BIO_SOURCE);
	bad += bio_pread(fd, &c, 1, 0) != -EIO;
	bad += write_rules(path, "# cleared\n");
	bad += bio_pread(fd, &c, 1, 0) != 0;
	bad += write_rules(path, "source:read:enospc\n");
	bad += bio_pread(fd, &c, 1, 0) != -ENOSPC;
	unlink(path); /* missing: no faults */
	bad += bio_pread(fd, &c, 1, 0) != 0;
	bad += write_rules(path, "source:read:bogus\n"); /* bad: no faults */
	bad += bio_pread(fd, &c, 1, 0) != 0;
	if (bad)
		fprintf(stderr, "faults file child: %d checks failed\n", bad);
	return bad;
}

START_TEST(test_faults_file_reload)
{
	char path[4300], self[4300], *argv[4];
	gint status;
	GError *e = NULL;
	gchar **env;
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	ck_assert_int_gt(n, 0);
	self[n] = '\0';
	snprintf(path, sizeof(path), "%s/rules", dir);
	ck_assert_int_eq(write_rules(path, "source:read:eio\n"), 0);
	env = g_get_environ();
	env = g_environ_setenv(env, "CLONEFS_FAULTS_FILE", path, TRUE);
	env = g_environ_setenv(env, "CLONEFS_FAULTS", "dest:write:eio", TRUE);
	env = g_environ_unsetenv(env, "CLONEFS_WRITELOG");
	argv[0] = self;
	argv[1] = "--faults-file-child";
	argv[2] = path;
	argv[3] = NULL;
	ck_assert(g_spawn_sync(NULL, argv, env, G_SPAWN_DEFAULT, NULL, NULL, NULL,
			       NULL, &status, &e));
	ck_assert_msg(g_spawn_check_wait_status(status, NULL), "child failed: %d", status);
	g_strfreev(env);
}
END_TEST

/* Read the whole log and find records by type and role. */
struct rec {
	int type, role;
	uint64_t seq, ts, a, b;
	const uint8_t *data;
};

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static GArray *read_log(gchar **buf, gsize *len)
{
	GArray *recs = g_array_new(FALSE, FALSE, sizeof(struct rec));
	gsize off = 16;

	ck_assert(g_file_get_contents(logpath, buf, len, NULL));
	ck_assert_uint_ge(*len, 16);
	ck_assert(!memcmp(*buf, "CFSWLOG1", 8));
	while (off + 48 <= *len) {
		const uint8_t *h = (const uint8_t *)*buf + off;
		struct rec r = { h[4], h[5], get64(h + 16), get64(h + 24), get64(h + 32),
				 get64(h + 40), h + 48 };

		ck_assert_uint_eq(get64(h) & 0xffffffffu, 0x31524c57u);
		g_array_append_val(recs, r);
		off += 48 + (r.type == 1 || r.type == 5 ? r.b : 0);
	}
	ck_assert_uint_eq(off, *len);
	return recs;
}

START_TEST(test_write_log)
{
	int fd = tmpfile_fd("logged", BIO_META);
	int plain = tmpfile_fd("notlogged", BIO_META);
	gchar *buf;
	gsize len;
	GArray *recs;
	int found = 0;
	uint64_t write_pos = 0, last_ts = 0;

	bio_forget(plain);
	ck_assert_int_eq(bio_pwrite(plain, "nope", 4, 0), 0);
	ck_assert_int_eq(bio_pwrite(fd, "hello", 5, 12345), 0);
	ck_assert_int_eq(bio_flush(fd), 0);
	ck_assert_int_eq(bio_fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
				       0, 4096), 0);
	bio_log_mark("checkpoint");
	ck_assert_int_eq(bio_fault_set("meta:write:eio", NULL, 0), 0);
	ck_assert_int_eq(bio_pwrite(fd, "fail", 4, 0), -EIO); /* not recorded */
	bio_fault_clear();

	recs = read_log(&buf, &len);
	for (guint i = 0; i < recs->len; i++) {
		struct rec *r = &g_array_index(recs, struct rec, i);

		ck_assert_uint_ge(r->ts, last_ts);
		last_ts = r->ts;
		if (r->type == 1 && r->b == 4)
			ck_assert_msg(0, "a failed or untagged write was logged");
		if (r->type == 1 && r->a == 12345) {
			ck_assert_int_eq(r->role, BIO_META);
			ck_assert_uint_eq(r->b, 5);
			ck_assert(!memcmp(r->data, "hello", 5));
			write_pos = (uint64_t)(r->data - 48 - (const uint8_t *)buf);
			found |= 1;
		} else if (r->type == 2 && found == 1) {
			/* the flush covers the write before it */
			ck_assert_int_eq(r->role, BIO_META);
			ck_assert_uint_gt(r->a, write_pos);
			found |= 2;
		} else if (r->type == 3 && found == 3) {
			ck_assert_uint_eq(r->a, 0);
			ck_assert_uint_eq(r->b, 4096);
			found |= 4;
		} else if (r->type == 5 && found == 7) {
			ck_assert_uint_eq(r->b, 10);
			ck_assert(!memcmp(r->data, "checkpoint", 10));
			found |= 8;
		}
	}
	ck_assert_int_eq(found, 15);
	g_array_free(recs, TRUE);
	g_free(buf);
	close(fd);
	close(plain);
}
END_TEST

static Suite *blockio_suite(void)
{
	Suite *s = suite_create("blockio");
	TCase *tc = tcase_create("io");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_plain_io);
	tcase_add_test(tc, test_parse);
	tcase_add_test(tc, test_after_count_once);
	tcase_add_test(tc, test_roles_and_untagged);
	tcase_add_test(tc, test_at_range);
	tcase_add_test(tc, test_prob_is_seeded);
	tcase_add_test(tc, test_fallocate_counts_as_write);
	tcase_add_test(tc, test_faults_file_reload);
	tcase_add_test(tc, test_write_log);
	suite_add_tcase(s, tc);
	return s;
}

int main(int argc, char **argv)
{
	SRunner *sr;
	int failed;

	if (argc == 3 && !strcmp(argv[1], "--faults-file-child"))
		return faults_file_child(argv[2]);
	if (!mkdtemp(dir))
		return 1;
	snprintf(logpath, sizeof(logpath), "%s/writelog", dir);
	setenv("CLONEFS_WRITELOG", logpath, 1);
	unsetenv("CLONEFS_FAULTS");
	unsetenv("CLONEFS_FAULTS_FILE");
	setenv("CLONEFS_FAULT_SEED", "42", 1);
	sr = srunner_create(blockio_suite());
	/* no fork: the log is shared, and the tests are cheap */
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	{
		char cmd[4300];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd))
			failed++;
	}
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
