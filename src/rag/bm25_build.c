/* bm25_build.c - building a BM25 index: the builder (chunking, term
 * dictionary, postings) and the corpus readers (directory walk, JSONL).
 * See bm25.h for the contracts, docs/internals/retrieval.md for the design.
 *
 * Memory while building: the term dictionary (an open-addressing hash
 * table keyed by XXH3-64, term bytes in one arena), the chunk records, one
 * arena of chunk ids and texts, and the (term, tf) pairs of every chunk in
 * chunk order.  finish() lays these out as the file image (postings grouped
 * by term with one counting pass: chunk order is kept, so every postings
 * list comes out sorted) and frees them. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "core/log.h"
#include "rag/bm25.h"
#include "rag/bm25_int.h"

typedef struct tc {
	uint32_t term, tf;
} tc;

typedef struct word {
	uint32_t start, end; /* bytes of the document */
	uint32_t pend;       /* index of the first word after its paragraph */
} word;

struct sl_bm25_builder {
	sl_bm25_opts o;
	int broken;         /* an allocation failed: refuse further work */
	int finished;
	/* term dictionary */
	uint64_t *slots;    /* (hash & ~0xffffffff) | (term + 1); 0 = empty */
	uint64_t mask;
	uint64_t *t_off;    /* term bytes in tarena */
	uint32_t *t_len, *t_df, *t_last; /* t_last: chunk + 1 that last saw it */
	uint64_t *t_pos;    /* its tc entry in the current chunk */
	uint64_t n_terms, cap_terms;
	char *tarena;
	uint64_t tarena_len, tarena_cap;
	/* chunks */
	bm25_chunk *chunks; /* offsets into sarena */
	uint64_t *c_tc;     /* first tc entry of each chunk */
	uint64_t n_chunks, cap_chunks;
	char *sarena;
	uint64_t sarena_len, sarena_cap;
	tc *tcs;
	uint64_t n_tcs, cap_tcs;
	uint64_t total_tokens;
	uint64_t n_docs;
	uint32_t cur_ntok;
	/* document scratch */
	word *words;
	size_t cap_words;
	/* report and progress */
	sl_bm25_report rep;
	uint64_t bytes_total;
	double t0, t_last_progress;
	int progress_shown, last_decile;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void warnf(sl_bm25_builder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warnf(sl_bm25_builder *b, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (b->o.warn) {
		b->o.warn(b->o.arg, msg);
	} else {
		char q[600];
		SL_LOG(SL_LOG_WARN, "component=bm25 msg=%s", sl__log_quote(q, sizeof q, msg));
	}
}

static int errf(sl_bm25_report *rep, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int errf(sl_bm25_report *rep, int status, const char *fmt, ...)
{
	if (rep) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(rep->err, sizeof rep->err, fmt, ap);
		va_end(ap);
	}
	return status;
}

/* Grows *p (elements of size el) to hold need elements. */
static int grow(void *pp, uint64_t *cap, uint64_t need, size_t el)
{
	void **p = pp;
	if (need <= *cap)
		return SL_OK;
	uint64_t nc = *cap ? *cap : 64;
	while (nc < need)
		nc *= 2;
	if (nc > SIZE_MAX / el)
		return SL_ENOMEM;
	void *q = realloc(*p, nc * el);
	if (!q)
		return SL_ENOMEM;
	*p = q;
	*cap = nc;
	return SL_OK;
}

void sl_bm25_opts_default(sl_bm25_opts *o)
{
	memset(o, 0, sizeof *o);
	o->k1 = SL_BM25_DEFAULT_K1;
	o->b = SL_BM25_DEFAULT_B;
	o->chunk_words = SL_BM25_DEFAULT_CHUNK_WORDS;
	o->chunk_bytes = SL_BM25_DEFAULT_CHUNK_BYTES;
	o->overlap_words = SL_BM25_DEFAULT_OVERLAP_WORDS;
	o->max_doc_bytes = SL_BM25_DEFAULT_MAX_DOC_BYTES;
}

int sl_bm25_builder_create(const sl_bm25_opts *opts, sl_bm25_builder **out)
{
	sl_bm25_opts o;
	if (opts)
		o = *opts;
	else
		sl_bm25_opts_default(&o);
	if (!out || !isfinite(o.k1) || o.k1 < 0 || o.k1 > 1000 || !isfinite(o.b) || o.b < 0 ||
	    o.b > 1 || o.chunk_words < 1 || o.chunk_bytes < 64 || o.overlap_words >= o.chunk_words ||
	    o.max_doc_bytes == 0 || o.max_doc_bytes > UINT32_MAX - 1)
		return SL_EINVAL;
	sl_bm25_builder *b = calloc(1, sizeof *b);
	if (!b)
		return SL_ENOMEM;
	b->o = o;
	b->mask = 1023;
	b->slots = calloc(b->mask + 1, sizeof *b->slots);
	if (!b->slots) {
		free(b);
		return SL_ENOMEM;
	}
	b->t0 = b->t_last_progress = now_s();
	*out = b;
	return SL_OK;
}

static void free_work(sl_bm25_builder *b)
{
	free(b->slots);
	free(b->t_off);
	free(b->t_len);
	free(b->t_df);
	free(b->t_last);
	free(b->t_pos);
	free(b->tarena);
	free(b->chunks);
	free(b->c_tc);
	free(b->sarena);
	free(b->tcs);
	free(b->words);
	b->slots = NULL;
	b->t_off = b->t_pos = NULL;
	b->t_len = b->t_df = b->t_last = NULL;
	b->tarena = b->sarena = NULL;
	b->chunks = NULL;
	b->c_tc = NULL;
	b->tcs = NULL;
	b->words = NULL;
}

void sl_bm25_builder_destroy(sl_bm25_builder *b)
{
	if (!b)
		return;
	free_work(b);
	free(b);
}

/* ------------------------------------------------------------ dictionary */

static int rehash(sl_bm25_builder *b)
{
	uint64_t n = (b->mask + 1) * 2;
	uint64_t *s = calloc(n, sizeof *s);
	if (!s)
		return SL_ENOMEM;
	for (uint64_t i = 0; i <= b->mask; i++) {
		uint64_t v = b->slots[i];
		if (!v)
			continue;
		uint32_t t = (uint32_t)(v & 0xffffffffu) - 1;
		uint64_t h = sl__bm25_hash(b->tarena + b->t_off[t], b->t_len[t]);
		uint64_t j = h & (n - 1);
		while (s[j])
			j = (j + 1) & (n - 1);
		s[j] = v;
	}
	free(b->slots);
	b->slots = s;
	b->mask = n - 1;
	return SL_OK;
}

/* Returns the term's id (adding it), or -1 on allocation failure / -2 when
 * there are too many terms. */
static int64_t term_id(sl_bm25_builder *b, const char *s, size_t n)
{
	uint64_t h = sl__bm25_hash(s, n);
	uint64_t tag = h & ~(uint64_t)0xffffffffu;
	uint64_t i = h & b->mask;
	for (;; i = (i + 1) & b->mask) {
		uint64_t v = b->slots[i];
		if (!v)
			break;
		if ((v & ~(uint64_t)0xffffffffu) == tag) {
			uint32_t t = (uint32_t)(v & 0xffffffffu) - 1;
			if (b->t_len[t] == n && memcmp(b->tarena + b->t_off[t], s, n) == 0)
				return t;
		}
	}
	if (b->n_terms >= UINT32_MAX - 1)
		return -2;
	uint64_t t = b->n_terms, c = b->cap_terms;
	if (t + 1 > c) {
		uint64_t c1 = c, c2 = c, c3 = c, c4 = c, c5 = c;
		if (grow(&b->t_off, &c1, t + 1, sizeof *b->t_off) || grow(&b->t_len, &c2, t + 1, 4) ||
		    grow(&b->t_df, &c3, t + 1, 4) || grow(&b->t_last, &c4, t + 1, 4) ||
		    grow(&b->t_pos, &c5, t + 1, 8))
			return -1;
		b->cap_terms = c1;
	}
	if (grow(&b->tarena, &b->tarena_cap, b->tarena_len + n, 1))
		return -1;
	memcpy(b->tarena + b->tarena_len, s, n);
	b->t_off[t] = b->tarena_len;
	b->t_len[t] = (uint32_t)n;
	b->t_df[t] = 0;
	b->t_last[t] = 0;
	b->tarena_len += n;
	b->slots[i] = tag | (t + 1);
	b->n_terms++;
	if (b->n_terms * 2 > b->mask + 1 && rehash(b))
		return -1;
	return (int64_t)t;
}

/* ------------------------------------------------------------ chunks */

typedef struct tokctx {
	sl_bm25_builder *b;
	uint32_t chunk1; /* chunk index + 1 */
	int err;
} tokctx;

static void on_tok(void *arg, const char *tok, size_t n)
{
	tokctx *c = arg;
	sl_bm25_builder *b = c->b;
	if (c->err)
		return;
	int64_t t = term_id(b, tok, n);
	if (t < 0) {
		c->err = t == -2 ? SL_ETOOBIG : SL_ENOMEM;
		return;
	}
	b->cur_ntok++;
	if (b->t_last[t] == c->chunk1) {
		b->tcs[b->t_pos[t]].tf++;
		return;
	}
	if (grow(&b->tcs, &b->cap_tcs, b->n_tcs + 1, sizeof *b->tcs)) {
		c->err = SL_ENOMEM;
		return;
	}
	b->t_last[t] = c->chunk1;
	b->t_pos[t] = b->n_tcs;
	b->tcs[b->n_tcs++] = (tc){(uint32_t)t, 1};
	b->t_df[t]++;
}

/* Adds one chunk: text[0..len) of document id, chunk number no.  Returns
 * SL_OK (also when the chunk has no token and is dropped: *added = 0). */
static int add_chunk(sl_bm25_builder *b, const char *id, size_t idlen, uint64_t no,
                     const char *text, size_t len, int *added)
{
	*added = 0;
	if (b->n_chunks >= UINT32_MAX - 1 || len > UINT32_MAX - 1 || idlen > UINT32_MAX - 32)
		return SL_ETOOBIG;
	uint64_t cap = b->cap_chunks;
	if (grow(&b->chunks, &cap, b->n_chunks + 1, sizeof *b->chunks) ||
	    grow(&b->c_tc, &b->cap_chunks, b->n_chunks + 1, sizeof *b->c_tc))
		return SL_ENOMEM;
	uint64_t tc0 = b->n_tcs;
	b->cur_ntok = 0;
	tokctx tk = {b, (uint32_t)b->n_chunks + 1, 0};
	sl_bm25_tokenize(text, len, b->o.stopwords, on_tok, &tk);
	if (tk.err)
		return tk.err;
	if (b->cur_ntok == 0)
		return SL_OK;
	/* strings: "<id>#<no>\0<text>\0" */
	char num[24];
	int nl = snprintf(num, sizeof num, "#%llu", (unsigned long long)no);
	uint64_t need = idlen + (uint64_t)nl + 1 + len + 1;
	if (grow(&b->sarena, &b->sarena_cap, b->sarena_len + need, 1))
		return SL_ENOMEM;
	bm25_chunk *c = &b->chunks[b->n_chunks];
	char *w = b->sarena + b->sarena_len;
	c->id_off = b->sarena_len;
	c->id_len = (uint32_t)(idlen + nl);
	memcpy(w, id, idlen);
	memcpy(w + idlen, num, (size_t)nl + 1);
	c->text_off = b->sarena_len + idlen + nl + 1;
	c->text_len = (uint32_t)len;
	memcpy(w + idlen + nl + 1, text, len);
	w[idlen + nl + 1 + len] = '\0';
	b->sarena_len += need;
	c->ntok = b->cur_ntok;
	c->doc = (uint32_t)b->n_docs;
	b->c_tc[b->n_chunks] = tc0;
	b->total_tokens += b->cur_ntok;
	b->n_chunks++;
	*added = 1;
	return SL_OK;
}

static int is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Splits text into words (whitespace-separated; a run longer than
 * chunk_bytes is cut at character boundaries) and paragraphs (a blank line
 * between two words starts a new one).  Returns the word count or -1. */
static int64_t split_words(sl_bm25_builder *b, const char *t, size_t len)
{
	size_t n = 0, i = 0;
	int para = 1;
	size_t cap = b->cap_words;
	uint64_t cap64 = cap;
	while (i < len) {
		int nls = 0;
		while (i < len && is_ws((unsigned char)t[i])) {
			if (t[i] == '\n')
				nls++;
			i++;
		}
		if (nls >= 2)
			para = 1;
		if (i >= len)
			break;
		size_t s = i;
		while (i < len && !is_ws((unsigned char)t[i]))
			i++;
		size_t e = i;
		while (s < e) {
			size_t pe = e;
			if (pe - s > b->o.chunk_bytes) {
				pe = s + b->o.chunk_bytes;
				while (pe > s + 1 && ((unsigned char)t[pe] & 0xC0) == 0x80)
					pe--; /* back to a character boundary */
			}
			if (grow(&b->words, &cap64, n + 1, sizeof *b->words))
				return -1;
			b->cap_words = (size_t)cap64;
			/* pend is filled below; mark a paragraph start with UINT32_MAX */
			b->words[n++] = (word){(uint32_t)s, (uint32_t)pe, para ? UINT32_MAX : 0};
			para = 0;
			s = pe;
		}
	}
	/* paragraph ends, backwards */
	uint32_t pend = (uint32_t)n;
	for (size_t k = n; k-- > 0;) {
		int start = b->words[k].pend == UINT32_MAX;
		b->words[k].pend = pend;
		if (start)
			pend = (uint32_t)k;
	}
	return (int64_t)n;
}

static int fits(const sl_bm25_builder *b, size_t s, size_t e)
{
	return e - s <= b->o.chunk_words &&
	       (size_t)b->words[e - 1].end - b->words[s].start <= b->o.chunk_bytes;
}

int sl_bm25_builder_add(sl_bm25_builder *b, const char *doc_id, const char *text, size_t len)
{
	if (!b || !doc_id || !*doc_id || (!text && len) || b->finished)
		return SL_EINVAL;
	if (b->broken)
		return SL_ENOMEM;
	if (len > b->o.max_doc_bytes)
		return SL_ETOOBIG;
	size_t idlen0 = strlen(doc_id), idlen, tlen, bad_id, bad;
	char *id = sl__bm25_utf8_repair(doc_id, idlen0, &idlen, &bad_id);
	char *t = id ? sl__bm25_utf8_repair(text ? text : "", len, &tlen, &bad) : NULL;
	if (!t) {
		free(id);
		b->broken = 1;
		return SL_ENOMEM;
	}
	if (bad) {
		b->rep.docs_repaired++;
		warnf(b, "%s: %zu invalid UTF-8 byte%s replaced with U+FFFD", id, bad, bad == 1 ? "" : "s");
	}
	int rc = SL_OK;
	int64_t nw = split_words(b, t, tlen);
	if (nw < 0) {
		rc = SL_ENOMEM;
		goto out;
	}
	size_t i = 0, n = (size_t)nw;
	uint64_t no = 0;
	while (i < n) {
		size_t s = i, e = i;
		/* whole paragraphs while they fit */
		while (e < n && fits(b, s, b->words[e].pend))
			e = b->words[e].pend;
		size_t next;
		if (e > s) {
			next = e;
		} else {
			/* the paragraph (from s) does not fit: cut inside it, with overlap */
			size_t pend = b->words[s].pend;
			e = s + 1;
			while (e < pend && fits(b, s, e + 1))
				e++;
			size_t ov = b->o.overlap_words;
			if (ov > (e - s) / 2)
				ov = (e - s) / 2;
			next = e < pend ? e - ov : e;
		}
		int added;
		rc = add_chunk(b, id, idlen, no, t + b->words[s].start,
		               (size_t)b->words[e - 1].end - b->words[s].start, &added);
		if (rc != SL_OK)
			goto out;
		no += (uint64_t)added;
		i = next;
	}
	b->n_docs++;
	b->rep.docs = b->n_docs;
	b->rep.chunks = b->n_chunks;
out:
	if (rc == SL_ENOMEM)
		b->broken = 1;
	free(id);
	free(t);
	return rc;
}

/* ------------------------------------------------------------ progress */

static void progress(sl_bm25_builder *b, int final)
{
	if (!b->o.progress)
		return;
	double now = now_s();
	if (!final) {
		int dec = b->bytes_total ? (int)(b->rep.bytes_read * 10 / b->bytes_total) : 0;
		int due = now - b->t_last_progress >= 1.0 || (dec > b->last_decile && now - b->t0 >= 1.0);
		b->last_decile = dec > b->last_decile ? dec : b->last_decile;
		if (!due)
			return;
	} else if (!b->progress_shown) {
		return;
	}
	b->t_last_progress = now;
	b->progress_shown = 1;
	sl_bm25_progress p = {b->rep.bytes_read, b->bytes_total, b->n_docs, b->n_chunks,
	                      b->rep.files_skipped, now - b->t0, final};
	b->o.progress(b->o.arg, &p);
}

void sl_bm25_progress_stderr(void *arg, const sl_bm25_progress *p)
{
	(void)arg;
	if (p->bytes_total)
		fprintf(stderr, "%s: %3.0f%% %.1f/%.1f MB, %llu docs, %llu chunks, %llu skipped, %.1f s\n",
		        p->final ? "indexed" : "indexing",
		        100.0 * (double)p->bytes_done / (double)p->bytes_total, p->bytes_done / 1e6,
		        p->bytes_total / 1e6, (unsigned long long)p->docs, (unsigned long long)p->chunks,
		        (unsigned long long)p->files_skipped, p->elapsed_s);
	else
		fprintf(stderr, "%s: %.1f MB, %llu docs, %llu chunks, %llu skipped, %.1f s\n",
		        p->final ? "indexed" : "indexing", p->bytes_done / 1e6, (unsigned long long)p->docs,
		        (unsigned long long)p->chunks, (unsigned long long)p->files_skipped, p->elapsed_s);
}

/* ------------------------------------------------------------ files */

static char *join(const char *root, const char *rel)
{
	size_t a = strlen(root), r = strlen(rel);
	char *p = malloc(a + r + 2);
	if (!p)
		return NULL;
	memcpy(p, root, a);
	size_t n = a;
	if (r && a && root[a - 1] != '/')
		p[n++] = '/';
	memcpy(p + n, rel, r + 1);
	return p;
}

/* Reads a whole file (at most max bytes).  Returns SL_OK, SL_ETOOBIG, or
 * SL_ESYS with errno set. */
static int read_file(const char *path, uint64_t max, char **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return SL_ESYS;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return SL_ESYS;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		errno = EISDIR;
		return SL_ESYS;
	}
	if ((uint64_t)st.st_size > max) {
		close(fd);
		return SL_ETOOBIG;
	}
	size_t cap = (size_t)st.st_size + 1, n = 0;
	char *buf = malloc(cap);
	if (!buf) {
		close(fd);
		errno = ENOMEM;
		return SL_ESYS;
	}
	for (;;) {
		if (n == cap) { /* the file grew */
			if (cap > max) {
				free(buf);
				close(fd);
				return SL_ETOOBIG;
			}
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				close(fd);
				errno = ENOMEM;
				return SL_ESYS;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			free(buf);
			close(fd);
			errno = e;
			return SL_ESYS;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (n > max) {
		free(buf);
		return SL_ETOOBIG;
	}
	*out = buf;
	*len = n;
	return SL_OK;
}

int sl_bm25_builder_add_file(sl_bm25_builder *b, const char *root, const char *relpath,
                             int *skipped)
{
	if (skipped)
		*skipped = 0;
	if (!b || !root || !relpath || !*relpath)
		return SL_EINVAL;
	char *path = join(root, relpath);
	if (!path)
		return SL_ENOMEM;
	char *buf = NULL;
	size_t len = 0;
	int rc = read_file(path, b->o.max_doc_bytes, &buf, &len);
	const char *why = NULL;
	char ebuf[128];
	if (rc == SL_ETOOBIG) {
		snprintf(ebuf, sizeof ebuf, "larger than %llu bytes",
		         (unsigned long long)b->o.max_doc_bytes);
		why = ebuf;
	} else if (rc != SL_OK) {
		why = strerror(errno);
	} else if (memchr(buf, '\0', len)) {
		why = "binary file (NUL bytes)";
	}
	if (why) {
		warnf(b, "skipped %s: %s", path, why);
		b->rep.files_skipped++;
		if (skipped)
			*skipped = 1;
		free(buf);
		free(path);
		return SL_OK;
	}
	free(path);
	b->rep.bytes_read += len;
	const char *t = buf;
	if (len >= 3 && memcmp(t, "\xEF\xBB\xBF", 3) == 0) { /* BOM */
		t += 3;
		len -= 3;
	}
	rc = sl_bm25_builder_add(b, relpath, t, len);
	free(buf);
	if (rc == SL_OK)
		b->rep.files_indexed++;
	progress(b, 0);
	return rc;
}

/* ------------------------------------------------------------ finish */

int sl_bm25_builder_finish(sl_bm25_builder *b, sl_bm25 **out, sl_bm25_report *rep)
{
	if (rep) {
		if (b)
			*rep = b->rep;
		else
			memset(rep, 0, sizeof *rep);
	}
	if (!b || !out || b->finished)
		return errf(rep, SL_EINVAL, "invalid argument");
	if (b->broken)
		return errf(rep, SL_ENOMEM, "out of memory while indexing");
	if (b->n_chunks == 0 || b->total_tokens == 0)
		return errf(rep, SL_EINVAL, "empty corpus: no document with indexable text");
	uint64_t nt = b->n_terms, nc = b->n_chunks, np = b->n_tcs;
	uint64_t slen = b->tarena_len + b->sarena_len;
	uint64_t terms_off = SL_BM25_HDR_SIZE, chunks_off = terms_off + nt * 24,
	         post_off = chunks_off + nc * 32, str_off = post_off + np * 8, flen = str_off + slen;
	if (flen > SIZE_MAX)
		return errf(rep, SL_ETOOBIG, "index too large");
	unsigned char *img = calloc(1, (size_t)flen);
	if (!img)
		return errf(rep, SL_ENOMEM, "out of memory (%llu bytes of index)", (unsigned long long)flen);
	bm25_hdr h;
	memset(&h, 0, sizeof h);
	memcpy(h.magic, SL_BM25_MAGIC, 8);
	h.version = SL_BM25_FORMAT_VERSION;
	h.header_size = SL_BM25_HDR_SIZE;
	h.flags = b->o.stopwords ? SL_BM25_FLAG_STOPWORDS : 0;
	h.endian = SL_BM25_ENDIAN;
	h.k1 = b->o.k1;
	h.b = b->o.b;
	h.n_chunks = nc;
	h.n_terms = nt;
	h.n_postings = np;
	h.total_tokens = b->total_tokens;
	h.terms_off = terms_off;
	h.chunks_off = chunks_off;
	h.postings_off = post_off;
	h.strings_off = str_off;
	h.strings_len = slen;
	h.file_len = flen;
	bm25_term *terms = (bm25_term *)(img + terms_off);
	bm25_chunk *chunks = (bm25_chunk *)(img + chunks_off);
	bm25_posting *post = (bm25_posting *)(img + post_off);
	char *str = (char *)img + str_off;
	uint64_t run = 0;
	for (uint64_t t = 0; t < nt; t++) {
		terms[t] = (bm25_term){b->t_off[t], b->t_len[t], b->t_df[t], run};
		b->t_pos[t] = run; /* reused as the fill cursor */
		run += b->t_df[t];
	}
	for (uint64_t c = 0; c < nc; c++) {
		uint64_t e = c + 1 < nc ? b->c_tc[c + 1] : np;
		for (uint64_t j = b->c_tc[c]; j < e; j++) {
			const tc *x = &b->tcs[j];
			post[b->t_pos[x->term]++] = (bm25_posting){(uint32_t)c, x->tf};
		}
		chunks[c] = b->chunks[c];
		chunks[c].id_off += b->tarena_len;
		chunks[c].text_off += b->tarena_len;
	}
	if (b->tarena_len)
		memcpy(str, b->tarena, b->tarena_len);
	memcpy(str + b->tarena_len, b->sarena, b->sarena_len);
	memcpy(img, &h, sizeof h);
	h.checksum = sl__bm25_checksum(img, (size_t)flen);
	memcpy(img + SL_BM25_CHECKSUM_OFF, &h.checksum, 8);
	b->finished = 1;
	free_work(b);
	char why[200] = "";
	int rc = sl__bm25_open_image(img, (size_t)flen, 0, 0, out, why, sizeof why);
	if (rc != SL_OK) {
		free(img);
		return errf(rep, rc, "internal error: %s", why);
	}
	return SL_OK;
}

/* ------------------------------------------------------------ corpora */

typedef struct flist {
	char **v;
	uint64_t n, cap;
	uint64_t bytes;
} flist;

static int has_ext(const char *name)
{
	const char *d = strrchr(name, '.');
	return d && (strcasecmp(d, ".md") == 0 || strcasecmp(d, ".txt") == 0 ||
	             strcasecmp(d, ".markdown") == 0);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Collects the .md/.txt files under root/rel (rel "" = root), sorted.
 * Symbolic links to directories are not followed (no loops); links to
 * files are.  Unreadable subdirectories are skipped with a warning. */
static int walk(sl_bm25_builder *b, const char *root, const char *rel, flist *fl, int depth,
                sl_bm25_report *rep)
{
	char *dpath = *rel ? join(root, rel) : strdup(root);
	if (!dpath)
		return SL_ENOMEM;
	DIR *d = opendir(dpath);
	if (!d) {
		int e = errno;
		if (depth == 0) {
			int rc = errf(rep, SL_ESYS, "%s: %s", dpath, strerror(e));
			free(dpath);
			return rc;
		}
		warnf(b, "skipped directory %s: %s", dpath, strerror(e));
		b->rep.files_skipped++;
		free(dpath);
		return SL_OK;
	}
	char **names = NULL;
	uint64_t nn = 0, cap = 0;
	int rc = SL_OK;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (grow(&names, &cap, nn + 1, sizeof *names) || !(names[nn] = strdup(de->d_name))) {
			rc = SL_ENOMEM;
			break;
		}
		nn++;
	}
	closedir(d);
	if (rc == SL_OK && nn)
		qsort(names, nn, sizeof *names, cmp_str);
	for (uint64_t i = 0; i < nn && rc == SL_OK; i++) {
		char *r = *rel ? join(rel, names[i]) : strdup(names[i]);
		char *full = r ? join(root, r) : NULL;
		if (!full) {
			free(r);
			rc = SL_ENOMEM;
			break;
		}
		struct stat lst, st;
		if (lstat(full, &lst) != 0) {
			warnf(b, "skipped %s: %s", full, strerror(errno));
			b->rep.files_skipped++;
		} else if (S_ISDIR(lst.st_mode)) {
			if (depth < 64)
				rc = walk(b, root, r, fl, depth + 1, rep);
		} else if (has_ext(names[i])) {
			if (stat(full, &st) != 0) {
				warnf(b, "skipped %s: %s", full, strerror(errno));
				b->rep.files_skipped++;
			} else if (S_ISREG(st.st_mode)) {
				if (grow(&fl->v, &fl->cap, fl->n + 1, sizeof *fl->v)) {
					rc = SL_ENOMEM;
				} else {
					fl->v[fl->n++] = r;
					r = NULL;
					fl->bytes += (uint64_t)st.st_size;
				}
			}
		}
		free(r);
		free(full);
	}
	for (uint64_t i = 0; i < nn; i++)
		free(names[i]);
	free(names);
	free(dpath);
	if (rc == SL_ENOMEM)
		errf(rep, rc, "out of memory");
	return rc;
}

static int build_dir(sl_bm25_builder *b, const char *root, sl_bm25_report *rep)
{
	flist fl = {0};
	int rc = walk(b, root, "", &fl, 0, rep);
	b->bytes_total = fl.bytes;
	for (uint64_t i = 0; i < fl.n && rc == SL_OK; i++) {
		rc = sl_bm25_builder_add_file(b, root, fl.v[i], NULL);
		if (rc != SL_OK)
			errf(rep, rc, "%s/%s: %s", root, fl.v[i], sl_strerror(rc));
	}
	for (uint64_t i = 0; i < fl.n; i++)
		free(fl.v[i]);
	free(fl.v);
	if (rc == SL_OK && b->n_chunks == 0)
		rc = errf(rep, SL_EINVAL,
		          "empty corpus: no .md/.markdown/.txt file with text under %s (%llu found, %llu "
		          "skipped)", root, (unsigned long long)b->rep.files_indexed,
		          (unsigned long long)b->rep.files_skipped);
	return rc;
}

static int build_jsonl(sl_bm25_builder *b, const char *path, sl_bm25_report *rep)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return errf(rep, errno == ENOENT ? SL_ENOTFOUND : SL_ESYS, "%s: %s", path,
		            strerror(errno));
	struct stat st;
	if (fstat(fileno(f), &st) == 0)
		b->bytes_total = (uint64_t)st.st_size;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	uint64_t lineno = 0, good = 0;
	int rc = SL_OK;
	errno = 0;
	while ((n = getline(&line, &cap, f)) >= 0) {
		lineno++;
		b->rep.bytes_read += (uint64_t)n;
		size_t i = 0;
		while (i < (size_t)n && is_ws((unsigned char)line[i]))
			i++;
		if (i == (size_t)n)
			continue; /* blank line */
		if ((uint64_t)n > b->o.max_doc_bytes) {
			warnf(b, "%s:%llu: line longer than %llu bytes, skipped", path,
			      (unsigned long long)lineno, (unsigned long long)b->o.max_doc_bytes);
			b->rep.lines_skipped++;
			continue;
		}
		json_error_t je;
		json_t *o = json_loadb(line, (size_t)n, 0, &je);
		const char *why = NULL;
		char idbuf[32];
		const char *id = NULL;
		json_t *jid = NULL, *jt = NULL;
		if (!o) {
			why = je.text;
		} else if (!json_is_object(o)) {
			why = "not a JSON object";
		} else {
			jid = json_object_get(o, "id");
			jt = json_object_get(o, "text");
			if (json_is_string(jid) && json_string_length(jid) > 0 &&
			    !memchr(json_string_value(jid), 0, json_string_length(jid))) {
				id = json_string_value(jid);
			} else if (json_is_integer(jid)) {
				snprintf(idbuf, sizeof idbuf, "%lld", (long long)json_integer_value(jid));
				id = idbuf;
			} else {
				why = "\"id\" must be a non-empty string or an integer";
			}
			if (!why && !json_is_string(jt))
				why = "\"text\" must be a string";
		}
		if (why) {
			warnf(b, "%s:%llu: %s; line skipped", path, (unsigned long long)lineno, why);
			b->rep.lines_skipped++;
			json_decref(o);
			continue;
		}
		rc = sl_bm25_builder_add(b, id, json_string_value(jt), json_string_length(jt));
		json_decref(o);
		if (rc != SL_OK) {
			errf(rep, rc, "%s:%llu: %s", path, (unsigned long long)lineno, sl_strerror(rc));
			break;
		}
		b->rep.files_indexed++;
		good++;
		progress(b, 0);
		errno = 0;
	}
	if (rc == SL_OK && ferror(f))
		rc = errf(rep, SL_ESYS, "%s: read error after line %llu: %s", path,
		          (unsigned long long)lineno, strerror(errno ? errno : EIO));
	free(line);
	fclose(f);
	if (rc == SL_OK && b->n_chunks == 0)
		rc = errf(rep, SL_EINVAL,
		          "empty corpus: %s has no line with indexable text (%llu lines, %llu skipped)",
		          path, (unsigned long long)lineno, (unsigned long long)b->rep.lines_skipped);
	(void)good;
	return rc;
}

int sl_bm25_build(const char *path, const sl_bm25_opts *opts, sl_bm25 **out,
                  sl_bm25_report *rep)
{
	if (rep)
		memset(rep, 0, sizeof *rep);
	if (!path || !out)
		return errf(rep, SL_EINVAL, "invalid argument");
	struct stat st;
	if (stat(path, &st) != 0)
		return errf(rep, errno == ENOENT ? SL_ENOTFOUND : SL_ESYS, "%s: %s", path,
		            strerror(errno));
	sl_bm25_builder *b;
	int rc = sl_bm25_builder_create(opts, &b);
	if (rc != SL_OK)
		return errf(rep, rc, rc == SL_EINVAL ? "invalid BM25 options" : "out of memory");
	sl_bm25_report r2;
	memset(&r2, 0, sizeof r2);
	if (S_ISDIR(st.st_mode)) {
		rc = build_dir(b, path, &r2);
	} else if (S_ISREG(st.st_mode)) {
		if (has_ext(path)) { /* a single document, id = its name */
			const char *slash = strrchr(path, '/');
			char *dir = slash ? strndup(path, (size_t)(slash - path) + 1) : strdup(".");
			b->bytes_total = (uint64_t)st.st_size;
			rc = dir ? sl_bm25_builder_add_file(b, dir, slash ? slash + 1 : path, NULL)
			         : SL_ENOMEM;
			free(dir);
			if (rc != SL_OK)
				errf(&r2, rc, "%s: %s", path, sl_strerror(rc));
			else if (b->n_chunks == 0)
				rc = errf(&r2, SL_EINVAL, "empty corpus: %s has no indexable text%s", path,
				          b->rep.files_skipped ? " (skipped)" : "");
		} else {
			rc = build_jsonl(b, path, &r2);
		}
	} else {
		rc = errf(&r2, SL_EINVAL, "%s: not a directory nor a regular file", path);
	}
	if (rc == SL_OK) {
		progress(b, 1);
		rc = sl_bm25_builder_finish(b, out, rep);
	} else if (rep) {
		*rep = b->rep;
		memcpy(rep->err, r2.err, sizeof rep->err);
	}
	sl_bm25_builder_destroy(b);
	return rc;
}
