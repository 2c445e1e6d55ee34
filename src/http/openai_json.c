/* openai_json.c - OpenAI response and SSE writers; see openai_json.h. */
#include "http/openai_json.h"

#include <string.h>

#include "core/utf8.h"


#define LIT(b, s) sl_dynbuf_add((b), (s), sizeof(s) - 1)

static int chr(sl_dynbuf *b, char c)
{
	return sl_dynbuf_add(b, &c, 1);
}

/* Undoes a partial write: back to len bytes (len <= b->len). */
static void truncate_to(sl_dynbuf *b, size_t len)
{
	b->len = len;
	if (b->p)
		b->p[len] = '\0';
}

/* The JSON escape of byte c (a control character, '"', a backslash, or a
 * byte that starts no valid UTF-8 sequence: U+FFFD) written at e; returns
 * its length (2, 3 or 6). */
static size_t escape_byte(char *e, unsigned char c)
{
	static const char hex[] = "0123456789abcdef";
	e[0] = '\\';
	switch (c) {
	case '"': e[1] = '"'; return 2;
	case '\\': e[1] = '\\'; return 2;
	case '\b': e[1] = 'b'; return 2;
	case '\f': e[1] = 'f'; return 2;
	case '\n': e[1] = 'n'; return 2;
	case '\r': e[1] = 'r'; return 2;
	case '\t': e[1] = 't'; return 2;
	default:
		if (c < 0x20) {
			memcpy(e + 1, "u00", 3);
			e[4] = hex[c >> 4];
			e[5] = hex[c & 15];
			return 6;
		}
		memcpy(e, "\xEF\xBF\xBD", 3); /* invalid UTF-8 byte */
		return 3;
	}
}

static int string_body(sl_dynbuf *b, const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, run = 0; /* run: start of pending pass-through bytes */
	int rc;
	while (i < len) {
		i = (size_t)(sl_json_plain_end(s + i, s + len) - s);
		if (i == len)
			break;
		unsigned cl = sl_json_byte_class[u[i]];
		if (cl == 2) {
			size_t n = sl_utf8_seq_len(s + i, len - i);
			if (n) {
				i += n;
				continue;
			}
		}
		if (i > run && (rc = sl_dynbuf_add(b, s + run, i - run)))
			return rc;
		char e[6];
		size_t en = escape_byte(e, u[i]);
		if ((rc = sl_dynbuf_add(b, e, en)))
			return rc;
		i++;
		run = i;
	}
	if (i > run)
		return sl_dynbuf_add(b, s + run, i - run);
	return SL_OK;
}

static int str(sl_dynbuf *b, const char *s, size_t len)
{
	int rc;
	if ((rc = chr(b, '"')) || (rc = string_body(b, s, len)))
		return rc;
	return chr(b, '"');
}

/* NUL-terminated string or null. */
static int cstr_or_null(sl_dynbuf *b, const char *s)
{
	if (!s)
		return LIT(b, "null");
	return str(b, s, strlen(s));
}

static int u64(sl_dynbuf *b, uint64_t v)
{
	char tmp[24];
	size_t n = sizeof tmp;
	do {
		tmp[--n] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return sl_dynbuf_add(b, tmp + n, sizeof tmp - n);
}

static int i64(sl_dynbuf *b, int64_t v)
{
	int rc;
	if (v < 0) {
		if ((rc = chr(b, '-')))
			return rc;
		return u64(b, (uint64_t)0 - (uint64_t)v);
	}
	return u64(b, (uint64_t)v);
}

int sl_oai_json_string(sl_dynbuf *b, const char *s, size_t len)
{
	size_t mark = b->len;
	int rc = str(b, s ? s : "", s ? len : 0);
	if (rc)
		truncate_to(b, mark);
	return rc;
}

/* {"id":..,"object":OBJ,"created":..,"model":..,[fp,] */
static int head(sl_dynbuf *b, const sl_oai_meta *m, const char *object)
{
	int rc;
	const char *id = m->id ? m->id : "";
	const char *model = m->model ? m->model : "";
	if ((rc = LIT(b, "{\"id\":")) || (rc = str(b, id, strlen(id))) ||
	    (rc = LIT(b, ",\"object\":\"")) || (rc = sl_dynbuf_addstr(b, object)) ||
	    (rc = LIT(b, "\",\"created\":")) || (rc = i64(b, m->created)) ||
	    (rc = LIT(b, ",\"model\":")) || (rc = str(b, model, strlen(model))))
		return rc;
	if (m->system_fingerprint &&
	    ((rc = LIT(b, ",\"system_fingerprint\":")) ||
	     (rc = cstr_or_null(b, m->system_fingerprint))))
		return rc;
	return SL_OK;
}

static int usage_obj(sl_dynbuf *b, const sl_oai_usage *u)
{
	int rc;
	if ((rc = LIT(b, "{\"prompt_tokens\":")) || (rc = u64(b, u->prompt_tokens)) ||
	    (rc = LIT(b, ",\"completion_tokens\":")) || (rc = u64(b, u->completion_tokens)) ||
	    (rc = LIT(b, ",\"total_tokens\":")) ||
	    (rc = u64(b, (uint64_t)u->prompt_tokens + u->completion_tokens)))
		return rc;
	return chr(b, '}');
}

static int completion(sl_dynbuf *b, const sl_oai_meta *m, int chat, const char *text,
                      size_t len, const char *fr, const sl_oai_usage *u)
{
	int rc;
	if ((rc = head(b, m, chat ? "chat.completion" : "text_completion")))
		return rc;
	if (chat)
		rc = LIT(b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
	else
		rc = LIT(b, ",\"choices\":[{\"text\":");
	if (rc || (rc = str(b, text ? text : "", text ? len : 0)))
		return rc;
	if (chat)
		rc = LIT(b, "},\"logprobs\":null,\"finish_reason\":");
	else
		rc = LIT(b, ",\"index\":0,\"logprobs\":null,\"finish_reason\":");
	if (rc || (rc = cstr_or_null(b, fr)) || (rc = LIT(b, "}]")))
		return rc;
	if (u && ((rc = LIT(b, ",\"usage\":")) || (rc = usage_obj(b, u))))
		return rc;
	return chr(b, '}');
}

#define ATOMIC(b, call)                          \
	do {                                     \
		size_t mark_ = (b)->len;         \
		int rc_ = (call);                \
		if (rc_)                         \
			truncate_to((b), mark_); \
		return rc_;                      \
	} while (0)

int sl_oai_json_chat_completion(sl_dynbuf *b, const sl_oai_meta *m,
                                const char *content, size_t len,
                                const char *finish_reason,
                                const sl_oai_usage *usage)
{
	ATOMIC(b, completion(b, m, 1, content, len, finish_reason, usage));
}

int sl_oai_json_text_completion(sl_dynbuf *b, const sl_oai_meta *m,
                                const char *text, size_t len,
                                const char *finish_reason,
                                const sl_oai_usage *usage)
{
	ATOMIC(b, completion(b, m, 0, text, len, finish_reason, usage));
}

static int chat_chunk(sl_dynbuf *b, const sl_oai_meta *m, const char *role,
                      const char *content, size_t len, const char *fr,
                      int usage_null)
{
	int rc;
	if ((rc = LIT(b, "data: ")) || (rc = head(b, m, "chat.completion.chunk")) ||
	    (rc = LIT(b, ",\"choices\":[{\"index\":0,\"delta\":{")))
		return rc;
	if (role && ((rc = LIT(b, "\"role\":")) || (rc = cstr_or_null(b, role))))
		return rc;
	if (content && (((role && (rc = chr(b, ',')))) ||
	                (rc = LIT(b, "\"content\":")) || (rc = str(b, content, len))))
		return rc;
	if ((rc = LIT(b, "},\"logprobs\":null,\"finish_reason\":")) ||
	    (rc = cstr_or_null(b, fr)) || (rc = LIT(b, "}]")))
		return rc;
	if (usage_null && (rc = LIT(b, ",\"usage\":null")))
		return rc;
	return LIT(b, "}\n\n");
}

int sl_oai_sse_chat_chunk(sl_dynbuf *b, const sl_oai_meta *m, const char *role,
                          const char *content, size_t len,
                          const char *finish_reason, int usage_null)
{
	ATOMIC(b, chat_chunk(b, m, role, content, len, finish_reason, usage_null));
}

static int text_chunk(sl_dynbuf *b, const sl_oai_meta *m, const char *text,
                      size_t len, const char *fr, int usage_null)
{
	int rc;
	if ((rc = LIT(b, "data: ")) || (rc = head(b, m, "text_completion")) ||
	    (rc = LIT(b, ",\"choices\":[{\"text\":")) ||
	    (rc = str(b, text ? text : "", text ? len : 0)) ||
	    (rc = LIT(b, ",\"index\":0,\"logprobs\":null,\"finish_reason\":")) ||
	    (rc = cstr_or_null(b, fr)) || (rc = LIT(b, "}]")))
		return rc;
	if (usage_null && (rc = LIT(b, ",\"usage\":null")))
		return rc;
	return LIT(b, "}\n\n");
}

int sl_oai_sse_text_chunk(sl_dynbuf *b, const sl_oai_meta *m, const char *text,
                          size_t len, const char *finish_reason,
                          int usage_null)
{
	ATOMIC(b, text_chunk(b, m, text, len, finish_reason, usage_null));
}

static int chunk_prefix(sl_dynbuf *b, const sl_oai_meta *m, sl_oai_kind kind)
{
	int rc, chat = kind == SL_OAI_CHAT;
	if ((rc = LIT(b, "data: ")) ||
	    (rc = head(b, m, chat ? "chat.completion.chunk" : "text_completion")))
		return rc;
	return chat ? LIT(b, ",\"choices\":[{\"index\":0,\"delta\":{")
	            : LIT(b, ",\"choices\":[{\"text\":");
}

int sl_oai_sse_chunk_prefix(sl_dynbuf *b, const sl_oai_meta *m, sl_oai_kind kind)
{
	size_t mark = b->len;
	int rc = chunk_prefix(b, m, kind);
	if (rc)
		truncate_to(b, mark);
	return rc;
}

/* The JSON string body of s, escaped as string_body() does, written at out
 * (room for 6 bytes per input byte).  Returns the bytes written. */
static size_t escape_into(char *out, const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	char *o = out;
	size_t i = 0;
	while (i < len) {
		size_t run = (size_t)(sl_json_plain_end(s + i, s + len) - (s + i));
		if (run) {
			memcpy(o, s + i, run);
			o += run;
			i += run;
			if (i == len)
				break;
		}
		unsigned cl = sl_json_byte_class[u[i]];
		if (cl == 2) {
			size_t n = sl_utf8_seq_len(s + i, len - i);
			if (n) {
				memcpy(o, s + i, n);
				o += n;
				i += n;
				continue;
			}
		}
		o += escape_byte(o, u[i]);
		i++;
	}
	return (size_t)(o - out);
}

static const char chat_mid[] = "\"content\":";
static const char chat_end[] = "},\"logprobs\":null,\"finish_reason\":null}]";
static const char text_end[] = ",\"index\":0,\"logprobs\":null,\"finish_reason\":null}]";
static const char usage_null_s[] = ",\"usage\":null";

/* Piece by piece, for a content whose worst-case escaping would not fit. */
static int content_chunk_pieces(sl_dynbuf *b, int chat, const char *prefix, size_t plen,
                                const char *content, size_t len, int usage_null)
{
	int rc;
	if ((rc = sl_dynbuf_add(b, prefix, plen)) ||
	    (chat && (rc = sl_dynbuf_add(b, chat_mid, sizeof chat_mid - 1))) ||
	    (rc = str(b, content, len)) ||
	    (rc = chat ? LIT(b, chat_end) : LIT(b, text_end)) ||
	    (usage_null && (rc = LIT(b, usage_null_s))))
		return rc;
	return LIT(b, "}\n\n");
}

int sl_oai_sse_content_chunk(sl_dynbuf *b, sl_oai_kind kind, const char *prefix,
                             size_t prefix_len, const char *content, size_t len,
                             int usage_null)
{
	int chat = kind == SL_OAI_CHAT;
	if (!content) {
		content = "";
		len = 0;
	}
	size_t fixed = prefix_len + sizeof chat_mid + sizeof text_end + sizeof usage_null_s + 8;
	if (len > (SIZE_MAX - fixed) / 6 || sl_dynbuf_reserve(b, fixed + len * 6) != SL_OK)
		ATOMIC(b, content_chunk_pieces(b, chat, prefix, prefix_len, content, len, usage_null));
	/* room for the worst case (every byte escaped to 6): write in place */
	char *o = b->p + b->len;
	memcpy(o, prefix, prefix_len);
	o += prefix_len;
	if (chat) {
		memcpy(o, chat_mid, sizeof chat_mid - 1);
		o += sizeof chat_mid - 1;
	}
	*o++ = '"';
	o += escape_into(o, content, len);
	*o++ = '"';
	if (chat) {
		memcpy(o, chat_end, sizeof chat_end - 1);
		o += sizeof chat_end - 1;
	} else {
		memcpy(o, text_end, sizeof text_end - 1);
		o += sizeof text_end - 1;
	}
	if (usage_null) {
		memcpy(o, usage_null_s, sizeof usage_null_s - 1);
		o += sizeof usage_null_s - 1;
	}
	memcpy(o, "}\n\n", 3);
	o += 3;
	b->len = (size_t)(o - b->p);
	b->p[b->len] = '\0';
	return SL_OK;
}

static int usage_chunk(sl_dynbuf *b, const sl_oai_meta *m, sl_oai_kind kind,
                       const sl_oai_usage *u)
{
	static const sl_oai_usage zero;
	int rc;
	if ((rc = LIT(b, "data: ")) ||
	    (rc = head(b, m, kind == SL_OAI_CHAT ? "chat.completion.chunk" : "text_completion")) ||
	    (rc = LIT(b, ",\"choices\":[],\"usage\":")) || (rc = usage_obj(b, u ? u : &zero)))
		return rc;
	return LIT(b, "}\n\n");
}

int sl_oai_sse_usage_chunk(sl_dynbuf *b, const sl_oai_meta *m, sl_oai_kind kind,
                           const sl_oai_usage *usage)
{
	ATOMIC(b, usage_chunk(b, m, kind, usage));
}

int sl_oai_sse_done(sl_dynbuf *b)
{
	return LIT(b, "data: [DONE]\n\n"); /* one append: atomic already */
}

static int error_obj(sl_dynbuf *b, const char *msg, const char *type,
                     const char *param, const char *code)
{
	int rc;
	if ((rc = LIT(b, "{\"error\":{\"message\":")) || (rc = cstr_or_null(b, msg ? msg : "")) ||
	    (rc = LIT(b, ",\"type\":")) || (rc = cstr_or_null(b, type ? type : "server_error")) ||
	    (rc = LIT(b, ",\"param\":")) || (rc = cstr_or_null(b, param)) ||
	    (rc = LIT(b, ",\"code\":")) || (rc = cstr_or_null(b, code)))
		return rc;
	return LIT(b, "}}");
}

int sl_oai_json_error(sl_dynbuf *b, const char *message, const char *type,
                      const char *param, const char *code)
{
	ATOMIC(b, error_obj(b, message, type, param, code));
}

int sl_oai_json_error_from(sl_dynbuf *b, const sl_oai_error *err)
{
	return sl_oai_json_error(b, err->message, err->type, err->param, err->code);
}

static int sse_error(sl_dynbuf *b, const char *message, const char *type,
                     const char *param, const char *code)
{
	int rc;
	if ((rc = LIT(b, "data: ")) || (rc = error_obj(b, message, type, param, code)))
		return rc;
	return LIT(b, "\n\n");
}

int sl_oai_sse_error(sl_dynbuf *b, const char *message, const char *type,
                     const char *param, const char *code)
{
	ATOMIC(b, sse_error(b, message, type, param, code));
}
