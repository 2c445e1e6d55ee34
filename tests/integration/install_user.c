/* A program built against an installed libsluice with pkg-config (install.sh). */
#include <stdio.h>
#include <unistd.h>
#include <sluice/sluice.h>
#include <sluice/config.h>
static volatile int done;
static void cb(void *u, const sl_result *r) { printf("%s %s\n", sl_outcome_name(r->outcome), r->text); done = 1; }
int main(void) {
	sl_runtime *rt; sl_runtime_create(NULL, &rt);
	sl_config *cfg; sl_config_default(&cfg);
	sl_pipeline *p; sl_worker *w;
	if (sl_pipeline_from_config(rt, cfg, "echo", &p, &w, NULL, 0)) return 1;
	sl_request r; sl_request_init(&r); r.session = "s"; r.input = "installed  ok"; r.on_done = cb;
	sl_pipeline_submit(p, &r, SL_SUBMIT_BLOCK, NULL);
	sl_pipeline_drain(p, 2000); sl_pipeline_destroy(p); sl_worker_destroy(w); sl_config_free(cfg); sl_runtime_destroy(rt);
	return done ? 0 : 1;
}
