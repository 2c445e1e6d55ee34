/* test_queue.c - the bounded MPSC queue and the intrusive list: FIFO,
 * capacity, close-and-drain, block vs non-blocking, many producers (run
 * under ThreadSanitizer by `make test`). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
#include "queue/mpsc.h"
#include "testutil.h"

static void fifo_and_capacity(void **st)
{
	sl_queue *q;
	assert_int_equal(sl_queue_create(0, &q), SL_EINVAL);
	assert_int_equal(sl_queue_create(5, &q), SL_OK);
	assert_int_equal(sl_queue_capacity(q), 5);
	for (uintptr_t i = 1; i <= 5; i++)
		assert_int_equal(sl_queue_push(q, (void *)i), SL_OK);
	/* full: the item stays with the caller */
	assert_int_equal(sl_queue_push(q, (void *)6), SL_EAGAIN);
	assert_int_equal(sl_queue_size(q), 5);
	void *it;
	for (uintptr_t i = 1; i <= 5; i++) {
		assert_int_equal(sl_queue_pop(q, &it), SL_OK);
		assert_int_equal((uintptr_t)it, i);
	}
	assert_int_equal(sl_queue_pop(q, &it), SL_EEMPTY);
	/* wrap around many times */
	for (uintptr_t i = 1; i <= 1000; i++) {
		assert_int_equal(sl_queue_push(q, (void *)i), SL_OK);
		assert_int_equal(sl_queue_pop(q, &it), SL_OK);
		assert_int_equal((uintptr_t)it, i);
	}
	sl_queue_destroy(q);
	sl_queue_destroy(NULL);
}

static void close_and_drain(void **st)
{
	sl_queue *q;
	assert_int_equal(sl_queue_create(4, &q), SL_OK);
	sl_queue_push(q, (void *)1);
	sl_queue_push(q, (void *)2);
	sl_queue_close(q);
	assert_true(sl_queue_closed(q));
	assert_int_equal(sl_queue_push(q, (void *)3), SL_ECLOSED);
	void *it;
	assert_int_equal(sl_queue_pop(q, &it), SL_OK);
	assert_int_equal((uintptr_t)it, 1);
	assert_int_equal(sl_queue_pop(q, &it), SL_OK);
	assert_int_equal((uintptr_t)it, 2);
	assert_int_equal(sl_queue_pop(q, &it), SL_EEMPTY);
	sl_queue_destroy(q);
}

typedef struct waiter_arg {
	sl_queue *q;
	int rc;
	_Atomic int done;
} waiter_arg;

static void *push_waiter(void *a_)
{
	waiter_arg *a = a_;
	a->rc = sl_queue_push_wait(a->q, (void *)99);
	atomic_store(&a->done, 1);
	return NULL;
}

static void block_waits_for_room(void **st)
{
	sl_queue *q;
	assert_int_equal(sl_queue_create(2, &q), SL_OK);
	sl_queue_push(q, (void *)1);
	sl_queue_push(q, (void *)2);
	waiter_arg a = {.q = q};
	pthread_t th;
	pthread_create(&th, NULL, push_waiter, &a);
	msleep(50);
	assert_int_equal(atomic_load(&a.done), 0); /* still blocked: queue full */
	void *it;
	assert_int_equal(sl_queue_pop(q, &it), SL_OK);
	sl_queue_notify(q); /* size 1 <= cap/2: wakes the waiter */
	pthread_join(th, NULL);
	assert_int_equal(a.rc, SL_OK);
	assert_int_equal(sl_queue_pop(q, &it), SL_OK);
	assert_int_equal((uintptr_t)it, 2);
	assert_int_equal(sl_queue_pop(q, &it), SL_OK);
	assert_int_equal((uintptr_t)it, 99);
	sl_queue_destroy(q);
}

static void close_wakes_blocked_pusher(void **st)
{
	sl_queue *q;
	assert_int_equal(sl_queue_create(1, &q), SL_OK);
	sl_queue_push(q, (void *)1);
	waiter_arg a = {.q = q};
	pthread_t th;
	pthread_create(&th, NULL, push_waiter, &a);
	msleep(20);
	sl_queue_close(q);
	pthread_join(th, NULL);
	assert_int_equal(a.rc, SL_ECLOSED);
	sl_queue_destroy(q);
}

#define PRODUCERS 4
#define PER 50000

typedef struct prod {
	sl_queue *q;
	uintptr_t id;
	int blocking;
} prod;

static void *producer(void *a_)
{
	prod *p = a_;
	for (uintptr_t i = 0; i < PER; i++) {
		void *item = (void *)((p->id << 32) | (i + 1));
		if (p->blocking) {
			assert_int_equal(sl_queue_push_wait(p->q, item), SL_OK);
		} else {
			while (sl_queue_push(p->q, item) == SL_EAGAIN)
				sched_yield();
		}
	}
	return NULL;
}

static void many_producers(int blocking)
{
	sl_queue *q;
	assert_int_equal(sl_queue_create(64, &q), SL_OK);
	prod ps[PRODUCERS];
	pthread_t th[PRODUCERS];
	for (int i = 0; i < PRODUCERS; i++) {
		ps[i] = (prod){.q = q, .id = (uintptr_t)i, .blocking = blocking};
		pthread_create(&th[i], NULL, producer, &ps[i]);
	}
	uintptr_t next[PRODUCERS] = {0};
	size_t got = 0;
	while (got < (size_t)PRODUCERS * PER) {
		void *it;
		if (sl_queue_pop(q, &it) != SL_OK) {
			sl_queue_notify(q);
			sched_yield();
			continue;
		}
		uintptr_t v = (uintptr_t)it;
		uintptr_t who = v >> 32, seq = v & 0xffffffffu;
		assert_true(who < PRODUCERS);
		/* each producer's items arrive once, in its order */
		assert_int_equal(seq, next[who] + 1);
		next[who] = seq;
		got++;
		if ((got & 7) == 0)
			sl_queue_notify(q);
	}
	for (int i = 0; i < PRODUCERS; i++)
		pthread_join(th[i], NULL);
	void *it;
	assert_int_equal(sl_queue_pop(q, &it), SL_EEMPTY);
	sl_queue_destroy(q);
}

static void many_producers_nonblocking(void **st)
{
	many_producers(0);
}

static void many_producers_blocking(void **st)
{
	many_producers(1);
}

typedef struct lnode_item {
	sl_lnode n;
	int v;
} lnode_item;

static void list_is_fifo(void **st)
{
	sl_list l;
	sl_list_init(&l);
	assert_true(sl_list_empty(&l));
	assert_null(sl_list_take(&l));
	lnode_item it[5];
	for (int i = 0; i < 5; i++) {
		it[i].v = i;
		assert_int_equal(sl_list_push(&l, &it[i].n), i == 0);
	}
	sl_lnode *n = sl_list_take(&l);
	for (int i = 0; i < 5; i++) {
		assert_non_null(n);
		assert_int_equal(((lnode_item *)n)->v, i);
		n = n->next;
	}
	assert_null(n);
	assert_true(sl_list_empty(&l));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(fifo_and_capacity),
		cmocka_unit_test(close_and_drain),
		cmocka_unit_test(block_waits_for_room),
		cmocka_unit_test(close_wakes_blocked_pusher),
		cmocka_unit_test(many_producers_nonblocking),
		cmocka_unit_test(many_producers_blocking),
		cmocka_unit_test(list_is_fifo),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
