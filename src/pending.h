/*
 * pending.h
 *		Usage counts of keys not yet written to the tables: requests,
 *		denials and apikey_record's response statistics per key and hour,
 *		appended by each session to a journal of its own in shared memory
 *		and kept until a flush has logged them and every snapshot sees that.
 */
#ifndef APIKEY_PENDING_H
#define APIKEY_PENDING_H

#include <stdio.h>

#include "datatype/timestamp.h"
#include "utils/snapshot.h"

#include "apikey.h"
#include "area.h"

/* Counts of one key in one hour. */
typedef struct ApikeyUsageSlot
{
	TimestampTz bucket;			/* start of the hour; 0 = empty slot */
	TimestampTz last_used;		/* latest VALID, 0 = none */
	int64		requests;		/* VALID verifications */
	int64		denied;			/* failed verifications of a known key */
	int64		responses;		/* apikey_record calls */
	double		response_ms;	/* sum of their response times */
	int64		client_errors;	/* apikey_record with status 400-499 */
	int64		server_errors;	/* apikey_record with status >= 500 */
} ApikeyUsageSlot;

#define APIKEY_PENDING_SLOTS 2

/* What a flush copied out of one key's entry. */
typedef struct ApikeyTakenKey
{
	ApikeyKeyRef key;
	ApikeyUsageSlot slot[APIKEY_PENDING_SLOTS];
	int32		denied_by[APIKEY_NUM_CODES];
} ApikeyTakenKey;

/* One key's pending counts, for apikey_stats and the exact usage views. */
typedef struct ApikeyPendingRow
{
	char		key_id[APIKEY_KEY_ID_MAXLEN + 1];
	ApikeyUsageSlot slot[APIKEY_PENDING_SLOTS];
	int32		denied_by[APIKEY_NUM_CODES];
} ApikeyPendingRow;

/* Counts of a database that found no room for an entry (no key). */
typedef struct ApikeyOverflowCounts
{
	int64		requests;
	int64		denied;
	int64		responses;
	double		response_ms;
} ApikeyOverflowCounts;

extern void apikey_pending_register(void);
extern Size apikey_pending_shmem_size(void);
extern void apikey_pending_shmem_init(void);

/* The request path. */
extern void apikey_pending_count_verify(Oid dbid, const char *key_id,
										ApikeyCode code, TimestampTz now);
extern void apikey_pending_count_response(Oid dbid, const char *key_id,
										  int32 status_code, double response_ms,
										  TimestampTz now);

/*
 * Where a flush goes on taking counts: each chunk goes on from the journal
 * where the last one stopped.
 */
typedef struct ApikeyTakeCursor
{
	int			journal;		/* the journal the next chunk starts in */
	bool		held_elsewhere; /* it passed a journal another flush holds */
	bool		more;			/* counts were left: take another chunk */
} ApikeyTakeCursor;

#define APIKEY_TAKE_CURSOR_INIT {0, false, true}

/* Records a flush took from one journal: positions [start, end). */
typedef struct ApikeyClaim
{
	int			journal;
	uint64		start;
	uint64		end;
	TransactionId xid;
} ApikeyClaim;

/* Journals one chunk takes from, at most. */
#define APIKEY_TAKE_MAX_CLAIMS	64

/* Flushing: copy counts out; they count as logged once the copy commits. */
extern void apikey_pending_take(Oid dbid, ApikeyTakenKey *buf, int max, int *n,
								ApikeyClaim *claims, int *nclaims,
								ApikeyTakeCursor *cursor);
extern void apikey_pending_settle(const ApikeyClaim *claims, int nclaims, bool logged);
extern int	apikey_pending_databases_held(Oid *dbids, int max);
extern void apikey_pending_forget_database(Oid dbid);

/* Server-wide totals of verification results. */
extern void apikey_totals_add(ApikeyCode code);
extern void apikey_totals_read(int64 by_code[APIKEY_NUM_CODES]);

/* Reading. */
extern int	apikey_pending_snapshot(Oid dbid, Snapshot snap, ApikeyPendingRow **rows);
extern void apikey_pending_overflow(Oid dbid, ApikeyOverflowCounts *counts);
extern int64 apikey_pending_entries(void);
extern Size apikey_pending_entry_bytes(void);
extern Size apikey_pending_bytes(void);

/* The shutdown dump (dump.c). */
extern int64 apikey_pending_dump(FILE *file);
extern bool apikey_pending_restore(const ApikeyTakenKey *saved);
extern void apikey_pending_restore_done(void);

#endif							/* APIKEY_PENDING_H */
