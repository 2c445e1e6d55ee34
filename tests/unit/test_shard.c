/* test_shard.c - runtime, shard placement, posts. */
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>
#include "sluice/sluice.h"
#include "testutil.h"

static void default_shards_follow_affinity(void **st)
{
	cpu_set_t set;
	assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
	sl_runtime *rt;
	assert_int_equal(sl_runtime_create(NULL, &rt), SL_OK);
	assert_int_equal(sl_runtime_shards(rt), (unsigned)CPU_COUNT(&set));
	assert_int_equal(sl_runtime_current_shard(rt), -1);
	assert_null(sl_runtime_base(rt, 999));
	sl_runtime_destroy(rt);
	sl_runtime_destroy(NULL);
}

static void bad_options(void **st)
{
	sl_runtime *rt;
	sl_runtime_opts o = {.shards = SL_MAX_SHARDS + 1};
	assert_int_equal(sl_runtime_create(&o, &rt), SL_EINVAL);
	assert_int_equal(sl_runtime_create(NULL, NULL), SL_EINVAL);
}

static void affinity_is_deterministic_and_even(void **st)
{
	unsigned counts[4] = {0};
	char s[32];
	for (int i = 0; i < 40000; i++) {
		snprintf(s, sizeof s, "session-%d", i);
		unsigned a = sl_shard_for_session(s, (size_t)-1, 4);
		assert_int_equal(a, sl_shard_for_session(s, strlen(s), 4));
		assert_true(a < 4);
		counts[a]++;
	}
	for (int k = 0; k < 4; k++)
		assert_true(counts[k] > 9000 && counts[k] < 11000);
	assert_int_equal(sl_shard_for_session("x", 1, 1), 0);
	assert_int_equal(sl_shard_for_session(NULL, 0, 4), 0);
}

typedef struct post_arg {
	sl_post post;
	sl_runtime *rt;
	_Atomic int where;
	_Atomic int ran;
} post_arg;

static void post_fn(void *a_)
{
	post_arg *a = a_;
	atomic_store(&a->where, sl_runtime_current_shard(a->rt));
	atomic_store(&a->ran, 1);
}

static void posts_run_on_their_shard(void **st)
{
	sl_runtime *rt;
	sl_runtime_opts o = {.shards = 3, .no_pin = 1};
	assert_int_equal(sl_runtime_create(&o, &rt), SL_OK);
	post_arg a[3];
	for (unsigned i = 0; i < 3; i++) {
		a[i].post.fn = post_fn;
		a[i].post.arg = &a[i];
		a[i].rt = rt;
		atomic_init(&a[i].where, -1);
		atomic_init(&a[i].ran, 0);
		assert_int_equal(sl_runtime_post(rt, i, &a[i].post), SL_OK);
	}
	for (int t = 0; t < 200; t++) {
		if (atomic_load(&a[0].ran) && atomic_load(&a[1].ran) && atomic_load(&a[2].ran))
			break;
		msleep(10);
	}
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(atomic_load(&a[i].where), (int)i);
	sl_post bad = {.fn = post_fn};
	assert_int_equal(sl_runtime_post(rt, 3, &bad), SL_EINVAL);
	sl_runtime_destroy(rt);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(default_shards_follow_affinity),
		cmocka_unit_test(bad_options),
		cmocka_unit_test(affinity_is_deterministic_and_even),
		cmocka_unit_test(posts_run_on_their_shard),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
