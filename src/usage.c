/*
 * usage.c
 *		SQL functions over what shared memory holds: apikey_record,
 *		apikey_rate_limit_status, apikey_flush, and the sets behind
 *		apikey_stats and the exact usage views (apikey_stats_internal,
 *		apikey_pending_usage).
 *
 *		Those that show per-key data show a key only to a caller that may
 *		see its row in apikey_keys (visibility.c): from 1.1 and 2.1 on they
 *		run with the caller's rights, so the caller's privileges and
 *		row-level security decide.
 */
#include "postgres.h"

#include <math.h>

#include "access/table.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "apikey.h"
#include "area.h"
#include "catalog.h"
#include "dump.h"
#include "compat.h"
#include "flush.h"
#include "launcher_state.h"
#include "pending.h"
#include "ratelimit.h"
#include "safesql.h"
#include "visibility.h"

PG_FUNCTION_INFO_V1(apikey_record);
PG_FUNCTION_INFO_V1(apikey_rate_limit_status);
PG_FUNCTION_INFO_V1(apikey_stats_internal);
PG_FUNCTION_INFO_V1(apikey_pending_usage);
PG_FUNCTION_INFO_V1(apikey_flush);

/* A response time above a day is not one (and sums of them overflow). */
#define APIKEY_MAX_RESPONSE_MS	(24.0 * 3600 * 1000)

static char *
apikey_key_id_arg(FunctionCallInfo fcinfo, int argno)
{
	text	   *t;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("key_id must not be null")));
	t = PG_GETARG_TEXT_PP(argno);
	if (VARSIZE_ANY_EXHDR(t) == 0 || VARSIZE_ANY_EXHDR(t) > APIKEY_KEY_ID_MAXLEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key_id must be 1 to %d characters long", APIKEY_KEY_ID_MAXLEN)));
	return text_to_cstring(t);
}

/*
 * apikey_record(key_id text, endpoint text, status_code integer,
 *				 response_ms double precision)
 * Counts one served request of an existing key in shared memory; written
 * with the usage.  A key_id that names no key is not counted: it would
 * otherwise take room in shared memory that real keys need (before 1.1 and
 * 2.1, invented key_ids could fill it and switch rate limits off).  Nor is
 * one the caller may not see (visibility.c: with row-level security on,
 * the application needs SELECT (key_id) and a policy, as for
 * apikey_rate_limit_status).
 */
Datum
apikey_record(PG_FUNCTION_ARGS)
{
	Oid			nspid;
	char	   *key_id;
	int32		status;
	double		ms;
	ApikeyKeyRow row;

	apikey_require_preload();
	apikey_dump_ensure_loaded();
	key_id = apikey_key_id_arg(fcinfo, 0);
	nspid = apikey_fn_namespace(fcinfo);
	if (PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("status_code and response_ms must not be null")));
	status = PG_GETARG_INT32(2);
	ms = PG_GETARG_FLOAT8(3);
	if (status < 100 || status > 599)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("status_code %d is not an HTTP status", status),
				 errhint("Pass the HTTP status of the response, 100 to 599.")));
	if (isnan(ms) || ms < 0 || ms > APIKEY_MAX_RESPONSE_MS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("response_ms must be a number of milliseconds between 0 and %.0f", APIKEY_MAX_RESPONSE_MS),
				 errhint("Pass the time the response took, in milliseconds.")));
	/*
	 * Only a key the caller may see: a tenant's application must not be able
	 * to write responses, errors and latency into another organization's
	 * statistics by naming its key_id (key_ids are no secret).
	 */
	if (!apikey_fetch_by_key_id(nspid, key_id, false, &row) ||
		!apikey_key_visible(nspid, key_id, true))
		PG_RETURN_VOID();
	apikey_pending_count_response(MyDatabaseId, key_id, status, ms, GetCurrentTimestamp());
	apikey_launcher_note_pending(MyDatabaseId);
	PG_RETURN_VOID();
}

/*
 * apikey_rate_limit_status(key_id text)
 *		returns table(rate_limit integer, remaining integer, reset_at timestamptz)
 * No row for an unknown key or one the caller may not see; remaining and
 * reset_at null when unlimited.  Uses no quota and creates no entry.
 */
Datum
apikey_rate_limit_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			nspid;
	char	   *key_id;
	ApikeyKeyRow row;
	ApikeyRateState rate;
	Datum		values[3];
	bool		nulls[3] = {true, true, true};

	apikey_require_preload();
	apikey_dump_ensure_loaded();
	key_id = apikey_key_id_arg(fcinfo, 0);
	nspid = apikey_fn_namespace(fcinfo);
	InitMaterializedSRF(fcinfo, 0);
	if (!apikey_fetch_by_key_id(nspid, key_id, false, &row) ||
		!apikey_key_visible(nspid, key_id, true))
		return (Datum) 0;

	if (row.has_rate_limit)
	{
		values[0] = Int32GetDatum(row.rate_limit);
		nulls[0] = false;
	}
	if (row.has_rate_limit && row.rate_limit > 0 && row.window_usec > 0)
	{
		apikey_ratelimit_admit(MyDatabaseId, key_id, row.rate_limit, row.window_usec,
							   GetCurrentTimestamp(), false, &rate);
		values[1] = Int32GetDatum(rate.remaining);
		values[2] = TimestampTzGetDatum(rate.reset_at);
		nulls[1] = nulls[2] = false;
	}
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

/* ---- apikey_stats_internal ----------------------------------------------- */

typedef struct ApikeyStatsEntry
{
	char		key_id[APIKEY_KEY_ID_MAXLEN + 1];
	ApikeyPendingRow *pending;
	ApikeyWindowEntry *window;
} ApikeyStatsEntry;

static void
apikey_put_stats_row(ReturnSetInfo *rsinfo, const ApikeyStatsEntry *e,
					 const ApikeyOverflowCounts *overflow)
{
	Datum		values[13];
	bool		nulls[13];
	int64		requests = 0,
				denied = 0,
				responses = 0;
	double		response_ms = 0;
	TimestampTz last_used = 0;
	int32		zero_codes[APIKEY_NUM_CODES] = {0};
	const int32 *by = zero_codes;

	memset(nulls, false, sizeof(nulls));
	if (overflow != NULL)
	{
		requests = overflow->requests;
		denied = overflow->denied;
		responses = overflow->responses;
		response_ms = overflow->response_ms;
	}
	else if (e->pending != NULL)
	{
		for (int s = 0; s < APIKEY_PENDING_SLOTS; s++)
		{
			const ApikeyUsageSlot *slot = &e->pending->slot[s];

			requests += slot->requests;
			denied += slot->denied;
			responses += slot->responses;
			response_ms += slot->response_ms;
			last_used = Max(last_used, slot->last_used);
		}
		by = e->pending->denied_by;
	}
	values[0] = overflow ? (Datum) 0 : CStringGetTextDatum(e->key_id);
	nulls[0] = overflow != NULL;
	values[1] = Int64GetDatum(requests);
	values[2] = Int64GetDatum(denied);
	values[3] = Int64GetDatum(by[APIKEY_REVOKED]);
	values[4] = Int64GetDatum(by[APIKEY_EXPIRED]);
	values[5] = Int64GetDatum(by[APIKEY_FORBIDDEN]);
	values[6] = Int64GetDatum(by[APIKEY_INSUFFICIENT_SCOPE]);
	values[7] = Int64GetDatum(by[APIKEY_RATE_LIMITED]);
	values[8] = Int64GetDatum(responses);
	values[9] = Float8GetDatum(response_ms);
	values[10] = TimestampTzGetDatum(last_used);
	nulls[10] = last_used == 0;
	values[11] = Int32GetDatum(e && e->window ? e->window->w.count : 0);
	nulls[11] = e == NULL || e->window == NULL;
	values[12] = BoolGetDatum(overflow != NULL);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * apikey_stats_internal() returns setof record: for each key of this
 * database the caller may see, its counts not yet logged and its running
 * rate-limit window; and one overflow row (key_id null) with the counts
 * that found no room for an entry.
 */
Datum
apikey_stats_internal(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			nspid = apikey_fn_namespace(fcinfo);
	ApikeyPendingRow *pending;
	ApikeyWindowEntry *windows;
	int			npending;
	int			nwindows;
	HASHCTL		ctl;
	HTAB	   *keys;
	HASH_SEQ_STATUS seq;
	ApikeyStatsEntry *e;
	const char **ids;
	int			nids = 0;
	ApikeyVisibility *vis;
	ApikeyOverflowCounts overflow;

	apikey_require_preload();
	apikey_dump_ensure_loaded();
	InitMaterializedSRF(fcinfo, 0);
	/* refuse a role that may see no key before copying anything */
	apikey_visibility_precheck(nspid, true);
	npending = apikey_pending_snapshot(MyDatabaseId, GetActiveSnapshot(), &pending);
	nwindows = apikey_ratelimit_snapshot(MyDatabaseId, GetCurrentTimestamp(), &windows);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = APIKEY_KEY_ID_MAXLEN + 1;
	ctl.entrysize = sizeof(ApikeyStatsEntry);
	ctl.hcxt = CurrentMemoryContext;
	keys = hash_create("apikey stats", Max(npending + nwindows, 16), &ctl,
					   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	for (int i = 0; i < npending; i++)
	{
		bool		found;

		e = hash_search(keys, pending[i].key_id, HASH_ENTER, &found);
		if (!found)
			e->window = NULL;
		e->pending = &pending[i];
	}
	for (int i = 0; i < nwindows; i++)
	{
		bool		found;

		e = hash_search(keys, windows[i].key.key_id, HASH_ENTER, &found);
		if (!found)
			e->pending = NULL;
		e->window = &windows[i];
	}

	ids = palloc(sizeof(char *) * Max(npending + nwindows, 1));
	hash_seq_init(&seq, keys);
	while ((e = hash_seq_search(&seq)) != NULL)
		ids[nids++] = e->key_id;
	vis = apikey_visibility(nspid, ids, nids, true);

	hash_seq_init(&seq, keys);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		CHECK_FOR_INTERRUPTS();
		if (apikey_visible(vis, e->key_id))
			apikey_put_stats_row(rsinfo, e, NULL);
	}
	apikey_pending_overflow(MyDatabaseId, &overflow);
	if (overflow.requests > 0 || overflow.denied > 0 || overflow.responses > 0)
		apikey_put_stats_row(rsinfo, NULL, &overflow);
	return (Datum) 0;
}

/* ---- apikey_pending_usage ------------------------------------------------ */

static void
apikey_put_usage_row(ReturnSetInfo *rsinfo, Datum key_id, const ApikeyUsageSlot *s)
{
	Datum		values[9];
	bool		nulls[9] = {false, false, false, false, false, false, false, false, false};

	values[0] = key_id;
	values[1] = TimestampTzGetDatum(s->bucket);
	values[2] = Int64GetDatum(s->requests);
	values[3] = Int64GetDatum(s->denied);
	values[4] = Int64GetDatum(s->responses);
	values[5] = Float8GetDatum(s->response_ms);
	values[6] = Int64GetDatum(s->client_errors);
	values[7] = Int64GetDatum(s->server_errors);
	values[8] = TimestampTzGetDatum(s->last_used);
	nulls[8] = s->last_used == 0;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * apikey_pending_usage()
 *		returns table(key_id text, bucket timestamptz, requests bigint,
 *					  denied bigint, responses bigint, response_ms float8,
 *					  client_errors bigint, server_errors bigint,
 *					  last_used timestamptz)
 * The usage not yet folded into apikey_usage: the usage log and the counts
 * still in shared memory, per key and hour (a key and hour may appear more
 * than once), for the keys the caller may see.  The log mixes every
 * organization's keys in one row, so it is read with the table owner's
 * rights and filtered here, under the caller's visibility, rather than
 * granted to tenants.  Exact: a flush's log row becomes visible in the same
 * commit that takes its counts out of memory.
 */
Datum
apikey_pending_usage(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			nspid = apikey_fn_namespace(fcinfo);
	ApikeyPendingRow *pending = NULL;
	int			npending = 0;
	const char **ids;
	int			nids = 0;
	ApikeyVisibility *vis;
	Oid			save_userid;
	int			save_sec;
	int			nestlevel;
	Oid			owner;
	Relation	rel;
	SPITupleTable *log_rows;
	uint64		nlog;
	MemoryContext cxt = CurrentMemoryContext;

	InitMaterializedSRF(fcinfo, 0);
	/* refuse a role that may see no key before copying anything */
	apikey_visibility_precheck(nspid, false);
	if (apikey_area_ready())
	{
		apikey_dump_ensure_loaded();
		npending = apikey_pending_snapshot(MyDatabaseId, GetActiveSnapshot(), &pending);
	}

	/* the log, read as the table's owner (the caller may not read it) */
	rel = table_open(get_relname_relid("apikey_usage_log", nspid), AccessShareLock);
	owner = rel->rd_rel->relowner;
	table_close(rel, AccessShareLock);
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	SPI_connect();
	nestlevel = apikey_safesql_begin();
	if (SPI_execute(psprintf("SELECT x.key_id, x.bucket, x.requests, x.denied, x.responses,"
							 "       x.response_ms, x.client_errors, x.server_errors, x.last_used"
							 "  FROM %s j, ROWS FROM (pg_catalog.unnest(j.key_ids), pg_catalog.unnest(j.buckets),"
							 "       pg_catalog.unnest(j.requests), pg_catalog.unnest(j.denied),"
							 "       pg_catalog.unnest(j.responses), pg_catalog.unnest(j.response_ms),"
							 "       pg_catalog.unnest(j.client_errors), pg_catalog.unnest(j.server_errors),"
							 "       pg_catalog.unnest(j.last_used))"
							 "    AS x(key_id, bucket, requests, denied, responses, response_ms,"
							 "         client_errors, server_errors, last_used)",
							 apikey_qualified(nspid, "apikey_usage_log")),
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "apikey could not read the usage log");
	apikey_safesql_end(nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec);
	log_rows = SPI_tuptable;
	nlog = SPI_processed;

	/* which keys the caller may see, with its own rights */
	ids = MemoryContextAlloc(cxt, sizeof(char *) * (nlog + npending + 1));
	for (uint64 i = 0; i < nlog; i++)
		ids[nids++] = MemoryContextStrdup(cxt, SPI_getvalue(log_rows->vals[i], log_rows->tupdesc, 1));
	for (int i = 0; i < npending; i++)
		ids[nids++] = pending[i].key_id;
	{
		MemoryContext spi = MemoryContextSwitchTo(cxt);

		vis = apikey_visibility(nspid, ids, nids, false);
		MemoryContextSwitchTo(spi);
	}

	for (uint64 i = 0; i < nlog; i++)
	{
		Datum		values[9];
		bool		nulls[9];

		CHECK_FOR_INTERRUPTS();
		if (!apikey_visible(vis, ids[i]))
			continue;
		heap_deform_tuple(log_rows->vals[i], log_rows->tupdesc, values, nulls);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();

	for (int i = 0; i < npending; i++)
	{
		Datum		key_id;

		if (!apikey_visible(vis, pending[i].key_id))
			continue;
		key_id = CStringGetTextDatum(pending[i].key_id);
		for (int s = 0; s < APIKEY_PENDING_SLOTS; s++)
			if (pending[i].slot[s].bucket != 0)
				apikey_put_usage_row(rsinfo, key_id, &pending[i].slot[s]);
	}
	return (Datum) 0;
}

/* ---- apikey_flush -------------------------------------------------------- */

/*
 * apikey_flush() returns bigint: write pending counters into the tables
 * now, with whatever the workers have logged, and record pending alerts;
 * returns the keys whose counts it took from shared memory.  Everything
 * happens in the caller's transaction: a rollback leaves the counts where
 * they were.  A fold already running in the schema (a worker's, or another
 * apikey_flush()) is waited for, and this one then folds what it left.
 */
Datum
apikey_flush(PG_FUNCTION_ARGS)
{
	Oid			nspid = apikey_fn_namespace(fcinfo);
	int64		n = 0;

	/* Without the preloaded library nothing can be pending, but a log can. */
	if (apikey_area_ready())
	{
		apikey_dump_ensure_loaded();
		n = apikey_log_pending(nspid);
	}
	(void) apikey_fold_usage_log(nspid, true);
	if (apikey_area_ready())
	{
		bool		more = true;

		while (more)
		{
			CHECK_FOR_INTERRUPTS();
			if (apikey_record_alerts(nspid, &more) == 0)
				break;
		}
	}
	PG_RETURN_INT64(n);
}
