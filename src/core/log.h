/* log.h - logfmt lines on stderr, level-controlled (any thread).
 *
 * Each line is formatted into a stack buffer (max SL_LOG_LINE_MAX bytes,
 * longer lines are cut and end in "...") and written with one write(2), so
 * lines from different threads never interleave. */
#ifndef SL_CORE_LOG_H
#define SL_CORE_LOG_H
#include <stdarg.h>
#include "sluice/sluice.h"

#define SL_LOG_LINE_MAX 2048

extern int sl__log_level_v; /* read with sl__log_on() */

static inline int sl__log_on(sl_log_level lvl)
{
	return (int)lvl <= __atomic_load_n(&sl__log_level_v, __ATOMIC_RELAXED);
}

/* Writes "ts=<iso8601> level=<lvl> " + the formatted rest + "\n".
 * fmt is logfmt: key=value pairs; use sl__log_quote() for free text. */
void sl__log(sl_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Writes s as a logfmt value (quoted and escaped when needed) into buf
 * (cap bytes, NUL-terminated, cut when too long); returns buf. */
const char *sl__log_quote(char *buf, size_t cap, const char *s);

#define SL_LOG(lvl, ...)                                                   \
	do {                                                                   \
		if (sl__log_on(lvl))                                               \
			sl__log(lvl, __VA_ARGS__);                                     \
	} while (0)

#endif
