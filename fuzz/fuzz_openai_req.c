/* fuzz_openai_req.c - libFuzzer harness for the OpenAI request parser.
 *
 * Each input is a request body, parsed as a chat request and as a completion
 * request, with default, tiny and middle limits.  Checks the invariants the
 * rest of the gateway relies on: a successful parse yields a consistent
 * request whose rendered prompt matches its allocating variant; a failure
 * yields a well-formed error whose JSON body (written by openai_json)
 * parses back.
 *
 * Differential: every parse is also run on the jansson path alone
 * (SL__OAI_JANSSON_ONLY) and the two outcomes must be identical -- status,
 * and on success every field of the request (strings byte for byte, doubles
 * bit for bit) and the JSON document sl_oai_req_json() gives; on failure
 * the whole error (status, type, code, param, message).  So whenever the
 * fast path accepts a body, it accepts exactly what jansson accepts.
 *
 * Most raw inputs are not valid requests, so each input is also embedded in
 * a valid request at one of four places (picked by its size): as the value
 * of an unknown field, as a message's content, among the top-level members,
 * among a message's members. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/dynbuf.h"
#include "core/utf8.h"
#include "http/openai_json.h"
#include "http/openai_req.h"
#include "http/openai_req_int.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static void check_ok(const sl_oai_req *r, const sl_oai_limits *lim)
{
	size_t max_input = lim && lim->max_input ? lim->max_input : SL_DEFAULT_MAX_INPUT;
	CHECK(r->model && r->model[0]);
	CHECK(r->input_bytes <= max_input);
	CHECK(r->n == 1);
	CHECK(r->n_stop <= SL_OAI_MAX_STOP);
	CHECK(r->n_stop == 0 ? r->stop == NULL : r->stop[r->n_stop] == NULL);
	CHECK(r->max_tokens >= 0);
	CHECK(r->temperature == -1 || (r->temperature >= 0 && r->temperature <= 2));
	CHECK(r->top_p == -1 || (r->top_p >= 0 && r->top_p <= 1));
	size_t sum = 0;
	if (r->kind == SL_OAI_CHAT) {
		CHECK(r->n_messages >= 1);
		for (size_t i = 0; i < r->n_messages; i++) {
			CHECK(r->messages[i].role && r->messages[i].content);
			CHECK(sl_utf8_valid(r->messages[i].content, r->messages[i].content_len));
			sum += r->messages[i].content_len;
		}
	} else {
		CHECK(r->prompt && !r->messages);
		sum = r->prompt_len;
	}
	CHECK(sum == r->input_bytes);

	char *p;
	size_t pl;
	CHECK(sl_oai_req_prompt(r, &p, &pl) == SL_OK);
	CHECK(strlen(p) <= pl && p[pl] == '\0');
	char small[17];
	size_t n = sl_oai_req_render_prompt(r, small, sizeof small);
	CHECK(n == pl);
	size_t shown = pl < sizeof small - 1 ? pl : sizeof small - 1;
	CHECK(memcmp(small, p, shown) == 0 && small[shown] == '\0');
	free(p);
}

static void check_err(int rc, const sl_oai_error *e)
{
	CHECK(rc == SL_EINVAL || rc == SL_ETOOBIG || rc == SL_ENOMEM);
	CHECK(e->http_status == 400 || e->http_status == 500);
	CHECK(e->type && e->message[0]);
	CHECK(strlen(e->message) < sizeof e->message);
	CHECK(sl_utf8_valid(e->message, strlen(e->message)));
	sl_dynbuf b;
	sl_dynbuf_init(&b, 4096);
	CHECK(sl_oai_json_error_from(&b, e) == SL_OK);
	json_error_t je;
	json_t *j = json_loadb(b.p, b.len, 0, &je);
	CHECK(j != NULL);
	json_t *msg = json_object_get(json_object_get(j, "error"), "message");
	CHECK(json_is_string(msg) && strcmp(json_string_value(msg), e->message) == 0);
	json_decref(j);
	sl_dynbuf_free(&b);
}

static int same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int same_bytes(const char *a, size_t al, const char *b, size_t bl)
{
	if (!a || !b)
		return !a && !b && al == bl;
	return al == bl && memcmp(a, b, al) == 0 && a[al] == '\0' && b[bl] == '\0';
}

/* r (default path) and j (jansson path) describe the same request. */
static void check_same_req(const sl_oai_req *r, const sl_oai_req *j)
{
	CHECK(r->kind == j->kind);
	CHECK(same_str(r->model, j->model));
	CHECK(r->n_messages == j->n_messages);
	CHECK(!r->messages == !j->messages);
	for (size_t i = 0; i < r->n_messages; i++) {
		const sl_oai_message *a = &r->messages[i], *b = &j->messages[i];
		CHECK(same_str(a->role, b->role));
		CHECK(same_bytes(a->content, a->content_len, b->content, b->content_len));
		CHECK(same_str(a->name, b->name));
	}
	CHECK(same_bytes(r->prompt, r->prompt_len, j->prompt, j->prompt_len));
	CHECK(r->input_bytes == j->input_bytes);
	CHECK(r->stream == j->stream);
	CHECK(r->include_usage == j->include_usage);
	CHECK(r->max_tokens == j->max_tokens);
	CHECK(memcmp(&r->temperature, &j->temperature, sizeof r->temperature) == 0);
	CHECK(memcmp(&r->top_p, &j->top_p, sizeof r->top_p) == 0);
	CHECK(r->has_seed == j->has_seed);
	CHECK(r->seed == j->seed);
	CHECK(r->n_stop == j->n_stop);
	CHECK(!r->stop == !j->stop);
	for (size_t i = 0; i < r->n_stop; i++)
		CHECK(same_str(r->stop[i], j->stop[i]));
	CHECK(!r->stop || r->stop[r->n_stop] == NULL);
	CHECK(same_str(r->user, j->user));
	CHECK(r->n == j->n);
	/* the lazily built document is the one jansson built */
	const json_t *dr = sl_oai_req_json(r), *dj = sl_oai_req_json(j);
	CHECK(dr && dj && json_equal((json_t *)dr, (json_t *)dj));
	CHECK(sl_oai_req_json(r) == dr); /* built once */
	/* the raw "messages" bytes denote the document's messages */
	size_t rl = 0, jl = 0;
	const char *raw = sl_oai_req_messages_raw(r, &rl);
	CHECK(sl_oai_req_messages_raw(j, &jl) == NULL); /* the jansson path has none */
	if (raw) {
		json_t *mr = json_loadb(raw, rl, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, NULL);
		CHECK(mr && json_equal(mr, json_object_get((json_t *)dj, "messages")));
		json_decref(mr);
	}
}

static void check_same_err(const sl_oai_error *a, const sl_oai_error *b)
{
	CHECK(a->http_status == b->http_status);
	CHECK(same_str(a->type, b->type));
	CHECK(same_str(a->code, b->code));
	CHECK(same_str(a->param, b->param));
	CHECK(strcmp(a->message, b->message) == 0);
}

static void diff(const char *data, size_t size, const sl_oai_limits *lim)
{
	for (int k = 0; k < 2; k++) {
		sl_oai_req *r = NULL, *j = NULL;
		sl_oai_error e, ej;
		int rc = sl_oai_req_parse((sl_oai_kind)k, data, size, lim, &r, &e);
		int rcj = sl__oai_req_parse_ex((sl_oai_kind)k, data, size, lim, &j, &ej,
		                               SL__OAI_JANSSON_ONLY);
		CHECK(rc == rcj);
		if (rc == SL_OK) {
			CHECK(r != NULL && j != NULL);
			CHECK(!sl__oai_req_is_fast(j));
			check_ok(r, lim);
			check_same_req(r, j);
			sl_oai_req_free(r);
			sl_oai_req_free(j);
		} else {
			CHECK(r == NULL && j == NULL);
			check_err(rc, &e);
			check_same_err(&e, &ej);
		}
	}
}

#ifndef FUZZ_OPENAI_REQ_NO_MAIN /* fuzz_openai_req_diff.c reuses diff() */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const sl_oai_limits tiny = {.max_input = 64, .max_tokens_cap = 100, .max_messages = 3};
	static const sl_oai_limits mid = {.max_input = 1000, .max_tokens_cap = 5, .max_messages = 10};
	diff((const char *)data, size, NULL);
	diff((const char *)data, size, &tiny);
	diff((const char *)data, size, &mid);

	static const char *const wrap[4][2] = {
		{"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"prompt\":\"p\",\"x\":", "}"},
		{"{\"model\":\"m\",\"prompt\":\"p\",\"messages\":[{\"role\":\"user\",\"content\":", "}]}"},
		{"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"prompt\":\"p\",", "}"},
		{"{\"model\":\"m\",\"prompt\":\"p\",\"messages\":[{\"role\":\"user\",", "}]}"},
	};
	const char *pre = wrap[size % 4][0], *post = wrap[size % 4][1];
	size_t pl = strlen(pre), ql = strlen(post);
	char *b = malloc(pl + size + ql);
	CHECK(b != NULL);
	memcpy(b, pre, pl);
	if (size)
		memcpy(b + pl, data, size);
	memcpy(b + pl + size, post, ql);
	diff(b, pl + size + ql, NULL);
	free(b);
	return 0;
}
#endif
