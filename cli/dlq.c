/* dlq.c - `sluice dlq list|show|replay|purge`: the dead-letter queue from
 * the command line.
 *
 * list, show and purge work on the directory itself (--dir DIR, or the
 * `dlq.dir` of --config FILE) and need no server: readers take no lock,
 * so they work while `sluice serve` writes.  replay asks the running
 * server (POST URL/admin/dlq/ID/replay), which resubmits the request and
 * records the new outcome.
 *
 * Output: data on stdout only (list: one record per line, or a JSON array
 * with --json; show: pretty JSON); summaries and errors on stderr.
 * Exit status: 0 done; 1 a failure (no DLQ at DIR, no record ID, the
 * server unreachable or answering non-2xx); 2 a usage error. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli.h"
#include "config/config.h"
#include "core/dynbuf.h"
#include "dlq/dlq.h"

#define DEFAULT_URL "http://127.0.0.1:8080"
#define MAX_ANSWER (16u << 20) /* bytes of the server's answer kept */

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: sluice dlq <command> [options]\n"
	        "\n"
	        "  list   [--dir DIR | --config FILE] [--json] [--limit N]\n"
	        "         one line per dead request: id, time, outcome, stage, reason, model\n"
	        "         (tab-separated; \"replayed:OUTCOME\" when it was replayed); --json: a\n"
	        "         JSON array (records without their body); --limit N: the newest N\n"
	        "  show   ID [--dir DIR | --config FILE]\n"
	        "         the whole record as JSON, body included, with its replays\n"
	        "  replay ID [--url URL] [--config FILE]\n"
	        "         asks the running server to resubmit the request (POST\n"
	        "         URL/admin/dlq/ID/replay; URL defaults to the config's server\n"
	        "         address, else " DEFAULT_URL ") and prints its answer\n"
	        "  purge  [--dir DIR | --config FILE] --yes\n"
	        "         deletes the records (a running writer keeps its active segment)\n"
	        "\n"
	        "--config FILE takes the directory from the file's dlq.dir and the admin\n"
	        "token from server.admin.token_env.  Exit status: 0 ok, 1 failed, 2 usage.\n");
}

typedef struct opts {
	const char *cmd;
	const char *id;
	const char *dir;
	const char *config;
	const char *url;
	int json;
	int yes;
	long limit; /* -1: all */
} opts;

/* Flags each command accepts. */
enum { F_DIR = 1, F_CONFIG = 2, F_JSON = 4, F_LIMIT = 8, F_URL = 16, F_YES = 32 };

static int bad_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "sluice dlq: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	usage(stderr);
	return 2;
}

/* Parses argv (argv[0] = "dlq").  Returns -1 to go on, else an exit code. */
static int parse(int argc, char **argv, opts *o)
{
	memset(o, 0, sizeof *o);
	o->limit = -1;
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	o->cmd = argv[1];
	if (!strcmp(o->cmd, "help") || !strcmp(o->cmd, "--help") || !strcmp(o->cmd, "-h")) {
		usage(stdout);
		return 0;
	}
	int allowed, wants_id;
	if (!strcmp(o->cmd, "list"))
		allowed = F_DIR | F_CONFIG | F_JSON | F_LIMIT, wants_id = 0;
	else if (!strcmp(o->cmd, "show"))
		allowed = F_DIR | F_CONFIG, wants_id = 1;
	else if (!strcmp(o->cmd, "replay"))
		allowed = F_URL | F_CONFIG, wants_id = 1;
	else if (!strcmp(o->cmd, "purge"))
		allowed = F_DIR | F_CONFIG | F_YES, wants_id = 0;
	else
		return bad_usage("unknown command '%s'", o->cmd);

	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		}
		if (a[0] != '-' || a[1] == '\0') {
			if (!wants_id || o->id)
				return bad_usage("unexpected argument '%s'", a);
			o->id = a;
			continue;
		}
		/* --name VALUE or --name=VALUE */
		const char *eq = strchr(a, '=');
		size_t nl = eq ? (size_t)(eq - a) : strlen(a);
		const char *val = eq ? eq + 1 : NULL;
		struct {
			const char *name;
			int flag, has_val;
		} known[] = {{"--dir", F_DIR, 1},   {"--config", F_CONFIG, 1}, {"--json", F_JSON, 0},
		             {"--limit", F_LIMIT, 1}, {"--url", F_URL, 1},       {"--yes", F_YES, 0}};
		int k = -1;
		for (int j = 0; j < (int)(sizeof known / sizeof known[0]); j++)
			if (strlen(known[j].name) == nl && !strncmp(a, known[j].name, nl))
				k = j;
		if (k < 0 || !(allowed & known[k].flag))
			return bad_usage("unknown option '%s'", a);
		if (known[k].has_val && !val) {
			if (i + 1 >= argc)
				return bad_usage("%s needs a value", known[k].name);
			val = argv[++i];
		} else if (!known[k].has_val && val) {
			return bad_usage("%s takes no value", known[k].name);
		}
		switch (known[k].flag) {
		case F_DIR: o->dir = val; break;
		case F_CONFIG: o->config = val; break;
		case F_JSON: o->json = 1; break;
		case F_URL: o->url = val; break;
		case F_YES: o->yes = 1; break;
		case F_LIMIT: {
			char *end;
			errno = 0;
			long v = strtol(val, &end, 10);
			if (errno || *end || end == val || v < 0)
				return bad_usage("--limit needs a number >= 0, not '%s'", val);
			o->limit = v;
			break;
		}
		}
	}
	if (wants_id && !o->id)
		return bad_usage("%s needs a record ID", o->cmd);
	if (o->dir && o->config)
		return bad_usage("give --dir or --config, not both%s", "");
	if ((allowed & F_DIR) && !o->dir && !o->config)
		return bad_usage("%s needs --dir DIR or --config FILE", o->cmd);
	return -1;
}

/* Loads --config FILE; prints its problems and returns NULL on failure. */
static sl_config *load_config(const char *file)
{
	sl_cfg_diags d = {0};
	sl_config *cfg = NULL;
	int rc = sl_config_load_file(file, &cfg, &d);
	if (rc != SL_OK) {
		char line[4096];
		for (size_t i = 0; i < d.n; i++)
			fprintf(stderr, "%s\n", sl_cfg_diag_format(&d.v[i], line, sizeof line));
		if (d.n == 0)
			fprintf(stderr, "%s: %s\n", file, sl_strerror(rc));
		fprintf(stderr, "sluice dlq: cannot use the configuration %s\n", file);
	}
	sl_cfg_diags_free(&d);
	return cfg;
}

/* The DLQ directory a configuration names (its top-level dlq.dir). */
static const char *dlq_dir_from_config(const sl_config *c)
{
#if defined(SL_CFG_HAS_DLQ)
	if (c->dlq.dir && c->dlq.dir[0])
		return c->dlq.dir;
	fprintf(stderr, "sluice dlq: %s sets no dlq.dir\n", c->file ? c->file : "the configuration");
	return NULL;
#else
	(void)c;
	fprintf(stderr, "sluice dlq: --config is not supported yet (no dlq section in this "
	                "build's configuration), use --dir\n");
	return NULL;
#endif
}

/* Resolves the directory (--dir, else --config's) and checks that it is
 * there.  Returns -1 to go on (*dir set, *cfg to free), else an exit code. */
static int resolve_dir(const opts *o, const char **dir, sl_config **cfg)
{
	*cfg = NULL;
	*dir = o->dir;
	if (!*dir) {
		if (!(*cfg = load_config(o->config)))
			return 1;
		if (!(*dir = dlq_dir_from_config(*cfg)))
			return 1;
	}
	struct stat sb;
	if (stat(*dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		fprintf(stderr, "sluice dlq: no DLQ at %s\n", *dir);
		return 1;
	}
	return -1;
}

static int scan_failed(const char *dir, int rc)
{
	if (rc == SL_ENOTFOUND)
		fprintf(stderr, "sluice dlq: no DLQ at %s\n", dir);
	else
		fprintf(stderr, "sluice dlq: cannot read %s: %s\n", dir, sl_strerror(rc));
	return 1;
}

/* ------------------------------------------------------------ list */

/* The latest replay outcome per original id: sorted by id after pass 1,
 * equal ids in write order (seq). */
typedef struct replay_ent {
	char of[32];
	char *outcome;
	size_t seq;
} replay_ent;

typedef struct list_ctx {
	const opts *o;
	/* pass 1 */
	replay_ent *rep;
	size_t nrep, caprep;
	uint64_t nreq;
	int nomem;
	/* pass 2 */
	uint64_t skip;     /* request records to pass over (--limit) */
	uint64_t printed;
	uint64_t seen;
} list_ctx;

static int count_cb(void *user, const sl_dlq_record *r)
{
	list_ctx *c = user;
	if (strcmp(r->kind, "replay") != 0) {
		c->nreq++;
		return 0;
	}
	if (!r->replay_of || strlen(r->replay_of) >= sizeof c->rep[0].of)
		return 0;
	if (c->nrep == c->caprep) {
		size_t ncap = c->caprep ? c->caprep * 2 : 64;
		replay_ent *nv = realloc(c->rep, ncap * sizeof *nv);
		if (!nv) {
			c->nomem = 1;
			return 1;
		}
		c->rep = nv;
		c->caprep = ncap;
	}
	replay_ent *e = &c->rep[c->nrep];
	snprintf(e->of, sizeof e->of, "%s", r->replay_of);
	e->outcome = strdup(r->outcome);
	if (!e->outcome) {
		c->nomem = 1;
		return 1;
	}
	e->seq = c->nrep++;
	return 0;
}

static int rep_cmp(const void *a, const void *b)
{
	const replay_ent *x = a, *y = b;
	int c = strcmp(x->of, y->of);
	return c ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

/* The latest replay outcome of id, or NULL. */
static const char *replayed(const list_ctx *c, const char *id)
{
	size_t lo = 0, hi = c->nrep; /* lo: the first entry after id */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(c->rep[mid].of, id) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo && !strcmp(c->rep[lo - 1].of, id) ? c->rep[lo - 1].outcome : NULL;
}

/* Prints a column: "-" when absent; control characters (a client picks the
 * model name) become '?', so that a record stays one line of 6-7 columns. */
static void col(const char *v, int last)
{
	if (!v || !v[0])
		v = "-";
	for (const unsigned char *p = (const unsigned char *)v; *p; p++)
		putchar(*p < 0x20 || *p == 0x7f ? '?' : *p);
	if (!last)
		putchar('\t');
}

static int print_cb(void *user, const sl_dlq_record *r)
{
	list_ctx *c = user;
	if (!strcmp(r->kind, "replay"))
		return 0;
	if (c->seen++ < c->skip)
		return 0;
	if (c->o->limit >= 0 && c->printed >= (uint64_t)c->o->limit)
		return 1; /* records appended since pass 1 */
	const char *rep = replayed(c, r->id);
	if (c->o->json) {
		json_t *j = sl_dlq_record_json(r);
		if (!j) {
			c->nomem = 1;
			return 1;
		}
		json_object_del(j, "body");
		json_object_set_new(j, "replayed", rep ? json_string(rep) : json_null());
		char *s = json_dumps(j, JSON_COMPACT);
		json_decref(j);
		if (!s) {
			c->nomem = 1;
			return 1;
		}
		printf("%s%s", c->printed ? ",\n" : "\n", s);
		free(s);
	} else {
		char tb[32];
		printf("%s\t%s\t", r->id, sl__dlq_format_time(r->time_ms, tb));
		col(r->outcome, 0);
		col(r->stage, 0);
		col(r->reason, 0);
		col(r->model, !rep);
		if (rep) {
			fputs("replayed:", stdout);
			col(rep, 1);
		}
		putchar('\n');
	}
	c->printed++;
	return 0;
}

static int cmd_list(const opts *o, const char *dir)
{
	list_ctx c = {.o = o};
	sl_dlq_scan_stats st;
	int rc = sl_dlq_scan(dir, count_cb, &c, &st);
	int code = 0;
	if (rc == SL_OK && c.nomem)
		rc = SL_ENOMEM;
	if (rc != SL_OK) {
		code = scan_failed(dir, rc);
		goto out;
	}
	if (c.nrep > 1)
		qsort(c.rep, c.nrep, sizeof *c.rep, rep_cmp);
	if (o->limit >= 0 && c.nreq > (uint64_t)o->limit)
		c.skip = c.nreq - (uint64_t)o->limit;
	if (o->json)
		printf("[");
	rc = sl_dlq_scan(dir, print_cb, &c, &st);
	if (rc == SL_OK && c.nomem)
		rc = SL_ENOMEM;
	if (o->json)
		printf("%s]\n", c.printed ? "\n" : "");
	if (fflush(stdout) != 0) {
		fprintf(stderr, "sluice dlq: cannot write the output: %s\n", strerror(errno));
		code = 1;
		goto out;
	}
	if (rc != SL_OK) {
		code = scan_failed(dir, rc);
		goto out;
	}
	fprintf(stderr, "%llu record%s, %llu corrupt skipped\n", (unsigned long long)c.printed,
	        c.printed == 1 ? "" : "s", (unsigned long long)st.corrupt);
out:
	for (size_t i = 0; i < c.nrep; i++)
		free(c.rep[i].outcome);
	free(c.rep);
	return code;
}

/* ------------------------------------------------------------ show */

typedef struct show_ctx {
	const char *id;
	json_t *rec;
	json_t *replays;
	int nomem;
} show_ctx;

static int show_cb(void *user, const sl_dlq_record *r)
{
	show_ctx *c = user;
	int is_replay = !strcmp(r->kind, "replay");
	if (is_replay ? !(r->replay_of && !strcmp(r->replay_of, c->id))
	              : (c->rec || strcmp(r->id, c->id) != 0))
		return 0;
	json_t *j = sl_dlq_record_json(r);
	if (!j) {
		c->nomem = 1;
		return 1;
	}
	if (is_replay) {
		json_object_del(j, "body");
		json_array_append_new(c->replays, j);
	} else {
		c->rec = j;
	}
	return 0;
}

static int cmd_show(const opts *o, const char *dir)
{
	show_ctx c = {o->id, NULL, json_array(), 0};
	int code = 0;
	sl_dlq_scan_stats st;
	int rc = c.replays ? sl_dlq_scan(dir, show_cb, &c, &st) : SL_ENOMEM;
	if (rc == SL_OK && c.nomem)
		rc = SL_ENOMEM;
	if (rc != SL_OK) {
		code = scan_failed(dir, rc);
	} else if (!c.rec) {
		fprintf(stderr, "sluice dlq: no record %s\n", o->id);
		code = 1;
	} else {
		json_object_set(c.rec, "replays", c.replays);
		if (json_dumpf(c.rec, stdout, JSON_INDENT(2)) != 0 || printf("\n") < 0 ||
		    fflush(stdout) != 0) {
			fprintf(stderr, "sluice dlq: cannot write the output\n");
			code = 1;
		}
	}
	json_decref(c.rec);
	json_decref(c.replays);
	return code;
}

/* ------------------------------------------------------------ purge */

static int cmd_purge(const opts *o, const char *dir)
{
	if (!o->yes) {
		fprintf(stderr, "sluice dlq purge: this deletes the dead-letter records%s%s; "
		                "add --yes to do it\n", dir ? " in " : "", dir ? dir : "");
		return 2;
	}
	uint64_t removed = 0;
	int active = 0;
	int rc = sl_dlq_purge(dir, &removed, &active);
	if (rc != SL_OK) {
		fprintf(stderr, "sluice dlq: cannot purge %s: %s%s%s\n", dir, sl_strerror(rc),
		        rc == SL_ESYS ? ": " : "", rc == SL_ESYS ? strerror(errno) : "");
		return 1;
	}
	printf("removed %llu record%s from %s\n", (unsigned long long)removed,
	       removed == 1 ? "" : "s", dir);
	if (active) {
		char path[4096], pid[32] = "";
		snprintf(path, sizeof path, "%s/lock", dir);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			ssize_t k = read(fd, pid, sizeof pid - 1);
			pid[k > 0 ? k : 0] = '\0';
			pid[strcspn(pid, "\n")] = '\0';
			close(fd);
		}
		printf("kept the active segment: a writer%s%s%s holds %s\n", pid[0] ? " (pid " : "",
		       pid, pid[0] ? ")" : "", path);
	}
	return 0;
}

/* ------------------------------------------------------------ replay */

static size_t on_body(char *p, size_t sz, size_t n, void *user)
{
	sl_dynbuf *b = user;
	return sl_dynbuf_add(b, p, sz * n) == SL_OK ? sz * n : 0;
}

/* The base URL of the configured server: a wildcard address becomes
 * loopback; an IPv6 literal gets brackets. */
static void url_from_config(const sl_config *cfg, char *buf, size_t cap)
{
	const char *h = cfg->server.host && cfg->server.host[0] ? cfg->server.host : "127.0.0.1";
	if (!strcmp(h, "0.0.0.0") || !strcmp(h, "*"))
		h = "127.0.0.1";
	else if (!strcmp(h, "::") || !strcmp(h, "[::]"))
		h = "::1";
	int v6 = strchr(h, ':') && h[0] != '[';
	snprintf(buf, cap, "http://%s%s%s:%u", v6 ? "[" : "", h, v6 ? "]" : "",
	         (unsigned)cfg->server.port);
}

static int cmd_replay(const opts *o)
{
	if (!sl__dlq_id_valid(o->id)) { /* it goes into a URL: only real ids */
		fprintf(stderr, "sluice dlq: no record %s\n", o->id);
		return 1;
	}
	sl_config *cfg = NULL;
	char base[512];
	const char *token = NULL;
	if (o->config) {
		if (!(cfg = load_config(o->config)))
			return 1;
		url_from_config(cfg, base, sizeof base);
		const char *env = cfg->server.admin.token_env;
		if (env && env[0]) {
			token = getenv(env);
			if (!token || !token[0]) {
				fprintf(stderr, "sluice dlq: warning: %s names the admin token $%s, which is "
				                "not set; sending no token\n", o->config, env);
				token = NULL;
			}
		}
	} else {
		snprintf(base, sizeof base, "%s", DEFAULT_URL);
	}
	if (o->url)
		snprintf(base, sizeof base, "%s", o->url);
	size_t bl = strlen(base);
	while (bl && base[bl - 1] == '/')
		base[--bl] = '\0';
	char url[700];
	snprintf(url, sizeof url, "%s/admin/dlq/%s/replay", base, o->id);

	int code = 1;
	sl_dynbuf body;
	sl_dynbuf_init(&body, MAX_ANSWER);
	struct curl_slist *hdrs = NULL;
	char auth[4096];
	curl_global_init(CURL_GLOBAL_DEFAULT);
	CURL *h = curl_easy_init();
	if (!h) {
		fprintf(stderr, "sluice dlq: cannot start libcurl\n");
		goto out;
	}
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	if (token) {
		snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
		hdrs = curl_slist_append(hdrs, auth);
	}
	char cerr[CURL_ERROR_SIZE] = "";
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_POST, 1L);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 600000L); /* a replay runs the whole pipeline */
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	CURLcode cc = curl_easy_perform(h);
	if (cc != CURLE_OK) {
		fprintf(stderr, "sluice dlq: cannot reach the server at %s: %s\n", base,
		        cerr[0] ? cerr : curl_easy_strerror(cc));
		goto out;
	}
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	json_t *j = json_loadb(sl_dynbuf_str(&body), body.len, 0, NULL);
	if (j) {
		json_dumpf(j, stdout, JSON_INDENT(2));
		printf("\n");
		json_decref(j);
	} else if (body.len) {
		fwrite(body.p, 1, body.len, stdout);
		if (body.p[body.len - 1] != '\n')
			putchar('\n');
	}
	fflush(stdout);
	if (status >= 200 && status < 300) {
		code = 0;
	} else {
		fprintf(stderr, "sluice dlq: the server answered HTTP %ld to %s\n", status, url);
		if (status == 404 && !j && !body.len)
			fprintf(stderr, "sluice dlq: no record %s\n", o->id);
	}
out:
	if (h)
		curl_easy_cleanup(h);
	curl_slist_free_all(hdrs);
	curl_global_cleanup();
	sl_dynbuf_free(&body);
	sl_config_free(cfg);
	return code;
}

int sl_cli_dlq(int argc, char **argv)
{
	opts o;
	int code = parse(argc, argv, &o);
	if (code >= 0)
		return code;
	if (!strcmp(o.cmd, "replay"))
		return cmd_replay(&o);
	if (!strcmp(o.cmd, "purge") && !o.yes) /* refuse before touching anything */
		return cmd_purge(&o, o.dir);
	const char *dir;
	sl_config *cfg;
	code = resolve_dir(&o, &dir, &cfg);
	if (code < 0) {
		if (!strcmp(o.cmd, "list"))
			code = cmd_list(&o, dir);
		else if (!strcmp(o.cmd, "show"))
			code = cmd_show(&o, dir);
		else
			code = cmd_purge(&o, dir);
	}
	sl_config_free(cfg);
	return code;
}
