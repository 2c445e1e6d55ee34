/* test_histogram.c - log-linear buckets, quantiles, merging. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>
#include "core/histogram.h"

static void buckets_are_ordered_and_tight(void **st)
{
	uint64_t prev = 0;
	for (unsigned i = 1; i < SL_HIST_BUCKETS; i++) {
		uint64_t u = sl__hist_upper(i);
		assert_true(u > prev);
		prev = u;
	}
	/* every value lands in a bucket whose range holds it, width <= 1/16 */
	uint64_t vals[] = {0, 1, 15, 16, 17, 31, 32, 1000, 123456, 999999999ull,
	                   (1ull << 40) + 12345, UINT64_MAX};
	for (size_t k = 0; k < sizeof vals / sizeof vals[0]; k++) {
		unsigned i = sl__hist_index(vals[k]);
		assert_true(i < SL_HIST_BUCKETS);
		assert_true(vals[k] <= sl__hist_upper(i));
		if (i > 0)
			assert_true(vals[k] > sl__hist_upper(i - 1));
		if (vals[k] >= 16) {
			uint64_t lo = sl__hist_upper(i - 1) + 1;
			assert_true((double)(sl__hist_upper(i) - lo) <= (double)lo / 16.0);
		}
	}
}

static void quantiles(void **st)
{
	sl_histogram *h = calloc(1, sizeof *h);
	for (uint64_t v = 1; v <= 10000; v++)
		sl__hist_record(h, v * 1000);
	assert_int_equal(sl_histogram_count(h), 10000);
	double p50 = (double)sl_histogram_quantile(h, 0.5);
	double p99 = (double)sl_histogram_quantile(h, 0.99);
	assert_true(p50 >= 5000000.0 && p50 <= 5000000.0 * 1.0625);
	assert_true(p99 >= 9900000.0 && p99 <= 9900000.0 * 1.0625);
	assert_int_equal(sl_histogram_sum(h), 1000ull * 10000 * 10001 / 2);
	sl_histogram *e = calloc(1, sizeof *e);
	assert_int_equal(sl_histogram_quantile(e, 0.5), 0);
	free(e);
	free(h);
}

static void merge_adds(void **st)
{
	sl_histogram *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b),
	             *m = calloc(1, sizeof *m);
	for (int i = 0; i < 100; i++)
		sl__hist_record(a, 100);
	for (int i = 0; i < 300; i++)
		sl__hist_record(b, 100000);
	sl__hist_merge(m, a);
	sl__hist_merge(m, b);
	assert_int_equal(sl_histogram_count(m), 400);
	assert_true(sl_histogram_quantile(m, 0.2) <= 106);
	assert_true(sl_histogram_quantile(m, 0.5) >= 100000);
	free(a);
	free(b);
	free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(buckets_are_ordered_and_tight),
		cmocka_unit_test(quantiles),
		cmocka_unit_test(merge_adds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
