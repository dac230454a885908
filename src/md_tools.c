/*
 * md_tools.c - the offline tools on META: md_check, md_check_repair and
 * md_dump (metadata.h), behind "clonefs check" and "clonefs dump".
 *
 * A check is an open with every block verified and every block in use
 * accounted for (leaks included). Repair rewrites only what needs no
 * guessing: a damaged older superblock slot, needs_check, or, when the
 * newest transaction's trees are damaged, the older transaction written
 * back as the newest. The dump is JSON for people and tests; its text is
 * stable (tests compare it).
 */
#include "md_impl.h"
#include "clonefs/blockio.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* "N regions" or "an unknown number of regions" for a lost transaction. */
static void lost_regions(char *buf, size_t len, bool known, uint64_t n)
{
	if (known)
		snprintf(buf, len, "%" PRIu64 " regions", n);
	else
		snprintf(buf, len, "an unknown number of regions");
}

/*
 * Newest state clean: rewrite the other slot if it is damaged or needs_check
 * is set. What a fall-back lost is counted against the state as opened, its
 * journal replayed (md_nr_hydrated), not its superblock's count: a newer
 * superblock is often the checkpoint of records the older one still has.
 */
static int repair_slots(struct md *md, bool repair, char *err, size_t len)
{
	const struct md_sb *other = &md->slots[1 - md->slot];
	bool bad = other->state != MD_SB_VALID && other->state != MD_SB_EMPTY;
	bool newer = other->state == MD_SB_BAD && other->raw_txid > md->tm.txid;
	bool nc = md->flags & MD_SB_NEEDS_CHECK;
	uint64_t have = md_nr_hydrated(md);
	bool known = other->version >= 2 && other->hydrated >= have &&
		     other->hydrated <= md->geo.region_count;
	char lost[96];
	int r;

	if (bad && !repair)
		return errf(err, len, -EILSEQ, "superblock slot %d: %s", 1 - md->slot,
			       other->why);
	if (!repair || (!bad && !nc))
		return 0;
	/* the other slot is not in use: rewriting it with this state is safe */
	r = md_write_super(md, 1 - md->slot, md->flags & ~MD_SB_NEEDS_CHECK,
			   md->committed_hydrated);
	if (!r)
		r = bio_flush(md->tm.fd);
	if (r)
		return errf(err, len, r, "cannot write the superblock: %s", strerror(-r));
	if (newer) {
		/* a torn or damaged newest superblock: its fields are only a hint */
		lost_regions(lost, sizeof(lost), known, other->hydrated - have);
		errf(err, len, 0, "superblock slot %d (transaction %" PRIu64 ") is damaged"
			" (%s); fell back to transaction %" PRIu64 ": %s hydrated in the lost"
			" transaction read SOURCE again%s", 1 - md->slot, other->raw_txid,
			other->why, md->tm.txid, lost,
			known ? " (the count comes from the damaged superblock)" : "");
		return MD_CHECK_FELL_BACK;
	}
	errf(err, len, 0, "%s%s%s", bad ? "rewrote damaged superblock slot " : "",
		bad ? (md->slot ? "0" : "1") : "", nc ? (bad ? "; cleared needs_check" :
		"cleared needs_check") : "");
	return MD_CHECK_REPAIRED;
}

/*
 * The newest state's trees are damaged (@why): open the older slot, and if
 * that is clean, write it over the damaged one with a higher transaction id.
 */
static int fall_back(const char *path, const struct md_sb *s, int newest, const char *why,
		     char *err, size_t len)
{
	struct opener o = { .path = path, .tool = true, .check = true, .slot = 1 - newest };
	const struct md_sb *lost_sb = &s[newest];
	char oerr[256], lost[96];
	uint64_t older, have;
	struct md *md;
	int fd, r = md_open_path(path, false, false, &fd, err, len);

	if (r)
		return r;
	r = md_open_meta(fd, &o, &md, oerr, sizeof(oerr));
	if (r)
		return errf(err, len, -EILSEQ, "%s (and the older transaction %" PRIu64
			       " is damaged too: %s)", why, s[1 - newest].txid, oerr);
	/* the older state with its journal replayed, as a mount will see it */
	older = md->tm.txid;
	have = md_nr_hydrated(md);
	md->tm.txid = MAX(s[0].txid, s[1].txid);
	r = md_write_super(md, newest, md->flags & ~MD_SB_NEEDS_CHECK, md->committed_hydrated);
	if (!r)
		r = bio_flush(md->tm.fd);
	if (r) {
		errf(err, len, r, "cannot write the superblock: %s", strerror(-r));
		goto out;
	}
	lost_regions(lost, sizeof(lost), lost_sb->version >= 2 && lost_sb->hydrated >= have,
		     lost_sb->hydrated - have);
	errf(err, len, 0, "transaction %" PRIu64 " (superblock slot %d) is damaged: %s;"
		" fell back to transaction %" PRIu64 ": %s hydrated in transaction %" PRIu64
		" read SOURCE again", lost_sb->txid, newest, why, older, lost, lost_sb->txid);
	r = MD_CHECK_FELL_BACK;
out:
	md_free(md);
	return r;
}

static int check_meta(const char *path, bool repair, char *err, size_t len)
{
	struct opener o = { .path = path, .readonly = !repair, .tool = true, .check = true,
			    .slot = -1 };
	char why[256] = "";
	struct md_sb s[2];
	struct md *md;
	int fd, r, newest = -1;

	if (err && len)
		err[0] = 0;
	r = md_open_path(path, !repair, false, &fd, err, len);
	if (r)
		return r;
	r = md_read_slots(fd, s, err, len);
	if (r) {
		close(fd);
		return r;
	}
	r = md_open_meta(fd, &o, &md, why, sizeof(why));	/* checks blocks and accounting */
	if (!r) {
		r = repair_slots(md, repair, err, len);
		md_free(md);
		return r;
	}
	for (int i = 0; i < 2; i++)
		if (s[i].state == MD_SB_VALID && (newest < 0 || s[i].txid > s[newest].txid))
			newest = i;
	if (!repair || r != -EILSEQ || newest < 0 || s[1 - newest].state != MD_SB_VALID)
		return errf(err, len, r, "%s", why);
	return fall_back(path, s, newest, why, err, len);
}

int md_check(const char *path, char *err, size_t errlen)
{
	return check_meta(path, false, err, errlen);
}

int md_check_repair(const char *path, char *err, size_t errlen)
{
	return check_meta(path, true, err, errlen);
}

#define MAX_RUNS 1000

/* The journal and the records open replayed, as "journal": {...}. */
static int dump_journal(struct md *md, FILE *out, char *err, size_t len)
{
	struct md_journal_disk *d = g_malloc(BS);
	uint8_t prev[32];
	int r = 0;

	fprintf(out, "  \"journal\": {\"start\": %" PRIu64 ", \"blocks\": %u, \"head\": %u,"
		" \"transaction\": %" PRIu64 ", \"records\": [", md->j_start, md->j_blocks,
		md->j_head, md->j_txid);
	for (uint32_t k = 0; k < md->j_count && !r; k++) {
		r = mj_read(md, k, prev, d, err, len);
		if (r)
			break;
		fprintf(out, "%s\n    {\"slot\": %" PRIu64 ", \"transaction\": %" PRIu64
			", \"flags\": %u, \"hydrated\": %" PRIu64 ", \"ranges\": [", k ? "," : "",
			le64_to_cpu(d->h.index), le64_to_cpu(d->h.txid), le32_to_cpu(d->flags),
			le64_to_cpu(d->hydrated));
		for (uint32_t i = 0; i < le32_to_cpu(d->nr_ranges); i++)
			fprintf(out, "%s[%" PRIu64 ", %" PRIu64 "]", i ? ", " : "",
				le64_to_cpu(d->ranges[i].start), le64_to_cpu(d->ranges[i].count));
		fprintf(out, "]}");
	}
	fprintf(out, "%s]}\n", md->j_count ? "\n  " : "");
	g_free(d);
	return r;
}

int md_dump(const char *path, FILE *out, char *err, size_t errlen)
{
	static const char *const states[] = { "empty", "foreign", "bad", "valid" };
	uint64_t r0, r1, runs = 0;
	const uint8_t *u;
	struct md *md;
	int r;

	r = md_open_existing(path, true, &md, err, errlen);
	if (r)
		return r;
	u = md->uuid;
	fprintf(out, "{\n  \"block_size\": %u,\n  \"active_slot\": %d,\n  \"superblocks\": [",
		BS, md->slot);
	for (int i = 0; i < 2; i++) {
		const struct md_sb *s = &md->slots[i];

		fprintf(out, "%s\n    {\"slot\": %d, \"state\": \"%s\"", i ? "," : "", i,
			states[s->state]);
		if (s->state == MD_SB_VALID)
			fprintf(out, ", \"version\": %u, \"transaction_id\": %" PRIu64
				", \"needs_check\": %s, \"dest_tagged\": %s", s->version, s->txid,
				s->flags & MD_SB_NEEDS_CHECK ? "true" : "false",
				s->flags & MD_SB_DEST_TAGGED ? "true" : "false");
		fprintf(out, "}");
	}
	fprintf(out, "\n  ],\n  \"version\": %u,\n  \"uuid\": \"%02x%02x%02x%02x-%02x%02x-%02x%02x"
		"-%02x%02x-%02x%02x%02x%02x%02x%02x\",\n", md->version, u[0], u[1], u[2], u[3],
		u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
	fprintf(out, "  \"transaction_id\": %" PRIu64 ",\n  \"needs_check\": %s,\n"
		"  \"dest_tagged\": %s,\n  \"region_size\": %u,\n  \"region_count\": %" PRIu64 ",\n"
		"  \"hydrated\": %" PRIu64 ",\n  \"hydrated_runs\": [",
		md->tm.txid, md->flags & MD_SB_NEEDS_CHECK ? "true" : "false",
		md->flags & MD_SB_DEST_TAGGED ? "true" : "false", md->geo.region_size,
		md->geo.region_count, md->nr_hydrated);
	for (r0 = md_find_next_hydrated(md, 0); r0 < md->geo.region_count && runs < MAX_RUNS;
	     r0 = md_find_next_hydrated(md, r1)) {
		r1 = md_find_next_unhydrated(md, r0);
		fprintf(out, "%s[%" PRIu64 ", %" PRIu64 "]", runs++ ? ", " : "", r0, r1 - r0);
	}
	fprintf(out, "],\n  \"runs_truncated\": %s,\n",
		r0 < md->geo.region_count ? "true" : "false");
	fprintf(out, "  \"bitmap\": {\"root\": %" PRIu64 ", \"root_transaction\": %" PRIu64
		", \"levels\": %u, \"leaves\": %" PRIu64 "},\n", *bt_root(&md->bm),
		md->bm.txid[md->bm.levels][0], md->bm.levels, md->bm.nleaves);
	fprintf(out, "  \"space_map\": {\"root\": %" PRIu64 ", \"root_transaction\": %" PRIu64
		", \"levels\": %u, \"total\": %" PRIu64 ", \"used\": %" PRIu64
		", \"free\": %" PRIu64 "},\n", *bt_root(&md->tm.sm),
		md->tm.sm.txid[md->tm.sm.levels][0], md->tm.sm.levels, md->tm.nr_blocks,
		md->tm.committed_used, md->tm.nr_blocks - md->tm.committed_used);
	r = dump_journal(md, out, err, errlen);
	fprintf(out, "}\n");
	md_free(md);
	if (r)
		return r;
	return ferror(out) ? errf(err, errlen, -EIO, "cannot write the dump") : 0;
}

