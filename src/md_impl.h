/*
 * md_impl.h - struct md and what metadata.c, md_open.c and md_tools.c share.
 * Not for other modules: they see include/clonefs/metadata.h only.
 */
#ifndef CLONEFS_MD_IMPL_H
#define CLONEFS_MD_IMPL_H

#include "clonefs/metadata.h"
#include "md_tm.h"

#include <glib.h>

_Static_assert(MD_BLOCK_SIZE == MD_FMT_BLOCK_SIZE, "metadata.h and format.h agree");

struct md {
	GMutex commit_lock;
	GMutex lock;
	bool readonly;
	int mode;			/* enum md_mode, atomic */
	char errbuf[256];

	/* the committed superblock */
	struct md_sb slots[2];
	uint8_t uuid[16];
	struct md_geometry geo;
	uint32_t flags;
	uint32_t version;		/* of the committed trees: 1 until upgraded */
	int slot;
	uint64_t committed_hydrated;	/* regions hydrated in the committed state */
	uint16_t *leaf_pop;		/* committed bits of each bitmap leaf */

	struct md_tree bm;		/* the hydration bitmap */
	struct md_tm tm;		/* META's blocks, the space map, the transaction */

	/* live bitmap (lock) */
	uint8_t *dirty;
	GArray *dirty_list;
	uint64_t nr_hydrated;		/* atomic */
	uint32_t new_flags;		/* superblock flags set since pre_commit */

	/* frozen set (commit_lock) */
	uint64_t **frozen;
	GArray *frozen_list;
	unsigned nr_frozen;		/* atomic, for md_changed */
	uint32_t frozen_flags;		/* atomic, for md_changed */

	uint8_t *buf;			/* one block, for commits (commit_lock) */
	uint64_t next_refresh;		/* the transaction of the next refresh */

	/*
	 * The journal (md_journal.c). Ranges marked since pre_commit (lock)
	 * become the frozen ranges, the next record (commit_lock); a record
	 * makes them durable; a checkpoint (md_commit_locked) writes the
	 * frozen leaves into the trees and empties the journal.
	 */
	uint64_t j_start;		/* first block; j_blocks 0: no journal */
	uint32_t j_blocks;
	uint32_t j_head;		/* slot of the first record after the trees */
	uint64_t j_txid;		/* ... and its transaction */
	uint32_t j_count;		/* records since the checkpoint */
	uint8_t j_last[32];		/* the last one's checksum */
	bool j_tried;			/* allocation tried (no room in an old META) */
	GArray *pending;		/* struct md_range, marked since pre_commit (lock) */
	GArray *jranges;		/* struct md_range, frozen (commit_lock) */
	bool pending_overflow;		/* pending lost ranges: too many (lock) */
	bool overflow;			/* so the frozen ranges did (commit_lock) */
	bool unsynced;			/* frozen changes not yet durable (atomic) */
};

struct md_range { uint64_t start, count; };

/* How md_open_fd, md_open, md_open_existing and the tools open META. */
struct opener {
	const char *path;
	bool have_geo;			/* a mount: geometry known (else META's) */
	struct md_geometry geo;
	uint64_t image_size;		/* bytes; 0: geo.region_count is exact */
	bool rs_explicit;		/* geo.region_size must match META's */
	bool readonly;
	bool tool;			/* never format; open even if needs_check */
	bool check;			/* md_check: report leaked blocks too */
	bool lock;			/* flock META first (md_open_fd) */
	bool nofollow;
	int slot;			/* -1: the newest valid slot, else this one */
};

/* metadata.c */
int md_new(const struct md_geometry *geo, uint64_t nr_blocks, struct md **out);
/* Frees @md and closes its fd (if any) without committing. */
void md_free(struct md *md);
/* Writes the current roots into superblock @slot; version 1 trees get version 1. */
int md_write_super(struct md *md, int slot, uint32_t flags, uint64_t hydrated);
/* md_checkpoint.c: writes the frozen set, swaps superblocks (commit_lock held). */
int md_commit_locked(struct md *md);

/* md_journal.c */
/* A record can take the frozen ranges, and the ring has a free slot. */
bool mj_has_room(struct md *md);
/* Writes the frozen ranges as the next record and flushes META. */
int mj_append(struct md *md, uint32_t flags, uint64_t hydrated);
/*
 * Applies the records after the head to the live bitmap and freezes them
 * (open, and again after a rollback: lock held if others run). Sets
 * j_count. 0, or -EILSEQ / the read's error with the reason in @err.
 */
int mj_replay(struct md *md, char *err, size_t len);
/* Record @k after the head, as checked by mj_replay, into @b; @prev: the
 * checksum of record @k - 1 in, this one's out. */
int mj_read(struct md *md, uint32_t k, uint8_t prev[32], struct md_journal_disk *b,
	    char *err, size_t len);

/* metadata.c, for md_journal.c (lock held) */
void md_mark_range(struct md *md, uint64_t start, uint64_t n);
void md_freeze(struct md *md);
/* metadata.c, for md_checkpoint.c (commit_lock held) */
/* Regions hydrated in the frozen state. */
uint64_t md_frozen_hydrated(struct md *md);
/* Drops the frozen set (written by a checkpoint, or rolled back). */
void md_free_frozen(struct md *md);

/* md_open.c */
/* Opens META from @fd (-1: it does not exist). Takes ownership of @fd. */
int md_open_meta(int fd, const struct opener *o, struct md **out, char *err, size_t len);
/* META opened for reading, or reading and writing; @may_miss: -1 if missing. */
int md_open_path(const char *path, bool readonly, bool may_miss, int *fd,
		 char *err, size_t len);
/* Reads and decodes both superblock slots. */
int md_read_slots(int fd, struct md_sb *s, char *err, size_t len);

#endif
