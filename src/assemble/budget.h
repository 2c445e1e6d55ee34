/*
 * budget.h - token counting for the prompt budget.
 *
 * A counter is a plain function pointer plus a user pointer, so a real
 * tokenizer (a BPE table, a call into the model server's /tokenize) can
 * replace the default.  Counters must be pure: the same text gives the same
 * count, and a longer text (by appending) never counts fewer tokens by more
 * than a token or two, since the budget fitter binary-searches on them.
 *
 * The default, sl_tokens_approx(), mimics the pre-tokenizer of OpenAI's BPE
 * encodings (cl100k_base, o200k_base) instead of dividing bytes by 4:
 *   - a run of ASCII letters costs ceil(len / 8)  (most English words are
 *     one token; long ones split),
 *   - a run of digits costs ceil(len / 3)         (numbers go in 3-digit
 *     groups),
 *   - a run of other non-ASCII letters (accented Latin, Cyrillic, Greek...)
 *     costs ceil(len / 2.5) in code points,
 *   - every CJK / wide code point (U+2E80 and above) costs 1,
 *   - a run of ASCII punctuation costs ceil(len / 1.5),
 *   - blanks are free except that a run of two or more costs 1; line breaks
 *     are free.
 * Measured against cl100k_base and o200k_base (the gpt-tokenizer npm
 * package) on 2,000-character chunks of English prose (GPL-3, Apache-2.0,
 * docs): mean error -0..+6%, worst chunk +18%; C source +19% (worst +28%);
 * French -8/-2%, German -20/-12% (troff man pages, the worst case: long
 * compound words), Japanese -4/+9%, Russian 0/+35%.  Plain ceil(bytes/4) on
 * the same chunks: English +18..+25%, C -28%, Markdown -26%, Japanese
 * -24/-14%.  The table and the method are in docs/internals/assemble.md.
 * It is an estimate: leave a margin (e.g. set max_prompt_tokens 10-15%
 * under the model's context) or plug in the model's own tokenizer.
 *
 * Any thread; no state.
 */
#ifndef SL_ASSEMBLE_BUDGET_H
#define SL_ASSEMBLE_BUDGET_H

#include <stddef.h>

/* Returns the number of tokens the len bytes at s cost.  user is the
 * counter's own pointer (sl_assemble_opts.count_user). */
typedef size_t (*sl_token_count_fn)(void *user, const char *s, size_t len);

/* The default approximation described above.  user is ignored.  Invalid
 * UTF-8 bytes cost one token each. */
size_t sl_tokens_approx(void *user, const char *s, size_t len);

/* Chat formats add tokens around each message (OpenAI's cookbook, "How to
 * count tokens with tiktoken": 3 per message + 1 for the role, and 3 to
 * prime the reply); the fitter adds these in chat mode. */
#define SL_CHAT_TOKENS_PER_MESSAGE 4
#define SL_CHAT_TOKENS_REPLY 3

#endif
