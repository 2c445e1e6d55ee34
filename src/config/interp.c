/* interp.c - ${VAR} interpolation of configuration values (config_int.h).
 *
 *   ${NAME}            the value of environment variable NAME; an error when
 *                      NAME is not set
 *   ${NAME:-default}   NAME's value, or "default" when NAME is unset or
 *                      empty (the shell's rule); default is literal text up
 *                      to the first "}" (no nesting)
 *   $${                a literal "${"
 * NAME is [A-Za-z_][A-Za-z0-9_]*.  Any other "$" is literal text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "config/config_int.h"
#include "core/dynbuf.h"

static int name_start(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int name_char(int c)
{
	return name_start(c) || (c >= '0' && c <= '9');
}

int sl__cfg_interp(const char *s, size_t len, char **out, size_t *outlen, char *err,
                   size_t errlen)
{
	*out = NULL;
	*outlen = 0;
	/* Fast path: nothing to expand. */
	int any = 0;
	for (size_t i = 0; i + 1 < len; i++)
		if (s[i] == '$' && s[i + 1] == '{') {
			any = 1;
			break;
		}
	if (!any)
		return SL_OK;

	sl_dynbuf b;
	sl_dynbuf_init(&b, SL__CFG_MAX_VALUE);
	int rc = SL_OK;
	size_t i = 0;
	while (i < len && rc == SL_OK) {
		if (s[i] != '$') {
			size_t j = i;
			while (j < len && s[j] != '$')
				j++;
			rc = sl_dynbuf_add(&b, s + i, j - i);
			i = j;
			continue;
		}
		/* s[i] == '$' */
		if (i + 2 < len && s[i + 1] == '$' && s[i + 2] == '{') {
			rc = sl_dynbuf_add(&b, "${", 2);
			i += 3;
			continue;
		}
		if (i + 1 >= len || s[i + 1] != '{') {
			rc = sl_dynbuf_add(&b, "$", 1);
			i++;
			continue;
		}
		/* "${" */
		size_t start = i + 2, close = start;
		while (close < len && s[close] != '}')
			close++;
		if (close >= len) {
			snprintf(err, errlen, "unterminated \"${\" (use \"$${\" for a literal \"${\")");
			rc = SL_EINVAL;
			break;
		}
		size_t n = start;
		if (n < close && name_start((unsigned char)s[n]))
			for (n++; n < close && name_char((unsigned char)s[n]); n++)
				;
		const char *def = NULL;
		size_t deflen = 0;
		if (n == close) {
			/* ${NAME} */
		} else if (n > start && close - n >= 2 && s[n] == ':' && s[n + 1] == '-') {
			def = s + n + 2;
			deflen = close - (n + 2);
		} else {
			n = start; /* report the whole inside */
		}
		if (n == start) {
			char q[96];
			/* up to the first ':' for the message */
			size_t e = start;
			while (e < close && s[e] != ':')
				e++;
			sl__cfg_quote(q, sizeof q, s + start, e - start, 48);
			snprintf(err, errlen,
			         "invalid variable name %s in \"${...}\" (expected [A-Za-z_][A-Za-z0-9_]*)",
			         q);
			rc = SL_EINVAL;
			break;
		}
		char name[256];
		size_t nl = n - start;
		if (nl >= sizeof name) {
			snprintf(err, errlen, "variable name longer than %zu characters", sizeof name - 1);
			rc = SL_EINVAL;
			break;
		}
		memcpy(name, s + start, nl);
		name[nl] = '\0';
		const char *v = getenv(name);
		if (def) {
			if (v && *v)
				rc = sl_dynbuf_addstr(&b, v);
			else
				rc = sl_dynbuf_add(&b, def, deflen);
		} else if (!v) {
			snprintf(err, errlen,
			         "environment variable \"%s\" is not set (use ${%s:-default} for a default)",
			         name, name);
			rc = SL_EINVAL;
			break;
		} else {
			rc = sl_dynbuf_addstr(&b, v);
		}
		i = close + 1;
	}
	if (rc == SL_ETOOBIG) {
		snprintf(err, errlen, "value longer than %u bytes after interpolation",
		         (unsigned)SL__CFG_MAX_VALUE);
		rc = SL_EINVAL;
	}
	if (rc != SL_OK) {
		sl_dynbuf_free(&b);
		return rc;
	}
	size_t l;
	char *p = sl_dynbuf_take(&b, &l);
	if (!p) { /* empty result: dynbuf never allocated */
		p = calloc(1, 1);
		if (!p)
			return SL_ENOMEM;
		l = 0;
	}
	*out = p;
	*outlen = l;
	return SL_OK;
}
