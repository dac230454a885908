/*
 * cli_wait.c - clonefs wait: poll the daemon's JSON status until every
 * region is hydrated (--prefetch: every region of the prefetch profile), drawing a progress bar on a terminal or printing a
 * line per interval otherwise.
 *
 * Exit codes (cli.h): 0 all hydrated, EXIT_FAIL the mount went away, the
 * metadata failed or the clone is read-only (it cannot finish),
 * EXIT_TIMEOUT after --timeout, EXIT_INTERRUPTED on SIGINT/SIGTERM.
 */
#include "clonefs/control.h"
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <json-glib/json-glib.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

/* The few members of the daemon's JSON status (control.h) that wait needs. */
struct progress {
	uint64_t hydrated, total;       /* regions */
	uint64_t bytes, bytes_total;
	double rate;                    /* daemon's recent copy rate, bytes/s */
	uint64_t copy_errors;
	bool enabled;
	char mode[8], metadata_mode[8]; /* "rw", "ro"; metadata also "fail" */
	bool has_prefetch;              /* the three below were there */
	uint64_t pf_total, pf_hydrated, region_bytes;
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

/* A number: an integer, as control.c writes it, or a float. */
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
	p->has_prefetch = json_u64(o, CONTROL_KEY_PREFETCH_REGIONS, &p->pf_total) &&
			  json_u64(o, CONTROL_KEY_PREFETCH_HYDRATED, &p->pf_hydrated) &&
			  json_u64(o, CONTROL_KEY_REGION_SIZE_BYTES, &p->region_bytes);
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

/* --- the waiting ---------------------------------------------------------- */

struct waiter {
	const char *arg;          /* MOUNTPOINT, or the image */
	FILE *tty;                /* where the bar goes; NULL: plain lines */
	double timeout, interval; /* seconds; timeout 0: none */
	int64_t start, deadline, now, last_report, poll_us;
	struct rate_window win;
	struct progress p;        /* the last status read */
	int fd;                   /* the image, for poll(2); -1 until needed */
	bool prefetch;            /* --prefetch: the profile's regions only */
};

/* wait's arguments into @w (@pos holds the positional ones). 0 or
 * EXIT_USAGE. */
static int wait_args(const struct command *cmd, int argc, char **argv,
		     char **pos, struct waiter *w)
{
	const char *timeout_s = NULL, *interval_s = NULL;
	const struct optdef opts[] = {
		{ "--timeout", "-t", NULL, &timeout_s },
		{ "--interval", "-i", NULL, &interval_s },
		{ "--prefetch", "-p", &w->prefetch, NULL },
		{ 0 },
	};
	int npos, ret;

	ret = parse_args(cmd, argc, argv, opts, pos, &npos);
	if (ret)
		return ret;
	if (npos != 1)
		return usage_error(cmd, "wait needs one MOUNTPOINT");
	if (timeout_s && parse_seconds(timeout_s, 0, &w->timeout))
		return usage_error(cmd, "bad --timeout '%s': seconds, 0 for none",
				   timeout_s);
	if (interval_s && parse_seconds(interval_s, 0.1, &w->interval))
		return usage_error(cmd, "bad --interval '%s': seconds, at least 0.1",
				   interval_s);
	w->arg = pos[0];
	return 0;
}

/* Redraw the bar, or print a line, if an --interval has passed since the
 * last report (or this is the first, or the last). */
static void wait_report(struct waiter *w, double rate)
{
	bool done = w->p.hydrated >= w->p.total;
	int64_t interval_us = (int64_t)(w->interval * G_USEC_PER_SEC);

	if (!done && w->last_report &&
	    w->now - w->last_report < interval_us - w->poll_us / 2)
		return;
	if (w->tty) {
		draw_bar(w->tty, &w->p, rate);
		cli_line_open(w->tty);
	} else if (!done) {
		print_plain(&w->p, rate);
	}
	w->last_report = w->now;
}

/* --prefetch: the progress of the prefetch profile instead of the whole
 * image. EXIT_FAIL (said) when there is none to wait for. */
static int prefetch_progress(struct waiter *w)
{
	struct progress *p = &w->p;

	if (!p->has_prefetch) {
		errmsg("%s: this clonefs daemon does not prefetch\n", w->arg);
		return EXIT_FAIL;
	}
	if (!p->pf_total && p->hydrated < p->total) {
		errmsg("%s: no prefetch profile in force (mount with -o "
		       "prefetch=FILE, or clonefs profile load)\n", w->arg);
		return EXIT_FAIL;
	}
	p->hydrated = p->pf_hydrated;
	p->total = p->pf_total;
	p->bytes = p->pf_hydrated * p->region_bytes;
	p->bytes_total = p->pf_total * p->region_bytes;
	return 0;
}

/* Read the status into @w and report it. 0, or the exit code of a failure
 * (already explained). */
static int wait_sample(struct waiter *w)
{
	char *json = interrupted ? NULL : get_status(w->arg, CONTROL_XATTR_JSON);
	bool ok;

	if (!json)
		return interrupted ? EXIT_INTERRUPTED : EXIT_FAIL;
	ok = parse_progress(json, &w->p);
	g_free(json);
	if (!ok) {
		errmsg("%s: cannot read the status "
		       "(unexpected JSON from the daemon)\n", w->arg);
		return EXIT_FAIL;
	}
	if (w->prefetch && prefetch_progress(w))
		return EXIT_FAIL;
	w->now = g_get_monotonic_time();
	wait_report(w, rate_update(&w->win, w->now, w->p.bytes, w->p.rate));
	return 0;
}

/* -1 while waiting should go on; else the exit code, with *@why set to
 * what to tell the user when it is a failure. */
static int wait_verdict(const struct waiter *w, char **why)
{
	const struct progress *p = &w->p;
	unsigned pm;

	if (!strcmp(p->metadata_mode, "fail")) {
		*why = g_strdup("metadata failed (status Fail); see the daemon's "
				"log, then unmount and run clonefs check on META");
		return EXIT_FAIL;
	}
	if (p->hydrated >= p->total)
		return 0;
	if (!strcmp(p->mode, "ro")) {
		*why = g_strdup("the clone is read-only (mounted ro, or a metadata "
				"commit failed): hydration cannot finish");
		return EXIT_FAIL;
	}
	if (w->timeout > 0 && w->now >= w->deadline) {
		pm = permille(p);
		*why = g_strdup_printf("timed out after %g s at %u.%u%% (%"
				       G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT
				       " regions)", w->timeout, pm / 10, pm % 10,
				       p->hydrated, p->total);
		return EXIT_TIMEOUT;
	}
	return -1;
}

/* Sleep until the next sample is due, or the daemon says it is done. */
static void wait_sleep(struct waiter *w)
{
	if (w->fd < 0) {
		char *path = image_path(w->arg);

		/* O_DIRECT, though it never reads: while a cached open of the
		 * image exists, the kernel puts O_DIRECT writes back under the
		 * file's lock, one at a time. */
		w->fd = path ? open(path, O_RDONLY | O_DIRECT | O_CLOEXEC) : -1;
		if (w->fd < 0 && errno == EINVAL && path)
			w->fd = open(path, O_RDONLY | O_CLOEXEC);
		g_free(path);
	}
	await_hydrated(w->fd, w->timeout > 0 ?
		       MIN(w->poll_us, w->deadline - w->now) : w->poll_us);
}

/* Say how waiting ended: why it failed, or (without a bar) that it is
 * done; and end the bar's line. */
static void wait_finish(const struct waiter *w, int ret, const char *why)
{
	char hms[32];

	if (why) {
		errmsg("%s: %s\n", w->arg, why);
	} else if (ret == 0 && !w->tty) {
		format_hms(hms, sizeof(hms),
			   (double)(w->now - w->start) / G_USEC_PER_SEC);
		printf("clonefs: 100.0%% %s (%" G_GUINT64_FORMAT "/%"
		       G_GUINT64_FORMAT " regions) in %s\n",
		       w->prefetch ? "prefetched" : "hydrated", w->p.hydrated,
		       w->p.total, hms);
	}
	cli_line_end();
}

/*
 * Read the status at least once a second (progress, failures), and in
 * between sleep in poll(2) on the image, which the daemon ends when the
 * last region is hydrated; report every --interval.
 */
int cmd_wait(const struct command *cmd, int argc, char **argv)
{
	struct waiter w = { .fd = -1 };
	struct sigaction sa = { .sa_handler = on_signal };
	char **pos = g_new0(char *, argc + 1), *why = NULL;
	int ret;

	w.tty = isatty(STDERR_FILENO) ? stderr :
		isatty(STDOUT_FILENO) ? stdout : NULL;
	w.interval = w.tty ? 1.0 : 5.0;
	ret = wait_args(cmd, argc, argv, pos, &w);
	if (ret)
		goto out;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	/* the daemon wakes poll(2) only for the whole image */
	w.poll_us = (int64_t)(MIN(w.interval, w.prefetch ? 0.2 : 1.0) * G_USEC_PER_SEC);
	w.start = g_get_monotonic_time();
	w.deadline = w.start + (int64_t)(w.timeout * G_USEC_PER_SEC);
	while (!(ret = wait_sample(&w)) && (ret = wait_verdict(&w, &why)) < 0)
		wait_sleep(&w);
	wait_finish(&w, ret, why);
out:
	if (w.fd >= 0)
		close(w.fd);
	g_free(why);
	g_free(pos);
	return ret;
}
