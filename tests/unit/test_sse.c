/* test_sse.c - incremental SSE parser and OpenAI chunk extraction
 * (worker/openai/sse.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/dynbuf.h"
#include "worker/openai/sse.h"

/* Records events as "<event>\x1f<data>\x1e" so logs compare as bytes. */
typedef struct rec {
	sl_dynbuf log;
	int n;
	int stop_at; /* return 99 on this event number (1-based), 0 = never */
} rec;

static int chr(sl_dynbuf *b, char c)
{
	return sl_dynbuf_add(b, &c, 1);
}

static int on_event(void *arg, const char *ev, size_t evl, const char *data, size_t dl)
{
	rec *r = arg;
	assert_int_equal(ev[evl], '\0');
	assert_int_equal(data[dl], '\0');
	assert_int_equal(sl_dynbuf_add(&r->log, ev, evl), SL_OK);
	assert_int_equal(chr(&r->log, '\x1f'), SL_OK);
	assert_int_equal(sl_dynbuf_add(&r->log, data, dl), SL_OK);
	assert_int_equal(chr(&r->log, '\x1e'), SL_OK);
	r->n++;
	return r->stop_at && r->n == r->stop_at ? 99 : 0;
}

static void rec_init(rec *r)
{
	memset(r, 0, sizeof *r);
	sl_dynbuf_init(&r->log, 1 << 24);
	sl_dynbuf_add(&r->log, "", 0);
}

/* Feeds s in pieces cut at the given positions (sorted, may be empty);
 * returns the first non-OK status or finish's status; *r gets the log. */
static int run_cuts(const char *s, size_t len, const size_t *cuts, size_t ncuts,
                    size_t max, rec *r, int *finish_rc)
{
	sl_sse *p;
	assert_int_equal(sl_sse_create(max, on_event, r, &p), SL_OK);
	size_t from = 0;
	int rc = SL_OK;
	for (size_t i = 0; i <= ncuts && rc == SL_OK; i++) {
		size_t to = i < ncuts ? cuts[i] : len;
		rc = sl_sse_feed(p, s + from, to - from);
		from = to;
	}
	if (finish_rc)
		*finish_rc = sl_sse_finish(p);
	sl_sse_destroy(p);
	return rc;
}

static int run(const char *s, size_t len, size_t max, rec *r, int *finish_rc)
{
	return run_cuts(s, len, NULL, 0, max, r, finish_rc);
}

/* Parses s whole and checks the log. */
static void expect_log(const char *s, const char *want)
{
	rec r;
	rec_init(&r);
	int frc;
	assert_int_equal(run(s, strlen(s), 4096, &r, &frc), SL_OK);
	if (strcmp(r.log.p, want) != 0)
		fail_msg("input %s\n got: %s\nwant: %s", s, r.log.p, want);
	sl_dynbuf_free(&r.log);
}

#define E(ev, data) ev "\x1f" data "\x1e"

static void test_basic(void **state)
{
	(void)state;
	expect_log("data: hello\n\n", E("message", "hello"));
	expect_log("data:hello\n\n", E("message", "hello"));
	expect_log("data:  two spaces\n\n", E("message", " two spaces"));
	expect_log("event: add\ndata: x\n\n", E("add", "x"));
	expect_log("data: a\ndata: b\ndata:\ndata: c\n\n", E("message", "a\nb\n\nc"));
	expect_log("data: a\n\ndata: b\n\n", E("message", "a") E("message", "b"));
	/* the event type resets after each dispatch */
	expect_log("event: e\ndata: a\n\ndata: b\n\n", E("e", "a") E("message", "b"));
	/* an event with no data is not dispatched, and its type is dropped */
	expect_log("event: e\n\ndata: b\n\n", E("message", "b"));
	/* "data" with no colon, and "data:" with no value: one empty data line
	 * each; per WHATWG such an event IS dispatched with empty data */
	expect_log("data\n\n", E("message", ""));
	expect_log("data:\n\n", E("message", ""));
	expect_log("data\ndata\n\n", E("message", "\n"));
	/* blank lines alone dispatch nothing */
	expect_log("\n\n\n\r\n\r", "");
	/* no final blank line: nothing dispatched */
	expect_log("data: pending\n", "");
	/* values keep colons; only one leading space is removed */
	expect_log("data: a: b:c\n\n", E("message", "a: b:c"));
	/* unknown fields and fields with a space in the name are ignored */
	expect_log("foo: bar\ndata : x\n data: y\ndata: z\n\n", E("message", "z"));
	/* field names are case-sensitive */
	expect_log("Data: x\nEVENT: y\ndata: z\n\n", E("message", "z"));
	/* an empty event name means "message" */
	expect_log("event:\ndata: z\n\n", E("message", "z"));
	expect_log("event\ndata: z\n\n", E("message", "z"));
	/* [DONE] is just data */
	expect_log("data: {\"a\":1}\n\ndata: [DONE]\n\n", E("message", "{\"a\":1}") E("message", "[DONE]"));
}

static void test_comments(void **state)
{
	(void)state;
	expect_log(": keep-alive\n\n", "");
	expect_log(":\n:x\ndata: a\n: inside an event\ndata: b\n\n", E("message", "a\nb"));
	expect_log(": OPENROUTER PROCESSING\n\ndata: x\n\n", E("message", "x"));
}

static void test_line_endings(void **state)
{
	(void)state;
	const char *want = E("message", "a\nb") E("e", "c");
	expect_log("data: a\ndata: b\n\nevent: e\ndata: c\n\n", want);
	expect_log("data: a\r\ndata: b\r\n\r\nevent: e\r\ndata: c\r\n\r\n", want);
	expect_log("data: a\rdata: b\r\revent: e\rdata: c\r\r", want);
	expect_log("data: a\r\ndata: b\r\revent: e\ndata: c\n\r\n", want);
	/* "\n\r" is two line ends: an empty line after "data: a" */
	expect_log("data: a\n\rdata: b\n\n", E("message", "a") E("message", "b"));
	/* CR then LF in separate chunks is one line end */
	rec r;
	rec_init(&r);
	const char *s = "data: a\rdata: b\r\n\r\n";
	size_t cuts[] = {8}; /* right after the first \r */
	assert_int_equal(run_cuts(s, strlen(s), cuts, 1, 100, &r, NULL), SL_OK);
	assert_string_equal(r.log.p, E("message", "a\nb"));
	sl_dynbuf_free(&r.log);
	rec_init(&r);
	s = "data: a\r\n\r\ndata: b\r\n\r\n";
	size_t cuts2[] = {8, 10, 11}; /* after each \r */
	assert_int_equal(run_cuts(s, strlen(s), cuts2, 3, 100, &r, NULL), SL_OK);
	assert_string_equal(r.log.p, E("message", "a") E("message", "b"));
	sl_dynbuf_free(&r.log);
	/* an empty chunk between CR and LF keeps the pending CR */
	rec_init(&r);
	s = "data: a\r\n\r\n";
	size_t cuts3[] = {8, 8, 8};
	assert_int_equal(run_cuts(s, strlen(s), cuts3, 3, 100, &r, NULL), SL_OK);
	assert_string_equal(r.log.p, E("message", "a"));
	sl_dynbuf_free(&r.log);
}

static void test_bom(void **state)
{
	(void)state;
	expect_log("\xef\xbb\xbf" "data: x\n\n", E("message", "x"));
	/* only one, only at the start */
	expect_log("\xef\xbb\xbf\xef\xbb\xbf" "data: x\n\ndata: y\n\n", E("message", "y"));
	expect_log("data: \xef\xbb\xbfx\n\n", E("message", "\xef\xbb\xbfx"));
	/* a partial BOM is ordinary bytes */
	expect_log("\xef\xbb" "data: x\n\ndata: y\n\n", E("message", "y"));
	expect_log("\xef\n\ndata: y\n\n", E("message", "y"));
}

static void test_id_retry(void **state)
{
	(void)state;
	sl_sse *p;
	rec r;
	rec_init(&r);
	assert_int_equal(sl_sse_create(100, on_event, &r, &p), SL_OK);
	size_t n;
	assert_string_equal(sl_sse_last_event_id(p, &n), "");
	assert_int_equal(n, 0);
	assert_int_equal(sl_sse_retry(p), -1);
	const char *s = "id: 42\nretry: 1500\ndata: x\n\nid\nretry: 12a\nretry:\n\n";
	assert_int_equal(sl_sse_feed(p, s, strlen(s)), SL_OK);
	assert_string_equal(sl_sse_last_event_id(p, &n), "");
	assert_int_equal(sl_sse_retry(p), 1500);
	static const char s2[] = "id: 7\n\nid: a\0b\n\nretry: 99999999999999999999999\n\n";
	assert_int_equal(sl_sse_feed(p, s2, sizeof s2 - 1), SL_OK);
	assert_string_equal(sl_sse_last_event_id(p, &n), "7");
	assert_int_equal(n, 1);
	assert_int_equal(sl_sse_retry(p), INT64_MAX);
	/* finish keeps them */
	assert_int_equal(sl_sse_finish(p), SL_OK);
	assert_string_equal(sl_sse_last_event_id(p, NULL), "7");
	sl_sse_destroy(p);
	sl_sse_destroy(NULL);
	sl_dynbuf_free(&r.log);
}

/* A stream with every feature, split at every position and at every pair
 * of positions, and fed one byte at a time: identical events each time. */
static const char multi[] =
	"\xef\xbb\xbf: hello\r\n"
	"event: start\r\ndata: {\"a\":1}\r\n\r\n"
	"data: line1\rdata: line2\r\r"
	"id: 5\nretry: 10\ndata\n\n"
	"data: \xe2\x82\xac uni\n: c\ndata:x\n\n"
	"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n"
	"event: error\ndata: {\"error\":{\"message\":\"boom\"}}\n\n"
	"data: [DONE]\n\n"
	"data: trailing";

static void test_split_everywhere(void **state)
{
	(void)state;
	size_t len = sizeof multi - 1;
	rec whole;
	rec_init(&whole);
	int frc_whole;
	assert_int_equal(run(multi, len, 1000, &whole, &frc_whole), SL_OK);
	assert_int_equal(whole.n, 7);
	assert_int_equal(frc_whole, SL_EUPSTREAM); /* "data: trailing" never dispatched */
	assert_string_equal(whole.log.p,
		E("start", "{\"a\":1}") E("message", "line1\nline2") E("message", "")
		E("message", "\xe2\x82\xac uni\nx")
		E("message", "{\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}")
		E("error", "{\"error\":{\"message\":\"boom\"}}") E("message", "[DONE]"));
	for (size_t i = 0; i <= len; i++) {
		rec r;
		rec_init(&r);
		int frc;
		size_t cut[1] = {i};
		assert_int_equal(run_cuts(multi, len, cut, 1, 1000, &r, &frc), SL_OK);
		if (strcmp(r.log.p, whole.log.p) != 0)
			fail_msg("split at %zu differs:\n%s", i, r.log.p);
		assert_int_equal(frc, frc_whole);
		sl_dynbuf_free(&r.log);
		for (size_t j = i; j <= len; j++) {
			rec r2;
			rec_init(&r2);
			size_t cuts[2] = {i, j};
			assert_int_equal(run_cuts(multi, len, cuts, 2, 1000, &r2, &frc), SL_OK);
			if (strcmp(r2.log.p, whole.log.p) != 0)
				fail_msg("split at %zu,%zu differs", i, j);
			assert_int_equal(frc, frc_whole);
			sl_dynbuf_free(&r2.log);
		}
	}
	/* one byte at a time */
	size_t *cuts = malloc(len * sizeof *cuts);
	for (size_t i = 0; i < len; i++)
		cuts[i] = i + 1;
	rec r;
	rec_init(&r);
	assert_int_equal(run_cuts(multi, len, cuts, len - 1, 1000, &r, NULL), SL_OK);
	assert_string_equal(r.log.p, whole.log.p);
	free(cuts);
	sl_dynbuf_free(&r.log);
	sl_dynbuf_free(&whole.log);
}

static void test_bounds(void **state)
{
	(void)state;
	rec r;
	int frc;
	/* a line of exactly max bytes is fine, max + 1 is not */
	char line[64];
	memset(line, 'x', sizeof line);
	memcpy(line, "data:", 5);
	line[20] = '\n';
	line[21] = '\n';
	rec_init(&r);
	assert_int_equal(run(line, 22, 20, &r, NULL), SL_OK);
	assert_int_equal(r.n, 1);
	sl_dynbuf_free(&r.log);
	rec_init(&r);
	assert_int_equal(run(line, 22, 19, &r, &frc), SL_ETOOBIG);
	assert_int_equal(frc, SL_ETOOBIG); /* sticky */
	assert_int_equal(r.n, 0);
	sl_dynbuf_free(&r.log);
	/* same when the long line arrives in pieces, at every split */
	for (size_t i = 0; i <= 22; i++) {
		size_t cut[1] = {i};
		rec_init(&r);
		assert_int_equal(run_cuts(line, 22, cut, 1, 19, &r, NULL), SL_ETOOBIG);
		sl_dynbuf_free(&r.log);
		rec_init(&r);
		assert_int_equal(run_cuts(line, 22, cut, 1, 20, &r, NULL), SL_OK);
		assert_int_equal(r.n, 1);
		sl_dynbuf_free(&r.log);
	}
	/* an unterminated long line is caught too */
	rec_init(&r);
	assert_int_equal(run(line, 20, 10, &r, NULL), SL_ETOOBIG);
	sl_dynbuf_free(&r.log);
	/* long comments count as lines */
	rec_init(&r);
	assert_int_equal(run(":aaaaaaaaaaaaaaa\n", 17, 10, &r, NULL), SL_ETOOBIG);
	sl_dynbuf_free(&r.log);
	/* joined data over the bound: lines of 9 bytes, data "aaaa\nbbbb\ncccc"
	 * of 14 bytes */
	const char *s = "data:aaaa\ndata:bbbb\ndata:cccc\n\n";
	rec_init(&r);
	assert_int_equal(run(s, strlen(s), 14, &r, NULL), SL_OK);
	assert_int_equal(r.n, 1);
	sl_dynbuf_free(&r.log);
	rec_init(&r);
	assert_int_equal(run(s, strlen(s), 13, &r, NULL), SL_ETOOBIG);
	assert_int_equal(r.n, 0);
	sl_dynbuf_free(&r.log);
	rec_init(&r);
	assert_int_equal(run(s, strlen(s), 9, &r, NULL), SL_ETOOBIG);
	sl_dynbuf_free(&r.log);
	/* events before the oversized one are delivered */
	s = "data: ok\n\ndata: this one is far too long\n\ndata: never\n\n";
	rec_init(&r);
	assert_int_equal(run(s, strlen(s), 12, &r, NULL), SL_ETOOBIG);
	assert_string_equal(r.log.p, E("message", "ok"));
	sl_dynbuf_free(&r.log);
	/* sticky: a later feed does nothing */
	sl_sse *p;
	rec_init(&r);
	assert_int_equal(sl_sse_create(4, on_event, &r, &p), SL_OK);
	assert_int_equal(sl_sse_feed(p, "data: toolong\n\n", 15), SL_ETOOBIG);
	assert_int_equal(sl_sse_feed(p, "data\n\n", 6), SL_ETOOBIG);
	assert_int_equal(r.n, 0);
	sl_sse_destroy(p);
	sl_dynbuf_free(&r.log);
}

static void test_callback_stop(void **state)
{
	(void)state;
	rec r;
	rec_init(&r);
	r.stop_at = 2;
	sl_sse *p;
	assert_int_equal(sl_sse_create(100, on_event, &r, &p), SL_OK);
	const char *s = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
	assert_int_equal(sl_sse_feed(p, s, strlen(s)), 99);
	assert_int_equal(r.n, 2);
	assert_int_equal(sl_sse_feed(p, s, strlen(s)), 99);
	assert_int_equal(sl_sse_finish(p), 99);
	assert_int_equal(r.n, 2);
	sl_sse_destroy(p);
	sl_dynbuf_free(&r.log);
}

static void test_finish(void **state)
{
	(void)state;
	sl_sse *p;
	rec r;
	rec_init(&r);
	assert_int_equal(sl_sse_create(100, on_event, &r, &p), SL_OK);
	assert_int_equal(sl_sse_finish(p), SL_OK);
	assert_int_equal(sl_sse_feed(p, "data: a\n\n", 9), SL_OK);
	assert_int_equal(sl_sse_finish(p), SL_OK);
	/* data line seen, no blank line */
	assert_int_equal(sl_sse_feed(p, "data: a\n", 8), SL_OK);
	assert_int_equal(sl_sse_finish(p), SL_EUPSTREAM);
	assert_int_equal(r.n, 1); /* discarded */
	/* the parser was reset: a new stream works, and the old data is gone */
	assert_int_equal(sl_sse_feed(p, "\xef\xbb\xbf" "data: b\n\n", 12), SL_OK);
	assert_int_equal(r.n, 2);
	assert_string_equal(r.log.p, E("message", "a") E("message", "b"));
	/* partial data line */
	assert_int_equal(sl_sse_feed(p, "data: par", 9), SL_OK);
	assert_int_equal(sl_sse_finish(p), SL_EUPSTREAM);
	assert_int_equal(sl_sse_feed(p, "data", 4), SL_OK);
	assert_int_equal(sl_sse_finish(p), SL_EUPSTREAM);
	/* partial comment or other field: nothing pending */
	assert_int_equal(sl_sse_feed(p, ": ping", 6), SL_OK);
	assert_int_equal(sl_sse_finish(p), SL_OK);
	assert_int_equal(sl_sse_feed(p, "event: x\nid: 1", 14), SL_OK);
	assert_int_equal(sl_sse_finish(p), SL_OK);
	assert_int_equal(sl_sse_feed(p, "datax", 5), SL_OK);
	assert_int_equal(sl_sse_finish(p), SL_OK);
	/* the partial "id: 1" was not applied */
	assert_string_equal(sl_sse_last_event_id(p, NULL), "");
	sl_sse_destroy(p);
	sl_dynbuf_free(&r.log);
}

static void test_create_args(void **state)
{
	(void)state;
	sl_sse *p = NULL;
	assert_int_equal(sl_sse_create(0, on_event, NULL, &p), SL_EINVAL);
	assert_int_equal(sl_sse_create(10, NULL, NULL, &p), SL_EINVAL);
	assert_int_equal(sl_sse_create(10, on_event, NULL, NULL), SL_EINVAL);
	assert_int_equal(sl_sse_create((size_t)-1, on_event, NULL, &p), SL_EINVAL);
	assert_null(p);
}

/* Many CR-only lines with no LF must not be quadratic. */
static void test_many_cr_lines(void **state)
{
	(void)state;
	size_t n = 4u << 20;
	char *s = malloc(n);
	for (size_t i = 0; i < n; i += 2) {
		s[i] = 'd';
		s[i + 1] = '\r';
	}
	rec r;
	rec_init(&r);
	assert_int_equal(run(s, n, 100, &r, NULL), SL_OK);
	assert_int_equal(r.n, 0);
	free(s);
	sl_dynbuf_free(&r.log);
}

/* ------------------------------------------------------------- chunks */

typedef int (*chunk_fn)(const char *, size_t, sl_oai_chunk *);
static chunk_fn impls[] = {sl_oai_chunk_parse, sl_oai_chunk_parse_jansson};
#define NIMPL (sizeof impls / sizeof impls[0])

static int parse(size_t k, sl_oai_chunk *c, const char *s)
{
	return impls[k](s, strlen(s), c);
}

static void test_chunk_content(void **state)
{
	(void)state;
	for (size_t k = 0; k < NIMPL; k++) {
		sl_oai_chunk c;
		sl_oai_chunk_init(&c, 0);
		assert_int_equal(parse(k, &c,
			"{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,"
			"\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":"
			"[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"He\\\"llo\\n\\u00e9\\ud83d\\ude00\"},"
			"\"logprobs\":null,\"finish_reason\":null}]}"), SL_OK);
		assert_false(c.done);
		assert_string_equal(c.content, "He\"llo\n\xc3\xa9\xf0\x9f\x98\x80");
		assert_int_equal(c.content_len, 13);
		assert_string_equal(c.role, "assistant");
		assert_null(c.finish_reason);
		assert_false(c.has_usage);
		assert_false(c.is_error);

		/* the final chunk: empty delta, finish_reason static */
		assert_int_equal(parse(k, &c, "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}"), SL_OK);
		assert_null(c.content);
		assert_null(c.role);
		assert_ptr_equal(c.finish_reason, c.finish_reason); /* set */
		assert_string_equal(c.finish_reason, "stop");
		const char *fr = c.finish_reason;
		assert_int_equal(parse(k, &c, "{\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}"), SL_OK);
		assert_string_equal(fr, "stop"); /* static: still valid */
		assert_string_equal(c.finish_reason, "length");
		assert_int_equal(parse(k, &c, "{\"choices\":[{\"delta\":{},\"finish_reason\":\"weird\"}]}"), SL_OK);
		assert_string_equal(c.finish_reason, "weird");

		/* usage chunk */
		assert_int_equal(parse(k, &c, "{\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":34,\"total_tokens\":46}}"), SL_OK);
		assert_true(c.has_usage);
		assert_int_equal(c.prompt_tokens, 12);
		assert_int_equal(c.completion_tokens, 34);
		assert_null(c.content);
		/* usage: null, or bad values */
		assert_int_equal(parse(k, &c, "{\"choices\":[{\"delta\":{\"content\":\"x\"}}],\"usage\":null}"), SL_OK);
		assert_false(c.has_usage);
		assert_string_equal(c.content, "x");
		assert_int_equal(parse(k, &c, "{\"usage\":{\"prompt_tokens\":-1,\"completion_tokens\":4294967296}}"), SL_OK);
		assert_true(c.has_usage);
		assert_int_equal(c.prompt_tokens, 0);
		assert_int_equal(c.completion_tokens, 0);
		assert_int_equal(parse(k, &c, "{\"usage\":{\"prompt_tokens\":4294967295,\"completion_tokens\":1.0}}"), SL_OK);
		assert_int_equal(c.prompt_tokens, 4294967295u);
		assert_int_equal(c.completion_tokens, 0);

		/* completions stream */
		assert_int_equal(parse(k, &c, "{\"object\":\"text_completion\",\"choices\":[{\"text\":\" tok\",\"index\":0,\"finish_reason\":null}]}"), SL_OK);
		assert_string_equal(c.content, " tok");
		/* delta.content wins over text */
		assert_int_equal(parse(k, &c, "{\"choices\":[{\"text\":\"t\",\"delta\":{\"content\":\"d\"}}]}"), SL_OK);
		assert_string_equal(c.content, "d");
		assert_int_equal(parse(k, &c, "{\"choices\":[{\"text\":\"t\",\"delta\":{\"content\":null}}]}"), SL_OK);
		assert_string_equal(c.content, "t");
		/* NUL inside content is kept */
		assert_int_equal(parse(k, &c, "{\"choices\":[{\"delta\":{\"content\":\"a\\u0000b\"}}]}"), SL_OK);
		assert_int_equal(c.content_len, 3);
		assert_memory_equal(c.content, "a\0b", 3);
		/* only choices[0] */
		assert_int_equal(parse(k, &c, "{\"choices\":[{\"delta\":{}},{\"delta\":{\"content\":\"no\"}}]}"), SL_OK);
		assert_null(c.content);
		/* wrong types count as absent */
		assert_int_equal(parse(k, &c, "{\"choices\":{\"delta\":{\"content\":\"x\"}}}"), SL_OK);
		assert_null(c.content);
		assert_int_equal(parse(k, &c, "{\"choices\":[[{\"delta\":{\"content\":\"x\"}}]]}"), SL_OK);
		assert_null(c.content);
		assert_int_equal(parse(k, &c, "{\"choices\":[{\"delta\":{\"content\":5,\"role\":[]},\"finish_reason\":1}]}"), SL_OK);
		assert_null(c.content);
		assert_null(c.role);
		assert_null(c.finish_reason);
		assert_int_equal(parse(k, &c, "{\"choices\":[{\"delta\":\"x\"}],\"usage\":[1]}"), SL_OK);
		assert_false(c.has_usage);
		/* duplicate keys: the last one wins, whole subtrees included */
		assert_int_equal(parse(k, &c, "{\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"choices\":[{\"delta\":{\"role\":\"r\"}}]}"), SL_OK);
		assert_null(c.content);
		assert_string_equal(c.role, "r");
		assert_int_equal(parse(k, &c, "{\"choices\":[{\"delta\":{\"content\":\"a\",\"content\":\"b\"},\"delta\":{\"content\":\"c\"}}]}"), SL_OK);
		assert_string_equal(c.content, "c");
		assert_int_equal(parse(k, &c, "{\"usage\":{\"prompt_tokens\":3},\"usage\":{\"completion_tokens\":4}}"), SL_OK);
		assert_int_equal(c.prompt_tokens, 0);
		assert_int_equal(c.completion_tokens, 4);
		/* escaped keys are compared after unescaping */
		assert_int_equal(parse(k, &c, "{\"ch\\u006fices\":[{\"delta\":{\"cont\\u0065nt\":\"esc\\/key\"}}]}"), SL_OK);
		assert_string_equal(c.content, "esc/key");
		assert_int_equal(parse(k, &c, "{\"\\u0065rror\":{\"c\\u006fde\":\"x\"}}"), SL_OK);
		assert_true(c.is_error);
		assert_string_equal(c.error_code, "x");
		assert_int_equal(parse(k, &c, "{\"usage\":{\"prompt_tokens\":3},\"usage\":7}"), SL_OK);
		assert_false(c.has_usage);
		assert_int_equal(c.prompt_tokens, 0);
		sl_oai_chunk_free(&c);
	}
}

/* A whole chat.completion: content from message.content; delta.content
 * wins over it, and it over text; has_choice tells an empty choices. */
static void test_chunk_message(void **state)
{
	(void)state;
	for (size_t k = 0; k < NIMPL; k++) {
		sl_oai_chunk c;
		sl_oai_chunk_init(&c, 0);
		assert_int_equal(parse(k, &c,
			"{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion\",\"created\":1700000000,"
			"\"model\":\"m\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
			"\"content\":\"Hello! \\u00e9\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
			"\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":11,\"total_tokens\":23}}"), SL_OK);
		assert_true(c.has_choice);
		assert_string_equal(c.content, "Hello! \xc3\xa9");
		assert_null(c.role); /* only delta.role is reported */
		assert_string_equal(c.finish_reason, "stop");
		assert_true(c.has_usage);
		assert_int_equal(c.completion_tokens, 11);
		assert_int_equal(parse(k, &c, "{\"choices\":[{\"message\":{\"content\":\"m\"},\"text\":\"t\","
		                              "\"delta\":{\"content\":\"d\"}}]}"), SL_OK);
		assert_string_equal(c.content, "d");
		assert_int_equal(parse(k, &c, "{\"choices\":[{\"message\":{\"content\":\"m\"},\"text\":\"t\"}]}"), SL_OK);
		assert_string_equal(c.content, "m");
		assert_int_equal(parse(k, &c, "{\"choices\":[{\"message\":{\"content\":null},\"text\":\"t\"}]}"), SL_OK);
		assert_string_equal(c.content, "t");
		/* a later duplicate message replaces the earlier one */
		assert_int_equal(parse(k, &c, "{\"choices\":[{\"message\":{\"content\":\"a\"},\"message\":{}}]}"), SL_OK);
		assert_null(c.content);
		assert_true(c.has_choice);
		assert_int_equal(parse(k, &c, "{\"choices\":[]}"), SL_OK);
		assert_false(c.has_choice);
		assert_int_equal(parse(k, &c, "{\"choices\":[1,{}]}"), SL_OK);
		assert_false(c.has_choice);
		assert_int_equal(parse(k, &c, "{\"choices\":[{}],\"choices\":5}"), SL_OK);
		assert_false(c.has_choice);
		sl_oai_chunk_free(&c);
	}
}

static void test_chunk_errors_and_done(void **state)
{
	(void)state;
	for (size_t k = 0; k < NIMPL; k++) {
		sl_oai_chunk c;
		sl_oai_chunk_init(&c, 0);
		assert_int_equal(parse(k, &c, "[DONE]"), SL_OK);
		assert_true(c.done);
		assert_null(c.content);
		assert_int_equal(parse(k, &c, "[DONE] "), SL_EINVAL);
		assert_false(c.done);
		assert_int_equal(parse(k, &c, "{\"error\":{\"message\":\"Rate limit\",\"type\":\"rate_limit_error\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}"), SL_OK);
		assert_true(c.is_error);
		assert_string_equal(c.error_message, "Rate limit");
		assert_string_equal(c.error_type, "rate_limit_error");
		assert_string_equal(c.error_code, "rate_limit_exceeded");
		assert_null(c.error_param);
		/* vLLM sends integer codes */
		assert_int_equal(parse(k, &c, "{\"error\":{\"object\":\"error\",\"message\":\"bad\",\"type\":\"BadRequestError\",\"param\":\"p\",\"code\":400}}"), SL_OK);
		assert_true(c.is_error);
		assert_string_equal(c.error_code, "400");
		assert_string_equal(c.error_param, "p");
		assert_int_equal(parse(k, &c, "{\"error\":{\"code\":-9223372036854775808}}"), SL_OK);
		assert_string_equal(c.error_code, "-9223372036854775808");
		assert_null(c.error_message);
		assert_int_equal(parse(k, &c, "{\"error\":\"plain text\"}"), SL_OK);
		assert_true(c.is_error);
		assert_string_equal(c.error_message, "plain text");
		assert_int_equal(parse(k, &c, "{\"error\":null,\"choices\":[]}"), SL_OK);
		assert_false(c.is_error);
		assert_int_equal(parse(k, &c, "{\"error\":5}"), SL_OK);
		assert_true(c.is_error);
		assert_null(c.error_message);
		assert_int_equal(parse(k, &c, "{\"error\":{\"code\":4.5}}"), SL_OK);
		assert_null(c.error_code);

		/* not JSON objects */
		static const char *bad[] = {
			"", " ", "null", "[]", "\"x\"", "42", "{", "{\"a\":}", "{\"a\":1,}", "{\"a\" 1}",
			"{}x", "{} {}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":-}", "{\"a\":1e}",
			"{\"a\":tru}", "{\"a\":True}", "{\"a\":nul}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12\"}",
			"{\"a\":\"\\ud800\"}", "{\"a\":\"\\udc00\"}", "{\"a\":\"\\ud800\\u0041\"}",
			"{\"a\":\"\t\"}", "{\"a\":\"\n\"}", "{\"a\":\"\xff\"}", "{\"a\":\"\xc0\xaf\"}",
			"{\"a\":\"\xed\xa0\x80\"}", "{\"\\u0000\":1}", "{\"a\":1e400}", "{\"a\":-1e400}",
			"{\"a\":9223372036854775808}", "{\"a\":-9223372036854775809}", "{a:1}",
			"{\"a\":[1,]}", "{\"a\":[,1]}", "{\"a\":[1 2]}", "{'a':1}", "\xef\xbb\xbf{}",
			"{\"choices\":[{\"delta\":{\"content\":\"x\xff\"}}]}",
		};
		for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
			int rc = parse(k, &c, bad[i]);
			if (rc != SL_EINVAL)
				fail_msg("impl %zu accepted %s (rc %d)", k, bad[i], rc);
			assert_null(c.content);
			assert_false(c.is_error);
		}
		/* accepted edge cases */
		static const char *good[] = {
			"{}", " \t\r\n{ } \n", "{\"a\":[]}", "{\"a\":{}}", "{\"a\":-0}", "{\"a\":0.0e+0}",
			"{\"a\":1E-400}", "{\"a\":-9223372036854775808}", "{\"a\":9223372036854775807}",
			"{\"a\":\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"}", "{\"a\":\"\\uD83D\\uDE00\"}",
			"{\"a\":[true,false,null,1,-2.5e3,\"s\",{\"b\":[[]]}]}", "{\"a\":\"\\u0000\"}",
			"{\"\xe2\x82\xac\":\"\xf4\x8f\xbf\xbf\"}", "{\"a\":1.7976931348623157e308}",
		};
		for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
			int rc = parse(k, &c, good[i]);
			if (rc != SL_OK)
				fail_msg("impl %zu rejected %s (rc %d)", k, good[i], rc);
		}
		/* NUL bytes in the data */
		assert_int_equal(impls[k]("{}\0", 3, &c), SL_EINVAL);
		assert_int_equal(impls[k]("{\"a\":\"\0\"}", 9, &c), SL_EINVAL);
		assert_int_equal(impls[k]("\0{}", 3, &c), SL_EINVAL);
		assert_int_equal(impls[k]("{\"a\":\0 1}", 9, &c), SL_EINVAL);
		/* jansson quirk, reproduced: ONE NUL right after a number or a
		 * literal is skipped (load.c ungets it and then reads past it) */
		assert_int_equal(impls[k]("{\"a\":1\0}", 8, &c), SL_OK);
		assert_int_equal(impls[k]("{\"a\":-2.5e3\0,\"b\":true\0}", 23, &c), SL_OK);
		assert_int_equal(impls[k]("{\"a\":[null\0]}", 13, &c), SL_OK);
		assert_int_equal(impls[k]("{\"a\":1\0\0}", 9, &c), SL_EINVAL);
		assert_int_equal(impls[k]("{\"a\":1 \0}", 9, &c), SL_EINVAL);
		assert_int_equal(impls[k]("{\"a\":\"x\"\0}", 10, &c), SL_EINVAL);
		/* letters glued to literals or numbers */
		assert_int_equal(parse(k, &c, "{\"a\":truex}"), SL_EINVAL);
		assert_int_equal(parse(k, &c, "{\"a\":1x}"), SL_EINVAL);
		assert_int_equal(parse(k, &c, "{\"a\":true1}"), SL_EINVAL);
		/* long reals go through strtod */
		char longreal[1200];
		memcpy(longreal, "{\"a\":", 5);
		memset(longreal + 5, '9', 400);
		memcpy(longreal + 405, ".5}", 4);
		assert_int_equal(parse(k, &c, longreal), SL_EINVAL); /* 1e400 */
		memset(longreal + 5, '0', 1);
		memset(longreal + 6, '0', 399);
		longreal[6] = '.';
		memcpy(longreal + 405, "1e-3}", 6);
		assert_int_equal(parse(k, &c, longreal), SL_OK); /* 0.000..1e-3 */
		sl_oai_chunk_free(&c);
	}
}

static void test_chunk_depth(void **state)
{
	(void)state;
	/* jansson counts every value, scalars included, up to 2048 */
	char *s = malloc(10000);
	for (size_t k = 0; k < NIMPL; k++) {
		sl_oai_chunk c;
		sl_oai_chunk_init(&c, 0);
		for (size_t d = 2040; d <= 2050; d++) {
			for (int scalar = 0; scalar < 2; scalar++) {
				size_t n = 0;
				s[n++] = '{';
				s[n++] = '"';
				s[n++] = 'a';
				s[n++] = '"';
				s[n++] = ':';
				for (size_t i = 1; i < d; i++)
					s[n++] = '[';
				if (scalar)
					s[n++] = '1';
				for (size_t i = 1; i < d; i++)
					s[n++] = ']';
				s[n++] = '}';
				/* depth of the innermost value: d (+1 with scalar) */
				int want = (d + (size_t)scalar <= 2048) ? SL_OK : SL_EINVAL;
				int rc = impls[k](s, n, &c);
				if (rc != want)
					fail_msg("impl %zu depth %zu scalar %d: rc %d want %d", k, d, scalar, rc, want);
			}
		}
		sl_oai_chunk_free(&c);
	}
	free(s);
}

static void test_chunk_bound(void **state)
{
	(void)state;
	for (size_t k = 0; k < NIMPL; k++) {
		sl_oai_chunk c;
		sl_oai_chunk_init(&c, 8); /* content + NUL must fit */
		assert_int_equal(parse(k, &c, "{\"choices\":[{\"delta\":{\"content\":\"1234567\"}}]}"), SL_OK);
		assert_string_equal(c.content, "1234567");
		assert_int_equal(parse(k, &c, "{\"choices\":[{\"delta\":{\"content\":\"12345678\"}}]}"), SL_ETOOBIG);
		assert_null(c.content);
		assert_int_equal(parse(k, &c, "{\"choices\":[{\"delta\":{\"content\":\"123\",\"role\":\"assistant\"}}]}"), SL_ETOOBIG);
		sl_oai_chunk_free(&c);
		sl_oai_chunk_free(NULL);
	}
}

/* SSE + chunk extraction end to end, as the OpenAI worker uses them. */
typedef struct acc {
	sl_oai_chunk c;
	sl_dynbuf text;
	int done;
	uint32_t ct;
} acc;

static int acc_event(void *arg, const char *ev, size_t evl, const char *data, size_t dl)
{
	(void)ev;
	(void)evl;
	acc *a = arg;
	int rc = sl_oai_chunk_parse(data, dl, &a->c);
	if (rc)
		return rc;
	if (a->c.done) {
		a->done = 1;
		return 1;
	}
	if (a->c.content)
		sl_dynbuf_add(&a->text, a->c.content, a->c.content_len);
	if (a->c.has_usage)
		a->ct = a->c.completion_tokens;
	return 0;
}

static void test_end_to_end(void **state)
{
	(void)state;
	const char *stream =
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n"
		": keep-alive\n\n"
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\r\n\r\n"
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo \\u00e9\"}}]}\n\n"
		"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
		"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n"
		"data: [DONE]\n\n";
	for (size_t step = 1; step < 40; step += 3) {
		acc a;
		sl_oai_chunk_init(&a.c, 0);
		sl_dynbuf_init(&a.text, 1024);
		a.done = 0;
		a.ct = 0;
		sl_sse *p;
		assert_int_equal(sl_sse_create(4096, acc_event, &a, &p), SL_OK);
		size_t len = strlen(stream), off = 0;
		int rc = SL_OK;
		while (off < len && rc == SL_OK) {
			size_t n = len - off < step ? len - off : step;
			rc = sl_sse_feed(p, stream + off, n);
			off += n;
		}
		assert_int_equal(rc, 1);
		assert_true(a.done);
		assert_string_equal(a.text.p, "Hello \xc3\xa9");
		assert_int_equal(a.ct, 2);
		sl_sse_destroy(p);
		sl_oai_chunk_free(&a.c);
		sl_dynbuf_free(&a.text);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_comments),
		cmocka_unit_test(test_line_endings),
		cmocka_unit_test(test_bom),
		cmocka_unit_test(test_id_retry),
		cmocka_unit_test(test_split_everywhere),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_callback_stop),
		cmocka_unit_test(test_finish),
		cmocka_unit_test(test_create_args),
		cmocka_unit_test(test_many_cr_lines),
		cmocka_unit_test(test_chunk_content),
		cmocka_unit_test(test_chunk_message),
		cmocka_unit_test(test_chunk_errors_and_done),
		cmocka_unit_test(test_chunk_depth),
		cmocka_unit_test(test_chunk_bound),
		cmocka_unit_test(test_end_to_end),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
