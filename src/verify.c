/*
 * verify.c
 *		apikey_verify: the function on every request path.
 *
 *		One index probe, no planning, no table writes.  The token's shape and
 *		checksum are judged before any table is touched; the key row is
 *		found by a direct scan of the unique index on hash (catalog.c), under
 *		the latest snapshot, so that a revoke is in force the moment it
 *		commits.  Usage and rate limits are counted in shared memory
 *		(pending.c, ratelimit.c), failures per client address in failures.c.
 *
 *		Work is bounded however large the input: required scopes and a key's
 *		scopes are capped (APIKEY_MAX_SCOPES) and matched by sorting, not
 *		pairwise, and every loop over caller-sized input checks for
 *		interrupts, so cancel and statement_timeout always work.
 *
 *		Versioned entry points, as pg_stat_statements does, so that the SQL
 *		of every installed version keeps working against this library.
 */
#include "postgres.h"

#include <sys/socket.h>

#include "access/detoast.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "apikey.h"
#include "area.h"
#include "catalog.h"
#include "dump.h"
#include "compat.h"
#include "failures.h"
#include "keys.h"
#include "launcher_state.h"
#include "pending.h"
#include "ratelimit.h"
#include "scope.h"
#include "token.h"

PG_FUNCTION_INFO_V1(apikey_verify_1_0);
PG_FUNCTION_INFO_V1(apikey_verify_2_0);

/* A raw argument larger than this cannot hold a token, blanks included. */
#define APIKEY_MAX_RAW_ARG	1024
/* Below this many pairs, comparing every pair beats sorting. */
#define APIKEY_PAIRWISE_MAX	64

/* What one verification found. */
typedef struct ApikeyVerifyResult
{
	ApikeyCode	code;
	bool		key_known;
	ApikeyKeyRow row;
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
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("required scopes must be a one-dimensional array")));
	if (ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr)) > APIKEY_MAX_SCOPES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many required scopes (%d)", ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr))),
				 errdetail("A verification may require at most %d scopes.", APIKEY_MAX_SCOPES)));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	req->scopes = palloc(sizeof(ApikeyScope) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		text	   *t;

		CHECK_FOR_INTERRUPTS();
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("required scope %d is null", i + 1),
					 errhint("Scopes are written resource:action, e.g. documents:read.")));
		t = DatumGetTextPP(elems[i]);
		if (!apikey_scope_parse(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &req->scopes[req->n]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid scope \"%s\"", apikey_echo(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t))),
					 errdetail("A scope is resource:action, each side [a-z0-9_.-]+ or *, or a bare *."),
					 errhint("Write scopes like documents:read or documents:*.")));
		req->n++;
	}
}

/* Does the key's scopes array grant every required scope? Empty = all. */
static bool
apikey_scopes_grant(ArrayType *granted_arr, const ApikeyRequired *req)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	ApikeyScope *granted;
	int			ng = 0;

	if (req->n == 0)
		return true;
	deconstruct_array(granted_arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0)
		return true;
	granted = palloc(sizeof(ApikeyScope) * n);
	for (int g = 0; g < n; g++)
	{
		text	   *t;

		CHECK_FOR_INTERRUPTS();
		if (nulls[g])
			continue;
		t = DatumGetTextPP(elems[g]);
		if (apikey_scope_parse(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &granted[ng]))
			ng++;
	}
	if ((int64) ng * req->n > APIKEY_PAIRWISE_MAX)
	{
		apikey_scope_set_sort(granted, ng);
		for (int r = 0; r < req->n; r++)
		{
			CHECK_FOR_INTERRUPTS();
			if (!apikey_scope_set_covers(granted, ng, &req->scopes[r]))
				return false;
		}
		return true;
	}
	for (int r = 0; r < req->n; r++)
	{
		bool		covered = false;

		for (int g = 0; g < ng && !covered; g++)
			covered = apikey_scope_covers(&granted[g], &req->scopes[r]);
		if (!covered)
			return false;
	}
	return true;
}

/*
 * A client address ::ffff:a.b.c.d (an IPv4 client of a dual-stack listener,
 * as Node and most application servers report it) is a.b.c.d: allowlists
 * and failure counts treat it so.
 */
static inet *
apikey_normalize_client(inet *addr)
{
	static const uint8 mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	inet	   *v4;

	if (addr == NULL || ip_family(addr) != PGSQL_AF_INET6 ||
		memcmp(ip_addr(addr), mapped, sizeof(mapped)) != 0 || ip_bits(addr) < 96)
		return addr;
	v4 = palloc0(sizeof(inet));
	ip_family(v4) = PGSQL_AF_INET;
	ip_bits(v4) = ip_bits(addr) - 96;
	memcpy(ip_addr(v4), ip_addr(addr) + 12, 4);
	SET_VARSIZE(v4, VARHDRSZ + offsetof(inet_struct, ipaddr) + 4);
	return v4;
}

/* Is client_ip inside one of the key's allowed networks? */
static bool
apikey_ip_allowed(ArrayType *allowed, inet *client_ip)
{
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
		CHECK_FOR_INTERRUPTS();
		if (!nulls[i] &&
			DatumGetBool(DirectFunctionCall2(network_supeq, elems[i],
											 InetPGetDatum(client_ip))))
			return true;
	}
	return false;
}

/*
 * The whole verification.  token_datum may be null; required is NULL for
 * 1.x; client_ip is already normalized.
 */
static void
apikey_verify_internal(Oid nspid, Datum token_datum, bool token_null,
					   const ApikeyRequired *required, inet *client_ip,
					   ApikeyVerifyResult *res)
{
	text	   *token;
	const char *tok;
	size_t		toklen;
	uint8		hash[APIKEY_HASH_LEN];
	const char *err;
	TimestampTz now = GetCurrentTimestamp();
	ApikeyKeyRow *row = &res->row;
	char	   *key_id;

	memset(res, 0, sizeof(*res));
	res->code = APIKEY_MALFORMED;

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

	if (!apikey_fetch_by_hash(nspid, hash, true, row))
	{
		res->code = APIKEY_NOT_FOUND;
		goto client_failure;
	}
	/* The index found it by hash; confirm in constant time all the same. */
	if (row->hash == NULL || VARSIZE_ANY_EXHDR(row->hash) != APIKEY_HASH_LEN ||
		!apikey_equal_ct(VARDATA_ANY(row->hash), hash, APIKEY_HASH_LEN))
	{
		res->code = APIKEY_NOT_FOUND;
		goto client_failure;
	}
	res->key_known = true;
	key_id = text_to_cstring(row->key_id);

	if (row->revoked || (!row->is_active && !(row->has_expiry && row->expires_at <= now)))
		res->code = APIKEY_REVOKED;
	else if (row->has_expiry && row->expires_at <= now)
		res->code = APIKEY_EXPIRED;
	else if (row->allowed_ips != NULL && !apikey_ip_allowed(row->allowed_ips, client_ip))
		res->code = APIKEY_FORBIDDEN;
	else if (required != NULL && row->scopes != NULL &&
			 !apikey_scopes_grant(row->scopes, required))
		res->code = APIKEY_INSUFFICIENT_SCOPE;
	else
		res->code = APIKEY_VALID;

	/* Only an admitted request uses quota; stored NULL or 0 is unlimited. */
	if (res->code == APIKEY_VALID && row->has_rate_limit && row->rate_limit > 0 &&
		row->window_usec > 0)
	{
		apikey_ratelimit_admit(MyDatabaseId, key_id, row->rate_limit, row->window_usec,
							   now, true, &res->rate);
		if (!res->rate.admitted)
			res->code = APIKEY_RATE_LIMITED;
		if (res->rate.untracked)
			apikey_launcher_wake(true);
	}
	apikey_pending_count_verify(MyDatabaseId, key_id, res->code, now);
	apikey_launcher_note_pending(MyDatabaseId);
	apikey_totals_add(res->code);
	if (res->code == APIKEY_VALID || res->code == APIKEY_RATE_LIMITED ||
		res->code == APIKEY_INSUFFICIENT_SCOPE)
		return;
	/* REVOKED, EXPIRED, FORBIDDEN suggest a stolen key: count per address */
	if (client_ip != NULL && apikey_failures_count(MyDatabaseId, client_ip, now))
		apikey_launcher_note_pending(MyDatabaseId);
	return;

client_failure:
	/* MALFORMED and NOT_FOUND suggest guessing: counted per address */
	apikey_totals_add(res->code);
	if (client_ip != NULL && apikey_failures_count(MyDatabaseId, client_ip, now))
		apikey_launcher_note_pending(MyDatabaseId);
}

/*
 * 2.x: apikey_verify(token text, required_scopes text[], client_ip inet)
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
	ApikeyKeyRow *row = &res.row;

	apikey_require_preload();
	apikey_dump_ensure_loaded();
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("required_scopes must not be null"),
				 errhint("Pass '{}' to require no scope.")));
	apikey_parse_required(PG_GETARG_ARRAYTYPE_P(1), &required);

	apikey_verify_internal(apikey_fn_namespace(fcinfo), PG_GETARG_DATUM(0), PG_ARGISNULL(0),
						   &required,
						   apikey_normalize_client(PG_ARGISNULL(2) ? NULL : PG_GETARG_INET_PP(2)),
						   &res);

	/*
	 * The type cache, not get_call_result_type: that one copies the tuple
	 * descriptor on every call, a measurable share of a verification.
	 */
	tupdesc = lookup_rowtype_tupdesc(apikey_fn_rettype(fcinfo), -1);
	if (tupdesc->natts != 12)
		elog(ERROR, "apikey_verification has %d attributes, expected 12", tupdesc->natts);

	valid = res.code == APIKEY_VALID;
	limited = res.code == APIKEY_RATE_LIMITED;
	memset(nulls, true, sizeof(nulls));
	values[0] = BoolGetDatum(valid);
	nulls[0] = false;
	values[1] = CStringGetTextDatum(apikey_code_names[res.code]);
	nulls[1] = false;
	values[2] = PointerGetDatum(row->key_id);
	nulls[2] = !res.key_known;
	if (valid)
	{
		values[3] = PointerGetDatum(row->owner_id);
		nulls[3] = row->owner_id == NULL;
		values[4] = PointerGetDatum(row->name);
		nulls[4] = row->name == NULL;
		values[5] = PointerGetDatum(row->scopes);
		nulls[5] = row->scopes == NULL;
		values[6] = PointerGetDatum(row->environment);
		nulls[6] = row->environment == NULL;
		values[7] = TimestampTzGetDatum(row->expires_at);
		nulls[7] = !row->has_expiry;
		values[11] = row->metadata;
		nulls[11] = row->metadata == (Datum) 0;
	}
	if (valid || limited)
	{
		values[8] = Int32GetDatum(row->rate_limit);
		nulls[8] = !row->has_rate_limit;
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
 * 1.x: apikey_verify(key text, client_ip inet)
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
	apikey_dump_ensure_loaded();
	apikey_verify_internal(apikey_fn_namespace(fcinfo), PG_GETARG_DATUM(0), PG_ARGISNULL(0),
						   NULL,
						   apikey_normalize_client(PG_ARGISNULL(1) ? NULL : PG_GETARG_INET_PP(1)),
						   &res);

	InitMaterializedSRF(fcinfo, 0);
	values[0] = BoolGetDatum(res.code == APIKEY_VALID);
	values[1] = CStringGetTextDatum(apikey_code_names[res.code]);
	if (res.key_known)
	{
		values[2] = PointerGetDatum(res.row.key_id);
		nulls[2] = false;
	}
	if (res.code == APIKEY_VALID && res.row.owner_id != NULL)
	{
		values[3] = PointerGetDatum(res.row.owner_id);
		nulls[3] = false;
	}
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}
