/* h1_parse.c - HTTP/1.1 request head parser and chunked decoder; see
 * h1_parse.h.  Table-driven byte classes, memchr for line ends. */
#include "http/h1_parse.h"

#include <string.h>

/* Byte classes. */
enum {
	C_TCHAR = 1,  /* token character (RFC 9110 tchar) */
	C_VALUE = 2,  /* field-value octet: VCHAR, obs-text, SP, HTAB */
	C_TARGET = 4, /* request-target octet: VCHAR and obs-text */
	C_HEX = 8,
};

static unsigned char cls[256];
static int cls_ready;

static void cls_init(void)
{
	/* Idempotent and race-benign (every thread writes the same values),
	 * but written once under a flag read with acquire to stay TSan-clean. */
	if (__atomic_load_n(&cls_ready, __ATOMIC_ACQUIRE))
		return;
	static const char tspecial[] = "!#$%&'*+-.^_`|~";
	unsigned char t[256];
	memset(t, 0, sizeof t);
	for (int c = 0; c < 256; c++) {
		if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c && strchr(tspecial, c)))
			t[c] |= C_TCHAR;
		if ((c >= 0x21 && c <= 0x7e) || c >= 0x80)
			t[c] |= C_VALUE | C_TARGET;
		if (c == ' ' || c == '\t')
			t[c] |= C_VALUE;
		if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))
			t[c] |= C_HEX;
	}
	for (int c = 0; c < 256; c++)
		__atomic_store_n(&cls[c], t[c], __ATOMIC_RELAXED);
	__atomic_store_n(&cls_ready, 1, __ATOMIC_RELEASE);
}

#define IS(c, k) (cls[(unsigned char)(c)] & (k))

void sl_h1p_head_init(sl_h1p_head *h, sl_h1p_hdr *hdrs, uint32_t hdrs_cap)
{
	cls_init();
	memset(h, 0, sizeof *h);
	h->hdrs = hdrs;
	h->hdrs_cap = hdrs_cap;
}

int sl_h1p_name_is(const char *name, size_t len, const char *lower)
{
	size_t i = 0;
	for (; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c + 32);
		if (lower[i] == '\0' || c != (unsigned char)lower[i])
			return 0;
	}
	return lower[i] == '\0';
}

static int fail(sl_h1p_head *h, int status, const char *code, const char *msg)
{
	h->err_status = status;
	h->err_code = code;
	h->err_msg = msg;
	return SL_H1P_ERROR;
}

#define BAD(h, msg) fail(h, 400, "bad_request", msg)

/* Request line in b[0..n) (CRLF excluded). */
static int parse_request_line(sl_h1p_head *h, const char *buf, uint32_t off, uint32_t n)
{
	const char *b = buf + off;
	uint32_t i = 0;
	while (i < n && IS(b[i], C_TCHAR))
		i++;
	if (i == 0 || i >= n || b[i] != ' ')
		return BAD(h, "malformed request line (method)");
	h->method = off;
	h->method_len = i;
	uint32_t t = ++i;
	while (i < n && IS(b[i], C_TARGET))
		i++;
	if (i == t || i >= n || b[i] != ' ')
		return BAD(h, "malformed request line (target)");
	h->target = off + t;
	h->target_len = i - t;
	i++;
	if (n - i != 8 || memcmp(b + i, "HTTP/", 5) != 0 || b[i + 6] != '.' ||
	    b[i + 5] < '0' || b[i + 5] > '9' || b[i + 7] < '0' || b[i + 7] > '9')
		return BAD(h, "malformed request line (version)");
	if (b[i + 5] != '1')
		return fail(h, 505, "http_version_not_supported", "only HTTP/1.x is supported");
	h->minor = b[i + 7] == '0' ? 0 : 1;

	/* path: origin-form up to '?' or '#'; absolute-form after the
	 * authority; "*" and authority-form as they are. */
	const char *tg = buf + h->target;
	uint32_t tl = h->target_len, p = 0;
	if (tg[0] != '/') {
		uint32_t s = 0;
		if (tl >= 7 && sl_h1p_name_is(tg, 7, "http://"))
			s = 7;
		else if (tl >= 8 && sl_h1p_name_is(tg, 8, "https://"))
			s = 8;
		if (s) {
			p = s;
			while (p < tl && tg[p] != '/' && tg[p] != '?' && tg[p] != '#')
				p++;
		} else {
			h->path_off = 0;
			h->path_len = tl;
			return SL_H1P_MORE;
		}
	}
	uint32_t e = p;
	while (e < tl && tg[e] != '?' && tg[e] != '#')
		e++;
	h->path_off = p;
	h->path_len = e - p; /* 0 for "http://host": the caller shows "/" */
	return SL_H1P_MORE;
}

static int parse_uint(const char *s, uint32_t n, uint64_t *out)
{
	if (n == 0)
		return -1;
	uint64_t v = 0;
	for (uint32_t i = 0; i < n; i++) {
		unsigned d = (unsigned)(unsigned char)s[i] - '0';
		if (d > 9)
			return -1;
		if (v > (UINT64_MAX - d) / 10)
			v = UINT64_MAX; /* saturate: "too large" */
		else
			v = v * 10 + d;
	}
	*out = v;
	return 0;
}

/* Walks the comma-separated token list of a Connection header. */
static void parse_connection(sl_h1p_head *h, const char *v, uint32_t n)
{
	uint32_t i = 0;
	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		uint32_t s = i;
		while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
			i++;
		if (sl_h1p_name_is(v + s, i - s, "close"))
			h->conn_close = 1;
		else if (sl_h1p_name_is(v + s, i - s, "keep-alive"))
			h->conn_keepalive = 1;
	}
}

/* Header line in buf[off..off+n) (CRLF excluded). */
static int parse_header(sl_h1p_head *h, const char *buf, uint32_t off, uint32_t n)
{
	const char *b = buf + off;
	if (b[0] == ' ' || b[0] == '\t')
		return BAD(h, "obsolete line folding is not accepted");
	uint32_t i = 0;
	while (i < n && IS(b[i], C_TCHAR))
		i++;
	if (i == 0 || i >= n || b[i] != ':')
		return BAD(h, "malformed header name");
	uint32_t name_len = i++;
	while (i < n && (b[i] == ' ' || b[i] == '\t'))
		i++;
	uint32_t vs = i;
	for (; i < n; i++)
		if (!IS(b[i], C_VALUE))
			return BAD(h, "invalid character in header value");
	uint32_t ve = n;
	while (ve > vs && (b[ve - 1] == ' ' || b[ve - 1] == '\t'))
		ve--;
	if (h->n_hdrs >= h->hdrs_cap)
		return fail(h, 431, "headers_too_large", "too many header fields");
	sl_h1p_hdr *hd = &h->hdrs[h->n_hdrs++];
	hd->name = off;
	hd->name_len = name_len;
	hd->value = off + vs;
	hd->value_len = ve - vs;

	const char *v = b + vs;
	uint32_t vl = ve - vs;
	switch (b[0] | 0x20) { /* cheap pre-filter on the first letter */
	case 'c':
		if (sl_h1p_name_is(b, name_len, "content-length")) {
			uint64_t cl;
			if (parse_uint(v, vl, &cl) != 0)
				return BAD(h, "invalid Content-Length");
			if (h->has_cl && cl != h->content_length)
				return BAD(h, "conflicting Content-Length headers");
			h->has_cl = 1;
			h->content_length = cl;
		} else if (sl_h1p_name_is(b, name_len, "connection")) {
			parse_connection(h, v, vl);
		}
		break;
	case 't':
		if (sl_h1p_name_is(b, name_len, "transfer-encoding")) {
			if (h->chunked)
				return BAD(h, "repeated Transfer-Encoding");
			if (!sl_h1p_name_is(v, vl, "chunked"))
				return fail(h, 501, "unsupported_transfer_encoding",
				            "only Transfer-Encoding: chunked is supported");
			h->chunked = 1;
		}
		break;
	case 'e':
		if (sl_h1p_name_is(b, name_len, "expect") && sl_h1p_name_is(v, vl, "100-continue"))
			h->expect_continue = 1;
		break;
	default:
		break;
	}
	return SL_H1P_MORE;
}

int sl_h1p_head_feed(sl_h1p_head *h, const char *buf, size_t len, size_t max_head)
{
	if (max_head > UINT32_MAX - 1)
		max_head = UINT32_MAX - 1;
	size_t lim = len < max_head ? len : max_head;
	while (h->pos < lim) {
		const char *lf = memchr(buf + h->pos, '\n', lim - h->pos);
		if (!lf)
			break;
		uint32_t le = (uint32_t)(lf - buf); /* index of '\n' */
		if (le == h->pos || buf[le - 1] != '\r')
			return BAD(h, "line not terminated by CRLF");
		uint32_t off = h->pos, n = le - 1 - h->pos; /* content length */
		if (memchr(buf + off, '\r', n))
			return BAD(h, "bare CR in request head");
		h->pos = le + 1;
		int rc;
		if (!h->in_headers) {
			if (n == 0)
				continue; /* leading empty line (RFC 9112 2.2) */
			rc = parse_request_line(h, buf, off, n);
			h->in_headers = 1;
		} else if (n == 0) {
			if (h->chunked && h->has_cl)
				return BAD(h, "both Content-Length and Transfer-Encoding");
			if (h->minor == 0)
				h->expect_continue = 0;
			h->head_len = h->pos;
			return SL_H1P_DONE;
		} else {
			rc = parse_header(h, buf, off, n);
		}
		if (rc != SL_H1P_MORE)
			return rc;
	}
	if (len >= max_head)
		return fail(h, 431, "headers_too_large", "request line and headers are too large");
	/* An unfinished line is only checked once complete (checking it on
	 * every call would make a trickled head cost O(n^2)); the size bound
	 * and the read timeout cut it meanwhile. */
	return SL_H1P_MORE;
}

/* ------------------------------------------------------------ chunked */

enum {
	K_SIZE0,    /* first hex digit of a size line */
	K_SIZE,     /* more hex digits */
	K_EXT,      /* extension up to CR */
	K_SIZE_LF,  /* LF after the size line */
	K_DATA,
	K_DATA_CR,
	K_DATA_LF,
	K_TR_START, /* start of a trailer line or the final CRLF */
	K_TR,       /* inside a trailer line */
	K_TR_LF,
	K_END_LF,
	K_DONE,
};

void sl_h1p_chunked_init(sl_h1p_chunked *c, uint64_t max_body, uint64_t max_trailer)
{
	cls_init();
	memset(c, 0, sizeof *c);
	c->max_body = max_body;
	c->max_trailer = max_trailer;
	c->state = K_SIZE0;
}

static int cfail(sl_h1p_chunked *c, int status, const char *code, const char *msg)
{
	c->err_status = status;
	c->err_code = code;
	c->err_msg = msg;
	return SL_H1P_ERROR;
}

#define CBAD(c, m) cfail(c, 400, "bad_request", m)

static int hexval(unsigned char ch)
{
	return ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10;
}

int sl_h1p_chunked_feed(sl_h1p_chunked *c, const char *in, size_t len, size_t *used,
                        sl_h1p_data_fn fn, void *arg)
{
	size_t i = 0;
	*used = 0;
	while (i < len) {
		unsigned char ch = (unsigned char)in[i];
		switch (c->state) {
		case K_SIZE0:
			if (!IS(ch, C_HEX))
				return CBAD(c, "malformed chunk size");
			c->remaining = 0;
			c->ndigits = 0;
			c->line = 0;
			c->state = K_SIZE;
			/* fall through */
		case K_SIZE:
			if (IS(ch, C_HEX)) {
				if (c->ndigits || ch != '0')
					c->ndigits++;
				if (c->ndigits > 15) /* >= 2^60: over any bound */
					return cfail(c, 413, "body_too_large", "request body is too large");
				c->remaining = c->remaining * 16 + (uint64_t)hexval(ch);
			} else if (ch == ';' || ch == ' ' || ch == '\t') {
				c->state = K_EXT;
			} else if (ch == '\r') {
				c->state = K_SIZE_LF;
			} else {
				return CBAD(c, "malformed chunk size");
			}
			if (++c->line > SL_H1P_CHUNK_LINE_MAX)
				return CBAD(c, "chunk size line too long");
			i++;
			break;
		case K_EXT:
			if (ch == '\r')
				c->state = K_SIZE_LF;
			else if (!IS(ch, C_VALUE))
				return CBAD(c, "invalid character in chunk extension");
			if (++c->line > SL_H1P_CHUNK_LINE_MAX)
				return CBAD(c, "chunk size line too long");
			i++;
			break;
		case K_SIZE_LF:
			if (ch != '\n')
				return CBAD(c, "chunk size line not terminated by CRLF");
			i++;
			if (c->remaining == 0) {
				c->state = K_TR_START;
			} else {
				if (c->remaining > c->max_body - c->total)
					return cfail(c, 413, "body_too_large", "request body is too large");
				c->state = K_DATA;
			}
			break;
		case K_DATA: {
			size_t n = len - i;
			if (n > c->remaining)
				n = (size_t)c->remaining;
			if (fn && fn(arg, in + i, n) != 0)
				return cfail(c, 500, "internal_error", "could not store the request body");
			c->remaining -= n;
			c->total += n;
			i += n;
			if (c->remaining == 0)
				c->state = K_DATA_CR;
			break;
		}
		case K_DATA_CR:
			if (ch != '\r')
				return CBAD(c, "chunk data not followed by CRLF");
			c->state = K_DATA_LF;
			i++;
			break;
		case K_DATA_LF:
			if (ch != '\n')
				return CBAD(c, "chunk data not followed by CRLF");
			c->state = K_SIZE0;
			i++;
			break;
		case K_TR_START:
			if (ch == '\r') {
				c->state = K_END_LF;
				i++;
				break;
			}
			if (ch == ' ' || ch == '\t')
				return CBAD(c, "obsolete line folding in trailer");
			c->state = K_TR;
			/* fall through */
		case K_TR:
			if (ch == '\r')
				c->state = K_TR_LF;
			else if (!IS(ch, C_VALUE))
				return CBAD(c, "invalid character in trailer");
			if (++c->trailer > c->max_trailer)
				return cfail(c, 431, "headers_too_large", "trailer section is too large");
			i++;
			break;
		case K_TR_LF:
			if (ch != '\n')
				return CBAD(c, "trailer line not terminated by CRLF");
			c->state = K_TR_START;
			i++;
			break;
		case K_END_LF:
			if (ch != '\n')
				return CBAD(c, "chunked body not terminated by CRLF");
			i++;
			c->state = K_DONE;
			*used = i;
			return SL_H1P_DONE;
		default: /* K_DONE: nothing more belongs to this body */
			*used = i;
			return SL_H1P_DONE;
		}
	}
	*used = i;
	return c->state == K_DONE ? SL_H1P_DONE : SL_H1P_MORE;
}
