/* assemble.c - `sluice assemble`: renders a prompt template from a JSON
 * request on stdin (see src/assemble/request.h for its shape) and prints the
 * prompt, or with --chat the chat messages as a JSON array.
 * Exit: 0 printed; 1 a bad template (NAME:LINE:COL: message), an unreadable
 * file, a bad request or a prompt that cannot fit; 2 usage. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "assemble/assemble.h"
#include "assemble/request.h"
#include "cli.h"

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: sluice assemble --template FILE [--system FILE] [--examples FILE]\n"
	        "                       [--max-prompt-tokens N] [--chat] [-v] < request.json\n"
	        "\n"
	        "Renders the template with the request on stdin:\n"
	        "  {\"messages\":[{\"role\":\"user\",\"content\":\"...\"}], \"user\":\"...\",\n"
	        "   \"model\":\"...\", \"metadata\":{...}, \"docs\":[{\"id\":..,\"text\":..,\"score\":..}]}\n"
	        "and prints the prompt.  Variables: query, messages, user, model,\n"
	        "metadata.KEY, docs (id, text, score, rank inside {{#docs}}).\n"
	        "\n"
	        "  --template FILE         the user-message template (required)\n"
	        "  --system FILE           a template for the system prompt\n"
	        "  --examples FILE         few-shot pairs: [{\"user\":..,\"assistant\":..}, ...]\n"
	        "  --max-prompt-tokens N   fit the prompt into N tokens (approximate\n"
	        "                          counter): drop, then cut, the lowest-ranked docs\n"
	        "  --chat                  print [{\"role\":..,\"content\":..}, ...] instead\n"
	        "  -v                      report tokens and documents used on stderr\n"
	        "\n"
	        "Exit status: 0 ok, 1 bad template (FILE:LINE:COL: message), bad request\n"
	        "or a prompt that cannot fit, 2 usage.\n");
}

static int read_all(FILE *f, sl_dynbuf *b)
{
	char chunk[8192];
	size_t got;
	int rc;
	while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
		if ((rc = sl_dynbuf_add(b, chunk, got)))
			return rc;
	return ferror(f) ? SL_ESYS : SL_OK;
}

/* Loads few-shot pairs; the strings point into *root. */
static int load_examples(const char *path, json_t **root, sl_fewshot **out, size_t *n)
{
	json_error_t je;
	json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		fprintf(stderr, "sluice assemble: %s:%d:%d: %s\n", path, je.line, je.column, je.text);
		return -1;
	}
	if (!json_is_array(j)) {
		fprintf(stderr, "sluice assemble: %s: not a JSON array\n", path);
		json_decref(j);
		return -1;
	}
	size_t cnt = json_array_size(j), i;
	sl_fewshot *ex = calloc(cnt ? cnt : 1, sizeof *ex);
	if (!ex) {
		json_decref(j);
		return -1;
	}
	json_t *e;
	json_array_foreach(j, i, e) {
		ex[i].user = json_string_value(json_object_get(e, "user"));
		ex[i].assistant = json_string_value(json_object_get(e, "assistant"));
		if (!ex[i].user || !ex[i].assistant) {
			fprintf(stderr, "sluice assemble: %s: [%zu] needs string \"user\" and "
			        "\"assistant\"\n", path, i);
			free(ex);
			json_decref(j);
			return -1;
		}
	}
	*root = j;
	*out = ex;
	*n = cnt;
	return 0;
}

int sl_cli_assemble(int argc, char **argv)
{
	const char *tpath = NULL, *spath = NULL, *epath = NULL;
	size_t max_tokens = 0;
	int chat = 0, verbose = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--chat")) {
			chat = 1;
		} else if (!strcmp(a, "-v")) {
			verbose = 1;
		} else if ((!strcmp(a, "--template") || !strcmp(a, "--system") ||
		            !strcmp(a, "--examples") || !strcmp(a, "--max-prompt-tokens")) &&
		           i + 1 < argc) {
			const char *v = argv[++i];
			if (!strcmp(a, "--template")) {
				tpath = v;
			} else if (!strcmp(a, "--system")) {
				spath = v;
			} else if (!strcmp(a, "--examples")) {
				epath = v;
			} else {
				char *end;
				errno = 0;
				unsigned long long n = strtoull(v, &end, 10);
				if (errno || end == v || *end || v[0] == '-' || n == 0) {
					fprintf(stderr, "sluice assemble: --max-prompt-tokens needs a "
					        "positive integer, not '%s'\n", v);
					return 2;
				}
				max_tokens = (size_t)n;
			}
		} else {
			fprintf(stderr, "sluice assemble: unknown or incomplete option '%s'\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (!tpath) {
		fprintf(stderr, "sluice assemble: --template FILE is required\n");
		usage(stderr);
		return 2;
	}

	int status = 1;
	char err[512];
	sl_template *ut = NULL, *st = NULL;
	sl_asm_request *req = NULL;
	json_t *exroot = NULL;
	sl_fewshot *ex = NULL;
	size_t n_ex = 0;
	sl_dynbuf in, out;
	sl_dynbuf_init(&in, SL_ASM_REQUEST_MAX);
	sl_dynbuf_init(&out, SL_ASSEMBLE_DEFAULT_MAX_BYTES);

	if (sl_template_load(tpath, NULL, &ut, err, sizeof err) != SL_OK ||
	    (spath && sl_template_load(spath, NULL, &st, err, sizeof err) != SL_OK)) {
		fprintf(stderr, "%s\n", err);
		goto out;
	}
	if (epath && load_examples(epath, &exroot, &ex, &n_ex) != 0)
		goto out;
	int rc = read_all(stdin, &in);
	if (rc) {
		fprintf(stderr, "sluice assemble: reading stdin: %s\n", sl_strerror(rc));
		goto out;
	}
	if (sl_asm_request_parse(sl_dynbuf_str(&in), in.len, &req, err, sizeof err) != SL_OK) {
		fprintf(stderr, "sluice assemble: %s\n", err);
		goto out;
	}
	sl_assembly a = {.system = st, .user = ut, .examples = ex, .n_examples = n_ex};
	sl_assemble_opts o = {.max_prompt_tokens = max_tokens,
	                      .format = chat ? SL_ASM_CHAT : SL_ASM_PROMPT};
	sl_assemble_info info;
	rc = sl_assemble_fit(&a, sl_asm_request_vars(req), &o, &out, &info, err, sizeof err);
	if (rc) {
		fprintf(stderr, "sluice assemble: %s: %s\n", sl_status_name(rc),
		        err[0] ? err : sl_strerror(rc));
		goto out;
	}
	fwrite(sl_dynbuf_str(&out), 1, out.len, stdout);
	if (out.len == 0 || out.p[out.len - 1] != '\n')
		fputc('\n', stdout);
	if (fflush(stdout) != 0) {
		fprintf(stderr, "sluice assemble: writing stdout: %s\n", strerror(errno));
		goto out;
	}
	if (verbose) {
		fprintf(stderr, "{\"tokens\":%zu,\"docs_given\":%zu,\"docs_used\":%zu", info.tokens,
		        info.docs_given, info.docs_used);
		if (info.truncated)
			fprintf(stderr, ",\"truncated\":{\"rank\":%zu,\"from_bytes\":%zu,\"to_bytes\":%zu}",
			        info.docs_used, info.cut_from, info.cut_to);
		fprintf(stderr, "}\n");
	}
	status = 0;
out:
	sl_template_free(ut);
	sl_template_free(st);
	sl_asm_request_free(req);
	free(ex);
	json_decref(exroot);
	sl_dynbuf_free(&in);
	sl_dynbuf_free(&out);
	return status;
}
