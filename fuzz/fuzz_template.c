/* fuzz_template.c - libFuzzer harness for prompt templates
 * (src/assemble/: compile, render, the budget fitter).
 *
 * Input: byte 0 picks options (bits 0-1: number of documents 0..3; bit 2:
 * chat format; bit 3: a system template = the same source), byte 1 a token
 * budget (0 = none, else 8 * byte); the rest is the template source.
 * Whatever it holds, compile ends with SL_OK or SL_EINVAL (with a
 * "NAME:LINE:COL: " message); a compiled template renders within the output
 * bound (SL_OK or SL_ETOOBIG, never more bytes than the bound) to valid
 * UTF-8; the fitter's result fits its budget, is valid UTF-8 and, in chat
 * format, parses as a JSON array of messages. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "assemble/assemble.h"
#include "core/utf8.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)
#define OUT_MAX 65536

static const sl_kv vars[] = {
	{"query", "What is {{query}}? \"quoted\" \\ \x01\x7f \xc3\xa9 \xff"},
	{"messages", "user: hi\nassistant: {{{x}}}"},
	{"user", "u\r\n"},
	{"model", ""},
	{"metadata.tier", "gold"},
};

static const sl_tdoc docs[] = {
	{"d1", "alpha beta gamma delta epsilon zeta eta theta iota kappa", (size_t)-1, 0.9},
	{"d\"2", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe6\x96\x87\xe6\x9b\xb8 "
	         "\xf0\x9f\x98\x80\xf0\x9f\x98\x80 {{ }} \xc2\x85", (size_t)-1, NAN},
	{NULL, "", (size_t)-1, -1e300},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	unsigned flags = data[0];
	size_t budget = (size_t)data[1] * 8;
	const char *src = (const char *)data + 2;
	size_t len = size - 2;

	char err[256];
	sl_template *t = NULL;
	int rc = sl_template_compile(src, len, "fuzz", NULL, &t, err, sizeof err);
	CHECK(rc == SL_OK || rc == SL_EINVAL || rc == SL_ETOOBIG);
	if (rc != SL_OK) {
		CHECK(t == NULL);
		if (rc == SL_EINVAL) {
			unsigned line, col;
			CHECK(sscanf(err, "fuzz:%u:%u: ", &line, &col) == 2 && line >= 1 && col >= 1);
		}
		return 0;
	}
	sl_tvars v = {vars, sizeof vars / sizeof vars[0], docs, flags & 3};
	sl_dynbuf out;
	sl_dynbuf_init(&out, OUT_MAX);
	rc = sl_template_render(t, &v, &out, err, sizeof err);
	CHECK(rc == SL_OK || rc == SL_ETOOBIG);
	CHECK(out.len <= OUT_MAX);
	if (rc == SL_OK)
		CHECK(sl_utf8_valid(out.p, out.len));
	/* a small bound: partial output never overruns it */
	sl_dynbuf small;
	sl_dynbuf_init(&small, 64);
	rc = sl_template_render(t, &v, &small, NULL, 0);
	CHECK(rc == SL_OK || rc == SL_ETOOBIG);
	CHECK(small.len <= 64);
	sl_dynbuf_free(&small);

	static const sl_fewshot ex[] = {{"ex \xff user", "ex assistant"}};
	sl_assembly a = {.system = (flags & 8) ? t : NULL, .user = t, .examples = ex,
	                 .n_examples = (flags & 16) ? 1 : 0};
	sl_assemble_opts o = {.max_prompt_tokens = budget,
	                      .format = (flags & 4) ? SL_ASM_CHAT : SL_ASM_PROMPT};
	sl_assemble_info info;
	rc = sl_assemble_fit(&a, &v, &o, &out, &info, err, sizeof err);
	CHECK(rc == SL_OK || rc == SL_ETOOBIG);
	if (rc == SL_OK) {
		CHECK(sl_utf8_valid(out.p, out.len));
		CHECK(budget == 0 || info.tokens <= budget);
		CHECK(info.docs_used <= v.n_docs);
		if (o.format == SL_ASM_CHAT) {
			json_error_t je;
			json_t *j = json_loadb(out.p, out.len, 0, &je);
			CHECK(j && json_is_array(j) && json_array_size(j) >= 1);
			json_decref(j);
		}
	} else {
		CHECK(out.len == 0 && err[0]);
	}
	sl_dynbuf_free(&out);
	sl_template_free(t);
	return 0;
}
