/* balance.h - routing strategies as function-pointer tables (like h2o's
 * balancers): which backend takes a request's first attempt.
 *
 *   fallback        the first available backend in configured order
 *   weighted        random by weight among the available
 *   sticky          deterministic by session hash over the weights
 *                   (hash-to-weight-range; a session whose arm is
 *                   unavailable is re-hashed onto the available arms and
 *                   returns to its own arm when that is back)
 *   round_robin     an atomic counter over the available backends
 *   least_inflight  fewest calls in flight (ties: random)
 *   p2c             power of two choices: two distinct random available
 *                   backends, the lower ewma_ns * (inflight + 1) wins
 *                   (a backend without a sample yet wins first)
 *
 * Weights: a weight of 0 gives a backend no share while a backend with a
 * positive weight is available (a standby); all weights 0 (or weights
 * NULL) means equal shares.  Details and references:
 * docs/internals/routing.md.
 *
 * Threading: pick() may be called from any thread concurrently with the
 * same state (round_robin's state is one atomic counter; the others have
 * none).  The context's arrays are the caller's; ctx->rng is the calling
 * thread's own PRNG state (sl_rand64).  init/fini: not concurrently with
 * pick on the same state. */
#ifndef SL_ROUTE_BALANCE_H
#define SL_ROUTE_BALANCE_H
#include <stdint.h>
#include "sluice/sluice.h"

typedef struct sl_balance_ctx {
	unsigned n;                   /* backends, in configured order */
	const uint32_t *weights;      /* n weights (>= 0; all 0 means equal); NULL = equal */
	const uint8_t *avail;         /* n flags: 1 = may take a call now (breaker and limiter allow); NULL = all */
	const uint32_t *inflight;     /* n current in-flight counts; NULL = all 0 */
	const double *ewma_ns;        /* n latency EWMAs (0 = no sample yet); NULL = none */
	uint64_t session_hash;        /* xxHash64 of the session key */
	uint64_t *rng;                /* caller's per-thread PRNG state; NULL = a thread-local one */
} sl_balance_ctx;

typedef struct sl_balancer_ops {
	const char *name;             /* "fallback", "weighted", "sticky", "round_robin", "least_inflight", "p2c" */
	/* Per-pool state; may be NULL (then state is NULL).  Returns SL_OK or
	 * SL_ENOMEM. */
	int (*init)(unsigned n, const uint32_t *weights, void **state);
	/* Index of the backend for a request's first attempt, among those with
	 * avail[i]; -1 when none is available. */
	int (*pick)(void *state, const sl_balance_ctx *ctx);
	void (*fini)(void *state);    /* may be NULL */
} sl_balancer_ops;

/* The strategy called name; NULL when unknown (or name NULL). */
const sl_balancer_ops *sl_balancer_find(const char *name);

/* NULL-terminated list of the names, for error messages. */
const char *const *sl_balancer_names(void);

#endif
