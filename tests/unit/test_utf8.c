/* test_utf8.c - strict UTF-8 validation (core/utf8.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/utf8.h"

/* Reference: decode by the definition (RFC 3629 section 4 + code point
 * range checks), independent of the table-driven implementation. */
static int ref_valid(const unsigned char *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		unsigned c = s[i];
		size_t n;
		uint32_t cp, min;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xE0) == 0xC0) {
			n = 2; cp = c & 0x1F; min = 0x80;
		} else if ((c & 0xF0) == 0xE0) {
			n = 3; cp = c & 0x0F; min = 0x800;
		} else if ((c & 0xF8) == 0xF0) {
			n = 4; cp = c & 0x07; min = 0x10000;
		} else {
			return 0;
		}
		if (len - i < n)
			return 0;
		for (size_t k = 1; k < n; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
		i += n;
	}
	return 1;
}

/* jansson's view: json_stringn() refuses invalid UTF-8. */
static int jansson_valid(const char *s, size_t len)
{
	json_t *j = json_stringn(s, len);
	json_decref(j);
	return j != NULL;
}

#define V(lit) assert_true(sl_utf8_valid(lit, sizeof(lit) - 1))
#define I(lit) assert_false(sl_utf8_valid(lit, sizeof(lit) - 1))

static void test_vectors(void **state)
{
	(void)state;
	assert_true(sl_utf8_valid(NULL, 0));
	V("");
	V("hello, world");
	V("caf\xc3\xa9");
	V("\xe2\x82\xac");             /* EURO SIGN */
	V("\xf0\x9f\x98\x80");         /* U+1F600 */
	V("\xf4\x8f\xbf\xbf");         /* U+10FFFF */
	V("\xed\x9f\xbf");             /* U+D7FF */
	V("\xee\x80\x80");             /* U+E000 */
	V("\xef\xbb\xbf");             /* BOM */
	V("\xef\xbf\xbf");             /* U+FFFF (a noncharacter, still valid) */
	V("a\0b");                     /* NUL is valid UTF-8 */
	I("\x80");                     /* stray continuation */
	I("\xbf");
	I("\xc0\x80");                 /* overlong NUL */
	I("\xc1\xbf");                 /* overlong */
	I("\xe0\x80\xaf");             /* overlong '/' */
	I("\xe0\x9f\xbf");             /* overlong U+07FF */
	I("\xf0\x80\x80\xaf");         /* overlong */
	I("\xf0\x8f\xbf\xbf");         /* overlong U+FFFF */
	I("\xed\xa0\x80");             /* U+D800 surrogate */
	I("\xed\xbf\xbf");             /* U+DFFF surrogate */
	I("\xed\xa0\x80\xed\xb0\x80"); /* CESU-8 pair */
	I("\xf4\x90\x80\x80");         /* U+110000 */
	I("\xf5\x80\x80\x80");
	I("\xf8\x88\x80\x80\x80");     /* 5-byte form */
	I("\xfe");
	I("\xff");
	I("\xc3");                     /* truncated */
	I("\xe2\x82");
	I("\xf0\x9f\x98");
	I("\xc3\x28");                 /* bad continuation */
	I("\xe2\x28\xa1");
	I("\xf0\x9f\x28\x80");
}

static void test_exhaustive_short(void **state)
{
	(void)state;
	unsigned char b[3];
	for (unsigned x = 0; x < 256; x++) {
		b[0] = (unsigned char)x;
		assert_int_equal(sl_utf8_valid((char *)b, 1), ref_valid(b, 1));
		for (unsigned y = 0; y < 256; y++) {
			b[1] = (unsigned char)y;
			int r2 = ref_valid(b, 2);
			assert_int_equal(sl_utf8_valid((char *)b, 2), r2);
			assert_int_equal(jansson_valid((char *)b, 2), r2);
		}
	}
	/* every 3-byte string: 16M cases against the reference */
	for (unsigned x = 0; x < 256; x++)
		for (unsigned y = 0; y < 256; y++)
			for (unsigned z = 0; z < 256; z++) {
				b[0] = (unsigned char)x;
				b[1] = (unsigned char)y;
				b[2] = (unsigned char)z;
				if (sl_utf8_valid((char *)b, 3) != ref_valid(b, 3))
					fail_msg("mismatch on %02x %02x %02x", x, y, z);
			}
}

static void test_four_byte(void **state)
{
	(void)state;
	static const unsigned char tails[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f,
	                                      0xa0, 0xbf, 0xc0, 0xff};
	unsigned char b[4];
	for (unsigned x = 0xE0; x < 256; x++)
		for (unsigned y = 0; y < 256; y++)
			for (size_t k = 0; k < sizeof tails; k++)
				for (size_t l = 0; l < sizeof tails; l++) {
					b[0] = (unsigned char)x;
					b[1] = (unsigned char)y;
					b[2] = tails[k];
					b[3] = tails[l];
					int r = ref_valid(b, 4);
					assert_int_equal(sl_utf8_valid((char *)b, 4), r);
					assert_int_equal(jansson_valid((char *)b, 4), r);
				}
}

static void test_random_vs_jansson(void **state)
{
	(void)state;
	srand(1234);
	unsigned char buf[64];
	for (int it = 0; it < 200000; it++) {
		size_t n = (size_t)(rand() % (int)sizeof buf);
		for (size_t i = 0; i < n; i++) {
			int r = rand() % 8;
			/* bias towards ASCII and plausible sequences */
			buf[i] = (unsigned char)(r < 3 ? 0x20 + rand() % 0x5f
			                        : r < 5 ? 0x80 + rand() % 0x40
			                        : rand() % 256);
		}
		int ref = ref_valid(buf, n);
		assert_int_equal(sl_utf8_valid((char *)buf, n), ref);
		if (ref || !memchr(buf, 0, n))
			assert_int_equal(jansson_valid((char *)buf, n), ref);
	}
}

static void test_ascii_fast_path_alignment(void **state)
{
	(void)state;
	char buf[80];
	memset(buf, 'a', sizeof buf);
	assert_true(sl_utf8_valid(buf, sizeof buf));
	for (size_t pos = 0; pos < sizeof buf; pos++) {
		for (size_t off = 0; off < 8 && off < pos + 1; off++) {
			memset(buf, 'a', sizeof buf);
			buf[pos] = (char)0x80;
			assert_false(sl_utf8_valid(buf + off, sizeof buf - off));
			assert_int_equal(sl_utf8_valid_prefix(buf + off, sizeof buf - off), pos - off);
		}
		/* a valid 2-byte char at every position */
		memset(buf, 'a', sizeof buf);
		if (pos + 1 < sizeof buf) {
			buf[pos] = (char)0xc3;
			buf[pos + 1] = (char)0xa9;
			assert_true(sl_utf8_valid(buf, sizeof buf));
		}
	}
}

static void test_prefix_and_seq_len(void **state)
{
	(void)state;
	const char *s = "ab\xe2\x82\xac" "c\xf0\x9f\x98";
	size_t n = strlen(s);
	assert_int_equal(sl_utf8_valid_prefix(s, n), 6);   /* up to "c" */
	assert_int_equal(sl_utf8_valid_prefix(s, 4), 2);   /* euro cut */
	assert_int_equal(sl_utf8_valid_prefix(s, 5), 5);
	assert_int_equal(sl_utf8_valid_prefix("", 0), 0);
	assert_int_equal(sl_utf8_seq_len("a", 1), 1);
	assert_int_equal(sl_utf8_seq_len("\xc3\xa9", 2), 2);
	assert_int_equal(sl_utf8_seq_len("\xc3\xa9", 1), 0);
	assert_int_equal(sl_utf8_seq_len("\xe2\x82\xac", 3), 3);
	assert_int_equal(sl_utf8_seq_len("\xf0\x9f\x98\x80", 4), 4);
	assert_int_equal(sl_utf8_seq_len("\xf0\x9f\x98\x80", 3), 0);
	assert_int_equal(sl_utf8_seq_len("\xed\xa0\x80", 3), 0);
	assert_int_equal(sl_utf8_seq_len("\x80", 1), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_exhaustive_short),
		cmocka_unit_test(test_four_byte),
		cmocka_unit_test(test_random_vs_jansson),
		cmocka_unit_test(test_ascii_fast_path_alignment),
		cmocka_unit_test(test_prefix_and_seq_len),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
