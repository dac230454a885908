/*
 * md_bittree.h - a bit tree: bits kept in leaves of MD_LEAF_BITS bits,
 * reached from one root through index blocks of MD_FANOUT entries
 * (format.h). The hydration bitmap and the space map are both one.
 *
 * In core a tree holds each node's committed location and writer
 * transaction, and each leaf's bits. A lazy tree (the bitmap) allocates
 * leaves on first use: NULL is all zeros, bt_ones_leaf all ones, so a
 * fresh or fully hydrated 16 TiB image needs no leaf memory. Loading reads
 * and verifies every reachable node; packing builds a node's block for the
 * transaction manager to write. Internal to the metadata module.
 */
#ifndef CLONEFS_MD_BITTREE_H
#define CLONEFS_MD_BITTREE_H

#include "md_block.h"

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#define LEAF_WORDS	MD_LEAF_WORDS
#define LEAF_BITS	MD_LEAF_BITS
#define FANOUT		MD_FANOUT
#define MAX_LEVELS	MD_MAX_LEVELS
#define PTR_ZEROS	MD_PTR_ZEROS
#define PTR_ONES	MD_PTR_ONES

struct md_tree {
	int kind;			/* enum md_tree_id */
	bool lazy;			/* leaves allocated on demand */
	uint64_t nbits, nleaves;
	unsigned levels;		/* index levels above the leaves */
	uint64_t count[MAX_LEVELS + 1];	/* nodes per level; count[levels] == 1 */
	uint64_t *loc[MAX_LEVELS + 1];	/* committed block of each node, or 0/1 */
	uint64_t *txid[MAX_LEVELS + 1];	/* the transaction that wrote it (0: sentinel) */
	uint64_t **leaf;		/* in-core bits of each leaf */
	uint64_t *words;		/* backing store when !lazy */
};

/* A leaf of all ones, shared by every lazy tree; never written to. */
extern uint64_t bt_ones_leaf[LEAF_WORDS];

/* Bit @b of a plain bitmap of words. */
static inline bool test_bit(const uint64_t *map, uint64_t b)
{
	return map[b / 64] >> (b % 64) & 1;
}

static inline void set_bit(uint64_t *map, uint64_t b)
{
	map[b / 64] |= 1ULL << (b % 64);
}

static inline void clear_bit(uint64_t *map, uint64_t b)
{
	map[b / 64] &= ~(1ULL << (b % 64));
}

/* A tree of @nbits bits, all zero, at no location. -EINVAL too deep, -ENOMEM. */
int bt_init(struct md_tree *t, int kind, uint64_t nbits);
void bt_free(struct md_tree *t);
/* The root's location (a block, or PTR_ZEROS/PTR_ONES). */
uint64_t *bt_root(struct md_tree *t);
/* Nodes in a full tree of @nbits bits (0 if too deep). */
uint64_t bt_nodes(uint64_t nbits);
/* Bits set in a leaf (read atomically: other threads may be setting bits). */
uint64_t bt_popcount_leaf(const uint64_t *w);

/*
 * Loading a tree from META: every reachable node is read, verified
 * (md_block.h) and counted in @refs; bits past the end must be zero.
 */
struct bt_loader {
	int fd;
	uint32_t version;		/* of the superblock: 1 has no entry txids */
	uint64_t nr_blocks, txid;
	uint16_t *leaf_pop;		/* bitmap only: bits per leaf, or NULL */
	uint8_t *refs;			/* references to each block */
	uint8_t buf[MAX_LEVELS + 1][BS];
	uint64_t bits;			/* bits set in the tree */
	char *err;
	size_t errlen;
};
/* Loads @t from its root @ptr, written by transaction @want (0: unknown). */
int bt_load(struct bt_loader *ld, struct md_tree *t, uint64_t ptr, uint64_t want);

/* Packs the leaf @w into block @b (header left for the writer). */
void bt_pack_leaf(uint8_t *b, const uint64_t *w);
/*
 * Packs index node (@level, @idx) in the version 2 layout; returns
 * PTR_ZEROS/PTR_ONES if all children are that sentinel, else 2.
 */
uint64_t bt_pack_index(uint8_t *b, const struct md_tree *t, unsigned level, uint64_t idx);
/*
 * The level-@l nodes to rewrite: the parents of the (sorted) nodes @cur,
 * and with @upgrade every real node of the level, since version 1 index
 * blocks lack the children's transaction ids.
 */
void bt_parents_of(const struct md_tree *t, unsigned l, GArray *cur, GArray *next,
		   bool upgrade);

#endif
