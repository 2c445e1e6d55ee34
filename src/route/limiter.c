/* limiter.c - adaptive concurrency limits and the EWMA; see limiter.h and
 * docs/internals/routing.md. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "route/limiter.h"

#define RLX memory_order_relaxed

/* AIMD's latency baseline: the minimum of the success samples of the
 * current and the previous period, so a baseline that rose (the backend got
 * slower for good) is learned within one to two periods. */
#define MIN_RTT_PERIOD_NS (30ull * 1000000000ull)
/* Gradient2 constants (Netflix concurrency-limits Gradient2Limit). */
#define GRAD_LONG_WINDOW 600.0  /* samples in the long (no-load) EWMA */
#define GRAD_WARMUP 10          /* plain average over the first samples */
#define GRAD_SHORT_WINDOW 10.0  /* samples in the short EWMA */
#define GRAD_SMOOTHING 0.2      /* weight of the new limit */

struct sl_limiter {
	sl_limiter_cfg cfg;
	/* hot: acquire reads both, release writes inflight */
	_Alignas(64) _Atomic uint32_t inflight;
	_Atomic uint32_t limit;      /* published limit; 0 = unlimited (FIXED) */
	/* AIMD baseline (lock-free; the period switch under mx, try-lock) */
	_Alignas(64) _Atomic uint64_t min_cur, min_prev, period_end;
	/* GRADIENT estimator, under mx (try-lock) */
	pthread_mutex_t mx;
	double est;                  /* the limit, before truncation */
	double long_rtt, short_rtt;  /* ns */
	uint64_t samples;
};

void sl_limiter_cfg_default(sl_limiter_cfg *c)
{
	memset(c, 0, sizeof *c);
	c->alg = SL_LIMIT_FIXED;
	c->min_limit = SL_LIMITER_DEFAULT_MIN;
	c->max_limit = SL_LIMITER_DEFAULT_MAX;
	c->initial_limit = SL_LIMITER_DEFAULT_INITIAL;
	c->latency_threshold_ms = 0;
	c->backoff_ratio = SL_LIMITER_DEFAULT_BACKOFF;
	c->tolerance = SL_LIMITER_DEFAULT_TOLERANCE;
}

int sl_limiter_create(const sl_limiter_cfg *cfg, sl_limiter **out)
{
	sl_limiter_cfg c;
	if (!out)
		return SL_EINVAL;
	if (cfg)
		c = *cfg;
	else
		sl_limiter_cfg_default(&c);
	uint32_t lim;
	switch (c.alg) {
	case SL_LIMIT_FIXED:
		lim = c.max_limit;
		break;
	case SL_LIMIT_AIMD:
	case SL_LIMIT_GRADIENT:
		if (c.min_limit == 0 || c.max_limit < c.min_limit)
			return SL_EINVAL;
		if (c.alg == SL_LIMIT_AIMD && !(c.backoff_ratio > 0 && c.backoff_ratio < 1))
			return SL_EINVAL;
		if (c.alg == SL_LIMIT_GRADIENT && !(c.tolerance >= 1 && isfinite(c.tolerance)))
			return SL_EINVAL;
		lim = c.initial_limit;
		if (lim < c.min_limit)
			lim = c.min_limit;
		if (lim > c.max_limit)
			lim = c.max_limit;
		break;
	default:
		return SL_EINVAL;
	}
	sl_limiter *l = aligned_alloc(64, (sizeof *l + 63) & ~(size_t)63);
	if (!l)
		return SL_ENOMEM;
	if (pthread_mutex_init(&l->mx, NULL) != 0) {
		free(l);
		return SL_ENOMEM;
	}
	l->cfg = c;
	atomic_init(&l->inflight, 0);
	atomic_init(&l->limit, lim);
	atomic_init(&l->min_cur, UINT64_MAX);
	atomic_init(&l->min_prev, UINT64_MAX);
	atomic_init(&l->period_end, 0);
	l->est = lim;
	l->long_rtt = l->short_rtt = 0;
	l->samples = 0;
	*out = l;
	return SL_OK;
}

void sl_limiter_destroy(sl_limiter *l)
{
	if (!l)
		return;
	pthread_mutex_destroy(&l->mx);
	free(l);
}

int sl_limiter_acquire(sl_limiter *l)
{
	uint32_t cur = atomic_load_explicit(&l->inflight, RLX);
	for (;;) {
		uint32_t lim = atomic_load_explicit(&l->limit, RLX);
		if (lim && cur >= lim)
			return 0;
		if (atomic_compare_exchange_weak_explicit(&l->inflight, &cur, cur + 1,
		                                          memory_order_acquire, RLX))
			return 1;
	}
}

/* ---- AIMD ---- */

/* Folds a success sample into the baseline; returns the baseline from
 * before it (UINT64_MAX when none yet). */
static uint64_t min_rtt_track(sl_limiter *l, uint64_t now, uint64_t rtt)
{
	uint64_t end = atomic_load_explicit(&l->period_end, RLX);
	if (now >= end && pthread_mutex_trylock(&l->mx) == 0) {
		end = atomic_load_explicit(&l->period_end, RLX);
		if (now >= end) {
			/* min_cur covers the period that ended at `end`; after an idle
			 * gap longer than a period it is too old to keep. */
			uint64_t last = now - end < MIN_RTT_PERIOD_NS ? atomic_load_explicit(&l->min_cur, RLX)
			                                              : UINT64_MAX;
			atomic_store_explicit(&l->min_prev, last, RLX);
			atomic_store_explicit(&l->min_cur, UINT64_MAX, RLX);
			atomic_store_explicit(&l->period_end, now + MIN_RTT_PERIOD_NS, RLX);
		}
		pthread_mutex_unlock(&l->mx);
	}
	uint64_t prev = atomic_load_explicit(&l->min_prev, RLX);
	uint64_t cur = atomic_load_explicit(&l->min_cur, RLX);
	uint64_t base = prev < cur ? prev : cur;
	while (rtt < cur &&
	       !atomic_compare_exchange_weak_explicit(&l->min_cur, &cur, rtt, RLX, RLX))
		;
	return base;
}

static void aimd_sample(sl_limiter *l, uint64_t now, uint64_t rtt, int drop, uint32_t inflight)
{
	if (!drop && rtt) {
		uint64_t thr;
		if (l->cfg.latency_threshold_ms) {
			thr = (uint64_t)l->cfg.latency_threshold_ms * 1000000u;
			min_rtt_track(l, now, rtt); /* kept current for the stats */
		} else {
			uint64_t base = min_rtt_track(l, now, rtt);
			/* twice the baseline, and at least 10 ms above it: jitter of a
			 * sub-millisecond backend must not read as overload */
			thr = base == UINT64_MAX ? UINT64_MAX : (base > UINT64_MAX / 2 ? UINT64_MAX : base * 2);
			if (thr != UINT64_MAX && thr < base + 10000000u)
				thr = base + 10000000u;
		}
		drop = rtt > thr;
	}
	uint32_t lim = atomic_load_explicit(&l->limit, RLX);
	for (;;) {
		uint32_t want;
		if (drop) {
			want = (uint32_t)((double)lim * l->cfg.backoff_ratio);
			if (want < l->cfg.min_limit)
				want = l->cfg.min_limit;
		} else {
			/* grow only while the backend is actually loaded (not app-limited) */
			if ((uint64_t)inflight * 2 < lim || lim >= l->cfg.max_limit)
				return;
			want = lim + 1;
		}
		if (want == lim)
			return;
		if (atomic_compare_exchange_weak_explicit(&l->limit, &lim, want, RLX, RLX))
			return;
	}
}

/* ---- GRADIENT (Gradient2) ---- */

static void gradient_sample(sl_limiter *l, uint64_t rtt_ns, int drop, uint32_t inflight)
{
	if (pthread_mutex_trylock(&l->mx) != 0)
		return; /* another thread is updating: this sample is skipped */
	double est = l->est;
	double gradient;
	if (!drop) {
		double rtt = (double)rtt_ns;
		if (rtt <= 0) {
			pthread_mutex_unlock(&l->mx);
			return;
		}
		l->samples++;
		if (l->samples <= GRAD_WARMUP)
			l->long_rtt += (rtt - l->long_rtt) / (double)l->samples;
		else
			l->long_rtt += (rtt - l->long_rtt) * (2.0 / (GRAD_LONG_WINDOW + 1.0));
		if (l->samples == 1)
			l->short_rtt = rtt;
		else
			l->short_rtt += (rtt - l->short_rtt) * (2.0 / (GRAD_SHORT_WINDOW + 1.0));
		/* Latency back to normal after a long overload: let the long
		 * average follow it down faster than its window would. */
		if (l->long_rtt > 2 * l->short_rtt)
			l->long_rtt *= 0.95;
		gradient = l->cfg.tolerance * l->long_rtt / l->short_rtt;
		if (gradient > 1.0)
			gradient = 1.0;
		if (gradient < 0.5)
			gradient = 0.5;
		/* Don't grow the limit while the backend is app-limited (few calls
		 * in flight say nothing about its capacity); a latency rise still
		 * cuts it, however few calls there are. */
		if (gradient >= 1.0 && (double)inflight < est / 2) {
			pthread_mutex_unlock(&l->mx);
			return;
		}
	} else {
		/* A drop (timeout, 429/503) carries no usable latency: take the
		 * steepest step Gradient2 allows. */
		gradient = 0.5;
	}
	double nl = est * gradient + sqrt(est);
	nl = est * (1.0 - GRAD_SMOOTHING) + nl * GRAD_SMOOTHING;
	if (nl < l->cfg.min_limit)
		nl = l->cfg.min_limit;
	if (nl > l->cfg.max_limit)
		nl = l->cfg.max_limit;
	l->est = nl;
	atomic_store_explicit(&l->limit, (uint32_t)nl, RLX);
	pthread_mutex_unlock(&l->mx);
}

void sl_limiter_release(sl_limiter *l, uint64_t now_ns, uint64_t latency_ns, sl_limit_outcome o)
{
	uint32_t before = atomic_fetch_sub_explicit(&l->inflight, 1, memory_order_release);
	if (before == 0) { /* unbalanced release: a caller bug; undo */
		atomic_fetch_add_explicit(&l->inflight, 1, RLX);
		return;
	}
	if (o == SL_LIMIT_IGNORE)
		return;
	switch (l->cfg.alg) {
	case SL_LIMIT_AIMD:
		aimd_sample(l, now_ns, latency_ns, o == SL_LIMIT_DROPPED, before);
		break;
	case SL_LIMIT_GRADIENT:
		gradient_sample(l, latency_ns, o == SL_LIMIT_DROPPED, before);
		break;
	default:
		break;
	}
}

uint32_t sl_limiter_limit(const sl_limiter *l)
{
	return atomic_load_explicit(&l->limit, RLX);
}

uint32_t sl_limiter_inflight(const sl_limiter *l)
{
	return atomic_load_explicit(&l->inflight, RLX);
}

static const char *const alg_names[] = {"fixed", "aimd", "gradient"};

const char *sl_limit_alg_name(sl_limit_alg a)
{
	return (unsigned)a < 3 ? alg_names[a] : NULL;
}

int sl_limit_alg_parse(const char *name, sl_limit_alg *out)
{
	if (!name || !out)
		return SL_EINVAL;
	for (unsigned i = 0; i < 3; i++)
		if (strcmp(name, alg_names[i]) == 0) {
			*out = (sl_limit_alg)i;
			return SL_OK;
		}
	return SL_EINVAL;
}

/* ---- EWMA ---- */

static inline uint64_t d2u(double d)
{
	uint64_t u;
	memcpy(&u, &d, sizeof u);
	return u;
}

static inline double u2d(uint64_t u)
{
	double d;
	memcpy(&d, &u, sizeof d);
	return d;
}

void sl_ewma_init(sl_ewma *e, double alpha)
{
	atomic_init(&e->bits, 0); /* the bits of +0.0 */
	e->alpha = alpha;
}

void sl_ewma_update(sl_ewma *e, double sample)
{
	uint64_t b = atomic_load_explicit(&e->bits, RLX);
	double v = b ? u2d(b) + e->alpha * (sample - u2d(b)) : sample;
	atomic_store_explicit(&e->bits, d2u(v), RLX);
}

double sl_ewma_get(const sl_ewma *e)
{
	return u2d(atomic_load_explicit(&e->bits, RLX));
}
