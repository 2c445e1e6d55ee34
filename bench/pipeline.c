/* bench/pipeline.c - the pipeline benchmark (a program that prints figures,
 * never a timed test).
 *
 *   pipeline [--scenario A|B|C|M] [--requests N] [--shards N] [--producers N]
 *            [--repeat N] [--no-mem]
 *
 * Prints one JSON line per scenario run: scenario, requests, seconds,
 * completed_per_s, outcomes{...}, p50_us, p99_us, p999_us (end to end,
 * completed requests), peak_rss_kib, bytes_per_queued_request, plus
 * scenario-specific fields.
 *
 *   A  zero-cost stages, echo worker, 2,000,000 requests, submit "block".
 *   B  the seed's stage costs as loop timers: RAG 5 ms, inference 10 ms
 *      (echo worker delay), inference concurrency 1024, RAG 512.
 *   C  overload: B's pipeline with "shed" on every queue, offered at 1x, 2x
 *      and 5x the rate B sustained (a line each); checks the accounting
 *      identity and compares the admitted requests' p99 with an unloaded
 *      run's.
 *   M  memory: parks N requests in queues and reports the RSS growth per
 *      queued request beyond its text (also part of every other line).
 *   P  mixed priorities at 3x overload: 10 % priority 3, the rest 0, shed
 *      with displacement; the high priority's p99 against an unloaded run,
 *      and what was shed, by priority.
 *   R  routing cost: A on one shard with the echo worker alone, then with
 *      the routing worker over two echo backends (weighted 50/50, breaker,
 *      retry budget, gradient limiter on each), runs interleaved; prints
 *      the medians and the added shard time per request in ns.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "sluice/sluice.h"
#include "worker/router/router.h"

static const char *PROMPT = "hello world from the sluice pipeline";

/* Latency buckets per priority (scenario P): 16 per power of two of µs. */
#define LB 512
/* Completion counters, one cache line per calling thread (shards call
 * on_done concurrently: one shared line would be a benchmark of its own). */
#define CSLOTS 8
typedef struct ctr_slot {
	_Alignas(64) _Atomic uint64_t done;
	_Atomic uint64_t oc[SL_OUTCOME__COUNT];
} ctr_slot;
typedef struct counters {
	ctr_slot t[CSLOTS];
	int by_prio;                      /* user = counters of this request's priority */
} counters;

static _Atomic unsigned next_slot;
static _Thread_local unsigned my_slot = CSLOTS;

static uint64_t ctr_done(const counters *c)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < CSLOTS; i++)
		n += atomic_load_explicit(&c->t[i].done, memory_order_acquire);
	return n;
}

static uint64_t ctr_oc(const counters *c, int oc)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < CSLOTS; i++)
		n += atomic_load_explicit(&c->t[i].oc[oc], memory_order_relaxed);
	return n;
}

typedef struct prio_counters {
	counters c;                       /* first: the producer passes &pc->c */
	_Atomic uint64_t lat[LB];
	_Atomic uint64_t door_shed;       /* refused by sl_pipeline_submit */
} prio_counters;

static unsigned lat_bucket(uint64_t us)
{
	if (us < 16)
		return (unsigned)us;
	unsigned lg = 63u - (unsigned)__builtin_clzll(us);
	unsigned b = (lg - 3) * 16 + (unsigned)((us >> (lg - 4)) & 15);
	return b < LB ? b : LB - 1;
}

static uint64_t bucket_us(unsigned b)
{
	if (b < 16)
		return b;
	unsigned lg = b / 16 + 3;
	return ((uint64_t)(16 + b % 16) << (lg - 4)); /* the bucket's lower edge */
}

static double lat_quantile(const prio_counters *pc, double q)
{
	uint64_t n = 0, acc = 0;
	for (unsigned b = 0; b < LB; b++)
		n += atomic_load(&pc->lat[b]);
	if (!n)
		return 0;
	for (unsigned b = 0; b < LB; b++) {
		acc += atomic_load(&pc->lat[b]);
		if ((double)acc >= q * (double)n)
			return (double)bucket_us(b);
	}
	return 0;
}

static void on_done(void *user, const sl_result *r)
{
	counters *c = user;
	if (c->by_prio && r->outcome == SL_OUTCOME_COMPLETED) {
		prio_counters *pc = (prio_counters *)c;
		atomic_fetch_add_explicit(&pc->lat[lat_bucket((r->t_end - r->t_submit) / 1000)], 1,
		                          memory_order_relaxed);
	}
	if (my_slot == CSLOTS)
		my_slot = atomic_fetch_add(&next_slot, 1) % CSLOTS;
	ctr_slot *t = &c->t[my_slot];
	atomic_fetch_add_explicit(&t->oc[r->outcome], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&t->done, 1, memory_order_release);
}

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, resident = 0;
	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static long peak_rss_kib(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

typedef struct scen {
	char name;
	uint64_t requests;
	unsigned shards;
	unsigned producers;
	int shed;
	double rate; /* offered req/s, 0 = as fast as possible */
	uint32_t rag_us, infer_ms;
	uint32_t rag_conc, rag_q, inf_conc, inf_q;
	int router; /* inference through the routing worker over 2 echo backends */
	int prio_mix; /* P: every 10th request priority 3, the rest 0 */
} scen;

static prio_counters prio_c[SL_PRIORITY_LEVELS]; /* scenario P's per-priority figures */

static char sessions[4096][8]; /* "s0".."s4095", made once */

typedef struct prod_arg {
	sl_pipeline *p;
	counters *c;
	uint64_t from, to;
	double rate; /* this producer's share */
	unsigned flags;
	int prio_mix;
	uint64_t rejected_shed, rejected_other;
} prod_arg;

static void *producer(void *a_)
{
	prod_arg *a = a_;
	sl_request req;
	sl_request_init(&req);
	req.input = PROMPT;
	req.on_done = on_done;
	req.user = a->c;
	uint64_t t0 = sl_now_ns();
	int mix = a->prio_mix;
	for (uint64_t i = a->from; i < a->to; i++) {
		req.session = sessions[i & 4095];
		if (mix) {
			req.priority = i % 10 == 0 ? 3 : 0;
			req.user = &prio_c[req.priority].c;
		}
		if (a->rate > 0) {
			uint64_t due = t0 + (uint64_t)((double)(i - a->from) * 1e9 / a->rate);
			while (sl_now_ns() < due)
				;
		}
		int rc = sl_pipeline_submit(a->p, &req, a->flags, NULL);
		if (rc == SL_ESHED && mix)
			atomic_fetch_add_explicit(&prio_c[req.priority].door_shed, 1, memory_order_relaxed);
		if (rc == SL_ESHED)
			a->rejected_shed++;
		else if (rc != SL_OK)
			a->rejected_other++;
	}
	return NULL;
}

typedef struct result {
	double seconds, completed_per_s;
	uint64_t oc[SL_OUTCOME__COUNT];
	uint64_t submitted, in_flight;
	double p50, p99, p999;
	int identity_ok;
	uint64_t rejected_other;
} result;

static int build(const scen *s, sl_runtime **rt, sl_worker **w, sl_pipeline **p)
{
	sl_runtime_opts ro = {.shards = s->shards};
	if (sl_runtime_create(&ro, rt) != SL_OK)
		return -1;
	sl_echo_opts eo = {.delay_ms = s->infer_ms};
	if (s->router) {
		sl_router_backend rb[2];
		static const char *const names[2] = {"e1", "e2"};
		for (int i = 0; i < 2; i++) {
			sl_router_backend_default(&rb[i]);
			rb[i].name = names[i];
			rb[i].weight = 50;
			rb[i].limiter.alg = SL_LIMIT_GRADIENT;
			rb[i].limiter.min_limit = 1;
			rb[i].limiter.max_limit = 1u << 20;
			rb[i].limiter.initial_limit = 1u << 16;
			if (sl_worker_echo_create(&eo, &rb[i].worker) != SL_OK)
				return -1;
		}
		sl_router_opts ro2 = {.model = "bench", .strategy = "weighted", .backends = rb,
		                      .n_backends = 2};
		char err[256];
		if (sl_worker_router_create(&ro2, w, err, sizeof err) != SL_OK) {
			fprintf(stderr, "router: %s\n", err);
			return -1;
		}
	} else if (sl_worker_echo_create(&eo, w) != SL_OK) {
		return -1;
	}
	sl_pipeline_opts po;
	sl_stage_def st[5];
	sl_pipeline_default(&po, st, *w);
	static sl_delay_cfg dc;
	dc.delay_us = s->rag_us;
	if (s->rag_us) {
		st[0].ops = &sl_stage_delay;
		st[0].cfg = &dc;
	}
	if (s->rag_conc)
		st[0].concurrency = s->rag_conc;
	if (s->rag_q)
		st[0].queue = s->rag_q;
	if (s->inf_conc)
		st[2].concurrency = s->inf_conc;
	if (s->inf_q)
		st[2].queue = s->inf_q;
	for (int i = 0; i < 5; i++)
		st[i].overflow = s->shed ? SL_OVERFLOW_SHED : SL_OVERFLOW_BLOCK;
	char err[256];
	if (sl_pipeline_create(*rt, &po, p, err, sizeof err) != SL_OK) {
		fprintf(stderr, "pipeline: %s\n", err);
		return -1;
	}
	return 0;
}

static uint64_t done_count(const counters *c, int mix)
{
	uint64_t n = ctr_done(c);
	if (mix)
		for (int k = 0; k < SL_PRIORITY_LEVELS; k++)
			n += ctr_done(&prio_c[k].c);
	return n;
}

static void run(const scen *s, result *r)
{
	if (s->prio_mix) {
		memset(prio_c, 0, sizeof prio_c);
		for (int k = 0; k < SL_PRIORITY_LEVELS; k++)
			prio_c[k].c.by_prio = 1;
	}
	sl_runtime *rt = NULL;
	sl_worker *w = NULL;
	sl_pipeline *p = NULL;
	if (build(s, &rt, &w, &p) != 0) {
		fprintf(stderr, "bench: setup failed\n");
		exit(1);
	}
	counters c;
	memset(&c, 0, sizeof c);
	unsigned np = s->producers ? s->producers : 1;
	prod_arg pa[16];
	pthread_t th[16];
	uint64_t per = s->requests / np;
	uint64_t t0 = sl_now_ns();
	for (unsigned i = 0; i < np; i++) {
		pa[i] = (prod_arg){.p = p, .c = &c, .from = i * per,
		                   .to = i + 1 == np ? s->requests : (i + 1) * per,
		                   .rate = s->rate / np,
		                   .flags = s->shed ? 0 : SL_SUBMIT_BLOCK,
		                   .prio_mix = s->prio_mix};
		pthread_create(&th[i], NULL, producer, &pa[i]);
	}
	uint64_t rejected_shed = 0;
	r->rejected_other = 0;
	for (unsigned i = 0; i < np; i++) {
		pthread_join(th[i], NULL);
		rejected_shed += pa[i].rejected_shed;
		r->rejected_other += pa[i].rejected_other;
	}
	uint64_t accepted = s->requests - rejected_shed - r->rejected_other;
	struct timespec nap = {0, 200000};
	int identity_ok = 1;
	while (done_count(&c, s->prio_mix) < accepted) {
		/* the accounting identity, checked on live snapshots */
		sl_snapshot sn;
		if (sl_pipeline_snapshot(p, &sn) == SL_OK) {
			uint64_t sum = sn.in_flight;
			for (int o = 0; o < SL_OUTCOME__COUNT; o++)
				sum += sn.outcomes[o];
			if (sum != sn.submitted)
				identity_ok = 0;
			sl_snapshot_release(&sn);
		}
		nanosleep(&nap, NULL);
	}
	uint64_t t1 = sl_now_ns();
	sl_snapshot sn;
	sl_pipeline_snapshot(p, &sn);
	r->seconds = (double)(t1 - t0) / 1e9;
	for (int o = 0; o < SL_OUTCOME__COUNT; o++)
		r->oc[o] = sn.outcomes[o];
	r->submitted = sn.submitted;
	r->in_flight = sn.in_flight;
	uint64_t sum = sn.in_flight;
	for (int o = 0; o < SL_OUTCOME__COUNT; o++)
		sum += sn.outcomes[o];
	/* door sheds appear in the snapshot as submitted + shed already */
	r->identity_ok = identity_ok && sum == sn.submitted &&
	                 sn.submitted == s->requests - r->rejected_other;
	r->completed_per_s = (double)r->oc[SL_OUTCOME_COMPLETED] / r->seconds;
	r->p50 = sl_histogram_quantile(sn.e2e, 0.5) / 1e3;
	r->p99 = sl_histogram_quantile(sn.e2e, 0.99) / 1e3;
	r->p999 = sl_histogram_quantile(sn.e2e, 0.999) / 1e3;
	sl_snapshot_release(&sn);
	sl_pipeline_destroy(p);
	sl_worker_destroy(w);
	sl_runtime_destroy(rt);
}

/* Parks n requests in stage queues (stage 0 holds one for an hour, the
 * rest wait in its queue and the inbox) and returns the RSS growth per
 * request beyond its text. */
static double bytes_per_queued(unsigned n)
{
	sl_runtime_opts ro = {.shards = 1, .no_pin = 1};
	sl_runtime *rt;
	sl_worker *w;
	sl_pipeline *p;
	sl_runtime_create(&ro, &rt);
	sl_worker_echo_create(NULL, &w);
	sl_pipeline_opts po;
	sl_stage_def st[5];
	sl_pipeline_default(&po, st, w);
	sl_delay_cfg dc = {.delay_us = 3600u * 1000000u};
	st[0].ops = &sl_stage_delay;
	st[0].cfg = &dc;
	st[0].concurrency = 1;
	st[0].queue = n;
	char err[256];
	if (sl_pipeline_create(rt, &po, &p, err, sizeof err) != SL_OK) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	counters c;
	memset(&c, 0, sizeof c);
	sl_request req;
	sl_request_init(&req);
	req.input = PROMPT;
	req.on_done = on_done;
	req.user = &c;
	char session[32];
	req.session = session;
	long before = rss_kib();
	unsigned queued = 0;
	for (unsigned i = 0; i < n + n / 2; i++) {
		snprintf(session, sizeof session, "s%u", i);
		if (sl_pipeline_submit(p, &req, 0, NULL) == SL_OK)
			queued++;
	}
	/* let the shard admit them into the stage queue */
	struct timespec nap = {0, 50000000};
	nanosleep(&nap, NULL);
	long after = rss_kib();
	double per = ((double)(after - before) * 1024.0) / queued - (double)strlen(PROMPT);
	sl_pipeline_drain(p, 0); /* everything still parked ends "cancelled" */
	sl_pipeline_destroy(p);
	sl_worker_destroy(w);
	sl_runtime_destroy(rt);
	return per;
}

/* CPU seconds of the whole process (user + system). */
static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void print(const scen *s, const result *r, double bpq, const char *extra)
{
	printf("{\"scenario\":\"%c\",\"requests\":%" PRIu64 ",\"seconds\":%.3f,"
	       "\"completed_per_s\":%.0f,\"outcomes\":{\"completed\":%" PRIu64
	       ",\"failed\":%" PRIu64 ",\"shed\":%" PRIu64 ",\"cancelled\":%" PRIu64
	       ",\"expired\":%" PRIu64 "},\"p50_us\":%.1f,\"p99_us\":%.1f,"
	       "\"p999_us\":%.1f,\"peak_rss_kib\":%ld,\"bytes_per_queued_request\":%.0f,"
	       "\"identity_ok\":%s%s}\n",
	       s->name, s->requests, r->seconds, r->completed_per_s,
	       r->oc[0], r->oc[1], r->oc[2], r->oc[3], r->oc[4], r->p50, r->p99,
	       r->p999, peak_rss_kib(), bpq, r->identity_ok ? "true" : "false",
	       extra ? extra : "");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	const char *which = "ABCMRP";
	uint64_t requests = 0;
	unsigned shards = 0, producers = 0, repeat = 1;
	int mem = 1;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--scenario") == 0 && i + 1 < argc)
			which = argv[++i];
		else if (strcmp(argv[i], "--requests") == 0 && i + 1 < argc)
			requests = strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--shards") == 0 && i + 1 < argc)
			shards = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--producers") == 0 && i + 1 < argc)
			producers = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc)
			repeat = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--no-mem") == 0)
			mem = 0; /* skip the memory probe (profiling: one process) */
		else {
			fprintf(stderr,
			        "usage: pipeline [--scenario A|B|C|M|R|P] [--requests N] [--shards N]\n"
			        "                [--producers N] [--repeat N] [--no-mem]\n");
			return 2;
		}
	}
	if (producers > 16)
		producers = 16;
	for (int i = 0; i < 4096; i++)
		snprintf(sessions[i], sizeof sessions[i], "s%d", i);
	/* measured in a child so its RSS does not count in the others' peak */
	double bpq = 0;
	int fds[2];
	if (mem && pipe(fds) == 0) {
		pid_t pid = fork();
		if (pid == 0) {
			double v = bytes_per_queued(100000);
			ssize_t wr = write(fds[1], &v, sizeof v);
			_exit(wr == sizeof v ? 0 : 1);
		}
		if (read(fds[0], &bpq, sizeof bpq) != sizeof bpq)
			bpq = -1;
		waitpid(pid, NULL, 0);
		close(fds[0]);
		close(fds[1]);
	}
	double b_rate = 0;
	for (const char *w = which; *w; w++) {
		scen s = {.name = *w, .shards = shards, .producers = producers};
		switch (*w) {
		case 'A':
			s.requests = requests ? requests : 2000000;
			break;
		case 'B':
		case 'C':
			s.requests = requests ? requests : 500000;
			s.rag_us = 5000;
			s.infer_ms = 10;
			s.rag_conc = 512;
			s.inf_conc = 1024;
			break;
		case 'R': {
			/* one shard: the difference in throughput is shard time */
			scen a = {.name = 'R', .shards = 1, .producers = 1,
			          .requests = requests ? requests : 1000000};
			scen b = a;
			b.router = 1;
			/* the producer may be the bottleneck: compare CPU time (all
			 * threads) per request, which counts the router's work wherever
			 * it runs */
			double ra[16], rr[16], ca[16], cr[16];
			unsigned n = repeat < 16 ? repeat : 16;
			result x;
			int ok = 1;
			for (unsigned k = 0; k < n; k++) {
				double c0 = cpu_s();
				run(&a, &x);
				ca[k] = (cpu_s() - c0) * 1e9 / (double)a.requests;
				ra[k] = x.completed_per_s;
				ok &= x.identity_ok;
				c0 = cpu_s();
				run(&b, &x);
				cr[k] = (cpu_s() - c0) * 1e9 / (double)b.requests;
				rr[k] = x.completed_per_s;
				ok &= x.identity_ok;
			}
			qsort(ra, n, sizeof(double), cmp_d);
			qsort(rr, n, sizeof(double), cmp_d);
			qsort(ca, n, sizeof(double), cmp_d);
			qsort(cr, n, sizeof(double), cmp_d);
			printf("{\"scenario\":\"R\",\"requests\":%" PRIu64 ",\"runs\":%u,"
			       "\"echo_per_s\":%.0f,\"router_per_s\":%.0f,\"ratio\":%.3f,"
			       "\"echo_cpu_ns_per_request\":%.0f,\"router_cpu_ns_per_request\":%.0f,"
			       "\"router_added_ns_per_request\":%.0f,\"identity_ok\":%s}\n",
			       a.requests, n, ra[n / 2], rr[n / 2], rr[n / 2] / ra[n / 2], ca[n / 2],
			       cr[n / 2], cr[n / 2] - ca[n / 2], ok ? "true" : "false");
			fflush(stdout);
			continue;
		}
		case 'P': {
			/* mixed priorities at 3x overload: B's pipeline, shed on every
			 * queue (displacement and aging at their defaults), 10 % of the
			 * requests priority 3, the rest priority 0 */
			scen b = {.name = 'P', .shards = shards, .producers = producers,
			          .rag_us = 5000, .infer_ms = 10, .rag_conc = 512, .inf_conc = 1024};
			if (b_rate <= 0) {
				scen bb = b;
				bb.requests = 200000;
				result rb;
				run(&bb, &rb);
				b_rate = rb.completed_per_s;
			}
			scen u = b;
			u.shed = 1;
			u.prio_mix = 1;
			u.rate = b_rate / 5;
			u.requests = (uint64_t)(u.rate * 2);
			result ru;
			run(&u, &ru);
			double hi_unloaded = lat_quantile(&prio_c[3], 0.99);
			scen o = u;
			o.rate = b_rate * 3;
			o.requests = (uint64_t)(o.rate * 3);
			result ro;
			run(&o, &ro);
			uint64_t hi_n = (uint64_t)(o.requests / 10);
			printf("{\"scenario\":\"P\",\"offered_per_s\":%.0f,\"capacity_per_s\":%.0f,"
			       "\"high\":{\"completed\":%" PRIu64 ",\"shed\":%" PRIu64 ",\"p99_us\":%.0f,"
			       "\"unloaded_p99_us\":%.0f,\"p99_ratio\":%.2f},"
			       "\"low\":{\"completed\":%" PRIu64 ",\"shed\":%" PRIu64 ",\"p99_us\":%.0f},"
			       "\"high_offered\":%" PRIu64 ",\"identity_ok\":%s}\n",
			       o.rate, b_rate, ctr_oc(&prio_c[3].c, SL_OUTCOME_COMPLETED),
			       ctr_oc(&prio_c[3].c, SL_OUTCOME_SHED) + atomic_load(&prio_c[3].door_shed),
			       lat_quantile(&prio_c[3], 0.99),
			       hi_unloaded, lat_quantile(&prio_c[3], 0.99) / (hi_unloaded > 0 ? hi_unloaded : 1),
			       ctr_oc(&prio_c[0].c, SL_OUTCOME_COMPLETED),
			       ctr_oc(&prio_c[0].c, SL_OUTCOME_SHED) + atomic_load(&prio_c[0].door_shed),
			       lat_quantile(&prio_c[0], 0.99),
			       hi_n, ro.identity_ok && ru.identity_ok ? "true" : "false");
			fflush(stdout);
			continue;
		}
		case 'M':
			printf("{\"scenario\":\"M\",\"requests\":100000,\"bytes_per_queued_request\":%.0f,"
			       "\"peak_rss_kib\":%ld}\n", bpq, peak_rss_kib());
			continue;
		default:
			fprintf(stderr, "unknown scenario %c\n", *w);
			return 2;
		}
		if (*w == 'C') {
			if (b_rate <= 0) { /* measure the sustainable rate first */
				scen b = s;
				b.name = 'B';
				b.requests = 200000;
				result rb;
				run(&b, &rb);
				b_rate = rb.completed_per_s;
			}
			/* unloaded reference: a fifth of capacity */
			scen u = s;
			u.name = 'C';
			u.shed = 1;
			u.rate = b_rate / 5;
			u.requests = (uint64_t)(u.rate * 2);
			result ru;
			run(&u, &ru);
			/* offered at 1x, 2x and 5x what B sustained, three seconds each:
			 * goodput, p99 of the admitted, shed count, accounting */
			static const double mult[3] = {1, 2, 5};
			for (int m = 0; m < 3; m++) {
				s.shed = 1;
				s.rate = b_rate * mult[m];
				s.requests = (uint64_t)(s.rate * 3);
				double p99s[16];
				result r;
				unsigned n = repeat < 16 ? repeat : 16;
				for (unsigned k = 0; k < n; k++) {
					run(&s, &r);
					p99s[k] = r.p99;
				}
				qsort(p99s, n, sizeof(double), cmp_d);
				r.p99 = p99s[n / 2];
				char extra[320];
				snprintf(extra, sizeof extra,
				         ",\"load\":%.0f,\"offered_per_s\":%.0f,\"capacity_per_s\":%.0f,"
				         "\"unloaded_p99_us\":%.1f,\"p99_ratio\":%.2f",
				         mult[m], s.rate, b_rate, ru.p99, r.p99 / (ru.p99 > 0 ? ru.p99 : 1));
				print(&s, &r, bpq, extra);
			}
			continue;
		}
		double rates[16];
		result r;
		for (unsigned k = 0; k < repeat && k < 16; k++) {
			run(&s, &r);
			rates[k] = r.completed_per_s;
			if (repeat > 1)
				print(&s, &r, bpq, ",\"run\":\"single\"");
		}
		if (repeat > 1) {
			qsort(rates, repeat < 16 ? repeat : 16, sizeof(double), cmp_d);
			r.completed_per_s = rates[(repeat < 16 ? repeat : 16) / 2];
		}
		if (*w == 'B')
			b_rate = r.completed_per_s;
		print(&s, &r, bpq, repeat > 1 ? ",\"run\":\"median\"" : NULL);
	}
	return 0;
}
