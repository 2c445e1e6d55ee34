/*
 * mock_upstream.c - `sluice mock-upstream`, an OpenAI-compatible mock model
 * server (contracts in mock_upstream.h, user doc in docs/mock-upstream.md).
 *
 * Structure
 * ---------
 * N workers, each one thread with its own event_base (EVENT_BASE_FLAG_NOLOCK:
 * nothing crosses threads) and its own SO_REUSEPORT listener; the kernel
 * spreads connections over them.  A connection (struct conn) belongs to the
 * worker that accepted it for its whole life.  HTTP/1.1 is framed by hand
 * (mock_http.c; see mock_http_int.h for why not evhttp) on raw read/write
 * events, so the hot path of a keep-alive JSON request is: one recv() into
 * the worker's scratch buffer, parse, jansson parse of the body, the answer
 * built with mb_* appends (no jansson serialisation), one send().
 *
 * A connection is in one state at a time:
 *   C_IDLE     parsing requests; pipelined requests are answered in order
 *   C_DELAYED  a non-streaming answer (or a drop) waits on the timer
 *   C_STREAM   an SSE answer is being produced, token by token, on the timer
 *   C_TRICKLE  a prepared answer goes out one byte per MOCK_TRICKLE_US
 *   C_HANG     the request will never be answered
 *   C_LINGER   our side is shut down; input is discarded until the client
 *              closes or MOCK_LINGER_US passes
 * Input that arrives while busy is kept (up to MOCK_MAX_INPUT, then reading
 * pauses) and parsed when the answer completes.  EOF or a socket error ends
 * the connection at once in every state: timers are cancelled and all memory
 * is freed (this is how a "hang" request is cleaned up).
 *
 * Runtime control: POST /mock/config changes sl_mock_upstream.cfg under
 * cfg_mu and bumps cfg_gen; each completion request first compares cfg_gen
 * with its worker's copy (cfg_sync), so the hot path gains one shared load
 * that only misses the cache right after a change.  GET /mock/stats sums
 * per-worker counters that only their own thread writes (struct wstats).
 * A connection is "in flight" from the moment a completion request is read
 * until response_done (completed) or conn_free (cancelled by the client).
 *
 * Memory safety rule: handlers never free a connection; they set c->dead and
 * the libevent callback that entered (on_read, on_write, on_timer) frees it
 * as its last action.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem, pthread_setname_np, CPU_COUNT */
#endif
#include "mock/mock_upstream.h"
#include "mock/mock_http_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <jansson.h>

/* ----------------------------------------------------------------- limits */

#define MOCK_DEFAULT_HOST "127.0.0.1"
#define MOCK_DEFAULT_PORT 8081
#define MOCK_DEFAULT_TOKENS 16u
#define MOCK_DEFAULT_MODEL "mock-model"
#define MOCK_MAX_THREADS 1024
#define MOCK_MAX_TOKENS 1000000u
#define MOCK_MAX_DELAY_MS 3600000.0
#define MOCK_MAX_MODEL 256           /* --model length */
#define MOCK_MAX_HEAD (64u << 10)    /* request line + headers; over: 431 */
#define MOCK_MAX_BODY (1u << 20)     /* decoded request body; over: 413 */
/* Raw input kept per connection: a whole request (head, encoded body) must
 * fit; pipelined input past this while an answer is pending pauses reading. */
#define MOCK_MAX_INPUT (MOCK_MAX_HEAD + 2u * MOCK_MAX_BODY)
/* Queued output per connection, and the largest answer built at once (a
 * JSON answer, or a whole "trickle" answer); over: connection closed.  SSE
 * answers are produced under flow control (see stream_pump), so a stream of
 * any length fits. */
#define MOCK_MAX_OUTPUT (64u << 20)
#define MOCK_READ_CHUNK (64u << 10)  /* one recv() */
#define MOCK_STREAM_BATCH (64u << 10) /* SSE bytes built before writing */
#define MOCK_KEEP_SCRATCH (1u << 20) /* worker builders above this are freed */
#define MOCK_KEEP_BUF (16u << 10)    /* idle buffers above this are freed */
#define MOCK_TRICKLE_US 10000u       /* "trickle": one byte every 10 ms */
#define MOCK_LINGER_US 2000000u      /* lingering close, then close() */
#define MOCK_BACKLOG 4096
#define MOCK_MAX_FAIL_AFTER 1000000000u /* --fail-after, "fail_after" */
#define MOCK_CACHE_LINE 64

/* ----------------------------------------------------------------- faults */

enum fault { F_NONE, F_HTTP500, F_HTTP429, F_HANG, F_DROP, F_MALFORMED, F_TRICKLE, F__COUNT };

static const char *const fault_names[F__COUNT] = {
	"none", "http500", "http429", "hang", "drop-mid-stream", "malformed", "trickle",
};
#define FAULT_LIST "none, http500, http429, hang, drop-mid-stream, malformed, trickle"

static int fault_from(const char *s, size_t n)
{
	for (int i = 0; i < F__COUNT; i++)
		if (strlen(fault_names[i]) == n && memcmp(fault_names[i], s, n) == 0)
			return i;
	return -1;
}

/* ----------------------------------------------------------------- types */

/* The settings that POST /mock/config can change at run time. */
struct mock_cfg {
	unsigned tokens;
	uint64_t first_us, inter_us;
	int fault;            /* enum fault */
	uint32_t fault_ppm;   /* fraction of requests affected, parts per million */
	uint64_t fail_after;  /* the first fail_after requests get no fault; 0: off */
	uint64_t fault_epoch; /* bumped when fault, fault_rate or fail_after is set:
	                         each worker then restarts its error diffusion */
};

/* Validated options; read-only once the workers run.  cfg is the initial
 * runtime configuration. */
struct mock_opts {
	struct sockaddr_storage addr; /* bind address, port filled at start */
	socklen_t addrlen;
	char host[INET6_ADDRSTRLEN + 2]; /* numeric, IPv6 in brackets */
	int port;
	int threads;
	struct mock_cfg cfg;
	char model[MOCK_MAX_MODEL + 1];
};

/* Per-worker counters behind GET /mock/stats.  Written only by the worker's
 * own thread (bump(): a plain load and store, no locked instruction), read by
 * any thread; the reader sums the workers. */
struct wstats {
	_Atomic uint64_t requests, streams, faults, completed, cancelled;
};

struct conn;

/* One event-loop thread.  Every field is owned by the worker's thread while
 * it runs, and by the starter/stopper before and after. */
struct worker {
	/* First, on its own cache line: read by other threads (GET /mock/stats). */
	_Alignas(MOCK_CACHE_LINE) struct wstats stats;
	sl_mock_upstream *m;
	const struct mock_opts *o;
	struct mock_cfg cfg;    /* this thread's copy of m->cfg ... */
	uint64_t cfg_gen;       /* ... as of m->cfg_gen == cfg_gen */
	unsigned idx;
	pthread_t tid;
	bool running;
	struct event_base *base;
	struct evconnlistener *lst;
	struct event *stop_ev;  /* readable stop eventfd: leave the loop */
	struct event *retry_ev; /* re-enables accepting after EMFILE & co */
	time_t accept_warned;
	struct conn *conns;     /* every open connection, for shutdown */
	uint64_t seq;           /* response id counter */
	uint32_t fault_acc;     /* --fault-rate accumulator, ppm */
	char *rbuf;             /* [MOCK_READ_CHUNK] recv scratch */
	mb out, body, ev, dechunk; /* scratch builders, reset before each use */
};

/* Allocated with 64-byte alignment (mock_alloc): the shared atomics below
 * sit on cache lines of their own. */
struct sl_mock_upstream {
	struct mock_opts o;
	int stop_fd; /* eventfd written once by stop() */
	int nworkers;
	struct worker *w;
	/* Runtime configuration (POST /mock/config).  cfg changes only under
	 * cfg_mu, and every change then bumps cfg_gen (release).  A worker checks
	 * cfg_gen once per completion request (one load of a line that is almost
	 * never written) and copies cfg under cfg_mu only when it moved. */
	pthread_mutex_t cfg_mu;
	struct mock_cfg cfg;
	_Alignas(MOCK_CACHE_LINE) _Atomic uint64_t cfg_gen;
	/* Requests counted toward cfg.fail_after since it was last set; only
	 * incremented while below it, so it is read-only once the threshold is
	 * passed. */
	_Alignas(MOCK_CACHE_LINE) _Atomic uint64_t fail_count;
};

enum cstate { C_IDLE, C_DELAYED, C_STREAM, C_TRICKLE, C_HANG, C_LINGER };

/* SSE answer in progress (C_STREAM). */
struct stream {
	uint64_t t0_us, first_us, inter_us; /* token k due at t0+first+k*inter */
	unsigned n;         /* tokens to send */
	unsigned sent;      /* tokens sent */
	unsigned cut;       /* drop/malformed strike where token `cut` would go */
	unsigned prompt_tokens;
	int fault;
	bool chat, include_usage, length;
	bool blocked;       /* waiting for queued output to drain */
	char *prefix;       /* "data: {...\"choices\":[", owned */
	size_t prefix_len;
};

/* One client connection; owned by its worker's thread. */
struct conn {
	struct worker *w;
	struct conn *prev, *next;
	evutil_socket_t fd;
	int state;           /* enum cstate */
	int minor;           /* HTTP/1.<minor> of the current request */
	bool dead;           /* free at the end of the current callback */
	bool closing;        /* lingering close once the output drains */
	bool ka;             /* the current request keeps the connection */
	bool chunked;        /* the current SSE answer uses chunked framing */
	bool continue_sent;  /* "100 Continue" sent for the current request */
	bool rpaused;        /* rev removed: input full while busy */
	bool wpending;       /* wev added: output queued */
	bool inflight;       /* a completion request is being answered (stats) */
	struct event *rev, *wev, *tev; /* wev, tev made on first use */
	char *ib;            /* unparsed input [0, ilen) */
	size_t ilen, icap;
	char *ob;            /* queued output [ooff, olen) */
	size_t ooff, olen, ocap;
	char *pend;          /* C_DELAYED / C_TRICKLE: prepared answer */
	size_t plen, poff;
	struct stream st;
};

static void on_read(evutil_socket_t fd, short what, void *arg);
static void on_write(evutil_socket_t fd, short what, void *arg);
static void on_timer(evutil_socket_t fd, short what, void *arg);
static void conn_input(struct conn *c, const char *data, size_t len, bool owned);

/* ----------------------------------------------------------------- helpers */

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Adds 1 to a counter that only the calling thread writes: a plain load and
 * a release store (no locked instruction); release so that a reader that
 * sees a "completed" or "cancelled" value also sees the "requests" increment
 * that preceded it (see stats_snapshot). */
static inline void bump(_Atomic uint64_t *x)
{
	atomic_store_explicit(x, atomic_load_explicit(x, memory_order_relaxed) + 1,
	                      memory_order_release);
}

/* calloc with MOCK_CACHE_LINE alignment (for the types with _Alignas). */
static void *mock_alloc(size_t n)
{
	size_t sz = (n + MOCK_CACHE_LINE - 1) / MOCK_CACHE_LINE * MOCK_CACHE_LINE;
	void *p = aligned_alloc(MOCK_CACHE_LINE, sz ? sz : MOCK_CACHE_LINE);
	if (p)
		memset(p, 0, sz);
	return p;
}

/* Strict decimal integer in [0, max]; s[0..n) need not be NUL-terminated. */
static bool parse_uint(const char *s, size_t n, unsigned max, unsigned *out)
{
	if (n == 0 || n > 10)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > max)
		return false;
	*out = (unsigned)v;
	return true;
}

/* Plain decimal "D" or "D.DDD" (no sign, exponent, inf or nan) in [0, max];
 * s[0..n) need not be NUL-terminated. */
static bool parse_decimal(const char *s, size_t n, double max, double *out)
{
	char tmp[32];
	if (n == 0 || n >= sizeof(tmp))
		return false;
	int dots = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.')
			dots++;
		else if (s[i] < '0' || s[i] > '9')
			return false;
	}
	if (dots > 1 || s[0] == '.' || s[n - 1] == '.')
		return false;
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	double v = strtod(tmp, NULL);
	if (!(v >= 0 && v <= max))
		return false;
	*out = v;
	return true;
}

/* Milliseconds in [0, MOCK_MAX_DELAY_MS] -> microseconds. */
static bool parse_ms(const char *s, size_t n, uint64_t *out_us)
{
	double v;
	if (!parse_decimal(s, n, MOCK_MAX_DELAY_MS, &v))
		return false;
	*out_us = (uint64_t)(v * 1000.0 + 0.5);
	return true;
}

static struct timeval tv_us(uint64_t us)
{
	struct timeval tv = {(time_t)(us / 1000000u), (suseconds_t)(us % 1000000u)};
	return tv;
}

/* Arms the connection's timer `us` from now; marks the connection dead when
 * the event cannot be made. */
static void arm_timer(struct conn *c, uint64_t us)
{
	if (!c->tev && !(c->tev = evtimer_new(c->w->base, on_timer, c))) {
		c->dead = true;
		return;
	}
	struct timeval tv = tv_us(us);
	if (evtimer_add(c->tev, &tv) != 0)
		c->dead = true;
}

/* Number of whitespace-separated words in s[0..n). */
static unsigned count_words(const char *s, size_t n)
{
	unsigned w = 0;
	bool in = false;
	for (size_t i = 0; i < n; i++) {
		bool sp = s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r';
		if (!sp && !in)
			w++;
		in = !sp;
	}
	return w;
}

/* Words of a message content or prompt: a string, or an array of strings or
 * of parts {"text": "..."}; anything else counts 0. */
static unsigned json_words(const json_t *v)
{
	if (json_is_string(v))
		return count_words(json_string_value(v), json_string_length(v));
	unsigned sum = 0;
	if (json_is_array(v)) {
		size_t i;
		const json_t *e;
		json_array_foreach(v, i, e)
		{
			const json_t *t = json_is_object(e) ? json_object_get(e, "text") : e;
			if (json_is_string(t))
				sum += count_words(json_string_value(t), json_string_length(t));
		}
	}
	return sum;
}

/* ---------------------------------------------------------------- output */

/* Sends n bytes after whatever is already queued.  What the socket does not
 * take now is queued and flushed on EV_WRITE.  Errors mark c dead. */
static void conn_write(struct conn *c, const char *p, size_t n)
{
	if (c->dead || n == 0)
		return;
	if (c->ooff == c->olen) {
		ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);
		if (k == (ssize_t)n)
			return;
		if (k < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
				c->dead = true;
				return;
			}
			k = 0;
		}
		p += k;
		n -= (size_t)k;
		c->ooff = c->olen = 0;
	}
	size_t queued = c->olen - c->ooff;
	if (queued + n > MOCK_MAX_OUTPUT) {
		c->dead = true;
		return;
	}
	if (c->ocap - c->olen < n) {
		if (c->ooff) {
			memmove(c->ob, c->ob + c->ooff, queued);
			c->ooff = 0;
			c->olen = queued;
		}
		if (c->ocap - c->olen < n) {
			size_t cap = c->ocap ? c->ocap : 4096;
			while (cap < c->olen + n)
				cap *= 2;
			char *ob = realloc(c->ob, cap);
			if (!ob) {
				c->dead = true;
				return;
			}
			c->ob = ob;
			c->ocap = cap;
		}
	}
	memcpy(c->ob + c->olen, p, n);
	c->olen += n;
	if (!c->wpending) {
		if (!c->wev && !(c->wev = event_new(c->w->base, c->fd, EV_WRITE | EV_PERSIST, on_write, c))) {
			c->dead = true;
			return;
		}
		if (event_add(c->wev, NULL) != 0) {
			c->dead = true;
			return;
		}
		c->wpending = true;
	}
}

/* Sends a builder's content, or kills the connection if building failed. */
static void conn_write_mb(struct conn *c, const mb *b)
{
	if (b->oom)
		c->dead = true;
	else
		conn_write(c, b->p, b->len);
}

/* Enters C_LINGER once the output has drained, when closing was asked:
 * shuts our side (the client sees FIN after every byte sent) and discards
 * input until the client closes or MOCK_LINGER_US passes. */
static void maybe_linger(struct conn *c)
{
	if (!c->closing || c->dead || c->state == C_LINGER || c->ooff != c->olen)
		return;
	shutdown(c->fd, SHUT_WR);
	c->state = C_LINGER;
	free(c->ib);
	c->ib = NULL;
	c->ilen = c->icap = 0;
	if (c->rpaused) {
		if (event_add(c->rev, NULL) != 0)
			c->dead = true;
		c->rpaused = false;
	}
	arm_timer(c, MOCK_LINGER_US);
}

/* Ends the current answer.  async: called from a timer, so input that queued
 * up meanwhile is parsed now. */
static void response_done(struct conn *c, bool async)
{
	c->state = C_IDLE;
	if (c->inflight) {
		c->inflight = false;
		bump(&c->w->stats.completed);
	}
	if (!c->ka) {
		c->closing = true;
		maybe_linger(c);
		return;
	}
	if (!async || c->dead)
		return;
	if (c->rpaused) {
		if (event_add(c->rev, NULL) != 0) {
			c->dead = true;
			return;
		}
		c->rpaused = false;
	}
	if (c->ilen)
		conn_input(c, c->ib, c->ilen, true);
}

/* ------------------------------------------------------- response building */

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 413: return "Payload Too Large";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	default: return "Unknown";
	}
}

/* Appends a status line and headers.  clen >= 0: Content-Length; clen < 0:
 * a streamed body, chunked when c->chunked, else delimited by close. */
static void put_head(const struct conn *c, mb *b, int status, const char *ctype, int64_t clen,
                     const char *extra)
{
	mb_lit(b, "HTTP/1.1 ");
	mb_u64(b, (uint64_t)status);
	mb_lit(b, " ");
	mb_str(b, reason(status));
	mb_lit(b, "\r\nServer: sluice-mock\r\nContent-Type: ");
	mb_str(b, ctype);
	if (clen >= 0) {
		mb_lit(b, "\r\nContent-Length: ");
		mb_u64(b, (uint64_t)clen);
	} else {
		mb_lit(b, "\r\nCache-Control: no-cache");
		if (c->chunked)
			mb_lit(b, "\r\nTransfer-Encoding: chunked");
	}
	if (!c->ka)
		mb_lit(b, "\r\nConnection: close");
	else if (c->minor == 0)
		mb_lit(b, "\r\nConnection: keep-alive");
	mb_lit(b, "\r\n");
	if (extra)
		mb_str(b, extra);
	mb_lit(b, "\r\n");
}

/* Sends a complete answer whose body is in w->body. */
static void send_body(struct conn *c, int status, const char *ctype, const char *extra)
{
	struct worker *w = c->w;
	mb_reset(&w->out);
	put_head(c, &w->out, status, ctype, (int64_t)w->body.len, extra);
	mb_add(&w->out, w->body.p, w->body.len);
	if (w->body.oom)
		w->out.oom = true;
	conn_write_mb(c, &w->out);
	response_done(c, false);
}

/* Sends an OpenAI-style error: {"error":{"message","type","param","code"}};
 * param NULL: "param":null. */
static void send_error_param(struct conn *c, int status, const char *type, const char *code,
                             const char *param, const char *msg, const char *extra)
{
	mb *b = &c->w->body;
	mb_reset(b);
	mb_lit(b, "{\"error\":{\"message\":\"");
	mb_json_str(b, msg, strlen(msg));
	mb_lit(b, "\",\"type\":\"");
	mb_str(b, type);
	if (param) {
		mb_lit(b, "\",\"param\":\"");
		mb_json_str(b, param, strlen(param));
		mb_lit(b, "\",\"code\":");
	} else {
		mb_lit(b, "\",\"param\":null,\"code\":");
	}
	if (code) {
		mb_lit(b, "\"");
		mb_str(b, code);
		mb_lit(b, "\"");
	} else {
		mb_lit(b, "null");
	}
	mb_lit(b, "}}");
	send_body(c, status, "application/json", extra);
}

static void send_error(struct conn *c, int status, const char *type, const char *code,
                       const char *msg, const char *extra)
{
	send_error_param(c, status, type, code, NULL, msg, extra);
}

static void send_invalid(struct conn *c, int status, const char *msg)
{
	send_error(c, status, "invalid_request_error", NULL, msg, NULL);
}

/* Token i of every answer: "w0", " w1", " w2", ... */
static void put_token(mb *b, unsigned i)
{
	if (i)
		mb_lit(b, " w");
	else
		mb_lit(b, "w");
	mb_u64(b, i);
}

/* The fields every answer object starts with, up to and including
 * "choices":[ . */
static void put_object_head(mb *b, const struct worker *w, bool chat, bool chunk, uint64_t seq,
                            const char *model, size_t mlen)
{
	mb_lit(b, "{\"id\":\"");
	if (chat)
		mb_lit(b, "chatcmpl-mock-");
	else
		mb_lit(b, "cmpl-mock-");
	mb_u64(b, w->idx);
	mb_lit(b, "-");
	mb_u64(b, seq);
	if (!chat)
		mb_lit(b, "\",\"object\":\"text_completion");
	else if (chunk)
		mb_lit(b, "\",\"object\":\"chat.completion.chunk");
	else
		mb_lit(b, "\",\"object\":\"chat.completion");
	mb_lit(b, "\",\"created\":");
	mb_u64(b, (uint64_t)time(NULL));
	mb_lit(b, ",\"model\":\"");
	mb_json_str(b, model, mlen);
	mb_lit(b, "\",\"system_fingerprint\":\"fp_mock\",\"choices\":[");
}

static void put_usage(mb *b, unsigned prompt, unsigned completion)
{
	mb_lit(b, "\"usage\":{\"prompt_tokens\":");
	mb_u64(b, prompt);
	mb_lit(b, ",\"completion_tokens\":");
	mb_u64(b, completion);
	mb_lit(b, ",\"total_tokens\":");
	mb_u64(b, (uint64_t)prompt + completion);
	mb_lit(b, "}");
}

/* ------------------------------------------------------------- streaming */

/* Frames w->ev as one SSE event into w->out: one HTTP chunk when chunked. */
static void ev_emit(struct conn *c)
{
	struct worker *w = c->w;
	if (c->chunked) {
		mb_hex(&w->out, w->ev.len);
		mb_lit(&w->out, "\r\n");
		mb_add(&w->out, w->ev.p, w->ev.len);
		mb_lit(&w->out, "\r\n");
	} else {
		mb_add(&w->out, w->ev.p, w->ev.len);
	}
	if (w->ev.oom)
		w->out.oom = true;
}

/* Ends a stream: "data: [DONE]" and, when chunked, the terminating chunk. */
static void ev_done(struct conn *c)
{
	struct worker *w = c->w;
	mb_reset(&w->ev);
	mb_lit(&w->ev, "data: [DONE]\n\n");
	ev_emit(c);
	if (c->chunked)
		mb_lit(&w->out, "0\r\n\r\n");
}

/* Appends one event "data: <prefix><choice>]<,usage:null>}\n\n"; choice is
 * the text between "choices":[ and ]. */
static void ev_choice(struct conn *c, const char *choice_head, unsigned tok, bool with_tok,
                      const char *choice_tail)
{
	struct stream *s = &c->st;
	mb *e = &c->w->ev;
	mb_reset(e);
	mb_add(e, s->prefix, s->prefix_len);
	mb_str(e, choice_head);
	if (with_tok)
		put_token(e, tok);
	mb_str(e, choice_tail);
	if (s->include_usage)
		mb_lit(e, "],\"usage\":null}\n\n");
	else
		mb_lit(e, "]}\n\n");
	ev_emit(c);
}

static void ev_role(struct conn *c)
{
	ev_choice(c, "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
	             "\"logprobs\":null,\"finish_reason\":null}", 0, false, "");
}

static void ev_token(struct conn *c, unsigned i)
{
	if (c->st.chat)
		ev_choice(c, "{\"index\":0,\"delta\":{\"content\":\"", i, true,
		          "\"},\"logprobs\":null,\"finish_reason\":null}");
	else
		ev_choice(c, "{\"index\":0,\"text\":\"", i, true,
		          "\",\"logprobs\":null,\"finish_reason\":null}");
}

/* The final chunk, the usage chunk when asked, [DONE] and the last chunk. */
static void ev_tail(struct conn *c)
{
	struct stream *s = &c->st;
	struct worker *w = c->w;
	const char *fr = s->length ? "length\"}" : "stop\"}";
	if (s->chat)
		ev_choice(c, "{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"", 0, false, fr);
	else
		ev_choice(c, "{\"index\":0,\"text\":\"\",\"logprobs\":null,\"finish_reason\":\"", 0, false, fr);
	if (s->include_usage) {
		mb_reset(&w->ev);
		mb_add(&w->ev, s->prefix, s->prefix_len);
		mb_lit(&w->ev, "],");
		put_usage(&w->ev, s->prompt_tokens, s->n);
		mb_lit(&w->ev, "}\n\n");
		ev_emit(c);
	}
	ev_done(c);
}

static void stream_release(struct conn *c)
{
	free(c->st.prefix);
	c->st.prefix = NULL;
}

/* Starts a prepared answer (w->out) going out one byte per MOCK_TRICKLE_US. */
static void trickle_start(struct conn *c)
{
	struct worker *w = c->w;
	if (w->out.oom || !(c->pend = malloc(w->out.len))) {
		c->dead = true;
		return;
	}
	memcpy(c->pend, w->out.p, w->out.len);
	c->plen = w->out.len;
	c->poff = 0;
	c->state = C_TRICKLE;
	arm_timer(c, 0);
}

static void trickle_tick(struct conn *c)
{
	conn_write(c, c->pend + c->poff, 1);
	if (++c->poff < c->plen) {
		arm_timer(c, MOCK_TRICKLE_US);
		return;
	}
	free(c->pend);
	c->pend = NULL;
	response_done(c, true);
}

/* Emits every step of the stream that is due, then re-arms the timer for the
 * next one, or finishes.  Flow control: when a batch of MOCK_STREAM_BATCH
 * bytes cannot be written at once, it stops until on_write has drained the
 * queue, so a fast stream to a slow reader holds at most one batch.  Steps: token k is due at t0+first+k*inter; the tail
 * goes right after the last token (at t0+first when there is none); a drop or
 * malformed fault strikes instead of token `cut`.  async: called by the timer
 * (w->out is empty); otherwise w->out already holds the head and role chunk. */
static void stream_pump(struct conn *c, bool async)
{
	struct stream *s = &c->st;
	struct worker *w = c->w;
	if (async)
		mb_reset(&w->out);
	uint64_t now = (s->first_us || s->inter_us) ? now_us() : 0;
	for (;;) {
		unsigned k = s->sent;
		unsigned step = k < s->n ? k : (s->n ? s->n - 1 : 0);
		uint64_t due = s->t0_us + s->first_us + (uint64_t)step * s->inter_us;
		if (due > now) {
			conn_write_mb(c, &w->out);
			arm_timer(c, due - now);
			return;
		}
		if (k == s->cut && s->fault == F_DROP) {
			/* No terminating chunk: the client sees the body cut short. */
			conn_write_mb(c, &w->out);
			stream_release(c);
			c->ka = false;
			response_done(c, async);
			return;
		}
		if (k == s->cut && s->fault == F_MALFORMED) {
			mb_reset(&w->ev);
			if (s->chat)
				mb_lit(&w->ev, "data: {\"choices\":[{\"delta\":{\"content\":\"x\"\n\n");
			else
				mb_lit(&w->ev, "data: {\"choices\":[{\"text\":\"x\"\n\n");
			ev_emit(c);
			ev_done(c);
			break;
		}
		if (k < s->n) {
			ev_token(c, k);
			s->sent++;
			if (w->out.len >= MOCK_STREAM_BATCH) {
				conn_write_mb(c, &w->out);
				mb_reset(&w->out);
				if (c->wpending || c->dead) {
					s->blocked = true; /* on_write resumes us */
					return;
				}
			}
			continue;
		}
		ev_tail(c);
		break;
	}
	conn_write_mb(c, &w->out);
	stream_release(c);
	response_done(c, async);
}

/* ------------------------------------------------------------- completions */

/* Per-request parameters after headers and body are read. */
struct params {
	bool chat, stream, include_usage, length;
	unsigned n, prompt_tokens;
	uint64_t first_us, inter_us;
	int fault;
	const char *model;
	size_t model_len;
};

/* Brings the worker's copy of the runtime configuration up to date; called
 * once per completion request.  The fast path is one acquire load. */
static void cfg_sync(struct worker *w)
{
	sl_mock_upstream *m = w->m;
	if (atomic_load_explicit(&m->cfg_gen, memory_order_acquire) == w->cfg_gen)
		return;
	uint64_t epoch = w->cfg.fault_epoch;
	pthread_mutex_lock(&m->cfg_mu);
	w->cfg = m->cfg;
	w->cfg_gen = atomic_load_explicit(&m->cfg_gen, memory_order_relaxed);
	pthread_mutex_unlock(&m->cfg_mu);
	if (w->cfg.fault_epoch != epoch)
		w->fault_acc = 0;
}

/* Decides the fault of a request without X-Mock-Fault.  The first
 * fail_after such requests (over all workers, since fail_after was set) get
 * none; then error diffusion on the rate, so exactly fault_ppm per million
 * requests of this worker are affected, evenly spaced (rate 0.5: every 2nd
 * request; 0.25: every 4th). */
static int pick_fault(struct worker *w)
{
	const struct mock_cfg *k = &w->cfg;
	if (k->fail_after) {
		_Atomic uint64_t *n = &w->m->fail_count;
		/* Read first: past the threshold the shared line is never written. */
		if (atomic_load_explicit(n, memory_order_relaxed) < k->fail_after &&
		    atomic_fetch_add_explicit(n, 1, memory_order_relaxed) < k->fail_after)
			return F_NONE;
	}
	if (k->fault == F_NONE || k->fault_ppm == 0)
		return F_NONE;
	w->fault_acc += k->fault_ppm;
	if (w->fault_acc < 1000000u)
		return F_NONE;
	w->fault_acc -= 1000000u;
	return k->fault;
}

static void start_stream(struct conn *c, const struct params *p, uint64_t seq)
{
	struct worker *w = c->w;
	struct stream *s = &c->st;
	memset(s, 0, sizeof(*s));
	s->chat = p->chat;
	s->include_usage = p->include_usage;
	s->length = p->length;
	s->n = p->n;
	s->cut = p->n / 2;
	s->prompt_tokens = p->prompt_tokens;
	s->fault = p->fault;
	s->first_us = p->first_us;
	s->inter_us = p->inter_us;

	mb *e = &w->ev;
	mb_reset(e);
	mb_lit(e, "data: ");
	put_object_head(e, w, p->chat, true, seq, p->model, p->model_len);
	if (e->oom || !(s->prefix = malloc(e->len))) {
		c->dead = true;
		return;
	}
	memcpy(s->prefix, e->p, e->len);
	s->prefix_len = e->len;

	c->chunked = c->minor == 1;
	if (!c->chunked)
		c->ka = false; /* HTTP/1.0: the body ends with the connection */
	mb_reset(&w->out);
	put_head(c, &w->out, 200, "text/event-stream", -1, NULL);
	if (p->chat)
		ev_role(c);

	if (p->fault == F_TRICKLE) {
		for (unsigned i = 0; i < s->n; i++)
			ev_token(c, i);
		ev_tail(c);
		stream_release(c);
		trickle_start(c);
		return;
	}
	c->state = C_STREAM;
	s->t0_us = (s->first_us || s->inter_us) ? now_us() : 0;
	stream_pump(c, false);
}

/* Builds the non-streaming answer into w->out (malformed: a cut body). */
static void build_json_answer(struct conn *c, const struct params *p, uint64_t seq)
{
	struct worker *w = c->w;
	mb *b = &w->body;
	mb_reset(b);
	put_object_head(b, w, p->chat, false, seq, p->model, p->model_len);
	if (p->fault == F_MALFORMED) {
		mb_str(b, p->chat ? "{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"w0"
		                  : "{\"index\":0,\"text\":\"w0");
	} else {
		mb_str(b, p->chat ? "{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\""
		                  : "{\"index\":0,\"text\":\"");
		for (unsigned i = 0; i < p->n; i++)
			put_token(b, i);
		mb_str(b, p->chat ? "\"},\"logprobs\":null,\"finish_reason\":\""
		                  : "\",\"logprobs\":null,\"finish_reason\":\"");
		mb_str(b, p->length ? "length" : "stop");
		mb_lit(b, "\"}],");
		put_usage(b, p->prompt_tokens, p->n);
		mb_lit(b, "}");
	}
	mb_reset(&w->out);
	put_head(c, &w->out, 200, "application/json", (int64_t)b->len, NULL);
	mb_add(&w->out, b->p, b->len);
	if (b->oom)
		w->out.oom = true;
}

static void answer_json(struct conn *c, const struct params *p, uint64_t seq)
{
	struct worker *w = c->w;
	uint64_t delay = p->first_us + (p->n ? (uint64_t)(p->n - 1) * p->inter_us : 0);
	if (p->fault == F_DROP) {
		c->ka = false;
		if (delay == 0) {
			response_done(c, false);
			return;
		}
		c->state = C_DELAYED; /* pend stays NULL: nothing is sent */
		arm_timer(c, delay);
		return;
	}
	build_json_answer(c, p, seq);
	if (p->fault == F_TRICKLE) {
		trickle_start(c);
		return;
	}
	if (delay == 0) {
		conn_write_mb(c, &w->out);
		response_done(c, false);
		return;
	}
	if (w->out.oom || !(c->pend = malloc(w->out.len))) {
		c->dead = true;
		return;
	}
	memcpy(c->pend, w->out.p, w->out.len);
	c->plen = w->out.len;
	c->state = C_DELAYED;
	arm_timer(c, delay);
}

static void delayed_fire(struct conn *c)
{
	if (c->pend) {
		conn_write(c, c->pend, c->plen);
		free(c->pend);
		c->pend = NULL;
	}
	response_done(c, true);
}

/* Reads the X-Mock-* headers over the defaults; false after sending 400. */
static bool read_overrides(struct conn *c, const mh_request *rq, unsigned *tokens, struct params *p)
{
	const struct mock_cfg *o = &c->w->cfg;
	*tokens = o->tokens;
	p->first_us = o->first_us;
	p->inter_us = o->inter_us;
	p->fault = -1;
	if (rq->x_tokens && !parse_uint(rq->x_tokens, rq->x_tokens_len, MOCK_MAX_TOKENS, tokens)) {
		send_invalid(c, 400, "invalid X-Mock-Tokens header (accepted: an integer 0..1000000)");
		return false;
	}
	if (rq->x_first_ms && !parse_ms(rq->x_first_ms, rq->x_first_ms_len, &p->first_us)) {
		send_invalid(c, 400, "invalid X-Mock-First-Token-Ms header (accepted: milliseconds 0..3600000)");
		return false;
	}
	if (rq->x_inter_ms && !parse_ms(rq->x_inter_ms, rq->x_inter_ms_len, &p->inter_us)) {
		send_invalid(c, 400, "invalid X-Mock-Inter-Token-Ms header (accepted: milliseconds 0..3600000)");
		return false;
	}
	if (rq->x_fault && (p->fault = fault_from(rq->x_fault, rq->x_fault_len)) < 0) {
		send_invalid(c, 400, "invalid X-Mock-Fault header (accepted: " FAULT_LIST ")");
		return false;
	}
	return true;
}

/* Reads an optional non-negative integer limit; false after sending 400. */
static bool read_limit(struct conn *c, const json_t *root, const char *key, unsigned *limit)
{
	const json_t *v = json_object_get(root, key);
	if (!v || json_is_null(v))
		return true;
	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		char msg[96];
		snprintf(msg, sizeof(msg), "'%s' must be a non-negative integer", key);
		send_invalid(c, 400, msg);
		return false;
	}
	json_int_t x = json_integer_value(v);
	if ((uint64_t)x < *limit)
		*limit = (unsigned)x;
	return true;
}

/* POST .../chat/completions (chat) and POST .../completions.  The body is
 * parsed with jansson for exact validation; perf on the bench VM puts that
 * at ~9% of the mock's CPU per keep-alive request (the kernel's loopback TCP
 * work is ~68%), too little to justify a hand-written scanner. */
static void handle_completion(struct conn *c, const mh_request *rq, const char *body, size_t blen,
                              bool chat)
{
	struct worker *w = c->w;
	struct params p = {.chat = chat};
	unsigned tokens;
	c->inflight = true;
	bump(&w->stats.requests);
	cfg_sync(w);
	if (!read_overrides(c, rq, &tokens, &p))
		return;
	if (blen == 0) {
		send_invalid(c, 400, "missing request body");
		return;
	}
	json_error_t jerr;
	json_t *root = json_loadb(body, blen, 0, &jerr);
	if (!root) {
		char msg[256];
		snprintf(msg, sizeof(msg), "invalid JSON body: %s (line %d, column %d)", jerr.text,
		         jerr.line, jerr.column);
		for (char *q = msg; *q; q++) /* jansson may quote raw input bytes */
			if ((unsigned char)*q >= 0x80)
				*q = '?';
		send_invalid(c, 400, msg);
		return;
	}
	if (!json_is_object(root)) {
		send_invalid(c, 400, "the request body must be a JSON object");
		goto out;
	}
	const json_t *v = json_object_get(root, "model");
	if (v && !json_is_string(v) && !json_is_null(v)) {
		send_invalid(c, 400, "'model' must be a string");
		goto out;
	}
	if (json_is_string(v) && json_string_length(v) > 0) {
		p.model = json_string_value(v);
		p.model_len = json_string_length(v);
	} else {
		p.model = w->o->model;
		p.model_len = strlen(w->o->model);
	}
	v = json_object_get(root, "stream");
	if (v && !json_is_boolean(v) && !json_is_null(v)) {
		send_invalid(c, 400, "'stream' must be a boolean");
		goto out;
	}
	p.stream = json_is_true(v);
	v = json_object_get(root, "stream_options");
	if (json_is_object(v))
		p.include_usage = json_is_true(json_object_get(v, "include_usage"));
	unsigned limit = MOCK_MAX_TOKENS;
	if (!read_limit(c, root, "max_tokens", &limit) ||
	    (chat && !read_limit(c, root, "max_completion_tokens", &limit)))
		goto out;
	if (chat) {
		v = json_object_get(root, "messages");
		if (!json_is_array(v)) {
			send_invalid(c, 400, "'messages' must be an array");
			goto out;
		}
		size_t i;
		const json_t *m;
		json_array_foreach(v, i, m)
		{
			if (json_is_object(m))
				p.prompt_tokens += json_words(json_object_get(m, "content"));
		}
	} else {
		p.prompt_tokens = json_words(json_object_get(root, "prompt"));
	}
	p.n = tokens < limit ? tokens : limit;
	p.length = limit < tokens;
	if (p.fault < 0)
		p.fault = pick_fault(w);
	if (p.stream)
		bump(&w->stats.streams);
	if (p.fault != F_NONE)
		bump(&w->stats.faults);

	uint64_t seq = ++w->seq;
	switch (p.fault) {
	case F_HTTP500:
		send_error(c, 500, "server_error", "mock_http500", "mock fault", NULL);
		break;
	case F_HTTP429:
		send_error(c, 429, "rate_limit_exceeded", "mock_http429", "mock fault", "Retry-After: 1\r\n");
		break;
	case F_HANG:
		c->state = C_HANG;
		break;
	default:
		if (p.stream)
			start_stream(c, &p, seq);
		else
			answer_json(c, &p, seq);
	}
out:
	json_decref(root);
}

/* --------------------------------------------------------- runtime control */

/* Appends v / 10^decimals as a JSON number without trailing zeros
 * (1500, 3 -> "1.5"; 1000000, 6 -> "1"). */
static void mb_fixed(mb *b, uint64_t v, unsigned decimals)
{
	uint64_t scale = 1;
	for (unsigned i = 0; i < decimals; i++)
		scale *= 10;
	mb_u64(b, v / scale);
	uint64_t frac = v % scale;
	if (!frac)
		return;
	char digits[20];
	unsigned n = decimals;
	for (unsigned i = n; i-- > 0;) {
		digits[i] = (char)('0' + frac % 10);
		frac /= 10;
	}
	while (n > 0 && digits[n - 1] == '0')
		n--;
	mb_lit(b, ".");
	mb_add(b, digits, n);
}

/* {"tokens":..,"first_token_ms":..,"inter_token_ms":..,"fault":..,
 *  "fault_rate":..,"fail_after":..} */
static void put_cfg(mb *b, const struct mock_cfg *k)
{
	mb_lit(b, "{\"tokens\":");
	mb_u64(b, k->tokens);
	mb_lit(b, ",\"first_token_ms\":");
	mb_fixed(b, k->first_us, 3);
	mb_lit(b, ",\"inter_token_ms\":");
	mb_fixed(b, k->inter_us, 3);
	mb_lit(b, ",\"fault\":\"");
	mb_str(b, fault_names[k->fault]);
	mb_lit(b, "\",\"fault_rate\":");
	mb_fixed(b, k->fault_ppm, 6);
	mb_lit(b, ",\"fail_after\":");
	mb_u64(b, k->fail_after);
	mb_lit(b, "}");
}

enum { CF_TOKENS = 1, CF_FIRST = 2, CF_INTER = 4, CF_FAULT = 8, CF_RATE = 16, CF_FAIL_AFTER = 32 };

#define CFG_FIELDS "tokens, first_token_ms, inter_token_ms, fault, fault_rate, fail_after"

/* A JSON number in [0, max] (integers and reals alike). */
static bool json_num_in(const json_t *v, double max, double *out)
{
	if (!json_is_number(v))
		return false;
	double d = json_number_value(v);
	if (!(d >= 0 && d <= max))
		return false;
	*out = d;
	return true;
}

/* A JSON integer in [0, max]. */
static bool json_int_in(const json_t *v, uint64_t max, uint64_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max)
		return false;
	*out = (uint64_t)json_integer_value(v);
	return true;
}

/* Sends 400 for a bad field of POST /mock/config: "param" names it. */
static void send_bad_field(struct conn *c, const char *field, const char *msg)
{
	send_error_param(c, 400, "invalid_request_error", NULL, field, msg, NULL);
}

/* Validates a POST /mock/config body into *k (fields not given are left
 * alone) and the CF_* bits of the given fields; false after sending 400.
 * Nothing is applied here, so a bad body changes nothing. */
static bool parse_cfg_body(struct conn *c, const char *body, size_t blen, struct mock_cfg *k,
                           unsigned *set)
{
	*set = 0;
	if (blen == 0) {
		send_invalid(c, 400, "missing request body (a JSON object with any of: " CFG_FIELDS ")");
		return false;
	}
	json_error_t jerr;
	json_t *root = json_loadb(body, blen, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		char msg[256];
		snprintf(msg, sizeof(msg), "invalid JSON body: %s (line %d, column %d)", jerr.text,
		         jerr.line, jerr.column);
		for (char *q = msg; *q; q++)
			if ((unsigned char)*q >= 0x80)
				*q = '?';
		send_invalid(c, 400, msg);
		return false;
	}
	bool ok = false;
	if (!json_is_object(root)) {
		send_invalid(c, 400, "the request body must be a JSON object with any of: " CFG_FIELDS);
		goto out;
	}
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v)
	{
		uint64_t u;
		double d;
		if (strcmp(key, "tokens") == 0) {
			if (!json_int_in(v, MOCK_MAX_TOKENS, &u)) {
				send_bad_field(c, key, "'tokens' must be an integer 0..1000000");
				goto out;
			}
			k->tokens = (unsigned)u;
			*set |= CF_TOKENS;
		} else if (strcmp(key, "first_token_ms") == 0 || strcmp(key, "inter_token_ms") == 0) {
			bool first = key[0] == 'f';
			if (!json_num_in(v, MOCK_MAX_DELAY_MS, &d)) {
				send_bad_field(c, key, first ? "'first_token_ms' must be milliseconds 0..3600000"
				                             : "'inter_token_ms' must be milliseconds 0..3600000");
				goto out;
			}
			*(first ? &k->first_us : &k->inter_us) = (uint64_t)(d * 1000.0 + 0.5);
			*set |= first ? CF_FIRST : CF_INTER;
		} else if (strcmp(key, "fault") == 0) {
			int f = json_is_string(v) ? fault_from(json_string_value(v), json_string_length(v)) : -1;
			if (f < 0) {
				send_bad_field(c, key, "'fault' must be one of: " FAULT_LIST);
				goto out;
			}
			k->fault = f;
			*set |= CF_FAULT;
		} else if (strcmp(key, "fault_rate") == 0) {
			if (!json_num_in(v, 1.0, &d)) {
				send_bad_field(c, key, "'fault_rate' must be a number 0..1");
				goto out;
			}
			k->fault_ppm = (uint32_t)(d * 1e6 + 0.5);
			*set |= CF_RATE;
		} else if (strcmp(key, "fail_after") == 0) {
			if (!json_int_in(v, MOCK_MAX_FAIL_AFTER, &u)) {
				send_bad_field(c, key, "'fail_after' must be an integer 0..1000000000");
				goto out;
			}
			k->fail_after = u;
			*set |= CF_FAIL_AFTER;
		} else {
			char msg[160];
			snprintf(msg, sizeof(msg), "unknown field '%.40s%s' (accepted: " CFG_FIELDS ")", key,
			         strlen(key) > 40 ? "..." : "");
			for (char *q = msg; *q; q++) /* a cut UTF-8 sequence must not reach the JSON */
				if ((unsigned char)*q >= 0x80)
					*q = '?';
			send_bad_field(c, key, msg);
			goto out;
		}
	}
	ok = true;
out:
	json_decref(root);
	return ok;
}

/* GET /mock/config: the current settings.  POST /mock/config: changes the
 * given ones (all at once, for every request read afterwards on any thread),
 * then answers like GET. */
static void handle_config(struct conn *c, const mh_request *rq, const char *body, size_t blen)
{
	sl_mock_upstream *m = c->w->m;
	struct mock_cfg k;
	if (rq->method == MH_POST) {
		struct mock_cfg upd;
		unsigned set;
		memset(&upd, 0, sizeof(upd));
		if (!parse_cfg_body(c, body, blen, &upd, &set))
			return;
		pthread_mutex_lock(&m->cfg_mu);
		k = m->cfg;
		if (set & CF_TOKENS)
			k.tokens = upd.tokens;
		if (set & CF_FIRST)
			k.first_us = upd.first_us;
		if (set & CF_INTER)
			k.inter_us = upd.inter_us;
		if (set & CF_FAULT)
			k.fault = upd.fault;
		if (set & CF_RATE)
			k.fault_ppm = upd.fault_ppm;
		if (set & CF_FAIL_AFTER) {
			k.fail_after = upd.fail_after;
			atomic_store_explicit(&m->fail_count, 0, memory_order_relaxed);
		}
		if (set & (CF_FAULT | CF_RATE | CF_FAIL_AFTER))
			k.fault_epoch++;
		m->cfg = k;
		atomic_store_explicit(&m->cfg_gen, atomic_load_explicit(&m->cfg_gen, memory_order_relaxed) + 1,
		                      memory_order_release);
		pthread_mutex_unlock(&m->cfg_mu);
	} else {
		pthread_mutex_lock(&m->cfg_mu);
		k = m->cfg;
		pthread_mutex_unlock(&m->cfg_mu);
	}
	mb *b = &c->w->body;
	mb_reset(b);
	put_cfg(b, &k);
	send_body(c, 200, "application/json", NULL);
}

/* GET /mock/stats: the workers' counters summed.  Per worker, "completed"
 * and "cancelled" are read before "requests" (acquire, pairing with bump's
 * release), so requests >= completed + cancelled and in_flight, the rest,
 * is never negative. */
static void handle_stats(struct conn *c)
{
	sl_mock_upstream *m = c->w->m;
	uint64_t req = 0, streams = 0, faults = 0, done = 0, cancelled = 0;
	for (int i = 0; i < m->nworkers; i++) {
		struct wstats *st = &m->w[i].stats;
		done += atomic_load_explicit(&st->completed, memory_order_acquire);
		cancelled += atomic_load_explicit(&st->cancelled, memory_order_acquire);
		req += atomic_load_explicit(&st->requests, memory_order_acquire);
		streams += atomic_load_explicit(&st->streams, memory_order_relaxed);
		faults += atomic_load_explicit(&st->faults, memory_order_relaxed);
	}
	mb *b = &c->w->body;
	mb_reset(b);
	mb_lit(b, "{\"requests\":");
	mb_u64(b, req);
	mb_lit(b, ",\"streams\":");
	mb_u64(b, streams);
	mb_lit(b, ",\"faults\":");
	mb_u64(b, faults);
	mb_lit(b, ",\"in_flight\":");
	mb_u64(b, req - done - cancelled);
	mb_lit(b, ",\"completed\":");
	mb_u64(b, done);
	mb_lit(b, ",\"cancelled_by_client\":");
	mb_u64(b, cancelled);
	mb_lit(b, "}");
	send_body(c, 200, "application/json", NULL);
}

/* ------------------------------------------------------------------ routes */

static bool path_is(const mh_request *rq, const char *s)
{
	size_t n = strlen(s);
	return rq->path_len == n && memcmp(rq->path, s, n) == 0;
}

static bool path_ends(const mh_request *rq, const char *s)
{
	size_t n = strlen(s);
	return rq->path_len >= n && memcmp(rq->path + rq->path_len - n, s, n) == 0;
}

static void send_model(mb *b, const char *id, size_t n)
{
	mb_lit(b, "{\"id\":\"");
	mb_json_str(b, id, n);
	mb_lit(b, "\",\"object\":\"model\",\"created\":1700000000,\"owned_by\":\"sluice-mock\"}");
}

static void handle(struct conn *c, const mh_request *rq, const char *body, size_t blen)
{
	struct worker *w = c->w;
	if (path_is(rq, "/mock/config")) {
		if (rq->method != MH_GET && rq->method != MH_POST) {
			send_error(c, 405, "invalid_request_error", NULL, "method not allowed (use GET or POST)",
			           "Allow: GET, POST\r\n");
			return;
		}
		handle_config(c, rq, body, blen);
		return;
	}
	if (path_is(rq, "/mock/stats")) {
		if (rq->method != MH_GET) {
			send_error(c, 405, "invalid_request_error", NULL, "method not allowed (use GET)",
			           "Allow: GET\r\n");
			return;
		}
		handle_stats(c);
		return;
	}
	bool chat = path_ends(rq, "/chat/completions");
	if (chat || path_ends(rq, "/completions")) {
		if (rq->method != MH_POST) {
			send_error(c, 405, "invalid_request_error", NULL, "method not allowed (use POST)",
			           "Allow: POST\r\n");
			return;
		}
		handle_completion(c, rq, body, blen, chat);
		return;
	}
	bool list = path_ends(rq, "/models");
	const char *slash = NULL;
	if (!list) {
		/* .../models/<id>: the id is echoed back as a model */
		for (size_t i = rq->path_len; i >= 8 && !slash; i--)
			if (memcmp(rq->path + i - 8, "/models/", 8) == 0)
				slash = rq->path + i - 1;
	}
	if (list || path_is(rq, "/healthz") || slash) {
		if (rq->method != MH_GET) {
			send_error(c, 405, "invalid_request_error", NULL, "method not allowed (use GET)",
			           "Allow: GET\r\n");
			return;
		}
		mb *b = &w->body;
		mb_reset(b);
		if (list) {
			mb_lit(b, "{\"object\":\"list\",\"data\":[");
			send_model(b, w->o->model, strlen(w->o->model));
			mb_lit(b, "]}");
		} else if (slash) {
			size_t n = (size_t)(rq->path + rq->path_len - slash - 1);
			send_model(b, slash + 1, n);
		} else {
			mb_lit(b, "ok");
			send_body(c, 200, "text/plain", NULL);
			return;
		}
		send_body(c, 200, "application/json", NULL);
		return;
	}
	send_invalid(c, 404, "not found");
}

/* Answers a request that cannot be framed; the connection then closes. */
static void bad_request(struct conn *c, int r)
{
	c->ka = false;
	switch (r) {
	case MH_EHEADBIG:
		send_invalid(c, 431, "request head exceeds 64 KiB");
		break;
	case MH_ETE:
		send_invalid(c, 501, "unsupported Transfer-Encoding (only chunked)");
		break;
	case MH_ETOOBIG:
		send_invalid(c, 413, "request body exceeds 1 MiB");
		break;
	case MH_ENOMEM:
		c->dead = true;
		break;
	default:
		send_invalid(c, 400, "malformed HTTP request");
	}
}

static void maybe_continue(struct conn *c, const mh_request *rq)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	if (rq->expect_continue && rq->minor == 1 && !c->continue_sent) {
		conn_write(c, cont, sizeof(cont) - 1);
		c->continue_sent = true;
	}
}

/* Frees scratch builders that a large answer grew past MOCK_KEEP_SCRATCH. */
static void scratch_trim(struct worker *w)
{
	mb *all[] = {&w->out, &w->body, &w->ev, &w->dechunk};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (all[i]->cap > MOCK_KEEP_SCRATCH)
			mb_free(all[i]);
}

/* Answers the complete requests at the start of data[0..len) while the
 * connection stays idle; returns the bytes consumed (all of them once the
 * connection is closing: what follows is discarded). */
static size_t process(struct conn *c, const char *data, size_t len)
{
	struct worker *w = c->w;
	size_t off = 0;
	while (off < len && c->state == C_IDLE && !c->closing && !c->dead) {
		mh_request rq;
		const char *p = data + off;
		size_t n = len - off;
		c->minor = 1;
		int r = mh_parse_head(p, n, MOCK_MAX_HEAD, &rq);
		if (r == MH_MORE)
			break;
		if (r != MH_OK) {
			bad_request(c, r);
			break;
		}
		c->minor = rq.minor;
		c->ka = rq.keep_alive;
		const char *body = p + rq.head_len;
		size_t avail = n - rq.head_len, blen, used;
		if (rq.chunked) {
			mb_reset(&w->dechunk);
			r = mh_dechunk(body, avail, MOCK_MAX_BODY, MOCK_MAX_INPUT - rq.head_len, &w->dechunk,
			               &used);
			if (r == MH_MORE) {
				maybe_continue(c, &rq);
				break;
			}
			if (r != MH_OK) {
				bad_request(c, r);
				break;
			}
			body = w->dechunk.p;
			blen = w->dechunk.len;
		} else {
			uint64_t cl = rq.content_length < 0 ? 0 : (uint64_t)rq.content_length;
			if (cl > MOCK_MAX_BODY) {
				bad_request(c, MH_ETOOBIG);
				break;
			}
			if (avail < cl) {
				maybe_continue(c, &rq);
				break;
			}
			blen = used = (size_t)cl;
		}
		off += rq.head_len + used;
		c->continue_sent = false;
		handle(c, &rq, body, blen);
		scratch_trim(w);
	}
	return c->closing ? len : off;
}

/* Parses new input.  owned: data is c->ib (compacted here); otherwise the
 * worker's scratch, whose unparsed rest is copied into c->ib. */
static void conn_input(struct conn *c, const char *data, size_t len, bool owned)
{
	size_t used = c->state == C_IDLE ? process(c, data, len) : 0;
	if (c->dead || c->state == C_LINGER)
		return;
	size_t rest = len - used;
	if (owned) {
		if (used && rest)
			memmove(c->ib, c->ib + used, rest);
		c->ilen = rest;
	} else if (rest) {
		if (c->icap < rest) {
			char *ib = realloc(c->ib, rest < MOCK_READ_CHUNK ? MOCK_READ_CHUNK : rest);
			if (!ib) {
				c->dead = true;
				return;
			}
			c->ib = ib;
			c->icap = rest < MOCK_READ_CHUNK ? MOCK_READ_CHUNK : rest;
		}
		memcpy(c->ib, data + used, rest);
		c->ilen = rest;
	}
	if (c->ilen == 0 && c->icap > MOCK_KEEP_BUF) {
		free(c->ib);
		c->ib = NULL;
		c->icap = 0;
	}
	if (c->ilen >= MOCK_MAX_INPUT && !c->rpaused) {
		/* Only reachable while busy: an idle parse would have failed. */
		event_del(c->rev);
		c->rpaused = true;
	}
}

/* --------------------------------------------------------- event callbacks */

static void conn_free(struct conn *c)
{
	struct worker *w = c->w;
	if (c->inflight)
		bump(&w->stats.cancelled); /* the answer did not end */
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->rev)
		event_free(c->rev);
	if (c->wev)
		event_free(c->wev);
	if (c->tev)
		event_free(c->tev);
	evutil_closesocket(c->fd);
	free(c->ib);
	free(c->ob);
	free(c->pend);
	free(c->st.prefix);
	free(c);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct conn *c = arg;
	struct worker *w = c->w;
	ssize_t n;
	if (c->state == C_LINGER) {
		n = recv(fd, w->rbuf, MOCK_READ_CHUNK, 0);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			c->dead = true;
	} else if (c->ilen == 0) {
		n = recv(fd, w->rbuf, MOCK_READ_CHUNK, 0);
		if (n > 0)
			conn_input(c, w->rbuf, (size_t)n, false);
	} else {
		if (c->icap - c->ilen < MOCK_READ_CHUNK / 4) {
			size_t cap = c->icap * 2 > c->ilen + MOCK_READ_CHUNK ? c->icap * 2 : c->ilen + MOCK_READ_CHUNK;
			char *ib = realloc(c->ib, cap);
			if (!ib) {
				c->dead = true;
				goto out;
			}
			c->ib = ib;
			c->icap = cap;
		}
		n = recv(fd, c->ib + c->ilen, c->icap - c->ilen, 0);
		if (n > 0) {
			c->ilen += (size_t)n;
			conn_input(c, c->ib, c->ilen, true);
		}
	}
	/* EOF or error: the client is gone; whatever was pending is dropped. */
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
		c->dead = true;
out:
	if (c->dead)
		conn_free(c);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct conn *c = arg;
	while (c->ooff < c->olen) {
		ssize_t k = send(fd, c->ob + c->ooff, c->olen - c->ooff, MSG_NOSIGNAL);
		if (k < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				c->dead = true;
			goto out;
		}
		c->ooff += (size_t)k;
	}
	c->ooff = c->olen = 0;
	event_del(c->wev);
	c->wpending = false;
	if (c->ocap > MOCK_KEEP_BUF) {
		free(c->ob);
		c->ob = NULL;
		c->ocap = 0;
	}
	if (c->state == C_STREAM && c->st.blocked) {
		c->st.blocked = false;
		stream_pump(c, true);
	}
	maybe_linger(c);
out:
	if (c->dead)
		conn_free(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct conn *c = arg;
	switch (c->state) {
	case C_DELAYED: delayed_fire(c); break;
	case C_STREAM: stream_pump(c, true); break;
	case C_TRICKLE: trickle_tick(c); break;
	case C_LINGER: c->dead = true; break;
	default: break;
	}
	if (c->dead)
		conn_free(c);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int slen,
                      void *arg)
{
	(void)l;
	(void)slen;
	struct worker *w = arg;
	if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	struct conn *c = calloc(1, sizeof(*c));
	if (!c) {
		evutil_closesocket(fd);
		return;
	}
	c->w = w;
	c->fd = fd;
	c->ka = true;
	c->minor = 1;
	c->rev = event_new(w->base, fd, EV_READ | EV_PERSIST, on_read, c);
	if (!c->rev || event_add(c->rev, NULL) != 0) {
		if (c->rev)
			event_free(c->rev);
		free(c);
		evutil_closesocket(fd);
		return;
	}
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
}

/* accept() failed with something other than EAGAIN (EMFILE, ENFILE, ...):
 * stop accepting for 100 ms instead of spinning on a readable listener. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
	struct worker *w = arg;
	int err = EVUTIL_SOCKET_ERROR();
	time_t now = time(NULL);
	if (now != w->accept_warned) {
		w->accept_warned = now;
		fprintf(stderr, "mock-upstream: accept: %s (pausing accepts 100 ms)\n", strerror(err));
	}
	evconnlistener_disable(l);
	struct timeval tv = {0, 100000};
	evtimer_add(w->retry_ev, &tv);
}

static void on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct worker *w = arg;
	evconnlistener_enable(w->lst);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct worker *w = arg;
	event_base_loopbreak(w->base);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	event_base_dispatch(w->base);
	return NULL;
}

/* --------------------------------------------------------------- lifecycle */

/* Frees what worker_init made; the worker's thread must not be running. */
static void worker_fini(struct worker *w)
{
	while (w->conns)
		conn_free(w->conns);
	if (w->stop_ev)
		event_free(w->stop_ev);
	if (w->retry_ev)
		event_free(w->retry_ev);
	if (w->lst)
		evconnlistener_free(w->lst);
	if (w->base)
		event_base_free(w->base);
	free(w->rbuf);
	mb_free(&w->out);
	mb_free(&w->body);
	mb_free(&w->ev);
	mb_free(&w->dechunk);
}

static int worker_init(struct worker *w, sl_mock_upstream *m, unsigned idx)
{
	w->m = m;
	w->o = &m->o;
	w->cfg = m->cfg;
	w->cfg_gen = 0;
	w->idx = idx;
	w->dechunk.limit = MOCK_MAX_BODY;
	w->out.limit = MOCK_MAX_OUTPUT;
	w->body.limit = MOCK_MAX_OUTPUT;
	struct event_config *cfg = event_config_new();
	if (!cfg)
		return SL_ENOMEM;
	event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
	w->base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	if (!w->base || !(w->rbuf = malloc(MOCK_READ_CHUNK)))
		return SL_ENOMEM;
	w->lst = evconnlistener_new_bind(w->base, on_accept, w,
	                                 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
	                                     LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_EXEC,
	                                 MOCK_BACKLOG, (const struct sockaddr *)&m->o.addr,
	                                 (int)m->o.addrlen);
	if (!w->lst) {
		fprintf(stderr, "mock-upstream: cannot listen on %s:%d: %s\n", m->o.host, m->o.port,
		        strerror(errno));
		return SL_ESYS;
	}
	evconnlistener_set_error_cb(w->lst, on_accept_error);
	w->retry_ev = evtimer_new(w->base, on_accept_retry, w);
	w->stop_ev = event_new(w->base, m->stop_fd, EV_READ | EV_PERSIST, on_stop, w);
	if (!w->retry_ev || !w->stop_ev || event_add(w->stop_ev, NULL) != 0)
		return SL_ENOMEM;
	return SL_OK;
}

static void set_port(struct sockaddr_storage *ss, int port)
{
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
	else
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
}

/* SO_REUSEPORT would let our listeners silently join another process's
 * listeners on the same port, so first bind a plain socket: it fails when the
 * port is taken, and picks the port for --port 0.  Returns the port or -1. */
static int probe_port(struct mock_opts *o)
{
	int fd = socket(o->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_storage ss = o->addr;
	socklen_t len = o->addrlen;
	int port = -1;
	if (bind(fd, (struct sockaddr *)&ss, len) == 0 && getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
		port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
		                                      : ((struct sockaddr_in *)&ss)->sin_port);
	int err = errno;
	close(fd);
	errno = err;
	return port;
}

static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

void sl_mock_upstream_stop(sl_mock_upstream *m)
{
	if (!m)
		return;
	if (m->stop_fd >= 0) {
		uint64_t one = 1;
		ssize_t r = write(m->stop_fd, &one, sizeof(one));
		(void)r; /* an eventfd write of 1 cannot fail short of overflow */
	}
	for (int i = 0; i < m->nworkers; i++)
		if (m->w[i].running)
			pthread_join(m->w[i].tid, NULL);
	for (int i = 0; i < m->nworkers; i++)
		worker_fini(&m->w[i]);
	if (m->stop_fd >= 0)
		close(m->stop_fd);
	pthread_mutex_destroy(&m->cfg_mu);
	free(m->w);
	free(m);
}

int sl_mock_upstream_port(const sl_mock_upstream *m)
{
	return m ? m->o.port : -1;
}

/* Starts the server for validated options (see sl_mock_upstream_start). */
static int start_opts(const struct mock_opts *o, sl_mock_upstream **out)
{
	*out = NULL;
	raise_nofile();
	sl_mock_upstream *m = mock_alloc(sizeof(*m));
	if (!m)
		return SL_ENOMEM;
	m->o = *o;
	m->stop_fd = -1;
	m->cfg = o->cfg;
	atomic_init(&m->cfg_gen, 0);
	atomic_init(&m->fail_count, 0);
	if (pthread_mutex_init(&m->cfg_mu, NULL) != 0) {
		free(m);
		return SL_ENOMEM;
	}
	int port = probe_port(&m->o);
	if (port < 0) {
		fprintf(stderr, "mock-upstream: cannot listen on %s:%d: %s\n", m->o.host, m->o.port,
		        strerror(errno));
		pthread_mutex_destroy(&m->cfg_mu);
		free(m);
		return SL_ESYS;
	}
	m->o.port = port;
	set_port(&m->o.addr, port);
	int rc = SL_OK;
	if ((m->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		rc = SL_ESYS;
		goto fail;
	}
	if (!(m->w = mock_alloc((size_t)o->threads * sizeof(*m->w)))) {
		rc = SL_ENOMEM;
		goto fail;
	}
	m->nworkers = o->threads;
	for (int i = 0; i < m->nworkers; i++)
		if ((rc = worker_init(&m->w[i], m, (unsigned)i)) != SL_OK)
			goto fail;
	for (int i = 0; i < m->nworkers; i++) {
		struct worker *w = &m->w[i];
		if (pthread_create(&w->tid, NULL, worker_main, w) != 0) {
			fprintf(stderr, "mock-upstream: cannot start thread %d\n", i);
			rc = SL_ESYS;
			goto fail;
		}
		w->running = true;
		char name[16];
		snprintf(name, sizeof(name), "mock-%d", i);
		pthread_setname_np(w->tid, name);
	}
	*out = m;
	return SL_OK;
fail:
	sl_mock_upstream_stop(m);
	return rc;
}

/* ----------------------------------------------------------------- flags */

static const char usage_text[] =
	"usage: sluice mock-upstream [options]\n"
	"OpenAI-compatible mock model server: POST /v1/chat/completions, POST /v1/completions\n"
	"(JSON or \"stream\": true SSE), GET /v1/models, GET /healthz.\n"
	"  --port P             TCP port, 0..65535; 0 picks a free one (default 8081)\n"
	"  --host ADDR          address to bind (default 127.0.0.1)\n"
	"  --threads N          event-loop threads, 1..1024 (default: CPUs in the affinity mask)\n"
	"  --tokens N           tokens per answer, 0..1000000 (default 16); token i is\n"
	"                       \"w<i>\" preceded by a space when i > 0: \"w0 w1 w2\"\n"
	"  --first-token-ms D   delay before the first token, ms (default 0)\n"
	"  --inter-token-ms D   delay between tokens, ms (default 0)\n"
	"  --fault MODE         " FAULT_LIST " (default none)\n"
	"  --fault-rate R       fraction of requests with the fault, 0..1 (default 1);\n"
	"                       exactly every 1/R-th request per thread\n"
	"  --fail-after N       the first N requests get no fault, later ones get --fault\n"
	"                       (the rate applies), 0..1000000000 (default 0: off)\n"
	"  --model NAME         model reported when a request names none (default mock-model)\n"
	"Per-request headers: X-Mock-Tokens, X-Mock-Fault, X-Mock-First-Token-Ms,\n"
	"X-Mock-Inter-Token-Ms override the flags.\n"
	"Runtime control: GET/POST /mock/config changes tokens, delays and faults of a\n"
	"running server; GET /mock/stats counts requests.  See docs/mock-upstream.md.\n";

enum flag {
	FL_PORT, FL_HOST, FL_THREADS, FL_TOKENS, FL_FIRST, FL_INTER, FL_FAULT, FL_RATE, FL_FAIL_AFTER,
	FL_MODEL, FL__COUNT
};

static const struct {
	const char *name;
	const char *accepted;
} flags[FL__COUNT] = {
	[FL_PORT] = {"--port", "an integer 0..65535"},
	[FL_HOST] = {"--host", "an IPv4 or IPv6 address or a host name"},
	[FL_THREADS] = {"--threads", "an integer 1..1024"},
	[FL_TOKENS] = {"--tokens", "an integer 0..1000000"},
	[FL_FIRST] = {"--first-token-ms", "milliseconds 0..3600000, e.g. 250 or 0.5"},
	[FL_INTER] = {"--inter-token-ms", "milliseconds 0..3600000, e.g. 20 or 0.5"},
	[FL_FAULT] = {"--fault", FAULT_LIST},
	[FL_RATE] = {"--fault-rate", "a fraction 0..1, e.g. 0.25"},
	[FL_FAIL_AFTER] = {"--fail-after", "an integer 0..1000000000"},
	[FL_MODEL] = {"--model", "a name of 1..256 bytes"},
};

static int bad_value(int f, const char *val)
{
	fprintf(stderr, "mock-upstream: %s: bad value '%s' (accepted: %s)\n", flags[f].name, val,
	        flags[f].accepted);
	return 2;
}

static unsigned cpu_count(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return (unsigned)CPU_COUNT(&set);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1u;
}

/* Fills the bind address from host; false when it cannot be resolved. */
static bool resolve_host(struct mock_opts *o, const char *host)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	if (getaddrinfo(host, "0", &hints, &res) != 0 || !res)
		return false;
	memcpy(&o->addr, res->ai_addr, res->ai_addrlen);
	o->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	char num[INET6_ADDRSTRLEN];
	const void *a = o->addr.ss_family == AF_INET6
	                    ? (const void *)&((struct sockaddr_in6 *)&o->addr)->sin6_addr
	                    : (const void *)&((struct sockaddr_in *)&o->addr)->sin_addr;
	if (!inet_ntop(o->addr.ss_family, a, num, sizeof(num)))
		return false;
	snprintf(o->host, sizeof(o->host), o->addr.ss_family == AF_INET6 ? "[%s]" : "%s", num);
	return true;
}

/* Parses argv[1..argc).  Returns 0 with *o filled, 1 after printing --help
 * to stdout, 2 after printing an error to stderr. */
static int parse_opts(int argc, char **argv, struct mock_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->port = MOCK_DEFAULT_PORT;
	o->threads = (int)(cpu_count() > MOCK_MAX_THREADS ? MOCK_MAX_THREADS : cpu_count());
	o->cfg.tokens = MOCK_DEFAULT_TOKENS;
	o->cfg.fault = F_NONE;
	o->cfg.fault_ppm = 1000000u;
	snprintf(o->model, sizeof(o->model), "%s", MOCK_DEFAULT_MODEL);
	const char *host = MOCK_DEFAULT_HOST;
	bool fault_given = false, rate_given = false, fail_after_given = false;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			fputs(usage_text, stdout);
			return 1;
		}
		const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
		size_t nl = eq ? (size_t)(eq - a) : strlen(a);
		int f = 0;
		while (f < FL__COUNT && !(strlen(flags[f].name) == nl && memcmp(flags[f].name, a, nl) == 0))
			f++;
		if (f == FL__COUNT) {
			fprintf(stderr,
			        "mock-upstream: unknown flag '%s' (accepted: --port, --host, --threads, --tokens, "
			        "--first-token-ms, --inter-token-ms, --fault, --fault-rate, --fail-after, --model, "
			        "--help)\n",
			        a);
			return 2;
		}
		const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
		if (!val) {
			fprintf(stderr, "mock-upstream: %s needs a value (accepted: %s)\n", flags[f].name,
			        flags[f].accepted);
			return 2;
		}
		size_t vl = strlen(val);
		unsigned u;
		switch (f) {
		case FL_PORT:
			if (!parse_uint(val, vl, 65535, &u))
				return bad_value(f, val);
			o->port = (int)u;
			break;
		case FL_HOST:
			if (vl == 0)
				return bad_value(f, val);
			host = val;
			break;
		case FL_THREADS:
			if (!parse_uint(val, vl, MOCK_MAX_THREADS, &u) || u == 0)
				return bad_value(f, val);
			o->threads = (int)u;
			break;
		case FL_TOKENS:
			if (!parse_uint(val, vl, MOCK_MAX_TOKENS, &o->cfg.tokens))
				return bad_value(f, val);
			break;
		case FL_FIRST:
			if (!parse_ms(val, vl, &o->cfg.first_us))
				return bad_value(f, val);
			break;
		case FL_INTER:
			if (!parse_ms(val, vl, &o->cfg.inter_us))
				return bad_value(f, val);
			break;
		case FL_FAULT:
			if ((o->cfg.fault = fault_from(val, vl)) < 0)
				return bad_value(f, val);
			fault_given = true;
			break;
		case FL_RATE: {
			double r;
			if (!parse_decimal(val, vl, 1.0, &r))
				return bad_value(f, val);
			o->cfg.fault_ppm = (uint32_t)(r * 1e6 + 0.5);
			rate_given = true;
			break;
		}
		case FL_FAIL_AFTER:
			if (!parse_uint(val, vl, MOCK_MAX_FAIL_AFTER, &u))
				return bad_value(f, val);
			o->cfg.fail_after = u;
			fail_after_given = true;
			break;
		case FL_MODEL:
			if (vl == 0 || vl > MOCK_MAX_MODEL)
				return bad_value(f, val);
			memcpy(o->model, val, vl + 1);
			break;
		}
	}
	if ((rate_given || fail_after_given) && !fault_given) {
		fprintf(stderr, "mock-upstream: %s needs --fault (accepted: %s)\n",
		        rate_given ? "--fault-rate" : "--fail-after", FAULT_LIST);
		return 2;
	}
	if (!resolve_host(o, host)) {
		fprintf(stderr, "mock-upstream: --host: cannot resolve '%s' (accepted: %s)\n", host,
		        flags[FL_HOST].accepted);
		return 2;
	}
	set_port(&o->addr, o->port);
	return 0;
}

int sl_mock_upstream_start(int argc, char **argv, sl_mock_upstream **out)
{
	*out = NULL;
	struct mock_opts o;
	if (parse_opts(argc, argv, &o) != 0)
		return SL_EINVAL;
	return start_opts(&o, out);
}

int sl_mock_upstream_main(int argc, char **argv)
{
	struct mock_opts o;
	int pr = parse_opts(argc, argv, &o);
	if (pr == 1)
		return 0;
	if (pr != 0)
		return 2;

	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	sl_mock_upstream *m;
	int rc = start_opts(&o, &m);
	if (rc != SL_OK) {
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		return 1;
	}
	fprintf(stderr, "mock-upstream listening on http://%s:%d (threads=%d)\n", o.host,
	        sl_mock_upstream_port(m), o.threads);
	fflush(stderr);
	int sig;
	while (sigwait(&set, &sig) != 0)
		;
	sl_mock_upstream_stop(m);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return 0;
}
