/* remote.h - retrievers that do I/O: PostgreSQL full-text search (libpq)
 * and an HTTP endpoint (any vector database behind a small adapter).
 *
 * Their search() blocks (a query round trip), so the retrieval stage runs
 * them on its own bounded thread pool (sl_retrieve_cfg.threads > 0), never
 * on a shard loop.  Both are safe to call from several threads at once.
 * Hits are heap copies, freed by the retriever's release().
 *
 * Failures are reported as SL_EUPSTREAM with a sentence in the retriever's
 * last-error text for that thread (sl_remote_last_error()), e.g.
 * "pg: connection to server at 127.0.0.1:5432 failed: Connection refused".
 */
#ifndef SL_RAG_REMOTE_H
#define SL_RAG_REMOTE_H
#include <stdint.h>
#include "rag/retriever.h"

typedef struct sl_pg_opts {
	const char *conninfo;     /* libpq connection string (required) */
	const char *table;        /* required */
	const char *id_column;    /* default "id" */
	const char *text_column;  /* default "text" */
	const char *tsv_column;   /* optional precomputed tsvector column */
	const char *language;     /* text search configuration, default "english" */
	unsigned pool;            /* connections kept, default 4 */
	uint32_t timeout_ms;      /* connect and statement timeout, default 2000 */
} sl_pg_opts;

/* Creates the retriever (no connection is made until the first search, so
 * a database that is down at start fails requests with a named reason
 * rather than the start).  SL_EINVAL / SL_ENOMEM. */
int sl_pg_retriever(const sl_pg_opts *o, sl_retriever *out, char *err, size_t errlen);

typedef struct sl_http_retriever_opts {
	const char *url;          /* POST {"query":…,"k":…} -> [{"id","text","score"}] */
	uint32_t timeout_ms;      /* whole call, default 2000 */
} sl_http_retriever_opts;

int sl_http_retriever(const sl_http_retriever_opts *o, sl_retriever *out, char *err,
                      size_t errlen);

/* The failure text of this thread's last failed search ("" if none). */
const char *sl_remote_last_error(void);

#endif
