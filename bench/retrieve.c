/* retrieve.c - benchmark of the built-in BM25 retriever (src/rag/bm25.h).
 *
 * Generates a synthetic corpus (deterministic seed): N chunks (default
 * 100,000) of 80..120 words drawn from a Zipfian vocabulary (V = 50,000
 * words, exponent 1.0), builds the index, saves and loads it, then runs Q
 * (default 10,000) random 3-word queries with k = 10, in two sets: words
 * drawn from the same Zipf law (so most queries hold a very common word:
 * long postings lists, the hard case) and words drawn uniformly from the
 * vocabulary (rarer words, closer to keyword search).  Prints one JSON
 * object: build time, index size in memory and on disk, load time,
 * queries/s and p50/p99 latency per query set.
 *
 *   build/bench/retrieve [--chunks N] [--queries N] [--vocab V] [--seed S]
 *                        [--index-file PATH]
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "rag/bm25.h"

static uint64_t rng_state;

static uint64_t rnd(void) /* splitmix64 */
{
	uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double *cdf;
static unsigned vocab = 50000;
static char (*words)[16];

static unsigned zipf(void)
{
	double u = (double)(rnd() >> 11) / 9007199254740992.0;
	unsigned lo = 0, hi = vocab - 1;
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		if (cdf[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

typedef struct qres {
	double qps, p50_us, p99_us, mean_hits;
} qres;

static qres run_queries(const sl_bm25 *x, unsigned nq, int uniform)
{
	double *lat = malloc(nq * sizeof *lat);
	sl_hit hits[10];
	uint64_t tot_hits = 0;
	double t0 = now_s();
	for (unsigned i = 0; i < nq; i++) {
		char q[64];
		unsigned a = uniform ? (unsigned)(rnd() % vocab) : zipf();
		unsigned b = uniform ? (unsigned)(rnd() % vocab) : zipf();
		unsigned c = uniform ? (unsigned)(rnd() % vocab) : zipf();
		int n = snprintf(q, sizeof q, "%s %s %s", words[a], words[b], words[c]);
		unsigned nh;
		double s = now_s();
		if (sl_bm25_search(x, q, (size_t)n, 10, hits, &nh) != SL_OK) {
			fprintf(stderr, "search failed\n");
			exit(1);
		}
		lat[i] = now_s() - s;
		tot_hits += nh;
	}
	double el = now_s() - t0;
	qsort(lat, nq, sizeof *lat, cmp_d);
	qres r = {nq / el, lat[nq / 2] * 1e6, lat[(size_t)(nq * 0.99)] * 1e6, (double)tot_hits / nq};
	free(lat);
	return r;
}

int main(int argc, char **argv)
{
	unsigned chunks = 100000, nq = 10000;
	uint64_t seed = 42;
	const char *ipath = NULL;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--chunks"))
			chunks = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--queries"))
			nq = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--vocab"))
			vocab = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--seed"))
			seed = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--index-file"))
			ipath = argv[i + 1];
		else {
			fprintf(stderr, "usage: %s [--chunks N] [--queries N] [--vocab V] [--seed S] "
			                "[--index-file PATH]\n", argv[0]);
			return 2;
		}
	}
	if (!chunks || !nq || vocab < 10) {
		fprintf(stderr, "bad arguments\n");
		return 2;
	}
	rng_state = seed;
	/* vocabulary: distinct lowercase words of 3..12 letters */
	words = calloc(vocab, sizeof *words);
	cdf = malloc(vocab * sizeof *cdf);
	double h = 0;
	for (unsigned i = 0; i < vocab; i++) {
		unsigned len = 2 + (unsigned)(rnd() % 7), n = 0;
		for (unsigned j = 0; j < len; j++)
			words[i][n++] = (char)('a' + rnd() % 26);
		for (unsigned v = i;; v /= 26) { /* unique suffix */
			words[i][n++] = (char)('a' + v % 26);
			if (v < 26)
				break;
		}
		words[i][n] = 0;
		h += 1.0 / (i + 1);
		cdf[i] = h;
	}
	for (unsigned i = 0; i < vocab; i++)
		cdf[i] /= h;

	sl_bm25_opts o;
	sl_bm25_opts_default(&o);
	sl_bm25_builder *b;
	if (sl_bm25_builder_create(&o, &b) != SL_OK)
		return 1;
	char *text = malloc(120 * 17 + 1);
	double gen = 0, t0 = now_s();
	for (unsigned c = 0; c < chunks; c++) {
		double g0 = now_s();
		unsigned nw = 80 + (unsigned)(rnd() % 41);
		size_t n = 0;
		for (unsigned w = 0; w < nw; w++) {
			const char *s = words[zipf()];
			size_t l = strlen(s);
			if (w)
				text[n++] = ' ';
			memcpy(text + n, s, l);
			n += l;
		}
		char id[32];
		snprintf(id, sizeof id, "synth/%u", c);
		gen += now_s() - g0;
		if (sl_bm25_builder_add(b, id, text, n) != SL_OK) {
			fprintf(stderr, "add failed\n");
			return 1;
		}
	}
	sl_bm25 *x;
	sl_bm25_report rep;
	if (sl_bm25_builder_finish(b, &x, &rep) != SL_OK) {
		fprintf(stderr, "finish: %s\n", rep.err);
		return 1;
	}
	double build_s = now_s() - t0 - gen;
	sl_bm25_builder_destroy(b);
	free(text);
	sl_bm25_stats st;
	sl_bm25_get_stats(x, &st);

	char tmp[64];
	if (!ipath) {
		snprintf(tmp, sizeof tmp, "/tmp/bench_retrieve.%d.bm25", (int)getpid());
		ipath = tmp;
	}
	t0 = now_s();
	if (sl_bm25_save(x, ipath, &rep) != SL_OK) {
		fprintf(stderr, "save: %s\n", rep.err);
		return 1;
	}
	double save_s = now_s() - t0;
	sl_bm25_destroy(x);
	t0 = now_s();
	if (sl_bm25_load(ipath, &x, &rep) != SL_OK) {
		fprintf(stderr, "load: %s\n", rep.err);
		return 1;
	}
	double load_s = now_s() - t0;
	if (ipath == tmp)
		unlink(tmp);

	qres z = run_queries(x, nq, 0);
	qres u = run_queries(x, nq, 1);
	printf("{\"bench\":\"retrieve\",\"chunks\":%llu,\"vocab\":%u,\"terms\":%llu,\"postings\":%llu,"
	       "\"avg_chunk_tokens\":%.1f,\"seed\":%llu,"
	       "\"build_s\":%.3f,\"chunks_per_s\":%.0f,\"mem_bytes\":%llu,\"file_bytes\":%llu,"
	       "\"save_s\":%.3f,\"load_s\":%.3f,\"k\":10,\"queries\":%u,"
	       "\"zipf_queries\":{\"qps\":%.0f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"mean_hits\":%.2f},"
	       "\"uniform_queries\":{\"qps\":%.0f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"mean_hits\":%.2f}}\n",
	       (unsigned long long)st.chunks, vocab, (unsigned long long)st.terms,
	       (unsigned long long)st.postings, st.avgdl, (unsigned long long)seed, build_s,
	       st.chunks / build_s, (unsigned long long)st.mem_bytes,
	       (unsigned long long)st.file_bytes, save_s, load_s, nq, z.qps, z.p50_us, z.p99_us,
	       z.mean_hits, u.qps, u.p50_us, u.p99_us, u.mean_hits);
	sl_bm25_destroy(x);
	free(words);
	free(cdf);
	return 0;
}
