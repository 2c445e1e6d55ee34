/* blocking.c - adapter from a plain synchronous "prompt -> tokens" function
 * (the seed's ModelWorker::infer) to the asynchronous worker interface.
 *
 * Each call copies the prompt into a pool job and runs the function on a
 * bounded thread pool; the result is posted back to the call's shard, which
 * streams the tokens and ends the call.  A cancelled call is detached from
 * its pool job (the function cannot be interrupted); its result is dropped
 * and freed when it arrives.  Concurrency is capped at the pool's capacity
 * (threads + queue) across all shards. */
#include <stdlib.h>
#include <string.h>
#include "pipeline/pipeline_int.h"
#include "shard/pool.h"

typedef struct blk_state {
	sl_blocking_fn fn;
	void *user;
	sl_blocking_opts o;
	sl_pool *pool;
} blk_state;

typedef struct blk_cfg {
	sl_blocking_fn fn;
	void *user;
	sl_blocking_opts o;
} blk_cfg;

typedef struct blk_job {
	sl_pool_job pj;  /* pool side */
	sl_post post;    /* back to the shard */
	blk_state *st;
	sl_runtime *rt;
	unsigned shard;
	sl_infer *call;  /* NULL once cancelled (shard thread only) */
	char *prompt;
	size_t len;
	char **tokens;
	size_t n;
	int rc;
} blk_job;

static void free_tokens(blk_job *j)
{
	for (size_t i = 0; i < j->n; i++)
		free(j->tokens[i]);
	free(j->tokens);
	j->tokens = NULL;
	j->n = 0;
}

static void blk_job_free(blk_job *j)
{
	free_tokens(j);
	free(j->prompt);
	free(j);
}

/* Shard thread: deliver the result. */
static void on_result(void *arg)
{
	blk_job *j = arg;
	sl_infer *call = j->call;
	if (!call) {
		blk_job_free(j);
		return;
	}
	*sl_infer_worker_data(call) = NULL;
	int rc = j->rc;
	size_t sent = 0;
	if (rc == SL_OK) {
		for (size_t i = 0; i < j->n; i++) {
			if (!j->tokens[i])
				continue;
			int t = sl_infer_token(call, j->tokens[i], strlen(j->tokens[i]));
			if (t != SL_OK)
				break;
			sent++;
		}
	}
	sl_usage u = {.completion_tokens = (uint32_t)sent, .finish_reason = "stop"};
	blk_job_free(j);
	sl_infer_done(call, rc, rc ? "blocking worker function failed" : NULL, &u);
}

/* Pool thread. */
static void run_fn(sl_pool_job *pj)
{
	blk_job *j = (blk_job *)pj;
	j->rc = j->st->fn(j->st->user, j->prompt, j->len, &j->tokens, &j->n);
	if (j->rc > 0 || (j->rc == SL_OK && j->n && !j->tokens))
		j->rc = SL_EWORKER;
	if (j->rc != SL_OK)
		free_tokens(j);
	j->post.fn = on_result;
	j->post.arg = j;
	if (sl_runtime_post(j->rt, j->shard, &j->post) != SL_OK)
		blk_job_free(j); /* runtime stopping: nobody is waiting */
}

static int blk_init(const void *cfgv, void **state)
{
	const blk_cfg *cfg = cfgv;
	if (!cfg || !cfg->fn)
		return SL_EINVAL;
	blk_state *s = calloc(1, sizeof *s);
	if (!s)
		return SL_ENOMEM;
	s->fn = cfg->fn;
	s->user = cfg->user;
	s->o = cfg->o;
	if (!s->o.threads)
		s->o.threads = 4;
	if (!s->o.queue)
		s->o.queue = 256;
	int rc = sl_pool_create(s->o.threads, s->o.queue + s->o.threads, &s->pool);
	if (rc != SL_OK) {
		free(s);
		return rc;
	}
	*state = s;
	return SL_OK;
}

static int blk_start(void *state, struct event_base *base, unsigned shard, void **out)
{
	*out = state;
	return SL_OK;
}

static int blk_infer(void *ssv, sl_infer *call)
{
	blk_state *s = ssv;
	size_t len;
	const char *p = sl_infer_prompt(call, &len);
	blk_job *j = calloc(1, sizeof *j);
	if (!j)
		return SL_ENOMEM;
	j->prompt = malloc(len + 1);
	if (!j->prompt) {
		free(j);
		return SL_ENOMEM;
	}
	memcpy(j->prompt, p, len);
	j->prompt[len] = '\0';
	j->len = len;
	j->st = s;
	j->call = call;
	sl__req *req = SL__REQ_OF_CALL(call);
	j->rt = sl__req_runtime(req);
	j->shard = sl__req_shard(req);
	j->pj.run = run_fn;
	*sl_infer_worker_data(call) = j;
	int rc = sl_pool_submit(s->pool, &j->pj);
	if (rc != SL_OK) {
		*sl_infer_worker_data(call) = NULL;
		blk_job_free(j);
		return rc == SL_EAGAIN ? SL_EWORKER : rc;
	}
	return SL_OK;
}

static void blk_cancel(void *ssv, sl_infer *call)
{
	blk_job *j = *sl_infer_worker_data(call);
	if (j)
		j->call = NULL; /* the result is dropped when it comes back */
	*sl_infer_worker_data(call) = NULL;
}

static void blk_fini(void *state)
{
	blk_state *s = state;
	if (!s)
		return;
	sl_pool_destroy(s->pool);
	free(s);
}

static unsigned blk_maxc(void *state)
{
	blk_state *s = state;
	return s->o.threads + s->o.queue;
}

static const sl_worker_ops blk_ops = {
	.name = "blocking",
	.init = blk_init,
	.start = blk_start,
	.infer = blk_infer,
	.cancel = blk_cancel,
	.fini = blk_fini,
	.max_concurrency = blk_maxc,
};

int sl_worker_blocking_create(sl_blocking_fn fn, void *user,
                              const sl_blocking_opts *opts, sl_worker **out)
{
	blk_cfg cfg = {.fn = fn, .user = user};
	if (opts)
		cfg.o = *opts;
	return sl_worker_create(&blk_ops, &cfg, out);
}
