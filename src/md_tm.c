/*
 * md_tm.c - the space map and the transaction manager (see md_tm.h).
 *
 * Allocation scans the busy map (committed-live plus allocated in this
 * transaction) from a moving hint, a word at a time where it is full.
 */
#include "md_tm.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#define SLACK_BLOCKS	256

struct tm_undo { uint64_t *slot; uint64_t old; };
struct tm_node { unsigned level; uint64_t idx; };

int tm_init(struct md_tm *tm, uint64_t nr_blocks)
{
	int r;

	tm->fd = -1;
	tm->nr_blocks = nr_blocks;
	tm->undo = g_array_new(FALSE, FALSE, sizeof(struct tm_undo));
	tm->allocated = g_array_new(FALSE, FALSE, sizeof(uint64_t));
	tm->freed = g_array_new(FALSE, FALSE, sizeof(uint64_t));
	tm->moved = g_array_new(FALSE, FALSE, sizeof(struct tm_node));
	tm->buf = g_malloc(BS);
	r = bt_init(&tm->sm, MD_TREE_SPACE, nr_blocks);
	if (r)
		return r;
	tm->busy = g_try_new0(uint64_t, (nr_blocks + 63) / 64);
	if (!tm->busy)
		return -ENOMEM;
	for (unsigned l = 0; l <= tm->sm.levels; l++)
		tm->sm_moved[l] = g_new0(uint8_t, tm->sm.count[l]);
	return 0;
}

void tm_free(struct md_tm *tm)
{
	bt_free(&tm->sm);
	g_free(tm->busy);
	g_free(tm->buf);
	for (unsigned l = 0; l <= MAX_LEVELS; l++)
		g_free(tm->sm_moved[l]);
	if (tm->undo)
		g_array_free(tm->undo, TRUE);
	if (tm->allocated)
		g_array_free(tm->allocated, TRUE);
	if (tm->freed)
		g_array_free(tm->freed, TRUE);
	if (tm->moved)
		g_array_free(tm->moved, TRUE);
}

uint64_t tm_blocks_needed(uint64_t nbits)
{
	uint64_t h = bt_nodes(nbits), fixed = 2 + MD_JOURNAL_BLOCKS + SLACK_BLOCKS;
	uint64_t n = fixed + 2 * h;

	/* the space map depends on the size: iterate */
	for (int i = 0; i < 8; i++) {
		uint64_t next = fixed + 2 * h + 2 * bt_nodes(n);

		if (next == n)
			break;
		n = next;
	}
	return n;
}

int tm_load(struct md_tm *tm, struct bt_loader *ld, uint64_t root, uint64_t root_txid)
{
	int r = bt_load(ld, &tm->sm, root, root_txid);

	if (r)
		return r;
	tm->used = tm->committed_used = ld->bits;
	memcpy(tm->busy, tm->sm.words, (tm->nr_blocks + 63) / 64 * 8);
	return 0;
}

int tm_check_refs(struct md_tm *tm, const uint8_t *refs, bool leaks, char *err, size_t len)
{
	for (uint64_t b = 0; b < tm->nr_blocks; b++) {
		bool used = test_bit(tm->sm.words, b);

		if (refs[b] > 1)
			return errf(err, len, -EILSEQ, "block %" PRIu64 " is used twice", b);
		if (refs[b] && !used)
			return errf(err, len, -EILSEQ, "block %" PRIu64 " is in use but marked"
				       " free", b);
		if (!refs[b] && used && leaks)
			return errf(err, len, -EILSEQ, "block %" PRIu64 " is leaked (marked"
				       " used but unreachable)", b);
	}
	return 0;
}

static void set_undo(struct md_tm *tm, uint64_t *slot, uint64_t v)
{
	struct tm_undo u = { slot, *slot };

	g_array_append_val(tm->undo, u);
	*slot = v;
}

void tm_set_node(struct md_tm *tm, struct md_tree *t, unsigned level, uint64_t idx, uint64_t v)
{
	set_undo(tm, &t->loc[level][idx], v);
	set_undo(tm, &t->txid[level][idx], v > PTR_ONES ? tm->txid + 1 : 0);
}

/* Space-map node (@level, @idx) changes in this transaction: give it a new block. */
static int sm_move(struct md_tm *tm, unsigned level, uint64_t idx)
{
	struct tm_node n = { level, idx };
	uint64_t *loc = &tm->sm.loc[level][idx], b;
	int r;

	if (tm->sm_moved[level][idx])
		return 0;
	tm->sm_moved[level][idx] = 1;
	g_array_append_val(tm->moved, n);
	r = tm_alloc(tm, &b);
	if (!r)
		r = tm_release(tm, *loc);
	if (r)
		return r;
	tm_set_node(tm, &tm->sm, level, idx, b);
	return level < tm->sm.levels ? sm_move(tm, level + 1, idx / FANOUT) : 0;
}

int tm_mark(struct md_tm *tm, uint64_t b, bool used)
{
	uint64_t *w = &tm->sm.leaf[b / LEAF_BITS][(b % LEAF_BITS) / 64];
	uint64_t m = 1ULL << (b % 64);

	if (!!(*w & m) == used)
		return 0;
	*w ^= m;
	if (used)
		tm->used++;
	else
		tm->used--;
	return sm_move(tm, 0, b / LEAF_BITS);
}

int tm_alloc(struct md_tm *tm, uint64_t *out)
{
	uint64_t n = tm->limit ? MIN(tm->limit, tm->nr_blocks) : tm->nr_blocks;
	uint64_t b = tm->hint < n ? tm->hint : 0;

	for (uint64_t seen = 0; seen < n; ) {
		if (b % 64 == 0 && b + 64 <= n && tm->busy[b / 64] == ~0ULL) {
			b += 64;
			seen += 64;
		} else if (test_bit(tm->busy, b)) {
			b++;
			seen++;
		} else {
			set_bit(tm->busy, b);
			g_array_append_val(tm->allocated, b);
			tm->hint = b + 1;
			*out = b;
			return tm_mark(tm, b, true);
		}
		if (b >= n)
			b = 0;
	}
	return -ENOSPC;
}

int tm_alloc_run(struct md_tm *tm, uint64_t n, uint64_t *start)
{
	uint64_t end = tm->limit ? MIN(tm->limit, tm->nr_blocks) : tm->nr_blocks, run = 0;

	for (uint64_t b = 2; b < end; b++) {
		run = test_bit(tm->busy, b) ? 0 : run + 1;
		if (run < n)
			continue;
		*start = b + 1 - n;
		for (uint64_t i = *start; i <= b; i++) {
			set_bit(tm->busy, i);
			g_array_append_val(tm->allocated, i);
		}
		for (uint64_t i = *start; i <= b; i++) {
			int r = tm_mark(tm, i, true);

			if (r)
				return r;
		}
		return 0;
	}
	return -ENOSPC;
}

int tm_release(struct md_tm *tm, uint64_t b)
{
	if (b < 2)
		return 0;
	g_array_append_val(tm->freed, b);
	return tm_mark(tm, b, false);
}

int tm_write(struct md_tm *tm, uint64_t nr, uint8_t *b, uint32_t kind, unsigned tree,
	     unsigned level, uint64_t idx)
{
	int r = mdb_write(tm->fd, b, nr, kind, tree, level, idx, tm->txid + 1);

	if (!r)
		__atomic_add_fetch(&tm->blocks_written, 1, __ATOMIC_RELAXED);
	return r;
}

int tm_move_space_map(struct md_tm *tm, unsigned from_level, uint64_t age)
{
	uint64_t txid = tm->txid + 1;

	for (unsigned l = from_level; l <= tm->sm.levels; l++)
		for (uint64_t i = 0; i < tm->sm.count[l]; i++) {
			int r = tm->sm.loc[l][i] > PTR_ONES && txid - tm->sm.txid[l][i] >= age ?
				sm_move(tm, l, i) : 0;

			if (r)
				return r;
		}
	return 0;
}

int tm_write_space_map(struct md_tm *tm)
{
	for (guint k = 0; k < tm->moved->len; k++) {
		struct tm_node n = g_array_index(tm->moved, struct tm_node, k);
		int r;

		if (n.level)
			bt_pack_index(tm->buf, &tm->sm, n.level, n.idx);
		else
			bt_pack_leaf(tm->buf, tm->sm.leaf[n.idx]);
		r = tm_write(tm, tm->sm.loc[n.level][n.idx], tm->buf, n.level ? MD_KIND_INDEX :
			     MD_KIND_LEAF, MD_TREE_SPACE, n.level, n.idx);
		if (r)
			return r;
	}
	return 0;
}

static void txn_reset(struct md_tm *tm)
{
	for (guint k = 0; k < tm->moved->len; k++) {
		struct tm_node n = g_array_index(tm->moved, struct tm_node, k);

		tm->sm_moved[n.level][n.idx] = 0;
	}
	g_array_set_size(tm->moved, 0);
	g_array_set_size(tm->undo, 0);
	g_array_set_size(tm->allocated, 0);
	g_array_set_size(tm->freed, 0);
}

void tm_rollback(struct md_tm *tm)
{
	for (guint k = tm->undo->len; k-- > 0; ) {
		struct tm_undo u = g_array_index(tm->undo, struct tm_undo, k);

		*u.slot = u.old;
	}
	for (guint k = 0; k < tm->allocated->len; k++) {
		uint64_t b = g_array_index(tm->allocated, uint64_t, k);

		clear_bit(tm->sm.words, b);
		clear_bit(tm->busy, b);
	}
	for (guint k = 0; k < tm->freed->len; k++)
		set_bit(tm->sm.words, g_array_index(tm->freed, uint64_t, k));
	tm->used = tm->committed_used;
	txn_reset(tm);
}

void tm_commit_done(struct md_tm *tm)
{
	for (guint k = 0; k < tm->freed->len; k++)
		clear_bit(tm->busy, g_array_index(tm->freed, uint64_t, k));
	txn_reset(tm);
	tm->committed_used = tm->used;
	__atomic_store_n(&tm->txid, tm->txid + 1, __ATOMIC_RELEASE);
}
