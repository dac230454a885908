/*
 * make_seeds.c - seed corpus for fuzz_metadata: real META files made with
 * md_open() for a few geometries and bitmaps (empty, a few regions, whole
 * leaves that become "all ones" pointers, several commits so both
 * superblock slots are live), each cut after its last non-zero block (the
 * harness extends it back with zeros to the size the superblock claims).
 *
 *   make_seeds DIR
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "clonefs/metadata.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BS 4096u
#define LEAF_BITS 32256u

static int seed(const char *dir, const char *name, uint32_t region_size,
		uint64_t count, int commits, uint64_t step, uint64_t run)
{
	char tmp[4096], out[4096], err[256];
	struct md_geometry geo = { region_size, count };
	struct md *md;
	uint8_t *buf;
	struct stat st;
	int fd, ret;
	off_t last = 0;

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
		if (md_pre_commit(md) || md_commit(md)) {
			fprintf(stderr, "make_seeds: %s: commit failed\n", name);
			return 1;
		}
	}
	md_close(md);
	if ((ret = md_check(tmp, err, sizeof(err)))) {
		fprintf(stderr, "make_seeds: %s: not clean: %s\n", name, err);
		return 1;
	}
	fd = open(tmp, O_RDONLY);
	if (fd < 0 || fstat(fd, &st))
		return 1;
	buf = malloc((size_t)st.st_size);
	if (pread(fd, buf, (size_t)st.st_size, 0) != st.st_size)
		return 1;
	close(fd);
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
	bad += seed(argv[1], "fresh-256", 65536, 256, 0, 0, 0);
	bad += seed(argv[1], "some-256", 65536, 256, 3, 17, 1);
	bad += seed(argv[1], "all-256", 65536, 256, 1, 1, 256);
	bad += seed(argv[1], "partial-last-1000", 4096, 1000, 2, 333, 3);
	bad += seed(argv[1], "two-leaves", 4096, LEAF_BITS + 100, 4, 5000, 9);
	bad += seed(argv[1], "ones-leaf", 4096, 3 * LEAF_BITS, 2, LEAF_BITS, LEAF_BITS);
	bad += seed(argv[1], "index-levels", 4096, 600ULL * LEAF_BITS, 2, 1000003, 2);
	bad += seed(argv[1], "big-regions", 1u << 30, 17, 5, 3, 1);
	return bad ? 1 : 0;
}
