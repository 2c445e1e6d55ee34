/* test_router.c - the routing worker over scripted backends: fail-over,
 * breakers, retry classes and budget, strategies, cancellation, deadlines,
 * every request ending exactly once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include "testutil.h"
#include "worker/router/router.h"

/* ---- a scripted backend ---- */

enum { M_OK, M_CONNECT, M_HTTP400, M_HTTP500, M_AFTER_TOKEN, M_HANG, M_FAIL_ODD };

typedef struct tw {
	char name[8];
	_Atomic int mode;
	_Atomic int calls, cancels, hanging;
} tw;

static int tw_init(const void *cfg, void **state)
{
	*state = (void *)cfg;
	return SL_OK;
}

/* The shard state is the tw itself (start copies the pointer). */
static int tw_start(void *state, struct event_base *base, unsigned shard, void **ss)
{
	(void)base;
	(void)shard;
	*ss = state;
	return SL_OK;
}

static int tw_infer_real(void *ss, sl_infer *call)
{
	tw *w = ss;
	int n = atomic_fetch_add(&w->calls, 1) + 1;
	int mode = atomic_load(&w->mode);
	if (mode == M_FAIL_ODD)
		mode = (n % 2) ? M_HTTP500 : M_OK;
	switch (mode) {
	case M_OK:
		sl_infer_token(call, w->name, strlen(w->name));
		sl_infer_token(call, "!", 1);
		sl_infer_done(call, SL_OK, NULL, NULL);
		return SL_OK;
	case M_CONNECT:
		sl_infer_set_failure(call, SL_FAIL_CONNECT, 0);
		sl_infer_done(call, SL_EUPSTREAM, "upstream connect failed: refused", NULL);
		return SL_OK;
	case M_HTTP400:
		sl_infer_set_failure(call, SL_FAIL_HTTP, 400);
		sl_infer_done(call, SL_EUPSTREAM, "upstream 400: bad request", NULL);
		return SL_OK;
	case M_HTTP500:
		sl_infer_set_failure(call, SL_FAIL_HTTP, 500);
		sl_infer_done(call, SL_EUPSTREAM, "upstream 500: boom", NULL);
		return SL_OK;
	case M_AFTER_TOKEN:
		sl_infer_token(call, "partial", 7);
		sl_infer_set_failure(call, SL_FAIL_BROKEN, 0);
		sl_infer_done(call, SL_EUPSTREAM, "upstream closed the stream before it finished", NULL);
		return SL_OK;
	default: /* M_HANG */
		atomic_fetch_add(&w->hanging, 1);
		return SL_OK;
	}
}

static void tw_cancel(void *ss, sl_infer *call)
{
	tw *w = ss;
	(void)call;
	atomic_fetch_add(&w->cancels, 1);
	atomic_fetch_sub(&w->hanging, 1);
}

static const sl_worker_ops tw_ops = {
	.name = "scripted",
	.init = tw_init,
	.start = tw_start,
	.infer = tw_infer_real,
	.cancel = tw_cancel,
};

/* ---- fixture ---- */

typedef struct rfx {
	sl_runtime *rt;
	sl_worker *w;
	sl_pipeline *p;
	collector c;
	tw b[3];
} rfx;

typedef void (*tweak_fn)(sl_router_opts *o, sl_router_backend *rb);

static void rfx_up(rfx *f, unsigned n, const char *strategy, tweak_fn tweak)
{
	memset(f, 0, sizeof *f);
	sl_runtime_opts ro = {.shards = 1, .no_pin = 1};
	assert_int_equal(sl_runtime_create(&ro, &f->rt), SL_OK);
	sl_router_backend rb[3];
	static const char *const names[] = {"a", "b", "c"};
	for (unsigned i = 0; i < n; i++) {
		snprintf(f->b[i].name, sizeof f->b[i].name, "%s", names[i]);
		sl_router_backend_default(&rb[i]);
		rb[i].name = names[i];
		rb[i].breaker.cooldown_ms = 60000;
		rb[i].breaker.max_cooldown_ms = 60000;
		rb[i].backoff_ms = 1;
		rb[i].max_backoff_ms = 2;
		assert_int_equal(sl_worker_create(&tw_ops, &f->b[i], &rb[i].worker), SL_OK);
	}
	sl_router_opts o = {.model = "m", .strategy = strategy, .backends = rb, .n_backends = n};
	if (tweak)
		tweak(&o, rb);
	char err[256];
	int rc = sl_worker_router_create(&o, &f->w, err, sizeof err);
	if (rc != SL_OK)
		fail_msg("router: %s", err);
	sl_pipeline_opts po;
	sl_stage_def st[5];
	sl_pipeline_default(&po, st, f->w);
	rc = sl_pipeline_create(f->rt, &po, &f->p, err, sizeof err);
	if (rc != SL_OK)
		fail_msg("pipeline_create: %s", err);
	coll_init(&f->c, f->rt);
}

static void rfx_down(rfx *f)
{
	sl_snapshot s;
	assert_int_equal(sl_pipeline_snapshot(f->p, &s), SL_OK);
	uint64_t sum = s.in_flight;
	for (int o = 0; o < SL_OUTCOME__COUNT; o++)
		sum += s.outcomes[o];
	assert_int_equal(sum, s.submitted);
	sl_snapshot_release(&s);
	sl_pipeline_destroy(f->p);
	sl_worker_destroy(f->w);
	sl_runtime_destroy(f->rt);
	coll_fini(&f->c);
}

/* Per request: the result plus the backend it reported. */
typedef struct rreq {
	treq t;
	char backend[16];
} rreq;

static void r_on_done(void *user, const sl_result *res)
{
	rreq *r = user;
	snprintf(r->backend, sizeof r->backend, "%s", res->backend ? res->backend : "");
	t_on_done(&r->t, res);
}

static void submit(rfx *f, rreq *r, const char *session, uint64_t deadline_ms)
{
	sl_request q;
	t_req(&q, &r->t, &f->c, session, "hello");
	q.on_done = r_on_done;
	q.user = r;
	q.deadline_ms = deadline_ms;
	sl_request_handle h;
	assert_int_equal(sl_pipeline_submit(f->p, &q, SL_SUBMIT_BLOCK, &h), SL_OK);
}

static void run_n(rfx *f, rreq *r, int n)
{
	for (int i = 0; i < n; i++) {
		char s[32];
		snprintf(s, sizeof s, "s%d", i);
		submit(f, &r[i], s, 0);
		/* one at a time: the breaker sees failures in order */
		assert_int_equal(coll_wait(&f->c, i + 1, 5000), i + 1);
	}
}

static sl_router_backend_stats stat_of(rfx *f, unsigned i)
{
	sl_router_backend_stats st[3];
	unsigned n = sl_router_stats(f->w, st, 3);
	assert_true(i < n);
	return st[i];
}

/* ---- tests ---- */

static void test_failover_and_breaker(void **state)
{
	(void)state;
	rfx f;
	rfx_up(&f, 2, NULL, NULL);
	atomic_store(&f.b[0].mode, M_CONNECT);
	static rreq r[20];
	memset(r, 0, sizeof r);
	run_n(&f, r, 20);
	for (int i = 0; i < 20; i++) {
		assert_int_equal(r[i].t.r.outcome, SL_OUTCOME_COMPLETED);
		assert_string_equal(r[i].t.r.text, "b!");
		assert_string_equal(r[i].backend, "b");
	}
	/* 5 consecutive failures open a's circuit: later requests skip it */
	assert_int_equal(atomic_load(&f.b[0].calls), 5);
	assert_int_equal(atomic_load(&f.b[1].calls), 20);
	sl_router_backend_stats a = stat_of(&f, 0);
	assert_string_equal(a.breaker_state, "open");
	assert_int_equal(a.breaker.trips, 1);
	assert_int_equal(a.failures, 5);
	assert_int_equal(stat_of(&f, 1).retries, 5);
	assert_int_equal(a.inflight, 0);
	rfx_down(&f);
}

static void test_client_error_not_retried(void **state)
{
	(void)state;
	rfx f;
	rfx_up(&f, 2, NULL, NULL);
	atomic_store(&f.b[0].mode, M_HTTP400);
	static rreq r[8];
	memset(r, 0, sizeof r);
	run_n(&f, r, 8);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(r[i].t.r.outcome, SL_OUTCOME_FAILED);
		assert_int_equal(r[i].t.r.status, SL_EUPSTREAM);
		assert_non_null(strstr(r[i].t.r.reason, "upstream 400"));
	}
	assert_int_equal(atomic_load(&f.b[1].calls), 0);
	/* a 400 says nothing about a's health */
	assert_string_equal(stat_of(&f, 0).breaker_state, "closed");
	rfx_down(&f);
}

static void test_failure_after_tokens_passed_on(void **state)
{
	(void)state;
	rfx f;
	rfx_up(&f, 2, NULL, NULL);
	atomic_store(&f.b[0].mode, M_AFTER_TOKEN);
	static rreq r[1];
	memset(r, 0, sizeof r);
	run_n(&f, r, 1);
	assert_int_equal(r[0].t.r.outcome, SL_OUTCOME_FAILED);
	assert_string_equal(r[0].t.r.streamed, "partial");
	assert_int_equal(atomic_load(&f.b[1].calls), 0);
	rfx_down(&f);
}

static void one_failure_trips(sl_router_opts *o, sl_router_backend *rb)
{
	for (unsigned i = 0; i < o->n_backends; i++)
		rb[i].breaker.consecutive_failures = 1;
}

static void test_all_open_is_unavailable(void **state)
{
	(void)state;
	rfx f;
	rfx_up(&f, 2, NULL, one_failure_trips);
	atomic_store(&f.b[0].mode, M_HTTP500);
	atomic_store(&f.b[1].mode, M_HTTP500);
	static rreq r[3];
	memset(r, 0, sizeof r);
	run_n(&f, r, 3);
	assert_int_equal(r[0].t.r.outcome, SL_OUTCOME_FAILED);
	assert_int_equal(r[0].t.r.status, SL_EUPSTREAM);
	assert_int_equal(r[2].t.r.outcome, SL_OUTCOME_FAILED);
	assert_int_equal(r[2].t.r.status, SL_EUNAVAIL);
	assert_int_equal(atomic_load(&f.b[0].calls), 1);
	assert_int_equal(atomic_load(&f.b[1].calls), 1);
	rfx_down(&f);
}

static void no_budget(sl_router_opts *o, sl_router_backend *rb)
{
	for (unsigned i = 0; i < o->n_backends; i++) {
		rb[i].budget.ratio = 0;
		rb[i].budget.min_per_s = 0;
	}
}

static void test_retry_budget(void **state)
{
	(void)state;
	rfx f;
	rfx_up(&f, 2, NULL, no_budget);
	atomic_store(&f.b[0].mode, M_HTTP500);
	static rreq r[2];
	memset(r, 0, sizeof r);
	run_n(&f, r, 2);
	assert_int_equal(r[0].t.r.outcome, SL_OUTCOME_FAILED);
	assert_non_null(strstr(r[0].t.r.reason, "retry budget"));
	assert_int_equal(atomic_load(&f.b[1].calls), 0);
	assert_true(stat_of(&f, 0).budget.exhausted >= 2);
	rfx_down(&f);
}

static void test_retry_same_backend_after_backoff(void **state)
{
	(void)state;
	rfx f;
	rfx_up(&f, 1, NULL, NULL);
	atomic_store(&f.b[0].mode, M_FAIL_ODD); /* 1st call fails, 2nd works */
	static rreq r[4];
	memset(r, 0, sizeof r);
	run_n(&f, r, 4);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(r[i].t.r.outcome, SL_OUTCOME_COMPLETED);
		assert_string_equal(r[i].t.r.text, "a!");
	}
	assert_int_equal(atomic_load(&f.b[0].calls), 8);
	rfx_down(&f);
}

static void w90(sl_router_opts *o, sl_router_backend *rb)
{
	(void)o;
	rb[0].weight = 90;
	rb[1].weight = 10;
}

static void split(const char *strategy, int sessions, int per_session)
{
	rfx f;
	rfx_up(&f, 2, strategy, w90);
	int n = sessions * per_session;
	rreq *r = calloc((size_t)n, sizeof *r);
	assert_non_null(r);
	for (int k = 0; k < per_session; k++)
		for (int s = 0; s < sessions; s++) {
			char sess[32];
			snprintf(sess, sizeof sess, "user-%d", s);
			submit(&f, &r[k * sessions + s], sess, 0);
		}
	assert_int_equal(coll_wait(&f.c, n, 30000), n);
	int a = 0;
	for (int i = 0; i < n; i++) {
		assert_int_equal(r[i].t.r.outcome, SL_OUTCOME_COMPLETED);
		a += r[i].backend[0] == 'a';
	}
	double share = (double)a / n;
	print_message("%s: a got %.4f of %d\n", strategy, share, n);
	assert_true(share > 0.88 && share < 0.92);
	if (strcmp(strategy, "sticky") == 0)
		for (int s = 0; s < sessions; s++)
			for (int k = 1; k < per_session; k++)
				assert_string_equal(r[k * sessions + s].backend, r[s].backend);
	free(r);
	rfx_down(&f);
}

static void test_weighted_split(void **state)
{
	(void)state;
	split("weighted", 10000, 1);
}

static void test_sticky_split(void **state)
{
	(void)state;
	split("sticky", 5000, 3);
}

static void test_cancel_and_deadline(void **state)
{
	(void)state;
	rfx f;
	rfx_up(&f, 2, NULL, NULL);
	atomic_store(&f.b[0].mode, M_HANG);
	static rreq r[2];
	memset(r, 0, sizeof r);
	sl_request q;
	t_req(&q, &r[0].t, &f.c, "x", "hello");
	q.on_done = r_on_done;
	q.user = &r[0];
	sl_request_handle h;
	assert_int_equal(sl_pipeline_submit(f.p, &q, SL_SUBMIT_BLOCK, &h), SL_OK);
	for (int i = 0; i < 500 && atomic_load(&f.b[0].hanging) == 0; i++)
		msleep(2);
	assert_int_equal(sl_pipeline_cancel(f.p, h), SL_OK);
	assert_int_equal(coll_wait(&f.c, 1, 5000), 1);
	assert_int_equal(r[0].t.r.outcome, SL_OUTCOME_CANCELLED);
	assert_int_equal(atomic_load(&f.b[0].cancels), 1);
	submit(&f, &r[1], "y", 50);
	assert_int_equal(coll_wait(&f.c, 2, 5000), 2);
	assert_int_equal(r[1].t.r.outcome, SL_OUTCOME_EXPIRED);
	assert_int_equal(atomic_load(&f.b[0].cancels), 2);
	assert_int_equal(atomic_load(&f.b[1].calls), 0);
	sl_router_backend_stats a = stat_of(&f, 0);
	assert_int_equal(a.inflight, 0);
	rfx_down(&f);
}

static void test_bad_options(void **state)
{
	(void)state;
	char err[128];
	sl_worker *w = NULL;
	sl_router_opts o = {.model = "m", .n_backends = 0};
	assert_int_equal(sl_worker_router_create(&o, &w, err, sizeof err), SL_EINVAL);
	static tw t0;
	sl_router_backend rb;
	sl_router_backend_default(&rb);
	rb.name = "a";
	assert_int_equal(sl_worker_create(&tw_ops, &t0, &rb.worker), SL_OK);
	o.backends = &rb;
	o.n_backends = 1;
	o.strategy = "nope";
	assert_int_equal(sl_worker_router_create(&o, &w, err, sizeof err), SL_EINVAL);
	assert_non_null(strstr(err, "nope"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_failover_and_breaker),
		cmocka_unit_test(test_client_error_not_retried),
		cmocka_unit_test(test_failure_after_tokens_passed_on),
		cmocka_unit_test(test_all_open_is_unavailable),
		cmocka_unit_test(test_retry_budget),
		cmocka_unit_test(test_retry_same_backend_after_backoff),
		cmocka_unit_test(test_weighted_split),
		cmocka_unit_test(test_sticky_split),
		cmocka_unit_test(test_cancel_and_deadline),
		cmocka_unit_test(test_bad_options),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
