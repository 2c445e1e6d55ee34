/* serve.c - `sluice serve`: the OpenAI-compatible gateway.
 *
 * The deployment comes from `--config FILE` (sluice.yaml) or, without it,
 * the embedded default: one model, "echo", on the seed's five-stage
 * pipeline with the echo worker, on 127.0.0.1:8080.  Command-line flags
 * override the file (so one file serves several instances); `--upstream URL
 * --model NAME` serves NAME through the default pipeline to an
 * OpenAI-compatible server instead of the echo backend.
 *
 * Signals (the main thread waits for them; shards never see them):
 *   SIGHUP      reload the config file (also POST /admin/reload)
 *   SIGINT/TERM stop accepting, drain in-flight requests, exit 0
 *
 * Reload: the new file is loaded and validated; if valid, a new generation
 * (workers + pipelines) is built beside the running one and the gateway's
 * routes switch to it at once; the old generation drains (requests in
 * flight finish on it) and is freed.  If invalid, the old one stays and the
 * problems are logged (and returned by the admin call).  The server section
 * (listen address, shards, limits) is read at start only. */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "config/build.h"
#include "config/config.h"
#include "core/dynbuf.h"
#include "core/log.h"
#include "dlq/dlq.h"
#include "http/openai_json.h"
#include "http/server.h"
#include "sluice/sluice.h"

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: sluice serve [--config FILE] [options]\n"
	        "  --config FILE          sluice.yaml (default: the embedded default;\n"
	        "                         `sluice config --print-default` shows it)\n"
	        "  --host ADDR            listen address (server.host)\n"
	        "  --port P               listen port (server.port; 0 = any free port)\n"
	        "  --shards N             event-loop threads (server.shards; 0 = CPUs)\n"
	        "  --no-pin               do not pin shard threads to CPUs\n"
	        "  --upstream URL         serve --model through an OpenAI-compatible server\n"
	        "                         (URL up to /v1, e.g. http://127.0.0.1:8000/v1)\n"
	        "  --model NAME           the model name to serve (default: echo)\n"
	        "  --api-key-env VAR      environment variable holding the upstream API key\n"
	        "  --request-timeout-ms N default deadline per request (0 = none)\n"
	        "  --read-timeout-ms N    time allowed to receive a request (default 10000)\n"
	        "  --echo-delay-ms N      echo backend: delay before answering (loop timer)\n"
	        "  --shed                 overflow policy shed on every stage queue\n"
	        "  --queue N              capacity of every stage queue, per shard\n"
	        "  --concurrency N        inference concurrency per shard\n"
	        "  --drain-ms N           how long to wait for in-flight requests on exit\n"
	        "  --log-level L          error|warn|info|debug|trace (default info)\n"
	        "  --trace                one logfmt line per stage per request\n"
	        "The flags that shape the pipeline (--upstream, --model, --echo-delay-ms,\n"
	        "--shed, --queue, --concurrency, --trace) apply to the default config only.\n");
}

static int parse_u(const char *flag, const char *v, unsigned long max, unsigned long *out)
{
	char *e;
	errno = 0;
	unsigned long n = strtoul(v ? v : "", &e, 10);
	if (!v || !*v || *e || errno || n > max) {
		fprintf(stderr, "sluice serve: %s needs a number 0..%lu (got '%s')\n", flag, max,
		        v ? v : "");
		return -1;
	}
	*out = n;
	return 0;
}

/* What the command line says, applied on top of the file. */
typedef struct overrides {
	const char *host;
	long port, shards;
	int no_pin;
	long req_to, read_to, drain_ms;
	/* default config only */
	const char *upstream, *model, *key_env;
	long echo_delay, queue, conc;
	int shed, trace;
} overrides;

static void apply_server(sl_config *c, const overrides *o)
{
	if (o->host) {
		free(c->server.host);
		c->server.host = strdup(o->host);
	}
	if (o->port >= 0)
		c->server.port = (uint16_t)o->port;
	if (o->shards >= 0)
		c->server.shards = (unsigned)o->shards;
	if (o->no_pin)
		c->server.pin = 0;
	if (o->req_to >= 0)
		c->server.request_timeout_ms = (uint32_t)o->req_to;
	if (o->read_to >= 0)
		c->server.read_timeout_ms = (uint32_t)o->read_to;
	if (o->drain_ms >= 0)
		c->server.drain_ms = (uint32_t)o->drain_ms;
}

/* The default config, reshaped by the pipeline flags. */
static int apply_default(sl_config *c, const overrides *o)
{
	sl_cfg_pipeline *pl = &c->pipelines[0];
	for (size_t s = 0; s < pl->n_stages; s++) {
		sl_cfg_stage *st = &pl->stages[s];
		if (o->shed)
			st->overflow = SL_OVERFLOW_SHED;
		if (o->queue > 0)
			st->queue = (uint32_t)o->queue;
		if (o->conc > 0 && st->type == SL_CFG_STAGE_INFERENCE)
			st->concurrency = (uint32_t)o->conc;
	}
	if (o->trace)
		pl->trace = 1;
	sl_cfg_backend *b = &c->backends[0];
	if (o->echo_delay >= 0)
		b->delay_ms = (uint32_t)o->echo_delay;
	if (o->upstream) {
		b->type = SL_CFG_BACKEND_OPENAI;
		b->url = strdup(o->upstream);
		b->stream = 1;
		/* named for what it is (metrics labels, X-Sluice-Backend), not "echo" */
		char *name = strdup("upstream"), *ref = strdup("upstream");
		if (!name || !ref) {
			free(name);
			free(ref);
			return SL_ENOMEM;
		}
		free(b->name);
		b->name = name;
		free(c->models[0].backends[0]);
		c->models[0].backends[0] = ref;
		if (o->key_env)
			b->api_key_env = strdup(o->key_env);
		if (!b->url || (o->key_env && !b->api_key_env))
			return SL_ENOMEM;
	}
	if (o->model) {
		free(c->models[0].name);
		c->models[0].name = strdup(o->model);
		if (!c->models[0].name)
			return SL_ENOMEM;
	}
	return SL_OK;
}

/* ---- the control thread: reloads requested by SIGHUP or the admin API */

typedef struct ctl {
	pthread_mutex_t mx;
	sl_admin_req *pending[16]; /* admin reload requests waiting */
	size_t n_pending;
	pthread_t main;
} ctl;

static void admin_cb(void *arg, sl_admin_req *r, const char *action)
{
	ctl *c = arg; /* shard thread: hand it to the main thread */
	pthread_mutex_lock(&c->mx);
	if (c->n_pending < sizeof c->pending / sizeof c->pending[0]) {
		c->pending[c->n_pending++] = r;
		r = NULL;
	}
	pthread_mutex_unlock(&c->mx);
	if (r)
		sl_server_admin_reply(r, 429, "{\"error\":{\"message\":\"too many reloads pending\","
		                              "\"type\":\"server_error\",\"param\":null,\"code\":null}}");
	else
		pthread_kill(c->main, SIGUSR1);
}

typedef struct gen {
	sl_config *cfg;
	sl_app *app;
} gen;

/* Loads, validates and builds; on success swaps the routes and retires the
 * old generation.  Fills report (JSON) for the admin call. */
static int reload(const char *path, const overrides *o, sl_runtime *rt, sl_server *srv,
                  gen *cur, sl_dynbuf *report)
{
	sl_config *cfg = NULL;
	sl_cfg_diags d = {0};
	int rc = sl_config_load_file(path, &cfg, &d);
	if (rc != SL_OK) {
		sl_dynbuf_addstr(report, "{\"reloaded\":false,\"errors\":[");
		for (size_t i = 0; i < d.n; i++) {
			char line[1024];
			sl_cfg_diag_format(&d.v[i], line, sizeof line);
			SL_LOG(SL_LOG_ERROR, "event=reload_invalid problem=%s",
			       sl__log_quote((char[1100]){0}, 1100, line));
			if (i)
				sl_dynbuf_addstr(report, ",");
			sl_oai_json_string(report, line, strlen(line));
		}
		sl_dynbuf_addstr(report, "]}");
		sl_cfg_diags_free(&d);
		return rc;
	}
	apply_server(cfg, o); /* keep flag overrides across reloads */
	sl_app *app = NULL;
	char err[512];
	rc = sl_app_build(rt, cfg, &app, err, sizeof err);
	if (rc != SL_OK) {
		SL_LOG(SL_LOG_ERROR, "event=reload_failed error=%s",
		       sl__log_quote((char[600]){0}, 600, err));
		sl_dynbuf_addstr(report, "{\"reloaded\":false,\"errors\":[");
		sl_oai_json_string(report, err, strlen(err));
		sl_dynbuf_addstr(report, "]}");
		sl_config_free(cfg);
		return rc;
	}
	size_t n;
	const sl_model_route *routes = sl_app_routes(app, &n);
	rc = sl_server_set_routes(srv, routes, n);
	if (rc != SL_OK) {
		sl_app_destroy(app);
		sl_config_free(cfg);
		sl_dynbuf_addstr(report, "{\"reloaded\":false,\"errors\":[\"switching routes failed\"]}");
		return rc;
	}
	gen old = *cur;
	cur->cfg = cfg;
	cur->app = app;
	sl_dynbuf_printf(report, "{\"reloaded\":true,\"models\":%zu}", n);
	SL_LOG(SL_LOG_INFO, "event=reloaded file=%s models=%zu", path, n);
	/* requests in flight finish on the old pipelines */
	sl_app_drain(old.app, cfg->server.drain_ms);
	sl_app_destroy(old.app);
	sl_config_free(old.cfg);
	return SL_OK;
}

int sl_cli_serve(int argc, char **argv)
{
	overrides o = {.port = -1, .shards = -1, .req_to = -1, .read_to = -1,
	               .drain_ms = -1, .echo_delay = -1, .queue = -1, .conc = -1};
	const char *path = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		unsigned long n = 0;
		int r = 0, takes = 1;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--config")) {
			path = v;
		} else if (!strcmp(a, "--host")) {
			o.host = v;
		} else if (!strcmp(a, "--port")) {
			if (!(r = parse_u(a, v, 65535, &n)))
				o.port = (long)n;
		} else if (!strcmp(a, "--shards")) {
			if (!(r = parse_u(a, v, SL_MAX_SHARDS, &n)))
				o.shards = (long)n;
		} else if (!strcmp(a, "--upstream")) {
			o.upstream = v;
		} else if (!strcmp(a, "--model")) {
			o.model = v;
			if (v && !*v)
				r = -1;
		} else if (!strcmp(a, "--api-key-env")) {
			o.key_env = v;
		} else if (!strcmp(a, "--request-timeout-ms")) {
			if (!(r = parse_u(a, v, 86400000ul, &n)))
				o.req_to = (long)n;
		} else if (!strcmp(a, "--read-timeout-ms")) {
			if (!(r = parse_u(a, v, 3600000ul, &n)))
				o.read_to = (long)n;
		} else if (!strcmp(a, "--echo-delay-ms")) {
			if (!(r = parse_u(a, v, 3600000ul, &n)))
				o.echo_delay = (long)n;
		} else if (!strcmp(a, "--drain-ms")) {
			if (!(r = parse_u(a, v, 86400000ul, &n)))
				o.drain_ms = (long)n;
		} else if (!strcmp(a, "--queue")) {
			if (!(r = parse_u(a, v, 1u << 24, &n)) && !(o.queue = (long)n)) {
				fprintf(stderr, "sluice serve: --queue must be at least 1\n");
				return 2;
			}
		} else if (!strcmp(a, "--concurrency")) {
			if (!(r = parse_u(a, v, 1u << 20, &n)) && !(o.conc = (long)n)) {
				fprintf(stderr, "sluice serve: --concurrency must be at least 1\n");
				return 2;
			}
		} else if (!strcmp(a, "--log-level")) {
			sl_log_level lvl;
			if (!v || sl_log_level_parse(v, &lvl) != SL_OK) {
				fprintf(stderr, "sluice serve: --log-level takes error|warn|info|debug|trace\n");
				return 2;
			}
			sl_log_set_level(lvl);
		} else {
			takes = 0;
			if (!strcmp(a, "--no-pin"))
				o.no_pin = 1;
			else if (!strcmp(a, "--trace"))
				o.trace = 1;
			else if (!strcmp(a, "--shed"))
				o.shed = 1;
			else {
				fprintf(stderr, "sluice serve: unknown option '%s'\n", a);
				usage(stderr);
				return 2;
			}
		}
		if (takes && !v) {
			fprintf(stderr, "sluice serve: %s needs a value\n", a);
			return 2;
		}
		if (r)
			return 2;
		i += takes;
	}
	if (path && (o.upstream || o.model || o.echo_delay >= 0 || o.shed || o.queue > 0 ||
	             o.conc > 0 || o.trace)) {
		fprintf(stderr, "sluice serve: --upstream, --model, --echo-delay-ms, --shed, --queue, "
		                "--concurrency and --trace shape the default pipeline; with --config, "
		                "set them in the file\n");
		return 2;
	}
	if (o.upstream && !o.model) {
		fprintf(stderr, "sluice serve: --upstream needs --model NAME\n");
		return 2;
	}

	gen cur = {0};
	int rc;
	if (path) {
		sl_cfg_diags d = {0};
		rc = sl_config_load_file(path, &cur.cfg, &d);
		if (rc != SL_OK) {
			for (size_t i = 0; i < d.n; i++) {
				char line[1024];
				fprintf(stderr, "%s\n", sl_cfg_diag_format(&d.v[i], line, sizeof line));
			}
			if (d.dropped)
				fprintf(stderr, "... and %zu more\n", d.dropped);
			fprintf(stderr, "sluice serve: %s: %s\n", path,
			        rc == SL_EINVAL ? "invalid configuration" : sl_strerror(rc));
			sl_cfg_diags_free(&d);
			return rc == SL_EINVAL ? 1 : 2;
		}
	} else {
		rc = sl_config_default(&cur.cfg);
		if (rc == SL_OK)
			rc = apply_default(cur.cfg, &o);
		if (rc != SL_OK) {
			fprintf(stderr, "sluice serve: default configuration: %s\n", sl_strerror(rc));
			sl_config_free(cur.cfg);
			return 1;
		}
	}
	apply_server(cur.cfg, &o);

	/* Requests allocate and free a few KiB each on every shard: keep glibc
	 * from trimming (madvise) and re-growing its arenas on every burst,
	 * which showed up at ~5 % of a shard's time in perf. */
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	mallopt(M_MMAP_THRESHOLD, 4 << 20);

	/* Every stream holds a client socket and an upstream socket: take the
	 * hard limit of open files, and say so when it is low. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096)
		SL_LOG(SL_LOG_WARN, "event=low_fd_limit limit=%llu note=\"each stream needs two "
		       "descriptors (client and upstream)\"", (unsigned long long)rl.rlim_cur);

	/* Signals go to the main thread only, which waits for them. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	const sl_cfg_server *sv = &cur.cfg->server;
	sl_runtime *rt = NULL;
	sl_server *srv = NULL;
	sl_runtime_opts ro = {.shards = sv->shards, .no_pin = !sv->pin};
	rc = sl_runtime_create(&ro, &rt);
	if (rc != SL_OK) {
		fprintf(stderr, "sluice serve: runtime: %s\n", sl_strerror(rc));
		sl_config_free(cur.cfg);
		return 1;
	}
	char err[512];
	rc = sl_app_build(rt, cur.cfg, &cur.app, err, sizeof err);
	if (rc != SL_OK) {
		fprintf(stderr, "sluice serve: %s\n", err);
		sl_runtime_destroy(rt);
		sl_config_free(cur.cfg);
		return 1;
	}
	ctl c = {.n_pending = 0, .main = pthread_self()};
	pthread_mutex_init(&c.mx, NULL);
	const char *admin_token = NULL;
	if (sv->admin.token_env) {
		admin_token = getenv(sv->admin.token_env);
		if (!admin_token || !*admin_token) {
			fprintf(stderr, "sluice serve: server.admin.token_env: environment variable %s is "
			                "not set\n", sv->admin.token_env);
			sl_app_destroy(cur.app);
			sl_runtime_destroy(rt);
			sl_config_free(cur.cfg);
			return 1;
		}
	}
	/* the dead-letter log: opened once (a reload keeps it) */
	sl_dlq *dlq = NULL;
	if (cur.cfg->dlq.dir) {
		const sl_cfg_dlq *dc = &cur.cfg->dlq;
		sl_dlq_opts dopt = {.dir = dc->dir,
		                    .fsync = (sl_dlq_fsync)dc->fsync,
		                    .fsync_interval_ms = dc->fsync_interval_ms,
		                    .segment_bytes = dc->segment_bytes,
		                    .max_bytes = dc->max_bytes};
		char derr[512];
		if (sl_dlq_open(&dopt, &dlq, derr, sizeof derr) != SL_OK) {
			fprintf(stderr, "sluice serve: dlq.dir: %s\n", derr);
			sl_app_destroy(cur.app);
			sl_runtime_destroy(rt);
			sl_config_free(cur.cfg);
			return 1;
		}
	}
	size_t nr;
	const sl_model_route *routes = sl_app_routes(cur.app, &nr);
	sl_server_opts so = {.host = sv->host, .port = sv->port, .max_body = sv->max_body,
	                     .max_headers = sv->max_headers, .read_timeout_ms = sv->read_timeout_ms,
	                     .request_timeout_ms = sv->request_timeout_ms,
	                     .retry_after_s = sv->retry_after_s, .routes = routes, .n_routes = nr,
	                     .admin_fn = sv->admin.enabled ? admin_cb : NULL, .admin_arg = &c,
	                     .admin_token = admin_token, .dlq = dlq};
	rc = sl_server_create(rt, &so, &srv);
	if (rc != SL_OK) {
		fprintf(stderr, "sluice serve: cannot listen on %s:%u: %s\n", sv->host, sv->port,
		        sl_strerror(rc));
		sl_dlq_close(dlq);
		sl_app_destroy(cur.app);
		sl_runtime_destroy(rt);
		sl_config_free(cur.cfg);
		return 1;
	}
	unsigned bound = sl_server_port(srv);
	printf("sluice %s serving on http://%s:%u (%u shard%s; %s)\n", SLUICE_VERSION, sv->host,
	       bound, sl_runtime_shards(rt), sl_runtime_shards(rt) == 1 ? "" : "s",
	       path ? path : "embedded default config");
	for (size_t i = 0; i < nr; i++)
		printf("  model %-20s pipeline %s\n", routes[i].name,
		       sl_pipeline_name(routes[i].pipeline));
	printf("try:\n  curl -s http://%s:%u/v1/chat/completions -H 'Content-Type: application/json' \\\n"
	       "    -d '{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello, world!\"}]}'\n",
	       sv->host, bound, routes[0].name);
	fflush(stdout);
	SL_LOG(SL_LOG_INFO, "event=listening host=%s port=%u models=%zu shards=%u", sv->host, bound,
	       nr, sl_runtime_shards(rt));

	int sig = 0;
	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP || sig == SIGUSR1) {
			sl_admin_req *pend[16];
			size_t np;
			pthread_mutex_lock(&c.mx);
			np = c.n_pending;
			memcpy(pend, c.pending, np * sizeof *pend);
			c.n_pending = 0;
			pthread_mutex_unlock(&c.mx);
			if (sig == SIGUSR1 && np == 0)
				continue;
			sl_dynbuf report;
			sl_dynbuf_init(&report, 1u << 20);
			int rrc;
			if (!path) {
				rrc = SL_ESTATE;
				sl_dynbuf_addstr(&report, "{\"reloaded\":false,\"errors\":[\"started without "
				                          "--config: nothing to reload\"]}");
				SL_LOG(SL_LOG_WARN, "event=reload_skipped note=\"started without --config\"");
			} else {
				rrc = reload(path, &o, rt, srv, &cur, &report);
			}
			for (size_t i = 0; i < np; i++)
				sl_server_admin_reply(pend[i], rrc == SL_OK ? 200 : rrc == SL_ESTATE ? 409 : 422,
				                      sl_dynbuf_str(&report));
			sl_dynbuf_free(&report);
			continue;
		}
		break;
	}
	pthread_mutex_lock(&c.mx);
	for (size_t i = 0; i < c.n_pending; i++)
		sl_server_admin_reply(c.pending[i], 503, "{\"error\":{\"message\":\"shutting down\","
		                      "\"type\":\"server_error\",\"param\":null,\"code\":\"draining\"}}");
	c.n_pending = 0;
	pthread_mutex_unlock(&c.mx);
	uint32_t drain_ms = cur.cfg->server.drain_ms;
	SL_LOG(SL_LOG_INFO, "event=shutdown signal=%d drain_ms=%u", sig, drain_ms);
	sl_server_stop_accepting(srv);
	rc = sl_app_drain(cur.app, drain_ms);
	sl_server_destroy(srv);
	sl_app_destroy(cur.app);
	sl_runtime_destroy(rt);
	sl_dlq_close(dlq);
	sl_config_free(cur.cfg);
	pthread_mutex_destroy(&c.mx);
	SL_LOG(SL_LOG_INFO, "event=stopped drained=%s", rc == SL_OK ? "all" : "timeout");
	return 0;
}
