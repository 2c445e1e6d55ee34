/* config.h - the declarative configuration (`sluice.yaml`): the parsed and
 * validated model of a deployment.
 *
 * One file describes listeners, pipelines (DAGs of stages), models and
 * backends.  sl_config_load_*() parse YAML (libyaml), interpolate ${VAR} and
 * ${VAR:-default} from the environment, validate everything, and either
 * return an immutable sl_config or the complete list of problems, each with
 * file:line:column, the path of the offending node
 * (pipelines.default.stages[2].queue), what was expected and what was found.
 *
 * The builder (src/config/build.c) turns an sl_config into running objects;
 * this module does no I/O other than reading the file.
 *
 * Threading: pure functions; an sl_config is immutable after load and may be
 * read from any thread.
 */
#ifndef SL_CONFIG_CONFIG_H
#define SL_CONFIG_CONFIG_H
#include <stddef.h>
#include <stdint.h>
#include "sluice/config.h"
#include "sluice/sluice.h"

/* Bounds of the loader (bad input must cost bounded memory and time). */
#define SL_CFG_MAX_FILE (16u << 20)  /* bytes; a larger file is refused */
#define SL_CFG_MAX_DEPTH 64          /* nesting of mappings/sequences */
#define SL_CFG_MAX_NODES 200000      /* nodes after alias expansion */
#define SL_CFG_MAX_STAGES SL_MAX_STAGES
#define SL_CFG_MAX_DIAGS 200         /* problems reported; more are counted */

/* --- the model ---------------------------------------------------------- */

typedef struct sl_cfg_admin {
	int enabled;         /* default 1: the /admin/ API on the main listener */
	char *token_env;     /* NULL: no token needed (loopback listeners only);
	                      * else requests need "Authorization: Bearer $VAR" */
} sl_cfg_admin;

typedef struct sl_cfg_server {
	char *host;                  /* default "127.0.0.1" */
	uint16_t port;               /* default 8080 */
	unsigned shards;             /* default 0 = CPUs in the affinity mask */
	int pin;                     /* default 1 */
	size_t max_body;             /* default 1 MiB */
	size_t max_headers;          /* default 16 KiB */
	uint32_t read_timeout_ms;    /* default 10000 */
	uint32_t request_timeout_ms; /* default 0 = none */
	uint32_t drain_ms;           /* default 30000 */
	uint32_t retry_after_s;      /* default 1 */
	sl_cfg_admin admin;
	int line, col;               /* where "server:" is, 0 if absent */
} sl_cfg_server;

/* Stage kinds the loader knows (type: ...). */
typedef enum sl_cfg_stage_type {
	SL_CFG_STAGE_RAG = 0,
	SL_CFG_STAGE_ASSEMBLE,
	SL_CFG_STAGE_INFERENCE,
	SL_CFG_STAGE_POST,
	SL_CFG_STAGE_STREAM,
	SL_CFG_STAGE_DELAY, /* test/benchmark stage: holds each request delay_ms */
	SL_CFG_STAGE_REDACT /* PII redaction and safety: the prompt (before the
	                     * inference stage) or the output (after it) */
} sl_cfg_stage_type;

/* type rag: `retriever:` (absent: the stage passes requests through). */
typedef enum sl_cfg_retriever_type {
	SL_CFG_RETRIEVER_BM25 = 0,
	SL_CFG_RETRIEVER_PG = 1,
	SL_CFG_RETRIEVER_HTTP = 2
} sl_cfg_retriever_type;

typedef struct sl_cfg_retriever {
	int set;            /* the key was given */
	sl_cfg_retriever_type type;
	/* pg */
	char *conninfo;     /* libpq connection string */
	char *table, *id_column, *text_column, *tsv_column, *language;
	/* http */
	char *url;          /* POST {"query","k"} -> [{"id","text","score"}] */
	/* pg and http: searched on a pool of `threads` threads */
	uint32_t threads;   /* default 4 */
	uint32_t timeout_ms; /* default 2000 */
	int skip_on_error;  /* on_error: fail (0, default) | skip (1) */
	/* bm25 */
	char *corpus;       /* folder of .md/.txt or a .jsonl file (relative to the
	                     * config file's folder) */
	char *index;        /* saved index: loaded when it exists, else built from
	                     * corpus and saved there; NULL = build in memory */
	uint32_t k;         /* default 4, 1..64 */
	double k1, b;       /* default 1.2, 0.75 */
	double min_score;   /* default 0 */
	int stopwords;      /* default 1 */
	int required;       /* default 1: a missing corpus fails the start; 0 =
	                     * warn and pass requests through */
} sl_cfg_retriever;

/* type assemble: templates (absent: the built-in "Context/Question" form). */
typedef struct sl_cfg_template {
	char *user;               /* template file for the user message */
	char *system;             /* optional system template file */
	char *examples;           /* optional JSON file: [{"user":…,"assistant":…}] */
	uint32_t max_prompt_tokens; /* default 0 = no budget */
} sl_cfg_template;

/* type redact. */
typedef struct sl_cfg_redact {
	unsigned classes;         /* SL_PII_* mask; default all */
	char **custom_name, **custom_pattern, **custom_replacement; /* n_custom each */
	uint32_t *custom_max_len;
	size_t n_custom;
	char **block_terms;
	size_t n_block_terms;
	char **block_patterns;
	size_t n_block_patterns;
} sl_cfg_redact;

typedef struct sl_cfg_stage {
	char *name;
	sl_cfg_stage_type type;
	uint32_t queue;        /* default: rag 512, assemble 512, inference 1024,
	                        * post 512, stream 256, delay 512 */
	uint32_t concurrency;  /* default: inference 256, others 64 */
	sl_overflow overflow;  /* default block */
	uint32_t timeout_ms;   /* default 0 = none */
	uint32_t delay_ms;     /* type delay only (required there) */
	uint32_t aging_ms;     /* default 1000: a queued request rises one
	                        * priority level per aging_ms waited; 0 = off */
	int displace;          /* default 1: under shed, a higher-priority
	                        * arrival displaces the lowest, newest one */
	sl_cfg_retriever retriever; /* type rag */
	sl_cfg_template tmpl;       /* type assemble */
	sl_cfg_redact redact;       /* type redact */
	char **after;          /* names of predecessors */
	size_t n_after;        /* 0 = a root */
	int line, col;
} sl_cfg_stage;

/* Stages are stored in a topological order (every stage after all of its
 * predecessors); the one stage without successors is the sink. */
typedef struct sl_cfg_pipeline {
	char *name;
	size_t max_input;   /* default SL_DEFAULT_MAX_INPUT */
	size_t max_output;  /* default SL_DEFAULT_MAX_OUTPUT */
	int trace;          /* default 0 */
	sl_cfg_stage *stages;
	size_t n_stages;
	int line, col;
} sl_cfg_pipeline;

typedef enum sl_cfg_backend_type {
	SL_CFG_BACKEND_ECHO = 0,
	SL_CFG_BACKEND_OPENAI = 1
} sl_cfg_backend_type;

/* Circuit breaker of a backend (see src/route/breaker.h for the rules). */
typedef struct sl_cfg_breaker {
	int enabled;                   /* default 1 */
	uint32_t consecutive_failures; /* default 5; 0 = rule off */
	double failure_ratio;          /* default 0.5; 0 = rule off */
	uint32_t window_ms;            /* default 10000 */
	uint32_t min_requests;         /* default 20 */
	uint32_t cooldown_ms;          /* default 1000 */
	uint32_t max_cooldown_ms;      /* default 30000 */
	uint32_t half_open_probes;     /* default 3 */
} sl_cfg_breaker;

/* Retries after this backend failed (budget and backoff). */
typedef struct sl_cfg_retry {
	double budget_ratio;           /* default 0.2 */
	uint32_t budget_min_per_s;     /* default 10 */
	uint32_t budget_window_ms;     /* default 10000 */
	uint32_t backoff_ms;           /* default 25 */
	uint32_t max_backoff_ms;       /* default 1000 */
} sl_cfg_retry;

typedef enum sl_cfg_limit_alg {
	SL_CFG_LIMIT_FIXED = 0,
	SL_CFG_LIMIT_AIMD = 1,
	SL_CFG_LIMIT_GRADIENT = 2
} sl_cfg_limit_alg;

/* Concurrency limit of a backend across all shards. */
typedef struct sl_cfg_concurrency {
	sl_cfg_limit_alg algorithm;    /* default fixed (max_concurrency, 0 = none) */
	uint32_t min;                  /* default 1 */
	uint32_t max;                  /* default max_concurrency, else 1024 */
	uint32_t initial;              /* default 32 */
	uint32_t latency_threshold_ms; /* aimd; default 0 = 2x the lowest latency seen */
	double backoff_ratio;          /* aimd; default 0.9 */
	double tolerance;              /* gradient; default 1.5 */
} sl_cfg_concurrency;

/* How an openai backend reaches its upstream (sl_openai_transport). */
typedef enum sl_cfg_transport {
	SL_CFG_TRANSPORT_AUTO = 0,   /* native for http://, libcurl for https:// */
	SL_CFG_TRANSPORT_NATIVE = 1, /* the native HTTP/1.1 client: http:// only */
	SL_CFG_TRANSPORT_CURL = 2    /* libcurl */
} sl_cfg_transport;

typedef struct sl_cfg_backend {
	char *name;
	sl_cfg_backend_type type;
	/* openai */
	char *url;                       /* required for openai: http(s)://... */
	char *model;                     /* model sent upstream; default: the
	                                  * public model name of the route */
	char *api_key_env;               /* NULL = no key */
	uint32_t connect_timeout_ms;     /* default 2000 */
	uint32_t first_token_timeout_ms; /* default 30000 */
	uint32_t total_timeout_ms;       /* default 0 */
	uint32_t max_concurrency;        /* default 0 = unlimited */
	char **headers;                  /* "Name: value" strings */
	size_t n_headers;
	int stream;                      /* default 1 */
	sl_cfg_transport transport;      /* default auto */
	/* echo */
	uint32_t delay_ms;               /* default 0 */
	uint32_t token_delay_ms;         /* default 0 */
	sl_cfg_breaker breaker;
	sl_cfg_retry retry;
	sl_cfg_concurrency concurrency;
	int line, col;
} sl_cfg_backend;

typedef struct sl_cfg_model {
	char *name;        /* public name clients send */
	char *pipeline;    /* a key of pipelines */
	char **backends;   /* keys of backends, in fallback order (>= 1) */
	size_t n_backends;
	char *routing;     /* strategy for the first attempt; default "fallback" */
	uint32_t *weights; /* n_backends weights, or NULL (equal) */
	uint32_t max_attempts; /* default 0 = backends + 1 */
	int line, col;
} sl_cfg_model;

/* The dead-letter log (`dlq:`); off when dir is NULL. */
#define SL_CFG_HAS_DLQ 1
typedef struct sl_cfg_dlq {
	char *dir;                  /* default NULL: no dead-letter log */
	int fsync;                  /* 0 never, 1 interval (default), 2 always */
	uint32_t fsync_interval_ms; /* default 200 */
	uint64_t segment_bytes;     /* default 16 MiB */
	uint64_t max_bytes;         /* default 256 MiB; 0 = no cap */
	int line, col;
} sl_cfg_dlq;

struct sl_config {
	char *file;            /* where it came from */
	sl_cfg_server server;
	sl_cfg_pipeline *pipelines;
	size_t n_pipelines;
	sl_cfg_backend *backends;
	size_t n_backends;
	sl_cfg_model *models;
	size_t n_models;
	sl_cfg_dlq dlq;
	/* Sections later features fill in.  Present now so that typos are
	 * caught; each must be a mapping and is otherwise not read yet:
	 * tenants, cache, mesh, telemetry. */
};

/* Lookups (NULL when absent). */
const sl_cfg_pipeline *sl_config_pipeline(const sl_config *c, const char *name);
const sl_cfg_backend *sl_config_backend(const sl_config *c, const char *name);
const sl_cfg_model *sl_config_model(const sl_config *c, const char *name);

#endif
