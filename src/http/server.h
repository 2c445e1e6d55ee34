/* server.h - the OpenAI-compatible HTTP/1.1 gateway (`sluice serve`).
 *
 * One evhttp per shard, each with its own listening socket on the same port
 * (SO_REUSEPORT), so the kernel spreads connections over the shards and a
 * connection lives on one shard thread for its whole life.  A request is
 * parsed on its connection's shard, then submitted to its model's pipeline,
 * which runs it on the session's shard; tokens and the outcome come back to
 * the connection's shard through a per-request buffer and a post (see
 * docs/internals/http.md).
 *
 * Endpoints: POST /v1/chat/completions, POST /v1/completions (stream or not),
 * GET /v1/models, GET /healthz, GET /readyz, GET /metrics.
 *
 * Threading: create/destroy from a control thread (not a shard thread);
 * everything else runs on shard threads.
 */
#ifndef SL_HTTP_SERVER_H
#define SL_HTTP_SERVER_H
#include <stddef.h>
#include <stdint.h>
#include "sluice/sluice.h"

typedef struct sl_server sl_server;

/* A public model name served by a pipeline. */
typedef struct sl_model_route {
	const char *name;    /* what clients send as "model" */
	sl_pipeline *pipeline;
	sl_worker *worker;   /* the model's worker (a router: /metrics and
	                      * /admin/backends show its backends); may be NULL */
	int pass_messages;   /* 1 = attach the chat messages as metadata
	                      * "messages_json" (for upstream OpenAI workers) */
} sl_model_route;

#define SL_SERVER_DEFAULT_PORT 8080
#define SL_SERVER_DEFAULT_MAX_BODY (1u << 20)     /* 1 MiB -> 413 above */
#define SL_SERVER_DEFAULT_MAX_HEADERS (16u << 10) /* 16 KiB -> 431 above */
#define SL_SERVER_DEFAULT_READ_TIMEOUT_MS 10000   /* slow clients cut */
#define SL_SERVER_DEFAULT_RETRY_AFTER_S 1

/* Admin API (POST /admin/reload and friends): the server hands the request
 * to fn on a shard thread; whoever does the work answers later, from any
 * thread, with sl_server_admin_reply() (exactly once). */
typedef struct sl_admin_req sl_admin_req;
typedef void (*sl_admin_fn)(void *arg, sl_admin_req *r, const char *action);

typedef struct sl_server_opts {
	const char *host;          /* default "127.0.0.1" */
	uint16_t port;             /* 0 = any free port (see sl_server_port) */
	size_t max_body;           /* bytes */
	size_t max_headers;        /* bytes of the request line + headers */
	uint32_t read_timeout_ms;  /* reading a request (headers and body) */
	uint32_t request_timeout_ms; /* default deadline per request, 0 = none;
	                              * X-Request-Timeout-Ms overrides */
	unsigned retry_after_s;    /* Retry-After on 503 */
	const sl_model_route *routes;
	size_t n_routes;
	sl_admin_fn admin_fn;      /* NULL: /admin/ answers 404 */
	void *admin_arg;
	const char *admin_token;   /* non-NULL: admin calls need
	                            * "Authorization: Bearer <token>" */
	struct sl_dlq *dlq;        /* non-NULL: every request that ends failed,
	                            * shed or expired is written there, and
	                            * /admin/dlq serves it (the caller keeps it
	                            * open until the server is destroyed) */
} sl_server_opts;

/* Binds every shard of rt and starts serving.  Returns SL_OK and *out,
 * SL_EINVAL (no routes, bad host), SL_ESYS (bind failed: the message is
 * logged), SL_ENOMEM. */
int sl_server_create(sl_runtime *rt, const sl_server_opts *opts, sl_server **out);

/* Replaces the served models atomically (hot reload): requests already
 * accepted finish on the pipelines they started on; new requests use the
 * new routes.  The caller keeps the old pipelines alive until they are
 * drained.  Control thread only (not a shard thread).  SL_OK, SL_EINVAL,
 * SL_ENOMEM. */
int sl_server_set_routes(sl_server *s, const sl_model_route *routes, size_t n);

/* Answers an admin request (any thread, exactly once); body is JSON. */
void sl_server_admin_reply(sl_admin_req *r, int status, const char *body);

/* The bound port (useful with port 0). */
uint16_t sl_server_port(const sl_server *s);

/* Stops accepting connections and makes /readyz answer 503; requests in
 * progress go on.  Any thread. */
void sl_server_stop_accepting(sl_server *s);

/* Frees the server: closes listeners and connections.  Pipelines must be
 * drained first (so no callback is outstanding).  NULL is a no-op. */
void sl_server_destroy(sl_server *s);

#endif
