/* budget.c - the default token counter; see budget.h. */
#include "assemble/budget.h"
#include "core/utf8.h"

enum run { R_NONE, R_ALPHA, R_DIGIT, R_INTL, R_PUNCT, R_BLANK };

static size_t run_cost(enum run k, size_t n)
{
	switch (k) {
	case R_ALPHA: return (n + 7) / 8;
	case R_DIGIT: return (n + 2) / 3;
	case R_INTL: return (n * 2 + 4) / 5;  /* ceil(n / 2.5) */
	case R_PUNCT: return (n * 2 + 2) / 3; /* ceil(n / 1.5) */
	case R_BLANK: return n >= 2;
	default: return 0;
	}
}

size_t sl_tokens_approx(void *user, const char *s, size_t len)
{
	(void)user;
	size_t t = 0, n = 0, i = 0;
	enum run kind = R_NONE;
	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		enum run k;
		size_t adv = 1;
		if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') {
			k = R_ALPHA;
		} else if (c >= '0' && c <= '9') {
			k = R_DIGIT;
		} else if (c == ' ' || c == '\t') {
			k = R_BLANK;
		} else if (c == '\n' || c == '\r' || c < 0x20) {
			k = R_NONE;
		} else if (c < 0x80) {
			k = R_PUNCT;
		} else {
			adv = sl_utf8_seq_len(s + i, len - i);
			if (adv == 0) { /* invalid byte: one token */
				t += run_cost(kind, n);
				kind = R_NONE;
				n = 0;
				t++;
				i++;
				continue;
			}
			/* 3-byte sequences from E2 BA 80 (U+2E80) and all 4-byte ones */
			int wide = adv == 4 || (adv == 3 && (c > 0xE2 || (unsigned char)s[i + 1] >= 0xBA));
			if (wide) {
				t += run_cost(kind, n) + 1;
				kind = R_NONE;
				n = 0;
				i += adv;
				continue;
			}
			k = R_INTL;
		}
		if (k != kind) {
			t += run_cost(kind, n);
			kind = k;
			n = 0;
		}
		n++;
		i += adv;
	}
	return t + run_cost(kind, n);
}
