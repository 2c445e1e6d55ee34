/* build.h - turns a validated sl_config into running objects: one worker
 * per (model, backend), one pipeline per model (its pipeline definition
 * with its first backend's worker), and the routes the gateway serves.
 *
 * An sl_app is one generation of the configuration.  Hot reload builds a
 * new app next to the old one, switches the gateway's routes to it, then
 * drains and destroys the old one, so requests in flight finish on the
 * pipelines they started on.
 *
 * Threading: build/drain/destroy from a control thread (never a shard
 * thread); the routes are read-only while the app lives.
 */
#ifndef SL_CONFIG_BUILD_H
#define SL_CONFIG_BUILD_H
#include "config/config.h"
#include "http/server.h"
#include "sluice/sluice.h"

typedef struct sl_app sl_app;

/* Builds every model's pipeline on rt.  On failure nothing is left running
 * and err says what failed (e.g. a backend whose API key variable is not
 * set).  Returns SL_OK, or the failing call's status. */
int sl_app_build(sl_runtime *rt, const sl_config *cfg, sl_app **out, char *err,
                 size_t errlen);

/* The routes (one per model), valid while the app lives. */
const sl_model_route *sl_app_routes(const sl_app *a, size_t *n);

/* Drains every pipeline of the app (see sl_pipeline_drain); SL_OK or
 * SL_ETIMEDOUT when some requests had to be cancelled. */
int sl_app_drain(sl_app *a, uint64_t timeout_ms);

/* Drains (if not yet) and frees everything.  NULL is a no-op. */
void sl_app_destroy(sl_app *a);

#endif
