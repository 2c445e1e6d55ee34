/* h1_parse.h - the HTTP/1.1 request parser of the h1 layer (src/http/h1.h):
 * a resumable request-head parser and an incremental chunked-body decoder.
 *
 * Pure code: no libevent, no allocation except the header index array the
 * caller lends (sl_h1p_head.hdrs), so it can be fuzzed alone
 * (fuzz/fuzz_h1.c).  See docs/internals/http.md, "h1".
 *
 * Head parsing works on a byte buffer that holds the head "so far" from its
 * first byte; each call is given the same bytes again plus whatever arrived
 * since (the buffer may have moved: everything is kept as offsets).  Only
 * the lines not yet parsed are looked at, so a head that arrives a byte at a
 * time costs O(n) overall, not O(n^2).
 *
 * What is accepted (RFC 9112, strict where leniency invites smuggling):
 *   request-line = method SP request-target SP "HTTP/1." DIGIT CRLF
 *                  (leading empty lines are skipped; single spaces only;
 *                  HTTP/1.2+ is answered as 1.1; another major -> 505)
 *   header-line  = token ":" OWS value OWS CRLF
 *                  (obs-fold, NUL, bare CR, bare LF, CTLs, a space before
 *                  the colon or an empty name -> 400)
 *   framing      = one Content-Length (digits only; repeated headers must
 *                  agree) or Transfer-Encoding: chunked (alone); both ->
 *                  400; any other transfer coding -> 501.
 * Over max_head bytes (request line + headers + the empty line) without the
 * end of the head -> 431.  More than hdrs_cap header lines -> 431.
 *
 * Threading: none (plain functions over caller-owned state).
 */
#ifndef SL_HTTP_H1_PARSE_H
#define SL_HTTP_H1_PARSE_H
#include <stddef.h>
#include <stdint.h>

/* Return values of the feed functions. */
#define SL_H1P_MORE 0   /* need more bytes */
#define SL_H1P_DONE 1   /* complete */
#define SL_H1P_ERROR -1 /* refused: see err_status / err_code / err_msg */

/* One header, as offsets into the head buffer. */
typedef struct sl_h1p_hdr {
	uint32_t name, name_len;
	uint32_t value, value_len; /* OWS trimmed */
} sl_h1p_hdr;

/* Parser state and result of one request head.  Zero it with
 * sl_h1p_head_init() before the first byte of each request. */
typedef struct sl_h1p_head {
	/* input: set by the caller (sl_h1p_head_init) */
	sl_h1p_hdr *hdrs;  /* caller-owned array of hdrs_cap entries */
	uint32_t hdrs_cap;
	/* parse position (private) */
	uint32_t pos;      /* start of the first line not yet parsed */
	uint8_t in_headers;
	/* result: valid once SL_H1P_DONE is returned */
	uint32_t head_len;       /* bytes of the head, empty line included */
	uint32_t method, method_len;
	uint32_t target, target_len;
	uint32_t path_len;       /* path = target + path_off, path_len bytes */
	uint32_t path_off;       /* (query and, for absolute-form, scheme and
	                          * authority are left out) */
	uint32_t n_hdrs;
	uint8_t minor;           /* 0 = HTTP/1.0, 1 = HTTP/1.1 (1.2+ -> 1) */
	uint8_t chunked;         /* Transfer-Encoding: chunked */
	uint8_t conn_close;      /* Connection: close seen */
	uint8_t conn_keepalive;  /* Connection: keep-alive seen */
	uint8_t expect_continue; /* Expect: 100-continue (HTTP/1.1 only) */
	uint8_t has_cl;          /* a Content-Length was given */
	uint64_t content_length; /* valid when has_cl; UINT64_MAX when it does
	                          * not fit (the caller answers 413) */
	/* error: valid once SL_H1P_ERROR is returned */
	int err_status;          /* 400, 431, 501, 505 */
	const char *err_code;    /* "bad_request", "headers_too_large", ... */
	const char *err_msg;     /* a short human sentence (static) */
} sl_h1p_head;

/* Resets h for a new request; hdrs/hdrs_cap are the header index array. */
void sl_h1p_head_init(sl_h1p_head *h, sl_h1p_hdr *hdrs, uint32_t hdrs_cap);

/* Parses the head in buf[0..len) (all bytes received for this request so
 * far; the first h->pos bytes are those already parsed and must be the
 * same as before).  max_head bounds the head (>= 16).  Returns SL_H1P_DONE
 * (h->head_len bytes form the head; the rest of buf is body or the next
 * request), SL_H1P_MORE, or SL_H1P_ERROR.  After DONE or ERROR the state
 * must be re-initialised before the next call. */
int sl_h1p_head_feed(sl_h1p_head *h, const char *buf, size_t len, size_t max_head);

/* Case-insensitive comparison of a header name (len bytes) with a
 * NUL-terminated lower-case literal. */
int sl_h1p_name_is(const char *name, size_t len, const char *lower);

/* ------------------------------------------------------------ chunked */

/* Decoder of a chunked request body, fed in pieces of any size. */
typedef struct sl_h1p_chunked {
	uint64_t remaining;   /* data bytes left in the current chunk */
	uint64_t total;       /* data bytes decoded so far */
	uint64_t max_body;    /* bound on total -> 413 */
	uint64_t max_trailer; /* bound on the trailer section -> 431 */
	uint64_t trailer;     /* trailer bytes so far */
	uint32_t line;        /* bytes of the current size/trailer line */
	uint8_t state;        /* private */
	uint8_t ndigits;      /* significant hex digits of the size */
	int err_status;       /* on SL_H1P_ERROR: 400, 413 or 431 */
	const char *err_code, *err_msg;
} sl_h1p_chunked;

#define SL_H1P_CHUNK_LINE_MAX 1024 /* size line incl. extensions -> 400 */

void sl_h1p_chunked_init(sl_h1p_chunked *c, uint64_t max_body, uint64_t max_trailer);

/* Called with each piece of decoded data, in order; return 0 to go on, non
 * zero to stop (the feed then returns SL_H1P_ERROR with status 500). */
typedef int (*sl_h1p_data_fn)(void *arg, const char *data, size_t len);

/* Decodes in[0..len).  *used gets the bytes consumed: all of them on
 * SL_H1P_MORE; up to the end of the body (last chunk and trailers
 * included) on SL_H1P_DONE, the rest belongs to the next request.
 * Chunk extensions are ignored, trailers skipped. */
int sl_h1p_chunked_feed(sl_h1p_chunked *c, const char *in, size_t len, size_t *used,
                        sl_h1p_data_fn fn, void *arg);

#endif
