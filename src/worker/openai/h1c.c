/* h1c.c - incremental HTTP/1.x response parser; see h1c.h. */
#include "worker/openai/h1c.h"

#include <string.h>

enum {
	ST_STATUS = 0,     /* in the status line */
	ST_LINE_START,     /* at the start of a field line (or the empty line) */
	ST_NAME,           /* in a field name */
	ST_VALUE,          /* in a field value */
	ST_BODY_CL,        /* Content-Length body */
	ST_BODY_CLOSE,     /* body until the connection closes */
	ST_CHUNK_SIZE,     /* hex digits of a chunk size */
	ST_CHUNK_EXT,      /* after the size: BWS, extensions, EOL */
	ST_CHUNK_DATA,
	ST_CHUNK_DATA_END, /* the EOL after chunk data */
	ST_TRAILER_START,  /* at the start of a trailer line (or the empty line) */
	ST_TRAILER_LINE,
	ST_DONE,
	ST_ERROR,
	ST_STOP
};

enum { H_OTHER = 0, H_CTYPE, H_CLEN, H_TE, H_CONN };

void sl_h1c_init(sl_h1c *p, uint32_t max_head)
{
	memset(p, 0, sizeof *p);
	p->max_head = max_head ? max_head : SL_H1C_DEFAULT_MAX_HEAD;
}

int sl_h1c_in_body(const sl_h1c *p)
{
	return p->head_done && p->state != ST_DONE && p->state != ST_ERROR &&
	       p->state != ST_STOP;
}

int sl_h1c_reusable(const sl_h1c *p)
{
	return p->state == ST_DONE && !p->until_close && p->minor >= 1 && !p->conn_close &&
	       !p->no_reuse;
}

/* RFC 9110 tchar. */
static int tchar(unsigned char c)
{
	static const char extra[] = "!#$%&'*+-.^_`|~";
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && memchr(extra, c, sizeof extra - 1) != NULL);
}

/* A byte that may appear in a field value or a reason phrase: not NUL, not
 * a control character other than HT, not DEL. */
static int vchar(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int lower_eq(const char *a, size_t alen, const char *lit)
{
	size_t n = strlen(lit);
	if (alen != n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)a[i];
		if (c >= 'A' && c <= 'Z')
			c |= 0x20;
		if (c != (unsigned char)lit[i])
			return 0;
	}
	return 1;
}

static int fail(sl_h1c *p, const char *why)
{
	if (p->state == ST_STATUS)
		p->bad_status = 1;
	p->state = ST_ERROR;
	p->err = why;
	return SL_H1C_ERROR;
}

/* Resets what a head says (for the head after a 1xx). */
static void reset_fields(sl_h1c *p)
{
	p->chunked = p->has_cl = p->until_close = p->conn_close = p->has_ctype = 0;
	p->content_length = 0;
	p->ctype[0] = '\0';
	p->te_seen = p->te_chunked = p->te_last_chunked = p->te_other = p->no_reuse = 0;
	p->hdr_id = H_OTHER;
	p->fold_ok = 0;
	p->sl_len = 0;
	p->line_len = 0;
}

/* Iterates over the comma-separated elements of v[0..len), OWS trimmed,
 * empty ones skipped; fn returns non-zero to stop (returned). */
typedef int (*elem_fn)(sl_h1c *p, const char *s, size_t n);

static int each_elem(sl_h1c *p, const char *v, size_t len, elem_fn fn)
{
	size_t i = 0;
	while (i <= len) {
		size_t j = i;
		while (j < len && v[j] != ',')
			j++;
		size_t a = i, b = j;
		while (a < b && (v[a] == ' ' || v[a] == '\t'))
			a++;
		while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
			b--;
		if (b > a) {
			int rc = fn(p, v + a, b - a);
			if (rc)
				return rc;
		}
		i = j + 1;
	}
	return 0;
}

static int cl_elem(sl_h1c *p, const char *s, size_t n)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return fail(p, "invalid Content-Length");
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return fail(p, "invalid Content-Length");
		v = v * 10 + d;
	}
	if (p->has_cl && p->content_length != v)
		return fail(p, "conflicting Content-Length values");
	p->has_cl = 1;
	p->content_length = v;
	return 0;
}

static int te_elem(sl_h1c *p, const char *s, size_t n)
{
	if (lower_eq(s, n, "chunked")) {
		p->te_chunked++;
		p->te_last_chunked = 1;
	} else if (!lower_eq(s, n, "identity")) {
		p->te_other = 1;
		p->te_last_chunked = 0;
	}
	return 0;
}

static int conn_elem(sl_h1c *p, const char *s, size_t n)
{
	if (lower_eq(s, n, "close"))
		p->conn_close = 1;
	return 0;
}

/* The pending field line is complete (no obs-fold follows): apply it. */
static int finish_field(sl_h1c *p)
{
	uint8_t id = p->hdr_id;
	p->hdr_id = H_OTHER;
	size_t n = p->val_len;
	while (n && (p->val[n - 1] == ' ' || p->val[n - 1] == '\t'))
		n--;
	switch (id) {
	case H_CTYPE:
		if (n > SL_H1C_CTYPE_MAX - 1)
			n = SL_H1C_CTYPE_MAX - 1;
		memcpy(p->ctype, p->val, n);
		p->ctype[n] = '\0';
		p->has_ctype = 1;
		return 0;
	case H_CLEN:
		if (p->val_trunc)
			return fail(p, "invalid Content-Length");
		if (n == 0)
			return fail(p, "invalid Content-Length");
		return each_elem(p, p->val, n, cl_elem);
	case H_TE:
		if (p->val_trunc)
			return fail(p, "unsupported Transfer-Encoding");
		p->te_seen = 1;
		return each_elem(p, p->val, n, te_elem);
	case H_CONN:
		if (p->val_trunc)
			p->conn_close = 1; /* unreadable: do not reuse */
		return each_elem(p, p->val, n, conn_elem);
	default:
		return 0;
	}
}

static int status_line(sl_h1c *p)
{
	const char *s = p->sl;
	if (p->line_len < 12 || memcmp(s, "HTTP/", 5) != 0 || s[6] != '.' || s[7] < '0' ||
	    s[7] > '9' || s[8] != ' ')
		return fail(p, "malformed status line");
	if (s[5] != '1')
		return fail(p, "unsupported HTTP version");
	for (int i = 9; i < 12; i++)
		if (s[i] < '0' || s[i] > '9')
			return fail(p, "malformed status line");
	if (p->line_len > 12 && s[12] != ' ')
		return fail(p, "malformed status line");
	unsigned code = (unsigned)(s[9] - '0') * 100 + (unsigned)(s[10] - '0') * 10 +
	                (unsigned)(s[11] - '0');
	if (code < 100)
		return fail(p, "malformed status line");
	p->status = (uint16_t)code;
	p->minor = s[7] == '0' ? 0 : 1;
	return 0;
}

/* The empty line ending a head.  Returns 0 to go on, or SL_H1C_DONE /
 * SL_H1C_ERROR. */
static int end_of_head(sl_h1c *p)
{
	if (finish_field(p))
		return SL_H1C_ERROR;
	if (p->status < 200) {
		if (p->status == 101)
			return fail(p, "unexpected 101 Switching Protocols");
		reset_fields(p);
		p->state = ST_STATUS;
		return 0;
	}
	p->head_done = 1;
	p->head_bytes = 0; /* from now on: trailer bytes */
	p->line_len = 0;
	if (p->status == 204 || p->status == 304) {
		p->has_cl = 0;
		p->content_length = 0;
		p->state = ST_DONE;
		return SL_H1C_DONE;
	}
	if (p->te_seen && (p->te_chunked || p->te_other)) {
		if (p->te_other || p->te_chunked != 1 || !p->te_last_chunked)
			return fail(p, "unsupported Transfer-Encoding");
		p->chunked = 1;
		if (p->has_cl)
			p->no_reuse = 1; /* RFC 9112 6.3: both -> close after */
		p->has_cl = 0;
		p->remaining = 0;
		p->ndigits = 0;
		p->val_ws = 0;
		p->state = ST_CHUNK_SIZE;
		return 0;
	}
	if (p->has_cl) {
		if (p->content_length == 0) {
			p->state = ST_DONE;
			return SL_H1C_DONE;
		}
		p->remaining = p->content_length;
		p->state = ST_BODY_CL;
		return 0;
	}
	p->until_close = 1;
	p->state = ST_BODY_CLOSE;
	return 0;
}

static int head_byte(sl_h1c *p)
{
	if (++p->head_bytes > p->max_head)
		return fail(p, "response head too large");
	return 0;
}

int sl_h1c_feed(sl_h1c *p, const char *in, size_t len, size_t *used,
                sl_h1c_data_fn fn, void *arg)
{
	size_t i = 0;
	int rc;
#define RET(v) do { *used = i; return (v); } while (0)
#define FAIL(msg) do { fail(p, msg); RET(SL_H1C_ERROR); } while (0)
	switch (p->state) {
	case ST_DONE: *used = 0; return SL_H1C_DONE;
	case ST_ERROR: *used = 0; return SL_H1C_ERROR;
	case ST_STOP: *used = 0; return SL_H1C_STOP;
	default: break;
	}
	while (i < len) {
		unsigned char ch = (unsigned char)in[i];
		/* line-oriented states: a CR must be followed by LF */
		if (p->cr) {
			if (ch != '\n')
				FAIL("bare CR");
		}
		switch (p->state) {
		case ST_STATUS:
			if (head_byte(p))
				RET(SL_H1C_ERROR);
			if (ch == '\r') {
				p->cr = 1;
				break;
			}
			if (ch == '\n') {
				p->cr = 0;
				if (status_line(p))
					RET(SL_H1C_ERROR);
				p->line_len = 0;
				p->fold_ok = 0;
				p->state = ST_LINE_START;
				break;
			}
			if (p->line_len < 5 && ch != (unsigned char)"HTTP/"[p->line_len])
				FAIL("not an HTTP/1.x response");
			if (!vchar(ch))
				FAIL("invalid character in the status line");
			if (p->sl_len < sizeof p->sl)
				p->sl[p->sl_len++] = (char)ch;
			p->line_len++;
			break;
		case ST_LINE_START:
			if (ch != '\r' && ch != '\n' && ch != ' ' && ch != '\t') {
				/* a new field line: the pending one is complete */
				if (finish_field(p))
					RET(SL_H1C_ERROR);
				p->name_len = 0;
				p->state = ST_NAME;
				continue; /* the same byte, in ST_NAME */
			}
			if (head_byte(p))
				RET(SL_H1C_ERROR);
			if (ch == '\r') {
				p->cr = 1;
				break;
			}
			if (ch == '\n') {
				p->cr = 0;
				rc = end_of_head(p);
				if (rc) {
					i++;
					RET(rc);
				}
				break;
			}
			/* obs-fold: the previous value goes on */
			if (!p->fold_ok)
				FAIL("folded line without a field");
			if (p->hdr_id != H_OTHER && p->val_len) {
				if (p->val_len < sizeof p->val)
					p->val[p->val_len++] = ' ';
				else
					p->val_trunc = 1;
			}
			p->val_ws = 1;
			p->state = ST_VALUE;
			break;
		case ST_NAME:
			if (head_byte(p))
				RET(SL_H1C_ERROR);
			if (ch == ':') {
				if (p->name_len == 0)
					FAIL("empty field name");
				p->hdr_id = H_OTHER;
				if (lower_eq(p->name, p->name_len, "content-type"))
					p->hdr_id = H_CTYPE;
				else if (lower_eq(p->name, p->name_len, "content-length"))
					p->hdr_id = H_CLEN;
				else if (lower_eq(p->name, p->name_len, "transfer-encoding"))
					p->hdr_id = H_TE;
				else if (lower_eq(p->name, p->name_len, "connection"))
					p->hdr_id = H_CONN;
				p->val_len = 0;
				p->val_trunc = 0;
				p->val_ws = 1;
				p->fold_ok = 1;
				p->state = ST_VALUE;
				break;
			}
			if (ch == '\r' || ch == '\n')
				FAIL("field line without a colon");
			if (!tchar(ch))
				FAIL("invalid character in a field name");
			if (p->name_len < sizeof p->name)
				p->name[p->name_len++] = (char)ch;
			break;
		case ST_VALUE:
			if (head_byte(p))
				RET(SL_H1C_ERROR);
			if (ch == '\r') {
				p->cr = 1;
				break;
			}
			if (ch == '\n') {
				p->cr = 0;
				p->state = ST_LINE_START;
				break;
			}
			if (!vchar(ch))
				FAIL("invalid character in a field value");
			if (p->val_ws && (ch == ' ' || ch == '\t'))
				break;
			p->val_ws = 0;
			if (p->hdr_id != H_OTHER) {
				if (p->val_len < sizeof p->val)
					p->val[p->val_len++] = (char)ch;
				else
					p->val_trunc = 1;
			}
			break;
		case ST_BODY_CL: {
			size_t n = len - i;
			if (n > p->remaining)
				n = (size_t)p->remaining;
			p->remaining -= n;
			i += n;
			if (fn(arg, in + i - n, n)) {
				p->state = ST_STOP;
				RET(SL_H1C_STOP);
			}
			if (p->remaining == 0) {
				p->state = ST_DONE;
				RET(SL_H1C_DONE);
			}
			continue;
		}
		case ST_BODY_CLOSE: {
			size_t n = len - i;
			i = len;
			if (fn(arg, in + i - n, n)) {
				p->state = ST_STOP;
				RET(SL_H1C_STOP);
			}
			continue;
		}
		case ST_CHUNK_SIZE: {
			int d = hexval(ch);
			if (d >= 0) {
				if (++p->line_len > SL_H1C_CHUNK_LINE_MAX)
					FAIL("chunk size line too long");
				if (p->remaining || d) {
					if (++p->ndigits > 16)
						FAIL("chunk size too large");
				}
				p->remaining = p->remaining * 16 + (uint64_t)d;
				break;
			}
			if (p->line_len == 0)
				FAIL("invalid chunk size");
			p->val_ws = 0; /* not yet inside extensions */
			p->state = ST_CHUNK_EXT;
			continue; /* the same byte, in ST_CHUNK_EXT */
		}
		case ST_CHUNK_EXT:
			if (ch == '\r') {
				p->cr = 1;
				break;
			}
			if (ch == '\n') {
				p->cr = 0;
				p->line_len = 0;
				if (p->remaining == 0) {
					p->head_bytes = 0;
					p->state = ST_TRAILER_START;
				} else {
					p->state = ST_CHUNK_DATA;
				}
				break;
			}
			if (++p->line_len > SL_H1C_CHUNK_LINE_MAX)
				FAIL("chunk size line too long");
			if (!p->val_ws) {
				if (ch == ';')
					p->val_ws = 1;
				else if (ch != ' ' && ch != '\t')
					FAIL("invalid chunk size");
			} else if (!vchar(ch)) {
				FAIL("invalid character in a chunk extension");
			}
			break;
		case ST_CHUNK_DATA: {
			size_t n = len - i;
			if (n > p->remaining)
				n = (size_t)p->remaining;
			p->remaining -= n;
			i += n;
			if (p->remaining == 0)
				p->state = ST_CHUNK_DATA_END;
			if (fn(arg, in + i - n, n)) {
				p->state = ST_STOP;
				RET(SL_H1C_STOP);
			}
			continue;
		}
		case ST_CHUNK_DATA_END:
			if (ch == '\r') {
				p->cr = 1;
				break;
			}
			if (ch != '\n')
				FAIL("missing line end after chunk data");
			p->cr = 0;
			p->line_len = 0;
			p->ndigits = 0;
			p->remaining = 0;
			p->state = ST_CHUNK_SIZE;
			break;
		case ST_TRAILER_START:
		case ST_TRAILER_LINE:
			if (head_byte(p))
				RET(SL_H1C_ERROR);
			if (ch == '\r') {
				p->cr = 1;
				break;
			}
			if (ch == '\n') {
				p->cr = 0;
				if (p->state == ST_TRAILER_START) {
					p->state = ST_DONE;
					i++;
					RET(SL_H1C_DONE);
				}
				p->state = ST_TRAILER_START;
				break;
			}
			if (!vchar(ch))
				FAIL("invalid character in a trailer");
			p->state = ST_TRAILER_LINE;
			break;
		default:
			FAIL("parser in a bad state");
		}
		i++;
	}
	RET(SL_H1C_MORE);
#undef FAIL
#undef RET
}

int sl_h1c_eof(sl_h1c *p)
{
	switch (p->state) {
	case ST_DONE:
		return SL_H1C_DONE;
	case ST_ERROR:
		return SL_H1C_ERROR;
	case ST_STOP:
		return SL_H1C_STOP;
	case ST_BODY_CLOSE:
		p->state = ST_DONE;
		return SL_H1C_DONE;
	default:
		break;
	}
	if (!p->head_done)
		return fail(p, p->head_bytes == 0 ? "connection closed before the response"
		                                  : "connection closed in the response head");
	return fail(p, "connection closed in the response body");
}
