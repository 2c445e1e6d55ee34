/* breaker.h - circuit breaker per backend (closed / open / half-open).
 *
 * Closed: calls go through; the breaker trips (opens) after
 * `consecutive_failures` failures in a row, or when failures/calls over a
 * sliding window (10 buckets) reaches `failure_ratio` with at least
 * `min_requests` calls in it.  Open: every call is refused until the
 * cool-down has passed.  Half-open: up to `half_open_probes` calls at once
 * go through as probes; that many consecutive probe successes close it, a
 * probe failure opens it again with the cool-down doubled (capped at
 * max_cooldown_ms).  A trip from closed starts again from cooldown_ms.
 * See docs/internals/routing.md for the details and references (Nygard,
 * "Release It!"; resilience4j; Envoy outlier detection; Polly).
 *
 * Threading: one breaker per backend, shared by all shards; every function
 * may be called from any thread, concurrently.  Closed-state calls and
 * open-state refusals are lock-free (a load of one atomic word, a few
 * relaxed adds); the breaker's mutex is taken only for state transitions,
 * for half-open probes, and once per window bucket period. */
#ifndef SL_ROUTE_BREAKER_H
#define SL_ROUTE_BREAKER_H
#include <stdint.h>
#include "sluice/sluice.h"

#define SL_BREAKER_DEFAULT_CONSECUTIVE 5
#define SL_BREAKER_DEFAULT_RATIO 0.5
#define SL_BREAKER_DEFAULT_WINDOW_MS 10000
#define SL_BREAKER_DEFAULT_MIN_REQUESTS 20
#define SL_BREAKER_DEFAULT_COOLDOWN_MS 1000
#define SL_BREAKER_DEFAULT_MAX_COOLDOWN_MS 30000
#define SL_BREAKER_DEFAULT_PROBES 3

typedef struct sl_breaker_cfg {
	uint32_t consecutive_failures; /* trip after this many failures in a row; 0 = this rule off; default 5 */
	double failure_ratio;          /* trip when failures/calls over the window >= this; 0 = off; default 0.5 */
	uint32_t window_ms;            /* sliding window for the ratio (10 buckets); default 10000 */
	uint32_t min_requests;         /* calls in the window before the ratio rule applies; default 20 */
	uint32_t cooldown_ms;          /* first open period; default 1000 */
	uint32_t max_cooldown_ms;      /* open period doubles on each consecutive trip (trip from half-open) up to this; default 30000 */
	uint32_t half_open_probes;     /* calls let through at once in half-open; that many consecutive successes close it; default 3 */
	int enabled;                   /* 0 = always allow */
} sl_breaker_cfg;

/* Fills c with the defaults above (enabled = 1). */
void sl_breaker_cfg_default(sl_breaker_cfg *c);

typedef enum sl_breaker_state {
	SL_BREAKER_CLOSED = 0,
	SL_BREAKER_OPEN = 1,
	SL_BREAKER_HALF_OPEN = 2
} sl_breaker_state;

typedef struct sl_breaker sl_breaker; /* opaque, heap */

/* Creates a breaker from a copy of *cfg (NULL = defaults).  When enabled,
 * the config must have failure_ratio in [0, 1], window_ms > 0 when the
 * ratio rule is on, and half_open_probes >= 1; a max_cooldown_ms below
 * cooldown_ms is raised to it.  Returns SL_OK and *out, SL_EINVAL, or
 * SL_ENOMEM. */
int sl_breaker_create(const sl_breaker_cfg *cfg, sl_breaker **out);

/* Frees b; NULL is a no-op.  No other thread may be using it. */
void sl_breaker_destroy(sl_breaker *b);

/* May a call start now?  Returns 1 and sets *probe (1 when the call is a
 * half-open probe) when allowed; the caller must then end it with exactly
 * one sl_breaker_record or sl_breaker_release, passing *probe back.
 * Returns 0 when refused (open, or half-open with all probe slots taken),
 * counted in stats.rejected.  An open breaker whose cool-down has passed
 * turns half-open here.  Any thread; now_ns is monotonic ns. */
int sl_breaker_acquire(sl_breaker *b, uint64_t now_ns, int *probe);

/* Outcome of an allowed call: ok = 1 success, 0 failure (timeouts count as
 * failures).  A non-probe outcome that arrives after the breaker left the
 * closed state (a call started before the trip) is counted in the stats
 * only.  Any thread. */
void sl_breaker_record(sl_breaker *b, uint64_t now_ns, int ok, int probe);

/* The call ended without telling anything about the backend (cancelled by
 * the client, a 4xx the client caused): frees a probe slot, counts
 * nothing.  Any thread. */
void sl_breaker_release(sl_breaker *b, int probe);

/* The state at now_ns; OPEN past its cool-down reads as HALF_OPEN (the
 * transition itself happens in acquire).  Any thread. */
sl_breaker_state sl_breaker_state_of(const sl_breaker *b, uint64_t now_ns);

/* "closed", "open", "half_open" ("unknown" for other values). */
const char *sl_breaker_state_name(sl_breaker_state s);

typedef struct sl_breaker_stats {
	uint64_t trips;        /* transitions to open (from closed or half-open) */
	uint64_t to_half_open; /* open -> half-open */
	uint64_t to_closed;    /* half-open -> closed */
	uint64_t rejected;     /* acquire refused */
	uint64_t successes, failures; /* outcomes recorded */
	uint32_t cooldown_ms;  /* the current (last applied) open period */
} sl_breaker_stats;

/* Counters since create (relaxed reads, not one snapshot; any thread). */
void sl_breaker_stats_get(const sl_breaker *b, sl_breaker_stats *st);

/* Extra (not in the router's contract): probe calls in flight now. */
uint32_t sl_breaker_probes_inflight(const sl_breaker *b);

#endif
