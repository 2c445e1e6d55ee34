/* fuzz_bm25_load.c - libFuzzer harness for the BM25 index loader
 * (src/rag/bm25.c): arbitrary bytes must give SL_OK or SL_EINVAL with a
 * message, never a crash, a leak or an out-of-bounds read.
 *
 * Each input is loaded twice:
 *   1. as a file image, checksum included (sl_bm25_load_buf): what a
 *      corrupt or truncated file meets;
 *   2. with the checksum recomputed and the check skipped
 *      (sl__bm25_open_image with verify off), so that mutations reach the
 *      structural checks behind it (offsets, counts, postings order,
 *      UTF-8 of ids and texts, duplicate terms).
 * Whatever loads is searched with queries taken from the input and with
 * every term of its dictionary, and every hit is checked to lie inside the
 * image.  Build: cmake -DSLUICE_FUZZ=ON (cmake/parts/80-rag.cmake); corpus:
 * fuzz/corpus/bm25_load (real saved indexes). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "rag/bm25.h"
#include "rag/bm25_int.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static void exercise(sl_bm25 *x, const uint8_t *data, size_t size)
{
	sl_hit hits[8];
	unsigned n;
	const char *lo = (const char *)x->img, *hi = lo + x->img_len;
	size_t ql = size < 64 ? size : 64;
	CHECK(sl_bm25_search(x, (const char *)data + (size - ql), ql, 8, hits, &n) == SL_OK);
	for (uint64_t t = 0; t < x->n_terms && t < 64; t++) {
		const bm25_term *tr = &x->terms[t];
		CHECK(sl_bm25_search(x, x->strings + tr->str_off, tr->str_len, 8, hits, &n) == SL_OK);
		for (unsigned i = 0; i < n; i++) {
			CHECK(hits[i].doc_id >= lo && hits[i].doc_id < hi);
			CHECK(hits[i].text >= lo && hits[i].text + hits[i].text_len < hi);
			CHECK(hits[i].score == hits[i].score); /* not NaN */
			if (i)
				CHECK(hits[i - 1].score >= hits[i].score);
		}
	}
	sl_bm25_stats st;
	sl_bm25_get_stats(x, &st);
	CHECK(st.file_bytes == x->img_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sl_bm25 *x = NULL;
	sl_bm25_report rep;
	int rc = sl_bm25_load_buf(data, size, &x, &rep);
	CHECK(rc == SL_OK || rc == SL_EINVAL);
	if (rc == SL_OK) {
		exercise(x, data, size);
		sl_bm25_destroy(x);
	} else {
		CHECK(rep.err[0]);
	}

	unsigned char *img = malloc(size ? size : 1);
	CHECK(img);
	if (size)
		memcpy(img, data, size);
	char err[200];
	rc = sl__bm25_open_image(img, size, 0, 0, &x, err, sizeof err);
	CHECK(rc == SL_OK || rc == SL_EINVAL);
	if (rc == SL_OK) {
		exercise(x, data, size);
		sl_bm25_destroy(x); /* frees img */
	} else {
		free(img);
	}
	return 0;
}
