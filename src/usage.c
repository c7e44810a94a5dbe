/*
 * usage.c
 *		SQL functions over the shared-memory counters: apikey_record,
 *		apikey_rate_limit_status and the set behind the apikey_stats view.
 */
#include "postgres.h"

#include <math.h>

#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "apikey.h"
#include "counters.h"

PG_FUNCTION_INFO_V1(apikey_record);
PG_FUNCTION_INFO_V1(apikey_rate_limit_status);
PG_FUNCTION_INFO_V1(apikey_stats_internal);

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
 * Counts one served request in shared memory; written with the usage.
 */
Datum
apikey_record(PG_FUNCTION_ARGS)
{
	char	   *key_id;
	int32		status;
	double		ms;

	apikey_require_preload();
	key_id = apikey_key_id_arg(fcinfo, 0);
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
	if (isnan(ms) || ms < 0 || isinf(ms))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("response_ms must be a finite, non-negative number")));
	apikey_count_response(key_id, status, ms, GetCurrentTimestamp());
	PG_RETURN_VOID();
}

/*
 * apikey_rate_limit_status(key_id text)
 *		returns table(rate_limit integer, remaining integer, reset_at timestamptz)
 * No row for an unknown key; remaining and reset_at null when unlimited.
 */
Datum
apikey_rate_limit_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *key_id;
	const char *nsp;
	char	   *sql;
	Datum		arg;
	Oid			argtype = TEXTOID;
	bool		found = false;
	int32		limit = 0;
	bool		limit_null = true;
	int64		window_usec = 0;

	apikey_require_preload();
	key_id = apikey_key_id_arg(fcinfo, 0);
	InitMaterializedSRF(fcinfo, 0);

	nsp = quote_identifier(get_namespace_name(get_func_namespace(fcinfo->flinfo->fn_oid)));
	sql = psprintf("SELECT rate_limit,"
				   " (EXTRACT(EPOCH FROM COALESCE(rate_window, make_interval(secs => $2)))"
				   "  OPERATOR(pg_catalog.*) 1000000)::int8"
				   " FROM %s.apikey_keys WHERE key_id OPERATOR(pg_catalog.=) $1", nsp);
	arg = CStringGetTextDatum(key_id);
	SPI_connect();
	{
		Datum		args[2] = {arg, Float8GetDatum((double) apikey_default_rate_window_s)};
		Oid			types[2] = {argtype, FLOAT8OID};

		if (SPI_execute_with_args(sql, 2, types, args, NULL, true, 1) == SPI_OK_SELECT &&
			SPI_processed == 1)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

			found = true;
			limit_null = isnull;
			limit = isnull ? 0 : DatumGetInt32(d);
			window_usec = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 2, &isnull));
		}
	}
	SPI_finish();

	if (found)
	{
		ApikeyRateState rate;
		Datum		values[3];
		bool		nulls[3] = {limit_null, true, true};

		apikey_rate_peek(key_id, limit, window_usec, GetCurrentTimestamp(), &rate);
		values[0] = Int32GetDatum(limit);
		if (rate.limited)
		{
			values[1] = Int32GetDatum(rate.remaining);
			values[2] = TimestampTzGetDatum(rate.reset_at);
			nulls[1] = nulls[2] = false;
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

static void
apikey_put_stats_row(ReturnSetInfo *rsinfo, const ApikeyStatsRow *r, bool overflow)
{
	Datum		values[13];
	bool		nulls[13];

	memset(nulls, false, sizeof(nulls));
	values[0] = overflow ? (Datum) 0 : CStringGetTextDatum(r->key_id);
	nulls[0] = overflow;
	values[1] = Int64GetDatum(r->requests);
	values[2] = Int64GetDatum(r->denied);
	values[3] = Int64GetDatum(r->denied_by[APIKEY_REVOKED]);
	values[4] = Int64GetDatum(r->denied_by[APIKEY_EXPIRED]);
	values[5] = Int64GetDatum(r->denied_by[APIKEY_FORBIDDEN]);
	values[6] = Int64GetDatum(r->denied_by[APIKEY_INSUFFICIENT_SCOPE]);
	values[7] = Int64GetDatum(r->denied_by[APIKEY_RATE_LIMITED]);
	values[8] = Int64GetDatum(r->responses);
	values[9] = Float8GetDatum(r->response_ms);
	values[10] = TimestampTzGetDatum(r->last_used);
	nulls[10] = r->last_used == 0;
	values[11] = Int32GetDatum(r->window_count);
	nulls[11] = r->window_start == 0;
	values[12] = BoolGetDatum(overflow);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * apikey_stats_internal() returns setof record: the counters of this
 * database not yet written to the tables, and one overflow row (key_id
 * null) when counts found no free entry.
 */
Datum
apikey_stats_internal(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ApikeyStatsRow *rows;
	ApikeyStatsRow overflow;
	int			n;

	apikey_require_preload();
	InitMaterializedSRF(fcinfo, 0);
	n = apikey_counters_stats(MyDatabaseId, &rows, &overflow);
	for (int i = 0; i < n; i++)
		apikey_put_stats_row(rsinfo, &rows[i], false);
	if (overflow.requests > 0 || overflow.denied > 0 || overflow.responses > 0)
		apikey_put_stats_row(rsinfo, &overflow, true);
	return (Datum) 0;
}
