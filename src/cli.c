/*
 * cli.c - clonefs, the command-line tool (spec 4.7, 5.x).
 *
 *   clonefs status MOUNTPOINT [--json]
 *   clonefs message MOUNTPOINT WORDS...
 *   clonefs wait MOUNTPOINT [--timeout S] [--interval S]
 *   clonefs check [-n] META
 *   clonefs dump META
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

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <json-glib/json-glib.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define EXIT_FELL_BACK 3	/* check: repaired by falling back to an older transaction */
#define EXIT_TIMEOUT 124
#define EXIT_INTERRUPTED 130

struct command {
	const char *name;
	const char *synopsis;
	const char *help;
	int (*run)(const struct command *cmd, int argc, char **argv);
};

/* An option of a subcommand: a flag (@flag) or one with a value (@value). */
struct optdef {
	const char *name;  /* "--json" */
	const char *alias; /* "-n", or NULL */
	bool *flag;
	const char **value;
};

/* The stream of a progress bar line not yet ended (clonefs wait), or NULL. */
static FILE *open_line;

/* "clonefs: " and a message on stderr, on a line of its own. */
static void G_GNUC_PRINTF(1, 2) errmsg(const char *fmt, ...)
{
	va_list ap;

	if (open_line) {
		fputc('\n', open_line);
		open_line = NULL;
	}
	fputs("clonefs: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

static int G_GNUC_PRINTF(2, 3)
usage_error(const struct command *cmd, const char *fmt, ...)
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

/*
 * Sort argv into @opts and positional arguments (@pos, @npos). Options may
 * come anywhere; "--opt=V" and "--opt V" both work; "--" ends options.
 * -h/--help prints the command's help and exits. Returns 0 or EXIT_USAGE.
 */
static int parse_args(const struct command *cmd, int argc, char **argv,
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

/* Seconds as a decimal ("60", "0.5"); >= @min. */
static int parse_seconds(const char *s, double min, double *out)
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

/* MOUNTPOINT/image, or ARG itself when it is not a directory (the image).
 * NULL, with the reason printed, if ARG cannot be looked at. */
static char *image_path(const char *arg)
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

/* The status attribute @name of ARG (a mountpoint or the image), or NULL
 * with the reason printed. */
static char *get_status(const char *arg, const char *name)
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

/* --- wait ------------------------------------------------------------------ */

/* The few members of the daemon's JSON status (control.h) that wait needs. */
struct progress {
	uint64_t hydrated, total;       /* regions */
	uint64_t bytes, bytes_total;
	double rate;                    /* daemon's recent copy rate, bytes/s */
	uint64_t copy_errors;
	bool enabled;
	char mode[8], metadata_mode[8]; /* "rw", "ro"; metadata also "fail" */
};

/* Member @key of @o if it holds a value of @type, else NULL. */
static JsonNode *json_value(JsonObject *o, const char *key, GType type)
{
	JsonNode *n = json_object_get_member(o, key);

	return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == type ?
	       n : NULL;
}

static bool json_u64(JsonObject *o, const char *key, uint64_t *out)
{
	JsonNode *n = json_value(o, key, G_TYPE_INT64);

	if (!n || json_node_get_int(n) < 0)
		return false;
	*out = (uint64_t)json_node_get_int(n);
	return true;
}

static bool json_bool(JsonObject *o, const char *key, bool *out)
{
	JsonNode *n = json_value(o, key, G_TYPE_BOOLEAN);

	if (n)
		*out = json_node_get_boolean(n);
	return n;
}

static bool json_word(JsonObject *o, const char *key, char *buf, size_t len)
{
	JsonNode *n = json_value(o, key, G_TYPE_STRING);

	return n && g_strlcpy(buf, json_node_get_string(n), len) < len;
}

/* The rate is an integer; a float would do as well. */
static bool json_rate(JsonObject *o, const char *key, double *out)
{
	JsonNode *n = json_value(o, key, G_TYPE_INT64);

	if (!n)
		n = json_value(o, key, G_TYPE_DOUBLE);
	if (n)
		*out = json_node_get_double(n);
	return n;
}

/* False if @json is not an object with every member wait needs. */
static bool parse_progress(const char *json, struct progress *p)
{
	JsonParser *parser = json_parser_new();
	JsonObject *o;
	bool ok = false;

	memset(p, 0, sizeof(*p));
	if (!json_parser_load_from_data(parser, json, -1, NULL) ||
	    !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser)))
		goto out;
	o = json_node_get_object(json_parser_get_root(parser));
	ok = json_u64(o, CONTROL_KEY_HYDRATED_REGIONS, &p->hydrated) &&
	     json_u64(o, CONTROL_KEY_TOTAL_REGIONS, &p->total) &&
	     json_u64(o, CONTROL_KEY_BYTES_HYDRATED, &p->bytes) &&
	     json_u64(o, CONTROL_KEY_BYTES_TOTAL, &p->bytes_total) &&
	     json_rate(o, CONTROL_KEY_HYDRATION_RATE, &p->rate) &&
	     json_u64(o, CONTROL_KEY_COPY_ERRORS, &p->copy_errors) &&
	     json_bool(o, CONTROL_KEY_HYDRATION_ENABLED, &p->enabled) &&
	     json_word(o, CONTROL_KEY_MODE, p->mode, sizeof(p->mode)) &&
	     json_word(o, CONTROL_KEY_METADATA_MODE, p->metadata_mode,
		       sizeof(p->metadata_mode));
out:
	g_object_unref(parser);
	return ok;
}

/* Progress rate over a sliding window of samples of bytes_hydrated. */
#define RATE_WINDOW_US (10 * G_USEC_PER_SEC)
#define RATE_SAMPLES 64

struct rate_window {
	int64_t t[RATE_SAMPLES];
	uint64_t b[RATE_SAMPLES];
	int n;
};

/* Add a sample; return bytes/s over the window, or @fallback while the
 * window spans less than a second. */
static double rate_update(struct rate_window *w, int64_t now, uint64_t bytes,
			  double fallback)
{
	int drop = 0;
	double dt;

	if (w->n && bytes < w->b[w->n - 1])
		w->n = 0; /* went backwards (rolled back): start over */
	if (w->n == RATE_SAMPLES)
		drop = 1;
	while (drop < w->n - 1 && now - w->t[drop] > RATE_WINDOW_US)
		drop++;
	if (drop) {
		memmove(w->t, w->t + drop, (w->n - drop) * sizeof(w->t[0]));
		memmove(w->b, w->b + drop, (w->n - drop) * sizeof(w->b[0]));
		w->n -= drop;
	}
	w->t[w->n] = now;
	w->b[w->n] = bytes;
	w->n++;
	dt = (double)(now - w->t[0]) / G_USEC_PER_SEC;
	if (dt < 1.0)
		return fallback;
	return (double)(bytes - w->b[0]) / dt;
}

/* Tenths of a percent, never 100.0 before the end. */
static unsigned permille(const struct progress *p)
{
	unsigned pm;

	if (!p->total || p->hydrated >= p->total)
		return 1000;
	pm = (unsigned)((double)p->hydrated * 1000.0 / (double)p->total);
	return pm > 999 ? 999 : pm;
}

static void format_hms(char *buf, size_t len, double secs)
{
	uint64_t s;

	if (!(secs >= 0) || secs > 359999999.0) {
		snprintf(buf, len, "--:--:--");
		return;
	}
	s = (uint64_t)(secs + 0.5);
	snprintf(buf, len, "%02" G_GUINT64_FORMAT ":%02u:%02u", s / 3600,
		 (unsigned)(s / 60 % 60), (unsigned)(s % 60));
}

/* "120.5 MiB" (plain ASCII, unlike g_format_size). */
static void format_bytes(char *buf, size_t len, double bytes)
{
	static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	unsigned u = 0;

	while (bytes >= 1024 && u + 1 < G_N_ELEMENTS(units)) {
		bytes /= 1024;
		u++;
	}
	snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
}

/* "120.5 MiB/s, 00:00:12 left" or why there is no estimate. */
static char *format_speed(const struct progress *p, double rate)
{
	char size[32], hms[32];

	if (p->hydrated >= p->total)
		return g_strdup("done");
	if (!p->enabled && rate < 1.0)
		return g_strdup("hydration disabled");
	format_bytes(size, sizeof(size), rate > 0 ? rate : 0);
	format_hms(hms, sizeof(hms), rate >= 1.0 ?
		   (double)(p->bytes_total - MIN(p->bytes, p->bytes_total)) / rate
		   : -1);
	return g_strdup_printf("%s/s, %s left", size, hms);
}

static void print_plain(const struct progress *p, double rate)
{
	unsigned pm = permille(p);
	char *speed = format_speed(p, rate);

	printf("clonefs: %u.%u%% hydrated (%" G_GUINT64_FORMAT "/%"
	       G_GUINT64_FORMAT " regions), %s", pm / 10, pm % 10, p->hydrated,
	       p->total, speed);
	if (p->copy_errors)
		printf(", %" G_GUINT64_FORMAT " copy errors", p->copy_errors);
	putchar('\n');
	fflush(stdout);
	g_free(speed);
}

/* "\r[#####.....]  42.0%  1234/4096  120.5 MiB/s, 00:00:12 left", exactly
 * the terminal's width less one, so each redraw covers the last. */
static void draw_bar(FILE *f, const struct progress *p, double rate)
{
	struct winsize ws;
	unsigned pm = permille(p);
	int cols = 80, barw, fill;
	char *speed = format_speed(p, rate);
	GString *tail = g_string_new(NULL);

	if (!ioctl(fileno(f), TIOCGWINSZ, &ws) && ws.ws_col > 0)
		cols = ws.ws_col;
	g_string_printf(tail, " %3u.%u%%  %" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT
			"  %s", pm / 10, pm % 10, p->hydrated, p->total, speed);
	if (p->copy_errors)
		g_string_append_printf(tail, ", %" G_GUINT64_FORMAT " errors",
				       p->copy_errors);
	barw = cols - 1 - (int)tail->len - 2;
	fputc('\r', f);
	if (barw >= 10) {
		fill = (int)((uint64_t)barw * pm / 1000);
		fputc('[', f);
		for (int i = 0; i < barw; i++)
			fputc(i < fill ? '#' : '.', f);
		fputc(']', f);
		fputs(tail->str, f);
	} else {
		fprintf(f, "%-*.*s", cols - 1, cols - 1, tail->str + 1);
	}
	fflush(f);
	g_string_free(tail, TRUE);
	g_free(speed);
}

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* Sleep @us unless a signal comes. */
static void nap(int64_t us)
{
	struct timespec ts = { us / G_USEC_PER_SEC, us % G_USEC_PER_SEC * 1000 };

	if (us > 0)
		nanosleep(&ts, NULL);
}

/* Sleep up to @us, or until the daemon reports every region hydrated:
 * POLLPRI on the image @fd. A daemon without poll answers with a mask
 * that lacks POLLPRI, so this then sleeps the whole time. */
static void await_hydrated(int fd, int64_t us)
{
	struct pollfd pfd = { .fd = fd, .events = POLLPRI };

	if (us <= 0)
		return;
	if (fd < 0 || (poll(&pfd, 1, (int)((us + 999) / 1000)) < 0 && errno != EINTR))
		nap(us);
}

static int cmd_wait(const struct command *cmd, int argc, char **argv)
{
	const char *timeout_s = NULL, *interval_s = NULL;
	const struct optdef opts[] = {
		{ "--timeout", "-t", NULL, &timeout_s },
		{ "--interval", "-i", NULL, &interval_s },
		{ 0 },
	};
	char **pos = g_new0(char *, argc + 1), *json = NULL, *why = NULL;
	char hms[32];
	FILE *tty = isatty(STDERR_FILENO) ? stderr :
		    isatty(STDOUT_FILENO) ? stdout : NULL;
	double timeout = 0, interval = tty ? 1.0 : 5.0, rate;
	int64_t start, now, deadline, last_report = 0, poll_us;
	struct sigaction sa = { .sa_handler = on_signal };
	struct rate_window win = { .n = 0 };
	struct progress p;
	const char *arg;
	int npos, ret, fd = -1;

	ret = parse_args(cmd, argc, argv, opts, pos, &npos);
	if (ret)
		goto out;
	if (npos != 1) {
		ret = usage_error(cmd, "wait needs one MOUNTPOINT");
		goto out;
	}
	if (timeout_s && parse_seconds(timeout_s, 0, &timeout)) {
		ret = usage_error(cmd, "bad --timeout '%s': seconds, 0 for none",
				  timeout_s);
		goto out;
	}
	if (interval_s && parse_seconds(interval_s, 0.1, &interval)) {
		ret = usage_error(cmd, "bad --interval '%s': seconds, at least 0.1",
				  interval_s);
		goto out;
	}
	arg = pos[0];
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	/* Read the status at least once a second (progress, failures), and in
	 * between sleep in poll(2) on the image, which the daemon ends when the
	 * last region is hydrated; report (redraw the bar, or print a line)
	 * every --interval. */
	poll_us = (int64_t)(MIN(interval, 1.0) * G_USEC_PER_SEC);
	start = g_get_monotonic_time();
	deadline = start + (int64_t)(timeout * G_USEC_PER_SEC);
	for (;;) {
		bool done, report;

		g_free(json);
		json = interrupted ? NULL : get_status(arg, CONTROL_XATTR_JSON);
		if (!json) {
			ret = interrupted ? EXIT_INTERRUPTED : EXIT_FAIL;
			break;
		}
		if (!parse_progress(json, &p)) {
			errmsg("%s: cannot read the status "
				"(unexpected JSON from the daemon)\n", arg);
			ret = EXIT_FAIL;
			break;
		}
		now = g_get_monotonic_time();
		rate = rate_update(&win, now, p.bytes, p.rate);
		done = p.hydrated >= p.total;
		report = done || !last_report ||
			 now - last_report >= (int64_t)(interval * G_USEC_PER_SEC) - poll_us / 2;
		if (report && tty) {
			draw_bar(tty, &p, rate);
			open_line = tty;
		} else if (report && !done) {
			print_plain(&p, rate);
		}
		if (report)
			last_report = now;
		if (!strcmp(p.metadata_mode, "fail")) {
			why = g_strdup("metadata failed (status Fail); see the "
				       "daemon's log, then unmount and run "
				       "clonefs check on META");
			ret = EXIT_FAIL;
			break;
		}
		if (done) {
			ret = 0;
			break;
		}
		if (!strcmp(p.mode, "ro")) {
			why = g_strdup("the clone is read-only (mounted ro, or a "
				       "metadata commit failed): hydration cannot "
				       "finish");
			ret = EXIT_FAIL;
			break;
		}
		if (timeout > 0 && now >= deadline) {
			unsigned pm = permille(&p);

			why = g_strdup_printf("timed out after %g s at %u.%u%% (%"
					      G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT
					      " regions)", timeout, pm / 10,
					      pm % 10, p.hydrated, p.total);
			ret = EXIT_TIMEOUT;
			break;
		}
		if (fd < 0) {
			char *path = image_path(arg);

			/* O_DIRECT, though it never reads: while a cached open
			 * of the image exists, the kernel puts O_DIRECT writes
			 * back under the file's lock, one at a time. */
			fd = path ? open(path, O_RDONLY | O_DIRECT | O_CLOEXEC) : -1;
			if (fd < 0 && errno == EINVAL && path)
				fd = open(path, O_RDONLY | O_CLOEXEC);
			g_free(path);
		}
		await_hydrated(fd, timeout > 0 ? MIN(poll_us, deadline - now) : poll_us);
	}
	if (why) {
		errmsg("%s: %s\n", arg, why);
	} else if (ret == 0 && !tty) {
		format_hms(hms, sizeof(hms), (double)(now - start) / G_USEC_PER_SEC);
		printf("clonefs: 100.0%% hydrated (%" G_GUINT64_FORMAT "/%"
		       G_GUINT64_FORMAT " regions) in %s\n", p.hydrated, p.total,
		       hms);
	}
	if (open_line) {
		fputc('\n', open_line);
		open_line = NULL;
	}
out:
	if (fd >= 0)
		close(fd);
	g_free(why);
	g_free(json);
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
	  "The message is checked before it is sent; a bad one exits 2.\n",
	  cmd_message },
	{ "wait", "MOUNTPOINT [--timeout S] [--interval S]",
	  "Wait until every region is hydrated. On a terminal, draw a progress\n"
	  "bar; otherwise print one line per interval.\n\n"
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
