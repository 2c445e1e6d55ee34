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
	SL_CFG_STAGE_DELAY /* test/benchmark stage: holds each request delay_ms */
} sl_cfg_stage_type;

typedef struct sl_cfg_stage {
	char *name;
	sl_cfg_stage_type type;
	uint32_t queue;        /* default: rag 512, assemble 512, inference 1024,
	                        * post 512, stream 256, delay 512 */
	uint32_t concurrency;  /* default: inference 256, others 64 */
	sl_overflow overflow;  /* default block */
	uint32_t timeout_ms;   /* default 0 = none */
	uint32_t delay_ms;     /* type delay only (required there) */
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
	/* echo */
	uint32_t delay_ms;               /* default 0 */
	uint32_t token_delay_ms;         /* default 0 */
	int line, col;
} sl_cfg_backend;

typedef struct sl_cfg_model {
	char *name;        /* public name clients send */
	char *pipeline;    /* a key of pipelines */
	char **backends;   /* keys of backends, in fallback order (>= 1) */
	size_t n_backends;
	int line, col;
} sl_cfg_model;

struct sl_config {
	char *file;            /* where it came from */
	sl_cfg_server server;
	sl_cfg_pipeline *pipelines;
	size_t n_pipelines;
	sl_cfg_backend *backends;
	size_t n_backends;
	sl_cfg_model *models;
	size_t n_models;
	/* Sections later features fill in.  Present now so that typos are
	 * caught; each must be a mapping and is otherwise not read yet:
	 * tenants, cache, routing, mesh, telemetry. */
};

/* Lookups (NULL when absent). */
const sl_cfg_pipeline *sl_config_pipeline(const sl_config *c, const char *name);
const sl_cfg_backend *sl_config_backend(const sl_config *c, const char *name);
const sl_cfg_model *sl_config_model(const sl_config *c, const char *name);

#endif
