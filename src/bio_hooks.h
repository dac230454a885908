/*
 * bio_hooks.h - what blockio.c asks of its test hooks (bio_hooks.c), and
 * what they ask back. Internal to the blockio module: everything else uses
 * include/clonefs/blockio.h, whose comment documents both hooks.
 *
 * blockio.c calls bio_hooked() before each operation; only when it returns
 * true does it ask bio_hook_fault() for an error to inject and, while
 * bio_hook_logging(), record the completed operation with bio_hook_log().
 */
#ifndef CLONEFS_BIO_HOOKS_H
#define CLONEFS_BIO_HOOKS_H

#include "clonefs/blockio.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define H_READY 1u  /* the environment has been read */
#define H_FAULTS 2u /* rules installed, or a rules file is watched */
#define H_LOG 4u    /* writes are recorded */

enum bio_op { BIO_OP_READ, BIO_OP_WRITE, BIO_OP_FLUSH, BIO_NR_OPS };

/* Record types of the write log (blockio.h has the format). */
enum bio_rec { BIO_REC_WRITE = 1, BIO_REC_FLUSH, BIO_REC_ZERO, BIO_REC_PUNCH,
	       BIO_REC_MARK };

/* H_* bits; exactly H_READY while no hook is on. */
extern unsigned bio_hooks;

/* Reads the environment on the first call; true if a hook is on. */
bool bio_hooks_slow(unsigned h);

/* The one branch every I/O takes: false while no hook is on. */
static inline bool bio_hooked(void)
{
	unsigned h = __atomic_load_n(&bio_hooks, __ATOMIC_ACQUIRE);

	if (__builtin_expect(h == H_READY, 1))
		return false;
	return bio_hooks_slow(h);
}

/* True while writes are recorded (after bio_hooked()). */
static inline bool bio_hook_logging(void)
{
	return __atomic_load_n(&bio_hooks, __ATOMIC_ACQUIRE) & H_LOG;
}

/* 0, or the negative errno to inject for @op on @fd over [off, off + len). */
int bio_hook_fault(int fd, enum bio_op op, uint64_t off, uint64_t len);
/* The same for @role (a BIO_* role, or -1 for none). */
int bio_hook_fault_role(int role, enum bio_op op, uint64_t off, uint64_t len);
/* Append one record; a failed append stops recording, loudly. */
void bio_hook_log(int type, int role, uint64_t a, uint64_t b,
		  const void *data, size_t len);
/* The log's size now: every record before it has completed. */
uint64_t bio_hook_log_position(void);

/* From blockio.c: the role @fd was tagged with, or -1. */
int bio_role_of(int fd);

#endif
