/* pq.c - bounded multi-level FIFO; see pq.h. */
#include <stdlib.h>
#include "queue/pq.h"

int sl_pq_init(sl_pq *q, uint32_t cap)
{
	if (cap == 0)
		return SL_EINVAL;
	q->cap = cap;
	q->count = 0;
	q->rcap = cap;
	for (unsigned i = 0; i < SL_PRIORITY_LEVELS; i++) {
		q->lv[i].head = q->lv[i].len = 0;
		q->lv[i].v = NULL; /* allocated on first use of the level */
	}
	return SL_OK;
}

void sl_pq_fini(sl_pq *q)
{
	for (unsigned i = 0; i < SL_PRIORITY_LEVELS; i++) {
		free(q->lv[i].v);
		q->lv[i].v = NULL;
	}
	q->count = 0;
}

int sl_pq_push(sl_pq *q, void *item, unsigned level)
{
	if (level >= SL_PRIORITY_LEVELS)
		return SL_EINVAL;
	if (q->count >= q->cap)
		return SL_EAGAIN;
	sl_pq_ring *r = &q->lv[level];
	if (!r->v) {
		r->v = malloc(sizeof(void *) * q->rcap);
		if (!r->v)
			return SL_ENOMEM;
	}
	r->v[(r->head + r->len) % q->rcap] = item;
	r->len++;
	q->count++;
	return SL_OK;
}

int sl_pq_pop(sl_pq *q, void **item)
{
	if (q->count == 0)
		return SL_EEMPTY;
	for (int i = SL_PRIORITY_LEVELS - 1; i >= 0; i--) {
		sl_pq_ring *r = &q->lv[i];
		if (r->len) {
			*item = r->v[r->head];
			r->head = (r->head + 1) % q->rcap;
			r->len--;
			q->count--;
			return SL_OK;
		}
	}
	return SL_EEMPTY;
}

int sl_pq_remove(sl_pq *q, void *item, unsigned level)
{
	if (level >= SL_PRIORITY_LEVELS)
		return SL_ENOTFOUND;
	sl_pq_ring *r = &q->lv[level];
	for (uint32_t k = 0; k < r->len; k++) {
		uint32_t at = (r->head + k) % q->rcap;
		if (r->v[at] != item)
			continue;
		/* shift the newer items one slot towards the head */
		for (uint32_t j = k; j + 1 < r->len; j++)
			r->v[(r->head + j) % q->rcap] = r->v[(r->head + j + 1) % q->rcap];
		r->len--;
		q->count--;
		return SL_OK;
	}
	return SL_ENOTFOUND;
}

int sl_pq_peek_victim(const sl_pq *q, void **item, unsigned *level)
{
	for (unsigned i = 0; i < SL_PRIORITY_LEVELS; i++) {
		const sl_pq_ring *r = &q->lv[i];
		if (r->len) {
			*item = r->v[(r->head + r->len - 1) % q->rcap];
			*level = i;
			return SL_OK;
		}
	}
	return SL_EEMPTY;
}
