/* dlq_writer.c - test helper for tests/integration/dlq_cli.sh: appends
 * records to a DLQ directory through the library, as the server would.
 *
 *   dlq_writer DIR COUNT [--segment BYTES] [--hold]
 *
 * Record i (0-based) has outcome failed/shed/expired (i % 3), stage
 * "inference", reason "upstream_error" (none for i % 3 == 1), model "echo",
 * detail "record i", and a JSON body; record 0's body is not UTF-8 (bytes
 * 0xFF 0x00 0x80 "bin").  Then record 1 (when COUNT > 1) gets two replay
 * records: "failed", then "completed".  Prints each request id on stdout,
 * one a line.  --hold keeps the writer open (so DIR stays locked) after
 * printing "ready", until standard input closes.
 * Exit status: 0 ok, 1 a failure (on stderr), 2 usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "dlq/dlq.h"

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: dlq_writer DIR COUNT [--segment BYTES] [--hold]\n");
		return 2;
	}
	sl_dlq_opts o;
	sl_dlq_opts_default(&o);
	o.dir = argv[1];
	o.max_bytes = 0;
	int count = atoi(argv[2]), hold = 0;
	for (int i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "--hold"))
			hold = 1;
		else if (!strcmp(argv[i], "--segment") && i + 1 < argc)
			o.segment_bytes = strtoull(argv[++i], NULL, 10);
		else {
			fprintf(stderr, "dlq_writer: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	sl_dlq *q;
	char err[256];
	int rc = sl_dlq_open(&o, &q, err, sizeof err);
	if (rc != SL_OK) {
		fprintf(stderr, "dlq_writer: %s\n", err);
		return 1;
	}
	static const char *const outcomes[] = {"failed", "shed", "expired"};
	char id1[32] = "";
	for (int i = 0; i < count; i++) {
		char detail[32], body[128];
		snprintf(detail, sizeof detail, "record %d", i);
		int bl = snprintf(body, sizeof body,
		                  "{\"model\":\"echo\",\"messages\":[{\"role\":\"user\",\"content\":\"n%d\"}]}",
		                  i);
		sl_dlq_record r = {0};
		r.outcome = outcomes[i % 3];
		r.stage = "inference";
		r.reason = i % 3 == 1 ? NULL : "upstream_error";
		r.detail = detail;
		r.model = "echo";
		r.pipeline = "default";
		r.tenant = "t1";
		r.endpoint = "/v1/chat/completions";
		r.http_status = i % 3 == 1 ? 429 : 502;
		r.body = i == 0 ? "\xFF\x00\x80" "bin" : body;
		r.body_len = i == 0 ? 6 : (size_t)bl;
		if ((rc = sl_dlq_append(q, &r)) != SL_OK) {
			fprintf(stderr, "dlq_writer: append: %s\n", sl_strerror(rc));
			return 1;
		}
		if (i == 1)
			memcpy(id1, r.id, sizeof id1);
		printf("%s\n", r.id);
	}
	static const char *const again[] = {"failed", "completed"};
	for (int k = 0; id1[0] && k < 2; k++) {
		sl_dlq_record r = {0};
		r.kind = "replay";
		r.replay_of = id1;
		r.outcome = again[k];
		r.model = "echo";
		if ((rc = sl_dlq_append(q, &r)) != SL_OK) {
			fprintf(stderr, "dlq_writer: append: %s\n", sl_strerror(rc));
			return 1;
		}
	}
	fflush(stdout);
	if (hold) {
		printf("ready\n");
		fflush(stdout);
		char c;
		while (read(0, &c, 1) > 0)
			;
	}
	sl_dlq_close(q);
	return 0;
}
