/* test_pipeline.c - the pipeline end to end: completions with exact text,
 * the accounting identity under shedding, affinity, drain, cancellation,
 * deadlines, stage timeouts, the blocking adapter, backpressure, priority
 * (order, displacement, aging, release of parked requests), and bad
 * input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>
#include "sluice/sluice.h"
#include "testutil.h"

typedef struct fx {
	sl_runtime *rt;
	sl_worker *w;
	sl_pipeline *p;
	collector c;
} fx;

/* Builds rt + echo worker + default pipeline; tweak(st) may edit stages. */
static void fx_up(fx *f, unsigned shards, const sl_echo_opts *eo,
                  void (*tweak)(sl_stage_def *st, sl_pipeline_opts *po))
{
	memset(f, 0, sizeof *f);
	sl_runtime_opts ro = {.shards = shards, .no_pin = 1};
	assert_int_equal(sl_runtime_create(&ro, &f->rt), SL_OK);
	assert_int_equal(sl_worker_echo_create(eo, &f->w), SL_OK);
	sl_pipeline_opts po;
	sl_stage_def st[5];
	sl_pipeline_default(&po, st, f->w);
	if (tweak)
		tweak(st, &po);
	char err[256];
	int rc = sl_pipeline_create(f->rt, &po, &f->p, err, sizeof err);
	if (rc != SL_OK)
		fail_msg("pipeline_create: %s", err);
	coll_init(&f->c, f->rt);
}

static void fx_down(fx *f)
{
	sl_pipeline_destroy(f->p);
	sl_worker_destroy(f->w);
	sl_runtime_destroy(f->rt);
	coll_fini(&f->c);
}

static void check_identity(sl_pipeline *p)
{
	sl_snapshot s;
	assert_int_equal(sl_pipeline_snapshot(p, &s), SL_OK);
	uint64_t sum = s.in_flight;
	for (int o = 0; o < SL_OUTCOME__COUNT; o++)
		sum += s.outcomes[o];
	assert_int_equal(sum, s.submitted);
	sl_snapshot_release(&s);
}

/* ---------------------------------------------------------------- */

static void n_requests_n_completions_exact_text(void **st)
{
	fx f;
	fx_up(&f, 2, NULL, NULL);
	enum { N = 2000 };
	treq *t = calloc(N, sizeof *t);
	char (*in)[64] = calloc(N, 64);
	char sess[32];
	for (int i = 0; i < N; i++) {
		snprintf(in[i], 64, "  word%d   and\tmore \n tokens %d ", i, i * 7);
		snprintf(sess, sizeof sess, "s%d", i % 37);
		sl_request req;
		t_req(&req, &t[i], &f.c, sess, in[i]);
		assert_int_equal(sl_pipeline_submit(f.p, &req, SL_SUBMIT_BLOCK, NULL), SL_OK);
	}
	assert_int_equal(coll_wait(&f.c, N, 20000), N);
	for (int i = 0; i < N; i++) {
		char want[64];
		snprintf(want, sizeof want, "word%d and more tokens %d", i, i * 7);
		assert_int_equal(t[i].r.done, 1);
		assert_int_equal(t[i].r.outcome, SL_OUTCOME_COMPLETED);
		assert_string_equal(t[i].r.text, want);
		assert_string_equal(t[i].r.streamed, want); /* streamed == final */
		assert_string_equal(t[i].r.finish, "stop");
	}
	sl_snapshot s;
	sl_pipeline_snapshot(f.p, &s);
	assert_int_equal(s.submitted, N);
	assert_int_equal(s.outcomes[SL_OUTCOME_COMPLETED], N);
	assert_int_equal(s.in_flight, 0);
	for (unsigned k = 0; k < s.n_stages; k++)
		assert_int_equal(s.stages[k].processed, N);
	assert_int_equal(s.tokens_out, (uint64_t)N * 5);
	assert_int_equal(sl_histogram_count(s.e2e), N);
	sl_snapshot_release(&s);
	fx_down(&f);
	free(t);
	free(in);
}

static void tweak_shed_small(sl_stage_def *st, sl_pipeline_opts *po)
{
	for (int i = 0; i < 5; i++) {
		st[i].overflow = SL_OVERFLOW_SHED;
		st[i].queue = 8;
		st[i].concurrency = 4;
	}
}

typedef struct shoot_arg {
	sl_pipeline *p;
	collector *c;
	treq *t;
	int from, to;
	int accepted, door_shed;
} shoot_arg;

static void *shooter(void *a_)
{
	shoot_arg *a = a_;
	char sess[32];
	for (int i = a->from; i < a->to; i++) {
		snprintf(sess, sizeof sess, "s%d", i % 101);
		sl_request req;
		t_req(&req, &a->t[i], a->c, sess, "a b c d");
		char delay[8];
		snprintf(delay, sizeof delay, "%d", i % 3);
		sl_kv kv = {"echo_delay_ms", delay};
		req.meta = &kv;
		req.n_meta = 1;
		int rc = sl_pipeline_submit(a->p, &req, 0, NULL);
		if (rc == SL_OK)
			a->accepted++;
		else if (rc == SL_ESHED)
			a->door_shed++;
		else
			fail_msg("submit: %s", sl_strerror(rc));
	}
	return NULL;
}

static void identity_holds_under_shedding(void **st)
{
	fx f;
	fx_up(&f, 2, NULL, tweak_shed_small);
	enum { N = 20000, TH = 2 };
	treq *t = calloc(N, sizeof *t);
	shoot_arg a[TH];
	pthread_t th[TH];
	for (int i = 0; i < TH; i++) {
		a[i] = (shoot_arg){.p = f.p, .c = &f.c, .t = t, .from = i * N / TH,
		                   .to = (i + 1) * N / TH};
		pthread_create(&th[i], NULL, shooter, &a[i]);
	}
	/* snapshots taken while requests flow must all satisfy the identity */
	for (int k = 0; k < 200; k++)
		check_identity(f.p);
	int accepted = 0, door = 0;
	for (int i = 0; i < TH; i++) {
		pthread_join(th[i], NULL);
		accepted += a[i].accepted;
		door += a[i].door_shed;
	}
	assert_int_equal(coll_wait(&f.c, accepted, 20000), accepted);
	check_identity(f.p);
	sl_snapshot s;
	sl_pipeline_snapshot(f.p, &s);
	assert_int_equal(s.submitted, N); /* door sheds count as submitted + shed */
	assert_int_equal(s.in_flight, 0);
	assert_int_equal(s.outcomes[SL_OUTCOME_COMPLETED] + s.outcomes[SL_OUTCOME_SHED], N);
	assert_true(s.outcomes[SL_OUTCOME_SHED] > 0);
	assert_int_equal(s.outcomes[SL_OUTCOME_SHED], (uint64_t)(door + f.c.oc[SL_OUTCOME_SHED]));
	uint64_t stage_shed = 0;
	for (unsigned k = 0; k < s.n_stages; k++)
		stage_shed += s.stages[k].shed;
	assert_int_equal(stage_shed, s.outcomes[SL_OUTCOME_SHED]);
	sl_snapshot_release(&s);
	/* every accepted request called back exactly once, with a stage named
	 * when it was shed */
	for (int i = 0; i < N; i++) {
		assert_true(t[i].r.done <= 1);
		if (t[i].r.done && t[i].r.outcome == SL_OUTCOME_SHED) {
			assert_true(t[i].r.stage[0] != '\0');
			assert_int_equal(t[i].r.status, SL_ESHED);
		}
	}
	fx_down(&f);
	free(t);
}

static void affinity_runs_on_session_shard(void **st)
{
	fx f;
	fx_up(&f, 3, NULL, NULL);
	enum { N = 300 };
	treq *t = calloc(N, sizeof *t);
	char sess[N][16];
	for (int i = 0; i < N; i++) {
		snprintf(sess[i], sizeof sess[i], "user-%d", i % 50);
		sl_request req;
		t_req(&req, &t[i], &f.c, sess[i], "x");
		assert_int_equal(sl_pipeline_submit(f.p, &req, SL_SUBMIT_BLOCK, NULL), SL_OK);
	}
	assert_int_equal(coll_wait(&f.c, N, 10000), N);
	for (int i = 0; i < N; i++)
		assert_int_equal(t[i].r.shard, (int)sl_shard_for_session(sess[i], (size_t)-1, 3));
	fx_down(&f);
	free(t);
}

static void drain_finishes_in_flight(void **st)
{
	sl_echo_opts eo = {.delay_ms = 50};
	fx f;
	fx_up(&f, 2, &eo, NULL);
	enum { N = 500 };
	treq *t = calloc(N, sizeof *t);
	for (int i = 0; i < N; i++) {
		sl_request req;
		char sess[16];
		snprintf(sess, sizeof sess, "d%d", i);
		t_req(&req, &t[i], &f.c, sess, "drain me");
		assert_int_equal(sl_pipeline_submit(f.p, &req, SL_SUBMIT_BLOCK, NULL), SL_OK);
	}
	assert_int_equal(sl_pipeline_drain(f.p, 10000), SL_OK);
	assert_int_equal(f.c.n, N);
	assert_int_equal(f.c.oc[SL_OUTCOME_COMPLETED], N);
	/* after drain: intake is closed */
	sl_request req;
	treq late;
	t_req(&req, &late, &f.c, "late", "too late");
	assert_int_equal(sl_pipeline_submit(f.p, &req, 0, NULL), SL_ECLOSED);
	assert_int_equal(sl_pipeline_drain(f.p, 10), SL_OK); /* idempotent */
	fx_down(&f);
	free(t);
}

static void drain_timeout_cancels_the_rest(void **st)
{
	sl_echo_opts eo = {.delay_ms = 60000};
	fx f;
	fx_up(&f, 2, &eo, NULL);
	enum { N = 50 };
	treq t[N];
	for (int i = 0; i < N; i++) {
		sl_request req;
		char sess[16];
		snprintf(sess, sizeof sess, "z%d", i);
		t_req(&req, &t[i], &f.c, sess, "never answered");
		assert_int_equal(sl_pipeline_submit(f.p, &req, 0, NULL), SL_OK);
	}
	msleep(50);
	assert_int_equal(sl_pipeline_drain(f.p, 100), SL_ETIMEDOUT);
	assert_int_equal(f.c.n, N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(t[i].r.outcome, SL_OUTCOME_CANCELLED);
		assert_int_equal(t[i].r.status, SL_ECANCELED);
		assert_string_equal(t[i].r.reason, "drain timeout");
	}
	check_identity(f.p);
	fx_down(&f);
}

static void cancellation(void **st)
{
	sl_echo_opts eo = {.delay_ms = 60000};
	fx f;
	fx_up(&f, 2, &eo, NULL);
	treq t;
	sl_request req;
	t_req(&req, &t, &f.c, "c1", "cancel me");
	sl_request_handle h;
	assert_int_equal(sl_pipeline_submit(f.p, &req, 0, &h), SL_OK);
	assert_true(h.id != 0);
	msleep(30); /* reaches the worker */
	assert_int_equal(sl_pipeline_cancel(f.p, h), SL_OK);
	assert_int_equal(coll_wait(&f.c, 1, 5000), 1);
	assert_int_equal(t.r.outcome, SL_OUTCOME_CANCELLED);
	assert_string_equal(t.r.stage, "inference");
	/* an id never issued */
	sl_request_handle bogus = {.id = h.id + 1000};
	assert_int_equal(sl_pipeline_cancel(f.p, bogus), SL_ENOTFOUND);
	sl_request_handle zero = {.id = 0};
	assert_int_equal(sl_pipeline_cancel(f.p, zero), SL_ENOTFOUND);
	/* cancelling right after submit (maybe still in the inbox) */
	treq t2;
	t_req(&req, &t2, &f.c, "c2", "cancel me early");
	assert_int_equal(sl_pipeline_submit(f.p, &req, 0, &h), SL_OK);
	assert_int_equal(sl_pipeline_cancel(f.p, h), SL_OK);
	assert_int_equal(coll_wait(&f.c, 2, 5000), 2);
	assert_int_equal(t2.r.outcome, SL_OUTCOME_CANCELLED);
	check_identity(f.p);
	fx_down(&f);
}

static void deadline_expiry(void **st)
{
	sl_echo_opts eo = {.delay_ms = 5000};
	fx f;
	fx_up(&f, 1, &eo, NULL);
	treq t;
	sl_request req;
	t_req(&req, &t, &f.c, "dl", "too slow");
	req.deadline_ms = 50;
	uint64_t t0 = sl_now_ns();
	assert_int_equal(sl_pipeline_submit(f.p, &req, 0, NULL), SL_OK);
	assert_int_equal(coll_wait(&f.c, 1, 5000), 1);
	uint64_t took = sl_now_ns() - t0;
	assert_int_equal(t.r.outcome, SL_OUTCOME_EXPIRED);
	assert_int_equal(t.r.status, SL_ETIMEDOUT);
	assert_string_equal(t.r.stage, "inference");
	assert_true(took < 2000000000ull); /* not the worker's 5 s */
	sl_snapshot s;
	sl_pipeline_snapshot(f.p, &s);
	assert_int_equal(s.stages[2].expired, 1);
	sl_snapshot_release(&s);
	fx_down(&f);
}

static sl_delay_cfg slow_rag = {.delay_us = 2000000};

static void tweak_rag_timeout(sl_stage_def *st, sl_pipeline_opts *po)
{
	st[0].ops = &sl_stage_delay;
	st[0].cfg = &slow_rag;
	st[0].timeout_ms = 50;
}

static void stage_timeout_fails_request(void **st)
{
	fx f;
	fx_up(&f, 1, NULL, tweak_rag_timeout);
	treq t;
	sl_request req;
	t_req(&req, &t, &f.c, "st", "slow retrieval");
	assert_int_equal(sl_pipeline_submit(f.p, &req, 0, NULL), SL_OK);
	assert_int_equal(coll_wait(&f.c, 1, 5000), 1);
	assert_int_equal(t.r.outcome, SL_OUTCOME_FAILED);
	assert_int_equal(t.r.status, SL_ETIMEDOUT);
	assert_string_equal(t.r.stage, "rag");
	assert_non_null(strstr(t.r.reason, "timed out"));
	fx_down(&f);
}

/* --- the blocking adapter: a plain synchronous function --- */
static int upper_words(void *user, const char *prompt, size_t len, char ***tokens,
                       size_t *n)
{
	if (strstr(prompt, "fail"))
		return SL_EWORKER;
	*tokens = calloc(3, sizeof(char *));
	(*tokens)[0] = strdup("SYNC");
	(*tokens)[1] = strdup(" ");
	(*tokens)[2] = strndup(prompt, len);
	*n = 3;
	return SL_OK;
}

static void blocking_adapter(void **st)
{
	sl_runtime *rt;
	sl_runtime_opts ro = {.shards = 2, .no_pin = 1};
	assert_int_equal(sl_runtime_create(&ro, &rt), SL_OK);
	sl_worker *w;
	sl_blocking_opts bo = {.threads = 2, .queue = 8};
	assert_int_equal(sl_worker_blocking_create(upper_words, NULL, &bo, &w), SL_OK);
	sl_pipeline_opts po;
	sl_stage_def stg[5];
	sl_pipeline_default(&po, stg, w);
	sl_pipeline *p;
	assert_int_equal(sl_pipeline_create(rt, &po, &p, NULL, 0), SL_OK);
	collector c;
	coll_init(&c, rt);
	enum { N = 100 };
	treq t[N];
	for (int i = 0; i < N; i++) {
		sl_request req;
		char sess[16];
		snprintf(sess, sizeof sess, "b%d", i);
		t_req(&req, &t[i], &c, sess, i == 7 ? "please fail" : "hello");
		assert_int_equal(sl_pipeline_submit(p, &req, SL_SUBMIT_BLOCK, NULL), SL_OK);
	}
	assert_int_equal(coll_wait(&c, N, 10000), N);
	for (int i = 0; i < N; i++) {
		if (i == 7) {
			assert_int_equal(t[i].r.outcome, SL_OUTCOME_FAILED);
			assert_int_equal(t[i].r.status, SL_EWORKER);
			assert_string_equal(t[i].r.stage, "inference");
		} else {
			assert_int_equal(t[i].r.outcome, SL_OUTCOME_COMPLETED);
			assert_string_equal(t[i].r.text, "SYNC hello");
		}
	}
	sl_pipeline_destroy(p);
	sl_worker_destroy(w);
	sl_runtime_destroy(rt);
	coll_fini(&c);
}

/* --- backpressure: block returns SL_EAGAIN, then the ready callback --- */
static void tweak_tiny_block(sl_stage_def *st, sl_pipeline_opts *po)
{
	for (int i = 0; i < 5; i++) {
		st[i].queue = 2;
		st[i].concurrency = 1;
	}
}

typedef struct ready_arg {
	sl_post post;
	_Atomic int fired;
} ready_arg;

static void on_ready(void *a_)
{
	ready_arg *a = a_;
	atomic_store(&a->fired, 1);
}

static void block_backpressure_and_ready(void **st)
{
	sl_echo_opts eo = {.delay_ms = 100};
	fx f;
	fx_up(&f, 1, &eo, tweak_tiny_block);
	enum { N = 64 };
	treq t[N];
	int ok = 0, again = 0;
	for (int i = 0; i < N; i++) {
		sl_request req;
		t_req(&req, &t[i], &f.c, "same", "x y");
		int rc = sl_pipeline_submit(f.p, &req, 0, NULL);
		if (rc == SL_OK)
			ok++;
		else if (rc == SL_EAGAIN)
			again++;
		else
			fail_msg("unexpected %s", sl_strerror(rc));
	}
	/* bounded: queues 5 x 2, slots 5 x 1, inbox 2 */
	assert_true(ok <= 17);
	assert_true(again > 0);
	ready_arg ra = {.post = {.fn = on_ready, .arg = &ra}};
	atomic_init(&ra.fired, 0);
	assert_int_equal(sl_pipeline_on_ready(f.p, "same", &ra.post), SL_OK);
	assert_int_equal(coll_wait(&f.c, ok, 10000), ok);
	for (int i = 0; i < 200 && !atomic_load(&ra.fired); i++)
		msleep(10);
	assert_int_equal(atomic_load(&ra.fired), 1);
	/* nothing accepted was lost */
	assert_int_equal(f.c.oc[SL_OUTCOME_COMPLETED], ok);
	fx_down(&f);
}

/* --- priority: a queued high-priority request overtakes low ones --- */
static sl_delay_cfg gate = {.delay_us = 100000};
static void tweak_one_slot(sl_stage_def *st, sl_pipeline_opts *po)
{
	st[0].ops = &sl_stage_delay;
	st[0].cfg = &gate;
	st[0].concurrency = 1;
	st[0].queue = 16;
}

typedef struct order_rec {
	collector *c;
	int *order;
	int idx;
	_Atomic int *pos;
} order_rec;

static void order_done(void *user, const sl_result *r)
{
	order_rec *o = user;
	o->order[atomic_fetch_add(o->pos, 1)] = o->idx;
	pthread_mutex_lock(&o->c->mx);
	o->c->n++;
	pthread_cond_broadcast(&o->c->cv);
	pthread_mutex_unlock(&o->c->mx);
}

static void priority_order(void **st)
{
	fx f;
	fx_up(&f, 1, NULL, tweak_one_slot);
	int order[4];
	_Atomic int pos;
	atomic_init(&pos, 0);
	order_rec rec[4];
	int prio[4] = {1, 0, 0, 3}; /* #0 takes the slot; #3 must overtake #1, #2 */
	for (int i = 0; i < 4; i++) {
		rec[i] = (order_rec){.c = &f.c, .order = order, .idx = i, .pos = &pos};
		sl_request req;
		sl_request_init(&req);
		req.session = "p";
		req.input = "x";
		req.priority = prio[i];
		req.on_done = order_done;
		req.user = &rec[i];
		assert_int_equal(sl_pipeline_submit(f.p, &req, 0, NULL), SL_OK);
		if (i == 0)
			msleep(30);
	}
	assert_int_equal(coll_wait(&f.c, 4, 5000), 4);
	assert_int_equal(order[0], 0);
	assert_int_equal(order[1], 3);
	assert_int_equal(order[2], 1);
	assert_int_equal(order[3], 2);
	fx_down(&f);
}

static void max_tokens_and_output_bound(void **st)
{
	fx f;
	fx_up(&f, 1, NULL, NULL);
	treq t;
	sl_request req;
	t_req(&req, &t, &f.c, "m", "one two three four five");
	req.params.max_tokens = 2;
	assert_int_equal(sl_pipeline_submit(f.p, &req, 0, NULL), SL_OK);
	assert_int_equal(coll_wait(&f.c, 1, 5000), 1);
	assert_string_equal(t.r.text, "one two");
	assert_string_equal(t.r.finish, "length");
	fx_down(&f);
}

static void tweak_small_output(sl_stage_def *st, sl_pipeline_opts *po)
{
	po->max_output = 10;
	po->max_input = 64;
}

static void bad_input(void **st)
{
	fx f;
	fx_up(&f, 1, NULL, tweak_small_output);
	treq t;
	sl_request req;
	t_req(&req, &t, &f.c, "s", "fine");
	sl_request r2;

	r2 = req; r2.session = NULL;
	assert_int_equal(sl_pipeline_submit(f.p, &r2, 0, NULL), SL_EINVAL);
	r2 = req; r2.session = "";
	assert_int_equal(sl_pipeline_submit(f.p, &r2, 0, NULL), SL_EINVAL);
	r2 = req; r2.input = NULL;
	assert_int_equal(sl_pipeline_submit(f.p, &r2, 0, NULL), SL_EINVAL);
	r2 = req; r2.input = "";
	assert_int_equal(sl_pipeline_submit(f.p, &r2, 0, NULL), SL_EINVAL);
	r2 = req; r2.on_done = NULL;
	assert_int_equal(sl_pipeline_submit(f.p, &r2, 0, NULL), SL_EINVAL);
	r2 = req; r2.priority = SL_PRIORITY_LEVELS;
	assert_int_equal(sl_pipeline_submit(f.p, &r2, 0, NULL), SL_EINVAL);
	r2 = req; r2.priority = -1;
	assert_int_equal(sl_pipeline_submit(f.p, &r2, 0, NULL), SL_EINVAL);
	r2 = req; r2.n_meta = 2; r2.meta = NULL;
	assert_int_equal(sl_pipeline_submit(f.p, &r2, 0, NULL), SL_EINVAL);
	char big[100];
	memset(big, 'a', sizeof big - 1);
	big[99] = '\0';
	r2 = req; r2.input = big;
	assert_int_equal(sl_pipeline_submit(f.p, &r2, 0, NULL), SL_ETOOBIG);
	assert_int_equal(sl_pipeline_submit(NULL, &req, 0, NULL), SL_EINVAL);
	assert_int_equal(sl_pipeline_submit(f.p, NULL, 0, NULL), SL_EINVAL);
	assert_int_equal(f.c.n, 0); /* no callback for a refused submit */

	/* output over max_output: cut, finish_reason "length" */
	r2 = req; r2.input = "aaaa bbbb cccc dddd";
	assert_int_equal(sl_pipeline_submit(f.p, &r2, 0, NULL), SL_OK);
	assert_int_equal(coll_wait(&f.c, 1, 5000), 1);
	assert_int_equal(t.r.outcome, SL_OUTCOME_COMPLETED);
	assert_string_equal(t.r.text, "aaaa bbbb");
	assert_string_equal(t.r.finish, "length");
	fx_down(&f);
}

static void invalid_configuration(void **st)
{
	sl_runtime *rt;
	sl_runtime_opts ro = {.shards = 1, .no_pin = 1};
	assert_int_equal(sl_runtime_create(&ro, &rt), SL_OK);
	sl_worker *w;
	assert_int_equal(sl_worker_echo_create(NULL, &w), SL_OK);
	sl_pipeline_opts po;
	sl_stage_def stg[5];
	sl_pipeline *p = NULL;
	char err[256];

	sl_pipeline_default(&po, stg, w);
	stg[1].queue = 0;
	assert_int_equal(sl_pipeline_create(rt, &po, &p, err, sizeof err), SL_EINVAL);
	assert_string_equal(err, "stage assemble: queue must be 1..16777216 (got 0)");

	sl_pipeline_default(&po, stg, w);
	stg[2].concurrency = 0;
	assert_int_equal(sl_pipeline_create(rt, &po, &p, err, sizeof err), SL_EINVAL);
	assert_string_equal(err, "stage inference: concurrency must be 1..1048576 (got 0)");

	sl_pipeline_default(&po, stg, w);
	stg[3].name = "rag";
	assert_int_equal(sl_pipeline_create(rt, &po, &p, err, sizeof err), SL_EINVAL);
	assert_string_equal(err, "stage name rag is used twice");

	sl_pipeline_default(&po, stg, w);
	po.n_stages = 0;
	assert_int_equal(sl_pipeline_create(rt, &po, &p, err, sizeof err), SL_EINVAL);
	assert_string_equal(err, "a pipeline needs 1..16 stages (got 0)");

	sl_pipeline_default(&po, stg, NULL);
	assert_int_equal(sl_pipeline_create(rt, &po, &p, err, sizeof err), SL_EINVAL);
	assert_string_equal(err, "the inference stage needs a worker");

	sl_pipeline_default(&po, stg, w);
	stg[0].overflow = (sl_overflow)7;
	assert_int_equal(sl_pipeline_create(rt, &po, &p, err, sizeof err), SL_EINVAL);
	assert_string_equal(err, "stage rag: overflow must be block or shed");

	sl_pipeline_default(&po, stg, w);
	stg[4].ops = NULL;
	assert_int_equal(sl_pipeline_create(rt, &po, &p, err, sizeof err), SL_EINVAL);
	assert_string_equal(err, "stage stream: a stage kind (ops with run) is required");

	sl_pipeline_default(&po, stg, w);
	stg[0].ops = &sl_stage_delay; /* delay needs its cfg */
	assert_int_equal(sl_pipeline_create(rt, &po, &p, err, sizeof err), SL_EINVAL);
	assert_string_equal(err, "stage rag: invalid argument");

	assert_null(p);
	sl_echo_opts bad = {.delay_ms = 4000000};
	sl_worker *w2 = NULL;
	assert_int_equal(sl_worker_echo_create(&bad, &w2), SL_EINVAL);
	assert_null(w2);
	sl_pipeline_destroy(NULL);
	sl_worker_destroy(NULL);
	sl_worker_destroy(w);
	sl_runtime_destroy(rt);
}


/* ---------------------------------------------------------------- DAG */

static int ctx_a_run(void *ss, sl_job *job)
{
	return sl_job_add_context(job, "[A]", 3);
}
static int ctx_b_run(void *ss, sl_job *job)
{
	return sl_job_add_context(job, "[B]", 3);
}
static int fail_run(void *ss, sl_job *job)
{
	sl_job_done(job, SL_EWORKER, "retriever exploded"); /* inline failure */
	return SL_EPENDING;
}
static const sl_stage_ops ctx_a = {.kind = "ctx_a", .run = ctx_a_run};
static const sl_stage_ops ctx_b = {.kind = "ctx_b", .run = ctx_b_run};
static const sl_stage_ops failing = {.kind = "fail", .run = fail_run};

static sl_delay_cfg d20 = {.delay_us = 20000};
static const char *const no_after[] = {NULL};
static const char *const after_ab[] = {"ret_a", "ret_b"};

/* two retrievers (roots) -> assemble (join) -> inference -> post -> stream */
static void make_fanout(sl_stage_def st[6], const sl_stage_ops *a, const void *acfg,
                        const sl_stage_ops *b, const void *bcfg)
{
	sl_pipeline_opts po;
	sl_stage_def d5[5];
	sl_pipeline_default(&po, d5, NULL);
	memset(st, 0, 6 * sizeof *st);
	st[0] = d5[0];
	st[0].name = "ret_a";
	st[0].ops = a;
	st[0].cfg = acfg;
	st[0].after = no_after;
	st[0].n_after = 0;
	st[1] = d5[0];
	st[1].name = "ret_b";
	st[1].ops = b;
	st[1].cfg = bcfg;
	st[1].after = no_after;
	st[1].n_after = 0;
	st[2] = d5[1];
	st[2].after = after_ab;
	st[2].n_after = 2;
	st[3] = d5[2];
	st[4] = d5[3];
	st[5] = d5[4];
}

static void dag_up(fx *f, sl_stage_def st[6], unsigned shards)
{
	memset(f, 0, sizeof *f);
	sl_runtime_opts ro = {.shards = shards, .no_pin = 1};
	assert_int_equal(sl_runtime_create(&ro, &f->rt), SL_OK);
	assert_int_equal(sl_worker_echo_create(NULL, &f->w), SL_OK);
	sl_pipeline_opts po = {.name = "fanout", .stages = st, .n_stages = 6, .worker = f->w};
	char err[256];
	int rc = sl_pipeline_create(f->rt, &po, &f->p, err, sizeof err);
	if (rc != SL_OK)
		fail_msg("pipeline_create: %s", err);
	coll_init(&f->c, f->rt);
}

static void fanout_join_gets_both_contexts(void **st_)
{
	sl_stage_def st[6];
	make_fanout(st, &ctx_a, NULL, &ctx_b, NULL);
	fx f;
	dag_up(&f, st, 2);
	enum { N = 300 };
	treq *t = calloc(N, sizeof *t);
	for (int i = 0; i < N; i++) {
		sl_request req;
		char sess[16];
		snprintf(sess, sizeof sess, "f%d", i);
		t_req(&req, &t[i], &f.c, sess, "what now");
		assert_int_equal(sl_pipeline_submit(f.p, &req, SL_SUBMIT_BLOCK, NULL), SL_OK);
	}
	assert_int_equal(coll_wait(&f.c, N, 10000), N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(t[i].r.outcome, SL_OUTCOME_COMPLETED);
		assert_string_equal(t[i].r.text, "Context: [A][B] Question: what now");
	}
	sl_snapshot s;
	sl_pipeline_snapshot(f.p, &s);
	assert_int_equal(s.submitted, N);
	assert_int_equal(s.in_flight, 0);
	for (unsigned k = 0; k < s.n_stages; k++)
		assert_int_equal(s.stages[k].processed, N);
	sl_snapshot_release(&s);
	check_identity(f.p);
	fx_down(&f);
	free(t);
}

static void fanout_join_waits_for_the_slow_branch(void **st_)
{
	sl_stage_def st[6];
	make_fanout(st, &sl_stage_delay, &d20, &ctx_b, NULL);
	fx f;
	dag_up(&f, st, 1);
	treq t;
	sl_request req;
	t_req(&req, &t, &f.c, "slow", "q");
	assert_int_equal(sl_pipeline_submit(f.p, &req, 0, NULL), SL_OK);
	assert_int_equal(coll_wait(&f.c, 1, 5000), 1);
	assert_int_equal(t.r.outcome, SL_OUTCOME_COMPLETED);
	/* the join (stage 2) began after the 20 ms branch (0) was done; the
	 * branch's own span allows for libevent's coarse clock */
	assert_int_equal(t.r.n_stages, 6);
	assert_true(t.r.times[2].started >= t.r.times[0].finished);
	assert_true(t.r.times[2].started >= t.r.times[1].finished);
	assert_true(t.r.times[0].finished - t.r.times[0].started >= 10000000ull);
	assert_string_equal(t.r.text, "Context: [B] Question: q");
	fx_down(&f);
}

static void fanout_branch_failure_ends_once(void **st_)
{
	sl_stage_def st[6];
	/* branch a waits 20 ms on a timer, branch b fails at once: the request
	 * fails once, naming ret_b, and branch a's timer is cancelled */
	make_fanout(st, &sl_stage_delay, &d20, &failing, NULL);
	fx f;
	dag_up(&f, st, 2);
	enum { N = 100 };
	treq *t = calloc(N, sizeof *t);
	for (int i = 0; i < N; i++) {
		sl_request req;
		char sess[16];
		snprintf(sess, sizeof sess, "x%d", i);
		t_req(&req, &t[i], &f.c, sess, "q");
		assert_int_equal(sl_pipeline_submit(f.p, &req, SL_SUBMIT_BLOCK, NULL), SL_OK);
	}
	assert_int_equal(coll_wait(&f.c, N, 5000), N);
	msleep(50); /* a second callback would show up here */
	assert_int_equal(f.c.n, N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(t[i].r.done, 1);
		assert_int_equal(t[i].r.outcome, SL_OUTCOME_FAILED);
		assert_string_equal(t[i].r.stage, "ret_b");
		assert_string_equal(t[i].r.reason, "retriever exploded");
	}
	sl_snapshot s;
	sl_pipeline_snapshot(f.p, &s);
	assert_int_equal(s.in_flight, 0);
	assert_int_equal(s.stages[0].running, 0); /* the delay branch let go */
	assert_int_equal(s.stages[1].failed, N);
	sl_snapshot_release(&s);
	check_identity(f.p);
	fx_down(&f);
	free(t);
}

static void fanout_cancel_mid_branch(void **st_)
{
	static sl_delay_cfg long_d = {.delay_us = 5000000};
	sl_stage_def st[6];
	make_fanout(st, &sl_stage_delay, &long_d, &ctx_b, NULL);
	fx f;
	dag_up(&f, st, 1);
	treq t;
	sl_request req;
	t_req(&req, &t, &f.c, "c", "q");
	sl_request_handle h;
	assert_int_equal(sl_pipeline_submit(f.p, &req, 0, &h), SL_OK);
	msleep(30);
	assert_int_equal(sl_pipeline_cancel(f.p, h), SL_OK);
	assert_int_equal(coll_wait(&f.c, 1, 2000), 1);
	assert_int_equal(t.r.outcome, SL_OUTCOME_CANCELLED);
	check_identity(f.p);
	fx_down(&f);
}

static void dag_validation(void **st_)
{
	sl_runtime *rt;
	sl_runtime_opts ro = {.shards = 1, .no_pin = 1};
	assert_int_equal(sl_runtime_create(&ro, &rt), SL_OK);
	sl_worker *w;
	assert_int_equal(sl_worker_echo_create(NULL, &w), SL_OK);
	sl_stage_def st[6];
	sl_pipeline *p = NULL;
	char err[256];
	sl_pipeline_opts po = {.name = "v", .stages = st, .n_stages = 6, .worker = w};

	make_fanout(st, &ctx_a, NULL, &ctx_b, NULL);
	static const char *const bad[] = {"ret_a", "nope"};
	st[2].after = bad;
	assert_int_equal(sl_pipeline_create(rt, &po, &p, err, sizeof err), SL_EINVAL);
	assert_string_equal(err, "stage assemble: after unknown stage nope");

	make_fanout(st, &ctx_a, NULL, &ctx_b, NULL);
	static const char *const later[] = {"inference"};
	st[2].after = later;
	st[2].n_after = 1;
	assert_int_equal(sl_pipeline_create(rt, &po, &p, err, sizeof err), SL_EINVAL);
	assert_string_equal(err, "stage assemble: after inference, which is not earlier in the "
	                         "list (stages must be in topological order)");

	make_fanout(st, &ctx_a, NULL, &ctx_b, NULL);
	static const char *const only_b[] = {"ret_b"};
	st[2].after = only_b; /* ret_a leads nowhere */
	st[2].n_after = 1;
	assert_int_equal(sl_pipeline_create(rt, &po, &p, err, sizeof err), SL_EINVAL);
	assert_string_equal(err, "stage ret_a has no successor: only the last stage (stream) "
	                         "may end the pipeline");

	make_fanout(st, &ctx_a, NULL, &ctx_b, NULL);
	st[4].ops = &sl_stage_inference;
	assert_int_equal(sl_pipeline_create(rt, &po, &p, err, sizeof err), SL_EINVAL);
	assert_string_equal(err, "a pipeline has at most one inference stage");
	assert_null(p);
	sl_worker_destroy(w);
	sl_runtime_destroy(rt);
}

/* ------------------------------------------------- priority: shed, aging */

/* Waits (5 s at most) until stage s's counter at byte offset `off` of
 * sl_stage_stats equals want, or the snapshot's submitted does (off ==
 * SIZE_MAX).  A snapshot is consistent per shard, so once it shows a
 * request admitted it shows everything its admission did. */
static int wait_stat(sl_pipeline *p, unsigned s, size_t off, uint64_t want)
{
	for (int i = 0; i < 5000; i++) {
		sl_snapshot sn;
		assert_int_equal(sl_pipeline_snapshot(p, &sn), SL_OK);
		uint64_t v = off == SIZE_MAX ? sn.submitted
		                             : *(const uint64_t *)((const char *)&sn.stages[s] + off);
		sl_snapshot_release(&sn);
		if (v == want)
			return 1;
		msleep(1);
	}
	return 0;
}
#define WAIT_STAGE(p, s, field, want) \
	assert_true(wait_stat(p, s, offsetof(sl_stage_stats, field), want))

static sl_delay_cfg d2ms = {.delay_us = 2000};

/* rag (block, room for every request) -> gate: 2 slots of 2 ms, a queue of
 * 32 under shed (displacement on by default) -> the rest */
static void tweak_shed_gate(sl_stage_def *st, sl_pipeline_opts *po)
{
	st[1].name = "gate";
	st[1].ops = &sl_stage_delay;
	st[1].cfg = &d2ms;
	st[1].concurrency = 2;
	st[1].queue = 32;
	st[1].overflow = SL_OVERFLOW_SHED;
	st[1].aging_ms = 0;
}

static void shed_takes_low_priority_first(void **st_)
{
	fx f;
	fx_up(&f, 1, NULL, tweak_shed_gate);
	enum { N = 256 };
	/* half priority 0, a quarter 1, an eighth each 2 and 3: the 32
	 * priority-3 requests fit the queue, so none of them can be shed */
	static const int prio_of[8] = {0, 0, 0, 0, 1, 1, 2, 3};
	treq *t = calloc(N, sizeof *t);
	for (int i = 0; i < N; i++) {
		sl_request req;
		t_req(&req, &t[i], &f.c, "one", "a b");
		req.priority = prio_of[i % 8];
		assert_int_equal(sl_pipeline_submit(f.p, &req, 0, NULL), SL_OK);
		/* about 3 per ms: three times what 2 slots of 2 ms serve */
		if (i % 3 == 2)
			msleep(1);
		if (i % 16 == 0)
			check_identity(f.p);
	}
	assert_int_equal(coll_wait(&f.c, N, 20000), N);
	msleep(30); /* a second callback would show up here */
	int n_of[4] = {0}, shed[4] = {0}, displaced[4] = {0}, n_shed = 0, n_disp = 0;
	for (int i = 0; i < N; i++) {
		int pr = prio_of[i % 8];
		n_of[pr]++;
		assert_int_equal(t[i].r.done, 1);
		if (t[i].r.outcome == SL_OUTCOME_COMPLETED)
			continue;
		assert_int_equal(t[i].r.outcome, SL_OUTCOME_SHED);
		assert_int_equal(t[i].r.status, SL_ESHED);
		assert_string_equal(t[i].r.stage, "gate");
		shed[pr]++;
		n_shed++;
		if (strcmp(t[i].r.reason, "displaced by higher priority") == 0) {
			displaced[pr]++;
			n_disp++;
		} else {
			assert_string_equal(t[i].r.reason, "queue full");
		}
	}
	assert_int_equal(shed[3], 0); /* every priority-3 request completed */
	assert_int_equal(displaced[3], 0);
	assert_true(shed[0] > 0);
	assert_true(n_disp > 0);
	/* the lower the priority, the larger the share shed */
	assert_true(shed[0] * n_of[1] >= shed[1] * n_of[0]);
	assert_true(shed[1] * n_of[2] >= shed[2] * n_of[1]);
	sl_snapshot s;
	sl_pipeline_snapshot(f.p, &s);
	assert_int_equal(s.submitted, N);
	assert_int_equal(s.in_flight, 0);
	assert_int_equal(s.outcomes[SL_OUTCOME_SHED], n_shed);
	assert_int_equal(s.outcomes[SL_OUTCOME_COMPLETED], N - n_shed);
	assert_int_equal(s.stages[1].shed, n_shed);
	assert_int_equal(s.stages[1].displaced, n_disp);
	assert_int_equal(s.stages[0].displaced, 0);
	sl_snapshot_release(&s);
	check_identity(f.p);
	fx_down(&f);
	free(t);
}

static sl_delay_cfg d10s = {.delay_us = 10000000};

/* the first stage: one slot held 10 s, a queue of 4 under shed */
static void tweak_shed_root(sl_stage_def *st, sl_pipeline_opts *po)
{
	st[0].name = "gate";
	st[0].ops = &sl_stage_delay;
	st[0].cfg = &d10s;
	st[0].concurrency = 1;
	st[0].queue = 4;
	st[0].overflow = SL_OVERFLOW_SHED;
}

static void displaced_once_at_admission(void **st_)
{
	fx f;
	fx_up(&f, 1, NULL, tweak_shed_root);
	/* A takes the slot, B..E (priority 0) fill the queue; then H (3)
	 * displaces E, F (0) is shed itself, G (1) displaces D, I (1) C */
	enum { A, B, C, D, E, H, F, G, I, N };
	static const int prio[N] = {0, 0, 0, 0, 0, 3, 0, 1, 1};
	static const int ended_after[N] = {0, 0, 0, 0, 0, 1, 2, 3, 4};
	treq t[N];
	for (int i = 0; i < N; i++) {
		sl_request req;
		t_req(&req, &t[i], &f.c, "door", "x");
		req.priority = prio[i];
		assert_int_equal(sl_pipeline_submit(f.p, &req, 0, NULL), SL_OK);
		/* one at a time through the inbox (it holds 4) */
		assert_true(wait_stat(f.p, 0, SIZE_MAX, (uint64_t)i + 1));
		assert_int_equal(coll_wait(&f.c, ended_after[i], 5000), ended_after[i]);
	}
	const int gone[] = {E, D, C};
	for (int k = 0; k < 3; k++) {
		tres *r = &t[gone[k]].r;
		assert_int_equal(r->done, 1);
		assert_int_equal(r->outcome, SL_OUTCOME_SHED);
		assert_int_equal(r->status, SL_ESHED);
		assert_string_equal(r->stage, "gate");
		assert_string_equal(r->reason, "displaced by higher priority");
	}
	assert_int_equal(t[F].r.outcome, SL_OUTCOME_SHED);
	assert_string_equal(t[F].r.reason, "queue full");
	sl_snapshot s;
	sl_pipeline_snapshot(f.p, &s);
	assert_int_equal(s.stages[0].displaced, 3);
	assert_int_equal(s.stages[0].shed, 4);
	assert_int_equal(s.stages[0].queued, 4); /* B, H, G, I */
	assert_int_equal(s.stages[0].running, 1); /* A */
	assert_int_equal(s.outcomes[SL_OUTCOME_SHED], 4);
	assert_int_equal(s.in_flight, 5);
	sl_snapshot_release(&s);
	check_identity(f.p);
	/* the rest end once, cancelled */
	assert_int_equal(sl_pipeline_drain(f.p, 50), SL_ETIMEDOUT);
	assert_int_equal(f.c.n, N);
	const int kept[] = {A, B, H, G, I};
	for (int k = 0; k < 5; k++)
		assert_int_equal(t[kept[k]].r.outcome, SL_OUTCOME_CANCELLED);
	for (int i = 0; i < N; i++)
		assert_int_equal(t[i].r.done, 1);
	check_identity(f.p);
	fx_down(&f);
}

static uint32_t test_aging_ms;

/* the first stage: one slot of 2 ms, a queue with room for everything */
static void tweak_aging(sl_stage_def *st, sl_pipeline_opts *po)
{
	st[0].ops = &sl_stage_delay;
	st[0].cfg = &d2ms;
	st[0].concurrency = 1;
	st[0].queue = 512;
	st[0].aging_ms = test_aging_ms;
}

/* Where a priority-0 request ends among a steady stream of priority-3
 * ones (0 = first). */
static int low_among_high(uint32_t aging_ms)
{
	test_aging_ms = aging_ms;
	fx f;
	fx_up(&f, 1, NULL, tweak_aging);
	enum { BACKLOG = 5, STREAM = 100, N = BACKLOG + 1 + STREAM, LOW = BACKLOG };
	int order[N];
	_Atomic int pos;
	atomic_init(&pos, 0);
	order_rec rec[N];
	for (int i = 0; i < N; i++) {
		rec[i] = (order_rec){.c = &f.c, .order = order, .idx = i, .pos = &pos};
		sl_request req;
		sl_request_init(&req);
		req.session = "age";
		req.input = "x";
		req.priority = i == LOW ? 0 : 3;
		req.on_done = order_done;
		req.user = &rec[i];
		assert_int_equal(sl_pipeline_submit(f.p, &req, 0, NULL), SL_OK);
		/* the low one enters after the backlog and before the stream;
		 * the stream (4 per ms or so) outruns the 2 ms slot */
		if (i == LOW - 1 || i == LOW)
			msleep(3);
		else if (i > LOW && i % 4 == 0)
			msleep(1);
	}
	assert_int_equal(coll_wait(&f.c, N, 20000), N);
	int at = -1;
	for (int k = 0; k < N; k++)
		if (order[k] == LOW)
			at = k;
	fx_down(&f);
	return at;
}

static void aging_lets_low_priority_through(void **st_)
{
	/* strict priority: the low request waits for the whole stream */
	int strict = low_among_high(0);
	assert_true(strict > 53);
	/* aging 10 ms: after 30 ms it counts as priority 3 and, older than the
	 * stream's later requests, goes before them */
	int aged = low_among_high(10);
	assert_true(aged >= 0 && aged < 53);
}

static sl_delay_cfg d150ms = {.delay_us = 150000};

/* rag: 4 slots of 20 ms; gate: 1 slot of 150 ms and a queue of 1 (block) */
static void tweak_park(sl_stage_def *st, sl_pipeline_opts *po)
{
	st[0].ops = &sl_stage_delay;
	st[0].cfg = &d20;
	st[0].concurrency = 4;
	st[0].queue = 16;
	st[1].name = "gate";
	st[1].ops = &sl_stage_delay;
	st[1].cfg = &d150ms;
	st[1].concurrency = 1;
	st[1].queue = 1;
}

static void blocked_released_by_priority(void **st_)
{
	fx f;
	fx_up(&f, 1, NULL, tweak_park);
	enum { X, Y, Z1, Z2, Z3, Z4, N };
	static const int prio[N] = {0, 0, 0, 1, 3, 2};
	int order[N];
	_Atomic int pos;
	atomic_init(&pos, 0);
	order_rec rec[N];
	for (int i = 0; i < N; i++) {
		rec[i] = (order_rec){.c = &f.c, .order = order, .idx = i, .pos = &pos};
		sl_request req;
		sl_request_init(&req);
		req.session = "park";
		req.input = "x";
		req.priority = prio[i];
		req.on_done = order_done;
		req.user = &rec[i];
		assert_int_equal(sl_pipeline_submit(f.p, &req, 0, NULL), SL_OK);
		if (i == Y) { /* X in the gate's slot, Y in its queue: full */
			WAIT_STAGE(f.p, 1, running, 1);
			WAIT_STAGE(f.p, 1, queued, 1);
		}
	}
	/* Z1..Z4 finish rag and park on its done list, in that order, while X
	 * still holds the gate */
	WAIT_STAGE(f.p, 0, processed, 6);
	sl_snapshot s;
	sl_pipeline_snapshot(f.p, &s);
	assert_int_equal(s.stages[1].processed, 0);
	sl_snapshot_release(&s);
	assert_int_equal(coll_wait(&f.c, N, 10000), N);
	const int want[N] = {X, Y, Z3, Z4, Z2, Z1};
	for (int k = 0; k < N; k++)
		assert_int_equal(order[k], want[k]);
	check_identity(f.p);
	fx_down(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(n_requests_n_completions_exact_text),
		cmocka_unit_test(identity_holds_under_shedding),
		cmocka_unit_test(affinity_runs_on_session_shard),
		cmocka_unit_test(drain_finishes_in_flight),
		cmocka_unit_test(drain_timeout_cancels_the_rest),
		cmocka_unit_test(cancellation),
		cmocka_unit_test(deadline_expiry),
		cmocka_unit_test(stage_timeout_fails_request),
		cmocka_unit_test(blocking_adapter),
		cmocka_unit_test(block_backpressure_and_ready),
		cmocka_unit_test(priority_order),
		cmocka_unit_test(max_tokens_and_output_bound),
		cmocka_unit_test(bad_input),
		cmocka_unit_test(invalid_configuration),
		cmocka_unit_test(fanout_join_gets_both_contexts),
		cmocka_unit_test(fanout_join_waits_for_the_slow_branch),
		cmocka_unit_test(fanout_branch_failure_ends_once),
		cmocka_unit_test(fanout_cancel_mid_branch),
		cmocka_unit_test(dag_validation),
		cmocka_unit_test(shed_takes_low_priority_first),
		cmocka_unit_test(displaced_once_at_admission),
		cmocka_unit_test(aging_lets_low_priority_through),
		cmocka_unit_test(blocked_released_by_priority),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
