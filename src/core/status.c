/* status.c - status codes and outcome names. */
#include "sluice/sluice.h"

static const struct {
	int code;
	const char *name;
	const char *text;
} statuses[] = {
	{SL_OK, "SL_OK", "success"},
	{SL_EINVAL, "SL_EINVAL", "invalid argument"},
	{SL_ENOMEM, "SL_ENOMEM", "out of memory"},
	{SL_EAGAIN, "SL_EAGAIN", "queue full: try again when ready"},
	{SL_ESHED, "SL_ESHED", "shed: queue full under the shed policy"},
	{SL_ECLOSED, "SL_ECLOSED", "closed: the pipeline is draining or stopped"},
	{SL_ETOOBIG, "SL_ETOOBIG", "too big: over the configured maximum size"},
	{SL_ECANCELED, "SL_ECANCELED", "cancelled"},
	{SL_ETIMEDOUT, "SL_ETIMEDOUT", "timed out: deadline or stage timeout expired"},
	{SL_EWORKER, "SL_EWORKER", "the model worker failed"},
	{SL_ESYS, "SL_ESYS", "system call failed"},
	{SL_ENOTFOUND, "SL_ENOTFOUND", "not found"},
	{SL_ESTATE, "SL_ESTATE", "not valid in the current state"},
	{SL_EUPSTREAM, "SL_EUPSTREAM", "the upstream model server returned an error"},
	{SL_EEMPTY, "SL_EEMPTY", "empty"},
	{SL_EPENDING, "SL_EPENDING", "pending: will complete later"},
	{SL_EFILTER, "SL_EFILTER", "ended by a content filter"},
	{SL_EUNAVAIL, "SL_EUNAVAIL", "no backend available: every circuit is open"},
};

const char *sl_strerror(int status)
{
	for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
		if (statuses[i].code == status)
			return statuses[i].text;
	return "unknown status";
}

const char *sl_status_name(int status)
{
	for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
		if (statuses[i].code == status)
			return statuses[i].name;
	return "SL_E?";
}

const char *sl_outcome_name(sl_outcome o)
{
	static const char *names[SL_OUTCOME__COUNT] = {
		"completed", "failed", "shed", "cancelled", "expired"};
	return (unsigned)o < SL_OUTCOME__COUNT ? names[o] : "unknown";
}
