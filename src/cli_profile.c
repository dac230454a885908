/*
 * cli_profile.c - clonefs profile: save a running clone's access profile,
 * hand one to it for prefetching, merge and show profile files (spec 3.9;
 * the format is docs/profile.md).
 *
 *   clonefs profile save MOUNTPOINT FILE
 *   clonefs profile load MOUNTPOINT FILE
 *   clonefs profile merge FILE FILE... > OUT
 *   clonefs profile show FILE
 */
#include "clonefs/control.h"
#include "clonefs/profile.h"
#include "cli.h"

#include <errno.h>
#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

/* The recorded profile of the clone on @arg, decoded into @p. */
static int fetch_profile(const char *arg, struct profile *p)
{
	char *path = image_path(arg), err[256];
	uint8_t *buf = g_malloc(PROFILE_MAX_SIZE);
	ssize_t n = path ? getxattr(path, CONTROL_XATTR_PROFILE, buf, PROFILE_MAX_SIZE) : -1;
	int ret = EXIT_FAIL;

	if (path && n < 0)
		errmsg("%s: cannot read the profile: %s\n", arg,
		       errno == ENODATA || errno == ENOTSUP ?
		       "not a clonefs mount, or its daemon records none" :
		       g_strerror(errno));
	else if (path && profile_decode(buf, (size_t)n, p, err, sizeof(err)))
		errmsg("%s: the daemon's profile: %s\n", arg, err);
	else if (path)
		ret = 0;
	g_free(buf);
	g_free(path);
	return ret;
}

static int profile_save_cmd(const char *mnt, const char *file)
{
	struct profile p;
	char err[512];
	int ret = fetch_profile(mnt, &p);

	if (ret)
		return ret;
	if (profile_save(file, &p, err, sizeof(err))) {
		errmsg("%s\n", err);
		ret = EXIT_FAIL;
	} else {
		printf("%s: %" G_GUINT64_FORMAT " regions in %" G_GUINT64_FORMAT
		       " runs\n", file, p.total, p.nr_runs);
	}
	profile_clear(&p);
	return ret;
}

/* Member @key of the JSON object @o as an unsigned integer, or false. */
static bool json_uint(JsonObject *o, const char *key, uint64_t *out)
{
	JsonNode *n = json_object_get_member(o, key);

	if (!n || !JSON_NODE_HOLDS_VALUE(n) ||
	    json_node_get_value_type(n) != G_TYPE_INT64 || json_node_get_int(n) < 0)
		return false;
	*out = (uint64_t)json_node_get_int(n);
	return true;
}

/* The geometry of the clone on @mnt, from its JSON status. */
static int mount_geometry(const char *mnt, uint64_t *rs, uint64_t *nr, uint64_t *size)
{
	char *json = get_status(mnt, CONTROL_XATTR_JSON);
	JsonParser *parser = json_parser_new();
	bool ok = false;

	if (json && json_parser_load_from_data(parser, json, -1, NULL) &&
	    JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
		JsonObject *o = json_node_get_object(json_parser_get_root(parser));

		ok = json_uint(o, CONTROL_KEY_REGION_SIZE_BYTES, rs) &&
		     json_uint(o, CONTROL_KEY_TOTAL_REGIONS, nr) &&
		     json_uint(o, CONTROL_KEY_BYTES_TOTAL, size);
	}
	if (json && !ok)
		errmsg("%s: cannot read the status (unexpected JSON from the daemon)\n", mnt);
	g_object_unref(parser);
	g_free(json);
	return ok ? 0 : EXIT_FAIL;
}

/* Check @file here, where the error can be told, then send it. */
static int profile_load_cmd(const char *mnt, const char *file)
{
	struct profile p;
	char err[512], *abs = NULL, *text = NULL, *path = NULL;
	uint64_t rs, nr, size;
	int ret = EXIT_FAIL;

	if (profile_load(file, &p, err, sizeof(err))) {
		errmsg("%s\n", err);
		return EXIT_FAIL;
	}
	if (mount_geometry(mnt, &rs, &nr, &size))
		goto out;
	if (profile_check_geometry(&p, (uint32_t)rs, nr, size, err, sizeof(err))) {
		errmsg("profile %s: %s\n", file, err);
		goto out;
	}
	abs = realpath(file, NULL);
	path = image_path(mnt);
	if (!abs || !path)
		goto out;
	text = g_strdup_printf("prefetch %s", abs);
	if (setxattr(path, CONTROL_XATTR_MESSAGE, text, strlen(text), 0)) {
		errmsg("%s: the daemon refused '%s' (%s); its log says why\n", mnt,
		       text, g_strerror(errno));
		goto out;
	}
	printf("%s: prefetching %" G_GUINT64_FORMAT " regions in %" G_GUINT64_FORMAT
	       " runs\n", mnt, p.total, p.nr_runs);
	ret = 0;
out:
	free(abs);
	g_free(path);
	g_free(text);
	profile_clear(&p);
	return ret;
}

static int profile_merge_cmd(char **files, int n)
{
	struct profile acc, next, merged;
	char err[512];
	size_t len;
	void *b;
	int ret = EXIT_FAIL;

	if (isatty(STDOUT_FILENO)) {
		errmsg("profile merge writes a binary file: redirect its output\n");
		return EXIT_USAGE;
	}
	if (profile_load(files[0], &acc, err, sizeof(err))) {
		errmsg("%s\n", err);
		return EXIT_FAIL;
	}
	for (int i = 1; i < n; i++) {
		if (profile_load(files[i], &next, err, sizeof(err))) {
			errmsg("%s\n", err);
			ret = EXIT_FAIL;
			goto out;
		}
		ret = profile_merge(&acc, &next, &merged, err, sizeof(err));
		profile_clear(&next);
		if (ret) {
			errmsg("cannot merge %s into %s: %s\n", files[i], files[0], err);
			ret = EXIT_FAIL;
			goto out;
		}
		profile_clear(&acc);
		acc = merged;
	}
	b = profile_encode(&acc, &len);
	ret = fwrite(b, 1, len, stdout) == len && !fflush(stdout) ? 0 : EXIT_FAIL;
	if (ret)
		errmsg("writing the merged profile: %s\n", g_strerror(errno));
	g_free(b);
out:
	profile_clear(&acc);
	return ret;
}

static int profile_show_cmd(const char *file)
{
	struct profile p;
	char err[512];

	if (profile_load(file, &p, err, sizeof(err))) {
		errmsg("%s\n", err);
		return EXIT_FAIL;
	}
	printf("image_size %" G_GUINT64_FORMAT " region_size %u regions %" G_GUINT64_FORMAT
	       " runs %" G_GUINT64_FORMAT " profiled %" G_GUINT64_FORMAT "\n",
	       p.image_size, p.region_size, p.nr_regions, p.nr_runs, p.total);
	for (uint64_t i = 0; i < p.nr_runs; i++)
		printf("%" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT "\n", p.runs[i].first,
		       p.runs[i].n);
	profile_clear(&p);
	return 0;
}

int cmd_profile(const struct command *cmd, int argc, char **argv)
{
	char **pos = g_new0(char *, argc + 1);
	const char *verb;
	int npos, ret;

	ret = parse_args(cmd, argc, argv, NULL, pos, &npos);
	if (ret)
		goto out;
	verb = npos ? pos[0] : "";
	if ((!strcmp(verb, "save") || !strcmp(verb, "load")) && npos == 3)
		ret = verb[0] == 's' ? profile_save_cmd(pos[1], pos[2])
				     : profile_load_cmd(pos[1], pos[2]);
	else if (!strcmp(verb, "merge") && npos >= 3)
		ret = profile_merge_cmd(pos + 1, npos - 1);
	else if (!strcmp(verb, "show") && npos == 2)
		ret = profile_show_cmd(pos[1]);
	else
		ret = usage_error(cmd, "profile: expected save MOUNTPOINT FILE, load "
				  "MOUNTPOINT FILE, merge FILE FILE... or show FILE");
out:
	g_free(pos);
	return ret;
}
