/*
 * blockio.h - the bottom layer: whole-buffer positional I/O and flushes.
 *
 * Every read, write and flush of SOURCE, DEST and META goes through here, so
 * one place retries short transfers and EINTR, and one place can record
 * writes or inject faults in tests. Functions return 0 or a negative errno.
 *
 * Hooks act only on fds tagged with bio_set_role(); they are configured from
 * the environment the first time any function here runs, and cost one
 * branch per call while none is configured.
 *
 * Fault injection (tests; spec issue 8)
 * -------------------------------------
 *   CLONEFS_FAULTS="RULE[,RULE]..."      rules in force from the start
 *   CLONEFS_FAULTS_FILE=PATH             rules read from PATH instead, and
 *                                        re-read whenever PATH's inode, size
 *                                        or mtime changes; a missing or empty
 *                                        file means no faults. Replace it
 *                                        atomically (write a temp, mv) to
 *                                        change or clear faults at run time.
 *   CLONEFS_FAULT_SEED=N                 seed for prob= (default 1)
 *
 *   RULE  = ROLE:OP:ERROR[:MOD]...       separators between rules: ',' ';'
 *                                        or white space; '#' starts a comment
 *   ROLE  = source | dest | meta | any
 *   OP    = read | write | flush | any   (write includes bio_fallocate and
 *                                        bio_clone_range; read includes
 *                                        bio_will_read)
 *   ERROR = eio | enospc | erofs
 *   MOD   = after=N     the first N matching operations pass
 *         | count=N     then at most N of them fail (default: all)
 *         | once        count=1
 *         | prob=P      each eligible operation fails with probability P
 *         | at=OFF+LEN  only reads/writes touching bytes [OFF, OFF+LEN)
 *
 *   "dest:write:eio:after=100"    every DEST write after the 100th fails
 *   "meta:flush:eio:prob=0.01"    1% of META flushes fail
 *   "source:read:eio:once"        the next SOURCE read fails, once
 *   "source:read:eio:at=1048576+65536"  reads of that range always fail
 *
 * An operation is checked against the rules in order; the first rule that
 * fires decides the error. Injected faults are counted and logged with
 * g_message, "blockio: fault injected #N: ..." (the first 20, then every
 * 100th, so #N is the running total).
 *
 * Write log (crash-consistency testing, after Linux's dm-log-writes)
 * -------------------------------------------------------------------
 *   CLONEFS_WRITELOG=PATH   append every completed write, zeroing and flush
 *                           of a tagged fd to PATH, in the order they
 *                           completed (one mutex around the append).
 *
 * PATH starts (when empty) with a 16-byte header: "CFSWLOG1", u32 version 1,
 * u32 record header size 48. Then records, all fields little-endian:
 *
 *   off len  field
 *    0   4   magic 0x31524c57 ("WLR1")
 *    4   1   type: 1 write, 2 flush, 3 zero range, 4 punch hole, 5 mark
 *    5   1   role: 0 source, 1 dest, 2 meta (mark: 255)
 *    6   2   0
 *    8   4   pid of the writing process
 *   12   4   0
 *   16   8   seq: this process's record number, from 0
 *   24   8   CLOCK_MONOTONIC time of the append, ns
 *   32   8   write/zero/punch: byte offset. flush: "covers", the seq this
 *            process's next record had when the flush began: every record
 *            of this process with a smaller seq completed before the flush
 *            and is durable once this record exists.
 *   40   8   write/zero/punch: byte length. mark: text length.
 *   48   .   write: the data (length bytes). mark: the text.
 *
 * tests/replay/replay.c reads this format.
 */
#ifndef CLONEFS_BLOCKIO_H
#define CLONEFS_BLOCKIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum bio_role { BIO_SOURCE, BIO_DEST, BIO_META, BIO_NR_ROLES };

/* Tell blockio which file an fd is (for fault injection and recording). */
void bio_set_role(int fd, enum bio_role role);
void bio_forget(int fd);

/*
 * Read exactly @len bytes. Bytes past end of file read as zeros, except on
 * an fd tagged BIO_SOURCE: SOURCE's size is the image's, so its end inside
 * a read means it shrank, and the read fails with -EIO (spec 1.4).
 */
int bio_pread(int fd, void *buf, size_t len, uint64_t off);
/* Write exactly @len bytes. */
int bio_pwrite(int fd, const void *buf, size_t len, uint64_t off);
/* Make written data durable (fdatasync). */
int bio_flush(int fd);

/*
 * fallocate(2) through the hooks: PUNCH_HOLE and ZERO_RANGE are recorded in
 * the write log (the range reads zeros afterwards) and count as writes for
 * fault injection. Returns 0 or -errno (-EOPNOTSUPP when the file cannot).
 */
int bio_fallocate(int fd, int mode, uint64_t off, uint64_t len);
/*
 * Make [off, off + len) read zeros: bio_fallocate(@mode) (PUNCH_HOLE or
 * ZERO_RANGE, with KEEP_SIZE) where the file can, else write zeros.
 */
int bio_zero(int fd, int mode, uint64_t off, uint64_t len);
/*
 * Reflink [off, off + len) of @src_fd to the same offset of @dest_fd
 * (FICLONERANGE; @len 0: to the end of @src_fd). Returns -EOPNOTSUPP while
 * writes are recorded (a reflink carries no data to log: callers copy
 * instead) and counts as a write of @dest_fd for fault injection.
 */
int bio_clone_range(int dest_fd, int src_fd, uint64_t off, uint64_t len);
/*
 * The size of a file or block device, in bytes. fstat (and BLKGETSIZE64),
 * not lseek: threads sharing an fd would take its f_pos lock in turn.
 */
int bio_size(int fd, uint64_t *size);
/*
 * For reads done outside blockio (splicing straight from the fd): 0, or the
 * error a read of [off, off + len) would get from fault injection, or -EIO
 * if @fd is tagged BIO_SOURCE and ends before off + len (as bio_pread). The
 * check is as of the call: SOURCE shrinking after it is the reader's to see.
 */
int bio_will_read(int fd, uint64_t off, size_t len);
/*
 * For SOURCE reads that have no fd (an NBD SOURCE, source.h): 0, or the
 * error fault injection has for a read of [off, off + len) of SOURCE.
 */
int bio_source_will_read(uint64_t off, size_t len);
/*
 * The first run of data of @fd in [off, end) (SEEK_DATA/SEEK_HOLE): 0 with
 * [*data, *stop), *data == end when none starts before @end; a file that
 * cannot tell (a device) is all data. 1 when there is no data from @off to
 * the end of the file, which may lie before @end: callers that need the
 * bytes up to @end check its size. Holes read as zeros.
 */
int bio_data_run(int fd, uint64_t off, uint64_t end, uint64_t *data, uint64_t *stop);
/* True when the @len bytes at @p are all zero. */
bool bio_all_zero(const void *p, size_t len);

/*
 * Start reading [off, off + len) of @fd into the page cache and return
 * without waiting (POSIX_FADV_WILLNEED). Advice only: errors are the later
 * read's to report.
 */
void bio_read_ahead(int fd, uint64_t off, uint64_t len);

/*
 * Fault injection from C (unit tests): replace all rules by @spec (syntax
 * above; NULL or "" clears). -EINVAL on a syntax error, rules unchanged; a
 * message naming the bad rule goes to @err when given. Rules set here are
 * replaced when CLONEFS_FAULTS_FILE changes.
 */
int bio_fault_set(const char *spec, char *err, size_t errlen);
void bio_fault_clear(void);
/* Faults injected since the process started. */
uint64_t bio_fault_count(void);
/* Parse @spec without installing it (for tools and the fuzzer). */
int bio_fault_parse(const char *spec, char *err, size_t errlen);

/* Append a mark record with @text to the write log, if one is open. */
void bio_log_mark(const char *text);
/* True while writes are being recorded. */
bool bio_logging(void);

#endif
