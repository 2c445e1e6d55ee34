/*
 * mock_http_int.h - HTTP/1.1 request framing and a byte builder for the
 * mock upstream (private to src/mock/).
 *
 * Why not evhttp: measured on the 2-core bench machine (wrk -t1 -c32, server
 * pinned to one core), libevent's evhttp answers ~31,000 canned POSTs/s; the
 * mock must stay far above the ~50,000 req/s that the fastest peer gateway
 * reaches, so it frames HTTP itself on raw libevent events.  The parser only
 * handles what a mock model server needs: request line, a handful of named
 * headers, Content-Length and chunked request bodies (both at once: 400).
 * src/http/h1_parse.c is the gateway's own parser; this one predates it and
 * stays independent of the core library on purpose.
 *
 * Threading: every function here is pure (no global state); any thread.
 */
#ifndef SLUICE_MOCK_HTTP_INT_H
#define SLUICE_MOCK_HTTP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ byte builder */

/* A growable byte buffer.  Appends never fail visibly: on allocation failure
 * (or growth past `limit` when limit != 0) the buffer sets `oom` and ignores
 * further appends, so a whole response can be built and checked once. */
typedef struct mb {
	char *p;
	size_t len;
	size_t cap;
	size_t limit; /* 0 = unbounded */
	bool oom;
} mb;

/* Makes room for `n` more bytes; returns false (and sets oom) on failure. */
bool mb__reserve(mb *b, size_t n);

static inline void mb_reset(mb *b)
{
	b->len = 0;
	b->oom = false;
}

static inline void mb_free(mb *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
	b->oom = false;
}

static inline void mb_add(mb *b, const void *s, size_t n)
{
	if (b->cap - b->len < n && !mb__reserve(b, n))
		return;
	if (n)
		memcpy(b->p + b->len, s, n);
	b->len += n;
}

/* Appends a string literal (sizeof-based, no strlen). */
#define mb_lit(b, s) mb_add((b), (s), sizeof(s) - 1)

static inline void mb_str(mb *b, const char *s)
{
	mb_add(b, s, strlen(s));
}

/* Appends the decimal form of v. */
void mb_u64(mb *b, uint64_t v);

/* Appends the lowercase hexadecimal form of v (no prefix). */
void mb_hex(mb *b, uint64_t v);

/* Appends s[0..n) escaped for the inside of a JSON string (quotes not
 * added): '"', '\\' and control bytes are escaped; other bytes are copied,
 * so the caller passes valid UTF-8 when it needs valid JSON. */
void mb_json_str(mb *b, const char *s, size_t n);

/* ------------------------------------------------------------ HTTP framing */

enum mh_status {
	MH_OK = 0,
	MH_MORE = 1,          /* incomplete: read more bytes and call again */
	MH_EBAD = -1,         /* malformed: answer 400 and close */
	MH_EHEADBIG = -2,     /* head over the limit: answer 431 and close */
	MH_ETE = -3,          /* unsupported Transfer-Encoding: answer 501 and close */
	MH_ETOOBIG = -4,      /* body over the limit: answer 413 and close */
	MH_ENOMEM = -5,       /* allocation failed: close */
};

enum mh_method { MH_GET, MH_POST, MH_HEAD, MH_OTHER };

/* A parsed request head.  Pointers point into the caller's buffer and stay
 * valid as long as it does. */
typedef struct mh_request {
	int method;            /* enum mh_method */
	const char *path;      /* request-target up to '?' (not NUL-terminated) */
	size_t path_len;
	int minor;             /* HTTP/1.<minor>: 0 or 1 */
	bool keep_alive;       /* after the version's default and Connection */
	bool expect_continue;  /* "Expect: 100-continue" */
	bool chunked;          /* Transfer-Encoding: chunked */
	int64_t content_length; /* -1 when absent */
	size_t head_len;       /* bytes up to and including the empty line */
	/* X-Mock-* header values, trimmed; NULL when absent. */
	const char *x_tokens, *x_fault, *x_first_ms, *x_inter_ms;
	size_t x_tokens_len, x_fault_len, x_first_ms_len, x_inter_ms_len;
} mh_request;

/* Parses the request head at the start of buf[0..len).
 * Returns MH_OK with *req filled, MH_MORE when the head is incomplete and no
 * longer than max_head, MH_EHEADBIG when it is longer, MH_EBAD or MH_ETE.
 * Leading empty lines are skipped (and counted in head_len). */
int mh_parse_head(const char *buf, size_t len, size_t max_head, mh_request *req);

/* Decodes a chunked body at the start of buf[0..len) into `out` (which the
 * caller resets first; decoding restarts from the beginning on each call).
 * Returns MH_OK with *consumed = encoded length including trailers,
 * MH_MORE when incomplete, MH_ETOOBIG when the decoded body exceeds max_body
 * or the incomplete encoding already exceeds max_raw bytes, MH_EBAD, or
 * MH_ENOMEM when `out` could not grow. */
int mh_dechunk(const char *buf, size_t len, size_t max_body, size_t max_raw,
               mb *out, size_t *consumed);

#endif
