/* retrieve.c - `sluice retrieve`: search a corpus with the built-in BM25
 * index (src/rag/bm25.h) from the command line.
 *
 *   sluice retrieve --corpus DIR|FILE [--k N] [--save FILE] QUERY...
 *   sluice retrieve --index FILE [--k N] QUERY...
 *   sluice retrieve --corpus DIR|FILE --save FILE          (build and save only)
 *
 * Output: the ranked hits as one JSON array on stdout,
 * [{"id": "docs/api.md#3", "score": 7.25, "text": "..."}], best first.
 * Warnings (skipped files, repaired UTF-8, bad JSONL lines), progress while
 * indexing a large corpus, and a one-line summary go to stderr.
 * Exit status: 0 ok (also when nothing matches: "[]"); 1 the corpus or the
 * index could not be used (the message says why); 2 a usage error. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "core/dynbuf.h"
#include "rag/bm25.h"

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: sluice retrieve --corpus DIR|FILE [--save FILE] [options] QUERY...\n"
	        "       sluice retrieve --index FILE [options] QUERY...\n"
	        "\n"
	        "Prints the best chunks for QUERY as JSON: [{\"id\",\"score\",\"text\"}].\n"
	        "  --corpus P       index a directory (its .md/.markdown/.txt files, recursively),\n"
	        "                   a JSONL file ({\"id\",\"text\",\"meta\"} per line) or one .md/.txt file\n"
	        "  --index FILE     load a saved index instead of --corpus\n"
	        "  --save FILE      write the index built from --corpus (QUERY then optional)\n"
	        "  --k N            number of results (default 5, at most %u)\n"
	        "  --k1 X --b X     BM25 parameters (default %.1f and %.2f)\n"
	        "  --stopwords      drop English stop words (when building)\n"
	        "  --chunk-words N  --chunk-bytes N  --overlap N   chunking (default %u, %u, %u)\n"
	        "  --pretty         indented JSON\n"
	        "  --quiet          no summary or progress on stderr (warnings stay)\n"
	        "Exit status: 0 ok, 1 corpus or index error, 2 usage error.\n",
	        SL_BM25_MAX_K, SL_BM25_DEFAULT_K1, SL_BM25_DEFAULT_B, SL_BM25_DEFAULT_CHUNK_WORDS,
	        SL_BM25_DEFAULT_CHUNK_BYTES, SL_BM25_DEFAULT_OVERLAP_WORDS);
}

static void warn_stderr(void *arg, const char *msg)
{
	(void)arg;
	fprintf(stderr, "sluice retrieve: warning: %s\n", msg);
}

static int parse_u(const char *s, unsigned long min, unsigned long max, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || v < min || v > max)
		return -1;
	*out = (unsigned)v;
	return 0;
}

static int parse_d(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end)
		return -1;
	*out = v;
	return 0;
}

int sl_cli_retrieve(int argc, char **argv)
{
	const char *corpus = NULL, *index = NULL, *save = NULL;
	unsigned k = 5;
	int pretty = 0, quiet = 0, have_k1 = 0, have_b = 0;
	double k1 = SL_BM25_DEFAULT_K1, bb = SL_BM25_DEFAULT_B;
	sl_bm25_opts o;
	sl_bm25_opts_default(&o);
	sl_dynbuf q;
	sl_dynbuf_init(&q, 1u << 20);
	int rc = 2;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDV()                                                                   \
	do {                                                                          \
		if (!v) {                                                                 \
			fprintf(stderr, "sluice retrieve: %s needs a value\n", a);           \
			goto usage_err;                                                       \
		}                                                                         \
		i++;                                                                      \
	} while (0)
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			rc = 0;
			goto out;
		} else if (strcmp(a, "--corpus") == 0) {
			NEEDV();
			corpus = v;
		} else if (strcmp(a, "--index") == 0) {
			NEEDV();
			index = v;
		} else if (strcmp(a, "--save") == 0) {
			NEEDV();
			save = v;
		} else if (strcmp(a, "--k") == 0 || strcmp(a, "-k") == 0) {
			NEEDV();
			if (parse_u(v, 1, SL_BM25_MAX_K, &k)) {
				fprintf(stderr, "sluice retrieve: --k wants 1..%u, not '%s'\n", SL_BM25_MAX_K, v);
				goto usage_err;
			}
		} else if (strcmp(a, "--k1") == 0) {
			NEEDV();
			if (parse_d(v, &k1) || !(k1 >= 0 && k1 <= 1000)) {
				fprintf(stderr, "sluice retrieve: --k1 wants 0..1000, not '%s'\n", v);
				goto usage_err;
			}
			have_k1 = 1;
		} else if (strcmp(a, "--b") == 0) {
			NEEDV();
			if (parse_d(v, &bb) || !(bb >= 0 && bb <= 1)) {
				fprintf(stderr, "sluice retrieve: --b wants 0..1, not '%s'\n", v);
				goto usage_err;
			}
			have_b = 1;
		} else if (strcmp(a, "--chunk-words") == 0) {
			NEEDV();
			if (parse_u(v, 1, 1u << 24, &o.chunk_words)) {
				fprintf(stderr, "sluice retrieve: bad --chunk-words '%s'\n", v);
				goto usage_err;
			}
		} else if (strcmp(a, "--chunk-bytes") == 0) {
			NEEDV();
			if (parse_u(v, 64, 1u << 30, &o.chunk_bytes)) {
				fprintf(stderr, "sluice retrieve: --chunk-bytes wants at least 64, not '%s'\n", v);
				goto usage_err;
			}
		} else if (strcmp(a, "--overlap") == 0) {
			NEEDV();
			if (parse_u(v, 0, 1u << 24, &o.overlap_words)) {
				fprintf(stderr, "sluice retrieve: bad --overlap '%s'\n", v);
				goto usage_err;
			}
		} else if (strcmp(a, "--stopwords") == 0) {
			o.stopwords = 1;
		} else if (strcmp(a, "--pretty") == 0) {
			pretty = 1;
		} else if (strcmp(a, "--quiet") == 0) {
			quiet = 1;
		} else if (strcmp(a, "--") == 0) {
			for (i++; i < argc; i++)
				if ((q.len && sl_dynbuf_add(&q, " ", 1)) || sl_dynbuf_addstr(&q, argv[i]))
					goto qtoobig;
			break;
		} else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "sluice retrieve: unknown option '%s'\n", a);
			goto usage_err;
		} else {
			if ((q.len && sl_dynbuf_add(&q, " ", 1)) || sl_dynbuf_addstr(&q, a))
				goto qtoobig;
		}
#undef NEEDV
	}
	if (!corpus == !index) {
		fprintf(stderr, "sluice retrieve: give exactly one of --corpus and --index\n");
		goto usage_err;
	}
	if (save && !corpus) {
		fprintf(stderr, "sluice retrieve: --save needs --corpus\n");
		goto usage_err;
	}
	if (!q.len && !save) {
		fprintf(stderr, "sluice retrieve: no QUERY\n");
		goto usage_err;
	}
	if (o.overlap_words >= o.chunk_words) {
		fprintf(stderr, "sluice retrieve: --overlap must be below --chunk-words\n");
		goto usage_err;
	}
	o.k1 = k1;
	o.b = bb;
	o.warn = warn_stderr;
	if (!quiet)
		o.progress = sl_bm25_progress_stderr;

	sl_bm25 *idx = NULL;
	sl_bm25_report rep;
	rc = 1;
	if (corpus) {
		int r = sl_bm25_build(corpus, &o, &idx, &rep);
		if (r != SL_OK) {
			fprintf(stderr, "sluice retrieve: %s\n", rep.err[0] ? rep.err : sl_strerror(r));
			goto out;
		}
		if (!quiet)
			fprintf(stderr,
			        "sluice retrieve: indexed %llu chunks from %llu documents (%.1f MB; %llu "
			        "files skipped, %llu lines skipped, %llu documents with invalid UTF-8 "
			        "repaired)\n",
			        (unsigned long long)rep.chunks, (unsigned long long)rep.docs,
			        rep.bytes_read / 1e6, (unsigned long long)rep.files_skipped,
			        (unsigned long long)rep.lines_skipped, (unsigned long long)rep.docs_repaired);
		if (save) {
			r = sl_bm25_save(idx, save, &rep);
			if (r != SL_OK) {
				fprintf(stderr, "sluice retrieve: cannot save the index: %s\n", rep.err);
				goto out_idx;
			}
			if (!quiet) {
				sl_bm25_stats st;
				sl_bm25_get_stats(idx, &st);
				fprintf(stderr, "sluice retrieve: saved %s (%llu bytes)\n", save,
				        (unsigned long long)st.file_bytes);
			}
		}
	} else {
		int r = sl_bm25_load(index, &idx, &rep);
		if (r != SL_OK) {
			fprintf(stderr, "sluice retrieve: cannot load the index: %s\n",
			        rep.err[0] ? rep.err : sl_strerror(r));
			goto out;
		}
		if (have_k1 || have_b) {
			sl_bm25_stats st;
			sl_bm25_get_stats(idx, &st);
			sl_bm25_set_params(idx, have_k1 ? k1 : st.k1, have_b ? bb : st.b);
		}
	}
	if (!q.len) {
		rc = 0;
		goto out_idx;
	}
	sl_hit *hits = calloc(k, sizeof *hits);
	unsigned n = 0;
	if (!hits || sl_bm25_search(idx, q.p, q.len, k, hits, &n) != SL_OK) {
		fprintf(stderr, "sluice retrieve: search failed: out of memory\n");
		free(hits);
		goto out_idx;
	}
	json_t *arr = json_array();
	for (unsigned i = 0; arr && i < n; i++) {
		json_t *h = json_object();
		if (!h || json_object_set_new(h, "id", json_string(hits[i].doc_id)) ||
		    json_object_set_new(h, "score", json_real(hits[i].score)) ||
		    json_object_set_new(h, "text", json_stringn(hits[i].text, hits[i].text_len)) ||
		    json_array_append_new(arr, h)) {
			json_decref(arr);
			arr = NULL;
		}
	}
	free(hits);
	if (!arr || json_dumpf(arr, stdout, (pretty ? JSON_INDENT(2) : JSON_COMPACT) |
	                                        JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10)) != 0) {
		fprintf(stderr, "sluice retrieve: cannot write the results\n");
		json_decref(arr);
		goto out_idx;
	}
	json_decref(arr);
	fputc('\n', stdout);
	rc = fflush(stdout) == 0 ? 0 : 1;
out_idx:
	sl_bm25_destroy(idx);
out:
	sl_dynbuf_free(&q);
	return rc;
qtoobig:
	fprintf(stderr, "sluice retrieve: QUERY longer than 1 MiB\n");
usage_err:
	usage(stderr);
	rc = 2;
	goto out;
}
