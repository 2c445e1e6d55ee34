/* test_openai_req.c - OpenAI request parsing and validation (http/openai_req.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "http/openai_req.h"

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
		int rc = sl_oai_req_parse(CHAT, b, strlen(b), NULL, &r, &err);
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
	json_set_alloc_funcs(malloc, free);
	assert_true(saw_ok);
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
