/*
 * md_open.c - opening META (metadata.h's md_open*): lock it, read both
 * superblock slots, then either load the newest valid state (every
 * reachable block verified and accounted for in the space map) or, when
 * META is missing or unformatted, format it.
 *
 * A new META is written as "<path>.new" and renamed into place, so it
 * appears whole or not at all (issue 22 item 9); a block device cannot be
 * renamed and is formatted in place, its superblock last.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* SEEK_DATA, SEEK_HOLE, renameat2 */
#endif
#include "md_impl.h"
#include "clonefs/options.h"
#include "clonefs/blockio.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOCK_WAIT_MS	30000	/* md_open_fd waits this long for the flock */

static int check_geometry(const struct md_geometry *geo, char *err, size_t len)
{
	uint32_t rs = geo->region_size;

	if (!options_region_size_valid(rs))
		return errf(err, len, -EINVAL, "region size %u: " OPTIONS_REGION_SIZE_RULE, rs);
	if (geo->region_count == 0 || !bt_nodes(geo->region_count) ||
	    tm_blocks_needed(geo->region_count) >= MD_ENTRY_MAX_BLOCKS)
		return errf(err, len, -EINVAL, "region count %" PRIu64 " is out of range",
			       geo->region_count);
	return 0;
}

static uint64_t regions_for(uint64_t image_size, uint32_t region_size)
{
	if (!region_size)
		return 0;
	return image_size / region_size + (image_size % region_size != 0);
}

/* True if the file holds only zeros (holes are skipped). */
static int file_is_zero(int fd, uint64_t size, bool *zero)
{
	uint8_t *buf = g_malloc(1 << 20);
	uint64_t off = 0;
	int r = 0;

	*zero = true;
	while (off < size && *zero) {
		uint64_t data, hole;

		if (bio_data_run(fd, off, size, &data, &hole))
			break;
		for (off = data; off < hole && *zero; ) {
			size_t n = (size_t)MIN((uint64_t)(1 << 20), hole - off);

			r = bio_pread(fd, buf, n, off);
			if (r)
				goto out;
			*zero = bio_all_zero(buf, n);
			off += n;
		}
		if (data == size)
			break;
	}
out:
	g_free(buf);
	return r;
}

static unsigned lock_wait_ms = LOCK_WAIT_MS;

void md_test_lock_wait(unsigned ms)
{
	lock_wait_ms = ms ? ms : LOCK_WAIT_MS;
}

/* Exclusive flock(2) on @fd, polling every 100 ms; -EBUSY if still held. */
static int lock_meta(int fd)
{
	for (unsigned waited = 0;; waited += 100) {
		if (!flock(fd, LOCK_EX | LOCK_NB))
			return 0;
		if (errno != EWOULDBLOCK)
			return -errno;
		if (waited >= lock_wait_ms)
			return -EBUSY;
		g_usleep(100 * 1000);
	}
}

static int fsync_dir(const char *path)
{
	char *dir = g_path_get_dirname(path);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;

	g_free(dir);
	if (fd < 0)
		return -errno;
	if (fsync(fd))
		r = -errno;
	close(fd);
	return r;
}

/*
 * Opens and locks "<path>.new". Not O_TRUNC at open: another daemon may be
 * formatting it; truncate only once it is ours and still has that name (a
 * stale second link to a live META is dropped, never truncated).
 */
static int open_new(const char *tmp, bool nofollow, int *out)
{
	for (int tries = 0; tries < 3; tries++) {
		int fd = open(tmp, O_RDWR | O_CREAT | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0), 0600);
		struct stat a, b;
		int r;

		if (fd < 0)
			return -errno;
		r = lock_meta(fd);
		if (!r && (fstat(fd, &a) || (nofollow ? lstat(tmp, &b) : stat(tmp, &b))))
			r = -errno;
		if (!r && (a.st_dev != b.st_dev || a.st_ino != b.st_ino))
			r = -EAGAIN;	/* renamed or removed while we waited */
		if (!r && a.st_nlink > 1)
			r = unlink(tmp) ? -errno : -EAGAIN;
		if (!r && ftruncate(fd, 0))
			r = -errno;
		if (!r) {
			*out = fd;
			return 0;
		}
		close(fd);
		if (r != -EAGAIN)
			return r;
	}
	return -EAGAIN;
}

/* rename(2) that never replaces @to; where the filesystem cannot, the next best. */
static int rename_noreplace(const char *from, const char *to)
{
	if (!renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE))
		return 0;
	if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
		return -errno;
	if (!link(from, to))
		return unlink(from) ? -errno : 0;
	if (errno != EPERM && errno != EOPNOTSUPP && errno != ENOSYS)
		return -errno;
	return rename(from, to) ? -errno : 0;
}

/*
 * Writes a fresh META of @nr blocks into @fd: the space map, a flush, then
 * superblock 0 and a flush (commit_locked). On success the md owns @fd.
 */
static int format_fd(int fd, uint64_t nr, const struct md_geometry *geo, struct md **out)
{
	struct md *md;
	int r = md_new(geo, nr, &md);

	if (r)
		return r;
	md->tm.fd = fd;
	/* The kernel's generator, not OpenSSL's: RAND_bytes() brings up
	 * OpenSSL's DRBG and providers, megabytes of libcrypto kept mapped in
	 * the daemon for one uuid. */
	if (getrandom(md->uuid, 16, 0) != 16)
		for (int i = 0; i < 16; i++)
			md->uuid[i] = (uint8_t)g_random_int();
	md->slot = 1;	/* so the first superblock goes to slot 0 */
	set_bit(md->tm.busy, 0);
	set_bit(md->tm.busy, 1);
	r = tm_mark(&md->tm, 0, true);
	if (!r)
		r = tm_mark(&md->tm, 1, true);
	if (!r)
		r = md_commit_locked(md);
	if (r) {
		md->tm.fd = -1;
		md_free(md);
		return r;
	}
	md->slots[0].state = MD_SB_VALID;
	md->slots[0].txid = md->tm.txid;
	md->slots[0].version = md->version;
	*out = md;
	return 0;
}

/*
 * Formats a new META as "<path>.new" and renames it into place (issue 22
 * item 9): an error or a crash before the rename leaves META as it was,
 * missing or unformatted, never half written. @replace: META exists (empty
 * or all zeros) and is renamed over; else a file that appeared meanwhile is
 * never clobbered.
 */
static int format_new(const struct opener *o, uint64_t nr, bool replace, struct md **out,
		      char *err, size_t len)
{
	char *tmp = g_strconcat(o->path, ".new", NULL);
	struct md *md = NULL;
	int fd = -1, r;

	r = open_new(tmp, o->nofollow, &fd);
	if (r) {
		errf(err, len, r, "cannot create its .new file: %s", strerror(-r));
		goto out_free;
	}
	bio_set_role(fd, BIO_META);
	if (ftruncate(fd, (off_t)(nr * BS))) {
		r = errf(err, len, -errno, "cannot size the new file to %" PRIu64
			    " blocks: %s", nr, strerror(errno));
		goto out;
	}
	r = format_fd(fd, nr, &o->geo, &md);
	if (r) {
		errf(err, len, r, "cannot format: %s", strerror(-r));
		goto out;
	}
	fd = -1;
	r = replace ? (rename(tmp, o->path) ? -errno : 0) : rename_noreplace(tmp, o->path);
	if (r == -EEXIST)
		errf(err, len, r, "was created by someone else while it was being formatted");
	else if (r)
		errf(err, len, r, "cannot rename the new file into place: %s", strerror(-r));
	if (r)
		goto out;
	r = fsync_dir(o->path);
	if (r)	/* META is in place and valid; only its name may not be durable */
		errf(err, len, r, "cannot sync its directory: %s", strerror(-r));
	if (!r && !o->lock)
		flock(md->tm.fd, LOCK_UN);	/* md_open holds no lock */
out:
	if (r) {
		if (md) {
			bio_forget(md->tm.fd);
			md_free(md);
		} else {
			bio_forget(fd);
			close(fd);
		}
		unlink(tmp);	/* still ours: we hold its lock */
	} else {
		*out = md;
	}
out_free:
	g_free(tmp);
	return r;
}

/*
 * A block device cannot be renamed: format in place, the superblock last
 * after a flush. Unformatted means both superblock slots are all zeros.
 */
static int format_in_place(int fd, uint64_t size, const struct md_geometry *geo,
			   struct md **out, char *err, size_t len)
{
	uint64_t need = tm_blocks_needed(geo->region_count), nr = size / BS;
	int r;

	if (nr < need)
		return errf(err, len, -ENOSPC, "device too small: %" PRIu64 " blocks of 4 KiB,"
			       " %" PRIu64 " needed", nr, need);
	r = format_fd(fd, nr, geo, out);
	if (r)
		errf(err, len, r, "cannot format: %s", strerror(-r));
	return r;
}

/* No valid superblock: format if META is unformatted and we may, else say why. */
static int open_unformatted(int fd, const struct stat *st, uint64_t size,
			    const struct md_sb *s, const struct opener *o,
			    struct md **out, char *err, size_t len)
{
	const struct md_sb *bad = s[0].state == MD_SB_BAD ? &s[0] :
				  s[1].state == MD_SB_BAD ? &s[1] : NULL;
	bool blk = S_ISBLK(st->st_mode), zero;
	int r;

	if (blk)
		zero = s[0].state == MD_SB_EMPTY && s[1].state == MD_SB_EMPTY;
	else if ((r = file_is_zero(fd, size, &zero)))
		return errf(err, len, r, "cannot read: %s", strerror(-r));
	if (!zero && bad)
		return errf(err, len, -EILSEQ, "%s", bad->why);
	if (!zero)
		return errf(err, len, -EINVAL, "not a clonefs metadata file");
	if (!o->have_geo || o->tool)
		return errf(err, len, -ENODATA, "metadata is empty (not formatted)");
	if (o->readonly)
		return errf(err, len, -EROFS, "metadata is empty and cannot be formatted"
			       " read-only");
	if (blk)
		return format_in_place(fd, size, &o->geo, out, err, len);
	if (!S_ISREG(st->st_mode))
		return errf(err, len, -EINVAL, "is neither a regular file nor a block device");
	return format_new(o, MAX(size / BS, tm_blocks_needed(o->geo.region_count)), true, out,
			  err, len);
}

/* Loads the trees of superblock @s; @check: leaked blocks are errors too. */
static int load(struct md *md, const struct md_sb *s, bool check, char *err, size_t len)
{
	struct bt_loader *ld = g_new0(struct bt_loader, 1);
	int r;

	ld->fd = md->tm.fd;
	ld->version = s->version;
	ld->nr_blocks = md->tm.nr_blocks;
	ld->txid = s->txid;
	ld->err = err;
	ld->errlen = len;
	ld->refs = g_new0(uint8_t, md->tm.nr_blocks);
	ld->refs[0] = ld->refs[1] = 1;	/* the superblock slots */
	for (uint64_t b = md->j_start; b < md->j_start + md->j_blocks; b++)
		ld->refs[b]++;		/* the journal */
	r = tm_load(&md->tm, ld, s->sm_root, s->sm_root_txid);
	if (r)
		goto out;
	ld->bits = 0;
	ld->leaf_pop = md->leaf_pop;
	r = bt_load(ld, &md->bm, s->bm_root, s->bm_root_txid);
	md->nr_hydrated = md->committed_hydrated = ld->bits;
	if (!r && s->version >= 2 && s->hydrated != ld->bits)
		r = errf(err, len, -EILSEQ, "superblock says %" PRIu64 " regions are"
			    " hydrated, the bitmap has %" PRIu64, s->hydrated, ld->bits);
	if (!r)
		r = tm_check_refs(&md->tm, ld->refs, check, err, len);
	if (!r)
		r = mj_replay(md, err, len);
out:
	g_free(ld->refs);
	g_free(ld);
	return r;
}

/* The geometry in force: META's, checked against what the caller asked for. */
static int match_geometry(const struct opener *o, const struct md_geometry *geo,
			  char *err, size_t len)
{
	struct md_geometry want = o->geo;

	if (!o->have_geo)
		return 0;
	if (o->image_size && !o->rs_explicit) {
		/* spec 1.3: a plain remount uses META's region size */
		want.region_size = geo->region_size;
		want.region_count = regions_for(o->image_size, geo->region_size);
	}
	if (want.region_size != geo->region_size)
		return errf(err, len, -EINVAL, "region size %u does not match metadata (%u);"
			    " leave out region_size= to use metadata's", want.region_size,
			    geo->region_size);
	if (want.region_count != geo->region_count)
		return errf(err, len, -EINVAL, "region count %" PRIu64 " does not match"
			       " metadata (%" PRIu64 ")", want.region_count, geo->region_count);
	return 0;
}

/* Opens the state in slot @slot of @s; on success the md owns @fd. */
static int open_formatted(int fd, uint64_t size, const struct md_sb *s, int slot,
			  const struct opener *o, struct md **out, char *err, size_t len)
{
	const struct md_sb *best = &s[slot];
	struct md_geometry geo = { best->region_size, best->region_count };
	struct md *md = NULL;
	int r;

	if (check_geometry(&geo, NULL, 0) || best->nr_blocks < 3 ||
	    best->nr_blocks > MD_ENTRY_MAX_BLOCKS || bt_nodes(best->nr_blocks) == 0)
		return errf(err, len, -EILSEQ, "superblock has an impossible geometry");
	if (size / BS < best->nr_blocks)
		return errf(err, len, -EILSEQ, "metadata file is truncated (%" PRIu64 " of %"
			       PRIu64 " blocks)", size / BS, best->nr_blocks);
	if ((r = match_geometry(o, &geo, err, len)))
		return r;
	if ((best->flags & MD_SB_NEEDS_CHECK) && !o->tool)
		return errf(err, len, -EUCLEAN, "needs_check is set: run clonefs check");
	if (best->flags & ~MD_SB_KNOWN_FLAGS)
		return errf(err, len, -EOPNOTSUPP, "unknown superblock flags %#x",
			       best->flags & ~MD_SB_KNOWN_FLAGS);
	if (best->journal_blocks ? best->journal_start < 2 || best->journal_head >=
	    best->journal_blocks || best->journal_start + best->journal_blocks >
	    best->nr_blocks || !best->journal_txid :
	    best->journal_start || best->journal_head)
		return errf(err, len, -EILSEQ, "superblock has an impossible journal");
	r = md_new(&geo, best->nr_blocks, &md);
	if (r)
		return errf(err, len, r, "cannot allocate metadata: %s", strerror(-r));
	if (md->bm.levels != best->bm_levels || md->tm.sm.levels != best->sm_levels) {
		r = errf(err, len, -EILSEQ, "superblock has wrong tree depths");
		goto out;
	}
	memcpy(md->slots, s, 2 * sizeof(*s));
	memcpy(md->uuid, best->uuid, 16);
	md->tm.txid = best->txid;
	md->j_start = best->journal_start;
	md->j_blocks = best->journal_blocks;
	md->j_head = best->journal_head;
	md->j_txid = best->journal_txid;
	md->flags = best->flags;
	md->version = best->version;
	md->slot = slot;
	md->tm.fd = fd;
	r = load(md, best, o->check, err, len);
out:
	if (r) {
		md->tm.fd = -1;
		md_free(md);
	} else {
		*out = md;
	}
	return r;
}

int md_read_slots(int fd, struct md_sb *s, char *err, size_t len)
{
	uint8_t *b = g_malloc(BS);
	int r = 0;

	for (int i = 0; i < 2 && !r; i++) {
		r = bio_pread(fd, b, BS, (uint64_t)i * BS);
		if (r)
			errf(err, len, r, "cannot read superblock: %s", strerror(-r));
		else
			mdb_sb_parse(b, i, &s[i]);
	}
	g_free(b);
	return r;
}

/* Size in bytes of META: a file's length, or a block device's. */
static int meta_size(int fd, const struct stat *st, uint64_t *size)
{
	off_t end;

	if (!S_ISBLK(st->st_mode)) {
		*size = (uint64_t)st->st_size;
		return 0;
	}
	end = lseek(fd, 0, SEEK_END);
	if (end < 0)
		return -errno;
	*size = (uint64_t)end;
	return 0;
}

/* Locks META's fd and makes sure it is still the file its path names. */
static int lock_and_stat(int fd, const struct opener *o, struct stat *st, char *err, size_t len)
{
	struct stat p;
	int r = o->lock ? lock_meta(fd) : 0;

	if (r == -EBUSY)
		return errf(err, len, r, "in use by another clonefs daemon");
	if (r)
		return errf(err, len, r, "cannot lock: %s", strerror(-r));
	if (fstat(fd, st))
		return errf(err, len, -errno, "cannot stat: %s", strerror(errno));
	/* a daemon that formatted META while we waited renamed a new file over it */
	if (o->lock && S_ISREG(st->st_mode) && (st->st_nlink == 0 ||
	    (!stat(o->path, &p) && (p.st_dev != st->st_dev || p.st_ino != st->st_ino))))
		return errf(err, len, -ESTALE, "was replaced while waiting for its lock");
	return 0;
}

/* Opens META from @fd (-1: it does not exist). Takes ownership of @fd. */
int md_open_meta(int fd, const struct opener *o, struct md **out, char *err, size_t len)
{
	struct md_sb s[2];
	struct md *md = NULL;
	struct stat st;
	uint64_t size = 0;
	int r, slot = o->slot;

	if (o->have_geo && (r = check_geometry(&o->geo, err, len)))
		goto out;
	if (fd < 0) {
		if (!o->have_geo || o->readonly || o->tool)
			return errf(err, len, -ENOENT, "does not exist");
		return format_new(o, tm_blocks_needed(o->geo.region_count), false, out, err, len);
	}
	bio_set_role(fd, BIO_META);
	if ((r = lock_and_stat(fd, o, &st, err, len)))
		goto out;
	if ((r = meta_size(fd, &st, &size))) {
		errf(err, len, r, "cannot get its size: %s", strerror(-r));
		goto out;
	}
	if ((r = md_read_slots(fd, s, err, len)))
		goto out;
	if (slot < 0)
		for (int i = 0; i < 2; i++)
			if (s[i].state == MD_SB_VALID && (slot < 0 || s[i].txid > s[slot].txid))
				slot = i;
	if (slot < 0) {
		r = open_unformatted(fd, &st, size, s, o, &md, err, len);
	} else if (s[slot].state != MD_SB_VALID) {
		r = errf(err, len, -EILSEQ, "%s", s[slot].why);
	} else {
		r = open_formatted(fd, size, s, slot, o, &md, err, len);
	}
out:
	if (fd >= 0 && (!md || md->tm.fd != fd)) {
		bio_forget(fd);
		close(fd);
	}
	if (!r) {
		md->readonly = o->readonly;
		*out = md;
	}
	return r;
}

/* For the path-based opens: META opened for reading, or reading and writing. */
int md_open_path(const char *path, bool readonly, bool may_miss, int *fd,
		     char *err, size_t len)
{
	*fd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (*fd >= 0 || (may_miss && errno == ENOENT))
		return 0;
	return errf(err, len, -errno, "cannot open: %s", strerror(errno));
}

int md_open_fd(const struct md_open_args *a, struct md **out, char *err, size_t errlen)
{
	struct opener o = {
		.path = a->path, .have_geo = true, .image_size = a->image_size,
		.rs_explicit = a->region_size_explicit, .readonly = a->readonly,
		.lock = true, .nofollow = a->nofollow, .slot = -1,
	};

	o.geo.region_size = a->region_size;
	o.geo.region_count = regions_for(a->image_size, a->region_size);
	return md_open_meta(a->fd, &o, out, err, errlen);
}

int md_open(const char *path, const struct md_geometry *geo, bool readonly,
	    struct md **out, char *err, size_t errlen)
{
	/* no lock: its callers open one META several times at once */
	struct opener o = { .path = path, .have_geo = true, .geo = *geo, .rs_explicit = true,
			    .readonly = readonly, .slot = -1 };
	int fd, r = md_open_path(path, readonly, !readonly, &fd, err, errlen);

	return r ? r : md_open_meta(fd, &o, out, err, errlen);
}

int md_open_existing(const char *path, bool readonly, struct md **out,
		     char *err, size_t errlen)
{
	/* tools read META even when needs_check is set; writers may not */
	struct opener o = { .path = path, .readonly = readonly, .tool = readonly, .slot = -1 };
	int fd, r = md_open_path(path, readonly, false, &fd, err, errlen);

	return r ? r : md_open_meta(fd, &o, out, err, errlen);
}


