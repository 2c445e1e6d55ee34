/* openai_req.c - OpenAI request body parsing and validation; see openai_req.h. */
#include "http/openai_req.h"

#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "http/openai_req_int.h"

#define IRE "invalid_request_error"

/* jansson's decoding flags; see openai_req.h. */
#define LOAD_FLAGS (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL)

/* Messages held inside the request's own allocation (fast path); a chat with
 * more gets one more allocation. */
#define INLINE_MSGS 8

/* The allocation behind an sl_oai_req, for both paths. */
typedef struct req_impl {
	sl_oai_req pub;            /* first member: (req_impl *)r == r */
	int fast;                  /* built by the fast path */
	const char *stop_buf[SL_OAI_MAX_STOP + 1]; /* pub.stop points here */
	const char *body;          /* fast path: the body copy, for the lazy
	                              sl_oai_req_json(); NULL otherwise */
	size_t body_len;
	const char *msgs_raw;      /* fast path: "messages" in the body copy */
	size_t msgs_raw_len;
	sl_oai_message msgs_inline[INLINE_MSGS]; /* fast path */
	char mem[];                /* fast path: body copy, padding, string arena */
} req_impl;

/* --------------------------------------------------------------- errors */

void sl_oai_error_set(sl_oai_error *err, int http_status, const char *type,
                      const char *code, const char *param, const char *fmt, ...)
{
	if (!err)
		return;
	err->http_status = http_status;
	err->type = type;
	err->code = code;
	if (param) {
		size_t n = strlen(param);
		if (n >= sizeof err->param_buf)
			n = sizeof err->param_buf - 1;
		memmove(err->param_buf, param, n); /* param may be err->param */
		err->param_buf[n] = '\0';
		err->param = err->param_buf;
	} else {
		err->param_buf[0] = '\0';
		err->param = NULL;
	}
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(err->message, sizeof err->message, fmt, ap);
	va_end(ap);
	if (n < 0)
		err->message[0] = '\0';
	/* truncation may have split a UTF-8 sequence: trim to whole chars */
	size_t len = strlen(err->message);
	err->message[sl_utf8_valid_prefix(err->message, len)] = '\0';
}

/* Formats a field path ("messages[2].content") into buf. */
static const char *path(char *buf, size_t cap, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static const char *path(char *buf, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, cap, fmt, ap);
	va_end(ap);
	return buf;
}

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "a value";
}

static int err_type(sl_oai_error *err, const char *param, const char *expected,
                    const json_t *got)
{
	sl_oai_error_set(err, 400, IRE, "invalid_type", param,
	                 "Invalid type for '%s': expected %s, but got %s instead.",
	                 param, expected, type_name(got));
	return SL_EINVAL;
}

static int err_missing(sl_oai_error *err, const char *param)
{
	sl_oai_error_set(err, 400, IRE, "missing_required_parameter", param,
	                 "Missing required parameter: '%s'.", param);
	return SL_EINVAL;
}

static int err_nomem(sl_oai_error *err)
{
	sl_oai_error_set(err, 500, "server_error", NULL, NULL,
	                 "The server ran out of memory while parsing the request.");
	return SL_ENOMEM;
}

/* Clips s (valid UTF-8) to at most max bytes on a character boundary, for
 * quoting user values in messages. */
static int clip(const char *s, size_t len, size_t max)
{
	if (len <= max)
		return (int)len;
	return (int)sl_utf8_valid_prefix(s, max);
}

/* -------------------------------------------------------------- helpers */

/* A field that is absent or JSON null counts as not given: returns NULL. */
static json_t *field(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	return (v && !json_is_null(v)) ? v : NULL;
}

/* String without embedded NUL; 0 or SL_EINVAL with err filled. */
static int plain_string(json_t *v, const char *param, sl_oai_error *err)
{
	if (!json_is_string(v))
		return err_type(err, param, "a string", v);
	if (strlen(json_string_value(v)) != json_string_length(v)) {
		sl_oai_error_set(err, 400, IRE, "invalid_value", param,
		                 "Invalid '%s': the string contains a NUL character.", param);
		return SL_EINVAL;
	}
	return SL_OK;
}

/* Integer (or an integral real); SL_EINVAL with err filled otherwise. */
static int get_int(json_t *v, const char *param, long long *out, sl_oai_error *err)
{
	if (json_is_integer(v)) {
		*out = (long long)json_integer_value(v);
		return SL_OK;
	}
	if (json_is_real(v)) {
		double d = json_real_value(v);
		if (d >= -9.2e18 && d <= 9.2e18 && (double)(long long)d == d) {
			*out = (long long)d;
			return SL_OK;
		}
	}
	return err_type(err, param, "an integer", v);
}

static int get_bool(json_t *v, const char *param, int *out, sl_oai_error *err)
{
	if (!json_is_boolean(v))
		return err_type(err, param, "a boolean", v);
	*out = json_is_true(v);
	return SL_OK;
}

/* Number in [lo, hi]. */
static int get_range(json_t *v, const char *param, double lo, double hi,
                     double *out, sl_oai_error *err)
{
	if (!json_is_number(v))
		return err_type(err, param, "a number", v);
	double d = json_number_value(v);
	if (!(d >= lo && d <= hi)) {
		sl_oai_error_set(err, 400, IRE, "invalid_value", param,
		                 "Invalid '%s': expected a number between %g and %g, but got %g instead.",
		                 param, lo, hi, d);
		return SL_EINVAL;
	}
	*out = d;
	return SL_OK;
}

/* ------------------------------------------------------------- messages */

static const char *const roles[] = {"system", "user", "assistant", "tool", "developer"};

static const char *known_role(const char *s)
{
	for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
		if (strcmp(s, roles[i]) == 0)
			return roles[i];
	return NULL;
}

/* Parses messages[i].content into m; *total accumulates content bytes. */
static int parse_content(json_t *c, size_t i, sl_oai_message *m,
                         sl_oai_error *err)
{
	char p[64];
	if (json_is_string(c)) {
		m->content = json_string_value(c);
		m->content_len = json_string_length(c);
		return SL_OK;
	}
	if (!json_is_array(c))
		return err_type(err, path(p, sizeof p, "messages[%zu].content", i),
		                "a string or an array of content parts", c);
	size_t n = json_array_size(c);
	if (n == 0) {
		path(p, sizeof p, "messages[%zu].content", i);
		sl_oai_error_set(err, 400, IRE, "empty_array", p,
		                 "Invalid '%s': empty array. Expected an array with minimum length 1, but got an empty array instead.",
		                 p);
		return SL_EINVAL;
	}
	size_t total = 0;
	for (size_t j = 0; j < n; j++) {
		json_t *part = json_array_get(c, j);
		if (!json_is_object(part))
			return err_type(err, path(p, sizeof p, "messages[%zu].content[%zu]", i, j),
			                "an object", part);
		json_t *ty = json_object_get(part, "type");
		if (!ty)
			return err_missing(err, path(p, sizeof p, "messages[%zu].content[%zu].type", i, j));
		if (!json_is_string(ty))
			return err_type(err, path(p, sizeof p, "messages[%zu].content[%zu].type", i, j),
			                "a string", ty);
		if (strcmp(json_string_value(ty), "text") != 0 ||
		    json_string_length(ty) != 4) {
			const char *tv = json_string_value(ty);
			size_t tl = json_string_length(ty);
			path(p, sizeof p, "messages[%zu].content[%zu].type", i, j);
			sl_oai_error_set(err, 400, IRE, "unsupported_value", p,
			                 "Unsupported content part type '%.*s' in '%s': sluice accepts only 'text' parts.",
			                 clip(tv, strlen(tv) < tl ? strlen(tv) : tl, 40), tv, p);
			return SL_EINVAL;
		}
		json_t *tx = json_object_get(part, "text");
		if (!tx)
			return err_missing(err, path(p, sizeof p, "messages[%zu].content[%zu].text", i, j));
		if (!json_is_string(tx))
			return err_type(err, path(p, sizeof p, "messages[%zu].content[%zu].text", i, j),
			                "a string", tx);
		total += json_string_length(tx) + (j ? 1 : 0);
	}
	if (n == 1) { /* no copy needed */
		json_t *tx = json_object_get(json_array_get(c, 0), "text");
		m->content = json_string_value(tx);
		m->content_len = json_string_length(tx);
		return SL_OK;
	}
	char *buf = malloc(total + 1);
	if (!buf)
		return err_nomem(err);
	size_t off = 0;
	for (size_t j = 0; j < n; j++) {
		json_t *tx = json_object_get(json_array_get(c, j), "text");
		if (j)
			buf[off++] = '\n';
		memcpy(buf + off, json_string_value(tx), json_string_length(tx));
		off += json_string_length(tx);
	}
	buf[off] = '\0';
	m->_owned = buf;
	m->content = buf;
	m->content_len = off;
	return SL_OK;
}

static int parse_messages(sl_oai_req *r, json_t *msgs, size_t max_messages,
                          sl_oai_error *err)
{
	char p[64];
	if (!json_is_array(msgs))
		return err_type(err, "messages", "an array", msgs);
	size_t n = json_array_size(msgs);
	if (n == 0) {
		sl_oai_error_set(err, 400, IRE, "empty_array", "messages",
		                 "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.");
		return SL_EINVAL;
	}
	if (n > max_messages) {
		sl_oai_error_set(err, 400, IRE, "array_above_max_length", "messages",
		                 "Invalid 'messages': array too long. Expected an array with maximum length %zu, but got an array with length %zu instead.",
		                 max_messages, n);
		return SL_EINVAL;
	}
	r->messages = calloc(n, sizeof *r->messages);
	if (!r->messages)
		return err_nomem(err);
	r->n_messages = n;
	for (size_t i = 0; i < n; i++) {
		json_t *m = json_array_get(msgs, i);
		sl_oai_message *om = &r->messages[i];
		if (!json_is_object(m))
			return err_type(err, path(p, sizeof p, "messages[%zu]", i), "an object", m);
		json_t *role = json_object_get(m, "role");
		if (!role)
			return err_missing(err, path(p, sizeof p, "messages[%zu].role", i));
		if (!json_is_string(role))
			return err_type(err, path(p, sizeof p, "messages[%zu].role", i), "a string", role);
		const char *rs = json_string_value(role);
		om->role = json_string_length(role) == strlen(rs) ? known_role(rs) : NULL;
		if (!om->role) {
			path(p, sizeof p, "messages[%zu].role", i);
			sl_oai_error_set(err, 400, IRE, "invalid_value", p,
			                 "Invalid value for '%s': '%.*s'. Supported values are: 'system', 'user', 'assistant', 'tool', and 'developer'.",
			                 p, clip(rs, strlen(rs), 40), rs);
			return SL_EINVAL;
		}
		json_t *content = json_object_get(m, "content");
		if (!content)
			return err_missing(err, path(p, sizeof p, "messages[%zu].content", i));
		if (json_is_null(content)) {
			if (strcmp(om->role, "assistant") != 0)
				return err_type(err, path(p, sizeof p, "messages[%zu].content", i),
				                "a string or an array of content parts", content);
			om->content = "";
			om->content_len = 0;
		} else {
			int rc = parse_content(content, i, om, err);
			if (rc)
				return rc;
		}
		json_t *name = field(m, "name");
		if (name) {
			int rc = plain_string(name, path(p, sizeof p, "messages[%zu].name", i), err);
			if (rc)
				return rc;
			om->name = json_string_value(name);
		}
		r->input_bytes += om->content_len;
	}
	return SL_OK;
}

static int parse_prompt(sl_oai_req *r, json_t *pr, sl_oai_error *err)
{
	if (json_is_array(pr)) {
		if (json_array_size(pr) != 1 || !json_is_string(json_array_get(pr, 0))) {
			sl_oai_error_set(err, 400, IRE, "unsupported_value", "prompt",
			                 "Invalid 'prompt': sluice accepts a string or an array of exactly one string (no token arrays, no batches).");
			return SL_EINVAL;
		}
		pr = json_array_get(pr, 0);
	}
	if (!json_is_string(pr))
		return err_type(err, "prompt", "a string", pr);
	r->prompt = json_string_value(pr);
	r->prompt_len = json_string_length(pr);
	r->input_bytes = r->prompt_len;
	return SL_OK;
}

/* ---------------------------------------------------------------- fields */

static int parse_max_tokens(json_t *doc, const char *key, int cap, int *out,
                            sl_oai_error *err)
{
	json_t *v = field(doc, key);
	if (!v)
		return SL_OK;
	long long x;
	int rc = get_int(v, key, &x, err);
	if (rc)
		return rc;
	if (x < 1 || x > cap) {
		sl_oai_error_set(err, 400, IRE, "invalid_value", key,
		                 "Invalid '%s': integer out of range. Expected a value between 1 and %d, but got %lld instead.",
		                 key, cap, x);
		return SL_EINVAL;
	}
	*out = (int)x;
	return SL_OK;
}

static int parse_stop(sl_oai_req *r, json_t *v, sl_oai_error *err)
{
	size_t n;
	if (json_is_string(v))
		n = 1;
	else if (json_is_array(v))
		n = json_array_size(v);
	else
		return err_type(err, "stop", "a string or an array of strings", v);
	if (n > SL_OAI_MAX_STOP) {
		sl_oai_error_set(err, 400, IRE, "invalid_value", "stop",
		                 "Invalid 'stop': array too long. Expected at most %d strings, but got %zu instead.",
		                 SL_OAI_MAX_STOP, n);
		return SL_EINVAL;
	}
	if (n == 0)
		return SL_OK;
	r->stop = ((req_impl *)r)->stop_buf; /* zeroed: stop[n] is NULL */
	for (size_t i = 0; i < n; i++) {
		json_t *s = json_is_string(v) ? v : json_array_get(v, i);
		if (!json_is_string(s))
			return err_type(err, "stop", "a string or an array of strings", s);
		int rc = plain_string(s, "stop", err);
		if (rc)
			return rc;
		if (json_string_length(s) == 0) {
			sl_oai_error_set(err, 400, IRE, "invalid_value", "stop",
			                 "Invalid 'stop': stop sequences must not be empty.");
			return SL_EINVAL;
		}
		r->stop[i] = json_string_value(s);
	}
	r->n_stop = n;
	return SL_OK;
}

/* The limits in force (a zero field takes its default). */
static void get_limits(const sl_oai_limits *lim, size_t *max_input, int *cap,
                       size_t *max_messages)
{
	*max_input = lim && lim->max_input ? lim->max_input : SL_DEFAULT_MAX_INPUT;
	*cap = lim && lim->max_tokens_cap > 0 ? lim->max_tokens_cap : SL_OAI_DEFAULT_MAX_TOKENS_CAP;
	*max_messages = lim && lim->max_messages ? lim->max_messages : SL_OAI_DEFAULT_MAX_MESSAGES;
}

static int parse_doc(sl_oai_req *r, json_t *doc, const sl_oai_limits *lim,
                     sl_oai_error *err)
{
	size_t max_input, max_messages;
	int cap;
	get_limits(lim, &max_input, &cap, &max_messages);
	int rc;
	json_t *v;

	/* model */
	v = field(doc, "model");
	if (!v)
		return err_missing(err, "model");
	if ((rc = plain_string(v, "model", err)))
		return rc;
	if (json_string_length(v) == 0) {
		sl_oai_error_set(err, 400, IRE, "invalid_value", "model",
		                 "Invalid 'model': expected a non-empty string.");
		return SL_EINVAL;
	}
	r->model = json_string_value(v);

	/* messages / prompt */
	if (r->kind == SL_OAI_CHAT) {
		v = field(doc, "messages");
		if (!v)
			return err_missing(err, "messages");
		if ((rc = parse_messages(r, v, max_messages, err)))
			return rc;
	} else {
		v = field(doc, "prompt");
		if (!v)
			return err_missing(err, "prompt");
		if ((rc = parse_prompt(r, v, err)))
			return rc;
	}

	/* stream, stream_options */
	if ((v = field(doc, "stream")) && (rc = get_bool(v, "stream", &r->stream, err)))
		return rc;
	if ((v = field(doc, "stream_options"))) {
		if (!json_is_object(v))
			return err_type(err, "stream_options", "an object", v);
		if (!r->stream) {
			sl_oai_error_set(err, 400, IRE, "invalid_value", "stream_options",
			                 "The 'stream_options' parameter is only allowed when 'stream' is enabled.");
			return SL_EINVAL;
		}
		json_t *iu = field(v, "include_usage");
		if (iu && (rc = get_bool(iu, "stream_options.include_usage", &r->include_usage, err)))
			return rc;
	}

	/* max_tokens, max_completion_tokens */
	int mt = 0, mct = 0;
	if ((rc = parse_max_tokens(doc, "max_tokens", cap, &mt, err)))
		return rc;
	if ((rc = parse_max_tokens(doc, "max_completion_tokens", cap, &mct, err)))
		return rc;
	r->max_tokens = mct ? mct : mt;

	/* sampling */
	if ((v = field(doc, "temperature")) &&
	    (rc = get_range(v, "temperature", 0.0, 2.0, &r->temperature, err)))
		return rc;
	if ((v = field(doc, "top_p")) && (rc = get_range(v, "top_p", 0.0, 1.0, &r->top_p, err)))
		return rc;

	/* n */
	if ((v = field(doc, "n"))) {
		long long n;
		if ((rc = get_int(v, "n", &n, err)))
			return rc;
		if (n > 1) {
			sl_oai_error_set(err, 400, IRE, "unsupported_value", "n",
			                 "n>1 is not supported: sluice returns one choice per request");
			return SL_EINVAL;
		}
		if (n < 1) {
			sl_oai_error_set(err, 400, IRE, "invalid_value", "n",
			                 "Invalid 'n': integer below minimum value. Expected a value >= 1, but got %lld instead.",
			                 n);
			return SL_EINVAL;
		}
	}

	/* stop */
	if ((v = field(doc, "stop")) && (rc = parse_stop(r, v, err)))
		return rc;

	/* user */
	if ((v = field(doc, "user"))) {
		if ((rc = plain_string(v, "user", err)))
			return rc;
		r->user = json_string_value(v);
	}

	/* seed */
	if ((v = field(doc, "seed"))) {
		long long s;
		if ((rc = get_int(v, "seed", &s, err)))
			return rc;
		r->seed = (int64_t)s;
		r->has_seed = 1;
	}

	/* prompt size, last: every type error is reported before it */
	if (r->input_bytes > max_input) {
		const char *param = r->kind == SL_OAI_CHAT ? "messages" : "prompt";
		sl_oai_error_set(err, 400, IRE, "context_length_exceeded", param,
		                 "This request's prompt is %zu bytes, over the limit of %zu bytes. Please reduce the length of the %s.",
		                 r->input_bytes, max_input, param);
		return SL_ETOOBIG;
	}
	return SL_OK;
}

/* ---------------------------------------------------------- jansson path */

static int parse_jansson(sl_oai_kind kind, const char *body, size_t len,
                         const sl_oai_limits *lim, sl_oai_req **out,
                         sl_oai_error *err)
{
	json_error_t je;
	json_t *doc = json_loadb(body ? body : "", len, LOAD_FLAGS, &je);
	if (!doc) {
		if (json_error_code(&je) == json_error_out_of_memory)
			return err_nomem(err);
		sl_oai_error_set(err, 400, IRE, "invalid_json", NULL,
		                 "We could not parse the JSON body of your request: %s (line %d, column %d).",
		                 je.text, je.line, je.column);
		return SL_EINVAL;
	}
	if (!json_is_object(doc)) {
		sl_oai_error_set(err, 400, IRE, "invalid_type", NULL,
		                 "The request body must be a JSON object, but got %s instead.",
		                 type_name(doc));
		json_decref(doc);
		return SL_EINVAL;
	}
	req_impl *m = calloc(1, sizeof *m);
	if (!m) {
		json_decref(doc);
		return err_nomem(err);
	}
	sl_oai_req *r = &m->pub;
	r->kind = kind;
	r->temperature = -1;
	r->top_p = -1;
	r->n = 1;
	r->_json = doc;
	int rc = parse_doc(r, doc, lim, err);
	if (rc) {
		sl_oai_req_free(r);
		return rc;
	}
	*out = r;
	return SL_OK;
}

/* ------------------------------------------------------------- fast path
 *
 * One pass over a private, NUL-padded copy of the body that fills the
 * request directly: strings are decoded into an arena placed after the copy
 * in the same allocation, so a request costs one malloc (two for a chat of
 * more than INLINE_MSGS messages).  The copy also serves sl_oai_req_json(),
 * which builds the jansson document on first use.
 *
 * The fast path accepts a body only when the jansson path would accept it
 * and would produce the same request; on any error, and on anything it does
 * not handle, it *declines* (returns FP_DECLINE, frees what it made) and
 * sl_oai_req_parse() runs the jansson path, which then produces the answer
 * (error message included) exactly as before.  What it declines on purpose,
 * beyond every error: escapes in object keys and in the values of "role" and
 * a content part's "type"; integers outside int64 and reals that might
 * overflow a double (jansson errors on both; the boundary is left to it);
 * containers nested deeper than FP_MAX_DEPTH; more than FP_MAX_KEYS unknown
 * keys in the open objects; a real it cannot convert exactly (see
 * fp_real()).  fuzz/fuzz_openai_req.c and fuzz_openai_req_diff.c compare
 * both paths on every input.
 *
 * Measured against jansson (bench/openai_req.c, callgrind): the streaming
 * client's 86-byte chat body parses in ~1,000 instructions / ~70 ns instead
 * of ~20,800 / ~1.7 us; a chat with a 2 KB system prompt and 6 turns in
 * ~12,600 instructions / ~0.75 us instead of ~438,000 / ~35 us (20-47x on
 * the four bodies of the benchmark; docs/internals/http.md has the table).
 *
 * Sentinel: the copy is followed by FP_PAD NUL bytes.  A NUL is invalid
 * everywhere in JSON text (inside a string it is a control character), so
 * every scanner stops on it without a bound check; the end of the body is
 * told from a NUL byte inside it by comparing with x->end.  The padding also
 * makes 8-byte reads at any position <= end safe. */

#define FP_PAD 16         /* NUL bytes after the copy and after the arena */
#define FP_MAX_DEPTH 64   /* containers; jansson allows 2048 */
#define FP_MAX_KEYS 256   /* unknown keys of the open objects (duplicate check) */
#define FP_DECLINE (-1)

#define DIGIT(c) ((unsigned)((c) - '0') < 10u)

typedef struct fp_keyref {
	const char *s;
	size_t n;
} fp_keyref;

typedef struct fp {
	const unsigned char *p;   /* cursor in the body copy */
	const unsigned char *end; /* end of the body (FP_PAD NULs follow) */
	char *out;                /* arena write cursor */
	int depth;                /* open containers */
	unsigned nkeys;           /* keys[] in use */
	/* The unknown keys of every open object, innermost last: duplicates are
	 * rejected in every object at any depth (JSON_REJECT_DUPLICATES).  Known
	 * keys are tracked by bit masks instead.  Keys carry no escapes (the
	 * fast path declines them), so equal keys have equal bytes. */
	fp_keyref keys[FP_MAX_KEYS];
} fp;

typedef struct fp_num {
	int is_real;
	long long i; /* !is_real */
	double d;    /* the value as json_number_value() gives it */
} fp_num;

static inline int fp_is_ws(unsigned c)
{
	return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static inline void fp_ws(fp *x)
{
	while (fp_is_ws(*x->p))
		x->p++;
}

/* After a member or an element: 1 when a ',' follows (consumed, blanks
 * after it skipped), 0 when `close` does (consumed). */
static inline int fp_next(fp *x, unsigned char close)
{
	fp_ws(x);
	unsigned c = *x->p;
	if (c == ',') {
		x->p++;
		fp_ws(x);
		return 1;
	}
	if (c == close) {
		x->p++;
		return 0;
	}
	return FP_DECLINE;
}

/* Index of the first byte of w (8 bytes in memory order) that is a control
 * character, '"', a backslash or non-ASCII; 8 when there is none.  The
 * classic "has zero/less byte" tests: a false positive can only sit above
 * (later than) a true one, so the lowest flagged byte is exact. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define FP_SWAR 1
static inline unsigned fp_special8(uint64_t w)
{
	const uint64_t ones = UINT64_C(0x0101010101010101);
	const uint64_t high = UINT64_C(0x8080808080808080);
	uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
	uint64_t t = ((w - ones * 0x20) & ~w) | ((q - ones) & ~q) | ((b - ones) & ~b) | w;
	t &= high;
	return t ? (unsigned)__builtin_ctzll(t) >> 3 : 8;
}
#endif

static inline int fp_hex4(const unsigned char *p)
{
	int v = 0;
	for (int i = 0; i < 4; i++) {
		unsigned c = p[i], d;
		if (DIGIT(c))
			d = c - '0';
		else if ((unsigned)((c | 0x20) - 'a') < 6u)
			d = (c | 0x20) - 'a' + 10;
		else
			return -1;
		v = v << 4 | (int)d;
	}
	return v;
}

/* The string whose opening quote is at x->p.  copy: decoded into the arena
 * and NUL-terminated; *s, *n = the text, *nul = whether it holds U+0000.
 * Otherwise only validated.  Strict like jansson: UTF-8 (sl_utf8_seq_len
 * applies the same rules), no control characters, the eight escapes, \u with
 * 4 hex digits, surrogate escapes only as a high + low pair. */
static inline __attribute__((always_inline)) int
fp_string(fp *x, int copy, const char **s, size_t *n, int *nul)
{
	const unsigned char *p = x->p + 1;
	char *o = x->out, *o0 = o;
	int has_nul = 0;
	for (;;) {
#ifdef FP_SWAR
		/* Within a string, o - arena < p - body (the opening quote was not
		 * copied and nothing decodes longer than its source), so writing 8
		 * bytes at o stays inside the arena's len + FP_PAD bytes. */
		for (;;) {
			uint64_t w;
			memcpy(&w, p, 8);
			if (copy)
				memcpy(o, &w, 8);
			unsigned k = fp_special8(w);
			p += k;
			if (copy)
				o += k;
			if (k < 8)
				break;
		}
#else
		while (!sl_json_byte_class[*p]) {
			if (copy)
				*o++ = (char)*p;
			p++;
		}
#endif
		unsigned c = *p;
		if (c == '"')
			break;
		if (c >= 0x80) {
			size_t k = sl_utf8_seq_len((const char *)p, (size_t)(x->end - p));
			if (!k)
				return FP_DECLINE;
			if (copy) {
				memcpy(o, p, k);
				o += k;
			}
			p += k;
			continue;
		}
		if (c != '\\') /* a control character, or the end */
			return FP_DECLINE;
		uint32_t cp;
		switch (p[1]) {
		case '"': cp = '"'; p += 2; break;
		case '\\': cp = '\\'; p += 2; break;
		case '/': cp = '/'; p += 2; break;
		case 'b': cp = '\b'; p += 2; break;
		case 'f': cp = '\f'; p += 2; break;
		case 'n': cp = '\n'; p += 2; break;
		case 'r': cp = '\r'; p += 2; break;
		case 't': cp = '\t'; p += 2; break;
		case 'u': {
			int v = fp_hex4(p + 2);
			if (v < 0)
				return FP_DECLINE;
			p += 6;
			if (v >= 0xD800 && v <= 0xDBFF) {
				if (p[0] != '\\' || p[1] != 'u')
					return FP_DECLINE; /* lone high surrogate */
				int v2 = fp_hex4(p + 2);
				if (v2 < 0xDC00 || v2 > 0xDFFF)
					return FP_DECLINE;
				p += 6;
				cp = 0x10000 + ((uint32_t)(v - 0xD800) << 10) + (uint32_t)(v2 - 0xDC00);
			} else if (v >= 0xDC00 && v <= 0xDFFF) {
				return FP_DECLINE; /* lone low surrogate */
			} else {
				cp = (uint32_t)v;
			}
			break;
		}
		default:
			return FP_DECLINE;
		}
		if (copy) {
			if (cp < 0x80) {
				*o++ = (char)cp;
				has_nul |= cp == 0;
			} else if (cp < 0x800) {
				*o++ = (char)(0xC0 | cp >> 6);
				*o++ = (char)(0x80 | (cp & 0x3F));
			} else if (cp < 0x10000) {
				*o++ = (char)(0xE0 | cp >> 12);
				*o++ = (char)(0x80 | (cp >> 6 & 0x3F));
				*o++ = (char)(0x80 | (cp & 0x3F));
			} else {
				*o++ = (char)(0xF0 | cp >> 18);
				*o++ = (char)(0x80 | (cp >> 12 & 0x3F));
				*o++ = (char)(0x80 | (cp >> 6 & 0x3F));
				*o++ = (char)(0x80 | (cp & 0x3F));
			}
		}
	}
	x->p = p + 1;
	if (copy) {
		*o = '\0';
		*s = o0;
		*n = (size_t)(o - o0);
		*nul = has_nul;
		x->out = o + 1;
	}
	return 0;
}

static int fp_copy(fp *x, const char **s, size_t *n, int *nul)
{
	if (*x->p != '"')
		return FP_DECLINE;
	return fp_string(x, 1, s, n, nul);
}

/* A string without escapes at x->p (its opening quote), not copied: *s, *n
 * point into the body.  For keys and enumerated values. */
static inline int fp_raw(fp *x, const char **s, size_t *n)
{
	const unsigned char *p = x->p;
	if (*p++ != '"')
		return FP_DECLINE;
	const unsigned char *b = p;
	for (;;) {
		p = (const unsigned char *)sl_json_plain_end((const char *)p, (const char *)x->end);
		if (p >= (const unsigned char *)x->end)
			return FP_DECLINE;
		if (*p == '"')
			break;
		if (*p < 0x80) /* an escape, a control character or the end */
			return FP_DECLINE;
		size_t k = sl_utf8_seq_len((const char *)p, (size_t)(x->end - p));
		if (!k)
			return FP_DECLINE;
		p += k;
	}
	*s = (const char *)b;
	*n = (size_t)(p - b);
	x->p = p + 1;
	return 0;
}

/* An object key at x->p, then ':' with its blanks; x->p ends on the value. */
static inline int fp_key(fp *x, const char **k, size_t *kn)
{
	if (fp_raw(x, k, kn))
		return FP_DECLINE;
	fp_ws(x);
	if (*x->p != ':')
		return FP_DECLINE;
	x->p++;
	fp_ws(x);
	return 0;
}

/* Records an unknown key of the object whose first key is keys[base];
 * declines on a duplicate. */
static inline int fp_key_new(fp *x, unsigned base, const char *k, size_t kn)
{
	for (unsigned i = base; i < x->nkeys; i++)
		if (x->keys[i].n == kn && memcmp(x->keys[i].s, k, kn) == 0)
			return FP_DECLINE;
	if (x->nkeys == FP_MAX_KEYS)
		return FP_DECLINE;
	x->keys[x->nkeys].s = k;
	x->keys[x->nkeys].n = kn;
	x->nkeys++;
	return 0;
}

static inline int fp_lit(fp *x, const char *lit, size_t n)
{
	if (memcmp(x->p, lit, n) != 0) /* reads at most 5 bytes: within the padding */
		return FP_DECLINE;
	x->p += n;
	return 0;
}

/* JSON null at x->p: consumed, 1.  Anything else: 0. */
static inline int fp_null(fp *x)
{
	if (x->p[0] != 'n' || memcmp(x->p, "null", 4) != 0)
		return 0;
	x->p += 4;
	return 1;
}

static int fp_bool(fp *x, int *out)
{
	if (x->p[0] == 't' && fp_lit(x, "true", 4) == 0) {
		*out = 1;
		return 0;
	}
	if (x->p[0] == 'f' && fp_lit(x, "false", 5) == 0) {
		*out = 0;
		return 0;
	}
	return FP_DECLINE;
}

#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
static const double fp_pow10[23] = {
	1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
#endif

/* The value of the real number [s, end) whose digits are the nint at ds and
 * the nfrac at fs, with exponent e, as strtod() (and so jansson) gives it.
 * Clinger's fast path when the digits fit in 53 bits and |e10| <= 22: both
 * operands are exact doubles, so one IEEE multiplication or division rounds
 * correctly.  Otherwise strtod() on a copy (declining tokens of 64+ bytes
 * and a locale whose decimal point is not '.'). */
static int fp_real(const unsigned char *s, const unsigned char *end,
                   const unsigned char *ds, size_t nint, const unsigned char *fs,
                   size_t nfrac, long e, int neg, double *out)
{
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
	uint64_t m = 0;
	int sig = 0;
	for (size_t i = 0; i < nint + nfrac; i++) {
		unsigned c = (i < nint ? ds[i] : fs[i - nint]) - '0';
		if ((m || c) && ++sig > 19)
			goto slow;
		m = m * 10 + c;
	}
	if (m == 0) {
		*out = neg ? -0.0 : 0.0;
		return 0;
	}
	long e10 = e - (long)nfrac;
	if (m <= (UINT64_C(1) << 53) && e10 >= -22 && e10 <= 22) {
		double d = (double)m;
		d = e10 < 0 ? d / fp_pow10[-e10] : d * fp_pow10[e10];
		*out = neg ? -d : d;
		return 0;
	}
slow:;
#endif
	char buf[64];
	size_t n = (size_t)(end - s);
	if (n >= sizeof buf)
		return FP_DECLINE;
	memcpy(buf, s, n);
	buf[n] = '\0';
	char *ep;
	errno = 0;
	double d = strtod(buf, &ep);
	if (ep != buf + n || ((d == HUGE_VAL || d == -HUGE_VAL) && errno == ERANGE))
		return FP_DECLINE;
	*out = d;
	return 0;
}

/* A number at x->p (RFC 8259 grammar, as jansson's lexer).  v may be NULL to
 * validate only.  Integers (no fraction, no exponent) must fit in int64
 * (jansson: "too big integer"); reals whose magnitude might reach DBL_MAX
 * decline (jansson: "real number overflow" -- or not: the boundary is left
 * to it).  Underflow to zero is accepted, as jansson does. */
static int fp_number(fp *x, fp_num *v)
{
	const unsigned char *p = x->p, *s = p;
	int neg = *p == '-';
	p += neg;
	const unsigned char *ds = p, *fs = p;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		do
			p++;
		while (DIGIT(*p));
	else
		return FP_DECLINE;
	size_t nint = (size_t)(p - ds), nfrac = 0;
	int real = 0;
	long e = 0;
	if (*p == '.') {
		p++;
		if (!DIGIT(*p))
			return FP_DECLINE;
		fs = p;
		do
			p++;
		while (DIGIT(*p));
		nfrac = (size_t)(p - fs);
		real = 1;
	}
	if ((*p | 0x20) == 'e') {
		p++;
		int eneg = *p == '-';
		if (*p == '-' || *p == '+')
			p++;
		if (!DIGIT(*p))
			return FP_DECLINE;
		do {
			if (e < 100000)
				e = e * 10 + (*p - '0');
			p++;
		} while (DIGIT(*p));
		if (eneg)
			e = -e;
		real = 1;
	}
	x->p = p;
	if (!real) {
		if (nint > 19) /* no leading zeros: > 19 digits is > INT64_MAX */
			return FP_DECLINE;
		uint64_t u = 0;
		for (size_t i = 0; i < nint; i++)
			u = u * 10 + (unsigned)(ds[i] - '0');
		if (u > (uint64_t)INT64_MAX + (uint64_t)neg)
			return FP_DECLINE;
		if (v) {
			v->is_real = 0;
			v->i = !neg ? (long long)u
			     : u > (uint64_t)INT64_MAX ? INT64_MIN : -(long long)u;
			v->d = (double)v->i;
		}
		return 0;
	}
	if ((long)(nint > 400 ? 400 : nint) + e > 300) /* < 10^300 is certainly finite */
		return FP_DECLINE;
	if (!v)
		return 0;
	v->is_real = 1;
	v->i = 0;
	return fp_real(s, p, ds, nint, fs, nfrac, e, neg, &v->d);
}

/* An integer, or a real with an integral value (get_int()). */
static int fp_int(fp *x, long long *out)
{
	fp_num v;
	if (fp_number(x, &v))
		return FP_DECLINE;
	if (!v.is_real) {
		*out = v.i;
		return 0;
	}
	double d = v.d;
	if (d >= -9.2e18 && d <= 9.2e18 && (double)(long long)d == d) {
		*out = (long long)d;
		return 0;
	}
	return FP_DECLINE;
}

static int fp_skip(fp *x);

static int fp_skip_object(fp *x)
{
	if (++x->depth > FP_MAX_DEPTH)
		return FP_DECLINE;
	unsigned base = x->nkeys;
	x->p++;
	fp_ws(x);
	if (*x->p == '}') {
		x->p++;
	} else {
		for (;;) {
			const char *k;
			size_t kn;
			if (fp_key(x, &k, &kn) || fp_key_new(x, base, k, kn) || fp_skip(x))
				return FP_DECLINE;
			int rc = fp_next(x, '}');
			if (rc <= 0) {
				if (rc)
					return rc;
				break;
			}
		}
	}
	x->nkeys = base;
	x->depth--;
	return 0;
}

static int fp_skip_array(fp *x)
{
	if (++x->depth > FP_MAX_DEPTH)
		return FP_DECLINE;
	x->p++;
	fp_ws(x);
	if (*x->p == ']') {
		x->p++;
	} else {
		for (;;) {
			if (fp_skip(x))
				return FP_DECLINE;
			int rc = fp_next(x, ']');
			if (rc <= 0) {
				if (rc)
					return rc;
				break;
			}
		}
	}
	x->depth--;
	return 0;
}

/* Validates the value at x->p without keeping it (unknown fields). */
static int fp_skip(fp *x)
{
	switch (*x->p) {
	case '"': return fp_string(x, 0, NULL, NULL, NULL);
	case '{': return fp_skip_object(x);
	case '[': return fp_skip_array(x);
	case 't': return fp_lit(x, "true", 4);
	case 'f': return fp_lit(x, "false", 5);
	case 'n': return fp_lit(x, "null", 4);
	default: return fp_number(x, NULL);
	}
}

static const char *fp_role(const char *s, size_t n)
{
	switch (n) {
	case 4:
		if (memcmp(s, "user", 4) == 0)
			return roles[1];
		if (memcmp(s, "tool", 4) == 0)
			return roles[3];
		break;
	case 6:
		if (memcmp(s, "system", 6) == 0)
			return roles[0];
		break;
	case 9:
		if (memcmp(s, "assistant", 9) == 0)
			return roles[2];
		if (memcmp(s, "developer", 9) == 0)
			return roles[4];
		break;
	}
	return NULL;
}

/* messages[i].content as an array of text parts, x->p on its '['.  The
 * texts are decoded one after the other into the arena (nothing else is
 * written there meanwhile: "type" is compared in place, unknown members are
 * skipped), and each part's NUL terminator but the last becomes the "\n"
 * joiner, so the joined content is built in place with no copy. */
static int fp_parts(fp *x, sl_oai_message *om)
{
	if ((x->depth += 2) > FP_MAX_DEPTH)
		return FP_DECLINE;
	x->p++;
	fp_ws(x);
	if (*x->p != '{') /* ']' (empty) or not an object */
		return FP_DECLINE;
	char *start = x->out;
	for (size_t j = 0;; j++) {
		if (*x->p != '{')
			return FP_DECLINE;
		unsigned seen = 0, base = x->nkeys;
		x->p++;
		fp_ws(x);
		if (*x->p == '}')
			return FP_DECLINE;
		for (;;) {
			const char *k, *s;
			size_t kn, n;
			int nul;
			if (fp_key(x, &k, &kn))
				return FP_DECLINE;
			if (kn == 4 && memcmp(k, "type", 4) == 0) {
				if ((seen & 1) || fp_raw(x, &s, &n) || n != 4 || memcmp(s, "text", 4) != 0)
					return FP_DECLINE;
				seen |= 1;
			} else if (kn == 4 && memcmp(k, "text", 4) == 0) {
				if (seen & 2)
					return FP_DECLINE;
				seen |= 2;
				if (j)
					x->out[-1] = '\n'; /* the previous text's NUL */
				if (fp_copy(x, &s, &n, &nul))
					return FP_DECLINE;
			} else if (fp_key_new(x, base, k, kn) || fp_skip(x)) {
				return FP_DECLINE;
			}
			int rc = fp_next(x, '}');
			if (rc <= 0) {
				if (rc)
					return rc;
				break;
			}
		}
		if (seen != 3)
			return FP_DECLINE;
		x->nkeys = base;
		int rc = fp_next(x, ']');
		if (rc <= 0) {
			if (rc)
				return rc;
			break;
		}
	}
	om->content = start;
	om->content_len = (size_t)(x->out - 1 - start);
	x->depth -= 2;
	return 0;
}

/* One message object, x->p on its '{'. */
static int fp_message(fp *x, sl_oai_message *om)
{
	unsigned seen = 0, base = x->nkeys;
	int content_null = 0;
	memset(om, 0, sizeof *om);
	if (++x->depth > FP_MAX_DEPTH)
		return FP_DECLINE;
	x->p++;
	fp_ws(x);
	if (*x->p == '}')
		return FP_DECLINE;
	for (;;) {
		const char *k, *s;
		size_t kn, n;
		int nul;
		if (fp_key(x, &k, &kn))
			return FP_DECLINE;
		unsigned f = kn == 4 && memcmp(k, "role", 4) == 0 ? 1u
		           : kn == 7 && memcmp(k, "content", 7) == 0 ? 2u
		           : kn == 4 && memcmp(k, "name", 4) == 0 ? 4u : 0u;
		if (!f) {
			if (fp_key_new(x, base, k, kn) || fp_skip(x))
				return FP_DECLINE;
		} else {
			if (seen & f)
				return FP_DECLINE;
			seen |= f;
			if (f == 1) {
				if (fp_raw(x, &s, &n) || !(om->role = fp_role(s, n)))
					return FP_DECLINE;
			} else if (f == 2) {
				if (*x->p == '"') {
					if (fp_string(x, 1, &om->content, &om->content_len, &nul))
						return FP_DECLINE;
				} else if (*x->p == '[') {
					if (fp_parts(x, om))
						return FP_DECLINE;
				} else if (fp_null(x)) {
					content_null = 1;
				} else {
					return FP_DECLINE;
				}
			} else if (!fp_null(x)) {
				if (fp_copy(x, &s, &n, &nul) || nul)
					return FP_DECLINE;
				om->name = s;
			}
		}
		int rc = fp_next(x, '}');
		if (rc <= 0) {
			if (rc)
				return rc;
			break;
		}
	}
	if ((seen & 3) != 3)
		return FP_DECLINE;
	if (content_null) {
		if (om->role != roles[2]) /* only "assistant" may send null */
			return FP_DECLINE;
		om->content = "";
		om->content_len = 0;
	}
	x->nkeys = base;
	x->depth--;
	return 0;
}

/* "messages", x->p on its '['. */
static int fp_messages(fp *x, req_impl *m, size_t max_messages)
{
	sl_oai_req *r = &m->pub;
	sl_oai_message *msgs = m->msgs_inline;
	size_t cap = INLINE_MSGS, n = 0;
	r->messages = msgs;
	if (++x->depth > FP_MAX_DEPTH)
		return FP_DECLINE;
	x->p++;
	fp_ws(x);
	for (;;) {
		if (*x->p != '{' || n == max_messages) /* also: [] */
			return FP_DECLINE;
		if (n == cap) {
			size_t ncap = cap * 4 < max_messages ? cap * 4 : max_messages;
			sl_oai_message *nm = msgs == m->msgs_inline ? malloc(ncap * sizeof *nm)
			                                           : realloc(msgs, ncap * sizeof *nm);
			if (!nm)
				return FP_DECLINE;
			if (msgs == m->msgs_inline)
				memcpy(nm, msgs, n * sizeof *nm);
			r->messages = msgs = nm;
			cap = ncap;
		}
		r->n_messages = n + 1;
		if (fp_message(x, &msgs[n]))
			return FP_DECLINE;
		r->input_bytes += msgs[n].content_len;
		n++;
		int rc = fp_next(x, ']');
		if (rc <= 0) {
			if (rc)
				return rc;
			break;
		}
	}
	x->depth--;
	return 0;
}

static int fp_stop(fp *x, req_impl *m)
{
	sl_oai_req *r = &m->pub;
	const char *s;
	size_t n, k = 0;
	int nul;
	if (*x->p == '"') {
		if (fp_string(x, 1, &s, &n, &nul) || nul || n == 0)
			return FP_DECLINE;
		m->stop_buf[k++] = s;
	} else {
		if (*x->p != '[')
			return FP_DECLINE;
		x->p++;
		fp_ws(x);
		if (*x->p == ']') {
			x->p++;
			return 0; /* [] is no stop sequence */
		}
		for (;;) {
			if (k == SL_OAI_MAX_STOP || fp_copy(x, &s, &n, &nul) || nul || n == 0)
				return FP_DECLINE;
			m->stop_buf[k++] = s;
			int rc = fp_next(x, ']');
			if (rc <= 0) {
				if (rc)
					return rc;
				break;
			}
		}
	}
	m->stop_buf[k] = NULL;
	r->stop = m->stop_buf;
	r->n_stop = k;
	return 0;
}

/* stream_options, x->p on its '{'. */
static int fp_stream_options(fp *x, int *include_usage)
{
	unsigned base = x->nkeys;
	int seen = 0;
	if (++x->depth > FP_MAX_DEPTH)
		return FP_DECLINE;
	x->p++;
	fp_ws(x);
	if (*x->p == '}') {
		x->p++;
	} else {
		for (;;) {
			const char *k;
			size_t kn;
			if (fp_key(x, &k, &kn))
				return FP_DECLINE;
			if (kn == 13 && memcmp(k, "include_usage", 13) == 0) {
				if (seen || (!fp_null(x) && fp_bool(x, include_usage)))
					return FP_DECLINE;
				seen = 1;
			} else if (fp_key_new(x, base, k, kn) || fp_skip(x)) {
				return FP_DECLINE;
			}
			int rc = fp_next(x, '}');
			if (rc <= 0) {
				if (rc)
					return rc;
				break;
			}
		}
	}
	x->nkeys = base;
	x->depth--;
	return 0;
}

/* The top-level members the parser reads. */
enum {
	K_MODEL = 1u << 0, K_MESSAGES = 1u << 1, K_PROMPT = 1u << 2, K_STREAM = 1u << 3,
	K_STREAM_OPTIONS = 1u << 4, K_MAX_TOKENS = 1u << 5, K_MAX_COMPLETION_TOKENS = 1u << 6,
	K_TEMPERATURE = 1u << 7, K_TOP_P = 1u << 8, K_N = 1u << 9, K_STOP = 1u << 10,
	K_USER = 1u << 11, K_SEED = 1u << 12
};

static unsigned fp_top_key(const char *k, size_t n)
{
#define KEY_IS(lit) (memcmp(k, lit, sizeof lit - 1) == 0)
	switch (n) {
	case 1: return k[0] == 'n' ? K_N : 0;
	case 4: return KEY_IS("stop") ? K_STOP : KEY_IS("user") ? K_USER : KEY_IS("seed") ? K_SEED : 0;
	case 5: return KEY_IS("model") ? K_MODEL : KEY_IS("top_p") ? K_TOP_P : 0;
	case 6: return KEY_IS("stream") ? K_STREAM : KEY_IS("prompt") ? K_PROMPT : 0;
	case 8: return KEY_IS("messages") ? K_MESSAGES : 0;
	case 10: return KEY_IS("max_tokens") ? K_MAX_TOKENS : 0;
	case 11: return KEY_IS("temperature") ? K_TEMPERATURE : 0;
	case 14: return KEY_IS("stream_options") ? K_STREAM_OPTIONS : 0;
	case 21: return KEY_IS("max_completion_tokens") ? K_MAX_COMPLETION_TOKENS : 0;
	}
	return 0;
#undef KEY_IS
}

/* The top-level object: every rule of parse_doc(), declining instead of
 * reporting. */
static int fp_top(fp *x, req_impl *m, const sl_oai_limits *lim)
{
	sl_oai_req *r = &m->pub;
	size_t max_input, max_messages;
	int cap;
	get_limits(lim, &max_input, &cap, &max_messages);
	unsigned seen = 0, given = 0;
	unsigned ignored = r->kind == SL_OAI_CHAT ? K_PROMPT : K_MESSAGES;
	int include_usage = 0, mt = 0, mct = 0;

	fp_ws(x);
	if (*x->p != '{')
		return FP_DECLINE;
	x->depth = 1;
	x->p++;
	fp_ws(x);
	for (;;) {
		const char *k, *s;
		size_t kn, n;
		int nul;
		long long ll;
		fp_num v;
		if (fp_key(x, &k, &kn)) /* also: {} (no model) */
			return FP_DECLINE;
		unsigned f = fp_top_key(k, kn);
		if (f & ignored)
			f = 0;
		if (!f) {
			if (fp_key_new(x, 0, k, kn) || fp_skip(x))
				return FP_DECLINE;
		} else if (seen & f) {
			return FP_DECLINE; /* duplicate */
		} else if (seen |= f, fp_null(x)) {
			/* null: not given (but seen: a second one is a duplicate) */
		} else {
			given |= f;
			switch (f) {
			case K_MODEL:
				if (fp_copy(x, &s, &n, &nul) || nul || n == 0)
					return FP_DECLINE;
				r->model = s;
				break;
			case K_MESSAGES: {
				const unsigned char *at = x->p;
				if (*x->p != '[' || fp_messages(x, m, max_messages))
					return FP_DECLINE;
				m->msgs_raw = (const char *)at;
				m->msgs_raw_len = (size_t)(x->p - at);
				break;
			}
			case K_PROMPT:
				if (*x->p == '[') { /* an array of exactly one string */
					x->p++;
					fp_ws(x);
					if (fp_copy(x, &s, &n, &nul))
						return FP_DECLINE;
					fp_ws(x);
					if (*x->p++ != ']')
						return FP_DECLINE;
				} else if (fp_copy(x, &s, &n, &nul)) {
					return FP_DECLINE;
				}
				r->prompt = s;
				r->prompt_len = n;
				r->input_bytes = n;
				break;
			case K_STREAM:
				if (fp_bool(x, &r->stream))
					return FP_DECLINE;
				break;
			case K_STREAM_OPTIONS:
				if (*x->p != '{' || fp_stream_options(x, &include_usage))
					return FP_DECLINE;
				break;
			case K_MAX_TOKENS:
			case K_MAX_COMPLETION_TOKENS:
				if (fp_int(x, &ll) || ll < 1 || ll > cap)
					return FP_DECLINE;
				*(f == K_MAX_TOKENS ? &mt : &mct) = (int)ll;
				break;
			case K_TEMPERATURE:
			case K_TOP_P:
				if (fp_number(x, &v) || !(v.d >= 0.0 && v.d <= (f == K_TOP_P ? 1.0 : 2.0)))
					return FP_DECLINE;
				*(f == K_TOP_P ? &r->top_p : &r->temperature) = v.d;
				break;
			case K_N:
				if (fp_int(x, &ll) || ll != 1)
					return FP_DECLINE;
				break;
			case K_STOP:
				if (fp_stop(x, m))
					return FP_DECLINE;
				break;
			case K_USER:
				if (fp_copy(x, &s, &n, &nul) || nul)
					return FP_DECLINE;
				r->user = s;
				break;
			case K_SEED:
				if (fp_int(x, &ll))
					return FP_DECLINE;
				r->seed = (int64_t)ll;
				r->has_seed = 1;
				break;
			}
		}
		int rc = fp_next(x, '}');
		if (rc <= 0) {
			if (rc)
				return rc;
			break;
		}
	}
	fp_ws(x);
	if (x->p != x->end) /* trailing bytes, or a NUL byte in the body */
		return FP_DECLINE;
	if (!(given & K_MODEL) || !(given & (r->kind == SL_OAI_CHAT ? K_MESSAGES : K_PROMPT)))
		return FP_DECLINE;
	if (given & K_STREAM_OPTIONS) {
		if (!r->stream)
			return FP_DECLINE;
		r->include_usage = include_usage;
	}
	r->max_tokens = mct ? mct : mt;
	if (r->input_bytes > max_input)
		return FP_DECLINE;
	return 0;
}

/* The fast path: SL_OK with *out set, or FP_DECLINE (nothing allocated). */
static int parse_fast(sl_oai_kind kind, const char *body, size_t len,
                      const sl_oai_limits *lim, sl_oai_req **out)
{
	if (len == 0 || len > (SIZE_MAX - sizeof(req_impl)) / 2 - 2 * FP_PAD)
		return FP_DECLINE;
	/* body copy + FP_PAD NULs, then the arena: every decoded string with its
	 * terminator is shorter than its quoted source, so len bytes hold all of
	 * them; FP_PAD more absorb fp_string()'s 8-byte stores. */
	req_impl *m = malloc(sizeof *m + 2 * len + 2 * FP_PAD);
	if (!m)
		return FP_DECLINE;
	memset(m, 0, offsetof(req_impl, msgs_inline));
	char *copy = m->mem;
	memcpy(copy, body, len);
	memset(copy + len, 0, FP_PAD);
	m->fast = 1;
	m->body = copy;
	m->body_len = len;
	sl_oai_req *r = &m->pub;
	r->kind = kind;
	r->temperature = -1;
	r->top_p = -1;
	r->n = 1;
	fp x;
	x.p = (const unsigned char *)copy;
	x.end = x.p + len;
	x.out = copy + len + FP_PAD;
	x.depth = 0;
	x.nkeys = 0;
	if (fp_top(&x, m, lim)) {
		sl_oai_req_free(r);
		return FP_DECLINE;
	}
	*out = r;
	return SL_OK;
}

/* ------------------------------------------------------------------ api */

int sl__oai_req_parse_ex(sl_oai_kind kind, const char *body, size_t len,
                         const sl_oai_limits *lim, sl_oai_req **out,
                         sl_oai_error *err, unsigned flags)
{
	sl_oai_error scratch;
	if (!err)
		err = &scratch;
	if (out)
		*out = NULL;
	if (!out || (!body && len) || (kind != SL_OAI_CHAT && kind != SL_OAI_COMPLETION)) {
		sl_oai_error_set(err, 500, "server_error", NULL, NULL, "invalid call to the request parser");
		return SL_EINVAL;
	}
	if (!(flags & SL__OAI_JANSSON_ONLY)) {
		if (parse_fast(kind, body, len, lim, out) == SL_OK)
			return SL_OK;
		if (flags & SL__OAI_FAST_ONLY)
			return SL__OAI_DECLINED;
	}
	return parse_jansson(kind, body, len, lim, out, err);
}

int sl_oai_req_parse(sl_oai_kind kind, const char *body, size_t len,
                     const sl_oai_limits *lim, sl_oai_req **out,
                     sl_oai_error *err)
{
	return sl__oai_req_parse_ex(kind, body, len, lim, out, err, 0);
}

int sl__oai_req_is_fast(const sl_oai_req *r)
{
	return r && ((const req_impl *)r)->fast;
}

void sl_oai_req_free(sl_oai_req *r)
{
	if (!r)
		return;
	req_impl *m = (req_impl *)r;
	if (m->fast) {
		if (r->messages != m->msgs_inline)
			free(r->messages);
	} else {
		for (size_t i = 0; i < r->n_messages; i++)
			free(r->messages[i]._owned);
		free(r->messages);
	}
	json_decref((json_t *)r->_json);
	free(m);
}

const void *sl_oai_req_json(const sl_oai_req *r)
{
	if (!r)
		return NULL;
	if (!r->_json) {
		/* fast path: build it now from the body copy; the request is used
		 * by one thread at a time, and was malloc'd, so writing through the
		 * const pointer is sound.  NULL when jansson runs out of memory. */
		const req_impl *m = (const req_impl *)r;
		if (m->body)
			((sl_oai_req *)r)->_json = json_loadb(m->body, m->body_len, LOAD_FLAGS, NULL);
	}
	return r->_json;
}

const char *sl_oai_req_messages_raw(const sl_oai_req *r, size_t *len)
{
	const req_impl *m = (const req_impl *)r;
	if (!r || r->kind != SL_OAI_CHAT || !m->fast || !m->msgs_raw)
		return NULL;
	*len = m->msgs_raw_len;
	return m->msgs_raw;
}

/* Copies n bytes at off into buf when they fit below cap - 1. */
static void put(char *buf, size_t cap, size_t off, const char *s, size_t n)
{
	if (cap == 0 || off >= cap - 1)
		return;
	size_t room = cap - 1 - off;
	memcpy(buf + off, s, n < room ? n : room);
}

size_t sl_oai_req_render_prompt(const sl_oai_req *r, char *buf, size_t cap)
{
	size_t off = 0;
	if (r->kind == SL_OAI_COMPLETION) {
		put(buf, cap, off, r->prompt, r->prompt_len);
		off = r->prompt_len;
	} else if (r->n_messages == 1 && strcmp(r->messages[0].role, "user") == 0) {
		put(buf, cap, off, r->messages[0].content, r->messages[0].content_len);
		off = r->messages[0].content_len;
	} else {
		for (size_t i = 0; i < r->n_messages; i++) {
			const sl_oai_message *m = &r->messages[i];
			size_t rl = strlen(m->role);
			if (i) {
				put(buf, cap, off, "\n", 1);
				off++;
			}
			put(buf, cap, off, m->role, rl);
			off += rl;
			put(buf, cap, off, ": ", 2);
			off += 2;
			put(buf, cap, off, m->content, m->content_len);
			off += m->content_len;
		}
	}
	if (cap)
		buf[off < cap - 1 ? off : cap - 1] = '\0';
	return off;
}

int sl_oai_req_prompt(const sl_oai_req *r, char **out, size_t *len)
{
	size_t n = sl_oai_req_render_prompt(r, NULL, 0);
	char *p = malloc(n + 1);
	if (!p)
		return SL_ENOMEM;
	sl_oai_req_render_prompt(r, p, n + 1);
	*out = p;
	if (len)
		*len = n;
	return SL_OK;
}
