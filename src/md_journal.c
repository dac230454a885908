/*
 * md_journal.c - META's journal (format.h, docs/format.md): a ring of
 * records, one per flush. A flush writes one record (the regions it makes
 * durable) and flushes META once, where a checkpoint writes every changed
 * tree node, flushes, swaps the superblock and flushes again. Checkpoints
 * (md_commit_locked) come later, in the background; each moves the
 * superblock's journal head past the records it folded in. Open replays
 * the records after the head, in order, while each is intact and carries
 * the next transaction id; a rollback replays them again over the
 * committed leaves.
 */
#include "md_impl.h"
#include "clonefs/blockio.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

static uint32_t slot_of(const struct md *md, uint32_t k)
{
	return (uint32_t)(((uint64_t)md->j_head + k) % md->j_blocks);
}

bool mj_has_room(struct md *md)
{
	/* After a superblock written outside a checkpoint (needs_check, a
	 * repair) the next transaction id is not the next record's: only a
	 * checkpoint can continue. */
	return md->j_blocks && md->j_count < md->j_blocks && !md->overflow &&
	       md->j_txid + md->j_count == md->tm.txid + 1;
}

int mj_append(struct md *md, uint32_t flags, uint64_t hydrated)
{
	struct md_journal_disk *d = (void *)md->buf;
	uint32_t slot = slot_of(md, md->j_count);
	int r;

	memset(md->buf, 0, BS);
	memcpy(d->uuid, md->uuid, 16);
	d->nr_ranges = cpu_to_le32(md->jranges->len);
	d->flags = cpu_to_le32(flags);
	d->hydrated = cpu_to_le64(hydrated);
	if (md->j_count)
		memcpy(d->prev, md->j_last, 32);
	for (guint k = 0; k < md->jranges->len; k++) {
		struct md_range x = g_array_index(md->jranges, struct md_range, k);

		d->ranges[k].start = cpu_to_le64(x.start);
		d->ranges[k].count = cpu_to_le64(x.count);
	}
	r = tm_write(&md->tm, md->j_start + slot, md->buf, MD_KIND_JOURNAL, 0, 0, slot);
	if (!r)
		r = bio_flush(md->tm.fd);
	if (!r)
		memcpy(md->j_last, d->h.csum, 32);
	return r;
}

/*
 * Reads record @k after the head into @d, @prev the checksum of record
 * @k - 1: 0, 1 when the slot holds no record that follows it (the end:
 * torn, stale or never written), or -errno with the reason in @err.
 */
static int read_record(struct md *md, uint32_t k, const uint8_t *prev,
		       struct md_journal_disk *d, char *err, size_t len)
{
	static const uint8_t none[32];
	uint32_t slot = slot_of(md, k), n;
	uint64_t nr = md->j_start + slot, txid = md->j_txid + k;
	int r = bio_pread(md->tm.fd, d, BS, nr * BS);

	if (r)
		return errf(err, len, r, "cannot read journal block %" PRIu64 ": %s", nr,
			       strerror(-r));
	if (!mdb_csum_ok(d) || le32_to_cpu(d->h.kind) != MD_KIND_JOURNAL ||
	    le64_to_cpu(d->h.blocknr) != nr || le64_to_cpu(d->h.index) != slot ||
	    le64_to_cpu(d->h.txid) != txid || memcmp(d->uuid, md->uuid, 16) ||
	    memcmp(d->prev, k ? prev : none, 32))
		return 1;
	n = le32_to_cpu(d->nr_ranges);
	if (n > MD_JOURNAL_RANGES || d->h.tree || d->h.level)
		return errf(err, len, -EILSEQ, "journal record at block %" PRIu64
			       " (transaction %" PRIu64 ") is malformed", nr, txid);
	if (le32_to_cpu(d->flags) & ~MD_SB_KNOWN_FLAGS)
		return errf(err, len, -EILSEQ, "journal record at block %" PRIu64
			       " has unknown flags %#x", nr, le32_to_cpu(d->flags));
	for (uint32_t i = 0; i < n; i++) {
		uint64_t start = le64_to_cpu(d->ranges[i].start);
		uint64_t count = le64_to_cpu(d->ranges[i].count);

		if (!count || start >= md->geo.region_count ||
		    count > md->geo.region_count - start)
			return errf(err, len, -EILSEQ, "journal record at block %" PRIu64
				       " marks regions [%" PRIu64 ", +%" PRIu64 ") beyond the"
				       " image (%" PRIu64 " regions)", nr, start, count,
				       md->geo.region_count);
	}
	return 0;
}

int mj_read(struct md *md, uint32_t k, uint8_t prev[32], struct md_journal_disk *d,
	    char *err, size_t len)
{
	int r = k < md->j_count ? read_record(md, k, prev, d, err, len) : 1;

	if (!r)
		memcpy(prev, d->h.csum, 32);
	return r == 1 ? errf(err, len, -EILSEQ, "journal record %u is gone", k) : r;
}

int mj_replay(struct md *md, char *err, size_t len)
{
	struct md_journal_disk *d = g_malloc(BS);
	uint32_t k;
	int r = 0;

	for (k = 0; k < md->j_blocks; k++) {
		uint64_t want, have;

		r = read_record(md, k, md->j_last, d, err, len);
		if (r)
			break;
		memcpy(md->j_last, d->h.csum, 32);
		for (uint32_t i = 0; i < le32_to_cpu(d->nr_ranges); i++)
			md_mark_range(md, le64_to_cpu(d->ranges[i].start),
				      le64_to_cpu(d->ranges[i].count));
		md->flags |= le32_to_cpu(d->flags);
		want = le64_to_cpu(d->hydrated);
		have = __atomic_load_n(&md->nr_hydrated, __ATOMIC_RELAXED);
		if (want != have) {
			r = errf(err, len, -EILSEQ, "journal record at block %" PRIu64 " says %"
				    PRIu64 " regions are hydrated, its replay gives %" PRIu64,
				    md->j_start + slot_of(md, k), want, have);
			break;
		}
		if (md->j_txid + k > md->tm.txid)
			__atomic_store_n(&md->tm.txid, md->j_txid + k, __ATOMIC_RELEASE);
	}
	g_free(d);
	if (r < 0)
		return r;
	md->j_count = k;
	md_freeze(md);
	g_array_set_size(md->jranges, 0);
	md->overflow = false;
	return 0;
}
