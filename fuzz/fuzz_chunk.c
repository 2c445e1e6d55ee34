/* fuzz_chunk.c - libFuzzer harness for the OpenAI stream chunk extractor.
 *
 * The input is one event's data (normally a JSON chunk).  The production
 * extractor (sl_oai_chunk_parse) and the jansson reference
 * (sl_oai_chunk_parse_jansson) must agree on the status and on every
 * extracted field, with a roomy store and with one small enough to hit
 * SL_ETOOBIG. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "worker/openai/sse.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static void same_str(const char *a, const char *b)
{
	CHECK((a == NULL) == (b == NULL));
	if (a)
		CHECK(strcmp(a, b) == 0);
}

static void compare(const uint8_t *data, size_t size, size_t max)
{
	sl_oai_chunk a, b;
	sl_oai_chunk_init(&a, max);
	sl_oai_chunk_init(&b, max);
	int ra = sl_oai_chunk_parse((const char *)data, size, &a);
	int rb = sl_oai_chunk_parse_jansson((const char *)data, size, &b);
	CHECK(ra == rb);
	CHECK(a.done == b.done);
	CHECK((a.content == NULL) == (b.content == NULL));
	CHECK(a.content_len == b.content_len);
	if (a.content)
		CHECK(memcmp(a.content, b.content, a.content_len) == 0 && a.content[a.content_len] == '\0');
	same_str(a.role, b.role);
	same_str(a.finish_reason, b.finish_reason);
	CHECK(a.has_usage == b.has_usage);
	CHECK(a.has_choice == b.has_choice);
	CHECK(a.prompt_tokens == b.prompt_tokens && a.completion_tokens == b.completion_tokens);
	CHECK(a.is_error == b.is_error);
	same_str(a.error_message, b.error_message);
	same_str(a.error_type, b.error_type);
	same_str(a.error_code, b.error_code);
	same_str(a.error_param, b.error_param);
	if (ra != SL_OK)
		CHECK(!a.content && !a.is_error && !a.has_usage && !a.has_choice && !a.done);
	/* parse again into the used chunk: same result */
	int ra2 = sl_oai_chunk_parse((const char *)data, size, &a);
	CHECK(ra2 == ra);
	sl_oai_chunk_free(&a);
	sl_oai_chunk_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	compare(data, size, 0);
	compare(data, size, size / 4 + 1);
	return 0;
}
