/* h1.c - sluice's HTTP/1.1 server layer; see h1.h and
 * docs/internals/http.md ("h1: the HTTP/1.1 layer").
 *
 * A connection (h1_conn) owns a bufferevent for its socket, a read event,
 * one timer and one "deferred work" event; its request (sl_h1_req) is
 * embedded in it, so a keep-alive request costs no allocation.
 *
 * Reading does not go through bufferevent_socket's read path: that one
 * (evbuffer_read) issues an ioctl(FIONREAD) before every readv, one of the
 * three system calls of a keep-alive request, and reads at most 4 KiB per
 * wake-up.  Our own persistent EV_READ event does one recv(2) straight into
 * evbuffer_reserve_space() of the bufferevent's input buffer (measured:
 * see docs/internals/http.md).  The bufferevent does the output: queueing,
 * write watermark (drain), write timeout, write errors.
 *
 * The head is parsed straight from the input buffer (evbuffer_peek /
 * evbuffer_pullup, which do not copy when the head sits in one chain - the
 * usual case), then copied once into the connection's head buffer where
 * the strings are NUL-terminated in place.  Bodies are moved (chains, not bytes, when they
 * line up) into a per-connection evbuffer.  Replies are written with one
 * sendmsg(2) when nothing is queued (no EV_WRITE registration, no copy);
 * only what the socket does not take is queued in the bufferevent.
 *
 * Lifetime: c->busy counts the frames of this file that use c (libevent
 * callbacks, public calls); c->in_owner counts the owner's frames (its
 * callbacks and its sl_h1_reply* calls).  The socket is released at once
 * when the connection ends; the struct is freed when no frame uses it and
 * the owner no longer holds the request.
 *
 * Threading: shard thread only, except the stats (relaxed atomics, single
 * writer).
 */
#include "http/h1.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "http/h1_parse.h"

#define HDRS_INLINE 32
#define READ_CHUNK 16384 /* bytes per recv(2) */
#define ERR_BODY_CAP 4096
#define HEAD_STACK 2048

typedef struct h1_conn h1_conn;

/* Connection states. */
enum {
	ST_HEAD,         /* waiting for / reading a request head */
	ST_BODY_CL,      /* reading a Content-Length body */
	ST_BODY_CHUNKED, /* decoding a chunked body */
	ST_REQ,          /* the owner has the request, no reply yet */
	ST_STREAM,       /* streamed reply started */
	ST_FLUSH_CLOSE,  /* last reply queued: flush, then close */
	ST_LINGER,       /* write side shut: discard input until EOF / timer */
	ST_CLOSED,       /* socket released */
};

struct sl_h1_req {
	h1_conn *c;
	const char *method, *target, *path;
	const char *body;
	size_t body_len;
	uint8_t minor;
	uint8_t is_head;    /* HEAD: headers only */
	uint8_t started;    /* sl_h1_reply_start done */
	uint8_t chunked;    /* streamed reply uses chunked framing */
	uint8_t nobody;     /* reply has no body (HEAD, 204, 304) */
	uint8_t want_drain; /* SL_EAGAIN given, drain callback owed */
	void (*close_fn)(sl_h1_req *r, void *arg);
	void *close_arg;
	void (*drain_fn)(sl_h1_req *r, void *arg);
	void *drain_arg;
};

struct h1_conn {
	sl_h1_server *srv;
	h1_conn *prev, *next; /* srv->conns */
	struct bufferevent *bev; /* output; NULL once the socket is released */
	int queued;              /* 0: bev's output is empty for sure; 1: it may
	                          * hold bytes (conn_send checks, and clears it) */
	evutil_socket_t fd;
	struct event rev;     /* EV_READ|EV_PERSIST on fd (input) */
	struct event timer;
	struct event defer;
	uint64_t deadline;    /* ms (monotonic), 0 = none */
	uint64_t timer_at;    /* when the armed timer fires */
	uint8_t timer_armed;
	uint8_t state;
	uint8_t reading;      /* a request's first byte seen: read deadline on */
	uint8_t read_paused;  /* rev not added (pipelined bytes over the cap) */
	uint8_t processing;   /* inside process() */
	uint8_t req_active;   /* the owner holds c->req */
	uint8_t close_pending;/* close callback deferred to the loop */
	uint8_t close_after;  /* close once the current reply is flushed */
	uint8_t keep_alive;   /* request allows keep-alive */
	uint8_t ka_header;    /* answer "Connection: keep-alive" (HTTP/1.0) */
	uint8_t linger;       /* linger on close (unread input possible) */
	unsigned busy;
	unsigned in_owner;
	/* parsing */
	sl_h1p_head hp;
	sl_h1p_chunked ck;
	uint64_t body_need;   /* Content-Length bytes */
	sl_h1p_hdr *hdrs;     /* hdrs_inline or heap */
	uint32_t hdrs_cap;
	uint32_t n_hdrs;
	char *hbuf;           /* head copy, NUL-terminated pieces + path */
	size_t hcap;
	struct evbuffer *body;
	sl_h1_req req;
	union {
		struct sockaddr sa;
		struct sockaddr_in in4;
		struct sockaddr_in6 in6;
	} peer;
	char peer_str[64];
	sl_h1p_hdr hdrs_inline[HDRS_INLINE];
};

typedef struct h1_stats {
	_Atomic uint64_t accepted, closed, open, requests;
	_Atomic uint64_t e400, e408, e413, e431, e501, e505;
	_Atomic uint64_t idle_timeouts, client_gone, accept_errors;
} h1_stats;

struct sl_h1_server {
	struct event_base *base;
	struct evconnlistener *lis;
	struct event accept_retry; /* after EMFILE & co. */
	int paused, backoff;
	sl_h1_limits lim;
	sl_h1_request_fn on_request;
	sl_h1_error_fn on_error;
	void *arg;
	h1_conn *conns;
	int destroying;
	/* Date header cache: refreshed once per second */
	time_t date_sec;
	char date[48];
	size_t date_len;
	h1_stats st;
};

/* ------------------------------------------------------------ helpers */

static inline void ctr_inc(_Atomic uint64_t *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
	                      memory_order_relaxed);
}

static inline void ctr_dec(_Atomic uint64_t *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - 1,
	                      memory_order_relaxed);
}

static inline uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

const char *sl_h1_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 402: return "Payment Required";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 416: return "Range Not Satisfiable";
	case 417: return "Expectation Failed";
	case 422: return "Unprocessable Content";
	case 425: return "Too Early";
	case 426: return "Upgrade Required";
	case 428: return "Precondition Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 499: return "Client Closed Request";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

/* Decimal of v into p (no NUL); returns the length. */
static size_t put_u64(char *p, uint64_t v)
{
	char t[24];
	size_t n = 0;
	do {
		t[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		p[i] = t[n - 1 - i];
	return n;
}

static size_t put_hex(char *p, uint64_t v)
{
	static const char hx[] = "0123456789abcdef";
	char t[20];
	size_t n = 0;
	do {
		t[n++] = hx[v & 15];
		v >>= 4;
	} while (v);
	for (size_t i = 0; i < n; i++)
		p[i] = t[n - 1 - i];
	return n;
}

/* "Date: <IMF-fixdate>\r\n", formatted at most once per second. */
static void refresh_date(sl_h1_server *s)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	if (ts.tv_sec == s->date_sec && s->date_len)
		return;
	s->date_sec = ts.tv_sec;
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	s->date_len = strftime(s->date, sizeof s->date, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
}

/* ------------------------------------------------------------ timers */

static void arm_timer(h1_conn *c, uint64_t at, uint64_t now)
{
	uint64_t d = at > now ? at - now : 0;
	struct timeval tv = {(time_t)(d / 1000), (suseconds_t)((d % 1000) * 1000)};
	event_add(&c->timer, &tv);
	c->timer_at = at;
	c->timer_armed = 1;
}

/* Sets the connection's deadline (0 = none).  The timer is left armed
 * when it fires earlier than needed (it re-arms itself then), so the
 * keep-alive fast path does no timer operation at all. */
static void set_deadline(h1_conn *c, uint64_t at)
{
	c->deadline = at;
	if (at && (!c->timer_armed || c->timer_at > at))
		arm_timer(c, at, now_ms());
}

/* ------------------------------------------------------------ lifetime */

static void conn_free(h1_conn *c)
{
	sl_h1_server *s = c->srv;
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	event_del(&c->timer);
	event_del(&c->defer);
	if (c->body)
		evbuffer_free(c->body);
	if (c->hdrs != c->hdrs_inline)
		free(c->hdrs);
	free(c->hbuf);
	free(c);
}

static void maybe_free(h1_conn *c)
{
	if (c->state == ST_CLOSED && !c->req_active && c->busy == 0 && c->in_owner == 0)
		conn_free(c);
}

#define ENTER(c) ((c)->busy++)
#define LEAVE(c)                                                           \
	do {                                                               \
		(c)->busy--;                                               \
		maybe_free(c);                                             \
	} while (0)

/* Calls the close callback now (from the loop: no owner frame). */
static void fire_close(h1_conn *c)
{
	sl_h1_req *r = &c->req;
	void (*fn)(sl_h1_req *, void *) = r->close_fn;
	void *arg = r->close_arg;
	c->close_pending = 0;
	r->close_fn = NULL;
	r->drain_fn = NULL;
	if (fn) {
		c->in_owner++;
		fn(r, arg);
		c->in_owner--;
	}
	c->req_active = 0;
	if (c->body)
		evbuffer_drain(c->body, evbuffer_get_length(c->body));
}

/* Releases the socket.  gone: the client went away (the open request, if
 * any, is told through its close callback). */
static void conn_end(h1_conn *c, int gone)
{
	if (c->state == ST_CLOSED)
		return;
	sl_h1_server *s = c->srv;
	c->state = ST_CLOSED;
	event_del(&c->rev);
	if (c->bev) {
		bufferevent_free(c->bev); /* closes the fd */
		c->bev = NULL;
	}
	c->fd = -1;
	event_del(&c->timer);
	c->timer_armed = 0;
	c->deadline = 0;
	ctr_dec(&s->st.open);
	ctr_inc(&s->st.closed);
	if (c->req_active) {
		if (gone)
			ctr_inc(&s->st.client_gone);
		if (c->req.close_fn) {
			if (c->in_owner) {
				/* inside an owner call: tell it from the loop */
				c->close_pending = 1;
				event_active(&c->defer, EV_TIMEOUT, 1);
			} else {
				fire_close(c);
			}
		}
		/* no close callback: the request stays until the owner ends it */
	}
}

/* Queues data (iov) for the client: one sendmsg(2) when nothing is queued,
 * the rest (or all) into the bufferevent.  SL_ECLOSED when the socket is
 * gone, the write failed or queueing ran out of memory (the connection is
 * then ended). */
static int conn_send(h1_conn *c, struct iovec *iov, int niov)
{
	if (!c->bev)
		return SL_ECLOSED;
	/* the flag spares the per-token path the bufferevent's cache lines
	 * while nothing is queued, which is nearly always */
	struct evbuffer *out = NULL;
	if (c->queued) {
		out = bufferevent_get_output(c->bev);
		c->queued = evbuffer_get_length(out) != 0;
	}
	size_t done = 0;
	if (!c->queued) {
		struct msghdr m;
		memset(&m, 0, sizeof m);
		m.msg_iov = iov;
		m.msg_iovlen = (size_t)niov;
		ssize_t w;
		do
			w = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
		while (w < 0 && errno == EINTR);
		if (w < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				conn_end(c, 1);
				return SL_ECLOSED;
			}
			w = 0;
		}
		done = (size_t)w;
	}
	for (int i = 0; i < niov; i++) {
		size_t l = iov[i].iov_len;
		if (done >= l) {
			done -= l;
			continue;
		}
		if (!out)
			out = bufferevent_get_output(c->bev);
		c->queued = 1;
		if (evbuffer_add(out, (char *)iov[i].iov_base + done, l - done) != 0) {
			/* out of memory: the connection is dropped, which the
			 * owner handles like a client that went away */
			conn_end(c, 1);
			return SL_ECLOSED;
		}
		done = 0;
	}
	return SL_OK;
}

static void start_close(h1_conn *c);

/* The current request is over (reply ended, or the owner gave it back). */
static void finish_request(h1_conn *c)
{
	c->req_active = 0;
	c->close_pending = 0;
	c->req.close_fn = NULL;
	c->req.drain_fn = NULL;
	if (c->body)
		evbuffer_drain(c->body, evbuffer_get_length(c->body));
	if (c->state == ST_CLOSED)
		return;
	if (c->close_after || c->srv->destroying) {
		c->state = ST_FLUSH_CLOSE;
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
			start_close(c);
		return;
	}
	c->state = ST_HEAD;
	c->reading = 0;
	sl_h1p_head_init(&c->hp, c->hdrs, c->hdrs_cap);
	if (c->read_paused) {
		c->read_paused = 0;
		event_add(&c->rev, NULL);
	}
	if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
		if (!c->processing)
			event_active(&c->defer, EV_TIMEOUT, 1); /* next request, from the loop */
	} else {
		set_deadline(c, now_ms() + c->srv->lim.idle_timeout_ms);
	}
}

/* The last reply has been flushed. */
static void start_close(h1_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	if (!c->linger && evbuffer_get_length(in) == 0) {
		conn_end(c, 0);
		return;
	}
	/* Lingering close: a close(2) with unread input makes the kernel send
	 * RST, which can destroy the reply before the client reads it. */
	shutdown(c->fd, SHUT_WR);
	c->state = ST_LINGER;
	evbuffer_drain(in, evbuffer_get_length(in));
	if (c->read_paused) {
		c->read_paused = 0;
		event_add(&c->rev, NULL);
	}
	set_deadline(c, now_ms() + SL_H1_LINGER_MS);
}

/* ------------------------------------------------------------ replies */

static int hdr_ok(const char *s, int is_name)
{
	if (!s || (is_name && !*s))
		return 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p == '\r' || *p == '\n' || (is_name && (*p <= ' ' || *p == ':')))
			return 0;
	return 1;
}

/* Framing of a reply head. */
enum { FR_NONE, FR_LENGTH, FR_CHUNKED };

/* Builds the head into a stack buffer or *heap (caller frees); returns its
 * length, 0 on allocation failure, or sets *einval. */
static size_t build_head(h1_conn *c, int status, const struct sl_h1_header *hdrs, size_t n, int framing,
                         uint64_t clen, char *stack, size_t stack_cap, char **heap, int *einval)
{
	sl_h1_server *s = c->srv;
	const char *reason = sl_h1_reason(status);
	size_t need = 32 + strlen(reason) + 48 /* date */ + 48 /* framing */ + 32 /* conn */ + 2;
	int own_date = 1;
	for (size_t i = 0; i < n; i++) {
		const char *nm = hdrs[i].name, *v = hdrs[i].value;
		if (!hdr_ok(nm, 1) || !hdr_ok(v, 0)) {
			*einval = 1;
			return 0;
		}
		need += strlen(nm) + strlen(v) + 4;
	}
	char *p = stack;
	if (need > stack_cap) {
		p = malloc(need);
		if (!p)
			return 0;
		*heap = p;
	}
	size_t o = 0;
	memcpy(p, "HTTP/1.1 ", 9);
	o = 9;
	o += put_u64(p + o, (uint64_t)status);
	p[o++] = ' ';
	size_t rl = strlen(reason);
	memcpy(p + o, reason, rl);
	o += rl;
	p[o++] = '\r';
	p[o++] = '\n';
	for (size_t i = 0; i < n; i++) {
		const char *nm = hdrs[i].name, *v = hdrs[i].value;
		size_t nl = strlen(nm);
		switch (nm[0] | 0x20) {
		case 'c':
			if (strcasecmp(nm, "content-length") == 0)
				continue;
			if (strcasecmp(nm, "connection") == 0) {
				if (strcasecmp(v, "close") == 0)
					c->close_after = 1;
				continue;
			}
			break;
		case 't':
			if (strcasecmp(nm, "transfer-encoding") == 0)
				continue;
			break;
		case 'd':
			if (strcasecmp(nm, "date") == 0)
				own_date = 0;
			break;
		default:
			break;
		}
		memcpy(p + o, nm, nl);
		o += nl;
		p[o++] = ':';
		p[o++] = ' ';
		size_t vl = strlen(v);
		memcpy(p + o, v, vl);
		o += vl;
		p[o++] = '\r';
		p[o++] = '\n';
	}
	if (own_date) {
		refresh_date(s);
		memcpy(p + o, s->date, s->date_len);
		o += s->date_len;
	}
	if (framing == FR_LENGTH) {
		memcpy(p + o, "Content-Length: ", 16);
		o += 16;
		o += put_u64(p + o, clen);
		p[o++] = '\r';
		p[o++] = '\n';
	} else if (framing == FR_CHUNKED) {
		memcpy(p + o, "Transfer-Encoding: chunked\r\n", 28);
		o += 28;
	}
	if (c->close_after || !c->keep_alive || s->destroying) {
		c->close_after = 1;
		memcpy(p + o, "Connection: close\r\n", 19);
		o += 19;
	} else if (c->ka_header) {
		memcpy(p + o, "Connection: keep-alive\r\n", 24);
		o += 24;
	}
	p[o++] = '\r';
	p[o++] = '\n';
	return o;
}

/* Owner-call bracket: the connection must outlive the call. */
#define OWNER_ENTER(c) ((c)->busy++, (c)->in_owner++)
#define OWNER_LEAVE(c)                                                     \
	do {                                                               \
		(c)->in_owner--;                                           \
		(c)->busy--;                                               \
		maybe_free(c);                                             \
	} while (0)

int sl_h1_reply(sl_h1_req *r, int status, const struct sl_h1_header *hdrs, size_t n, const char *body,
                size_t len)
{
	if (!r || status < 200 || status > 999 || (n && !hdrs) || (len && !body))
		return SL_EINVAL;
	h1_conn *c = r->c;
	if (!c->req_active)
		return SL_ESTATE;
	if (r->started)
		return SL_ESTATE;
	OWNER_ENTER(c);
	int rc;
	if (c->state == ST_CLOSED) {
		rc = SL_ECLOSED;
		finish_request(c);
		goto out;
	}
	int nobody = r->is_head || status == 204 || status == 304;
	int framing = (status == 204 || status == 304) ? FR_NONE : FR_LENGTH;
	char stack[HEAD_STACK], *heap = NULL;
	int einval = 0;
	uint8_t ca = c->close_after;
	size_t hl = build_head(c, status, hdrs, n, framing, len, stack, sizeof stack, &heap, &einval);
	if (hl == 0) {
		c->close_after = ca;
		if (einval) {
			rc = SL_EINVAL;
			goto out; /* nothing sent: the request stays open */
		}
		rc = SL_ENOMEM; /* cannot answer: drop the connection */
		conn_end(c, 0);
		finish_request(c);
		goto out;
	}
	struct iovec iov[2] = {{heap ? heap : stack, hl}, {(void *)body, nobody ? 0 : len}};
	rc = conn_send(c, iov, nobody || len == 0 ? 1 : 2);
	free(heap);
	finish_request(c);
out:
	OWNER_LEAVE(c);
	return rc;
}

int sl_h1_reply_start(sl_h1_req *r, int status, const struct sl_h1_header *hdrs, size_t n)
{
	if (!r || status < 200 || status > 999 || (n && !hdrs))
		return SL_EINVAL;
	h1_conn *c = r->c;
	if (!c->req_active || r->started)
		return SL_ESTATE;
	if (c->state == ST_CLOSED)
		return SL_ECLOSED;
	OWNER_ENTER(c);
	int rc;
	int nobody = r->is_head || status == 204 || status == 304;
	int framing = FR_NONE;
	uint8_t ca = c->close_after;
	if (status != 204 && status != 304) {
		if (r->minor == 0)
			c->close_after = 1; /* HTTP/1.0: body delimited by the close */
		else
			framing = FR_CHUNKED;
	}
	char stack[HEAD_STACK], *heap = NULL;
	int einval = 0;
	size_t hl = build_head(c, status, hdrs, n, framing, 0, stack, sizeof stack, &heap, &einval);
	if (hl == 0) {
		c->close_after = ca;
		rc = einval ? SL_EINVAL : SL_ENOMEM;
		goto out;
	}
	r->started = 1;
	r->nobody = (uint8_t)nobody;
	r->chunked = framing == FR_CHUNKED;
	c->state = ST_STREAM;
	struct iovec iov[1] = {{heap ? heap : stack, hl}};
	rc = conn_send(c, iov, 1);
	free(heap);
out:
	OWNER_LEAVE(c);
	return rc;
}

int sl_h1_reply_chunk(sl_h1_req *r, const char *data, size_t len)
{
	if (!r || (len && !data))
		return SL_EINVAL;
	h1_conn *c = r->c;
	if (!c->req_active || !r->started)
		return SL_ESTATE;
	if (c->state == ST_CLOSED)
		return SL_ECLOSED;
	if (len == 0 || r->nobody)
		return SL_OK;
	OWNER_ENTER(c);
	char pre[24];
	size_t pl = 0;
	struct iovec iov[3];
	int niov = 0;
	if (r->chunked) {
		pl = put_hex(pre, len);
		pre[pl++] = '\r';
		pre[pl++] = '\n';
		iov[niov].iov_base = pre;
		iov[niov++].iov_len = pl;
	}
	iov[niov].iov_base = (void *)data;
	iov[niov++].iov_len = len;
	if (r->chunked) {
		iov[niov].iov_base = (void *)"\r\n";
		iov[niov++].iov_len = 2;
	}
	int rc = conn_send(c, iov, niov);
	if (rc == SL_OK && c->queued && c->bev &&
	    evbuffer_get_length(bufferevent_get_output(c->bev)) > c->srv->lim.max_output_buffered) {
		r->want_drain = 1;
		rc = SL_EAGAIN;
	}
	OWNER_LEAVE(c);
	return rc;
}

int sl_h1_reply_end(sl_h1_req *r)
{
	if (!r)
		return SL_EINVAL;
	h1_conn *c = r->c;
	if (!c->req_active || (!r->started && c->state != ST_CLOSED))
		return SL_ESTATE;
	OWNER_ENTER(c);
	int rc = SL_OK;
	if (c->state == ST_CLOSED) {
		rc = SL_ECLOSED;
	} else if (r->chunked && !r->nobody) {
		struct iovec iov[1] = {{(void *)"0\r\n\r\n", 5}};
		rc = conn_send(c, iov, 1);
	}
	finish_request(c);
	OWNER_LEAVE(c);
	return rc;
}

void sl_h1_set_close_cb(sl_h1_req *r, void (*fn)(sl_h1_req *r, void *arg), void *arg)
{
	r->close_fn = fn;
	r->close_arg = arg;
}

void sl_h1_set_drain_cb(sl_h1_req *r, void (*fn)(sl_h1_req *r, void *arg), void *arg)
{
	r->drain_fn = fn;
	r->drain_arg = arg;
}

size_t sl_h1_pending_output(const sl_h1_req *r)
{
	const h1_conn *c = r->c;
	return c->bev ? evbuffer_get_length(bufferevent_get_output(c->bev)) : 0;
}

/* ------------------------------------------------------------ accessors */

const char *sl_h1_method(const sl_h1_req *r)
{
	return r->method;
}

const char *sl_h1_path(const sl_h1_req *r)
{
	return r->path;
}

const char *sl_h1_target(const sl_h1_req *r)
{
	return r->target;
}

const char *sl_h1_header(const sl_h1_req *r, const char *name)
{
	const h1_conn *c = r->c;
	size_t nl = strlen(name);
	for (uint32_t i = 0; i < c->n_hdrs; i++) {
		const sl_h1p_hdr *h = &c->hdrs[i];
		if (h->name_len == nl && strncasecmp(c->hbuf + h->name, name, nl) == 0)
			return c->hbuf + h->value;
	}
	return NULL;
}

size_t sl_h1_header_count(const sl_h1_req *r)
{
	return r->c->n_hdrs;
}

int sl_h1_header_at(const sl_h1_req *r, size_t i, const char **name, const char **value)
{
	const h1_conn *c = r->c;
	if (i >= c->n_hdrs)
		return SL_EINVAL;
	if (name)
		*name = c->hbuf + c->hdrs[i].name;
	if (value)
		*value = c->hbuf + c->hdrs[i].value;
	return SL_OK;
}

const char *sl_h1_body(const sl_h1_req *r, size_t *len)
{
	if (len)
		*len = r->body_len;
	return r->body;
}

const char *sl_h1_peer(const sl_h1_req *r)
{
	h1_conn *c = r->c;
	if (!c->peer_str[0]) {
		char ip[INET6_ADDRSTRLEN];
		if (c->peer.sa.sa_family == AF_INET6) {
			inet_ntop(AF_INET6, &c->peer.in6.sin6_addr, ip, sizeof ip);
			snprintf(c->peer_str, sizeof c->peer_str, "[%s]:%u", ip,
			         (unsigned)ntohs(c->peer.in6.sin6_port));
		} else if (c->peer.sa.sa_family == AF_INET) {
			inet_ntop(AF_INET, &c->peer.in4.sin_addr, ip, sizeof ip);
			snprintf(c->peer_str, sizeof c->peer_str, "%s:%u", ip,
			         (unsigned)ntohs(c->peer.in4.sin_port));
		} else {
			snprintf(c->peer_str, sizeof c->peer_str, "unknown:0");
		}
	}
	return c->peer_str;
}

int sl_h1_http_minor(const sl_h1_req *r)
{
	return r->minor;
}

int sl_h1_keep_alive(const sl_h1_req *r)
{
	const h1_conn *c = r->c;
	return c->keep_alive && !c->close_after && !c->srv->destroying && c->state != ST_CLOSED;
}

sl_h1_server *sl_h1_req_server(const sl_h1_req *r)
{
	return r->c->srv;
}

/* ------------------------------------------------------------ reading */

/* Answers a request the layer refuses (400, 408, 413, 431, 501, 505) and
 * closes the connection once the answer is flushed. */
static void fail_request(h1_conn *c, int status, const char *code, const char *msg)
{
	sl_h1_server *s = c->srv;
	switch (status) {
	case 400: ctr_inc(&s->st.e400); break;
	case 408: ctr_inc(&s->st.e408); break;
	case 413: ctr_inc(&s->st.e413); break;
	case 431: ctr_inc(&s->st.e431); break;
	case 501: ctr_inc(&s->st.e501); break;
	case 505: ctr_inc(&s->st.e505); break;
	default: break;
	}
	char body[ERR_BODY_CAP];
	const char *ctype = "text/plain; charset=utf-8";
	size_t blen;
	if (s->on_error) {
		const char *ct = NULL;
		blen = s->on_error(s->arg, status, code, msg, body, sizeof body, &ct);
		if (blen > sizeof body)
			blen = sizeof body;
		if (ct && hdr_ok(ct, 0))
			ctype = ct;
	} else {
		int k = snprintf(body, sizeof body, "%s\n", msg);
		blen = k < 0 ? 0 : (size_t)k >= sizeof body ? sizeof body - 1 : (size_t)k;
	}
	c->close_after = 1;
	c->keep_alive = 0;
	c->linger = 1;
	struct sl_h1_header h[1] = {{"Content-Type", ctype}};
	char stack[HEAD_STACK], *heap = NULL;
	int einval = 0;
	size_t hl = build_head(c, status, h, 1, FR_LENGTH, blen, stack, sizeof stack, &heap, &einval);
	int is_head = c->state != ST_HEAD && c->req.is_head; /* head parsed: HEAD? */
	c->state = ST_FLUSH_CLOSE;
	c->reading = 0;
	set_deadline(c, now_ms() + SL_H1_LINGER_MS); /* bound on flush + linger */
	if (hl == 0) {
		conn_end(c, 0);
		return;
	}
	struct iovec iov[2] = {{heap ? heap : stack, hl}, {body, blen}};
	int rc = conn_send(c, iov, is_head ? 1 : 2);
	free(heap);
	if (rc == SL_OK && c->bev && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		start_close(c);
}

/* Copies the parsed head into c->hbuf and fills c->req. */
static int take_head(h1_conn *c, const char *p)
{
	sl_h1p_head *h = &c->hp;
	size_t need = (size_t)h->head_len + h->path_len + 3;
	if (need > c->hcap) {
		size_t cap = c->hcap ? c->hcap : 512;
		while (cap < need)
			cap *= 2;
		char *nb = realloc(c->hbuf, cap);
		if (!nb)
			return SL_ENOMEM;
		c->hbuf = nb;
		c->hcap = cap;
	}
	char *b = c->hbuf;
	memcpy(b, p, h->head_len);
	b[h->method + h->method_len] = '\0';
	b[h->target + h->target_len] = '\0';
	for (uint32_t i = 0; i < h->n_hdrs; i++) {
		b[h->hdrs[i].name + h->hdrs[i].name_len] = '\0';
		b[h->hdrs[i].value + h->hdrs[i].value_len] = '\0';
	}
	char *path = b + h->head_len;
	if (h->path_len == 0) {
		path[0] = '/';
		path[1] = '\0';
	} else {
		memcpy(path, b + h->target + h->path_off, h->path_len);
		path[h->path_len] = '\0';
	}
	sl_h1_req *r = &c->req;
	memset(r, 0, sizeof *r);
	r->c = c;
	r->method = b + h->method;
	r->target = b + h->target;
	r->path = path;
	r->body = "";
	r->minor = h->minor;
	r->is_head = h->method_len == 4 && memcmp(r->method, "HEAD", 4) == 0;
	c->n_hdrs = h->n_hdrs;
	c->close_after = 0;
	c->linger = 0;
	if (h->minor == 0) {
		c->keep_alive = h->conn_keepalive && !h->conn_close;
		c->ka_header = c->keep_alive;
	} else {
		c->keep_alive = !h->conn_close;
		c->ka_header = 0;
	}
	if (h->chunked && h->minor == 0)
		c->keep_alive = 0; /* RFC 9112 6.1: faulty framing in 1.0 */
	return SL_OK;
}

static void dispatch(h1_conn *c)
{
	sl_h1_server *s = c->srv;
	sl_h1_req *r = &c->req;
	if (c->body && evbuffer_get_length(c->body)) {
		r->body_len = evbuffer_get_length(c->body);
		evbuffer_add(c->body, "", 1); /* NUL after the body */
		const char *b = (const char *)evbuffer_pullup(c->body, -1);
		if (!b) {
			fail_request(c, 500, "internal_error", "out of memory");
			return;
		}
		r->body = b;
	}
	c->state = ST_REQ;
	c->reading = 0;
	c->deadline = 0; /* no timeout while the reply is produced */
	c->req_active = 1;
	ctr_inc(&s->st.requests);
	c->in_owner++;
	s->on_request(r, s->arg);
	c->in_owner--;
}

static int body_sink(void *arg, const char *data, size_t len)
{
	return evbuffer_add((struct evbuffer *)arg, data, len);
}

/* The current request needs more bytes: its read deadline starts now if it
 * has not yet. */
static void await_more(h1_conn *c)
{
	if (!c->reading) {
		c->reading = 1;
		set_deadline(c, now_ms() + c->srv->lim.read_timeout_ms);
	}
}

static int ensure_body_buf(h1_conn *c)
{
	if (!c->body)
		c->body = evbuffer_new();
	return c->body ? SL_OK : SL_ENOMEM;
}

/* Reads requests from the input buffer as far as it goes. */
static void process(h1_conn *c)
{
	if (c->processing)
		return;
	c->processing = 1;
	sl_h1_server *s = c->srv;
	while (c->bev) {
		struct evbuffer *in = bufferevent_get_input(c->bev);
		size_t len = evbuffer_get_length(in);
		if (c->state == ST_HEAD) {
			if (len == 0)
				break;
			size_t lim = len < s->lim.max_headers ? len : s->lim.max_headers;
			struct evbuffer_iovec v;
			const char *p;
			size_t n;
			int rc;
			if (evbuffer_peek(in, -1, NULL, &v, 1) >= 1 && v.iov_len > c->hp.pos) {
				/* first chain: no copy */
				p = v.iov_base;
				n = v.iov_len < lim ? v.iov_len : lim;
				rc = sl_h1p_head_feed(&c->hp, p, n, s->lim.max_headers);
			} else {
				p = NULL;
				n = 0;
				rc = SL_H1P_MORE;
			}
			if (rc == SL_H1P_MORE && n < lim) {
				/* the head spans chains: make it contiguous */
				p = (const char *)evbuffer_pullup(in, (ssize_t)lim);
				if (!p) {
					fail_request(c, 500, "internal_error", "out of memory");
					break;
				}
				n = lim;
				rc = sl_h1p_head_feed(&c->hp, p, n, s->lim.max_headers);
			}
			if (rc == SL_H1P_MORE) {
				await_more(c);
				break;
			}
			if (rc == SL_H1P_ERROR) {
				if (c->hp.err_status == 431 && c->hdrs_cap < SL_H1_MAX_HEADER_FIELDS &&
				    c->hp.n_hdrs >= c->hp.hdrs_cap) {
					/* grow the header index and parse again */
					uint32_t ncap = c->hdrs_cap * 2;
					if (ncap > SL_H1_MAX_HEADER_FIELDS)
						ncap = SL_H1_MAX_HEADER_FIELDS;
					sl_h1p_hdr *nh = malloc(ncap * sizeof *nh);
					if (!nh) {
						fail_request(c, 500, "internal_error", "out of memory");
						break;
					}
					if (c->hdrs != c->hdrs_inline)
						free(c->hdrs);
					c->hdrs = nh;
					c->hdrs_cap = ncap;
					sl_h1p_head_init(&c->hp, c->hdrs, c->hdrs_cap);
					continue;
				}
				fail_request(c, c->hp.err_status, c->hp.err_code, c->hp.err_msg);
				break;
			}
			/* SL_H1P_DONE */
			if (take_head(c, p) != SL_OK) {
				fail_request(c, 500, "internal_error", "out of memory");
				break;
			}
			evbuffer_drain(in, c->hp.head_len);
			sl_h1p_head *h = &c->hp;
			if (h->has_cl && h->content_length > s->lim.max_body) {
				c->state = ST_BODY_CL; /* head parsed (HEAD-aware reply) */
				fail_request(c, 413, "body_too_large", "request body is too large");
				break;
			}
			int body = (h->has_cl && h->content_length > 0) || h->chunked;
			if (!body) {
				dispatch(c);
				continue;
			}
			if (ensure_body_buf(c) != SL_OK) {
				fail_request(c, 500, "internal_error", "out of memory");
				break;
			}
			if (h->chunked) {
				c->state = ST_BODY_CHUNKED;
				sl_h1p_chunked_init(&c->ck, s->lim.max_body, s->lim.max_headers);
			} else {
				c->state = ST_BODY_CL;
				c->body_need = h->content_length;
			}
			if (h->expect_continue && evbuffer_get_length(in) == 0) {
				struct iovec iov[1] = {{(void *)"HTTP/1.1 100 Continue\r\n\r\n", 25}};
				if (conn_send(c, iov, 1) != SL_OK)
					break;
			}
			continue;
		}
		if (c->state == ST_BODY_CL) {
			if (len < c->body_need) {
				await_more(c);
				break;
			}
			/* Copied, not moved: evbuffer_remove_buffer would hand the
			 * body over with the read chain it sits in (READ_CHUNK
			 * rounded up, 32 KiB), kept for the whole request -- per
			 * held-open stream.  A copy costs a chain of the body's size
			 * and lets the read chain go. */
			struct evbuffer_iovec v;
			size_t bn = (size_t)c->body_need;
			if (evbuffer_reserve_space(c->body, (ev_ssize_t)(bn + 1), &v, 1) < 1 ||
			    evbuffer_copyout(in, v.iov_base, bn) != (ev_ssize_t)bn) {
				fail_request(c, 500, "internal_error", "out of memory");
				break;
			}
			v.iov_len = bn;
			evbuffer_commit_space(c->body, &v, 1);
			evbuffer_drain(in, bn);
			dispatch(c);
			continue;
		}
		if (c->state == ST_BODY_CHUNKED) {
			if (len == 0) {
				await_more(c);
				break;
			}
			struct evbuffer_iovec v[8];
			int nv = evbuffer_peek(in, -1, NULL, v, 8);
			if (nv > 8)
				nv = 8;
			size_t consumed = 0;
			int rc = SL_H1P_MORE;
			for (int i = 0; i < nv && rc == SL_H1P_MORE; i++) {
				size_t used = 0;
				rc = sl_h1p_chunked_feed(&c->ck, v[i].iov_base, v[i].iov_len, &used,
				                         body_sink, c->body);
				consumed += used;
			}
			if (rc == SL_H1P_ERROR) {
				fail_request(c, c->ck.err_status, c->ck.err_code, c->ck.err_msg);
				break;
			}
			evbuffer_drain(in, consumed);
			if (rc == SL_H1P_DONE) {
				dispatch(c);
				continue;
			}
			if (evbuffer_get_length(in) > 0)
				continue; /* more than 8 chains */
			await_more(c);
			break;
		}
		break; /* a request is open, or closing */
	}
	c->processing = 0;
}

/* ------------------------------------------------------------ callbacks */

/* New input arrived. */
static void on_input(h1_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	switch (c->state) {
	case ST_HEAD:
	case ST_BODY_CL:
	case ST_BODY_CHUNKED:
		process(c);
		break;
	case ST_REQ:
	case ST_STREAM:
		/* Keep reading to see EOF, but buffer at most max_headers of
		 * the next request(s); past that, stop reading. */
		if (evbuffer_get_length(in) >= c->srv->lim.max_headers && !c->read_paused) {
			c->read_paused = 1;
			event_del(&c->rev);
		}
		break;
	default: /* FLUSH_CLOSE, LINGER: discard */
		evbuffer_drain(in, evbuffer_get_length(in));
		break;
	}
}

static void rev_cb(evutil_socket_t fd, short what, void *arg)
{
	h1_conn *c = arg;
	(void)what;
	ENTER(c);
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t want = READ_CHUNK;
	if (c->state == ST_REQ || c->state == ST_STREAM) {
		/* a request is open: read only up to the cap on what is kept */
		size_t have = evbuffer_get_length(in), cap = c->srv->lim.max_headers;
		want = have < cap ? cap - have : 1;
		if (want > READ_CHUNK)
			want = READ_CHUNK;
	}
	struct evbuffer_iovec v;
	if (evbuffer_reserve_space(in, (ev_ssize_t)want, &v, 1) < 1) {
		conn_end(c, c->req_active);
		goto out;
	}
	if (v.iov_len > want)
		v.iov_len = want;
	ssize_t n;
	do
		n = recv(fd, v.iov_base, v.iov_len, 0);
	while (n < 0 && errno == EINTR);
	if (n > 0) {
		v.iov_len = (size_t)n;
		evbuffer_commit_space(in, &v, 1);
		on_input(c);
	} else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
		conn_end(c, c->req_active); /* EOF, reset or error */
	}
out:
	LEAVE(c);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	h1_conn *c = arg;
	ENTER(c);
	size_t pending = evbuffer_get_length(bufferevent_get_output(bev));
	if (c->state == ST_FLUSH_CLOSE) {
		if (pending == 0)
			start_close(c);
	} else if (c->req_active && c->req.want_drain &&
	           pending <= c->srv->lim.max_output_buffered / 2) {
		sl_h1_req *r = &c->req;
		r->want_drain = 0;
		if (r->drain_fn) {
			c->in_owner++;
			r->drain_fn(r, r->drain_arg);
			c->in_owner--;
		}
	}
	LEAVE(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	h1_conn *c = arg;
	(void)bev;
	if (what & BEV_EVENT_CONNECTED)
		return;
	ENTER(c);
	/* EOF, read/write error, or no write progress for idle_timeout_ms */
	int gone = c->req_active;
	conn_end(c, gone);
	LEAVE(c);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	h1_conn *c = arg;
	(void)fd;
	(void)what;
	c->timer_armed = 0;
	if (c->deadline == 0 || c->state == ST_CLOSED)
		return;
	uint64_t now = now_ms();
	if (now < c->deadline) {
		arm_timer(c, c->deadline, now);
		return;
	}
	ENTER(c);
	c->deadline = 0;
	switch (c->state) {
	case ST_HEAD:
		if (c->reading) {
			fail_request(c, 408, "read_timeout", "request not received in time");
		} else {
			ctr_inc(&c->srv->st.idle_timeouts);
			conn_end(c, 0);
		}
		break;
	case ST_BODY_CL:
	case ST_BODY_CHUNKED:
		fail_request(c, 408, "read_timeout", "request not received in time");
		break;
	case ST_FLUSH_CLOSE:
	case ST_LINGER:
		conn_end(c, 0);
		break;
	default: /* REQ, STREAM: no timeout */
		break;
	}
	LEAVE(c);
}

static void defer_cb(evutil_socket_t fd, short what, void *arg)
{
	h1_conn *c = arg;
	(void)fd;
	(void)what;
	ENTER(c);
	if (c->close_pending && c->req_active)
		fire_close(c);
	else if (c->state == ST_HEAD)
		process(c);
	LEAVE(c);
}

/* ------------------------------------------------------------ accepting */

static void conn_new(sl_h1_server *s, evutil_socket_t fd, const struct sockaddr *sa, int salen)
{
	h1_conn *c = calloc(1, sizeof *c);
	if (!c) {
		close(fd);
		ctr_inc(&s->st.accept_errors);
		return;
	}
	c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		close(fd);
		free(c);
		ctr_inc(&s->st.accept_errors);
		return;
	}
	c->srv = s;
	c->fd = fd;
	c->hdrs = c->hdrs_inline;
	c->hdrs_cap = HDRS_INLINE;
	if (sa && salen > 0 && (size_t)salen <= sizeof c->peer)
		memcpy(&c->peer, sa, (size_t)salen);
	event_assign(&c->timer, s->base, -1, 0, timer_cb, c);
	event_assign(&c->defer, s->base, -1, 0, defer_cb, c);
	sl_h1p_head_init(&c->hp, c->hdrs, c->hdrs_cap);
	c->state = ST_HEAD;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	ctr_inc(&s->st.accepted);
	ctr_inc(&s->st.open);

	bufferevent_setcb(c->bev, NULL, write_cb, event_cb, c);
	bufferevent_setwatermark(c->bev, EV_WRITE, s->lim.max_output_buffered / 2, 0);
	/* A client that reads nothing while output is pending is cut after
	 * idle_timeout_ms without progress (bufferevent write timeout). */
	struct timeval wto = {(time_t)(s->lim.idle_timeout_ms / 1000),
	                      (suseconds_t)((s->lim.idle_timeout_ms % 1000) * 1000)};
	bufferevent_set_timeouts(c->bev, NULL, &wto);
	bufferevent_enable(c->bev, EV_WRITE);
	/* bufferevent_socket keeps its input's end frozen except during its
	 * own reads; here we are the reader. */
	evbuffer_unfreeze(bufferevent_get_input(c->bev), 0);
	event_assign(&c->rev, s->base, fd, EV_READ | EV_PERSIST, rev_cb, c);
	event_add(&c->rev, NULL);
	/* A connection that sends nothing is closed after read_timeout_ms. */
	set_deadline(c, now_ms() + s->lim.read_timeout_ms);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
	(void)l;
	sl_h1_server *s = arg;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	conn_new(s, fd, sa, salen);
}

static void accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	sl_h1_server *s = arg;
	s->backoff = 0;
	if (!s->paused)
		evconnlistener_enable(s->lis);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	sl_h1_server *s = arg;
	int e = EVUTIL_SOCKET_ERROR();
	ctr_inc(&s->st.accept_errors);
	if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
		/* out of descriptors: the listener would spin; back off 100 ms */
		evconnlistener_disable(l);
		s->backoff = 1;
		struct timeval tv = {0, 100000};
		event_add(&s->accept_retry, &tv);
	}
}

/* ------------------------------------------------------------ server */

int sl_h1_server_create(struct event_base *base, int listen_fd, const sl_h1_limits *lim,
                        sl_h1_request_fn on_request, sl_h1_error_fn on_error, void *arg,
                        sl_h1_server **out)
{
	if (!base || listen_fd < 0 || !on_request || !out) {
		if (listen_fd >= 0)
			close(listen_fd);
		return SL_EINVAL;
	}
	sl_h1_server *s = calloc(1, sizeof *s);
	if (!s) {
		close(listen_fd);
		return SL_ENOMEM;
	}
	if (lim)
		s->lim = *lim;
	if (!s->lim.max_headers)
		s->lim.max_headers = SL_H1_DEFAULT_MAX_HEADERS;
	if (s->lim.max_headers < 64)
		s->lim.max_headers = 64;
	if (!s->lim.max_body)
		s->lim.max_body = SL_H1_DEFAULT_MAX_BODY;
	if (!s->lim.read_timeout_ms)
		s->lim.read_timeout_ms = SL_H1_DEFAULT_READ_TIMEOUT_MS;
	if (!s->lim.idle_timeout_ms)
		s->lim.idle_timeout_ms = SL_H1_DEFAULT_IDLE_TIMEOUT_MS;
	if (!s->lim.max_output_buffered)
		s->lim.max_output_buffered = SL_H1_DEFAULT_MAX_OUTPUT;
	s->base = base;
	s->on_request = on_request;
	s->on_error = on_error;
	s->arg = arg;
	event_assign(&s->accept_retry, base, -1, 0, accept_retry_cb, s);
	/* backlog 0: the caller's listen() backlog stays (-1 would re-listen
	 * with libevent's 128, which resets connections in a connect storm) */
	s->lis = evconnlistener_new(base, accept_cb, s, LEV_OPT_CLOSE_ON_FREE, 0, listen_fd);
	if (!s->lis) {
		close(listen_fd);
		free(s);
		return SL_ESYS;
	}
	evconnlistener_set_error_cb(s->lis, accept_error_cb);
	*out = s;
	return SL_OK;
}

void sl_h1_server_destroy(sl_h1_server *s)
{
	if (!s)
		return;
	s->destroying = 1;
	evconnlistener_free(s->lis);
	event_del(&s->accept_retry);
	/* Requests still open learn it first; then every connection goes. */
	for (h1_conn *c = s->conns; c; c = c->next) {
		if (c->req_active && c->req.close_fn) {
			c->busy++;
			conn_end(c, 1);
			if (c->req_active) /* deferred (destroy from inside a call) */
				fire_close(c);
			c->busy--;
		}
	}
	while (s->conns) {
		h1_conn *c = s->conns;
		event_del(&c->rev);
		if (c->bev) {
			bufferevent_free(c->bev);
			c->bev = NULL;
		}
		conn_free(c);
	}
	free(s);
}

void sl_h1_server_pause_accept(sl_h1_server *s)
{
	if (!s || s->paused)
		return;
	s->paused = 1;
	evconnlistener_disable(s->lis);
}

void sl_h1_server_resume_accept(sl_h1_server *s)
{
	if (!s || !s->paused)
		return;
	s->paused = 0;
	if (!s->backoff)
		evconnlistener_enable(s->lis);
}

uint64_t sl_h1_server_connections(const sl_h1_server *s)
{
	return s ? atomic_load_explicit(&s->st.open, memory_order_relaxed) : 0;
}

void sl_h1_server_stats(const sl_h1_server *s, sl_h1_stats *o)
{
	memset(o, 0, sizeof *o);
	if (!s)
		return;
#define LD(f) atomic_load_explicit(&s->st.f, memory_order_relaxed)
	o->accepted = LD(accepted);
	o->closed = LD(closed);
	o->open = LD(open);
	o->requests = LD(requests);
	o->err_400 = LD(e400);
	o->err_408 = LD(e408);
	o->err_413 = LD(e413);
	o->err_431 = LD(e431);
	o->err_501 = LD(e501);
	o->err_505 = LD(e505);
	o->idle_timeouts = LD(idle_timeouts);
	o->client_gone = LD(client_gone);
	o->accept_errors = LD(accept_errors);
#undef LD
}
