/* test_h1c.c - the native transport's HTTP/1.x response parser
 * (src/worker/openai/h1c.c): every case is parsed whole, then split in two
 * at every byte boundary, then fed one byte at a time, and the results must
 * be identical (status, fields, framing, body, bytes used, error). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "worker/openai/h1c.h"

typedef struct res {
	int rc;          /* last feed, or sl_h1c_eof's when eof */
	size_t used;     /* bytes consumed in all */
	char body[8192];
	size_t blen;
	size_t stop_at;  /* the data callback stops once the body reaches it */
	sl_h1c p;
} res;

static int on_data(void *arg, const char *d, size_t n)
{
	res *r = arg;
	assert_true(n > 0);
	assert_true(r->blen + n < sizeof r->body);
	memcpy(r->body + r->blen, d, n);
	r->blen += n;
	r->body[r->blen] = '\0';
	return r->stop_at && r->blen >= r->stop_at;
}

/* Feeds in[0..len) in pieces ending at cuts[] (increasing), then the rest;
 * with eof, declares the end of the connection after a MORE. */
static void run(const char *in, size_t len, const size_t *cuts, size_t ncuts, int eof,
                uint32_t max_head, size_t stop_at, res *r)
{
	memset(r, 0, sizeof *r);
	r->stop_at = stop_at;
	sl_h1c_init(&r->p, max_head);
	size_t from = 0;
	int rc = SL_H1C_MORE;
	for (size_t i = 0; i <= ncuts && rc == SL_H1C_MORE; i++) {
		size_t to = i < ncuts ? cuts[i] : len;
		size_t used = 99999;
		rc = sl_h1c_feed(&r->p, in + from, to - from, &used, on_data, r);
		if (rc == SL_H1C_MORE)
			assert_int_equal(used, to - from);
		if (rc != SL_H1C_ERROR) {
			assert_true(used <= to - from);
			r->used += used;
		}
		from = to;
	}
	if (rc == SL_H1C_MORE && eof)
		rc = sl_h1c_eof(&r->p);
	r->rc = rc;
}

static void same(const res *a, const res *b)
{
	assert_int_equal(a->rc, b->rc);
	if (a->rc != SL_H1C_ERROR)
		assert_int_equal(a->used, b->used);
	assert_int_equal(a->blen, b->blen);
	assert_memory_equal(a->body, b->body, a->blen);
	const sl_h1c *x = &a->p, *y = &b->p;
	assert_int_equal(x->head_done, y->head_done);
	if (a->rc == SL_H1C_ERROR)
		assert_string_equal(x->err, y->err);
	if (!x->head_done)
		return;
	assert_int_equal(x->status, y->status);
	assert_int_equal(x->minor, y->minor);
	assert_int_equal(x->chunked, y->chunked);
	assert_int_equal(x->has_cl, y->has_cl);
	assert_int_equal(x->until_close, y->until_close);
	assert_int_equal(x->conn_close, y->conn_close);
	assert_int_equal(x->has_ctype, y->has_ctype);
	assert_string_equal(x->ctype, y->ctype);
	assert_true(x->content_length == y->content_length);
	assert_int_equal(sl_h1c_reusable(x), sl_h1c_reusable(y));
}

/* Parses s whole, at every split and byte by byte; returns the whole
 * result in *out. */
static void check_x(const char *s, size_t len, int eof, uint32_t max_head, size_t stop_at,
                    res *out)
{
	static res r2;
	run(s, len, NULL, 0, eof, max_head, stop_at, out);
	for (size_t cut = 0; cut <= len; cut++) {
		run(s, len, &cut, 1, eof, max_head, stop_at, &r2);
		same(out, &r2);
	}
	static size_t cuts[8192];
	assert_true(len < sizeof cuts / sizeof cuts[0]);
	for (size_t i = 0; i < len; i++)
		cuts[i] = i;
	run(s, len, cuts, len, eof, max_head, stop_at, &r2);
	same(out, &r2);
}

static res R;

static void check(const char *s, int eof)
{
	check_x(s, strlen(s), eof, 0, 0, &R);
}

/* The same response with CRLF and with bare LF gives the same result. */
static void check_both_eols(const char *crlf, int eof)
{
	static res lf;
	char buf[8192];
	size_t n = 0;
	for (const char *p = crlf; *p; p++)
		if (*p != '\r')
			buf[n++] = *p;
	buf[n] = '\0';
	check_x(buf, n, eof, 0, 0, &lf);
	check(crlf, eof);
	assert_int_equal(lf.rc, R.rc);
	assert_int_equal(lf.blen, R.blen);
	assert_memory_equal(lf.body, R.body, R.blen);
	assert_string_equal(lf.p.ctype, R.p.ctype);
	assert_int_equal(lf.p.status, R.p.status);
}

static void content_length(void **state)
{
	check_both_eols("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n"
	                "Server: x\r\n\r\nhello", 0);
	assert_int_equal(R.rc, SL_H1C_DONE);
	assert_int_equal(R.p.status, 200);
	assert_int_equal(R.p.minor, 1);
	assert_true(R.p.has_cl);
	assert_true(R.p.content_length == 5);
	assert_string_equal(R.p.ctype, "application/json");
	assert_string_equal(R.body, "hello");
	assert_true(sl_h1c_reusable(&R.p));
	assert_int_equal(sl_h1c_in_body(&R.p), 0);

	/* what follows the body is not consumed */
	const char *s = "HTTP/1.1 200 OK\r\ncontent-LENGTH: 2\r\n\r\nokHTTP/1.1 200 OK\r\n";
	check(s, 0);
	assert_int_equal(R.rc, SL_H1C_DONE);
	assert_int_equal(R.used, strlen(s) - strlen("HTTP/1.1 200 OK\r\n"));
	assert_string_equal(R.body, "ok");
	/* after DONE: sticky, nothing consumed */
	size_t used = 7;
	assert_int_equal(sl_h1c_feed(&R.p, "x", 1, &used, on_data, &R), SL_H1C_DONE);
	assert_int_equal(used, 0);

	/* a list of equal values is one value; zero means no body */
	check("HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc", 0);
	assert_int_equal(R.rc, SL_H1C_DONE);
	assert_string_equal(R.body, "abc");
	check("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0);
	assert_int_equal(R.rc, SL_H1C_DONE);
	assert_int_equal(R.blen, 0);

	/* cut short: more needed, then EOF in the body */
	check("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0);
	assert_int_equal(R.rc, SL_H1C_MORE);
	assert_true(sl_h1c_in_body(&R.p));
	check("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 1);
	assert_int_equal(R.rc, SL_H1C_ERROR);
	assert_string_equal(R.p.err, "connection closed in the response body");

	static const char *const bad[] = {
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		check(bad[i], 0);
		assert_int_equal(R.rc, SL_H1C_ERROR);
	}
}

static void chunked_framing(void **state)
{
	check_both_eols("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
	                "Content-Type: text/event-stream; charset=utf-8\r\n\r\n"
	                "5;name=value;other=\"q\"\r\nhello\r\n6 \r\n world\r\n"
	                "00A\t;x\r\n0123456789\r\n0\r\nX-Trailer: a\r\nY: b\r\n\r\n", 0);
	assert_int_equal(R.rc, SL_H1C_DONE);
	assert_true(R.p.chunked);
	assert_false(R.p.has_cl);
	assert_string_equal(R.p.ctype, "text/event-stream; charset=utf-8");
	assert_string_equal(R.body, "hello world0123456789");
	assert_true(sl_h1c_reusable(&R.p));

	/* no trailers; the next response's bytes are left */
	const char *s = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	                "3\r\nabc\r\n0\r\n\r\nHTTP";
	check(s, 0);
	assert_int_equal(R.rc, SL_H1C_DONE);
	assert_int_equal(R.used, strlen(s) - 4);
	assert_string_equal(R.body, "abc");

	/* upper-case hex, leading zeros, 16 significant digits accepted as a
	 * size (more data needed) */
	check("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0000000000000000000Fffffffffffffff\r\nab",
	      0);
	assert_int_equal(R.rc, SL_H1C_MORE);
	assert_string_equal(R.body, "ab");

	/* transfer codings: chunked once and last; identity ignored */
	check("HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: Chunked\r\n\r\n"
	      "1\r\nx\r\n0\r\n\r\n", 0);
	assert_int_equal(R.rc, SL_H1C_DONE);
	assert_string_equal(R.body, "x");
	/* both framings: chunked wins, the connection is not reused */
	check("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
	      "1\r\nx\r\n0\r\n\r\n", 0);
	assert_int_equal(R.rc, SL_H1C_DONE);
	assert_string_equal(R.body, "x");
	assert_false(sl_h1c_reusable(&R.p));

	/* EOF inside the chunked body */
	check("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", 1);
	assert_int_equal(R.rc, SL_H1C_ERROR);
	assert_string_equal(R.p.err, "connection closed in the response body");
	assert_string_equal(R.body, "hel");
}

static void invalid_chunks(void **state)
{
#define S(x) {x, sizeof x - 1}
	static const struct {
		const char *s;
		size_t n;
	} bad[] = {
		S("zz\r\n"),                       /* not hex */
		S("\r\n"),                         /* no digits */
		S(";ext\r\n"),                     /* extension without size */
		S("5x\r\nhello\r\n"),              /* junk after the size */
		S("5 x\r\nhello\r\n"),             /* junk after BWS */
		S("-5\r\nhello\r\n"),
		S("+5\r\nhello\r\n"),
		S("0x5\r\nhello\r\n"),
		S("10000000000000000\r\n"),        /* 17 significant digits */
		S("5\r\nhelloX\r\n"),              /* no line end after the data */
		S("5\r\nhello\r\r\n"),             /* bare CR */
		S("5\rhello\r\n"),                 /* bare CR in the size line */
		S("5;a\x01\r\nhello\r\n"),         /* control in an extension */
		S("0\r\nTrailer\0x\r\n\r\n"),      /* NUL in a trailer */
	};
#undef S
	const char *head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
	char buf[256];
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		size_t hl = strlen(head);
		memcpy(buf, head, hl);
		memcpy(buf + hl, bad[i].s, bad[i].n);
		check_x(buf, hl + bad[i].n, 0, 0, 0, &R);
		if (R.rc != SL_H1C_ERROR)
			fail_msg("case %zu: rc %d", i, R.rc);
	}
	/* a size line over SL_H1C_CHUNK_LINE_MAX (extensions included) */
	char big[SL_H1C_CHUNK_LINE_MAX + 200];
	size_t n = (size_t)snprintf(big, sizeof big, "%s5;", head);
	while (n < sizeof big - 10)
		big[n++] = 'e';
	memcpy(big + n, "\r\nhello", 7);
	n += 7;
	run(big, n, NULL, 0, 0, 0, 0, &R);
	assert_int_equal(R.rc, SL_H1C_ERROR);
	assert_string_equal(R.p.err, "chunk size line too long");
	/* unsupported transfer codings */
	static const char *const te[] = {"gzip", "gzip, chunked", "chunked, gzip", "chunked, chunked",
	                                 "chunked;q=1"};
	for (size_t i = 0; i < sizeof te / sizeof te[0]; i++) {
		snprintf(buf, sizeof buf, "HTTP/1.1 200 OK\r\nTransfer-Encoding: %s\r\n\r\n", te[i]);
		check(buf, 0);
		assert_int_equal(R.rc, SL_H1C_ERROR);
		assert_string_equal(R.p.err, "unsupported Transfer-Encoding");
	}
}

static void interim_responses(void **state)
{
	check_both_eols("HTTP/1.1 100 Continue\r\n\r\n"
	                "HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n"
	                "Content-Type: text/html\r\nConnection: close\r\n\r\n"
	                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0);
	assert_int_equal(R.rc, SL_H1C_DONE);
	assert_int_equal(R.p.status, 200);
	assert_string_equal(R.body, "ok");
	/* nothing of the interim heads is kept */
	assert_false(R.p.has_ctype);
	assert_false(R.p.conn_close);
	assert_true(sl_h1c_reusable(&R.p));

	check("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", 0);
	assert_int_equal(R.rc, SL_H1C_ERROR);
	/* the interim heads count against the head bound */
	char buf[4096];
	size_t n = 0;
	for (int i = 0; i < 40; i++)
		n += (size_t)snprintf(buf + n, sizeof buf - n, "HTTP/1.1 100 Continue\r\n\r\n");
	n += (size_t)snprintf(buf + n, sizeof buf - n, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	check_x(buf, n, 0, 512, 0, &R);
	assert_int_equal(R.rc, SL_H1C_ERROR);
	assert_string_equal(R.p.err, "response head too large");
	check_x(buf, n, 0, 4096, 0, &R);
	assert_int_equal(R.rc, SL_H1C_DONE);
}

static void status_lines(void **state)
{
	check("HTTP/1.1 503\r\nContent-Length: 1\r\n\r\nx", 0);
	assert_int_equal(R.rc, SL_H1C_DONE);
	assert_int_equal(R.p.status, 503);
	check("HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", 0);
	assert_int_equal(R.p.status, 404);
	check("HTTP/1.2 200 Fine\tthanks \xc3\xa9\r\nContent-Length: 0\r\n\r\n", 0);
	assert_int_equal(R.rc, SL_H1C_DONE);
	assert_int_equal(R.p.minor, 1);
	check("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 0);
	assert_int_equal(R.rc, SL_H1C_DONE);
	assert_int_equal(R.p.minor, 0);
	assert_false(sl_h1c_reusable(&R.p)); /* HTTP/1.0: never reused */

	static const char *const bad[] = {
		"HTTP/2 200 OK\r\n\r\n",  "HTTP/2.0 200 OK\r\n\r\n", "HTTP/0.9 200 OK\r\n\r\n",
		"HTTP/1.1 20\r\n\r\n",    "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 099 x\r\n\r\n",
		"HTTP/1.1  200 OK\r\n\r\n", "HTTP/1.1 2x0 OK\r\n\r\n", "http/1.1 200 OK\r\n\r\n",
		"ICY 200 OK\r\n\r\n",     "HTTP/1.1 200 O\x01K\r\n\r\n", "HTTP/1.1 200 OK\rX\n\r\n",
		"\r\nHTTP/1.1 200 OK\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		check(bad[i], 0);
		if (R.rc != SL_H1C_ERROR)
			fail_msg("case %zu: rc %d", i, R.rc);
	}
	/* garbage is refused at its first byte, not at a line end */
	size_t used;
	sl_h1c p;
	sl_h1c_init(&p, 0);
	assert_int_equal(sl_h1c_feed(&p, "SSH-2.0", 7, &used, on_data, &R), SL_H1C_ERROR);
	assert_string_equal(p.err, "not an HTTP/1.x response");
}

static void header_fields(void **state)
{
	/* obs-fold continues a value; names are case-insensitive; OWS trimmed */
	check_both_eols("HTTP/1.1 200 OK\r\nCONTENT-TYPE:   text/event-stream;\r\n"
	                "\t charset=utf-8  \r\nX-Other: a\r\n  b\r\nContent-Length: 1\r\n\r\nx", 0);
	assert_int_equal(R.rc, SL_H1C_DONE);
	assert_string_equal(R.p.ctype, "text/event-stream; charset=utf-8");
	/* the last Content-Type wins; a long one is cut */
	char buf[512];
	snprintf(buf, sizeof buf,
	         "HTTP/1.1 200 OK\r\nContent-Type: a/b\r\nContent-Type: application/json; "
	         "profile=%s\r\nContent-Length: 0\r\n\r\n",
	         "0123456789012345678901234567890123456789012345678901234567890123456789");
	check(buf, 0);
	assert_int_equal(strlen(R.p.ctype), SL_H1C_CTYPE_MAX - 1);
	assert_memory_equal(R.p.ctype, "application/json; profile=0123", 30);
	/* Connection tokens */
	check("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n", 0);
	assert_true(R.p.conn_close);
	assert_false(sl_h1c_reusable(&R.p));
	check("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", 0);
	assert_true(sl_h1c_reusable(&R.p));
	/* an empty value is fine */
	check("HTTP/1.1 200 OK\r\nX-Empty:\r\nContent-Length: 0\r\n\r\n", 0);
	assert_int_equal(R.rc, SL_H1C_DONE);

	static const char *const bad[] = {
		"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",     /* space before colon */
		"HTTP/1.1 200 OK\r\n: x\r\n\r\n",                    /* empty name */
		"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",                /* bare CR */
		"HTTP/1.1 200 OK\r\nX: a\x01\r\n\r\n",               /* control character */
		"HTTP/1.1 200 OK\r\nX: a\x7f\r\n\r\n",
		"HTTP/1.1 200 OK\r\n x: folded first\r\n\r\n",       /* fold without a field */
		"HTTP/1.1 200 OK\r\nX(y): z\r\n\r\n",                /* not a token */
		"HTTP/1.1 200 OK\r\nX: y\r\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		check(bad[i], 0);
		if (R.rc != SL_H1C_ERROR)
			fail_msg("case %zu: rc %d", i, R.rc);
	}
	/* NUL in a value */
	static const char nul[] = "HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n";
	check_x(nul, sizeof nul - 1, 0, 0, 0, &R);
	assert_int_equal(R.rc, SL_H1C_ERROR);
}

static void oversize_head(void **state)
{
	char buf[2048];
	/* a head of exactly 256 bytes passes a bound of 256, not of 255 */
	const char *pre = "HTTP/1.1 200 OK\r\nX-Pad: ";
	const char *post = "\r\nContent-Length: 0\r\n\r\n";
	size_t n = strlen(pre);
	memcpy(buf, pre, n);
	size_t pad = 256 - strlen(pre) - strlen(post);
	memset(buf + n, 'p', pad);
	n += pad;
	memcpy(buf + n, post, strlen(post));
	n += strlen(post);
	assert_int_equal(n, 256);
	check_x(buf, n, 0, 256, 0, &R);
	assert_int_equal(R.rc, SL_H1C_DONE);
	check_x(buf, n, 0, 255, 0, &R);
	assert_int_equal(R.rc, SL_H1C_ERROR);
	assert_string_equal(R.p.err, "response head too large");
	/* a head that never ends stops at the bound, not at the end of input */
	memset(buf, 'a', sizeof buf);
	memcpy(buf, "HTTP/1.1 200 OK\r\nX: ", 20);
	run(buf, sizeof buf, NULL, 0, 0, 1000, 0, &R);
	assert_int_equal(R.rc, SL_H1C_ERROR);
	assert_string_equal(R.p.err, "response head too large");
	/* trailers are bounded too */
	n = (size_t)snprintf(buf, sizeof buf,
	                     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: ");
	memset(buf + n, 't', 600);
	n += 600;
	memcpy(buf + n, "\r\n\r\n", 4);
	n += 4;
	check_x(buf, n, 0, 512, 0, &R);
	assert_int_equal(R.rc, SL_H1C_ERROR);
	assert_string_equal(R.p.err, "response head too large");
}

static void until_close_and_no_body(void **state)
{
	check_both_eols("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
	                "data: x\n\ndata: y\n\n", 1);
	assert_int_equal(R.rc, SL_H1C_DONE);
	assert_true(R.p.until_close);
	assert_string_equal(R.body, "data: x\n\ndata: y\n\n");
	assert_false(sl_h1c_reusable(&R.p));
	check("HTTP/1.1 200 OK\r\n\r\npartial", 0);
	assert_int_equal(R.rc, SL_H1C_MORE);
	assert_true(sl_h1c_in_body(&R.p));

	/* 204 and 304: no body, whatever the framing fields say */
	check("HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", 0);
	assert_int_equal(R.rc, SL_H1C_DONE);
	assert_int_equal(R.blen, 0);
	assert_true(sl_h1c_reusable(&R.p));
	check("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", 0);
	assert_int_equal(R.rc, SL_H1C_DONE);

	/* where the connection closed */
	check("", 1);
	assert_int_equal(R.rc, SL_H1C_ERROR);
	assert_string_equal(R.p.err, "connection closed before the response");
	check("HTTP/1.1 200 OK\r\nContent-Le", 1);
	assert_int_equal(R.rc, SL_H1C_ERROR);
	assert_string_equal(R.p.err, "connection closed in the response head");
}

static void callback_stops(void **state)
{
	const char *s = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	                "3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n";
	res r;
	run(s, strlen(s), NULL, 0, 0, 0, 4, &r);
	assert_int_equal(r.rc, SL_H1C_STOP);
	assert_string_equal(r.body, "abcdef");
	assert_int_equal(r.used, strlen(s) - strlen("\r\n0\r\n\r\n"));
	size_t used = 9;
	assert_int_equal(sl_h1c_feed(&r.p, "x", 1, &used, on_data, &r), SL_H1C_STOP);
	assert_int_equal(used, 0);
	assert_int_equal(sl_h1c_eof(&r.p), SL_H1C_STOP);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(content_length),
		cmocka_unit_test(chunked_framing),
		cmocka_unit_test(invalid_chunks),
		cmocka_unit_test(interim_responses),
		cmocka_unit_test(status_lines),
		cmocka_unit_test(header_fields),
		cmocka_unit_test(oversize_head),
		cmocka_unit_test(until_close_and_no_body),
		cmocka_unit_test(callback_stops),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
