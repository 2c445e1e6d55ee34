/* pipeline.c - stages, queues, backpressure, outcomes, drain.
 *
 * Each shard runs a copy of the pipeline (an sl__ps).  A request (sl__req)
 * has one slot (sl_job) per stage.  It moves: inbox (MPSC, any thread
 * pushes) -> the root stages' queues -> work -> its successors' queues ->
 * ... -> the sink stage -> outcome.  The pump (pump()) moves requests in
 * batches, downstream stages first so room is made before it is needed.  A
 * stage that finishes a request while a successor's queue is full under
 * "block" keeps the request (and its slot) on its done list: the stage stops
 * taking work, its queue fills, and the pressure reaches the submitter as
 * SL_EAGAIN.  Under "shed" the request ends at once with outcome "shed".
 *
 * Every request ends in finish(), exactly once; see
 * docs/internals/pipeline.md.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "core/log.h"
#include "pipeline/pipeline_int.h"

/* ------------------------------------------------------------ seqlock */

void sl__ps_enter(sl__ps *ps)
{
	if (ps->depth++ == 0) {
		uint32_t s = atomic_load_explicit(&ps->seq, memory_order_relaxed);
		atomic_store_explicit(&ps->seq, s + 1, memory_order_relaxed);
		atomic_thread_fence(memory_order_release);
	}
}

void sl__ps_exit(sl__ps *ps)
{
	if (--ps->depth == 0) {
		uint32_t s = atomic_load_explicit(&ps->seq, memory_order_relaxed);
		atomic_store_explicit(&ps->seq, s + 1, memory_order_release);
	}
}

/* ------------------------------------------------------------ id map */

static size_t map_slot(const sl__ps *ps, uint64_t id)
{
	return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 20) & ps->map_mask;
}

static void map_put(sl__ps *ps, sl__req *req)
{
	size_t i = map_slot(ps, req->id);
	while (ps->map_k[i])
		i = (i + 1) & ps->map_mask;
	ps->map_k[i] = req->id;
	ps->map_v[i] = req;
}

static sl__req *map_get(const sl__ps *ps, uint64_t id)
{
	size_t i = map_slot(ps, id);
	while (ps->map_k[i]) {
		if (ps->map_k[i] == id)
			return ps->map_v[i];
		i = (i + 1) & ps->map_mask;
	}
	return NULL;
}

/* Linear probing with backward-shift deletion (no tombstones). */
static void map_del(sl__ps *ps, uint64_t id)
{
	size_t i = map_slot(ps, id);
	while (ps->map_k[i] && ps->map_k[i] != id)
		i = (i + 1) & ps->map_mask;
	if (!ps->map_k[i])
		return;
	size_t j = i;
	for (;;) {
		ps->map_k[i] = 0;
		ps->map_v[i] = NULL;
		for (;;) {
			j = (j + 1) & ps->map_mask;
			if (!ps->map_k[j])
				return;
			size_t k = map_slot(ps, ps->map_k[j]);
			/* move j back to i unless k lies cyclically in (i, j] */
			if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
				continue;
			break;
		}
		ps->map_k[i] = ps->map_k[j];
		ps->map_v[i] = ps->map_v[j];
		i = j;
	}
}

/* ------------------------------------------------------------ helpers */

static inline uint64_t ps_now(sl__ps *ps)
{
	return ps->now = sl__now();
}

static void req_free(sl__req *req)
{
	for (unsigned s = 0; req->data_free && s < req->ps->p->n_stages; s++)
		if (req->slots[s].data_free && req->slots[s].data)
			req->slots[s].data_free(req->slots[s].data);
	sl_dynbuf_free(&req->context);
	if (req->prompt != req->input)
		free(req->prompt);
	free(req->text);
	free(req->detail);
	free(req->backend);
	free(req->messages);
	if (req->pooled) {
		/* The block goes back with its output buffer (when small) to the
		 * spare list its next submitter takes it from. */
		if (req->out.cap > SL__KEEP_OUT)
			sl_dynbuf_free(&req->out);
		if (sl_queue_push(req->ps->spare, req) == SL_OK)
			return;
	}
	sl_dynbuf_free(&req->out);
	free(req);
}

/* Frees the blocks on a spare list (no submitter may be running). */
static void spare_drain(sl_queue *q)
{
	void *v;
	while (q && sl_queue_pop_mc(q, &v) == SL_OK) {
		sl__req *r = v;
		sl_dynbuf_free(&r->out);
		free(r);
	}
}

/* Frees the request once its outcome is delivered, no frame on the stack
 * uses it and no stage still holds it (zombie slots). */
static void req_release(sl__ps *ps, sl__req *req)
{
	if (!req->final || req->hold || req->zombies)
		return;
	if (req->admitted)
		sl__ctr_add(&ps->alive, -1);
	req_free(req);
}

static void set_detail(sl__req *req, const char *detail)
{
	if (!detail || req->detail)
		return;
	req->detail = strdup(detail);
}

static void timer_disarm(sl__req *req)
{
	if (req->timer_armed) {
		event_del(&req->timer);
		req->timer_armed = 0;
	}
}

static void on_req_timer(evutil_socket_t fd, short what, void *arg);

/* Arms the request's one timer at its earliest deadline: the request's own
 * or a running stage's timeout. */
static void timer_arm(sl__ps *ps, sl__req *req)
{
	uint64_t at = req->deadline;
	for (unsigned s = 0; s < ps->p->n_stages; s++) {
		uint64_t d = req->slots[s].stage_deadline;
		if (d && (!at || d < at))
			at = d;
	}
	timer_disarm(req);
	if (!at)
		return;
	if (!req->timer_init) {
		event_assign(&req->timer, ps->sh->base, -1, 0, on_req_timer, req);
		req->timer_init = 1;
	}
	uint64_t now = sl__now();
	uint64_t d = at > now ? at - now : 0;
	struct timeval tv = {.tv_sec = (time_t)(d / 1000000000u),
	                     .tv_usec = (suseconds_t)((d % 1000000000u) / 1000u)};
	event_add(&req->timer, &tv);
	req->timer_armed = 1;
}

static void trace_stage(sl__ps *ps, sl__req *req, unsigned s)
{
	const sl_stage_times *t = &req->times[s];
	sl__log(SL_LOG_INFO,
	        "event=stage pipeline=%s stage=%s req=%s session=%s shard=%u "
	        "wait_us=%.1f work_us=%.1f",
	        ps->p->name, ps->p->stages[s].name, req->request_id, req->session, ps->idx,
	        (double)(t->started - t->enqueued) / 1e3,
	        (double)(t->finished - t->started) / 1e3);
}

static void slot_release(sl__ps *ps, unsigned s)
{
	ps->st[s].running--;
	sl__ctr_add(&ps->st[s].ctr.running, -1);
}

static void done_remove(sl__stage_rt *st, struct sl_job *job)
{
	struct sl_job **pp = &st->done_head, *prev = NULL;
	while (*pp && *pp != job) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	if (!*pp)
		return;
	*pp = job->next;
	if (st->done_tail == job)
		st->done_tail = prev;
	job->next = NULL;
	st->done_lv[job->req->priority]--;
}

/* Takes the request out of every stage that still holds it (queue, work,
 * done list), calling the stages' cancel ops.  except: a stage already
 * left by the caller (-1 for none). */
static void pull_out(sl__ps *ps, sl__req *req, int except)
{
	for (unsigned s = 0; s < ps->p->n_stages; s++) {
		struct sl_job *job = &req->slots[s];
		if ((int)s == except)
			continue;
		sl__stage_rt *st = &ps->st[s];
		switch (job->state) {
		case S_QUEUED:
			sl_pq_remove(&st->queue, job, req->priority);
			sl__ctr_add(&st->ctr.queued, -1);
			break;
		case S_RUNNING: {
			const sl_stage_ops *ops = ps->p->stages[s].ops;
			if (job->in_run) {
				/* the stage is on the stack (it failed a sibling inline):
				 * its run() returns after this and sees the request ended */
				job->zombie = 1;
				req->zombies++;
			} else if (ops->cancel) {
				ops->cancel(st->ss, job);
			} else {
				job->zombie = 1; /* freed when the stage reports */
				req->zombies++;
			}
			job->stage_deadline = 0;
			slot_release(ps, s);
			break;
		}
		case S_BLOCKED:
			done_remove(st, job);
			slot_release(ps, s);
			break;
		default:
			continue;
		}
		job->state = S_DONE;
	}
}

/* Ends a request: counters, callback, free.  stage < 0 for "no stage"
 * (completed).  The request must be out of every stage (pull_out). */
static void finish(sl__ps *ps, sl__req *req, sl_outcome oc, int status, int stage,
                   const char *reason)
{
	sl_pipeline *p = ps->p;
	timer_disarm(req);
	req->final = 1;
	if (req->admitted) {
		map_del(ps, req->id);
		sl__ctr_add(&ps->live, -1);
	}
	/* the sink's instant stage_finished just read the clock */
	uint64_t now = ps->fin_now ? ps->fin_now : sl__now();
	ps->fin_now = 0;
	sl__ctr_add(&ps->outcomes[oc], 1);
	if (oc == SL_OUTCOME_COMPLETED)
		sl__hist_record(ps->e2e, now - req->t_submit);

	sl_result r;
	memset(&r, 0, sizeof r);
	r.id = req->id;
	r.request_id = req->request_id;
	r.session = req->session;
	r.outcome = oc;
	r.status = status;
	r.stage = stage >= 0 ? p->stages[stage].name : NULL;
	set_detail(req, reason);
	r.reason = req->detail;
	if (req->text) {
		r.text = req->text;
		r.text_len = req->text_len;
	} else {
		r.text = sl_dynbuf_str(&req->out);
		r.text_len = req->out.len;
	}
	r.n_tokens = req->n_tokens;
	r.prompt_tokens = req->usage.prompt_tokens;
	r.completion_tokens = req->usage.completion_tokens;
	r.finish_reason = req->usage.finish_reason;
	r.backend = req->backend;
	if (oc == SL_OUTCOME_COMPLETED && !r.finish_reason)
		r.finish_reason = req->stop_reason ? req->stop_reason : req->out_cut ? "length" : "stop";
	r.t_submit = req->t_submit;
	r.t_first_token = req->t_first_token;
	r.t_end = now;
	r.n_stages = p->n_stages;
	r.stage_names = p->stage_names;
	r.stage_times = req->times;
	if (p->trace || sl__log_on(SL_LOG_TRACE)) {
		char q[256];
		sl__log(SL_LOG_INFO,
		        "event=outcome pipeline=%s req=%s session=%s shard=%u outcome=%s "
		        "stage=%s status=%s total_us=%.1f reason=%s",
		        p->name, req->request_id, req->session, ps->idx, sl_outcome_name(oc),
		        r.stage ? r.stage : "-", sl_status_name(status),
		        (double)(now - req->t_submit) / 1e3,
		        sl__log_quote(q, sizeof q, r.reason ? r.reason : ""));
	}
	req->on_done(req->user, &r);
	req_release(ps, req);
}

static sl_outcome outcome_for(sl__req *req, int status)
{
	if (status == SL_ECANCELED)
		return SL_OUTCOME_CANCELLED;
	if (status == SL_ETIMEDOUT && req->deadline && sl__now() >= req->deadline)
		return SL_OUTCOME_EXPIRED;
	if (status == SL_ESHED)
		return SL_OUTCOME_SHED;
	return SL_OUTCOME_FAILED;
}

static void count_end(sl__stage_rt *st, sl_outcome oc)
{
	switch (oc) {
	case SL_OUTCOME_SHED: sl__ctr_add(&st->ctr.shed, 1); break;
	case SL_OUTCOME_CANCELLED: sl__ctr_add(&st->ctr.cancelled, 1); break;
	case SL_OUTCOME_EXPIRED: sl__ctr_add(&st->ctr.expired, 1); break;
	case SL_OUTCOME_FAILED: sl__ctr_add(&st->ctr.failed, 1); break;
	default: break;
	}
}

/* Ends a request that is still in one or more stages: pulls it out of all
 * of them, counts the outcome on `stage`, delivers it. */
static void end_req(sl__ps *ps, sl__req *req, sl_outcome oc, int status, int stage,
                    const char *reason)
{
	if (req->final)
		return;
	pull_out(ps, req, -1);
	if (stage >= 0)
		count_end(&ps->st[stage], oc);
	finish(ps, req, oc, status, stage, reason);
	sl__shard_schedule(ps->sh);
}

static void start_job(sl__ps *ps, unsigned s, struct sl_job *job);

/* Puts the request into stage s.  SL_OK (queued or started), SL_EAGAIN
 * (full under block: nothing changed). */
static int enqueue(sl__ps *ps, unsigned s, sl__req *req)
{
	sl__stage_rt *st = &ps->st[s];
	struct sl_job *job = &req->slots[s];
	req->last_stage = (uint8_t)s;
	/* Direct hand-off: nothing queued ahead and a free slot, so the job
	 * starts now instead of taking a trip through the queue (FIFO and
	 * priority order are unaffected: the queue is empty).  Bounded depth:
	 * at most one nested start per stage. */
	if (st->queue.count == 0 && st->running < ps->p->stages[s].conc && !st->done_head &&
	    ps->handoff_depth < SL_MAX_STAGES) {
		req->times[s].enqueued = ps->now;
		sl__ctr_add(&st->ctr.enqueued, 1);
		ps->handoff_depth++;
		start_job(ps, s, job);
		ps->handoff_depth--;
		return SL_OK;
	}
	int rc = sl_pq_push(&st->queue, job, req->priority, ps->now);
	if (rc == SL_OK) {
		job->state = S_QUEUED;
		req->times[s].enqueued = ps->now;
		sl__ctr_add(&st->ctr.enqueued, 1);
		sl__ctr_add(&st->ctr.queued, 1);
		return SL_OK;
	}
	return rc == SL_ENOMEM ? SL_ENOMEM : SL_EAGAIN;
}

/* Can stage s take one more request now? */
static int has_room(sl__ps *ps, unsigned s)
{
	return !sl_pq_full(&ps->st[s].queue);
}

/* May an arrival of priority prio take a place in stage s's full queue by
 * displacing the newest request of its lowest level ("shed" with
 * displacement on, that level below prio)? */
static int can_displace(sl__ps *ps, unsigned s, unsigned prio)
{
	const sl__stage *sd = &ps->p->stages[s];
	void *v;
	unsigned lvl;
	return sd->overflow == SL_OVERFLOW_SHED && sd->displace &&
	       sl_pq_peek_victim(&ps->st[s].queue, &v, &lvl) == SL_OK && lvl < prio;
}

/* Makes the room can_displace() promised: the newest request of the lowest
 * level leaves stage s's queue and ends "shed" there. */
static void displace(sl__ps *ps, unsigned s)
{
	sl__stage_rt *st = &ps->st[s];
	void *it;
	unsigned lvl;
	if (sl_pq_take_victim(&st->queue, &it, &lvl) != SL_OK)
		return;
	struct sl_job *job = it;
	job->state = S_DONE; /* out of the queue: pull_out skips it */
	sl__ctr_add(&st->ctr.queued, -1);
	sl__ctr_add(&st->ctr.displaced, 1);
	end_req(ps, job->req, SL_OUTCOME_SHED, SL_ESHED, (int)s, "displaced by higher priority");
}

/* The successors of s that the request enters now: those whose other
 * predecessors are all done (after this stage's decrement). */
static unsigned ready_targets(sl__ps *ps, sl__req *req, unsigned s, uint8_t *out)
{
	sl__stage *sd = &ps->p->stages[s];
	unsigned n = 0;
	for (unsigned k = 0; k < sd->n_succ; k++) {
		struct sl_job *t = &req->slots[sd->succ[k]];
		if (t->waiting == 0 && t->state == S_NONE)
			out[n++] = sd->succ[k];
	}
	return n;
}

/* Tries to move a request that finished stage s on to its ready targets.
 * Returns 1 if it left stage s (moved, shed, or ended), 0 if it must wait
 * for room (block). */
static int move_on(sl__ps *ps, unsigned s, sl__req *req)
{
	uint8_t tg[SL_MAX_STAGES];
	unsigned n = ready_targets(ps, req, s, tg);
	/* all-or-nothing: enter every target at once, or wait / shed (nothing
	 * is displaced before every target is known to take the request) */
	for (unsigned k = 0; k < n; k++) {
		if (has_room(ps, tg[k]) || can_displace(ps, tg[k], req->priority))
			continue;
		if (ps->p->stages[tg[k]].overflow == SL_OVERFLOW_SHED) {
			slot_release(ps, s);
			req->slots[s].state = S_DONE;
			sl__ctr_add(&ps->st[tg[k]].ctr.shed, 1);
			pull_out(ps, req, (int)s);
			req->last_stage = tg[k];
			finish(ps, req, SL_OUTCOME_SHED, SL_ESHED, tg[k], "queue full");
			return 1;
		}
		return 0;
	}
	slot_release(ps, s);
	req->slots[s].state = S_DONE;
	req->hold++;
	for (unsigned k = 0; k < n && !req->final; k++) {
		if (!has_room(ps, tg[k]))
			displace(ps, tg[k]);
		enqueue(ps, tg[k], req); /* room checked or made: SL_OK */
	}
	req->hold--;
	req_release(ps, req);
	return 1;
}

static void done_append(sl__stage_rt *st, struct sl_job *job)
{
	job->next = NULL;
	if (st->done_tail)
		st->done_tail->next = job;
	else
		st->done_head = job;
	st->done_tail = job;
	st->done_lv[job->req->priority]++;
}

/* The request finished stage s successfully: move it on (or park it). */
static void advance(sl__ps *ps, unsigned s, sl__req *req)
{
	sl__stage *sd = &ps->p->stages[s];
	if (s == ps->p->sink) {
		slot_release(ps, s);
		req->slots[s].state = S_DONE;
		finish(ps, req, SL_OUTCOME_COMPLETED, SL_OK, -1, NULL);
		return;
	}
	for (unsigned k = 0; k < sd->n_succ; k++)
		req->slots[sd->succ[k]].waiting--;
	if (!ps->st[s].done_head && move_on(ps, s, req))
		return;
	req->slots[s].state = S_BLOCKED;
	done_append(&ps->st[s], &req->slots[s]);
}

/* Stage s ended its work on the request with status rc. */
static void stage_finished(sl__ps *ps, unsigned s, sl__req *req, int rc, int sync)
{
	sl__stage_rt *st = &ps->st[s];
	struct sl_job *job = &req->slots[s];
	/* an instant stage done inside run(): the clock reading of its start */
	int instant = sync && (ps->p->stages[s].ops->flags & SL_STAGE_INSTANT);
	uint64_t now = instant ? ps->now : ps_now(ps);
	ps->fin_now = instant && s == ps->p->sink ? now : 0;
	req->times[s].finished = now;
	sl__hist_record(st->lat, now - req->times[s].started);
	if (job->stage_deadline) {
		job->stage_deadline = 0;
		if (req->timer_armed)
			timer_arm(ps, req); /* without this stage's timeout */
	}
	if (ps->p->trace || sl__log_on(SL_LOG_TRACE))
		trace_stage(ps, req, s);
	if (rc == SL_OK) {
		sl__ctr_add(&st->ctr.processed, 1);
		advance(ps, s, req);
		ps->fin_now = 0; /* only ever this call's finish() reads it */
		return;
	}
	sl_outcome oc = outcome_for(req, rc);
	count_end(st, oc);
	slot_release(ps, s);
	job->state = S_DONE;
	pull_out(ps, req, (int)s);
	req->last_stage = (uint8_t)s;
	finish(ps, req, oc, rc, (int)s, req->detail ? req->detail : sl_strerror(rc));
}

static void run_job(sl__ps *ps, unsigned s, struct sl_job *job)
{
	sl__req *req = job->req;
	sl__stage *sd = &ps->p->stages[s];
	job->in_run = 1;
	job->inline_done = 0;
	if (!job->data_free) /* a token filter's state survives into its run() */
		job->data = NULL;
	req->hold++;
	int rc = sd->ops->run(ps->st[s].ss, job);
	req->hold--;
	job->in_run = 0;
	if (job->zombie) {
		/* the request ended while this stage was on the stack */
		job->zombie = 0;
		req->zombies--;
		req_release(ps, req);
		return;
	}
	if (rc == SL_EPENDING) {
		if (!job->inline_done)
			return;
		rc = job->inline_status;
	}
	stage_finished(ps, s, req, rc, 1);
}

/* Takes a slot of stage s for the request (just out of the queue, or
 * handed over directly) and runs it. */
static void start_job(sl__ps *ps, unsigned s, struct sl_job *job)
{
	sl__req *req = job->req;
	sl__stage_rt *st = &ps->st[s];
	sl__stage *sd = &ps->p->stages[s];
	if (req->deadline && ps->now >= req->deadline) {
		job->state = S_DONE;
		sl__ctr_add(&st->ctr.expired, 1);
		pull_out(ps, req, (int)s);
		finish(ps, req, SL_OUTCOME_EXPIRED, SL_ETIMEDOUT, (int)s, "deadline exceeded");
		return;
	}
	job->state = S_RUNNING;
	st->running++;
	sl__ctr_add(&st->ctr.running, 1);
	req->times[s].started = ps->now;
	sl__hist_record(st->wait, ps->now - req->times[s].enqueued);
	if (sd->timeout_ms) {
		job->stage_deadline = ps->now + (uint64_t)sd->timeout_ms * 1000000u;
		timer_arm(ps, req);
	}
	run_job(ps, s, job);
}

static void on_req_timer(evutil_socket_t fd, short what, void *arg)
{
	sl__req *req = arg;
	sl__ps *ps = req->ps;
	req->timer_armed = 0;
	sl__ps_enter(ps);
	uint64_t now = ps_now(ps);
	if (req->deadline && now >= req->deadline) {
		end_req(ps, req, SL_OUTCOME_EXPIRED, SL_ETIMEDOUT, req->last_stage,
		        "deadline exceeded");
		sl__ps_exit(ps);
		return;
	}
	for (unsigned s = 0; s < ps->p->n_stages; s++) {
		uint64_t d = req->slots[s].stage_deadline;
		if (d && now >= d) {
			char why[96];
			snprintf(why, sizeof why, "stage %s timed out after %u ms", ps->p->stages[s].name,
			         ps->p->stages[s].timeout_ms);
			end_req(ps, req, SL_OUTCOME_FAILED, SL_ETIMEDOUT, (int)s, why);
			sl__ps_exit(ps);
			return;
		}
	}
	timer_arm(ps, req); /* woke early (clock granularity) */
	sl__ps_exit(ps);
}

/* ------------------------------------------------------------ the pump */

static int early_cancelled(sl__ps *ps, uint64_t id)
{
	for (unsigned i = 0; i < ps->n_early; i++)
		if (ps->early[i] == id) {
			ps->early[i] = ps->early[--ps->n_early];
			return 1;
		}
	return 0;
}

/* Counts a request popped from the inbox as admitted. */
static void admit_count(sl__ps *ps, sl__req *req)
{
	req->admitted = 1;
	sl__ctr_add(&ps->submitted, 1);
	sl__ctr_add(&ps->live, 1);
	sl__ctr_add(&ps->alive, 1);
	map_put(ps, req);
}

static void admit_one(sl__ps *ps, sl__req *req)
{
	sl_pipeline *p = ps->p;
	admit_count(ps, req);
	if (ps->n_early && early_cancelled(ps, req->id)) {
		sl__ctr_add(&ps->st[0].ctr.cancelled, 1);
		finish(ps, req, SL_OUTCOME_CANCELLED, SL_ECANCELED, 0, "cancelled by caller");
		return;
	}
	if (req->deadline) {
		if (ps->now >= req->deadline) {
			sl__ctr_add(&ps->st[0].ctr.expired, 1);
			finish(ps, req, SL_OUTCOME_EXPIRED, SL_ETIMEDOUT, 0, "deadline exceeded");
			return;
		}
		timer_arm(ps, req);
	}
	/* enter every root at once (room was checked by admit(), or shed, or
	 * displace) */
	for (unsigned s = 0; s < p->n_stages; s++) {
		if (p->stages[s].n_pred)
			continue;
		if (!has_room(ps, s) && !can_displace(ps, s, req->priority)) {
			sl__ctr_add(&ps->st[s].ctr.shed, 1);
			pull_out(ps, req, -1);
			req->last_stage = (uint8_t)s;
			finish(ps, req, SL_OUTCOME_SHED, SL_ESHED, (int)s, "queue full");
			return;
		}
	}
	req->hold++;
	for (unsigned s = 0; s < p->n_stages && !req->final; s++) {
		if (p->stages[s].n_pred)
			continue;
		if (!has_room(ps, s))
			displace(ps, s);
		enqueue(ps, s, req);
	}
	req->hold--;
	req_release(ps, req);
}

/* Room in every root (block), or shed policy on every full root. */
static int roots_admit(sl__ps *ps)
{
	sl_pipeline *p = ps->p;
	for (unsigned s = 0; s < p->n_stages; s++)
		if (!p->stages[s].n_pred && !has_room(ps, s) &&
		    p->stages[s].overflow != SL_OVERFLOW_SHED)
			return 0;
	return 1;
}

static int inbox_room(sl__ps *ps)
{
	return sl_queue_size(ps->inbox) < sl_queue_capacity(ps->inbox);
}

/* inboxes (the priority lane first) -> the roots.  Returns 1 if anything
 * moved. */
static int admit(sl__ps *ps)
{
	int moved = 0, moved_hi = 0;
	while (roots_admit(ps)) {
		void *it;
		if (sl_queue_pop(ps->inbox_hi, &it) == SL_OK) {
			moved_hi = 1;
		} else if (sl_queue_pop(ps->inbox, &it) != SL_OK) {
			break;
		} else {
			moved = 1;
		}
		admit_one(ps, it);
	}
	if (moved_hi)
		sl_queue_notify(ps->inbox_hi);
	if (moved)
		sl_queue_notify(ps->inbox);
	moved |= moved_hi;
	if (!sl_list_empty(&ps->ready) &&
	    (inbox_room(ps) ||
	     atomic_load_explicit(&ps->p->closing, memory_order_relaxed))) {
		sl_lnode *n = sl_list_take(&ps->ready);
		while (n) {
			sl_lnode *next = n->next;
			sl_post *po = (sl_post *)n;
			po->fn(po->arg);
			n = next;
		}
	}
	return moved;
}

/* The done list's first job of its highest priority: the head unless
 * priorities are mixed. */
static struct sl_job *done_first(const sl__stage_rt *st)
{
	unsigned top = SL_PRIORITY_LEVELS - 1;
	while (top > 0 && !st->done_lv[top])
		top--;
	struct sl_job *job = st->done_head;
	while (job->req->priority != top && job->next)
		job = job->next;
	return job;
}

/* Moves the requests parked on stage s's done list on while there is room:
 * highest priority first, FIFO within a priority. */
static int flush_done(sl__ps *ps, unsigned s)
{
	sl__stage_rt *st = &ps->st[s];
	int moved = 0;
	while (st->done_head) {
		struct sl_job *job = done_first(st);
		/* take it off the list first: move_on may end the request */
		done_remove(st, job);
		if (!move_on(ps, s, job->req)) {
			/* still no room: back at the head (still the first pick) */
			job->next = st->done_head;
			st->done_head = job;
			if (!st->done_tail)
				st->done_tail = job;
			st->done_lv[job->req->priority]++;
			break;
		}
		moved = 1;
	}
	return moved;
}

static int start_queued(sl__ps *ps, unsigned s)
{
	sl__stage_rt *st = &ps->st[s];
	sl__stage *sd = &ps->p->stages[s];
	int moved = 0;
	while (st->running < sd->conc && !st->done_head) {
		void *it;
		if (sl_pq_pop(&st->queue, &it, ps->now) != SL_OK)
			break;
		moved = 1;
		sl__ctr_add(&st->ctr.queued, -1);
		start_job(ps, s, it);
	}
	return moved;
}

static void pump(sl__ps *ps)
{
	int progress;
	do {
		ps_now(ps);
		progress = admit(ps);
		for (int s = (int)ps->p->n_stages - 1; s >= 0; s--) {
			if ((unsigned)s != ps->p->sink)
				progress |= flush_done(ps, (unsigned)s);
			progress |= start_queued(ps, (unsigned)s);
		}
	} while (progress);
}

static void ps_poll(sl__poller *pl)
{
	sl__ps *ps = (sl__ps *)pl;
	sl__ps_enter(ps);
	pump(ps);
	sl__ps_exit(ps);
}

static int ps_pending(sl__poller *pl)
{
	sl__ps *ps = (sl__ps *)pl;
	if ((sl_queue_size(ps->inbox) > 0 || sl_queue_size(ps->inbox_hi) > 0) && roots_admit(ps))
		return 1;
	return !sl_list_empty(&ps->ready) && inbox_room(ps);
}

/* ------------------------------------------------------------ job API */

void sl_job_done(sl_job *job, int status, const char *detail)
{
	sl__req *req = job->req;
	sl__ps *ps = req->ps;
	if (status != SL_OK)
		set_detail(req, detail);
	if (job->in_run) {
		job->inline_done = 1;
		job->inline_status = status;
		return;
	}
	sl__ps_enter(ps);
	if (job->zombie) {
		job->zombie = 0;
		req->zombies--;
		req_release(ps, req);
	} else if (job->state == S_RUNNING && !req->final) {
		stage_finished(ps, job->stage, req, status, 0);
		sl__shard_schedule(ps->sh);
	}
	sl__ps_exit(ps);
}

const char *sl_job_input(const sl_job *job, size_t *len)
{
	if (len)
		*len = job->req->input_len;
	return job->req->input;
}

const char *sl_job_prompt(const sl_job *job, size_t *len)
{
	if (len)
		*len = job->req->prompt_len;
	return job->req->prompt;
}

/* A NUL-terminated copy of a stage's rewrite of the input (prompt or chat
 * messages), bounded by the pipeline's input size. */
static int input_copy(const sl__req *req, const char *text, size_t len, char **out)
{
	if (len > req->ps->p->max_input * 4 + 65536)
		return SL_ETOOBIG;
	char *c = malloc(len + 1);
	if (!c)
		return SL_ENOMEM;
	memcpy(c, text, len);
	c[len] = '\0';
	*out = c;
	return SL_OK;
}

int sl_job_set_messages(sl_job *job, const char *json, size_t len)
{
	sl__req *req = job->req;
	char *c;
	int rc = input_copy(req, json, len, &c);
	if (rc != SL_OK)
		return rc;
	free(req->messages);
	req->messages = c;
	return SL_OK;
}

int sl_job_set_prompt(sl_job *job, const char *text, size_t len)
{
	sl__req *req = job->req;
	char *c;
	int rc = input_copy(req, text, len, &c);
	if (rc != SL_OK)
		return rc;
	if (req->prompt != req->input)
		free(req->prompt);
	req->prompt = c;
	req->prompt_len = len;
	return SL_OK;
}

int sl_job_add_context(sl_job *job, const char *text, size_t len)
{
	return sl_dynbuf_add(&job->req->context, text, len);
}

const char *sl_job_context(const sl_job *job, size_t *len)
{
	if (len)
		*len = job->req->context.len;
	return sl_dynbuf_str(&job->req->context);
}

const char *sl_job_meta(const sl_job *job, const char *key)
{
	const sl__req *req = job->req;
	for (size_t i = 0; i < req->n_meta; i++)
		if (strcmp(req->meta[i].key, key) == 0)
			return req->meta[i].value;
	return NULL;
}

const char *sl_job_session(const sl_job *job)
{
	return job->req->session;
}

const char *sl_job_text(const sl_job *job, size_t *len)
{
	const sl__req *req = job->req;
	if (req->text) {
		if (len)
			*len = req->text_len;
		return req->text;
	}
	if (len)
		*len = req->out.len;
	return sl_dynbuf_str(&req->out);
}

int sl_job_set_text(sl_job *job, const char *text, size_t len)
{
	sl__req *req = job->req;
	if (len > req->ps->p->max_output)
		return SL_ETOOBIG;
	char *c = malloc(len + 1);
	if (!c)
		return SL_ENOMEM;
	memcpy(c, text, len);
	c[len] = '\0';
	free(req->text);
	req->text = c;
	req->text_len = len;
	return SL_OK;
}

void **sl_job_stage_data(sl_job *job)
{
	return &job->data;
}

void sl_job_set_data_free(sl_job *job, void (*fn)(void *))
{
	job->data_free = fn;
	if (fn)
		job->req->data_free = 1;
}

sl_worker *sl_job_worker(const sl_job *job)
{
	return job->req->ps->p->worker;
}

sl_runtime *sl__req_runtime(const sl__req *req)
{
	return req->ps->p->rt;
}

unsigned sl__req_shard(const sl__req *req)
{
	return req->ps->idx;
}

/* Token path: filters of the stages after the inference stage, in order,
 * then the caller's on_token. */
static void deliver(sl__req *req, unsigned from, const char *text, size_t len)
{
	sl_pipeline *p = req->ps->p;
	unsigned s = from < p->n_stages ? p->tok_next[from] : p->n_stages;
	if (s < p->n_stages) {
		uint8_t saved = req->emit_from;
		req->emit_from = (uint8_t)(s + 1);
		p->stages[s].ops->on_token(req->ps->st[s].ss, &req->slots[s], text, len);
		req->emit_from = saved;
		return;
	}
	if (req->on_token && len)
		req->on_token(req->user, text, len);
}

void sl_job_emit(sl_job *job, const char *text, size_t len)
{
	sl__req *req = job->req;
	/* outside a filter call (from run()): the stages after this one */
	deliver(req, req->emit_from ? req->emit_from : (unsigned)job->stage + 1, text, len);
}

void sl_job_stop_output(sl_job *job, const char *finish_reason)
{
	job->req->out_cut = 1;
	job->req->stop_reason = finish_reason;
}

/* ------------------------------------------------------------ infer API */

/* The request's own call above a chain of sub-calls. */
static inline const sl_infer *root_call(const sl_infer *call)
{
	while (call->parent)
		call = call->parent;
	return call;
}
#define REQ_OF(call) SL__REQ_OF_CALL(root_call(call))

const char *sl_infer_prompt(const sl_infer *call, size_t *len)
{
	const sl__req *req = REQ_OF(call);
	if (len)
		*len = req->prompt_len;
	return req->prompt;
}

const sl_infer_params *sl_infer_params_of(const sl_infer *call)
{
	return &REQ_OF(call)->params;
}

uint64_t sl_infer_deadline(const sl_infer *call)
{
	return REQ_OF(call)->deadline;
}

const char *sl_infer_meta(const sl_infer *call, const char *key)
{
	const sl__req *req = REQ_OF(call);
	for (size_t i = 0; i < req->n_meta; i++)
		if (strcmp(req->meta[i].key, key) == 0)
			return req->meta[i].value;
	return NULL;
}

const char *sl_infer_request_id(const sl_infer *call)
{
	return REQ_OF(call)->request_id;
}

const char *sl_infer_session(const sl_infer *call)
{
	return REQ_OF(call)->session;
}

const char *sl_infer_messages(const sl_infer *call)
{
	return REQ_OF(call)->messages;
}

int sl_infer_prompt_replaced(const sl_infer *call)
{
	const sl__req *req = REQ_OF(call);
	return req->prompt != req->input;
}

void **sl_infer_worker_data(sl_infer *call)
{
	return &call->wdata;
}

void sl_infer_set_failure(sl_infer *call, sl_fail_kind kind, int http_status)
{
	call->fail_kind = (uint8_t)kind;
	call->fail_http = (uint16_t)(http_status > 0 && http_status < 1000 ? http_status : 0);
}

void sl_infer_annotate(sl_infer *call, const char *key, const char *value)
{
	sl__req *req = (sl__req *)REQ_OF(call);
	if (!key || !value || req->final)
		return;
	if (strcmp(key, "backend") == 0 && !(req->backend && strcmp(req->backend, value) == 0)) {
		char *c = strdup(value);
		if (c) {
			free(req->backend);
			req->backend = c;
		}
	}
	if (req->on_attr)
		req->on_attr(req->user, key, value);
}

sl_infer *sl_infer_sub_new(sl_infer *parent, const sl_infer_hooks *hooks, void *user)
{
	if (!parent || !hooks || !hooks->token || !hooks->done)
		return NULL;
	sl_infer *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->parent = parent;
	c->hooks = hooks;
	c->user = user;
	return c;
}

void sl_infer_sub_free(sl_infer *sub)
{
	if (sub && sub->parent)
		free(sub);
}

void *sl_infer_sub_user(const sl_infer *sub)
{
	return sub->user;
}

sl_infer *sl_infer_sub_parent(const sl_infer *sub)
{
	return sub->parent;
}

sl_fail_kind sl_infer_sub_failure(const sl_infer *sub, int *http_status)
{
	if (http_status)
		*http_status = sub->fail_http;
	return (sl_fail_kind)sub->fail_kind;
}

int sl_infer_token(sl_infer *call, const char *text, size_t len)
{
	if (call->parent)
		return call->hooks->token(call, text, len);
	sl__req *req = SL__REQ_OF_CALL(call);
	sl__ps *ps = req->ps;
	unsigned inf = ps->p->inference;
	if (req->final || inf >= ps->p->n_stages || req->slots[inf].state != S_RUNNING ||
	    req->slots[inf].zombie)
		return SL_ECANCELED;
	if (req->out_cut)
		return SL_ETOOBIG;
	sl__ps_enter(ps);
	int rc = sl_dynbuf_add(&req->out, text, len);
	if (rc == SL_OK) {
		req->n_tokens++;
		sl__ctr_add(&ps->tokens_out, 1);
		if (!req->t_first_token) {
			req->t_first_token = sl__now();
			sl__hist_record(ps->ttft, req->t_first_token - req->t_submit);
		}
		req->hold++;
		deliver(req, inf + 1, text, len);
		req->hold--;
		req_release(ps, req);
	} else if (rc == SL_ETOOBIG) {
		req->out_cut = 1;
	}
	sl__ps_exit(ps);
	return rc;
}

void sl_infer_done(sl_infer *call, int status, const char *detail,
                   const sl_usage *usage)
{
	if (call->parent) {
		call->hooks->done(call, status, detail, usage);
		return;
	}
	sl__req *req = SL__REQ_OF_CALL(call);
	if (usage) {
		req->usage = *usage;
		if (req->out_cut && status == SL_OK)
			req->usage.finish_reason = req->stop_reason ? req->stop_reason : "length";
	}
	sl_job_done(&req->slots[req->ps->p->inference], status, detail);
}

/* ------------------------------------------------------------ create */

void sl_request_init(sl_request *req)
{
	memset(req, 0, sizeof *req);
	req->priority = SL_PRIORITY_DEFAULT;
	req->input_len = (size_t)-1;
	req->params.temperature = -1;
	req->params.top_p = -1;
}

void sl_pipeline_default(sl_pipeline_opts *opts, sl_stage_def stages[5],
                         sl_worker *worker)
{
	static const struct {
		const char *name;
		const sl_stage_ops *ops;
		uint32_t q, c;
	} d[5] = {
		{"rag", &sl_stage_rag, SL_DEFAULT_RAG_QUEUE, SL_DEFAULT_STAGE_CONCURRENCY},
		{"assemble", &sl_stage_assemble, SL_DEFAULT_ASSEMBLE_QUEUE, SL_DEFAULT_STAGE_CONCURRENCY},
		{"inference", &sl_stage_inference, SL_DEFAULT_INFERENCE_QUEUE, SL_DEFAULT_INFERENCE_CONCURRENCY},
		{"post", &sl_stage_post, SL_DEFAULT_POST_QUEUE, SL_DEFAULT_STAGE_CONCURRENCY},
		{"stream", &sl_stage_stream, SL_DEFAULT_STREAM_QUEUE, SL_DEFAULT_STAGE_CONCURRENCY},
	};
	for (int i = 0; i < 5; i++) {
		memset(&stages[i], 0, sizeof stages[i]);
		stages[i].name = d[i].name;
		stages[i].ops = d[i].ops;
		stages[i].queue = d[i].q;
		stages[i].concurrency = d[i].c;
		stages[i].overflow = SL_OVERFLOW_BLOCK;
		stages[i].aging_ms = 1000;
		stages[i].displace = 1;
	}
	memset(opts, 0, sizeof *opts);
	opts->name = "default";
	opts->stages = stages;
	opts->n_stages = 5;
	opts->worker = worker;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return SL_EINVAL;
}

static size_t next_pow2(size_t v)
{
	size_t p = 1;
	while (p < v)
		p <<= 1;
	return p;
}

static void ps_free(sl__ps *ps, unsigned n_stages)
{
	if (!ps)
		return;
	for (unsigned s = 0; s < n_stages; s++) {
		sl_pq_fini(&ps->st[s].queue);
		free(ps->st[s].lat);
		free(ps->st[s].wait);
	}
	free(ps->e2e);
	free(ps->ttft);
	free(ps->map_k);
	free(ps->map_v);
	sl_queue_destroy(ps->inbox);
	sl_queue_destroy(ps->inbox_hi);
	spare_drain(ps->spare);
	sl_queue_destroy(ps->spare);
	free(ps);
}

static sl__ps *ps_new(sl_pipeline *p, unsigned idx)
{
	size_t sz = sizeof(sl__ps) + p->n_stages * sizeof(sl__stage_rt);
	sl__ps *ps = aligned_alloc(64, (sz + 63) & ~(size_t)63);
	if (!ps)
		return NULL;
	memset(ps, 0, sz);
	ps->p = p;
	ps->idx = idx;
	ps->sh = sl__rt_shard(p->rt, idx);
	ps->poller.poll = ps_poll;
	ps->poller.pending = ps_pending;
	ps->poller.next = ps->poller.prev = &ps->poller;
	sl_list_init(&ps->ready);
	atomic_init(&ps->next_id, 1);
	size_t bound = 0;
	int ok = 1;
	for (unsigned s = 0; s < p->n_stages; s++) {
		sl__stage_rt *st = &ps->st[s];
		bound += p->stages[s].queue + p->stages[s].conc;
		if (sl_pq_init(&st->queue, p->stages[s].queue) != SL_OK)
			ok = 0;
		sl_pq_set_aging(&st->queue, (uint64_t)p->stages[s].aging_ms * 1000000u);
		st->lat = calloc(1, sizeof(sl_histogram));
		st->wait = calloc(1, sizeof(sl_histogram));
		if (!st->lat || !st->wait)
			ok = 0;
	}
	ps->e2e = calloc(1, sizeof(sl_histogram));
	ps->ttft = calloc(1, sizeof(sl_histogram));
	/* The map holds admitted jobs: at most the queues plus the slots. */
	ps->map_mask = next_pow2(bound * 2 + 16) - 1;
	ps->map_k = calloc(ps->map_mask + 1, sizeof *ps->map_k);
	ps->map_v = calloc(ps->map_mask + 1, sizeof *ps->map_v);
	/* The inbox holds as many as stage 0's queue; the priority lane a
	 * quarter of that (at least 64). */
	uint32_t q0 = p->stages[0].queue;
	if (!ok || !ps->e2e || !ps->ttft || !ps->map_k || !ps->map_v ||
	    sl_queue_create(q0, &ps->inbox) != SL_OK ||
	    sl_queue_create(q0 / 4 > 64 ? q0 / 4 : 64, &ps->inbox_hi) != SL_OK ||
	    sl_queue_create(SL__SPARE, &ps->spare) != SL_OK) {
		ps_free(ps, p->n_stages);
		return NULL;
	}
	return ps;
}

typedef struct attach_ctx {
	sl__ps *ps;
	int rc;
} attach_ctx;

static void attach_fn(void *arg)
{
	attach_ctx *a = arg;
	sl__ps *ps = a->ps;
	sl_pipeline *p = ps->p;
	a->rc = SL_OK;
	for (unsigned s = 0; s < p->n_stages; s++) {
		const sl_stage_ops *ops = p->stages[s].ops;
		if (ops->start) {
			int rc = ops->start(p->stages[s].state, ps->sh->base, ps->idx, &ps->st[s].ss);
			if (rc != SL_OK) {
				a->rc = rc;
				for (unsigned k = 0; k < s; k++)
					if (p->stages[k].ops->stop)
						p->stages[k].ops->stop(ps->st[k].ss);
				return;
			}
		}
	}
	if (p->worker) {
		int rc = sl__worker_attach(p->worker, p->rt, ps->sh, &ps->wss);
		if (rc != SL_OK) {
			a->rc = rc;
			for (unsigned k = 0; k < p->n_stages; k++)
				if (p->stages[k].ops->stop)
					p->stages[k].ops->stop(ps->st[k].ss);
			return;
		}
	}
	sl__shard_add_poller(ps->sh, &ps->poller);
	ps->attached = 1;
}

static void detach_fn(void *arg)
{
	sl__ps *ps = arg;
	sl_pipeline *p = ps->p;
	if (!ps->attached)
		return;
	sl__shard_remove_poller(ps->sh, &ps->poller);
	for (unsigned s = 0; s < p->n_stages; s++)
		if (p->stages[s].ops->stop)
			p->stages[s].ops->stop(ps->st[s].ss);
	if (p->worker)
		sl__worker_detach(p->worker, ps->sh);
	ps->attached = 0;
}

static void pipeline_free(sl_pipeline *p)
{
	if (!p)
		return;
	if (p->ps) {
		for (unsigned i = 0; i < p->n_shards; i++) {
			if (p->ps[i] && p->ps[i]->attached)
				sl__shard_call(p->rt, i, detach_fn, p->ps[i]);
			ps_free(p->ps[i], p->n_stages);
		}
		free(p->ps);
	}
	for (unsigned s = 0; s < p->n_stages; s++) {
		if (p->stages[s].inited && p->stages[s].ops->fini)
			p->stages[s].ops->fini(p->stages[s].state);
		free(p->stages[s].name);
	}
	free(p->name);
	free(p);
}

int sl_pipeline_create(sl_runtime *rt, const sl_pipeline_opts *o,
                       sl_pipeline **out, char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = '\0';
	if (!rt || !o || !out)
		return fail(err, errlen, "runtime, options and output are required");
	if (sl__shard_current())
		return fail(err, errlen, "sl_pipeline_create may not be called from a shard thread");
	if (o->n_stages < 1 || o->n_stages > SL_MAX_STAGES || !o->stages)
		return fail(err, errlen, "a pipeline needs 1..%d stages (got %u)",
		            SL_MAX_STAGES, o->n_stages);
	unsigned has_inference = 0;
	for (unsigned s = 0; s < o->n_stages; s++) {
		const sl_stage_def *d = &o->stages[s];
		if (!d->name || !*d->name)
			return fail(err, errlen, "stages[%u]: name is required", s);
		if (!d->ops || !d->ops->run)
			return fail(err, errlen, "stage %s: a stage kind (ops with run) is required", d->name);
		if (d->queue < 1 || d->queue > (1u << 24))
			return fail(err, errlen, "stage %s: queue must be 1..16777216 (got %u)", d->name, d->queue);
		if (d->concurrency < 1 || d->concurrency > (1u << 20))
			return fail(err, errlen, "stage %s: concurrency must be 1..1048576 (got %u)",
			            d->name, d->concurrency);
		if (d->overflow != SL_OVERFLOW_BLOCK && d->overflow != SL_OVERFLOW_SHED)
			return fail(err, errlen, "stage %s: overflow must be block or shed", d->name);
		for (unsigned k = 0; k < s; k++)
			if (strcmp(o->stages[k].name, d->name) == 0)
				return fail(err, errlen, "stage name %s is used twice", d->name);
		if (d->ops == &sl_stage_inference)
			has_inference++;
		if (d->after && d->n_after > SL_MAX_STAGES)
			return fail(err, errlen, "stage %s: too many predecessors", d->name);
		for (unsigned k = 0; d->after && k < d->n_after; k++) {
			const char *a = d->after[k];
			unsigned j;
			for (j = 0; j < s; j++)
				if (a && strcmp(o->stages[j].name, a) == 0)
					break;
			if (j == s) {
				unsigned later;
				for (later = s; later < o->n_stages; later++)
					if (a && strcmp(o->stages[later].name, a) == 0)
						break;
				if (later < o->n_stages)
					return fail(err, errlen,
					            "stage %s: after %s, which is not earlier in the list "
					            "(stages must be in topological order)", d->name, a);
				return fail(err, errlen, "stage %s: after unknown stage %s", d->name,
				            a ? a : "(null)");
			}
			for (unsigned m = 0; m < k; m++)
				if (strcmp(d->after[m], a) == 0)
					return fail(err, errlen, "stage %s: after %s twice", d->name, a);
		}
	}
	if (has_inference > 1)
		return fail(err, errlen, "a pipeline has at most one inference stage");
	/* edges: after == NULL means the previous stage */
	uint8_t npred[SL_MAX_STAGES] = {0}, nsucc[SL_MAX_STAGES] = {0};
	uint8_t pred[SL_MAX_STAGES][SL_MAX_STAGES];
	for (unsigned s = 0; s < o->n_stages; s++) {
		const sl_stage_def *d = &o->stages[s];
		if (!d->after) {
			if (s > 0)
				pred[s][npred[s]++] = (uint8_t)(s - 1);
			continue;
		}
		for (unsigned k = 0; k < d->n_after; k++)
			for (unsigned j = 0; j < s; j++)
				if (strcmp(o->stages[j].name, d->after[k]) == 0)
					pred[s][npred[s]++] = (uint8_t)j;
	}
	for (unsigned s = 0; s < o->n_stages; s++)
		for (unsigned k = 0; k < npred[s]; k++)
			nsucc[pred[s][k]]++;
	for (unsigned s = 0; s + 1 < o->n_stages; s++)
		if (nsucc[s] == 0)
			return fail(err, errlen,
			            "stage %s has no successor: only the last stage (%s) may end "
			            "the pipeline", o->stages[s].name, o->stages[o->n_stages - 1].name);
	if (has_inference && !o->worker)
		return fail(err, errlen, "the inference stage needs a worker");
	if (o->max_input > ((size_t)1 << 31) || o->max_output > ((size_t)1 << 31))
		return fail(err, errlen, "max_input and max_output must be at most 2 GiB");

	sl_pipeline *p = calloc(1, sizeof *p);
	if (!p)
		return SL_ENOMEM;
	p->rt = rt;
	p->n_shards = sl_runtime_shards(rt);
	p->name = strdup(o->name ? o->name : "default");
	p->worker = o->worker;
	p->on_destroy = o->on_destroy;
	p->on_destroy_arg = o->on_destroy_arg;
	p->max_input = o->max_input ? o->max_input : SL_DEFAULT_MAX_INPUT;
	p->max_output = o->max_output ? o->max_output : SL_DEFAULT_MAX_OUTPUT;
	p->trace = o->trace;
	p->n_stages = o->n_stages;
	p->blk = (((sizeof(sl__req) + (sizeof(struct sl_job) + sizeof(sl_stage_times)) * p->n_stages +
	            15) & ~(size_t)15) + SL__BLK_TEXT + 63) & ~(size_t)63;
	p->sink = o->n_stages - 1;
	p->inference = o->n_stages; /* none until found */
	atomic_init(&p->closing, 0);
	int rc = p->name ? SL_OK : SL_ENOMEM;
	for (unsigned s = 0; s < o->n_stages && rc == SL_OK; s++) {
		const sl_stage_def *d = &o->stages[s];
		sl__stage *sd = &p->stages[s];
		sd->name = strdup(d->name);
		sd->ops = d->ops;
		sd->queue = d->queue;
		sd->conc = d->concurrency;
		sd->overflow = d->overflow;
		sd->timeout_ms = d->timeout_ms;
		sd->aging_ms = d->aging_ms;
		sd->displace = d->displace ? 1 : 0;
		p->stage_names[s] = sd->name;
		sd->n_pred = npred[s];
		memcpy(sd->pred, pred[s], npred[s]);
		for (unsigned k = 0; k < npred[s]; k++) {
			sl__stage *ps_ = &p->stages[pred[s][k]];
			ps_->succ[ps_->n_succ++] = (uint8_t)s;
		}
		if (d->ops == &sl_stage_inference)
			p->inference = s;
		if (d->timeout_ms)
			p->any_timeout = 1;
		if (d->ops == &sl_stage_inference && o->worker && o->worker->ops->max_concurrency) {
			unsigned m = o->worker->ops->max_concurrency(o->worker->state);
			if (m) {
				unsigned per = m / p->n_shards ? m / p->n_shards : 1;
				if (sd->conc > per)
					sd->conc = per;
			}
		}
		if (!sd->name) {
			rc = SL_ENOMEM;
			break;
		}
		if (d->ops->init) {
			rc = d->ops->init(d->cfg, &sd->state);
			if (rc != SL_OK) {
				fail(err, errlen, "stage %s: %s", d->name, sl_strerror(rc));
				break;
			}
		}
		sd->inited = 1;
	}
	p->tok_next[p->n_stages] = (uint8_t)p->n_stages;
	for (int s = (int)p->n_stages - 1; s >= 0; s--)
		p->tok_next[s] = p->stages[s].ops && p->stages[s].ops->on_token
		                         ? (uint8_t)s
		                         : p->tok_next[s + 1];
	if (rc == SL_OK) {
		p->ps = calloc(p->n_shards, sizeof *p->ps);
		if (!p->ps)
			rc = SL_ENOMEM;
	}
	for (unsigned i = 0; rc == SL_OK && i < p->n_shards; i++) {
		p->ps[i] = ps_new(p, i);
		if (!p->ps[i]) {
			rc = SL_ENOMEM;
			break;
		}
		attach_ctx a = {.ps = p->ps[i], .rc = SL_OK};
		int prc = sl__shard_call(rt, i, attach_fn, &a);
		rc = prc != SL_OK ? prc : a.rc;
		if (rc != SL_OK)
			fail(err, errlen, "starting shard %u: %s", i, sl_strerror(rc));
	}
	if (rc != SL_OK) {
		pipeline_free(p);
		return rc;
	}
	*out = p;
	return SL_OK;
}

const char *sl_pipeline_name(const sl_pipeline *p)
{
	return p ? p->name : NULL;
}

const char *sl_pipeline_stage_name(const sl_pipeline *p, unsigned i)
{
	return p && i < p->n_stages ? p->stage_names[i] : NULL;
}

/* ------------------------------------------------------------ submit */

static char *bump(char **at, const char *src, size_t len)
{
	char *d = *at;
	memcpy(d, src, len);
	d[len] = '\0';
	*at += len + 1;
	return d;
}

int sl_pipeline_submit(sl_pipeline *p, const sl_request *req, unsigned flags,
                       sl_request_handle *h)
{
	if (!p || !req || !req->on_done || !req->session || !req->session[0] ||
	    !req->input)
		return SL_EINVAL;
	size_t in_len = req->input_len == (size_t)-1 ? strlen(req->input) : req->input_len;
	if (in_len == 0 || req->priority < 0 || req->priority >= SL_PRIORITY_LEVELS ||
	    (req->n_meta && !req->meta))
		return SL_EINVAL;
	if (in_len > p->max_input)
		return SL_ETOOBIG;
	if (atomic_load_explicit(&p->closing, memory_order_acquire))
		return SL_ECLOSED;

	size_t sess_len = strlen(req->session);
	size_t rid_len = req->request_id ? strlen(req->request_id) : 20;
	if (sess_len > 4096 || rid_len > 4096)
		return SL_EINVAL;
	size_t n_stop = 0;
	size_t extra = 0;
	for (size_t i = 0; i < req->n_meta; i++) {
		if (!req->meta[i].key || !req->meta[i].value)
			return SL_EINVAL;
		extra += strlen(req->meta[i].key) + strlen(req->meta[i].value) + 2;
	}
	if (req->params.stop)
		for (; req->params.stop[n_stop]; n_stop++)
			extra += strlen(req->params.stop[n_stop]) + 1;
	size_t slots = sizeof(struct sl_job) * p->n_stages;
	size_t times = sizeof(sl_stage_times) * p->n_stages;
	size_t base = (sizeof(sl__req) + slots + times + 15) & ~(size_t)15;
	size_t ptrs = req->n_meta * sizeof(sl_kv) + (n_stop ? (n_stop + 1) * sizeof(char *) : 0);
	size_t need = base + ptrs + sess_len + rid_len + in_len + extra + 3;
	unsigned shard = sl_shard_for_session(req->session, sess_len, p->n_shards);
	sl__ps *ps = p->ps[shard];
	sl__req *job = NULL;
	sl_dynbuf keep = {0};
	if (need <= p->blk) {
		void *v;
		if (sl_queue_pop_mc(ps->spare, &v) == SL_OK) {
			job = v;
			keep = job->out;
		} else {
			job = malloc(p->blk);
		}
	} else {
		job = malloc(need);
	}
	if (!job)
		return SL_ENOMEM;
	memset(job, 0, sizeof *job + slots + times);
	job->pooled = need <= p->blk;
	job->times = (sl_stage_times *)((char *)job + sizeof *job + slots);
	for (unsigned s = 0; s < p->n_stages; s++) {
		job->slots[s].req = job;
		job->slots[s].stage = (uint8_t)s;
		job->slots[s].waiting = p->stages[s].n_pred;
	}

	job->ps = ps;
	job->id = ((uint64_t)(shard + 1) << 48) |
	          atomic_fetch_add_explicit(&ps->next_id, 1, memory_order_relaxed);
	char *at = (char *)job + base + ptrs;
	job->meta = req->n_meta ? (sl_kv *)((char *)job + base) : NULL;
	job->n_meta = req->n_meta;
	for (size_t i = 0; i < req->n_meta; i++) {
		job->meta[i].key = bump(&at, req->meta[i].key, strlen(req->meta[i].key));
		job->meta[i].value = bump(&at, req->meta[i].value, strlen(req->meta[i].value));
	}
	job->params = req->params;
	if (n_stop) {
		const char **sv = (const char **)((char *)job + base + req->n_meta * sizeof(sl_kv));
		for (size_t i = 0; i < n_stop; i++)
			sv[i] = bump(&at, req->params.stop[i], strlen(req->params.stop[i]));
		sv[n_stop] = NULL;
		job->params.stop = sv;
	} else {
		job->params.stop = NULL;
	}
	job->session = bump(&at, req->session, sess_len);
	job->session_len = sess_len;
	if (req->request_id) {
		job->request_id = bump(&at, req->request_id, rid_len);
	} else {
		/* "req-" + 16 hex digits of the id, without printf (hot path) */
		static const char hex[] = "0123456789abcdef";
		char tmp[20];
		memcpy(tmp, "req-", 4);
		for (int k = 0; k < 16; k++)
			tmp[4 + k] = hex[(job->id >> (60 - 4 * k)) & 15];
		job->request_id = bump(&at, tmp, sizeof tmp);
	}
	job->input = bump(&at, req->input, in_len);
	job->input_len = in_len;
	job->prompt = job->input;
	job->prompt_len = in_len;
	job->priority = (uint8_t)req->priority;
	job->on_token = req->on_token;
	job->on_done = req->on_done;
	job->on_attr = req->on_attr;
	job->user = req->user;
	sl_dynbuf_init(&job->context, p->max_input);
	sl_dynbuf_init(&job->out, p->max_output);
	if (keep.p) {
		job->out.p = keep.p;
		job->out.cap = keep.cap;
		keep.p[0] = '\0';
	}
	job->t_submit = sl__now();
	if (req->deadline_ms)
		job->deadline = job->t_submit + req->deadline_ms * 1000000u;

	uint64_t id = job->id;
	sl_queue *in = job->priority >= SL__HI_PRIORITY ? ps->inbox_hi : ps->inbox;
	int rc = sl_queue_push(in, job);
	if (rc == SL_EAGAIN) {
		if (p->stages[0].overflow == SL_OVERFLOW_SHED) {
			atomic_fetch_add_explicit(&ps->door_shed, 1, memory_order_relaxed);
			rc = SL_ESHED;
		} else if ((flags & SL_SUBMIT_BLOCK) && sl__shard_current() == NULL) {
			sl__shard_wake(ps->sh);
			rc = sl_queue_push_wait(in, job);
		}
	}
	if (rc != SL_OK) {
		req_free(job);
		return rc;
	}
	/* The shard owns the request from the push on (it may already have
	 * ended and freed it): only the id saved before is ours to report. */
	if (h)
		h->id = id;
	sl__shard_wake(ps->sh);
	return SL_OK;
}

int sl_pipeline_on_ready(sl_pipeline *p, const char *session, sl_post *node)
{
	if (!p || !session || !node || !node->fn)
		return SL_EINVAL;
	if (atomic_load_explicit(&p->closing, memory_order_acquire))
		return SL_ECLOSED;
	sl__ps *ps = p->ps[sl_shard_for_session(session, (size_t)-1, p->n_shards)];
	sl_list_push(&ps->ready, (sl_lnode *)node);
	sl__shard_wake(ps->sh);
	return SL_OK;
}

/* ------------------------------------------------------------ cancel */

typedef struct cancel_msg {
	sl_post post;
	sl__ps *ps;
	uint64_t id;
} cancel_msg;

static void cancel_fn(void *arg)
{
	cancel_msg *m = arg;
	sl__ps *ps = m->ps;
	sl__ps_enter(ps);
	ps_now(ps);
	sl__req *req = map_get(ps, m->id);
	if (req) {
		end_req(ps, req, SL_OUTCOME_CANCELLED, SL_ECANCELED, req->last_stage,
		        "cancelled by caller");
	} else {
		/* Not admitted yet (still in the inbox) or already ended: remember
		 * it for admission; a bounded ring, oldest forgotten first. */
		if (ps->n_early < SL__EARLY_CANCELS) {
			ps->early[ps->n_early++] = m->id;
		} else {
			ps->early[ps->early_pos] = m->id;
			ps->early_pos = (ps->early_pos + 1) % SL__EARLY_CANCELS;
		}
	}
	sl__ps_exit(ps);
	free(m);
}

int sl_pipeline_cancel(sl_pipeline *p, sl_request_handle h)
{
	if (!p)
		return SL_EINVAL;
	unsigned shard = (unsigned)(h.id >> 48);
	uint64_t n = h.id & ((1ull << 48) - 1);
	if (shard < 1 || shard > p->n_shards)
		return SL_ENOTFOUND;
	sl__ps *ps = p->ps[shard - 1];
	if (n == 0 || n >= atomic_load_explicit(&ps->next_id, memory_order_relaxed))
		return SL_ENOTFOUND;
	cancel_msg *m = malloc(sizeof *m);
	if (!m)
		return SL_ENOMEM;
	m->post.fn = cancel_fn;
	m->post.arg = m;
	m->ps = ps;
	m->id = h.id;
	int rc = sl_runtime_post(p->rt, shard - 1, &m->post);
	if (rc != SL_OK)
		free(m);
	return rc;
}

/* ------------------------------------------------------------ drain */

static void cancel_all_fn(void *arg)
{
	sl__ps *ps = arg;
	sl__ps_enter(ps);
	ps_now(ps);
	/* admit whatever is still in the inbox, so it ends as cancelled too */
	void *it;
	while (sl_queue_pop(ps->inbox_hi, &it) == SL_OK || sl_queue_pop(ps->inbox, &it) == SL_OK) {
		sl__req *req = it;
		admit_count(ps, req);
		sl__ctr_add(&ps->st[0].ctr.cancelled, 1);
		finish(ps, req, SL_OUTCOME_CANCELLED, SL_ECANCELED, 0, "drain timeout");
	}
	/* queued requests in bulk (removing them one by one is O(n^2)) */
	for (unsigned s = 0; s < ps->p->n_stages; s++) {
		sl__stage_rt *st = &ps->st[s];
		while (sl_pq_pop(&st->queue, &it, ps->now) == SL_OK) {
			struct sl_job *job = it;
			sl__req *req = job->req;
			sl__ctr_add(&st->ctr.queued, -1);
			job->state = S_DONE;
			end_req(ps, req, SL_OUTCOME_CANCELLED, SL_ECANCELED, (int)s, "drain timeout");
		}
	}
	for (size_t i = 0; i <= ps->map_mask; i++) {
		while (ps->map_k[i]) {
			sl__req *req = ps->map_v[i];
			end_req(ps, req, SL_OUTCOME_CANCELLED, SL_ECANCELED, req->last_stage,
			        "drain timeout");
		}
	}
	sl__ps_exit(ps);
}

static int all_idle(sl_pipeline *p)
{
	for (unsigned i = 0; i < p->n_shards; i++) {
		sl__ps *ps = p->ps[i];
		if (atomic_load_explicit(&ps->alive, memory_order_relaxed) ||
		    sl_queue_size(ps->inbox) || sl_queue_size(ps->inbox_hi))
			return 0;
	}
	return 1;
}

static void wake_all(sl_pipeline *p)
{
	for (unsigned i = 0; i < p->n_shards; i++)
		sl__shard_wake(p->ps[i]->sh);
}

int sl_pipeline_drain(sl_pipeline *p, uint64_t timeout_ms)
{
	if (!p)
		return SL_EINVAL;
	if (sl__shard_current())
		return SL_ESTATE;
	if (p->drained)
		return p->drain_rc;
	atomic_store(&p->closing, 1);
	for (unsigned i = 0; i < p->n_shards; i++) {
		sl_queue_close(p->ps[i]->inbox);
		sl_queue_close(p->ps[i]->inbox_hi);
	}
	wake_all(p); /* fires readiness callbacks; they will see SL_ECLOSED */
	uint64_t end = sl__now() + timeout_ms * 1000000u;
	int rc = SL_OK;
	struct timespec nap = {0, 1000000}; /* the control thread polls every 1 ms */
	while (!all_idle(p)) {
		if (sl__now() >= end) {
			rc = SL_ETIMEDOUT;
			SL_LOG(SL_LOG_WARN, "event=drain_timeout pipeline=%s timeout_ms=%" PRIu64,
			       p->name, timeout_ms);
			for (unsigned i = 0; i < p->n_shards; i++)
				sl__shard_call(p->rt, i, cancel_all_fn, p->ps[i]);
			/* zombies (stages that cannot cancel) still hold memory; wait
			 * for them a little longer, then give up. */
			uint64_t zend = sl__now() + 5000000000ull;
			while (!all_idle(p) && sl__now() < zend)
				nanosleep(&nap, NULL);
			break;
		}
		wake_all(p);
		nanosleep(&nap, NULL);
	}
	p->drained = 1;
	p->drain_rc = rc;
	SL_LOG(SL_LOG_DEBUG, "event=drained pipeline=%s status=%s", p->name, sl_status_name(rc));
	return rc;
}

void sl_pipeline_destroy(sl_pipeline *p)
{
	if (!p)
		return;
	if (!p->drained)
		sl_pipeline_drain(p, SL_DEFAULT_DRAIN_MS);
	void (*fn)(void *) = p->on_destroy;
	void *arg = p->on_destroy_arg;
	pipeline_free(p);
	if (fn)
		fn(arg);
}
