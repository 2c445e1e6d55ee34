/*
 * bm25.h - the built-in retriever: an in-memory Okapi BM25 inverted index
 * over chunked text documents, saved to and loaded from a versioned binary
 * file.  docs/internals/retrieval.md describes the design and file format.
 *
 * Building.  sl_bm25_build() reads a corpus: a directory (recursively, its
 * .md, .markdown and .txt files, in byte order of their paths, skipping
 * names that start with '.'), a JSONL file (one {"id": "...", "text": "...",
 * "meta": ...} object per line; meta is accepted and ignored), or a single
 * .md/.txt file.  Or feed documents yourself: sl_bm25_builder_*.
 * Each document is cut into chunks: whole paragraphs (blank-line separated)
 * packed up to chunk_words words and chunk_bytes bytes; a paragraph larger
 * than that is cut at word boundaries, and the next piece repeats the last
 * overlap_words words of the previous one.  A chunk's id is the document's
 * id (path relative to the corpus root, or the JSONL id) + "#" + the chunk's
 * number in the document, from 0: "docs/api.md#3".
 *
 * Bad input.  An unreadable file, a file over max_doc_bytes, or a binary
 * file (one containing NUL bytes) is skipped with a warning naming it and
 * counted (report.files_skipped).  Invalid UTF-8 in a document is replaced,
 * byte by byte, with U+FFFD (a warning names the document; counted in
 * report.docs_repaired): the stored text is always valid UTF-8.  A JSONL
 * line that is not a JSON object with string "id" and "text" is skipped with
 * a warning giving its line number (report.lines_skipped).  A corpus with no
 * indexable text is an error (SL_EINVAL, "empty corpus: ...").
 *
 * Tokens: see sl_bm25_tokenize().  Scoring: for query terms q (a repeated
 * query term counts once per occurrence) and a chunk D of |D| tokens,
 *   score(D) = sum_q idf(q) * tf(q,D) * (k1 + 1) / (tf(q,D) + k1 * (1 - b + b * |D| / avgdl))
 *   idf(q)   = ln(1 + (N - df(q) + 0.5) / (df(q) + 0.5))        (Lucene's, never < 0)
 * with N chunks, avgdl their mean length in tokens, all in double precision.
 * Ties are broken by chunk order (earlier document, earlier chunk first).
 *
 * Threading: build, load and save on any thread (they block: file I/O).
 * A finished sl_bm25 is immutable: sl_bm25_search() may run on any number of
 * threads at once (it allocates only per call); sl_bm25_set_params() and
 * sl_bm25_destroy() must not run concurrently with a search.
 */
#ifndef SL_RAG_BM25_H
#define SL_RAG_BM25_H
#include <stddef.h>
#include <stdint.h>
#include "rag/retriever.h"
#include "sluice/sluice.h"

#define SL_BM25_DEFAULT_K1 1.2
#define SL_BM25_DEFAULT_B 0.75
#define SL_BM25_DEFAULT_CHUNK_WORDS 200u
#define SL_BM25_DEFAULT_CHUNK_BYTES 2048u
#define SL_BM25_DEFAULT_OVERLAP_WORDS 20u
#define SL_BM25_DEFAULT_MAX_DOC_BYTES (64u << 20) /* larger files: skipped */
#define SL_BM25_MAX_TERM_BYTES 64u  /* longer tokens are cut to this (at a char boundary) */
#define SL_BM25_MAX_QUERY_TERMS 256u /* further query tokens are ignored */
#define SL_BM25_MAX_K 10000u         /* larger k: SL_EINVAL */
#define SL_BM25_FORMAT_VERSION 1u

typedef struct sl_bm25 sl_bm25;
typedef struct sl_bm25_builder sl_bm25_builder;

/* Progress while building (for a progress line; see sl_bm25_progress_stderr). */
typedef struct sl_bm25_progress {
	uint64_t bytes_done, bytes_total; /* corpus bytes read / to read (0 = unknown) */
	uint64_t docs, chunks;            /* indexed so far */
	uint64_t files_skipped;
	double elapsed_s;
	int final;                        /* 1 on the last call */
} sl_bm25_progress;

typedef struct sl_bm25_opts {
	double k1;               /* default 1.2; >= 0 */
	double b;                /* default 0.75; 0..1 */
	unsigned chunk_words;    /* default 200; >= 1 */
	unsigned chunk_bytes;    /* default 2048; >= 64 */
	unsigned overlap_words;  /* default 20; < chunk_words */
	int stopwords;           /* 1 = drop English stop words (index and query); default 0 */
	uint64_t max_doc_bytes;  /* larger documents/files/lines are skipped; default 64 MiB */
	/* Warnings (skipped file, repaired UTF-8, bad JSONL line): one line
	 * each, e.g. "skipped docs/x.md: Permission denied".  NULL: logged as
	 * level=warn logfmt lines on stderr. */
	void (*warn)(void *arg, const char *msg);
	/* Progress: called at most once a second and at each 10% of the corpus
	 * bytes, then once with final = 1 if it was called before.  NULL: none. */
	void (*progress)(void *arg, const sl_bm25_progress *p);
	void *arg;               /* for warn and progress */
} sl_bm25_opts;

/* What a build/load/save did, and why it failed. */
typedef struct sl_bm25_report {
	char err[256];           /* "" on success; else a sentence naming the file/line */
	uint64_t files_indexed;  /* files (directory corpus) or documents read */
	uint64_t files_skipped;  /* unreadable, too large or binary files */
	uint64_t lines_skipped;  /* bad JSONL lines */
	uint64_t docs_repaired;  /* documents whose invalid UTF-8 was replaced */
	uint64_t docs, chunks;   /* documents and chunks in the index */
	uint64_t bytes_read;     /* corpus bytes */
} sl_bm25_report;

typedef struct sl_bm25_stats {
	uint64_t chunks, terms, postings, total_tokens;
	double avgdl, k1, b;
	int stopwords;
	uint64_t mem_bytes;  /* heap + mapping held by the index (image + dictionary) */
	uint64_t file_bytes; /* size of the saved file (== the image) */
} sl_bm25_stats;

/* Fills o with the defaults above (no callbacks). */
void sl_bm25_opts_default(sl_bm25_opts *o);

/* Writes progress lines ("indexing: 40% 12.0/30.0 MB, 812 docs, 5120
 * chunks, 1.2 s") to stderr; a ready-made opts.progress (arg unused). */
void sl_bm25_progress_stderr(void *arg, const sl_bm25_progress *p);

/* Builds an index from the corpus at path (directory, .jsonl/.ndjson file,
 * or a single .md/.txt file; any other regular file is read as JSONL).
 * opts may be NULL (defaults).  rep may be NULL.  Returns SL_OK and *out, or
 * SL_ENOTFOUND (no such path), SL_EINVAL (bad opts, empty corpus, JSONL with
 * no usable line), SL_ESYS (a directory that cannot be read), SL_ENOMEM,
 * SL_ETOOBIG (over 2^32 chunks or terms); rep->err says why. */
int sl_bm25_build(const char *path, const sl_bm25_opts *opts, sl_bm25 **out,
                  sl_bm25_report *rep);

/* Incremental building.  create copies opts (NULL = defaults); SL_EINVAL
 * on bad values.  add chunks and indexes one document (text: len bytes, any
 * bytes: invalid UTF-8 is replaced, see above; doc_id: NUL-terminated, must
 * not be empty); SL_EINVAL on a bad argument, SL_ETOOBIG past 2^32-1
 * chunks or terms, SL_ENOMEM (the builder then refuses further adds).
 * add_file reads root/relpath as a document with id relpath (skip and
 * warning as above: returns SL_OK with *skipped = 1).  finish turns the
 * builder into an index (SL_EINVAL "empty corpus" when no chunk has a
 * token); the builder must still be destroyed.  One thread at a time. */
int sl_bm25_builder_create(const sl_bm25_opts *opts, sl_bm25_builder **out);
int sl_bm25_builder_add(sl_bm25_builder *b, const char *doc_id, const char *text, size_t len);
int sl_bm25_builder_add_file(sl_bm25_builder *b, const char *root, const char *relpath,
                             int *skipped);
int sl_bm25_builder_finish(sl_bm25_builder *b, sl_bm25 **out, sl_bm25_report *rep);
void sl_bm25_builder_destroy(sl_bm25_builder *b);

/* Saves the index to path: written to path.tmp, fsynced, renamed.  Returns
 * SL_OK or SL_ESYS (rep->err names the file and the errno text). */
int sl_bm25_save(const sl_bm25 *idx, const char *path, sl_bm25_report *rep);

/* Loads a saved index (mmap, read-only, verified: magic, version, sizes,
 * XXH64 checksum, then every offset, count and order before use).  Returns
 * SL_OK and *out; SL_ENOTFOUND (no file), SL_ESYS, SL_EINVAL (not an index,
 * other version, truncated, corrupt: rep->err says which), SL_ENOMEM. */
int sl_bm25_load(const char *path, sl_bm25 **out, sl_bm25_report *rep);

/* The same from len bytes in memory (copied).  Arbitrary bytes give
 * SL_EINVAL, never a crash (fuzz/fuzz_bm25_load.c). */
int sl_bm25_load_buf(const void *buf, size_t len, sl_bm25 **out, sl_bm25_report *rep);

/* Top-k search (see the formula above).  query: qlen bytes, tokenized like
 * the documents.  Fills hits best first; their strings point into the index
 * and stay valid until sl_bm25_destroy().  Returns SL_OK (*n_hits may be 0:
 * no query term in the index), SL_EINVAL (NULL idx/hits/n_hits, k == 0 or
 * k > SL_BM25_MAX_K), SL_ENOMEM.  Any thread, concurrently. */
int sl_bm25_search(const sl_bm25 *idx, const char *query, size_t qlen, unsigned k,
                   sl_hit *hits, unsigned *n_hits);

/* Changes k1 and b (a loaded index starts with the values it was built
 * with).  SL_EINVAL out of range.  Not concurrently with searches. */
int sl_bm25_set_params(sl_bm25 *idx, double k1, double b);

void sl_bm25_get_stats(const sl_bm25 *idx, sl_bm25_stats *st);

/* The whole text of chunk i (0 <= i < stats.chunks) and its id; SL_EINVAL
 * out of range.  Pointers valid until destroy. */
int sl_bm25_chunk(const sl_bm25 *idx, uint64_t i, const char **doc_id, const char **text,
                  size_t *text_len);

/* NULL is a no-op. */
void sl_bm25_destroy(sl_bm25 *idx);

/* Wraps idx as a retriever (ops->name "bm25").  On SL_OK the retriever owns
 * idx (sl_retriever_destroy frees it); on error idx stays the caller's. */
int sl_bm25_retriever(sl_bm25 *idx, sl_retriever *out);
extern const sl_retriever_ops sl_bm25_retriever_ops;

/*
 * Tokenizer ("Unicode-aware", within these limits):
 *  - word characters: ASCII letters and digits, and every non-ASCII code
 *    point except separators; everything else in ASCII separates words;
 *  - separators outside ASCII: U+0080..U+00BF (Latin-1 controls, NBSP,
 *    punctuation and signs), U+00D7, U+00F7, U+2000..U+2BFF (general
 *    punctuation, dashes, quotes, currency, arrows, math and technical
 *    symbols, box drawing, dingbats), U+3000..U+303F (CJK punctuation),
 *    U+FE10..U+FE1F, U+FE30..U+FE6F, U+FF00..U+FF0F, U+FF1A..U+FF20,
 *    U+FF3B..U+FF40, U+FF5B..U+FF65 (full-width punctuation), U+FEFF,
 *    U+FFF0..U+FFFF (U+FFFD, the replacement character, included),
 *    U+1F000..U+1FAFF (emoji and pictographs), and any invalid UTF-8 byte;
 *  - each Han ideograph (U+3400..U+4DBF, U+4E00..U+9FFF, U+F900..U+FAFF,
 *    U+20000..U+2FFFF), Hiragana or Katakana (U+3040..U+30FF) character is a
 *    token by itself, since these scripts do not separate words by spaces;
 *  - case folding: ASCII, Latin-1 (U+00C0..U+00DE but U+00D7), Greek
 *    (U+0391..U+03A9) and Cyrillic (U+0400..U+042F) capitals are lowered;
 *    other scripts are left as they are (no full Unicode case folding, no
 *    normalisation: "é" precomposed and "e" + U+0301 are different terms);
 *  - tokens longer than SL_BM25_MAX_TERM_BYTES are cut to that length;
 *  - with stopwords, a fixed list of ~120 English stop words is dropped.
 * Calls fn(arg, token, len) for each token (lowercased, valid UTF-8, not
 * NUL-terminated) and returns the number of tokens.  Any thread.
 */
size_t sl_bm25_tokenize(const char *text, size_t len, int stopwords,
                        void (*fn)(void *arg, const char *tok, size_t tlen), void *arg);

#endif
