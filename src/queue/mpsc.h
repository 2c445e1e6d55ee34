/* mpsc.h - bounded multi-producer single-consumer queue of pointers.
 *
 * The cross-shard hand-off: any number of producer threads push, the one
 * consumer (a shard thread) pops.  Lock-free on the fast path (Vyukov's
 * bounded ring: one CAS per push, none per pop).  Capacity is exact (any
 * value >= 1) and fixed at create time.
 *
 * Full:    sl_queue_push() returns SL_EAGAIN and leaves the item with the
 *          caller (ownership moves only on success); sl_queue_push_wait()
 *          sleeps on a condition variable until the consumer makes room.
 * Closed:  after sl_queue_close() pushes return SL_ECLOSED and waiting
 *          pushers wake with SL_ECLOSED; the consumer still pops whatever was
 *          pushed before (close-and-drain).
 * Waking:  the consumer calls sl_queue_notify() after popping; it wakes
 *          blocked pushers once the queue is at most half full (hysteresis,
 *          so a blocked producer is not woken for every single slot).
 */
#ifndef SL_QUEUE_MPSC_H
#define SL_QUEUE_MPSC_H
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "sluice/sluice.h"

typedef struct sl_queue sl_queue;

/* Any thread.  SL_EINVAL for capacity 0, SL_ENOMEM. */
int sl_queue_create(size_t capacity, sl_queue **out);
/* Frees the queue; items still inside are not freed.  NULL is a no-op.
 * No pusher may be inside a push. */
void sl_queue_destroy(sl_queue *q);

/* Any thread: SL_OK, SL_EAGAIN (full), SL_ECLOSED. */
int sl_queue_push(sl_queue *q, void *item);
/* Any thread except the consumer: waits while full.  SL_OK or SL_ECLOSED. */
int sl_queue_push_wait(sl_queue *q, void *item);
/* Consumer only: SL_OK and *item, or SL_EEMPTY. */
int sl_queue_pop(sl_queue *q, void **item);
/* Any thread, several at once (Vyukov's multi-consumer dequeue: one CAS per
 * pop): SL_OK and *item, or SL_EEMPTY.  Must not be mixed with
 * sl_queue_pop() on the same queue.  Used for free lists that one shard
 * fills and any submitting thread takes from. */
int sl_queue_pop_mc(sl_queue *q, void **item);
/* Consumer only: wakes blocked pushers when there is room (cheap when none
 * wait: one atomic load). */
void sl_queue_notify(sl_queue *q);
/* Any thread: marks the queue closed and wakes every waiting pusher. */
void sl_queue_close(sl_queue *q);
int sl_queue_closed(const sl_queue *q);
/* Approximate number of items (exact when no push/pop is in progress). */
size_t sl_queue_size(const sl_queue *q);
size_t sl_queue_capacity(const sl_queue *q);

/* ---- unbounded intrusive MPSC list (for posts that must never fail) ----
 * Producers push nodes they own (a Treiber stack push); the consumer takes
 * the whole list at once and gets it back in FIFO order.  Bounded in
 * practice by whoever owns the nodes. */
typedef struct sl_lnode {
	struct sl_lnode *next;
} sl_lnode;

typedef struct sl_list {
	_Atomic(sl_lnode *) head;
} sl_list;

static inline void sl_list_init(sl_list *l)
{
	atomic_init(&l->head, NULL);
}
/* Any thread.  Returns 1 when the list was empty before (first node). */
int sl_list_push(sl_list *l, sl_lnode *n);
/* Consumer: takes every node, oldest first; NULL when empty. */
sl_lnode *sl_list_take(sl_list *l);
static inline int sl_list_empty(sl_list *l)
{
	return atomic_load_explicit(&l->head, memory_order_acquire) == NULL;
}

#endif
