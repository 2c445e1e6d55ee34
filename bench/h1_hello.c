/* h1_hello.c - a "hello" HTTP server for load tests of the h1 layer
 * (src/http/h1.c), or, for comparison, of libevent's evhttp with the same
 * answer.  It only serves; drive it with wrk, e.g.
 *
 *   taskset -c 1 build/bench/h1_hello --mode h1 --port 8091 &
 *   taskset -c 0 wrk -t1 -c32 -d5s http://127.0.0.1:8091/
 *
 * Every reply is "200 OK", Content-Type text/plain, body "Hello, World!\n"
 * (14 bytes), keep-alive.  Prints one JSON line when it starts and one with
 * its counters when stopped by SIGINT/SIGTERM.
 *
 * Usage: h1_hello [--mode h1|evhttp] [--port N] [--host A]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/h1.h"

static const char HELLO[] = "Hello, World!\n";
static unsigned long long n_req;

static void h1_on_request(sl_h1_req *r, void *arg)
{
	(void)arg;
	static const struct sl_h1_header h[] = {{"Content-Type", "text/plain"}};
	n_req++;
	sl_h1_reply(r, 200, h, 1, HELLO, sizeof HELLO - 1);
}

static void ev_on_request(struct evhttp_request *req, void *arg)
{
	struct evbuffer *out = arg;
	n_req++;
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
	evbuffer_add_reference(out, HELLO, sizeof HELLO - 1, NULL, NULL);
	evhttp_send_reply(req, 200, "OK", out);
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

static int listen_on(const char *host, int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1 ||
	    bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 1024) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int main(int argc, char **argv)
{
	const char *mode = "h1", *host = "127.0.0.1";
	int port = 8091;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--mode") && i + 1 < argc)
			mode = argv[++i];
		else if (!strcmp(argv[i], "--port") && i + 1 < argc)
			port = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--host") && i + 1 < argc)
			host = argv[++i];
		else {
			fprintf(stderr, "usage: %s [--mode h1|evhttp] [--port N] [--host A]\n", argv[0]);
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	struct event_base *base = event_base_new();
	int fd = listen_on(host, port);
	if (!base || fd < 0) {
		fprintf(stderr, "h1_hello: cannot listen on %s:%d: %s\n", host, port, strerror(errno));
		return 1;
	}
	sl_h1_server *h1 = NULL;
	struct evhttp *ev = NULL;
	struct evbuffer *out = evbuffer_new();
	if (!strcmp(mode, "h1")) {
		if (sl_h1_server_create(base, fd, NULL, h1_on_request, NULL, NULL, &h1) != SL_OK)
			return 1;
	} else if (!strcmp(mode, "evhttp")) {
		ev = evhttp_new(base);
		evhttp_set_gencb(ev, ev_on_request, out);
		if (!evhttp_accept_socket_with_handle(ev, fd))
			return 1;
	} else {
		fprintf(stderr, "h1_hello: unknown mode %s\n", mode);
		return 2;
	}
	struct event *sig1 = evsignal_new(base, SIGINT, on_signal, base);
	struct event *sig2 = evsignal_new(base, SIGTERM, on_signal, base);
	event_add(sig1, NULL);
	event_add(sig2, NULL);
	printf("{\"bench\":\"h1_hello\",\"mode\":\"%s\",\"host\":\"%s\",\"port\":%d}\n", mode, host, port);
	fflush(stdout);
	event_base_dispatch(base);
	/* CPU per request: robust on a shared machine, where requests/s
	 * also measure the neighbours. */
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu_us = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
	                (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
	printf("{\"bench\":\"h1_hello\",\"mode\":\"%s\",\"requests\":%llu,"
	       "\"cpu_us_per_req\":%.3f,\"max_rps_per_core\":%.0f}\n",
	       mode, n_req, n_req ? cpu_us / (double)n_req : 0.0,
	       cpu_us > 0 ? (double)n_req * 1e6 / cpu_us : 0.0);
	event_free(sig1);
	event_free(sig2);
	sl_h1_server_destroy(h1);
	if (ev)
		evhttp_free(ev);
	evbuffer_free(out);
	event_base_free(base);
	return 0;
}
