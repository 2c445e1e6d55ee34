/* test_pq.c - the stage queue: priority order, FIFO within a level,
 * capacity, removal, shed victim, aging (with injected times). */
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
	assert_int_equal(sl_pq_push(&q, (void *)1, 0, 0), SL_OK);
	assert_int_equal(sl_pq_push(&q, (void *)2, 3, 0), SL_OK);
	assert_int_equal(sl_pq_push(&q, (void *)3, 1, 0), SL_OK);
	assert_int_equal(sl_pq_push(&q, (void *)4, 3, 0), SL_OK);
	assert_int_equal(sl_pq_push(&q, (void *)5, 0, 0), SL_OK);
	assert_int_equal(sl_pq_push(&q, (void *)6, 1, 0), SL_OK);
	assert_true(sl_pq_full(&q));
	assert_int_equal(sl_pq_push(&q, (void *)7, 3, 0), SL_EAGAIN);
	assert_int_equal(sl_pq_push(&q, (void *)7, SL_PRIORITY_LEVELS, 0), SL_EINVAL);
	uintptr_t want[] = {2, 4, 3, 6, 1, 5};
	for (int i = 0; i < 6; i++) {
		void *it;
		assert_int_equal(sl_pq_pop(&q, &it, 0), SL_OK);
		assert_int_equal((uintptr_t)it, want[i]);
	}
	void *it;
	assert_int_equal(sl_pq_pop(&q, &it, 0), SL_EEMPTY);
	sl_pq_fini(&q);
}

static void remove_and_victim(void **st)
{
	sl_pq q;
	sl_pq_init(&q, 8);
	for (uintptr_t i = 1; i <= 5; i++)
		sl_pq_push(&q, (void *)i, 1, 0);
	sl_pq_push(&q, (void *)9, 2, 0);
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
		assert_int_equal(sl_pq_pop(&q, &it, 0), SL_OK);
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
		assert_int_equal(sl_pq_push(&q, (void *)i, 2, 0), SL_OK);
		if (i >= 2) {
			void *it;
			assert_int_equal(sl_pq_pop(&q, &it, 0), SL_OK);
			assert_int_equal((uintptr_t)it, i - 1);
		}
	}
	sl_pq_fini(&q);
}

/* Pops everything at `now`, checking the order. */
static void pop_all(sl_pq *q, uint64_t now, const uintptr_t *want, int n)
{
	for (int i = 0; i < n; i++) {
		void *it;
		assert_int_equal(sl_pq_pop(q, &it, now), SL_OK);
		assert_int_equal((uintptr_t)it, want[i]);
	}
	void *it;
	assert_int_equal(sl_pq_pop(q, &it, now), SL_EEMPTY);
}

static void aging_order(void **st)
{
	sl_pq q;
	sl_pq_init(&q, 16);
	sl_pq_set_aging(&q, 100);
	sl_pq_push(&q, (void *)1, 0, 0);   /* level 0, t=0 */
	sl_pq_push(&q, (void *)2, 3, 10);  /* level 3, t=10 */
	sl_pq_push(&q, (void *)3, 1, 20);  /* level 1, t=20 */
	sl_pq_push(&q, (void *)4, 3, 250); /* level 3, t=250 */
	/* at 260: #2 is 3; #3 waited 240 -> 1+2 = 3 but is newer than #2;
	 * once #2 is gone, #3 (3, t=20) beats #4 (3, t=250); #1 waited 260 ->
	 * 0+2 = 2, last */
	uintptr_t want[] = {2, 3, 4, 1};
	pop_all(&q, 260, want, 4);

	/* before a full step nothing moves: strict priority */
	sl_pq_push(&q, (void *)1, 0, 1000);
	sl_pq_push(&q, (void *)2, 1, 1001);
	sl_pq_push(&q, (void *)3, 2, 1002);
	uintptr_t strict[] = {3, 2, 1};
	pop_all(&q, 1099, strict, 3);

	/* one step: level 0 ties level 1 and, older, goes first */
	sl_pq_push(&q, (void *)1, 0, 2000);
	sl_pq_push(&q, (void *)2, 1, 2001);
	uintptr_t one[] = {1, 2};
	pop_all(&q, 2100, one, 2);

	/* aged to the top, capped: an old level-0 entry beats a newer level-3
	 * one, even after waiting "forever" (no overflow) */
	sl_pq_push(&q, (void *)1, 0, 0);
	sl_pq_push(&q, (void *)2, 3, 5);
	uintptr_t capped[] = {1, 2};
	pop_all(&q, UINT64_MAX, capped, 2);

	/* equal times: the higher level first */
	sl_pq_push(&q, (void *)1, 0, 7);
	sl_pq_push(&q, (void *)2, 3, 7);
	uintptr_t eq[] = {2, 1};
	pop_all(&q, 1000000, eq, 2);

	/* a clock behind the entries (never negative waits) */
	sl_pq_push(&q, (void *)1, 0, 500);
	sl_pq_push(&q, (void *)2, 2, 600);
	uintptr_t back[] = {2, 1};
	pop_all(&q, 0, back, 2);
	sl_pq_fini(&q);
}

static void aging_off_ignores_time(void **st)
{
	sl_pq q;
	sl_pq_init(&q, 8);
	sl_pq_push(&q, (void *)1, 0, 0);
	sl_pq_push(&q, (void *)2, 3, 1000000);
	sl_pq_push(&q, (void *)3, 1, 5);
	uintptr_t want[] = {2, 3, 1};
	pop_all(&q, UINT64_MAX, want, 3);
	sl_pq_fini(&q);
}

static void aging_fifo_within_level(void **st)
{
	sl_pq q;
	sl_pq_init(&q, 32);
	sl_pq_set_aging(&q, 10);
	/* level 1 entries at t = 0, 4, 8, ...; a level-2 entry at t = 30 */
	for (uintptr_t i = 1; i <= 10; i++)
		sl_pq_push(&q, (void *)i, 1, (i - 1) * 4);
	sl_pq_push(&q, (void *)99, 2, 30);
	/* at 40: level-1 entries that waited >= 20 (#1..#6) count 3, and so
	 * does #99 (level 2, waited 10): older first, so #1..#6 (t <= 20),
	 * then #99 (t=30), then #7, #8 (count 2) and #9, #10 (count 1) */
	uintptr_t want[] = {1, 2, 3, 4, 5, 6, 99, 7, 8, 9, 10};
	pop_all(&q, 40, want, 11);
	sl_pq_fini(&q);
}

static void aging_no_starvation(void **st)
{
	for (int aging = 0; aging <= 1; aging++) {
		sl_pq q;
		sl_pq_init(&q, 64);
		sl_pq_set_aging(&q, aging ? 10 : 0);
		/* a backlog of five high entries, then one low one, then a
		 * steady stream: one high in, one out per tick */
		for (uintptr_t i = 0; i < 5; i++)
			sl_pq_push(&q, (void *)(100 + i), 3, i);
		sl_pq_push(&q, (void *)1, 0, 5);
		int low_at = -1;
		for (uint64_t tick = 6; tick < 1000 && low_at < 0; tick++) {
			assert_int_equal(sl_pq_push(&q, (void *)(100 + tick), 3, tick), SL_OK);
			void *it;
			assert_int_equal(sl_pq_pop(&q, &it, tick), SL_OK);
			if ((uintptr_t)it == 1)
				low_at = (int)tick;
		}
		if (aging) /* three steps after its push, ahead of the newer highs */
			assert_int_equal(low_at, 35);
		else
			assert_int_equal(low_at, -1);
		sl_pq_fini(&q);
	}
}

static void victim_take_and_remove(void **st)
{
	sl_pq q;
	sl_pq_init(&q, 6);
	sl_pq_set_aging(&q, 10);
	void *v;
	unsigned lvl;
	assert_int_equal(sl_pq_take_victim(&q, &v, &lvl), SL_EEMPTY);
	/* wrap the level-0 ring first so removal shifts across the end */
	for (uintptr_t i = 0; i < 4; i++) {
		sl_pq_push(&q, (void *)(50 + i), 0, 0);
		void *it;
		sl_pq_pop(&q, &it, 0);
	}
	sl_pq_push(&q, (void *)1, 0, 100);
	sl_pq_push(&q, (void *)2, 0, 101);
	sl_pq_push(&q, (void *)3, 0, 102);
	sl_pq_push(&q, (void *)4, 2, 103);
	sl_pq_push(&q, (void *)5, 0, 104);
	sl_pq_push(&q, (void *)6, 1, 105);
	assert_true(sl_pq_full(&q));
	/* the newest of the lowest level, whatever its age */
	assert_int_equal(sl_pq_peek_victim(&q, &v, &lvl), SL_OK);
	assert_int_equal((uintptr_t)v, 5);
	assert_int_equal(lvl, 0);
	assert_int_equal(sl_pq_take_victim(&q, &v, &lvl), SL_OK);
	assert_int_equal((uintptr_t)v, 5);
	assert_int_equal(sl_pq_count(&q), 5);
	assert_int_equal(sl_pq_peek_victim(&q, &v, &lvl), SL_OK);
	assert_int_equal((uintptr_t)v, 3);
	/* removal (across the ring's end) keeps the other entries' times */
	assert_int_equal(sl_pq_remove(&q, (void *)2, 0), SL_OK);
	assert_int_equal(sl_pq_remove(&q, (void *)2, 0), SL_ENOTFOUND);
	assert_int_equal(sl_pq_push(&q, (void *)7, 0, 120), SL_OK);
	/* at 125: #4 (level 2, waited 22: 4, capped to 3) first; #6 (level 1,
	 * waited 20: 3) next, being newer than #4; then level 0 in order (#1
	 * waited 25: 2) */
	uintptr_t want[] = {4, 6, 1, 3, 7};
	pop_all(&q, 125, want, 5);
	sl_pq_fini(&q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(order_and_capacity),
		cmocka_unit_test(remove_and_victim),
		cmocka_unit_test(wraps),
		cmocka_unit_test(aging_order),
		cmocka_unit_test(aging_off_ignores_time),
		cmocka_unit_test(aging_fifo_within_level),
		cmocka_unit_test(aging_no_starvation),
		cmocka_unit_test(victim_take_and_remove),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
