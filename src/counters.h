/*
 * counters.h
 *		Shared-memory usage counters, per-address failure counters and the
 *		rate limiter.  Verification counts here instead of writing rows;
 *		the worker (or apikey_flush) moves pending counts into the tables.
 */
#ifndef APIKEY_COUNTERS_H
#define APIKEY_COUNTERS_H

#include "apikey.h"
#include "datatype/timestamp.h"
#include "utils/inet.h"

/* Counts of one key in one hour, not yet written to apikey_usage. */
typedef struct ApikeyUsageSlot
{
	TimestampTz bucket;			/* start of the hour; 0 = empty slot */
	int64		requests;		/* VALID verifications */
	int64		denied;			/* failed verifications of a known key */
	int64		responses;		/* apikey_record calls */
	double		response_ms;	/* sum of their response times */
	int64		client_errors;	/* apikey_record with status 400-499 */
	int64		server_errors;	/* apikey_record with status >= 500 */
	TimestampTz last_used;		/* latest VALID, 0 = none */
} ApikeyUsageSlot;

/* One slot taken out of shared memory by a flush. */
typedef struct ApikeyTakenSlot
{
	Oid			dbid;
	char		key_id[APIKEY_KEY_ID_MAXLEN + 1];
	ApikeyUsageSlot slot;
} ApikeyTakenSlot;

/* What the rate limiter says about one request (or the current window). */
typedef struct ApikeyRateState
{
	bool		limited;		/* key has a limit at all */
	bool		admitted;
	int32		remaining;
	TimestampTz reset_at;
} ApikeyRateState;

/* One row of apikey_stats. */
typedef struct ApikeyStatsRow
{
	char		key_id[APIKEY_KEY_ID_MAXLEN + 1];
	int64		requests;
	int64		denied;
	int64		denied_by[APIKEY_NUM_CODES];
	int64		responses;
	double		response_ms;
	TimestampTz last_used;
	TimestampTz window_start;
	int32		window_count;
} ApikeyStatsRow;

/* A client address that passed apikey.alert_failures in one minute. */
typedef struct ApikeyAlert
{
	inet		addr;
	int32		failures;
	TimestampTz minute;
} ApikeyAlert;

extern void apikey_counters_install_hooks(void);
extern bool apikey_counters_ready(void);
extern void apikey_require_preload(void);

extern void apikey_count_key_result(const char *key_id, ApikeyCode code,
									int32 rate_limit, int64 window_usec,
									TimestampTz now, ApikeyRateState *rate);
extern void apikey_rate_peek(const char *key_id, int32 rate_limit,
							 int64 window_usec, TimestampTz now,
							 ApikeyRateState *rate);
extern void apikey_count_client_failure(const inet *addr, TimestampTz now);
extern void apikey_count_response(const char *key_id, int32 status_code,
								  double response_ms, TimestampTz now);

extern int	apikey_counters_take(Oid dbid, ApikeyTakenSlot **out);
extern void apikey_counters_give_back(const ApikeyTakenSlot *slots, int n);
extern int	apikey_counters_take_alerts(Oid dbid, ApikeyAlert **out);
extern int	apikey_counters_stats(Oid dbid, ApikeyStatsRow **out,
								  ApikeyStatsRow *overflow);
extern int	apikey_counters_pending_databases(Oid *dbids, int max, bool *all);
extern bool apikey_counters_early_flush_requested(void);
extern void apikey_counters_forget_database(Oid dbid);

extern void apikey_counters_set_launcher(int pgprocno);

#endif							/* APIKEY_COUNTERS_H */
