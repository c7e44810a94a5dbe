/*
 * flush.c
 *		Moves pending counters from shared memory into the tables, in two
 *		steps, and turns failure alerts into NOTIFYs on channel apikey_alerts.
 *
 *		Logging (every apikey.flush_interval): the pending counts are
 *		appended to apikey_usage_log as one row of arrays.  That makes them
 *		durable at a cost that does not depend on how many keys were used.
 *		Folding (every apikey.sweep_interval, and in apikey_flush()): the log
 *		is added to apikey_keys (usage_count, last_used_at) and the hourly
 *		apikey_usage buckets, one write per key and bucket however many
 *		flushes saw it.  With many distinct keys per flush interval, writing
 *		rows at every flush would cost as much as the verifications did.
 *
 *		The counts are taken out of shared memory before they are logged.
 *		Transaction callbacks give them back if the writing transaction (or
 *		the subtransaction that took them) aborts, and forget them once it
 *		commits: a count is written exactly once or stays pending.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "apikey.h"
#include "counters.h"

PG_FUNCTION_INFO_V1(apikey_flush);

/* Slots taken by this backend's open transaction, in TopMemoryContext. */
typedef struct ApikeyTakenBatch
{
	struct ApikeyTakenBatch *next;
	SubTransactionId subid;
	int			n;
	ApikeyTakenSlot slots[FLEXIBLE_ARRAY_MEMBER];
} ApikeyTakenBatch;

static ApikeyTakenBatch *apikey_taken = NULL;

static void
apikey_taken_release(bool give_back, SubTransactionId only_subid)
{
	ApikeyTakenBatch **link = &apikey_taken;

	while (*link != NULL)
	{
		ApikeyTakenBatch *b = *link;

		if (only_subid != InvalidSubTransactionId && b->subid != only_subid)
		{
			link = &b->next;
			continue;
		}
		if (give_back)
			apikey_counters_give_back(b->slots, b->n);
		*link = b->next;
		pfree(b);
	}
}

static void
apikey_xact_callback(XactEvent event, void *arg)
{
	if (apikey_taken == NULL)
		return;
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:

			/*
			 * The counts would have to survive in the prepared transaction
			 * and come back on ROLLBACK PREPARED; like LISTEN, refuse.
			 */
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot PREPARE a transaction that has flushed apikey counters"),
					 errhint("Call apikey_flush() in a transaction of its own.")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			apikey_taken_release(false, InvalidSubTransactionId);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			apikey_taken_release(true, InvalidSubTransactionId);
			break;
		default:
			break;
	}
}

static void
apikey_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	ApikeyTakenBatch *b;

	if (apikey_taken == NULL)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
		apikey_taken_release(true, mySubid);
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		for (b = apikey_taken; b != NULL; b = b->next)
			if (b->subid == mySubid)
				b->subid = parentSubid;
	}
}

void
apikey_flush_xact_init(void)
{
	RegisterXactCallback(apikey_xact_callback, NULL);
	RegisterSubXactCallback(apikey_subxact_callback, NULL);
}

static ArrayType *
apikey_int8_array(const ApikeyTakenSlot *s, int n, size_t offset)
{
	Datum	   *d = palloc(sizeof(Datum) * n);

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(*(const int64 *) ((const char *) &s[i].slot + offset));
	return construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

/*
 * Log this database's pending counters: take them out of shared memory and
 * append them, as one row of parallel arrays, to apikey_usage_log in schema
 * nspid.  One row per flush whatever the number of keys, so that making
 * counts durable costs a few microseconds per key.  Returns the number of
 * (key, hour) buckets taken.
 */
int64
apikey_log_pending(Oid nspid)
{
	ApikeyTakenSlot *slots;
	ApikeyTakenBatch *batch;
	int			n;
	Datum		args[10];
	Oid			argtypes[10] = {INT4OID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, INT8ARRAYOID,
		INT8ARRAYOID, INT8ARRAYOID, FLOAT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID,
	TIMESTAMPTZARRAYOID};
	char		nulls[10] = "          ";
	Datum	   *key_ids;
	Datum	   *buckets;
	Datum	   *ms;
	Datum	   *last_used;
	bool	   *last_used_null;
	int			dims[1];
	int			lbs[1] = {1};
	int			rc;

	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot flush apikey counters during recovery"),
				 errdetail("On a standby the counters stay in this server's shared memory."),
				 errhint("Flush on the primary; see apikey_stats for this server's counts.")));

	n = apikey_counters_take(MyDatabaseId, &slots);
	if (n == 0)
		return 0;

	/* From here on, an abort gives the counts back. */
	batch = MemoryContextAlloc(TopMemoryContext,
							   offsetof(ApikeyTakenBatch, slots) + n * sizeof(ApikeyTakenSlot));
	batch->subid = GetCurrentSubTransactionId();
	batch->n = n;
	memcpy(batch->slots, slots, n * sizeof(ApikeyTakenSlot));
	batch->next = apikey_taken;
	apikey_taken = batch;

	key_ids = palloc(sizeof(Datum) * n);
	buckets = palloc(sizeof(Datum) * n);
	ms = palloc(sizeof(Datum) * n);
	last_used = palloc(sizeof(Datum) * n);
	last_used_null = palloc(sizeof(bool) * n);
	for (int i = 0; i < n; i++)
	{
		key_ids[i] = CStringGetTextDatum(slots[i].key_id);
		buckets[i] = TimestampTzGetDatum(slots[i].slot.bucket);
		ms[i] = Float8GetDatum(slots[i].slot.response_ms);
		last_used[i] = TimestampTzGetDatum(slots[i].slot.last_used);
		last_used_null[i] = slots[i].slot.last_used == 0;
	}
	dims[0] = n;
	args[0] = Int32GetDatum(n);
	args[1] = PointerGetDatum(construct_array(key_ids, n, TEXTOID, -1, false, TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_array(buckets, n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[3] = PointerGetDatum(apikey_int8_array(slots, n, offsetof(ApikeyUsageSlot, requests)));
	args[4] = PointerGetDatum(apikey_int8_array(slots, n, offsetof(ApikeyUsageSlot, denied)));
	args[5] = PointerGetDatum(apikey_int8_array(slots, n, offsetof(ApikeyUsageSlot, responses)));
	args[6] = PointerGetDatum(construct_array(ms, n, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[7] = PointerGetDatum(apikey_int8_array(slots, n, offsetof(ApikeyUsageSlot, client_errors)));
	args[8] = PointerGetDatum(apikey_int8_array(slots, n, offsetof(ApikeyUsageSlot, server_errors)));
	args[9] = PointerGetDatum(construct_md_array(last_used, last_used_null, 1, dims, lbs,
												 TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));

	SPI_connect();
	rc = SPI_execute_with_args(psprintf("INSERT INTO %s.apikey_usage_log"
										" (entries, key_ids, buckets, requests, denied, responses,"
										"  response_ms, client_errors, server_errors, last_used)"
										" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
										quote_identifier(get_namespace_name(nspid))),
							   10, argtypes, args, nulls, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "apikey flush failed: %s", SPI_result_code_string(rc));
	SPI_finish();
	return n;
}

/*
 * Fold apikey_usage_log into apikey_keys (usage_count, last_used_at) and
 * the hourly apikey_usage buckets, in one statement: each key's row and each
 * (key, hour) bucket is written once however many flushes it appears in.
 * Keys are written in key order, so that consecutive probes share index
 * pages.  Counts of a key that no longer exists are dropped.  Concurrent
 * folds cannot count a log row twice: the DELETE makes the second one wait,
 * then skip it.  Returns the number of log rows folded.
 */
int64
apikey_fold_usage_log(Oid nspid)
{
	const char *nsp = quote_identifier(get_namespace_name(nspid));
	char	   *sql;
	int			rc;
	int64		folded;

	/*
	 * The keys the UPDATE returns are known to exist; only keys with nothing
	 * but denials need a lookup (no scan of the whole table per fold).  The
	 * UPDATE sets only usage columns, which the audit trigger ignores.
	 */
	sql = psprintf("WITH j AS ("
				   " DELETE FROM %s.apikey_usage_log RETURNING *"
				   "), d AS ("
				   " SELECT x.key_id, x.bucket,"
				   "        pg_catalog.sum(x.requests)::bigint AS requests,"
				   "        pg_catalog.sum(x.denied)::bigint AS denied,"
				   "        pg_catalog.sum(x.responses)::bigint AS responses,"
				   "        pg_catalog.sum(x.response_ms) AS response_ms,"
				   "        pg_catalog.sum(x.client_errors)::bigint AS client_errors,"
				   "        pg_catalog.sum(x.server_errors)::bigint AS server_errors,"
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
				   " SELECT key_id, pg_catalog.sum(requests)::bigint AS requests,"
				   "        pg_catalog.max(last_used) AS last_used"
				   "   FROM d GROUP BY key_id ORDER BY key_id"
				   "), k AS ("
				   " UPDATE %s.apikey_keys k"
				   "    SET usage_count = k.usage_count OPERATOR(pg_catalog.+) s.requests,"
				   "        last_used_at = GREATEST(k.last_used_at, s.last_used)"
				   "   FROM s WHERE k.key_id OPERATOR(pg_catalog.=) s.key_id"
				   "    AND s.requests OPERATOR(pg_catalog.>) 0"
				   "  RETURNING k.key_id"
				   "), live AS ("
				   " SELECT key_id FROM k"
				   " UNION ALL"
				   " SELECT s.key_id FROM s WHERE s.requests OPERATOR(pg_catalog.=) 0"
				   "    AND EXISTS (SELECT FROM %s.apikey_keys x"
				   "                 WHERE x.key_id OPERATOR(pg_catalog.=) s.key_id)"
				   "), u AS ("
				   " INSERT INTO %s.apikey_usage AS u"
				   "  (key_id, bucket, requests, denied, responses, response_ms,"
				   "   client_errors, server_errors)"
				   " SELECT d.key_id, bucket, requests, denied, responses, response_ms,"
				   "        client_errors, server_errors FROM d"
				   "  JOIN live ON live.key_id OPERATOR(pg_catalog.=) d.key_id"
				   "  ORDER BY d.key_id, d.bucket"
				   " ON CONFLICT (key_id, bucket) DO UPDATE SET"
				   "  requests = u.requests OPERATOR(pg_catalog.+) excluded.requests,"
				   "  denied = u.denied OPERATOR(pg_catalog.+) excluded.denied,"
				   "  responses = u.responses OPERATOR(pg_catalog.+) excluded.responses,"
				   "  response_ms = u.response_ms OPERATOR(pg_catalog.+) excluded.response_ms,"
				   "  client_errors = u.client_errors OPERATOR(pg_catalog.+) excluded.client_errors,"
				   "  server_errors = u.server_errors OPERATOR(pg_catalog.+) excluded.server_errors"
				   ")"
				   " SELECT pg_catalog.count(*) FROM j",
				   nsp, nsp, nsp, nsp);

	SPI_connect();
	rc = SPI_execute(sql, false, 0);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "apikey fold failed: %s", SPI_result_code_string(rc));
	{
		bool		isnull;

		folded = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_finish();
	return folded;
}

/*
 * Entries logged and not yet folded, to bound the log when the sweep (which
 * folds it) runs rarely.
 */
int64
apikey_usage_log_entries(Oid nspid)
{
	int64		entries = 0;

	SPI_connect();
	if (SPI_execute(psprintf("SELECT pg_catalog.sum(entries)::bigint FROM %s.apikey_usage_log",
							 quote_identifier(get_namespace_name(nspid))),
					true, 1) == SPI_OK_SELECT && SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		entries = isnull ? 0 : DatumGetInt64(d);
	}
	SPI_finish();
	return entries;
}

/*
 * Send one NOTIFY on apikey_alerts per client address that passed
 * apikey.alert_failures in a minute.  Delivered when the caller commits.
 */
int64
apikey_send_alerts(void)
{
	ApikeyAlert *alerts;
	int			n = apikey_counters_take_alerts(MyDatabaseId, &alerts);

	if (n == 0)
		return 0;
	SPI_connect();
	for (int i = 0; i < n; i++)
	{
		char	   *addr = DatumGetCString(DirectFunctionCall1(inet_out,
															   InetPGetDatum(&alerts[i].addr)));
		char	   *payload = psprintf("{\"event\": \"failed_verifications\", \"client_ip\": \"%s\", "
									   "\"failures\": %d, \"minute\": \"%s\", \"threshold\": %d}",
									   addr, alerts[i].failures,
									   timestamptz_to_str(alerts[i].minute),
									   apikey_alert_failures);
		Datum		arg = CStringGetTextDatum(payload);
		Oid			argtype = TEXTOID;

		SPI_execute_with_args("SELECT pg_catalog.pg_notify('apikey_alerts', $1)",
							  1, &argtype, &arg, NULL, false, 0);
	}
	SPI_finish();
	return n;
}

/*
 * apikey_flush() returns bigint: write pending counters into the tables now,
 * with whatever the workers have logged; returns the buckets it took from
 * shared memory.
 */
Datum
apikey_flush(PG_FUNCTION_ARGS)
{
	Oid			nspid = get_func_namespace(fcinfo->flinfo->fn_oid);
	int64		n = 0;

	/* Without the preloaded library nothing can be pending, but a log can. */
	if (apikey_counters_ready())
		n = apikey_log_pending(nspid);
	apikey_fold_usage_log(nspid);
	if (apikey_counters_ready())
		apikey_send_alerts();
	PG_RETURN_INT64(n);
}
