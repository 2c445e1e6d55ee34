/* pq.c - bounded multi-level FIFO with aging; see pq.h. */
#include <stdlib.h>
#include "queue/pq.h"

#define TOP (SL_PRIORITY_LEVELS - 1)

/* Ring index k places after the head (k < rcap). */
static inline uint32_t ring_at(const sl_pq *q, const sl_pq_ring *r, uint32_t k)
{
	uint32_t at = r->head + k;
	return at >= q->rcap ? at - q->rcap : at;
}

int sl_pq_init(sl_pq *q, uint32_t cap)
{
	if (cap == 0)
		return SL_EINVAL;
	q->cap = cap;
	q->count = 0;
	q->rcap = cap;
	q->aging = 0;
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

int sl_pq_push(sl_pq *q, void *item, unsigned level, uint64_t now)
{
	if (level >= SL_PRIORITY_LEVELS)
		return SL_EINVAL;
	if (q->count >= q->cap)
		return SL_EAGAIN;
	sl_pq_ring *r = &q->lv[level];
	if (!r->v) {
		r->v = malloc(sizeof(sl_pq_ent) * q->rcap);
		if (!r->v)
			return SL_ENOMEM;
	}
	sl_pq_ent *e = &r->v[ring_at(q, r, r->len)];
	e->item = item;
	e->t = now;
	r->len++;
	q->count++;
	return SL_OK;
}

/* The level whose head goes next under aging. */
static int aged_pick(const sl_pq *q, uint64_t now)
{
	int best = -1;
	unsigned beff = 0;
	uint64_t bt = 0;
	for (int i = TOP; i >= 0; i--) {
		const sl_pq_ring *r = &q->lv[i];
		if (!r->len)
			continue;
		uint64_t t = r->v[r->head].t;
		unsigned eff = (unsigned)i;
		if (now > t && now - t >= q->aging) {
			uint64_t up = (now - t) / q->aging;
			eff = up >= (uint64_t)(TOP - i) ? TOP : (unsigned)i + (unsigned)up;
		}
		/* visited from the top: on equal times the higher level stays */
		if (best < 0 || eff > beff || (eff == beff && t < bt)) {
			best = i;
			beff = eff;
			bt = t;
		}
	}
	return best;
}

int sl_pq_pop(sl_pq *q, void **item, uint64_t now)
{
	if (q->count == 0)
		return SL_EEMPTY;
	int i;
	if (q->aging) {
		i = aged_pick(q, now);
	} else {
		for (i = TOP; i > 0 && !q->lv[i].len; i--)
			;
	}
	sl_pq_ring *r = &q->lv[i];
	*item = r->v[r->head].item;
	r->head = ring_at(q, r, 1);
	r->len--;
	q->count--;
	return SL_OK;
}

int sl_pq_remove(sl_pq *q, void *item, unsigned level)
{
	if (level >= SL_PRIORITY_LEVELS)
		return SL_ENOTFOUND;
	sl_pq_ring *r = &q->lv[level];
	for (uint32_t k = 0; k < r->len; k++) {
		if (r->v[ring_at(q, r, k)].item != item)
			continue;
		/* shift the newer entries one slot towards the head */
		for (uint32_t j = k; j + 1 < r->len; j++)
			r->v[ring_at(q, r, j)] = r->v[ring_at(q, r, j + 1)];
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
			*item = r->v[ring_at(q, r, r->len - 1)].item;
			*level = i;
			return SL_OK;
		}
	}
	return SL_EEMPTY;
}

int sl_pq_take_victim(sl_pq *q, void **item, unsigned *level)
{
	int rc = sl_pq_peek_victim(q, item, level);
	if (rc == SL_OK) {
		q->lv[*level].len--;
		q->count--;
	}
	return rc;
}
