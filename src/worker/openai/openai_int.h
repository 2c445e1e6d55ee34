/* openai_int.h - internals of the OpenAI worker shared by its two
 * transports: openai.c (the worker, request body, response handling and
 * outcomes, and the libcurl transport) and native.c (the native HTTP/1.1
 * client for http:// upstreams).  See docs/internals/openai-worker.md.
 *
 * Threads and ownership: oai_state is written at create and read-only
 * afterwards (shared by all shards); an oai_shard and everything hanging
 * off it (calls, connections, the resolver) is touched only by its shard's
 * thread. */
#ifndef SL_WORKER_OPENAI_INT_H
#define SL_WORKER_OPENAI_INT_H

#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/dynbuf.h"
#include "worker/openai/h1c.h"
#include "worker/openai/openai.h"
#include "worker/openai/sse.h"

#define OAI_DETAIL_MAX 512        /* bytes of upstream message in a detail */
#define OAI_MAX_ADDRS 8           /* addresses kept per resolution */
#define OAI_SPARE_EASY 16         /* curl easy handles kept per shard */

typedef struct oai_call oai_call;
typedef struct oai_shard oai_shard;
typedef struct nt_conn nt_conn;

/* What the native transport needs of the upstream, parsed at create. */
typedef struct nt_target {
	char *host;               /* as in the URL, without [] for IPv6 */
	char port_str[6];
	uint16_t port;
	int literal;              /* host is an IP literal: addr is it */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	/* the request head up to (not including) the per-call headers:
	 * request line, Host, User-Agent, the static header list, auth.
	 * Holds the API key: wiped at destroy. */
	char *head;
	size_t head_len;
	unsigned pool_cap;        /* idle connections kept per shard */
	int no_reuse;             /* an extra "Connection: close" header */
} nt_target;

typedef struct oai_state {
	char *endpoint;           /* url + "/chat/completions" */
	char *log_url;            /* endpoint without userinfo, for logs */
	char *model_json;         /* the model as a JSON string, quoted */
	char *auth;               /* "Authorization: Bearer <key>" or NULL: secret */
	const char *key;          /* points into auth: the key, for scrubbing */
	size_t key_len;
	struct curl_slist *hdrs;  /* static headers, shared read-only */
	uint32_t connect_ms, first_ms, total_ms, maxconc;
	int stream;
	int https;
	int native;               /* calls use the native transport */
	nt_target nt;             /* valid when native */
} oai_state;

/* Per-shard state of the native transport. */
typedef struct nt_shard {
	char *rbuf;               /* read buffer shared by the shard's
	                             connections (nothing is kept in it
	                             between reads) */
	size_t rcap;
	nt_conn *idle_head, *idle_tail; /* the pool, most recently used first */
	unsigned n_idle;
	unsigned n_conns;         /* open: connecting, busy and idle */
	oai_call *slot_head, *slot_tail; /* calls waiting for a connection slot */
	oai_call *dns_head, *dns_tail;   /* calls waiting for the resolver */
	struct evdns_base *dns;   /* created on first use */
	struct evdns_getaddrinfo_request *dns_req;
	int dns_busy;             /* a resolution is running */
	int waking;               /* inside nt_wake (not re-entered) */
	struct sockaddr_storage addrs[OAI_MAX_ADDRS];
	socklen_t addrlens[OAI_MAX_ADDRS];
	unsigned n_addrs;
	uint64_t addrs_until;     /* monotonic ns; the cache is valid before */
} nt_shard;

struct oai_shard {
	oai_state *st;
	struct event_base *base;
	unsigned idx;
	CURLM *multi;
	struct event timer;       /* curl's multi timer */
	int timer_init;
	oai_call *calls;          /* running calls, doubly linked */
	struct oai_sock *socks;   /* curl's socket contexts, doubly linked */
	CURL *spare[OAI_SPARE_EASY];
	unsigned n_spare;
	int closed;               /* close() ran: infer refuses */
	int busy;                 /* depth inside curl_multi_socket_action,
	                             sl_h1c_feed or sl_infer_token: a cancel
	                             then is deferred */
	unsigned n_cancelled;     /* deferred cancels not yet reaped */
	nt_shard nt;
};

enum { M_UNKNOWN = 0, M_SSE, M_JSON, M_ERROR };

/* Native per-call state. */
typedef struct nt_call {
	nt_conn *conn;            /* the connection carrying the request */
	oai_call *wprev, *wnext;  /* in a wait list (slot or resolver) */
	uint8_t phase;            /* NP_* (native.c) */
	uint8_t retried;          /* the stale-connection retry was used */
	uint8_t got_resp;         /* a response byte arrived */
	uint8_t sent_any;         /* a request byte was written */
	uint8_t ai;               /* address being tried */
	uint8_t pend;             /* a failure is recorded: pend_x, pend_err */
	uint8_t pend_x;
	uint8_t timer_set;        /* ft is assigned to the native timer */
	uint32_t head_len;        /* bytes of hbuf (the per-call head) */
	size_t off;               /* request bytes written */
	uint64_t conn_at;         /* connect deadline (ns), 0 = none */
	uint64_t limit_at;        /* total limit (ns), 0 = none */
	uint64_t ft_at;           /* first-token deadline (ns) */
	uint64_t t_conn;          /* start of the connect attempt */
	char *pend_err;
	sl_h1c h1;
} nt_call;

struct oai_call {
	oai_shard *ss;
	sl_infer *call;
	CURL *easy;
	oai_call *prev, *next;
	int in_multi;
	/* per-call headers, chained in front of the shared static list */
	struct curl_slist h_rid, h_tp;
	char *hbuf;               /* curl: X-Request-Id/traceparent lines;
	                             native: the per-call part of the head */
	sl_dynbuf body;           /* request body */
	sl_dynbuf raw;            /* JSON or error response body */
	sl_sse *sse;
	sl_oai_chunk chunk;
	int chunk_init;
	struct event ft;          /* curl: first-token timer; native: the
	                             call's one timer (connect, first token,
	                             total, deferred failure) */
	int ft_armed;             /* the first-token limit is running */
	int native;
	int mode;                 /* M_* once the response headers are in */
	long code;                /* HTTP status */
	int finished;             /* finish_reason seen */
	int got_done;             /* [DONE] seen */
	int got_body;             /* any response body byte */
	int stop;                 /* write path asked to stop: see stop_* */
	int stop_status;
	int stop_silent;          /* request gone: no sl_infer_done */
	uint8_t fail_kind;        /* sl_fail_kind for the next failing call_end */
	int cancelled;            /* cancel() deferred: call is NULL, reap me */
	char *stop_detail;
	sl_usage usage;
	int has_usage;
	uint32_t n_tokens;
	uint64_t t_start;
	uint32_t limit_ms;        /* total limit of the transfer, 0 = none */
	int limit_is_deadline;    /* the limit came from the request deadline */
	union {
		char err[CURL_ERROR_SIZE]; /* curl */
		nt_call nt;                /* native */
	} u;
};

/* How a transfer ended, in the terms of the outcome table (the curl path
 * maps its CURLcode, the native transport says it directly). */
typedef enum oai_xfer {
	OAI_X_OK = 0,      /* the response ended cleanly */
	OAI_X_TIMEOUT,     /* the total limit / deadline was reached */
	OAI_X_CONNECT,     /* resolve or connect failed (incl. connect timeout) */
	OAI_X_PARTIAL,     /* the body was cut short */
	OAI_X_OTHER,       /* any other transport failure */
	OAI_X_LOCAL        /* a local resource ran out (fds, ports, memory):
	                    * nothing was sent */
} oai_xfer;

/* ---- openai.c, for the native transport (shard thread only) ---- */

/* Decides the outcome of c once its transfer ended with x (sent: request
 * bytes were written; err: the transport's message for "connect failed" /
 * "transfer failed"), frees c and calls sl_infer_done (or only frees it
 * when the request is gone).  c must be detached from its connection. */
void sl__oai_finish(oai_call *c, oai_xfer x, int sent, const char *err);

/* Classifies the response (mode) from its status and Content-Type (NULL =
 * none), as the curl path does on the first body byte. */
void sl__oai_classify(oai_call *c, long code, const char *ctype);

/* Passes len response body bytes on (SSE parser, JSON or error buffer).
 * Returns 0 to go on, 1 when the transfer must stop (the reason is
 * recorded in c->stop*). */
int sl__oai_body(oai_call *c, const char *ptr, size_t len);

/* The first-token limit of c ran out: ends the call. */
void sl__oai_first_token_timeout(oai_call *c);

/* Frees calls whose cancel() came while the shard was busy. */
void sl__oai_reap(oai_shard *ss);

/* ---- native.c ---- */

/* Parses st->endpoint for the native transport and builds the static head
 * (st->auth must be set).  extra: the nh extra headers (validated).
 * Returns SL_OK, SL_EINVAL (a URL the native transport cannot use: the
 * caller may fall back to curl), SL_ENOMEM.  On failure st->nt holds
 * nothing to free. */
int sl__oai_nt_init(oai_state *st, const char *const *extra, size_t nh);
void sl__oai_nt_state_free(oai_state *st);
int sl__oai_nt_start(oai_shard *ss);
/* Starts c (body built, worker data set, linked in ss->calls).  Never ends
 * the call before returning.  Returns SL_OK or SL_ENOMEM (c untouched
 * beyond its own fields: the caller frees it). */
int sl__oai_nt_infer(oai_call *c);
/* Detaches c from the transport: timer, wait lists, connection (closed). */
void sl__oai_nt_detach(oai_call *c);
/* A cancel() deferred while the shard is busy: c leaves the slot and
 * resolver wait lists now (its connection, if any, stays until the reap). */
void sl__oai_nt_park(oai_call *c);
void sl__oai_nt_close(oai_shard *ss);
void sl__oai_nt_stop(oai_shard *ss);

/* Is err (an errno from socket(2)/connect(2)) this process or host running
 * out of something rather than the backend failing? */
static inline int sl__oai_local_errno(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM ||
	       err == EADDRNOTAVAIL;
}

#endif
