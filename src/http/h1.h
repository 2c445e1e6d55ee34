/* h1.h - sluice's HTTP/1.1 server layer on libevent bufferevents.
 *
 * Replaces evhttp for the gateway: every answer the layer gives by itself
 * (400, 408, 413, 431, 501, 505) goes through a caller-supplied formatter,
 * so clients always get the gateway's JSON error bodies.  Design notes:
 * docs/internals/http.md, "h1: the HTTP/1.1 layer".
 *
 * Model
 * -----
 * One sl_h1_server per shard: a listening socket and its connections, all
 * on one event_base.  A connection reads one request at a time (head, then
 * body: Content-Length or chunked), hands it to on_request, and reads the
 * next one only after the reply has ended (pipelined bytes stay buffered,
 * at most max_headers of them).  While a request is being answered the
 * connection still watches for the client's EOF/reset and fires the
 * request's close callback at once.
 *
 * Memory bounds, per connection: input <= max_headers + max_body (+ chunk
 * framing, decoded as it arrives); output: whatever the caller queues, with
 * SL_EAGAIN from sl_h1_reply_chunk() above max_output_buffered as the
 * signal to stop producing until the drain callback.
 *
 * Timeouts: read_timeout_ms from the first byte of a request to its last
 * (-> 408 and close; a connection that sends nothing at all after accept is
 * closed silently after read_timeout_ms too); idle_timeout_ms between
 * requests on a keep-alive connection (closed silently); none while a reply
 * is being produced.
 *
 * Threading: everything here runs on the event_base's thread ("shard
 * thread"), except sl_h1_server_connections() and sl_h1_server_stats()
 * which any thread may call.  SIGPIPE must be ignored by the process
 * (libevent writes with writev(2)); the layer's own writes use
 * MSG_NOSIGNAL.
 */
#ifndef SL_HTTP_H1_H
#define SL_HTTP_H1_H
#include <stddef.h>
#include <stdint.h>
#include "sluice/sluice.h"

struct event_base;

typedef struct sl_h1_server sl_h1_server; /* one per shard */
typedef struct sl_h1_req sl_h1_req;       /* one request */

#define SL_H1_DEFAULT_MAX_HEADERS (16u << 10)
#define SL_H1_DEFAULT_MAX_BODY (1u << 20)
#define SL_H1_DEFAULT_READ_TIMEOUT_MS 10000u
#define SL_H1_DEFAULT_IDLE_TIMEOUT_MS 60000u
#define SL_H1_DEFAULT_MAX_OUTPUT (1u << 20)
#define SL_H1_MAX_HEADER_FIELDS 256 /* more header lines -> 431 */
#define SL_H1_LINGER_MS 2000        /* discard input this long after an
                                     * error reply before closing */

/* Limits; a zero field takes its default. */
typedef struct sl_h1_limits {
	size_t max_headers;         /* bytes of request line + headers; over -> 431 */
	size_t max_body;            /* bytes; Content-Length over it -> 413 before
	                             * reading the body; chunked cut at it -> 413 */
	uint32_t read_timeout_ms;   /* one whole request, from its first byte -> 408 */
	uint32_t idle_timeout_ms;   /* keep-alive idle connection closed after */
	size_t max_output_buffered; /* pending output above it -> SL_EAGAIN from
	                             * sl_h1_reply_chunk */
} sl_h1_limits;

/* Called on the shard thread when a whole request (head and body) has been
 * read.  The handler answers now or later, on this shard's thread, with
 * exactly one of sl_h1_reply() or sl_h1_reply_start() + sl_h1_reply_chunk()*
 * + sl_h1_reply_end().  A handler that keeps r beyond its return should set
 * a close callback (sl_h1_set_close_cb). */
typedef void (*sl_h1_request_fn)(sl_h1_req *r, void *arg);

/* Called instead of on_request for a request the layer refuses itself (400
 * malformed, 408 read timeout, 413, 431, 501 unsupported transfer-encoding,
 * 505 version).  Writes the body (e.g. an OpenAI-style JSON error) into buf
 * (cap bytes, cap >= 1024), returns its length (<= cap) and sets
 * *content_type (a static string).  code is a short reason code
 * ("headers_too_large", "body_too_large", "read_timeout", "bad_request",
 * "unsupported_transfer_encoding", "http_version_not_supported"), message a
 * human sentence.  The layer then sends the reply with Connection: close
 * and closes.  With on_error == NULL a text/plain "<message>\n" is sent. */
typedef size_t (*sl_h1_error_fn)(void *arg, int status, const char *code, const char *message,
                                 char *buf, size_t cap, const char **content_type);

/* Creates the server of one shard on base (shard thread, or before the
 * loop runs) and starts accepting on listen_fd, which it takes over
 * (non-blocking, bound and listening; closed by destroy, or at once on
 * failure).  lim may be NULL (defaults); it is copied.  on_request is
 * required; on_error may be NULL.  Returns SL_OK and *out, SL_EINVAL,
 * SL_ENOMEM or SL_ESYS. */
int sl_h1_server_create(struct event_base *base, int listen_fd, const sl_h1_limits *lim,
                        sl_h1_request_fn on_request, sl_h1_error_fn on_error, void *arg,
                        sl_h1_server **out);

/* Closes the listener and every connection (shard thread, or after the
 * loop has stopped; not from inside one of this server's callbacks).  Requests still open get their close callback first;
 * after destroy no callback runs.  NULL is a no-op. */
void sl_h1_server_destroy(sl_h1_server *s);

/* Stops / resumes accepting new connections (backpressure); connections
 * already open go on.  The kernel still queues new connections in the
 * listen backlog meanwhile.  Shard thread.  Idempotent. */
void sl_h1_server_pause_accept(sl_h1_server *s);
void sl_h1_server_resume_accept(sl_h1_server *s);

/* Open connections (gauge).  Any thread. */
uint64_t sl_h1_server_connections(const sl_h1_server *s);

/* Counters since create (any thread; each field is read atomically, the
 * set is not a snapshot). */
typedef struct sl_h1_stats {
	uint64_t accepted;        /* connections */
	uint64_t closed;
	uint64_t open;            /* gauge */
	uint64_t requests;        /* handed to on_request */
	uint64_t err_400, err_408, err_413, err_431, err_501, err_505;
	uint64_t idle_timeouts;   /* idle keep-alive connections closed */
	uint64_t client_gone;     /* EOF/reset/write error while a request was open */
	uint64_t accept_errors;
} sl_h1_stats;
void sl_h1_server_stats(const sl_h1_server *s, sl_h1_stats *out);

/* ------------------------------------------------------- request accessors
 * Shard thread; r must be valid (see sl_h1_set_close_cb).  The strings live
 * as long as r. */

const char *sl_h1_method(const sl_h1_req *r);   /* "GET", "POST", ... */
const char *sl_h1_path(const sl_h1_req *r);     /* without query string ("/" at least
                                                 * for absolute-form targets) */
const char *sl_h1_target(const sl_h1_req *r);   /* request target as sent */
/* Value of the first header named name (case-insensitive), OWS trimmed;
 * NULL if absent. */
const char *sl_h1_header(const sl_h1_req *r, const char *name);
/* Number of header fields, and the i-th (0-based) name/value; SL_EINVAL if
 * i is out of range. */
size_t sl_h1_header_count(const sl_h1_req *r);
int sl_h1_header_at(const sl_h1_req *r, size_t i, const char **name, const char **value);
/* The body, contiguous (it may contain NULs; it is followed by a NUL byte
 * not counted in *len).  "" and *len = 0 when there is none.  len may be
 * NULL. */
const char *sl_h1_body(const sl_h1_req *r, size_t *len);
const char *sl_h1_peer(const sl_h1_req *r);     /* "ip:port" ("[v6]:port") */
int sl_h1_http_minor(const sl_h1_req *r);       /* 0 for HTTP/1.0, 1 for 1.1 */
/* 1 if the connection will be kept open after this reply (as things stand:
 * the reply may still ask for close). */
int sl_h1_keep_alive(const sl_h1_req *r);
/* The server a request came from. */
sl_h1_server *sl_h1_req_server(const sl_h1_req *r);

/* ---------------------------------------------------------------- replies
 * Shard thread.  The layer adds Date, Content-Length or Transfer-Encoding:
 * chunked, and Connection: close (or keep-alive for an HTTP/1.0 client that
 * asked for it).  Caller headers named Content-Length, Transfer-Encoding
 * or Connection are not copied (framing is the layer's), except that
 * "Connection: close" makes the connection close after the reply; a caller
 * Date replaces the layer's.  Names and values must not contain CR, LF or
 * NUL: SL_EINVAL, and nothing is sent (the request stays open).
 * HEAD requests and 1xx/204/304 statuses get the headers only.  An
 * HTTP/1.0 client gets a streamed reply without chunking, delimited by the
 * connection's close. */

/* A reply header.  (The contract named both this type and the lookup
 * function sl_h1_header(); C has one namespace for both, so the type is
 * the struct tag "struct sl_h1_header", also typedef'd as sl_h1_hdr.) */
struct sl_h1_header {
	const char *name, *value;
};
typedef struct sl_h1_header sl_h1_hdr;

/* Sends a complete response (with Content-Length; status 200..999 - the
 * layer sends 100 Continue itself) and ends the request.  Returns SL_OK;
 * SL_ECLOSED (the client is gone or the write failed); SL_ENOMEM (the head
 * could not be built: the connection is dropped) - after these three r is
 * invalid.  SL_EINVAL (bad status or header) and SL_ESTATE (a reply was
 * already started) send nothing and leave r valid and open. */
int sl_h1_reply(sl_h1_req *r, int status, const struct sl_h1_header *hdrs, size_t n,
                const char *body, size_t len);

/* Starts a streamed (chunked) response.  SL_OK, SL_ECLOSED, SL_ESTATE,
 * SL_EINVAL, SL_ENOMEM; on failure r stays valid (after SL_ECLOSED: see
 * the rule of thumb at sl_h1_reply_end). */
int sl_h1_reply_start(sl_h1_req *r, int status, const struct sl_h1_header *hdrs, size_t n);

/* Queues one chunk (len 0 is a no-op).  SL_OK; SL_EAGAIN when the
 * connection's pending output is above max_output_buffered - the data WAS
 * queued, it is a signal to stop producing until the drain callback;
 * SL_ECLOSED if the client is gone (the close callback will follow, from
 * the event loop, unless the caller ends the reply first); SL_ESTATE if no
 * reply was started. */
int sl_h1_reply_chunk(sl_h1_req *r, const char *data, size_t len);

/* Sends the terminating chunk and ends the request: r is invalid once this
 * returns.  The connection goes on with the next request (keep-alive) or
 * closes once the output is flushed.  SL_OK, SL_ECLOSED (client gone; r is
 * ended and freed all the same - this is also how an owner without a close
 * callback gives back a request whose client is gone, started or not),
 * SL_ESTATE (no reply started and the client still there: r stays valid).
 *
 * Rule of thumb: once a call on r returns SL_ECLOSED, either end r with
 * sl_h1_reply_end() or, if a close callback is set, wait for it. */
int sl_h1_reply_end(sl_h1_req *r);

/* Sets the close callback of r: called once, on the shard thread from the
 * event loop (never from inside an sl_h1_* call), if the client goes away
 * (EOF, error, reset, write failure, server destroy) before the reply has
 * ended.  r is freed when fn returns: the owner must drop its pointer in
 * fn and make no sl_h1_* call on r afterwards.  Without a close callback, a
 * request whose client has gone stays allocated until the owner ends it
 * (its sl_h1_reply* calls then return SL_ECLOSED), so a handler that
 * answers later without one is still memory-safe.  fn NULL clears it. */
void sl_h1_set_close_cb(sl_h1_req *r, void (*fn)(sl_h1_req *r, void *arg), void *arg);

/* Sets the drain callback of r: called (shard thread, from the event
 * loop) when the connection's pending output drops to max_output_buffered
 * / 2 after sl_h1_reply_chunk returned SL_EAGAIN.  Once per SL_EAGAIN. */
void sl_h1_set_drain_cb(sl_h1_req *r, void (*fn)(sl_h1_req *r, void *arg), void *arg);

/* Bytes of output queued on r's connection and not yet written. */
size_t sl_h1_pending_output(const sl_h1_req *r);

/* Reason phrase of a status code ("OK", "Not Found", ...; "Unknown"). */
const char *sl_h1_reason(int status);

#endif
