/* mpsc.c - bounded MPSC ring and intrusive list; see mpsc.h. */
#include <pthread.h>
#include <stdlib.h>
#include "queue/mpsc.h"

typedef struct cell {
	_Atomic size_t seq;
	void *data;
} cell;

struct sl_queue {
	size_t cap;   /* logical capacity */
	size_t ncell; /* ring cells: cap, or 2 when cap is 1 (the ring's sequence
	               * numbers cannot tell full from free with one cell) */
	cell *cells;
	_Alignas(64) _Atomic size_t enq; /* producers */
	_Alignas(64) _Atomic size_t deq; /* consumer (atomic for size()) */
	_Alignas(64) _Atomic int closed;
	_Atomic int waiters;
	pthread_mutex_t mx;
	pthread_cond_t cv;
};

int sl_queue_create(size_t capacity, sl_queue **out)
{
	if (!out || capacity == 0 || capacity > ((size_t)1 << 40))
		return SL_EINVAL;
	sl_queue *q = aligned_alloc(64, (sizeof *q + 63) & ~(size_t)63);
	if (!q)
		return SL_ENOMEM;
	q->ncell = capacity < 2 ? 2 : capacity;
	q->cells = calloc(q->ncell, sizeof(cell));
	if (!q->cells) {
		free(q);
		return SL_ENOMEM;
	}
	q->cap = capacity;
	for (size_t i = 0; i < q->ncell; i++)
		atomic_init(&q->cells[i].seq, i);
	atomic_init(&q->enq, 0);
	atomic_init(&q->deq, 0);
	atomic_init(&q->closed, 0);
	atomic_init(&q->waiters, 0);
	pthread_mutex_init(&q->mx, NULL);
	pthread_cond_init(&q->cv, NULL);
	*out = q;
	return SL_OK;
}

void sl_queue_destroy(sl_queue *q)
{
	if (!q)
		return;
	pthread_mutex_destroy(&q->mx);
	pthread_cond_destroy(&q->cv);
	free(q->cells);
	free(q);
}

int sl_queue_push(sl_queue *q, void *item)
{
	if (atomic_load_explicit(&q->closed, memory_order_acquire))
		return SL_ECLOSED;
	size_t pos = atomic_load_explicit(&q->enq, memory_order_relaxed);
	cell *c;
	for (;;) {
		if (q->cap != q->ncell &&
		    pos - atomic_load_explicit(&q->deq, memory_order_acquire) >= q->cap)
			return SL_EAGAIN;
		c = &q->cells[pos % q->ncell];
		size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
		intptr_t dif = (intptr_t)seq - (intptr_t)pos;
		if (dif == 0) {
			if (atomic_compare_exchange_weak_explicit(
			        &q->enq, &pos, pos + 1, memory_order_relaxed,
			        memory_order_relaxed))
				break;
		} else if (dif < 0) {
			return SL_EAGAIN;
		} else {
			pos = atomic_load_explicit(&q->enq, memory_order_relaxed);
		}
	}
	c->data = item;
	atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
	return SL_OK;
}

int sl_queue_push_wait(sl_queue *q, void *item)
{
	int rc = sl_queue_push(q, item);
	if (rc != SL_EAGAIN)
		return rc;
	pthread_mutex_lock(&q->mx);
	atomic_fetch_add_explicit(&q->waiters, 1, memory_order_seq_cst);
	for (;;) {
		/* Retry after announcing ourselves: a pop that happened before the
		 * announcement is visible here; one after it sees waiters > 0. */
		rc = sl_queue_push(q, item);
		if (rc != SL_EAGAIN)
			break;
		pthread_cond_wait(&q->cv, &q->mx);
	}
	atomic_fetch_sub_explicit(&q->waiters, 1, memory_order_relaxed);
	pthread_mutex_unlock(&q->mx);
	return rc;
}

int sl_queue_pop(sl_queue *q, void **item)
{
	size_t pos = atomic_load_explicit(&q->deq, memory_order_relaxed);
	cell *c = &q->cells[pos % q->ncell];
	size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
	if ((intptr_t)seq - (intptr_t)(pos + 1) < 0)
		return SL_EEMPTY;
	*item = c->data;
	atomic_store_explicit(&q->deq, pos + 1, memory_order_release);
	atomic_store_explicit(&c->seq, pos + q->ncell, memory_order_release);
	return SL_OK;
}

int sl_queue_pop_mc(sl_queue *q, void **item)
{
	size_t pos = atomic_load_explicit(&q->deq, memory_order_relaxed);
	for (;;) {
		cell *c = &q->cells[pos % q->ncell];
		size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
		intptr_t dif = (intptr_t)seq - (intptr_t)(pos + 1);
		if (dif == 0) {
			if (atomic_compare_exchange_weak_explicit(
			        &q->deq, &pos, pos + 1, memory_order_relaxed,
			        memory_order_relaxed)) {
				*item = c->data;
				atomic_store_explicit(&c->seq, pos + q->ncell, memory_order_release);
				return SL_OK;
			}
		} else if (dif < 0) {
			return SL_EEMPTY;
		} else {
			pos = atomic_load_explicit(&q->deq, memory_order_relaxed);
		}
	}
}

void sl_queue_notify(sl_queue *q)
{
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&q->waiters, memory_order_relaxed) == 0)
		return;
	if (sl_queue_size(q) > q->cap / 2)
		return;
	pthread_mutex_lock(&q->mx);
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->mx);
}

void sl_queue_close(sl_queue *q)
{
	atomic_store_explicit(&q->closed, 1, memory_order_release);
	pthread_mutex_lock(&q->mx);
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->mx);
}

int sl_queue_closed(const sl_queue *q)
{
	return atomic_load_explicit(&((sl_queue *)q)->closed, memory_order_acquire);
}

size_t sl_queue_size(const sl_queue *q)
{
	sl_queue *m = (sl_queue *)q;
	size_t d = atomic_load_explicit(&m->deq, memory_order_relaxed);
	size_t e = atomic_load_explicit(&m->enq, memory_order_relaxed);
	return e > d ? (e - d > q->cap ? q->cap : e - d) : 0;
}

size_t sl_queue_capacity(const sl_queue *q)
{
	return q->cap;
}

int sl_list_push(sl_list *l, sl_lnode *n)
{
	sl_lnode *h = atomic_load_explicit(&l->head, memory_order_relaxed);
	do {
		n->next = h;
	} while (!atomic_compare_exchange_weak_explicit(
	    &l->head, &h, n, memory_order_release, memory_order_relaxed));
	return h == NULL;
}

sl_lnode *sl_list_take(sl_list *l)
{
	sl_lnode *h = atomic_exchange_explicit(&l->head, NULL, memory_order_acquire);
	sl_lnode *rev = NULL;
	while (h) {
		sl_lnode *nx = h->next;
		h->next = rev;
		rev = h;
		h = nx;
	}
	return rev;
}
