/*
 * mount.c - mount.clonefs, the daemon and mount(8) helper.
 *
 *   mount.clonefs SOURCE DEST META MOUNTPOINT [-o OPTIONS] [-f] [-d]
 *   mount.clonefs SOURCE MOUNTPOINT -o dest=DEST,meta=META[,OPTIONS]
 *
 * The second form is what `mount -t clonefs` and /etc/fstab run. Everything
 * is validated and opened before the mount, so bad input fails with one line
 * and touches nothing; threads start only after the daemon has forked.
 */
#include "clonefs/clone.h"
#include "clonefs/fuse_ops.h"
#include "clonefs/passthrough.h"
#include "clonefs/options.h"

#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#define EXIT_USAGE 1
#define EXIT_MOUNT_FAILED 32 /* mount(8)'s code for a failed mount */

static const char usage[] =
	"Usage: mount.clonefs SOURCE DEST META MOUNTPOINT [-o OPTIONS] [-f] [-d]\n"
	"       mount.clonefs SOURCE MOUNTPOINT -o dest=DEST,meta=META[,OPTIONS]\n"
	"\n"
	"Mounts MOUNTPOINT/image, a clone of SOURCE that hydrates into DEST.\n"
	"SOURCE is a file, a block device or an NBD URI (nbd://HOST/EXPORT,\n"
	"nbds://..., nbd+unix:///EXPORT?socket=PATH).\n"
	"\n"
	"Options:\n"
	"  region_size=SIZE         region size, power of two, 4k..1G\n"
	"                           (64k; an existing META's own when left out)\n"
	"  no_hydration             start with background hydration off\n"
	"  hydration_threshold=N    regions copied at once at most (64)\n"
	"  hydration_batch_size=N   contiguous regions per copy (16)\n"
	"  hydration_rate=BYTES     bound background copying, bytes/s (0: none)\n"
	"  copy_on_read             hydrate regions that are read first\n"
	"  no_read_hints            reads do not steer hydration\n"
	"  prefetch=FILE            hydrate an access profile's regions first\n"
	"  no_discard_passdown      discards write zeros instead of holes in DEST\n"
	"  commit_period=SECONDS    commit metadata this often (1)\n"
	"  source_timeout=SECONDS   NBD SOURCE: reads not served by then fail (30)\n"
	"  ro                       read-only image, nothing is written\n"
	"  nofollow                 refuse DEST and META that are symlinks\n"
	"  allow_other              let other users in (adds default_permissions)\n"
	"  uid=N,gid=N              the image's owner (the mounting user's)\n"
	"  umask=OCTAL              the image's mode is 0666 less these bits; without\n"
	"                           it 0600, narrowed by SOURCE's read bits\n"
	"  debug                    log in detail\n"
	"  -f                       stay in the foreground, log to stderr\n"
	"  -d                       -f plus FUSE request tracing\n"
	"  other -o options go to FUSE (see fuse(8))\n";

static bool foreground;

static GLogWriterOutput log_writer(GLogLevelFlags level, const GLogField *fields,
				   gsize n_fields, gpointer data)
{
	const char *msg = NULL;
	int prio = LOG_INFO;

	(void)data;
	if (g_log_writer_default_would_drop(level, G_LOG_DOMAIN))
		return G_LOG_WRITER_HANDLED; /* debug, unless -o debug */
	if (foreground) { /* all of it on stderr: stdout is not ours */
		char *line = g_log_writer_format_fields(level, fields, n_fields,
							isatty(STDERR_FILENO));

		fprintf(stderr, "%s\n", line);
		g_free(line);
		return G_LOG_WRITER_HANDLED;
	}
	for (gsize i = 0; i < n_fields; i++)
		if (!strcmp(fields[i].key, "MESSAGE"))
			msg = fields[i].value;
	if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
		prio = LOG_ERR;
	else if (level & G_LOG_LEVEL_WARNING)
		prio = LOG_WARNING;
	else if (level & G_LOG_LEVEL_DEBUG)
		prio = LOG_DEBUG;
	syslog(prio, "%s", msg ? msg : "");
	return G_LOG_WRITER_HANDLED;
}

/* Options mount(8) passes that mean nothing to a FUSE daemon. */
static bool mount_noise(const char *o)
{
	static const char *words[] = { "defaults", "auto", "noauto", "nofail",
		"_netdev", "user", "users", "nouser", "owner", "group", NULL };

	for (int i = 0; words[i]; i++)
		if (!strcmp(o, words[i]))
			return true;
	return !strncmp(o, "x-", 2) || !strncmp(o, "comment=", 8);
}

struct cmdline {
	const char *pos[4];
	int npos;
	char *dest, *meta;
	bool fuse_debug;
	GString *fuse_opts;
	struct clone_options opt;
};

static int take_opts(struct cmdline *cl, const char *list)
{
	char **items = g_strsplit(list, ",", -1);
	char err[256];
	int ret = 0;

	for (char **p = items; *p && !ret; p++) {
		const char *o = *p;
		int r;

		if (!*o || mount_noise(o))
			continue;
		if (!strncmp(o, "dest=", 5)) {
			g_free(cl->dest);
			cl->dest = g_strdup(o + 5);
			continue;
		}
		if (!strncmp(o, "meta=", 5)) {
			g_free(cl->meta);
			cl->meta = g_strdup(o + 5);
			continue;
		}
		if (!strcmp(o, "debug")) {
			g_log_set_debug_enabled(TRUE);
			continue;
		}
		r = options_apply(&cl->opt, o, err, sizeof(err));
		if (r < 0) {
			fprintf(stderr, "mount.clonefs: %s\n", err);
			ret = -1;
			continue;
		}
		/* FUSE's own options; ro/rw also set the mount's flag. */
		if (r == 1 || !strcmp(o, "ro") || !strcmp(o, "rw")) {
			g_string_append_printf(cl->fuse_opts, ",%s", o);
			if (!strcmp(o, "allow_other"))
				g_string_append(cl->fuse_opts, ",default_permissions");
		}
	}
	g_strfreev(items);
	return ret;
}

static int parse(struct cmdline *cl, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(usage, stdout);
			exit(0);
		} else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
			printf("mount.clonefs %s (libfuse %s)\n", PACKAGE_VERSION,
			       fuse_pkgversion());
			exit(0);
		} else if (!strcmp(a, "-o")) {
			if (++i == argc) {
				fprintf(stderr, "mount.clonefs: -o needs options\n");
				return -1;
			}
			if (take_opts(cl, argv[i]))
				return -1;
		} else if (!strncmp(a, "-o", 2)) {
			if (take_opts(cl, a + 2))
				return -1;
		} else if (!strcmp(a, "-f")) {
			foreground = true;
		} else if (!strcmp(a, "-d")) {
			foreground = cl->fuse_debug = true;
		} else if (!strcmp(a, "-s") || !strcmp(a, "-n") || !strcmp(a, "-v")) {
			/* mount(8) helper flags: sloppy, no mtab, verbose */
		} else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "mount.clonefs: unknown option %s\n", a);
			return -1;
		} else if (cl->npos == 4) {
			fprintf(stderr, "mount.clonefs: too many arguments\n");
			return -1;
		} else {
			cl->pos[cl->npos++] = a;
		}
	}
	return 0;
}

/* /sys/class/bdi/MAJ:MIN/read_ahead_kb of the mount on @mnt (the last one,
 * if mounts are stacked there), from /proc/self/mountinfo: a stat of the
 * mount point would wait for the daemon, which is not serving yet. */
static char *bdi_readahead_file(const char *mnt)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[4096], point[4096], *path = NULL;
	unsigned major, minor;

	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &major, &minor, point) == 3 &&
		    !strcmp(point, mnt)) {
			g_free(path);
			path = g_strdup_printf("/sys/class/bdi/%u:%u/read_ahead_kb",
					       major, minor);
		}
	}
	if (f)
		fclose(f);
	return path;
}

/* What to mount where, from either form of the command line. */
struct paths {
	const char *source;
	char *dest, *meta;
	char *mnt; /* absolute: the daemon leaves the working directory */
};

/* SOURCE, DEST, META and MOUNTPOINT of @cl into @p; EXIT_USAGE if the
 * command line has neither form. */
static int take_paths(const struct cmdline *cl, struct paths *p)
{
	if (cl->npos == 4) {
		p->source = cl->pos[0];
		p->dest = g_strdup(cl->pos[1]);
		p->meta = g_strdup(cl->pos[2]);
		p->mnt = realpath(cl->pos[3], NULL);
	} else if (cl->npos == 2 && cl->dest && cl->meta) {
		p->source = cl->pos[0];
		p->dest = g_strdup(cl->dest);
		p->meta = g_strdup(cl->meta);
		p->mnt = realpath(cl->pos[1], NULL);
	} else {
		fprintf(stderr, "mount.clonefs: %s (see mount.clonefs --help)\n",
			cl->npos == 2 ? "the two-argument form needs -o dest=DEST,meta=META"
				      : "expected SOURCE DEST META MOUNTPOINT");
		return EXIT_USAGE;
	}
	return 0;
}

/* 0 if the mount point is a directory; else -1, said on stderr. */
static int check_mountpoint(const struct cmdline *cl, const struct paths *p)
{
	const char *arg = cl->pos[cl->npos - 1];
	struct stat st;

	if (p->mnt && !stat(p->mnt, &st) && S_ISDIR(st.st_mode))
		return 0;
	fprintf(stderr, "mount.clonefs: mountpoint %s: %s\n", arg,
		access(arg, F_OK) ? g_strerror(errno) : "not a directory");
	return -1;
}

/* A FUSE session serving @fs, with the -o options meant for FUSE; fsname
 * shows SOURCE in /proc/mounts, subtype makes it fuse.clonefs. NULL if
 * FUSE refuses the options. */
static struct fuse_session *new_session(const char *argv0, const struct cmdline *cl,
					const char *source, struct fuse_ops_session *fs)
{
	GString *o = g_string_new("subtype=clonefs,fsname=");
	char *fargv[] = { (char *)argv0, "-o", NULL, "-d", NULL };
	struct fuse_args args = FUSE_ARGS_INIT(cl->fuse_debug ? 4 : 3, fargv);
	struct fuse_session *se;

	for (const char *p = source; *p; p++) { /* fuse_opt escapes */
		if (*p == ',' || *p == '\\')
			g_string_append_c(o, '\\');
		g_string_append_c(o, *p);
	}
	g_string_append(o, cl->fuse_opts->str);
	fargv[2] = o->str;
	se = fuse_session_new(&args, &clonefs_fuse_ops, sizeof(clonefs_fuse_ops), fs);
	fuse_opt_free_args(&args);
	g_string_free(o, TRUE);
	return se;
}

/* Mount @se, become the daemon and serve until unmounted: 0, or
 * EXIT_MOUNT_FAILED. Signal handlers and the mount are undone on return. */
static int serve(struct fuse_session *se, struct fuse_ops_session *fs,
		 struct clone *c, const struct paths *p)
{
	struct fuse_loop_config *lc;
	char *ra;
	int ret = EXIT_MOUNT_FAILED;

	if (fuse_set_signal_handlers(se))
		return ret;
	if (fuse_session_mount(se, p->mnt)) {
		fprintf(stderr, "mount.clonefs: cannot mount on %s\n", p->mnt);
		goto out_signals;
	}
	if ((ra = bdi_readahead_file(p->mnt)))
		fuse_ops_set_readahead(fs, ra);
	g_free(ra);
	if (passthrough_install(se))
		g_warning("no custom I/O: kernel passthrough off");
	if (fuse_daemonize(foreground))
		goto out_unmount;
	fuse_ops_watch(fs);
	if (clone_start(c)) {
		g_warning("cannot start background threads");
		goto out_unmount;
	}
	g_message("mounted %s on %s (dest %s, meta %s)", p->source, p->mnt,
		  p->dest, p->meta);

	lc = fuse_loop_cfg_create();
	fuse_loop_cfg_set_clone_fd(lc, 1);
	fuse_loop_cfg_set_max_threads(lc, FUSE_THREADS);
	ret = fuse_session_loop_mt(se, lc) ? EXIT_MOUNT_FAILED : 0;
	fuse_loop_cfg_destroy(lc);
	g_message("unmounting %s", p->mnt);
out_unmount:
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
	return ret;
}

int main(int argc, char **argv)
{
	struct cmdline cl = { .fuse_opts = g_string_new(NULL) };
	struct paths p = { 0 };
	char err[512];
	struct clone *c = NULL;
	struct fuse_ops_session *fs = NULL;
	struct fuse_session *se;
	int ret = EXIT_MOUNT_FAILED;

	options_defaults(&cl.opt);
	if (parse(&cl, argc, argv)) {
		ret = EXIT_USAGE;
		goto out_free;
	}
	if (take_paths(&cl, &p)) {
		ret = EXIT_USAGE;
		goto out_free;
	}
	openlog("clonefs", LOG_PID, LOG_DAEMON);
	g_log_set_writer_func(log_writer, NULL, NULL);
	if (check_mountpoint(&cl, &p))
		goto out_free;
	if (clone_open(p.source, p.dest, p.meta, &cl.opt, &c, err, sizeof(err))) {
		fprintf(stderr, "mount.clonefs: %s\n", err);
		goto out_free;
	}
	fs = fuse_ops_new(c);
	se = new_session(argv[0], &cl, p.source, fs);
	if (!se) {
		fprintf(stderr, "mount.clonefs: bad FUSE options:%s\n",
			cl.fuse_opts->str);
		ret = EXIT_USAGE;
		goto out_close;
	}
	ret = serve(se, fs, c, &p);
	fuse_ops_unwatch(fs);
	fuse_session_destroy(se);
out_close:
	if (clone_close(c) && !ret)
		ret = EXIT_MOUNT_FAILED;
	if (fs) /* after the clone: its scheduler may still wake pollers */
		fuse_ops_free(fs);
out_free:
	g_free(p.dest);
	g_free(p.meta);
	free(p.mnt);
	g_free(cl.dest);
	g_free(cl.meta);
	g_string_free(cl.fuse_opts, TRUE);
	return ret;
}
