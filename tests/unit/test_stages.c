/* test_stages.c - the retrieval records between the rag and assemble
 * stages: one retriever's order kept, several fused by reciprocal rank. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>
#include "stages/real.h"

static size_t idlen(const sl_tdoc *d)
{
	return (size_t)(strchr(d->id, '\x1f') - d->id);
}

static void test_one_block(void **state)
{
	(void)state;
	const char ctx[] = "\x1d\x1e" "b\x1f" "2.5\x1f" "bee\x1e" "a\x1f" "1\x1f" "ay";
	sl_tdoc d[4];
	size_t n = sl_stage_docs_parse(ctx, sizeof ctx - 1, d, 4);
	assert_int_equal(n, 2);
	assert_int_equal(idlen(&d[0]), 1);
	assert_memory_equal(d[0].id, "b", 1);
	assert_int_equal(d[0].text_len, 3);
	assert_memory_equal(d[0].text, "bee", 3);
	assert_true(fabs(d[0].score - 2.5) < 1e-9);
	assert_memory_equal(d[1].id, "a", 1);
	assert_memory_equal(d[1].text, "ay", 2);
}

static void test_fusion(void **state)
{
	(void)state;
	/* retriever 1: x, y, z; retriever 2: z, w, x.  RRF (k=60):
	 * x = 1/61 + 1/63, z = 1/63 + 1/61, y = 1/62, w = 1/62; ties by best
	 * rank, then by block */
	const char ctx[] = "\x1d"
	                   "\x1e" "x\x1f" "9\x1f" "X"
	                   "\x1e" "y\x1f" "8\x1f" "Y"
	                   "\x1e" "z\x1f" "7\x1f" "Z"
	                   "\x1d"
	                   "\x1e" "z\x1f" "0.9\x1f" "Z"
	                   "\x1e" "w\x1f" "0.8\x1f" "W"
	                   "\x1e" "x\x1f" "0.7\x1f" "X";
	sl_tdoc d[8];
	size_t n = sl_stage_docs_parse(ctx, sizeof ctx - 1, d, 8);
	assert_int_equal(n, 4);
	char order[5] = {0};
	for (size_t i = 0; i < 4; i++)
		order[i] = d[i].id[0];
	assert_string_equal(order, "xzyw");
	assert_true(fabs(d[0].score - (1.0 / 61 + 1.0 / 63)) < 1e-12);
	assert_true(fabs(d[2].score - 1.0 / 62) < 1e-12);
	/* cap: fewer slots than documents */
	assert_int_equal(sl_stage_docs_parse(ctx, sizeof ctx - 1, d, 2), 4);
}

static void test_garbage(void **state)
{
	(void)state;
	sl_tdoc d[4];
	assert_int_equal(sl_stage_docs_parse("plain context", 13, d, 4), 0);
	assert_int_equal(sl_stage_docs_parse("\x1e" "no fields", 10, d, 4), 0);
	assert_int_equal(sl_stage_docs_parse("\x1d\x1d\x1d", 3, d, 4), 0);
	assert_int_equal(sl_stage_docs_parse("", 0, d, 4), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_block),
		cmocka_unit_test(test_fusion),
		cmocka_unit_test(test_garbage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
