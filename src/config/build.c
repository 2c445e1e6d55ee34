/* build.c - sl_config -> workers, pipelines, routes; see build.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "config/build.h"
#include "sluice/config.h"
#include "worker/openai/openai.h"
#include "worker/router/router.h"
#include <jansson.h>
#include <libgen.h>
#include <sys/stat.h>
#include "core/log.h"
#include "rag/bm25.h"
#include "rag/remote.h"
#include "stages/real.h"

_Static_assert(SL_PII_EMAIL == 1u << 0 && SL_PII_SECRET == 1u << 7,
               "config.c's class names follow SL_PII_* bit order");

/* What the real stages of one pipeline use (their cfg points here); freed
 * by the pipeline's on_destroy. */
typedef struct stage_res {
	int has_retriever;
	sl_retriever retriever;
	sl_retrieve_cfg rcfg;
	sl_template *user_t, *sys_t;
	sl_fewshot *examples;
	json_t *examples_doc;
	sl_assemble_stage_cfg acfg;
	sl_redactor *redactor;
	sl_redact_stage_cfg dcfg;
} stage_res;

typedef struct pipe_res {
	size_t n;
	stage_res s[SL_MAX_STAGES];
} pipe_res;

static void pipe_res_free(void *arg)
{
	pipe_res *pr = arg;
	if (!pr)
		return;
	for (size_t i = 0; i < pr->n; i++) {
		stage_res *r = &pr->s[i];
		if (r->has_retriever)
			sl_retriever_destroy(&r->retriever);
		sl_template_free(r->user_t);
		sl_template_free(r->sys_t);
		free(r->examples);
		json_decref(r->examples_doc);
		sl_redactor_destroy(r->redactor);
	}
	free(pr);
}

/* A path of the file, relative to the config file's folder. */
static void resolve(const sl_config *cfg, const char *path, char *out, size_t cap)
{
	if (path[0] == '/' || !cfg->file || cfg->file[0] == '<' || !strchr(cfg->file, '/')) {
		snprintf(out, cap, "%s", path);
		return;
	}
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", cfg->file);
	snprintf(out, cap, "%s/%s", dirname(dir), path);
}

static int build_remote(const sl_cfg_stage *cs, stage_res *r, char *err, size_t errlen)
{
	const sl_cfg_retriever *rc = &cs->retriever;
	char e[300];
	int code;
	if (rc->type == SL_CFG_RETRIEVER_PG) {
		sl_pg_opts o = {.conninfo = rc->conninfo,
		                .table = rc->table,
		                .id_column = rc->id_column,
		                .text_column = rc->text_column,
		                .tsv_column = rc->tsv_column,
		                .language = rc->language,
		                .pool = rc->threads,
		                .timeout_ms = rc->timeout_ms};
		code = sl_pg_retriever(&o, &r->retriever, e, sizeof e);
	} else {
		sl_http_retriever_opts o = {.url = rc->url, .timeout_ms = rc->timeout_ms};
		code = sl_http_retriever(&o, &r->retriever, e, sizeof e);
	}
	if (code != SL_OK) {
		snprintf(err, errlen, "stage %s: %s", cs->name, e);
		return code;
	}
	r->has_retriever = 1;
	r->rcfg = (sl_retrieve_cfg){.retriever = &r->retriever,
	                            .k = rc->k,
	                            .min_score = rc->min_score,
	                            .threads = rc->threads,
	                            .skip_on_error = rc->skip_on_error};
	return SL_OK;
}

static int build_retriever(const sl_config *cfg, const sl_cfg_stage *cs, stage_res *r,
                           char *err, size_t errlen)
{
	const sl_cfg_retriever *rc = &cs->retriever;
	if (rc->type != SL_CFG_RETRIEVER_BM25)
		return build_remote(cs, r, err, errlen);
	char corpus[4096], index[4096];
	resolve(cfg, rc->corpus, corpus, sizeof corpus);
	if (rc->index)
		resolve(cfg, rc->index, index, sizeof index);
	sl_bm25 *idx = NULL;
	sl_bm25_report rep;
	memset(&rep, 0, sizeof rep);
	struct stat sb;
	int rcode;
	if (rc->index && stat(index, &sb) == 0) {
		rcode = sl_bm25_load(index, &idx, &rep);
		if (rcode != SL_OK) {
			snprintf(err, errlen, "stage %s: retriever index %s: %s", cs->name, index,
			         rep.err[0] ? rep.err : sl_strerror(rcode));
			return rcode;
		}
		sl_bm25_set_params(idx, rc->k1, rc->b);
	} else {
		if (stat(corpus, &sb) != 0 && !rc->required) {
			SL_LOG(SL_LOG_WARN, "event=retriever_skipped stage=%s corpus=%s reason=missing",
			       cs->name, corpus);
			return SL_OK; /* passes requests through */
		}
		sl_bm25_opts o;
		sl_bm25_opts_default(&o);
		o.k1 = rc->k1;
		o.b = rc->b;
		o.stopwords = rc->stopwords;
		o.progress = sl_bm25_progress_stderr; /* a line now and then on a large corpus */
		rcode = sl_bm25_build(corpus, &o, &idx, &rep);
		if (rcode != SL_OK) {
			snprintf(err, errlen, "stage %s: retriever corpus %s: %s", cs->name, corpus,
			         rep.err[0] ? rep.err : sl_strerror(rcode));
			return rcode;
		}
		if (rc->index && sl_bm25_save(idx, index, &rep) != SL_OK)
			SL_LOG(SL_LOG_WARN, "event=retriever_index_not_saved stage=%s index=%s", cs->name,
			       index);
	}
	if ((rcode = sl_bm25_retriever(idx, &r->retriever)) != SL_OK) {
		sl_bm25_destroy(idx);
		return rcode;
	}
	r->has_retriever = 1;
	r->rcfg = (sl_retrieve_cfg){.retriever = &r->retriever, .k = rc->k, .min_score = rc->min_score};
	return SL_OK;
}

static int build_assembly(const sl_config *cfg, const sl_cfg_stage *cs, stage_res *r,
                          int chat, char *err, size_t errlen)
{
	const sl_cfg_template *t = &cs->tmpl;
	char path[4096], terr[512];
	resolve(cfg, t->user, path, sizeof path);
	int rc = sl_template_load(path, NULL, &r->user_t, terr, sizeof terr);
	if (rc == SL_OK && t->system) {
		resolve(cfg, t->system, path, sizeof path);
		rc = sl_template_load(path, NULL, &r->sys_t, terr, sizeof terr);
	}
	if (rc != SL_OK) {
		snprintf(err, errlen, "stage %s: template: %s", cs->name, terr);
		return rc;
	}
	size_t n_ex = 0;
	if (t->examples) {
		resolve(cfg, t->examples, path, sizeof path);
		json_error_t je;
		r->examples_doc = json_load_file(path, 0, &je);
		if (!json_is_array(r->examples_doc)) {
			snprintf(err, errlen, "stage %s: examples %s:%d: %s", cs->name, path, je.line,
			         r->examples_doc ? "expected an array of {\"user\",\"assistant\"}" : je.text);
			return SL_EINVAL;
		}
		n_ex = json_array_size(r->examples_doc);
		r->examples = calloc(n_ex ? n_ex : 1, sizeof *r->examples);
		if (!r->examples)
			return SL_ENOMEM;
		for (size_t i = 0; i < n_ex; i++) {
			json_t *e = json_array_get(r->examples_doc, i);
			const char *u = json_string_value(json_object_get(e, "user"));
			const char *a = json_string_value(json_object_get(e, "assistant"));
			if (!u || !a) {
				snprintf(err, errlen, "stage %s: examples %s: entry %zu needs string "
				         "\"user\" and \"assistant\"", cs->name, path, i);
				return SL_EINVAL;
			}
			r->examples[i] = (sl_fewshot){.user = u, .assistant = a};
		}
	}
	r->acfg.assembly = (sl_assembly){.system = r->sys_t, .user = r->user_t,
	                                 .examples = r->examples, .n_examples = n_ex};
	r->acfg.opts = (sl_assemble_opts){.max_prompt_tokens = t->max_prompt_tokens,
	                                  .format = SL_ASM_PROMPT};
	/* chat backends get the messages form (system, few-shot pairs, user) */
	r->acfg.chat = chat;
	return SL_OK;
}

static int build_redactor(const sl_cfg_stage *cs, stage_res *r, char *err, size_t errlen)
{
	const sl_cfg_redact *d = &cs->redact;
	sl_redact_custom cu[64];
	for (size_t i = 0; i < d->n_custom && i < 64; i++)
		cu[i] = (sl_redact_custom){.name = d->custom_name[i],
		                           .pattern = d->custom_pattern[i],
		                           .replacement = d->custom_replacement[i],
		                           .max_len = d->custom_max_len[i]};
	sl_redact_opts o = {.classes = d->classes,
	                    .custom = cu,
	                    .n_custom = d->n_custom,
	                    .block_terms = (const char *const *)d->block_terms,
	                    .n_block_terms = d->n_block_terms,
	                    .block_patterns = (const char *const *)d->block_patterns,
	                    .n_block_patterns = d->n_block_patterns};
	char rerr[512];
	int rc = sl_redactor_create(&o, &r->redactor, rerr, sizeof rerr);
	if (rc != SL_OK) {
		snprintf(err, errlen, "stage %s: %s", cs->name, rerr);
		return rc;
	}
	r->dcfg.redactor = r->redactor;
	return SL_OK;
}

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
	case SL_CFG_STAGE_REDACT: return &sl_stage_redact;
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
	oo.transport = b->transport == SL_CFG_TRANSPORT_NATIVE ? SL_OPENAI_TRANSPORT_NATIVE
	               : b->transport == SL_CFG_TRANSPORT_CURL ? SL_OPENAI_TRANSPORT_CURL
	                                                       : SL_OPENAI_TRANSPORT_AUTO;
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
	pipe_res *pr = calloc(1, sizeof *pr);
	if (!pr) {
		sl_worker_destroy(am->worker);
		am->worker = NULL;
		return SL_ENOMEM;
	}
	pr->n = pl->n_stages;
	for (size_t s = 0; s < pl->n_stages && rc == SL_OK; s++) {
		const sl_cfg_stage *cs = &pl->stages[s];
		stage_res *r = &pr->s[s];
		st[s].name = cs->name;
		st[s].ops = ops_for(cs->type);
		if (cs->type == SL_CFG_STAGE_RAG && cs->retriever.set) {
			rc = build_retriever(cfg, cs, r, err, errlen);
			if (rc == SL_OK && r->has_retriever) {
				st[s].ops = &sl_stage_retrieve;
				st[s].cfg = &r->rcfg;
			}
		} else if (cs->type == SL_CFG_STAGE_ASSEMBLE && cs->tmpl.user) {
			int chat = 0; /* the model has a chat (OpenAI-compatible) backend */
			for (size_t j = 0; j < mo->n_backends; j++) {
				const sl_cfg_backend *be = sl_config_backend(cfg, mo->backends[j]);
				chat |= be && be->type == SL_CFG_BACKEND_OPENAI;
			}
			rc = build_assembly(cfg, cs, r, chat, err, errlen);
			st[s].ops = &sl_stage_assemble_template;
			st[s].cfg = &r->acfg;
		} else if (cs->type == SL_CFG_STAGE_REDACT) {
			rc = build_redactor(cs, r, err, errlen);
			st[s].cfg = &r->dcfg;
		}
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
	if (rc != SL_OK) {
		char e2[600];
		snprintf(e2, sizeof e2, "model %s: pipeline %s: %s", mo->name, pl->name, err);
		snprintf(err, errlen, "%s", e2);
		pipe_res_free(pr);
		sl_worker_destroy(am->worker);
		am->worker = NULL;
		return rc;
	}
	sl_pipeline_opts po = {.name = name, .stages = st, .n_stages = (unsigned)pl->n_stages,
	                       .worker = am->worker, .max_input = pl->max_input,
	                       .max_output = pl->max_output, .trace = pl->trace,
	                       .on_destroy = pipe_res_free, .on_destroy_arg = pr};
	char perr[256];
	rc = sl_pipeline_create(rt, &po, &am->pipeline, perr, sizeof perr);
	if (rc != SL_OK) {
		snprintf(err, errlen, "model %s: pipeline %s: %s", mo->name, pl->name, perr);
		pipe_res_free(pr);
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
