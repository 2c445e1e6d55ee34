/*
 * retriever.h - the retriever interface: a function-pointer table (like the
 * worker table) so that the RAG stage can search any document store — the
 * built-in BM25 index (rag/bm25.h) or one a user supplies.
 *
 * A retriever is a pair (ops, state).  ops is a static, immutable table;
 * state is whatever the implementation needs, created by the implementation's
 * own constructor (for BM25: sl_bm25_retriever()) and freed by ops->destroy.
 *
 * Synchronous contract.  search() runs on the calling thread and returns
 * when the hits are ready.  That is right for the built-in index: it is
 * in memory, CPU-bound and fast (tens to hundreds of microseconds per query
 * on 100,000 chunks, see bench/retrieve.c), so the RAG stage may call it on
 * a shard's loop thread.  A retriever that does I/O (a database, a remote
 * vector store) must not be called on a loop thread: run it on the blocking
 * thread pool (src/shard/pool.h) and post the result back.
 *
 * Threading: an implementation's search() must be safe to call from several
 * threads at once on the same state (the BM25 index is read-only after
 * construction, so it is); destroy() must not run concurrently with any
 * search() on that state.
 */
#ifndef SL_RAG_RETRIEVER_H
#define SL_RAG_RETRIEVER_H
#include <stddef.h>
#include "sluice/sluice.h"

/* One search result.  The strings belong to the retriever: they stay valid
 * until ops->release(state, hits, n) is called for this batch (when the ops
 * have a release hook) or else until ops->destroy(state).  text is not
 * necessarily NUL-terminated: use text_len; doc_id is NUL-terminated.  Both
 * are valid UTF-8. */
typedef struct sl_hit {
	const char *doc_id; /* e.g. "docs/api.md#3": source id + '#' + chunk number */
	const char *text;   /* the chunk's text */
	size_t text_len;    /* bytes of text */
	double score;       /* higher is better; the scale is the retriever's own */
} sl_hit;

typedef struct sl_retriever_ops {
	const char *name; /* "bm25", ...: for logs and configuration */

	/* Finds the best k chunks for the query (qlen bytes, need not be
	 * NUL-terminated nor valid UTF-8).  Fills hits[0 .. *n_hits) best first
	 * (*n_hits <= k; 0 when nothing matches, which is not an error).  hits
	 * must have room for k entries.  Returns SL_OK, SL_EINVAL (NULL
	 * arguments), SL_ENOMEM, or an implementation's error; on error
	 * *n_hits is 0 and nothing needs releasing.  Any thread (see above). */
	int (*search)(void *state, const char *query, size_t qlen, unsigned k,
	              sl_hit *hits, unsigned *n_hits);

	/* Optional (may be NULL): gives back the strings of one search's hits,
	 * for retrievers that make fresh strings per search.  Called once per
	 * successful search with the same hits and count, once the caller has
	 * copied what it needs. */
	void (*release)(void *state, sl_hit *hits, unsigned n_hits);

	/* Frees the state.  No search may be running or follow. */
	void (*destroy)(void *state);
} sl_retriever_ops;

typedef struct sl_retriever {
	const sl_retriever_ops *ops;
	void *state;
} sl_retriever;

/* Convenience wrappers (any thread, same contracts as the ops). */
static inline int sl_retriever_search(const sl_retriever *r, const char *query, size_t qlen,
                                      unsigned k, sl_hit *hits, unsigned *n_hits)
{
	if (n_hits)
		*n_hits = 0;
	if (!r || !r->ops || !r->ops->search)
		return SL_EINVAL;
	return r->ops->search(r->state, query, qlen, k, hits, n_hits);
}

static inline void sl_retriever_release(const sl_retriever *r, sl_hit *hits, unsigned n_hits)
{
	if (r && r->ops && r->ops->release && n_hits)
		r->ops->release(r->state, hits, n_hits);
}

/* Destroys the state and clears *r.  NULL, or an empty r, is a no-op. */
static inline void sl_retriever_destroy(sl_retriever *r)
{
	if (!r || !r->ops)
		return;
	if (r->ops->destroy)
		r->ops->destroy(r->state);
	r->ops = NULL;
	r->state = NULL;
}

#endif
