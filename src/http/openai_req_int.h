/*
 * openai_req_int.h - internals of the OpenAI request parser, for its tests,
 * its fuzzer and its benchmark only (see openai_req.h for the contract).
 *
 * sl_oai_req_parse() runs a hand-written single-pass parser first (the
 * "fast path") and, whenever that parser meets something it does not
 * handle or any error, the jansson parser (the "jansson path", which alone
 * produces every error).  These entry points let a caller pick one path.
 *
 * Threading: as openai_req.h (pure functions, any thread).
 */
#ifndef SLUICE_HTTP_OPENAI_REQ_INT_H
#define SLUICE_HTTP_OPENAI_REQ_INT_H

#include "http/openai_req.h"

/* Flags of sl__oai_req_parse_ex(). */
#define SL__OAI_JANSSON_ONLY 1u /* skip the fast path */
#define SL__OAI_FAST_ONLY 2u    /* fast path only: SL__OAI_DECLINED when it declines */

/* Returned (only) under SL__OAI_FAST_ONLY when the fast path declined the
 * body: *out is NULL and *err untouched; the jansson path would decide. */
#define SL__OAI_DECLINED 1

/* sl_oai_req_parse() with a choice of path.  flags == 0 is exactly
 * sl_oai_req_parse(). */
int sl__oai_req_parse_ex(sl_oai_kind kind, const char *body, size_t len,
                         const sl_oai_limits *lim, sl_oai_req **out,
                         sl_oai_error *err, unsigned flags);

/* 1 when r was built by the fast path (its JSON document is then built
 * lazily, on the first sl_oai_req_json() call), 0 when by jansson. */
int sl__oai_req_is_fast(const sl_oai_req *r);

#endif
