/*
 * flush.c
 *		Moves what shared memory holds into the tables, in two steps, and
 *		records alerts.
 *
 *		Logging (every apikey.flush_interval): pending counts are copied out
 *		of the sessions' journals in shared memory in chunks of at most
 *		APIKEY_LOG_CHUNK keys, each chunk going on where the last one
 *		stopped, and each is appended to apikey_usage_log as one row of
 *		arrays.  That makes them durable at a cost that does not depend on
 *		how many keys were used, and never needs more local memory than a
 *		chunk.
 *		Folding (every apikey.fold_interval, and in apikey_flush()): the log
 *		is added to apikey_keys (usage_count, last_used_at) and the hourly
 *		apikey_usage buckets, one write per key and bucket however many
 *		flushes saw it.  Folding is what costs row writes, so it runs rarely
 *		(the product's freshness decision: the tables may lag by up to five
 *		minutes; the views that must be exact read the log and memory).
 *		A key whose row someone holds locked is folded later: its counts go
 *		back into the log, so one locked row never stops a database's
 *		persistence.
 *
 *		Copying does not remove: the journal records the counts came from
 *		are claimed for the logging transaction, and count as logged once it
 *		has committed (pending.c).  If it aborts (or the subtransaction that
 *		copied them), the claims are taken back.  A hold is registered with
 *		the transaction callbacks *before* anything is claimed, and counts
 *		its claims as it makes them, so no path can leave a claim behind.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "apikey.h"
#include "compat.h"
#include "dump.h"
#include "failures.h"
#include "flush.h"
#include "launcher_state.h"
#include "pending.h"
#include "safesql.h"

/* Keys per log row: bounds the local memory of a flush (~4 MB). */
#define APIKEY_LOG_CHUNK		16384

/* Log entries past which a fold is planned without nested loops. */
#define APIKEY_FOLD_NESTLOOP_MAX	10000
/*
 * The lock that lets one fold of a schema run at a time: an advisory lock
 * tag (database, 0, schema oid, this class).  PostgreSQL's own advisory
 * locks use classes 1 and 2, so no pg_advisory_lock() call can take it.
 */
#define APIKEY_LOCKTAG_CLASS_FOLD	97

/* Alerts recorded per call. */
#define APIKEY_ALERT_CHUNK		1000

/* What this backend's open transaction holds, in TopMemoryContext. */
typedef struct ApikeyHeld
{
	struct ApikeyHeld *next;
	SubTransactionId subid;
	bool		alerts;			/* alerts[] rather than keys[] */
	bool		settled;		/* alerts settled as recorded at pre-commit */
	int			n;
	ApikeyTakenKey *keys;
	ApikeyAlert *alerts_buf;
	int			nclaims;		/* the journal records keys[] came from */
	ApikeyClaim claims[APIKEY_TAKE_MAX_CLAIMS];
} ApikeyHeld;

static ApikeyHeld *apikey_held = NULL;

/*
 * Just before the commit, settle the held alerts as recorded (see
 * apikey_xact_callback), keeping the holds: an abort after this still puts
 * them back.
 */
static void
apikey_held_presettle_alerts(void)
{
	for (ApikeyHeld *h = apikey_held; h != NULL; h = h->next)
	{
		if (h->alerts && !h->settled)
		{
			apikey_alerts_settle(h->alerts_buf, h->n, true);
			h->settled = true;
		}
	}
}

static void
apikey_held_release(bool durable, bool all, SubTransactionId subid)
{
	ApikeyHeld **link = &apikey_held;

	while (*link != NULL)
	{
		ApikeyHeld *h = *link;

		if (!all && h->subid != subid)
		{
			link = &h->next;
			continue;
		}
		if (h->alerts)
		{
			if (!(durable && h->settled))
				apikey_alerts_settle(h->alerts_buf, h->n, durable);
		}
		else
			apikey_pending_settle(h->claims, h->nclaims, durable);
		*link = h->next;
		if (h->keys)
			pfree(h->keys);
		if (h->alerts_buf)
			pfree(h->alerts_buf);
		pfree(h);
	}
}

static void
apikey_xact_callback(XactEvent event, void *arg)
{
	if (apikey_held == NULL)
		return;
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:

			/*
			 * The held counts would have to survive in the prepared
			 * transaction; like LISTEN, refuse.
			 */
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot PREPARE a transaction that has flushed apikey counters"),
					 errhint("Call apikey_flush() in a transaction of its own.")));
			break;
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:

			/*
			 * Alerts are settled now, while an ERROR is still an ordinary
			 * abort: settling looks each client up in a shared hash table,
			 * which can need to map a segment another process created, and
			 * an ERROR after the commit would be a PANIC.  Should the commit
			 * still fail (a serialization failure is checked after this),
			 * the abort puts them back.
			 */
			apikey_held_presettle_alerts();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			/* the log rows are durable and visible: subtract */
			apikey_held_release(true, true, InvalidSubTransactionId);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			apikey_held_release(false, true, InvalidSubTransactionId);
			break;
		default:
			break;
	}
}

static void
apikey_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	if (apikey_held == NULL)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
		apikey_held_release(false, false, mySubid);
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		for (ApikeyHeld *h = apikey_held; h != NULL; h = h->next)
			if (h->subid == mySubid)
				h->subid = parentSubid;
	}
}

void
apikey_flush_xact_init(void)
{
	RegisterXactCallback(apikey_xact_callback, NULL);
	RegisterSubXactCallback(apikey_subxact_callback, NULL);
}

/* Register an empty hold before anything is marked. */
static ApikeyHeld *
apikey_hold(bool alerts, int cap)
{
	ApikeyHeld *h = MemoryContextAllocZero(TopMemoryContext, sizeof(ApikeyHeld));

	h->subid = GetCurrentSubTransactionId();
	h->alerts = alerts;
	if (alerts)
		h->alerts_buf = MemoryContextAllocHuge(TopMemoryContext, cap * sizeof(ApikeyAlert));
	else
		h->keys = MemoryContextAllocHuge(TopMemoryContext, cap * sizeof(ApikeyTakenKey));
	h->next = apikey_held;
	apikey_held = h;
	return h;
}

static void
apikey_require_primary(void)
{
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot flush apikey counters during recovery"),
				 errdetail("On a standby the counters stay in this server's shared memory."),
				 errhint("Flush on the primary; see apikey_stats for this server's counts.")));
}

/* ---- logging ------------------------------------------------------------- */

/* Parallel arrays of one log row. */
typedef struct ApikeyLogArrays
{
	int			n;
	Datum	   *key_ids;
	Datum	   *buckets;
	Datum	   *requests;
	Datum	   *denied;
	Datum	   *responses;
	Datum	   *response_ms;
	Datum	   *client_errors;
	Datum	   *server_errors;
	Datum	   *last_used;
	bool	   *last_used_null;
} ApikeyLogArrays;

static void
apikey_log_arrays_fill(ApikeyLogArrays *a, const ApikeyTakenKey *keys, int nkeys)
{
	int			cap = nkeys * APIKEY_PENDING_SLOTS;

	a->n = 0;
	a->key_ids = palloc(sizeof(Datum) * cap);
	a->buckets = palloc(sizeof(Datum) * cap);
	a->requests = palloc(sizeof(Datum) * cap);
	a->denied = palloc(sizeof(Datum) * cap);
	a->responses = palloc(sizeof(Datum) * cap);
	a->response_ms = palloc(sizeof(Datum) * cap);
	a->client_errors = palloc(sizeof(Datum) * cap);
	a->server_errors = palloc(sizeof(Datum) * cap);
	a->last_used = palloc(sizeof(Datum) * cap);
	a->last_used_null = palloc(sizeof(bool) * cap);
	for (int k = 0; k < nkeys; k++)
	{
		Datum		key_id = CStringGetTextDatum(keys[k].key.key_id);

		for (int s = 0; s < APIKEY_PENDING_SLOTS; s++)
		{
			const ApikeyUsageSlot *slot = &keys[k].slot[s];
			int			i = a->n;

			if (slot->bucket == 0)
				continue;
			a->key_ids[i] = key_id;
			a->buckets[i] = TimestampTzGetDatum(slot->bucket);
			a->requests[i] = Int64GetDatum(slot->requests);
			a->denied[i] = Int64GetDatum(slot->denied);
			a->responses[i] = Int64GetDatum(slot->responses);
			a->response_ms[i] = Float8GetDatum(slot->response_ms);
			a->client_errors[i] = Int64GetDatum(slot->client_errors);
			a->server_errors[i] = Int64GetDatum(slot->server_errors);
			a->last_used[i] = TimestampTzGetDatum(slot->last_used);
			a->last_used_null[i] = slot->last_used == 0;
			a->n++;
		}
	}
}

static Datum
apikey_array(Datum *d, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_array(d, n, elemtype, typlen, typbyval, typalign));
}

/* Append one row to the usage log of schema nspid. */
static void
apikey_log_insert(Oid nspid, const ApikeyLogArrays *a)
{
	Datum		args[10];
	Oid			types[10] = {INT4OID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, INT8ARRAYOID,
		INT8ARRAYOID, INT8ARRAYOID, FLOAT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID,
	TIMESTAMPTZARRAYOID};
	int			dims[1] = {a->n};
	int			lbs[1] = {1};
	int			nestlevel;

	args[0] = Int32GetDatum(a->n);
	args[1] = apikey_array(a->key_ids, a->n, TEXTOID);
	args[2] = apikey_array(a->buckets, a->n, TIMESTAMPTZOID);
	args[3] = apikey_array(a->requests, a->n, INT8OID);
	args[4] = apikey_array(a->denied, a->n, INT8OID);
	args[5] = apikey_array(a->responses, a->n, INT8OID);
	args[6] = apikey_array(a->response_ms, a->n, FLOAT8OID);
	args[7] = apikey_array(a->client_errors, a->n, INT8OID);
	args[8] = apikey_array(a->server_errors, a->n, INT8OID);
	args[9] = PointerGetDatum(construct_md_array(a->last_used, a->last_used_null, 1, dims, lbs,
												 TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	SPI_connect();
	nestlevel = apikey_safesql_begin();
	if (SPI_execute_with_args(psprintf("INSERT INTO %s"
									   " (entries, key_ids, buckets, requests, denied, responses,"
									   "  response_ms, client_errors, server_errors, last_used)"
									   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
									   apikey_qualified(nspid, "apikey_usage_log")),
							  10, types, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "apikey flush: could not append to the usage log");
	apikey_safesql_end(nestlevel);
	SPI_finish();
}

/*
 * Copy up to APIKEY_LOG_CHUNK keys' pending counts of this database and
 * append them to the usage log of schema nspid; returns the number of keys.
 * cursor->more: call again with the same cursor (in this transaction, or a
 * new one) for the rest.  The counts leave shared memory when the caller's
 * transaction commits.
 */
int64
apikey_log_chunk(Oid nspid, ApikeyTakeCursor *cursor)
{
	ApikeyHeld *h;
	ApikeyLogArrays a;

	apikey_require_primary();
	apikey_dump_forget_counts();
	h = apikey_hold(false, APIKEY_LOG_CHUNK);
	apikey_pending_take(MyDatabaseId, h->keys, APIKEY_LOG_CHUNK, &h->n,
						h->claims, &h->nclaims, cursor);
	if (h->n == 0)
		return 0;
	apikey_log_arrays_fill(&a, h->keys, h->n);
	if (a.n > 0)
		apikey_log_insert(nspid, &a);
	return h->n;
}

/*
 * Log all of this database's pending counts in the current transaction;
 * returns the number of keys.  Takes the database off the launcher's list
 * first, so that anything counted after it looked is listed again.
 */
int64
apikey_log_pending(Oid nspid)
{
	int64		total = 0;
	ApikeyTakeCursor cursor = APIKEY_TAKE_CURSOR_INIT;

	apikey_launcher_mark_clean(MyDatabaseId);
	while (cursor.more)
	{
		int64		n = apikey_log_chunk(nspid, &cursor);

		total += n;
		CHECK_FOR_INTERRUPTS();
		/* what another flush holds is logged by it, or listed again */
		if (n == 0)
			break;
	}
	if (cursor.more)
		apikey_launcher_note_pending(MyDatabaseId);
	return total;
}

/* ---- folding ------------------------------------------------------------- */

/*
 * Take the fold lock of schema nspid until the end of the transaction,
 * waiting for it or not.  A heavyweight lock, so the deadlock detector sees
 * it and pg_locks shows it (locktype advisory, objid the schema, objsubid
 * APIKEY_LOCKTAG_CLASS_FOLD).
 */
static bool
apikey_fold_lock(Oid nspid, bool wait)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 0, nspid, APIKEY_LOCKTAG_CLASS_FOLD);
	return LockAcquire(&tag, ExclusiveLock, false, !wait) != LOCKACQUIRE_NOT_AVAIL;
}

/*
 * Fold the usage log of schema nspid into apikey_keys (usage_count,
 * last_used_at) and the hourly apikey_usage buckets, in one statement: each
 * key's row and each (key, hour) bucket is written once however many log
 * rows it appears in.  Counts of keys that no longer exist are dropped.
 * Keys whose row is locked by someone else are skipped and their counts
 * written back to the log for the next fold.
 *
 * At a million keys used between folds the fold is the workers' largest
 * cost, and on a small machine every second of it is taken from the
 * verifying sessions, whatever its priority (bench/fold_beside.sh, and the
 * manual's Performance section), so it does nothing it does not need: key rows are
 * locked in no particular order (SKIP LOCKED never waits, so no order can
 * deadlock, and folds take turns under the fold lock); the locking pass
 * carries each key's sums to the UPDATE, which so joins once instead of
 * twice; the buckets are upserted in byte order ("C": a sort without
 * locale comparisons, and the index's order wherever the database's
 * collation sorts key ids as bytes), which costs less than the random
 * index probes it saves; and the skipped keys' counts are gathered only
 * when a key was skipped (a one-time test of two counts), not by joins
 * that find nothing in almost every fold.  Together these took a fold of
 * 660,000 keys from 22-24 s to 16 s.
 *
 * The rows are found by a join, never by "key_id = ANY (array of the
 * keys)": a row updated and committed by another transaction since this
 * statement's snapshot (another fold, typically) is rechecked against the
 * conditions that found it (EvalPlanQual), and such a recheck of an array
 * condition is a linear search of the array.  With a fold of 780,000 keys
 * running just before an apikey_flush() of the same keys, that made the
 * flush quadratic: 379 s of CPU in the bench of 2026-12-01.
 *
 * The planner cannot know how many entries the log's arrays hold (it
 * guesses ten per array), so it plans every fold as a small one, with
 * nested loops; one whose outer side is not small (the keys skipped because
 * a sweep held their rows, say) rescans a CTE of every key per row: a
 * worker's fold next to the bench's sweep ran for more than 8 minutes.  The
 * log does know (its entries column): past APIKEY_FOLD_NESTLOOP_MAX entries
 * the fold is planned without nested loops (hash joins, a sequential scan of
 * apikey_keys), which bounds every join by the sizes of its inputs.
 *
 * One fold of a schema runs at a time (apikey_fold_lock); the statement runs
 * with the latest snapshot, taken once the lock is held, so it sees what the
 * fold before it wrote.  In READ COMMITTED that is what any statement gets;
 * it is said explicitly (as foreign-key checks do) for an apikey_flush()
 * called in a REPEATABLE READ or SERIALIZABLE transaction, whose own
 * snapshot may predate the fold before it: with that one, the key rows and
 * buckets it had updated failed the fold with a serialization error.
 * Concurrent folds could not count a log row twice even without
 * it (the DELETE makes the second wait, then skip the row), but a fold
 * running while another fold's transaction was still open skipped every
 * key row that one had locked and put those counts back into the log: an
 * apikey_flush() next to another left its own counts out of the tables.
 *
 * With wait false (the workers) a fold that cannot have the lock at once
 * is not run and -1 is returned; otherwise the number of log rows folded.
 */
int64
apikey_fold_usage_log(Oid nspid, bool wait)
{
	const char *log = apikey_qualified(nspid, "apikey_usage_log");
	const char *keys = apikey_qualified(nspid, "apikey_keys");
	const char *usage = apikey_qualified(nspid, "apikey_usage");
	char	   *sql;
	int64		folded;
	int			nestlevel;
	bool		isnull;
	bool		big;
	int			rc;
	SPIPlanPtr	plan;

	apikey_require_primary();
	if (!apikey_fold_lock(nspid, wait))
		return -1;
	big = apikey_usage_log_entries(nspid) > APIKEY_FOLD_NESTLOOP_MAX;
	sql = psprintf("WITH j AS ("
				   " DELETE FROM %s RETURNING *"
				   "), d AS ("
				   " SELECT x.key_id, x.bucket,"
				   "        pg_catalog.sum(x.requests)::pg_catalog.int8 AS requests,"
				   "        pg_catalog.sum(x.denied)::pg_catalog.int8 AS denied,"
				   "        pg_catalog.sum(x.responses)::pg_catalog.int8 AS responses,"
				   "        pg_catalog.sum(x.response_ms) AS response_ms,"
				   "        pg_catalog.sum(x.client_errors)::pg_catalog.int8 AS client_errors,"
				   "        pg_catalog.sum(x.server_errors)::pg_catalog.int8 AS server_errors,"
				   "        pg_catalog.max(x.last_used) AS last_used"
				   "   FROM j, ROWS FROM (pg_catalog.unnest(j.key_ids), pg_catalog.unnest(j.buckets),"
				   "        pg_catalog.unnest(j.requests), pg_catalog.unnest(j.denied),"
				   "        pg_catalog.unnest(j.responses), pg_catalog.unnest(j.response_ms),"
				   "        pg_catalog.unnest(j.client_errors), pg_catalog.unnest(j.server_errors),"
				   "        pg_catalog.unnest(j.last_used))"
				   "     AS x(key_id, bucket, requests, denied, responses, response_ms,"
				   "          client_errors, server_errors, last_used)"
				   "  GROUP BY x.key_id, x.bucket"
				   "), s AS ("
				   " SELECT d.key_id, pg_catalog.sum(d.requests)::pg_catalog.int8 AS requests,"
				   "        pg_catalog.max(d.last_used) AS last_used"
				   "   FROM d GROUP BY d.key_id"
				   "), lk AS ("	/* rows we may write now; locked ones wait */
				   " SELECT k.key_id, s.requests, s.last_used"
				   "   FROM s JOIN %s k ON k.key_id OPERATOR(pg_catalog.=) s.key_id"
				   "  WHERE s.requests OPERATOR(pg_catalog.>) 0"
				   "  FOR UPDATE OF k SKIP LOCKED"
				   "), k AS ("
				   " UPDATE %s k"
				   "    SET usage_count = k.usage_count OPERATOR(pg_catalog.+) lk.requests,"
				   "        last_used_at = GREATEST(k.last_used_at, lk.last_used)"
				   "   FROM lk WHERE k.key_id OPERATOR(pg_catalog.=) lk.key_id"
				   "  RETURNING k.key_id"
				   "), live AS ("
				   " SELECT k.key_id FROM k"
				   " UNION ALL"
				   " SELECT s.key_id FROM s WHERE s.requests OPERATOR(pg_catalog.=) 0"
				   "    AND EXISTS (SELECT FROM %s x WHERE x.key_id OPERATOR(pg_catalog.=) s.key_id)"
				   "), u AS ("
				   " INSERT INTO %s AS u"
				   "  (key_id, bucket, requests, denied, responses, response_ms,"
				   "   client_errors, server_errors)"
				   " SELECT d.key_id, d.bucket, d.requests, d.denied, d.responses, d.response_ms,"
				   "        d.client_errors, d.server_errors"
				   "   FROM d JOIN live ON live.key_id OPERATOR(pg_catalog.=) d.key_id"
				   "  ORDER BY d.key_id COLLATE pg_catalog.\"C\", d.bucket"
				   " ON CONFLICT (key_id, bucket) DO UPDATE SET"
				   "  requests = u.requests OPERATOR(pg_catalog.+) excluded.requests,"
				   "  denied = u.denied OPERATOR(pg_catalog.+) excluded.denied,"
				   "  responses = u.responses OPERATOR(pg_catalog.+) excluded.responses,"
				   "  response_ms = u.response_ms OPERATOR(pg_catalog.+) excluded.response_ms,"
				   "  client_errors = u.client_errors OPERATOR(pg_catalog.+) excluded.client_errors,"
				   "  server_errors = u.server_errors OPERATOR(pg_catalog.+) excluded.server_errors"
				   "), later AS ("	/* locked rows: back into the log */
				   " SELECT d.* FROM d JOIN s ON s.key_id OPERATOR(pg_catalog.=) d.key_id"
				   "  WHERE s.requests OPERATOR(pg_catalog.>) 0"
				   "    AND NOT EXISTS (SELECT FROM lk WHERE lk.key_id OPERATOR(pg_catalog.=) d.key_id)"
				   "    AND EXISTS (SELECT FROM %s x WHERE x.key_id OPERATOR(pg_catalog.=) d.key_id)"
				   "    AND (SELECT pg_catalog.count(*) FROM lk) OPERATOR(pg_catalog.<)"
				   "        (SELECT pg_catalog.count(*) FROM s WHERE s.requests OPERATOR(pg_catalog.>) 0)"
				   "), relog AS ("
				   " INSERT INTO %s (entries, key_ids, buckets, requests, denied, responses,"
				   "                 response_ms, client_errors, server_errors, last_used)"
				   " SELECT pg_catalog.count(*), pg_catalog.array_agg(l.key_id), pg_catalog.array_agg(l.bucket),"
				   "        pg_catalog.array_agg(l.requests), pg_catalog.array_agg(l.denied),"
				   "        pg_catalog.array_agg(l.responses), pg_catalog.array_agg(l.response_ms),"
				   "        pg_catalog.array_agg(l.client_errors), pg_catalog.array_agg(l.server_errors),"
				   "        pg_catalog.array_agg(l.last_used)"
				   "   FROM later l HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0"
				   ")"
				   " SELECT pg_catalog.count(*) FROM j",
				   log, keys, keys, keys, usage, keys, log);

	SPI_connect();
	nestlevel = apikey_safesql_begin();
	apikey_safesql_bulk_settings();
	if (big)
		(void) set_config_option("enable_nestloop", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	plan = SPI_prepare(sql, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "apikey fold: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	rc = SPI_execute_snapshot(plan, NULL, NULL, GetLatestSnapshot(), InvalidSnapshot,
							  false, true, 0);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "apikey fold failed");
	folded = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	apikey_safesql_end(nestlevel);
	SPI_finish();
	return folded;
}

/*
 * Entries logged and not yet folded, to bound the log when folds are rare.
 */
int64
apikey_usage_log_entries(Oid nspid)
{
	int64		entries = 0;
	int			nestlevel;

	SPI_connect();
	nestlevel = apikey_safesql_begin();
	if (SPI_execute(psprintf("SELECT pg_catalog.sum(l.entries)::pg_catalog.int8 FROM %s l",
							 apikey_qualified(nspid, "apikey_usage_log")),
					true, 1) == SPI_OK_SELECT && SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		entries = isnull ? 0 : DatumGetInt64(d);
	}
	apikey_safesql_end(nestlevel);
	SPI_finish();
	return entries;
}

/* ---- alerts -------------------------------------------------------------- */

static char *
apikey_alert_json(const ApikeyAlert *a)
{
	char	   *addr = DatumGetCString(DirectFunctionCall1(inet_out,
														   InetPGetDatum(apikey_client_inet(&a->client))));

	return psprintf("{\"event\": \"failed_verifications\", \"client_ip\": \"%s\", "
					"\"failures\": %d, \"minute\": \"%s\", \"threshold\": %d}",
					addr, a->failures, timestamptz_to_str(a->minute),
					apikey_alert_failures);
}

/*
 * Record up to APIKEY_ALERT_CHUNK of this database's pending alerts:
 * from 1.1 and 2.1 on as rows of apikey_alerts (readable only by roles
 * granted it), with a NOTIFY on apikey_alerts that carries only the
 * alert's id and kind; in 1.0 and 2.0, which have no such table, as the
 * NOTIFY with the whole payload that those versions documented.  Delivered
 * when the caller commits.  Returns how many.
 */
int64
apikey_record_alerts(Oid nspid, bool *more)
{
	ApikeyHeld *h;
	bool		table = apikey_relation_exists(nspid, "apikey_alerts");
	const char *alerts_rel = table ? apikey_qualified(nspid, "apikey_alerts") : NULL;
	int			nestlevel;

	apikey_require_primary();
	h = apikey_hold(true, APIKEY_ALERT_CHUNK);
	apikey_alerts_take(MyDatabaseId, h->alerts_buf, APIKEY_ALERT_CHUNK, &h->n, more);
	if (h->n == 0)
		return 0;

	SPI_connect();
	nestlevel = apikey_safesql_begin();
	for (int i = 0; i < h->n; i++)
	{
		Datum		arg = CStringGetTextDatum(apikey_alert_json(&h->alerts_buf[i]));
		Oid			argtype = TEXTOID;
		char	   *sql;

		if (table)
			sql = psprintf("WITH a AS (INSERT INTO %s (kind, details)"
						   "           VALUES ('failed_verifications', $1::pg_catalog.jsonb)"
						   "           RETURNING alert_id, kind)"
						   " SELECT pg_catalog.pg_notify('apikey_alerts',"
						   "        pg_catalog.json_build_object('alert_id', a.alert_id, 'kind', a.kind)::pg_catalog.text)"
						   "   FROM a", alerts_rel);
		else
			sql = "SELECT pg_catalog.pg_notify('apikey_alerts', $1)";
		if (SPI_execute_with_args(sql, 1, &argtype, &arg, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "apikey could not record an alert");
	}
	apikey_safesql_end(nestlevel);
	SPI_finish();
	return h->n;
}
