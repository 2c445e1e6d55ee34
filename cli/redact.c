/* redact.c - `sluice redact`: PII redaction (and the safety filter) of
 * stdin to stdout, whole-text or through the streaming path.
 *
 *   sluice redact [--classes LIST] [--stream-chunk N] [--custom NAME=REGEX]...
 *                 [--block TERM]... [--block-re REGEX]... [--stats]
 *
 * Exit status: 0 done; 1 an error (I/O, a pattern that does not compile);
 * 2 a usage error (unknown option or class); 3 a safety rule matched (the
 * output stops before the match, "sluice redact: blocked" on stderr). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/dynbuf.h"
#include "post/redact.h"

#define MAX_INPUT ((size_t)1 << 30)
#define MAX_LIST 64 /* --custom, --block, --block-re each */

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: sluice redact [options] < text > redacted\n"
	        "\n"
	        "  --classes LIST     comma-separated: email,phone,card,iban,ssn,ipv4,ipv6,secret\n"
	        "                     or all (default: all)\n"
	        "  --stream-chunk N   feed the text through the streaming redactor in N-byte\n"
	        "                     pieces (the output is the same as whole-text)\n"
	        "  --custom NAME=RE   also redact matches of the PCRE2 regex RE as\n"
	        "                     [REDACTED:NAME] (max 256 bytes per match); repeatable\n"
	        "  --block TERM       stop the output before TERM (whole word, any case); repeatable\n"
	        "  --block-re RE      stop the output before a match of RE; repeatable\n"
	        "  --stats            print the counts as JSON on stderr\n"
	        "\n"
	        "Exit status: 0 ok, 1 error, 2 usage, 3 blocked by a safety rule.\n");
}

static int bad_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "sluice redact: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	return 2;
}

static int read_all(FILE *f, sl_dynbuf *b)
{
	char tmp[65536];
	size_t n;
	while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
		if (sl_dynbuf_add(b, tmp, n))
			return -1;
	return ferror(f) ? -1 : 0;
}

static int flush_out(sl_dynbuf *out)
{
	if (out->len && fwrite(out->p, 1, out->len, stdout) != out->len)
		return -1;
	sl_dynbuf_reset(out);
	return 0;
}

int sl_cli_redact(int argc, char **argv)
{
	unsigned classes = SL_PII_ALL;
	long chunk = 0;
	int stats = 0;
	sl_redact_custom custom[MAX_LIST];
	char *names[MAX_LIST];
	const char *terms[MAX_LIST], *bres[MAX_LIST];
	size_t nc = 0, nt = 0, nb = 0;
	char err[256];
	int code = 2;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			code = 0;
			goto out;
		}
		const char *eq = strchr(a, '=');
		size_t nl = eq ? (size_t)(eq - a) : strlen(a);
		const char *val = eq ? eq + 1 : NULL;
#define IS(name) (nl == strlen(name) && !strncmp(a, name, nl))
		if (IS("--stats")) {
			stats = 1;
			continue;
		}
		if (!IS("--classes") && !IS("--stream-chunk") && !IS("--custom") &&
		    !IS("--block") && !IS("--block-re")) {
			code = bad_usage("unknown option '%s'", a);
			usage(stderr);
			goto out;
		}
		if (!val) {
			if (i + 1 >= argc) {
				code = bad_usage("%s needs a value", a);
				goto out;
			}
			val = argv[++i];
		}
		if (IS("--classes")) {
			if (sl_pii_class_parse(val, &classes, err, sizeof err)) {
				code = bad_usage("%s", err);
				goto out;
			}
		} else if (IS("--stream-chunk")) {
			char *end;
			errno = 0;
			chunk = strtol(val, &end, 10);
			if (errno || *end || chunk < 1 || chunk > (1L << 30)) {
				code = bad_usage("--stream-chunk: '%s' is not a size in 1..2^30", val);
				goto out;
			}
		} else if (IS("--custom")) {
			const char *q = strchr(val, '=');
			if (!q || q == val || nc == MAX_LIST) {
				code = bad_usage("--custom: '%s' is not NAME=REGEX (at most 64)", val);
				goto out;
			}
			names[nc] = strndup(val, (size_t)(q - val));
			custom[nc] = (sl_redact_custom){names[nc], q + 1, NULL, 0};
			nc++;
		} else if (IS("--block")) {
			if (nt == MAX_LIST) {
				code = bad_usage("%s: at most 64", "--block");
				goto out;
			}
			terms[nt++] = val;
		} else {
			if (nb == MAX_LIST) {
				code = bad_usage("%s: at most 64", "--block-re");
				goto out;
			}
			bres[nb++] = val;
		}
#undef IS
	}

	sl_redact_opts o = {classes, custom, nc, terms, nt, bres, nb};
	sl_redactor *r = NULL;
	if (sl_redactor_create(&o, &r, err, sizeof err)) {
		fprintf(stderr, "sluice redact: %s\n", err);
		code = 1;
		goto out;
	}
	sl_dynbuf in, outb;
	sl_dynbuf_init(&in, MAX_INPUT);
	sl_dynbuf_init(&outb, MAX_INPUT * 2);
	int rc = SL_OK, blocked = 0;
	sl_redact_stats st;
	code = 1;
	if (read_all(stdin, &in)) {
		fprintf(stderr, "sluice redact: cannot read stdin (over 1 GiB?)\n");
		goto done;
	}
	if (chunk == 0) {
		rc = sl_redact_text(r, in.p ? in.p : "", in.len, &outb, &blocked, &st);
		if (rc == SL_OK && flush_out(&outb))
			rc = SL_ESYS;
	} else {
		sl_redact_stream *s;
		rc = sl_redact_stream_new(r, &s);
		for (size_t off = 0; rc == SL_OK && off < in.len; off += (size_t)chunk) {
			size_t n = in.len - off < (size_t)chunk ? in.len - off : (size_t)chunk;
			rc = sl_redact_stream_push(s, in.p + off, n, &outb);
			if (flush_out(&outb))
				rc = SL_ESYS;
		}
		if (rc == SL_OK) {
			rc = sl_redact_stream_finish(s, &outb);
			if (flush_out(&outb))
				rc = SL_ESYS;
		}
		if (s)
			st = *sl_redact_stream_stats(s);
		if (rc == SL_EFILTER) {
			blocked = 1;
			rc = SL_OK;
		}
		sl_redact_stream_free(s);
	}
	if (fflush(stdout) && rc == SL_OK)
		rc = SL_ESYS;
	if (rc != SL_OK) {
		fprintf(stderr, "sluice redact: %s\n", sl_strerror(rc));
		goto done;
	}
	if (stats) {
		fprintf(stderr, "{");
		for (unsigned i = 0; i < SL_PII__COUNT; i++)
			fprintf(stderr, "\"%s\":%llu,", sl_pii_class_name(i),
			        (unsigned long long)st.matches[i]);
		fprintf(stderr, "\"custom\":%llu,\"blocked\":%llu,\"bytes_in\":%llu,\"bytes_out\":%llu}\n",
		        (unsigned long long)st.custom, (unsigned long long)st.blocked,
		        (unsigned long long)st.bytes_in, (unsigned long long)st.bytes_out);
	}
	code = 0;
	if (blocked) {
		fprintf(stderr, "sluice redact: blocked\n");
		code = 3;
	}
done:
	sl_dynbuf_free(&in);
	sl_dynbuf_free(&outb);
	sl_redactor_destroy(r);
out:
	for (size_t i = 0; i < nc; i++)
		free(names[i]);
	return code;
}
