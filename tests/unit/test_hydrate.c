/*
 * test_hydrate.c - the hydration engine without the clone policy: copies
 * from a SOURCE that shrank (spec 1.4), sparse copies (3.5), range locks
 * (2.10), the rate limit's arithmetic (3.7) and teardown.
 */
#include "clonefs/blockio.h"
#include "clonefs/hydrate.h"
#include "clonefs/metadata.h"
#include "clonefs/options.h"

#include "unit.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define RS 65536u
#define NR 8u

static char *dir, *src, *dst, *meta;
static int src_fd = -1, stream_fd = -1, write_fd = -1, dest_fd = -1;
static struct md *md;
static struct hydrate *hy;
static char *model; /* SOURCE's bytes at mount */
static uint64_t image_size;

static void setup(void)
{
	bio_fault_clear();
	dir = g_dir_make_tmp("clonefs-hydrate-XXXXXX", NULL);
	src = g_build_filename(dir, "src", NULL);
	dst = g_build_filename(dir, "dest", NULL);
	meta = g_build_filename(dir, "meta", NULL);
}

static void teardown(void)
{
	if (hy)
		hydrate_free(hy);
	hy = NULL;
	if (md)
		md_close(md);
	md = NULL;
	int fds[] = { src_fd, stream_fd, write_fd, dest_fd };

	for (size_t i = 0; i < G_N_ELEMENTS(fds); i++)
		if (fds[i] >= 0) {
			bio_forget(fds[i]);
			close(fds[i]);
		}
	src_fd = stream_fd = write_fd = dest_fd = -1;
	unlink(src);
	unlink(dst);
	unlink(meta);
	rmdir(dir);
	g_free(src);
	g_free(dst);
	g_free(meta);
	g_free(dir);
	g_free(model);
	model = NULL;
}

/* SOURCE of @size bytes: random data in the regions set in @data_mask,
 * holes elsewhere (a hole at the end stays a hole: ftruncate). */
static void make_source(uint64_t size, unsigned data_mask)
{
	int fd = open(src, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	ck_assert_int_ge(fd, 0);
	image_size = size;
	model = g_malloc0(size);
	for (uint64_t r = 0; r * RS < size; r++) {
		uint64_t len = MIN((uint64_t)RS, size - r * RS);

		if (!(data_mask & 1u << r))
			continue;
		for (uint64_t i = 0; i < len; i++)
			model[r * RS + i] = (char)(g_random_int() | 1);
		ck_assert_int_eq(pwrite(fd, model + r * RS, len, (off_t)(r * RS)),
				 (ssize_t)len);
	}
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

/* The engine over SOURCE as clone_open sets it up; not started. */
static void open_engine(bool background, uint64_t rate)
{
	struct md_geometry geo = { RS, (image_size + RS - 1) / RS };
	struct clone_options o;
	struct hydrate_target t;
	char err[256];

	options_defaults(&o);
	o.region_size = RS;
	o.no_hydration = !background;
	o.hydration_rate = rate;
	src_fd = open(src, O_RDONLY);
	stream_fd = open(src, O_RDONLY);
	write_fd = open(src, O_RDONLY);
	dest_fd = open(dst, O_RDWR | O_CREAT, 0600);
	ck_assert(src_fd >= 0 && stream_fd >= 0 && write_fd >= 0 && dest_fd >= 0);
	ck_assert_int_eq(ftruncate(dest_fd, (off_t)image_size), 0);
	bio_set_role(dest_fd, BIO_DEST);
	ck_assert_msg(md_open(meta, &geo, false, &md, err, sizeof(err)) == 0,
		      "md_open: %s", err);
	t = (struct hydrate_target){
		.src_fd = src_fd, .stream_fd = stream_fd, .write_fd = write_fd,
		.dest_fd = dest_fd, .md = md, .image_size = image_size,
		.region_size = RS, .nr_regions = geo.region_count,
	};
	hy = hydrate_new(&t, &o);
	ck_assert_int_eq(hydrate_start(hy), 0);
}

static void shrink_source(uint64_t size)
{
	ck_assert_int_eq(truncate(src, (off_t)size), 0);
}

static struct hydrate_stats stats(void)
{
	struct hydrate_stats st;

	hydrate_get_stats(hy, &st);
	return st;
}

/* Until @cond holds, at most @ms milliseconds. */
static bool wait_for(bool (*cond)(void), int ms)
{
	gint64 deadline = g_get_monotonic_time() + (gint64)ms * 1000;

	while (!cond()) {
		if (g_get_monotonic_time() > deadline)
			return false;
		g_usleep(5000);
	}
	return true;
}

static bool dest_matches(uint64_t off, uint64_t len)
{
	char *buf = g_malloc(len);
	bool same = pread(dest_fd, buf, len, (off_t)off) == (ssize_t)len &&
		    !memcmp(buf, model + off, len);

	g_free(buf);
	return same;
}

/* DEST holds no data in [off, off + len). */
static bool dest_hole(uint64_t off, uint64_t len)
{
	off_t d = lseek(dest_fd, (off_t)off, SEEK_DATA);

	return (d < 0 && errno == ENXIO) || (uint64_t)d >= off + len;
}

/* ---- blockio: short reads of SOURCE ---- */

START_TEST(short_read_of_source_is_eio)
{
	int fd = open(dst, O_RDWR | O_CREAT, 0600);
	char buf[200];

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, "abc", 3, 0), 3);
	/* DEST, META and untagged files read zeros past their end */
	memset(buf, 1, sizeof(buf));
	ck_assert_int_eq(bio_pread(fd, buf, 100, 0), 0);
	ck_assert(buf[2] == 'c' && buf[3] == 0 && buf[99] == 0);
	bio_set_role(fd, BIO_DEST);
	ck_assert_int_eq(bio_pread(fd, buf, 100, 50), 0);
	ck_assert_int_eq(bio_will_read(fd, 0, 100), 0);
	/* SOURCE's end inside a read is an error, not zeros */
	bio_set_role(fd, BIO_SOURCE);
	ck_assert_int_eq(bio_pread(fd, buf, 3, 0), 0);
	ck_assert_int_eq(bio_pread(fd, buf, 4, 0), -EIO);
	ck_assert_int_eq(bio_pread(fd, buf, 1, 10), -EIO);
	/* and so do the reads libfuse splices from it */
	ck_assert_int_eq(bio_will_read(fd, 0, 3), 0);
	ck_assert_int_eq(bio_will_read(fd, 1, 3), -EIO);
	bio_forget(fd);
	close(fd);
}
END_TEST

/* ---- item 7: a SOURCE that shrinks is not hydrated as zeros ---- */

START_TEST(shrunk_source_copy_fails)
{
	char data[100];
	struct hydrate_stats st;

	make_source(NR * RS, 0xff);
	open_engine(false, 0);
	shrink_source(3 * RS + RS / 2);
	memset(data, 'w', sizeof(data));
	hydrate_lock(hy, 0, NR);
	ck_assert_int_eq(hydrate_copy(hy, 0, 1), 0);
	ck_assert(dest_matches(0, RS));
	/* region 3 is cut in half, regions 4.. are gone */
	ck_assert_int_eq(hydrate_copy(hy, 3, 1), -EIO);
	ck_assert_int_eq(hydrate_copy(hy, 5, 1), -EIO);
	ck_assert_int_eq(hydrate_copy(hy, 2, 3), -EIO);
	ck_assert_int_eq(hydrate_copy_write(hy, 6, data, 6 * RS + 10, sizeof(data)), -EIO);
	ck_assert_int_eq(hydrate_copy_write(hy, 3, data, 3 * RS, sizeof(data)), -EIO);
	hydrate_unlock(hy, 0, NR);
	st = stats();
	ck_assert_uint_eq(st.copy_errors, 5);
	ck_assert_msg(strstr(st.last_error, "source is shorter than the image (229376 < 524288 bytes)"),
		      "last_error: %s", st.last_error);
	ck_assert(dest_hole(4 * RS, 4 * RS)); /* nothing taken for zeros */
	ck_assert_uint_eq(md_nr_hydrated(md), 0);
}
END_TEST

/* The ENXIO of SEEK_DATA past SOURCE's new end is not a hole. */
START_TEST(shrunk_sparse_source_copy_fails)
{
	make_source(NR * RS, 0x3); /* data in regions 0-1, a hole to the end */
	open_engine(false, 0);
	hydrate_lock(hy, 0, NR);
	ck_assert_int_eq(hydrate_copy(hy, 6, 2), 0); /* a real hole: fine */
	shrink_source(4 * RS);
	ck_assert_int_eq(hydrate_copy(hy, 3, 1), 0); /* still inside */
	ck_assert_int_eq(hydrate_copy(hy, 6, 1), -EIO);
	ck_assert_int_eq(hydrate_copy(hy, 3, 2), -EIO);
	shrink_source(RS + 100);
	ck_assert_int_eq(hydrate_copy(hy, 1, 1), -EIO); /* data, then the end */
	hydrate_unlock(hy, 0, NR);
	ck_assert_uint_eq(stats().copy_errors, 3);
}
END_TEST

static bool regions_0_to_2_hydrated(void)
{
	return md_range_hydrated(md, 0, 3);
}

static bool errors_counted(void)
{
	return stats().copy_errors >= 2;
}

/* Background copies of the regions SOURCE lost fail, are retried, and
 * never mark them; the others hydrate. */
START_TEST(shrunk_source_background)
{
	struct hydrate_stats st;

	make_source(NR * RS, 0xff);
	shrink_source(3 * RS + 100);
	open_engine(true, 0);
	ck_assert(wait_for(regions_0_to_2_hydrated, 10000));
	ck_assert(wait_for(errors_counted, 10000)); /* a retry after back-off */
	st = stats();
	ck_assert_msg(strstr(st.last_error, "source is shorter than the image"),
		      "last_error: %s", st.last_error);
	hydrate_stop(hy);
	ck_assert(dest_matches(0, 3 * RS));
	for (uint64_t r = 3; r < NR; r++)
		ck_assert_msg(!md_region_hydrated(md, r), "region %lu marked", r);
	ck_assert_uint_eq(md_nr_hydrated(md), 3);
}
END_TEST

static bool all_hydrated(void)
{
	return md_all_hydrated(md);
}

/* Holes, a trailing one included, hydrate without a copy (spec 3.5). */
START_TEST(sparse_source_hydrates_holes)
{
	make_source(NR * RS - 1000, 0x11); /* data in regions 0 and 4 */
	open_engine(true, 0);
	ck_assert(wait_for(all_hydrated, 10000));
	hydrate_stop(hy);
	ck_assert_uint_eq(stats().copy_errors, 0);
	ck_assert_uint_eq(stats().copied_bytes, 2 * RS);
	ck_assert(dest_matches(0, image_size));
	ck_assert(dest_hole(RS, 3 * RS));
	ck_assert(dest_hole(5 * RS, image_size - 5 * RS));
}
END_TEST

/* ---- item 5: range locks ---- */

struct locker {
	uint64_t first, n;
	int got; /* atomic */
};

static gpointer lock_thread(gpointer arg)
{
	struct locker *l = arg;

	hydrate_lock(hy, l->first, l->n);
	g_atomic_int_set(&l->got, 1);
	return NULL;
}

/* Start a thread locking [first, first + n); did it get the lock within
 * @ms? (It keeps trying if not: see finish_locker.) */
static GThread *start_locker(struct locker *l, uint64_t first, uint64_t n, int ms)
{
	GThread *t;
	gint64 deadline = g_get_monotonic_time() + (gint64)ms * 1000;

	*l = (struct locker){ first, n, 0 };
	t = g_thread_new("locker", lock_thread, l);
	while (!g_atomic_int_get(&l->got) && g_get_monotonic_time() < deadline)
		g_usleep(2000);
	return t;
}

static void finish_locker(GThread *t, struct locker *l)
{
	g_thread_join(t);
	ck_assert(g_atomic_int_get(&l->got));
	hydrate_unlock(hy, l->first, l->n);
}

START_TEST(range_lock_contention)
{
	struct locker a, b, c;
	GThread *ta, *tb, *tc;

	make_source(NR * RS, 0);
	open_engine(false, 0);
	hydrate_lock(hy, 10, 10); /* [10, 20) */
	/* neighbours on both sides are free */
	hydrate_lock(hy, 0, 10);
	hydrate_lock(hy, 20, 5);
	hydrate_unlock(hy, 0, 10);
	/* any overlap waits: one region inside, a range across the start */
	ta = start_locker(&a, 15, 1, 100);
	tb = start_locker(&b, 5, 6, 100);
	tc = start_locker(&c, 25, 1000, 100); /* free: after [20, 25) */
	ck_assert(!g_atomic_int_get(&a.got));
	ck_assert(!g_atomic_int_get(&b.got));
	ck_assert(g_atomic_int_get(&c.got));
	finish_locker(tc, &c);
	hydrate_unlock(hy, 20, 5);
	ck_assert(!g_atomic_int_get(&a.got));
	hydrate_unlock(hy, 10, 10);
	finish_locker(ta, &a);
	finish_locker(tb, &b);
	/* regions beyond 2^40 and a range of 2^40 regions */
	hydrate_lock(hy, (1ULL << 40) - 1, 2);
	ta = start_locker(&a, 1ULL << 40, 1ULL << 40, 100);
	ck_assert(!g_atomic_int_get(&a.got));
	hydrate_unlock(hy, (1ULL << 40) - 1, 2);
	finish_locker(ta, &a);
}
END_TEST

/* A lock is O(1) memory in the regions it covers: one per region took
 * 64 MiB for these 4M (a 16 GiB discard at 4 KiB regions). */
static size_t heap_used(void)
{
	struct mallinfo2 m = mallinfo2();

	return m.uordblks + m.hblkhd; /* big blocks are mapped */
}

START_TEST(range_lock_memory)
{
	size_t m0;

	make_source(NR * RS, 0);
	open_engine(false, 0);
	m0 = heap_used();
	hydrate_lock(hy, 0, 1u << 22);
	ck_assert_msg(heap_used() < m0 + 4096, "a lock took %zu bytes",
		      heap_used() - m0);
	hydrate_lock(hy, 1ULL << 23, 1ULL << 50);
	ck_assert_msg(heap_used() < m0 + 4096, "locks took %zu bytes",
		      heap_used() - m0);
	hydrate_unlock(hy, 0, 1u << 22);
	hydrate_unlock(hy, 1ULL << 23, 1ULL << 50);
}
END_TEST

static bool outside_9_hydrated(void)
{
	return md_range_hydrated(md, 0, 9) && md_range_hydrated(md, 10, 22);
}

static bool outside_2_to_6_hydrated(void)
{
	return md_range_hydrated(md, 0, 2) && md_range_hydrated(md, 6, NR - 6);
}

/* The background copier skips locked ranges and takes them once free. */
START_TEST(background_skips_locked_ranges)
{
	make_source(NR * RS, 0xff);
	open_engine(false, 0);
	hydrate_lock(hy, 2, 4);
	hydrate_set_enabled(hy, true);
	ck_assert(wait_for(outside_2_to_6_hydrated, 10000));
	g_usleep(100 * 1000);
	for (uint64_t r = 2; r < 6; r++)
		ck_assert(!md_region_hydrated(md, r));
	hydrate_unlock(hy, 2, 4);
	ck_assert(wait_for(all_hydrated, 10000));
	hydrate_stop(hy);
	ck_assert(dest_matches(0, image_size));
	ck_assert_uint_eq(stats().copy_errors, 0);
}
END_TEST

/* ---- the rate limit (spec 3.7) ---- */

START_TEST(rate_delay_does_not_overflow)
{
	/* 17180 regions of 1 GiB at 1 TB/s: bytes * 10^6 wraps 2^64 */
	ck_assert_int_eq(hydrate_rate_delay_us(17180ULL << 30, 1000000000000ULL),
			 18446884);
	/* 2^58 bytes * 10^6 is 0 modulo 2^64 */
	ck_assert_int_eq(hydrate_rate_delay_us(1ULL << 58, 1ULL << 40),
			 (int64_t)(1ULL << 18) * 1000000);
	ck_assert_int_eq(hydrate_rate_delay_us(UINT64_MAX, 1), INT64_MAX);
	ck_assert_int_eq(hydrate_rate_delay_us(65536, 65536), 1000000);
	ck_assert_int_eq(hydrate_rate_delay_us(65536, UINT64_MAX), 0);
	ck_assert_int_eq(hydrate_rate_delay_us(65536, 0), 0);
}
END_TEST

static bool first_region_hydrated(void)
{
	return md_region_hydrated(md, 0);
}

static bool regions_0_to_1_hydrated(void)
{
	return md_range_hydrated(md, 0, 2);
}

/* Paced at a region per 2 s, the second batch waits about 2 s. */
START_TEST(rate_limit_paces_batches)
{
	make_source(NR * RS, 0xff);
	open_engine(false, RS / 2);
	hydrate_set_batch_size(hy, 1);
	hydrate_set_enabled(hy, true);
	ck_assert(wait_for(first_region_hydrated, 5000));
	g_usleep(400 * 1000);
	ck_assert_uint_eq(md_nr_hydrated(md), 1);
	ck_assert(wait_for(regions_0_to_1_hydrated, 5000));
}
END_TEST

static bool all_regions_hydrated(void)
{
	return md_all_hydrated(md);
}

/*
 * The rate limit counts bytes read from SOURCE, not holes (spec 3.7): 32
 * regions holding 2 of data, at 2 regions a second, hydrate in about a
 * second (the data's time), not 16 (the image's). Not faster either: the
 * limit still holds for the data.
 */
START_TEST(rate_limit_counts_data_not_holes)
{
	gint64 t0;
	double s;

	make_source(32 * RS, 1u << 3 | 1u << 27);
	open_engine(false, 2 * RS);
	hydrate_set_batch_size(hy, 4);
	t0 = g_get_monotonic_time();
	hydrate_set_enabled(hy, true);
	ck_assert_msg(wait_for(all_regions_hydrated, 6000),
		      "%" PRIu64 " of 32 regions after 6 s",
		      (uint64_t)md_nr_hydrated(md));
	s = (double)(g_get_monotonic_time() - t0) / G_USEC_PER_SEC;
	ck_assert_msg(s >= 0.9, "2 regions of data at 2 regions/s in %.2f s", s);
	hydrate_stop(hy);
	ck_assert(dest_matches(0, image_size));
	ck_assert(dest_hole(4 * RS, 23 * RS));
	ck_assert_uint_eq(stats().copied_bytes, 2 * RS);
}
END_TEST

/* ---- DEST's dirty data (spec 3.8) ---- */

/* cachestat(2), Linux 6.5: not in every libc's headers yet */
#define NR_CACHESTAT 451
struct cs_range { uint64_t off, len; };
struct cs { uint64_t cache, dirty, writeback, evicted, recently_evicted; };

/* Pages of @fd dirty or in write-out, or -1 where the kernel cannot say. */
static int64_t unwritten_pages(int fd)
{
	struct cs_range r = { 0, 0 };
	struct cs c;

	if (syscall(NR_CACHESTAT, fd, &r, &c, 0))
		return -1;
	return (int64_t)(c.dirty + c.writeback);
}

/* SOURCE of @size bytes of random data, fast. */
static void make_dense_source(uint64_t size)
{
	int fd = open(src, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	ck_assert_int_ge(fd, 0);
	image_size = size;
	model = g_malloc(size);
	for (uint64_t i = 0; i < size / 8; i++)
		((uint64_t *)model)[i] = (uint64_t)g_random_int() << 32 | g_random_int() | 1;
	ck_assert_int_eq(pwrite(fd, model, size, 0), (ssize_t)size);
	close(fd);
}

static bool dest_has_data(void)
{
	return md_nr_hydrated(md) > 0;
}

/*
 * Background copies write DEST out behind themselves: 32 MiB copied with
 * no flush leave at most a few MiB dirty or in write-out (4 workers, 2
 * chunks of 256 KiB each), not the 32 MiB the kernel's flusher would take
 * 30 s to start on. Sampled while copying and at the end.
 */
START_TEST(copies_leave_little_dirty)
{
	const uint64_t size = 32u << 20, bound = (4u << 20) / 4096;
	int64_t most = 0, n;

	make_dense_source(size);
	open_engine(false, 0);
	if (unwritten_pages(dest_fd) < 0) {
		fprintf(stderr, "copies_leave_little_dirty: no cachestat(2), skipped\n");
		return;
	}
	hydrate_set_enabled(hy, true);
	ck_assert(wait_for(dest_has_data, 10000));
	while (!md_all_hydrated(md)) {
		n = unwritten_pages(dest_fd);
		most = MAX(most, n);
		g_usleep(2000);
	}
	n = unwritten_pages(dest_fd);
	most = MAX(most, n);
	ck_assert_msg((uint64_t)most <= bound,
		      "%" PRId64 " pages dirty or in write-out (bound %" PRIu64 ")",
		      most, bound);
	hydrate_stop(hy);
	ck_assert(dest_matches(0, image_size));
}
END_TEST

/*
 * While a foreground flush waits, copies go on a region per 20 ms (never
 * zero, spec 3.1a): in 200 ms, about 10 of the 128 regions a copy
 * unhindered does in a few tens of ms. Then they go on at full speed.
 */
START_TEST(copies_pause_for_flushes)
{
	make_dense_source(8u << 20);
	open_engine(false, 0);
	hydrate_flush_begin(hy);
	hydrate_set_enabled(hy, true);
	ck_assert(wait_for(dest_has_data, 10000));
	g_usleep(200 * 1000);
	ck_assert_msg(md_nr_hydrated(md) <= 32, "%" PRIu64 " regions of 128",
		      (uint64_t)md_nr_hydrated(md));
	hydrate_flush_end(hy);
	ck_assert(wait_for(all_regions_hydrated, 10000));
	hydrate_stop(hy);
	ck_assert(dest_matches(0, image_size));
}
END_TEST

/* ---- teardown (clone_close: stop, final commit, free) ---- */

START_TEST(calls_between_stop_and_free)
{
	struct hydrate_stats st;
	uint64_t n;

	make_source(NR * RS, 0xff);
	open_engine(true, 0);
	hydrate_set_copy_on_read(hy, true);
	hydrate_stop(hy);
	hydrate_stop(hy); /* idempotent */
	/* what a failed final commit does */
	hydrate_kick(hy);
	hydrate_get_stats(hy, &st);
	hydrate_queue(hy, 3);
	hydrate_set_enabled(hy, true);
	/* nothing copies behind our back any more */
	n = md_nr_hydrated(md);
	g_usleep(200 * 1000);
	ck_assert_uint_eq(md_nr_hydrated(md), n);
	/* a write's copy still works without the workers */
	hydrate_lock(hy, NR - 1, 1);
	ck_assert_int_eq(hydrate_copy(hy, NR - 1, 1), 0);
	hydrate_unlock(hy, NR - 1, 1);
	hydrate_free(hy);
	hy = NULL;
}
END_TEST

/* An engine never started (read-only mounts) stops and frees too. */
START_TEST(stop_without_start)
{
	struct md_geometry geo = { RS, NR };
	struct clone_options o;
	struct hydrate_target t = { .src_fd = -1, .stream_fd = -1, .write_fd = -1,
				    .dest_fd = -1, .image_size = NR * RS,
				    .region_size = RS, .nr_regions = NR };
	char err[256];

	ck_assert_int_eq(md_open(meta, &geo, false, &md, err, sizeof(err)), 0);
	t.md = md;
	options_defaults(&o);
	hy = hydrate_new(&t, &o);
	hydrate_stop(hy);
	hydrate_kick(hy);
	hydrate_stop(hy);
	hydrate_free(hy);
	hy = NULL;
}
END_TEST


/* ---- reads as hints, prefetching (spec 3.9) ---- */

static GArray *copied_order; /* regions, in the order batches finished */

/* Called by workers with the engine's lock held. */
static void record_batch(void *arg, uint64_t first, uint64_t n)
{
	(void)arg;
	for (uint64_t r = first; r < first + n; r++)
		g_array_append_val(copied_order, r);
}

/* 32 regions, the engine stopped, then one region per batch and in flight:
 * the order of copies is the order regions are picked. */
static void open_ordered_engine(void)
{
	make_source(32 * RS, 0xffffffffu);
	open_engine(false, 0);
	copied_order = g_array_new(FALSE, FALSE, sizeof(uint64_t));
	hydrate_set_threshold(hy, 1);
	hydrate_set_batch_size(hy, 1);
	hydrate_on_batch(hy, record_batch, NULL);
}

static void assert_order(const uint64_t *want, size_t n)
{
	GString *got = g_string_new(NULL);

	for (guint i = 0; i < copied_order->len; i++)
		g_string_append_printf(got, " %" PRIu64,
				       g_array_index(copied_order, uint64_t, i));
	ck_assert_msg(copied_order->len == n, "copied:%s", got->str);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(g_array_index(copied_order, uint64_t, i) == want[i],
			      "copy %zu: copied:%s", i, got->str);
	g_string_free(got, TRUE);
	g_array_free(copied_order, TRUE);
	copied_order = NULL;
}

/* Read-ahead windows first (newest first), then the regions read, then
 * the prefetch profile in its order, then the sweep from region 0, which
 * the others did not move; every region copied once. */
START_TEST(hints_then_prefetch_then_sweep)
{
	const struct profile_run pf[] = { { 30, 1 }, { 15, 2 }, { 5, 1 } };
	/* 21 continues the stream 20 began: a window of HINT_WINDOW_MIN, 4
	 * regions of 64 KiB, after it; 2 starts another stream: no window */
	const uint64_t want[] = { 22, 23, 24, 25, 20, 21, 2, 30, 15, 16, 5,
				  0, 1, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14,
				  17, 18, 19, 26, 27, 28, 29, 31 };
	struct hydrate_stats st;

	open_ordered_engine();
	hydrate_set_prefetch(hy, pf, 3);
	hydrate_hint(hy, 20, 1);
	hydrate_hint(hy, 21, 1);
	hydrate_hint(hy, 2, 1); /* far from 21: a stream of its own */
	st = stats();
	ck_assert_uint_eq(st.prefetch_total, 4);
	ck_assert_uint_eq(st.prefetch_hydrated, 0);
	hydrate_set_enabled(hy, true);
	ck_assert(wait_for(all_hydrated, 10000));
	hydrate_stop(hy);
	assert_order(want, G_N_ELEMENTS(want));
	ck_assert(dest_matches(0, image_size));
	st = stats();
	ck_assert_uint_eq(st.prefetch_hydrated, 4);
	ck_assert_uint_eq(st.hint_regions, 7);
	ck_assert_uint_eq(st.hint_copies, 7);
}
END_TEST

/* Sequential reads grow the window; hinted regions already hydrated or
 * locked are skipped, and never copied twice. */
START_TEST(sequential_hints_grow_the_window)
{
	const uint64_t want[] = { 2, 3, 4, 5, 8, 10, 0, 1, 11, 12, 13, 14, 15, 16,
				  17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28,
				  29, 30, 31, 9 };

	open_ordered_engine();
	ck_assert_int_eq(md_set_range_hydrated(md, 6, 2), 0);
	hydrate_lock(hy, 9, 1);
	hydrate_hint(hy, 0, 1);  /* a new stream: no window yet */
	hydrate_hint(hy, 1, 1);  /* sequential: window 4, 2..5 */
	hydrate_hint(hy, 2, 1);  /* window 8, 3..10: one window 2..10 */
	hydrate_set_enabled(hy, true);
	ck_assert(wait_for(outside_9_hydrated, 10000));
	g_usleep(50 * 1000);
	ck_assert(!md_region_hydrated(md, 9));
	hydrate_unlock(hy, 9, 1);
	ck_assert(wait_for(all_hydrated, 10000));
	hydrate_stop(hy);
	assert_order(want, G_N_ELEMENTS(want)); /* 9 by the sweep, once free */
}
END_TEST

/* read_hints off: a hint changes nothing, the sweep goes in order. */
START_TEST(hints_off_keep_ascending_order)
{
	uint64_t want[32];

	open_ordered_engine();
	hydrate_set_read_hints(hy, false);
	hydrate_hint(hy, 20, 4);
	hydrate_set_enabled(hy, true);
	ck_assert(wait_for(all_hydrated, 10000));
	hydrate_stop(hy);
	for (uint64_t r = 0; r < 32; r++)
		want[r] = r;
	assert_order(want, 32);
	ck_assert_uint_eq(stats().hint_copies, 0);
}
END_TEST

/* A hint never waits for a copy: regions locked (a copy or a write in
 * progress) are hinted at once, and copied only once free. */
START_TEST(hint_does_not_wait_for_locked_regions)
{
	gint64 t0;

	make_source(NR * RS, 0xff);
	open_engine(false, 0);
	hydrate_lock(hy, 0, NR);
	hydrate_set_enabled(hy, true);
	t0 = g_get_monotonic_time();
	for (int i = 0; i < 1000; i++)
		hydrate_hint(hy, (uint64_t)i % NR, 1);
	ck_assert_int_lt(g_get_monotonic_time() - t0, G_USEC_PER_SEC);
	ck_assert_uint_eq(md_nr_hydrated(md), 0);
	hydrate_unlock(hy, 0, NR);
	ck_assert(wait_for(all_hydrated, 10000));
	hydrate_stop(hy);
	ck_assert(dest_matches(0, image_size));
}
END_TEST

/* A new prefetch list replaces the old; regions already hydrated count as
 * prefetched and are not copied again. */
START_TEST(prefetch_replaced_and_skips_hydrated)
{
	const struct profile_run a[] = { { 25, 4 } }, b[] = { { 3, 2 }, { 10, 1 } };
	const uint64_t want[] = { 4, 0, 1, 2 };
	struct hydrate_stats st;

	open_ordered_engine();
	hydrate_set_prefetch(hy, a, 1);
	ck_assert_int_eq(md_set_range_hydrated(md, 3, 1), 0);
	ck_assert_int_eq(md_set_range_hydrated(md, 5, 27), 0);
	hydrate_set_prefetch(hy, b, 2);
	st = stats();
	ck_assert_uint_eq(st.prefetch_total, 3);
	ck_assert_uint_eq(st.prefetch_hydrated, 2); /* 3 and 10 */
	hydrate_set_enabled(hy, true);
	ck_assert(wait_for(all_hydrated, 10000));
	hydrate_stop(hy);
	assert_order(want, G_N_ELEMENTS(want));
	st = stats();
	ck_assert_uint_eq(st.prefetch_hydrated, 3);
	hydrate_set_prefetch(hy, NULL, 0);
	ck_assert_uint_eq(stats().prefetch_total, 0);
}
END_TEST

static Suite *hydrate_suite(void)
{
	Suite *s = suite_create("hydrate");
	TCase *tc = tcase_create("engine");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, short_read_of_source_is_eio);
	tcase_add_test(tc, shrunk_source_copy_fails);
	tcase_add_test(tc, shrunk_sparse_source_copy_fails);
	tcase_add_test(tc, shrunk_source_background);
	tcase_add_test(tc, sparse_source_hydrates_holes);
	tcase_add_test(tc, range_lock_contention);
	tcase_add_test(tc, range_lock_memory);
	tcase_add_test(tc, background_skips_locked_ranges);
	tcase_add_test(tc, rate_delay_does_not_overflow);
	tcase_add_test(tc, rate_limit_paces_batches);
	tcase_add_test(tc, rate_limit_counts_data_not_holes);
	tcase_add_test(tc, copies_leave_little_dirty);
	tcase_add_test(tc, copies_pause_for_flushes);
	tcase_add_test(tc, calls_between_stop_and_free);
	tcase_add_test(tc, stop_without_start);
	tcase_add_test(tc, hints_then_prefetch_then_sweep);
	tcase_add_test(tc, sequential_hints_grow_the_window);
	tcase_add_test(tc, hints_off_keep_ascending_order);
	tcase_add_test(tc, hint_does_not_wait_for_locked_regions);
	tcase_add_test(tc, prefetch_replaced_and_skips_hydrated);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(hydrate_suite());
}
