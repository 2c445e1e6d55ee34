/* echo.c - the built-in echo worker.
 *
 * Streams the prompt's whitespace-separated words back as tokens: the first
 * bare, each later one with a single leading space, so the joined output is
 * the prompt with whitespace runs folded to one space.  max_tokens cuts the
 * stream (finish_reason "length").  Delays are loop timers; a thread never
 * sleeps.  usage: prompt_tokens = words in the prompt, completion_tokens =
 * tokens sent. */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include "pipeline/pipeline_int.h"

typedef struct echo_state {
	sl_echo_opts o;
} echo_state;

typedef struct echo_ss {
	struct event_base *base;
	echo_state *st;
} echo_ss;

typedef struct echo_call {
	sl_infer *call;
	echo_ss *ss;
	struct event *ev;
	const char *p, *end; /* next unread byte of the prompt */
	uint32_t sent, max;
	uint32_t token_delay_ms;
} echo_call;

/* ASCII whitespace as a table: the split runs per byte on the hot path. */
static const unsigned char ws_tab[256] = {
	['\t'] = 1, ['\n'] = 1, ['\v'] = 1, ['\f'] = 1, ['\r'] = 1, [' '] = 1};

static inline int is_ws(char c)
{
	return ws_tab[(unsigned char)c];
}

static uint32_t count_words(const char *p, const char *end)
{
	uint32_t n = 0;
	int in = 0;
	for (; p < end; p++) {
		if (is_ws(*p))
			in = 0;
		else if (!in) {
			in = 1;
			n++;
		}
	}
	return n;
}

/* Emits the next word; returns 0 when there are no more words or the
 * stream must stop, 1 otherwise. */
static int emit_next(echo_call *c, int *rc_out)
{
	if (c->max && c->sent >= c->max)
		return 0;
	while (c->p < c->end && is_ws(*c->p))
		c->p++;
	if (c->p >= c->end)
		return 0;
	const char *w = c->p;
	while (c->p < c->end && !is_ws(*c->p))
		c->p++;
	size_t wl = (size_t)(c->p - w);
	size_t len = wl + (c->sent ? 1 : 0);
	char stackbuf[256];
	char *buf = NULL;
	const char *tok;
	if (!c->sent || w[-1] == ' ') {
		/* the word as it stands in the prompt, with the space before it
		 * when it is not the first: no copy */
		tok = c->sent ? w - 1 : w;
	} else {
		/* another whitespace before it: " " + word */
		buf = len > sizeof stackbuf ? malloc(len) : stackbuf;
		if (!buf) {
			*rc_out = SL_ENOMEM;
			return 0;
		}
		buf[0] = ' ';
		memcpy(buf + 1, w, wl);
		tok = buf;
	}
	int rc = sl_infer_token(c->call, tok, len);
	if (buf && buf != stackbuf)
		free(buf);
	c->sent++;
	if (rc == SL_ETOOBIG)
		return 0; /* output bound reached: finish with "length" */
	if (rc != SL_OK) {
		*rc_out = rc;
		return 0;
	}
	return 1;
}

static void finish_call(echo_call *c, int rc)
{
	sl_infer *call = c->call;
	uint32_t rest = count_words(c->p, c->end);
	sl_usage u = {.prompt_tokens = c->sent + rest, .completion_tokens = c->sent,
	              .finish_reason = (rc == SL_OK && rest) ? "length" : "stop"};
	if (c->ev)
		event_free(c->ev);
	*sl_infer_worker_data(call) = NULL;
	free(c);
	if (rc == SL_ECANCELED)
		return; /* request gone: nobody to tell */
	sl_infer_done(call, rc, rc ? "echo worker failed" : NULL, &u);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	echo_call *c = arg;
	int rc = SL_OK;
	if (c->token_delay_ms == 0) {
		while (emit_next(c, &rc))
			;
		finish_call(c, rc);
		return;
	}
	if (!emit_next(c, &rc)) {
		finish_call(c, rc);
		return;
	}
	struct timeval tv = {c->token_delay_ms / 1000, (c->token_delay_ms % 1000) * 1000};
	evtimer_add(c->ev, &tv);
}

static int echo_init(const void *cfg, void **state)
{
	echo_state *s = calloc(1, sizeof *s);
	if (!s)
		return SL_ENOMEM;
	if (cfg)
		s->o = *(const sl_echo_opts *)cfg;
	if (s->o.delay_ms > 3600000u || s->o.token_delay_ms > 3600000u) {
		free(s);
		return SL_EINVAL;
	}
	*state = s;
	return SL_OK;
}

static int echo_start(void *state, struct event_base *base, unsigned shard, void **out)
{
	echo_ss *ss = malloc(sizeof *ss);
	if (!ss)
		return SL_ENOMEM;
	ss->base = base;
	ss->st = state;
	*out = ss;
	return SL_OK;
}

static int echo_infer(void *ssv, sl_infer *call)
{
	echo_ss *ss = ssv;
	size_t len;
	const char *p = sl_infer_prompt(call, &len);
	uint32_t delay = ss->st->o.delay_ms;
	const char *md = sl_infer_meta(call, "echo_delay_ms");
	if (md) {
		char *e;
		unsigned long v = strtoul(md, &e, 10);
		if (*md && !*e && v <= 3600000ul)
			delay = (uint32_t)v;
	}
	echo_call stackc, *c = &stackc;
	int timed = delay || ss->st->o.token_delay_ms;
	if (timed) {
		c = calloc(1, sizeof *c);
		if (!c)
			return SL_ENOMEM;
	} else {
		memset(c, 0, sizeof *c);
	}
	c->call = call;
	c->ss = ss;
	c->p = p;
	c->end = p + len;
	int mt = sl_infer_params_of(call)->max_tokens;
	c->max = mt > 0 ? (uint32_t)mt : 0;
	c->token_delay_ms = ss->st->o.token_delay_ms;
	if (!timed) {
		/* Inline: tokens and completion before infer returns. */
		int rc = SL_OK;
		while (emit_next(c, &rc))
			;
		uint32_t rest = count_words(c->p, c->end);
		sl_usage u = {.prompt_tokens = c->sent + rest, .completion_tokens = c->sent,
		              .finish_reason = rest ? "length" : "stop"};
		if (rc != SL_ECANCELED)
			sl_infer_done(call, rc, rc ? "echo worker failed" : NULL, &u);
		return SL_OK;
	}
	c->ev = evtimer_new(ss->base, on_timer, c);
	if (!c->ev) {
		free(c);
		return SL_ENOMEM;
	}
	*sl_infer_worker_data(call) = c;
	struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
	evtimer_add(c->ev, &tv);
	return SL_OK;
}

static void echo_cancel(void *ssv, sl_infer *call)
{
	echo_call *c = *sl_infer_worker_data(call);
	if (!c)
		return;
	event_free(c->ev);
	*sl_infer_worker_data(call) = NULL;
	free(c);
}

static void echo_stop(void *ssv)
{
	free(ssv);
}

static void echo_fini(void *state)
{
	free(state);
}

static const sl_worker_ops echo_ops = {
	.name = "echo",
	.init = echo_init,
	.start = echo_start,
	.infer = echo_infer,
	.cancel = echo_cancel,
	.stop = echo_stop,
	.fini = echo_fini,
};

int sl_worker_echo_create(const sl_echo_opts *opts, sl_worker **out)
{
	return sl_worker_create(&echo_ops, opts, out);
}
