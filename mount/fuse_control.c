/*
 * fuse_control.c - the image's control interface: the status (a line, JSON)
 * and the access profile read as extended attributes, messages written as
 * one (spec 5.x), and poll(2), which tells clonefs wait that every region
 * is hydrated.
 */
#include "clonefs/fuse_session.h"
#include "clonefs/clone.h"
#include "clonefs/control.h"

#include <errno.h>
#include <glib.h>
#include <poll.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * clonefs wait sleeps in poll(2) on the image for POLLPRI, which means
 * every region is hydrated, and the scheduler wakes it the moment it sees
 * that, instead of at its next status read. Each poll(2) call leaves a
 * handle here until then; past MAX_POLLERS the oldest is dropped without a
 * wake-up (its poll times out instead). The session must outlive a wake-up:
 * fuse_ops_unwatch() closes this before the session goes.
 */
#define MAX_POLLERS 64

static void drop_pollers(struct fuse_ops_session *s, bool wake)
{
	struct fuse_pollhandle *ph;

	while ((ph = g_queue_pop_head(&s->pollers))) {
		if (wake)
			fuse_lowlevel_notify_poll(ph);
		fuse_pollhandle_destroy(ph);
	}
}

static void wake_pollers(void *arg)
{
	struct fuse_ops_session *s = arg;

	g_mutex_lock(&s->poll_lock);
	drop_pollers(s, !s->polls_closed);
	g_mutex_unlock(&s->poll_lock);
}

void fuse_ops_watch(struct fuse_ops_session *s)
{
	clone_on_complete(s->c, wake_pollers, s);
}

void fuse_ops_unwatch(struct fuse_ops_session *s)
{
	g_mutex_lock(&s->poll_lock);
	s->polls_closed = true;
	drop_pollers(s, false);
	g_mutex_unlock(&s->poll_lock);
}

void cfs_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
	      struct fuse_pollhandle *ph)
{
	struct fuse_ops_session *s = session_of(req);
	unsigned revents = POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM;

	(void)ino;
	(void)fi;
	/* Checked under the lock the wake-up takes: none is lost between. */
	g_mutex_lock(&s->poll_lock);
	if (clone_all_hydrated(s->c)) {
		revents |= POLLPRI;
		if (ph)
			fuse_pollhandle_destroy(ph);
	} else if (ph) {
		g_queue_push_tail(&s->pollers, ph);
		if (s->pollers.length > MAX_POLLERS)
			fuse_pollhandle_destroy(g_queue_pop_head(&s->pollers));
	}
	g_mutex_unlock(&s->poll_lock);
	fuse_reply_poll(req, revents);
}
static void reply_bytes(fuse_req_t req, void *s, size_t len, size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, s, len);
	g_free(s);
}

static void reply_string(fuse_req_t req, char *s, size_t size)
{
	reply_bytes(req, s, strlen(s), size);
}

/* Reading the status commits first, so its counts are durable; only the
 * image's owner and root may make it, or any user could force commits in a
 * loop (the others read the counts in core). */
static bool may_commit(fuse_req_t req, struct clone *c)
{
	uid_t uid = fuse_req_ctx(req)->uid, owner;
	gid_t gid;
	mode_t mode;

	clone_image_owner(c, &owner, &gid, &mode);
	return uid == 0 || uid == owner || uid == getuid();
}

void cfs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		  size_t size)
{
	struct clone *c = clone_of(req);

	if (ino == IMAGE_INO && !strcmp(name, CONTROL_XATTR_STATUS))
		reply_string(req, control_status_line(c, may_commit(req, c)), size);
	else if (ino == IMAGE_INO && !strcmp(name, CONTROL_XATTR_JSON))
		reply_string(req, control_status_json(c, may_commit(req, c)), size);
	else if (ino == IMAGE_INO && !strcmp(name, CONTROL_XATTR_PROFILE)) {
		size_t len;
		void *p = control_profile(c, &len);

		reply_bytes(req, p, len, size);
	} else
		fuse_reply_err(req, ENODATA);
}

void cfs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	static const char names[] = CONTROL_XATTR_STATUS "\0" CONTROL_XATTR_JSON;

	if (ino != IMAGE_INO)
		fuse_reply_xattr(req, 0);
	else if (size == 0)
		fuse_reply_xattr(req, sizeof(names));
	else if (size < sizeof(names))
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, names, sizeof(names));
}

/*
 * A message that names a file makes the daemon (root, for an fstab mount)
 * read it: only for a sender who may read it himself, so that writing the
 * image lends no one the daemon's eyes (nor tells whether a file exists).
 */
static int may_name_file(fuse_req_t req, const char *text)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct control_msg m;
	struct stat st;
	char err[256];

	if (ctx->uid == 0 || control_parse(text, &m, err, sizeof(err)) ||
	    m.verb != MSG_PREFETCH)
		return 0;
	if (stat(m.path, &st))
		return -EACCES;
	if (st.st_uid == ctx->uid ? (st.st_mode & S_IRUSR) : (st.st_mode & S_IROTH))
		return 0;
	return -EACCES;
}

void cfs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		  const char *value, size_t size, int flags)
{
	char *text, err[256] = "";
	int ret;

	(void)flags;
	if (ino != IMAGE_INO || strcmp(name, CONTROL_XATTR_MESSAGE)) {
		fuse_reply_err(req, ENOTSUP);
		return;
	}
	text = g_strndup(value, size);
	ret = may_name_file(req, text);
	if (ret)
		g_strlcpy(err, "the sender may not read that file", sizeof(err));
	else
		ret = control_message(clone_of(req), text, err, sizeof(err));
	if (ret)
		g_warning("message '%s' refused: %s", text, err);
	g_free(text);
	fuse_reply_err(req, -ret);
}
