/*
 * blockio.c - whole-buffer pread/pwrite/fdatasync with EINTR and short
 * transfer handling, and the fd roles. Every call passes the test hooks
 * (fault injection, the write log: bio_hooks.c) first; while neither is on,
 * that costs one load and one branch.
 */
#include "clonefs/blockio.h"
#include "bio_hooks.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define ROLE_FDS 65536 /* fds at or above this are never tagged */

static int8_t roles[ROLE_FDS]; /* role + 1; 0: not tagged */

int bio_role_of(int fd)
{
	if (fd < 0 || fd >= ROLE_FDS)
		return -1;
	return __atomic_load_n(&roles[fd], __ATOMIC_RELAXED) - 1;
}

void bio_set_role(int fd, enum bio_role role)
{
	if (fd >= 0 && fd < ROLE_FDS && (unsigned)role < BIO_NR_ROLES)
		__atomic_store_n(&roles[fd], (int8_t)(role + 1), __ATOMIC_RELAXED);
}

void bio_forget(int fd)
{
	if (fd >= 0 && fd < ROLE_FDS)
		__atomic_store_n(&roles[fd], 0, __ATOMIC_RELAXED);
}

static int do_pread(int fd, char *p, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0) {
			/* SOURCE shorter than asked for has shrunk under the
			 * image: that is an I/O error, never zeros (spec 1.4).
			 * DEST and META past their end read as zeros. */
			if (bio_role_of(fd) == BIO_SOURCE)
				return -EIO;
			memset(p, 0, len);
			return 0;
		}
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

/* Returns 0 or -errno; *done says how much was written either way. */
static int do_pwrite(int fd, const char *p, size_t len, uint64_t off, size_t *done)
{
	*done = 0;
	while (*done < len) {
		ssize_t n = pwrite(fd, p + *done, len - *done, (off_t)(off + *done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		*done += (size_t)n;
	}
	return 0;
}

int bio_pread(int fd, void *buf, size_t len, uint64_t off)
{
	if (bio_hooked()) {
		int ret = bio_hook_fault(fd, BIO_OP_READ, off, len);

		if (ret)
			return ret;
	}
	return do_pread(fd, buf, len, off);
}

int bio_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done;
	int ret, role;

	if (!bio_hooked())
		return do_pwrite(fd, buf, len, off, &done);
	if ((ret = bio_hook_fault(fd, BIO_OP_WRITE, off, len)))
		return ret;
	ret = do_pwrite(fd, buf, len, off, &done);
	if (done && bio_hook_logging() && (role = bio_role_of(fd)) >= 0)
		bio_hook_log(BIO_REC_WRITE, role, off, done, buf, done);
	return ret;
}

int bio_flush(int fd)
{
	uint64_t covers = 0;
	int ret, role = -1;

	if (bio_hooked()) {
		if ((ret = bio_hook_fault(fd, BIO_OP_FLUSH, 0, 0)))
			return ret;
		if (bio_hook_logging() && (role = bio_role_of(fd)) >= 0)
			covers = bio_hook_log_position();
	}
	while (fdatasync(fd) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	if (role >= 0 && bio_hook_logging())
		bio_hook_log(BIO_REC_FLUSH, role, covers, 0, NULL, 0);
	return 0;
}

int bio_fallocate(int fd, int mode, uint64_t off, uint64_t len)
{
	int ret, role;

	if (bio_hooked() && (ret = bio_hook_fault(fd, BIO_OP_WRITE, off, len)))
		return ret;
	if (fallocate(fd, mode, (off_t)off, (off_t)len))
		return -errno;
	if (bio_hooked() && bio_hook_logging() && (role = bio_role_of(fd)) >= 0 &&
	    (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)))
		bio_hook_log(mode & FALLOC_FL_PUNCH_HOLE ? BIO_REC_PUNCH : BIO_REC_ZERO, role,
			   off, len, NULL, 0);
	return 0;
}

int bio_zero(int fd, int mode, uint64_t off, uint64_t len)
{
	static const char zeros[65536];
	int ret = bio_fallocate(fd, mode, off, len);

	if (ret != -EOPNOTSUPP && ret != -ENODEV && ret != -EINVAL)
		return ret;
	while (len > 0) { /* a file or device that cannot: write zeros */
		size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);

		if ((ret = bio_pwrite(fd, zeros, n, off)))
			return ret;
		off += n;
		len -= n;
	}
	return 0;
}

int bio_clone_range(int dest_fd, int src_fd, uint64_t off, uint64_t len)
{
	struct file_clone_range r = {
		.src_fd = src_fd, .src_offset = off, .src_length = len,
		.dest_offset = off,
	};
	int ret;

	if (bio_hooked()) {
		if (bio_hook_logging())
			return -EOPNOTSUPP;
		if ((ret = bio_hook_fault(dest_fd, BIO_OP_WRITE, off, len)))
			return ret;
	}
	return ioctl(dest_fd, FICLONERANGE, &r) ? -errno : 0;
}

int bio_size(int fd, uint64_t *size)
{
	struct stat st;

	if (fstat(fd, &st))
		return -errno;
	if (S_ISBLK(st.st_mode))
		return ioctl(fd, BLKGETSIZE64, size) ? -errno : 0;
	*size = (uint64_t)st.st_size;
	return 0;
}

int bio_will_read(int fd, uint64_t off, size_t len)
{
	uint64_t size;
	int ret;

	if (bio_hooked() && (ret = bio_hook_fault(fd, BIO_OP_READ, off, len)))
		return ret;
	/* what bio_pread would find: SOURCE ending inside (spec 1.4) */
	if (bio_role_of(fd) != BIO_SOURCE)
		return 0;
	if ((ret = bio_size(fd, &size)))
		return ret;
	return size < off + len ? -EIO : 0;
}

int bio_source_will_read(uint64_t off, size_t len)
{
	if (!bio_hooked())
		return 0;
	return bio_hook_fault_role(BIO_SOURCE, BIO_OP_READ, off, len);
}

void bio_read_ahead(int fd, uint64_t off, uint64_t len)
{
	(void)posix_fadvise(fd, (off_t)off, (off_t)len, POSIX_FADV_WILLNEED);
}

int bio_data_run(int fd, uint64_t off, uint64_t end, uint64_t *data, uint64_t *stop)
{
	off_t d = lseek(fd, (off_t)off, SEEK_DATA), e;

	*data = *stop = end;
	if (d < 0 && errno == ENXIO)
		return 1;
	if (d < 0)
		d = (off_t)off;
	if ((uint64_t)d >= end)
		return 0;
	e = lseek(fd, d, SEEK_HOLE);
	*data = (uint64_t)d;
	if (e >= 0 && (uint64_t)e < end)
		*stop = (uint64_t)e;
	return 0;
}

bool bio_all_zero(const void *p, size_t len)
{
	const char *b = p;

	/* Compare the buffer with itself shifted by a few bytes: fast and short. */
	if (len < 16)
		return len == 0 || (b[0] == 0 && !memcmp(b, b + 1, len - 1));
	for (size_t i = 0; i < 16; i++)
		if (b[i])
			return false;
	return !memcmp(b, b + 16, len - 16);
}
