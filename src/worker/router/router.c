/* router.c - the routing worker; see router.h. */
#include "worker/router/router.h"
#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include "core/log.h"
#include "route/balance.h"

typedef struct rbackend {
	char *name;
	sl_worker *w;
	const sl_worker_ops *ops;
	void *wstate;
	sl_breaker *br;
	sl_retry_budget *bud;
	sl_limiter *lim;
	sl_ewma ttft;
	uint32_t backoff_ms, max_backoff_ms;
	_Atomic uint64_t selected, attempts, successes, failures, retries, limited, open_skips;
} rbackend;

typedef struct router {
	char *model;
	const sl_balancer_ops *bal;
	void *bal_state;
	unsigned n, max_attempts;
	int needs_session;  /* the strategy reads the session hash */
	uint32_t weights[SL_ROUTER_MAX_BACKENDS];
	rbackend b[SL_ROUTER_MAX_BACKENDS];
} router;

typedef struct rshard {
	router *r;
	struct event_base *base;
	unsigned idx;
	uint64_t rng;
	unsigned n_calls;
	void *iss[SL_ROUTER_MAX_BACKENDS]; /* inner workers' shard states */
} rshard;

typedef struct rcall {
	rshard *rs;
	sl_infer *call;      /* the parent */
	sl_infer *sub;       /* the attempt in progress, NULL between attempts */
	int cur;             /* its backend, -1 none */
	int probe;           /* the attempt is a half-open probe */
	unsigned attempts;   /* started so far */
	uint64_t tried;      /* backends tried (bit i) */
	uint64_t t_start, t_first;
	size_t fwd;          /* tokens passed to the parent */
	int timer_armed;
	int last_status;
	char *last_detail;   /* the last failure (owned), NULL before one */
	struct event timer;
} rcall;

static uint64_t now_ns(void)
{
	return sl_now_ns();
}

void sl_router_backend_default(sl_router_backend *b)
{
	memset(b, 0, sizeof *b);
	sl_breaker_cfg_default(&b->breaker);
	sl_retry_budget_cfg_default(&b->budget);
	sl_limiter_cfg_default(&b->limiter);
	b->limiter.alg = SL_LIMIT_FIXED;
	b->limiter.max_limit = 0; /* unlimited */
	b->backoff_ms = 25;
	b->max_backoff_ms = 1000;
}

/* ------------------------------------------------------------ choosing */

static int is_available(const rbackend *b, uint64_t now)
{
	if (sl_breaker_state_of(b->br, now) == SL_BREAKER_OPEN)
		return 0;
	uint32_t lim = sl_limiter_limit(b->lim);
	return lim == 0 || sl_limiter_inflight(b->lim) < lim;
}

/* Takes a breaker permit and a limiter slot on backend i. */
static int try_take(rcall *rc, unsigned i, uint64_t now)
{
	rbackend *b = &rc->rs->r->b[i];
	int probe = 0;
	if (!sl_breaker_acquire(b->br, now, &probe)) {
		atomic_fetch_add_explicit(&b->open_skips, 1, memory_order_relaxed);
		return 0;
	}
	if (!sl_limiter_acquire(b->lim)) {
		sl_breaker_release(b->br, probe);
		atomic_fetch_add_explicit(&b->limited, 1, memory_order_relaxed);
		return 0;
	}
	rc->cur = (int)i;
	rc->probe = probe;
	return 1;
}

/* Why no backend could take the call: SL_EUNAVAIL when every circuit is
 * open, else SL_ESHED (concurrency limits). */
static int none_reason(router *r, uint64_t now)
{
	for (unsigned i = 0; i < r->n; i++)
		if (sl_breaker_state_of(r->b[i].br, now) != SL_BREAKER_OPEN)
			return SL_ESHED;
	return SL_EUNAVAIL;
}

/* First attempt: the strategy's pick, else the chain in order. */
static int choose_first(rcall *rc, uint64_t now)
{
	router *r = rc->rs->r;
	uint8_t avail[SL_ROUTER_MAX_BACKENDS];
	uint32_t inflight[SL_ROUTER_MAX_BACKENDS];
	double ewma[SL_ROUTER_MAX_BACKENDS];
	for (unsigned i = 0; i < r->n; i++) {
		avail[i] = (uint8_t)is_available(&r->b[i], now);
		inflight[i] = sl_limiter_inflight(r->b[i].lim);
		ewma[i] = sl_ewma_get(&r->b[i].ttft);
	}
	const char *sess = r->needs_session ? sl_infer_session(rc->call) : NULL;
	sl_balance_ctx ctx = {.n = r->n,
	                      .weights = r->weights,
	                      .avail = avail,
	                      .inflight = inflight,
	                      .ewma_ns = ewma,
	                      .session_hash = sess ? XXH64(sess, strlen(sess), 0) : 0,
	                      .rng = &rc->rs->rng};
	int pick = r->n == 1 ? (avail[0] ? 0 : -1) : r->bal->pick(r->bal_state, &ctx);
	if (pick >= 0 && (unsigned)pick < r->n && try_take(rc, (unsigned)pick, now))
		return pick;
	for (unsigned i = 0; i < r->n; i++)
		if ((int)i != pick && try_take(rc, i, now))
			return (int)i;
	return -1;
}

/* A re-attempt: the next untried backend of the chain, else any in order. */
static int choose_next(rcall *rc, uint64_t now, int untried_only)
{
	router *r = rc->rs->r;
	for (unsigned i = 0; i < r->n; i++)
		if (!(rc->tried & (1ull << i)) && try_take(rc, i, now))
			return (int)i;
	if (untried_only)
		return -1;
	for (unsigned i = 0; i < r->n; i++)
		if (try_take(rc, i, now))
			return (int)i;
	return -1;
}

/* ------------------------------------------------------------ attempts */

static void call_free(rcall *rc)
{
	if (rc->timer_armed)
		event_del(&rc->timer);
	rc->rs->n_calls--;
	*sl_infer_worker_data(rc->call) = NULL;
	free(rc->last_detail);
	free(rc);
}

/* Ends the parent call and frees rc. */
static void finish(rcall *rc, int status, const char *detail, const sl_usage *u)
{
	sl_infer *call = rc->call;
	char d[640]; /* detail may point into rc */
	if (detail)
		snprintf(d, sizeof d, "%s", detail);
	call_free(rc);
	sl_infer_done(call, status, detail ? d : NULL, u);
}

static int sub_token(sl_infer *sub, const char *text, size_t len);
static void sub_done(sl_infer *sub, int status, const char *detail, const sl_usage *u);
static const sl_infer_hooks hooks = {.token = sub_token, .done = sub_done};

static void on_attempt_failed(rcall *rc, int status, const char *detail, sl_fail_kind kind,
                              int http, int backend);

/* Starts an attempt on rc->cur (permits taken).  May end rc before it
 * returns (an inner worker that completes inline): callers must not touch
 * rc afterwards. */
static void start_attempt(rcall *rc, int is_retry, uint64_t now)
{
	router *r = rc->rs->r;
	unsigned i = (unsigned)rc->cur;
	rbackend *b = &r->b[i];
	rc->attempts++;
	rc->tried |= 1ull << i;
	rc->t_start = now;
	rc->t_first = 0;
	atomic_fetch_add_explicit(&b->attempts, 1, memory_order_relaxed);
	if (is_retry)
		atomic_fetch_add_explicit(&b->retries, 1, memory_order_relaxed);
	else
		atomic_fetch_add_explicit(&b->selected, 1, memory_order_relaxed);
	sl_infer_annotate(rc->call, "backend", b->name);
	rc->sub = sl_infer_sub_new(rc->call, &hooks, rc);
	if (!rc->sub) {
		sl_limiter_release(b->lim, now, 0, SL_LIMIT_IGNORE);
		sl_breaker_release(b->br, rc->probe);
		finish(rc, SL_ENOMEM, "router: out of memory", NULL);
		return;
	}
	int st = b->ops->infer(rc->rs->iss[i], rc->sub);
	if (st != SL_OK) {
		/* refused at once: nothing was sent */
		sl_infer_sub_free(rc->sub);
		rc->sub = NULL;
		on_attempt_failed(rc, st, sl_strerror(st), SL_FAIL_OTHER, 0, (int)i);
	}
}

static int sub_token(sl_infer *sub, const char *text, size_t len)
{
	rcall *rc = sl_infer_sub_user(sub);
	if (!rc->t_first) {
		rc->t_first = now_ns();
		rbackend *b = &rc->rs->r->b[rc->cur];
		sl_ewma_update(&b->ttft, (double)(rc->t_first - rc->t_start));
	}
	rc->fwd++;
	return sl_infer_token(rc->call, text, len);
}

static int retryable(sl_fail_kind kind, int http)
{
	switch (kind) {
	case SL_FAIL_CONNECT:
	case SL_FAIL_FIRST_TOKEN:
	case SL_FAIL_BROKEN:
	case SL_FAIL_PROTOCOL:
		return 1;
	case SL_FAIL_HTTP:
		return http == 429 || http >= 500;
	default:
		return 0;
	}
}

/* Does this failure say something about the backend's health? */
static int counts_for_breaker(int status, sl_fail_kind kind, int http)
{
	if (status == SL_ECANCELED || kind == SL_FAIL_LOCAL)
		return 0;
	if (kind == SL_FAIL_HTTP)
		return http == 429 || http >= 500 || http == 0;
	return 1;
}

static void on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
	rcall *rc = arg;
	rc->timer_armed = 0;
	uint64_t now = now_ns();
	if (choose_next(rc, now, 0) < 0) {
		int why = none_reason(rc->rs->r, now);
		char d[640];
		snprintf(d, sizeof d, "%s (no backend available for a retry)", rc->last_detail);
		finish(rc, rc->last_status ? rc->last_status : why, d, NULL);
		return;
	}
	start_attempt(rc, 1, now);
}

/* Decides after a failed attempt on `backend`: fail over, retry later, or
 * end the parent with this failure. */
static void on_attempt_failed(rcall *rc, int status, const char *detail, sl_fail_kind kind,
                              int http, int backend)
{
	router *r = rc->rs->r;
	rbackend *b = &r->b[backend];
	uint64_t now = now_ns();
	rc->last_status = status;
	free(rc->last_detail);
	rc->last_detail = strdup(detail ? detail : sl_strerror(status));
	if (!rc->last_detail) {
		finish(rc, status, detail, NULL);
		return;
	}
	if (status == SL_ECANCELED || rc->fwd > 0 || !retryable(kind, http) ||
	    rc->attempts >= r->max_attempts) {
		finish(rc, status, rc->last_detail, NULL);
		return;
	}
	uint64_t deadline = sl_infer_deadline(rc->call);
	if (deadline && now >= deadline) {
		finish(rc, status, rc->last_detail, NULL);
		return;
	}
	if (!sl_retry_budget_try(b->bud, now)) {
		char d[640];
		snprintf(d, sizeof d, "%s (retry budget of backend %s exhausted)", rc->last_detail,
		         b->name);
		finish(rc, status, d, NULL);
		return;
	}
	/* fail over at once to a backend not tried yet */
	if (choose_next(rc, now, 1) >= 0) {
		start_attempt(rc, 1, now);
		return;
	}
	/* else the same backends again, after a backoff */
	uint64_t ms = sl_backoff_ms(b->backoff_ms, b->max_backoff_ms, rc->attempts - 1, &rc->rs->rng);
	if (deadline && now + ms * 1000000u >= deadline) {
		finish(rc, status, rc->last_detail, NULL);
		return;
	}
	struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
	evtimer_assign(&rc->timer, rc->rs->base, on_retry_timer, rc);
	if (evtimer_add(&rc->timer, &tv) != 0) {
		finish(rc, status, rc->last_detail, NULL);
		return;
	}
	rc->timer_armed = 1;
}

/* Releases the attempt's permits with what it told about the backend. */
static void end_attempt(rcall *rc, int status, sl_fail_kind kind, int http)
{
	rbackend *b = &rc->rs->r->b[rc->cur];
	uint64_t now = now_ns();
	uint64_t lat = (rc->t_first ? rc->t_first : now) - rc->t_start;
	sl_limit_outcome lo = SL_LIMIT_IGNORE;
	if (status == SL_OK)
		lo = SL_LIMIT_SUCCESS;
	else if (kind == SL_FAIL_TIMEOUT || kind == SL_FAIL_FIRST_TOKEN ||
	         (kind == SL_FAIL_HTTP && (http == 429 || http == 503)))
		lo = SL_LIMIT_DROPPED;
	sl_limiter_release(b->lim, now, lat, lo);
	if (status == SL_OK) {
		sl_breaker_record(b->br, now, 1, rc->probe);
		atomic_fetch_add_explicit(&b->successes, 1, memory_order_relaxed);
	} else if (counts_for_breaker(status, kind, http)) {
		sl_breaker_record(b->br, now, 0, rc->probe);
		atomic_fetch_add_explicit(&b->failures, 1, memory_order_relaxed);
	} else {
		sl_breaker_release(b->br, rc->probe);
	}
}

static void sub_done(sl_infer *sub, int status, const char *detail, const sl_usage *u)
{
	rcall *rc = sl_infer_sub_user(sub);
	int http = 0;
	sl_fail_kind kind = status == SL_OK ? SL_FAIL_NONE : sl_infer_sub_failure(sub, &http);
	if (status != SL_OK && kind == SL_FAIL_NONE)
		kind = SL_FAIL_OTHER;
	sl_infer_sub_free(sub);
	rc->sub = NULL;
	int backend = rc->cur;
	end_attempt(rc, status, kind, http);
	if (status == SL_OK) {
		finish(rc, SL_OK, NULL, u);
		return;
	}
	on_attempt_failed(rc, status, detail, kind, http, backend);
}

/* ------------------------------------------------------------ worker ops */

typedef struct router_init {
	const sl_router_opts *o;
	char *err;
	size_t errlen;
} router_init;

static void router_free(router *r)
{
	if (!r)
		return;
	for (unsigned i = 0; i < r->n; i++) {
		rbackend *b = &r->b[i];
		sl_worker_destroy(b->w);
		sl_breaker_destroy(b->br);
		sl_retry_budget_destroy(b->bud);
		sl_limiter_destroy(b->lim);
		free(b->name);
	}
	if (r->bal && r->bal->fini)
		r->bal->fini(r->bal_state);
	free(r->model);
	free(r);
}

static int r_init(const void *cfg, void **state)
{
	const router_init *ri = cfg;
	const sl_router_opts *o = ri->o;
	router *r = calloc(1, sizeof *r);
	if (!r)
		return SL_ENOMEM;
	r->n = o->n_backends;
	int rc = SL_OK;
	/* take ownership of every worker first, so errors free them all */
	for (unsigned i = 0; i < r->n; i++) {
		r->b[i].w = o->backends[i].worker;
		r->b[i].ops = sl_worker_ops_of(r->b[i].w);
		r->b[i].wstate = sl_worker_state_of(r->b[i].w);
	}
	const char *sname = o->strategy ? o->strategy : "fallback";
	r->bal = sl_balancer_find(sname);
	if (!r->bal) {
		snprintf(ri->err, ri->errlen, "unknown routing strategy \"%s\"", sname);
		router_free(r);
		return SL_EINVAL;
	}
	r->model = strdup(o->model ? o->model : "");
	r->needs_session = strcmp(r->bal->name, "sticky") == 0;
	r->max_attempts = o->max_attempts ? o->max_attempts : r->n + 1;
	for (unsigned i = 0; i < r->n && rc == SL_OK; i++) {
		const sl_router_backend *ob = &o->backends[i];
		rbackend *b = &r->b[i];
		b->name = strdup(ob->name ? ob->name : "");
		r->weights[i] = ob->weight;
		b->backoff_ms = ob->backoff_ms;
		b->max_backoff_ms = ob->max_backoff_ms ? ob->max_backoff_ms : ob->backoff_ms;
		sl_ewma_init(&b->ttft, 0.2);
		if (!b->name || !r->model)
			rc = SL_ENOMEM;
		else if ((rc = sl_breaker_create(&ob->breaker, &b->br)) != SL_OK)
			snprintf(ri->err, ri->errlen, "backend %s: bad breaker settings", ob->name);
		else if ((rc = sl_retry_budget_create(&ob->budget, &b->bud)) != SL_OK)
			snprintf(ri->err, ri->errlen, "backend %s: bad retry settings", ob->name);
		else if ((rc = sl_limiter_create(&ob->limiter, &b->lim)) != SL_OK)
			snprintf(ri->err, ri->errlen, "backend %s: bad concurrency settings", ob->name);
	}
	if (rc == SL_OK && r->bal->init && (rc = r->bal->init(r->n, r->weights, &r->bal_state)) != SL_OK)
		snprintf(ri->err, ri->errlen, "routing strategy %s: %s", sname, sl_strerror(rc));
	if (rc != SL_OK) {
		router_free(r);
		return rc;
	}
	*state = r;
	return SL_OK;
}

static void r_fini(void *state)
{
	router_free(state);
}

static int r_start(void *state, struct event_base *base, unsigned shard, void **ss)
{
	router *r = state;
	rshard *rs = calloc(1, sizeof *rs);
	if (!rs)
		return SL_ENOMEM;
	rs->r = r;
	rs->base = base;
	rs->idx = shard;
	rs->rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)(shard + 1) * 0xbf58476d1ce4e5b9ull) ^
	          now_ns();
	for (unsigned i = 0; i < r->n; i++) {
		const sl_worker_ops *ops = r->b[i].ops;
		if (!ops->start)
			continue;
		int rc = ops->start(r->b[i].wstate, base, shard, &rs->iss[i]);
		if (rc != SL_OK) {
			for (unsigned k = 0; k < i; k++) {
				if (r->b[k].ops->close)
					r->b[k].ops->close(rs->iss[k]);
				if (r->b[k].ops->stop)
					r->b[k].ops->stop(rs->iss[k]);
			}
			free(rs);
			return rc;
		}
	}
	*ss = rs;
	return SL_OK;
}

static void r_close(void *ss)
{
	rshard *rs = ss;
	for (unsigned i = 0; i < rs->r->n; i++)
		if (rs->r->b[i].ops->close)
			rs->r->b[i].ops->close(rs->iss[i]);
}

static void r_stop(void *ss)
{
	rshard *rs = ss;
	if (rs->n_calls)
		SL_LOG(SL_LOG_WARN, "event=router_stop_with_calls model=%s shard=%u calls=%u",
		       rs->r->model, rs->idx, rs->n_calls);
	for (unsigned i = 0; i < rs->r->n; i++)
		if (rs->r->b[i].ops->stop)
			rs->r->b[i].ops->stop(rs->iss[i]);
	free(rs);
}

static int r_infer(void *ss, sl_infer *call)
{
	rshard *rs = ss;
	router *r = rs->r;
	rcall *rc = calloc(1, sizeof *rc);
	if (!rc)
		return SL_ENOMEM;
	rc->rs = rs;
	rc->call = call;
	rc->cur = -1;
	rs->n_calls++;
	*sl_infer_worker_data(call) = rc;
	uint64_t now = now_ns();
	if (choose_first(rc, now) < 0) {
		int why = none_reason(r, now);
		char d[256];
		snprintf(d, sizeof d,
		         why == SL_EUNAVAIL ? "no backend of model %s available: every circuit is open"
		                            : "every backend of model %s is at its concurrency limit",
		         r->model);
		finish(rc, why, d, NULL);
		return SL_OK;
	}
	sl_retry_budget_on_request(r->b[rc->cur].bud, now);
	start_attempt(rc, 0, now);
	return SL_OK;
}

static void r_cancel(void *ss, sl_infer *call)
{
	rcall *rc = *sl_infer_worker_data(call);
	if (!rc)
		return;
	if (rc->sub) {
		rbackend *b = &rc->rs->r->b[rc->cur];
		if (b->ops->cancel)
			b->ops->cancel(rc->rs->iss[rc->cur], rc->sub);
		sl_infer_sub_free(rc->sub);
		rc->sub = NULL;
		end_attempt(rc, SL_ECANCELED, SL_FAIL_NONE, 0);
	}
	call_free(rc);
}

static unsigned r_max_concurrency(void *state)
{
	router *r = state;
	unsigned sum = 0;
	for (unsigned i = 0; i < r->n; i++) {
		unsigned m = r->b[i].ops->max_concurrency ? r->b[i].ops->max_concurrency(r->b[i].wstate) : 0;
		if (m == 0)
			return 0;
		sum += m;
	}
	return sum;
}

static const sl_worker_ops router_ops = {
	.name = "router",
	.init = r_init,
	.start = r_start,
	.infer = r_infer,
	.cancel = r_cancel,
	.close = r_close,
	.stop = r_stop,
	.fini = r_fini,
	.max_concurrency = r_max_concurrency,
};

int sl_worker_router_create(const sl_router_opts *o, sl_worker **out, char *err, size_t errlen)
{
	char dummy[8];
	if (!err || !errlen) {
		err = dummy;
		errlen = sizeof dummy;
	}
	err[0] = '\0';
	if (!o || !out || !o->backends || o->n_backends == 0 ||
	    o->n_backends > SL_ROUTER_MAX_BACKENDS) {
		snprintf(err, errlen, "a router needs 1..%d backends", SL_ROUTER_MAX_BACKENDS);
		if (o && o->backends)
			for (unsigned i = 0; i < o->n_backends; i++)
				sl_worker_destroy(o->backends[i].worker);
		return SL_EINVAL;
	}
	for (unsigned i = 0; i < o->n_backends; i++)
		if (!o->backends[i].worker) {
			snprintf(err, errlen, "backend %u has no worker", i);
			for (unsigned k = 0; k < o->n_backends; k++)
				sl_worker_destroy(o->backends[k].worker);
			return SL_EINVAL;
		}
	router_init ri = {.o = o, .err = err, .errlen = errlen};
	int rc = sl_worker_create(&router_ops, &ri, out);
	if (rc != SL_OK && !err[0])
		snprintf(err, errlen, "%s", sl_strerror(rc));
	return rc;
}

int sl_worker_is_router(const sl_worker *w)
{
	return w && sl_worker_ops_of(w) == &router_ops;
}

const char *sl_router_model(const sl_worker *w)
{
	return sl_worker_is_router(w) ? ((router *)sl_worker_state_of(w))->model : NULL;
}

const char *sl_router_strategy(const sl_worker *w)
{
	return sl_worker_is_router(w) ? ((router *)sl_worker_state_of(w))->bal->name : NULL;
}

unsigned sl_router_stats(const sl_worker *w, sl_router_backend_stats *st, unsigned cap)
{
	if (!sl_worker_is_router(w))
		return 0;
	router *r = sl_worker_state_of(w);
	uint64_t now = now_ns();
	for (unsigned i = 0; i < r->n && st && i < cap; i++) {
		rbackend *b = &r->b[i];
		sl_router_backend_stats *s = &st[i];
		memset(s, 0, sizeof *s);
		s->name = b->name;
		s->breaker_state = sl_breaker_state_name(sl_breaker_state_of(b->br, now));
		sl_breaker_stats_get(b->br, &s->breaker);
		sl_retry_budget_stats_get(b->bud, &s->budget);
		s->limit = sl_limiter_limit(b->lim);
		s->inflight = sl_limiter_inflight(b->lim);
		s->ewma_ttft_ms = sl_ewma_get(&b->ttft) / 1e6;
		s->selected = atomic_load_explicit(&b->selected, memory_order_relaxed);
		s->attempts = atomic_load_explicit(&b->attempts, memory_order_relaxed);
		s->successes = atomic_load_explicit(&b->successes, memory_order_relaxed);
		s->failures = atomic_load_explicit(&b->failures, memory_order_relaxed);
		s->retries = atomic_load_explicit(&b->retries, memory_order_relaxed);
		s->limited = atomic_load_explicit(&b->limited, memory_order_relaxed);
		s->open_skips = atomic_load_explicit(&b->open_skips, memory_order_relaxed);
	}
	return r->n;
}
