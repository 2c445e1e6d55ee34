/* server.c - the OpenAI-compatible gateway on the h1 HTTP/1.1 layer; see
 * server.h and docs/internals/http.md.
 *
 * A request's life:
 *   1. on_request (connection's shard): route, parse the body, find the
 *      model, build an sl_request, submit.  Refusals answer at once (400,
 *      404, 413, 503 with Retry-After ...).  SL_EAGAIN under "block": the
 *      request is parked and this shard stops accepting connections until
 *      the pipeline signals room (sl_pipeline_on_ready); a parked
 *      connection sends nothing more, so nothing is buffered without bound.
 *   2. on_token / on_done (session's shard): format SSE events or the final
 *      body into hreq->pending under hreq->mx and post a flush to the
 *      connection's shard (at most one flush in flight).
 *   3. flush (connection's shard): write what is pending; at the end, end
 *      the reply and free the hreq.
 *   A client that goes away mid-request fires the connection's close
 *   callback: the pipeline request is cancelled (the upstream call with it)
 *   and the hreq is freed when the pipeline's outcome arrives.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "core/dynbuf.h"
#include "core/log.h"
#include "dlq/dlq.h"
#include "worker/router/router.h"
#include "http/h1.h"
#include "http/metrics.h"
#include "http/openai_json.h"
#include "http/openai_req.h"
#include "http/server.h"
#include "shard/runtime_int.h"

typedef struct srv_shard srv_shard;

/* The models served: swapped whole on reload (RCU-like: readers use a
 * table only inside one callback on a shard thread; the writer frees the
 * old table after every shard has passed a quiescent point). */
typedef struct route_table {
	sl_model_route *routes;
	size_t n;
} route_table;

struct sl_server {
	sl_runtime *rt;
	sl_server_opts o;
	char *host;
	_Atomic(route_table *) table;
	sl_admin_fn admin_fn;
	void *admin_arg;
	char *admin_token;
	_Atomic uint16_t port;     /* set once bound; read by shard threads */
	_Atomic int accepting;
	srv_shard **sh;
	unsigned n;
	uint64_t seed;
	sl_dlq *dlq;               /* NULL: no dead-letter log */
	_Atomic unsigned dlq_threads; /* admin DLQ calls in progress */
	_Atomic int closing;          /* destroy began: replays abort */
	char replay_secret[40];    /* proves a replay comes from this process */
};

struct srv_shard {
	sl_server *srv;
	unsigned idx;
	struct event_base *base;
	sl_h1_server *h1;
	unsigned parked; /* requests waiting for room (block policy) */
	int lis_disabled;
	uint64_t next_req;
	sl_http_stats stats; /* single writer: this shard */
};

typedef struct hreq {
	srv_shard *ss;                  /* connection's shard: owner */
	sl_h1_req *req;                 /* NULL once answered or the client left */
	sl_pipeline *pipeline;          /* valid until the outcome is seen */
	char model[128];                /* the public model name */
	int pass_messages;
	sl_request_handle h;
	int submitted;
	int gone;                       /* client went away */
	int started;                    /* chunked reply started */
	int stream, include_usage;
	sl_oai_kind kind;
	char request_id[48];
	char resp_id[64];
	int64_t created;
	/* shared with the session's shard (under mx) */
	pthread_mutex_t mx;
	sl_dynbuf pending;
	sl_dynbuf spare;                /* connection's shard only: the buffer the
	                                 * last flush wrote, emptied, swapped in
	                                 * as pending by the next flush (no
	                                 * malloc/free per flush) */
	char *chunk_pre;                /* sl_oai_sse_chunk_prefix, made at the
	                                 * first token (owned) */
	size_t chunk_pre_len;
	int posted;
	int role_sent;
	int finished;
	int status;                     /* HTTP status of the final answer */
	int err_before_stream;          /* an error not yet streamed */
	char upstream_status[8];
	char backend[72];               /* the backend that served it (router) */
	sl_post flush_post;
	/* parked request */
	sl_post ready_post;             /* runs on the session's shard */
	sl_post retry_post;             /* back on the connection's shard */
	sl_request sreq;
	sl_kv meta[6];
	char session[160];
	char *prompt;
	char *messages_json;
	sl_oai_req *oai;
	/* dead-letter record (when the server has a DLQ) */
	char *body;                     /* the request body as received */
	size_t body_len;
	const char *endpoint;
	char replay_of[32];             /* a replay of this DLQ record */
	uint64_t t_submit_ms;           /* wall clock */
} hreq;

/* ------------------------------------------------------------ helpers */

/* Response headers are built in a small array. */
typedef struct hdrs {
	struct sl_h1_header h[10];
	size_t n;
} hdrs;

static void hadd(hdrs *hs, const char *name, const char *value)
{
	if (hs->n < sizeof hs->h / sizeof hs->h[0] && value) {
		hs->h[hs->n].name = name;
		hs->h[hs->n].value = value;
		hs->n++;
	}
}

static void count_status(srv_shard *ss, int code)
{
	sl_http_stats *st = &ss->stats;
	int cls = code / 100;
	if (cls < 1 || cls > 5)
		cls = 5;
	sl__ctr_add_u(&st->responses[cls], 1);
	if (code == 503)
		sl__ctr_add_u(&st->shed_503, 1);
}

/* Sends a complete response with an OpenAI-style error body; ends r. */
static void send_error(srv_shard *ss, sl_h1_req *req, const char *rid, int code,
                       const char *type, const char *ecode, const char *param,
                       const char *fmt, ...) __attribute__((format(printf, 8, 9)));
static void send_error(srv_shard *ss, sl_h1_req *req, const char *rid, int code,
                       const char *type, const char *ecode, const char *param,
                       const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	sl_dynbuf b;
	sl_dynbuf_init(&b, 8192);
	sl_oai_json_error(&b, msg, type, param, ecode);
	hdrs hs = {.n = 0};
	hadd(&hs, "Content-Type", "application/json");
	hadd(&hs, "X-Request-Id", rid);
	char ra[16];
	if (code == 503 || code == 429) {
		snprintf(ra, sizeof ra, "%u", ss->srv->o.retry_after_s);
		hadd(&hs, "Retry-After", ra);
	}
	count_status(ss, code);
	sl_h1_reply(req, code, hs.h, hs.n, sl_dynbuf_str(&b), b.len);
	sl_dynbuf_free(&b);
}

/* 405 with its Allow header. */
static void send_405(srv_shard *ss, sl_h1_req *req, const char *path, int post)
{
	sl_dynbuf b;
	sl_dynbuf_init(&b, 8192);
	char msg[200];
	snprintf(msg, sizeof msg, "%.100s takes %s", path, post ? "POST" : "GET");
	sl_oai_json_error(&b, msg, "invalid_request_error", NULL, "method_not_allowed");
	hdrs hs = {.n = 0};
	hadd(&hs, "Content-Type", "application/json");
	hadd(&hs, "Allow", post ? "POST" : "GET, HEAD");
	count_status(ss, 405);
	sl_h1_reply(req, 405, hs.h, hs.n, sl_dynbuf_str(&b), b.len);
	sl_dynbuf_free(&b);
}

static void send_text(srv_shard *ss, sl_h1_req *req, int code, const char *ctype,
                      const char *body, size_t len)
{
	hdrs hs = {.n = 0};
	hadd(&hs, "Content-Type", ctype);
	count_status(ss, code);
	sl_h1_reply(req, code, hs.h, hs.n, body, len);
}

/* h1 refused a request itself (431, 413, 408, 400 ...): an OpenAI-style
 * error body. */
static size_t h1_error_body(void *arg, int status, const char *code, const char *message,
                            char *buf, size_t cap, const char **content_type)
{
	srv_shard *ss = arg;
	count_status(ss, status);
	sl_dynbuf b;
	sl_dynbuf_init(&b, cap ? cap - 1 : 0);
	const char *type = status == 408 ? "timeout_error" : "invalid_request_error";
	if (sl_oai_json_error(&b, message, type, NULL, code) != SL_OK) {
		sl_dynbuf_free(&b);
		return 0;
	}
	size_t n = b.len < cap ? b.len : cap;
	memcpy(buf, sl_dynbuf_str(&b), n);
	sl_dynbuf_free(&b);
	*content_type = "application/json";
	return n;
}

static void hreq_free(hreq *h)
{
	pthread_mutex_destroy(&h->mx);
	sl_dynbuf_free(&h->pending);
	sl_dynbuf_free(&h->spare);
	free(h->chunk_pre);
	free(h->prompt);
	free(h->messages_json);
	sl_oai_req_free(h->oai);
	free(h->body);
	free(h);
}

static void unpark(srv_shard *ss)
{
	if (ss->parked > 0)
		ss->parked--;
	if (ss->parked == 0 && ss->lis_disabled && ss->h1 &&
	    atomic_load(&ss->srv->accepting)) {
		sl_h1_server_resume_accept(ss->h1);
		ss->lis_disabled = 0;
	}
}

static void park(srv_shard *ss)
{
	ss->parked++;
	if (!ss->lis_disabled && ss->h1) {
		sl_h1_server_pause_accept(ss->h1);
		ss->lis_disabled = 1;
	}
}

/* ------------------------------------------------------------ flush */

/* Output a client has not read yet, above which its stream is abandoned
 * (the request is cancelled): a client that stops reading cannot make the
 * server buffer without bound. */
#define SL_SERVER_MAX_PENDING_OUTPUT (8u << 20)

/* Connection's shard: out (the pending buffer a flush took) becomes the
 * spare the next flush swaps in, emptied, unless it grew large. */
static void keep_spare(hreq *h, sl_dynbuf *out)
{
	if (out->cap <= 4096 && out->cap <= out->max + 1 && !h->spare.p) {
		sl_dynbuf_reset(out);
		h->spare = *out;
	} else {
		sl_dynbuf_free(out);
	}
}

/* Connection's shard: writes what the pipeline produced. */
static void flush_fn(void *arg)
{
	hreq *h = arg;
	srv_shard *ss = h->ss;
	pthread_mutex_lock(&h->mx);
	h->posted = 0;
	sl_dynbuf out = h->pending; /* written below, then kept as the spare */
	h->pending = h->spare;
	h->pending.max = out.max;
	sl_dynbuf_init(&h->spare, 0);
	char *data = out.p;
	size_t len = out.len;
	int finished = h->finished;
	int status = h->status;
	int err_before = h->err_before_stream;
	char backend[sizeof h->backend];
	memcpy(backend, h->backend, sizeof backend);
	pthread_mutex_unlock(&h->mx);

	if (h->gone || !h->req) {
		keep_spare(h, &out);
		if (finished)
			hreq_free(h);
		return;
	}
	sl_h1_req *req = h->req;
	if (!h->started && (!h->stream || (finished && err_before))) {
		/* Not streaming, or an error before anything was streamed: one
		 * complete response with the real status. */
		if (!finished) {
			keep_spare(h, &out);
			return;
		}
		hdrs hs = {.n = 0};
		hadd(&hs, "Content-Type", "application/json");
		hadd(&hs, "X-Request-Id", h->request_id);
		hadd(&hs, "X-Sluice-Model", h->model);
		if (backend[0])
			hadd(&hs, "X-Sluice-Backend", backend);
		if (h->upstream_status[0])
			hadd(&hs, "X-Upstream-Status", h->upstream_status);
		char ra[16];
		if (status == 503 || status == 429) {
			snprintf(ra, sizeof ra, "%u", ss->srv->o.retry_after_s);
			hadd(&hs, "Retry-After", ra);
		}
		count_status(ss, status);
		sl_h1_reply(req, status, hs.h, hs.n, data ? data : "", len);
		keep_spare(h, &out);
		h->req = NULL;
		hreq_free(h);
		return;
	}
	if (!h->started && len == 0 && !finished) {
		keep_spare(h, &out);
		return;
	}
	if (!h->started) {
		hdrs hs = {.n = 0};
		hadd(&hs, "Content-Type", "text/event-stream");
		hadd(&hs, "Cache-Control", "no-cache");
		hadd(&hs, "X-Request-Id", h->request_id);
		hadd(&hs, "X-Sluice-Model", h->model);
		if (backend[0])
			hadd(&hs, "X-Sluice-Backend", backend);
		if (sl_h1_reply_start(req, 200, hs.h, hs.n) != SL_OK) {
			keep_spare(h, &out);
			return; /* client gone: the close callback follows */
		}
		count_status(ss, 200);
		h->started = 1;
	}
	int rc = SL_OK;
	if (len)
		rc = sl_h1_reply_chunk(req, data, len);
	keep_spare(h, &out);
	if (rc == SL_EAGAIN && !finished &&
	    sl_h1_pending_output(req) > SL_SERVER_MAX_PENDING_OUTPUT) {
		/* the client stopped reading: give up on it */
		SL_LOG(SL_LOG_WARN, "event=slow_client req=%s pending=%zu", h->request_id,
		       sl_h1_pending_output(req));
		sl_pipeline_cancel(h->pipeline, h->h);
	}
	if (finished) {
		sl_h1_reply_end(req);
		h->req = NULL;
		hreq_free(h);
	}
}

static void schedule_flush_locked(hreq *h, int *need_post)
{
	if (!h->posted) {
		h->posted = 1;
		*need_post = 1;
	}
}

static void post_flush(hreq *h)
{
	if (sl_runtime_post(h->ss->srv->rt, h->ss->idx, &h->flush_post) != SL_OK)
		SL_LOG(SL_LOG_ERROR, "event=flush_post_failed req=%s", h->request_id);
}

/* ------------------------------------------------------------ pipeline callbacks */

static sl_oai_meta meta_of(const hreq *h)
{
	sl_oai_meta m = {.id = h->resp_id, .model = h->model, .created = h->created};
	return m;
}

/* The first chunk of a chat stream carries delta {"role":"assistant",
 * "content":""}, as OpenAI sends it.  Under h->mx. */
static void role_chunk_locked(hreq *h, const sl_oai_meta *m)
{
	if (h->role_sent)
		return;
	h->role_sent = 1;
	sl_oai_sse_chat_chunk(&h->pending, m, "assistant", "", 0, NULL, h->include_usage);
}

/* Session's shard. */
static void on_token(void *user, const char *text, size_t len)
{
	hreq *h = user;
	if (!h->stream)
		return; /* the final body carries the text */
	int need = 0;
	pthread_mutex_lock(&h->mx);
	if (!h->chunk_pre) {
		sl_oai_meta m = meta_of(h);
		sl_dynbuf pre;
		sl_dynbuf_init(&pre, 4096);
		if (sl_oai_sse_chunk_prefix(&pre, &m, h->kind) == SL_OK)
			h->chunk_pre = sl_dynbuf_take(&pre, &h->chunk_pre_len);
		sl_dynbuf_free(&pre);
		if (h->kind == SL_OAI_CHAT)
			role_chunk_locked(h, &m);
	}
	h->role_sent = 1; /* the stream has begun */
	if (h->chunk_pre) {
		sl_oai_sse_content_chunk(&h->pending, h->kind, h->chunk_pre, h->chunk_pre_len, text,
		                         len, h->include_usage);
	} else { /* out of memory for the prefix: piece by piece */
		sl_oai_meta m = meta_of(h);
		if (h->kind == SL_OAI_CHAT)
			sl_oai_sse_chat_chunk(&h->pending, &m, NULL, text, len, NULL, h->include_usage);
		else
			sl_oai_sse_text_chunk(&h->pending, &m, text, len, NULL, h->include_usage);
	}
	schedule_flush_locked(h, &need);
	pthread_mutex_unlock(&h->mx);
	if (need)
		post_flush(h);
}

/* Maps a non-completed outcome to HTTP status, error type and code. */
static void error_of(const sl_result *r, int *status, const char **type,
                     const char **code, char *upstream, size_t ulen)
{
	*type = "server_error";
	*code = NULL;
	upstream[0] = '\0';
	switch (r->outcome) {
	case SL_OUTCOME_SHED:
		*status = 503;
		*type = "overloaded_error";
		*code = "overloaded";
		return;
	case SL_OUTCOME_EXPIRED:
		*status = 504;
		*type = "timeout_error";
		*code = "deadline_exceeded";
		return;
	case SL_OUTCOME_CANCELLED:
		*status = 503;
		*code = "cancelled";
		return;
	default:
		break;
	}
	if (r->status == SL_ETIMEDOUT) {
		*status = 504;
		*type = "timeout_error";
		*code = "timeout";
		return;
	}
	if (r->status == SL_EUPSTREAM) {
		int us = 0;
		if (r->reason && sscanf(r->reason, "upstream %d", &us) == 1 && us >= 400 && us < 600) {
			snprintf(upstream, ulen, "%d", us);
			*status = us < 500 ? us : 502;
			*type = us == 429 ? "rate_limit_error" : us < 500 ? "invalid_request_error"
			                                                    : "upstream_error";
			*code = "upstream_error";
			return;
		}
		*status = 502;
		*type = "upstream_error";
		*code = "upstream_error";
		return;
	}
	if (r->status == SL_ETOOBIG && r->stage && r->outcome == SL_OUTCOME_FAILED &&
	    r->t_first_token == 0) {
		/* the assembled prompt cannot fit the token budget */
		*status = 400;
		*type = "invalid_request_error";
		*code = "context_length_exceeded";
		return;
	}
	if (r->status == SL_EUNAVAIL) {
		*status = 503;
		*type = "server_error";
		*code = "backend_unavailable";
		return;
	}
	if (r->status == SL_ESYS) {
		/* this process ran out of something (descriptors, ports, memory):
		 * temporary, and not the client's fault nor the backend's */
		*status = 503;
		*type = "server_error";
		*code = "resources_exhausted";
		return;
	}
	if (r->status == SL_EFILTER) {
		*status = 400;
		*type = "invalid_request_error";
		*code = "content_filter";
		return;
	}
	*status = 500;
	*code = "internal_error";
}

/* Session's shard: a worker named the backend serving the request. */
/* dst = a + b (b clipped to bmax bytes), clipped to cap with a NUL like
 * snprintf("%s%.*s"): the hot path's string fields, without printf. */
static void sjoin(char *dst, size_t cap, const char *a, const char *b, size_t bmax)
{
	size_t al = strnlen(a, cap - 1);
	memcpy(dst, a, al);
	size_t bl = strnlen(b, bmax < cap - 1 - al ? bmax : cap - 1 - al);
	memcpy(dst + al, b, bl);
	dst[al + bl] = '\0';
}

static void on_attr(void *user, const char *key, const char *value)
{
	hreq *h = user;
	if (strcmp(key, "backend") != 0)
		return;
	pthread_mutex_lock(&h->mx);
	sjoin(h->backend, sizeof h->backend, "", value, SIZE_MAX);
	pthread_mutex_unlock(&h->mx);
}

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Writes the dead-letter record of h (an ended request, or the outcome of a
 * replay).  Before the client's answer is released: an answered failure
 * is always on disk. */
static void dlq_write(hreq *h, const char *outcome, int http_status, const char *stage,
                      const char *reason, const char *detail, const char *backend)
{
	sl_dlq *q = h->ss->srv->dlq;
	if (!q)
		return;
	sl_dlq_record rec;
	memset(&rec, 0, sizeof rec);
	rec.kind = h->replay_of[0] ? "replay" : "request";
	rec.replay_of = h->replay_of[0] ? h->replay_of : NULL;
	rec.outcome = outcome;
	rec.stage = stage;
	rec.reason = reason;
	rec.detail = detail;
	rec.model = h->model;
	rec.pipeline = h->pipeline ? sl_pipeline_name(h->pipeline) : NULL;
	rec.backend = backend && *backend ? backend : NULL;
	rec.request_id = h->request_id;
	rec.session = h->session;
	rec.endpoint = h->endpoint;
	rec.http_status = http_status;
	rec.t_submit_ms = h->t_submit_ms;
	rec.t_end_ms = wall_ms();
	rec.body = h->body;
	rec.body_len = h->body_len;
	int rc = sl_dlq_append(q, &rec);
	if (rc != SL_OK)
		SL_LOG(SL_LOG_ERROR, "event=dlq_write_failed req=%s status=%s", h->request_id,
		       sl_status_name(rc));
}

static void error_of(const sl_result *r, int *status, const char **type,
                     const char **code, char *upstream, size_t ulen);

static void on_done(void *user, const sl_result *r)
{
	hreq *h = user;
	/* the error answer, decided once: for the client and the dead letter */
	int status = 200;
	const char *type = NULL, *code = NULL;
	if (r->outcome != SL_OUTCOME_COMPLETED)
		error_of(r, &status, &type, &code, h->upstream_status, sizeof h->upstream_status);
	if (h->ss->srv->dlq && (r->outcome == SL_OUTCOME_FAILED || r->outcome == SL_OUTCOME_SHED ||
	                        r->outcome == SL_OUTCOME_EXPIRED || h->replay_of[0])) {
		const char *reason = r->reason                            ? r->reason
		                     : r->outcome == SL_OUTCOME_COMPLETED ? NULL
		                                                          : sl_strerror(r->status);
		dlq_write(h, sl_outcome_name(r->outcome), status, r->stage, reason,
		          sl_status_name(r->status), r->backend);
	}
	sl_oai_meta m = meta_of(h);
	sl_oai_usage u = {.prompt_tokens = r->prompt_tokens,
	                  .completion_tokens = r->completion_tokens};
	if (!u.completion_tokens)
		u.completion_tokens = (uint32_t)r->n_tokens;
	int need = 0;
	pthread_mutex_lock(&h->mx);
	h->pending.max = (size_t)-1 / 2; /* the end must always fit */
	if (r->outcome == SL_OUTCOME_COMPLETED) {
		h->status = 200;
		const char *fr = r->finish_reason ? r->finish_reason : "stop";
		if (!h->stream) {
			if (h->kind == SL_OAI_CHAT)
				sl_oai_json_chat_completion(&h->pending, &m, r->text, r->text_len, fr, &u);
			else
				sl_oai_json_text_completion(&h->pending, &m, r->text, r->text_len, fr, &u);
		} else {
			if (h->kind == SL_OAI_CHAT) {
				role_chunk_locked(h, &m);
				sl_oai_sse_chat_chunk(&h->pending, &m, NULL, NULL, 0, fr, h->include_usage);
			} else
				sl_oai_sse_text_chunk(&h->pending, &m, NULL, 0, fr, h->include_usage);
			if (h->include_usage)
				sl_oai_sse_usage_chunk(&h->pending, &m, h->kind, &u);
			sl_oai_sse_done(&h->pending);
		}
	} else {
		char msg[400];
		snprintf(msg, sizeof msg, "%s%s%s: %s", sl_outcome_name(r->outcome),
		         r->stage ? " at stage " : "", r->stage ? r->stage : "",
		         r->reason ? r->reason : sl_strerror(r->status));
		h->status = status;
		if (h->stream && (h->role_sent || h->pending.len)) {
			/* tokens already went out: an explicit error event, no [DONE] */
			sl_oai_sse_error(&h->pending, msg, type, NULL, code);
		} else {
			h->err_before_stream = 1;
			sl_dynbuf_reset(&h->pending);
			sl_oai_json_error(&h->pending, msg, type, NULL, code);
		}
	}
	h->finished = 1;
	schedule_flush_locked(h, &need);
	pthread_mutex_unlock(&h->mx);
	if (need)
		post_flush(h);
}

/* ------------------------------------------------------------ submit */

/* h1: the client went away before the reply ended; r is freed after this
 * returns. */
static void on_client_gone(sl_h1_req *r, void *arg)
{
	hreq *h = arg;
	h->gone = 1;
	h->req = NULL;
	/* Cancel unless the outcome is already in: after it, the pipeline may
	 * be gone (a reload drains and destroys it). */
	pthread_mutex_lock(&h->mx);
	int finished = h->finished;
	pthread_mutex_unlock(&h->mx);
	if (h->submitted && !finished)
		sl_pipeline_cancel(h->pipeline, h->h); /* the outcome comes back */
	/* parked: the retry finds it gone and frees it */
}

static void try_submit(hreq *h);

static void retry_fn(void *arg)
{
	hreq *h = arg;
	unpark(h->ss);
	if (h->gone) {
		hreq_free(h);
		return;
	}
	try_submit(h);
}

static void ready_fn(void *arg)
{
	hreq *h = arg; /* session's shard: hop back to the connection's shard */
	sl_runtime_post(h->ss->srv->rt, h->ss->idx, &h->retry_post);
}

static void try_submit(hreq *h)
{
	srv_shard *ss = h->ss;
	sl_pipeline *p = h->pipeline;
	int rc = sl_pipeline_submit(p, &h->sreq, 0, &h->h);
	if (rc == SL_OK) {
		h->submitted = 1;
		/* the pipeline copied what it needs */
		free(h->prompt);
		h->prompt = NULL;
		free(h->messages_json);
		h->messages_json = NULL;
		sl_oai_req_free(h->oai);
		h->oai = NULL;
		return;
	}
	if (rc == SL_EAGAIN) {
		/* block: hold this request, stop accepting until there is room */
		park(ss);
		if (sl_pipeline_on_ready(p, h->sreq.session, &h->ready_post) == SL_OK)
			return;
		unpark(ss);
		rc = SL_ECLOSED;
	}
	sl_h1_req *req = h->req;
	sl_h1_set_close_cb(req, NULL, NULL);
	if (rc == SL_ESHED || rc == SL_ECLOSED)
		dlq_write(h, rc == SL_ESHED ? "shed" : "failed", 503,
		          sl_pipeline_stage_name(p, 0),
		          rc == SL_ESHED ? "entry queue full" : "the server is shutting down",
		          sl_status_name(rc), NULL);
	if (rc == SL_ESHED) {
		send_error(ss, req, h->request_id, 503, "overloaded_error", "overloaded", NULL,
		           "shed: the pipeline's entry queue is full; retry after %u s",
		           ss->srv->o.retry_after_s);
	} else if (rc == SL_ECLOSED) {
		send_error(ss, req, h->request_id, 503, "server_error", "draining", NULL,
		           "the server is shutting down");
	} else if (rc == SL_ETOOBIG) {
		send_error(ss, req, h->request_id, 400, "invalid_request_error",
		           "context_length_exceeded", "messages", "the prompt is too long");
	} else {
		send_error(ss, req, h->request_id, 500, "server_error", "internal_error", NULL,
		           "submit failed: %s", sl_strerror(rc));
	}
	h->req = NULL;
	hreq_free(h);
}

/* ------------------------------------------------------------ routing */

/* Shard thread; the result is valid until the callback returns. */
static const sl_model_route *find_route(sl_server *s, const char *model)
{
	route_table *t = atomic_load_explicit(&s->table, memory_order_acquire);
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->routes[i].name, model) == 0)
			return &t->routes[i];
	return NULL;
}

static void make_request_id(srv_shard *ss, char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t v = (ss->srv->seed ^ ((uint64_t)ss->idx << 56)) + ++ss->next_req *
	             0x9E3779B97F4A7C15ull;
	v ^= v >> 31;
	v *= 0xBF58476D1CE4E5B9ull;
	v ^= v >> 29;
	if (cap < 21)
		return;
	memcpy(out, "req-", 4);
	for (int k = 0; k < 16; k++)
		out[4 + k] = hex[(v >> (60 - 4 * k)) & 15];
	out[20] = '\0';
}

static int parse_priority(const char *v, int *out)
{
	if (!v)
		return 0;
	if (!strcasecmp(v, "low")) { *out = 0; return 0; }
	if (!strcasecmp(v, "normal")) { *out = 1; return 0; }
	if (!strcasecmp(v, "high")) { *out = 2; return 0; }
	if (!strcasecmp(v, "critical")) { *out = 3; return 0; }
	char *e;
	long n = strtol(v, &e, 10);
	if (*v && !*e && n >= 0 && n < SL_PRIORITY_LEVELS) {
		*out = (int)n;
		return 0;
	}
	return -1;
}

static int header_ok(const char *v, size_t max)
{
	if (!v)
		return 1;
	size_t n = strnlen(v, max + 1);
	if (n == 0 || n > max)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] < 0x21 || (unsigned char)v[i] == 0x7f)
			return 0;
	return 1;
}

static void handle_completion(srv_shard *ss, sl_h1_req *req, sl_oai_kind kind)
{
	sl_server *s = ss->srv;
	const char *rid_in = sl_h1_header(req, "X-Request-Id");
	char rid[48];
	if (rid_in && header_ok(rid_in, 40))
		sjoin(rid, sizeof rid, "", rid_in, SIZE_MAX);
	else
		make_request_id(ss, rid, sizeof rid);

	size_t blen = 0;
	const char *body = sl_h1_body(req, &blen);
	if (blen == 0) {
		send_error(ss, req, rid, 400, "invalid_request_error", "invalid_json", NULL,
		           "the request body is empty; expected a JSON object");
		return;
	}
	sl_oai_limits lim = {.max_input = 0};
	sl_oai_req *oai = NULL;
	sl_oai_error err;
	int rc = sl_oai_req_parse(kind, body, blen, &lim, &oai, &err);
	if (rc != SL_OK) {
		sl_dynbuf b;
		sl_dynbuf_init(&b, 8192);
		sl_oai_json_error_from(&b, &err);
		hdrs hs = {.n = 0};
		hadd(&hs, "Content-Type", "application/json");
		hadd(&hs, "X-Request-Id", rid);
		count_status(ss, err.http_status);
		sl_h1_reply(req, err.http_status, hs.h, hs.n, sl_dynbuf_str(&b), b.len);
		sl_dynbuf_free(&b);
		return;
	}
	const sl_model_route *route = find_route(s, oai->model);
	const char *want_pl = sl_h1_header(req, "X-Sluice-Pipeline");
	if (route && want_pl) {
		route_table *t = atomic_load_explicit(&s->table, memory_order_acquire);
		const sl_model_route *by = NULL;
		for (size_t i = 0; i < t->n && !by; i++)
			if (strcmp(sl_pipeline_name(t->routes[i].pipeline), want_pl) == 0)
				by = &t->routes[i];
		if (!by) {
			send_error(ss, req, rid, 404, "invalid_request_error", "pipeline_not_found",
			           "X-Sluice-Pipeline", "no pipeline '%.100s'; GET /v1/models lists them",
			           want_pl);
			sl_oai_req_free(oai);
			return;
		}
		route = by;
	}
	if (!route) {
		send_error(ss, req, rid, 404, "invalid_request_error", "model_not_found", "model",
		           "The model '%.200s' does not exist; GET /v1/models lists the served models",
		           oai->model);
		sl_oai_req_free(oai);
		return;
	}
	int prio = SL_PRIORITY_DEFAULT;
	if (parse_priority(sl_h1_header(req, "X-Priority"), &prio) != 0) {
		send_error(ss, req, rid, 400, "invalid_request_error", "invalid_value", "X-Priority",
		           "X-Priority must be 0..%d or low|normal|high|critical",
		           SL_PRIORITY_LEVELS - 1);
		sl_oai_req_free(oai);
		return;
	}
	uint64_t timeout_ms = s->o.request_timeout_ms;
	const char *to = sl_h1_header(req, "X-Request-Timeout-Ms");
	if (to) {
		char *e;
		unsigned long long v = strtoull(to, &e, 10);
		if (!*to || *e || v == 0 || v > 86400000ull) {
			send_error(ss, req, rid, 400, "invalid_request_error", "invalid_value",
			           "X-Request-Timeout-Ms", "X-Request-Timeout-Ms must be 1..86400000");
			sl_oai_req_free(oai);
			return;
		}
		timeout_ms = v;
	}
	const char *sess_h = sl_h1_header(req, "X-Session-Id");
	if (sess_h && !header_ok(sess_h, 128)) {
		send_error(ss, req, rid, 400, "invalid_request_error", "invalid_value",
		           "X-Session-Id", "X-Session-Id must be 1..128 visible characters");
		sl_oai_req_free(oai);
		return;
	}

	hreq *h = calloc(1, sizeof *h);
	if (!h) {
		send_error(ss, req, rid, 500, "server_error", "internal_error", NULL, "out of memory");
		sl_oai_req_free(oai);
		return;
	}
	pthread_mutex_init(&h->mx, NULL);
	sl_dynbuf_init(&h->pending, 64u << 20);
	h->ss = ss;
	h->req = req;
	h->pipeline = route->pipeline;
	sjoin(h->model, sizeof h->model, "", route->name, SIZE_MAX);
	h->pass_messages = route->pass_messages;
	h->kind = kind;
	h->stream = oai->stream;
	h->include_usage = oai->include_usage;
	h->oai = oai;
	h->created = (int64_t)time(NULL);
	sjoin(h->request_id, sizeof h->request_id, "", rid, SIZE_MAX);
	sjoin(h->resp_id, sizeof h->resp_id, kind == SL_OAI_CHAT ? "chatcmpl-" : "cmpl-", rid,
	      SIZE_MAX);
	h->endpoint = kind == SL_OAI_CHAT ? "/v1/chat/completions" : "/v1/completions";
	if (s->dlq) {
		h->t_submit_ms = wall_ms();
		h->body = malloc(blen ? blen : 1);
		if (h->body) {
			memcpy(h->body, body, blen);
			h->body_len = blen;
		}
		/* "X-Sluice-Replay: <dlq id>:<secret>" marks the server's own
		 * replay of a dead letter (POST /admin/dlq/{id}/replay) */
		const char *rp = sl_h1_header(req, "X-Sluice-Replay");
		const char *colon = rp ? strchr(rp, ':') : NULL;
		if (colon && (size_t)(colon - rp) < sizeof h->replay_of &&
		    strcmp(colon + 1, s->replay_secret) == 0)
			snprintf(h->replay_of, sizeof h->replay_of, "%.*s", (int)(colon - rp), rp);
	}
	h->flush_post.fn = flush_fn;
	h->flush_post.arg = h;
	h->ready_post.fn = ready_fn;
	h->ready_post.arg = h;
	h->retry_post.fn = retry_fn;
	h->retry_post.arg = h;

	/* session: X-Session-Id, else the body's user, else the connection */
	if (sess_h) {
		sjoin(h->session, sizeof h->session, "", sess_h, SIZE_MAX);
	} else if (oai->user && *oai->user) {
		sjoin(h->session, sizeof h->session, "user:", oai->user, 150);
	} else {
		sjoin(h->session, sizeof h->session, "conn:", sl_h1_peer(req), SIZE_MAX);
	}
	size_t plen = 0;
	if (sl_oai_req_prompt(oai, &h->prompt, &plen) != SL_OK || plen == 0) {
		send_error(ss, req, rid, 400, "invalid_request_error", "invalid_value",
		           kind == SL_OAI_CHAT ? "messages" : "prompt",
		           "the prompt is empty: give at least one non-empty message");
		hreq_free(h);
		return;
	}
	sl_request *sr = &h->sreq;
	sl_request_init(sr);
	sr->request_id = h->request_id;
	sr->session = h->session;
	sr->input = h->prompt;
	sr->input_len = plen;
	sr->priority = prio;
	sr->deadline_ms = timeout_ms;
	sr->params.max_tokens = oai->max_tokens;
	sr->params.temperature = oai->temperature;
	sr->params.top_p = oai->top_p;
	sr->params.seed = oai->seed;
	sr->params.has_seed = oai->has_seed;
	sr->params.stop = oai->stop;
	sr->on_token = on_token;
	sr->on_done = on_done;
	sr->on_attr = on_attr;
	sr->user = h;
	size_t nm = 0;
	const char *tp = sl_h1_header(req, "traceparent");
	if (tp && header_ok(tp, 128)) {
		h->meta[nm].key = "traceparent";
		h->meta[nm++].value = tp; /* copied by submit, req alive till then */
	}
	if (h->pass_messages && kind == SL_OAI_CHAT) {
		size_t rawlen = 0;
		const char *raw = sl_oai_req_messages_raw(oai, &rawlen);
		if (raw) { /* the client's own bytes: no jansson document */
			h->messages_json = strndup(raw, rawlen);
		} else {
			const json_t *doc = sl_oai_req_json(oai);
			json_t *msgs = doc ? json_object_get(doc, "messages") : NULL;
			h->messages_json = msgs ? json_dumps(msgs, JSON_COMPACT) : NULL;
		}
		if (h->messages_json) {
			h->meta[nm].key = "messages_json";
			h->meta[nm++].value = h->messages_json;
		}
	}
	/* for retrieval and templates: the question, the user, the model */
	if (kind == SL_OAI_CHAT) {
		for (size_t k = oai->n_messages; k-- > 0;)
			if (strcmp(oai->messages[k].role, "user") == 0 && oai->messages[k].content &&
			    strlen(oai->messages[k].content) == oai->messages[k].content_len) {
				h->meta[nm].key = "query";
				h->meta[nm++].value = oai->messages[k].content;
				break;
			}
	} else if (oai->prompt && strlen(oai->prompt) == oai->prompt_len) {
		h->meta[nm].key = "query";
		h->meta[nm++].value = oai->prompt;
	}
	if (oai->user) {
		h->meta[nm].key = "user";
		h->meta[nm++].value = oai->user;
	}
	h->meta[nm].key = "model";
	h->meta[nm++].value = h->model;
	sr->meta = nm ? h->meta : NULL;
	sr->n_meta = nm;
	sl_h1_set_close_cb(req, on_client_gone, h);
	try_submit(h);
}

static void handle_models(srv_shard *ss, sl_h1_req *req)
{
	sl_dynbuf b;
	sl_dynbuf_init(&b, 1u << 20);
	sl_dynbuf_addstr(&b, "{\"object\":\"list\",\"data\":[");
	route_table *t = atomic_load_explicit(&ss->srv->table, memory_order_acquire);
	for (size_t i = 0; i < t->n; i++) {
		if (i)
			sl_dynbuf_addstr(&b, ",");
		sl_dynbuf_addstr(&b, "{\"id\":");
		sl_oai_json_string(&b, t->routes[i].name, strlen(t->routes[i].name));
		sl_dynbuf_printf(&b, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"sluice\","
		                 "\"pipeline\":");
		const char *pn = sl_pipeline_name(t->routes[i].pipeline);
		sl_oai_json_string(&b, pn, strlen(pn));
		sl_dynbuf_addstr(&b, "}");
	}
	sl_dynbuf_addstr(&b, "]}");
	send_text(ss, req, 200, "application/json", sl_dynbuf_str(&b), b.len);
	sl_dynbuf_free(&b);
}

static void handle_metrics(srv_shard *ss, sl_h1_req *req)
{
	sl_server *s = ss->srv;
	sl_dynbuf b;
	sl_dynbuf_init(&b, 16u << 20);
	sl_http_stats tot;
	memset(&tot, 0, sizeof tot);
	for (unsigned i = 0; i < s->n; i++)
		sl_http_stats_add(&tot, &s->sh[i]->stats);
	route_table *t = atomic_load_explicit(&s->table, memory_order_acquire);
	int rc = sl_metrics_render(&b, t->routes, t->n, &tot);
	if (rc == SL_OK)
		rc = sl_metrics_render_backends(&b, t->routes, t->n);
	if (rc == SL_OK)
		rc = sl_metrics_render_dlq(&b, s->dlq);
	if (rc != SL_OK) {
		sl_dynbuf_free(&b);
		send_error(ss, req, NULL, 500, "server_error", "internal_error", NULL,
		           "metrics: %s", sl_strerror(rc));
		return;
	}
	send_text(ss, req, 200, "text/plain; version=0.0.4; charset=utf-8",
	          sl_dynbuf_str(&b), b.len);
	sl_dynbuf_free(&b);
}

/* ------------------------------------------------------------ admin */

struct sl_admin_req {
	sl_post post;
	srv_shard *ss;
	sl_h1_req *req; /* NULL once the client left */
	int status;
	char *body;
};

static void admin_gone(sl_h1_req *r, void *arg)
{
	sl_admin_req *ar = arg;
	ar->req = NULL;
}

static void admin_reply_fn(void *arg)
{
	sl_admin_req *ar = arg;
	if (ar->req) {
		sl_h1_set_close_cb(ar->req, NULL, NULL);
		struct sl_h1_header h[1] = {{"Content-Type", "application/json"}};
		count_status(ar->ss, ar->status);
		sl_h1_reply(ar->req, ar->status, h, 1, ar->body ? ar->body : "{}",
		            ar->body ? strlen(ar->body) : 2);
	}
	free(ar->body);
	free(ar);
}

void sl_server_admin_reply(sl_admin_req *ar, int status, const char *body)
{
	ar->status = status;
	ar->body = body ? strdup(body) : NULL;
	ar->post.fn = admin_reply_fn;
	ar->post.arg = ar;
	if (sl_runtime_post(ar->ss->srv->rt, ar->ss->idx, &ar->post) != SL_OK) {
		free(ar->body);
		free(ar); /* runtime stopping: the connection goes with it */
	}
}

/* GET /admin/backends: every model's router, backend by backend. */
static void handle_admin_backends(srv_shard *ss, sl_h1_req *req)
{
	json_t *models = json_array();
	route_table *t = atomic_load_explicit(&ss->srv->table, memory_order_acquire);
	for (size_t i = 0; i < t->n; i++) {
		const sl_worker *w = t->routes[i].worker;
		if (!sl_worker_is_router(w))
			continue;
		sl_router_backend_stats st[SL_ROUTER_MAX_BACKENDS];
		unsigned n = sl_router_stats(w, st, SL_ROUTER_MAX_BACKENDS);
		json_t *arr = json_array();
		for (unsigned k = 0; k < n && k < SL_ROUTER_MAX_BACKENDS; k++) {
			json_t *b = json_pack(
				"{s:s, s:s, s:I, s:I, s:I, s:i, s:i, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
				"name", st[k].name, "breaker", st[k].breaker_state, "breaker_trips",
				(json_int_t)st[k].breaker.trips, "breaker_rejected",
				(json_int_t)st[k].breaker.rejected, "cooldown_ms",
				(json_int_t)st[k].breaker.cooldown_ms, "concurrency_limit", (int)st[k].limit,
				"in_flight", (int)st[k].inflight, "ewma_ttft_ms", st[k].ewma_ttft_ms,
				"selected", (json_int_t)st[k].selected, "attempts", (json_int_t)st[k].attempts,
				"successes", (json_int_t)st[k].successes, "failures",
				(json_int_t)st[k].failures, "retries", (json_int_t)st[k].retries,
				"retry_budget_exhausted", (json_int_t)st[k].budget.exhausted, "limited",
				(json_int_t)st[k].limited, "open_skips", (json_int_t)st[k].open_skips);
			if (b)
				json_array_append_new(arr, b);
		}
		json_array_append_new(models, json_pack("{s:s, s:s, s:o}", "model", t->routes[i].name,
		                                        "routing", sl_router_strategy(w), "backends",
		                                        arr));
	}
	json_t *doc = json_pack("{s:o}", "models", models);
	char *txt = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	if (!txt) {
		send_error(ss, req, NULL, 500, "server_error", "internal_error", NULL, "out of memory");
		return;
	}
	send_text(ss, req, 200, "application/json", txt, strlen(txt));
	free(txt);
}

/* The dead-letter admin calls read the log (and replay) on a thread of
 * their own, off the shard loops; the answer comes back with
 * sl_server_admin_reply. */
typedef struct dlq_job {
	sl_admin_req *ar;
	sl_server *srv;
	char dir[4096];
	char id[64];
	int op;           /* 0 list, 1 show, 2 replay */
	size_t limit;
	char url[300];    /* replay: this server */
	char secret[40];
} dlq_job;

typedef struct list_ctx {
	json_t *arr;
	json_t *replays; /* replay_of -> latest outcome */
	size_t limit;
} list_ctx;

static int list_cb(void *user, const sl_dlq_record *r)
{
	list_ctx *lc = user;
	if (r->kind && strcmp(r->kind, "replay") == 0) {
		if (r->replay_of)
			json_object_set_new(lc->replays, r->replay_of, json_string(r->outcome ? r->outcome : ""));
		return 0;
	}
	json_t *o = sl_dlq_record_json(r);
	if (o) {
		json_object_del(o, "body"); /* the list is an index; show has the payload */
		json_array_append_new(lc->arr, o);
	}
	/* keep the newest `limit` */
	while (lc->limit && json_array_size(lc->arr) > lc->limit)
		json_array_remove(lc->arr, 0);
	return 0;
}

static void json_reply(sl_admin_req *ar, int status, json_t *o)
{
	char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	sl_server_admin_reply(ar, txt ? status : 500,
	                      txt ? txt : "{\"error\":{\"message\":\"out of memory\",\"type\":"
	                                  "\"server_error\",\"param\":null,\"code\":null}}");
	free(txt);
}

static void err_reply(sl_admin_req *ar, int status, const char *code, const char *msg)
{
	json_reply(ar, status, json_pack("{s:{s:s, s:s, s:n, s:s}}", "error", "message", msg, "type",
	                                 status == 404 ? "invalid_request_error" : "server_error",
	                                 "param", "code", code));
}

typedef struct sink {
	sl_dynbuf b;
} sink;

static size_t sink_write(char *p, size_t sz, size_t n, void *u)
{
	sink *k = u;
	return sl_dynbuf_add(&k->b, p, sz * n) == SL_OK ? sz * n : 0;
}

static int replay_progress(void *u, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	const sl_server *s = u;
	return atomic_load(&((sl_server *)s)->closing) ? 1 : 0;
}

/* Replays record rec through this server's own front door (loopback), so
 * it takes exactly the path client traffic takes; the server writes the
 * outcome as a "replay" record when it sees the signed X-Sluice-Replay. */
static void replay_one(dlq_job *j, const sl_dlq_record *rec)
{
	CURL *e = curl_easy_init();
	if (!e) {
		err_reply(j->ar, 500, "internal_error", "replay: curl init failed");
		return;
	}
	char url[400], hdr_replay[160], hdr_sess[200], hdr_rid[96];
	snprintf(url, sizeof url, "%s%s", j->url, rec->endpoint ? rec->endpoint : "/v1/chat/completions");
	snprintf(hdr_replay, sizeof hdr_replay, "X-Sluice-Replay: %s:%s", rec->id, j->secret);
	snprintf(hdr_sess, sizeof hdr_sess, "X-Session-Id: %.150s",
	         rec->session && *rec->session ? rec->session : rec->id);
	/* a fresh request id, traceable to the original */
	snprintf(hdr_rid, sizeof hdr_rid, "X-Request-Id: replay-%.20s-%04x", rec->id,
	         (unsigned)(wall_ms() & 0xffff));
	struct curl_slist *hl = NULL;
	hl = curl_slist_append(hl, "Content-Type: application/json");
	hl = curl_slist_append(hl, hdr_replay);
	hl = curl_slist_append(hl, hdr_sess);
	hl = curl_slist_append(hl, hdr_rid);
	sink k;
	sl_dynbuf_init(&k.b, 64u << 20);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, rec->body ? rec->body : "");
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rec->body_len);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &k);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 600000L);
	curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, replay_progress);
	curl_easy_setopt(e, CURLOPT_XFERINFODATA, j->srv);
	CURLcode cc = curl_easy_perform(e);
	long code = 0;
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
	if (cc != CURLE_OK) {
		char m[300];
		snprintf(m, sizeof m, "replay: %s", curl_easy_strerror(cc));
		err_reply(j->ar, 502, "replay_failed", m);
	} else {
		json_t *resp = json_loadb(sl_dynbuf_str(&k.b), k.b.len, 0, NULL);
		if (!resp)
			resp = json_stringn(sl_dynbuf_str(&k.b), k.b.len);
		json_reply(j->ar, 200, json_pack("{s:s, s:s, s:s, s:i, s:o*}", "replay_of", rec->id,
		                                 "request_id", hdr_rid + strlen("X-Request-Id: "),
		                                 "outcome", code == 200 ? "completed" : "failed",
		                                 "status", (int)code, "response", resp));
	}
	sl_dynbuf_free(&k.b);
	curl_slist_free_all(hl);
	curl_easy_cleanup(e);
}

static void *dlq_thread(void *arg)
{
	dlq_job *j = arg;
	if (j->op == 0) {
		list_ctx lc = {.arr = json_array(), .replays = json_object(), .limit = j->limit};
		sl_dlq_scan_stats st = {0};
		int rc = sl_dlq_scan(j->dir, list_cb, &lc, &st);
		if (rc != SL_OK && rc != SL_ENOTFOUND) {
			json_decref(lc.arr);
			json_decref(lc.replays);
			err_reply(j->ar, 500, "dlq_unreadable", sl_strerror(rc));
		} else {
			size_t i;
			json_t *o;
			json_array_foreach(lc.arr, i, o) {
				json_t *rep = json_object_get(lc.replays, json_string_value(json_object_get(o, "id")));
				if (rep)
					json_object_set(o, "replayed", rep);
			}
			json_decref(lc.replays);
			json_reply(j->ar, 200, json_pack("{s:o, s:I, s:I}", "records", lc.arr, "total",
			                                 (json_int_t)st.records, "corrupt",
			                                 (json_int_t)st.corrupt));
		}
	} else {
		sl_dlq_record *rec = NULL;
		int rc = sl_dlq_find(j->dir, j->id, &rec);
		if (rc == SL_ENOTFOUND) {
			char m[128];
			snprintf(m, sizeof m, "no dead-letter record %.40s", j->id);
			err_reply(j->ar, 404, "not_found", m);
		} else if (rc != SL_OK) {
			err_reply(j->ar, 500, "dlq_unreadable", sl_strerror(rc));
		} else if (j->op == 1) {
			json_reply(j->ar, 200, sl_dlq_record_json(rec));
		} else {
			replay_one(j, rec);
		}
		sl_dlq_record_free(rec);
	}
	sl_server *s = j->srv;
	free(j);
	atomic_fetch_sub(&s->dlq_threads, 1);
	return NULL;
}

static void handle_admin_dlq(srv_shard *ss, sl_h1_req *req, const char *rest, int is_post)
{
	sl_server *s = ss->srv;
	if (!s->dlq) {
		send_error(ss, req, NULL, 404, "invalid_request_error", "not_found", NULL,
		           "the dead-letter log is off (set dlq.dir in the configuration)");
		return;
	}
	dlq_job *j = calloc(1, sizeof *j);
	if (!j) {
		send_error(ss, req, NULL, 500, "server_error", "internal_error", NULL, "out of memory");
		return;
	}
	snprintf(j->dir, sizeof j->dir, "%s", sl_dlq_dir(s->dlq));
	j->limit = 1000;
	const char *tq = strchr(sl_h1_target(req), '?');
	if (tq) {
		const char *l = strstr(tq, "limit=");
		if (l)
			j->limit = (size_t)strtoull(l + 6, NULL, 10);
	}
	int post_needed = 0;
	if (*rest == '\0') {
		j->op = 0;
	} else {
		const char *slash = strchr(rest, '/');
		size_t idl = slash ? (size_t)(slash - rest) : strlen(rest);
		if (idl == 0 || idl >= sizeof j->id || (slash && strcmp(slash, "/replay") != 0)) {
			free(j);
			send_error(ss, req, NULL, 404, "invalid_request_error", "not_found", NULL,
			           "no admin action dlq/%.64s (known: dlq, dlq/{id}, dlq/{id}/replay)", rest);
			return;
		}
		memcpy(j->id, rest, idl);
		j->op = slash ? 2 : 1;
		post_needed = slash != NULL;
	}
	if (post_needed != is_post) {
		free(j);
		send_405(ss, req, sl_h1_path(req), post_needed);
		return;
	}
	if (j->op == 2) {
		const char *h = s->host;
		int v6 = strchr(h, ':') != NULL;
		if (!strcmp(h, "0.0.0.0") || !strcmp(h, "*") || !*h)
			h = "127.0.0.1";
		else if (!strcmp(h, "::"))
			h = "::1";
		snprintf(j->url, sizeof j->url, v6 || !strcmp(h, "::1") ? "http://[%s]:%u" : "http://%s:%u",
		         h, (unsigned)atomic_load(&s->port));
		snprintf(j->secret, sizeof j->secret, "%s", s->replay_secret);
	}
	sl_admin_req *ar = calloc(1, sizeof *ar);
	if (!ar) {
		free(j);
		send_error(ss, req, NULL, 500, "server_error", "internal_error", NULL, "out of memory");
		return;
	}
	ar->ss = ss;
	ar->req = req;
	sl_h1_set_close_cb(req, admin_gone, ar);
	j->ar = ar;
	j->srv = s;
	atomic_fetch_add(&s->dlq_threads, 1);
	pthread_t th;
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &at, dlq_thread, j) != 0) {
		free(j);
		atomic_fetch_sub(&s->dlq_threads, 1);
		sl_server_admin_reply(ar, 500, "{\"error\":{\"message\":\"cannot start a thread\","
		                               "\"type\":\"server_error\",\"param\":null,\"code\":null}}");
	}
	pthread_attr_destroy(&at);
}

static void handle_admin(srv_shard *ss, sl_h1_req *req, const char *path, int is_post)
{
	sl_server *s = ss->srv;
	if (!s->admin_fn) {
		send_error(ss, req, NULL, 404, "invalid_request_error", "not_found", NULL,
		           "the admin API is disabled");
		return;
	}
	if (s->admin_token) {
		const char *auth = sl_h1_header(req, "Authorization");
		size_t tl = strlen(s->admin_token);
		if (!auth || strncmp(auth, "Bearer ", 7) != 0 || strlen(auth + 7) != tl ||
		    memcmp(auth + 7, s->admin_token, tl) != 0) {
			send_error(ss, req, NULL, 401, "authentication_error", "unauthorized", NULL,
			           "the admin API needs Authorization: Bearer <token>");
			return;
		}
	}
	const char *action = path + strlen("/admin/");
	if (strcmp(action, "backends") == 0) {
		if (is_post)
			send_405(ss, req, path, 0);
		else
			handle_admin_backends(ss, req);
		return;
	}
	if (strcmp(action, "dlq") == 0 || strncmp(action, "dlq/", 4) == 0) {
		handle_admin_dlq(ss, req, action[3] ? action + 4 : "", is_post);
		return;
	}
	if (strcmp(action, "reload") != 0) {
		send_error(ss, req, NULL, 404, "invalid_request_error", "not_found", NULL,
		           "no admin action %.64s (known: reload, backends, dlq)", action);
		return;
	}
	if (!is_post) {
		send_405(ss, req, path, 1);
		return;
	}
	sl_admin_req *ar = calloc(1, sizeof *ar);
	if (!ar) {
		send_error(ss, req, NULL, 500, "server_error", "internal_error", NULL, "out of memory");
		return;
	}
	ar->ss = ss;
	ar->req = req;
	sl_h1_set_close_cb(req, admin_gone, ar);
	s->admin_fn(s->admin_arg, ar, action);
}

static void on_request(sl_h1_req *req, void *arg)
{
	srv_shard *ss = arg;
	const char *path = sl_h1_path(req);
	const char *method = sl_h1_method(req);
	int is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	int is_post = strcmp(method, "POST") == 0;
	sl__ctr_add_u(&ss->stats.requests, 1);

	static const struct {
		const char *path;
		int post; /* 1 = POST, 0 = GET/HEAD */
		int id;
	} table[] = {
		{"/v1/chat/completions", 1, 1},
		{"/v1/completions", 1, 2},
		{"/v1/models", 0, 3},
		{"/healthz", 0, 4},
		{"/readyz", 0, 5},
		{"/metrics", 0, 6},
	};
	if (strncmp(path, "/admin/", 7) == 0) {
		handle_admin(ss, req, path, is_post);
		return;
	}
	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
		if (strcmp(path, table[i].path) != 0)
			continue;
		if (table[i].post ? !is_post : !is_get) {
			send_405(ss, req, path, table[i].post);
			return;
		}
		switch (table[i].id) {
		case 1: handle_completion(ss, req, SL_OAI_CHAT); return;
		case 2: handle_completion(ss, req, SL_OAI_COMPLETION); return;
		case 3: handle_models(ss, req); return;
		case 4: send_text(ss, req, 200, "text/plain", "ok\n", 3); return;
		case 5:
			if (atomic_load(&ss->srv->accepting))
				send_text(ss, req, 200, "text/plain", "ready\n", 6);
			else
				send_text(ss, req, 503, "text/plain", "draining\n", 9);
			return;
		case 6: handle_metrics(ss, req); return;
		}
	}
	send_error(ss, req, NULL, 404, "invalid_request_error", "not_found", NULL,
	           "no route for %.16s %.100s", method, path);
}

/* ------------------------------------------------------------ routes */

static void table_free(route_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++)
		free((char *)t->routes[i].name);
	free(t->routes);
	free(t);
}

static route_table *table_new(const sl_model_route *routes, size_t n)
{
	route_table *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->routes = calloc(n ? n : 1, sizeof *t->routes);
	if (!t->routes) {
		free(t);
		return NULL;
	}
	t->n = n;
	for (size_t i = 0; i < n; i++) {
		t->routes[i] = routes[i];
		t->routes[i].name = strdup(routes[i].name);
		if (!t->routes[i].name) {
			table_free(t);
			return NULL;
		}
	}
	return t;
}

static void quiesce_fn(void *arg)
{
	(void)arg; /* running here means the shard finished any callback that
	            * could still hold the old table */
}

int sl_server_set_routes(sl_server *s, const sl_model_route *routes, size_t n)
{
	if (!s || !routes || n == 0)
		return SL_EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!routes[i].name || !*routes[i].name || !routes[i].pipeline)
			return SL_EINVAL;
	route_table *t = table_new(routes, n);
	if (!t)
		return SL_ENOMEM;
	route_table *old = atomic_exchange_explicit(&s->table, t, memory_order_acq_rel);
	for (unsigned i = 0; i < s->n; i++)
		sl__shard_call(s->rt, i, quiesce_fn, NULL);
	table_free(old);
	return SL_OK;
}

/* ------------------------------------------------------------ setup */

typedef struct start_ctx {
	srv_shard *ss;
	int fd;
	int rc;
} start_ctx;

static void start_fn(void *arg)
{
	start_ctx *c = arg;
	srv_shard *ss = c->ss;
	sl_server *s = ss->srv;
	sl_h1_limits lim = {.max_headers = s->o.max_headers,
	                    .max_body = s->o.max_body,
	                    .read_timeout_ms = s->o.read_timeout_ms};
	c->rc = sl_h1_server_create(ss->base, c->fd, &lim, on_request, h1_error_body, ss, &ss->h1);
}

static void stop_fn(void *arg)
{
	srv_shard *ss = arg;
	sl_h1_server_destroy(ss->h1); /* open requests get their close callback */
	ss->h1 = NULL;
}

static void disable_fn(void *arg)
{
	srv_shard *ss = arg;
	if (ss->h1 && !ss->lis_disabled) {
		sl_h1_server_pause_accept(ss->h1);
		ss->lis_disabled = 1;
	}
}

/* SO_REUSEPORT lets every shard have its own listener on one port, but it
 * would also let a second sluice (same user) join a port another process
 * already serves, and the two would split its traffic without a word.  So
 * before the shards bind, a probe binds the address without SO_REUSEPORT:
 * EADDRINUSE there means someone else is listening.  0, or -1 with errno. */
static int port_free(const char *host, uint16_t port)
{
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	if (port == 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return 0; /* any port is a fresh one; a bad host fails below */
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
	int e = errno;
	close(fd);
	errno = e;
	return rc == 0 ? 0 : -1;
}

static int bind_socket(const char *host, uint16_t port, uint16_t *bound)
{
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return -2;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, SOMAXCONN) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	socklen_t sl = sizeof sa;
	getsockname(fd, (struct sockaddr *)&sa, &sl);
	*bound = ntohs(sa.sin_port);
	return fd;
}

int sl_server_create(sl_runtime *rt, const sl_server_opts *opts, sl_server **out)
{
	if (!rt || !opts || !out || !opts->routes || opts->n_routes == 0)
		return SL_EINVAL;
	for (size_t i = 0; i < opts->n_routes; i++)
		if (!opts->routes[i].name || !*opts->routes[i].name || !opts->routes[i].pipeline)
			return SL_EINVAL;
	sl_server *s = calloc(1, sizeof *s);
	if (!s)
		return SL_ENOMEM;
	s->rt = rt;
	s->o = *opts;
	if (!s->o.max_body)
		s->o.max_body = SL_SERVER_DEFAULT_MAX_BODY;
	if (!s->o.max_headers)
		s->o.max_headers = SL_SERVER_DEFAULT_MAX_HEADERS;
	if (!s->o.read_timeout_ms)
		s->o.read_timeout_ms = SL_SERVER_DEFAULT_READ_TIMEOUT_MS;
	if (!s->o.retry_after_s)
		s->o.retry_after_s = SL_SERVER_DEFAULT_RETRY_AFTER_S;
	s->host = strdup(opts->host ? opts->host : "127.0.0.1");
	s->o.host = s->host;
	s->n = sl_runtime_shards(rt);
	s->sh = calloc(s->n, sizeof *s->sh);
	route_table *t = table_new(opts->routes, opts->n_routes);
	atomic_init(&s->table, t);
	s->admin_fn = opts->admin_fn;
	s->admin_arg = opts->admin_arg;
	s->dlq = opts->dlq;
	if (opts->admin_token)
		s->admin_token = strdup(opts->admin_token);
	if (!s->host || !s->sh || !t || (opts->admin_token && !s->admin_token)) {
		sl_server_destroy(s);
		return SL_ENOMEM;
	}
	s->o.routes = NULL;
	s->o.n_routes = 0;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	s->seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
	{
		uint64_t a = 0, b = 0;
		FILE *ur = fopen("/dev/urandom", "rb");
		if (!ur || fread(&a, sizeof a, 1, ur) != 1 || fread(&b, sizeof b, 1, ur) != 1) {
			a = s->seed * 0x9E3779B97F4A7C15ull;
			b = a ^ (uint64_t)(uintptr_t)s;
		}
		if (ur)
			fclose(ur);
		snprintf(s->replay_secret, sizeof s->replay_secret, "%016" PRIx64 "%016" PRIx64, a, b);
	}
	atomic_init(&s->accepting, 1);
	uint16_t port = opts->port;
	if (port_free(s->host, port) != 0) {
		SL_LOG(SL_LOG_ERROR, "event=bind_failed host=%s port=%u error=\"%s\"", s->host, port,
		       strerror(errno));
		sl_server_destroy(s);
		return SL_ESYS;
	}
	for (unsigned i = 0; i < s->n; i++) {
		srv_shard *ss = calloc(1, sizeof *ss);
		if (!ss) {
			sl_server_destroy(s);
			return SL_ENOMEM;
		}
		s->sh[i] = ss;
		ss->srv = s;
		ss->idx = i;
		ss->base = sl_runtime_base(rt, i);
		uint16_t bound = 0;
		int fd = bind_socket(s->host, port, &bound);
		if (fd < 0) {
			SL_LOG(SL_LOG_ERROR, "event=bind_failed host=%s port=%u error=\"%s\"", s->host,
			       port, fd == -2 ? "not an IPv4 address" : strerror(errno));
			sl_server_destroy(s);
			return fd == -2 ? SL_EINVAL : SL_ESYS;
		}
		port = bound; /* port 0: the others join the port the first got */
		start_ctx c = {.ss = ss, .fd = fd, .rc = SL_ESYS};
		sl__shard_call(rt, i, start_fn, &c);
		if (c.rc != SL_OK) {
			sl_server_destroy(s);
			return c.rc;
		}
	}
	atomic_store(&s->port, port);
	*out = s;
	return SL_OK;
}

uint16_t sl_server_port(const sl_server *s)
{
	return s ? atomic_load(&s->port) : 0;
}

void sl_server_stop_accepting(sl_server *s)
{
	if (!s)
		return;
	atomic_store(&s->accepting, 0);
	for (unsigned i = 0; i < s->n; i++)
		if (s->sh[i])
			sl__shard_call(s->rt, i, disable_fn, s->sh[i]);
}

void sl_server_destroy(sl_server *s)
{
	if (!s)
		return;
	/* admin DLQ threads answer through the shards: let them finish first */
	atomic_store(&s->closing, 1);
	while (atomic_load(&s->dlq_threads) > 0)
		usleep(2000);
	for (unsigned i = 0; s->sh && i < s->n; i++) {
		if (!s->sh[i])
			continue;
		sl__shard_call(s->rt, i, stop_fn, s->sh[i]);
		free(s->sh[i]);
	}
	table_free(atomic_load(&s->table));
	free(s->admin_token);
	free(s->sh);
	free(s->host);
	free(s);
}

void sl_server_stats(const sl_server *s, sl_http_stats *out)
{
	memset(out, 0, sizeof *out);
	for (unsigned i = 0; i < s->n; i++)
		sl_http_stats_add(out, &s->sh[i]->stats);
}
