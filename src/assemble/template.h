/*
 * template.h - prompt templates: compile once (validated), render many times.
 *
 * Syntax (a small, strict subset of Mustache; see docs/internals/assemble.md)
 *
 *   {{name}}                 variable, escaped (see "Escaping" below)
 *   {{{name}}}  {{&name}}    variable, raw
 *   {{#docs}}...{{/docs}}    loop over the retrieved documents, best first;
 *                            inside: {{id}} {{text}} {{score}} {{rank}}
 *                            (rank 1 = best) and every outer variable
 *   {{^docs}}...{{/docs}}    rendered only when there are no documents
 *                            ({{^name}} also works on a plain variable:
 *                            rendered when it is empty or absent)
 *   {{#if name}}...{{else}}...{{/if}}
 *                            conditional: a variable is true when non-empty,
 *                            docs when it has at least one document
 *   {{! comment }}           dropped (may span lines)
 *   {{%escape: json}}        pragma: how {{name}} escapes for the whole
 *                            template: "text" (default), "json" or "none"
 *
 * Whitespace inside tags is allowed ({{ name }}).  A section, else, comment
 * or pragma tag alone on its line (only blanks around it) removes the whole
 * line, as Mustache's "standalone" rule does, so block tags can sit on their
 * own lines without leaving blank lines in the prompt.  There is no way to
 * write a literal "{{" in the text.
 *
 * Escaping (what {{name}} does to a value; {{{name}}} and {{&name}} never
 * change valid text):
 *   text  - the default, for prompts: control characters other than TAB, LF
 *           and CR (C0, DEL, C1) are removed, and "{{" / "}}" runs are
 *           broken up with a space ("{ {", "} }") so retrieved or user text
 *           cannot pass for template syntax or for the markers of a prompt
 *           format downstream.
 *   json  - for templates that produce JSON: the value is escaped as the
 *           inside of a JSON string ("\"", "\\", "\n", "\u001f", ...).
 *   none  - {{name}} is raw.
 * In every mode, bytes that are not valid UTF-8 are replaced with U+FFFD, so
 * the rendered output is always valid UTF-8 (as jansson and JSON need).
 *
 * Validation at compile time: the source must be valid UTF-8 without NUL
 * bytes; every tag must be closed ("}}"); every variable must be known (the
 * known_vars list given to the compiler); sections must balance and nest at
 * most SL_TEMPLATE_MAX_DEPTH deep; {{#docs}} may not nest inside {{#docs}}
 * (so rendering is linear in template size x documents).  Errors read
 *   NAME:LINE:COL: message
 * with LINE and COL 1-based, COL counted in characters (code points) of the
 * line, pointing at the "{{" of the offending tag.
 *
 * Threading: a compiled template is immutable; render from any number of
 * threads at once.  compile/free: any thread.
 */
#ifndef SL_ASSEMBLE_TEMPLATE_H
#define SL_ASSEMBLE_TEMPLATE_H

#include <stddef.h>
#include "core/dynbuf.h"
#include "sluice/sluice.h"

#define SL_TEMPLATE_MAX_SRC (1u << 20) /* bytes of template source */
#define SL_TEMPLATE_MAX_DEPTH 32       /* nested sections */
#define SL_TEMPLATE_MAX_NAME 128       /* bytes of a variable name */

typedef struct sl_template sl_template;

typedef enum sl_tescape {
	SL_TESC_TEXT = 0, /* default: drop controls, break up "{{" and "}}" */
	SL_TESC_JSON = 1, /* JSON string contents */
	SL_TESC_NONE = 2  /* no escaping */
} sl_tescape;

/* One retrieved document.  text_len may be (size_t)-1 for strlen(text).
 * score is rendered with %g and 4 significant digits; NAN = unknown (renders
 * as "").  id NULL renders as "". */
typedef struct sl_tdoc {
	const char *id;
	const char *text;
	size_t text_len;
	double score;
} sl_tdoc;

/* The values a render sees.  vars are the scalar variables by full name
 * ("query", "user", "metadata.tier", ...); a known variable that is absent
 * renders as "" and is false.  docs are in rank order, best first.  Nothing
 * is copied or kept by the renderer. */
typedef struct sl_tvars {
	const sl_kv *vars;
	size_t n_vars;
	const sl_tdoc *docs;
	size_t n_docs;
} sl_tvars;

/* The variables a request provides (for known_vars): query, messages, user,
 * model, metadata.* and docs.  NULL-terminated. */
extern const char *const sl_template_request_vars[];

/* Compiles len bytes of src.  name (copied; NULL = "template") prefixes error
 * messages.  known_vars is a NULL-terminated list of the variable names the
 * template may use: a plain name ("query"), a prefix wildcard ("metadata.*"
 * admits metadata.ANY), and the name "docs" for the document list (the loop
 * fields id, text, score, rank need not be listed).  NULL means
 * sl_template_request_vars.
 * Returns SL_OK and *out (free with sl_template_free), or SL_EINVAL with the
 * first error as "NAME:LINE:COL: message" in err (errlen bytes, always
 * NUL-terminated when errlen > 0; err may be NULL), SL_ETOOBIG when len >
 * SL_TEMPLATE_MAX_SRC, SL_ENOMEM.  On failure *out is untouched. */
int sl_template_compile(const char *src, size_t len, const char *name,
                        const char *const *known_vars, sl_template **out,
                        char *err, size_t errlen);

/* Reads and compiles a file; name in errors is the path.  SL_ENOTFOUND or
 * SL_ESYS (with the errno text in err) when it cannot be read. */
int sl_template_load(const char *path, const char *const *known_vars,
                     sl_template **out, char *err, size_t errlen);

/* Frees a template; NULL is a no-op. */
void sl_template_free(sl_template *t);

/* Appends the rendering to out (which keeps its existing content).  Returns
 * SL_OK, or SL_ETOOBIG when out's bound is reached (out then holds a partial
 * rendering; reset it), SL_ENOMEM.  err may be NULL. */
int sl_template_render(const sl_template *t, const sl_tvars *vars,
                       sl_dynbuf *out, char *err, size_t errlen);

/* The template's escape mode (from its pragma; default SL_TESC_TEXT). */
sl_tescape sl_template_escape(const sl_template *t);

/* The name given at compile time. */
const char *sl_template_name(const sl_template *t);

/* 1 when the template uses the variable (by full name, or "docs"), else 0.
 * Lets a caller skip work (e.g. retrieval) a template never shows. */
int sl_template_uses(const sl_template *t, const char *var);

/* Appends len bytes of s escaped as mode says (see above).  In text mode the
 * last byte already in out counts, so "{" already there + "{..." is broken
 * up too.  Returns SL_OK, SL_ETOOBIG (out's bound), SL_ENOMEM. */
int sl_template_escape_append(sl_dynbuf *out, sl_tescape mode, const char *s,
                              size_t len);

#endif
