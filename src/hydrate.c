/*
 * hydrate.c - region locks and background hydration.
 *
 * One scheduler thread walks a cursor over the regions in ascending order
 * (wrapping), takes the locks of up to batch_size contiguous unhydrated
 * regions and hands the batch to a small GThreadPool; a worker done with a
 * batch takes the next one the same way, unless something paces the copies
 * (may_go_on). At most threshold regions are in flight, write-triggered
 * copies included. A copy writes the data to DEST and only then sets the
 * bits in core; the next commit flushes DEST before it writes the bits
 * (spec 3.2), so a bit never reaches META before its data is durable.
 *
 * The copies themselves (sparse, reflinks, write-out behind them) are
 * copier.c's; here they are paced: batches, threshold, rate limit, back-off
 * after failures, foreground requests and flushes first (spec 3.1a, 3.8).
 */
#include "clonefs/hydrate.h"
#include "clonefs/blockio.h"
#include "clonefs/copier.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NR_WORKERS 4
#define COR_QUEUE_MAX 4096
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

struct hydrate {
	struct hydrate_target t;

	GMutex lock;          /* everything below */
	GCond cond;           /* in_flight or settings changed: the scheduler */
	GCond unlocked;       /* regions unlocked: lock_waiters */
	GTree *locked;        /* locked ranges of regions (struct range) */
	unsigned lock_waiters;
	GQueue cor;           /* copy-on-read requests, regions */
	uint64_t cursor;
	uint64_t in_flight;
	bool enabled, copy_on_read, stopping, done_logged;
	uint32_t threshold, batch_size;
	uint64_t rate_limit;
	gint64 next_dispatch;  /* rate limit: monotonic us */
	gint64 backoff_until;  /* after a failed copy */
	gint64 backoff_us;
	uint64_t copy_errors;
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
	gint64 charged_us;    /* what take_batch added to next_dispatch */
};

/*
 * Region locks are ranges: a lock of [first, end) is one tree node however
 * many regions it covers, so a discard of a whole image costs what a 4 KiB
 * write does (spec 2.10). Locked ranges never overlap (a lock is taken only
 * when all its regions are free), so they sort by their first region and a
 * lookup of any region is O(log ranges held).
 */
struct range {
	uint64_t first, end;
};

static gint range_cmp(gconstpointer a, gconstpointer b, gpointer unused)
{
	const struct range *x = a, *y = b;

	(void)unused;
	return x->first < y->first ? -1 : x->first > y->first;
}

/* For g_tree_search: 0 if locked range @key overlaps @query, else the
 * side (-1: smaller keys) where an overlapping one may be. */
static gint range_search(gconstpointer key, gconstpointer query)
{
	const struct range *k = key, *q = query;

	if (k->end <= q->first)
		return 1;
	if (k->first >= q->end)
		return -1;
	return 0;
}

/* A locked range overlapping [first, first + n), or NULL (g_tree_search
 * returns values: each range is its own key and value). Called with
 * h->lock held. */
static const struct range *locked_range(struct hydrate *h, uint64_t first,
					uint64_t n)
{
	struct range q = { first, first + n };

	return n ? g_tree_search(h->locked, range_search, &q) : NULL;
}

static struct range *new_range(uint64_t first, uint64_t n)
{
	struct range *r = g_new(struct range, 1);

	r->first = first;
	r->end = first + n;
	return r;
}

/* Writers allocate and free their range outside h->lock, which every
 * request and copy takes: it is held for the tree operation only. */
void hydrate_lock(struct hydrate *h, uint64_t first, uint64_t n)
{
	struct range *r;

	if (!n)
		return;
	r = new_range(first, n);
	g_mutex_lock(&h->lock);
	while (locked_range(h, first, n)) {
		h->lock_waiters++;
		g_cond_wait(&h->unlocked, &h->lock);
		h->lock_waiters--;
	}
	g_tree_insert(h->locked, r, r); /* key and value: see locked_range */
	g_mutex_unlock(&h->lock);
}

/* Returns the range taken out of the tree (NULL for n = 0), for the
 * caller to free. Called with h->lock held. A broadcast is a system call,
 * and wakes only threads waiting for a region. */
static struct range *unlock_locked(struct hydrate *h, uint64_t first, uint64_t n)
{
	struct range key = { first, first + n };
	struct range *r;

	if (!n)
		return NULL;
	r = g_tree_lookup(h->locked, &key);
	/* unlocking what was not locked, or in other pieces, is a bug */
	g_assert(r && r->end == first + n);
	g_tree_steal(h->locked, r);
	if (h->lock_waiters)
		g_cond_broadcast(&h->unlocked);
	return r;
}

void hydrate_unlock(struct hydrate *h, uint64_t first, uint64_t n)
{
	struct range *r;

	g_mutex_lock(&h->lock);
	r = unlock_locked(h, first, n);
	g_mutex_unlock(&h->lock);
	g_free(r);
}

/*
 * While a foreground flush waits, a background copy stops before its next
 * chunk until no flush does, for FLUSH_YIELD_US at most: the flush then
 * waits only for what the copy has already put in write-out.
 */
static void yield_to_flushes(void *arg)
{
	struct hydrate *h = arg;
	gint64 until;

	if (!__atomic_load_n(&h->flushing, __ATOMIC_RELAXED))
		return;
	until = g_get_monotonic_time() + FLUSH_YIELD_US;
	g_mutex_lock(&h->lock);
	h->flush_waiters++;
	while (h->flushing && !h->stopping &&
	       g_cond_wait_until(&h->flushed, &h->lock, until))
		;
	h->flush_waiters--;
	g_mutex_unlock(&h->lock);
}

/* Count a failed copy and say why; @msg from describe_failure. A failed
 * background copy also backs off the next. Called with h->lock held. */
static void count_failure(struct hydrate *h, const char *msg, bool background)
{
	h->copy_errors++;
	g_strlcpy(h->last_error, msg, sizeof(h->last_error));
	if (!background)
		return;
	h->backoff_us = h->backoff_us ? MIN(h->backoff_us * 2, BACKOFF_MAX_US)
				      : BACKOFF_MIN_US;
	h->backoff_until = g_get_monotonic_time() + h->backoff_us;
	g_warning("hydration: %s; retrying in %" G_GINT64_FORMAT " ms",
		  h->last_error, h->backoff_us / 1000);
}

/* Write-triggered copies count against the threshold while they run. */
static void foreground_copy_begin(struct hydrate *h, uint64_t n)
{
	g_mutex_lock(&h->lock);
	h->in_flight += n;
	g_mutex_unlock(&h->lock);
}

/* @ret: the copy's result; a failure counts in status, and the write that
 * needed the copy fails with it. */
static void foreground_copy_end(struct hydrate *h, uint64_t first, uint64_t n,
				int ret)
{
	char msg[sizeof(h->last_error)];

	if (ret)
		copier_describe_failure(&h->cp, ret, first, n, msg, sizeof(msg));
	g_mutex_lock(&h->lock);
	if (ret)
		count_failure(h, msg, false);
	/* Wake the scheduler only if it waits for room: a wake-up per copy
	 * was a futex call and a context switch per first write. */
	if (h->enabled && h->in_flight >= h->threshold && h->in_flight - n < h->threshold)
		g_cond_broadcast(&h->cond);
	h->in_flight -= n;
	g_mutex_unlock(&h->lock);
}

int hydrate_copy(struct hydrate *h, uint64_t first, uint64_t n)
{
	struct copy c = { .buf = malloc(COPIER_CHUNK) };
	int ret;

	if (!c.buf)
		return -ENOMEM;
	foreground_copy_begin(h, n);
	ret = copier_copy(&h->cp, h->t.write_fd, first, n, &c);
	foreground_copy_end(h, first, n, ret);
	free(c.buf);
	return ret;
}

/* copier_copy_write, counted in flight as hydrate_copy is. */
int hydrate_copy_write(struct hydrate *h, uint64_t region, const void *data,
		       uint64_t off, size_t len)
{
	int ret;

	if (!copier_copy_write_applies(&h->cp, region))
		return -EOPNOTSUPP;
	foreground_copy_begin(h, 1);
	ret = copier_copy_write(&h->cp, h->t.write_fd, region, data, off, len);
	foreground_copy_end(h, region, 1, ret);
	return ret;
}

static int copy_and_mark(struct hydrate *h, int src, uint64_t first, uint64_t n,
			 struct copy *c)
{
	int ret = copier_copy(&h->cp, src, first, n, c);

	return ret ? ret : md_set_range_hydrated(h->t.md, first, n);
}

/*
 * The workers' copy buffers are mapped, kept between batches and unmapped
 * once hydration is complete. malloc'd, each stayed at the top of its
 * thread's arena for good (malloc_trim leaves those): 1 MiB of the 7 the
 * daemon peaked at after hydration and then O_DIRECT I/O. Mapped for each
 * batch, a dense copy took 4x as long (page faults, unmaps).
 */
static char *buf_get(struct hydrate *h)
{
	char *buf = NULL;

	g_mutex_lock(&h->lock);
	if (h->nr_spare)
		buf = h->spare_buf[--h->nr_spare];
	g_mutex_unlock(&h->lock);
	if (!buf) {
		buf = mmap(NULL, COPIER_CHUNK, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (buf == MAP_FAILED)
			return NULL;
	}
	return buf;
}

/* Called with h->lock held. */
static void buf_put(struct hydrate *h, char *buf)
{
	if (h->nr_spare < NR_WORKERS && !h->done_logged)
		h->spare_buf[h->nr_spare++] = buf;
	else
		munmap(buf, COPIER_CHUNK);
}

/* Called with h->lock held, or with the workers gone. */
static void bufs_release(struct hydrate *h)
{
	while (h->nr_spare)
		munmap(h->spare_buf[--h->nr_spare], COPIER_CHUNK);
}

/* Copy and mark batch @b; narrows *bad, *nbad (the batch) to a failed region. */
static int copy_batch(struct hydrate *h, const struct batch *b, struct copy *c,
		      uint64_t *bad, uint64_t *nbad)
{
	int ret;

	copier_read_ahead(&h->cp, (b->first + b->n) * h->t.region_size);
	ret = copy_and_mark(h, h->t.stream_fd, b->first, b->n, c);

	/* One bad region must not hold back the rest of its batch. */
	if (ret && b->n > 1 && md_mode(h->t.md) == MD_MODE_RW) {
		ret = 0;
		for (uint64_t r = b->first; r < b->first + b->n; r++) {
			int err = copy_and_mark(h, h->t.stream_fd, r, 1, c);

			if (err && !ret) {
				ret = err;
				*bad = r;
				*nbad = 1;
			}
		}
	}
	return ret;
}

/* Can the scheduler take @r now? Called with h->lock held. */
static bool takeable(struct hydrate *h, uint64_t r)
{
	return r < h->t.nr_regions && !locked_range(h, r, 1) &&
	       !md_region_hydrated(h->t.md, r);
}

/* The next region to hydrate, or nr_regions if none can be taken now. */
static uint64_t pick(struct hydrate *h)
{
	uint64_t nr = h->t.nr_regions;
	uint64_t r, scanned = 0;

	while (h->copy_on_read && !g_queue_is_empty(&h->cor)) {
		r = (uint64_t)GPOINTER_TO_SIZE(g_queue_pop_head(&h->cor)) - 1;
		if (takeable(h, r))
			return r;
	}
	r = h->cursor < nr ? h->cursor : 0;
	while (scanned < nr) {
		uint64_t next = md_find_next_unhydrated(h->t.md, r), stop;
		const struct range *l;

		if (next >= nr) { /* wrap */
			scanned += nr - r;
			r = 0;
			continue;
		}
		l = locked_range(h, next, 1);
		if (!l)
			return next;
		/* past the whole range: a discard may hold millions */
		stop = MIN(l->end, nr);
		scanned += stop - r;
		r = stop;
	}
	return nr;
}

/*
 * Lock the next batch and count it in flight, or NULL if every region left
 * is locked. While users are busy, a region at a time: their reads then
 * wait behind one region's copy, not a batch's. Called with h->lock held.
 */
static struct batch *take_batch(struct hydrate *h, gint64 now, bool busy)
{
	uint64_t r = pick(h), n, room;
	struct batch *b;

	if (r >= h->t.nr_regions)
		return NULL;
	room = busy || h->flushing ? 1 : MIN(h->batch_size, h->threshold - h->in_flight);
	for (n = 0; n < room && takeable(h, r + n); n++)
		;
	if (n) {
		struct range *l = new_range(r, n);

		g_tree_insert(h->locked, l, l); /* key and value: see locked_range */
	}
	h->cursor = r + n;
	h->in_flight += n; /* until the worker is done with the batch */
	h->last_dispatch = now;
	b = g_new0(struct batch, 1);
	b->first = r;
	b->n = n;
	if (h->rate_limit) {
		/* all of it for now: rate_refund gives back what was not read */
		uint64_t end = MIN((r + n) * h->t.region_size, h->t.image_size);
		gint64 base = MAX(h->next_dispatch, now);
		gint64 wait = hydrate_rate_delay_us(end - r * h->t.region_size,
						    h->rate_limit);

		b->charged_us = MIN(wait, G_MAXINT64 - base);
		h->next_dispatch = base + b->charged_us;
	}
	return b;
}

/* bytes * 10^6 wraps past 18 TB (a batch of big regions), which made the
 * next dispatch come at once instead of hours later. */
int64_t hydrate_rate_delay_us(uint64_t bytes, uint64_t rate)
{
	unsigned __int128 us;

	if (!rate)
		return 0;
	us = (unsigned __int128)bytes * G_USEC_PER_SEC / rate;
	return us > G_MAXINT64 ? G_MAXINT64 : (gint64)us;
}

/*
 * The rate limit counts bytes read from SOURCE (spec 3.7): a batch is
 * charged in full when it is dispatched, which keeps the next one back
 * while it runs, and gets back here the part it found to be holes. A
 * 2 GiB image holding 360 MiB of data at 64 MB/s then takes about 6 s,
 * not 32. Called with h->lock held.
 */
static void rate_refund(struct hydrate *h, const struct batch *b, uint64_t read)
{
	gint64 used;

	if (!b->charged_us || !h->rate_limit)
		return;
	used = hydrate_rate_delay_us(read, h->rate_limit);
	if (used < b->charged_us)
		h->next_dispatch -= b->charged_us - used;
}

/* Did users do I/O just now? Then copies step back (spec 3.1a). */
static bool users_busy(struct hydrate *h, gint64 now)
{
	return now - __atomic_load_n(&h->foreground_at, __ATOMIC_RELAXED) <
	       FOREGROUND_QUIET_US;
}

/*
 * May a worker that just finished a batch take the next one itself? Only
 * in the plain case (no rate limit, back-off or busy users, which the
 * scheduler paces): a round trip through the scheduler is two thread
 * wake-ups per batch, and batches of SOURCE holes take less than that.
 * Called with h->lock held.
 */
static bool may_go_on(struct hydrate *h, gint64 now)
{
	return !h->stopping && h->enabled && !h->rate_limit && !h->flushing &&
	       md_mode(h->t.md) == MD_MODE_RW && h->in_flight < h->threshold &&
	       now >= h->backoff_until && !users_busy(h, now);
}

static void worker(gpointer data, gpointer user)
{
	struct hydrate *h = user;
	struct batch *b = data;
	struct copy c = { .buf = buf_get(h), .background = true };
	/* per thread; pool threads may serve others later: put back after */
	long prio = syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0);

	if (prio >= 0)
		syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, COPY_IOPRIO);

	while (b) {
		uint64_t bad = b->first, nbad = b->n;
		int ret;
		struct batch *next = NULL;
		char msg[sizeof(h->last_error)];
		gint64 now;

		gint64 t0 = g_get_monotonic_time();

		c.read = 0;
		ret = c.buf ? copy_batch(h, b, &c, &bad, &nbad) : -ENOMEM;
		if (ret)
			copier_describe_failure(&h->cp, ret, bad, nbad, msg, sizeof(msg));
		g_mutex_lock(&h->lock);
		if (ret)
			count_failure(h, msg, true);
		else
			h->backoff_us = 0;
		g_free(unlock_locked(h, b->first, b->n));
		h->in_flight -= b->n;
		rate_refund(h, b, c.read);
		now = g_get_monotonic_time();
		h->rest_until = now + (now - t0) * BUSY_REST;
		if (c.buf && may_go_on(h, now))
			next = take_batch(h, now, false);
		if (!next)
			g_cond_broadcast(&h->cond);
		if (!next && c.buf)
			buf_put(h, c.buf);
		g_mutex_unlock(&h->lock);
		g_free(b);
		b = next;
	}
	if (prio >= 0)
		syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, prio);
}

static void update_rate(struct hydrate *h, gint64 now)
{
	uint64_t copied = copier_copied_bytes(&h->cp);

	if (now - h->rate_t0 < G_USEC_PER_SEC)
		return;
	h->rate = (double)(copied - h->rate_b0) * G_USEC_PER_SEC /
		  (double)(now - h->rate_t0);
	h->rate_t0 = now;
	h->rate_b0 = copied;
}

static gpointer scheduler(gpointer arg)
{
	struct hydrate *h = arg;

	g_mutex_lock(&h->lock);
	while (!h->stopping) {
		gint64 now = g_get_monotonic_time();
		gint64 wake = now + G_USEC_PER_SEC;
		bool busy = users_busy(h, now);
		struct batch *b;

		update_rate(h, now);
		/* Before the enabled check: writes may finish the job too. */
		if (md_mode(h->t.md) == MD_MODE_RW && md_all_hydrated(h->t.md)) {
			void (*fn)(void *) = h->on_complete;
			void *fn_arg = h->complete_arg;

			if (!h->done_logged) {
				h->done_logged = true;
				bufs_release(h); /* no copy will need them */
				g_message("hydration complete: %" G_GUINT64_FORMAT
					  " regions", h->t.nr_regions);
				if (fn) {
					g_mutex_unlock(&h->lock);
					fn(fn_arg);
					g_mutex_lock(&h->lock);
					continue;
				}
			}
			g_cond_wait_until(&h->cond, &h->lock, wake);
			continue;
		}
		if (!h->enabled || md_mode(h->t.md) != MD_MODE_RW ||
		    h->in_flight >= h->threshold) {
			g_cond_wait_until(&h->cond, &h->lock, wake);
			continue;
		}
		/* Foreground first, but never zero (spec 3.1a): while users are
		 * busy, one batch at a time instead of threshold's worth. */
		if (h->in_flight && busy) {
			g_cond_wait_until(&h->cond, &h->lock,
					  now + FOREGROUND_QUIET_US);
			continue;
		}
		/* and with a rest after each copy, as long as they stay busy */
		if (busy && now < h->rest_until) {
			g_cond_wait_until(&h->cond, &h->lock,
					  MIN(h->rest_until, now + FOREGROUND_QUIET_US));
			continue;
		}
		/* Foreground flushes wait: a region per FLUSH_YIELD_US at most. */
		if (h->flushing && now < h->last_dispatch + FLUSH_YIELD_US) {
			h->sched_flush_wait = true;
			g_cond_wait_until(&h->cond, &h->lock,
					  h->last_dispatch + FLUSH_YIELD_US);
			h->sched_flush_wait = false;
			continue;
		}
		if (now < h->backoff_until || now < h->next_dispatch) {
			g_cond_wait_until(&h->cond, &h->lock,
					  MAX(h->backoff_until, h->next_dispatch));
			continue;
		}
		b = take_batch(h, now, busy);
		if (!b) { /* all remaining are locked */
			g_cond_wait_until(&h->cond, &h->lock, wake);
			continue;
		}
		g_mutex_unlock(&h->lock);
		g_thread_pool_push(h->pool, b, NULL);
		g_mutex_lock(&h->lock);
	}
	g_mutex_unlock(&h->lock);
	return NULL;
}

struct hydrate *hydrate_new(const struct hydrate_target *t,
			    const struct clone_options *o)
{
	struct hydrate *h = g_new0(struct hydrate, 1);

	h->t = *t;
	/* blockio then fails a read that finds SOURCE's end (spec 1.4) */
	bio_set_role(t->src_fd, BIO_SOURCE);
	bio_set_role(t->stream_fd, BIO_SOURCE);
	bio_set_role(t->write_fd, BIO_SOURCE);
	g_mutex_init(&h->lock);
	g_cond_init(&h->cond);
	g_cond_init(&h->unlocked);
	g_cond_init(&h->flushed);
	copier_init(&h->cp, t, yield_to_flushes, h);
	h->locked = g_tree_new_full(range_cmp, NULL, g_free, NULL);
	g_queue_init(&h->cor);
	h->enabled = !o->no_hydration && !o->ro;
	h->copy_on_read = o->copy_on_read;
	h->threshold = o->hydration_threshold;
	h->batch_size = o->hydration_batch_size;
	h->rate_limit = o->hydration_rate;
	h->rate_t0 = g_get_monotonic_time();
	return h;
}

int hydrate_start(struct hydrate *h)
{
	GError *gerr = NULL;

	copier_start(&h->cp);
	h->pool = g_thread_pool_new(worker, h, NR_WORKERS, FALSE, &gerr);
	if (!h->pool) {
		g_warning("cannot start hydration workers: %s", gerr->message);
		g_error_free(gerr);
		return -EAGAIN;
	}
	h->scheduler = g_thread_new("hydrate", scheduler, h);
	return 0;
}

/* Idempotent, and also for an engine never started (read-only mounts): the
 * calls hydrate.h allows until hydrate_free see stopping. */
void hydrate_stop(struct hydrate *h)
{
	g_mutex_lock(&h->lock);
	h->stopping = true;
	g_cond_broadcast(&h->cond);
	g_cond_broadcast(&h->flushed); /* copies paused for a flush */
	g_mutex_unlock(&h->lock);
	if (!h->scheduler)
		return;
	g_thread_join(h->scheduler);
	h->scheduler = NULL;
	g_thread_pool_free(h->pool, FALSE, TRUE); /* finish queued batches */
	h->pool = NULL;
}

void hydrate_free(struct hydrate *h)
{
	if (!h)
		return;
	hydrate_stop(h);
	bufs_release(h);
	g_tree_destroy(h->locked);
	g_queue_clear(&h->cor);
	g_cond_clear(&h->cond);
	g_cond_clear(&h->unlocked);
	g_cond_clear(&h->flushed);
	copier_fini(&h->cp);
	g_mutex_clear(&h->lock);
	g_free(h);
}

void hydrate_foreground(struct hydrate *h)
{
	__atomic_store_n(&h->foreground_at, g_get_monotonic_time(), __ATOMIC_RELAXED);
}

void hydrate_flush_begin(struct hydrate *h)
{
	g_mutex_lock(&h->lock);
	__atomic_store_n(&h->flushing, h->flushing + 1, __ATOMIC_RELAXED);
	g_mutex_unlock(&h->lock);
}

void hydrate_flush_end(struct hydrate *h)
{
	g_mutex_lock(&h->lock);
	g_assert(h->flushing);
	__atomic_store_n(&h->flushing, h->flushing - 1, __ATOMIC_RELAXED);
	if (!h->flushing && h->flush_waiters)
		g_cond_broadcast(&h->flushed);
	if (!h->flushing && h->sched_flush_wait)
		g_cond_broadcast(&h->cond);
	g_mutex_unlock(&h->lock);
}

void hydrate_queue(struct hydrate *h, uint64_t region)
{
	g_mutex_lock(&h->lock);
	if (!h->stopping && h->copy_on_read && h->cor.length < COR_QUEUE_MAX) {
		g_queue_push_tail(&h->cor, GSIZE_TO_POINTER((gsize)region + 1));
		g_cond_broadcast(&h->cond);
	}
	g_mutex_unlock(&h->lock);
}

#define SETTER(name, type, field)                                  \
	void hydrate_set_##name(struct hydrate *h, type v)         \
	{                                                          \
		g_mutex_lock(&h->lock);                            \
		h->field = v;                                      \
		g_cond_broadcast(&h->cond);                        \
		g_mutex_unlock(&h->lock);                          \
	}
SETTER(enabled, bool, enabled)
SETTER(threshold, uint32_t, threshold)
SETTER(batch_size, uint32_t, batch_size)
#undef SETTER

void hydrate_set_rate(struct hydrate *h, uint64_t bytes_per_s)
{
	g_mutex_lock(&h->lock);
	h->rate_limit = bytes_per_s;
	h->next_dispatch = 0;
	g_cond_broadcast(&h->cond);
	g_mutex_unlock(&h->lock);
}

/* Stored atomically (under the lock too, for the scheduler) so the read
 * path can ask on every request without taking the lock. */
void hydrate_set_copy_on_read(struct hydrate *h, bool on)
{
	g_mutex_lock(&h->lock);
	__atomic_store_n(&h->copy_on_read, on, __ATOMIC_RELAXED);
	g_cond_broadcast(&h->cond);
	g_mutex_unlock(&h->lock);
}

bool hydrate_copy_on_read(struct hydrate *h)
{
	return __atomic_load_n(&h->copy_on_read, __ATOMIC_RELAXED);
}

void hydrate_on_complete(struct hydrate *h, void (*fn)(void *arg), void *arg)
{
	g_mutex_lock(&h->lock);
	h->on_complete = fn;
	h->complete_arg = arg;
	g_mutex_unlock(&h->lock);
}

void hydrate_kick(struct hydrate *h)
{
	g_mutex_lock(&h->lock);
	if (!h->stopping) { /* no scheduler left to wake */
		h->done_logged = false;
		g_cond_broadcast(&h->cond);
	}
	g_mutex_unlock(&h->lock);
}

void hydrate_get_stats(struct hydrate *h, struct hydrate_stats *st)
{
	g_mutex_lock(&h->lock);
	update_rate(h, g_get_monotonic_time());
	st->in_flight = h->in_flight;
	st->copied_bytes = copier_copied_bytes(&h->cp);
	st->copy_errors = h->copy_errors;
	st->rate = h->rate;
	st->enabled = h->enabled;
	st->copy_on_read = h->copy_on_read;
	st->threshold = h->threshold;
	st->batch_size = h->batch_size;
	st->rate_limit = h->rate_limit;
	memcpy(st->last_error, h->last_error, sizeof(st->last_error));
	g_mutex_unlock(&h->lock);
}
