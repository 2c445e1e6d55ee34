/* config_cmd.c - `sluice check-config FILE` and `sluice config --print-default`.
 *
 * check-config loads FILE as `sluice serve` would (interpolation included)
 * and prints "FILE: ok" on stdout, or one line per problem on stderr
 * ("file:line:col: path: message") and then "N problem(s)".  Exit codes:
 * 0 valid, 1 invalid (including a file over the size limit), 2 unreadable
 * or a usage error.  FILE "-" reads standard input (named "<stdin>" in the
 * problems). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "config/config.h"

static void check_usage(FILE *f)
{
	fprintf(f,
	        "usage: sluice check-config FILE\n"
	        "  Validates a configuration file (FILE - reads standard input): prints\n"
	        "  \"FILE: ok\", or every problem as file:line:column: path: message.\n"
	        "  Exit status: 0 valid, 1 invalid, 2 unreadable.\n");
}

/* Reads standard input (at most SL_CFG_MAX_FILE bytes) and loads it as
 * "<stdin>". */
static int load_stdin(sl_config **out, sl_cfg_diags *d)
{
	size_t cap = 65536, len = 0;
	char *buf = malloc(cap);
	if (!buf)
		return SL_ENOMEM;
	for (;;) {
		if (len == cap) {
			if (cap > SL_CFG_MAX_FILE) {
				free(buf);
				return SL_ETOOBIG;
			}
			size_t ncap = cap * 2 > (size_t)SL_CFG_MAX_FILE + 1 ? (size_t)SL_CFG_MAX_FILE + 1
			                                                    : cap * 2;
			char *nb = realloc(buf, ncap);
			if (!nb) {
				free(buf);
				return SL_ENOMEM;
			}
			buf = nb;
			cap = ncap;
		}
		size_t r = fread(buf + len, 1, cap - len, stdin);
		len += r;
		if (r == 0)
			break;
	}
	int rc = ferror(stdin) ? SL_ESYS : sl_config_load_string(buf, len, "<stdin>", out, d);
	free(buf);
	return rc;
}

int sl_cli_check_config(int argc, char **argv)
{
	const char *file = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			check_usage(stdout);
			return 0;
		}
		if (argv[i][0] == '-' && argv[i][1] != '\0') {
			fprintf(stderr, "sluice check-config: unknown option '%s'\n", argv[i]);
			check_usage(stderr);
			return 2;
		}
		if (file) {
			fprintf(stderr, "sluice check-config: one FILE only\n");
			check_usage(stderr);
			return 2;
		}
		file = argv[i];
	}
	if (!file) {
		check_usage(stderr);
		return 2;
	}
	sl_cfg_diags d = {0};
	sl_config *cfg = NULL;
	int rc = strcmp(file, "-") == 0 ? load_stdin(&cfg, &d) : sl_config_load_file(file, &cfg, &d);
	if (rc == SL_OK) {
		printf("%s: ok\n", file);
		sl_config_free(cfg);
		sl_cfg_diags_free(&d);
		return 0;
	}
	if (rc == SL_ETOOBIG && d.n == 0) /* standard input over the bound */
		fprintf(stderr, "<stdin>: file too large: more than %u bytes\n",
		        (unsigned)SL_CFG_MAX_FILE);
	char line[4096];
	for (size_t i = 0; i < d.n; i++)
		fprintf(stderr, "%s\n", sl_cfg_diag_format(&d.v[i], line, sizeof line));
	int code;
	if (rc == SL_EINVAL || rc == SL_ETOOBIG) {
		size_t n = d.n + d.dropped;
		if (n == 0)
			n = 1;
		if (d.dropped)
			fprintf(stderr, "%zu problem%s (%zu not shown)\n", n, n == 1 ? "" : "s", d.dropped);
		else
			fprintf(stderr, "%zu problem%s\n", n, n == 1 ? "" : "s");
		code = 1;
	} else {
		if (d.n == 0)
			fprintf(stderr, "%s: %s\n", file, sl_strerror(rc));
		code = 2;
	}
	sl_cfg_diags_free(&d);
	return code;
}

static void config_usage(FILE *f)
{
	fprintf(f,
	        "usage: sluice config --print-default\n"
	        "  Prints the embedded default configuration, with a comment on every key.\n");
}

int sl_cli_config(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "--print-default")) {
		fputs(sl_config_default_yaml(), stdout);
		return fflush(stdout) == 0 ? 0 : 2;
	}
	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		config_usage(stdout);
		return 0;
	}
	config_usage(stderr);
	return 2;
}
