/* router.h - the routing worker: one model served by several backends.
 *
 * A router is a worker (sl_worker_ops) that owns the workers of a model's
 * backends and, for every inference call:
 *   1. picks the first backend with the model's strategy (fallback order,
 *      weighted A/B, sticky by session, round robin, least in flight,
 *      power of two choices over a latency EWMA) among the backends whose
 *      circuit breaker and concurrency limiter let a call through;
 *   2. makes the call as a sub-call (sl_infer_sub_new), forwarding tokens;
 *   3. on a retryable failure before any token reached the client
 *      (connect failure, 429/5xx, no first token in time, a stream that
 *      broke before its first token, an answer it could not parse) tries
 *      again: the next backend of the chain that can take a call, at once,
 *      or the same backend after an exponential backoff with full jitter -
 *      within max_attempts, the request's deadline and the failing
 *      backend's retry budget;
 *   4. records the outcome in the backend's breaker (timeouts count as
 *      failures, 4xx other than 429 and cancellations count nothing) and
 *      its limiter (latency sample = time to first token).
 * A failure after tokens were sent is passed on as is: the client sees an
 * explicit error (SSE error event), never a clean-looking end.
 *
 * Calls that no backend may take end with SL_EUNAVAIL when every circuit
 * is open, or SL_ESHED (outcome shed at the inference stage) when the
 * backends are at their concurrency limits.  The backend of each attempt is
 * reported with sl_infer_annotate(call, "backend", name).
 *
 * Threading: per-call state lives on the request's shard; breakers,
 * budgets, limiters and counters are shared by all shards (thread-safe).
 */
#ifndef SL_WORKER_ROUTER_H
#define SL_WORKER_ROUTER_H
#include <stdint.h>
#include "route/breaker.h"
#include "route/budget.h"
#include "route/limiter.h"
#include "sluice/sluice.h"

#define SL_ROUTER_MAX_BACKENDS 64

typedef struct sl_router_backend {
	const char *name;         /* copied */
	sl_worker *worker;        /* owned by the router from create on (also on error) */
	uint32_t weight;          /* weighted / sticky strategies; 0 = equal share */
	sl_breaker_cfg breaker;
	sl_retry_budget_cfg budget;
	uint32_t backoff_ms;      /* first retry of the same backend waits up to this; default 25 */
	uint32_t max_backoff_ms;  /* cap; default 1000 */
	sl_limiter_cfg limiter;
} sl_router_backend;

typedef struct sl_router_opts {
	const char *model;        /* for logs and metrics (copied) */
	const char *strategy;     /* balancer name; NULL = "fallback" */
	unsigned max_attempts;    /* per request, first one included; 0 = backends + 1 */
	const sl_router_backend *backends;
	unsigned n_backends;      /* 1..SL_ROUTER_MAX_BACKENDS */
} sl_router_opts;

/* Fills b with defaults (breaker, budget, backoff, limiter FIXED unlimited). */
void sl_router_backend_default(sl_router_backend *b);

/* SL_OK and *out, SL_EINVAL (no backends, unknown strategy, bad limits:
 * err says which), SL_ENOMEM.  On every path the router owns (and on
 * failure destroys) the backends' workers. */
int sl_worker_router_create(const sl_router_opts *opts, sl_worker **out, char *err,
                            size_t errlen);

/* Is w a router? */
int sl_worker_is_router(const sl_worker *w);

/* Per-backend figures for /metrics and the admin API (any thread). */
typedef struct sl_router_backend_stats {
	const char *name;         /* valid while the worker lives */
	const char *breaker_state; /* "closed", "open", "half_open" */
	sl_breaker_stats breaker;
	sl_retry_budget_stats budget;
	uint32_t limit, inflight;
	double ewma_ttft_ms;      /* 0 = no sample yet */
	uint64_t selected;        /* chosen for a request's first attempt */
	uint64_t attempts;        /* calls started (first attempts and retries) */
	uint64_t successes, failures;
	uint64_t retries;         /* re-attempts that went to this backend */
	uint64_t limited;         /* skipped: at its concurrency limit */
	uint64_t open_skips;      /* skipped: circuit open */
} sl_router_backend_stats;

const char *sl_router_model(const sl_worker *w);
const char *sl_router_strategy(const sl_worker *w);
/* Number of backends; fills up to cap entries of st (st may be NULL). */
unsigned sl_router_stats(const sl_worker *w, sl_router_backend_stats *st, unsigned cap);

#endif
