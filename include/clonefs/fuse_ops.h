/*
 * fuse_ops.h - the FUSE front end: one directory holding one file, "image",
 * whose operations go to the clone policy. Built into the daemon only, so
 * libclonefs stays free of FUSE.
 */
#ifndef CLONEFS_FUSE_OPS_H
#define CLONEFS_FUSE_OPS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#define CLONEFS_IMAGE_NAME "image"

/* Threads serving requests. Each keeps a malloc arena and buffers, so
 * more cost memory; 16 serve an iodepth of 32 nearly as fast as 32 do
 * (the figures: bench/README.md). */
#define FUSE_THREADS 16

/* The session's userdata is a struct fuse_ops_session. */
extern const struct fuse_lowlevel_ops clonefs_fuse_ops;

struct clone;
struct fuse_ops_session;
/* The front end's state for the clone @c; free it after the session. */
struct fuse_ops_session *fuse_ops_new(struct clone *c);
void fuse_ops_free(struct fuse_ops_session *s);
/* poll(2) on the image reports POLLPRI once every region is hydrated:
 * watch before the clone starts, unwatch before the session is destroyed. */
void fuse_ops_watch(struct fuse_ops_session *s);
void fuse_ops_unwatch(struct fuse_ops_session *s);

/* The mount's read_ahead_kb file in sysfs, raised once the mount is up. */
void fuse_ops_set_readahead(struct fuse_ops_session *s, const char *sysfs_path);

#endif
