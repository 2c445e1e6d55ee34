/* runtime_int.h - shards: one pinned event-loop thread each.
 *
 * Threading: a shard's fields marked "shard" are touched only by its thread;
 * "any" fields are atomics.  Other threads reach a shard only through
 * sl_runtime_post() (the intrusive post list) and the wake-up protocol:
 *
 *   producer: publish work (queue push / list push); seq_cst fence;
 *             if need_wake was 1, swap it to 0 and write the eventfd.
 *   shard:    need_wake = 0; do all work; need_wake = 1; seq_cst fence;
 *             re-check for work that raced in; loop if there is any.
 *
 * so a wake-up syscall happens only when the shard has gone idle, and work
 * published while it is busy is picked up by the re-check. */
#ifndef SL_SHARD_RUNTIME_INT_H
#define SL_SHARD_RUNTIME_INT_H
#include <pthread.h>
#include <stdatomic.h>
#include "queue/mpsc.h"
#include "sluice/sluice.h"

typedef struct sl__shard sl__shard;

/* Something a shard polls on every wake-up and scheduled poll (a pipeline's
 * per-shard state).  poll() does the work; pending() says whether work that
 * can make progress is waiting (called after need_wake is re-armed). */
typedef struct sl__poller {
	struct sl__poller *next, *prev; /* shard */
	void (*poll)(struct sl__poller *self);
	int (*pending)(struct sl__poller *self);
} sl__poller;

struct sl__shard {
	sl_runtime *rt;
	unsigned idx;
	int cpu;                     /* pinned CPU, -1 when not pinned */
	pthread_t th;
	struct event_base *base;
	int efd;                     /* eventfd for cross-thread wake-ups */
	struct event *wake_ev;
	struct event *poll_ev;
	int poll_scheduled;          /* shard */
	sl__poller pollers;          /* shard: list head (sentinel) */
	_Alignas(64) _Atomic int need_wake; /* any */
	sl_list posts;               /* any: sl_post nodes */
	_Atomic int stopping;        /* any */
};

struct sl_runtime {
	unsigned n;
	int no_pin;
	sl__shard **shards;
	_Atomic int stopping;
};

/* The shard whose thread is calling, NULL off-shard. */
sl__shard *sl__shard_current(void);
static inline sl__shard *sl__rt_shard(sl_runtime *rt, unsigned i)
{
	return rt->shards[i];
}
/* Any thread: make sure the shard polls soon. */
void sl__shard_wake(sl__shard *sh);
/* Shard thread: schedule one poll at the end of this loop iteration. */
void sl__shard_schedule(sl__shard *sh);
/* Shard thread: (un)register a poller. */
void sl__shard_add_poller(sl__shard *sh, sl__poller *p);
void sl__shard_remove_poller(sl__shard *sh, sl__poller *p);
/* Any thread but a shard thread of rt: runs fn(arg) on shard i and waits
 * for it to return. */
int sl__shard_call(sl_runtime *rt, unsigned i, void (*fn)(void *), void *arg);

#endif
