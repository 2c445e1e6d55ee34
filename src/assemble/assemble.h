/*
 * assemble.h - the Assemble stage's core: system prompt + few-shot examples +
 * the user template, rendered into one prompt string or a JSON array of
 * chat messages, fitted to a token budget by dropping and truncating the
 * retrieved documents.  See docs/internals/assemble.md.
 *
 * Output formats
 *   SL_ASM_PROMPT (completion backends): the parts joined by a blank line:
 *       <system>                         (when the system template renders
 *                                          non-empty)
 *       User: <example.user>\nAssistant: <example.assistant>   (each)
 *       <user>                           (without examples), or
 *       User: <user>\nAssistant:         (with examples, so the completion
 *                                          continues the pattern)
 *   SL_ASM_CHAT (chat backends): a compact JSON array
 *       [{"role":"system","content":...},          (when non-empty)
 *        {"role":"user","content":ex.user},{"role":"assistant","content":
 *        ex.assistant}, ...,
 *        {"role":"user","content":<user>}]
 * Example strings are used verbatim (bytes that are not UTF-8 become
 * U+FFFD); templates escape as their pragma says.
 *
 * Budget (opts.max_prompt_tokens > 0).  Tokens are counted with opts.count
 * (default sl_tokens_approx) over the whole prompt string, or in chat mode
 * over each message's content plus SL_CHAT_TOKENS_PER_MESSAGE per message
 * and SL_CHAT_TOKENS_REPLY.  vars->docs are in rank order, best first.  If
 * everything fits, it is used as is.  Otherwise the lowest-ranked documents
 * are dropped first, one by one in effect (a binary search finds the most
 * that fit); then the lowest-ranked remaining document, the first one that
 * did not fit whole, is truncated into the room left: cut at a word
 * boundary (at a code-point boundary when its last 64 bytes hold no blank),
 * never inside a UTF-8 sequence, and marked with "…" (U+2026).  When not
 * even one word of it fits, it is dropped.  Nothing else is ever cut: the
 * query, the transcript, the system prompt and the examples are kept whole;
 * when they alone (no documents) do not fit, the call fails with SL_ETOOBIG
 * and a message naming the counts.
 *
 * Threading: any thread; nothing is shared between calls.
 */
#ifndef SL_ASSEMBLE_ASSEMBLE_H
#define SL_ASSEMBLE_ASSEMBLE_H

#include <stddef.h>
#include "assemble/budget.h"
#include "assemble/template.h"
#include "core/dynbuf.h"

#define SL_ASSEMBLE_DEFAULT_MAX_BYTES (4u << 20) /* a sensible bound for out */
#define SL_ASSEMBLE_ELLIPSIS "\xE2\x80\xA6"      /* "…", marks a cut doc */

typedef struct sl_fewshot {
	const char *user;
	const char *assistant;
} sl_fewshot;

typedef enum sl_asm_format {
	SL_ASM_PROMPT = 0, /* one prompt string */
	SL_ASM_CHAT = 1    /* JSON array of chat messages */
} sl_asm_format;

/* What to assemble.  Nothing is copied; it must stay valid for the call. */
typedef struct sl_assembly {
	const sl_template *system;    /* optional: the system message */
	const sl_template *user;      /* required: the final user message */
	const sl_fewshot *examples;   /* optional few-shot pairs, in order */
	size_t n_examples;
} sl_assembly;

typedef struct sl_assemble_opts {
	size_t max_prompt_tokens;  /* 0 = no budget */
	sl_asm_format format;
	sl_token_count_fn count;   /* NULL = sl_tokens_approx */
	void *count_user;
} sl_assemble_opts;

/* What the fitter did (all zero before the call). */
typedef struct sl_assemble_info {
	size_t tokens;       /* count of the result (chat overhead included) */
	size_t docs_given;   /* vars->n_docs */
	size_t docs_used;    /* documents in the result, the truncated one included */
	int truncated;       /* 1: docs[docs_used - 1] was cut */
	size_t cut_from;     /* its text length in bytes before ... */
	size_t cut_to;       /* ... and after the cut (without the "…") */
} sl_assemble_info;

/* Assembles a->system, a->examples and a->user with vars into out (reset
 * first) within the budget of opts (NULL = defaults: no budget, prompt
 * format).  out's own bound (sl_dynbuf_init's max) bounds the output bytes;
 * a candidate over it counts as not fitting.  info may be NULL.  Returns
 * SL_OK; SL_EINVAL (no user template); SL_ETOOBIG when even no documents do
 * not fit the token budget or the byte bound; SL_ENOMEM.  On error out is empty and err
 * (may be NULL) holds a one-line reason, e.g.
 *   "prompt without documents needs 950 tokens (query: 700), over
 *    max_prompt_tokens 800" */
int sl_assemble_fit(const sl_assembly *a, const sl_tvars *vars,
                    const sl_assemble_opts *opts, sl_dynbuf *out,
                    sl_assemble_info *info, char *err, size_t errlen);

#endif
