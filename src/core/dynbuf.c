/* dynbuf.c - bounded growable buffer; see dynbuf.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/dynbuf.h"

void sl_dynbuf_init(sl_dynbuf *b, size_t max)
{
	b->p = NULL;
	b->len = b->cap = 0;
	b->max = max;
}

void sl_dynbuf_free(sl_dynbuf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

void sl_dynbuf_reset(sl_dynbuf *b)
{
	b->len = 0;
	if (b->p)
		b->p[0] = '\0';
}

static int grow(sl_dynbuf *b, size_t need)
{
	if (need <= b->cap)
		return SL_OK;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap *= 2;
	if (cap > b->max + 1)
		cap = b->max + 1;
	char *np = realloc(b->p, cap);
	if (!np)
		return SL_ENOMEM;
	b->p = np;
	b->cap = cap;
	return SL_OK;
}

int sl_dynbuf_reserve(sl_dynbuf *b, size_t extra)
{
	if (extra > b->max || b->len > b->max - extra)
		return SL_ETOOBIG;
	return grow(b, b->len + extra + 1);
}

int sl_dynbuf_add_slow(sl_dynbuf *b, const void *data, size_t len)
{
	if (len > b->max || b->len > b->max - len)
		return SL_ETOOBIG;
	int rc = grow(b, b->len + len + 1);
	if (rc)
		return rc;
	if (len)
		memcpy(b->p + b->len, data, len);
	b->len += len;
	b->p[b->len] = '\0';
	return SL_OK;
}

int sl_dynbuf_addstr(sl_dynbuf *b, const char *s)
{
	return sl_dynbuf_add(b, s, strlen(s));
}

int sl_dynbuf_printf(sl_dynbuf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n < 0)
		return SL_EINVAL;
	if ((size_t)n < sizeof tmp)
		return sl_dynbuf_add(b, tmp, (size_t)n);
	char *big = malloc((size_t)n + 1);
	if (!big)
		return SL_ENOMEM;
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	int rc = sl_dynbuf_add(b, big, (size_t)n);
	free(big);
	return rc;
}

char *sl_dynbuf_take(sl_dynbuf *b, size_t *len)
{
	char *p = b->p;
	if (len)
		*len = b->len;
	b->p = NULL;
	b->len = b->cap = 0;
	return p;
}
