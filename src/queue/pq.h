/* pq.h - bounded priority queue of pointers for one thread (a stage queue).
 *
 * SL_PRIORITY_LEVELS levels, FIFO within a level, highest level popped
 * first.  The bound is on the total count across levels.  Push on a full
 * queue returns SL_EAGAIN and keeps nothing.  Removal of an arbitrary item
 * (cancellation, expiry) is O(n) in its level, which is fine for queues of
 * a few thousand entries and a rare event.  Owned by one shard thread; no
 * locking. */
#ifndef SL_QUEUE_PQ_H
#define SL_QUEUE_PQ_H
#include <stddef.h>
#include <stdint.h>
#include "sluice/sluice.h"

typedef struct sl_pq_ring {
	void **v;
	uint32_t head, len;
} sl_pq_ring;

typedef struct sl_pq {
	uint32_t cap;   /* bound on the total count */
	uint32_t count;
	uint32_t rcap;  /* slots per level ring (== cap) */
	sl_pq_ring lv[SL_PRIORITY_LEVELS];
} sl_pq;

int sl_pq_init(sl_pq *q, uint32_t cap);
void sl_pq_fini(sl_pq *q);
/* SL_OK, SL_EAGAIN (full), SL_EINVAL (bad level). */
int sl_pq_push(sl_pq *q, void *item, unsigned level);
/* SL_OK and *item (highest level first), or SL_EEMPTY. */
int sl_pq_pop(sl_pq *q, void **item);
/* Removes item from level; SL_OK or SL_ENOTFOUND. */
int sl_pq_remove(sl_pq *q, void *item, unsigned level);
/* Lowest level with items and its newest item (the one to shed first);
 * SL_EEMPTY when empty. */
int sl_pq_peek_victim(const sl_pq *q, void **item, unsigned *level);
static inline uint32_t sl_pq_count(const sl_pq *q) { return q->count; }
static inline int sl_pq_full(const sl_pq *q) { return q->count >= q->cap; }

#endif
