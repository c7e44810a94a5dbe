/*
 * ratelimit.h
 *		Rate-limit windows of keys in shared memory: small entries that live
 *		as long as a key's window runs (an hour by default), in their own
 *		table so that they are not evicted with the pending counts.
 */
#ifndef APIKEY_RATELIMIT_H
#define APIKEY_RATELIMIT_H

#include <stdio.h>

#include "datatype/timestamp.h"

#include "area.h"
#include "ratewindow.h"

/* What the rate limiter says about one request (or the current window). */
typedef struct ApikeyRateState
{
	bool		limited;		/* the key has a limit at all */
	bool		admitted;
	bool		untracked;		/* no room to track the window: refused */
	int32		remaining;
	TimestampTz reset_at;
} ApikeyRateState;

/* A window as kept in shared memory and in the shutdown dump. */
typedef struct ApikeyWindowEntry
{
	ApikeyKeyRef key;			/* hash key: must be first */
	ApikeyWindow w;
} ApikeyWindowEntry;

extern void apikey_ratelimit_register(void);
extern Size apikey_ratelimit_shmem_size(void);
extern void apikey_ratelimit_shmem_init(void);

extern void apikey_ratelimit_admit(Oid dbid, const char *key_id, int32 limit,
								   int64 window_usec, TimestampTz now,
								   bool consume, ApikeyRateState *rate);
extern int64 apikey_ratelimit_housekeep(TimestampTz now);
extern void apikey_ratelimit_forget_database(Oid dbid);

extern int	apikey_ratelimit_snapshot(Oid dbid, TimestampTz now,
									  ApikeyWindowEntry **out);

/* Monitoring. */
typedef struct ApikeyRatelimitTotals
{
	int64		entries;
	int64		refused_untracked;	/* requests refused because untracked */
} ApikeyRatelimitTotals;
extern void apikey_ratelimit_totals(ApikeyRatelimitTotals *totals);
extern Size apikey_ratelimit_entry_bytes(void);

/* The shutdown dump (dump.c). */
extern int64 apikey_ratelimit_dump(FILE *file, TimestampTz now);
extern bool apikey_ratelimit_restore(const ApikeyWindowEntry *saved,
									 TimestampTz now);

#endif							/* APIKEY_RATELIMIT_H */
