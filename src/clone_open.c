/*
 * clone_open.c - opening a clone: SOURCE, DEST and META are each opened
 * once, validated through the descriptor (fstat), and nothing is created or
 * changed until all three have passed (spec 1.2-1.6). Like dm-clone's
 * clone_ctr, clone_open is a list of calls to one helper per file.
 */
#include "clone_impl.h"
#include "clonefs/blockio.h"
#include "clonefs/errf.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

/* DEST carries the uuid of the META it belongs to (spec 1.5). */
#define DEST_TAG_XATTR "user.clonefs.meta"

struct paths {
	const char *source, *dest, *meta;
};

/* errf() with the file named first: "ROLE PATH: why". */
static int fail(char *err, size_t errlen, int ret, const char *role,
		const char *path, const char *fmt, ...) G_GNUC_PRINTF(6, 7);

static int fail(char *err, size_t errlen, int ret, const char *role,
		const char *path, const char *fmt, ...)
{
	char why[384];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return errf(err, errlen, ret < 0 ? ret : -EINVAL, "%s %s: %s", role, path, why);
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

/* Open @path and fstat what was opened; -ENOENT when it does not exist. */
static int open_checked(const char *path, int flags, bool nofollow, int *fd,
			struct stat *st, const char *role, char *err, size_t errlen)
{
	int ret;

	*fd = open(path, flags | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0));
	if (*fd < 0) {
		int e = errno;

		if (e == ENOENT)
			return -ENOENT;
		if (e == ELOOP && nofollow)
			return fail(err, errlen, -e, role, path,
				    "is a symbolic link (nofollow)");
		return fail(err, errlen, -e, role, path, "%s", g_strerror(e));
	}
	if (fstat(*fd, st))
		ret = fail(err, errlen, -errno, role, path, "%s", g_strerror(errno));
	else if (!S_ISREG(st->st_mode) && !S_ISBLK(st->st_mode))
		ret = fail(err, errlen, -EINVAL, role, path,
			   "not a regular file or block device");
	else
		return 0;
	close(*fd);
	*fd = -1;
	return ret;
}

/* The image owner (spec 1.6): the mounting user's, giving nobody more than
 * SOURCE does: its read bits narrow 0600 (the write bit is the clone's own,
 * as writes never reach SOURCE). uid=, gid= and umask= widen on purpose. */
static void image_owner(struct clone *c, const struct stat *src)
{
	const struct clone_options *o = &c->opt;
	mode_t rw = o->ro ? 0444 : 0666;

	c->image_uid = o->uid >= 0 ? (uid_t)o->uid : getuid();
	c->image_gid = o->gid >= 0 ? (gid_t)o->gid : getgid();
	if (o->umask >= 0)
		c->image_mode = rw & ~(mode_t)o->umask;
	else
		c->image_mode = rw & 0600 & (src->st_mode | 0222);
}

static int open_source(struct clone *c, const char *path, struct stat *st,
		       char *err, size_t errlen)
{
	int ret = open_checked(path, O_RDONLY, c->opt.nofollow, &c->src_fd, st,
			       "source", err, errlen);

	if (ret == -ENOENT)
		return fail(err, errlen, ret, "source", path, "%s", g_strerror(ENOENT));
	if (ret)
		return ret;
	if ((ret = file_size(c->src_fd, st, &c->size)))
		return fail(err, errlen, ret, "source", path, "%s", g_strerror(-ret));
	if (c->size == 0)
		return fail(err, errlen, -EINVAL, "source", path, "is empty");
	image_owner(c, st);
	return 0;
}

/*
 * An NBD export (spec 1.7): its size is the server's, and as no file of
 * ours it cannot be DEST or META (@st stays zero for those checks). The
 * image's mode is 0600 unless umask= says otherwise, as for a file that
 * lets its owner read it. Hydration batches are bigger by default (source.h).
 */
static int open_nbd_source(struct clone *c, const char *uri, struct stat *st,
			   char *err, size_t errlen)
{
	int ret = nbd_source_open(uri, c->opt.source_timeout_ms, &c->nbd, err, errlen);

	if (ret)
		return ret;
	if (c->opt.hydration_batch_size == CLONE_DEFAULT_BATCH &&
	    c->opt.hydration_threshold == CLONE_DEFAULT_THRESHOLD) {
		c->opt.hydration_batch_size = NBD_SOURCE_BATCH;
		c->opt.hydration_threshold = NBD_SOURCE_THRESHOLD;
	}
	c->size = nbd_source_size(c->nbd);
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFREG | 0400;
	image_owner(c, st);
	return 0;
}

/* DEST as it is (not created yet): *@exists false when missing (with -o
 * ro refused later, once META has said whether that lost hydrated data). */
static int open_dest(struct clone *c, const char *path, const struct stat *src,
		     struct stat *st, uint64_t *size, bool *exists, char *err,
		     size_t errlen)
{
	int ret = open_checked(path, c->opt.ro ? O_RDONLY : O_RDWR, c->opt.nofollow,
			       &c->dest_fd, st, "dest", err, errlen);

	*exists = ret != -ENOENT;
	*size = 0;
	if (!*exists)
		return 0;
	if (ret)
		return ret;
	if (same_file(st, src))
		return fail(err, errlen, -EINVAL, "dest", path,
			    "is the same file as the source");
	if ((ret = file_size(c->dest_fd, st, size)))
		return fail(err, errlen, ret, "dest", path, "%s", g_strerror(-ret));
	if (S_ISREG(st->st_mode) && *size > c->size)
		return fail(err, errlen, -EINVAL, "dest", path, "is larger than the "
			    "source (%" G_GUINT64_FORMAT " > %" G_GUINT64_FORMAT
			    " bytes)", *size, c->size);
	if (S_ISBLK(st->st_mode) && *size < c->size)
		return fail(err, errlen, -EINVAL, "dest", path, "device is smaller "
			    "than the source (%" G_GUINT64_FORMAT " < %" G_GUINT64_FORMAT
			    " bytes)", *size, c->size);
	return 0;
}

/* META: opened once here, then locked, read or formatted by metadata. */
static int open_meta(struct clone *c, const struct paths *p,
		     const struct stat *src, const struct stat *dst,
		     bool dest_exists, char *err, size_t errlen)
{
	struct md_open_args a = {
		.path = p->meta, .image_size = c->size,
		.region_size = c->opt.region_size,
		.region_size_explicit = c->opt.region_size_explicit,
		.readonly = c->opt.ro, .nofollow = c->opt.nofollow,
	};
	struct md_geometry geo;
	struct stat st;
	char why[256];
	int ret = open_checked(p->meta, c->opt.ro ? O_RDONLY : O_RDWR,
			       c->opt.nofollow, &a.fd, &st, "meta", err, errlen);

	if (ret == -ENOENT && c->opt.ro)
		return fail(err, errlen, ret, "meta", p->meta,
			    "%s (needed with -o ro)", g_strerror(ENOENT));
	if (ret && ret != -ENOENT)
		return ret;
	if (!ret && (same_file(&st, src) || (dest_exists && same_file(&st, dst)))) {
		close(a.fd);
		return fail(err, errlen, -EINVAL, "meta", p->meta,
			    "is the same file as the %s",
			    same_file(&st, src) ? "source" : "dest");
	}
	if (ret == -ENOENT)
		a.fd = -1; /* metadata creates it */
	if ((ret = md_open_fd(&a, &c->md, why, sizeof(why))))
		return fail(err, errlen, ret, "meta", p->meta, "%s", why);
	md_geometry(c->md, &geo);
	c->region_size = geo.region_size;
	c->region_shift = (unsigned)__builtin_ctz(geo.region_size);
	c->nr_regions = geo.region_count;
	return 0;
}

static void tag_text(struct md *md, char hex[33])
{
	uint8_t uuid[16];

	md_uuid(md, uuid);
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", uuid[i]);
}

/* DEST's tag: 1 when it is META's, 0 when it is another's, -1 when it
 * has none. */
static int dest_tag(struct clone *c)
{
	char want[33], got[64];
	ssize_t len;

	tag_text(c->md, want);
	len = fgetxattr(c->dest_fd, DEST_TAG_XATTR, got, sizeof(got) - 1);
	if (len < 0)
		return -1;
	got[len] = '\0';
	return len == 32 && !strcmp(got, want);
}

/*
 * DEST and META belong together (spec 1.5): once META records hydrated
 * regions, a DEST that is missing, shorter than the image or tagged for
 * another META would serve zeros or foreign data as "hydrated".
 */
static int check_dest_belongs(struct clone *c, const struct paths *p,
			      const struct stat *dst, uint64_t dsize,
			      bool exists, char *err, size_t errlen)
{
	uint64_t n = md_nr_hydrated(c->md);
	int tag;

	if (n == 0)
		return 0;
	if (!exists)
		return fail(err, errlen, -ENOENT, "dest", p->dest, "missing, but meta "
			    "%s records %" G_GUINT64_FORMAT " hydrated regions: restore "
			    "DEST, or remove META to start over", p->meta, n);
	if (S_ISREG(dst->st_mode) && dsize < c->size)
		return fail(err, errlen, -EINVAL, "dest", p->dest, "shorter than the "
			    "image (%" G_GUINT64_FORMAT " < %" G_GUINT64_FORMAT " bytes) "
			    "but meta %s records %" G_GUINT64_FORMAT " hydrated regions: "
			    "restore DEST, or remove META to start over", dsize, c->size,
			    p->meta, n);
	if (!md_dest_tagged(c->md) || !S_ISREG(dst->st_mode) || (tag = dest_tag(c)) == 1)
		return 0;
	return fail(err, errlen, -EINVAL, "dest", p->dest, "not the file meta %s was used "
		    "with (%s " DEST_TAG_XATTR "): use that DEST, or remove META to start "
		    "over", p->meta, tag < 0 ? "no" : "another");
}

/* Only now is anything changed: DEST created sparse or extended (spec
 * 1.2), and tagged with META's uuid before META records the tag. A DEST
 * META has no hydrated region in may be a new one (check_dest_belongs let
 * it pass): it is tagged too, even if META already records a tag, or once
 * regions hydrate into it the next mount would refuse it. */
static int prepare_dest(struct clone *c, const struct paths *p, struct stat *st,
			uint64_t dsize, bool exists, char *err, size_t errlen)
{
	char tag[33];

	if (!exists && c->opt.ro)
		return fail(err, errlen, -ENOENT, "dest", p->dest, "%s (needed with -o ro)",
			    g_strerror(ENOENT));
	if (!exists) {
		c->dest_fd = open(p->dest, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC |
				  (c->opt.nofollow ? O_NOFOLLOW : 0), 0600);
		if (c->dest_fd < 0 || fstat(c->dest_fd, st))
			return fail(err, errlen, -errno, "dest", p->dest, "%s",
				    g_strerror(errno));
	}
	if (c->opt.ro || !S_ISREG(st->st_mode))
		return 0;
	if (dsize < c->size && ftruncate(c->dest_fd, (off_t)c->size))
		return fail(err, errlen, -errno, "dest", p->dest, "cannot extend: %s",
			    g_strerror(errno));
	if (md_dest_tagged(c->md) && dest_tag(c) == 1)
		return 0;
	tag_text(c->md, tag);
	/* fsync, not fdatasync: the tag must be durable before META says so */
	if (fsetxattr(c->dest_fd, DEST_TAG_XATTR, tag, 32, 0) || fsync(c->dest_fd))
		g_debug("dest %s: no " DEST_TAG_XATTR " (%s): its identity is not "
			"checked", p->dest, g_strerror(errno));
	else
		md_set_dest_tagged(c->md);
	return 0;
}

/*
 * Hydration reads SOURCE through files of its own, so that their readahead
 * does not grow that of the users' random reads: background copies go on in
 * order with the kernel's readahead, reads that end at a hole without it
 * (FADV_RANDOM), and writes' copies with it (scripts/bench, bench/README).
 */
static int open_copy_files(struct clone *c, const char *source, char *err,
			   size_t errlen)
{
	char path[64];

	if (c->nbd) { /* the NBD source has its own connections */
		bio_set_role(c->dest_fd, BIO_DEST);
		return 0;
	}

	snprintf(path, sizeof(path), "/proc/self/fd/%d", c->src_fd);
	c->copy_src_fd = open(path, O_RDONLY | O_CLOEXEC);
	c->stream_src_fd = open(path, O_RDONLY | O_CLOEXEC);
	c->write_src_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (c->copy_src_fd < 0 || c->stream_src_fd < 0 || c->write_src_fd < 0)
		return fail(err, errlen, -errno, "source", source,
			    "cannot open again: %s", g_strerror(errno));
	posix_fadvise(c->copy_src_fd, 0, 0, POSIX_FADV_RANDOM);
	bio_set_role(c->src_fd, BIO_SOURCE);
	bio_set_role(c->copy_src_fd, BIO_SOURCE);
	bio_set_role(c->stream_src_fd, BIO_SOURCE);
	bio_set_role(c->write_src_fd, BIO_SOURCE);
	bio_set_role(c->dest_fd, BIO_DEST);
	return 0;
}

/* A prefetch profile made for an image of another size is refused before
 * DEST or META are touched; the region size is checked once META's is
 * known (clone_set_prefetch). */
static int prefetch_fits_source(struct clone *c, const struct profile *pf,
				const char *path, char *err, size_t errlen)
{
	if (!path[0] || pf->image_size == c->size)
		return 0;
	return errf(err, errlen, -EINVAL, "profile %s: recorded for an image of %"
		    G_GUINT64_FORMAT " bytes, this one is %" G_GUINT64_FORMAT,
		    path, pf->image_size, c->size);
}

int clone_open(const char *source, const char *dest, const char *meta,
	       const struct clone_options *o, struct clone **out, char *err,
	       size_t errlen)
{
	struct clone *c = g_new0(struct clone, 1);
	struct paths p = { source, dest, meta };
	struct stat sst, dst = { 0 };
	struct profile pf = { 0 };
	uint64_t dsize;
	bool dest_exists;
	int ret;

	c->opt = *o;
	c->src_fd = c->dest_fd = c->copy_src_fd = c->stream_src_fd =
		c->write_src_fd = -1;
	c->discard_passdown = !o->no_discard_passdown;
	g_mutex_init(&c->group_lock);
	g_cond_init(&c->group_cond);
	g_mutex_init(&c->timer_lock);
	g_cond_init(&c->timer_cond);

	if (!options_region_size_valid(o->region_size)) {
		ret = errf(err, errlen, -EINVAL, "region size %u: " OPTIONS_REGION_SIZE_RULE,
			   o->region_size);
		goto out;
	}
	/* A bad profile is refused before any file is touched (spec 1.3). */
	if (o->prefetch[0] && (ret = profile_load(o->prefetch, &pf, err, errlen)))
		goto out;
	if ((ret = source_is_nbd_uri(source) ?
		   open_nbd_source(c, source, &sst, err, errlen) :
		   open_source(c, source, &sst, err, errlen)) ||
	    (ret = prefetch_fits_source(c, &pf, o->prefetch, err, errlen)) ||
	    (ret = open_dest(c, dest, &sst, &dst, &dsize, &dest_exists, err, errlen)) ||
	    (ret = open_meta(c, &p, &sst, &dst, dest_exists, err, errlen)) ||
	    (ret = check_dest_belongs(c, &p, &dst, dsize, dest_exists, err, errlen)) ||
	    (ret = prepare_dest(c, &p, &dst, dsize, dest_exists, err, errlen)) ||
	    (ret = open_copy_files(c, source, err, errlen)))
		goto out;

	struct hydrate_target t = {
		.src_fd = c->copy_src_fd, .stream_fd = c->stream_src_fd,
		.write_fd = c->write_src_fd, .dest_fd = c->dest_fd, .md = c->md,
		.image_size = c->size, .region_size = c->region_size,
		.nr_regions = c->nr_regions, .nbd = c->nbd,
	};
	c->hy = hydrate_new(&t, &c->opt);
	c->rec = profile_rec_new(c->region_size, c->nr_regions, c->size);
	if (o->prefetch[0] &&
	    (ret = clone_set_prefetch(c, &pf, o->prefetch, err, errlen))) {
		hydrate_free(c->hy);
		goto out;
	}
	profile_clear(&pf);
	*out = c;
	return 0;
out:
	profile_clear(&pf);
	if (c->md)
		md_close(c->md);
	clone_free_files(c);
	return ret < 0 ? ret : -EINVAL;
}

void clone_free_files(struct clone *c)
{
	int *fds[] = { &c->src_fd, &c->copy_src_fd, &c->stream_src_fd,
		       &c->write_src_fd, &c->dest_fd };

	for (size_t i = 0; i < G_N_ELEMENTS(fds); i++) {
		if (*fds[i] < 0)
			continue;
		bio_forget(*fds[i]);
		close(*fds[i]);
	}
	profile_rec_free(c->rec);
	nbd_source_close(c->nbd);
	g_mutex_clear(&c->group_lock);
	g_cond_clear(&c->group_cond);
	g_mutex_clear(&c->timer_lock);
	g_cond_clear(&c->timer_cond);
	g_free(c);
}
