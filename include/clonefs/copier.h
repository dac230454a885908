/*
 * copier.h - copying regions from SOURCE to DEST, as hydration needs it.
 *
 * Sparse aware (spec 3.5): SOURCE's holes (SEEK_DATA/SEEK_HOLE) and
 * all-zero chunks become holes in DEST, not writes. By reflink where
 * SOURCE and DEST share a filesystem that can (tried once, kept while it
 * works). Background copies write DEST out right behind themselves and
 * yield to foreground flushes (spec 3.8). A SOURCE shorter than the image
 * it should cover is -EIO, never zeros (spec 1.4).
 *
 * One struct copier per clone, shared by every copy; one struct copy per
 * copy in progress (a thread's buffer and write-out state). The copier
 * neither locks nor marks regions: hydrate.c does both.
 */
#ifndef CLONEFS_COPIER_H
#define CLONEFS_COPIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clonefs/hydrate.h"

/* A copy's buffer: 256 KiB copies as fast as 1 MiB here, and keeps four
 * workers' buffers at 1 MiB of memory rather than 4. */
#define COPIER_CHUNK (256u << 10)
/* Chunks a background copy leaves in write-out before it waits for the
 * oldest: what of DEST a copy can leave for a foreground flush. */
#define COPIER_WRITE_BEHIND 2

struct copier {
	struct hydrate_target t;
	int wb_fd;              /* DEST again, for write-out; -1: none */
	int reflink;            /* FICLONERANGE works: 1, doesn't: 0, unknown:
				 * -1. Atomic, as copied_bytes */
	uint64_t copied_bytes;  /* read from SOURCE (or reflinked) since mount */
	/* Called before each chunk of a background copy (may wait). */
	void (*yield)(void *arg);
	void *yield_arg;
};

struct copy {
	char *buf;              /* COPIER_CHUNK bytes */
	uint64_t read;          /* bytes this copy read from SOURCE (or
				 * reflinked): what the rate limit counts */
	bool background;        /* writes out behind itself, yields */
	unsigned nr_wb;         /* chunks in write-out, oldest first: */
	uint64_t wb_off[COPIER_WRITE_BEHIND], wb_len[COPIER_WRITE_BEHIND];
};

void copier_init(struct copier *cp, const struct hydrate_target *t,
		 void (*yield)(void *arg), void *arg);
/* Open DEST again for background write-out (after any fork); without it
 * background copies leave write-out to the kernel. */
void copier_start(struct copier *cp);
void copier_fini(struct copier *cp);

/* Copy regions [first, first + n), reading @src where SOURCE's data goes on
 * past them. 0 or -errno; -EIO if SOURCE is now shorter than the image
 * covers there. Adds what it read to c->read. */
int copier_copy(struct copier *cp, int src, uint64_t first, uint64_t n,
		struct copy *c);
/* Can copier_copy_write do @region (256 KiB at most, no reflinks)? */
bool copier_copy_write_applies(struct copier *cp, uint64_t region);
/* @region, read from @src, with [off, off + len) replaced by @data, in one
 * DEST write (or a hole if all zeros). */
int copier_copy_write(struct copier *cp, int src, uint64_t region,
		      const void *data, uint64_t off, size_t len);
/* Ask for SOURCE's next data run after @off to be read ahead (sparse). */
void copier_read_ahead(struct copier *cp, uint64_t off);
/* Why a copy of regions @bad+@nbad failed with @ret, for status. */
void copier_describe_failure(struct copier *cp, int ret, uint64_t bad,
			     uint64_t nbad, char *msg, size_t len);
uint64_t copier_copied_bytes(struct copier *cp);

#endif
