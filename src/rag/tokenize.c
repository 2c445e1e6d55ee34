/* tokenize.c - the BM25 tokenizer and UTF-8 repair (see bm25.h for what
 * "Unicode-aware" covers).  Pure functions: any thread. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "core/utf8.h"
#include "rag/bm25.h"
#include "rag/bm25_int.h"

/* English stop words, sorted (strcmp order) for bsearch; the unit test
 * checks the order. */
const char *const sl__bm25_stopwords[] = {
	"a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any",
	"are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both",
	"but", "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each",
	"few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here",
	"hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it",
	"its", "itself", "just", "me", "more", "most", "my", "myself", "no", "nor", "not", "now",
	"of", "off", "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out",
	"over", "own", "same", "she", "should", "so", "some", "such", "than", "that", "the",
	"their", "theirs", "them", "themselves", "then", "there", "these", "they", "this",
	"those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were",
	"what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would",
	"you", "your", "yours", "yourself", "yourselves"};
const size_t sl__bm25_n_stopwords = sizeof sl__bm25_stopwords / sizeof sl__bm25_stopwords[0];

int sl__bm25_is_stopword(const char *t, size_t n)
{
	if (n > 10)
		return 0;
	size_t lo = 0, hi = sl__bm25_n_stopwords;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const char *w = sl__bm25_stopwords[mid];
		size_t wl = strlen(w);
		int c = memcmp(t, w, n < wl ? n : wl);
		if (c == 0)
			c = (n > wl) - (n < wl);
		if (c == 0)
			return 1;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return 0;
}

static uint32_t decode(const unsigned char *s, size_t n)
{
	switch (n) {
	case 2: return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
	case 3: return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
	default:
		return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
		       ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
	}
}

static size_t encode(uint32_t cp, char *o)
{
	if (cp < 0x800) {
		o[0] = (char)(0xC0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (char)(0xF0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	o[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

static int is_sep(uint32_t cp)
{
	if (cp <= 0xBF)
		return 1; /* U+0080..U+00BF (ASCII is handled before) */
	if (cp == 0xD7 || cp == 0xF7)
		return 1;
	if (cp < 0x2000)
		return 0;
	if (cp <= 0x2BFF)
		return 1;
	if (cp >= 0x3000 && cp <= 0x303F)
		return 1;
	if ((cp >= 0xFE10 && cp <= 0xFE1F) || (cp >= 0xFE30 && cp <= 0xFE6F) || cp == 0xFEFF)
		return 1;
	if ((cp >= 0xFF00 && cp <= 0xFF0F) || (cp >= 0xFF1A && cp <= 0xFF20) ||
	    (cp >= 0xFF3B && cp <= 0xFF40) || (cp >= 0xFF5B && cp <= 0xFF65))
		return 1;
	if (cp >= 0xFFF0 && cp <= 0xFFFF)
		return 1;
	if (cp >= 0x1F000 && cp <= 0x1FAFF)
		return 1;
	return 0;
}

static int is_ideo(uint32_t cp)
{
	return (cp >= 0x3040 && cp <= 0x30FF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
	       (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0xF900 && cp <= 0xFAFF) ||
	       (cp >= 0x20000 && cp <= 0x2FFFF);
}

static uint32_t fold(uint32_t cp)
{
	if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7)
		return cp + 0x20;
	if (cp >= 0x391 && cp <= 0x3A9)
		return cp + 0x20;
	if (cp >= 0x410 && cp <= 0x42F)
		return cp + 0x20;
	if (cp >= 0x400 && cp <= 0x40F)
		return cp + 0x50;
	return cp;
}

static const unsigned char ascii_word[128] = {
	['0'] = '0', ['1'] = '1', ['2'] = '2', ['3'] = '3', ['4'] = '4',
	['5'] = '5', ['6'] = '6', ['7'] = '7', ['8'] = '8', ['9'] = '9',
	['a'] = 'a', ['b'] = 'b', ['c'] = 'c', ['d'] = 'd', ['e'] = 'e', ['f'] = 'f',
	['g'] = 'g', ['h'] = 'h', ['i'] = 'i', ['j'] = 'j', ['k'] = 'k', ['l'] = 'l',
	['m'] = 'm', ['n'] = 'n', ['o'] = 'o', ['p'] = 'p', ['q'] = 'q', ['r'] = 'r',
	['s'] = 's', ['t'] = 't', ['u'] = 'u', ['v'] = 'v', ['w'] = 'w', ['x'] = 'x',
	['y'] = 'y', ['z'] = 'z',
	['A'] = 'a', ['B'] = 'b', ['C'] = 'c', ['D'] = 'd', ['E'] = 'e', ['F'] = 'f',
	['G'] = 'g', ['H'] = 'h', ['I'] = 'i', ['J'] = 'j', ['K'] = 'k', ['L'] = 'l',
	['M'] = 'm', ['N'] = 'n', ['O'] = 'o', ['P'] = 'p', ['Q'] = 'q', ['R'] = 'r',
	['S'] = 's', ['T'] = 't', ['U'] = 'u', ['V'] = 'v', ['W'] = 'w', ['X'] = 'x',
	['Y'] = 'y', ['Z'] = 'z',
};

size_t sl_bm25_tokenize(const char *text, size_t len, int stopwords,
                        void (*fn)(void *arg, const char *tok, size_t tlen), void *arg)
{
	const unsigned char *s = (const unsigned char *)text;
	char tok[SL_BM25_MAX_TERM_BYTES + 4];
	size_t tl = 0, count = 0, i = 0;
	int full = 0; /* the token reached the cap: further chars are dropped */
#define FLUSH()                                                              \
	do {                                                                     \
		if (tl && !(stopwords && sl__bm25_is_stopword(tok, tl))) {          \
			if (fn)                                                          \
				fn(arg, tok, tl);                                            \
			count++;                                                         \
		}                                                                    \
		tl = 0;                                                              \
		full = 0;                                                            \
	} while (0)
	if (!text)
		return 0;
	while (i < len) {
		unsigned c = s[i];
		if (c < 0x80) {
			unsigned char w = ascii_word[c];
			if (w) {
				if (tl < SL_BM25_MAX_TERM_BYTES && !full)
					tok[tl++] = (char)w;
				else
					full = 1;
			} else {
				FLUSH();
			}
			i++;
			continue;
		}
		size_t n = sl_utf8_seq_len(text + i, len - i);
		if (!n) {
			FLUSH();
			i++;
			continue;
		}
		uint32_t cp = decode(s + i, n);
		if (is_sep(cp)) {
			FLUSH();
		} else if (is_ideo(cp)) {
			FLUSH();
			memcpy(tok, text + i, n);
			tl = n;
			FLUSH();
		} else {
			char e[4];
			size_t en = encode(fold(cp), e);
			if (!full && tl + en <= SL_BM25_MAX_TERM_BYTES) {
				memcpy(tok + tl, e, en);
				tl += en;
			} else {
				full = 1;
			}
		}
		i += n;
	}
	FLUSH();
#undef FLUSH
	return count;
}

/* U+FFFD in UTF-8 */
#define REPL "\xEF\xBF\xBD"

char *sl__bm25_utf8_repair(const char *s, size_t len, size_t *out_len, size_t *n_bad)
{
	size_t bad = 0, i = 0;
	/* count first, so the output is allocated once */
	while (i < len) {
		size_t ok = sl_utf8_valid_prefix(s + i, len - i);
		i += ok;
		if (i < len) {
			bad++;
			i++;
		}
	}
	*n_bad = bad;
	if (bad > (SIZE_MAX - len - 1) / 2)
		return NULL;
	char *o = malloc(len + 2 * bad + 1);
	if (!o)
		return NULL;
	size_t w = 0;
	i = 0;
	while (i < len) {
		size_t ok = sl_utf8_valid_prefix(s + i, len - i);
		memcpy(o + w, s + i, ok);
		w += ok;
		i += ok;
		if (i < len) {
			memcpy(o + w, REPL, 3);
			w += 3;
			i++;
		}
	}
	o[w] = '\0';
	*out_len = w;
	return o;
}
