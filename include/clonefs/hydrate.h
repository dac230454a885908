/*
 * hydrate.h - copying regions from SOURCE to DEST.
 *
 * Owns the region locks (one copy or first write per region at a time) and
 * the background workers that hydrate the remaining regions in ascending
 * order, batched and throttled (spec 3.x). The clone policy calls
 * hydrate_lock/hydrate_copy for writes that must hydrate a region first.
 */
#ifndef CLONEFS_HYDRATE_H
#define CLONEFS_HYDRATE_H

#include <stdbool.h>
#include <stdint.h>

#include "clonefs/metadata.h"
#include "clonefs/options.h"
#include "clonefs/profile.h"

struct hydrate;
struct nbd_source;

/* hydrate_new tags the three SOURCE fds BIO_SOURCE (blockio.h), so that a
 * read finding SOURCE's end fails; whoever closes them bio_forget()s them. */
struct hydrate_target {
	int src_fd;	/* SOURCE without readahead: reads that end at a hole */
	int stream_fd;	/* SOURCE with it: background copies, in order */
	int write_fd;	/* SOURCE with it: writes' copies */
	int dest_fd;
	struct md *md;
	uint64_t image_size;	/* fixed at mount: SOURCE may not shrink below */
	uint32_t region_size;
	uint64_t nr_regions;
	struct nbd_source *nbd;	/* an NBD SOURCE (the fds are -1), or NULL */
};

struct hydrate *hydrate_new(const struct hydrate_target *t,
			    const struct clone_options *o);
/* Start the background workers (after any fork). */
int hydrate_start(struct hydrate *h);
/*
 * Stop the workers, waiting for copies in flight. Idempotent, and fine on
 * an engine never started. Between hydrate_stop and hydrate_free, for the
 * final commit: hydrate_kick and hydrate_queue do nothing, hydrate_get_stats
 * and the setters work, hydrate_lock/unlock/copy/copy_write work without
 * workers (nothing else takes locks then).
 */
void hydrate_stop(struct hydrate *h);
/* Stops first if hydrate_stop was not called. */
void hydrate_free(struct hydrate *h);

/*
 * Region locks on [first, first + n), taken all at once when all are free
 * (so a holder never waits for more: no lock order to keep). A lock costs
 * O(1) memory whatever @n (spec 2.10). hydrate_unlock names a range exactly
 * as it was locked, not a part of it.
 */
void hydrate_lock(struct hydrate *h, uint64_t first, uint64_t n);
void hydrate_unlock(struct hydrate *h, uint64_t first, uint64_t n);

/*
 * Copy regions [first, first + n) from SOURCE to DEST; the caller holds
 * their locks. Sparse aware: holes and zero blocks become holes in DEST.
 * Does not mark the regions hydrated. -EIO if SOURCE is now shorter than
 * the image covers there (spec 1.4). Failures count in copy_errors.
 */
int hydrate_copy(struct hydrate *h, uint64_t first, uint64_t n);
/*
 * A read of the image failed with @ret reading SOURCE at [off, off + len)
 * (spec 1.4: it shrank, an I/O error, the server): counted in read_errors
 * and said in last_error, like a copy's failure, without the back-off.
 */
void hydrate_read_failed(struct hydrate *h, int ret, uint64_t off, uint64_t len);
/*
 * Hydrate @region, which the caller holds locked, with [off, off + len) of
 * it replaced by @data: SOURCE's bytes and the write's in one DEST write
 * (a region above 256 KiB, or SOURCE and DEST that reflink: the copy, then
 * the write). Does not mark it.
 * -EIO, counted, as hydrate_copy's, if SOURCE no longer covers the region.
 */
int hydrate_copy_write(struct hydrate *h, uint64_t region, const void *data,
		       uint64_t off, size_t len);

/* A foreground request arrived: background copies yield for a moment. */
void hydrate_foreground(struct hydrate *h);
/*
 * Around a foreground flush of DEST (fdatasync for an fsync, a sync write,
 * a commit): while one waits, background copies pause between chunks (for
 * a bounded time: progress, never zero) and batches shrink to a region.
 * Copies write DEST out behind themselves anyway, so a flush waits for at
 * most a few MiB of theirs (spec 3.8). Pairs; any thread; they nest.
 */
void hydrate_flush_begin(struct hydrate *h);
void hydrate_flush_end(struct hydrate *h);

/* Copy on read: ask for @region to be hydrated before the cursor's. */
void hydrate_queue(struct hydrate *h, uint64_t region);

/*
 * Reads as hints (spec 3.9): a read found regions [first, first + n)
 * unhydrated. They are queued before the prefetch list and the sweep
 * (behind copy-on-read requests), paced as the sweep while users are busy.
 * A read that continues a sequential stream (per stream, as the kernel's
 * readahead) also puts a read-ahead window after it at the head of the
 * queue, copied at once, and holds the sweep back for a moment; the window
 * grows while the stream stays sequential. Never waits for a copy; a
 * region is still copied once only. No-op while read_hints is off.
 */
void hydrate_hint(struct hydrate *h, uint64_t first, uint64_t n);
void hydrate_set_read_hints(struct hydrate *h, bool on);
/*
 * Prefetch: copy the regions of these runs first, in their order (after
 * hinted ones), then go on with the ascending sweep. Replaces any earlier
 * list; NULL/0 drops it. Regions already hydrated are skipped. The runs
 * are copied; they must lie inside the image.
 */
void hydrate_set_prefetch(struct hydrate *h, const struct profile_run *runs,
			  uint64_t nr);
/* Test hook: @fn(@arg, first, n) after each background batch copied and
 * marked, from the worker, in the order they finish. */
void hydrate_on_batch(struct hydrate *h,
		      void (*fn)(void *arg, uint64_t first, uint64_t n), void *arg);

void hydrate_set_enabled(struct hydrate *h, bool on);
void hydrate_set_threshold(struct hydrate *h, uint32_t n);
void hydrate_set_batch_size(struct hydrate *h, uint32_t n);
void hydrate_set_rate(struct hydrate *h, uint64_t bytes_per_s);
void hydrate_set_copy_on_read(struct hydrate *h, bool on);
bool hydrate_copy_on_read(struct hydrate *h);
/* The scheduler calls @fn(@arg) when it finds every region hydrated, once
 * (again after hydrate_kick), and within a second of the last bit. Set it
 * before hydrate_start. */
void hydrate_on_complete(struct hydrate *h, void (*fn)(void *arg), void *arg);
/* Wake the workers: metadata changed under them (e.g. rolled back). */
void hydrate_kick(struct hydrate *h);

void hydrate_get_stats(struct hydrate *h, struct hydrate_stats *st);

/* The rate limit's pause after @bytes at @rate bytes/s, in microseconds,
 * saturating at INT64_MAX (exposed for tests). */
int64_t hydrate_rate_delay_us(uint64_t bytes, uint64_t rate);

#endif
