/* fuzz_openai_req.c - libFuzzer harness for the OpenAI request parser.
 *
 * Each input is a request body, parsed as a chat request and as a completion
 * request, with default and with tiny limits.  Checks the invariants the
 * rest of the gateway relies on: a successful parse yields a consistent
 * request whose rendered prompt matches its allocating variant; a failure
 * yields a well-formed error whose JSON body (written by openai_json)
 * parses back. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/dynbuf.h"
#include "core/utf8.h"
#include "http/openai_json.h"
#include "http/openai_req.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const sl_oai_limits tiny = {.max_input = 64, .max_tokens_cap = 100, .max_messages = 3};
	const sl_oai_limits *lims[2] = {NULL, &tiny};
	for (int k = 0; k < 2; k++) {
		for (int l = 0; l < 2; l++) {
			sl_oai_req *r = NULL;
			sl_oai_error e;
			int rc = sl_oai_req_parse((sl_oai_kind)k, (const char *)data, size, lims[l], &r, &e);
			if (rc == SL_OK) {
				CHECK(r != NULL);
				check_ok(r, lims[l]);
				sl_oai_req_free(r);
			} else {
				CHECK(r == NULL);
				check_err(rc, &e);
			}
		}
	}
	return 0;
}
