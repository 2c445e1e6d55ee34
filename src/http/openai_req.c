/* openai_req.c - OpenAI request body parsing and validation; see openai_req.h. */
#include "http/openai_req.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"

#define IRE "invalid_request_error"

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
	r->stop = calloc(n + 1, sizeof *r->stop);
	if (!r->stop)
		return err_nomem(err);
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

static int parse_doc(sl_oai_req *r, json_t *doc, const sl_oai_limits *lim,
                     sl_oai_error *err)
{
	size_t max_input = lim && lim->max_input ? lim->max_input : SL_DEFAULT_MAX_INPUT;
	int cap = lim && lim->max_tokens_cap > 0 ? lim->max_tokens_cap : SL_OAI_DEFAULT_MAX_TOKENS_CAP;
	size_t max_messages = lim && lim->max_messages ? lim->max_messages : SL_OAI_DEFAULT_MAX_MESSAGES;
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

/* ------------------------------------------------------------------ api */

int sl_oai_req_parse(sl_oai_kind kind, const char *body, size_t len,
                     const sl_oai_limits *lim, sl_oai_req **out,
                     sl_oai_error *err)
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
	json_error_t je;
	json_t *doc = json_loadb(body ? body : "", len,
	                         JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
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
	sl_oai_req *r = calloc(1, sizeof *r);
	if (!r) {
		json_decref(doc);
		return err_nomem(err);
	}
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

void sl_oai_req_free(sl_oai_req *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_messages; i++)
		free(r->messages[i]._owned);
	free(r->messages);
	free(r->stop);
	json_decref((json_t *)r->_json);
	free(r);
}

const void *sl_oai_req_json(const sl_oai_req *r)
{
	return r ? r->_json : NULL;
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
