/* test_dlq.c - the dead-letter queue (src/dlq): round trip of every field
 * (binary bodies included), ids, rotation and the cap, torn-tail repair,
 * corruption, the writer lock, concurrent appends, purge, and a crash test
 * (a child killed with SIGKILL mid-stream loses no acknowledged record).
 * Each test works in its own mkdtemp directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "dlq/dlq.h"

/* ------------------------------------------------------------ helpers */

static int rm_one(const char *p, const struct stat *sb, int type, struct FTW *f)
{
	return remove(p);
}

static int setup_dir(void **state)
{
	char *d = strdup("/tmp/sl-test-dlq-XXXXXX");
	if (!d || !mkdtemp(d))
		return -1;
	*state = d;
	return 0;
}

static int teardown_dir(void **state)
{
	char *d = *state;
	nftw(d, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(d);
	return 0;
}

/* p = dir/name (cap bytes). */
static void join(char *p, size_t cap, const char *dir, const char *name)
{
	int n = snprintf(p, cap, "%s/%s", dir, name);
	assert_true(n > 0 && (size_t)n < cap);
}

static sl_dlq *open_q(const char *dir, sl_dlq_fsync fs, uint64_t seg, uint64_t max)
{
	sl_dlq_opts o;
	sl_dlq_opts_default(&o);
	o.dir = dir;
	o.fsync = fs;
	o.segment_bytes = seg;
	o.max_bytes = max;
	sl_dlq *q = NULL;
	char err[256] = "";
	int rc = sl_dlq_open(&o, &q, err, sizeof err);
	if (rc != SL_OK)
		fprintf(stderr, "open %s: %s (%s)\n", dir, sl_strerror(rc), err);
	assert_int_equal(rc, SL_OK);
	return q;
}

/* Appends a small request record whose detail is "<tag> <i>". */
static void append_n(sl_dlq *q, const char *tag, int i, size_t pad, char *id_out)
{
	char detail[64];
	snprintf(detail, sizeof detail, "%s %d", tag, i);
	char *body = malloc(pad + 1);
	assert_non_null(body);
	memset(body, 'x', pad);
	body[pad] = '\0';
	sl_dlq_record r = {0};
	r.outcome = i % 3 == 0 ? "failed" : i % 3 == 1 ? "shed" : "expired";
	r.stage = "inference";
	r.detail = detail;
	r.model = "echo";
	r.body = body;
	r.body_len = pad;
	assert_int_equal(sl_dlq_append(q, &r), SL_OK);
	if (id_out)
		memcpy(id_out, r.id, sizeof r.id);
	free(body);
}

typedef struct collect {
	size_t n, cap;
	char (*ids)[32];
	char **details;
	char **kinds;
} collect;

static int collect_cb(void *user, const sl_dlq_record *r)
{
	collect *c = user;
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 64;
		c->ids = realloc(c->ids, c->cap * sizeof *c->ids);
		c->details = realloc(c->details, c->cap * sizeof *c->details);
		c->kinds = realloc(c->kinds, c->cap * sizeof *c->kinds);
	}
	memcpy(c->ids[c->n], r->id, 32);
	c->details[c->n] = strdup(r->detail ? r->detail : "");
	c->kinds[c->n] = strdup(r->kind);
	c->n++;
	return 0;
}

static void collect_free(collect *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->details[i]);
		free(c->kinds[i]);
	}
	free(c->ids);
	free(c->details);
	free(c->kinds);
	memset(c, 0, sizeof *c);
}

static void scan_all(const char *dir, collect *c, sl_dlq_scan_stats *st)
{
	memset(c, 0, sizeof *c);
	assert_int_equal(sl_dlq_scan(dir, collect_cb, c, st), SL_OK);
	assert_int_equal(st->records, c->n);
}

/* The segment files of dir, sorted (names only, caller frees). */
static int segments(const char *dir, char names[][64], int max)
{
	int n = 0;
	for (uint64_t seq = 1; seq < 100000 && n < max; seq++) {
		char p[4096], name[64];
		snprintf(name, sizeof name, "dlq-%020" PRIu64 ".log", seq);
		join(p, sizeof p, dir, name);
		if (access(p, F_OK) == 0)
			snprintf(names[n++], 64, "dlq-%020" PRIu64 ".log", seq);
	}
	return n;
}

static off_t fsize(const char *dir, const char *name)
{
	char p[4096];
	struct stat sb;
	join(p, sizeof p, dir, name);
	assert_int_equal(stat(p, &sb), 0);
	return sb.st_size;
}

static unsigned char *read_file(const char *dir, const char *name, size_t *len)
{
	char p[4096];
	join(p, sizeof p, dir, name);
	FILE *f = fopen(p, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *b = malloc((size_t)n + 1);
	assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return b;
}

static void write_file(const char *dir, const char *name, const unsigned char *b, size_t n)
{
	char p[4096];
	join(p, sizeof p, dir, name);
	FILE *f = fopen(p, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(b, 1, n, f), n);
	fclose(f);
}

/* Offsets of the frames in a segment (the magic never occurs in payloads). */
static int frame_offsets(const unsigned char *b, size_t n, size_t *off, int max)
{
	int k = 0;
	for (size_t i = 0; i + 4 <= n && k < max; i++)
		if (memcmp(b + i, "\xF7" "DQ1", 4) == 0)
			off[k++] = i;
	return k;
}

/* ------------------------------------------------------------ tests */

static void crc32c_known_values(void **state)
{
	assert_int_equal(sl__dlq_crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(sl__dlq_crc32c(0, "", 0), 0);
	/* Any split gives the same value, and alignment does not matter. */
	char buf[301];
	for (int i = 0; i < 301; i++)
		buf[i] = (char)(i * 7 + 3);
	uint32_t whole = sl__dlq_crc32c(0, buf, 301);
	for (size_t cut = 0; cut <= 301; cut += 13)
		assert_int_equal(sl__dlq_crc32c(sl__dlq_crc32c(0, buf, cut), buf + cut, 301 - cut),
		                 whole);
}

static void round_trip_all_fields(void **state)
{
	const char *dir = *state;
	sl_dlq *q = open_q(dir, SL_DLQ_FSYNC_ALWAYS, 0, 0);
	assert_string_equal(sl_dlq_dir(q), dir);

	unsigned char bin[256];
	for (int i = 0; i < 256; i++)
		bin[i] = (unsigned char)(255 - i);
	sl_dlq_record a = {0};
	a.outcome = "failed";
	a.stage = "inference";
	a.reason = "upstream_error";
	a.detail = "HTTP 502 from backend \"gpu-1\"\n";
	a.model = "gpt-x";
	a.pipeline = "default";
	a.tenant = "acme";
	a.backend = "gpu-1";
	a.request_id = "req-42";
	a.session = "s-7";
	a.endpoint = "/v1/chat/completions";
	a.http_status = 502;
	a.t_submit_ms = 1700000000123ull;
	a.t_end_ms = 1700000000456ull;
	a.body = (const char *)bin;
	a.body_len = sizeof bin;
	assert_int_equal(sl_dlq_append(q, &a), SL_OK);
	assert_string_equal(a.kind, "request");
	assert_true(sl__dlq_id_valid(a.id));
	assert_true(a.time_ms > 1600000000000ull);

	/* Valid UTF-8 with a NUL byte and multi-byte characters. */
	static const char text[] = "{\"prompt\":\"h\xC3\xA9llo \xE2\x82\xAC\"}\0tail";
	sl_dlq_record b = {0};
	b.outcome = "shed";
	b.body = text;
	b.body_len = sizeof text - 1;
	assert_int_equal(sl_dlq_append(q, &b), SL_OK);

	sl_dlq_record c = {0}; /* only the required field */
	c.outcome = "expired";
	c.detail = "bad \xFF byte";
	assert_int_equal(sl_dlq_append(q, &c), SL_OK);

	sl_dlq_record r = {0};
	r.kind = "replay";
	r.replay_of = a.id;
	r.outcome = "completed";
	r.http_status = 200;
	assert_int_equal(sl_dlq_append(q, &r), SL_OK);
	sl_dlq_stats st;
	sl_dlq_stats_get(q, &st);
	assert_int_equal(st.records, 4);
	assert_int_equal(st.errors, 0);
	sl_dlq_close(q);

	sl_dlq_record *f = NULL;
	assert_int_equal(sl_dlq_find(dir, a.id, &f), SL_OK);
	assert_string_equal(f->id, a.id);
	assert_int_equal(f->time_ms, a.time_ms);
	assert_string_equal(f->kind, "request");
	assert_null(f->replay_of);
	assert_string_equal(f->outcome, "failed");
	assert_string_equal(f->stage, "inference");
	assert_string_equal(f->reason, "upstream_error");
	assert_string_equal(f->detail, a.detail);
	assert_string_equal(f->model, "gpt-x");
	assert_string_equal(f->pipeline, "default");
	assert_string_equal(f->tenant, "acme");
	assert_string_equal(f->backend, "gpu-1");
	assert_string_equal(f->request_id, "req-42");
	assert_string_equal(f->session, "s-7");
	assert_string_equal(f->endpoint, "/v1/chat/completions");
	assert_int_equal(f->http_status, 502);
	assert_int_equal(f->t_submit_ms, a.t_submit_ms);
	assert_int_equal(f->t_end_ms, a.t_end_ms);
	assert_int_equal(f->body_len, sizeof bin);
	assert_memory_equal(f->body, bin, sizeof bin);
	json_t *j = sl_dlq_record_json(f);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "body_encoding")), "base64");
	assert_int_equal(json_integer_value(json_object_get(j, "body_bytes")), 256);
	json_decref(j);
	sl_dlq_record_free(f);

	assert_int_equal(sl_dlq_find(dir, b.id, &f), SL_OK);
	assert_int_equal(f->body_len, sizeof text - 1);
	assert_memory_equal(f->body, text, sizeof text - 1);
	assert_null(f->stage);
	assert_null(f->model);
	assert_int_equal(f->http_status, 0);
	j = sl_dlq_record_json(f);
	assert_string_equal(json_string_value(json_object_get(j, "body_encoding")), "utf8");
	assert_true(json_is_null(json_object_get(j, "stage")));
	json_decref(j);
	sl_dlq_record_free(f);

	assert_int_equal(sl_dlq_find(dir, c.id, &f), SL_OK);
	assert_null(f->body);
	assert_int_equal(f->body_len, 0);
	assert_string_equal(f->detail, "bad \xEF\xBF\xBD byte"); /* U+FFFD */
	sl_dlq_record_free(f);

	/* find: request records only; unknown and malformed ids. */
	assert_int_equal(sl_dlq_find(dir, r.id, &f), SL_ENOTFOUND);
	assert_int_equal(sl_dlq_find(dir, "dlq-0000000000000000", &f), SL_ENOTFOUND);
	assert_int_equal(sl_dlq_find(dir, "nonsense", &f), SL_ENOTFOUND);
	assert_null(f);

	collect col;
	sl_dlq_scan_stats ss;
	scan_all(dir, &col, &ss);
	assert_int_equal(col.n, 4);
	assert_int_equal(ss.corrupt, 0);
	assert_int_equal(ss.segments, 1);
	assert_string_equal(col.ids[0], a.id);
	assert_string_equal(col.ids[3], r.id);
	assert_string_equal(col.kinds[3], "replay");
	collect_free(&col);
}

/* The hand-written payload is the object sl_dlq_record_json() builds. */
static void payload_matches_json(void **state)
{
	unsigned char bin[300];
	for (int i = 0; i < 300; i++)
		bin[i] = (unsigned char)(i * 37);
	static const char text[] = "ctl \x01\x1f \"q\" \\ / \xE2\x80\xA8 \0nul";
	sl_dlq_record rs[4];
	rs[0] = (sl_dlq_record){.id = "dlq-00000000000000ab", .time_ms = 1795761062123ull,
	                        .outcome = "failed", .stage = "a\tb\nc", .detail = "bad \xC0\xAF \xED\xA0\x80 x\xF4",
	                        .model = "\xE6\xA8\xA1\xE5\x9E\x8B", .http_status = -1,
	                        .t_submit_ms = UINT64_MAX, .t_end_ms = 5,
	                        .body = (const char *)bin, .body_len = sizeof bin};
	rs[1] = (sl_dlq_record){.id = "dlq-00000000000000ac", .kind = "replay", .replay_of = "dlq-00000000000000ab",
	                        .outcome = "completed", .body = text, .body_len = sizeof text - 1};
	rs[2] = (sl_dlq_record){.outcome = "shed", .body = "", .body_len = 0};
	rs[3] = (sl_dlq_record){.outcome = "expired", .body = (const char *)bin, .body_len = 1};
	for (int i = 0; i < 4; i++) {
		char *p;
		size_t n;
		assert_int_equal(sl__dlq_payload(&rs[i], &p, &n), SL_OK);
		assert_int_equal(strlen(p), n); /* compact, NULs escaped */
		json_error_t je;
		json_t *a = json_loadb(p, n, JSON_ALLOW_NUL, &je);
		if (!a)
			fprintf(stderr, "payload %d: %s: %s\n", i, je.text, p);
		assert_non_null(a);
		json_t *b = sl_dlq_record_json(&rs[i]);
		assert_non_null(b);
		if (!json_equal(a, b)) {
			char *x = json_dumps(b, JSON_COMPACT);
			fprintf(stderr, "hand: %s\njson: %s\n", p, x);
			free(x);
		}
		assert_true(json_equal(a, b));
		/* and the keys in the same order */
		char *x = json_dumps(a, JSON_COMPACT | JSON_PRESERVE_ORDER);
		char *y = json_dumps(b, JSON_COMPACT | JSON_PRESERVE_ORDER);
		assert_string_equal(x, y);
		free(x);
		free(y);
		json_decref(a);
		json_decref(b);
		free(p);
	}
}

static void bad_input(void **state)
{
	const char *dir = *state;
	sl_dlq_opts o;
	sl_dlq_opts_default(&o);
	assert_int_equal(o.fsync, SL_DLQ_FSYNC_INTERVAL);
	assert_int_equal(o.fsync_interval_ms, 200);
	assert_int_equal(o.segment_bytes, 16u << 20);
	assert_int_equal(o.max_bytes, 256u << 20);
	sl_dlq *q = NULL;
	char err[256];
	assert_int_equal(sl_dlq_open(&o, &q, err, sizeof err), SL_EINVAL); /* no dir */
	o.dir = dir;
	o.segment_bytes = 100;
	assert_int_equal(sl_dlq_open(&o, &q, err, sizeof err), SL_EINVAL);
	assert_non_null(strstr(err, "segment_bytes"));
	o.segment_bytes = 1 << 20;
	o.max_bytes = 1 << 19;
	assert_int_equal(sl_dlq_open(&o, &q, err, sizeof err), SL_EINVAL);
	o.max_bytes = 0;
	o.fsync = (sl_dlq_fsync)7;
	assert_int_equal(sl_dlq_open(&o, &q, err, sizeof err), SL_EINVAL);
	assert_null(q);
	/* a file where the directory should be */
	char path[4096];
	join(path, sizeof path, dir, "file");
	write_file(dir, "file", (const unsigned char *)"x", 1);
	o.fsync = SL_DLQ_FSYNC_NEVER;
	o.dir = path;
	assert_int_equal(sl_dlq_open(&o, &q, err, sizeof err), SL_ESYS);
	sl_dlq_close(NULL);

	/* nested directories are created, mode 0700 */
	join(path, sizeof path, dir, "a/b/dlq");
	o.dir = path;
	assert_int_equal(sl_dlq_open(&o, &q, err, sizeof err), SL_OK);
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);

	sl_dlq_record r = {0};
	assert_int_equal(sl_dlq_append(q, &r), SL_EINVAL); /* no outcome */
	r.outcome = "failed";
	r.kind = "replay";
	assert_int_equal(sl_dlq_append(q, &r), SL_EINVAL); /* no replay_of */
	r.kind = "other";
	assert_int_equal(sl_dlq_append(q, &r), SL_EINVAL);
	r.kind = NULL;
	r.body_len = 9u << 20;
	r.body = calloc(1, r.body_len);
	assert_int_equal(sl_dlq_append(q, &r), SL_ETOOBIG);
	/* 7 MiB of bytes that are not UTF-8: base64 takes it over 8 MiB. */
	r.body_len = 7u << 20;
	memset((char *)r.body, 0xFF, r.body_len);
	assert_int_equal(sl_dlq_append(q, &r), SL_ETOOBIG);
	/* 1 MiB of them fits. */
	r.body_len = 1u << 20;
	assert_int_equal(sl_dlq_append(q, &r), SL_OK);
	free((char *)r.body);
	sl_dlq_stats st;
	sl_dlq_stats_get(q, &st);
	assert_int_equal(st.records, 1);
	assert_int_equal(st.errors, 0);
	sl_dlq_close(q);

	sl_dlq_scan_stats ss;
	join(path, sizeof path, dir, "missing");
	assert_int_equal(sl_dlq_scan(path, NULL, NULL, &ss), SL_ENOTFOUND);
	uint64_t removed;
	int active;
	assert_int_equal(sl_dlq_purge(path, &removed, &active), SL_ENOTFOUND);
	sl_dlq_record *f;
	assert_int_equal(sl_dlq_find(path, "dlq-0000000000000001", &f), SL_ENOTFOUND);
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void ids_unique(void **state)
{
	const char *dir = *state;
	enum { N = 10000 };
	char(*ids)[32] = malloc(N * sizeof *ids);
	sl_dlq *q = open_q(dir, SL_DLQ_FSYNC_NEVER, 0, 0);
	for (int i = 0; i < N; i++) {
		append_n(q, "u", i, 0, ids[i]);
		assert_true(sl__dlq_id_valid(ids[i]));
		if (i)
			assert_true(strcmp(ids[i - 1], ids[i]) < 0); /* increasing */
	}
	sl_dlq_close(q);
	/* A new writer continues above the ids already used. */
	q = open_q(dir, SL_DLQ_FSYNC_NEVER, 0, 0);
	char next[32];
	append_n(q, "u", N, 0, next);
	assert_true(strcmp(ids[N - 1], next) < 0);
	sl_dlq_close(q);
	qsort(ids, N, sizeof *ids, cmp_id);
	for (int i = 1; i < N; i++)
		assert_true(strcmp(ids[i - 1], ids[i]) != 0);
	free(ids);
}

static void rotation_and_cap(void **state)
{
	const char *dir = *state;
	enum { N = 200 };
	sl_dlq *q = open_q(dir, SL_DLQ_FSYNC_INTERVAL, 4096, 16384);
	for (int i = 0; i < N; i++)
		append_n(q, "r", i, 200, NULL);
	/* A record larger than a segment gets one alone. */
	append_n(q, "big", 0, 10000, NULL);
	append_n(q, "r", N, 200, NULL);
	sl_dlq_stats st;
	sl_dlq_stats_get(q, &st);
	assert_int_equal(st.records, N + 2);
	assert_true(st.rotations >= 10);
	assert_true(st.dropped_segments >= 5);
	assert_int_equal(st.errors, 0);
	sl_dlq_close(q);

	char names[256][64];
	int ns = segments(dir, names, 256);
	assert_true(ns >= 2);
	assert_string_not_equal(names[0], "dlq-00000000000000000001.log"); /* oldest gone */
	off_t total = 0;
	for (int i = 0; i < ns; i++) {
		off_t s = fsize(dir, names[i]);
		total += s;
		if (s > 4096) /* only the big record's segment */
			assert_true(s > 10000 && s < 11000);
	}
	assert_true(total <= 16384 + 11000);

	/* What is left is the newest records, in order, oldest first. */
	collect c;
	sl_dlq_scan_stats ss;
	scan_all(dir, &c, &ss);
	assert_int_equal(ss.corrupt, 0);
	assert_int_equal(ss.segments, ns);
	assert_true(c.n > 3 && c.n < N); /* 16 KiB, the big one included */
	assert_string_equal(c.details[c.n - 1], "r 200");
	assert_string_equal(c.details[c.n - 2], "big 0");
	int first;
	assert_int_equal(sscanf(c.details[0], "r %d", &first), 1);
	for (size_t i = 0; i + 2 < c.n; i++) {
		char want[32];
		snprintf(want, sizeof want, "r %d", first + (int)i);
		assert_string_equal(c.details[i], want);
	}
	collect_free(&c);
}

static void torn_tail_repair(void **state)
{
	const char *dir = *state;
	sl_dlq *q = open_q(dir, SL_DLQ_FSYNC_NEVER, 0, 0);
	for (int i = 0; i < 10; i++)
		append_n(q, "t", i, 100, NULL);
	sl_dlq_close(q);
	const char *seg = "dlq-00000000000000000001.log";
	size_t n;
	unsigned char *b = read_file(dir, seg, &n);
	size_t off[16];
	assert_int_equal(frame_offsets(b, n, off, 16), 10);

	/* Cut mid-payload of the last record. */
	write_file(dir, seg, b, n - 7);
	collect c;
	sl_dlq_scan_stats ss;
	scan_all(dir, &c, &ss);
	assert_int_equal(c.n, 9);
	assert_int_equal(ss.corrupt, 0); /* a torn tail is not corruption */
	collect_free(&c);

	/* Cut inside the last header (magic and half the length). */
	write_file(dir, seg, b, off[9] + 6);
	scan_all(dir, &c, &ss);
	assert_int_equal(c.n, 9);
	assert_int_equal(ss.corrupt, 0);
	collect_free(&c);

	/* Cut inside the magic. */
	write_file(dir, seg, b, off[9] + 2);
	scan_all(dir, &c, &ss);
	assert_int_equal(c.n, 9);
	assert_int_equal(ss.corrupt, 0);
	collect_free(&c);

	/* The writer cuts the tail off and appends after the last record. */
	q = open_q(dir, SL_DLQ_FSYNC_NEVER, 0, 0);
	assert_int_equal(fsize(dir, seg), (off_t)off[9]);
	append_n(q, "t", 10, 100, NULL);
	sl_dlq_close(q);
	scan_all(dir, &c, &ss);
	assert_int_equal(c.n, 10);
	assert_int_equal(ss.corrupt, 0);
	assert_string_equal(c.details[8], "t 8");
	assert_string_equal(c.details[9], "t 10");
	collect_free(&c);
	free(b);
}

static void corruption_in_the_middle(void **state)
{
	const char *dir = *state;
	sl_dlq *q = open_q(dir, SL_DLQ_FSYNC_NEVER, 0, 0);
	for (int i = 0; i < 10; i++)
		append_n(q, "c", i, 100, NULL);
	sl_dlq_close(q);
	const char *seg = "dlq-00000000000000000001.log";
	size_t n;
	unsigned char *b = read_file(dir, seg, &n);
	size_t off[16];
	assert_int_equal(frame_offsets(b, n, off, 16), 10);

	/* One byte of record 5's payload flipped: CRC mismatch. */
	b[off[5] + 12 + 30] ^= 0x20;
	write_file(dir, seg, b, n);
	collect c;
	sl_dlq_scan_stats ss;
	scan_all(dir, &c, &ss);
	assert_int_equal(c.n, 9);
	assert_int_equal(ss.corrupt, 1);
	assert_string_equal(c.details[4], "c 4");
	assert_string_equal(c.details[5], "c 6");
	collect_free(&c);

	/* Record 2's length now points past the end of the file: not a torn
	 * tail, since valid records follow. */
	b[off[2] + 6] = 0x20; /* + 2 MiB */
	/* Record 8's magic damaged. */
	b[off[8] + 1] = 'X';
	write_file(dir, seg, b, n);
	scan_all(dir, &c, &ss);
	assert_int_equal(c.n, 7);
	assert_int_equal(ss.corrupt, 3);
	assert_string_equal(c.details[c.n - 1], "c 9");
	collect_free(&c);

	/* A writer keeps the valid records after the damage. */
	q = open_q(dir, SL_DLQ_FSYNC_NEVER, 0, 0);
	assert_int_equal(fsize(dir, seg), (off_t)n);
	append_n(q, "c", 10, 100, NULL);
	sl_dlq_close(q);
	scan_all(dir, &c, &ss);
	assert_int_equal(c.n, 8);
	assert_int_equal(ss.corrupt, 3);
	assert_string_equal(c.details[c.n - 1], "c 10");
	collect_free(&c);

	/* Garbage between records, and a payload that is valid JSON with a
	 * right CRC but not a record. */
	free(b);
	b = read_file(dir, seg, &n);
	unsigned char *g = malloc(n + 200);
	memcpy(g, b, n);
	memset(g + n, 'Z', 50);
	const char *js = "{\"id\":\"nope\"}";
	uint32_t jl = (uint32_t)strlen(js), crc = sl__dlq_crc32c(0, js, jl);
	unsigned char *h = g + n + 50;
	memcpy(h, "\xF7" "DQ1", 4);
	h[4] = (unsigned char)jl, h[5] = h[6] = h[7] = 0;
	h[8] = (unsigned char)crc, h[9] = (unsigned char)(crc >> 8);
	h[10] = (unsigned char)(crc >> 16), h[11] = (unsigned char)(crc >> 24);
	memcpy(h + 12, js, jl);
	size_t gl = n + 50 + 12 + jl;
	write_file(dir, seg, g, gl);
	q = open_q(dir, SL_DLQ_FSYNC_NEVER, 0, 0);
	assert_int_equal(fsize(dir, seg), (off_t)n); /* nothing valid after n: cut */
	append_n(q, "c", 11, 100, NULL);
	sl_dlq_close(q);
	scan_all(dir, &c, &ss);
	assert_int_equal(c.n, 9);
	assert_string_equal(c.details[c.n - 1], "c 11");
	collect_free(&c);
	/* The same bytes read from memory. */
	sl_dlq_scan_stats ms = {0};
	size_t ve;
	assert_int_equal(sl__dlq_scan_buf(g, gl, NULL, NULL, &ms, &ve), SL_OK);
	assert_int_equal(ms.records, 8);
	assert_int_equal(ms.corrupt, 4);
	assert_int_equal(ve, n);
	free(g);
	free(b);
}

static void second_writer_refused(void **state)
{
	const char *dir = *state;
	sl_dlq *a = open_q(dir, SL_DLQ_FSYNC_INTERVAL, 0, 0);
	sl_dlq_opts o;
	sl_dlq_opts_default(&o);
	o.dir = dir;
	sl_dlq *b = NULL;
	char err[256] = "";
	assert_int_equal(sl_dlq_open(&o, &b, err, sizeof err), SL_ESTATE);
	assert_null(b);
	char want[64];
	snprintf(want, sizeof want, "pid %ld", (long)getpid());
	assert_non_null(strstr(err, want));
	sl_dlq_close(a);
	assert_int_equal(sl_dlq_open(&o, &b, err, sizeof err), SL_OK);
	sl_dlq_close(b);
}

typedef struct thr_arg {
	sl_dlq *q;
	int t, n;
} thr_arg;

static void *appender(void *p)
{
	thr_arg *a = p;
	for (int i = 0; i < a->n; i++) {
		char tag[16];
		snprintf(tag, sizeof tag, "T%d", a->t);
		append_n(a->q, tag, i, (size_t)(i % 50) * 10, NULL);
	}
	return NULL;
}

static void concurrent_appends(void **state)
{
	const char *dir = *state;
	enum { T = 4, N = 2500 };
	sl_dlq_opts o;
	sl_dlq_opts_default(&o);
	o.dir = dir;
	o.fsync_interval_ms = 5;
	o.segment_bytes = 64 << 10;
	o.max_bytes = 0;
	sl_dlq *q;
	char err[256];
	assert_int_equal(sl_dlq_open(&o, &q, err, sizeof err), SL_OK);
	pthread_t th[T];
	thr_arg args[T];
	for (int t = 0; t < T; t++) {
		args[t] = (thr_arg){q, t, N};
		assert_int_equal(pthread_create(&th[t], NULL, appender, &args[t]), 0);
	}
	for (int t = 0; t < T; t++)
		pthread_join(th[t], NULL);
	sl_dlq_stats st;
	sl_dlq_stats_get(q, &st);
	assert_int_equal(st.records, T * N);
	assert_int_equal(st.errors, 0);
	assert_true(st.rotations > 0);
	sl_dlq_close(q);

	collect c;
	sl_dlq_scan_stats ss;
	scan_all(dir, &c, &ss);
	assert_int_equal(c.n, T * N);
	assert_int_equal(ss.corrupt, 0);
	static unsigned char seen[T][N];
	memset(seen, 0, sizeof seen);
	int last[T] = {-1, -1, -1, -1};
	for (size_t i = 0; i < c.n; i++) {
		int t, k;
		assert_int_equal(sscanf(c.details[i], "T%d %d", &t, &k), 2);
		assert_true(t >= 0 && t < T && k >= 0 && k < N);
		assert_int_equal(seen[t][k], 0);
		seen[t][k] = 1;
		assert_true(k > last[t]); /* each thread's records in its order */
		last[t] = k;
	}
	qsort(c.ids, c.n, sizeof *c.ids, cmp_id);
	for (size_t i = 1; i < c.n; i++)
		assert_true(strcmp(c.ids[i - 1], c.ids[i]) != 0);
	collect_free(&c);
}

static void purge(void **state)
{
	const char *dir = *state;
	sl_dlq *q = open_q(dir, SL_DLQ_FSYNC_NEVER, 4096, 0);
	for (int i = 0; i < 50; i++)
		append_n(q, "p", i, 300, NULL);
	sl_dlq_close(q);
	char names[64][64];
	assert_true(segments(dir, names, 64) > 3);
	uint64_t removed = 0;
	int active = -1;
	assert_int_equal(sl_dlq_purge(dir, &removed, &active), SL_OK);
	assert_int_equal(removed, 50);
	assert_int_equal(active, 0);
	assert_int_equal(segments(dir, names, 64), 0);
	collect c;
	sl_dlq_scan_stats ss;
	scan_all(dir, &c, &ss);
	assert_int_equal(c.n, 0);
	collect_free(&c);

	/* With a writer: sealed segments go, the active one stays. */
	q = open_q(dir, SL_DLQ_FSYNC_NEVER, 4096, 0);
	for (int i = 0; i < 50; i++)
		append_n(q, "p", i, 300, NULL);
	assert_int_equal(sl_dlq_purge(dir, &removed, &active), SL_OK);
	assert_int_equal(active, 1);
	assert_true(removed > 30 && removed < 50);
	assert_int_equal(segments(dir, names, 64), 1);
	scan_all(dir, &c, &ss);
	assert_int_equal(c.n, 50 - removed);
	collect_free(&c);
	/* The writer goes on, rotating past the purge. */
	for (int i = 50; i < 100; i++)
		append_n(q, "p", i, 300, NULL);
	sl_dlq_close(q);
	scan_all(dir, &c, &ss);
	assert_int_equal(c.n, 100 - removed);
	assert_int_equal(ss.corrupt, 0);
	assert_string_equal(c.details[c.n - 1], "p 99");
	collect_free(&c);
}

/* A child appends records (some large) and reports each acknowledged id on
 * a pipe; the parent SIGKILLs it mid-stream and finds every reported id. */
static void crash_loses_no_acknowledged_record(void **state)
{
	const char *dir = *state;
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		sl_dlq_opts o;
		sl_dlq_opts_default(&o);
		o.dir = dir;
		o.fsync = SL_DLQ_FSYNC_NEVER; /* kill -9 needs no fsync */
		o.segment_bytes = 256 << 10;
		o.max_bytes = 0;
		sl_dlq *q;
		if (sl_dlq_open(&o, &q, NULL, 0) != SL_OK)
			_exit(3);
		size_t big = 300 << 10;
		char *body = malloc(big);
		if (!body)
			_exit(4);
		memset(body, 'b', big);
		for (int i = 0; i < 1000000; i++) {
			sl_dlq_record r = {0};
			r.outcome = "failed";
			r.body = body;
			r.body_len = i % 5 == 0 ? big - (size_t)i : (size_t)i % 1000;
			if (sl_dlq_append(q, &r) != SL_OK)
				_exit(5);
			if (write(p[1], r.id, 20) != 20)
				_exit(6);
		}
		_exit(7);
	}
	close(p[1]);
	size_t cap = 4096, n = 0;
	char(*ids)[21] = malloc(cap * sizeof *ids);
	int killed = 0;
	for (;;) {
		char id[20];
		size_t got = 0;
		while (got < 20) {
			ssize_t k = read(p[0], id + got, 20 - got);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0)
				break;
			got += (size_t)k;
		}
		if (got < 20)
			break; /* the child is gone */
		if (n == cap)
			ids = realloc(ids, (cap *= 2) * sizeof *ids);
		memcpy(ids[n], id, 20);
		ids[n][20] = '\0';
		n++;
		if (n == 400 && !killed) {
			kill(pid, SIGKILL);
			killed = 1;
		}
	}
	close(p[0]);
	int ws;
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	assert_true(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
	assert_true(n >= 400);

	for (int round = 0; round < 2; round++) {
		collect c;
		sl_dlq_scan_stats ss;
		scan_all(dir, &c, &ss);
		assert_int_equal(ss.corrupt, 0);
		assert_true(c.n >= n);
		assert_true(c.n <= n + 1); /* at most the one written, not reported */
		qsort(c.ids, c.n, sizeof *c.ids, cmp_id);
		for (size_t i = 0; i < n; i++)
			assert_non_null(bsearch(ids[i], c.ids, c.n, sizeof *c.ids, cmp_id));
		collect_free(&c);
		/* The lock died with the child; a new writer repairs and goes on. */
		sl_dlq *q = open_q(dir, SL_DLQ_FSYNC_NEVER, 256 << 10, 0);
		append_n(q, "after", round, 10, NULL);
		sl_dlq_close(q);
	}
	free(ids);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(crc32c_known_values),
		cmocka_unit_test(payload_matches_json),
		cmocka_unit_test_setup_teardown(round_trip_all_fields, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(bad_input, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(ids_unique, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(rotation_and_cap, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(torn_tail_repair, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(corruption_in_the_middle, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(second_writer_refused, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(concurrent_appends, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(purge, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(crash_loses_no_acknowledged_record, setup_dir,
		                                teardown_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
