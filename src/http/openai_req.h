/*
 * openai_req.h - parse and validate OpenAI request bodies for
 * POST /v1/chat/completions and POST /v1/completions.
 *
 * Two parsers, one behaviour.  The body is parsed by a hand-written
 * single-pass parser (the "fast path") that fills sl_oai_req directly,
 * without a JSON document; whenever it meets an error of any kind, or
 * anything it does not handle (escapes in object keys, nesting deeper than
 * 64, numbers at the edges of int64 / double, ...), it gives up and the body
 * is parsed again by jansson (the "jansson path", the reference).  The fast
 * path accepts only what the jansson path accepts and yields the very same
 * request; so every error below, message included, is the jansson path's.
 * fuzz/fuzz_openai_req.c and fuzz_openai_req_diff.c run both on every input
 * and compare them field by field; http/openai_req_int.h can force either
 * path (tests, fuzzers, bench).
 * On typical bodies the fast path is 20-47x faster (bench/openai_req.c;
 * docs/internals/http.md has the figures).
 *
 * The reference is jansson's json_loadb with:
 *   JSON_REJECT_DUPLICATES - a key given twice is a 400.  Different JSON
 *       libraries keep the first or the last duplicate; rejecting them means
 *       sluice, a proxy in front of it and an upstream it forwards to can
 *       never disagree about what a request says.
 *   JSON_DECODE_ANY        - so that `42` or `"x"` gets the precise "body is
 *       not a JSON object" error rather than a syntax error.
 *   JSON_ALLOW_NUL         - "\u0000" is accepted inside message content and
 *       prompts (they carry a length); it is rejected (invalid_value) in the
 *       short identifier-like strings: model, role, name, user, stop.
 * jansson rejects invalid UTF-8 anywhere in the text (strict: overlongs,
 * surrogates and > U+10FFFF included) and escaped lone surrogates ("\ud800"
 * alone or followed by anything but a low surrogate escape, "\udc00"), and
 * nests at most 2048 levels deep.
 *
 * Validation rules (all 400, type "invalid_request_error"; `code`, `param`):
 *   malformed JSON ............................ invalid_json, NULL
 *       (message carries jansson's text, line and column)
 *   body not an object ........................ invalid_type, NULL
 *   a known field of the wrong JSON type ...... invalid_type, the field
 *       (nested fields are named like "messages[2].content")
 *   model missing ............................. missing_required_parameter, "model"
 *   model "" or containing NUL ................ invalid_value, "model"
 *   messages missing (chat) ................... missing_required_parameter, "messages"
 *   prompt missing (completions) .............. missing_required_parameter, "prompt"
 *   messages [] ............................... empty_array, "messages"
 *   more than lim->max_messages messages ...... array_above_max_length, "messages"
 *   message not an object ..................... invalid_type, "messages[i]"
 *   message without role / content ............ missing_required_parameter,
 *                                               "messages[i].role" / ".content"
 *   role not system|user|assistant|tool|developer
 *                                               invalid_value, "messages[i].role"
 *   content: a string, or an array of {"type":"text","text":"..."} parts,
 *       joined with "\n" between parts; null only for role "assistant"
 *       (taken as "", as assistant tool-call turns send it);
 *       another part type ..................... unsupported_value,
 *                                               "messages[i].content[j].type"
 *       a text part without a string text ..... invalid_type / missing_required_parameter,
 *                                               "messages[i].content[j].text"
 *   prompt: a string or an array of exactly one string; an array of token
 *       ids or of several prompts ............. unsupported_value, "prompt"
 *   max_tokens / max_completion_tokens not an integer in 1..lim->max_tokens_cap
 *                                               invalid_value, that field's name
 *       (both given: max_completion_tokens wins, both are validated)
 *   temperature not a number in [0, 2] ........ invalid_value, "temperature"
 *   top_p not a number in [0, 1] .............. invalid_value, "top_p"
 *   n > 1 ..................................... unsupported_value, "n", message
 *       exactly "n>1 is not supported: sluice returns one choice per request"
 *   n < 1 ..................................... invalid_value, "n"
 *   stop: a string or an array of at most 4 strings (none empty or with NUL)
 *                                               invalid_type / invalid_value, "stop"
 *   stream not a boolean ...................... invalid_type, "stream"
 *   stream_options not an object .............. invalid_type, "stream_options"
 *   stream_options given while stream is not true
 *                                               invalid_value, "stream_options"
 *   stream_options.include_usage not a boolean  invalid_type,
 *                                               "stream_options.include_usage"
 *   user not a string (or with NUL) ........... invalid_type / invalid_value, "user"
 *   seed not an integer ....................... invalid_type, "seed"
 *   joined content (chat: the sum of all messages' content bytes; completions:
 *       the prompt bytes) over lim->max_input . context_length_exceeded,
 *       "messages" / "prompt" (400 like OpenAI, not 413: the body was
 *       accepted by the HTTP layer, the *prompt* is what is too long).
 * Integer fields also accept a JSON real with an integral value (2.0).
 * A field whose value is JSON null is treated as not given, as OpenAI does.
 * Unknown fields are ignored (clients send many: tools, logprobs, ...) but
 * must still be valid JSON (UTF-8, no duplicate keys at any depth); the whole
 * document stays available through sl_oai_req_json().
 *
 * Threading: pure functions, any thread; an sl_oai_req is used by one thread
 * at a time.
 */
#ifndef SLUICE_HTTP_OPENAI_REQ_H
#define SLUICE_HTTP_OPENAI_REQ_H

#include <stddef.h>
#include <stdint.h>

#include <sluice/sluice.h>

typedef enum sl_oai_kind {
	SL_OAI_CHAT = 0,       /* POST /v1/chat/completions */
	SL_OAI_COMPLETION = 1  /* POST /v1/completions */
} sl_oai_kind;

/* Limits applied by the parser; a zero field takes its default. */
#define SL_OAI_DEFAULT_MAX_TOKENS_CAP 131072
#define SL_OAI_DEFAULT_MAX_MESSAGES 4096
#define SL_OAI_MAX_STOP 4

typedef struct sl_oai_limits {
	size_t max_input;    /* bytes of prompt text; 0 = SL_DEFAULT_MAX_INPUT */
	int max_tokens_cap;  /* upper bound of max_tokens; 0 = SL_OAI_DEFAULT_MAX_TOKENS_CAP */
	size_t max_messages; /* 0 = SL_OAI_DEFAULT_MAX_MESSAGES */
} sl_oai_limits;

/* One chat message.  Strings are NUL-terminated and owned by the request. */
typedef struct sl_oai_message {
	const char *role;    /* "system" | "user" | "assistant" | "tool" | "developer" */
	const char *content; /* text (parts joined with "\n"); may contain NULs */
	size_t content_len;
	const char *name;    /* optional "name", NULL when absent */
	char *_owned;        /* private: joined content when it was an array */
} sl_oai_message;

typedef struct sl_oai_req {
	sl_oai_kind kind;
	const char *model;       /* non-empty */
	sl_oai_message *messages; /* chat: n_messages >= 1; completions: NULL */
	size_t n_messages;
	const char *prompt;      /* completions: the prompt (may contain NULs); chat: NULL */
	size_t prompt_len;
	size_t input_bytes;      /* sum of content bytes (chat) or prompt_len */
	int stream;              /* 0/1 */
	int include_usage;       /* stream_options.include_usage, 0/1 */
	int max_tokens;          /* 0 = not given */
	double temperature;      /* -1 = not given */
	double top_p;            /* -1 = not given */
	int64_t seed;            /* meaningful when has_seed */
	int has_seed;
	const char **stop;       /* n_stop strings, then a NULL (so it can serve as
	                            sl_infer_params.stop); NULL when n_stop == 0 */
	size_t n_stop;
	const char *user;        /* NULL when absent */
	int n;                   /* always 1 after a successful parse */
	void *_json;             /* private: the parsed document (json_t *);
	                            NULL until sl_oai_req_json() after the fast path */
} sl_oai_req;

/* An OpenAI-style error, ready for openai_json's error writers. */
typedef struct sl_oai_error {
	int http_status;     /* 400, or 500 for an allocation failure */
	const char *type;    /* "invalid_request_error" | "server_error" (static) */
	const char *code;    /* static string or NULL */
	const char *param;   /* NULL or points into param_buf */
	char param_buf[64];
	char message[256];
} sl_oai_error;

/* Parses and validates a request body of len bytes (need not be
 * NUL-terminated).  lim may be NULL for all defaults.  On SL_OK, *out is a
 * new request the caller frees with sl_oai_req_free().  On failure *out is
 * NULL and, when err is non-NULL, *err describes the problem (see the table
 * above).  Returns SL_OK, SL_EINVAL (any validation error), SL_ETOOBIG
 * (context_length_exceeded), or SL_ENOMEM (err: 500 "server_error").
 * Memory: a request from the fast path is one allocation of about twice the
 * body (a copy of it plus the decoded strings), plus one for a chat of more
 * than 8 messages.  Any thread. */
int sl_oai_req_parse(sl_oai_kind kind, const char *body, size_t len,
                     const sl_oai_limits *lim, sl_oai_req **out,
                     sl_oai_error *err);

/* Frees a request and everything it owns.  NULL is a no-op. */
void sl_oai_req_free(sl_oai_req *r);

/* The parsed JSON document (a json_t * object), owned by r, for callers that
 * forward the request with its unknown fields (e.g. to an OpenAI upstream).
 * Valid until sl_oai_req_free(r).  Do not modify it.  A request built by the
 * fast path has no document until the first call, which parses a copy of
 * the body with jansson (as the jansson path would have: same flags, same
 * result) and keeps it; so the first call costs a jansson parse, and
 * modifies r (the thread using r calls it).  Returns NULL when that parse
 * runs out of memory (a later call tries again). */
const void *sl_oai_req_json(const sl_oai_req *r);

/* A chat request's "messages" array as JSON text, *len bytes, not
 * NUL-terminated: the body's own bytes when the fast path parsed the body
 * (valid JSON, validated as the jansson path validates it, denoting the same
 * value), NULL otherwise (then dump it from sl_oai_req_json()).  Valid while
 * r is; lets a request be forwarded upstream without building the jansson
 * document (~20,000 instructions for a one-message chat). */
const char *sl_oai_req_messages_raw(const sl_oai_req *r, size_t *len);

/* Flattens the request into one prompt text for workers that take text:
 *   completions ............. the prompt, unchanged;
 *   chat, exactly one message and its role is "user"
 *                            ... that message's content, unchanged;
 *   chat, otherwise ......... for each message in order the line
 *                             "<role>: <content>", lines joined by a single
 *                             "\n" (no trailing newline, no final
 *                             "assistant:" cue; content is copied as is, so a
 *                             content with newlines spans several lines).
 * Writes at most cap bytes including a terminating NUL (like snprintf: the
 * output is truncated and NUL-terminated when cap > 0) and returns the full
 * length the text has, excluding the NUL; so the text is complete iff the
 * return value < cap.  buf may be NULL when cap == 0. */
size_t sl_oai_req_render_prompt(const sl_oai_req *r, char *buf, size_t cap);

/* Allocating variant: *out gets a malloc'd NUL-terminated text (free() it)
 * and *len its length.  Returns SL_OK or SL_ENOMEM. */
int sl_oai_req_prompt(const sl_oai_req *r, char **out, size_t *len);

/* Fills *err (no-op when NULL): status, type and code as given (type and
 * code must be static strings), param copied (may be NULL; clipped to 63
 * bytes), the message formatted and truncated to fit on a UTF-8 character
 * boundary.  The format arguments must not point into *err.  Exposed for the
 * HTTP layer's own request errors (unknown route, bad method, ...). */
void sl_oai_error_set(sl_oai_error *err, int http_status, const char *type,
                      const char *code, const char *param, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

#endif
