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

#endif
