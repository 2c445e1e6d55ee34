/*
 * redact.h - PII redaction and safety filtering for prompts and model
 * output, whole-text and streaming (PCRE2, JIT).
 *
 * A redactor (sl_redactor) is a compiled rule set: the built-in PII classes
 * switched on in its options, custom patterns, and safety rules (blocklist
 * terms and block patterns).  It is immutable once created and may be used
 * from any thread concurrently (read-only).  Each text or stream gets its own
 * state: sl_redact_text() keeps it on the call, sl_redact_stream is one
 * object per stream, used by one thread at a time ("not concurrently").
 *
 * Semantics (the same for whole text and for any split of it into pieces):
 * the text is scanned left to right; at the current position every rule
 * finds its leftmost valid match; the match that starts first wins (ties:
 * a safety rule first, then the longest, then the rule order secret, email,
 * iban, card, ssn, ipv4, ipv6, phone, custom patterns in the given order);
 * it is replaced by its replacement text and scanning resumes after it.  A
 * winning safety rule ends the output: the text before it is emitted, the
 * match and everything after it are not.  Validators (Luhn for cards,
 * mod-97 for IBAN, digit counts for phones, the 254-byte limit for emails)
 * are part of the match: a candidate that fails its check is no match.
 *
 * Streaming: a piece is appended and everything before the earliest
 * position where a match could still start (PCRE2_PARTIAL_HARD) is
 * emitted.  The held tail is bounded by sl_redactor_max_holdback() bytes;
 * a UTF-8 sequence is never split on emit.  The output of any split equals
 * the whole-text output byte for byte.  See docs/internals/redact.md.
 */
#ifndef SL_POST_REDACT_H
#define SL_POST_REDACT_H

#include <stddef.h>
#include <stdint.h>

#include "core/dynbuf.h"
#include "sluice/sluice.h"

/* Built-in PII classes (bit masks for sl_redact_opts.classes). */
enum {
	SL_PII_EMAIL = 1u << 0,
	SL_PII_PHONE = 1u << 1,   /* +CC international; US (555) 123-4567; 0-trunk national */
	SL_PII_CARD = 1u << 2,    /* 13-19 digits, spaces/dashes, Luhn-checked */
	SL_PII_IBAN = 1u << 3,    /* country length + mod-97 checked */
	SL_PII_SSN = 1u << 4,     /* US SSN, AAA-GG-SSSS (or spaces), valid areas */
	SL_PII_IPV4 = 1u << 5,    /* dotted quad, each octet <= 255 */
	SL_PII_IPV6 = 1u << 6,    /* full, ::-compressed, IPv4-mapped */
	SL_PII_SECRET = 1u << 7,  /* sk-..., AKIA..., ghp_..., xox?-, AIza..., JWT, Bearer X */
	SL_PII_ALL = 0xFFu
};
#define SL_PII__COUNT 8

/* Bounds. */
#define SL_REDACT_DEFAULT_MAX_LEN 256u   /* custom/block pattern, max_len == 0 */
#define SL_REDACT_MAX_MAX_LEN 4096u      /* upper limit on max_len */
#define SL_REDACT_MAX_RULES 256u         /* custom + block patterns */
#define SL_REDACT_MAX_TERM 256u          /* bytes in one blocklist term */

/* A custom pattern.  name: 1..32 of [A-Za-z0-9_-], used in the default
 * replacement "[REDACTED:NAME]" (upper-cased) and in error messages.
 * pattern: PCRE2 syntax, UTF-8 mode (invalid UTF-8 in the text is
 * tolerated and never matched).  replacement: literal text, NULL = the
 * default.  max_len: bytes; a match, and anything the pattern looks at
 * ahead of its start, must fit in max_len bytes (see redact.md, "windowed
 * rules"); 0 = SL_REDACT_DEFAULT_MAX_LEN; over SL_REDACT_MAX_MAX_LEN is
 * SL_EINVAL.  It bounds the stream hold-back. */
typedef struct sl_redact_custom {
	const char *name;
	const char *pattern;
	const char *replacement;
	uint32_t max_len;
} sl_redact_custom;

/* Options, validated and copied by sl_redactor_create (the caller's arrays
 * and strings may be freed afterwards).
 * classes: SL_PII_* mask of built-in classes to redact.
 * block_terms: blocklist, matched case-insensitively (Unicode case folding)
 * as whole words (not preceded or followed by a letter, digit or '_');
 * 1..SL_REDACT_MAX_TERM bytes each, literal (no regex syntax).
 * block_patterns: PCRE2 regexes (UTF-8 mode), windowed with
 * SL_REDACT_DEFAULT_MAX_LEN like a custom pattern with max_len 0. */
typedef struct sl_redact_opts {
	unsigned classes;
	const sl_redact_custom *custom;
	size_t n_custom;
	const char *const *block_terms;
	size_t n_block_terms;
	const char *const *block_patterns;
	size_t n_block_patterns;
} sl_redact_opts;

/* Matches counted by a text or a stream. */
typedef struct sl_redact_stats {
	uint64_t matches[SL_PII__COUNT]; /* per built-in class, SL_PII_EMAIL = [0] ... */
	uint64_t custom;                 /* custom pattern matches, all patterns */
	uint64_t blocked;                /* 1 once a safety rule matched */
	uint64_t bytes_in, bytes_out;
} sl_redact_stats;

typedef struct sl_redactor sl_redactor;
typedef struct sl_redact_stream sl_redact_stream;

/* Compiles the rule set (PCRE2 + JIT where available).  On success *out is
 * the new redactor (free with sl_redactor_destroy) and SL_OK is returned.
 * On failure *out is untouched and err (when errlen > 0) gets one line:
 * e.g. "custom pattern 'ticket': missing closing parenthesis at offset 7".
 * Returns SL_EINVAL (bad option, pattern that does not compile, name,
 * max_len or term out of bounds) or SL_ENOMEM.  Any thread. */
int sl_redactor_create(const sl_redact_opts *o, sl_redactor **out, char *err,
                       size_t errlen);

/* Frees a redactor; NULL is a no-op.  No text or stream may still use it. */
void sl_redactor_destroy(sl_redactor *r);

/* Parses a comma-separated list of class names (email, phone, card, iban,
 * ssn, ipv4, ipv6, secret; "all" for every class; spaces around names are
 * ignored) into *mask.  On an unknown or empty name: SL_EINVAL, *mask
 * untouched and err gets "unknown class 'x' (classes: email, phone, ...)". */
int sl_pii_class_parse(const char *list, unsigned *mask, char *err, size_t errlen);

/* The lower-case name of class index i (0..SL_PII__COUNT-1), else NULL. */
const char *sl_pii_class_name(unsigned i);

/* Whole text: appends the redacted form of in[0..len) to out.  On a safety
 * match, out gets the redacted text before the match only, *blocked = 1 and
 * SL_OK is returned (blocked == NULL: SL_EFILTER is returned instead);
 * otherwise *blocked = 0.  st (optional) is overwritten with this text's
 * counts.  Errors: SL_ETOOBIG/SL_ENOMEM when out cannot grow (out then
 * holds a prefix of the result), SL_ETOOBIG when a custom pattern exceeds
 * PCRE2's match limits, SL_EINVAL on bad arguments.  Any thread. */
int sl_redact_text(const sl_redactor *r, const char *in, size_t len,
                   sl_dynbuf *out, int *blocked, sl_redact_stats *st);

/* New stream state on r (which must outlive it).  SL_OK / SL_ENOMEM. */
int sl_redact_stream_new(const sl_redactor *r, sl_redact_stream **out);

/* Appends len bytes (any split, including inside a UTF-8 sequence) and
 * appends to out the output that is now final.  Returns SL_OK, or
 * SL_EFILTER once a safety rule matched: the output before the match has
 * been emitted (in this call or earlier), nothing after it ever is, and
 * every later push/finish returns SL_EFILTER without output.  Other errors
 * (SL_ETOOBIG / SL_ENOMEM from out or the held buffer, SL_ESTATE after
 * finish) are sticky too.  Memory held: the tail (at most
 * sl_redactor_max_holdback() bytes after the call) plus lookbehind context
 * plus the piece being processed. */
int sl_redact_stream_push(sl_redact_stream *s, const char *piece, size_t len,
                          sl_dynbuf *out);

/* End of text: appends the rest of the output (the held tail, redacted).
 * Returns SL_OK, SL_EFILTER (a safety rule matched, now or before) or a
 * sticky error.  After it, push returns SL_ESTATE. */
int sl_redact_stream_finish(sl_redact_stream *s, sl_dynbuf *out);

/* Bytes received but not yet emitted. */
size_t sl_redact_stream_held(const sl_redact_stream *s);

/* Counts so far (valid until the stream is freed). */
const sl_redact_stats *sl_redact_stream_stats(const sl_redact_stream *s);

/* Worst-case hold-back in bytes: after any push, held <= this.  It is the
 * longest stretch a rule may still be deciding on: the longest possible
 * match plus the characters its boundary checks look at, plus 3 bytes of
 * an unfinished UTF-8 sequence. */
size_t sl_redactor_max_holdback(const sl_redactor *r);

/* Frees a stream; NULL is a no-op. */
void sl_redact_stream_free(sl_redact_stream *s);

#endif
