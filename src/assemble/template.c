/* template.c - prompt template compiler and renderer; see template.h and
 * docs/internals/assemble.md.
 *
 * A template compiles to a flat array of ops.  Section ops (loop, inverted,
 * if) record the index of their matching END op, and an if records the
 * index of its ELSE op (== end when there is none), so rendering a section
 * is rendering the op range inside it: recursion depth is bounded by the
 * nesting depth, which the compiler bounds. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assemble/template.h"
#include "core/utf8.h"

const char *const sl_template_request_vars[] = {
	"query", "messages", "user", "model", "metadata.*", "docs", NULL,
};

enum op_kind { OP_TEXT, OP_VAR, OP_LOOP, OP_INV, OP_IF, OP_ELSE, OP_END };

/* what a name refers to */
enum var_kind { V_SCALAR, V_DOCS, V_ID, V_TEXT, V_SCORE, V_RANK };

typedef struct op {
	unsigned char kind; /* enum op_kind */
	unsigned char vk;   /* enum var_kind (VAR, LOOP, INV, IF) */
	unsigned char raw;  /* OP_VAR: 1 = never escaped */
	size_t off, len;    /* OP_TEXT: the text; others: the name; in t->src */
	size_t mid;         /* OP_IF: index of its OP_ELSE, or end */
	size_t end;         /* sections: index of the matching OP_END */
} op;

struct sl_template {
	char *name;
	char *src;
	size_t src_len;
	op *ops;
	size_t n_ops, cap_ops;
	sl_tescape esc;
};

/* ------------------------------------------------------------- compiling */

typedef struct open_sec {
	size_t op;    /* index of the section's op */
	size_t at;    /* source offset of its "{{" */
	int is_docs_loop;
} open_sec;

typedef struct comp {
	sl_template *t;
	const char *s;
	size_t n;
	const char *const *known;
	char *err;
	size_t errlen;
	open_sec stack[SL_TEMPLATE_MAX_DEPTH];
	size_t depth;
	size_t docs_loops; /* open {{#docs}} sections */
	int esc_set;
} comp;

/* Line and column (1-based; column in code points) of offset off. */
static void line_col(const char *s, size_t off, unsigned *line, unsigned *col)
{
	unsigned l = 1, c = 1;
	for (size_t i = 0; i < off; i++) {
		unsigned char b = (unsigned char)s[i];
		if (b == '\n') {
			l++;
			c = 1;
		} else if ((b & 0xC0) != 0x80) {
			c++;
		}
	}
	*line = l;
	*col = c;
}

static int fail(comp *c, size_t off, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(comp *c, size_t off, const char *fmt, ...)
{
	if (!c->err || c->errlen == 0)
		return SL_EINVAL;
	unsigned line, col;
	line_col(c->s, off, &line, &col);
	int k = snprintf(c->err, c->errlen, "%s:%u:%u: ", c->t->name, line, col);
	if (k >= 0 && (size_t)k < c->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->err + k, c->errlen - (size_t)k, fmt, ap);
		va_end(ap);
	}
	return SL_EINVAL;
}

static int push_op(comp *c, const op *o, size_t *idx)
{
	sl_template *t = c->t;
	if (t->n_ops == t->cap_ops) {
		size_t cap = t->cap_ops ? t->cap_ops * 2 : 16;
		op *np = realloc(t->ops, cap * sizeof *np);
		if (!np)
			return SL_ENOMEM;
		t->ops = np;
		t->cap_ops = cap;
	}
	if (idx)
		*idx = t->n_ops;
	t->ops[t->n_ops++] = *o;
	return SL_OK;
}

static int is_blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

static int name_ok(const char *p, size_t len)
{
	if (len == 0 || len > SL_TEMPLATE_MAX_NAME)
		return 0;
	char c0 = p[0];
	if (!((c0 >= 'a' && c0 <= 'z') || (c0 >= 'A' && c0 <= 'Z') || c0 == '_'))
		return 0;
	for (size_t i = 1; i < len; i++) {
		char ch = p[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-'))
			return 0;
	}
	return 1;
}

static int eq(const char *p, size_t len, const char *lit)
{
	return strlen(lit) == len && memcmp(p, lit, len) == 0;
}

static int is_known(const comp *c, const char *p, size_t len)
{
	for (const char *const *k = c->known; *k; k++) {
		size_t kl = strlen(*k);
		if (kl >= 2 && (*k)[kl - 1] == '*' && (*k)[kl - 2] == '.') {
			/* "prefix.*": prefix. followed by at least one character */
			if (len > kl - 1 && memcmp(p, *k, kl - 1) == 0)
				return 1;
		} else if (kl == len && memcmp(p, *k, len) == 0) {
			return 1;
		}
	}
	return 0;
}

static int is_field(const char *p, size_t len, enum var_kind *vk)
{
	if (eq(p, len, "id"))
		*vk = V_ID;
	else if (eq(p, len, "text"))
		*vk = V_TEXT;
	else if (eq(p, len, "score"))
		*vk = V_SCORE;
	else if (eq(p, len, "rank"))
		*vk = V_RANK;
	else
		return 0;
	return 1;
}

/* Resolves a name at tag offset at.  Loop fields win inside {{#docs}}. */
static int resolve(comp *c, size_t at, const char *p, size_t len, enum var_kind *vk)
{
	if (!name_ok(p, len))
		return fail(c, at, "invalid variable name '%.*s'", (int)(len > 64 ? 64 : len), p);
	if (c->docs_loops > 0 && is_field(p, len, vk))
		return SL_OK;
	if (eq(p, len, "docs") && is_known(c, p, len)) {
		*vk = V_DOCS;
		return SL_OK;
	}
	if (is_known(c, p, len)) {
		*vk = V_SCALAR;
		return SL_OK;
	}
	enum var_kind dummy;
	if (is_field(p, len, &dummy))
		return fail(c, at, "unknown variable '%.*s' ('%.*s' is defined only inside {{#docs}})",
		            (int)len, p, (int)len, p);
	return fail(c, at, "unknown variable '%.*s'", (int)len, p);
}

static const char *sec_word(const comp *c, const op *o)
{
	(void)c;
	return o->kind == OP_IF ? "#if" : o->kind == OP_LOOP ? "#" : "^";
}

static int open_section(comp *c, size_t at, op *o)
{
	if (c->depth == SL_TEMPLATE_MAX_DEPTH)
		return fail(c, at, "sections nested deeper than %d", SL_TEMPLATE_MAX_DEPTH);
	size_t idx;
	int rc = push_op(c, o, &idx);
	if (rc)
		return rc;
	open_sec *s = &c->stack[c->depth++];
	s->op = idx;
	s->at = at;
	s->is_docs_loop = o->kind == OP_LOOP;
	if (s->is_docs_loop)
		c->docs_loops++;
	return SL_OK;
}

/* The tag's content is [p, p + len) with blanks trimmed; at is its "{{". */
static int tag(comp *c, size_t at, const char *p, size_t len, int triple)
{
	sl_template *t = c->t;
	op o;
	memset(&o, 0, sizeof o);
	int rc;
	if (len == 0)
		return fail(c, at, "empty tag");
	if (triple || p[0] == '&') {
		if (!triple) {
			p++;
			len--;
			while (len && is_blank(*p))
				p++, len--;
		}
		enum var_kind vk;
		if ((rc = resolve(c, at, p, len, &vk)))
			return rc;
		if (vk == V_DOCS)
			return fail(c, at, "'docs' is a list: use {{#docs}}...{{/docs}}");
		o.kind = OP_VAR;
		o.vk = (unsigned char)vk;
		o.raw = 1;
		o.off = (size_t)(p - c->s);
		o.len = len;
		return push_op(c, &o, NULL);
	}
	char sigil = p[0];
	if (sigil == '#' || sigil == '^' || sigil == '/' || sigil == '%') {
		p++;
		len--;
		while (len && is_blank(*p))
			p++, len--;
	}
	if (sigil == '%') {
		/* escape[:] VALUE */
		if (len < 6 || memcmp(p, "escape", 6) != 0)
			return fail(c, at, "unknown pragma '%.*s' (known: escape)",
			            (int)(len > 64 ? 64 : len), p);
		p += 6;
		len -= 6;
		while (len && is_blank(*p))
			p++, len--;
		if (len && *p == ':') {
			p++;
			len--;
		}
		while (len && is_blank(*p))
			p++, len--;
		sl_tescape e;
		if (eq(p, len, "text"))
			e = SL_TESC_TEXT;
		else if (eq(p, len, "json"))
			e = SL_TESC_JSON;
		else if (eq(p, len, "none"))
			e = SL_TESC_NONE;
		else
			return fail(c, at, "escape must be text, json or none, not '%.*s'",
			            (int)(len > 64 ? 64 : len), p);
		if (c->depth > 0)
			return fail(c, at, "the escape pragma must be outside any section");
		if (c->esc_set && t->esc != e)
			return fail(c, at, "a second, different escape pragma");
		c->esc_set = 1;
		t->esc = e;
		return SL_OK;
	}
	if (sigil == '#') {
		if (len >= 2 && memcmp(p, "if", 2) == 0 && (len == 2 || is_blank(p[2]))) {
			p += 2;
			len -= 2;
			while (len && is_blank(*p))
				p++, len--;
			if (len == 0)
				return fail(c, at, "{{#if}} needs a variable");
			enum var_kind vk;
			if ((rc = resolve(c, at, p, len, &vk)))
				return rc;
			o.kind = OP_IF;
			o.vk = (unsigned char)vk;
			o.off = (size_t)(p - c->s);
			o.len = len;
			return open_section(c, at, &o);
		}
		enum var_kind vk;
		if ((rc = resolve(c, at, p, len, &vk)))
			return rc;
		if (vk != V_DOCS)
			return fail(c, at, "'{{#%.*s}}': only docs can be looped over; use {{#if %.*s}}",
			            (int)len, p, (int)len, p);
		if (c->docs_loops > 0)
			return fail(c, at, "{{#docs}} inside {{#docs}}");
		o.kind = OP_LOOP;
		o.vk = (unsigned char)vk;
		o.off = (size_t)(p - c->s);
		o.len = len;
		return open_section(c, at, &o);
	}
	if (sigil == '^') {
		enum var_kind vk;
		if ((rc = resolve(c, at, p, len, &vk)))
			return rc;
		o.kind = OP_INV;
		o.vk = (unsigned char)vk;
		o.off = (size_t)(p - c->s);
		o.len = len;
		return open_section(c, at, &o);
	}
	if (sigil == '/') {
		if (!name_ok(p, len))
			return fail(c, at, "invalid closing tag '{{/%.*s}}'",
			            (int)(len > 64 ? 64 : len), p);
		if (c->depth == 0)
			return fail(c, at, "'{{/%.*s}}' closes nothing", (int)len, p);
		open_sec *s = &c->stack[c->depth - 1];
		op *so = &t->ops[s->op];
		int match = so->kind == OP_IF ? eq(p, len, "if")
		                              : (so->len == len && !memcmp(c->s + so->off, p, len));
		if (!match) {
			unsigned l, col;
			line_col(c->s, s->at, &l, &col);
			return fail(c, at, "'{{/%.*s}}' closes '{{%s%s%.*s}}' opened at %u:%u",
			            (int)len, p, sec_word(c, so), so->kind == OP_IF ? " " : "",
			            (int)so->len, c->s + so->off, l, col);
		}
		o.kind = OP_END;
		size_t idx;
		if ((rc = push_op(c, &o, &idx)))
			return rc;
		so = &t->ops[s->op]; /* push_op may have moved the array */
		so->end = idx;
		if (so->kind == OP_IF && so->mid == 0)
			so->mid = idx;
		if (s->is_docs_loop)
			c->docs_loops--;
		c->depth--;
		return SL_OK;
	}
	if (eq(p, len, "else")) {
		if (c->depth == 0 || t->ops[c->stack[c->depth - 1].op].kind != OP_IF)
			return fail(c, at, "{{else}} outside {{#if}}");
		op *so = &t->ops[c->stack[c->depth - 1].op];
		if (so->mid != 0)
			return fail(c, at, "a second {{else}} in one {{#if}}");
		o.kind = OP_ELSE;
		size_t idx;
		if ((rc = push_op(c, &o, &idx)))
			return rc;
		t->ops[c->stack[c->depth - 1].op].mid = idx;
		return SL_OK;
	}
	enum var_kind vk;
	if ((rc = resolve(c, at, p, len, &vk)))
		return rc;
	if (vk == V_DOCS)
		return fail(c, at, "'docs' is a list: use {{#docs}}...{{/docs}}");
	o.kind = OP_VAR;
	o.vk = (unsigned char)vk;
	o.off = (size_t)(p - c->s);
	o.len = len;
	return push_op(c, &o, NULL);
}

static const char *find2(const char *s, size_t from, size_t n, char ch)
{
	for (size_t i = from; i + 1 < n; i++) {
		const char *q = memchr(s + i, ch, n - 1 - i);
		if (!q)
			return NULL;
		if (q[1] == ch)
			return q;
		i = (size_t)(q - s);
	}
	return NULL;
}

static int add_text(comp *c, size_t from, size_t to)
{
	if (to <= from)
		return SL_OK;
	op o;
	memset(&o, 0, sizeof o);
	o.kind = OP_TEXT;
	o.off = from;
	o.len = to - from;
	return push_op(c, &o, NULL);
}

static int parse(comp *c)
{
	const char *s = c->s;
	size_t n = c->n;
	size_t cur = 0;
	for (;;) {
		const char *q = find2(s, cur, n, '{');
		if (!q)
			break;
		size_t at = (size_t)(q - s);
		int triple = at + 2 < n && s[at + 2] == '{';
		int comment = at + 2 < n && s[at + 2] == '!';
		size_t cstart = at + (triple ? 3 : 2);
		size_t cend, te;
		if (triple) {
			const char *e = NULL;
			for (size_t i = cstart; i + 2 < n; i++)
				if (s[i] == '}' && s[i + 1] == '}' && s[i + 2] == '}') {
					e = s + i;
					break;
				}
			if (!e)
				return fail(c, at, "unterminated tag: '{{{' without '}}}'");
			cend = (size_t)(e - s);
			te = cend + 3;
		} else {
			const char *e = find2(s, cstart, n, '}');
			if (!e)
				return fail(c, at, "unterminated tag: '{{' without '}}'");
			cend = (size_t)(e - s);
			te = cend + 2;
		}
		if (!comment && find2(s, cstart, cend, '{') != NULL)
			return fail(c, at, "unterminated tag: '{{' without '}}' before the next '{{'");
		/* trimmed content */
		const char *p = s + cstart;
		size_t len = cend - cstart;
		while (len && (is_blank(*p) || *p == '\n' || *p == '\r'))
			p++, len--;
		while (len && (is_blank(p[len - 1]) || p[len - 1] == '\n' || p[len - 1] == '\r'))
			len--;
		/* standalone block tag: the whole line goes */
		int block = !triple && len > 0 &&
		            (comment || p[0] == '#' || p[0] == '^' || p[0] == '/' ||
		             p[0] == '%' || eq(p, len, "else"));
		size_t text_end = at, next = te;
		if (block) {
			size_t ls = at;
			while (ls > cur && is_blank(s[ls - 1]))
				ls--;
			int at_line_start = ls == 0 || s[ls - 1] == '\n';
			size_t le = te;
			while (le < n && is_blank(s[le]))
				le++;
			int at_line_end = le == n || s[le] == '\n' ||
			                  (s[le] == '\r' && le + 1 < n && s[le + 1] == '\n');
			if (at_line_start && at_line_end && (ls > cur || ls == 0 || s[ls - 1] == '\n')) {
				text_end = ls;
				next = le == n ? n : le + (s[le] == '\r' ? 2 : 1);
			}
		}
		int rc = add_text(c, cur, text_end);
		if (rc)
			return rc;
		if (!comment && (rc = tag(c, at, p, len, triple)))
			return rc;
		cur = next;
	}
	int rc = add_text(c, cur, n);
	if (rc)
		return rc;
	if (c->depth > 0) {
		open_sec *s0 = &c->stack[c->depth - 1];
		op *so = &c->t->ops[s0->op];
		return fail(c, s0->at, "'{{%s%s%.*s}}' is never closed", sec_word(c, so),
		            so->kind == OP_IF ? " " : "", (int)so->len, c->s + so->off);
	}
	return SL_OK;
}

int sl_template_compile(const char *src, size_t len, const char *name,
                        const char *const *known_vars, sl_template **out,
                        char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = '\0';
	if (!out || (!src && len))
		return SL_EINVAL;
	if (!name)
		name = "template";
	if (len > SL_TEMPLATE_MAX_SRC) {
		if (err && errlen)
			snprintf(err, errlen, "%s: template is %zu bytes, over the limit of %u",
			         name, len, SL_TEMPLATE_MAX_SRC);
		return SL_ETOOBIG;
	}
	sl_template *t = calloc(1, sizeof *t);
	if (!t)
		return SL_ENOMEM;
	t->name = strdup(name);
	t->src = malloc(len + 1);
	if (!t->name || !t->src) {
		sl_template_free(t);
		return SL_ENOMEM;
	}
	if (len)
		memcpy(t->src, src, len);
	t->src[len] = '\0';
	t->src_len = len;
	t->esc = SL_TESC_TEXT;

	comp c;
	memset(&c, 0, sizeof c);
	c.t = t;
	c.s = t->src;
	c.n = len;
	c.known = known_vars ? known_vars : sl_template_request_vars;
	c.err = err;
	c.errlen = errlen;

	int rc;
	size_t valid = sl_utf8_valid_prefix(t->src, len);
	const char *nul = memchr(t->src, '\0', len);
	if (nul && (size_t)(nul - t->src) < valid)
		rc = fail(&c, (size_t)(nul - t->src), "NUL byte in template");
	else if (valid < len)
		rc = fail(&c, valid, "invalid UTF-8");
	else
		rc = parse(&c);
	if (rc) {
		sl_template_free(t);
		return rc;
	}
	*out = t;
	return SL_OK;
}

int sl_template_load(const char *path, const char *const *known_vars,
                     sl_template **out, char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = '\0';
	if (!path || !out)
		return SL_EINVAL;
	FILE *f = fopen(path, "rb");
	if (!f) {
		int e = errno;
		if (err && errlen)
			snprintf(err, errlen, "%s: %s", path, strerror(e));
		return e == ENOENT ? SL_ENOTFOUND : SL_ESYS;
	}
	sl_dynbuf b;
	sl_dynbuf_init(&b, SL_TEMPLATE_MAX_SRC);
	char chunk[8192];
	size_t got;
	int rc = SL_OK;
	while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
		if ((rc = sl_dynbuf_add(&b, chunk, got)))
			break;
	int rerr = ferror(f);
	fclose(f);
	if (rc == SL_OK && rerr) {
		if (err && errlen)
			snprintf(err, errlen, "%s: read error", path);
		rc = SL_ESYS;
	} else if (rc == SL_ETOOBIG) {
		if (err && errlen)
			snprintf(err, errlen, "%s: template over the limit of %u bytes", path,
			         SL_TEMPLATE_MAX_SRC);
	}
	if (rc == SL_OK)
		rc = sl_template_compile(b.p ? b.p : "", b.len, path, known_vars, out, err, errlen);
	sl_dynbuf_free(&b);
	return rc;
}

void sl_template_free(sl_template *t)
{
	if (!t)
		return;
	free(t->name);
	free(t->src);
	free(t->ops);
	free(t);
}

sl_tescape sl_template_escape(const sl_template *t)
{
	return t->esc;
}

const char *sl_template_name(const sl_template *t)
{
	return t->name;
}

int sl_template_uses(const sl_template *t, const char *var)
{
	size_t vl = strlen(var);
	for (size_t i = 0; i < t->n_ops; i++) {
		const op *o = &t->ops[i];
		if (o->kind == OP_TEXT || o->kind == OP_ELSE || o->kind == OP_END)
			continue;
		if (o->vk != V_SCALAR && o->vk != V_DOCS)
			continue;
		if (o->len == vl && memcmp(t->src + o->off, var, vl) == 0)
			return 1;
	}
	return 0;
}

/* -------------------------------------------------------------- escaping */

static const char REPL[3] = {(char)0xEF, (char)0xBF, (char)0xBD}; /* U+FFFD */

static char last_byte(const sl_dynbuf *b)
{
	return b->len ? b->p[b->len - 1] : 0;
}

int sl_template_escape_append(sl_dynbuf *out, sl_tescape mode, const char *s,
                              size_t len)
{
	size_t i = 0, run = 0; /* run: start of bytes not yet appended */
	int rc;
#define FLUSH()                                                         \
	do {                                                            \
		if (i > run && (rc = sl_dynbuf_add(out, s + run, i - run))) \
			return rc;                                      \
	} while (0)
	while (i < len) {
		unsigned char b = (unsigned char)s[i];
		if (b >= 0x80) {
			size_t k = sl_utf8_seq_len(s + i, len - i);
			if (k == 0) {
				FLUSH();
				if ((rc = sl_dynbuf_add(out, REPL, sizeof REPL)))
					return rc;
				run = ++i;
				continue;
			}
			/* C1 controls U+0080..U+009F are C2 80..C2 9F */
			if (mode == SL_TESC_TEXT && k == 2 && b == 0xC2 &&
			    (unsigned char)s[i + 1] < 0xA0) {
				FLUSH();
				i += 2;
				run = i;
				continue;
			}
			i += k;
			continue;
		}
		if (mode == SL_TESC_TEXT) {
			if ((b < 0x20 && b != '\t' && b != '\n' && b != '\r') || b == 0x7F) {
				FLUSH();
				run = ++i;
				continue;
			}
			if (b == '{' || b == '}') {
				char prev = i > run ? s[i - 1] : last_byte(out);
				if (prev == (char)b) {
					FLUSH();
					if ((rc = sl_dynbuf_add(out, " ", 1)))
						return rc;
					run = i;
				}
			}
			i++;
			continue;
		}
		if (mode == SL_TESC_JSON && (b < 0x20 || b == '"' || b == '\\')) {
			FLUSH();
			char e[8];
			size_t el = 2;
			e[0] = '\\';
			switch (b) {
			case '"': e[1] = '"'; break;
			case '\\': e[1] = '\\'; break;
			case '\n': e[1] = 'n'; break;
			case '\r': e[1] = 'r'; break;
			case '\t': e[1] = 't'; break;
			case '\b': e[1] = 'b'; break;
			case '\f': e[1] = 'f'; break;
			default:
				snprintf(e, sizeof e, "\\u%04x", b);
				el = 6;
			}
			if ((rc = sl_dynbuf_add(out, e, el)))
				return rc;
			run = ++i;
			continue;
		}
		i++;
	}
	FLUSH();
#undef FLUSH
	return SL_OK;
}

/* ------------------------------------------------------------- rendering */

typedef struct rctx {
	const sl_template *t;
	const sl_tvars *v;
	sl_dynbuf *out;
	const sl_tdoc *doc; /* inside {{#docs}} */
	size_t rank;        /* 1-based */
	char num[48];
} rctx;

static size_t doc_text_len(const sl_tdoc *d)
{
	if (!d->text)
		return 0;
	return d->text_len == (size_t)-1 ? strlen(d->text) : d->text_len;
}

/* The value of a scalar-ish op, or NULL (absent / empty). */
static const char *value(rctx *r, const op *o, size_t *len)
{
	*len = 0;
	switch (o->vk) {
	case V_SCALAR: {
		const char *name = r->t->src + o->off;
		for (size_t i = 0; i < r->v->n_vars; i++) {
			const char *k = r->v->vars[i].key;
			if (k && strlen(k) == o->len && memcmp(k, name, o->len) == 0) {
				const char *val = r->v->vars[i].value;
				if (!val)
					return NULL;
				*len = strlen(val);
				return val;
			}
		}
		return NULL;
	}
	case V_ID:
		if (!r->doc || !r->doc->id)
			return NULL;
		*len = strlen(r->doc->id);
		return r->doc->id;
	case V_TEXT:
		if (!r->doc)
			return NULL;
		*len = doc_text_len(r->doc);
		return r->doc->text;
	case V_SCORE:
		if (!r->doc || isnan(r->doc->score))
			return NULL;
		snprintf(r->num, sizeof r->num, "%.4g", r->doc->score);
		*len = strlen(r->num);
		return r->num;
	case V_RANK:
		if (!r->doc)
			return NULL;
		snprintf(r->num, sizeof r->num, "%zu", r->rank);
		*len = strlen(r->num);
		return r->num;
	default:
		return NULL;
	}
}

static int truthy(rctx *r, const op *o)
{
	if (o->vk == V_DOCS)
		return r->v->n_docs > 0;
	size_t len;
	value(r, o, &len);
	return len > 0;
}

static int render_range(rctx *r, size_t from, size_t to)
{
	const sl_template *t = r->t;
	int rc;
	for (size_t i = from; i < to; i++) {
		const op *o = &t->ops[i];
		switch (o->kind) {
		case OP_TEXT:
			if ((rc = sl_dynbuf_add(r->out, t->src + o->off, o->len)))
				return rc;
			break;
		case OP_VAR: {
			size_t len;
			const char *val = value(r, o, &len);
			if (len && (rc = sl_template_escape_append(
			                    r->out, o->raw ? SL_TESC_NONE : t->esc, val, len)))
				return rc;
			break;
		}
		case OP_LOOP: {
			const sl_tdoc *saved = r->doc;
			size_t saved_rank = r->rank;
			for (size_t d = 0; d < r->v->n_docs; d++) {
				r->doc = &r->v->docs[d];
				r->rank = d + 1;
				if ((rc = render_range(r, i + 1, o->end)))
					return rc;
			}
			r->doc = saved;
			r->rank = saved_rank;
			i = o->end;
			break;
		}
		case OP_INV:
			if (!truthy(r, o) && (rc = render_range(r, i + 1, o->end)))
				return rc;
			i = o->end;
			break;
		case OP_IF:
			if (truthy(r, o))
				rc = render_range(r, i + 1, o->mid);
			else
				rc = o->mid < o->end ? render_range(r, o->mid + 1, o->end) : SL_OK;
			if (rc)
				return rc;
			i = o->end;
			break;
		default: /* OP_ELSE / OP_END are never reached inside a range */
			break;
		}
	}
	return SL_OK;
}

int sl_template_render(const sl_template *t, const sl_tvars *vars,
                       sl_dynbuf *out, char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = '\0';
	if (!t || !out)
		return SL_EINVAL;
	static const sl_tvars none;
	rctx r;
	memset(&r, 0, sizeof r);
	r.t = t;
	r.v = vars ? vars : &none;
	r.out = out;
	int rc = render_range(&r, 0, t->n_ops);
	if (rc && err && errlen)
		snprintf(err, errlen, "%s: rendering: %s (output bound %zu bytes)", t->name,
		         sl_strerror(rc), out->max);
	return rc;
}
