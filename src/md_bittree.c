/*
 * md_bittree.c - bit trees in META (see md_bittree.h).
 *
 * A tree has as many levels as its leaves need (at most MAX_LEVELS); a
 * version-2 index entry names its child's block and the transaction that
 * wrote it, so loading catches a stale copy of a child. Pointers
 * PTR_ZEROS/PTR_ONES stand for whole subtrees of zeros or ones and cost no
 * block.
 */
#include "md_bittree.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

uint64_t bt_ones_leaf[LEAF_WORDS] = { [0 ... LEAF_WORDS - 1] = ~0ULL };

int bt_init(struct md_tree *t, int kind, uint64_t nbits)
{
	uint64_t n = (nbits + LEAF_BITS - 1) / LEAF_BITS;

	memset(t, 0, sizeof(*t));
	t->kind = kind;
	t->lazy = kind == MD_TREE_BITMAP;
	t->nbits = nbits;
	t->nleaves = t->count[0] = n;
	while (n > 1) {
		if (t->levels == MAX_LEVELS)
			return -EINVAL;
		n = (n + FANOUT - 1) / FANOUT;
		t->count[++t->levels] = n;
	}
	for (unsigned l = 0; l <= t->levels; l++)
		if (!(t->loc[l] = g_try_new0(uint64_t, t->count[l])) ||
		    !(t->txid[l] = g_try_new0(uint64_t, t->count[l])))
			return -ENOMEM;
	if (!(t->leaf = g_try_new0(uint64_t *, t->nleaves)))
		return -ENOMEM;
	if (!t->lazy) {
		if (!(t->words = g_try_new0(uint64_t, t->nleaves * LEAF_WORDS)))
			return -ENOMEM;
		for (uint64_t i = 0; i < t->nleaves; i++)
			t->leaf[i] = t->words + i * LEAF_WORDS;
	}
	return 0;
}

void bt_free(struct md_tree *t)
{
	if (t->lazy && t->leaf)
		for (uint64_t i = 0; i < t->nleaves; i++)
			if (t->leaf[i] != bt_ones_leaf)
				g_free(t->leaf[i]);
	g_free(t->leaf);
	g_free(t->words);
	for (unsigned l = 0; l <= MAX_LEVELS; l++) {
		g_free(t->loc[l]);
		g_free(t->txid[l]);
	}
}

uint64_t *bt_root(struct md_tree *t)
{
	return &t->loc[t->levels][0];
}

uint64_t bt_nodes(uint64_t nbits)
{
	uint64_t n = (nbits + LEAF_BITS - 1) / LEAF_BITS, total = n;
	unsigned levels = 0;

	while (n > 1) {
		if (++levels > MAX_LEVELS)
			return 0;
		n = (n + FANOUT - 1) / FANOUT;
		total += n;
	}
	return total;
}

uint64_t bt_popcount_leaf(const uint64_t *w)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < LEAF_WORDS; i++)
		n += (uint64_t)__builtin_popcountll(__atomic_load_n(&w[i], __ATOMIC_RELAXED));
	return n;
}

/* Leaf @idx's valid bits (the last leaf may be partial). */
static uint64_t leaf_valid(const struct md_tree *t, uint64_t idx)
{
	uint64_t rest = t->nbits - idx * LEAF_BITS;

	return rest < LEAF_BITS ? rest : LEAF_BITS;
}

/* Leaf @idx is all ones (@ptr PTR_ONES), or its bits are in block @b. */
static int load_leaf(struct bt_loader *ld, struct md_tree *t, uint64_t idx, uint64_t ptr,
		     const uint8_t *b)
{
	const struct md_node_disk *d = (const void *)b;
	uint64_t valid = leaf_valid(t, idx), *w;

	if (ptr == PTR_ONES) {
		if (valid < LEAF_BITS)
			return errf(ld->err, ld->errlen, -EILSEQ, "%s leaf %" PRIu64 " is"
				       " marked all ones past the end", md_tree_name(t->kind), idx);
		if (t->lazy)
			t->leaf[idx] = bt_ones_leaf;
		else
			memset(t->leaf[idx], 0xff, LEAF_WORDS * 8);
		ld->bits += LEAF_BITS;
		if (t->lazy && ld->leaf_pop)
			ld->leaf_pop[idx] = (uint16_t)LEAF_BITS;
		return 0;
	}
	w = t->lazy ? g_try_new(uint64_t, LEAF_WORDS) : t->leaf[idx];
	if (!w)
		return -ENOMEM;
	for (unsigned i = 0; i < LEAF_WORDS; i++) {
		uint64_t x = le64_to_cpu(d->words[i]), first = (uint64_t)i * 64;
		uint64_t keep = first >= valid ? 0 : valid - first >= 64 ? ~0ULL :
				~0ULL >> (64 - (valid - first));

		if (x & ~keep) {	/* bits past the end must be zero */
			if (t->lazy)
				g_free(w);
			return errf(ld->err, ld->errlen, -EILSEQ, "%s bits beyond the end are"
				       " set in block %" PRIu64, md_tree_name(t->kind), ptr);
		}
		w[i] = x;
		ld->bits += (uint64_t)__builtin_popcountll(x);
	}
	t->leaf[idx] = w;
	if (t->lazy && ld->leaf_pop)
		ld->leaf_pop[idx] = (uint16_t)bt_popcount_leaf(w);
	return 0;
}

/*
 * Decodes index entry @e of a block written in transaction @parent_txid:
 * the child's block and (version 2) the full transaction id it must carry,
 * the largest one <= @parent_txid with the stored low 32 bits.
 */
static uint64_t entry_decode(const struct bt_loader *ld, uint64_t e, uint64_t parent_txid,
			     uint64_t *want)
{
	uint64_t low, t;

	if (ld->version < 2) {
		*want = 0;	/* version 1 pointers do not say */
		return e;
	}
	low = e >> 32;
	t = (parent_txid & ~0xffffffffULL) | low;
	if (t > parent_txid && t >= (1ULL << 32))
		t -= 1ULL << 32;
	*want = t;
	return e & 0xffffffffULL;
}

static int load_node(struct bt_loader *ld, struct md_tree *t, unsigned level, uint64_t idx,
		     uint64_t ptr, uint64_t want);

/* Loads the children of index node (@level, @idx) at @ptr, read into @b. */
static int load_children(struct bt_loader *ld, struct md_tree *t, unsigned level,
			 uint64_t idx, uint64_t ptr, const uint8_t *b)
{
	const struct md_node_disk *d = (const void *)b;
	uint64_t first = idx * FANOUT, n = MIN((uint64_t)FANOUT, t->count[level - 1] - first);

	for (unsigned i = 0; i < FANOUT; i++) {
		uint64_t child = PTR_ONES, e = 0, child_want = 0;
		int r;

		if (ptr != PTR_ONES) {
			e = le64_to_cpu(d->words[i]);
			child = entry_decode(ld, e, t->txid[level][idx], &child_want);
		}
		if (child <= PTR_ONES) {
			if (ld->version >= 2 && e >> 32)
				return errf(ld->err, ld->errlen, -EILSEQ, "index block %"
					       PRIu64 " has a sentinel pointer with a"
					       " transaction id", ptr);
			child_want = 0;
		}
		if (i >= n) {
			if (ptr == PTR_ONES)
				break;
			if (e)
				return errf(ld->err, ld->errlen, -EILSEQ, "index block %" PRIu64
					       " has a pointer past its last child", ptr);
			continue;
		}
		r = load_node(ld, t, level - 1, first + i, child, child_want);
		if (r)
			return r;
	}
	return 0;
}

static int load_node(struct bt_loader *ld, struct md_tree *t, unsigned level, uint64_t idx,
		     uint64_t ptr, uint64_t want)
{
	uint8_t *b = ld->buf[level];
	struct md_want w = { level ? MD_KIND_INDEX : MD_KIND_LEAF, (unsigned)t->kind, level, idx,
			     ld->txid, want };
	int r;

	t->loc[level][idx] = ptr;
	if (ptr <= PTR_ONES && want)
		return errf(ld->err, ld->errlen, -EILSEQ, "%s node %u/%" PRIu64 " is a"
			       " sentinel pointer with a transaction id", md_tree_name(t->kind),
			       level, idx);
	if (ld->version >= 2 && ptr > PTR_ONES && !want)
		return errf(ld->err, ld->errlen, -EILSEQ, "%s pointer to block %" PRIu64
			       " has no transaction id", md_tree_name(t->kind), ptr);
	if (ptr == PTR_ZEROS)
		return 0;	/* locations and bits start zeroed */
	if (ptr != PTR_ONES) {
		if (ptr < ld->nr_blocks && ld->refs[ptr] < 255)
			ld->refs[ptr]++;
		r = mdb_read(ld->fd, ld->nr_blocks, b, ptr, &w, ld->err, ld->errlen);
		if (r)
			return r;
		t->txid[level][idx] = le64_to_cpu(((const struct md_block_header *)b)->txid);
	}
	if (level == 0)
		return load_leaf(ld, t, idx, ptr, b);
	return load_children(ld, t, level, idx, ptr, b);
}

int bt_load(struct bt_loader *ld, struct md_tree *t, uint64_t ptr, uint64_t want)
{
	return load_node(ld, t, t->levels, 0, ptr, want);
}

void bt_pack_leaf(uint8_t *b, const uint64_t *w)
{
	struct md_node_disk *d = (void *)b;

	memset(b, 0, BS);
	for (unsigned i = 0; i < LEAF_WORDS; i++)
		d->words[i] = cpu_to_le64(w[i]);
}

uint64_t bt_pack_index(uint8_t *b, const struct md_tree *t, unsigned level, uint64_t idx)
{
	struct md_node_disk *d = (void *)b;
	uint64_t first = idx * FANOUT, n = MIN((uint64_t)FANOUT, t->count[level - 1] - first);
	const uint64_t *c = &t->loc[level - 1][first], *tx = &t->txid[level - 1][first];
	bool zeros = true, ones = true;

	memset(b, 0, BS);
	for (uint64_t i = 0; i < n; i++) {
		d->words[i] = cpu_to_le64(md_entry_pack(c[i], tx[i]));
		zeros &= c[i] == PTR_ZEROS;
		ones &= c[i] == PTR_ONES;
	}
	return zeros ? PTR_ZEROS : ones ? PTR_ONES : 2;
}

void bt_parents_of(const struct md_tree *t, unsigned l, GArray *cur, GArray *next,
		   bool upgrade)
{
	guint k = 0;

	g_array_set_size(next, 0);
	for (uint64_t p = 0; upgrade && p < t->count[l]; p++) {
		bool want = t->loc[l][p] > PTR_ONES;

		while (k < cur->len && g_array_index(cur, uint64_t, k) / FANOUT <= p)
			want |= g_array_index(cur, uint64_t, k++) / FANOUT == p;
		if (want)
			g_array_append_val(next, p);
	}
	for (k = 0; !upgrade && k < cur->len; k++) {
		uint64_t p = g_array_index(cur, uint64_t, k) / FANOUT;

		if (!next->len || g_array_index(next, uint64_t, next->len - 1) != p)
			g_array_append_val(next, p);
	}
}
