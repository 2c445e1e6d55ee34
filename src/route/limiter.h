/* limiter.h - adaptive concurrency limit per backend (Netflix
 * concurrency-limits, Envoy adaptive concurrency), and a lock-free EWMA.
 *
 * A limiter admits a call while in-flight < limit.  The limit is fixed
 * (FIXED), or learned from the latency samples and drop signals of the
 * calls it admitted: AIMD (additive increase while the backend keeps up,
 * multiplicative decrease on a drop or a slow sample), or GRADIENT
 * (Netflix Gradient2: the ratio of a long-window latency EWMA to a
 * short-window one scales the limit, plus a queue allowance of
 * sqrt(limit), smoothed).  Algorithms, defaults and references:
 * docs/internals/routing.md.
 *
 * Threading: one limiter per backend, shared by all shards; every function
 * may be called from any thread, concurrently.  acquire() is one CAS on the
 * in-flight count; release() one atomic add, plus for AIMD a CAS on the
 * limit and for GRADIENT a try-lock around the estimator (a sample that
 * finds it busy is skipped, never waited for). */
#ifndef SL_ROUTE_LIMITER_H
#define SL_ROUTE_LIMITER_H
#include <stdatomic.h>
#include <stdint.h>
#include "sluice/sluice.h"

typedef enum sl_limit_alg { SL_LIMIT_FIXED = 0, SL_LIMIT_AIMD = 1, SL_LIMIT_GRADIENT = 2 } sl_limit_alg;

#define SL_LIMITER_DEFAULT_MIN 1
#define SL_LIMITER_DEFAULT_MAX 1024
#define SL_LIMITER_DEFAULT_INITIAL 32
#define SL_LIMITER_DEFAULT_BACKOFF 0.9
#define SL_LIMITER_DEFAULT_TOLERANCE 1.5

typedef struct sl_limiter_cfg {
	sl_limit_alg alg;        /* default FIXED */
	uint32_t min_limit;      /* default 1 */
	uint32_t max_limit;      /* default 1024 (FIXED: the limit; 0 = unlimited for FIXED only) */
	uint32_t initial_limit;  /* default 32 (FIXED ignores) */
	uint32_t latency_threshold_ms; /* AIMD: a sample slower than this is a "drop" signal; default 0 = 2x the tracked minimum latency (a baseline learned from samples, reset slowly) */
	double backoff_ratio;    /* AIMD multiplicative decrease; default 0.9 */
	double tolerance;        /* GRADIENT: rtt_noload*tolerance still counts as unloaded; default 1.5 (Netflix Gradient2 style: long-window EWMA vs short-window, limit = limit*gradient + queue_size(sqrt(limit)), smoothed) */
} sl_limiter_cfg;

/* Fills c with the defaults above. */
void sl_limiter_cfg_default(sl_limiter_cfg *c);

typedef struct sl_limiter sl_limiter;

/* Creates a limiter from a copy of *cfg (NULL = defaults).  AIMD and
 * GRADIENT need 1 <= min_limit <= max_limit; initial_limit is clamped into
 * [min_limit, max_limit]; AIMD needs 0 < backoff_ratio < 1, GRADIENT
 * tolerance >= 1.  FIXED uses max_limit only (0 = unlimited).  Returns
 * SL_OK and *out, SL_EINVAL, or SL_ENOMEM. */
int sl_limiter_create(const sl_limiter_cfg *cfg, sl_limiter **out);

/* Frees l; NULL is a no-op.  No other thread may be using it. */
void sl_limiter_destroy(sl_limiter *l);

/* 1 = a call may start (in-flight incremented), 0 = at the limit.  Any
 * thread; never lets in-flight exceed the limit it read. */
int sl_limiter_acquire(sl_limiter *l);

typedef enum sl_limit_outcome {
	SL_LIMIT_SUCCESS = 0,
	SL_LIMIT_DROPPED = 1, /* timeout / overload error (429, 503): decrease */
	SL_LIMIT_IGNORE = 2   /* cancelled / unrelated error: no sample */
} sl_limit_outcome;

/* Ends a call started by acquire (exactly once per successful acquire).
 * latency_ns is the sample (the caller passes time to first token, or to
 * the full response when not streaming); 0 = no latency known.  Any
 * thread. */
void sl_limiter_release(sl_limiter *l, uint64_t now_ns, uint64_t latency_ns, sl_limit_outcome o);

/* The current limit; 0 for an unlimited FIXED limiter.  Any thread. */
uint32_t sl_limiter_limit(const sl_limiter *l);
/* Calls in flight now.  Any thread. */
uint32_t sl_limiter_inflight(const sl_limiter *l);

/* Extra (not in the router's contract): the algorithm's name ("fixed",
 * "aimd", "gradient"), NULL when unknown; and the name -> value parser for
 * configuration (SL_OK or SL_EINVAL). */
const char *sl_limit_alg_name(sl_limit_alg a);
int sl_limit_alg_parse(const char *name, sl_limit_alg *out);

/* ------------------------------------------------------------------ EWMA
 * Exponentially weighted moving average of a latency, lock-free: the double
 * lives as its bits in an _Atomic uint64_t.  Two updaters racing may lose
 * one sample (last store wins), which is fine for a routing score.  Any
 * thread. */
typedef struct sl_ewma {
	_Atomic uint64_t bits;
	double alpha;
} sl_ewma;

/* alpha in (0, 1]: weight of a new sample.  Starts "unset" (reads 0); the
 * first sample is taken as is.  Not concurrently with other calls. */
void sl_ewma_init(sl_ewma *e, double alpha);
/* e = e + alpha * (sample - e), or sample when unset. */
void sl_ewma_update(sl_ewma *e, double sample);
/* Current value, 0 when unset. */
double sl_ewma_get(const sl_ewma *e);

#endif
