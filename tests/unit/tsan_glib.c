/*
 * tsan_glib.c - glib's locks, conditions and thread pool on pthreads, for
 * the ThreadSanitizer builds of the unit tests (tests/unit/ *-tsan).
 *
 * On Linux glib implements GMutex and GCond with raw futex calls, and its
 * library is not instrumented, so TSan sees neither a lock nor a wait, and
 * every access under a g_mutex_lock() looks like a race (a first run of
 * test_clone-tsan without this file: 164 reports, none real). Nor does it
 * see a GThreadPool hand a task to a worker, which goes through glib's
 * internal GAsyncQueue. Defining the same functions in the test binary
 * interposes them for the code under test (libclonefs-tsan is linked into
 * it): the synchronization becomes pthread calls that TSan intercepts.
 * glib's own internal calls still use its futexes, but they never share a
 * GMutex with clonefs.
 *
 * GMutex and GCond are two words: the first holds a pthread object,
 * allocated on first use (a zeroed static GMutex is valid in glib).
 * GThreadPool: only what clonefs uses (new, push, free), with
 * exclusive = FALSE semantics: a fixed set of threads started on demand.
 */
#include <errno.h>
#include <glib.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

static void *lazy(gpointer *slot, bool cond)
{
	void *p = __atomic_load_n(slot, __ATOMIC_ACQUIRE), *expected = NULL;

	if (p)
		return p;
	if (cond) {
		pthread_condattr_t a;

		p = malloc(sizeof(pthread_cond_t));
		pthread_condattr_init(&a);
		/* g_cond_wait_until() takes g_get_monotonic_time() */
		pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
		pthread_cond_init(p, &a);
		pthread_condattr_destroy(&a);
	} else {
		p = malloc(sizeof(pthread_mutex_t));
		pthread_mutex_init(p, NULL);
	}
	if (__atomic_compare_exchange_n(slot, &expected, p, false, __ATOMIC_ACQ_REL,
					__ATOMIC_ACQUIRE))
		return p;
	if (cond)
		pthread_cond_destroy(p);
	else
		pthread_mutex_destroy(p);
	free(p);
	return expected;
}

#define MTX(m) ((pthread_mutex_t *)lazy(&(m)->p, false))
#define CND(c) ((pthread_cond_t *)lazy(&(c)->p, true))

void g_mutex_init(GMutex *m) { m->p = NULL; }
void g_mutex_lock(GMutex *m) { pthread_mutex_lock(MTX(m)); }
void g_mutex_unlock(GMutex *m) { pthread_mutex_unlock(MTX(m)); }
gboolean g_mutex_trylock(GMutex *m) { return pthread_mutex_trylock(MTX(m)) == 0; }

void g_mutex_clear(GMutex *m)
{
	if (m->p) {
		pthread_mutex_destroy(m->p);
		free(m->p);
	}
	m->p = NULL;
}

void g_cond_init(GCond *c) { c->p = NULL; }
void g_cond_wait(GCond *c, GMutex *m) { pthread_cond_wait(CND(c), MTX(m)); }
void g_cond_signal(GCond *c) { pthread_cond_signal(CND(c)); }
void g_cond_broadcast(GCond *c) { pthread_cond_broadcast(CND(c)); }

gboolean g_cond_wait_until(GCond *c, GMutex *m, gint64 end_time)
{
	struct timespec ts = { .tv_sec = end_time / G_USEC_PER_SEC,
			       .tv_nsec = end_time % G_USEC_PER_SEC * 1000 };

	return pthread_cond_timedwait(CND(c), MTX(m), &ts) != ETIMEDOUT;
}

void g_cond_clear(GCond *c)
{
	if (c->p) {
		pthread_cond_destroy(c->p);
		free(c->p);
	}
	c->p = NULL;
}

/* ---- GThreadPool ---- */

struct pool {
	GThreadPool pub; /* func, user_data, exclusive: glib's public part */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	GQueue tasks;
	pthread_t *threads;
	int nr_threads, max_threads, idle;
	bool stopping;
};

static void *pool_thread(void *arg)
{
	struct pool *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		gpointer task;

		while (g_queue_is_empty(&p->tasks) && !p->stopping) {
			p->idle++;
			pthread_cond_wait(&p->cond, &p->lock);
			p->idle--;
		}
		if (g_queue_is_empty(&p->tasks))
			break;
		task = g_queue_pop_head(&p->tasks);
		pthread_mutex_unlock(&p->lock);
		p->pub.func(task, p->pub.user_data);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

GThreadPool *g_thread_pool_new(GFunc func, gpointer user_data, gint max_threads,
			       gboolean exclusive, GError **error)
{
	struct pool *p = calloc(1, sizeof(*p));

	(void)error;
	p->pub.func = func;
	p->pub.user_data = user_data;
	p->pub.exclusive = exclusive;
	p->max_threads = max_threads > 0 ? max_threads : 8;
	p->threads = calloc((size_t)p->max_threads, sizeof(pthread_t));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	g_queue_init(&p->tasks);
	return &p->pub;
}

gboolean g_thread_pool_push(GThreadPool *pool, gpointer data, GError **error)
{
	struct pool *p = (struct pool *)pool;

	(void)error;
	pthread_mutex_lock(&p->lock);
	g_queue_push_tail(&p->tasks, data);
	if (!p->idle && p->nr_threads < p->max_threads &&
	    !pthread_create(&p->threads[p->nr_threads], NULL, pool_thread, p))
		p->nr_threads++;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return TRUE;
}

/* Only (immediate = FALSE, wait = TRUE), what clonefs asks: run what is
 * queued, then join every thread. */
void g_thread_pool_free(GThreadPool *pool, gboolean immediate, gboolean wait)
{
	struct pool *p = (struct pool *)pool;

	if (immediate || !wait)
		g_error("tsan_glib: g_thread_pool_free(%d, %d) is not implemented",
			immediate, wait);
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < p->nr_threads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p->threads);
	free(p);
}
