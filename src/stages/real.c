/* real.c - retrieval, template assembly and redaction stages; see real.h. */
#include "stages/real.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "core/dynbuf.h"
#include "core/log.h"
#include "pipeline/pipeline_int.h"
#include "rag/remote.h"
#include "shard/pool.h"

#define REC '\x1e'
#define FLD '\x1f'
#define GRP '\x1d'

static const char *query_of(sl_job *job, size_t *len)
{
	const char *q = sl_job_meta(job, "query");
	if (q && *q) {
		*len = strlen(q);
		return q;
	}
	return sl_job_input(job, len);
}

/* ------------------------------------------------------------ retrieval */

typedef struct retr_state {
	const sl_retrieve_cfg *c;
	sl_pool *pool; /* threads > 0 */
} retr_state;

static int retrieve_init(const void *cfg, void **state)
{
	const sl_retrieve_cfg *c = cfg;
	if (!c || !c->retriever || !c->retriever->ops || c->k == 0 || c->k > SL_RETRIEVE_MAX_K)
		return SL_EINVAL;
	retr_state *s = calloc(1, sizeof *s);
	if (!s)
		return SL_ENOMEM;
	s->c = c;
	if (c->threads) {
		int rc = sl_pool_create(c->threads, c->threads * 64, &s->pool);
		if (rc != SL_OK) {
			free(s);
			return rc;
		}
	}
	*state = s;
	return SL_OK;
}

static void retrieve_fini(void *state)
{
	retr_state *s = state;
	if (!s)
		return;
	sl_pool_destroy(s->pool); /* runs what is queued; results find no shard */
	free(s);
}

static int retrieve_start(void *state, struct event_base *base, unsigned shard, void **ss)
{
	*ss = state;
	return SL_OK;
}

/* Hits -> one block of records. */
static int hits_to_block(const sl_retrieve_cfg *c, const sl_hit *hits, unsigned n, sl_dynbuf *b)
{
	/* one block per retrieval stage: fan-out results are fused by rank */
	int rc = sl_dynbuf_add(b, "\x1d", 1);
	for (unsigned i = 0; i < n && rc == SL_OK; i++) {
		if (c->min_score > 0 && hits[i].score < c->min_score)
			continue;
		char sc[32];
		snprintf(sc, sizeof sc, "%.6g", hits[i].score);
		const char *id = hits[i].doc_id ? hits[i].doc_id : "";
		rc = sl_dynbuf_add(b, "\x1e", 1);
		if (rc == SL_OK)
			rc = sl_dynbuf_addstr(b, id);
		if (rc == SL_OK)
			rc = sl_dynbuf_add(b, "\x1f", 1);
		if (rc == SL_OK)
			rc = sl_dynbuf_addstr(b, sc);
		if (rc == SL_OK)
			rc = sl_dynbuf_add(b, "\x1f", 1);
		if (rc == SL_OK)
			rc = sl_dynbuf_add(b, hits[i].text, hits[i].text_len);
	}
	return rc;
}

/* A search on the pool. */
typedef struct rjob {
	sl_pool_job pj;
	sl_post post;
	const sl_retrieve_cfg *c;
	sl_runtime *rt;
	unsigned shard;
	sl_job *job;      /* NULL once the request left the stage (shard thread) */
	char *query;
	size_t qlen;
	sl_dynbuf block;  /* the result */
	int rc;
	char err[256];
} rjob;

static void rjob_free(rjob *j)
{
	free(j->query);
	sl_dynbuf_free(&j->block);
	free(j);
}

/* Shard thread: the result is back. */
static void rjob_done(void *arg)
{
	rjob *j = arg;
	sl_job *job = j->job;
	if (!job) {
		rjob_free(j); /* cancelled meanwhile */
		return;
	}
	*sl_job_stage_data(job) = NULL;
	int rc = j->rc;
	if (rc == SL_OK && j->block.len > 1)
		rc = sl_job_add_context(job, sl_dynbuf_str(&j->block), j->block.len);
	if (rc != SL_OK && j->c->skip_on_error) {
		SL_LOG(SL_LOG_WARN, "event=retrieval_skipped req=%s reason=%s",
		       job->req->request_id, j->err[0] ? j->err : sl_strerror(rc));
		rc = SL_OK;
	}
	char err[300];
	snprintf(err, sizeof err, "retrieval failed: %s", j->err[0] ? j->err : sl_strerror(rc));
	rjob_free(j);
	sl_job_done(job, rc, rc == SL_OK ? NULL : err);
}

/* Pool thread. */
static void rjob_run(sl_pool_job *pj)
{
	rjob *j = (rjob *)pj;
	sl_hit hits[SL_RETRIEVE_MAX_K];
	unsigned n = 0;
	j->rc = sl_retriever_search(j->c->retriever, j->query, j->qlen, j->c->k, hits, &n);
	if (j->rc == SL_OK) {
		j->rc = hits_to_block(j->c, hits, n, &j->block);
		sl_retriever_release(j->c->retriever, hits, n);
	} else {
		snprintf(j->err, sizeof j->err, "%s", sl_remote_last_error());
	}
	j->post.fn = rjob_done;
	j->post.arg = j;
	if (sl_runtime_post(j->rt, j->shard, &j->post) != SL_OK)
		rjob_free(j); /* runtime stopping: nobody is waiting */
}

static int retrieve_run(void *ss, sl_job *job)
{
	const retr_state *st = ss;
	const sl_retrieve_cfg *c = st->c;
	size_t qlen;
	const char *q = query_of(job, &qlen);
	if (st->pool) {
		rjob *j = calloc(1, sizeof *j);
		if (!j || !(j->query = malloc(qlen + 1))) {
			free(j);
			return SL_ENOMEM;
		}
		memcpy(j->query, q, qlen);
		j->query[qlen] = '\0';
		j->qlen = qlen;
		j->c = c;
		j->job = job;
		j->rt = sl__req_runtime(job->req);
		j->shard = sl__req_shard(job->req);
		sl_dynbuf_init(&j->block, (size_t)-1 / 2);
		j->pj.run = rjob_run;
		*sl_job_stage_data(job) = j;
		int rc = sl_pool_submit(st->pool, &j->pj);
		if (rc != SL_OK) {
			*sl_job_stage_data(job) = NULL;
			rjob_free(j);
			return rc == SL_EAGAIN ? SL_ESHED : rc; /* the pool's queue is full */
		}
		return SL_EPENDING;
	}
	sl_hit hits[SL_RETRIEVE_MAX_K];
	unsigned n = 0;
	int rc = sl_retriever_search(c->retriever, q, qlen, c->k, hits, &n);
	if (rc != SL_OK)
		return c->skip_on_error ? SL_OK : rc;
	sl_dynbuf b;
	sl_dynbuf_init(&b, (size_t)-1 / 2);
	rc = hits_to_block(c, hits, n, &b);
	sl_retriever_release(c->retriever, hits, n);
	if (rc == SL_OK && b.len > 1)
		rc = sl_job_add_context(job, sl_dynbuf_str(&b), b.len);
	sl_dynbuf_free(&b);
	return rc;
}

static void retrieve_cancel(void *ss, sl_job *job)
{
	rjob *j = *sl_job_stage_data(job);
	if (j)
		j->job = NULL; /* its result is dropped when it comes back */
	*sl_job_stage_data(job) = NULL;
}

const sl_stage_ops sl_stage_retrieve = {.kind = "retrieve",
                                        .init = retrieve_init,
                                        .start = retrieve_start,
                                        .run = retrieve_run,
                                        .cancel = retrieve_cancel,
                                        .fini = retrieve_fini};

/* One record as read, with its block (retrieval stage) and rank there. */
typedef struct rec {
	sl_tdoc d;
	size_t id_len;
	unsigned block, rank;
	double fused;
} rec;

static size_t parse_records(const char *ctx, size_t len, rec *out, size_t cap, unsigned *blocks)
{
	size_t n = 0;
	unsigned block = 0, rank = 0;
	*blocks = 0;
	const char *p = ctx, *end = ctx + len;
	while (p < end) {
		if (*p == GRP) { /* a retrieval stage's block begins */
			block = (*blocks)++;
			rank = 0;
			p++;
			continue;
		}
		if (*p != REC) { /* not a record: a plain context from another stage */
			const char *nx = memchr(p, REC, (size_t)(end - p));
			const char *ng = memchr(p, GRP, (size_t)(end - p));
			if (ng && (!nx || ng < nx))
				nx = ng;
			p = nx ? nx : end;
			continue;
		}
		p++;
		const char *rend = p;
		while (rend < end && *rend != REC && *rend != GRP)
			rend++;
		const char *f1 = memchr(p, FLD, (size_t)(rend - p));
		const char *f2 = f1 ? memchr(f1 + 1, FLD, (size_t)(rend - f1 - 1)) : NULL;
		if (f1 && f2) {
			if (n < cap) {
				rec *r = &out[n];
				r->d.id = p;
				r->id_len = (size_t)(f1 - p);
				r->d.text = f2 + 1;
				r->d.text_len = (size_t)(rend - f2 - 1);
				char sc[32];
				size_t sl = (size_t)(f2 - f1 - 1) < sizeof sc - 1 ? (size_t)(f2 - f1 - 1)
				                                                   : sizeof sc - 1;
				memcpy(sc, f1 + 1, sl);
				sc[sl] = '\0';
				r->d.score = strtod(sc, NULL);
				r->block = block;
				r->rank = rank;
			}
			rank++;
			n++;
		}
		p = rend;
	}
	return n < cap ? n : cap;
}

static int by_fused(const void *a, const void *b)
{
	const rec *x = a, *y = b;
	double d = x->fused - y->fused;
	if (d > 1e-12 || d < -1e-12) /* sums of the same terms in another order tie */
		return d > 0 ? -1 : 1;
	return x->rank != y->rank ? (x->rank < y->rank ? -1 : 1) : (x->block < y->block ? -1 : 1);
}

#define RRF_K 60.0 /* Cormack, Clarke & Buettcher 2009 */

size_t sl_stage_docs_parse(const char *ctx, size_t len, sl_tdoc *docs, size_t cap)
{
	rec r[SL_MAX_STAGES * SL_RETRIEVE_MAX_K];
	unsigned blocks;
	size_t n = parse_records(ctx, len, r, sizeof r / sizeof r[0], &blocks);
	if (blocks > 1) {
		/* several retrievers (a fan-out): reciprocal rank fusion, one entry
		 * per document id, its score the fused score */
		size_t m = 0;
		for (size_t i = 0; i < n; i++) {
			size_t j;
			for (j = 0; j < m; j++)
				if (r[j].id_len == r[i].id_len && memcmp(r[j].d.id, r[i].d.id, r[i].id_len) == 0)
					break;
			double add = 1.0 / (RRF_K + 1.0 + r[i].rank);
			if (j < m) {
				r[j].fused += add;
				if (r[i].rank < r[j].rank) { /* ties go by the best rank's retriever */
					r[j].rank = r[i].rank;
					r[j].block = r[i].block;
				}
			} else {
				r[m] = r[i];
				r[m].fused = add;
				m++;
			}
		}
		n = m;
		qsort(r, n, sizeof r[0], by_fused);
		for (size_t i = 0; i < n; i++)
			r[i].d.score = r[i].fused;
	}
	for (size_t i = 0; i < n && i < cap; i++)
		docs[i] = r[i].d;
	return n;
}

/* The id of a parsed doc ends at the field separator. */
static size_t doc_id_len(const sl_tdoc *d)
{
	const char *f = strchr(d->id, FLD);
	return f ? (size_t)(f - d->id) : strlen(d->id);
}

/* ------------------------------------------------------------ assembly */

static int asm_init(const void *cfg, void **state)
{
	const sl_assemble_stage_cfg *c = cfg;
	if (!c || !c->assembly.user)
		return SL_EINVAL;
	*state = (void *)c;
	return SL_OK;
}

static int asm_start(void *state, struct event_base *base, unsigned shard, void **ss)
{
	*ss = state;
	return SL_OK;
}

#define ASM_MAX_DOCS SL_RETRIEVE_MAX_K

static int asm_run(void *ss, sl_job *job)
{
	const sl_assemble_stage_cfg *c = ss;
	sl__req *req = job->req;
	size_t clen, qlen, ilen;
	const char *ctx = sl_job_context(job, &clen);
	const char *q = query_of(job, &qlen);
	const char *in = sl_job_input(job, &ilen);
	sl_tdoc docs[ASM_MAX_DOCS];
	size_t nd = sl_stage_docs_parse(ctx, clen, docs, ASM_MAX_DOCS);
	if (nd > ASM_MAX_DOCS)
		nd = ASM_MAX_DOCS;
	/* NUL-terminated ids for the renderer */
	char ids[ASM_MAX_DOCS][128];
	for (size_t i = 0; i < nd; i++) {
		size_t l = doc_id_len(&docs[i]);
		if (l >= sizeof ids[i])
			l = sizeof ids[i] - 1;
		memcpy(ids[i], docs[i].id, l);
		ids[i][l] = '\0';
		docs[i].id = ids[i];
	}
	/* variables: query, messages, user, model, and every metadata key */
	size_t nv = 0;
	sl_kv vars[4 + 32];
	vars[nv++] = (sl_kv){.key = "query", .value = q};
	/* the transcript, when there is more to it than the question */
	if (!(ilen == qlen && memcmp(in, q, qlen) == 0))
		vars[nv++] = (sl_kv){.key = "messages", .value = in};
	const char *user = sl_job_meta(job, "user");
	const char *model = sl_job_meta(job, "model");
	if (user)
		vars[nv++] = (sl_kv){.key = "user", .value = user};
	if (model)
		vars[nv++] = (sl_kv){.key = "model", .value = model};
	char mkeys[32][80];
	for (size_t i = 0; i < req->n_meta && i < 32; i++) {
		snprintf(mkeys[i], sizeof mkeys[i], "metadata.%s", req->meta[i].key);
		vars[nv++] = (sl_kv){.key = mkeys[i], .value = req->meta[i].value};
	}
	sl_tvars tv = {.vars = vars, .n_vars = nv, .docs = docs, .n_docs = nd};
	sl_dynbuf out;
	sl_dynbuf_init(&out, req->ps->p->max_input);
	sl_assemble_info info;
	char err[256];
	err[0] = '\0';
	int rc = sl_assemble_fit(&c->assembly, &tv, &c->opts, &out, &info, err, sizeof err);
	if (rc == SL_OK)
		rc = sl_job_set_prompt(job, sl_dynbuf_str(&out), out.len);
	if (rc == SL_OK && c->chat) {
		sl_assemble_opts co = c->opts;
		co.format = SL_ASM_CHAT;
		sl_dynbuf_reset(&out);
		rc = sl_assemble_fit(&c->assembly, &tv, &co, &out, &info, err, sizeof err);
		if (rc == SL_OK)
			rc = sl_job_set_messages(job, sl_dynbuf_str(&out), out.len);
	}
	sl_dynbuf_free(&out);
	if (rc != SL_OK && err[0]) {
		/* the failure carries the reason (e.g. the token counts) */
		sl_job_done(job, rc, err);
		return SL_EPENDING;
	}
	return rc;
}

const sl_stage_ops sl_stage_assemble_template = {
	.kind = "assemble_template", .init = asm_init, .start = asm_start, .run = asm_run};

/* ------------------------------------------------------------ redaction */

typedef struct red_job {
	sl_redact_stream *s;
	sl_dynbuf out;
	int blocked;
} red_job;

static void red_job_free(void *p)
{
	red_job *rj = p;
	sl_redact_stream_free(rj->s);
	sl_dynbuf_free(&rj->out);
	free(rj);
}

static int red_init(const void *cfg, void **state)
{
	const sl_redact_stage_cfg *c = cfg;
	if (!c || !c->redactor)
		return SL_EINVAL;
	*state = (void *)c;
	return SL_OK;
}

static int red_start(void *state, struct event_base *base, unsigned shard, void **ss)
{
	*ss = state;
	return SL_OK;
}

static int before_inference(const sl_job *job)
{
	return job->stage < job->req->ps->p->inference;
}

static red_job *red_job_of(const sl_redact_stage_cfg *c, sl_job *job)
{
	void **d = sl_job_stage_data(job);
	if (*d)
		return *d;
	red_job *rj = calloc(1, sizeof *rj);
	if (!rj)
		return NULL;
	if (sl_redact_stream_new(c->redactor, &rj->s) != SL_OK) {
		free(rj);
		return NULL;
	}
	sl_dynbuf_init(&rj->out, (size_t)-1 / 2);
	*d = rj;
	sl_job_set_data_free(job, red_job_free);
	return rj;
}

static void red_token(void *ss, sl_job *job, const char *text, size_t len)
{
	const sl_redact_stage_cfg *c = ss;
	red_job *rj = red_job_of(c, job);
	if (!rj) {
		sl_job_stop_output(job, "length"); /* out of memory: stop, never leak */
		return;
	}
	if (rj->blocked)
		return;
	sl_dynbuf_reset(&rj->out);
	int rc = sl_redact_stream_push(rj->s, text, len, &rj->out);
	if (rj->out.len)
		sl_job_emit(job, sl_dynbuf_str(&rj->out), rj->out.len);
	if (rc == SL_EFILTER) {
		rj->blocked = 1;
		sl_job_stop_output(job, "content_filter");
	} else if (rc != SL_OK) {
		rj->blocked = 1;
		sl_job_stop_output(job, "length");
	}
}

/* The chat messages a template stage assembled, each content redacted.
 * SL_EFILTER when a safety rule matched. */
static int redact_messages(const sl_redact_stage_cfg *c, sl_job *job)
{
	const char *mj = job->req->messages;
	if (!mj)
		return SL_OK;
	json_t *doc = json_loads(mj, 0, NULL);
	if (!json_is_array(doc)) {
		json_decref(doc);
		return SL_EINVAL;
	}
	int rc = SL_OK;
	size_t i;
	json_t *m;
	sl_dynbuf out;
	sl_dynbuf_init(&out, (size_t)-1 / 2);
	json_array_foreach(doc, i, m) {
		json_t *ct = json_object_get(m, "content");
		if (!json_is_string(ct))
			continue;
		int blocked = 0;
		sl_dynbuf_reset(&out);
		rc = sl_redact_text(c->redactor, json_string_value(ct), json_string_length(ct), &out,
		                    &blocked, NULL);
		if (rc == SL_OK && blocked)
			rc = SL_EFILTER;
		if (rc != SL_OK)
			break;
		json_object_set_new(m, "content", json_stringn(sl_dynbuf_str(&out), out.len));
	}
	sl_dynbuf_free(&out);
	if (rc == SL_OK) {
		char *t = json_dumps(doc, JSON_COMPACT);
		rc = t ? sl_job_set_messages(job, t, strlen(t)) : SL_ENOMEM;
		free(t);
	}
	json_decref(doc);
	return rc;
}

static int red_run(void *ss, sl_job *job)
{
	const sl_redact_stage_cfg *c = ss;
	if (before_inference(job)) {
		int mrc = redact_messages(c, job);
		if (mrc == SL_EFILTER) {
			sl_job_done(job, SL_EFILTER, "the prompt was blocked by the content filter");
			return SL_EPENDING;
		}
		if (mrc != SL_OK)
			return mrc;
		size_t plen;
		const char *pr = sl_job_prompt(job, &plen);
		sl_dynbuf out;
		sl_dynbuf_init(&out, (size_t)-1 / 2);
		int blocked = 0;
		int rc = sl_redact_text(c->redactor, pr, plen, &out, &blocked, NULL);
		if (rc == SL_OK && blocked) {
			sl_dynbuf_free(&out);
			sl_job_done(job, SL_EFILTER, "the prompt was blocked by the content filter");
			return SL_EPENDING;
		}
		if (rc == SL_OK && (out.len != plen || memcmp(sl_dynbuf_str(&out), pr, plen) != 0))
			rc = sl_job_set_prompt(job, sl_dynbuf_str(&out), out.len);
		sl_dynbuf_free(&out);
		return rc;
	}
	/* after inference: flush what the stream held back, then fix the final
	 * text to the redacted whole (byte-identical to the streamed pieces) */
	red_job *rj = *sl_job_stage_data(job);
	if (rj && !rj->blocked) {
		sl_dynbuf_reset(&rj->out);
		int rc = sl_redact_stream_finish(rj->s, &rj->out);
		if (rj->out.len)
			sl_job_emit(job, sl_dynbuf_str(&rj->out), rj->out.len);
		if (rc == SL_EFILTER)
			sl_job_stop_output(job, "content_filter");
	}
	size_t tlen;
	const char *t = sl_job_text(job, &tlen);
	sl_dynbuf out;
	sl_dynbuf_init(&out, (size_t)-1 / 2);
	int blocked = 0;
	int rc = sl_redact_text(c->redactor, t, tlen, &out, &blocked, NULL);
	if (rc == SL_OK) {
		if (blocked)
			sl_job_stop_output(job, "content_filter");
		rc = sl_job_set_text(job, sl_dynbuf_str(&out), out.len);
	}
	sl_dynbuf_free(&out);
	return rc;
}

const sl_stage_ops sl_stage_redact = {.kind = "redact",
                                      .init = red_init,
                                      .start = red_start,
                                      .run = red_run,
                                      .on_token = red_token};
