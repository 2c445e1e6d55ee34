/* test_budget.c - the token counter and the budget fitter
 * (assemble/budget.h, assemble/assemble.h): what is dropped and cut, in
 * which order, never the query; UTF-8 safety of the cut; prompt and chat
 * output formats. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "assemble/assemble.h"
#include "core/utf8.h"

#define ELL SL_ASSEMBLE_ELLIPSIS

/* A deterministic counter: one token per byte. */
static size_t count_bytes(void *user, const char *s, size_t len)
{
	(void)s;
	if (user)
		(*(size_t *)user)++;
	return len;
}

static sl_template *compile(const char *src)
{
	sl_template *t = NULL;
	char err[256];
	if (sl_template_compile(src, strlen(src), "t", NULL, &t, err, sizeof err) != SL_OK)
		fail_msg("%s", err);
	return t;
}

static void test_approx(void **state)
{
	(void)state;
#define A(s) sl_tokens_approx(NULL, s, sizeof(s) - 1)
	assert_int_equal(A(""), 0);
	assert_int_equal(A("hello world"), 2);
	assert_int_equal(A("internationalization"), 3); /* 20 letters: ceil(20/8) */
	assert_int_equal(A("12345"), 2);
	assert_int_equal(A("a, b."), 4);                /* a , b . */
	assert_int_equal(A("a  b"), 3);                 /* a, a run of 2 blanks, b */
	assert_int_equal(A("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"), 3); /* 日本語: 1 each */
	assert_int_equal(A("\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82"), 3); /* привет */
	assert_int_equal(A("\xff"), 1);
	assert_int_equal(A("\xf0\x9f\x98\x80"), 1);    /* an emoji */
#undef A
	/* English prose: within 25% of the real count */
	const char *en = "The quick brown fox jumps over the lazy dog while the farmer "
	                 "watches from a distance, wondering whether the fence will hold.";
	size_t t = sl_tokens_approx(NULL, en, strlen(en));
	/* cl100k_base (gpt-tokenizer 4.0.0) counts 24 tokens for this sentence */
	assert_in_range(t, 24 * 3 / 4, 24 * 5 / 4);
}

/* Docs d1..d4 of 40 bytes each, in rank order. */
static const char *const texts[] = {
	"alpha one two three four five six seven",
	"beta one two three four five six seven!",
	"gamma one two three four five six seven",
	"delta one two three four five six seven",
};

static sl_tdoc docs4[4];
static const sl_kv qvars[] = {{"query", "Q?"}};

static void setup_docs(void)
{
	for (int i = 0; i < 4; i++) {
		static char ids[4][4];
		snprintf(ids[i], sizeof ids[i], "d%d", i + 1);
		docs4[i].id = ids[i];
		docs4[i].text = texts[i];
		docs4[i].text_len = (size_t)-1;
		docs4[i].score = 1.0 - i * 0.1;
	}
}

static int fit(const char *tmpl, size_t max, sl_dynbuf *out, sl_assemble_info *info,
               char *err, size_t errlen)
{
	sl_template *t = compile(tmpl);
	sl_assembly a = {.user = t};
	sl_tvars v = {qvars, 1, docs4, 4};
	sl_assemble_opts o = {.max_prompt_tokens = max, .count = count_bytes};
	int rc = sl_assemble_fit(&a, &v, &o, out, info, err, errlen);
	sl_template_free(t);
	return rc;
}

static void test_drop_then_truncate(void **state)
{
	(void)state;
	setup_docs();
	const char *tmpl = "{{#docs}}[{{id}}] {{text}}\n{{/docs}}{{query}}";
	/* each doc line is 5 + 39 + 1 bytes; the query 2 */
	sl_dynbuf out;
	sl_dynbuf_init(&out, 1 << 16);
	sl_assemble_info info;
	char err[256];

	/* everything fits */
	assert_int_equal(fit(tmpl, 1000, &out, &info, err, sizeof err), SL_OK);
	assert_int_equal(info.docs_used, 4);
	assert_int_equal(info.truncated, 0);
	assert_int_equal(info.tokens, out.len);
	assert_int_equal(info.tokens, 4 * 45 + 2);

	/* exact fit of all: still no cut */
	assert_int_equal(fit(tmpl, 182, &out, &info, err, sizeof err), SL_OK);
	assert_int_equal(info.docs_used, 4);

	/* two whole docs (90 bytes) + query (2) + 33 bytes of room, 24 of them
	 * for text after "[d3] " and before "…\n": d3 is cut, d4 dropped */
	assert_int_equal(fit(tmpl, 125, &out, &info, err, sizeof err), SL_OK);
	assert_int_equal(info.docs_used, 3);
	assert_int_equal(info.truncated, 1);
	assert_int_equal(info.cut_from, 39);
	assert_true(out.len <= 125);
	assert_string_equal(sl_dynbuf_str(&out),
	                    "[d1] alpha one two three four five six seven\n"
	                    "[d2] beta one two three four five six seven!\n"
	                    "[d3] gamma one two three four" ELL "\nQ?");
	assert_int_equal(info.cut_to, strlen("gamma one two three four"));
	assert_null(strstr(sl_dynbuf_str(&out), "d4"));

	/* room for d1 and only "[d2] " + "…\n": no word of d2 fits -> dropped */
	assert_int_equal(fit(tmpl, 45 + 2 + 9, &out, &info, err, sizeof err), SL_OK);
	assert_int_equal(info.docs_used, 1);
	assert_int_equal(info.truncated, 0);
	assert_string_equal(sl_dynbuf_str(&out), "[d1] alpha one two three four five six seven\nQ?");

	/* the first doc itself is cut when nothing else fits */
	assert_int_equal(fit(tmpl, 20, &out, &info, err, sizeof err), SL_OK);
	assert_int_equal(info.docs_used, 1);
	assert_int_equal(info.truncated, 1);
	assert_string_equal(sl_dynbuf_str(&out), "[d1] alpha one" ELL "\nQ?");

	/* the query alone does not fit: SL_ETOOBIG naming the counts */
	assert_int_equal(fit(tmpl, 1, &out, &info, err, sizeof err), SL_ETOOBIG);
	assert_string_equal(err, "prompt without documents needs 2 tokens (query: 2), over "
	                         "max_prompt_tokens 1");
	assert_int_equal(out.len, 0);
	assert_int_equal(info.docs_used, 0);
	sl_dynbuf_free(&out);
}

/* As the budget shrinks, documents go lowest rank first and the result
 * always fits; the query is always there whole. */
static void test_budget_sweep(void **state)
{
	(void)state;
	setup_docs();
	const char *tmpl = "Sources:\n{{#docs}}[{{id}}] {{text}}\n{{/docs}}Q: {{query}}";
	sl_dynbuf out;
	sl_dynbuf_init(&out, 1 << 16);
	sl_assemble_info info;
	char err[256];
	size_t prev_used = 4;
	for (size_t max = 250; max > 0; max--) {
		int rc = fit(tmpl, max, &out, &info, err, sizeof err);
		if (rc == SL_ETOOBIG) {
			assert_true(max < strlen("Sources:\nQ: Q?"));
			continue;
		}
		assert_int_equal(rc, SL_OK);
		assert_true(out.len <= max);
		assert_true(info.docs_used <= prev_used);
		prev_used = info.docs_used;
		const char *s = sl_dynbuf_str(&out);
		assert_non_null(strstr(s, "Q: Q?"));
		/* the documents present are exactly d1..d(used), in order */
		for (size_t i = 0; i < 4; i++) {
			char tag[8];
			snprintf(tag, sizeof tag, "[d%zu]", i + 1);
			if (i < info.docs_used)
				assert_non_null(strstr(s, tag));
			else
				assert_null(strstr(s, tag));
		}
		/* only the last one may be cut */
		for (size_t i = 0; i + 1 < info.docs_used; i++)
			assert_non_null(strstr(s, texts[i]));
		if (info.truncated)
			assert_null(strstr(s, texts[info.docs_used - 1]));
		assert_int_equal(strstr(s, ELL) != NULL, info.truncated);
	}
	sl_dynbuf_free(&out);
}

/* Never the user's message: a long query is kept whole and docs give way. */
static void test_never_truncate_query(void **state)
{
	(void)state;
	setup_docs();
	char q[301];
	memset(q, 'q', 300);
	q[300] = '\0';
	sl_kv kv[] = {{"query", q}};
	sl_template *t = compile("{{#docs}}{{text}}\n{{/docs}}{{query}}");
	sl_assembly a = {.user = t};
	sl_tvars v = {kv, 1, docs4, 4};
	sl_assemble_opts o = {.max_prompt_tokens = 320, .count = count_bytes};
	sl_dynbuf out;
	sl_dynbuf_init(&out, 1 << 16);
	sl_assemble_info info;
	char err[256];
	assert_int_equal(sl_assemble_fit(&a, &v, &o, &out, &info, err, sizeof err), SL_OK);
	assert_non_null(strstr(sl_dynbuf_str(&out), q));
	assert_int_equal(info.docs_used, 1);
	assert_int_equal(info.truncated, 1);
	o.max_prompt_tokens = 299;
	assert_int_equal(sl_assemble_fit(&a, &v, &o, &out, &info, err, sizeof err), SL_ETOOBIG);
	assert_string_equal(err, "prompt without documents needs 300 tokens (query: 300), "
	                         "over max_prompt_tokens 299");
	/* the default counter names its own counts */
	o.count = NULL;
	o.max_prompt_tokens = 10;
	assert_int_equal(sl_assemble_fit(&a, &v, &o, &out, &info, err, sizeof err), SL_ETOOBIG);
	assert_string_equal(err, "prompt without documents needs 38 tokens (query: 38), "
	                         "over max_prompt_tokens 10");
	sl_dynbuf_free(&out);
	sl_template_free(t);
}

/* Cutting text without blanks, or multi-byte text, never splits a code
 * point; the result is valid UTF-8 at every budget. */
static void test_truncate_utf8(void **state)
{
	(void)state;
	/* "é" x 30 (no blanks), then CJK with blanks, then 4-byte emoji */
	static char t1[128], t2[256], t3[256];
	for (int i = 0; i < 30; i++)
		memcpy(t1 + 2 * i, "\xc3\xa9", 2);
	strcpy(t2, "\xe6\x97\xa5\xe6\x9c\xac \xe8\xaa\x9e\xe3\x81\xae \xe6\x96\x87\xe6\x9b\xb8 "
	           "\xe3\x81\xa7\xe3\x81\x99\xe3\x80\x82");
	for (int i = 0; i < 20; i++)
		memcpy(t3 + 4 * i, "\xf0\x9f\x98\x80", 4);
	const char *tx[] = {t1, t2, t3};
	sl_template *t = compile("{{#docs}}<{{text}}>{{/docs}}{{query}}");
	sl_assembly a = {.user = t};
	sl_dynbuf out;
	sl_dynbuf_init(&out, 1 << 16);
	for (int k = 0; k < 3; k++) {
		sl_tdoc d = {"x", tx[k], (size_t)-1, 1.0};
		sl_tvars v = {qvars, 1, &d, 1};
		for (size_t max = 2; max < strlen(tx[k]) + 8; max++) {
			for (int cnt = 0; cnt < 2; cnt++) {
				sl_assemble_opts o = {.max_prompt_tokens = max,
				                      .count = cnt ? count_bytes : NULL};
				sl_assemble_info info;
				int rc = sl_assemble_fit(&a, &v, &o, &out, &info, NULL, 0);
				assert_int_equal(rc, SL_OK);
				assert_true(sl_utf8_valid(out.p, out.len));
				assert_true(info.tokens <= max);
				if (info.truncated) {
					assert_true(info.cut_to > 0 && info.cut_to < info.cut_from);
					/* the kept part is a prefix ending on a boundary */
					assert_int_equal(memcmp(out.p + 1, tx[k], info.cut_to), 0);
					assert_true(sl_utf8_valid(tx[k], info.cut_to));
					/* past the first blank, the cut is at a word end */
					if (k == 1 && info.cut_to >= 6)
						assert_true(tx[k][info.cut_to] == ' ');
				}
			}
		}
	}
	sl_dynbuf_free(&out);
	sl_template_free(t);
}

static void test_prompt_format(void **state)
{
	(void)state;
	sl_template *sys = compile("You help {{user}}.");
	sl_template *usr = compile("{{#docs}}[{{id}}]{{/docs}} {{query}}");
	sl_template *empty_sys = compile("{{#if metadata.x}}never{{/if}}");
	sl_fewshot ex[] = {{"u1", "a1"}, {"u2", "a\xff"}};
	sl_kv kv[] = {{"query", "Q"}, {"user", "bo"}};
	sl_tdoc d[] = {{"d1", "t", (size_t)-1, 1.0}};
	sl_tvars v = {kv, 2, d, 1};
	sl_dynbuf out;
	sl_dynbuf_init(&out, 1 << 16);
	sl_assemble_info info;

	sl_assembly a = {.system = sys, .user = usr, .examples = ex, .n_examples = 2};
	assert_int_equal(sl_assemble_fit(&a, &v, NULL, &out, &info, NULL, 0), SL_OK);
	assert_string_equal(sl_dynbuf_str(&out),
	                    "You help bo.\n\nUser: u1\nAssistant: a1\n\nUser: u2\nAssistant: "
	                    "a\xef\xbf\xbd\n\nUser: [d1] Q\nAssistant:");
	assert_int_equal(info.tokens, sl_tokens_approx(NULL, out.p, out.len));

	sl_assembly b = {.system = empty_sys, .user = usr};
	assert_int_equal(sl_assemble_fit(&b, &v, NULL, &out, &info, NULL, 0), SL_OK);
	assert_string_equal(sl_dynbuf_str(&out), "[d1] Q");

	sl_assembly c = {.system = NULL};
	assert_int_equal(sl_assemble_fit(&c, &v, NULL, &out, &info, NULL, 0), SL_EINVAL);
	sl_dynbuf_free(&out);
	sl_template_free(sys);
	sl_template_free(usr);
	sl_template_free(empty_sys);
}

static void test_chat_format(void **state)
{
	(void)state;
	setup_docs();
	sl_template *sys = compile("Cite ids. \"quoted\"\n");
	sl_template *usr = compile("{{#docs}}[{{id}}] {{text}}\n{{/docs}}{{query}}");
	sl_fewshot ex[] = {{"u1", "a1\n\"x\""}};
	sl_tvars v = {qvars, 1, docs4, 4};
	sl_assembly a = {.system = sys, .user = usr, .examples = ex, .n_examples = 1};
	sl_assemble_opts o = {.format = SL_ASM_CHAT, .count = count_bytes};
	sl_dynbuf out;
	sl_dynbuf_init(&out, 1 << 16);
	sl_assemble_info info;
	assert_int_equal(sl_assemble_fit(&a, &v, &o, &out, &info, NULL, 0), SL_OK);
	json_error_t je;
	json_t *j = json_loadb(out.p, out.len, 0, &je);
	assert_non_null(j);
	assert_int_equal(json_array_size(j), 4);
	static const char *const roles[] = {"system", "user", "assistant", "user"};
	size_t content_bytes = 0;
	for (size_t i = 0; i < 4; i++) {
		json_t *m = json_array_get(j, i);
		assert_int_equal(json_object_size(m), 2);
		assert_string_equal(json_string_value(json_object_get(m, "role")), roles[i]);
		content_bytes += json_string_length(json_object_get(m, "content"));
	}
	assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "content")),
	                    "Cite ids. \"quoted\"\n");
	assert_string_equal(json_string_value(json_object_get(json_array_get(j, 2), "content")),
	                    "a1\n\"x\"");
	const char *last = json_string_value(json_object_get(json_array_get(j, 3), "content"));
	assert_true(strncmp(last, "[d1] alpha", 10) == 0);
	assert_int_equal(info.tokens, content_bytes + 4 * SL_CHAT_TOKENS_PER_MESSAGE +
	                                  SL_CHAT_TOKENS_REPLY);
	json_decref(j);

	/* with a budget, the chat overhead counts and documents give way */
	size_t full = info.tokens;
	o.max_prompt_tokens = full - 50;
	assert_int_equal(sl_assemble_fit(&a, &v, &o, &out, &info, NULL, 0), SL_OK);
	assert_true(info.tokens <= full - 50);
	assert_int_equal(info.docs_used, 3);
	assert_int_equal(info.truncated, 1);
	j = json_loadb(out.p, out.len, 0, &je);
	assert_non_null(j);
	last = json_string_value(json_object_get(json_array_get(j, 3), "content"));
	assert_non_null(strstr(last, ELL "\nQ?"));
	json_decref(j);
	sl_dynbuf_free(&out);
	sl_template_free(sys);
	sl_template_free(usr);
}

/* The byte bound of the output buffer: an over-long candidate counts as
 * not fitting; without a token budget it is an error. */
static void test_byte_bound(void **state)
{
	(void)state;
	setup_docs();
	sl_template *usr = compile("{{#docs}}{{text}}\n{{/docs}}{{query}}");
	sl_assembly a = {.user = usr};
	sl_tvars v = {qvars, 1, docs4, 4};
	sl_dynbuf out;
	sl_dynbuf_init(&out, 100);
	char err[128];
	sl_assemble_opts o = {0};
	assert_int_equal(sl_assemble_fit(&a, &v, &o, &out, NULL, err, sizeof err), SL_ETOOBIG);
	assert_string_equal(err, "prompt over the output bound of 100 bytes");
	o.max_prompt_tokens = 1000;
	sl_assemble_info info;
	assert_int_equal(sl_assemble_fit(&a, &v, &o, &out, &info, err, sizeof err), SL_OK);
	assert_true(out.len <= 100);
	assert_int_equal(info.docs_used, 3);
	sl_dynbuf_free(&out);
	sl_template_free(usr);
}

/* The counter is called a logarithmic number of times, not once per doc. */
static void test_probe_count(void **state)
{
	(void)state;
	enum { N = 512 };
	static sl_tdoc many[N];
	static char ids[N][8];
	for (int i = 0; i < N; i++) {
		snprintf(ids[i], sizeof ids[i], "%d", i);
		many[i] = (sl_tdoc){ids[i], "some words of text here", (size_t)-1, 1.0};
	}
	sl_template *usr = compile("{{#docs}}{{text}}\n{{/docs}}{{query}}");
	sl_assembly a = {.user = usr};
	sl_tvars v = {qvars, 1, many, N};
	size_t calls = 0;
	sl_assemble_opts o = {.max_prompt_tokens = 1000, .count = count_bytes, .count_user = &calls};
	sl_dynbuf out;
	sl_dynbuf_init(&out, 1 << 20);
	sl_assemble_info info;
	assert_int_equal(sl_assemble_fit(&a, &v, &o, &out, &info, NULL, 0), SL_OK);
	assert_int_equal(info.docs_used, 42); /* 41 x 24 bytes + a cut one + "Q?" */
	assert_true(calls < 30);
	sl_dynbuf_free(&out);
	sl_template_free(usr);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_approx),
		cmocka_unit_test(test_drop_then_truncate),
		cmocka_unit_test(test_budget_sweep),
		cmocka_unit_test(test_never_truncate_query),
		cmocka_unit_test(test_truncate_utf8),
		cmocka_unit_test(test_prompt_format),
		cmocka_unit_test(test_chat_format),
		cmocka_unit_test(test_byte_bound),
		cmocka_unit_test(test_probe_count),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
