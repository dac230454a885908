/*
 * metadata.c - the persistent clone metadata in META (metadata.h); the
 * layout is format.h and docs/format.md. Here: the verbs, open and format.
 * Split out so far: md_block.c (checksummed blocks), md_bittree.c (bit
 * trees), md_tm.c (space map, transactions), md_tools.c (check, repair,
 * dump).
 *
 * META holds two bit trees: the hydration bitmap (1 bit per region, 1 =
 * hydrated) and the space map (1 bit per META block, 1 = in use). Blocks 0
 * and 1 are superblock slots that alternate; a commit writes every changed
 * node to a free block, flushes, then writes the other slot with
 * transaction id + 1 and flushes again.
 *
 * In core the hydration leaves are allocated on first use (NULL = all
 * zeros, bt_ones_leaf = all ones). Each leaf has a dirty flag;
 * md_pre_commit() copies exactly the dirty leaves into a frozen set, which
 * md_commit() writes, so marks made in between belong to the next
 * transaction (spec 4.5, 6.1). A failed commit rolls the transaction back
 * (tm_rollback), re-reads the committed leaves and goes read-only (spec 4.6).
 *
 * Locking: commit_lock (outer) serializes pre_commit/commit/abort and guards
 * node locations, the space map and the frozen set; lock (inner) guards the
 * live bitmap and the dirty set. md_region_hydrated() takes no lock: leaf
 * pointers and words are accessed atomically and leaves are never freed
 * while META is open.
 *
 * Errors: -EINVAL bad geometry or not our file, -ENODATA not formatted,
 * -EILSEQ corrupt metadata, -EUCLEAN needs_check is set, -EBUSY locked by
 * another daemon, -EEXIST created by someone else while we formatted,
 * -ENOSPC META full, -EIO RO/FAIL mode.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* SEEK_DATA, SEEK_HOLE, renameat2 */
#endif
#include "md_impl.h"
#include "clonefs/blockio.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>


static void free_frozen(struct md *md);

/* ---- life cycle ---- */

void md_free(struct md *md)
{
	if (!md)
		return;
	if (md->tm.fd >= 0) {
		bio_forget(md->tm.fd);
		close(md->tm.fd);
	}
	bt_free(&md->bm);
	tm_free(&md->tm);
	free_frozen(md);
	g_free(md->frozen);
	g_free(md->dirty);
	g_free(md->leaf_pop);
	g_free(md->buf);
	g_array_free(md->dirty_list, TRUE);
	g_array_free(md->frozen_list, TRUE);
	g_mutex_clear(&md->lock);
	g_mutex_clear(&md->commit_lock);
	g_free(md);
}

int md_new(const struct md_geometry *geo, uint64_t nr_blocks, struct md **out)
{
	struct md *md = g_new0(struct md, 1);
	int r;

	g_mutex_init(&md->lock);
	g_mutex_init(&md->commit_lock);
	md->tm.fd = -1;
	md->geo = *geo;
	md->dirty_list = g_array_new(FALSE, FALSE, sizeof(uint64_t));
	md->frozen_list = g_array_new(FALSE, FALSE, sizeof(uint64_t));
	md->buf = g_malloc(BS);
	r = bt_init(&md->bm, MD_TREE_BITMAP, geo->region_count);
	if (!r)
		r = tm_init(&md->tm, nr_blocks);
	if (r)
		goto out;
	r = -ENOMEM;
	md->dirty = g_try_new0(uint8_t, md->bm.nleaves);
	md->frozen = g_try_new0(uint64_t *, md->bm.nleaves);
	md->leaf_pop = g_try_new0(uint16_t, md->bm.nleaves);
	md->version = MD_SB_VERSION;
	if (!md->dirty || !md->frozen || !md->leaf_pop)
		goto out;
	r = 0;
out:
	if (r)
		md_free(md);
	else
		*out = md;
	return r;
}

int md_write_super(struct md *md, int slot, uint32_t flags, uint64_t hydrated)
{
	struct md_sb s = {
		.version = md->version, .flags = flags,
		.region_size = md->geo.region_size, .region_count = md->geo.region_count,
		.nr_blocks = md->tm.nr_blocks,
		.bm_root = *bt_root(&md->bm), .bm_levels = md->bm.levels,
		.bm_root_txid = md->bm.txid[md->bm.levels][0],
		.sm_root = *bt_root(&md->tm.sm), .sm_levels = md->tm.sm.levels,
		.sm_root_txid = md->tm.sm.txid[md->tm.sm.levels][0],
		.hydrated = hydrated,
	};

	memcpy(s.uuid, md->uuid, 16);
	mdb_sb_pack(md->buf, &s);
	return tm_write(&md->tm, (uint64_t)slot, md->buf, MD_KIND_SUPER, 0, 0, (uint64_t)slot);
}

/* ---- commit ---- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Points bitmap node (@level, @idx) at @v (a sentinel, or a block to write). */
static int bm_set_node(struct md *md, unsigned level, uint64_t idx, uint64_t v)
{
	uint64_t *loc = &md->bm.loc[level][idx], b = v;
	int r;

	if (v > PTR_ONES) {
		r = tm_alloc(&md->tm, &b);
		if (!r)
			r = tm_write(&md->tm, b, md->buf, level ? MD_KIND_INDEX : MD_KIND_LEAF,
				     MD_TREE_BITMAP, level, idx);
		if (r)
			return r;
	}
	r = tm_release(&md->tm, *loc);
	tm_set_node(&md->tm, &md->bm, level, idx, b);
	return r;
}

/* Writes the frozen leaves, then their ancestors level by level. */
static int write_bitmap(struct md *md, bool upgrade)
{
	GArray *a = g_array_new(FALSE, FALSE, sizeof(uint64_t));
	GArray *b = g_array_new(FALSE, FALSE, sizeof(uint64_t));
	GArray *cur = md->frozen_list, *next = a;
	int r = 0;

	if (cur->len)
		qsort(cur->data, cur->len, sizeof(uint64_t), cmp_u64);
	md->next_hydrated = md->committed_hydrated;
	for (guint k = 0; k < cur->len && !r; k++) {
		uint64_t idx = g_array_index(cur, uint64_t, k), *w = md->frozen[idx], v = 2;

		md->next_hydrated += bt_popcount_leaf(w) - md->leaf_pop[idx];
		if (!memcmp(w, bt_ones_leaf, sizeof(bt_ones_leaf)))
			v = PTR_ONES;
		else if (md_all_zero(w, sizeof(bt_ones_leaf)))
			v = PTR_ZEROS;
		else
			bt_pack_leaf(md->buf, w);
		r = bm_set_node(md, 0, idx, v);
	}
	for (unsigned l = 1; l <= md->bm.levels && !r; l++) {
		bt_parents_of(&md->bm, l, cur, next, upgrade);
		for (guint k = 0; k < next->len && !r; k++) {
			uint64_t p = g_array_index(next, uint64_t, k);

			r = bm_set_node(md, l, p, bt_pack_index(md->buf, &md->bm, l, p));
		}
		cur = next;
		next = next == a ? b : a;
	}
	g_array_free(a, TRUE);
	g_array_free(b, TRUE);
	return r;
}

/* Drops the frozen set (committed, or rolled back). */
static void free_frozen(struct md *md)
{
	for (guint k = 0; k < md->frozen_list->len; k++) {
		uint64_t idx = g_array_index(md->frozen_list, uint64_t, k);

		if (md->frozen[idx] != bt_ones_leaf)
			g_free(md->frozen[idx]);
		md->frozen[idx] = NULL;
	}
	g_array_set_size(md->frozen_list, 0);
	__atomic_store_n(&md->nr_frozen, 0, __ATOMIC_RELAXED);
}

/*
 * Writes the frozen set and the moved space-map nodes, then swaps
 * superblocks. The first commit on version 1 trees rewrites every index
 * node in version 2 (the leaves are the same in both).
 */
int md_commit_locked(struct md *md)
{
	uint32_t old_version = md->version, flags = md->flags | md->frozen_flags;
	int r;

	md->version = MD_SB_VERSION;
	r = write_bitmap(md, old_version < MD_SB_VERSION);
	if (!r && old_version < MD_SB_VERSION)
		r = tm_upgrade_space_map(&md->tm);
	if (!r)
		r = tm_write_space_map(&md->tm);
	if (!r)
		r = bio_flush(md->tm.fd);
	if (!r)
		r = md_write_super(md, 1 - md->slot, flags, md->next_hydrated);
	if (!r)
		r = bio_flush(md->tm.fd);
	if (r) {
		md->version = old_version;
		return r;
	}
	tm_commit_done(&md->tm);
	md->slot = 1 - md->slot;
	md->flags = flags;
	__atomic_store_n(&md->frozen_flags, 0, __ATOMIC_RELAXED);
	for (guint k = 0; k < md->frozen_list->len; k++) {
		uint64_t idx = g_array_index(md->frozen_list, uint64_t, k);

		md->leaf_pop[idx] = (uint16_t)bt_popcount_leaf(md->frozen[idx]);
	}
	md->committed_hydrated = md->next_hydrated;
	free_frozen(md);
	return 0;
}

/* ---- rollback ---- */

/* Reloads leaf @idx from its committed copy (lock held). */
static int restore_leaf(struct md *md, uint64_t idx)
{
	uint64_t *w = md->bm.leaf[idx], ptr = md->bm.loc[0][idx], before, after = 0;
	struct md_want want = { MD_KIND_LEAF, MD_TREE_BITMAP, 0, idx, md->tm.txid,
				md->bm.txid[0][idx] };
	const struct md_node_disk *d = (const void *)md->buf;
	int r;

	if (!w || ptr == PTR_ONES)
		return 0;	/* nothing marked, or all ones already */
	before = bt_popcount_leaf(w);
	if (ptr == PTR_ZEROS) {
		if (w == bt_ones_leaf)
			__atomic_store_n(&md->bm.leaf[idx], NULL, __ATOMIC_RELEASE);
		else
			for (unsigned i = 0; i < LEAF_WORDS; i++)
				__atomic_store_n(&w[i], 0, __ATOMIC_RELEASE);
	} else {
		r = mdb_read(md->tm.fd, md->tm.nr_blocks, md->buf, ptr, &want, md->errbuf,
			     sizeof(md->errbuf));
		if (r)
			return r;
		if (w == bt_ones_leaf)
			w = g_new(uint64_t, LEAF_WORDS);
		for (unsigned i = 0; i < LEAF_WORDS; i++)
			__atomic_store_n(&w[i], le64_to_cpu(d->words[i]), __ATOMIC_RELEASE);
		__atomic_store_n(&md->bm.leaf[idx], w, __ATOMIC_RELEASE);
		after = bt_popcount_leaf(w);
	}
	__atomic_add_fetch(&md->nr_hydrated, after - before, __ATOMIC_RELAXED);
	return 0;
}

/*
 * Drops every uncommitted mark: frozen and dirty leaves get their committed
 * bits back. @mode is set first, under the lock, so no mark slips in after.
 */
static int restore_bitmap(struct md *md, enum md_mode mode)
{
	int r = 0;

	g_mutex_lock(&md->lock);
	__atomic_store_n(&md->mode, mode, __ATOMIC_RELEASE);
	for (guint k = 0; k < md->frozen_list->len; k++)
		r = restore_leaf(md, g_array_index(md->frozen_list, uint64_t, k)) ?: r;
	for (guint k = 0; k < md->dirty_list->len; k++) {
		uint64_t idx = g_array_index(md->dirty_list, uint64_t, k);

		r = restore_leaf(md, idx) ?: r;
		md->dirty[idx] = 0;
	}
	g_array_set_size(md->dirty_list, 0);
	free_frozen(md);
	md->new_flags = 0;
	__atomic_store_n(&md->frozen_flags, 0, __ATOMIC_RELAXED);
	if (r)
		__atomic_store_n(&md->mode, MD_MODE_FAIL, __ATOMIC_RELEASE);
	g_mutex_unlock(&md->lock);
	return r;
}

/* A commit failed with @err: roll back, go RO, try to record needs_check (spec 4.6). */
static int commit_failed(struct md *md, int err)
{
	tm_rollback(&md->tm);
	if (err == -ENOSPC)
		snprintf(md->errbuf, sizeof(md->errbuf), "out of metadata space (%" PRIu64
			 " blocks, %" PRIu64 " in use)", md->tm.nr_blocks, md->tm.committed_used);
	else
		snprintf(md->errbuf, sizeof(md->errbuf), "metadata commit failed: %s",
			 strerror(-err));
	if (restore_bitmap(md, MD_MODE_RO))
		return err;
	if (err == -ENOSPC)
		return err;	/* nothing was damaged: no need to check */
	if (md_write_super(md, 1 - md->slot, md->flags | MD_SB_NEEDS_CHECK,
			   md->committed_hydrated) || bio_flush(md->tm.fd)) {
		__atomic_store_n(&md->mode, MD_MODE_FAIL, __ATOMIC_RELEASE);
		return err;
	}
	md->flags |= MD_SB_NEEDS_CHECK;
	tm_commit_done(&md->tm);
	md->slot = 1 - md->slot;
	return err;
}

int md_close(struct md *md)
{
	int r = 0;

	if (!md)
		return 0;
	if (!md->readonly && md_mode(md) == MD_MODE_RW && md_changed(md)) {
		r = md_pre_commit(md);
		if (!r)
			r = md_commit(md);
	}
	md_free(md);
	return r;
}

/* ---- the live bitmap ---- */

void md_geometry(struct md *md, struct md_geometry *geo)
{
	*geo = md->geo;
}

static uint64_t *leaf_get(struct md *md, uint64_t idx)
{
	return __atomic_load_n(&md->bm.leaf[idx], __ATOMIC_ACQUIRE);
}

bool md_region_hydrated(struct md *md, uint64_t region)
{
	uint64_t *w;

	if (region >= md->geo.region_count)
		return false;
	w = leaf_get(md, region / LEAF_BITS);
	return w && (__atomic_load_n(&w[region % LEAF_BITS / 64], __ATOMIC_ACQUIRE) >>
		     (region % 64) & 1);
}

static uint64_t find_next(struct md *md, uint64_t from, bool want)
{
	uint64_t n = md->geo.region_count, r = from;

	while (r < n) {
		uint64_t base = r - r % LEAF_BITS, *w = leaf_get(md, r / LEAF_BITS);

		if (!w || w == bt_ones_leaf) {
			if ((w != NULL) == want)
				return r;
		} else {
			for (unsigned k = (unsigned)((r - base) / 64); k < LEAF_WORDS; k++) {
				uint64_t x = __atomic_load_n(&w[k], __ATOMIC_ACQUIRE);

				if (!want)
					x = ~x;
				if (base + (uint64_t)k * 64 <= r)
					x &= ~0ULL << (r % 64);
				if (x)
					return MIN(base + (uint64_t)k * 64 +
						   (uint64_t)__builtin_ctzll(x), n);
			}
		}
		r = base + LEAF_BITS;
	}
	return n;
}

uint64_t md_find_next_unhydrated(struct md *md, uint64_t from)
{
	return find_next(md, from, false);
}

uint64_t md_find_next_hydrated(struct md *md, uint64_t from)
{
	return find_next(md, from, true);
}

bool md_range_hydrated(struct md *md, uint64_t start, uint64_t n)
{
	if (n == 0)
		return true;
	if (start >= md->geo.region_count || n > md->geo.region_count - start)
		return false;
	return find_next(md, start, false) >= start + n;
}

uint64_t md_nr_hydrated(struct md *md)
{
	return __atomic_load_n(&md->nr_hydrated, __ATOMIC_RELAXED);
}

bool md_all_hydrated(struct md *md)
{
	return md_nr_hydrated(md) == md->geo.region_count;
}

/* Sets @n bits from @start within one leaf (lock held). */
static void set_in_leaf(struct md *md, uint64_t idx, uint64_t off, uint64_t n)
{
	uint64_t *w = md->bm.leaf[idx], added = 0;

	if (w == bt_ones_leaf)
		return;
	if (!w && n == LEAF_BITS) {
		/* a whole leaf (say a big discard): share bt_ones_leaf, no memory */
		__atomic_store_n(&md->bm.leaf[idx], bt_ones_leaf, __ATOMIC_RELEASE);
		added = n;
		n = 0;
	} else if (!w) {
		w = g_new0(uint64_t, LEAF_WORDS);
		__atomic_store_n(&md->bm.leaf[idx], w, __ATOMIC_RELEASE);
	}
	while (n) {
		unsigned bit = (unsigned)(off % 64);
		uint64_t take = MIN(n, (uint64_t)(64 - bit));
		uint64_t mask = (take == 64 ? ~0ULL : (1ULL << take) - 1) << bit;
		uint64_t old = w[off / 64];

		if (~old & mask) {
			added += (uint64_t)__builtin_popcountll(~old & mask);
			__atomic_store_n(&w[off / 64], old | mask, __ATOMIC_RELEASE);
		}
		off += take;
		n -= take;
	}
	if (!added)
		return;
	__atomic_add_fetch(&md->nr_hydrated, added, __ATOMIC_RELAXED);
	if (!md->dirty[idx]) {
		md->dirty[idx] = 1;
		g_array_append_val(md->dirty_list, idx);
	}
}

int md_set_range_hydrated(struct md *md, uint64_t start, uint64_t n)
{
	if (md->readonly)
		return -EROFS;
	if (md_mode(md) != MD_MODE_RW)
		return -EIO;
	if (start > md->geo.region_count || n > md->geo.region_count - start)
		return -EINVAL;
	if (md_range_hydrated(md, start, n))
		return 0;	/* the common case: no lock */
	g_mutex_lock(&md->lock);
	if (md_mode(md) != MD_MODE_RW)
		n = 0;	/* a commit failed meanwhile */
	while (n) {
		uint64_t off = start % LEAF_BITS, take = MIN(n, LEAF_BITS - off);

		set_in_leaf(md, start / LEAF_BITS, off, take);
		start += take;
		n -= take;
	}
	g_mutex_unlock(&md->lock);
	return md_mode(md) == MD_MODE_RW ? 0 : -EIO;
}

int md_set_region_hydrated(struct md *md, uint64_t region)
{
	return md_set_range_hydrated(md, region, 1);
}

bool md_changed(struct md *md)
{
	bool changed;

	g_mutex_lock(&md->lock);
	changed = md->dirty_list->len || md->new_flags ||
		  __atomic_load_n(&md->nr_frozen, __ATOMIC_RELAXED) ||
		  __atomic_load_n(&md->frozen_flags, __ATOMIC_RELAXED);
	g_mutex_unlock(&md->lock);
	return changed;
}

/* ---- transactions ---- */

int md_pre_commit(struct md *md)
{
	int r = 0;

	g_mutex_lock(&md->commit_lock);
	if (md->readonly || md_mode(md) != MD_MODE_RW) {
		r = md->readonly ? -EROFS : -EIO;
		goto out;
	}
	g_mutex_lock(&md->lock);
	for (guint k = 0; k < md->dirty_list->len; k++) {
		uint64_t idx = g_array_index(md->dirty_list, uint64_t, k);
		uint64_t *live = md->bm.leaf[idx], *f = md->frozen[idx];

		if (!f)
			g_array_append_val(md->frozen_list, idx);
		if (live == bt_ones_leaf) {
			if (f != bt_ones_leaf)
				g_free(f);
			f = bt_ones_leaf;
		} else {
			if (!f || f == bt_ones_leaf)
				f = g_new(uint64_t, LEAF_WORDS);
			memcpy(f, live, LEAF_WORDS * 8);
		}
		md->frozen[idx] = f;
		md->dirty[idx] = 0;
	}
	g_array_set_size(md->dirty_list, 0);
	__atomic_store_n(&md->nr_frozen, md->frozen_list->len, __ATOMIC_RELAXED);
	__atomic_store_n(&md->frozen_flags, md->frozen_flags | md->new_flags, __ATOMIC_RELAXED);
	md->new_flags = 0;
	g_mutex_unlock(&md->lock);
out:
	g_mutex_unlock(&md->commit_lock);
	return r;
}

int md_commit(struct md *md)
{
	int r = 0;

	g_mutex_lock(&md->commit_lock);
	if (md->readonly || md_mode(md) != MD_MODE_RW)
		r = md->readonly ? -EROFS : -EIO;
	else if ((md->frozen_list->len || md->frozen_flags) && (r = md_commit_locked(md)))
		r = commit_failed(md, r);
	g_mutex_unlock(&md->commit_lock);
	return r;
}

int md_fail_transaction(struct md *md, int err)
{
	g_mutex_lock(&md->commit_lock);
	if (!md->readonly && md_mode(md) == MD_MODE_RW)
		err = commit_failed(md, err);
	g_mutex_unlock(&md->commit_lock);
	return err;
}

int md_abort(struct md *md)
{
	int r = 0;

	g_mutex_lock(&md->commit_lock);
	if (md_mode(md) == MD_MODE_FAIL)
		r = -EIO;
	else
		r = restore_bitmap(md, MD_MODE_RW);
	g_mutex_unlock(&md->commit_lock);
	return r;
}

enum md_mode md_mode(struct md *md)
{
	return (enum md_mode)__atomic_load_n(&md->mode, __ATOMIC_ACQUIRE);
}

bool md_needs_check(struct md *md)
{
	bool set;

	g_mutex_lock(&md->commit_lock);
	set = md->flags & MD_SB_NEEDS_CHECK;
	g_mutex_unlock(&md->commit_lock);
	return set;
}

void md_space(struct md *md, uint64_t *used_blocks, uint64_t *total_blocks)
{
	g_mutex_lock(&md->commit_lock);
	*used_blocks = md->tm.committed_used;
	*total_blocks = md->tm.nr_blocks;
	g_mutex_unlock(&md->commit_lock);
}

void md_uuid(struct md *md, uint8_t uuid[16])
{
	memcpy(uuid, md->uuid, 16);
}

bool md_dest_tagged(struct md *md)
{
	bool set;

	g_mutex_lock(&md->commit_lock);
	g_mutex_lock(&md->lock);
	set = (md->flags | md->frozen_flags | md->new_flags) & MD_SB_DEST_TAGGED;
	g_mutex_unlock(&md->lock);
	g_mutex_unlock(&md->commit_lock);
	return set;
}

int md_set_dest_tagged(struct md *md)
{
	if (md->readonly)
		return -EROFS;
	if (md_mode(md) != MD_MODE_RW)
		return -EIO;
	if (md_dest_tagged(md))
		return 0;
	g_mutex_lock(&md->lock);
	if (md_mode(md) == MD_MODE_RW)
		md->new_flags |= MD_SB_DEST_TAGGED;
	g_mutex_unlock(&md->lock);
	return md_mode(md) == MD_MODE_RW ? 0 : -EIO;
}

uint64_t md_transaction_id(struct md *md)
{
	return __atomic_load_n(&md->tm.txid, __ATOMIC_ACQUIRE);
}

void md_last_error(struct md *md, char *buf, size_t len)
{
	g_mutex_lock(&md->commit_lock);
	snprintf(buf, len, "%s", md->errbuf);
	g_mutex_unlock(&md->commit_lock);
}

uint64_t md_blocks_written(struct md *md)
{
	return __atomic_load_n(&md->tm.blocks_written, __ATOMIC_RELAXED);
}

void md_test_limit_blocks(struct md *md, uint64_t nr_blocks)
{
	g_mutex_lock(&md->commit_lock);
	md->tm.limit = nr_blocks;
	g_mutex_unlock(&md->commit_lock);
}

#define LOCK_WAIT_MS	30000	/* md_open_fd waits this long for the flock */

static int check_geometry(const struct md_geometry *geo, char *err, size_t len)
{
	uint32_t rs = geo->region_size;

	if (rs < 4096 || rs > (1u << 30) || (rs & (rs - 1)))
		return md_errf(err, len, -EINVAL, "region size %u is not a power of two"
			       " from 4096 to 1 GiB", rs);
	if (geo->region_count == 0 || !bt_nodes(geo->region_count) ||
	    tm_blocks_needed(geo->region_count) >= MD_ENTRY_MAX_BLOCKS)
		return md_errf(err, len, -EINVAL, "region count %" PRIu64 " is out of range",
			       geo->region_count);
	return 0;
}

static uint64_t regions_for(uint64_t image_size, uint32_t region_size)
{
	if (!region_size)
		return 0;
	return image_size / region_size + (image_size % region_size != 0);
}

/* True if the file holds only zeros (holes are skipped). */
static int file_is_zero(int fd, uint64_t size, bool *zero)
{
	uint8_t *buf = g_malloc(1 << 20);
	uint64_t off = 0;
	int r = 0;

	*zero = true;
	while (off < size && *zero) {
		off_t data = lseek(fd, (off_t)off, SEEK_DATA), hole;

		if (data < 0 && errno == ENXIO)
			break;
		if (data < 0)
			data = (off_t)off;
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0)
			hole = (off_t)size;
		for (off = (uint64_t)data; off < (uint64_t)hole && *zero; ) {
			size_t n = (size_t)MIN((uint64_t)(1 << 20), (uint64_t)hole - off);

			r = bio_pread(fd, buf, n, off);
			if (r)
				goto out;
			*zero = md_all_zero(buf, n);
			off += n;
		}
	}
out:
	g_free(buf);
	return r;
}

static unsigned lock_wait_ms = LOCK_WAIT_MS;

void md_test_lock_wait(unsigned ms)
{
	lock_wait_ms = ms ? ms : LOCK_WAIT_MS;
}

/* Exclusive flock(2) on @fd, polling every 100 ms; -EBUSY if still held. */
static int lock_meta(int fd)
{
	for (unsigned waited = 0;; waited += 100) {
		if (!flock(fd, LOCK_EX | LOCK_NB))
			return 0;
		if (errno != EWOULDBLOCK)
			return -errno;
		if (waited >= lock_wait_ms)
			return -EBUSY;
		g_usleep(100 * 1000);
	}
}

static int fsync_dir(const char *path)
{
	char *dir = g_path_get_dirname(path);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;

	g_free(dir);
	if (fd < 0)
		return -errno;
	if (fsync(fd))
		r = -errno;
	close(fd);
	return r;
}

/*
 * Opens and locks "<path>.new". Not O_TRUNC at open: another daemon may be
 * formatting it; truncate only once it is ours and still has that name (a
 * stale second link to a live META is dropped, never truncated).
 */
static int open_new(const char *tmp, bool nofollow, int *out)
{
	for (int tries = 0; tries < 3; tries++) {
		int fd = open(tmp, O_RDWR | O_CREAT | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0), 0600);
		struct stat a, b;
		int r;

		if (fd < 0)
			return -errno;
		r = lock_meta(fd);
		if (!r && (fstat(fd, &a) || (nofollow ? lstat(tmp, &b) : stat(tmp, &b))))
			r = -errno;
		if (!r && (a.st_dev != b.st_dev || a.st_ino != b.st_ino))
			r = -EAGAIN;	/* renamed or removed while we waited */
		if (!r && a.st_nlink > 1)
			r = unlink(tmp) ? -errno : -EAGAIN;
		if (!r && ftruncate(fd, 0))
			r = -errno;
		if (!r) {
			*out = fd;
			return 0;
		}
		close(fd);
		if (r != -EAGAIN)
			return r;
	}
	return -EAGAIN;
}

/* rename(2) that never replaces @to; where the filesystem cannot, the next best. */
static int rename_noreplace(const char *from, const char *to)
{
	if (!renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE))
		return 0;
	if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
		return -errno;
	if (!link(from, to))
		return unlink(from) ? -errno : 0;
	if (errno != EPERM && errno != EOPNOTSUPP && errno != ENOSYS)
		return -errno;
	return rename(from, to) ? -errno : 0;
}

/*
 * Writes a fresh META of @nr blocks into @fd: the space map, a flush, then
 * superblock 0 and a flush (commit_locked). On success the md owns @fd.
 */
static int format_fd(int fd, uint64_t nr, const struct md_geometry *geo, struct md **out)
{
	struct md *md;
	int r = md_new(geo, nr, &md);

	if (r)
		return r;
	md->tm.fd = fd;
	/* The kernel's generator, not OpenSSL's: RAND_bytes() brings up
	 * OpenSSL's DRBG and providers, megabytes of libcrypto kept mapped in
	 * the daemon for one uuid. */
	if (getrandom(md->uuid, 16, 0) != 16)
		for (int i = 0; i < 16; i++)
			md->uuid[i] = (uint8_t)g_random_int();
	md->slot = 1;	/* so the first superblock goes to slot 0 */
	set_bit(md->tm.busy, 0);
	set_bit(md->tm.busy, 1);
	r = tm_mark(&md->tm, 0, true);
	if (!r)
		r = tm_mark(&md->tm, 1, true);
	if (!r)
		r = md_commit_locked(md);
	if (r) {
		md->tm.fd = -1;
		md_free(md);
		return r;
	}
	md->slots[0].state = MD_SB_VALID;
	md->slots[0].txid = md->tm.txid;
	md->slots[0].version = md->version;
	*out = md;
	return 0;
}

/*
 * Formats a new META as "<path>.new" and renames it into place (issue 22
 * item 9): an error or a crash before the rename leaves META as it was,
 * missing or unformatted, never half written. @replace: META exists (empty
 * or all zeros) and is renamed over; else a file that appeared meanwhile is
 * never clobbered.
 */
static int format_new(const struct opener *o, uint64_t nr, bool replace, struct md **out,
		      char *err, size_t len)
{
	char *tmp = g_strconcat(o->path, ".new", NULL);
	struct md *md = NULL;
	int fd = -1, r;

	r = open_new(tmp, o->nofollow, &fd);
	if (r) {
		md_errf(err, len, r, "cannot create its .new file: %s", strerror(-r));
		goto out_free;
	}
	bio_set_role(fd, BIO_META);
	if (ftruncate(fd, (off_t)(nr * BS))) {
		r = md_errf(err, len, -errno, "cannot size the new file to %" PRIu64
			    " blocks: %s", nr, strerror(errno));
		goto out;
	}
	r = format_fd(fd, nr, &o->geo, &md);
	if (r) {
		md_errf(err, len, r, "cannot format: %s", strerror(-r));
		goto out;
	}
	fd = -1;
	r = replace ? (rename(tmp, o->path) ? -errno : 0) : rename_noreplace(tmp, o->path);
	if (r == -EEXIST)
		md_errf(err, len, r, "was created by someone else while it was being formatted");
	else if (r)
		md_errf(err, len, r, "cannot rename the new file into place: %s", strerror(-r));
	if (r)
		goto out;
	r = fsync_dir(o->path);
	if (r)	/* META is in place and valid; only its name may not be durable */
		md_errf(err, len, r, "cannot sync its directory: %s", strerror(-r));
	if (!r && !o->lock)
		flock(md->tm.fd, LOCK_UN);	/* md_open's caller locks META itself */
out:
	if (r) {
		if (md) {
			bio_forget(md->tm.fd);
			md_free(md);
		} else {
			bio_forget(fd);
			close(fd);
		}
		unlink(tmp);	/* still ours: we hold its lock */
	} else {
		*out = md;
	}
out_free:
	g_free(tmp);
	return r;
}

/*
 * A block device cannot be renamed: format in place, the superblock last
 * after a flush. Unformatted means both superblock slots are all zeros.
 */
static int format_in_place(int fd, uint64_t size, const struct md_geometry *geo,
			   struct md **out, char *err, size_t len)
{
	uint64_t need = tm_blocks_needed(geo->region_count), nr = size / BS;
	int r;

	if (nr < need)
		return md_errf(err, len, -ENOSPC, "device too small: %" PRIu64 " blocks of 4 KiB,"
			       " %" PRIu64 " needed", nr, need);
	r = format_fd(fd, nr, geo, out);
	if (r)
		md_errf(err, len, r, "cannot format: %s", strerror(-r));
	return r;
}

/* No valid superblock: format if META is unformatted and we may, else say why. */
static int open_unformatted(int fd, const struct stat *st, uint64_t size,
			    const struct md_sb *s, const struct opener *o,
			    struct md **out, char *err, size_t len)
{
	const struct md_sb *bad = s[0].state == MD_SB_BAD ? &s[0] :
				  s[1].state == MD_SB_BAD ? &s[1] : NULL;
	bool blk = S_ISBLK(st->st_mode), zero;
	int r;

	if (blk)
		zero = s[0].state == MD_SB_EMPTY && s[1].state == MD_SB_EMPTY;
	else if ((r = file_is_zero(fd, size, &zero)))
		return md_errf(err, len, r, "cannot read: %s", strerror(-r));
	if (!zero && bad)
		return md_errf(err, len, -EILSEQ, "%s", bad->why);
	if (!zero)
		return md_errf(err, len, -EINVAL, "not a clonefs metadata file");
	if (!o->have_geo || o->tool)
		return md_errf(err, len, -ENODATA, "metadata is empty (not formatted)");
	if (o->readonly)
		return md_errf(err, len, -EROFS, "metadata is empty and cannot be formatted"
			       " read-only");
	if (blk)
		return format_in_place(fd, size, &o->geo, out, err, len);
	if (!S_ISREG(st->st_mode))
		return md_errf(err, len, -EINVAL, "is neither a regular file nor a block device");
	return format_new(o, MAX(size / BS, tm_blocks_needed(o->geo.region_count)), true, out,
			  err, len);
}

/* Loads the trees of superblock @s; @check: leaked blocks are errors too. */
static int load(struct md *md, const struct md_sb *s, bool check, char *err, size_t len)
{
	struct bt_loader *ld = g_new0(struct bt_loader, 1);
	int r;

	ld->fd = md->tm.fd;
	ld->version = s->version;
	ld->nr_blocks = md->tm.nr_blocks;
	ld->txid = s->txid;
	ld->err = err;
	ld->errlen = len;
	ld->refs = g_new0(uint8_t, md->tm.nr_blocks);
	ld->refs[0] = ld->refs[1] = 1;	/* the superblock slots */
	r = tm_load(&md->tm, ld, s->sm_root, s->sm_root_txid);
	if (r)
		goto out;
	ld->bits = 0;
	ld->leaf_pop = md->leaf_pop;
	r = bt_load(ld, &md->bm, s->bm_root, s->bm_root_txid);
	md->nr_hydrated = md->committed_hydrated = ld->bits;
	if (!r && s->version >= 2 && s->hydrated != ld->bits)
		r = md_errf(err, len, -EILSEQ, "superblock says %" PRIu64 " regions are"
			    " hydrated, the bitmap has %" PRIu64, s->hydrated, ld->bits);
	if (!r)
		r = tm_check_refs(&md->tm, ld->refs, check, err, len);
out:
	g_free(ld->refs);
	g_free(ld);
	return r;
}

/* The geometry in force: META's, checked against what the caller asked for. */
static int match_geometry(const struct opener *o, const struct md_geometry *geo,
			  char *err, size_t len)
{
	struct md_geometry want = o->geo;

	if (!o->have_geo)
		return 0;
	if (o->image_size && !o->rs_explicit) {
		/* spec 1.3: a plain remount uses META's region size */
		want.region_size = geo->region_size;
		want.region_count = regions_for(o->image_size, geo->region_size);
	}
	if (want.region_size != geo->region_size)
		return md_errf(err, len, -EINVAL, "region size %u does not match metadata (%u)",
			       want.region_size, geo->region_size);
	if (want.region_count != geo->region_count)
		return md_errf(err, len, -EINVAL, "region count %" PRIu64 " does not match"
			       " metadata (%" PRIu64 ")", want.region_count, geo->region_count);
	return 0;
}

/* Opens the state in slot @slot of @s; on success the md owns @fd. */
static int open_formatted(int fd, uint64_t size, const struct md_sb *s, int slot,
			  const struct opener *o, struct md **out, char *err, size_t len)
{
	const struct md_sb *best = &s[slot];
	struct md_geometry geo = { best->region_size, best->region_count };
	struct md *md = NULL;
	int r;

	if (check_geometry(&geo, NULL, 0) || best->nr_blocks < 3 ||
	    best->nr_blocks > MD_ENTRY_MAX_BLOCKS || bt_nodes(best->nr_blocks) == 0)
		return md_errf(err, len, -EILSEQ, "superblock has an impossible geometry");
	if (size / BS < best->nr_blocks)
		return md_errf(err, len, -EILSEQ, "metadata file is truncated (%" PRIu64 " of %"
			       PRIu64 " blocks)", size / BS, best->nr_blocks);
	if ((r = match_geometry(o, &geo, err, len)))
		return r;
	if ((best->flags & MD_SB_NEEDS_CHECK) && !o->tool)
		return md_errf(err, len, -EUCLEAN, "needs_check is set: run clonefs check");
	if (best->flags & ~MD_SB_KNOWN_FLAGS)
		return md_errf(err, len, -EOPNOTSUPP, "unknown superblock flags %#x",
			       best->flags & ~MD_SB_KNOWN_FLAGS);
	r = md_new(&geo, best->nr_blocks, &md);
	if (r)
		return md_errf(err, len, r, "cannot allocate metadata: %s", strerror(-r));
	if (md->bm.levels != best->bm_levels || md->tm.sm.levels != best->sm_levels) {
		r = md_errf(err, len, -EILSEQ, "superblock has wrong tree depths");
		goto out;
	}
	memcpy(md->slots, s, 2 * sizeof(*s));
	memcpy(md->uuid, best->uuid, 16);
	md->tm.txid = best->txid;
	md->flags = best->flags;
	md->version = best->version;
	md->slot = slot;
	md->tm.fd = fd;
	r = load(md, best, o->check, err, len);
out:
	if (r) {
		md->tm.fd = -1;
		md_free(md);
	} else {
		*out = md;
	}
	return r;
}

int md_read_slots(int fd, struct md_sb *s, char *err, size_t len)
{
	uint8_t *b = g_malloc(BS);
	int r = 0;

	for (int i = 0; i < 2 && !r; i++) {
		r = bio_pread(fd, b, BS, (uint64_t)i * BS);
		if (r)
			md_errf(err, len, r, "cannot read superblock: %s", strerror(-r));
		else
			mdb_sb_parse(b, i, &s[i]);
	}
	g_free(b);
	return r;
}

/* Size in bytes of META: a file's length, or a block device's. */
static int meta_size(int fd, const struct stat *st, uint64_t *size)
{
	off_t end;

	if (!S_ISBLK(st->st_mode)) {
		*size = (uint64_t)st->st_size;
		return 0;
	}
	end = lseek(fd, 0, SEEK_END);
	if (end < 0)
		return -errno;
	*size = (uint64_t)end;
	return 0;
}

/* Locks META's fd and makes sure it is still the file its path names. */
static int lock_and_stat(int fd, const struct opener *o, struct stat *st, char *err, size_t len)
{
	struct stat p;
	int r = o->lock ? lock_meta(fd) : 0;

	if (r == -EBUSY)
		return md_errf(err, len, r, "in use by another clonefs daemon");
	if (r)
		return md_errf(err, len, r, "cannot lock: %s", strerror(-r));
	if (fstat(fd, st))
		return md_errf(err, len, -errno, "cannot stat: %s", strerror(errno));
	/* a daemon that formatted META while we waited renamed a new file over it */
	if (o->lock && S_ISREG(st->st_mode) && (st->st_nlink == 0 ||
	    (!stat(o->path, &p) && (p.st_dev != st->st_dev || p.st_ino != st->st_ino))))
		return md_errf(err, len, -ESTALE, "was replaced while waiting for its lock");
	return 0;
}

/* Opens META from @fd (-1: it does not exist). Takes ownership of @fd. */
int md_open_meta(int fd, const struct opener *o, struct md **out, char *err, size_t len)
{
	struct md_sb s[2];
	struct md *md = NULL;
	struct stat st;
	uint64_t size = 0;
	int r, slot = o->slot;

	if (o->have_geo && (r = check_geometry(&o->geo, err, len)))
		goto out;
	if (fd < 0) {
		if (!o->have_geo || o->readonly || o->tool)
			return md_errf(err, len, -ENOENT, "does not exist");
		return format_new(o, tm_blocks_needed(o->geo.region_count), false, out, err, len);
	}
	bio_set_role(fd, BIO_META);
	if ((r = lock_and_stat(fd, o, &st, err, len)))
		goto out;
	if ((r = meta_size(fd, &st, &size))) {
		md_errf(err, len, r, "cannot get its size: %s", strerror(-r));
		goto out;
	}
	if ((r = md_read_slots(fd, s, err, len)))
		goto out;
	if (slot < 0)
		for (int i = 0; i < 2; i++)
			if (s[i].state == MD_SB_VALID && (slot < 0 || s[i].txid > s[slot].txid))
				slot = i;
	if (slot < 0) {
		r = open_unformatted(fd, &st, size, s, o, &md, err, len);
	} else if (s[slot].state != MD_SB_VALID) {
		r = md_errf(err, len, -EILSEQ, "%s", s[slot].why);
	} else {
		r = open_formatted(fd, size, s, slot, o, &md, err, len);
	}
out:
	if (fd >= 0 && (!md || md->tm.fd != fd)) {
		bio_forget(fd);
		close(fd);
	}
	if (!r) {
		md->readonly = o->readonly;
		*out = md;
	}
	return r;
}

/* For the path-based opens: META opened for reading, or reading and writing. */
int md_open_path(const char *path, bool readonly, bool may_miss, int *fd,
		     char *err, size_t len)
{
	*fd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (*fd >= 0 || (may_miss && errno == ENOENT))
		return 0;
	return md_errf(err, len, -errno, "cannot open: %s", strerror(errno));
}

int md_open_fd(const struct md_open_args *a, struct md **out, char *err, size_t errlen)
{
	struct opener o = {
		.path = a->path, .have_geo = true, .image_size = a->image_size,
		.rs_explicit = a->region_size_explicit, .readonly = a->readonly,
		.lock = true, .nofollow = a->nofollow, .slot = -1,
	};

	o.geo.region_size = a->region_size;
	o.geo.region_count = regions_for(a->image_size, a->region_size);
	return md_open_meta(a->fd, &o, out, err, errlen);
}

int md_open(const char *path, const struct md_geometry *geo, bool readonly,
	    struct md **out, char *err, size_t errlen)
{
	/* no lock: clone.c still takes its own on a second fd */
	struct opener o = { .path = path, .have_geo = true, .geo = *geo, .rs_explicit = true,
			    .readonly = readonly, .slot = -1 };
	int fd, r = md_open_path(path, readonly, !readonly, &fd, err, errlen);

	return r ? r : md_open_meta(fd, &o, out, err, errlen);
}

int md_open_existing(const char *path, bool readonly, struct md **out,
		     char *err, size_t errlen)
{
	/* tools read META even when needs_check is set; writers may not */
	struct opener o = { .path = path, .readonly = readonly, .tool = readonly, .slot = -1 };
	int fd, r = md_open_path(path, readonly, false, &fd, err, errlen);

	return r ? r : md_open_meta(fd, &o, out, err, errlen);
}
