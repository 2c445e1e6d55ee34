/* builtin.c - the built-in stage kinds of the default pipeline.
 *
 * rag        retrieval: with no retriever configured the stage passes the
 *            request through with no context (a configured retriever runs
 *            as the sl_stage_retrieve kind: stages/real.h).
 * assemble   builds the prompt: the input alone, or, when retrieval added
 *            context, "Context:\n<context>\n\nQuestion: <input>", retrieved
 *            sources as "[id] text" paragraphs (templates: stages/real.h).
 * inference  calls the pipeline's worker; tokens stream through the token
 *            filters of the later stages to the request's on_token.
 * post       joins the streamed tokens into the final text (the worker's
 *            output buffer already holds them joined; the stage fixes it as
 *            the result text).
 * stream     emits the result: the completion callback fires when the job
 *            leaves this stage, so this stage's queue bounds the results
 *            waiting to be delivered.
 * delay      test/benchmark kind that holds each job for a fixed time on a
 *            loop timer (a libevent common timeout: O(1) per job).
 */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include "pipeline/pipeline_int.h"
#include "stages/real.h"

/* ---- rag ---- */
static int pass_run(void *ss, sl_job *job)
{
	return SL_OK;
}

const sl_stage_ops sl_stage_rag = {.kind = "rag", .run = pass_run, .flags = SL_STAGE_INSTANT};

/* ---- assemble ---- */
/* Retrieval records (see stages/real.h) as "[id] text" paragraphs. */
static int docs_as_text(const char *ctx, size_t clen, sl_dynbuf *b)
{
	sl_tdoc docs[SL_RETRIEVE_MAX_K];
	size_t n = sl_stage_docs_parse(ctx, clen, docs, SL_RETRIEVE_MAX_K);
	int rc = SL_OK;
	for (size_t i = 0; i < n && i < SL_RETRIEVE_MAX_K && rc == SL_OK; i++) {
		const char *f = memchr(docs[i].id, '\x1f', (size_t)(docs[i].text - docs[i].id));
		size_t idl = f ? (size_t)(f - docs[i].id) : 0;
		rc = sl_dynbuf_printf(b, "%s[%.*s] ", i ? "\n\n" : "", (int)idl, docs[i].id);
		if (rc == SL_OK)
			rc = sl_dynbuf_add(b, docs[i].text, docs[i].text_len);
	}
	return rc;
}

static int assemble_run(void *ss, sl_job *job)
{
	size_t clen, ilen;
	const char *ctx = sl_job_context(job, &clen);
	if (clen == 0)
		return SL_OK; /* the prompt is the input as it came */
	sl_dynbuf recs;
	sl_dynbuf_init(&recs, (size_t)-1 / 2);
	if (ctx[0] == '\x1d' || ctx[0] == '\x1e') {
		int rc = docs_as_text(ctx, clen, &recs);
		if (rc != SL_OK) {
			sl_dynbuf_free(&recs);
			return rc;
		}
		ctx = sl_dynbuf_str(&recs);
		clen = recs.len;
	}
	const char *in = sl_job_input(job, &ilen);
	static const char head[] = "Context:\n", mid[] = "\n\nQuestion: ";
	size_t len = sizeof head - 1 + clen + sizeof mid - 1 + ilen;
	char *buf = malloc(len + 1);
	if (!buf) {
		sl_dynbuf_free(&recs);
		return SL_ENOMEM;
	}
	char *w = buf;
	memcpy(w, head, sizeof head - 1);
	w += sizeof head - 1;
	memcpy(w, ctx, clen);
	w += clen;
	memcpy(w, mid, sizeof mid - 1);
	w += sizeof mid - 1;
	memcpy(w, in, ilen);
	w += ilen;
	*w = '\0';
	int rc = sl_job_set_prompt(job, buf, len);
	free(buf);
	sl_dynbuf_free(&recs);
	return rc;
}

const sl_stage_ops sl_stage_assemble = {.kind = "assemble", .run = assemble_run};

/* ---- inference ---- */
static int inference_run(void *ss, sl_job *job)
{
	sl__req *req = job->req;
	sl_worker *w = req->ps->p->worker;
	int rc = w->ops->infer(req->ps->wss, &req->call);
	return rc == SL_OK ? SL_EPENDING : rc;
}

static void inference_cancel(void *ss, sl_job *job)
{
	sl__req *req = job->req;
	sl_worker *w = req->ps->p->worker;
	if (w->ops->cancel) {
		w->ops->cancel(req->ps->wss, &req->call);
	} else {
		job->zombie = 1; /* the call completes later; memory kept till then */
		req->zombies++;
	}
}

const sl_stage_ops sl_stage_inference = {
	.kind = "inference", .run = inference_run, .cancel = inference_cancel};

/* ---- post ---- */
static int post_run(void *ss, sl_job *job)
{
	/* Tokens were appended to the output buffer as they arrived, so the
	 * join is already done; nothing to copy. */
	return SL_OK;
}

const sl_stage_ops sl_stage_post = {.kind = "post", .run = post_run, .flags = SL_STAGE_INSTANT};

/* ---- stream ---- */
const sl_stage_ops sl_stage_stream = {.kind = "stream", .run = pass_run,
                                      .flags = SL_STAGE_INSTANT};

/* ---- delay ---- */
typedef struct delay_state {
	uint32_t us;
} delay_state;

typedef struct delay_ss {
	struct event_base *base;
	const struct timeval *tv; /* common timeout */
	struct timeval plain;
} delay_ss;

static int delay_init(const void *cfg, void **state)
{
	const sl_delay_cfg *c = cfg;
	if (!c)
		return SL_EINVAL;
	delay_state *s = malloc(sizeof *s);
	if (!s)
		return SL_ENOMEM;
	s->us = c->delay_us;
	*state = s;
	return SL_OK;
}

static int delay_start(void *state, struct event_base *base, unsigned shard, void **out)
{
	delay_state *s = state;
	delay_ss *d = malloc(sizeof *d);
	if (!d)
		return SL_ENOMEM;
	d->base = base;
	d->plain.tv_sec = s->us / 1000000u;
	d->plain.tv_usec = s->us % 1000000u;
	d->tv = event_base_init_common_timeout(base, &d->plain);
	if (!d->tv)
		d->tv = &d->plain;
	*out = d;
	return SL_OK;
}

static void delay_fire(evutil_socket_t fd, short what, void *arg)
{
	sl_job *job = arg;
	struct event *ev = *sl_job_stage_data(job);
	*sl_job_stage_data(job) = NULL;
	event_free(ev);
	sl_job_done(job, SL_OK, NULL);
}

static int delay_run(void *ssv, sl_job *job)
{
	delay_ss *d = ssv;
	struct event *ev = evtimer_new(d->base, delay_fire, job);
	if (!ev)
		return SL_ENOMEM;
	*sl_job_stage_data(job) = ev;
	evtimer_add(ev, d->tv);
	return SL_EPENDING;
}

static void delay_cancel(void *ssv, sl_job *job)
{
	struct event *ev = *sl_job_stage_data(job);
	if (ev) {
		event_free(ev);
		*sl_job_stage_data(job) = NULL;
	}
}

static void delay_stop(void *ssv)
{
	free(ssv);
}

static void delay_fini(void *state)
{
	free(state);
}

const sl_stage_ops sl_stage_delay = {
	.kind = "delay",
	.init = delay_init,
	.start = delay_start,
	.run = delay_run,
	.cancel = delay_cancel,
	.stop = delay_stop,
	.fini = delay_fini,
};
