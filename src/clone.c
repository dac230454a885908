/*
 * clone.c - the clone policy (spec 1.x, 2.x).
 *
 * Reads go region by region to DEST (hydrated) or SOURCE (not), coalesced
 * into runs. Writes to hydrated regions go straight to DEST; the first write
 * to an unhydrated region takes the region's lock, hydrates it unless the
 * write covers it whole, writes, and sets the bit before it is acknowledged.
 * fsync and the periodic timer commit in two phases: freeze the changes,
 * flush DEST, commit (spec 2.5, 3.2).
 */
#include "clone_impl.h"
#include "clonefs/blockio.h"
#include "clonefs/errf.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

uint64_t clone_size(struct clone *c) { return c->size; }
bool clone_readonly(struct clone *c) { return c->opt.ro; }

void clone_tune(struct clone *c, enum clone_knob knob, uint64_t value)
{
	switch (knob) {
	case CLONE_HYDRATION: hydrate_set_enabled(c->hy, value != 0); break;
	case CLONE_HYDRATION_THRESHOLD: hydrate_set_threshold(c->hy, (uint32_t)value); break;
	case CLONE_HYDRATION_BATCH_SIZE: hydrate_set_batch_size(c->hy, (uint32_t)value); break;
	case CLONE_HYDRATION_RATE: hydrate_set_rate(c->hy, value); break;
	case CLONE_COPY_ON_READ: hydrate_set_copy_on_read(c->hy, value != 0); break;
	case CLONE_READ_HINTS: hydrate_set_read_hints(c->hy, value != 0); break;
	}
}

void clone_on_complete(struct clone *c, void (*fn)(void *arg), void *arg)
{
	hydrate_on_complete(c->hy, fn, arg);
}

void clone_set_discard_passdown(struct clone *c, bool on)
{
	__atomic_store_n(&c->discard_passdown, on, __ATOMIC_RELAXED);
}

static uint64_t region_of(struct clone *c, uint64_t off)
{
	return off >> c->region_shift;
}

/* Regions [first, first + n) covering bytes [off, end), end > off. */
static uint64_t regions_in(struct clone *c, uint64_t off, uint64_t end)
{
	return region_of(c, end - 1) - region_of(c, off) + 1;
}

static uint64_t region_start(struct clone *c, uint64_t region)
{
	return region << c->region_shift;
}

void clone_image_owner(struct clone *c, uid_t *uid, gid_t *gid, mode_t *mode)
{
	*uid = c->image_uid;
	*gid = c->image_gid;
	*mode = c->image_mode;
}

/* ---- commit ---- */

/* An error lost data that was acknowledged but not yet durable: every file
 * open now must hear of it at its next fsync (spec 2.5b). */
static void lost_writes(struct clone *c)
{
	__atomic_add_fetch(&c->lost_writes, 1, __ATOMIC_SEQ_CST);
}

/* A commit or checkpoint failed: marks are rolled back, so acknowledged
 * writes may be lost. */
static int commit_failed(struct clone *c, int ret)
{
	g_warning("metadata commit failed: %s", g_strerror(-ret));
	lost_writes(c);
	hydrate_kick(c->hy);
	return ret;
}

/*
 * One transaction: freeze, flush DEST, commit (spec 2.5, 3.2): a journal
 * record, one META flush. With @flush, DEST is flushed even when no bit
 * changed; with @checkpoint, the journal is then folded into the trees.
 */
static int commit_now(struct clone *c, bool flush, bool checkpoint)
{
	int ret;

	if (!md_changed(c->md) || md_mode(c->md) != MD_MODE_RW) {
		if (flush && (ret = bio_flush(c->dest_fd))) {
			g_warning("flush of dest failed: %s", g_strerror(-ret));
			lost_writes(c);
			return ret;
		}
		if (checkpoint && md_mode(c->md) == MD_MODE_RW && (ret = md_checkpoint(c->md)))
			return commit_failed(c, ret);
		return 0;
	}
	ret = md_pre_commit(c->md);
	if (!ret) {
		/* The data behind every frozen bit was written before the
		 * freeze; make it durable before the bits are (spec 3.2). */
		ret = bio_flush(c->dest_fd);
		if (ret) {
			g_warning("flush of dest failed: %s; metadata rolled back, "
				  "read-only", g_strerror(-ret));
			md_fail_transaction(c->md, ret);
		}
	}
	if (!ret)
		ret = md_commit(c->md);
	if (!ret && checkpoint)
		ret = md_checkpoint(c->md);
	return ret ? commit_failed(c, ret) : 0;
}

/*
 * Group commit (dm-clone parks flushes behind one commit): a caller needs
 * a commit that starts after it arrived, so that it covers every write the
 * caller saw acknowledged. While one runs, every caller that arrives waits
 * for the next, and that one serves them all: concurrent fsyncs cost one
 * DEST flush and one META commit, not one each. A caller that slept past
 * its commit returns 0; a failure of that commit reaches it through the
 * error marks (clone_fsync).
 */
static int commit(struct clone *c, bool flush, bool checkpoint)
{
	uint64_t want;
	int ret;

	if (c->opt.ro)
		return 0;
	g_mutex_lock(&c->group_lock);
	want = c->commits_started + 1;
	c->next_flushes |= flush;
	c->next_checkpoint |= checkpoint;
	while (c->commits_finished < want) {
		if (c->committing) {
			g_cond_wait(&c->group_cond, &c->group_lock);
			continue;
		}
		c->committing = true;
		flush = c->next_flushes;
		checkpoint = c->next_checkpoint;
		c->next_flushes = c->next_checkpoint = false;
		c->commits_started++;
		g_mutex_unlock(&c->group_lock);
		ret = commit_now(c, flush, checkpoint);
		g_mutex_lock(&c->group_lock);
		c->committing = false;
		c->commits_finished = c->commits_started;
		c->last_result = ret;
		g_cond_broadcast(&c->group_cond);
	}
	ret = c->commits_finished == want ? c->last_result : 0;
	g_mutex_unlock(&c->group_lock);
	return ret;
}

uint64_t clone_error_mark(struct clone *c)
{
	return __atomic_load_n(&c->lost_writes, __ATOMIC_SEQ_CST);
}

int clone_fsync(struct clone *c, uint64_t *seen)
{
	uint64_t now, was;
	int ret;

	/* A user waits on this one: copies make way while it runs (spec 3.8). */
	hydrate_flush_begin(c->hy);
	ret = commit(c, true, false);
	hydrate_flush_end(c->hy);

	if (!seen)
		return ret;
	now = clone_error_mark(c);
	was = __atomic_load_n(seen, __ATOMIC_SEQ_CST);
	/* Several syncs of one open file may race here: the one that moves
	 * its mark forward reports the error, once; a mark never goes back. */
	while (was < now) {
		if (__atomic_compare_exchange_n(seen, &was, now, false,
						__ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
			return ret ? ret : -EIO;
	}
	return ret;
}

int clone_commit(struct clone *c) { return commit(c, false, true); }

static gpointer committer(gpointer arg)
{
	struct clone *c = arg;

	g_mutex_lock(&c->timer_lock);
	while (!c->stopping) {
		gint64 wake = g_get_monotonic_time() +
			      (gint64)c->opt.commit_period_ms * 1000;

		while (!c->stopping &&
		       g_cond_wait_until(&c->timer_cond, &c->timer_lock, wake))
			;
		if (c->stopping)
			break;
		g_mutex_unlock(&c->timer_lock);
		commit(c, false, true);	/* the periodic checkpoint */
		g_mutex_lock(&c->timer_lock);
	}
	g_mutex_unlock(&c->timer_lock);
	return NULL;
}

int clone_start(struct clone *c)
{
	int ret = 0;

	if (!c->opt.ro) {
		ret = hydrate_start(c->hy);
		c->committer = g_thread_new("commit", committer, c);
	}
	return ret;
}

int clone_close(struct clone *c)
{
	int ret;

	/* Workers first, then the timer, then the last commit: a commit that
	 * fails kicks the (stopped) engine, so it is freed only after. */
	if (c->nbd) /* copies waiting for the server give up */
		nbd_source_stop(c->nbd);
	hydrate_stop(c->hy);
	if (c->committer) {
		g_mutex_lock(&c->timer_lock);
		c->stopping = true;
		g_cond_broadcast(&c->timer_cond);
		g_mutex_unlock(&c->timer_lock);
		g_thread_join(c->committer);
	}
	/* The final commit, after the timer is gone (spec 6.7). */
	ret = commit(c, true, true);
	hydrate_free(c->hy);
	md_close(c->md);
	clone_free_files(c);
	return ret;
}

/* ---- I/O ---- */

/* The walk of clone_map_read; @checked: @fn reads through blockio, which
 * checks each read itself, else this asks blockio first (the caller will
 * read the extents outside it, splicing). */
static ssize_t map_read(struct clone *c, uint64_t off, size_t len,
			clone_extent_fn fn, void *arg, bool checked)
{
	uint64_t end, pos;
	bool cor = false;

	if (off >= c->size)
		return 0;
	end = MIN(off + len, c->size);
	if (!c->opt.ro) {
		hydrate_foreground(c->hy);
		cor = hydrate_copy_on_read(c->hy);
	}
	profile_rec_touch(c->rec, region_of(c, off), regions_in(c, off, end));

	/* Runs of regions in one state become one extent. */
	for (pos = off; pos < end;) {
		uint64_t r = region_of(c, pos);
		bool hyd = md_region_hydrated(c->md, r);
		uint64_t run_end = MIN(region_start(c, r + 1), end);
		int fd, ret;

		if (cor && !hyd)
			hydrate_queue(c->hy, r);
		while (run_end < end &&
		       md_region_hydrated(c->md, region_of(c, run_end)) == hyd) {
			if (cor && !hyd)
				hydrate_queue(c->hy, region_of(c, run_end));
			run_end = MIN(run_end + c->region_size, end);
		}
		/* a read as a hint (spec 3.9): never waits for the copy */
		if (!hyd && !c->opt.ro)
			hydrate_hint(c->hy, r, regions_in(c, pos, run_end));
		fd = hyd ? c->dest_fd : c->src_fd;
		if (fd < 0 && !checked)
			return -EOPNOTSUPP; /* an NBD SOURCE: clone_read */
		ret = checked ? 0 : bio_will_read(fd, pos, run_end - pos);
		if (!ret)
			ret = fn(arg, fd, pos, run_end - pos);
		if (ret && !hyd && ret != -ENOMEM) /* SOURCE failed: status says so */
			hydrate_read_failed(c->hy, ret, pos, run_end - pos);
		if (ret)
			return ret;
		pos = run_end;
	}
	return (ssize_t)(end - off);
}

ssize_t clone_map_read(struct clone *c, uint64_t off, size_t len,
		       clone_extent_fn fn, void *arg)
{
	return map_read(c, off, len, fn, arg, false);
}

struct read_ctx {
	char *buf;
	uint64_t base;
	struct clone *c;
};

/* fd -1: SOURCE is an NBD export. */
static int read_extent(void *arg, int fd, uint64_t off, size_t len)
{
	struct read_ctx *rc = arg;

	if (fd < 0)
		return nbd_source_pread(rc->c->nbd, rc->buf + (off - rc->base), len, off);
	return bio_pread(fd, rc->buf + (off - rc->base), len, off);
}

bool clone_source_remote(struct clone *c)
{
	return c->nbd != NULL;
}

ssize_t clone_read(struct clone *c, void *buf, size_t len, uint64_t off)
{
	struct read_ctx rc = { buf, off, c };

	return map_read(c, off, len, read_extent, &rc, true);
}

static int dest_zero(struct clone *c, uint64_t off, uint64_t len, bool punch);

/* What a write puts in DEST: the bytes of [base, ...) in memory, or zeros
 * (mem NULL: a discard; punch: a hole). */
struct wsrc {
	const char *mem;
	uint64_t base;
	bool punch;
};

static int put(struct clone *c, const struct wsrc *w, uint64_t off, uint64_t len)
{
	if (w->mem)
		return bio_pwrite(c->dest_fd, w->mem + (off - w->base), len, off);
	return dest_zero(c, off, len, w->punch);
}

/* A partly written region, locked by the caller: copy it first, unless it
 * was hydrated meanwhile. */
static int copy_if_unhydrated(struct clone *c, uint64_t r)
{
	return md_region_hydrated(c->md, r) ? 0 : hydrate_copy(c->hy, r, 1);
}

/* A write to [pos, end), part of region r only, locked by the caller: its
 * bytes go to DEST with the region's copy. */
static int write_part(struct clone *c, const struct wsrc *w, uint64_t r,
		      uint64_t pos, uint64_t end)
{
	int ret;

	if (w->mem && !md_region_hydrated(c->md, r))
		return hydrate_copy_write(c->hy, r, w->mem + (pos - w->base), pos,
					  end - pos);
	ret = copy_if_unhydrated(c, r);
	return ret ? ret : put(c, w, pos, end - pos);
}

/*
 * Write from pos, in unhydrated region region_of(pos), through the run of
 * unhydrated regions that follows, up to end: their locks in one go, one
 * DEST write. A region the write covers only in part is copied first (spec
 * 2.3; a short last region always is), or, a write within one region, with
 * it; every region of the run is marked before the write is acknowledged
 * (spec 2.4). Returns where the run ended, or -errno.
 */
static int64_t write_unhydrated_run(struct clone *c, const struct wsrc *w,
				    uint64_t pos, uint64_t end)
{
	uint64_t first = region_of(c, pos), last = first, run_end;
	int ret = 0;

	while (region_start(c, last + 1) < end && !md_region_hydrated(c->md, last + 1))
		last++;
	run_end = MIN(region_start(c, last + 1), end);
	if (md_mode(c->md) != MD_MODE_RW)
		return -EIO; /* no new bits in ro/fail mode (spec 4.6) */

	hydrate_lock(c->hy, first, last - first + 1);
	if (first == last && (pos != region_start(c, first) ||
			      run_end != region_start(c, first) + c->region_size)) {
		ret = write_part(c, w, first, pos, run_end);
	} else {
		if (pos != region_start(c, first))
			ret = copy_if_unhydrated(c, first);
		if (!ret && run_end != region_start(c, last) + c->region_size)
			ret = copy_if_unhydrated(c, last);
		if (!ret)
			ret = put(c, w, pos, run_end - pos);
	}
	if (!ret)
		ret = md_set_range_hydrated(c->md, first, last - first + 1);
	hydrate_unlock(c->hy, first, last - first + 1);
	return ret ? ret : (int64_t)run_end;
}

/* The shared walk of writes and discards, in ascending order: runs of
 * hydrated regions go to DEST in one call, runs of unhydrated ones as above. */
static int write_walk(struct clone *c, const struct wsrc *w, uint64_t off, uint64_t end)
{
	uint64_t pos = off;

	while (pos < end) {
		uint64_t piece_end = MIN(region_start(c, region_of(c, pos) + 1), end);
		int64_t ret;

		if (md_region_hydrated(c->md, region_of(c, pos))) {
			while (piece_end < end &&
			       md_region_hydrated(c->md, region_of(c, piece_end)))
				piece_end = MIN(piece_end + c->region_size, end);
			ret = put(c, w, pos, piece_end - pos);
		} else {
			ret = write_unhydrated_run(c, w, pos, end);
			if (ret > 0)
				piece_end = (uint64_t)ret;
		}
		if (ret < 0)
			return (int)ret;
		pos = piece_end;
	}
	return 0;
}

ssize_t clone_write(struct clone *c, const void *buf, size_t len, uint64_t off)
{
	struct wsrc w = { .mem = buf, .base = off };
	uint64_t end;
	int ret;

	if (c->opt.ro)
		return -EROFS;
	if (len == 0)
		return 0;
	if (off >= c->size)
		return -ENOSPC; /* like writing past the end of a device */
	end = MIN(off + len, c->size);
	hydrate_foreground(c->hy);
	profile_rec_touch(c->rec, region_of(c, off), regions_in(c, off, end));
	ret = write_walk(c, &w, off, end);
	return ret ? ret : (ssize_t)(end - off);
}

static int dest_zero(struct clone *c, uint64_t off, uint64_t len, bool punch)
{
	int mode = FALLOC_FL_KEEP_SIZE;

	mode |= punch && __atomic_load_n(&c->discard_passdown, __ATOMIC_RELAXED)
			? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE;
	return bio_zero(c->dest_fd, mode, off, len);
}

int clone_zero(struct clone *c, uint64_t off, uint64_t len, bool punch)
{
	struct wsrc w = { .punch = punch };

	if (c->opt.ro)
		return -EROFS;
	if (off >= c->size || len == 0)
		return 0;
	return write_walk(c, &w, off, MIN(off + len, c->size));
}

bool clone_all_hydrated(struct clone *c)
{
	return md_all_hydrated(c->md);
}

int clone_hydrated_dest(struct clone *c)
{
	struct stat st;

	if (!clone_all_hydrated(c))
		return -1;
	/* The kernel will write DEST itself: only once no rollback can take
	 * a bit back, i.e. every bit is committed and metadata is healthy
	 * (spec 2.9). */
	if (commit(c, false, false) || md_changed(c->md) || md_mode(c->md) != MD_MODE_RW)
		return -1;
	if (fstat(c->dest_fd, &st))
		return -1;
	/* A bigger device would show what lies past the image end. */
	return S_ISREG(st.st_mode) && (uint64_t)st.st_size == c->size ? c->dest_fd : -1;
}

void clone_get_status(struct clone *c, struct clone_status *st)
{
	memset(st, 0, sizeof(*st));
	st->mode = md_mode(c->md);
	st->meta_block_size = MD_BLOCK_SIZE;
	md_space(c->md, &st->meta_used, &st->meta_total);
	st->region_size = c->region_size;
	st->nr_regions = c->nr_regions;
	st->nr_hydrated = md_nr_hydrated(c->md);
	st->image_size = c->size;
	st->bytes_hydrated = st->nr_hydrated * c->region_size;
	if (st->nr_hydrated && md_region_hydrated(c->md, c->nr_regions - 1))
		st->bytes_hydrated -= c->nr_regions * c->region_size - c->size;
	st->ro = c->opt.ro;
	st->discard_passdown = __atomic_load_n(&c->discard_passdown, __ATOMIC_RELAXED);
	st->lost_writes = clone_error_mark(c);
	hydrate_get_stats(c->hy, &st->hy);
	st->remote = c->nbd != NULL;
	if (c->nbd)
		nbd_source_get_stats(c->nbd, &st->src);
}

/* ---- access profiles (spec 3.9) ---- */

int clone_set_prefetch(struct clone *c, const struct profile *p,
		       const char *path, char *err, size_t errlen)
{
	char why[256];
	int ret = profile_check_geometry(p, c->region_size, c->nr_regions, c->size,
					 why, sizeof(why));

	if (ret)
		return errf(err, errlen, ret, "profile %s: %s", path, why);
	hydrate_set_prefetch(c->hy, p->runs, p->nr_runs);
	g_message("prefetch: %" G_GUINT64_FORMAT " regions in %" G_GUINT64_FORMAT
		  " runs from %s", p->total, p->nr_runs, path);
	return 0;
}

int clone_prefetch(struct clone *c, const char *path, char *err, size_t errlen)
{
	struct profile p;
	int ret = profile_load(path, &p, err, errlen);

	if (!ret)
		ret = clone_set_prefetch(c, &p, path, err, errlen);
	profile_clear(&p);
	return ret;
}

void *clone_profile(struct clone *c, size_t *len)
{
	struct profile p;
	void *b;

	profile_rec_get(c->rec, &p);
	b = profile_encode(&p, len);
	profile_clear(&p);
	return b;
}
