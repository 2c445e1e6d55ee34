/* test_h1.c - the HTTP/1.1 server layer (src/http/h1.h) over real sockets
 * on 127.0.0.1: the server's event loop runs in a thread, the test talks
 * to it with blocking sockets.  The parser alone is also tested here
 * (h1_parse.h), byte by byte.
 *
 * Handler routes (all on the loop thread):
 *   /echo      200, body = request body, X-Method/X-Path/X-Target/X-Foo/X-Peer
 *   /stream?n=N&ms=M  chunked reply, one chunk every M ms, N chunks
 *   /bp?total=B       chunked reply of B bytes in 16 KiB chunks, honouring
 *                     SL_EAGAIN + drain callback (backpressure)
 *   /async?ms=M       200 after M ms (close callback set)
 *   /late?ms=M        200 after M ms, no close callback (client may be gone)
 *   /close            200 with the handler's "Connection: close"
 *   /status?code=C    empty reply with status C
 *   anything else     200 "hello"
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include <cmocka.h>

#include "http/h1.h"
#include "http/h1_parse.h"

/* Sanitizers slow everything; timing bounds are multiplied by this. */
static int slow = 1;

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* ================================================================ server */

typedef struct srv {
	struct event_base *base;
	sl_h1_server *h1;
	pthread_t th;
	int port;
	pthread_mutex_t mx;
	pthread_cond_t cv;
	/* observations (under mx) */
	int closes;          /* close callbacks fired */
	uint64_t close_ms;   /* when the last one fired */
	int eagain;          /* SL_EAGAIN seen by /bp */
	int drains;          /* drain callbacks */
	uint64_t bp_sent;
	int bp_done;
	int late_done, late_rc;
	int requests;
} srv;

static void obs_update(srv *S, void (*fn)(srv *S, void *a), void *a)
{
	pthread_mutex_lock(&S->mx);
	fn(S, a);
	pthread_cond_broadcast(&S->cv);
	pthread_mutex_unlock(&S->mx);
}

/* Reads an int field under the lock. */
static int obs_get(srv *S, const int *field)
{
	pthread_mutex_lock(&S->mx);
	int v = *field;
	pthread_mutex_unlock(&S->mx);
	return v;
}

/* Waits until *field >= want or timeout; returns the value. */
static int obs_wait(srv *S, const int *field, int want, int timeout_ms)
{
	uint64_t end = mono_ms() + (uint64_t)timeout_ms;
	pthread_mutex_lock(&S->mx);
	while (*field < want) {
		uint64_t now = mono_ms();
		if (now >= end)
			break;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t d = end - now;
		if (d > 20)
			d = 20;
		ts.tv_nsec += (long)d * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&S->cv, &S->mx, &ts);
	}
	int v = *field;
	pthread_mutex_unlock(&S->mx);
	return v;
}

static long qparam(const char *target, const char *name, long dflt)
{
	char key[32];
	snprintf(key, sizeof key, "%s=", name);
	const char *q = strchr(target, '?');
	if (!q)
		return dflt;
	const char *p = strstr(q, key);
	return p ? strtol(p + strlen(key), NULL, 10) : dflt;
}

/* --- /stream */
typedef struct stream {
	srv *S;
	sl_h1_req *r;
	struct event *tm;
	int i, n, ms;
} stream;

static void rec_close(srv *S, void *a)
{
	(void)a;
	S->closes++;
	S->close_ms = mono_ms();
}

static void stream_closed(sl_h1_req *r, void *arg)
{
	(void)r;
	stream *st = arg;
	obs_update(st->S, rec_close, NULL);
	event_free(st->tm);
	free(st);
}

static void stream_tick(evutil_socket_t fd, short w, void *arg)
{
	(void)fd;
	(void)w;
	stream *st = arg;
	char line[64];
	int l = snprintf(line, sizeof line, "chunk %d\n", st->i);
	int rc = sl_h1_reply_chunk(st->r, line, (size_t)l);
	if (rc == SL_ECLOSED)
		return; /* the close callback follows */
	if (++st->i >= st->n) {
		sl_h1_reply_end(st->r);
		event_free(st->tm);
		free(st);
		return;
	}
	struct timeval tv = {st->ms / 1000, (st->ms % 1000) * 1000};
	event_add(st->tm, &tv);
}

/* --- /bp */
typedef struct bp {
	srv *S;
	sl_h1_req *r;
	uint64_t total, sent;
} bp;

static void rec_eagain(srv *S, void *a)
{
	S->eagain++;
	S->bp_sent = *(uint64_t *)a;
}
static void rec_drain(srv *S, void *a)
{
	(void)a;
	S->drains++;
}
static void rec_bp_done(srv *S, void *a)
{
	S->bp_sent = *(uint64_t *)a;
	S->bp_done = 1;
}

static void bp_pump(bp *b)
{
	static char block[16384];
	if (block[0] != 'x')
		memset(block, 'x', sizeof block);
	while (b->sent < b->total) {
		size_t n = sizeof block;
		if (n > b->total - b->sent)
			n = (size_t)(b->total - b->sent);
		int rc = sl_h1_reply_chunk(b->r, block, n);
		if (rc == SL_ECLOSED)
			return;
		b->sent += n;
		if (rc == SL_EAGAIN) {
			obs_update(b->S, rec_eagain, &b->sent);
			return; /* wait for the drain callback */
		}
		assert_int_equal(rc, SL_OK);
	}
	obs_update(b->S, rec_bp_done, &b->sent);
	sl_h1_reply_end(b->r);
	free(b);
}

static void bp_drain(sl_h1_req *r, void *arg)
{
	(void)r;
	bp *b = arg;
	obs_update(b->S, rec_drain, NULL);
	bp_pump(b);
}

static void bp_closed(sl_h1_req *r, void *arg)
{
	(void)r;
	bp *b = arg;
	obs_update(b->S, rec_close, NULL);
	free(b);
}

/* --- /async, /late */
typedef struct later {
	srv *S;
	sl_h1_req *r;
	struct event *tm;
	int with_close;
	char body[64];
} later;

static void rec_late(srv *S, void *a)
{
	S->late_rc = *(int *)a;
	S->late_done++;
}

static void later_closed(sl_h1_req *r, void *arg)
{
	(void)r;
	later *l = arg;
	obs_update(l->S, rec_close, NULL);
	event_free(l->tm);
	free(l);
}

static void later_fire(evutil_socket_t fd, short w, void *arg)
{
	(void)fd;
	(void)w;
	later *l = arg;
	int rc = sl_h1_reply(l->r, 200, NULL, 0, l->body, strlen(l->body));
	if (!l->with_close)
		obs_update(l->S, rec_late, &rc);
	event_free(l->tm);
	free(l);
}

static void rec_req(srv *S, void *a)
{
	(void)a;
	S->requests++;
}

static void on_request(sl_h1_req *r, void *arg)
{
	srv *S = arg;
	const char *path = sl_h1_path(r);
	const char *target = sl_h1_target(r);
	obs_update(S, rec_req, NULL);
	if (!strcmp(path, "/echo")) {
		size_t bl;
		const char *body = sl_h1_body(r, &bl);
		assert_int_equal(body[bl], '\0');
		const char *foo = sl_h1_header(r, "foo");
		char cl[32];
		snprintf(cl, sizeof cl, "%zu", bl);
		struct sl_h1_header h[] = {
			{"X-Method", sl_h1_method(r)}, {"X-Path", path},   {"X-Target", target},
			{"X-Foo", foo ? foo : "(none)"}, {"X-Peer", sl_h1_peer(r)}, {"X-Len", cl},
		};
		assert_int_equal(sl_h1_reply(r, 200, h, 6, body, bl), SL_OK);
	} else if (!strcmp(path, "/stream")) {
		stream *st = calloc(1, sizeof *st);
		st->S = S;
		st->r = r;
		st->n = (int)qparam(target, "n", 5);
		st->ms = (int)qparam(target, "ms", 50);
		st->tm = evtimer_new(S->base, stream_tick, st);
		sl_h1_set_close_cb(r, stream_closed, st);
		struct sl_h1_header h[] = {{"Content-Type", "text/event-stream"}};
		assert_int_equal(sl_h1_reply_start(r, 200, h, 1), SL_OK);
		struct timeval tv = {0, 0};
		event_add(st->tm, &tv);
	} else if (!strcmp(path, "/bp")) {
		bp *b = calloc(1, sizeof *b);
		b->S = S;
		b->r = r;
		b->total = (uint64_t)qparam(target, "total", 1 << 20);
		sl_h1_set_close_cb(r, bp_closed, b);
		sl_h1_set_drain_cb(r, bp_drain, b);
		assert_int_equal(sl_h1_reply_start(r, 200, NULL, 0), SL_OK);
		bp_pump(b);
	} else if (!strcmp(path, "/async") || !strcmp(path, "/late")) {
		later *l = calloc(1, sizeof *l);
		l->S = S;
		l->r = r;
		l->with_close = !strcmp(path, "/async");
		snprintf(l->body, sizeof l->body, "%s", target);
		l->tm = evtimer_new(S->base, later_fire, l);
		if (l->with_close)
			sl_h1_set_close_cb(r, later_closed, l);
		long ms = qparam(target, "ms", 50);
		struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
		event_add(l->tm, &tv);
	} else if (!strcmp(path, "/close")) {
		struct sl_h1_header h[] = {{"Connection", "close"}};
		assert_int_equal(sl_h1_reply(r, 200, h, 1, "bye", 3), SL_OK);
	} else if (!strcmp(path, "/status")) {
		int code = (int)qparam(target, "code", 204);
		assert_int_equal(sl_h1_reply(r, code, NULL, 0, "", 0), SL_OK);
	} else if (!strcmp(path, "/badhdr")) {
		struct sl_h1_header h[] = {{"X-Evil", "a\r\nSet-Cookie: x"}};
		assert_int_equal(sl_h1_reply(r, 200, h, 1, "", 0), SL_EINVAL);
		assert_int_equal(sl_h1_reply(r, 200, NULL, 0, "ok", 2), SL_OK);
	} else {
		assert_int_equal(sl_h1_reply(r, 200, NULL, 0, "hello", 5), SL_OK);
	}
}

static size_t json_error(void *arg, int status, const char *code, const char *message, char *buf,
                         size_t cap, const char **content_type)
{
	(void)arg;
	*content_type = "application/json";
	int n = snprintf(buf, cap,
	                 "{\"error\":{\"message\":\"%s\",\"type\":\"invalid_request_error\","
	                 "\"param\":null,\"code\":\"%s\",\"status\":%d}}",
	                 message, code, status);
	return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

static void *loop_main(void *arg)
{
	srv *S = arg;
	event_base_loop(S->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

/* Runs fn(arg) on the loop thread and waits for it. */
typedef struct job {
	void (*fn)(srv *S, void *arg);
	srv *S;
	void *arg;
	pthread_mutex_t mx;
	pthread_cond_t cv;
	int done;
} job;

static void job_cb(evutil_socket_t fd, short w, void *arg)
{
	(void)fd;
	(void)w;
	job *j = arg;
	j->fn(j->S, j->arg);
	pthread_mutex_lock(&j->mx);
	j->done = 1;
	pthread_cond_signal(&j->cv);
	pthread_mutex_unlock(&j->mx);
}

static void on_loop(srv *S, void (*fn)(srv *S, void *arg), void *arg)
{
	job j = {fn, S, arg, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
	struct timeval tv = {0, 0};
	assert_int_equal(event_base_once(S->base, -1, EV_TIMEOUT, job_cb, &j, &tv), 0);
	pthread_mutex_lock(&j.mx);
	while (!j.done)
		pthread_cond_wait(&j.cv, &j.mx);
	pthread_mutex_unlock(&j.mx);
	pthread_mutex_destroy(&j.mx);
	pthread_cond_destroy(&j.cv);
}

static srv *srv_start(const sl_h1_limits *lim, int with_err_fn)
{
	srv *S = calloc(1, sizeof *S);
	pthread_mutex_init(&S->mx, NULL);
	pthread_cond_init(&S->cv, NULL);
	S->base = event_base_new();
	assert_non_null(S->base);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(fd, 128), 0);
	socklen_t al = sizeof a;
	getsockname(fd, (struct sockaddr *)&a, &al);
	S->port = ntohs(a.sin_port);
	assert_int_equal(sl_h1_server_create(S->base, fd, lim, on_request,
	                                     with_err_fn ? json_error : NULL, S, &S->h1),
	                 SL_OK);
	assert_int_equal(pthread_create(&S->th, NULL, loop_main, S), 0);
	return S;
}

static void do_destroy(srv *S, void *a)
{
	(void)a;
	sl_h1_server_destroy(S->h1);
	S->h1 = NULL;
}

static void srv_stop(srv *S)
{
	on_loop(S, do_destroy, NULL);
	event_base_loopbreak(S->base);
	pthread_join(S->th, NULL);
	event_base_free(S->base);
	pthread_mutex_destroy(&S->mx);
	pthread_cond_destroy(&S->cv);
	free(S);
}

static void get_stats(srv *S, void *a)
{
	sl_h1_server_stats(S->h1, a);
}

/* ================================================================ client */

typedef struct cli {
	int fd;
	size_t len;
	char buf[1 << 16];
} cli;

static cli *cli_open(int port, int rcvbuf)
{
	cli *c = calloc(1, sizeof *c);
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(c->fd >= 0);
	if (rcvbuf)
		setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	struct timeval tv = {5 * slow, 0};
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof a), 0);
	return c;
}

static void cli_close(cli *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

static void cli_send(cli *c, const void *p, size_t n)
{
	const char *s = p;
	while (n) {
		ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
		assert_true(w > 0);
		s += w;
		n -= (size_t)w;
	}
}

static void cli_sends(cli *c, const char *s)
{
	cli_send(c, s, strlen(s));
}

/* Reads more bytes; returns what recv returned. */
static ssize_t cli_fill(cli *c)
{
	if (c->len == sizeof c->buf)
		return -1;
	ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
	if (n > 0)
		c->len += (size_t)n;
	return n;
}

static void cli_consume(cli *c, size_t n)
{
	memmove(c->buf, c->buf + n, c->len - n);
	c->len -= n;
}

/* 1 if the server closed the connection (EOF or reset) within ms. */
static int cli_closed_within(cli *c, int ms)
{
	struct pollfd p = {c->fd, POLLIN, 0};
	uint64_t end = mono_ms() + (uint64_t)ms;
	for (;;) {
		uint64_t now = mono_ms();
		if (now >= end)
			return 0;
		if (poll(&p, 1, (int)(end - now)) <= 0)
			return 0;
		char b[4096];
		ssize_t n = recv(c->fd, b, sizeof b, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return 1;
		if (n < 0 && errno != EAGAIN)
			return 1;
	}
}

/* 1 if some bytes arrive within ms. */
static int cli_readable_within(cli *c, int ms)
{
	if (c->len)
		return 1;
	struct pollfd p = {c->fd, POLLIN, 0};
	return poll(&p, 1, ms) > 0;
}

typedef struct resp {
	int status;
	int chunked;
	int nchunks;
	uint64_t first_chunk_ms, last_chunk_ms;
	size_t body_len;  /* total, even past sizeof body */
	char head[8192];
	char body[1 << 16];
} resp;

static const char *resp_hdr(const resp *r, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name);
	const char *p = strstr(r->head, "\r\n");
	while (p && p[2] && !(p[2] == '\r')) {
		const char *line = p + 2;
		if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
			const char *v = line + nl + 1;
			while (*v == ' ')
				v++;
			const char *e = strstr(v, "\r\n");
			size_t l = (size_t)(e - v);
			if (l >= cap)
				l = cap - 1;
			memcpy(out, v, l);
			out[l] = '\0';
			return out;
		}
		p = strstr(line, "\r\n");
	}
	return NULL;
}

static int cli_read_head(cli *c, resp *r)
{
	memset(r, 0, offsetof(resp, head));
	r->head[0] = '\0';
	r->body[0] = '\0';
	for (;;) {
		char *e = c->len ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL;
		if (e) {
			size_t hl = (size_t)(e - c->buf) + 4;
			assert_true(hl < sizeof r->head);
			memcpy(r->head, c->buf, hl);
			r->head[hl] = '\0';
			cli_consume(c, hl);
			if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1)
				return -1;
			char v[64];
			r->chunked = resp_hdr(r, "Transfer-Encoding", v, sizeof v) &&
			             strcasecmp(v, "chunked") == 0;
			return 0;
		}
		if (cli_fill(c) <= 0)
			return -1;
	}
}

static void body_add(resp *r, const char *p, size_t n)
{
	size_t room = sizeof r->body - 1 - (r->body_len < sizeof r->body ? r->body_len : sizeof r->body - 1);
	size_t k = n < room ? n : room;
	if (k) {
		memcpy(r->body + r->body_len, p, k);
		r->body[r->body_len + k] = '\0';
	}
	r->body_len += n;
}

/* Reads one chunk of a chunked body into r; returns its size (0 = last),
 * -1 on error. */
static long cli_read_chunk(cli *c, resp *r)
{
	char *e;
	while (!(e = memmem(c->buf, c->len, "\r\n", 2)))
		if (cli_fill(c) <= 0)
			return -1;
	long sz = strtol(c->buf, NULL, 16);
	cli_consume(c, (size_t)(e - c->buf) + 2);
	if (sz == 0) { /* trailers: until an empty line */
		for (;;) {
			while (!(e = memmem(c->buf, c->len, "\r\n", 2)))
				if (cli_fill(c) <= 0)
					return -1;
			size_t l = (size_t)(e - c->buf);
			cli_consume(c, l + 2);
			if (l == 0)
				return 0;
		}
	}
	size_t need = (size_t)sz + 2;
	while (need) {
		if (c->len == 0 && cli_fill(c) <= 0)
			return -1;
		size_t k = c->len < need ? c->len : need;
		size_t data = k;
		if (need - k < 2) /* part of the CRLF */
			data = k - (2 - (need - k));
		body_add(r, c->buf, data);
		cli_consume(c, k);
		need -= k;
	}
	uint64_t now = mono_ms();
	if (!r->nchunks)
		r->first_chunk_ms = now;
	r->last_chunk_ms = now;
	r->nchunks++;
	return sz;
}

static int cli_read_body(cli *c, resp *r, int is_head)
{
	char v[64];
	if (is_head || r->status == 204 || r->status == 304 || r->status / 100 == 1)
		return 0;
	if (r->chunked) {
		long k;
		while ((k = cli_read_chunk(c, r)) > 0)
			;
		return k == 0 ? 0 : -1;
	}
	if (resp_hdr(r, "Content-Length", v, sizeof v)) {
		size_t need = (size_t)strtoull(v, NULL, 10);
		while (need) {
			if (c->len == 0 && cli_fill(c) <= 0)
				return -1;
			size_t k = c->len < need ? c->len : need;
			body_add(r, c->buf, k);
			cli_consume(c, k);
			need -= k;
		}
		return 0;
	}
	for (;;) { /* until EOF */
		if (c->len) {
			body_add(r, c->buf, c->len);
			cli_consume(c, c->len);
		}
		ssize_t n = cli_fill(c);
		if (n == 0)
			return 0;
		if (n < 0)
			return -1;
	}
}

static int cli_read_resp(cli *c, resp *r, int is_head)
{
	if (cli_read_head(c, r) != 0)
		return -1;
	return cli_read_body(c, r, is_head);
}

/* One request on a fresh connection; returns the response status. */
static int one_shot(srv *S, const char *req, resp *r)
{
	cli *c = cli_open(S->port, 0);
	cli_sends(c, req);
	int rc = cli_read_resp(c, r, 0);
	cli_close(c);
	return rc == 0 ? r->status : -1;
}

/* ================================================================ tests */

static void test_get_post(void **state)
{
	(void)state;
	srv *S = srv_start(NULL, 1);
	resp *r = malloc(sizeof *r);
	char v[128];
	assert_int_equal(one_shot(S, "GET /echo?x=1&y=2 HTTP/1.1\r\nHost: t\r\nFOO:  bar baz \r\n\r\n", r), 200);
	assert_string_equal(resp_hdr(r, "X-Method", v, sizeof v), "GET");
	assert_string_equal(resp_hdr(r, "X-Path", v, sizeof v), "/echo");
	assert_string_equal(resp_hdr(r, "X-Target", v, sizeof v), "/echo?x=1&y=2");
	assert_string_equal(resp_hdr(r, "X-Foo", v, sizeof v), "bar baz");
	assert_string_equal(resp_hdr(r, "Content-Length", v, sizeof v), "0");
	assert_non_null(resp_hdr(r, "Date", v, sizeof v));
	assert_true(strstr(v, "GMT") != NULL);
	assert_true(strncmp(resp_hdr(r, "X-Peer", v, sizeof v), "127.0.0.1:", 10) == 0);
	assert_true(strncmp(r->head, "HTTP/1.1 200 OK\r\n", 17) == 0);

	/* POST with a body holding a NUL */
	cli *c = cli_open(S->port, 0);
	static const char post[] = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello\0world";
	cli_send(c, post, sizeof post - 1);
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_int_equal(r->status, 200);
	assert_int_equal(r->body_len, 11);
	assert_memory_equal(r->body, "hello\0world", 11);
	assert_string_equal(resp_hdr(r, "X-Method", v, sizeof v), "POST");
	cli_close(c);

	/* absolute-form target */
	assert_int_equal(one_shot(S, "GET http://example.com/echo?q HTTP/1.1\r\nHost: t\r\n\r\n", r), 200);
	assert_string_equal(resp_hdr(r, "X-Path", v, sizeof v), "/echo");

	/* the head arriving a byte at a time */
	c = cli_open(S->port, 0);
	const char *req = "GET /echo HTTP/1.1\r\nHost: t\r\nFoo: slow\r\n\r\n";
	for (const char *p = req; *p; p++) {
		cli_send(c, p, 1);
		if ((p - req) % 8 == 0)
			sleep_ms(1);
	}
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_string_equal(resp_hdr(r, "X-Foo", v, sizeof v), "slow");
	cli_close(c);

	/* a reply header with CR LF is refused (SL_EINVAL), the request stays open */
	assert_int_equal(one_shot(S, "GET /badhdr HTTP/1.1\r\n\r\n", r), 200);
	assert_string_equal(r->body, "ok");
	assert_null(strstr(r->head, "Set-Cookie"));

	/* 204: no body, no Content-Length */
	assert_int_equal(one_shot(S, "GET /status?code=204 HTTP/1.1\r\n\r\n", r), 204);
	assert_null(resp_hdr(r, "Content-Length", v, sizeof v));
	free(r);
	srv_stop(S);
}

static void test_keepalive(void **state)
{
	(void)state;
	srv *S = srv_start(NULL, 1);
	resp *r = malloc(sizeof *r);
	char v[128];
	cli *c = cli_open(S->port, 0);
	for (int i = 0; i < 3; i++) {
		char req[128];
		snprintf(req, sizeof req, "GET /echo?i=%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
		cli_sends(c, req);
		assert_int_equal(cli_read_resp(c, r, 0), 0);
		assert_int_equal(r->status, 200);
		assert_null(resp_hdr(r, "Connection", v, sizeof v));
		char want[32];
		snprintf(want, sizeof want, "/echo?i=%d", i);
		assert_string_equal(resp_hdr(r, "X-Target", v, sizeof v), want);
	}
	sl_h1_stats st;
	on_loop(S, get_stats, &st);
	assert_int_equal(st.accepted, 1);
	assert_int_equal(st.requests, 3);
	assert_int_equal(sl_h1_server_connections(S->h1), 1);
	cli_close(c);
	free(r);
	srv_stop(S);
}

static void test_pipelined(void **state)
{
	(void)state;
	sl_h1_limits lim = {.max_headers = 1024};
	srv *S = srv_start(&lim, 1);
	resp *r = malloc(sizeof *r);
	char v[128];
	cli *c = cli_open(S->port, 0);
	/* an async one in the middle: answers must still come in order */
	cli_sends(c, "GET /echo?1 HTTP/1.1\r\n\r\n"
	             "GET /async?ms=80&2 HTTP/1.1\r\n\r\n"
	             "POST /echo?3 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
	             "GET /echo?4 HTTP/1.1\r\n\r\n");
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_string_equal(resp_hdr(r, "X-Target", v, sizeof v), "/echo?1");
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_string_equal(r->body, "/async?ms=80&2");
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_string_equal(resp_hdr(r, "X-Target", v, sizeof v), "/echo?3");
	assert_string_equal(r->body, "abc");
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_string_equal(resp_hdr(r, "X-Target", v, sizeof v), "/echo?4");

	/* many more pipelined bytes than max_headers behind a slow request:
	 * the layer stops reading past the cap and picks up afterwards */
	char *big = malloc(64 * 1024);
	size_t o = (size_t)sprintf(big, "GET /async?ms=100&first HTTP/1.1\r\n\r\n");
	for (int i = 0; i < 200; i++)
		o += (size_t)sprintf(big + o, "GET /echo?n=%d HTTP/1.1\r\nHost: pipelined\r\n\r\n", i);
	cli_send(c, big, o);
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_string_equal(r->body, "/async?ms=100&first");
	for (int i = 0; i < 200; i++) {
		assert_int_equal(cli_read_resp(c, r, 0), 0);
		char want[32];
		snprintf(want, sizeof want, "/echo?n=%d", i);
		assert_string_equal(resp_hdr(r, "X-Target", v, sizeof v), want);
	}
	free(big);
	cli_close(c);
	free(r);
	srv_stop(S);
}

static void test_chunked_request(void **state)
{
	(void)state;
	srv *S = srv_start(NULL, 1);
	resp *r = malloc(sizeof *r);
	char v[128];
	cli *c = cli_open(S->port, 0);
	const char *parts[] = {
		"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
		"5\r\nhello\r\n",
		"1;ext=1;other=\"q\"\r\n \r\n",
		"0000", "5\r\nwor", "ld\r\n",
		"0\r\nX-Trailer: yes\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
		cli_sends(c, parts[i]);
		sleep_ms(5);
	}
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_int_equal(r->status, 200);
	assert_string_equal(r->body, "hello world");
	assert_string_equal(resp_hdr(r, "X-Len", v, sizeof v), "11");
	/* keep-alive goes on after a chunked body */
	cli_sends(c, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_int_equal(r->status, 200);
	assert_int_equal(r->body_len, 0);
	cli_close(c);

	/* Expect: 100-continue */
	c = cli_open(S->port, 0);
	cli_sends(c, "POST /echo HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
	assert_int_equal(cli_read_head(c, r), 0);
	assert_int_equal(r->status, 100);
	cli_sends(c, "data");
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_int_equal(r->status, 200);
	assert_string_equal(r->body, "data");
	cli_close(c);
	free(r);
	srv_stop(S);
}

static void test_stream_reply(void **state)
{
	(void)state;
	srv *S = srv_start(NULL, 1);
	resp *r = malloc(sizeof *r);
	char v[128];
	cli *c = cli_open(S->port, 0);
	uint64_t t0 = mono_ms();
	cli_sends(c, "GET /stream?n=6&ms=60 HTTP/1.1\r\nHost: t\r\n\r\n");
	assert_int_equal(cli_read_head(c, r), 0);
	assert_int_equal(r->status, 200);
	assert_true(r->chunked);
	assert_string_equal(resp_hdr(r, "Content-Type", v, sizeof v), "text/event-stream");
	assert_null(resp_hdr(r, "Content-Length", v, sizeof v));
	long k;
	int i = 0;
	while ((k = cli_read_chunk(c, r)) > 0) {
		char want[32];
		snprintf(want, sizeof want, "chunk %d\n", i);
		assert_int_equal(k, (long)strlen(want));
		assert_true(strstr(r->body, want) != NULL);
		i++;
	}
	assert_int_equal(k, 0);
	assert_int_equal(r->nchunks, 6);
	/* chunks arrived as produced, not all at the end */
	assert_true(r->first_chunk_ms - t0 < 200u * (unsigned)slow);
	assert_true(r->last_chunk_ms - r->first_chunk_ms >= 200);
	/* and the connection is reusable */
	cli_sends(c, "GET /echo HTTP/1.1\r\n\r\n");
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_int_equal(r->status, 200);
	cli_close(c);

	/* HTTP/1.0 client: no chunking, delimited by the close */
	c = cli_open(S->port, 0);
	cli_sends(c, "GET /stream?n=3&ms=10 HTTP/1.0\r\n\r\n");
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_false(r->chunked);
	assert_string_equal(r->body, "chunk 0\nchunk 1\nchunk 2\n");
	cli_close(c);
	free(r);
	srv_stop(S);
}

static void test_431(void **state)
{
	(void)state;
	sl_h1_limits lim = {.max_headers = 1024};
	srv *S = srv_start(&lim, 1);
	resp *r = malloc(sizeof *r);
	char v[128];
	char req[4096];
	memset(req, 0, sizeof req);
	int o = sprintf(req, "GET /echo HTTP/1.1\r\nHost: t\r\nX-Big: ");
	memset(req + o, 'a', 1200);
	strcpy(req + o + 1200, "\r\n\r\n");
	assert_int_equal(one_shot(S, req, r), 431);
	assert_string_equal(resp_hdr(r, "Content-Type", v, sizeof v), "application/json");
	assert_string_equal(resp_hdr(r, "Connection", v, sizeof v), "close");
	assert_true(strncmp(r->body, "{\"error\":{", 10) == 0);
	assert_true(strstr(r->body, "\"code\":\"headers_too_large\"") != NULL);
	assert_true(strncmp(r->head, "HTTP/1.1 431 Request Header Fields Too Large\r\n", 46) == 0);

	/* a never-ending header line is cut at the limit: 431 arrives while
	 * we are still sending, then the connection closes */
	cli *c = cli_open(S->port, 0);
	cli_sends(c, "GET / HTTP/1.1\r\nX-Endless: ");
	char junk[256];
	memset(junk, 'b', sizeof junk);
	int got = 0;
	for (int i = 0; i < 64 && !got; i++) {
		if (send(c->fd, junk, sizeof junk, MSG_NOSIGNAL) < 0)
			break;
		got = cli_readable_within(c, 5);
	}
	assert_true(got || cli_readable_within(c, 1000));
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_int_equal(r->status, 431);
	assert_true(cli_closed_within(c, 3000 * slow));
	cli_close(c);

	/* too many header fields */
	sl_h1_limits lim2 = {.max_headers = 64 * 1024};
	srv *S2 = srv_start(&lim2, 1);
	char *many = malloc(64 * 1024);
	o = sprintf(many, "GET / HTTP/1.1\r\n");
	for (int i = 0; i < SL_H1_MAX_HEADER_FIELDS + 1; i++)
		o += sprintf(many + o, "H%d: v\r\n", i);
	strcpy(many + o, "\r\n");
	assert_int_equal(one_shot(S2, many, r), 431);
	/* exactly the maximum is fine (the header index grows) */
	o = sprintf(many, "GET /echo HTTP/1.1\r\n");
	for (int i = 0; i < SL_H1_MAX_HEADER_FIELDS - 1; i++)
		o += sprintf(many + o, "H%d: v\r\n", i);
	o += sprintf(many + o, "Foo: last\r\n\r\n");
	assert_int_equal(one_shot(S2, many, r), 200);
	assert_string_equal(resp_hdr(r, "X-Foo", v, sizeof v), "last");
	free(many);
	srv_stop(S2);

	sl_h1_stats st;
	on_loop(S, get_stats, &st);
	assert_int_equal(st.err_431, 2);
	free(r);
	srv_stop(S);
}

static void test_413(void **state)
{
	(void)state;
	sl_h1_limits lim = {.max_body = 1000};
	srv *S = srv_start(&lim, 1);
	resp *r = malloc(sizeof *r);
	char v[128];
	/* declared too large: 413 before the body is sent */
	cli *c = cli_open(S->port, 0);
	cli_sends(c, "POST /echo HTTP/1.1\r\nContent-Length: 5000\r\n\r\n");
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_int_equal(r->status, 413);
	assert_string_equal(resp_hdr(r, "Content-Type", v, sizeof v), "application/json");
	assert_true(strstr(r->body, "body_too_large") != NULL);
	assert_true(cli_closed_within(c, 3000 * slow));
	cli_close(c);

	/* with Expect: 100-continue: 413 at once, no 100 */
	c = cli_open(S->port, 0);
	cli_sends(c, "POST /echo HTTP/1.1\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n");
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_int_equal(r->status, 413);
	cli_close(c);

	/* a huge number */
	assert_int_equal(one_shot(S, "POST /echo HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", r), 413);

	/* sent anyway, all at once: the reply still arrives (lingering close) */
	c = cli_open(S->port, 0);
	char *big = malloc(200000);
	int o = sprintf(big, "POST /echo HTTP/1.1\r\nContent-Length: 190000\r\n\r\n");
	memset(big + o, 'z', 190000);
	cli_send(c, big, (size_t)o + 190000);
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_int_equal(r->status, 413);
	cli_close(c);

	/* chunked, cut at max_body */
	c = cli_open(S->port, 0);
	cli_sends(c, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
	char chunk[600];
	memset(chunk, 'y', sizeof chunk);
	int status = -1;
	for (int i = 0; i < 4; i++) {
		cli_sends(c, "258\r\n"); /* 600 */
		if (send(c->fd, chunk, sizeof chunk, MSG_NOSIGNAL) < 0 ||
		    send(c->fd, "\r\n", 2, MSG_NOSIGNAL) < 0)
			break;
		if (cli_readable_within(c, 50))
			break;
	}
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	status = r->status;
	assert_int_equal(status, 413);
	assert_true(strstr(r->body, "body_too_large") != NULL);
	cli_close(c);

	/* exactly max_body is fine */
	o = sprintf(big, "POST /echo HTTP/1.1\r\nContent-Length: 1000\r\n\r\n");
	memset(big + o, 'q', 1000);
	big[o + 1000] = '\0';
	assert_int_equal(one_shot(S, big, r), 200);
	assert_int_equal(r->body_len, 1000);
	free(big);
	free(r);
	srv_stop(S);
}

static void test_400(void **state)
{
	(void)state;
	srv *S = srv_start(NULL, 1);
	resp *r = malloc(sizeof *r);
	char v[128];
	static const struct {
		const char *req;
		size_t len; /* 0 = strlen */
		int status;
	} cases[] = {
		{"GET /\r\n\r\n", 0, 400},
		{"GET  / HTTP/1.1\r\n\r\n", 0, 400},
		{"GET / HTTP/1.1 \r\n\r\n", 0, 400},
		{"GET / FTP/1.1\r\n\r\n", 0, 400},
		{"G(T / HTTP/1.1\r\n\r\n", 0, 400},
		{"GET / HTTP/1.1\r\nFoo : bar\r\n\r\n", 0, 400},
		{"GET / HTTP/1.1\r\nFoo: bar\r\n  folded\r\n\r\n", 0, 400},
		{"GET / HTTP/1.1\r\nFoo: b\rar\r\n\r\n", 0, 400},
		{"GET / HTTP/1.1\r\nFoo: bar\n\r\n", 0, 400},
		{"GET / HTTP/1.1\r\nFoo: b\0r\r\n\r\n", 28, 400},
		{"GET / HTTP/1.1\r\n: nameless\r\n\r\n", 0, 400},
		{"GET / HTTP/1.1\r\nF\"o: x\r\n\r\n", 0, 400},
		{"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400},
		{"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 0, 400},
		{"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc", 0, 400},
		{"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc", 0, 400},
		{"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 0, 501},
		{"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 0, 501},
		{"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, 400},
		{"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", 0, 400},
		{"GET / HTTP/2.0\r\n\r\n", 0, 505},
		{"GET / HTTP/0.9\r\n\r\n", 0, 505},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		cli *c = cli_open(S->port, 0);
		size_t l = cases[i].len ? cases[i].len : strlen(cases[i].req);
		cli_send(c, cases[i].req, l);
		int rc = cli_read_resp(c, r, 0);
		if (rc != 0 || r->status != cases[i].status)
			fail_msg("case %zu: rc %d status %d, want %d", i, rc, r->status, cases[i].status);
		assert_string_equal(resp_hdr(r, "Connection", v, sizeof v), "close");
		assert_string_equal(resp_hdr(r, "Content-Type", v, sizeof v), "application/json");
		assert_true(cli_closed_within(c, 3000 * slow));
		cli_close(c);
	}
	/* identical repeated Content-Length and a leading empty line are fine */
	assert_int_equal(one_shot(S, "\r\nPOST /echo HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nok", r), 200);
	assert_string_equal(r->body, "ok");
	/* HTTP/1.2 is answered as 1.1 */
	assert_int_equal(one_shot(S, "GET /echo HTTP/1.2\r\n\r\n", r), 200);

	/* without an error formatter: text/plain */
	srv *S2 = srv_start(NULL, 0);
	assert_int_equal(one_shot(S2, "GET /\r\n\r\n", r), 400);
	assert_true(strncmp(resp_hdr(r, "Content-Type", v, sizeof v), "text/plain", 10) == 0);
	assert_true(r->body_len > 0 && r->body[r->body_len - 1] == '\n');
	srv_stop(S2);
	free(r);
	srv_stop(S);
}

static void test_408(void **state)
{
	(void)state;
	sl_h1_limits lim = {.read_timeout_ms = 300, .idle_timeout_ms = 5000};
	srv *S = srv_start(&lim, 1);
	resp *r = malloc(sizeof *r);
	/* body trickling a byte every 100 ms */
	cli *c = cli_open(S->port, 0);
	uint64_t t0 = mono_ms();
	cli_sends(c, "POST /echo HTTP/1.1\r\nContent-Length: 100\r\n\r\n");
	int got = 0;
	for (int i = 0; i < 30 && !got; i++) {
		if (send(c->fd, "x", 1, MSG_NOSIGNAL) < 0)
			break;
		got = cli_readable_within(c, 100);
	}
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	uint64_t dt = mono_ms() - t0;
	assert_int_equal(r->status, 408);
	assert_true(strstr(r->body, "read_timeout") != NULL);
	assert_true(dt >= 250 && dt < 1500u * (unsigned)slow);
	assert_true(cli_closed_within(c, 3000 * slow));
	cli_close(c);

	/* a head trickling in */
	c = cli_open(S->port, 0);
	t0 = mono_ms();
	const char *h = "GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	got = 0;
	for (const char *p = h; *p && !got; p++) {
		if (send(c->fd, p, 1, MSG_NOSIGNAL) < 0)
			break;
		got = cli_readable_within(c, 50);
	}
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_int_equal(r->status, 408);
	cli_close(c);

	/* a connection that sends nothing is closed silently */
	c = cli_open(S->port, 0);
	assert_true(cli_closed_within(c, 2000 * slow));
	assert_int_equal(c->len, 0);
	cli_close(c);
	free(r);
	srv_stop(S);
}

static void test_idle_timeout(void **state)
{
	(void)state;
	sl_h1_limits lim = {.read_timeout_ms = 2000, .idle_timeout_ms = 300};
	srv *S = srv_start(&lim, 1);
	resp *r = malloc(sizeof *r);
	cli *c = cli_open(S->port, 0);
	cli_sends(c, "GET / HTTP/1.1\r\n\r\n");
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	uint64_t t0 = mono_ms();
	assert_true(cli_closed_within(c, 3000 * slow));
	uint64_t dt = mono_ms() - t0;
	assert_true(dt >= 250);
	assert_int_equal(c->len, 0);
	cli_close(c);
	sl_h1_stats st;
	on_loop(S, get_stats, &st);
	assert_int_equal(st.idle_timeouts, 1);
	assert_int_equal(st.err_408, 0);
	free(r);
	srv_stop(S);
}

static void test_head(void **state)
{
	(void)state;
	srv *S = srv_start(NULL, 1);
	resp *r = malloc(sizeof *r);
	char v[128];
	cli *c = cli_open(S->port, 0);
	cli_sends(c, "HEAD /x HTTP/1.1\r\nHost: t\r\n\r\n");
	assert_int_equal(cli_read_resp(c, r, 1), 0);
	assert_int_equal(r->status, 200);
	assert_string_equal(resp_hdr(r, "Content-Length", v, sizeof v), "5");
	/* no body bytes: the next response starts right away */
	cli_sends(c, "HEAD /stream?n=2&ms=5 HTTP/1.1\r\n\r\n");
	assert_int_equal(cli_read_resp(c, r, 1), 0);
	assert_int_equal(r->status, 200);
	sleep_ms(50);
	cli_sends(c, "GET /echo HTTP/1.1\r\n\r\n");
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_int_equal(r->status, 200);
	assert_string_equal(resp_hdr(r, "X-Method", v, sizeof v), "GET");
	cli_close(c);
	free(r);
	srv_stop(S);
}

static void test_connection_close(void **state)
{
	(void)state;
	srv *S = srv_start(NULL, 1);
	resp *r = malloc(sizeof *r);
	char v[128];
	/* client asks */
	cli *c = cli_open(S->port, 0);
	cli_sends(c, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_string_equal(resp_hdr(r, "Connection", v, sizeof v), "close");
	assert_true(cli_closed_within(c, 2000 * slow));
	cli_close(c);
	/* a request pipelined after Connection: close is not served */
	c = cli_open(S->port, 0);
	cli_sends(c, "GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET /echo HTTP/1.1\r\n\r\n");
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_string_equal(r->body, "hello");
	assert_true(cli_closed_within(c, 3000 * slow));
	assert_int_equal(c->len, 0);
	cli_close(c);
	/* handler asks */
	c = cli_open(S->port, 0);
	cli_sends(c, "GET /close HTTP/1.1\r\n\r\n");
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_string_equal(resp_hdr(r, "Connection", v, sizeof v), "close");
	assert_string_equal(r->body, "bye");
	assert_true(cli_closed_within(c, 2000 * slow));
	cli_close(c);
	/* HTTP/1.0: close by default */
	c = cli_open(S->port, 0);
	cli_sends(c, "GET / HTTP/1.0\r\n\r\n");
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_string_equal(resp_hdr(r, "Connection", v, sizeof v), "close");
	assert_true(cli_closed_within(c, 2000 * slow));
	cli_close(c);
	/* HTTP/1.0 with keep-alive */
	c = cli_open(S->port, 0);
	cli_sends(c, "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_string_equal(resp_hdr(r, "Connection", v, sizeof v), "keep-alive");
	cli_sends(c, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_int_equal(r->status, 200);
	cli_close(c);
	free(r);
	srv_stop(S);
}

static void test_close_cb_fast(void **state)
{
	(void)state;
	srv *S = srv_start(NULL, 1);
	resp *r = malloc(sizeof *r);
	cli *c = cli_open(S->port, 0);
	cli_sends(c, "GET /stream?n=1000&ms=100 HTTP/1.1\r\n\r\n");
	assert_int_equal(cli_read_head(c, r), 0);
	assert_true(cli_read_chunk(c, r) > 0);
	uint64_t t0 = mono_ms();
	close(c->fd);
	c->fd = -1;
	assert_int_equal(obs_wait(S, &S->closes, 1, 2000), 1);
	pthread_mutex_lock(&S->mx);
	uint64_t dt = S->close_ms - t0;
	pthread_mutex_unlock(&S->mx);
	assert_true(dt < 100u * (unsigned)slow);
	cli_close(c);

	/* EOF before the handler answered (async, close callback set) */
	c = cli_open(S->port, 0);
	cli_sends(c, "GET /async?ms=5000 HTTP/1.1\r\n\r\n");
	sleep_ms(50);
	t0 = mono_ms();
	close(c->fd);
	c->fd = -1;
	assert_int_equal(obs_wait(S, &S->closes, 2, 2000), 2);
	pthread_mutex_lock(&S->mx);
	dt = S->close_ms - t0;
	pthread_mutex_unlock(&S->mx);
	assert_true(dt < 100u * (unsigned)slow);
	cli_close(c);

	/* no close callback: the request stays valid, the late reply gets
	 * SL_ECLOSED and frees it */
	c = cli_open(S->port, 0);
	cli_sends(c, "GET /late?ms=150 HTTP/1.1\r\n\r\n");
	sleep_ms(30);
	cli_close(c);
	assert_int_equal(obs_wait(S, &S->late_done, 1, 3000), 1);
	assert_int_equal(obs_get(S, &S->late_rc), SL_ECLOSED);
	sl_h1_stats st;
	on_loop(S, get_stats, &st);
	assert_int_equal(st.client_gone, 3);
	assert_int_equal(st.open, 0);
	free(r);
	srv_stop(S);
}

static void test_long_stream(void **state)
{
	(void)state;
	sl_h1_limits lim = {.read_timeout_ms = 500, .idle_timeout_ms = 1000};
	srv *S = srv_start(&lim, 1);
	resp *r = malloc(sizeof *r);
	cli *c = cli_open(S->port, 0);
	uint64_t t0 = mono_ms();
	cli_sends(c, "GET /stream?n=20&ms=100 HTTP/1.1\r\n\r\n");
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_int_equal(r->status, 200);
	assert_int_equal(r->nchunks, 20);
	assert_true(mono_ms() - t0 >= 1800);
	assert_true(strstr(r->body, "chunk 19\n") != NULL);
	assert_int_equal(obs_get(S, &S->closes), 0);
	cli_close(c);
	free(r);
	srv_stop(S);
}

static void test_backpressure(void **state)
{
	(void)state;
	sl_h1_limits lim = {.max_output_buffered = 64 * 1024};
	srv *S = srv_start(&lim, 1);
	resp *r = malloc(sizeof *r);
	cli *c = cli_open(S->port, 32 * 1024);
	const uint64_t total = 32u << 20;
	char req[128];
	snprintf(req, sizeof req, "GET /bp?total=%llu HTTP/1.1\r\n\r\n", (unsigned long long)total);
	cli_sends(c, req);
	/* not reading: the producer gets SL_EAGAIN and waits */
	assert_int_equal(obs_wait(S, &S->eagain, 1, 5000 * slow), 1);
	sleep_ms(200);
	assert_int_equal(obs_get(S, &S->drains), 0);
	assert_int_equal(obs_get(S, &S->bp_done), 0);
	pthread_mutex_lock(&S->mx);
	uint64_t sent = S->bp_sent;
	pthread_mutex_unlock(&S->mx);
	assert_true(sent < total);
	/* reading: drain callbacks, then the whole body */
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_int_equal(r->status, 200);
	assert_int_equal(r->body_len, total);
	assert_true(obs_get(S, &S->drains) >= 1);
	assert_int_equal(obs_get(S, &S->bp_done), 1);
	assert_int_equal(obs_get(S, &S->closes), 0);
	cli_close(c);

	/* the same, but the client goes away while the producer waits */
	int before = obs_get(S, &S->eagain);
	c = cli_open(S->port, 32 * 1024);
	cli_sends(c, req);
	assert_true(obs_wait(S, &S->eagain, before + 1, 5000 * slow) > before);
	cli_close(c);
	assert_int_equal(obs_wait(S, &S->closes, 1, 2000), 1);
	free(r);
	srv_stop(S);
}

static void do_pause(srv *S, void *a)
{
	(void)a;
	sl_h1_server_pause_accept(S->h1);
	sl_h1_server_pause_accept(S->h1); /* idempotent */
}

static void do_resume(srv *S, void *a)
{
	(void)a;
	sl_h1_server_resume_accept(S->h1);
}

static void test_pause_resume(void **state)
{
	(void)state;
	srv *S = srv_start(NULL, 1);
	resp *r = malloc(sizeof *r);
	cli *a = cli_open(S->port, 0); /* accepted before the pause */
	cli_sends(a, "GET / HTTP/1.1\r\n\r\n");
	assert_int_equal(cli_read_resp(a, r, 0), 0);
	on_loop(S, do_pause, NULL);
	cli *c = cli_open(S->port, 0); /* sits in the backlog */
	cli_sends(c, "GET / HTTP/1.1\r\n\r\n");
	assert_false(cli_readable_within(c, 300));
	assert_int_equal(sl_h1_server_connections(S->h1), 1);
	/* open connections go on */
	cli_sends(a, "GET / HTTP/1.1\r\n\r\n");
	assert_int_equal(cli_read_resp(a, r, 0), 0);
	assert_int_equal(r->status, 200);
	on_loop(S, do_resume, NULL);
	assert_int_equal(cli_read_resp(c, r, 0), 0);
	assert_int_equal(r->status, 200);
	assert_int_equal(sl_h1_server_connections(S->h1), 2);
	cli_close(c);
	cli_close(a);
	free(r);
	srv_stop(S);
}

/* Destroying the server with requests open: their close callbacks run. */
static void test_destroy_open(void **state)
{
	(void)state;
	srv *S = srv_start(NULL, 1);
	resp *r = malloc(sizeof *r);
	cli *c1 = cli_open(S->port, 0);
	cli *c2 = cli_open(S->port, 0);
	cli *c3 = cli_open(S->port, 0);
	cli_sends(c1, "GET /stream?n=1000&ms=50 HTTP/1.1\r\n\r\n");
	cli_sends(c2, "GET /async?ms=10000 HTTP/1.1\r\n\r\n");
	cli_sends(c3, "GET / HTTP/1.1\r\n"); /* half a head */
	assert_int_equal(cli_read_head(c1, r), 0);
	assert_int_equal(obs_wait(S, &S->requests, 2, 2000), 2);
	on_loop(S, do_destroy, NULL);
	assert_int_equal(obs_get(S, &S->closes), 2);
	assert_true(cli_closed_within(c2, 2000));
	assert_true(cli_closed_within(c3, 2000));
	cli_close(c1);
	cli_close(c2);
	cli_close(c3);
	/* srv_stop destroys again: NULL is a no-op */
	free(r);
	srv_stop(S);
}

/* ------------------------------------------------------ parser, directly */

static int parse_all(const char *s, size_t len, size_t max, sl_h1p_head *h, int bytewise)
{
	static sl_h1p_hdr hdrs[64];
	sl_h1p_head_init(h, hdrs, 64);
	if (!bytewise)
		return sl_h1p_head_feed(h, s, len, max);
	int rc = SL_H1P_MORE;
	for (size_t i = 1; i <= len && rc == SL_H1P_MORE; i++)
		rc = sl_h1p_head_feed(h, s, i, max);
	return rc;
}

typedef struct sink_buf {
	char b[128];
	size_t n;
} sink_buf;

static int sink_add(void *arg, const char *d, size_t n)
{
	sink_buf *s = arg;
	assert_true(s->n + n < sizeof s->b);
	memcpy(s->b + s->n, d, n);
	s->n += n;
	s->b[s->n] = '\0';
	return 0;
}

static void test_parser(void **state)
{
	(void)state;
	sl_h1p_head h;
	const char *req = "POST http://h:1/a/b?c=d HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n"
	                  "Connection: foo, close\r\nExpect: 100-Continue\r\nX-E:\r\n\r\nBODY";
	for (int bw = 0; bw < 2; bw++) {
		assert_int_equal(parse_all(req, strlen(req), 4096, &h, bw), SL_H1P_DONE);
		assert_int_equal(h.head_len, strlen(req) - 4);
		assert_int_equal(h.method_len, 4);
		assert_memory_equal(req + h.target + h.path_off, "/a/b?", 5);
		assert_int_equal(h.path_len, 4);
		assert_int_equal(h.n_hdrs, 5);
		assert_true(h.has_cl);
		assert_int_equal(h.content_length, 7);
		assert_true(h.conn_close);
		assert_true(h.expect_continue);
		assert_int_equal(h.hdrs[4].value_len, 0);
		assert_int_equal(h.minor, 1);
	}
	/* size bound: the head exactly at the limit passes, one more fails */
	const char *r2 = "GET / HTTP/1.1\r\nA: b\r\n\r\n";
	size_t l2 = strlen(r2);
	assert_int_equal(parse_all(r2, l2, l2, &h, 0), SL_H1P_DONE);
	assert_int_equal(parse_all(r2, l2, l2 - 1, &h, 0), SL_H1P_ERROR);
	assert_int_equal(h.err_status, 431);
	assert_int_equal(parse_all(r2, l2, l2 - 1, &h, 1), SL_H1P_ERROR);
	assert_int_equal(h.err_status, 431);
	/* incomplete */
	assert_int_equal(parse_all(r2, l2 - 1, 4096, &h, 0), SL_H1P_MORE);

	/* chunked decoder, whole and byte by byte */
	const char *body = "4;a=b\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nT: v\r\n\r\nNEXT";
	for (int bw = 0; bw < 2; bw++) {
		sl_h1p_chunked ck;
		sl_h1p_chunked_init(&ck, 1000, 100);
		sink_buf out = {"", 0};
		size_t off = 0, used;
		int rc = SL_H1P_MORE;
		size_t len = strlen(body);
		while (rc == SL_H1P_MORE && off < len) {
			size_t n = bw ? 1 : len - off;
			rc = sl_h1p_chunked_feed(&ck, body + off, n, &used, sink_add, &out);
			off += used;
		}
		assert_int_equal(rc, SL_H1P_DONE);
		assert_string_equal(body + off, "NEXT");
		assert_int_equal(ck.total, 4 + 5 + 14);
		assert_string_equal(out.b, "Wikipedia in\r\n\r\nchunks.");
	}
	/* chunked over the bound */
	sl_h1p_chunked ck;
	size_t used;
	sl_h1p_chunked_init(&ck, 10, 100);
	assert_int_equal(sl_h1p_chunked_feed(&ck, "b\r\n", 3, &used, NULL, NULL), SL_H1P_ERROR);
	assert_int_equal(ck.err_status, 413);
	sl_h1p_chunked_init(&ck, 10, 100);
	assert_int_equal(sl_h1p_chunked_feed(&ck, "00000000000000000000000000001\r\nx\r\n0\r\n\r\n", 39,
	                                     &used, NULL, NULL),
	                 SL_H1P_DONE);
	sl_h1p_chunked_init(&ck, 10, 100);
	assert_int_equal(sl_h1p_chunked_feed(&ck, "1000000000000000\r\n", 18, &used, NULL, NULL),
	                 SL_H1P_ERROR);
	assert_int_equal(ck.err_status, 413);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	if (getenv("SLUICE_SANITIZED"))
		slow = 4;
#ifdef SLUICE_SANITIZED
	slow = 4;
#endif
	evthread_use_pthreads();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parser),
		cmocka_unit_test(test_get_post),
		cmocka_unit_test(test_keepalive),
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_chunked_request),
		cmocka_unit_test(test_stream_reply),
		cmocka_unit_test(test_431),
		cmocka_unit_test(test_413),
		cmocka_unit_test(test_400),
		cmocka_unit_test(test_408),
		cmocka_unit_test(test_idle_timeout),
		cmocka_unit_test(test_head),
		cmocka_unit_test(test_connection_close),
		cmocka_unit_test(test_close_cb_fast),
		cmocka_unit_test(test_long_stream),
		cmocka_unit_test(test_backpressure),
		cmocka_unit_test(test_pause_resume),
		cmocka_unit_test(test_destroy_open),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
