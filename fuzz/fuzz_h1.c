/* fuzz_h1.c - libFuzzer harness for the HTTP/1.1 request parser
 * (src/http/h1_parse.c): the head parser and the chunked body decoder.
 *
 * The input is raw bytes from a client.  The head is parsed three ways -
 * whole, in two pieces (cut derived from the bytes), and a byte at a time
 * (inputs up to 4 KiB) - and the results must be identical: status,
 * head_len, every field and header offset.  On success the invariants of
 * the result are checked (offsets inside the head, names made of token
 * characters, the head ends with CRLF CRLF, the bound holds).  What follows
 * a chunked head goes through the chunked decoder, whole and byte by byte,
 * with the same check.  The bound on the head is also derived from the
 * bytes, so that the 431 paths are reached. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1_parse.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)
#define NHDRS 64

typedef struct head_res {
	int rc;
	sl_h1p_head h;
	sl_h1p_hdr hdrs[NHDRS];
} head_res;

/* Feeds d[0..size) in pieces ending at cuts[] (increasing), then all. */
static void parse_head(const uint8_t *d, size_t size, size_t max, const size_t *cuts,
                       size_t ncuts, head_res *out)
{
	memset(out, 0, sizeof *out);
	sl_h1p_head_init(&out->h, out->hdrs, NHDRS);
	int rc = SL_H1P_MORE;
	for (size_t i = 0; i <= ncuts && rc == SL_H1P_MORE; i++) {
		size_t to = i < ncuts ? cuts[i] : size;
		rc = sl_h1p_head_feed(&out->h, (const char *)d, to, max);
	}
	out->rc = rc;
}

static void same_head(const head_res *a, const head_res *b)
{
	CHECK(a->rc == b->rc);
	if (a->rc == SL_H1P_ERROR) {
		CHECK(a->h.err_status == b->h.err_status);
		CHECK(strcmp(a->h.err_code, b->h.err_code) == 0);
		return;
	}
	if (a->rc != SL_H1P_DONE)
		return;
	const sl_h1p_head *x = &a->h, *y = &b->h;
	CHECK(x->head_len == y->head_len && x->method == y->method &&
	      x->method_len == y->method_len && x->target == y->target &&
	      x->target_len == y->target_len && x->path_off == y->path_off &&
	      x->path_len == y->path_len && x->n_hdrs == y->n_hdrs && x->minor == y->minor &&
	      x->chunked == y->chunked && x->conn_close == y->conn_close &&
	      x->conn_keepalive == y->conn_keepalive && x->expect_continue == y->expect_continue &&
	      x->has_cl == y->has_cl && (!x->has_cl || x->content_length == y->content_length));
	CHECK(memcmp(a->hdrs, b->hdrs, x->n_hdrs * sizeof *a->hdrs) == 0);
}

static int is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void check_head(const uint8_t *d, size_t size, size_t max, const head_res *r)
{
	const sl_h1p_head *h = &r->h;
	if (r->rc == SL_H1P_ERROR) {
		CHECK(h->err_status == 400 || h->err_status == 431 || h->err_status == 501 ||
		      h->err_status == 505);
		CHECK(h->err_code && h->err_msg);
		return;
	}
	if (r->rc == SL_H1P_MORE) {
		CHECK(size < max);
		return;
	}
	CHECK(h->head_len <= size && h->head_len <= max && h->head_len >= 4);
	CHECK(memcmp(d + h->head_len - 4, "\r\n\r\n", 4) == 0 ||
	      (h->n_hdrs == 0 && memcmp(d + h->head_len - 2, "\r\n", 2) == 0));
	CHECK(h->method_len > 0 && h->method + h->method_len < h->head_len);
	for (uint32_t i = 0; i < h->method_len; i++)
		CHECK(is_tchar(d[h->method + i]));
	CHECK(h->target_len > 0 && h->target + h->target_len < h->head_len);
	CHECK(h->path_off + h->path_len <= h->target_len);
	CHECK(!(h->chunked && h->has_cl));
	for (uint32_t i = 0; i < h->n_hdrs; i++) {
		const sl_h1p_hdr *x = &r->hdrs[i];
		CHECK(x->name_len > 0 && x->name + x->name_len < h->head_len);
		CHECK(d[x->name + x->name_len] == ':');
		for (uint32_t k = 0; k < x->name_len; k++)
			CHECK(is_tchar(d[x->name + k]));
		CHECK(x->value + x->value_len < h->head_len);
		for (uint32_t k = 0; k < x->value_len; k++) {
			unsigned char c = d[x->value + k];
			CHECK(c == '\t' || c >= ' ');
			CHECK(c != 0x7f);
		}
		if (x->value_len)
			CHECK(d[x->value] != ' ' && d[x->value + x->value_len - 1] != ' ');
	}
}

typedef struct sink {
	uint8_t *p;
	size_t n, cap;
} sink;

static int sink_add(void *arg, const char *data, size_t len)
{
	sink *s = arg;
	CHECK(len > 0 && s->n + len <= s->cap);
	memcpy(s->p + s->n, data, len);
	s->n += len;
	return 0;
}

typedef struct chunk_res {
	int rc, status;
	size_t used;
	sink out;
} chunk_res;

static void run_chunked(const uint8_t *d, size_t size, uint64_t max_body, int bytewise,
                        chunk_res *r)
{
	sl_h1p_chunked ck;
	sl_h1p_chunked_init(&ck, max_body, 256);
	r->out.p = malloc(size ? size : 1);
	r->out.n = 0;
	r->out.cap = size;
	size_t off = 0;
	int rc = SL_H1P_MORE;
	while (rc == SL_H1P_MORE && off < size) {
		size_t n = bytewise ? 1 : size - off, used = 0;
		rc = sl_h1p_chunked_feed(&ck, (const char *)d + off, n, &used, sink_add, &r->out);
		CHECK(used <= n);
		if (rc == SL_H1P_MORE)
			CHECK(used == n);
		off += used;
	}
	r->rc = rc;
	r->status = rc == SL_H1P_ERROR ? ck.err_status : 0;
	r->used = off;
	CHECK(ck.total == r->out.n && ck.total <= max_body);
	if (rc == SL_H1P_ERROR)
		CHECK(ck.err_status == 400 || ck.err_status == 413 || ck.err_status == 431);
}

static void chunked_both(const uint8_t *d, size_t size, uint64_t max_body)
{
	chunk_res a, b;
	run_chunked(d, size, max_body, 0, &a);
	if (size <= 4096) {
		run_chunked(d, size, max_body, 1, &b);
		CHECK(a.rc == b.rc && a.status == b.status && a.out.n == b.out.n);
		CHECK(memcmp(a.out.p, b.out.p, a.out.n) == 0);
		if (a.rc != SL_H1P_ERROR)
			CHECK(a.used == b.used);
		free(b.out.p);
	}
	free(a.out.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t hsh = 2166136261u; /* FNV-1a */
	for (size_t i = 0; i < size; i++)
		hsh = (hsh ^ data[i]) * 16777619u;
	size_t max = (hsh & 3) == 0 ? 16 + (hsh >> 8) % 256 : 16384;
	size_t cut = size ? (hsh >> 4) % (size + 1) : 0;

	static head_res whole, split, bytes; /* large: keep off the stack */
	parse_head(data, size, max, NULL, 0, &whole);
	check_head(data, size, max, &whole);
	parse_head(data, size, max, &cut, 1, &split);
	same_head(&whole, &split);
	if (size <= 4096) {
		size_t *cuts = malloc((size ? size : 1) * sizeof *cuts);
		for (size_t i = 0; i < size; i++)
			cuts[i] = i + 1;
		parse_head(data, size, max, cuts, size ? size - 1 : 0, &bytes);
		free(cuts);
		same_head(&whole, &bytes);
	}
	uint64_t max_body = (hsh & 0x30) == 0 ? (hsh >> 12) % 64 : 1u << 20;
	if (whole.rc == SL_H1P_DONE && whole.h.chunked)
		chunked_both(data + whole.h.head_len, size - whole.h.head_len, max_body);
	else if (size && data[0] >= '0' && data[0] <= '9')
		chunked_both(data, size, max_body); /* the decoder on its own */
	return 0;
}
