/* openai_req.c - micro-benchmark: parsing OpenAI request bodies with the
 * hand-written fast path versus the jansson path (sl_oai_req_parse's two
 * paths, picked with sl__oai_req_parse_ex's flags).
 *
 * Bodies: the streaming client's request, a chat with a 2 KB system prompt
 * and 6 turns, a completions request, a chat with "tools" and other unknown
 * fields.  Both paths are first checked to accept every body and to agree.
 * Then, per body, REPS alternating timed runs of each path (parse + free,
 * as the gateway does per request); prints one JSON line per body with the
 * median ns per parse of each path and the ratio jansson/fast.
 *
 * Usage: openai_req [iterations]      (default: about 20 ms per run and path)
 *        openai_req --one fast|jansson BODY N
 *             parse BODY (stream_client | chat_2k | completion | tools) N
 *             times with one path only and print nothing: for
 *             valgrind --tool=callgrind --toggle-collect=sl__oai_req_parse_ex */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http/openai_req.h"
#include "http/openai_req_int.h"

#define REPS 9

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

typedef struct body {
	const char *name;
	sl_oai_kind kind;
	char *text;
	size_t len;
} body;

static char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		abort();
	return p;
}

/* Appends printf output to *buf (grown as needed). */
static void cat(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void cat(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
		va_end(ap);
		if (n < 0)
			abort();
		if ((size_t)n < *cap - *len) {
			*len += (size_t)n;
			return;
		}
		*cap = (*cap + (size_t)n) * 2;
		*buf = realloc(*buf, *cap);
		if (!*buf)
			abort();
	}
}

static const char *const sentences[] = {
	"You are a helpful assistant for an online bookshop.",
	"Answer in the language of the question and keep answers short.",
	"Never invent prices, stock levels or delivery dates; look them up with the tools.",
	"If the customer asks about an order, ask for the order number first.",
	"Be polite, and do not discuss competitors.",
	"Format lists with one item per line.\\nUse plain text, no Markdown tables.",
	"When a book is out of stock, offer the closest edition that is in stock.",
	"Refunds are possible within 30 days; quote the \\\"returns policy\\\" page.",
};

static char *chat_2k(void)
{
	size_t len = 0, cap = 4096;
	char *b = malloc(cap);
	if (!b)
		abort();
	cat(&b, &len, &cap, "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"system\",\"content\":\"");
	size_t start = len;
	for (size_t i = 0; len - start < 2048; i++)
		cat(&b, &len, &cap, "%s ", sentences[i % (sizeof sentences / sizeof sentences[0])]);
	cat(&b, &len, &cap, "\"}");
	static const char *const turns[6] = {
		"Hi! Do you have \\\"The Name of the Rose\\\" in English?",
		"Yes: the paperback edition is in stock. Would you like me to reserve a copy?",
		"How much is it, and can it be delivered by Friday? I live in Lyon.",
		"It is 12.90 EUR. Standard delivery to Lyon takes 2 to 3 working days, so Friday is likely.",
		"Great. Please also check whether you have \\\"Foucault's Pendulum\\\".",
		"One more thing: can I pay with a gift card caf\\u00e9-2024? \xf0\x9f\x99\x82",
	};
	for (int i = 0; i < 6; i++)
		cat(&b, &len, &cap, ",{\"role\":\"%s\",\"content\":\"%s\"}", i % 2 ? "assistant" : "user",
		    turns[i]);
	cat(&b, &len, &cap, "],\"stream\":true,\"stream_options\":{\"include_usage\":true},"
	                    "\"temperature\":0.7,\"max_tokens\":512,\"user\":\"customer-8841\"}");
	return b;
}

static const char tools_body[] =
	"{\"model\":\"gpt-4o\",\"messages\":["
	"{\"role\":\"system\",\"content\":\"You can call tools to answer questions about the weather.\"},"
	"{\"role\":\"user\",\"content\":\"What's the weather like in Paris and in Rome today?\"}],"
	"\"tools\":["
	"{\"type\":\"function\",\"function\":{\"name\":\"get_current_weather\","
	"\"description\":\"Get the current weather in a given location\","
	"\"parameters\":{\"type\":\"object\",\"properties\":{"
	"\"location\":{\"type\":\"string\",\"description\":\"The city and country, e.g. Paris, France\"},"
	"\"unit\":{\"type\":\"string\",\"enum\":[\"celsius\",\"fahrenheit\"]}},"
	"\"required\":[\"location\"],\"additionalProperties\":false},\"strict\":true}},"
	"{\"type\":\"function\",\"function\":{\"name\":\"get_forecast\","
	"\"description\":\"Get a multi-day forecast\","
	"\"parameters\":{\"type\":\"object\",\"properties\":{"
	"\"location\":{\"type\":\"string\"},\"days\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":14}},"
	"\"required\":[\"location\",\"days\"]}}}],"
	"\"tool_choice\":\"auto\",\"parallel_tool_calls\":true,"
	"\"response_format\":{\"type\":\"text\"},\"logit_bias\":{\"50256\":-100},"
	"\"metadata\":{\"tenant\":\"acme\",\"trace\":\"4bf92f3577b34da6a3ce929d0e0e4736\"},"
	"\"frequency_penalty\":0.0,\"presence_penalty\":0.2,\"logprobs\":false,\"top_logprobs\":null,"
	"\"temperature\":0.2,\"top_p\":0.95,\"seed\":1234,\"max_completion_tokens\":800,\"user\":\"u-42\"}";

static const char completion_body[] =
	"{\"model\":\"gpt-3.5-turbo-instruct\",\"prompt\":\"Write a tagline for an ice cream shop "
	"that sells only three flavours, each named after a famous mathematician.\\n\\nTagline:\","
	"\"max_tokens\":64,\"temperature\":0.9,\"top_p\":1,\"n\":1,\"stop\":[\"\\n\\n\"],"
	"\"stream\":false,\"echo\":false,\"best_of\":1}";

static void make_bodies(body *b)
{
	b[0] = (body){"stream_client", SL_OAI_CHAT,
	              xstrdup("{\"model\":\"mock\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"Say something.\"}]}"), 0};
	b[1] = (body){"chat_2k", SL_OAI_CHAT, chat_2k(), 0};
	b[2] = (body){"completion", SL_OAI_COMPLETION, xstrdup(completion_body), 0};
	b[3] = (body){"tools", SL_OAI_CHAT, xstrdup(tools_body), 0};
	for (int i = 0; i < 4; i++)
		b[i].len = strlen(b[i].text);
}

static volatile size_t sink;

static uint64_t run(const body *b, unsigned flags, long iters)
{
	uint64_t t0 = now_ns();
	for (long i = 0; i < iters; i++) {
		sl_oai_req *r;
		if (sl__oai_req_parse_ex(b->kind, b->text, b->len, NULL, &r, NULL, flags) != SL_OK)
			abort();
		sink += r->input_bytes;
		sl_oai_req_free(r);
	}
	return now_ns() - t0;
}

/* Iterations of one path for a run of about 20 ms (after a warm-up). */
static long calibrate(const body *b, unsigned flags)
{
	long n = 100;
	for (;;) {
		uint64_t t = run(b, flags, n);
		if (t >= 5000000 || n >= (1L << 30))
			return (long)((double)n * 20e6 / (double)(t ? t : 1)) + 1;
		n *= 4;
	}
}

/* Both paths accept b and agree on what matters here. */
static void check(const body *b)
{
	sl_oai_req *f, *j;
	sl_oai_error err;
	if (sl__oai_req_parse_ex(b->kind, b->text, b->len, NULL, &f, &err, SL__OAI_FAST_ONLY) != SL_OK ||
	    sl__oai_req_parse_ex(b->kind, b->text, b->len, NULL, &j, &err, SL__OAI_JANSSON_ONLY) != SL_OK) {
		fprintf(stderr, "%s: a path refused the body\n", b->name);
		exit(1);
	}
	int same = f->input_bytes == j->input_bytes && f->n_messages == j->n_messages &&
	           strcmp(f->model, j->model) == 0 && f->max_tokens == j->max_tokens &&
	           f->stream == j->stream && f->temperature == j->temperature;
	for (size_t i = 0; same && i < f->n_messages; i++)
		same = f->messages[i].content_len == j->messages[i].content_len &&
		       memcmp(f->messages[i].content, j->messages[i].content, f->messages[i].content_len) == 0;
	if (!same) {
		fprintf(stderr, "%s: the paths disagree\n", b->name);
		exit(1);
	}
	sl_oai_req_free(f);
	sl_oai_req_free(j);
}

int main(int argc, char **argv)
{
	body bodies[4];
	make_bodies(bodies);
	if (argc == 5 && strcmp(argv[1], "--one") == 0) {
		unsigned flags = strcmp(argv[2], "fast") == 0 ? SL__OAI_FAST_ONLY : SL__OAI_JANSSON_ONLY;
		for (int i = 0; i < 4; i++)
			if (strcmp(argv[3], bodies[i].name) == 0) {
				run(&bodies[i], flags, atol(argv[4]));
				return 0;
			}
		fprintf(stderr, "unknown body %s\n", argv[3]);
		return 2;
	}
	long fixed = argc > 1 ? atol(argv[1]) : 0;
	for (int i = 0; i < 4; i++) {
		body *b = &bodies[i];
		check(b);
		long fi = fixed > 0 ? fixed : calibrate(b, SL__OAI_FAST_ONLY);
		long ji = fixed > 0 ? fixed : calibrate(b, SL__OAI_JANSSON_ONLY);
		uint64_t tf[REPS], tj[REPS];
		for (int r = 0; r < REPS; r++) {
			tf[r] = run(b, SL__OAI_FAST_ONLY, fi);
			tj[r] = run(b, SL__OAI_JANSSON_ONLY, ji);
		}
		qsort(tf, REPS, sizeof tf[0], cmp_u64);
		qsort(tj, REPS, sizeof tj[0], cmp_u64);
		double fast = (double)tf[REPS / 2] / (double)fi;
		double jans = (double)tj[REPS / 2] / (double)ji;
		printf("{\"bench\":\"openai_req\",\"body\":\"%s\",\"bytes\":%zu,\"reps\":%d,"
		       "\"fast_iters\":%ld,\"jansson_iters\":%ld,"
		       "\"fast_ns\":%.1f,\"jansson_ns\":%.1f,\"ratio\":%.2f,"
		       "\"fast_mb_s\":%.0f,\"jansson_mb_s\":%.0f}\n",
		       b->name, b->len, REPS, fi, ji, fast, jans, jans / fast,
		       (double)b->len / fast * 1e3, (double)b->len / jans * 1e3);
		fflush(stdout);
	}
	for (int i = 0; i < 4; i++)
		free(bodies[i].text);
	return 0;
}
