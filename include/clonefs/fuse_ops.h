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

/* Threads serving requests. 16 serve an iodepth of 32 about as fast as 32
 * threads do (scripts/bench, 2 CPUs), and each thread keeps a malloc arena
 * and buffers: 2.5 MiB less. */
#define FUSE_THREADS 16

/* The session's userdata is the struct clone. */
extern const struct fuse_lowlevel_ops clonefs_fuse_ops;

struct clone;
/* poll(2) on the image reports POLLPRI once every region is hydrated:
 * watch before the clone starts, unwatch before the session is destroyed. */
void fuse_ops_watch(struct clone *c);
void fuse_ops_unwatch(void);

/* The mount's read_ahead_kb file in sysfs, raised once the mount is up. */
void fuse_ops_set_readahead(const char *sysfs_path);

#endif
