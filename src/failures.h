/*
 * failures.h
 *		Failed verifications per client address and minute, and the alerts
 *		raised when an address passes apikey.alert_failures in a minute.
 *		Their own table and bound (apikey.max_tracked_clients), so that a
 *		flood of failures from many addresses never touches what valid
 *		verifications use.
 */
#ifndef APIKEY_FAILURES_H
#define APIKEY_FAILURES_H

#include <sys/socket.h>			/* AF_INET, which utils/inet.h needs */

#include "datatype/timestamp.h"
#include "utils/inet.h"

/* A client address as the failure table keys it. */
typedef struct ApikeyClientAddr
{
	Oid			dbid;
	uint8		family;			/* PGSQL_AF_INET or PGSQL_AF_INET6 */
	uint8		bits;
	uint8		pad[2];
	uint8		addr[16];
} ApikeyClientAddr;

/* An alert taken out for recording. */
typedef struct ApikeyAlert
{
	ApikeyClientAddr client;
	int32		failures;
	TimestampTz minute;
} ApikeyAlert;

extern void apikey_failures_register(void);
extern Size apikey_failures_shmem_size(void);
extern void apikey_failures_shmem_init(void);

extern bool apikey_failures_count(Oid dbid, const inet *addr, TimestampTz now);
extern int64 apikey_failures_housekeep(TimestampTz now, bool *pressed);
extern void apikey_failures_forget_database(Oid dbid);

extern void apikey_alerts_take(Oid dbid, ApikeyAlert *buf, int max, int *n, bool *more);
extern void apikey_alerts_settle(const ApikeyAlert *alerts, int n, bool recorded);
extern inet *apikey_client_inet(const ApikeyClientAddr *client);

typedef struct ApikeyFailureTotals
{
	int64		entries;
	int64		untracked;		/* failures not counted: table full */
} ApikeyFailureTotals;
extern void apikey_failures_totals(ApikeyFailureTotals *totals);
extern Size apikey_failures_entry_bytes(void);

#endif							/* APIKEY_FAILURES_H */
