/*
 * mock_http.c - HTTP/1.1 request framing and byte builder for the mock
 * upstream.  Contracts are in mock_http_int.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem, pthread_setname_np, CPU_COUNT */
#endif
#include "mock/mock_http_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------ byte builder */

bool mb__reserve(mb *b, size_t n)
{
	if (b->oom)
		return false;
	if (b->cap - b->len >= n)
		return true;
	size_t need = b->len + n;
	if (need < b->len || (b->limit && need > b->limit)) {
		b->oom = true;
		return false;
	}
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap * 2 > cap ? cap * 2 : need;
	if (b->limit && cap > b->limit)
		cap = b->limit;
	char *p = realloc(b->p, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

void mb_u64(mb *b, uint64_t v)
{
	char tmp[20];
	size_t i = sizeof(tmp);
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	mb_add(b, tmp + i, sizeof(tmp) - i);
}

void mb_hex(mb *b, uint64_t v)
{
	static const char digits[] = "0123456789abcdef";
	char tmp[16];
	size_t i = sizeof(tmp);
	do {
		tmp[--i] = digits[v & 15];
		v >>= 4;
	} while (v);
	mb_add(b, tmp + i, sizeof(tmp) - i);
}

void mb_json_str(mb *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t run = 0; /* start of the pending run of bytes copied as-is */
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch >= 0x20 && ch != '"' && ch != '\\')
			continue;
		mb_add(b, s + run, i - run);
		run = i + 1;
		switch (ch) {
		case '"': mb_lit(b, "\\\""); break;
		case '\\': mb_lit(b, "\\\\"); break;
		case '\n': mb_lit(b, "\\n"); break;
		case '\r': mb_lit(b, "\\r"); break;
		case '\t': mb_lit(b, "\\t"); break;
		default: {
			char u[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
			mb_add(b, u, sizeof(u));
		}
		}
	}
	mb_add(b, s + run, n - run);
}

/* ------------------------------------------------------------ HTTP framing */

/* tchar of RFC 9110 (token characters). */
static bool is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool name_is(const char *name, size_t n, const char *want)
{
	return strlen(want) == n && strncasecmp(name, want, n) == 0;
}

/* True when the comma-separated list v[0..n) holds `tok` (case-insensitive). */
static bool list_has(const char *v, size_t n, const char *tok)
{
	size_t tl = strlen(tok);
	size_t i = 0;
	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		size_t s = i;
		while (i < n && v[i] != ',')
			i++;
		size_t e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e - s == tl && strncasecmp(v + s, tok, tl) == 0)
			return true;
	}
	return false;
}

int mh_parse_head(const char *buf, size_t len, size_t max_head, mh_request *req)
{
	size_t skip = 0;
	while (len - skip >= 2 && buf[skip] == '\r' && buf[skip + 1] == '\n')
		skip += 2;
	const char *p = buf + skip;
	size_t n = len - skip;
	const char *end = n >= 4 ? memmem(p, n, "\r\n\r\n", 4) : NULL;
	if (!end)
		return len > max_head ? MH_EHEADBIG : MH_MORE;
	size_t head_len = (size_t)(end - buf) + 4;
	if (head_len > max_head)
		return MH_EHEADBIG;

	memset(req, 0, sizeof(*req));
	req->content_length = -1;
	req->head_len = head_len;

	/* request-line = method SP request-target SP HTTP-version CRLF */
	const char *q = p;
	while (q < end && is_tchar((unsigned char)*q))
		q++;
	if (q == p || q >= end || *q != ' ')
		return MH_EBAD;
	size_t ml = (size_t)(q - p);
	if (ml == 3 && memcmp(p, "GET", 3) == 0)
		req->method = MH_GET;
	else if (ml == 4 && memcmp(p, "POST", 4) == 0)
		req->method = MH_POST;
	else if (ml == 4 && memcmp(p, "HEAD", 4) == 0)
		req->method = MH_HEAD;
	else
		req->method = MH_OTHER;
	const char *t = ++q;
	while (q < end && *q != ' ' && *q != '\r' && *q != '\n' && (unsigned char)*q > 0x20)
		q++;
	if (q == t || q >= end || *q != ' ')
		return MH_EBAD;
	const char *qm = memchr(t, '?', (size_t)(q - t));
	req->path = t;
	req->path_len = (size_t)((qm ? qm : q) - t);
	q++;
	if (end + 2 - q < 10 || memcmp(q, "HTTP/1.", 7) != 0 || (q[7] != '0' && q[7] != '1') ||
	    q[8] != '\r' || q[9] != '\n')
		return MH_EBAD;
	req->minor = q[7] - '0';
	q += 10;

	bool conn_close = false, conn_keep = false, te_seen = false;
	/* header-field = field-name ":" OWS field-value OWS CRLF */
	while (q < end + 2) {
		const char *eol = memchr(q, '\r', (size_t)(end + 2 - q));
		if (!eol || eol[1] != '\n')
			return MH_EBAD;
		const char *name = q;
		while (q < eol && is_tchar((unsigned char)*q))
			q++;
		if (q == name || q >= eol || *q != ':')
			return MH_EBAD; /* also rejects obs-fold and space before ':' */
		size_t nl = (size_t)(q - name);
		q++;
		while (q < eol && (*q == ' ' || *q == '\t'))
			q++;
		const char *v = q, *ve = eol;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		for (const char *c = v; c < ve; c++)
			if (*c == '\n' || *c == '\0')
				return MH_EBAD;
		size_t vl = (size_t)(ve - v);
		q = eol + 2;

		switch (name[0] | 0x20) {
		case 'c':
			if (name_is(name, nl, "content-length")) {
				if (vl == 0 || vl > 15)
					return MH_EBAD;
				int64_t cl = 0;
				for (size_t i = 0; i < vl; i++) {
					if (v[i] < '0' || v[i] > '9')
						return MH_EBAD;
					cl = cl * 10 + (v[i] - '0');
				}
				if (req->content_length >= 0 && req->content_length != cl)
					return MH_EBAD;
				req->content_length = cl;
			} else if (name_is(name, nl, "connection")) {
				conn_close |= list_has(v, vl, "close");
				conn_keep |= list_has(v, vl, "keep-alive");
			}
			break;
		case 't':
			if (name_is(name, nl, "transfer-encoding")) {
				/* Only "chunked" alone is supported. */
				if (te_seen || vl != 7 || strncasecmp(v, "chunked", 7) != 0)
					return MH_ETE;
				te_seen = true;
				req->chunked = true;
			}
			break;
		case 'e':
			if (name_is(name, nl, "expect") && vl == 12 && strncasecmp(v, "100-continue", 12) == 0)
				req->expect_continue = true;
			break;
		case 'x':
			if (nl > 7 && strncasecmp(name, "x-mock-", 7) == 0) {
				const char *s = name + 7;
				size_t sl = nl - 7;
				if (name_is(s, sl, "tokens")) {
					req->x_tokens = v;
					req->x_tokens_len = vl;
				} else if (name_is(s, sl, "fault")) {
					req->x_fault = v;
					req->x_fault_len = vl;
				} else if (name_is(s, sl, "first-token-ms")) {
					req->x_first_ms = v;
					req->x_first_ms_len = vl;
				} else if (name_is(s, sl, "inter-token-ms")) {
					req->x_inter_ms = v;
					req->x_inter_ms_len = vl;
				}
			}
			break;
		default:
			break;
		}
	}
	if (req->chunked && req->minor == 0)
		return MH_EBAD;
	if (req->chunked && req->content_length >= 0)
		return MH_EBAD; /* both framings: refused (request smuggling) */
	req->keep_alive = req->minor == 1 ? !conn_close : (conn_keep && !conn_close);
	return MH_OK;
}

int mh_dechunk(const char *buf, size_t len, size_t max_body, size_t max_raw,
               mb *out, size_t *consumed)
{
	size_t i = 0;
	for (;;) {
		/* chunk-size [ chunk-ext ] CRLF */
		const char *eol = memchr(buf + i, '\n', len - i);
		if (!eol)
			return len - i > 1024 ? MH_EBAD : (len > max_raw ? MH_ETOOBIG : MH_MORE);
		size_t le = (size_t)(eol - buf);
		if (le == i || buf[le - 1] != '\r')
			return MH_EBAD;
		uint64_t size = 0;
		size_t d = i;
		for (; d < le - 1; d++) {
			char c = buf[d];
			int v = c >= '0' && c <= '9'   ? c - '0'
			        : c >= 'a' && c <= 'f' ? c - 'a' + 10
			        : c >= 'A' && c <= 'F' ? c - 'A' + 10
			                               : -1;
			if (v < 0)
				break;
			size = size * 16 + (uint64_t)v;
			if (size > max_body)
				return MH_ETOOBIG;
		}
		if (d == i)
			return MH_EBAD;
		if (d < le - 1) {
			while (d < le - 1 && (buf[d] == ' ' || buf[d] == '\t'))
				d++;
			if (d < le - 1 && buf[d] != ';')
				return MH_EBAD;
		}
		i = le + 1;
		if (size == 0) {
			/* trailer-section CRLF: skip trailer lines up to the empty one */
			for (;;) {
				const char *tl = memchr(buf + i, '\n', len - i);
				if (!tl)
					return len > max_raw ? MH_ETOOBIG : MH_MORE;
				size_t te = (size_t)(tl - buf);
				if (te == i || buf[te - 1] != '\r')
					return MH_EBAD;
				bool empty = te == i + 1;
				i = te + 1;
				if (empty) {
					*consumed = i;
					return MH_OK;
				}
			}
		}
		if (out->len + size > max_body)
			return MH_ETOOBIG;
		if (len - i < size + 2)
			return len > max_raw ? MH_ETOOBIG : MH_MORE;
		if (buf[i + size] != '\r' || buf[i + size + 1] != '\n')
			return MH_EBAD;
		mb_add(out, buf + i, (size_t)size);
		if (out->oom)
			return MH_ENOMEM;
		i += (size_t)size + 2;
	}
}
