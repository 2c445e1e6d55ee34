/* metrics.c - Prometheus text format 0.0.4; see metrics.h. */
#include <inttypes.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "http/metrics.h"
#include "dlq/dlq.h"
#include "worker/router/router.h"

void sl_http_stats_add(sl_http_stats *dst, const sl_http_stats *src)
{
	sl__ctr_add_u(&dst->requests, atomic_load_explicit(&((sl_http_stats *)src)->requests,
	                                                  memory_order_relaxed));
	for (int i = 0; i < 6; i++)
		sl__ctr_add_u(&dst->responses[i],
		              atomic_load_explicit(&((sl_http_stats *)src)->responses[i],
		                                   memory_order_relaxed));
	sl__ctr_add_u(&dst->shed_503, atomic_load_explicit(&((sl_http_stats *)src)->shed_503,
	                                                  memory_order_relaxed));
}

static const double ladder[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5,
                                5,      10,      30,     60};
#define NL (sizeof ladder / sizeof ladder[0])

typedef struct cum {
	uint64_t at[NL];
	uint64_t total;
} cum;

static void add_bucket(void *arg, uint64_t le_ns, uint64_t n)
{
	cum *c = arg;
	double le = (double)le_ns / 1e9;
	for (size_t i = 0; i < NL; i++)
		if (le <= ladder[i])
			c->at[i] += n;
	c->total += n;
}

static int hist(sl_dynbuf *b, const char *name, const char *labels, const sl_histogram *h)
{
	cum c;
	memset(&c, 0, sizeof c);
	sl_histogram_foreach(h, add_bucket, &c);
	int rc = SL_OK;
	for (size_t i = 0; i < NL && rc == SL_OK; i++)
		rc = sl_dynbuf_printf(b, "sluice_%s_bucket{%s,le=\"%g\"} %" PRIu64 "\n", name, labels,
		                      ladder[i], c.at[i]);
	if (rc == SL_OK)
		rc = sl_dynbuf_printf(b, "sluice_%s_bucket{%s,le=\"+Inf\"} %" PRIu64 "\n", name,
		                      labels, c.total);
	if (rc == SL_OK)
		rc = sl_dynbuf_printf(b, "sluice_%s_sum{%s} %.9f\n", name, labels,
		                      (double)sl_histogram_sum(h) / 1e9);
	if (rc == SL_OK)
		rc = sl_dynbuf_printf(b, "sluice_%s_count{%s} %" PRIu64 "\n", name, labels, c.total);
	return rc;
}

/* Label values are names from configuration: escape \ " and newline. */
static void esc(char *out, size_t cap, const char *s)
{
	size_t o = 0;
	for (; *s && o + 3 < cap; s++) {
		if (*s == '\\' || *s == '"') {
			out[o++] = '\\';
			out[o++] = *s;
		} else if (*s == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else {
			out[o++] = *s;
		}
	}
	out[o] = '\0';
}

#define TYPE(b, name, kind, help)                                                  \
	sl_dynbuf_printf(b, "# HELP sluice_%s %s\n# TYPE sluice_%s %s\n", name, help, name, kind)

int sl_metrics_render(sl_dynbuf *b, const sl_model_route *routes, size_t n_routes,
                      const sl_http_stats *http)
{
	/* distinct pipelines */
	sl_pipeline *ps[64];
	size_t np = 0;
	for (size_t i = 0; i < n_routes && np < 64; i++) {
		size_t k;
		for (k = 0; k < np; k++)
			if (ps[k] == routes[i].pipeline)
				break;
		if (k == np)
			ps[np++] = routes[i].pipeline;
	}
	sl_snapshot *sn = calloc(np ? np : 1, sizeof *sn);
	if (!sn)
		return SL_ENOMEM;
	size_t got = 0;
	int rc = SL_OK;
	for (; got < np; got++)
		if ((rc = sl_pipeline_snapshot(ps[got], &sn[got])) != SL_OK)
			break;
	char pl[128], lab[320];
	if (rc == SL_OK) {
		TYPE(b, "requests_submitted_total", "counter", "Requests accepted by the pipeline (door sheds included).");
		for (size_t i = 0; i < np; i++) {
			esc(pl, sizeof pl, sl_pipeline_name(ps[i]));
			sl_dynbuf_printf(b, "sluice_requests_submitted_total{pipeline=\"%s\"} %" PRIu64 "\n",
			                 pl, sn[i].submitted);
		}
		TYPE(b, "requests_total", "counter", "Requests ended, by outcome.");
		for (size_t i = 0; i < np; i++) {
			esc(pl, sizeof pl, sl_pipeline_name(ps[i]));
			for (int o = 0; o < SL_OUTCOME__COUNT; o++)
				sl_dynbuf_printf(b, "sluice_requests_total{pipeline=\"%s\",outcome=\"%s\"} %" PRIu64 "\n",
				                 pl, sl_outcome_name((sl_outcome)o), sn[i].outcomes[o]);
		}
		TYPE(b, "requests_in_flight", "gauge", "Requests queued or in work.");
		for (size_t i = 0; i < np; i++) {
			esc(pl, sizeof pl, sl_pipeline_name(ps[i]));
			sl_dynbuf_printf(b, "sluice_requests_in_flight{pipeline=\"%s\"} %" PRIu64 "\n", pl,
			                 sn[i].in_flight);
		}
		TYPE(b, "tokens_out_total", "counter", "Tokens produced by workers.");
		for (size_t i = 0; i < np; i++) {
			esc(pl, sizeof pl, sl_pipeline_name(ps[i]));
			sl_dynbuf_printf(b, "sluice_tokens_out_total{pipeline=\"%s\"} %" PRIu64 "\n", pl,
			                 sn[i].tokens_out);
		}
		static const struct {
			const char *name, *kind, *help;
			size_t off;
		} sf[] = {
			{"stage_enqueued_total", "counter", "Items that entered the stage's queue.", offsetof(sl_stage_stats, enqueued)},
			{"stage_processed_total", "counter", "Items the stage finished.", offsetof(sl_stage_stats, processed)},
			{"stage_shed_total", "counter", "Items refused by the stage's full queue (shed).", offsetof(sl_stage_stats, shed)},
			{"stage_displaced_total", "counter", "Items shed from the stage's full queue to admit a higher priority (also in stage_shed_total).", offsetof(sl_stage_stats, displaced)},
			{"stage_failed_total", "counter", "Items that failed in the stage.", offsetof(sl_stage_stats, failed)},
			{"stage_expired_total", "counter", "Items whose deadline passed in the stage.", offsetof(sl_stage_stats, expired)},
			{"stage_cancelled_total", "counter", "Items cancelled in the stage.", offsetof(sl_stage_stats, cancelled)},
			{"stage_queue_depth", "gauge", "Items waiting in the stage's queue.", offsetof(sl_stage_stats, queued)},
			{"stage_in_flight", "gauge", "Items in work in the stage (or waiting for room downstream).", offsetof(sl_stage_stats, running)},
			{"stage_queue_capacity", "gauge", "The stage's queue capacity (all shards).", offsetof(sl_stage_stats, capacity)},
			{"stage_concurrency", "gauge", "The stage's work slots (all shards).", offsetof(sl_stage_stats, concurrency)},
		};
		for (size_t f = 0; f < sizeof sf / sizeof sf[0]; f++) {
			TYPE(b, sf[f].name, sf[f].kind, sf[f].help);
			for (size_t i = 0; i < np; i++) {
				esc(pl, sizeof pl, sl_pipeline_name(ps[i]));
				for (unsigned s = 0; s < sn[i].n_stages; s++) {
					char st[128];
					esc(st, sizeof st, sn[i].stages[s].name);
					uint64_t v = *(const uint64_t *)((const char *)&sn[i].stages[s] + sf[f].off);
					sl_dynbuf_printf(b, "sluice_%s{pipeline=\"%s\",stage=\"%s\"} %" PRIu64 "\n",
					                 sf[f].name, pl, st, v);
				}
			}
		}
		static const struct {
			const char *name, *help;
			int wait;
		} sh[] = {
			{"stage_latency_seconds", "Time an item spends in a stage's work.", 0},
			{"stage_queue_wait_seconds", "Time an item waits in a stage's queue.", 1},
		};
		for (size_t f = 0; f < sizeof sh / sizeof sh[0]; f++) {
			TYPE(b, sh[f].name, "histogram", sh[f].help);
			for (size_t i = 0; i < np; i++) {
				esc(pl, sizeof pl, sl_pipeline_name(ps[i]));
				for (unsigned s = 0; s < sn[i].n_stages; s++) {
					char st[128];
					esc(st, sizeof st, sn[i].stages[s].name);
					snprintf(lab, sizeof lab, "pipeline=\"%s\",stage=\"%s\"", pl, st);
					hist(b, sh[f].name, lab,
					     sh[f].wait ? sn[i].stages[s].wait : sn[i].stages[s].latency);
				}
			}
		}
		TYPE(b, "request_duration_seconds", "histogram", "Submit to outcome, completed requests.");
		for (size_t i = 0; i < np; i++) {
			esc(pl, sizeof pl, sl_pipeline_name(ps[i]));
			snprintf(lab, sizeof lab, "pipeline=\"%s\"", pl);
			hist(b, "request_duration_seconds", lab, sn[i].e2e);
		}
		TYPE(b, "time_to_first_token_seconds", "histogram", "Submit to the first token.");
		for (size_t i = 0; i < np; i++) {
			esc(pl, sizeof pl, sl_pipeline_name(ps[i]));
			snprintf(lab, sizeof lab, "pipeline=\"%s\"", pl);
			hist(b, "time_to_first_token_seconds", lab, sn[i].ttft);
		}
	}
	if (rc == SL_OK && http) {
		TYPE(b, "http_requests_total", "counter", "HTTP requests received.");
		sl_dynbuf_printf(b, "sluice_http_requests_total %" PRIu64 "\n",
		                 atomic_load(&((sl_http_stats *)http)->requests));
		TYPE(b, "http_responses_total", "counter", "HTTP responses sent, by status class.");
		for (int c = 1; c <= 5; c++)
			sl_dynbuf_printf(b, "sluice_http_responses_total{code_class=\"%dxx\"} %" PRIu64 "\n",
			                 c, atomic_load(&((sl_http_stats *)http)->responses[c]));
		TYPE(b, "http_shed_total", "counter", "503 answers (shed or draining).");
		rc = sl_dynbuf_printf(b, "sluice_http_shed_total %" PRIu64 "\n",
		                      atomic_load(&((sl_http_stats *)http)->shed_503));
	}
	for (size_t i = 0; i < got; i++)
		sl_snapshot_release(&sn[i]);
	free(sn);
	return rc;
}

/* One family over every router backend: get gives each backend's value. */
typedef double (*bval_fn)(const sl_router_backend_stats *s);
static void backend_family(sl_dynbuf *b, const sl_model_route *routes, size_t n,
                           const char *name, const char *kind, const char *help, bval_fn get)
{
	TYPE(b, name, kind, help);
	for (size_t i = 0; i < n; i++) {
		if (!sl_worker_is_router(routes[i].worker))
			continue;
		sl_router_backend_stats st[SL_ROUTER_MAX_BACKENDS];
		unsigned k = sl_router_stats(routes[i].worker, st, SL_ROUTER_MAX_BACKENDS);
		char m[300], be[200];
		esc(m, sizeof m, routes[i].name);
		for (unsigned j = 0; j < k; j++) {
			esc(be, sizeof be, st[j].name);
			sl_dynbuf_printf(b, "sluice_%s{model=\"%s\",backend=\"%s\"} %.15g\n", name, m, be,
			                 get(&st[j]));
		}
	}
}

static double v_selected(const sl_router_backend_stats *s) { return (double)s->selected; }
static double v_attempts(const sl_router_backend_stats *s) { return (double)s->attempts; }
static double v_successes(const sl_router_backend_stats *s) { return (double)s->successes; }
static double v_failures(const sl_router_backend_stats *s) { return (double)s->failures; }
static double v_retries(const sl_router_backend_stats *s) { return (double)s->retries; }
static double v_exhausted(const sl_router_backend_stats *s) { return (double)s->budget.exhausted; }
static double v_limited(const sl_router_backend_stats *s) { return (double)s->limited; }
static double v_open_skips(const sl_router_backend_stats *s) { return (double)s->open_skips; }
static double v_trips(const sl_router_backend_stats *s) { return (double)s->breaker.trips; }
static double v_rejected(const sl_router_backend_stats *s) { return (double)s->breaker.rejected; }
static double v_limit(const sl_router_backend_stats *s) { return s->limit; }
static double v_inflight(const sl_router_backend_stats *s) { return s->inflight; }
static double v_state(const sl_router_backend_stats *s)
{
	return !strcmp(s->breaker_state, "open") ? 1 : !strcmp(s->breaker_state, "half_open") ? 2 : 0;
}
static double v_cooldown(const sl_router_backend_stats *s) { return s->breaker.cooldown_ms; }
static double v_ttft(const sl_router_backend_stats *s) { return s->ewma_ttft_ms / 1e3; }

int sl_metrics_render_backends(sl_dynbuf *b, const sl_model_route *routes, size_t n)
{
	static const struct {
		const char *name, *kind, *help;
		bval_fn get;
	} fam[] = {
		{"backend_selected_total", "counter", "Requests whose first attempt the routing strategy sent to this backend (A/B split).", v_selected},
		{"backend_attempts_total", "counter", "Calls started on this backend (first attempts and retries).", v_attempts},
		{"backend_successes_total", "counter", "Calls that completed.", v_successes},
		{"backend_failures_total", "counter", "Calls that failed in a way that counts against the backend's breaker.", v_failures},
		{"backend_retries_total", "counter", "Re-attempts (retries and fail-overs) sent to this backend.", v_retries},
		{"backend_retry_budget_exhausted_total", "counter", "Retries refused because the backend's retry budget was spent.", v_exhausted},
		{"backend_limited_total", "counter", "Calls this backend did not get because it was at its concurrency limit.", v_limited},
		{"backend_open_skips_total", "counter", "Calls this backend did not get because its circuit was open.", v_open_skips},
		{"backend_breaker_trips_total", "counter", "Times the breaker opened.", v_trips},
		{"backend_breaker_rejected_total", "counter", "Calls the breaker refused.", v_rejected},
		{"backend_breaker_state", "gauge", "Breaker state: 0 closed, 1 open, 2 half-open.", v_state},
		{"backend_breaker_cooldown_ms", "gauge", "Current open period of the breaker.", v_cooldown},
		{"backend_concurrency_limit", "gauge", "Current concurrency limit (adaptive or fixed; 0 = none).", v_limit},
		{"backend_in_flight", "gauge", "Calls in progress.", v_inflight},
		{"backend_ttft_ewma_seconds", "gauge", "Moving average of the time to first token.", v_ttft},
	};
	for (size_t f = 0; f < sizeof fam / sizeof fam[0]; f++)
		backend_family(b, routes, n, fam[f].name, fam[f].kind, fam[f].help, fam[f].get);
	return SL_OK;
}

int sl_metrics_render_dlq(sl_dynbuf *b, struct sl_dlq *q)
{
	if (!q)
		return SL_OK;
	sl_dlq_stats st;
	sl_dlq_stats_get(q, &st);
	TYPE(b, "dlq_records_total", "counter", "Dead-letter records written.");
	sl_dynbuf_printf(b, "sluice_dlq_records_total %" PRIu64 "\n", st.records);
	TYPE(b, "dlq_bytes_total", "counter", "Bytes written to the dead-letter log.");
	sl_dynbuf_printf(b, "sluice_dlq_bytes_total %" PRIu64 "\n", st.bytes);
	TYPE(b, "dlq_write_errors_total", "counter", "Dead-letter records that could not be written.");
	sl_dynbuf_printf(b, "sluice_dlq_write_errors_total %" PRIu64 "\n", st.errors);
	TYPE(b, "dlq_segments_dropped_total", "counter", "Old segments deleted by the size cap.");
	return sl_dynbuf_printf(b, "sluice_dlq_segments_dropped_total %" PRIu64 "\n", st.dropped_segments);
}
