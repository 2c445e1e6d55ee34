/* build.c - sl_config -> workers, pipelines, routes; see build.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "config/build.h"
#include "sluice/config.h"
#include "worker/openai/openai.h"
#include "worker/router/router.h"

typedef struct app_model {
	sl_worker *worker;
	sl_pipeline *pipeline;
	sl_delay_cfg delay[SL_MAX_STAGES];
} app_model;

struct sl_app {
	sl_model_route *routes;
	app_model *m;
	size_t n;
	int drained;
};

static const sl_stage_ops *ops_for(sl_cfg_stage_type t)
{
	switch (t) {
	case SL_CFG_STAGE_RAG: return &sl_stage_rag;
	case SL_CFG_STAGE_ASSEMBLE: return &sl_stage_assemble;
	case SL_CFG_STAGE_INFERENCE: return &sl_stage_inference;
	case SL_CFG_STAGE_POST: return &sl_stage_post;
	case SL_CFG_STAGE_STREAM: return &sl_stage_stream;
	case SL_CFG_STAGE_DELAY: return &sl_stage_delay;
	}
	return NULL;
}

static int make_worker(const sl_cfg_backend *b, const char *model, sl_worker **out)
{
	if (b->type == SL_CFG_BACKEND_ECHO) {
		sl_echo_opts eo = {.delay_ms = b->delay_ms, .token_delay_ms = b->token_delay_ms};
		return sl_worker_echo_create(&eo, out);
	}
	sl_openai_opts oo;
	sl_openai_opts_init(&oo);
	oo.url = b->url;
	oo.model = b->model ? b->model : model;
	oo.api_key_env = b->api_key_env;
	oo.connect_timeout_ms = b->connect_timeout_ms;
	/* in the file 0 means "no first-token limit"; the worker's 0 means
	 * "its default" */
	oo.first_token_timeout_ms = b->first_token_timeout_ms ? b->first_token_timeout_ms
	                                                      : SL_OPENAI_TIMEOUT_NONE;
	oo.total_timeout_ms = b->total_timeout_ms;
	oo.max_concurrency = b->max_concurrency;
	oo.stream = b->stream;
	const char *hdrs[65];
	size_t nh = b->n_headers < 64 ? b->n_headers : 64;
	for (size_t i = 0; i < nh; i++)
		hdrs[i] = b->headers[i];
	hdrs[nh] = NULL;
	oo.headers = nh ? hdrs : NULL;
	return sl_worker_openai_create(&oo, out);
}

static void router_backend_of(const sl_cfg_backend *b, sl_router_backend *rb)
{
	sl_router_backend_default(rb);
	rb->name = b->name;
	const sl_cfg_breaker *cb = &b->breaker;
	rb->breaker.enabled = cb->enabled;
	rb->breaker.consecutive_failures = cb->consecutive_failures;
	rb->breaker.failure_ratio = cb->failure_ratio;
	rb->breaker.window_ms = cb->window_ms;
	rb->breaker.min_requests = cb->min_requests;
	rb->breaker.cooldown_ms = cb->cooldown_ms;
	rb->breaker.max_cooldown_ms = cb->max_cooldown_ms;
	rb->breaker.half_open_probes = cb->half_open_probes;
	rb->budget.ratio = b->retry.budget_ratio;
	rb->budget.min_per_s = b->retry.budget_min_per_s;
	rb->budget.window_ms = b->retry.budget_window_ms;
	rb->backoff_ms = b->retry.backoff_ms;
	rb->max_backoff_ms = b->retry.max_backoff_ms;
	const sl_cfg_concurrency *k = &b->concurrency;
	rb->limiter.alg = k->algorithm == SL_CFG_LIMIT_AIMD       ? SL_LIMIT_AIMD
	                  : k->algorithm == SL_CFG_LIMIT_GRADIENT ? SL_LIMIT_GRADIENT
	                                                          : SL_LIMIT_FIXED;
	rb->limiter.min_limit = k->min;
	rb->limiter.max_limit = k->max;
	rb->limiter.initial_limit = k->initial;
	rb->limiter.latency_threshold_ms = k->latency_threshold_ms;
	rb->limiter.backoff_ratio = k->backoff_ratio;
	rb->limiter.tolerance = k->tolerance;
}

/* The model's worker: a router over the workers of its backends. */
static int make_model_worker(const sl_config *cfg, const sl_cfg_model *mo, sl_worker **out,
                             char *err, size_t errlen)
{
	sl_router_backend rb[SL_ROUTER_MAX_BACKENDS];
	size_t n = mo->n_backends < SL_ROUTER_MAX_BACKENDS ? mo->n_backends : SL_ROUTER_MAX_BACKENDS;
	for (size_t j = 0; j < n; j++) {
		const sl_cfg_backend *be = sl_config_backend(cfg, mo->backends[j]);
		int rc = be ? make_worker(be, mo->name, &rb[j].worker) : SL_EINVAL;
		if (rc != SL_OK) {
			snprintf(err, errlen, "model %s: backend %s: %s", mo->name, mo->backends[j],
			         sl_strerror(rc));
			for (size_t k = 0; k < j; k++)
				sl_worker_destroy(rb[k].worker);
			return rc;
		}
		sl_worker *w = rb[j].worker;
		router_backend_of(be, &rb[j]);
		rb[j].worker = w;
		rb[j].weight = mo->weights ? mo->weights[j] : 0;
	}
	sl_router_opts ro = {.model = mo->name,
	                     .strategy = mo->routing,
	                     .max_attempts = mo->max_attempts,
	                     .backends = rb,
	                     .n_backends = (unsigned)n};
	char rerr[256];
	int rc = sl_worker_router_create(&ro, out, rerr, sizeof rerr);
	if (rc != SL_OK)
		snprintf(err, errlen, "model %s: %s", mo->name, rerr);
	return rc;
}

/* Builds model i's worker and pipeline into am. */
static int build_model(sl_runtime *rt, const sl_config *cfg, size_t i, app_model *am,
                       char *err, size_t errlen)
{
	const sl_cfg_model *mo = &cfg->models[i];
	const sl_cfg_pipeline *pl = sl_config_pipeline(cfg, mo->pipeline);
	if (!pl || mo->n_backends == 0) {
		snprintf(err, errlen, "model %s: pipeline or backend missing", mo->name);
		return SL_EINVAL;
	}
	int rc = make_model_worker(cfg, mo, &am->worker, err, errlen);
	if (rc != SL_OK)
		return rc;
	static const char *const none[] = {NULL};
	sl_stage_def st[SL_MAX_STAGES];
	memset(st, 0, sizeof st);
	for (size_t s = 0; s < pl->n_stages; s++) {
		const sl_cfg_stage *cs = &pl->stages[s];
		st[s].name = cs->name;
		st[s].ops = ops_for(cs->type);
		st[s].queue = cs->queue;
		st[s].concurrency = cs->concurrency;
		st[s].overflow = cs->overflow;
		st[s].timeout_ms = cs->timeout_ms;
		st[s].aging_ms = cs->aging_ms;
		st[s].displace = (uint8_t)(cs->displace != 0);
		/* the loader resolved the "previous stage" default: the lists are
		 * explicit, and an empty one is a root */
		st[s].after = cs->n_after ? (const char *const *)cs->after : none;
		st[s].n_after = (unsigned)cs->n_after;
		if (cs->type == SL_CFG_STAGE_DELAY) {
			am->delay[s].delay_us = cs->delay_ms * 1000u;
			st[s].cfg = &am->delay[s];
		}
	}
	/* its name is the definition's, plus the model when several models
	 * share a definition */
	char name[200];
	int shared = 0;
	for (size_t k = 0; k < cfg->n_models; k++)
		if (k != i && strcmp(cfg->models[k].pipeline, mo->pipeline) == 0)
			shared = 1;
	if (shared)
		snprintf(name, sizeof name, "%s:%s", pl->name, mo->name);
	else
		snprintf(name, sizeof name, "%s", pl->name);
	sl_pipeline_opts po = {.name = name, .stages = st, .n_stages = (unsigned)pl->n_stages,
	                       .worker = am->worker, .max_input = pl->max_input,
	                       .max_output = pl->max_output, .trace = pl->trace};
	char perr[256];
	rc = sl_pipeline_create(rt, &po, &am->pipeline, perr, sizeof perr);
	if (rc != SL_OK) {
		snprintf(err, errlen, "model %s: pipeline %s: %s", mo->name, pl->name, perr);
		sl_worker_destroy(am->worker);
		am->worker = NULL;
	}
	return rc;
}

int sl_app_build(sl_runtime *rt, const sl_config *cfg, sl_app **out, char *err,
                 size_t errlen)
{
	char dummy[8];
	if (!err || !errlen) {
		err = dummy;
		errlen = sizeof dummy;
	}
	err[0] = '\0';
	if (!rt || !cfg || !out || cfg->n_models == 0)
		return SL_EINVAL;
	sl_app *a = calloc(1, sizeof *a);
	if (!a)
		return SL_ENOMEM;
	a->n = cfg->n_models;
	a->routes = calloc(a->n, sizeof *a->routes);
	a->m = calloc(a->n, sizeof *a->m);
	if (!a->routes || !a->m) {
		sl_app_destroy(a);
		return SL_ENOMEM;
	}
	int rc = SL_OK;
	for (size_t i = 0; i < cfg->n_models && rc == SL_OK; i++) {
		rc = build_model(rt, cfg, i, &a->m[i], err, errlen);
		if (rc != SL_OK)
			break;
		a->routes[i].name = strdup(cfg->models[i].name);
		a->routes[i].pipeline = a->m[i].pipeline;
		a->routes[i].worker = a->m[i].worker;
		for (size_t j = 0; j < cfg->models[i].n_backends; j++) {
			const sl_cfg_backend *be = sl_config_backend(cfg, cfg->models[i].backends[j]);
			if (be && be->type == SL_CFG_BACKEND_OPENAI)
				a->routes[i].pass_messages = 1;
		}
		if (!a->routes[i].name)
			rc = SL_ENOMEM;
	}
	if (rc != SL_OK) {
		sl_app_destroy(a);
		return rc;
	}
	*out = a;
	return SL_OK;
}

int sl_pipeline_from_config(sl_runtime *rt, const sl_config *cfg, const char *model,
                            sl_pipeline **p, sl_worker **w, char *err, size_t errlen)
{
	char dummy[8];
	if (!err || !errlen) {
		err = dummy;
		errlen = sizeof dummy;
	}
	err[0] = '\0';
	if (!rt || !cfg || !model || !p || !w)
		return SL_EINVAL;
	for (size_t i = 0; i < cfg->n_models; i++) {
		if (strcmp(cfg->models[i].name, model) != 0)
			continue;
		/* the delay configs must outlive the pipeline's init (stage kinds
		 * copy their configuration at init), so a stack copy is enough */
		app_model am;
		memset(&am, 0, sizeof am);
		int rc = build_model(rt, cfg, i, &am, err, errlen);
		if (rc == SL_OK) {
			*p = am.pipeline;
			*w = am.worker;
		}
		return rc;
	}
	snprintf(err, errlen, "no model %s in the configuration", model);
	return SL_ENOTFOUND;
}

const sl_model_route *sl_app_routes(const sl_app *a, size_t *n)
{
	if (n)
		*n = a ? a->n : 0;
	return a ? a->routes : NULL;
}

int sl_app_drain(sl_app *a, uint64_t timeout_ms)
{
	if (!a)
		return SL_EINVAL;
	int rc = SL_OK;
	for (size_t i = 0; i < a->n; i++)
		if (a->m[i].pipeline && sl_pipeline_drain(a->m[i].pipeline, timeout_ms) != SL_OK)
			rc = SL_ETIMEDOUT;
	a->drained = 1;
	return rc;
}

void sl_app_destroy(sl_app *a)
{
	if (!a)
		return;
	for (size_t i = 0; a->m && i < a->n; i++) {
		sl_pipeline_destroy(a->m[i].pipeline);
		sl_worker_destroy(a->m[i].worker);
	}
	for (size_t i = 0; a->routes && i < a->n; i++)
		free((char *)a->routes[i].name);
	free(a->m);
	free(a->routes);
	free(a);
}
