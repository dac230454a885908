/*
 * format.h - META's on-disk layout (docs/format.md describes it in words).
 *
 * One packed struct per kind of block, as dm's struct superblock_disk: the
 * metadata code, the fuzzers and the document all name these. Every integer
 * on disk is little-endian; a field of type md_le16/32/64 is read with
 * le16_to_cpu() (etc.) and written with cpu_to_le16(). The structs are
 * packed (alignment 1), so they may overlay any byte buffer.
 *
 * Every block in use is 4 KiB and starts with struct md_block_header: a
 * SHA-256 of bytes 32..4095 (so it covers the block's own number, and a
 * misplaced copy fails the check), then what the block is and who wrote it.
 * Blocks 0 and 1 are the two superblock slots; every other block in use is
 * a node of a bit tree (the hydration bitmap or the space map): a leaf of
 * MD_LEAF_BITS bits, or an index block of MD_FANOUT entries, or a block of
 * the journal (version 3): a ring of records, each the regions one flush
 * made durable since the trees were last written (a checkpoint).
 *
 * The access profile file (docs/profile.md) is here too, at the end: the
 * same little-endian types, so no other file decodes bytes by offset.
 */
#ifndef CLONEFS_FORMAT_H
#define CLONEFS_FORMAT_H

#include <endian.h>
#include <stddef.h>
#include <stdint.h>

#define MD_FMT_BLOCK_SIZE	4096u
#define MD_HEADER_SIZE		64u
#define MD_CSUM_SIZE		32u	/* the checksum covers bytes 32..4095 */

#define MD_KIND_SUPER		0x52505553u	/* "SUPR" */
#define MD_KIND_INDEX		0x58444e49u	/* "INDX" */
#define MD_KIND_LEAF		0x4641454cu	/* "LEAF" */
#define MD_KIND_JOURNAL		0x4c4e524au	/* "JRNL" */

enum md_tree_id { MD_TREE_BITMAP = 0, MD_TREE_SPACE = 1 };

#define MD_SB_MAGIC		"CLONEFSM"
#define MD_SB_VERSION		3u	/* written; versions 1 and 2 are read and upgraded */
#define MD_SB_NEEDS_CHECK	1u
#define MD_SB_DEST_TAGGED	2u
#define MD_SB_KNOWN_FLAGS	(MD_SB_NEEDS_CHECK | MD_SB_DEST_TAGGED)

/* Payload of a leaf or an index block: 504 little-endian u64 words. */
#define MD_LEAF_WORDS	((MD_FMT_BLOCK_SIZE - MD_HEADER_SIZE) / 8)	/* 504 */
#define MD_LEAF_BITS	((uint64_t)MD_LEAF_WORDS * 64)			/* 32256 */
#define MD_FANOUT	MD_LEAF_WORDS		/* entries per index block */
#define MD_MAX_LEVELS	8

/*
 * Tree pointers 0 and 1 can never be tree blocks (they are the superblock
 * slots), so they stand for a subtree of all zeros and of all ones.
 */
#define MD_PTR_ZEROS	0
#define MD_PTR_ONES	1

/*
 * A version-2 index entry: the child's block number in the low 32 bits and
 * the low 32 bits of the transaction that wrote the child in the high 32
 * bits (0 for a sentinel child). Version 1 entries are plain block numbers.
 */
#define MD_ENTRY_MAX_BLOCKS	(1ULL << 32)

typedef uint16_t md_le16;
typedef uint32_t md_le32;
typedef uint64_t md_le64;

static inline uint16_t le16_to_cpu(md_le16 v) { return le16toh(v); }
static inline uint32_t le32_to_cpu(md_le32 v) { return le32toh(v); }
static inline uint64_t le64_to_cpu(md_le64 v) { return le64toh(v); }
static inline md_le16 cpu_to_le16(uint16_t v) { return htole16(v); }
static inline md_le32 cpu_to_le32(uint32_t v) { return htole32(v); }
static inline md_le64 cpu_to_le64(uint64_t v) { return htole64(v); }

struct md_block_header {
	uint8_t csum[32];	/* SHA-256 of bytes 32..4095 */
	md_le32 kind;		/* MD_KIND_* */
	md_le16 tree;		/* enum md_tree_id (0 in superblocks) */
	md_le16 level;		/* 0 for leaves, 1.. for index blocks */
	md_le64 blocknr;	/* where this block was written */
	md_le64 txid;		/* the transaction that wrote it */
	md_le64 index;		/* the node's position in its level; slot for superblocks */
} __attribute__((packed));

struct md_superblock_disk {
	struct md_block_header h;
	char magic[8];		/* MD_SB_MAGIC, not NUL terminated */
	md_le32 version;	/* 1 or 2 */
	md_le32 flags;		/* MD_SB_NEEDS_CHECK | MD_SB_DEST_TAGGED */
	uint8_t uuid[16];
	md_le32 region_size;
	md_le32 reserved;
	md_le64 region_count;
	md_le64 nr_blocks;
	md_le64 bm_root;
	md_le32 bm_levels;
	md_le32 sm_levels;
	md_le64 sm_root;
	md_le64 bm_root_txid;	/* version 2: the transaction of the bitmap root */
	md_le64 sm_root_txid;	/* version 2: ... of the space-map root */
	md_le64 hydrated;	/* version 2: regions hydrated in this state */
	md_le64 journal_start;	/* version 3: the journal's first block (0: none) */
	md_le32 journal_blocks;	/* version 3: its length; records go round */
	md_le32 journal_head;	/* version 3: the slot of the first record after this state */
	md_le64 journal_txid;	/* version 3: that record's transaction */
	uint8_t zero[MD_FMT_BLOCK_SIZE - 192];
} __attribute__((packed));

/* A leaf (bits, bit i of word w is bit 64w + i) or an index block (entries). */
struct md_node_disk {
	struct md_block_header h;
	md_le64 words[MD_LEAF_WORDS];
} __attribute__((packed));

/*
 * A journal record (version 3), one block at journal_start + slot: the
 * header's txid is its transaction, index its slot. Records follow each
 * other slot by slot (wrapping), one transaction each; open applies them
 * from the superblock's journal_head while each is intact and carries the
 * next transaction id and the checksum of the record before it (so a record
 * left from before a crash never follows a newer one), and stops at the
 * first that does not.
 */
struct md_journal_range {
	md_le64 start, count;	/* regions [start, start + count) are hydrated */
} __attribute__((packed));

#define MD_JOURNAL_RANGES	((MD_FMT_BLOCK_SIZE - MD_HEADER_SIZE - 64) / 16)	/* 248 */
#define MD_JOURNAL_BLOCKS	256u	/* the ring a new META gets */

struct md_journal_disk {
	struct md_block_header h;
	uint8_t uuid[16];	/* META's */
	md_le32 nr_ranges;
	md_le32 flags;		/* superblock flags this transaction sets */
	md_le64 hydrated;	/* regions hydrated once it is applied */
	uint8_t prev[32];	/* the previous record's checksum (zeros: the first) */
	struct md_journal_range ranges[MD_JOURNAL_RANGES];
} __attribute__((packed));

_Static_assert(sizeof(struct md_block_header) == MD_HEADER_SIZE, "block header");
_Static_assert(sizeof(struct md_journal_disk) == MD_FMT_BLOCK_SIZE, "journal record");
_Static_assert(offsetof(struct md_superblock_disk, journal_start) == 168, "docs/format.md");
_Static_assert(sizeof(struct md_superblock_disk) == MD_FMT_BLOCK_SIZE, "superblock");
_Static_assert(sizeof(struct md_node_disk) == MD_FMT_BLOCK_SIZE, "node");
_Static_assert(offsetof(struct md_superblock_disk, region_count) == 104, "docs/format.md");
_Static_assert(offsetof(struct md_superblock_disk, sm_root) == 136, "docs/format.md");
_Static_assert(offsetof(struct md_superblock_disk, zero) == 192, "docs/format.md");

/* The version-2 entry for @block written in transaction @txid. */
static inline uint64_t md_entry_pack(uint64_t block, uint64_t txid)
{
	return block | (block > MD_PTR_ONES ? txid << 32 : 0);
}

/*
 * An access profile file (docs/profile.md): this header, nr_runs runs, then
 * a SHA-256 of every byte before it.
 */
struct profile_header_disk {
	char magic[8];		/* "CFSPROF1" */
	md_le32 version;
	md_le32 header_size;	/* sizeof(struct profile_header_disk) */
	md_le32 region_size;
	md_le32 flags;		/* 0 */
	md_le64 nr_regions;
	md_le64 image_size;
	md_le64 nr_runs;
	md_le64 total;		/* regions in all runs */
	md_le64 reserved;	/* 0 */
} __attribute__((packed));

struct profile_run_disk {
	md_le64 first;		/* region number */
	md_le64 n;		/* regions, at least 1 */
} __attribute__((packed));

_Static_assert(sizeof(struct profile_header_disk) == 64, "docs/profile.md");
_Static_assert(sizeof(struct profile_run_disk) == 16, "docs/profile.md");

#endif
