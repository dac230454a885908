/*
 * profile.h - access profiles: the order in which a clone's regions were
 * first touched, recorded by a running clone, saved to a file and played
 * back by `-o prefetch=` (spec 3.9).
 *
 * A profile is a list of runs of regions, in first-touch order, for one
 * geometry (region size, region count, image size); no region is named
 * twice. The file format is docs/profile.md: a header, the runs, and a
 * SHA-256 of both, all little-endian. Decoding checks everything, so a
 * corrupt or foreign file is refused with one line saying why.
 *
 * The recorder is cheap enough for every read: a region already seen costs
 * one atomic load; memory is a bit per region, allocated 4 KiB at a time
 * where regions are touched, plus the runs. It records at most
 * PROFILE_MAX_RUNS runs and then stops (an encoded profile must fit in an
 * extended attribute, 64 KiB).
 */
#ifndef CLONEFS_PROFILE_H
#define CLONEFS_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROFILE_MAGIC "CFSPROF1"
#define PROFILE_VERSION 1u
#define PROFILE_HEADER_SIZE 64u
#define PROFILE_RUN_SIZE 16u
#define PROFILE_CSUM_SIZE 32u
/* Header, runs and checksum in one 64 KiB extended attribute. */
#define PROFILE_MAX_RUNS 4000u
#define PROFILE_MAX_SIZE \
	(PROFILE_HEADER_SIZE + PROFILE_MAX_RUNS * PROFILE_RUN_SIZE + PROFILE_CSUM_SIZE)

struct profile_run {
	uint64_t first, n; /* regions [first, first + n) */
};

struct profile {
	uint32_t region_size;
	uint64_t nr_regions;
	uint64_t image_size;
	uint64_t nr_runs;
	struct profile_run *runs; /* g_malloc'd */
	uint64_t total;           /* regions in all runs */
};

/* Release @p's runs (the struct itself is the caller's). */
void profile_clear(struct profile *p);

/* The file's bytes for @p, g_malloc'd, its length in *@len. */
void *profile_encode(const struct profile *p, size_t *len);
/*
 * Decode and check @len bytes: magic, version, sizes, checksum, runs inside
 * the geometry, no region twice. -EINVAL (-EMSGSIZE: too many runs) with
 * one line in @err; @p is then empty.
 */
int profile_decode(const void *buf, size_t len, struct profile *p, char *err,
		   size_t errlen);
/* profile_decode of the file @path; @err then names the file. */
int profile_load(const char *path, struct profile *p, char *err, size_t errlen);
/* Write @p to @path atomically (a temporary file, fsync, rename). */
int profile_save(const char *path, const struct profile *p, char *err,
		 size_t errlen);
/* 0 if @p was made for this geometry, else -EINVAL with both in @err. */
int profile_check_geometry(const struct profile *p, uint32_t region_size,
			   uint64_t nr_regions, uint64_t image_size, char *err,
			   size_t errlen);
/*
 * @a's runs, then those regions of @b's that @a does not name, in @b's
 * order, into @out. -EINVAL if the geometries differ, -EMSGSIZE if the
 * result needs more than PROFILE_MAX_RUNS runs.
 */
int profile_merge(const struct profile *a, const struct profile *b,
		  struct profile *out, char *err, size_t errlen);

/* ---- the recorder ---- */

struct profile_rec;

struct profile_rec *profile_rec_new(uint32_t region_size, uint64_t nr_regions,
				    uint64_t image_size);
void profile_rec_free(struct profile_rec *r);
/* Regions [first, first + n) were read or written; any thread. */
void profile_rec_touch(struct profile_rec *r, uint64_t first, uint64_t n);
/* What has been recorded so far, as a profile (profile_clear it). */
void profile_rec_get(struct profile_rec *r, struct profile *p);
/* True once PROFILE_MAX_RUNS runs were recorded and recording stopped. */
bool profile_rec_full(struct profile_rec *r);

#endif
