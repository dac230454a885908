/*
 * md_tm.h - the space map and the transaction manager: copy-on-write over
 * META's blocks, as dm's transaction manager over its space map.
 *
 * A transaction allocates free blocks for every node it changes and
 * releases the ones they replace; released blocks stay busy until the
 * transaction's superblock is durable (tm_commit_done), so a crash leaves
 * either the old or the new trees intact. The space map is itself a bit
 * tree (1 = block in use): changing one of its bits moves that leaf, and
 * so its parent, and so on, until the chain settles (sm_move). Every
 * location changed in a transaction is logged, so tm_rollback() puts the
 * committed state back exactly.
 *
 * Order of a commit (the caller, metadata.c, drives it):
 *   tm_alloc/tm_write/tm_release/tm_set_node   the changed nodes of its trees
 *   tm_write_space_map                         the space-map nodes moved
 *   bio_flush, superblock (tm_write), bio_flush
 *   tm_commit_done, or tm_rollback on any error
 * A journal (issue 23) belongs here: between the trees and the superblock.
 *
 * Locking: the caller's (metadata.c's commit_lock). Internal to the
 * metadata module.
 */
#ifndef CLONEFS_MD_TM_H
#define CLONEFS_MD_TM_H

#include "md_bittree.h"

#include <glib.h>

struct md_tm {
	int fd;
	uint64_t nr_blocks;
	uint64_t txid;			/* the committed transaction (atomic) */
	struct md_tree sm;		/* the space map, as this transaction has it */
	uint64_t *busy;			/* committed-live or allocated this transaction */
	uint64_t used, committed_used;
	uint64_t hint;			/* where the next search for a free block starts */
	uint64_t limit;			/* test hook: allocate below this (0: no limit) */
	uint64_t blocks_written;	/* atomic */

	/* the transaction being written */
	GArray *undo;			/* struct tm_undo, in order */
	GArray *allocated, *freed;	/* block numbers */
	GArray *moved;			/* struct tm_node: space-map nodes to write */
	uint8_t *sm_moved[MAX_LEVELS + 1];
	uint8_t *buf;
};

/* A space map of @nr_blocks blocks, all free; the fd is set by the caller. */
int tm_init(struct md_tm *tm, uint64_t nr_blocks);
void tm_free(struct md_tm *tm);

/*
 * META size for a bitmap of @nbits bits: two superblocks, room for two full
 * copies of both trees (a commit may rewrite everything while the old copy
 * is live) and some slack. Only for bitmaps bt_nodes() can build.
 */
uint64_t tm_blocks_needed(uint64_t nbits);

/* Loads the committed space map (root @root written by @root_txid). */
int tm_load(struct md_tm *tm, struct bt_loader *ld, uint64_t root, uint64_t root_txid);
/*
 * Every reachable block (@refs, from loading) must be marked used, else the
 * allocator could hand it out again. @leaks: an unreachable used block is
 * an error too (md_check), else only a leak.
 */
int tm_check_refs(struct md_tm *tm, const uint8_t *refs, bool leaks, char *err, size_t len);

/* Marks block @b used or free in the space map of this transaction. */
int tm_mark(struct md_tm *tm, uint64_t b, bool used);
/* A free block for this transaction: -ENOSPC when there is none. */
int tm_alloc(struct md_tm *tm, uint64_t *out);
/* Allocates @n contiguous blocks (the journal): the first in @start. -ENOSPC. */
int tm_alloc_run(struct md_tm *tm, uint64_t n, uint64_t *start);
/* @b is no longer referenced by the new trees; it stays busy until commit. */
int tm_release(struct md_tm *tm, uint64_t b);
/* Node (@level, @idx) of @t now lives at @v (a block this transaction wrote, or 0/1). */
void tm_set_node(struct md_tm *tm, struct md_tree *t, unsigned level, uint64_t idx, uint64_t v);
/* Seals @b as a node of the next transaction and writes it at block @nr. */
int tm_write(struct md_tm *tm, uint64_t nr, uint8_t *b, uint32_t kind, unsigned tree,
	     unsigned level, uint64_t idx);

/*
 * Moves every real space-map node at level @from_level and above written at
 * least @age transactions ago: (1, 0) every index node (version 1 -> 2, for
 * child txids), (0, age) the old ones (the refresh).
 */
int tm_move_space_map(struct md_tm *tm, unsigned from_level, uint64_t age);
/* Writes the space-map nodes moved in this transaction (all allocation done). */
int tm_write_space_map(struct md_tm *tm);

/* The transaction failed: locations and space map back as at the last commit. */
void tm_rollback(struct md_tm *tm);
/* The new superblock is durable: released blocks become free; txid + 1. */
void tm_commit_done(struct md_tm *tm);

#endif
