/*
 * test_clone.c - the clone policy without FUSE: region rules for reads,
 * writes and discards, persistence through commits, concurrency.
 */
#include "clonefs/blockio.h"
#include "clonefs/clone.h"
#include "clonefs/control.h"
#include "clonefs/profile.h"

#include "unit.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define RS 65536u

static char *dir, *src, *dst, *meta;
static char *model; /* SOURCE plus the writes */
static size_t image_size;

static void write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

static void setup_size(size_t size)
{
	dir = g_dir_make_tmp("clonefs-unit-XXXXXX", NULL);
	src = g_build_filename(dir, "src", NULL);
	dst = g_build_filename(dir, "dest", NULL);
	meta = g_build_filename(dir, "meta", NULL);
	image_size = size;
	model = g_malloc(size);
	for (size_t i = 0; i < size; i++)
		model[i] = (char)(g_random_int() & 0xff);
	write_file(src, model, size);
}

static void setup(void)
{
	/* 20 regions and a short last one */
	setup_size(20 * RS + 1000);
}

static void teardown(void)
{
	unlink(src);
	unlink(dst);
	unlink(meta);
	rmdir(dir);
	g_free(src);
	g_free(dst);
	g_free(meta);
	g_free(dir);
	g_free(model);
}

static struct clone *open_with(const struct clone_options *o)
{
	struct clone *c = NULL;
	char err[512];
	int ret;

	ret = clone_open(src, dst, meta, o, &c, err, sizeof(err));
	ck_assert_msg(ret == 0, "clone_open: %s", err);
	ck_assert_int_eq(clone_start(c), 0);
	return c;
}

static struct clone *open_clone(bool hydration)
{
	struct clone_options o;

	options_defaults(&o);
	o.region_size = RS;
	o.no_hydration = !hydration;
	return open_with(&o);
}

static void check_image(struct clone *c)
{
	char *buf = g_malloc(image_size);

	ck_assert_int_eq(clone_read(c, buf, image_size, 0), (ssize_t)image_size);
	ck_assert(memcmp(buf, model, image_size) == 0);
	g_free(buf);
}

static void model_write(struct clone *c, size_t off, size_t len, char byte)
{
	char *buf = g_malloc(len);

	memset(buf, byte, len);
	ck_assert_int_eq(clone_write(c, buf, len, off), (ssize_t)len);
	memcpy(model + off, buf, len);
	g_free(buf);
}

static void read_dest(size_t off, size_t len, char *out)
{
	int fd = open(dst, O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, out, len, off), (ssize_t)len);
	close(fd);
}

static uint64_t copied(struct clone *c)
{
	struct clone_status st;

	clone_get_status(c, &st);
	return st.hy.copied_bytes;
}

START_TEST(fresh_clone_reads_source)
{
	struct clone *c = open_clone(false);
	char buf[300];

	check_image(c);
	/* a read past the end is clipped; one beyond it is empty */
	ck_assert_int_eq(clone_read(c, buf, sizeof(buf), image_size - 100), 100);
	ck_assert_int_eq(clone_read(c, buf, sizeof(buf), image_size), 0);
	ck_assert_int_eq(clone_close(c), 0);
}
END_TEST

START_TEST(partial_write_hydrates_region)
{
	struct clone *c = open_clone(false);
	char *d = g_malloc(RS);

	/* the copy and the write reach DEST as one write: a second fails */
	ck_assert_int_eq(bio_fault_set("dest:write:eio:after=1", NULL, 0), 0);
	model_write(c, 3 * RS + 100, 50, 'a');
	bio_fault_clear();
	/* DEST now holds the whole region: SOURCE around the write */
	read_dest(3 * RS, RS, d);
	ck_assert(memcmp(d, model + 3 * RS, RS) == 0);
	ck_assert_uint_eq(copied(c), RS);
	check_image(c);
	ck_assert_int_eq(clone_close(c), 0);
	g_free(d);
}
END_TEST

/* Where SOURCE has a hole, a write of zeros leaves one in DEST too (spec
 * 3.5); other bytes make the region data. */
START_TEST(partial_write_over_source_hole)
{
	struct clone *c;
	int fd = open(src, O_WRONLY);
	off_t data;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				   6 * RS, 2 * RS), 0);
	close(fd);
	memset(model + 6 * RS, 0, 2 * RS);
	c = open_clone(false);
	model_write(c, 6 * RS + 100, 50, 0);
	model_write(c, 7 * RS + 100, 50, 'h');
	check_image(c);
	ck_assert_int_eq(clone_fsync(c, NULL), 0);
	fd = open(dst, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	data = lseek(fd, 6 * RS, SEEK_DATA);
	ck_assert_int_eq(data, 7 * RS);
	close(fd);
	ck_assert_int_eq(clone_close(c), 0);
}
END_TEST

START_TEST(whole_region_write_copies_nothing)
{
	struct clone *c = open_clone(false);

	model_write(c, 5 * RS, 2 * RS, 'b');
	ck_assert_uint_eq(copied(c), 0);
	check_image(c);
	ck_assert_int_eq(clone_close(c), 0);
}
END_TEST

START_TEST(short_last_region_always_hydrates)
{
	struct clone *c = open_clone(false);

	/* covers all 1000 bytes of the last region: still a copy (spec 2.4a) */
	model_write(c, 20 * RS, 1000, 'c');
	ck_assert_uint_eq(copied(c), 1000);
	check_image(c);
	ck_assert_int_eq(clone_close(c), 0);
}
END_TEST

/* A write over a run of unhydrated regions copies only the two it covers
 * in part. */
START_TEST(write_run_copies_only_partial_ends)
{
	struct clone *c = open_clone(false);
	size_t off = 2 * RS + 100, len = 4 * RS;
	char *buf = g_malloc(len);

	model_write(c, 4 * RS, RS, 'g'); /* hydrated inside the run: no copy */
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)(i * 7 + 1);
	ck_assert_int_eq(clone_write(c, buf, len, off), (ssize_t)len);
	memcpy(model + off, buf, len);
	ck_assert_uint_eq(copied(c), 2 * RS);   /* regions 2 and 6 */
	check_image(c);
	ck_assert_int_eq(clone_close(c), 0);
	g_free(buf);
}
END_TEST

/* Regions above the copier's chunk are copied, then written: the write
 * lands over the copy, the rest of the region is SOURCE's. */
START_TEST(partial_write_big_region)
{
	struct clone_options o;
	struct clone *c;

	options_defaults(&o);
	o.region_size = 1024 * 1024;
	o.no_hydration = true;
	c = open_with(&o);
	model_write(c, 100, 5000, 'q');
	model_write(c, 1024 * 1024 + 7, 3, 'r'); /* the short last region */
	check_image(c);
	ck_assert_int_eq(clone_close(c), 0);
	c = open_with(&o);
	check_image(c);
	ck_assert_int_eq(clone_close(c), 0);
}
END_TEST

START_TEST(write_past_end)
{
	struct clone *c = open_clone(false);
	char buf[10] = "xxxxxxxxx";

	ck_assert_int_eq(clone_write(c, buf, 10, image_size), -ENOSPC);
	/* straddling the end: the part inside is written */
	ck_assert_int_eq(clone_write(c, buf, 10, image_size - 4), 4);
	memcpy(model + image_size - 4, buf, 4);
	check_image(c);
	ck_assert_int_eq(clone_close(c), 0);
}
END_TEST

START_TEST(spanning_read_mixes_dest_and_source)
{
	struct clone *c = open_clone(false);
	char *buf = g_malloc(4 * RS);

	model_write(c, 2 * RS + 7, 3, 'd');
	model_write(c, 4 * RS, RS, 'e');
	ck_assert_int_eq(clone_read(c, buf, 4 * RS, RS + 5), 4 * RS);
	ck_assert(memcmp(buf, model + RS + 5, 4 * RS) == 0);
	ck_assert_int_eq(clone_close(c), 0);
	g_free(buf);
}
END_TEST

START_TEST(writes_persist_after_reopen)
{
	struct clone *c = open_clone(false);

	model_write(c, 100, 10, 'f');
	model_write(c, 7 * RS - 3, 6, 'g');
	ck_assert_int_eq(clone_fsync(c, NULL), 0);
	model_write(c, 11 * RS, RS, 'h'); /* committed by close */
	ck_assert_int_eq(clone_close(c), 0);

	c = open_clone(false);
	check_image(c);
	ck_assert_int_eq(clone_close(c), 0);
}
END_TEST

START_TEST(discard_reads_zeros)
{
	struct clone *c = open_clone(false);
	struct stat st;

	/* from mid region 1 to mid region 6: partial edges, whole middles */
	ck_assert_int_eq(clone_zero(c, RS + 100, 5 * RS, true), 0);
	memset(model + RS + 100, 0, 5 * RS);
	ck_assert_uint_eq(copied(c), 2 * RS); /* only the two edge regions */
	check_image(c);
	ck_assert_int_eq(clone_fsync(c, NULL), 0);
	ck_assert_int_eq(stat(dst, &st), 0);
	ck_assert_int_le(st.st_blocks * 512, 2 * RS); /* the middle is a hole */
	ck_assert_int_eq(clone_close(c), 0);
	c = open_clone(false);
	check_image(c);
	ck_assert_int_eq(clone_close(c), 0);
}
END_TEST

static bool all_hydrated(struct clone *c)
{
	struct clone_status st;

	clone_get_status(c, &st);
	return st.nr_hydrated == st.nr_regions;
}

START_TEST(background_hydration_makes_a_copy)
{
	struct clone *c = open_clone(true);
	gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
	char *d = g_malloc(image_size);

	model_write(c, 9 * RS + 1, 2, 'i');
	while (!all_hydrated(c) && g_get_monotonic_time() < deadline)
		g_usleep(10000);
	ck_assert(all_hydrated(c));
	ck_assert_int_eq(clone_close(c), 0);
	read_dest(0, image_size, d);
	ck_assert(memcmp(d, model, image_size) == 0);
	g_free(d);
}
END_TEST

/* The scheduler reports completion to the front end (which wakes
 * clonefs wait in poll): after background copies, and after writes that
 * cover every region while hydration is off. */
static int completions;
static bool all_at_completion;

static void on_complete(void *arg)
{
	all_at_completion = clone_all_hydrated(arg);
	__atomic_add_fetch(&completions, 1, __ATOMIC_SEQ_CST);
}

static void await_completion(struct clone *c)
{
	gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;

	while (!__atomic_load_n(&completions, __ATOMIC_SEQ_CST) &&
	       g_get_monotonic_time() < deadline)
		g_usleep(10000);
	ck_assert_msg(completions == 1, "%d completions reported", completions);
	ck_assert(all_at_completion);
	ck_assert(all_hydrated(c));
}

START_TEST(completion_reported_after_copies)
{
	struct clone *c = open_clone(false);

	clone_on_complete(c, on_complete, c);
	ck_assert_int_eq(completions, 0);
	clone_tune(c, CLONE_HYDRATION, 1);
	await_completion(c);
	ck_assert_int_eq(clone_close(c), 0);
}
END_TEST

START_TEST(completion_reported_after_writes_alone)
{
	struct clone *c = open_clone(false);
	char *d = g_malloc(image_size);

	clone_on_complete(c, on_complete, c);
	model_write(c, 0, image_size, 'w');
	await_completion(c);
	ck_assert_uint_le(copied(c), image_size % RS); /* a short last region copies */
	ck_assert_int_eq(clone_close(c), 0);
	read_dest(0, image_size, d);
	ck_assert(memcmp(d, model, image_size) == 0);
	g_free(d);
}
END_TEST

/* Is [off, off + len) of SOURCE in the page cache? */
static bool source_cached(size_t off, size_t len)
{
	int fd = open(src, O_RDONLY);
	long pg = sysconf(_SC_PAGESIZE);
	size_t first = off / pg * pg, n = (off + len - first + pg - 1) / pg;
	unsigned char vec[64];
	void *map;
	bool all = true;

	ck_assert_int_ge(fd, 0);
	ck_assert_uint_le(n, sizeof(vec));
	map = mmap(NULL, n * pg, PROT_READ, MAP_SHARED, fd, (off_t)first);
	ck_assert(map != MAP_FAILED);
	ck_assert_int_eq(mincore(map, n * pg, vec), 0);
	for (size_t i = 0; i < n; i++)
		all = all && (vec[i] & 1);
	munmap(map, n * pg);
	close(fd);
	return all;
}

/* Background copies read SOURCE ahead of their batch, so the disk keeps
 * reading while the workers write DEST: at one region a second, region 5
 * must be in SOURCE's page cache long before its turn. */
START_TEST(background_copy_reads_ahead)
{
	struct clone_options o;
	struct clone *c;
	struct clone_status st;
	gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
	int fd = open(src, O_RDONLY);
	bool ahead = false;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fdatasync(fd), 0);
	ck_assert_int_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	close(fd);
	if (source_cached(5 * RS, RS)) { /* tmpfs: the check means nothing */
		fprintf(stderr, "background_copy_reads_ahead: %s cannot drop its "
			"page cache; not checked\n", dir);
		return;
	}
	options_defaults(&o);
	o.region_size = RS;
	o.hydration_threshold = o.hydration_batch_size = 1;
	o.hydration_rate = RS; /* a region a second */
	c = open_with(&o);
	do {
		clone_get_status(c, &st);
		if (st.nr_hydrated >= 1 && (ahead = source_cached(5 * RS, RS)))
			break;
		g_usleep(2000);
	} while (st.nr_hydrated < 4 && g_get_monotonic_time() < deadline);
	ck_assert_msg(ahead, "region 5 not read ahead (%" G_GUINT64_FORMAT
		      " regions hydrated)", st.nr_hydrated);
	ck_assert_int_eq(clone_close(c), 0);
}
END_TEST

struct reader_arg {
	struct clone *c;
	gint stop;
	guint64 reads;
};

static gpointer steady_reader(gpointer p)
{
	struct reader_arg *a = p;
	char buf[4096];

	while (!g_atomic_int_get(&a->stop)) {
		clone_read(a->c, buf, sizeof(buf),
			   g_random_int_range(0, (gint32)(image_size / 4096)) * 4096ull);
		__atomic_fetch_add(&a->reads, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

/*
 * A worker done with a batch takes the next one itself, without the
 * scheduler: disabling hydration must stop that chain too. One region at a
 * time, 4096 of them, so there is a chain to stop.
 */
START_TEST(disable_stops_workers)
{
	struct clone_options o;
	struct clone *c;
	struct clone_status st;
	gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
	uint64_t n;

	teardown();
	setup_size(16u << 20);
	options_defaults(&o);
	o.region_size = 4096;
	o.hydration_threshold = o.hydration_batch_size = 1;
	c = open_with(&o);
	do
		clone_get_status(c, &st);
	while (!st.nr_hydrated && g_get_monotonic_time() < deadline);
	clone_tune(c, CLONE_HYDRATION, 0);
	while (clone_get_status(c, &st), st.hy.in_flight &&
	       g_get_monotonic_time() < deadline)
		g_usleep(1000);
	ck_assert_uint_eq(st.hy.in_flight, 0);
	n = st.nr_hydrated;
	ck_assert_msg(n > 0 && n < st.nr_regions, "%" G_GUINT64_FORMAT " of %"
		      G_GUINT64_FORMAT " regions hydrated once disabled: the copies "
		      "went on (or finished first)", n, st.nr_regions);
	/* A stopped engine does not move: watched for 0.2 s (a measurement). */
	for (int i = 0; i < 20; i++) {
		g_usleep(10000);
		clone_get_status(c, &st);
		ck_assert_uint_eq(st.nr_hydrated, n);
	}
	clone_tune(c, CLONE_HYDRATION, 1);
	while (!all_hydrated(c) && g_get_monotonic_time() < deadline)
		g_usleep(10000);
	check_image(c);
	ck_assert_int_eq(clone_close(c), 0);
}
END_TEST

/* Spec 3.1a: under steady foreground load, hydration still finishes. */
START_TEST(hydration_progresses_under_load)
{
	struct clone *c = open_clone(true);
	struct reader_arg a = { .c = c };
	GThread *t[2];
	gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
	bool done;

	for (int i = 0; i < 2; i++)
		t[i] = g_thread_new("reader", steady_reader, &a);
	while (!(done = all_hydrated(c)) && g_get_monotonic_time() < deadline)
		g_usleep(10000);
	g_atomic_int_set(&a.stop, 1);
	for (int i = 0; i < 2; i++)
		g_thread_join(t[i]);
	ck_assert_msg(done, "hydration starved by foreground reads");
	ck_assert_uint_gt(a.reads, 0);
	check_image(c);
	ck_assert_int_eq(clone_close(c), 0);
}
END_TEST

struct writer_arg {
	struct clone *c;
	int id;
};

/* Each writer owns every 8th 512-byte slice of regions 2..4. */
static gpointer writer(gpointer p)
{
	struct writer_arg *a = p;
	char buf[512];

	memset(buf, 'A' + a->id, sizeof(buf));
	for (size_t off = 2 * RS + (size_t)a->id * 512; off < 5 * RS; off += 8 * 512)
		if (clone_write(a->c, buf, sizeof(buf), off) != sizeof(buf))
			return GINT_TO_POINTER(1);
	return NULL;
}

START_TEST(concurrent_writers_same_region)
{
	struct clone *c = open_clone(true);
	struct writer_arg args[8];
	GThread *t[8];

	for (int i = 0; i < 8; i++) {
		args[i] = (struct writer_arg){ c, i };
		t[i] = g_thread_new("w", writer, &args[i]);
	}
	for (int i = 0; i < 8; i++)
		ck_assert_ptr_null(g_thread_join(t[i]));
	for (size_t off = 2 * RS; off < 5 * RS; off += 512)
		memset(model + off, 'A' + (int)((off - 2 * RS) / 512 % 8), 512);
	check_image(c);
	ck_assert_int_eq(clone_close(c), 0);
}
END_TEST

START_TEST(status_line_fields)
{
	struct clone *c = open_clone(false);
	char *line;

	model_write(c, 0, RS, 'j');
	line = control_status_line(c, true);
	{
		char **f = g_strsplit(line, " ", -1);

		ck_assert_str_eq(f[0], "8");
		ck_assert_str_eq(f[2], "128");
		ck_assert_str_eq(f[3], "1/21");
		ck_assert_str_eq(f[4], "0");
		ck_assert_str_eq(f[5], "1");
		ck_assert_str_eq(f[6], "no_hydration");
		ck_assert_str_eq(f[7], "4");
		ck_assert_str_eq(f[8], "hydration_threshold");
		ck_assert_str_eq(f[10], "hydration_batch_size");
		ck_assert_str_eq(f[12], "rw");
		ck_assert_ptr_null(f[13]);
		g_strfreev(f);
	}
	g_free(line);
	ck_assert_int_eq(clone_close(c), 0);
}
END_TEST

START_TEST(refuses_bad_input)
{
	struct clone_options o;
	struct clone *c = NULL;
	char err[512];

	options_defaults(&o);
	ck_assert_int_lt(clone_open(src, src, meta, &o, &c, err, sizeof(err)), 0);
	ck_assert(strstr(err, "same file") != NULL);
	ck_assert_int_lt(clone_open(src, dst, src, &o, &c, err, sizeof(err)), 0);
	o.region_size = 3000;
	ck_assert_int_lt(clone_open(src, dst, meta, &o, &c, err, sizeof(err)), 0);
	ck_assert(strstr(err, "region size") != NULL);
	ck_assert_int_ne(access(dst, F_OK), 0); /* nothing created */
	ck_assert_int_ne(access(meta, F_OK), 0);
}
END_TEST

/* ---- durability: errors are never forgotten (spec 2.5b, 2.9, 6.7) ---- */

/* Two open files of the image hear of a failed periodic commit at their
 * next fsync, once each; a file opened after it does not. */
START_TEST(failed_commit_fails_next_fsync_of_every_file)
{
	struct clone *c = open_clone(false);
	uint64_t a = clone_error_mark(c), b = clone_error_mark(c), later;

	model_write(c, 3 * RS + 100, 4096, 'a'); /* acknowledged, not durable */
	ck_assert_int_eq(bio_fault_set("meta:write:eio", NULL, 0), 0);
	ck_assert_int_ne(clone_commit(c), 0); /* the timer's commit */
	bio_fault_clear();
	later = clone_error_mark(c);
	ck_assert_int_eq(clone_fsync(c, &a), -EIO);
	ck_assert_int_eq(clone_fsync(c, &b), -EIO);
	ck_assert_int_eq(clone_fsync(c, &a), 0); /* once per file */
	ck_assert_int_eq(clone_fsync(c, &b), 0);
	ck_assert_int_eq(clone_fsync(c, &later), 0);
	ck_assert_int_ge(clone_error_mark(c), 1);
	clone_close(c);
}
END_TEST

/* A flush's commit is one journal record: one META write (issue 23). */
START_TEST(fsync_writes_one_meta_block)
{
	struct clone *c = open_clone(false);
	uint64_t a = clone_error_mark(c);

	model_write(c, 5 * RS + 100, 4096, 'd'); /* a new bit */
	ck_assert_int_eq(bio_fault_set("meta:write:eio:after=1", NULL, 0), 0);
	ck_assert_int_eq(clone_fsync(c, &a), 0);
	model_write(c, 6 * RS + 100, 4096, 'e');
	ck_assert_int_eq(clone_fsync(c, &a), -EIO); /* the second META write */
	bio_fault_clear();
	clone_close(c);
}
END_TEST

/* The fsync that meets the error reports it; the other file still hears. */
START_TEST(failed_dest_flush_fails_next_fsync_of_every_file)
{
	struct clone *c = open_clone(false);
	uint64_t a = clone_error_mark(c), b = clone_error_mark(c);
	struct clone_status st;

	model_write(c, 2 * RS, RS, 'b'); /* a hydrated region now */
	ck_assert_int_eq(clone_fsync(c, &a), 0);
	model_write(c, 2 * RS + 10, 10, 'c'); /* no new bit: DEST only */
	ck_assert_int_eq(bio_fault_set("dest:flush:eio:once", NULL, 0), 0);
	ck_assert_int_eq(clone_fsync(c, &a), -EIO);
	bio_fault_clear();
	ck_assert_int_eq(clone_fsync(c, &b), -EIO);
	ck_assert_int_eq(clone_fsync(c, &b), 0);
	ck_assert_int_eq(clone_fsync(c, &a), 0);
	clone_get_status(c, &st);
	ck_assert_uint_eq(st.lost_writes, 1);
	clone_close(c);
}
END_TEST

/* Passthrough only once "every region hydrated" is durable: a commit that
 * fails leaves the image served by the daemon (spec 2.9). */
START_TEST(hydrated_dest_needs_a_durable_commit)
{
	struct clone *c = open_clone(false);
	char *buf = g_malloc(image_size);

	memset(buf, 'd', image_size);
	ck_assert_int_eq(clone_write(c, buf, image_size, 0), (ssize_t)image_size);
	ck_assert(clone_all_hydrated(c));
	ck_assert_int_eq(bio_fault_set("meta:write:eio", NULL, 0), 0);
	ck_assert_int_lt(clone_hydrated_dest(c), 0);
	bio_fault_clear();
	ck_assert_int_lt(clone_hydrated_dest(c), 0); /* rolled back: ro */
	ck_assert(!clone_all_hydrated(c));
	clone_close(c);
	g_free(buf);

	/* healthy: granted, and then durable without another commit */
	unlink(dst);
	unlink(meta);
	c = open_clone(true);
	buf = g_malloc(image_size);
	memset(buf, 'e', image_size);
	ck_assert_int_eq(clone_write(c, buf, image_size, 0), (ssize_t)image_size);
	ck_assert_int_ge(clone_hydrated_dest(c), 0);
	g_free(buf);
	clone_close(c);
}
END_TEST

/* A final commit that fails at unmount, with workers and the commit timer
 * running: no use after free (the -san build), and the error is returned. */
START_TEST(close_with_failing_final_commit)
{
	struct clone *c = open_clone(true);

	model_write(c, 5 * RS + 1, 100, 'f');
	ck_assert_int_eq(bio_fault_set("meta:write:eio", NULL, 0), 0);
	ck_assert_int_ne(clone_close(c), 0);
	bio_fault_clear();
}
END_TEST

/* A SOURCE cut short under the mount: reads of what it lost fail with EIO,
 * never zeros, and are counted and said in status; hydrated regions and
 * what SOURCE still holds read as before (spec 1.4). */
START_TEST(shrunk_source_reads_fail)
{
	struct clone *c = open_clone(false);
	struct clone_status st;
	char buf[4096];

	model_write(c, 15 * RS, RS, 's'); /* hydrated: DEST */
	ck_assert_int_eq(truncate(src, 10 * RS), 0);
	ck_assert_int_eq(clone_read(c, buf, sizeof(buf), 12 * RS), -EIO);
	ck_assert_int_eq(clone_read(c, buf, sizeof(buf), 10 * RS - 4096), 4096);
	ck_assert(memcmp(buf, model + 10 * RS - 4096, 4096) == 0);
	ck_assert_int_eq(clone_read(c, buf, sizeof(buf), 15 * RS), 4096);
	ck_assert(memcmp(buf, model + 15 * RS, 4096) == 0);
	ck_assert_int_eq(clone_read(c, buf, sizeof(buf), 10 * RS - 100), -EIO);
	clone_get_status(c, &st);
	ck_assert_uint_eq(st.hy.read_errors, 2);
	ck_assert_uint_eq(st.hy.copy_errors, 0);
	ck_assert_msg(strstr(st.hy.last_error, "source is shorter than the image"),
		      "last_error: %s", st.hy.last_error);
	ck_assert_uint_eq(st.nr_hydrated, 1); /* region 15, written whole */
	clone_close(c);
}
END_TEST

/* Eight threads each write a region of their own and fsync it, over and
 * over: the fsyncs that meet share commits (group commit), and every one
 * acknowledged holds after a reopen. */
struct syncer_arg {
	struct clone *c;
	int id;
	uint64_t seen;
};

static gpointer syncer(gpointer p)
{
	struct syncer_arg *a = p;
	char buf[4096];

	for (int i = 0; i < 10; i++) {
		memset(buf, 'a' + a->id + i, sizeof(buf));
		if (clone_write(a->c, buf, sizeof(buf), (uint64_t)(a->id * 2 + (i & 1)) * RS + 512) !=
		    (ssize_t)sizeof(buf) || clone_fsync(a->c, &a->seen))
			return GINT_TO_POINTER(1);
	}
	return NULL;
}

START_TEST(concurrent_fsyncs_share_commits)
{
	struct clone *c = open_clone(false);
	struct syncer_arg args[8];
	GThread *t[8];

	for (int i = 0; i < 8; i++) {
		args[i] = (struct syncer_arg){ c, i, clone_error_mark(c) };
		t[i] = g_thread_new("s", syncer, &args[i]);
	}
	for (int i = 0; i < 8; i++)
		ck_assert_ptr_null(g_thread_join(t[i]));
	ck_assert_int_eq(clone_close(c), 0);
	for (int i = 0; i < 8; i++) {
		memset(model + (size_t)(i * 2) * RS + 512, 'a' + i + 8, 4096);
		memset(model + (size_t)(i * 2 + 1) * RS + 512, 'a' + i + 9, 4096);
	}
	c = open_clone(false); /* what the fsyncs acknowledged */
	check_image(c);
	ck_assert_int_eq(clone_close(c), 0);
}
END_TEST

/* The image gives nobody more than SOURCE does, unless asked (spec 1.6). */
START_TEST(image_owner_and_mode)
{
	struct clone_options o;
	struct clone *c;
	uid_t uid;
	gid_t gid;
	mode_t mode;

	options_defaults(&o);
	o.region_size = RS;
	o.no_hydration = true;
	ck_assert_int_eq(chmod(src, 0400), 0);
	c = open_with(&o);
	clone_image_owner(c, &uid, &gid, &mode);
	ck_assert_uint_eq(uid, getuid());
	ck_assert_uint_eq(gid, getgid());
	ck_assert_uint_eq(mode, 0600);
	clone_close(c);
	ck_assert_int_eq(chmod(src, 0200), 0); /* owner may not read SOURCE */
	c = open_with(&o);
	clone_image_owner(c, &uid, &gid, &mode);
	ck_assert_uint_eq(mode, 0200);
	clone_close(c);
	ck_assert_int_eq(chmod(src, 0644), 0);
	ck_assert_int_eq(options_apply(&o, "umask=027", NULL, 0), 0);
	ck_assert_int_eq(options_apply(&o, "uid=1234", NULL, 0), 0);
	ck_assert_int_eq(options_apply(&o, "gid=99", NULL, 0), 0);
	c = open_with(&o);
	clone_image_owner(c, &uid, &gid, &mode);
	ck_assert_uint_eq(uid, 1234);
	ck_assert_uint_eq(gid, 99);
	ck_assert_uint_eq(mode, 0640);
	clone_close(c);
	ck_assert_int_lt(options_apply(&o, "umask=8", (char[64]){0}, 64), 0);
}
END_TEST


/* ---- access profiles (spec 3.9) ---- */

/* Reads and writes are recorded in first-touch order, each region once. */
START_TEST(reads_and_writes_record_profile)
{
	const struct profile_run want[] = { { 7, 1 }, { 2, 1 }, { 6, 1 }, { 8, 1 },
					    { 20, 1 } };
	struct clone *c = open_clone(false);
	struct profile p;
	char buf[3 * RS], err[256];
	size_t len;
	void *b;

	ck_assert_int_eq(clone_read(c, buf, 1, 7 * RS + 5), 1);
	model_write(c, 2 * RS + 10, 100, 'w');
	ck_assert_int_eq(clone_read(c, buf, 3 * RS, 6 * RS), 3 * RS);
	ck_assert_int_eq(clone_read(c, buf, 10, 20 * RS), 10);
	ck_assert_int_eq(clone_read(c, buf, 10, 2 * RS), 10);
	b = clone_profile(c, &len);
	ck_assert_msg(profile_decode(b, len, &p, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(p.region_size, RS);
	ck_assert_uint_eq(p.nr_regions, 21);
	ck_assert_uint_eq(p.image_size, image_size);
	ck_assert_uint_eq(p.nr_runs, G_N_ELEMENTS(want));
	for (size_t i = 0; i < G_N_ELEMENTS(want); i++) {
		ck_assert_uint_eq(p.runs[i].first, want[i].first);
		ck_assert_uint_eq(p.runs[i].n, want[i].n);
	}
	profile_clear(&p);
	g_free(b);
	ck_assert_int_eq(clone_close(c), 0);
}
END_TEST

/* -o prefetch= loads a profile of this geometry, and refuses a corrupt one
 * or one of another geometry with one line naming the file. */
START_TEST(prefetch_option_checks_the_profile)
{
	const struct profile_run runs[] = { { 9, 2 }, { 1, 1 } };
	struct profile p = { .region_size = RS, .nr_regions = 21,
			     .image_size = image_size, .nr_runs = 2,
			     .runs = (struct profile_run *)runs, .total = 3 };
	char *path = g_build_filename(dir, "boot.profile", NULL), err[512] = "";
	struct clone_options o;
	struct clone_status st;
	struct clone *c = NULL;

	options_defaults(&o);
	o.region_size = RS;
	o.no_hydration = true;
	g_strlcpy(o.prefetch, path, sizeof(o.prefetch));
	ck_assert_int_eq(profile_save(path, &p, err, sizeof(err)), 0);
	c = open_with(&o);
	clone_get_status(c, &st);
	ck_assert_uint_eq(st.hy.prefetch_total, 3);
	ck_assert_uint_eq(st.hy.prefetch_hydrated, 0);
	model_write(c, 9 * RS, 2 * RS, 'p'); /* two of them, by a write */
	clone_get_status(c, &st);
	ck_assert_uint_eq(st.hy.prefetch_hydrated, 2);
	ck_assert_int_eq(clone_close(c), 0);

	p.nr_regions = 42;
	p.region_size = RS / 2;
	ck_assert_int_eq(profile_save(path, &p, err, sizeof(err)), 0);
	ck_assert_int_eq(clone_open(src, dst, meta, &o, &c, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, path) && strstr(err, "another geometry"), "%s", err);
	ck_assert(g_file_set_contents(path, "CFSPROF1 and then junk that is long enough "
				      "to be a header and a checksum, or nearly", -1, NULL));
	ck_assert_int_eq(clone_open(src, dst, meta, &o, &c, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, path), "%s", err);
	unlink(path);
	g_free(path);
}
END_TEST

static Suite *clone_suite(void)
{
	Suite *s = suite_create("clone");
	TCase *tc = tcase_create("policy");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, fresh_clone_reads_source);
	tcase_add_test(tc, partial_write_hydrates_region);
	tcase_add_test(tc, partial_write_over_source_hole);
	tcase_add_test(tc, whole_region_write_copies_nothing);
	tcase_add_test(tc, short_last_region_always_hydrates);
	tcase_add_test(tc, write_run_copies_only_partial_ends);
	tcase_add_test(tc, partial_write_big_region);
	tcase_add_test(tc, write_past_end);
	tcase_add_test(tc, spanning_read_mixes_dest_and_source);
	tcase_add_test(tc, writes_persist_after_reopen);
	tcase_add_test(tc, discard_reads_zeros);
	tcase_add_test(tc, background_hydration_makes_a_copy);
	tcase_add_test(tc, background_copy_reads_ahead);
	tcase_add_test(tc, completion_reported_after_copies);
	tcase_add_test(tc, completion_reported_after_writes_alone);
	tcase_add_test(tc, concurrent_writers_same_region);
	tcase_add_test(tc, disable_stops_workers);
	tcase_add_test(tc, hydration_progresses_under_load);
	tcase_add_test(tc, status_line_fields);
	tcase_add_test(tc, refuses_bad_input);
	tcase_add_test(tc, reads_and_writes_record_profile);
	tcase_add_test(tc, prefetch_option_checks_the_profile);
	suite_add_tcase(s, tc);

	tc = tcase_create("durability");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, failed_commit_fails_next_fsync_of_every_file);
	tcase_add_test(tc, fsync_writes_one_meta_block);
	tcase_add_test(tc, failed_dest_flush_fails_next_fsync_of_every_file);
	tcase_add_test(tc, hydrated_dest_needs_a_durable_commit);
	tcase_add_test(tc, close_with_failing_final_commit);
	tcase_add_test(tc, image_owner_and_mode);
	tcase_add_test(tc, shrunk_source_reads_fail);
	tcase_add_test(tc, concurrent_fsyncs_share_commits);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(clone_suite());
}
