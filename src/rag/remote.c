/* remote.c - PostgreSQL and HTTP retrievers; see remote.h. */
#include "rag/remote.h"
#include <curl/curl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/dynbuf.h"

static __thread char last_err[512];

const char *sl_remote_last_error(void)
{
	return last_err;
}

static int fail(const char *fmt, const char *a, const char *b)
{
	snprintf(last_err, sizeof last_err, fmt, a ? a : "", b ? b : "");
	/* libpq messages end with a newline */
	size_t n = strlen(last_err);
	while (n && (last_err[n - 1] == '\n' || last_err[n - 1] == '\r'))
		last_err[--n] = '\0';
	return SL_EUPSTREAM;
}

static void release_hits(void *state, sl_hit *hits, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		free((char *)hits[i].doc_id);
		free((char *)hits[i].text);
	}
}

/* ------------------------------------------------------------ PostgreSQL */

typedef struct pg_state {
	char *conninfo;
	char *sql;            /* the query, identifiers quoted */
	char *language;
	unsigned pool_max;
	uint32_t timeout_ms;
	pthread_mutex_t mx;
	PGconn **idle;        /* connections not in use */
	unsigned n_idle;
} pg_state;

static PGconn *pg_connect(pg_state *s)
{
	char to[32];
	snprintf(to, sizeof to, "%u", (s->timeout_ms + 999) / 1000);
	const char *keys[] = {"dbname", "connect_timeout", NULL};
	const char *vals[] = {s->conninfo, to, NULL};
	PGconn *c = PQconnectdbParams(keys, vals, 1); /* dbname may be a conninfo */
	if (PQstatus(c) != CONNECTION_OK)
		return c;
	char set[64];
	snprintf(set, sizeof set, "SET statement_timeout = %u", s->timeout_ms);
	PGresult *r = PQexec(c, set);
	PQclear(r);
	return c;
}

static PGconn *pg_take(pg_state *s)
{
	pthread_mutex_lock(&s->mx);
	PGconn *c = s->n_idle ? s->idle[--s->n_idle] : NULL;
	pthread_mutex_unlock(&s->mx);
	return c;
}

static void pg_give(pg_state *s, PGconn *c)
{
	if (PQstatus(c) != CONNECTION_OK) {
		PQfinish(c); /* a broken connection is not kept: the next search reconnects */
		return;
	}
	pthread_mutex_lock(&s->mx);
	if (s->n_idle < s->pool_max) {
		s->idle[s->n_idle++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&s->mx);
	if (c)
		PQfinish(c);
}

static int pg_search(void *state, const char *q, size_t qlen, unsigned k, sl_hit *hits,
                     unsigned *n_hits)
{
	pg_state *s = state;
	*n_hits = 0;
	last_err[0] = '\0';
	PGconn *c = pg_take(s);
	if (!c) {
		c = pg_connect(s);
		if (PQstatus(c) != CONNECTION_OK) {
			int rc = fail("pg: %s%s", PQerrorMessage(c), NULL);
			PQfinish(c);
			return rc;
		}
	}
	char *query = malloc(qlen + 1);
	if (!query) {
		pg_give(s, c);
		return SL_ENOMEM;
	}
	memcpy(query, q, qlen);
	query[qlen] = '\0';
	/* a NUL inside the query ends it: libpq takes C strings */
	char kbuf[16];
	snprintf(kbuf, sizeof kbuf, "%u", k);
	const char *params[3] = {query, kbuf, s->language};
	PGresult *r = PQexecParams(c, s->sql, 3, NULL, params, NULL, NULL, 0);
	free(query);
	int rc = SL_OK;
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		rc = fail("pg: %s%s", PQresultErrorMessage(r), NULL);
		if (!last_err[4])
			rc = fail("pg: %s%s", PQerrorMessage(c), NULL);
	} else {
		int n = PQntuples(r);
		for (int i = 0; i < n && (unsigned)i < k; i++) {
			hits[i].doc_id = strdup(PQgetvalue(r, i, 0));
			hits[i].text = strdup(PQgetvalue(r, i, 1));
			hits[i].text_len = hits[i].text ? strlen(hits[i].text) : 0;
			hits[i].score = strtod(PQgetvalue(r, i, 2), NULL);
			*n_hits = (unsigned)i + 1;
			if (!hits[i].doc_id || !hits[i].text) {
				release_hits(s, hits, *n_hits);
				*n_hits = 0;
				rc = SL_ENOMEM;
				break;
			}
		}
	}
	PQclear(r);
	pg_give(s, c);
	return rc;
}

static void pg_destroy(void *state)
{
	pg_state *s = state;
	for (unsigned i = 0; i < s->n_idle; i++)
		PQfinish(s->idle[i]);
	pthread_mutex_destroy(&s->mx);
	free(s->idle);
	free(s->conninfo);
	free(s->sql);
	free(s->language);
	free(s);
}

static const sl_retriever_ops pg_ops = {
	.name = "pg", .search = pg_search, .release = release_hits, .destroy = pg_destroy};

/* "name" as a quoted SQL identifier ("a""b"); dotted names (schema.table)
 * quote each part. */
static int quote_ident(sl_dynbuf *b, const char *name)
{
	int rc = SL_OK;
	const char *p = name;
	while (rc == SL_OK) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		if (n == 0)
			return SL_EINVAL;
		rc = sl_dynbuf_add(b, "\"", 1);
		for (size_t i = 0; i < n && rc == SL_OK; i++)
			rc = p[i] == '"' ? sl_dynbuf_add(b, "\"\"", 2) : sl_dynbuf_add(b, &p[i], 1);
		if (rc == SL_OK)
			rc = sl_dynbuf_add(b, "\"", 1);
		if (!dot)
			break;
		if (rc == SL_OK)
			rc = sl_dynbuf_add(b, ".", 1);
		p = dot + 1;
	}
	return rc;
}

int sl_pg_retriever(const sl_pg_opts *o, sl_retriever *out, char *err, size_t errlen)
{
	if (!o || !out || !o->conninfo || !o->table) {
		snprintf(err, errlen, "pg retriever: conninfo and table are required");
		return SL_EINVAL;
	}
	pg_state *s = calloc(1, sizeof *s);
	if (!s)
		return SL_ENOMEM;
	s->pool_max = o->pool ? o->pool : 4;
	s->timeout_ms = o->timeout_ms ? o->timeout_ms : 2000;
	s->conninfo = strdup(o->conninfo);
	s->language = strdup(o->language ? o->language : "english");
	s->idle = calloc(s->pool_max, sizeof *s->idle);
	pthread_mutex_init(&s->mx, NULL);
	/* SELECT id::text, text::text, ts_rank_cd(V, q) FROM T,
	 *   websearch_to_tsquery($3::regconfig, $1) q WHERE V @@ q
	 *   ORDER BY 3 DESC LIMIT $2::int
	 * V = the tsvector column, or to_tsvector($3::regconfig, text) */
	sl_dynbuf b, v;
	sl_dynbuf_init(&b, 1u << 16);
	sl_dynbuf_init(&v, 1u << 16);
	int rc = SL_OK;
	if (o->tsv_column) {
		rc = quote_ident(&v, o->tsv_column);
	} else {
		rc = sl_dynbuf_addstr(&v, "to_tsvector($3::regconfig, ");
		if (rc == SL_OK)
			rc = quote_ident(&v, o->text_column ? o->text_column : "text");
		if (rc == SL_OK)
			rc = sl_dynbuf_addstr(&v, ")");
	}
	if (rc == SL_OK)
		rc = sl_dynbuf_addstr(&b, "SELECT ");
	if (rc == SL_OK)
		rc = quote_ident(&b, o->id_column ? o->id_column : "id");
	if (rc == SL_OK)
		rc = sl_dynbuf_addstr(&b, "::text, ");
	if (rc == SL_OK)
		rc = quote_ident(&b, o->text_column ? o->text_column : "text");
	if (rc == SL_OK)
		rc = sl_dynbuf_printf(&b, "::text, ts_rank_cd(%s, q) FROM ", sl_dynbuf_str(&v));
	if (rc == SL_OK)
		rc = quote_ident(&b, o->table);
	if (rc == SL_OK)
		rc = sl_dynbuf_printf(&b, ", websearch_to_tsquery($3::regconfig, $1) q WHERE %s @@ q "
		                          "ORDER BY 3 DESC LIMIT $2::int",
		                      sl_dynbuf_str(&v));
	if (rc == SL_OK && (!s->conninfo || !s->language || !s->idle))
		rc = SL_ENOMEM;
	if (rc == SL_OK) {
		size_t len;
		s->sql = sl_dynbuf_take(&b, &len);
		if (!s->sql)
			rc = SL_ENOMEM;
	}
	sl_dynbuf_free(&b);
	sl_dynbuf_free(&v);
	if (rc != SL_OK) {
		snprintf(err, errlen, "pg retriever: %s", rc == SL_EINVAL ? "bad identifier"
		                                                          : sl_strerror(rc));
		pg_destroy(s);
		return rc;
	}
	out->ops = &pg_ops;
	out->state = s;
	return SL_OK;
}

/* ------------------------------------------------------------ HTTP */

typedef struct http_state {
	char *url;
	uint32_t timeout_ms;
} http_state;

static size_t sink(char *p, size_t sz, size_t n, void *u)
{
	return sl_dynbuf_add(u, p, sz * n) == SL_OK ? sz * n : 0;
}

/* One curl handle per pool thread (keep-alive to the endpoint), freed when
 * the thread exits. */
static pthread_key_t easy_key;
static pthread_once_t easy_once = PTHREAD_ONCE_INIT;

static void easy_free(void *e)
{
	curl_easy_cleanup(e);
}

static void easy_key_init(void)
{
	pthread_key_create(&easy_key, easy_free);
}

static CURL *thread_easy(void)
{
	pthread_once(&easy_once, easy_key_init);
	CURL *e = pthread_getspecific(easy_key);
	if (!e && (e = curl_easy_init()) && pthread_setspecific(easy_key, e) != 0) {
		curl_easy_cleanup(e);
		e = NULL;
	}
	return e;
}

static int http_search(void *state, const char *q, size_t qlen, unsigned k, sl_hit *hits,
                       unsigned *n_hits)
{
	http_state *s = state;
	*n_hits = 0;
	last_err[0] = '\0';
	CURL *easy = thread_easy();
	if (!easy)
		return SL_ENOMEM;
	json_t *req = json_pack("{s:s%, s:i}", "query", q, qlen, "k", (int)k);
	char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!body)
		return fail("http retriever: the query is not valid UTF-8%s%s", NULL, NULL);
	sl_dynbuf resp;
	sl_dynbuf_init(&resp, 16u << 20);
	struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/json");
	curl_easy_reset(easy);
	curl_easy_setopt(easy, CURLOPT_URL, s->url);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, &resp);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)s->timeout_ms);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	CURLcode cc = curl_easy_perform(easy);
	long code = 0;
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
	curl_slist_free_all(hl);
	free(body);
	int rc = SL_OK;
	if (cc != CURLE_OK) {
		rc = fail("http retriever: %s%s", curl_easy_strerror(cc), NULL);
	} else if (code != 200) {
		char cs[16];
		snprintf(cs, sizeof cs, "%ld", code);
		rc = fail("http retriever: status %s%s", cs, NULL);
	} else {
		json_error_t je;
		json_t *doc = json_loadb(sl_dynbuf_str(&resp), resp.len, 0, &je);
		if (!json_is_array(doc)) {
			rc = fail("http retriever: expected a JSON array of {id, text, score}: %s%s",
			          doc ? "not an array" : je.text, NULL);
		} else {
			size_t i;
			json_t *h;
			json_array_foreach(doc, i, h) {
				if (i >= k)
					break;
				const char *id = json_string_value(json_object_get(h, "id"));
				const char *tx = json_string_value(json_object_get(h, "text"));
				json_t *sc = json_object_get(h, "score");
				if (!id || !tx) {
					release_hits(s, hits, *n_hits);
					*n_hits = 0;
					rc = fail("http retriever: entry without string id and text%s%s", NULL,
					          NULL);
					break;
				}
				hits[i].doc_id = strdup(id);
				hits[i].text = strdup(tx);
				hits[i].text_len = hits[i].text ? strlen(hits[i].text) : 0;
				hits[i].score = json_is_number(sc) ? json_number_value(sc) : 0;
				*n_hits = (unsigned)i + 1;
				if (!hits[i].doc_id || !hits[i].text) {
					release_hits(s, hits, *n_hits);
					*n_hits = 0;
					rc = SL_ENOMEM;
					break;
				}
			}
		}
		json_decref(doc);
	}
	sl_dynbuf_free(&resp);
	return rc;
}

static void http_destroy(void *state)
{
	http_state *s = state;
	free(s->url);
	free(s);
}

static const sl_retriever_ops http_ops = {
	.name = "http", .search = http_search, .release = release_hits, .destroy = http_destroy};

int sl_http_retriever(const sl_http_retriever_opts *o, sl_retriever *out, char *err,
                      size_t errlen)
{
	if (!o || !out || !o->url) {
		snprintf(err, errlen, "http retriever: url is required");
		return SL_EINVAL;
	}
	http_state *s = calloc(1, sizeof *s);
	if (!s || !(s->url = strdup(o->url))) {
		free(s);
		return SL_ENOMEM;
	}
	s->timeout_ms = o->timeout_ms ? o->timeout_ms : 2000;
	out->ops = &http_ops;
	out->state = s;
	return SL_OK;
}
