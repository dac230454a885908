/*
 * make_seeds.c - seed corpus for fuzz_metadata: real META files made with
 * md_open() for a few geometries and bitmaps (empty, a few regions, whole
 * leaves that become "all ones" pointers, several commits so both
 * superblock slots are live, DEST tagged), each cut after its last non-zero
 * block (the harness extends it back with zeros to the size the superblock
 * claims). One seed is rewritten as format version 1 wrote it (plain block
 * numbers in index entries), and one as version 2 (no journal), so the
 * old readers and the upgrades are fuzzed too. Journals are 8 blocks, so
 * seeds stay small; the journal seeds are cut before the final checkpoint
 * (as a crash would leave them), so their records are replayed.
 *
 *   make_seeds DIR
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "clonefs/format.h"
#include "clonefs/metadata.h"

#include <errno.h>
#include <openssl/evp.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BS MD_FMT_BLOCK_SIZE
#define LEAF_BITS MD_LEAF_BITS
#define SEED_TAGGED 1	/* md_set_dest_tagged() before the last commit */
#define SEED_V1 2	/* rewrite as version 1 (needs one bitmap index level) */
#define SEED_V2 4	/* rewrite as version 2 */
#define SEED_CRASH 8	/* the records of the commits, no checkpoint after */

static void reseal(uint8_t *b)
{
	unsigned int len;

	EVP_Digest(b + 32, BS - 32, b, &len, EVP_sha256(), NULL);
}

/* docs/format.md section 8: the active slot in version 1, the other one empty. */
static int make_v1(uint8_t *buf)
{
	struct md_superblock_disk *s0 = (void *)buf, *s1 = (void *)(buf + BS);
	int slot = le64_to_cpu(s1->h.txid) > le64_to_cpu(s0->h.txid);
	struct md_superblock_disk *sb = slot ? s1 : s0;
	uint64_t root = le64_to_cpu(sb->bm_root);
	struct md_node_disk *ix;

	if (le32_to_cpu(sb->bm_levels) != 1 || le32_to_cpu(sb->sm_levels) != 0 || root < 2)
		return 1;	/* bitmap levels 1, space-map levels 0 only */
	ix = (void *)(buf + root * BS);
	for (unsigned i = 0; i < MD_FANOUT; i++)
		ix->words[i] = cpu_to_le64(le64_to_cpu(ix->words[i]) & 0xffffffffu);
	reseal((uint8_t *)ix);
	sb->version = cpu_to_le32(1);
	sb->bm_root_txid = sb->sm_root_txid = sb->hydrated = 0;
	reseal((uint8_t *)sb);
	memset(buf + (size_t)!slot * BS, 0, BS);
	return 0;
}

/* The whole file at @path (its stat in @st), or NULL. */
static uint8_t *slurp(const char *path, struct stat *st)
{
	int fd = open(path, O_RDONLY);
	uint8_t *buf = NULL;

	if (fd >= 0 && !fstat(fd, st) && (buf = malloc((size_t)st->st_size + 1)) &&
	    pread(fd, buf, (size_t)st->st_size, 0) != st->st_size) {
		free(buf);
		buf = NULL;
	}
	if (fd >= 0)
		close(fd);
	return buf;
}

static int seed(const char *dir, const char *name, uint32_t region_size,
		uint64_t count, int commits, uint64_t step, uint64_t run, int how)
{
	char tmp[4096], out[4096], err[256];
	struct md_geometry geo = { region_size, count };
	struct md *md;
	uint8_t *buf;
	struct stat st;
	int fd, ret;
	off_t last = 0;

	md_test_journal_blocks(how & (SEED_V1 | SEED_V2) ? 0 : 8);
	snprintf(tmp, sizeof(tmp), "%s/.tmp-meta", dir);
	snprintf(out, sizeof(out), "%s/%s", dir, name);
	unlink(tmp);
	if ((ret = md_open(tmp, &geo, false, &md, err, sizeof(err)))) {
		fprintf(stderr, "make_seeds: %s: %s\n", name, err);
		return 1;
	}
	for (int c = 0; c < commits; c++) {
		for (uint64_t r = (uint64_t)c * 7 % count; step && r < count; r += step)
			md_set_range_hydrated(md, r, run < count - r ? run : count - r);
		if ((how & SEED_TAGGED) && c == commits - 1)
			md_set_dest_tagged(md);
		if (md_pre_commit(md) || md_commit(md)) {
			fprintf(stderr, "make_seeds: %s: commit failed\n", name);
			return 1;
		}
	}
	if (how & SEED_CRASH) {
		/* the file as a crash now leaves it, put back after md_close */
		if (!(buf = slurp(tmp, &st)))
			return 1;
		md_close(md);
		fd = open(tmp, O_WRONLY | O_TRUNC);
		if (fd < 0 || write(fd, buf, (size_t)st.st_size) != st.st_size)
			return 1;
		close(fd);
		free(buf);
	} else {
		md_close(md);
	}
	if ((ret = md_check(tmp, err, sizeof(err)))) {
		fprintf(stderr, "make_seeds: %s: not clean: %s\n", name, err);
		return 1;
	}
	if (!(buf = slurp(tmp, &st)))
		return 1;
	if ((how & SEED_V1) && make_v1(buf)) {
		fprintf(stderr, "make_seeds: %s: cannot make version 1\n", name);
		return 1;
	}
	if (how & SEED_V2) {
		struct md_superblock_disk *s0 = (void *)buf, *s1 = (void *)(buf + BS);

		s0->version = s1->version = cpu_to_le32(2);
		reseal(buf);
		reseal(buf + BS);
	}
	for (off_t b = 0; b < st.st_size / BS; b++)
		for (unsigned i = 0; i < BS; i++)
			if (buf[b * BS + i]) {
				last = b + 1;
				break;
			}
	fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, (size_t)last * BS) != last * (off_t)BS)
		return 1;
	close(fd);
	free(buf);
	unlink(tmp);
	printf("make_seeds: %s: %" PRId64 " blocks (of %" PRId64 ")\n", name,
	       (int64_t)last, (int64_t)(st.st_size / BS));
	return 0;
}

int main(int argc, char **argv)
{
	int bad = 0;

	if (argc != 2) {
		fprintf(stderr, "Usage: make_seeds DIR\n");
		return 2;
	}
	mkdir(argv[1], 0755);
	bad += seed(argv[1], "fresh-256", 65536, 256, 0, 0, 0, 0);
	bad += seed(argv[1], "some-256", 65536, 256, 3, 17, 1, 0);
	bad += seed(argv[1], "all-256", 65536, 256, 1, 1, 256, SEED_TAGGED);
	bad += seed(argv[1], "partial-last-1000", 4096, 1000, 2, 333, 3, 0);
	bad += seed(argv[1], "two-leaves", 4096, LEAF_BITS + 100, 4, 5000, 9, SEED_TAGGED);
	bad += seed(argv[1], "two-leaves-v1", 4096, LEAF_BITS + 100, 4, 5000, 9, SEED_V1);
	bad += seed(argv[1], "ones-leaf", 4096, 3 * LEAF_BITS, 2, LEAF_BITS, LEAF_BITS, 0);
	bad += seed(argv[1], "index-levels", 4096, 600ULL * LEAF_BITS, 2, 1000003, 2, 0);
	bad += seed(argv[1], "big-regions", 1u << 30, 17, 5, 3, 1, 0);
	bad += seed(argv[1], "v2-no-journal", 4096, 1000, 2, 333, 3, SEED_V2);
	bad += seed(argv[1], "journal-records", 4096, LEAF_BITS + 100, 3, 5000, 9,
		    SEED_CRASH | SEED_TAGGED);
	bad += seed(argv[1], "journal-wrapped", 4096, 1000, 11, 97, 1, SEED_CRASH);
	return bad ? 1 : 0;
}
