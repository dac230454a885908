/*
 * copier.c - the copy of a range of regions from SOURCE to DEST (copier.h).
 *
 * Copies read SOURCE in COPIER_CHUNK pieces through a caller's buffer: data
 * runs only (SEEK_DATA/SEEK_HOLE), each chunk written to DEST or, if all
 * zeros, punched (spec 3.5). Background copies start DEST's write-out of
 * each chunk at once and wait for it COPIER_WRITE_BEHIND chunks later, so
 * that a foreground fdatasync never finds a copier's backlog to write
 * (spec 3.8). Nothing here marks a region: the data is written, and the
 * next commit's flush makes it durable before the bit (spec 3.2).
 */
#include "clonefs/copier.h"
#include "clonefs/blockio.h"
#include "clonefs/source.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_AHEAD (4u << 20)	/* what 4 workers take at the default batch size */

/* Make DEST read zeros in [off, off + len) without allocating. */
static int dest_hole(int fd, uint64_t off, uint64_t len)
{
	return bio_zero(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
}

/*
 * Background copies write DEST out right behind themselves and wait for
 * the write-out of their chunk COPIER_WRITE_BEHIND chunks back, so that DEST's
 * dirty data from copies stays at about workers x COPIER_WRITE_BEHIND x
 * COPIER_CHUNK (spec 3.8): left to the kernel's flusher, hundreds of MiB
 * piled up for the next foreground fdatasync to write. Durability is the
 * commit's, as before (spec 3.2): this only writes earlier.
 *
 * Through cp->wb_fd, DEST opened again: sync_file_range reports a write-out
 * error to the file it is called on, once (errseq), and on cp->t.dest_fd it
 * would then be gone for the commit's flush. A failed write-out fails the
 * copy; the commit's flush sees the error too.
 */
static int write_behind(struct copier *cp, struct copy *c, uint64_t off, size_t n)
{
	int ret = 0;

	if (!c->background || cp->wb_fd < 0)
		return 0;
	if (sync_file_range(cp->wb_fd, (off_t)off, (off_t)n, SYNC_FILE_RANGE_WRITE))
		return errno == EIO || errno == ENOSPC ? -errno : 0;
	if (c->nr_wb == COPIER_WRITE_BEHIND) {
		if (sync_file_range(cp->wb_fd, (off_t)c->wb_off[0], (off_t)c->wb_len[0],
				    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
				    SYNC_FILE_RANGE_WAIT_AFTER) &&
		    (errno == EIO || errno == ENOSPC))
			ret = -errno;
		c->nr_wb--;
		memmove(c->wb_off, c->wb_off + 1, c->nr_wb * sizeof(c->wb_off[0]));
		memmove(c->wb_len, c->wb_len + 1, c->nr_wb * sizeof(c->wb_len[0]));
	}
	c->wb_off[c->nr_wb] = off;
	c->wb_len[c->nr_wb++] = n;
	return ret;
}

/* Put @n bytes read from SOURCE at @off into DEST: a hole if all zeros.
 * @c: the copy, which writes out behind itself; NULL for a write's. */
static int put_copied(struct copier *cp, struct copy *c, const char *buf,
		      uint64_t off, size_t n)
{
	bool zero = bio_all_zero(buf, n);
	int ret = zero ? dest_hole(cp->t.dest_fd, off, n)
		       : bio_pwrite(cp->t.dest_fd, buf, n, off);

	if (!ret)
		__atomic_add_fetch(&cp->copied_bytes, n, __ATOMIC_RELAXED);
	if (!ret && !zero && c)
		ret = write_behind(cp, c, off, n);
	return ret;
}

/* Copy [off, end) of SOURCE (@src) holding data (not a hole) to DEST. */
static int copy_data(struct copier *cp, int src, struct copy *c, uint64_t off,
		     uint64_t end)
{
	while (off < end) {
		size_t n = end - off < COPIER_CHUNK ? (size_t)(end - off) : COPIER_CHUNK;
		int ret;

		if (c->background)
			cp->yield(cp->yield_arg);
		ret = bio_pread(src, c->buf, n, off);
		if (!ret) {
			c->read += n;
			ret = put_copied(cp, c, c->buf, off, n);
		}
		if (ret)
			return ret;
		off += n;
	}
	return 0;
}

/*
 * The image size is fixed at mount (spec 1.4): a SOURCE that has shrunk
 * below @end since is an I/O error, never a hole, so that no copy takes the
 * missing bytes for zeros and marks them.
 */
static int source_covers(struct copier *cp, uint64_t end)
{
	uint64_t size;
	int ret = bio_size(cp->t.src_fd, &size);

	return ret ? ret : size < end ? -EIO : 0;
}

/*
 * Where SOURCE and DEST share a filesystem that can reflink (btrfs, xfs), a
 * copy is a metadata operation that also keeps holes: try it once, and keep
 * using it while it works. Elsewhere it fails at once (EXDEV, EOPNOTSUPP).
 * Returns 1 if it copied [off, end), 0 if it did not apply, or -errno.
 */
static int try_reflink(struct copier *cp, struct copy *c, uint64_t off,
		       uint64_t end)
{
	int ret;

	if (!__atomic_load_n(&cp->reflink, __ATOMIC_RELAXED))
		return 0;
	/* "To the end of SOURCE" must still mean to the image's end */
	if ((ret = source_covers(cp, end)))
		return ret;
	/* length 0: to the end of SOURCE, which a short last region needs */
	ret = bio_clone_range(cp->t.dest_fd, cp->t.src_fd, off,
			      end == cp->t.image_size ? 0 : end - off);
	if (ret) {
		/* SOURCE shrinking meanwhile says nothing about reflinks */
		if (source_covers(cp, end))
			return -EIO;
		if (__atomic_exchange_n(&cp->reflink, 0, __ATOMIC_RELAXED) < 0)
			g_debug("no reflink from source to dest (%s): copying",
				g_strerror(-ret));
		return 0;
	}
	__atomic_store_n(&cp->reflink, 1, __ATOMIC_RELAXED);
	/* and if it shrank during the clone, DEST may lack its tail */
	if ((ret = source_covers(cp, end)))
		return ret;
	__atomic_add_fetch(&cp->copied_bytes, end - off, __ATOMIC_RELAXED);
	c->read += end - off;
	return 1;
}

/* The first run of SOURCE data in [off, end) (bio_data_run); -EIO if
 * SOURCE now ends before @end. */
static int data_run(struct copier *cp, int src, uint64_t off, uint64_t end,
		    uint64_t *data, uint64_t *stop)
{
	return bio_data_run(src, off, end, data, stop) ? source_covers(cp, end) : 0;
}

/* An NBD SOURCE's copy puts its reads and zero extents into DEST as a
 * local copy does (nbd_source_copy reads, in order, pipelined). */
struct remote_put {
	struct copier *cp;
	struct copy *c;
};

static int remote_data(void *arg, const char *buf, uint64_t off, size_t len)
{
	struct remote_put *rp = arg;

	if (rp->c->background)
		rp->cp->yield(rp->cp->yield_arg);
	return put_copied(rp->cp, rp->c, buf, off, len);
}

static int remote_zero(void *arg, uint64_t off, uint64_t len)
{
	struct remote_put *rp = arg;

	return dest_hole(rp->cp->t.dest_fd, off, len);
}

static int copy_remote(struct copier *cp, struct copy *c, uint64_t off, uint64_t end)
{
	struct remote_put rp = { cp, c };
	struct nbd_sink sink = { remote_data, remote_zero, &rp };

	return nbd_source_copy(cp->t.nbd, off, end, !c->background, &sink, &c->read);
}

/*
 * Copy regions [first, first + n) through @c's buffer, COPIER_CHUNK bytes,
 * reading @src where data goes on past them, cp->t.src_fd where a hole
 * follows: its readahead would only fill the page cache with the hole's zeros.
 */
int copier_copy(struct copier *cp, int src, uint64_t first, uint64_t n,
		      struct copy *c)
{
	uint64_t off = first * cp->t.region_size;
	uint64_t end = (first + n) * cp->t.region_size;
	int ret = 0;

	if (end > cp->t.image_size)
		end = cp->t.image_size;
	if (cp->t.nbd)
		return copy_remote(cp, c, off, end);
	ret = try_reflink(cp, c, off, end);
	if (ret)
		return ret < 0 ? ret : 0;
	while (off < end && !ret) {
		uint64_t data, stop;

		if ((ret = data_run(cp, src, off, end, &data, &stop)))
			break;
		if (data > off)
			ret = dest_hole(cp->t.dest_fd, off, data - off);
		if (!ret && data < end)
			ret = copy_data(cp, stop < end ? cp->t.src_fd : src, c,
					data, stop);
		off = stop;
	}
	return ret;
}

/* Why the copy of regions @bad+@nbad failed, for status: a SOURCE that
 * shrank under the mount is named as such (spec 1.4). Takes no lock. */
void copier_describe_failure(struct copier *cp, int ret, uint64_t bad,
			     uint64_t nbad, char *msg, size_t len)
{
	uint64_t size;
	struct nbd_source_stats st;

	if (cp->t.nbd) {
		nbd_source_get_stats(cp->t.nbd, &st);
		snprintf(msg, len, "copy of regions %" G_GUINT64_FORMAT "+%"
			 G_GUINT64_FORMAT " failed: %s (source: %s)", bad, nbad,
			 g_strerror(-ret), st.last_error);
	} else if (ret == -EIO && !bio_size(cp->t.src_fd, &size) && size < cp->t.image_size)
		snprintf(msg, len, "copy of regions %" G_GUINT64_FORMAT "+%"
			 G_GUINT64_FORMAT " failed: source is shorter than the "
			 "image (%" G_GUINT64_FORMAT " < %" G_GUINT64_FORMAT
			 " bytes)", bad, nbad, size, cp->t.image_size);
	else
		snprintf(msg, len, "copy of regions %" G_GUINT64_FORMAT "+%"
			 G_GUINT64_FORMAT " failed: %s", bad, nbad, g_strerror(-ret));
}

/*
 * Where SOURCE is sparse, a worker asks for the data that follows its batch
 * (the first run within READ_AHEAD), which the next batches will read
 * through cp->t.src_fd, without readahead. Dense data the stream file's
 * readahead brings sooner: asking for it there too made the copy slower.
 */
void copier_read_ahead(struct copier *cp, uint64_t off)
{
	uint64_t end = MIN(off + READ_AHEAD, cp->t.image_size), data, stop;

	if (off >= end || cp->t.nbd)
		return;
	/* advice only: a short SOURCE is the copy's to report */
	if (!data_run(cp, cp->t.src_fd, off, end, &data, &stop) &&
	    stop > data && stop < end)
		bio_read_ahead(cp->t.src_fd, data, stop - data);
}

/*
 * The region read whole, the write laid over it, one DEST write (or a hole,
 * if all of it is zeros): not a copy and then a write, each taking DEST's
 * inode lock, after two lseeks for SOURCE's holes (a hole reads as zeros,
 * which the zero check catches). A reflink shares SOURCE's blocks instead:
 * where it works, callers copy and then write.
 */
bool copier_copy_write_applies(struct copier *cp, uint64_t region)
{
	uint64_t start = region * cp->t.region_size;

	return MIN((uint64_t)cp->t.region_size, cp->t.image_size - start) <= COPIER_CHUNK &&
	       __atomic_load_n(&cp->reflink, __ATOMIC_RELAXED) <= 0;
}

int copier_copy_write(struct copier *cp, int src, uint64_t region,
		      const void *data, uint64_t off, size_t len)
{
	uint64_t start = region * cp->t.region_size;
	size_t n = (size_t)MIN((uint64_t)cp->t.region_size, cp->t.image_size - start);
	char *buf;
	int ret;

	g_assert(off >= start && off + len <= start + n);
	buf = malloc(n);
	if (!buf)
		return -ENOMEM;
	ret = cp->t.nbd ? nbd_source_pread(cp->t.nbd, buf, n, start)
			: bio_pread(src, buf, n, start);
	if (!ret) {
		memcpy(buf + (off - start), data, len);
		ret = put_copied(cp, NULL, buf, start, n);
	}
	free(buf);
	return ret;
}

static void no_yield(void *arg)
{
	(void)arg;
}

void copier_init(struct copier *cp, const struct hydrate_target *t,
		 void (*yield)(void *arg), void *arg)
{
	cp->t = *t;
	cp->wb_fd = -1;
	cp->reflink = t->nbd ? 0 : -1; /* nothing to share with a server */
	cp->copied_bytes = 0;
	cp->yield = yield ? yield : no_yield;
	cp->yield_arg = arg;
}

/* A file of the copier's own: write_behind says why. */
void copier_start(struct copier *cp)
{
	char path[64];

	if (cp->wb_fd >= 0)
		return;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", cp->t.dest_fd);
	cp->wb_fd = open(path, O_WRONLY | O_CLOEXEC);
	if (cp->wb_fd < 0)
		g_debug("no write-behind for copies: %s: %s", path, g_strerror(errno));
}

void copier_fini(struct copier *cp)
{
	if (cp->wb_fd >= 0)
		close(cp->wb_fd);
	cp->wb_fd = -1;
}

uint64_t copier_copied_bytes(struct copier *cp)
{
	return __atomic_load_n(&cp->copied_bytes, __ATOMIC_RELAXED);
}
