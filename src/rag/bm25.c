/* bm25.c - the BM25 index image: validation and loading, saving, search.
 * The builder is in bm25_build.c; the layout in bm25_int.h; the design in
 * docs/internals/retrieval.md. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH64_state_t on the stack */
#include <xxhash.h>
#include "core/utf8.h"
#include "rag/bm25.h"
#include "rag/bm25_int.h"

static int fail(char *err, size_t errlen, int status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int status, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return status;
}

uint64_t sl__bm25_hash(const char *s, size_t n)
{
	return XXH3_64bits(s, n);
}

uint64_t sl__bm25_checksum(const unsigned char *img, size_t len)
{
	XXH64_state_t st;
	XXH64_reset(&st, 0);
	XXH64_update(&st, img, SL_BM25_CHECKSUM_OFF);
	if (len > SL_BM25_HDR_SIZE)
		XXH64_update(&st, img + SL_BM25_HDR_SIZE, len - SL_BM25_HDR_SIZE);
	return XXH64_digest(&st);
}

static int params_ok(double k1, double b)
{
	return isfinite(k1) && k1 >= 0 && k1 <= 1000 && isfinite(b) && b >= 0 && b <= 1;
}

static void compute_norm(sl_bm25 *x)
{
	for (uint64_t i = 0; i < x->n_chunks; i++)
		x->norm[i] = x->k1 * (1.0 - x->b + x->b * (double)x->chunks[i].ntok / x->avgdl);
}

/* Finds term s (n bytes); returns its index or -1. */
static int64_t lookup(const sl_bm25 *x, const char *s, size_t n)
{
	if (!x->n_terms)
		return -1;
	uint64_t h = sl__bm25_hash(s, n);
	uint64_t tag = h & ~(uint64_t)0xffffffffu;
	for (uint64_t i = h & x->mask;; i = (i + 1) & x->mask) {
		uint64_t v = x->slots[i];
		if (!v)
			return -1;
		if ((v & ~(uint64_t)0xffffffffu) == tag) {
			uint32_t t = (uint32_t)(v & 0xffffffffu) - 1;
			const bm25_term *tr = &x->terms[t];
			if (tr->str_len == n && memcmp(x->strings + tr->str_off, s, n) == 0)
				return t;
		}
	}
}

int sl__bm25_open_image(unsigned char *img, size_t len, int mapped, int verify_checksum,
                        sl_bm25 **out, char *err, size_t errlen)
{
	if (!img || len < SL_BM25_HDR_SIZE)
		return fail(err, errlen, SL_EINVAL, "not a BM25 index (truncated: %zu bytes, header is %u)",
		            len, SL_BM25_HDR_SIZE);
	bm25_hdr h;
	memcpy(&h, img, sizeof h);
	if (memcmp(h.magic, SL_BM25_MAGIC, 8) != 0)
		return fail(err, errlen, SL_EINVAL, "not a BM25 index (bad magic)");
	if (h.endian != SL_BM25_ENDIAN)
		return fail(err, errlen, SL_EINVAL, "BM25 index of another byte order");
	if (h.version != SL_BM25_FORMAT_VERSION)
		return fail(err, errlen, SL_EINVAL, "BM25 index format version %u, this build reads %u",
		            h.version, SL_BM25_FORMAT_VERSION);
	if (h.header_size != SL_BM25_HDR_SIZE || (h.flags & ~SL_BM25_FLAG_STOPWORDS))
		return fail(err, errlen, SL_EINVAL, "corrupt BM25 index: bad header size or flags");
	if (!params_ok(h.k1, h.b))
		return fail(err, errlen, SL_EINVAL, "corrupt BM25 index: k1/b out of range");
	if (h.file_len != len)
		return fail(err, errlen, SL_EINVAL,
		            "truncated or corrupt BM25 index: %zu bytes, header says %llu", len,
		            (unsigned long long)h.file_len);
	/* the counts are bounded by the length before any multiplication */
	if (h.n_chunks == 0 || h.n_chunks > UINT32_MAX || h.n_terms > UINT32_MAX ||
	    h.n_chunks > len / 32 || h.n_terms > len / 24 || h.n_postings > len / 8)
		return fail(err, errlen, SL_EINVAL, "corrupt BM25 index: bad counts");
	uint64_t off = SL_BM25_HDR_SIZE;
	if (h.terms_off != off)
		return fail(err, errlen, SL_EINVAL, "corrupt BM25 index: bad section offsets");
	off += h.n_terms * 24;
	if (h.chunks_off != off)
		return fail(err, errlen, SL_EINVAL, "corrupt BM25 index: bad section offsets");
	off += h.n_chunks * 32;
	if (h.postings_off != off)
		return fail(err, errlen, SL_EINVAL, "corrupt BM25 index: bad section offsets");
	off += h.n_postings * 8;
	if (h.strings_off != off || off > len || h.strings_len != len - off)
		return fail(err, errlen, SL_EINVAL, "corrupt BM25 index: bad section offsets");
	if (verify_checksum && sl__bm25_checksum(img, len) != h.checksum)
		return fail(err, errlen, SL_EINVAL, "corrupt BM25 index: checksum mismatch");

	const bm25_term *terms = (const bm25_term *)(img + h.terms_off);
	const bm25_chunk *chunks = (const bm25_chunk *)(img + h.chunks_off);
	const bm25_posting *post = (const bm25_posting *)(img + h.postings_off);
	const char *str = (const char *)img + h.strings_off;
	uint64_t slen = h.strings_len;

	uint64_t tot = 0;
	for (uint64_t i = 0; i < h.n_chunks; i++) {
		const bm25_chunk *c = &chunks[i];
		if (c->id_len == 0 || c->id_off > slen || c->id_len >= slen - c->id_off ||
		    str[c->id_off + c->id_len] != '\0' || c->text_off > slen ||
		    c->text_len >= slen - c->text_off || str[c->text_off + c->text_len] != '\0')
			return fail(err, errlen, SL_EINVAL, "corrupt BM25 index: chunk %llu out of bounds",
			            (unsigned long long)i);
		if (memchr(str + c->id_off, 0, c->id_len) ||
		    !sl_utf8_valid(str + c->id_off, c->id_len) ||
		    !sl_utf8_valid(str + c->text_off, c->text_len))
			return fail(err, errlen, SL_EINVAL, "corrupt BM25 index: chunk %llu is not UTF-8",
			            (unsigned long long)i);
		tot += c->ntok;
	}
	if (tot != h.total_tokens || tot == 0)
		return fail(err, errlen, SL_EINVAL, "corrupt BM25 index: token count mismatch");

	uint64_t run = 0;
	for (uint64_t t = 0; t < h.n_terms; t++) {
		const bm25_term *tr = &terms[t];
		if (tr->str_len == 0 || tr->str_len > SL_BM25_MAX_TERM_BYTES || tr->str_off > slen ||
		    tr->str_len > slen - tr->str_off)
			return fail(err, errlen, SL_EINVAL, "corrupt BM25 index: term %llu out of bounds",
			            (unsigned long long)t);
		if (tr->df == 0 || tr->post_off != run || tr->df > h.n_postings - run)
			return fail(err, errlen, SL_EINVAL, "corrupt BM25 index: term %llu postings",
			            (unsigned long long)t);
		const bm25_posting *p = post + run;
		for (uint32_t j = 0; j < tr->df; j++) {
			if (p[j].chunk >= h.n_chunks || p[j].tf == 0 || (j && p[j].chunk <= p[j - 1].chunk))
				return fail(err, errlen, SL_EINVAL,
				            "corrupt BM25 index: term %llu posting %u", (unsigned long long)t, j);
		}
		run += tr->df;
	}
	if (run != h.n_postings)
		return fail(err, errlen, SL_EINVAL, "corrupt BM25 index: postings count mismatch");

	sl_bm25 *x = calloc(1, sizeof *x);
	if (!x)
		return fail(err, errlen, SL_ENOMEM, "out of memory");
	x->img = img;
	x->img_len = len;
	x->mapped = mapped;
	x->terms = terms;
	x->chunks = chunks;
	x->post = post;
	x->strings = str;
	x->n_chunks = h.n_chunks;
	x->n_terms = h.n_terms;
	x->n_postings = h.n_postings;
	x->total_tokens = h.total_tokens;
	x->avgdl = (double)h.total_tokens / (double)h.n_chunks;
	x->k1 = h.k1;
	x->b = h.b;
	x->stopwords = !!(h.flags & SL_BM25_FLAG_STOPWORDS);
	uint64_t nslots = 16;
	while (nslots < h.n_terms * 2)
		nslots <<= 1;
	x->mask = nslots - 1;
	x->slots = calloc(nslots, sizeof *x->slots);
	x->norm = malloc(h.n_chunks * sizeof *x->norm);
	if (!x->slots || !x->norm) {
		free(x->slots);
		free(x->norm);
		free(x);
		return fail(err, errlen, SL_ENOMEM, "out of memory");
	}
	for (uint64_t t = 0; t < h.n_terms; t++) {
		const char *s = str + terms[t].str_off;
		uint32_t n = terms[t].str_len;
		if (lookup(x, s, n) >= 0) {
			free(x->slots);
			free(x->norm);
			free(x);
			return fail(err, errlen, SL_EINVAL, "corrupt BM25 index: duplicate term %llu",
			            (unsigned long long)t);
		}
		uint64_t hv = sl__bm25_hash(s, n);
		uint64_t i = hv & x->mask;
		while (x->slots[i])
			i = (i + 1) & x->mask;
		x->slots[i] = (hv & ~(uint64_t)0xffffffffu) | (t + 1);
	}
	compute_norm(x);
	*out = x;
	return SL_OK;
}

static void rep_reset(sl_bm25_report *rep)
{
	if (rep)
		memset(rep, 0, sizeof *rep);
}

#define REP_ERR(rep) ((rep) ? (rep)->err : NULL), ((rep) ? sizeof (rep)->err : 0)

static void rep_fill(sl_bm25_report *rep, const sl_bm25 *x)
{
	if (!rep)
		return;
	rep->chunks = x->n_chunks;
	rep->docs = x->n_chunks ? x->chunks[x->n_chunks - 1].doc + 1ull : 0;
}

int sl_bm25_load_buf(const void *buf, size_t len, sl_bm25 **out, sl_bm25_report *rep)
{
	rep_reset(rep);
	if (!out || (!buf && len))
		return fail(REP_ERR(rep), SL_EINVAL, "invalid argument");
	unsigned char *img = malloc(len ? len : 1); /* malloc: aligned for the records */
	if (!img)
		return fail(REP_ERR(rep), SL_ENOMEM, "out of memory (%zu bytes)", len);
	if (len)
		memcpy(img, buf, len);
	int rc = sl__bm25_open_image(img, len, 0, 1, out, REP_ERR(rep));
	if (rc != SL_OK)
		free(img);
	else
		rep_fill(rep, *out);
	return rc;
}

int sl_bm25_load(const char *path, sl_bm25 **out, sl_bm25_report *rep)
{
	rep_reset(rep);
	if (!path || !out)
		return fail(REP_ERR(rep), SL_EINVAL, "invalid argument");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(REP_ERR(rep), errno == ENOENT ? SL_ENOTFOUND : SL_ESYS, "%s: %s", path,
		            strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int e = errno;
		close(fd);
		return fail(REP_ERR(rep), SL_ESYS, "%s: %s", path, strerror(e));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return fail(REP_ERR(rep), SL_EINVAL, "%s: not a regular file", path);
	}
	if ((uint64_t)st.st_size < SL_BM25_HDR_SIZE) {
		close(fd);
		return fail(REP_ERR(rep), SL_EINVAL, "%s: not a BM25 index (truncated: %lld bytes)",
		            path, (long long)st.st_size);
	}
	size_t len = (size_t)st.st_size;
	void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
	int e = errno;
	close(fd);
	if (m == MAP_FAILED)
		return fail(REP_ERR(rep), SL_ESYS, "%s: mmap: %s", path, strerror(e));
	char why[200] = "";
	int rc = sl__bm25_open_image(m, len, 1, 1, out, why, sizeof why);
	if (rc != SL_OK) {
		munmap(m, len);
		return fail(REP_ERR(rep), rc, "%s: %s", path, why);
	}
	rep_fill(rep, *out);
	if (rep)
		rep->bytes_read = len;
	return SL_OK;
}

int sl_bm25_save(const sl_bm25 *x, const char *path, sl_bm25_report *rep)
{
	rep_reset(rep);
	if (!x || !path)
		return fail(REP_ERR(rep), SL_EINVAL, "invalid argument");
	size_t pl = strlen(path);
	char *tmp = malloc(pl + 5);
	if (!tmp)
		return fail(REP_ERR(rep), SL_ENOMEM, "out of memory");
	memcpy(tmp, path, pl);
	memcpy(tmp + pl, ".tmp", 5);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		int rc = fail(REP_ERR(rep), SL_ESYS, "%s: %s", tmp, strerror(errno));
		free(tmp);
		return rc;
	}
	const unsigned char *p = x->img;
	size_t left = x->img_len;
	while (left) {
		ssize_t n = write(fd, p, left > (1u << 30) ? (1u << 30) : left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto syserr;
		p += n;
		left -= (size_t)n;
	}
	if (fsync(fd) != 0)
		goto syserr;
	if (close(fd) != 0) {
		fd = -1;
		goto syserr;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		goto syserr;
	free(tmp);
	return SL_OK;
syserr:;
	int e = errno ? errno : EIO;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	int rc = fail(REP_ERR(rep), SL_ESYS, "%s: %s", path, strerror(e));
	free(tmp);
	return rc;
}

void sl_bm25_destroy(sl_bm25 *x)
{
	if (!x)
		return;
	if (x->mapped)
		munmap(x->img, x->img_len);
	else
		free(x->img);
	free(x->slots);
	free(x->norm);
	free(x);
}

int sl_bm25_set_params(sl_bm25 *x, double k1, double b)
{
	if (!x || !params_ok(k1, b))
		return SL_EINVAL;
	x->k1 = k1;
	x->b = b;
	compute_norm(x);
	return SL_OK;
}

void sl_bm25_get_stats(const sl_bm25 *x, sl_bm25_stats *st)
{
	memset(st, 0, sizeof *st);
	if (!x)
		return;
	st->chunks = x->n_chunks;
	st->terms = x->n_terms;
	st->postings = x->n_postings;
	st->total_tokens = x->total_tokens;
	st->avgdl = x->avgdl;
	st->k1 = x->k1;
	st->b = x->b;
	st->stopwords = x->stopwords;
	st->file_bytes = x->img_len;
	st->mem_bytes = sizeof *x + x->img_len + (x->mask + 1) * sizeof *x->slots +
	                x->n_chunks * sizeof *x->norm;
}

int sl_bm25_chunk(const sl_bm25 *x, uint64_t i, const char **doc_id, const char **text,
                  size_t *text_len)
{
	if (!x || i >= x->n_chunks)
		return SL_EINVAL;
	const bm25_chunk *c = &x->chunks[i];
	if (doc_id)
		*doc_id = x->strings + c->id_off;
	if (text)
		*text = x->strings + c->text_off;
	if (text_len)
		*text_len = c->text_len;
	return SL_OK;
}

/* ---------------------------------------------------------------- search */

typedef struct qterm {
	int64_t t;
	unsigned qtf;
} qterm;

typedef struct qctx {
	const sl_bm25 *x;
	qterm *q;
	unsigned n, cap;
} qctx;

static void on_qtok(void *arg, const char *tok, size_t n)
{
	qctx *c = arg;
	int64_t t = lookup(c->x, tok, n);
	if (t < 0)
		return;
	for (unsigned i = 0; i < c->n; i++)
		if (c->q[i].t == t) {
			c->q[i].qtf++;
			return;
		}
	if (c->n < c->cap)
		c->q[c->n++] = (qterm){t, 1};
}

typedef struct cursor {
	const bm25_posting *p, *end;
	double w; /* idf * qtf * (k1 + 1) */
} cursor;

typedef struct hent {
	double s;
	uint32_t c;
} hent;

/* a is worse than b: lower score, or the same score and a later chunk */
static inline int worse(hent a, hent b)
{
	return a.s < b.s || (a.s == b.s && a.c > b.c);
}

static void sift_down(hent *h, unsigned n, unsigned i)
{
	for (;;) {
		unsigned l = 2 * i + 1, r = l + 1, m = i;
		if (l < n && worse(h[l], h[m]))
			m = l;
		if (r < n && worse(h[r], h[m]))
			m = r;
		if (m == i)
			return;
		hent t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

static void sift_up(hent *h, unsigned i)
{
	while (i) {
		unsigned p = (i - 1) / 2;
		if (!worse(h[i], h[p]))
			return;
		hent t = h[i];
		h[i] = h[p];
		h[p] = t;
		i = p;
	}
}

int sl_bm25_search(const sl_bm25 *x, const char *query, size_t qlen, unsigned k, sl_hit *hits,
                   unsigned *n_hits)
{
	if (n_hits)
		*n_hits = 0;
	if (!x || !hits || !n_hits || k == 0 || k > SL_BM25_MAX_K || (!query && qlen))
		return SL_EINVAL;
	qterm qbuf[SL_BM25_MAX_QUERY_TERMS];
	qctx qc = {x, qbuf, 0, SL_BM25_MAX_QUERY_TERMS};
	sl_bm25_tokenize(query, qlen, x->stopwords, on_qtok, &qc);
	if (!qc.n)
		return SL_OK;
	cursor *cur = malloc(qc.n * sizeof *cur);
	hent *heap = malloc(k * sizeof *heap);
	if (!cur || !heap) {
		free(cur);
		free(heap);
		return SL_ENOMEM;
	}
	double N = (double)x->n_chunks, k1p = x->k1 + 1.0;
	for (unsigned i = 0; i < qc.n; i++) {
		const bm25_term *tr = &x->terms[qc.q[i].t];
		double df = tr->df;
		double idf = log(1.0 + (N - df + 0.5) / (df + 0.5));
		cur[i].p = x->post + tr->post_off;
		cur[i].end = cur[i].p + tr->df;
		cur[i].w = idf * qc.q[i].qtf * k1p;
	}
	/* document-at-a-time: merge the postings lists by chunk */
	unsigned nc = qc.n, nh = 0;
	const double *norm = x->norm;
	for (;;) {
		uint32_t d = UINT32_MAX;
		int any = 0;
		for (unsigned i = 0; i < nc; i++)
			if (cur[i].p < cur[i].end && cur[i].p->chunk <= d) {
				d = cur[i].p->chunk;
				any = 1;
			}
		if (!any)
			break;
		double s = 0, K = norm[d];
		for (unsigned i = 0; i < nc; i++)
			if (cur[i].p < cur[i].end && cur[i].p->chunk == d) {
				double tf = cur[i].p->tf;
				s += cur[i].w * tf / (tf + K);
				cur[i].p++;
			}
		hent e = {s, d};
		if (nh < k) {
			heap[nh] = e;
			sift_up(heap, nh++);
		} else if (worse(heap[0], e)) {
			heap[0] = e;
			sift_down(heap, nh, 0);
		}
	}
	/* pop worst first into the tail: best first */
	unsigned n = nh;
	while (nh) {
		hent e = heap[0];
		heap[0] = heap[--nh];
		sift_down(heap, nh, 0);
		const bm25_chunk *c = &x->chunks[e.c];
		hits[nh] = (sl_hit){x->strings + c->id_off, x->strings + c->text_off, c->text_len, e.s};
	}
	*n_hits = n;
	free(cur);
	free(heap);
	return SL_OK;
}

/* ---------------------------------------------------------------- retriever */

static int r_search(void *state, const char *q, size_t qlen, unsigned k, sl_hit *hits,
                    unsigned *n_hits)
{
	return sl_bm25_search(state, q, qlen, k, hits, n_hits);
}

static void r_destroy(void *state)
{
	sl_bm25_destroy(state);
}

const sl_retriever_ops sl_bm25_retriever_ops = {
	.name = "bm25",
	.search = r_search,
	.release = NULL,
	.destroy = r_destroy,
};

int sl_bm25_retriever(sl_bm25 *x, sl_retriever *out)
{
	if (!x || !out)
		return SL_EINVAL;
	out->ops = &sl_bm25_retriever_ops;
	out->state = x;
	return SL_OK;
}
