/*
 * openai.h - the OpenAI-compatible upstream worker: sends each inference
 * call as a chat completion to any OpenAI-compatible server (vLLM, the
 * llama.cpp server, TGI, Ollama, OpenAI itself) and streams the answer back
 * as tokens.
 *
 * Transports (opts.transport): http:// upstreams use the native HTTP/1.1
 * client (native.c: non-blocking sockets and libevent events on the shard's
 * loop, a keep-alive pool per shard, names resolved by evdns), https://
 * upstreams use libcurl's multi interface driven by the shard's loop
 * (curl_multi_socket_action, as in curl's docs/examples/multi-event.c; one
 * CURLM per shard, whose connection cache is the keep-alive pool).  Both
 * send the same request and report the same outcomes.  No thread ever
 * blocks on the network.  Design notes: docs/internals/openai-worker.md.
 *
 * The request: POST <url>/chat/completions with
 *   {"model":<model>, "messages":<see below>, "stream":true,
 *    "stream_options":{"include_usage":true},
 *    "max_tokens":N, "temperature":T, "top_p":P, "seed":S, "stop":[...]}
 * (the parameters only when set in sl_infer_params; "stream":false and no
 * stream_options when opts.stream is 0).  messages is the request metadata
 * "messages_json" verbatim when present (it must be a JSON array: the gateway
 * passes the client's chat messages that way), otherwise
 * [{"role":"user","content":<the assembled prompt>}].  Headers: Content-Type,
 * Accept, "Authorization: Bearer <key>" when api_key_env is set, the extra
 * headers of opts.headers, "X-Request-Id: <sl_infer_request_id>" and
 * "traceparent: <metadata traceparent>" when present (a value holding a
 * control character is not sent).
 *
 * Outcomes of a call (the status given to sl_infer_done and its detail):
 *   SL_OK          the stream ended with a finish_reason and/or [DONE];
 *                  usage (prompt/completion tokens) and finish_reason as the
 *                  upstream reported them.  Also SL_OK with finish_reason
 *                  "length" when the pipeline's output bound was reached
 *                  (sl_infer_token returned SL_ETOOBIG): the transfer is
 *                  stopped at once.
 *   SL_EUPSTREAM   detail, one of:
 *                    "upstream <code>: <message>"  HTTP status <code> outside
 *                        2xx; <message> is error.message (or error, message,
 *                        detail) of the upstream's JSON body, else the start
 *                        of the body, else "(no message)".  The same form is
 *                        used for an {"error":...} event inside a stream whose
 *                        error.code is an HTTP status (400..599).
 *                    "upstream error: <message>"  any other error event in a
 *                        stream (HTTP status 200).
 *                    "upstream connect failed: <error>"  could not resolve
 *                        or connect (incl. connect timeout, TLS); <error>
 *                        is libcurl's or the native client's message.
 *                    "upstream closed the stream before it finished"  the
 *                        body ended (cleanly or not) before a finish_reason
 *                        or [DONE].
 *                    "upstream sent malformed JSON"  an SSE event or the
 *                        JSON body did not parse as a JSON object.
 *                    "upstream transfer failed: <error>"  any other
 *                        transport failure (e.g. a malformed response head).
 *                    "upstream response has no choices", "upstream sent an
 *                        event over the size bound", "upstream response
 *                        over the size bound"  other protocol violations.
 *                  The gateway recovers the upstream status from a detail
 *                  that starts with "upstream " followed by three digits and
 *                  ':'.  Tokens delivered before the failure stay delivered.
 *   SL_ETIMEDOUT   "upstream sent no token within <N> ms" (first-token
 *                  timeout), "upstream timed out after <N> ms" (total), or
 *                  "deadline exceeded waiting for upstream".
 *   SL_ECANCELED   "openai worker closing": calls still running at close().
 * No detail ever contains the API key (it is scrubbed even from text the
 * upstream echoes back).  Usage: as the upstream reports it; when it sends
 * none, completion_tokens counts the content pieces and prompt_tokens is 0.
 * A token that would cross the pipeline's output bound is dropped whole (in
 * non-streaming mode that is the whole answer).
 *
 * Threading: sl_worker_openai_create() from any thread; the worker's ops run
 * as sluice.h's worker lifecycle describes (infer/cancel on the shard
 * thread).  The API key is read from the environment once, at create.
 */
#ifndef SLUICE_WORKER_OPENAI_H
#define SLUICE_WORKER_OPENAI_H

#include <stdint.h>

#include <sluice/sluice.h>

#define SL_OPENAI_DEFAULT_CONNECT_TIMEOUT_MS 2000u
#define SL_OPENAI_DEFAULT_FIRST_TOKEN_TIMEOUT_MS 30000u
/* first_token_timeout_ms value that disables the first-token timer. */
#define SL_OPENAI_TIMEOUT_NONE UINT32_MAX
/* Idle keep-alive connections kept per shard when max_concurrency is 0
 * (otherwise max_concurrency is the per-shard bound). */
#define SL_OPENAI_DEFAULT_POOL 256u
/* Bounds: one SSE event, a non-streamed body, an error body (the rest of an
 * error body is dropped, not an error). */
#define SL_OPENAI_MAX_EVENT_BYTES (1u << 20)
#define SL_OPENAI_MAX_BODY_BYTES (16u << 20)
#define SL_OPENAI_MAX_ERROR_BODY 65536u
/* Bound on the length of each of url, model, api key, extra header. */
#define SL_OPENAI_MAX_STRING 8192u
#define SL_OPENAI_MAX_HEADERS 64u

/* How calls reach the upstream. */
typedef enum sl_openai_transport {
	/* native for http:// (libcurl when one of the proxy variables libcurl
	 * honours - http_proxy, all_proxy, ALL_PROXY - is set, or for a URL
	 * the native client cannot use), libcurl for https:// */
	SL_OPENAI_TRANSPORT_AUTO = 0,
	/* the native HTTP/1.1 client; http:// only (no TLS, no proxy) */
	SL_OPENAI_TRANSPORT_NATIVE = 1,
	/* libcurl (HTTP/1.1 and, over https, HTTP/2) */
	SL_OPENAI_TRANSPORT_CURL = 2
} sl_openai_transport;

typedef struct sl_openai_opts {
	/* base URL ("http://127.0.0.1:8081/v1"); requests go to
	 * url + "/chat/completions" (a trailing '/' of url is dropped).
	 * http:// or https:// only.  Required. */
	const char *url;
	/* model name sent upstream (may differ from the public name). Required. */
	const char *model;
	/* name of an environment variable holding the API key, read once at
	 * create (never logged); NULL = no Authorization header.  Create fails
	 * with SL_EINVAL when the variable is unset or empty. */
	const char *api_key_env;
	uint32_t connect_timeout_ms;     /* 0 = SL_OPENAI_DEFAULT_CONNECT_TIMEOUT_MS */
	/* no first token by then -> SL_ETIMEDOUT; 0 = the default (30000),
	 * SL_OPENAI_TIMEOUT_NONE = no such timer.  In non-streaming mode the
	 * whole answer is the first token. */
	uint32_t first_token_timeout_ms;
	/* whole-call limit; 0 = the request deadline only (sl_infer_deadline).
	 * The transfer's limit is min(this, time left to the deadline). */
	uint32_t total_timeout_ms;
	/* bound on concurrent calls across all shards, 0 = unlimited; returned
	 * by ops->max_concurrency (the pipeline caps each shard's inference
	 * concurrency to max(1, bound / shards)), and used per shard as the
	 * connection limit to the host and the idle-pool size. */
	uint32_t max_concurrency;
	/* extra "Name: value" headers, NULL-terminated, may be NULL; each must
	 * hold a ':' after a non-empty name and no CR, LF or NUL (copied). */
	const char *const *headers;
	/* 1 = ask upstream for stream:true and pass tokens as they arrive;
	 * 0 = one non-streamed chat.completion, emitted as one token.
	 * sl_openai_opts_init() sets 1; a zeroed struct means 0. */
	int stream;
	/* SL_OPENAI_TRANSPORT_AUTO (the default, also of a zeroed struct),
	 * NATIVE (an https:// url is then SL_EINVAL) or CURL. */
	sl_openai_transport transport;
} sl_openai_opts;

/* Fills *opts with the defaults (stream = 1, transport auto, everything else
 * 0/NULL). */
void sl_openai_opts_init(sl_openai_opts *opts);

/* Creates the worker.  opts is validated and copied (strings included); the
 * API key is read from getenv(api_key_env) here.  Any thread.  Returns
 * SL_OK and *out, SL_EINVAL (missing url/model, bad scheme, a control
 * character in the url, bad header, unset or empty key variable, a string
 * over SL_OPENAI_MAX_STRING, more than SL_OPENAI_MAX_HEADERS headers, a
 * timeout over a day, stream not 0 or 1, an unknown transport, transport
 * native with an https:// url or a url the native client cannot use),
 * SL_ENOMEM, or SL_ESYS when libcurl cannot be initialised. */
int sl_worker_openai_create(const sl_openai_opts *opts, sl_worker **out);

#endif
