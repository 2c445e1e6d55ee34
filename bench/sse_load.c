/* sse_load.c - a load client for streaming chat completions (SSE over
 * HTTP/1.1).  Measurement only; it talks to sluice, to the mock upstream or
 * to anything else that speaks the OpenAI streaming API, and links nothing
 * from sluice, so it works against any version of the gateway's HTTP layer.
 *
 * Every connection sends POST <path> with a small JSON body
 *   {"model":M,"stream":true,"messages":[{"role":"user","content":TEXT}]}
 * and reads the response incrementally: status line and headers, then the
 * body (chunked, Content-Length or until EOF), then the SSE events in it.
 * Per request it records: time to first token (TTFT: from writing the
 * request to the first `data:` event whose delta has a non-empty
 * "content" string, i.e. `"content"\s*:\s*"` followed by something other
 * than `"`), total time (until the body ends), content events, and whether
 * the stream ended with `data: [DONE]`.  A request is "completed" when it
 * got 200, at least one content event and [DONE]; anything else is an error
 * counted by kind (see err_* below and docs/benchmarks.md).
 *
 * Modes
 *   --hold        open --conc streams once (at --rate connections/s, 0 = all
 *                 at once), wait until every stream has its first token or
 *                 --timeout-s passed, report how many were open at that
 *                 moment (and create --ready-file, so a script can sample
 *                 the server), then let the streams run to their end (at
 *                 most --drain-s more; what is left is aborted as
 *                 "unfinished").
 *   --duration S  closed loop: every connection repeats requests on a
 *                 keep-alive connection; requests started in the window
 *                 [--warmup, --warmup + S) are recorded; afterwards no new
 *                 request starts and those in flight get --drain-s.
 *   --rate R --duration S (R > 0, no --hold)
 *                 open loop (constant arrival rate, as wrk2): request j is
 *                 scheduled at t0 + j/R on the monotonic clock, whatever the
 *                 answers do.  Each loop has one timer, armed for its next
 *                 scheduled request (--tick-us 0, the default; libevent's
 *                 precise timer, a timerfd) or firing every --tick-us N µs;
 *                 when it fires it sends every request that is due.  Thread
 *                 i of T takes requests j = i, i+T, i+2T...  A request goes
 *                 on an idle keep-alive connection of its loop; when none is
 *                 idle a new one is opened, up to the loop's share of --conc;
 *                 at the cap the request waits (FIFO) for the first
 *                 connection that frees up.  Latency counts from the
 *                 *scheduled* time (coordinated-omission correction), so a
 *                 stalled server or a client that falls behind shows in the
 *                 figures instead of hiding in fewer samples; "svc_*" counts
 *                 from the actual write (uncorrected), "send_lag_*" is write
 *                 minus schedule, and "late_sends" counts writes more than
 *                 1 ms behind schedule.  Requests scheduled in
 *                 [--warmup, --warmup + S) are recorded; the rest of the
 *                 run is as the closed loop (--drain-s, then "unfinished",
 *                 or "not_sent" for requests still waiting for a connection).
 *                 Every recorded request ends exactly once:
 *                 scheduled = completed + error_count.
 *
 * Answers: SSE streams by default (the rules above).  With --no-stream (the
 * body says "stream":false) or a --body-file without "stream":true the
 * answer is one JSON document: it is kept whole (at most 1 MiB, else
 * "too_long") and a request is completed when it got 200 and the document
 * has a non-empty "content" string (a chat.completion's
 * choices[0].message.content), else "no_content".
 *
 * Threads: --threads T runs T event loops (libevent, epoll), connection i on
 * loop i % T; counters are per thread and merged at the end, plus a few
 * atomics the main thread watches.  One thread handles 10,000+ connections.
 *
 * Output: one JSON line on stdout (see print_result).  --progress prints a
 * line per second on stderr.  Exit status 0 when the run could be carried
 * out (errors are figures, not failures), 2 on bad usage, 1 on setup
 * failure (address, threads, memory).
 *
 * Bounds: a response's header block is limited to 64 KiB and an SSE line to
 * 1 MiB (error "too_long"); per-request samples are kept in arrays that grow
 * with the number of recorded requests (8 bytes each).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HDR (64u << 10)
#define MAX_LINE (1u << 20)
#define MAX_KINDS 64
#define MAX_EXTRA_HEADERS 16
#define RECONNECT_DELAY_US 10000 /* closed loop: after a failed connection */
#define LATE_US 1000               /* open loop: a write this far behind schedule is late */
#define MAX_PENDING (1u << 20)     /* open loop: requests waiting for a connection, per
                                      thread; beyond it a request fails "backlog_full" */
#define MAX_BODY_FILE (1u << 20)
#define OPEN_DEFAULT_CONC 256      /* open loop: default connection cap */

/* ------------------------------------------------------------ options */

static struct {
	char host[256];
	char port[16];
	char path[1024];
	const char *model;
	const char *message;
	const char *headers[MAX_EXTRA_HEADERS];
	int n_headers;
	unsigned conc;
	unsigned threads;
	int hold;
	double duration_s, warmup_s, timeout_s, drain_s, rate;
	long expect_tokens;
	const char *ready_file;
	int progress;
	int open;          /* --rate R > 0 with --duration: open loop */
	int sse;           /* the answers are SSE streams (else one JSON document) */
	const char *body_file;
	double tick_us;    /* open loop: 0 = timer at the next scheduled request */
} opt = {.model = "mock",
         .sse = 1,
         .message = "Say something.",
         .conc = 1,
         .threads = 1,
         .timeout_s = 60,
         .drain_s = 120,
         .expect_tokens = -1};

static char *req_text; /* the whole request, identical for every stream */
static size_t req_len;
static struct sockaddr_storage dst;
static socklen_t dst_len;

/* ------------------------------------------------------------ clock */

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t t_start, t_record, t_end; /* closed loop window */

/* shared, watched by the main thread */
static atomic_uint g_connected;   /* connections established (ever) */
static atomic_uint g_first_token; /* requests that got a first token */
static atomic_uint g_open;        /* streams with a first token, not ended */
static atomic_uint g_ended;       /* hold: streams that ended (any way) */
static atomic_uint g_settled;     /* hold: first token, or ended without one */
static atomic_uint g_peak_open;
static atomic_int g_stop;         /* 1: abort everything in flight */

/* ------------------------------------------------------------ buffers */

typedef struct buf {
	char *p;
	size_t len, cap;
} buf;

static int buf_add(buf *b, const char *s, size_t n, size_t max)
{
	if (b->len + n > max)
		return -1;
	if (b->len + n + 1 > b->cap) {
		size_t c = b->cap ? b->cap : 256;
		while (c < b->len + n + 1)
			c *= 2;
		char *p = realloc(b->p, c);
		if (!p)
			return -1;
		b->p = p;
		b->cap = c;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
	return 0;
}

static void buf_free(buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* growable sample array */
typedef struct samples {
	uint32_t *v;
	size_t n, cap;
} samples;

static void samples_add(samples *s, int64_t x)
{
	if (s->n == s->cap) {
		size_t c = s->cap ? s->cap * 2 : 1024;
		uint32_t *p = realloc(s->v, c * sizeof *p);
		if (!p)
			return; /* a sample lost beats a crash in a load client */
		s->v = p;
		s->cap = c;
	}
	s->v[s->n++] = x < 0 ? 0 : x > UINT32_MAX ? UINT32_MAX : (uint32_t)x;
}

/* ------------------------------------------------------------ per thread */

typedef struct kind_count {
	char name[40];
	uint64_t n;
} kind_count;

typedef struct thr thr;

/* ST_IDLE: no connection (closed loop and hold: not started / reconnecting);
 * ST_READY: open loop, connected and idle (on the thread's idle list). */
enum { ST_IDLE, ST_CONNECTING, ST_SENDING, ST_HDR, ST_BODY, ST_DONE, ST_READY };
enum { BODY_CHUNKED, BODY_LENGTH, BODY_EOF };
enum { CH_SIZE, CH_DATA, CH_DATA_CRLF, CH_TRAILER };

typedef struct conn {
	thr *t;
	int fd;
	int state;
	struct event *rev, *wev, *tev; /* read, write (connect/partial), retry */
	size_t wpos;
	int reqs;        /* requests sent on this connection */
	int recording;   /* this request counts */
	int64_t t_req, t_first;
	/* response */
	int status;
	int body_mode, ch_state, conn_close;
	int64_t remaining;
	buf hdr, line, data;
	int tokens, done, sse_error, counted_first, settled;
	/* open loop (owned by the connection's thread) */
	int64_t t_sched;               /* the request's scheduled time */
	int has_req;                   /* a request is on this connection */
	int in_idle;
	struct conn *idle_next, *idle_prev;
} conn;

struct thr {
	unsigned idx;
	pthread_t tid;
	struct event_base *base;
	struct event *tick;
	conn *c;      /* this thread's connections */
	unsigned n;   /* how many */
	unsigned next_open;
	double rate_acc;
	int64_t last_tick;
	unsigned active; /* connections not finished */
	/* results */
	uint64_t requests, completed, tokens, mismatch, connects, opened;
	samples ttft_us, total_us;
	kind_count kinds[MAX_KINDS];
	int n_kinds;
	char first_error[200];
	/* open loop (owned by the thread) */
	struct event *sched_ev;
	int64_t next_j;      /* global index of this thread's next request */
	int64_t next_tick;   /* --tick-us N: the next tick on the fixed grid */
	conn *idle;          /* idle connections, most recently used first */
	conn **free_slot;    /* connection slots with no socket (a stack) */
	unsigned n_free;
	unsigned connecting, busy, peak_conns;
	int64_t *pq;         /* requests waiting for a connection: scheduled times, */
	size_t pq_head, pq_len, pq_cap; /* a FIFO ring, at most MAX_PENDING */
	int pumping, repump, finished;
	uint64_t sent, late_sends, conn_waits, idle_closed;
	samples svc_us, lag_us; /* latency from the schedule is total_us */
	int64_t runq_ns;     /* time runnable but waiting for a CPU (-1: unknown) */
	int64_t t_last_done; /* when the last recorded request completed */
};

static void err_add(thr *t, const char *kind, uint64_t n)
{
	int i;
	for (i = 0; i < t->n_kinds; i++)
		if (!strcmp(t->kinds[i].name, kind))
			break;
	if (i == t->n_kinds) {
		if (t->n_kinds == MAX_KINDS)
			i = MAX_KINDS - 1, kind = "other";
		else
			t->n_kinds++;
		snprintf(t->kinds[i].name, sizeof t->kinds[i].name, "%s", kind);
	}
	t->kinds[i].n += n;
}

/* One failed request of kind; the first one's detail is kept. */
static void err_count(thr *t, const char *kind, const char *detail)
{
	err_add(t, kind, 1);
	if (!t->first_error[0])
		snprintf(t->first_error, sizeof t->first_error, "%s%s%.150s", kind, detail ? ": " : "",
		         detail ? detail : "");
}

static void errno_kind(char *k, size_t cap, const char *what, int e)
{
	const char *nm = strerrorname_np(e);
	snprintf(k, cap, "%s_%s", what, nm ? nm : "errno");
}

static void err_errno(thr *t, const char *what, int e)
{
	char k[40];
	errno_kind(k, sizeof k, what, e);
	err_count(t, k, strerror(e));
}

/* ------------------------------------------------------------ lifecycle */

static void start_conn(conn *c);
static void send_request(conn *c);
static void ol_fail(conn *c, const char *kind, const char *detail);
static void ol_done(conn *c, int reuse);
static int has_content(const char *s, size_t n);

static int in_window(int64_t t)
{
	return t >= t_record && t < t_end;
}

static void mark_ended_stream(conn *c)
{
	if (c->counted_first) {
		atomic_fetch_sub(&g_open, 1);
		c->counted_first = 0;
	}
}

static void close_fd(conn *c)
{
	if (c->rev)
		event_del(c->rev);
	if (c->wev)
		event_del(c->wev);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	buf_free(&c->hdr);
	buf_free(&c->line);
	buf_free(&c->data);
}

/* The connection is done for good. */
static void finish_conn(conn *c)
{
	thr *t = c->t;
	close_fd(c);
	mark_ended_stream(c);
	if (c->state != ST_DONE) {
		c->state = ST_DONE;
		if (opt.hold) {
			atomic_fetch_add(&g_ended, 1);
			if (!c->settled) {
				c->settled = 1;
				atomic_fetch_add(&g_settled, 1);
			}
		}
		if (--t->active == 0)
			event_base_loopexit(t->base, NULL);
	}
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	start_conn(arg);
}

/* After an error or Connection: close, closed loop: go on if the window is
 * still open; hold mode: the stream is over. */
static void next_or_finish(conn *c, int reuse, int after_error)
{
	if (opt.open) {
		ol_done(c, reuse);
		return;
	}
	if (opt.hold || atomic_load(&g_stop) || now_us() >= t_end) {
		finish_conn(c);
		return;
	}
	if (reuse) {
		send_request(c);
		return;
	}
	close_fd(c);
	c->state = ST_IDLE;
	if (after_error) {
		struct timeval tv = {0, RECONNECT_DELAY_US};
		evtimer_add(c->tev, &tv);
	} else {
		start_conn(c);
	}
}

/* A request failed: count it (if recorded), drop the connection. */
static void fail(conn *c, const char *kind, const char *detail)
{
	if (opt.open) {
		ol_fail(c, kind, detail);
		return;
	}
	if (c->recording)
		err_count(c->t, kind, detail);
	mark_ended_stream(c);
	next_or_finish(c, 0, 1);
}

static void fail_errno(conn *c, const char *what, int e)
{
	if (opt.open) {
		char k[40];
		errno_kind(k, sizeof k, what, e);
		ol_fail(c, k, strerror(e));
		return;
	}
	if (c->recording)
		err_errno(c->t, what, e);
	mark_ended_stream(c);
	next_or_finish(c, 0, 1);
}

/* The response ended (body complete, or EOF for a body without length). */
static void response_done(conn *c)
{
	thr *t = c->t;
	int64_t end = now_us();
	mark_ended_stream(c);
	if (c->recording) {
		if (c->status != 200) {
			char k[24];
			snprintf(k, sizeof k, "http_%d", c->status);
			err_count(t, k, c->data.p);
		} else if (!opt.sse) { /* one JSON document */
			if (!c->data.len || !has_content(c->data.p, c->data.len)) {
				err_count(t, "no_content", c->data.len ? c->data.p : NULL);
			} else {
				t->completed++;
				t->t_last_done = end;
				samples_add(&t->total_us, end - (opt.open ? c->t_sched : c->t_req));
				if (opt.open)
					samples_add(&t->svc_us, end - c->t_req);
			}
		} else if (c->sse_error) {
			err_count(t, "sse_error", c->data.p);
		} else if (!c->done) {
			err_count(t, "no_done", NULL);
		} else if (c->tokens == 0) {
			err_count(t, "no_content", NULL);
		} else {
			t->completed++;
			t->tokens += (uint64_t)c->tokens;
			if (opt.expect_tokens >= 0 && c->tokens != opt.expect_tokens)
				t->mismatch++;
			/* open loop: from the scheduled time (see the top) */
			int64_t from = opt.open ? c->t_sched : c->t_req;
			t->t_last_done = end;
			samples_add(&t->ttft_us, c->t_first - from);
			samples_add(&t->total_us, end - from);
			if (opt.open)
				samples_add(&t->svc_us, end - c->t_req);
		}
	}
	next_or_finish(c, !c->conn_close && c->body_mode != BODY_EOF, 0);
}

/* ------------------------------------------------------------ SSE */

/* Non-empty "content" string anywhere in the event: `"content"\s*:\s*"`
 * not followed by `"` (as the shared harness's stream-client.mjs). */
static int has_content(const char *s, size_t n)
{
	const char *end = s + n, *p = s;
	while ((p = memmem(p, (size_t)(end - p), "\"content\"", 9)) != NULL) {
		p += 9;
		const char *q = p;
		while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
			q++;
		if (q >= end || *q != ':')
			continue;
		q++;
		while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
			q++;
		if (q + 1 < end && q[0] == '"' && q[1] != '"')
			return 1;
	}
	return 0;
}

static void sse_dispatch(conn *c)
{
	if (!c->data.len || !opt.sse)
		return;
	const char *d = c->data.p;
	if (!strcmp(d, "[DONE]")) {
		c->done = 1;
	} else if (has_content(d, c->data.len)) {
		c->tokens++;
		if (c->tokens == 1 && c->recording) {
			c->t_first = now_us();
			atomic_fetch_add(&g_first_token, 1);
			if (opt.hold && !c->settled) {
				c->settled = 1;
				atomic_fetch_add(&g_settled, 1);
			}
			c->counted_first = 1;
			unsigned o = atomic_fetch_add(&g_open, 1) + 1;
			unsigned pk = atomic_load(&g_peak_open);
			while (o > pk && !atomic_compare_exchange_weak(&g_peak_open, &pk, o))
				;
		}
	} else if (!strncmp(d, "{\"error\"", 8)) {
		c->sse_error = 1;
		return; /* keep the text for first_error */
	}
	c->data.len = 0;
}

static void sse_line(conn *c, char *s, size_t n)
{
	if (n && s[n - 1] == '\r')
		n--;
	if (n == 0) {
		sse_dispatch(c);
		return;
	}
	if (n >= 5 && !memcmp(s, "data:", 5)) {
		s += 5, n -= 5;
		if (n && *s == ' ')
			s++, n--;
		if (c->data.len)
			buf_add(&c->data, "\n", 1, MAX_LINE);
		buf_add(&c->data, s, n, MAX_LINE);
	}
	/* comments, event:, id:, retry: are ignored */
}

/* returns -1 when a line is too long */
static int sse_feed(conn *c, const char *p, size_t n)
{
	if (c->status != 200) { /* an error body: keep its start for first_error */
		if (c->data.len < 160)
			buf_add(&c->data, p, n < 160 - c->data.len ? n : 160 - c->data.len, 160);
		return 0;
	}
	if (!opt.sse) /* one JSON document: kept whole for the check at the end */
		return buf_add(&c->data, p, n, MAX_LINE) ? -1 : 0;
	while (n) {
		const char *nl = memchr(p, '\n', n);
		size_t take = nl ? (size_t)(nl - p) + 1 : n;
		if (nl && c->line.len == 0) {
			sse_line(c, (char *)p, take - 1); /* whole line in the input */
		} else {
			if (buf_add(&c->line, p, take, MAX_LINE) != 0)
				return -1;
			if (nl) {
				sse_line(c, c->line.p, c->line.len - 1);
				c->line.len = 0;
			}
		}
		p += take, n -= take;
	}
	return 0;
}

/* ------------------------------------------------------------ HTTP */

/* Parse the header block in c->hdr (ends with \r\n\r\n).  0 or -1. */
static int parse_head(conn *c)
{
	char *s = c->hdr.p;
	int minor = 1;
	if (strncmp(s, "HTTP/1.", 7) != 0)
		return -1;
	minor = s[7] - '0';
	char *sp = strchr(s, ' ');
	if (!sp)
		return -1;
	c->status = atoi(sp + 1);
	if (c->status < 100 || c->status > 999)
		return -1;
	c->conn_close = minor == 0;
	c->body_mode = BODY_EOF;
	int have_len = 0;
	char *line = strstr(s, "\r\n") + 2;
	while (line && *line && !(line[0] == '\r' && line[1] == '\n')) {
		char *eol = strstr(line, "\r\n");
		if (!eol)
			break;
		*eol = 0;
		char *colon = strchr(line, ':');
		if (colon) {
			*colon = 0;
			char *v = colon + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			if (!strcasecmp(line, "content-length")) {
				c->remaining = strtoll(v, NULL, 10);
				have_len = 1;
			} else if (!strcasecmp(line, "transfer-encoding")) {
				if (strcasestr(v, "chunked"))
					c->body_mode = BODY_CHUNKED;
			} else if (!strcasecmp(line, "connection")) {
				if (strcasestr(v, "close"))
					c->conn_close = 1;
				else if (strcasestr(v, "keep-alive"))
					c->conn_close = 0;
			}
		}
		line = eol + 2;
	}
	if (c->body_mode != BODY_CHUNKED && have_len)
		c->body_mode = BODY_LENGTH;
	if (c->status == 204 || c->status == 304) {
		c->body_mode = BODY_LENGTH;
		c->remaining = 0;
	}
	c->ch_state = CH_SIZE;
	return 0;
}

/* Body bytes.  Returns 1 when the response is complete, 0 for more, -1 on a
 * framing error, -2 on a too-long line. */
static int body_feed(conn *c, const char *p, size_t n)
{
	if (c->body_mode == BODY_EOF)
		return sse_feed(c, p, n) ? -2 : 0;
	if (c->body_mode == BODY_LENGTH) {
		size_t take = (int64_t)n < c->remaining ? n : (size_t)c->remaining;
		if (sse_feed(c, p, take))
			return -2;
		c->remaining -= (int64_t)take;
		return c->remaining == 0 ? 1 : 0;
	}
	while (n) {
		switch (c->ch_state) {
		case CH_SIZE:
		case CH_TRAILER: {
			const char *nl = memchr(p, '\n', n);
			size_t take = nl ? (size_t)(nl - p) + 1 : n;
			if (buf_add(&c->hdr, p, take, 4096))
				return -1;
			p += take, n -= take;
			if (!nl)
				break;
			if (c->ch_state == CH_SIZE) {
				char *e;
				errno = 0;
				long long sz = strtoll(c->hdr.p, &e, 16);
				if (e == c->hdr.p || errno || sz < 0)
					return -1;
				c->hdr.len = 0;
				if (sz == 0) {
					c->ch_state = CH_TRAILER;
				} else {
					c->remaining = sz;
					c->ch_state = CH_DATA;
				}
			} else {
				int empty = c->hdr.len <= 2; /* "\r\n" or "\n" */
				c->hdr.len = 0;
				if (empty)
					return n ? -1 : 1;
			}
			break;
		}
		case CH_DATA: {
			size_t take = (int64_t)n < c->remaining ? n : (size_t)c->remaining;
			if (sse_feed(c, p, take))
				return -2;
			c->remaining -= (int64_t)take;
			p += take, n -= take;
			if (c->remaining == 0)
				c->ch_state = CH_DATA_CRLF;
			break;
		}
		case CH_DATA_CRLF:
			if (*p == '\n')
				c->ch_state = CH_SIZE;
			else if (*p != '\r')
				return -1;
			p++, n--;
			break;
		}
	}
	return 0;
}

/* Bytes from the socket.  Returns 1 when the response is complete. */
static int feed(conn *c, const char *p, size_t n)
{
	if (c->state == ST_SENDING) /* the answer may come before EV_WRITE */
		c->state = ST_HDR;
	if (c->state == ST_HDR) {
		size_t old = c->hdr.len;
		if (buf_add(&c->hdr, p, n, MAX_HDR)) {
			fail(c, "too_long", "response header block");
			return -1;
		}
		size_t from = old > 3 ? old - 3 : 0;
		char *e = memmem(c->hdr.p + from, c->hdr.len - from, "\r\n\r\n", 4);
		if (!e)
			return 0;
		size_t head = (size_t)(e - c->hdr.p) + 4;
		size_t rest = c->hdr.len - head;
		char *tail = NULL;
		if (rest) {
			tail = malloc(rest);
			if (!tail) {
				fail(c, "nomem", NULL);
				return -1;
			}
			memcpy(tail, c->hdr.p + head, rest);
		}
		c->hdr.p[head] = 0;
		if (parse_head(c) != 0) {
			free(tail);
			fail(c, "bad_response", "status line");
			return -1;
		}
		c->hdr.len = 0;
		c->state = ST_BODY;
		int r = rest ? body_feed(c, tail, rest) : 0;
		if (c->body_mode == BODY_LENGTH && c->remaining == 0)
			r = 1;
		free(tail);
		if (r < 0) {
			fail(c, r == -2 ? "too_long" : "bad_chunking", NULL);
			return -1;
		}
		return r;
	}
	if (c->state == ST_BODY) {
		int r = body_feed(c, p, n);
		if (r < 0) {
			fail(c, r == -2 ? "too_long" : "bad_chunking", NULL);
			return -1;
		}
		return r;
	}
	fail(c, "unexpected_data", NULL);
	return -1;
}

/* ------------------------------------------------------------ I/O */

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
	conn *c = arg;
	static __thread char tmp[65536];
	(void)what;
	for (int rounds = 0; rounds < 4; rounds++) {
		ssize_t n = read(fd, tmp, sizeof tmp);
		if (n > 0) {
			int r = feed(c, tmp, (size_t)n);
			if (r < 0)
				return;
			if (r == 1) {
				response_done(c);
				return; /* the connection may have been closed or reused */
			}
			if ((size_t)n < sizeof tmp)
				return;
			continue;
		}
		if (n == 0) {
			if (c->state == ST_BODY && c->body_mode == BODY_EOF) {
				c->conn_close = 1;
				sse_dispatch(c);
				response_done(c);
			} else if (c->state == ST_BODY) {
				fail(c, "eof_mid_body", NULL);
			} else {
				fail(c, "eof_before_status", NULL);
			}
			return;
		}
		if (errno == EAGAIN || errno == EINTR)
			return;
		fail_errno(c, "read", errno);
		return;
	}
}

static void write_some(conn *c)
{
	while (c->wpos < req_len) {
		ssize_t n = write(c->fd, req_text + c->wpos, req_len - c->wpos);
		if (n > 0) {
			c->wpos += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EAGAIN) {
			event_add(c->wev, NULL);
			return;
		}
		fail_errno(c, "write", n < 0 ? errno : EPIPE);
		return;
	}
	if (c->state == ST_SENDING)
		c->state = ST_HDR;
}

static void send_request(conn *c)
{
	thr *t = c->t;
	c->t_req = now_us();
	if (opt.open) { /* counted in ol_dispatch; decided by the schedule */
		c->recording = in_window(c->t_sched);
		if (c->recording) {
			int64_t lag = c->t_req - c->t_sched;
			t->sent++;
			samples_add(&t->lag_us, lag);
			if (lag > LATE_US)
				t->late_sends++;
		}
	} else {
		c->recording = opt.hold || in_window(c->t_req);
		if (!opt.hold && c->t_req >= t_end) {
			finish_conn(c);
			return;
		}
		if (c->recording)
			t->requests++;
	}
	c->reqs++;
	c->wpos = 0;
	c->status = 0;
	c->tokens = c->done = c->sse_error = 0;
	c->hdr.len = c->line.len = c->data.len = 0;
	c->state = ST_SENDING;
	write_some(c);
}

static void write_cb(evutil_socket_t fd, short what, void *arg)
{
	conn *c = arg;
	(void)what;
	if (c->state == ST_CONNECTING) {
		int e = 0;
		socklen_t l = sizeof e;
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l);
		if (e) {
			fail_errno(c, "connect", e);
			return;
		}
		c->t->opened++;
		atomic_fetch_add(&g_connected, 1);
		event_add(c->rev, NULL);
		if (opt.open) {
			c->t->connecting--;
			ol_done(c, 1); /* idle: takes the oldest waiting request, if any */
			return;
		}
		send_request(c);
		return;
	}
	if (c->state == ST_SENDING)
		write_some(c);
}

static void start_conn(conn *c)
{
	thr *t = c->t;
	if (opt.open) { /* no request yet: ol_pump puts one on it when it is up */
		c->recording = 0;
		c->state = ST_CONNECTING;
	} else {
		int64_t now = now_us();
		c->recording = opt.hold || in_window(now);
		if (atomic_load(&g_stop) || (!opt.hold && now >= t_end)) {
			finish_conn(c);
			return;
		}
	}
	int fd = socket(dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fail_errno(c, "socket", errno);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->fd = fd;
	c->reqs = 0;
	t->connects++;
	event_assign(c->rev, t->base, fd, EV_READ | EV_PERSIST, read_cb, c);
	event_assign(c->wev, t->base, fd, EV_WRITE, write_cb, c);
	c->state = ST_CONNECTING;
	if (connect(fd, (struct sockaddr *)&dst, dst_len) == 0 || errno == EINPROGRESS) {
		event_add(c->wev, NULL);
		return;
	}
	fail_errno(c, "connect", errno);
}

/* ------------------------------------------------------------ open loop */

/* Request j's scheduled time (all threads share the one schedule). */
static int64_t sched_at(int64_t j)
{
	return t_start + (int64_t)((double)j * 1e6 / opt.rate);
}

static void idle_push(thr *t, conn *c)
{
	c->idle_prev = NULL;
	c->idle_next = t->idle;
	if (t->idle)
		t->idle->idle_prev = c;
	t->idle = c;
	c->in_idle = 1;
}

static void idle_remove(thr *t, conn *c)
{
	if (!c->in_idle)
		return;
	if (c->idle_prev)
		c->idle_prev->idle_next = c->idle_next;
	else
		t->idle = c->idle_next;
	if (c->idle_next)
		c->idle_next->idle_prev = c->idle_prev;
	c->idle_next = c->idle_prev = NULL;
	c->in_idle = 0;
}

/* Append a scheduled time to the waiting requests; -1 when MAX_PENDING are
 * already waiting (or no memory): the request is then the caller's to fail. */
static int pq_push(thr *t, int64_t s)
{
	if (t->pq_len == t->pq_cap) {
		if (t->pq_cap >= MAX_PENDING)
			return -1;
		size_t nc = t->pq_cap ? t->pq_cap * 2 : 1024;
		int64_t *p = malloc(nc * sizeof *p);
		if (!p)
			return -1;
		for (size_t i = 0; i < t->pq_len; i++)
			p[i] = t->pq[(t->pq_head + i) % t->pq_cap];
		free(t->pq);
		t->pq = p;
		t->pq_cap = nc;
		t->pq_head = 0;
	}
	t->pq[(t->pq_head + t->pq_len++) % t->pq_cap] = s;
	return 0;
}

static int64_t pq_pop(thr *t)
{
	int64_t s = t->pq[t->pq_head];
	t->pq_head = (t->pq_head + 1) % t->pq_cap;
	t->pq_len--;
	return s;
}

/* The slot's socket is gone; the slot can be opened again. */
static void ol_close(conn *c)
{
	thr *t = c->t;
	idle_remove(t, c);
	close_fd(c);
	c->state = ST_IDLE;
	t->free_slot[t->n_free++] = c;
}

/* End of the run on this thread: everything still in flight (aborting: the
 * drain time ran out) is counted, every socket closed, the loop left. */
static void ol_finish(thr *t, int aborting)
{
	for (unsigned i = 0; i < t->n; i++) {
		conn *c = &t->c[i];
		if (c->has_req) {
			if (aborting && c->recording)
				err_count(t, "unfinished", NULL);
			c->has_req = 0;
			t->busy--;
		}
		mark_ended_stream(c);
		close_fd(c);
		c->in_idle = 0;
		c->state = ST_DONE;
	}
	t->idle = NULL;
	while (t->pq_len) {
		int64_t s = pq_pop(t);
		if (in_window(s))
			err_count(t, "not_sent", NULL);
	}
	t->finished = 1;
	evtimer_del(t->sched_ev);
	event_base_loopexit(t->base, NULL);
}

/* Waiting requests onto idle connections; new connections (up to the cap)
 * for those no connection is on its way for.  Iterative: a nested call (a
 * send or a connect that fails at once) only asks the outer one to go round
 * again. */
static void ol_pump(thr *t)
{
	if (t->finished)
		return;
	if (t->pumping) {
		t->repump = 1;
		return;
	}
	t->pumping = 1;
	do {
		t->repump = 0;
		while (t->pq_len && t->idle && !t->finished) {
			conn *c = t->idle;
			idle_remove(t, c);
			c->t_sched = pq_pop(t);
			c->has_req = 1;
			t->busy++;
			send_request(c);
		}
		while (t->pq_len > t->connecting && t->n_free && !t->finished) {
			conn *c = t->free_slot[--t->n_free];
			t->connecting++;
			unsigned used = t->n - t->n_free;
			if (used > t->peak_conns)
				t->peak_conns = used;
			start_conn(c); /* a failure at once comes back through ol_fail */
		}
	} while (t->repump && !t->finished);
	t->pumping = 0;
	if (!t->finished && !t->pq_len && !t->busy && sched_at(t->next_j) >= t_end)
		ol_finish(t, 0);
}

/* A request's answer ended (reuse: the connection takes another), or a new
 * connection is up (no request on it yet). */
static void ol_done(conn *c, int reuse)
{
	thr *t = c->t;
	if (c->has_req) {
		c->has_req = 0;
		t->busy--;
	}
	if (reuse && !t->finished) {
		c->state = ST_READY;
		idle_push(t, c);
	} else {
		ol_close(c);
	}
	ol_pump(t);
}

/* Something failed on c.  With a request on it, that request fails; while
 * connecting, the oldest waiting request (the one the connection was opened
 * for, or an equivalent) fails, so that a server that refuses connections
 * costs one attempt per request and no more; an idle connection closed by
 * the server is only counted ("idle_closed"). */
static void ol_fail(conn *c, const char *kind, const char *detail)
{
	thr *t = c->t;
	if (c->has_req) {
		if (c->recording)
			err_count(t, kind, detail);
		c->has_req = 0;
		t->busy--;
	} else if (c->state == ST_CONNECTING) {
		t->connecting--;
		if (t->pq_len > t->connecting && in_window(pq_pop(t)))
			err_count(t, kind, detail);
	} else if (!strcmp(kind, "eof_before_status")) {
		t->idle_closed++;
	} else {
		err_count(t, kind, detail); /* e.g. bytes on an idle connection */
	}
	mark_ended_stream(c);
	ol_close(c);
	ol_pump(t);
}

/* Request scheduled at s is due: it waits for a connection (ol_pump). */
static void ol_dispatch(thr *t, int64_t s)
{
	int rec = in_window(s);
	if (rec) {
		t->requests++;
		if (!t->idle && !t->n_free && t->pq_len >= t->connecting)
			t->conn_waits++; /* at the cap, every connection busy */
	}
	if (pq_push(t, s) != 0 && rec)
		err_count(t, "backlog_full", NULL);
}

/* The schedule's timer: send what is due, re-arm. */
static void sched_cb(evutil_socket_t fd, short what, void *arg)
{
	thr *t = arg;
	(void)fd;
	(void)what;
	if (t->finished)
		return;
	if (atomic_load(&g_stop)) {
		ol_finish(t, 1);
		return;
	}
	int64_t now = now_us(), s;
	while ((s = sched_at(t->next_j)) <= now && s < t_end) {
		ol_dispatch(t, s);
		t->next_j += opt.threads;
	}
	ol_pump(t);
	if (t->finished)
		return;
	now = now_us();
	int64_t delay;
	if (s >= t_end) {
		delay = 10000; /* schedule done: watch g_stop */
	} else if (opt.tick_us > 0) {
		int64_t tick = (int64_t)opt.tick_us;
		while (t->next_tick <= now)
			t->next_tick += tick;
		delay = t->next_tick - now;
	} else {
		delay = s - now;
	}
	if (delay < 0)
		delay = 0;
	struct timeval tv = {(time_t)(delay / 1000000), (suseconds_t)(delay % 1000000)};
	/* libevent adds tv to the time it cached when the loop woke up; the
	 * callback took some of it */
	event_base_update_cache_time(t->base);
	evtimer_add(t->sched_ev, &tv);
}

/* Every 10 ms: open connections at --rate; watch g_stop. */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	thr *t = arg;
	(void)fd;
	(void)what;
	if (atomic_load(&g_stop)) {
		for (unsigned i = 0; i < t->n; i++) {
			conn *c = &t->c[i];
			if (c->state == ST_DONE)
				continue;
			if (c->state == ST_IDLE && i >= t->next_open && opt.hold)
				err_count(t, "not_started", NULL);
			else if (c->recording && c->state != ST_IDLE)
				err_count(t, "unfinished", NULL);
			evtimer_del(c->tev);
			finish_conn(c);
		}
		t->next_open = t->n;
		return;
	}
	if (t->next_open < t->n) {
		int64_t now = now_us();
		unsigned k;
		if (opt.rate <= 0) {
			k = t->n - t->next_open;
		} else {
			t->rate_acc += opt.rate / opt.threads * (double)(now - t->last_tick) / 1e6;
			k = (unsigned)t->rate_acc;
			t->rate_acc -= k;
		}
		t->last_tick = now;
		while (k-- && t->next_open < t->n)
			start_conn(&t->c[t->next_open++]);
	}
}

/* How long this thread has waited on a run queue, runnable but not running
 * (ns, from /proc/thread-self/schedstat; needs CONFIG_SCHED_INFO), or -1. */
static int64_t runq_wait_ns(void)
{
	unsigned long long run, wait;
	FILE *f = fopen("/proc/thread-self/schedstat", "r");
	if (!f)
		return -1;
	int ok = fscanf(f, "%llu %llu", &run, &wait) == 2;
	fclose(f);
	return ok ? (int64_t)wait : -1;
}

static void *thr_main(void *arg)
{
	thr *t = arg;
	if (opt.open) {
		int64_t w0 = runq_wait_ns();
		t->n_free = 0;
		for (unsigned i = t->n; i-- > 0;) /* slot 0 on top */
			t->free_slot[t->n_free++] = &t->c[i];
		t->next_j = t->idx;
		t->next_tick = t_start;
		prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* wake-ups on time, not 50 µs late */
		sched_cb(-1, 0, t);
		if (!t->finished)
			event_base_dispatch(t->base);
		int64_t w1 = runq_wait_ns();
		t->runq_ns = w0 >= 0 && w1 >= 0 ? w1 - w0 : -1;
		return NULL;
	}
	t->last_tick = now_us();
	t->active = t->n;
	if (t->n == 0)
		return NULL;
	tick_cb(-1, 0, t); /* the first batch now */
	struct timeval tv = {0, 10000};
	event_add(t->tick, &tv);
	if (t->active)
		event_base_dispatch(t->base);
	return NULL;
}

/* ------------------------------------------------------------ results */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static double pct(const samples *s, double p)
{
	if (!s->n)
		return -1;
	size_t i = (size_t)((p / 100.0) * (double)s->n + 0.999999);
	if (i > 0)
		i--;
	if (i >= s->n)
		i = s->n - 1;
	return s->v[i];
}

static void merge(samples *into, const samples *from)
{
	for (size_t i = 0; i < from->n; i++)
		samples_add(into, from->v[i]);
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static void print_num(const char *k, double v, int ms)
{
	if (v < 0)
		printf(",\"%s\":null", k);
	else if (ms)
		printf(",\"%s\":%.3f", k, v / 1000.0);
	else
		printf(",\"%s\":%.0f", k, v);
}

/* ------------------------------------------------------------ main */

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: sse_load --url HOST:PORT/PATH (--hold | --duration S) [options]\n"
	        "  --url U           e.g. 127.0.0.1:8080/v1/chat/completions (http:// allowed)\n"
	        "  --conc N          connections / streams (default 1)\n"
	        "  --threads T       event-loop threads (default 1)\n"
	        "  --model NAME      \"model\" in the body (default mock)\n"
	        "  --message TEXT    the user message (default \"Say something.\")\n"
	        "  --header 'K: V'   extra request header (repeatable, up to %d)\n"
	        "  --expect-tokens N count completed streams with another number of content\n"
	        "                    events as \"mismatch\"\n"
	        "  --hold            open N streams once and hold them (see --rate, --timeout-s)\n"
	        "  --rate R          hold: new connections per second (0 = all at once; default 0)\n"
	        "  --timeout-s S     hold: wait at most S s for every first token (default 60)\n"
	        "  --ready-file F    hold: create F when all streams have their first token\n"
	        "                    (or at the timeout)\n"
	        "  --duration S      closed loop for S s (keep-alive; one request at a time per\n"
	        "                    connection)\n"
	        "  --rate R --duration S  (R > 0) open loop instead: R requests per second on a\n"
	        "                    fixed schedule over keep-alive connections (at most --conc,\n"
	        "                    default %u); latency counts from each request's scheduled\n"
	        "                    time (see the top of bench/sse_load.c)\n"
	        "  --tick-us N       open loop: the timer fires every N us and sends what is due\n"
	        "                    (default 0: it is armed for the next scheduled request)\n"
	        "  --warmup S        closed/open loop: S s before the window, not recorded\n"
	        "                    (default 0)\n"
	        "  --drain-s S       after the window / the first tokens: wait at most S s for\n"
	        "                    streams in flight, then abort them as \"unfinished\" (120)\n"
	        "  --no-stream       \"stream\":false in the body; the answer is one JSON document\n"
	        "  --body-file F     the request body from F (at most 1 MiB; --model and\n"
	        "                    --message are then unused); the answer is taken as SSE when\n"
	        "                    the body has \"stream\":true, else as one JSON document\n"
	        "  --progress        a status line per second on stderr\n",
	        MAX_EXTRA_HEADERS, OPEN_DEFAULT_CONC);
}

static int parse_url(const char *u)
{
	if (!strncmp(u, "http://", 7))
		u += 7;
	else if (strstr(u, "://"))
		return -1;
	const char *slash = strchr(u, '/');
	const char *hp_end = slash ? slash : u + strlen(u);
	const char *colon = NULL;
	if (*u == '[') {
		const char *rb = memchr(u, ']', (size_t)(hp_end - u));
		if (!rb)
			return -1;
		snprintf(opt.host, sizeof opt.host, "%.*s", (int)(rb - u - 1), u + 1);
		colon = rb[1] == ':' ? rb + 1 : NULL;
	} else {
		colon = memchr(u, ':', (size_t)(hp_end - u));
		size_t hl = (size_t)((colon ? colon : hp_end) - u);
		if (hl == 0 || hl >= sizeof opt.host)
			return -1;
		snprintf(opt.host, sizeof opt.host, "%.*s", (int)hl, u);
	}
	if (colon)
		snprintf(opt.port, sizeof opt.port, "%.*s", (int)(hp_end - colon - 1), colon + 1);
	else
		snprintf(opt.port, sizeof opt.port, "80");
	snprintf(opt.path, sizeof opt.path, "%s", slash ? slash : "/v1/chat/completions");
	return 0;
}

static int num(const char *flag, const char *v, double lo, double hi, double *out)
{
	char *e;
	if (!v) {
		fprintf(stderr, "sse_load: %s needs a value\n", flag);
		return -1;
	}
	double d = strtod(v, &e);
	if (e == v || *e || d < lo || d > hi) {
		fprintf(stderr, "sse_load: %s takes a number %g..%g (got '%s')\n", flag, lo, hi, v);
		return -1;
	}
	*out = d;
	return 0;
}

/* JSON-escape s into a static buffer (the message and model are short). */
static const char *esc(const char *s, char *out, size_t cap)
{
	size_t j = 0;
	for (; *s && j + 7 < cap; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			out[j++] = '\\', out[j++] = (char)ch;
		else if (ch < 0x20)
			j += (size_t)snprintf(out + j, cap - j, "\\u%04x", ch);
		else
			out[j++] = (char)ch;
	}
	out[j] = 0;
	return out;
}

int main(int argc, char **argv)
{
	const char *url = NULL;
	int have_duration = 0, have_conc = 0, no_stream = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		double d;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--url") && v) {
			url = v, i++;
		} else if (!strcmp(a, "--model") && v) {
			opt.model = v, i++;
		} else if (!strcmp(a, "--message") && v) {
			opt.message = v, i++;
		} else if (!strcmp(a, "--header") && v) {
			if (opt.n_headers == MAX_EXTRA_HEADERS || !strchr(v, ':') || strpbrk(v, "\r\n")) {
				fprintf(stderr, "sse_load: bad or too many --header\n");
				return 2;
			}
			opt.headers[opt.n_headers++] = v, i++;
		} else if (!strcmp(a, "--ready-file") && v) {
			opt.ready_file = v, i++;
		} else if (!strcmp(a, "--hold")) {
			opt.hold = 1;
		} else if (!strcmp(a, "--progress")) {
			opt.progress = 1;
		} else if (!strcmp(a, "--no-stream")) {
			opt.sse = 0;
			no_stream = 1;
		} else if (!strcmp(a, "--body-file") && v) {
			opt.body_file = v, i++;
		} else if (!strcmp(a, "--tick-us")) {
			if (num(a, v, 0, 1e6, &opt.tick_us))
				return 2;
			i++;
		} else if (!strcmp(a, "--conc")) {
			if (num(a, v, 1, 10000000, &d))
				return 2;
			opt.conc = (unsigned)d, i++;
			have_conc = 1;
		} else if (!strcmp(a, "--threads")) {
			if (num(a, v, 1, 256, &d))
				return 2;
			opt.threads = (unsigned)d, i++;
		} else if (!strcmp(a, "--expect-tokens")) {
			if (num(a, v, 0, 1e9, &d))
				return 2;
			opt.expect_tokens = (long)d, i++;
		} else if (!strcmp(a, "--duration")) {
			if (num(a, v, 0.001, 1e6, &opt.duration_s))
				return 2;
			have_duration = 1, i++;
		} else if (!strcmp(a, "--warmup")) {
			if (num(a, v, 0, 1e6, &opt.warmup_s))
				return 2;
			i++;
		} else if (!strcmp(a, "--timeout-s")) {
			if (num(a, v, 0.001, 1e6, &opt.timeout_s))
				return 2;
			i++;
		} else if (!strcmp(a, "--drain-s")) {
			if (num(a, v, 0, 1e6, &opt.drain_s))
				return 2;
			i++;
		} else if (!strcmp(a, "--rate")) {
			if (num(a, v, 0, 1e9, &opt.rate))
				return 2;
			i++;
		} else {
			fprintf(stderr, "sse_load: unknown option or missing value: %s\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (!url || parse_url(url) != 0) {
		fprintf(stderr, "sse_load: --url HOST:PORT/PATH is required\n");
		usage(stderr);
		return 2;
	}
	if (opt.hold == have_duration) {
		fprintf(stderr, "sse_load: give exactly one of --hold and --duration S\n");
		return 2;
	}
	opt.open = !opt.hold && opt.rate > 0;
	if (opt.open && !have_conc)
		opt.conc = OPEN_DEFAULT_CONC;
	if (opt.threads > opt.conc)
		opt.threads = opt.conc;

	/* file descriptors: soft limit up to the hard limit */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)opt.conc + 64)
		fprintf(stderr, "sse_load: warning: RLIMIT_NOFILE %llu < conc %u + 64; expect "
		                "socket_EMFILE (raise ulimit -Hn)\n",
		        (unsigned long long)rl.rlim_cur, opt.conc);
	signal(SIGPIPE, SIG_IGN);

	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
	int gr = getaddrinfo(opt.host, opt.port, &hints, &ai);
	if (gr != 0 || !ai) {
		fprintf(stderr, "sse_load: %s:%s: %s\n", opt.host, opt.port, gai_strerror(gr));
		return 1;
	}
	memcpy(&dst, ai->ai_addr, ai->ai_addrlen);
	dst_len = ai->ai_addrlen;
	freeaddrinfo(ai);

	char em[512], eh[512];
	static char body[MAX_BODY_FILE + 1];
	int bl;
	if (opt.body_file) {
		FILE *bf = fopen(opt.body_file, "rb");
		if (!bf) {
			fprintf(stderr, "sse_load: %s: %s\n", opt.body_file, strerror(errno));
			return 2;
		}
		size_t got = fread(body, 1, sizeof body, bf);
		fclose(bf);
		if (got > MAX_BODY_FILE) {
			fprintf(stderr, "sse_load: %s: more than %u bytes\n", opt.body_file, MAX_BODY_FILE);
			return 2;
		}
		body[got] = 0;
		bl = (int)got;
		/* "stream" : true anywhere in the body means an SSE answer */
		int sse = 0;
		for (const char *q = body; (q = strstr(q, "\"stream\"")) != NULL;) {
			q += 8;
			q += strspn(q, " \t\r\n");
			if (*q != ':')
				continue;
			q++;
			q += strspn(q, " \t\r\n");
			if (!strncmp(q, "true", 4))
				sse = 1;
		}
		opt.sse = sse && !no_stream;
	} else {
		bl = snprintf(body, sizeof body,
		              "{\"model\":\"%s\",\"stream\":%s,\"messages\":[{\"role\":\"user\","
		              "\"content\":\"%s\"}]}",
		              esc(opt.model, em, sizeof em), opt.sse ? "true" : "false",
		              esc(opt.message, eh, sizeof eh));
		if (bl < 0 || (size_t)bl >= sizeof body) {
			fprintf(stderr, "sse_load: --model/--message too long\n");
			return 2;
		}
	}
	size_t cap = 4096 + (size_t)bl;
	for (int i = 0; i < opt.n_headers; i++)
		cap += strlen(opt.headers[i]) + 2;
	req_text = malloc(cap);
	if (!req_text)
		return 1;
	int n = snprintf(req_text, cap,
	                 "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
	                 "Accept: %s\r\nAuthorization: Bearer sk-bench\r\n"
	                 "Content-Length: %d\r\n",
	                 opt.path, opt.host, opt.port,
	                 opt.sse ? "text/event-stream" : "application/json", bl);
	for (int i = 0; i < opt.n_headers; i++)
		n += snprintf(req_text + n, cap - (size_t)n, "%s\r\n", opt.headers[i]);
	n += snprintf(req_text + n, cap - (size_t)n, "\r\n");
	memcpy(req_text + n, body, (size_t)bl);
	req_len = (size_t)n + (size_t)bl;

	thr *ts = calloc(opt.threads, sizeof *ts);
	conn *cs = calloc(opt.conc, sizeof *cs);
	if (!ts || !cs) {
		fprintf(stderr, "sse_load: out of memory\n");
		return 1;
	}
	struct event_config *cfg = event_config_new();
	event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
	if (opt.open) /* CLOCK_MONOTONIC (not _COARSE) and a timerfd: µs timers */
		event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
	unsigned per = opt.conc / opt.threads, extra = opt.conc % opt.threads, at = 0;
	for (unsigned i = 0; i < opt.threads; i++) {
		thr *t = &ts[i];
		t->idx = i;
		t->base = event_base_new_with_config(cfg);
		if (!t->base) {
			fprintf(stderr, "sse_load: event_base_new failed\n");
			return 1;
		}
		t->tick = event_new(t->base, -1, EV_PERSIST, tick_cb, t);
		t->c = cs + at;
		t->n = per + (i < extra);
		if (opt.open) {
			t->sched_ev = evtimer_new(t->base, sched_cb, t);
			t->free_slot = calloc(t->n, sizeof *t->free_slot);
			if (!t->sched_ev || !t->free_slot) {
				fprintf(stderr, "sse_load: out of memory\n");
				return 1;
			}
		}
		for (unsigned k = 0; k < t->n; k++) {
			conn *c = &t->c[k];
			c->t = t;
			c->fd = -1;
			c->rev = event_new(t->base, -1, EV_READ | EV_PERSIST, read_cb, c);
			c->wev = event_new(t->base, -1, EV_WRITE, write_cb, c);
			c->tev = evtimer_new(t->base, retry_cb, c);
			if (!c->rev || !c->wev || !c->tev) {
				fprintf(stderr, "sse_load: out of memory\n");
				return 1;
			}
		}
		at += t->n;
	}
	event_config_free(cfg);

	t_start = now_us();
	t_record = t_start + (int64_t)(opt.warmup_s * 1e6);
	t_end = opt.hold ? INT64_MAX : t_record + (int64_t)(opt.duration_s * 1e6);
	struct rusage ru0, ru1;
	getrusage(RUSAGE_SELF, &ru0);
	for (unsigned i = 0; i < opt.threads; i++) {
		if (pthread_create(&ts[i].tid, NULL, thr_main, &ts[i]) != 0) {
			fprintf(stderr, "sse_load: pthread_create failed\n");
			return 1;
		}
	}

	/* The main thread watches. */
	int64_t t_all_first = -1, t_phase = -1, t_stop_at = INT64_MAX;
	unsigned open_at_once = 0, first_at_phase = 0;
	char *joined = calloc(opt.threads, 1);
	if (!joined)
		return 1;
	int64_t last_progress = t_start;
	for (;;) {
		struct timespec ts_sleep = {0, 5 * 1000 * 1000};
		nanosleep(&ts_sleep, NULL);
		int64_t now = now_us();
		unsigned ft = atomic_load(&g_first_token), ended = atomic_load(&g_ended);
		if (opt.hold && t_phase < 0) {
			/* every stream has its first token or ended without one */
			int all = ft >= opt.conc;
			if (all || atomic_load(&g_settled) >= opt.conc ||
			    now - t_start >= (int64_t)(opt.timeout_s * 1e6)) {
				t_phase = now;
				if (all)
					t_all_first = now;
				open_at_once = atomic_load(&g_open);
				first_at_phase = ft;
				t_stop_at = now + (int64_t)(opt.drain_s * 1e6);
				if (opt.ready_file) {
					FILE *f = fopen(opt.ready_file, "w");
					if (f) {
						fprintf(f, "%u\n", open_at_once);
						fclose(f);
					}
				}
				if (opt.progress)
					fprintf(stderr, "sse_load: %.1f s: %s; %u streams open at once\n",
					        (now - t_start) / 1e6,
					        all ? "every stream has its first token"
					            : t_phase - t_start < (int64_t)(opt.timeout_s * 1e6)
					                  ? "every stream has its first token or has ended"
					                  : "first-token timeout",
					        open_at_once);
			}
		}
		if (!opt.hold && t_stop_at == INT64_MAX && now >= t_end)
			t_stop_at = t_end + (int64_t)(opt.drain_s * 1e6);
		if (now >= t_stop_at && !atomic_load(&g_stop))
			atomic_store(&g_stop, 1);
		if (opt.progress && now - last_progress >= 1000000) {
			last_progress = now;
			fprintf(stderr, "sse_load: %.1f s: connected %u, first token %u, open %u, ended %u\n",
			        (now - t_start) / 1e6, atomic_load(&g_connected), ft, atomic_load(&g_open),
			        ended);
		}
		unsigned alive = 0;
		for (unsigned i = 0; i < opt.threads; i++) {
			if (joined[i])
				continue;
			if (pthread_tryjoin_np(ts[i].tid, NULL) == 0)
				joined[i] = 1;
			else
				alive++;
		}
		if (!alive)
			break;
	}
	int64_t t_fin = now_us();
	getrusage(RUSAGE_SELF, &ru1);

	/* merge */
	thr all = {0};
	for (unsigned i = 0; i < opt.threads; i++) {
		thr *t = &ts[i];
		all.requests += t->requests;
		all.completed += t->completed;
		all.tokens += t->tokens;
		all.mismatch += t->mismatch;
		all.connects += t->connects;
		all.opened += t->opened;
		merge(&all.ttft_us, &t->ttft_us);
		merge(&all.total_us, &t->total_us);
		merge(&all.svc_us, &t->svc_us);
		merge(&all.lag_us, &t->lag_us);
		all.sent += t->sent;
		all.late_sends += t->late_sends;
		all.conn_waits += t->conn_waits;
		all.idle_closed += t->idle_closed;
		all.peak_conns += t->peak_conns;
		if (t->t_last_done > all.t_last_done)
			all.t_last_done = t->t_last_done;
		if (t->runq_ns < 0 || all.runq_ns < 0)
			all.runq_ns = -1;
		else
			all.runq_ns += t->runq_ns;
		for (int k = 0; k < t->n_kinds; k++)
			err_add(&all, t->kinds[k].name, t->kinds[k].n);
		if (!all.first_error[0] && t->first_error[0])
			memcpy(all.first_error, t->first_error, sizeof all.first_error);
	}
	samples *to_sort[] = {&all.ttft_us, &all.total_us, &all.svc_us, &all.lag_us};
	for (size_t i = 0; i < sizeof to_sort / sizeof to_sort[0]; i++)
		if (to_sort[i]->n) /* qsort(NULL, 0, ...) is undefined */
			qsort(to_sort[i]->v, to_sort[i]->n, sizeof(uint32_t), cmp_u32);
	uint64_t nerr = 0;
	for (int k = 0; k < all.n_kinds; k++)
		nerr += all.kinds[k].n;

	double cpu_s = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
	               (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
	               (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
	               (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
	double window_s = opt.hold ? (t_fin - t_start) / 1e6 : (t_fin - t_record) / 1e6;
	if (opt.open) {
		/* from the window's start to the last completion: a server that
		 * falls behind the schedule answers at a lower rate than offered */
		window_s = opt.duration_s;
		if (all.t_last_done && (all.t_last_done - t_record) / 1e6 > window_s)
			window_s = (all.t_last_done - t_record) / 1e6;
	}

	printf("{\"mode\":\"%s\",\"conc\":%u,\"threads\":%u",
	       opt.hold ? "hold" : opt.open ? "open" : "closed", opt.conc, opt.threads);
	printf(",\"url\":");
	char u[1400];
	snprintf(u, sizeof u, "%s:%s%s", opt.host, opt.port, opt.path);
	json_str(u);
	printf(",\"opened\":%llu,\"connects\":%llu,\"requests\":%llu,\"first_token\":%u"
	       ",\"completed\":%llu,\"error_count\":%llu",
	       (unsigned long long)all.opened, (unsigned long long)all.connects,
	       (unsigned long long)all.requests, atomic_load(&g_first_token),
	       (unsigned long long)all.completed, (unsigned long long)nerr);
	printf(",\"errors\":{");
	for (int k = 0; k < all.n_kinds; k++)
		printf("%s\"%s\":%llu", k ? "," : "", all.kinds[k].name,
		       (unsigned long long)all.kinds[k].n);
	printf("}");
	if (opt.hold) {
		printf(",\"open_at_once\":%u,\"first_token_at_timeout\":%u,\"peak_open\":%u", open_at_once,
		       first_at_phase, atomic_load(&g_peak_open));
		if (t_all_first >= 0)
			printf(",\"all_first_token_s\":%.3f", (t_all_first - t_start) / 1e6);
		else
			printf(",\"all_first_token_s\":null");
	}
	if (opt.open) {
		/* requests = scheduled in the window = completed + error_count */
		printf(",\"answer\":\"%s\",\"rate\":%.1f,\"duration_s\":%.3f,\"warmup_s\":%.3f"
		       ",\"tick_us\":%.0f,\"sent\":%llu,\"late_sends\":%llu,\"conn_waits\":%llu"
		       ",\"peak_conns\":%u,\"idle_closed\":%llu",
		       opt.sse ? "sse" : "json", opt.rate, opt.duration_s, opt.warmup_s, opt.tick_us,
		       (unsigned long long)all.sent, (unsigned long long)all.late_sends,
		       (unsigned long long)all.conn_waits, all.peak_conns,
		       (unsigned long long)all.idle_closed);
		const samples *l = &all.total_us;
		print_num("lat_p50_us", pct(l, 50), 0);
		print_num("lat_p90_us", pct(l, 90), 0);
		print_num("lat_p99_us", pct(l, 99), 0);
		print_num("lat_p999_us", pct(l, 99.9), 0);
		print_num("lat_max_us", l->n ? (double)l->v[l->n - 1] : -1.0, 0);
		print_num("svc_p50_us", pct(&all.svc_us, 50), 0);
		print_num("svc_p99_us", pct(&all.svc_us, 99), 0);
		print_num("send_lag_p50_us", pct(&all.lag_us, 50), 0);
		print_num("send_lag_p99_us", pct(&all.lag_us, 99), 0);
		print_num("send_lag_max_us",
		          all.lag_us.n ? (double)all.lag_us.v[all.lag_us.n - 1] : -1.0, 0);
		printf(",\"sent_per_s\":%.1f", all.sent / opt.duration_s);
		/* the client's threads runnable but kept off the CPU (other work) */
		print_num("client_runq_ms", all.runq_ns < 0 ? -1.0 : all.runq_ns / 1e6, 0);
	}
	if (opt.expect_tokens >= 0)
		printf(",\"mismatch\":%llu", (unsigned long long)all.mismatch);
	print_num("ttft_p50_us", pct(&all.ttft_us, 50), 0);
	print_num("ttft_p90_us", pct(&all.ttft_us, 90), 0);
	print_num("ttft_p99_us", pct(&all.ttft_us, 99), 0);
	print_num("ttft_max_us", all.ttft_us.n ? (double)all.ttft_us.v[all.ttft_us.n - 1] : -1.0, 0);
	print_num("total_p50_ms", pct(&all.total_us, 50), 1);
	print_num("total_p99_ms", pct(&all.total_us, 99), 1);
	printf(",\"elapsed_s\":%.3f,\"rps\":%.1f,\"tokens_per_s\":%.0f,\"client_cpu_pct\":%.1f",
	       window_s, window_s > 0 ? all.completed / window_s : 0.0,
	       window_s > 0 ? all.tokens / window_s : 0.0,
	       (t_fin - t_start) > 0 ? 100.0 * cpu_s / ((t_fin - t_start) / 1e6) : 0.0);
	printf(",\"first_error\":");
	if (all.first_error[0])
		json_str(all.first_error);
	else
		printf("null");
	printf("}\n");
	fflush(stdout);
	return 0;
}
