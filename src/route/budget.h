/* budget.h - retry budget, exponential backoff with full jitter, a small
 * PRNG, and the sliding-window counter the budget and the circuit breaker
 * share.  See docs/internals/routing.md.
 *
 * Retry budget (Finagle RetryBudget, Envoy retry_budget): over a sliding
 * window of 10 buckets, retries may be at most `ratio` of the first
 * attempts, plus `min_per_s` per second that are always allowed, so that
 * a failing backend sees at most (1 + ratio) times its normal load instead
 * of max_attempts times it (the retry storm).
 *
 * Threading: one budget per backend, shared by all shards; every function
 * may be called from any thread, concurrently.  on_request() is two relaxed
 * atomic adds; try() is lock-free and exact (a retry is counted with a
 * compare-and-swap against the count it was judged on).  The only lock is
 * the window rotation (once per bucket period, a few instructions). */
#ifndef SL_ROUTE_BUDGET_H
#define SL_ROUTE_BUDGET_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include "sluice/sluice.h"

/* ------------------------------------------------------ sliding window
 * Internal: SL__WIN_BUCKETS buckets of width window/SL__WIN_BUCKETS, each
 * holding two counters.  A bucket is tagged with the period it counts
 * (now / width, plus 1 so that 0 means "never used"); the first writer of a
 * new period clears it under *mx.  A sum covers the current bucket and the
 * SL__WIN_BUCKETS - 1 before it, so a sample stays counted for between
 * 0.9 and 1.0 window.  Races (benign, documented): a writer that read the
 * bucket's tag just before another thread rotated it adds its sample to the
 * new period; a writer whose now is more than a window behind is dropped. */
#define SL__WIN_BUCKETS 10

typedef struct sl__win_bucket {
	_Atomic uint64_t tag;  /* period + 1; 0 = unused */
	_Atomic uint64_t n[2];
} sl__win_bucket;

typedef struct sl__win {
	uint64_t width_ns;     /* window / SL__WIN_BUCKETS, >= 1 */
	pthread_mutex_t *mx;   /* the owner's lock, taken to rotate a bucket */
	sl__win_bucket b[SL__WIN_BUCKETS];
} sl__win;

/* window_ms > 0.  Does not take mx. */
void sl__win_init(sl__win *w, uint32_t window_ms, pthread_mutex_t *mx);
/* The bucket counting `now` (rotated to it when needed, taking *mx), or
 * NULL when now is a whole window older than the newest bucket. */
sl__win_bucket *sl__win_slot(sl__win *w, uint64_t now);
/* Adds v to counter k (0 or 1) of now's bucket. */
void sl__win_add(sl__win *w, uint64_t now, unsigned k, uint64_t v);
/* Sums both counters over the window ending at now; skip (may be NULL) is
 * a bucket to leave out (the caller adds its own reading of it). */
void sl__win_sum(const sl__win *w, uint64_t now, const sl__win_bucket *skip, uint64_t out[2]);
/* Forgets every count (the breaker, on closing and on tripping).  Call with
 * *mx held. */
void sl__win_clear(sl__win *w);

/* ------------------------------------------------------------ the budget */

#define SL_RETRY_BUDGET_DEFAULT_RATIO 0.2
#define SL_RETRY_BUDGET_DEFAULT_MIN_PER_S 10
#define SL_RETRY_BUDGET_DEFAULT_WINDOW_MS 10000

typedef struct sl_retry_budget_cfg {
	double ratio;        /* retries may be at most this fraction of first attempts in the window; default 0.2 */
	uint32_t min_per_s;  /* plus this many retries per second always allowed; default 10 */
	uint32_t window_ms;  /* default 10000 (10 buckets) */
} sl_retry_budget_cfg;

/* Fills c with the defaults above. */
void sl_retry_budget_cfg_default(sl_retry_budget_cfg *c);

typedef struct sl_retry_budget sl_retry_budget;

/* Creates a budget from a copy of *cfg (NULL = defaults).  Returns SL_OK
 * and *out, SL_EINVAL (ratio < 0 or not finite, window_ms == 0, out NULL),
 * or SL_ENOMEM. */
int sl_retry_budget_create(const sl_retry_budget_cfg *cfg, sl_retry_budget **out);

/* Frees b; NULL is a no-op.  No other thread may be using it. */
void sl_retry_budget_destroy(sl_retry_budget *b);

/* Counts a first attempt at now_ns (monotonic ns).  Any thread. */
void sl_retry_budget_on_request(sl_retry_budget *b, uint64_t now_ns);

/* May a retry go now?  1 = yes, and the retry is counted; 0 = budget
 * exhausted (counted in stats.exhausted).  A retry is allowed while
 *   retries_in_window < min_per_s * window_s + ratio * requests_in_window.
 * Any thread; concurrent callers never push the count over the bound. */
int sl_retry_budget_try(sl_retry_budget *b, uint64_t now_ns);

typedef struct sl_retry_budget_stats {
	uint64_t requests, retries, exhausted;  /* totals since create */
} sl_retry_budget_stats;

/* Totals since create (relaxed reads; any thread). */
void sl_retry_budget_stats_get(const sl_retry_budget *b, sl_retry_budget_stats *st);

/* Extra (not in the router's contract): the window sums at now_ns, for
 * tests and the admin API. */
void sl_retry_budget_window(const sl_retry_budget *b, uint64_t now_ns, uint64_t *requests,
                            uint64_t *retries);

/* ------------------------------------------------- backoff and the PRNG */

/* Exponential backoff with full jitter (AWS architecture blog, "Exponential
 * Backoff And Jitter"): uniform in [0, min(cap_ms, base_ms << attempt)] ms,
 * both ends included; attempt 0 = the first retry.  Shifts that overflow
 * saturate at cap_ms.  *rng is the caller's per-thread state. */
uint64_t sl_backoff_ms(uint32_t base_ms, uint32_t cap_ms, unsigned attempt, uint64_t *rng);

/* splitmix64 (Steele, Lea, Flood 2014; Vigna's reference code): any seed,
 * zero included, period 2^64.  Not thread-safe: one state per thread. */
uint64_t sl_rand64(uint64_t *state);
/* Uniform double in [0, 1) with 53 random bits. */
double sl_rand01(uint64_t *state);
/* Uniform in [0, n) (Lemire's multiply-shift, bias < n / 2^64); n = 0 gives 0. */
uint64_t sl_rand_below(uint64_t *state, uint64_t n);

#endif
