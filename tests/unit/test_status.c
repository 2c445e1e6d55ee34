/* test_status.c - status codes, names and outcome names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>
#include "sluice/sluice.h"

static void every_code_has_distinct_text(void **st)
{
	for (int a = SL__STATUS_MIN; a <= 0; a++) {
		const char *ta = sl_strerror(a);
		assert_non_null(ta);
		assert_string_not_equal(ta, "unknown status");
		assert_string_not_equal(sl_status_name(a), "SL_E?");
		for (int b = a + 1; b <= 0; b++)
			assert_string_not_equal(ta, sl_strerror(b));
	}
}

static void unknown_codes(void **st)
{
	assert_string_equal(sl_strerror(12345), "unknown status");
	assert_string_equal(sl_strerror(SL__STATUS_MIN - 1), "unknown status");
	assert_string_equal(sl_status_name(SL_ESHED), "SL_ESHED");
}

static void outcome_names(void **st)
{
	assert_string_equal(sl_outcome_name(SL_OUTCOME_COMPLETED), "completed");
	assert_string_equal(sl_outcome_name(SL_OUTCOME_FAILED), "failed");
	assert_string_equal(sl_outcome_name(SL_OUTCOME_SHED), "shed");
	assert_string_equal(sl_outcome_name(SL_OUTCOME_CANCELLED), "cancelled");
	assert_string_equal(sl_outcome_name(SL_OUTCOME_EXPIRED), "expired");
	assert_string_equal(sl_outcome_name((sl_outcome)99), "unknown");
}

static void log_levels(void **st)
{
	sl_log_level l;
	assert_int_equal(sl_log_level_parse("debug", &l), SL_OK);
	assert_int_equal(l, SL_LOG_DEBUG);
	assert_int_equal(sl_log_level_parse("WARN", &l), SL_OK);
	assert_int_equal(l, SL_LOG_WARN);
	assert_int_equal(sl_log_level_parse("loud", &l), SL_EINVAL);
	assert_int_equal(sl_log_level_parse(NULL, &l), SL_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_code_has_distinct_text),
		cmocka_unit_test(unknown_codes),
		cmocka_unit_test(outcome_names),
		cmocka_unit_test(log_levels),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
