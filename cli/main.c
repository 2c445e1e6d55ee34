/* main.c - the sluice program: dispatches to subcommands. */
#include <stdio.h>
#include <string.h>
#include "cli.h"
#include "mock/mock_upstream.h"
#include "sluice/sluice.h"


static void usage(FILE *f)
{
	fprintf(f,
	        "usage: sluice <command> [options]\n"
	        "\n"
	        "commands:\n"
	        "  serve           the OpenAI-compatible gateway (default: model 'echo' on :8080)\n"
	        "  mock-upstream   a fast OpenAI-compatible mock model server for tests\n"
	        "  check-config F  validate a configuration file (exit 0 valid, 1 invalid, 2 unreadable)\n"
	        "  config          --print-default: the embedded default configuration, commented\n"
	        "  dlq             the dead-letter queue: list | show ID | replay ID | purge\n"
	        "  assemble        render a prompt template from a JSON request on stdin\n"
	        "  retrieve        BM25 search over a folder or JSONL corpus (or a saved index)\n"
	        "  demo            send the seed's 10 demo requests through the pipeline\n"
	        "  redact          redact PII from stdin to stdout (--classes, --stream-chunk N)\n"
	        "  version         print the version\n"
	        "  help            this text\n"
	        "\n"
	        "Run 'sluice <command> --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "serve") == 0)
		return sl_cli_serve(argc - 1, argv + 1);
	if (strcmp(cmd, "mock-upstream") == 0)
		return sl_mock_upstream_main(argc - 1, argv + 1);
	if (strcmp(cmd, "check-config") == 0)
		return sl_cli_check_config(argc - 1, argv + 1);
	if (strcmp(cmd, "config") == 0)
		return sl_cli_config(argc - 1, argv + 1);
	if (strcmp(cmd, "dlq") == 0)
		return sl_cli_dlq(argc - 1, argv + 1);
	if (strcmp(cmd, "assemble") == 0) return sl_cli_assemble(argc - 1, argv + 1);
	if (strcmp(cmd, "retrieve") == 0) return sl_cli_retrieve(argc - 1, argv + 1);
	if (strcmp(cmd, "redact") == 0) return sl_cli_redact(argc - 1, argv + 1);
	if (strcmp(cmd, "demo") == 0)
		return sl_cli_demo(argc - 1, argv + 1);
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("sluice %s\n", SLUICE_VERSION);
		return 0;
	}
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "sluice: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
