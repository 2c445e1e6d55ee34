/* test_openai_req.c - OpenAI request parsing and validation (http/openai_req.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "http/openai_req.h"
#include "http/openai_req_int.h"

static sl_oai_req *ok_parse(sl_oai_kind k, const char *body, const sl_oai_limits *lim)
{
	sl_oai_req *r = (sl_oai_req *)0x1;
	sl_oai_error err;
	int rc = sl_oai_req_parse(k, body, strlen(body), lim, &r, &err);
	if (rc != SL_OK)
		fail_msg("parse failed (%d): %s [%s]\nbody: %s", rc, err.message,
		         err.code ? err.code : "-", body);
	assert_non_null(r);
	return r;
}

/* Parses body expecting failure rc with the given code/param; message must
 * contain msg_sub when non-NULL. */
static void expect_err_lim(sl_oai_kind k, const char *body, size_t len,
                           const sl_oai_limits *lim, int rc, int status,
                           const char *code, const char *param, const char *msg_sub)
{
	sl_oai_req *r = (sl_oai_req *)0x1;
	sl_oai_error err;
	memset(&err, 0x5a, sizeof err);
	int got = sl_oai_req_parse(k, body, len, lim, &r, &err);
	if (got != rc)
		fail_msg("rc %d, wanted %d; message: %s\nbody: %.*s", got, rc,
		         got ? err.message : "-", (int)len, body);
	assert_null(r);
	assert_int_equal(err.http_status, status);
	assert_string_equal(err.type, status == 500 ? "server_error" : "invalid_request_error");
	if (code)
		assert_string_equal(err.code, code);
	else
		assert_null(err.code);
	if (param)
		assert_string_equal(err.param, param);
	else
		assert_null(err.param);
	if (msg_sub && !strstr(err.message, msg_sub))
		fail_msg("message \"%s\" lacks \"%s\"", err.message, msg_sub);
	assert_true(strlen(err.message) < sizeof err.message);
}

static void expect_err(sl_oai_kind k, const char *body, const char *code,
                       const char *param, const char *msg_sub)
{
	expect_err_lim(k, body, strlen(body), NULL, SL_EINVAL, 400, code, param, msg_sub);
}

#define CHAT SL_OAI_CHAT
#define COMP SL_OAI_COMPLETION
#define MSGS "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

static void test_minimal_chat(void **state)
{
	(void)state;
	sl_oai_req *r = ok_parse(CHAT, "{\"model\":\"m\"," MSGS "}", NULL);
	assert_int_equal(r->kind, CHAT);
	assert_string_equal(r->model, "m");
	assert_int_equal(r->n_messages, 1);
	assert_string_equal(r->messages[0].role, "user");
	assert_string_equal(r->messages[0].content, "hi");
	assert_int_equal(r->messages[0].content_len, 2);
	assert_null(r->messages[0].name);
	assert_null(r->prompt);
	assert_int_equal(r->stream, 0);
	assert_int_equal(r->include_usage, 0);
	assert_int_equal(r->max_tokens, 0);
	assert_true(r->temperature == -1);
	assert_true(r->top_p == -1);
	assert_int_equal(r->has_seed, 0);
	assert_null(r->stop);
	assert_int_equal(r->n_stop, 0);
	assert_null(r->user);
	assert_int_equal(r->n, 1);
	assert_int_equal(r->input_bytes, 2);
	assert_true(json_is_object((const json_t *)sl_oai_req_json(r)));
	sl_oai_req_free(r);
	sl_oai_req_free(NULL);
}

static void test_full_chat(void **state)
{
	(void)state;
	const char *body =
		"{\"model\":\"gpt-4o\",\"messages\":["
		"{\"role\":\"system\",\"content\":\"be brief\"},"
		"{\"role\":\"developer\",\"content\":\"dev\"},"
		"{\"role\":\"user\",\"name\":\"bob\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]},"
		"{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]},"
		"{\"role\":\"tool\",\"content\":\"42\",\"tool_call_id\":\"x\"}],"
		"\"stream\":true,\"stream_options\":{\"include_usage\":true},"
		"\"max_tokens\":100,\"temperature\":0.5,\"top_p\":1,\"seed\":-7,"
		"\"stop\":[\"\\n\",\"END\"],\"user\":\"u1\",\"n\":1,"
		"\"tools\":[{\"x\":1}],\"logprobs\":false,\"frequency_penalty\":0}";
	sl_oai_req *r = ok_parse(CHAT, body, NULL);
	assert_int_equal(r->n_messages, 5);
	assert_string_equal(r->messages[0].role, "system");
	assert_string_equal(r->messages[1].role, "developer");
	assert_string_equal(r->messages[2].content, "a\nb");
	assert_int_equal(r->messages[2].content_len, 3);
	assert_string_equal(r->messages[2].name, "bob");
	assert_string_equal(r->messages[3].role, "assistant");
	assert_string_equal(r->messages[3].content, "");
	assert_string_equal(r->messages[4].role, "tool");
	assert_int_equal(r->stream, 1);
	assert_int_equal(r->include_usage, 1);
	assert_int_equal(r->max_tokens, 100);
	assert_true(r->temperature == 0.5);
	assert_true(r->top_p == 1.0);
	assert_int_equal(r->has_seed, 1);
	assert_int_equal(r->seed, -7);
	assert_int_equal(r->n_stop, 2);
	assert_string_equal(r->stop[0], "\n");
	assert_string_equal(r->stop[1], "END");
	assert_null(r->stop[2]);
	assert_string_equal(r->user, "u1");
	assert_int_equal(r->input_bytes, 8 + 3 + 3 + 0 + 2);
	sl_oai_req_free(r);
}

static void test_completion(void **state)
{
	(void)state;
	sl_oai_req *r = ok_parse(COMP, "{\"model\":\"m\",\"prompt\":\"once upon\",\"max_tokens\":5,\"stop\":\"x\"}", NULL);
	assert_int_equal(r->kind, COMP);
	assert_string_equal(r->prompt, "once upon");
	assert_int_equal(r->prompt_len, 9);
	assert_null(r->messages);
	assert_int_equal(r->n_messages, 0);
	assert_int_equal(r->n_stop, 1);
	assert_string_equal(r->stop[0], "x");
	assert_null(r->stop[1]);
	sl_oai_req_free(r);
	r = ok_parse(COMP, "{\"model\":\"m\",\"prompt\":[\"one\"]}", NULL);
	assert_string_equal(r->prompt, "one");
	sl_oai_req_free(r);
	/* an empty prompt is allowed; "messages" is ignored for completions */
	r = ok_parse(COMP, "{\"model\":\"m\",\"prompt\":\"\",\"messages\":5}", NULL);
	assert_int_equal(r->prompt_len, 0);
	sl_oai_req_free(r);
	/* and "prompt" is ignored for chat */
	r = ok_parse(CHAT, "{\"model\":\"m\"," MSGS ",\"prompt\":5}", NULL);
	sl_oai_req_free(r);
}

static void test_nulls_are_not_given(void **state)
{
	(void)state;
	sl_oai_req *r = ok_parse(CHAT,
		"{\"model\":\"m\"," MSGS ",\"max_tokens\":null,\"temperature\":null,\"top_p\":null,"
		"\"n\":null,\"stop\":null,\"user\":null,\"seed\":null,\"stream\":null,"
		"\"stream_options\":null,\"max_completion_tokens\":null}", NULL);
	assert_int_equal(r->max_tokens, 0);
	assert_true(r->temperature == -1);
	assert_int_equal(r->has_seed, 0);
	assert_int_equal(r->n_stop, 0);
	sl_oai_req_free(r);
	/* a null "model" is a missing model */
	expect_err(CHAT, "{\"model\":null," MSGS "}", "missing_required_parameter", "model", "'model'");
}

static void test_malformed_json(void **state)
{
	(void)state;
	expect_err(CHAT, "", "invalid_json", NULL, "could not parse the JSON body");
	expect_err(CHAT, "{\"model\":", "invalid_json", NULL, "line 1");
	expect_err(CHAT, "{\"model\":\"m\",\n\"messages\":[}", "invalid_json", NULL, "line 2, column");
	expect_err(CHAT, "{\"model\":\"m\"} trailing", "invalid_json", NULL, "end of file expected");
	expect_err(CHAT, "{'model':'m'}", "invalid_json", NULL, NULL);
	/* duplicate keys are rejected */
	expect_err(CHAT, "{\"model\":\"a\",\"model\":\"b\"," MSGS "}", "invalid_json", NULL, "duplicate");
	/* invalid UTF-8 in a string, an overlong, a surrogate */
	expect_err(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}",
	           "invalid_json", NULL, NULL);
	expect_err(CHAT, "{\"model\":\"\xc0\xaf\"," MSGS "}", "invalid_json", NULL, NULL);
	expect_err(CHAT, "{\"model\":\"\xed\xa0\x80\"," MSGS "}", "invalid_json", NULL, NULL);
	expect_err(CHAT, "{\"model\":\"\\ud800\"," MSGS "}", "invalid_json", NULL, NULL);
	/* a NUL byte in the body */
	static const char nul_body[] = "{\"model\":\"m\0\"}";
	expect_err_lim(CHAT, nul_body, sizeof nul_body - 1, NULL, SL_EINVAL, 400,
	               "invalid_json", NULL, NULL);
	/* nesting bombs stop at jansson's depth limit */
	size_t depth = 5000;
	char *deep = malloc(2 * depth + 64);
	size_t n = (size_t)sprintf(deep, "{\"model\":\"m\",\"x\":");
	for (size_t i = 0; i < depth; i++)
		deep[n++] = '[';
	for (size_t i = 0; i < depth; i++)
		deep[n++] = ']';
	deep[n++] = '}';
	expect_err_lim(CHAT, deep, n, NULL, SL_EINVAL, 400, "invalid_json", NULL, "depth");
	free(deep);
}

static void test_not_an_object(void **state)
{
	(void)state;
	expect_err(CHAT, "[1,2]", "invalid_type", NULL, "must be a JSON object, but got an array");
	expect_err(CHAT, "\"x\"", "invalid_type", NULL, "a string");
	expect_err(CHAT, "42", "invalid_type", NULL, "an integer");
	expect_err(CHAT, "null", "invalid_type", NULL, "null");
	expect_err(COMP, "true", "invalid_type", NULL, "a boolean");
}

static void test_model(void **state)
{
	(void)state;
	expect_err(CHAT, "{" MSGS "}", "missing_required_parameter", "model",
	           "Missing required parameter: 'model'.");
	expect_err(CHAT, "{\"model\":5," MSGS "}", "invalid_type", "model",
	           "Invalid type for 'model': expected a string, but got an integer instead.");
	expect_err(CHAT, "{\"model\":\"\"," MSGS "}", "invalid_value", "model", "non-empty");
	expect_err(CHAT, "{\"model\":\"a\\u0000b\"," MSGS "}", "invalid_value", "model", "NUL");
}

static void test_messages(void **state)
{
	(void)state;
	expect_err(CHAT, "{\"model\":\"m\"}", "missing_required_parameter", "messages", "'messages'");
	expect_err(CHAT, "{\"model\":\"m\",\"messages\":{}}", "invalid_type", "messages", "an array");
	expect_err(CHAT, "{\"model\":\"m\",\"messages\":\"hi\"}", "invalid_type", "messages", "a string");
	expect_err(CHAT, "{\"model\":\"m\",\"messages\":[]}", "empty_array", "messages", "empty array");
	expect_err(CHAT, "{\"model\":\"m\",\"messages\":[1]}", "invalid_type", "messages[0]", "an object");
	expect_err(CHAT, "{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}",
	           "missing_required_parameter", "messages[0].role", "'messages[0].role'");
	expect_err(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\"}]}",
	           "missing_required_parameter", "messages[1].content", "'messages[1].content'");
	expect_err(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":3,\"content\":\"x\"}]}",
	           "invalid_type", "messages[0].role", "a string");
	expect_err(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}",
	           "invalid_value", "messages[0].role", "'robot'. Supported values are: 'system', 'user', 'assistant', 'tool', and 'developer'.");
	expect_err(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"function\",\"content\":\"x\"}]}",
	           "invalid_value", "messages[0].role", "'function'");
	expect_err(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\\u0000\",\"content\":\"x\"}]}",
	           "invalid_value", "messages[0].role", NULL);
	expect_err(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":5}]}",
	           "invalid_type", "messages[0].content", "a string or an array of content parts");
	expect_err(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":null}]}",
	           "invalid_type", "messages[0].content", "got null");
	expect_err(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[]}]}",
	           "empty_array", "messages[0].content", NULL);
	expect_err(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[\"x\"]}]}",
	           "invalid_type", "messages[0].content[0]", "an object");
	expect_err(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]}]}",
	           "missing_required_parameter", "messages[0].content[0].type", NULL);
	expect_err(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":1}]}]}",
	           "invalid_type", "messages[0].content[0].type", NULL);
	expect_err(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]}",
	           "unsupported_value", "messages[0].content[1].type", "'image_url'");
	expect_err(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\"}]}]}",
	           "unsupported_value", "messages[0].content[0].type", "only 'text' parts");
	expect_err(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}",
	           "missing_required_parameter", "messages[0].content[0].text", NULL);
	expect_err(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":[]}]}]}",
	           "invalid_type", "messages[0].content[0].text", "an array");
	expect_err(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"name\":7}]}",
	           "invalid_type", "messages[0].name", NULL);
	/* too many messages */
	sl_oai_limits lim = {.max_messages = 2};
	const char *three = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
	                    "{\"role\":\"user\",\"content\":\"b\"},{\"role\":\"user\",\"content\":\"c\"}]}";
	expect_err_lim(CHAT, three, strlen(three), &lim, SL_EINVAL, 400,
	               "array_above_max_length", "messages", "maximum length 2");
	/* content with NUL is fine, its length counts */
	sl_oai_req *r = ok_parse(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}", NULL);
	assert_int_equal(r->messages[0].content_len, 3);
	assert_memory_equal(r->messages[0].content, "a\0b", 3);
	sl_oai_req_free(r);
	/* a single text part is not copied but works the same */
	r = ok_parse(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"solo\"}]}]}", NULL);
	assert_string_equal(r->messages[0].content, "solo");
	assert_null(r->messages[0]._owned);
	sl_oai_req_free(r);
}

static void test_prompt(void **state)
{
	(void)state;
	expect_err(COMP, "{\"model\":\"m\"}", "missing_required_parameter", "prompt", "'prompt'");
	expect_err(COMP, "{\"model\":\"m\",\"prompt\":5}", "invalid_type", "prompt", "a string");
	expect_err(COMP, "{\"model\":\"m\",\"prompt\":[1,2,3]}", "unsupported_value", "prompt", "token arrays");
	expect_err(COMP, "{\"model\":\"m\",\"prompt\":[\"a\",\"b\"]}", "unsupported_value", "prompt", NULL);
	expect_err(COMP, "{\"model\":\"m\",\"prompt\":[]}", "unsupported_value", "prompt", NULL);
}

static void test_max_tokens(void **state)
{
	(void)state;
	sl_oai_limits lim = {.max_tokens_cap = 1000};
	const char *b;
	b = "{\"model\":\"m\"," MSGS ",\"max_tokens\":0}";
	expect_err_lim(CHAT, b, strlen(b), &lim, SL_EINVAL, 400, "invalid_value", "max_tokens",
	               "Expected a value between 1 and 1000, but got 0 instead.");
	b = "{\"model\":\"m\"," MSGS ",\"max_tokens\":1001}";
	expect_err_lim(CHAT, b, strlen(b), &lim, SL_EINVAL, 400, "invalid_value", "max_tokens", "1001");
	b = "{\"model\":\"m\"," MSGS ",\"max_tokens\":-5}";
	expect_err_lim(CHAT, b, strlen(b), &lim, SL_EINVAL, 400, "invalid_value", "max_tokens", "-5");
	b = "{\"model\":\"m\"," MSGS ",\"max_tokens\":99999999999999}";
	expect_err_lim(CHAT, b, strlen(b), &lim, SL_EINVAL, 400, "invalid_value", "max_tokens", NULL);
	b = "{\"model\":\"m\"," MSGS ",\"max_completion_tokens\":0}";
	expect_err_lim(CHAT, b, strlen(b), &lim, SL_EINVAL, 400, "invalid_value",
	               "max_completion_tokens", NULL);
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"max_tokens\":\"10\"}", "invalid_type", "max_tokens",
	           "expected an integer, but got a string");
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"max_tokens\":1.5}", "invalid_type", "max_tokens", NULL);
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"max_tokens\":true}", "invalid_type", "max_tokens", NULL);
	/* default cap */
	char big[128];
	snprintf(big, sizeof big, "{\"model\":\"m\"," MSGS ",\"max_tokens\":%d}", SL_OAI_DEFAULT_MAX_TOKENS_CAP + 1);
	expect_err(CHAT, big, "invalid_value", "max_tokens", NULL);

	sl_oai_req *r = ok_parse(CHAT, "{\"model\":\"m\"," MSGS ",\"max_tokens\":1000}", &lim);
	assert_int_equal(r->max_tokens, 1000);
	sl_oai_req_free(r);
	r = ok_parse(CHAT, "{\"model\":\"m\"," MSGS ",\"max_tokens\":1}", &lim);
	assert_int_equal(r->max_tokens, 1);
	sl_oai_req_free(r);
	r = ok_parse(CHAT, "{\"model\":\"m\"," MSGS ",\"max_tokens\":7.0}", &lim);
	assert_int_equal(r->max_tokens, 7);
	sl_oai_req_free(r);
	r = ok_parse(CHAT, "{\"model\":\"m\"," MSGS ",\"max_tokens\":10,\"max_completion_tokens\":20}", &lim);
	assert_int_equal(r->max_tokens, 20);
	sl_oai_req_free(r);
	r = ok_parse(COMP, "{\"model\":\"m\",\"prompt\":\"p\",\"max_completion_tokens\":3}", &lim);
	assert_int_equal(r->max_tokens, 3);
	sl_oai_req_free(r);
}

static void test_sampling(void **state)
{
	(void)state;
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"temperature\":2.5}", "invalid_value", "temperature",
	           "expected a number between 0 and 2, but got 2.5 instead");
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"temperature\":-0.1}", "invalid_value", "temperature", NULL);
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"temperature\":\"hot\"}", "invalid_type", "temperature",
	           "expected a number, but got a string");
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"top_p\":1.01}", "invalid_value", "top_p", "between 0 and 1");
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"top_p\":-1}", "invalid_value", "top_p", NULL);
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"top_p\":[]}", "invalid_type", "top_p", NULL);
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"temperature\":1e999}", "invalid_json", NULL, "overflow");
	sl_oai_req *r = ok_parse(CHAT, "{\"model\":\"m\"," MSGS ",\"temperature\":2,\"top_p\":0}", NULL);
	assert_true(r->temperature == 2.0);
	assert_true(r->top_p == 0.0);
	sl_oai_req_free(r);
	r = ok_parse(CHAT, "{\"model\":\"m\"," MSGS ",\"temperature\":0}", NULL);
	assert_true(r->temperature == 0.0);
	sl_oai_req_free(r);
}

static void test_n(void **state)
{
	(void)state;
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"n\":2}", "unsupported_value", "n", NULL);
	sl_oai_error err;
	sl_oai_req *r;
	const char *b = "{\"model\":\"m\"," MSGS ",\"n\":3}";
	assert_int_equal(sl_oai_req_parse(CHAT, b, strlen(b), NULL, &r, &err), SL_EINVAL);
	assert_string_equal(err.message, "n>1 is not supported: sluice returns one choice per request");
	expect_err(COMP, "{\"model\":\"m\",\"prompt\":\"p\",\"n\":5}", "unsupported_value", "n", "n>1 is not supported");
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"n\":0}", "invalid_value", "n", ">= 1");
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"n\":\"1\"}", "invalid_type", "n", NULL);
	r = ok_parse(CHAT, "{\"model\":\"m\"," MSGS ",\"n\":1}", NULL);
	assert_int_equal(r->n, 1);
	sl_oai_req_free(r);
}

static void test_stop_user_seed_stream(void **state)
{
	(void)state;
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"stop\":5}", "invalid_type", "stop", NULL);
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"stop\":[\"a\",1]}", "invalid_type", "stop", NULL);
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}",
	           "invalid_value", "stop", "at most 4");
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"stop\":\"\"}", "invalid_value", "stop", "empty");
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"stop\":[\"a\\u0000\"]}", "invalid_value", "stop", "NUL");
	sl_oai_req *r = ok_parse(CHAT, "{\"model\":\"m\"," MSGS ",\"stop\":[\"1\",\"2\",\"3\",\"4\"]}", NULL);
	assert_int_equal(r->n_stop, 4);
	assert_null(r->stop[4]);
	sl_oai_req_free(r);
	r = ok_parse(CHAT, "{\"model\":\"m\"," MSGS ",\"stop\":[]}", NULL);
	assert_int_equal(r->n_stop, 0);
	assert_null(r->stop);
	sl_oai_req_free(r);

	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"user\":5}", "invalid_type", "user", NULL);
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"seed\":\"5\"}", "invalid_type", "seed", "an integer");
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"seed\":1.5}", "invalid_type", "seed", NULL);
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"stream\":1}", "invalid_type", "stream", "a boolean");
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"stream\":\"true\"}", "invalid_type", "stream", NULL);
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"stream\":true,\"stream_options\":true}",
	           "invalid_type", "stream_options", "an object");
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"stream_options\":{\"include_usage\":true}}",
	           "invalid_value", "stream_options", "only allowed when 'stream' is enabled");
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"stream\":false,\"stream_options\":{}}",
	           "invalid_value", "stream_options", NULL);
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"stream\":true,\"stream_options\":{\"include_usage\":\"yes\"}}",
	           "invalid_type", "stream_options.include_usage", NULL);
	r = ok_parse(CHAT, "{\"model\":\"m\"," MSGS ",\"seed\":9223372036854775807,\"stream\":true,\"stream_options\":{}}", NULL);
	assert_int_equal(r->seed, INT64_MAX);
	assert_int_equal(r->stream, 1);
	assert_int_equal(r->include_usage, 0);
	sl_oai_req_free(r);
	r = ok_parse(CHAT, "{\"model\":\"m\"," MSGS ",\"seed\":-9223372036854775808}", NULL);
	assert_int_equal(r->seed, INT64_MIN);
	sl_oai_req_free(r);
}

static void test_context_length(void **state)
{
	(void)state;
	sl_oai_limits lim = {.max_input = 10};
	const char *b = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"12345\"},{\"role\":\"user\",\"content\":\"123456\"}]}";
	expect_err_lim(CHAT, b, strlen(b), &lim, SL_ETOOBIG, 400, "context_length_exceeded",
	               "messages", "11 bytes, over the limit of 10");
	b = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"12345\"},{\"role\":\"user\",\"content\":\"12345\"}]}";
	sl_oai_req *r = ok_parse(CHAT, b, &lim);
	assert_int_equal(r->input_bytes, 10);
	sl_oai_req_free(r);
	b = "{\"model\":\"m\",\"prompt\":\"12345678901\"}";
	expect_err_lim(COMP, b, strlen(b), &lim, SL_ETOOBIG, 400, "context_length_exceeded", "prompt", NULL);
	/* the joiner of content parts counts */
	b = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"12345\"},{\"type\":\"text\",\"text\":\"12345\"}]}]}";
	expect_err_lim(CHAT, b, strlen(b), &lim, SL_ETOOBIG, 400, "context_length_exceeded", "messages", NULL);
	/* type errors win over the length check */
	b = "{\"model\":\"m\",\"prompt\":\"12345678901\",\"n\":\"x\"}";
	expect_err_lim(COMP, b, strlen(b), &lim, SL_EINVAL, 400, "invalid_type", "n", NULL);
}

static void test_render_prompt(void **state)
{
	(void)state;
	char buf[256];
	sl_oai_req *r = ok_parse(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"just this\\nand that\"}]}", NULL);
	assert_int_equal(sl_oai_req_render_prompt(r, buf, sizeof buf), 18);
	assert_string_equal(buf, "just this\nand that");
	sl_oai_req_free(r);

	r = ok_parse(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
	                   "{\"role\":\"user\",\"content\":\"U\"},{\"role\":\"assistant\",\"content\":null},"
	                   "{\"role\":\"user\",\"content\":\"two\\nlines\"}]}", NULL);
	const char *want = "system: S\nuser: U\nassistant: \nuser: two\nlines";
	size_t wl = strlen(want);
	assert_int_equal(sl_oai_req_render_prompt(r, buf, sizeof buf), wl);
	assert_string_equal(buf, want);
	/* truncation like snprintf, at every capacity */
	for (size_t cap = 0; cap <= wl + 1; cap++) {
		char small[64];
		memset(small, '#', sizeof small);
		assert_int_equal(sl_oai_req_render_prompt(r, cap ? small : NULL, cap), wl);
		if (cap) {
			assert_int_equal(strlen(small), cap - 1 < wl ? cap - 1 : wl);
			assert_memory_equal(small, want, strlen(small));
		}
		assert_true(small[cap < sizeof small ? cap : 0] == '#' || cap == 0);
	}
	char *p;
	size_t pl;
	assert_int_equal(sl_oai_req_prompt(r, &p, &pl), SL_OK);
	assert_int_equal(pl, wl);
	assert_string_equal(p, want);
	free(p);
	sl_oai_req_free(r);

	/* a single non-user message still gets the role prefix */
	r = ok_parse(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"S\"}]}", NULL);
	assert_int_equal(sl_oai_req_render_prompt(r, buf, sizeof buf), 9);
	assert_string_equal(buf, "system: S");
	sl_oai_req_free(r);

	r = ok_parse(COMP, "{\"model\":\"m\",\"prompt\":\"raw text\"}", NULL);
	assert_int_equal(sl_oai_req_render_prompt(r, buf, sizeof buf), 8);
	assert_string_equal(buf, "raw text");
	sl_oai_req_free(r);
}

static void test_error_set_truncates_on_char_boundary(void **state)
{
	(void)state;
	sl_oai_error err;
	char longtxt[600];
	/* 'é' is 2 bytes; an odd offset makes truncation land mid-char */
	size_t n = 0;
	longtxt[n++] = 'x';
	while (n + 2 < sizeof longtxt) {
		longtxt[n++] = (char)0xc3;
		longtxt[n++] = (char)0xa9;
	}
	longtxt[n] = '\0';
	sl_oai_error_set(&err, 400, "invalid_request_error", "c", "p", "%s", longtxt);
	size_t ml = strlen(err.message);
	assert_true(ml < sizeof err.message);
	assert_true(ml >= sizeof err.message - 3);
	json_t *j = json_stringn(err.message, ml); /* valid UTF-8 */
	assert_non_null(j);
	json_decref(j);
	assert_string_equal(err.param, "p");
	/* over-long param is clipped */
	sl_oai_error_set(&err, 400, "t", NULL, longtxt, "m");
	assert_int_equal(strlen(err.param), sizeof err.param_buf - 1);
	sl_oai_error_set(NULL, 400, "t", NULL, NULL, "m"); /* no-op */
}

static void test_bad_calls(void **state)
{
	(void)state;
	sl_oai_req *r;
	assert_int_equal(sl_oai_req_parse(CHAT, NULL, 5, NULL, &r, NULL), SL_EINVAL);
	assert_int_equal(sl_oai_req_parse(CHAT, "{}", 2, NULL, NULL, NULL), SL_EINVAL);
	assert_int_equal(sl_oai_req_parse((sl_oai_kind)7, "{}", 2, NULL, &r, NULL), SL_EINVAL);
	/* err may be NULL */
	assert_int_equal(sl_oai_req_parse(CHAT, "{}", 2, NULL, &r, NULL), SL_EINVAL);
	assert_null(r);
}

/* jansson allocator that fails after a countdown, to check that every
 * allocation failure inside jansson surfaces as SL_ENOMEM without leaks. */
static int alloc_budget = -1;
static void *failing_malloc(size_t n)
{
	if (alloc_budget == 0)
		return NULL;
	if (alloc_budget > 0)
		alloc_budget--;
	return malloc(n);
}

static void test_jansson_oom(void **state)
{
	(void)state;
	const char *b = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"},"
	                "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"a\"}]}],\"stop\":[\"x\"]}";
	json_set_alloc_funcs(failing_malloc, free);
	int saw_ok = 0;
	for (int budget = 0; budget < 200 && !saw_ok; budget++) {
		alloc_budget = budget;
		sl_oai_req *r;
		sl_oai_error err;
		int rc = sl__oai_req_parse_ex(CHAT, b, strlen(b), NULL, &r, &err, SL__OAI_JANSSON_ONLY);
		if (rc == SL_OK) {
			saw_ok = 1;
			sl_oai_req_free(r);
		} else {
			/* jansson may report its OOM as a syntax error in a few
			 * places (see load.c lex_scan_string); both are clean */
			assert_true(rc == SL_ENOMEM || rc == SL_EINVAL);
			if (rc == SL_ENOMEM)
				assert_int_equal(err.http_status, 500);
			assert_null(r);
		}
	}
	alloc_budget = -1;
	assert_true(saw_ok);
	/* the fast path needs no jansson allocation; its lazy document is NULL
	 * when jansson runs out of memory, and is built on a later call */
	sl_oai_req *r;
	assert_int_equal(sl_oai_req_parse(CHAT, b, strlen(b), NULL, &r, NULL), SL_OK);
	assert_true(sl__oai_req_is_fast(r));
	alloc_budget = 0;
	assert_null(sl_oai_req_json(r));
	alloc_budget = -1;
	assert_true(json_is_object((const json_t *)sl_oai_req_json(r)));
	sl_oai_req_free(r);
	json_set_alloc_funcs(malloc, free);
}

/* ------------------------------------------------------------ fast path */

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

/* The fast and the jansson path give identical requests. */
static void assert_same_req(const sl_oai_req *r, const sl_oai_req *j)
{
	assert_int_equal(r->kind, j->kind);
	assert_true(same_str(r->model, j->model));
	assert_int_equal(r->n_messages, j->n_messages);
	for (size_t i = 0; i < r->n_messages; i++) {
		assert_true(same_str(r->messages[i].role, j->messages[i].role));
		assert_true(same_bytes(r->messages[i].content, r->messages[i].content_len,
		                       j->messages[i].content, j->messages[i].content_len));
		assert_true(same_str(r->messages[i].name, j->messages[i].name));
	}
	assert_true(same_bytes(r->prompt, r->prompt_len, j->prompt, j->prompt_len));
	assert_int_equal(r->input_bytes, j->input_bytes);
	assert_int_equal(r->stream, j->stream);
	assert_int_equal(r->include_usage, j->include_usage);
	assert_int_equal(r->max_tokens, j->max_tokens);
	assert_memory_equal(&r->temperature, &j->temperature, sizeof(double));
	assert_memory_equal(&r->top_p, &j->top_p, sizeof(double));
	assert_int_equal(r->has_seed, j->has_seed);
	assert_true(r->seed == j->seed);
	assert_int_equal(r->n_stop, j->n_stop);
	assert_true(!r->stop == !j->stop);
	for (size_t i = 0; i <= r->n_stop && r->stop; i++)
		assert_true(same_str(r->stop[i], j->stop[i]));
	assert_true(same_str(r->user, j->user));
	assert_int_equal(r->n, j->n);
	assert_true(json_equal((json_t *)sl_oai_req_json(r), (json_t *)sl_oai_req_json(j)));
}

/* Parses body with the fast path alone (it must accept), with the public
 * entry (which must take the fast path) and with jansson alone; all three
 * agree.  Returns the public entry's request. */
static sl_oai_req *fast_parse_lim(sl_oai_kind k, const char *body, size_t len,
                                  const sl_oai_limits *lim)
{
	sl_oai_req *f, *r, *j;
	sl_oai_error err;
	int rc = sl__oai_req_parse_ex(k, body, len, lim, &f, &err, SL__OAI_FAST_ONLY);
	if (rc != SL_OK)
		fail_msg("fast path declined (%d)\nbody: %.*s", rc, (int)len, body);
	assert_true(sl__oai_req_is_fast(f));
	assert_null(f->_json); /* built lazily */
	assert_int_equal(sl_oai_req_parse(k, body, len, lim, &r, &err), SL_OK);
	assert_true(sl__oai_req_is_fast(r));
	rc = sl__oai_req_parse_ex(k, body, len, lim, &j, &err, SL__OAI_JANSSON_ONLY);
	if (rc != SL_OK)
		fail_msg("jansson path failed: %s\nbody: %.*s", err.message, (int)len, body);
	assert_false(sl__oai_req_is_fast(j));
	assert_same_req(f, j);
	assert_same_req(r, j);
	sl_oai_req_free(f);
	sl_oai_req_free(j);
	return r;
}

static sl_oai_req *fast_parse(sl_oai_kind k, const char *body)
{
	return fast_parse_lim(k, body, strlen(body), NULL);
}

/* The fast path declines body; the public entry then answers exactly as the
 * jansson path (rc and the whole error, or the same request). */
static void expect_decline_lim(sl_oai_kind k, const char *body, size_t len,
                               const sl_oai_limits *lim)
{
	sl_oai_req *f = (sl_oai_req *)0x1, *r, *j;
	sl_oai_error e1, e2;
	memset(&e1, 0x5a, sizeof e1);
	int rc = sl__oai_req_parse_ex(k, body, len, lim, &f, &e1, SL__OAI_FAST_ONLY);
	if (rc != SL__OAI_DECLINED)
		fail_msg("fast path did not decline (%d)\nbody: %.*s", rc, (int)len, body);
	assert_null(f);
	memset(&e1, 0, sizeof e1);
	memset(&e2, 0, sizeof e2);
	int a = sl_oai_req_parse(k, body, len, lim, &r, &e1);
	int b = sl__oai_req_parse_ex(k, body, len, lim, &j, &e2, SL__OAI_JANSSON_ONLY);
	assert_int_equal(a, b);
	if (a == SL_OK) {
		assert_false(sl__oai_req_is_fast(r));
		assert_same_req(r, j);
		sl_oai_req_free(r);
		sl_oai_req_free(j);
	} else {
		assert_int_equal(e1.http_status, e2.http_status);
		assert_string_equal(e1.type, e2.type);
		assert_true(same_str(e1.code, e2.code));
		assert_true(same_str(e1.param, e2.param));
		assert_string_equal(e1.message, e2.message);
	}
}

static void expect_decline(sl_oai_kind k, const char *body)
{
	expect_decline_lim(k, body, strlen(body), NULL);
}

static void test_fast_typical_bodies(void **state)
{
	(void)state;
	/* the streaming client's body */
	const char *sc = "{\"model\":\"mock\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"Say something.\"}]}";
	sl_oai_req *r = fast_parse(CHAT, sc);
	assert_string_equal(r->model, "mock");
	assert_int_equal(r->stream, 1);
	assert_string_equal(r->messages[0].content, "Say something.");
	sl_oai_req_free(r);
	/* its JSON document is built on first use only */
	assert_int_equal(sl_oai_req_parse(CHAT, sc, strlen(sc), NULL, &r, NULL), SL_OK);
	assert_true(sl__oai_req_is_fast(r));
	assert_null(r->_json);
	const json_t *doc = sl_oai_req_json(r);
	assert_true(json_is_object(doc));
	assert_ptr_equal(sl_oai_req_json(r), doc); /* built once */
	assert_true(json_is_true(json_object_get(doc, "stream")));
	sl_oai_req_free(r);
	/* a full chat, with unknown fields and every known one */
	r = fast_parse(CHAT,
		"{\"model\":\"gpt-4o\",\"messages\":["
		"{\"role\":\"system\",\"content\":\"be brief\"},"
		"{\"role\":\"developer\",\"content\":\"dev\"},"
		"{\"role\":\"user\",\"name\":\"bob\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]},"
		"{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
		"{\"role\":\"tool\",\"content\":\"42\",\"tool_call_id\":\"c\"}],"
		"\"stream\":true,\"stream_options\":{\"include_usage\":true},"
		"\"max_tokens\":100,\"max_completion_tokens\":50,\"temperature\":0.5,\"top_p\":1,\"seed\":-7,"
		"\"stop\":[\"\\n\",\"END\"],\"user\":\"u1\",\"n\":1,"
		"\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\","
		"\"properties\":{\"a\":{\"type\":\"integer\",\"minimum\":-1.5e3}},\"required\":[\"a\"]}}}],"
		"\"tool_choice\":\"auto\",\"logprobs\":false,\"frequency_penalty\":0,\"metadata\":{}}");
	assert_int_equal(r->n_messages, 5);
	assert_string_equal(r->messages[2].content, "a\nb");
	assert_null(r->messages[2]._owned);
	assert_string_equal(r->messages[3].content, "");
	assert_int_equal(r->include_usage, 1);
	assert_int_equal(r->max_tokens, 50);
	assert_true(r->temperature == 0.5);
	assert_int_equal(r->seed, -7);
	assert_int_equal(r->n_stop, 2);
	assert_string_equal(r->stop[1], "END");
	assert_null(r->stop[2]);
	sl_oai_req_free(r);
	/* completions */
	r = fast_parse(COMP, "{\"model\":\"m\",\"prompt\":\"once upon\",\"max_tokens\":5,\"stop\":\"x\",\"echo\":false,\"messages\":7}");
	assert_string_equal(r->prompt, "once upon");
	assert_null(r->messages);
	assert_int_equal(r->n_stop, 1);
	sl_oai_req_free(r);
	r = fast_parse(COMP, "{\"model\":\"m\",\"prompt\":[ \"one\" ]}");
	assert_string_equal(r->prompt, "one");
	sl_oai_req_free(r);
	r = fast_parse(COMP, "{\"model\":\"m\",\"prompt\":\"\",\"stop\":[]}");
	assert_int_equal(r->prompt_len, 0);
	assert_null(r->stop);
	sl_oai_req_free(r);
	/* nulls are not given */
	r = fast_parse(CHAT, "{\"model\":\"m\"," MSGS ",\"max_tokens\":null,\"temperature\":null,\"top_p\":null,"
	                     "\"n\":null,\"stop\":null,\"user\":null,\"seed\":null,\"stream\":null,"
	                     "\"stream_options\":null,\"max_completion_tokens\":null,\"prompt\":null}");
	assert_true(r->temperature == -1);
	sl_oai_req_free(r);
	/* more messages than fit inline, up to the limit exactly */
	char big[4096];
	size_t n = (size_t)sprintf(big, "{\"model\":\"m\",\"messages\":[");
	for (int i = 0; i < 40; i++)
		n += (size_t)sprintf(big + n, "%s{\"role\":\"%s\",\"content\":\"m%d\"}", i ? "," : "",
		                     i % 2 ? "assistant" : "user", i);
	n += (size_t)sprintf(big + n, "]}");
	sl_oai_limits lim = {.max_messages = 40};
	r = fast_parse_lim(CHAT, big, n, &lim);
	assert_int_equal(r->n_messages, 40);
	assert_string_equal(r->messages[39].content, "m39");
	sl_oai_req_free(r);
	lim.max_messages = 39;
	expect_decline_lim(CHAT, big, n, &lim);
	expect_err_lim(CHAT, big, n, &lim, SL_EINVAL, 400, "array_above_max_length", "messages", NULL);
}

static void test_fast_whitespace(void **state)
{
	(void)state;
	sl_oai_req *r = fast_parse(CHAT,
		" \r\n\t{ \"model\" : \"m\" ,\n \"messages\" :\t[ { \"role\" : \"user\" , \"content\" : "
		"[ { \"type\" : \"text\" , \"text\" : \"a\" } , {\"text\":\"b\" ,\"type\":\"text\"} ] , \"name\" : null } ] ,"
		" \"stop\" : [ \"x\" , \"y\" ] , \"stream\" : true , \"stream_options\" : { \"include_usage\" : false ,"
		" \"other\" : [ ] } , \"seed\" : -0 , \"x\" : { } }\r\n ");
	assert_string_equal(r->messages[0].content, "a\nb");
	assert_int_equal(r->n_stop, 2);
	assert_int_equal(r->stream, 1);
	assert_int_equal(r->include_usage, 0);
	assert_int_equal(r->has_seed, 1);
	assert_int_equal(r->seed, 0);
	sl_oai_req_free(r);
	/* not JSON whitespace: form feed, NBSP, a trailing NUL or garbage */
	expect_decline(CHAT, "\f{\"model\":\"m\"," MSGS "}");
	expect_decline(CHAT, "{\"model\":\"m\"," MSGS "}\xc2\xa0");
	expect_decline(CHAT, "{\"model\":\"m\"," MSGS "} x");
	static const char nul_tail[] = "{\"model\":\"m\"," MSGS "}\0";
	expect_decline_lim(CHAT, nul_tail, sizeof nul_tail - 1, NULL);
	expect_decline(CHAT, "{\"model\":\"m\"," MSGS ",}");
	expect_decline(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},]}");
	expect_decline(CHAT, "{\"model\":\"m\"," MSGS ",\"x\":[1,]}");
	expect_decline(CHAT, "{\"model\":\"m\"," MSGS ",\"x\":01}");
	expect_decline(CHAT, "{\"model\":\"m\"," MSGS ",\"x\":tru}");
	expect_decline(CHAT, "{\"model\":\"m\"," MSGS ",\"x\":truex}");
	expect_decline(CHAT, "");
	expect_decline(CHAT, "   ");
	expect_decline(CHAT, "[]");
	expect_decline(CHAT, "{}");
}

static void test_fast_duplicates_at_depth(void **state)
{
	(void)state;
	static const char *const dups[] = {
		"{\"model\":\"m\",\"model\":\"m\"," MSGS "}",
		"{\"model\":null,\"model\":\"m\"," MSGS "}",
		"{\"model\":\"m\"," MSGS ",\"messages\":[]}",
		"{\"model\":\"m\"," MSGS ",\"x\":1,\"x\":1}",
		"{\"model\":\"m\"," MSGS ",\"prompt\":1,\"prompt\":2}", /* ignored by chat, still a duplicate */
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"role\":\"user\",\"content\":\"x\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"content\":\"y\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"name\":null,\"name\":\"a\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"t\":1,\"t\":2}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\",\"text\":\"b\"}]}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"type\":\"text\",\"text\":\"a\"}]}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\",\"c\":{},\"c\":{}}]}]}",
		"{\"model\":\"m\"," MSGS ",\"stream\":true,\"stream_options\":{\"include_usage\":true,\"include_usage\":false}}",
		"{\"model\":\"m\"," MSGS ",\"stream\":true,\"stream_options\":{\"a\":1,\"a\":1}}",
		"{\"model\":\"m\"," MSGS ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a\",\"parameters\":"
		"{\"properties\":{\"x\":{\"type\":\"string\",\"type\":\"string\"}}}}}]}",
		"{\"model\":\"m\"," MSGS ",\"a\":[[[[[[{\"k\":1,\"j\":[{\"k\":1}],\"k\":2}]]]]]]}",
		"{\"model\":\"m\"," MSGS ",\"\xc3\xa9\":1,\"\xc3\xa9\":2}",
		"{\"model\":\"m\"," MSGS ",\"k\":1,\"\\u006b\":2}", /* the same key, escaped */
	};
	for (size_t i = 0; i < sizeof dups / sizeof dups[0]; i++) {
		expect_decline(CHAT, dups[i]);
		expect_err(CHAT, dups[i], "invalid_json", NULL, "duplicate object key");
	}
	/* the same key in sibling or nested objects is no duplicate */
	sl_oai_req *r = fast_parse(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"k\":{\"k\":{\"k\":1}}},"
	                                 "{\"role\":\"user\",\"content\":\"y\",\"k\":[{\"k\":1},{\"k\":2}]}],\"k\":{\"model\":1}}");
	assert_int_equal(r->n_messages, 2);
	sl_oai_req_free(r);
}

/* The raw "messages" bytes of a fast-path chat: exactly the body's slice
 * (blanks and escapes kept), none for the jansson path or a completion. */
static void test_messages_raw(void **state)
{
	(void)state;
	static const char msgs[] = "[ {\"role\":\"system\",\"content\":\"be \\u00e9\\n\"},\n"
	                           "  {\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}],"
	                           "\"name\":\"x\"} ]";
	char body[512];
	snprintf(body, sizeof body, "{\"model\":\"m\",\"messages\": %s ,\"stream\":true}", msgs);
	sl_oai_req *r = fast_parse(CHAT, body);
	size_t len = 0;
	const char *raw = sl_oai_req_messages_raw(r, &len);
	assert_non_null(raw);
	assert_int_equal(len, sizeof msgs - 1);
	assert_memory_equal(raw, msgs, len);
	sl_oai_req_free(r);
	sl_oai_req *j = NULL;
	sl_oai_error e;
	assert_int_equal(sl__oai_req_parse_ex(SL_OAI_CHAT, body, strlen(body), NULL, &j, &e,
	                                      SL__OAI_JANSSON_ONLY), SL_OK);
	assert_null(sl_oai_req_messages_raw(j, &len));
	sl_oai_req_free(j);
	sl_oai_req *c = fast_parse(SL_OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"p\"}");
	assert_null(sl_oai_req_messages_raw(c, &len));
	sl_oai_req_free(c);
}

static void test_fast_escapes(void **state)
{
	(void)state;
	sl_oai_req *r = fast_parse(CHAT,
		"{\"model\":\"m\\/x\",\"messages\":[{\"role\":\"user\",\"content\":"
		"\"q\\\"b\\\\s\\/f\\b\\f\\n\\r\\t|\\u00e9\\u4E2D\\uD83D\\uDE00\\u0000\\uffff|\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80\"}],"
		"\"user\":\"\\u00fc\",\"stop\":[\"\\r\\n\",\"\\u2028\"]}");
	static const char want[] = "q\"b\\s/f\b\f\n\r\t|\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80\0\xef\xbf\xbf|"
	                           "\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80";
	assert_string_equal(r->model, "m/x");
	assert_int_equal(r->messages[0].content_len, sizeof want - 1);
	assert_memory_equal(r->messages[0].content, want, sizeof want - 1);
	assert_int_equal(r->input_bytes, sizeof want - 1);
	assert_string_equal(r->user, "\xc3\xbc");
	assert_string_equal(r->stop[1], "\xe2\x80\xa8");
	sl_oai_req_free(r);
	/* long strings cross the 8-byte scanner at every alignment */
	for (size_t pad = 0; pad < 20; pad++) {
		char b[256], c[64];
		memset(c, 'a', pad);
		c[pad] = '\0';
		snprintf(b, sizeof b, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"%s\\n%s\\u00e9%s\"}]}",
		         c, c, c);
		r = fast_parse(CHAT, b);
		assert_int_equal(r->messages[0].content_len, 3 * pad + 3);
		sl_oai_req_free(r);
	}
	/* lone surrogate escapes: jansson rejects them, the fast path declines */
	static const char *const bad[] = {
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\\ud800\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\\ud800x\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\\ud800\\u0041\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\\ud800\\ud800\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\\udc00\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\\udfff\\ud800\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\\u12\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\\u12g4\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\\x\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\\'\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"tab\there\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\\",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\\u",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\\ud83d\\u",
		/* invalid UTF-8: overlong, surrogate, > U+10FFFF, stray, truncated */
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xc0\xaf\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xe0\x80\xaf\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xed\xa0\x80\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xf4\x90\x80\x80\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\x80\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xe4\xb8\"}]}",
		"{\"model\":\"m\"," MSGS ",\"\xff\":1}",
		"{\"model\":\"m\"," MSGS ",\"x\":\"\xf5\x80\x80\x80\"}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		expect_decline(CHAT, bad[i]);
		expect_err(CHAT, bad[i], "invalid_json", NULL, NULL);
	}
	/* "\u0000": fine in content and prompt, invalid_value in short strings */
	r = fast_parse(COMP, "{\"model\":\"m\",\"prompt\":\"a\\u0000b\"}");
	assert_int_equal(r->prompt_len, 3);
	sl_oai_req_free(r);
	r = fast_parse(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"\\u0000\"},{\"type\":\"text\",\"text\":\"\\u0000\"}]}]}");
	assert_int_equal(r->messages[0].content_len, 3);
	assert_memory_equal(r->messages[0].content, "\0\n\0", 4);
	sl_oai_req_free(r);
	expect_decline(CHAT, "{\"model\":\"a\\u0000\"," MSGS "}");
	expect_decline(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"name\":\"\\u0000\"}]}");
	expect_decline(CHAT, "{\"model\":\"m\"," MSGS ",\"user\":\"\\u0000\"}");
	expect_decline(CHAT, "{\"model\":\"m\"," MSGS ",\"stop\":\"a\\u0000\"}");
	expect_decline(CHAT, "{\"model\":\"m\"," MSGS ",\"stop\":[\"a\",\"\\u0000\"]}");
	expect_decline(CHAT, "{\"model\":\"m\"," MSGS ",\"x\\u0000\":1}");
	/* escapes in keys and in role / type values are left to jansson */
	expect_decline(CHAT, "{\"mod\\u0065l\":\"m\"," MSGS "}");
	expect_decline(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"us\\u0065r\",\"content\":\"x\"}]}");
	expect_decline(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"t\\u0065xt\",\"text\":\"x\"}]}]}");
	/* a raw NUL byte inside a string */
	static const char nul_body[] = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\0b\"}]}";
	expect_decline_lim(CHAT, nul_body, sizeof nul_body - 1, NULL);
}

static void test_fast_numbers(void **state)
{
	(void)state;
	sl_oai_req *r;
	r = fast_parse(CHAT, "{\"model\":\"m\"," MSGS ",\"max_tokens\":1e2,\"n\":1.0,\"seed\":-0}");
	assert_int_equal(r->max_tokens, 100);
	assert_int_equal(r->seed, 0);
	sl_oai_req_free(r);
	r = fast_parse(CHAT, "{\"model\":\"m\"," MSGS ",\"max_completion_tokens\":2.0,\"seed\":1E+1,\"n\":10e-1}");
	assert_int_equal(r->max_tokens, 2);
	assert_int_equal(r->seed, 10);
	sl_oai_req_free(r);
	r = fast_parse(CHAT, "{\"model\":\"m\"," MSGS ",\"temperature\":-0.0,\"top_p\":-0}");
	assert_true(r->temperature == 0.0 && signbit(r->temperature));
	assert_true(r->top_p == 0.0 && !signbit(r->top_p)); /* an integer 0 */
	sl_oai_req_free(r);
	r = fast_parse(CHAT, "{\"model\":\"m\"," MSGS ",\"temperature\":0.1e1,\"top_p\":0.30000000000000004}");
	assert_true(r->temperature == 1.0);
	assert_true(r->top_p == 0.30000000000000004);
	sl_oai_req_free(r);
	/* digits past Clinger's fast path go through strtod */
	r = fast_parse(CHAT, "{\"model\":\"m\"," MSGS ",\"temperature\":1.9999999999999999999999,\"top_p\":1e-30,\"seed\":1.5e18}");
	assert_true(r->temperature == 2.0);
	assert_true(r->top_p == 1e-30);
	assert_int_equal(r->seed, 1500000000000000000LL);
	sl_oai_req_free(r);
	r = fast_parse(CHAT, "{\"model\":\"m\"," MSGS ",\"seed\":9223372036854775807}");
	assert_int_equal(r->seed, INT64_MAX);
	sl_oai_req_free(r);
	r = fast_parse(CHAT, "{\"model\":\"m\"," MSGS ",\"seed\":-9223372036854775808}");
	assert_int_equal(r->seed, INT64_MIN);
	sl_oai_req_free(r);
	/* big numbers in unknown fields: kept when jansson keeps them */
	r = fast_parse(CHAT, "{\"model\":\"m\"," MSGS ",\"x\":[1.5e299,-1e299,4.9e-324,1e-400,"
	                     "0.000001,123456789012345678,-0,0e0,1E1,12345678901234567890.5]}");
	sl_oai_req_free(r);
	/* errors and the boundaries left to jansson */
	expect_decline(CHAT, "{\"model\":\"m\"," MSGS ",\"max_tokens\":1.5}");
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"max_tokens\":1.5}", "invalid_type", "max_tokens", NULL);
	expect_decline(CHAT, "{\"model\":\"m\"," MSGS ",\"seed\":9223372036854775808}");
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"seed\":9223372036854775808}", "invalid_json", NULL, "too big integer");
	expect_decline(CHAT, "{\"model\":\"m\"," MSGS ",\"seed\":-9223372036854775809}");
	expect_decline(CHAT, "{\"model\":\"m\"," MSGS ",\"x\":123456789012345678901234567890}");
	expect_decline(CHAT, "{\"model\":\"m\"," MSGS ",\"x\":1e309}");
	expect_err(CHAT, "{\"model\":\"m\"," MSGS ",\"x\":1e309}", "invalid_json", NULL, "overflow");
	expect_decline(CHAT, "{\"model\":\"m\"," MSGS ",\"x\":1e301}"); /* valid, but near the edge */
	expect_decline(CHAT, "{\"model\":\"m\"," MSGS ",\"x\":1.7976931348623157e308}");
	expect_decline(CHAT, "{\"model\":\"m\"," MSGS ",\"x\":0e400}");
	expect_decline(CHAT, "{\"model\":\"m\"," MSGS ",\"seed\":9.3e18}");
	expect_decline(CHAT, "{\"model\":\"m\"," MSGS ",\"n\":2}");
	expect_decline(CHAT, "{\"model\":\"m\"," MSGS ",\"n\":0.0}");
	expect_decline(CHAT, "{\"model\":\"m\"," MSGS ",\"temperature\":2.0000000000000004}");
	expect_decline(CHAT, "{\"model\":\"m\"," MSGS ",\"top_p\":-1e-300}");
	static const char *const bad[] = {"-", "1.", ".5", "+1", "1e", "1e+", "-a", "0x1", "1.e2", "- 1", "NaN", "Infinity"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char b[128];
		snprintf(b, sizeof b, "{\"model\":\"m\"," MSGS ",\"x\":%s}", bad[i]);
		expect_decline(CHAT, b);
		expect_err(CHAT, b, "invalid_json", NULL, NULL);
	}
}

static void test_fast_declines_and_rules(void **state)
{
	(void)state;
	/* deeper than the fast path goes: jansson decides */
	char deep[512];
	size_t n = (size_t)sprintf(deep, "{\"model\":\"m\"," MSGS ",\"x\":");
	for (int i = 0; i < 100; i++)
		deep[n++] = '[';
	for (int i = 0; i < 100; i++)
		deep[n++] = ']';
	deep[n++] = '}';
	expect_decline_lim(CHAT, deep, n, NULL);
	sl_oai_req *r;
	assert_int_equal(sl_oai_req_parse(CHAT, deep, n, NULL, &r, NULL), SL_OK);
	assert_false(sl__oai_req_is_fast(r));
	sl_oai_req_free(r);
	/* every rule of the table declines to the jansson path's error */
	static const char *const rules[] = {
		"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
		"{\"model\":\"\"," MSGS "}",
		"{\"model\":5," MSGS "}",
		"{\"model\":\"m\"}",
		"{\"model\":\"m\",\"messages\":null}",
		"{\"model\":\"m\",\"messages\":{}}",
		"{\"model\":\"m\",\"messages\":[1]}",
		"{\"model\":\"m\",\"messages\":[{}]}",
		"{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":null,\"content\":\"x\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"users\",\"content\":\"x\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":null}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":5}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[]}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{}]}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[\"x\"]}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":null}]}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":null,\"text\":\"x\"}]}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"text\":\"x\"}]}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"texts\",\"text\":\"x\"}]}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"name\":7}]}",
		"{\"model\":\"m\",\"prompt\":\"p\"}", /* chat without messages */
		"{\"model\":\"m\"," MSGS ",\"stream\":1}",
		"{\"model\":\"m\"," MSGS ",\"stream\":true,\"stream_options\":true}",
		"{\"model\":\"m\"," MSGS ",\"stream_options\":{}}",
		"{\"model\":\"m\"," MSGS ",\"stream\":false,\"stream_options\":{\"include_usage\":true}}",
		"{\"model\":\"m\"," MSGS ",\"stream_options\":{},\"stream\":false}",
		"{\"model\":\"m\"," MSGS ",\"stream\":true,\"stream_options\":{\"include_usage\":1}}",
		"{\"model\":\"m\"," MSGS ",\"max_tokens\":0}",
		"{\"model\":\"m\"," MSGS ",\"max_tokens\":131073}",
		"{\"model\":\"m\"," MSGS ",\"max_tokens\":\"5\"}",
		"{\"model\":\"m\"," MSGS ",\"max_tokens\":5,\"max_completion_tokens\":0}",
		"{\"model\":\"m\"," MSGS ",\"temperature\":2.5}",
		"{\"model\":\"m\"," MSGS ",\"temperature\":true}",
		"{\"model\":\"m\"," MSGS ",\"top_p\":1.01}",
		"{\"model\":\"m\"," MSGS ",\"n\":\"1\"}",
		"{\"model\":\"m\"," MSGS ",\"stop\":5}",
		"{\"model\":\"m\"," MSGS ",\"stop\":\"\"}",
		"{\"model\":\"m\"," MSGS ",\"stop\":[\"a\",1]}",
		"{\"model\":\"m\"," MSGS ",\"stop\":[null]}",
		"{\"model\":\"m\"," MSGS ",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}",
		"{\"model\":\"m\"," MSGS ",\"user\":5}",
		"{\"model\":\"m\"," MSGS ",\"seed\":\"5\"}",
		"{\"model\":\"m\"," MSGS ",\"seed\":1.5}",
	};
	for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
		expect_decline(CHAT, rules[i]);
	static const char *const comp_rules[] = {
		"{\"model\":\"m\"}",
		"{\"model\":\"m\",\"prompt\":null}",
		"{\"model\":\"m\",\"prompt\":5}",
		"{\"model\":\"m\",\"prompt\":[]}",
		"{\"model\":\"m\",\"prompt\":[1]}",
		"{\"model\":\"m\",\"prompt\":[\"a\",\"b\"]}",
		"{\"model\":\"m\",\"prompt\":[null]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
	};
	for (size_t i = 0; i < sizeof comp_rules / sizeof comp_rules[0]; i++)
		expect_decline(COMP, comp_rules[i]);
	/* context length: the same error from the jansson path */
	sl_oai_limits lim = {.max_input = 10};
	const char *b = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"12345\"},{\"role\":\"user\",\"content\":\"123456\"}]}";
	expect_decline_lim(CHAT, b, strlen(b), &lim);
	b = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"12345\"},{\"role\":\"user\",\"content\":\"12345\"}]}";
	r = fast_parse_lim(CHAT, b, strlen(b), &lim);
	assert_int_equal(r->input_bytes, 10);
	sl_oai_req_free(r);
	b = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"12345\"},{\"type\":\"text\",\"text\":\"1234\"}]}]}";
	r = fast_parse_lim(CHAT, b, strlen(b), &lim);
	assert_int_equal(r->input_bytes, 10);
	sl_oai_req_free(r);
	b = "{\"model\":\"m\",\"prompt\":[\"12345678901\"]}";
	expect_decline_lim(COMP, b, strlen(b), &lim);
	/* the fast path's own limit on unknown keys: left to jansson */
	char many[8192];
	n = (size_t)sprintf(many, "{\"model\":\"m\"," MSGS);
	for (int i = 0; i < 300; i++)
		n += (size_t)sprintf(many + n, ",\"k%d\":%d", i, i);
	many[n++] = '}';
	expect_decline_lim(CHAT, many, n, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal_chat),
		cmocka_unit_test(test_full_chat),
		cmocka_unit_test(test_completion),
		cmocka_unit_test(test_nulls_are_not_given),
		cmocka_unit_test(test_malformed_json),
		cmocka_unit_test(test_not_an_object),
		cmocka_unit_test(test_model),
		cmocka_unit_test(test_messages),
		cmocka_unit_test(test_prompt),
		cmocka_unit_test(test_max_tokens),
		cmocka_unit_test(test_sampling),
		cmocka_unit_test(test_n),
		cmocka_unit_test(test_stop_user_seed_stream),
		cmocka_unit_test(test_context_length),
		cmocka_unit_test(test_render_prompt),
		cmocka_unit_test(test_error_set_truncates_on_char_boundary),
		cmocka_unit_test(test_bad_calls),
		cmocka_unit_test(test_jansson_oom),
		cmocka_unit_test(test_fast_typical_bodies),
		cmocka_unit_test(test_fast_whitespace),
		cmocka_unit_test(test_fast_duplicates_at_depth),
		cmocka_unit_test(test_messages_raw),
		cmocka_unit_test(test_fast_escapes),
		cmocka_unit_test(test_fast_numbers),
		cmocka_unit_test(test_fast_declines_and_rules),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
