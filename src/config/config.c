/* config.c - the configuration schema: YAML tree -> sl_config, with every
 * problem reported (see config.h, docs/configuration.md).
 *
 * The walk never stops at the first problem: each section, entry and key is
 * checked on its own, the cross-references (models -> pipelines, backends)
 * and each pipeline's graph after that.  A value is interpolated (${VAR})
 * when it is read, before its type is checked.  Diagnostics are sorted by
 * position at the end.
 *
 * Message forms (tests and docs rely on them):
 *   unknown key "K" (expected one of: A, B, C)
 *   missing required key "K"
 *   expected DESCRIPTION, found FOUND
 *       FOUND: a mapping | a sequence | null | a bare number or boolean as
 *       written (-5, 1.5, true) | a quoted string ("lots")
 *   duplicate key "K" (first at L:C)
 *   ... see docs/configuration.md "Validation" for the rest.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include "config/config_int.h"

#define NAME_MAX_LEN 64
#define MAX_STRING 8192u     /* url, model, header values (SL_OPENAI_MAX_STRING) */
#define MAX_HEADERS 64u      /* per backend (SL_OPENAI_MAX_HEADERS) */
#define MAX_MS 86400000u     /* a day */
#define NAME_DESC "a name (1..64 characters of A-Z a-z 0-9 . _ -)"
#define ENV_DESC "an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"

/* ---- reporting, paths, quoting ------------------------------------------ */

void sl__cfg_vreport(sl__cfg_rep *r, int line, int col, const char *path, const char *fmt,
                     va_list ap)
{
	sl_cfg_diags *d = r->diags;
	if (d->n >= SL_CFG_MAX_DIAGS) {
		d->dropped++;
		return;
	}
	if (d->n == 0 && !d->v) {
		d->v = calloc(SL_CFG_MAX_DIAGS, sizeof *d->v);
		if (!d->v) {
			r->nomem = 1;
			return;
		}
	}
	char msg[2048];
	vsnprintf(msg, sizeof msg, fmt, ap);
	sl_cfg_diag *e = &d->v[d->n];
	e->file = strdup(r->file ? r->file : "<string>");
	e->path = strdup(path ? path : "");
	e->msg = strdup(msg);
	e->line = line;
	e->col = col;
	if (!e->file || !e->path || !e->msg) {
		free(e->file);
		free(e->path);
		free(e->msg);
		memset(e, 0, sizeof *e);
		r->nomem = 1;
		return;
	}
	d->n++;
}

void sl__cfg_report(sl__cfg_rep *r, int line, int col, const char *path, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	sl__cfg_vreport(r, line, col, path, fmt, ap);
	va_end(ap);
}

static void cpath_add(sl__cpath *p, const char *s, size_t n)
{
	if (p->len + n + 4 >= SL__CPATH_MAX) {
		/* keep the path well-formed but cut: mark it once */
		if (p->len + 4 < SL__CPATH_MAX && (p->len < 3 || strcmp(p->b + p->len - 3, "...") != 0)) {
			memcpy(p->b + p->len, "...", 3);
			p->len += 3;
			p->b[p->len] = '\0';
		}
		return;
	}
	memcpy(p->b + p->len, s, n);
	p->len += n;
	p->b[p->len] = '\0';
}

size_t sl__cpath_key(sl__cpath *p, const char *key, size_t klen)
{
	size_t old = p->len;
	int plain = klen > 0 && klen <= NAME_MAX_LEN;
	for (size_t i = 0; i < klen && plain; i++) {
		unsigned char ch = (unsigned char)key[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '_' || ch == '-'))
			plain = 0;
	}
	if (plain) {
		if (p->len)
			cpath_add(p, ".", 1);
		cpath_add(p, key, klen);
	} else {
		char q[160];
		sl__cfg_quote(q, sizeof q, key, klen, NAME_MAX_LEN);
		cpath_add(p, "[", 1);
		cpath_add(p, q, strlen(q));
		cpath_add(p, "]", 1);
	}
	return old;
}

size_t sl__cpath_idx(sl__cpath *p, size_t i)
{
	size_t old = p->len;
	char b[32];
	int n = snprintf(b, sizeof b, "[%zu]", i);
	cpath_add(p, b, (size_t)n);
	return old;
}

void sl__cfg_quote(char *buf, size_t cap, const char *s, size_t len, size_t max)
{
	size_t o = 0;
	if (cap < 8) {
		if (cap)
			buf[0] = '\0';
		return;
	}
	buf[o++] = '"';
	size_t lim = len < max ? len : max;
	for (size_t i = 0; i < lim; i++) {
		unsigned char ch = (unsigned char)s[i];
		char e[8];
		size_t n;
		if (ch == '"' || ch == '\\') {
			e[0] = '\\', e[1] = (char)ch, n = 2;
		} else if (ch == '\n') {
			memcpy(e, "\\n", 2), n = 2;
		} else if (ch == '\t') {
			memcpy(e, "\\t", 2), n = 2;
		} else if (ch == '\r') {
			memcpy(e, "\\r", 2), n = 2;
		} else if (ch < 0x20 || ch == 0x7f) {
			n = (size_t)snprintf(e, sizeof e, "\\x%02x", ch);
		} else {
			e[0] = (char)ch, n = 1;
		}
		if (o + n + 5 >= cap)
			break;
		memcpy(buf + o, e, n);
		o += n;
	}
	if (len > max && o + 5 < cap) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o++] = '"';
	buf[o] = '\0';
}

/* ---- diags ------------------------------------------------------------- */

const char *sl_cfg_diag_format(const sl_cfg_diag *d, char *buf, size_t cap)
{
	if (!buf || !cap)
		return buf;
	const char *file = d->file ? d->file : "<string>";
	const char *path = d->path ? d->path : "";
	const char *msg = d->msg ? d->msg : "";
	const char *sep = *path ? ": " : "";
	if (d->line > 0)
		snprintf(buf, cap, "%s:%d:%d: %s%s%s", file, d->line, d->col, path, sep, msg);
	else
		snprintf(buf, cap, "%s: %s%s%s", file, path, sep, msg);
	return buf;
}

void sl_cfg_diags_free(sl_cfg_diags *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++) {
		free(d->v[i].file);
		free(d->v[i].path);
		free(d->v[i].msg);
	}
	free(d->v);
	d->v = NULL;
	d->n = 0;
	d->dropped = 0;
}

static int diag_before(const sl_cfg_diag *a, const sl_cfg_diag *b)
{
	long la = a->line > 0 ? a->line : 0x7fffffffL, lb = b->line > 0 ? b->line : 0x7fffffffL;
	if (la != lb)
		return la < lb;
	return a->col < b->col;
}

/* Stable insertion sort by position (at most SL_CFG_MAX_DIAGS entries);
 * diags without a position go last. */
static void diags_sort(sl_cfg_diags *d)
{
	for (size_t i = 1; i < d->n; i++) {
		sl_cfg_diag x = d->v[i];
		size_t j = i;
		while (j > 0 && diag_before(&x, &d->v[j - 1])) {
			d->v[j] = d->v[j - 1];
			j--;
		}
		d->v[j] = x;
	}
}

/* ---- the walk's context and value readers ----------------------------------- */

typedef struct cx {
	sl__cfg_rep rep;
	sl__cpath path;
	sl_config *cfg;
	/* names of pipelines and backends, sorted, for the models' lookups
	 * (a file may define thousands: keep it O(log n)) */
	const char **pnames, **bnames;
	size_t npn, nbn;
} cx;

static void err(cx *c, int line, int col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void err(cx *c, int line, int col, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	sl__cfg_vreport(&c->rep, line, col, c->path.b, fmt, ap);
	va_end(ap);
}

static size_t push_key(cx *c, const char *k)
{
	return sl__cpath_key(&c->path, k, strlen(k));
}

static size_t push_idx(cx *c, size_t i)
{
	return sl__cpath_idx(&c->path, i);
}

static void pop(cx *c, size_t old)
{
	sl__cpath_pop(&c->path, old);
}

static char *xstrdup(cx *c, const char *s)
{
	char *p = strdup(s);
	if (!p)
		c->rep.nomem = 1;
	return p;
}

/* A scalar's value after interpolation. */
typedef struct sval {
	const sl__cnode *n;
	const char *s;
	size_t len;
	char *owned;   /* the interpolated text, freed by sval_done */
	int typed;     /* may be read as a number, a boolean or null */
	int null;      /* a null (plain "", "~", "null", "Null", "NULL") */
} sval;

static int is_null_text(const char *s, size_t len)
{
	return len == 0 || (len == 1 && s[0] == '~') ||
	       (len == 4 && (!memcmp(s, "null", 4) || !memcmp(s, "Null", 4) || !memcmp(s, "NULL", 4)));
}

/* Returns 0 with *v filled, -1 when n is not a scalar (nothing reported) or
 * when interpolation failed (reported). */
static int sval_get(cx *c, const sl__cnode *n, sval *v)
{
	memset(v, 0, sizeof *v);
	v->n = n;
	if (n->kind != SL__CN_SCALAR)
		return -1;
	char emsg[512];
	char *o;
	size_t ol;
	int rc = sl__cfg_interp(n->u.s, n->len, &o, &ol, emsg, sizeof emsg);
	if (rc == SL_ENOMEM) {
		c->rep.nomem = 1;
		return -2;
	}
	if (rc != SL_OK) {
		err(c, n->line, n->col, "%s", emsg);
		return -2;
	}
	if (o) {
		v->owned = o;
		v->s = o;
		v->len = ol;
		v->typed = 1; /* an interpolated value is typed by its text */
		v->null = 0;
	} else {
		v->s = n->u.s;
		v->len = n->len;
		v->typed = !n->quoted;
		v->null = v->typed && is_null_text(v->s, v->len);
	}
	return 0;
}

static void sval_done(sval *v)
{
	free(v->owned);
	v->owned = NULL;
}

/* Looks like a YAML number or boolean: shown bare in messages. */
static int looks_bare(const char *s, size_t len)
{
	if ((len == 4 && (!memcmp(s, "true", 4) || !memcmp(s, "True", 4) || !memcmp(s, "TRUE", 4))) ||
	    (len == 5 && (!memcmp(s, "false", 5) || !memcmp(s, "False", 5) || !memcmp(s, "FALSE", 5))))
		return 1;
	size_t i = 0;
	if (i < len && (s[i] == '-' || s[i] == '+'))
		i++;
	size_t digits = 0;
	while (i < len && s[i] >= '0' && s[i] <= '9')
		i++, digits++;
	if (i < len && s[i] == '.') {
		i++;
		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++, digits++;
	}
	if (!digits)
		return 0;
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < len && (s[i] == '-' || s[i] == '+'))
			i++;
		size_t ed = 0;
		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++, ed++;
		if (!ed)
			return 0;
	}
	return i == len && len <= 40;
}

/* What was found, for "expected ..., found X". */
static void describe(const sl__cnode *n, const sval *v, char *buf, size_t cap)
{
	if (n->kind == SL__CN_MAP) {
		snprintf(buf, cap, "a mapping");
	} else if (n->kind == SL__CN_SEQ) {
		snprintf(buf, cap, "a sequence");
	} else if (v && v->null) {
		snprintf(buf, cap, "null");
	} else {
		const char *s = v ? v->s : n->u.s;
		size_t len = v ? v->len : n->len;
		int typed = v ? v->typed : !n->quoted;
		if (typed && looks_bare(s, len))
			snprintf(buf, cap, "%.*s", (int)len, s);
		else
			sl__cfg_quote(buf, cap, s, len, 48);
	}
}

static void expected(cx *c, const sl__cnode *n, const sval *v, const char *what)
{
	char f[160];
	describe(n, v, f, sizeof f);
	err(c, n->line, n->col, "expected %s, found %s", what, f);
}

/* Integer lo..hi (decimal digits, no sign, no leading zeros). */
static int get_uint(cx *c, const sl__cnode *n, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char what[96];
	snprintf(what, sizeof what, "an integer %llu..%llu", (unsigned long long)lo,
	         (unsigned long long)hi);
	sval v;
	int rc = sval_get(c, n, &v);
	if (rc == -2)
		return -1;
	if (rc == -1) {
		expected(c, n, NULL, what);
		return -1;
	}
	int ok = v.typed && !v.null && v.len > 0 && v.len <= 20;
	uint64_t x = 0;
	for (size_t i = 0; ok && i < v.len; i++) {
		char ch = v.s[i];
		if (ch < '0' || ch > '9' || (i == 0 && ch == '0' && v.len > 1)) {
			ok = 0;
			break;
		}
		unsigned d = (unsigned)(ch - '0');
		if (x > (UINT64_MAX - d) / 10) {
			ok = 0;
			break;
		}
		x = x * 10 + d;
	}
	if (!ok || x < lo || x > hi) {
		expected(c, n, &v, what);
		sval_done(&v);
		return -1;
	}
	sval_done(&v);
	*out = x;
	return 0;
}

static int get_u32(cx *c, const sl__cnode *n, uint64_t lo, uint64_t hi, uint32_t *out)
{
	uint64_t x;
	if (get_uint(c, n, lo, hi, &x))
		return -1;
	*out = (uint32_t)x;
	return 0;
}

static int get_bool(cx *c, const sl__cnode *n, int *out)
{
	sval v;
	int rc = sval_get(c, n, &v);
	if (rc == -2)
		return -1;
	if (rc == 0 && v.typed && v.len == 4 && !memcmp(v.s, "true", 4)) {
		*out = 1;
	} else if (rc == 0 && v.typed && v.len == 5 && !memcmp(v.s, "false", 5)) {
		*out = 0;
	} else {
		expected(c, n, rc == 0 ? &v : NULL, "true or false");
		sval_done(&v);
		return -1;
	}
	sval_done(&v);
	return 0;
}

/* A string.  null_ok: a null gives *out = NULL.  what describes the
 * expected value in messages ("a string" by default); check (may be NULL)
 * validates the text. */
static int get_string(cx *c, const sl__cnode *n, int null_ok, const char *what,
                      int (*check)(const char *, size_t), size_t maxlen, char **out)
{
	*out = NULL;
	if (!what)
		what = "a string";
	sval v;
	int rc = sval_get(c, n, &v);
	if (rc == -2)
		return -1;
	if (rc == -1 || (v.null && !null_ok)) {
		expected(c, n, rc == 0 ? &v : NULL, what);
		return -1;
	}
	if (v.null) {
		sval_done(&v);
		return 0;
	}
	if (memchr(v.s, '\0', v.len)) {
		err(c, n->line, n->col, "expected %s, found a string with a NUL byte", what);
		sval_done(&v);
		return -1;
	}
	if (v.len > maxlen) {
		err(c, n->line, n->col, "expected %s of at most %zu bytes, found %zu bytes", what, maxlen,
		    v.len);
		sval_done(&v);
		return -1;
	}
	if (check && !check(v.s, v.len)) {
		expected(c, n, &v, what);
		sval_done(&v);
		return -1;
	}
	char *s;
	if (v.owned) {
		s = v.owned;
		v.owned = NULL;
	} else {
		s = malloc(v.len + 1);
		if (!s) {
			c->rep.nomem = 1;
			return -1;
		}
		memcpy(s, v.s, v.len);
		s[v.len] = '\0';
	}
	*out = s;
	return 0;
}

static int valid_name(const char *s, size_t len)
{
	if (len < 1 || len > NAME_MAX_LEN)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '.' || ch == '_' || ch == '-'))
			return 0;
	}
	return 1;
}

/* Public model names also take '/' and ':' (e.g. "meta-llama/Llama-3",
 * "llama3:8b"), up to 128 characters. */
#define MODEL_NAME_MAX_LEN 128
#define MODEL_NAME_DESC "a model name (1..128 characters of A-Z a-z 0-9 . _ - / :)"

static int valid_model_name(const char *s, size_t len)
{
	if (len < 1 || len > MODEL_NAME_MAX_LEN)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '.' || ch == '_' || ch == '-' || ch == '/' || ch == ':'))
			return 0;
	}
	return 1;
}

static int valid_env(const char *s, size_t len)
{
	if (len < 1 || len > 255)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		int alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
		if (!alpha && !(i > 0 && ch >= '0' && ch <= '9'))
			return 0;
	}
	return 1;
}

static int valid_host(const char *s, size_t len)
{
	if (len < 1 || len > 255)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch <= 0x20 || ch == 0x7f || ch == '/')
			return 0;
	}
	return 1;
}

static int valid_url(const char *s, size_t len)
{
	size_t p;
	if (len > 7 && !strncasecmp(s, "http://", 7))
		p = 7;
	else if (len > 8 && !strncasecmp(s, "https://", 8))
		p = 8;
	else
		return 0;
	if (s[p] == '/' || s[p] == '?' || s[p] == '#')
		return 0; /* no host */
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch <= 0x20 || ch == 0x7f)
			return 0;
	}
	return 1;
}

static int nonempty(const char *s, size_t len)
{
	(void)s;
	return len > 0;
}

static int get_name(cx *c, const sl__cnode *n, char **out)
{
	return get_string(c, n, 0, NAME_DESC, valid_name, NAME_MAX_LEN, out);
}

/* One of names[0..nn) -> its index. */
static int get_enum(cx *c, const sl__cnode *n, const char *const *names, size_t nn, int *out)
{
	char what[256];
	size_t o = 0;
	for (size_t i = 0; i < nn; i++) {
		const char *sep = i == 0 ? "" : i + 1 == nn ? " or " : ", ";
		o += (size_t)snprintf(what + o, sizeof what - o, "%s%s", sep, names[i]);
		if (o >= sizeof what)
			break;
	}
	sval v;
	int rc = sval_get(c, n, &v);
	if (rc == -2)
		return -1;
	if (rc == 0 && !v.null)
		for (size_t i = 0; i < nn; i++)
			if (strlen(names[i]) == v.len && !memcmp(names[i], v.s, v.len)) {
				*out = (int)i;
				sval_done(&v);
				return 0;
			}
	expected(c, n, rc == 0 ? &v : NULL, what);
	sval_done(&v);
	return -1;
}

/* A mapping, or (null_ok) a null meaning an empty one.  Returns 1 when n is
 * a mapping, 0 for an accepted null, -1 (reported) otherwise. */
static int want_map(cx *c, const sl__cnode *n, int null_ok)
{
	if (n->kind == SL__CN_MAP)
		return 1;
	if (null_ok && n->kind == SL__CN_SCALAR && !n->quoted && is_null_text(n->u.s, n->len))
		return 0;
	expected(c, n, NULL, "a mapping");
	return -1;
}

/* Sorts the pairs of m by the known keys: got[i] = the pair of keys[i] or
 * NULL.  Unknown keys are reported. */
static void walk_keys(cx *c, const sl__cnode *m, const char *const *keys, size_t nk,
                      const sl__cpair **got)
{
	for (size_t i = 0; i < nk; i++)
		got[i] = NULL;
	for (size_t p = 0; p < m->len; p++) {
		const sl__cpair *pr = &m->u.pairs[p];
		const sl__cnode *k = pr->key;
		size_t i;
		for (i = 0; i < nk; i++)
			if (strlen(keys[i]) == k->len && !memcmp(keys[i], k->u.s, k->len))
				break;
		if (i < nk) {
			got[i] = pr;
			continue;
		}
		char list[1024];
		size_t o = 0;
		list[0] = '\0';
		for (size_t j = 0; j < nk && o < sizeof list; j++)
			o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", j ? ", " : "", keys[j]);
		char q[160];
		sl__cfg_quote(q, sizeof q, k->u.s, k->len, 48);
		size_t old = sl__cpath_key(&c->path, k->u.s, k->len);
		err(c, k->line, k->col, "unknown key %s (expected one of: %s)", q, list);
		pop(c, old);
	}
}

static void missing(cx *c, const sl__cnode *m, const char *key)
{
	err(c, m->line, m->col, "missing required key \"%s\"", key);
}

/* Optional typed keys: do nothing when the key is absent. */
static void opt_u32(cx *c, const sl__cpair *pr, uint64_t lo, uint64_t hi, uint32_t *dst)
{
	if (!pr)
		return;
	size_t o = sl__cpath_key(&c->path, pr->key->u.s, pr->key->len);
	uint32_t x;
	if (get_u32(c, pr->val, lo, hi, &x) == 0)
		*dst = x;
	pop(c, o);
}

static void opt_size(cx *c, const sl__cpair *pr, uint64_t lo, uint64_t hi, size_t *dst)
{
	if (!pr)
		return;
	size_t o = sl__cpath_key(&c->path, pr->key->u.s, pr->key->len);
	uint64_t x;
	if (get_uint(c, pr->val, lo, hi, &x) == 0)
		*dst = (size_t)x;
	pop(c, o);
}

static void opt_bool(cx *c, const sl__cpair *pr, int *dst)
{
	if (!pr)
		return;
	size_t o = sl__cpath_key(&c->path, pr->key->u.s, pr->key->len);
	int x;
	if (get_bool(c, pr->val, &x) == 0)
		*dst = x;
	pop(c, o);
}

static void opt_str(cx *c, const sl__cpair *pr, int null_ok, const char *what,
                    int (*check)(const char *, size_t), size_t maxlen, char **dst)
{
	if (!pr)
		return;
	size_t o = sl__cpath_key(&c->path, pr->key->u.s, pr->key->len);
	char *s;
	if (get_string(c, pr->val, null_ok, what, check, maxlen, &s) == 0) {
		free(*dst);
		*dst = s;
	}
	pop(c, o);
}

/* A decimal number lo..hi (a ratio, a factor). */
static void opt_double(cx *c, const sl__cpair *pr, double lo, double hi, double *dst)
{
	if (!pr)
		return;
	size_t o = sl__cpath_key(&c->path, pr->key->u.s, pr->key->len);
	sval v;
	int rc = sval_get(c, pr->val, &v);
	if (rc == 0) {
		char buf[64];
		char *end = NULL;
		double x = 0;
		int ok = v.typed && !v.null && v.len > 0 && v.len < sizeof buf;
		if (ok) {
			memcpy(buf, v.s, v.len);
			buf[v.len] = '\0';
			x = strtod(buf, &end);
			ok = end && *end == '\0' && x == x && x >= lo && x <= hi;
		}
		if (ok) {
			*dst = x;
		} else {
			char what[96];
			snprintf(what, sizeof what, "a number %g..%g", lo, hi);
			expected(c, pr->val, &v, what);
		}
	} else if (rc == -1) {
		char what[96];
		snprintf(what, sizeof what, "a number %g..%g", lo, hi);
		expected(c, pr->val, NULL, what);
	}
	sval_done(&v);
	pop(c, o);
}

/* A key of pipelines/backends/models: must be a valid name; reported at
 * the key.  Returns the name (copied) even when invalid, so that the entry
 * can still be checked and referred to. */
static char *entry_name_as(cx *c, const sl__cnode *k, int model)
{
	int ok = model ? valid_model_name(k->u.s, k->len) : valid_name(k->u.s, k->len);
	if (!ok || memchr(k->u.s, '\0', k->len)) {
		size_t o = sl__cpath_key(&c->path, k->u.s, k->len);
		expected(c, k, NULL, model ? MODEL_NAME_DESC : NAME_DESC);
		pop(c, o);
	}
	char *s = malloc(k->len + 1);
	if (!s) {
		c->rep.nomem = 1;
		return NULL;
	}
	memcpy(s, k->u.s, k->len);
	s[k->len] = '\0';
	return s;
}

/* ---- server -------------------------------------------------------------- */

static const char *const top_keys[] = {"server", "pipelines", "models", "backends", "dlq",
                                       "tenants", "cache", "routing", "mesh", "telemetry"};
enum { T_SERVER, T_PIPELINES, T_MODELS, T_BACKENDS, T_DLQ, T_TENANTS, T_NTOP = 10 };

static const char *const server_keys[] = {"host", "port", "shards", "pin", "max_body",
                                          "max_headers", "read_timeout_ms",
                                          "request_timeout_ms", "drain_ms", "retry_after_s",
                                          "admin"};
enum { S_HOST, S_PORT, S_SHARDS, S_PIN, S_MAX_BODY, S_MAX_HEADERS, S_READ_TO, S_REQ_TO,
       S_DRAIN, S_RETRY, S_ADMIN, S_N };

static const char *const admin_keys[] = {"enabled", "token_env"};

static void server_defaults(sl_cfg_server *s)
{
	memset(s, 0, sizeof *s);
	s->port = 8080;
	s->shards = 0;
	s->pin = 1;
	s->max_body = 1u << 20;
	s->max_headers = 16u << 10;
	s->read_timeout_ms = 10000;
	s->request_timeout_ms = 0;
	s->drain_ms = SL_DEFAULT_DRAIN_MS;
	s->retry_after_s = 1;
	s->admin.enabled = 1;
	s->admin.token_env = NULL;
}

static void parse_server(cx *c, const sl__cpair *sec)
{
	sl_cfg_server *s = &c->cfg->server;
	s->line = sec->key->line;
	s->col = sec->key->col;
	const sl__cnode *m = sec->val;
	if (want_map(c, m, 1) != 1)
		return;
	const sl__cpair *g[S_N];
	walk_keys(c, m, server_keys, S_N, g);
	opt_str(c, g[S_HOST], 0, "a host name or address", valid_host, 255, &s->host);
	uint32_t port = s->port;
	opt_u32(c, g[S_PORT], 0, 65535, &port);
	s->port = (uint16_t)port;
	uint32_t shards = s->shards;
	opt_u32(c, g[S_SHARDS], 0, SL_MAX_SHARDS, &shards);
	s->shards = shards;
	opt_bool(c, g[S_PIN], &s->pin);
	opt_size(c, g[S_MAX_BODY], 1, 1u << 30, &s->max_body);
	opt_size(c, g[S_MAX_HEADERS], 1024, 1u << 20, &s->max_headers);
	opt_u32(c, g[S_READ_TO], 1, MAX_MS, &s->read_timeout_ms);
	opt_u32(c, g[S_REQ_TO], 0, MAX_MS, &s->request_timeout_ms);
	opt_u32(c, g[S_DRAIN], 0, MAX_MS, &s->drain_ms);
	opt_u32(c, g[S_RETRY], 0, 86400, &s->retry_after_s);
	if (g[S_ADMIN]) {
		size_t o = push_key(c, "admin");
		const sl__cnode *am = g[S_ADMIN]->val;
		if (want_map(c, am, 1) == 1) {
			const sl__cpair *ag[2];
			walk_keys(c, am, admin_keys, 2, ag);
			opt_bool(c, ag[0], &s->admin.enabled);
			opt_str(c, ag[1], 1, ENV_DESC, valid_env, 255, &s->admin.token_env);
		}
		pop(c, o);
	}
}

/* ---- pipelines ----------------------------------------------------------- */

static const char *const stage_keys[] = {
	"name",     "type",     "queue",    "concurrency",    "overflow",    "timeout_ms",
	"after",    "delay_ms", "aging_ms", "displace",       "retriever",   "template",
	"system",   "examples", "max_prompt_tokens", "classes", "custom",    "block_terms",
	"block_patterns"};
enum { G_NAME, G_TYPE, G_QUEUE, G_CONC, G_OVERFLOW, G_TIMEOUT, G_AFTER, G_DELAY, G_AGING,
       G_DISPLACE, G_RETRIEVER, G_TEMPLATE, G_SYSTEM, G_EXAMPLES, G_MAXPT, G_CLASSES,
       G_CUSTOM, G_BTERMS, G_BPATS, G_N };
/* the stage type each key belongs to: -1 any */
static const int stage_key_type[G_N] = {-1, -1, -1, -1, -1, -1, -1, SL_CFG_STAGE_DELAY, -1, -1,
                                        SL_CFG_STAGE_RAG, SL_CFG_STAGE_ASSEMBLE,
                                        SL_CFG_STAGE_ASSEMBLE, SL_CFG_STAGE_ASSEMBLE,
                                        SL_CFG_STAGE_ASSEMBLE, SL_CFG_STAGE_REDACT,
                                        SL_CFG_STAGE_REDACT, SL_CFG_STAGE_REDACT,
                                        SL_CFG_STAGE_REDACT};

static const char *const retriever_keys[] = {
	"type",     "corpus",    "index",       "k",           "k1",         "b",
	"min_score", "stopwords", "required",   "conninfo",    "table",      "id_column",
	"text_column", "tsv_column", "language", "url",        "threads",    "timeout_ms",
	"on_error"};
enum { RK_TYPE, RK_CORPUS, RK_INDEX, RK_K, RK_K1, RK_B, RK_MIN, RK_STOP, RK_REQ, RK_CONN,
       RK_TABLE, RK_IDC, RK_TXC, RK_TSV, RK_LANG, RK_URL, RK_THREADS, RK_TIMEOUT, RK_ONERR,
       RK_N };
/* the retriever type each key belongs to: -1 any */
static const int retriever_key_type[RK_N] = {-1, 0, 0, -1, 0, 0, -1, 0, 0, 1,
                                             1,  1, 1, 1,  1, 2, -1, -1, -1};
static const char *const retriever_types[] = {"bm25", "pg", "http"};

static int sql_ident(const char *s, size_t len)
{
	if (len == 0 || len > 200)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.'))
			return 0;
	return 1;
}

static int any_path(const char *s, size_t len)
{
	return len > 0 && len <= 4096 && !memchr(s, '\0', len);
}

static void parse_retriever(cx *c, sl_cfg_retriever *r, const sl__cnode *v)
{
	size_t o = push_key(c, "retriever");
	r->k = 4;
	r->k1 = 1.2;
	r->b = 0.75;
	r->stopwords = 1;
	r->required = 1;
	r->threads = 4;
	r->timeout_ms = 2000;
	if (want_map(c, v, 0) == 1) {
		r->set = 1;
		const sl__cpair *g[RK_N];
		walk_keys(c, v, retriever_keys, RK_N, g);
		int ty = -1;
		if (!g[0]) {
			missing(c, v, "type");
		} else {
			size_t o2 = push_key(c, "type");
			if (get_enum(c, g[0]->val, retriever_types, 3, &ty) == 0)
				r->type = (sl_cfg_retriever_type)ty;
			pop(c, o2);
		}
		if (ty >= 0)
			for (size_t i = 0; i < RK_N; i++)
				if (g[i] && retriever_key_type[i] >= 0 && retriever_key_type[i] != ty) {
					size_t o2 = push_key(c, retriever_keys[i]);
					err(c, g[i]->key->line, g[i]->key->col,
					    "key \"%s\" is only valid for retriever type %s", retriever_keys[i],
					    retriever_types[retriever_key_type[i]]);
					pop(c, o2);
					g[i] = NULL;
				}
		if (ty == SL_CFG_RETRIEVER_BM25 && !g[RK_CORPUS])
			missing(c, v, "corpus");
		if (ty == SL_CFG_RETRIEVER_PG && !g[RK_CONN])
			missing(c, v, "conninfo");
		if (ty == SL_CFG_RETRIEVER_PG && !g[RK_TABLE])
			missing(c, v, "table");
		if (ty == SL_CFG_RETRIEVER_HTTP && !g[RK_URL])
			missing(c, v, "url");
		opt_str(c, g[RK_CONN], 0, "a libpq connection string", nonempty, 4096, &r->conninfo);
		opt_str(c, g[RK_TABLE], 0, "an SQL name ([A-Za-z0-9_.])", sql_ident, 200, &r->table);
		opt_str(c, g[RK_IDC], 0, "an SQL name ([A-Za-z0-9_.])", sql_ident, 200, &r->id_column);
		opt_str(c, g[RK_TXC], 0, "an SQL name ([A-Za-z0-9_.])", sql_ident, 200,
		        &r->text_column);
		opt_str(c, g[RK_TSV], 1, "an SQL name ([A-Za-z0-9_.])", sql_ident, 200, &r->tsv_column);
		opt_str(c, g[RK_LANG], 0, "a text search configuration name", sql_ident, 200,
		        &r->language);
		opt_str(c, g[RK_URL], 0, "an http:// or https:// URL", valid_url, MAX_STRING, &r->url);
		opt_u32(c, g[RK_THREADS], 1, 256, &r->threads);
		opt_u32(c, g[RK_TIMEOUT], 1, MAX_MS, &r->timeout_ms);
		if (g[RK_ONERR]) {
			static const char *const onerr[] = {"fail", "skip"};
			size_t o2 = push_key(c, "on_error");
			int e;
			if (get_enum(c, g[RK_ONERR]->val, onerr, 2, &e) == 0)
				r->skip_on_error = e;
			pop(c, o2);
		}
		opt_str(c, g[1], 0, "a path", any_path, 4096, &r->corpus);
		opt_str(c, g[2], 1, "a path", any_path, 4096, &r->index);
		opt_u32(c, g[3], 1, 64, &r->k);
		opt_double(c, g[4], 0, 10, &r->k1);
		opt_double(c, g[5], 0, 1, &r->b);
		opt_double(c, g[6], 0, 1e9, &r->min_score);
		opt_bool(c, g[7], &r->stopwords);
		opt_bool(c, g[8], &r->required);
	}
	pop(c, o);
}

/* A sequence of strings (1..max of them, each 1..maxlen bytes). */
static void parse_strv(cx *c, const sl__cnode *v, const char *key, size_t max, size_t maxlen,
                       char ***out, size_t *n)
{
	size_t o = push_key(c, key);
	if (v->kind != SL__CN_SEQ) {
		expected(c, v, NULL, "a sequence of strings");
	} else if (v->len > max) {
		err(c, v->line, v->col, "at most %zu entries, found %zu", max, v->len);
	} else if (v->len && !(*out = calloc(v->len, sizeof **out))) {
		c->rep.nomem = 1;
	} else {
		for (size_t j = 0; j < v->len; j++) {
			size_t o3 = push_idx(c, j);
			char *x;
			if (get_string(c, v->u.items[j], 0, "a non-empty string", nonempty, maxlen, &x) == 0)
				(*out)[(*n)++] = x;
			pop(c, o3);
		}
	}
	pop(c, o);
}

static void parse_classes(cx *c, sl_cfg_redact *r, const sl__cnode *v)
{
	size_t o = push_key(c, "classes");
	const sl__cnode *one = v;
	const sl__cnode *const *items = &one;
	size_t n = 1;
	if (v->kind == SL__CN_SEQ) {
		items = (const sl__cnode *const *)v->u.items;
		n = v->len;
	}
	if (v->kind == SL__CN_MAP) {
		expected(c, v, NULL, "a sequence of PII classes, or all");
		pop(c, o);
		return;
	}
	unsigned mask = 0;
	for (size_t j = 0; j < n; j++) {
		size_t o3 = v->kind == SL__CN_SEQ ? push_idx(c, j) : c->path.len;
		/* in the bit order of src/post/redact.h's SL_PII_* */
		static const char *const names[] = {"email", "phone", "card", "iban", "ssn",
		                                    "ipv4",  "ipv6",  "secret", "all"};
		int k;
		if (get_enum(c, items[j], names, 9, &k) == 0)
			mask |= k == 8 ? 0xFFu : 1u << k;
		pop(c, o3);
	}
	r->classes = mask;
	pop(c, o);
}

static const char *const custom_keys[] = {"name", "pattern", "replacement", "max_len"};

static void parse_custom(cx *c, sl_cfg_redact *r, const sl__cnode *v)
{
	size_t o = push_key(c, "custom");
	if (v->kind != SL__CN_SEQ) {
		expected(c, v, NULL, "a sequence of {name, pattern} mappings");
	} else if (v->len > 64) {
		err(c, v->line, v->col, "at most 64 custom patterns, found %zu", v->len);
	} else if (v->len) {
		size_t n = v->len;
		r->custom_name = calloc(n, sizeof *r->custom_name);
		r->custom_pattern = calloc(n, sizeof *r->custom_pattern);
		r->custom_replacement = calloc(n, sizeof *r->custom_replacement);
		r->custom_max_len = calloc(n, sizeof *r->custom_max_len);
		if (!r->custom_name || !r->custom_pattern || !r->custom_replacement ||
		    !r->custom_max_len) {
			c->rep.nomem = 1;
		} else {
			for (size_t j = 0; j < n; j++) {
				size_t o3 = push_idx(c, j);
				const sl__cnode *m = v->u.items[j];
				if (want_map(c, m, 0) == 1) {
					const sl__cpair *g[4];
					walk_keys(c, m, custom_keys, 4, g);
					if (!g[0])
						missing(c, m, "name");
					if (!g[1])
						missing(c, m, "pattern");
					size_t k = r->n_custom++;
					opt_str(c, g[0], 0, NAME_DESC, valid_name, NAME_MAX_LEN, &r->custom_name[k]);
					opt_str(c, g[1], 0, "a regular expression", nonempty, 4096,
					        &r->custom_pattern[k]);
					opt_str(c, g[2], 1, "a replacement text", any_path, 256,
					        &r->custom_replacement[k]);
					opt_u32(c, g[3], 0, 4096, &r->custom_max_len[k]);
				}
				pop(c, o3);
			}
		}
	}
	pop(c, o);
}

static const char *const stage_types[] = {"rag", "assemble", "inference", "post", "stream",
                                          "delay", "redact"};
static const char *const overflows[] = {"block", "shed"};

static const char *const pipeline_keys[] = {"max_input", "max_output", "trace", "stages"};

static uint32_t default_queue(sl_cfg_stage_type t)
{
	switch (t) {
	case SL_CFG_STAGE_RAG: return SL_DEFAULT_RAG_QUEUE;
	case SL_CFG_STAGE_ASSEMBLE: return SL_DEFAULT_ASSEMBLE_QUEUE;
	case SL_CFG_STAGE_INFERENCE: return SL_DEFAULT_INFERENCE_QUEUE;
	case SL_CFG_STAGE_POST: return SL_DEFAULT_POST_QUEUE;
	case SL_CFG_STAGE_STREAM: return SL_DEFAULT_STREAM_QUEUE;
	default: return 512;
	}
}

/* A stage while its pipeline is checked. */
typedef struct stmp {
	sl_cfg_stage st;
	const sl__cnode *node;       /* the stage's mapping (or whatever it was) */
	const sl__cnode *name_node;  /* value of name:, NULL when absent */
	const sl__cnode *after_val;  /* value of after:, NULL when absent */
	const sl__cnode **after_at;  /* node of each after entry (NULL: implicit) */
	int type_ok;
	int name_ok;                 /* a valid name */
	int after_ok;                /* after: parsed (or absent) */
} stmp;

static void stage_extra_free(sl_cfg_stage *st)
{
	free(st->retriever.conninfo);
	free(st->retriever.table);
	free(st->retriever.id_column);
	free(st->retriever.text_column);
	free(st->retriever.tsv_column);
	free(st->retriever.language);
	free(st->retriever.url);
	free(st->retriever.corpus);
	free(st->retriever.index);
	free(st->tmpl.user);
	free(st->tmpl.system);
	free(st->tmpl.examples);
	sl_cfg_redact *r = &st->redact;
	for (size_t i = 0; i < r->n_custom; i++) {
		free(r->custom_name[i]);
		free(r->custom_pattern[i]);
		free(r->custom_replacement[i]);
	}
	free(r->custom_name);
	free(r->custom_pattern);
	free(r->custom_replacement);
	free(r->custom_max_len);
	for (size_t i = 0; i < r->n_block_terms; i++)
		free(r->block_terms[i]);
	free(r->block_terms);
	for (size_t i = 0; i < r->n_block_patterns; i++)
		free(r->block_patterns[i]);
	free(r->block_patterns);
}

static void stmp_free(stmp *t)
{
	stage_extra_free(&t->st);
	free(t->st.name);
	for (size_t j = 0; j < t->st.n_after; j++)
		free(t->st.after[j]);
	free(t->st.after);
	free(t->after_at);
}

/* after: a sequence of names or one name. */
static void parse_after(cx *c, stmp *t, const sl__cnode *v)
{
	size_t o = push_key(c, "after");
	const sl__cnode *one = v;
	size_t n = 1;
	const sl__cnode *const *items = &one;
	if (v->kind == SL__CN_SEQ) {
		items = (const sl__cnode *const *)v->u.items;
		n = v->len;
	} else if (v->kind != SL__CN_SCALAR) {
		expected(c, v, NULL, "a sequence of stage names");
		pop(c, o);
		t->after_ok = 0;
		return;
	}
	if (n > SL_CFG_MAX_STAGES) {
		err(c, v->line, v->col, "expected at most %d stage names, found %zu",
		    SL_CFG_MAX_STAGES, n);
		pop(c, o);
		t->after_ok = 0;
		return;
	}
	t->st.after = calloc(n ? n : 1, sizeof *t->st.after);
	t->after_at = calloc(n ? n : 1, sizeof *t->after_at);
	if (!t->st.after || !t->after_at) {
		c->rep.nomem = 1;
		pop(c, o);
		return;
	}
	for (size_t j = 0; j < n; j++) {
		size_t o2 = v->kind == SL__CN_SEQ ? push_idx(c, j) : c->path.len;
		char *s;
		if (get_string(c, items[j], 0, "a stage name", nonempty, NAME_MAX_LEN * 4, &s) == 0) {
			t->after_at[t->st.n_after] = items[j];
			t->st.after[t->st.n_after++] = s;
		} else {
			t->after_ok = 0;
		}
		pop(c, o2);
	}
	pop(c, o);
}

static void parse_stage(cx *c, stmp *t, const sl__cnode *n)
{
	t->node = n;
	t->after_ok = 1;
	sl_cfg_stage *st = &t->st;
	st->line = n->line;
	st->col = n->col;
	st->overflow = SL_OVERFLOW_BLOCK;
	st->aging_ms = 1000;
	st->displace = 1;
	if (want_map(c, n, 0) != 1)
		return;
	const sl__cpair *g[G_N];
	walk_keys(c, n, stage_keys, G_N, g);
	if (!g[G_NAME]) {
		missing(c, n, "name");
	} else {
		size_t o = push_key(c, "name");
		t->name_node = g[G_NAME]->val;
		t->name_ok = get_name(c, g[G_NAME]->val, &st->name) == 0;
		pop(c, o);
	}
	if (!g[G_TYPE]) {
		missing(c, n, "type");
	} else {
		size_t o = push_key(c, "type");
		int ty;
		if (get_enum(c, g[G_TYPE]->val, stage_types, 7, &ty) == 0) {
			st->type = (sl_cfg_stage_type)ty;
			t->type_ok = 1;
		}
		pop(c, o);
	}
	st->queue = default_queue(st->type);
	st->concurrency = st->type == SL_CFG_STAGE_INFERENCE ? SL_DEFAULT_INFERENCE_CONCURRENCY
	                                                    : SL_DEFAULT_STAGE_CONCURRENCY;
	opt_u32(c, g[G_QUEUE], 1, 1u << 24, &st->queue);
	opt_u32(c, g[G_CONC], 1, 1u << 20, &st->concurrency);
	if (g[G_OVERFLOW]) {
		size_t o = push_key(c, "overflow");
		int ov;
		if (get_enum(c, g[G_OVERFLOW]->val, overflows, 2, &ov) == 0)
			st->overflow = ov ? SL_OVERFLOW_SHED : SL_OVERFLOW_BLOCK;
		pop(c, o);
	}
	opt_u32(c, g[G_TIMEOUT], 0, MAX_MS, &st->timeout_ms);
	opt_u32(c, g[G_AGING], 0, MAX_MS, &st->aging_ms);
	opt_bool(c, g[G_DISPLACE], &st->displace);
	if (t->type_ok)
		for (size_t i = G_RETRIEVER; i < G_N; i++)
			if (g[i] && stage_key_type[i] >= 0 && stage_key_type[i] != (int)st->type) {
				size_t o2 = push_key(c, stage_keys[i]);
				err(c, g[i]->key->line, g[i]->key->col, "key \"%s\" is only valid for type %s",
				    stage_keys[i], stage_types[stage_key_type[i]]);
				pop(c, o2);
				g[i] = NULL;
			}
	if (g[G_RETRIEVER])
		parse_retriever(c, &st->retriever, g[G_RETRIEVER]->val);
	opt_str(c, g[G_TEMPLATE], 0, "a template file path", any_path, 4096, &st->tmpl.user);
	opt_str(c, g[G_SYSTEM], 1, "a template file path", any_path, 4096, &st->tmpl.system);
	opt_str(c, g[G_EXAMPLES], 1, "a JSON file path", any_path, 4096, &st->tmpl.examples);
	opt_u32(c, g[G_MAXPT], 0, 10000000, &st->tmpl.max_prompt_tokens);
	if ((g[G_SYSTEM] || g[G_EXAMPLES] || g[G_MAXPT]) && !g[G_TEMPLATE])
		missing(c, n, "template");
	if (t->type_ok && st->type == SL_CFG_STAGE_REDACT) {
		st->redact.classes = 0xFFu;
		if (g[G_CLASSES])
			parse_classes(c, &st->redact, g[G_CLASSES]->val);
		if (g[G_CUSTOM])
			parse_custom(c, &st->redact, g[G_CUSTOM]->val);
		if (g[G_BTERMS])
			parse_strv(c, g[G_BTERMS]->val, "block_terms", 1024, 256, &st->redact.block_terms,
			           &st->redact.n_block_terms);
		if (g[G_BPATS])
			parse_strv(c, g[G_BPATS]->val, "block_patterns", 256, 4096,
			           &st->redact.block_patterns, &st->redact.n_block_patterns);
	}
	if (g[G_DELAY]) {
		if (t->type_ok && st->type != SL_CFG_STAGE_DELAY) {
			size_t o = push_key(c, "delay_ms");
			err(c, g[G_DELAY]->key->line, g[G_DELAY]->key->col,
			    "key \"delay_ms\" is only valid for type delay");
			pop(c, o);
		} else {
			opt_u32(c, g[G_DELAY], 0, MAX_MS, &st->delay_ms);
		}
	} else if (t->type_ok && st->type == SL_CFG_STAGE_DELAY) {
		err(c, n->line, n->col, "missing required key \"delay_ms\" (type delay needs one)");
	}
	if (g[G_AFTER])
		parse_after(c, t, g[G_AFTER]->val);
	t->after_val = g[G_AFTER] ? g[G_AFTER]->val : NULL;
}

static void names_list(const stmp *t, size_t n, uint32_t mask, char *buf, size_t cap)
{
	size_t o = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < n && o < cap; i++) {
		if (mask && !(mask & (1u << i)))
			continue;
		if (!t[i].st.name)
			continue;
		o += (size_t)snprintf(buf + o, cap - o, "%s%s", o ? ", " : "", t[i].st.name);
	}
}

/* The graph checks and the topological order.  Stages with a unique valid
 * name take part; unresolved after entries are reported and left out.
 * Returns 0 when the stages may be stored in the order in *order. */
static int check_graph(cx *c, const sl__cnode *stages_node, stmp *t, size_t n, size_t *order)
{
	int structural = 1; /* every stage has a unique valid name */
	for (size_t i = 0; i < n; i++) {
		if (!t[i].after_ok)
			structural = 0; /* an after entry was not a name */
		if (!t[i].name_ok) {
			structural = 0;
			continue;
		}
		for (size_t j = 0; j < i; j++)
			if (t[j].name_ok && !strcmp(t[j].st.name, t[i].st.name)) {
				size_t o = push_idx(c, i);
				size_t o2 = push_key(c, "name");
				err(c, t[i].name_node->line, t[i].name_node->col,
				    "duplicate stage name \"%s\" (first at %d:%d)", t[i].st.name,
				    t[j].name_node->line, t[j].name_node->col);
				pop(c, o2);
				pop(c, o);
				structural = 0;
				break;
			}
	}
	/* implicit after: the previous stage in the list */
	for (size_t i = 1; i < n; i++) {
		if (t[i].after_val || !t[i].after_ok || t[i].st.n_after)
			continue;
		if (!t[i - 1].st.name)
			continue;
		t[i].st.after = calloc(1, sizeof *t[i].st.after);
		t[i].after_at = calloc(1, sizeof *t[i].after_at);
		if (!t[i].st.after || !t[i].after_at || !(t[i].st.after[0] = xstrdup(c, t[i - 1].st.name))) {
			c->rep.nomem = 1;
			return -1;
		}
		t[i].st.n_after = 1;
	}
	char all[2048];
	names_list(t, n, 0, all, sizeof all);
	uint32_t pred[SL_CFG_MAX_STAGES] = {0}, succ[SL_CFG_MAX_STAGES] = {0};
	for (size_t i = 0; i < n; i++) {
		if (!t[i].st.name)
			continue;
		for (size_t j = 0; j < t[i].st.n_after; j++) {
			const char *a = t[i].st.after[j];
			const sl__cnode *at = t[i].after_at[j] ? t[i].after_at[j] : t[i].node;
			size_t o = push_idx(c, i);
			size_t o2 = push_key(c, "after");
			size_t o3 = t[i].after_val && t[i].after_val->kind == SL__CN_SEQ ? push_idx(c, j)
			                                                                : c->path.len;
			char q[160];
			sl__cfg_quote(q, sizeof q, a, strlen(a), 64);
			size_t k;
			for (k = 0; k < n; k++)
				if (t[k].st.name && !strcmp(t[k].st.name, a))
					break;
			if (k == n) {
				err(c, at->line, at->col, "unknown stage %s in after (stages: %s)", q, all);
				structural = 0; /* what was meant is unknown: no graph checks */
			} else if (k == i) {
				err(c, at->line, at->col, "stage %s lists itself in after", q);
			} else {
				for (size_t jj = 0; jj < j; jj++)
					if (!strcmp(t[i].st.after[jj], a)) {
						err(c, at->line, at->col, "stage %s is listed twice in after", q);
						break;
					}
				if (k < SL_CFG_MAX_STAGES && i < SL_CFG_MAX_STAGES) {
					pred[i] |= 1u << k;
					succ[k] |= 1u << i;
				}
			}
			pop(c, o3);
			pop(c, o2);
			pop(c, o);
		}
	}
	if (!structural || n > SL_CFG_MAX_STAGES)
		return -1;

	int ok = 1;
	/* reachability closure over successors */
	uint32_t reach[SL_CFG_MAX_STAGES];
	for (size_t i = 0; i < n; i++)
		reach[i] = succ[i];
	for (size_t k = 0; k < n; k++)
		for (size_t i = 0; i < n; i++)
			if (reach[i] & (1u << k))
				reach[i] |= reach[k];
	uint32_t in_cycle = 0, done = 0;
	for (size_t i = 0; i < n; i++)
		if (reach[i] & (1u << i))
			in_cycle |= 1u << i;
	for (size_t i = 0; i < n; i++) {
		if (!(in_cycle & (1u << i)) || (done & (1u << i)))
			continue;
		uint32_t scc = 1u << i;
		for (size_t j = 0; j < n; j++)
			if ((reach[i] & (1u << j)) && (reach[j] & (1u << i)))
				scc |= 1u << j;
		done |= scc;
		/* shortest way round from i, inside the component (BFS) */
		int parent[SL_CFG_MAX_STAGES];
		for (size_t j = 0; j < n; j++)
			parent[j] = -1;
		size_t queue[SL_CFG_MAX_STAGES], qh = 0, qt = 0;
		uint32_t seen = 0;
		int last = -1;
		for (size_t j = 0; j < n; j++)
			if ((succ[i] & (1u << j)) && (scc & (1u << j))) {
				if (j == i) {
					last = (int)i;
					break;
				}
				parent[j] = (int)i;
				seen |= 1u << j;
				queue[qt++] = j;
			}
		while (last < 0 && qh < qt) {
			size_t u = queue[qh++];
			if (succ[u] & (1u << i)) {
				last = (int)u;
				break;
			}
			for (size_t j = 0; j < n; j++)
				if ((succ[u] & (1u << j)) && (scc & (1u << j)) && !(seen & (1u << j))) {
					seen |= 1u << j;
					parent[j] = (int)u;
					queue[qt++] = j;
				}
		}
		/* path i -> ... -> last -> i */
		int chain[SL_CFG_MAX_STAGES + 1];
		size_t nc = 0;
		for (int u = last; u >= 0 && u != (int)i && nc < SL_CFG_MAX_STAGES; u = parent[u])
			chain[nc++] = u;
		char msg[2048];
		size_t mo = (size_t)snprintf(msg, sizeof msg, "cycle: %s", t[i].st.name);
		for (size_t k = nc; k-- > 0 && mo < sizeof msg;)
			mo += (size_t)snprintf(msg + mo, sizeof msg - mo, " -> %s", t[chain[k]].st.name);
		if (mo < sizeof msg)
			snprintf(msg + mo, sizeof msg - mo, " -> %s", t[i].st.name);
		size_t oi = push_idx(c, i);
		err(c, t[i].node->line, t[i].node->col, "%s", msg);
		pop(c, oi);
		ok = 0;
	}
	/* reachable from the roots */
	uint32_t reached = 0;
	for (size_t i = 0; i < n; i++)
		if (!pred[i])
			reached |= (1u << i) | reach[i];
	for (size_t i = 0; i < n; i++)
		if (!(reached & (1u << i)) && !(in_cycle & (1u << i))) {
			size_t oi = push_idx(c, i);
			err(c, t[i].node->line, t[i].node->col,
			    "stage \"%s\" is unreachable from the pipeline's roots", t[i].st.name);
			pop(c, oi);
			ok = 0;
		}
	/* one sink */
	uint32_t sinks = 0;
	for (size_t i = 0; i < n; i++)
		if (!succ[i])
			sinks |= 1u << i;
	if (__builtin_popcount(sinks) > 1) {
		char list[2048];
		names_list(t, n, sinks, list, sizeof list);
		err(c, stages_node->line, stages_node->col,
		    "several sinks: %s (a pipeline ends in exactly one stage; list the others in a later stage's after)",
		    list);
		ok = 0;
	}
	/* one inference stage */
	uint32_t inf = 0;
	int types_ok = 1;
	for (size_t i = 0; i < n; i++) {
		types_ok &= t[i].type_ok;
		if (t[i].type_ok && t[i].st.type == SL_CFG_STAGE_INFERENCE)
			inf |= 1u << i;
	}
	if (types_ok && inf == 0) {
		err(c, stages_node->line, stages_node->col,
		    "no stage of type inference (a pipeline needs exactly one)");
		ok = 0;
	} else if (__builtin_popcount(inf) > 1) {
		char list[2048];
		names_list(t, n, inf, list, sizeof list);
		err(c, stages_node->line, stages_node->col,
		    "several stages of type inference: %s (a pipeline needs exactly one)", list);
		ok = 0;
	}
	if (!ok || in_cycle)
		return -1;
	/* Kahn, taking the earliest ready stage in file order each time */
	uint32_t placed = 0;
	for (size_t k = 0; k < n; k++) {
		size_t pick = n;
		for (size_t i = 0; i < n; i++)
			if (!(placed & (1u << i)) && (pred[i] & ~placed) == 0) {
				pick = i;
				break;
			}
		if (pick == n)
			return -1; /* cannot happen: acyclic */
		placed |= 1u << pick;
		order[k] = pick;
	}
	return 0;
}

static void parse_stages(cx *c, sl_cfg_pipeline *pl, const sl__cnode *v)
{
	size_t o = push_key(c, "stages");
	if (v->kind != SL__CN_SEQ) {
		expected(c, v, NULL, "a sequence of stages");
		pop(c, o);
		return;
	}
	size_t n = v->len;
	if (n == 0) {
		err(c, v->line, v->col, "expected at least one stage");
		pop(c, o);
		return;
	}
	if (n > SL_CFG_MAX_STAGES)
		err(c, v->line, v->col, "too many stages: %zu (at most %d)", n, SL_CFG_MAX_STAGES);
	stmp *t = calloc(n, sizeof *t);
	if (!t) {
		c->rep.nomem = 1;
		pop(c, o);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		size_t oi = push_idx(c, i);
		parse_stage(c, &t[i], v->u.items[i]);
		pop(c, oi);
	}
	size_t order[SL_CFG_MAX_STAGES];
	if (n <= SL_CFG_MAX_STAGES && check_graph(c, v, t, n, order) == 0) {
		pl->stages = calloc(n, sizeof *pl->stages);
		if (!pl->stages) {
			c->rep.nomem = 1;
		} else {
			for (size_t k = 0; k < n; k++) {
				stmp *s = &t[order[k]];
				pl->stages[k] = s->st;
				memset(&s->st, 0, sizeof s->st); /* moved */
			}
			pl->n_stages = n;
		}
	}
	for (size_t i = 0; i < n; i++)
		stmp_free(&t[i]);
	free(t);
	pop(c, o);
}

static void parse_pipeline(cx *c, const sl__cpair *pr, sl_cfg_pipeline *pl)
{
	pl->name = entry_name_as(c, pr->key, 0);
	pl->line = pr->key->line;
	pl->col = pr->key->col;
	pl->max_input = SL_DEFAULT_MAX_INPUT;
	pl->max_output = SL_DEFAULT_MAX_OUTPUT;
	size_t o = sl__cpath_key(&c->path, pr->key->u.s, pr->key->len);
	const sl__cnode *m = pr->val;
	if (want_map(c, m, 0) == 1) {
		const sl__cpair *g[4];
		walk_keys(c, m, pipeline_keys, 4, g);
		opt_size(c, g[0], 1, (size_t)1 << 31, &pl->max_input);
		opt_size(c, g[1], 1, (size_t)1 << 31, &pl->max_output);
		opt_bool(c, g[2], &pl->trace);
		if (!g[3])
			missing(c, m, "stages");
		else
			parse_stages(c, pl, g[3]->val);
	}
	pop(c, o);
}

/* ---- backends ------------------------------------------------------------- */

static const char *const backend_keys[] = {
	"type", "url", "model", "api_key_env", "connect_timeout_ms", "first_token_timeout_ms",
	"total_timeout_ms", "max_concurrency", "headers", "stream", "delay_ms", "token_delay_ms",
	"breaker", "retry", "concurrency", "transport"};
enum { B_TYPE, B_URL, B_MODEL, B_KEYENV, B_CONNECT, B_FIRST, B_TOTAL, B_MAXC, B_HEADERS,
       B_STREAM, B_DELAY, B_TOKDELAY, B_BREAKER, B_RETRY, B_CONC, B_TRANSPORT, B_N };
static const char *const backend_types[] = {"echo", "openai"};
/* which type each key belongs to: -1 any */
static const int backend_key_type[B_N] = {-1, 1, 1, 1, 1, 1, 1, -1, 1, 1, 0, 0, -1, -1, -1, 1};
/* values of "transport", in the order of sl_cfg_transport */
static const char *const transports[] = {"auto", "native", "curl"};

static const char *const breaker_keys[] = {"enabled", "consecutive_failures", "failure_ratio",
                                           "window_ms", "min_requests", "cooldown_ms",
                                           "max_cooldown_ms", "half_open_probes"};
static const char *const retry_keys[] = {"budget_ratio", "budget_min_per_s", "budget_window_ms",
                                         "backoff_ms", "max_backoff_ms"};
static const char *const conc_keys[] = {"algorithm", "min", "max", "initial",
                                        "latency_threshold_ms", "backoff_ratio", "tolerance"};
static const char *const limit_algs[] = {"fixed", "aimd", "gradient"};

static void parse_breaker(cx *c, sl_cfg_breaker *br, const sl__cnode *v)
{
	size_t o = push_key(c, "breaker");
	if (want_map(c, v, 1) == 1) {
		const sl__cpair *g[8];
		walk_keys(c, v, breaker_keys, 8, g);
		opt_bool(c, g[0], &br->enabled);
		opt_u32(c, g[1], 0, 1000000, &br->consecutive_failures);
		opt_double(c, g[2], 0, 1, &br->failure_ratio);
		opt_u32(c, g[3], 100, MAX_MS, &br->window_ms);
		opt_u32(c, g[4], 1, 100000000, &br->min_requests);
		opt_u32(c, g[5], 1, MAX_MS, &br->cooldown_ms);
		opt_u32(c, g[6], 1, MAX_MS, &br->max_cooldown_ms);
		opt_u32(c, g[7], 1, 100000, &br->half_open_probes);
		if (g[6] && br->max_cooldown_ms < br->cooldown_ms)
			err(c, g[6]->val->line, g[6]->val->col,
			    "max_cooldown_ms (%u) is below cooldown_ms (%u)", br->max_cooldown_ms,
			    br->cooldown_ms);
	}
	pop(c, o);
}

static void parse_retry(cx *c, sl_cfg_retry *r, const sl__cnode *v)
{
	size_t o = push_key(c, "retry");
	if (want_map(c, v, 1) == 1) {
		const sl__cpair *g[5];
		walk_keys(c, v, retry_keys, 5, g);
		opt_double(c, g[0], 0, 10, &r->budget_ratio);
		opt_u32(c, g[1], 0, 1000000, &r->budget_min_per_s);
		opt_u32(c, g[2], 1000, MAX_MS, &r->budget_window_ms);
		opt_u32(c, g[3], 0, MAX_MS, &r->backoff_ms);
		opt_u32(c, g[4], 0, MAX_MS, &r->max_backoff_ms);
		if (r->max_backoff_ms < r->backoff_ms)
			r->max_backoff_ms = r->backoff_ms;
	}
	pop(c, o);
}

static void parse_concurrency(cx *c, sl_cfg_concurrency *k, const sl__cnode *v, int *max_set)
{
	size_t o = push_key(c, "concurrency");
	if (want_map(c, v, 1) == 1) {
		const sl__cpair *g[7];
		walk_keys(c, v, conc_keys, 7, g);
		if (g[0]) {
			size_t o2 = push_key(c, "algorithm");
			int a;
			if (get_enum(c, g[0]->val, limit_algs, 3, &a) == 0)
				k->algorithm = (sl_cfg_limit_alg)a;
			pop(c, o2);
		}
		opt_u32(c, g[1], 1, 1u << 20, &k->min);
		opt_u32(c, g[2], 1, 1u << 20, &k->max);
		opt_u32(c, g[3], 1, 1u << 20, &k->initial);
		opt_u32(c, g[4], 0, MAX_MS, &k->latency_threshold_ms);
		opt_double(c, g[5], 0.1, 0.999, &k->backoff_ratio);
		opt_double(c, g[6], 1.0, 100.0, &k->tolerance);
		*max_set = g[2] != NULL;
		if (k->min > k->max && g[2])
			err(c, g[2]->val->line, g[2]->val->col, "max (%u) is below min (%u)", k->max,
			    k->min);
	}
	pop(c, o);
}

static int tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static int valid_header_value(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
			return 0;
	return 1;
}

static void parse_headers(cx *c, sl_cfg_backend *b, const sl__cnode *v)
{
	size_t o = push_key(c, "headers");
	if (want_map(c, v, 1) != 1) {
		pop(c, o);
		return;
	}
	if (v->len > MAX_HEADERS) {
		err(c, v->line, v->col, "too many headers: %zu (at most %u)", v->len, MAX_HEADERS);
		pop(c, o);
		return;
	}
	b->headers = calloc(v->len ? v->len : 1, sizeof *b->headers);
	if (!b->headers) {
		c->rep.nomem = 1;
		pop(c, o);
		return;
	}
	for (size_t i = 0; i < v->len; i++) {
		const sl__cnode *k = v->u.pairs[i].key;
		size_t o2 = sl__cpath_key(&c->path, k->u.s, k->len);
		int ok = k->len > 0 && k->len <= 256;
		for (size_t j = 0; j < k->len && ok; j++)
			ok = tchar((unsigned char)k->u.s[j]);
		if (!ok)
			expected(c, k, NULL, "a header name (letters, digits and !#$%&'*+-.^_`|~)");
		char *val;
		if (get_string(c, v->u.pairs[i].val, 0, "a header value without line breaks",
		               valid_header_value, MAX_STRING, &val) == 0 && ok) {
			size_t n = k->len + 2 + strlen(val) + 1;
			char *h = malloc(n);
			if (!h) {
				c->rep.nomem = 1;
			} else {
				snprintf(h, n, "%.*s: %s", (int)k->len, k->u.s, val);
				b->headers[b->n_headers++] = h;
			}
		}
		free(val);
		pop(c, o2);
	}
	pop(c, o);
}

static void parse_backend(cx *c, const sl__cpair *pr, sl_cfg_backend *b)
{
	b->name = entry_name_as(c, pr->key, 0);
	b->line = pr->key->line;
	b->col = pr->key->col;
	b->connect_timeout_ms = 2000;
	b->first_token_timeout_ms = 30000;
	b->stream = 1;
	b->breaker = (sl_cfg_breaker){.enabled = 1, .consecutive_failures = 5, .failure_ratio = 0.5,
	                              .window_ms = 10000, .min_requests = 20, .cooldown_ms = 1000,
	                              .max_cooldown_ms = 30000, .half_open_probes = 3};
	b->retry = (sl_cfg_retry){.budget_ratio = 0.2, .budget_min_per_s = 10,
	                          .budget_window_ms = 10000, .backoff_ms = 25, .max_backoff_ms = 1000};
	b->concurrency = (sl_cfg_concurrency){.algorithm = SL_CFG_LIMIT_FIXED, .min = 1, .max = 0,
	                                      .initial = 32, .backoff_ratio = 0.9, .tolerance = 1.5};
	size_t o = sl__cpath_key(&c->path, pr->key->u.s, pr->key->len);
	const sl__cnode *m = pr->val;
	if (want_map(c, m, 0) != 1) {
		pop(c, o);
		return;
	}
	const sl__cpair *g[B_N];
	walk_keys(c, m, backend_keys, B_N, g);
	int ty = -1;
	if (!g[B_TYPE]) {
		missing(c, m, "type");
	} else {
		size_t o2 = push_key(c, "type");
		if (get_enum(c, g[B_TYPE]->val, backend_types, 2, &ty) == 0)
			b->type = (sl_cfg_backend_type)ty;
		pop(c, o2);
	}
	if (ty >= 0)
		for (size_t i = 0; i < B_N; i++)
			if (g[i] && backend_key_type[i] >= 0 && backend_key_type[i] != ty) {
				size_t o2 = push_key(c, backend_keys[i]);
				err(c, g[i]->key->line, g[i]->key->col, "key \"%s\" is only valid for type %s",
				    backend_keys[i], backend_types[backend_key_type[i]]);
				pop(c, o2);
				g[i] = NULL;
			}
	if (ty == SL_CFG_BACKEND_OPENAI && !g[B_URL])
		missing(c, m, "url");
	opt_str(c, g[B_URL], 0, "an http:// or https:// URL", valid_url, MAX_STRING, &b->url);
	opt_str(c, g[B_MODEL], 1, "a model name", nonempty, MAX_STRING, &b->model);
	opt_str(c, g[B_KEYENV], 1, ENV_DESC, valid_env, 255, &b->api_key_env);
	opt_u32(c, g[B_CONNECT], 1, MAX_MS, &b->connect_timeout_ms);
	opt_u32(c, g[B_FIRST], 0, MAX_MS, &b->first_token_timeout_ms);
	opt_u32(c, g[B_TOTAL], 0, MAX_MS, &b->total_timeout_ms);
	opt_u32(c, g[B_MAXC], 0, 1u << 20, &b->max_concurrency);
	if (g[B_HEADERS])
		parse_headers(c, b, g[B_HEADERS]->val);
	opt_bool(c, g[B_STREAM], &b->stream);
	opt_u32(c, g[B_DELAY], 0, MAX_MS, &b->delay_ms);
	opt_u32(c, g[B_TOKDELAY], 0, MAX_MS, &b->token_delay_ms);
	if (g[B_BREAKER])
		parse_breaker(c, &b->breaker, g[B_BREAKER]->val);
	if (g[B_RETRY])
		parse_retry(c, &b->retry, g[B_RETRY]->val);
	if (g[B_TRANSPORT]) {
		size_t o2 = push_key(c, "transport");
		int t;
		if (get_enum(c, g[B_TRANSPORT]->val, transports, 3, &t) == 0) {
			b->transport = (sl_cfg_transport)t;
			/* the native client has no TLS */
			if (b->transport == SL_CFG_TRANSPORT_NATIVE && b->url &&
			    !strncasecmp(b->url, "https://", 8))
				err(c, g[B_TRANSPORT]->val->line, g[B_TRANSPORT]->val->col,
				    "transport native cannot reach an https:// url (no TLS): use auto or "
				    "curl");
		}
		pop(c, o2);
	}
	int max_set = 0;
	if (g[B_CONC])
		parse_concurrency(c, &b->concurrency, g[B_CONC]->val, &max_set);
	if (!max_set)
		b->concurrency.max = b->concurrency.algorithm == SL_CFG_LIMIT_FIXED ? b->max_concurrency
		                     : b->max_concurrency                           ? b->max_concurrency
		                                                                    : 1024;
	if (b->concurrency.algorithm != SL_CFG_LIMIT_FIXED) {
		if (b->concurrency.min > b->concurrency.max)
			b->concurrency.min = b->concurrency.max;
		if (b->concurrency.initial > b->concurrency.max)
			b->concurrency.initial = b->concurrency.max;
		if (b->concurrency.initial < b->concurrency.min)
			b->concurrency.initial = b->concurrency.min;
	}
	pop(c, o);
}

/* ---- models ---------------------------------------------------------------- */

static int strp_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorted copy of the non-NULL names (pointers into the config). */
static const char **sorted_names(cx *c, size_t n, const char *(*get)(const sl_config *, size_t),
                                 size_t *out_n)
{
	*out_n = 0;
	const char **v = malloc((n ? n : 1) * sizeof *v);
	if (!v) {
		c->rep.nomem = 1;
		return NULL;
	}
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		const char *nm = get(c->cfg, i);
		if (nm)
			v[k++] = nm;
	}
	qsort(v, k, sizeof *v, strp_cmp);
	*out_n = k;
	return v;
}

static const char *pname_at(const sl_config *c, size_t i)
{
	return c->pipelines[i].name;
}

static const char *bname_at(const sl_config *c, size_t i)
{
	return c->backends[i].name;
}

static int has_name(const char **v, size_t n, const char *name)
{
	return v && bsearch(&name, v, n, sizeof *v, strp_cmp) != NULL;
}

static const char *const model_keys[] = {"pipeline", "backends", "routing", "weights",
                                         "max_attempts"};
static const char *const routings[] = {"fallback",       "weighted", "sticky", "round_robin",
                                       "least_inflight", "p2c"};

static void parse_weights(cx *c, sl_cfg_model *md, const sl__cnode *v)
{
	size_t o = push_key(c, "weights");
	if (v->kind != SL__CN_SEQ) {
		expected(c, v, NULL, "a sequence of weights, one per backend");
	} else if (md->n_backends && v->len != md->n_backends) {
		err(c, v->line, v->col, "expected %zu weights (one per backend), found %zu",
		    md->n_backends, v->len);
	} else if (v->len && !(md->weights = calloc(v->len, sizeof *md->weights))) {
		c->rep.nomem = 1;
	} else {
		uint64_t sum = 0;
		for (size_t j = 0; j < v->len; j++) {
			size_t o3 = push_idx(c, j);
			uint32_t w = 0;
			if (get_u32(c, v->u.items[j], 0, 1000000, &w) == 0)
				md->weights[j] = w;
			sum += w;
			pop(c, o3);
		}
		if (v->len && sum == 0)
			err(c, v->line, v->col, "the weights add up to 0");
	}
	pop(c, o);
}

static void parse_model(cx *c, const sl__cpair *pr, sl_cfg_model *md)
{
	md->name = entry_name_as(c, pr->key, 1);
	md->line = pr->key->line;
	md->col = pr->key->col;
	const char *mname = md->name ? md->name : "";
	size_t o = sl__cpath_key(&c->path, pr->key->u.s, pr->key->len);
	const sl__cnode *m = pr->val;
	if (want_map(c, m, 0) != 1) {
		pop(c, o);
		return;
	}
	const sl__cpair *g[5];
	walk_keys(c, m, model_keys, 5, g);
	if (!g[0]) {
		missing(c, m, "pipeline");
	} else {
		size_t o2 = push_key(c, "pipeline");
		const sl__cnode *v = g[0]->val;
		if (get_string(c, v, 0, "a pipeline name", nonempty, NAME_MAX_LEN * 4, &md->pipeline) ==
		        0 &&
		    !has_name(c->pnames, c->npn, md->pipeline)) {
			char q[160];
			sl__cfg_quote(q, sizeof q, md->pipeline, strlen(md->pipeline), 64);
			err(c, v->line, v->col, "model \"%s\" uses pipeline %s, which is not defined", mname,
			    q);
		}
		pop(c, o2);
	}
	if (!g[1]) {
		missing(c, m, "backends");
	} else {
		size_t o2 = push_key(c, "backends");
		const sl__cnode *v = g[1]->val;
		const sl__cnode *one = v;
		const sl__cnode *const *items = &one;
		size_t n = 1;
		if (v->kind == SL__CN_SEQ) {
			items = (const sl__cnode *const *)v->u.items;
			n = v->len;
		}
		if (v->kind == SL__CN_MAP) {
			expected(c, v, NULL, "a sequence of backend names");
		} else if (n == 0) {
			err(c, v->line, v->col, "expected at least one backend");
		} else if (n > 64) {
			err(c, v->line, v->col, "expected at most 64 backends, found %zu", n);
		} else if (!(md->backends = calloc(n, sizeof *md->backends))) {
			c->rep.nomem = 1;
		} else {
			for (size_t j = 0; j < n; j++) {
				size_t o3 = v->kind == SL__CN_SEQ ? push_idx(c, j) : c->path.len;
				char *s;
				if (get_string(c, items[j], 0, "a backend name", nonempty, NAME_MAX_LEN * 4, &s) ==
				    0) {
					char q[160];
					sl__cfg_quote(q, sizeof q, s, strlen(s), 64);
					int dup = 0;
					for (size_t k = 0; k < md->n_backends; k++)
						dup |= !strcmp(md->backends[k], s);
					if (dup)
						err(c, items[j]->line, items[j]->col, "backend %s is listed twice", q);
					else if (!has_name(c->bnames, c->nbn, s))
						err(c, items[j]->line, items[j]->col,
						    "model \"%s\" uses backend %s, which is not defined", mname, q);
					md->backends[md->n_backends++] = s;
				}
				pop(c, o3);
			}
		}
		pop(c, o2);
	}
	if (g[2]) {
		size_t o2 = push_key(c, "routing");
		int r;
		if (get_enum(c, g[2]->val, routings, sizeof routings / sizeof routings[0], &r) == 0)
			md->routing = xstrdup(c, routings[r]);
		pop(c, o2);
	}
	if (g[3])
		parse_weights(c, md, g[3]->val);
	opt_u32(c, g[4], 1, 16, &md->max_attempts);
	pop(c, o);
}

/* ---- dlq --------------------------------------------------------------------- */

static const char *const dlq_keys[] = {"dir", "fsync", "fsync_interval_ms", "segment_bytes",
                                       "max_bytes"};
static const char *const fsyncs[] = {"never", "interval", "always"};

static void parse_dlq(cx *c, const sl__cpair *sec)
{
	sl_cfg_dlq *d = &c->cfg->dlq;
	d->line = sec->key->line;
	d->col = sec->key->col;
	if (want_map(c, sec->val, 1) != 1)
		return;
	const sl__cpair *g[5];
	walk_keys(c, sec->val, dlq_keys, 5, g);
	opt_str(c, g[0], 1, "a directory path", nonempty, 4096, &d->dir);
	if (g[1]) {
		size_t o2 = push_key(c, "fsync");
		int f;
		if (get_enum(c, g[1]->val, fsyncs, 3, &f) == 0)
			d->fsync = f;
		pop(c, o2);
	}
	opt_u32(c, g[2], 1, 60000, &d->fsync_interval_ms);
	uint64_t x;
	if (g[3]) {
		size_t o2 = push_key(c, "segment_bytes");
		if (get_uint(c, g[3]->val, 4096, 1ull << 32, &x) == 0)
			d->segment_bytes = x;
		pop(c, o2);
	}
	if (g[4]) {
		size_t o2 = push_key(c, "max_bytes");
		if (get_uint(c, g[4]->val, 0, 1ull << 40, &x) == 0)
			d->max_bytes = x;
		pop(c, o2);
	}
}

/* ---- the whole file ---------------------------------------------------------- */

static void parse_root(cx *c, const sl__cnode *root)
{
	sl_config *cfg = c->cfg;
	const sl__cpair *g[T_NTOP];
	for (size_t i = 0; i < T_NTOP; i++)
		g[i] = NULL;
	if (root) {
		if (want_map(c, root, 1) == 1)
			walk_keys(c, root, top_keys, T_NTOP, g);
		else if (root->kind != SL__CN_SCALAR || root->quoted ||
		         !is_null_text(root->u.s, root->len))
			return; /* reported: no point looking further */
	}
	if (g[T_SERVER]) {
		size_t o = push_key(c, "server");
		parse_server(c, g[T_SERVER]);
		pop(c, o);
	}
	if (!cfg->server.host)
		cfg->server.host = xstrdup(c, "127.0.0.1");

	if (g[T_PIPELINES]) {
		size_t o = push_key(c, "pipelines");
		const sl__cnode *m = g[T_PIPELINES]->val;
		if (want_map(c, m, 1) == 1 && m->len) {
			cfg->pipelines = calloc(m->len, sizeof *cfg->pipelines);
			if (!cfg->pipelines)
				c->rep.nomem = 1;
			else
				for (size_t i = 0; i < m->len; i++)
					parse_pipeline(c, &m->u.pairs[i], &cfg->pipelines[cfg->n_pipelines++]);
		}
		pop(c, o);
	}
	if (g[T_BACKENDS]) {
		size_t o = push_key(c, "backends");
		const sl__cnode *m = g[T_BACKENDS]->val;
		if (want_map(c, m, 1) == 1 && m->len) {
			cfg->backends = calloc(m->len, sizeof *cfg->backends);
			if (!cfg->backends)
				c->rep.nomem = 1;
			else
				for (size_t i = 0; i < m->len; i++)
					parse_backend(c, &m->u.pairs[i], &cfg->backends[cfg->n_backends++]);
		}
		pop(c, o);
	}
	c->pnames = sorted_names(c, cfg->n_pipelines, pname_at, &c->npn);
	c->bnames = sorted_names(c, cfg->n_backends, bname_at, &c->nbn);
	{
		size_t o = push_key(c, "models");
		const sl__cnode *m = g[T_MODELS] ? g[T_MODELS]->val : NULL;
		int r = m ? want_map(c, m, 1) : 0;
		if (r == 1 && m->len) {
			cfg->models = calloc(m->len, sizeof *cfg->models);
			if (!cfg->models)
				c->rep.nomem = 1;
			else
				for (size_t i = 0; i < m->len; i++)
					parse_model(c, &m->u.pairs[i], &cfg->models[cfg->n_models++]);
		} else if (r >= 0) {
			if (m)
				err(c, m->line, m->col, "expected at least one model");
			else
				err(c, 0, 0, "expected at least one model");
		}
		pop(c, o);
	}
	free(c->pnames);
	free(c->bnames);
	c->pnames = c->bnames = NULL;
	cfg->dlq.fsync = 1;
	cfg->dlq.fsync_interval_ms = 200;
	cfg->dlq.segment_bytes = 16u << 20;
	cfg->dlq.max_bytes = 256u << 20;
	if (g[T_DLQ]) {
		size_t o = push_key(c, "dlq");
		parse_dlq(c, g[T_DLQ]);
		pop(c, o);
	}
	for (size_t i = T_TENANTS; i < T_NTOP; i++)
		if (g[i]) {
			size_t o = push_key(c, top_keys[i]);
			want_map(c, g[i]->val, 1);
			pop(c, o);
		}
}

/* ---- loading ----------------------------------------------------------------- */

int sl_config_load_string(const char *yaml, size_t len, const char *name, sl_config **out,
                          sl_cfg_diags *diags)
{
	if (out)
		*out = NULL;
	if (!out || (!yaml && len))
		return SL_EINVAL;
	sl_cfg_diags local = {0};
	if (!diags)
		diags = &local;
	cx *c = calloc(1, sizeof *c);
	if (!c)
		return SL_ENOMEM;
	c->rep.diags = diags;
	c->rep.file = name ? name : "<string>";
	sl__cpath_init(&c->path);
	int rc;
	if (len > SL_CFG_MAX_FILE) {
		sl__cfg_report(&c->rep, 0, 0, "", "file too large: %zu bytes (at most %u)", len,
		               (unsigned)SL_CFG_MAX_FILE);
		rc = SL_ETOOBIG;
		goto done;
	}
	sl__ctree *tree = NULL;
	rc = sl__cfg_tree_parse(yaml ? yaml : "", len, &c->rep, &tree);
	if (rc != SL_OK)
		goto done;
	c->cfg = calloc(1, sizeof *c->cfg);
	if (!c->cfg) {
		sl__cfg_tree_free(tree);
		rc = SL_ENOMEM;
		goto done;
	}
	server_defaults(&c->cfg->server);
	c->cfg->file = xstrdup(c, c->rep.file);
	parse_root(c, sl__cfg_tree_root(tree));
	sl__cfg_tree_free(tree);
	if (c->rep.nomem)
		rc = SL_ENOMEM;
	else if (diags->n || diags->dropped)
		rc = SL_EINVAL;
	if (rc == SL_OK) {
		*out = c->cfg;
		c->cfg = NULL;
	}
done:
	if (c->rep.nomem)
		rc = SL_ENOMEM;
	sl_config_free(c->cfg);
	diags_sort(diags);
	free(c);
	if (diags == &local)
		sl_cfg_diags_free(&local);
	return rc;
}

static int file_problem(sl_cfg_diags *diags, const char *path, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int file_problem(sl_cfg_diags *diags, const char *path, int rc, const char *fmt, ...)
{
	if (diags) {
		sl__cfg_rep r = {diags, path, 0};
		va_list ap;
		va_start(ap, fmt);
		sl__cfg_vreport(&r, 0, 0, "", fmt, ap);
		va_end(ap);
		if (r.nomem)
			return SL_ENOMEM;
	}
	return rc;
}

int sl_config_load_file(const char *path, sl_config **out, sl_cfg_diags *diags)
{
	if (out)
		*out = NULL;
	if (!path || !out)
		return SL_EINVAL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		return file_problem(diags, path, e == ENOENT || e == ENOTDIR ? SL_ENOTFOUND : SL_ESYS,
		                    "cannot open: %s", strerror(e));
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int e = errno;
		close(fd);
		return file_problem(diags, path, SL_ESYS, "cannot read: %s", strerror(e));
	}
	if (S_ISDIR(st.st_mode)) {
		close(fd);
		return file_problem(diags, path, SL_ESYS, "cannot read: %s", strerror(EISDIR));
	}
	if (S_ISREG(st.st_mode) && st.st_size > (off_t)SL_CFG_MAX_FILE) {
		close(fd);
		return file_problem(diags, path, SL_ETOOBIG, "file too large: %lld bytes (at most %u)",
		                    (long long)st.st_size, (unsigned)SL_CFG_MAX_FILE);
	}
	/* Read at most SL_CFG_MAX_FILE + 1 bytes whatever the size said (the
	 * file may grow, or be a pipe or a device). */
	size_t cap = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size + 1 : 65536;
	size_t len = 0;
	char *buf = malloc(cap);
	if (!buf) {
		close(fd);
		return SL_ENOMEM;
	}
	for (;;) {
		if (len == cap) {
			if (cap > SL_CFG_MAX_FILE) {
				free(buf);
				close(fd);
				return file_problem(diags, path, SL_ETOOBIG,
				                    "file too large: more than %u bytes",
				                    (unsigned)SL_CFG_MAX_FILE);
			}
			size_t ncap = cap * 2;
			if (ncap > (size_t)SL_CFG_MAX_FILE + 1)
				ncap = (size_t)SL_CFG_MAX_FILE + 1;
			char *nb = realloc(buf, ncap);
			if (!nb) {
				free(buf);
				close(fd);
				return SL_ENOMEM;
			}
			buf = nb;
			cap = ncap;
		}
		ssize_t r = read(fd, buf + len, cap - len);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			free(buf);
			close(fd);
			return file_problem(diags, path, SL_ESYS, "cannot read: %s", strerror(e));
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len > SL_CFG_MAX_FILE) {
			free(buf);
			close(fd);
			return file_problem(diags, path, SL_ETOOBIG, "file too large: more than %u bytes",
			                    (unsigned)SL_CFG_MAX_FILE);
		}
	}
	close(fd);
	int rc = sl_config_load_string(buf, len, path, out, diags);
	free(buf);
	return rc;
}

int sl_config_default(sl_config **out)
{
	const char *y = sl_config_default_yaml();
	return sl_config_load_string(y, strlen(y), "<default>", out, NULL);
}

/* ---- freeing and lookups -------------------------------------------------------- */

static void free_strv(char **v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void sl_config_free(sl_config *c)
{
	if (!c)
		return;
	free(c->file);
	free(c->server.host);
	free(c->server.admin.token_env);
	for (size_t i = 0; i < c->n_pipelines; i++) {
		sl_cfg_pipeline *p = &c->pipelines[i];
		free(p->name);
		for (size_t s = 0; s < p->n_stages; s++) {
			free(p->stages[s].name);
			free_strv(p->stages[s].after, p->stages[s].n_after);
			stage_extra_free(&p->stages[s]);
		}
		free(p->stages);
	}
	free(c->pipelines);
	for (size_t i = 0; i < c->n_backends; i++) {
		sl_cfg_backend *b = &c->backends[i];
		free(b->name);
		free(b->url);
		free(b->model);
		free(b->api_key_env);
		free_strv(b->headers, b->n_headers);
	}
	free(c->backends);
	for (size_t i = 0; i < c->n_models; i++) {
		free(c->models[i].name);
		free(c->models[i].pipeline);
		free(c->models[i].routing);
		free(c->models[i].weights);
		free_strv(c->models[i].backends, c->models[i].n_backends);
	}
	free(c->models);
	free(c->dlq.dir);
	free(c);
}

const sl_cfg_pipeline *sl_config_pipeline(const sl_config *c, const char *name)
{
	if (!c || !name)
		return NULL;
	for (size_t i = 0; i < c->n_pipelines; i++)
		if (c->pipelines[i].name && !strcmp(c->pipelines[i].name, name))
			return &c->pipelines[i];
	return NULL;
}

const sl_cfg_backend *sl_config_backend(const sl_config *c, const char *name)
{
	if (!c || !name)
		return NULL;
	for (size_t i = 0; i < c->n_backends; i++)
		if (c->backends[i].name && !strcmp(c->backends[i].name, name))
			return &c->backends[i];
	return NULL;
}

const sl_cfg_model *sl_config_model(const sl_config *c, const char *name)
{
	if (!c || !name)
		return NULL;
	for (size_t i = 0; i < c->n_models; i++)
		if (c->models[i].name && !strcmp(c->models[i].name, name))
			return &c->models[i];
	return NULL;
}
