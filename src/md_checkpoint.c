/*
 * md_checkpoint.c - the checkpoint: the frozen leaves and their index paths
 * go to free blocks (copy-on-write, as in dm-persistent-data), then the
 * moved space-map nodes, a flush, the other superblock slot with
 * transaction id + 1 and the journal head moved past the records folded
 * in, and a flush. Blocks freed stay busy until that superblock is
 * durable, so a crash leaves the old trees or the new ones intact.
 *
 * A checkpoint also gives a META its journal (a new one, or the first
 * checkpoint of a version 1 or 2 META), and now and then rewrites nodes so
 * old that a parent's 32-bit copy of their transaction id could no longer
 * tell which transaction wrote them (docs/format.md section 8).
 */
#include "md_impl.h"
#include "clonefs/blockio.h"

#include <stdlib.h>
#include <string.h>

/*
 * Index entries keep only the low 32 bits of a child's transaction id
 * (format.h), so no node may fall 2^32 transactions behind the parent that
 * points at it. The first checkpoint after open and one every REFRESH_EVERY
 * transactions rewrite every node older than REFRESH_AGE, which keeps every
 * node younger than REFRESH_AGE + REFRESH_EVERY. (A META may come with a
 * superblock far ahead of its untouched nodes.)
 */
#define REFRESH_AGE	(1ULL << 31)
#define REFRESH_EVERY	(1ULL << 20)

/* The ring a META gets at its first checkpoint (md_test_journal_blocks). */
static uint32_t journal_blocks = MD_JOURNAL_BLOCKS;

void md_test_journal_blocks(uint32_t n)
{
	journal_blocks = MIN(n, MD_JOURNAL_BLOCKS);
}

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

/*
 * Gives META a journal, if it has none and has room (it is tried once per
 * open): @*added says whether this transaction allocated it.
 */
static int add_journal(struct md *md, bool *added)
{
	uint64_t start, len = (uint64_t)journal_blocks * BS;
	void *zeros;
	int r;

	*added = false;
	if (md->j_blocks || md->j_tried || !journal_blocks)
		return 0;
	md->j_tried = true;
	if (tm_alloc_run(&md->tm, journal_blocks, &start))
		return 0;	/* no room: every flush checkpoints */
	*added = true;
	md->j_start = start;
	md->j_blocks = journal_blocks;
	/* Written once, so that a record overwrites allocated blocks and its
	 * flush has no file metadata to commit. */
	zeros = g_malloc0(len);
	r = bio_pwrite(md->tm.fd, zeros, len, start * BS);
	g_free(zeros);
	return r;
}

/* Rewrites bitmap leaves older than REFRESH_AGE, unchanged, at new blocks. */
static int refresh_leaves(struct md *md)
{
	uint64_t txid = md->tm.txid + 1;

	for (uint64_t idx = 0; idx < md->bm.count[0]; idx++) {
		uint64_t loc = md->bm.loc[0][idx];
		int r;

		if (loc <= PTR_ONES || md->frozen[idx] || txid - md->bm.txid[0][idx] < REFRESH_AGE)
			continue;
		r = bio_pread(md->tm.fd, md->buf, BS, loc * BS);
		if (!r)
			r = bm_set_node(md, 0, idx, 2);
		if (r)
			return r;
	}
	return 0;
}

/*
 * Writes the frozen leaves, then their ancestors level by level; @all:
 * every index node (a version 1 upgrade, or a refresh).
 */
static int write_bitmap(struct md *md, bool all)
{
	GArray *a = g_array_new(FALSE, FALSE, sizeof(uint64_t));
	GArray *b = g_array_new(FALSE, FALSE, sizeof(uint64_t));
	GArray *cur = md->frozen_list, *next = a;
	int r = 0;

	if (cur->len)
		qsort(cur->data, cur->len, sizeof(uint64_t), cmp_u64);
	for (guint k = 0; k < cur->len && !r; k++) {
		uint64_t idx = g_array_index(cur, uint64_t, k), *w = md->frozen[idx], v = 2;

		if (!memcmp(w, bt_ones_leaf, sizeof(bt_ones_leaf)))
			v = PTR_ONES;
		else if (bio_all_zero(w, sizeof(bt_ones_leaf)))
			v = PTR_ZEROS;
		else
			bt_pack_leaf(md->buf, w);
		r = bm_set_node(md, 0, idx, v);
	}
	for (unsigned l = 1; l <= md->bm.levels && !r; l++) {
		bt_parents_of(&md->bm, l, cur, next, all);
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

/*
 * The checkpoint. Its first on version 1 trees also rewrites every index
 * node in version 2 form (the leaves are the same in both).
 */
int md_commit_locked(struct md *md)
{
	uint32_t old_version = md->version, flags = md->flags | md->frozen_flags;
	uint32_t old_head = md->j_head;
	uint64_t old_jtxid = md->j_txid, hydrated = md_frozen_hydrated(md);
	bool upgrade = old_version < 2, new_journal;
	bool refresh = md->tm.txid + 1 >= md->next_refresh;
	int r;

	md->version = MD_SB_VERSION;
	r = add_journal(md, &new_journal);
	if (md->j_blocks) {
		/* the records folded in here are behind the new head */
		md->j_head = (uint32_t)(((uint64_t)md->j_head + md->j_count) % md->j_blocks);
		md->j_txid = md->tm.txid + 2;
	}
	if (refresh && !r)
		r = refresh_leaves(md);
	if (!r)
		r = write_bitmap(md, upgrade || refresh);
	if (!r && upgrade)
		r = tm_move_space_map(&md->tm, 1, 0);	/* index nodes in version 2 */
	if (!r && refresh)
		r = tm_move_space_map(&md->tm, 0, REFRESH_AGE);
	if (!r)
		r = tm_write_space_map(&md->tm);
	if (!r)
		r = bio_flush(md->tm.fd);
	if (!r)
		r = md_write_super(md, 1 - md->slot, flags, hydrated);
	if (!r)
		r = bio_flush(md->tm.fd);
	if (r) {
		md->version = old_version;
		md->j_head = old_head;
		md->j_txid = old_jtxid;
		if (new_journal) {
			md->j_blocks = 0;
			md->j_start = 0;
			md->j_tried = false;
		}
		return r;
	}
	tm_commit_done(&md->tm);
	if (refresh)
		md->next_refresh = md->tm.txid + REFRESH_EVERY;
	md->j_count = 0;
	md->overflow = false;
	g_array_set_size(md->jranges, 0);
	__atomic_store_n(&md->unsynced, false, __ATOMIC_RELAXED);
	md->slot = 1 - md->slot;
	md->flags = flags;
	__atomic_store_n(&md->frozen_flags, 0, __ATOMIC_RELAXED);
	for (guint k = 0; k < md->frozen_list->len; k++) {
		uint64_t idx = g_array_index(md->frozen_list, uint64_t, k);

		md->leaf_pop[idx] = (uint16_t)bt_popcount_leaf(md->frozen[idx]);
	}
	md->committed_hydrated = hydrated;
	md_free_frozen(md);
	return 0;
}
