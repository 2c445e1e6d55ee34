/* openai.c - the OpenAI-compatible upstream worker; see openai.h and
 * docs/internals/openai-worker.md.
 *
 * Threads and ownership
 * ---------------------
 * oai_state  created by sl_worker_openai_create (any thread), read-only
 *            afterwards and shared by every shard (including the static
 *            header list, which curl only reads).
 * oai_shard  one per shard, created in start() and touched only by that
 *            shard's thread: its CURLM, the curl timer event, the socket
 *            contexts, the running calls and the spare easy handles (curl
 *            transport), or the native transport's pool and resolver.
 * oai_call   one per running call, owned by its shard; freed by call_free()
 *            exactly once, on completion, first-token timeout, cancel,
 *            close or stop.
 * (types in openai_int.h)
 *
 * Two transports carry the calls of one worker (chosen at create, see
 * openai.h): the native HTTP/1.1 client of native.c for http:// upstreams,
 * and libcurl.  Everything above the bytes - the request body, the response
 * classification and parsing (sl__oai_classify, sl__oai_body) and the
 * outcome of a call (sl__oai_finish) - is shared, so both report the same
 * statuses and details.
 *
 * The loop drives curl as docs/examples/multi-event.c does: curl tells us
 * which sockets to watch (on_socket) and when to wake it (on_timer_set);
 * libevent calls on_sock_event / on_curl_timer, which call
 * curl_multi_socket_action and then drain curl's finished-transfer messages
 * (check_done).  sl_infer_done is never called from inside a curl callback:
 * the write callback only records why the transfer must stop and returns 0
 * (curl then ends the transfer with CURLE_WRITE_ERROR), and the call is
 * completed from check_done, where curl_multi_remove_handle is allowed.
 */
#include <curl/curl.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/dynbuf.h"
#include "core/log.h"
#include "core/utf8.h"
#include "worker/openai/openai.h"
#include "worker/openai/openai_int.h"
#include "worker/openai/sse.h"

#define MAX_TIMEOUT_MS 86400000u   /* one day */
#define MAX_BODY_OUT (64u << 20)   /* request body bound */
#define SPARE_EASY OAI_SPARE_EASY  /* easy handles kept per shard for reuse */
#define DETAIL_MAX OAI_DETAIL_MAX  /* bytes of upstream message in a detail */
#define STOP_EVENT 1               /* SSE callback's "stop feeding" value */

typedef struct oai_sock oai_sock;

struct oai_sock {
	oai_shard *ss;
	curl_socket_t fd;
	struct event ev;
	int ev_init;
	oai_sock *prev, *next;
};

/* ------------------------------------------------------------ helpers */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init_once(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Safe ASCII for JSON strings: everything but '"', '\\' and controls. */
static const unsigned char json_plain[256] = {
#define R8(v) v, v, v, v, v, v, v, v
	R8(0), R8(0), R8(0), R8(0), /* 0x00..0x1f */
	1, 1, 0, 1, 1, 1, 1, 1,     /* ' ' '!' '"' ... */
	R8(1), R8(1), R8(1),        /* 0x28..0x3f */
	R8(1), R8(1), R8(1),        /* 0x40..0x57 */
	1, 1, 1, 1, 0, 1, 1, 1,     /* 0x58..0x5f: '\\' */
	R8(1), R8(1), R8(1), R8(1), /* 0x60..0x7f */
#undef R8
};

/* Appends s as a JSON string (with quotes).  Invalid UTF-8 bytes become
 * U+FFFD, so the body is always valid JSON. */
static int json_str(sl_dynbuf *b, const char *s, size_t len)
{
	int rc = sl_dynbuf_add(b, "\"", 1);
	size_t i = 0;
	while (rc == SL_OK && i < len) {
		size_t j = i;
		while (j < len && json_plain[(unsigned char)s[j]])
			j++;
		if (j > i) {
			rc = sl_dynbuf_add(b, s + i, j - i);
			i = j;
			continue;
		}
		unsigned char ch = (unsigned char)s[i];
		char esc[8];
		if (ch >= 0x80) {
			size_t n = sl_utf8_seq_len(s + i, len - i);
			if (n) {
				rc = sl_dynbuf_add(b, s + i, n);
				i += n;
			} else {
				rc = sl_dynbuf_add(b, "\xEF\xBF\xBD", 3);
				i++;
			}
			continue;
		}
		switch (ch) {
		case '"': rc = sl_dynbuf_add(b, "\\\"", 2); break;
		case '\\': rc = sl_dynbuf_add(b, "\\\\", 2); break;
		case '\n': rc = sl_dynbuf_add(b, "\\n", 2); break;
		case '\r': rc = sl_dynbuf_add(b, "\\r", 2); break;
		case '\t': rc = sl_dynbuf_add(b, "\\t", 2); break;
		case '\b': rc = sl_dynbuf_add(b, "\\b", 2); break;
		case '\f': rc = sl_dynbuf_add(b, "\\f", 2); break;
		default:
			snprintf(esc, sizeof esc, "\\u%04x", ch);
			rc = sl_dynbuf_add(b, esc, 6);
		}
		i++;
	}
	if (rc == SL_OK)
		rc = sl_dynbuf_add(b, "\"", 1);
	return rc;
}

/* A double in JSON (locale-proof: a ',' decimal separator becomes '.'). */
static int json_num(sl_dynbuf *b, const char *key, double v)
{
	char num[64];
	snprintf(num, sizeof num, "%.15g", v);
	for (char *p = num; *p; p++)
		if (*p == ',')
			*p = '.';
	return sl_dynbuf_printf(b, ",\"%s\":%s", key, num);
}

/* 1 when s (len bytes) holds no control character (header-safe). */
static int header_safe(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch < 0x20 || ch == 0x7f)
			return 0;
	}
	return 1;
}

static const char *static_finish(const char *fr)
{
	static const char *const known[] = {"stop", "length", "content_filter",
	                                    "tool_calls", "function_call"};
	if (!fr)
		return NULL;
	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
		if (strcmp(fr, known[i]) == 0)
			return known[i];
	return NULL; /* unknown reason: the pipeline reports "stop" */
}

/* Copies an upstream message into out (cap bytes): control characters
 * become spaces, cut at DETAIL_MAX on a UTF-8 boundary. */
static void clean_message(char *out, size_t cap, const char *s, size_t len)
{
	if (len > DETAIL_MAX)
		len = DETAIL_MAX;
	if (len >= cap)
		len = cap - 1;
	len = sl_utf8_valid_prefix(s, len);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		out[i] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
	}
	out[len] = '\0';
	/* trim */
	while (len && out[len - 1] == ' ')
		out[--len] = '\0';
}

/* Replaces every occurrence of the API key in s (in place) with "*". */
static void scrub_key(const oai_state *st, char *s)
{
	if (!st->key_len)
		return;
	char *p;
	while ((p = strstr(s, st->key)) != NULL) {
		*p = '*';
		memmove(p + 1, p + st->key_len, strlen(p + st->key_len) + 1);
	}
}

/* ------------------------------------------------------------ calls */

/* Stops the first-token limit.  The native transport's timer also carries
 * its other deadlines: it stays armed and re-arms itself when it fires. */
static void ft_disarm(oai_call *c)
{
	if (c->ft_armed) {
		if (!c->native)
			event_del(&c->ft);
		c->ft_armed = 0;
	}
}

/* Detaches the call from curl and the shard and frees it.  The sl_infer
 * is not touched. */
static void call_free(oai_call *c)
{
	oai_shard *ss = c->ss;
	ft_disarm(c);
	if (c->native)
		sl__oai_nt_detach(c); /* timer, wait lists, connection (closed) */
	if (c->easy) {
		if (c->in_multi)
			curl_multi_remove_handle(ss->multi, c->easy);
		if (ss->n_spare < SPARE_EASY && !ss->closed) {
			curl_easy_reset(c->easy);
			ss->spare[ss->n_spare++] = c->easy;
		} else {
			curl_easy_cleanup(c->easy);
		}
	}
	if (c->prev)
		c->prev->next = c->next;
	else if (ss->calls == c)
		ss->calls = c->next;
	if (c->next)
		c->next->prev = c->prev;
	sl_dynbuf_free(&c->body);
	sl_dynbuf_free(&c->raw);
	sl_sse_destroy(c->sse);
	if (c->chunk_init)
		sl_oai_chunk_free(&c->chunk);
	free(c->stop_detail);
	free(c->hbuf);
	if (c->cancelled)
		ss->n_cancelled--;
	else
		*sl_infer_worker_data(c->call) = NULL;
	free(c);
}

/* Frees the call, then ends it (detail is copied by sl_infer_done). */
static void call_end(oai_call *c, int status, const char *detail, const sl_usage *u)
{
	sl_infer *call = c->call;
	oai_shard *ss = c->ss;
	if (status != SL_OK && sl__log_on(SL_LOG_DEBUG)) {
		char q[600];
		sl__log(SL_LOG_DEBUG, "event=openai_call_failed shard=%u req=%s status=%s detail=%s",
		        ss->idx, sl_infer_request_id(call), sl_status_name(status),
		        sl__log_quote(q, sizeof q, detail ? detail : ""));
	}
	sl_usage uu;
	if (u) {
		uu = *u;
		u = &uu;
	}
	/* detail may point into c (stop_detail): copy it before freeing c */
	char dcopy[DETAIL_MAX + 256];
	if (detail) {
		snprintf(dcopy, sizeof dcopy, "%s", detail);
		detail = dcopy;
	}
	sl_fail_kind kind = c->fail_kind ? (sl_fail_kind)c->fail_kind : SL_FAIL_OTHER;
	int http = c->mode == M_ERROR ? (int)c->code : 0;
	call_free(c);
	if (status != SL_OK && status != SL_ECANCELED)
		sl_infer_set_failure(call, kind, http);
	sl_infer_done(call, status, detail, u);
}

/* Records why the transfer must stop (first reason wins). */
static void set_stop(oai_call *c, int status, const char *detail)
{
	if (status == SL_EUPSTREAM && !c->fail_kind && c->stop_status == SL_OK)
		c->fail_kind = SL_FAIL_PROTOCOL;
	if (c->stop)
		return;
	c->stop = 1;
	c->stop_status = status;
	if (status == SL_ECANCELED)
		c->stop_silent = 1;
	if (detail) {
		c->stop_detail = strdup(detail);
		if (c->stop_detail)
			scrub_key(c->ss->st, c->stop_detail);
	}
}

void sl__oai_first_token_timeout(oai_call *c)
{
	c->ft_armed = 0;
	char d[96];
	snprintf(d, sizeof d, "upstream sent no token within %u ms", c->ss->st->first_ms);
	c->fail_kind = SL_FAIL_FIRST_TOKEN;
	/* remove_handle (or the native detach) closes the connection: the
	 * upstream sees the abort */
	call_end(c, SL_ETIMEDOUT, d, NULL);
}

static void on_first_token_timeout(evutil_socket_t fd, short what, void *arg)
{
	sl__oai_first_token_timeout(arg);
}

/* ------------------------------------------------------------ response */

/* Detail for an {"error":...} event inside a stream. */
static void stream_error(oai_call *c, const sl_oai_chunk *k)
{
	char msg[DETAIL_MAX + 1], d[DETAIL_MAX + 64];
	const char *m = k->error_message ? k->error_message : "(no message)";
	clean_message(msg, sizeof msg, m, strlen(m));
	const char *code = k->error_code;
	if (code && strlen(code) == 3 && code[0] >= '4' && code[0] <= '5' &&
	    code[1] >= '0' && code[1] <= '9' && code[2] >= '0' && code[2] <= '9')
		snprintf(d, sizeof d, "upstream %s: %s", code, msg);
	else
		snprintf(d, sizeof d, "upstream error: %s", msg);
	set_stop(c, SL_EUPSTREAM, d);
}

/* Passes one piece of content on.  Returns 0 to go on, STOP_EVENT to stop
 * (the reason is recorded). */
static int emit(oai_call *c, const char *text, size_t len)
{
	if (!len)
		return 0;
	ft_disarm(c);
	oai_shard *ss = c->ss;
	ss->busy++;
	int rc = sl_infer_token(c->call, text, len);
	ss->busy--;
	c->n_tokens++;
	if (c->stop)
		return STOP_EVENT; /* cancelled from inside the token path */
	if (rc == SL_OK)
		return 0;
	if (rc == SL_ETOOBIG) {
		set_stop(c, SL_OK, NULL); /* output bound: finish "length" */
		c->usage.finish_reason = "length";
	} else if (rc == SL_ECANCELED) {
		set_stop(c, SL_ECANCELED, NULL);
	} else {
		set_stop(c, rc, "openai worker could not pass a token on");
	}
	return STOP_EVENT;
}

/* One SSE event: one chunk of the stream. */
static int on_event(void *arg, const char *event, size_t event_len,
                    const char *data, size_t data_len)
{
	oai_call *c = arg;
	sl_oai_chunk *k = &c->chunk;
	if (c->stop)
		return STOP_EVENT;
	int rc = sl_oai_chunk_parse(data, data_len, k);
	if (rc == SL_ETOOBIG) {
		set_stop(c, SL_EUPSTREAM, "upstream sent an event over the size bound");
		return STOP_EVENT;
	}
	if (rc == SL_ENOMEM) {
		set_stop(c, SL_ENOMEM, "out of memory parsing the upstream stream");
		return STOP_EVENT;
	}
	if (rc != SL_OK) {
		set_stop(c, SL_EUPSTREAM, "upstream sent malformed JSON");
		return STOP_EVENT;
	}
	if (k->done) {
		c->got_done = 1;
		return 0;
	}
	if (k->is_error) {
		stream_error(c, k);
		return STOP_EVENT;
	}
	if (k->content && emit(c, k->content, k->content_len))
		return STOP_EVENT;
	if (k->finish_reason) {
		ft_disarm(c);
		c->finished = 1;
		c->usage.finish_reason = static_finish(k->finish_reason);
	}
	if (k->has_usage) {
		c->has_usage = 1;
		c->usage.prompt_tokens = k->prompt_tokens;
		c->usage.completion_tokens = k->completion_tokens;
	}
	return 0;
}

void sl__oai_classify(oai_call *c, long code, const char *ct)
{
	c->code = code;
	if (c->code < 200 || c->code > 299) {
		c->mode = M_ERROR;
		return;
	}
	if (ct && strncasecmp(ct, "text/event-stream", 17) == 0)
		c->mode = M_SSE;
	else if (ct && strncasecmp(ct, "application/json", 16) == 0)
		c->mode = M_JSON;
	else
		c->mode = c->ss->st->stream ? M_SSE : M_JSON;
}

static void classify(oai_call *c)
{
	long code = 0;
	const char *ct = NULL;
	curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &code);
	if (code >= 200 && code <= 299)
		curl_easy_getinfo(c->easy, CURLINFO_CONTENT_TYPE, &ct);
	sl__oai_classify(c, code, ct);
}

int sl__oai_body(oai_call *c, const char *ptr, size_t len)
{
	if (c->stop)
		return 1;
	c->got_body = 1;
	int rc;
	switch (c->mode) {
	case M_SSE:
		rc = sl_sse_feed(c->sse, ptr, len);
		if (rc == SL_OK)
			return 0;
		if (!c->stop) {
			if (rc == SL_ETOOBIG)
				set_stop(c, SL_EUPSTREAM, "upstream sent an event over the size bound");
			else
				set_stop(c, rc == SL_ENOMEM ? SL_ENOMEM : SL_EUPSTREAM,
				         "upstream stream could not be parsed");
		}
		return 1;
	case M_ERROR:
		/* keep the start of an error body; the rest is dropped */
		if (c->raw.len < SL_OPENAI_MAX_ERROR_BODY) {
			size_t n = SL_OPENAI_MAX_ERROR_BODY - c->raw.len;
			sl_dynbuf_add(&c->raw, ptr, len < n ? len : n);
		}
		return 0;
	default:
		rc = sl_dynbuf_add(&c->raw, ptr, len);
		if (rc == SL_OK)
			return 0;
		set_stop(c, rc == SL_ETOOBIG ? SL_EUPSTREAM : rc,
		         rc == SL_ETOOBIG ? "upstream response over the size bound"
		                          : "out of memory reading the upstream response");
		return 1;
	}
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
	oai_call *c = ud;
	size_t len = size * nmemb;
	if (c->stop)
		return 0;
	if (c->mode == M_UNKNOWN)
		classify(c);
	return sl__oai_body(c, ptr, len) ? 0 : len;
}

/* The message of an error body: error.message, error (a string), message,
 * detail, else the start of the body. */
static void error_message(const char *body, size_t len, char *out, size_t cap)
{
	const char *b = body;
	size_t n = len;
	/* an error sent as one SSE event */
	while (n && (*b == ' ' || *b == '\r' || *b == '\n' || *b == '\t'))
		b++, n--;
	if (n > 5 && memcmp(b, "data:", 5) == 0) {
		b += 5;
		n -= 5;
		const char *nl = memchr(b, '\n', n);
		if (nl)
			n = (size_t)(nl - b);
	}
	json_t *doc = json_loadb(b, n, 0, NULL);
	const char *m = NULL;
	if (json_is_object(doc)) {
		json_t *e = json_object_get(doc, "error");
		if (json_is_object(e))
			m = json_string_value(json_object_get(e, "message"));
		else if (json_is_string(e))
			m = json_string_value(e);
		if (!m)
			m = json_string_value(json_object_get(doc, "message"));
		if (!m)
			m = json_string_value(json_object_get(doc, "detail"));
	}
	if (m)
		clean_message(out, cap, m, strlen(m));
	else
		clean_message(out, cap, body, len);
	json_decref(doc);
	if (!out[0])
		snprintf(out, cap, "(no message)");
}

/* The whole body of a non-streamed chat.completion (or completion). */
static void finish_json(oai_call *c)
{
	/* The hand-written chunk scanner (sse.h) reads a whole chat.completion
	 * too (choices[0].message.content): ~20x fewer instructions than a
	 * jansson document for a typical answer.  Its store never needs more
	 * than the body (unescaping does not grow a string). */
	sl_oai_chunk ch;
	sl_oai_chunk_init(&ch, c->raw.len + 64);
	int rc = sl_oai_chunk_parse(sl_dynbuf_str(&c->raw), c->raw.len, &ch);
	if (rc != SL_OK || ch.done) {
		sl_oai_chunk_free(&ch);
		c->fail_kind = SL_FAIL_PROTOCOL;
		call_end(c, rc == SL_ENOMEM ? SL_ENOMEM : SL_EUPSTREAM, "upstream sent malformed JSON",
		         NULL);
		return;
	}
	if (ch.is_error) {
		sl_oai_chunk_free(&ch);
		char msg[DETAIL_MAX + 1];
		error_message(sl_dynbuf_str(&c->raw), c->raw.len, msg, sizeof msg);
		char d[DETAIL_MAX + 64];
		snprintf(d, sizeof d, "upstream error: %s", msg);
		scrub_key(c->ss->st, d);
		c->fail_kind = SL_FAIL_PROTOCOL;
		call_end(c, SL_EUPSTREAM, d, NULL);
		return;
	}
	if (!ch.has_choice) {
		sl_oai_chunk_free(&ch);
		c->fail_kind = SL_FAIL_PROTOCOL;
		call_end(c, SL_EUPSTREAM, "upstream response has no choices", NULL);
		return;
	}
	sl_usage u = {0};
	u.finish_reason = static_finish(ch.finish_reason);
	u.prompt_tokens = ch.prompt_tokens;
	u.completion_tokens = ch.completion_tokens;
	int has_usage = ch.has_usage;
	if (ch.content && emit(c, ch.content, ch.content_len)) {
		sl_oai_chunk_free(&ch);
		if (c->stop_silent) {
			call_free(c);
			return;
		}
		if (c->stop_status != SL_OK) {
			call_end(c, c->stop_status, c->stop_detail, NULL);
			return;
		}
		u.finish_reason = "length"; /* SL_ETOOBIG: the output bound */
	} else {
		sl_oai_chunk_free(&ch);
	}
	if (!has_usage)
		u.completion_tokens = c->n_tokens;
	ft_disarm(c);
	call_end(c, SL_OK, NULL, &u);
}

static int connect_error(CURLcode res)
{
	switch (res) {
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_UNSUPPORTED_PROTOCOL:
		return 1;
	default:
		return 0;
	}
}

void sl__oai_finish(oai_call *c, oai_xfer x, int sent, const char *err)
{
	const oai_state *st = c->ss->st;
	char d[DETAIL_MAX + 160];
	if (c->stop) {
		if (c->stop_silent) {
			call_free(c);
			return;
		}
		sl_usage u = c->usage;
		if (!c->has_usage)
			u.completion_tokens = c->n_tokens;
		call_end(c, c->stop_status, c->stop_detail, &u);
		return;
	}
	if (c->mode == M_ERROR) {
		/* an error status: report it even if the body was cut */
		char msg[DETAIL_MAX + 1];
		error_message(sl_dynbuf_str(&c->raw), c->raw.len, msg, sizeof msg);
		snprintf(d, sizeof d, "upstream %ld: %s", c->code, msg);
		scrub_key(st, d);
		c->fail_kind = SL_FAIL_HTTP;
		call_end(c, SL_EUPSTREAM, d, NULL);
		return;
	}
	if (x != OAI_X_OK) {
		uint64_t deadline = sl_infer_deadline(c->call);
		uint64_t now = sl_now_ns();
		uint64_t elapsed_ms = (now - c->t_start) / 1000000u;
		const char *cerr = err && err[0] ? err : "unknown error";
		if (x == OAI_X_TIMEOUT &&
		    ((deadline && now >= deadline) ||
		     (c->limit_ms && elapsed_ms + 1 >= c->limit_ms && c->limit_is_deadline))) {
			c->fail_kind = SL_FAIL_TIMEOUT;
			call_end(c, SL_ETIMEDOUT, "deadline exceeded waiting for upstream", NULL);
		} else if (x == OAI_X_TIMEOUT && c->limit_ms && elapsed_ms + 1 >= c->limit_ms) {
			snprintf(d, sizeof d, "upstream timed out after %u ms", c->limit_ms);
			c->fail_kind = SL_FAIL_TIMEOUT;
			call_end(c, SL_ETIMEDOUT, d, NULL);
		} else if (x == OAI_X_LOCAL) {
			snprintf(d, sizeof d, "out of local resources before reaching upstream: %s", cerr);
			c->fail_kind = SL_FAIL_LOCAL;
			call_end(c, SL_ESYS, d, NULL);
		} else if (x == OAI_X_CONNECT || (x == OAI_X_TIMEOUT && !sent)) {
			snprintf(d, sizeof d, "upstream connect failed: %s", cerr);
			c->fail_kind = SL_FAIL_CONNECT;
			call_end(c, SL_EUPSTREAM, d, NULL);
		} else if (c->mode == M_SSE && c->finished) {
			/* the answer was complete; only the tail (usage, [DONE]) is lost */
			sl_usage u = c->usage;
			if (!c->has_usage)
				u.completion_tokens = c->n_tokens;
			call_end(c, SL_OK, NULL, &u);
		} else if (c->got_body || x == OAI_X_PARTIAL) {
			c->fail_kind = SL_FAIL_BROKEN;
			call_end(c, SL_EUPSTREAM, "upstream closed the stream before it finished", NULL);
		} else {
			snprintf(d, sizeof d, "upstream transfer failed: %s", cerr);
			c->fail_kind = SL_FAIL_BROKEN;
			call_end(c, SL_EUPSTREAM, d, NULL);
		}
		return;
	}
	if (c->mode == M_JSON) {
		finish_json(c);
		return;
	}
	/* SSE: the body ended cleanly */
	sl_sse_finish(c->sse);
	if (!c->finished && !c->got_done) {
		c->fail_kind = SL_FAIL_BROKEN;
		call_end(c, SL_EUPSTREAM, "upstream closed the stream before it finished", NULL);
		return;
	}
	sl_usage u = c->usage;
	if (!c->has_usage)
		u.completion_tokens = c->n_tokens;
	call_end(c, SL_OK, NULL, &u);
}

/* curl finished the transfer of c with res: decide the outcome. */
static void call_complete(oai_call *c, CURLcode res)
{
	c->in_multi = 0;
	curl_multi_remove_handle(c->ss->multi, c->easy);
	if (!c->stop && c->mode == M_UNKNOWN) {
		long code = 0;
		curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &code);
		if (res == CURLE_OK || (code && (code < 200 || code > 299)))
			classify(c);
	}
	oai_xfer x = OAI_X_OK;
	if (res == CURLE_OPERATION_TIMEDOUT)
		x = OAI_X_TIMEOUT;
	else if (connect_error(res)) {
		long oserr = 0;
		curl_easy_getinfo(c->easy, CURLINFO_OS_ERRNO, &oserr);
		x = sl__oai_local_errno((int)oserr) ? OAI_X_LOCAL : OAI_X_CONNECT;
	}
	else if (res == CURLE_PARTIAL_FILE)
		x = OAI_X_PARTIAL;
	else if (res != CURLE_OK)
		x = OAI_X_OTHER;
	long sent = 0; /* request bytes sent: 0 = never connected */
	if (x == OAI_X_TIMEOUT)
		curl_easy_getinfo(c->easy, CURLINFO_REQUEST_SIZE, &sent);
	sl__oai_finish(c, x, sent != 0, c->u.err[0] ? c->u.err : curl_easy_strerror(res));
}

/* Drains curl's finished transfers. */
static void check_done(oai_shard *ss)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(ss->multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		CURLcode res = m->data.result;
		oai_call *c = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
		if (c)
			call_complete(c, res);
	}
}

/* ------------------------------------------------------------ loop glue */

void sl__oai_reap(oai_shard *ss)
{
	if (ss->busy || !ss->n_cancelled)
		return;
	oai_call *c = ss->calls;
	while (c && ss->n_cancelled) {
		oai_call *next = c->next;
		if (c->cancelled)
			call_free(c);
		c = next;
	}
}

/* After curl_multi_socket_action: finished transfers, then calls whose
 * cancel() came while curl (or the token path) was running. */
static void after_action(oai_shard *ss)
{
	check_done(ss);
	sl__oai_reap(ss);
}

static void on_sock_event(evutil_socket_t fd, short what, void *arg)
{
	oai_sock *k = arg;
	oai_shard *ss = k->ss; /* k may be freed inside socket_action */
	int flags = 0, running;
	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	ss->busy++;
	curl_multi_socket_action(ss->multi, fd, flags, &running);
	ss->busy--;
	after_action(ss);
}

static void on_curl_timer(evutil_socket_t fd, short what, void *arg)
{
	oai_shard *ss = arg;
	int running;
	ss->busy++;
	curl_multi_socket_action(ss->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	ss->busy--;
	after_action(ss);
}

static void sock_free(oai_shard *ss, oai_sock *k)
{
	if (k->ev_init)
		event_del(&k->ev);
	if (k->prev)
		k->prev->next = k->next;
	else
		ss->socks = k->next;
	if (k->next)
		k->next->prev = k->prev;
	free(k);
}

/* CURLMOPT_SOCKETFUNCTION: watch s as curl asks. */
static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
	oai_shard *ss = userp;
	oai_sock *k = socketp;
	if (what == CURL_POLL_REMOVE) {
		if (k) {
			curl_multi_assign(ss->multi, s, NULL);
			sock_free(ss, k);
		}
		return 0;
	}
	if (!k) {
		k = calloc(1, sizeof *k);
		if (!k)
			return -1;
		k->ss = ss;
		k->fd = s;
		k->next = ss->socks;
		if (k->next)
			k->next->prev = k;
		ss->socks = k;
		curl_multi_assign(ss->multi, s, k);
	} else if (k->ev_init) {
		event_del(&k->ev);
	}
	short ev = EV_PERSIST;
	if (what & CURL_POLL_IN)
		ev |= EV_READ;
	if (what & CURL_POLL_OUT)
		ev |= EV_WRITE;
	event_assign(&k->ev, ss->base, s, ev, on_sock_event, k);
	k->ev_init = 1;
	event_add(&k->ev, NULL);
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: curl wants socket_action(TIMEOUT) in ms. */
static int on_timer_set(CURLM *m, long ms, void *userp)
{
	oai_shard *ss = userp;
	if (ms < 0) {
		evtimer_del(&ss->timer);
	} else {
		struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
		evtimer_add(&ss->timer, &tv);
	}
	return 0;
}

/* ------------------------------------------------------------ requests */

static int build_body(const oai_state *st, sl_infer *call, sl_dynbuf *b)
{
	const sl_infer_params *pa = sl_infer_params_of(call);
	int rc = sl_dynbuf_addstr(b, "{\"model\":");
	if (rc == SL_OK)
		rc = sl_dynbuf_addstr(b, st->model_json);
	if (rc == SL_OK)
		rc = sl_dynbuf_addstr(b, ",\"messages\":");
	/* the client's messages, unless a stage rewrote the prompt (templates,
	 * retrieval, redaction): then the prompt is the one user message */
	const char *mj = sl_infer_messages(call);
	if (!mj && !sl_infer_prompt_replaced(call))
		mj = sl_infer_meta(call, "messages_json");
	if (rc == SL_OK && mj) {
		const char *p = mj;
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		if (*p != '[')
			return SL_EINVAL;
		rc = sl_dynbuf_addstr(b, mj);
	} else if (rc == SL_OK) {
		size_t plen;
		const char *prompt = sl_infer_prompt(call, &plen);
		rc = sl_dynbuf_addstr(b, "[{\"role\":\"user\",\"content\":");
		if (rc == SL_OK)
			rc = json_str(b, prompt, plen);
		if (rc == SL_OK)
			rc = sl_dynbuf_addstr(b, "}]");
	}
	if (rc == SL_OK)
		rc = sl_dynbuf_addstr(b, st->stream ? ",\"stream\":true,\"stream_options\":"
		                                      "{\"include_usage\":true}"
		                                    : ",\"stream\":false");
	if (rc == SL_OK && pa->max_tokens > 0)
		rc = sl_dynbuf_printf(b, ",\"max_tokens\":%d", pa->max_tokens);
	if (rc == SL_OK && pa->temperature >= 0 && isfinite(pa->temperature))
		rc = json_num(b, "temperature", pa->temperature);
	if (rc == SL_OK && pa->top_p >= 0 && isfinite(pa->top_p))
		rc = json_num(b, "top_p", pa->top_p);
	if (rc == SL_OK && pa->has_seed)
		rc = sl_dynbuf_printf(b, ",\"seed\":%lld", (long long)pa->seed);
	if (rc == SL_OK && pa->stop && pa->stop[0]) {
		rc = sl_dynbuf_addstr(b, ",\"stop\":[");
		for (size_t i = 0; rc == SL_OK && pa->stop[i]; i++) {
			if (i)
				rc = sl_dynbuf_add(b, ",", 1);
			if (rc == SL_OK)
				rc = json_str(b, pa->stop[i], strlen(pa->stop[i]));
		}
		if (rc == SL_OK)
			rc = sl_dynbuf_add(b, "]", 1);
	}
	if (rc == SL_OK)
		rc = sl_dynbuf_add(b, "}", 1);
	return rc;
}

/* Per-call headers: X-Request-Id and traceparent, as list nodes owned by
 * the call and chained in front of the shared static list. */
static int build_headers(oai_call *c)
{
	const char *rid = sl_infer_request_id(c->call);
	const char *tp = sl_infer_meta(c->call, "traceparent");
	size_t rl = rid ? strlen(rid) : 0, tl = tp ? strlen(tp) : 0;
	if (rl && (rl > SL_OPENAI_MAX_STRING || !header_safe(rid, rl)))
		rl = 0;
	if (tl && (tl > SL_OPENAI_MAX_STRING || !header_safe(tp, tl)))
		tl = 0;
	struct curl_slist *head = c->ss->st->hdrs;
	if (!rl && !tl)
		return SL_OK;
	c->hbuf = malloc(rl + tl + 32);
	if (!c->hbuf)
		return SL_ENOMEM;
	char *w = c->hbuf;
	if (tl) {
		c->h_tp.data = w;
		w += sprintf(w, "traceparent: %.*s", (int)tl, tp) + 1;
		c->h_tp.next = head;
		head = &c->h_tp;
	}
	if (rl) {
		c->h_rid.data = w;
		sprintf(w, "X-Request-Id: %.*s", (int)rl, rid);
		c->h_rid.next = head;
		head = &c->h_rid;
	}
	return SL_OK;
}

static struct curl_slist *call_headers(oai_call *c)
{
	if (c->h_rid.data)
		return &c->h_rid;
	if (c->h_tp.data)
		return &c->h_tp;
	return c->ss->st->hdrs;
}

/* The transfer's total limit: min(total_timeout, time left to the
 * deadline), rounded up so the transport never gives up before the
 * deadline (outcome_for() then sees it passed and reports expired). */
static void set_limit(oai_call *c, const oai_state *st)
{
	uint64_t deadline = sl_infer_deadline(c->call);
	uint32_t limit = st->total_ms;
	if (deadline) {
		uint64_t left_ms = deadline > c->t_start
		                       ? (deadline - c->t_start + 999999u) / 1000000u : 1;
		if (!left_ms)
			left_ms = 1;
		if (!limit || left_ms < limit) {
			limit = left_ms > MAX_TIMEOUT_MS ? MAX_TIMEOUT_MS : (uint32_t)left_ms;
			c->limit_is_deadline = 1;
		}
	}
	c->limit_ms = limit;
}

static void link_call(oai_shard *ss, oai_call *c)
{
	c->next = ss->calls;
	if (c->next)
		c->next->prev = c;
	ss->calls = c;
	*sl_infer_worker_data(c->call) = c;
}

static int oai_infer(void *ssv, sl_infer *call)
{
	oai_shard *ss = ssv;
	const oai_state *st = ss->st;
	if (ss->closed)
		return SL_ECLOSED;
	oai_call *c = calloc(1, sizeof *c);
	if (!c)
		return SL_ENOMEM;
	c->ss = ss;
	c->call = call;
	c->native = st->native;
	c->t_start = sl_now_ns();
	sl_dynbuf_init(&c->body, MAX_BODY_OUT);
	sl_dynbuf_init(&c->raw, SL_OPENAI_MAX_BODY_BYTES);
	int rc = build_body(st, call, &c->body);
	if (rc == SL_OK && !c->native)
		rc = build_headers(c);
	if (rc == SL_OK)
		rc = sl_sse_create(SL_OPENAI_MAX_EVENT_BYTES, on_event, c, &c->sse);
	if (rc != SL_OK)
		goto fail;
	sl_oai_chunk_init(&c->chunk, SL_OPENAI_MAX_EVENT_BYTES);
	c->chunk_init = 1;
	set_limit(c, st);

	if (c->native) {
		/* linked first: the transport may look the call up (never ends
		 * it before returning) */
		link_call(ss, c);
		rc = sl__oai_nt_infer(c);
		if (rc != SL_OK) {
			call_free(c); /* also unlinks and clears worker data */
			return rc;
		}
		return SL_OK;
	}

	if (ss->n_spare)
		c->easy = ss->spare[--ss->n_spare];
	else
		c->easy = curl_easy_init();
	if (!c->easy) {
		rc = SL_ENOMEM;
		goto fail;
	}
	CURL *e = c->easy;
	curl_easy_setopt(e, CURLOPT_URL, st->endpoint);
	curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)c);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, sl_dynbuf_str(&c->body));
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body.len);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, call_headers(c));
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->u.err);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)st->connect_ms);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	/* Streamed events are a few hundred bytes: a 4 KiB receive buffer
	 * instead of curl's 16 KiB keeps each open stream small (thousands of
	 * streams are held open at once); whole JSON bodies keep the default. */
	curl_easy_setopt(e, CURLOPT_BUFFERSIZE, st->stream ? 4096L : 16384L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "sluice/" SLUICE_VERSION);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	if (st->https)
		curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L); /* prefer h2 multiplexing */
	if (c->limit_ms)
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)c->limit_ms);

	if (st->first_ms != SL_OPENAI_TIMEOUT_NONE) {
		event_assign(&c->ft, ss->base, -1, 0, on_first_token_timeout, c);
		struct timeval tv = {.tv_sec = st->first_ms / 1000,
		                     .tv_usec = (st->first_ms % 1000) * 1000};
		event_add(&c->ft, &tv);
		c->ft_armed = 1;
	}
	/* link before adding: add_handle may run callbacks */
	link_call(ss, c);
	if (curl_multi_add_handle(ss->multi, e) != CURLM_OK) {
		call_free(c); /* also unlinks and clears worker data */
		return SL_ENOMEM;
	}
	c->in_multi = 1;
	return SL_OK;

fail:
	*sl_infer_worker_data(call) = c;
	call_free(c);
	return rc;
}

static void oai_cancel(void *ssv, sl_infer *call)
{
	oai_shard *ss = ssv;
	oai_call *c = *sl_infer_worker_data(call);
	if (!c)
		return;
	*sl_infer_worker_data(call) = NULL;
	if (ss->busy) {
		/* Called from inside curl's callbacks (a token filter ended the
		 * request): curl_multi_remove_handle is not allowed there.  Forget
		 * the sl_infer now, stop the transfer, free it when curl returns. */
		c->call = NULL;
		c->cancelled = 1;
		c->stop = 1;
		c->stop_silent = 1;
		ss->n_cancelled++;
		ft_disarm(c);
		if (c->native)
			sl__oai_nt_park(c); /* out of the wait lists: gets nothing more */
		return;
	}
	c->cancelled = 1; /* worker data already cleared */
	ss->n_cancelled++;
	call_free(c); /* remove_handle: the connection is closed now */
}

/* ------------------------------------------------------------ lifecycle */

static void state_free(oai_state *s)
{
	if (!s)
		return;
	curl_slist_free_all(s->hdrs);
	if (s->auth) {
		explicit_bzero(s->auth, strlen(s->auth));
		free(s->auth);
	}
	sl__oai_nt_state_free(s);
	free(s->endpoint);
	free(s->log_url);
	free(s->model_json);
	free(s);
}

/* Copies url without "user:pass@" for logs. */
static char *strip_userinfo(const char *url)
{
	const char *p = strstr(url, "://");
	if (!p)
		return strdup(url);
	p += 3;
	const char *at = NULL;
	for (const char *q = p; *q && *q != '/' && *q != '?' && *q != '#'; q++)
		if (*q == '@')
			at = q;
	if (!at)
		return strdup(url);
	size_t a = (size_t)(p - url);
	char *d = malloc(strlen(url) + 1);
	if (!d)
		return NULL;
	memcpy(d, url, a);
	strcpy(d + a, at + 1);
	return d;
}

/* 1 when a proxy variable that libcurl honours for http:// is set. */
static int proxy_configured(void)
{
	static const char *const vars[] = {"http_proxy", "all_proxy", "ALL_PROXY"};
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
		const char *v = getenv(vars[i]);
		if (v && v[0])
			return 1;
	}
	return 0;
}

static int oai_init(const void *cfg, void **state)
{
	const sl_openai_opts *o = cfg;
	if (!o || !o->url || !o->model || !o->model[0])
		return SL_EINVAL;
	size_t ul = strlen(o->url), ml = strlen(o->model);
	if (ul > SL_OPENAI_MAX_STRING || ml > SL_OPENAI_MAX_STRING ||
	    !header_safe(o->url, ul) || strchr(o->url, ' '))
		return SL_EINVAL;
	int https = strncasecmp(o->url, "https://", 8) == 0;
	if (!https && strncasecmp(o->url, "http://", 7) != 0)
		return SL_EINVAL;
	if (ul <= (https ? 8u : 7u))
		return SL_EINVAL;
	if ((o->connect_timeout_ms > MAX_TIMEOUT_MS) || o->total_timeout_ms > MAX_TIMEOUT_MS ||
	    (o->first_token_timeout_ms > MAX_TIMEOUT_MS &&
	     o->first_token_timeout_ms != SL_OPENAI_TIMEOUT_NONE))
		return SL_EINVAL;
	if (o->stream != 0 && o->stream != 1)
		return SL_EINVAL;
	if (o->transport != SL_OPENAI_TRANSPORT_AUTO && o->transport != SL_OPENAI_TRANSPORT_NATIVE &&
	    o->transport != SL_OPENAI_TRANSPORT_CURL)
		return SL_EINVAL;
	if (o->transport == SL_OPENAI_TRANSPORT_NATIVE && https)
		return SL_EINVAL; /* the native transport has no TLS */
	size_t nh = 0;
	if (o->headers) {
		for (; o->headers[nh]; nh++) {
			const char *h = o->headers[nh];
			size_t hl = strlen(h);
			const char *colon = strchr(h, ':');
			if (nh >= SL_OPENAI_MAX_HEADERS || hl > SL_OPENAI_MAX_STRING || !colon ||
			    colon == h || !header_safe(h, hl))
				return SL_EINVAL;
			for (const char *q = h; q < colon; q++)
				if (*q == ' ' || *q == '\t')
					return SL_EINVAL;
		}
	}
	const char *key = NULL;
	size_t kl = 0;
	if (o->api_key_env) {
		key = getenv(o->api_key_env);
		kl = key ? strlen(key) : 0;
		if (!kl || kl > SL_OPENAI_MAX_STRING || !header_safe(key, kl)) {
			SL_LOG(SL_LOG_ERROR,
			       "event=openai_init error=api_key_missing env=%s "
			       "msg=\"the API key variable is unset, empty or invalid\"",
			       o->api_key_env);
			return SL_EINVAL;
		}
	}
	pthread_once(&curl_once, curl_init_once);
	if (curl_init_rc != CURLE_OK)
		return SL_ESYS;

	oai_state *s = calloc(1, sizeof *s);
	if (!s)
		return SL_ENOMEM;
	s->https = https;
	s->stream = o->stream;
	s->connect_ms = o->connect_timeout_ms ? o->connect_timeout_ms
	                                      : SL_OPENAI_DEFAULT_CONNECT_TIMEOUT_MS;
	s->first_ms = o->first_token_timeout_ms ? o->first_token_timeout_ms
	                                        : SL_OPENAI_DEFAULT_FIRST_TOKEN_TIMEOUT_MS;
	s->total_ms = o->total_timeout_ms;
	s->maxconc = o->max_concurrency;
	int rc = SL_ENOMEM;
	size_t base = ul;
	while (base > 0 && o->url[base - 1] == '/')
		base--;
	static const char path[] = "/chat/completions";
	s->endpoint = malloc(base + sizeof path);
	if (!s->endpoint)
		goto fail;
	memcpy(s->endpoint, o->url, base);
	memcpy(s->endpoint + base, path, sizeof path);
	s->log_url = strip_userinfo(s->endpoint);
	sl_dynbuf mj;
	sl_dynbuf_init(&mj, SL_OPENAI_MAX_STRING * 6 + 2);
	if (!s->log_url || json_str(&mj, o->model, ml) != SL_OK) {
		sl_dynbuf_free(&mj);
		goto fail;
	}
	s->model_json = sl_dynbuf_take(&mj, NULL);
	if (!s->model_json)
		goto fail;
	if (key) {
		static const char pre[] = "Authorization: Bearer ";
		s->auth = malloc(sizeof pre + kl);
		if (!s->auth)
			goto fail;
		memcpy(s->auth, pre, sizeof pre - 1);
		memcpy(s->auth + sizeof pre - 1, key, kl + 1);
		s->key = s->auth + sizeof pre - 1;
		s->key_len = kl;
	}
	/* the static header list: built once, read by every shard */
	const char *fixed[] = {
		"Content-Type: application/json",
		s->stream ? "Accept: text/event-stream" : "Accept: application/json",
		"Expect:", /* no 100-continue round trip for large bodies */
	};
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
		struct curl_slist *n = curl_slist_append(s->hdrs, fixed[i]);
		if (!n)
			goto fail;
		s->hdrs = n;
	}
	for (size_t i = 0; i < nh; i++) {
		struct curl_slist *n = curl_slist_append(s->hdrs, o->headers[i]);
		if (!n)
			goto fail;
		s->hdrs = n;
	}
	if (s->auth) {
		struct curl_slist *n = curl_slist_append(s->hdrs, s->auth);
		if (!n)
			goto fail;
		s->hdrs = n;
	}
	/* auto: native for http://, unless a proxy variable asks curl to
	 * route the request (curl honours them, the native transport does
	 * not); a URL the native transport cannot use also stays on curl */
	if (!https && (o->transport == SL_OPENAI_TRANSPORT_NATIVE ||
	               (o->transport == SL_OPENAI_TRANSPORT_AUTO && !proxy_configured()))) {
		rc = sl__oai_nt_init(s, o->headers, nh);
		if (rc == SL_OK)
			s->native = 1;
		else if (rc != SL_EINVAL || o->transport == SL_OPENAI_TRANSPORT_NATIVE)
			goto fail;
		rc = SL_ENOMEM;
	}
	SL_LOG(SL_LOG_DEBUG,
	       "event=openai_init url=%s stream=%d connect_ms=%u first_token_ms=%u "
	       "total_ms=%u max_concurrency=%u auth=%s extra_headers=%zu transport=%s",
	       s->log_url, s->stream, s->connect_ms, s->first_ms, s->total_ms, s->maxconc,
	       s->auth ? "bearer" : "none", nh, s->native ? "native" : "curl");
	*state = s;
	return SL_OK;
fail:
	state_free(s);
	return rc;
}

static int oai_start(void *state, struct event_base *base, unsigned shard, void **out)
{
	oai_state *st = state;
	oai_shard *ss = calloc(1, sizeof *ss);
	if (!ss)
		return SL_ENOMEM;
	ss->st = st;
	ss->base = base;
	ss->idx = shard;
	if (st->native) {
		int rc = sl__oai_nt_start(ss);
		if (rc != SL_OK) {
			free(ss);
			return rc;
		}
		*out = ss;
		return SL_OK;
	}
	ss->multi = curl_multi_init();
	if (!ss->multi) {
		free(ss);
		return SL_ENOMEM;
	}
	evtimer_assign(&ss->timer, base, on_curl_timer, ss);
	ss->timer_init = 1;
	curl_multi_setopt(ss->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(ss->multi, CURLMOPT_SOCKETDATA, ss);
	curl_multi_setopt(ss->multi, CURLMOPT_TIMERFUNCTION, on_timer_set);
	curl_multi_setopt(ss->multi, CURLMOPT_TIMERDATA, ss);
	/* An explicit pool size: curl's default (4 x handles added) shrinks as
	 * calls end and would close idle keep-alive connections. */
	curl_multi_setopt(ss->multi, CURLMOPT_MAXCONNECTS,
	                  (long)(st->maxconc ? st->maxconc : SL_OPENAI_DEFAULT_POOL));
	if (st->maxconc)
		curl_multi_setopt(ss->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)st->maxconc);
	*out = ss;
	return SL_OK;
}

/* Ends every running call with SL_ECANCELED (the pipeline drains before
 * close, so normally there is none), and refuses new ones. */
static void oai_close(void *ssv)
{
	oai_shard *ss = ssv;
	ss->closed = 1;
	while (ss->calls) {
		if (ss->calls->cancelled)
			call_free(ss->calls);
		else
			call_end(ss->calls, SL_ECANCELED, "openai worker closing", NULL);
	}
	if (ss->st->native)
		sl__oai_nt_close(ss); /* the idle pool */
}

static void oai_stop(void *ssv)
{
	oai_shard *ss = ssv;
	ss->closed = 1;
	while (ss->calls)
		call_free(ss->calls); /* only if close() was skipped */
	if (ss->st->native)
		sl__oai_nt_stop(ss);
	if (ss->multi)
		curl_multi_cleanup(ss->multi);
	while (ss->socks)
		sock_free(ss, ss->socks);
	for (unsigned i = 0; i < ss->n_spare; i++)
		curl_easy_cleanup(ss->spare[i]);
	if (ss->timer_init)
		evtimer_del(&ss->timer);
	free(ss);
}

static void oai_fini(void *state)
{
	state_free(state);
}

static unsigned oai_max_concurrency(void *state)
{
	return ((oai_state *)state)->maxconc;
}

static const sl_worker_ops openai_ops = {
	.name = "openai",
	.init = oai_init,
	.start = oai_start,
	.infer = oai_infer,
	.cancel = oai_cancel,
	.close = oai_close,
	.stop = oai_stop,
	.fini = oai_fini,
	.max_concurrency = oai_max_concurrency,
};

void sl_openai_opts_init(sl_openai_opts *opts)
{
	memset(opts, 0, sizeof *opts);
	opts->stream = 1;
}

int sl_worker_openai_create(const sl_openai_opts *opts, sl_worker **out)
{
	if (!opts || !out)
		return SL_EINVAL;
	return sl_worker_create(&openai_ops, opts, out);
}
