/* dlq_fuzz.c - libFuzzer harness for the DLQ record reader
 * (src/dlq/dlq.c: frame scanning, resynchronisation, record decoding).
 *
 * The input is read three ways:
 *   1. as raw segment bytes (sl__dlq_scan_buf): any bytes, bounded work,
 *      valid_end inside the input;
 *   2. as one payload wrapped in a correct frame (so that the CRC passes and
 *      the JSON decoder is reached), between garbage taken from the input;
 *   3. every record the reader delivers is serialised again
 *      (sl_dlq_record_json), framed and read back: exactly one record must
 *      come out and serialise to the same bytes (a fixed point); and the
 *      hand-written payload writer (sl__dlq_payload) must give the same
 *      JSON value as sl_dlq_record_json.
 * Build: cmake -DSLUICE_FUZZ=ON (see cmake/parts/70-dlq.cmake); run
 * build-fuzz/fuzz/dlq_fuzz DIR. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "dlq/dlq.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static unsigned char *frame(const void *payload, size_t n, size_t pre, size_t post,
                            const uint8_t *junk, size_t junklen, size_t *outlen)
{
	unsigned char *b = malloc(pre + 12 + n + post + 1);
	CHECK(b);
	for (size_t i = 0; i < pre; i++)
		b[i] = junklen ? junk[i % junklen] : 0;
	unsigned char *h = b + pre;
	uint32_t crc = sl__dlq_crc32c(0, payload, n);
	memcpy(h, "\xF7" "DQ1", 4);
	for (int i = 0; i < 4; i++) {
		h[4 + i] = (unsigned char)((uint32_t)n >> (8 * i));
		h[8 + i] = (unsigned char)(crc >> (8 * i));
	}
	memcpy(h + 12, payload, n);
	for (size_t i = 0; i < post; i++)
		b[pre + 12 + n + i] = junklen ? junk[(i * 7) % junklen] : 0;
	*outlen = pre + 12 + n + post;
	return b;
}

static char *dump(const sl_dlq_record *r)
{
	json_t *j = sl_dlq_record_json(r);
	CHECK(j);
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	CHECK(s);
	return s;
}

typedef struct again {
	int n;
	char *s;
} again;

static int again_cb(void *user, const sl_dlq_record *r)
{
	again *a = user;
	a->n++;
	free(a->s);
	a->s = dump(r);
	return 0;
}

/* Fixed point: serialise, frame, read back, serialise again. */
static int check_cb(void *user, const sl_dlq_record *r)
{
	CHECK(sl__dlq_id_valid(r->id));
	CHECK(r->outcome && r->kind);
	CHECK(!strcmp(r->kind, "request") || !strcmp(r->kind, "replay"));
	CHECK(r->body || r->body_len == 0);
	char *s = dump(r);
	char *hand;
	size_t hl;
	CHECK(sl__dlq_payload(r, &hand, &hl) == SL_OK);
	json_t *hj = json_loadb(hand, hl, JSON_ALLOW_NUL, NULL);
	json_t *jj = json_loadb(s, strlen(s), JSON_ALLOW_NUL, NULL);
	CHECK(hj && jj && json_equal(hj, jj));
	json_decref(hj);
	json_decref(jj);
	free(hand);
	size_t n = strlen(s), fl;
	unsigned char *f = frame(s, n, 0, 0, NULL, 0, &fl);
	again a = {0, NULL};
	sl_dlq_scan_stats st = {0};
	size_t ve = 0;
	CHECK(sl__dlq_scan_buf(f, fl, again_cb, &a, &st, &ve) == SL_OK);
	CHECK(a.n == 1 && st.corrupt == 0 && ve == fl);
	CHECK(strcmp(a.s, s) == 0);
	free(a.s);
	free(f);
	free(s);
	(*(int *)user)++;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t size)
{
	/* 1. raw segment bytes */
	int delivered = 0;
	sl_dlq_scan_stats st = {0};
	size_t ve = 0;
	CHECK(sl__dlq_scan_buf(d, size, check_cb, &delivered, &st, &ve) == SL_OK);
	CHECK(ve <= size);
	CHECK(st.records == (uint64_t)delivered);

	/* 2. the input (after one control byte) as a payload in a valid frame */
	if (size >= 1) {
		size_t pre = d[0] & 0x0f, post = d[0] >> 4, fl;
		unsigned char *f = frame(d + 1, size - 1, pre, post, d, size, &fl);
		delivered = 0;
		memset(&st, 0, sizeof st);
		CHECK(sl__dlq_scan_buf(f, fl, check_cb, &delivered, &st, &ve) == SL_OK);
		CHECK(ve <= fl);
		free(f);
	}
	return 0;
}
