/*
 * md_tools.c - the offline check of META: md_check and md_check_repair
 * (metadata.h), behind "clonefs check". md_dump.c has "clonefs dump".
 *
 * A check is an open with every block verified and every block in use
 * accounted for (leaks included). Repair rewrites only what needs no
 * guessing: a damaged older superblock slot, needs_check, or, when the
 * newest transaction's trees are damaged, the older transaction written
 * back as the newest.
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
