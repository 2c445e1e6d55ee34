/* test_route_stress.c - the routing primitives shared by 4 threads, as the
 * shards share one breaker, budget and limiter per backend.  Each test
 * hammers one object with acquire/record loops on a shared simulated clock
 * and checks invariants that must hold whatever the interleaving (probe
 * slots, in-flight bounds, counter conservation, exact budget bounds,
 * round-robin evenness).  Run it under TSan (build-*-tsan) for the data
 * race check; cmocka asserts only on the main thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include "route/balance.h"
#include "route/breaker.h"
#include "route/budget.h"
#include "route/limiter.h"

#define NTHREADS 4
#ifdef SLUICE_SANITIZED
#define ITERS 40000
#else
#define ITERS 200000
#endif
#define US 1000ull
#define MS 1000000ull
#define SEC 1000000000ull

static _Atomic uint64_t clk;        /* the simulated monotonic clock */
static _Atomic int go;              /* start line, so the threads overlap */
static _Atomic uint64_t violations; /* invariant breaks seen in threads */

static uint64_t tick(uint64_t step)
{
	return atomic_fetch_add_explicit(&clk, step, memory_order_relaxed) + step;
}

static void wait_go(void)
{
	while (!atomic_load_explicit(&go, memory_order_acquire))
		;
}

static void atomic_max(_Atomic uint64_t *m, uint64_t v)
{
	uint64_t cur = atomic_load(m);
	while (v > cur && !atomic_compare_exchange_weak(m, &cur, v))
		;
}

static void run(void *(*fn)(void *), void *args, size_t argsz)
{
	pthread_t th[NTHREADS];
	atomic_store(&go, 0);
	for (int i = 0; i < NTHREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, fn, (char *)args + (size_t)i * argsz), 0);
	atomic_store_explicit(&go, 1, memory_order_release);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
}

/* ================================================================ breaker */

static sl_breaker *g_breaker;
static _Atomic uint64_t probes_live, probes_max;

typedef struct bres {
	int id;
	uint64_t allowed, refused, ok, fail, released, probes;
} bres;

#define BHOLD 6

/* Ends one held call: release (10 %) or record with the phase's failure
 * probability. */
static void breaker_finish(bres *r, int probe, double fail_p, uint64_t *rng)
{
	uint64_t now = tick(20 * US);
	if (probe) /* held over the call, dropped just before the slot is freed */
		atomic_fetch_sub(&probes_live, 1);
	if (sl_rand01(rng) < 0.1) {
		sl_breaker_release(g_breaker, probe);
		r->released++;
		return;
	}
	int ok = sl_rand01(rng) >= fail_p;
	sl_breaker_record(g_breaker, now, ok, probe);
	if (ok)
		r->ok++;
	else
		r->fail++;
}

static void *breaker_thread(void *arg)
{
	bres *r = arg;
	uint64_t rng = 0x1234u + (uint64_t)r->id;
	int held[BHOLD]; /* probe flags of the calls in flight */
	int nheld = 0;
	double fail_p = 0;
	wait_go();
	for (int i = 0; i < ITERS; i++) {
		/* alternate a failing backend (60 %) and a healthy one (2 %) */
		fail_p = (i / 4000) % 2 == 0 ? 0.6 : 0.02;
		if (nheld < BHOLD && sl_rand01(&rng) < 0.55) {
			uint64_t now = tick(20 * US);
			int probe = -1;
			if (!sl_breaker_acquire(g_breaker, now, &probe)) {
				r->refused++;
				continue;
			}
			r->allowed++;
			if (probe != 0 && probe != 1)
				atomic_fetch_add(&violations, 1);
			if (probe) {
				r->probes++;
				uint64_t live = atomic_fetch_add(&probes_live, 1) + 1;
				atomic_max(&probes_max, live);
			}
			held[nheld++] = probe;
		} else if (nheld > 0) {
			int k = (int)sl_rand_below(&rng, (uint64_t)nheld);
			int probe = held[k];
			held[k] = held[--nheld];
			breaker_finish(r, probe, fail_p, &rng);
		}
		sl_breaker_state s = sl_breaker_state_of(g_breaker, atomic_load(&clk));
		if (s != SL_BREAKER_CLOSED && s != SL_BREAKER_OPEN && s != SL_BREAKER_HALF_OPEN)
			atomic_fetch_add(&violations, 1);
	}
	while (nheld > 0)
		breaker_finish(r, held[--nheld], fail_p, &rng);
	return NULL;
}

static void stress_breaker(void **st)
{
	sl_breaker_cfg c;
	sl_breaker_cfg_default(&c);
	c.window_ms = 1000;
	c.cooldown_ms = 5;
	c.max_cooldown_ms = 40;
	c.half_open_probes = 3;
	assert_int_equal(sl_breaker_create(&c, &g_breaker), SL_OK);
	atomic_store(&clk, 1000 * SEC);
	atomic_store(&violations, 0);
	bres r[NTHREADS];
	memset(r, 0, sizeof r);
	for (int i = 0; i < NTHREADS; i++)
		r[i].id = i;
	run(breaker_thread, r, sizeof r[0]);

	bres t = {0};
	for (int i = 0; i < NTHREADS; i++) {
		t.allowed += r[i].allowed;
		t.refused += r[i].refused;
		t.ok += r[i].ok;
		t.fail += r[i].fail;
		t.released += r[i].released;
		t.probes += r[i].probes;
	}
	sl_breaker_stats s;
	sl_breaker_stats_get(g_breaker, &s);
	print_message("breaker: allowed %llu refused %llu probes %llu (max %llu at once) trips %llu "
	              "half_open %llu closed %llu cooldown %u\n",
	              (unsigned long long)t.allowed, (unsigned long long)t.refused,
	              (unsigned long long)t.probes, (unsigned long long)atomic_load(&probes_max),
	              (unsigned long long)s.trips, (unsigned long long)s.to_half_open,
	              (unsigned long long)s.to_closed, s.cooldown_ms);
	assert_int_equal(atomic_load(&violations), 0);
	assert_true(atomic_load(&probes_max) <= c.half_open_probes);
	assert_int_equal(sl_breaker_probes_inflight(g_breaker), 0);
	assert_int_equal(s.rejected, t.refused);
	assert_int_equal(s.successes, t.ok);
	assert_int_equal(s.failures, t.fail);
	assert_int_equal(t.ok + t.fail + t.released, t.allowed);
	/* every phase of the state machine was exercised */
	assert_true(s.trips >= 2 && s.to_half_open >= 1 && s.to_closed >= 1);
	/* each open period ends in at most one half-open; each close follows one */
	assert_true(s.to_half_open <= s.trips && s.trips <= s.to_half_open + 1);
	assert_true(s.to_closed <= s.to_half_open);
	assert_true(s.cooldown_ms >= c.cooldown_ms && s.cooldown_ms <= c.max_cooldown_ms);
	sl_breaker_destroy(g_breaker);
}

/* ================================================================= budget */

static sl_retry_budget *g_budget;

typedef struct ures {
	int id;
	int advance;  /* the clock moves */
	int requests; /* count first attempts too */
	uint64_t req, tries, ok;
} ures;

static void *budget_thread(void *arg)
{
	ures *r = arg;
	wait_go();
	for (int i = 0; i < ITERS; i++) {
		uint64_t now = r->advance ? tick(10 * US) : atomic_load_explicit(&clk, memory_order_relaxed);
		if (r->requests) {
			sl_retry_budget_on_request(g_budget, now);
			r->req++;
		}
		if (!r->requests || i % 3 == 0) {
			r->tries++;
			r->ok += (uint64_t)sl_retry_budget_try(g_budget, now);
		}
	}
	return NULL;
}

static void budget_run(ures *r, int advance, int requests, ures *tot)
{
	memset(r, 0, sizeof(ures) * NTHREADS);
	for (int i = 0; i < NTHREADS; i++) {
		r[i].id = i;
		r[i].advance = advance;
		r[i].requests = requests;
	}
	run(budget_thread, r, sizeof r[0]);
	memset(tot, 0, sizeof *tot);
	for (int i = 0; i < NTHREADS; i++) {
		tot->req += r[i].req;
		tot->tries += r[i].tries;
		tot->ok += r[i].ok;
	}
	sl_retry_budget_stats s;
	sl_retry_budget_stats_get(g_budget, &s);
	assert_int_equal(s.requests, tot->req);
	assert_int_equal(s.retries, tot->ok);
	assert_int_equal(s.retries + s.exhausted, tot->tries);
}

static void stress_budget(void **st)
{
	ures r[NTHREADS], t;
	/* floor only, frozen clock: exactly 100 retries, whatever the races */
	sl_retry_budget_cfg c = {0.0, 100, 1000};
	assert_int_equal(sl_retry_budget_create(&c, &g_budget), SL_OK);
	atomic_store(&clk, 1000 * SEC);
	budget_run(r, 0, 0, &t);
	assert_int_equal(t.ok, 100);
	sl_retry_budget_destroy(g_budget);

	/* ratio only, frozen clock: never above 20 % of the requests */
	c = (sl_retry_budget_cfg){0.2, 0, 10000};
	assert_int_equal(sl_retry_budget_create(&c, &g_budget), SL_OK);
	budget_run(r, 0, 1, &t);
	print_message("budget: %llu requests, %llu retries allowed (20 %% = %.0f)\n",
	              (unsigned long long)t.req, (unsigned long long)t.ok, 0.2 * (double)t.req);
	assert_true((double)t.ok <= 0.2 * (double)t.req);
	assert_true((double)t.ok >= 0.2 * (double)t.req - NTHREADS * 3);
	sl_retry_budget_destroy(g_budget);

	/* moving clock (buckets rotate under contention): counters conserved
	 * (checked in budget_run), and over the whole run the retries stay
	 * near 20 % of the requests plus the floor of each window.  (Not an
	 * exact bound: a retry is judged against the window at its own time,
	 * whose requests partly expire later.) */
	sl_retry_budget_cfg_default(&c);
	c.window_ms = 50;
	assert_int_equal(sl_retry_budget_create(&c, &g_budget), SL_OK);
	uint64_t t0 = atomic_load(&clk);
	budget_run(r, 1, 1, &t);
	double windows = (double)(atomic_load(&clk) - t0) / (50 * MS) + 1;
	double bound = 0.2 * (double)t.req + windows * 10 * 0.05;
	print_message("budget, moving clock: %llu requests, %llu retries (bound ~%.0f)\n",
	              (unsigned long long)t.req, (unsigned long long)t.ok, bound);
	assert_true((double)t.ok <= bound * 1.05 + 10);
	assert_true((double)t.ok >= 0.2 * (double)t.req * 0.9);
	sl_retry_budget_destroy(g_budget);
}

/* ================================================================ limiter */

static sl_limiter *g_lim;
static _Atomic uint64_t lim_live, lim_live_max;

typedef struct lres {
	int id;
	uint32_t lo, hi; /* the limit's bounds */
	uint64_t calls, refused;
} lres;

#define HOLD 8

static void *limiter_thread(void *arg)
{
	lres *r = arg;
	uint64_t rng = 77u + (uint64_t)r->id;
	uint64_t held[HOLD]; /* start times */
	int nheld = 0;
	wait_go();
	for (int i = 0; i < ITERS; i++) {
		/* phases: fast (20 ms) and slow (2 s) backend */
		uint64_t base = (i / 5000) % 2 == 0 ? 20 * MS : 2 * SEC;
		if (nheld < HOLD && sl_rand01(&rng) < 0.6) {
			if (sl_limiter_acquire(g_lim)) {
				uint64_t live = atomic_fetch_add(&lim_live, 1) + 1;
				atomic_max(&lim_live_max, live);
				held[nheld++] = tick(100 * US);
				r->calls++;
			} else {
				r->refused++;
			}
		} else if (nheld > 0) {
			int k = (int)sl_rand_below(&rng, (uint64_t)nheld);
			held[k] = held[--nheld];
			atomic_fetch_sub(&lim_live, 1);
			uint64_t now = tick(100 * US);
			double u = sl_rand01(&rng);
			sl_limit_outcome o = u < 0.03 ? SL_LIMIT_DROPPED : u < 0.06 ? SL_LIMIT_IGNORE
			                                                             : SL_LIMIT_SUCCESS;
			sl_limiter_release(g_lim, now, base + sl_rand_below(&rng, base / 4), o);
		}
		uint32_t lim = sl_limiter_limit(g_lim);
		if (lim < r->lo || lim > r->hi)
			atomic_fetch_add(&violations, 1);
	}
	while (nheld > 0) {
		nheld--;
		atomic_fetch_sub(&lim_live, 1);
		sl_limiter_release(g_lim, tick(100 * US), 0, SL_LIMIT_IGNORE);
	}
	return NULL;
}

static void limiter_run(sl_limit_alg alg, uint32_t min, uint32_t max, uint32_t bound)
{
	sl_limiter_cfg c;
	sl_limiter_cfg_default(&c);
	c.alg = alg;
	c.min_limit = min;
	c.max_limit = max;
	c.initial_limit = 16;
	assert_int_equal(sl_limiter_create(&c, &g_lim), SL_OK);
	atomic_store(&violations, 0);
	atomic_store(&lim_live, 0);
	atomic_store(&lim_live_max, 0);
	lres r[NTHREADS];
	memset(r, 0, sizeof r);
	for (int i = 0; i < NTHREADS; i++) {
		r[i].id = i;
		r[i].lo = alg == SL_LIMIT_FIXED ? max : min;
		r[i].hi = max;
	}
	run(limiter_thread, r, sizeof r[0]);
	uint64_t calls = 0, refused = 0;
	for (int i = 0; i < NTHREADS; i++) {
		calls += r[i].calls;
		refused += r[i].refused;
	}
	print_message("limiter %s: %llu calls, %llu refused, max in flight %llu, final limit %u\n",
	              sl_limit_alg_name(alg), (unsigned long long)calls, (unsigned long long)refused,
	              (unsigned long long)atomic_load(&lim_live_max), sl_limiter_limit(g_lim));
	assert_int_equal(atomic_load(&violations), 0);
	assert_true(atomic_load(&lim_live_max) <= bound);
	assert_int_equal(sl_limiter_inflight(g_lim), 0);
	assert_true(calls > 0);
	sl_limiter_destroy(g_lim);
}

static void stress_limiter(void **st)
{
	atomic_store(&clk, 1000 * SEC);
	limiter_run(SL_LIMIT_FIXED, 1, 8, 8);
	limiter_run(SL_LIMIT_AIMD, 2, 20, 20);
	limiter_run(SL_LIMIT_GRADIENT, 2, 20, 20);
}

/* =================================================================== EWMA */

static sl_ewma g_ewma;

static void *ewma_thread(void *arg)
{
	uint64_t rng = (uint64_t)(uintptr_t)arg;
	wait_go();
	for (int i = 0; i < ITERS; i++) {
		sl_ewma_update(&g_ewma, 100.0 + (double)sl_rand_below(&rng, 101));
		double v = sl_ewma_get(&g_ewma);
		if (!(v >= 100.0 && v <= 200.0))
			atomic_fetch_add(&violations, 1);
	}
	return NULL;
}

static void stress_ewma(void **st)
{
	sl_ewma_init(&g_ewma, 0.2);
	atomic_store(&violations, 0);
	char dummy[NTHREADS];
	pthread_t th[NTHREADS];
	atomic_store(&go, 0);
	for (int i = 0; i < NTHREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, ewma_thread, &dummy[i]), 0);
	atomic_store_explicit(&go, 1, memory_order_release);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(atomic_load(&violations), 0);
}

/* ============================================================== balancers */

typedef struct pres {
	int id;
	const sl_balancer_ops *ops;
	void *state;
	uint64_t cnt[8];
} pres;

static void *balance_thread(void *arg)
{
	pres *r = arg;
	uint64_t rng = 99u + (uint64_t)r->id;
	uint32_t w[8] = {5, 1, 1, 1, 1, 1, 1, 1};
	uint8_t av[8] = {1, 1, 1, 1, 1, 1, 1, 1};
	uint32_t inf[8] = {0};
	double ew[8] = {0};
	sl_balance_ctx c = {8, w, av, inf, ew, 0, &rng};
	wait_go();
	for (int i = 0; i < ITERS; i++) {
		c.session_hash = sl_rand64(&rng);
		int k = r->ops->pick(r->state, &c);
		if (k < 0 || k >= 8 || !av[k]) {
			atomic_fetch_add(&violations, 1);
			continue;
		}
		r->cnt[k]++;
		inf[k] = (inf[k] + 1) % 5;
		ew[k] = (double)(1 + sl_rand_below(&rng, 1000));
	}
	return NULL;
}

static void stress_balancers(void **st)
{
	const char *const *names = sl_balancer_names();
	for (unsigned n = 0; names[n]; n++) {
		const sl_balancer_ops *ops = sl_balancer_find(names[n]);
		void *state = NULL;
		uint32_t w[8] = {5, 1, 1, 1, 1, 1, 1, 1};
		if (ops->init)
			assert_int_equal(ops->init(8, w, &state), SL_OK);
		atomic_store(&violations, 0);
		pres r[NTHREADS];
		memset(r, 0, sizeof r);
		for (int i = 0; i < NTHREADS; i++) {
			r[i].id = i;
			r[i].ops = ops;
			r[i].state = state;
		}
		run(balance_thread, r, sizeof r[0]);
		assert_int_equal(atomic_load(&violations), 0);
		uint64_t cnt[8] = {0}, tot = 0;
		for (int i = 0; i < NTHREADS; i++)
			for (int k = 0; k < 8; k++) {
				cnt[k] += r[i].cnt[k];
				tot += r[i].cnt[k];
			}
		assert_int_equal(tot, (uint64_t)NTHREADS * ITERS);
		if (strcmp(names[n], "round_robin") == 0) /* one shared counter: exact */
			for (int k = 0; k < 8; k++)
				assert_int_equal(cnt[k], tot / 8);
		if (ops->fini)
			ops->fini(state);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(stress_breaker),
		cmocka_unit_test(stress_budget),
		cmocka_unit_test(stress_limiter),
		cmocka_unit_test(stress_ewma),
		cmocka_unit_test(stress_balancers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
