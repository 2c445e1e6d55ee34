/*
 * sluice/config.h - build pipelines from the declarative description
 * (sluice.yaml): the same loader, validation and builder `sluice serve`
 * uses, for programs that embed libsluice.
 *
 *   sl_config *cfg;  sl_cfg_diags d = {0};
 *   if (sl_config_load_file("sluice.yaml", &cfg, &d) != SL_OK) {
 *       char line[512];
 *       for (size_t i = 0; i < d.n; i++)
 *           fprintf(stderr, "%s\n", sl_cfg_diag_format(&d.v[i], line, sizeof line));
 *       sl_cfg_diags_free(&d);
 *   }
 *   sl_pipeline_from_config(rt, cfg, "my-model", &p, &w, err, sizeof err);
 *
 * The file format is documented in docs/configuration.md.
 * Threading: loading is pure (any thread); sl_pipeline_from_config follows
 * sl_pipeline_create's rules (not from a shard thread).
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H
#include <stddef.h>
#include <sluice/sluice.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A loaded, validated configuration (immutable). */
typedef struct sl_config sl_config;

/* One problem found in a file. */
typedef struct sl_cfg_diag {
	char *file;  /* as given, or "<string>" / "<default>" */
	int line;    /* 1-based; 0 when not tied to a place */
	int col;     /* 1-based */
	char *path;  /* e.g. "pipelines.default.stages[2].queue", "" for the root */
	char *msg;   /* e.g. "expected an integer 1..16777216, found \"lots\"" */
} sl_cfg_diag;

typedef struct sl_cfg_diags {
	sl_cfg_diag *v;
	size_t n;        /* entries in v (at most SL_CFG_MAX_DIAGS) */
	size_t dropped;  /* further problems not kept */
} sl_cfg_diags;

/* Formats diag i as "file:line:col: path: msg" into buf (NUL-terminated,
 * cut to cap); returns buf. */
const char *sl_cfg_diag_format(const sl_cfg_diag *d, char *buf, size_t cap);
void sl_cfg_diags_free(sl_cfg_diags *d); /* frees the entries; d itself is the caller's */

/* Loads, interpolates and validates.  On SL_OK *out is the config (free
 * with sl_config_free) and diags is empty.  SL_EINVAL: invalid, every
 * problem in diags.  SL_ENOTFOUND / SL_ESYS: the file cannot be read (one
 * diag says why).  SL_ETOOBIG: larger than SL_CFG_MAX_FILE.  SL_ENOMEM.
 * diags must be zeroed by the caller and freed with sl_cfg_diags_free. */
int sl_config_load_file(const char *path, sl_config **out, sl_cfg_diags *diags);
/* The same from memory; name is used in diagnostics (NULL = "<string>"). */
int sl_config_load_string(const char *yaml, size_t len, const char *name,
                          sl_config **out, sl_cfg_diags *diags);
/* The embedded default: server on 127.0.0.1:8080; pipeline "default" with
 * the seed's five stages and capacities; backend "echo"; model "echo". */
int sl_config_default(sl_config **out);
/* The embedded default's YAML, with a comment on every key (what
 * `sluice config --print-default` prints). */
const char *sl_config_default_yaml(void);

void sl_config_free(sl_config *c); /* NULL is a no-op */

/* Builds the pipeline that model `model` of cfg describes (its pipeline
 * definition, with its first backend as the worker), on rt.  On SL_OK the
 * caller owns *p and *w: destroy the pipeline, then the worker.
 * SL_ENOTFOUND: no such model; other errors as sl_pipeline_create /
 * the worker's create (err says which). */
int sl_pipeline_from_config(sl_runtime *rt, const sl_config *cfg, const char *model,
                            sl_pipeline **p, sl_worker **w, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
