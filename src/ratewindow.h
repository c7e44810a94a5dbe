/*
 * ratewindow.h
 *		The arithmetic of a fixed rate-limit window, as a pure function of
 *		the window's state and the clock: no shared memory, no locks, so
 *		that it is unit-tested outside the server (test/unit).
 */
#ifndef APIKEY_RATEWINDOW_H
#define APIKEY_RATEWINDOW_H

#include <stdbool.h>
#include <stdint.h>

/*
 * One key's window.  Windows are aligned to multiples of their length since
 * the PostgreSQL epoch (2000-01-01 UTC), so every key with the same window
 * length starts and ends its windows at the same instants.
 */
typedef struct ApikeyWindow
{
	int64_t		start;			/* microseconds since the epoch; 0 = none */
	int64_t		usec;			/* window length */
	int32_t		count;			/* requests admitted in this window */
} ApikeyWindow;

/* What the window says about one request. */
typedef struct ApikeyWindowAnswer
{
	bool		admitted;
	int32_t		remaining;		/* after this request */
	int64_t		reset_at;		/* end of the window */
} ApikeyWindowAnswer;

extern int64_t apikey_window_start(int64_t now, int64_t usec);
extern ApikeyWindowAnswer apikey_window_admit(ApikeyWindow *w, int32_t limit,
											  int64_t usec, int64_t now,
											  bool consume);
extern bool apikey_window_expired(const ApikeyWindow *w, int64_t now);

#endif							/* APIKEY_RATEWINDOW_H */
