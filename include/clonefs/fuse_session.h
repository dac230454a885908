/*
 * fuse_session.h - the front end's state, shared by its two files:
 * fuse_ops.c (the image and its data path) and fuse_control.c (status and
 * messages as extended attributes, poll(2) for clonefs wait). Built into
 * the daemon only.
 */
#ifndef CLONEFS_FUSE_SESSION_H
#define CLONEFS_FUSE_SESSION_H

#include "clonefs/fuse_ops.h"

#include <glib.h>
#include <stdbool.h>
#include <time.h>

#define IMAGE_INO 2

/*
 * How each open of the image was answered (its fi->fh), and how many of
 * each are open. The kernel refuses a passed-through open while the image
 * is open cached or mapped shared through a direct open (which the daemon
 * does not see), and any other open while one is passed through: both are
 * EIO to the opener. Deciding and counting under one lock keeps this view
 * ahead of the kernel's (it counts an open after our reply, we before).
 */
enum open_mode { OPEN_DIRECT, OPEN_CACHED, OPEN_PASSTHROUGH, NR_OPEN_MODES };

/* The front end's state: the session's userdata (as passthrough_ll's
 * lo_data), reached from every request. */
struct fuse_ops_session {
	struct clone *c;
	time_t mount_time;
	char *readahead_path;	/* the mount's read_ahead_kb in sysfs */
	unsigned readahead_kb;
	gsize readahead_raised;

	GMutex open_lock;	/* the next four */
	GCond readers_gone;	/* nr_open[OPEN_PASSTHROUGH] fell to 0 */
	unsigned nr_open[NR_OPEN_MODES];
	int backing_id;		/* DEST, registered with the kernel, or -1 */
	bool backing_refused;

	GMutex poll_lock;	/* the next two */
	GQueue pollers;		/* clonefs wait's poll handles */
	bool polls_closed;
};

static inline struct fuse_ops_session *session_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static inline struct clone *clone_of(fuse_req_t req)
{
	return session_of(req)->c;
}

/* fuse_control.c: the operations of the control interface. */
void cfs_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
	      struct fuse_pollhandle *ph);
void cfs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		  size_t size);
void cfs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void cfs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		  const char *value, size_t size, int flags);

#endif
