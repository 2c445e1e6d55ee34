/* dynbuf.h - growable byte buffer with a hard upper bound (after curl's
 * dynbuf).  The content is always NUL-terminated.  When an append would
 * take the length over max, nothing is appended and SL_ETOOBIG is returned
 * (the buffer keeps what it had).  Not thread-safe: one owner. */
#ifndef SL_CORE_DYNBUF_H
#define SL_CORE_DYNBUF_H
#include <stddef.h>
#include <string.h>
#include "sluice/sluice.h"

typedef struct sl_dynbuf {
	char *p;     /* NULL until the first append */
	size_t len;  /* bytes, excluding the NUL */
	size_t cap;  /* allocated bytes */
	size_t max;  /* bound on len */
} sl_dynbuf;

void sl_dynbuf_init(sl_dynbuf *b, size_t max);
void sl_dynbuf_free(sl_dynbuf *b);
/* Empties the buffer, keeps the allocation. */
void sl_dynbuf_reset(sl_dynbuf *b);
int sl_dynbuf_add_slow(sl_dynbuf *b, const void *data, size_t len);
/* Appends len bytes (data may be NULL when len is 0).  SL_OK, SL_ETOOBIG
 * (over max: nothing appended), SL_ENOMEM.  Inline when it fits the
 * allocation (cap <= max + 1, so that also keeps len <= max). */
static inline int sl_dynbuf_add(sl_dynbuf *b, const void *data, size_t len)
{
	if (b->p && len < b->cap - b->len) {
		if (len)
			memcpy(b->p + b->len, data, len);
		b->len += len;
		b->p[b->len] = '\0';
		return SL_OK;
	}
	return sl_dynbuf_add_slow(b, data, len);
}
/* Makes room for extra more bytes (and the NUL) without changing the
 * content, so a writer can fill b->p + b->len directly and then set len
 * (and the NUL).  SL_ETOOBIG when len + extra would pass max, SL_ENOMEM. */
int sl_dynbuf_reserve(sl_dynbuf *b, size_t extra);
int sl_dynbuf_addstr(sl_dynbuf *b, const char *s);
int sl_dynbuf_printf(sl_dynbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Returns the content ("" when empty, never NULL). */
static inline const char *sl_dynbuf_str(const sl_dynbuf *b)
{
	return b->p ? b->p : "";
}
/* Takes the allocation out (caller frees); the buffer is left empty. */
char *sl_dynbuf_take(sl_dynbuf *b, size_t *len);

#endif
