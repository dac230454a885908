/*
 * profile.c - access profiles: their file format (docs/profile.md), merging,
 * and the recorder a running clone feeds with every read and write.
 */
#include "clonefs/profile.h"
#include "clonefs/errf.h"
#include "clonefs/format.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* SHA-256 as META's blocks have it (md_block.c says why not EVP). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

void profile_clear(struct profile *p)
{
	g_free(p->runs);
	memset(p, 0, sizeof(*p));
}

_Static_assert(sizeof(struct profile_header_disk) == PROFILE_HEADER_SIZE, "header");
_Static_assert(sizeof(struct profile_run_disk) == PROFILE_RUN_SIZE, "run");

static void csum(const uint8_t *b, size_t len, uint8_t out[PROFILE_CSUM_SIZE])
{
	SHA256_CTX ctx;

	SHA256_Init(&ctx);
	SHA256_Update(&ctx, b, len);
	SHA256_Final(out, &ctx);
}

void *profile_encode(const struct profile *p, size_t *len)
{
	size_t body = PROFILE_HEADER_SIZE + p->nr_runs * PROFILE_RUN_SIZE;
	uint8_t *b = g_malloc0(body + PROFILE_CSUM_SIZE);
	struct profile_header_disk *h = (void *)b;
	struct profile_run_disk *run = (void *)(h + 1);

	memcpy(h->magic, PROFILE_MAGIC, sizeof(h->magic));
	h->version = cpu_to_le32(PROFILE_VERSION);
	h->header_size = cpu_to_le32(PROFILE_HEADER_SIZE);
	h->region_size = cpu_to_le32(p->region_size);
	h->nr_regions = cpu_to_le64(p->nr_regions);
	h->image_size = cpu_to_le64(p->image_size);
	h->nr_runs = cpu_to_le64(p->nr_runs);
	h->total = cpu_to_le64(p->total);
	for (uint64_t i = 0; i < p->nr_runs; i++) {
		run[i].first = cpu_to_le64(p->runs[i].first);
		run[i].n = cpu_to_le64(p->runs[i].n);
	}
	csum(b, body, b + body);
	*len = body + PROFILE_CSUM_SIZE;
	return b;
}

static int cmp_first(const void *x, const void *y)
{
	const struct profile_run *a = x, *b = y;

	return a->first < b->first ? -1 : a->first > b->first;
}

/* The runs of @p sorted by region (g_malloc'd); NULL if two overlap (or
 * there are none). */
static struct profile_run *sorted_runs(const struct profile *p)
{
	struct profile_run *s;

	if (!p->nr_runs)
		return NULL;
	s = g_memdup2(p->runs, p->nr_runs * sizeof(*s));
	qsort(s, p->nr_runs, sizeof(*s), cmp_first);
	for (uint64_t i = 1; i < p->nr_runs; i++)
		if (s[i].first < s[i - 1].first + s[i - 1].n) {
			g_free(s);
			return NULL;
		}
	return s;
}

/* The runs after a checked header: inside the geometry, none twice. */
static int decode_runs(const struct profile_run_disk *run, struct profile *p,
		       char *err, size_t errlen)
{
	struct profile_run *s;
	uint64_t total = 0;

	p->runs = g_new(struct profile_run, p->nr_runs ? p->nr_runs : 1);
	for (uint64_t i = 0; i < p->nr_runs; i++) {
		struct profile_run *r = &p->runs[i];

		r->first = le64_to_cpu(run[i].first);
		r->n = le64_to_cpu(run[i].n);
		if (!r->n || r->first >= p->nr_regions || r->n > p->nr_regions - r->first)
			return errf(err, errlen, -EINVAL, "run %" G_GUINT64_FORMAT
				    " (regions %" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT
				    ") lies outside the image's %" G_GUINT64_FORMAT
				    " regions", i, r->first, r->n, p->nr_regions);
		total += r->n;
	}
	if (total != p->total)
		return errf(err, errlen, -EINVAL, "runs hold %" G_GUINT64_FORMAT
			    " regions, the header says %" G_GUINT64_FORMAT, total,
			    p->total);
	s = sorted_runs(p);
	if (!s && p->nr_runs)
		return errf(err, errlen, -EINVAL, "a region is named twice");
	g_free(s);
	return 0;
}

int profile_decode(const void *buf, size_t len, struct profile *p, char *err,
		   size_t errlen)
{
	const uint8_t *b = buf;
	const struct profile_header_disk *h = buf;
	uint8_t sum[PROFILE_CSUM_SIZE];
	int ret;

	memset(p, 0, sizeof(*p));
	if (len < PROFILE_HEADER_SIZE + PROFILE_CSUM_SIZE ||
	    memcmp(h->magic, PROFILE_MAGIC, sizeof(h->magic)))
		return errf(err, errlen, -EINVAL, "not a clonefs profile (bad magic)");
	if (le32_to_cpu(h->version) != PROFILE_VERSION)
		return errf(err, errlen, -EINVAL, "profile version %u, this clonefs "
			    "reads version %u", le32_to_cpu(h->version), PROFILE_VERSION);
	p->nr_runs = le64_to_cpu(h->nr_runs);
	if (le32_to_cpu(h->header_size) != PROFILE_HEADER_SIZE ||
	    p->nr_runs > PROFILE_MAX_RUNS ||
	    len != PROFILE_HEADER_SIZE + p->nr_runs * PROFILE_RUN_SIZE + PROFILE_CSUM_SIZE) {
		p->nr_runs = 0;
		return errf(err, errlen, -EINVAL, "truncated or corrupt profile "
			    "(%zu bytes do not match its header)", len);
	}
	csum(b, len - PROFILE_CSUM_SIZE, sum);
	if (memcmp(sum, b + len - PROFILE_CSUM_SIZE, PROFILE_CSUM_SIZE)) {
		p->nr_runs = 0;
		return errf(err, errlen, -EINVAL, "corrupt profile (bad checksum)");
	}
	p->region_size = le32_to_cpu(h->region_size);
	p->nr_regions = le64_to_cpu(h->nr_regions);
	p->image_size = le64_to_cpu(h->image_size);
	p->total = le64_to_cpu(h->total);
	ret = decode_runs((const void *)(h + 1), p, err, errlen);
	if (ret)
		profile_clear(p);
	return ret;
}

int profile_load(const char *path, struct profile *p, char *err, size_t errlen)
{
	gchar *data = NULL;
	gsize len;
	GError *gerr = NULL;
	char why[256];
	int ret;

	memset(p, 0, sizeof(*p));
	if (!g_file_get_contents(path, &data, &len, &gerr)) {
		ret = gerr->domain == G_FILE_ERROR && gerr->code == G_FILE_ERROR_NOENT ?
		      -ENOENT : -EIO;
		errf(err, errlen, ret, "profile %s: %s", path, gerr->message);
		g_error_free(gerr);
		return ret;
	}
	ret = len > PROFILE_MAX_SIZE ?
	      errf(why, sizeof(why), -EINVAL, "too big for a clonefs profile") :
	      profile_decode(data, len, p, why, sizeof(why));
	if (ret)
		errf(err, errlen, ret, "profile %s: %s", path, why);
	g_free(data);
	return ret;
}

int profile_save(const char *path, const struct profile *p, char *err,
		 size_t errlen)
{
	size_t len;
	void *b = profile_encode(p, &len);
	GError *gerr = NULL;
	int ret = 0;

	/* g_file_set_contents: a temporary file, fsync, rename */
	if (!g_file_set_contents(path, b, (gssize)len, &gerr)) {
		ret = errf(err, errlen, -EIO, "cannot write %s: %s", path, gerr->message);
		g_error_free(gerr);
	}
	g_free(b);
	return ret;
}

int profile_check_geometry(const struct profile *p, uint32_t region_size,
			   uint64_t nr_regions, uint64_t image_size, char *err,
			   size_t errlen)
{
	if (p->region_size == region_size && p->nr_regions == nr_regions &&
	    p->image_size == image_size)
		return 0;
	return errf(err, errlen, -EINVAL, "recorded for another geometry: %"
		    G_GUINT64_FORMAT " bytes in %" G_GUINT64_FORMAT " regions of %u, "
		    "this image is %" G_GUINT64_FORMAT " bytes in %" G_GUINT64_FORMAT
		    " regions of %u", p->image_size, p->nr_regions, p->region_size,
		    image_size, nr_regions, region_size);
}

/* Append [first, first + n) to @out, joining it to the last run if they touch. */
static void append_run(GArray *out, uint64_t first, uint64_t n)
{
	struct profile_run *last = out->len ?
		&g_array_index(out, struct profile_run, out->len - 1) : NULL;
	struct profile_run r = { first, n };

	if (last && last->first + last->n == first)
		last->n += n;
	else
		g_array_append_val(out, r);
}

/* The parts of @r that sorted, disjoint @s (@ns runs) does not hold. */
static void append_difference(GArray *out, const struct profile_run *s, uint64_t ns,
			      struct profile_run r)
{
	uint64_t lo = 0, hi = ns, pos = r.first, end = r.first + r.n;

	while (lo < hi) { /* the first run of @s that ends after pos */
		uint64_t mid = lo + (hi - lo) / 2;

		if (s[mid].first + s[mid].n <= pos)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (uint64_t i = lo; i < ns && s[i].first < end && pos < end; i++) {
		if (s[i].first > pos)
			append_run(out, pos, s[i].first - pos);
		pos = MAX(pos, s[i].first + s[i].n);
	}
	if (pos < end)
		append_run(out, pos, end - pos);
}

int profile_merge(const struct profile *a, const struct profile *b,
		  struct profile *out, char *err, size_t errlen)
{
	GArray *runs = g_array_new(FALSE, FALSE, sizeof(struct profile_run));
	struct profile_run *sa;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = profile_check_geometry(b, a->region_size, a->nr_regions,
				     a->image_size, err, errlen);
	if (ret) {
		g_array_free(runs, TRUE);
		return ret;
	}
	sa = sorted_runs(a);
	if (!sa && a->nr_runs) {
		g_array_free(runs, TRUE);
		return errf(err, errlen, -EINVAL, "a region is named twice");
	}
	for (uint64_t i = 0; i < a->nr_runs; i++)
		append_run(runs, a->runs[i].first, a->runs[i].n);
	for (uint64_t i = 0; i < b->nr_runs; i++)
		append_difference(runs, sa, a->nr_runs, b->runs[i]);
	g_free(sa);
	if (runs->len > PROFILE_MAX_RUNS) {
		g_array_free(runs, TRUE);
		return errf(err, errlen, -EMSGSIZE, "the merged profile would have "
			    "%u runs, more than %u", runs->len, PROFILE_MAX_RUNS);
	}
	out->region_size = a->region_size;
	out->nr_regions = a->nr_regions;
	out->image_size = a->image_size;
	out->nr_runs = runs->len;
	for (guint i = 0; i < runs->len; i++)
		out->total += g_array_index(runs, struct profile_run, i).n;
	out->runs = (struct profile_run *)(void *)g_array_free(runs, FALSE);
	return 0;
}

/* ---- the recorder ---- */

/* A leaf of the touched bitmap: 4 KiB, 32768 regions. */
#define LEAF_WORDS 512u
#define LEAF_BITS (LEAF_WORDS * 64u)

struct profile_rec {
	struct profile geo;       /* geometry; runs unused */
	uint64_t nr_leaves;
	uint64_t **leaf;          /* atomic pointers, allocated on first touch */
	bool full;                /* atomic: recording stopped */
	GMutex lock;              /* the runs */
	struct profile_run *runs; /* PROFILE_MAX_RUNS */
	uint64_t nr_runs, total;
};

struct profile_rec *profile_rec_new(uint32_t region_size, uint64_t nr_regions,
				    uint64_t image_size)
{
	struct profile_rec *r = g_new0(struct profile_rec, 1);

	r->geo.region_size = region_size;
	r->geo.nr_regions = nr_regions;
	r->geo.image_size = image_size;
	r->nr_leaves = (nr_regions + LEAF_BITS - 1) / LEAF_BITS;
	r->leaf = g_new0(uint64_t *, r->nr_leaves ? r->nr_leaves : 1);
	r->runs = g_new(struct profile_run, PROFILE_MAX_RUNS);
	g_mutex_init(&r->lock);
	return r;
}

void profile_rec_free(struct profile_rec *r)
{
	if (!r)
		return;
	for (uint64_t i = 0; i < r->nr_leaves; i++)
		g_free(r->leaf[i]);
	g_free(r->leaf);
	g_free(r->runs);
	g_mutex_clear(&r->lock);
	g_free(r);
}

/* The word holding @region's bit, its leaf allocated if need be. */
static uint64_t *touch_word(struct profile_rec *r, uint64_t region)
{
	uint64_t **slot = &r->leaf[region / LEAF_BITS];
	uint64_t *leaf = __atomic_load_n(slot, __ATOMIC_ACQUIRE);

	if (!leaf) {
		uint64_t *fresh = g_new0(uint64_t, LEAF_WORDS);

		if (__atomic_compare_exchange_n(slot, &leaf, fresh, false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			leaf = fresh;
		else
			g_free(fresh); /* another thread's won; leaf holds it */
	}
	return &leaf[region % LEAF_BITS / 64];
}

/* Set @region's bit; true if it was clear (the first touch). */
static bool first_touch(struct profile_rec *r, uint64_t region)
{
	uint64_t *w = touch_word(r, region), bit = 1ull << (region % 64);

	if (__atomic_load_n(w, __ATOMIC_RELAXED) & bit)
		return false;
	return !(__atomic_fetch_or(w, bit, __ATOMIC_RELAXED) & bit);
}

static void record_run(struct profile_rec *r, uint64_t first, uint64_t n)
{
	struct profile_run *last;

	g_mutex_lock(&r->lock);
	last = r->nr_runs ? &r->runs[r->nr_runs - 1] : NULL;
	if (last && last->first + last->n == first) {
		last->n += n;
		r->total += n;
	} else if (r->nr_runs < PROFILE_MAX_RUNS) {
		r->runs[r->nr_runs++] = (struct profile_run){ first, n };
		r->total += n;
	} else {
		__atomic_store_n(&r->full, true, __ATOMIC_RELAXED);
	}
	g_mutex_unlock(&r->lock);
}

void profile_rec_touch(struct profile_rec *r, uint64_t first, uint64_t n)
{
	uint64_t end, run = 0, run_n = 0;

	if (!r || __atomic_load_n(&r->full, __ATOMIC_RELAXED) ||
	    first >= r->geo.nr_regions)
		return;
	end = MIN(first + n, r->geo.nr_regions);
	for (uint64_t i = first; i < end; i++) {
		if (!first_touch(r, i))
			continue;
		if (run_n && run + run_n == i) {
			run_n++;
			continue;
		}
		if (run_n)
			record_run(r, run, run_n);
		run = i;
		run_n = 1;
	}
	if (run_n)
		record_run(r, run, run_n);
}

void profile_rec_get(struct profile_rec *r, struct profile *p)
{
	*p = r->geo;
	g_mutex_lock(&r->lock);
	p->nr_runs = r->nr_runs;
	p->total = r->total;
	p->runs = g_memdup2(r->runs, (r->nr_runs ? r->nr_runs : 1) * sizeof(*p->runs));
	g_mutex_unlock(&r->lock);
}

bool profile_rec_full(struct profile_rec *r)
{
	return __atomic_load_n(&r->full, __ATOMIC_RELAXED);
}
