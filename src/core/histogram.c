/* histogram.c - log-linear histograms; see histogram.h. */
#include <string.h>
#include "core/histogram.h"

uint64_t sl__hist_upper(unsigned i)
{
	if (i < SL_HIST_SUB)
		return i;
	unsigned e = i / SL_HIST_SUB + SL_HIST_SUB_BITS - 1;
	uint64_t sub = i % SL_HIST_SUB;
	uint64_t lo = (SL_HIST_SUB + sub) << (e - SL_HIST_SUB_BITS);
	uint64_t width = (uint64_t)1 << (e - SL_HIST_SUB_BITS);
	return lo + (width - 1);
}

void sl__hist_merge(sl_histogram *dst, const sl_histogram *src)
{
	uint64_t c = 0;
	for (unsigned i = 0; i < SL_HIST_BUCKETS; i++) {
		uint64_t n = atomic_load_explicit(&src->b[i], memory_order_relaxed);
		if (n) {
			atomic_store_explicit(&dst->b[i],
			                      atomic_load_explicit(&dst->b[i], memory_order_relaxed) + n,
			                      memory_order_relaxed);
			c += n;
		}
	}
	/* count is the sum of the buckets read, so quantiles stay consistent. */
	atomic_store_explicit(&dst->count,
	                      atomic_load_explicit(&dst->count, memory_order_relaxed) + c,
	                      memory_order_relaxed);
	atomic_store_explicit(&dst->sum,
	                      atomic_load_explicit(&dst->sum, memory_order_relaxed) +
	                          atomic_load_explicit(&src->sum, memory_order_relaxed),
	                      memory_order_relaxed);
}

void sl__hist_reset(sl_histogram *h)
{
	memset((void *)h, 0, sizeof *h);
}

uint64_t sl_histogram_count(const sl_histogram *h)
{
	return h ? atomic_load_explicit(&h->count, memory_order_relaxed) : 0;
}

uint64_t sl_histogram_sum(const sl_histogram *h)
{
	return h ? atomic_load_explicit(&h->sum, memory_order_relaxed) : 0;
}

uint64_t sl_histogram_quantile(const sl_histogram *h, double q)
{
	if (!h)
		return 0;
	uint64_t total = 0;
	for (unsigned i = 0; i < SL_HIST_BUCKETS; i++)
		total += atomic_load_explicit(&h->b[i], memory_order_relaxed);
	if (total == 0)
		return 0;
	if (q < 0)
		q = 0;
	if (q > 1)
		q = 1;
	uint64_t rank = (uint64_t)(q * (double)total + 0.5);
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < SL_HIST_BUCKETS; i++) {
		seen += atomic_load_explicit(&h->b[i], memory_order_relaxed);
		if (seen >= rank)
			return sl__hist_upper(i);
	}
	return sl__hist_upper(SL_HIST_BUCKETS - 1);
}

void sl_histogram_foreach(const sl_histogram *h,
                          void (*fn)(void *arg, uint64_t le, uint64_t n),
                          void *arg)
{
	if (!h || !fn)
		return;
	for (unsigned i = 0; i < SL_HIST_BUCKETS; i++) {
		uint64_t n = atomic_load_explicit(&h->b[i], memory_order_relaxed);
		if (n)
			fn(arg, sl__hist_upper(i), n);
	}
}
