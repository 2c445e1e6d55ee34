/* assemble.c - assembly of the prompt parts and the budget fitter; see
 * assemble.h.
 *
 * Every probe re-renders the whole assembly with a candidate document list
 * and counts it: O(log docs + log text) renders per request.  Re-rendering
 * is simpler than computing per-part deltas and is exact for counters that
 * are not additive (a real BPE tokenizer is not). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assemble/assemble.h"

typedef struct fitter {
	const sl_assembly *a;
	const sl_tvars *in;
	sl_tvars v;        /* what a probe renders: in, with docs = docs */
	sl_tdoc *docs;     /* copy of in->docs (the cut one points to cut) */
	char *cut;         /* the truncated text + "…" */
	sl_asm_format fmt;
	sl_token_count_fn count;
	void *count_user;
	sl_dynbuf part;    /* one rendered part (chat mode) */
	char *err;
	size_t errlen;
} fitter;

static int add_lit(sl_dynbuf *b, const char *s)
{
	return sl_dynbuf_add(b, s, strlen(s));
}

/* Appends a rendered or given part: verbatim (UTF-8 repaired) in prompt
 * mode; as a {"role":..,"content":..} object in chat mode.  *tokens gets
 * the part's count (plus the per-message overhead in chat mode). */
static int add_part(fitter *f, sl_dynbuf *out, const char *role, const sl_template *t,
                    const char *text, size_t *tokens)
{
	int rc;
	sl_dynbuf_reset(&f->part);
	if (t)
		rc = sl_template_render(t, &f->v, &f->part, f->err, f->errlen);
	else
		rc = sl_template_escape_append(&f->part, SL_TESC_NONE, text ? text : "",
		                               text ? strlen(text) : 0);
	if (rc)
		return rc;
	if (f->fmt == SL_ASM_PROMPT) {
		*tokens = 0; /* counted over the whole string */
		return sl_dynbuf_add(out, f->part.p ? f->part.p : "", f->part.len);
	}
	*tokens = f->count(f->count_user, sl_dynbuf_str(&f->part), f->part.len) +
	          SL_CHAT_TOKENS_PER_MESSAGE;
	if ((rc = add_lit(out, out->len > 1 ? ",{\"role\":\"" : "{\"role\":\"")) ||
	    (rc = add_lit(out, role)) || (rc = add_lit(out, "\",\"content\":\"")) ||
	    (rc = sl_template_escape_append(out, SL_TESC_JSON, sl_dynbuf_str(&f->part),
	                                    f->part.len)) ||
	    (rc = add_lit(out, "\"}")))
		return rc;
	return SL_OK;
}

/* Renders the assembly with the first k documents of f->docs into out and
 * counts it. */
static int render_all(fitter *f, size_t k, sl_dynbuf *out, size_t *tokens)
{
	const sl_assembly *a = f->a;
	size_t tk, total = 0;
	int rc;
	f->v.n_docs = k;
	sl_dynbuf_reset(out);
	int chat = f->fmt == SL_ASM_CHAT;
	if (chat && (rc = add_lit(out, "[")))
		return rc;
	if (a->system) {
		size_t before = out->len;
		if ((rc = add_part(f, out, "system", a->system, NULL, &tk)))
			return rc;
		if (f->part.len == 0) {
			out->len = before; /* an empty system message is left out */
			if (out->p)
				out->p[out->len] = '\0';
		} else {
			total += tk;
			if (!chat && (rc = add_lit(out, "\n\n")))
				return rc;
		}
	}
	for (size_t i = 0; i < a->n_examples; i++) {
		const sl_fewshot *ex = &a->examples[i];
		if ((!chat && (rc = add_lit(out, "User: "))) ||
		    (rc = add_part(f, out, "user", NULL, ex->user, &tk)))
			return rc;
		total += tk;
		if ((!chat && (rc = add_lit(out, "\nAssistant: "))) ||
		    (rc = add_part(f, out, "assistant", NULL, ex->assistant, &tk)))
			return rc;
		total += tk;
		if (!chat && (rc = add_lit(out, "\n\n")))
			return rc;
	}
	if (!chat && a->n_examples && (rc = add_lit(out, "User: ")))
		return rc;
	if ((rc = add_part(f, out, "user", a->user, NULL, &tk)))
		return rc;
	total += tk;
	if (!chat && a->n_examples && (rc = add_lit(out, "\nAssistant:")))
		return rc;
	if (chat) {
		if ((rc = add_lit(out, "]")))
			return rc;
		total += SL_CHAT_TOKENS_REPLY;
	} else {
		total = f->count(f->count_user, sl_dynbuf_str(out), out->len);
	}
	*tokens = total;
	return SL_OK;
}

/* 1 = fits, 0 = does not (over the token budget or the byte bound),
 * negative = another error. */
static int probe(fitter *f, size_t k, size_t max, sl_dynbuf *out, size_t *tokens)
{
	int rc = render_all(f, k, out, tokens);
	if (rc == SL_ETOOBIG) {
		*tokens = SIZE_MAX;
		return 0;
	}
	if (rc)
		return rc;
	return *tokens <= max;
}

static int is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The cut point for a prefix of at most p bytes of s: on a code-point
 * boundary, then back to the last blank when one is within 64 bytes, with
 * trailing blanks dropped. */
static size_t cut_point(const char *s, size_t p)
{
	while (p > 0 && ((unsigned char)s[p] & 0xC0) == 0x80)
		p--;
	size_t w = p;
	while (w > 0 && p - w < 64 && !is_space((unsigned char)s[w]))
		w--;
	if (is_space((unsigned char)s[w]) && p - w < 64)
		p = w;
	while (p > 0 && is_space((unsigned char)s[p - 1]))
		p--;
	return p;
}

/* Points docs[k] at its first p bytes (cut) followed by the ellipsis. */
static void set_cut(fitter *f, size_t k, size_t p)
{
	const sl_tdoc *d = &f->in->docs[k];
	memcpy(f->cut, d->text, p);
	memcpy(f->cut + p, SL_ASSEMBLE_ELLIPSIS, sizeof SL_ASSEMBLE_ELLIPSIS);
	f->docs[k].text = f->cut;
	f->docs[k].text_len = p + sizeof SL_ASSEMBLE_ELLIPSIS - 1;
}

int sl_assemble_fit(const sl_assembly *a, const sl_tvars *vars,
                    const sl_assemble_opts *opts, sl_dynbuf *out,
                    sl_assemble_info *info, char *err, size_t errlen)
{
	static const sl_assemble_opts defaults;
	static const sl_tvars novars;
	sl_assemble_info dummy;
	if (!info)
		info = &dummy;
	memset(info, 0, sizeof *info);
	if (err && errlen)
		err[0] = '\0';
	if (!a || !a->user || !out || (a->n_examples && !a->examples))
		return SL_EINVAL;
	if (!opts)
		opts = &defaults;
	if (!vars)
		vars = &novars;
	size_t max = opts->max_prompt_tokens;

	fitter f;
	memset(&f, 0, sizeof f);
	f.a = a;
	f.in = vars;
	f.v = *vars;
	f.fmt = opts->format;
	f.count = opts->count ? opts->count : sl_tokens_approx;
	f.count_user = opts->count_user;
	f.err = err;
	f.errlen = errlen;
	size_t max_bytes = out->max;
	sl_dynbuf_reset(out);
	sl_dynbuf_init(&f.part, max_bytes);
	size_t n = vars->n_docs;
	info->docs_given = n;
	int rc = SL_OK;
	if (n) {
		f.docs = malloc(n * sizeof *f.docs);
		if (!f.docs) {
			rc = SL_ENOMEM;
			goto done;
		}
		memcpy(f.docs, vars->docs, n * sizeof *f.docs);
		for (size_t i = 0; i < n; i++)
			if (f.docs[i].text_len == (size_t)-1)
				f.docs[i].text_len = f.docs[i].text ? strlen(f.docs[i].text) : 0;
		f.v.docs = f.docs;
	}

	size_t tokens;
	if (max == 0) {
		rc = render_all(&f, n, out, &tokens);
		if (rc == SL_OK) {
			info->tokens = tokens;
			info->docs_used = n;
		} else if (rc == SL_ETOOBIG && err && errlen) {
			snprintf(err, errlen, "prompt over the output bound of %zu bytes", max_bytes);
		}
		goto done;
	}
	int fit = probe(&f, n, max, out, &tokens);
	if (fit < 0) {
		rc = fit;
		goto done;
	}
	if (fit) {
		info->tokens = tokens;
		info->docs_used = n;
		goto done;
	}
	size_t base;
	fit = n ? probe(&f, 0, max, out, &base) : 0;
	if (n == 0)
		base = tokens;
	if (fit < 0) {
		rc = fit;
		goto done;
	}
	if (!fit) {
		size_t qt = 0;
		for (size_t i = 0; i < vars->n_vars; i++)
			if (vars->vars[i].key && !strcmp(vars->vars[i].key, "query") &&
			    vars->vars[i].value)
				qt = f.count(f.count_user, vars->vars[i].value,
				             strlen(vars->vars[i].value));
		if (err && errlen) {
			if (base == SIZE_MAX)
				snprintf(err, errlen,
				         "prompt without documents is over the output bound of %zu bytes",
				         max_bytes);
			else
				snprintf(err, errlen,
				         "prompt without documents needs %zu tokens (query: %zu), over "
				         "max_prompt_tokens %zu",
				         base, qt, max);
		}
		rc = SL_ETOOBIG;
		goto done;
	}
	/* docs[0..lo) fit, docs[0..hi) do not */
	size_t lo = 0, hi = n;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		fit = probe(&f, mid, max, out, &tokens);
		if (fit < 0) {
			rc = fit;
			goto done;
		}
		if (fit)
			lo = mid;
		else
			hi = mid;
	}
	size_t k = lo; /* docs[k] is the one to cut */
	size_t best = 0;
	size_t tl = f.docs[k].text_len;
	if (tl > 0) {
		f.cut = malloc(tl + sizeof SL_ASSEMBLE_ELLIPSIS);
		if (!f.cut) {
			rc = SL_ENOMEM;
			goto done;
		}
		/* the largest prefix length p in [1, tl) whose cut fits */
		size_t plo = 0, phi = tl;
		while (phi - plo > 1) {
			size_t mid = plo + (phi - plo) / 2;
			size_t c = cut_point(vars->docs[k].text, mid);
			if (c == 0) {
				plo = mid;
				continue;
			}
			set_cut(&f, k, c);
			fit = probe(&f, k + 1, max, out, &tokens);
			if (fit < 0) {
				rc = fit;
				goto done;
			}
			if (fit)
				plo = mid;
			else
				phi = mid;
		}
		best = plo ? cut_point(vars->docs[k].text, plo) : 0;
	}
	if (best > 0) {
		set_cut(&f, k, best);
		fit = probe(&f, k + 1, max, out, &tokens);
		if (fit < 0) {
			rc = fit;
			goto done;
		}
		if (fit) {
			info->tokens = tokens;
			info->docs_used = k + 1;
			info->truncated = 1;
			info->cut_from = tl;
			info->cut_to = best;
			goto done;
		}
	}
	/* not one word of docs[k] fits: the first k documents */
	fit = probe(&f, k, max, out, &tokens);
	if (fit < 0) {
		rc = fit;
		goto done;
	}
	if (!fit) { /* only a counter that shrinks with more text gets here */
		if (err && errlen)
			snprintf(err, errlen, "token counter is not monotonic: %zu documents "
			         "fitted, then did not", k);
		rc = SL_ETOOBIG;
		goto done;
	}
	info->tokens = tokens;
	info->docs_used = k;
done:
	if (rc != SL_OK) {
		sl_dynbuf_reset(out);
		info->tokens = 0;
		info->docs_used = 0;
		info->truncated = 0;
	}
	sl_dynbuf_free(&f.part);
	free(f.docs);
	free(f.cut);
	return rc;
}
