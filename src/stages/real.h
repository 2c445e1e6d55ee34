/* real.h - stage kinds that do their real job: retrieval through a
 * retriever (BM25 index, ...), prompt assembly from templates under a token
 * budget, and PII redaction / safety filtering of the prompt or the output.
 *
 * Each kind takes a cfg (sl_stage_def.cfg) that the caller owns and keeps
 * alive while the pipeline lives (the config builder does).
 *
 * Hand-off between retrieval and assembly: each retrieval stage appends to
 * the request's context (sl_job_add_context) one block: 0x1D, then each hit
 * as a record
 *     0x1E id 0x1F score 0x1F text
 * sl_stage_docs_parse() reads them back; with several blocks (retrievers in
 * parallel: a fan-out in the pipeline DAG) it merges them by reciprocal
 * rank fusion (k = 60), one entry per document id, best first.  The built-in assemble stage
 * renders such records as "[id] text" paragraphs; the template stage gives
 * them to the template as {{#docs}}.
 */
#ifndef SL_STAGES_REAL_H
#define SL_STAGES_REAL_H
#include "assemble/assemble.h"
#include "post/redact.h"
#include "rag/retriever.h"
#include "sluice/sluice.h"

/* ---- retrieval ----
 * Query: the request's metadata "query" (the gateway sets the last user
 * message), else its input.  threads == 0 searches synchronously on the
 * shard thread (the in-memory BM25 index: microseconds); a retriever that
 * does I/O needs threads > 0. */
typedef struct sl_retrieve_cfg {
	const sl_retriever *retriever;
	unsigned k;              /* results per request, 1..SL_RETRIEVE_MAX_K */
	double min_score;        /* hits below are dropped; 0 = keep all */
	unsigned threads;        /* 0: search on the shard (CPU-bound retrievers);
	                          * > 0: on a pool of this many threads (I/O:
	                          * PostgreSQL, HTTP); results come back to the
	                          * shard, a cancelled request's are dropped */
	int skip_on_error;       /* a failed search: 0 = the request fails with
	                          * the retriever's reason; 1 = it goes on with
	                          * no sources (a warning is logged) */
} sl_retrieve_cfg;
#define SL_RETRIEVE_MAX_K 64
extern const sl_stage_ops sl_stage_retrieve;

/* ---- assembly from templates ----
 * Variables: query (metadata "query", else the input), messages (the input:
 * the transcript the gateway flattened), user, model (metadata), metadata.*
 * (every metadata key), docs (from retrieval).  The result replaces the
 * prompt.  A prompt that cannot fit the budget fails the request with
 * SL_ETOOBIG and the counts. */
typedef struct sl_assemble_stage_cfg {
	sl_assembly assembly;
	sl_assemble_opts opts;   /* format SL_ASM_PROMPT */
	int chat;                /* also assemble chat messages (system, few-shot
	                          * pairs, user) for chat backends, under the same
	                          * budget; the prompt stays the text form */
} sl_assemble_stage_cfg;
extern const sl_stage_ops sl_stage_assemble_template;

/* ---- redaction and safety ----
 * Placed before the inference stage: redacts the prompt (a safety match
 * fails the request with SL_EFILTER).  Placed after it: filters the token
 * stream with the streaming redactor (PII split across tokens is caught;
 * the hold-back is bounded by sl_redactor_max_holdback), flushes the held
 * tail when the worker is done, and fixes the final text to the redacted
 * one; a safety match stops the output at the match and the request
 * completes with finish_reason "content_filter". */
typedef struct sl_redact_stage_cfg {
	const sl_redactor *redactor;
} sl_redact_stage_cfg;
extern const sl_stage_ops sl_stage_redact;

/* Reads the retrieval records of a context: fills up to cap docs (pointers
 * into ctx; an id runs up to the 0x1F after it) and returns how many there
 * are (after fusion). */
size_t sl_stage_docs_parse(const char *ctx, size_t len, sl_tdoc *docs, size_t cap);

#endif
