/*
 * hydrate.c - the hydration engine: region locks, the copies that writes
 * need, settings, statistics and its life cycle.
 *
 * Region locks order copies and first writes: one per region at a time.
 * A copy writes the data to DEST and only then sets the bits in core; the
 * next commit flushes DEST before it writes the bits (spec 3.2), so a bit
 * never reaches META before its data is durable. The copies themselves
 * (sparse, reflinks, write-out behind them) are copier.c's; which regions
 * are copied in the background, and when, is scheduler.c's.
 */
#include "hydrate_impl.h"
#include "clonefs/blockio.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>


/*
 * Region locks are ranges: a lock of [first, end) is one tree node however
 * many regions it covers, so a discard of a whole image costs what a 4 KiB
 * write does (spec 2.10). Locked ranges never overlap (a lock is taken only
 * when all its regions are free), so they sort by their first region and a
 * lookup of any region is O(log ranges held).
 */
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
const struct range *hy_locked_range(struct hydrate *h, uint64_t first,
					uint64_t n)
{
	struct range q = { first, first + n };

	return n ? g_tree_search(h->locked, range_search, &q) : NULL;
}

struct range *hy_new_range(uint64_t first, uint64_t n)
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
	r = hy_new_range(first, n);
	g_mutex_lock(&h->lock);
	while (hy_locked_range(h, first, n)) {
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
struct range *hy_unlock_locked(struct hydrate *h, uint64_t first, uint64_t n)
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
	r = hy_unlock_locked(h, first, n);
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
void hy_count_failure(struct hydrate *h, const char *msg, bool background)
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
		hy_count_failure(h, msg, false);
	/* Wake the scheduler only if it waits for room: a wake-up per copy
	 * was a futex call and a context switch per first write. */
	if (h->enabled && h->in_flight >= h->threshold && h->in_flight - n < h->threshold)
		g_cond_broadcast(&h->cond);
	h->in_flight -= n;
	g_mutex_unlock(&h->lock);
}

void hydrate_read_failed(struct hydrate *h, int ret, uint64_t off, uint64_t len)
{
	char msg[sizeof(h->last_error)];
	uint64_t size;

	if (!h->t.nbd && ret == -EIO && !bio_size(h->t.src_fd, &size) &&
	    size < h->t.image_size)
		snprintf(msg, sizeof(msg), "read of bytes %" G_GUINT64_FORMAT "+%"
			 G_GUINT64_FORMAT " failed: source is shorter than the image (%"
			 G_GUINT64_FORMAT " < %" G_GUINT64_FORMAT " bytes)", off, len,
			 size, h->t.image_size);
	else
		snprintf(msg, sizeof(msg), "read of bytes %" G_GUINT64_FORMAT "+%"
			 G_GUINT64_FORMAT " failed: %s", off, len, g_strerror(-ret));
	g_mutex_lock(&h->lock);
	h->read_errors++;
	g_strlcpy(h->last_error, msg, sizeof(h->last_error));
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

	if (!copier_copy_write_applies(&h->cp, region)) {
		ret = hydrate_copy(h, region, 1);
		return ret ? ret : bio_pwrite(h->t.dest_fd, data, len, off);
	}
	foreground_copy_begin(h, 1);
	ret = copier_copy_write(&h->cp, h->t.write_fd, region, data, off, len);
	foreground_copy_end(h, region, 1, ret);
	return ret;
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
	g_queue_init(&h->hints);
	h->read_hints = !o->no_read_hints && !o->ro;
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
	h->pool = g_thread_pool_new(hy_worker, h, NR_WORKERS, FALSE, &gerr);
	if (!h->pool) {
		g_warning("cannot start hydration workers: %s", gerr->message);
		g_error_free(gerr);
		return -EAGAIN;
	}
	h->scheduler = g_thread_new("hydrate", hy_scheduler, h);
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
	hy_bufs_release(h);
	g_tree_destroy(h->locked);
	g_queue_clear(&h->cor);
	g_queue_clear_full(&h->hints, g_free);
	g_free(h->pf);
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

/* Stored atomically (under the lock too, for the hy_scheduler) so the read
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
	hy_update_rate(h, g_get_monotonic_time());
	st->in_flight = h->in_flight;
	st->copied_bytes = copier_copied_bytes(&h->cp);
	st->copy_errors = h->copy_errors;
	st->read_errors = h->read_errors;
	st->rate = h->rate;
	st->enabled = h->enabled;
	st->copy_on_read = h->copy_on_read;
	st->threshold = h->threshold;
	st->batch_size = h->batch_size;
	st->rate_limit = h->rate_limit;
	st->read_hints = h->read_hints;
	st->hint_copies = h->hint_copies;
	st->hint_regions = h->hint_regions;
	hy_prefetch_progress(h, &st->prefetch_total, &st->prefetch_hydrated);
	memcpy(st->last_error, h->last_error, sizeof(st->last_error));
	g_mutex_unlock(&h->lock);
}
