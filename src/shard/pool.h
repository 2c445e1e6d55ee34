/* pool.h - bounded thread pool for work that may block (a user's
 * synchronous model function, CPU-heavy steps), so shard loops never do.
 *
 * Jobs are intrusive (the caller owns the node).  The job queue has a fixed
 * capacity: submit on a full pool returns SL_EAGAIN and keeps nothing.  A
 * job's run() executes on a pool thread; it reports back to a shard with
 * sl_runtime_post().  Destroy runs every job already queued, then joins. */
#ifndef SL_SHARD_POOL_H
#define SL_SHARD_POOL_H
#include "sluice/sluice.h"

typedef struct sl_pool sl_pool;
typedef struct sl_pool_job {
	struct sl_pool_job *next; /* private */
	void (*run)(struct sl_pool_job *job);
} sl_pool_job;

/* threads >= 1, capacity >= 1.  SL_EINVAL, SL_ENOMEM, SL_ESYS. */
int sl_pool_create(unsigned threads, unsigned capacity, sl_pool **out);
/* Any thread: SL_OK, SL_EAGAIN (queue full), SL_ECLOSED (destroying). */
int sl_pool_submit(sl_pool *p, sl_pool_job *job);
/* Runs the queued jobs, joins the threads, frees.  NULL is a no-op. */
void sl_pool_destroy(sl_pool *p);
unsigned sl_pool_threads(const sl_pool *p);

#endif
