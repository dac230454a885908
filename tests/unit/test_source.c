/*
 * test_source.c - Check suite for src/source_nbd.c: NBD URIs, the back-off,
 * one-line errors without a server, and against nbdkit's pattern plugin
 * (every 8 bytes hold their offset, big-endian; a hole at the end through
 * the truncate filter) reads, copies in order with holes as zero extents,
 * and an injected SOURCE fault ending a copy.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "clonefs/blockio.h"
#include "clonefs/source.h"

#include "unit.h"

#include <check.h>
#include <endian.h>
#include <errno.h>
#include <glib.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DATA_SIZE (3u << 20)       /* the pattern */
#define SIZE (4u << 20)            /* then 1 MiB of zeros (truncate's) */

static char err[512];

START_TEST(uris)
{
	ck_assert(source_is_nbd_uri("nbd://host/export"));
	ck_assert(source_is_nbd_uri("nbds://host:10809/"));
	ck_assert(source_is_nbd_uri("nbd+unix:///?socket=/run/x.sock"));
	ck_assert(source_is_nbd_uri("nbds+unix:///e?socket=/s"));
	ck_assert(source_is_nbd_uri("nbd+vsock:///"));
	ck_assert(!source_is_nbd_uri("/golden/vm.img"));
	ck_assert(!source_is_nbd_uri("nbd.img"));
	ck_assert(!source_is_nbd_uri("./nbd://x"));
	ck_assert(!source_is_nbd_uri("http://host/disk.img"));
	ck_assert(!source_is_nbd_uri(""));
}
END_TEST

START_TEST(backoff)
{
	ck_assert_int_eq(nbd_source_backoff_us(1), 100000);
	ck_assert_int_eq(nbd_source_backoff_us(2), 200000);
	ck_assert_int_eq(nbd_source_backoff_us(6), 3200000);
	ck_assert_int_eq(nbd_source_backoff_us(7), 5000000);
	ck_assert_int_eq(nbd_source_backoff_us(1000), 5000000);
	ck_assert_str_eq(nbd_source_state_word(NBD_CONNECTED), "connected");
	ck_assert_str_eq(nbd_source_state_word(NBD_RETRYING), "retrying");
}
END_TEST

/* No server: one line naming SOURCE, at once, nothing left open. */
START_TEST(no_server)
{
	const char *uri = "nbd+unix:///?socket=/nonexistent/clonefs-test.sock";
	struct nbd_source *s = NULL;
	gint64 t0 = g_get_monotonic_time();
	int ret = nbd_source_open(uri, 5000, &s, err, sizeof(err));

	ck_assert_int_lt(ret, 0);
	ck_assert_ptr_null(s);
	ck_assert(g_str_has_prefix(err, "source nbd+unix:///?socket=/nonexistent"));
	ck_assert_ptr_null(strchr(err, '\n'));
	ck_assert_int_lt(g_get_monotonic_time() - t0, 2 * G_USEC_PER_SEC);
	ret = nbd_source_open("nbd://[nope", 5000, &s, err, sizeof(err));
	ck_assert_int_lt(ret, 0);
	ck_assert(g_str_has_prefix(err, "source nbd://[nope: "));
}
END_TEST

/* ---- against nbdkit ---- */

static char *dir, *uri;
static GPid server;

static void server_up(void)
{
	char *sock, *size = g_strdup_printf("size=%u", DATA_SIZE);
	char *tsize = g_strdup_printf("truncate=%u", SIZE);

	dir = g_dir_make_tmp("clonefs-source-XXXXXX", NULL);
	sock = g_build_filename(dir, "s.sock", NULL);
	char *pidfile = g_build_filename(dir, "pid", NULL);
	char *argv[] = { "nbdkit", "-f", "-r", "-U", sock, "-P", pidfile,
			 "--filter=truncate", "pattern", size, tsize, NULL };
	ck_assert(g_spawn_async(NULL, argv, NULL, G_SPAWN_SEARCH_PATH |
				G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &server, NULL));
	/* nbdkit writes its pid file once it accepts connections */
	for (int i = 0; i < 500 && access(pidfile, F_OK); i++)
		g_usleep(10000);
	ck_assert_int_eq(access(pidfile, F_OK), 0);
	g_free(pidfile);
	uri = g_strdup_printf("nbd+unix:///?socket=%s", sock);
	g_free(sock);
	g_free(size);
	g_free(tsize);
}

static void server_down(void)
{
	char *sock = g_build_filename(dir, "s.sock", NULL);

	kill(server, SIGKILL);
	waitpid(server, NULL, 0);
	g_spawn_close_pid(server);
	unlink(sock);
	g_free(sock);
	sock = g_build_filename(dir, "pid", NULL);
	unlink(sock);
	rmdir(dir);
	g_free(sock);
	g_free(dir);
	g_free(uri);
}

/* What SOURCE holds at @off (pattern, then zeros). */
static uint8_t expected(uint64_t off)
{
	uint64_t word;

	if (off >= DATA_SIZE)
		return 0;
	word = htobe64(off & ~7ull);
	return ((uint8_t *)&word)[off & 7];
}

static void check_bytes(const char *buf, uint64_t off, size_t len)
{
	for (size_t i = 0; i < len; i += 509)
		ck_assert_msg((uint8_t)buf[i] == expected(off + i), "byte %" G_GUINT64_FORMAT,
			      off + i);
	ck_assert((uint8_t)buf[len - 1] == expected(off + len - 1));
}

START_TEST(reads)
{
	struct nbd_source *s;
	char *buf = g_malloc(1 << 20);

	ck_assert_int_eq(nbd_source_open(uri, 5000, &s, err, sizeof(err)), 0);
	ck_assert_uint_eq(nbd_source_size(s), SIZE);
	ck_assert_int_eq(nbd_source_pread(s, buf, 4096, 8192), 0);
	check_bytes(buf, 8192, 4096);
	ck_assert_int_eq(nbd_source_pread(s, buf, (1 << 20) - 3, DATA_SIZE - 12345), 0);
	check_bytes(buf, DATA_SIZE - 12345, (1 << 20) - 3);
	/* past the end is an error, never zeros */
	ck_assert_int_eq(nbd_source_pread(s, buf, 4096, SIZE - 2048), -EIO);
	nbd_source_close(s);
	g_free(buf);
}
END_TEST

struct sink_log {
	uint64_t next, data_bytes, zero_bytes;
	unsigned calls;
};

static int sink_data(void *arg, const char *buf, uint64_t off, size_t len)
{
	struct sink_log *l = arg;

	ck_assert_uint_eq(off, l->next); /* in order, no gaps */
	ck_assert_uint_le(len, NBD_SOURCE_CHUNK);
	check_bytes(buf, off, len);
	l->next = off + len;
	l->data_bytes += len;
	l->calls++;
	return 0;
}

static int sink_zero(void *arg, uint64_t off, uint64_t len)
{
	struct sink_log *l = arg;

	ck_assert_uint_eq(off, l->next);
	ck_assert_uint_ge(off, DATA_SIZE); /* only the truncated tail is zero */
	l->next = off + len;
	l->zero_bytes += len;
	return 0;
}

START_TEST(copies)
{
	struct nbd_source *s;
	struct sink_log l = { .next = 65536 };
	struct nbd_sink sink = { sink_data, sink_zero, &l };
	struct nbd_source_stats st;
	uint64_t read = 0;

	ck_assert_int_eq(nbd_source_open(uri, 5000, &s, err, sizeof(err)), 0);
	ck_assert_int_eq(nbd_source_copy(s, 65536, SIZE, false, &sink, &read), 0);
	ck_assert_uint_eq(l.next, SIZE);
	ck_assert_uint_eq(read, l.data_bytes);
	ck_assert_uint_ge(l.data_bytes, DATA_SIZE - 65536);
	nbd_source_get_stats(s, &st);
	ck_assert_str_eq(nbd_source_state_word(st.state), "connected");
	ck_assert_uint_eq(st.read_errors, 0);

	/* an injected fault ends the copy before the chunk it hits */
	ck_assert_int_eq(bio_fault_set("source:read:eio:at=1048576+1", NULL, 0), 0);
	l = (struct sink_log){ .next = 0 };
	ck_assert_int_eq(nbd_source_copy(s, 0, 2 << 20, true, &sink, &read), -EIO);
	ck_assert_uint_le(l.next, 1 << 20);
	ck_assert_int_eq(nbd_source_pread(s, err, 16, 1048570), -EIO);
	bio_fault_clear();
	ck_assert_int_eq(nbd_source_pread(s, err, 16, 1048570), 0);
	nbd_source_stop(s);
	ck_assert_int_eq(nbd_source_pread(s, err, 16, 0), -EIO);
	nbd_source_close(s);
}
END_TEST

static Suite *source_suite(void)
{
	Suite *s = suite_create("source");
	TCase *tc;

	tc = tcase_create("offline");
	tcase_add_test(tc, uris);
	tcase_add_test(tc, backoff);
	tcase_add_test(tc, no_server);
	suite_add_tcase(s, tc);

	tc = tcase_create("nbdkit");
	tcase_add_checked_fixture(tc, server_up, server_down);
	tcase_add_test(tc, reads);
	tcase_add_test(tc, copies);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(source_suite());
}
