/* worker.c - the worker object and its per-shard lifecycle. */
#include <stdlib.h>
#include "pipeline/pipeline_int.h"

int sl_worker_create(const sl_worker_ops *ops, const void *cfg, sl_worker **out)
{
	if (!ops || !out || !ops->infer)
		return SL_EINVAL;
	sl_worker *w = calloc(1, sizeof *w);
	if (!w)
		return SL_ENOMEM;
	w->ops = ops;
	if (ops->init) {
		int rc = ops->init(cfg, &w->state);
		if (rc != SL_OK) {
			free(w);
			return rc;
		}
	}
	*out = w;
	return SL_OK;
}

void sl_worker_destroy(sl_worker *w)
{
	if (!w)
		return;
	if (w->ops->fini)
		w->ops->fini(w->state);
	free(w);
}

int sl__worker_attach(sl_worker *w, sl_runtime *rt, sl__shard *sh, void **wss)
{
	unsigned i = sh->idx;
	if (w->rt && w->rt != rt)
		return SL_ESTATE; /* a worker serves one runtime */
	w->rt = rt;
	if (w->refs[i] == 0 && w->ops->start) {
		int rc = w->ops->start(w->state, sh->base, i, &w->ss[i]);
		if (rc != SL_OK)
			return rc;
	}
	w->refs[i]++;
	*wss = w->ss[i];
	return SL_OK;
}

void sl__worker_detach(sl_worker *w, sl__shard *sh)
{
	unsigned i = sh->idx;
	if (w->refs[i] == 0 || --w->refs[i] > 0)
		return;
	if (w->ops->close)
		w->ops->close(w->ss[i]);
	if (w->ops->stop)
		w->ops->stop(w->ss[i]);
	w->ss[i] = NULL;
}

const sl_worker_ops *sl_worker_ops_of(const sl_worker *w)
{
	return w->ops;
}

void *sl_worker_state_of(const sl_worker *w)
{
	return w->state;
}
