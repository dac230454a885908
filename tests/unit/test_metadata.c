/*
 * test_metadata.c - Check suite for the metadata module (metadata.h:
 * src/metadata.c and the md_* layers under it), through its public verbs.
 *
 * Every test works on a META file in a fresh temporary directory. Some tests
 * damage META on purpose; they read blocks through format.h's structs (the
 * ones docs/format.md names) to find and re-seal them.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "clonefs/format.h"
#include "clonefs/metadata.h"
#include "clonefs/blockio.h"

#include "unit.h"

#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <openssl/evp.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BS MD_FMT_BLOCK_SIZE
#define LEAF_BITS MD_LEAF_BITS

static char *tmpdir;
static char *meta;	/* tmpdir/meta */
static char err[256];

static void empty_tmpdir(void)
{
	GDir *d = g_dir_open(tmpdir, 0, NULL);
	const char *name;

	while (d && (name = g_dir_read_name(d))) {
		char *p = g_build_filename(tmpdir, name, NULL);

		g_unlink(p);
		g_free(p);
	}
	if (d)
		g_dir_close(d);
}

/* Unchecked (runs in the parent), so the directory goes even if a test fails. */
static void setup_dir(void)
{
	tmpdir = g_dir_make_tmp("clonefs-md-XXXXXX", NULL);
	ck_assert_ptr_nonnull(tmpdir);
	meta = g_build_filename(tmpdir, "meta", NULL);
}

static void teardown_dir(void)
{
	empty_tmpdir();
	g_rmdir(tmpdir);
	g_free(meta);
	g_free(tmpdir);
}

/* Before each test: an empty directory, and METAs get the default journal. */
static void fresh_test(void)
{
	empty_tmpdir();
	md_test_journal_blocks(MD_JOURNAL_BLOCKS);
}

/* ---- helpers ---- */

static struct md *open_ok(uint32_t region_size, uint64_t count)
{
	struct md_geometry geo = { region_size, count };
	struct md *md = NULL;
	int r = md_open(meta, &geo, false, &md, err, sizeof(err));

	ck_assert_msg(r == 0, "md_open: %d %s", r, err);
	return md;
}

static int open_err(uint32_t region_size, uint64_t count, bool ro)
{
	struct md_geometry geo = { region_size, count };
	struct md *md = NULL;
	int r;

	err[0] = 0;
	r = md_open(meta, &geo, ro, &md, err, sizeof(err));
	if (r == 0)
		md_close(md);
	return r;
}

/* A flush's commit (a journal record), then a checkpoint (the trees). */
static void commit_ok(struct md *md)
{
	ck_assert_int_eq(md_pre_commit(md), 0);
	ck_assert_int_eq(md_commit(md), 0);
	ck_assert_int_eq(md_checkpoint(md), 0);
}

static void check_clean(void)
{
	int r = md_check(meta, err, sizeof(err));

	ck_assert_msg(r == 0, "md_check: %d %s", r, err);
}

static GBytes *slurp(const char *path)
{
	gchar *data;
	gsize len;

	ck_assert(g_file_get_contents(path, &data, &len, NULL));
	return g_bytes_new_take(data, len);
}

static void copy_file(const char *from, const char *to)
{
	GBytes *b = slurp(from);
	gsize len;
	const void *p = g_bytes_get_data(b, &len);

	ck_assert(g_file_set_contents(to, p, (gssize)len, NULL));
	g_bytes_unref(b);
}

static void rw_block(const char *path, uint64_t nr, void *buf, bool write)
{
	int fd = open(path, O_RDWR);
	ssize_t n;

	ck_assert_int_ge(fd, 0);
	n = write ? pwrite(fd, buf, BS, (off_t)(nr * BS)) : pread(fd, buf, BS, (off_t)(nr * BS));
	ck_assert_int_eq(n, BS);
	close(fd);
}

/* The header's transaction id of block @b. */
static uint64_t hdr_txid(const uint8_t *b)
{
	return le64_to_cpu(((const struct md_block_header *)b)->txid);
}

/* Word @i of a leaf or index block @b. */
static uint64_t word_at(const uint8_t *b, unsigned i)
{
	return le64_to_cpu(((const struct md_node_disk *)b)->words[i]);
}

static struct md_superblock_disk *as_sb(uint8_t *b)
{
	return (struct md_superblock_disk *)b;
}

/* Re-seals a block after a deliberate edit: SHA-256 of bytes 32..4095. */
static void reseal(uint8_t *b)
{
	unsigned int len;

	ck_assert(EVP_Digest(b + 32, BS - 32, b, &len, EVP_sha256(), NULL) == 1);
}

/* The active superblock (highest transaction id of the two slots). */
static int active_slot(const char *path, uint8_t *sb)
{
	uint8_t a[BS], b[BS];

	rw_block(path, 0, a, false);
	rw_block(path, 1, b, false);
	if (hdr_txid(b) > hdr_txid(a)) {
		memcpy(sb, b, BS);
		return 1;
	}
	memcpy(sb, a, BS);
	return 0;
}

/* The active superblock's bitmap root (@sm: its space-map root). */
static uint64_t root_of(const char *path, bool sm)
{
	uint8_t sb[BS];

	active_slot(path, sb);
	return le64_to_cpu(sm ? as_sb(sb)->sm_root : as_sb(sb)->bm_root);
}

static void flip_byte(const char *path, uint64_t nr, unsigned off)
{
	uint8_t b[BS];

	rw_block(path, nr, b, false);
	b[off] ^= 0x5a;
	rw_block(path, nr, b, true);
}

/* ---- format and reopen ---- */

START_TEST(fresh_format_reopen)
{
	struct md_geometry geo;
	uint64_t used, total;
	struct stat st;
	struct md *md = open_ok(65536, 1000);

	ck_assert_int_eq(md_mode(md), MD_MODE_RW);
	ck_assert_uint_eq(md_transaction_id(md), 1);
	ck_assert_uint_eq(md_nr_hydrated(md), 0);
	ck_assert(!md_changed(md));
	ck_assert(!md_needs_check(md));
	md_space(md, &used, &total);
	ck_assert_uint_ge(used, 3);
	ck_assert_uint_ge(total, 256);
	ck_assert_uint_lt(used, total);
	ck_assert_int_eq(md_close(md), 0);

	ck_assert_int_eq(stat(meta, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	ck_assert_uint_eq((uint64_t)st.st_size, total * BS);

	md = open_ok(65536, 1000);
	md_geometry(md, &geo);
	ck_assert_uint_eq(geo.region_size, 65536);
	ck_assert_uint_eq(geo.region_count, 1000);
	ck_assert_uint_eq(md_transaction_id(md), 1);
	ck_assert_int_eq(md_close(md), 0);
	check_clean();

	ck_assert_int_eq(md_open_existing(meta, true, &md, err, sizeof(err)), 0);
	md_geometry(md, &geo);
	ck_assert_uint_eq(geo.region_count, 1000);
	ck_assert_int_eq(md_set_region_hydrated(md, 1), -EROFS);
	ck_assert_int_eq(md_close(md), 0);
}
END_TEST

START_TEST(format_existing_zero_file)
{
	struct md *md;
	uint64_t used, total;
	struct stat st;
	int fd;

	/* big enough: its size is kept */
	fd = open(meta, O_CREAT | O_RDWR, 0600);
	ck_assert_int_eq(ftruncate(fd, 4000 * BS), 0);
	close(fd);
	md = open_ok(4096, 100);
	md_space(md, &used, &total);
	ck_assert_uint_eq(total, 4000);
	md_close(md);

	/* too small: extended */
	g_unlink(meta);
	fd = open(meta, O_CREAT | O_RDWR, 0600);
	ck_assert_int_eq(ftruncate(fd, 3 * BS), 0);
	close(fd);
	md = open_ok(4096, 100000);
	md_space(md, &used, &total);
	ck_assert_uint_gt(total, 3);
	md_close(md);
	ck_assert_int_eq(stat(meta, &st), 0);
	ck_assert_uint_eq((uint64_t)st.st_size, total * BS);
	check_clean();

	/* missing and read-only: refused, nothing created */
	g_unlink(meta);
	ck_assert_int_ne(open_err(4096, 100, true), 0);
	ck_assert_int_ne(access(meta, F_OK), 0);
}
END_TEST

START_TEST(set_commit_reopen)
{
	const uint64_t n = 100000;	/* 4 leaves, one index level */
	struct md *md = open_ok(4096, n);

	ck_assert_int_eq(md_set_region_hydrated(md, 0), 0);
	ck_assert_int_eq(md_set_region_hydrated(md, 40000), 0);
	ck_assert_int_eq(md_set_region_hydrated(md, n - 1), 0);
	ck_assert_int_eq(md_set_range_hydrated(md, 70000, 500), 0);
	ck_assert_int_eq(md_set_region_hydrated(md, n), -EINVAL);
	ck_assert(md_changed(md));
	ck_assert_uint_eq(md_nr_hydrated(md), 503);
	commit_ok(md);
	ck_assert(!md_changed(md));
	ck_assert_uint_eq(md_transaction_id(md), 3);	/* a record, a checkpoint */
	/* marking a set bit again is not a change */
	ck_assert_int_eq(md_set_region_hydrated(md, 0), 0);
	ck_assert(!md_changed(md));
	ck_assert_int_eq(md_close(md), 0);
	check_clean();

	md = open_ok(4096, n);
	ck_assert_uint_eq(md_nr_hydrated(md), 503);
	ck_assert(md_region_hydrated(md, 0));
	ck_assert(md_region_hydrated(md, 40000));
	ck_assert(md_region_hydrated(md, n - 1));
	ck_assert(md_range_hydrated(md, 70000, 500));
	ck_assert(!md_region_hydrated(md, 1));
	ck_assert(!md_region_hydrated(md, 70500));
	/* md_close commits what is pending */
	ck_assert_int_eq(md_set_region_hydrated(md, 5), 0);
	ck_assert_int_eq(md_close(md), 0);
	md = open_ok(4096, n);
	ck_assert(md_region_hydrated(md, 5));
	ck_assert_uint_eq(md_nr_hydrated(md), 504);
	md_close(md);
	check_clean();
}
END_TEST

/* Spec 4.5, 6.1, 6.2: marks made after pre_commit go to the next transaction. */
START_TEST(two_phase_commit)
{
	struct md_geometry geo = { 4096, 1000 };
	struct md *md = open_ok(4096, 1000), *ro;

	ck_assert_int_eq(md_set_region_hydrated(md, 10), 0);
	ck_assert_int_eq(md_pre_commit(md), 0);
	/* same word, same leaf as region 10, and a different spot */
	ck_assert_int_eq(md_set_region_hydrated(md, 11), 0);
	ck_assert_int_eq(md_set_region_hydrated(md, 900), 0);
	ck_assert_int_eq(md_commit(md), 0);
	ck_assert(md_changed(md));
	ck_assert(md_region_hydrated(md, 11));

	ck_assert_int_eq(md_open(meta, &geo, true, &ro, err, sizeof(err)), 0);
	ck_assert(md_region_hydrated(ro, 10));
	ck_assert(!md_region_hydrated(ro, 11));
	ck_assert(!md_region_hydrated(ro, 900));
	ck_assert_uint_eq(md_nr_hydrated(ro), 1);
	md_close(ro);

	commit_ok(md);
	ck_assert(!md_changed(md));
	ck_assert_int_eq(md_open(meta, &geo, true, &ro, err, sizeof(err)), 0);
	ck_assert(md_region_hydrated(ro, 11));
	ck_assert(md_region_hydrated(ro, 900));
	ck_assert_uint_eq(md_nr_hydrated(ro), 3);
	md_close(ro);
	md_close(md);
	check_clean();
}
END_TEST

/* Spec 4.4: a 1-region commit on a 16 TiB geometry is a handful of blocks. */
START_TEST(huge_geometry_small_commit)
{
	const uint64_t n = 1ULL << 32;
	gint64 t0 = g_get_monotonic_time();
	struct md *md = open_ok(4096, n);
	uint64_t before, used, total;

	ck_assert_int_lt(g_get_monotonic_time() - t0, G_USEC_PER_SEC);
	md_space(md, &used, &total);
	ck_assert_uint_ge(total, 2 * (n / LEAF_BITS));
	ck_assert_int_eq(md_set_region_hydrated(md, n - 1), 0);
	ck_assert_int_eq(md_set_region_hydrated(md, 3000000000ULL), 0);
	ck_assert_uint_eq(md_find_next_hydrated(md, 0), 3000000000ULL);
	commit_ok(md);
	ck_assert_int_eq(md_set_region_hydrated(md, 12345678), 0);
	before = md_blocks_written(md);
	commit_ok(md);
	ck_assert_uint_le(md_blocks_written(md) - before, 8);
	ck_assert_int_eq(md_close(md), 0);

	t0 = g_get_monotonic_time();
	md = open_ok(4096, n);
	ck_assert_int_lt(g_get_monotonic_time() - t0, G_USEC_PER_SEC);
	ck_assert_uint_eq(md_nr_hydrated(md), 3);
	ck_assert(md_region_hydrated(md, n - 1));
	ck_assert(md_region_hydrated(md, 12345678));
	ck_assert_uint_eq(md_find_next_hydrated(md, 12345679), 3000000000ULL);
	ck_assert_uint_eq(md_find_next_unhydrated(md, n - 1), n);

	/* hydrate everything: commit and reopen stay fast and small */
	ck_assert_int_eq(md_set_range_hydrated(md, 0, n), 0);
	ck_assert(md_all_hydrated(md));
	before = md_blocks_written(md);
	commit_ok(md);
	ck_assert_uint_le(md_blocks_written(md) - before, 16);
	ck_assert_int_eq(md_close(md), 0);
	t0 = g_get_monotonic_time();
	md = open_ok(4096, n);
	ck_assert_int_lt(g_get_monotonic_time() - t0, G_USEC_PER_SEC);
	ck_assert(md_all_hydrated(md));
	ck_assert_uint_eq(md_nr_hydrated(md), n);
	ck_assert_uint_eq(md_find_next_unhydrated(md, 0), n);
	md_close(md);
	check_clean();
}
END_TEST

/* ---- refusing and validating (spec 1.3) ---- */

START_TEST(geometry_mismatch_refused)
{
	struct md *md = open_ok(4096, 5000);
	GBytes *before, *after;
	int fd;

	ck_assert_int_eq(md_set_region_hydrated(md, 7), 0);
	md_close(md);
	before = slurp(meta);

	ck_assert_int_eq(open_err(65536, 5000, false), -EINVAL);
	ck_assert_str_eq(err, "region size 65536 does not match metadata (4096);"
			 " leave out region_size= to use metadata's");
	ck_assert_int_eq(open_err(4096, 5001, false), -EINVAL);
	ck_assert_str_eq(err, "region count 5001 does not match metadata (5000)");
	ck_assert_int_eq(open_err(1000, 5000, false), -EINVAL);
	after = slurp(meta);
	ck_assert(g_bytes_equal(before, after));
	g_bytes_unref(after);
	g_bytes_unref(before);

	/* something else entirely */
	fd = open(meta, O_WRONLY | O_TRUNC);
	ck_assert_int_eq(write(fd, "hello, world\n", 13), 13);
	close(fd);
	before = slurp(meta);
	ck_assert_int_eq(open_err(4096, 5000, false), -EINVAL);
	ck_assert_str_eq(err, "not a clonefs metadata file");
	ck_assert_int_ne(md_check(meta, err, sizeof(err)), 0);
	after = slurp(meta);
	ck_assert(g_bytes_equal(before, after));
	g_bytes_unref(after);
	g_bytes_unref(before);
}
END_TEST

/*
 * A META with both slots valid, a one-level bitmap index over 4 leaves (two
 * of them real blocks) and a one-leaf space map. Copied to meta.base.
 */
static char *make_base(void)
{
	char *base = g_strconcat(meta, ".base", NULL);
	struct md *md = open_ok(4096, 100000);

	ck_assert_int_eq(md_set_region_hydrated(md, 3), 0);
	ck_assert_int_eq(md_set_region_hydrated(md, 70000), 0);
	commit_ok(md);
	ck_assert_int_eq(md_set_region_hydrated(md, 4), 0);
	ck_assert_int_eq(md_close(md), 0);
	check_clean();
	copy_file(meta, base);
	return base;
}

/*
 * The trees alone, no journal: the tests of damaged trees and superblocks
 * (the journal has its own).
 */
static char *make_base_trees(void)
{
	md_test_journal_blocks(0);
	return make_base();
}

/* Entry @i of an index block: the child's block (low 32 bits; format version 2). */
static uint64_t index_entry(uint64_t index_block, unsigned i)
{
	uint8_t b[BS];

	rw_block(meta, index_block, b, false);
	return word_at(b, i) & 0xffffffffu;
}

/* Damage block @nr of a fresh copy; open and check must both refuse with @want. */
static void expect_refused(const char *base, uint64_t nr, const char *want)
{
	GBytes *before, *after;
	char cerr[256];

	copy_file(base, meta);
	flip_byte(meta, nr, 200);
	before = slurp(meta);
	ck_assert_int_eq(open_err(4096, 100000, false), -EILSEQ);
	ck_assert_str_eq(err, want);
	ck_assert_int_eq(md_check(meta, cerr, sizeof(cerr)), -EILSEQ);
	ck_assert_str_eq(cerr, want);
	ck_assert_int_ne(md_dump(meta, stdout, cerr, sizeof(cerr)), 0);
	after = slurp(meta);
	ck_assert(g_bytes_equal(before, after));
	g_bytes_unref(after);
	g_bytes_unref(before);
}

START_TEST(corrupt_each_block_kind)
{
	char *base = make_base_trees(), want[128];
	uint64_t root, leaf0, leaf2, sm;
	uint8_t sb[BS];
	struct md *md;
	int slot;

	root = root_of(meta, false);
	sm = root_of(meta, true);
	leaf0 = index_entry(root, 0);
	leaf2 = index_entry(root, 2);
	ck_assert_uint_gt(root, 1);
	ck_assert_uint_gt(leaf0, 1);
	ck_assert_uint_gt(leaf2, 1);
	ck_assert_uint_eq(index_entry(root, 1), 0);	/* all-zero leaf: no block */

	for (int k = 0; k < 4; k++) {
		uint64_t nr = (uint64_t[]){ root, leaf0, leaf2, sm }[k];

		snprintf(want, sizeof(want), "bad checksum at block %" PRIu64, nr);
		expect_refused(base, nr, want);
	}

	/* the active slot: open falls back to the older one, check complains */
	copy_file(base, meta);
	slot = active_slot(meta, sb);
	flip_byte(meta, (uint64_t)slot, 300);
	md = open_ok(4096, 100000);
	ck_assert_uint_eq(md_transaction_id(md), 2);
	ck_assert(md_region_hydrated(md, 3));
	ck_assert(!md_region_hydrated(md, 4));
	md_close(md);
	ck_assert_int_eq(md_check(meta, err, sizeof(err)), -EILSEQ);
	ck_assert_ptr_nonnull(strstr(err, "bad checksum in superblock"));
	/* repair rewrites the bad slot with the state that survived, and says
	 * it lost a transaction: region 4 reads SOURCE again */
	ck_assert_int_eq(md_check_repair(meta, err, sizeof(err)), MD_CHECK_FELL_BACK);
	ck_assert_msg(strstr(err, "fell back to transaction 2: 1 regions hydrated in the lost"
			     " transaction read SOURCE again"), "%s", err);
	check_clean();
	md = open_ok(4096, 100000);
	ck_assert_uint_eq(md_transaction_id(md), 3);
	ck_assert(!md_region_hydrated(md, 4));
	md_close(md);

	/* the inactive slot: open uses the newest, check complains */
	copy_file(base, meta);
	flip_byte(meta, (uint64_t)!slot, 300);
	ck_assert_int_eq(md_check(meta, err, sizeof(err)), -EILSEQ);
	md = open_ok(4096, 100000);
	ck_assert_uint_eq(md_transaction_id(md), 3);
	ck_assert(md_region_hydrated(md, 4));
	md_close(md);

	/* both: nothing to open */
	copy_file(base, meta);
	flip_byte(meta, 0, 300);
	flip_byte(meta, 1, 300);
	ck_assert_int_eq(open_err(4096, 100000, false), -EILSEQ);
	ck_assert_str_eq(err, "bad checksum in superblock (block 0)");
	ck_assert_int_ne(md_check(meta, err, sizeof(err)), 0);

	/* a damaged checksum field is as bad as damaged contents */
	copy_file(base, meta);
	flip_byte(meta, leaf0, 5);
	ck_assert_int_eq(open_err(4096, 100000, false), -EILSEQ);
	g_free(base);
}
END_TEST

START_TEST(misplaced_block_detected)
{
	char *base = make_base(), want[128];
	uint64_t root = root_of(meta, false);
	uint64_t a = index_entry(root, 0), b = index_entry(root, 2);
	uint8_t blk[BS];

	rw_block(meta, a, blk, false);
	rw_block(meta, b, blk, true);
	snprintf(want, sizeof(want), "misplaced block at %" PRIu64 " (it belongs at block %" PRIu64 ")",
		 b, a);
	ck_assert_int_eq(open_err(4096, 100000, false), -EILSEQ);
	ck_assert_str_eq(err, want);
	ck_assert_int_eq(md_check(meta, err, sizeof(err)), -EILSEQ);
	ck_assert_str_eq(err, want);
	g_free(base);
}
END_TEST

/* Spec 4.3: a torn superblock write leaves the previous state. */
START_TEST(torn_superblock_falls_back)
{
	char *base = make_base_trees();
	uint8_t sb[BS], old[BS];
	struct md *md;
	int slot = active_slot(meta, sb);

	/* only the first 128 bytes reached the disk; the rest is stale */
	rw_block(meta, (uint64_t)!slot, old, false);
	memcpy(sb + 128, old + 128, BS - 128);
	rw_block(meta, (uint64_t)slot, sb, true);
	md = open_ok(4096, 100000);
	ck_assert_uint_eq(md_transaction_id(md), 2);
	ck_assert(md_region_hydrated(md, 3));
	ck_assert(md_region_hydrated(md, 70000));
	ck_assert(!md_region_hydrated(md, 4));
	/* the next commit reuses the torn slot and all is well again */
	ck_assert_int_eq(md_set_region_hydrated(md, 9), 0);
	commit_ok(md);
	ck_assert_uint_eq(md_transaction_id(md), 3);
	md_close(md);
	check_clean();
	md = open_ok(4096, 100000);
	ck_assert(md_region_hydrated(md, 9));
	ck_assert(!md_region_hydrated(md, 4));
	md_close(md);
	g_free(base);
}
END_TEST

/* ---- failures (spec 4.6) ---- */

START_TEST(out_of_space_goes_ro)
{
	struct md *md;
	uint64_t used, total;
	char msg[256];

	md_test_journal_blocks(0);	/* a record needs no space: see journal_out_of_space */
	md = open_ok(4096, 1000);
	md_space(md, &used, &total);
	md_test_limit_blocks(md, used);	/* a fresh META uses blocks 0..used-1 */
	ck_assert_int_eq(md_set_region_hydrated(md, 5), 0);
	ck_assert_int_eq(md_pre_commit(md), 0);
	ck_assert_int_eq(md_commit(md), -ENOSPC);
	ck_assert_int_eq(md_mode(md), MD_MODE_RO);
	ck_assert(!md_region_hydrated(md, 5));
	ck_assert_uint_eq(md_nr_hydrated(md), 0);
	ck_assert_int_eq(md_set_region_hydrated(md, 6), -EIO);
	ck_assert(!md_needs_check(md));
	md_last_error(md, msg, sizeof(msg));
	ck_assert_ptr_nonnull(strstr(msg, "out of metadata space"));
	md_space(md, &used, &total);
	ck_assert_uint_eq(md_transaction_id(md), 1);
	ck_assert_int_eq(md_close(md), 0);
	check_clean();
	md = open_ok(4096, 1000);
	ck_assert(!md_region_hydrated(md, 5));
	md_close(md);
}
END_TEST

START_TEST(write_error_rolls_back_and_needs_check)
{
	struct md *md;

	md_test_journal_blocks(0);	/* the trees: see journal_write_error_keeps_records */
	/* fail the n-th write of a commit, for every n the commit has */
	for (uint64_t nth = 0;; nth++) {
		char spec[64];
		int r;

		g_unlink(meta);
		md = open_ok(4096, 100000);
		ck_assert_int_eq(md_set_region_hydrated(md, 1), 0);
		commit_ok(md);
		ck_assert_int_eq(md_set_region_hydrated(md, 2), 0);
		ck_assert_int_eq(md_set_region_hydrated(md, 50000), 0);
		ck_assert_int_eq(md_pre_commit(md), 0);
		snprintf(spec, sizeof(spec), "meta:write:eio:after=%" PRIu64 ":once", nth);
		ck_assert_int_eq(bio_fault_set(spec, NULL, 0), 0);
		r = md_commit(md);
		bio_fault_clear();
		if (r == 0) {
			ck_assert_uint_ge(nth, 3);
			md_close(md);
			break;
		}
		ck_assert_int_eq(r, -EIO);
		ck_assert_int_eq(md_mode(md), MD_MODE_RO);
		ck_assert(md_needs_check(md));
		ck_assert(md_region_hydrated(md, 1));
		ck_assert(!md_region_hydrated(md, 2));
		ck_assert(!md_region_hydrated(md, 50000));
		ck_assert_uint_eq(md_nr_hydrated(md), 1);
		ck_assert_int_eq(md_set_region_hydrated(md, 3), -EIO);
		ck_assert_int_eq(md_commit(md), -EIO);
		ck_assert_int_eq(md_close(md), 0);

		ck_assert_int_eq(open_err(4096, 100000, false), -EUCLEAN);
		ck_assert_str_eq(err, "needs_check is set: run clonefs check");
		check_clean();
		ck_assert_int_eq(md_check_repair(meta, err, sizeof(err)), MD_CHECK_REPAIRED);
		ck_assert_str_eq(err, "cleared needs_check");
		md = open_ok(4096, 100000);
		ck_assert(!md_needs_check(md));
		ck_assert(md_region_hydrated(md, 1));
		ck_assert(!md_region_hydrated(md, 2));
		md_close(md);
		check_clean();
	}

	/* nothing can be written: state unknown, fail mode */
	g_unlink(meta);
	md = open_ok(4096, 1000);
	ck_assert_int_eq(md_set_region_hydrated(md, 1), 0);
	ck_assert_int_eq(md_pre_commit(md), 0);
	ck_assert_int_eq(bio_fault_set("meta:write:eio", NULL, 0), 0);
	ck_assert_int_eq(md_commit(md), -EIO);
	bio_fault_clear();
	ck_assert_int_eq(md_mode(md), MD_MODE_FAIL);
	ck_assert(!md_region_hydrated(md, 1));
	ck_assert_int_eq(md_set_region_hydrated(md, 2), -EIO);
	ck_assert_int_eq(md_abort(md), -EIO);
	md_close(md);
	md = open_ok(4096, 1000);	/* the old state, intact */
	ck_assert_uint_eq(md_nr_hydrated(md), 0);
	md_close(md);
	check_clean();
}
END_TEST

START_TEST(abort_rolls_back)
{
	const uint64_t n = 3 * LEAF_BITS + 10;
	struct md *md = open_ok(4096, n);

	ck_assert_int_eq(md_set_region_hydrated(md, 1), 0);
	commit_ok(md);

	/* dirty only; same leaf as a committed bit (re-read from disk) */
	ck_assert_int_eq(md_set_region_hydrated(md, 2), 0);
	ck_assert_int_eq(md_set_region_hydrated(md, LEAF_BITS + 3), 0);
	ck_assert_int_eq(md_abort(md), 0);
	ck_assert(md_region_hydrated(md, 1));
	ck_assert(!md_region_hydrated(md, 2));
	ck_assert(!md_region_hydrated(md, LEAF_BITS + 3));
	ck_assert_uint_eq(md_nr_hydrated(md), 1);
	ck_assert(!md_changed(md));

	/* frozen and dirty, and a whole leaf at once */
	ck_assert_int_eq(md_set_region_hydrated(md, 4), 0);
	ck_assert_int_eq(md_pre_commit(md), 0);
	ck_assert_int_eq(md_set_range_hydrated(md, LEAF_BITS, LEAF_BITS), 0);
	ck_assert_uint_eq(md_find_next_unhydrated(md, LEAF_BITS), 2 * LEAF_BITS);
	ck_assert_int_eq(md_abort(md), 0);
	ck_assert(!md_region_hydrated(md, 4));
	ck_assert(!md_region_hydrated(md, LEAF_BITS));
	ck_assert_uint_eq(md_nr_hydrated(md), 1);
	ck_assert_int_eq(md_commit(md), 0);	/* nothing frozen: no-op */
	ck_assert_uint_eq(md_transaction_id(md), 3);

	/* still usable */
	ck_assert_int_eq(md_mode(md), MD_MODE_RW);
	ck_assert_int_eq(md_set_range_hydrated(md, LEAF_BITS, LEAF_BITS), 0);
	commit_ok(md);
	md_close(md);
	md = open_ok(4096, n);
	ck_assert_uint_eq(md_nr_hydrated(md), LEAF_BITS + 1);
	ck_assert(md_range_hydrated(md, LEAF_BITS, LEAF_BITS));
	md_close(md);
	check_clean();
}
END_TEST

/* ---- searching ---- */

START_TEST(find_next_edges)
{
	struct md *md = open_ok(4096, 100);	/* not a multiple of 64 */

	ck_assert_uint_eq(md_find_next_hydrated(md, 0), 100);
	ck_assert_uint_eq(md_find_next_unhydrated(md, 0), 0);
	ck_assert_uint_eq(md_find_next_unhydrated(md, 100), 100);
	ck_assert_uint_eq(md_find_next_unhydrated(md, 1000), 100);
	ck_assert_int_eq(md_set_region_hydrated(md, 63), 0);
	ck_assert_int_eq(md_set_region_hydrated(md, 64), 0);
	ck_assert_int_eq(md_set_region_hydrated(md, 99), 0);
	ck_assert_uint_eq(md_find_next_hydrated(md, 0), 63);
	ck_assert_uint_eq(md_find_next_hydrated(md, 64), 64);
	ck_assert_uint_eq(md_find_next_hydrated(md, 65), 99);
	ck_assert_uint_eq(md_find_next_hydrated(md, 100), 100);
	ck_assert_uint_eq(md_find_next_unhydrated(md, 63), 65);
	ck_assert_uint_eq(md_find_next_unhydrated(md, 99), 100);
	ck_assert(md_range_hydrated(md, 63, 2));
	ck_assert(!md_range_hydrated(md, 62, 2));
	ck_assert(md_range_hydrated(md, 99, 1));
	ck_assert(!md_range_hydrated(md, 99, 2));
	ck_assert(md_range_hydrated(md, 5, 0));
	ck_assert(!md_all_hydrated(md));
	ck_assert_int_eq(md_set_range_hydrated(md, 0, 100), 0);
	ck_assert_int_eq(md_set_range_hydrated(md, 50, 51), -EINVAL);
	ck_assert(md_all_hydrated(md));
	ck_assert_uint_eq(md_nr_hydrated(md), 100);
	ck_assert_uint_eq(md_find_next_unhydrated(md, 0), 100);
	md_close(md);
	check_clean();	/* bits past region 99 stayed zero on disk */
	g_unlink(meta);

	/* across leaves: a whole all-ones leaf and a short last leaf */
	const uint64_t n = LEAF_BITS + 70;

	md = open_ok(4096, n);
	ck_assert_int_eq(md_set_range_hydrated(md, 0, LEAF_BITS), 0);
	ck_assert_uint_eq(md_find_next_unhydrated(md, 0), LEAF_BITS);
	ck_assert_uint_eq(md_find_next_hydrated(md, LEAF_BITS), n);
	ck_assert_int_eq(md_set_region_hydrated(md, n - 1), 0);
	ck_assert_uint_eq(md_find_next_hydrated(md, LEAF_BITS), n - 1);
	ck_assert_uint_eq(md_find_next_unhydrated(md, n - 1), n);
	ck_assert_uint_eq(md_find_next_hydrated(md, 12345), 12345);
	commit_ok(md);
	md_close(md);
	md = open_ok(4096, n);
	ck_assert_uint_eq(md_find_next_unhydrated(md, 0), LEAF_BITS);
	ck_assert_uint_eq(md_find_next_hydrated(md, LEAF_BITS), n - 1);
	ck_assert_int_eq(md_set_range_hydrated(md, 0, n), 0);
	ck_assert(md_all_hydrated(md));
	md_close(md);
	md = open_ok(4096, n);
	ck_assert(md_all_hydrated(md));
	ck_assert_uint_eq(md_find_next_unhydrated(md, 0), n);
	md_close(md);
	check_clean();
}
END_TEST

/* ---- md_check accounting ---- */

static void set_sm_bit(uint64_t sm_leaf, uint64_t b, bool used)
{
	uint8_t blk[BS];
	uint64_t w;

	rw_block(meta, sm_leaf, blk, false);
	memcpy(&w, blk + 64 + 8 * (b / 64), 8);
	if (used)
		w |= 1ULL << (b % 64);
	else
		w &= ~(1ULL << (b % 64));
	memcpy(blk + 64 + 8 * (b / 64), &w, 8);
	reseal(blk);
	rw_block(meta, sm_leaf, blk, true);
}

START_TEST(check_finds_leaks)
{
	char *base = make_base(), want[128];
	uint64_t sm = root_of(meta, true), root = root_of(meta, false);
	uint64_t used, total;
	struct md *md = open_ok(4096, 100000);

	md_space(md, &used, &total);
	md_close(md);

	set_sm_bit(sm, total - 1, true);
	snprintf(want, sizeof(want), "block %" PRIu64 " is leaked (marked used but unreachable)",
		 total - 1);
	ck_assert_int_eq(md_check(meta, err, sizeof(err)), -EILSEQ);
	ck_assert_str_eq(err, want);
	md = open_ok(4096, 100000);	/* a leak is harmless: open works */
	md_close(md);

	copy_file(base, meta);
	set_sm_bit(sm, root, false);
	snprintf(want, sizeof(want), "block %" PRIu64 " is in use but marked free", root);
	ck_assert_int_eq(md_check(meta, err, sizeof(err)), -EILSEQ);
	ck_assert_str_eq(err, want);
	/* open refuses: the allocator would overwrite a live block */
	ck_assert_int_eq(open_err(4096, 100000, false), -EILSEQ);
	ck_assert_str_eq(err, want);
	g_free(base);
}
END_TEST

/* ---- dump ---- */

/* md_dump of META, parsed (json_node_unref it). */
static JsonNode *dump_json(void)
{
	JsonParser *p = json_parser_new();
	GError *e = NULL;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	JsonNode *root;

	ck_assert_int_eq(md_dump(meta, f, err, sizeof(err)), 0);
	fclose(f);
	ck_assert_msg(json_parser_load_from_data(p, buf, (gssize)len, &e), "%s: %s",
		      e ? e->message : "", buf);
	root = json_parser_steal_root(p);
	ck_assert(JSON_NODE_HOLDS_OBJECT(root));
	g_object_unref(p);
	free(buf);
	return root;
}

/* The one value at @path ("$.journal.records[0].ranges") is @want, compact JSON. */
static void ck_dump(JsonNode *dump, const char *path, const char *want)
{
	GError *e = NULL;
	JsonNode *found = json_path_query(path, dump, &e);
	JsonArray *a;
	char *have;

	ck_assert_msg(found, "%s: %s", path, e ? e->message : "");
	a = json_node_get_array(found);
	ck_assert_msg(json_array_get_length(a) == 1, "%s: %u values", path,
		      json_array_get_length(a));
	have = json_to_string(json_array_get_element(a, 0), FALSE);
	ck_assert_msg(!strcmp(have, want), "%s is %s, not %s", path, have, want);
	g_free(have);
	json_node_unref(found);
}

START_TEST(dump_json_doc)
{
	static const char *const keys[] = { "block_size", "active_slot", "superblocks",
		"version", "uuid", "transaction_id", "needs_check", "dest_tagged", "region_size",
		"region_count", "hydrated", "hydrated_runs", "runs_truncated", "bitmap",
		"space_map", "journal" };
	struct md *md = open_ok(4096, 5000);
	JsonNode *d;
	GList *members, *m;
	unsigned i = 0;

	ck_assert_int_eq(md_set_range_hydrated(md, 10, 2), 0);
	ck_assert_int_eq(md_set_region_hydrated(md, 4999), 0);
	md_close(md);
	d = dump_json();
	/* the members in their order */
	members = json_object_get_members(json_node_get_object(d));
	for (m = members; m; m = m->next, i++)
		ck_assert_str_eq(m->data, i < G_N_ELEMENTS(keys) ? keys[i] : "(none)");
	ck_assert_uint_eq(i, G_N_ELEMENTS(keys));
	g_list_free(members);
	ck_dump(d, "$.block_size", "4096");
	ck_dump(d, "$.region_count", "5000");
	ck_dump(d, "$.hydrated", "3");
	ck_dump(d, "$.hydrated_runs", "[[10,2],[4999,1]]");
	ck_dump(d, "$.runs_truncated", "false");
	ck_dump(d, "$.active_slot", "1");
	ck_dump(d, "$.superblocks[1]", "{\"slot\":1,\"state\":\"valid\",\"version\":3,"
		"\"transaction_id\":3,\"needs_check\":false,\"dest_tagged\":false}");
	json_node_unref(d);

	md = open_ok(4096, 5000);
	for (uint64_t r = 0; r < 5000; r += 2)
		ck_assert_int_eq(md_set_region_hydrated(md, r), 0);
	md_close(md);
	d = dump_json();
	ck_dump(d, "$.runs_truncated", "true");
	ck_assert_uint_eq(json_array_get_length(json_object_get_array_member(
		json_node_get_object(d), "hydrated_runs")), 1000);
	json_node_unref(d);
}
END_TEST

/* ---- threads ---- */

static gint finished;

struct marker {
	struct md *md;
	uint64_t seed;
	uint64_t regions[5000];
};

static gpointer mark_thread(gpointer p)
{
	struct marker *m = p;
	GRand *rnd = g_rand_new_with_seed((guint32)m->seed);

	for (unsigned i = 0; i < G_N_ELEMENTS(m->regions); i++) {
		m->regions[i] = (uint64_t)g_rand_int_range(rnd, 0, 1000000);
		ck_assert_int_eq(md_set_region_hydrated(m->md, m->regions[i]), 0);
		ck_assert(md_region_hydrated(m->md, m->regions[i]));
	}
	g_rand_free(rnd);
	g_atomic_int_inc(&finished);
	return NULL;
}

START_TEST(concurrent_marks_and_commits)
{
	struct md *md = open_ok(4096, 1000000);
	struct marker *m = g_new0(struct marker, 4);
	GThread *t[4];

	for (int i = 0; i < 4; i++) {
		m[i].md = md;
		m[i].seed = (uint64_t)i + 1;
		t[i] = g_thread_new("mark", mark_thread, &m[i]);
	}
	while (g_atomic_int_get(&finished) < 4)
		commit_ok(md);
	for (int i = 0; i < 4; i++)
		g_thread_join(t[i]);
	ck_assert_int_eq(md_close(md), 0);
	check_clean();
	md = open_ok(4096, 1000000);
	for (int i = 0; i < 4; i++)
		for (unsigned k = 0; k < G_N_ELEMENTS(m[i].regions); k++)
			ck_assert(md_region_hydrated(md, m[i].regions[k]));
	md_close(md);
	g_free(m);
}
END_TEST

/* ---- issue 22: durability contract ---- */

static char *new_path(void)
{
	return g_strconcat(meta, ".new", NULL);
}

/* META is missing or unformatted, and no "<meta>.new" is left behind. */
static void assert_untouched(bool existed)
{
	char *tmp = new_path();
	struct stat st;

	ck_assert_int_ne(access(tmp, F_OK), 0);
	if (existed) {
		ck_assert_int_eq(stat(meta, &st), 0);
		ck_assert_uint_eq((uint64_t)st.st_size, 0);
	} else {
		ck_assert_int_ne(access(meta, F_OK), 0);
	}
	g_free(tmp);
}

/*
 * Item 9: an interrupted format never bricks META. Fail the n-th write of
 * the format (every n), and its flush: META stays missing or empty, and the
 * next open formats it cleanly.
 */
START_TEST(format_interrupted_never_bricks)
{
	const char *faults[] = { "meta:write:eio:after=%u", "meta:flush:eio:after=%u" };
	char spec[64], ferr[128];

	for (unsigned f = 0; f < 2; f++) {
		for (int existed = 0; existed < 2; existed++) {
			for (unsigned n = 0;; n++) {
				struct md *md;
				int r;

				empty_tmpdir();
				if (existed)
					close(open(meta, O_CREAT | O_RDWR, 0600));
				snprintf(spec, sizeof(spec), faults[f], n);
				ck_assert_int_eq(bio_fault_set(spec, ferr, sizeof(ferr)), 0);
				err[0] = 0;
				r = md_open(meta, &(struct md_geometry){ 4096, 100000 }, false, &md,
					    err, sizeof(err));
				bio_fault_clear();
				if (r == 0) {	/* past the format's last write or flush */
					ck_assert_uint_ge(n, 2);	/* space map + superblock; two flushes */
					md_close(md);
					check_clean();
					break;
				}
				ck_assert_msg(r == -EIO, "%s: %d %s", spec, r, err);
				ck_assert_ptr_nonnull(strstr(err, "cannot format"));
				assert_untouched(existed);
				md = open_ok(4096, 100000);
				ck_assert_uint_eq(md_transaction_id(md), 1);
				md_close(md);
				check_clean();
			}
		}
	}
}
END_TEST

static int open_fd_args(const char *path, int flags, uint64_t image, uint32_t rs,
			bool explicit, struct md **md)
{
	int fd = open(path, flags | O_CLOEXEC);
	struct md_open_args a = {
		.path = path, .fd = fd, .image_size = image, .region_size = rs,
		.region_size_explicit = explicit, .readonly = (flags & O_ACCMODE) == O_RDONLY,
	};

	err[0] = 0;
	return md_open_fd(&a, md, err, sizeof(err));
}

START_TEST(open_fd_api)
{
	struct md_geometry geo;
	struct md *md, *md2;
	GBytes *before, *after;
	char *tmp = new_path();

	/* missing: created through "<meta>.new", 0600; the image size sets the count */
	ck_assert_int_eq(open_fd_args(meta, O_RDWR, 1000 * 4096 + 1, 4096, false, &md), 0);
	md_geometry(md, &geo);
	ck_assert_uint_eq(geo.region_size, 4096);
	ck_assert_uint_eq(geo.region_count, 1001);
	ck_assert_int_ne(access(tmp, F_OK), 0);

	/* held: a second daemon waits, then gives up */
	md_test_lock_wait(300);
	ck_assert_int_eq(open_fd_args(meta, O_RDWR, 1001 * 4096, 4096, false, &md2), -EBUSY);
	ck_assert_str_eq(err, "in use by another clonefs daemon");
	md_test_lock_wait(0);
	ck_assert_int_eq(md_close(md), 0);

	/* spec 1.3: a plain remount takes META's region size */
	ck_assert_int_eq(open_fd_args(meta, O_RDWR, 1001 * 4096, 65536, false, &md), 0);
	md_geometry(md, &geo);
	ck_assert_uint_eq(geo.region_size, 4096);
	ck_assert_uint_eq(geo.region_count, 1001);
	md_close(md);
	/* an explicit other one is refused */
	ck_assert_int_eq(open_fd_args(meta, O_RDWR, 1001 * 4096, 65536, true, &md), -EINVAL);
	ck_assert_str_eq(err, "region size 65536 does not match metadata (4096);"
			 " leave out region_size= to use metadata's");
	ck_assert_int_eq(open_fd_args(meta, O_RDWR, 5000 * 4096, 4096, false, &md), -EINVAL);
	ck_assert_str_eq(err, "region count 5000 does not match metadata (1001)");
	ck_assert_int_eq(open_fd_args(meta, O_RDONLY, 1001 * 4096, 4096, true, &md), 0);
	ck_assert_int_eq(md_set_region_hydrated(md, 1), -EROFS);
	md_close(md);

	/* fd -1, but a file appeared meanwhile: never clobbered */
	before = slurp(meta);
	{
		struct md_open_args a = { .path = meta, .fd = -1, .image_size = 8192,
					  .region_size = 4096 };

		ck_assert_int_eq(md_open_fd(&a, &md, err, sizeof(err)), -EEXIST);
		ck_assert_ptr_nonnull(strstr(err, "was created by someone else"));
		/* read-only and missing: the real cause */
		a.readonly = true;
		g_unlink(meta);
		ck_assert_int_eq(md_open_fd(&a, &md, err, sizeof(err)), -ENOENT);
	}
	g_unlink(meta);
	ck_assert(g_file_set_contents(meta, g_bytes_get_data(before, NULL),
				      (gssize)g_bytes_get_size(before), NULL));
	after = slurp(meta);
	ck_assert(g_bytes_equal(before, after));
	ck_assert_int_ne(access(tmp, F_OK), 0);
	g_bytes_unref(before);
	g_bytes_unref(after);

	/* nofollow: a symlink planted at "<meta>.new" is not followed */
	g_unlink(meta);
	ck_assert_int_eq(symlink("victim", tmp), 0);
	{
		struct md_open_args a = { .path = meta, .fd = -1, .image_size = 8192,
					  .region_size = 4096, .nofollow = true };
		char *victim = g_build_filename(tmpdir, "victim", NULL);

		ck_assert_int_eq(md_open_fd(&a, &md, err, sizeof(err)), -ELOOP);
		ck_assert_int_ne(access(victim, F_OK), 0);
		ck_assert_int_ne(access(meta, F_OK), 0);
		g_free(victim);
	}
	g_free(tmp);
}
END_TEST

/* Block @nr of @path, and its header's transaction id. */
static uint64_t block_txid(uint64_t nr)
{
	uint8_t b[BS];

	rw_block(meta, nr, b, false);
	return hdr_txid(b);
}

/*
 * Spec 4.3b: put back an older, valid copy of a bitmap node at the place a
 * later commit reused for the same node (a lost write). Open and check must
 * name the block; before format version 2 the stale copy was accepted.
 */
static void lost_write(uint64_t count)
{
	uint8_t (*copies)[BS] = g_malloc(1024 * (size_t)BS);
	uint64_t *where = g_new0(uint64_t, 1024), leaf = 0, txid = 0;
	struct md *md = open_ok(4096, count);
	char want[64];
	int i, j = -1;

	for (i = 0; i < 1024 && j < 0; i++) {
		uint64_t root;

		ck_assert_int_eq(md_set_region_hydrated(md, (uint64_t)i), 0);
		commit_ok(md);
		root = root_of(meta, false);
		leaf = count > LEAF_BITS ? index_entry(root, 0) : root;
		where[i] = leaf;
		rw_block(meta, leaf, copies[i], false);
		for (int k = 0; k < i; k++)
			if (where[k] == leaf)
				j = k;
	}
	ck_assert_msg(j >= 0, "no block was reused for leaf 0 in %d commits", i);
	md_close(md);
	check_clean();
	txid = block_txid(leaf);
	rw_block(meta, leaf, copies[j], true);	/* the newer write was lost */
	ck_assert_uint_lt(block_txid(leaf), txid);
	snprintf(want, sizeof(want), "block %" PRIu64 " ", leaf);
	ck_assert_int_eq(open_err(4096, count, false), -EILSEQ);
	ck_assert_msg(strstr(err, want) && strstr(err, "lost or misdirected write"), "%s", err);
	ck_assert_int_eq(md_check(meta, err, sizeof(err)), -EILSEQ);
	ck_assert_msg(strstr(err, want) && strstr(err, "lost or misdirected write"), "%s", err);
	ck_assert_int_ne(md_dump(meta, stdout, err, sizeof(err)), 0);
	g_free(copies);
	g_free(where);
}

START_TEST(lost_write_detected)
{
	lost_write(5000);	/* the leaf is the root: the superblock catches it */
	empty_tmpdir();
	lost_write(100000);	/* under an index block */
}
END_TEST

/* Rewrites the active superblock and the bitmap index as format version 1 wrote them. */
static void make_v1(void)
{
	uint8_t sb[BS], ix[BS];
	int slot = active_slot(meta, sb);
	uint64_t root = le64_to_cpu(as_sb(sb)->bm_root);
	struct md_node_disk *d = (struct md_node_disk *)ix;

	rw_block(meta, root, ix, false);
	for (unsigned i = 0; i < MD_FANOUT; i++)
		d->words[i] = cpu_to_le64(word_at(ix, i) & 0xffffffffu);
	reseal(ix);
	rw_block(meta, root, ix, true);
	as_sb(sb)->version = cpu_to_le32(1);
	/* version 2 only: root transactions, hydrated count */
	as_sb(sb)->bm_root_txid = as_sb(sb)->sm_root_txid = as_sb(sb)->hydrated = 0;
	reseal(sb);
	rw_block(meta, (uint64_t)slot, sb, true);
	memset(sb, 0, BS);
	rw_block(meta, (uint64_t)!slot, sb, true);	/* the other slot: empty */
}

START_TEST(v1_upgrade_round_trip)
{
	char *base = make_base_trees();	/* version 1 had no journal */
	uint64_t root, e;
	uint8_t ix[BS];
	struct md *md;
	JsonNode *d;

	make_v1();
	check_clean();
	d = dump_json();
	ck_dump(d, "$.version", "1");
	json_node_unref(d);

	/* read as before; the first commit rewrites the trees in version 3
	 * and gives META a journal */
	md_test_journal_blocks(MD_JOURNAL_BLOCKS);
	md = open_ok(4096, 100000);
	ck_assert_uint_eq(md_nr_hydrated(md), 3);
	ck_assert(md_region_hydrated(md, 3) && md_region_hydrated(md, 4) &&
		  md_region_hydrated(md, 70000));
	ck_assert_int_eq(md_set_region_hydrated(md, 99999), 0);
	commit_ok(md);
	md_close(md);
	check_clean();
	d = dump_json();
	ck_dump(d, "$.version", "3");
	ck_dump(d, "$.journal.blocks", "256");
	json_node_unref(d);
	/* every real entry of the new index carries its child's transaction */
	root = root_of(meta, false);
	rw_block(meta, root, ix, false);
	for (unsigned i = 0; i < 4; i++) {
		e = word_at(ix, i);
		if ((e & 0xffffffffu) > 1)
			ck_assert_uint_eq(e >> 32, block_txid(e & 0xffffffffu));
	}
	md = open_ok(4096, 100000);
	ck_assert_uint_eq(md_nr_hydrated(md), 4);
	ck_assert(md_region_hydrated(md, 99999) && md_region_hydrated(md, 70000));
	md_close(md);
	g_free(base);
}
END_TEST

/*
 * Index entries keep 32 bits of a child's transaction id: a META whose
 * superblock is 2^35 transactions ahead of its untouched nodes is clean,
 * and must stay clean through commits that rewrite only some of them (the
 * fuzzer found a commit that left a leaf unreachable by its new parent).
 */
START_TEST(txid_far_ahead_of_nodes)
{
	char *base = make_base();
	uint8_t sb[BS];
	int slot = active_slot(meta, sb);
	struct md *md;

	as_sb(sb)->h.txid = cpu_to_le64(hdr_txid(sb) + (9ULL << 32));
	reseal(sb);
	rw_block(meta, (uint64_t)slot, sb, true);
	check_clean();
	for (int round = 0; round < 2; round++) {
		md = open_ok(4096, 100000);
		ck_assert_int_eq(md_set_region_hydrated(md, 99999 - (uint64_t)round), 0);
		commit_ok(md);
		ck_assert_int_eq(md_set_region_hydrated(md, 5), 0);
		commit_ok(md);
		md_close(md);
		check_clean();
	}
	md = open_ok(4096, 100000);
	ck_assert_uint_eq(md_nr_hydrated(md), 6);
	ck_assert(md_region_hydrated(md, 70000) && md_region_hydrated(md, 99998));
	md_close(md);
	g_free(base);
}
END_TEST

START_TEST(dest_tag)
{
	uint8_t u1[16], u2[16], zero[16] = { 0 };
	struct md *md = open_ok(4096, 5000);
	JsonNode *d;

	md_uuid(md, u1);
	ck_assert(memcmp(u1, zero, 16));
	ck_assert(!md_dest_tagged(md));
	ck_assert_int_eq(md_set_dest_tagged(md), 0);
	ck_assert(md_dest_tagged(md));
	ck_assert(md_changed(md));
	commit_ok(md);	/* a record with the flag, then only the superblock changes */
	ck_assert_uint_eq(md_transaction_id(md), 3);
	ck_assert(!md_changed(md));
	md_close(md);
	check_clean();

	md = open_ok(4096, 5000);
	md_uuid(md, u2);
	ck_assert(!memcmp(u1, u2, 16));
	ck_assert(md_dest_tagged(md));
	ck_assert_int_eq(md_set_dest_tagged(md), 0);
	ck_assert(!md_changed(md));
	md_close(md);
	d = dump_json();
	ck_dump(d, "$.dest_tagged", "true");
	json_node_unref(d);

	/* a failed commit drops the tag with the rest */
	g_unlink(meta);
	md = open_ok(4096, 5000);
	ck_assert_int_eq(md_set_dest_tagged(md), 0);
	ck_assert_int_eq(md_pre_commit(md), 0);
	ck_assert_int_eq(bio_fault_set("meta:write:eio:once", NULL, 0), 0);
	ck_assert_int_eq(md_commit(md), -EIO);
	bio_fault_clear();
	ck_assert(!md_dest_tagged(md));
	ck_assert_int_eq(md_set_dest_tagged(md), -EIO);
	md_close(md);
	ck_assert_int_eq(md_open_existing(meta, true, &md, err, sizeof(err)), 0);
	ck_assert(!md_dest_tagged(md));
	ck_assert_int_eq(md_set_dest_tagged(md), -EROFS);
	md_close(md);
}
END_TEST

/* Item 5: the newest transaction's tree is damaged: repair falls back and says so. */
START_TEST(repair_falls_back_and_says_so)
{
	char *base = make_base_trees();
	uint64_t leaf0 = index_entry(root_of(meta, false), 0);
	struct md *md;
	char want[256];

	flip_byte(meta, leaf0, 200);	/* leaf 0 was rewritten by transaction 3 */
	snprintf(want, sizeof(want), "bad checksum at block %" PRIu64, leaf0);
	ck_assert_int_eq(md_check(meta, err, sizeof(err)), -EILSEQ);
	ck_assert_str_eq(err, want);
	ck_assert_int_eq(open_err(4096, 100000, false), -EILSEQ);

	ck_assert_int_eq(md_check_repair(meta, err, sizeof(err)), MD_CHECK_FELL_BACK);
	snprintf(want, sizeof(want), "transaction 3 (superblock slot 0) is damaged: bad checksum"
		 " at block %" PRIu64 "; fell back to transaction 2: 1 regions hydrated in"
		 " transaction 3 read SOURCE again", leaf0);
	ck_assert_str_eq(err, want);
	check_clean();
	ck_assert_int_eq(md_check_repair(meta, err, sizeof(err)), 0);
	ck_assert_str_eq(err, "");
	md = open_ok(4096, 100000);
	ck_assert_uint_eq(md_transaction_id(md), 4);
	ck_assert(md_region_hydrated(md, 3) && md_region_hydrated(md, 70000));
	ck_assert(!md_region_hydrated(md, 4));
	md_close(md);

	/* both transactions damaged: nothing to fall back to, nothing written */
	copy_file(base, meta);
	flip_byte(meta, leaf0, 200);
	{
		uint8_t sb[BS];
		int slot = active_slot(meta, sb);

		rw_block(meta, (uint64_t)!slot, sb, false);
		flip_byte(meta, index_entry(le64_to_cpu(as_sb(sb)->bm_root), 0), 200);
	}
	ck_assert_int_lt(md_check_repair(meta, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(strstr(err, "is damaged too"));
	g_free(base);
}
END_TEST

/* ---- the journal (issue 23) ---- */

/* A flush's commit only: one journal record. */
static void flush_ok(struct md *md)
{
	ck_assert_int_eq(md_pre_commit(md), 0);
	ck_assert_int_eq(md_commit(md), 0);
}

/* META as a crash now would leave it (md writes with pwrite, no cache). */
static char *snapshot(void)
{
	char *snap = g_strconcat(meta, ".crash", NULL);

	copy_file(meta, snap);
	return snap;
}

/* Closes @md (a checkpoint) but leaves META as a crash before would have. */
static void crash_close(struct md *md)
{
	char *snap = snapshot();

	md_close(md);
	copy_file(snap, meta);
	g_unlink(snap);
	g_free(snap);
}

/* Block of the record @k after the active superblock's journal head. */
static uint64_t record_block(unsigned k)
{
	uint8_t sb[BS];

	active_slot(meta, sb);
	return le64_to_cpu(as_sb(sb)->journal_start) + (le32_to_cpu(as_sb(sb)->journal_head) + k) %
	       le32_to_cpu(as_sb(sb)->journal_blocks);
}

START_TEST(journal_flush_writes_one_record)
{
	struct md *md = open_ok(4096, 100000);
	uint64_t before = md_blocks_written(md);
	JsonNode *d;

	ck_assert_int_eq(md_set_region_hydrated(md, 7), 0);
	flush_ok(md);
	ck_assert_uint_eq(md_blocks_written(md) - before, 1);	/* the record, no tree */
	ck_assert_int_eq(md_set_range_hydrated(md, 40000, 10), 0);
	ck_assert_int_eq(md_set_region_hydrated(md, 40010), 0);	/* merges with the range */
	ck_assert_int_eq(md_set_region_hydrated(md, 99999), 0);
	ck_assert_int_eq(md_set_dest_tagged(md), 0);
	flush_ok(md);
	ck_assert_uint_eq(md_blocks_written(md) - before, 2);
	ck_assert(!md_changed(md));
	crash_close(md);
	check_clean();
	d = dump_json();
	ck_dump(d, "$.journal.records[0].ranges", "[[7,1]]");
	ck_dump(d, "$.journal.records[1].flags", "2");
	ck_dump(d, "$.journal.records[1].hydrated", "13");
	ck_dump(d, "$.journal.records[1].ranges", "[[40000,11],[99999,1]]");
	json_node_unref(d);
	md = open_ok(4096, 100000);
	ck_assert_uint_eq(md_nr_hydrated(md), 13);
	ck_assert(md_region_hydrated(md, 7) && md_range_hydrated(md, 40000, 11) &&
		  md_region_hydrated(md, 99999) && md_dest_tagged(md));
	ck_assert(!md_region_hydrated(md, 40011));
	/* replayed records are durable: nothing to commit, a checkpoint to do */
	ck_assert(!md_changed(md));
	ck_assert_int_eq(md_close(md), 0);
	check_clean();
	d = dump_json();
	ck_dump(d, "$.journal.records", "[]");
	json_node_unref(d);
	md = open_ok(4096, 100000);
	ck_assert_uint_eq(md_nr_hydrated(md), 13);
	md_close(md);
}
END_TEST

/* A torn or never-flushed record ends the journal; records before it count. */
START_TEST(journal_torn_record_ends_replay)
{
	struct md *md = open_ok(4096, 100000);

	ck_assert_int_eq(md_set_region_hydrated(md, 7), 0);
	flush_ok(md);
	ck_assert_int_eq(md_set_region_hydrated(md, 50000), 0);
	flush_ok(md);
	ck_assert_int_eq(md_set_region_hydrated(md, 60000), 0);
	flush_ok(md);
	crash_close(md);
	flip_byte(meta, record_block(1), 300);
	check_clean();
	md = open_ok(4096, 100000);
	ck_assert(md_region_hydrated(md, 7));
	ck_assert(!md_region_hydrated(md, 50000) && !md_region_hydrated(md, 60000));
	ck_assert_uint_eq(md_nr_hydrated(md), 1);
	/* the next record goes where the torn one was */
	ck_assert_int_eq(md_set_region_hydrated(md, 8), 0);
	flush_ok(md);
	crash_close(md);
	check_clean();
	md = open_ok(4096, 100000);
	ck_assert(md_region_hydrated(md, 7) && md_region_hydrated(md, 8));
	ck_assert(!md_region_hydrated(md, 60000));	/* stale: after the end */
	md_close(md);
}
END_TEST

/* A ring of 4: every fifth flush checkpoints; a crash after any keeps all. */
START_TEST(journal_ring_wraps)
{
	struct md *md;

	md_test_journal_blocks(4);
	md = open_ok(4096, 100000);
	for (uint64_t i = 0; i < 23; i++) {
		uint64_t before = md_blocks_written(md);
		char *snap;
		struct md *m2;

		ck_assert_int_eq(md_set_region_hydrated(md, i * 3001 % 100000), 0);
		flush_ok(md);
		ck_assert_uint_eq(md_blocks_written(md) - before == 1, i % 5 != 4);
		snap = snapshot();
		{
			char *keep = g_strconcat(meta, ".live", NULL);

			g_rename(meta, keep);
			copy_file(snap, meta);
			check_clean();
			m2 = open_ok(4096, 100000);
			ck_assert_uint_eq(md_nr_hydrated(m2), i + 1);
			for (uint64_t j = 0; j <= i; j++)
				ck_assert(md_region_hydrated(m2, j * 3001 % 100000));
			md_close(m2);
			g_rename(keep, meta);
			g_free(keep);
		}
		g_unlink(snap);
		g_free(snap);
	}
	md_close(md);
	check_clean();
}
END_TEST

/* More ranges than a record holds: the flush checkpoints instead. */
START_TEST(journal_many_ranges_checkpoint)
{
	struct md *md = open_ok(4096, 100000);
	JsonNode *d;

	for (uint64_t i = 0; i < 400; i++)
		ck_assert_int_eq(md_set_region_hydrated(md, i * 7), 0);
	flush_ok(md);
	crash_close(md);
	check_clean();
	d = dump_json();
	ck_dump(d, "$.journal.records", "[]");
	json_node_unref(d);
	md = open_ok(4096, 100000);
	ck_assert_uint_eq(md_nr_hydrated(md), 400);
	ck_assert(md_region_hydrated(md, 399 * 7));
	md_close(md);
}
END_TEST

/*
 * A failed record write or a failed checkpoint rolls back to the durable
 * state, which keeps the records written before; after check --repair the
 * next flush continues the journal where a reopen will find it.
 */
START_TEST(journal_write_error_keeps_records)
{
	for (int nth = 0; nth < 12; nth++) {
		struct md *md;
		bool in_checkpoint = nth > 0;
		int r;

		g_unlink(meta);
		md = open_ok(4096, 100000);
		ck_assert_int_eq(md_set_region_hydrated(md, 1), 0);
		flush_ok(md);
		ck_assert_int_eq(md_set_region_hydrated(md, 2), 0);
		ck_assert_int_eq(md_pre_commit(md), 0);
		{
			char spec[64];

			snprintf(spec, sizeof(spec), "meta:write:eio:after=%d:once", nth);
			ck_assert_int_eq(bio_fault_set(spec, NULL, 0), 0);
		}
		r = md_commit(md);
		if (!r)
			r = md_checkpoint(md);
		bio_fault_clear();
		if (!r) {
			ck_assert_int_ge(nth, 3);
			md_close(md);
			break;
		}
		ck_assert_int_eq(r, -EIO);
		ck_assert_int_eq(md_mode(md), MD_MODE_RO);
		ck_assert(md_region_hydrated(md, 1));
		ck_assert(md_region_hydrated(md, 2) == in_checkpoint);
		ck_assert_uint_eq(md_nr_hydrated(md), 1 + in_checkpoint);
		md_close(md);
		check_clean();
		ck_assert_int_eq(md_check_repair(meta, err, sizeof(err)), MD_CHECK_REPAIRED);
		md = open_ok(4096, 100000);
		ck_assert(md_region_hydrated(md, 1));
		ck_assert(md_region_hydrated(md, 2) == in_checkpoint);
		/* after a superblock written outside a checkpoint */
		ck_assert_int_eq(md_set_region_hydrated(md, 3), 0);
		flush_ok(md);
		crash_close(md);
		check_clean();
		md = open_ok(4096, 100000);
		ck_assert(md_region_hydrated(md, 1) && md_region_hydrated(md, 3));
		ck_assert(md_region_hydrated(md, 2) == in_checkpoint);
		md_close(md);
	}
}
END_TEST

/* A version 2 META gets its journal at its first commit, if it has room. */
START_TEST(journal_v2_upgrade)
{
	uint8_t sb[BS];
	struct md *md;
	JsonNode *d;
	int slot;

	md_test_journal_blocks(0);
	md = open_ok(4096, 100000);
	ck_assert_int_eq(md_set_region_hydrated(md, 5), 0);
	commit_ok(md);
	md_close(md);
	slot = active_slot(meta, sb);
	as_sb(sb)->version = cpu_to_le32(2);
	reseal(sb);
	rw_block(meta, (uint64_t)slot, sb, true);
	check_clean();
	md_test_journal_blocks(MD_JOURNAL_BLOCKS);
	md = open_ok(4096, 100000);
	ck_assert_int_eq(md_set_region_hydrated(md, 6), 0);
	flush_ok(md);	/* a checkpoint: it brings the journal */
	ck_assert_int_eq(md_set_region_hydrated(md, 7), 0);
	flush_ok(md);	/* a record */
	md_close(md);
	check_clean();
	d = dump_json();
	ck_dump(d, "$.version", "3");
	ck_dump(d, "$.journal.blocks", "256");
	json_node_unref(d);
	md = open_ok(4096, 100000);
	ck_assert_uint_eq(md_nr_hydrated(md), 3);
	md_close(md);
}
END_TEST

/* A repair that falls back counts what the older state holds with its
 * journal replayed: the newest transaction was a checkpoint of records the
 * older superblock's journal still has, so no region reads SOURCE again. */
START_TEST(journal_repair_counts_replayed_regions)
{
	struct md *md = open_ok(4096, 100000);
	char want[384];
	uint8_t sb[BS];
	int slot;

	ck_assert_int_eq(md_set_region_hydrated(md, 3), 0);
	commit_ok(md);				/* transaction 2: region 3 */
	ck_assert_int_eq(md_set_range_hydrated(md, 10, 2), 0);
	flush_ok(md);				/* record 3: regions 10-11 */
	ck_assert_int_eq(md_checkpoint(md), 0);	/* transaction 4 folds it in */
	md_close(md);
	slot = active_slot(meta, sb);
	ck_assert_uint_eq(hdr_txid(sb), 5);
	flip_byte(meta, (uint64_t)slot, 200);	/* the newest superblock torn */

	ck_assert_int_eq(md_check_repair(meta, err, sizeof(err)), MD_CHECK_FELL_BACK);
	snprintf(want, sizeof(want), "fell back to transaction 4: 0 regions hydrated in the"
		 " lost transaction read SOURCE again");
	ck_assert_msg(strstr(err, want), "%s", err);
	check_clean();
	md = open_ok(4096, 100000);
	ck_assert_uint_eq(md_nr_hydrated(md), 3);
	md_close(md);

	/* the newest trees damaged: the same, through the other fall-back */
	g_unlink(meta);
	md = open_ok(4096, 100000);
	ck_assert_int_eq(md_set_region_hydrated(md, 3), 0);
	commit_ok(md);				/* record 2, transaction 3 */
	ck_assert_int_eq(md_set_range_hydrated(md, 10, 2), 0);
	commit_ok(md);				/* record 4, transaction 5 */
	md_close(md);
	flip_byte(meta, index_entry(root_of(meta, false), 0), 200);
	ck_assert_int_eq(md_check_repair(meta, err, sizeof(err)), MD_CHECK_FELL_BACK);
	ck_assert_msg(strstr(err, "fell back to transaction 4: 0 regions hydrated in"
			      " transaction 5 read SOURCE again"), "%s", err);
	check_clean();
	md = open_ok(4096, 100000);
	ck_assert_uint_eq(md_nr_hydrated(md), 3);
	ck_assert(md_range_hydrated(md, 10, 2));
	md_close(md);
}
END_TEST

static Suite *metadata_suite(void)
{
	Suite *s = suite_create("metadata");
	TCase *tc = tcase_create("core");

	tcase_add_unchecked_fixture(tc, setup_dir, teardown_dir);
	tcase_add_checked_fixture(tc, fresh_test, NULL);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, fresh_format_reopen);
	tcase_add_test(tc, format_existing_zero_file);
	tcase_add_test(tc, set_commit_reopen);
	tcase_add_test(tc, two_phase_commit);
	tcase_add_test(tc, huge_geometry_small_commit);
	tcase_add_test(tc, geometry_mismatch_refused);
	tcase_add_test(tc, corrupt_each_block_kind);
	tcase_add_test(tc, misplaced_block_detected);
	tcase_add_test(tc, torn_superblock_falls_back);
	tcase_add_test(tc, out_of_space_goes_ro);
	tcase_add_test(tc, write_error_rolls_back_and_needs_check);
	tcase_add_test(tc, abort_rolls_back);
	tcase_add_test(tc, find_next_edges);
	tcase_add_test(tc, check_finds_leaks);
	tcase_add_test(tc, dump_json_doc);
	tcase_add_test(tc, concurrent_marks_and_commits);
	tcase_add_test(tc, format_interrupted_never_bricks);
	tcase_add_test(tc, open_fd_api);
	tcase_add_test(tc, lost_write_detected);
	tcase_add_test(tc, v1_upgrade_round_trip);
	tcase_add_test(tc, txid_far_ahead_of_nodes);
	tcase_add_test(tc, journal_flush_writes_one_record);
	tcase_add_test(tc, journal_torn_record_ends_replay);
	tcase_add_test(tc, journal_ring_wraps);
	tcase_add_test(tc, journal_many_ranges_checkpoint);
	tcase_add_test(tc, journal_write_error_keeps_records);
	tcase_add_test(tc, journal_v2_upgrade);
	tcase_add_test(tc, journal_repair_counts_replayed_regions);
	tcase_add_test(tc, dest_tag);
	tcase_add_test(tc, repair_falls_back_and_says_so);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(metadata_suite());
}
