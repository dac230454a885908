/*
 * scheduler.c - which regions hydration copies next, and when.
 *
 * One scheduler thread walks a cursor over the regions in ascending order
 * (wrapping; copy-on-read requests first), takes the locks of up to
 * batch_size contiguous unhydrated regions and hands the batch to a small
 * GThreadPool; a worker done with a batch takes the next one the same way,
 * unless something paces the copies (may_go_on): the threshold of regions
 * in flight, the rate limit (bytes read from SOURCE), back-off after
 * failures, foreground requests and flushes first (spec 3.1, 3.1a, 3.7, 3.8).
 */
#include "hydrate_impl.h"
#include "clonefs/blockio.h"

#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

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
void hy_bufs_release(struct hydrate *h)
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
	return r < h->t.nr_regions && !hy_locked_range(h, r, 1) &&
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
		l = hy_locked_range(h, next, 1);
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
		struct range *l = hy_new_range(r, n);

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

void hy_worker(gpointer data, gpointer user)
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
			hy_count_failure(h, msg, true);
		else
			h->backoff_us = 0;
		g_free(hy_unlock_locked(h, b->first, b->n));
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

void hy_update_rate(struct hydrate *h, gint64 now)
{
	uint64_t copied = copier_copied_bytes(&h->cp);

	if (now - h->rate_t0 < G_USEC_PER_SEC)
		return;
	h->rate = (double)(copied - h->rate_b0) * G_USEC_PER_SEC /
		  (double)(now - h->rate_t0);
	h->rate_t0 = now;
	h->rate_b0 = copied;
}

gpointer hy_scheduler(gpointer arg)
{
	struct hydrate *h = arg;

	g_mutex_lock(&h->lock);
	while (!h->stopping) {
		gint64 now = g_get_monotonic_time();
		gint64 wake = now + G_USEC_PER_SEC;
		bool busy = users_busy(h, now);
		struct batch *b;

		hy_update_rate(h, now);
		/* Before the enabled check: writes may finish the job too. */
		if (md_mode(h->t.md) == MD_MODE_RW && md_all_hydrated(h->t.md)) {
			void (*fn)(void *) = h->on_complete;
			void *fn_arg = h->complete_arg;

			if (!h->done_logged) {
				h->done_logged = true;
				hy_bufs_release(h); /* no copy will need them */
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
