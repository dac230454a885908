/*
 * md_dump.c - md_dump (metadata.h), behind "clonefs dump": META's
 * superblocks, hydrated runs, trees and journal as JSON for people and
 * tests, built and printed with json-glib (tests parse it). Only the tool
 * and the tests call it: the daemon links neither this file nor json-glib
 * (Makefile.am).
 */
#include "md_impl.h"

#include <json-glib/json-glib.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define MAX_RUNS 1000

static void add_int(JsonBuilder *b, const char *name, int64_t v)
{
	json_builder_set_member_name(b, name);
	json_builder_add_int_value(b, v);
}

static void add_bool(JsonBuilder *b, const char *name, bool v)
{
	json_builder_set_member_name(b, name);
	json_builder_add_boolean_value(b, v);
}

/* [first, count], as in hydrated_runs and a record's ranges */
static void add_pair(JsonBuilder *b, uint64_t first, uint64_t count)
{
	json_builder_begin_array(b);
	json_builder_add_int_value(b, first);
	json_builder_add_int_value(b, count);
	json_builder_end_array(b);
}

/* "superblocks": both slots; a valid one with its version, transaction and flags */
static void add_superblocks(JsonBuilder *b, const struct md *md)
{
	static const char *const states[] = { "empty", "foreign", "bad", "valid" };

	json_builder_set_member_name(b, "superblocks");
	json_builder_begin_array(b);
	for (int i = 0; i < 2; i++) {
		const struct md_sb *s = &md->slots[i];

		json_builder_begin_object(b);
		add_int(b, "slot", i);
		json_builder_set_member_name(b, "state");
		json_builder_add_string_value(b, states[s->state]);
		if (s->state == MD_SB_VALID) {
			add_int(b, "version", s->version);
			add_int(b, "transaction_id", s->txid);
			add_bool(b, "needs_check", s->flags & MD_SB_NEEDS_CHECK);
			add_bool(b, "dest_tagged", s->flags & MD_SB_DEST_TAGGED);
		}
		json_builder_end_object(b);
	}
	json_builder_end_array(b);
}

/* "hydrated_runs": the first MAX_RUNS runs; "runs_truncated": whether more exist. */
static void add_runs(JsonBuilder *b, struct md *md)
{
	uint64_t r0, r1, runs = 0;

	json_builder_set_member_name(b, "hydrated_runs");
	json_builder_begin_array(b);
	for (r0 = md_find_next_hydrated(md, 0); r0 < md->geo.region_count && runs < MAX_RUNS;
	     r0 = md_find_next_hydrated(md, r1), runs++) {
		r1 = md_find_next_unhydrated(md, r0);
		add_pair(b, r0, r1 - r0);
	}
	json_builder_end_array(b);
	add_bool(b, "runs_truncated", r0 < md->geo.region_count);
}

/* "bitmap" and "space_map": the trees' roots and sizes. */
static void add_trees(JsonBuilder *b, struct md *md)
{
	json_builder_set_member_name(b, "bitmap");
	json_builder_begin_object(b);
	add_int(b, "root", *bt_root(&md->bm));
	add_int(b, "root_transaction", md->bm.txid[md->bm.levels][0]);
	add_int(b, "levels", md->bm.levels);
	add_int(b, "leaves", md->bm.nleaves);
	json_builder_end_object(b);
	json_builder_set_member_name(b, "space_map");
	json_builder_begin_object(b);
	add_int(b, "root", *bt_root(&md->tm.sm));
	add_int(b, "root_transaction", md->tm.sm.txid[md->tm.sm.levels][0]);
	add_int(b, "levels", md->tm.sm.levels);
	add_int(b, "total", md->tm.nr_blocks);
	add_int(b, "used", md->tm.committed_used);
	add_int(b, "free", md->tm.nr_blocks - md->tm.committed_used);
	json_builder_end_object(b);
}

/*
 * "journal": the journal and the records open replayed. A record that fails
 * to read ends the list, and its error is returned.
 */
static int add_journal(JsonBuilder *b, struct md *md, char *err, size_t len)
{
	struct md_journal_disk *d = g_malloc(BS);
	uint8_t prev[32];
	int r = 0;

	json_builder_set_member_name(b, "journal");
	json_builder_begin_object(b);
	add_int(b, "start", md->j_start);
	add_int(b, "blocks", md->j_blocks);
	add_int(b, "head", md->j_head);
	add_int(b, "transaction", md->j_txid);
	json_builder_set_member_name(b, "records");
	json_builder_begin_array(b);
	for (uint32_t k = 0; k < md->j_count && !(r = mj_read(md, k, prev, d, err, len)); k++) {
		json_builder_begin_object(b);
		add_int(b, "slot", le64_to_cpu(d->h.index));
		add_int(b, "transaction", le64_to_cpu(d->h.txid));
		add_int(b, "flags", le32_to_cpu(d->flags));
		add_int(b, "hydrated", le64_to_cpu(d->hydrated));
		json_builder_set_member_name(b, "ranges");
		json_builder_begin_array(b);
		for (uint32_t i = 0; i < le32_to_cpu(d->nr_ranges); i++)
			add_pair(b, le64_to_cpu(d->ranges[i].start), le64_to_cpu(d->ranges[i].count));
		json_builder_end_array(b);
		json_builder_end_object(b);
	}
	json_builder_end_array(b);
	json_builder_end_object(b);
	g_free(d);
	return r;
}

/* The document, pretty-printed (indent 2) with a newline after it. */
static void write_json(JsonBuilder *b, FILE *out)
{
	JsonGenerator *gen = json_generator_new();
	JsonNode *root = json_builder_get_root(b);
	char *text;

	json_generator_set_pretty(gen, TRUE);
	json_generator_set_indent(gen, 2);
	json_generator_set_root(gen, root);
	text = json_generator_to_data(gen, NULL);
	fprintf(out, "%s\n", text);
	g_free(text);
	json_node_unref(root);
	g_object_unref(gen);
}

int md_dump(const char *path, FILE *out, char *err, size_t errlen)
{
	const uint8_t *u;
	JsonBuilder *b;
	struct md *md;
	char uuid[37];
	int r;

	r = md_open_existing(path, true, &md, err, errlen);
	if (r)
		return r;
	u = md->uuid;
	snprintf(uuid, sizeof(uuid), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
		 "%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7],
		 u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
	b = json_builder_new();
	json_builder_begin_object(b);
	add_int(b, "block_size", BS);
	add_int(b, "active_slot", md->slot);
	add_superblocks(b, md);
	add_int(b, "version", md->version);
	json_builder_set_member_name(b, "uuid");
	json_builder_add_string_value(b, uuid);
	add_int(b, "transaction_id", md->tm.txid);
	add_bool(b, "needs_check", md->flags & MD_SB_NEEDS_CHECK);
	add_bool(b, "dest_tagged", md->flags & MD_SB_DEST_TAGGED);
	add_int(b, "region_size", md->geo.region_size);
	add_int(b, "region_count", md->geo.region_count);
	add_int(b, "hydrated", md->nr_hydrated);
	add_runs(b, md);
	add_trees(b, md);
	r = add_journal(b, md, err, errlen);	/* on an error, the dump up to it */
	json_builder_end_object(b);
	md_free(md);
	write_json(b, out);
	g_object_unref(b);
	if (r)
		return r;
	return ferror(out) ? errf(err, errlen, -EIO, "cannot write the dump") : 0;
}
