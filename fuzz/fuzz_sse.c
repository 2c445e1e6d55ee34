/* fuzz_sse.c - libFuzzer harness for the incremental SSE parser.
 *
 * The input is a raw event stream.  It is parsed whole, then split in two at
 * a position derived from its bytes, then fed one byte at a time; the event
 * logs, the feed status and the finish status must be identical.  The bound
 * (max_event_bytes) is also derived from the bytes, so that SL_ETOOBIG paths
 * are reached.  Each event's data also goes through the chunk extractor. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/dynbuf.h"
#include "worker/openai/sse.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

typedef struct rec {
	sl_dynbuf log;
	sl_oai_chunk chunk;
} rec;

static int on_event(void *arg, const char *ev, size_t evl, const char *data, size_t dl)
{
	rec *r = arg;
	CHECK(ev[evl] == '\0' && data[dl] == '\0' && evl > 0);
	/* length-prefixed so that logs are unambiguous */
	uint64_t n[2] = {evl, dl};
	CHECK(sl_dynbuf_add(&r->log, n, sizeof n) == SL_OK);
	CHECK(sl_dynbuf_add(&r->log, ev, evl) == SL_OK);
	CHECK(sl_dynbuf_add(&r->log, data, dl) == SL_OK);
	sl_oai_chunk_parse(data, dl, &r->chunk);
	return 0;
}

typedef struct result {
	int feed_rc, finish_rc;
	sl_dynbuf log;
} result;

static void run(const uint8_t *d, size_t size, size_t max, const size_t *cuts,
                size_t ncuts, result *out)
{
	rec r;
	sl_dynbuf_init(&r.log, (size_t)1 << 30);
	sl_dynbuf_add(&r.log, "", 0);
	sl_oai_chunk_init(&r.chunk, 0);
	sl_sse *p;
	CHECK(sl_sse_create(max, on_event, &r, &p) == SL_OK);
	int rc = SL_OK;
	size_t from = 0;
	for (size_t i = 0; i <= ncuts && rc == SL_OK; i++) {
		size_t to = i < ncuts ? cuts[i] : size;
		rc = sl_sse_feed(p, (const char *)d + from, to - from);
		from = to;
	}
	out->feed_rc = rc;
	out->finish_rc = sl_sse_finish(p);
	CHECK(rc == SL_OK || rc == SL_ETOOBIG);
	CHECK(rc == SL_OK ? (out->finish_rc == SL_OK || out->finish_rc == SL_EUPSTREAM)
	                  : out->finish_rc == rc);
	sl_sse_destroy(p);
	sl_oai_chunk_free(&r.chunk);
	out->log = r.log;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t h = 2166136261u; /* FNV-1a of the input */
	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 16777619u;
	size_t max = (h & 3) == 0 ? 1 + (h >> 8) % 48 : 1 << 16;
	size_t cut = size ? (h >> 4) % (size + 1) : 0;

	result whole, split, bytes;
	run(data, size, max, NULL, 0, &whole);
	run(data, size, max, &cut, 1, &split);
	CHECK(whole.feed_rc == split.feed_rc && whole.finish_rc == split.finish_rc);
	CHECK(whole.log.len == split.log.len && memcmp(whole.log.p, split.log.p, whole.log.len) == 0);
	if (size <= 4096) {
		size_t *cuts = malloc((size ? size : 1) * sizeof *cuts);
		for (size_t i = 0; i < size; i++)
			cuts[i] = i + 1;
		run(data, size, max, cuts, size ? size - 1 : 0, &bytes);
		free(cuts);
		CHECK(whole.feed_rc == bytes.feed_rc && whole.finish_rc == bytes.finish_rc);
		CHECK(whole.log.len == bytes.log.len && memcmp(whole.log.p, bytes.log.p, whole.log.len) == 0);
		sl_dynbuf_free(&bytes.log);
	}
	sl_dynbuf_free(&whole.log);
	sl_dynbuf_free(&split.log);
	return 0;
}
