/*
 * fuse_ops.c - the FUSE low-level operations of clonefs (after libfuse's
 * passthrough_ll.c): one function per operation, replies where the work is
 * done. Reads above a page reply with fd buffers so libfuse can splice
 * straight from DEST and SOURCE. Status and messages, which travel as
 * extended attributes, are fuse_control.c's.
 */
#include "clonefs/fuse_session.h"
#include "clonefs/clone.h"
#include "clonefs/passthrough.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ROOT_INO FUSE_ROOT_ID
#define ATTR_TIMEOUT 3600.0 /* the image never changes size or owner */
#define MAX_IO (1u << 20)
#define MAX_WRITE (128u << 10)

/* An open of the image: its fi->fh. */
struct open_file {
	enum open_mode mode;
	uint64_t errors_seen; /* clone_error_mark() when it last heard */
};

static struct open_file *open_file_of(struct fuse_file_info *fi)
{
	return (struct open_file *)(uintptr_t)fi->fh;
}

struct fuse_ops_session *fuse_ops_new(struct clone *c)
{
	struct fuse_ops_session *s = g_new0(struct fuse_ops_session, 1);

	s->c = c;
	s->backing_id = -1;
	g_mutex_init(&s->open_lock);
	g_cond_init(&s->readers_gone);
	g_mutex_init(&s->poll_lock);
	g_queue_init(&s->pollers);
	return s;
}

void fuse_ops_free(struct fuse_ops_session *s)
{
	g_mutex_clear(&s->open_lock);
	g_cond_clear(&s->readers_gone);
	g_mutex_clear(&s->poll_lock);
	g_free(s->readahead_path);
	g_free(s);
}

static void fill_attr(struct fuse_ops_session *s, fuse_ino_t ino, struct stat *st)
{
	struct clone *c = s->c;
	mode_t mode;

	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	clone_image_owner(c, &st->st_uid, &st->st_gid, &mode);
	st->st_atime = st->st_mtime = st->st_ctime = s->mount_time;
	if (ino == ROOT_INO) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return;
	}
	st->st_mode = S_IFREG | mode;
	st->st_nlink = 1;
	st->st_size = (off_t)clone_size(c);
	st->st_blksize = 4096;
	st->st_blocks = (blkcnt_t)((clone_size(c) + 511) / 512);
}

/*
 * libfuse splices a reply to /dev/fuse only if all of it fits in its pipe,
 * and a pipe bigger than /proc/sys/fs/pipe-max-size (1 MiB) needs
 * CAP_SYS_RESOURCE, which containers often take from root. Without it,
 * 512 KiB reads that splice beat 1 MiB ones copied through memory: 4x on
 * reads of cached data.
 */
static unsigned max_io(void)
{
	unsigned io = MAX_IO;
	int p[2];

	if (pipe(p))
		return MAX_IO / 2;
	if (fcntl(p[0], F_SETPIPE_SZ, (int)MAX_IO + 8192) < 0)
		io = MAX_IO / 2;
	close(p[0]);
	close(p[1]);
	return io;
}

static void cfs_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fuse_ops_session *s = userdata;

	s->mount_time = time(NULL);
	/* Zero-copy reads from DEST/SOURCE, big requests, and the page cache
	 * kept across opens (only clonefs changes the image). No writeback
	 * cache: with it the kernel accepts writes past the end into its cache,
	 * grows the file and reports ENOSPC only at fsync; without it every
	 * write reaches clone_write, which refuses them as a device does. */
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	if (conn->capable & FUSE_CAP_ASYNC_DIO)
		conn->want |= FUSE_CAP_ASYNC_DIO;
	conn->want &= ~(unsigned)FUSE_CAP_AUTO_INVAL_DATA;
	/* Reads splice max_io() at a time. Writes arrive in the receiving
	 * thread's own buffer, which keeps its pages: MAX_WRITE each, not
	 * max_io(), so 16 threads do not hold 8 MiB. libfuse sizes max_pages,
	 * the largest read too, from max_write: the INIT reply is amended to
	 * max_io()'s pages (bench/README.md, "FUSE settings"). */
	conn->max_readahead = max_io();
	conn->max_write = MAX_WRITE; /* max_io() is 512 KiB at least */
	passthrough_offer(conn->max_readahead / (unsigned)getpagesize());
	s->readahead_kb = FUSE_THREADS * conn->max_readahead / 1024;
	/* The kernel lets at most max_background async requests (readahead,
	 * libaio O_DIRECT) reach the daemon at once, 12 by default: fewer
	 * than the threads, which then idle. Eight per thread, so that writes
	 * of MAX_WRITE keep every thread busy (bench/README.md). */
	conn->max_background = 8 * FUSE_THREADS;
	conn->congestion_threshold = conn->max_background * 3 / 4;
	g_debug("reads of up to %u KiB, writes of up to %u KiB",
		conn->max_readahead / 1024, conn->max_write / 1024);
}

void fuse_ops_set_readahead(struct fuse_ops_session *s, const char *sysfs_path)
{
	g_free(s->readahead_path);
	s->readahead_path = g_strdup(sysfs_path);
}

/*
 * A FUSE mount gets the kernel's default readahead, 128 KiB, whatever INIT
 * asks for (it keeps the smaller): a cold sequential read of the image then
 * waits on one request at a time. A request per thread is set through the
 * mount's bdi in sysfs, after INIT (which would undo it), so at the first
 * lookup.
 */
static void raise_readahead(struct fuse_ops_session *s)
{
	FILE *f;
	bool ok;

	if (!s->readahead_path || !s->readahead_kb)
		return;
	f = fopen(s->readahead_path, "w");
	ok = f && fprintf(f, "%u\n", s->readahead_kb) >= 0;
	if (f && fclose(f)) /* sysfs refuses at the write(2), in fclose */
		ok = false;
	if (!ok)
		g_debug("cannot set %s: %s", s->readahead_path, g_strerror(errno));
	else
		g_debug("readahead %u KiB", s->readahead_kb);
	g_clear_pointer(&s->readahead_path, g_free);
}

static void cfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_ops_session *s = session_of(req);
	struct fuse_entry_param e;

	if (parent != ROOT_INO || strcmp(name, CLONEFS_IMAGE_NAME)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (g_once_init_enter(&s->readahead_raised)) {
		raise_readahead(s);
		g_once_init_leave(&s->readahead_raised, 1);
	}
	memset(&e, 0, sizeof(e));
	e.ino = IMAGE_INO;
	e.generation = 1;
	e.attr_timeout = ATTR_TIMEOUT;
	e.entry_timeout = ATTR_TIMEOUT;
	fill_attr(s, IMAGE_INO, &e.attr);
	fuse_reply_entry(req, &e);
}

static void cfs_getattr(fuse_req_t req, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	struct stat st;

	(void)fi;
	fill_attr(session_of(req), ino, &st);
	fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

/* Size, mode and owner are fixed (spec 2.8); times are accepted and ignored. */
static void cfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
			int to_set, struct fuse_file_info *fi)
{
	struct stat st;

	(void)fi;
	fill_attr(session_of(req), ino, &st);
	if ((to_set & FUSE_SET_ATTR_SIZE) && attr->st_size != st.st_size) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (((to_set & FUSE_SET_ATTR_MODE) &&
	     (attr->st_mode & 07777) != (st.st_mode & 07777)) ||
	    ((to_set & FUSE_SET_ATTR_UID) && attr->st_uid != st.st_uid) ||
	    ((to_set & FUSE_SET_ATTR_GID) && attr->st_gid != st.st_gid)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

static void cfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	static const char *names[] = { ".", "..", CLONEFS_IMAGE_NAME };
	char buf[512];
	size_t used = 0;

	(void)fi;
	if (ino != ROOT_INO) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	for (off_t i = off; i < 3; i++) {
		struct stat st = { .st_ino = i == 2 ? IMAGE_INO : ROOT_INO,
				   .st_mode = i == 2 ? S_IFREG : S_IFDIR };
		size_t n = fuse_add_direntry(req, buf + used, MIN(size, sizeof(buf)) - used,
					     names[i], &st, i + 1);

		if (n > MIN(size, sizeof(buf)) - used)
			break;
		used += n;
	}
	fuse_reply_buf(req, buf, used);
}

/* Passthrough once the image is DEST (every region hydrated): the kernel
 * then reads and writes DEST itself, at the speed of the raw file. */
static bool can_pass_through(struct fuse_ops_session *s)
{
	int fd, id;

	if (s->backing_id >= 0)
		return true;
	if (s->backing_refused || (fd = clone_hydrated_dest(s->c)) < 0)
		return false;
	id = passthrough_backing_open(fd);
	if (id < 0) {
		g_debug("no kernel passthrough: %s", g_strerror(-id));
		s->backing_refused = true;
		return false;
	}
	g_debug("image fully hydrated: new opens pass through to DEST");
	s->backing_id = id;
	return true;
}

/*
 * close(2) returns before the kernel's RELEASE reaches the daemon, so a
 * writer that opens right after the last passed-through reader closed would
 * still find it counted. It waits for that RELEASE (a bounded time: a
 * reader still open keeps the writer out, as the kernel wants). Called with
 * open_lock held.
 */
#define RELEASE_WAIT_US (2 * G_USEC_PER_SEC)

static void wait_for_readers(struct fuse_ops_session *s)
{
	gint64 deadline = g_get_monotonic_time() + RELEASE_WAIT_US;

	while (s->nr_open[OPEN_PASSTHROUGH] &&
	       g_cond_wait_until(&s->readers_gone, &s->open_lock, deadline))
		;
}

static void cfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fuse_ops_session *s = session_of(req);
	struct clone *c = s->c;
	struct open_file *of;
	enum open_mode mode;
	bool buffered, writable = (fi->flags & O_ACCMODE) != O_RDONLY;

	if (ino != IMAGE_INO) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if (clone_readonly(c) && writable) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (fi->flags & O_TRUNC) {
		fuse_reply_err(req, EPERM);
		return;
	}
	/* O_DIRECT opens take FUSE's direct path, which skips the image's page
	 * cache as asked and serves them from DEST's and SOURCE's. Their
	 * writes may run in parallel: region locks order what must be.
	 * Buffered opens that may write take the direct path too: through the
	 * image's cache a write is copied three times (into it, to the daemon,
	 * into DEST's), here twice; VMs and loop devices, which open the image
	 * read-write, cache above it anyway. Read-only opens keep the cache
	 * and its readahead. The kernel drops cached pages a direct write
	 * covers. */
	buffered = !(fi->flags & O_DIRECT);
	mode = buffered && !writable ? OPEN_CACHED : OPEN_DIRECT;

	/*
	 * Only read-only opens pass through: the kernel would let a
	 * passed-through write past the image end grow DEST and acknowledge
	 * it (spec 2.8), and writes of the daemon's own opens keep every sync
	 * path its own (spec 2.5a). A buffered open passes through only when
	 * no other open may have put the image in the kernel's cached mode;
	 * while one is passed through the kernel refuses any other kind, so a
	 * writer must wait until the readers are gone.
	 */
	g_mutex_lock(&s->open_lock);
	if (writable && s->nr_open[OPEN_PASSTHROUGH])
		wait_for_readers(s);
	if (s->nr_open[OPEN_PASSTHROUGH]) {
		if (writable) {
			g_mutex_unlock(&s->open_lock);
			fuse_reply_err(req, ETXTBSY);
			return;
		}
		mode = OPEN_PASSTHROUGH;
	} else if (mode == OPEN_CACHED && !s->nr_open[OPEN_CACHED] &&
		   !s->nr_open[OPEN_DIRECT] && can_pass_through(s)) {
		mode = OPEN_PASSTHROUGH;
	}
	s->nr_open[mode]++;
	g_mutex_unlock(&s->open_lock);

	of = g_new(struct open_file, 1);
	of->mode = mode;
	of->errors_seen = clone_error_mark(c);
	fi->fh = (uintptr_t)of;
	fi->direct_io = mode == OPEN_DIRECT;
	fi->keep_cache = mode != OPEN_PASSTHROUGH; /* the kernel insists */
	fi->noflush = 1; /* close needs no commit (spec 2.5) */
	if (mode == OPEN_PASSTHROUGH)
		passthrough_reply_open(req, fi, s->backing_id);
	else if (mode == OPEN_DIRECT)
		passthrough_reply_open_direct(req, fi);
	else
		fuse_reply_open(req, fi);
}

static void cfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fuse_ops_session *s = session_of(req);
	struct open_file *of = open_file_of(fi);

	(void)ino;
	g_mutex_lock(&s->open_lock);
	if (!--s->nr_open[of->mode] && of->mode == OPEN_PASSTHROUGH)
		g_cond_broadcast(&s->readers_gone);
	g_mutex_unlock(&s->open_lock);
	g_free(of);
	fuse_reply_err(req, 0);
}

struct read_vec {
	struct fuse_bufvec *v;
	size_t cap;
};

static int add_extent(void *arg, int fd, uint64_t off, size_t len)
{
	struct read_vec *rv = arg;
	struct fuse_bufvec *v = rv->v;

	if (v->count == rv->cap) {
		rv->cap *= 2;
		v = realloc(v, sizeof(*v) + rv->cap * sizeof(v->buf[0]));
		if (!v)
			return -ENOMEM;
		rv->v = v;
	}
	v->buf[v->count++] = (struct fuse_buf){
		.size = len,
		.flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK | FUSE_BUF_FD_RETRY,
		.fd = fd,
		.pos = (off_t)off,
	};
	return 0;
}

/* libfuse copies a reply of one page rather than splice it, through a
 * page-aligned buffer it allocates and frees each time: 4 KiB reads go
 * through the stack instead (each thread's malloc arena kept 72 KiB of
 * those). */
#define SMALL_READ 4096

/* An NBD SOURCE has no fd to splice from: the bytes are read into memory
 * (the network, not this copy, is what such a read waits for). */
static void cfs_read_remote(fuse_req_t req, size_t size, off_t off)
{
	char *buf = malloc(size);
	ssize_t n;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = clone_read(clone_of(req), buf, size, (uint64_t)off);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void cfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct read_vec rv = { .cap = 8 };
	ssize_t n;

	(void)ino;
	(void)fi;
	if (clone_source_remote(clone_of(req)) && size > SMALL_READ) {
		cfs_read_remote(req, size, off);
		return;
	}
	if (size <= SMALL_READ) {
		char buf[SMALL_READ];

		n = clone_read(clone_of(req), buf, size, (uint64_t)off);
		if (n < 0)
			fuse_reply_err(req, (int)-n);
		else
			fuse_reply_buf(req, buf, (size_t)n);
		return;
	}
	rv.v = calloc(1, sizeof(*rv.v) + rv.cap * sizeof(rv.v->buf[0]));
	if (!rv.v) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* count starts at 0; fuse_bufvec's idx/off start at 0 as well */
	n = clone_map_read(clone_of(req), (uint64_t)off, size, add_extent, &rv);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_data(req, rv.v, FUSE_BUF_SPLICE_MOVE);
	free(rv.v);
}

/*
 * Writes come in libfuse's request buffer, not spliced through a pipe
 * (write_buf and FUSE_CAP_SPLICE_READ): that would cost every request, a
 * 4 KiB read as well, a splice and a read instead of one read. The price
 * is memory: a thread keeps its buffer's pages, up to max_write.
 *
 * A write across the image end is short, as on a device. But the kernel
 * turns a short O_DIRECT write into EIO (async DIO), after the part inside
 * was written: so one of those is refused whole, with ENOSPC.
 */
static void cfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
		      off_t off, struct fuse_file_info *fi)
{
	struct clone *c = clone_of(req);
	ssize_t n;
	int ret;

	(void)ino;
	if ((fi->flags & O_DIRECT) && (uint64_t)off + size > clone_size(c))
		n = -ENOSPC;
	else
		n = clone_write(c, buf, size, (uint64_t)off);
	/* A direct_io open gets no FSYNC after a synchronous write: the
	 * kernel puts O_DSYNC (O_SYNC, RWF_*SYNC) in the write's flags, and
	 * the write is acknowledged once durable, bits included (spec 2.5a). */
	if (n > 0 && (fi->flags & O_DSYNC) &&
	    (ret = clone_fsync(c, &open_file_of(fi)->errors_seen)))
		n = ret;
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, (size_t)n);
}

static void cfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		      struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync; /* the image's own metadata never changes */
	fuse_reply_err(req, -clone_fsync(clone_of(req), &open_file_of(fi)->errors_seen));
}

static void cfs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode,
			  off_t off, off_t len, struct fuse_file_info *fi)
{
	struct clone *c = clone_of(req);
	uint64_t size = clone_size(c);
	int ret;

	(void)ino;
	(void)fi;
	if (off < 0 || len <= 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	/* Growing the image is a size change (spec 2.8). */
	if (!(mode & FALLOC_FL_KEEP_SIZE) && (uint64_t)off + (uint64_t)len > size) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (clone_readonly(c)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (mode & FALLOC_FL_PUNCH_HOLE)
		ret = clone_zero(c, (uint64_t)off, (uint64_t)len, true);
	else if (mode & FALLOC_FL_ZERO_RANGE)
		ret = clone_zero(c, (uint64_t)off, (uint64_t)len, false);
	else
		ret = 0; /* every byte of the image is already addressable */
	fuse_reply_err(req, -ret);
}

static void cfs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct clone *c = clone_of(req);
	struct statvfs sv;

	(void)ino;
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = sv.f_frsize = 4096;
	sv.f_blocks = clone_size(c) / 4096;
	sv.f_files = 2;
	sv.f_namemax = 255;
	fuse_reply_statfs(req, &sv);
}

const struct fuse_lowlevel_ops clonefs_fuse_ops = {
	.init = cfs_init,
	.lookup = cfs_lookup,
	.getattr = cfs_getattr,
	.setattr = cfs_setattr,
	.readdir = cfs_readdir,
	.open = cfs_open,
	.release = cfs_release,
	.read = cfs_read,
	.write = cfs_write,
	.fsync = cfs_fsync,
	.fallocate = cfs_fallocate,
	.poll = cfs_poll,
	.statfs = cfs_statfs,
	.getxattr = cfs_getxattr,
	.listxattr = cfs_listxattr,
	.setxattr = cfs_setxattr,
};
