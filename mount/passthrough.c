/*
 * passthrough.c - FUSE passthrough under libfuse 3.14 (see passthrough.h).
 *
 * libfuse builds a reply and hands it to writev() in the thread that asked
 * for it, so a thread-local note set just before fuse_reply_open() or in the
 * init callback says which reply to amend. The amended fields are the
 * kernel ABI of 7.36 (parallel direct writes) and 7.40 (passthrough); older
 * kernels ignore them, and a backing id is only ever used after the kernel
 * accepted one.
 */
#include "clonefs/passthrough.h"

#include <errno.h>
#include <glib.h>
#include <linux/fuse.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

/* From the 7.40 kernel ABI (linux/fuse.h of Linux 6.9). */
#define FUSE_HANDLE_KILLPRIV_V2_FLAG (1u << 28)
#define FUSE_DIRECT_IO_ALLOW_MMAP_FLAG2 (1u << (36 - 32))
#define FUSE_PASSTHROUGH_FLAG2	(1u << (37 - 32))
#define FOPEN_PASSTHROUGH_FLAG	(1u << 7)
struct backing_map {
	int32_t fd;
	uint32_t flags;
	uint64_t padding;
};
#define FUSE_DEV_IOC_BACKING_OPEN _IOW(229, 1, struct backing_map)

/* fuse_init_out.max_stack_depth is the first of 7.38's unused words. A
 * depth of 1: DEST may be on any plain file system, and nothing needs to
 * stack on a clonefs mount. */
#define MAX_STACK_DEPTH 1

static int session_fd = -1;
static __thread bool amend_init;
static __thread uint16_t amend_max_pages;
static __thread struct {
	uint32_t flags;  /* FOPEN_* to add; 0: not an open reply of ours */
	int backing_id;  /* with FOPEN_PASSTHROUGH_FLAG */
} amend_open;

static void amend(struct iovec *iov, int count)
{
	if (count < 2)
		return;
	if (amend_init && iov[1].iov_len >= offsetof(struct fuse_init_out, unused) + 4) {
		struct fuse_init_out *o = iov[1].iov_base;

		/* Without it the kernel asks for security.capability before
		 * every write, to know whether to drop it: one round trip to
		 * the daemon per write, passed through or not. With it the
		 * answer is cached per inode (SB_NOSEC); the image never has
		 * set-id bits or capabilities to drop. */
		o->flags |= FUSE_HANDLE_KILLPRIV_V2_FLAG;
		if ((o->flags & FUSE_MAX_PAGES) && amend_max_pages > o->max_pages)
			o->max_pages = amend_max_pages;
		if (o->flags & FUSE_INIT_EXT) {
			/* Shared maps of direct_io opens (Linux >= 6.6):
			 * without it mmap(MAP_SHARED) of them is ENODEV. */
			o->flags2 |= FUSE_PASSTHROUGH_FLAG2 |
				     FUSE_DIRECT_IO_ALLOW_MMAP_FLAG2;
			o->unused[0] = MAX_STACK_DEPTH;
		}
		amend_init = false;
	} else if (amend_open.flags && iov[1].iov_len == sizeof(struct fuse_open_out)) {
		struct fuse_open_out *o = iov[1].iov_base;

		o->open_flags |= amend_open.flags;
		if (amend_open.flags & FOPEN_PASSTHROUGH_FLAG)
			o->padding = (uint32_t)amend_open.backing_id;
	}
}

static ssize_t hook_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	(void)userdata;
	amend(iov, count);
	return writev(fd, iov, count);
}

static ssize_t hook_read(int fd, void *buf, size_t len, void *userdata)
{
	(void)userdata;
	return read(fd, buf, len);
}

static ssize_t hook_splice(int fdin, off_t *offin, int fdout, off_t *offout,
			   size_t len, unsigned int flags, void *userdata)
{
	(void)userdata;
	return splice(fdin, offin, fdout, offout, len, flags);
}

int passthrough_install(struct fuse_session *se)
{
	static const struct fuse_custom_io io = {
		.writev = hook_writev,
		.read = hook_read,
		.splice_receive = hook_splice,
		.splice_send = hook_splice,
	};

	session_fd = fuse_session_fd(se);
	return fuse_session_custom_io(se, &io, session_fd);
}

void passthrough_offer(unsigned max_pages)
{
	amend_init = session_fd >= 0;
	amend_max_pages = (uint16_t)MIN(max_pages, UINT16_MAX);
}

int passthrough_backing_open(int fd)
{
	struct backing_map map = { .fd = fd };
	int id;

	if (session_fd < 0)
		return -ENOSYS;
	id = ioctl(session_fd, FUSE_DEV_IOC_BACKING_OPEN, &map);
	return id < 0 ? -errno : id;
}

static int reply_open(fuse_req_t req, struct fuse_file_info *fi,
		      uint32_t flags, int backing_id)
{
	int ret;

	amend_open.flags = flags;
	amend_open.backing_id = backing_id;
	ret = fuse_reply_open(req, fi);
	amend_open.flags = 0;
	return ret;
}

int passthrough_reply_open(fuse_req_t req, struct fuse_file_info *fi,
			   int backing_id)
{
	return reply_open(req, fi, FOPEN_PASSTHROUGH_FLAG, backing_id);
}

int passthrough_reply_open_direct(fuse_req_t req, struct fuse_file_info *fi)
{
	return reply_open(req, fi, FOPEN_PARALLEL_DIRECT_WRITES, -1);
}
