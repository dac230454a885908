/*
 * clone_impl.h - the state of a clone, shared by clone.c (the policy) and
 * clone_open.c (opening and validating its files). Not for other modules:
 * they see only clone.h.
 */
#ifndef CLONEFS_CLONE_IMPL_H
#define CLONEFS_CLONE_IMPL_H

#include "clonefs/clone.h"
#include "clonefs/hydrate.h"
#include "clonefs/metadata.h"
#include "clonefs/profile.h"
#include "clonefs/source.h"

#include <glib.h>
#include <sys/types.h>

struct clone {
	struct clone_options opt;
	int src_fd, dest_fd;
	int copy_src_fd, stream_src_fd, write_src_fd; /* SOURCE again, for copies */
	struct nbd_source *nbd;	/* an NBD SOURCE (the fds above are -1), or NULL */
	uint64_t size;
	uint32_t region_size;
	unsigned region_shift;
	uint64_t nr_regions;
	struct md *md;
	struct hydrate *hy;
	struct profile_rec *rec; /* regions in first-touch order (spec 3.9) */
	bool discard_passdown;

	uid_t image_uid;
	gid_t image_gid;
	mode_t image_mode;
	/* Errors that lost acknowledged data, in the way of Linux's errseq:
	 * each open file remembers the count it has seen (spec 2.5b). */
	uint64_t lost_writes;

	/* Group commit: one commit runs at a time; the syncs that arrive
	 * meanwhile all ride the next one (clone.c). */
	GMutex group_lock;
	GCond group_cond;
	bool committing, next_flushes, next_checkpoint;
	uint64_t commits_started, commits_finished;
	int last_result;

	GMutex timer_lock;
	GCond timer_cond;
	bool stopping;
	GThread *committer;
};

/* Hydrate @p's regions first, once it is found to fit @c (clone.c); @path
 * names it in messages. */
int clone_set_prefetch(struct clone *c, const struct profile *p,
		       const char *path, char *err, size_t errlen);

/* Close every file of @c and free it (the end of clone_close, and of a
 * clone_open that failed). */
void clone_free_files(struct clone *c);

#endif
