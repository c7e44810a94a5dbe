/*
 * visibility.c
 *		The functions that show per-key data a caller cannot read in a table
 *		-- shared-memory counts, the usage log, a key's rate-limit window --
 *		show a key only to a caller that may see the key's row in
 *		apikey_keys.  The caller's privileges and row-level security decide,
 *		exactly as for its own SELECT: the tenant-isolation policies bind
 *		these functions as they bind the tables, and none of them needs
 *		SECURITY DEFINER.
 *
 *		A role with SELECT on the whole table and no row-level security
 *		applying to it sees every key without a query.  A role that may read
 *		key_id is answered by a query run with its own rights.  A role that
 *		may not read apikey_keys at all gets "permission denied" -- except,
 *		for the functions a DBA grants to applications (apikey_rate_limit_status
 *		and apikey_stats_internal, which PUBLIC may not execute), while
 *		row-level security is not enabled on apikey_keys: then, as before 2.1,
 *		the EXECUTE grant is what lets an application read any key's window.
 *		Once policies confine tenants, every role needs an explicit grant and
 *		a policy.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/memutils.h"
#include "utils/rls.h"

#include "apikey.h"
#include "catalog.h"
#include "compat.h"
#include "safesql.h"
#include "visibility.h"

typedef struct ApikeyVisibleKey
{
	char		key_id[APIKEY_KEY_ID_MAXLEN + 1];
} ApikeyVisibleKey;

/* Is row-level security enabled on the table (whoever it applies to)? */
static bool
apikey_rls_enabled(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	bool		enabled;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	enabled = ((Form_pg_class) GETSTRUCT(tup))->relrowsecurity;
	ReleaseSysCache(tup);
	return enabled;
}

/*
 * true: the role sees every row; false: a query must decide.  ERROR if it
 * may not read key_id (see above for granted_execute).
 */
static bool
apikey_sees_all(const ApikeyKeysLayout *l, bool granted_execute)
{
	Oid			role = GetUserId();
	AclResult	table_acl = pg_class_aclcheck(l->relid, role, ACL_SELECT);

	if (table_acl != ACLCHECK_OK &&
		pg_attribute_aclcheck(l->relid, l->key_id, role, ACL_SELECT) != ACLCHECK_OK)
	{
		if (granted_execute && !apikey_rls_enabled(l->relid))
			return true;
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table apikey_keys"),
				 errdetail("This function shows a key only to roles that may see the key in apikey_keys."),
				 errhint("GRANT SELECT (key_id) ON apikey_keys TO the role; row-level security policies then decide which keys it sees.")));
	}
	return table_acl == ACLCHECK_OK &&
		check_enable_rls(l->relid, InvalidOid, true) != RLS_ENABLED;
}

/*
 * ERROR now if the calling role may see no key at all: callers that copy
 * shared memory or read the usage log call it first, so that a role without
 * rights cannot make them do that work only to be refused.
 */
void
apikey_visibility_precheck(Oid nspid, bool granted_execute)
{
	(void) apikey_sees_all(apikey_keys_layout(nspid), granted_execute);
}

/* May the calling role see the row of key_id? */
bool
apikey_key_visible(Oid nspid, const char *key_id, bool granted_execute)
{
	const ApikeyKeysLayout *l = apikey_keys_layout(nspid);
	Datum		arg;
	Oid			argtype = TEXTOID;
	int			nestlevel;
	bool		visible;

	if (apikey_sees_all(l, granted_execute))
		return true;
	arg = CStringGetTextDatum(key_id);
	SPI_connect();
	nestlevel = apikey_safesql_begin();
	if (SPI_execute_with_args(psprintf("SELECT FROM %s k WHERE k.key_id OPERATOR(pg_catalog.=) $1",
									   apikey_qualified(nspid, "apikey_keys")),
							  1, &argtype, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "apikey visibility check failed");
	visible = SPI_processed > 0;
	apikey_safesql_end(nestlevel);
	SPI_finish();
	return visible;
}

/*
 * Which of the n key_ids the calling role may see.  The result lives in the
 * current memory context.
 */
ApikeyVisibility *
apikey_visibility(Oid nspid, const char *const *key_ids, int n, bool granted_execute)
{
	const ApikeyKeysLayout *l = apikey_keys_layout(nspid);
	ApikeyVisibility *v = palloc0(sizeof(ApikeyVisibility));
	HASHCTL		ctl;
	MemoryContext cxt = CurrentMemoryContext;
	Datum	   *elems;
	Datum		arg;
	Oid			argtype = TEXTARRAYOID;
	int			nestlevel;

	if (apikey_sees_all(l, granted_execute))
	{
		v->all = true;
		return v;
	}
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(ApikeyVisibleKey);
	ctl.entrysize = sizeof(ApikeyVisibleKey);
	ctl.hcxt = cxt;
	v->keys = hash_create("apikey visible keys", Max(n, 16), &ctl,
						  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	if (n == 0)
		return v;

	elems = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
		elems[i] = CStringGetTextDatum(key_ids[i]);
	arg = PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));

	SPI_connect();
	nestlevel = apikey_safesql_begin();
	if (SPI_execute_with_args(psprintf("SELECT k.key_id FROM %s k"
									   " WHERE k.key_id OPERATOR(pg_catalog.=) ANY ($1)",
									   apikey_qualified(nspid, "apikey_keys")),
							  1, &argtype, &arg, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "apikey visibility check failed");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *key_id = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		ApikeyVisibleKey k;

		CHECK_FOR_INTERRUPTS();
		memset(&k, 0, sizeof(k));
		strlcpy(k.key_id, key_id, sizeof(k.key_id));
		(void) hash_search(v->keys, &k, HASH_ENTER, NULL);
	}
	apikey_safesql_end(nestlevel);
	SPI_finish();
	return v;
}

bool
apikey_visible(const ApikeyVisibility *v, const char *key_id)
{
	ApikeyVisibleKey k;

	if (v->all)
		return true;
	memset(&k, 0, sizeof(k));
	strlcpy(k.key_id, key_id, sizeof(k.key_id));
	return hash_search(v->keys, &k, HASH_FIND, NULL) != NULL;
}
