/*
 * h1c.h - incremental HTTP/1.x response parser for the OpenAI worker's native
 * client transport (src/worker/openai/native.c): status line, headers,
 * framing (chunked, Content-Length, until close), 1xx interim responses.
 *
 * Pure code: no libevent, no allocation, no I/O, so it is fuzzed alone
 * (fuzz/fuzz_h1c.c).  All state lives in sl_h1c (about 200 bytes); the
 * input is fed in pieces of any size and is never kept: the caller may
 * reuse its read buffer as soon as sl_h1c_feed returns.  Body bytes go to a
 * callback as spans of the input (no copy).  The result does not depend on
 * how the bytes are split.
 *
 * What is accepted (RFC 9112; lenient only where curl is):
 *   status-line = "HTTP/1." DIGIT SP 3DIGIT [ SP reason ] EOL
 *                 (HTTP/1.2+ is read as 1.1; another major, HTTP/0.9 or a
 *                 status below 100 -> error; the reason may be empty or
 *                 absent and holds no control character but HT)
 *   field-line  = token ":" OWS value OWS EOL
 *                 (a space before the colon, an empty name, a line without
 *                 ':', NUL or a control character other than HT -> error;
 *                 obs-fold - a line starting with SP/HT - continues the
 *                 previous value, joined by one SP)
 *   EOL         = CRLF or a bare LF; a CR not followed by LF is an error.
 *   1xx         = skipped, any number, except 101 (we never ask for an
 *                 upgrade) -> error.
 *   framing     = 204 and 304 have no body.  Transfer-Encoding: chunked
 *                 (exactly once, last; "identity" is ignored) -> chunked;
 *                 any other transfer coding -> error (none is decoded).
 *                 Else Content-Length (digits; a list of equal values
 *                 "5, 5" is one value; different values -> error).  Else
 *                 the body runs until the connection closes.  Both
 *                 Transfer-Encoding and Content-Length: chunked wins and the
 *                 connection is not reused.
 *   chunked     = chunk-size (1..16 significant hex digits) [BWS]
 *                 [";" extensions] EOL, data, EOL; a size line is at most
 *                 SL_H1C_CHUNK_LINE_MAX bytes; the trailer section (field
 *                 lines, not interpreted) ends at an empty line and counts
 *                 against max_head.
 * Bounds: the heads (interim ones included) together, and the trailer
 * section, at most max_head bytes each -> error "response head too large".
 *
 * Threading: none (plain functions over caller-owned state).
 */
#ifndef SL_WORKER_OPENAI_H1C_H
#define SL_WORKER_OPENAI_H1C_H
#include <stddef.h>
#include <stdint.h>

/* Return values of sl_h1c_feed / sl_h1c_eof. */
#define SL_H1C_MORE 0   /* need more bytes */
#define SL_H1C_DONE 1   /* the response is complete */
#define SL_H1C_ERROR -1 /* malformed: see err */
#define SL_H1C_STOP -2  /* the data callback returned non-zero */

#define SL_H1C_DEFAULT_MAX_HEAD 65536u
#define SL_H1C_CHUNK_LINE_MAX 4096u
#define SL_H1C_CTYPE_MAX 64 /* bytes kept of Content-Type, NUL included */

/* Called with each piece of body data, in order (len > 0).  Return 0 to go
 * on; non-zero stops the feed, which returns SL_H1C_STOP. */
typedef int (*sl_h1c_data_fn)(void *arg, const char *data, size_t len);

typedef struct sl_h1c {
	/* result: valid once head_done is 1 (the final, non-1xx head) */
	uint8_t head_done;
	uint8_t minor;           /* 0 = HTTP/1.0, 1 = HTTP/1.1 */
	uint8_t chunked;         /* body is chunked */
	uint8_t has_cl;          /* body length is content_length */
	uint8_t until_close;     /* body runs until the connection closes */
	uint8_t conn_close;      /* Connection: close (or an unreadable one) */
	uint8_t has_ctype;       /* a Content-Type was given (the last wins) */
	uint16_t status;         /* 100..999 */
	uint64_t content_length;
	char ctype[SL_H1C_CTYPE_MAX]; /* Content-Type value, OWS trimmed, cut
	                                 to SL_H1C_CTYPE_MAX - 1 bytes */
	const char *err;         /* on SL_H1C_ERROR: a short static reason */
	uint8_t bad_status;      /* on SL_H1C_ERROR: the error is in a status
	                            line (the input was not understood as an
	                            HTTP/1.x response at all) */
	/* private */
	uint8_t state, cr, fold_ok, hdr_id, name_len, val_len, val_trunc, val_ws;
	uint8_t te_seen, te_chunked, te_last_chunked, te_other, no_reuse, ndigits;
	uint8_t sl_len;
	char sl[16];             /* start of the status line */
	char name[18];           /* lower-cased start of the field name */
	char val[64];            /* value of an interesting field */
	uint32_t max_head, head_bytes, line_len;
	uint64_t remaining;      /* body or chunk bytes left */
} sl_h1c;

/* Prepares p for one response; max_head 0 = SL_H1C_DEFAULT_MAX_HEAD. */
void sl_h1c_init(sl_h1c *p, uint32_t max_head);

/* Parses in[0..len).  *used gets the bytes consumed: all of them on
 * SL_H1C_MORE; up to the end of the response on SL_H1C_DONE (the rest is
 * not part of it); up to and including the data piece whose callback
 * stopped on SL_H1C_STOP.  After DONE, ERROR or STOP every later call
 * returns the same value and consumes nothing; re-initialise for the next
 * response. */
int sl_h1c_feed(sl_h1c *p, const char *in, size_t len, size_t *used,
                sl_h1c_data_fn fn, void *arg);

/* Declares that the connection closed.  Returns SL_H1C_DONE when the body
 * ran until close (that is its end), the sticky status after DONE, ERROR
 * or STOP, else SL_H1C_ERROR with err saying where the response was cut
 * ("connection closed before the response", "... in the response head",
 * "... in the response body"). */
int sl_h1c_eof(sl_h1c *p);

/* After SL_H1C_DONE: 1 when the connection may carry another request
 * (HTTP/1.1, no Connection: close, length-delimited body, not both
 * Transfer-Encoding and Content-Length), else 0. */
int sl_h1c_reusable(const sl_h1c *p);

/* 1 while the response is inside a body (head done, not yet complete). */
int sl_h1c_in_body(const sl_h1c *p);

#endif
