/*
 * keys.c
 *		The C half of the write side: minting tokens and validating what a
 *		key may contain.  The SQL half (apikey_create, apikey_revoke,
 *		apikey_rotate ...) lives in the install scripts and calls these, so
 *		that the token only ever exists in the result of the function that
 *		created it.
 *
 *		Also the SQL-callable scope functions: apikey_scope_matches (usable
 *		in RLS policies), apikey_scopes(jsonb) and the validators used by
 *		the tables' CHECK constraints, which raise errors that name the bad
 *		element instead of a bare "violates check constraint".
 */
#include "postgres.h"

#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "apikey.h"
#include "keys.h"
#include "scope.h"
#include "token.h"

PG_FUNCTION_INFO_V1(apikey_new_token);
PG_FUNCTION_INFO_V1(apikey_environment_valid);
PG_FUNCTION_INFO_V1(apikey_scopes_valid);
PG_FUNCTION_INFO_V1(apikey_scope_matches);
PG_FUNCTION_INFO_V1(apikey_scopes_from_json);
PG_FUNCTION_INFO_V1(apikey_actor);
PG_FUNCTION_INFO_V1(apikey_token_hash);

/* How much of an invalid value an error message shows. */
#define APIKEY_ECHO_MAX		64

/*
 * The start of an invalid value, for an error message: a megabyte of
 * garbage is not echoed into the log and back to the client.
 */
char *
apikey_echo(const char *s, size_t len)
{
	if (len <= APIKEY_ECHO_MAX)
		return pnstrdup(s, len);
	return psprintf("%s...", pnstrdup(s, pg_mbcliplen(s, len, APIKEY_ECHO_MAX)));
}

static void
apikey_check_environment(text *env)
{
	if (!apikey_valid_name(VARDATA_ANY(env), VARSIZE_ANY_EXHDR(env)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid environment \"%s\"",
						apikey_echo(VARDATA_ANY(env), VARSIZE_ANY_EXHDR(env))),
				 errdetail("An environment is a lowercase letter followed by up to 15 lowercase letters or digits."),
				 errhint("Use a name like live, test or staging.")));
}

static void
apikey_check_scope_text(text *t, int position)
{
	ApikeyScope s;

	if (!apikey_scope_parse(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &s))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid scope \"%s\" at position %d",
						apikey_echo(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)), position),
				 errdetail("A scope is resource:action, each side [a-z0-9_.-]+ or *, or a bare *."),
				 errhint("Write scopes like documents:read or documents:*.")));
}

/*
 * Raises unless every element of a scopes array is a valid scope, and there
 * are at most APIKEY_MAX_SCOPES of them (which bounds what a verification
 * of the key can cost).
 */
static void
apikey_check_scopes(ArrayType *arr)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("scopes must be a one-dimensional array")));
	n = ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
	if (n > APIKEY_MAX_SCOPES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many scopes (%d)", n),
				 errdetail("A key may hold at most %d scopes.", APIKEY_MAX_SCOPES),
				 errhint("Use wildcards such as documents:* instead of listing every action.")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("scope at position %d is null", i + 1),
					 errhint("Remove the null element; an empty array grants full access.")));
		apikey_check_scope_text(DatumGetTextPP(elems[i]), i + 1);
	}
}

/*
 * apikey_new_token(environment text)
 *		returns (key_id text, token text, hint text, hash bytea)
 * A fresh token under the current apikey.token_prefix.  Stores nothing.
 */
Datum
apikey_new_token(PG_FUNCTION_ARGS)
{
	text	   *env = PG_GETARG_TEXT_PP(0);
	char	   *env_str;
	char		token[APIKEY_TOKEN_BUFSIZE];
	char		key_id[APIKEY_KEY_ID_BUFSIZE];
	char		hint[APIKEY_HINT_BUFSIZE];
	uint8		hash[APIKEY_HASH_LEN];
	bytea	   *hash_bytea;
	const char *err;
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	apikey_check_environment(env);
	env_str = text_to_cstring(env);
	if (!apikey_token_generate(token, apikey_token_prefix, env_str) ||
		!apikey_key_id_generate(key_id))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes for a new key")));
	apikey_token_hint(hint, token, strlen(token));
	if (!apikey_sha256(token, strlen(token), hash, &err))
		elog(ERROR, "could not compute SHA-256: %s", err);

	hash_bytea = palloc(VARHDRSZ + APIKEY_HASH_LEN);
	SET_VARSIZE(hash_bytea, VARHDRSZ + APIKEY_HASH_LEN);
	memcpy(VARDATA(hash_bytea), hash, APIKEY_HASH_LEN);

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "apikey_new_token must return a composite type");
	values[0] = CStringGetTextDatum(key_id);
	values[1] = CStringGetTextDatum(token);
	values[2] = CStringGetTextDatum(hint);
	values[3] = PointerGetDatum(hash_bytea);
	explicit_bzero(token, sizeof(token));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}

/*
 * apikey_token_hash(token text) returns bytea
 * SHA-256 of a token as apikey stores it (after stripping "Bearer "), for
 * importing keys issued by another system.
 */
Datum
apikey_token_hash(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	const char *tok;
	size_t		len;
	uint8		hash[APIKEY_HASH_LEN];
	const char *err;
	bytea	   *result;

	apikey_token_unwrap(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &tok, &len);
	if (len == 0 || len > APIKEY_MAX_TOKEN_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a token must be 1 to %d bytes long", APIKEY_MAX_TOKEN_LEN)));
	if (!apikey_sha256(tok, len, hash, &err))
		elog(ERROR, "could not compute SHA-256: %s", err);
	result = palloc(VARHDRSZ + APIKEY_HASH_LEN);
	SET_VARSIZE(result, VARHDRSZ + APIKEY_HASH_LEN);
	memcpy(VARDATA(result), hash, APIKEY_HASH_LEN);
	PG_RETURN_BYTEA_P(result);
}

/* apikey_environment_valid(text) returns boolean: true or a clear ERROR */
Datum
apikey_environment_valid(PG_FUNCTION_ARGS)
{
	apikey_check_environment(PG_GETARG_TEXT_PP(0));
	PG_RETURN_BOOL(true);
}

/* apikey_scopes_valid(text[]) returns boolean: true or a clear ERROR */
Datum
apikey_scopes_valid(PG_FUNCTION_ARGS)
{
	apikey_check_scopes(PG_GETARG_ARRAYTYPE_P(0));
	PG_RETURN_BOOL(true);
}

/*
 * apikey_scope_matches(granted text[], required text) returns boolean
 * Immutable and strict, for RLS policies and CHECKs.  An empty grant
 * covers everything.
 */
Datum
apikey_scope_matches(PG_FUNCTION_ARGS)
{
	ArrayType  *granted = PG_GETARG_ARRAYTYPE_P(0);
	text	   *required = PG_GETARG_TEXT_PP(1);
	ApikeyScope req;
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	apikey_check_scope_text(required, 1);
	apikey_scope_parse(VARDATA_ANY(required), VARSIZE_ANY_EXHDR(required), &req);
	apikey_check_scopes(granted);
	deconstruct_array(granted, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0)
		PG_RETURN_BOOL(true);
	for (int i = 0; i < n; i++)
	{
		text	   *t = DatumGetTextPP(elems[i]);
		ApikeyScope g;

		CHECK_FOR_INTERRUPTS();
		apikey_scope_parse(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &g);
		if (apikey_scope_covers(&g, &req))
			PG_RETURN_BOOL(true);
	}
	PG_RETURN_BOOL(false);
}

static void
apikey_json_error(const char *what, int position)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid scope definition at position %d: %s", position, what),
			 errhint("Use the form [{\"resource\": \"documents\", \"actions\": [\"read\", \"create\"]}].")));
}

/* The text of a jsonb string value, or an error. */
static char *
apikey_json_string(JsonbValue *v, const char *what, int position)
{
	if (v == NULL || v->type != jbvString)
		apikey_json_error(what, position);
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/*
 * apikey_scopes(jsonb) returns text[]
 * [{"resource":"documents","actions":["read","create"]}]
 *		-> {documents:read,documents:create}
 */
Datum
apikey_scopes_from_json(PG_FUNCTION_ARGS)
{
	Jsonb	   *jb = PG_GETARG_JSONB_P(0);
	ArrayBuildState *astate = initArrayResult(TEXTOID, CurrentMemoryContext, false);
	int			count;
	int			nscopes = 0;

	if (!JB_ROOT_IS_ARRAY(jb) || JB_ROOT_IS_SCALAR(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("scope definitions must be a JSON array"),
				 errhint("Use the form [{\"resource\": \"documents\", \"actions\": [\"read\", \"create\"]}].")));
	count = JB_ROOT_COUNT(jb);
	for (int i = 0; i < count; i++)
	{
		JsonbValue *item;
		JsonbValue *actions;
		char	   *resource;
		JsonbValue	key;

		CHECK_FOR_INTERRUPTS();
		item = getIthJsonbValueFromContainer(&jb->root, i);
		if (item == NULL || item->type != jbvBinary ||
			!JsonContainerIsObject(item->val.binary.data))
			apikey_json_error("each element must be an object", i + 1);

		key.type = jbvString;
		key.val.string.val = "resource";
		key.val.string.len = strlen("resource");
		resource = apikey_json_string(findJsonbValueFromContainer(item->val.binary.data,
																  JB_FOBJECT, &key),
									  "\"resource\" must be a string", i + 1);
		key.val.string.val = "actions";
		key.val.string.len = strlen("actions");
		actions = findJsonbValueFromContainer(item->val.binary.data, JB_FOBJECT, &key);
		if (actions == NULL || actions->type != jbvBinary ||
			!JsonContainerIsArray(actions->val.binary.data) ||
			JsonContainerSize(actions->val.binary.data) == 0)
			apikey_json_error("\"actions\" must be a non-empty array of strings", i + 1);

		for (int j = 0; j < (int) JsonContainerSize(actions->val.binary.data); j++)
		{
			char	   *action;
			text	   *scope;

			CHECK_FOR_INTERRUPTS();
			action = apikey_json_string(getIthJsonbValueFromContainer(actions->val.binary.data, j),
										"\"actions\" must be a non-empty array of strings", i + 1);
			scope = cstring_to_text(psprintf("%s:%s", resource, action));
			apikey_check_scope_text(scope, i + 1);
			if (++nscopes > APIKEY_MAX_SCOPES)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("too many scopes (more than %d)", APIKEY_MAX_SCOPES),
						 errdetail("A key may hold at most %d scopes.", APIKEY_MAX_SCOPES),
						 errhint("Use wildcards such as documents:* instead of listing every action.")));
			astate = accumArrayResult(astate, PointerGetDatum(scope), false,
									  TEXTOID, CurrentMemoryContext);
		}
	}
	PG_RETURN_DATUM(makeArrayResult(astate, CurrentMemoryContext));
}

/*
 * apikey_actor() returns text
 * The role acting at the top level (SET ROLE included), which a SECURITY
 * DEFINER audit trigger cannot see through current_user.
 */
Datum
apikey_actor(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(GetUserNameFromId(GetOuterUserId(), false)));
}
