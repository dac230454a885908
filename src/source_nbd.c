/*
 * source_nbd.c - SOURCE as an NBD export, through libnbd (source.h).
 *
 * Connections live in two pools, foreground and hydration. A thread takes a
 * connection for one read or one copy, drives it itself (nbd_aio_pread,
 * nbd_poll: libnbd holds a handle's lock across its poll, so one thread per
 * handle at a time) and gives it back. An empty slot is connected when
 * taken, after the back-off that failed attempts set; a connection that
 * fails, or has a request older than the timeout, is closed (so no late
 * reply can land in a buffer that has been given back) and its slot emptied.
 *
 * Nothing here marks a region or writes DEST: copies hand what they read to
 * the caller's sink in ascending order, and any failure ends the copy.
 */
#include "clonefs/source.h"
#include "clonefs/blockio.h"
#include "clonefs/errf.h"

#include <dlfcn.h>
#include <errno.h>
#include <glib.h>
#include <libnbd.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

/* Poll in slices this long at most, so that a stop is seen soon. */
#define POLL_SLICE_MS 100
#define BACKOFF_MIN_US (100 * 1000)
#define BACKOFF_MAX_US (5 * 1000 * 1000)
#define EXTENTS_MAX 256

/* ---- libnbd, loaded on first use ---- */

#define NBD_FUNCS(X) X(nbd_create) X(nbd_close) X(nbd_get_error) \
	X(nbd_get_errno) X(nbd_set_uri_allow_local_file) X(nbd_add_meta_context) \
	X(nbd_aio_connect_uri) X(nbd_aio_is_connecting) X(nbd_aio_is_ready) \
	X(nbd_aio_is_dead) X(nbd_aio_is_closed) X(nbd_poll) X(nbd_get_size) \
	X(nbd_can_multi_conn) X(nbd_can_meta_context) X(nbd_aio_pread) \
	X(nbd_aio_block_status) X(nbd_aio_command_completed)
#define NBD_FIELD(f) __typeof__(f) *f;

static struct { NBD_FUNCS(NBD_FIELD) } L;

/* NULL, or why libnbd cannot be used. */
static const char *load_libnbd(void)
{
	static gsize once;
	static const char *why;

	if (g_once_init_enter(&once)) {
		void *dl = dlopen("libnbd.so.0", RTLD_NOW | RTLD_LOCAL);

		if (!dl)
			why = "libnbd.so.0 cannot be loaded (install libnbd0)";
#define NBD_LOAD(f) if (dl && !(L.f = (__typeof__(f) *)dlsym(dl, #f))) \
			why = "libnbd.so.0 lacks " #f;
		NBD_FUNCS(NBD_LOAD)
#undef NBD_LOAD
		g_once_init_leave(&once, 1);
	}
	return why;
}

/* ---- state ---- */

struct conn {
	struct nbd_handle *h;	/* NULL: not connected */
	bool busy;		/* taken by a thread */
	char *buf;		/* window chunks, mapped on first copy */
	unsigned window;	/* reads a copy keeps in flight on it */
};

struct slot {
	int64_t cookie;
	uint64_t off;
	size_t len;
	gint64 t0;
	char *buf;
};

struct nbd_source {
	char *uri;
	gint64 timeout_us;
	uint64_t size;
	bool multi_conn, extents;

	GMutex lock;		/* the pools, the retry state, last_error */
	GCond cond;		/* a connection given back, or stop */
	struct conn fg[NBD_SOURCE_MAX_CONNS], hy[NBD_SOURCE_MAX_CONNS];
	unsigned nr_hy;
	bool stopping;		/* atomic too */
	unsigned failures;	/* connect attempts failed in a row */
	gint64 retry_at;
	char last_error[160];

	/* atomics */
	unsigned open_conns;
	uint64_t reads, read_bytes, read_errors, timeouts, connects,
		 connect_failures, zero_bytes;
};

static void count(uint64_t *c, uint64_t n)
{
	__atomic_add_fetch(c, n, __ATOMIC_RELAXED);
}

static bool stopping(struct nbd_source *s)
{
	return __atomic_load_n(&s->stopping, __ATOMIC_RELAXED);
}

static void set_error(struct nbd_source *s, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void set_error(struct nbd_source *s, const char *fmt, ...)
{
	va_list ap;

	g_mutex_lock(&s->lock);
	va_start(ap, fmt);
	vsnprintf(s->last_error, sizeof(s->last_error), fmt, ap);
	va_end(ap);
	g_mutex_unlock(&s->lock);
}

bool source_is_nbd_uri(const char *source)
{
	static const char *const schemes[] = { "nbd://", "nbds://", "nbd+unix://",
		"nbds+unix://", "nbd+vsock://", "nbds+vsock://" };

	for (size_t i = 0; i < G_N_ELEMENTS(schemes); i++)
		if (g_str_has_prefix(source, schemes[i]))
			return true;
	return false;
}

int64_t nbd_source_backoff_us(unsigned n)
{
	int64_t us = BACKOFF_MIN_US;

	while (n-- > 1 && us < BACKOFF_MAX_US)
		us *= 2;
	return MIN(us, BACKOFF_MAX_US);
}

/* Milliseconds to poll for, at most a slice, until @deadline. */
static int poll_ms(gint64 deadline)
{
	gint64 left = deadline - g_get_monotonic_time();

	if (left <= 0)
		return 0;
	return (int)MIN((left + 999) / 1000, POLL_SLICE_MS);
}

/* ---- connecting ---- */

/* Connect @c by @deadline: 0, or -errno with @why said. */
static int conn_connect(struct nbd_source *s, struct conn *c, gint64 deadline,
			char *why, size_t len)
{
	struct nbd_handle *h = L.nbd_create();
	int64_t size;

	if (!h) {
		snprintf(why, len, "%s", L.nbd_get_error());
		return -ENOMEM;
	}
	L.nbd_set_uri_allow_local_file(h, true); /* tls-psk-file= */
	L.nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION);
	if (L.nbd_aio_connect_uri(h, s->uri) == -1)
		goto fail;
	while (L.nbd_aio_is_connecting(h) == 1) {
		if (stopping(s) || g_get_monotonic_time() >= deadline) {
			snprintf(why, len, "%s", stopping(s) ? "stopped" :
				 "no answer within the timeout");
			L.nbd_close(h);
			return -ETIMEDOUT;
		}
		if (L.nbd_poll(h, poll_ms(deadline)) == -1)
			goto fail;
	}
	if (L.nbd_aio_is_ready(h) != 1) {
		snprintf(why, len, "%s", *L.nbd_get_error() ? L.nbd_get_error()
			 : "the server closed the connection");
		L.nbd_close(h);
		return -ECONNREFUSED;
	}
	size = L.nbd_get_size(h);
	if (size < 0)
		goto fail;
	if (s->size && (uint64_t)size != s->size) {
		snprintf(why, len, "the export's size changed (%" G_GINT64_FORMAT
			 " bytes, was %" G_GUINT64_FORMAT ")", size, s->size);
		L.nbd_close(h);
		return -EIO;
	}
	s->size = (uint64_t)size;
	c->h = h;
	count(&s->connects, 1);
	__atomic_add_fetch(&s->open_conns, 1, __ATOMIC_RELAXED);
	return 0;
fail:
	snprintf(why, len, "%s", L.nbd_get_error());
	L.nbd_close(h);
	return -ECONNREFUSED;
}

static void conn_drop(struct nbd_source *s, struct conn *c)
{
	__atomic_sub_fetch(&s->open_conns, 1, __ATOMIC_RELAXED);
	L.nbd_close(c->h);
	c->h = NULL;
}

/* The first free connection of a pool, connected, or NULL with *@err
 * (-EIO: stopped, or not by @deadline). */
static struct conn *checkout(struct nbd_source *s, bool fg, gint64 deadline, int *err)
{
	struct conn *pool = fg ? s->fg : s->hy;
	unsigned n = fg ? NBD_SOURCE_MAX_CONNS : s->nr_hy;

	g_mutex_lock(&s->lock);
	while (!s->stopping) {
		struct conn *c = NULL, *empty = NULL;
		gint64 now = g_get_monotonic_time();
		char why[160];
		int ret;

		for (unsigned i = 0; i < n && !c; i++) {
			if (!pool[i].busy && pool[i].h)
				c = &pool[i];
			else if (!pool[i].busy && !empty)
				empty = &pool[i];
		}
		if (c || (empty && now >= s->retry_at)) {
			c = c ? c : empty;
			c->busy = true;
			if (c->h) {
				g_mutex_unlock(&s->lock);
				return c;
			}
			g_mutex_unlock(&s->lock);
			ret = conn_connect(s, c, MIN(deadline, now + s->timeout_us),
					   why, sizeof(why));
			g_mutex_lock(&s->lock);
			if (!ret) {
				if (s->failures)
					g_message("source %s: connected again", s->uri);
				s->failures = 0;
				g_mutex_unlock(&s->lock);
				return c;
			}
			c->busy = false;
			if (!s->stopping) {
				s->failures++;
				s->retry_at = g_get_monotonic_time() +
					      nbd_source_backoff_us(s->failures);
				snprintf(s->last_error, sizeof(s->last_error),
					 "connect: %.140s", why);
				count(&s->connect_failures, 1);
				if (s->failures == 1 || s->failures % 10 == 0)
					g_warning("source %s: cannot connect (%s); "
						  "retrying", s->uri, why);
			}
			g_cond_broadcast(&s->cond);
			continue;
		}
		if (now >= deadline)
			break;
		g_cond_wait_until(&s->cond, &s->lock,
				  MIN(deadline, empty ? s->retry_at : G_MAXINT64));
	}
	g_mutex_unlock(&s->lock);
	*err = -EIO;
	return NULL;
}

/* Give @c back; a failure other than the server's answer (@ret -ENOTCONN,
 * -ETIMEDOUT) closes it first. */
static void checkin(struct nbd_source *s, struct conn *c, int ret)
{
	if (ret == -ENOTCONN || ret == -ETIMEDOUT)
		conn_drop(s, c);
	g_mutex_lock(&s->lock);
	c->busy = false;
	if (ret == -ENOTCONN && !s->stopping) {
		/* the next taker reconnects at once; a failure there backs off */
		g_warning("source %s: connection lost (%s); reconnecting", s->uri,
			  s->last_error);
	}
	g_cond_broadcast(&s->cond);
	g_mutex_unlock(&s->lock);
}

/* ---- requests ---- */

/* Why the request behind a failed nbd_aio_* call failed: -ENOTCONN when
 * the connection is gone, else -EIO (the server's error), said. */
static int request_error(struct nbd_source *s, struct conn *c, const char *what,
			 uint64_t off, size_t len)
{
	bool dead = L.nbd_aio_is_dead(c->h) == 1 || L.nbd_aio_is_closed(c->h) == 1;

	set_error(s, "%s %" G_GUINT64_FORMAT "+%zu: %s", what, off, len,
		  *L.nbd_get_error() ? L.nbd_get_error() : g_strerror(L.nbd_get_errno()));
	if (!dead)
		count(&s->read_errors, 1);
	return dead ? -ENOTCONN : -EIO;
}

/* Wait for @cookie, sent at @t0: 0, -EIO (the server failed it),
 * -ENOTCONN (connection lost, or stopping), -ETIMEDOUT. */
static int wait_for(struct nbd_source *s, struct conn *c, int64_t cookie,
		    gint64 t0, const char *what, uint64_t off, size_t len)
{
	gint64 deadline = t0 + s->timeout_us;

	for (;;) {
		int r = L.nbd_aio_command_completed(c->h, (uint64_t)cookie);

		if (r == 1)
			return 0;
		if (r == -1)
			return request_error(s, c, what, off, len);
		if (stopping(s))
			return -ENOTCONN;
		if (g_get_monotonic_time() >= deadline) {
			count(&s->timeouts, 1);
			set_error(s, "%s %" G_GUINT64_FORMAT "+%zu: no answer within "
				  "%" G_GINT64_FORMAT " s", what, off, len,
				  s->timeout_us / G_USEC_PER_SEC);
			return -ETIMEDOUT;
		}
		if (L.nbd_poll(c->h, poll_ms(deadline)) == -1 &&
		    (L.nbd_aio_is_dead(c->h) == 1 || L.nbd_aio_is_closed(c->h) == 1))
			return request_error(s, c, what, off, len);
	}
}

/* Send a read of [off, off + len) into @buf: 0 or -errno. */
static int send_read(struct nbd_source *s, struct conn *c, struct slot *sl,
		     char *buf, uint64_t off, size_t len)
{
	int ret = bio_source_will_read(off, len); /* fault injection (tests) */

	if (ret) {
		set_error(s, "read %" G_GUINT64_FORMAT "+%zu: %s (injected)", off,
			  len, g_strerror(-ret));
		return ret;
	}
	sl->buf = buf;
	sl->off = off;
	sl->len = len;
	sl->t0 = g_get_monotonic_time();
	sl->cookie = L.nbd_aio_pread(c->h, buf, len, off, NBD_NULL_COMPLETION, 0);
	if (sl->cookie == -1)
		return request_error(s, c, "read", off, len);
	return 0;
}

/* After a failure, wait out the reads still in flight (their buffers are
 * the caller's); a connection that cannot is closed by checkin. */
static int drain(struct nbd_source *s, struct conn *c, struct slot *sl,
		 unsigned n, int ret)
{
	for (unsigned i = 0; i < n; i++) {
		int r = wait_for(s, c, sl[i].cookie, sl[i].t0, "read", sl[i].off,
				 sl[i].len);

		if (r == -ENOTCONN || r == -ETIMEDOUT)
			return r;
	}
	return ret;
}

/* Read [off, off + len) into @buf on @c, a window of chunks at a time. */
static int conn_pread(struct nbd_source *s, struct conn *c, char *buf,
		      size_t len, uint64_t off)
{
	struct slot sl[NBD_SOURCE_WINDOW];
	size_t done = 0;

	while (done < len) {
		unsigned n = 0;
		int ret = 0;

		for (; n < NBD_SOURCE_WINDOW && done < len && !ret; n++) {
			size_t l = MIN(len - done, NBD_SOURCE_CHUNK);

			ret = send_read(s, c, &sl[n], buf + done, off + done, l);
			if (!ret)
				done += l;
		}
		if (ret)
			return drain(s, c, sl, n - 1, ret);
		for (unsigned i = 0; i < n; i++) {
			ret = wait_for(s, c, sl[i].cookie, sl[i].t0, "read", sl[i].off,
				       sl[i].len);
			if (ret)
				return drain(s, c, sl + i + 1, n - i - 1, ret);
			count(&s->reads, 1);
			count(&s->read_bytes, sl[i].len);
		}
	}
	return 0;
}

int nbd_source_pread(struct nbd_source *s, void *buf, size_t len, uint64_t off)
{
	gint64 deadline = g_get_monotonic_time() + s->timeout_us;
	int ret;

	if (off > s->size || len > s->size - off)
		return -EIO;
	do {
		struct conn *c = checkout(s, true, deadline, &ret);

		if (!c)
			break;
		ret = conn_pread(s, c, buf, len, off);
		checkin(s, c, ret);
		/* a lost connection: again on a new one, while time is left */
	} while (ret == -ENOTCONN && !stopping(s) && g_get_monotonic_time() < deadline);
	return ret ? -EIO : 0;
}

/* ---- copies ---- */

struct extents {
	uint32_t len[EXTENTS_MAX];
	bool zero[EXTENTS_MAX];
	unsigned n;
	uint64_t next; /* where the extents reported so far end */
};

static int on_extents(void *arg, const char *context, uint64_t off,
		      uint32_t *entries, size_t nr, int *error)
{
	struct extents *e = arg;

	(void)error;
	if (strcmp(context, LIBNBD_CONTEXT_BASE_ALLOCATION))
		return 0;
	if (e->n == 0)
		e->next = off;
	for (size_t i = 0; i + 1 < nr && e->n < EXTENTS_MAX; i += 2) {
		e->len[e->n] = entries[i];
		/* a hole reads as zeros too, when the server says ZERO */
		e->zero[e->n++] = entries[i + 1] & LIBNBD_STATE_ZERO;
		e->next += entries[i];
	}
	return 0;
}

/* Which of [off, end) holds zeros: *@e from base:allocation, or one data
 * extent when the server cannot tell. */
static int block_status(struct nbd_source *s, struct conn *c, uint64_t off,
			uint64_t end, struct extents *e)
{
	nbd_extent_callback cb = { .callback = on_extents, .user_data = e };
	uint64_t len = MIN(end - off, (uint64_t)1 << 30);
	int64_t cookie;

	e->n = 0;
	if (s->extents) {
		cookie = L.nbd_aio_block_status(c->h, len, off, cb, NBD_NULL_COMPLETION, 0);
		if (cookie == -1)
			return request_error(s, c, "block status", off, len);
		int ret = wait_for(s, c, cookie, g_get_monotonic_time(),
				   "block status", off, len);
		if (ret)
			return ret;
	}
	if (e->n == 0 || e->next <= off) { /* none, or nothing useful */
		e->n = 1;
		e->len[0] = (uint32_t)MIN(len, (uint64_t)UINT32_MAX & ~4095ull);
		e->zero[0] = false;
	}
	return 0;
}

/* Read the data run [off, end) through @c's window into @sink, in order. */
static int copy_run(struct nbd_source *s, struct conn *c, uint64_t off,
		    uint64_t end, const struct nbd_sink *sink, uint64_t *read)
{
	struct slot sl[NBD_SOURCE_MAX_WINDOW];
	unsigned head = 0, nr = 0, w = c->window;
	uint64_t next = off;
	int ret = 0;

	while (!ret && (next < end || nr)) {
		while (!ret && next < end && nr < w) {
			unsigned i = (head + nr) % w;
			size_t l = (size_t)MIN(end - next, NBD_SOURCE_CHUNK);

			ret = send_read(s, c, &sl[i], c->buf + (size_t)i * NBD_SOURCE_CHUNK,
					next, l);
			if (!ret) {
				next += l;
				nr++;
			}
		}
		if (ret || !nr)
			break;
		ret = wait_for(s, c, sl[head].cookie, sl[head].t0, "read",
			       sl[head].off, sl[head].len);
		if (!ret) {
			count(&s->reads, 1);
			count(&s->read_bytes, sl[head].len);
			*read += sl[head].len;
			ret = sink->data(sink->arg, sl[head].buf, sl[head].off, sl[head].len);
		}
		head = (head + 1) % w;
		nr--;
	}
	if (ret && nr) { /* the rest of the window, in order */
		struct slot rest[NBD_SOURCE_MAX_WINDOW];

		for (unsigned k = 0; k < nr; k++)
			rest[k] = sl[(head + k) % w];
		ret = drain(s, c, rest, nr, ret);
	}
	return ret;
}

static int conn_copy(struct nbd_source *s, struct conn *c, uint64_t off,
		     uint64_t end, const struct nbd_sink *sink, uint64_t *read)
{
	struct extents e;
	int ret = 0;

	if (!c->buf) {
		c->buf = mmap(NULL, (size_t)c->window * NBD_SOURCE_CHUNK,
			      PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (c->buf == MAP_FAILED) {
			c->buf = NULL;
			return -ENOMEM;
		}
	}
	while (off < end && !ret) {
		if ((ret = block_status(s, c, off, end, &e)))
			break;
		for (unsigned i = 0; i < e.n && off < end && !ret; i++) {
			uint64_t stop = MIN(off + e.len[i], end);

			if (e.zero[i]) {
				ret = sink->zero(sink->arg, off, stop - off);
				count(&s->zero_bytes, stop - off);
			} else {
				ret = copy_run(s, c, off, stop, sink, read);
			}
			off = stop;
		}
	}
	return ret;
}

int nbd_source_copy(struct nbd_source *s, uint64_t off, uint64_t end,
		    bool foreground, const struct nbd_sink *sink, uint64_t *read)
{
	gint64 deadline = foreground ? g_get_monotonic_time() + s->timeout_us
				     : G_MAXINT64;
	struct conn *c;
	int ret;

	if (end > s->size || off > end)
		return -EIO;
	c = checkout(s, foreground, deadline, &ret);
	if (!c)
		return ret;
	ret = conn_copy(s, c, off, end, sink, read);
	checkin(s, c, ret);
	return ret == -ENOTCONN || ret == -ETIMEDOUT ? -EIO : ret;
}

/* ---- life cycle, status ---- */

int nbd_source_open(const char *uri, uint32_t timeout_ms,
		    struct nbd_source **out, char *err, size_t errlen)
{
	struct nbd_source *s;
	const char *why = load_libnbd();
	char msg[160];
	int ret;

	if (why)
		return errf(err, errlen, -ENOSYS, "source %s: %s", uri, why);
	s = g_new0(struct nbd_source, 1);
	s->uri = g_strdup(uri);
	s->timeout_us = (gint64)timeout_ms * 1000;
	g_mutex_init(&s->lock);
	g_cond_init(&s->cond);
	ret = conn_connect(s, &s->fg[0], g_get_monotonic_time() + s->timeout_us,
			   msg, sizeof(msg));
	if (ret) {
		errf(err, errlen, ret, "source %s: %s", uri, msg);
		goto fail;
	}
	if (s->size == 0) {
		ret = errf(err, errlen, -EINVAL, "source %s: is empty (export size 0)", uri);
		goto fail;
	}
	s->multi_conn = L.nbd_can_multi_conn(s->fg[0].h) == 1;
	s->extents = L.nbd_can_meta_context(s->fg[0].h,
					    LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
	s->nr_hy = s->multi_conn ? NBD_SOURCE_MAX_CONNS : 1;
	for (int i = 0; i < NBD_SOURCE_MAX_CONNS; i++) {
		s->fg[i].window = NBD_SOURCE_WINDOW;
		s->hy[i].window = NBD_SOURCE_MAX_WINDOW / s->nr_hy;
	}
	*out = s;
	return 0;
fail:
	nbd_source_close(s);
	return ret;
}

void nbd_source_stop(struct nbd_source *s)
{
	g_mutex_lock(&s->lock);
	__atomic_store_n(&s->stopping, true, __ATOMIC_RELAXED);
	g_cond_broadcast(&s->cond);
	g_mutex_unlock(&s->lock);
}

void nbd_source_close(struct nbd_source *s)
{
	struct conn *pools[2];

	if (!s)
		return;
	pools[0] = s->fg;
	pools[1] = s->hy;
	for (int p = 0; p < 2; p++) {
		for (int i = 0; i < NBD_SOURCE_MAX_CONNS; i++) {
			struct conn *c = &pools[p][i];

			if (c->h)
				conn_drop(s, c);
			if (c->buf)
				munmap(c->buf, (size_t)c->window * NBD_SOURCE_CHUNK);
		}
	}
	g_mutex_clear(&s->lock);
	g_cond_clear(&s->cond);
	g_free(s->uri);
	g_free(s);
}

uint64_t nbd_source_size(struct nbd_source *s) { return s->size; }
bool nbd_source_multi_conn(struct nbd_source *s) { return s->multi_conn; }

const char *nbd_source_state_word(enum nbd_source_state state)
{
	switch (state) {
	case NBD_CONNECTED: return "connected";
	case NBD_RETRYING: return "retrying";
	default: return "stopped";
	}
}

void nbd_source_get_stats(struct nbd_source *s, struct nbd_source_stats *st)
{
	memset(st, 0, sizeof(*st));
	g_mutex_lock(&s->lock);
	st->state = s->stopping ? NBD_STOPPED : s->failures ? NBD_RETRYING
							     : NBD_CONNECTED;
	memcpy(st->last_error, s->last_error, sizeof(st->last_error));
	g_mutex_unlock(&s->lock);
	st->multi_conn = s->multi_conn;
	st->connections = __atomic_load_n(&s->open_conns, __ATOMIC_RELAXED);
#define GET(f) st->f = __atomic_load_n(&s->f, __ATOMIC_RELAXED)
	GET(reads); GET(read_bytes); GET(read_errors); GET(timeouts);
	GET(connects); GET(connect_failures); GET(zero_bytes);
#undef GET
}
