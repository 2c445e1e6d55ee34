/* clock.c - the monotonic clock every timestamp in sluice uses. */
#include <time.h>
#include "sluice/sluice.h"

uint64_t sl_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
