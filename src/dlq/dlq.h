/*
 * dlq.h - the dead-letter queue: a durable, append-only log on disk of every
 * request that ended failed, shed or expired (and of the outcomes of their
 * replays), with its full payload.
 *
 * Layout: a directory DIR holding DIR/lock (the writer's flock; it contains
 * the writer's pid) and segments DIR/dlq-<20-digit sequence>.log.  The
 * highest sequence is the active segment; the others are sealed.  A segment
 * is a series of frames:
 *
 *   magic "\xF7DQ1" (4 bytes) | payload length (4, LE) | CRC32C of the
 *   payload (4, LE) | payload: the record as compact JSON (sl_dlq_record_json)
 *
 * The magic's first byte never occurs in UTF-8, hence never in a payload, so
 * a reader that meets a bad frame resynchronises on the next magic.
 * docs/internals/dlq.md describes the format and the guarantees.
 *
 * Guarantees: a record is "acknowledged" once sl_dlq_append() returned
 * SL_OK; it was then written with one write(2) of the whole frame, so it
 * survives the process being killed (kill -9) whatever the fsync policy.
 * Surviving a power loss needs the fsync: ALWAYS (every acknowledged record),
 * INTERVAL (records older than fsync_interval_ms), NEVER (whatever the
 * kernel wrote back).
 *
 * Threading: one writer process per DIR (enforced by the flock); within it,
 * sl_dlq_append() and sl_dlq_stats_get() may be called from any thread (one
 * internal mutex, a leaf lock: nothing else is locked while it is held).
 * With FSYNC_INTERVAL a background thread fdatasync()s the active segment.
 * The reading functions take no lock and work on a DIR that a writer has
 * open, or not; they may be called from any thread.
 */
#ifndef SL_DLQ_DLQ_H
#define SL_DLQ_DLQ_H
#include <stddef.h>
#include <stdint.h>
#include "sluice/sluice.h"

#define SL_DLQ_MAX_RECORD (8u << 20)             /* payload bytes; more: SL_ETOOBIG */
#define SL_DLQ_DEFAULT_FSYNC SL_DLQ_FSYNC_INTERVAL
#define SL_DLQ_DEFAULT_FSYNC_INTERVAL_MS 200u
#define SL_DLQ_DEFAULT_SEGMENT_BYTES (16ull << 20)
#define SL_DLQ_DEFAULT_MAX_BYTES (256ull << 20)
#define SL_DLQ_MIN_SEGMENT_BYTES 1024ull         /* smaller: SL_EINVAL */

typedef enum sl_dlq_fsync {
	SL_DLQ_FSYNC_NEVER = 0,    /* leave write-back to the kernel */
	SL_DLQ_FSYNC_INTERVAL = 1, /* a background thread, every fsync_interval_ms */
	SL_DLQ_FSYNC_ALWAYS = 2    /* before sl_dlq_append() returns */
} sl_dlq_fsync;

typedef struct sl_dlq_opts {
	const char *dir;            /* created (mode 0700, parents too) if missing */
	sl_dlq_fsync fsync;         /* default INTERVAL (see sl_dlq_opts_default) */
	uint32_t fsync_interval_ms; /* INTERVAL: a background thread fdatasyncs dirty
	                             * segments this often; 0 = default 200 */
	uint64_t segment_bytes;     /* rotate when the active segment would exceed
	                             * this; 0 = default 16 MiB; at least 1024.  A
	                             * record larger than this gets a segment alone */
	uint64_t max_bytes;         /* total cap: oldest sealed segments deleted beyond
	                             * it; default 256 MiB; 0 = no cap; else at least
	                             * segment_bytes.  The active segment is never
	                             * deleted, so the total may exceed the cap by
	                             * up to one segment */
} sl_dlq_opts;

/* Fills o with the defaults above (dir NULL).  A zeroed sl_dlq_opts means
 * fsync NEVER and no cap; start from this instead. */
void sl_dlq_opts_default(sl_dlq_opts *o);

typedef struct sl_dlq_record {
	char id[32];               /* "dlq-" + 16 lowercase hex; filled by sl_dlq_append
	                            * (unique and increasing per DIR: time in ms,
	                            * pid bits and a counter) */
	uint64_t time_ms;          /* wall-clock ms when written; filled by append */
	const char *kind;          /* "request" (a dead request) or "replay" (outcome
	                            * of a replay); append sets "request" when NULL */
	const char *replay_of;     /* kind replay: id of the original record (required) */
	const char *outcome;       /* "failed" | "shed" | "expired" (request); replay:
	                            * the new outcome ("completed", ...); required */
	const char *stage, *reason, *detail;             /* may be NULL */
	const char *model, *pipeline, *tenant, *backend; /* may be NULL */
	const char *request_id, *session;                /* may be NULL */
	const char *endpoint;      /* "/v1/chat/completions" or "/v1/completions"; may be NULL */
	int http_status;           /* status the client got (0 = unknown) */
	uint64_t t_submit_ms, t_end_ms; /* wall-clock ms; 0 = unknown */
	const char *body;          /* the request body as received, any bytes; NULL =
	                            * none.  Stored as a JSON string when valid
	                            * UTF-8, else as base64 */
	size_t body_len;
} sl_dlq_record;

typedef struct sl_dlq sl_dlq;

/* Opens (creates) the log in opts->dir (options are validated and copied).
 * Takes an exclusive flock on DIR/lock, so one writer process at a time: a
 * second opener gets SL_ESTATE and err names the pid holding it.  Repairs a
 * torn tail of the newest segment (truncates it after its last valid
 * record; valid records after a corrupt one are kept) and appends to it.
 * Returns SL_OK and *out, or SL_EINVAL (bad options), SL_ESTATE, SL_ESYS,
 * SL_ENOMEM with a one-line reason in err (errlen bytes, may be 0).
 * Any thread; not from a shard thread (it does file I/O). */
int sl_dlq_open(const sl_dlq_opts *opts, sl_dlq **out, char *err, size_t errlen);

/* Writes the record (one frame, one write(2) to the active segment opened
 * O_APPEND, rotating first when needed) before returning; with
 * FSYNC_ALWAYS it also fdatasync()s before returning.  Fills rec->id,
 * rec->time_ms and (when NULL) rec->kind; the strings and the body stay
 * the caller's.
 * Returns SL_OK (the record is acknowledged: it survives kill -9),
 * SL_EINVAL (no outcome; kind not request/replay; replay without
 * replay_of), SL_ETOOBIG (payload over SL_DLQ_MAX_RECORD: retry without
 * the body), SL_ENOMEM, or SL_ESYS (the write failed: a partial frame is
 * cut off again; or, under FSYNC_ALWAYS, the fdatasync failed: the record
 * is written but may not be durable; both counted in stats.errors).
 * Any thread (blocking file I/O: from a shard thread only under
 * FSYNC_NEVER/INTERVAL, where it costs one write(2)). */
int sl_dlq_append(sl_dlq *q, sl_dlq_record *rec);

/* Counters for metrics: records written, bytes written (frames), write and
 * fdatasync errors, segments rotated, segments deleted by the cap.
 * Any thread. */
typedef struct sl_dlq_stats {
	uint64_t records, bytes, errors, rotations, dropped_segments;
} sl_dlq_stats;
void sl_dlq_stats_get(sl_dlq *q, sl_dlq_stats *st);

/* The directory (the copy made at open). */
const char *sl_dlq_dir(const sl_dlq *q);

/* Stops the fsync thread, fdatasync()s the active segment, releases the
 * lock and frees q.  NULL is a no-op.  No append may be running or follow. */
void sl_dlq_close(sl_dlq *q);

/* --- reading ------------------------------------------------------------
 * Readers take no lock.  Each segment is read up to its end at the time;
 * an incomplete frame at the end (a write in progress, or a torn tail after
 * a crash) ends that segment silently; a bad frame elsewhere (wrong magic,
 * length or CRC, or a payload that is not a record) counts once as corrupt
 * and reading goes on at the next valid frame. */

typedef struct sl_dlq_scan_stats {
	uint64_t records, corrupt, segments;
} sl_dlq_scan_stats;

/* Calls fn for every valid record in write order (oldest segment first).
 * fn returns 0 to go on, nonzero to stop (sl_dlq_scan then returns SL_OK).
 * The record and its strings are valid only during the call.  st (may be
 * NULL) is filled in any case.  Returns SL_OK, SL_ENOTFOUND (no directory
 * DIR), SL_ESYS, SL_ENOMEM. */
int sl_dlq_scan(const char *dir, int (*fn)(void *user, const sl_dlq_record *r), void *user,
                sl_dlq_scan_stats *st);

/* Finds the record of kind "request" with this id; *out is a heap copy (one
 * allocation), free with sl_dlq_record_free.  SL_ENOTFOUND when there is
 * none (or no DIR); other errors as sl_dlq_scan. */
int sl_dlq_find(const char *dir, const char *id, sl_dlq_record **out);

/* Frees a record returned by sl_dlq_find (only those).  NULL is a no-op. */
void sl_dlq_record_free(sl_dlq_record *r);

/* Serialises a record as one JSON object (jansson json_t*, the caller
 * decrefs; NULL on allocation failure) with every field, in this order:
 *   id, kind, replay_of, time_ms, time (ISO-8601 UTC, ms), outcome, stage,
 *   reason, detail, model, pipeline, tenant, backend, request_id, session,
 *   endpoint, http_status, t_submit_ms, t_end_ms, body_encoding ("utf8" or
 *   "base64"; null without a body), body_bytes, body (string or null)
 * Absent strings are null.  Text that is not valid UTF-8 (in a field other
 * than the body) has its invalid bytes replaced by U+FFFD.  This is the
 * payload stored on disk and the shape of `sluice dlq show` and
 * GET /admin/dlq.  Any thread. */
struct json_t;
struct json_t *sl_dlq_record_json(const sl_dlq_record *r);

/* Deletes segments.  When no writer holds DIR/lock, all of them (holding the
 * lock meanwhile, so no writer starts); otherwise only the sealed ones (the
 * writer keeps appending to its active segment) and *writer_active = 1.
 * *removed_records (may be NULL) counts the valid records in the deleted
 * segments.  Returns SL_OK, SL_ENOTFOUND (no DIR), SL_ESYS.  Any thread. */
int sl_dlq_purge(const char *dir, uint64_t *removed_records, int *writer_active);

/* --- internal, for tests and the fuzzer ----------------------------------- */

/* CRC32C (Castagnoli, reflected, as in iSCSI/ext4) of len bytes, continuing
 * from crc (0 to start). */
uint32_t sl__dlq_crc32c(uint32_t crc, const void *p, size_t len);

/* Formats wall-clock ms as ISO-8601 UTC with ms ("2026-11-27T06:31:02.123Z")
 * into buf; returns buf. */
const char *sl__dlq_format_time(uint64_t ms, char buf[32]);

/* 1 when id has the shape of a record id ("dlq-" + 16 lowercase hex). */
int sl__dlq_id_valid(const char *id);

/* The payload sl_dlq_append() writes for r (a hand-written serialiser of
 * the object sl_dlq_record_json() builds): *out is malloc'd, NUL-terminated,
 * *len bytes.  SL_ETOOBIG over SL_DLQ_MAX_RECORD, SL_ENOMEM. */
int sl__dlq_payload(const sl_dlq_record *r, char **out, size_t *len);

/* Reads frames from a segment held in memory: what sl_dlq_scan does for
 * one file.  *valid_end (may be NULL) is the offset after the last valid
 * frame.  Returns SL_OK or SL_ENOMEM. */
int sl__dlq_scan_buf(const void *buf, size_t len,
                     int (*fn)(void *user, const sl_dlq_record *r), void *user,
                     sl_dlq_scan_stats *st, size_t *valid_end);

#endif
