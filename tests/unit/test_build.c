/* test_build.c - pipelines built from the declarative description through
 * the public API (sluice/config.h): a fan-out/join DAG from a YAML string,
 * the embedded default, and the errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>
#include "sluice/config.h"
#include "sluice/sluice.h"
#include "testutil.h"

static const char *FANOUT =
	"pipelines:\n"
	"  p:\n"
	"    stages:\n"
	"      - {name: slow, type: delay, delay_ms: 30, after: []}\n"
	"      - {name: fast, type: delay, delay_ms: 1, after: []}\n"
	"      - {name: assemble, type: assemble, after: [slow, fast]}\n"
	"      - {name: inference, type: inference}\n"
	"      - {name: post, type: post}\n"
	"      - {name: stream, type: stream}\n"
	"models:\n"
	"  m: {pipeline: p, backends: [e]}\n"
	"backends:\n"
	"  e: {type: echo}\n";

static void fanout_from_yaml(void **st)
{
	sl_config *cfg = NULL;
	sl_cfg_diags d = {0};
	assert_int_equal(sl_config_load_string(FANOUT, strlen(FANOUT), "fanout", &cfg, &d), SL_OK);
	assert_int_equal(d.n, 0);
	sl_runtime *rt;
	sl_runtime_opts ro = {.shards = 2, .no_pin = 1};
	assert_int_equal(sl_runtime_create(&ro, &rt), SL_OK);
	sl_pipeline *p = NULL;
	sl_worker *w = NULL;
	char err[256];
	assert_int_equal(sl_pipeline_from_config(rt, cfg, "m", &p, &w, err, sizeof err), SL_OK);
	collector c;
	coll_init(&c, rt);
	enum { N = 50 };
	treq t[N];
	for (int i = 0; i < N; i++) {
		sl_request req;
		char sess[16];
		snprintf(sess, sizeof sess, "s%d", i);
		t_req(&req, &t[i], &c, sess, "joined  request");
		assert_int_equal(sl_pipeline_submit(p, &req, SL_SUBMIT_BLOCK, NULL), SL_OK);
	}
	assert_int_equal(coll_wait(&c, N, 5000), N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(t[i].r.outcome, SL_OUTCOME_COMPLETED);
		/* the join (assemble, stage 2) began only after both branches
		 * (slow 0, fast 1) were done; slow really held the request */
		assert_int_equal(t[i].r.n_stages, 6);
		assert_true(t[i].r.times[2].started >= t[i].r.times[0].finished);
		assert_true(t[i].r.times[2].started >= t[i].r.times[1].finished);
		assert_true(t[i].r.times[0].finished - t[i].r.times[0].started >= 20000000ull);
		assert_string_equal(t[i].r.text, "joined request");
	}
	sl_snapshot s;
	sl_pipeline_snapshot(p, &s);
	assert_int_equal(s.n_stages, 6);
	assert_string_equal(s.stages[0].name, "slow");
	assert_int_equal(s.stages[0].processed, N);
	assert_int_equal(s.stages[1].processed, N);
	assert_int_equal(s.stages[2].processed, N);
	assert_int_equal(s.in_flight, 0);
	sl_snapshot_release(&s);
	assert_int_equal(sl_pipeline_from_config(rt, cfg, "nope", &p, &w, err, sizeof err),
	                 SL_ENOTFOUND);
	assert_string_equal(err, "no model nope in the configuration");
	sl_pipeline_destroy(p);
	sl_worker_destroy(w);
	sl_runtime_destroy(rt);
	sl_config_free(cfg);
	coll_fini(&c);
}

static void default_config_runs(void **st)
{
	sl_config *cfg = NULL;
	assert_int_equal(sl_config_default(&cfg), SL_OK);
	sl_runtime *rt;
	sl_runtime_opts ro = {.shards = 1, .no_pin = 1};
	assert_int_equal(sl_runtime_create(&ro, &rt), SL_OK);
	sl_pipeline *p;
	sl_worker *w;
	assert_int_equal(sl_pipeline_from_config(rt, cfg, "echo", &p, &w, NULL, 0), SL_OK);
	sl_snapshot s;
	sl_pipeline_snapshot(p, &s);
	/* the seed's capacities */
	uint64_t want[5] = {512, 512, 1024, 512, 256};
	for (int i = 0; i < 5; i++)
		assert_int_equal(s.stages[i].capacity, want[i]);
	sl_snapshot_release(&s);
	sl_pipeline_destroy(p);
	sl_worker_destroy(w);
	sl_runtime_destroy(rt);
	sl_config_free(cfg);
}

static void invalid_string_reports(void **st)
{
	const char *bad = "models:\n  m: {pipeline: nope, backends: [e]}\nbackends:\n  e: {type: echo}\n";
	sl_config *cfg = NULL;
	sl_cfg_diags d = {0};
	assert_int_equal(sl_config_load_string(bad, strlen(bad), "bad.yaml", &cfg, &d), SL_EINVAL);
	assert_null(cfg);
	assert_true(d.n >= 1);
	char line[512];
	sl_cfg_diag_format(&d.v[0], line, sizeof line);
	assert_non_null(strstr(line, "bad.yaml:2:"));
	assert_non_null(strstr(line, "nope"));
	sl_cfg_diags_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(fanout_from_yaml),
		cmocka_unit_test(default_config_runs),
		cmocka_unit_test(invalid_string_reports),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
