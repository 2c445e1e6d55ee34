/* log.c - logfmt logging to stderr. */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include "core/log.h"

int sl__log_level_v = SL_LOG_INFO;

void sl_log_set_level(sl_log_level lvl)
{
	__atomic_store_n(&sl__log_level_v, (int)lvl, __ATOMIC_RELAXED);
}

sl_log_level sl_log_get_level(void)
{
	return (sl_log_level)__atomic_load_n(&sl__log_level_v, __ATOMIC_RELAXED);
}

int sl_log_level_parse(const char *s, sl_log_level *out)
{
	static const char *names[] = {"error", "warn", "info", "debug", "trace"};
	if (!s || !out)
		return SL_EINVAL;
	for (int i = 0; i < 5; i++)
		if (strcasecmp(s, names[i]) == 0) {
			*out = (sl_log_level)i;
			return SL_OK;
		}
	return SL_EINVAL;
}

void sl__log(sl_log_level lvl, const char *fmt, ...)
{
	static const char *names[] = {"error", "warn", "info", "debug", "trace"};
	char line[SL_LOG_LINE_MAX];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof line,
	                 "ts=%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ level=%s ",
	                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	                 tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000,
	                 names[(unsigned)lvl < 5 ? lvl : 2]);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len;
	if (m < 0)
		m = 0;
	if ((size_t)n + (size_t)m >= sizeof line - 1) {
		len = sizeof line - 1;
		memcpy(line + len - 4, "...", 3);
		len -= 1;
	} else {
		len = (size_t)n + (size_t)m;
	}
	line[len++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
}

const char *sl__log_quote(char *buf, size_t cap, const char *s)
{
	if (cap == 0)
		return buf;
	if (!s)
		s = "";
	int need = (*s == '\0');
	for (const char *c = s; *c && !need; c++)
		if (*c == ' ' || *c == '"' || *c == '=' || *c == '\\' ||
		    (unsigned char)*c < 0x20)
			need = 1;
	size_t o = 0;
	if (!need) {
		size_t l = strlen(s);
		if (l >= cap)
			l = cap - 1;
		memcpy(buf, s, l);
		buf[l] = '\0';
		return buf;
	}
	buf[o++] = '"';
	for (const char *c = s; *c && o + 4 < cap; c++) {
		unsigned char ch = (unsigned char)*c;
		if (ch == '"' || ch == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)ch;
		} else if (ch == '\n') {
			buf[o++] = '\\';
			buf[o++] = 'n';
		} else if (ch < 0x20) {
			buf[o++] = ' ';
		} else {
			buf[o++] = (char)ch;
		}
	}
	if (o < cap - 1)
		buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}
