/* pipeline_int.h - pipeline internals: jobs, per-shard stage state,
 * counters.
 *
 * Ownership and threads
 * ---------------------
 * sl_pipeline: created and destroyed by one control thread; read-only while
 *   running, except `closing` (atomic).
 * sl__ps ("pipeline on a shard"): everything in it is owned by its shard
 *   thread, except the inbox (MPSC: producers push), `next_id` and
 *   `door_shed` (atomic, producers), the ready list (MPSC), and the counters,
 *   which the shard writes (single writer, relaxed atomic stores) and any
 *   thread reads under the sequence lock `seq`.
 * sl__req (a request) and its sl_job slots (one per stage): created by the
 *   submitting thread, owned by the shard from the moment it is popped from
 *   the inbox until it is freed after on_done.
 *
 * Sequence lock: every entry from the event loop into a ps that changes
 * counters runs between ps_enter() and ps_exit() (nesting allowed), so a
 * snapshot never sees a request counted as ended but still in a stage.
 */
#ifndef SL_PIPELINE_INT_H
#define SL_PIPELINE_INT_H
#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdatomic.h>
#include <time.h>
#include "core/dynbuf.h"
#include "core/histogram.h"
#include "queue/mpsc.h"
#include "queue/pq.h"
#include "shard/runtime_int.h"
#include "sluice/sluice.h"

typedef struct sl__ps sl__ps;

/* State of a request in one stage (a slot). */
typedef enum slot_state {
	S_NONE = 0, /* not there (yet) */
	S_QUEUED,   /* in the stage's queue */
	S_RUNNING,  /* in the stage's work */
	S_BLOCKED,  /* work done, waiting for room downstream (holds its slot) */
	S_DONE      /* passed */
} slot_state;

/* A call to a worker: the one embedded in each request (parent NULL), or a
 * heap sub-call a wrapping worker made (see sl_infer_sub_new). */
struct sl_infer {
	void *wdata;                 /* worker's per-call pointer */
	struct sl_infer *parent;     /* NULL: the request's own call */
	const sl_infer_hooks *hooks; /* sub-calls only */
	void *user;                  /* sub-calls only */
	uint8_t fail_kind;           /* sl_fail_kind reported by the worker */
	uint16_t fail_http;
};

typedef struct sl__req sl__req;

/* One stage's view of a request: what stage ops receive and what stage
 * queues hold.  A request has one per stage (in a DAG it may be in several
 * stages at once: fan-out branches). */
struct sl_job {
	sl__req *req;
	struct sl_job *next;  /* the stage's done list */
	void *data;           /* sl_job_stage_data() */
	void (*data_free)(void *); /* sl_job_set_data_free(): runs at req_free */
	uint64_t stage_deadline; /* absolute ns while running, 0 = none */
	uint8_t stage;
	uint8_t state;        /* slot_state */
	uint8_t waiting;      /* predecessors not done yet (joins) */
	uint8_t in_run;       /* inside ops->run() */
	uint8_t inline_done;  /* sl_job_done() called inside run() */
	uint8_t zombie;       /* request ended while this stage could not cancel */
	int inline_status;
};

/* A request on its shard. */
struct sl__req {
	sl__ps *ps;
	uint64_t id;
	uint8_t priority;
	uint8_t timer_armed;
	uint8_t timer_init;
	uint8_t out_cut;      /* output hit max_output */
	uint8_t emit_from;    /* token filter position */
	uint8_t final;        /* outcome delivered */
	uint8_t data_free;    /* a slot registered sl_job_set_data_free */
	uint8_t admitted;
	uint8_t pooled;       /* a p->blk block: recycled through ps->spare */
	uint8_t last_stage;   /* last stage entered (reports) */
	uint16_t hold;        /* frames on the stack still using the request */
	uint16_t zombies;     /* slots whose stage could not cancel */
	uint64_t deadline;    /* absolute ns, 0 = none */
	uint64_t t_submit, t_first_token;
	char *request_id;
	char *session;
	size_t session_len;
	char *input;
	size_t input_len;
	char *prompt; /* == input until a stage replaces it */
	size_t prompt_len;
	sl_kv *meta;
	size_t n_meta;
	sl_infer_params params;
	sl_token_fn on_token;
	sl_done_fn on_done;
	sl_attr_fn on_attr;
	void *user;
	char *backend;   /* last "backend" attribute (owned) */
	const char *stop_reason; /* sl_job_stop_output's finish_reason */
	char *messages;  /* sl_job_set_messages (owned), NULL = none */
	sl_dynbuf context;
	sl_dynbuf out;   /* tokens as emitted by the worker, joined */
	char *text;      /* final text when a stage replaced it (owned) */
	size_t text_len;
	char *detail;    /* failure detail (owned) */
	size_t n_tokens;
	sl_usage usage;
	struct sl_infer call;
	struct event timer;
	sl_stage_times *times;  /* n_stages, after slots */
	struct sl_job slots[];  /* n_stages */
};

typedef struct sl__stage {
	char *name;
	const sl_stage_ops *ops;
	void *state;
	int inited;
	uint32_t queue, conc;
	sl_overflow overflow;
	uint32_t timeout_ms;
	uint32_t aging_ms;    /* queue aging step, 0 = strict priority */
	uint8_t displace;     /* shed: a higher priority displaces the lowest */
	uint8_t n_pred, n_succ;
	uint8_t pred[SL_MAX_STAGES];
	uint8_t succ[SL_MAX_STAGES];
} sl__stage;

/* Counters written by the shard thread only (relaxed store of load + d). */
typedef struct sl__stage_ctr {
	_Atomic uint64_t enqueued, processed, shed, failed, expired, cancelled;
	_Atomic uint64_t queued, running;
	_Atomic uint64_t displaced; /* part of shed */
} sl__stage_ctr;

typedef struct sl__stage_rt {
	void *ss; /* stage's per-shard state */
	sl_pq queue;
	uint32_t running;              /* slots in use (work + blocked) */
	struct sl_job *done_head, *done_tail;
	uint32_t done_lv[SL_PRIORITY_LEVELS]; /* done list entries per priority */
	sl__stage_ctr ctr;
	sl_histogram *lat, *wait;
} sl__stage_rt;

#define SL__EARLY_CANCELS 64
#define SL__BLK_TEXT 448   /* string room in a pooled block */
#define SL__SPARE 1024     /* pooled blocks kept per shard */
#define SL__KEEP_OUT 1024  /* output buffer kept with a pooled block */
#define SL__HI_PRIORITY 2 /* "high" and "critical" take the priority lane */

struct sl__ps {
	sl__poller poller; /* first: container_of by cast */
	struct sl_pipeline *p;
	sl__shard *sh;
	unsigned idx;
	sl_queue *inbox;
	sl_queue *inbox_hi;            /* priorities >= SL__HI_PRIORITY: admitted
	                                * first, so a flood of low-priority
	                                * submits cannot shed them at the door */
	sl_queue *spare;               /* freed p->blk request blocks: the shard
	                                * pushes, submitters pop (multi-consumer),
	                                * so malloc/free never cross threads on
	                                * the hot path */
	/* Cache lines: the fields above are read-mostly (set up before the
	 * first submit); the ones producers write each get a line of their own
	 * so a submit never steals a line the shard is using, and the shard's
	 * own fields start on a fresh line. */
	_Alignas(64) _Atomic uint64_t next_id; /* producers */
	_Atomic uint64_t door_shed;    /* producers: shed at submit */
	_Alignas(64) sl_list ready;    /* sl_post nodes waiting for room */
	_Alignas(64) _Atomic uint32_t seq; /* sequence lock */
	uint32_t depth;                /* shard: ps_enter nesting */
	uint32_t handoff_depth;        /* shard: nested direct hand-offs */
	uint64_t now;                  /* shard: cached clock for a pump round */
	uint64_t fin_now;              /* shard: end time for the finish() that
	                                * stage_finished() leads to, 0 = read the
	                                * clock; set and cleared within one
	                                * stage_finished() call */
	int attached;
	void *wss;                     /* worker's per-shard state */
	/* counters (single writer) */
	_Atomic uint64_t submitted, tokens_out;
	_Atomic uint64_t outcomes[SL_OUTCOME__COUNT];
	_Atomic uint64_t live;         /* admitted, no outcome yet (the identity's in_flight) */
	_Atomic uint64_t alive;        /* allocated on this shard: live + ended zombies */
	sl_histogram *e2e, *ttft;
	/* id -> request map for cancellation (shard) */
	struct sl__req **map_v;
	uint64_t *map_k;
	size_t map_mask;
	uint64_t early[SL__EARLY_CANCELS];
	unsigned n_early, early_pos;
	sl__stage_rt st[];
};

struct sl_pipeline {
	sl_runtime *rt;
	char *name;
	unsigned n_stages;
	unsigned n_shards;
	sl__stage stages[SL_MAX_STAGES];
	const char *stage_names[SL_MAX_STAGES];
	sl_worker *worker;
	void (*on_destroy)(void *arg);
	void *on_destroy_arg;
	size_t max_input, max_output;
	size_t blk;          /* pooled request block size (header + slots +
	                      * times + SL__BLK_TEXT bytes of strings) */
	int trace;
	int any_timeout;
	unsigned sink;       /* the stage without successors (the last) */
	unsigned inference;  /* index of the inference stage, n_stages if none */
	uint8_t tok_next[SL_MAX_STAGES + 1]; /* first stage >= s with on_token,
	                                      * n_stages if none */
	_Atomic int closing;
	int drained;
	int drain_rc;
	sl__ps **ps;
};

#define SL__REQ_OF_CALL(c) ((sl__req *)((char *)(c) - offsetof(sl__req, call)))

/* Single-writer counter update. */
static inline void sl__ctr_add(_Atomic uint64_t *c, int64_t d)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + (uint64_t)d,
	                      memory_order_relaxed);
}

/* sl_now_ns(), inline for the hot path. */
static inline uint64_t sl__now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void sl__ps_enter(sl__ps *ps);
void sl__ps_exit(sl__ps *ps);

/* worker internals used by the inference stage */
struct sl_worker {
	const sl_worker_ops *ops;
	void *state;
	sl_runtime *rt;
	void *ss[SL_MAX_SHARDS];
	unsigned refs[SL_MAX_SHARDS];
};
/* Shard thread: starts the worker on this shard (refcounted). */
int sl__worker_attach(sl_worker *w, sl_runtime *rt, sl__shard *sh, void **wss);
void sl__worker_detach(sl_worker *w, sl__shard *sh);
sl_runtime *sl__req_runtime(const sl__req *req);
unsigned sl__req_shard(const sl__req *req);

#endif
