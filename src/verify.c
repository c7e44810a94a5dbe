/*
 * verify.c
 *		apikey_verify: the function on every request path.
 *
 *		One index probe, no planning, no table writes.  The token's shape and
 *		checksum are judged before any table is touched; the key row is
 *		found by a direct scan of the unique index on hash, under the latest
 *		snapshot so that a revoke is in force the moment it commits, even for
 *		callers inside a long REPEATABLE READ transaction.  Usage and rate
 *		limits are counted in shared memory (counters.c).
 *
 *		Versioned entry points, as pg_stat_statements does, so that the SQL
 *		of every installed version keeps working against this library.
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/genam.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "apikey.h"
#include "catalog.h"
#include "counters.h"
#include "scope.h"
#include "token.h"

PG_FUNCTION_INFO_V1(apikey_verify_1_0);
PG_FUNCTION_INFO_V1(apikey_verify_2_0);

/* A raw argument larger than this cannot hold a token, blanks included. */
#define APIKEY_MAX_RAW_ARG	1024

/* What one verification found; datums live in the caller's context. */
typedef struct ApikeyVerifyResult
{
	ApikeyCode	code;
	bool		key_known;
	Datum		key_id;
	Datum		owner_id;		/* org_id in 2.0, user_id in 1.0 */
	Datum		name;
	Datum		scopes;
	Datum		environment;
	Datum		metadata;
	Datum		expires_at;
	bool		expires_null;
	bool		rate_limit_null;
	int32		rate_limit;
	ApikeyRateState rate;
} ApikeyVerifyResult;

/* The required scopes of one call, parsed once. */
typedef struct ApikeyRequired
{
	int			n;
	ApikeyScope *scopes;
} ApikeyRequired;

static void
apikey_parse_required(ArrayType *arr, ApikeyRequired *req)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	req->n = 0;
	req->scopes = NULL;
	if (arr == NULL)
		return;
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("required scopes must be a one-dimensional array")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	req->scopes = palloc(sizeof(ApikeyScope) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		text	   *t;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("required scope %d is null", i + 1),
					 errhint("Scopes are written resource:action, e.g. documents:read.")));
		t = DatumGetTextPP(elems[i]);
		if (!apikey_scope_parse(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t),
								&req->scopes[req->n]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid scope \"%s\"", text_to_cstring(t)),
					 errdetail("A scope is resource:action, each side [a-z0-9_.-]+ or *, or a bare *."),
					 errhint("Write scopes like documents:read or documents:*.")));
		req->n++;
	}
}

/* Does the key's scopes array grant every required scope? Empty = all. */
static bool
apikey_scopes_grant(Datum granted_datum, const ApikeyRequired *req)
{
	ArrayType  *granted = DatumGetArrayTypeP(granted_datum);
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	if (req->n == 0)
		return true;
	deconstruct_array(granted, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0)
		return true;
	for (int r = 0; r < req->n; r++)
	{
		bool		covered = false;

		for (int g = 0; g < n && !covered; g++)
		{
			ApikeyScope gs;
			text	   *t;

			if (nulls[g])
				continue;
			t = DatumGetTextPP(elems[g]);
			if (apikey_scope_parse(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &gs))
				covered = apikey_scope_covers(&gs, &req->scopes[r]);
		}
		if (!covered)
			return false;
	}
	return true;
}

/* Is client_ip inside one of the key's allowed networks? */
static bool
apikey_ip_allowed(Datum allowed_datum, inet *client_ip)
{
	ArrayType  *allowed = DatumGetArrayTypeP(allowed_datum);
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	deconstruct_array(allowed, CIDROID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0)
		return true;			/* an empty list restricts nothing */
	if (client_ip == NULL)
		return false;
	for (int i = 0; i < n; i++)
	{
		if (!nulls[i] &&
			DatumGetBool(DirectFunctionCall2(network_supeq, elems[i],
											 InetPGetDatum(client_ip))))
			return true;
	}
	return false;
}

static int64
apikey_interval_usec(Datum d)
{
	Interval   *iv = DatumGetIntervalP(d);

	return iv->time + iv->day * USECS_PER_DAY +
		(int64) iv->month * DAYS_PER_MONTH * USECS_PER_DAY;
}

/*
 * Find the row whose hash column equals hash, copy what the checks need.
 * Returns false when there is none.
 */
static bool
apikey_lookup(const ApikeyKeysLayout *l, const uint8 *hash,
			  Datum *values, bool *isnull)
{
	Relation	rel;
	Relation	idx;
	Snapshot	snapshot;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	ScanKeyData skey;
	bytea	   *key = palloc(VARHDRSZ + APIKEY_HASH_LEN);
	bool		found;

	SET_VARSIZE(key, VARHDRSZ + APIKEY_HASH_LEN);
	memcpy(VARDATA(key), hash, APIKEY_HASH_LEN);

	rel = table_open(l->relid, AccessShareLock);
	idx = index_open(l->hash_index, AccessShareLock);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	slot = table_slot_create(rel, NULL);
	ScanKeyInit(&skey, 1, BTEqualStrategyNumber, F_BYTEAEQ, PointerGetDatum(key));
	scan = index_beginscan(rel, idx, snapshot, 1, 0);
	index_rescan(scan, &skey, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	if (found)
	{
		TupleDesc	desc = RelationGetDescr(rel);

		slot_getallattrs(slot);
		for (int i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			isnull[i] = slot->tts_isnull[i];
			values[i] = isnull[i] || att->attisdropped ? (Datum) 0 :
				datumCopy(slot->tts_values[i], att->attbyval, att->attlen);
			if (att->attisdropped)
				isnull[i] = true;
		}
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snapshot);
	index_close(idx, NoLock);
	table_close(rel, NoLock);
	return found;
}

#define COL(att) ((att) - 1)

/*
 * The whole verification.  token may be NULL; required NULL for 1.0.
 */
static void
apikey_verify_internal(FunctionCallInfo fcinfo, Datum token_datum,
					   bool token_null, const ApikeyRequired *required,
					   inet *client_ip, ApikeyVerifyResult *res)
{
	const ApikeyKeysLayout *l;
	text	   *token;
	const char *tok;
	size_t		toklen;
	uint8		hash[APIKEY_HASH_LEN];
	const char *err;
	Datum	   *values;
	bool	   *isnull;
	TimestampTz now = GetCurrentTimestamp();
	bool		expired;
	bool		revoked;
	int64		window_usec;

	memset(res, 0, sizeof(*res));
	res->code = APIKEY_MALFORMED;
	res->expires_null = true;
	res->rate_limit_null = true;

	/* Shape and checksum first: garbage never reaches a table. */
	if (token_null ||
		toast_raw_datum_size(token_datum) > APIKEY_MAX_RAW_ARG + VARHDRSZ)
		goto client_failure;
	token = DatumGetTextPP(token_datum);
	apikey_token_unwrap(VARDATA_ANY(token), VARSIZE_ANY_EXHDR(token), &tok, &toklen);
	if (apikey_token_classify(tok, toklen, apikey_token_prefix) == APIKEY_TOKEN_MALFORMED)
		goto client_failure;
	if (!apikey_sha256(tok, toklen, hash, &err))
		elog(ERROR, "could not compute SHA-256: %s", err);

	l = apikey_keys_layout(fcinfo->flinfo->fn_oid);
	values = palloc(sizeof(Datum) * l->natts);
	isnull = palloc(sizeof(bool) * l->natts);
	if (!apikey_lookup(l, hash, values, isnull))
	{
		res->code = APIKEY_NOT_FOUND;
		goto client_failure;
	}
	/* The index found it by hash; confirm in constant time all the same. */
	{
		bytea	   *stored = DatumGetByteaPP(values[COL(l->hash)]);

		if (VARSIZE_ANY_EXHDR(stored) != APIKEY_HASH_LEN ||
			!apikey_equal_ct(VARDATA_ANY(stored), hash, APIKEY_HASH_LEN))
		{
			res->code = APIKEY_NOT_FOUND;
			goto client_failure;
		}
	}

	res->key_known = true;
	res->key_id = values[COL(l->key_id)];

	expired = !isnull[COL(l->expires_at)] &&
		DatumGetTimestampTz(values[COL(l->expires_at)]) <= now;
	revoked = l->revoked_at != InvalidAttrNumber && !isnull[COL(l->revoked_at)];
	if (revoked || (!DatumGetBool(values[COL(l->is_active)]) && !expired))
		res->code = APIKEY_REVOKED;
	else if (expired)
		res->code = APIKEY_EXPIRED;
	else if (l->allowed_ips != InvalidAttrNumber && !isnull[COL(l->allowed_ips)] &&
			 !apikey_ip_allowed(values[COL(l->allowed_ips)], client_ip))
		res->code = APIKEY_FORBIDDEN;
	else if (required != NULL && l->scopes != InvalidAttrNumber &&
			 !isnull[COL(l->scopes)] &&
			 !apikey_scopes_grant(values[COL(l->scopes)], required))
		res->code = APIKEY_INSUFFICIENT_SCOPE;
	else
		res->code = APIKEY_VALID;

	/* Limits: stored NULL or 0 means unlimited. */
	if (l->rate_limit != InvalidAttrNumber && !isnull[COL(l->rate_limit)])
	{
		res->rate_limit = DatumGetInt32(values[COL(l->rate_limit)]);
		res->rate_limit_null = false;
	}
	window_usec = (l->rate_window != InvalidAttrNumber && !isnull[COL(l->rate_window)]) ?
		apikey_interval_usec(values[COL(l->rate_window)]) :
		(int64) apikey_default_rate_window_s * USECS_PER_SEC;

	apikey_count_key_result(TextDatumGetCString(res->key_id), res->code,
							res->rate_limit_null ? 0 : res->rate_limit,
							window_usec, now, &res->rate);
	if (res->code == APIKEY_VALID && !res->rate.admitted)
		res->code = APIKEY_RATE_LIMITED;

	if (res->code == APIKEY_VALID)
	{
		AttrNumber	owner = l->org_id != InvalidAttrNumber ? l->org_id : l->user_id;

		if (owner != InvalidAttrNumber)
			res->owner_id = values[COL(owner)];
		if (l->name != InvalidAttrNumber)
			res->name = values[COL(l->name)];
		if (l->scopes != InvalidAttrNumber)
			res->scopes = values[COL(l->scopes)];
		if (l->environment != InvalidAttrNumber)
			res->environment = values[COL(l->environment)];
		if (l->metadata != InvalidAttrNumber)
			res->metadata = values[COL(l->metadata)];
		res->expires_at = values[COL(l->expires_at)];
		res->expires_null = isnull[COL(l->expires_at)];
	}
	if (res->code == APIKEY_VALID || res->code == APIKEY_RATE_LIMITED ||
		res->code == APIKEY_INSUFFICIENT_SCOPE)
		return;

client_failure:
	/* Failures that suggest guessing or a stolen key count per address. */
	if (client_ip != NULL)
		apikey_count_client_failure(client_ip, now);
}

/*
 * 2.0: apikey_verify(token text, required_scopes text[], client_ip inet)
 *		returns apikey_verification
 */
Datum
apikey_verify_2_0(PG_FUNCTION_ARGS)
{
	ApikeyRequired required;
	ApikeyVerifyResult res;
	TupleDesc	tupdesc;
	Datum		values[12];
	bool		nulls[12];
	bool		valid;
	bool		limited;
	Datum		result;

	apikey_require_preload();
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("required_scopes must not be null"),
				 errhint("Pass '{}' to require no scope.")));
	apikey_parse_required(PG_GETARG_ARRAYTYPE_P(1), &required);

	apikey_verify_internal(fcinfo, PG_GETARG_DATUM(0), PG_ARGISNULL(0), &required,
						   PG_ARGISNULL(2) ? NULL : PG_GETARG_INET_PP(2), &res);

	/*
	 * The type cache, not get_call_result_type: that one copies the tuple
	 * descriptor on every call, a measurable share of a verification.
	 */
	tupdesc = lookup_rowtype_tupdesc(apikey_keys_layout(fcinfo->flinfo->fn_oid)->rettype, -1);
	if (tupdesc->natts != 12)
		elog(ERROR, "apikey_verification has %d attributes, expected 12", tupdesc->natts);

	valid = res.code == APIKEY_VALID;
	limited = res.code == APIKEY_RATE_LIMITED;
	memset(nulls, true, sizeof(nulls));
	values[0] = BoolGetDatum(valid);
	nulls[0] = false;
	values[1] = CStringGetTextDatum(apikey_code_names[res.code]);
	nulls[1] = false;
	values[2] = res.key_id;
	nulls[2] = !res.key_known;
	if (valid)
	{
		values[3] = res.owner_id;
		nulls[3] = res.owner_id == (Datum) 0;
		values[4] = res.name;
		nulls[4] = res.name == (Datum) 0;
		values[5] = res.scopes;
		nulls[5] = res.scopes == (Datum) 0;
		values[6] = res.environment;
		nulls[6] = res.environment == (Datum) 0;
		values[7] = res.expires_at;
		nulls[7] = res.expires_null;
		values[11] = res.metadata;
		nulls[11] = res.metadata == (Datum) 0;
	}
	if (valid || limited)
	{
		values[8] = Int32GetDatum(res.rate_limit);
		nulls[8] = res.rate_limit_null;
		if (res.rate.limited)
		{
			values[9] = Int32GetDatum(res.rate.remaining);
			nulls[9] = false;
			values[10] = TimestampTzGetDatum(res.rate.reset_at);
			nulls[10] = false;
		}
	}
	result = HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
	ReleaseTupleDesc(tupdesc);
	PG_RETURN_DATUM(result);
}

/*
 * 1.0: apikey_verify(key text, client_ip inet)
 *		returns table(valid boolean, code text, key_id text, user_id text)
 */
Datum
apikey_verify_1_0(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ApikeyVerifyResult res;
	Datum		values[4];
	bool		nulls[4] = {false, false, true, true};

	apikey_require_preload();
	apikey_verify_internal(fcinfo, PG_GETARG_DATUM(0), PG_ARGISNULL(0), NULL,
						   PG_ARGISNULL(1) ? NULL : PG_GETARG_INET_PP(1), &res);

	InitMaterializedSRF(fcinfo, 0);
	values[0] = BoolGetDatum(res.code == APIKEY_VALID);
	values[1] = CStringGetTextDatum(apikey_code_names[res.code]);
	if (res.key_known)
	{
		values[2] = res.key_id;
		nulls[2] = false;
	}
	if (res.code == APIKEY_VALID && res.owner_id != (Datum) 0)
	{
		values[3] = res.owner_id;
		nulls[3] = false;
	}
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}
