/*
 * blockio.h - the bottom layer: whole-buffer positional I/O and flushes.
 *
 * Every read, write and flush of SOURCE, DEST and META goes through here, so
 * one place retries short transfers and EINTR, and one place can record
 * writes or inject faults in tests. Functions return 0 or a negative errno.
 */
#ifndef CLONEFS_BLOCKIO_H
#define CLONEFS_BLOCKIO_H

#include <stddef.h>
#include <stdint.h>

enum bio_role { BIO_SOURCE, BIO_DEST, BIO_META, BIO_NR_ROLES };

/* Tell blockio which file an fd is (for fault injection and recording). */
void bio_set_role(int fd, enum bio_role role);
void bio_forget(int fd);

/* Read exactly @len bytes; bytes past end of file read as zeros. */
int bio_pread(int fd, void *buf, size_t len, uint64_t off);
/* Write exactly @len bytes. */
int bio_pwrite(int fd, const void *buf, size_t len, uint64_t off);
/* Make written data durable (fdatasync). */
int bio_flush(int fd);

#endif
