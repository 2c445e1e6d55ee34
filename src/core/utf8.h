/*
 * utf8.h - strict UTF-8 validation (RFC 3629 / Unicode Table 3-7).
 *
 * "Strict" means: no overlong forms (C0, C1, E0 80..9F, F0 80..8F), no
 * surrogates (ED A0..BF, i.e. U+D800..U+DFFF), nothing above U+10FFFF (F4
 * 90.., F5..FF), no stray continuation bytes, no truncated sequences.  NUL
 * bytes are valid UTF-8 (U+0000); callers that forbid them check separately.
 * The same rules as jansson applies to JSON text, so bytes this module
 * accepts jansson accepts inside strings, and vice versa.
 *
 * Pure functions: any thread.  ASCII runs are checked 8 bytes at a time.
 */
#ifndef SLUICE_CORE_UTF8_H
#define SLUICE_CORE_UTF8_H

#include <stddef.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Returns 1 when the len bytes at s are entirely valid UTF-8, else 0.
 * len == 0 is valid (s may then be NULL). */
int sl_utf8_valid(const char *s, size_t len);

/* Returns the length of the longest prefix of s made of complete, valid
 * sequences (== len when sl_utf8_valid(s, len)).  Useful to hold back a
 * sequence split across two stream chunks: a tail that is not valid may
 * still be the start of a valid sequence. */
size_t sl_utf8_valid_prefix(const char *s, size_t len);

/* Length (1..4) of the valid sequence starting at s (len > 0 bytes
 * available), or 0 when the bytes at s do not start a complete valid
 * sequence (invalid, or truncated by len). */
size_t sl_utf8_seq_len(const char *s, size_t len);

/* JSON string bytes: 0 = plain, 1 = control, '"' or backslash, 2 = non-ASCII. */
extern const unsigned char sl_json_byte_class[256];

/* The first byte in [p, end) that is not plain (class 0 above), or end.
 * 16 bytes at a time with SSE2 where the compiler has it. */
static inline const char *sl_json_plain_end(const char *p, const char *end)
{
#ifdef __SSE2__
	const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
	const __m128i space = _mm_set1_epi8(0x20);
	while (end - p >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
		/* signed: bytes >= 0x80 are negative, so "< 0x20" takes them too */
		__m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote),
		                                        _mm_cmpeq_epi8(v, bslash)),
		                           _mm_cmplt_epi8(v, space));
		int m = _mm_movemask_epi8(hit);
		if (m)
			return p + __builtin_ctz((unsigned)m);
		p += 16;
	}
#endif
	while (p < end && sl_json_byte_class[(unsigned char)*p] == 0)
		p++;
	return p;
}

#endif
