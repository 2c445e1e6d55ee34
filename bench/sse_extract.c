/* sse_extract.c - micro-benchmark: extracting the fields of OpenAI stream
 * chunks with the hand-written scanner (sl_oai_chunk_parse) versus jansson
 * (sl_oai_chunk_parse_jansson), plus SSE framing throughput.
 *
 * Prints one JSON line per case: ns per chunk for each implementation
 * (median of REPS alternating runs, both in the same invocation) and the
 * ratio jansson/hand.  Usage: sse_extract [iterations] (default 200000).
 * The two implementations are checked to agree on every sample first. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "worker/openai/sse.h"

#define REPS 7

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

typedef int (*parse_fn)(const char *, size_t, sl_oai_chunk *);

static volatile size_t sink;

static uint64_t time_one(parse_fn fn, const char *s, size_t len, long iters)
{
	sl_oai_chunk c;
	sl_oai_chunk_init(&c, 0);
	uint64_t t0 = now_ns();
	for (long i = 0; i < iters; i++) {
		if (fn(s, len, &c) != SL_OK)
			abort();
		sink += c.content_len;
	}
	uint64_t t = now_ns() - t0;
	sl_oai_chunk_free(&c);
	return t;
}

static void check_same(const char *s, size_t len)
{
	sl_oai_chunk a, b;
	sl_oai_chunk_init(&a, 0);
	sl_oai_chunk_init(&b, 0);
	if (sl_oai_chunk_parse(s, len, &a) != sl_oai_chunk_parse_jansson(s, len, &b) ||
	    a.content_len != b.content_len ||
	    (a.content && memcmp(a.content, b.content, a.content_len) != 0) ||
	    a.prompt_tokens != b.prompt_tokens || a.completion_tokens != b.completion_tokens) {
		fprintf(stderr, "implementations disagree on %s\n", s);
		exit(1);
	}
	sl_oai_chunk_free(&a);
	sl_oai_chunk_free(&b);
}

static const struct {
	const char *name;
	const char *data;
} samples[] = {
	{"first_chunk", "{\"id\":\"chatcmpl-9xYz\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,"
	                "\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0f03d4f0ee\",\"choices\":"
	                "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},"
	                "\"logprobs\":null,\"finish_reason\":null}]}"},
	{"token_chunk", "{\"id\":\"chatcmpl-9xYz\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,"
	                "\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0f03d4f0ee\",\"choices\":"
	                "[{\"index\":0,\"delta\":{\"content\":\" Hello\"},\"logprobs\":null,\"finish_reason\":null}]}"},
	{"escaped_chunk", "{\"id\":\"chatcmpl-9xYz\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,"
	                  "\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
	                  "\"line one\\nline \\\"two\\\" caf\\u00e9 \\ud83d\\ude00 \xe6\xbc\xa2\xe5\xad\x97 tab\\tend\"},"
	                  "\"logprobs\":null,\"finish_reason\":null}]}"},
	{"final_chunk", "{\"id\":\"chatcmpl-9xYz\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,"
	                "\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0f03d4f0ee\",\"choices\":"
	                "[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}"},
	{"usage_chunk", "{\"id\":\"chatcmpl-9xYz\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,"
	                "\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0f03d4f0ee\",\"choices\":[],"
	                "\"usage\":{\"prompt_tokens\":1234,\"completion_tokens\":567,\"total_tokens\":1801,"
	                "\"prompt_tokens_details\":{\"cached_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}"},
};

static int count_events(void *arg, const char *ev, size_t evl, const char *d, size_t dl)
{
	(void)ev;
	(void)evl;
	(void)d;
	*(size_t *)arg += dl;
	return 0;
}

int main(int argc, char **argv)
{
	long iters = argc > 1 ? atol(argv[1]) : 200000;
	if (iters <= 0)
		iters = 200000;
	for (size_t k = 0; k < sizeof samples / sizeof samples[0]; k++) {
		const char *s = samples[k].data;
		size_t len = strlen(s);
		check_same(s, len);
		uint64_t th[REPS], tj[REPS];
		time_one(sl_oai_chunk_parse, s, len, iters / 10); /* warm up */
		time_one(sl_oai_chunk_parse_jansson, s, len, iters / 10);
		for (int r = 0; r < REPS; r++) {
			th[r] = time_one(sl_oai_chunk_parse, s, len, iters);
			tj[r] = time_one(sl_oai_chunk_parse_jansson, s, len, iters);
		}
		qsort(th, REPS, sizeof th[0], cmp_u64);
		qsort(tj, REPS, sizeof tj[0], cmp_u64);
		double h = (double)th[REPS / 2] / (double)iters;
		double j = (double)tj[REPS / 2] / (double)iters;
		printf("{\"bench\":\"sse_extract\",\"case\":\"%s\",\"bytes\":%zu,\"iters\":%ld,"
		       "\"hand_ns\":%.1f,\"jansson_ns\":%.1f,\"ratio\":%.2f}\n",
		       samples[k].name, len, iters, h, j, j / h);
	}

	/* SSE framing: a stream of token events fed in 4 KiB reads */
	size_t n_events = 20000;
	const char *ev = samples[1].data;
	size_t evlen = strlen(ev), total = n_events * (evlen + 8);
	char *stream = malloc(total);
	size_t off = 0;
	for (size_t i = 0; i < n_events; i++) {
		memcpy(stream + off, "data: ", 6);
		memcpy(stream + off + 6, ev, evlen);
		memcpy(stream + off + 6 + evlen, "\n\n", 2);
		off += evlen + 8;
	}
	uint64_t ts[REPS];
	for (int r = 0; r < REPS; r++) {
		size_t got = 0;
		sl_sse *p;
		if (sl_sse_create(1 << 16, count_events, &got, &p) != SL_OK)
			abort();
		uint64_t t0 = now_ns();
		for (size_t o = 0; o < total; o += 4096)
			if (sl_sse_feed(p, stream + o, total - o < 4096 ? total - o : 4096) != SL_OK)
				abort();
		ts[r] = now_ns() - t0;
		if (got != n_events * evlen)
			abort();
		sl_sse_destroy(p);
	}
	qsort(ts, REPS, sizeof ts[0], cmp_u64);
	printf("{\"bench\":\"sse_framing\",\"events\":%zu,\"bytes\":%zu,\"ns_per_event\":%.1f,\"mb_per_s\":%.0f}\n",
	       n_events, total, (double)ts[REPS / 2] / (double)n_events,
	       (double)total / ((double)ts[REPS / 2] / 1e9) / 1e6);
	free(stream);
	return 0;
}
