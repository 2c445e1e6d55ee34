/* budget.c - sliding window, retry budget, backoff, PRNG; see budget.h. */
#include <math.h>
#include <stdlib.h>
#include "route/budget.h"

#define RLX memory_order_relaxed

/* ---------------------------------------------------------------- window */

void sl__win_init(sl__win *w, uint32_t window_ms, pthread_mutex_t *mx)
{
	uint64_t width = (uint64_t)window_ms * 1000000u / SL__WIN_BUCKETS;
	w->width_ns = width ? width : 1;
	w->mx = mx;
	for (unsigned i = 0; i < SL__WIN_BUCKETS; i++) {
		atomic_init(&w->b[i].tag, 0);
		atomic_init(&w->b[i].n[0], 0);
		atomic_init(&w->b[i].n[1], 0);
	}
}

sl__win_bucket *sl__win_slot(sl__win *w, uint64_t now)
{
	uint64_t tag = now / w->width_ns + 1;
	sl__win_bucket *bk = &w->b[tag % SL__WIN_BUCKETS];
	uint64_t t = atomic_load_explicit(&bk->tag, memory_order_acquire);
	if (t == tag)
		return bk;
	if (t > tag)
		return NULL; /* now is a whole window behind the bucket's period */
	pthread_mutex_lock(w->mx);
	t = atomic_load_explicit(&bk->tag, RLX);
	if (t < tag) {
		atomic_store_explicit(&bk->n[0], 0, RLX);
		atomic_store_explicit(&bk->n[1], 0, RLX);
		/* release: whoever sees the new tag sees the cleared counters */
		atomic_store_explicit(&bk->tag, tag, memory_order_release);
	}
	pthread_mutex_unlock(w->mx);
	return t > tag ? NULL : bk;
}

void sl__win_add(sl__win *w, uint64_t now, unsigned k, uint64_t v)
{
	sl__win_bucket *bk = sl__win_slot(w, now);
	if (bk)
		atomic_fetch_add_explicit(&bk->n[k], v, RLX);
}

void sl__win_sum(const sl__win *w, uint64_t now, const sl__win_bucket *skip, uint64_t out[2])
{
	uint64_t tag = now / w->width_ns + 1;
	out[0] = out[1] = 0;
	for (unsigned i = 0; i < SL__WIN_BUCKETS; i++) {
		const sl__win_bucket *bk = &w->b[i];
		if (bk == skip)
			continue;
		uint64_t t = atomic_load_explicit(&bk->tag, memory_order_acquire);
		if (t == 0 || t > tag || tag - t >= SL__WIN_BUCKETS)
			continue;
		out[0] += atomic_load_explicit(&bk->n[0], RLX);
		out[1] += atomic_load_explicit(&bk->n[1], RLX);
	}
}

void sl__win_clear(sl__win *w)
{
	for (unsigned i = 0; i < SL__WIN_BUCKETS; i++) {
		atomic_store_explicit(&w->b[i].n[0], 0, RLX);
		atomic_store_explicit(&w->b[i].n[1], 0, RLX);
	}
}

/* ---------------------------------------------------------------- budget */

struct sl_retry_budget {
	sl_retry_budget_cfg cfg;
	double floor;                /* min_per_s * window_s: retries always allowed */
	pthread_mutex_t mx;          /* window rotation only */
	sl__win win;                 /* n[0] first attempts, n[1] retries */
	_Alignas(64) _Atomic uint64_t requests;
	_Atomic uint64_t retries;
	_Atomic uint64_t exhausted;
};

void sl_retry_budget_cfg_default(sl_retry_budget_cfg *c)
{
	c->ratio = SL_RETRY_BUDGET_DEFAULT_RATIO;
	c->min_per_s = SL_RETRY_BUDGET_DEFAULT_MIN_PER_S;
	c->window_ms = SL_RETRY_BUDGET_DEFAULT_WINDOW_MS;
}

int sl_retry_budget_create(const sl_retry_budget_cfg *cfg, sl_retry_budget **out)
{
	sl_retry_budget_cfg c;
	if (!out)
		return SL_EINVAL;
	if (cfg)
		c = *cfg;
	else
		sl_retry_budget_cfg_default(&c);
	if (!(c.ratio >= 0) || !isfinite(c.ratio) || c.window_ms == 0)
		return SL_EINVAL;
	sl_retry_budget *b = aligned_alloc(64, (sizeof *b + 63) & ~(size_t)63);
	if (!b)
		return SL_ENOMEM;
	b->cfg = c;
	b->floor = (double)c.min_per_s * (double)c.window_ms / 1000.0;
	if (pthread_mutex_init(&b->mx, NULL) != 0) {
		free(b);
		return SL_ENOMEM;
	}
	sl__win_init(&b->win, c.window_ms, &b->mx);
	atomic_init(&b->requests, 0);
	atomic_init(&b->retries, 0);
	atomic_init(&b->exhausted, 0);
	*out = b;
	return SL_OK;
}

void sl_retry_budget_destroy(sl_retry_budget *b)
{
	if (!b)
		return;
	pthread_mutex_destroy(&b->mx);
	free(b);
}

void sl_retry_budget_on_request(sl_retry_budget *b, uint64_t now_ns)
{
	sl__win_add(&b->win, now_ns, 0, 1);
	atomic_fetch_add_explicit(&b->requests, 1, RLX);
}

int sl_retry_budget_try(sl_retry_budget *b, uint64_t now_ns)
{
	sl__win_bucket *cur = sl__win_slot(&b->win, now_ns);
	if (cur) {
		uint64_t mine = atomic_load_explicit(&cur->n[1], RLX);
		for (;;) {
			uint64_t s[2];
			sl__win_sum(&b->win, now_ns, cur, s);
			uint64_t req = s[0] + atomic_load_explicit(&cur->n[0], RLX);
			uint64_t ret = s[1] + mine;
			if ((double)ret >= b->floor + b->cfg.ratio * (double)req)
				break;
			/* Counted only if nobody counted a retry in this bucket since
			 * `mine` was read, so concurrent callers cannot overshoot. */
			if (atomic_compare_exchange_weak_explicit(&cur->n[1], &mine, mine + 1, RLX, RLX)) {
				atomic_fetch_add_explicit(&b->retries, 1, RLX);
				return 1;
			}
		}
	}
	atomic_fetch_add_explicit(&b->exhausted, 1, RLX);
	return 0;
}

void sl_retry_budget_stats_get(const sl_retry_budget *b, sl_retry_budget_stats *st)
{
	st->requests = atomic_load_explicit(&b->requests, RLX);
	st->retries = atomic_load_explicit(&b->retries, RLX);
	st->exhausted = atomic_load_explicit(&b->exhausted, RLX);
}

void sl_retry_budget_window(const sl_retry_budget *b, uint64_t now_ns, uint64_t *requests,
                            uint64_t *retries)
{
	uint64_t s[2];
	sl__win_sum(&b->win, now_ns, NULL, s);
	if (requests)
		*requests = s[0];
	if (retries)
		*retries = s[1];
}

/* ------------------------------------------------------- backoff, PRNG */

uint64_t sl_rand64(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

double sl_rand01(uint64_t *state)
{
	return (double)(sl_rand64(state) >> 11) * 0x1.0p-53;
}

uint64_t sl_rand_below(uint64_t *state, uint64_t n)
{
	uint64_t r = sl_rand64(state);
#ifdef __SIZEOF_INT128__
	return (uint64_t)(((unsigned __int128)r * n) >> 64);
#else
	return n ? r % n : 0;
#endif
}

uint64_t sl_backoff_ms(uint32_t base_ms, uint32_t cap_ms, unsigned attempt, uint64_t *rng)
{
	uint64_t top = cap_ms;
	if (attempt < 32) {
		uint64_t v = (uint64_t)base_ms << attempt; /* < 2^64: base < 2^32 */
		if (v < top)
			top = v;
	}
	if (top == 0)
		return 0;
	return sl_rand_below(rng, top + 1);
}
