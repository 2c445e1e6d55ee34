/* config_int.h - internals of the configuration loader (src/config/).
 *
 * The loader works in three steps, each in its own file:
 *   tree.c    YAML bytes -> a tree of nodes with positions (libyaml's event
 *             API).  Enforces the input bounds: nesting depth, node count
 *             after alias expansion, duplicate keys, one document; applies
 *             YAML merge keys (<<).  Aliases share nodes (the tree is a DAG
 *             held in one arena), so "billion laughs" costs nothing but a
 *             counter: each alias adds the expanded size of its target.
 *   interp.c  ${VAR} / ${VAR:-default} / $${ in scalar values.
 *   config.c  the schema: tree -> sl_config, with every problem reported.
 *
 * Everything here is single-threaded and owned by one load call.
 */
#ifndef SL_CONFIG_CONFIG_INT_H
#define SL_CONFIG_CONFIG_INT_H
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include "config/config.h"

/* ---- reporting -------------------------------------------------------- */

/* Where diagnostics of one load go. */
typedef struct sl__cfg_rep {
	sl_cfg_diags *diags;
	const char *file; /* name used in every diag */
	int nomem;        /* an allocation failed somewhere: the load is SL_ENOMEM */
} sl__cfg_rep;

/* Adds one diag (copies path and the formatted message).  A full list only
 * counts it in diags->dropped. */
void sl__cfg_report(sl__cfg_rep *r, int line, int col, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
void sl__cfg_vreport(sl__cfg_rep *r, int line, int col, const char *path, const char *fmt,
                     va_list ap);

/* ---- paths ("pipelines.default.stages[2].queue") ---------------------- */

#define SL__CPATH_MAX 4096
typedef struct sl__cpath {
	char b[SL__CPATH_MAX];
	size_t len;
} sl__cpath;

static inline void sl__cpath_init(sl__cpath *p)
{
	p->len = 0;
	p->b[0] = '\0';
}
/* Appends a mapping key (".key", or "key" at the root; ["k e y"] when the
 * key has characters other than A-Z a-z 0-9 _ -) / a sequence index
 * ("[i]").  Return the previous length, for sl__cpath_pop. */
size_t sl__cpath_key(sl__cpath *p, const char *key, size_t klen);
size_t sl__cpath_idx(sl__cpath *p, size_t i);
static inline void sl__cpath_pop(sl__cpath *p, size_t old)
{
	p->len = old;
	p->b[old] = '\0';
}

/* Writes s[0..len) into buf as a double-quoted, escaped string, cut after
 * max bytes of input with "..." (always NUL-terminated, cut to cap). */
void sl__cfg_quote(char *buf, size_t cap, const char *s, size_t len, size_t max);

/* ---- the tree --------------------------------------------------------- */

typedef enum sl__cnode_kind {
	SL__CN_SCALAR = 0,
	SL__CN_MAP = 1,
	SL__CN_SEQ = 2
} sl__cnode_kind;

typedef struct sl__cnode sl__cnode;
typedef struct sl__cpair {
	sl__cnode *key; /* always a scalar */
	sl__cnode *val;
} sl__cpair;

struct sl__cnode {
	unsigned char kind;   /* sl__cnode_kind */
	unsigned char quoted; /* scalar written quoted, as a block scalar or
	                       * tagged !!str: a string, never a number, a
	                       * boolean or null */
	int line, col;        /* 1-based start of the node */
	size_t len;           /* scalar: bytes of s; map: pairs; seq: items */
	union {
		char *s;          /* scalar text, NUL-terminated (may hold NULs) */
		sl__cpair *pairs;
		sl__cnode **items;
	} u;
	uint64_t size;        /* nodes in the subtree, aliases expanded */
	unsigned height;      /* collection levels in the subtree (scalar 0) */
};

typedef struct sl__ctree sl__ctree;

/* Parses buf[0..len) (one YAML document).  Returns SL_OK and *out (free
 * with sl__cfg_tree_free) - possibly with non-fatal problems reported
 * (duplicate keys, unknown aliases, bad merges), which the caller sees in
 * r->diags - or SL_EINVAL after a fatal problem (syntax, depth, size;
 * reported, *out NULL), or SL_ENOMEM.  *root is NULL for an empty
 * document. */
int sl__cfg_tree_parse(const char *buf, size_t len, sl__cfg_rep *r, sl__ctree **out);
const sl__cnode *sl__cfg_tree_root(const sl__ctree *t);
void sl__cfg_tree_free(sl__ctree *t);

/* ---- interpolation ---------------------------------------------------- */

/* Maximum length of a value after interpolation. */
#define SL__CFG_MAX_VALUE (1u << 20)

/* Expands ${VAR}, ${VAR:-default} and $${ in s[0..len).  Returns SL_OK with
 * *out NULL when s holds no "${" (use s as is), or SL_OK with *out a new
 * NUL-terminated string (caller frees) and *outlen; SL_EINVAL with a
 * message in err (unset variable, unterminated "${", bad name, too long);
 * SL_ENOMEM.  Variables are read with getenv(). */
int sl__cfg_interp(const char *s, size_t len, char **out, size_t *outlen, char *err,
                   size_t errlen);

#endif
