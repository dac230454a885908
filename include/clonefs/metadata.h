/*
 * metadata.h - the persistent clone metadata in META: which regions are
 * hydrated, and which metadata blocks are in use.
 *
 * Modelled on dm-clone-metadata.h: a small set of verbs; the I/O policy never
 * sees blocks on disk. The in-core bitmap is the truth for the running clone;
 * a commit makes a frozen snapshot of it durable:
 *
 *   md_set_region_hydrated()   in core only, cheap, any thread
 *   md_pre_commit()            freeze exactly the changes made so far
 *   (caller flushes DEST)      so the data behind the frozen bits is durable
 *   md_commit()                make the frozen changes durable (a journal record)
 *   md_checkpoint()            fold the journal into the trees, swap the superblock
 *
 * Changes made after md_pre_commit() belong to the next transaction (spec 4.5).
 * All functions are thread safe. Errors are negative errno values.
 */
#ifndef CLONEFS_METADATA_H
#define CLONEFS_METADATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "clonefs/status.h"

#define MD_BLOCK_SIZE 4096u

struct md;

struct md_geometry {
	uint32_t region_size;  /* bytes, power of two, 4 KiB .. 1 GiB */
	uint64_t region_count; /* regions in the image (last may be partial) */
};

struct md_open_args {
	const char *path;          /* META's path: for messages, and where a fresh
	                              format is renamed to */
	int fd;                    /* META as opened by the caller (O_RDWR, or
	                              O_RDONLY when readonly); md owns it from here
	                              and closes it, also on failure. -1: META does
	                              not exist and md creates it atomically */
	uint64_t image_size;       /* bytes; region_count = ceil(image_size / region_size) */
	uint32_t region_size;      /* for a fresh META, and checked against an existing one */
	bool region_size_explicit; /* false: an existing META's region size wins (spec 1.3) */
	bool readonly;
	bool nofollow;             /* files md creates are opened with O_NOFOLLOW */
};

/*
 * Open META. md first takes an exclusive flock(2) on @a->fd, waiting up to
 * 30 s (then -EBUSY, "in use by another clonefs daemon"). A missing, empty
 * or all-zero META (a block device: both superblock slots zero) is formatted
 * fresh, atomically: built in "<path>.new", flushed and renamed into place
 * (a block device is formatted in place, its superblock written last).
 * Otherwise META is validated against the geometry. On any problem returns
 * the negative errno of the real cause and writes one line naming it
 * (without the path; the caller adds it) into @err. md_geometry() then gives
 * the geometry in force.
 */
int md_open_fd(const struct md_open_args *a, struct md **out, char *err, size_t errlen);

/*
 * A path-based open for the given geometry (region size always explicit),
 * for tests and tools that open one META several times at once: like
 * md_open_fd, but opens @path itself and holds no lock.
 */
int md_open(const char *path, const struct md_geometry *geo, bool readonly,
	    struct md **out, char *err, size_t errlen);

/*
 * Open an existing META taking the geometry from its superblock (for tools).
 */
int md_open_existing(const char *path, bool readonly, struct md **out,
		     char *err, size_t errlen);

/* Commit pending changes (if writable and any are pending), checkpoint, free. */
int md_close(struct md *md);

void md_geometry(struct md *md, struct md_geometry *geo);

bool md_region_hydrated(struct md *md, uint64_t region);
/* True when all of [start, start + n) are hydrated. */
bool md_range_hydrated(struct md *md, uint64_t start, uint64_t n);
/* First unhydrated region >= @from, or region_count if none. */
uint64_t md_find_next_unhydrated(struct md *md, uint64_t from);
/* First hydrated region >= @from, or region_count if none. */
uint64_t md_find_next_hydrated(struct md *md, uint64_t from);
uint64_t md_nr_hydrated(struct md *md);
bool md_all_hydrated(struct md *md);

/* Mark regions hydrated in core. -EIO (RO/FAIL mode). */
int md_set_region_hydrated(struct md *md, uint64_t region);
int md_set_range_hydrated(struct md *md, uint64_t start, uint64_t n);

/* True when there are in-core changes not yet committed. */
bool md_changed(struct md *md);

/*
 * Two-phase commit. md_pre_commit() freezes the changes made so far; the
 * caller then flushes DEST; md_commit() makes the frozen changes durable:
 * one journal record and one META flush (a checkpoint instead when the
 * journal cannot take them). md_checkpoint() writes what the journal holds
 * into the trees: changed nodes to free blocks, a flush, the other
 * superblock slot, a flush (call it now and then, and before unmount; it
 * does nothing between md_pre_commit and md_commit). Only one commit runs
 * at a time (callers serialize; md also locks). On failure, md rolls back
 * to the last durable state and enters RO (or FAIL).
 */
int md_pre_commit(struct md *md);
int md_commit(struct md *md);
int md_checkpoint(struct md *md);
/*
 * The caller could not complete the frozen transaction (the DEST flush
 * between pre_commit and commit failed): treat it as a failed commit, i.e.
 * roll back, go RO and record needs_check (spec 4.6). Returns @err.
 */
int md_fail_transaction(struct md *md, int err);
/* Drop uncommitted changes: back to the last committed state. */
int md_abort(struct md *md);

enum md_mode md_mode(struct md *md);
bool md_needs_check(struct md *md);
void md_space(struct md *md, uint64_t *used_blocks, uint64_t *total_blocks);
uint64_t md_transaction_id(struct md *md);

/* META's uuid, set when it was formatted. */
void md_uuid(struct md *md, uint8_t uuid[16]);
/*
 * DEST identity (spec 1.5): the caller stores META's uuid on DEST and, once
 * that is durable, sets dest_tagged. md_set_dest_tagged() is in core: it
 * makes md_changed() true and the next commit writes it (a commit with only
 * this change writes just a superblock). -EROFS read-only, -EIO RO/FAIL.
 */
bool md_dest_tagged(struct md *md);
int md_set_dest_tagged(struct md *md);

/*
 * Offline tools. md_check: 0 if clean, else negative errno and the first
 * problem in @err (e.g. "bad checksum at block 17"). md_dump: JSON to @out.
 */
int md_check(const char *path, char *err, size_t errlen);
int md_dump(const char *path, FILE *out, char *err, size_t errlen);

/*
 * md_check, then repair what can be repaired without guessing ("clonefs
 * check" runs this so the next mount works). Returns
 *   0                    clean, nothing written (@err is "")
 *   MD_CHECK_REPAIRED    nothing lost: a damaged older superblock slot was
 *                        rewritten and/or needs_check cleared (@err says which)
 *   MD_CHECK_FELL_BACK   the newest transaction was damaged (its superblock or
 *                        its trees); META now holds the older one. @err says
 *                        so, with the number of regions hydrated in the lost
 *                        transaction that now read SOURCE again
 *   < 0                  damaged and not repaired (@err: the first problem)
 */
#define MD_CHECK_REPAIRED	1
#define MD_CHECK_FELL_BACK	2
int md_check_repair(const char *path, char *err, size_t errlen);

/* The reason for the last failed commit or abort ("" if none). */
void md_last_error(struct md *md, char *buf, size_t len);

/* META blocks written since open (superblocks included). */
uint64_t md_blocks_written(struct md *md);

/*
 * Test hooks. md_test_limit_blocks: pretend META has only @nr_blocks blocks
 * when allocating (0: no limit). (To fail META writes, use blockio's fault
 * injection: bio_fault_set("meta:write:eio...").)
 */
void md_test_limit_blocks(struct md *md, uint64_t nr_blocks);
/* The journal ring METAs get from now on (<= MD_JOURNAL_BLOCKS; 0: none). */
void md_test_journal_blocks(uint32_t n);
/* How long md_open_fd waits for the lock (0: the default 30 s). */
void md_test_lock_wait(unsigned ms);

#endif
