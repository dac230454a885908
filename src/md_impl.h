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
	bool refreshed;			/* a commit since open rewrote old nodes */
	uint64_t committed_hydrated;	/* regions hydrated in the committed state */
	uint64_t next_hydrated;		/* ... in the transaction being written */
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
};

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
/* Writes the frozen set, swaps superblocks (commit_lock held). */
int md_commit_locked(struct md *md);

/* md_open.c */
/* Opens META from @fd (-1: it does not exist). Takes ownership of @fd. */
int md_open_meta(int fd, const struct opener *o, struct md **out, char *err, size_t len);
/* META opened for reading, or reading and writing; @may_miss: -1 if missing. */
int md_open_path(const char *path, bool readonly, bool may_miss, int *fd,
		 char *err, size_t len);
/* Reads and decodes both superblock slots. */
int md_read_slots(int fd, struct md_sb *s, char *err, size_t len);

#endif
