/* test_openai_json.c - OpenAI response/SSE writers (http/openai_json.h).
 * Every output is parsed back with jansson. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/dynbuf.h"
#include "core/utf8.h"
#include "http/openai_json.h"

static json_t *parse_ok(const char *s, size_t len)
{
	json_error_t je;
	json_t *j = json_loadb(s, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
	if (!j)
		fail_msg("invalid JSON (%s at %d:%d): %.*s", je.text, je.line, je.column, (int)len, s);
	return j;
}

/* An SSE event: "data: " JSON "\n\n"; returns the parsed JSON. */
static json_t *parse_event(const sl_dynbuf *b, size_t from)
{
	const char *s = b->p + from;
	size_t len = b->len - from;
	assert_true(len >= 8);
	assert_memory_equal(s, "data: ", 6);
	assert_memory_equal(s + len - 2, "\n\n", 2);
	/* no newline inside the JSON: one data line */
	assert_null(memchr(s + 6, '\n', len - 8));
	assert_null(memchr(s + 6, '\r', len - 8));
	return parse_ok(s + 6, len - 8);
}

static const char *jstr(json_t *o, const char *path)
{
	json_t *v = json_object_get(o, path);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* --------------------------------------------------------------- string */

static void roundtrip(const char *s, size_t len)
{
	sl_dynbuf b;
	sl_dynbuf_init(&b, 1 << 20);
	assert_int_equal(sl_oai_json_string(&b, s, len), SL_OK);
	json_t *j = parse_ok(b.p, b.len);
	assert_true(json_is_string(j));
	assert_int_equal(json_string_length(j), len);
	assert_memory_equal(json_string_value(j), s, len);
	json_decref(j);
	sl_dynbuf_free(&b);
}

static void test_string_escaping(void **state)
{
	(void)state;
	sl_dynbuf b;
	sl_dynbuf_init(&b, 4096);
	assert_int_equal(sl_oai_json_string(&b, "a\"b\\c\n\r\t\b\f\x01\x1f\x7f/", 14), SL_OK);
	assert_string_equal(b.p, "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\x7f/\"");
	sl_dynbuf_reset(&b);
	assert_int_equal(sl_oai_json_string(&b, NULL, 0), SL_OK);
	assert_string_equal(b.p, "\"\"");
	sl_dynbuf_reset(&b);
	/* NUL becomes \u0000 */
	assert_int_equal(sl_oai_json_string(&b, "x\0y", 3), SL_OK);
	assert_string_equal(b.p, "\"x\\u0000y\"");
	sl_dynbuf_reset(&b);
	/* valid UTF-8 passes through unchanged */
	const char *u = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xe2\x80\xa8";
	assert_int_equal(sl_oai_json_string(&b, u, strlen(u)), SL_OK);
	assert_int_equal(b.len, strlen(u) + 2);
	assert_memory_equal(b.p + 1, u, strlen(u));
	sl_dynbuf_reset(&b);
	/* invalid bytes become U+FFFD, one per byte */
	assert_int_equal(sl_oai_json_string(&b, "a\xff" "b\xc3", 4), SL_OK);
	assert_string_equal(b.p, "\"a\xef\xbf\xbd" "b\xef\xbf\xbd\"");
	sl_dynbuf_reset(&b);
	assert_int_equal(sl_oai_json_string(&b, "\xed\xa0\x80", 3), SL_OK); /* surrogate */
	assert_string_equal(b.p, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
	sl_dynbuf_free(&b);

	/* every single byte and every pair round-trip or become valid JSON */
	for (unsigned x = 0; x < 256; x++) {
		char s[2] = {(char)x, 0};
		if (x < 0x80)
			roundtrip(s, 1);
		for (unsigned y = 0; y < 256; y += 3) {
			s[1] = (char)y;
			sl_dynbuf_init(&b, 64);
			assert_int_equal(sl_oai_json_string(&b, s, 2), SL_OK);
			json_decref(parse_ok(b.p, b.len));
			if (sl_utf8_valid(s, 2))
				roundtrip(s, 2);
			sl_dynbuf_free(&b);
		}
	}
	/* random strings */
	srand(42);
	char r[200];
	for (int it = 0; it < 20000; it++) {
		size_t n = (size_t)(rand() % (int)sizeof r);
		for (size_t i = 0; i < n; i++)
			r[i] = (char)(rand() % 4 ? rand() % 128 : rand() % 256);
		sl_dynbuf_init(&b, 4096);
		assert_int_equal(sl_oai_json_string(&b, r, n), SL_OK);
		json_t *j = parse_ok(b.p, b.len);
		if (sl_utf8_valid(r, n)) {
			assert_int_equal(json_string_length(j), n);
			assert_memory_equal(json_string_value(j), r, n);
		}
		json_decref(j);
		sl_dynbuf_free(&b);
	}
}

/* -------------------------------------------------------------- bodies */

static const sl_oai_meta meta = {
	.id = "chatcmpl-abc\"1", .model = "m\xc3\xa9/1", .created = 1700000000,
};

static void test_chat_completion(void **state)
{
	(void)state;
	sl_dynbuf b;
	sl_dynbuf_init(&b, 1 << 16);
	sl_oai_usage u = {.prompt_tokens = 7, .completion_tokens = 4000000000u};
	assert_int_equal(sl_oai_json_chat_completion(&b, &meta, "Hi \"there\"\n", 11, "stop", &u), SL_OK);
	json_t *j = parse_ok(b.p, b.len);
	assert_string_equal(jstr(j, "id"), "chatcmpl-abc\"1");
	assert_string_equal(jstr(j, "object"), "chat.completion");
	assert_int_equal(json_integer_value(json_object_get(j, "created")), 1700000000);
	assert_string_equal(jstr(j, "model"), "m\xc3\xa9/1");
	assert_null(json_object_get(j, "system_fingerprint"));
	json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
	assert_int_equal(json_array_size(json_object_get(j, "choices")), 1);
	assert_int_equal(json_integer_value(json_object_get(c0, "index")), 0);
	json_t *msg = json_object_get(c0, "message");
	assert_string_equal(jstr(msg, "role"), "assistant");
	assert_string_equal(jstr(msg, "content"), "Hi \"there\"\n");
	assert_true(json_is_null(json_object_get(c0, "logprobs")));
	assert_string_equal(jstr(c0, "finish_reason"), "stop");
	json_t *us = json_object_get(j, "usage");
	assert_int_equal(json_integer_value(json_object_get(us, "prompt_tokens")), 7);
	assert_int_equal(json_integer_value(json_object_get(us, "completion_tokens")), 4000000000LL);
	assert_int_equal(json_integer_value(json_object_get(us, "total_tokens")), 4000000007LL);
	json_decref(j);

	/* no usage, null finish_reason, fingerprint, negative created */
	sl_dynbuf_reset(&b);
	sl_oai_meta m2 = {.id = "x", .model = "y", .created = -5, .system_fingerprint = "fp_1"};
	assert_int_equal(sl_oai_json_chat_completion(&b, &m2, NULL, 0, NULL, NULL), SL_OK);
	j = parse_ok(b.p, b.len);
	assert_null(json_object_get(j, "usage"));
	assert_int_equal(json_integer_value(json_object_get(j, "created")), -5);
	assert_string_equal(jstr(j, "system_fingerprint"), "fp_1");
	c0 = json_array_get(json_object_get(j, "choices"), 0);
	assert_true(json_is_null(json_object_get(c0, "finish_reason")));
	assert_string_equal(jstr(json_object_get(c0, "message"), "content"), "");
	json_decref(j);
	/* NULL id/model write "" */
	sl_dynbuf_reset(&b);
	sl_oai_meta m3 = {0};
	assert_int_equal(sl_oai_json_chat_completion(&b, &m3, "x", 1, "length", NULL), SL_OK);
	j = parse_ok(b.p, b.len);
	assert_string_equal(jstr(j, "id"), "");
	json_decref(j);
	sl_dynbuf_free(&b);
}

static void test_text_completion(void **state)
{
	(void)state;
	sl_dynbuf b;
	sl_dynbuf_init(&b, 1 << 16);
	sl_oai_usage u = {.prompt_tokens = 1, .completion_tokens = 2};
	assert_int_equal(sl_oai_json_text_completion(&b, &meta, "done\x01", 5, "length", &u), SL_OK);
	json_t *j = parse_ok(b.p, b.len);
	assert_string_equal(jstr(j, "object"), "text_completion");
	json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
	assert_string_equal(jstr(c0, "text"), "done\x01");
	assert_int_equal(json_integer_value(json_object_get(c0, "index")), 0);
	assert_string_equal(jstr(c0, "finish_reason"), "length");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "usage"), "total_tokens")), 3);
	json_decref(j);
	sl_dynbuf_free(&b);
}

static void test_chunks(void **state)
{
	(void)state;
	sl_dynbuf b;
	sl_dynbuf_init(&b, 1 << 16);
	/* first chunk: role + empty content */
	assert_int_equal(sl_oai_sse_chat_chunk(&b, &meta, "assistant", "", 0, NULL, 0), SL_OK);
	json_t *j = parse_event(&b, 0);
	assert_string_equal(jstr(j, "object"), "chat.completion.chunk");
	json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
	json_t *d = json_object_get(c0, "delta");
	assert_string_equal(jstr(d, "role"), "assistant");
	assert_string_equal(jstr(d, "content"), "");
	assert_true(json_is_null(json_object_get(c0, "finish_reason")));
	assert_null(json_object_get(j, "usage"));
	json_decref(j);
	/* content with newlines stays on one data line */
	size_t from = b.len;
	assert_int_equal(sl_oai_sse_chat_chunk(&b, &meta, NULL, "a\nb\r\n", 5, NULL, 1), SL_OK);
	j = parse_event(&b, from);
	c0 = json_array_get(json_object_get(j, "choices"), 0);
	d = json_object_get(c0, "delta");
	assert_null(json_object_get(d, "role"));
	assert_string_equal(jstr(d, "content"), "a\nb\r\n");
	assert_true(json_is_null(json_object_get(j, "usage")));
	assert_non_null(json_object_get(j, "usage"));
	json_decref(j);
	/* final chunk: empty delta, finish_reason */
	from = b.len;
	assert_int_equal(sl_oai_sse_chat_chunk(&b, &meta, NULL, NULL, 0, "stop", 0), SL_OK);
	j = parse_event(&b, from);
	c0 = json_array_get(json_object_get(j, "choices"), 0);
	assert_int_equal(json_object_size(json_object_get(c0, "delta")), 0);
	assert_string_equal(jstr(c0, "finish_reason"), "stop");
	json_decref(j);
	/* usage chunk */
	from = b.len;
	sl_oai_usage u = {.prompt_tokens = 3, .completion_tokens = 5};
	assert_int_equal(sl_oai_sse_usage_chunk(&b, &meta, SL_OAI_CHAT, &u), SL_OK);
	j = parse_event(&b, from);
	assert_string_equal(jstr(j, "object"), "chat.completion.chunk");
	assert_int_equal(json_array_size(json_object_get(j, "choices")), 0);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "usage"), "total_tokens")), 8);
	json_decref(j);
	from = b.len;
	assert_int_equal(sl_oai_sse_usage_chunk(&b, &meta, SL_OAI_COMPLETION, NULL), SL_OK);
	j = parse_event(&b, from);
	assert_string_equal(jstr(j, "object"), "text_completion");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "usage"), "total_tokens")), 0);
	json_decref(j);
	/* done */
	from = b.len;
	assert_int_equal(sl_oai_sse_done(&b), SL_OK);
	assert_string_equal(b.p + from, "data: [DONE]\n\n");
	/* role + content together */
	sl_dynbuf_reset(&b);
	assert_int_equal(sl_oai_sse_chat_chunk(&b, &meta, "assistant", "x", 1, "length", 0), SL_OK);
	j = parse_event(&b, 0);
	d = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "delta");
	assert_string_equal(jstr(d, "role"), "assistant");
	assert_string_equal(jstr(d, "content"), "x");
	json_decref(j);
	/* text completion chunks */
	sl_dynbuf_reset(&b);
	assert_int_equal(sl_oai_sse_text_chunk(&b, &meta, "tok\"", 4, NULL, 1), SL_OK);
	j = parse_event(&b, 0);
	assert_string_equal(jstr(j, "object"), "text_completion");
	c0 = json_array_get(json_object_get(j, "choices"), 0);
	assert_string_equal(jstr(c0, "text"), "tok\"");
	assert_true(json_is_null(json_object_get(c0, "finish_reason")));
	assert_true(json_is_null(json_object_get(j, "usage")));
	json_decref(j);
	sl_dynbuf_reset(&b);
	assert_int_equal(sl_oai_sse_text_chunk(&b, &meta, NULL, 0, "stop", 0), SL_OK);
	j = parse_event(&b, 0);
	c0 = json_array_get(json_object_get(j, "choices"), 0);
	assert_string_equal(jstr(c0, "text"), "");
	assert_string_equal(jstr(c0, "finish_reason"), "stop");
	json_decref(j);
	sl_dynbuf_free(&b);
}

/* The prefix + content writer gives exactly the bytes of the full writers,
 * for contents with every byte class (escapes, controls, UTF-8, invalid
 * bytes, NUL), with and without usage:null and a system_fingerprint, and
 * with a bound so small that only the piecewise path fits. */
static void test_content_chunk_same_bytes(void **state)
{
	(void)state;
	static const char *const contents[] = {
		"", "Hello", " world", "quote\" back\\ slash", "tab\tnl\ncr\r\b\f",
		"\x01\x1f ctl", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "bad \xff\xc3 x",
		"</script>"};
	sl_oai_meta metas[2] = {{.id = "chatcmpl-1\"x", .model = "m\\o", .created = 1700000000},
	                        {.id = "c2", .model = "gpt", .created = -5, .system_fingerprint = "fp"}};
	srand(7);
	for (int k = 0; k < 2; k++)
		for (int chat = 0; chat < 2; chat++) {
			sl_oai_kind kind = chat ? SL_OAI_CHAT : SL_OAI_COMPLETION;
			sl_dynbuf pre;
			sl_dynbuf_init(&pre, 4096);
			assert_int_equal(sl_oai_sse_chunk_prefix(&pre, &metas[k], kind), SL_OK);
			for (size_t c = 0; c < sizeof contents / sizeof *contents + 200; c++) {
				char rnd[64];
				const char *t;
				size_t tl;
				if (c < sizeof contents / sizeof *contents) {
					t = contents[c];
					tl = strlen(t);
				} else { /* random bytes, NULs included */
					tl = (size_t)rand() % sizeof rnd;
					for (size_t i = 0; i < tl; i++)
						rnd[i] = (char)(rand() & 0xff);
					t = rnd;
				}
				for (int un = 0; un < 2; un++)
					for (size_t max = 64; max <= 1u << 20; max <<= 14) {
						sl_dynbuf a, b;
						sl_dynbuf_init(&a, max);
						sl_dynbuf_init(&b, max);
						int ra = chat ? sl_oai_sse_chat_chunk(&a, &metas[k], NULL, t, tl, NULL, un)
						              : sl_oai_sse_text_chunk(&a, &metas[k], t, tl, NULL, un);
						int rb = sl_oai_sse_content_chunk(&b, kind, pre.p, pre.len, t, tl, un);
						assert_int_equal(ra, rb);
						assert_int_equal(a.len, b.len);
						if (a.len)
							assert_memory_equal(a.p, b.p, a.len);
						if (ra == SL_OK && max > 64)
							json_decref(parse_event(&b, 0));
						sl_dynbuf_free(&a);
						sl_dynbuf_free(&b);
					}
			}
			sl_dynbuf_free(&pre);
		}
}

static void test_errors(void **state)
{
	(void)state;
	sl_dynbuf b;
	sl_dynbuf_init(&b, 1 << 16);
	assert_int_equal(sl_oai_json_error(&b, "bad \"thing\"\n", "invalid_request_error", "max_tokens", "invalid_value"), SL_OK);
	json_t *j = parse_ok(b.p, b.len);
	json_t *e = json_object_get(j, "error");
	assert_int_equal(json_object_size(j), 1);
	assert_string_equal(jstr(e, "message"), "bad \"thing\"\n");
	assert_string_equal(jstr(e, "type"), "invalid_request_error");
	assert_string_equal(jstr(e, "param"), "max_tokens");
	assert_string_equal(jstr(e, "code"), "invalid_value");
	json_decref(j);

	sl_dynbuf_reset(&b);
	assert_int_equal(sl_oai_json_error(&b, NULL, NULL, NULL, NULL), SL_OK);
	assert_string_equal(b.p, "{\"error\":{\"message\":\"\",\"type\":\"server_error\",\"param\":null,\"code\":null}}");

	/* from a parser error */
	sl_oai_req *r;
	sl_oai_error err;
	assert_int_equal(sl_oai_req_parse(SL_OAI_CHAT, "{\"model\":\"m\",\"messages\":[],\"x\":1}", 33, NULL, &r, &err), SL_EINVAL);
	sl_dynbuf_reset(&b);
	assert_int_equal(sl_oai_json_error_from(&b, &err), SL_OK);
	j = parse_ok(b.p, b.len);
	e = json_object_get(j, "error");
	assert_string_equal(jstr(e, "code"), "empty_array");
	assert_string_equal(jstr(e, "param"), "messages");
	assert_string_equal(jstr(e, "message"), err.message);
	json_decref(j);
	/* a parser error for malformed JSON has a null param */
	assert_int_equal(sl_oai_req_parse(SL_OAI_CHAT, "{\"\xff\":1}", 7, NULL, &r, &err), SL_EINVAL);
	sl_dynbuf_reset(&b);
	assert_int_equal(sl_oai_json_error_from(&b, &err), SL_OK);
	j = parse_ok(b.p, b.len);
	assert_true(json_is_null(json_object_get(json_object_get(j, "error"), "param")));
	json_decref(j);

	sl_dynbuf_reset(&b);
	assert_int_equal(sl_oai_sse_error(&b, "upstream died", "server_error", NULL, "upstream_error"), SL_OK);
	j = parse_event(&b, 0);
	e = json_object_get(j, "error");
	assert_string_equal(jstr(e, "message"), "upstream died");
	assert_string_equal(jstr(e, "code"), "upstream_error");
	assert_true(json_is_null(json_object_get(e, "param")));
	json_decref(j);
	sl_dynbuf_free(&b);
}

/* Every writer, at every max from 0 up to its full size: either the whole
 * output or SL_ETOOBIG with the buffer untouched. */
typedef int (*writer_fn)(sl_dynbuf *b);
static int w_chat(sl_dynbuf *b)
{
	sl_oai_usage u = {1, 2};
	return sl_oai_json_chat_completion(b, &meta, "he\"llo\n", 7, "stop", &u);
}
static int w_text(sl_dynbuf *b)
{
	sl_oai_usage u = {1, 2};
	return sl_oai_json_text_completion(b, &meta, "he\"llo\n", 7, "stop", &u);
}
static int w_chunk(sl_dynbuf *b) { return sl_oai_sse_chat_chunk(b, &meta, "assistant", "x\x01", 2, "stop", 1); }
static int w_tchunk(sl_dynbuf *b) { return sl_oai_sse_text_chunk(b, &meta, "x\x01", 2, "stop", 1); }
static int w_usage(sl_dynbuf *b)
{
	sl_oai_usage u = {10, 20};
	return sl_oai_sse_usage_chunk(b, &meta, SL_OAI_CHAT, &u);
}
static int w_done(sl_dynbuf *b) { return sl_oai_sse_done(b); }
static int w_err(sl_dynbuf *b) { return sl_oai_json_error(b, "m\"", "t", "p", "c"); }
static int w_sse_err(sl_dynbuf *b) { return sl_oai_sse_error(b, "m\"", "t", NULL, NULL); }
static int w_str(sl_dynbuf *b) { return sl_oai_json_string(b, "a\n\xff", 3); }

static void test_atomic_on_toobig(void **state)
{
	(void)state;
	writer_fn ws[] = {w_chat, w_text, w_chunk, w_tchunk, w_usage, w_done, w_err, w_sse_err, w_str};
	for (size_t k = 0; k < sizeof ws / sizeof ws[0]; k++) {
		sl_dynbuf full;
		sl_dynbuf_init(&full, 1 << 16);
		assert_int_equal(ws[k](&full), SL_OK);
		for (size_t pre = 0; pre < 3; pre++) {
			for (size_t max = pre; max <= full.len + pre + 1; max++) {
				sl_dynbuf b;
				sl_dynbuf_init(&b, max);
				for (size_t i = 0; i < pre; i++)
					assert_int_equal(sl_dynbuf_add(&b, "P", 1), SL_OK);
				int rc = ws[k](&b);
				if (max >= full.len + pre) {
					assert_int_equal(rc, SL_OK);
					assert_int_equal(b.len, full.len + pre);
					assert_memory_equal(b.p + pre, full.p, full.len);
				} else {
					assert_int_equal(rc, SL_ETOOBIG);
					assert_int_equal(b.len, pre);
					if (b.p)
						assert_int_equal(b.p[pre], '\0');
				}
				sl_dynbuf_free(&b);
			}
		}
		sl_dynbuf_free(&full);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_string_escaping),
		cmocka_unit_test(test_chat_completion),
		cmocka_unit_test(test_text_completion),
		cmocka_unit_test(test_chunks),
		cmocka_unit_test(test_content_chunk_same_bytes),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_atomic_on_toobig),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
