/* testutil.h - shared helpers for the unit tests: a collector of results
 * that waits for N completions. */
#ifndef SL_TESTUTIL_H
#define SL_TESTUTIL_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "sluice/sluice.h"

typedef struct tres {
	uint64_t id;
	sl_outcome outcome;
	int status;
	char stage[32];
	char text[512];
	char streamed[512];
	char finish[32];
	char reason[128];
	int shard;
	int done;
	unsigned n_stages;
	sl_stage_times times[SL_MAX_STAGES]; /* copied from the result */
} tres;

typedef struct collector {
	pthread_mutex_t mx;
	pthread_cond_t cv;
	int n;           /* completions so far */
	int oc[SL_OUTCOME__COUNT];
	sl_runtime *rt;  /* to record the calling shard */
} collector;

static inline void coll_init(collector *c, sl_runtime *rt)
{
	memset(c, 0, sizeof *c);
	pthread_mutex_init(&c->mx, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->rt = rt;
}

static inline void coll_fini(collector *c)
{
	pthread_mutex_destroy(&c->mx);
	pthread_cond_destroy(&c->cv);
}

/* Waits until n completions or timeout_ms; returns the count. */
static inline int coll_wait(collector *c, int n, int timeout_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&c->mx);
	while (c->n < n)
		if (pthread_cond_timedwait(&c->cv, &c->mx, &ts) != 0)
			break;
	int got = c->n;
	pthread_mutex_unlock(&c->mx);
	return got;
}

/* A per-request slot: pass a tres* with its collector. */
typedef struct treq {
	collector *c;
	tres r;
} treq;

static inline void t_on_token(void *user, const char *text, size_t len)
{
	treq *t = user;
	size_t have = strlen(t->r.streamed);
	if (have + len < sizeof t->r.streamed) {
		memcpy(t->r.streamed + have, text, len);
		t->r.streamed[have + len] = '\0';
	}
}

static inline void t_on_done(void *user, const sl_result *res)
{
	treq *t = user;
	collector *c = t->c;
	t->r.id = res->id;
	t->r.outcome = res->outcome;
	t->r.status = res->status;
	snprintf(t->r.stage, sizeof t->r.stage, "%s", res->stage ? res->stage : "");
	snprintf(t->r.text, sizeof t->r.text, "%s", res->text);
	snprintf(t->r.finish, sizeof t->r.finish, "%s", res->finish_reason ? res->finish_reason : "");
	snprintf(t->r.reason, sizeof t->r.reason, "%s", res->reason ? res->reason : "");
	t->r.shard = c->rt ? sl_runtime_current_shard(c->rt) : -1;
	t->r.n_stages = res->n_stages < SL_MAX_STAGES ? res->n_stages : SL_MAX_STAGES;
	if (res->stage_times)
		memcpy(t->r.times, res->stage_times, t->r.n_stages * sizeof *t->r.times);
	pthread_mutex_lock(&c->mx);
	t->r.done++;
	c->n++;
	c->oc[res->outcome]++;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mx);
}

static inline void t_req(sl_request *req, treq *t, collector *c, const char *session,
                         const char *input)
{
	sl_request_init(req);
	memset(t, 0, sizeof *t);
	t->c = c;
	req->session = session;
	req->input = input;
	req->on_done = t_on_done;
	req->on_token = t_on_token;
	req->user = t;
}

static inline void msleep(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

#endif
