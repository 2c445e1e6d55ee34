/* cli.h - subcommands of the sluice program.  Each takes argc/argv with
 * argv[0] = the subcommand name and returns the process exit code. */
#ifndef SL_CLI_H
#define SL_CLI_H
int sl_cli_demo(int argc, char **argv);
int sl_cli_serve(int argc, char **argv);
int sl_cli_check_config(int argc, char **argv);
int sl_cli_config(int argc, char **argv);
int sl_cli_dlq(int argc, char **argv);
int sl_cli_redact(int argc, char **argv);
int sl_cli_assemble(int argc, char **argv);
int sl_cli_retrieve(int argc, char **argv);
#endif
