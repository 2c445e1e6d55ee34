/* serve.c - `sluice serve`: the OpenAI-compatible gateway.
 *
 * With no options it serves the embedded default: one model, "echo", on the
 * seed's five-stage pipeline with the echo worker, on 127.0.0.1:8080.
 * --upstream URL --model NAME serves NAME through the same pipeline to an
 * OpenAI-compatible server instead.  SIGINT/SIGTERM: stop accepting, drain
 * the pipelines (up to --drain-ms), exit 0. */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "core/log.h"
#include "http/server.h"
#include "sluice/sluice.h"
#include "worker/openai/openai.h"

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: sluice serve [options]\n"
	        "  --host ADDR            listen address (default 127.0.0.1)\n"
	        "  --port P               listen port (default 8080; 0 = any free port)\n"
	        "  --shards N             event-loop threads (default: CPUs in the affinity mask)\n"
	        "  --no-pin               do not pin shard threads to CPUs\n"
	        "  --upstream URL         serve --model through an OpenAI-compatible server\n"
	        "                         (URL up to /v1, e.g. http://127.0.0.1:8000/v1)\n"
	        "  --model NAME           the model name to serve (default: echo)\n"
	        "  --api-key-env VAR      environment variable holding the upstream API key\n"
	        "  --request-timeout-ms N default deadline per request (0 = none)\n"
	        "  --echo-delay-ms N      echo worker: delay before answering (loop timer)\n"
	        "  --shed                 overflow policy shed on every stage queue (default block)\n"
	        "  --queue N              capacity of every stage queue, per shard\n"
	        "                         (default: the seed's 512/512/1024/512/256)\n"
	        "  --concurrency N        inference concurrency per shard (default 256)\n"
	        "  --read-timeout-ms N    time allowed to receive a request (default 10000)\n"
	        "  --drain-ms N           how long to wait for in-flight requests on exit (30000)\n"
	        "  --log-level L          error|warn|info|debug|trace (default info)\n"
	        "  --trace                one logfmt line per stage per request\n");
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

int sl_cli_serve(int argc, char **argv)
{
	const char *host = "127.0.0.1", *upstream = NULL, *model = NULL, *key_env = NULL;
	unsigned long port = SL_SERVER_DEFAULT_PORT, shards = 0, req_to = 0, echo_delay = 0,
	              drain_ms = SL_DEFAULT_DRAIN_MS, queue = 0, conc = 0, read_to = 0;
	int no_pin = 0, trace = 0, shed = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		int r = 0;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--host")) {
			host = v, i++;
			if (!v) r = -1;
		} else if (!strcmp(a, "--port")) {
			r = parse_u(a, v, 65535, &port), i++;
		} else if (!strcmp(a, "--shards")) {
			r = parse_u(a, v, SL_MAX_SHARDS, &shards), i++;
		} else if (!strcmp(a, "--upstream")) {
			upstream = v, i++;
			if (!v) r = -1;
		} else if (!strcmp(a, "--model")) {
			model = v, i++;
			if (!v || !*v) r = -1;
		} else if (!strcmp(a, "--api-key-env")) {
			key_env = v, i++;
			if (!v) r = -1;
		} else if (!strcmp(a, "--request-timeout-ms")) {
			r = parse_u(a, v, 86400000ul, &req_to), i++;
		} else if (!strcmp(a, "--echo-delay-ms")) {
			r = parse_u(a, v, 3600000ul, &echo_delay), i++;
		} else if (!strcmp(a, "--queue")) {
			r = parse_u(a, v, 1u << 24, &queue), i++;
			if (!r && !queue) {
				fprintf(stderr, "sluice serve: --queue must be at least 1\n");
				return 2;
			}
		} else if (!strcmp(a, "--concurrency")) {
			r = parse_u(a, v, 1u << 20, &conc), i++;
			if (!r && !conc) {
				fprintf(stderr, "sluice serve: --concurrency must be at least 1\n");
				return 2;
			}
		} else if (!strcmp(a, "--read-timeout-ms")) {
			r = parse_u(a, v, 3600000ul, &read_to), i++;
		} else if (!strcmp(a, "--drain-ms")) {
			r = parse_u(a, v, 86400000ul, &drain_ms), i++;
		} else if (!strcmp(a, "--log-level")) {
			sl_log_level lvl;
			if (!v || sl_log_level_parse(v, &lvl) != SL_OK) {
				fprintf(stderr, "sluice serve: --log-level takes error|warn|info|debug|trace\n");
				return 2;
			}
			sl_log_set_level(lvl);
			i++;
		} else if (!strcmp(a, "--no-pin")) {
			no_pin = 1;
		} else if (!strcmp(a, "--trace")) {
			trace = 1;
		} else if (!strcmp(a, "--shed")) {
			shed = 1;
		} else {
			fprintf(stderr, "sluice serve: unknown option '%s'\n", a);
			usage(stderr);
			return 2;
		}
		if (r != 0) {
			if (r == -1 && !v)
				fprintf(stderr, "sluice serve: %s needs a value\n", a);
			return 2;
		}
	}
	if (!model)
		model = upstream ? NULL : "echo";
	if (upstream && !model) {
		fprintf(stderr, "sluice serve: --upstream needs --model NAME\n");
		return 2;
	}

	/* Requests allocate and free a few KiB each on every shard: keep glibc
	 * from trimming (madvise) and re-growing its arenas on every burst,
	 * which showed up at ~5 % of a shard's time in perf. */
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	mallopt(M_MMAP_THRESHOLD, 4 << 20);

	/* Signals go to the main thread only, which waits for them. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	sl_runtime *rt = NULL;
	sl_worker *w = NULL;
	sl_pipeline *p = NULL;
	sl_server *srv = NULL;
	int rc;
	sl_runtime_opts ro = {.shards = (unsigned)shards, .no_pin = no_pin};
	rc = sl_runtime_create(&ro, &rt);
	if (rc != SL_OK) {
		fprintf(stderr, "sluice serve: runtime: %s\n", sl_strerror(rc));
		return 1;
	}
	if (upstream) {
		sl_openai_opts oo;
		sl_openai_opts_init(&oo);
		oo.url = upstream;
		oo.model = model;
		oo.api_key_env = key_env;
		rc = sl_worker_openai_create(&oo, &w);
	} else {
		sl_echo_opts eo = {.delay_ms = (uint32_t)echo_delay};
		rc = sl_worker_echo_create(&eo, &w);
	}
	if (rc != SL_OK) {
		fprintf(stderr, "sluice serve: worker: %s\n", sl_strerror(rc));
		sl_runtime_destroy(rt);
		return 1;
	}
	sl_pipeline_opts po;
	sl_stage_def st[5];
	sl_pipeline_default(&po, st, w);
	po.name = "default";
	po.trace = trace;
	for (int k = 0; k < 5; k++) {
		if (shed)
			st[k].overflow = SL_OVERFLOW_SHED;
		if (queue)
			st[k].queue = (uint32_t)queue;
	}
	if (conc)
		st[2].concurrency = (uint32_t)conc;
	char err[256];
	rc = sl_pipeline_create(rt, &po, &p, err, sizeof err);
	if (rc != SL_OK) {
		fprintf(stderr, "sluice serve: pipeline: %s\n", err);
		sl_worker_destroy(w);
		sl_runtime_destroy(rt);
		return 1;
	}
	sl_model_route route = {.name = model, .pipeline = p, .pass_messages = upstream != NULL};
	sl_server_opts so = {.host = host, .port = (uint16_t)port,
	                     .request_timeout_ms = (uint32_t)req_to,
	                     .read_timeout_ms = (uint32_t)read_to,
	                     .routes = &route, .n_routes = 1};
	rc = sl_server_create(rt, &so, &srv);
	if (rc != SL_OK) {
		fprintf(stderr, "sluice serve: cannot listen on %s:%lu: %s\n", host, port,
		        sl_strerror(rc));
		sl_pipeline_destroy(p);
		sl_worker_destroy(w);
		sl_runtime_destroy(rt);
		return 1;
	}
	unsigned bound = sl_server_port(srv);
	printf("sluice %s serving model '%s' on http://%s:%u (%u shard%s%s)\n", SLUICE_VERSION,
	       model, host, bound, sl_runtime_shards(rt), sl_runtime_shards(rt) == 1 ? "" : "s",
	       upstream ? ", upstream " : "");
	if (upstream)
		printf("  upstream: %s\n", upstream);
	printf("try:\n  curl -s http://%s:%u/v1/chat/completions -H 'Content-Type: application/json' \\\n"
	       "    -d '{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello, world!\"}]}'\n",
	       host, bound, model);
	fflush(stdout);
	SL_LOG(SL_LOG_INFO, "event=listening host=%s port=%u model=%s shards=%u", host, bound,
	       model, sl_runtime_shards(rt));

	int sig = 0;
	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			SL_LOG(SL_LOG_INFO, "event=sighup note=\"no configuration file to reload\"");
			continue;
		}
		break;
	}
	SL_LOG(SL_LOG_INFO, "event=shutdown signal=%d drain_ms=%lu", sig, drain_ms);
	sl_server_stop_accepting(srv);
	rc = sl_pipeline_drain(p, drain_ms);
	sl_server_destroy(srv);
	sl_pipeline_destroy(p);
	sl_worker_destroy(w);
	sl_runtime_destroy(rt);
	SL_LOG(SL_LOG_INFO, "event=stopped drained=%s", rc == SL_OK ? "all" : "timeout");
	return 0;
}
