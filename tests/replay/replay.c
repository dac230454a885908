/*
 * replay.c - crash-consistency checker for clonefs write logs (issue 8),
 * after Linux's dm-log-writes and its replay-log tool.
 *
 *   replay --log LOG --source SOURCE --dest DEST0 --meta META0
 *          [--acks ACKS] [--final-dest DEST --final-meta META]
 *          [--random N] [--seed S] [--max-failures N] [--verbose]
 *          [--late-dest-flush] [--every-write]
 *
 * LOG is what a daemon run with CLONEFS_WRITELOG=LOG recorded (format in
 * include/clonefs/blockio.h); DEST0 and META0 are copies of DEST and META
 * taken before that run. For a set of crash points the tool builds the
 * DEST and META a power cut there could leave, and checks them:
 *
 *   flush points    right after each flush record: for each file, the writes
 *                   a completed flush covers are kept, all later ones dropped
 *   random points   N per gap between flushes (default 1), at a random
 *                   record: covered writes kept, and of the writes since,
 *                   a random subset of their 4 KiB pieces (all, none, half,
 *                   or a random share), applied in log order
 *   write points    with --every-write, right after every write record:
 *                   only what completed flushes cover is kept (a crash at
 *                   every write point; for synchronous writes, each one
 *                   acknowledged by itself: tests/integration/t-sync-replay.sh)
 *   the end         every write kept; must equal --final-dest/--final-meta
 *
 * Invariants at every point:
 *   1. md_check(META) is clean (an all-zero META counts as "not formatted
 *      yet", which the next mount formats: spec 1.3), and needs_check is
 *      not set;
 *   2. every 4 KiB block of every region META marks hydrated holds SOURCE's
 *      bytes or a block the workload wrote (a stamp: see stamp_ok());
 *   3. every block acknowledged by an fsync that returned before the crash
 *      point (ACKS, written by workload.py with CLOCK_MONOTONIC times, the
 *      log's clock) is in a hydrated region and holds that write or a later
 *      one of the same block;
 *   4. nothing was ever written to SOURCE.
 *
 * --late-dest-flush is a self-test: each DEST flush is taken to cover only
 * what the DEST flush before it covered, as if clonefs flushed DEST after
 * committing the bits (the dm-clone bug of spec 6.3). A workload with
 * write-triggered hydrations must then fail; t-replay.sh checks it does, so
 * a checker that has gone blind is noticed.
 *
 * Prints one line per failure (up to --max-failures) and a summary line
 * "replay: N points (...), M failures"; exits 0 only when M is 0.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "clonefs/blockio.h"
#include "clonefs/metadata.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLK 4096u
#define HDR 48u
#define REC_MAGIC 0x31524c57u

enum { REC_WRITE = 1, REC_FLUSH, REC_ZERO, REC_PUNCH, REC_MARK };
enum { R_SOURCE, R_DEST, R_META, NR_ROLES };

struct rec {
	int type, role;
	uint64_t ts, a, b;       /* see blockio.h */
	const uint8_t *data;     /* write data */
	uint64_t pos;            /* byte offset of the record in LOG */
	uint64_t cover;          /* flush: records [0, cover) are durable */
};

struct ack {
	uint64_t ts;
	GArray *blocks;          /* struct acked */
};

struct acked {
	uint64_t off, gen;
};

struct file {
	uint8_t *buf;
	uint64_t size;
	uint64_t next;           /* records below this index are in buf */
};

struct point {
	int64_t k;               /* crash after record k; -1: before any */
	int kind;                /* P_FLUSH, P_RANDOM, P_INITIAL, P_END */
	double keep;             /* share of unflushed pieces kept */
};
enum { P_INITIAL, P_FLUSH, P_RANDOM, P_END, P_WRITE, NR_KINDS };
static const char *const kind_names[] = { "initial", "flush", "random", "end", "write" };

struct undo {
	uint64_t off, len;
	uint8_t *old;
};

static struct {
	const char *log, *source, *dest0, *meta0, *acks, *final_dest, *final_meta;
	int random_per_gap, max_failures;
	uint64_t seed;
	bool verbose, late_dest_flush, every_write;
} opt = { .random_per_gap = 1, .max_failures = 20, .seed = 1 };

static struct rec *recs;
static size_t nrecs;
static struct ack *acks;
static size_t nacks;
static struct file files[NR_ROLES];
static const uint8_t *src;
static uint64_t image_size;
static uint64_t rng_state;
static int meta_fd;
static char meta_path[64];
static uint64_t failures, points_done, kinds_done[NR_KINDS], acks_checked;
static GHashTable *required; /* block offset -> highest acked gen */
static size_t acks_applied;

static void die(const char *fmt, ...) G_GNUC_PRINTF(1, 2) G_GNUC_NORETURN;
static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("replay: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t rnd(void)
{
	uint64_t x = rng_state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static double rnd01(void)
{
	return (double)(rnd() >> 11) / (double)(1ULL << 53);
}

static const uint8_t *map_file(const char *path, uint64_t *size)
{
	struct stat st;
	int fd = open(path, O_RDONLY);
	void *p;

	if (fd < 0 || fstat(fd, &st))
		die("%s: %s", path, g_strerror(errno));
	*size = (uint64_t)st.st_size;
	if (!*size) {
		close(fd);
		return NULL;
	}
	p = mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED)
		die("%s: mmap: %s", path, g_strerror(errno));
	close(fd);
	return p;
}

/* ---- loading ---- */

static void load_log(void)
{
	uint64_t size, off = 16;
	const uint8_t *p = map_file(opt.log, &size);
	GArray *a = g_array_new(FALSE, FALSE, sizeof(struct rec));

	if (size < 16 || memcmp(p, "CFSWLOG1", 8))
		die("%s: not a clonefs write log", opt.log);
	while (off + HDR <= size) {
		const uint8_t *h = p + off;
		struct rec r = { .type = h[4], .role = h[5], .ts = get64(h + 24),
				 .a = get64(h + 32), .b = get64(h + 40), .pos = off };
		uint64_t dlen = r.type == REC_WRITE || r.type == REC_MARK ? r.b : 0;

		if ((get64(h) & 0xffffffffu) != REC_MAGIC)
			die("%s: bad record at byte %" PRIu64, opt.log, off);
		if (dlen > size - off - HDR) {
			fprintf(stderr, "replay: %s: last record is cut short; ignored\n",
				opt.log);
			break;
		}
		if (r.type != REC_MARK && r.role >= NR_ROLES)
			die("%s: bad role %d at byte %" PRIu64, opt.log, r.role, off);
		r.data = h + HDR;
		g_array_append_val(a, r);
		off += HDR + dlen;
	}
	nrecs = a->len;
	recs = (struct rec *)g_array_free(a, FALSE);
	/* a flush covers every record that started before its "covers" offset */
	for (size_t i = 0, j = 0; i < nrecs; i++) {
		if (recs[i].type != REC_FLUSH)
			continue;
		while (j < nrecs && recs[j].pos < recs[i].a)
			j++;
		if (j > i)
			die("%s: flush record %zu covers records after itself", opt.log, i);
		recs[i].cover = j;
		j = 0;
	}
	if (opt.late_dest_flush) {
		uint64_t prev = 0;

		for (size_t i = 0; i < nrecs; i++) {
			uint64_t c = recs[i].cover;

			if (recs[i].type != REC_FLUSH || recs[i].role != R_DEST)
				continue;
			recs[i].cover = prev;
			prev = c;
		}
	}
}

static void load_file(int role, const char *path, uint64_t min_size)
{
	uint64_t size;
	const uint8_t *p = map_file(path, &size);
	struct file *f = &files[role];

	f->size = MAX(size, min_size);
	for (size_t i = 0; i < nrecs; i++)
		if (recs[i].role == role && recs[i].type >= REC_WRITE &&
		    recs[i].type != REC_FLUSH && recs[i].type != REC_MARK)
			f->size = MAX(f->size, recs[i].a + recs[i].b);
	f->buf = g_malloc0(f->size ? f->size : 1);
	if (p) {
		memcpy(f->buf, p, size);
		munmap((void *)p, size);
	}
}

static int cmp_ack(const void *a, const void *b)
{
	const struct ack *x = a, *y = b;

	return x->ts < y->ts ? -1 : x->ts > y->ts;
}

/* ACKS: lines "ack TS OFF:GEN OFF:GEN ..." */
static void load_acks(void)
{
	gchar *text, **lines;
	GArray *a = g_array_new(FALSE, FALSE, sizeof(struct ack));

	if (!g_file_get_contents(opt.acks, &text, NULL, NULL))
		die("%s: cannot read", opt.acks);
	lines = g_strsplit(text, "\n", -1);
	for (gchar **l = lines; *l; l++) {
		gchar **w = g_strsplit(*l, " ", -1);
		struct ack k = { 0 };

		if (!w[0] || strcmp(w[0], "ack") || !w[1]) {
			if (**l)
				die("%s: bad line '%s'", opt.acks, *l);
			g_strfreev(w);
			continue;
		}
		k.ts = g_ascii_strtoull(w[1], NULL, 10);
		k.blocks = g_array_new(FALSE, FALSE, sizeof(struct acked));
		for (gchar **b = w + 2; *b; b++) {
			struct acked x;
			char *colon = strchr(*b, ':');

			if (!**b)
				continue;
			if (!colon)
				die("%s: bad block '%s'", opt.acks, *b);
			x.off = g_ascii_strtoull(*b, NULL, 10);
			x.gen = g_ascii_strtoull(colon + 1, NULL, 10);
			if (x.off % BLK || x.off + BLK > image_size)
				die("%s: block %" PRIu64 " is not a 4 KiB block of the image",
				    opt.acks, x.off);
			g_array_append_val(k.blocks, x);
		}
		g_array_append_val(a, k);
		g_strfreev(w);
	}
	g_strfreev(lines);
	g_free(text);
	nacks = a->len;
	acks = (struct ack *)g_array_free(a, FALSE);
	qsort(acks, nacks, sizeof(*acks), cmp_ack);
}

/* ---- building a crash state ---- */

static void apply(struct file *f, const struct rec *r, uint64_t off, uint64_t len)
{
	if (r->type == REC_WRITE)
		memcpy(f->buf + off, r->data + (off - r->a), len);
	else
		memset(f->buf + off, 0, len);
}

static bool changes_data(const struct rec *r)
{
	return r->type == REC_WRITE || r->type == REC_ZERO || r->type == REC_PUNCH;
}

/* Bring the durable base of @role up to record @limit (exclusive). */
static void advance(int role, uint64_t limit)
{
	struct file *f = &files[role];

	for (; f->next < limit; f->next++) {
		const struct rec *r = &recs[f->next];

		if (r->role == role && changes_data(r))
			apply(f, r, r->a, r->b);
	}
}

/* Apply a random share @keep of the 4 KiB pieces of @role's writes in
 * [from, to], saving what they overwrite in @undo. */
static void overlay(int role, uint64_t from, int64_t to, double keep, GArray *undo)
{
	struct file *f = &files[role];

	if (keep <= 0.0)
		return;
	for (int64_t i = (int64_t)from; i <= to; i++) {
		const struct rec *r = &recs[i];
		uint64_t off = r->a, end = r->a + r->b;

		if (r->role != role || !changes_data(r))
			continue;
		while (off < end) {
			uint64_t piece = MIN(end, (off / BLK + 1) * BLK) - off;

			if (keep >= 1.0 || rnd01() < keep) {
				struct undo u = { off, piece, g_memdup2(f->buf + off, piece) };

				g_array_append_val(undo, u);
				apply(f, r, off, piece);
			}
			off += piece;
		}
	}
}

static void rollback(int role, GArray *undo)
{
	for (guint i = undo->len; i-- > 0;) {
		struct undo *u = &g_array_index(undo, struct undo, i);

		memcpy(files[role].buf + u->off, u->old, u->len);
		g_free(u->old);
	}
	g_array_set_size(undo, 0);
}

/* ---- checking ---- */

static void fail(const struct point *p, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void fail(const struct point *p, const char *fmt, ...)
{
	va_list ap;

	if (++failures > (uint64_t)opt.max_failures)
		return;
	printf("FAIL at %s point after record %" PRId64 " (keep %.2f): ",
	       kind_names[p->kind], p->k, p->keep);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/*
 * A block the workload wrote: "CFSSTAMP", offset, generation (u64 LE),
 * 8 zero bytes, then SHA-256(offset, generation as two u64 LE) repeated.
 * tests/replay/workload.py writes the same.
 */
static bool stamp_ok(const uint8_t *b, uint64_t off, uint64_t *gen)
{
	uint8_t key[16], sum[32];
	unsigned int len = 0;

	if (memcmp(b, "CFSSTAMP", 8) || get64(b + 8) != off || get64(b + 24))
		return false;
	*gen = get64(b + 16);
	memcpy(key, b + 8, 16);
	if (EVP_Digest(key, sizeof(key), sum, &len, EVP_sha256(), NULL) != 1)
		die("sha256 failed");
	for (unsigned i = 32; i < BLK; i += 32)
		if (memcmp(b + i, sum, 32))
			return false;
	return true;
}

/* Write the META state to the memfd that md_check and md_open read. */
static void publish_meta(void)
{
	struct file *f = &files[R_META];

	if (ftruncate(meta_fd, 0) || ftruncate(meta_fd, (off_t)f->size) ||
	    pwrite(meta_fd, f->buf, f->size, 0) != (ssize_t)f->size)
		die("memfd: %s", g_strerror(errno));
}

static void check_point(const struct point *p)
{
	struct file *d = &files[R_DEST];
	uint64_t ts = p->k >= 0 ? recs[p->k].ts : 0;
	struct md_geometry geo;
	struct md *md = NULL;
	char err[512];
	int ret, bad = 0;

	/* acknowledged before the crash: acks up to the last record's time */
	while (acks_applied < nacks && p->k >= 0 && acks[acks_applied].ts <= ts) {
		GArray *b = acks[acks_applied++].blocks;

		for (guint i = 0; i < b->len; i++) {
			struct acked *x = &g_array_index(b, struct acked, i);
			gpointer key = GSIZE_TO_POINTER(x->off / BLK + 1);
			uint64_t have = GPOINTER_TO_SIZE(g_hash_table_lookup(required, key));

			if (x->gen > have)
				g_hash_table_insert(required, key, GSIZE_TO_POINTER(x->gen));
		}
	}

	publish_meta();
	if (bio_all_zero(files[R_META].buf, files[R_META].size)) {
		/* not formatted yet: the next mount formats it, nothing hydrated */
		if (g_hash_table_size(required))
			fail(p, "META is empty but %u acknowledged blocks need it",
			     g_hash_table_size(required));
		return;
	}
	if ((ret = md_check(meta_path, err, sizeof(err)))) {
		fail(p, "md_check: %s", err);
		return;
	}
	if ((ret = md_open_existing(meta_path, true, &md, err, sizeof(err)))) {
		fail(p, "md_open_existing: %s", err);
		return;
	}
	if (md_needs_check(md))
		fail(p, "needs_check is set");
	md_geometry(md, &geo);
	if (geo.region_count != (image_size + geo.region_size - 1) / geo.region_size) {
		fail(p, "META has %" PRIu64 " regions for a %" PRIu64 "-byte image",
		     geo.region_count, image_size);
		goto out;
	}

	/* 2: hydrated regions hold SOURCE data or stamped writes */
	for (uint64_t r = md_find_next_hydrated(md, 0); r < geo.region_count && bad < 3;
	     r = md_find_next_hydrated(md, r + 1)) {
		uint64_t start = r * geo.region_size;
		uint64_t end = MIN(start + geo.region_size, image_size);

		for (uint64_t off = start; off < end && bad < 3; off += BLK) {
			uint64_t n = MIN((uint64_t)BLK, end - off), gen;

			if (!memcmp(d->buf + off, src + off, n))
				continue;
			if (n == BLK && stamp_ok(d->buf + off, off, &gen))
				continue;
			fail(p, "block at %" PRIu64 " of hydrated region %" PRIu64 " holds "
			     "neither SOURCE's data nor a write of the workload%s", off, r,
			     bio_all_zero(d->buf + off, n) ? " (zeros)" : "");
			bad++;
		}
	}

	/* 3: acknowledged writes are intact */
	{
		GHashTableIter it;
		gpointer key, val;

		g_hash_table_iter_init(&it, required);
		while (g_hash_table_iter_next(&it, &key, &val) && bad < 6) {
			uint64_t off = (GPOINTER_TO_SIZE(key) - 1) * BLK, gen = 0;
			uint64_t want = GPOINTER_TO_SIZE(val);

			acks_checked++;
			if (!md_region_hydrated(md, off / geo.region_size)) {
				fail(p, "acknowledged block at %" PRIu64 " (gen %" PRIu64 "): "
				     "its region %" PRIu64 " is not hydrated", off, want,
				     off / geo.region_size);
				bad++;
			} else if (!stamp_ok(d->buf + off, off, &gen) || gen < want) {
				fail(p, "acknowledged block at %" PRIu64 " (gen %" PRIu64 ") is "
				     "lost: %s", off, want, gen ? "older generation" : "not the "
				     "write");
				bad++;
			}
		}
	}
out:
	md_close(md);
}

static int cmp_point(const void *a, const void *b)
{
	const struct point *x = a, *y = b;

	return x->k < y->k ? -1 : x->k > y->k;
}

static void compare_final(int role, const char *path)
{
	uint64_t size;
	const uint8_t *p = map_file(path, &size);
	struct file *f = &files[role];
	uint64_t n = MIN(size, f->size);

	for (uint64_t i = 0; i < n; i += BLK) {
		uint64_t len = MIN((uint64_t)BLK, n - i);

		if (memcmp(p + i, f->buf + i, len)) {
			printf("FAIL: replaying the whole log does not give %s: first "
			       "difference in the 4 KiB block at %" PRIu64 "\n", path, i);
			failures++;
			break;
		}
	}
	if (size > f->size ? !bio_all_zero(p + f->size, size - f->size)
			   : !bio_all_zero(f->buf + size, f->size - size)) {
		printf("FAIL: replaying the whole log does not give %s: sizes %" PRIu64
		       " and %" PRIu64 " differ in non-zero bytes\n", path, size, f->size);
		failures++;
	}
	if (p)
		munmap((void *)p, size);
}

static void usage(void)
{
	fputs("Usage: replay --log LOG --source SOURCE --dest DEST0 --meta META0\n"
	      "              [--acks ACKS] [--final-dest DEST --final-meta META]\n"
	      "              [--random N] [--seed S] [--max-failures N] [--verbose]\n"
	      "              [--late-dest-flush] [--every-write]\n",
	      stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	GArray *pts = g_array_new(FALSE, FALSE, sizeof(struct point));
	GArray *undo[NR_ROLES];
	uint64_t src_size, durable[NR_ROLES] = { 0 }, flushes = 0;
	int64_t last_flush = -1, scanned = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--verbose")) {
			opt.verbose = true;
			continue;
		}
		if (!strcmp(a, "--late-dest-flush")) {
			opt.late_dest_flush = true;
			continue;
		}
		if (!strcmp(a, "--every-write")) {
			opt.every_write = true;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--log")) opt.log = v;
		else if (!strcmp(a, "--source")) opt.source = v;
		else if (!strcmp(a, "--dest")) opt.dest0 = v;
		else if (!strcmp(a, "--meta")) opt.meta0 = v;
		else if (!strcmp(a, "--acks")) opt.acks = v;
		else if (!strcmp(a, "--final-dest")) opt.final_dest = v;
		else if (!strcmp(a, "--final-meta")) opt.final_meta = v;
		else if (!strcmp(a, "--random")) opt.random_per_gap = atoi(v);
		else if (!strcmp(a, "--seed")) opt.seed = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--max-failures")) opt.max_failures = atoi(v);
		else usage();
	}
	if (!opt.log || !opt.source || !opt.dest0 || !opt.meta0)
		usage();
	rng_state = opt.seed * 0x9E3779B97F4A7C15ULL + 1;

	load_log();
	src = map_file(opt.source, &src_size);
	image_size = src_size;
	if (!src)
		die("%s: empty", opt.source);
	load_file(R_DEST, opt.dest0, image_size);
	load_file(R_META, opt.meta0, 0);
	if (files[R_DEST].size != image_size)
		die("the log writes DEST past the image end (%" PRIu64 " > %" PRIu64 ")",
		    files[R_DEST].size, image_size);
	if (opt.acks)
		load_acks();
	required = g_hash_table_new(NULL, NULL);
	meta_fd = memfd_create("replay-meta", MFD_CLOEXEC);
	if (meta_fd < 0)
		die("memfd_create: %s", g_strerror(errno));
	snprintf(meta_path, sizeof(meta_path), "/proc/self/fd/%d", meta_fd);

	/* invariant 4, and the crash points */
	for (size_t i = 0; i < nrecs; i++)
		if (recs[i].role == R_SOURCE && changes_data(&recs[i])) {
			printf("FAIL: record %zu writes SOURCE at %" PRIu64 "\n", i, recs[i].a);
			failures++;
		}
	g_array_append_val(pts, ((struct point){ -1, P_INITIAL, 0 }));
	for (size_t i = 0; i <= nrecs; i++) {
		if (i < nrecs && recs[i].type != REC_FLUSH)
			continue;
		/* random points in the gap (last_flush, i) */
		for (int n = 0; n < opt.random_per_gap && (int64_t)i - last_flush > 1; n++) {
			static const double shares[] = { 0.0, 0.5, 1.0, -1.0 };
			struct point p = { last_flush + 1 + (int64_t)(rnd() % (uint64_t)
					   ((int64_t)i - last_flush - 1)), P_RANDOM, 0 };

			p.keep = shares[rnd() % 4];
			if (p.keep < 0)
				p.keep = rnd01();
			g_array_append_val(pts, p);
		}
		if (i < nrecs) {
			g_array_append_val(pts, ((struct point){ (int64_t)i, P_FLUSH, 0 }));
			last_flush = (int64_t)i;
			flushes++;
		}
	}
	for (size_t i = 0; opt.every_write && i < nrecs; i++)
		if (recs[i].type == REC_WRITE)
			g_array_append_val(pts, ((struct point){ (int64_t)i, P_WRITE, 0.0 }));
	if (nrecs)
		g_array_append_val(pts, ((struct point){ (int64_t)nrecs - 1, P_END, 1.0 }));
	g_array_sort(pts, cmp_point); /* stable enough: ties keep no meaning */

	for (int r = 0; r < NR_ROLES; r++)
		undo[r] = g_array_new(FALSE, FALSE, sizeof(struct undo));
	for (guint n = 0; n < pts->len; n++) {
		struct point *p = &g_array_index(pts, struct point, n);

		/* what the flushes up to record k made durable, per file */
		for (; scanned <= p->k; scanned++)
			if (recs[scanned].type == REC_FLUSH &&
			    recs[scanned].cover > durable[recs[scanned].role])
				durable[recs[scanned].role] = recs[scanned].cover;
		for (int r = R_DEST; r < NR_ROLES; r++) {
			advance(r, MIN(durable[r], (uint64_t)(p->k + 1)));
			overlay(r, files[r].next, p->k, p->kind == P_FLUSH ? 0.0 : p->keep,
				undo[r]);
		}
		if (opt.verbose)
			printf("point %u: %s after record %" PRId64 " keep %.2f\n", n,
			       kind_names[p->kind], p->k, p->keep);
		check_point(p);
		if (p->kind == P_END) {
			if (opt.final_dest)
				compare_final(R_DEST, opt.final_dest);
			if (opt.final_meta)
				compare_final(R_META, opt.final_meta);
		}
		for (int r = R_DEST; r < NR_ROLES; r++)
			rollback(r, undo[r]);
		points_done++;
		kinds_done[p->kind]++;
	}
	printf("replay: %" PRIu64 " records, %" PRIu64 " flushes, %zu acked fsyncs; %"
	       PRIu64 " points (%" PRIu64 " flush, %" PRIu64 " random, %" PRIu64
	       " write, %" PRIu64 " initial/end), %" PRIu64 " acknowledged-block "
	       "checks, %" PRIu64 " failures\n", (uint64_t)nrecs, flushes, nacks,
	       points_done, kinds_done[P_FLUSH], kinds_done[P_RANDOM], kinds_done[P_WRITE],
	       kinds_done[P_INITIAL] + kinds_done[P_END], acks_checked, failures);
	return failures ? 1 : 0;
}
