/*
 * bio_hooks.c - the two test hooks every block I/O passes: fault injection
 * and the write log. See blockio.h for both formats (CLONEFS_FAULTS*,
 * CLONEFS_WRITELOG) and bio_hooks.h for what blockio.c calls.
 *
 * The hooks are configured once, from the environment, at the first call.
 * While neither is on, `bio_hooks` is exactly H_READY and blockio.c's
 * bio_bio_hooked() returns false after one load. Everything behind that branch
 * takes locks freely; it only runs in tests.
 */
#include "bio_hooks.h"
#include "clonefs/errf.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_RULES 64
#define LOG_FAULTS 20
#define LOG_EVERY 100

unsigned bio_hooks;
static pthread_once_t hooks_once = PTHREAD_ONCE_INIT;

/* ---- fault rules ---- */

struct rule {
	unsigned roles, ops; /* bit masks */
	int err;
	uint64_t after, count;
	double prob;
	uint64_t at_off, at_len; /* at_len 0: anywhere */
	uint64_t seen, fired;
};

static struct {
	pthread_mutex_t lock;
	struct rule rules[MAX_RULES];
	int nr;
	uint64_t rng;
	uint64_t injected;
	char *file;          /* CLONEFS_FAULTS_FILE, or NULL */
	struct stat file_st; /* what was last loaded from it */
	bool file_seen;
} faults = { .lock = PTHREAD_MUTEX_INITIALIZER, .rng = 1 };

/* ---- the write log ---- */

#define WLOG_MAGIC 0x31524c57u
#define WLOG_HDR 48

/* A record's header, little-endian; blockio.h documents the fields. */
struct wlog_rec {
	uint32_t magic;
	uint8_t type, role;
	uint16_t zero0;
	uint32_t pid, zero1;
	uint64_t seq, time_ns, a, b;
} __attribute__((packed));
G_STATIC_ASSERT(sizeof(struct wlog_rec) == WLOG_HDR);

static struct {
	pthread_mutex_t lock;
	int fd;
	uint64_t seq;
} wlog = { .lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1 };

static void hooks_init(void);

bool bio_hooks_slow(unsigned h)
{
	if (!(h & H_READY)) {
		pthread_once(&hooks_once, hooks_init);
		h = __atomic_load_n(&bio_hooks, __ATOMIC_ACQUIRE);
	}
	return h != H_READY;
}

/* ---- parsing rules ---- */

static const char *const role_names[] = { "source", "dest", "meta" };
static const char *const op_names[] = { "read", "write", "flush" };

/* The bit of @w among @names, or all @n bits for "any"; 0 if neither. */
static unsigned word_mask(const char *w, const char *const *names, int n)
{
	if (!strcmp(w, "any"))
		return (1u << n) - 1;
	for (int i = 0; i < n; i++)
		if (!strcmp(w, names[i]))
			return 1u << i;
	return 0;
}

/* Plain decimal digits, nothing else. */
static int parse_u64(const char *s, uint64_t *out)
{
	guint64 v;

	if (!g_ascii_string_to_unsigned(s, 10, 0, G_MAXUINT64, &v, NULL))
		return -EINVAL;
	*out = v;
	return 0;
}

/* Apply one modifier "NAME[=VALUE]" (modified in place) to @r; NULL, or
 * why it is refused. */
static const char *parse_modifier(char *m, struct rule *r)
{
	char *v = strchr(m, '='), *plus, *end;

	if (v)
		*v++ = '\0';
	if (!strcmp(m, "once") && !v) {
		r->count = 1;
	} else if (!strcmp(m, "after") && v) {
		if (parse_u64(v, &r->after))
			return "after= needs a number";
	} else if (!strcmp(m, "count") && v) {
		if (parse_u64(v, &r->count))
			return "count= needs a number";
	} else if (!strcmp(m, "prob") && v) {
		errno = 0;
		r->prob = strtod(v, &end);
		if (errno || end == v || *end || !(r->prob >= 0.0 && r->prob <= 1.0))
			return "prob= needs a number from 0 to 1";
	} else if (!strcmp(m, "at") && v) {
		plus = strchr(v, '+');
		if (plus)
			*plus++ = '\0';
		if (!plus || parse_u64(v, &r->at_off) || parse_u64(plus, &r->at_len) ||
		    r->at_len == 0 || r->at_off + r->at_len < r->at_off)
			return "at= needs OFFSET+LENGTH";
	} else {
		return "unknown modifier (after=, count=, once, prob=, at=)";
	}
	return NULL;
}

/* Parse one "ROLE:OP:ERROR[:MOD]..." (modified in place) into @r. */
static int parse_rule(char *text, struct rule *r, char *err, size_t errlen)
{
	static const struct { const char *word; int err; } errors[] = {
		{ "eio", EIO }, { "enospc", ENOSPC }, { "erofs", EROFS },
	};
	char *orig = g_strdup(text), *save = NULL, *f[3], *m;
	const char *why = NULL;
	int ret;

	memset(r, 0, sizeof(*r));
	r->count = UINT64_MAX;
	r->prob = 1.0;
	for (int i = 0; i < 3 && !why; i++)
		if (!(f[i] = strtok_r(i ? NULL : text, ":", &save)))
			why = "expected ROLE:OP:ERROR";
	if (!why && !(r->roles = word_mask(f[0], role_names, BIO_NR_ROLES)))
		why = "role must be source, dest, meta or any";
	if (!why && !(r->ops = word_mask(f[1], op_names, BIO_NR_OPS)))
		why = "operation must be read, write, flush or any";
	for (size_t i = 0; !why && i < G_N_ELEMENTS(errors); i++)
		if (!strcmp(f[2], errors[i].word))
			r->err = errors[i].err;
	if (!why && !r->err)
		why = "error must be eio, enospc or erofs";
	while (!why && (m = strtok_r(NULL, ":", &save)))
		why = parse_modifier(m, r);
	ret = why ? errf(err, errlen, -EINVAL, "fault rule '%s': %s", orig, why) : 0;
	g_free(orig);
	return ret;
}

/* Parse a whole spec into @rules; returns the count or -EINVAL. */
static int parse_spec(const char *spec, struct rule *rules, char *err, size_t errlen)
{
	char *copy = g_strdup(spec ? spec : ""), *save = NULL, *tok;
	int n = 0, ret = 0;

	/* '#' comments run to the end of the line */
	for (char *p = copy; (p = strchr(p, '#'));)
		while (*p && *p != '\n')
			*p++ = ' ';
	for (tok = strtok_r(copy, ",; \t\r\n", &save); tok;
	     tok = strtok_r(NULL, ",; \t\r\n", &save)) {
		struct rule r;

		if (n == MAX_RULES) {
			ret = errf(err, errlen, -EINVAL, "fault rule '%s': too many rules", tok);
			break;
		}
		if ((ret = parse_rule(tok, &r, err, errlen)))
			break;
		rules[n++] = r;
	}
	g_free(copy);
	return ret ? ret : n;
}

int bio_fault_parse(const char *spec, char *err, size_t errlen)
{
	struct rule *rules = g_new(struct rule, MAX_RULES);
	int n = parse_spec(spec, rules, err, errlen);

	g_free(rules);
	return n < 0 ? n : 0;
}

/* With faults.lock held. */
static void install(const struct rule *rules, int n)
{
	memcpy(faults.rules, rules, (size_t)n * sizeof(*rules));
	faults.nr = n;
	if (n || faults.file)
		__atomic_or_fetch(&bio_hooks, H_FAULTS, __ATOMIC_RELEASE);
	else
		__atomic_and_fetch(&bio_hooks, ~H_FAULTS, __ATOMIC_RELEASE);
}

int bio_fault_set(const char *spec, char *err, size_t errlen)
{
	struct rule *rules = g_new(struct rule, MAX_RULES);
	int n;

	pthread_once(&hooks_once, hooks_init);
	n = parse_spec(spec, rules, err, errlen);
	if (n >= 0) {
		pthread_mutex_lock(&faults.lock);
		install(rules, n);
		pthread_mutex_unlock(&faults.lock);
	}
	g_free(rules);
	return n < 0 ? n : 0;
}

void bio_fault_clear(void)
{
	bio_fault_set(NULL, NULL, 0);
}

uint64_t bio_fault_count(void)
{
	uint64_t n;

	pthread_mutex_lock(&faults.lock);
	n = faults.injected;
	pthread_mutex_unlock(&faults.lock);
	return n;
}

/* Re-read CLONEFS_FAULTS_FILE if it changed (faults.lock held). */
static void reload_file(void)
{
	struct stat st;
	bool exists = !stat(faults.file, &st);
	struct rule *rules;
	char *text = NULL, err[256];
	int n;

	if (exists == faults.file_seen &&
	    (!exists || (st.st_ino == faults.file_st.st_ino &&
			 st.st_dev == faults.file_st.st_dev &&
			 st.st_size == faults.file_st.st_size &&
			 st.st_mtim.tv_sec == faults.file_st.st_mtim.tv_sec &&
			 st.st_mtim.tv_nsec == faults.file_st.st_mtim.tv_nsec)))
		return;
	faults.file_seen = exists;
	if (exists)
		faults.file_st = st;
	rules = g_new(struct rule, MAX_RULES);
	if (exists && !g_file_get_contents(faults.file, &text, NULL, NULL))
		text = NULL;
	n = parse_spec(text, rules, err, sizeof(err));
	if (n < 0) {
		g_warning("blockio: %s: %s; no faults injected", faults.file, err);
		n = 0;
	}
	install(rules, n);
	g_message("blockio: %s: %d fault rule%s in force", faults.file, n,
		  n == 1 ? "" : "s");
	g_free(rules);
	g_free(text);
}

static double next_random(void)
{
	/* xorshift64*, good enough to spread faults; faults.lock held */
	uint64_t x = faults.rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	faults.rng = x;
	return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) / (double)(1ULL << 53);
}

/* 0, or the negative errno to inject for @op on @fd over [off, off + len). */
int bio_hook_fault(int fd, enum bio_op op, uint64_t off, uint64_t len)
{
	return bio_hook_fault_role(bio_role_of(fd), op, off, len);
}

/* The same for a file known by its role alone (an NBD SOURCE has no fd). */
int bio_hook_fault_role(int role, enum bio_op op, uint64_t off, uint64_t len)
{
	int err = 0, which = 0;
	uint64_t nth = 0, total = 0;

	if (role < 0 || !(__atomic_load_n(&bio_hooks, __ATOMIC_ACQUIRE) & H_FAULTS))
		return 0;
	pthread_mutex_lock(&faults.lock);
	if (faults.file)
		reload_file();
	for (int i = 0; i < faults.nr && !err; i++) {
		struct rule *r = &faults.rules[i];

		if (!(r->roles & 1u << role) || !(r->ops & 1u << op))
			continue;
		if (r->at_len && op != BIO_OP_FLUSH &&
		    !(off < r->at_off + r->at_len && r->at_off < off + len))
			continue;
		nth = ++r->seen;
		if (nth <= r->after || r->fired >= r->count)
			continue;
		if (r->prob < 1.0 && next_random() >= r->prob)
			continue;
		r->fired++;
		total = ++faults.injected;
		err = r->err;
		which = i + 1;
	}
	pthread_mutex_unlock(&faults.lock);
	/* every fault of the first LOG_FAULTS, then one line per LOG_EVERY */
	if (err && (total <= LOG_FAULTS || total % LOG_EVERY == 0))
		g_message("blockio: fault injected #%" G_GUINT64_FORMAT ": %s on %s %s at %"
			  G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT " (rule %d, match %"
			  G_GUINT64_FORMAT ")", total, g_strerror(err), role_names[role],
			  op_names[op], off, len, which, nth);
	return -err;
}

/* ---- recording ---- */

/* Write all of @iov to the log (wlog.lock held); false on failure. */
static bool log_writev(struct iovec *iov, int n)
{
	while (n > 0) {
		ssize_t done = writev(wlog.fd, iov, n);

		if (done < 0 && errno == EINTR)
			continue;
		if (done <= 0)
			return false;
		while (n > 0 && (size_t)done >= iov->iov_len) {
			done -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + done;
			iov->iov_len -= (size_t)done;
		}
	}
	return true;
}

void bio_hook_log(int type, int role, uint64_t a, uint64_t b,
		  const void *data, size_t len)
{
	struct wlog_rec h = {
		.magic = GUINT32_TO_LE(WLOG_MAGIC),
		.type = (uint8_t)type,
		.role = (uint8_t)role,
		.pid = GUINT32_TO_LE((uint32_t)getpid()),
		.a = GUINT64_TO_LE(a),
		.b = GUINT64_TO_LE(b),
	};
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)data, len } };
	struct timespec ts;

	pthread_mutex_lock(&wlog.lock);
	if (wlog.fd < 0)
		goto out;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	h.seq = GUINT64_TO_LE(wlog.seq++);
	h.time_ns = GUINT64_TO_LE((uint64_t)ts.tv_sec * 1000000000u +
				  (uint64_t)ts.tv_nsec);
	if (!log_writev(iov, len ? 2 : 1)) {
		/* A log with a hole would mislead the replay: stop, loudly. */
		g_critical("blockio: cannot append to the write log: %s; recording "
			   "stopped", g_strerror(errno));
		close(wlog.fd);
		wlog.fd = -1;
		__atomic_and_fetch(&bio_hooks, ~H_LOG, __ATOMIC_RELEASE);
	}
out:
	pthread_mutex_unlock(&wlog.lock);
}

/* The log's size now: every record before it has completed. */
uint64_t bio_hook_log_position(void)
{
	struct stat st;
	uint64_t pos = 0;

	pthread_mutex_lock(&wlog.lock);
	if (wlog.fd >= 0 && !fstat(wlog.fd, &st))
		pos = (uint64_t)st.st_size;
	pthread_mutex_unlock(&wlog.lock);
	return pos;
}

void bio_log_mark(const char *text)
{
	if (bio_hooked() && bio_hook_logging())
		bio_hook_log(BIO_REC_MARK, 255, 0, strlen(text), text, strlen(text));
}

bool bio_logging(void)
{
	return bio_hooked() && bio_hook_logging();
}

static void open_log(const char *path)
{
	static const uint8_t head[16] = { 'C', 'F', 'S', 'W', 'L', 'O', 'G', '1',
					  1, 0, 0, 0, WLOG_HDR, 0, 0, 0 };
	struct stat st;
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

	if (fd < 0 || fstat(fd, &st) ||
	    (st.st_size == 0 && write(fd, head, sizeof(head)) != sizeof(head))) {
		fprintf(stderr, "clonefs: CLONEFS_WRITELOG %s: %s\n", path,
			g_strerror(errno));
		_exit(2);
	}
	wlog.fd = fd;
}

static void hooks_init(void)
{
	const char *spec = getenv("CLONEFS_FAULTS");
	const char *file = getenv("CLONEFS_FAULTS_FILE");
	const char *seed = getenv("CLONEFS_FAULT_SEED");
	const char *logpath = getenv("CLONEFS_WRITELOG");
	unsigned h = H_READY;
	char err[256];

	if (seed && *seed)
		faults.rng = g_str_hash(seed) * 0x9E3779B97F4A7C15ULL ^ strtoull(seed, NULL, 0);
	if (!faults.rng)
		faults.rng = 1;
	if (file && *file) {
		faults.file = g_strdup(file);
		h |= H_FAULTS;
	} else if (spec && *spec) {
		int n = parse_spec(spec, faults.rules, err, sizeof(err));

		if (n < 0) {
			fprintf(stderr, "clonefs: CLONEFS_FAULTS: %s\n", err);
			_exit(2);
		}
		faults.nr = n;
		if (n)
			h |= H_FAULTS;
	}
	if (logpath && *logpath) {
		open_log(logpath);
		h |= H_LOG;
	}
	__atomic_store_n(&bio_hooks, h, __ATOMIC_RELEASE);
}

