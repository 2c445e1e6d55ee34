/* snapshot.c - consistent counter snapshots across shards.
 *
 * Each shard's counters are read under its sequence lock (see
 * pipeline_int.h), so within a shard the accounting identity
 *   submitted = completed + failed + shed + cancelled + expired + in_flight
 * holds exactly (in_flight: requests admitted without an outcome yet,
 * counted up at admission and down in finish(), apart from the outcome
 * counters); summing shards keeps it.  Histograms are merged without
 * the lock (they are not part of the identity). */
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include "pipeline/pipeline_int.h"

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)

typedef struct ps_copy {
	uint64_t submitted, tokens_out, live, outcomes[SL_OUTCOME__COUNT];
	struct {
		uint64_t enqueued, processed, shed, failed, expired, cancelled, queued, running;
		uint64_t displaced;
	} st[SL_MAX_STAGES];
} ps_copy;

static void read_ps(sl__ps *ps, unsigned n_stages, ps_copy *c)
{
	int self = sl__shard_current() == ps->sh; /* inside a bracket: no lock */
	for (unsigned spins = 0;; spins++) {
		uint32_t s1 = atomic_load_explicit(&ps->seq, memory_order_acquire);
		if ((s1 & 1) && !self) {
			if (spins > 64)
				sched_yield();
			continue;
		}
		c->submitted = LD(ps->submitted);
		c->tokens_out = LD(ps->tokens_out);
		c->live = LD(ps->live);
		for (int o = 0; o < SL_OUTCOME__COUNT; o++)
			c->outcomes[o] = LD(ps->outcomes[o]);
		for (unsigned s = 0; s < n_stages; s++) {
			sl__stage_ctr *k = &ps->st[s].ctr;
			c->st[s].enqueued = LD(k->enqueued);
			c->st[s].processed = LD(k->processed);
			c->st[s].shed = LD(k->shed);
			c->st[s].failed = LD(k->failed);
			c->st[s].expired = LD(k->expired);
			c->st[s].cancelled = LD(k->cancelled);
			c->st[s].queued = LD(k->queued);
			c->st[s].running = LD(k->running);
			c->st[s].displaced = LD(k->displaced);
		}
		atomic_thread_fence(memory_order_acquire);
		uint32_t s2 = atomic_load_explicit(&ps->seq, memory_order_relaxed);
		if (self || s1 == s2)
			return;
	}
}

int sl_pipeline_snapshot(sl_pipeline *p, sl_snapshot *out)
{
	if (!p || !out)
		return SL_EINVAL;
	memset(out, 0, sizeof *out);
	unsigned n = p->n_stages;
	size_t nh = 2 * (size_t)n + 2;
	sl_histogram *h = calloc(nh, sizeof *h);
	if (!h)
		return SL_ENOMEM;
	out->_priv = h;
	out->n_stages = n;
	for (unsigned s = 0; s < n; s++) {
		out->stages[s].name = p->stages[s].name;
		out->stages[s].capacity = (uint64_t)p->stages[s].queue * p->n_shards;
		out->stages[s].concurrency = (uint64_t)p->stages[s].conc * p->n_shards;
		out->stages[s].latency = &h[2 * s];
		out->stages[s].wait = &h[2 * s + 1];
	}
	out->e2e = &h[2 * n];
	out->ttft = &h[2 * n + 1];
	for (unsigned i = 0; i < p->n_shards; i++) {
		sl__ps *ps = p->ps[i];
		ps_copy c;
		read_ps(ps, n, &c);
		/* shed at the door: counted on both sides of the identity */
		uint64_t door = atomic_load_explicit(&ps->door_shed, memory_order_relaxed);
		out->submitted += c.submitted + door;
		out->tokens_out += c.tokens_out;
		out->in_flight += c.live;
		for (int o = 0; o < SL_OUTCOME__COUNT; o++)
			out->outcomes[o] += c.outcomes[o];
		out->outcomes[SL_OUTCOME_SHED] += door;
		out->stages[0].shed += door;
		for (unsigned s = 0; s < n; s++) {
			sl_stage_stats *t = &out->stages[s];
			t->enqueued += c.st[s].enqueued;
			t->processed += c.st[s].processed;
			t->shed += c.st[s].shed;
			t->failed += c.st[s].failed;
			t->expired += c.st[s].expired;
			t->cancelled += c.st[s].cancelled;
			t->queued += c.st[s].queued;
			t->running += c.st[s].running;
			t->displaced += c.st[s].displaced;
			sl__hist_merge(&h[2 * s], ps->st[s].lat);
			sl__hist_merge(&h[2 * s + 1], ps->st[s].wait);
		}
		sl__hist_merge(&h[2 * n], ps->e2e);
		sl__hist_merge(&h[2 * n + 1], ps->ttft);
	}
	return SL_OK;
}

void sl_snapshot_release(sl_snapshot *s)
{
	if (!s)
		return;
	free(s->_priv);
	s->_priv = NULL;
}
