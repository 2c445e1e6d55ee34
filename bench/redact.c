/* redact.c - micro-benchmark of post/redact: MB/s whole-text and streaming
 * (1-token ~4-byte pieces, and 64-byte pieces) over a generated 10 MB text
 * with sparse PII, the hold-back distribution while streaming, and the time
 * to first output byte it adds.  Prints JSON lines.
 *
 *   build/bench/redact [MB] [REPEATS]
 *
 * Baseline in the same run: the same text through a redactor with no
 * class switched on (the engine's own cost), so figures can be compared
 * as ratios on a shared machine.  Medians of REPEATS runs (default 3). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "post/redact.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return rs;
}

static const char *words[] = {
	"the", "model", "returns", "a", "response", "with", "several", "tokens", "and", "then",
	"pipeline", "stage", "latency", "is", "measured", "in", "milliseconds", "for", "each",
	"request", "version", "1.2.3", "on", "2024-01-15", "at", "10:30", "order", "#48213",
	"über", "naïve", "café", "日本語", "—", "data", "of", "to", "it", "we", "can", "see"};
static const char *pii[] = {
	"john.doe@example.com", "+1 (555) 123-4567", "4111 1111 1111 1111",
	"DE89 3704 0044 0532 0130 00", "123-45-6789", "192.168.10.20", "2001:db8::42",
	"sk-abc123DEF456ghi789JKL012mno345", "AKIAIOSFODNN7EXAMPLE"};

static char *gen(size_t n)
{
	char *t = malloc(n + 64);
	size_t len = 0, since = 0;
	while (len < n) {
		const char *w;
		if (since > 1500 && rnd() % 64 == 0) { /* ~ one PII item per 2 KB */
			w = pii[rnd() % (sizeof pii / sizeof *pii)];
			since = 0;
		} else {
			w = words[rnd() % (sizeof words / sizeof *words)];
		}
		size_t l = strlen(w);
		if (len + l + 1 > n)
			break;
		memcpy(t + len, w, l);
		len += l;
		t[len++] = rnd() % 12 == 0 ? '\n' : ' ';
		since += l + 1;
	}
	memset(t + len, ' ', n - len);
	t[n] = '\0';
	return t;
}

static int cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int cmpz(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return x < y ? -1 : x > y;
}

static double whole(const sl_redactor *r, const char *t, size_t n, size_t *outlen)
{
	sl_dynbuf out;
	sl_dynbuf_init(&out, n * 4);
	double t0 = now();
	if (sl_redact_text(r, t, n, &out, NULL, NULL) != SL_OK)
		abort();
	double dt = now() - t0;
	*outlen = out.len;
	sl_dynbuf_free(&out);
	return dt;
}

/* Streams in pieces; records held after each push when held != NULL. */
static double stream(const sl_redactor *r, const char *t, size_t n, size_t piece,
                     size_t *held, size_t *outlen)
{
	sl_dynbuf out;
	sl_dynbuf_init(&out, n * 4);
	sl_redact_stream *s;
	if (sl_redact_stream_new(r, &s))
		abort();
	double t0 = now();
	size_t k = 0;
	for (size_t off = 0; off < n; off += piece) {
		size_t l = n - off < piece ? n - off : piece;
		if (sl_redact_stream_push(s, t + off, l, &out) != SL_OK)
			abort();
		if (held)
			held[k++] = sl_redact_stream_held(s);
	}
	if (sl_redact_stream_finish(s, &out) != SL_OK)
		abort();
	double dt = now() - t0;
	*outlen = out.len;
	sl_redact_stream_free(s);
	sl_dynbuf_free(&out);
	return dt;
}

int main(int argc, char **argv)
{
	size_t mb = argc > 1 ? (size_t)atoi(argv[1]) : 10;
	int reps = argc > 2 ? atoi(argv[2]) : 3;
	if (mb < 1 || reps < 1)
		return 2;
	size_t n = mb << 20;
	char *t = gen(n);
	sl_redact_opts oall = {.classes = SL_PII_ALL}, onone = {.classes = 0};
	sl_redactor *all, *none;
	char err[256];
	if (sl_redactor_create(&oall, &all, err, sizeof err) ||
	    sl_redactor_create(&onone, &none, err, sizeof err)) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	struct {
		const char *mode;
		const sl_redactor *r;
		size_t piece; /* 0 = whole */
	} cases[] = {{"whole_none", none, 0}, {"whole", all, 0},   {"stream_none", none, 4},
	             {"stream", all, 4},      {"stream", all, 64}};
	size_t ref_len = 0;
	for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
		double *dt = calloc((size_t)reps, sizeof *dt);
		size_t outlen = 0;
		for (int i = -1; i < reps; i++) /* -1: warm-up, not counted */
			dt[i < 0 ? 0 : i] = cases[c].piece ? stream(cases[c].r, t, n, cases[c].piece, NULL, &outlen)
			                       : whole(cases[c].r, t, n, &outlen);
		qsort(dt, (size_t)reps, sizeof *dt, cmpd);
		if (cases[c].r == all && ref_len == 0)
			ref_len = outlen;
		printf("{\"bench\":\"redact\",\"mode\":\"%s\",\"classes\":\"%s\",\"piece\":%zu,"
		       "\"bytes\":%zu,\"out_bytes\":%zu,\"same_as_whole\":%s,\"median_s\":%.4f,"
		       "\"mb_s\":%.2f}\n",
		       cases[c].mode, cases[c].r == all ? "all" : "none", cases[c].piece, n, outlen,
		       cases[c].r == all ? (outlen == ref_len ? "true" : "false") : "null",
		       dt[reps / 2], (double)n / 1048576.0 / dt[reps / 2]);
		free(dt);
		fflush(stdout);
	}

	/* Hold-back while streaming 4-byte pieces. */
	size_t np = (n + 3) / 4, outlen;
	size_t *held = malloc(np * sizeof *held);
	stream(all, t, n, 4, held, &outlen);
	double sum = 0;
	for (size_t i = 0; i < np; i++)
		sum += (double)held[i];
	qsort(held, np, sizeof *held, cmpz);
	printf("{\"bench\":\"redact\",\"mode\":\"holdback\",\"piece\":4,\"held_mean\":%.2f,"
	       "\"held_p50\":%zu,\"held_p99\":%zu,\"held_p999\":%zu,\"held_max\":%zu,"
	       "\"max_holdback_bound\":%zu}\n",
	       sum / (double)np, held[np / 2], held[np * 99 / 100], held[np * 999 / 1000],
	       held[np - 1], sl_redactor_max_holdback(all));
	free(held);

	/* Added time to first token: a response starting at a random word
	 * boundary, fed in 4-byte tokens; bytes fed before the first output
	 * byte, minus the first token itself. */
	enum { STARTS = 2000 };
	size_t *ttft = malloc(STARTS * sizeof *ttft);
	for (int i = 0; i < STARTS; i++) {
		size_t off = rnd() % (n - 4096);
		while (off < n && t[off] != ' ')
			off++;
		off++;
		sl_redact_stream *s;
		sl_dynbuf out;
		sl_dynbuf_init(&out, 1 << 20);
		sl_redact_stream_new(all, &s);
		size_t fed = 0;
		while (out.len == 0 && fed < 4096) {
			sl_redact_stream_push(s, t + off + fed, 4, &out);
			fed += 4;
		}
		ttft[i] = fed - 4;
		sl_redact_stream_free(s);
		sl_dynbuf_free(&out);
	}
	qsort(ttft, STARTS, sizeof *ttft, cmpz);
	printf("{\"bench\":\"redact\",\"mode\":\"ttft\",\"piece\":4,\"added_chars_p50\":%zu,"
	       "\"added_chars_p99\":%zu,\"added_chars_max\":%zu,\"added_tokens_p50\":%.1f,"
	       "\"added_tokens_p99\":%.1f,\"added_ms_p99_at_50_tok_s\":%.1f}\n",
	       ttft[STARTS / 2], ttft[STARTS * 99 / 100], ttft[STARTS - 1], ttft[STARTS / 2] / 4.0,
	       ttft[STARTS * 99 / 100] / 4.0, ttft[STARTS * 99 / 100] / 4.0 / 50.0 * 1000.0);
	free(ttft);
	sl_redactor_destroy(all);
	sl_redactor_destroy(none);
	free(t);
	return 0;
}
