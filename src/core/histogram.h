/* histogram.h - log-linear latency histograms (internal layout).
 *
 * Values are nanoseconds.  Values below 16 have their own bucket; above,
 * each power of two is split into 16 linear sub-buckets, so a bucket's
 * width is at most 1/16 (6.25 %) of its lower bound.  976 buckets cover the
 * whole uint64 range.
 *
 * Threading: one writer (the owning shard thread) records with relaxed
 * atomic load/store pairs, no read-modify-write; any thread may read or
 * merge at any time without a lock (a merge may miss records that are in
 * progress, never tears a counter). */
#ifndef SL_CORE_HISTOGRAM_H
#define SL_CORE_HISTOGRAM_H
#include <stdatomic.h>
#include <stdint.h>
#include "sluice/sluice.h"

#define SL_HIST_SUB_BITS 4
#define SL_HIST_SUB (1u << SL_HIST_SUB_BITS)
#define SL_HIST_BUCKETS ((64 - SL_HIST_SUB_BITS + 1) * SL_HIST_SUB)

struct sl_histogram {
	_Atomic uint64_t count;
	_Atomic uint64_t sum;
	_Atomic uint64_t b[SL_HIST_BUCKETS];
};

static inline unsigned sl__hist_index(uint64_t v)
{
	if (v < SL_HIST_SUB)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v); /* e >= SUB_BITS */
	unsigned sub = (unsigned)(v >> (e - SL_HIST_SUB_BITS)) & (SL_HIST_SUB - 1);
	return (e - SL_HIST_SUB_BITS + 1) * SL_HIST_SUB + sub;
}
/* Upper bound (inclusive) of bucket i. */
uint64_t sl__hist_upper(unsigned i);
/* Single-writer record (inline: several per request on the hot path). */
static inline void sl__hist_record(sl_histogram *h, uint64_t v)
{
	unsigned i = sl__hist_index(v);
	atomic_store_explicit(&h->b[i],
	                      atomic_load_explicit(&h->b[i], memory_order_relaxed) + 1,
	                      memory_order_relaxed);
	atomic_store_explicit(&h->sum,
	                      atomic_load_explicit(&h->sum, memory_order_relaxed) + v,
	                      memory_order_relaxed);
	atomic_store_explicit(&h->count,
	                      atomic_load_explicit(&h->count, memory_order_relaxed) + 1,
	                      memory_order_relaxed);
}
/* dst += src (dst owned by the caller, not shared). */
void sl__hist_merge(sl_histogram *dst, const sl_histogram *src);
void sl__hist_reset(sl_histogram *h);

#endif
