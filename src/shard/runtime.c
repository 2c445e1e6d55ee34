/* runtime.c - shards: pinned event-loop threads, posts, wake-ups.
 * See runtime_int.h for the wake-up protocol. */
#include <errno.h>
#include <event2/event.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <xxhash.h>
#include "core/log.h"
#include "shard/runtime_int.h"

static _Thread_local sl__shard *tls_shard;

sl__shard *sl__shard_current(void)
{
	return tls_shard;
}

int sl_runtime_current_shard(const sl_runtime *rt)
{
	sl__shard *sh = tls_shard;
	return (sh && sh->rt == rt) ? (int)sh->idx : -1;
}

unsigned sl_shard_for_session(const char *session, size_t len, unsigned shards)
{
	if (!session || shards == 0)
		return 0;
	if (len == (size_t)-1)
		len = strlen(session);
	return (unsigned)(XXH64(session, len, 0) % shards);
}

unsigned sl_runtime_shards(const sl_runtime *rt)
{
	return rt ? rt->n : 0;
}

struct event_base *sl_runtime_base(sl_runtime *rt, unsigned i)
{
	return (rt && i < rt->n) ? rt->shards[i]->base : NULL;
}

static void run_posts(sl__shard *sh)
{
	sl_lnode *n = sl_list_take(&sh->posts);
	while (n) {
		sl_lnode *next = n->next;
		sl_post *p = (sl_post *)n;
		p->fn(p->arg); /* may free the node */
		n = next;
	}
}

/* The shard's work loop: posts, then every poller, until nothing raced in. */
static void shard_poll(sl__shard *sh)
{
	for (;;) {
		atomic_store_explicit(&sh->need_wake, 0, memory_order_relaxed);
		run_posts(sh);
		for (sl__poller *p = sh->pollers.next; p != &sh->pollers;) {
			sl__poller *next = p->next; /* poll may remove itself */
			p->poll(p);
			p = next;
		}
		atomic_store_explicit(&sh->need_wake, 1, memory_order_relaxed);
		atomic_thread_fence(memory_order_seq_cst);
		int more = !sl_list_empty(&sh->posts);
		for (sl__poller *p = sh->pollers.next; !more && p != &sh->pollers;
		     p = p->next)
			more = p->pending(p);
		if (!more)
			return;
	}
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	sl__shard *sh = arg;
	uint64_t v;
	ssize_t r = read(fd, &v, sizeof v);
	(void)r;
	shard_poll(sh);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
	sl__shard *sh = arg;
	sh->poll_scheduled = 0;
	shard_poll(sh);
}

void sl__shard_schedule(sl__shard *sh)
{
	if (!sh->poll_scheduled) {
		sh->poll_scheduled = 1;
		event_active(sh->poll_ev, EV_TIMEOUT, 0);
	}
}

void sl__shard_wake(sl__shard *sh)
{
	if (tls_shard == sh) {
		sl__shard_schedule(sh);
		return;
	}
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&sh->need_wake, memory_order_relaxed) &&
	    atomic_exchange_explicit(&sh->need_wake, 0, memory_order_relaxed)) {
		uint64_t one = 1;
		ssize_t w = write(sh->efd, &one, sizeof one);
		(void)w;
	}
}

void sl__shard_add_poller(sl__shard *sh, sl__poller *p)
{
	p->next = &sh->pollers;
	p->prev = sh->pollers.prev;
	sh->pollers.prev->next = p;
	sh->pollers.prev = p;
}

void sl__shard_remove_poller(sl__shard *sh, sl__poller *p)
{
	p->prev->next = p->next;
	p->next->prev = p->prev;
	p->next = p->prev = p;
}

int sl_runtime_post(sl_runtime *rt, unsigned i, sl_post *node)
{
	if (!rt || i >= rt->n || !node || !node->fn)
		return SL_EINVAL;
	sl__shard *sh = rt->shards[i];
	if (atomic_load_explicit(&sh->stopping, memory_order_acquire))
		return SL_ECLOSED;
	sl_list_push(&sh->posts, (sl_lnode *)node);
	sl__shard_wake(sh);
	return SL_OK;
}

typedef struct call_ctx {
	sl_post post;
	void (*fn)(void *);
	void *arg;
	pthread_mutex_t mx;
	pthread_cond_t cv;
	int done;
} call_ctx;

static void call_trampoline(void *arg)
{
	call_ctx *c = arg;
	c->fn(c->arg);
	pthread_mutex_lock(&c->mx);
	c->done = 1;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mx);
}

int sl__shard_call(sl_runtime *rt, unsigned i, void (*fn)(void *), void *arg)
{
	call_ctx c = {.fn = fn, .arg = arg, .done = 0};
	c.post.fn = call_trampoline;
	c.post.arg = &c;
	pthread_mutex_init(&c.mx, NULL);
	pthread_cond_init(&c.cv, NULL);
	int rc = sl_runtime_post(rt, i, &c.post);
	if (rc == SL_OK) {
		pthread_mutex_lock(&c.mx);
		while (!c.done)
			pthread_cond_wait(&c.cv, &c.mx);
		pthread_mutex_unlock(&c.mx);
	}
	pthread_mutex_destroy(&c.mx);
	pthread_cond_destroy(&c.cv);
	return rc;
}

static void *shard_main(void *arg)
{
	sl__shard *sh = arg;
	tls_shard = sh;
	if (sh->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(sh->cpu, &set);
		if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0)
			SL_LOG(SL_LOG_WARN, "event=pin_failed shard=%u cpu=%d", sh->idx, sh->cpu);
	}
	char name[16];
	snprintf(name, sizeof name, "sluice-shard%u", sh->idx);
	pthread_setname_np(pthread_self(), name);
	event_base_loop(sh->base, EVLOOP_NO_EXIT_ON_EMPTY);
	/* Run what was posted before the stop (it may be waited on). */
	run_posts(sh);
	tls_shard = NULL;
	return NULL;
}

static void stop_fn(void *arg)
{
	sl__shard *sh = arg;
	event_base_loopbreak(sh->base);
}

static void shard_free(sl__shard *sh)
{
	if (!sh)
		return;
	if (sh->wake_ev)
		event_free(sh->wake_ev);
	if (sh->poll_ev)
		event_free(sh->poll_ev);
	if (sh->base)
		event_base_free(sh->base);
	if (sh->efd >= 0)
		close(sh->efd);
	free(sh);
}

int sl_runtime_create(const sl_runtime_opts *opts, sl_runtime **out)
{
	if (!out)
		return SL_EINVAL;
	sl_runtime_opts o = {0};
	if (opts)
		o = *opts;
	if (o.shards > SL_MAX_SHARDS)
		return SL_EINVAL;

	cpu_set_t mask;
	int cpus[CPU_SETSIZE];
	int ncpu = 0;
	if (sched_getaffinity(0, sizeof mask, &mask) == 0) {
		for (int c = 0; c < CPU_SETSIZE; c++)
			if (CPU_ISSET(c, &mask))
				cpus[ncpu++] = c;
	}
	if (ncpu == 0) {
		cpus[0] = -1;
		ncpu = 1;
	}
	unsigned n = o.shards ? o.shards : (unsigned)ncpu;

	sl_runtime *rt = calloc(1, sizeof *rt);
	if (!rt)
		return SL_ENOMEM;
	rt->n = n;
	rt->no_pin = o.no_pin;
	atomic_init(&rt->stopping, 0);
	rt->shards = calloc(n, sizeof *rt->shards);
	if (!rt->shards) {
		free(rt);
		return SL_ENOMEM;
	}
	int rc = SL_OK;
	unsigned started = 0;
	for (unsigned i = 0; i < n; i++) {
		sl__shard *sh = calloc(1, sizeof *sh);
		if (!sh) {
			rc = SL_ENOMEM;
			break;
		}
		rt->shards[i] = sh;
		sh->rt = rt;
		sh->idx = i;
		sh->cpu = o.no_pin ? -1 : cpus[i % (unsigned)ncpu];
		sh->efd = -1;
		sh->pollers.next = sh->pollers.prev = &sh->pollers;
		atomic_init(&sh->need_wake, 1);
		atomic_init(&sh->stopping, 0);
		sl_list_init(&sh->posts);
		struct event_config *cfg = event_config_new();
		if (cfg) {
			/* One thread per base, never shared: no locks inside libevent. */
			event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
			sh->base = event_base_new_with_config(cfg);
			event_config_free(cfg);
		}
		sh->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (!sh->base || sh->efd < 0) {
			rc = SL_ESYS;
			break;
		}
		sh->wake_ev = event_new(sh->base, sh->efd, EV_READ | EV_PERSIST, on_wake, sh);
		sh->poll_ev = event_new(sh->base, -1, 0, on_poll, sh);
		if (!sh->wake_ev || !sh->poll_ev || event_add(sh->wake_ev, NULL) != 0) {
			rc = SL_ESYS;
			break;
		}
	}
	if (rc == SL_OK) {
		for (; started < n; started++) {
			if (pthread_create(&rt->shards[started]->th, NULL, shard_main,
			                   rt->shards[started]) != 0) {
				rc = SL_ESYS;
				break;
			}
		}
	}
	if (rc != SL_OK) {
		for (unsigned i = 0; i < started; i++) {
			/* A stack post is safe: we join right after. */
			sl_post stop = {.fn = stop_fn, .arg = rt->shards[i]};
			sl_list_push(&rt->shards[i]->posts, (sl_lnode *)&stop);
			sl__shard_wake(rt->shards[i]);
			pthread_join(rt->shards[i]->th, NULL);
		}
		for (unsigned i = 0; i < n; i++)
			shard_free(rt->shards[i]);
		free(rt->shards);
		free(rt);
		return rc;
	}
	SL_LOG(SL_LOG_DEBUG, "event=runtime_start shards=%u pinned=%d", n, !o.no_pin);
	*out = rt;
	return SL_OK;
}

void sl_runtime_destroy(sl_runtime *rt)
{
	if (!rt)
		return;
	atomic_store(&rt->stopping, 1);
	sl_post stops[SL_MAX_SHARDS];
	for (unsigned i = 0; i < rt->n; i++) {
		sl__shard *sh = rt->shards[i];
		stops[i].fn = stop_fn;
		stops[i].arg = sh;
		sl_list_push(&sh->posts, (sl_lnode *)&stops[i]);
		atomic_store_explicit(&sh->stopping, 1, memory_order_release);
		sl__shard_wake(sh);
	}
	for (unsigned i = 0; i < rt->n; i++) {
		pthread_join(rt->shards[i]->th, NULL);
		shard_free(rt->shards[i]);
	}
	free(rt->shards);
	free(rt);
}
