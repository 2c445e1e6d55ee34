/* sse.c - incremental SSE parser and OpenAI chunk extraction; see sse.h. */
#include "worker/openai/sse.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"

struct sl_sse {
	size_t max;
	sl_sse_event_fn fn;
	void *arg;
	int err;          /* sticky status, 0 = none */
	int last_cr;      /* the previous chunk ended with '\r' */
	int bom_done;     /* past the point where a BOM may appear */
	unsigned bom_n;   /* BOM bytes matched so far (0..2) while !bom_done */
	int has_data;     /* at least one data line since the last dispatch */
	sl_dynbuf line;      /* partial line carried across feeds */
	sl_dynbuf data;      /* data buffer, without the trailing "\n" */
	sl_dynbuf event;     /* event type buffer */
	sl_dynbuf id;        /* last event id */
	int64_t retry;    /* -1 = not set */
};

static int chr(sl_dynbuf *b, char c)
{
	return sl_dynbuf_add(b, &c, 1);
}

static const unsigned char bom[3] = {0xEF, 0xBB, 0xBF};

int sl_sse_create(size_t max_event_bytes, sl_sse_event_fn fn, void *arg,
                  sl_sse **out)
{
	if (!out || !fn || max_event_bytes == 0 || max_event_bytes > ((size_t)-1) / 4)
		return SL_EINVAL;
	sl_sse *p = calloc(1, sizeof *p);
	if (!p)
		return SL_ENOMEM;
	p->max = max_event_bytes;
	p->fn = fn;
	p->arg = arg;
	p->retry = -1;
	sl_dynbuf_init(&p->line, max_event_bytes);
	sl_dynbuf_init(&p->data, max_event_bytes);
	sl_dynbuf_init(&p->event, max_event_bytes);
	sl_dynbuf_init(&p->id, max_event_bytes);
	*out = p;
	return SL_OK;
}

void sl_sse_destroy(sl_sse *p)
{
	if (!p)
		return;
	sl_dynbuf_free(&p->line);
	sl_dynbuf_free(&p->data);
	sl_dynbuf_free(&p->event);
	sl_dynbuf_free(&p->id);
	free(p);
}

const char *sl_sse_last_event_id(const sl_sse *p, size_t *len)
{
	if (len)
		*len = p->id.len;
	return p->id.len ? p->id.p : "";
}

int64_t sl_sse_retry(const sl_sse *p)
{
	return p->retry;
}

static int dispatch(sl_sse *p)
{
	if (!p->has_data) {
		sl_dynbuf_reset(&p->event);
		return SL_OK;
	}
	const char *ev = p->event.len ? p->event.p : "message";
	size_t evl = p->event.len ? p->event.len : 7;
	const char *d = p->data.len ? p->data.p : "";
	int rc = p->fn(p->arg, ev, evl, d, p->data.len);
	sl_dynbuf_reset(&p->data);
	sl_dynbuf_reset(&p->event);
	p->has_data = 0;
	return rc;
}

/* Processes one complete line (terminator excluded, len <= max). */
static int process_line(sl_sse *p, const char *s, size_t len)
{
	if (len == 0)
		return dispatch(p);
	if (s[0] == ':')
		return SL_OK;
	const char *colon = memchr(s, ':', len);
	size_t flen = colon ? (size_t)(colon - s) : len;
	const char *v = colon ? colon + 1 : s + len;
	size_t vlen = colon ? len - flen - 1 : 0;
	if (vlen && v[0] == ' ') {
		v++;
		vlen--;
	}
	int rc;
	switch (flen) {
	case 4:
		if (memcmp(s, "data", 4) != 0)
			return SL_OK;
		if (p->has_data && (rc = chr(&p->data, '\n')))
			return rc;
		if ((rc = sl_dynbuf_add(&p->data, v, vlen)))
			return rc;
		p->has_data = 1;
		return SL_OK;
	case 5:
		if (memcmp(s, "event", 5) == 0) {
			sl_dynbuf_reset(&p->event);
			return vlen ? sl_dynbuf_add(&p->event, v, vlen) : SL_OK;
		}
		if (memcmp(s, "retry", 5) == 0 && vlen) {
			int64_t r = 0;
			for (size_t i = 0; i < vlen; i++) {
				if (v[i] < '0' || v[i] > '9')
					return SL_OK;
				int dgt = v[i] - '0';
				r = r > (INT64_MAX - dgt) / 10 ? INT64_MAX : r * 10 + dgt;
			}
			p->retry = r;
		}
		return SL_OK;
	case 2:
		if (memcmp(s, "id", 2) == 0 && !memchr(v, '\0', vlen)) {
			sl_dynbuf_reset(&p->id);
			return vlen ? sl_dynbuf_add(&p->id, v, vlen) : SL_OK;
		}
		return SL_OK;
	default:
		return SL_OK;
	}
}

static int fail(sl_sse *p, int rc)
{
	p->err = rc;
	return rc;
}

int sl_sse_feed(sl_sse *p, const char *buf, size_t len)
{
	if (p->err)
		return p->err;
	if (len == 0)
		return SL_OK;
	size_t i = 0;
	int rc;

	/* a UTF-8 BOM at the very start of the stream is dropped */
	while (!p->bom_done && i < len) {
		if ((unsigned char)buf[i] == bom[p->bom_n]) {
			i++;
			if (++p->bom_n == 3)
				p->bom_done = 1;
			continue;
		}
		/* not a BOM: the bytes held back are ordinary line content */
		if (p->bom_n && (rc = sl_dynbuf_add(&p->line, bom, p->bom_n)))
			return fail(p, rc);
		p->bom_done = 1;
	}

	if (p->last_cr && i < len) {
		if (buf[i] == '\n')
			i++;
		p->last_cr = 0;
	}

	const char *nl = NULL; /* next '\n' at or after i, cached */
	int nl_none = 0;       /* no '\n' left in the chunk */
	while (i < len) {
		const char *s = buf + i;
		size_t rem = len - i;
		if (!nl_none && (!nl || nl < s)) {
			nl = memchr(s, '\n', rem);
			if (!nl)
				nl_none = 1;
		}
		size_t span = nl_none ? rem : (size_t)(nl - s);
		const char *cr = memchr(s, '\r', span);
		size_t eol;
		if (cr)
			eol = (size_t)(cr - s);
		else if (!nl_none)
			eol = span;
		else { /* no terminator: keep the partial line */
			if ((rc = sl_dynbuf_add(&p->line, s, rem)))
				return fail(p, rc);
			break;
		}
		if (p->line.len) {
			if ((rc = sl_dynbuf_add(&p->line, s, eol)))
				return fail(p, rc);
			rc = process_line(p, p->line.p, p->line.len);
			sl_dynbuf_reset(&p->line);
		} else if (eol > p->max) {
			return fail(p, SL_ETOOBIG);
		} else {
			rc = process_line(p, s, eol);
		}
		i += eol + 1;
		if (cr) {
			if (i < len) {
				if (buf[i] == '\n')
					i++;
			} else {
				p->last_cr = 1;
			}
		}
		if (rc)
			return fail(p, rc);
	}
	return SL_OK;
}

/* Is the buffered partial line a "data" field line? */
static int partial_is_data(const sl_sse *p)
{
	const char *s = p->line.p;
	size_t len = p->line.len;
	if (len < 4 || memcmp(s, "data", 4) != 0)
		return 0;
	return len == 4 || s[4] == ':';
}

int sl_sse_finish(sl_sse *p)
{
	if (p->err)
		return p->err;
	int pending = p->has_data || partial_is_data(p);
	sl_dynbuf_reset(&p->line);
	sl_dynbuf_reset(&p->data);
	sl_dynbuf_reset(&p->event);
	p->has_data = 0;
	p->last_cr = 0;
	p->bom_done = 0;
	p->bom_n = 0;
	return pending ? SL_EUPSTREAM : SL_OK;
}

/* ------------------------------------------------ OpenAI stream chunks */

#define CHUNK_DEFAULT_MAX (1u << 20)
#define NO_OFF ((size_t)-1)

void sl_oai_chunk_init(sl_oai_chunk *c, size_t max_bytes)
{
	memset(c, 0, sizeof *c);
	sl_dynbuf_init(&c->_store, max_bytes ? max_bytes : CHUNK_DEFAULT_MAX);
}

void sl_oai_chunk_free(sl_oai_chunk *c)
{
	if (!c)
		return;
	sl_dynbuf_free(&c->_store);
}

static void chunk_clear(sl_oai_chunk *c)
{
	sl_dynbuf store = c->_store;
	memset(c, 0, sizeof *c);
	c->_store = store;
	sl_dynbuf_reset(&c->_store);
}

static const char *const known_fr[] = {"stop", "length", "content_filter",
                                       "tool_calls", "function_call"};

/* Offsets of strings in the store while it may still move. */
typedef struct chunk_offs {
	size_t content, role, fr, msg, type, code, param;
} chunk_offs;

/* Appends s (n bytes) and a NUL to the store; *off gets its offset. */
static int store(sl_oai_chunk *c, const char *s, size_t n, size_t *off)
{
	size_t o = c->_store.len;
	int rc = sl_dynbuf_add(&c->_store, s, n);
	if (!rc && (rc = chr(&c->_store, '\0')))
		c->_store.len = o; /* the caller clears the chunk anyway */
	if (!rc)
		*off = o;
	return rc;
}

static const char *at(const sl_oai_chunk *c, size_t off)
{
	return off == NO_OFF ? NULL : c->_store.p + off;
}

/* Resolves offsets into pointers once the store no longer moves. */
static void chunk_finish(sl_oai_chunk *c, const chunk_offs *o, size_t fr_len)
{
	c->content = at(c, o->content);
	c->role = at(c, o->role);
	c->finish_reason = at(c, o->fr);
	if (c->finish_reason) {
		for (size_t i = 0; i < sizeof known_fr / sizeof known_fr[0]; i++)
			if (strlen(known_fr[i]) == fr_len &&
			    memcmp(known_fr[i], c->finish_reason, fr_len) == 0)
				c->finish_reason = known_fr[i];
	}
	c->error_message = at(c, o->msg);
	c->error_type = at(c, o->type);
	c->error_code = at(c, o->code);
	c->error_param = at(c, o->param);
}

static int is_done(const char *data, size_t len)
{
	return len == 6 && memcmp(data, "[DONE]", 6) == 0;
}

static int jstore(sl_oai_chunk *c, json_t *v, size_t *off)
{
	if (!json_is_string(v))
		return SL_OK;
	return store(c, json_string_value(v), json_string_length(v), off);
}

static uint32_t tokens(json_t *v)
{
	if (!json_is_integer(v))
		return 0;
	json_int_t x = json_integer_value(v);
	return (x >= 0 && x <= (json_int_t)UINT32_MAX) ? (uint32_t)x : 0;
}

int sl_oai_chunk_parse_jansson(const char *data, size_t len, sl_oai_chunk *out)
{
	chunk_clear(out);
	if (!data)
		data = "", len = 0;
	if (is_done(data, len)) {
		out->done = 1;
		return SL_OK;
	}
	json_error_t je;
	json_t *doc = json_loadb(data, len, JSON_ALLOW_NUL, &je);
	if (!doc)
		return json_error_code(&je) == json_error_out_of_memory ? SL_ENOMEM : SL_EINVAL;
	if (!json_is_object(doc)) {
		json_decref(doc);
		return SL_EINVAL;
	}
	chunk_offs o = {NO_OFF, NO_OFF, NO_OFF, NO_OFF, NO_OFF, NO_OFF, NO_OFF};
	size_t fr_len = 0;
	int rc = SL_OK;
	json_t *ch = json_array_get(json_object_get(doc, "choices"), 0);
	if (json_is_object(ch)) {
		out->has_choice = 1;
		json_t *delta = json_object_get(ch, "delta");
		json_t *content = json_object_get(delta, "content");
		if (!json_is_string(content))
			content = json_object_get(json_object_get(ch, "message"), "content");
		if (!json_is_string(content))
			content = json_object_get(ch, "text");
		json_t *fr = json_object_get(ch, "finish_reason");
		if (json_is_string(fr))
			fr_len = json_string_length(fr);
		if ((rc = jstore(out, content, &o.content)) ||
		    (rc = jstore(out, json_object_get(delta, "role"), &o.role)) ||
		    (rc = jstore(out, fr, &o.fr)))
			goto done;
		if (o.content != NO_OFF)
			out->content_len = json_string_length(content);
	}
	json_t *usage = json_object_get(doc, "usage");
	if (json_is_object(usage)) {
		out->has_usage = 1;
		out->prompt_tokens = tokens(json_object_get(usage, "prompt_tokens"));
		out->completion_tokens = tokens(json_object_get(usage, "completion_tokens"));
	}
	json_t *err = json_object_get(doc, "error");
	if (err && !json_is_null(err)) {
		out->is_error = 1;
		if (json_is_string(err)) {
			rc = jstore(out, err, &o.msg);
		} else {
			json_t *code = json_object_get(err, "code");
			if ((rc = jstore(out, json_object_get(err, "message"), &o.msg)) ||
			    (rc = jstore(out, json_object_get(err, "type"), &o.type)) ||
			    (rc = jstore(out, json_object_get(err, "param"), &o.param)))
				goto done;
			if (json_is_integer(code)) {
				char num[24];
				int n = snprintf(num, sizeof num, "%lld", (long long)json_integer_value(code));
				rc = store(out, num, (size_t)n, &o.code);
			} else {
				rc = jstore(out, code, &o.code);
			}
		}
	}
done:
	json_decref(doc);
	if (rc) {
		chunk_clear(out);
		return rc;
	}
	chunk_finish(out, &o, fr_len);
	return SL_OK;
}

/* ----------------------------------------- hand-written chunk extractor
 *
 * A single-pass validating JSON scanner that accepts exactly what
 * json_loadb(data, len, JSON_ALLOW_NUL) accepts (then requires an object)
 * and captures only the fields sl_oai_chunk reports; every other value is
 * validated and skipped without allocating.  Strings are captured as raw
 * spans of the input and unescaped into the chunk's store only once the
 * whole document is known to be valid, and only for the final value of a
 * duplicated key, so the store use (and SL_ETOOBIG) matches the reference.
 *
 * jansson's behaviour reproduced here, checked by fuzz/fuzz_chunk.c:
 *  - strict UTF-8 inside strings; raw control characters rejected;
 *  - "\u0000" allowed in values, rejected in keys; lone surrogates rejected;
 *  - integers outside long long and reals that overflow to +-inf rejected;
 *  - every value (scalars included) counts one nesting level, max 2048;
 *  - a single NUL byte right after a number or true/false/null is skipped
 *    (load.c's lex_unget of a NUL makes stream_get read past it);
 *  - a key given twice takes the later value.
 * Measured with bench/sse_extract.c (gcc -O2, 2-core shared VM, medians of
 * 7 alternating runs): on typical 220-330 byte OpenAI chunks this scanner
 * takes 0.25-0.6 us per chunk, jansson 3.2-8.5 us: 9-15x faster, and it
 * allocates nothing but the copied strings.  fuzz/fuzz_chunk.c checks that
 * both give identical results on every input.
 */

#define JX_MAX_DEPTH 2048

enum jx_ctx {
	X_SKIP = 0,
	X_ROOT,
	X_CHOICES,
	X_CHOICE0,
	X_DELTA,
	X_MESSAGE,
	X_USAGE,
	X_ERROR,
	X_CONTENT, /* string leaves */
	X_MCONTENT,
	X_TEXT,
	X_ROLE,
	X_FR,
	X_EMSG,
	X_ETYPE,
	X_EPARAM,
	X_ECODE,   /* string or integer */
	X_PT,      /* integers */
	X_CT
};

typedef struct jspan {
	const char *p; /* raw bytes between the quotes, NULL = unset */
	size_t n;
	int esc; /* contains a backslash */
} jspan;

typedef struct jx {
	const char *s, *end;
	unsigned depth;
	/* captures */
	jspan content, mcontent, text, role, fr, emsg, etype, eparam, ecode;
	int has_choice;
	int has_code_int;
	long long code_int;
	int has_usage, is_error;
	long long pt, ct;
	int has_pt, has_ct;
	/* the last scalar */
	jspan str;
	int num_is_int;
	long long num;
} jx;


static void jx_ws(jx *x)
{
	while (x->s < x->end && (*x->s == ' ' || *x->s == '\n' || *x->s == '\r' || *x->s == '\t'))
		x->s++;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Reads 4 hex digits at p (>= 4 bytes available checked by caller). */
static long hex4(const char *p)
{
	long v = 0;
	for (int i = 0; i < 4; i++) {
		int h = hexval((unsigned char)p[i]);
		if (h < 0)
			return -1;
		v = (v << 4) | h;
	}
	return v;
}

/* Validates a \uXXXX escape (and its pair) at p (pointing at 'u');
 * returns the code point and advances *pp past it, or -1. */
static long jx_uescape(const char **pp, const char *end)
{
	const char *p = *pp;
	if (end - p < 5)
		return -1;
	long v = hex4(p + 1);
	if (v < 0)
		return -1;
	p += 5;
	if (v >= 0xD800 && v <= 0xDBFF) {
		if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
			return -1;
		long v2 = hex4(p + 2);
		if (v2 < 0xDC00 || v2 > 0xDFFF)
			return -1;
		v = ((v - 0xD800) << 10) + (v2 - 0xDC00) + 0x10000;
		p += 6;
	} else if (v >= 0xDC00 && v <= 0xDFFF) {
		return -1;
	}
	*pp = p;
	return v;
}

/* Scans a string starting after its opening quote; sets x->str.  For keys
 * (is_key), "\u0000" is an error. */
static int jx_string(jx *x, int is_key)
{
	const char *p = x->s, *end = x->end;
	const char *start = p;
	int esc = 0;
	for (;;) {
		p = sl_json_plain_end(p, end);
		if (p >= end)
			return SL_EINVAL;
		unsigned char c = (unsigned char)*p;
		if (c == '"')
			break;
		if (c >= 0x80) {
			size_t n = sl_utf8_seq_len(p, (size_t)(end - p));
			if (!n)
				return SL_EINVAL;
			p += n;
			continue;
		}
		if (c != '\\') /* control character */
			return SL_EINVAL;
		esc = 1;
		if (++p >= end)
			return SL_EINVAL;
		switch (*p) {
		case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
			p++;
			break;
		case 'u': {
			long v = jx_uescape(&p, end);
			if (v < 0 || (v == 0 && is_key))
				return SL_EINVAL;
			break;
		}
		default:
			return SL_EINVAL;
		}
	}
	x->str.p = start;
	x->str.n = (size_t)(p - start);
	x->str.esc = esc;
	x->s = p + 1;
	return SL_OK;
}

/* Unescapes a validated span into dst (which has room for sp->n bytes:
 * unescaping never grows a string); returns the length. */
static size_t jx_unescape(const jspan *sp, char *dst)
{
	if (!sp->esc) {
		memcpy(dst, sp->p, sp->n);
		return sp->n;
	}
	const char *p = sp->p, *end = sp->p + sp->n;
	char *o = dst;
	while (p < end) {
		if (*p != '\\') {
			*o++ = *p++;
			continue;
		}
		p++;
		switch (*p) {
		case 'b': *o++ = '\b'; p++; break;
		case 'f': *o++ = '\f'; p++; break;
		case 'n': *o++ = '\n'; p++; break;
		case 'r': *o++ = '\r'; p++; break;
		case 't': *o++ = '\t'; p++; break;
		case 'u': {
			unsigned long v = (unsigned long)jx_uescape(&p, end);
			if (v < 0x80) {
				*o++ = (char)v;
			} else if (v < 0x800) {
				*o++ = (char)(0xC0 | (v >> 6));
				*o++ = (char)(0x80 | (v & 0x3F));
			} else if (v < 0x10000) {
				*o++ = (char)(0xE0 | (v >> 12));
				*o++ = (char)(0x80 | ((v >> 6) & 0x3F));
				*o++ = (char)(0x80 | (v & 0x3F));
			} else {
				*o++ = (char)(0xF0 | (v >> 18));
				*o++ = (char)(0x80 | ((v >> 12) & 0x3F));
				*o++ = (char)(0x80 | ((v >> 6) & 0x3F));
				*o++ = (char)(0x80 | (v & 0x3F));
			}
			break;
		}
		default: /* '"', '\\', '/' */
			*o++ = *p++;
		}
	}
	return (size_t)(o - dst);
}

/* Does key span k equal the C string lit (after unescaping)? */
static int jx_key_is(const jspan *k, const char *lit, size_t litn)
{
	if (!k->esc)
		return k->n == litn && memcmp(k->p, lit, litn) == 0;
	if (k->n < litn || k->n > 6 * litn + 6) /* cannot match */
		return 0;
	char tmp[6 * 32 + 6];
	if (k->n > sizeof tmp)
		return 0;
	size_t n = jx_unescape(k, tmp);
	return n == litn && memcmp(tmp, lit, litn) == 0;
}
#define KEY_IS(k, lit) jx_key_is((k), lit, sizeof(lit) - 1)

/* Scans a number at x->s; sets num_is_int / num.  Rejects what jansson
 * rejects, including range overflow. */
static int jx_number(jx *x)
{
	const char *p = x->s, *end = x->end, *start = p;
	int neg = 0;
	if (p < end && *p == '-') {
		neg = 1;
		p++;
	}
	const char *digits = p;
	if (p >= end || *p < '0' || *p > '9')
		return SL_EINVAL;
	if (*p == '0') {
		p++;
		if (p < end && *p >= '0' && *p <= '9')
			return SL_EINVAL;
	} else {
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	size_t ndig = (size_t)(p - digits);
	int is_real = 0;
	if (p < end && *p == '.') {
		p++;
		if (p >= end || *p < '0' || *p > '9')
			return SL_EINVAL;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
		is_real = 1;
	}
	int has_exp = 0;
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (p >= end || *p < '0' || *p > '9')
			return SL_EINVAL;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
		is_real = 1;
		has_exp = 1;
	}
	x->s = p;
	if (!is_real) {
		/* long long range: 19 digits at most, compared as text */
		static const char maxpos[] = "9223372036854775807";
		static const char maxneg[] = "9223372036854775808";
		if (ndig > 19 || (ndig == 19 && memcmp(digits, neg ? maxneg : maxpos, 19) > 0))
			return SL_EINVAL;
		unsigned long long v = 0;
		for (size_t i = 0; i < ndig; i++)
			v = v * 10 + (unsigned long long)(digits[i] - '0');
		x->num_is_int = 1;
		x->num = neg ? (long long)(0 - v) : (long long)v;
		return SL_OK;
	}
	x->num_is_int = 0;
	if (!has_exp && ndig <= 308) /* < 1e308 < DBL_MAX: cannot overflow */
		return SL_OK;
	/* rare: let strtod decide, exactly as jansson does (C locale) */
	size_t n = (size_t)(p - start);
	char small[128];
	char *tmp = n < sizeof small ? small : malloc(n + 1);
	if (!tmp)
		return SL_ENOMEM;
	memcpy(tmp, start, n);
	tmp[n] = '\0';
	double d = strtod(tmp, NULL);
	if (tmp != small)
		free(tmp);
	if (d == HUGE_VAL || d == -HUGE_VAL)
		return SL_EINVAL;
	return SL_OK;
}

static int jx_value(jx *x, enum jx_ctx ctx);

/* The context of key k's value inside an object of context ctx; resets
 * the captures that value replaces (a later duplicate key wins). */
static enum jx_ctx jx_child(jx *x, enum jx_ctx ctx, const jspan *k)
{
	switch (ctx) {
	case X_ROOT:
		if (KEY_IS(k, "choices")) {
			x->content.p = x->mcontent.p = x->text.p = x->role.p = x->fr.p = NULL;
			x->has_choice = 0;
			return X_CHOICES;
		}
		if (KEY_IS(k, "usage")) {
			x->has_usage = x->has_pt = x->has_ct = 0;
			return X_USAGE;
		}
		if (KEY_IS(k, "error")) {
			x->is_error = x->has_code_int = 0;
			x->emsg.p = x->etype.p = x->eparam.p = x->ecode.p = NULL;
			return X_ERROR;
		}
		return X_SKIP;
	case X_CHOICE0:
		if (KEY_IS(k, "delta")) {
			x->content.p = x->role.p = NULL;
			return X_DELTA;
		}
		if (KEY_IS(k, "message")) {
			x->mcontent.p = NULL;
			return X_MESSAGE;
		}
		if (KEY_IS(k, "text")) {
			x->text.p = NULL;
			return X_TEXT;
		}
		if (KEY_IS(k, "finish_reason")) {
			x->fr.p = NULL;
			return X_FR;
		}
		return X_SKIP;
	case X_DELTA:
		if (KEY_IS(k, "content")) {
			x->content.p = NULL;
			return X_CONTENT;
		}
		if (KEY_IS(k, "role")) {
			x->role.p = NULL;
			return X_ROLE;
		}
		return X_SKIP;
	case X_MESSAGE:
		if (KEY_IS(k, "content")) {
			x->mcontent.p = NULL;
			return X_MCONTENT;
		}
		return X_SKIP;
	case X_USAGE:
		if (KEY_IS(k, "prompt_tokens")) {
			x->has_pt = 0;
			return X_PT;
		}
		if (KEY_IS(k, "completion_tokens")) {
			x->has_ct = 0;
			return X_CT;
		}
		return X_SKIP;
	case X_ERROR:
		if (KEY_IS(k, "message")) {
			x->emsg.p = NULL;
			return X_EMSG;
		}
		if (KEY_IS(k, "type")) {
			x->etype.p = NULL;
			return X_ETYPE;
		}
		if (KEY_IS(k, "param")) {
			x->eparam.p = NULL;
			return X_EPARAM;
		}
		if (KEY_IS(k, "code")) {
			x->ecode.p = NULL;
			x->has_code_int = 0;
			return X_ECODE;
		}
		return X_SKIP;
	default:
		return X_SKIP;
	}
}

static int jx_object(jx *x, enum jx_ctx ctx)
{
	int rc;
	x->s++; /* '{' */
	jx_ws(x);
	if (x->s < x->end && *x->s == '}') {
		x->s++;
		return SL_OK;
	}
	for (;;) {
		if (x->s >= x->end || *x->s != '"')
			return SL_EINVAL;
		x->s++;
		if ((rc = jx_string(x, 1)))
			return rc;
		jspan key = x->str;
		jx_ws(x);
		if (x->s >= x->end || *x->s != ':')
			return SL_EINVAL;
		x->s++;
		if ((rc = jx_value(x, ctx == X_SKIP ? X_SKIP : jx_child(x, ctx, &key))))
			return rc;
		jx_ws(x);
		if (x->s >= x->end)
			return SL_EINVAL;
		if (*x->s == ',') {
			x->s++;
			jx_ws(x);
			continue;
		}
		if (*x->s == '}') {
			x->s++;
			return SL_OK;
		}
		return SL_EINVAL;
	}
}

static int jx_array(jx *x, enum jx_ctx ctx)
{
	int rc;
	x->s++; /* '[' */
	jx_ws(x);
	if (x->s < x->end && *x->s == ']') {
		x->s++;
		return SL_OK;
	}
	for (size_t i = 0;; i++) {
		if ((rc = jx_value(x, (ctx == X_CHOICES && i == 0) ? X_CHOICE0 : X_SKIP)))
			return rc;
		jx_ws(x);
		if (x->s >= x->end)
			return SL_EINVAL;
		if (*x->s == ',') {
			x->s++;
			continue;
		}
		if (*x->s == ']') {
			x->s++;
			return SL_OK;
		}
		return SL_EINVAL;
	}
}

static int jx_literal(jx *x, const char *lit, size_t n)
{
	if ((size_t)(x->end - x->s) < n || memcmp(x->s, lit, n) != 0)
		return SL_EINVAL;
	x->s += n;
	return SL_OK;
}

/* One value at x->s (after optional whitespace).  Depth counts every
 * value, as jansson's parse_value does. */
static int jx_value(jx *x, enum jx_ctx ctx)
{
	int rc;
	jx_ws(x);
	if (x->s >= x->end)
		return SL_EINVAL;
	if (++x->depth > JX_MAX_DEPTH)
		return SL_EINVAL;
	char c = *x->s;
	if (ctx == X_ERROR)
		x->is_error = c != 'n'; /* anything but null (validated below) */
	switch (c) {
	case '{':
		if (ctx == X_USAGE)
			x->has_usage = 1;
		if (ctx == X_CHOICE0)
			x->has_choice = 1;
		rc = jx_object(x, (ctx == X_ROOT || ctx == X_CHOICE0 || ctx == X_DELTA ||
		                   ctx == X_MESSAGE || ctx == X_USAGE || ctx == X_ERROR)
		                      ? ctx
		                      : X_SKIP);
		break;
	case '[':
		rc = jx_array(x, ctx == X_CHOICES ? X_CHOICES : X_SKIP);
		break;
	case '"':
		x->s++;
		if ((rc = jx_string(x, 0)))
			break;
		switch (ctx) {
		case X_CONTENT: x->content = x->str; break;
		case X_MCONTENT: x->mcontent = x->str; break;
		case X_TEXT: x->text = x->str; break;
		case X_ROLE: x->role = x->str; break;
		case X_FR: x->fr = x->str; break;
		case X_EMSG: case X_ERROR: x->emsg = x->str; break;
		case X_ETYPE: x->etype = x->str; break;
		case X_EPARAM: x->eparam = x->str; break;
		case X_ECODE: x->ecode = x->str; break;
		default: break;
		}
		break;
	case 't':
		rc = jx_literal(x, "true", 4);
		goto after_scalar;
	case 'f':
		rc = jx_literal(x, "false", 5);
		goto after_scalar;
	case 'n':
		rc = jx_literal(x, "null", 4);
		goto after_scalar;
	default:
		if (c != '-' && (c < '0' || c > '9'))
			return SL_EINVAL;
		if ((rc = jx_number(x)))
			return rc;
		if (x->num_is_int) {
			if (ctx == X_PT) {
				x->pt = x->num;
				x->has_pt = 1;
			} else if (ctx == X_CT) {
				x->ct = x->num;
				x->has_ct = 1;
			} else if (ctx == X_ECODE) {
				x->code_int = x->num;
				x->has_code_int = 1;
			}
		}
	after_scalar:
		if (rc)
			return rc;
		/* jansson's identifier scan eats letters: "truex" is invalid */
		if (x->s < x->end && ((*x->s >= 'a' && *x->s <= 'z') || (*x->s >= 'A' && *x->s <= 'Z')))
			return SL_EINVAL;
		if (x->s < x->end && *x->s == '\0') /* see the note above */
			x->s++;
		break;
	}
	if (rc)
		return rc;
	x->depth--;
	return SL_OK;
}

static uint32_t jx_tokens(int has, long long v)
{
	return (has && v >= 0 && v <= (long long)UINT32_MAX) ? (uint32_t)v : 0;
}

/* Unescapes span sp into the store; *off gets its offset. */
static int jx_store(sl_oai_chunk *c, const jspan *sp, size_t *off, size_t *outlen)
{
	if (!sp->p)
		return SL_OK;
	sl_dynbuf *b = &c->_store;
	size_t o = b->len;
	int rc;
	if (!sp->esc) {
		if ((rc = sl_dynbuf_add(b, sp->p, sp->n)) || (rc = chr(b, '\0')))
			return rc;
		*off = o;
		if (outlen)
			*outlen = sp->n;
		return SL_OK;
	}
	char small[256];
	char *tmp = sp->n <= sizeof small ? small : malloc(sp->n);
	if (!tmp)
		return SL_ENOMEM;
	size_t n = jx_unescape(sp, tmp);
	rc = sl_dynbuf_add(b, tmp, n);
	if (tmp != small)
		free(tmp);
	if (rc || (rc = chr(b, '\0')))
		return rc;
	*off = o;
	if (outlen)
		*outlen = n;
	return SL_OK;
}

int sl_oai_chunk_parse(const char *data, size_t len, sl_oai_chunk *out)
{
	chunk_clear(out);
	if (!data)
		data = "", len = 0;
	if (is_done(data, len)) {
		out->done = 1;
		return SL_OK;
	}
	jx x;
	memset(&x, 0, sizeof x);
	x.s = data;
	x.end = data + len;
	jx_ws(&x);
	if (x.s >= x.end || *x.s != '{')
		return SL_EINVAL;
	int rc = jx_value(&x, X_ROOT);
	if (rc)
		return rc;
	jx_ws(&x);
	if (x.s != x.end)
		return SL_EINVAL;

	chunk_offs o = {NO_OFF, NO_OFF, NO_OFF, NO_OFF, NO_OFF, NO_OFF, NO_OFF};
	size_t fr_len = 0;
	const jspan *content = x.content.p ? &x.content : x.mcontent.p ? &x.mcontent : &x.text;
	if ((rc = jx_store(out, content, &o.content, &out->content_len)) ||
	    (rc = jx_store(out, &x.role, &o.role, NULL)) ||
	    (rc = jx_store(out, &x.fr, &o.fr, &fr_len)) ||
	    (rc = jx_store(out, &x.emsg, &o.msg, NULL)) ||
	    (rc = jx_store(out, &x.etype, &o.type, NULL)) ||
	    (rc = jx_store(out, &x.eparam, &o.param, NULL)))
		goto fail;
	if (x.has_code_int) {
		char num[24];
		int n = snprintf(num, sizeof num, "%lld", x.code_int);
		jspan sp = {num, (size_t)n, 0};
		rc = jx_store(out, &sp, &o.code, NULL);
	} else {
		rc = jx_store(out, &x.ecode, &o.code, NULL);
	}
	if (rc)
		goto fail;
	out->has_usage = x.has_usage;
	out->has_choice = x.has_choice;
	out->prompt_tokens = jx_tokens(x.has_pt, x.pt);
	out->completion_tokens = jx_tokens(x.has_ct, x.ct);
	out->is_error = x.is_error;
	chunk_finish(out, &o, fr_len);
	return SL_OK;
fail:
	chunk_clear(out);
	return rc;
}
