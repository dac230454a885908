/*
 * metadata.c - the metadata verbs (metadata.h) over the layers below:
 * md_tm (space map, copy-on-write transactions) -> md_bittree -> md_block
 * (checksummed blocks). Opening and formatting are in md_open.c, the
 * offline check, repair and dump in md_tools.c; the layout is format.h and
 * docs/format.md.
 *
 * META holds two bit trees: the hydration bitmap (1 bit per region, 1 =
 * hydrated) and the space map (1 bit per META block, 1 = in use), and a
 * journal (md_journal.c). Blocks 0 and 1 are superblock slots that
 * alternate. A flush's commit appends one journal record and flushes; a
 * checkpoint (md_checkpoint.c) writes the trees and swaps the superblock.
 *
 * In core the hydration leaves are allocated on first use (NULL = all
 * zeros, bt_ones_leaf = all ones). Each leaf has a dirty flag;
 * md_pre_commit() copies exactly the dirty leaves into a frozen set, which
 * md_commit() makes durable (a record) and the next checkpoint writes, so
 * marks made in between belong to the next transaction (spec 4.5, 6.1). The
 * frozen set lives until a checkpoint. A failed commit rolls the
 * transaction back (tm_rollback), re-reads the committed leaves, replays the
 * journal and goes read-only (spec 4.6).
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
#include "md_impl.h"
#include "clonefs/blockio.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
	md_free_frozen(md);
	g_free(md->frozen);
	g_free(md->dirty);
	g_free(md->leaf_pop);
	g_free(md->buf);
	g_array_free(md->dirty_list, TRUE);
	g_array_free(md->pending, TRUE);
	g_array_free(md->jranges, TRUE);
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
	md->pending = g_array_new(FALSE, FALSE, sizeof(struct md_range));
	md->jranges = g_array_new(FALSE, FALSE, sizeof(struct md_range));
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
		.journal_start = md->j_start, .journal_blocks = md->j_blocks,
		.journal_head = md->j_head, .journal_txid = md->j_txid,
	};

	memcpy(s.uuid, md->uuid, 16);
	mdb_sb_pack(md->buf, &s);
	return tm_write(&md->tm, (uint64_t)slot, md->buf, MD_KIND_SUPER, 0, 0, (uint64_t)slot);
}

/* Drops the frozen set (committed, or rolled back). */
void md_free_frozen(struct md *md)
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
	md_free_frozen(md);
	md->new_flags = 0;
	__atomic_store_n(&md->frozen_flags, 0, __ATOMIC_RELAXED);
	g_array_set_size(md->pending, 0);
	g_array_set_size(md->jranges, 0);
	md->pending_overflow = md->overflow = false;
	__atomic_store_n(&md->unsynced, false, __ATOMIC_RELAXED);
	/* the journal's records are durable: they stay */
	if (!r && md->j_count) {
		char why[256];

		r = mj_replay(md, why, sizeof(why));
		if (r)
			g_warning("metadata rollback: %s", why);
	}
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
	if (!md->readonly && md_mode(md) == MD_MODE_RW) {
		if (md_changed(md))
			r = md_pre_commit(md) ?: md_commit(md);
		if (!r)
			r = md_checkpoint(md);
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

/* Sets @n bits from @start within one leaf (lock held): how many were clear. */
static uint64_t set_in_leaf(struct md *md, uint64_t idx, uint64_t off, uint64_t n)
{
	uint64_t *w = md->bm.leaf[idx], added = 0;

	if (w == bt_ones_leaf)
		return 0;
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
		return 0;
	__atomic_add_fetch(&md->nr_hydrated, added, __ATOMIC_RELAXED);
	if (!md->dirty[idx]) {
		md->dirty[idx] = 1;
		g_array_append_val(md->dirty_list, idx);
	}
	return added;
}

/* Appends [start, start + n) to @a, merged with the last range if they touch. */
static void add_range(GArray *a, uint64_t start, uint64_t n)
{
	struct md_range *last = a->len ? &g_array_index(a, struct md_range, a->len - 1) : NULL;
	struct md_range x = { start, n };

	if (last && start <= last->start + last->count && start + n >= last->start) {
		uint64_t end = MAX(last->start + last->count, start + n);

		last->start = MIN(last->start, start);
		last->count = end - last->start;
		return;
	}
	g_array_append_val(a, x);
}

void md_mark_range(struct md *md, uint64_t start, uint64_t n)
{
	while (n) {
		uint64_t off = start % LEAF_BITS, take = MIN(n, LEAF_BITS - off);

		set_in_leaf(md, start / LEAF_BITS, off, take);
		start += take;
		n -= take;
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
	if (md_mode(md) == MD_MODE_RW) {	/* else a commit failed meanwhile */
		md_mark_range(md, start, n);
		/* the next journal record: whole ranges, few of them */
		if (md->pending->len > MD_JOURNAL_RANGES)
			md->pending_overflow = true;
		else
			add_range(md->pending, start, n);
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
		  __atomic_load_n(&md->unsynced, __ATOMIC_RELAXED);
	g_mutex_unlock(&md->lock);
	return changed;
}

/*
 * Copies the dirty leaves into the frozen set and the pending ranges into
 * the frozen ranges: the next transaction (both locks held).
 */
void md_freeze(struct md *md)
{
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
	for (guint k = 0; k < md->pending->len; k++) {
		struct md_range x = g_array_index(md->pending, struct md_range, k);

		add_range(md->jranges, x.start, x.count);
	}
	md->overflow |= md->pending_overflow || md->jranges->len > MD_JOURNAL_RANGES;
	md->pending_overflow = false;
	g_array_set_size(md->pending, 0);
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
	md_freeze(md);
	__atomic_store_n(&md->frozen_flags, md->frozen_flags | md->new_flags, __ATOMIC_RELAXED);
	if (md->jranges->len || md->overflow || md->frozen_flags)
		__atomic_store_n(&md->unsynced, true, __ATOMIC_RELAXED);
	md->new_flags = 0;
	g_mutex_unlock(&md->lock);
out:
	g_mutex_unlock(&md->commit_lock);
	return r;
}

uint64_t md_frozen_hydrated(struct md *md)
{
	uint64_t n = md->committed_hydrated;

	for (guint k = 0; k < md->frozen_list->len; k++) {
		uint64_t idx = g_array_index(md->frozen_list, uint64_t, k);

		n += bt_popcount_leaf(md->frozen[idx]) - md->leaf_pop[idx];
	}
	return n;
}

/*
 * Makes the frozen changes durable: one journal record and one META flush,
 * or a checkpoint when no record can take them (no journal, ring full, too
 * many ranges).
 */
static int commit_frozen(struct md *md)
{
	uint32_t flags = md->frozen_flags;
	int r;

	if (!mj_has_room(md))
		return md_commit_locked(md);
	r = mj_append(md, flags, md_frozen_hydrated(md));
	if (r)
		return r;
	md->j_count++;
	md->flags |= flags;
	__atomic_store_n(&md->frozen_flags, 0, __ATOMIC_RELAXED);
	g_array_set_size(md->jranges, 0);
	__atomic_store_n(&md->unsynced, false, __ATOMIC_RELAXED);
	__atomic_store_n(&md->tm.txid, md->tm.txid + 1, __ATOMIC_RELEASE);
	return 0;
}

int md_commit(struct md *md)
{
	int r = 0;

	g_mutex_lock(&md->commit_lock);
	if (md->readonly || md_mode(md) != MD_MODE_RW)
		r = md->readonly ? -EROFS : -EIO;
	else if (__atomic_load_n(&md->unsynced, __ATOMIC_RELAXED) && (r = commit_frozen(md)))
		r = commit_failed(md, r);
	g_mutex_unlock(&md->commit_lock);
	return r;
}

int md_checkpoint(struct md *md)
{
	int r = 0;

	g_mutex_lock(&md->commit_lock);
	if (md->readonly || md_mode(md) != MD_MODE_RW)
		r = md->readonly ? -EROFS : -EIO;
	else if (!__atomic_load_n(&md->unsynced, __ATOMIC_RELAXED) &&
		 (md->frozen_list->len || md->j_count || md->frozen_flags) &&
		 (r = md_commit_locked(md)))
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


