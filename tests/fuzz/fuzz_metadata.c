/*
 * fuzz_metadata.c - libFuzzer target for the META parser (issue 8).
 *
 * The input becomes a META file in a memfd, opened through its /proc path:
 *
 *   bytes [0, 4096 * n)   n whole 4 KiB blocks (at most MAX_BLOCKS)
 *   the rest (< 4096)     control: byte 0 bit 0 "raw" (keep checksums as
 *                         given), bit 1 "don't extend", bit 2 "append the
 *                         rest of the tail as a partial block"
 *
 * Unless raw, every non-zero block gets its SHA-256 recomputed, so the
 * fuzzer explores the structure behind the checksums instead of only the
 * checksum test. Unless told not to, the file is extended with zeros to the
 * block count the superblocks claim (seeds are real METAs cut after their
 * last used block: make_seeds.c).
 *
 * Then: md_check(), md_dump(), a read-only md_open_existing() and its
 * queries. When md_check() passed, the harness also opens META read-write,
 * marks regions chosen by the input, commits (a journal record, or a
 * checkpoint when the journal cannot take it) and requires md_check() to
 * pass on the file as a crash would leave it, then closes (a checkpoint)
 * and requires it again: a clean META must stay clean through both (for a
 * version 1 or 2 META, through its upgrade to version 3). Last,
 * md_check_repair(): when it reports success (repaired, or fell back to
 * the older transaction), md_check() must pass.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "clonefs/format.h"
#include "clonefs/metadata.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define BS MD_FMT_BLOCK_SIZE
#define MAX_BLOCKS 64
#define MAX_EXTEND 16384 /* blocks: 64 MiB, sparse */
/* Opening costs time and memory in proportion to the regions a superblock
 * claims (1 bit each, leaves allocated lazily, but per-leaf tables are
 * not): a 4 PiB image is legitimate but too slow to fuzz, so such inputs
 * are skipped. 2^26 regions = 256 GiB at 4 KiB regions, 2081 leaves. */
#define MAX_REGIONS (1ULL << 26)

/* Superblock slot @b of the (possibly unaligned) bytes @p. */
static const struct md_superblock_disk *sb_at(const uint8_t *p, size_t b)
{
	return (const struct md_superblock_disk *)(p + b * BS);
}

/* Eight input bytes as a number, for the harness's choices. */
static uint64_t input_u64(const uint8_t *p)
{
	md_le64 v;

	memcpy(&v, p, 8);
	return le64_to_cpu(v);
}

static int is_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

static FILE *devnull;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t nblk = size / BS, tail = size % BS;
	uint8_t ctl = tail ? data[nblk * BS] : 0;
	uint8_t *buf;
	char path[64], err[512];
	struct md *md = NULL;
	int fd, clean;

	if (nblk > MAX_BLOCKS)
		return 0;
	for (size_t b = 0; b < 2 && b < nblk; b++)
		if (le64_to_cpu(sb_at(data, b)->region_count) > MAX_REGIONS)
			return 0;
	if (!devnull)
		devnull = fopen("/dev/null", "w");
	buf = malloc(nblk * BS + 1);
	memcpy(buf, data, nblk * BS);
	if (!(ctl & 1)) {
		for (size_t b = 0; b < nblk; b++) {
			uint8_t *p = buf + b * BS;
			unsigned int len = 0;

			if (!is_zero(p, BS))
				EVP_Digest(p + 32, BS - 32, p, &len, EVP_sha256(), NULL);
		}
	}
	fd = memfd_create("fuzz-meta", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	if (nblk && write(fd, buf, nblk * BS) != (ssize_t)(nblk * BS))
		abort();
	if ((ctl & 4) && tail > 1 && write(fd, data + nblk * BS + 1, tail - 1) < 0)
		abort();
	if (!(ctl & 2) && nblk >= 1) {
		uint64_t want = le64_to_cpu(sb_at(buf, 0)->nr_blocks);

		if (nblk >= 2 && le64_to_cpu(sb_at(buf, 1)->nr_blocks) > want)
			want = le64_to_cpu(sb_at(buf, 1)->nr_blocks);
		if (want > nblk && want <= MAX_EXTEND && ftruncate(fd, (off_t)(want * BS)))
			abort();
	}
	free(buf);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);

	clean = md_check(path, err, sizeof(err)) == 0;
	md_dump(path, devnull, err, sizeof(err));
	if (!md_open_existing(path, true, &md, err, sizeof(err))) {
		struct md_geometry geo;
		uint64_t used, total, n = 0;

		md_geometry(md, &geo);
		md_space(md, &used, &total);
		for (uint64_t r = md_find_next_hydrated(md, 0); r < geo.region_count && n < 64;
		     r = md_find_next_hydrated(md, md_find_next_unhydrated(md, r)))
			n++;
		if (md_nr_hydrated(md) > geo.region_count || used > total)
			abort();
		(void)md_all_hydrated(md);
		(void)md_range_hydrated(md, 0, geo.region_count);
		md_close(md);
		md = NULL;
	}
	if (clean && !md_open_existing(path, false, &md, err, sizeof(err))) {
		struct md_geometry geo;

		md_geometry(md, &geo);
		for (size_t i = 0; i + 8 <= size && i < 64; i += 8) {
			uint64_t r = input_u64(data + i) % geo.region_count;

			md_set_range_hydrated(md, r, 1 + (data[i] % 4 < 3 ? 0 :
				(geo.region_count - r - 1) % 40000));
		}
		if (data[0] & 1)
			md_set_dest_tagged(md);
		if (!md_pre_commit(md) && !md_commit(md) && md_check(path, err, sizeof(err))) {
			/* as a crash after the flush leaves it: a journal record */
			fprintf(stderr, "clean META not clean after a flush's commit: %s\n", err);
			abort();
		}
		md_set_region_hydrated(md, geo.region_count - 1);
		md_close(md);	/* a record and a checkpoint */
		if (md_check(path, err, sizeof(err))) {
			fprintf(stderr, "clean META not clean after a commit: %s\n", err);
			abort();
		}
	}
	if (md_check_repair(path, err, sizeof(err)) >= 0 && md_check(path, err, sizeof(err))) {
		fprintf(stderr, "META not clean after a successful repair: %s\n", err);
		abort();
	}
	close(fd);
	return 0;
}
