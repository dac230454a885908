/*
 * clone.h - the clone policy: what a read, a write, a discard and a flush of
 * the virtual image do, region by region (spec 1.x, 2.x).
 *
 * Like dm-clone-target.c, this never touches metadata blocks: it asks the
 * metadata module which regions are hydrated and tells it which became so.
 */
#ifndef CLONEFS_CLONE_H
#define CLONEFS_CLONE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "clonefs/options.h"
#include "clonefs/source.h"
#include "clonefs/status.h"

struct clone;

/*
 * Validate and open SOURCE, DEST and META (spec 1.2-1.4). On failure nothing
 * is modified and @err holds one line naming the file and the problem.
 * Starts no threads, so the caller may fork afterwards.
 */
int clone_open(const char *source, const char *dest, const char *meta,
	       const struct clone_options *o, struct clone **out, char *err,
	       size_t errlen);
/* Start background hydration and the periodic commit. */
int clone_start(struct clone *c);
/* Stop the threads, commit, close. Returns the final commit's result. */
int clone_close(struct clone *c);

uint64_t clone_size(struct clone *c);
/* The image's owner and permission bits (spec 1.6). */
void clone_image_owner(struct clone *c, uid_t *uid, gid_t *gid, mode_t *mode);
bool clone_readonly(struct clone *c);

/*
 * Where the bytes of [off, off + len) live: calls @fn for each run that
 * lives in one file (DEST if hydrated, SOURCE if not), which @fn may then
 * read itself (splice); a run blockio says cannot be read (an injected
 * fault, a SOURCE that shrank) fails the whole call first. @len is clipped
 * at the image end; returns the clipped length or a negative errno.
 */
typedef int (*clone_extent_fn)(void *arg, int fd, uint64_t off, size_t len);
ssize_t clone_map_read(struct clone *c, uint64_t off, size_t len,
		       clone_extent_fn fn, void *arg);

ssize_t clone_read(struct clone *c, void *buf, size_t len, uint64_t off);
/* SOURCE is an NBD export: it has no fd, so clone_map_read fails with
 * -EOPNOTSUPP where it would name SOURCE; read with clone_read. */
bool clone_source_remote(struct clone *c);
ssize_t clone_write(struct clone *c, const void *buf, size_t len, uint64_t off);
/* Make [off, off + len) read zeros (spec 2.6). @punch: a discard (holes in
 * DEST unless no_discard_passdown); otherwise ZERO_RANGE. */
int clone_zero(struct clone *c, uint64_t off, uint64_t len, bool punch);
/*
 * fsync: freeze, flush DEST, commit (spec 2.5). @seen (may be NULL) is an
 * open file's error mark, from clone_error_mark() at its open: when an error
 * lost acknowledged data since, this fsync fails with -EIO once for that file
 * (spec 2.5b, like Linux's errseq) and the mark moves on.
 */
int clone_fsync(struct clone *c, uint64_t *seen);
/* How many errors have lost acknowledged data since the clone opened. */
uint64_t clone_error_mark(struct clone *c);
/* Commit pending metadata and fold the journal into the trees (before a
 * status report, and by the periodic timer). */
int clone_commit(struct clone *c);

struct clone_status {
	enum md_mode mode;
	uint32_t meta_block_size;    /* bytes */
	uint64_t meta_used, meta_total; /* in blocks of that size */
	uint32_t region_size;
	uint64_t nr_regions, nr_hydrated;
	uint64_t image_size, bytes_hydrated;
	bool ro, discard_passdown;
	uint64_t lost_writes; /* errors that lost acknowledged data */
	struct hydrate_stats hy;
	bool remote;                  /* SOURCE is an NBD export: */
	struct nbd_source_stats src;  /* its connection and counts */
};
/* Every region hydrated (in core; durable after the next commit). */
bool clone_all_hydrated(struct clone *c);
/* DEST's fd once "every region hydrated" is committed, metadata is healthy
 * and DEST is a file of the image's size, else -1 (commits first if need
 * be). From then on the image is DEST byte for byte, for good: no operation
 * unhydrates (the front end passes DEST to the kernel, spec 2.9). */
int clone_hydrated_dest(struct clone *c);
void clone_get_status(struct clone *c, struct clone_status *st);

/* What a running clone lets one change (control messages, spec 5.2). */
enum clone_knob {
	CLONE_HYDRATION,            /* background hydration on (1) or off (0) */
	CLONE_HYDRATION_THRESHOLD,  /* regions in flight at most */
	CLONE_HYDRATION_BATCH_SIZE, /* contiguous regions per copy */
	CLONE_HYDRATION_RATE,       /* bytes/s, 0 = unlimited */
	CLONE_COPY_ON_READ,         /* 1 or 0 */
	CLONE_READ_HINTS,           /* 1 or 0 */
};
void clone_tune(struct clone *c, enum clone_knob knob, uint64_t value);
/* Call @fn(@arg) once every region is hydrated (within a second of the
 * last bit; again after a rollback un-hydrates some). Before clone_start. */
void clone_on_complete(struct clone *c, void (*fn)(void *arg), void *arg);
void clone_set_discard_passdown(struct clone *c, bool on);

/*
 * Access profiles (spec 3.9). clone_prefetch: hydrate the regions of the
 * profile file @path first, in its order (replacing any earlier one); a
 * corrupt profile or one of another geometry is refused, -EINVAL with one
 * line in @err naming the file. clone_profile: the regions read or written
 * since the clone opened, in first-touch order, encoded as a profile file
 * (g_malloc'd, *@len bytes).
 */
int clone_prefetch(struct clone *c, const char *path, char *err, size_t errlen);
void *clone_profile(struct clone *c, size_t *len);

#endif
