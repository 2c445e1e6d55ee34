/* fuzz_redact.c - libFuzzer harness for post/redact.
 *
 * Input: byte 0 picks a rule set (all classes; all + safety rules + custom
 * patterns, some windowed and UTF-8; a few classes), byte 1 seeds the
 * piece sizes, the rest is the text.  The text is redacted whole, then
 * streamed in pseudo-random pieces (1..16 bytes, and 1 byte for short
 * inputs): outputs, statuses and counts must be identical, the held tail
 * must stay within sl_redactor_max_holdback(), and when the text is valid
 * UTF-8 every emitted prefix must be too (no sequence split on emit). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/dynbuf.h"
#include "post/redact.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static sl_redactor *rs[3];

static void init(void)
{
	static const char *terms[] = {"bomb", "nerve agent", "ÜBEL"};
	static const char *pats[] = {"(?i)ignore (all )?previous", "x{3,}y"};
	static const sl_redact_custom cus[] = {
		{"greedy", "a.*b", NULL, 24},
		{"lazy", "<<.*?>>", "<>", 40},
		{"uni", "(?i)jörg|日本", NULL, 0},
		{"ticket", "\\bTCK-\\d{2,6}\\b", NULL, 12},
	};
	sl_redact_opts o0 = {.classes = SL_PII_ALL};
	sl_redact_opts o1 = {SL_PII_ALL, cus, 4, terms, 3, pats, 2};
	sl_redact_opts o2 = {.classes = SL_PII_EMAIL | SL_PII_CARD | SL_PII_IPV6};
	CHECK(sl_redactor_create(&o0, &rs[0], NULL, 0) == SL_OK);
	CHECK(sl_redactor_create(&o1, &rs[1], NULL, 0) == SL_OK);
	CHECK(sl_redactor_create(&o2, &rs[2], NULL, 0) == SL_OK);
}

/* Valid UTF-8 up to len (a local copy: the harness links no utf8.c). */
static int utf8_ok(const unsigned char *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		unsigned c = s[i], n;
		if (c < 0x80) { i++; continue; }
		if (c >= 0xC2 && c <= 0xDF) n = 2;
		else if (c >= 0xE0 && c <= 0xEF) n = 3;
		else if (c >= 0xF0 && c <= 0xF4) n = 4;
		else return 0;
		if (len - i < n) return 0;
		unsigned c1 = s[i + 1], lo = 0x80, hi = 0xBF;
		if (c == 0xE0) lo = 0xA0;
		else if (c == 0xED) hi = 0x9F;
		else if (c == 0xF0) lo = 0x90;
		else if (c == 0xF4) hi = 0x8F;
		if (c1 < lo || c1 > hi) return 0;
		for (unsigned k = 2; k < n; k++)
			if ((s[i + k] & 0xC0) != 0x80) return 0;
		i += n;
	}
	return 1;
}

static void stream(const sl_redactor *r, const char *t, size_t n, uint32_t seed, int bytes,
                   int valid, sl_dynbuf *out, int *rc_out, sl_redact_stats *st)
{
	sl_redact_stream *s;
	CHECK(sl_redact_stream_new(r, &s) == SL_OK);
	int rc = SL_OK;
	size_t off = 0;
	while (off < n && rc == SL_OK) {
		seed = seed * 1103515245u + 12345u;
		size_t k = bytes ? 1 : 1 + (seed >> 16) % 16;
		if (k > n - off)
			k = n - off;
		rc = sl_redact_stream_push(s, t + off, k, out);
		off += k;
		CHECK(rc == SL_OK || rc == SL_EFILTER);
		if (rc == SL_OK)
			CHECK(sl_redact_stream_held(s) <= sl_redactor_max_holdback(r));
		if (valid)
			CHECK(utf8_ok((const unsigned char *)sl_dynbuf_str(out), out->len));
	}
	if (rc == SL_OK)
		rc = sl_redact_stream_finish(s, out);
	*rc_out = rc;
	*st = *sl_redact_stream_stats(s);
	sl_redact_stream_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!rs[0])
		init();
	if (size < 2)
		return 0;
	const sl_redactor *r = rs[data[0] % 3];
	uint32_t seed = data[1];
	const char *t = (const char *)data + 2;
	size_t n = size - 2;
	int valid = utf8_ok((const unsigned char *)t, n);

	sl_dynbuf whole, part;
	sl_dynbuf_init(&whole, (size_t)1 << 26);
	sl_dynbuf_init(&part, (size_t)1 << 26);
	int blocked = 0;
	sl_redact_stats ws, ps;
	CHECK(sl_redact_text(r, t, n, &whole, &blocked, &ws) == SL_OK);
	for (int pass = 0; pass < (n <= 2048 ? 2 : 1); pass++) {
		int rc;
		sl_dynbuf_reset(&part);
		stream(r, t, n, seed, pass, valid, &part, &rc, &ps);
		CHECK(rc == (blocked ? SL_EFILTER : SL_OK));
		CHECK(part.len == whole.len && memcmp(sl_dynbuf_str(&part), sl_dynbuf_str(&whole), whole.len) == 0);
		CHECK(memcmp(ps.matches, ws.matches, sizeof ws.matches) == 0 && ps.custom == ws.custom);
	}
	sl_dynbuf_free(&whole);
	sl_dynbuf_free(&part);
	return 0;
}
