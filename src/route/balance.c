/* balance.c - routing strategies; see balance.h and docs/internals/routing.md. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "route/balance.h"
#include "route/budget.h" /* sl_rand64, sl_rand_below */

/* ---- helpers ---- */

static inline int av(const sl_balance_ctx *c, unsigned i)
{
	return !c->avail || c->avail[i];
}

static inline uint64_t *rngp(const sl_balance_ctx *c)
{
	static _Thread_local uint64_t own = 0x2545F4914F6CDD1Dull;
	return c->rng ? c->rng : &own;
}

/* All weights 0 (or none): equal shares. */
static inline int equal_weights(const sl_balance_ctx *c)
{
	if (!c->weights)
		return 1;
	for (unsigned i = 0; i < c->n; i++)
		if (c->weights[i])
			return 0;
	return 1;
}

static inline uint64_t wt(const sl_balance_ctx *c, unsigned i, int eq)
{
	return eq ? 1 : c->weights[i];
}

/* [0, n) from a 64-bit hash, proportionally (multiply-shift). */
static inline uint64_t scale(uint64_t h, uint64_t n)
{
#ifdef __SIZEOF_INT128__
	return (uint64_t)(((unsigned __int128)h * n) >> 64);
#else
	return n ? h % n : 0;
#endif
}

/* splitmix64's finaliser: spreads any input hash over all 64 bits. */
static inline uint64_t mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static unsigned count_avail(const sl_balance_ctx *c)
{
	if (!c->avail)
		return c->n;
	unsigned m = 0;
	for (unsigned i = 0; i < c->n; i++)
		m += c->avail[i] != 0;
	return m;
}

/* Index of the k-th available backend (k < count_avail). */
static int nth_avail(const sl_balance_ctx *c, unsigned k)
{
	for (unsigned i = 0; i < c->n; i++)
		if (av(c, i) && k-- == 0)
			return (int)i;
	return -1;
}

/* Among the available backends, by weight: the one whose weight range
 * holds r, where r is scaled from h over the available total.  Zero-weight
 * backends only when no positive-weight one is available. */
static int by_weight_avail(const sl_balance_ctx *c, int eq, uint64_t h)
{
	uint64_t total = 0;
	unsigned m = 0;
	for (unsigned i = 0; i < c->n; i++)
		if (av(c, i)) {
			m++;
			total += wt(c, i, eq);
		}
	if (m == 0)
		return -1;
	if (total == 0)
		return nth_avail(c, (unsigned)scale(h, m));
	uint64_t r = scale(h, total);
	for (unsigned i = 0; i < c->n; i++) {
		if (!av(c, i))
			continue;
		uint64_t w = wt(c, i, eq);
		if (r < w)
			return (int)i;
		r -= w;
	}
	return -1; /* not reached */
}

/* ---- fallback ---- */

static int fallback_pick(void *state, const sl_balance_ctx *c)
{
	for (unsigned i = 0; i < c->n; i++)
		if (av(c, i))
			return (int)i;
	return -1;
}

/* ---- weighted ---- */

static int weighted_pick(void *state, const sl_balance_ctx *c)
{
	return by_weight_avail(c, equal_weights(c), sl_rand64(rngp(c)));
}

/* ---- sticky ----
 * The session's own arm: the hash scaled over the sum of all weights
 * (so, with every arm available, arm i gets weight_i / total of the
 * sessions).  When that arm is unavailable: a second hash scaled over the
 * weights of the available arms, so the displaced sessions spread over the
 * rest by weight, deterministically, and come back when their arm does. */

static int sticky_pick(void *state, const sl_balance_ctx *c)
{
	int eq = equal_weights(c);
	uint64_t h = mix(c->session_hash);
	uint64_t total = 0;
	for (unsigned i = 0; i < c->n; i++)
		total += wt(c, i, eq);
	if (total) {
		uint64_t r = scale(h, total);
		for (unsigned i = 0; i < c->n; i++) {
			uint64_t w = wt(c, i, eq);
			if (r < w) {
				if (av(c, i))
					return (int)i;
				break;
			}
			r -= w;
		}
	}
	return by_weight_avail(c, eq, mix(h ^ 0x9E3779B97F4A7C15ull));
}

/* ---- round robin ---- */

typedef struct rr_state {
	_Alignas(64) _Atomic uint64_t next;
} rr_state;

static int rr_init(unsigned n, const uint32_t *weights, void **state)
{
	rr_state *s = aligned_alloc(64, sizeof(rr_state));
	if (!s)
		return SL_ENOMEM;
	atomic_init(&s->next, 0);
	*state = s;
	return SL_OK;
}

static void rr_fini(void *state)
{
	free(state);
}

static int rr_pick(void *state, const sl_balance_ctx *c)
{
	unsigned m = count_avail(c);
	if (m == 0)
		return -1;
	uint64_t k;
	if (state)
		k = atomic_fetch_add_explicit(&((rr_state *)state)->next, 1, memory_order_relaxed) % m;
	else /* init was not called: random is the next best thing */
		k = sl_rand_below(rngp(c), m);
	return m == c->n ? (int)k : nth_avail(c, (unsigned)k);
}

/* ---- least in flight ---- */

static int least_pick(void *state, const sl_balance_ctx *c)
{
	int best = -1;
	uint32_t bv = 0;
	unsigned ties = 0;
	for (unsigned i = 0; i < c->n; i++) {
		if (!av(c, i))
			continue;
		uint32_t v = c->inflight ? c->inflight[i] : 0;
		if (best < 0 || v < bv) {
			best = (int)i;
			bv = v;
			ties = 1;
		} else if (v == bv && sl_rand_below(rngp(c), ++ties) == 0) {
			best = (int)i; /* reservoir sampling: each tie with probability 1/ties */
		}
	}
	return best;
}

/* ---- power of two choices ---- */

static int p2c_pick(void *state, const sl_balance_ctx *c)
{
	unsigned m = count_avail(c);
	if (m == 0)
		return -1;
	if (m == 1)
		return nth_avail(c, 0);
	uint64_t *rng = rngp(c);
	unsigned a = (unsigned)sl_rand_below(rng, m);
	unsigned b = (unsigned)sl_rand_below(rng, m - 1);
	if (b >= a)
		b++;
	int ia = m == c->n ? (int)a : nth_avail(c, a);
	int ib = m == c->n ? (int)b : nth_avail(c, b);
	double ea = c->ewma_ns ? c->ewma_ns[ia] : 0, eb = c->ewma_ns ? c->ewma_ns[ib] : 0;
	double fa = c->inflight ? (double)c->inflight[ia] : 0, fb = c->inflight ? (double)c->inflight[ib] : 0;
	if (ea <= 0 || eb <= 0) {
		if (ea <= 0 && eb <= 0)
			return fb < fa ? ib : ia; /* neither sampled: fewer in flight */
		return ea <= 0 ? ia : ib;     /* the unsampled one gets its first sample */
	}
	return eb * (fb + 1) < ea * (fa + 1) ? ib : ia;
}

/* ---- the table ---- */

static const sl_balancer_ops ops[] = {
	{"fallback", NULL, fallback_pick, NULL},
	{"weighted", NULL, weighted_pick, NULL},
	{"sticky", NULL, sticky_pick, NULL},
	{"round_robin", rr_init, rr_pick, rr_fini},
	{"least_inflight", NULL, least_pick, NULL},
	{"p2c", NULL, p2c_pick, NULL},
};
#define NOPS (sizeof ops / sizeof ops[0])

static const char *const names[NOPS + 1] = {
	"fallback", "weighted", "sticky", "round_robin", "least_inflight", "p2c", NULL,
};

const sl_balancer_ops *sl_balancer_find(const char *name)
{
	if (!name)
		return NULL;
	for (unsigned i = 0; i < NOPS; i++)
		if (strcmp(ops[i].name, name) == 0)
			return &ops[i];
	return NULL;
}

const char *const *sl_balancer_names(void)
{
	return names;
}
