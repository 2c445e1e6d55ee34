/* fuzz_h1c.c - libFuzzer harness for the native transport's HTTP/1.x
 * response parser (src/worker/openai/h1c.c).
 *
 * The input is the bytes an upstream sends.  The first byte picks the head
 * bound (so the "too large" paths are reached with small inputs) and
 * whether the connection closes after the last byte; the rest is parsed
 * whole, in two pieces (cut derived from the bytes) and one byte at a time
 * (inputs up to 4 KiB), and every result must be the same: return value,
 * bytes used, body bytes, every field, the error.  Invariants of each
 * result are checked too: bytes used within the input, body no longer than
 * the input, a complete Content-Length body exactly that long, a complete
 * response has a final status, the Content-Type is a NUL-terminated prefix,
 * errors carry a reason. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "worker/openai/h1c.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)
#define MAX_BODY (1u << 16)

typedef struct result {
	int rc;
	size_t used;
	size_t blen;
	uint64_t bhash; /* FNV-1a of the body */
	sl_h1c p;
} result;

static int on_data(void *arg, const char *d, size_t n)
{
	result *r = arg;
	CHECK(n > 0);
	for (size_t i = 0; i < n; i++)
		r->bhash = (r->bhash ^ (unsigned char)d[i]) * 1099511628211ull;
	r->blen += n;
	return 0;
}

static void run(const uint8_t *d, size_t size, uint32_t max_head, int eof,
                const size_t *cuts, size_t ncuts, result *r)
{
	memset(r, 0, sizeof *r);
	r->bhash = 14695981039346656037ull;
	sl_h1c_init(&r->p, max_head);
	int rc = SL_H1C_MORE;
	size_t from = 0;
	for (size_t i = 0; i <= ncuts && rc == SL_H1C_MORE; i++) {
		size_t to = i < ncuts ? cuts[i] : size;
		size_t used = (size_t)-1;
		rc = sl_h1c_feed(&r->p, (const char *)d + from, to - from, &used, on_data, r);
		if (rc == SL_H1C_MORE)
			CHECK(used == to - from);
		if (rc != SL_H1C_ERROR) {
			CHECK(used <= to - from);
			r->used += used;
		}
		from = to;
	}
	if (rc == SL_H1C_MORE && eof)
		rc = sl_h1c_eof(&r->p);
	r->rc = rc;
}

static void invariants(const result *r, size_t size)
{
	const sl_h1c *p = &r->p;
	CHECK(r->rc == SL_H1C_MORE || r->rc == SL_H1C_DONE || r->rc == SL_H1C_ERROR);
	CHECK(r->blen <= size);
	if (r->rc != SL_H1C_ERROR)
		CHECK(r->used <= size);
	if (r->rc == SL_H1C_ERROR)
		CHECK(p->err && p->err[0]);
	CHECK(memchr(p->ctype, '\0', sizeof p->ctype) != NULL);
	if (r->rc == SL_H1C_DONE) {
		CHECK(p->head_done);
		CHECK(p->status >= 200 && p->status <= 999);
		if (p->has_cl)
			CHECK(r->blen == p->content_length);
		if (p->status == 204 || p->status == 304)
			CHECK(r->blen == 0);
		if (sl_h1c_reusable(p))
			CHECK(p->minor == 1 && !p->until_close && !p->conn_close);
		/* sticky */
		size_t used = 1;
		result tmp;
		CHECK(sl_h1c_feed((sl_h1c *)p, "x", 1, &used, on_data, &tmp) == SL_H1C_DONE && used == 0);
	}
	if (p->head_done)
		CHECK(p->status >= 200 && p->status <= 999 && p->minor <= 1);
	if (r->blen)
		CHECK(p->head_done);
}

static void same(const result *a, const result *b)
{
	CHECK(a->rc == b->rc);
	if (a->rc != SL_H1C_ERROR)
		CHECK(a->used == b->used);
	else
		CHECK(strcmp(a->p.err, b->p.err) == 0);
	CHECK(a->blen == b->blen && a->bhash == b->bhash);
	const sl_h1c *x = &a->p, *y = &b->p;
	CHECK(x->head_done == y->head_done);
	if (!x->head_done)
		return;
	CHECK(x->status == y->status && x->minor == y->minor && x->chunked == y->chunked &&
	      x->has_cl == y->has_cl && x->until_close == y->until_close &&
	      x->conn_close == y->conn_close && x->has_ctype == y->has_ctype &&
	      x->content_length == y->content_length && strcmp(x->ctype, y->ctype) == 0);
	if (a->rc == SL_H1C_DONE)
		CHECK(sl_h1c_reusable(x) == sl_h1c_reusable(y));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t ctl = data[0];
	data++;
	size--;
	/* bound: 16..1039 bytes, or the default */
	uint32_t max_head = (ctl & 0x80) ? 0 : 16u + (uint32_t)(ctl & 0x3f) * 16u;
	int eof = (ctl & 0x40) != 0;
	static result whole, split, bytes;
	run(data, size, max_head, eof, NULL, 0, &whole);
	invariants(&whole, size);

	size_t cut = 0;
	for (size_t i = 0; i < size && i < 8; i++)
		cut = cut * 31 + data[i];
	cut = size ? cut % (size + 1) : 0;
	run(data, size, max_head, eof, &cut, 1, &split);
	invariants(&split, size);
	same(&whole, &split);

	if (size <= 4096) {
		static size_t cuts[4096];
		for (size_t i = 0; i < size; i++)
			cuts[i] = i;
		run(data, size, max_head, eof, cuts, size, &bytes);
		invariants(&bytes, size);
		same(&whole, &bytes);
	}
	return 0;
}
