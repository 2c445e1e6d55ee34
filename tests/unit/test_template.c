/* test_template.c - prompt templates (assemble/template.h): rendering,
 * escaping, validation errors with exact positions, the shipped examples,
 * and request variables from JSON (assemble/request.h). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "assemble/request.h"
#include "assemble/template.h"
#include "core/utf8.h"

static const sl_kv base_vars[] = {
	{"query", "What is X?"},
	{"user", "alice"},
	{"model", "m1"},
	{"messages", ""},
	{"metadata.tier", "gold"},
};

static const sl_tdoc base_docs[] = {
	{"d1", "first text", (size_t)-1, 0.91},
	{"d2", "second text", (size_t)-1, 0.5},
	{"d3", "", (size_t)-1, NAN},
};

/* Compiles src (must succeed) and renders it with vars; returns a static
 * copy of the output. */
static const char *render_with(const char *src, const sl_tvars *v)
{
	static char res[4096];
	char err[256];
	sl_template *t = NULL;
	int rc = sl_template_compile(src, strlen(src), "t", NULL, &t, err, sizeof err);
	if (rc != SL_OK)
		fail_msg("compile failed: %s", err);
	sl_dynbuf b;
	sl_dynbuf_init(&b, 1 << 20);
	rc = sl_template_render(t, v, &b, err, sizeof err);
	assert_int_equal(rc, SL_OK);
	assert_true(sl_utf8_valid(b.p ? b.p : "", b.len));
	snprintf(res, sizeof res, "%s", sl_dynbuf_str(&b));
	sl_dynbuf_free(&b);
	sl_template_free(t);
	return res;
}

static const char *render(const char *src, size_t n_docs)
{
	sl_tvars v = {base_vars, sizeof base_vars / sizeof base_vars[0], base_docs, n_docs};
	return render_with(src, &v);
}

/* Compiles src, which must fail; returns the message. */
static const char *compile_err(const char *src, const char *const *known)
{
	static char err[256];
	sl_template *t = NULL;
	int rc = sl_template_compile(src, strlen(src), "t.tmpl", known, &t, err, sizeof err);
	assert_int_equal(rc, SL_EINVAL);
	assert_null(t);
	return err;
}

static void test_variables(void **state)
{
	(void)state;
	assert_string_equal(render("Hello {{user}}, {{ query }}!", 0), "Hello alice, What is X?!");
	assert_string_equal(render("[{{metadata.tier}}][{{metadata.none}}][{{model}}]", 0),
	                    "[gold][][m1]");
	/* known but absent in vars: empty */
	sl_tvars empty = {0};
	assert_string_equal(render_with("<{{user}}>", &empty), "<>");
	assert_string_equal(render_with("<{{user}}>", NULL), "<>");
	assert_string_equal(render("no tags at all", 0), "no tags at all");
	assert_string_equal(render("", 0), "");
	/* a lone brace is text */
	assert_string_equal(render("a { b } c }}", 0), "a { b } c }}");
}

static void test_loops(void **state)
{
	(void)state;
	assert_string_equal(render("{{#docs}}[{{rank}} {{id}} {{score}}] {{text}}\n{{/docs}}", 3),
	                    "[1 d1 0.91] first text\n[2 d2 0.5] second text\n[3 d3 ] \n");
	/* outer variables and conditionals on loop fields inside the loop */
	assert_string_equal(
	    render("{{#docs}}{{user}}:{{id}}{{#if text}}={{text}}{{else}}(empty){{/if}}"
	           "{{#if score}}!{{/if}};{{/docs}}", 3),
	    "alice:d1=first text!;alice:d2=second text!;alice:d3(empty);");
	assert_string_equal(render("{{#docs}}x{{/docs}}", 0), "");
	/* a loop field name outside a loop refers to nothing known */
	assert_string_equal(render("{{#docs}}{{^text}}no text in {{id}}{{/text}}{{/docs}}", 3),
	                    "no text in d3");
}

static void test_conditionals(void **state)
{
	(void)state;
	const char *src = "{{#if docs}}have {{#docs}}{{id}}{{/docs}}{{else}}none{{/if}}"
	                  "{{^docs}}; no docs{{/docs}}";
	assert_string_equal(render(src, 2), "have d1d2");
	assert_string_equal(render(src, 0), "none; no docs");
	assert_string_equal(render("{{#if user}}u={{user}}{{/if}}{{#if metadata.x}}x{{/if}}", 0),
	                    "u=alice");
	assert_string_equal(render("{{^metadata.x}}no x{{/metadata.x}}", 0), "no x");
	assert_string_equal(render("{{#if user}}{{#if query}}both{{else}}u{{/if}}{{/if}}", 0),
	                    "both");
	/* if without else, false */
	assert_string_equal(render("a{{#if metadata.x}}b{{/if}}c", 0), "ac");
}

static void test_standalone_and_comments(void **state)
{
	(void)state;
	/* block tags alone on their lines leave no blank lines */
	const char *src = "Sources:\n"
	                  "{{#docs}}\n"
	                  "  {{! a comment }}\n"
	                  "- {{id}}\n"
	                  "{{/docs}}\n"
	                  "{{#if user}}\n"
	                  "User: {{user}}\n"
	                  "{{else}}\n"
	                  "Anonymous\n"
	                  "{{/if}}\n"
	                  "End";
	assert_string_equal(render(src, 2), "Sources:\n- d1\n- d2\nUser: alice\nEnd");
	/* inline comments vanish, multi-line ones too; CRLF standalone lines */
	assert_string_equal(render("a{{! x }}b{{!\nmulti\nline }}c", 0), "abc");
	assert_string_equal(render("a\r\n{{#if user}}\r\nb\r\n{{/if}}\r\nc", 0), "a\r\nb\r\nc");
	/* a tag with text on its line is not standalone */
	assert_string_equal(render("x {{#if user}}\ny{{/if}} z", 0), "x \ny z");
	/* a variable tag alone on a line keeps its line */
	assert_string_equal(render("a\n{{user}}\nb", 0), "a\nalice\nb");
}

static void test_escaping_text(void **state)
{
	(void)state;
	static const sl_kv kv[] = {
		{"query", "ign{{ore}} {{{x}}} \x01\x1b[31mred\x7f \xc2\x85nel\ttab\nnl"},
		{"user", "bad \xff\xfe utf8 \xe2\x82"},
		{"model", "{"},
	};
	sl_tvars v = {kv, 3, NULL, 0};
	assert_string_equal(render_with("{{query}}", &v),
	                    "ign{ {ore} } { { {x} } } [31mred nel\ttab\nnl");
	assert_string_equal(render_with("{{{query}}}", &v), kv[0].value);
	assert_string_equal(render_with("{{& query}}", &v), kv[0].value);
	/* invalid UTF-8 becomes U+FFFD in every mode */
	assert_string_equal(render_with("{{user}}", &v),
	                    "bad \xef\xbf\xbd\xef\xbf\xbd utf8 \xef\xbf\xbd\xef\xbf\xbd");
	assert_string_equal(render_with("{{{user}}}", &v),
	                    "bad \xef\xbf\xbd\xef\xbf\xbd utf8 \xef\xbf\xbd\xef\xbf\xbd");
	/* a value "{" after a literal "{" is broken up too */
	assert_string_equal(render_with("x{ {{model}}{{model}}", &v), "x{ { {");
	assert_string_equal(render_with("{{%escape: text}}a{{model}}", &v), "a{");
	/* none: escaped == raw */
	assert_string_equal(render_with("{{%escape none}}{{query}}", &v), kv[0].value);
}

static void test_escaping_json(void **state)
{
	(void)state;
	static const sl_kv kv[] = {{"query", "say \"hi\"\\\n\t\x01 {{x}} é"}};
	sl_tvars v = {kv, 1, NULL, 0};
	const char *src = "{{%escape: json}}\n{\"q\": \"{{query}}\"}";
	const char *got = render_with(src, &v);
	assert_string_equal(got, "{\"q\": \"say \\\"hi\\\"\\\\\\n\\t\\u0001 {{x}} é\"}");
	/* and raw stays raw */
	assert_string_equal(render_with("{{%escape: json}}{{{query}}}", &v), kv[0].value);
	sl_template *t = NULL;
	assert_int_equal(sl_template_compile(src, strlen(src), NULL, NULL, &t, NULL, 0), SL_OK);
	assert_int_equal(sl_template_escape(t), SL_TESC_JSON);
	assert_string_equal(sl_template_name(t), "template");
	sl_template_free(t);
}

static void test_errors(void **state)
{
	(void)state;
	assert_string_equal(compile_err("Hi\n  {{qeury}}\n", NULL),
	                    "t.tmpl:2:3: unknown variable 'qeury'");
	/* columns count code points: "é" is one column */
	assert_string_equal(compile_err("é {{nope}}", NULL), "t.tmpl:1:3: unknown variable 'nope'");
	assert_string_equal(compile_err("a\nb {{text}}", NULL),
	                    "t.tmpl:2:3: unknown variable 'text' ('text' is defined only "
	                    "inside {{#docs}})");
	assert_string_equal(compile_err("line1\nline2 {{#docs}}\nx\n", NULL),
	                    "t.tmpl:2:7: '{{#docs}}' is never closed");
	assert_string_equal(compile_err("{{#if user}}\n{{#docs}}{{/if}}", NULL),
	                    "t.tmpl:2:10: '{{/if}}' closes '{{#docs}}' opened at 2:1");
	assert_string_equal(compile_err("a\n\n  {{/docs}}", NULL),
	                    "t.tmpl:3:3: '{{/docs}}' closes nothing");
	assert_string_equal(compile_err("x\n{{#if user}}a{{else}}b{{else}}c{{/if}}", NULL),
	                    "t.tmpl:2:23: a second {{else}} in one {{#if}}");
	assert_string_equal(compile_err("{{else}}", NULL), "t.tmpl:1:1: {{else}} outside {{#if}}");
	assert_string_equal(compile_err("ok\nthen {{user", NULL),
	                    "t.tmpl:2:6: unterminated tag: '{{' without '}}'");
	assert_string_equal(compile_err("{{user} and {{query}}", NULL),
	                    "t.tmpl:1:1: unterminated tag: '{{' without '}}' before the next '{{'");
	assert_string_equal(compile_err("a {{{user}}", NULL),
	                    "t.tmpl:1:3: unterminated tag: '{{{' without '}}}'");
	assert_string_equal(compile_err("{{! never closed", NULL),
	                    "t.tmpl:1:1: unterminated tag: '{{' without '}}'");
	assert_string_equal(compile_err("{{#docs}}{{#docs}}{{/docs}}{{/docs}}", NULL),
	                    "t.tmpl:1:10: {{#docs}} inside {{#docs}}");
	assert_string_equal(compile_err("{{#query}}x{{/query}}", NULL),
	                    "t.tmpl:1:1: '{{#query}}': only docs can be looped over; use {{#if query}}");
	assert_string_equal(compile_err("{{docs}}", NULL),
	                    "t.tmpl:1:1: 'docs' is a list: use {{#docs}}...{{/docs}}");
	assert_string_equal(compile_err("{{}}", NULL), "t.tmpl:1:1: empty tag");
	assert_string_equal(compile_err("{{#if}}{{/if}}", NULL), "t.tmpl:1:1: {{#if}} needs a variable");
	assert_string_equal(compile_err("{{a b}}", NULL), "t.tmpl:1:1: invalid variable name 'a b'");
	assert_string_equal(compile_err("{{%escape: html}}", NULL),
	                    "t.tmpl:1:1: escape must be text, json or none, not 'html'");
	assert_string_equal(compile_err("{{%strict}}", NULL),
	                    "t.tmpl:1:1: unknown pragma 'strict' (known: escape)");
	assert_string_equal(compile_err("{{%escape json}}{{%escape text}}", NULL),
	                    "t.tmpl:1:17: a second, different escape pragma");
	assert_string_equal(compile_err("ab\nc\xff", NULL), "t.tmpl:2:2: invalid UTF-8");
}

static void test_errors_more(void **state)
{
	(void)state;
	char err[128];
	sl_template *t = NULL;
	/* a NUL byte */
	assert_int_equal(sl_template_compile("a\nb\0c", 5, "n", NULL, &t, err, sizeof err), SL_EINVAL);
	assert_string_equal(err, "n:2:2: NUL byte in template");
	/* a restricted variable set */
	static const char *const known[] = {"query", "docs", NULL};
	assert_string_equal(compile_err("{{query}} {{user}}", known),
	                    "t.tmpl:1:11: unknown variable 'user'");
	static const char *const wild[] = {"query", "meta.*", NULL};
	assert_string_equal(compile_err("{{meta.a}}{{meta.}}", wild),
	                    "t.tmpl:1:11: unknown variable 'meta.'");
	assert_string_equal(compile_err("{{#docs}}{{/docs}}", wild),
	                    "t.tmpl:1:1: unknown variable 'docs'");
	/* nesting limit */
	char deep[2048] = "";
	for (int i = 0; i <= SL_TEMPLATE_MAX_DEPTH; i++)
		strcat(deep, "{{#if user}}");
	assert_string_equal(compile_err(deep, NULL), "t.tmpl:1:385: sections nested deeper than 32");
	/* small error buffers are still terminated; NULL err is fine */
	char small[8];
	assert_int_equal(sl_template_compile("{{x}}", 5, "name", NULL, &t, small, sizeof small),
	                 SL_EINVAL);
	assert_int_equal(strlen(small), 7);
	assert_int_equal(sl_template_compile("{{x}}", 5, "name", NULL, &t, NULL, 0), SL_EINVAL);
	/* too big */
	assert_int_equal(sl_template_compile("x", SL_TEMPLATE_MAX_SRC + 1, "n", NULL, &t, err,
	                                     sizeof err), SL_ETOOBIG);
	/* unreadable file */
	assert_int_equal(sl_template_load("/nonexistent/x.tmpl", NULL, &t, err, sizeof err),
	                 SL_ENOTFOUND);
	assert_string_equal(err, "/nonexistent/x.tmpl: No such file or directory");
	sl_template_free(NULL);
}

static void test_output_bound(void **state)
{
	(void)state;
	sl_template *t = NULL;
	const char *src = "{{#docs}}{{text}} {{/docs}}";
	assert_int_equal(sl_template_compile(src, strlen(src), "b", NULL, &t, NULL, 0), SL_OK);
	sl_tvars v = {NULL, 0, base_docs, 2};
	sl_dynbuf b;
	sl_dynbuf_init(&b, 12);
	char err[128];
	assert_int_equal(sl_template_render(t, &v, &b, err, sizeof err), SL_ETOOBIG);
	assert_true(b.len <= 12);
	assert_non_null(strstr(err, "output bound 12 bytes"));
	sl_dynbuf_free(&b);
	assert_int_equal(sl_template_uses(t, "docs"), 1);
	assert_int_equal(sl_template_uses(t, "query"), 0);
	sl_template_free(t);
}

static void test_examples_validate(void **state)
{
	(void)state;
	static const char *const files[] = {"rag.tmpl", "system.tmpl"};
	for (size_t i = 0; i < 2; i++) {
		char path[512], err[256];
		snprintf(path, sizeof path, "%s/templates/%s", SL_EXAMPLES_DIR, files[i]);
		sl_template *t = NULL;
		int rc = sl_template_load(path, NULL, &t, err, sizeof err);
		if (rc != SL_OK)
			fail_msg("%s: %s", path, err);
		sl_template_free(t);
	}
	/* rag.tmpl renders sources by id, the question last */
	char path[512], err[256];
	snprintf(path, sizeof path, "%s/templates/rag.tmpl", SL_EXAMPLES_DIR);
	sl_template *t = NULL;
	assert_int_equal(sl_template_load(path, NULL, &t, err, sizeof err), SL_OK);
	assert_true(sl_template_uses(t, "query"));
	assert_true(sl_template_uses(t, "docs"));
	sl_tvars v = {base_vars, sizeof base_vars / sizeof base_vars[0], base_docs, 2};
	sl_dynbuf b;
	sl_dynbuf_init(&b, 1 << 16);
	assert_int_equal(sl_template_render(t, &v, &b, NULL, 0), SL_OK);
	const char *s = sl_dynbuf_str(&b);
	assert_non_null(strstr(s, "Sources:\n[d1]\nfirst text\n\n[d2]\nsecond text\n\n"));
	assert_non_null(strstr(s, "Question: What is X?\nAnswer:\n"));
	assert_null(strstr(strstr(s, "Sources:") + 1, "Sources:")); /* once */
	assert_null(strstr(s, "{{"));
	assert_null(strstr(s, "No sources"));
	assert_null(strstr(s, "Conversation so far")); /* messages is empty */
	sl_dynbuf_reset(&b);
	v.n_docs = 0;
	assert_int_equal(sl_template_render(t, &v, &b, NULL, 0), SL_OK);
	assert_non_null(strstr(sl_dynbuf_str(&b), "No sources were found"));
	assert_null(strstr(sl_dynbuf_str(&b), "Sources:"));
	sl_dynbuf_free(&b);
	sl_template_free(t);
}

static void test_request_json(void **state)
{
	(void)state;
	const char *j =
	    "{\"model\":\"m\",\"user\":\"bob\",\"metadata\":{\"tier\":\"gold\",\"n\":3,\"ok\":true},"
	    "\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"q1\"},"
	    "{\"role\":\"assistant\",\"content\":\"a1\"},"
	    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"q2\"},{\"type\":\"image_url\"}]}],"
	    "\"docs\":[{\"id\":\"low\",\"text\":\"L\",\"score\":0.1},{\"id\":7,\"text\":\"H\",\"score\":0.9},"
	    "{\"id\":\"mid\",\"text\":\"M\",\"score\":0.5},{\"id\":\"mid2\",\"text\":\"M2\",\"score\":0.5}]}";
	sl_asm_request *r = NULL;
	char err[256];
	assert_int_equal(sl_asm_request_parse(j, strlen(j), &r, err, sizeof err), SL_OK);
	const sl_tvars *v = sl_asm_request_vars(r);
	assert_string_equal(
	    render_with("{{query}}|{{messages}}|{{user}}|{{model}}|{{metadata.tier}}"
	                "{{metadata.n}}{{metadata.ok}}|{{#docs}}{{rank}}{{id}}{{text}} {{/docs}}", v),
	    "q2|system: S\nuser: q1\nassistant: a1|bob|m|gold3true|17H 2midM 3mid2M2 4lowL ");
	sl_asm_request_free(r);
	/* no scores: given order */
	j = "{\"docs\":[{\"id\":\"b\",\"text\":\"1\"},{\"id\":\"a\",\"text\":\"2\",\"score\":9}]}";
	assert_int_equal(sl_asm_request_parse(j, strlen(j), &r, err, sizeof err), SL_OK);
	assert_string_equal(render_with("{{#docs}}{{id}}{{score}};{{/docs}}[{{query}}]",
	                                sl_asm_request_vars(r)), "b;a9;[]");
	sl_asm_request_free(r);
	/* errors */
	static const char *const bad[] = {
		"[1]", "{\"docs\":[{\"id\":\"x\"}]}", "{\"docs\":{}}", "{\"user\":5}",
		"{\"messages\":[{\"content\":\"x\"}]}", "{\"docs\":[{\"text\":\"t\",\"score\":\"hi\"}]}",
		"{", "{\"metadata\":[]}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		r = NULL;
		assert_int_equal(sl_asm_request_parse(bad[i], strlen(bad[i]), &r, err, sizeof err),
		                 SL_EINVAL);
		assert_null(r);
		assert_true(strncmp(err, "request: ", 9) == 0);
	}
	sl_asm_request_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_variables),
		cmocka_unit_test(test_loops),
		cmocka_unit_test(test_conditionals),
		cmocka_unit_test(test_standalone_and_comments),
		cmocka_unit_test(test_escaping_text),
		cmocka_unit_test(test_escaping_json),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_errors_more),
		cmocka_unit_test(test_output_bound),
		cmocka_unit_test(test_examples_validate),
		cmocka_unit_test(test_request_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
