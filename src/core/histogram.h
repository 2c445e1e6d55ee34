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

unsigned sl__hist_index(uint64_t v);
/* Upper bound (inclusive) of bucket i. */
uint64_t sl__hist_upper(unsigned i);
/* Single-writer record. */
void sl__hist_record(sl_histogram *h, uint64_t v);
/* dst += src (dst owned by the caller, not shared). */
void sl__hist_merge(sl_histogram *dst, const sl_histogram *src);
void sl__hist_reset(sl_histogram *h);

#endif
