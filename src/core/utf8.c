/* utf8.c - strict UTF-8 validation; see utf8.h. */
#include "core/utf8.h"

#include <stdint.h>
#include <string.h>

size_t sl_utf8_seq_len(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	unsigned c = u[0];
	if (c < 0x80)
		return 1;
	if (c < 0xC2) /* continuation byte or overlong C0/C1 */
		return 0;
	if (c < 0xE0) {
		if (len < 2 || (u[1] & 0xC0) != 0x80)
			return 0;
		return 2;
	}
	if (c < 0xF0) {
		if (len < 3)
			return 0;
		unsigned c1 = u[1];
		if (c == 0xE0) {
			if (c1 < 0xA0 || c1 > 0xBF) /* overlong */
				return 0;
		} else if (c == 0xED) {
			if (c1 < 0x80 || c1 > 0x9F) /* surrogates */
				return 0;
		} else if ((c1 & 0xC0) != 0x80) {
			return 0;
		}
		if ((u[2] & 0xC0) != 0x80)
			return 0;
		return 3;
	}
	if (c < 0xF5) {
		if (len < 4)
			return 0;
		unsigned c1 = u[1];
		if (c == 0xF0) {
			if (c1 < 0x90 || c1 > 0xBF) /* overlong */
				return 0;
		} else if (c == 0xF4) {
			if (c1 < 0x80 || c1 > 0x8F) /* > U+10FFFF */
				return 0;
		} else if ((c1 & 0xC0) != 0x80) {
			return 0;
		}
		if ((u[2] & 0xC0) != 0x80 || (u[3] & 0xC0) != 0x80)
			return 0;
		return 4;
	}
	return 0; /* F5..FF */
}

size_t sl_utf8_valid_prefix(const char *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		/* ASCII fast path: 8 bytes at a time */
		while (len - i >= 8) {
			uint64_t w;
			memcpy(&w, s + i, 8);
			if (w & UINT64_C(0x8080808080808080))
				break;
			i += 8;
		}
		if (i >= len)
			break;
		if ((unsigned char)s[i] < 0x80) {
			i++;
			continue;
		}
		size_t n = sl_utf8_seq_len(s + i, len - i);
		if (!n)
			return i;
		i += n;
	}
	return len;
}

int sl_utf8_valid(const char *s, size_t len)
{
	return sl_utf8_valid_prefix(s, len) == len;
}

/* JSON string bytes: 0 = plain (copy as is), 1 = needs an escape or ends the
 * string (control characters, '"', backslash), 2 = non-ASCII (validate as
 * UTF-8).  Shared by the JSON writers and the stream chunk extractor. */
const unsigned char sl_json_byte_class[256] = {
	1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
	0,0,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
	0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,0,0,0,
	0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
	2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,
	2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,
	2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,
	2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,
};
