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
#include "clonefs/clone.h"
#include "clonefs/blockio.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define META_LOCK_WAIT_S 30

struct clone {
	struct clone_options opt;
	int src_fd, dest_fd, lock_fd;
	int copy_src_fd, stream_src_fd, write_src_fd; /* SOURCE again, for copies: see clone_open */
	uint64_t size;
	uint32_t region_size;
	unsigned region_shift;
	uint64_t nr_regions;
	struct md *md;
	struct hydrate *hy;
	bool discard_passdown;
	bool src_is_file; /* its size can change under us */

	uid_t image_uid;
	gid_t image_gid;
	mode_t image_mode;
	/* Errors that lost acknowledged data, in the way of Linux's errseq:
	 * each open file remembers the count it has seen (spec 2.5b). */
	uint64_t lost_writes;

	GMutex commit_lock; /* one commit at a time */
	GMutex timer_lock;
	GCond timer_cond;
	bool stopping;
	GThread *committer;
};

uint64_t clone_size(struct clone *c) { return c->size; }
bool clone_readonly(struct clone *c) { return c->opt.ro; }
struct hydrate *clone_hydrate(struct clone *c) { return c->hy; }

void clone_set_discard_passdown(struct clone *c, bool on)
{
	__atomic_store_n(&c->discard_passdown, on, __ATOMIC_RELAXED);
}

static uint64_t region_of(struct clone *c, uint64_t off)
{
	return off >> c->region_shift;
}

static uint64_t region_start(struct clone *c, uint64_t region)
{
	return region << c->region_shift;
}

/* ---- opening: validate everything before modifying anything ---- */

static int fail(char *err, size_t errlen, const char *role, const char *path,
		const char *fmt, ...) G_GNUC_PRINTF(5, 6);

static int fail(char *err, size_t errlen, const char *role, const char *path,
		const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "%s %s: %s", role, path, why);
	return -EINVAL;
}

static int file_size(int fd, const struct stat *st, uint64_t *size)
{
	if (S_ISBLK(st->st_mode))
		return ioctl(fd, BLKGETSIZE64, size) ? -errno : 0;
	*size = (uint64_t)st->st_size;
	return 0;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* Hold META's lock for the daemon's life: a second daemon on the same META
 * waits (a remount right after umount), then gives up. */
static int lock_meta(int fd)
{
	for (int i = 0; i < META_LOCK_WAIT_S * 10; i++) {
		if (!flock(fd, LOCK_EX | LOCK_NB))
			return 0;
		if (errno != EWOULDBLOCK)
			return -errno;
		g_usleep(100 * 1000);
	}
	return -EBUSY;
}

/* The image's owner is the mounting user and gives nobody more than SOURCE
 * does: its read bits narrow 0600 (the write bit is the clone's own, as
 * writes never reach SOURCE); uid=, gid= and umask= widen on purpose. */
static void image_owner(struct clone *c, const struct clone_options *o,
			const struct stat *src)
{
	mode_t rw = o->ro ? 0444 : 0666;

	c->image_uid = o->uid >= 0 ? (uid_t)o->uid : getuid();
	c->image_gid = o->gid >= 0 ? (gid_t)o->gid : getgid();
	if (o->umask >= 0)
		c->image_mode = rw & ~(mode_t)o->umask;
	else
		c->image_mode = rw & 0600 & (src->st_mode | 0222);
}

void clone_image_owner(struct clone *c, uid_t *uid, gid_t *gid, mode_t *mode)
{
	*uid = c->image_uid;
	*gid = c->image_gid;
	*mode = c->image_mode;
}

static int stat_path(const char *path, bool nofollow, struct stat *st)
{
	if (nofollow ? lstat(path, st) : stat(path, st))
		return -errno;
	return 0;
}

int clone_open(const char *source, const char *dest, const char *meta,
	       const struct clone_options *o, struct clone **out, char *err,
	       size_t errlen)
{
	struct clone *c = g_new0(struct clone, 1);
	struct stat sst, dst, mst;
	bool dest_exists, meta_exists;
	uint64_t dsize = 0;
	int nofollow = o->nofollow ? O_NOFOLLOW : 0;
	int ret;
	char mderr[256], path[64];

	c->opt = *o;
	c->src_fd = c->dest_fd = c->lock_fd = c->copy_src_fd = c->stream_src_fd =
		c->write_src_fd = -1;
	c->discard_passdown = !o->no_discard_passdown;
	g_mutex_init(&c->commit_lock);
	g_mutex_init(&c->timer_lock);
	g_cond_init(&c->timer_cond);

	if (!options_region_size_valid(o->region_size)) {
		snprintf(err, errlen, "region size %u: must be a power of two "
			 "from 4096 to 1073741824 bytes", o->region_size);
		ret = -EINVAL;
		goto out;
	}
	c->region_size = o->region_size;
	c->region_shift = (unsigned)__builtin_ctz(o->region_size);

	/* SOURCE: read-only, never written (spec 1.4). */
	c->src_fd = open(source, O_RDONLY | O_CLOEXEC | nofollow);
	if (c->src_fd < 0 || fstat(c->src_fd, &sst)) {
		ret = fail(err, errlen, "source", source, "%s", g_strerror(errno));
		goto out;
	}
	if (!S_ISREG(sst.st_mode) && !S_ISBLK(sst.st_mode)) {
		ret = fail(err, errlen, "source", source,
			   "not a regular file or block device");
		goto out;
	}
	if ((ret = file_size(c->src_fd, &sst, &c->size))) {
		ret = fail(err, errlen, "source", source, "%s", g_strerror(-ret));
		goto out;
	}
	if (c->size == 0) {
		ret = fail(err, errlen, "source", source, "is empty");
		goto out;
	}
	c->nr_regions = (c->size + c->region_size - 1) >> c->region_shift;
	c->src_is_file = S_ISREG(sst.st_mode);
	image_owner(c, o, &sst);

	/* DEST and META: distinct from SOURCE and each other (spec 1.2). */
	ret = stat_path(dest, o->nofollow, &dst);
	dest_exists = !ret;
	if (ret && ret != -ENOENT) {
		ret = fail(err, errlen, "dest", dest, "%s", g_strerror(-ret));
		goto out;
	}
	if (dest_exists) {
		if (S_ISLNK(dst.st_mode)) {
			ret = fail(err, errlen, "dest", dest,
				   "is a symbolic link (nofollow)");
			goto out;
		}
		if (same_file(&dst, &sst)) {
			ret = fail(err, errlen, "dest", dest,
				   "is the same file as the source");
			goto out;
		}
		if (!S_ISREG(dst.st_mode) && !S_ISBLK(dst.st_mode)) {
			ret = fail(err, errlen, "dest", dest,
				   "not a regular file or block device");
			goto out;
		}
	}
	if (!dest_exists && o->ro) {
		ret = fail(err, errlen, "dest", dest, "%s (needed with -o ro)",
			   g_strerror(ENOENT));
		goto out;
	}
	ret = stat_path(meta, o->nofollow, &mst);
	meta_exists = !ret;
	if (ret && ret != -ENOENT) {
		ret = fail(err, errlen, "meta", meta, "%s", g_strerror(-ret));
		goto out;
	}
	if (meta_exists) {
		if (S_ISLNK(mst.st_mode)) {
			ret = fail(err, errlen, "meta", meta,
				   "is a symbolic link (nofollow)");
			goto out;
		}
		if (same_file(&mst, &sst) || (dest_exists && same_file(&mst, &dst))) {
			ret = fail(err, errlen, "meta", meta, "is the same file as the %s",
				   same_file(&mst, &sst) ? "source" : "dest");
			goto out;
		}
	} else if (o->ro) {
		ret = fail(err, errlen, "meta", meta, "%s (needed with -o ro)",
			   g_strerror(ENOENT));
		goto out;
	}
	if (dest_exists) {
		c->dest_fd = open(dest, (o->ro ? O_RDONLY : O_RDWR) | O_CLOEXEC | nofollow);
		if (c->dest_fd < 0) {
			ret = fail(err, errlen, "dest", dest, "%s", g_strerror(errno));
			goto out;
		}
		if ((ret = file_size(c->dest_fd, &dst, &dsize))) {
			ret = fail(err, errlen, "dest", dest, "%s", g_strerror(-ret));
			goto out;
		}
		if (S_ISREG(dst.st_mode) && dsize > c->size) {
			ret = fail(err, errlen, "dest", dest, "is larger than the "
				   "source (%" G_GUINT64_FORMAT " > %" G_GUINT64_FORMAT
				   " bytes)", dsize, c->size);
			goto out;
		}
		if (S_ISBLK(dst.st_mode) && dsize < c->size) {
			ret = fail(err, errlen, "dest", dest, "device is smaller than "
				   "the source (%" G_GUINT64_FORMAT " < %" G_GUINT64_FORMAT
				   " bytes)", dsize, c->size);
			goto out;
		}
	}
	if (meta_exists) {
		c->lock_fd = open(meta, O_RDONLY | O_CLOEXEC | nofollow);
		if (c->lock_fd < 0) {
			ret = fail(err, errlen, "meta", meta, "%s", g_strerror(errno));
			goto out;
		}
		if ((ret = lock_meta(c->lock_fd))) {
			ret = fail(err, errlen, "meta", meta, "%s", ret == -EBUSY ?
				   "in use by another clonefs daemon" : g_strerror(-ret));
			goto out;
		}
	}

	struct md_geometry geo = { c->region_size, c->nr_regions };
	ret = md_open(meta, &geo, o->ro, &c->md, mderr, sizeof(mderr));
	if (ret) {
		fail(err, errlen, "meta", meta, "%s", mderr);
		goto out;
	}
	if (!meta_exists) {
		c->lock_fd = open(meta, O_RDONLY | O_CLOEXEC | nofollow);
		if (c->lock_fd < 0 || lock_meta(c->lock_fd)) {
			ret = fail(err, errlen, "meta", meta, "cannot lock");
			goto out;
		}
	}

	/* Only now modify DEST: create it sparse, or extend it (spec 1.2). */
	if (!dest_exists) {
		c->dest_fd = open(dest, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | nofollow,
				  0600);
		if (c->dest_fd < 0) {
			ret = fail(err, errlen, "dest", dest, "%s", g_strerror(errno));
			goto out;
		}
		if (fstat(c->dest_fd, &dst)) {
			ret = -errno;
			goto out;
		}
	}
	if (S_ISREG(dst.st_mode) && dsize < c->size && !o->ro &&
	    ftruncate(c->dest_fd, (off_t)c->size)) {
		ret = fail(err, errlen, "dest", dest, "cannot extend: %s",
			   g_strerror(errno));
		goto out;
	}
	/*
	 * Hydration reads SOURCE through files of its own. Sharing the users'
	 * file, its reads grew the readahead window of their random 4 KiB
	 * reads to read_ahead_kb (8 MiB here), queueing them behind big reads:
	 * p99 latency during hydration 25x idle, now about 2x (scripts/bench).
	 * Background copies, which go on in order, read with the kernel's
	 * readahead: a dense 1 GiB copy phase took 0.30-0.37 s, against
	 * 0.42-0.56 with our own 4 MiB WILLNEED ahead of each batch. Where a
	 * hole follows, they read without it, which would fill the page cache
	 * with the hole's zeros (90%-sparse copy, 8 pairs: median 0.243 s,
	 * against 0.258 with it). Writes' copies read through a file of their
	 * own, with readahead: a region next to cached ones brings its
	 * neighbours (context readahead), which later first writes then find
	 * in memory. 4 KiB O_DIRECT writes at QD32 to a cold clone, 8 s, 9
	 * pairs: median 66.1k IOPS against 50.1k without readahead.
	 */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", c->src_fd);
	c->copy_src_fd = open(path, O_RDONLY | O_CLOEXEC);
	c->stream_src_fd = open(path, O_RDONLY | O_CLOEXEC);
	c->write_src_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (c->copy_src_fd < 0 || c->stream_src_fd < 0 || c->write_src_fd < 0) {
		ret = fail(err, errlen, "source", source, "cannot open again: %s",
			   g_strerror(errno));
		goto out;
	}
	posix_fadvise(c->copy_src_fd, 0, 0, POSIX_FADV_RANDOM);
	bio_set_role(c->src_fd, BIO_SOURCE);
	bio_set_role(c->copy_src_fd, BIO_SOURCE);
	bio_set_role(c->stream_src_fd, BIO_SOURCE);
	bio_set_role(c->write_src_fd, BIO_SOURCE);
	bio_set_role(c->dest_fd, BIO_DEST);

	struct hydrate_target t = {
		.src_fd = c->copy_src_fd, .stream_fd = c->stream_src_fd,
		.write_fd = c->write_src_fd, .dest_fd = c->dest_fd, .md = c->md,
		.image_size = c->size, .region_size = c->region_size,
		.nr_regions = c->nr_regions,
	};
	c->hy = hydrate_new(&t, o);
	*out = c;
	return 0;
out:
	if (ret > 0)
		ret = -ret;
	if (c->md)
		md_close(c->md);
	if (c->src_fd >= 0)
		close(c->src_fd);
	if (c->copy_src_fd >= 0)
		close(c->copy_src_fd);
	if (c->stream_src_fd >= 0)
		close(c->stream_src_fd);
	if (c->write_src_fd >= 0)
		close(c->write_src_fd);
	if (c->dest_fd >= 0)
		close(c->dest_fd);
	if (c->lock_fd >= 0)
		close(c->lock_fd);
	g_free(c);
	return ret ? ret : -EINVAL;
}

/* ---- commit ---- */

/* An error lost data that was acknowledged but not yet durable: every file
 * open now must hear of it at its next fsync (spec 2.5b). */
static void lost_writes(struct clone *c)
{
	__atomic_add_fetch(&c->lost_writes, 1, __ATOMIC_SEQ_CST);
}

static int commit(struct clone *c, bool flush_anyway)
{
	int ret = 0;

	g_mutex_lock(&c->commit_lock);
	if (c->opt.ro)
		goto out;
	if (!md_changed(c->md) || md_mode(c->md) != MD_MODE_RW) {
		if (flush_anyway && (ret = bio_flush(c->dest_fd))) {
			g_warning("flush of dest failed: %s", g_strerror(-ret));
			lost_writes(c);
		}
		goto out;
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
	if (ret) {
		g_warning("metadata commit failed: %s", g_strerror(-ret));
		lost_writes(c);
		hydrate_kick(c->hy);
	}
out:
	g_mutex_unlock(&c->commit_lock);
	return ret;
}

uint64_t clone_error_mark(struct clone *c)
{
	return __atomic_load_n(&c->lost_writes, __ATOMIC_SEQ_CST);
}

int clone_fsync(struct clone *c, uint64_t *seen)
{
	int ret = commit(c, true);
	uint64_t now = clone_error_mark(c);

	if (!seen)
		return ret;
	if (!ret && *seen != now)
		ret = -EIO; /* an error since this file last synced */
	*seen = now;
	return ret;
}

int clone_commit(struct clone *c) { return commit(c, false); }

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
		commit(c, false);
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
	hydrate_stop(c->hy);
	if (c->committer) {
		g_mutex_lock(&c->timer_lock);
		c->stopping = true;
		g_cond_broadcast(&c->timer_cond);
		g_mutex_unlock(&c->timer_lock);
		g_thread_join(c->committer);
	}
	/* The final commit, after the timer is gone (spec 6.7). */
	ret = commit(c, true);
	hydrate_free(c->hy);
	md_close(c->md);
	bio_forget(c->src_fd);
	bio_forget(c->copy_src_fd);
	bio_forget(c->stream_src_fd);
	bio_forget(c->write_src_fd);
	bio_forget(c->dest_fd);
	close(c->src_fd);
	close(c->copy_src_fd);
	close(c->stream_src_fd);
	close(c->write_src_fd);
	close(c->dest_fd);
	close(c->lock_fd);
	g_mutex_clear(&c->commit_lock);
	g_mutex_clear(&c->timer_lock);
	g_cond_clear(&c->timer_cond);
	g_free(c);
	return ret;
}

/* ---- I/O ---- */

/* A SOURCE that shrank under the mount reads short: an I/O error, never
 * the zeros a short read or splice would give (spec 1.4). */
static int source_holds(struct clone *c, uint64_t end)
{
	struct stat st;

	if (!c->src_is_file)
		return 0;
	if (fstat(c->src_fd, &st))
		return -errno;
	return (uint64_t)st.st_size < end ? -EIO : 0;
}

ssize_t clone_map_read(struct clone *c, uint64_t off, size_t len,
		       clone_extent_fn fn, void *arg)
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

	/* Runs of regions in one state become one extent. */
	for (pos = off; pos < end;) {
		uint64_t r = region_of(c, pos);
		bool hyd = md_region_hydrated(c->md, r);
		uint64_t run_end = MIN(region_start(c, r + 1), end);
		int ret;

		if (cor && !hyd)
			hydrate_queue(c->hy, r);
		while (run_end < end &&
		       md_region_hydrated(c->md, region_of(c, run_end)) == hyd) {
			if (cor && !hyd)
				hydrate_queue(c->hy, region_of(c, run_end));
			run_end = MIN(run_end + c->region_size, end);
		}
		ret = hyd ? 0 : source_holds(c, run_end);
		if (!ret)
			ret = fn(arg, hyd ? c->dest_fd : c->src_fd, pos, run_end - pos);
		if (ret)
			return ret;
		pos = run_end;
	}
	return (ssize_t)(end - off);
}

struct read_ctx {
	char *buf;
	uint64_t base;
};

static int read_extent(void *arg, int fd, uint64_t off, size_t len)
{
	struct read_ctx *rc = arg;

	return bio_pread(fd, rc->buf + (off - rc->base), len, off);
}

ssize_t clone_read(struct clone *c, void *buf, size_t len, uint64_t off)
{
	struct read_ctx rc = { buf, off };

	return clone_map_read(c, off, len, read_extent, &rc);
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
 * bytes go to DEST with the region's copy where hydrate can merge them. */
static int write_part(struct clone *c, const struct wsrc *w, uint64_t r,
		      uint64_t pos, uint64_t end)
{
	int ret;

	if (w->mem && !md_region_hydrated(c->md, r)) {
		ret = hydrate_copy_write(c->hy, r, w->mem + (pos - w->base), pos,
					 end - pos);
		if (ret != -EOPNOTSUPP)
			return ret;
	}
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
	if (commit(c, false) || md_changed(c->md) || md_mode(c->md) != MD_MODE_RW)
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
}
