/* test_route.c - the routing primitives, single-threaded with injected
 * time: circuit breaker, retry budget, backoff and PRNG, concurrency
 * limiters (fixed, AIMD, gradient), EWMA, balancers.  The thread stress
 * tests are in test_route_stress.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>
#include "route/balance.h"
#include "route/breaker.h"
#include "route/budget.h"
#include "route/limiter.h"

#define MS 1000000ull
#define SEC 1000000000ull
#define T0 (1000 * SEC) /* tests start at an arbitrary, non-zero time */

/* ================================================================ breaker */

static sl_breaker *mkbreaker(uint32_t consec, double ratio, uint32_t min_req)
{
	sl_breaker_cfg c;
	sl_breaker_cfg_default(&c);
	c.consecutive_failures = consec;
	c.failure_ratio = ratio;
	c.min_requests = min_req;
	sl_breaker *b = NULL;
	assert_int_equal(sl_breaker_create(&c, &b), SL_OK);
	return b;
}

/* One whole call: acquire (must be allowed, not a probe) and record. */
static void call(sl_breaker *b, uint64_t now, int ok)
{
	int probe = -1;
	assert_int_equal(sl_breaker_acquire(b, now, &probe), 1);
	assert_int_equal(probe, 0);
	sl_breaker_record(b, now, ok, probe);
}

static void breaker_defaults_and_create(void **st)
{
	sl_breaker_cfg c;
	sl_breaker_cfg_default(&c);
	assert_int_equal(c.consecutive_failures, 5);
	assert_true(c.failure_ratio == 0.5);
	assert_int_equal(c.window_ms, 10000);
	assert_int_equal(c.min_requests, 20);
	assert_int_equal(c.cooldown_ms, 1000);
	assert_int_equal(c.max_cooldown_ms, 30000);
	assert_int_equal(c.half_open_probes, 3);
	assert_int_equal(c.enabled, 1);
	assert_string_equal(sl_breaker_state_name(SL_BREAKER_CLOSED), "closed");
	assert_string_equal(sl_breaker_state_name(SL_BREAKER_OPEN), "open");
	assert_string_equal(sl_breaker_state_name(SL_BREAKER_HALF_OPEN), "half_open");

	sl_breaker *b = NULL;
	assert_int_equal(sl_breaker_create(NULL, &b), SL_OK); /* NULL = defaults */
	assert_int_equal(sl_breaker_state_of(b, T0), SL_BREAKER_CLOSED);
	sl_breaker_destroy(b);
	sl_breaker_destroy(NULL);
	assert_int_equal(sl_breaker_create(&c, NULL), SL_EINVAL);
	c.failure_ratio = 1.5;
	assert_int_equal(sl_breaker_create(&c, &b), SL_EINVAL);
	c.failure_ratio = 0.5;
	c.half_open_probes = 0;
	assert_int_equal(sl_breaker_create(&c, &b), SL_EINVAL);
	c.enabled = 0; /* a disabled breaker's other fields are not checked */
	assert_int_equal(sl_breaker_create(&c, &b), SL_OK);
	sl_breaker_destroy(b);
}

static void breaker_consecutive(void **st)
{
	sl_breaker *b = mkbreaker(5, 0, 0);
	uint64_t t = T0;
	for (int i = 0; i < 4; i++)
		call(b, t, 0);
	call(b, t, 1); /* a success breaks the run */
	for (int i = 0; i < 4; i++)
		call(b, t, 0);
	assert_int_equal(sl_breaker_state_of(b, t), SL_BREAKER_CLOSED);
	call(b, t, 0); /* the 5th in a row */
	assert_int_equal(sl_breaker_state_of(b, t), SL_BREAKER_OPEN);
	int probe = -1;
	assert_int_equal(sl_breaker_acquire(b, t, &probe), 0);
	assert_int_equal(sl_breaker_acquire(b, t + 999 * MS, &probe), 0);
	assert_int_equal(sl_breaker_state_of(b, t + 999 * MS), SL_BREAKER_OPEN);
	/* past the cool-down it reads half-open before anyone acquires */
	assert_int_equal(sl_breaker_state_of(b, t + 1000 * MS), SL_BREAKER_HALF_OPEN);
	sl_breaker_stats s;
	sl_breaker_stats_get(b, &s);
	assert_int_equal(s.trips, 1);
	assert_int_equal(s.rejected, 2);
	assert_int_equal(s.failures, 9);
	assert_int_equal(s.successes, 1);
	assert_int_equal(s.to_half_open, 0);
	assert_int_equal(s.cooldown_ms, 1000);
	sl_breaker_destroy(b);
}

static void breaker_ratio(void **st)
{
	/* 50 % with 20 calls needed; the consecutive rule off */
	sl_breaker *b = mkbreaker(0, 0.5, 20);
	uint64_t t = T0;
	for (int i = 0; i < 10; i++)
		call(b, t, 1);
	for (int i = 0; i < 9; i++)
		call(b, t + (uint64_t)i * MS, 0);
	/* 9/19 and below min_requests anyway */
	assert_int_equal(sl_breaker_state_of(b, t), SL_BREAKER_CLOSED);
	call(b, t + 10 * MS, 0); /* 10/20 = 0.5 >= 0.5 */
	assert_int_equal(sl_breaker_state_of(b, t + 10 * MS), SL_BREAKER_OPEN);
	sl_breaker_destroy(b);

	/* 9/20 = 45 % stays closed */
	b = mkbreaker(0, 0.5, 20);
	for (int i = 0; i < 11; i++)
		call(b, t, 1);
	for (int i = 0; i < 9; i++)
		call(b, t, 0);
	assert_int_equal(sl_breaker_state_of(b, t), SL_BREAKER_CLOSED);
	sl_breaker_destroy(b);

	/* min_requests: 100 % failures but only 19 calls */
	b = mkbreaker(0, 0.5, 20);
	for (int i = 0; i < 19; i++)
		call(b, t, 0);
	assert_int_equal(sl_breaker_state_of(b, t), SL_BREAKER_CLOSED);
	call(b, t, 0);
	assert_int_equal(sl_breaker_state_of(b, t), SL_BREAKER_OPEN);
	sl_breaker_destroy(b);
}

static void breaker_ratio_window_expiry(void **st)
{
	/* window 10 s = 10 buckets of 1 s.  Calls at T0 + 0.5 s count up to
	 * (not including) T0 + 10 s. */
	uint64_t t = T0 + 500 * MS;
	sl_breaker *b = mkbreaker(0, 0.5, 20);
	for (int i = 0; i < 10; i++)
		call(b, t, 1);
	for (int i = 0; i < 9; i++)
		call(b, t, 0);
	call(b, T0 + 9 * SEC + 999 * MS, 0); /* 10/20 within the window: trips */
	assert_int_equal(sl_breaker_state_of(b, T0 + 9 * SEC + 999 * MS), SL_BREAKER_OPEN);
	sl_breaker_destroy(b);

	b = mkbreaker(0, 0.5, 20);
	for (int i = 0; i < 10; i++)
		call(b, t, 1);
	for (int i = 0; i < 9; i++)
		call(b, t, 0);
	call(b, T0 + 10 * SEC, 0); /* the first 19 have expired: 1/1 < min_requests */
	assert_int_equal(sl_breaker_state_of(b, T0 + 10 * SEC), SL_BREAKER_CLOSED);
	/* and expiry is per bucket: 19 more failures spread over 5 s trip it */
	for (int i = 0; i < 19; i++)
		call(b, T0 + 10 * SEC + (uint64_t)i * 250 * MS, 0);
	assert_int_equal(sl_breaker_state_of(b, T0 + 15 * SEC), SL_BREAKER_OPEN);
	sl_breaker_destroy(b);
}

/* Trips b (consecutive rule 5) at now. */
static void trip(sl_breaker *b, uint64_t now)
{
	for (int i = 0; i < 5; i++)
		call(b, now, 0);
	assert_int_equal(sl_breaker_state_of(b, now), SL_BREAKER_OPEN);
}

static void breaker_half_open_probes(void **st)
{
	sl_breaker *b = mkbreaker(5, 0, 0);
	uint64_t t = T0;
	trip(b, t);
	t += 1000 * MS;
	int p[5];
	for (int i = 0; i < 3; i++) {
		p[i] = -1;
		assert_int_equal(sl_breaker_acquire(b, t, &p[i]), 1);
		assert_int_equal(p[i], 1);
	}
	assert_int_equal(sl_breaker_acquire(b, t, &p[3]), 0); /* exactly 3 */
	assert_int_equal(sl_breaker_probes_inflight(b), 3);
	assert_int_equal(sl_breaker_state_of(b, t), SL_BREAKER_HALF_OPEN);

	/* a release frees the slot and counts nothing */
	sl_breaker_release(b, p[0]);
	assert_int_equal(sl_breaker_acquire(b, t, &p[3]), 1);
	assert_int_equal(p[3], 1);
	assert_int_equal(sl_breaker_acquire(b, t, &p[4]), 0);

	/* 3 successes in a row close it; the released probe did not count */
	sl_breaker_record(b, t, 1, p[1]);
	sl_breaker_record(b, t, 1, p[2]);
	assert_int_equal(sl_breaker_state_of(b, t), SL_BREAKER_HALF_OPEN);
	assert_int_equal(sl_breaker_acquire(b, t, &p[4]), 1);
	assert_int_equal(p[4], 1);
	sl_breaker_record(b, t, 1, p[3]);
	assert_int_equal(sl_breaker_state_of(b, t), SL_BREAKER_CLOSED);
	assert_int_equal(sl_breaker_probes_inflight(b), 1);
	/* the late probe's success after the close is an ordinary call */
	sl_breaker_record(b, t, 1, p[4]);
	assert_int_equal(sl_breaker_probes_inflight(b), 0);
	int probe = -1;
	assert_int_equal(sl_breaker_acquire(b, t, &probe), 1);
	assert_int_equal(probe, 0);
	sl_breaker_record(b, t, 1, probe);

	sl_breaker_stats s;
	sl_breaker_stats_get(b, &s);
	assert_int_equal(s.trips, 1);
	assert_int_equal(s.to_half_open, 1);
	assert_int_equal(s.to_closed, 1);
	assert_int_equal(s.rejected, 2);
	assert_int_equal(s.successes, 5);
	assert_int_equal(s.failures, 5);
	/* closed again with a fresh window and run: 4 failures do not trip */
	for (int i = 0; i < 4; i++)
		call(b, t, 0);
	assert_int_equal(sl_breaker_state_of(b, t), SL_BREAKER_CLOSED);
	sl_breaker_destroy(b);
}

static void breaker_probe_failure_backoff(void **st)
{
	sl_breaker_cfg c;
	sl_breaker_cfg_default(&c);
	c.failure_ratio = 0;
	c.cooldown_ms = 1000;
	c.max_cooldown_ms = 3000;
	c.half_open_probes = 2;
	sl_breaker *b;
	assert_int_equal(sl_breaker_create(&c, &b), SL_OK);
	uint64_t t = T0;
	trip(b, t);
	uint32_t want[] = {2000, 3000, 3000};
	uint64_t cool = 1000 * MS;
	for (int k = 0; k < 3; k++) {
		int p = -1;
		assert_int_equal(sl_breaker_acquire(b, t + cool - 1, &p), 0);
		t += cool;
		assert_int_equal(sl_breaker_acquire(b, t, &p), 1);
		assert_int_equal(p, 1);
		sl_breaker_record(b, t, 0, p); /* the probe fails: open again */
		assert_int_equal(sl_breaker_state_of(b, t), SL_BREAKER_OPEN);
		sl_breaker_stats s;
		sl_breaker_stats_get(b, &s);
		assert_int_equal(s.cooldown_ms, want[k]);
		assert_int_equal(s.trips, 2 + k);
		cool = want[k] * MS;
		assert_int_equal(sl_breaker_state_of(b, t + cool - 1), SL_BREAKER_OPEN);
		assert_int_equal(sl_breaker_state_of(b, t + cool), SL_BREAKER_HALF_OPEN);
	}
	/* recover: two probe successes close it, and the cool-down resets */
	t += cool;
	int p1, p2;
	assert_int_equal(sl_breaker_acquire(b, t, &p1), 1);
	assert_int_equal(sl_breaker_acquire(b, t, &p2), 1);
	sl_breaker_record(b, t, 1, p1);
	sl_breaker_record(b, t, 1, p2);
	assert_int_equal(sl_breaker_state_of(b, t), SL_BREAKER_CLOSED);
	sl_breaker_stats s;
	sl_breaker_stats_get(b, &s);
	assert_int_equal(s.cooldown_ms, 1000);
	assert_int_equal(s.to_half_open, 4);
	assert_int_equal(s.to_closed, 1);
	trip(b, t);
	assert_int_equal(sl_breaker_state_of(b, t + 999 * MS), SL_BREAKER_OPEN);
	assert_int_equal(sl_breaker_state_of(b, t + 1000 * MS), SL_BREAKER_HALF_OPEN);
	sl_breaker_destroy(b);
}

static void breaker_release_counts_nothing(void **st)
{
	/* ratio rule: 10 ok + 9 failed, then 100 releases, then one failure.
	 * Had the releases counted as calls, 10/120 would not trip. */
	sl_breaker *b = mkbreaker(0, 0.5, 20);
	uint64_t t = T0;
	for (int i = 0; i < 10; i++)
		call(b, t, 1);
	for (int i = 0; i < 9; i++)
		call(b, t, 0);
	for (int i = 0; i < 100; i++) {
		int p = -1;
		assert_int_equal(sl_breaker_acquire(b, t, &p), 1);
		sl_breaker_release(b, p); /* neither a success nor a failure */
	}
	sl_breaker_stats s;
	sl_breaker_stats_get(b, &s);
	assert_int_equal(s.successes + s.failures, 19);
	call(b, t, 0);
	assert_int_equal(sl_breaker_state_of(b, t), SL_BREAKER_OPEN);
	sl_breaker_destroy(b);

	/* consecutive rule: releases do not break a run of failures */
	b = mkbreaker(5, 0, 0);
	for (int i = 0; i < 4; i++)
		call(b, t, 0);
	for (int i = 0; i < 100; i++) {
		int p = -1;
		assert_int_equal(sl_breaker_acquire(b, t, &p), 1);
		sl_breaker_release(b, p);
	}
	assert_int_equal(sl_breaker_state_of(b, t), SL_BREAKER_CLOSED);
	call(b, t, 0); /* the run of failures was not broken by the releases */
	assert_int_equal(sl_breaker_state_of(b, t), SL_BREAKER_OPEN);
	sl_breaker_destroy(b);
}

static void breaker_late_outcomes_and_disabled(void **st)
{
	sl_breaker *b = mkbreaker(5, 0, 0);
	uint64_t t = T0;
	int p[10];
	for (int i = 0; i < 10; i++)
		assert_int_equal(sl_breaker_acquire(b, t, &p[i]), 1);
	for (int i = 0; i < 5; i++)
		sl_breaker_record(b, t, 0, p[i]);
	assert_int_equal(sl_breaker_state_of(b, t), SL_BREAKER_OPEN);
	/* calls started before the trip end while it is open: no effect on the
	 * state (no second trip, the cool-down is not extended) */
	for (int i = 5; i < 10; i++)
		sl_breaker_record(b, t + 500 * MS, 0, p[i]);
	sl_breaker_stats s;
	sl_breaker_stats_get(b, &s);
	assert_int_equal(s.trips, 1);
	assert_int_equal(s.failures, 10);
	assert_int_equal(sl_breaker_state_of(b, t + 1000 * MS), SL_BREAKER_HALF_OPEN);
	sl_breaker_destroy(b);

	sl_breaker_cfg c;
	sl_breaker_cfg_default(&c);
	c.enabled = 0;
	assert_int_equal(sl_breaker_create(&c, &b), SL_OK);
	for (int i = 0; i < 1000; i++)
		call(b, t, 0);
	assert_int_equal(sl_breaker_state_of(b, t), SL_BREAKER_CLOSED);
	sl_breaker_destroy(b);
}

/* ================================================================= budget */

static sl_retry_budget *mkbudget(double ratio, uint32_t min_per_s, uint32_t window_ms)
{
	sl_retry_budget_cfg c = {ratio, min_per_s, window_ms};
	sl_retry_budget *b = NULL;
	assert_int_equal(sl_retry_budget_create(&c, &b), SL_OK);
	return b;
}

static int tries(sl_retry_budget *b, uint64_t now, int n)
{
	int ok = 0;
	for (int i = 0; i < n; i++)
		ok += sl_retry_budget_try(b, now);
	return ok;
}

static void budget_arithmetic(void **st)
{
	sl_retry_budget_cfg c;
	sl_retry_budget_cfg_default(&c);
	assert_true(c.ratio == 0.2);
	assert_int_equal(c.min_per_s, 10);
	assert_int_equal(c.window_ms, 10000);
	sl_retry_budget *b;
	assert_int_equal(sl_retry_budget_create(NULL, NULL), SL_EINVAL);
	c.window_ms = 0;
	assert_int_equal(sl_retry_budget_create(&c, &b), SL_EINVAL);
	c.window_ms = 10000;
	c.ratio = -0.1;
	assert_int_equal(sl_retry_budget_create(&c, &b), SL_EINVAL);
	c.ratio = NAN;
	assert_int_equal(sl_retry_budget_create(&c, &b), SL_EINVAL);

	/* defaults: 10/s * 10 s = 100 always, + 20 % of the requests */
	assert_int_equal(sl_retry_budget_create(NULL, &b), SL_OK);
	uint64_t t = T0;
	assert_int_equal(tries(b, t, 150), 100);
	for (int i = 0; i < 100; i++)
		sl_retry_budget_on_request(b, t);
	assert_int_equal(tries(b, t, 50), 20);
	sl_retry_budget_stats s;
	sl_retry_budget_stats_get(b, &s);
	assert_int_equal(s.requests, 100);
	assert_int_equal(s.retries, 120);
	assert_int_equal(s.exhausted, 80);
	uint64_t rq, rt;
	sl_retry_budget_window(b, t, &rq, &rt);
	assert_int_equal(rq, 100);
	assert_int_equal(rt, 120);
	sl_retry_budget_destroy(b);
	sl_retry_budget_destroy(NULL);

	/* ratio only, no requests: nothing */
	b = mkbudget(0.2, 0, 10000);
	assert_int_equal(tries(b, t, 3), 0);
	sl_retry_budget_destroy(b);
}

static void budget_ratio_boundary(void **st)
{
	/* retries < 0.2 * requests: with 4 requests 0 < 0.8 allows one */
	sl_retry_budget *b = mkbudget(0.2, 0, 10000);
	uint64_t t = T0;
	for (int i = 0; i < 4; i++)
		sl_retry_budget_on_request(b, t);
	assert_int_equal(tries(b, t, 3), 1);
	for (int i = 0; i < 46; i++)
		sl_retry_budget_on_request(b, t);
	/* 50 requests: bound 10, one used */
	assert_int_equal(tries(b, t, 20), 9);
	sl_retry_budget_destroy(b);
}

static void budget_window_expiry(void **st)
{
	/* window 10 s, buckets of 1 s; ratio 0.5, no floor */
	sl_retry_budget *b = mkbudget(0.5, 0, 10000);
	uint64_t t = T0 + 200 * MS;
	for (int i = 0; i < 10; i++)
		sl_retry_budget_on_request(b, t);
	assert_int_equal(tries(b, t, 3), 3);
	assert_int_equal(tries(b, T0 + 5 * SEC, 10), 2); /* 5 in all */
	/* at T0 + 10 s the requests (bucket T0) are gone, the retries of T0+5s
	 * (2 of them) are not */
	for (int i = 0; i < 10; i++)
		sl_retry_budget_on_request(b, T0 + 10 * SEC);
	uint64_t rq, rt;
	sl_retry_budget_window(b, T0 + 10 * SEC, &rq, &rt);
	assert_int_equal(rq, 10);
	assert_int_equal(rt, 2);
	assert_int_equal(tries(b, T0 + 10 * SEC, 10), 3);
	/* at T0 + 15 s those 2 expire too */
	assert_int_equal(tries(b, T0 + 15 * SEC, 10), 2);
	/* at T0 + 25 s everything has expired */
	assert_int_equal(tries(b, T0 + 25 * SEC, 10), 0);
	sl_retry_budget_window(b, T0 + 25 * SEC, &rq, &rt);
	assert_int_equal(rq, 0);
	assert_int_equal(rt, 0);
	sl_retry_budget_destroy(b);
}

static void budget_min_per_s(void **st)
{
	/* no ratio: 3/s over a 2 s window = 6 per window, refilled as the
	 * buckets (200 ms) expire */
	sl_retry_budget *b = mkbudget(0, 3, 2000);
	uint64_t t = T0;
	assert_int_equal(tries(b, t, 10), 6);
	assert_int_equal(tries(b, t + 1999 * MS, 10), 0);
	assert_int_equal(tries(b, t + 2000 * MS, 10), 6);
	/* requests do not help with ratio 0 */
	for (int i = 0; i < 1000; i++)
		sl_retry_budget_on_request(b, t + 2000 * MS);
	assert_int_equal(tries(b, t + 2000 * MS, 10), 0);
	sl_retry_budget_destroy(b);

	/* fractional: 1/s over 2.5 s = 2.5, so 3 (0, 1, 2 < 2.5) */
	b = mkbudget(0, 1, 2500);
	assert_int_equal(tries(b, t, 10), 3);
	sl_retry_budget_destroy(b);
}

/* ================================================= backoff and the PRNG */

static void backoff_bounds(void **st)
{
	uint64_t rng = 42;
	struct {
		uint32_t base, cap;
		unsigned attempt;
		uint64_t top;
	} cases[] = {
		{100, 1000, 0, 100}, {100, 1000, 1, 200}, {100, 1000, 3, 800},
		{100, 1000, 4, 1000}, {100, 1000, 40, 1000}, {100, 1000, 1000, 1000},
		{0, 1000, 5, 0},      {100, 0, 5, 0},       {25, 1000, 31, 1000},
		{UINT32_MAX, UINT32_MAX, 31, UINT32_MAX},
	};
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		uint64_t max = 0, min = UINT64_MAX;
		for (int i = 0; i < 20000; i++) {
			uint64_t v = sl_backoff_ms(cases[k].base, cases[k].cap, cases[k].attempt, &rng);
			assert_true(v <= cases[k].top);
			if (v > max)
				max = v;
			if (v < min)
				min = v;
		}
		if (cases[k].top <= 1000) { /* both ends are reachable */
			assert_int_equal(min, 0);
			assert_int_equal(max, cases[k].top);
		}
	}
}

static void backoff_distribution(void **st)
{
	/* attempt 2, base 100: uniform over [0, 400] */
	uint64_t rng = 7;
	enum { N = 200000 };
	double sum = 0;
	unsigned q[4] = {0};
	for (int i = 0; i < N; i++) {
		uint64_t v = sl_backoff_ms(100, 10000, 2, &rng);
		sum += (double)v;
		q[v * 4 / 401]++;
	}
	double mean = sum / N;
	assert_true(fabs(mean - 200.0) < 2.0);
	for (int i = 0; i < 4; i++)
		assert_true(fabs((double)q[i] / N - 0.25) < 0.01);
}

static void prng(void **st)
{
	uint64_t s = 0; /* splitmix64 accepts 0 */
	uint64_t a = sl_rand64(&s), b = sl_rand64(&s);
	assert_true(a != 0 && b != 0 && a != b);
	double sum = 0;
	for (int i = 0; i < 100000; i++) {
		double d = sl_rand01(&s);
		assert_true(d >= 0 && d < 1);
		sum += d;
	}
	assert_true(fabs(sum / 100000 - 0.5) < 0.01);
	unsigned h[10] = {0};
	for (int i = 0; i < 100000; i++)
		h[sl_rand_below(&s, 10)]++;
	for (int i = 0; i < 10; i++)
		assert_true(h[i] > 9500 && h[i] < 10500);
	assert_int_equal(sl_rand_below(&s, 0), 0);
	/* same seed, same sequence */
	uint64_t s1 = 99, s2 = 99;
	for (int i = 0; i < 100; i++)
		assert_true(sl_rand64(&s1) == sl_rand64(&s2));
}

/* ================================================================ limiter */

static sl_limiter *mklimiter(sl_limit_alg alg, uint32_t min, uint32_t max, uint32_t init)
{
	sl_limiter_cfg c;
	sl_limiter_cfg_default(&c);
	c.alg = alg;
	c.min_limit = min;
	c.max_limit = max;
	c.initial_limit = init;
	sl_limiter *l = NULL;
	assert_int_equal(sl_limiter_create(&c, &l), SL_OK);
	return l;
}

/* Acquires until refused; returns how many. */
static unsigned fill(sl_limiter *l)
{
	unsigned n = 0;
	while (sl_limiter_acquire(l))
		n++;
	return n;
}

static void drain(sl_limiter *l)
{
	while (sl_limiter_inflight(l))
		sl_limiter_release(l, T0, 0, SL_LIMIT_IGNORE);
}

/* One call ending with the backend loaded: fill to the limit, release one
 * with the sample. */
static void loaded(sl_limiter *l, uint64_t now, uint64_t lat, sl_limit_outcome o)
{
	fill(l);
	sl_limiter_release(l, now, lat, o);
}

static void limiter_defaults_and_fixed(void **st)
{
	sl_limiter_cfg c;
	sl_limiter_cfg_default(&c);
	assert_int_equal(c.alg, SL_LIMIT_FIXED);
	assert_int_equal(c.min_limit, 1);
	assert_int_equal(c.max_limit, 1024);
	assert_int_equal(c.initial_limit, 32);
	assert_int_equal(c.latency_threshold_ms, 0);
	assert_true(c.backoff_ratio == 0.9);
	assert_true(c.tolerance == 1.5);
	assert_string_equal(sl_limit_alg_name(SL_LIMIT_GRADIENT), "gradient");
	sl_limit_alg a;
	assert_int_equal(sl_limit_alg_parse("aimd", &a), SL_OK);
	assert_int_equal(a, SL_LIMIT_AIMD);
	assert_int_equal(sl_limit_alg_parse("vegas", &a), SL_EINVAL);

	sl_limiter *l;
	assert_int_equal(sl_limiter_create(NULL, &l), SL_OK);
	assert_int_equal(sl_limiter_limit(l), 1024);
	sl_limiter_destroy(l);
	sl_limiter_destroy(NULL);

	l = mklimiter(SL_LIMIT_FIXED, 1, 3, 32);
	assert_int_equal(sl_limiter_limit(l), 3);
	assert_int_equal(fill(l), 3);
	assert_int_equal(sl_limiter_inflight(l), 3);
	for (int i = 0; i < 50; i++) /* samples never move a fixed limit */
		loaded(l, T0, 10 * SEC, SL_LIMIT_DROPPED);
	assert_int_equal(sl_limiter_limit(l), 3);
	assert_int_equal(fill(l), 1); /* loaded() left 2 in flight */
	sl_limiter_release(l, T0, 0, SL_LIMIT_SUCCESS);
	assert_int_equal(sl_limiter_inflight(l), 2);
	assert_int_equal(sl_limiter_acquire(l), 1);
	drain(l);
	sl_limiter_release(l, T0, 0, SL_LIMIT_SUCCESS); /* unbalanced: ignored */
	assert_int_equal(sl_limiter_inflight(l), 0);
	sl_limiter_destroy(l);

	/* max 0 = unlimited (FIXED only) */
	l = mklimiter(SL_LIMIT_FIXED, 1, 0, 0);
	for (int i = 0; i < 100000; i++)
		assert_int_equal(sl_limiter_acquire(l), 1);
	assert_int_equal(sl_limiter_inflight(l), 100000);
	assert_int_equal(sl_limiter_limit(l), 0);
	drain(l);
	sl_limiter_destroy(l);

	/* validation */
	c.alg = SL_LIMIT_AIMD;
	c.max_limit = 0;
	assert_int_equal(sl_limiter_create(&c, &l), SL_EINVAL);
	c.max_limit = 10;
	c.min_limit = 0;
	assert_int_equal(sl_limiter_create(&c, &l), SL_EINVAL);
	c.min_limit = 11;
	assert_int_equal(sl_limiter_create(&c, &l), SL_EINVAL);
	c.min_limit = 1;
	c.backoff_ratio = 1.0;
	assert_int_equal(sl_limiter_create(&c, &l), SL_EINVAL);
	c.backoff_ratio = 0.9;
	c.alg = SL_LIMIT_GRADIENT;
	c.tolerance = 0.5;
	assert_int_equal(sl_limiter_create(&c, &l), SL_EINVAL);
	c.tolerance = 1.5;
	c.alg = (sl_limit_alg)7;
	assert_int_equal(sl_limiter_create(&c, &l), SL_EINVAL);
	/* initial is clamped into [min, max] */
	c.alg = SL_LIMIT_AIMD;
	c.min_limit = 50;
	c.max_limit = 100;
	c.initial_limit = 32;
	assert_int_equal(sl_limiter_create(&c, &l), SL_OK);
	assert_int_equal(sl_limiter_limit(l), 50);
	sl_limiter_destroy(l);
}

static void limiter_aimd(void **st)
{
	sl_limiter_cfg c;
	sl_limiter_cfg_default(&c);
	c.alg = SL_LIMIT_AIMD;
	c.min_limit = 2;
	c.max_limit = 20;
	c.initial_limit = 10;
	c.latency_threshold_ms = 100;
	sl_limiter *l;
	assert_int_equal(sl_limiter_create(&c, &l), SL_OK);
	uint64_t t = T0;
	/* fast successes while loaded: +1 each, up to max */
	for (int i = 0; i < 5; i++)
		loaded(l, t, 10 * MS, SL_LIMIT_SUCCESS);
	assert_int_equal(sl_limiter_limit(l), 15);
	for (int i = 0; i < 20; i++)
		loaded(l, t, 10 * MS, SL_LIMIT_SUCCESS);
	assert_int_equal(sl_limiter_limit(l), 20);
	/* a drop: x0.9 (floor) */
	loaded(l, t, 10 * MS, SL_LIMIT_DROPPED);
	assert_int_equal(sl_limiter_limit(l), 18);
	/* a slow success counts as a drop */
	loaded(l, t, 150 * MS, SL_LIMIT_SUCCESS);
	assert_int_equal(sl_limiter_limit(l), 16);
	/* ignore: no change */
	loaded(l, t, 150 * MS, SL_LIMIT_IGNORE);
	assert_int_equal(sl_limiter_limit(l), 16);
	/* many drops: down to min, never below */
	for (int i = 0; i < 50; i++) {
		loaded(l, t, 0, SL_LIMIT_DROPPED);
		assert_true(sl_limiter_limit(l) >= 2);
	}
	assert_int_equal(sl_limiter_limit(l), 2);
	drain(l);
	/* app-limited: one call in flight out of 20 does not grow the limit */
	for (int i = 0; i < 20; i++)
		loaded(l, t, 10 * MS, SL_LIMIT_SUCCESS);
	assert_int_equal(sl_limiter_limit(l), 20);
	drain(l);
	for (int i = 0; i < 3; i++)
		loaded(l, t, 0, SL_LIMIT_DROPPED);
	uint32_t lim = sl_limiter_limit(l);
	drain(l);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(sl_limiter_acquire(l), 1);
		sl_limiter_release(l, t, 10 * MS, SL_LIMIT_SUCCESS);
	}
	assert_int_equal(sl_limiter_limit(l), lim);
	sl_limiter_destroy(l);
}

static void limiter_aimd_baseline(void **st)
{
	/* threshold 0: slower than twice the tracked minimum is a drop */
	sl_limiter *l = mklimiter(SL_LIMIT_AIMD, 1, 100, 10);
	uint64_t t = T0;
	for (int i = 0; i < 5; i++)
		loaded(l, t, 20 * MS, SL_LIMIT_SUCCESS); /* first sample: no baseline yet */
	assert_int_equal(sl_limiter_limit(l), 15);
	loaded(l, t, 39 * MS, SL_LIMIT_SUCCESS); /* < 40 ms: still fast */
	assert_int_equal(sl_limiter_limit(l), 16);
	loaded(l, t, 41 * MS, SL_LIMIT_SUCCESS); /* > 40 ms: a drop */
	assert_int_equal(sl_limiter_limit(l), 14);
	/* the backend becomes slower for good (60 ms): decreases at first... */
	for (int i = 0; i < 10; i++)
		loaded(l, t + (uint64_t)i * MS, 60 * MS, SL_LIMIT_SUCCESS);
	assert_true(sl_limiter_limit(l) < 14);
	/* ...and within two baseline periods (30 s each) 60 ms is the norm */
	uint32_t low = sl_limiter_limit(l);
	t += 61 * SEC;
	for (int i = 0; i < 30; i++)
		loaded(l, t + (uint64_t)i * MS, 60 * MS, SL_LIMIT_SUCCESS);
	assert_true(sl_limiter_limit(l) > low + 20);
	drain(l);
	sl_limiter_destroy(l);
}

static void limiter_gradient(void **st)
{
	sl_limiter *l = mklimiter(SL_LIMIT_GRADIENT, 1, 1024, 32);
	uint64_t t = T0;
	/* steady 20 ms while loaded: no queueing seen, the limit grows */
	for (int i = 0; i < 30; i++)
		loaded(l, t, 20 * MS, SL_LIMIT_SUCCESS);
	uint32_t steady = sl_limiter_limit(l);
	assert_true(steady > 32);
	/* latency rises to 2 s: the limit falls */
	uint32_t low = steady;
	for (int i = 0; i < 60; i++) {
		loaded(l, t, 2 * SEC, SL_LIMIT_SUCCESS);
		uint32_t v = sl_limiter_limit(l);
		assert_true(v >= 1 && v <= 1024);
		if (v < low)
			low = v;
	}
	print_message("gradient: steady %u, after 60 slow samples %u (low %u)\n", steady,
	              sl_limiter_limit(l), low);
	assert_true(low < steady / 4);
	assert_true(low < 16);
	/* back to 20 ms: it recovers */
	for (int i = 0; i < 100; i++)
		loaded(l, t, 20 * MS, SL_LIMIT_SUCCESS);
	print_message("gradient: after 100 fast samples %u\n", sl_limiter_limit(l));
	assert_true(sl_limiter_limit(l) >= steady);
	/* a drop halves the gradient step */
	uint32_t before = sl_limiter_limit(l);
	loaded(l, t, 0, SL_LIMIT_DROPPED);
	assert_true(sl_limiter_limit(l) < before);
	drain(l);
	/* app-limited (1 in flight): fast samples do not grow the limit ... */
	before = sl_limiter_limit(l);
	for (int i = 0; i < 50; i++) {
		assert_int_equal(sl_limiter_acquire(l), 1);
		sl_limiter_release(l, t, 20 * MS, SL_LIMIT_SUCCESS);
	}
	assert_int_equal(sl_limiter_limit(l), before);
	/* ... but a latency rise still cuts it */
	for (int i = 0; i < 50; i++) {
		assert_int_equal(sl_limiter_acquire(l), 1);
		sl_limiter_release(l, t, 2 * SEC, SL_LIMIT_SUCCESS);
	}
	assert_true(sl_limiter_limit(l) < before);
	sl_limiter_destroy(l);

	/* bounded by max */
	l = mklimiter(SL_LIMIT_GRADIENT, 4, 40, 32);
	for (int i = 0; i < 200; i++)
		loaded(l, t, 20 * MS, SL_LIMIT_SUCCESS);
	assert_int_equal(sl_limiter_limit(l), 40);
	for (int i = 0; i < 200; i++)
		loaded(l, t, 0, SL_LIMIT_DROPPED);
	assert_int_equal(sl_limiter_limit(l), 4);
	drain(l);
	sl_limiter_destroy(l);
}

/* =================================================================== EWMA */

static void ewma(void **st)
{
	sl_ewma e;
	sl_ewma_init(&e, 0.5);
	assert_true(sl_ewma_get(&e) == 0);
	sl_ewma_update(&e, 10);
	assert_true(sl_ewma_get(&e) == 10);
	sl_ewma_update(&e, 20);
	assert_true(sl_ewma_get(&e) == 15);
	sl_ewma_update(&e, 15);
	assert_true(sl_ewma_get(&e) == 15);
	sl_ewma_init(&e, 0.1);
	for (int i = 0; i < 200; i++)
		sl_ewma_update(&e, 100e6);
	assert_true(fabs(sl_ewma_get(&e) - 100e6) < 1);
	for (int i = 0; i < 200; i++)
		sl_ewma_update(&e, 1e6);
	assert_true(fabs(sl_ewma_get(&e) - 1e6) < 1e3);
}

/* =============================================================== balancers */

typedef struct pool {
	const sl_balancer_ops *ops;
	void *state;
	sl_balance_ctx c;
	uint32_t w[8];
	uint8_t av[8];
	uint32_t inf[8];
	double ew[8];
	uint64_t rng;
} pool;

static void pool_init(pool *p, const char *name, unsigned n)
{
	memset(p, 0, sizeof *p);
	p->ops = sl_balancer_find(name);
	assert_non_null(p->ops);
	assert_string_equal(p->ops->name, name);
	for (unsigned i = 0; i < n; i++)
		p->av[i] = 1;
	p->rng = 12345;
	p->c = (sl_balance_ctx){n, p->w, p->av, p->inf, p->ew, 0, &p->rng};
	if (p->ops->init)
		assert_int_equal(p->ops->init(n, p->w, &p->state), SL_OK);
}

static void pool_fini(pool *p)
{
	if (p->ops->fini)
		p->ops->fini(p->state);
}

static int pick(pool *p)
{
	int i = p->ops->pick(p->state, &p->c);
	if (i >= 0) {
		assert_true((unsigned)i < p->c.n);
		assert_true(p->av[i]);
	}
	return i;
}

static uint64_t shash(int i)
{
	char k[32];
	int n = snprintf(k, sizeof k, "session-%d", i);
	return XXH64(k, (size_t)n, 0);
}

static void balance_names(void **st)
{
	const char *want[] = {"fallback", "weighted", "sticky", "round_robin", "least_inflight", "p2c"};
	const char *const *names = sl_balancer_names();
	unsigned n = 0;
	while (names[n]) {
		assert_string_equal(names[n], want[n]);
		assert_non_null(sl_balancer_find(names[n]));
		assert_non_null(sl_balancer_find(names[n])->pick);
		n++;
	}
	assert_int_equal(n, 6);
	assert_null(sl_balancer_find("random"));
	assert_null(sl_balancer_find(NULL));
	/* every strategy: nothing available -> -1; one available -> it */
	for (unsigned k = 0; k < n; k++) {
		pool p;
		pool_init(&p, names[k], 4);
		memset(p.av, 0, sizeof p.av);
		assert_int_equal(pick(&p), -1);
		p.av[2] = 1;
		for (int i = 0; i < 20; i++) {
			p.c.session_hash = shash(i);
			assert_int_equal(pick(&p), 2);
		}
		p.c.n = 0;
		assert_int_equal(pick(&p), -1);
		pool_fini(&p);
	}
}

static void balance_fallback(void **st)
{
	pool p;
	pool_init(&p, "fallback", 3);
	assert_int_equal(pick(&p), 0);
	p.av[0] = 0;
	assert_int_equal(pick(&p), 1);
	p.av[1] = 0;
	assert_int_equal(pick(&p), 2);
	p.av[0] = 1;
	assert_int_equal(pick(&p), 0);
	pool_fini(&p);
}

static void balance_weighted(void **st)
{
	pool p;
	pool_init(&p, "weighted", 2);
	p.w[0] = 90;
	p.w[1] = 10;
	unsigned cnt[2] = {0};
	for (int i = 0; i < 100000; i++)
		cnt[pick(&p)]++;
	print_message("weighted 90/10: %u / %u\n", cnt[0], cnt[1]);
	assert_true(fabs(cnt[0] / 100000.0 - 0.9) <= 0.01);
	/* an unavailable arm gets nothing */
	p.av[0] = 0;
	for (int i = 0; i < 1000; i++)
		assert_int_equal(pick(&p), 1);
	pool_fini(&p);

	/* weight 0 is a standby: only when no weighted arm is available */
	pool_init(&p, "weighted", 3);
	p.w[0] = 1;
	p.w[1] = 0;
	p.w[2] = 3;
	unsigned c3[3] = {0};
	for (int i = 0; i < 40000; i++)
		c3[pick(&p)]++;
	assert_int_equal(c3[1], 0);
	assert_true(fabs(c3[2] / 40000.0 - 0.75) < 0.01);
	p.av[0] = p.av[2] = 0;
	assert_int_equal(pick(&p), 1);
	pool_fini(&p);

	/* all 0 = equal */
	pool_init(&p, "weighted", 4);
	unsigned c4[4] = {0};
	for (int i = 0; i < 40000; i++)
		c4[pick(&p)]++;
	for (int i = 0; i < 4; i++)
		assert_true(fabs(c4[i] / 40000.0 - 0.25) < 0.01);
	pool_fini(&p);
}

static void balance_sticky(void **st)
{
	pool p;
	pool_init(&p, "sticky", 2);
	p.w[0] = 90;
	p.w[1] = 10;
	/* 100,000 distinct sessions: 90/10 within 1 % */
	unsigned cnt[2] = {0};
	for (int i = 0; i < 100000; i++) {
		p.c.session_hash = shash(i);
		cnt[pick(&p)]++;
	}
	print_message("sticky 90/10 over 100000 sessions: %u / %u\n", cnt[0], cnt[1]);
	assert_true(fabs(cnt[0] / 100000.0 - 0.9) <= 0.01);

	/* 10,000 sessions: within 2 %, each always on the same arm */
	enum { NS = 10000 };
	static int8_t arm[NS];
	unsigned c2[2] = {0};
	for (int i = 0; i < NS; i++) {
		p.c.session_hash = shash(i);
		arm[i] = (int8_t)pick(&p);
		c2[arm[i]]++;
	}
	assert_true(fabs(c2[0] / (double)NS - 0.9) <= 0.02);
	for (int r = 0; r < 3; r++)
		for (int i = NS - 1; i >= 0; i--) { /* another order, interleaved */
			p.c.session_hash = shash(i);
			assert_int_equal(pick(&p), arm[i]);
		}
	pool_fini(&p);

	/* 3 arms 50/30/20; arm 1 goes away and comes back */
	pool_init(&p, "sticky", 3);
	p.w[0] = 50;
	p.w[1] = 30;
	p.w[2] = 20;
	unsigned c3[3] = {0}, moved[3] = {0};
	for (int i = 0; i < NS; i++) {
		p.c.session_hash = shash(i);
		arm[i] = (int8_t)pick(&p);
		c3[arm[i]]++;
	}
	for (int i = 0; i < 3; i++)
		assert_true(fabs(c3[i] / (double)NS - p.w[i] / 100.0) <= 0.02);
	p.av[1] = 0;
	for (int i = 0; i < NS; i++) {
		p.c.session_hash = shash(i);
		int a = pick(&p);
		assert_int_equal(pick(&p), a); /* deterministic */
		if (arm[i] != 1)
			assert_int_equal(a, arm[i]); /* the others stay put */
		else
			moved[a]++;
	}
	/* the displaced sessions spread 50:20 over arms 0 and 2 */
	assert_int_equal(moved[1], 0);
	double share0 = moved[0] / (double)(moved[0] + moved[2]);
	assert_true(fabs(share0 - 50.0 / 70.0) < 0.05);
	p.av[1] = 1;
	for (int i = 0; i < NS; i++) {
		p.c.session_hash = shash(i);
		assert_int_equal(pick(&p), arm[i]); /* back home */
	}
	pool_fini(&p);

	/* equal weights: all 0 */
	pool_init(&p, "sticky", 4);
	unsigned c4[4] = {0};
	for (int i = 0; i < NS; i++) {
		p.c.session_hash = shash(i);
		c4[pick(&p)]++;
	}
	for (int i = 0; i < 4; i++)
		assert_true(fabs(c4[i] / (double)NS - 0.25) <= 0.02);
	pool_fini(&p);
}

static void balance_round_robin(void **st)
{
	pool p;
	pool_init(&p, "round_robin", 4);
	assert_non_null(p.state);
	unsigned cnt[4] = {0};
	int prev = -1;
	for (int i = 0; i < 400; i++) {
		int k = pick(&p);
		if (prev >= 0)
			assert_int_equal(k, (prev + 1) % 4);
		prev = k;
		cnt[k]++;
	}
	for (int i = 0; i < 4; i++)
		assert_int_equal(cnt[i], 100);
	p.av[2] = 0;
	memset(cnt, 0, sizeof cnt);
	for (int i = 0; i < 300; i++)
		cnt[pick(&p)]++;
	assert_int_equal(cnt[2], 0);
	assert_true(cnt[0] == 100 && cnt[1] == 100 && cnt[3] == 100);
	/* a NULL state (init not called) still picks among the available */
	for (int i = 0; i < 100; i++) {
		int k = p.ops->pick(NULL, &p.c);
		assert_true(k >= 0 && k != 2);
	}
	pool_fini(&p);
}

static void balance_least_inflight(void **st)
{
	pool p;
	pool_init(&p, "least_inflight", 4);
	uint32_t inf[4] = {5, 2, 7, 2};
	memcpy(p.inf, inf, sizeof inf);
	unsigned cnt[4] = {0};
	for (int i = 0; i < 10000; i++)
		cnt[pick(&p)]++;
	assert_int_equal(cnt[0] + cnt[2], 0);
	assert_true(cnt[1] > 4500 && cnt[3] > 4500); /* ties: random */
	p.av[1] = 0;
	assert_int_equal(pick(&p), 3);
	p.av[3] = 0;
	assert_int_equal(pick(&p), 0);
	/* all tied: uniform */
	memset(p.inf, 0, sizeof p.inf);
	memset(p.av, 1, 4);
	memset(cnt, 0, sizeof cnt);
	for (int i = 0; i < 40000; i++)
		cnt[pick(&p)]++;
	for (int i = 0; i < 4; i++)
		assert_true(fabs(cnt[i] / 40000.0 - 0.25) < 0.01);
	pool_fini(&p);
}

static void balance_p2c(void **st)
{
	pool p;
	pool_init(&p, "p2c", 2);
	p.ew[0] = 100 * MS;
	p.ew[1] = 50 * MS;
	for (int i = 0; i < 100; i++)
		assert_int_equal(pick(&p), 1); /* two distinct of two: always the better */
	p.inf[1] = 3;                      /* 50*(3+1) = 200 > 100*(0+1) */
	for (int i = 0; i < 100; i++)
		assert_int_equal(pick(&p), 0);
	p.ew[0] = 0; /* unsampled first */
	p.inf[0] = 100;
	for (int i = 0; i < 100; i++)
		assert_int_equal(pick(&p), 0);
	pool_fini(&p);

	/* three: the best wins whenever it is drawn (2/3), the worst never */
	pool_init(&p, "p2c", 3);
	p.ew[0] = 30 * MS;
	p.ew[1] = 10 * MS;
	p.ew[2] = 20 * MS;
	unsigned cnt[3] = {0};
	for (int i = 0; i < 30000; i++)
		cnt[pick(&p)]++;
	assert_int_equal(cnt[0], 0);
	assert_true(fabs(cnt[1] / 30000.0 - 2.0 / 3.0) < 0.02);
	p.av[1] = 0;
	for (int i = 0; i < 100; i++)
		assert_int_equal(pick(&p), 2);
	pool_fini(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(breaker_defaults_and_create),
		cmocka_unit_test(breaker_consecutive),
		cmocka_unit_test(breaker_ratio),
		cmocka_unit_test(breaker_ratio_window_expiry),
		cmocka_unit_test(breaker_half_open_probes),
		cmocka_unit_test(breaker_probe_failure_backoff),
		cmocka_unit_test(breaker_release_counts_nothing),
		cmocka_unit_test(breaker_late_outcomes_and_disabled),
		cmocka_unit_test(budget_arithmetic),
		cmocka_unit_test(budget_ratio_boundary),
		cmocka_unit_test(budget_window_expiry),
		cmocka_unit_test(budget_min_per_s),
		cmocka_unit_test(backoff_bounds),
		cmocka_unit_test(backoff_distribution),
		cmocka_unit_test(prng),
		cmocka_unit_test(limiter_defaults_and_fixed),
		cmocka_unit_test(limiter_aimd),
		cmocka_unit_test(limiter_aimd_baseline),
		cmocka_unit_test(limiter_gradient),
		cmocka_unit_test(ewma),
		cmocka_unit_test(balance_names),
		cmocka_unit_test(balance_fallback),
		cmocka_unit_test(balance_weighted),
		cmocka_unit_test(balance_sticky),
		cmocka_unit_test(balance_round_robin),
		cmocka_unit_test(balance_least_inflight),
		cmocka_unit_test(balance_p2c),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
