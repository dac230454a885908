/*
 * md_block.h - checksummed META blocks, the lowest metadata layer.
 *
 * Every block in use carries a struct md_block_header (format.h) sealed by
 * a SHA-256. Reading a node verifies that it is intact, sits where it was
 * written and is the node, of the transaction, the pointer to it expects;
 * writing seals it first. Superblocks are decoded into and encoded from a
 * struct md_sb here, so no other layer touches raw superblock bytes.
 * Internal to the metadata module.
 */
#ifndef CLONEFS_MD_BLOCK_H
#define CLONEFS_MD_BLOCK_H

#include "clonefs/errf.h"
#include "clonefs/format.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BS MD_FMT_BLOCK_SIZE

/* What a pointer promises about the block it leads to. */
struct md_want {
	uint32_t kind;		/* MD_KIND_INDEX or MD_KIND_LEAF */
	unsigned tree, level;
	uint64_t idx;		/* position in the level */
	uint64_t max_txid;	/* the superblock's transaction */
	uint64_t txid;		/* version 2: the exact writer (0: unknown) */
};

/* A decoded superblock slot. */
struct md_sb {
	int state;			/* MD_SB_EMPTY, MD_SB_FOREIGN, MD_SB_BAD, MD_SB_VALID */
	char why[96];			/* why not valid */
	uint64_t txid, region_count, nr_blocks, bm_root, sm_root;
	uint64_t bm_root_txid, sm_root_txid, hydrated;
	uint64_t raw_txid;		/* the header's txid, even when MD_SB_BAD */
	uint64_t journal_start, journal_txid;	/* version 3 */
	uint32_t journal_blocks, journal_head;
	uint32_t version, flags, region_size, bm_levels, sm_levels;
	uint8_t uuid[16];
};
enum { MD_SB_EMPTY, MD_SB_FOREIGN, MD_SB_BAD, MD_SB_VALID };

const char *md_tree_name(unsigned tree);

/*
 * Reads block @ptr of a META of @nr_blocks blocks into @b (BS bytes) and
 * checks it is the node @w describes: 0, or -EILSEQ (or the read's error)
 * with the first problem in @err.
 */
/* The block's SHA-256 (its first 32 bytes) matches the rest. */
bool mdb_csum_ok(const void *b);

int mdb_read(int fd, uint64_t nr_blocks, void *b, uint64_t ptr, const struct md_want *w,
	     char *err, size_t len);

/*
 * Fills @b's header as node (@tree, @level, @idx) written by transaction
 * @txid at block @nr, seals it and writes it. 0 or a negative errno.
 */
int mdb_write(int fd, void *b, uint64_t nr, uint32_t kind, unsigned tree, unsigned level,
	      uint64_t idx, uint64_t txid);

/* Decodes superblock slot @slot from @b; never fails (see @s->state). */
void mdb_sb_parse(const void *b, int slot, struct md_sb *s);
/*
 * Encodes @s (version, flags, uuid, geometry, roots; version 2 also the
 * root transactions and hydrated) into @b, header left for mdb_write().
 */
void mdb_sb_pack(void *b, const struct md_sb *s);

#endif
