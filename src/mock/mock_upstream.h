/*
 * mock_upstream.h - `sluice mock-upstream`: a fast OpenAI-compatible mock
 * model server for tests, benchmarks and users' pipeline tests.
 *
 * Serves POST /v1/chat/completions and POST /v1/completions (JSON or SSE
 * streaming), GET /v1/models and GET /healthz, with deterministic content
 * ("w0 w1 w2 ..."), configurable token count and delays, and injectable
 * faults (http500, http429, hang, drop-mid-stream, malformed, trickle).
 * GET/POST /mock/config changes tokens, delays and faults while it runs;
 * GET /mock/stats counts requests, streams, faults, cancellations.
 * User documentation: docs/mock-upstream.md.
 *
 * Threading: the server runs N event-loop threads, each with its own
 * event_base and its own SO_REUSEPORT listening socket; a connection lives on
 * the thread that accepted it.  The threads share the read-only options, one
 * eventfd used to stop them, the runtime configuration of POST /mock/config
 * (a struct behind a mutex plus an atomic generation number that each
 * completion request loads once; a thread copies the struct only when the
 * number moved) and the GET /mock/stats counters (per thread, atomics written
 * only by their thread).  Every delay is a libevent timer; no thread ever
 * sleeps.
 */
#ifndef SLUICE_MOCK_UPSTREAM_H
#define SLUICE_MOCK_UPSTREAM_H

#include "sluice/sluice.h"

/* A running mock server (opaque). */
typedef struct sl_mock_upstream sl_mock_upstream;

/* Entry point of `sluice mock-upstream`: argv[0] is "mock-upstream", the
 * flags follow (see docs/mock-upstream.md or --help).  Starts the server,
 * prints "mock-upstream listening on http://HOST:PORT (threads=N)" on stderr,
 * waits for SIGINT or SIGTERM, stops and frees everything.
 * Returns the process exit code: 0 after a signal (or --help), 2 for a bad
 * flag (message on stderr naming the flag and the accepted values), 1 when the
 * server cannot start (e.g. the port is taken).
 * Call from the main thread before any other thread exists: it blocks SIGINT
 * and SIGTERM in the calling thread (so the server threads inherit the mask)
 * and waits for them with sigwait(); the mask is restored on return. */
int sl_mock_upstream_main(int argc, char **argv);

/* Parses the same flags as sl_mock_upstream_main (argv[0] is ignored) and
 * starts the server threads; returns without waiting.  On success *out owns
 * the server until sl_mock_upstream_stop().  Signals are not touched, except
 * that the soft RLIMIT_NOFILE is raised to the hard limit (process-wide).
 * Returns SL_OK, SL_EINVAL for bad flags or --help (message on stderr),
 * SL_ESYS when a socket or thread cannot be made (message on stderr), or
 * SL_ENOMEM; on failure *out is NULL and nothing is left running.
 * Any thread. */
int sl_mock_upstream_start(int argc, char **argv, sl_mock_upstream **out);

/* The TCP port the server listens on (the chosen one when --port 0). */
int sl_mock_upstream_port(const sl_mock_upstream *m);

/* Stops the server threads, closes every connection (in-flight responses are
 * cut) and frees everything.  NULL is a no-op.  Any thread except one of the
 * server's own. */
void sl_mock_upstream_stop(sl_mock_upstream *m);

#endif
