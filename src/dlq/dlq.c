/* dlq.c - the dead-letter queue: append-only segments of CRC32C-checked
 * JSON records; see dlq.h and docs/internals/dlq.md.
 *
 * Writer state (struct sl_dlq) is guarded by q->mu except the fields marked
 * "immutable" (set at open) and q->last_id (atomic).  The record is
 * serialised outside the mutex; the mutex covers rotation, the write(2),
 * the FSYNC_ALWAYS fdatasync and the cap. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "core/dynbuf.h"
#include "core/utf8.h"
#include "dlq/dlq.h"
#include "http/openai_json.h"

#define HDR 12                           /* magic, length, CRC */
static const unsigned char MAGIC[4] = {0xF7, 'D', 'Q', '1'};
#define SEG_PREFIX "dlq-"
#define SEG_SUFFIX ".log"
#define SEG_NAME_LEN 28                  /* "dlq-" + 20 digits + ".log" */
#define LOCK_NAME "lock"
#define ID_EPOCH_MS 1577836800000ull     /* 2020-01-01T00:00:00Z */
#define READ_CHUNK (256u << 10)          /* reader window grows from here to one frame */

/* ------------------------------------------------------------ CRC32C */

/* Slicing-by-8 over the reflected Castagnoli polynomial 0x82F63B78: eight
 * 256-entry tables built once. */
static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
		crc_tab[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xff];
}

uint32_t sl__dlq_crc32c(uint32_t crc, const void *data, size_t len)
{
	pthread_once(&crc_once, crc_init);
	const unsigned char *p = data;
	uint32_t c = ~crc;
	while (len && ((uintptr_t)p & 7)) {
		c = (c >> 8) ^ crc_tab[0][(c ^ *p++) & 0xff];
		len--;
	}
	while (len >= 8) {
		uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
		                   (uint32_t)p[3] << 24);
		uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
		              (uint32_t)p[7] << 24;
		c = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^
		    crc_tab[5][(lo >> 16) & 0xff] ^ crc_tab[4][lo >> 24] ^
		    crc_tab[3][hi & 0xff] ^ crc_tab[2][(hi >> 8) & 0xff] ^
		    crc_tab[1][(hi >> 16) & 0xff] ^ crc_tab[0][hi >> 24];
		p += 8;
		len -= 8;
	}
	while (len--)
		c = (c >> 8) ^ crc_tab[0][(c ^ *p++) & 0xff];
	return ~c;
}

static void put_le32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ------------------------------------------------------------ helpers */

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

const char *sl__dlq_format_time(uint64_t ms, char buf[32])
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	if (!gmtime_r(&s, &tm)) {
		snprintf(buf, 32, "?");
		return buf;
	}
	int n = snprintf(buf, 32, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
	                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	                 (unsigned)(ms % 1000));
	if (n < 0 || n >= 32) /* an absurd year */
		snprintf(buf, 32, "?");
	return buf;
}

int sl__dlq_id_valid(const char *id)
{
	if (!id || strncmp(id, "dlq-", 4) != 0 || strlen(id) != 20)
		return 0;
	for (int i = 4; i < 20; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return 0;
	return 1;
}

static void seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Parses "dlq-<20 digits>.log"; returns 1 and *seq when name is a segment. */
static int seg_parse(const char *name, uint64_t *seq)
{
	if (strlen(name) != SEG_NAME_LEN || strncmp(name, SEG_PREFIX, 4) != 0 ||
	    strcmp(name + 24, SEG_SUFFIX) != 0)
		return 0;
	uint64_t v = 0;
	for (int i = 4; i < 24; i++) {
		if (name[i] < '0' || name[i] > '9')
			return 0;
		uint64_t d = (uint64_t)(name[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return 0;
		v = v * 10 + d;
	}
	*seq = v;
	return 1;
}

static void seg_name(char buf[SEG_NAME_LEN + 1], uint64_t seq)
{
	snprintf(buf, SEG_NAME_LEN + 1, SEG_PREFIX "%020" PRIu64 SEG_SUFFIX, seq);
}

typedef struct seg {
	uint64_t seq;
	uint64_t size;
} seg;

static int seg_cmp(const void *a, const void *b)
{
	uint64_t x = ((const seg *)a)->seq, y = ((const seg *)b)->seq;
	return x < y ? -1 : x > y;
}

/* Lists the segments of the directory dfd (kept open), sorted by sequence,
 * with their sizes.  *out is malloc'd (NULL when none). */
static int seg_list(int dfd, seg **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	int fd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return SL_ESYS;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return SL_ESYS;
	}
	rewinddir(d);
	seg *v = NULL;
	size_t len = 0, cap = 0;
	int rc = SL_OK;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		uint64_t seq;
		if (!seg_parse(e->d_name, &seq))
			continue;
		struct stat sb;
		if (fstatat(dfd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode))
			continue; /* deleted meanwhile, or not a file */
		if (len == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			seg *nv = realloc(v, ncap * sizeof *nv);
			if (!nv) {
				rc = SL_ENOMEM;
				break;
			}
			v = nv;
			cap = ncap;
		}
		v[len].seq = seq;
		v[len].size = (uint64_t)sb.st_size;
		len++;
	}
	closedir(d);
	if (rc != SL_OK) {
		free(v);
		return rc;
	}
	if (len > 1)
		qsort(v, len, sizeof *v, seg_cmp);
	*out = v;
	*n = len;
	return SL_OK;
}

static int open_dir(const char *dir)
{
	return open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/* mkdir -p with mode 0700 for what it creates; fsyncs the parent of each
 * directory it creates. */
static int mkdirs(const char *dir)
{
	struct stat sb;
	if (stat(dir, &sb) == 0)
		return S_ISDIR(sb.st_mode) ? 0 : (errno = ENOTDIR, -1);
	size_t n = strlen(dir);
	char *p = malloc(n + 1);
	if (!p)
		return -1;
	memcpy(p, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (p[i] != '/' && p[i] != '\0')
			continue;
		char c = p[i];
		p[i] = '\0';
		if (mkdir(p, 0700) == 0) {
			char *slash = strrchr(p, '/');
			const char *parent = slash ? (slash == p ? "/" : p) : ".";
			if (slash && slash != p)
				*slash = '\0';
			int pfd = open_dir(parent);
			if (pfd >= 0) {
				fsync(pfd);
				close(pfd);
			}
			if (slash && slash != p)
				*slash = '/';
		} else if (errno != EEXIST) {
			int e = errno;
			free(p);
			errno = e;
			return -1;
		}
		p[i] = c;
	}
	free(p);
	if (stat(dir, &sb) != 0)
		return -1;
	return S_ISDIR(sb.st_mode) ? 0 : (errno = ENOTDIR, -1);
}

/* ------------------------------------------------------------ base64 */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Writes the padded base64 of s[0, n) at o: (n + 2) / 3 * 4 bytes, no NUL. */
static void b64_encode_to(const unsigned char *s, size_t n, char *o)
{
	char *w = o;
	size_t i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		*w++ = B64[v >> 18];
		*w++ = B64[(v >> 12) & 63];
		*w++ = B64[(v >> 6) & 63];
		*w++ = B64[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
		*w++ = B64[v >> 18];
		*w++ = B64[(v >> 12) & 63];
		*w++ = i + 1 < n ? B64[(v >> 6) & 63] : '=';
		*w++ = '=';
	}
}

static char *b64_encode(const unsigned char *s, size_t n, size_t *outlen)
{
	if (n > (SIZE_MAX / 4) * 3 - 3)
		return NULL;
	size_t len = (n + 2) / 3 * 4;
	char *o = malloc(len + 1);
	if (!o)
		return NULL;
	b64_encode_to(s, n, o);
	o[len] = '\0';
	*outlen = len;
	return o;
}

static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Strict decoder (padded, no whitespace).  Returns a malloc'd buffer
 * (NUL-terminated for convenience) or NULL: *bad set when the text is not
 * base64, else out of memory. */
static unsigned char *b64_decode(const char *s, size_t n, size_t *outlen, int *bad)
{
	*bad = 0;
	if (n % 4) {
		*bad = 1;
		return NULL;
	}
	unsigned char *o = malloc(n / 4 * 3 + 1), *w = o;
	if (!o)
		return NULL;
	for (size_t i = 0; i < n; i += 4) {
		int a = b64_val((unsigned char)s[i]), b = b64_val((unsigned char)s[i + 1]);
		int last = i + 4 == n;
		int c = last && s[i + 2] == '=' ? -2 : b64_val((unsigned char)s[i + 2]);
		int d = last && s[i + 3] == '=' ? -2 : b64_val((unsigned char)s[i + 3]);
		if (a < 0 || b < 0 || c == -1 || d == -1 || (c == -2 && d != -2)) {
			free(o);
			*bad = 1;
			return NULL;
		}
		uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)(c < 0 ? 0 : c) << 6 |
		             (uint32_t)(d < 0 ? 0 : d);
		*w++ = (unsigned char)(v >> 16);
		if (c >= 0)
			*w++ = (unsigned char)(v >> 8);
		if (d >= 0)
			*w++ = (unsigned char)v;
	}
	*w = '\0';
	*outlen = (size_t)(w - o);
	return o;
}

/* ------------------------------------------------------------ record <-> JSON */

/* A JSON string of s (NULL: null); invalid UTF-8 bytes become U+FFFD. */
static json_t *jstr(const char *s)
{
	if (!s)
		return json_null();
	size_t n = strlen(s);
	if (sl_utf8_valid(s, n))
		return json_stringn_nocheck(s, n);
	sl_dynbuf b;
	sl_dynbuf_init(&b, n * 3 + 1);
	size_t i = 0;
	int rc = SL_OK;
	while (i < n && rc == SL_OK) {
		size_t k = sl_utf8_seq_len(s + i, n - i);
		if (k) {
			rc = sl_dynbuf_add(&b, s + i, k);
			i += k;
		} else {
			rc = sl_dynbuf_add(&b, "\xEF\xBF\xBD", 3);
			i++;
		}
	}
	json_t *j = rc == SL_OK ? json_stringn_nocheck(sl_dynbuf_str(&b), b.len) : NULL;
	sl_dynbuf_free(&b);
	return j;
}

static json_int_t clamp64(uint64_t v)
{
	return v > INT64_MAX ? (json_int_t)INT64_MAX : (json_int_t)v;
}

static int jset(json_t *o, const char *k, json_t *v)
{
	return v ? json_object_set_new_nocheck(o, k, v) : -1;
}

json_t *sl_dlq_record_json(const sl_dlq_record *r)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	char tb[32];
	int bad = 0;
	bad |= jset(o, "id", json_string(r->id[0] ? r->id : ""));
	bad |= jset(o, "kind", jstr(r->kind ? r->kind : "request"));
	bad |= jset(o, "replay_of", jstr(r->replay_of));
	bad |= jset(o, "time_ms", json_integer(clamp64(r->time_ms)));
	bad |= jset(o, "time", json_string(sl__dlq_format_time(r->time_ms, tb)));
	bad |= jset(o, "outcome", jstr(r->outcome));
	bad |= jset(o, "stage", jstr(r->stage));
	bad |= jset(o, "reason", jstr(r->reason));
	bad |= jset(o, "detail", jstr(r->detail));
	bad |= jset(o, "model", jstr(r->model));
	bad |= jset(o, "pipeline", jstr(r->pipeline));
	bad |= jset(o, "tenant", jstr(r->tenant));
	bad |= jset(o, "backend", jstr(r->backend));
	bad |= jset(o, "request_id", jstr(r->request_id));
	bad |= jset(o, "session", jstr(r->session));
	bad |= jset(o, "endpoint", jstr(r->endpoint));
	bad |= jset(o, "http_status", json_integer(r->http_status));
	bad |= jset(o, "t_submit_ms", json_integer(clamp64(r->t_submit_ms)));
	bad |= jset(o, "t_end_ms", json_integer(clamp64(r->t_end_ms)));
	if (!r->body) {
		bad |= jset(o, "body_encoding", json_null());
		bad |= jset(o, "body_bytes", json_integer(0));
		bad |= jset(o, "body", json_null());
	} else if (sl_utf8_valid(r->body, r->body_len)) {
		bad |= jset(o, "body_encoding", json_string("utf8"));
		bad |= jset(o, "body_bytes", json_integer((json_int_t)r->body_len));
		bad |= jset(o, "body", json_stringn_nocheck(r->body, r->body_len));
	} else {
		size_t n;
		char *b = b64_encode((const unsigned char *)r->body, r->body_len, &n);
		bad |= jset(o, "body_encoding", json_string("base64"));
		bad |= jset(o, "body_bytes", json_integer((json_int_t)r->body_len));
		bad |= jset(o, "body", b ? json_stringn_nocheck(b, n) : NULL);
		free(b);
	}
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* A string member, or NULL when absent, null or not a string. */
static const char *jget(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static uint64_t jget_u64(const json_t *o, const char *k)
{
	json_int_t v = json_integer_value(json_object_get(o, k));
	return v > 0 ? (uint64_t)v : 0;
}

/* Decodes a payload into *r, whose strings point into *jout (decref after
 * use) and *bodybuf (free after use, base64 bodies).  Returns SL_OK,
 * SL_EINVAL (not a record) or SL_ENOMEM. */
static int rec_decode(const unsigned char *p, size_t n, sl_dlq_record *r, json_t **jout,
                      unsigned char **bodybuf)
{
	*jout = NULL;
	*bodybuf = NULL;
	json_error_t je;
	json_t *o = json_loadb((const char *)p, n, JSON_ALLOW_NUL, &je);
	if (!o)
		return json_error_code(&je) == json_error_out_of_memory ? SL_ENOMEM : SL_EINVAL;
	memset(r, 0, sizeof *r);
	const char *id = jget(o, "id");
	json_t *tm = json_object_get(o, "time_ms");
	const char *kind = jget(o, "kind");
	if (!json_is_object(o) || !sl__dlq_id_valid(id) || !json_is_integer(tm) ||
	    json_integer_value(tm) < 0 || !jget(o, "outcome"))
		goto bad;
	if (!kind)
		kind = "request";
	if (strcmp(kind, "request") != 0 && strcmp(kind, "replay") != 0)
		goto bad;
	memcpy(r->id, id, 21);
	r->time_ms = (uint64_t)json_integer_value(tm);
	r->kind = kind;
	r->replay_of = jget(o, "replay_of");
	r->outcome = jget(o, "outcome");
	r->stage = jget(o, "stage");
	r->reason = jget(o, "reason");
	r->detail = jget(o, "detail");
	r->model = jget(o, "model");
	r->pipeline = jget(o, "pipeline");
	r->tenant = jget(o, "tenant");
	r->backend = jget(o, "backend");
	r->request_id = jget(o, "request_id");
	r->session = jget(o, "session");
	r->endpoint = jget(o, "endpoint");
	r->http_status = (int)json_integer_value(json_object_get(o, "http_status"));
	r->t_submit_ms = jget_u64(o, "t_submit_ms");
	r->t_end_ms = jget_u64(o, "t_end_ms");
	json_t *body = json_object_get(o, "body");
	if (json_is_string(body)) {
		const char *enc = jget(o, "body_encoding");
		if (enc && strcmp(enc, "base64") == 0) {
			int isbad;
			size_t bl;
			*bodybuf = b64_decode(json_string_value(body), json_string_length(body), &bl,
			                      &isbad);
			if (!*bodybuf) {
				json_decref(o);
				return isbad ? SL_EINVAL : SL_ENOMEM;
			}
			r->body = (const char *)*bodybuf;
			r->body_len = bl;
		} else if (!enc || strcmp(enc, "utf8") == 0) {
			r->body = json_string_value(body);
			r->body_len = json_string_length(body);
		} else {
			goto bad;
		}
	}
	*jout = o;
	return SL_OK;
bad:
	json_decref(o);
	return SL_EINVAL;
}

/* ------------------------------------------------------------ reader */

/* A window over a segment: bytes [off, off + len) of the source are at p.
 * A file source refills through buf; a memory source is one window. */
typedef struct rd {
	int fd;                  /* -1: memory */
	unsigned char *buf;      /* file: the window's storage */
	size_t cap;
	const unsigned char *p;
	size_t len;
	uint64_t off;
	int eof;
	int err;                 /* SL_ESYS / SL_ENOMEM from a refill */
} rd;

/* Drops the first `drop` bytes of the window and reads until it holds at
 * least `need` bytes or the source ends.  Returns 0, or -1 (r->err set). */
static int rd_fill(rd *r, size_t drop, size_t need)
{
	if (r->fd < 0) { /* memory: everything is there already */
		r->p += drop;
		r->len -= drop;
		r->off += drop;
		return 0;
	}
	if (drop) {
		memmove(r->buf, r->buf + drop, r->len - drop);
		r->len -= drop;
		r->off += drop;
	}
	if (need > r->cap) {
		size_t ncap = r->cap ? r->cap : READ_CHUNK;
		while (ncap < need)
			ncap *= 2;
		unsigned char *nb = realloc(r->buf, ncap);
		if (!nb) {
			r->err = SL_ENOMEM;
			return -1;
		}
		r->buf = nb;
		r->cap = ncap;
	}
	r->p = r->buf;
	while (r->len < need && !r->eof) {
		ssize_t k = read(r->fd, r->buf + r->len, r->cap - r->len);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			r->err = SL_ESYS;
			return -1;
		}
		if (k == 0)
			r->eof = 1;
		r->len += (size_t)k;
	}
	return 0;
}

/* The length of the complete, CRC-valid frame at p (avail bytes), or 0. */
static size_t frame_at(const unsigned char *p, size_t avail)
{
	if (avail < HDR || memcmp(p, MAGIC, 4) != 0)
		return 0;
	uint32_t n = get_le32(p + 4);
	if (n == 0 || n > SL_DLQ_MAX_RECORD || avail - HDR < n)
		return 0;
	return sl__dlq_crc32c(0, p + HDR, n) == get_le32(p + 8) ? HDR + n : 0;
}

/* Index of the next magic in p[from, len), or len. */
static size_t next_magic(const unsigned char *p, size_t from, size_t len)
{
	while (from + 4 <= len) {
		const unsigned char *m = memchr(p + from, MAGIC[0], len - from - 3);
		if (!m)
			return len;
		size_t i = (size_t)(m - p);
		if (memcmp(m, MAGIC, 4) == 0)
			return i;
		from = i + 1;
	}
	return len;
}

/* True when p[0, n) could be the start of a frame still being written: a
 * prefix of the magic, or a whole magic. */
static int torn_start(const unsigned char *p, size_t n)
{
	return memcmp(p, MAGIC, n < 4 ? n : 4) == 0;
}

typedef struct scan_cb {
	int (*fn)(void *user, const sl_dlq_record *r);
	void *user;
	uint64_t max_id;   /* the largest id seen (the writer's repair) */
} scan_cb;

/* Reads the frames of one segment.  *valid_end = offset after the last
 * valid frame.  Returns SL_OK, 1 when the callback asked to stop, or
 * SL_ESYS / SL_ENOMEM. */
static int rd_run(rd *r, scan_cb *cb, sl_dlq_scan_stats *st, uint64_t *valid_end)
{
	size_t pos = 0;   /* in the window */
	int bad = 0;      /* inside a corrupt stretch (counted once) */
	*valid_end = 0;
	for (;;) {
		size_t avail = r->len - pos;
		if (avail < HDR && !r->eof) {
			if (rd_fill(r, pos, HDR) != 0)
				return r->err;
			pos = 0;
			continue;
		}
		if (avail == 0)
			return SL_OK;
		const unsigned char *f = r->p + pos;
		if (avail < 4 || memcmp(f, MAGIC, 4) != 0) {
			if (avail < HDR && torn_start(f, avail))
				return SL_OK; /* the start of a frame being written */
			if (!bad) {
				bad = 1;
				st->corrupt++;
			}
			size_t nx = next_magic(r->p, pos + 1, r->len);
			if (nx == r->len) { /* keep 3 bytes: a magic may straddle */
				if (r->eof)
					return SL_OK;
				nx = r->len >= 3 ? r->len - 3 : 0;
				if (nx < pos + 1)
					nx = pos + 1 <= r->len ? pos + 1 : r->len;
			}
			pos = nx;
			continue;
		}
		uint32_t n = avail >= HDR ? get_le32(f + 4) : 0;
		if (avail >= HDR && (n == 0 || n > SL_DLQ_MAX_RECORD)) {
			goto resync;
		}
		if (avail < HDR || avail - HDR < n) {
			if (!r->eof) {
				if (rd_fill(r, pos, HDR + (size_t)n) != 0)
					return r->err;
				pos = 0;
				continue;
			}
			/* Incomplete at the end: a torn tail, unless a valid frame
			 * follows (then the length was damaged). */
			for (size_t q = next_magic(r->p, pos + 1, r->len); q < r->len;
			     q = next_magic(r->p, q + 1, r->len)) {
				if (frame_at(r->p + q, r->len - q)) {
					if (!bad) {
						bad = 1;
						st->corrupt++;
					}
					pos = q;
					goto next;
				}
			}
			return SL_OK;
		}
		if (sl__dlq_crc32c(0, f + HDR, n) != get_le32(f + 8))
			goto resync;
		{
			sl_dlq_record rec;
			json_t *j;
			unsigned char *bb;
			int rc = rec_decode(f + HDR, n, &rec, &j, &bb);
			if (rc == SL_ENOMEM)
				return rc;
			uint64_t end = r->off + pos + HDR + n;
			pos += HDR + n;
			if (rc != SL_OK) {
				if (!bad) {
					bad = 1;
					st->corrupt++;
				}
				continue;
			}
			bad = 0;
			*valid_end = end;
			st->records++;
			uint64_t idv = strtoull(rec.id + 4, NULL, 16);
			if (idv > cb->max_id)
				cb->max_id = idv;
			int stop = cb->fn ? cb->fn(cb->user, &rec) : 0;
			json_decref(j);
			free(bb);
			if (stop)
				return 1;
		}
		continue;
	resync:
		if (!bad) {
			bad = 1;
			st->corrupt++;
		}
		pos++;
	next:;
	}
}

int sl__dlq_scan_buf(const void *buf, size_t len,
                     int (*fn)(void *user, const sl_dlq_record *r), void *user,
                     sl_dlq_scan_stats *st, size_t *valid_end)
{
	sl_dlq_scan_stats tmp = {0};
	if (!st)
		st = &tmp;
	rd r = {.fd = -1, .p = buf, .len = len, .eof = 1};
	scan_cb cb = {fn, user, 0};
	uint64_t ve;
	int rc = rd_run(&r, &cb, st, &ve);
	if (valid_end)
		*valid_end = (size_t)ve;
	return rc == 1 ? SL_OK : rc;
}

/* Reads one segment file (fd, from its start) with the shared buffer. */
static int scan_fd(int fd, unsigned char **buf, size_t *cap, scan_cb *cb,
                   sl_dlq_scan_stats *st, uint64_t *valid_end)
{
	rd r = {.fd = fd, .buf = *buf, .cap = *cap, .p = *buf};
	int rc = rd_run(&r, cb, st, valid_end);
	*buf = r.buf;
	*cap = r.cap;
	return rc;
}

static int dir_errno_status(int e)
{
	return e == ENOENT || e == ENOTDIR ? SL_ENOTFOUND : SL_ESYS;
}

int sl_dlq_scan(const char *dir, int (*fn)(void *user, const sl_dlq_record *r), void *user,
                sl_dlq_scan_stats *st)
{
	sl_dlq_scan_stats tmp = {0};
	if (!st)
		st = &tmp;
	memset(st, 0, sizeof *st);
	if (!dir)
		return SL_EINVAL;
	int dfd = open_dir(dir);
	if (dfd < 0)
		return dir_errno_status(errno);
	seg *v;
	size_t n;
	int rc = seg_list(dfd, &v, &n);
	unsigned char *buf = NULL;
	size_t cap = 0;
	scan_cb cb = {fn, user, 0};
	for (size_t i = 0; rc == SL_OK && i < n; i++) {
		char name[SEG_NAME_LEN + 1];
		seg_name(name, v[i].seq);
		int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			if (errno == ENOENT)
				continue; /* deleted by the cap or a purge meanwhile */
			rc = SL_ESYS;
			break;
		}
		st->segments++;
		uint64_t ve;
		rc = scan_fd(fd, &buf, &cap, &cb, st, &ve);
		close(fd);
		if (rc == 1) {
			rc = SL_OK;
			break;
		}
	}
	free(buf);
	free(v);
	close(dfd);
	return rc;
}

/* One allocation: the struct, then every string, then the body. */
static sl_dlq_record *rec_copy(const sl_dlq_record *r)
{
	const char *const *fields[] = {&r->kind,     &r->replay_of, &r->outcome,  &r->stage,
	                               &r->reason,   &r->detail,    &r->model,    &r->pipeline,
	                               &r->tenant,   &r->backend,   &r->request_id,
	                               &r->session,  &r->endpoint};
	size_t nf = sizeof fields / sizeof fields[0];
	size_t total = sizeof(sl_dlq_record) + r->body_len + 1;
	for (size_t i = 0; i < nf; i++)
		if (*fields[i])
			total += strlen(*fields[i]) + 1;
	sl_dlq_record *c = malloc(total);
	if (!c)
		return NULL;
	*c = *r;
	char *w = (char *)(c + 1);
	const char **dst[] = {&c->kind,     &c->replay_of, &c->outcome,  &c->stage,
	                      &c->reason,   &c->detail,    &c->model,    &c->pipeline,
	                      &c->tenant,   &c->backend,   &c->request_id,
	                      &c->session,  &c->endpoint};
	for (size_t i = 0; i < nf; i++) {
		if (!*fields[i])
			continue;
		size_t k = strlen(*fields[i]) + 1;
		memcpy(w, *fields[i], k);
		*dst[i] = w;
		w += k;
	}
	if (r->body) {
		memcpy(w, r->body, r->body_len);
		w[r->body_len] = '\0';
		c->body = w;
	}
	return c;
}

typedef struct find_ctx {
	const char *id;
	sl_dlq_record *found;
	int nomem;
} find_ctx;

static int find_cb(void *user, const sl_dlq_record *r)
{
	find_ctx *f = user;
	if (strcmp(r->id, f->id) != 0 || strcmp(r->kind, "request") != 0)
		return 0;
	f->found = rec_copy(r);
	f->nomem = f->found == NULL;
	return 1;
}

int sl_dlq_find(const char *dir, const char *id, sl_dlq_record **out)
{
	*out = NULL;
	if (!id || !sl__dlq_id_valid(id))
		return SL_ENOTFOUND;
	find_ctx f = {id, NULL, 0};
	int rc = sl_dlq_scan(dir, find_cb, &f, NULL);
	if (rc != SL_OK)
		return rc;
	if (f.nomem)
		return SL_ENOMEM;
	if (!f.found)
		return SL_ENOTFOUND;
	*out = f.found;
	return SL_OK;
}

void sl_dlq_record_free(sl_dlq_record *r)
{
	free(r);
}

/* Counts the valid records of one segment (purge). */
static int count_records(int dfd, const char *name, uint64_t *n)
{
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? SL_OK : SL_ESYS;
	sl_dlq_scan_stats st = {0};
	unsigned char *buf = NULL;
	size_t cap = 0;
	scan_cb cb = {NULL, NULL, 0};
	uint64_t ve;
	int rc = scan_fd(fd, &buf, &cap, &cb, &st, &ve);
	free(buf);
	close(fd);
	*n += st.records;
	return rc;
}

int sl_dlq_purge(const char *dir, uint64_t *removed_records, int *writer_active)
{
	uint64_t removed = 0;
	int active = 0;
	if (removed_records)
		*removed_records = 0;
	if (writer_active)
		*writer_active = 0;
	if (!dir)
		return SL_EINVAL;
	int dfd = open_dir(dir);
	if (dfd < 0)
		return dir_errno_status(errno);
	/* Created when missing, so that no writer can start meanwhile; a
	 * read-only DIR is purged without it (nothing can write there). */
	int lfd = openat(dfd, LOCK_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lfd < 0)
		lfd = openat(dfd, LOCK_NAME, O_RDONLY | O_CLOEXEC);
	if (lfd >= 0 && flock(lfd, LOCK_EX | LOCK_NB) != 0) {
		if (errno != EWOULDBLOCK) {
			close(lfd);
			close(dfd);
			return SL_ESYS;
		}
		active = 1;
	}
	seg *v;
	size_t n;
	int rc = seg_list(dfd, &v, &n);
	/* With a writer, its active segment is the newest (it only ever
	 * creates higher sequences), so everything below it is sealed. */
	size_t upto = rc == SL_OK ? (active && n ? n - 1 : n) : 0;
	for (size_t i = 0; i < upto && rc == SL_OK; i++) {
		char name[SEG_NAME_LEN + 1];
		seg_name(name, v[i].seq);
		uint64_t c = 0;
		rc = count_records(dfd, name, &c);
		if (rc != SL_OK)
			break;
		if (unlinkat(dfd, name, 0) == 0)
			removed += c;
		else if (errno != ENOENT)
			rc = SL_ESYS;
	}
	fsync(dfd);
	free(v);
	if (lfd >= 0)
		close(lfd); /* releases the flock when we took it */
	close(dfd);
	if (removed_records)
		*removed_records = removed;
	if (writer_active)
		*writer_active = active;
	return rc;
}

/* ------------------------------------------------------------ writer */

struct sl_dlq {
	char *dir;                 /* immutable */
	sl_dlq_opts o;             /* immutable; o.dir == dir */
	int dfd;                   /* immutable: the directory */
	int lock_fd;               /* immutable: holds the flock */
	uint32_t pid_bits;         /* immutable */
	uint64_t last_id;          /* atomic: the last id handed out */
	pthread_mutex_t mu;
	pthread_cond_t cv;         /* wakes the fsync thread (stop) */
	pthread_t syncer;          /* FSYNC_INTERVAL only */
	int has_syncer;            /* immutable */
	int stopping;              /* mu */
	int fd;                    /* mu: the active segment, -1 after a failed rotation */
	int dirty;                 /* mu: written since the last fdatasync */
	seg *segs;                 /* mu: on disk, oldest first; the last is active */
	size_t nsegs, capsegs;     /* mu */
	uint64_t total;            /* mu: bytes in segs */
	sl_dlq_stats st;           /* mu */
};

void sl_dlq_opts_default(sl_dlq_opts *o)
{
	memset(o, 0, sizeof *o);
	o->fsync = SL_DLQ_DEFAULT_FSYNC;
	o->fsync_interval_ms = SL_DLQ_DEFAULT_FSYNC_INTERVAL_MS;
	o->segment_bytes = SL_DLQ_DEFAULT_SEGMENT_BYTES;
	o->max_bytes = SL_DLQ_DEFAULT_MAX_BYTES;
}

const char *sl_dlq_dir(const sl_dlq *q)
{
	return q->dir;
}

void sl_dlq_stats_get(sl_dlq *q, sl_dlq_stats *st)
{
	pthread_mutex_lock(&q->mu);
	*st = q->st;
	pthread_mutex_unlock(&q->mu);
}

/* Re-reads the segment list from the directory (a purge may have removed
 * sealed segments).  Keeps the old list on failure.  Under mu. */
static void segs_refresh(sl_dlq *q)
{
	seg *v;
	size_t n;
	if (seg_list(q->dfd, &v, &n) != SL_OK)
		return;
	free(q->segs);
	q->segs = v;
	q->nsegs = q->capsegs = n;
	q->total = 0;
	for (size_t i = 0; i < n; i++)
		q->total += v[i].size;
}

/* Deletes the oldest sealed segments while the total is over the cap.
 * Under mu. */
static void enforce_cap(sl_dlq *q)
{
	if (!q->o.max_bytes)
		return;
	size_t drop = 0;
	while (q->total > q->o.max_bytes && q->nsegs - drop > 1) {
		char name[SEG_NAME_LEN + 1];
		seg_name(name, q->segs[drop].seq);
		if (unlinkat(q->dfd, name, 0) == 0) {
			q->st.dropped_segments++;
		} else if (errno != ENOENT) {
			q->st.errors++;
			break;
		}
		q->total -= q->segs[drop].size;
		drop++;
	}
	if (drop) {
		memmove(q->segs, q->segs + drop, (q->nsegs - drop) * sizeof *q->segs);
		q->nsegs -= drop;
	}
}

/* Creates segment seq as the active one and syncs the directory.
 * Under mu (or at open). */
static int seg_create(sl_dlq *q, uint64_t seq)
{
	char name[SEG_NAME_LEN + 1];
	seg_name(name, seq);
	int fd = openat(q->dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return SL_ESYS;
	if (q->o.fsync != SL_DLQ_FSYNC_NEVER && fsync(q->dfd) != 0) {
		close(fd);
		unlinkat(q->dfd, name, 0);
		return SL_ESYS;
	}
	if (q->nsegs == q->capsegs) {
		size_t ncap = q->capsegs ? q->capsegs * 2 : 16;
		seg *nv = realloc(q->segs, ncap * sizeof *nv);
		if (!nv) {
			close(fd);
			unlinkat(q->dfd, name, 0);
			return SL_ENOMEM;
		}
		q->segs = nv;
		q->capsegs = ncap;
	}
	q->segs[q->nsegs].seq = seq;
	q->segs[q->nsegs].size = 0;
	q->nsegs++;
	q->fd = fd;
	return SL_OK;
}

/* Seals the active segment (fdatasync unless NEVER) and opens the next.
 * Under mu. */
static int rotate(sl_dlq *q)
{
	uint64_t next = q->nsegs ? q->segs[q->nsegs - 1].seq + 1 : 1;
	if (q->fd >= 0) {
		if (q->o.fsync != SL_DLQ_FSYNC_NEVER && q->dirty) {
			if (fdatasync(q->fd) != 0)
				q->st.errors++;
		}
		q->dirty = 0;
		close(q->fd);
		q->fd = -1;
		q->st.rotations++;
	}
	segs_refresh(q);
	if (q->nsegs && q->segs[q->nsegs - 1].seq >= next)
		next = q->segs[q->nsegs - 1].seq + 1;
	return seg_create(q, next);
}

static void *syncer_main(void *arg)
{
	sl_dlq *q = arg;
	pthread_mutex_lock(&q->mu);
	while (!q->stopping) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)q->o.fsync_interval_ms * 1000000u;
		ts.tv_sec += (time_t)(ns / 1000000000u);
		ts.tv_nsec = (long)(ns % 1000000000u);
		while (!q->stopping && pthread_cond_timedwait(&q->cv, &q->mu, &ts) != ETIMEDOUT)
			;
		if (q->stopping || !q->dirty || q->fd < 0)
			continue;
		/* fdatasync on a duplicate, outside the mutex: appends go on, and
		 * a rotation may close q->fd meanwhile. */
		int fd = fcntl(q->fd, F_DUPFD_CLOEXEC, 0);
		if (fd < 0) {
			q->st.errors++;
			continue;
		}
		q->dirty = 0;
		pthread_mutex_unlock(&q->mu);
		int rc = fdatasync(fd);
		close(fd);
		pthread_mutex_lock(&q->mu);
		if (rc != 0) {
			q->st.errors++;
			q->dirty = 1;
		}
	}
	pthread_mutex_unlock(&q->mu);
	return NULL;
}

/* At open: cuts the newest segment after its last valid frame and learns
 * the largest id in use (from the newest segments that hold records). */
static int repair(sl_dlq *q, char *err, size_t errlen)
{
	unsigned char *buf = NULL;
	size_t cap = 0;
	int rc = SL_OK;
	uint64_t max_id = 0;
	for (size_t i = q->nsegs; i-- > 0;) {
		char name[SEG_NAME_LEN + 1];
		seg_name(name, q->segs[i].seq);
		int newest = i == q->nsegs - 1;
		int fd = openat(q->dfd, name, (newest ? O_RDWR : O_RDONLY) | O_CLOEXEC);
		if (fd < 0) {
			seterr(err, errlen, "cannot open %s/%s: %s", q->dir, name, strerror(errno));
			rc = SL_ESYS;
			break;
		}
		sl_dlq_scan_stats st = {0};
		scan_cb cb = {NULL, NULL, 0};
		uint64_t ve = 0;
		rc = scan_fd(fd, &buf, &cap, &cb, &st, &ve);
		if (rc == SL_OK && newest && ve < q->segs[i].size) {
			if (ftruncate(fd, (off_t)ve) != 0 || fdatasync(fd) != 0) {
				seterr(err, errlen, "cannot repair %s/%s: %s", q->dir, name,
				       strerror(errno));
				rc = SL_ESYS;
			} else {
				q->total -= q->segs[i].size - ve;
				q->segs[i].size = ve;
			}
		} else if (rc != SL_OK) {
			seterr(err, errlen, "cannot read %s/%s: %s", q->dir, name, sl_strerror(rc));
		}
		close(fd);
		if (rc != SL_OK || st.records) {
			max_id = cb.max_id;
			break;
		}
	}
	free(buf);
	q->last_id = max_id;
	return rc;
}

/* Takes DIR/lock; on conflict says who holds it. */
static int take_lock(sl_dlq *q, char *err, size_t errlen)
{
	q->lock_fd = openat(q->dfd, LOCK_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (q->lock_fd < 0) {
		seterr(err, errlen, "cannot open %s/" LOCK_NAME ": %s", q->dir, strerror(errno));
		return SL_ESYS;
	}
	if (flock(q->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		if (errno != EWOULDBLOCK) {
			seterr(err, errlen, "cannot lock %s/" LOCK_NAME ": %s", q->dir, strerror(errno));
			return SL_ESYS;
		}
		char pid[32] = {0};
		ssize_t k = pread(q->lock_fd, pid, sizeof pid - 1, 0);
		long v = k > 0 ? strtol(pid, NULL, 10) : 0;
		if (v > 0)
			seterr(err, errlen, "DLQ %s is in use by another writer (pid %ld)", q->dir, v);
		else
			seterr(err, errlen, "DLQ %s is in use by another writer", q->dir);
		return SL_ESTATE;
	}
	char pid[32];
	int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(q->lock_fd, 0) != 0 || pwrite(q->lock_fd, pid, (size_t)n, 0) != n) {
		seterr(err, errlen, "cannot write %s/" LOCK_NAME ": %s", q->dir, strerror(errno));
		return SL_ESYS;
	}
	return SL_OK;
}

int sl_dlq_open(const sl_dlq_opts *opts, sl_dlq **out, char *err, size_t errlen)
{
	*out = NULL;
	if (!opts || !opts->dir || !opts->dir[0]) {
		seterr(err, errlen, "dlq: no directory");
		return SL_EINVAL;
	}
	sl_dlq_opts o = *opts;
	if (o.fsync != SL_DLQ_FSYNC_NEVER && o.fsync != SL_DLQ_FSYNC_INTERVAL &&
	    o.fsync != SL_DLQ_FSYNC_ALWAYS) {
		seterr(err, errlen, "dlq: fsync must be never, interval or always");
		return SL_EINVAL;
	}
	if (!o.fsync_interval_ms)
		o.fsync_interval_ms = SL_DLQ_DEFAULT_FSYNC_INTERVAL_MS;
	if (!o.segment_bytes)
		o.segment_bytes = SL_DLQ_DEFAULT_SEGMENT_BYTES;
	if (o.segment_bytes < SL_DLQ_MIN_SEGMENT_BYTES) {
		seterr(err, errlen, "dlq: segment_bytes must be at least %llu",
		       (unsigned long long)SL_DLQ_MIN_SEGMENT_BYTES);
		return SL_EINVAL;
	}
	if (o.max_bytes && o.max_bytes < o.segment_bytes) {
		seterr(err, errlen, "dlq: max_bytes (%llu) must be 0 or at least segment_bytes (%llu)",
		       (unsigned long long)o.max_bytes, (unsigned long long)o.segment_bytes);
		return SL_EINVAL;
	}
	sl_dlq *q = calloc(1, sizeof *q);
	if (!q || !(q->dir = strdup(opts->dir))) {
		free(q);
		seterr(err, errlen, "dlq: out of memory");
		return SL_ENOMEM;
	}
	o.dir = q->dir;
	q->o = o;
	q->dfd = q->lock_fd = q->fd = -1;
	q->pid_bits = (uint32_t)getpid() & 0xff;
	pthread_mutex_init(&q->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->cv, &ca);
	pthread_condattr_destroy(&ca);

	int rc;
	if (mkdirs(q->dir) != 0) {
		seterr(err, errlen, "cannot create %s: %s", q->dir, strerror(errno));
		rc = SL_ESYS;
		goto fail;
	}
	q->dfd = open_dir(q->dir);
	if (q->dfd < 0) {
		seterr(err, errlen, "cannot open %s: %s", q->dir, strerror(errno));
		rc = SL_ESYS;
		goto fail;
	}
	if ((rc = take_lock(q, err, errlen)) != SL_OK)
		goto fail;
	if ((rc = seg_list(q->dfd, &q->segs, &q->nsegs)) != SL_OK) {
		seterr(err, errlen, "cannot list %s: %s", q->dir, sl_strerror(rc));
		goto fail;
	}
	q->capsegs = q->nsegs;
	for (size_t i = 0; i < q->nsegs; i++)
		q->total += q->segs[i].size;
	if ((rc = repair(q, err, errlen)) != SL_OK)
		goto fail;
	if (q->nsegs) {
		char name[SEG_NAME_LEN + 1];
		seg_name(name, q->segs[q->nsegs - 1].seq);
		q->fd = openat(q->dfd, name, O_WRONLY | O_APPEND | O_CLOEXEC);
		if (q->fd < 0) {
			seterr(err, errlen, "cannot open %s/%s: %s", q->dir, name, strerror(errno));
			rc = SL_ESYS;
			goto fail;
		}
	} else if ((rc = seg_create(q, 1)) != SL_OK) {
		seterr(err, errlen, "cannot create a segment in %s: %s", q->dir, strerror(errno));
		goto fail;
	}
	enforce_cap(q);
	if (o.fsync == SL_DLQ_FSYNC_INTERVAL) {
		if (pthread_create(&q->syncer, NULL, syncer_main, q) != 0) {
			seterr(err, errlen, "dlq: cannot start the fsync thread");
			rc = SL_ESYS;
			goto fail;
		}
		q->has_syncer = 1;
	}
	*out = q;
	return SL_OK;
fail:
	sl_dlq_close(q);
	return rc;
}

void sl_dlq_close(sl_dlq *q)
{
	if (!q)
		return;
	if (q->has_syncer) {
		pthread_mutex_lock(&q->mu);
		q->stopping = 1;
		pthread_cond_signal(&q->cv);
		pthread_mutex_unlock(&q->mu);
		pthread_join(q->syncer, NULL);
	}
	if (q->fd >= 0) {
		fdatasync(q->fd);
		close(q->fd);
	}
	if (q->lock_fd >= 0)
		close(q->lock_fd);
	if (q->dfd >= 0)
		close(q->dfd);
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->cv);
	free(q->segs);
	free(q->dir);
	free(q);
}

/* An id greater than every earlier one of this DIR: ms since 2020 in the
 * high 42 bits, 8 bits of the pid, a 14-bit counter; when the clock has
 * not moved (or went back) the previous id + 1. */
static uint64_t next_id(sl_dlq *q, uint64_t now_ms)
{
	uint64_t ms = now_ms > ID_EPOCH_MS ? now_ms - ID_EPOCH_MS : 0;
	uint64_t cand = (ms << 22) | ((uint64_t)q->pid_bits << 14);
	uint64_t last = __atomic_load_n(&q->last_id, __ATOMIC_RELAXED), next;
	do {
		next = cand > last ? cand : last + 1;
	} while (!__atomic_compare_exchange_n(&q->last_id, &last, next, 1, __ATOMIC_RELAXED,
	                                      __ATOMIC_RELAXED));
	return next;
}

/* The payload writer: the same object as sl_dlq_record_json(), written
 * straight into the frame buffer (strings escaped by sl_oai_json_string,
 * which replaces invalid UTF-8 by U+FFFD as jstr() does).  Measured against
 * building the jansson tree and dumping it: 3.0 us vs 9.6 us for a record
 * with a 1 KiB body, 144 us vs 640 us with 64 KiB (docs/internals/dlq.md);
 * this runs for every shed request during an overload.  The unit test and
 * the fuzzer check that both give the same JSON. */
static int put_str(sl_dynbuf *b, const char *k, const char *v)
{
	int rc = sl_dynbuf_addstr(b, k);
	if (rc == SL_OK)
		rc = v ? sl_oai_json_string(b, v, strlen(v)) : sl_dynbuf_add(b, "null", 4);
	return rc;
}

static int put_u64(sl_dynbuf *b, const char *k, uint64_t v)
{
	char num[24];
	int n = snprintf(num, sizeof num, "%" PRIu64, v > INT64_MAX ? (uint64_t)INT64_MAX : v);
	int rc = sl_dynbuf_addstr(b, k);
	return rc == SL_OK ? sl_dynbuf_add(b, num, (size_t)n) : rc;
}

static int put_b64(sl_dynbuf *b, const unsigned char *s, size_t n)
{
	char blk[4096]; /* the base64 of 3072 bytes */
	int rc = sl_dynbuf_add(b, "\"", 1);
	for (size_t i = 0; i < n && rc == SL_OK;) {
		size_t take = n - i > 3072 ? 3072 : n - i;
		b64_encode_to(s + i, take, blk);
		rc = sl_dynbuf_add(b, blk, (take + 2) / 3 * 4);
		i += take;
	}
	return rc == SL_OK ? sl_dynbuf_add(b, "\"", 1) : rc;
}

static int payload_write(const sl_dlq_record *r, sl_dynbuf *b)
{
	char tb[32];
	int rc;
	if ((rc = put_str(b, "{\"id\":", r->id)) ||
	    (rc = put_str(b, ",\"kind\":", r->kind ? r->kind : "request")) ||
	    (rc = put_str(b, ",\"replay_of\":", r->replay_of)) ||
	    (rc = put_u64(b, ",\"time_ms\":", r->time_ms)) ||
	    (rc = put_str(b, ",\"time\":", sl__dlq_format_time(r->time_ms, tb))) ||
	    (rc = put_str(b, ",\"outcome\":", r->outcome)) ||
	    (rc = put_str(b, ",\"stage\":", r->stage)) ||
	    (rc = put_str(b, ",\"reason\":", r->reason)) ||
	    (rc = put_str(b, ",\"detail\":", r->detail)) ||
	    (rc = put_str(b, ",\"model\":", r->model)) ||
	    (rc = put_str(b, ",\"pipeline\":", r->pipeline)) ||
	    (rc = put_str(b, ",\"tenant\":", r->tenant)) ||
	    (rc = put_str(b, ",\"backend\":", r->backend)) ||
	    (rc = put_str(b, ",\"request_id\":", r->request_id)) ||
	    (rc = put_str(b, ",\"session\":", r->session)) ||
	    (rc = put_str(b, ",\"endpoint\":", r->endpoint)) ||
	    (rc = sl_dynbuf_printf(b, ",\"http_status\":%d", r->http_status)) ||
	    (rc = put_u64(b, ",\"t_submit_ms\":", r->t_submit_ms)) ||
	    (rc = put_u64(b, ",\"t_end_ms\":", r->t_end_ms)))
		return rc;
	if (!r->body)
		rc = sl_dynbuf_addstr(b, ",\"body_encoding\":null,\"body_bytes\":0,\"body\":null}");
	else if (sl_utf8_valid(r->body, r->body_len)) {
		if (!(rc = put_str(b, ",\"body_encoding\":", "utf8")) &&
		    !(rc = put_u64(b, ",\"body_bytes\":", r->body_len)) &&
		    !(rc = sl_dynbuf_addstr(b, ",\"body\":")) &&
		    !(rc = sl_oai_json_string(b, r->body, r->body_len)))
			rc = sl_dynbuf_add(b, "}", 1);
	} else {
		if (!(rc = put_str(b, ",\"body_encoding\":", "base64")) &&
		    !(rc = put_u64(b, ",\"body_bytes\":", r->body_len)) &&
		    !(rc = sl_dynbuf_addstr(b, ",\"body\":")) &&
		    !(rc = put_b64(b, (const unsigned char *)r->body, r->body_len)))
			rc = sl_dynbuf_add(b, "}", 1);
	}
	return rc;
}

int sl__dlq_payload(const sl_dlq_record *r, char **out, size_t *len)
{
	sl_dynbuf b;
	sl_dynbuf_init(&b, SL_DLQ_MAX_RECORD);
	int rc = payload_write(r, &b);
	if (rc != SL_OK) {
		sl_dynbuf_free(&b);
		return rc;
	}
	*out = sl_dynbuf_take(&b, len); /* never NULL: something was written */
	return SL_OK;
}

/* Builds the frame of r in b: header + compact JSON. */
static int frame_build(const sl_dlq_record *r, sl_dynbuf *b)
{
	static const unsigned char zero[HDR];
	int rc = sl_dynbuf_add(b, zero, HDR);
	if (rc == SL_OK)
		rc = payload_write(r, b);
	if (rc != SL_OK)
		return rc;
	size_t n = b->len - HDR;
	unsigned char *p = (unsigned char *)b->p;
	memcpy(p, MAGIC, 4);
	put_le32(p + 4, (uint32_t)n);
	put_le32(p + 8, sl__dlq_crc32c(0, p + HDR, n));
	return SL_OK;
}

/* Writes the whole frame at the end of the active segment; on failure cuts
 * what was written.  Under mu. */
static int write_frame(sl_dlq *q, const char *p, size_t n)
{
	uint64_t before = q->segs[q->nsegs - 1].size;
	size_t done = 0;
	while (done < n) {
		ssize_t k = write(q->fd, p + done, n - done);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			if (done && ftruncate(q->fd, (off_t)before) != 0) {
				/* The partial frame stays; readers skip it as corrupt. */
				q->segs[q->nsegs - 1].size += done;
				q->total += done;
			}
			errno = e;
			return SL_ESYS;
		}
		done += (size_t)k;
	}
	q->segs[q->nsegs - 1].size += n;
	q->total += n;
	return SL_OK;
}

int sl_dlq_append(sl_dlq *q, sl_dlq_record *rec)
{
	if (!q || !rec || !rec->outcome)
		return SL_EINVAL;
	if (!rec->kind)
		rec->kind = "request";
	int replay = strcmp(rec->kind, "replay") == 0;
	if ((!replay && strcmp(rec->kind, "request") != 0) || (replay && !rec->replay_of))
		return SL_EINVAL;
	if (rec->body_len && !rec->body)
		return SL_EINVAL;
	/* Base64 or escaping only grows a body: refuse hopeless ones early. */
	if (rec->body_len > SL_DLQ_MAX_RECORD)
		return SL_ETOOBIG;
	rec->time_ms = wall_ms();
	snprintf(rec->id, sizeof rec->id, "dlq-%016" PRIx64, next_id(q, rec->time_ms));

	sl_dynbuf b;
	sl_dynbuf_init(&b, (size_t)SL_DLQ_MAX_RECORD + HDR);
	int rc = frame_build(rec, &b);
	if (rc != SL_OK) {
		sl_dynbuf_free(&b);
		return rc;
	}
	pthread_mutex_lock(&q->mu);
	uint64_t active = q->nsegs ? q->segs[q->nsegs - 1].size : 0;
	if (q->fd < 0 || (active > 0 && active + b.len > q->o.segment_bytes))
		rc = rotate(q);
	if (rc == SL_OK)
		rc = write_frame(q, b.p, b.len);
	if (rc == SL_OK) {
		if (q->o.fsync == SL_DLQ_FSYNC_ALWAYS) {
			if (fdatasync(q->fd) != 0)
				rc = SL_ESYS; /* written, maybe not durable: say so */
		} else {
			q->dirty = 1;
		}
		q->st.records++;
		q->st.bytes += b.len;
		enforce_cap(q);
	}
	if (rc != SL_OK)
		q->st.errors++;
	pthread_mutex_unlock(&q->mu);
	sl_dynbuf_free(&b);
	return rc;
}
