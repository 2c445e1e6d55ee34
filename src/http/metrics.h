/* metrics.h - Prometheus text exposition of the pipelines' registries and
 * the HTTP server's counters (GET /metrics).
 *
 * Series (all prefixed sluice_):
 *   requests_submitted_total{pipeline}
 *   requests_total{pipeline,outcome}            every outcome, zeros included
 *   requests_in_flight{pipeline}
 *   tokens_out_total{pipeline}
 *   stage_enqueued_total / stage_processed_total / stage_shed_total /
 *   stage_failed_total / stage_expired_total / stage_cancelled_total
 *                                               {pipeline,stage}
 *   stage_queue_depth / stage_in_flight /
 *   stage_queue_capacity / stage_concurrency    {pipeline,stage} gauges
 *   stage_latency_seconds (histogram)           {pipeline,stage}: time in work
 *   stage_queue_wait_seconds (histogram)        {pipeline,stage}
 *   request_duration_seconds (histogram)        {pipeline}: completed, e2e
 *   time_to_first_token_seconds (histogram)     {pipeline}
 *   http_requests_total, http_responses_total{code_class}, http_shed_total
 * Histogram buckets are a fixed ladder (100 us .. 60 s); each is the sum of
 * the log-linear buckets at or below its bound.
 */
#ifndef SL_HTTP_METRICS_H
#define SL_HTTP_METRICS_H
#include <stdatomic.h>
#include "core/dynbuf.h"
#include "http/server.h"

/* HTTP counters of one shard (single writer: that shard). */
typedef struct sl_http_stats {
	_Atomic uint64_t requests;
	_Atomic uint64_t responses[6]; /* by class: [1]=1xx .. [5]=5xx */
	_Atomic uint64_t shed_503;
} sl_http_stats;

static inline void sl__ctr_add_u(_Atomic uint64_t *c, uint64_t d)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + d,
	                      memory_order_relaxed);
}

/* dst += src (dst private to the caller). */
void sl_http_stats_add(sl_http_stats *dst, const sl_http_stats *src);

/* Appends the exposition for the routes' pipelines (each pipeline once)
 * and the HTTP counters (http may be NULL).  SL_OK, SL_ETOOBIG, SL_ENOMEM. */
int sl_metrics_render(sl_dynbuf *b, const sl_model_route *routes, size_t n_routes,
                      const sl_http_stats *http);

/* Per-backend figures of every route whose worker is a router
 * (sluice_backend_*{model,backend}). */
int sl_metrics_render_backends(sl_dynbuf *b, const sl_model_route *routes, size_t n);
/* Dead-letter log counters (nothing when q is NULL). */
struct sl_dlq;
int sl_metrics_render_dlq(sl_dynbuf *b, struct sl_dlq *q);

#endif
