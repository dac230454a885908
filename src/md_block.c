/*
 * md_block.c - checksummed META blocks (see md_block.h, format.h).
 *
 * The only code that computes or verifies block checksums, and the only
 * code that reads or writes superblock fields. A reader checks, in this
 * order (docs/format.md section 1): checksum, block number, kind/tree/
 * level/index, txid not newer than the superblock, and (version 2) txid the
 * one the pointer names, since a valid but older copy is a lost write.
 */
#include "md_block.h"
#include "clonefs/blockio.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* SHA256_Init() and friends are deprecated in OpenSSL 3 but kept: see
 * block_csum(). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

const char *md_tree_name(unsigned tree)
{
	return tree == MD_TREE_BITMAP ? "bitmap" : "space map";
}

/*
 * SHA-256 of bytes 32..4095 through OpenSSL's own function, not
 * EVP_Digest(): EVP keeps its provider machinery resident in every daemon
 * that commits, for the same digest.
 */
static int block_csum(const uint8_t *b, uint8_t out[32])
{
	SHA256_CTX ctx;

	if (!SHA256_Init(&ctx) || !SHA256_Update(&ctx, b + MD_CSUM_SIZE, BS - MD_CSUM_SIZE) ||
	    !SHA256_Final(out, &ctx))
		return -EIO;
	return 0;
}

bool mdb_csum_ok(const void *b)
{
	uint8_t sum[32];

	return !block_csum(b, sum) && !memcmp(sum, b, 32);
}

/* Checks a block read from position @nr is the node @w expects there. */
static int blk_check(const uint8_t *b, uint64_t nr, const struct md_want *w,
		     char *err, size_t len)
{
	const struct md_block_header *h = (const void *)b;
	uint64_t txid = le64_to_cpu(h->txid), at = le64_to_cpu(h->blocknr);
	const char *tree = md_tree_name(w->tree);

	if (!mdb_csum_ok(b))
		return errf(err, len, -EILSEQ, "bad checksum at block %" PRIu64, nr);
	if (at != nr)
		return errf(err, len, -EILSEQ, "misplaced block at %" PRIu64
			       " (it belongs at block %" PRIu64 ")", nr, at);
	if (le32_to_cpu(h->kind) != w->kind || le16_to_cpu(h->tree) != w->tree ||
	    le16_to_cpu(h->level) != w->level || le64_to_cpu(h->index) != w->idx)
		return errf(err, len, -EILSEQ, "block %" PRIu64 " is not %s node %u/%"
			       PRIu64, nr, tree, w->level, w->idx);
	if (txid > w->max_txid)
		return errf(err, len, -EILSEQ, "block %" PRIu64 " is newer than the"
			       " superblock (transaction %" PRIu64 " > %" PRIu64 ")", nr,
			       txid, w->max_txid);
	/* spec 4.3b: a valid but older copy of this node is a lost write */
	if (w->txid && txid != w->txid)
		return errf(err, len, -EILSEQ, "block %" PRIu64 " (%s node %u/%" PRIu64 ") is"
			       " from transaction %" PRIu64 " but its pointer expects %" PRIu64
			       ": a lost or misdirected write", nr, tree, w->level, w->idx,
			       txid, w->txid);
	return 0;
}

int mdb_read(int fd, uint64_t nr_blocks, void *b, uint64_t ptr, const struct md_want *w,
	     char *err, size_t len)
{
	int r;

	if (ptr >= nr_blocks)
		return errf(err, len, -EILSEQ, "%s pointer %" PRIu64 " is beyond the end"
			       " (%" PRIu64 " blocks)", md_tree_name(w->tree), ptr, nr_blocks);
	r = bio_pread(fd, b, BS, ptr * BS);
	if (r)
		return errf(err, len, r, "cannot read block %" PRIu64 ": %s", ptr,
			       strerror(-r));
	return blk_check(b, ptr, w, err, len);
}

int mdb_write(int fd, void *b, uint64_t nr, uint32_t kind, unsigned tree, unsigned level,
	      uint64_t idx, uint64_t txid)
{
	struct md_block_header *h = b;
	int r;

	memset((uint8_t *)b + MD_CSUM_SIZE, 0, MD_HEADER_SIZE - MD_CSUM_SIZE);
	h->kind = cpu_to_le32(kind);
	h->tree = cpu_to_le16((uint16_t)tree);
	h->level = cpu_to_le16((uint16_t)level);
	h->blocknr = cpu_to_le64(nr);
	h->txid = cpu_to_le64(txid);
	h->index = cpu_to_le64(idx);
	r = block_csum(b, h->csum);
	return r ? r : bio_pwrite(fd, b, BS, nr * BS);
}

void mdb_sb_parse(const void *b, int slot, struct md_sb *s)
{
	const struct md_superblock_disk *d = b;

	memset(s, 0, sizeof(*s));
	if (bio_all_zero(b, BS)) {
		s->state = MD_SB_EMPTY;
		return;
	}
	if (memcmp(d->magic, MD_SB_MAGIC, 8) || le32_to_cpu(d->h.kind) != MD_KIND_SUPER) {
		s->state = MD_SB_FOREIGN;
		snprintf(s->why, sizeof(s->why), "slot %d is not a clonefs superblock", slot);
		return;
	}
	s->state = MD_SB_BAD;
	s->raw_txid = le64_to_cpu(d->h.txid);
	s->version = le32_to_cpu(d->version);
	s->hydrated = le64_to_cpu(d->hydrated);	/* a hint only, until validated */
	if (!mdb_csum_ok(b)) {
		snprintf(s->why, sizeof(s->why), "bad checksum in superblock (block %d)", slot);
		return;
	}
	if (le64_to_cpu(d->h.blocknr) != (uint64_t)slot) {
		snprintf(s->why, sizeof(s->why), "misplaced superblock in slot %d", slot);
		return;
	}
	if (s->version < 1 || s->version > MD_SB_VERSION) {
		snprintf(s->why, sizeof(s->why), "unsupported metadata version %u", s->version);
		return;
	}
	s->txid = le64_to_cpu(d->h.txid);
	s->flags = le32_to_cpu(d->flags);
	memcpy(s->uuid, d->uuid, 16);
	s->region_size = le32_to_cpu(d->region_size);
	s->region_count = le64_to_cpu(d->region_count);
	s->nr_blocks = le64_to_cpu(d->nr_blocks);
	s->bm_root = le64_to_cpu(d->bm_root);
	s->bm_levels = le32_to_cpu(d->bm_levels);
	s->sm_levels = le32_to_cpu(d->sm_levels);
	s->sm_root = le64_to_cpu(d->sm_root);
	if (s->version >= 2) {
		s->bm_root_txid = le64_to_cpu(d->bm_root_txid);
		s->sm_root_txid = le64_to_cpu(d->sm_root_txid);
	} else {
		s->hydrated = 0;
	}
	if (s->version >= 3) {
		s->journal_start = le64_to_cpu(d->journal_start);
		s->journal_blocks = le32_to_cpu(d->journal_blocks);
		s->journal_head = le32_to_cpu(d->journal_head);
		s->journal_txid = le64_to_cpu(d->journal_txid);
	}
	s->state = MD_SB_VALID;
}

void mdb_sb_pack(void *b, const struct md_sb *s)
{
	struct md_superblock_disk *d = b;

	memset(b, 0, BS);
	memcpy(d->magic, MD_SB_MAGIC, 8);
	d->version = cpu_to_le32(s->version);
	d->flags = cpu_to_le32(s->flags);
	memcpy(d->uuid, s->uuid, 16);
	d->region_size = cpu_to_le32(s->region_size);
	d->region_count = cpu_to_le64(s->region_count);
	d->nr_blocks = cpu_to_le64(s->nr_blocks);
	d->bm_root = cpu_to_le64(s->bm_root);
	d->bm_levels = cpu_to_le32(s->bm_levels);
	d->sm_levels = cpu_to_le32(s->sm_levels);
	d->sm_root = cpu_to_le64(s->sm_root);
	if (s->version >= 2) {
		d->bm_root_txid = cpu_to_le64(s->bm_root_txid);
		d->sm_root_txid = cpu_to_le64(s->sm_root_txid);
		d->hydrated = cpu_to_le64(s->hydrated);
	}
	if (s->version >= 3) {
		d->journal_start = cpu_to_le64(s->journal_start);
		d->journal_blocks = cpu_to_le32(s->journal_blocks);
		d->journal_head = cpu_to_le32(s->journal_head);
		d->journal_txid = cpu_to_le64(s->journal_txid);
	}
}
