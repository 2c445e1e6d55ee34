/* route.c - micro-benchmark of the routing primitives (src/route/): the
 * per-call cost a routing worker pays on its success path.
 *
 *   breaker_acq_rec     sl_breaker_acquire + sl_breaker_record(ok) (closed)
 *   budget_on_request   sl_retry_budget_on_request
 *   budget_try          sl_retry_budget_try (budget never exhausted)
 *   limiter_<alg>       sl_limiter_acquire + sl_limiter_release(success)
 *   ewma_update         sl_ewma_update
 *   pick_<name>_n<N>    one balancer pick over N backends (all available)
 *   now_ns              sl_now_ns(), for scale (the caller pays it per call)
 *
 * Each case runs single-threaded and with 2 threads on the same object
 * (contended: the cache lines of the shared counters bounce).  Time is a
 * fake clock advancing 1 us per operation, so the windows rotate as they
 * would at 1M calls/s.  ns/op is the wall time of a thread divided by its
 * operations, the median of REPS runs.  Prints a table, then one JSON line
 * per case.  Usage: route [iterations] (default 2000000). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "route/balance.h"
#include "route/breaker.h"
#include "route/budget.h"
#include "route/limiter.h"

#define REPS 5
#define BASE_NS (1000ull * 1000000000ull)

static uint64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* ---- the objects under test (shared by the threads of a case) ---- */

static sl_breaker *g_breaker;
static sl_retry_budget *g_budget;
static sl_limiter *g_lim[3];
static sl_ewma g_ewma;
static void *g_bstate[8];
static volatile uint64_t sink;

typedef struct tctx {
	uint64_t now;
	uint64_t rng;
	unsigned n;
	const sl_balancer_ops *ops;
	void *state;
	uint32_t w[8];
	uint8_t av[8];
	uint32_t inf[8];
	double ew[8];
	char pad[64];
} tctx;

typedef void (*op_fn)(tctx *t, long iters);

static void op_breaker(tctx *t, long iters)
{
	for (long i = 0; i < iters; i++) {
		int probe;
		t->now += 1000;
		if (sl_breaker_acquire(g_breaker, t->now, &probe))
			sl_breaker_record(g_breaker, t->now, 1, probe);
	}
}

static void op_budget_req(tctx *t, long iters)
{
	for (long i = 0; i < iters; i++) {
		t->now += 1000;
		sl_retry_budget_on_request(g_budget, t->now);
	}
}

static void op_budget_try(tctx *t, long iters)
{
	uint64_t n = 0;
	for (long i = 0; i < iters; i++) {
		t->now += 1000;
		n += (uint64_t)sl_retry_budget_try(g_budget, t->now);
	}
	sink += n;
}

static void op_limiter(tctx *t, long iters, sl_limiter *l)
{
	for (long i = 0; i < iters; i++) {
		t->now += 1000;
		if (sl_limiter_acquire(l))
			sl_limiter_release(l, t->now, 20000000u + (i & 1023) * 1000u, SL_LIMIT_SUCCESS);
	}
}

static void op_lim_fixed(tctx *t, long iters) { op_limiter(t, iters, g_lim[0]); }
static void op_lim_aimd(tctx *t, long iters) { op_limiter(t, iters, g_lim[1]); }
static void op_lim_gradient(tctx *t, long iters) { op_limiter(t, iters, g_lim[2]); }

static void op_ewma(tctx *t, long iters)
{
	for (long i = 0; i < iters; i++)
		sl_ewma_update(&g_ewma, (double)(20000000u + (i & 1023) * 1000u));
}

static void op_pick(tctx *t, long iters)
{
	sl_balance_ctx c = {t->n, t->w, t->av, t->inf, t->ew, 0, &t->rng};
	uint64_t acc = 0;
	for (long i = 0; i < iters; i++) {
		c.session_hash = (uint64_t)i * 0x9E3779B97F4A7C15ull;
		int k = t->ops->pick(t->state, &c);
		acc += (uint64_t)k;
		t->inf[k] = (t->inf[k] + 1) & 7;
	}
	sink += acc;
}

static void op_now(tctx *t, long iters)
{
	uint64_t acc = 0;
	for (long i = 0; i < iters; i++)
		acc += sl_now_ns();
	sink += acc;
}

/* ---- the harness ---- */

typedef struct job {
	_Alignas(64) op_fn fn; /* one job per cache line pair: no false sharing */
	tctx t;
	long iters;
	_Atomic int *ready, *go;
	uint64_t ns;
} job;

static void *job_main(void *arg)
{
	job *j = arg;
	atomic_fetch_add(j->ready, 1);
	while (!atomic_load_explicit(j->go, memory_order_acquire))
		;
	uint64_t t0 = wall_ns();
	j->fn(&j->t, j->iters);
	j->ns = wall_ns() - t0;
	return NULL;
}

static void tctx_init(tctx *t, int id, const sl_balancer_ops *ops, unsigned n, void *state)
{
	memset(t, 0, sizeof *t);
	t->now = BASE_NS;
	t->rng = 0xC0FFEEu + (uint64_t)id;
	t->ops = ops;
	t->n = n;
	t->state = state;
	for (unsigned i = 0; i < 8; i++) {
		t->w[i] = i == 0 ? 9 : 1;
		t->av[i] = 1;
		t->ew[i] = 20e6 + 1e6 * i;
	}
}

/* ns/op: median over REPS; each run's figure is the mean of the threads'. */
static double measure(op_fn fn, int nthreads, long iters, const sl_balancer_ops *ops, unsigned n,
                      void *state)
{
	double v[REPS];
	for (int r = 0; r < REPS; r++) {
		_Atomic int ready = 0, go = 0;
		job j[2];
		pthread_t th[2];
		for (int i = 0; i < nthreads; i++) {
			j[i].fn = fn;
			tctx_init(&j[i].t, i, ops, n, state);
			j[i].iters = iters;
			j[i].ready = &ready;
			j[i].go = &go;
			if (pthread_create(&th[i], NULL, job_main, &j[i]) != 0) {
				perror("pthread_create");
				exit(1);
			}
		}
		while (atomic_load(&ready) < nthreads)
			;
		atomic_store_explicit(&go, 1, memory_order_release);
		double sum = 0;
		for (int i = 0; i < nthreads; i++) {
			pthread_join(th[i], NULL);
			sum += (double)j[i].ns / (double)iters;
		}
		v[r] = sum / nthreads;
	}
	qsort(v, REPS, sizeof v[0], cmp_d);
	return v[REPS / 2];
}

typedef struct result {
	char name[48];
	double ns[2]; /* 1 thread, 2 threads */
} result;

static void make_objects(void)
{
	sl_breaker_cfg bc;
	sl_breaker_cfg_default(&bc);
	sl_retry_budget_cfg uc;
	sl_retry_budget_cfg_default(&uc);
	uc.min_per_s = 1000000000u; /* try() never exhausts: time the success path */
	sl_limiter_cfg lc;
	sl_limiter_cfg_default(&lc);
	if (sl_breaker_create(&bc, &g_breaker) || sl_retry_budget_create(&uc, &g_budget) ||
	    sl_limiter_create(&lc, &g_lim[0]))
		exit(1);
	lc.alg = SL_LIMIT_AIMD;
	if (sl_limiter_create(&lc, &g_lim[1]))
		exit(1);
	lc.alg = SL_LIMIT_GRADIENT;
	if (sl_limiter_create(&lc, &g_lim[2]))
		exit(1);
	sl_ewma_init(&g_ewma, 0.1);
}

static void free_objects(void)
{
	sl_breaker_destroy(g_breaker);
	sl_retry_budget_destroy(g_budget);
	for (int i = 0; i < 3; i++)
		sl_limiter_destroy(g_lim[i]);
}

int main(int argc, char **argv)
{
	long iters = argc > 1 ? atol(argv[1]) : 2000000;
	if (iters <= 0)
		iters = 2000000;
	make_objects();
	static const struct {
		const char *name;
		op_fn fn;
	} cases[] = {
		{"now_ns", op_now},
		{"breaker_acq_rec", op_breaker},
		{"budget_on_request", op_budget_req},
		{"budget_try", op_budget_try},
		{"limiter_fixed", op_lim_fixed},
		{"limiter_aimd", op_lim_aimd},
		{"limiter_gradient", op_lim_gradient},
		{"ewma_update", op_ewma},
	};
	enum { NC = sizeof cases / sizeof cases[0] };
	const char *const *bn = sl_balancer_names();
	unsigned nb = 0;
	while (bn[nb])
		nb++;
	result *res = calloc(NC + 2 * nb, sizeof *res);
	unsigned nres = 0;
	for (unsigned k = 0; k < NC; k++) {
		snprintf(res[nres].name, sizeof res[nres].name, "%s", cases[k].name);
		for (int th = 1; th <= 2; th++)
			res[nres].ns[th - 1] = measure(cases[k].fn, th, iters, NULL, 0, NULL);
		nres++;
	}
	for (unsigned b = 0; b < nb; b++) {
		const sl_balancer_ops *ops = sl_balancer_find(bn[b]);
		unsigned ns[2] = {2, 8};
		for (int m = 0; m < 2; m++) {
			void *state = NULL;
			if (ops->init && ops->init(ns[m], NULL, &state) != SL_OK)
				exit(1);
			g_bstate[b] = state;
			snprintf(res[nres].name, sizeof res[nres].name, "pick_%s_n%u", bn[b], ns[m]);
			for (int th = 1; th <= 2; th++)
				res[nres].ns[th - 1] = measure(op_pick, th, iters, ops, ns[m], state);
			if (ops->fini)
				ops->fini(state);
			nres++;
		}
	}

	printf("%-28s %12s %14s\n", "operation", "1 thread", "2 threads");
	printf("%-28s %12s %14s\n", "", "ns/op", "ns/op (each)");
	for (unsigned i = 0; i < nres; i++)
		printf("%-28s %12.1f %14.1f\n", res[i].name, res[i].ns[0], res[i].ns[1]);
	for (unsigned i = 0; i < nres; i++)
		for (int th = 1; th <= 2; th++)
			printf("{\"bench\":\"route\",\"op\":\"%s\",\"threads\":%d,\"ns_per_op\":%.2f,"
			       "\"iterations\":%ld,\"reps\":%d}\n",
			       res[i].name, th, res[i].ns[th - 1], iters, REPS);
	free(res);
	free_objects();
	return (int)(sink & 0);
}
