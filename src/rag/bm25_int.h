/* bm25_int.h - internals of the BM25 index shared by bm25.c (image, load,
 * search), bm25_build.c (builder, corpus readers) and tokenize.c, and
 * visible to the unit test and the fuzzer.
 *
 * The index lives in one "image": exactly the bytes of the saved file,
 * either malloc'd (just built, or loaded from a buffer) or mmap'd (loaded
 * from a file).  Little-endian, every section 8-byte aligned:
 *
 *   header   128 bytes (bm25_hdr)
 *   terms    n_terms  x 24 (bm25_term)     term dictionary, in first-seen order
 *   chunks   n_chunks x 32 (bm25_chunk)
 *   postings n_postings x 8 (bm25_posting) grouped by term, chunk ascending
 *   strings  strings_len bytes: term bytes, then chunk ids and texts (each
 *            followed by a NUL)
 *
 * The checksum is XXH64 (seed 0) of the whole file with the checksum field
 * left out (bytes [0,120) then [128,file_len)).  Nothing in the file is
 * trusted before validation (sl__bm25_open_image): a file that passes has
 * every offset, count and order checked, so search cannot read outside it.
 * The term hash table is not stored: it is rebuilt at load (XXH3-64). */
#ifndef SL_RAG_BM25_INT_H
#define SL_RAG_BM25_INT_H
#include <stddef.h>
#include <stdint.h>
#include "rag/bm25.h"

#define SL_BM25_MAGIC "SLBM25IX"
#define SL_BM25_ENDIAN 0x01020304u
#define SL_BM25_HDR_SIZE 128u
#define SL_BM25_CHECKSUM_OFF 120u
#define SL_BM25_FLAG_STOPWORDS 1u

typedef struct bm25_hdr {
	char magic[8];
	uint32_t version, header_size, flags, endian;
	double k1, b;
	uint64_t n_chunks, n_terms, n_postings, total_tokens;
	uint64_t terms_off, chunks_off, postings_off, strings_off, strings_len;
	uint64_t file_len;
	uint64_t checksum;
} bm25_hdr;

typedef struct bm25_term {
	uint64_t str_off;  /* in strings */
	uint32_t str_len;  /* 1..SL_BM25_MAX_TERM_BYTES */
	uint32_t df;       /* >= 1: postings of this term */
	uint64_t post_off; /* index of its first posting (== sum of previous dfs) */
} bm25_term;

typedef struct bm25_chunk {
	uint64_t text_off, id_off; /* in strings; each followed by a NUL */
	uint32_t text_len, id_len;
	uint32_t ntok;             /* length in tokens, |D| */
	uint32_t doc;              /* ordinal of its document */
} bm25_chunk;

typedef struct bm25_posting {
	uint32_t chunk; /* < n_chunks, strictly increasing within a term */
	uint32_t tf;    /* >= 1 */
} bm25_posting;

_Static_assert(sizeof(bm25_hdr) == SL_BM25_HDR_SIZE, "header layout");
_Static_assert(sizeof(bm25_term) == 24, "term layout");
_Static_assert(sizeof(bm25_chunk) == 32, "chunk layout");
_Static_assert(sizeof(bm25_posting) == 8, "posting layout");

struct sl_bm25 {
	unsigned char *img;   /* the image (owned: malloc'd, or the mapping) */
	size_t img_len;
	int mapped;           /* 1: munmap(img, img_len); 0: free(img) */
	const bm25_term *terms;
	const bm25_chunk *chunks;
	const bm25_posting *post;
	const char *strings;
	uint64_t n_chunks, n_terms, n_postings, total_tokens;
	double avgdl, k1, b;
	int stopwords;
	double *norm;         /* per chunk: k1 * (1 - b + b * |D| / avgdl) */
	uint64_t *slots;      /* hash table: (hash & ~0xffffffff) | (term + 1); 0 = empty */
	uint64_t mask;        /* slots - 1 */
};

/* Validates img (len bytes, 8-byte aligned; ownership passes to the index
 * on success only) and opens it.  verify_checksum 0 skips the checksum
 * (the fuzzer uses that to reach the structural checks).  SL_EINVAL with
 * err filled on any inconsistency. */
int sl__bm25_open_image(unsigned char *img, size_t len, int mapped, int verify_checksum,
                        sl_bm25 **out, char *err, size_t errlen);
uint64_t sl__bm25_checksum(const unsigned char *img, size_t len);
uint64_t sl__bm25_hash(const char *s, size_t n);

/* Stop words (sorted) and lookup. */
extern const char *const sl__bm25_stopwords[];
extern const size_t sl__bm25_n_stopwords;
int sl__bm25_is_stopword(const char *t, size_t n);

/* Copy of s with every byte that is not part of a valid UTF-8 sequence
 * replaced with U+FFFD; NUL-terminated, *out_len bytes; *n_bad = bytes
 * replaced.  NULL on allocation failure. */
char *sl__bm25_utf8_repair(const char *s, size_t len, size_t *out_len, size_t *n_bad);

#endif
