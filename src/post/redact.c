/* redact.c - PII redaction and safety filter, whole-text and streaming;
 * see redact.h and docs/internals/redact.md.
 *
 * The engine keeps, per rule, the result of its last search: a complete
 * match (stable: PCRE2_PARTIAL_HARD returned it, so no more text can change
 * it), a partial match at some offset (more text needed), or no match up to
 * some offset (stable too).  A step decides the earliest complete match
 * when no partial match starts at or before it, else emits up to the
 * earliest partial start and waits.  Because every recorded result depends
 * only on text already seen, any split gives the same decisions. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "post/redact.h"

#include <ctype.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ classes */

/* Callout numbers: validators run at the end of a candidate match; a
 * non-zero return makes PCRE2 backtrack (the candidate is no match). */
enum { CO_LUHN = 1, CO_IBAN = 2, CO_PHONE = 3, CO_EMAIL = 4 };

#define OCT "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
#define V4 OCT "\\." OCT "\\." OCT "\\." OCT
#define H "[0-9A-Fa-f]{1,4}"

typedef struct class_def {
	const char *name;
	const char *repl;
	const char *pattern;
	uint32_t bound; /* max bytes an attempt inspects from its start (incl. lookahead) */
	unsigned char req;  /* a byte every match has at offset 0..req_max from its start */
	uint8_t req_max;
} class_def;

/* Indexed by class bit.  The bounds are the longest match the pattern
 * admits plus its trailing look-ahead; test_redact checks them. */
static const class_def classes[SL_PII__COUNT] = {
	{"email", "[REDACTED:EMAIL]",
	 "(?<![A-Za-z0-9._%+\\x80-\\xff-])"
	 "[A-Za-z0-9_%+\\x80-\\xff-][A-Za-z0-9._%+\\x80-\\xff-]{0,63}+@"
	 "(?:[A-Za-z0-9\\x80-\\xff](?:[A-Za-z0-9\\x80-\\xff-]{0,61}[A-Za-z0-9\\x80-\\xff])?\\.){1,6}"
	 /* file names like icon@2x.png are not addresses */
	 "(?!(?:png|jpe?g|gif|svg|webp|bmp|ico|pdf|txt|csv|json|ya?ml|html?|css|js|md|log)"
	 "(?![A-Za-z]))"
	 "[A-Za-z]{2,24}"
	 "(?![A-Za-z0-9_-]|\\.[A-Za-z0-9])(?C4)",
	 64 + 1 + 6 * 64 + 24 + 2, '@', 64},
	{"phone", "[REDACTED:PHONE]",
	 "(?<![0-9A-Za-z_+.-])"
	 "(?:\\+[1-9][0-9]{0,3}+"
	 "(?>(?:[ .-]?(?:\\([0-9]{1,4}\\)|[0-9]{1,5}+)){1,6})(?C3)"
	 "|(?:\\([0-9]{3}\\) ?|[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}"
	 "|0[1-9][0-9]{1,3}[ -][0-9]{3,4}[ -]?[0-9]{3,4}"
	 "|0[1-9](?:[ .][0-9]{2}){4})"
	 "(?![0-9A-Za-z_]|[.-][0-9])",
	 1 + 4 + 6 * 7 + 2, 0, 0},
	{"card", "[REDACTED:CARD]",
	 "(?<![0-9A-Za-z_]|[0-9][ -])"
	 "[2-6][0-9]{3}(?>(?:[ -]?[0-9]{1,6}+){2,5})"
	 "(?![0-9A-Za-z_]|[ -][0-9])(?C1)",
	 4 + 5 * 7 + 2, 0, 0},
	{"iban", "[REDACTED:IBAN]",
	 "(?<![0-9A-Za-z_])"
	 "[A-Z]{2}[0-9]{2}(?: ?[0-9A-Z]{4}){2,7}+(?: ?[0-9A-Z]{1,3})?"
	 "(?![0-9A-Za-z_])(?C2)",
	 4 + 7 * 5 + 4 + 1, 0, 0},
	{"ssn", "[REDACTED:SSN]",
	 "(?<![0-9A-Za-z_-])"
	 "(?!000|666|9[0-9][0-9])[0-9]{3}([- ])(?!00)[0-9]{2}\\1(?!0000)[0-9]{4}"
	 "(?![0-9A-Za-z_]|-[0-9])",
	 11 + 2, 0, 0},
	{"ipv4", "[REDACTED:IPV4]",
	 "(?<![0-9A-Za-z_.])" V4 "(?![0-9A-Za-z_]|\\.[0-9])",
	 15 + 2, 0, 0},
	{"ipv6", "[REDACTED:IPV6]",
	 "(?<![0-9A-Za-z_:.])(?:"
	 "(?:" H ":){7}" H
	 "|(?:" H ":){1,7}:"
	 "|(?:" H ":){1,6}:" H
	 "|(?:" H ":){1,5}(?::" H "){1,2}"
	 "|(?:" H ":){1,4}(?::" H "){1,3}"
	 "|(?:" H ":){1,3}(?::" H "){1,4}"
	 "|(?:" H ":){1,2}(?::" H "){1,5}"
	 "|" H ":(?::" H "){1,6}"
	 "|:(?::" H "){1,7}"
	 "|::(?:[Ff]{4}(?::0{1,4})?:)?" V4
	 "|(?:" H ":){1,4}:" V4
	 ")(?![0-9A-Za-z_:]|\\.[0-9])",
	 39 + 2 + 8, ':', 4},
	{"secret", "[REDACTED:SECRET]",
	 "(?<![A-Za-z0-9_-])(?:"
	 "(?<=[Bb]earer |BEARER |[Bb]earer\\t)(?=[A-Za-z._~+/-]{0,1023}[0-9])"
	 "[A-Za-z0-9._~+/-]{16,1024}+={0,2}"
	 "|sk-(?:proj-|svcacct-|admin-)?(?=[A-Za-z_-]{0,255}[0-9])[A-Za-z0-9_-]{20,256}+"
	 "|(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{10,247}+"
	 "|(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}(?![A-Za-z0-9])"
	 "|gh[pousr]_[A-Za-z0-9]{36,251}+"
	 "|github_pat_[A-Za-z0-9_]{22,255}+"
	 "|xox[abposr]-[A-Za-z0-9-]{10,250}+"
	 "|AIza[0-9A-Za-z_-]{35}"
	 "|eyJ[A-Za-z0-9_-]{5,256}+\\.eyJ[A-Za-z0-9_-]{5,1024}+\\.[A-Za-z0-9_-]{0,512}+"
	 ")",
	 3 + 257 + 1 + 3 + 1025 + 1 + 513, 0, 0},
};

/* Rule order for ties (see redact.h): class indices. */
static const unsigned class_order[SL_PII__COUNT] = {7, 0, 3, 2, 4, 5, 6, 1};

const char *sl_pii_class_name(unsigned i)
{
	return i < SL_PII__COUNT ? classes[i].name : NULL;
}

/* ---------------------------------------------------------- validators */

static int luhn_ok(const unsigned char *p, size_t n)
{
	int sum = 0, nd = 0;
	for (size_t i = n; i-- > 0;) {
		if (p[i] < '0' || p[i] > '9')
			continue;
		int d = p[i] - '0';
		if (nd++ & 1) {
			d *= 2;
			if (d > 9)
				d -= 9;
		}
		sum += d;
	}
	return nd >= 13 && nd <= 19 && sum % 10 == 0;
}

/* IBAN lengths per country (ISO 13616 registry). */
static const char iban_len[] =
	"AD24AE23AL28AT20AZ28BA20BE16BG22BH22BI27BR29BY28CH21CR22CY28CZ24DE22"
	"DJ27DK18DO28EE20EG29ES24FI18FO18FR27GB22GE22GI23GL18GR27GT28HR21HU28"
	"IE22IL23IQ23IS26IT27JO30KW30KZ20LB28LC32LI21LT20LU20LV21LY25MC27MD24"
	"ME22MK19MR27MT31MU30NL18NO15PK24PL28PS29PT25QA29RO24RS22RU33SA24SC31"
	"SD18SE24SI19SK24SM27SO23ST25SV28TL23TN24TR26UA29VA22VG24XK20";

static int iban_ok(const unsigned char *p, size_t n)
{
	char c[40];
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == ' ')
			continue;
		if (k == sizeof c)
			return 0;
		c[k++] = (char)p[i];
	}
	int want = 0;
	for (const char *t = iban_len; *t; t += 4)
		if (t[0] == c[0] && t[1] == c[1]) {
			want = (t[2] - '0') * 10 + (t[3] - '0');
			break;
		}
	if (want == 0 || (size_t)want != k)
		return 0;
	unsigned rem = 0;
	for (size_t i = 0; i < k; i++) {
		char ch = c[(i + 4) % k]; /* BBAN first, then country + check */
		if (ch >= '0' && ch <= '9')
			rem = (rem * 10 + (unsigned)(ch - '0')) % 97;
		else if (ch >= 'A' && ch <= 'Z')
			rem = (rem * 100 + (unsigned)(ch - 'A' + 10)) % 97;
		else
			return 0;
	}
	return rem == 1;
}

static int phone_ok(const unsigned char *p, size_t n)
{
	int nd = 0;
	for (size_t i = 0; i < n; i++)
		nd += p[i] >= '0' && p[i] <= '9';
	return nd >= 8 && nd <= 15; /* E.164: at most 15 digits */
}

static int callout(pcre2_callout_block *b, void *data)
{
	(void)data;
	const unsigned char *m = b->subject + b->start_match;
	size_t n = b->current_position - b->start_match;
	switch (b->callout_number) {
	case CO_LUHN: return luhn_ok(m, n) ? 0 : 1;
	case CO_IBAN: return iban_ok(m, n) ? 0 : 1;
	case CO_PHONE: return phone_ok(m, n) ? 0 : 1;
	case CO_EMAIL: return n <= 254 ? 0 : 1;
	default: return 0;
	}
}

/* ---------------------------------------------------------- rule set */

enum { RK_CLASS, RK_CUSTOM, RK_BLOCK };

typedef struct rule {
	pcre2_code *re;      /* unanchored search */
	pcre2_code *anch;    /* windowed rules: the same, anchored */
	uint32_t window;     /* windowed rules: max bytes from the start; 0 = bounded */
	uint32_t bound;      /* hold-back bound in bytes */
	unsigned char req;   /* prefilter: see class_def (0 = none) */
	uint8_t req_max;
	int kind;            /* RK_* */
	int cls;             /* RK_CLASS: class index */
	char *repl;          /* replacement (not for RK_BLOCK) */
	size_t repl_len;
} rule;

struct sl_redactor {
	rule *rules;
	size_t n_rules;
	pcre2_match_context *mctx; /* callout set; read-only after create */
	size_t ctx_bytes;          /* lookbehind context kept before the held tail */
	size_t max_holdback;
};

static void seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static void rule_free(rule *ru)
{
	pcre2_code_free(ru->re);
	pcre2_code_free(ru->anch);
	free(ru->repl);
}

void sl_redactor_destroy(sl_redactor *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_rules; i++)
		rule_free(&r->rules[i]);
	free(r->rules);
	pcre2_match_context_free(r->mctx);
	free(r);
}

/* Compiles pattern into ru (re, and anch when windowed).  what names it in
 * errors ("custom pattern 'x'"). */
static int compile(rule *ru, const char *pat, size_t patlen, uint32_t opts,
                   const char *what, size_t *maxlb, char *err, size_t errlen)
{
	int ec;
	PCRE2_SIZE eo;
	ru->re = pcre2_compile((PCRE2_SPTR)pat, patlen, opts, &ec, &eo, NULL);
	if (!ru->re) {
		PCRE2_UCHAR msg[160];
		pcre2_get_error_message(ec, msg, sizeof msg);
		seterr(err, errlen, "%s: %s at offset %zu", what, (const char *)msg, (size_t)eo);
		return ec == PCRE2_ERROR_NOMEMORY ? SL_ENOMEM : SL_EINVAL;
	}
	uint32_t jit = PCRE2_JIT_COMPLETE | PCRE2_JIT_PARTIAL_HARD;
	(void)pcre2_jit_compile(ru->re, jit); /* interpreter when JIT is unavailable */
	if (ru->window) {
		ru->anch = pcre2_compile((PCRE2_SPTR)pat, patlen, opts | PCRE2_ANCHORED, &ec,
		                         &eo, NULL);
		if (!ru->anch) {
			seterr(err, errlen, "%s: out of memory", what);
			return SL_ENOMEM;
		}
		(void)pcre2_jit_compile(ru->anch, jit);
	}
	uint32_t lb = 0;
	if (pcre2_pattern_info(ru->re, PCRE2_INFO_MAXLOOKBEHIND, &lb) == 0 && lb > *maxlb)
		*maxlb = lb;
	return SL_OK;
}

/* \K moves the reported start of a match away from where the attempt
 * began, which the windowed search relies on: refused in custom and block
 * patterns. */
static int has_bsk(const char *p)
{
	for (size_t i = 0; p[i]; i++)
		if (p[i] == '\\') {
			if (p[i + 1] == 'K')
				return 1;
			if (p[i + 1])
				i++;
		}
	return 0;
}

static int set_repl(rule *ru, const char *s, size_t n)
{
	ru->repl = malloc(n + 1);
	if (!ru->repl)
		return SL_ENOMEM;
	memcpy(ru->repl, s, n);
	ru->repl[n] = '\0';
	ru->repl_len = n;
	return SL_OK;
}

static int name_ok(const char *n)
{
	size_t l = n ? strlen(n) : 0;
	if (l == 0 || l > 32)
		return 0;
	for (size_t i = 0; i < l; i++)
		if (!isalnum((unsigned char)n[i]) && n[i] != '_' && n[i] != '-')
			return 0;
	return 1;
}

/* The blocklist as one pattern: (?<![\p{L}\p{N}_])(?:t1|t2...)(?![\p{L}\p{N}_]) */
static int block_terms_pattern(const sl_redact_opts *o, sl_dynbuf *p, size_t *maxterm,
                               char *err, size_t errlen)
{
	int rc = sl_dynbuf_addstr(p, "(?<![\\p{L}\\p{N}_])(?:");
	for (size_t i = 0; i < o->n_block_terms && rc == SL_OK; i++) {
		const char *t = o->block_terms[i];
		size_t l = t ? strlen(t) : 0;
		if (l == 0 || l > SL_REDACT_MAX_TERM) {
			seterr(err, errlen, "block term %zu: length must be 1..%u bytes", i,
			       SL_REDACT_MAX_TERM);
			return SL_EINVAL;
		}
		if (l > *maxterm)
			*maxterm = l;
		if (i)
			rc = sl_dynbuf_add(p, "|", 1);
		for (size_t k = 0; k < l && rc == SL_OK; k++) {
			unsigned char c = (unsigned char)t[k];
			if (c < 0x80 && !isalnum(c) && c != ' ' && c != '_')
				rc = sl_dynbuf_add(p, "\\", 1);
			if (rc == SL_OK)
				rc = sl_dynbuf_add(p, &t[k], 1);
		}
	}
	if (rc == SL_OK)
		rc = sl_dynbuf_addstr(p, ")(?![\\p{L}\\p{N}_])");
	return rc;
}

int sl_redactor_create(const sl_redact_opts *o, sl_redactor **out, char *err,
                       size_t errlen)
{
	if (!o || !out || (o->classes & ~(unsigned)SL_PII_ALL) ||
	    (o->n_custom && !o->custom) || (o->n_block_terms && !o->block_terms) ||
	    (o->n_block_patterns && !o->block_patterns)) {
		seterr(err, errlen, "invalid arguments");
		return SL_EINVAL;
	}
	if (o->n_custom + o->n_block_patterns > SL_REDACT_MAX_RULES) {
		seterr(err, errlen, "too many patterns (max %u)", SL_REDACT_MAX_RULES);
		return SL_EINVAL;
	}
	sl_redactor *r = calloc(1, sizeof *r);
	size_t cap = SL_PII__COUNT + o->n_custom + o->n_block_patterns + 1;
	if (!r || !(r->rules = calloc(cap, sizeof *r->rules)) ||
	    !(r->mctx = pcre2_match_context_create(NULL))) {
		sl_redactor_destroy(r);
		seterr(err, errlen, "out of memory");
		return SL_ENOMEM;
	}
	pcre2_set_callout(r->mctx, callout, NULL);
	const uint32_t uopt = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
	size_t maxlb = 0;
	int rc = SL_OK;
	char what[96];

	/* Safety rules first: they win ties (the order is also the tie order). */
	if (o->n_block_terms) {
		sl_dynbuf p;
		sl_dynbuf_init(&p, (size_t)1 << 24);
		size_t maxterm = 0;
		rc = block_terms_pattern(o, &p, &maxterm, err, errlen);
		rule *ru = &r->rules[r->n_rules];
		if (rc == SL_OK) {
			r->n_rules++;
			ru->kind = RK_BLOCK;
			/* case folding can turn a 1-byte letter into a 3-byte one */
			ru->bound = (uint32_t)(maxterm * 3 + 4);
			rc = compile(ru, p.p, p.len, uopt | PCRE2_UCP | PCRE2_CASELESS,
			             "block terms", &maxlb, err, errlen);
		} else if (rc != SL_EINVAL) {
			seterr(err, errlen, "out of memory");
		}
		sl_dynbuf_free(&p);
	}
	for (size_t i = 0; i < o->n_block_patterns && rc == SL_OK; i++) {
		rule *ru = &r->rules[r->n_rules++];
		ru->kind = RK_BLOCK;
		ru->window = ru->bound = SL_REDACT_DEFAULT_MAX_LEN;
		snprintf(what, sizeof what, "block pattern %zu", i);
		if (!o->block_patterns[i]) {
			seterr(err, errlen, "%s: NULL", what);
			rc = SL_EINVAL;
			break;
		}
		if (has_bsk(o->block_patterns[i])) {
			seterr(err, errlen, "%s: \\K is not supported", what);
			rc = SL_EINVAL;
			break;
		}
		rc = compile(ru, o->block_patterns[i], PCRE2_ZERO_TERMINATED, uopt, what,
		             &maxlb, err, errlen);
	}
	for (size_t k = 0; k < SL_PII__COUNT && rc == SL_OK; k++) {
		unsigned c = class_order[k];
		if (!(o->classes & (1u << c)))
			continue;
		rule *ru = &r->rules[r->n_rules++];
		ru->kind = RK_CLASS;
		ru->cls = (int)c;
		ru->bound = classes[c].bound;
		ru->req = classes[c].req;
		ru->req_max = classes[c].req_max;
		rc = compile(ru, classes[c].pattern, PCRE2_ZERO_TERMINATED, 0, classes[c].name,
		             &maxlb, err, errlen);
		if (rc == SL_OK)
			rc = set_repl(ru, classes[c].repl, strlen(classes[c].repl));
	}
	for (size_t i = 0; i < o->n_custom && rc == SL_OK; i++) {
		const sl_redact_custom *c = &o->custom[i];
		if (!name_ok(c->name)) {
			seterr(err, errlen, "custom pattern %zu: name must be 1..32 of [A-Za-z0-9_-]", i);
			rc = SL_EINVAL;
			break;
		}
		snprintf(what, sizeof what, "custom pattern '%s'", c->name);
		if (!c->pattern || c->max_len > SL_REDACT_MAX_MAX_LEN) {
			seterr(err, errlen, "%s: %s", what,
			       c->pattern ? "max_len over " "4096" : "no pattern");
			rc = SL_EINVAL;
			break;
		}
		if (has_bsk(c->pattern)) {
			seterr(err, errlen, "%s: \\K is not supported", what);
			rc = SL_EINVAL;
			break;
		}
		rule *ru = &r->rules[r->n_rules++];
		ru->kind = RK_CUSTOM;
		ru->window = ru->bound = c->max_len ? c->max_len : SL_REDACT_DEFAULT_MAX_LEN;
		rc = compile(ru, c->pattern, PCRE2_ZERO_TERMINATED, uopt, what, &maxlb, err, errlen);
		if (rc != SL_OK)
			break;
		if (c->replacement) {
			rc = set_repl(ru, c->replacement, strlen(c->replacement));
		} else {
			char d[64];
			int n = snprintf(d, sizeof d, "[REDACTED:%s]", c->name);
			for (int j = 10; j < n; j++)
				d[j] = (char)toupper((unsigned char)d[j]);
			rc = set_repl(ru, d, (size_t)n);
		}
		if (rc == SL_ENOMEM)
			seterr(err, errlen, "out of memory");
	}
	if (rc != SL_OK) {
		sl_redactor_destroy(r);
		return rc;
	}
	/* Nested lookbehinds may look back further than the longest single
	 * one: keep twice that, in 4-byte characters, plus slack. */
	r->ctx_bytes = (maxlb + 1) * 8 + 16;
	for (size_t i = 0; i < r->n_rules; i++)
		if (r->rules[i].bound > r->max_holdback)
			r->max_holdback = r->rules[i].bound;
	r->max_holdback += 3; /* an unfinished UTF-8 sequence */
	*out = r;
	return SL_OK;
}

size_t sl_redactor_max_holdback(const sl_redactor *r)
{
	return r ? r->max_holdback : 0;
}

int sl_pii_class_parse(const char *list, unsigned *mask, char *err, size_t errlen)
{
	static const char all[] = "email, phone, card, iban, ssn, ipv4, ipv6, secret, all";
	if (!list || !mask) {
		seterr(err, errlen, "no class list (classes: %s)", all);
		return SL_EINVAL;
	}
	unsigned m = 0;
	const char *p = list;
	for (;;) {
		const char *e = strchr(p, ',');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		while (n && (*p == ' ' || *p == '\t'))
			p++, n--;
		while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		unsigned bit = 0;
		if (n == 3 && strncmp(p, "all", 3) == 0)
			bit = SL_PII_ALL;
		for (unsigned i = 0; i < SL_PII__COUNT && !bit; i++)
			if (strlen(classes[i].name) == n && strncmp(p, classes[i].name, n) == 0)
				bit = 1u << i;
		if (!bit) {
			seterr(err, errlen, "unknown class '%.*s' (classes: %s)", (int)(n > 64 ? 64 : n),
			       p, all);
			return SL_EINVAL;
		}
		m |= bit;
		if (!e)
			break;
		p = e + 1;
	}
	*mask = m;
	return SL_OK;
}

/* ---------------------------------------------------------- the engine */

enum { ST_STALE, ST_NONE, ST_MATCH, ST_PARTIAL };

typedef struct rstate {
	int st;
	size_t s, e;   /* MATCH: [s, e); PARTIAL: s = where it starts */
	size_t at_len; /* NONE/PARTIAL: the subject length searched */
} rstate;

typedef struct engine {
	const sl_redactor *r;
	pcre2_match_data *md;
	rstate *st;
	size_t pos;          /* first byte of the subject not yet emitted */
	int done;            /* a safety rule matched */
	sl_redact_stats stats;
} engine;

static int engine_init(engine *e, const sl_redactor *r)
{
	memset(e, 0, sizeof *e);
	e->r = r;
	e->md = pcre2_match_data_create(16, NULL);
	e->st = calloc(r->n_rules ? r->n_rules : 1, sizeof *e->st);
	if (!e->md || !e->st) {
		pcre2_match_data_free(e->md);
		free(e->st);
		return SL_ENOMEM;
	}
	return SL_OK;
}

static void engine_fini(engine *e)
{
	pcre2_match_data_free(e->md);
	free(e->st);
}

/* Bytes at the end of s[0..len) that begin a UTF-8 sequence which more
 * bytes could complete (0..3). */
static size_t utf8_open_tail(const unsigned char *s, size_t len)
{
	for (size_t k = 1; k <= 3 && k <= len; k++) {
		unsigned c = s[len - k];
		if ((c & 0xC0) == 0x80)
			continue;
		size_t need = (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3
		              : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
		if (need <= k)
			return 0;
		if (k >= 2) {
			unsigned c1 = s[len - k + 1], lo = 0x80, hi = 0xBF;
			if (c == 0xE0) lo = 0xA0;
			else if (c == 0xED) hi = 0x9F;
			else if (c == 0xF0) lo = 0x90;
			else if (c == 0xF4) hi = 0x8F;
			if (c1 < lo || c1 > hi)
				return 0;
		}
		return k;
	}
	return 0;
}

static int map_err(int rc)
{
	switch (rc) {
	case PCRE2_ERROR_MATCHLIMIT:
	case PCRE2_ERROR_DEPTHLIMIT:
	case PCRE2_ERROR_HEAPLIMIT:
	case PCRE2_ERROR_JIT_STACKLIMIT:
		return SL_ETOOBIG;
	case PCRE2_ERROR_NOMEMORY:
		return SL_ENOMEM;
	default:
		return SL_EINVAL;
	}
}

static int pmatch(const engine *e, const pcre2_code *re, const unsigned char *b,
                  size_t len, size_t from, uint32_t opts)
{
	opts |= PCRE2_NOTEMPTY;
	int rc = pcre2_match(re, b, len, from, opts, e->md, e->r->mctx);
	if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* same result, interpreter */
		rc = pcre2_match(re, b, len, from, opts | PCRE2_NO_JIT, e->md, e->r->mctx);
	return rc;
}

/* One rule's search from `from` over b[0..L); fin: L is the end of text.
 * Sets *st to MATCH, PARTIAL or NONE.  Returns SL_OK or an error. */
static int search(engine *e, const rule *ru, const unsigned char *b, size_t L,
                  size_t from, int fin, rstate *st)
{
	const uint32_t hard = fin ? 0 : PCRE2_PARTIAL_HARD;
	PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
	st->at_len = L;
	if (ru->req && from < L) {
		/* Every attempt at s needs the byte req in b[s..s+req_max] (or
		 * reaches L first): those before its first occurrence - req_max
		 * fail whatever follows.  PCRE2 cannot skip them itself. */
		const unsigned char *a = memchr(b + from, ru->req, L - from);
		size_t at = a ? (size_t)(a - b) : L;
		if (!a && fin) {
			st->st = ST_NONE;
			return SL_OK;
		}
		if (at > from + ru->req_max)
			from = at - ru->req_max;
	}
	for (;;) {
		int rc = from <= L ? pmatch(e, ru->re, b, L, from, hard) : PCRE2_ERROR_NOMATCH;
		if (rc == PCRE2_ERROR_NOMATCH) {
			st->st = ST_NONE;
			return SL_OK;
		}
		if (rc < 0 && rc != PCRE2_ERROR_PARTIAL)
			return map_err(rc);
		size_t s = ov[0];
		if (!ru->window) {
			st->st = rc == PCRE2_ERROR_PARTIAL ? ST_PARTIAL : ST_MATCH;
			st->s = s;
			st->e = ov[1];
			return SL_OK;
		}
		/* Windowed rule: the attempt at s sees the text up to s + window,
		 * as if it ended there (but not at the real end, which is a true
		 * end only when fin). */
		size_t W = ru->window;
		int rc2;
		if (L - s > W)
			rc2 = pmatch(e, ru->anch, b, s + W, s, PCRE2_PARTIAL_HARD);
		else if (fin)
			rc2 = pmatch(e, ru->anch, b, L, s, 0);
		else
			rc2 = pmatch(e, ru->anch, b, L, s, PCRE2_PARTIAL_HARD);
		if (rc2 >= 0) {
			st->st = ST_MATCH;
			st->s = ov[0];
			st->e = ov[1];
			return SL_OK;
		}
		if (rc2 == PCRE2_ERROR_PARTIAL && !fin && L - s <= W) {
			st->st = ST_PARTIAL;
			st->s = s;
			return SL_OK;
		}
		if (rc2 != PCRE2_ERROR_PARTIAL && rc2 != PCRE2_ERROR_NOMATCH)
			return map_err(rc2);
		/* no match at s: on to the next character */
		from = s + 1;
		while (from < L && (b[from] & 0xC0) == 0x80)
			from++;
	}
}

static int emit(engine *e, sl_dynbuf *out, const void *p, size_t n)
{
	if (n == 0)
		return SL_OK;
	e->stats.bytes_out += n;
	return sl_dynbuf_add(out, p, n);
}

/* Decides what it can over b[0..len): emits and advances e->pos.  fin: len
 * is the end of the text.  Returns SL_OK, SL_EFILTER or an error. */
static int step(engine *e, const unsigned char *b, size_t len, int fin, sl_dynbuf *out)
{
	const sl_redactor *r = e->r;
	size_t L = fin ? len : len - utf8_open_tail(b, len);
	for (;;) {
		size_t best = SIZE_MAX, q = L;
		for (size_t i = 0; i < r->n_rules; i++) {
			rstate *st = &e->st[i];
			int keep = 0;
			size_t from = e->pos;
			switch (st->st) {
			case ST_MATCH:
				keep = st->s >= e->pos;
				break;
			case ST_PARTIAL:
				keep = st->s >= e->pos && st->at_len == L && !fin;
				if (st->s > from)
					from = st->s;
				break;
			case ST_NONE:
				keep = st->at_len == L;
				if (st->at_len > from)
					from = st->at_len;
				break;
			default:
				break;
			}
			if (!keep) {
				int rc = search(e, &r->rules[i], b, L, from, fin, st);
				if (rc)
					return rc;
			}
			if (st->st == ST_PARTIAL) {
				if (st->s < q)
					q = st->s;
			} else if (st->st == ST_MATCH) {
				if (best == SIZE_MAX) {
					best = i;
				} else {
					const rstate *bs = &e->st[best];
					int bb = r->rules[best].kind == RK_BLOCK;
					int ib = r->rules[i].kind == RK_BLOCK;
					if (st->s < bs->s ||
					    (st->s == bs->s && (ib > bb || (ib == bb && st->e > bs->e))))
						best = i;
				}
			}
		}
		if (best == SIZE_MAX || e->st[best].s >= q) {
			/* nothing decided before q: emit up to it and wait */
			size_t to = best == SIZE_MAX && fin ? len : q;
			int rc = emit(e, out, b + e->pos, to - e->pos);
			e->pos = to;
			return rc;
		}
		const rstate *bs = &e->st[best];
		const rule *ru = &r->rules[best];
		int rc = emit(e, out, b + e->pos, bs->s - e->pos);
		if (rc)
			return rc;
		if (ru->kind == RK_BLOCK) {
			e->pos = bs->s;
			e->done = 1;
			e->stats.blocked = 1;
			return SL_EFILTER;
		}
		rc = emit(e, out, ru->repl, ru->repl_len);
		if (rc)
			return rc;
		if (ru->kind == RK_CLASS)
			e->stats.matches[ru->cls]++;
		else
			e->stats.custom++;
		e->pos = bs->e;
	}
}

/* ---------------------------------------------------------- whole text */

#define WHOLE_CHUNK 16384

int sl_redact_text(const sl_redactor *r, const char *in, size_t len, sl_dynbuf *out,
                   int *blocked, sl_redact_stats *st)
{
	if (!r || !out || (!in && len))
		return SL_EINVAL;
	engine e;
	int rc = engine_init(&e, r);
	if (rc)
		return rc;
	e.stats.bytes_in = len;
	/* In growing prefixes, like a stream that never moves its buffer: a
	 * search then stops at the prefix's end instead of scanning the rest
	 * of the text for its next match, and the prefilters apply again. */
	const unsigned char *b = (const unsigned char *)(in ? in : "");
	rc = SL_OK;
	for (size_t k = WHOLE_CHUNK; k < len && rc == SL_OK; k += WHOLE_CHUNK)
		rc = step(&e, b, k, 0, out);
	if (rc == SL_OK)
		rc = step(&e, b, len, 1, out);
	if (st)
		*st = e.stats;
	engine_fini(&e);
	if (blocked)
		*blocked = rc == SL_EFILTER;
	if (rc == SL_EFILTER && blocked)
		rc = SL_OK;
	return rc;
}

/* ---------------------------------------------------------- streams */

struct sl_redact_stream {
	engine e;
	unsigned char *buf; /* context + held tail + the piece being processed */
	size_t len, cap;
	int err;            /* sticky status */
	int finished;
};

int sl_redact_stream_new(const sl_redactor *r, sl_redact_stream **out)
{
	if (!r || !out)
		return SL_EINVAL;
	sl_redact_stream *s = calloc(1, sizeof *s);
	if (!s)
		return SL_ENOMEM;
	if (engine_init(&s->e, r)) {
		free(s);
		return SL_ENOMEM;
	}
	*out = s;
	return SL_OK;
}

void sl_redact_stream_free(sl_redact_stream *s)
{
	if (!s)
		return;
	engine_fini(&s->e);
	free(s->buf);
	free(s);
}

size_t sl_redact_stream_held(const sl_redact_stream *s)
{
	return s->len - s->e.pos;
}

const sl_redact_stats *sl_redact_stream_stats(const sl_redact_stream *s)
{
	return &s->e.stats;
}

/* Drops emitted bytes, keeping ctx_bytes of lookbehind context (starting
 * at a character boundary) before the held tail. */
static void compact(sl_redact_stream *s)
{
	size_t keep = s->e.r->ctx_bytes;
	if (s->e.pos <= keep * 2)
		return;
	size_t cut = s->e.pos - keep;
	while (cut < s->e.pos && (s->buf[cut] & 0xC0) == 0x80)
		cut++;
	memmove(s->buf, s->buf + cut, s->len - cut);
	s->len -= cut;
	s->e.pos -= cut;
	for (size_t i = 0; i < s->e.r->n_rules; i++) {
		rstate *st = &s->e.st[i];
		if (st->st == ST_STALE)
			continue;
		if ((st->st == ST_MATCH || st->st == ST_PARTIAL) && st->s < cut) {
			st->st = ST_STALE;
			continue;
		}
		if (st->st == ST_MATCH || st->st == ST_PARTIAL)
			st->s -= cut;
		if (st->st == ST_MATCH)
			st->e -= cut;
		st->at_len -= cut;
	}
}

int sl_redact_stream_push(sl_redact_stream *s, const char *piece, size_t len,
                          sl_dynbuf *out)
{
	if (!s || !out || (!piece && len))
		return SL_EINVAL;
	if (s->err)
		return s->err;
	if (s->finished)
		return SL_ESTATE;
	if (s->len + len > s->cap) {
		size_t cap = s->cap ? s->cap : 256;
		while (cap < s->len + len)
			cap *= 2;
		unsigned char *nb = realloc(s->buf, cap);
		if (!nb)
			return s->err = SL_ENOMEM;
		s->buf = nb;
		s->cap = cap;
	}
	if (len)
		memcpy(s->buf + s->len, piece, len);
	s->len += len;
	s->e.stats.bytes_in += len;
	int rc = step(&s->e, s->buf, s->len, 0, out);
	if (rc)
		return s->err = rc;
	compact(s);
	return SL_OK;
}

int sl_redact_stream_finish(sl_redact_stream *s, sl_dynbuf *out)
{
	if (!s || !out)
		return SL_EINVAL;
	if (s->err)
		return s->err;
	if (s->finished)
		return SL_ESTATE;
	s->finished = 1;
	int rc = step(&s->e, s->buf ? s->buf : (const unsigned char *)"", s->len, 1, out);
	if (rc)
		s->err = rc;
	return rc;
}
