/*
 * ratewindow.c
 *		Fixed-window rate limiting: at most `limit` requests are admitted per
 *		window of `usec` microseconds.  Pure functions (see ratewindow.h);
 *		the caller holds whatever lock protects the window.
 *
 *		Why a fixed window: it is exact (a count compared with the limit),
 *		costs one comparison, and gives the caller an honest reset time for
 *		Retry-After.  Its known weakness, a burst across a window boundary,
 *		is the convention API users expect from hourly quotas.
 */
#include "ratewindow.h"

/* Start of the window containing now; negative times round down too. */
int64_t
apikey_window_start(int64_t now, int64_t usec)
{
	int64_t		r;

	if (usec <= 0)
		return now;
	r = now % usec;
	if (r < 0)
		r += usec;
	return now - r;
}

/*
 * Judge one request at time now against a limit per window of usec.  The
 * window restarts when now has left it or when the key's window length
 * changed.  A request that is not admitted uses nothing; consume = false
 * only looks (rate-limit status).  limit must be positive.
 */
ApikeyWindowAnswer
apikey_window_admit(ApikeyWindow *w, int32_t limit, int64_t usec, int64_t now,
					bool consume)
{
	ApikeyWindowAnswer a;
	int64_t		start = apikey_window_start(now, usec);

	if (w->start != start || w->usec != usec)
	{
		w->start = start;
		w->usec = usec;
		w->count = 0;
	}
	a.reset_at = start + usec;
	if (w->count >= limit)
	{
		a.admitted = false;
		a.remaining = 0;
		return a;
	}
	if (consume)
		w->count++;
	a.admitted = true;
	a.remaining = limit - w->count;
	return a;
}

/* Has the window ended (or never started)?  Then it holds nothing. */
bool
apikey_window_expired(const ApikeyWindow *w, int64_t now)
{
	return w->start == 0 || w->count == 0 || now >= w->start + w->usec;
}
