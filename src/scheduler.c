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

/* The first region in [from, end) the scheduler can take now, or @end.
 * Called with h->lock held. */
static uint64_t next_takeable(struct hydrate *h, uint64_t from, uint64_t end)
{
	while (from < end) {
		const struct range *l;

		from = md_find_next_unhydrated(h->t.md, from);
		if (from >= end)
			break;
		l = hy_locked_range(h, from, 1);
		if (!l)
			return from;
		from = l->end; /* past the whole range: a discard may hold millions */
	}
	return end;
}

/* The first hinted range with a region to take: its first such region, the
 * range's end in *@end, whether a window in *@ahead; nr_regions if none.
 * Spent ranges go. */
static uint64_t pick_hint(struct hydrate *h, uint64_t *end, bool *ahead)
{
	struct hint *top;

	while ((top = g_queue_peek_head(&h->hints))) {
		uint64_t r = next_takeable(h, top->first, top->end);

		if (r < top->end) {
			top->first = r;
			*end = top->end;
			*ahead = top->ahead;
			return r;
		}
		g_free(g_queue_pop_head(&h->hints));
	}
	return h->t.nr_regions;
}

/* The prefetch profile's next region to take, in its order; as pick_hint. */
static uint64_t pick_prefetch(struct hydrate *h, uint64_t *end)
{
	for (; h->pf_idx < h->pf_nr; h->pf_idx++) {
		const struct profile_run *run = &h->pf[h->pf_idx];
		uint64_t run_end = run->first + run->n;
		uint64_t r = next_takeable(h, MAX(h->pf_pos, run->first), run_end);

		if (r < run_end) {
			h->pf_pos = r;
			*end = run_end;
			return r;
		}
		h->pf_pos = 0;
	}
	return h->t.nr_regions;
}

/* A region of a read-ahead window or of the prefetch profile can be taken
 * now: a copy for what users will read, which their being busy must not
 * hold back (while those left are in flight, the sweep keeps its pace).
 * Windows come before the hinted reads in the queue. Called with h->lock
 * held. */
static bool urgent(struct hydrate *h)
{
	uint64_t end;
	bool ahead = false;

	return (pick_hint(h, &end, &ahead) < h->t.nr_regions && ahead) ||
	       pick_prefetch(h, &end) < h->t.nr_regions;
}

/* Sequential reads were hinted just now: all but urgent copies wait. */
static bool held(struct hydrate *h, gint64 now)
{
	return now < h->hint_hold_until &&
	       !(h->copy_on_read && !g_queue_is_empty(&h->cor));
}

/*
 * The next region to hydrate, or nr_regions if none can be taken now:
 * copy-on-read requests (asked for), hinted windows (newest first), hinted
 * reads, the prefetch
 * profile, then the ascending cursor (spec 3.1, 3.6, 3.9). *@end: where a
 * batch from it must stop; *@from: which it was.
 */
static uint64_t pick(struct hydrate *h, uint64_t *end, enum batch_from *from)
{
	uint64_t nr = h->t.nr_regions;
	uint64_t r;
	bool ahead = false;

	*end = nr;
	*from = FROM_COR;
	while (h->copy_on_read && !g_queue_is_empty(&h->cor)) {
		r = (uint64_t)GPOINTER_TO_SIZE(g_queue_pop_head(&h->cor)) - 1;
		if (takeable(h, r))
			return r;
	}
	if ((r = pick_hint(h, end, &ahead)) < nr) {
		*from = ahead ? FROM_AHEAD : FROM_READ;
		return r;
	}
	*from = FROM_PREFETCH;
	if ((r = pick_prefetch(h, end)) < nr)
		return r;
	*from = FROM_SWEEP;
	*end = nr;
	r = h->cursor < nr ? h->cursor : 0;
	r = next_takeable(h, r, nr);
	return r < nr ? r : next_takeable(h, 0, nr); /* wrap */
}

/*
 * Lock the next batch and count it in flight, or NULL if every region left
 * is locked. While users are busy, a region at a time (their reads then
 * wait behind one region's copy, not a batch's), but for read-ahead
 * windows and prefetched regions: what they will read, in whole batches.
 * Only the sweep moves the cursor: it goes on behind the others.
 * Called with h->lock held.
 */
static struct batch *take_batch(struct hydrate *h, gint64 now, bool busy)
{
	enum batch_from from;
	uint64_t end, r = pick(h, &end, &from), n, room;
	struct batch *b;

	if (r >= h->t.nr_regions)
		return NULL;
	room = (busy && from != FROM_AHEAD && from != FROM_PREFETCH) || h->flushing ?
	       1 : MIN(h->batch_size, h->threshold - h->in_flight);
	room = MIN(room, end - r);
	for (n = 0; n < room && takeable(h, r + n); n++)
		;
	if (n) {
		struct range *l = hy_new_range(r, n);

		g_tree_insert(h->locked, l, l); /* key and value: see locked_range */
	}
	if (from == FROM_SWEEP)
		h->cursor = r + n;
	else if (from == FROM_AHEAD || from == FROM_READ)
		((struct hint *)g_queue_peek_head(&h->hints))->first = r + n;
	else if (from == FROM_PREFETCH)
		h->pf_pos = r + n;
	h->in_flight += n; /* until the worker is done with the batch */
	h->last_dispatch = now;
	b = g_new0(struct batch, 1);
	b->first = r;
	b->n = n;
	b->from = from;
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
 * scheduler paces; users' hints and prefetching go on while they are busy): a round trip through the scheduler is two thread
 * wake-ups per batch, and batches of SOURCE holes take less than that.
 * Called with h->lock held.
 */
static bool may_go_on(struct hydrate *h, gint64 now)
{
	return !h->stopping && h->enabled && !h->rate_limit && !h->flushing &&
	       md_mode(h->t.md) == MD_MODE_RW && h->in_flight < h->threshold &&
	       now >= h->backoff_until &&
	       (urgent(h) || (!users_busy(h, now) && !held(h, now)));
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
		if (!ret && (b->from == FROM_AHEAD || b->from == FROM_READ)) {
			h->hint_copies++;
			h->hint_regions += b->n;
		}
		if (!ret && h->on_batch)
			h->on_batch(h->batch_arg, b->first, b->n);
		rate_refund(h, b, c.read);
		now = g_get_monotonic_time();
		h->rest_until = now + (now - t0) * BUSY_REST;
		if (c.buf && may_go_on(h, now))
			next = take_batch(h, now, users_busy(h, now));
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
		/* windows and prefetching serve users: not held back for them */
		bool urg = urgent(h), pace = busy && !urg;

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
		if (h->in_flight && pace) {
			g_cond_wait_until(&h->cond, &h->lock,
					  now + FOREGROUND_QUIET_US);
			continue;
		}
		/* and with a rest after each copy, as long as they stay busy */
		if (pace && now < h->rest_until) {
			g_cond_wait_until(&h->cond, &h->lock,
					  MIN(h->rest_until, now + FOREGROUND_QUIET_US));
			continue;
		}
		/* sequential reads were hinted just now: their windows only */
		if (!urg && held(h, now)) {
			g_cond_wait_until(&h->cond, &h->lock, h->hint_hold_until);
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

/* ---- reads as hints, prefetching (spec 3.9) ---- */

/* The stream a read at @first continues (it lies within a window of where
 * that stream's last read ended: parallel requests arrive out of order),
 * or the least recently used one, started afresh (window 0). */
static struct hint_stream *hint_stream(struct hydrate *h, uint64_t first)
{
	struct hint_stream *s, *lru = &h->streams[0];

	for (s = h->streams; s < h->streams + HINT_STREAMS; s++) {
		if (s->used && first + s->window >= s->next &&
		    first <= s->next + s->window)
			return s;
		if (s->used < lru->used)
			lru = s;
	}
	lru->window = 0;
	return lru;
}

/* Queue [first, end): a window at the head of the hints, where one that
 * continues the head window (the same stream, further) extends it; read
 * regions at the tail. */
static void push_hint(struct hydrate *h, uint64_t first, uint64_t end, bool ahead)
{
	struct hint *top = g_queue_peek_head(&h->hints), *n;

	if (first >= end)
		return;
	if (ahead && top && top->ahead && first >= top->first && first <= top->end) {
		top->end = MAX(top->end, end);
		return;
	}
	n = g_new(struct hint, 1);
	*n = (struct hint){ first, end, ahead };
	if (ahead)
		g_queue_push_head(&h->hints, n);
	else
		g_queue_push_tail(&h->hints, n);
	if (h->hints.length > HINT_QUEUE_MAX)
		g_free(g_queue_pop_tail(&h->hints));
}

/*
 * The regions read go to the tail of the hints, before the prefetch list
 * and the sweep, paced as the sweep is while users are busy: the reader is
 * fetching them from SOURCE right now, and a random reader would otherwise
 * have each 4 KiB read followed by a region's copy at full speed. A read
 * that continues a stream also puts a read-ahead window after it at the
 * head, copied at once, and, if the window has regions to copy, holds the
 * sweep back for HINT_HOLD_US.
 */
void hydrate_hint(struct hydrate *h, uint64_t first, uint64_t n)
{
	uint64_t min_w = MAX(HINT_WINDOW_MIN / h->t.region_size, 1);
	uint64_t max_w = MAX(HINT_WINDOW_MAX / h->t.region_size, 1);
	struct hint_stream *s;
	uint64_t nr = h->t.nr_regions, end = first + n;
	gint64 now;

	if (!__atomic_load_n(&h->read_hints, __ATOMIC_RELAXED) || !n)
		return;
	now = g_get_monotonic_time();
	g_mutex_lock(&h->lock);
	if (h->stopping || first >= nr) {
		g_mutex_unlock(&h->lock);
		return;
	}
	s = hint_stream(h, first);
	s->used = now;
	push_hint(h, first, MIN(end, nr), false);
	if (!s->window) { /* a new stream: no window before it proves sequential */
		s->next = end;
		s->window = min_w;
	} else {
		uint64_t w0 = MIN(end, nr), w1 = MIN(end + s->window, nr);

		s->next = MAX(s->next, end);
		push_hint(h, w0, w1, true);
		s->window = MIN(s->window * 2, max_w);
		/* only while the window has regions to copy: a reader going
		 * over hydrated ones must not keep the sweep away for good */
		if (md_find_next_unhydrated(h->t.md, w0) < w1)
			h->hint_hold_until = now + HINT_HOLD_US;
	}
	if (h->enabled)
		g_cond_broadcast(&h->cond);
	g_mutex_unlock(&h->lock);
}

void hydrate_set_read_hints(struct hydrate *h, bool on)
{
	g_mutex_lock(&h->lock);
	__atomic_store_n(&h->read_hints, on, __ATOMIC_RELAXED);
	if (!on)
		while (!g_queue_is_empty(&h->hints))
			g_free(g_queue_pop_head(&h->hints));
	g_mutex_unlock(&h->lock);
}

void hydrate_set_prefetch(struct hydrate *h, const struct profile_run *runs,
			  uint64_t nr)
{
	struct profile_run *copy = nr ? g_memdup2(runs, nr * sizeof(*runs)) : NULL;

	g_mutex_lock(&h->lock);
	g_free(h->pf);
	h->pf = copy;
	h->pf_nr = nr;
	h->pf_idx = h->pf_pos = 0;
	g_cond_broadcast(&h->cond);
	g_mutex_unlock(&h->lock);
}

void hydrate_on_batch(struct hydrate *h,
		      void (*fn)(void *arg, uint64_t first, uint64_t n), void *arg)
{
	g_mutex_lock(&h->lock);
	h->on_batch = fn;
	h->batch_arg = arg;
	g_mutex_unlock(&h->lock);
}

/* Regions of the prefetch profile, and how many are hydrated: hops over
 * runs of one state, so a run costs its changes of state, not its length.
 * Called with h->lock held. */
void hy_prefetch_progress(struct hydrate *h, uint64_t *total, uint64_t *done)
{
	*total = *done = 0;
	for (uint64_t i = 0; i < h->pf_nr; i++) {
		uint64_t pos = h->pf[i].first, end = pos + h->pf[i].n;

		*total += h->pf[i].n;
		while (pos < end) {
			uint64_t u = MIN(md_find_next_unhydrated(h->t.md, pos), end);

			*done += u - pos;
			pos = u < end ? md_find_next_hydrated(h->t.md, u) : end;
		}
	}
}
