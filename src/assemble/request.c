/* request.c - template variables from a JSON request; see request.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "assemble/request.h"
#include "core/dynbuf.h"

struct sl_asm_request {
	json_t *root;      /* owns the strings docs and scalars point into */
	char **strs;       /* strings this object allocated */
	size_t n_strs, cap_strs;
	sl_kv *kv;
	size_t n_kv, cap_kv;
	sl_tdoc *docs;
	sl_tvars vars;
};

static int own(sl_asm_request *r, char *s)
{
	if (!s)
		return SL_ENOMEM;
	if (r->n_strs == r->cap_strs) {
		size_t cap = r->cap_strs ? r->cap_strs * 2 : 16;
		char **np = realloc(r->strs, cap * sizeof *np);
		if (!np) {
			free(s);
			return SL_ENOMEM;
		}
		r->strs = np;
		r->cap_strs = cap;
	}
	r->strs[r->n_strs++] = s;
	return SL_OK;
}

static int add_kv(sl_asm_request *r, const char *key, const char *value)
{
	if (r->n_kv == r->cap_kv) {
		size_t cap = r->cap_kv ? r->cap_kv * 2 : 16;
		sl_kv *np = realloc(r->kv, cap * sizeof *np);
		if (!np)
			return SL_ENOMEM;
		r->kv = np;
		r->cap_kv = cap;
	}
	r->kv[r->n_kv].key = key;
	r->kv[r->n_kv].value = value;
	r->n_kv++;
	return SL_OK;
}

/* Appends a message's content (string or array of text parts). */
static int content_text(json_t *content, sl_dynbuf *b)
{
	if (json_is_string(content))
		return sl_dynbuf_add(b, json_string_value(content), json_string_length(content));
	if (!json_is_array(content))
		return SL_OK;
	size_t i;
	json_t *part;
	int first = 1, rc;
	json_array_foreach(content, i, part) {
		json_t *t = json_object_get(part, "text");
		if (!json_is_string(t))
			continue;
		if (!first && (rc = sl_dynbuf_add(b, "\n", 1)))
			return rc;
		if ((rc = sl_dynbuf_add(b, json_string_value(t), json_string_length(t))))
			return rc;
		first = 0;
	}
	return SL_OK;
}

static char *value_text(json_t *v)
{
	if (json_is_string(v))
		return strdup(json_string_value(v));
	if (json_is_null(v))
		return strdup("");
	return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

static int by_score(const void *a, const void *b)
{
	const sl_tdoc *x = a, *y = b;
	if (x->score > y->score)
		return -1;
	if (x->score < y->score)
		return 1;
	/* ties keep the given order: text_len holds the index meanwhile */
	return x->text_len < y->text_len ? -1 : x->text_len > y->text_len;
}

#define FAIL(code, ...)                                         \
	do {                                                    \
		if (err && errlen)                              \
			snprintf(err, errlen, __VA_ARGS__);     \
		rc = (code);                                    \
		goto out;                                       \
	} while (0)

int sl_asm_request_parse(const char *json, size_t len, sl_asm_request **out,
                         char *err, size_t errlen)
{
	int rc = SL_OK;
	if (err && errlen)
		err[0] = '\0';
	if (!out || (!json && len))
		return SL_EINVAL;
	if (len > SL_ASM_REQUEST_MAX) {
		if (err && errlen)
			snprintf(err, errlen, "request is %zu bytes, over %u", len, SL_ASM_REQUEST_MAX);
		return SL_ETOOBIG;
	}
	sl_asm_request *r = calloc(1, sizeof *r);
	if (!r)
		return SL_ENOMEM;
	sl_dynbuf tr, q;
	sl_dynbuf_init(&tr, SL_ASM_REQUEST_MAX);
	sl_dynbuf_init(&q, SL_ASM_REQUEST_MAX);
	json_error_t je;
	r->root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!r->root)
		FAIL(SL_EINVAL, "request: %s at line %d column %d", je.text, je.line, je.column);
	if (!json_is_object(r->root))
		FAIL(SL_EINVAL, "request: not a JSON object");

	json_t *msgs = json_object_get(r->root, "messages");
	if (msgs && !json_is_array(msgs))
		FAIL(SL_EINVAL, "request: messages is not an array");
	size_t last_user = (size_t)-1, i;
	json_t *m;
	json_array_foreach(msgs, i, m) {
		if (!json_is_object(m))
			FAIL(SL_EINVAL, "request: messages[%zu] is not an object", i);
		const char *role = json_string_value(json_object_get(m, "role"));
		if (!role)
			FAIL(SL_EINVAL, "request: messages[%zu] has no role", i);
		if (!strcmp(role, "user"))
			last_user = i;
	}
	json_array_foreach(msgs, i, m) {
		json_t *content = json_object_get(m, "content");
		if (i == last_user) {
			if ((rc = content_text(content, &q)))
				goto out;
			continue;
		}
		if ((tr.len && (rc = sl_dynbuf_add(&tr, "\n", 1))) ||
		    (rc = sl_dynbuf_printf(&tr, "%s: ",
		                           json_string_value(json_object_get(m, "role")))) ||
		    (rc = content_text(content, &tr)))
			goto out;
	}
	char *qs = strdup(sl_dynbuf_str(&q)), *ts = strdup(sl_dynbuf_str(&tr));
	if ((rc = own(r, qs)) || (rc = own(r, ts)) || (rc = add_kv(r, "query", qs)) ||
	    (rc = add_kv(r, "messages", ts)))
		goto out;

	static const char *const plain[] = {"user", "model"};
	for (size_t k = 0; k < 2; k++) {
		json_t *v = json_object_get(r->root, plain[k]);
		if (!v || json_is_null(v))
			continue;
		if (!json_is_string(v))
			FAIL(SL_EINVAL, "request: %s is not a string", plain[k]);
		if ((rc = add_kv(r, plain[k], json_string_value(v))))
			goto out;
	}

	json_t *meta = json_object_get(r->root, "metadata");
	if (meta && !json_is_null(meta)) {
		if (!json_is_object(meta))
			FAIL(SL_EINVAL, "request: metadata is not an object");
		const char *key;
		json_t *v;
		json_object_foreach(meta, key, v) {
			size_t kl = strlen(key) + sizeof "metadata.";
			char *full = malloc(kl);
			if ((rc = own(r, full)))
				goto out;
			snprintf(full, kl, "metadata.%s", key);
			char *val = value_text(v);
			if ((rc = own(r, val)) || (rc = add_kv(r, full, val)))
				goto out;
		}
	}

	json_t *docs = json_object_get(r->root, "docs");
	size_t nd = 0;
	if (docs && !json_is_null(docs)) {
		if (!json_is_array(docs))
			FAIL(SL_EINVAL, "request: docs is not an array");
		nd = json_array_size(docs);
		if (nd > SL_ASM_MAX_DOCS)
			FAIL(SL_ETOOBIG, "request: %zu docs, over %u", nd, SL_ASM_MAX_DOCS);
	}
	if (nd) {
		r->docs = calloc(nd, sizeof *r->docs);
		if (!r->docs)
			FAIL(SL_ENOMEM, "out of memory");
	}
	int all_scored = 1;
	json_t *d;
	json_array_foreach(docs, i, d) {
		sl_tdoc *td = &r->docs[i];
		if (!json_is_object(d))
			FAIL(SL_EINVAL, "request: docs[%zu] is not an object", i);
		json_t *text = json_object_get(d, "text"), *id = json_object_get(d, "id"),
		       *score = json_object_get(d, "score");
		if (!json_is_string(text))
			FAIL(SL_EINVAL, "request: docs[%zu].text is not a string", i);
		td->text = json_string_value(text);
		td->text_len = i; /* the index, for a stable sort; length set below */
		if (json_is_string(id)) {
			td->id = json_string_value(id);
		} else if (json_is_number(id)) {
			char *s = value_text(id);
			if ((rc = own(r, s)))
				goto out;
			td->id = s;
		} else if (id && !json_is_null(id)) {
			FAIL(SL_EINVAL, "request: docs[%zu].id is not a string", i);
		}
		if (json_is_number(score)) {
			td->score = json_number_value(score);
		} else if (!score || json_is_null(score)) {
			td->score = NAN;
			all_scored = 0;
		} else {
			FAIL(SL_EINVAL, "request: docs[%zu].score is not a number", i);
		}
	}
	if (nd > 1 && all_scored)
		qsort(r->docs, nd, sizeof *r->docs, by_score);
	for (i = 0; i < nd; i++) /* the index -> the length (NULs included) */
		r->docs[i].text_len = json_string_length(
			json_object_get(json_array_get(docs, r->docs[i].text_len), "text"));

	r->vars.vars = r->kv;
	r->vars.n_vars = r->n_kv;
	r->vars.docs = r->docs;
	r->vars.n_docs = nd;
out:
	sl_dynbuf_free(&tr);
	sl_dynbuf_free(&q);
	if (rc) {
		if (rc == SL_ENOMEM && err && errlen && !err[0])
			snprintf(err, errlen, "out of memory");
		sl_asm_request_free(r);
		return rc;
	}
	*out = r;
	return SL_OK;
}

const sl_tvars *sl_asm_request_vars(const sl_asm_request *r)
{
	return &r->vars;
}

void sl_asm_request_free(sl_asm_request *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_strs; i++)
		free(r->strs[i]);
	free(r->strs);
	free(r->kv);
	free(r->docs);
	json_decref(r->root);
	free(r);
}
