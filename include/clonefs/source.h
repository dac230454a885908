/*
 * source.h - a SOURCE that is not a local file: an NBD export, reached with
 * libnbd (spec 1.7). nbd://HOST[:PORT]/EXPORT, nbds:// (TLS),
 * nbd+unix:///EXPORT?socket=PATH and the other forms nbd_connect_uri(3)
 * reads, with its TLS query parameters (tls-certificates, tls-verify-peer,
 * tls-psk-file, tls-username).
 *
 * Local SOURCE files keep their own path (fds through blockio); only an
 * NBD URI comes here. Read-only: nothing is ever written to the server.
 *
 * Connections: one for probing at open, then foreground connections (user
 * reads and the copies writes need) apart from hydration connections (one
 * per worker when the server allows multi-conn, else one), so a user's read
 * never waits behind a hydration batch on the wire. Each connection is used
 * by one thread at a time, which drives it (nbd_aio_*, nbd_poll).
 *
 * Faults: a connection that fails, or whose request takes longer than the
 * timeout, is closed and reconnected with back-off. A foreground read fails
 * with -EIO when it cannot be served within the timeout; hydration waits for
 * the server to come back. Every failed or short read is an error, never
 * zeros. libnbd is loaded (dlopen) only when an NBD SOURCE is used, so local
 * mounts do not carry its libraries (gnutls, libxml2: about 4 MiB resident).
 */
#ifndef CLONEFS_SOURCE_H
#define CLONEFS_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nbd_source;

/* Reads of this size at most go to the server in one request. */
#define NBD_SOURCE_CHUNK (256u << 10)
/* Requests in flight per connection: 4 hydration connections x 4 x 256 KiB
 * of buffers (scripts/bench: enough for 2 ms of latency). A server without
 * multi-conn gets one hydration connection with all 16 in flight, the same
 * 4 MiB. */
#define NBD_SOURCE_WINDOW 4
#define NBD_SOURCE_MAX_CONNS 4
#define NBD_SOURCE_MAX_WINDOW (NBD_SOURCE_WINDOW * NBD_SOURCE_MAX_CONNS)
/* Hydration defaults for an NBD SOURCE, taken where the options hold the
 * local ones: 4 MiB batches keep a connection's window full between
 * batches (scripts/bench, at 2 ms a read). */
#define NBD_SOURCE_BATCH 64u
#define NBD_SOURCE_THRESHOLD 256u

/* True if @source names an NBD export (nbd:// nbds:// nbd+unix:// ...). */
bool source_is_nbd_uri(const char *source);

/*
 * Connect to @uri and read the export's size and flags. @timeout_ms bounds
 * the connection and every read. -errno with one line in @err on failure
 * (libnbd missing, bad URI, unreachable, TLS, an empty export). Starts no
 * threads: the caller may fork afterwards and go on using it.
 */
int nbd_source_open(const char *uri, uint32_t timeout_ms,
		    struct nbd_source **out, char *err, size_t errlen);
/* Fail every wait (reads, reconnects) at once: the mount is going away. */
void nbd_source_stop(struct nbd_source *s);
void nbd_source_close(struct nbd_source *s);

uint64_t nbd_source_size(struct nbd_source *s);
/* The server allows multi-conn: several hydration connections. */
bool nbd_source_multi_conn(struct nbd_source *s);

/* Read exactly @len bytes at @off on a foreground connection: 0, or -EIO
 * if the server fails it or it cannot be done within the timeout. */
int nbd_source_pread(struct nbd_source *s, void *buf, size_t len, uint64_t off);

/*
 * Where a copy puts what it read, in ascending order: @data for bytes read
 * (at most NBD_SOURCE_CHUNK at a time), @zero for ranges the server says
 * are holes or zeros (base:allocation). Each returns 0 or -errno, which
 * ends the copy.
 */
struct nbd_sink {
	int (*data)(void *arg, const char *buf, uint64_t off, size_t len);
	int (*zero)(void *arg, uint64_t off, uint64_t len);
	void *arg;
};
/*
 * Copy [off, end) of SOURCE into @sink, with a window of reads in
 * flight: on a hydration connection (waiting for the server while it is
 * away), or with @foreground on a foreground one (bounded by the timeout).
 * Adds the bytes read to *@read. 0 or -errno (-EIO: the server failed a
 * read, or the connection was lost: nothing was read short or as zeros).
 */
int nbd_source_copy(struct nbd_source *s, uint64_t off, uint64_t end,
		    bool foreground, const struct nbd_sink *sink, uint64_t *read);

enum nbd_source_state { NBD_CONNECTED, NBD_RETRYING, NBD_STOPPED };

struct nbd_source_stats {
	enum nbd_source_state state;
	unsigned connections;     /* open now */
	bool multi_conn;
	uint64_t reads, read_bytes;
	uint64_t read_errors;     /* the server failed a read */
	uint64_t timeouts;        /* reads not served within the timeout */
	uint64_t connects, connect_failures;
	uint64_t zero_bytes;      /* skipped as holes or zeros (block status) */
	char last_error[160];
};
void nbd_source_get_stats(struct nbd_source *s, struct nbd_source_stats *st);
const char *nbd_source_state_word(enum nbd_source_state state);

/* The back-off before reconnect attempt @n (from 1): 100 ms doubling to
 * 5 s (exposed for tests). */
int64_t nbd_source_backoff_us(unsigned n);

#endif
