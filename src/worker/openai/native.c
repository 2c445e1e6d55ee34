/* native.c - the OpenAI worker's native HTTP/1.1 client for http://
 * upstreams: raw non-blocking sockets and libevent events on the shard's
 * loop, a keep-alive pool per shard, names resolved by evdns.  See
 * openai_int.h for the contract with openai.c and
 * docs/internals/openai-worker.md ("The native transport") for the design.
 *
 * Threads: everything here runs on the shard thread that owns the
 * oai_shard; oai_state (the parsed target, the static head) is read-only.
 *
 * A call goes through phases (nt_call.phase):
 *   NP_SLOT     waiting for a connection slot (max_concurrency reached)
 *   NP_DNS      waiting for the shard's resolver
 *   NP_CONNECT  non-blocking connect on its own new connection
 *   NP_SEND     writing head + body (sendmsg of three iovecs; EV_WRITE on a
 *               partial write)
 *   NP_RECV     reading: every read goes through sl_h1c_feed, body bytes to
 *               sl__oai_body (the same path as the curl transport's)
 *   NP_FAILED   a failure is recorded and the call's timer fires at once to
 *               end it (so no call ends inside infer, nor inside a resolver
 *               callback that runs inside infer)
 * Each call has one timer (c->ft): the connect deadline, the first-token
 * limit, the total limit and a recorded failure; when it fires it ends the
 * call for what is due, else re-arms itself for the next deadline (so a
 * first token only clears a flag).
 *
 * Rules that keep the call's end single and safe: sl_infer_done is only
 * reached through sl__oai_finish / sl__oai_first_token_timeout, from this
 * file's event callbacks, after sl_h1c_feed returned; a cancel() that comes
 * while the shard is busy (sl_h1c_feed or sl_infer_token on the stack) is
 * deferred by openai.c and reaped (sl__oai_reap) when the event callback
 * is done.  A connection is released (pool or close) before its call ends,
 * so the next call, started by the pipeline from sl_infer_done, may reuse
 * it at once.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/log.h"
#include "worker/openai/openai_int.h"

#define NT_RBUF (16u << 10)       /* the shard's read buffer */
#define NT_IDLE_MS 60000u         /* an idle pooled connection is closed after */
#define NT_DNS_TTL_MS 60000u      /* resolved addresses are reused for */
#define NT_READS_PER_EVENT 4      /* reads per readable event (fairness) */
#define NT_HEAD_MAX (1u << 20)    /* bound on the static head */
#define NT_EV_TIMED 0x4000        /* evflags marker: added with a timeout */
#define MS_NS 1000000ull

enum { NP_NEW = 0, NP_SLOT, NP_DNS, NP_CONNECT, NP_SEND, NP_RECV, NP_FAILED };
enum { C_CONNECTING = 1, C_SENDING, C_READING, C_IDLE };

/* One TCP connection to the upstream.  Owned by its call while busy (freed
 * with it unless released to the pool first), by the shard's pool while
 * idle. */
struct nt_conn {
	oai_shard *ss;
	oai_call *call;           /* the call it carries, NULL while idle */
	nt_conn *prev, *next;     /* pool links, while idle */
	int fd;
	uint8_t state;            /* C_* */
	uint8_t reused;           /* has carried a complete response */
	short evflags;            /* what ev is added with, 0 = not added */
	struct event ev;
};

static void nt_acquire(oai_call *c);
static void nt_connect(oai_call *c);
static void nt_send(oai_call *c);
static void nt_on_io(evutil_socket_t fd, short what, void *arg);

/* ------------------------------------------------------------ helpers */

static int hsafe(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch < 0x20 || ch == 0x7f)
			return 0;
	}
	return 1;
}

static int name_is(const char *h, size_t nlen, const char *lower)
{
	return strlen(lower) == nlen && strncasecmp(h, lower, nlen) == 0;
}

static int hexd(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = (char)(ch | 0x20);
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

/* Percent-decodes s[0..len) into b (as curl does with URL userinfo). */
static int pct_decode(sl_dynbuf *b, const char *s, size_t len)
{
	int rc = SL_OK;
	for (size_t i = 0; rc == SL_OK && i < len; i++) {
		char ch = s[i];
		if (ch == '%' && i + 2 < len && hexd(s[i + 1]) >= 0 && hexd(s[i + 2]) >= 0) {
			ch = (char)(hexd(s[i + 1]) * 16 + hexd(s[i + 2]));
			i += 2;
		}
		rc = sl_dynbuf_add(b, &ch, 1);
	}
	return rc;
}

static int base64(sl_dynbuf *b, const unsigned char *s, size_t len)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	int rc = SL_OK;
	for (size_t i = 0; rc == SL_OK && i < len; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)s[i + 1] << 8;
		if (i + 2 < len)
			v |= s[i + 2];
		char o[4] = {tab[(v >> 18) & 63], tab[(v >> 12) & 63],
		             i + 1 < len ? tab[(v >> 6) & 63] : '=', i + 2 < len ? tab[v & 63] : '='};
		rc = sl_dynbuf_add(b, o, 4);
	}
	return rc;
}

/* ------------------------------------------------------------ create */

static int host_name_ok(const char *h, size_t n)
{
	if (n == 0 || n > 253)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)h[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '-' || ch == '.' || ch == '_'))
			return 0;
	}
	return 1;
}

/* Does an extra header (any value, empty included) have this name? */
static int has_extra(const char *const *extra, size_t nh, const char *lower)
{
	for (size_t i = 0; i < nh; i++) {
		const char *colon = strchr(extra[i], ':');
		if (colon && name_is(extra[i], (size_t)(colon - extra[i]), lower))
			return 1;
	}
	return 0;
}

int sl__oai_nt_init(oai_state *st, const char *const *extra, size_t nh)
{
	nt_target *t = &st->nt;
	const char *u = st->endpoint;
	if (strncasecmp(u, "http://", 7) != 0)
		return SL_EINVAL;
	const char *a = u + 7;
	const char *ae = a + strcspn(a, "/?#");
	const char *at = NULL;
	for (const char *q = a; q < ae; q++)
		if (*q == '@')
			at = q;
	const char *h = at ? at + 1 : a, *hend, *pstart = NULL;
	int v6 = 0;
	if (h < ae && *h == '[') {
		const char *close = memchr(h, ']', (size_t)(ae - h));
		if (!close)
			return SL_EINVAL;
		v6 = 1;
		hend = close;
		h++;
		if (close + 1 < ae) {
			if (close[1] != ':')
				return SL_EINVAL;
			pstart = close + 2;
		}
	} else {
		const char *colon = memchr(h, ':', (size_t)(ae - h));
		hend = colon ? colon : ae;
		pstart = colon ? colon + 1 : NULL;
	}
	size_t hl = (size_t)(hend - h);
	char host[256];
	if (hl == 0 || hl >= sizeof host)
		return SL_EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	unsigned port = 80;
	int port_given = 0;
	if (pstart && pstart < ae) {
		size_t pl = (size_t)(ae - pstart);
		if (pl > 5)
			return SL_EINVAL;
		port = 0;
		for (size_t i = 0; i < pl; i++) {
			if (pstart[i] < '0' || pstart[i] > '9')
				return SL_EINVAL;
			port = port * 10 + (unsigned)(pstart[i] - '0');
		}
		if (port == 0 || port > 65535)
			return SL_EINVAL;
		port_given = 1;
	}
	memset(&t->addr, 0, sizeof t->addr);
	if (v6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&t->addr;
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			return SL_EINVAL; /* zones and the like: curl's job */
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		t->addrlen = sizeof *s6;
		t->literal = 1;
	} else {
		if (!host_name_ok(host, hl))
			return SL_EINVAL;
		struct sockaddr_in *s4 = (struct sockaddr_in *)&t->addr;
		if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
			s4->sin_family = AF_INET;
			s4->sin_port = htons((uint16_t)port);
			t->addrlen = sizeof *s4;
			t->literal = 1;
		}
	}
	t->port = (uint16_t)port;
	snprintf(t->port_str, sizeof t->port_str, "%u", port);
	t->pool_cap = st->maxconc ? st->maxconc : SL_OPENAI_DEFAULT_POOL;

	/* request-target: what follows the authority, without a fragment */
	const char *path = ae;
	size_t pathl = strcspn(path, "#");

	sl_dynbuf b;
	sl_dynbuf_init(&b, NT_HEAD_MAX);
	int rc = sl_dynbuf_addstr(&b, "POST ");
	if (rc == SL_OK && (pathl == 0 || path[0] != '/'))
		rc = sl_dynbuf_add(&b, "/", 1);
	if (rc == SL_OK)
		rc = sl_dynbuf_add(&b, path, pathl);
	if (rc == SL_OK)
		rc = sl_dynbuf_addstr(&b, " HTTP/1.1\r\n");
	/* curl's own Host and User-Agent give way to extra headers of the same
	 * name (even empty ones, which curl reads as "do not send") */
	if (rc == SL_OK && !has_extra(extra, nh, "host"))
		rc = sl_dynbuf_printf(&b, "Host: %s%s%s%s%s\r\n", v6 ? "[" : "", host, v6 ? "]" : "",
		                      port_given && port != 80 ? ":" : "",
		                      port_given && port != 80 ? t->port_str : "");
	if (rc == SL_OK && !has_extra(extra, nh, "user-agent"))
		rc = sl_dynbuf_addstr(&b, "User-Agent: sluice/" SLUICE_VERSION "\r\n");
	if (rc == SL_OK)
		rc = sl_dynbuf_addstr(&b, "Content-Type: application/json\r\n");
	if (rc == SL_OK)
		rc = sl_dynbuf_addstr(&b, st->stream ? "Accept: text/event-stream\r\n"
		                                     : "Accept: application/json\r\n");
	for (size_t i = 0; rc == SL_OK && i < nh; i++) {
		const char *x = extra[i], *colon = strchr(x, ':');
		size_t nl = (size_t)(colon - x);
		const char *v = colon + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		if (!*v)
			continue; /* "Name:" removes a header, as with curl */
		if (name_is(x, nl, "content-length") || name_is(x, nl, "transfer-encoding"))
			continue; /* the framing is the transport's */
		if (name_is(x, nl, "connection") && strcasestr(v, "close"))
			t->no_reuse = 1;
		rc = sl_dynbuf_addstr(&b, x);
		if (rc == SL_OK)
			rc = sl_dynbuf_add(&b, "\r\n", 2);
	}
	if (rc == SL_OK && st->auth) {
		rc = sl_dynbuf_addstr(&b, st->auth);
		if (rc == SL_OK)
			rc = sl_dynbuf_add(&b, "\r\n", 2);
	} else if (rc == SL_OK && at && !has_extra(extra, nh, "authorization")) {
		/* user:password@ in the URL: Basic authentication, as curl */
		sl_dynbuf cred;
		sl_dynbuf_init(&cred, 4 * SL_OPENAI_MAX_STRING);
		rc = pct_decode(&cred, a, (size_t)(at - a));
		if (rc == SL_OK && !memchr(a, ':', (size_t)(at - a)))
			rc = sl_dynbuf_add(&cred, ":", 1);
		if (rc == SL_OK)
			rc = sl_dynbuf_addstr(&b, "Authorization: Basic ");
		if (rc == SL_OK)
			rc = base64(&b, (const unsigned char *)sl_dynbuf_str(&cred), cred.len);
		if (rc == SL_OK)
			rc = sl_dynbuf_add(&b, "\r\n", 2);
		if (cred.p)
			explicit_bzero(cred.p, cred.cap);
		sl_dynbuf_free(&cred);
	}
	if (rc == SL_OK)
		t->host = strdup(host);
	if (rc != SL_OK || !t->host) {
		if (b.p)
			explicit_bzero(b.p, b.cap);
		sl_dynbuf_free(&b);
		free(t->host);
		t->host = NULL;
		return rc == SL_OK ? SL_ENOMEM : rc == SL_ETOOBIG ? SL_EINVAL : rc;
	}
	t->head_len = b.len;
	t->head = sl_dynbuf_take(&b, NULL);
	return SL_OK;
}

void sl__oai_nt_state_free(oai_state *st)
{
	nt_target *t = &st->nt;
	if (t->head) {
		explicit_bzero(t->head, t->head_len);
		free(t->head);
		t->head = NULL;
	}
	free(t->host);
	t->host = NULL;
}

/* ------------------------------------------------------------ lists */

static void wait_push(oai_call **head, oai_call **tail, oai_call *c)
{
	nt_call *n = &c->u.nt;
	n->wnext = NULL;
	n->wprev = *tail;
	if (*tail)
		(*tail)->u.nt.wnext = c;
	else
		*head = c;
	*tail = c;
}

static void wait_remove(oai_call **head, oai_call **tail, oai_call *c)
{
	nt_call *n = &c->u.nt;
	if (n->wprev)
		n->wprev->u.nt.wnext = n->wnext;
	else
		*head = n->wnext;
	if (n->wnext)
		n->wnext->u.nt.wprev = n->wprev;
	else
		*tail = n->wprev;
	n->wprev = n->wnext = NULL;
}

static void pool_unlink(nt_shard *ns, nt_conn *k)
{
	if (k->prev)
		k->prev->next = k->next;
	else
		ns->idle_head = k->next;
	if (k->next)
		k->next->prev = k->prev;
	else
		ns->idle_tail = k->prev;
	k->prev = k->next = NULL;
	ns->n_idle--;
}

/* ------------------------------------------------------------ connections */

/* Watches k for flags (EV_* ), with an optional timeout.  The same flags
 * again only change the timeout (event_add / event_remove_timer touch the
 * timer heap, not epoll): idle <-> reading is EV_READ|EV_PERSIST both ways,
 * so a pooled connection costs no epoll_ctl per request. */
static void conn_watch(nt_conn *k, short flags, const struct timeval *tv)
{
	short mark = (short)(flags | (tv ? NT_EV_TIMED : 0));
	if (k->evflags == mark && !tv)
		return;
	if (k->evflags && (k->evflags & ~NT_EV_TIMED) == flags) {
		if (tv)
			event_add(&k->ev, tv);
		else
			event_remove_timer(&k->ev);
		k->evflags = mark;
		return;
	}
	if (k->evflags)
		event_del(&k->ev);
	event_assign(&k->ev, k->ss->base, k->fd, flags, nt_on_io, k);
	event_add(&k->ev, tv);
	k->evflags = mark;
}

/* Closes and frees k (not in the pool, no call attached). */
static void conn_close(nt_conn *k)
{
	if (k->evflags)
		event_del(&k->ev);
	close(k->fd);
	k->ss->nt.n_conns--;
	free(k);
}

/* Starts calls waiting for a slot while there is room.  Not re-entrant:
 * a nested call returns at once (the outer loop goes on). */
static void nt_wake(oai_shard *ss)
{
	nt_shard *ns = &ss->nt;
	if (ss->closed || ns->waking)
		return;
	ns->waking = 1;
	uint32_t maxc = ss->st->maxconc;
	while (ns->slot_head && (!maxc || ns->n_conns < maxc || ns->idle_head)) {
		oai_call *c = ns->slot_head;
		wait_remove(&ns->slot_head, &ns->slot_tail, c);
		c->u.nt.phase = NP_NEW;
		nt_acquire(c);
	}
	ns->waking = 0;
}

static void conn_attach(oai_call *c, nt_conn *k)
{
	nt_call *n = &c->u.nt;
	n->conn = k;
	k->call = c;
	k->state = C_SENDING;
	n->phase = NP_SEND;
	n->off = 0;
	sl_h1c_init(&n->h1, 0);
}

/* A connection that carried a complete response: to the first call
 * waiting for a slot, else to the pool (the oldest idle one is closed when
 * the pool is full). */
static void pool_put(oai_shard *ss, nt_conn *k)
{
	nt_shard *ns = &ss->nt;
	k->reused = 1;
	k->call = NULL;
	if (ss->closed || ss->st->nt.no_reuse) {
		conn_close(k);
		nt_wake(ss);
		return;
	}
	if (ns->slot_head) {
		oai_call *w = ns->slot_head;
		wait_remove(&ns->slot_head, &ns->slot_tail, w);
		conn_attach(w, k);
		nt_send(w);
		return;
	}
	k->state = C_IDLE;
	struct timeval tv = {NT_IDLE_MS / 1000, (NT_IDLE_MS % 1000) * 1000};
	conn_watch(k, EV_READ | EV_PERSIST, &tv);
	k->prev = NULL;
	k->next = ns->idle_head;
	if (k->next)
		k->next->prev = k;
	else
		ns->idle_tail = k;
	ns->idle_head = k;
	ns->n_idle++;
	if (ns->n_idle > ss->st->nt.pool_cap) {
		nt_conn *old = ns->idle_tail;
		pool_unlink(ns, old);
		conn_close(old);
	}
}

/* ------------------------------------------------------------ timer */

static void nt_timer_arm(oai_call *c)
{
	nt_call *n = &c->u.nt;
	uint64_t next = UINT64_MAX;
	if (n->pend) {
		next = 0;
	} else {
		if (c->ft_armed)
			next = n->ft_at;
		if (n->conn_at && (n->phase == NP_DNS || n->phase == NP_CONNECT) && n->conn_at < next)
			next = n->conn_at;
		if (n->limit_at && n->limit_at < next)
			next = n->limit_at;
	}
	if (next == UINT64_MAX) {
		event_del(&c->ft);
		return;
	}
	uint64_t now = sl_now_ns();
	uint64_t us = next > now ? (next - now + 999) / 1000 : 0;
	struct timeval tv = {.tv_sec = (time_t)(us / 1000000u), .tv_usec = (suseconds_t)(us % 1000000u)};
	event_add(&c->ft, &tv);
}

/* Leaves the wait lists and closes the connection (a call that ends or
 * fails never hands its connection on). */
static void nt_drop(oai_call *c)
{
	oai_shard *ss = c->ss;
	nt_shard *ns = &ss->nt;
	nt_call *n = &c->u.nt;
	if (n->phase == NP_SLOT)
		wait_remove(&ns->slot_head, &ns->slot_tail, c);
	else if (n->phase == NP_DNS)
		wait_remove(&ns->dns_head, &ns->dns_tail, c);
	n->phase = NP_NEW;
	if (n->conn) {
		nt_conn *k = n->conn;
		n->conn = NULL;
		k->call = NULL;
		conn_close(k);
		nt_wake(ss);
	}
}

/* Records a failure; the call's timer ends the call on the next loop turn. */
static void nt_fail(oai_call *c, oai_xfer x, const char *msg)
{
	nt_call *n = &c->u.nt;
	nt_drop(c);
	n->phase = NP_FAILED;
	if (!n->pend) {
		n->pend = 1;
		n->pend_x = (uint8_t)x;
		n->pend_err = strdup(msg);
	}
	nt_timer_arm(c);
	nt_wake(c->ss); /* a slot this call held may be free now */
}

/* Ends c (its transfer ended with x).  The connection must be released or
 * still attached (then it is closed). */
static void nt_complete(oai_call *c, oai_xfer x, const char *err)
{
	nt_call *n = &c->u.nt;
	if (!c->stop && c->mode == M_UNKNOWN && n->h1.head_done &&
	    (x == OAI_X_OK || n->h1.status < 200 || n->h1.status > 299))
		sl__oai_classify(c, n->h1.status, n->h1.has_ctype ? n->h1.ctype : NULL);
	nt_drop(c);
	sl__oai_finish(c, x, n->sent_any, err);
}

static void nt_on_timer(evutil_socket_t fd, short what, void *arg)
{
	oai_call *c = arg;
	oai_shard *ss = c->ss;
	const oai_state *st = ss->st;
	nt_call *n = &c->u.nt;
	if (n->pend) {
		nt_complete(c, (oai_xfer)n->pend_x, n->pend_err);
		sl__oai_reap(ss);
		return;
	}
	uint64_t now = sl_now_ns();
	int connecting = n->phase == NP_DNS || n->phase == NP_CONNECT;
	int conn_due = connecting && n->conn_at && now >= n->conn_at;
	int limit_due = n->limit_at && now >= n->limit_at;
	if (conn_due || limit_due) {
		char e[320];
		unsigned ms = (unsigned)((now - n->t_conn) / MS_NS);
		if (connecting && n->phase == NP_DNS)
			snprintf(e, sizeof e, "Resolving timed out after %u ms", ms);
		else if (connecting)
			snprintf(e, sizeof e, "Failed to connect to %s port %u after %u ms: Timeout was reached",
			         st->nt.host, st->nt.port, ms);
		else
			snprintf(e, sizeof e, "Operation timed out after %llu ms",
			         (unsigned long long)((now - c->t_start) / MS_NS));
		/* as curl: a timeout; sent_any == 0 makes it a connect failure */
		nt_complete(c, OAI_X_TIMEOUT, e);
	} else if (c->ft_armed && now >= n->ft_at) {
		sl__oai_first_token_timeout(c); /* closes the connection */
	} else {
		nt_timer_arm(c);
		return;
	}
	sl__oai_reap(ss);
}

/* ------------------------------------------------------------ resolve */

static void nt_open(oai_call *c);

static void nt_on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	oai_shard *ss = arg;
	nt_shard *ns = &ss->nt;
	ns->dns_busy = 0;
	ns->dns_req = NULL;
	if (result == EVUTIL_EAI_CANCEL) {
		if (res)
			evutil_freeaddrinfo(res);
		return;
	}
	unsigned n = 0;
	for (struct evutil_addrinfo *a = res; a && n < OAI_MAX_ADDRS; a = a->ai_next) {
		if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) ||
		    a->ai_addrlen > sizeof ns->addrs[0])
			continue;
		memcpy(&ns->addrs[n], a->ai_addr, a->ai_addrlen);
		ns->addrlens[n] = (socklen_t)a->ai_addrlen;
		n++;
	}
	if (res)
		evutil_freeaddrinfo(res);
	char e[360];
	if (result == 0 && n) {
		ns->n_addrs = n;
		ns->addrs_until = sl_now_ns() + NT_DNS_TTL_MS * MS_NS;
	} else {
		snprintf(e, sizeof e, "Could not resolve host: %s (%s)", ss->st->nt.host,
		         result ? evutil_gai_strerror(result) : "no address");
	}
	/* take the waiters: what each does next cannot touch the list */
	oai_call *c = ns->dns_head;
	ns->dns_head = ns->dns_tail = NULL;
	while (c) {
		oai_call *next = c->u.nt.wnext;
		c->u.nt.wprev = c->u.nt.wnext = NULL;
		c->u.nt.phase = NP_NEW;
		if (result == 0 && n) {
			c->u.nt.ai = 0;
			nt_open(c);
		} else {
			nt_fail(c, OAI_X_CONNECT, e);
		}
		c = next;
	}
}

/* Starts the shard's resolution of the host.  The callback may run before
 * this returns (/etc/hosts, errors). */
static void nt_resolve(oai_shard *ss)
{
	nt_shard *ns = &ss->nt;
	if (!ns->dns) {
		ns->dns = evdns_base_new(ss->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
		                                       EVDNS_BASE_DISABLE_WHEN_INACTIVE);
		if (!ns->dns) {
			nt_on_resolved(EVUTIL_EAI_FAIL, NULL, ss);
			return;
		}
	}
	struct evutil_addrinfo hints;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	ns->dns_busy = 1;
	struct evdns_getaddrinfo_request *r = evdns_getaddrinfo(
		ns->dns, ss->st->nt.host, ss->st->nt.port_str, &hints, nt_on_resolved, ss);
	if (ns->dns_busy)
		ns->dns_req = r;
}

/* ------------------------------------------------------------ connect */

static void nt_connect_failed(oai_call *c, int err);

static void nt_connected(oai_call *c)
{
	nt_call *n = &c->u.nt;
	n->conn->state = C_SENDING;
	n->phase = NP_SEND;
	n->off = 0;
	sl_h1c_init(&n->h1, 0);
	nt_send(c);
}

/* Opens a connection to the address being tried (literal, or the shard's
 * resolved address ai). */
static void nt_open(oai_call *c)
{
	oai_shard *ss = c->ss;
	nt_shard *ns = &ss->nt;
	const nt_target *t = &ss->st->nt;
	nt_call *n = &c->u.nt;
	const struct sockaddr *sa;
	socklen_t sl;
	if (t->literal) {
		sa = (const struct sockaddr *)&t->addr;
		sl = t->addrlen;
	} else {
		sa = (const struct sockaddr *)&ns->addrs[n->ai];
		sl = ns->addrlens[n->ai];
	}
	n->phase = NP_CONNECT;
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd < 0) {
		char e[300];
		int err = errno;
		snprintf(e, sizeof e, "Failed to connect to %s port %u: socket: %s", t->host, t->port,
		         strerror(err));
		nt_fail(c, sl__oai_local_errno(err) ? OAI_X_LOCAL : OAI_X_CONNECT, e);
		return;
	}
	nt_conn *k = calloc(1, sizeof *k);
	if (!k) {
		close(fd);
		nt_fail(c, OAI_X_LOCAL, "out of memory");
		return;
	}
	k->ss = ss;
	k->fd = fd;
	ns->n_conns++;
	int one = 1, idle = 60;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	/* TCP keep-alive probes as curl's CURLOPT_TCP_KEEPALIVE (60 s) */
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &idle, sizeof idle);
	n->conn = k;
	k->call = c;
	k->state = C_CONNECTING;
	if (connect(fd, sa, sl) == 0) {
		nt_connected(c);
		return;
	}
	if (errno == EINPROGRESS) {
		conn_watch(k, EV_WRITE | EV_PERSIST, NULL);
		return;
	}
	nt_connect_failed(c, errno);
}

static void nt_connect_failed(oai_call *c, int err)
{
	oai_shard *ss = c->ss;
	const nt_target *t = &ss->st->nt;
	nt_call *n = &c->u.nt;
	nt_conn *k = n->conn;
	n->conn = NULL;
	conn_close(k); /* the slot stays with c while it tries the next address */
	uint64_t now = sl_now_ns();
	if (!t->literal && n->ai + 1u < ss->nt.n_addrs && now < n->conn_at) {
		n->ai++;
		nt_open(c);
		return;
	}
	char e[320];
	snprintf(e, sizeof e, "Failed to connect to %s port %u after %llu ms: %s", t->host, t->port,
	         (unsigned long long)((now - n->t_conn) / MS_NS), strerror(err));
	nt_fail(c, sl__oai_local_errno(err) ? OAI_X_LOCAL : OAI_X_CONNECT, e);
}

/* A new connection for c (never one from the pool). */
static void nt_connect(oai_call *c)
{
	oai_shard *ss = c->ss;
	nt_shard *ns = &ss->nt;
	nt_call *n = &c->u.nt;
	uint64_t now = sl_now_ns();
	n->t_conn = now;
	n->conn_at = now + ss->st->connect_ms * MS_NS;
	if (ss->st->nt.literal || (ns->n_addrs && now < ns->addrs_until)) {
		n->ai = 0;
		nt_open(c);
	} else {
		n->phase = NP_DNS;
		wait_push(&ns->dns_head, &ns->dns_tail, c);
		if (!ns->dns_busy)
			nt_resolve(ss);
	}
	nt_timer_arm(c);
}

/* A connection for c: an idle one from the pool, else a new one, else a
 * wait for a slot (max_concurrency connections open). */
static void nt_acquire(oai_call *c)
{
	oai_shard *ss = c->ss;
	nt_shard *ns = &ss->nt;
	nt_conn *k = ns->idle_head;
	if (k) {
		pool_unlink(ns, k);
		conn_attach(c, k);
		nt_send(c);
		return;
	}
	if (ss->st->maxconc && ns->n_conns >= ss->st->maxconc) {
		c->u.nt.phase = NP_SLOT;
		wait_push(&ns->slot_head, &ns->slot_tail, c);
		return;
	}
	nt_connect(c);
}

/* ------------------------------------------------------------ send */

/* The request on a reused connection failed before any response byte: the
 * upstream closed it while idle.  Once, on a fresh connection. */
static void nt_retry(oai_call *c)
{
	nt_call *n = &c->u.nt;
	nt_conn *k = n->conn;
	n->conn = NULL;
	k->call = NULL;
	conn_close(k); /* the slot stays with c */
	n->retried = 1;
	n->off = 0;
	n->sent_any = 0;
	sl_h1c_init(&n->h1, 0);
	SL_LOG(SL_LOG_DEBUG, "event=openai_stale_retry shard=%u req=%s", c->ss->idx,
	       c->call ? sl_infer_request_id(c->call) : "-");
	nt_connect(c);
}

static void nt_send(oai_call *c)
{
	const oai_state *st = c->ss->st;
	nt_call *n = &c->u.nt;
	nt_conn *k = n->conn;
	const char *ptr[3] = {st->nt.head, c->hbuf, sl_dynbuf_str(&c->body)};
	size_t len[3] = {st->nt.head_len, n->head_len, c->body.len};
	size_t total = len[0] + len[1] + len[2];
	while (n->off < total) {
		struct iovec iov[3];
		int cnt = 0;
		size_t skip = n->off;
		for (int i = 0; i < 3; i++) {
			if (skip >= len[i]) {
				skip -= len[i];
				continue;
			}
			iov[cnt].iov_base = (void *)(ptr[i] + skip);
			iov[cnt].iov_len = len[i] - skip;
			skip = 0;
			cnt++;
		}
		struct msghdr m;
		memset(&m, 0, sizeof m);
		m.msg_iov = iov;
		m.msg_iovlen = (size_t)cnt;
		ssize_t w = sendmsg(k->fd, &m, MSG_NOSIGNAL);
		if (w > 0) {
			n->off += (size_t)w;
			n->sent_any = 1;
			continue;
		}
		int e = w < 0 ? errno : EPIPE;
		if (e == EINTR)
			continue;
		if (e == EAGAIN || e == EWOULDBLOCK) {
			conn_watch(k, EV_WRITE | EV_PERSIST, NULL);
			return;
		}
		if (k->reused && !n->retried) {
			nt_retry(c);
			return;
		}
		char msg[160];
		snprintf(msg, sizeof msg, "Send failure: %s", strerror(e));
		nt_fail(c, OAI_X_OTHER, msg);
		return;
	}
	k->state = C_READING;
	n->phase = NP_RECV;
	conn_watch(k, EV_READ | EV_PERSIST, NULL);
}

/* ------------------------------------------------------------ receive */

static int nt_on_data(void *arg, const char *data, size_t len)
{
	oai_call *c = arg;
	if (c->stop)
		return 1;
	if (c->mode == M_UNKNOWN)
		sl__oai_classify(c, c->u.nt.h1.status,
		                 c->u.nt.h1.has_ctype ? c->u.nt.h1.ctype : NULL);
	return sl__oai_body(c, data, len);
}

/* The response is complete: release the connection (pool when reusable),
 * then end the call. */
static void nt_done(oai_call *c, int reusable)
{
	nt_call *n = &c->u.nt;
	nt_conn *k = n->conn;
	n->conn = NULL;
	k->call = NULL;
	if (reusable) {
		pool_put(c->ss, k);
	} else {
		conn_close(k);
		nt_wake(c->ss);
	}
	nt_complete(c, OAI_X_OK, NULL);
}

static void nt_read(oai_call *c)
{
	oai_shard *ss = c->ss;
	nt_shard *ns = &ss->nt;
	nt_call *n = &c->u.nt;
	nt_conn *k = n->conn;
	char msg[200];
	for (int round = 0; round < NT_READS_PER_EVENT; round++) {
		ssize_t r = recv(k->fd, ns->rbuf, ns->rcap, 0);
		if (r > 0) {
			if (!n->got_resp) {
				/* no retry from here on: the request is not needed */
				n->got_resp = 1;
				sl_dynbuf_free(&c->body);
				free(c->hbuf);
				c->hbuf = NULL;
				n->head_len = 0;
			}
			size_t used = 0;
			ss->busy++;
			int rc = sl_h1c_feed(&n->h1, ns->rbuf, (size_t)r, &used, nt_on_data, c);
			ss->busy--;
			switch (rc) {
			case SL_H1C_MORE:
				if ((size_t)r < ns->rcap)
					return;
				continue;
			case SL_H1C_DONE:
				/* bytes after the response: the connection is out of step */
				nt_done(c, sl_h1c_reusable(&n->h1) && used == (size_t)r && !c->stop);
				return;
			case SL_H1C_STOP:
				nt_complete(c, OAI_X_OTHER, "stopped");
				return;
			default:
				snprintf(msg, sizeof msg, "malformed response: %s",
				         n->h1.err ? n->h1.err : "?");
				/* a status line that cannot be read: nothing was
				 * understood, which curl reports as an unsupported
				 * protocol (a connect failure) */
				nt_complete(c, n->h1.bad_status ? OAI_X_CONNECT : OAI_X_OTHER, msg);
				return;
			}
		}
		int e = r == 0 ? 0 : errno;
		if (r < 0 && e == EINTR)
			continue;
		if (r < 0 && (e == EAGAIN || e == EWOULDBLOCK))
			return;
		if (!n->got_resp && k->reused && !n->retried) {
			nt_retry(c);
			return;
		}
		if (r < 0) {
			snprintf(msg, sizeof msg, "Recv failure: %s", strerror(e));
			nt_complete(c, OAI_X_OTHER, msg);
			return;
		}
		/* the upstream closed the connection */
		if (!n->got_resp) {
			nt_complete(c, OAI_X_OTHER, "Empty reply from server");
			return;
		}
		/* cut in the head or the body: a partial transfer, as with curl */
		if (sl_h1c_eof(&n->h1) == SL_H1C_DONE)
			nt_done(c, 0);
		else
			nt_complete(c, OAI_X_PARTIAL, n->h1.err);
		return;
	}
}

static void nt_on_io(evutil_socket_t fd, short what, void *arg)
{
	nt_conn *k = arg;
	oai_shard *ss = k->ss;
	switch (k->state) {
	case C_IDLE:
		/* the upstream closed it (or sent something unasked), or it was
		 * idle for NT_IDLE_MS (conn_close deletes the event) */
		pool_unlink(&ss->nt, k);
		conn_close(k);
		nt_wake(ss);
		return;
	case C_CONNECTING: {
		int err = 0;
		socklen_t l = sizeof err;
		if (getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
			err = errno;
		if (err)
			nt_connect_failed(k->call, err);
		else
			nt_connected(k->call);
		break;
	}
	case C_SENDING:
		nt_send(k->call);
		break;
	case C_READING:
		nt_read(k->call);
		break;
	}
	sl__oai_reap(ss);
}

/* ------------------------------------------------------------ calls */

int sl__oai_nt_infer(oai_call *c)
{
	oai_shard *ss = c->ss;
	const oai_state *st = ss->st;
	nt_call *n = &c->u.nt;
	/* the per-call part of the head */
	const char *rid = sl_infer_request_id(c->call);
	const char *tp = sl_infer_meta(c->call, "traceparent");
	size_t rl = rid ? strlen(rid) : 0, tl = tp ? strlen(tp) : 0;
	if (rl && (rl > SL_OPENAI_MAX_STRING || !hsafe(rid, rl)))
		rl = 0;
	if (tl && (tl > SL_OPENAI_MAX_STRING || !hsafe(tp, tl)))
		tl = 0;
	size_t cap = rl + tl + 96;
	c->hbuf = malloc(cap);
	if (!c->hbuf)
		return SL_ENOMEM;
	char *w = c->hbuf;
	if (rl)
		w += sprintf(w, "X-Request-Id: %.*s\r\n", (int)rl, rid);
	if (tl)
		w += sprintf(w, "traceparent: %.*s\r\n", (int)tl, tp);
	w += sprintf(w, "Content-Length: %zu\r\n\r\n", c->body.len);
	n->head_len = (uint32_t)(w - c->hbuf);

	sl_h1c_init(&n->h1, 0);
	event_assign(&c->ft, ss->base, -1, 0, nt_on_timer, c);
	n->timer_set = 1;
	if (st->first_ms != SL_OPENAI_TIMEOUT_NONE) {
		c->ft_armed = 1;
		n->ft_at = c->t_start + st->first_ms * MS_NS;
	}
	if (c->limit_ms)
		n->limit_at = c->t_start + c->limit_ms * MS_NS;
	nt_acquire(c);
	nt_timer_arm(c);
	return SL_OK;
}

void sl__oai_nt_park(oai_call *c)
{
	nt_shard *ns = &c->ss->nt;
	nt_call *n = &c->u.nt;
	if (n->phase == NP_SLOT)
		wait_remove(&ns->slot_head, &ns->slot_tail, c);
	else if (n->phase == NP_DNS)
		wait_remove(&ns->dns_head, &ns->dns_tail, c);
	else
		return;
	n->phase = NP_NEW;
}

void sl__oai_nt_detach(oai_call *c)
{
	nt_call *n = &c->u.nt;
	if (!n->timer_set)
		return;
	event_del(&c->ft);
	nt_drop(c);
	free(n->pend_err);
	n->pend_err = NULL;
}

/* ------------------------------------------------------------ shard */

int sl__oai_nt_start(oai_shard *ss)
{
	nt_shard *ns = &ss->nt;
	ns->rcap = NT_RBUF;
	ns->rbuf = malloc(ns->rcap);
	return ns->rbuf ? SL_OK : SL_ENOMEM;
}

void sl__oai_nt_close(oai_shard *ss)
{
	nt_shard *ns = &ss->nt;
	while (ns->idle_head) {
		nt_conn *k = ns->idle_head;
		pool_unlink(ns, k);
		conn_close(k);
	}
}

void sl__oai_nt_stop(oai_shard *ss)
{
	nt_shard *ns = &ss->nt;
	sl__oai_nt_close(ss);
	if (ns->dns) {
		/* a resolution still running is dropped without its callback */
		evdns_base_free(ns->dns, 0);
		ns->dns = NULL;
		ns->dns_req = NULL;
		ns->dns_busy = 0;
	}
	free(ns->rbuf);
	ns->rbuf = NULL;
}
