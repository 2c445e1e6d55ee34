/* breaker.c - circuit breaker; see breaker.h and docs/internals/routing.md.
 *
 * The state and the end of the open period live in one atomic word,
 * (open_until_ns << 2) | state, so the hot path reads both with one load
 * and never sees a state with another transition's deadline.  Transitions
 * happen under mx, which also serialises half-open probe admission and the
 * window's bucket rotation; no other lock is ever taken while mx is held. */
#include <math.h>
#include <stdlib.h>
#include "route/breaker.h"
#include "route/budget.h" /* sl__win */

#define RLX memory_order_relaxed
#define ST_MASK 3u
#define UNTIL_MAX (((uint64_t)1 << 62) - 1)

struct sl_breaker {
	sl_breaker_cfg cfg;
	/* hot: read by every acquire/record */
	_Alignas(64) _Atomic uint64_t word;  /* (open_until << 2) | state */
	_Atomic uint32_t consec;             /* failures in a row (closed) */
	_Atomic uint32_t probes;             /* probe calls in flight */
	_Atomic uint32_t probe_ok;           /* probe successes in a row (written under mx) */
	_Atomic uint32_t cooldown_ms;        /* current open period (written under mx) */
	_Atomic uint64_t successes, failures;
	_Alignas(64) _Atomic uint64_t rejected;
	_Atomic uint64_t trips, to_half_open, to_closed;
	pthread_mutex_t mx;
	sl__win win;                         /* n[0] calls, n[1] failures (closed only) */
};

static inline uint64_t mkword(uint64_t until, sl_breaker_state s)
{
	return (until > UNTIL_MAX ? UNTIL_MAX : until) << 2 | (uint64_t)s;
}

void sl_breaker_cfg_default(sl_breaker_cfg *c)
{
	c->consecutive_failures = SL_BREAKER_DEFAULT_CONSECUTIVE;
	c->failure_ratio = SL_BREAKER_DEFAULT_RATIO;
	c->window_ms = SL_BREAKER_DEFAULT_WINDOW_MS;
	c->min_requests = SL_BREAKER_DEFAULT_MIN_REQUESTS;
	c->cooldown_ms = SL_BREAKER_DEFAULT_COOLDOWN_MS;
	c->max_cooldown_ms = SL_BREAKER_DEFAULT_MAX_COOLDOWN_MS;
	c->half_open_probes = SL_BREAKER_DEFAULT_PROBES;
	c->enabled = 1;
}

int sl_breaker_create(const sl_breaker_cfg *cfg, sl_breaker **out)
{
	sl_breaker_cfg c;
	if (!out)
		return SL_EINVAL;
	if (cfg)
		c = *cfg;
	else
		sl_breaker_cfg_default(&c);
	if (c.enabled) {
		if (!(c.failure_ratio >= 0 && c.failure_ratio <= 1))
			return SL_EINVAL;
		if (c.failure_ratio > 0 && c.window_ms == 0)
			return SL_EINVAL;
		if (c.half_open_probes == 0)
			return SL_EINVAL;
	}
	if (c.max_cooldown_ms < c.cooldown_ms)
		c.max_cooldown_ms = c.cooldown_ms;
	sl_breaker *b = aligned_alloc(64, (sizeof *b + 63) & ~(size_t)63);
	if (!b)
		return SL_ENOMEM;
	b->cfg = c;
	if (pthread_mutex_init(&b->mx, NULL) != 0) {
		free(b);
		return SL_ENOMEM;
	}
	atomic_init(&b->word, mkword(0, SL_BREAKER_CLOSED));
	atomic_init(&b->consec, 0);
	atomic_init(&b->probes, 0);
	atomic_init(&b->probe_ok, 0);
	atomic_init(&b->cooldown_ms, c.cooldown_ms);
	atomic_init(&b->successes, 0);
	atomic_init(&b->failures, 0);
	atomic_init(&b->rejected, 0);
	atomic_init(&b->trips, 0);
	atomic_init(&b->to_half_open, 0);
	atomic_init(&b->to_closed, 0);
	sl__win_init(&b->win, c.window_ms ? c.window_ms : 1, &b->mx);
	*out = b;
	return SL_OK;
}

void sl_breaker_destroy(sl_breaker *b)
{
	if (!b)
		return;
	pthread_mutex_destroy(&b->mx);
	free(b);
}

/* ---- transitions (mx held) ---- */

static void open_locked(sl_breaker *b, uint64_t now, uint32_t cool_ms)
{
	atomic_store_explicit(&b->cooldown_ms, cool_ms, RLX);
	atomic_store_explicit(&b->consec, 0, RLX);
	atomic_store_explicit(&b->probe_ok, 0, RLX);
	sl__win_clear(&b->win);
	atomic_store_explicit(&b->word, mkword(now + (uint64_t)cool_ms * 1000000u, SL_BREAKER_OPEN),
	                      memory_order_release);
	atomic_fetch_add_explicit(&b->trips, 1, RLX);
}

static void close_locked(sl_breaker *b)
{
	atomic_store_explicit(&b->cooldown_ms, b->cfg.cooldown_ms, RLX);
	atomic_store_explicit(&b->consec, 0, RLX);
	atomic_store_explicit(&b->probe_ok, 0, RLX);
	sl__win_clear(&b->win); /* start the window afresh: old failures must not re-trip */
	atomic_store_explicit(&b->word, mkword(0, SL_BREAKER_CLOSED), memory_order_release);
	atomic_fetch_add_explicit(&b->to_closed, 1, RLX);
}

/* ---- acquire ---- */

static int acquire_slow(sl_breaker *b, uint64_t now, int *probe)
{
	int ok = 0;
	pthread_mutex_lock(&b->mx);
	uint64_t w = atomic_load_explicit(&b->word, RLX);
	if ((w & ST_MASK) == SL_BREAKER_OPEN && now >= (w >> 2)) {
		atomic_store_explicit(&b->probe_ok, 0, RLX);
		atomic_store_explicit(&b->word, mkword(0, SL_BREAKER_HALF_OPEN), memory_order_release);
		atomic_fetch_add_explicit(&b->to_half_open, 1, RLX);
		w = mkword(0, SL_BREAKER_HALF_OPEN);
	}
	switch ((sl_breaker_state)(w & ST_MASK)) {
	case SL_BREAKER_CLOSED:
		*probe = 0;
		ok = 1;
		break;
	case SL_BREAKER_HALF_OPEN:
		if (atomic_load_explicit(&b->probes, RLX) < b->cfg.half_open_probes) {
			atomic_fetch_add_explicit(&b->probes, 1, RLX);
			*probe = 1;
			ok = 1;
		}
		break;
	default: /* open, within its cool-down */
		break;
	}
	pthread_mutex_unlock(&b->mx);
	if (!ok)
		atomic_fetch_add_explicit(&b->rejected, 1, RLX);
	return ok;
}

int sl_breaker_acquire(sl_breaker *b, uint64_t now_ns, int *probe)
{
	int dummy;
	if (!probe)
		probe = &dummy;
	*probe = 0;
	if (!b->cfg.enabled)
		return 1;
	uint64_t w = atomic_load_explicit(&b->word, memory_order_acquire);
	switch ((sl_breaker_state)(w & ST_MASK)) {
	case SL_BREAKER_CLOSED:
		return 1;
	case SL_BREAKER_OPEN:
		if (now_ns < (w >> 2))
			goto refuse;
		break;
	default: /* half-open: refuse without the lock when every slot is taken */
		if (atomic_load_explicit(&b->probes, RLX) >= b->cfg.half_open_probes)
			goto refuse;
		break;
	}
	return acquire_slow(b, now_ns, probe);
refuse:
	atomic_fetch_add_explicit(&b->rejected, 1, RLX);
	return 0;
}

/* ---- record / release ---- */

static void probe_slot_free(sl_breaker *b)
{
	uint32_t p = atomic_load_explicit(&b->probes, RLX);
	while (p > 0 && !atomic_compare_exchange_weak_explicit(&b->probes, &p, p - 1, RLX, RLX))
		;
}

static void record_closed(sl_breaker *b, uint64_t now, int ok)
{
	if (ok) {
		if (b->cfg.failure_ratio > 0)
			sl__win_add(&b->win, now, 0, 1);
		if (atomic_load_explicit(&b->consec, RLX) != 0)
			atomic_store_explicit(&b->consec, 0, RLX);
		return;
	}
	sl__win_bucket *bk = b->cfg.failure_ratio > 0 ? sl__win_slot(&b->win, now) : NULL;
	if (bk) {
		atomic_fetch_add_explicit(&bk->n[0], 1, RLX);
		atomic_fetch_add_explicit(&bk->n[1], 1, RLX);
	}
	uint32_t c = atomic_fetch_add_explicit(&b->consec, 1, RLX) + 1;
	int trip = b->cfg.consecutive_failures && c >= b->cfg.consecutive_failures;
	if (!trip && b->cfg.failure_ratio > 0) {
		uint64_t s[2];
		sl__win_sum(&b->win, now, NULL, s);
		trip = s[0] >= b->cfg.min_requests && s[0] > 0 &&
		       (double)s[1] >= b->cfg.failure_ratio * (double)s[0];
	}
	if (!trip)
		return;
	pthread_mutex_lock(&b->mx);
	if ((atomic_load_explicit(&b->word, RLX) & ST_MASK) == SL_BREAKER_CLOSED)
		open_locked(b, now, b->cfg.cooldown_ms);
	pthread_mutex_unlock(&b->mx);
}

static void record_probe(sl_breaker *b, uint64_t now, int ok)
{
	int closed = 0;
	pthread_mutex_lock(&b->mx);
	probe_slot_free(b);
	uint64_t w = atomic_load_explicit(&b->word, RLX);
	switch ((sl_breaker_state)(w & ST_MASK)) {
	case SL_BREAKER_HALF_OPEN:
		if (!ok) {
			uint64_t cool = (uint64_t)atomic_load_explicit(&b->cooldown_ms, RLX) * 2;
			if (cool > b->cfg.max_cooldown_ms)
				cool = b->cfg.max_cooldown_ms;
			open_locked(b, now, (uint32_t)cool);
		} else {
			uint32_t n = atomic_load_explicit(&b->probe_ok, RLX) + 1;
			atomic_store_explicit(&b->probe_ok, n, RLX);
			if (n >= b->cfg.half_open_probes)
				close_locked(b);
		}
		break;
	case SL_BREAKER_CLOSED:
		closed = 1; /* a late probe: closed by its siblings meanwhile */
		break;
	default:
		break; /* a late probe of an earlier half-open period: stats only */
	}
	pthread_mutex_unlock(&b->mx);
	if (closed)
		record_closed(b, now, ok);
}

void sl_breaker_record(sl_breaker *b, uint64_t now_ns, int ok, int probe)
{
	atomic_fetch_add_explicit(ok ? &b->successes : &b->failures, 1, RLX);
	if (!b->cfg.enabled)
		return;
	if (probe) {
		record_probe(b, now_ns, ok);
		return;
	}
	uint64_t w = atomic_load_explicit(&b->word, memory_order_acquire);
	if ((w & ST_MASK) == SL_BREAKER_CLOSED)
		record_closed(b, now_ns, ok);
	/* else: started before the trip; the state machine ignores it */
}

void sl_breaker_release(sl_breaker *b, int probe)
{
	if (probe && b->cfg.enabled)
		probe_slot_free(b);
}

/* ---- reading ---- */

sl_breaker_state sl_breaker_state_of(const sl_breaker *b, uint64_t now_ns)
{
	if (!b->cfg.enabled)
		return SL_BREAKER_CLOSED;
	uint64_t w = atomic_load_explicit(&b->word, memory_order_acquire);
	sl_breaker_state s = (sl_breaker_state)(w & ST_MASK);
	if (s == SL_BREAKER_OPEN && now_ns >= (w >> 2))
		return SL_BREAKER_HALF_OPEN;
	return s;
}

const char *sl_breaker_state_name(sl_breaker_state s)
{
	switch (s) {
	case SL_BREAKER_CLOSED:
		return "closed";
	case SL_BREAKER_OPEN:
		return "open";
	case SL_BREAKER_HALF_OPEN:
		return "half_open";
	}
	return "unknown";
}

void sl_breaker_stats_get(const sl_breaker *b, sl_breaker_stats *st)
{
	st->trips = atomic_load_explicit(&b->trips, RLX);
	st->to_half_open = atomic_load_explicit(&b->to_half_open, RLX);
	st->to_closed = atomic_load_explicit(&b->to_closed, RLX);
	st->rejected = atomic_load_explicit(&b->rejected, RLX);
	st->successes = atomic_load_explicit(&b->successes, RLX);
	st->failures = atomic_load_explicit(&b->failures, RLX);
	st->cooldown_ms = atomic_load_explicit(&b->cooldown_ms, RLX);
}

uint32_t sl_breaker_probes_inflight(const sl_breaker *b)
{
	return atomic_load_explicit(&b->probes, RLX);
}
