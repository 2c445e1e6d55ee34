/*
 * request.h - template variables from a JSON request, for the CLI and for
 * stages that hold an OpenAI-style request body.
 *
 * Input: {"messages":[{"role":"user","content":"..."}...], "user":"...",
 *         "model":"...", "metadata":{"k":v...},
 *         "docs":[{"id":"..","text":"..","score":0.9}...]}
 * Every key is optional.  Variables produced:
 *   query        content of the last message whose role is "user" ("" if none)
 *   messages     the transcript of every other message, one per line as
 *                "role: content" (the conversation before the query)
 *   user, model  the strings as given
 *   metadata.K   each metadata value: strings as is, other JSON values
 *                written compactly (numbers, true/false, objects)
 *   docs         in rank order: sorted by score, highest first (stable),
 *                when every document has a numeric score; else as given.
 *                An id that is a number is written as its decimal text.
 * A message's content may be a string or an array of parts, whose "text"
 * members are joined (other parts are skipped).
 *
 * Threading: any thread; one request object per thread.
 */
#ifndef SL_ASSEMBLE_REQUEST_H
#define SL_ASSEMBLE_REQUEST_H

#include <stddef.h>
#include "assemble/template.h"

#define SL_ASM_REQUEST_MAX (8u << 20) /* bytes of request JSON */
#define SL_ASM_MAX_DOCS 1024

typedef struct sl_asm_request sl_asm_request;

/* Parses len bytes of JSON.  Returns SL_OK and *out (free with
 * sl_asm_request_free), SL_EINVAL with the reason in err (not JSON, a key
 * of the wrong type, a document without text), SL_ETOOBIG (over
 * SL_ASM_REQUEST_MAX bytes or SL_ASM_MAX_DOCS documents), SL_ENOMEM. */
int sl_asm_request_parse(const char *json, size_t len, sl_asm_request **out,
                         char *err, size_t errlen);

/* The variables; valid until sl_asm_request_free. */
const sl_tvars *sl_asm_request_vars(const sl_asm_request *r);

/* NULL is a no-op. */
void sl_asm_request_free(sl_asm_request *r);

#endif
