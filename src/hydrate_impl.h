/*
 * hydrate_impl.h - the hydration engine's state, shared by hydrate.c (the
 * engine: region locks, copies for writes, settings, life cycle) and
 * scheduler.c (which regions to copy next, batching and pacing). Not for
 * other modules: they see hydrate.h.
 */
#ifndef CLONEFS_HYDRATE_IMPL_H
#define CLONEFS_HYDRATE_IMPL_H

#include "clonefs/copier.h"
#include "clonefs/hydrate.h"

#include <glib.h>

#define NR_WORKERS 4
#define COR_QUEUE_MAX 4096
/* Reads as hints: ranges waiting at the head of the queue (the oldest are
 * dropped past this), streams of sequential reads told apart, and the
 * read-ahead window after a read that continues a stream: from
 * HINT_WINDOW_MIN, doubled on each sequential read up to HINT_WINDOW_MAX
 * (bytes; a region at least). While such windows came in the last
 * HINT_HOLD_US, the sweep waits: a boot reading files gets SOURCE to itself
 * and its windows. */
#define HINT_QUEUE_MAX 256
#define HINT_STREAMS 8
#define HINT_WINDOW_MIN (256u << 10)
#define HINT_WINDOW_MAX (2u << 20)
#define HINT_HOLD_US (500 * 1000)
#define BACKOFF_MIN_US (100 * 1000)
#define BACKOFF_MAX_US (30 * 1000 * 1000)
/* Foreground I/O this recent counts as "busy": copies step back. */
#define FOREGROUND_QUIET_US (20 * 1000)
/* While users are busy, a copy that took t is followed by BUSY_REST x t
 * without one: copies then hold SOURCE and DEST a tenth of the time. */
#define BUSY_REST 9
/* While foreground flushes wait, copies stop for at most this long at a
 * time, and at most a region a time is dispatched: progress, never zero. */
#define FLUSH_YIELD_US (20 * 1000)
/* The workers' I/O priority: best effort, the lowest level. Not the idle
 * class: a foreground fdatasync can wait for a copy's data (ext4 orders a
 * transaction's data before its commit), which idle I/O would starve. */
#define IOPRIO_CLASS_BE 2
#define IOPRIO_CLASS_SHIFT 13
#define IOPRIO_WHO_PROCESS 1	/* with who = 0: the calling thread */
#define COPY_IOPRIO (IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT | 7)

/* A stream of sequential reads, for the read-ahead window of hints. */
struct hint_stream {
	uint64_t next;    /* the region after its last read */
	uint64_t window;  /* regions hinted after its next read */
	gint64 used;      /* monotonic us; 0: free */
};

/* Where a batch's regions were picked: FROM_AHEAD a hinted read-ahead
 * window, FROM_READ hinted regions that were read. */
enum batch_from { FROM_SWEEP, FROM_COR, FROM_AHEAD, FROM_READ, FROM_PREFETCH };

/* A hinted range of regions, [first, end). */
struct hint {
	uint64_t first, end;
	bool ahead;           /* a read-ahead window: copied while users are busy */
};

struct hydrate {
	struct hydrate_target t;

	GMutex lock;          /* everything below */
	GCond cond;           /* in_flight or settings changed: the scheduler */
	GCond unlocked;       /* regions unlocked: lock_waiters */
	GTree *locked;        /* locked ranges of regions (struct range) */
	unsigned lock_waiters;
	GQueue cor;           /* copy-on-read requests, regions */
	GQueue hints;         /* struct hint: windows newest first, then reads */
	gint64 hint_hold_until; /* the sweep waits until then (monotonic us) */
	struct hint_stream streams[HINT_STREAMS];
	bool read_hints;      /* atomic too: the read path asks unlocked */
	uint64_t hint_copies, hint_regions;
	struct profile_run *pf; /* prefetch runs, in order */
	uint64_t pf_nr, pf_idx; /* runs; the run being copied */
	uint64_t pf_pos;        /* where in pf[pf_idx] to look next */
	void (*on_batch)(void *arg, uint64_t first, uint64_t n); /* tests */
	void *batch_arg;
	uint64_t cursor;
	uint64_t in_flight;
	bool enabled, copy_on_read, stopping, done_logged;
	uint32_t threshold, batch_size;
	uint64_t rate_limit;
	gint64 next_dispatch;  /* rate limit: monotonic us */
	gint64 backoff_until;  /* after a failed copy */
	gint64 backoff_us;
	uint64_t copy_errors, read_errors;
	gint64 rate_t0;
	uint64_t rate_b0;
	double rate;
	char last_error[160];
	gint64 foreground_at;  /* last foreground request, monotonic us (atomic) */
	unsigned flushing;     /* foreground flushes waiting (atomic, and under
				* the lock where it changes) */
	unsigned flush_waiters; /* copies paused for them, on @flushed */
	bool sched_flush_wait; /* the scheduler too, on @cond */
	GCond flushed;         /* flushing went to 0 */
	gint64 last_dispatch;  /* monotonic us */
	gint64 rest_until;     /* no dispatch before, while users are busy */
	struct copier cp;      /* its own synchronisation (atomics) */
	char *spare_buf[NR_WORKERS]; /* workers' copy buffers between batches */
	unsigned nr_spare;
	void (*on_complete)(void *arg); /* from the scheduler, unlocked */
	void *complete_arg;

	GThread *scheduler;
	GThreadPool *pool;
};

struct batch {
	uint64_t first, n;
	enum batch_from from;
	gint64 charged_us;    /* what take_batch added to next_dispatch */
};

/* A locked range of regions, [first, end): one node of h->locked. */
struct range {
	uint64_t first, end;
};

/* hydrate.c, for the scheduler; called with h->lock held. */
const struct range *hy_locked_range(struct hydrate *h, uint64_t first, uint64_t n);
struct range *hy_new_range(uint64_t first, uint64_t n);
struct range *hy_unlock_locked(struct hydrate *h, uint64_t first, uint64_t n);
void hy_count_failure(struct hydrate *h, const char *msg, bool background);

/* scheduler.c: the scheduler thread, the pool's workers, and the copy
 * buffers they keep (release with h->lock held or the workers gone). */
gpointer hy_scheduler(gpointer arg);
void hy_worker(gpointer data, gpointer user);
void hy_bufs_release(struct hydrate *h);
/* Regions of the prefetch profile, and of those hydrated; h->lock held. */
void hy_prefetch_progress(struct hydrate *h, uint64_t *total, uint64_t *done);
/* The recent copy rate into h->rate; h->lock held. */
void hy_update_rate(struct hydrate *h, gint64 now);

#endif
