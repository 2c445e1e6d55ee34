/* pq.h - bounded priority queue of pointers for one thread (a stage queue).
 *
 * SL_PRIORITY_LEVELS levels, FIFO within a level, highest level popped
 * first.  The bound is on the total count across levels.  Push on a full
 * queue returns SL_EAGAIN and keeps nothing.  Removal of an arbitrary item
 * (cancellation, expiry) is O(n) in its level, which is fine for queues of
 * a few thousand entries and a rare event.  Owned by one shard thread; no
 * locking.  A level's ring is allocated on its first push and never again.
 *
 * Aging: every entry keeps the time it was pushed (the caller's clock, ns in
 * the pipeline).  With an aging step set, an entry that has waited k steps
 * counts k levels higher, up to the top level.  Pop compares the head of
 * every level (a head is its level's oldest, so the most aged): the highest
 * effective level wins, ties go to the older entry, and equal times to the
 * higher level.  FIFO holds within an effective level; pop stays O(levels),
 * with a division only for a head that has waited at least one step.  Step
 * 0 (the default) is strict priority. */
#ifndef SL_QUEUE_PQ_H
#define SL_QUEUE_PQ_H
#include <stddef.h>
#include <stdint.h>
#include "sluice/sluice.h"

typedef struct sl_pq_ent {
	void *item;
	uint64_t t; /* pushed at (caller's clock) */
} sl_pq_ent;

typedef struct sl_pq_ring {
	sl_pq_ent *v;
	uint32_t head, len;
} sl_pq_ring;

typedef struct sl_pq {
	uint32_t cap;   /* bound on the total count */
	uint32_t count;
	uint32_t rcap;  /* slots per level ring (== cap) */
	uint64_t aging; /* clock units per level of aging, 0 = off */
	sl_pq_ring lv[SL_PRIORITY_LEVELS];
} sl_pq;

/* Aging off; see sl_pq_set_aging. */
int sl_pq_init(sl_pq *q, uint32_t cap);
void sl_pq_fini(sl_pq *q);
/* step: how long (clock units) an entry waits to count one level higher;
 * 0 = off. */
static inline void sl_pq_set_aging(sl_pq *q, uint64_t step) { q->aging = step; }
/* SL_OK, SL_EAGAIN (full), SL_EINVAL (bad level), SL_ENOMEM (the level's
 * first push).  now: the entry's time. */
int sl_pq_push(sl_pq *q, void *item, unsigned level, uint64_t now);
/* SL_OK and *item (highest effective level first, see above), or
 * SL_EEMPTY.  now: the time to age against (ignored without aging). */
int sl_pq_pop(sl_pq *q, void **item, uint64_t now);
/* Removes item from level; SL_OK or SL_ENOTFOUND. */
int sl_pq_remove(sl_pq *q, void *item, unsigned level);
/* Lowest level with items and its newest item (the one to shed first);
 * SL_EEMPTY when empty.  By pushed level: aging does not protect from
 * shedding. */
int sl_pq_peek_victim(const sl_pq *q, void **item, unsigned *level);
/* The same item, removed (O(1)). */
int sl_pq_take_victim(sl_pq *q, void **item, unsigned *level);
static inline uint32_t sl_pq_count(const sl_pq *q) { return q->count; }
static inline int sl_pq_full(const sl_pq *q) { return q->count >= q->cap; }

#endif
