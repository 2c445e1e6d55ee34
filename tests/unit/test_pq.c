/* test_pq.c - the stage queue: priority order, FIFO within a level,
 * capacity, removal, shed victim. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "queue/pq.h"

static void order_and_capacity(void **st)
{
	sl_pq q;
	assert_int_equal(sl_pq_init(&q, 0), SL_EINVAL);
	assert_int_equal(sl_pq_init(&q, 6), SL_OK);
	assert_int_equal(sl_pq_push(&q, (void *)1, 0), SL_OK);
	assert_int_equal(sl_pq_push(&q, (void *)2, 3), SL_OK);
	assert_int_equal(sl_pq_push(&q, (void *)3, 1), SL_OK);
	assert_int_equal(sl_pq_push(&q, (void *)4, 3), SL_OK);
	assert_int_equal(sl_pq_push(&q, (void *)5, 0), SL_OK);
	assert_int_equal(sl_pq_push(&q, (void *)6, 1), SL_OK);
	assert_true(sl_pq_full(&q));
	assert_int_equal(sl_pq_push(&q, (void *)7, 3), SL_EAGAIN);
	assert_int_equal(sl_pq_push(&q, (void *)7, SL_PRIORITY_LEVELS), SL_EINVAL);
	uintptr_t want[] = {2, 4, 3, 6, 1, 5};
	for (int i = 0; i < 6; i++) {
		void *it;
		assert_int_equal(sl_pq_pop(&q, &it), SL_OK);
		assert_int_equal((uintptr_t)it, want[i]);
	}
	void *it;
	assert_int_equal(sl_pq_pop(&q, &it), SL_EEMPTY);
	sl_pq_fini(&q);
}

static void remove_and_victim(void **st)
{
	sl_pq q;
	sl_pq_init(&q, 8);
	for (uintptr_t i = 1; i <= 5; i++)
		sl_pq_push(&q, (void *)i, 1);
	sl_pq_push(&q, (void *)9, 2);
	assert_int_equal(sl_pq_remove(&q, (void *)3, 1), SL_OK);
	assert_int_equal(sl_pq_remove(&q, (void *)3, 1), SL_ENOTFOUND);
	assert_int_equal(sl_pq_remove(&q, (void *)9, 1), SL_ENOTFOUND);
	assert_int_equal(sl_pq_count(&q), 5);
	void *v;
	unsigned lvl;
	assert_int_equal(sl_pq_peek_victim(&q, &v, &lvl), SL_OK);
	assert_int_equal((uintptr_t)v, 5); /* lowest level, newest */
	assert_int_equal(lvl, 1);
	uintptr_t want[] = {9, 1, 2, 4, 5};
	for (int i = 0; i < 5; i++) {
		void *it;
		assert_int_equal(sl_pq_pop(&q, &it), SL_OK);
		assert_int_equal((uintptr_t)it, want[i]);
	}
	assert_int_equal(sl_pq_peek_victim(&q, &v, &lvl), SL_EEMPTY);
	sl_pq_fini(&q);
}

static void wraps(void **st)
{
	sl_pq q;
	sl_pq_init(&q, 3);
	for (uintptr_t i = 1; i < 100; i++) {
		assert_int_equal(sl_pq_push(&q, (void *)i, 2), SL_OK);
		if (i >= 2) {
			void *it;
			assert_int_equal(sl_pq_pop(&q, &it), SL_OK);
			assert_int_equal((uintptr_t)it, i - 1);
		}
	}
	sl_pq_fini(&q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(order_and_capacity),
		cmocka_unit_test(remove_and_victim),
		cmocka_unit_test(wraps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
