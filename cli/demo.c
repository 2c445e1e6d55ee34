/* demo.c - `sluice demo`: the seed's demo, through the real pipeline.
 *
 * Sends 10 requests (sessions session-1..session-8, the seed's prompts)
 * through RAG -> Assemble -> Inference (echo worker) -> Post -> Stream,
 * prints one trace line per stage per request (logfmt, stderr), each
 * result, and a closing table: per stage count, p50 and p99 of the time in
 * work and in queue; outcomes. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "sluice/sluice.h"

static const char *prompts[10] = {
	"What is the capital of France?",
	"Explain quantum computing in simple terms",
	"Write a haiku about the ocean",
	"What are the benefits of exercise?",
	"Describe the water cycle",
	"How does photosynthesis work?",
	"What is machine learning?",
	"Summarize the history of the Roman Empire",
	"What causes the seasons on Earth?",
	"Explain the theory of relativity",
};

typedef struct demo_ctx {
	pthread_mutex_t mx;
	pthread_cond_t cv;
	int done;
} demo_ctx;

static void on_done(void *user, const sl_result *r)
{
	demo_ctx *c = user;
	printf("%-14s %-10s %-9s %6.2f ms  \"%s\"\n", r->request_id, r->session,
	       sl_outcome_name(r->outcome), (double)(r->t_end - r->t_submit) / 1e6,
	       r->text);
	fflush(stdout);
	pthread_mutex_lock(&c->mx);
	c->done++;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mx);
}

int sl_cli_demo(int argc, char **argv)
{
	unsigned delay_ms = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--delay-ms") == 0 && i + 1 < argc) {
			delay_ms = (unsigned)strtoul(argv[++i], NULL, 10);
		} else if (strcmp(argv[i], "--help") == 0) {
			printf("usage: sluice demo [--delay-ms N]\n"
			       "  --delay-ms N   echo worker waits N ms (a loop timer) before answering\n");
			return 0;
		} else {
			fprintf(stderr, "sluice demo: unknown option '%s'\n", argv[i]);
			return 2;
		}
	}
	sl_runtime *rt = NULL;
	sl_worker *w = NULL;
	sl_pipeline *p = NULL;
	char err[256];
	int rc = sl_runtime_create(NULL, &rt);
	if (rc == SL_OK) {
		sl_echo_opts eo = {.delay_ms = delay_ms};
		rc = sl_worker_echo_create(&eo, &w);
	}
	if (rc == SL_OK) {
		sl_pipeline_opts po;
		sl_stage_def st[5];
		sl_pipeline_default(&po, st, w);
		po.name = "demo";
		po.trace = 1;
		rc = sl_pipeline_create(rt, &po, &p, err, sizeof err);
		if (rc != SL_OK)
			fprintf(stderr, "sluice demo: %s\n", err);
	}
	if (rc != SL_OK) {
		fprintf(stderr, "sluice demo: %s\n", sl_strerror(rc));
		sl_pipeline_destroy(p);
		sl_worker_destroy(w);
		sl_runtime_destroy(rt);
		return 1;
	}
	printf("sluice demo: %u shard(s), pipeline rag(512) -> assemble(512) -> "
	       "inference(1024, echo) -> post(512) -> stream(256)\n\n",
	       sl_runtime_shards(rt));
	demo_ctx c = {.done = 0};
	pthread_mutex_init(&c.mx, NULL);
	pthread_cond_init(&c.cv, NULL);
	int sent = 0;
	for (int i = 0; i < 10; i++) {
		char session[32];
		snprintf(session, sizeof session, "session-%d", i % 8 + 1);
		sl_request req;
		sl_request_init(&req);
		req.session = session;
		req.input = prompts[i];
		req.on_done = on_done;
		req.user = &c;
		rc = sl_pipeline_submit(p, &req, SL_SUBMIT_BLOCK, NULL);
		if (rc != SL_OK)
			fprintf(stderr, "submit %d: %s\n", i, sl_strerror(rc));
		else
			sent++;
	}
	pthread_mutex_lock(&c.mx);
	while (c.done < sent)
		pthread_cond_wait(&c.cv, &c.mx);
	pthread_mutex_unlock(&c.mx);

	sl_snapshot s;
	if (sl_pipeline_snapshot(p, &s) == SL_OK) {
		printf("\n%-10s %7s %12s %12s %12s %12s\n", "stage", "count", "work p50",
		       "work p99", "queue p50", "queue p99");
		for (unsigned i = 0; i < s.n_stages; i++) {
			const sl_stage_stats *t = &s.stages[i];
			printf("%-10s %7llu %9.1f us %9.1f us %9.1f us %9.1f us\n", t->name,
			       (unsigned long long)t->processed,
			       sl_histogram_quantile(t->latency, 0.5) / 1e3,
			       sl_histogram_quantile(t->latency, 0.99) / 1e3,
			       sl_histogram_quantile(t->wait, 0.5) / 1e3,
			       sl_histogram_quantile(t->wait, 0.99) / 1e3);
		}
		printf("\nend to end: p50 %.1f us, p99 %.1f us\n",
		       sl_histogram_quantile(s.e2e, 0.5) / 1e3,
		       sl_histogram_quantile(s.e2e, 0.99) / 1e3);
		printf("outcomes: submitted=%llu", (unsigned long long)s.submitted);
		for (int o = 0; o < SL_OUTCOME__COUNT; o++)
			printf(" %s=%llu", sl_outcome_name((sl_outcome)o),
			       (unsigned long long)s.outcomes[o]);
		printf(" in_flight=%llu\n", (unsigned long long)s.in_flight);
		sl_snapshot_release(&s);
	}
	sl_pipeline_drain(p, 5000);
	sl_pipeline_destroy(p);
	sl_worker_destroy(w);
	sl_runtime_destroy(rt);
	pthread_mutex_destroy(&c.mx);
	pthread_cond_destroy(&c.cv);
	return 0;
}
