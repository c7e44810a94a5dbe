/*
 * safesql.c
 *		Every SQL statement apikey's C code runs (flushing, folding,
 *		sweeping, auditing, visibility checks) is written with
 *		schema-qualified names (pg_catalog's functions and operators too, as
 *		PostgreSQL asks of extensions since CVE-2018-1058), and runs with
 *		search_path set to "pg_catalog, pg_temp" for its duration: pg_temp is
 *		named last, since a search_path without it searches pg_temp *first*
 *		for relations and types, and nothing a caller plants in pg_temp or in
 *		a schema it can write can then be picked up by code that runs with
 *		another role's rights.
 *
 *		The extension's own schema must not be writable by others either:
 *		CREATE EXTENSION refuses such a schema (apikey_check_schema) and the
 *		workers re-check before they run SQL in it.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_namespace.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "compat.h"
#include "safesql.h"

/*
 * Pin search_path until apikey_safesql_end(the returned level), which the
 * caller must reach (an ERROR in between is cleaned up by the transaction's
 * abort, which undoes GUC nesting levels).
 */
int
apikey_safesql_begin(void)
{
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

/*
 * For the statements that move many rows (the fold), within a level begun
 * by apikey_safesql_begin: the planner's methods as the server ships them,
 * whatever the calling session, its role or its database set (a session
 * with enable_hashjoin = off once folded 200,000 keys in nested loops for
 * eleven minutes), no JIT, and maintenance_work_mem as work_mem, as other
 * bulk maintenance uses (at the default 4 MB of work_mem, folding a million
 * keys spilled its aggregates to disk in hundreds of batches).
 */
void
apikey_safesql_bulk_settings(void)
{
	static const char *const methods[] = {
		"enable_bitmapscan", "enable_gathermerge", "enable_hashagg", "enable_hashjoin",
		"enable_incremental_sort", "enable_indexonlyscan", "enable_indexscan",
		"enable_material", "enable_memoize", "enable_mergejoin", "enable_nestloop",
		"enable_parallel_append", "enable_parallel_hash", "enable_partition_pruning",
		"enable_presorted_aggregate", "enable_seqscan", "enable_sort", "enable_tidscan",
		"enable_group_by_reordering", "enable_distinct_reordering",
		"enable_self_join_elimination"
	};
	/* in kB, as work_mem takes it; copied: the next lookup reuses the buffer */
	char	   *mwm = pstrdup(GetConfigOption("maintenance_work_mem", false, false));

	/* the list names settings of later majors: each only where it exists */
	for (int i = 0; i < lengthof(methods); i++)
		if (GetConfigOption(methods[i], true, false) != NULL)
			(void) set_config_option(methods[i], "on", PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("work_mem", mwm, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

void
apikey_safesql_end(int nestlevel)
{
	AtEOXact_GUC(true, nestlevel);
}

/*
 * schema.relname, quoted.  The schema is looked up now: if it was dropped
 * concurrently that is an ERROR here, never a NULL passed on.
 */
char *
apikey_qualified(Oid nspid, const char *relname)
{
	char	   *nspname = get_namespace_name(nspid);

	if (nspname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_SCHEMA),
				 errmsg("the schema of the apikey extension was dropped concurrently")));
	return quote_qualified_identifier(nspname, relname);
}

bool
apikey_relation_exists(Oid nspid, const char *relname)
{
	return OidIsValid(get_relname_relid(relname, nspid));
}

/*
 * Can a role other than the schema's owner and superusers create objects
 * in schema nspid?  Such a role could plant an overload or a type that code
 * running with the extension owner's rights might pick up.  *who names the
 * first such role ("PUBLIC" for everyone).
 */
bool
apikey_schema_unsafe(Oid nspid, char **who)
{
	HeapTuple	tup;
	Form_pg_namespace form;
	Datum		aclDatum;
	bool		isnull;
	bool		unsafe = false;

	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nspid));
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_SCHEMA),
				 errmsg("the schema of the apikey extension was dropped concurrently")));
	form = (Form_pg_namespace) GETSTRUCT(tup);
	aclDatum = SysCacheGetAttr(NAMESPACEOID, tup, Anum_pg_namespace_nspacl, &isnull);
	if (!isnull)
	{
		Acl		   *acl = DatumGetAclP(aclDatum);
		AclItem    *items = ACL_DAT(acl);

		for (int i = 0; i < ACL_NUM(acl) && !unsafe; i++)
		{
			Oid			grantee = items[i].ai_grantee;

			if (!(ACLITEM_GET_PRIVS(items[i]) & ACL_CREATE))
				continue;
			if (grantee == ACL_ID_PUBLIC)
			{
				unsafe = true;
				*who = pstrdup("PUBLIC");
			}
			else if (grantee != form->nspowner && !superuser_arg(grantee))
			{
				unsafe = true;
				*who = GetUserNameFromId(grantee, true);
				if (*who == NULL)
					*who = psprintf("role %u", grantee);
			}
		}
	}
	ReleaseSysCache(tup);
	return unsafe;
}

/* The schema of the installed apikey extension, or InvalidOid. */
Oid
apikey_extension_schema(void)
{
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	Oid			nspid = InvalidOid;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("apikey"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		nspid = ((Form_pg_extension) GETSTRUCT(tup))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return nspid;
}
