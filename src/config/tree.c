/* tree.c - YAML bytes -> a tree of positioned nodes (see config_int.h).
 *
 * libyaml's event API (yaml_parser_parse) drives an explicit stack of open
 * collections, so the input's nesting never reaches the C stack and the
 * depth bound (SL_CFG_MAX_DEPTH) stops the parse as soon as it is crossed.
 * Nodes live in one arena freed at once.  An alias does not copy its
 * anchor's node: it points at it, and adds that node's expanded size to
 * the running count, which SL_CFG_MAX_NODES bounds - a "billion laughs"
 * document fails after a few hundred events, without allocating anything
 * for the expansion.  An anchor is registered when its node is complete,
 * so an alias can never point into a node still being built (no cycles).
 *
 * Mappings are checked for duplicate keys when they close (sort + scan:
 * O(n log n) however many keys); YAML merge keys ("<<: *base", or a
 * sequence of aliases) are applied then: explicit keys win, earlier merge
 * sources win over later ones.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>
#include "config/config_int.h"

/* ---- arena ------------------------------------------------------------ */

typedef struct chunk {
	struct chunk *next;
	size_t used, cap;
	max_align_t data[]; /* cap bytes */
} chunk;

typedef struct arena {
	chunk *head;
} arena;

static void *arena_alloc(arena *a, size_t n)
{
	n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
	if (n == 0)
		n = sizeof(max_align_t);
	chunk *c = a->head;
	if (!c || c->cap - c->used < n) {
		size_t cap = n > 32768 ? n : 32768;
		c = malloc(sizeof *c + cap);
		if (!c)
			return NULL;
		c->used = 0;
		c->cap = cap;
		c->next = a->head;
		a->head = c;
	}
	void *p = (char *)c->data + c->used;
	c->used += n;
	return p;
}

static void arena_free(arena *a)
{
	chunk *c = a->head;
	while (c) {
		chunk *n = c->next;
		free(c);
		c = n;
	}
	a->head = NULL;
}

struct sl__ctree {
	arena ar;
	sl__cnode *root;
};

/* ---- anchors: open-addressing hash table in the arena -------------------- */

typedef struct anchor {
	const char *name; /* NULL = empty slot */
	uint64_t hash;
	sl__cnode *node;
} anchor;

typedef struct anchors {
	anchor *v;
	size_t cap, n; /* cap a power of two */
} anchors;

static uint64_t fnv(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static anchor *anchor_find(anchors *t, const char *name, uint64_t h)
{
	if (!t->cap)
		return NULL;
	for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
		anchor *a = &t->v[i];
		if (!a->name || (a->hash == h && strcmp(a->name, name) == 0))
			return a;
	}
}

static int anchor_put(anchors *t, const char *name, sl__cnode *node)
{
	if ((t->n + 1) * 2 > t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		anchor *v = calloc(cap, sizeof *v);
		if (!v)
			return SL_ENOMEM;
		anchors nt = {v, cap, 0};
		for (size_t i = 0; i < t->cap; i++)
			if (t->v[i].name) {
				anchor *s = anchor_find(&nt, t->v[i].name, t->v[i].hash);
				*s = t->v[i];
				nt.n++;
			}
		free(t->v);
		*t = nt;
	}
	uint64_t h = fnv(name);
	anchor *a = anchor_find(t, name, h);
	if (!a->name) {
		char *copy = strdup(name);
		if (!copy)
			return SL_ENOMEM;
		a->name = copy;
		a->hash = h;
		t->n++;
	}
	a->node = node; /* a redefined anchor: the latest wins (YAML 1.2) */
	return SL_OK;
}

static void anchors_free(anchors *t)
{
	for (size_t i = 0; i < t->cap; i++)
		free((char *)t->v[i].name);
	free(t->v);
}

/* ---- the builder -------------------------------------------------------- */

typedef struct frame {
	sl__cnode *node;   /* the collection being built */
	char *anchor;      /* registered when it closes */
	sl__cnode **v;     /* children; a mapping alternates key, value */
	size_t n, cap;
} frame;

typedef struct builder {
	sl__ctree *t;
	sl__cfg_rep *r;
	const char *buf;
	size_t len;
	frame st[SL_CFG_MAX_DEPTH];
	int depth;          /* open collections */
	anchors anc;
	uint64_t total;     /* nodes so far, aliases expanded */
	int docs;
	int fatal;
	sl__cpath path;     /* scratch */
} builder;

static void nomem(builder *b)
{
	b->r->nomem = 1;
	b->fatal = 1;
}

/* The path of the node being added at the top of the stack (the parents'
 * keys and indices), into b->path. */
static void build_path(builder *b, int upto)
{
	sl__cpath_init(&b->path);
	for (int i = 0; i < upto; i++) {
		frame *f = &b->st[i];
		if (f->node->kind == SL__CN_SEQ) {
			sl__cpath_idx(&b->path, f->n);
		} else if (f->n % 2 == 1 && f->v[f->n - 1]->kind == SL__CN_SCALAR) {
			sl__cnode *k = f->v[f->n - 1];
			sl__cpath_key(&b->path, k->u.s, k->len);
		}
		/* else: between entries, or inside a complex key: the mapping's
		 * own path */
	}
}

static void report_upto(builder *b, int upto, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void report_upto(builder *b, int upto, int line, int col, const char *fmt, ...)
{
	build_path(b, upto);
	va_list ap;
	va_start(ap, fmt);
	sl__cfg_vreport(b->r, line, col, b->path.b, fmt, ap);
	va_end(ap);
}

static void report(builder *b, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void report(builder *b, int line, int col, const char *fmt, ...)
{
	build_path(b, b->depth);
	va_list ap;
	va_start(ap, fmt);
	sl__cfg_vreport(b->r, line, col, b->path.b, fmt, ap);
	va_end(ap);
}

static const char *kind_name(const sl__cnode *n)
{
	return n->kind == SL__CN_MAP ? "a mapping" : n->kind == SL__CN_SEQ ? "a sequence" : "a scalar";
}

static int count(builder *b, uint64_t n, int line, int col)
{
	b->total += n;
	if (b->total > SL_CFG_MAX_NODES) {
		report(b, line, col, "too many nodes: more than %u (aliases count as copies)",
		       (unsigned)SL_CFG_MAX_NODES);
		b->fatal = 1;
		return -1;
	}
	return 0;
}

/* Appends a finished node to the open collection (or makes it the root). */
static void add(builder *b, sl__cnode *n)
{
	if (b->depth == 0) {
		b->t->root = n;
		return;
	}
	frame *f = &b->st[b->depth - 1];
	if (f->node->kind == SL__CN_MAP && f->n % 2 == 0 && n->kind != SL__CN_SCALAR) {
		report_upto(b, b->depth - 1, n->line, n->col, "expected a scalar key, found %s",
		            kind_name(n));
		/* keep it: the pair is dropped when the mapping closes */
	}
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 8;
		sl__cnode **v = realloc(f->v, cap * sizeof *v);
		if (!v) {
			nomem(b);
			return;
		}
		f->v = v;
		f->cap = cap;
	}
	f->v[f->n++] = n;
}

static sl__cnode *new_node(builder *b, int kind, const yaml_mark_t *m)
{
	sl__cnode *n = arena_alloc(&b->t->ar, sizeof *n);
	if (!n) {
		nomem(b);
		return NULL;
	}
	memset(n, 0, sizeof *n);
	n->kind = (unsigned char)kind;
	n->line = (int)m->line + 1;
	n->col = (int)m->column + 1;
	n->size = 1;
	return n;
}

static int register_anchor(builder *b, const char *name, sl__cnode *n)
{
	if (!name)
		return 0;
	if (anchor_put(&b->anc, name, n) != SL_OK) {
		nomem(b);
		return -1;
	}
	return 0;
}

static int keycmp(const sl__cnode *a, const sl__cnode *b)
{
	size_t n = a->len < b->len ? a->len : b->len;
	int c = memcmp(a->u.s, b->u.s, n);
	if (c)
		return c;
	return a->len < b->len ? -1 : a->len > b->len;
}

/* Entries of a closing mapping: explicit pairs first, then merged ones. */
typedef struct ent {
	sl__cnode *key, *val;
	size_t order;
	int merged;
	int drop;
} ent;

static int ent_cmp(const void *pa, const void *pb)
{
	const ent *a = *(const ent *const *)pa, *b = *(const ent *const *)pb;
	int c = keycmp(a->key, b->key);
	if (c)
		return c;
	return a->order < b->order ? -1 : a->order > b->order;
}

static int is_merge_key(const sl__cnode *k)
{
	return k->kind == SL__CN_SCALAR && !k->quoted && k->len == 2 && memcmp(k->u.s, "<<", 2) == 0;
}

static int push_ent(ent **v, size_t *n, size_t *cap, sl__cnode *k, sl__cnode *val, int merged)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 8;
		ent *nv = realloc(*v, c * sizeof *nv);
		if (!nv)
			return SL_ENOMEM;
		*v = nv;
		*cap = c;
	}
	(*v)[*n] = (ent){k, val, *n, merged, 0};
	(*n)++;
	return SL_OK;
}

/* Closes the mapping on top of the stack: drops bad keys, reports
 * duplicates, applies merges, copies the pairs into the arena. */
static void close_map(builder *b, frame *f)
{
	sl__cnode *m = f->node;
	size_t np = f->n / 2;
	ent *e = NULL;
	size_t ne = 0, ecap = 0;
	sl__cnode **merges = NULL;
	size_t nm = 0;

	/* explicit pairs (keys that are scalars, not "<<") */
	for (size_t i = 0; i < np && !b->fatal; i++) {
		sl__cnode *k = f->v[2 * i], *v = f->v[2 * i + 1];
		if (k->kind != SL__CN_SCALAR)
			continue; /* reported in add() */
		if (is_merge_key(k)) {
			sl__cnode **nmv = realloc(merges, (nm + 1) * sizeof *nmv);
			if (!nmv) {
				nomem(b);
				break;
			}
			merges = nmv;
			merges[nm++] = v;
			continue;
		}
		if (push_ent(&e, &ne, &ecap, k, v, 0) != SL_OK)
			nomem(b);
	}
	/* merged pairs, in order */
	for (size_t i = 0; i < nm && !b->fatal; i++) {
		sl__cnode *src = merges[i];
		sl__cnode *const *list = &src;
		size_t nl = 1;
		if (src->kind == SL__CN_SEQ) {
			list = src->u.items;
			nl = src->len;
		}
		for (size_t j = 0; j < nl && !b->fatal; j++) {
			sl__cnode *mm = list[j];
			if (mm->kind != SL__CN_MAP) {
				build_path(b, b->depth - 1);
				size_t old = sl__cpath_key(&b->path, "<<", 2);
				sl__cfg_report(b->r, mm->line, mm->col, b->path.b,
				               "expected a mapping or a sequence of mappings to merge, found %s",
				               kind_name(mm));
				sl__cpath_pop(&b->path, old);
				continue;
			}
			for (size_t q = 0; q < mm->len; q++)
				if (push_ent(&e, &ne, &ecap, mm->u.pairs[q].key, mm->u.pairs[q].val, 1) !=
				    SL_OK) {
					nomem(b);
					break;
				}
		}
	}
	free(merges);

	if (!b->fatal && ne > 1) {
		ent **sorted = malloc(ne * sizeof *sorted);
		if (!sorted) {
			nomem(b);
		} else {
			for (size_t i = 0; i < ne; i++)
				sorted[i] = &e[i];
			qsort(sorted, ne, sizeof *sorted, ent_cmp);
			for (size_t i = 0; i < ne;) {
				size_t j = i + 1;
				while (j < ne && keycmp(sorted[j]->key, sorted[i]->key) == 0)
					j++;
				ent *first = sorted[i]; /* explicit before merged, earlier first */
				for (size_t q = i + 1; q < j; q++) {
					ent *cur = sorted[q];
					cur->drop = 1;
					if (cur->merged || first->merged)
						continue; /* merged keys yield silently */
					char qs[160];
					sl__cfg_quote(qs, sizeof qs, cur->key->u.s, cur->key->len, 64);
					build_path(b, b->depth - 1);
					size_t old = sl__cpath_key(&b->path, cur->key->u.s, cur->key->len);
					sl__cfg_report(b->r, cur->key->line, cur->key->col, b->path.b,
					               "duplicate key %s (first at %d:%d)", qs, first->key->line,
					               first->key->col);
					sl__cpath_pop(&b->path, old);
				}
				i = j;
			}
			free(sorted);
		}
	}

	size_t keep = 0;
	for (size_t i = 0; i < ne; i++)
		keep += !e[i].drop;
	sl__cpair *pairs = NULL;
	if (!b->fatal && keep) {
		pairs = arena_alloc(&b->t->ar, keep * sizeof *pairs);
		if (!pairs)
			nomem(b);
	}
	uint64_t size = 1;
	unsigned h = 0;
	size_t k = 0;
	if (pairs)
		for (size_t i = 0; i < ne; i++) {
			if (e[i].drop)
				continue;
			pairs[k].key = e[i].key;
			pairs[k].val = e[i].val;
			size += e[i].key->size + e[i].val->size;
			if (e[i].val->height > h)
				h = e[i].val->height;
			k++;
		}
	free(e);
	m->u.pairs = pairs;
	m->len = k;
	m->size = size;
	m->height = h + 1;
}

static void close_seq(builder *b, frame *f)
{
	sl__cnode *s = f->node;
	sl__cnode **items = NULL;
	if (f->n) {
		items = arena_alloc(&b->t->ar, f->n * sizeof *items);
		if (!items) {
			nomem(b);
			return;
		}
		memcpy(items, f->v, f->n * sizeof *items);
	}
	uint64_t size = 1;
	unsigned h = 0;
	for (size_t i = 0; i < f->n; i++) {
		size += f->v[i]->size;
		if (f->v[i]->height > h)
			h = f->v[i]->height;
	}
	s->u.items = items;
	s->len = f->n;
	s->size = size;
	s->height = h + 1;
}

static void open_coll(builder *b, int kind, const yaml_mark_t *m, const yaml_char_t *anchor_name)
{
	if (b->depth >= SL_CFG_MAX_DEPTH) {
		report(b, (int)m->line + 1, (int)m->column + 1, "nesting deeper than %d levels",
		       SL_CFG_MAX_DEPTH);
		b->fatal = 1;
		return;
	}
	if (count(b, 1, (int)m->line + 1, (int)m->column + 1))
		return;
	sl__cnode *n = new_node(b, kind, m);
	if (!n)
		return;
	frame *f = &b->st[b->depth];
	memset(f, 0, sizeof *f);
	f->node = n;
	if (anchor_name) {
		f->anchor = strdup((const char *)anchor_name);
		if (!f->anchor) {
			nomem(b);
			return;
		}
	}
	b->depth++;
}

static void close_coll(builder *b)
{
	frame *f = &b->st[b->depth - 1];
	if (f->node->kind == SL__CN_MAP)
		close_map(b, f);
	else
		close_seq(b, f);
	sl__cnode *n = f->node;
	char *anc = f->anchor;
	free(f->v);
	f->v = NULL;
	f->anchor = NULL;
	b->depth--;
	if (!b->fatal) {
		register_anchor(b, anc, n);
		add(b, n);
	}
	free(anc);
}

static int is_str_tag(const yaml_char_t *tag)
{
	return tag && (strcmp((const char *)tag, YAML_STR_TAG) == 0 ||
	               strcmp((const char *)tag, "!") == 0);
}

static void on_scalar(builder *b, const yaml_event_t *ev)
{
	const yaml_mark_t *m = &ev->start_mark;
	if (count(b, 1, (int)m->line + 1, (int)m->column + 1))
		return;
	sl__cnode *n = new_node(b, SL__CN_SCALAR, m);
	if (!n)
		return;
	size_t len = ev->data.scalar.length;
	char *s = arena_alloc(&b->t->ar, len + 1);
	if (!s) {
		nomem(b);
		return;
	}
	memcpy(s, ev->data.scalar.value, len);
	s[len] = '\0';
	n->u.s = s;
	n->len = len;
	n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
	            is_str_tag(ev->data.scalar.tag);
	if (register_anchor(b, (const char *)ev->data.scalar.anchor, n))
		return;
	add(b, n);
}

static void on_alias(builder *b, const yaml_event_t *ev)
{
	const yaml_mark_t *m = &ev->start_mark;
	int line = (int)m->line + 1, col = (int)m->column + 1;
	const char *name = (const char *)ev->data.alias.anchor;
	anchor *a = anchor_find(&b->anc, name, fnv(name));
	if (!a || !a->name) {
		report(b, line, col, "unknown alias *%.64s (no anchor of that name before it)", name);
		/* stand in a null scalar so the document keeps its shape */
		if (count(b, 1, line, col))
			return;
		sl__cnode *n = new_node(b, SL__CN_SCALAR, m);
		if (!n)
			return;
		n->u.s = (char *)"";
		add(b, n);
		return;
	}
	sl__cnode *n = a->node;
	if (b->depth + (int)n->height > SL_CFG_MAX_DEPTH) {
		report(b, line, col, "nesting deeper than %d levels (through alias *%s)",
		       SL_CFG_MAX_DEPTH, name);
		b->fatal = 1;
		return;
	}
	if (count(b, n->size, line, col))
		return;
	add(b, n);
}

/* libyaml's reader errors carry a byte offset, not a mark. */
static void offset_pos(const char *buf, size_t len, size_t off, int *line, int *col)
{
	int l = 1, c = 1;
	if (off > len)
		off = len;
	for (size_t i = 0; i < off; i++) {
		if (buf[i] == '\n') {
			l++;
			c = 1;
		} else if (((unsigned char)buf[i] & 0xC0) != 0x80) {
			c++;
		}
	}
	*line = l;
	*col = c;
}

static void yaml_error(builder *b, yaml_parser_t *p)
{
	b->fatal = 1;
	if (p->error == YAML_MEMORY_ERROR) {
		b->r->nomem = 1;
		return;
	}
	const char *problem = p->problem ? p->problem : "syntax error";
	if (p->error == YAML_READER_ERROR) {
		int line, col;
		offset_pos(b->buf, b->len, p->problem_offset, &line, &col);
		if (p->problem_value != -1)
			sl__cfg_report(b->r, line, col, "", "invalid YAML: %s (byte 0x%02x)", problem,
			               (unsigned)p->problem_value & 0xffu);
		else
			sl__cfg_report(b->r, line, col, "", "invalid YAML: %s", problem);
		return;
	}
	int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
	build_path(b, b->depth);
	if (p->context)
		sl__cfg_report(b->r, line, col, b->path.b, "invalid YAML: %s (%s at %d:%d)", problem,
		               p->context, (int)p->context_mark.line + 1,
		               (int)p->context_mark.column + 1);
	else
		sl__cfg_report(b->r, line, col, b->path.b, "invalid YAML: %s", problem);
}

int sl__cfg_tree_parse(const char *buf, size_t len, sl__cfg_rep *r, sl__ctree **out)
{
	*out = NULL;
	builder *b = calloc(1, sizeof *b);
	if (!b)
		return SL_ENOMEM;
	b->t = calloc(1, sizeof *b->t);
	if (!b->t) {
		free(b);
		return SL_ENOMEM;
	}
	b->r = r;
	b->buf = buf;
	b->len = len;
	yaml_parser_t p;
	if (!yaml_parser_initialize(&p)) {
		free(b->t);
		free(b);
		return SL_ENOMEM;
	}
	yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
	int done = 0;
	while (!done && !b->fatal) {
		yaml_event_t ev;
		if (!yaml_parser_parse(&p, &ev)) {
			yaml_error(b, &p);
			break;
		}
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = 1;
			break;
		case YAML_DOCUMENT_START_EVENT:
			if (++b->docs > 1) {
				sl__cfg_report(r, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
				               "", "expected a single YAML document, found a second one");
				b->fatal = 1;
			}
			break;
		case YAML_SCALAR_EVENT:
			on_scalar(b, &ev);
			break;
		case YAML_ALIAS_EVENT:
			on_alias(b, &ev);
			break;
		case YAML_SEQUENCE_START_EVENT:
			open_coll(b, SL__CN_SEQ, &ev.start_mark, ev.data.sequence_start.anchor);
			break;
		case YAML_MAPPING_START_EVENT:
			open_coll(b, SL__CN_MAP, &ev.start_mark, ev.data.mapping_start.anchor);
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			if (b->depth > 0)
				close_coll(b);
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&p);
	while (b->depth > 0) {
		frame *f = &b->st[--b->depth];
		free(f->v);
		free(f->anchor);
	}
	anchors_free(&b->anc);
	int rc = SL_OK;
	if (r->nomem)
		rc = SL_ENOMEM;
	else if (b->fatal)
		rc = SL_EINVAL;
	if (rc != SL_OK) {
		sl__cfg_tree_free(b->t);
	} else {
		*out = b->t;
	}
	free(b);
	return rc;
}

const sl__cnode *sl__cfg_tree_root(const sl__ctree *t)
{
	return t ? t->root : NULL;
}

void sl__cfg_tree_free(sl__ctree *t)
{
	if (!t)
		return;
	arena_free(&t->ar);
	free(t);
}
