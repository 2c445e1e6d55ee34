/* pool.c - bounded thread pool; see pool.h. */
#include <pthread.h>
#include <stdlib.h>
#include "shard/pool.h"

struct sl_pool {
	pthread_mutex_t mx;
	pthread_cond_t cv;
	sl_pool_job *head, *tail;
	unsigned len, cap, nthreads;
	int closing;
	pthread_t *th;
};

static void *pool_main(void *arg)
{
	sl_pool *p = arg;
	pthread_mutex_lock(&p->mx);
	for (;;) {
		while (!p->head && !p->closing)
			pthread_cond_wait(&p->cv, &p->mx);
		if (!p->head)
			break; /* closing and empty */
		sl_pool_job *j = p->head;
		p->head = j->next;
		if (!p->head)
			p->tail = NULL;
		p->len--;
		pthread_mutex_unlock(&p->mx);
		j->run(j);
		pthread_mutex_lock(&p->mx);
	}
	pthread_mutex_unlock(&p->mx);
	return NULL;
}

int sl_pool_create(unsigned threads, unsigned capacity, sl_pool **out)
{
	if (!out || threads == 0 || capacity == 0 || threads > 1024)
		return SL_EINVAL;
	sl_pool *p = calloc(1, sizeof *p);
	if (!p)
		return SL_ENOMEM;
	p->th = calloc(threads, sizeof *p->th);
	if (!p->th) {
		free(p);
		return SL_ENOMEM;
	}
	pthread_mutex_init(&p->mx, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->cap = capacity;
	for (unsigned i = 0; i < threads; i++) {
		if (pthread_create(&p->th[i], NULL, pool_main, p) != 0) {
			p->nthreads = i;
			sl_pool_destroy(p);
			return SL_ESYS;
		}
		p->nthreads = i + 1;
	}
	*out = p;
	return SL_OK;
}

int sl_pool_submit(sl_pool *p, sl_pool_job *job)
{
	pthread_mutex_lock(&p->mx);
	if (p->closing) {
		pthread_mutex_unlock(&p->mx);
		return SL_ECLOSED;
	}
	if (p->len >= p->cap) {
		pthread_mutex_unlock(&p->mx);
		return SL_EAGAIN;
	}
	job->next = NULL;
	if (p->tail)
		p->tail->next = job;
	else
		p->head = job;
	p->tail = job;
	p->len++;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mx);
	return SL_OK;
}

void sl_pool_destroy(sl_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mx);
	p->closing = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mx);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->th[i], NULL);
	pthread_mutex_destroy(&p->mx);
	pthread_cond_destroy(&p->cv);
	free(p->th);
	free(p);
}

unsigned sl_pool_threads(const sl_pool *p)
{
	return p->nthreads;
}
