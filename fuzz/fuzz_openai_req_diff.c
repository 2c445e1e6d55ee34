/* fuzz_openai_req_diff.c - structure-aware differential fuzzer for the OpenAI
 * request parser.
 *
 * fuzz_openai_req.c feeds raw bytes, and few of them are valid requests, so
 * the fast path mostly declines there.  Here the input bytes drive a
 * generator of request bodies that are valid or nearly so: every known
 * field, with the right type most of the time and any JSON value or null
 * otherwise; messages with roles, string / part-array / null content, names
 * and unknown members; unknown fields with nested values (sometimes deeper
 * than the fast path goes); keys repeated at every level; strings made of
 * plain text, every escape, surrogate pairs, raw UTF-8 and, rarely, invalid
 * pieces; numbers at every edge (int64, integral reals, 1e309, underflow,
 * digits beyond Clinger's fast path); random blanks; and now and then one
 * corrupted or truncated byte.  Limits are drawn from the input too.  Each
 * body goes through diff() of fuzz_openai_req.c: both paths, both kinds,
 * compared field by field, document and error included. */
#define FUZZ_OPENAI_REQ_NO_MAIN
#include "fuzz_openai_req.c"

#define MAX_BODY (64 * 1024)

typedef struct gen {
	const uint8_t *d;
	size_t n, i;
	char *buf;
	size_t len;
	int depth;
} gen;

/* A choice in [0, n): 0 once the input is used up (0 is always the simple,
 * terminating choice). */
static unsigned pick(gen *g, unsigned n)
{
	if (g->i >= g->n)
		return 0;
	return g->d[g->i++] % n;
}

static void put(gen *g, const char *s, size_t n)
{
	if (g->len + n > MAX_BODY)
		n = MAX_BODY - g->len;
	memcpy(g->buf + g->len, s, n);
	g->len += n;
}

static void puts_(gen *g, const char *s)
{
	put(g, s, strlen(s));
}

static void blank(gen *g)
{
	static const char *const w[] = {" ", "\n", "\t", "\r\n  ", "   "};
	if (pick(g, 6) == 5)
		puts_(g, w[pick(g, 5)]);
}

static const char *const pieces_ok[] = {
	"hello", " ", "a", "Say something.", "lorem ipsum dolor sit amet ", "\\n", "\\\"",
	"\\\\", "\\/", "\\b", "\\f", "\\r", "\\t", "\\u00e9", "\\u4E2D", "\\ud83d\\ude00",
	"\\uDBFF\\uDFFF", "\\u0000", "\\uFFFF", "\\u2028", "\\u007f", "\xc3\xa9", "\xe4\xb8\xad",
	"\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf", "\xef\xbb\xbf", "\x7f", "0123456789abcdef",
};
static const char *const pieces_bad[] = {
	"\\ud800", "\\udc00", "\\ud800\\u0041", "\\ud800\\ud800", "\\u12", "\\u12g4", "\\x",
	"\\'", "\xff", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe4\xb8",
	"\x80", "\x01", "\t", "\n",
};
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* The inside of a string (no quotes). */
static void text(gen *g, unsigned max_pieces)
{
	unsigned n = pick(g, max_pieces + 1);
	for (unsigned i = 0; i < n; i++) {
		unsigned c = pick(g, 128);
		if (c < 80)
			puts_(g, pieces_ok[c % NELEM(pieces_ok)]);
		else if (c < 127) {
			char ch = (char)(' ' + pick(g, 95));
			if (ch == '"' || ch == '\\')
				ch = '_';
			put(g, &ch, 1);
		} else
			puts_(g, pieces_bad[pick(g, NELEM(pieces_bad))]);
	}
}

static void string(gen *g, unsigned max_pieces)
{
	puts_(g, "\"");
	text(g, max_pieces);
	puts_(g, "\"");
}

/* One of the given literal strings (already quoted or escaped as needed),
 * or now and then a generated one. */
static void one_of(gen *g, const char *const *v, size_t n)
{
	if (pick(g, 2) == 0) { /* half the time the first, usual, one */
		puts_(g, v[0]);
		return;
	}
	unsigned c = pick(g, (unsigned)n + 1);
	if (c == n)
		string(g, 3);
	else
		puts_(g, v[c]);
}

/* A key unique in its object ("k<i>"), or rarely one from the list (which
 * may repeat a key). */
static void key(gen *g, const char *const *v, size_t n, unsigned i)
{
	if (pick(g, 64) == 63) {
		one_of(g, v, n);
		return;
	}
	char k[16];
	snprintf(k, sizeof k, "\"k%u\"", i);
	puts_(g, k);
}

static void number(gen *g)
{
	static const char *const nums[] = {
		"1", "0", "-0", "2", "1.0", "2.0", "1e2", "1E+2", "10e-1", "0.5", "-0.0", "1.5", "0.7",
		"0.30000000000000004", "1.9999999999999999999", "2.0000000000000004", "9223372036854775807",
		"-9223372036854775808", "1e308", "1.7976931348623157e308", "1e301", "4.9e-324", "1e-400",
		"0e400", "131072", "131073", "100", "101", "5", "6", "-1", "9.2e18", "9.3e18", "1.5e18",
		"123456789012345678", "0.1e1", "1e-30", "9007199254740993", "9007199254740993.0", "1e22",
		"1e23", "1e-22", "123e-24", "0.000001",
	};
	static const char *const bad[] = {
		"9223372036854775808", "-9223372036854775809", "1e309", "-1e309",
		"12345678901234567890", "123456789012345678901234567890", "01", "1.", "-", ".5",
	};
	unsigned sel = pick(g, 24);
	if (sel == 23) {
		puts_(g, bad[pick(g, NELEM(bad))]);
		return;
	}
	if (sel >= 6) {
		puts_(g, nums[pick(g, NELEM(nums))]);
		return;
	}
	/* a generated number: sign, digits, fraction, exponent */
	if (pick(g, 3) == 1)
		puts_(g, "-");
	unsigned nd = 1 + pick(g, 24);
	for (unsigned i = 0; i < nd; i++) {
		char c = (char)('0' + pick(g, 10));
		if (i == 0 && nd > 1 && c == '0')
			c = '1';
		put(g, &c, 1);
	}
	if (pick(g, 2)) {
		puts_(g, ".");
		unsigned nf = 1 + pick(g, 20);
		for (unsigned i = 0; i < nf; i++) {
			char c = (char)('0' + pick(g, 10));
			put(g, &c, 1);
		}
	}
	if (pick(g, 3) == 1) {
		static const char *const e[] = {"e", "E", "e+", "e-", "E-"};
		puts_(g, e[pick(g, NELEM(e))]);
		char d[8];
		snprintf(d, sizeof d, "%u", pick(g, 255) + (pick(g, 4) == 3 ? 255 : 0));
		puts_(g, d);
	}
}

static void any(gen *g);

static const char *const unknown_keys[] = {
	"\"x\"", "\"tools\"", "\"metadata\"", "\"logprobs\"", "\"\"", "\"\xc3\xa9\"", "\"k\\u0065y\"",
	"\"key\"", "\"type\"", "\"text\"", "\"model\"", "\"role\"",
};

static void object(gen *g)
{
	g->depth++;
	puts_(g, "{");
	unsigned n = pick(g, 5);
	for (unsigned i = 0; i < n; i++) {
		if (i)
			puts_(g, ",");
		blank(g);
		key(g, unknown_keys, NELEM(unknown_keys), i);
		blank(g);
		puts_(g, ":");
		blank(g);
		any(g);
		blank(g);
	}
	puts_(g, "}");
	g->depth--;
}

static void array(gen *g)
{
	g->depth++;
	puts_(g, "[");
	unsigned n = pick(g, 5);
	for (unsigned i = 0; i < n; i++) {
		if (i)
			puts_(g, ",");
		blank(g);
		any(g);
		blank(g);
	}
	puts_(g, "]");
	g->depth--;
}

/* Any JSON value. */
static void any(gen *g)
{
	if (g->depth > 80) {
		puts_(g, "0");
		return;
	}
	switch (pick(g, 9)) {
	case 0: number(g); break;
	case 1: string(g, 6); break;
	case 2: puts_(g, "true"); break;
	case 3: puts_(g, "false"); break;
	case 4: puts_(g, "null"); break;
	case 5: array(g); break;
	case 6: object(g); break;
	case 7: { /* a deep nest: around the fast path's depth limit */
		unsigned d = 55 + pick(g, 20);
		for (unsigned i = 0; i < d; i++)
			puts_(g, "[");
		any(g);
		for (unsigned i = 0; i < d; i++)
			puts_(g, "]");
		break;
	}
	default: puts_(g, "{\"a\":[1,{\"b\":\"c\"}],\"d\":{}}"); break;
	}
}

/* The value of a known field: gen_right() most of the time, else null or
 * any value. */
#define FIELD(g, right)                        \
	do {                                       \
		unsigned c_ = pick(g, 32);             \
		if (c_ == 30)                          \
			puts_(g, "null");                  \
		else if (c_ == 31)                     \
			any(g);                            \
		else                                   \
			right;                             \
	} while (0)

static void bool_value(gen *g)
{
	puts_(g, pick(g, 2) ? "false" : "true");
}

static void bool_field(gen *g)
{
	FIELD(g, bool_value(g));
}

static void part(gen *g)
{
	static const char *const types[] = {"\"text\"", "\"image_url\"", "\"Text\"", "\"t\\u0065xt\"", "\"text\\u0000\""};
	puts_(g, "{");
	unsigned order = pick(g, 24);
	for (unsigned i = 0; i < 2; i++) {
		if (i)
			puts_(g, ",");
		if ((i == 0) == (order != 1)) {
			puts_(g, "\"type\":");
			if (pick(g, 6) == 5)
				one_of(g, types, NELEM(types));
			else
				FIELD(g, puts_(g, "\"text\""));
		} else {
			puts_(g, "\"text\":");
			FIELD(g, string(g, 8));
		}
	}
	if (order == 2)
		puts_(g, ",\"text\":\"dup\"");
	else if (order == 3)
		puts_(g, ",\"cache_control\":{\"type\":\"ephemeral\"}");
	else if (order == 4) {
		puts_(g, ",");
		key(g, unknown_keys, NELEM(unknown_keys), 0);
		puts_(g, ":");
		any(g);
	}
	puts_(g, "}");
}

static void content(gen *g)
{
	switch (pick(g, 12)) {
	case 0:
	case 1:
	case 2:
		string(g, pick(g, 4) == 3 ? 40 : 8);
		break;
	case 3:
	case 4:
	case 5:
	case 6:
	case 7: {
		puts_(g, "[");
		unsigned n = pick(g, 5);
		for (unsigned i = 0; i < n; i++) {
			if (i)
				puts_(g, ",");
			blank(g);
			if (pick(g, 10) == 9)
				any(g);
			else
				part(g);
			blank(g);
		}
		puts_(g, "]");
		break;
	}
	case 11:
		puts_(g, "null");
		break;
	default:
		string(g, 8);
		break;
	}
}

static void message(gen *g)
{
	static const char *const roles[] = {"\"user\"", "\"system\"", "\"assistant\"", "\"tool\"",
	                                    "\"developer\"", "\"robot\"", "\"\"", "\"User\"",
	                                    "\"us\\u0065r\"", "\"user\\u0000\"", "\"users\""};
	puts_(g, "{");
	blank(g);
	/* members: role, content, then extras; sometimes shuffled or dropped */
	unsigned shape = pick(g, 24);
	int first = 1;
	for (int m = 0; m < 5; m++) {
		int which = shape == 1 ? (m == 0 ? 1 : m == 1 ? 0 : m) : m; /* content first */
		if ((shape == 2 && which == 0) || (shape == 3 && which == 1))
			continue; /* no role / no content */
		if (which >= 2 && pick(g, which == 4 ? 64 : 3) != 1)
			continue;
		if (!first)
			puts_(g, ",");
		first = 0;
		blank(g);
		switch (which) {
		case 0:
			puts_(g, "\"role\":");
			blank(g);
			if (pick(g, 8) == 7)
				FIELD(g, puts_(g, "\"user\""));
			else
				puts_(g, roles[pick(g, 7) ? pick(g, 5) : pick(g, NELEM(roles))]);
			break;
		case 1:
			puts_(g, "\"content\":");
			blank(g);
			content(g);
			break;
		case 2:
			puts_(g, "\"name\":");
			FIELD(g, string(g, 3));
			break;
		case 3:
			key(g, unknown_keys, NELEM(unknown_keys), 0);
			puts_(g, ":");
			any(g);
			break;
		default: /* a repeated member */
			puts_(g, pick(g, 2) ? "\"role\":\"user\"" : "\"content\":\"again\"");
			break;
		}
		blank(g);
	}
	puts_(g, "}");
}

static void member(gen *g, unsigned which, unsigned idx)
{
	static const char *const models[] = {"\"m\"", "\"gpt-4o\"", "\"mock\"", "\"gpt-4o-mini\"",
	                                     "\"\\u00e9\"", "\"m\\/1\"", "\"\"", "\"a\\u0000b\""};
	switch (which) {
	case 0:
		puts_(g, "\"model\":");
		FIELD(g, puts_(g, models[pick(g, 32) == 31 ? pick(g, NELEM(models)) : pick(g, 6)]));
		break;
	case 1: {
		puts_(g, "\"messages\":");
		blank(g);
		if (pick(g, 32) == 31) {
			any(g);
			break;
		}
		puts_(g, "[");
		unsigned n = 1 + pick(g, 4) + (pick(g, 8) == 7 ? 8 : 0);
		if (pick(g, 64) == 63)
			n = 0;
		for (unsigned i = 0; i < n; i++) {
			if (i)
				puts_(g, ",");
			blank(g);
			message(g);
			blank(g);
		}
		puts_(g, "]");
		break;
	}
	case 2:
		puts_(g, "\"prompt\":");
		switch (pick(g, 4)) {
		case 1: puts_(g, "["); string(g, 8); puts_(g, "]"); break;
		case 2: FIELD(g, string(g, 40)); break;
		case 3: any(g); break;
		default: string(g, 8); break;
		}
		break;
	case 3:
		puts_(g, "\"stream\":");
		bool_field(g);
		break;
	case 4:
		puts_(g, "\"stream_options\":");
		FIELD(g, {
			puts_(g, "{");
			unsigned k = pick(g, 4);
			if (k & 1) {
				puts_(g, "\"include_usage\":");
				bool_field(g);
			}
			if (k & 2) {
				puts_(g, k & 1 ? "," : "");
				key(g, unknown_keys, NELEM(unknown_keys), 0);
				puts_(g, ":");
				any(g);
			}
			puts_(g, "}");
		});
		break;
	case 5: puts_(g, "\"max_tokens\":"); FIELD(g, number(g)); break;
	case 6: puts_(g, "\"max_completion_tokens\":"); FIELD(g, number(g)); break;
	case 7: puts_(g, "\"temperature\":"); FIELD(g, number(g)); break;
	case 8: puts_(g, "\"top_p\":"); FIELD(g, number(g)); break;
	case 9: puts_(g, "\"n\":"); FIELD(g, number(g)); break;
	case 10:
		puts_(g, "\"stop\":");
		FIELD(g, {
			if (pick(g, 2)) {
				string(g, 3);
			} else {
				puts_(g, "[");
				unsigned k = pick(g, 6);
				for (unsigned i = 0; i < k; i++) {
					if (i)
						puts_(g, ",");
					blank(g);
					string(g, 3);
				}
				puts_(g, "]");
			}
		});
		break;
	case 11: puts_(g, "\"user\":"); FIELD(g, string(g, 4)); break;
	case 12: puts_(g, "\"seed\":"); FIELD(g, number(g)); break;
	default:
		key(g, unknown_keys, NELEM(unknown_keys), idx);
		puts_(g, ":");
		blank(g);
		any(g);
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char buf[MAX_BODY];
	gen g = {.d = data, .n = size, .buf = buf};
	static const size_t inputs[16] = {0, 8, 64, 1000};
	static const int caps[16] = {0, 1, 100, 131072};
	static const size_t msgs[16] = {0, 1, 3, 9, 10};
	sl_oai_limits lim = {.max_input = inputs[pick(&g, 16)], /* mostly defaults */
	                     .max_tokens_cap = caps[pick(&g, 16)],
	                     .max_messages = msgs[pick(&g, 16)]};
	blank(&g);
	puts_(&g, "{");
	/* model, messages, prompt (so that both kinds may accept it), then any
	 * members in any order */
	unsigned n = 3 + pick(&g, 8), used = 0;
	for (unsigned i = 0; i < n; i++) {
		if (i)
			puts_(&g, ",");
		blank(&g);
		unsigned which = i < 3 && pick(&g, 32) != 31 ? i : pick(&g, 15);
		if (which < 13 && (used & 1u << which) && pick(&g, 32) != 31)
			which = 13; /* mostly no duplicate: an unknown member instead */
		used |= 1u << which;
		member(&g, which, i);
		blank(&g);
	}
	puts_(&g, "}");
	blank(&g);
	/* now and then: one byte corrupted, or the body cut short */
	switch (pick(&g, 48)) {
	case 1:
		if (g.len)
			g.buf[pick(&g, 255) * g.len / 255 % g.len] = (char)pick(&g, 256);
		break;
	case 2:
		g.len = g.len * pick(&g, 255) / 255;
		break;
	case 3:
		puts_(&g, pick(&g, 2) ? "x" : ",");
		break;
	}
	diff(g.buf, g.len, &lim);
	return 0;
}
