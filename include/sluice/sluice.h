/*
 * sluice.h - public API of libsluice, a multi-stage LLM pipeline orchestrator.
 *
 * Model
 * -----
 * A runtime (sl_runtime) owns N shards: one event-loop thread each, pinned to
 * one CPU of the process's affinity mask.  A pipeline (sl_pipeline) is an
 * ordered list of stages (RAG -> Assemble -> Inference -> Post -> Stream by
 * default); every shard runs its own copy of the pipeline, so a stage's queue
 * capacity and concurrency are per shard.  A request lives on shard
 * sl_shard_for_session() of its session for its whole life; no lock is taken
 * on its path once it has been handed to that shard.
 *
 * Every request accepted by sl_pipeline_submit() ends exactly once, with one
 * of the outcomes of sl_outcome, delivered to its on_done callback on the
 * request's shard thread.  The counters of sl_pipeline_snapshot() satisfy
 *   submitted = completed + failed + shed + cancelled + expired + in_flight
 * at every snapshot.
 *
 * Threading words used below:
 *   "any thread"        - may be called from any thread, concurrently.
 *   "shard thread"      - runs on (or must be called from) the shard thread
 *                         that owns the object.
 *   "not concurrently"  - the caller serialises calls on the same object.
 *
 * Status codes: every function that can fail returns an int, 0 (SL_OK) on
 * success and a negative sl_status on failure; sl_strerror() names it.
 */
#ifndef SLUICE_SLUICE_H
#define SLUICE_SLUICE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SLUICE_VERSION "0.1.0"

/* ------------------------------------------------------------------ status */

typedef enum sl_status {
	SL_OK = 0,
	SL_EINVAL = -1,     /* invalid argument or configuration value */
	SL_ENOMEM = -2,     /* allocation failed */
	SL_EAGAIN = -3,     /* queue full under "block": retry when ready */
	SL_ESHED = -4,      /* refused by a full queue under "shed" */
	SL_ECLOSED = -5,    /* the pipeline or queue is draining or closed */
	SL_ETOOBIG = -6,    /* input or output over the configured maximum */
	SL_ECANCELED = -7,  /* cancelled by the caller or by drain */
	SL_ETIMEDOUT = -8,  /* deadline or stage timeout expired */
	SL_EWORKER = -9,    /* the model worker failed */
	SL_ESYS = -10,      /* a system call failed (errno in the log) */
	SL_ENOTFOUND = -11, /* no such request, model, key or file */
	SL_ESTATE = -12,    /* call not valid in the object's current state */
	SL_EUPSTREAM = -13, /* the upstream model server returned an error */
	SL_EEMPTY = -14,    /* queue empty (non-blocking pop) */
	SL_EPENDING = -15,  /* stage/worker will complete later (not an error) */
	SL_EFILTER = -16,   /* a content filter ended the response */
	SL_EUNAVAIL = -17,  /* no backend may take the call (circuits open) */
	SL__STATUS_MIN = -17
} sl_status;

/* Returns a static, human-readable text for a status code (any thread).
 * Unknown codes give "unknown status". */
const char *sl_strerror(int status);

/* Returns the short symbolic name ("SL_ESHED") of a status code. */
const char *sl_status_name(int status);

/* ---------------------------------------------------------------- outcomes */

typedef enum sl_outcome {
	SL_OUTCOME_COMPLETED = 0,
	SL_OUTCOME_FAILED = 1,
	SL_OUTCOME_SHED = 2,
	SL_OUTCOME_CANCELLED = 3,
	SL_OUTCOME_EXPIRED = 4,
	SL_OUTCOME__COUNT = 5
} sl_outcome;

/* "completed", "failed", "shed", "cancelled", "expired". */
const char *sl_outcome_name(sl_outcome o);

/* ---------------------------------------------------------------- runtime */

typedef struct sl_runtime sl_runtime;

#define SL_DEFAULT_SHARDS 0 /* 0 = number of CPUs in the affinity mask */
#define SL_MAX_SHARDS 256

typedef struct sl_runtime_opts {
	unsigned shards; /* 0 = CPUs in sched_getaffinity() mask */
	int no_pin;      /* 1 = do not pin shard threads to CPUs */
} sl_runtime_opts;

/* Creates a runtime and starts its shard threads (each runs an event loop).
 * opts may be NULL for defaults.  Any thread; not from a shard thread.
 * Returns SL_OK and sets *out, or SL_EINVAL (shards > SL_MAX_SHARDS),
 * SL_ENOMEM, SL_ESYS. */
int sl_runtime_create(const sl_runtime_opts *opts, sl_runtime **out);

/* Stops the shard threads and frees the runtime.  Every pipeline built on it
 * must have been destroyed first.  NULL is a no-op.  Not from a shard thread. */
void sl_runtime_destroy(sl_runtime *rt);

/* Number of shards (any thread). */
unsigned sl_runtime_shards(const sl_runtime *rt);

/* The shard a session belongs to: xxHash64(session) % shards.  The same
 * session always maps to the same shard (the seed's shard_session()).
 * len may be (size_t)-1 for a NUL-terminated string. */
unsigned sl_shard_for_session(const char *session, size_t len, unsigned shards);

/* The libevent event_base of shard i, for code that runs on that shard's
 * loop (listeners, upstream clients).  Touch it only from shard i's thread or
 * through sl_runtime_post(). Returns NULL when i is out of range. */
struct event_base *sl_runtime_base(sl_runtime *rt, unsigned i);

/* Index of the shard whose thread is calling, or -1 off-shard (any thread). */
int sl_runtime_current_shard(const sl_runtime *rt);

/* Runs fn(arg) on shard i's thread, soon (any thread).  The post never fails
 * for lack of space: it uses the caller-provided node, which must stay valid
 * until fn runs (embed it in arg).  Returns SL_EINVAL for a bad index,
 * SL_ECLOSED once the runtime is stopping (fn will not run). */
typedef struct sl_post {
	void *_next; /* private */
	void (*fn)(void *arg);
	void *arg;
} sl_post;
int sl_runtime_post(sl_runtime *rt, unsigned i, sl_post *node);

/* ---------------------------------------------------------------- requests */

typedef struct sl_kv {
	const char *key;
	const char *value;
} sl_kv;

typedef struct sl_request_handle {
	uint64_t id; /* unique within the runtime's life; never 0 */
} sl_request_handle;

#define SL_PRIORITY_LEVELS 4 /* 0 = lowest .. 3 = highest */
#define SL_PRIORITY_DEFAULT 1

typedef struct sl_result sl_result;

/* Called once per streamed token, after post-processing filters, on the
 * request's shard thread.  text is valid only during the call. */
typedef void (*sl_token_fn)(void *user, const char *text, size_t len);

/* Called exactly once per accepted request, on its shard thread.  The result
 * and everything it points to are valid only during the call; copy what you
 * keep.  The callback must not block. */
typedef void (*sl_done_fn)(void *user, const sl_result *result);

/* Called on the request's shard thread when a worker reports an attribute
 * of the call in progress (sl_infer_annotate), e.g. key "backend" with the
 * name of the backend a router chose.  key and value are valid only during
 * the call.  A later call with the same key supersedes the earlier one. */
typedef void (*sl_attr_fn)(void *user, const char *key, const char *value);

/* Inference parameters a worker may honour. Zero/negative = not set. */
typedef struct sl_infer_params {
	int max_tokens;     /* 0 = worker default */
	double temperature; /* < 0 = not set */
	double top_p;       /* < 0 = not set */
	int64_t seed;       /* meaningful when has_seed */
	int has_seed;
	const char *const *stop; /* NULL-terminated list, may be NULL */
} sl_infer_params;

/* A request as the caller describes it.  Everything is copied by
 * sl_pipeline_submit(); the caller may free it as soon as submit returns. */
typedef struct sl_request {
	const char *request_id; /* optional; generated ("req-<hex>") when NULL */
	const char *session;    /* required, non-empty: affinity key */
	const char *input;      /* required, non-empty (may contain NULs if len) */
	size_t input_len;       /* (size_t)-1 = strlen(input) */
	const sl_kv *meta;      /* optional metadata, n_meta pairs */
	size_t n_meta;
	int priority;           /* 0..SL_PRIORITY_LEVELS-1 */
	uint64_t deadline_ms;   /* relative: end as expired after this; 0 = none */
	sl_infer_params params; /* inference parameters (copied) */
	sl_token_fn on_token;   /* optional streaming callback */
	sl_done_fn on_done;     /* required completion callback */
	sl_attr_fn on_attr;     /* optional: attributes workers report */
	void *user;             /* passed to the callbacks */
} sl_request;

/* Initialises a request with defaults (priority SL_PRIORITY_DEFAULT, params
 * unset, input_len = (size_t)-1). */
void sl_request_init(sl_request *req);

/* Per-stage timestamps in a result, nanoseconds on CLOCK_MONOTONIC; 0 when
 * the request never reached that point. */
typedef struct sl_stage_times {
	uint64_t enqueued; /* entered the stage's queue */
	uint64_t started;  /* left the queue, began work */
	uint64_t finished; /* work done */
} sl_stage_times;

#define SL_MAX_STAGES 16

struct sl_result {
	uint64_t id;            /* the handle id */
	const char *request_id; /* NUL-terminated */
	const char *session;    /* NUL-terminated */
	sl_outcome outcome;
	int status;             /* SL_OK when completed, else the reason code */
	const char *stage;      /* stage where it ended (NULL when completed) */
	const char *reason;     /* detail text for non-completed, may be NULL */
	const char *text;       /* final text (NUL-terminated), "" if none */
	size_t text_len;
	size_t n_tokens;        /* tokens emitted by the worker */
	uint32_t prompt_tokens;     /* as reported by the worker (0 = unknown) */
	uint32_t completion_tokens; /* as reported by the worker */
	const char *finish_reason;  /* "stop", "length", "content_filter" or NULL */
	const char *backend;        /* last "backend" attribute a worker reported, or NULL */
	uint64_t t_submit;          /* monotonic ns at submit */
	uint64_t t_first_token;     /* monotonic ns of first token, 0 if none */
	uint64_t t_end;             /* monotonic ns at the outcome */
	unsigned n_stages;
	const char *const *stage_names;   /* n_stages names */
	const sl_stage_times *stage_times; /* n_stages entries */
};

/* ----------------------------------------------------------------- workers */

/* A model worker is a table of functions (the pattern of h2o's balancers and
 * nng's protocol ops) plus its state.  Lifecycle:
 *   init (once, any thread)        - validate and copy cfg, create state
 *   start (once per shard, shard)  - create per-shard state on that loop
 *   infer / cancel (shard thread)  - one call per request
 *   close (once per shard, shard)  - stop accepting; outstanding calls end
 *   stop  (once per shard, shard)  - free per-shard state
 *   fini  (once, any thread)       - free state
 */
typedef struct sl_infer sl_infer;

typedef struct sl_usage {
	uint32_t prompt_tokens;
	uint32_t completion_tokens;
	const char *finish_reason; /* static string or NULL ("stop") */
} sl_usage;

typedef struct sl_worker_ops {
	const char *name;
	int (*init)(const void *cfg, void **state);
	int (*start)(void *state, struct event_base *base, unsigned shard,
	             void **shard_state);
	/* Begin a call.  Return SL_OK after arranging to call sl_infer_done()
	 * exactly once (possibly before infer returns), or a negative status
	 * (then sl_infer_done must not be called). */
	int (*infer)(void *shard_state, sl_infer *call);
	/* Abandon a call in progress.  After cancel returns, the worker must not
	 * touch call again nor call sl_infer_done() for it.  May be NULL when
	 * infer always completes before returning. */
	void (*cancel)(void *shard_state, sl_infer *call);
	void (*close)(void *shard_state);
	void (*stop)(void *shard_state);
	void (*fini)(void *state);
	/* Upper bound on concurrent calls across all shards, 0 = none (e.g. a
	 * thread pool's capacity); each shard's inference concurrency is capped
	 * to max(1, bound / shards).  May be NULL. */
	unsigned (*max_concurrency)(void *state);
} sl_worker_ops;

typedef struct sl_worker sl_worker;

/* Creates a worker from an ops table; calls ops->init(cfg).  The ops table
 * must outlive the worker.  Returns SL_OK and *out, or init's error. */
int sl_worker_create(const sl_worker_ops *ops, const void *cfg, sl_worker **out);

/* Frees a worker (calls fini).  Every pipeline using it must be destroyed
 * first.  NULL is a no-op. */
void sl_worker_destroy(sl_worker *w);

/* The built-in echo worker: splits the prompt on whitespace and streams the
 * words back as tokens (first token bare, each later one with one leading
 * space), so the joined text is the prompt with whitespace runs folded.
 * delay_ms holds each call on a loop timer before its first token (and
 * token_delay_ms between tokens); a request's metadata key "echo_delay_ms"
 * overrides delay_ms.  Never sleeps a thread. */
typedef struct sl_echo_opts {
	uint32_t delay_ms;
	uint32_t token_delay_ms;
} sl_echo_opts;
int sl_worker_echo_create(const sl_echo_opts *opts, sl_worker **out);

/* The blocking adapter: wraps a plain synchronous function (the seed's
 * ModelWorker::infer) and runs it on a bounded pool of `threads` threads, so
 * the shard loops never block.  fn is called on a pool thread with the
 * prompt and must return SL_OK and fill *tokens with *n_tokens strings
 * allocated with malloc (the adapter frees them), or a negative status.
 * Concurrency per shard is capped at threads + queue. */
typedef int (*sl_blocking_fn)(void *user, const char *prompt, size_t len,
                              char ***tokens, size_t *n_tokens);
typedef struct sl_blocking_opts {
	unsigned threads; /* default 4 */
	unsigned queue;   /* pool job queue capacity, default 256 */
} sl_blocking_opts;
int sl_worker_blocking_create(sl_blocking_fn fn, void *user,
                              const sl_blocking_opts *opts, sl_worker **out);

/* --- for worker implementations (shard thread only) --- */

/* The assembled prompt for this call. */
const char *sl_infer_prompt(const sl_infer *call, size_t *len);
const sl_infer_params *sl_infer_params_of(const sl_infer *call);
/* Absolute deadline in monotonic ns, 0 = none. */
uint64_t sl_infer_deadline(const sl_infer *call);
/* Metadata lookup; NULL when absent. */
const char *sl_infer_meta(const sl_infer *call, const char *key);
const char *sl_infer_request_id(const sl_infer *call);
/* Per-call storage for the worker (one pointer). */
void **sl_infer_worker_data(sl_infer *call);
/* Emits one token.  Returns SL_OK, or SL_ETOOBIG when the output bound is
 * reached (the worker should finish), or SL_ECANCELED when the request is
 * gone (the worker should stop). */
int sl_infer_token(sl_infer *call, const char *text, size_t len);
/* Ends the call exactly once. status SL_OK or a negative code; detail may
 * be NULL (copied). usage may be NULL. */
void sl_infer_done(sl_infer *call, int status, const char *detail,
                   const sl_usage *usage);

/* Why a call failed, for workers that wrap other workers (routers decide
 * from it whether to retry, fail over and count a breaker failure).  A
 * failing worker calls sl_infer_set_failure() just before sl_infer_done();
 * workers that never do report SL_FAIL_OTHER. */
typedef enum sl_fail_kind {
	SL_FAIL_NONE = 0,      /* not failed */
	SL_FAIL_OTHER,         /* unclassified */
	SL_FAIL_CONNECT,       /* could not reach the backend (nothing sent) */
	SL_FAIL_HTTP,          /* the backend answered an error status */
	SL_FAIL_FIRST_TOKEN,   /* no first token within the backend's limit */
	SL_FAIL_TIMEOUT,       /* the total limit or the request deadline */
	SL_FAIL_BROKEN,        /* the answer stopped before it was complete */
	SL_FAIL_PROTOCOL,      /* the answer could not be understood */
	SL_FAIL_LOCAL          /* this process ran out of a local resource (file
	                        * descriptors, ports, memory) before reaching the
	                        * backend: says nothing about the backend's health */
} sl_fail_kind;
void sl_infer_set_failure(sl_infer *call, sl_fail_kind kind, int http_status);

/* The request's session key (affinity; sticky routing). */
const char *sl_infer_session(const sl_infer *call);
/* 1 when a stage replaced the prompt (sl_job_set_prompt): a worker that
 * can send the original chat messages must send the prompt instead. */
int sl_infer_prompt_replaced(const sl_infer *call);
/* The chat messages a stage assembled (sl_job_set_messages), or NULL. */
const char *sl_infer_messages(const sl_infer *call);
/* Reports an attribute of this call to the request's owner (its on_attr);
 * the last value of key "backend" is also kept for the result. */
void sl_infer_annotate(sl_infer *call, const char *key, const char *value);

/* --- sub-calls: workers that wrap other workers (routers, fallbacks) ---
 *
 * A sub-call stands for the parent call towards an inner worker: every
 * getter above reads the parent's request, while sl_infer_token() and
 * sl_infer_done() on the sub-call go to hooks, so the wrapping worker sees
 * each token and the end and decides what reaches the parent.  The inner
 * worker is used through its ops table (sl_worker_ops_of / state_of). */
typedef struct sl_infer_hooks {
	/* A token of the sub-call; returns what sl_infer_token returns. */
	int (*token)(sl_infer *sub, const char *text, size_t len);
	/* The sub-call ended (exactly once, as sl_infer_done). */
	void (*done)(sl_infer *sub, int status, const char *detail, const sl_usage *usage);
} sl_infer_hooks;
/* NULL on allocation failure.  Free with sl_infer_sub_free() once the inner
 * worker has ended it or returned from cancel. */
sl_infer *sl_infer_sub_new(sl_infer *parent, const sl_infer_hooks *hooks, void *user);
void sl_infer_sub_free(sl_infer *sub);
void *sl_infer_sub_user(const sl_infer *sub);
sl_infer *sl_infer_sub_parent(const sl_infer *sub);
/* The failure the inner worker reported on the sub-call. */
sl_fail_kind sl_infer_sub_failure(const sl_infer *sub, int *http_status);

/* An inner worker's ops and state (for wrappers that drive it directly). */
const sl_worker_ops *sl_worker_ops_of(const sl_worker *w);
void *sl_worker_state_of(const sl_worker *w);

/* ------------------------------------------------------------------ stages */

typedef enum sl_overflow {
	SL_OVERFLOW_BLOCK = 0, /* producer waits (backpressure) */
	SL_OVERFLOW_SHED = 1   /* item refused at once, request ends "shed" */
} sl_overflow;

typedef struct sl_job sl_job;

/* A stage kind (retriever, assembler, post-processor, ...).  run() works on
 * one job on the shard thread and returns SL_OK (done now), SL_EPENDING (it
 * will call sl_job_done() later on the same shard), or a negative status
 * (the request fails at this stage).  on_token, when set, filters each
 * streamed token while the request is in an earlier stage (inference). */
typedef struct sl_stage_ops {
	const char *kind;
	int (*init)(const void *cfg, void **state);
	int (*start)(void *state, struct event_base *base, unsigned shard,
	             void **shard_state);
	int (*run)(void *shard_state, sl_job *job);
	void (*cancel)(void *shard_state, sl_job *job);
	/* Token filter: called with each token while the request is in the
	 * inference stage, for the stages after it (in order); pass tokens on
	 * with sl_job_emit(). */
	void (*on_token)(void *shard_state, sl_job *job, const char *text,
	                 size_t len);
	void (*stop)(void *shard_state);
	void (*fini)(void *state);
	/* SL_STAGE_* bits. */
	unsigned flags;
} sl_stage_ops;

/* The stage's run() returns at once and does no measurable work (a pass
 * through): when it completes inside run(), the pipeline times it with the
 * clock reading it already has (its latency records as 0) instead of
 * reading the clock again.  Two clock reads fewer per request and stage. */
#define SL_STAGE_INSTANT 1u

/* Built-in stage kinds. */
extern const sl_stage_ops sl_stage_rag;       /* retrieval; none configured = pass */
extern const sl_stage_ops sl_stage_assemble;  /* builds the prompt */
extern const sl_stage_ops sl_stage_inference; /* calls the worker */
extern const sl_stage_ops sl_stage_post;      /* joins tokens into text */
extern const sl_stage_ops sl_stage_stream;    /* emits the result */
/* Test/benchmark stage: holds each job for cfg->delay_us on a loop timer,
 * to model a stage cost.  cfg: const sl_delay_cfg *. */
extern const sl_stage_ops sl_stage_delay;
typedef struct sl_delay_cfg {
	uint32_t delay_us;
} sl_delay_cfg;

/* Job accessors, shard thread only. */
const char *sl_job_input(const sl_job *job, size_t *len);
const char *sl_job_prompt(const sl_job *job, size_t *len);
/* Replaces the prompt (copied).  SL_ETOOBIG over the input bound. */
int sl_job_set_prompt(sl_job *job, const char *text, size_t len);
/* Sets the chat messages for chat backends (a JSON array of
 * {"role","content"}, copied); they take the place of the client's
 * messages.  SL_ETOOBIG over the input bound. */
int sl_job_set_messages(sl_job *job, const char *json, size_t len);
/* Appends retrieved context (copied); SL_ETOOBIG over the bound. */
int sl_job_add_context(sl_job *job, const char *text, size_t len);
const char *sl_job_context(const sl_job *job, size_t *len);
const char *sl_job_meta(const sl_job *job, const char *key);
const char *sl_job_session(const sl_job *job);
const char *sl_job_text(const sl_job *job, size_t *len);
int sl_job_set_text(sl_job *job, const char *text, size_t len);
void **sl_job_stage_data(sl_job *job);
/* fn frees the stage data (if still set) when the request is freed, however
 * it ended: for per-request state of a token filter, whose run() may never
 * come (the request failed or was cancelled upstream of it). */
void sl_job_set_data_free(sl_job *job, void (*fn)(void *));
sl_worker *sl_job_worker(const sl_job *job);
/* Passes a token to the next filter (or to the client): from on_token, or
 * from the stage's run() (text a filter held back until the end). */
void sl_job_emit(sl_job *job, const char *text, size_t len);
/* Ends the output early (a content filter): later tokens of the worker are
 * refused (it stops as at the output bound) and the request completes with
 * this finish_reason (a static string, e.g. "content_filter"). */
void sl_job_stop_output(sl_job *job, const char *finish_reason);
/* Completes a job that run() left pending (exactly once, shard thread). */
void sl_job_done(sl_job *job, int status, const char *detail);

/* Stage declaration inside a pipeline.
 *
 * A pipeline is a DAG of stages given in topological order (every stage
 * after its predecessors).  `after` names the predecessors: NULL means "the
 * previous stage in the array" (so a plain array is a linear pipeline; the
 * first stage is a root), a non-NULL array with n_after == 0 makes a root.
 * A stage with several successors fans out (the request enters all of them
 * at once; it waits until every one of them has room under "block"); a
 * stage with several predecessors joins (the request enters it when all of
 * them are done).  Exactly one stage, the last, has no successors: the
 * request completes when it leaves that stage.  A failure in any branch
 * ends the request and cancels the other branches. */
typedef struct sl_stage_def {
	const char *name;          /* unique in the pipeline, e.g. "rag" */
	const sl_stage_ops *ops;   /* stage kind */
	const void *cfg;           /* passed to ops->init (copied by it) */
	uint32_t queue;            /* queue capacity per shard, >= 1 */
	uint32_t concurrency;      /* items in work at once per shard, >= 1 */
	sl_overflow overflow;      /* when this stage's queue is full */
	uint32_t timeout_ms;       /* per-item time in this stage, 0 = none */
	const char *const *after;  /* predecessors by name (see above) */
	unsigned n_after;
	/* Priority: the queue serves the highest sl_request.priority first,
	 * FIFO within a priority.  sl_pipeline_default sets aging_ms 1000 and
	 * displace 1; a zeroed definition has both off. */
	uint32_t aging_ms;         /* a queued request counts one level higher
	                            * for every aging_ms it has waited (up to the
	                            * top), so low priority cannot starve;
	                            * 0 = strict priority */
	uint8_t displace;          /* under "shed", 1: an arrival of higher
	                            * priority than the full queue's lowest
	                            * level takes the place of that level's
	                            * newest request, which ends "shed" (reason
	                            * "displaced by higher priority"); 0: the
	                            * arrival is shed */
} sl_stage_def;

/* Default capacities: the seed's channel sizes. */
#define SL_DEFAULT_RAG_QUEUE 512
#define SL_DEFAULT_ASSEMBLE_QUEUE 512
#define SL_DEFAULT_INFERENCE_QUEUE 1024
#define SL_DEFAULT_POST_QUEUE 512
#define SL_DEFAULT_STREAM_QUEUE 256
#define SL_DEFAULT_INFERENCE_CONCURRENCY 256
#define SL_DEFAULT_STAGE_CONCURRENCY 64
#define SL_DEFAULT_MAX_INPUT (1u << 20)  /* 1 MiB */
#define SL_DEFAULT_MAX_OUTPUT (4u << 20) /* 4 MiB */
#define SL_DEFAULT_DRAIN_MS 30000

/* ---------------------------------------------------------------- pipeline */

typedef struct sl_pipeline sl_pipeline;

typedef struct sl_pipeline_opts {
	const char *name;           /* for logs and metrics, default "default" */
	const sl_stage_def *stages; /* n_stages stages in order */
	unsigned n_stages;          /* 1..SL_MAX_STAGES */
	sl_worker *worker;          /* used by the inference stage */
	size_t max_input;           /* bytes; 0 = SL_DEFAULT_MAX_INPUT */
	size_t max_output;          /* bytes; 0 = SL_DEFAULT_MAX_OUTPUT */
	int trace;                  /* 1 = a logfmt trace line per stage */
	/* Called once by sl_pipeline_destroy, after every stage stopped (frees
	 * what the stages' cfg pointed to); not called when create fails. */
	void (*on_destroy)(void *arg);
	void *on_destroy_arg;
} sl_pipeline_opts;

/* Fills stages[5] with the seed's five stages and default capacities
 * (rag 512, assemble 512, inference 1024, post 512, stream 256), overflow
 * "block" everywhere, and opts with those stages and the given worker. */
void sl_pipeline_default(sl_pipeline_opts *opts, sl_stage_def stages[5],
                         sl_worker *worker);

/* Validates opts, copies them, and starts the pipeline on every shard of rt.
 * Any thread but a shard thread.  Returns SL_OK and *out, or SL_EINVAL with
 * a message in err (if non-NULL, errlen bytes), SL_ENOMEM. */
int sl_pipeline_create(sl_runtime *rt, const sl_pipeline_opts *opts,
                       sl_pipeline **out, char *err, size_t errlen);

/* Submit flags. */
#define SL_SUBMIT_BLOCK 1u /* wait for space instead of returning SL_EAGAIN */

/* Submits a request (any thread).  On SL_OK the request is accepted, *h (if
 * non-NULL) names it, and on_done will run exactly once.  On any error
 * on_done never runs and nothing is kept:
 *   SL_EINVAL  (NULL/empty session or input, bad priority, no on_done),
 *   SL_ETOOBIG (input over max_input), SL_ECLOSED (draining),
 *   SL_EAGAIN  (entry queue full under "block"; see sl_pipeline_on_ready),
 *   SL_ESHED   (entry queue full under "shed"; counted as submitted+shed),
 *   SL_ENOMEM.
 * With SL_SUBMIT_BLOCK the call waits for space instead of SL_EAGAIN (not
 * from a shard thread: that returns SL_EAGAIN, since waiting would stall the
 * loop that makes the space). */
int sl_pipeline_submit(sl_pipeline *p, const sl_request *req, unsigned flags,
                       sl_request_handle *h);

/* One-shot readiness callback after SL_EAGAIN: fn(arg) runs on the
 * session's shard thread once its entry queue has room (or at drain).
 * Any thread.  Returns SL_OK, or SL_ECLOSED when draining. */
int sl_pipeline_on_ready(sl_pipeline *p, const char *session, sl_post *node);

/* Cancels a request (any thread).  Its on_done runs with outcome
 * "cancelled" unless it already ended.  Returns SL_OK when the cancel was
 * sent, SL_ENOTFOUND for an id never issued. */
int sl_pipeline_cancel(sl_pipeline *p, sl_request_handle h);

/* Stops intake (submit then returns SL_ECLOSED), waits up to timeout_ms for
 * every in-flight request to end, then cancels the rest and waits for their
 * callbacks.  Returns SL_OK if all finished in time, SL_ETIMEDOUT if some
 * were cancelled.  Not from a shard thread.  Idempotent. */
int sl_pipeline_drain(sl_pipeline *p, uint64_t timeout_ms);

/* Drains (with SL_DEFAULT_DRAIN_MS if not yet drained) and frees the
 * pipeline.  NULL is a no-op.  Not from a shard thread. */
void sl_pipeline_destroy(sl_pipeline *p);

const char *sl_pipeline_name(const sl_pipeline *p);
/* Name of stage i (the first is where requests enter), NULL out of range. */
const char *sl_pipeline_stage_name(const sl_pipeline *p, unsigned i);

/* ----------------------------------------------------------------- metrics */

/* Log-linear latency histogram (values in nanoseconds). */
typedef struct sl_histogram sl_histogram;
uint64_t sl_histogram_count(const sl_histogram *h);
/* q in [0,1]; returns the bucket's upper bound in ns, 0 when empty. */
uint64_t sl_histogram_quantile(const sl_histogram *h, double q);
/* Iterates non-empty buckets: fn(upper_bound_ns, count). */
void sl_histogram_foreach(const sl_histogram *h,
                          void (*fn)(void *arg, uint64_t le, uint64_t n),
                          void *arg);
uint64_t sl_histogram_sum(const sl_histogram *h);

typedef struct sl_stage_stats {
	const char *name;
	uint64_t enqueued;  /* entered the queue */
	uint64_t processed; /* finished work successfully */
	uint64_t shed;      /* refused at this stage's queue (displaced too) */
	uint64_t failed;    /* failed in this stage */
	uint64_t expired;   /* expired while queued or working here */
	uint64_t cancelled; /* cancelled while queued or working here */
	uint64_t queued;    /* gauge: waiting in the queue */
	uint64_t running;   /* gauge: in work, or done and waiting for room */
	uint64_t capacity;  /* queue capacity, summed over shards */
	uint64_t concurrency; /* work slots, summed over shards */
	uint64_t displaced; /* shed from the queue to admit a higher priority
	                     * (counted in shed as well) */
	const sl_histogram *latency; /* time in work (start -> finish) */
	const sl_histogram *wait;    /* time queued (enqueue -> start) */
} sl_stage_stats;

typedef struct sl_snapshot {
	uint64_t submitted;
	uint64_t outcomes[SL_OUTCOME__COUNT];
	uint64_t in_flight; /* admitted, no outcome yet (a request in two
	                     * fan-out branches counts once) */
	uint64_t tokens_out;
	unsigned n_stages;
	sl_stage_stats stages[SL_MAX_STAGES];
	const sl_histogram *e2e;  /* submit -> outcome, completed requests */
	const sl_histogram *ttft; /* submit -> first token */
	void *_priv;              /* private: merged histograms */
} sl_snapshot;

/* Takes a consistent snapshot (any thread): each shard's counters are read
 * under that shard's sequence lock, so the accounting identity holds
 * exactly.  The snapshot owns merged histograms: free it with
 * sl_snapshot_release().  Returns SL_OK or SL_ENOMEM. */
int sl_pipeline_snapshot(sl_pipeline *p, sl_snapshot *out);
void sl_snapshot_release(sl_snapshot *s);

/* --------------------------------------------------------------------- log */

typedef enum sl_log_level {
	SL_LOG_ERROR = 0,
	SL_LOG_WARN = 1,
	SL_LOG_INFO = 2,
	SL_LOG_DEBUG = 3,
	SL_LOG_TRACE = 4
} sl_log_level;

/* Sets the level of logfmt lines written to stderr (any thread). */
void sl_log_set_level(sl_log_level lvl);
sl_log_level sl_log_get_level(void);
/* Parses "error|warn|info|debug|trace"; SL_EINVAL otherwise. */
int sl_log_level_parse(const char *s, sl_log_level *out);

/* Monotonic clock in ns. */
uint64_t sl_now_ns(void);

#ifdef __cplusplus
}
#endif
#endif
