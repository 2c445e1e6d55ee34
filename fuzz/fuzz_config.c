/* fuzz_config.c - libFuzzer harness for the configuration loader
 * (src/config/: libyaml events -> tree -> schema, interpolation, graph).
 *
 * The input is a sluice.yaml.  Whatever it holds, the load must end with
 * SL_OK or SL_EINVAL / SL_ETOOBIG, in bounded time and memory, with no
 * sanitizer report.  On SL_OK the invariants of the result are checked:
 * no diags, at least one model, every model's pipeline and backends exist,
 * every pipeline has 1..SL_CFG_MAX_STAGES stages with unique names, exactly
 * one inference stage, exactly one sink, and a topological order (each
 * stage after all of its predecessors).  On SL_EINVAL every diag has a
 * file, a path and a message, and the formatter copes with a small buffer.
 * Two variables are set so that interpolation paths are reached. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	setenv("SLUICE_FUZZ_PORT", "8080", 1);
	setenv("SLUICE_FUZZ_URL", "http://127.0.0.1:8081/v1", 1);
	unsetenv("SLUICE_FUZZ_UNSET");
	return 0;
}

static void check_ok(const sl_config *c)
{
	CHECK(c->n_models >= 1);
	CHECK(c->server.host && *c->server.host);
	for (size_t i = 0; i < c->n_models; i++) {
		const sl_cfg_model *m = &c->models[i];
		CHECK(sl_config_model(c, m->name) != NULL);
		CHECK(sl_config_pipeline(c, m->pipeline) != NULL);
		CHECK(m->n_backends >= 1);
		for (size_t b = 0; b < m->n_backends; b++)
			CHECK(sl_config_backend(c, m->backends[b]) != NULL);
	}
	for (size_t i = 0; i < c->n_backends; i++) {
		const sl_cfg_backend *b = &c->backends[i];
		if (b->type == SL_CFG_BACKEND_OPENAI)
			CHECK(b->url && !strncasecmp(b->url, "http", 4));
		for (size_t h = 0; h < b->n_headers; h++)
			CHECK(strchr(b->headers[h], ':') && !strpbrk(b->headers[h], "\r\n"));
	}
	for (size_t i = 0; i < c->n_pipelines; i++) {
		const sl_cfg_pipeline *p = &c->pipelines[i];
		CHECK(p->n_stages >= 1 && p->n_stages <= SL_CFG_MAX_STAGES);
		size_t inference = 0, sinks = 0;
		for (size_t s = 0; s < p->n_stages; s++) {
			const sl_cfg_stage *st = &p->stages[s];
			CHECK(st->queue >= 1 && st->concurrency >= 1);
			inference += st->type == SL_CFG_STAGE_INFERENCE;
			for (size_t k = 0; k < s; k++)
				CHECK(strcmp(p->stages[k].name, st->name) != 0);
			/* every predecessor comes earlier */
			for (size_t a = 0; a < st->n_after; a++) {
				size_t k;
				for (k = 0; k < s; k++)
					if (!strcmp(p->stages[k].name, st->after[a]))
						break;
				CHECK(k < s);
			}
			int has_succ = 0;
			for (size_t k = s + 1; k < p->n_stages && !has_succ; k++)
				for (size_t a = 0; a < p->stages[k].n_after; a++)
					if (!strcmp(p->stages[k].after[a], st->name))
						has_succ = 1;
			sinks += !has_succ;
		}
		CHECK(inference == 1);
		CHECK(sinks == 1);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sl_cfg_diags d = {0};
	sl_config *c = NULL;
	int rc = sl_config_load_string((const char *)data, size, "fuzz.yaml", &c, &d);
	CHECK(rc == SL_OK || rc == SL_EINVAL || rc == SL_ETOOBIG);
	if (rc == SL_OK) {
		CHECK(c != NULL && d.n == 0 && d.dropped == 0);
		check_ok(c);
	} else {
		CHECK(c == NULL && d.n >= 1 && d.n <= SL_CFG_MAX_DIAGS);
		char big[8192], small[16];
		for (size_t i = 0; i < d.n; i++) {
			CHECK(d.v[i].file && d.v[i].path && d.v[i].msg && *d.v[i].msg);
			sl_cfg_diag_format(&d.v[i], big, sizeof big);
			sl_cfg_diag_format(&d.v[i], small, sizeof small);
			CHECK(strlen(small) < sizeof small);
		}
	}
	sl_config_free(c);
	sl_cfg_diags_free(&d);
	return 0;
}
