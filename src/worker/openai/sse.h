/*
 * sse.h - incremental Server-Sent Events parser (WHATWG HTML, "Parsing an
 * event stream") for upstream streams, and an extractor for the JSON of
 * OpenAI stream chunks.
 *
 * Parser rules, as the WHATWG text gives them:
 *  - input arrives in arbitrary byte chunks; lines end in "\n", "\r\n" or
 *    "\r", and a "\r" ending one chunk followed by "\n" starting the next is
 *    ONE line end;
 *  - one UTF-8 byte order mark (EF BB BF) at the very start of the stream is
 *    dropped;
 *  - a line starting with ':' is a comment and is ignored;
 *  - "name:value" sets field name to value, with one leading space of the
 *    value removed; a line with no ':' is a field name with an empty value;
 *  - fields: "data" appends value + "\n" to the data buffer; "event" sets the
 *    event type; "id" sets the last event id (ignored if the value contains
 *    a NUL); "retry" sets the reconnection time if the value is all ASCII
 *    digits; other fields are ignored;
 *  - an empty line dispatches: if the data buffer is empty nothing is
 *    dispatched (and the event type is reset); otherwise its final "\n" is
 *    removed and the callback gets the event type ("message" when none was
 *    set) and the data.  Note the WHATWG nuance: a lone "data:" line makes the
 *    data buffer "\n", so it DOES dispatch, with empty data;
 *  - at end of stream an incomplete event is discarded (sl_sse_finish).
 * The byte stream is not decoded: data is passed through as bytes (an
 * upstream's invalid UTF-8 is the chunk extractor's to reject).
 *
 * Bounds: a single line longer than max_event_bytes (terminator excluded),
 * or an event whose data (joined, without the final "\n") would exceed
 * max_event_bytes, makes sl_sse_feed return SL_ETOOBIG.  The result does not
 * depend on how the stream is split into chunks.  Memory held is at most
 * about 3 x max_event_bytes (partial line, data, event type).
 *
 * Errors are sticky: after sl_sse_feed returned anything but SL_OK (SL_ETOOBIG
 * or a callback's stop value), every later feed and finish returns that same
 * value without doing anything, because the rest of that chunk was not
 * consumed; destroy the parser.
 *
 * Threading: a parser is used by one thread at a time.  The callback runs
 * inside sl_sse_feed on the calling thread and must not call sl_sse_feed,
 * sl_sse_finish or sl_sse_destroy on the same parser.
 */
#ifndef SLUICE_WORKER_OPENAI_SSE_H
#define SLUICE_WORKER_OPENAI_SSE_H

#include <stddef.h>
#include <stdint.h>

#include <sluice/sluice.h>

#include "core/dynbuf.h"

/* Called once per dispatched event.  event (event_len bytes) and data
 * (data_len bytes) are NUL-terminated and valid only during the call; data
 * may contain NUL bytes.  Return 0 to go on; a non-zero value stops feeding
 * and is returned by sl_sse_feed (use a value that cannot be mistaken for an
 * sl_status, e.g. positive, if you need to tell them apart). */
typedef int (*sl_sse_event_fn)(void *arg, const char *event, size_t event_len,
                               const char *data, size_t data_len);

typedef struct sl_sse sl_sse; /* opaque */

/* Creates a parser.  max_event_bytes >= 1 bounds lines and events (see
 * above); fn is required.  Returns SL_OK and *out, SL_EINVAL, SL_ENOMEM. */
int sl_sse_create(size_t max_event_bytes, sl_sse_event_fn fn, void *arg,
                  sl_sse **out);

/* Feeds len bytes (any split of the stream; len == 0 is a no-op).  Events
 * completed by these bytes are dispatched, in order, before it returns.
 * Returns SL_OK, SL_ETOOBIG (bound exceeded), SL_ENOMEM, or the non-zero
 * value a callback returned; all of these but SL_OK are sticky. */
int sl_sse_feed(sl_sse *p, const char *buf, size_t len);

/* Declares the end of the stream.  Returns SL_OK when nothing is pending:
 * no data line has been seen since the last dispatch and no partial "data"
 * line is buffered.  Returns SL_EUPSTREAM when the stream ended in the
 * middle of an event (data received but never dispatched by an empty line:
 * the upstream was cut off); that event is discarded, as WHATWG requires.
 * A partial line that is a comment or another field is dropped silently.
 * In both cases the parser is reset for a new stream (last event id and
 * retry are kept, as for a reconnection).  If the parser is in an error
 * state, returns that error. */
int sl_sse_finish(sl_sse *p);

/* Frees the parser.  NULL is a no-op. */
void sl_sse_destroy(sl_sse *p);

/* The last event id seen ("" if none; NUL-terminated; *len optional), valid
 * until the next feed/finish/destroy. */
const char *sl_sse_last_event_id(const sl_sse *p, size_t *len);

/* The last valid "retry" value in ms, or -1 if none (saturates at
 * INT64_MAX). */
int64_t sl_sse_retry(const sl_sse *p);

/* ------------------------------------------------ OpenAI stream chunks */

/* What one chunk of an OpenAI-compatible stream says.  Strings point into
 * storage owned by the chunk (or are static) and stay valid until the next
 * sl_oai_chunk_parse() or sl_oai_chunk_free() on it.  A chunk is used by one
 * thread at a time; the parse functions touch nothing else (any thread).
 *
 * sl_oai_chunk_parse() is a hand-written scanner, measured 9-15x faster than
 * the jansson reference on typical chunks (bench/sse_extract.c) and fuzzed
 * against it for identical results (fuzz/fuzz_chunk.c). */
typedef struct sl_oai_chunk {
	int done;                  /* the data was exactly "[DONE]" */
	int has_choice;            /* choices[0] is an object */
	const char *content;       /* choices[0].delta.content, else
	                              choices[0].message.content (a whole
	                              chat.completion), else choices[0].text
	                              (a string, unescaped; may contain NULs);
	                              NULL when none is a string */
	size_t content_len;
	const char *role;          /* choices[0].delta.role if a string, else NULL */
	const char *finish_reason; /* choices[0].finish_reason if a string, else NULL;
	                              "stop", "length", "content_filter",
	                              "tool_calls" and "function_call" are returned
	                              as static strings (safe to keep) */
	int has_usage;             /* "usage" is an object */
	uint32_t prompt_tokens;    /* usage.prompt_tokens if an integer in
	                              0..UINT32_MAX, else 0 */
	uint32_t completion_tokens;
	int is_error;              /* "error" is present and not null */
	const char *error_message; /* error.message (or error itself if it is a
	                              string), NULL when absent */
	const char *error_type;    /* error.type if a string */
	const char *error_code;    /* error.code if a string, or an integer code
	                              written in decimal */
	const char *error_param;   /* error.param if a string */
	sl_dynbuf _store;             /* private */
} sl_oai_chunk;

/* Initialises a chunk whose strings may total at most max_bytes (0 = 1 MiB).
 * Allocates nothing yet; reuse one chunk for a whole stream. */
void sl_oai_chunk_init(sl_oai_chunk *c, size_t max_bytes);

/* Frees the chunk's storage.  NULL is a no-op. */
void sl_oai_chunk_free(sl_oai_chunk *c);

/* Parses one event's data (len bytes, as an SSE callback receives it; data
 * may be NULL when len is 0) into
 * *out, which must have been initialised; previous results are replaced.
 * Only choices[0] is looked at; fields of the wrong type count as absent;
 * a key given twice takes its last value.  Returns SL_OK (also for
 * "[DONE]" and for error objects: see done / is_error), SL_EINVAL when the
 * data is not a JSON object (malformed JSON, invalid UTF-8, "\u0000" in a
 * key, nesting deeper than 2048, a number out of range), SL_ETOOBIG when the
 * strings exceed the chunk's max_bytes, SL_ENOMEM.  On failure *out is
 * left empty (all fields zero/NULL). */
int sl_oai_chunk_parse(const char *data, size_t len, sl_oai_chunk *out);

/* The reference implementation with jansson, kept for tests, fuzzing (the
 * two must agree on every input) and bench/sse_extract.c.  Same contract. */
int sl_oai_chunk_parse_jansson(const char *data, size_t len, sl_oai_chunk *out);

#endif
