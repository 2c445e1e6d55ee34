/*
 * openai_json.h - fast writers for OpenAI response bodies and SSE events.
 *
 * Every writer appends to a caller-provided sl_dynbuf (core/dynbuf.h) with memcpy
 * and a few integer conversions; no JSON library, no intermediate tree.
 * Each call is all-or-nothing: on failure (SL_ETOOBIG when the buffer's
 * max would be exceeded, SL_ENOMEM) the buffer is left exactly as it was,
 * so a stream writer can flush what it has and retry or fail cleanly.
 *
 * Strings are escaped by sl_oai_json_string(): '"' and '\\' get a backslash,
 * the control characters \b \f \n \r \t their short escapes and every other
 * byte below 0x20 the form \u00XX; valid UTF-8 is copied unchanged (no \u
 * escapes for non-ASCII); a byte that does not start a valid UTF-8 sequence
 * (stray continuation, overlong, surrogate, > U+10FFFF, truncated) is
 * replaced by U+FFFD (EF BF BD), one per bad byte, so the output is always
 * valid JSON in valid UTF-8 whatever bytes a worker produced.  DEL and
 * U+2028/U+2029 are not escaped (they are legal in JSON).
 *
 * Shapes written (compact, no spaces; keys in this order):
 *   chat.completion:
 *     {"id":ID,"object":"chat.completion","created":N,"model":M,
 *      ["system_fingerprint":FP,]"choices":[{"index":0,"message":{"role":
 *      "assistant","content":TEXT},"logprobs":null,"finish_reason":FR}]
 *      [,"usage":{"prompt_tokens":P,"completion_tokens":C,"total_tokens":P+C}]}
 *   text_completion: the same with "object":"text_completion" and choices
 *      [{"text":TEXT,"index":0,"logprobs":null,"finish_reason":FR}]
 *   chat.completion.chunk event:
 *     data: {"id":ID,"object":"chat.completion.chunk","created":N,"model":M,
 *      ["system_fingerprint":FP,]"choices":[{"index":0,"delta":{["role":R,]
 *      ["content":TEXT]},"logprobs":null,"finish_reason":FR|null}][,"usage":null]}\n\n
 *   text completion chunk event: object "text_completion", choices
 *      [{"text":TEXT,"index":0,"logprobs":null,"finish_reason":FR|null}]
 *   usage chunk event: same head, "choices":[],"usage":{...}
 *   done event:        data: [DONE]\n\n
 *   error body:        {"error":{"message":MSG,"type":T,"param":P|null,"code":C|null}}
 *   error event:       data: {"error":{...}}\n\n
 * FR (finish_reason) is any string the caller gives ("stop", "length",
 * "content_filter"); NULL writes null.
 *
 * Threading: pure functions on the caller's buffer; any thread.
 */
#ifndef SLUICE_HTTP_OPENAI_JSON_H
#define SLUICE_HTTP_OPENAI_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "core/dynbuf.h"
#include "http/openai_req.h"

/* The fields shared by every response object of one request. */
typedef struct sl_oai_meta {
	const char *id;    /* e.g. "chatcmpl-3f2a..." (escaped when written) */
	const char *model; /* the model name to report */
	int64_t created;   /* unix time in seconds */
	const char *system_fingerprint; /* NULL = key omitted */
} sl_oai_meta;

typedef struct sl_oai_usage {
	uint32_t prompt_tokens;
	uint32_t completion_tokens; /* total_tokens is written as their sum */
} sl_oai_usage;

/* Appends s (len bytes, any content) as a quoted, escaped JSON string.
 * s may be NULL when len == 0. */
int sl_oai_json_string(sl_dynbuf *b, const char *s, size_t len);

/* Appends a complete chat.completion response body.  content (len bytes)
 * becomes choices[0].message.content; usage NULL omits the "usage" key. */
int sl_oai_json_chat_completion(sl_dynbuf *b, const sl_oai_meta *m,
                                const char *content, size_t len,
                                const char *finish_reason,
                                const sl_oai_usage *usage);

/* Appends a complete text_completion response body (POST /v1/completions). */
int sl_oai_json_text_completion(sl_dynbuf *b, const sl_oai_meta *m,
                                const char *text, size_t len,
                                const char *finish_reason,
                                const sl_oai_usage *usage);

/* Appends one chat.completion.chunk SSE event.  role NULL omits
 * delta.role; content NULL omits delta.content (so the final chunk is
 * role NULL, content NULL, finish_reason "stop": "delta":{}).  usage_null
 * non-zero adds "usage":null, as OpenAI does in every chunk when
 * stream_options.include_usage is set. */
int sl_oai_sse_chat_chunk(sl_dynbuf *b, const sl_oai_meta *m, const char *role,
                          const char *content, size_t len,
                          const char *finish_reason, int usage_null);

/* Appends one streamed text_completion SSE event (POST /v1/completions with
 * stream): choices[0].text is text (NULL = ""). */
int sl_oai_sse_text_chunk(sl_dynbuf *b, const sl_oai_meta *m, const char *text,
                          size_t len, const char *finish_reason,
                          int usage_null);

/* Streams write many content chunks that differ only in their content: the
 * prefix (everything before the content: "data: ", id, object, created,
 * model, system_fingerprint and the start of choices[0]) is built once per
 * stream with sl_oai_sse_chunk_prefix(), and each chunk is then
 * sl_oai_sse_content_chunk(): the bytes are exactly those of
 * sl_oai_sse_chat_chunk(b, m, NULL, content, len, NULL, usage_null) (chat)
 * or sl_oai_sse_text_chunk(b, m, content, len, NULL, usage_null)
 * (completions), for the same m, content NULL taken as "".  Both append
 * atomically (nothing on failure). */
int sl_oai_sse_chunk_prefix(sl_dynbuf *b, const sl_oai_meta *m, sl_oai_kind kind);
int sl_oai_sse_content_chunk(sl_dynbuf *b, sl_oai_kind kind, const char *prefix,
                             size_t prefix_len, const char *content, size_t len,
                             int usage_null);

/* Appends the final usage SSE event ("choices":[]) of a stream with
 * include_usage; kind selects the object name ("chat.completion.chunk" or
 * "text_completion"). */
int sl_oai_sse_usage_chunk(sl_dynbuf *b, const sl_oai_meta *m, sl_oai_kind kind,
                           const sl_oai_usage *usage);

/* Appends "data: [DONE]\n\n". */
int sl_oai_sse_done(sl_dynbuf *b);

/* Appends an error body.  message is NUL-terminated (NULL = ""); type NULL
 * writes "server_error"; param and code NULL write null. */
int sl_oai_json_error(sl_dynbuf *b, const char *message, const char *type,
                      const char *param, const char *code);

/* The same from a parser error (err->http_status is the caller's to use). */
int sl_oai_json_error_from(sl_dynbuf *b, const sl_oai_error *err);

/* Appends an SSE error event: "data: " + the error body + "\n\n". */
int sl_oai_sse_error(sl_dynbuf *b, const char *message, const char *type,
                     const char *param, const char *code);

#endif
