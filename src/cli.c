/*
 * cli.c - clonefs, the command-line tool (spec 4.7, 5.x).
 *
 *   clonefs status MOUNTPOINT [--json]
 *   clonefs message MOUNTPOINT WORDS...
 *   clonefs wait MOUNTPOINT [--timeout S] [--interval S]
 *   clonefs check [-n] META
 *   clonefs dump META
 *   clonefs profile save|load MOUNTPOINT FILE | merge FILE... | show FILE
 *
 * status, message and wait talk to a running daemon through the extended
 * attributes of MOUNTPOINT/image (control.h), so this tool needs no FUSE and
 * everything it does can also be done with getfattr/setfattr. check and dump
 * read META offline through the metadata module.
 *
 * Exit codes: 0 success, 1 failure, 2 usage (nothing done), 124 wait timed
 * out (as timeout(1)), 130 wait interrupted.
 */
#include "clonefs/control.h"
#include "clonefs/metadata.h"
#include "cli.h"

#include <errno.h>
#include <glib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

/* The stream of a progress bar line not yet ended (clonefs wait), or NULL. */
static FILE *open_line;

void cli_line_open(FILE *f)
{
	open_line = f;
}

void cli_line_end(void)
{
	if (open_line) {
		fputc('\n', open_line);
		open_line = NULL;
	}
}

void errmsg(const char *fmt, ...)
{
	va_list ap;

	cli_line_end();
	fputs("clonefs: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

int usage_error(const struct command *cmd, const char *fmt, ...)
{
	va_list ap;

	fputs("clonefs: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (cmd)
		fprintf(stderr, "\nUsage: clonefs %s %s\n", cmd->name, cmd->synopsis);
	else
		fputs("\nUsage: clonefs COMMAND ARGS... (clonefs --help lists "
		      "the commands)\n", stderr);
	return EXIT_USAGE;
}

int parse_args(const struct command *cmd, int argc, char **argv,
	       const struct optdef *opts, char **pos, int *npos)
{
	bool only_pos = false;

	*npos = 0;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *eq;
		const struct optdef *o;
		size_t len;

		if (only_pos || a[0] != '-' || !a[1]) {
			pos[(*npos)++] = argv[i];
			continue;
		}
		if (!strcmp(a, "--")) {
			only_pos = true;
			continue;
		}
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			printf("Usage: clonefs %s %s\n\n%s", cmd->name,
			       cmd->synopsis, cmd->help);
			exit(0);
		}
		eq = strchr(a, '=');
		len = eq ? (size_t)(eq - a) : strlen(a);
		for (o = opts; o && o->name; o++)
			if ((strlen(o->name) == len && !strncmp(a, o->name, len)) ||
			    (o->alias && !eq && !strcmp(a, o->alias)))
				break;
		if (!o || !o->name)
			return usage_error(cmd, "%s: unknown option '%s'",
					   cmd->name, a);
		if (o->flag) {
			if (eq)
				return usage_error(cmd, "%s takes no value",
						   o->name);
			*o->flag = true;
		} else if (eq) {
			*o->value = eq + 1;
		} else if (i + 1 < argc) {
			*o->value = argv[++i];
		} else {
			return usage_error(cmd, "%s needs a value", o->name);
		}
	}
	return 0;
}

int parse_seconds(const char *s, double min, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= min) || v > 1e9)
		return -EINVAL;
	*out = v;
	return 0;
}

/* --- talking to the daemon ---------------------------------------------- */

/* One line for a failed xattr call on ARG's image. */
static void report_mount_error(const char *arg, int err)
{
	switch (err) {
	case ENOENT:  /* a directory without an image */
	case ENODATA: /* a file without our attributes */
	case ENOTSUP: /* a file system without xattrs (== EOPNOTSUPP) */
		errmsg("%s: not a clonefs mount\n", arg);
		break;
	case ENOTCONN:
		errmsg("%s: the clonefs daemon is gone (%s); "
			"unmount with: umount %s\n", arg, g_strerror(err), arg);
		break;
	default:
		errmsg("%s: %s\n", arg, g_strerror(err));
	}
}

char *image_path(const char *arg)
{
	struct stat st;

	if (stat(arg, &st)) {
		if (errno == ENOENT)
			errmsg("%s: %s\n", arg, g_strerror(errno));
		else
			report_mount_error(arg, errno);
		return NULL;
	}
	if (S_ISDIR(st.st_mode))
		return g_build_filename(arg, "image", NULL);
	return g_strdup(arg);
}

/* Read attribute @name of @path into a g_malloc'd string. 0 or -errno. */
static int read_xattr(const char *path, const char *name, char **out)
{
	size_t size = 4096;

	/* The value is computed afresh on every call and may grow between a
	 * size query and the read, so grow the buffer on ERANGE and retry. */
	for (int tries = 0; tries < 8; tries++) {
		char *buf = g_malloc(size + 1);
		ssize_t n = getxattr(path, name, buf, size);

		if (n >= 0) {
			buf[n] = '\0';
			*out = buf;
			return 0;
		}
		g_free(buf);
		if (errno != ERANGE)
			return -errno;
		n = getxattr(path, name, NULL, 0);
		if (n < 0)
			return -errno;
		size = (size_t)n + 1024;
	}
	return -ERANGE;
}

char *get_status(const char *arg, const char *name)
{
	char *path = image_path(arg), *val = NULL;
	int ret;

	if (!path)
		return NULL;
	ret = read_xattr(path, name, &val);
	if (ret)
		report_mount_error(arg, -ret);
	g_free(path);
	return val;
}

/* --- status ---------------------------------------------------------------- */

static int cmd_status(const struct command *cmd, int argc, char **argv)
{
	bool json = false;
	const struct optdef opts[] = { { "--json", "-j", &json, NULL }, { 0 } };
	char **pos = g_new0(char *, argc + 1), *val = NULL;
	int npos, ret;

	ret = parse_args(cmd, argc, argv, opts, pos, &npos);
	if (ret)
		goto out;
	if (npos != 1) {
		ret = usage_error(cmd, "status needs one MOUNTPOINT");
		goto out;
	}
	val = get_status(pos[0], json ? CONTROL_XATTR_JSON : CONTROL_XATTR_STATUS);
	if (!val) {
		ret = EXIT_FAIL;
		goto out;
	}
	printf("%s\n", val);
out:
	g_free(val);
	g_free(pos);
	return ret;
}

/* --- message --------------------------------------------------------------- */

static int cmd_message(const struct command *cmd, int argc, char **argv)
{
	char **pos = g_new0(char *, argc + 1), *text = NULL, *path = NULL;
	char *status = NULL, err[256];
	struct control_msg msg;
	int npos, ret;

	ret = parse_args(cmd, argc, argv, NULL, pos, &npos);
	if (ret)
		goto out;
	if (npos < 2) {
		ret = usage_error(cmd, npos ? "message needs a message after "
				  "MOUNTPOINT" : "message needs MOUNTPOINT and "
				  "a message");
		goto out;
	}
	/* Validate locally first, so a typo sends nothing. */
	text = g_strjoinv(" ", pos + 1);
	if (control_parse(text, &msg, err, sizeof(err))) {
		errmsg("%s\n", err);
		ret = EXIT_USAGE;
		goto out;
	}
	/* Make sure ARG is a clonefs mount: on another file system the
	 * setxattr below could succeed and do nothing at all. */
	ret = EXIT_FAIL;
	status = get_status(pos[0], CONTROL_XATTR_STATUS);
	if (!status)
		goto out;
	path = image_path(pos[0]);
	if (!path)
		goto out;
	if (setxattr(path, CONTROL_XATTR_MESSAGE, text, strlen(text), 0)) {
		int e = errno;

		if (e == EROFS)
			errmsg("%s: cannot apply '%s': the "
				"clone is mounted read-only\n", pos[0], text);
		else if (e == EINVAL)
			errmsg("%s: the daemon refused '%s' "
				"(%s); its log says why\n", pos[0], text,
				g_strerror(e));
		else if (e == EIO)
			errmsg("%s: cannot apply '%s': %s\n",
				pos[0], text, g_strerror(e));
		else
			report_mount_error(pos[0], e);
		goto out;
	}
	ret = 0;
out:
	g_free(status);
	g_free(path);
	g_free(text);
	g_free(pos);
	return ret;
}

/* --- check and dump -------------------------------------------------------- */

static int cmd_check(const struct command *cmd, int argc, char **argv)
{
	bool no_repair = false;
	const struct optdef opts[] = {
		{ "--no-repair", "-n", &no_repair, NULL }, { 0 },
	};
	char **pos = g_new0(char *, argc + 1), err[512] = "";
	int npos, ret;

	ret = parse_args(cmd, argc, argv, opts, pos, &npos);
	if (ret)
		goto out;
	if (npos != 1) {
		ret = usage_error(cmd, "check needs one META");
		goto out;
	}
	if (no_repair)
		ret = md_check(pos[0], err, sizeof(err));
	else
		ret = md_check_repair(pos[0], err, sizeof(err));
	if (ret < 0) {
		errmsg("%s: %s\n", pos[0],
			*err ? err : g_strerror(-ret));
		ret = EXIT_FAIL;
		goto out;
	}
	/* a repair always says what it did; losing a transaction is not "clean" */
	if (ret == MD_CHECK_FELL_BACK) {
		errmsg("%s: repaired: %s\n", pos[0], err);
		printf("%s: repaired by falling back to an older transaction\n", pos[0]);
		ret = EXIT_FELL_BACK;
		goto out;
	}
	if (ret == MD_CHECK_REPAIRED)
		printf("%s: repaired: %s\n", pos[0], err);
	printf("%s: clean\n", pos[0]);
	ret = 0;
out:
	g_free(pos);
	return ret;
}

static int cmd_dump(const struct command *cmd, int argc, char **argv)
{
	char **pos = g_new0(char *, argc + 1), err[512] = "";
	int npos, ret;

	ret = parse_args(cmd, argc, argv, NULL, pos, &npos);
	if (ret)
		goto out;
	if (npos != 1) {
		ret = usage_error(cmd, "dump needs one META");
		goto out;
	}
	ret = md_dump(pos[0], stdout, err, sizeof(err));
	if (ret) {
		errmsg("%s: %s\n", pos[0],
			*err ? err : g_strerror(-ret));
		ret = EXIT_FAIL;
		goto out;
	}
	if (fflush(stdout)) {
		errmsg("writing the dump: %s\n",
			g_strerror(errno));
		ret = EXIT_FAIL;
	}
out:
	g_free(pos);
	return ret;
}

/* --- main ------------------------------------------------------------------ */

static const struct command commands[] = {
	{ "status", "MOUNTPOINT [--json]",
	  "Print the dm-clone status line of the clone mounted on MOUNTPOINT\n"
	  "(or MOUNTPOINT may be its image file). Pending metadata is committed\n"
	  "first, so the counts are durable.\n\n"
	  "  -j, --json   print the status as JSON, with byte counts and rates\n",
	  cmd_status },
	{ "message", "MOUNTPOINT WORDS...",
	  "Send a message to the daemon; it acts at once. Messages:\n"
	  "  enable_hydration | disable_hydration\n"
	  "  hydration_threshold N      regions in flight at most\n"
	  "  hydration_batch_size N     contiguous regions per copy\n"
	  "  hydration_rate BYTES       bytes/s of background copying, 0 = any\n"
	  "  copy_on_read on|off\n"
	  "  read_hints on|off          reads steer hydration\n"
	  "  prefetch /ABSOLUTE/FILE    hydrate a profile's regions first\n"
	  "The message is checked before it is sent; a bad one exits 2.\n",
	  cmd_message },
	{ "wait", "MOUNTPOINT [--timeout S] [--interval S] [--prefetch]",
	  "Wait until every region is hydrated. On a terminal, draw a progress\n"
	  "bar; otherwise print one line per interval.\n\n"
	  "  -p, --prefetch     wait only for the regions of the prefetch profile\n"
	  "  -t, --timeout S    give up after S seconds with exit code 124\n"
	  "                     (0, the default: wait for ever)\n"
	  "  -i, --interval S   seconds between reports (1 on a terminal, 5 not)\n\n"
	  "Exits 1 if the mount goes away, the metadata fails, or the clone is\n"
	  "read-only and so cannot finish.\n",
	  cmd_wait },
	{ "check", "[-n] META",
	  "Verify every checksum of the metadata file META, its bitmap and its\n"
	  "space map. Repair what can be repaired, saying what was done: clear\n"
	  "needs_check, rewrite a damaged older superblock, or fall back to the\n"
	  "previous transaction when the newest one is damaged (exit 3, with the\n"
	  "number of regions that read SOURCE again). Run it on an unmounted META.\n\n"
	  "  -n, --no-repair   only verify; never write META\n",
	  cmd_check },
	{ "dump", "META",
	  "Print the metadata file META as JSON on standard output.\n",
	  cmd_dump },
	{ "profile", "save|load MOUNTPOINT FILE | merge FILE FILE... | show FILE",
	  "Access profiles: the order in which a clone's regions were first read\n"
	  "or written since it was mounted (docs/profile.md).\n\n"
	  "  save MOUNTPOINT FILE    write the running clone's profile to FILE\n"
	  "  load MOUNTPOINT FILE    hydrate FILE's regions first, in its order\n"
	  "                          (as -o prefetch=FILE at mount)\n"
	  "  merge FILE FILE...      the first profile, then what the others add,\n"
	  "                          on standard output\n"
	  "  show FILE               the geometry and the runs, one per line\n\n"
	  "A profile of another geometry, or a corrupt one, is refused.\n",
	  cmd_profile },
	{ 0 },
};

static void print_usage(FILE *f)
{
	fputs("Usage: clonefs COMMAND ARGS...\n"
	      "       clonefs --help | --version\n\n"
	      "Commands:\n", f);
	for (const struct command *c = commands; c->name; c++)
		fprintf(f, "  clonefs %s %s\n", c->name, c->synopsis);
	fputs("\n'clonefs COMMAND --help' describes a command; see clonefs(8).\n", f);
}

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : NULL;

	if (!name)
		return usage_error(NULL, "missing command");
	if (!strcmp(name, "-h") || !strcmp(name, "--help")) {
		print_usage(stdout);
		return 0;
	}
	if (!strcmp(name, "-V") || !strcmp(name, "--version")) {
		printf("clonefs %s\n", PACKAGE_VERSION);
		return 0;
	}
	for (const struct command *c = commands; c->name; c++)
		if (!strcmp(name, c->name))
			return c->run(c, argc - 2, argv + 2);
	return usage_error(NULL, "unknown command '%s'", name);
}
