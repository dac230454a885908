/*
 * passthrough.h - the kernel's FUSE passthrough (Linux >= 6.9) under
 * libfuse 3.14, which predates it: once every region is hydrated the image
 * is exactly DEST, so opens can hand the kernel DEST itself and reads and
 * writes no longer visit the daemon. libfuse 3.14 has no API for it, so
 * this module sits in libfuse's custom I/O hooks and sets the fields it
 * does not know: FUSE_PASSTHROUGH in the INIT reply (and a max_pages above
 * max_write's), and in an OPEN reply FOPEN_PASSTHROUGH with a backing id, or
 * FOPEN_PARALLEL_DIRECT_WRITES.
 * Front end only.
 */
#ifndef CLONEFS_PASSTHROUGH_H
#define CLONEFS_PASSTHROUGH_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_lowlevel.h>

/* Route the session's /dev/fuse traffic through the hooks; after mount. */
int passthrough_install(struct fuse_session *se);

/* From the init callback: ask for passthrough in this thread's INIT reply,
 * and for requests (reads) of up to @max_pages pages where libfuse asks for
 * fewer: it derives max_pages from max_write. */
void passthrough_offer(unsigned max_pages);

/* Register fd with the kernel: a backing id, or -errno (e.g. -EPERM when
 * the kernel did not agree to passthrough, or without CAP_SYS_ADMIN). */
int passthrough_backing_open(int fd);

/* fuse_reply_open() with the file passed through to backing_id. */
int passthrough_reply_open(fuse_req_t req, struct fuse_file_info *fi,
			   int backing_id);

/* fuse_reply_open() of a direct_io open whose writes may run in parallel
 * (FOPEN_PARALLEL_DIRECT_WRITES, Linux >= 6.2; libfuse 3.14 has no field
 * for it). Without it the kernel holds the inode lock across each direct
 * write: one write at a time from threads (qemu's aio=threads, psync). */
int passthrough_reply_open_direct(fuse_req_t req, struct fuse_file_info *fi);

#endif
