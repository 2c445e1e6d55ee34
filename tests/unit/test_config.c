/* test_config.c - the configuration loader (src/config/config.h): the
 * embedded default, defaults filled in, every validation message with its
 * exact file:line:col and path, interpolation, the DAG's topological order,
 * and bad input (garbage, oversized files, deep nesting, billion laughs,
 * duplicate keys) within bounded time and memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"

/* ---- helpers ---------------------------------------------------------- */

/* Loads yaml as "t.yaml"; returns the status, *out the config (or NULL) and
 * the diags formatted one per line into buf. */
static int load(const char *yaml, sl_config **out, char *buf, size_t cap)
{
	sl_cfg_diags d = {0};
	sl_config *c = NULL;
	int rc = sl_config_load_string(yaml, strlen(yaml), "t.yaml", &c, &d);
	size_t o = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < d.n; i++) {
		char line[4096];
		sl_cfg_diag_format(&d.v[i], line, sizeof line);
		o += (size_t)snprintf(buf + o, cap - o, "%s%s", o ? "\n" : "", line);
		if (o >= cap)
			o = cap - 1;
	}
	sl_cfg_diags_free(&d);
	if (out)
		*out = c;
	else
		sl_config_free(c);
	return rc;
}

/* Asserts that yaml is invalid with exactly these diags (one per line). */
static void expect_diags(const char *yaml, const char *expected)
{
	char buf[65536];
	sl_config *c = NULL;
	int rc = load(yaml, &c, buf, sizeof buf);
	if (strcmp(buf, expected) != 0) {
		fprintf(stderr, "--- yaml:\n%s\n--- expected:\n%s\n--- got (rc %d):\n%s\n", yaml, expected,
		        rc, buf);
	}
	assert_string_equal(buf, expected);
	assert_int_equal(rc, SL_EINVAL);
	assert_null(c);
}

static sl_config *expect_ok(const char *yaml)
{
	char buf[65536];
	sl_config *c = NULL;
	int rc = load(yaml, &c, buf, sizeof buf);
	if (rc != SL_OK)
		fprintf(stderr, "--- yaml:\n%s\n--- unexpected problems (rc %d):\n%s\n", yaml, rc, buf);
	assert_int_equal(rc, SL_OK);
	assert_non_null(c);
	return c;
}

/* The smallest valid file, with a place for more: PIPE is a pipeline
 * "p" with stages S, model "m" on backend "e". */
#define VALID_TAIL                                                                  \
	"backends:\n  e: {type: echo}\n"                                                \
	"models:\n  m: {pipeline: p, backends: [e]}\n"
#define LINEAR5                                                                     \
	"pipelines:\n  p:\n    stages:\n"                                               \
	"      - {name: rag, type: rag}\n"                                              \
	"      - {name: assemble, type: assemble}\n"                                    \
	"      - {name: inference, type: inference}\n"                                  \
	"      - {name: post, type: post}\n"                                            \
	"      - {name: stream, type: stream}\n"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long maxrss_kb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/* ---- the default -------------------------------------------------------- */

static int strv_eq(char **a, size_t na, char **b, size_t nb)
{
	if (na != nb)
		return 0;
	for (size_t i = 0; i < na; i++)
		if (strcmp(a[i], b[i]) != 0)
			return 0;
	return 1;
}

static int str_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

static void assert_config_equal(const sl_config *a, const sl_config *b)
{
	assert_string_equal(a->server.host, b->server.host);
	assert_int_equal(a->server.port, b->server.port);
	assert_int_equal(a->server.shards, b->server.shards);
	assert_int_equal(a->server.pin, b->server.pin);
	assert_int_equal(a->server.max_body, b->server.max_body);
	assert_int_equal(a->server.max_headers, b->server.max_headers);
	assert_int_equal(a->server.read_timeout_ms, b->server.read_timeout_ms);
	assert_int_equal(a->server.request_timeout_ms, b->server.request_timeout_ms);
	assert_int_equal(a->server.drain_ms, b->server.drain_ms);
	assert_int_equal(a->server.retry_after_s, b->server.retry_after_s);
	assert_int_equal(a->server.admin.enabled, b->server.admin.enabled);
	assert_true(str_eq(a->server.admin.token_env, b->server.admin.token_env));
	assert_int_equal(a->n_pipelines, b->n_pipelines);
	for (size_t i = 0; i < a->n_pipelines; i++) {
		const sl_cfg_pipeline *p = &a->pipelines[i], *q = &b->pipelines[i];
		assert_string_equal(p->name, q->name);
		assert_int_equal(p->max_input, q->max_input);
		assert_int_equal(p->max_output, q->max_output);
		assert_int_equal(p->trace, q->trace);
		assert_int_equal(p->n_stages, q->n_stages);
		for (size_t s = 0; s < p->n_stages; s++) {
			const sl_cfg_stage *x = &p->stages[s], *y = &q->stages[s];
			assert_string_equal(x->name, y->name);
			assert_int_equal(x->type, y->type);
			assert_int_equal(x->queue, y->queue);
			assert_int_equal(x->concurrency, y->concurrency);
			assert_int_equal(x->overflow, y->overflow);
			assert_int_equal(x->timeout_ms, y->timeout_ms);
			assert_int_equal(x->delay_ms, y->delay_ms);
			assert_true(strv_eq(x->after, x->n_after, y->after, y->n_after));
		}
	}
	assert_int_equal(a->n_backends, b->n_backends);
	for (size_t i = 0; i < a->n_backends; i++) {
		const sl_cfg_backend *x = &a->backends[i], *y = &b->backends[i];
		assert_string_equal(x->name, y->name);
		assert_int_equal(x->type, y->type);
		assert_true(str_eq(x->url, y->url));
		assert_true(str_eq(x->model, y->model));
		assert_true(str_eq(x->api_key_env, y->api_key_env));
		assert_int_equal(x->connect_timeout_ms, y->connect_timeout_ms);
		assert_int_equal(x->first_token_timeout_ms, y->first_token_timeout_ms);
		assert_int_equal(x->total_timeout_ms, y->total_timeout_ms);
		assert_int_equal(x->max_concurrency, y->max_concurrency);
		assert_true(strv_eq(x->headers, x->n_headers, y->headers, y->n_headers));
		assert_int_equal(x->stream, y->stream);
		assert_int_equal(x->transport, y->transport);
		assert_int_equal(x->delay_ms, y->delay_ms);
		assert_int_equal(x->token_delay_ms, y->token_delay_ms);
	}
	assert_int_equal(a->n_models, b->n_models);
	for (size_t i = 0; i < a->n_models; i++) {
		assert_string_equal(a->models[i].name, b->models[i].name);
		assert_string_equal(a->models[i].pipeline, b->models[i].pipeline);
		assert_true(strv_eq(a->models[i].backends, a->models[i].n_backends,
		                    b->models[i].backends, b->models[i].n_backends));
	}
}

static void test_default(void **state)
{
	(void)state;
	sl_config *c = NULL;
	assert_int_equal(sl_config_default(&c), SL_OK);
	assert_string_equal(c->file, "<default>");
	assert_string_equal(c->server.host, "127.0.0.1");
	assert_int_equal(c->server.port, 8080);
	assert_int_equal(c->server.shards, 0);
	assert_int_equal(c->server.pin, 1);
	assert_int_equal(c->server.max_body, 1u << 20);
	assert_int_equal(c->server.max_headers, 16u << 10);
	assert_int_equal(c->server.read_timeout_ms, 10000);
	assert_int_equal(c->server.request_timeout_ms, 0);
	assert_int_equal(c->server.drain_ms, 30000);
	assert_int_equal(c->server.retry_after_s, 1);
	assert_int_equal(c->server.admin.enabled, 1);
	assert_null(c->server.admin.token_env);

	assert_int_equal(c->n_pipelines, 1);
	const sl_cfg_pipeline *p = sl_config_pipeline(c, "default");
	assert_non_null(p);
	assert_int_equal(p->max_input, SL_DEFAULT_MAX_INPUT);
	assert_int_equal(p->max_output, SL_DEFAULT_MAX_OUTPUT);
	assert_int_equal(p->trace, 0);
	assert_int_equal(p->n_stages, 5);
	static const char *names[] = {"rag", "assemble", "inference", "post", "stream"};
	static const uint32_t queues[] = {512, 512, 1024, 512, 256};
	static const uint32_t conc[] = {64, 64, 256, 64, 64};
	for (size_t i = 0; i < 5; i++) {
		const sl_cfg_stage *s = &p->stages[i];
		assert_string_equal(s->name, names[i]);
		assert_int_equal(s->type, (int)i); /* rag, assemble, inference, post, stream */
		assert_int_equal(s->queue, queues[i]);
		assert_int_equal(s->concurrency, conc[i]);
		assert_int_equal(s->overflow, SL_OVERFLOW_BLOCK);
		assert_int_equal(s->timeout_ms, 0);
		if (i == 0) {
			assert_int_equal(s->n_after, 0);
		} else {
			assert_int_equal(s->n_after, 1);
			assert_string_equal(s->after[0], names[i - 1]);
		}
	}
	assert_int_equal(c->n_backends, 1);
	const sl_cfg_backend *b = sl_config_backend(c, "echo");
	assert_non_null(b);
	assert_int_equal(b->type, SL_CFG_BACKEND_ECHO);
	assert_int_equal(b->delay_ms, 0);
	assert_int_equal(b->token_delay_ms, 0);
	assert_int_equal(b->max_concurrency, 0);
	assert_int_equal(c->n_models, 1);
	const sl_cfg_model *m = sl_config_model(c, "echo");
	assert_non_null(m);
	assert_string_equal(m->pipeline, "default");
	assert_int_equal(m->n_backends, 1);
	assert_string_equal(m->backends[0], "echo");
	assert_null(sl_config_model(c, "nope"));
	assert_null(sl_config_pipeline(c, "nope"));
	assert_null(sl_config_backend(c, "nope"));
	assert_null(sl_config_model(NULL, "echo"));

	/* sl_config_default() is loading sl_config_default_yaml() */
	const char *y = sl_config_default_yaml();
	sl_config *c2 = NULL;
	sl_cfg_diags d = {0};
	assert_int_equal(sl_config_load_string(y, strlen(y), "x", &c2, &d), SL_OK);
	assert_int_equal(d.n, 0);
	assert_config_equal(c, c2);
	sl_config_free(c2);
	sl_config_free(c);
	sl_config_free(NULL);

	/* a comment on every key of the printed default */
	char *copy = strdup(y);
	int keys = 0;
	for (char *save = NULL, *line = strtok_r(copy, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		const char *t = line + strspn(line, " ");
		if (*t == '#' || *t == '\0')
			continue;
		if (strchr(t, ':')) {
			keys++;
			if (!strchr(t, '#'))
				fail_msg("no comment on: %s", line);
		}
	}
	free(copy);
	assert_true(keys > 50);
}

static void test_defaults_filled(void **state)
{
	(void)state;
	sl_config *c = expect_ok(
		"pipelines:\n  p:\n    stages:\n"
		"      - {name: a, type: rag}\n"
		"      - {name: b, type: assemble}\n"
		"      - {name: c, type: inference}\n"
		"      - {name: d, type: post}\n"
		"      - {name: e, type: stream}\n"
		"      - {name: f, type: delay, delay_ms: 5}\n"
		"backends:\n  e: {type: echo}\n"
		"  up: {type: openai, url: \"http://h:1/v1\"}\n"
		"models:\n  m: {pipeline: p, backends: e}\n");
	assert_string_equal(c->file, "t.yaml");
	assert_string_equal(c->server.host, "127.0.0.1");
	assert_int_equal(c->server.port, 8080);
	assert_int_equal(c->server.line, 0);
	const sl_cfg_pipeline *p = sl_config_pipeline(c, "p");
	assert_int_equal(p->n_stages, 6);
	static const uint32_t q[] = {512, 512, 1024, 512, 256, 512};
	static const uint32_t k[] = {64, 64, 256, 64, 64, 64};
	for (size_t i = 0; i < 6; i++) {
		assert_int_equal(p->stages[i].queue, q[i]);
		assert_int_equal(p->stages[i].concurrency, k[i]);
		assert_int_equal(p->stages[i].overflow, SL_OVERFLOW_BLOCK);
	}
	assert_int_equal(p->stages[5].delay_ms, 5);
	assert_int_equal(p->stages[2].line, 6);
	assert_int_equal(p->stages[2].col, 9);
	assert_int_equal(p->line, 2);
	assert_int_equal(p->col, 3);
	const sl_cfg_backend *up = sl_config_backend(c, "up");
	assert_int_equal(up->type, SL_CFG_BACKEND_OPENAI);
	assert_string_equal(up->url, "http://h:1/v1");
	assert_null(up->model);
	assert_null(up->api_key_env);
	assert_int_equal(up->connect_timeout_ms, 2000);
	assert_int_equal(up->first_token_timeout_ms, 30000);
	assert_int_equal(up->total_timeout_ms, 0);
	assert_int_equal(up->max_concurrency, 0);
	assert_int_equal(up->n_headers, 0);
	assert_int_equal(up->stream, 1);
	/* a single string is a one-backend list */
	const sl_cfg_model *m = sl_config_model(c, "m");
	assert_int_equal(m->n_backends, 1);
	assert_string_equal(m->backends[0], "e");
	sl_config_free(c);
}

static void test_every_key(void **state)
{
	(void)state;
	sl_config *c = expect_ok(
		"server:\n"
		"  host: 0.0.0.0\n  port: 0\n  shards: 256\n  pin: false\n  max_body: 1073741824\n"
		"  max_headers: 1024\n  read_timeout_ms: 1\n  request_timeout_ms: 86400000\n"
		"  drain_ms: 0\n  retry_after_s: 86400\n"
		"  admin: {enabled: false, token_env: ADMIN_TOKEN}\n"
		"pipelines:\n  p.1_x-y:\n    max_input: 1\n    max_output: 2147483648\n    trace: true\n"
		"    stages:\n"
		"      - {name: i, type: inference, queue: 16777216, concurrency: 1048576,\n"
		"         overflow: shed, timeout_ms: 86400000, after: []}\n"
		"backends:\n"
		"  up:\n    type: openai\n    url: https://api.example.com/v1\n    model: gpt-x\n"
		"    api_key_env: OPENAI_API_KEY\n    connect_timeout_ms: 1\n"
		"    first_token_timeout_ms: 0\n    total_timeout_ms: 5\n    max_concurrency: 1048576\n"
		"    headers: {X-Team: search, \"X-Empty\": \"\"}\n    stream: false\n"
		"    transport: curl\n"
		"  e: {type: echo, delay_ms: 3, token_delay_ms: 4, max_concurrency: 2}\n"
		"models:\n  m: {pipeline: p.1_x-y, backends: [up, e]}\n"
		"tenants: {}\ncache: {a: 1}\nrouting:\nmesh: {}\ntelemetry: {x: [1, 2]}\n");
	assert_string_equal(c->server.host, "0.0.0.0");
	assert_int_equal(c->server.port, 0);
	assert_int_equal(c->server.shards, 256);
	assert_int_equal(c->server.pin, 0);
	assert_int_equal(c->server.max_body, 1073741824);
	assert_int_equal(c->server.max_headers, 1024);
	assert_int_equal(c->server.read_timeout_ms, 1);
	assert_int_equal(c->server.request_timeout_ms, 86400000);
	assert_int_equal(c->server.drain_ms, 0);
	assert_int_equal(c->server.retry_after_s, 86400);
	assert_int_equal(c->server.admin.enabled, 0);
	assert_string_equal(c->server.admin.token_env, "ADMIN_TOKEN");
	assert_int_equal(c->server.line, 1);
	assert_int_equal(c->server.col, 1);
	const sl_cfg_pipeline *p = sl_config_pipeline(c, "p.1_x-y");
	assert_int_equal(p->max_input, 1);
	assert_int_equal(p->max_output, 2147483648u);
	assert_int_equal(p->trace, 1);
	assert_int_equal(p->stages[0].queue, 16777216);
	assert_int_equal(p->stages[0].concurrency, 1048576);
	assert_int_equal(p->stages[0].overflow, SL_OVERFLOW_SHED);
	assert_int_equal(p->stages[0].timeout_ms, 86400000);
	const sl_cfg_backend *up = sl_config_backend(c, "up");
	assert_string_equal(up->url, "https://api.example.com/v1");
	assert_string_equal(up->model, "gpt-x");
	assert_string_equal(up->api_key_env, "OPENAI_API_KEY");
	assert_int_equal(up->connect_timeout_ms, 1);
	assert_int_equal(up->first_token_timeout_ms, 0);
	assert_int_equal(up->total_timeout_ms, 5);
	assert_int_equal(up->max_concurrency, 1048576);
	assert_int_equal(up->n_headers, 2);
	assert_string_equal(up->headers[0], "X-Team: search");
	assert_string_equal(up->headers[1], "X-Empty: ");
	assert_int_equal(up->stream, 0);
	assert_int_equal(up->transport, SL_CFG_TRANSPORT_CURL);
	const sl_cfg_backend *e = sl_config_backend(c, "e");
	assert_int_equal(e->delay_ms, 3);
	assert_int_equal(e->token_delay_ms, 4);
	assert_int_equal(e->max_concurrency, 2);
	assert_int_equal(sl_config_model(c, "m")->n_backends, 2);
	sl_config_free(c);
}

/* ---- validation messages ---------------------------------------------------- */

static void test_unknown_keys(void **state)
{
	(void)state;
	expect_diags(LINEAR5 VALID_TAIL "pipeline: {}\n",
	             "t.yaml:13:1: pipeline: unknown key \"pipeline\" (expected one of: server, "
	             "pipelines, models, backends, dlq, tenants, cache, routing, mesh, telemetry)");
	expect_diags("pipelines:\n  p:\n    stages:\n"
	             "      - name: rag\n        type: inference\n        queu: 5\n" VALID_TAIL,
	             "t.yaml:6:9: pipelines.p.stages[0].queu: unknown key \"queu\" (expected one of: "
	             "name, type, queue, concurrency, overflow, timeout_ms, after, delay_ms, aging_ms, "
	             "displace, retriever, template, system, examples, max_prompt_tokens, classes, "
	             "custom, block_terms, block_patterns)");
	expect_diags(LINEAR5 VALID_TAIL "server: {prot: 1, admin: {token: x}}\n",
	             "t.yaml:13:10: server.prot: unknown key \"prot\" (expected one of: host, port, "
	             "shards, pin, max_body, max_headers, read_timeout_ms, request_timeout_ms, "
	             "drain_ms, retry_after_s, admin)\n"
	             "t.yaml:13:27: server.admin.token: unknown key \"token\" (expected one of: "
	             "enabled, token_env)");
	expect_diags(LINEAR5 "backends:\n  e: {type: echo, urls: x}\n"
	             "models:\n  m: {pipeline: p, backend: [e]}\n",
	             "t.yaml:10:19: backends.e.urls: unknown key \"urls\" (expected one of: type, url, "
	             "model, api_key_env, connect_timeout_ms, first_token_timeout_ms, "
	             "total_timeout_ms, max_concurrency, headers, stream, delay_ms, token_delay_ms, "
	             "breaker, retry, concurrency, transport)\n"
	             "t.yaml:12:6: models.m: missing required key \"backends\"\n"
	             "t.yaml:12:20: models.m.backend: unknown key \"backend\" (expected one of: "
	             "pipeline, backends, routing, weights, max_attempts)");
	expect_diags("pipelines:\n  p:\n    stagse: []\n" VALID_TAIL,
	             "t.yaml:3:5: pipelines.p.stagse: unknown key \"stagse\" (expected one of: "
	             "max_input, max_output, trace, stages)\n"
	             "t.yaml:3:5: pipelines.p: missing required key \"stages\"");
}

static void test_numbers(void **state)
{
	(void)state;
	expect_diags("pipelines:\n  p:\n    stages:\n"
	             "      - {name: a, type: rag, queue: lots}\n"
	             "      - {name: b, type: rag, queue: -5}\n"
	             "      - {name: c, type: inference, queue: 1.5}\n"
	             "      - {name: d, type: post, queue: \"12\"}\n"
	             "      - {name: e, type: post, queue: 0}\n"
	             "      - {name: f, type: post, queue: 16777217}\n"
	             "      - {name: g, type: post, queue: 99999999999999999999999}\n"
	             "      - {name: h, type: post, queue: 012}\n"
	             "      - {name: i, type: post, queue: 0x10}\n"
	             "      - {name: j, type: post, queue: [1]}\n"
	             "      - {name: k, type: post, queue: {a: 1}}\n"
	             "      - {name: l, type: stream, queue: }\n" VALID_TAIL,
	             "t.yaml:4:37: pipelines.p.stages[0].queue: expected an integer 1..16777216, "
	             "found \"lots\"\n"
	             "t.yaml:5:37: pipelines.p.stages[1].queue: expected an integer 1..16777216, "
	             "found -5\n"
	             "t.yaml:6:43: pipelines.p.stages[2].queue: expected an integer 1..16777216, "
	             "found 1.5\n"
	             "t.yaml:7:38: pipelines.p.stages[3].queue: expected an integer 1..16777216, "
	             "found \"12\"\n"
	             "t.yaml:8:38: pipelines.p.stages[4].queue: expected an integer 1..16777216, "
	             "found 0\n"
	             "t.yaml:9:38: pipelines.p.stages[5].queue: expected an integer 1..16777216, "
	             "found 16777217\n"
	             "t.yaml:10:38: pipelines.p.stages[6].queue: expected an integer 1..16777216, "
	             "found 99999999999999999999999\n"
	             "t.yaml:11:38: pipelines.p.stages[7].queue: expected an integer 1..16777216, "
	             "found 012\n"
	             "t.yaml:12:38: pipelines.p.stages[8].queue: expected an integer 1..16777216, "
	             "found \"0x10\"\n"
	             "t.yaml:13:38: pipelines.p.stages[9].queue: expected an integer 1..16777216, "
	             "found a sequence\n"
	             "t.yaml:14:38: pipelines.p.stages[10].queue: expected an integer 1..16777216, "
	             "found a mapping\n"
	             "t.yaml:15:40: pipelines.p.stages[11].queue: expected an integer 1..16777216, "
	             "found null");
	expect_diags(LINEAR5 VALID_TAIL
	             "server:\n  port: 65536\n  shards: 257\n  max_headers: 1023\n"
	             "  read_timeout_ms: 0\n  drain_ms: 86400001\n  pin: yes\n  max_body: 0\n",
	             "t.yaml:14:9: server.port: expected an integer 0..65535, found 65536\n"
	             "t.yaml:15:11: server.shards: expected an integer 0..256, found 257\n"
	             "t.yaml:16:16: server.max_headers: expected an integer 1024..1048576, found 1023\n"
	             "t.yaml:17:20: server.read_timeout_ms: expected an integer 1..86400000, found 0\n"
	             "t.yaml:18:13: server.drain_ms: expected an integer 0..86400000, found 86400001\n"
	             "t.yaml:19:8: server.pin: expected true or false, found \"yes\"\n"
	             "t.yaml:20:13: server.max_body: expected an integer 1..1073741824, found 0");
	expect_diags(LINEAR5 VALID_TAIL "server: {pin: \"true\", host: [a]}\n",
	             "t.yaml:13:15: server.pin: expected true or false, found \"true\"\n"
	             "t.yaml:13:29: server.host: expected a host name or address, found a sequence");
}

static void test_required_and_enums(void **state)
{
	(void)state;
	expect_diags("pipelines:\n  p:\n    stages:\n"
	             "      - {name: a}\n"
	             "      - {type: inference}\n"
	             "      - {name: c, type: retriever, overflow: drop}\n"
	             "      - just-a-string\n" VALID_TAIL,
	             "t.yaml:4:9: pipelines.p.stages[0]: missing required key \"type\"\n"
	             "t.yaml:5:9: pipelines.p.stages[1]: missing required key \"name\"\n"
	             "t.yaml:6:25: pipelines.p.stages[2].type: expected rag, assemble, inference, post, "
	             "stream, delay or redact, found \"retriever\"\n"
	             "t.yaml:6:46: pipelines.p.stages[2].overflow: expected block or shed, found "
	             "\"drop\"\n"
	             "t.yaml:7:9: pipelines.p.stages[3]: expected a mapping, found \"just-a-string\"");
	expect_diags(LINEAR5 "backends:\n  e: {}\n  g: {type: grpc}\n  o: {type: openai}\n"
	             "  u: {type: openai, url: \"ftp://x\"}\n  v: {type: openai, url: \"http://\"}\n"
	             "  w: {type: echo, url: \"http://x\", stream: true, headers: {}}\n"
	             "  x: {type: openai, url: \"http://x\", delay_ms: 1}\n"
	             "models:\n  m: {pipeline: p, backends: [e]}\n",
	             "t.yaml:10:6: backends.e: missing required key \"type\"\n"
	             "t.yaml:11:13: backends.g.type: expected echo or openai, found \"grpc\"\n"
	             "t.yaml:12:6: backends.o: missing required key \"url\"\n"
	             "t.yaml:13:26: backends.u.url: expected an http:// or https:// URL, found "
	             "\"ftp://x\"\n"
	             "t.yaml:14:26: backends.v.url: expected an http:// or https:// URL, found "
	             "\"http://\"\n"
	             "t.yaml:15:19: backends.w.url: key \"url\" is only valid for type openai\n"
	             "t.yaml:15:36: backends.w.stream: key \"stream\" is only valid for type openai\n"
	             "t.yaml:15:50: backends.w.headers: key \"headers\" is only valid for type openai\n"
	             "t.yaml:16:38: backends.x.delay_ms: key \"delay_ms\" is only valid for type echo");
	/* transport: an enum; native has no TLS; openai only */
	expect_diags(LINEAR5 "backends:\n  e: {type: echo, transport: native}\n"
	             "  a: {type: openai, url: \"http://x\", transport: h2}\n"
	             "  b: {type: openai, url: \"https://x\", transport: native}\n"
	             "  c: {type: openai, url: \"HTTPS://x\",\n      transport: native}\n"
	             "  d: {type: openai, url: \"https://x\", transport: curl}\n"
	             "  f: {type: openai, url: \"http://x\", transport: native}\n"
	             "  g: {type: openai, url: \"https://x\", transport: auto}\n"
	             "models:\n  m: {pipeline: p, backends: [e]}\n",
	             "t.yaml:10:19: backends.e.transport: key \"transport\" is only valid for type "
	             "openai\n"
	             "t.yaml:11:49: backends.a.transport: expected auto, native or curl, found \"h2\"\n"
	             "t.yaml:12:50: backends.b.transport: transport native cannot reach an https:// "
	             "url (no TLS): use auto or curl\n"
	             "t.yaml:14:18: backends.c.transport: transport native cannot reach an https:// "
	             "url (no TLS): use auto or curl");
	expect_diags("pipelines:\n  p:\n    stages:\n"
	             "      - {name: a, type: rag, delay_ms: 5}\n"
	             "      - {name: b, type: delay}\n"
	             "      - {name: c, type: inference}\n" VALID_TAIL,
	             "t.yaml:4:30: pipelines.p.stages[0].delay_ms: key \"delay_ms\" is only valid for "
	             "type delay\n"
	             "t.yaml:5:9: pipelines.p.stages[1]: missing required key \"delay_ms\" (type "
	             "delay needs one)");
}

static void test_names(void **state)
{
	(void)state;
	char longname[66];
	memset(longname, 'x', 65);
	longname[65] = '\0';
	char yaml[2048], exp[2048];
	snprintf(yaml, sizeof yaml,
	         LINEAR5 "backends:\n  e: {type: echo}\n  \"a b\": {type: echo}\n  %s: {type: echo}\n"
	         "models:\n  m: {pipeline: p, backends: [e]}\n  \"gpt 4\": {pipeline: p, backends: e}\n"
	         "  \"meta-llama/Llama-3:8b\": {pipeline: p, backends: e}\n",
	         longname);
	snprintf(exp, sizeof exp,
	         "t.yaml:11:3: backends[\"a b\"]: expected a name (1..64 characters of A-Z a-z 0-9 . _ "
	         "-), found \"a b\"\n"
	         "t.yaml:12:3: backends[\"%.64s...\"]: expected a name (1..64 characters of A-Z a-z 0-9 "
	         ". _ -), found \"%.48s...\"\n"
	         "t.yaml:15:3: models[\"gpt 4\"]: expected a model name (1..128 characters of A-Z a-z "
	         "0-9 . _ - / :), found \"gpt 4\"",
	         longname, longname);
	expect_diags(yaml, exp);
	expect_diags("pipelines:\n  p:\n    stages:\n      - {name: \"r a g\", type: inference}\n" VALID_TAIL,
	             "t.yaml:4:16: pipelines.p.stages[0].name: expected a name (1..64 characters of "
	             "A-Z a-z 0-9 . _ -), found \"r a g\"");
}

static void test_duplicates(void **state)
{
	(void)state;
	expect_diags("pipelines:\n  p:\n    stages:\n"
	             "      - name: rag\n        type: rag\n        queue: 1\n        queue: 2\n"
	             "      - name: rag\n        type: inference\n" VALID_TAIL,
	             "t.yaml:7:9: pipelines.p.stages[0].queue: duplicate key \"queue\" (first at 6:9)\n"
	             "t.yaml:8:15: pipelines.p.stages[1].name: duplicate stage name \"rag\" (first at "
	             "4:15)");
	expect_diags(LINEAR5 VALID_TAIL "backends: {}\nmodels:\n  m: {pipeline: p, backends: [e, e]}\n",
	             "t.yaml:13:1: backends: duplicate key \"backends\" (first at 9:1)\n"
	             "t.yaml:14:1: models: duplicate key \"models\" (first at 11:1)");
	expect_diags(LINEAR5 "backends:\n  e: {type: echo}\nmodels:\n  m: {pipeline: p, backends: [e, e]}\n",
	             "t.yaml:12:34: models.m.backends[1]: backend \"e\" is listed twice");
	/* a quoted key is the same key */
	expect_diags(LINEAR5 VALID_TAIL "server: {port: 1, \"port\": 2}\n",
	             "t.yaml:13:19: server.port: duplicate key \"port\" (first at 13:10)");
}

static void test_graph(void **state)
{
	(void)state;
	/* unknown stage, self-edge, listed twice */
	expect_diags("pipelines:\n  p:\n    stages:\n"
	             "      - {name: rag, type: rag}\n"
	             "      - {name: assemble, type: assemble, after: [retrieve]}\n"
	             "      - {name: inference, type: inference, after: [inference, assemble, assemble]}\n"
	             "      - {name: stream, type: stream, after: nope}\n" VALID_TAIL,
	             "t.yaml:5:50: pipelines.p.stages[1].after[0]: unknown stage \"retrieve\" in after "
	             "(stages: rag, assemble, inference, stream)\n"
	             "t.yaml:6:52: pipelines.p.stages[2].after[0]: stage \"inference\" lists itself in "
	             "after\n"
	             "t.yaml:6:73: pipelines.p.stages[2].after[2]: stage \"assemble\" is listed twice in "
	             "after\n"
	             "t.yaml:7:45: pipelines.p.stages[3].after: unknown stage \"nope\" in after (stages: "
	             "rag, assemble, inference, stream)");
	/* an entry that is not a name: reported, and no graph checks guess */
	expect_diags("pipelines:\n  p:\n    stages:\n"
	             "      - {name: rag, type: rag}\n"
	             "      - {name: inference, type: inference, after: [[rag]]}\n"
	             "      - {name: stream, type: stream, after: []}\n" VALID_TAIL,
	             "t.yaml:5:52: pipelines.p.stages[1].after[0]: expected a stage name, found a "
	             "sequence");
	/* a cycle, named; the stage below it is unreachable */
	expect_diags("pipelines:\n  p:\n    stages:\n"
	             "      - {name: a, type: rag, after: [b]}\n"
	             "      - {name: b, type: inference}\n"
	             "      - {name: c, type: stream}\n" VALID_TAIL,
	             "t.yaml:4:9: pipelines.p.stages[0]: cycle: a -> b -> a\n"
	             "t.yaml:6:9: pipelines.p.stages[2]: stage \"c\" is unreachable from the "
	             "pipeline's roots");
	/* a longer cycle behind a root: shortest way round, from its first stage */
	expect_diags("pipelines:\n  p:\n    stages:\n"
	             "      - {name: r, type: rag}\n"
	             "      - {name: a, type: assemble, after: [r, d]}\n"
	             "      - {name: b, type: inference}\n"
	             "      - {name: c, type: post}\n"
	             "      - {name: d, type: post, after: [c]}\n"
	             "      - {name: s, type: stream, after: [d]}\n" VALID_TAIL,
	             "t.yaml:5:9: pipelines.p.stages[1]: cycle: a -> b -> c -> d -> a");
	/* several sinks */
	expect_diags("pipelines:\n  p:\n    stages:\n"
	             "      - {name: a, type: rag}\n"
	             "      - {name: b, type: inference}\n"
	             "      - {name: audit, type: post, after: [a]}\n" VALID_TAIL,
	             "t.yaml:4:7: pipelines.p.stages: several sinks: b, audit (a pipeline ends in "
	             "exactly one stage; list the others in a later stage's after)");
	/* inference: none / several */
	expect_diags("pipelines:\n  p:\n    stages:\n      - {name: a, type: rag}\n" VALID_TAIL,
	             "t.yaml:4:7: pipelines.p.stages: no stage of type inference (a pipeline needs "
	             "exactly one)");
	expect_diags("pipelines:\n  p:\n    stages:\n      - {name: a, type: inference}\n"
	             "      - {name: b, type: inference}\n" VALID_TAIL,
	             "t.yaml:4:7: pipelines.p.stages: several stages of type inference: a, b (a "
	             "pipeline needs exactly one)");
	/* stage count */
	expect_diags("pipelines:\n  p:\n    stages: []\n" VALID_TAIL,
	             "t.yaml:3:13: pipelines.p.stages: expected at least one stage");
	char yaml[4096];
	size_t o = (size_t)snprintf(yaml, sizeof yaml, "pipelines:\n  p:\n    stages:\n");
	for (int i = 0; i < 17; i++)
		o += (size_t)snprintf(yaml + o, sizeof yaml - o, "      - {name: s%d, type: %s}\n", i,
		                      i == 8 ? "inference" : "post");
	snprintf(yaml + o, sizeof yaml - o, VALID_TAIL);
	expect_diags(yaml, "t.yaml:4:7: pipelines.p.stages: too many stages: 17 (at most 16)");
	expect_diags("pipelines:\n  p:\n    stages: {a: 1}\n" VALID_TAIL,
	             "t.yaml:3:13: pipelines.p.stages: expected a sequence of stages, found a mapping");
}

static void test_topological_order(void **state)
{
	(void)state;
	/* Listed out of order: the stored order puts every stage after its
	 * predecessors and otherwise keeps the file's order. */
	sl_config *c = expect_ok(
		"pipelines:\n  p:\n    stages:\n"
		"      - {name: stream, type: stream, after: [post]}\n"
		"      - {name: post, type: post, after: [inference]}\n"
		"      - {name: web, type: rag, after: []}\n"
		"      - {name: assemble, type: assemble, after: [docs, web]}\n"
		"      - {name: inference, type: inference}\n"
		"      - {name: docs, type: rag, after: []}\n" VALID_TAIL);
	const sl_cfg_pipeline *p = sl_config_pipeline(c, "p");
	static const char *order[] = {"web", "docs", "assemble", "inference", "post", "stream"};
	assert_int_equal(p->n_stages, 6);
	for (size_t i = 0; i < 6; i++)
		assert_string_equal(p->stages[i].name, order[i]);
	assert_int_equal(p->stages[0].n_after, 0);
	assert_int_equal(p->stages[1].n_after, 0);
	assert_int_equal(p->stages[2].n_after, 2);
	assert_string_equal(p->stages[2].after[0], "docs");
	assert_string_equal(p->stages[2].after[1], "web");
	/* inference had no after: it follows the stage listed before it */
	assert_int_equal(p->stages[3].n_after, 1);
	assert_string_equal(p->stages[3].after[0], "assemble");
	sl_config_free(c);

	/* fan-out then join: a diamond */
	c = expect_ok("pipelines:\n  p:\n    stages:\n"
	              "      - {name: in, type: rag}\n"
	              "      - {name: l, type: rag, after: [in]}\n"
	              "      - {name: r, type: rag, after: [in]}\n"
	              "      - {name: j, type: assemble, after: [r, l]}\n"
	              "      - {name: i, type: inference}\n" VALID_TAIL);
	p = sl_config_pipeline(c, "p");
	static const char *order2[] = {"in", "l", "r", "j", "i"};
	for (size_t i = 0; i < 5; i++)
		assert_string_equal(p->stages[i].name, order2[i]);
	sl_config_free(c);
}

static void test_models(void **state)
{
	(void)state;
	expect_diags(LINEAR5 "backends:\n  e: {type: echo}\n"
	             "models:\n  chat: {pipeline: nope, backends: [e, gone]}\n"
	             "  m2: {pipeline: p, backends: []}\n  m3: {pipeline: p, backends: {a: b}}\n"
	             "  m4: [1]\n",
	             "t.yaml:12:20: models.chat.pipeline: model \"chat\" uses pipeline \"nope\", which "
	             "is not defined\n"
	             "t.yaml:12:40: models.chat.backends[1]: model \"chat\" uses backend \"gone\", "
	             "which is not defined\n"
	             "t.yaml:13:31: models.m2.backends: expected at least one backend\n"
	             "t.yaml:14:31: models.m3.backends: expected a sequence of backend names, found a "
	             "mapping\n"
	             "t.yaml:15:7: models.m4: expected a mapping, found a sequence");
	/* no models: the file is the whole truth */
	expect_diags(LINEAR5 "backends:\n  e: {type: echo}\n",
	             "t.yaml: models: expected at least one model");
	expect_diags(LINEAR5 "backends:\n  e: {type: echo}\nmodels: {}\n",
	             "t.yaml:11:9: models: expected at least one model");
	expect_diags("", "t.yaml: models: expected at least one model");
	expect_diags("# only a comment\n", "t.yaml: models: expected at least one model");
	expect_diags("[1, 2]\n", "t.yaml:1:1: expected a mapping, found a sequence");
	expect_diags("hello\n", "t.yaml:1:1: expected a mapping, found \"hello\"");
	expect_diags(LINEAR5 VALID_TAIL "tenants: []\ncache: 1\nmesh: {}\nrouting: ~\n",
	             "t.yaml:13:10: tenants: expected a mapping, found a sequence\n"
	             "t.yaml:14:8: cache: expected a mapping, found 1");
}

static void test_interpolation(void **state)
{
	(void)state;
	setenv("SLT_PORT", "9091", 1);
	setenv("SLT_URL", "http://10.0.0.1:8000/v1", 1);
	setenv("SLT_EMPTY", "", 1);
	setenv("SLT_TEAM", "search", 1);
	unsetenv("SLT_UNSET");
	sl_config *c = expect_ok(
		LINEAR5 "models:\n  m: {pipeline: p, backends: [e]}\n"
		"server:\n  port: ${SLT_PORT}\n  shards: ${SLT_UNSET:-2}\n  host: \"${SLT_EMPTY:-::1}\"\n"
		"  drain_ms: \"${SLT_PORT}\"\n"
		"backends:\n"
		"  up:\n    type: openai\n    url: ${SLT_URL}\n    model: \"m-${SLT_EMPTY}-$$-${SLT_TEAM}$\"\n"
		"    headers: {X-Team: \"${SLT_TEAM}\", X-Lit: \"a$${b}c\", X-Def: \"${SLT_UNSET:-}\"}\n"
		"  e: {type: echo}\n");
	assert_int_equal(c->server.port, 9091);
	assert_int_equal(c->server.shards, 2);
	assert_string_equal(c->server.host, "::1"); /* set but empty: the default */
	assert_int_equal(c->server.drain_ms, 9091); /* quoted, typed by its value */
	const sl_cfg_backend *b = sl_config_backend(c, "up");
	assert_string_equal(b->url, "http://10.0.0.1:8000/v1");
	assert_string_equal(b->model, "m--$$-search$");
	assert_string_equal(b->headers[0], "X-Team: search");
	assert_string_equal(b->headers[1], "X-Lit: a${b}c");
	assert_string_equal(b->headers[2], "X-Def: ");
	sl_config_free(c);
	/* "$${" is not interpolation: the escape gives "TOK${x}", not a name */
	expect_diags(LINEAR5 VALID_TAIL "server: {admin: {token_env: \"TOK$${x}\"}}\n",
	             "t.yaml:13:29: server.admin.token_env: expected an environment variable name "
	             "([A-Za-z_][A-Za-z0-9_]*), found \"TOK${x}\"");
	/* keys are not interpolated */
	expect_diags(LINEAR5 VALID_TAIL "server: {\"${SLT_PORT}\": 1}\n",
	             "t.yaml:13:10: server[\"${SLT_PORT}\"]: unknown key \"${SLT_PORT}\" (expected one "
	             "of: host, port, shards, pin, max_body, max_headers, read_timeout_ms, "
	             "request_timeout_ms, drain_ms, retry_after_s, admin)");
	expect_diags(LINEAR5 "backends:\n  up: {type: openai, url: \"${SLT_UNSET}\"}\n"
	             "models:\n  m: {pipeline: p, backends: [up]}\n"
	             "server:\n  port: ${SLT_PORT:-x}9\n  shards: \"${SLT_UNSET\"\n"
	             "  host: \"${1X}\"\n  drain_ms: \"${SLT_URL:-5}\"\n  pin: ${SLT_EMPTY}\n",
	             "t.yaml:10:27: backends.up.url: environment variable \"SLT_UNSET\" is not set (use "
	             "${SLT_UNSET:-default} for a default)\n"
	             "t.yaml:14:9: server.port: expected an integer 0..65535, found 90919\n"
	             "t.yaml:15:11: server.shards: unterminated \"${\" (use \"$${\" for a literal "
	             "\"${\")\n"
	             "t.yaml:16:9: server.host: invalid variable name \"1X\" in \"${...}\" (expected "
	             "[A-Za-z_][A-Za-z0-9_]*)\n"
	             "t.yaml:17:13: server.drain_ms: expected an integer 0..86400000, found "
	             "\"http://10.0.0.1:8000/v1\"\n"
	             "t.yaml:18:8: server.pin: expected true or false, found \"\"");
}

static void test_anchors_and_merge(void **state)
{
	(void)state;
	sl_config *c = expect_ok("pipelines:\n  p:\n    stages:\n"
	                         "      - &base {name: a, type: rag, queue: 7, overflow: shed}\n"
	                         "      - {<<: *base, name: b, type: inference}\n"
	                         "      - {<<: [*base], name: c, type: stream, queue: 9}\n"
	                         "backends:\n  e: &echo {type: echo, delay_ms: 3}\n  f: *echo\n"
	                         "models:\n  m: {pipeline: p, backends: [e, f]}\n");
	const sl_cfg_pipeline *p = sl_config_pipeline(c, "p");
	assert_int_equal(p->stages[1].queue, 7);
	assert_int_equal(p->stages[1].overflow, SL_OVERFLOW_SHED);
	assert_int_equal(p->stages[1].concurrency, 256);
	assert_int_equal(p->stages[2].queue, 9);
	assert_int_equal(sl_config_backend(c, "f")->delay_ms, 3);
	sl_config_free(c);
	expect_diags(LINEAR5 VALID_TAIL "server: *nope\n",
	             "t.yaml:13:9: server: unknown alias *nope (no anchor of that name before it)");
	expect_diags(LINEAR5 VALID_TAIL "server: {<<: 5}\n",
	             "t.yaml:13:14: server[\"<<\"]: expected a mapping or a sequence of mappings to merge, "
	             "found a scalar");
	/* an anchor is usable only once complete: no self-reference */
	expect_diags(LINEAR5 VALID_TAIL "tenants: &t {a: *t}\n",
	             "t.yaml:13:17: tenants.a: unknown alias *t (no anchor of that name before it)");
}

/* ---- bad input --------------------------------------------------------------- */

static void test_yaml_errors(void **state)
{
	(void)state;
	expect_diags("server:\n  port: [1, 2\n",
	             "t.yaml:3:1: server.port[2]: invalid YAML: did not find expected ',' or ']' "
	             "(while parsing a flow sequence at 2:9)");
	expect_diags("a: b\n c: d\n",
	             "t.yaml:2:3: invalid YAML: mapping values are not allowed in this context");
	expect_diags("models: {}\n---\nmodels: {}\n",
	             "t.yaml:2:1: expected a single YAML document, found a second one");
	/* invalid UTF-8, with its position */
	expect_diags("server:\n  host: \"ab\xff\"\n",
	             "t.yaml:2:12: invalid YAML: invalid leading UTF-8 octet (byte 0xff)");
	/* binary garbage: one clear error, no crash */
	unsigned char junk[4096];
	uint32_t x = 12345;
	for (size_t i = 0; i < sizeof junk; i++) {
		x = x * 1103515245u + 12345u;
		junk[i] = (unsigned char)(x >> 16);
	}
	sl_cfg_diags d = {0};
	sl_config *c = NULL;
	assert_int_equal(sl_config_load_string((const char *)junk, sizeof junk, NULL, &c, &d),
	                 SL_EINVAL);
	assert_null(c);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.v[0].file, "<string>");
	assert_true(strncmp(d.v[0].msg, "invalid YAML: ", 14) == 0);
	assert_true(d.v[0].line >= 1);
	sl_cfg_diags_free(&d);
	/* NUL bytes */
	assert_int_equal(sl_config_load_string("models:\0{}", 10, NULL, &c, &d), SL_EINVAL);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.v[0].msg, "invalid YAML: control characters are not allowed (byte 0x00)");
	sl_cfg_diags_free(&d);
	/* diags may be NULL */
	assert_int_equal(sl_config_load_string("x: [", 4, NULL, &c, NULL), SL_EINVAL);
	assert_int_equal(sl_config_load_string(NULL, 1, NULL, &c, NULL), SL_EINVAL);
}

static void test_deep_nesting(void **state)
{
	(void)state;
	/* 1000 levels of flow nesting */
	size_t n = 1000;
	char *y = malloc(3 + 2 * n + 2);
	strcpy(y, "a: ");
	memset(y + 3, '[', n);
	memset(y + 3 + n, ']', n);
	strcpy(y + 3 + 2 * n, "\n");
	char buf[65536];
	double t0 = now_s();
	assert_int_equal(load(y, NULL, buf, sizeof buf), SL_EINVAL);
	assert_true(now_s() - t0 < 2.0);
	assert_non_null(strstr(buf, "t.yaml:1:67: a[0][0]"));
	assert_non_null(strstr(buf, ": nesting deeper than 64 levels"));
	assert_null(strchr(buf, '\n')); /* one problem */
	free(y);
	/* 1000 levels of block nesting */
	size_t cap = n * (n + 16);
	y = malloc(cap);
	size_t o = 0;
	for (size_t i = 0; i < n; i++)
		o += (size_t)snprintf(y + o, cap - o, "%*sk%zu:\n", (int)i, "", i);
	assert_int_equal(load(y, NULL, buf, sizeof buf), SL_EINVAL);
	assert_non_null(strstr(buf, "t.yaml:65:65: k0.k1.k2."));
	assert_non_null(strstr(buf, "k63: nesting deeper than 64 levels"));
	free(y);
	/* exactly 64 levels are fine (the depth check is not off by one) */
	n = 64;
	y = malloc(64 + 2 * n);
	o = (size_t)sprintf(y, "tenants: {a: ");
	for (size_t i = 0; i < n - 2; i++)
		y[o++] = '[';
	for (size_t i = 0; i < n - 2; i++)
		y[o++] = ']';
	o += (size_t)sprintf(y + o, "}\n");
	y[o] = '\0';
	char *full = malloc(o + 512);
	sprintf(full, LINEAR5 VALID_TAIL "%s", y);
	sl_config_free(expect_ok(full));
	free(full);
	free(y);
}

static void test_billion_laughs(void **state)
{
	(void)state;
	char y[4096];
	size_t o = (size_t)snprintf(y, sizeof y,
	                            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\","
	                            "\"lol\",\"lol\"]\n");
	const char *names = "abcdefghi";
	for (int i = 1; i < 9; i++) {
		o += (size_t)snprintf(y + o, sizeof y - o, "%c: &%c [", names[i], names[i]);
		for (int k = 0; k < 9; k++)
			o += (size_t)snprintf(y + o, sizeof y - o, "%s*%c", k ? "," : "", names[i - 1]);
		o += (size_t)snprintf(y + o, sizeof y - o, "]\n");
	}
	char buf[65536];
	long rss0 = maxrss_kb();
	double t0 = now_s();
	assert_int_equal(load(y, NULL, buf, sizeof buf), SL_EINVAL);
	assert_true(now_s() - t0 < 1.0);
	assert_true(maxrss_kb() - rss0 < 32 * 1024);
	assert_string_equal(buf, "t.yaml:6:11: f[1]: too many nodes: more than 200000 (aliases "
	                         "count as copies)");
	/* a flat document over the node bound */
	size_t n = SL_CFG_MAX_NODES + 10, cap = 16 + 2 * n;
	char *big = malloc(cap);
	o = (size_t)sprintf(big, "tenants: [");
	for (size_t i = 0; i < n; i++)
		big[o++] = '1', big[o++] = ',';
	big[o - 1] = ']';
	big[o++] = '\n';
	big[o] = '\0';
	assert_int_equal(load(big, NULL, buf, sizeof buf), SL_EINVAL);
	assert_non_null(strstr(buf, "too many nodes: more than 200000"));
	free(big);
}

static void test_big_files(void **state)
{
	(void)state;
	char path[] = "/tmp/sluice-test-config-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	/* 100 MB (sparse): refused from its size, without reading it */
	assert_int_equal(ftruncate(fd, 100 * 1000 * 1000), 0);
	close(fd);
	sl_cfg_diags d = {0};
	sl_config *c = NULL;
	long rss0 = maxrss_kb();
	double t0 = now_s();
	assert_int_equal(sl_config_load_file(path, &c, &d), SL_ETOOBIG);
	assert_true(now_s() - t0 < 0.5);
	assert_true(maxrss_kb() - rss0 < 8 * 1024);
	assert_null(c);
	assert_int_equal(d.n, 1);
	char line[512];
	char exp[512];
	snprintf(exp, sizeof exp, "%s: file too large: 100000000 bytes (at most 16777216)", path);
	assert_string_equal(sl_cfg_diag_format(&d.v[0], line, sizeof line), exp);
	sl_cfg_diags_free(&d);
	unlink(path);
	/* a device that never ends: the guard while reading */
	assert_int_equal(sl_config_load_file("/dev/zero", &c, &d), SL_ETOOBIG);
	assert_string_equal(d.v[0].msg, "file too large: more than 16777216 bytes");
	sl_cfg_diags_free(&d);
	/* from memory */
	assert_int_equal(sl_config_load_string("", (size_t)SL_CFG_MAX_FILE + 1, NULL, &c, &d),
	                 SL_ETOOBIG);
	sl_cfg_diags_free(&d);
}

static void test_files(void **state)
{
	(void)state;
	sl_cfg_diags d = {0};
	sl_config *c = NULL;
	char line[512];
	assert_int_equal(sl_config_load_file("/nonexistent/sluice.yaml", &c, &d), SL_ENOTFOUND);
	assert_int_equal(d.n, 1);
	assert_string_equal(sl_cfg_diag_format(&d.v[0], line, sizeof line),
	                    "/nonexistent/sluice.yaml: cannot open: No such file or directory");
	sl_cfg_diags_free(&d);
	assert_int_equal(sl_config_load_file("/tmp", &c, &d), SL_ESYS);
	assert_string_equal(sl_cfg_diag_format(&d.v[0], line, sizeof line),
	                    "/tmp: cannot read: Is a directory");
	sl_cfg_diags_free(&d);

	char path[] = "/tmp/sluice-test-config-XXXXXX";
	int fd = mkstemp(path);
	const char *y = sl_config_default_yaml();
	assert_int_equal(write(fd, y, strlen(y)), (ssize_t)strlen(y));
	close(fd);
	assert_int_equal(sl_config_load_file(path, &c, &d), SL_OK);
	assert_string_equal(c->file, path);
	sl_config_free(c);
	/* an invalid file names itself in the diags */
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, "models: 1\n", 10), 10);
	close(fd);
	assert_int_equal(sl_config_load_file(path, &c, &d), SL_EINVAL);
	char exp[512];
	snprintf(exp, sizeof exp, "%s:1:9: models: expected a mapping, found 1", path);
	assert_string_equal(sl_cfg_diag_format(&d.v[0], line, sizeof line), exp);
	sl_cfg_diags_free(&d);
	unlink(path);
}

static void test_many_problems(void **state)
{
	(void)state;
	/* more problems than SL_CFG_MAX_DIAGS: the first are kept, the rest counted */
	size_t n = SL_CFG_MAX_DIAGS + 50, cap = 32 * n + 64;
	char *y = malloc(cap);
	size_t o = 0;
	for (size_t i = 0; i < n; i++)
		o += (size_t)snprintf(y + o, cap - o, "k%zu: 1\n", i);
	sl_cfg_diags d = {0};
	sl_config *c = NULL;
	assert_int_equal(sl_config_load_string(y, o, NULL, &c, &d), SL_EINVAL);
	assert_int_equal(d.n, SL_CFG_MAX_DIAGS);
	assert_int_equal(d.dropped, 51); /* 50 more keys + "models" */
	/* sorted by position */
	for (size_t i = 1; i < d.n; i++)
		assert_true(d.v[i].line > d.v[i - 1].line);
	sl_cfg_diags_free(&d);
	free(y);
}

static void test_format(void **state)
{
	(void)state;
	char buf[64];
	sl_cfg_diag d = {(char *)"f.yaml", 3, 7, (char *)"a.b", (char *)"msg"};
	assert_string_equal(sl_cfg_diag_format(&d, buf, sizeof buf), "f.yaml:3:7: a.b: msg");
	d.path = (char *)"";
	assert_string_equal(sl_cfg_diag_format(&d, buf, sizeof buf), "f.yaml:3:7: msg");
	d.line = 0;
	assert_string_equal(sl_cfg_diag_format(&d, buf, sizeof buf), "f.yaml: msg");
	d.path = (char *)"models";
	assert_string_equal(sl_cfg_diag_format(&d, buf, sizeof buf), "f.yaml: models: msg");
	char small[8];
	assert_string_equal(sl_cfg_diag_format(&d, small, sizeof small), "f.yaml:");
}

/* ---- resilience, routing, priorities, dead letters ---------------------- */

static void expect_diag_has(const char *yaml, const char *needle)
{
	char buf[65536];
	sl_config *c = NULL;
	int rc = load(yaml, &c, buf, sizeof buf);
	if (!strstr(buf, needle))
		fprintf(stderr, "--- yaml:\n%s\n--- wanted: %s\n--- got (rc %d):\n%s\n", yaml, needle, rc,
		        buf);
	assert_non_null(strstr(buf, needle));
	assert_int_equal(rc, SL_EINVAL);
	assert_null(c);
}

#define TWO_BACKENDS_PIPE                                                           \
	"pipelines:\n  p:\n    stages:\n"                                               \
	"      - {name: rag, type: rag, aging_ms: 250, displace: false}\n"              \
	"      - {name: inference, type: inference, overflow: shed}\n"

static void test_resilience_keys(void **state)
{
	(void)state;
	sl_config *c = expect_ok(
		TWO_BACKENDS_PIPE
		"backends:\n"
		"  a:\n    type: echo\n    max_concurrency: 100\n"
		"    breaker: {consecutive_failures: 3, failure_ratio: 0.25, window_ms: 5000,\n"
		"              min_requests: 10, cooldown_ms: 200, max_cooldown_ms: 4000,\n"
		"              half_open_probes: 2}\n"
		"    retry: {budget_ratio: 0.1, budget_min_per_s: 3, backoff_ms: 10, max_backoff_ms: 50}\n"
		"    concurrency: {algorithm: gradient, min: 2, initial: 8}\n"
		"  b: {type: echo, breaker: {enabled: false}}\n"
		"models:\n  m: {pipeline: p, backends: [a, b], routing: weighted, weights: [90, 10],\n"
		"      max_attempts: 4}\n"
		"dlq: {dir: /tmp/x, fsync: always, segment_bytes: 65536, max_bytes: 0}\n");
	const sl_cfg_backend *a = sl_config_backend(c, "a");
	assert_int_equal(a->breaker.enabled, 1);
	assert_int_equal(a->breaker.consecutive_failures, 3);
	assert_true(a->breaker.failure_ratio > 0.249 && a->breaker.failure_ratio < 0.251);
	assert_int_equal(a->breaker.window_ms, 5000);
	assert_int_equal(a->breaker.min_requests, 10);
	assert_int_equal(a->breaker.cooldown_ms, 200);
	assert_int_equal(a->breaker.max_cooldown_ms, 4000);
	assert_int_equal(a->breaker.half_open_probes, 2);
	assert_int_equal(a->retry.budget_min_per_s, 3);
	assert_int_equal(a->retry.backoff_ms, 10);
	assert_int_equal(a->retry.max_backoff_ms, 50);
	assert_int_equal(a->concurrency.algorithm, SL_CFG_LIMIT_GRADIENT);
	assert_int_equal(a->concurrency.min, 2);
	assert_int_equal(a->concurrency.max, 100); /* from max_concurrency */
	assert_int_equal(a->concurrency.initial, 8);
	const sl_cfg_backend *b = sl_config_backend(c, "b");
	assert_int_equal(b->breaker.enabled, 0);
	assert_int_equal(b->breaker.consecutive_failures, 5); /* defaults */
	assert_int_equal(b->concurrency.algorithm, SL_CFG_LIMIT_FIXED);
	assert_int_equal(b->concurrency.max, 0);
	const sl_cfg_model *m = sl_config_model(c, "m");
	assert_string_equal(m->routing, "weighted");
	assert_int_equal(m->weights[0], 90);
	assert_int_equal(m->weights[1], 10);
	assert_int_equal(m->max_attempts, 4);
	assert_string_equal(c->dlq.dir, "/tmp/x");
	assert_int_equal(c->dlq.fsync, 2);
	assert_int_equal(c->dlq.segment_bytes, 65536);
	assert_int_equal(c->dlq.max_bytes, 0);
	const sl_cfg_pipeline *p = sl_config_pipeline(c, "p");
	assert_int_equal(p->stages[0].aging_ms, 250);
	assert_int_equal(p->stages[0].displace, 0);
	assert_int_equal(p->stages[1].aging_ms, 1000);
	assert_int_equal(p->stages[1].displace, 1);
	sl_config_free(c);

	c = expect_ok(LINEAR5 VALID_TAIL);
	assert_null(c->dlq.dir);
	assert_null(c->models[0].routing);
	assert_null(c->models[0].weights);
	sl_config_free(c);
}

static void test_resilience_bad(void **state)
{
	(void)state;
	expect_diag_has(LINEAR5 "backends:\n  e: {type: echo}\n"
	                "models:\n  m: {pipeline: p, backends: [e], routing: random}\n",
	                "models.m.routing: expected fallback, weighted, sticky, round_robin, "
	                "least_inflight or p2c, found \"random\"");
	expect_diag_has(LINEAR5 "backends:\n  e: {type: echo}\n  f: {type: echo}\n"
	                "models:\n  m: {pipeline: p, backends: [e, f], weights: [1]}\n",
	                "models.m.weights: expected 2 weights (one per backend), found 1");
	expect_diag_has(LINEAR5 "backends:\n  e: {type: echo}\n"
	                "models:\n  m: {pipeline: p, backends: [e], weights: [0]}\n",
	                "models.m.weights: the weights add up to 0");
	expect_diag_has(LINEAR5 "backends:\n  e: {type: echo, breaker: {failure_ratio: 2}}\n"
	                "models:\n  m: {pipeline: p, backends: [e]}\n",
	                "backends.e.breaker.failure_ratio: expected a number 0..1, found 2");
	expect_diag_has(LINEAR5 "backends:\n  e: {type: echo, breaker: {failure_ratio: lots}}\n"
	                "models:\n  m: {pipeline: p, backends: [e]}\n",
	                "backends.e.breaker.failure_ratio: expected a number 0..1");
	expect_diag_has(LINEAR5 "backends:\n  e: {type: echo, breaker: {cooldown_ms: 500, "
	                "max_cooldown_ms: 100}}\nmodels:\n  m: {pipeline: p, backends: [e]}\n",
	                "max_cooldown_ms (100) is below cooldown_ms (500)");
	expect_diag_has(LINEAR5 "backends:\n  e: {type: echo, concurrency: {algorithm: vegas}}\n"
	                "models:\n  m: {pipeline: p, backends: [e]}\n",
	                "backends.e.concurrency.algorithm: expected fixed, aimd or gradient");
	expect_diag_has(LINEAR5 "backends:\n  e: {type: echo, concurrency: {min: 10, max: 5}}\n"
	                "models:\n  m: {pipeline: p, backends: [e]}\n",
	                "max (5) is below min (10)");
	expect_diag_has(LINEAR5 "backends:\n  e: {type: echo, retry: {budget: 1}}\n"
	                "models:\n  m: {pipeline: p, backends: [e]}\n",
	                "backends.e.retry.budget: unknown key \"budget\"");
	expect_diag_has(LINEAR5 VALID_TAIL "dlq: {dir: /tmp/x, fsync: sometimes}\n",
	                "dlq.fsync: expected never, interval or always, found \"sometimes\"");
	expect_diag_has(LINEAR5 VALID_TAIL "dlq: [1]\n", "dlq: expected a mapping");
	expect_diag_has(LINEAR5 "backends:\n  e: {type: echo}\n"
	                "models:\n  m: {pipeline: p, backends: [e], max_attempts: 0}\n",
	                "models.m.max_attempts: expected an integer 1..16, found 0");
}

static void test_stage_kinds(void **state)
{
	(void)state;
	sl_config *c = expect_ok(
		"pipelines:\n  p:\n    stages:\n"
		"      - {name: rag, type: rag, retriever: {type: bm25, corpus: docs, index: d.idx, k: 8,"
		" k1: 0.9, b: 0.4, min_score: 0.5, stopwords: false, required: false}}\n"
		"      - {name: asm, type: assemble, template: t.tmpl, system: s.tmpl, examples: e.json,"
		" max_prompt_tokens: 500}\n"
		"      - {name: red, type: redact, classes: [email, card], block_terms: [foo],"
		" block_patterns: [\"b+ar\"], custom: [{name: tk, pattern: \"T-\\\\d+\", max_len: 16}]}\n"
		"      - {name: inference, type: inference}\n"
		"      - {name: out, type: redact}\n" VALID_TAIL);
	const sl_cfg_stage *st = sl_config_pipeline(c, "p")->stages;
	assert_int_equal(st[0].retriever.set, 1);
	assert_string_equal(st[0].retriever.corpus, "docs");
	assert_string_equal(st[0].retriever.index, "d.idx");
	assert_int_equal(st[0].retriever.k, 8);
	assert_int_equal(st[0].retriever.stopwords, 0);
	assert_int_equal(st[0].retriever.required, 0);
	assert_string_equal(st[1].tmpl.user, "t.tmpl");
	assert_string_equal(st[1].tmpl.system, "s.tmpl");
	assert_string_equal(st[1].tmpl.examples, "e.json");
	assert_int_equal(st[1].tmpl.max_prompt_tokens, 500);
	assert_int_equal(st[2].type, SL_CFG_STAGE_REDACT);
	assert_int_equal(st[2].redact.classes, (1u << 0) | (1u << 2));
	assert_int_equal(st[2].redact.n_block_terms, 1);
	assert_string_equal(st[2].redact.block_patterns[0], "b+ar");
	assert_int_equal(st[2].redact.n_custom, 1);
	assert_string_equal(st[2].redact.custom_pattern[0], "T-\\d+");
	assert_int_equal(st[2].redact.custom_max_len[0], 16);
	assert_int_equal(st[4].redact.classes, 0xFF); /* default: all */
	sl_config_free(c);
	/* bad input */
	expect_diag_has("pipelines:\n  p:\n    stages:\n"
	                "      - {name: rag, type: rag, retriever: {type: faiss, corpus: x}}\n"
	                "      - {name: inference, type: inference}\n" VALID_TAIL,
	                "retriever.type: expected bm25, pg or http, found \"faiss\"");
	expect_diag_has("pipelines:\n  p:\n    stages:\n"
	                "      - {name: rag, type: rag, retriever: {type: bm25}}\n"
	                "      - {name: inference, type: inference}\n" VALID_TAIL,
	                "missing required key \"corpus\"");
	expect_diag_has("pipelines:\n  p:\n    stages:\n"
	                "      - {name: inference, type: inference, retriever: {type: bm25, corpus: x}}\n"
	                VALID_TAIL,
	                "key \"retriever\" is only valid for type rag");
	expect_diag_has("pipelines:\n  p:\n    stages:\n"
	                "      - {name: r, type: redact, classes: [email, passport]}\n"
	                "      - {name: inference, type: inference}\n" VALID_TAIL,
	                "expected email, phone, card, iban, ssn, ipv4, ipv6, secret or all, found "
	                "\"passport\"");
	expect_diag_has("pipelines:\n  p:\n    stages:\n"
	                "      - {name: a, type: assemble, max_prompt_tokens: 10}\n"
	                "      - {name: inference, type: inference}\n" VALID_TAIL,
	                "missing required key \"template\"");
	expect_diag_has("pipelines:\n  p:\n    stages:\n"
	                "      - {name: rag, type: rag, retriever: {type: pg, table: t}}\n"
	                "      - {name: inference, type: inference}\n" VALID_TAIL,
	                "missing required key \"conninfo\"");
	expect_diag_has("pipelines:\n  p:\n    stages:\n"
	                "      - {name: rag, type: rag, retriever: {type: http, url: \"http://x/s\","
	                " corpus: docs}}\n"
	                "      - {name: inference, type: inference}\n" VALID_TAIL,
	                "key \"corpus\" is only valid for retriever type bm25");
	expect_diag_has("pipelines:\n  p:\n    stages:\n"
	                "      - {name: rag, type: rag, retriever: {type: pg, conninfo: x,"
	                " table: \"docs; drop table x\"}}\n"
	                "      - {name: inference, type: inference}\n" VALID_TAIL,
	                "expected an SQL name ([A-Za-z0-9_.])");
	sl_config *c2 = expect_ok("pipelines:\n  p:\n    stages:\n"
	                          "      - {name: rag, type: rag, retriever: {type: pg, conninfo: "
	                          "\"host=h\", table: s.docs, id_column: did, text_column: body, "
	                          "language: simple, threads: 8, timeout_ms: 500, on_error: skip}}\n"
	                          "      - {name: inference, type: inference}\n" VALID_TAIL);
	const sl_cfg_retriever *rr = &sl_config_pipeline(c2, "p")->stages[0].retriever;
	assert_int_equal(rr->type, SL_CFG_RETRIEVER_PG);
	assert_string_equal(rr->table, "s.docs");
	assert_string_equal(rr->language, "simple");
	assert_int_equal(rr->threads, 8);
	assert_int_equal(rr->timeout_ms, 500);
	assert_int_equal(rr->skip_on_error, 1);
	sl_config_free(c2);
	expect_diag_has("pipelines:\n  p:\n    stages:\n"
	                "      - {name: r, type: redact, custom: [{pattern: x}]}\n"
	                "      - {name: inference, type: inference}\n" VALID_TAIL,
	                "missing required key \"name\"");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default),
		cmocka_unit_test(test_defaults_filled),
		cmocka_unit_test(test_every_key),
		cmocka_unit_test(test_unknown_keys),
		cmocka_unit_test(test_resilience_keys),
		cmocka_unit_test(test_resilience_bad),
		cmocka_unit_test(test_stage_kinds),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_required_and_enums),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_duplicates),
		cmocka_unit_test(test_graph),
		cmocka_unit_test(test_topological_order),
		cmocka_unit_test(test_models),
		cmocka_unit_test(test_interpolation),
		cmocka_unit_test(test_anchors_and_merge),
		cmocka_unit_test(test_yaml_errors),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_billion_laughs),
		cmocka_unit_test(test_big_files),
		cmocka_unit_test(test_files),
		cmocka_unit_test(test_many_problems),
		cmocka_unit_test(test_format),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
