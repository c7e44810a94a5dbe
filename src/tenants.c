/*
 * tenants.c
 *		apikey_acts_for(org_id): the tenant binding that row-level security
 *		policies use (2.1).
 *
 *		A role acts for an organization when it has the privileges of a role
 *		that apikey_org_roles binds to it.  The binding cannot be forged by
 *		the session it binds: it rests on role membership (a session can
 *		only SET ROLE to roles it is a member of) and on a table only its
 *		owner can write -- unlike a setting such as app.org_id, which any
 *		session may set.  This function reads the table directly (tenants
 *		need no privilege on it, and learn nothing but whether they
 *		themselves act for the organization they ask about) and checks
 *		membership with the caller's identity, so it is SECURITY INVOKER.
 *		A dropped role binds no one.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "catalog.h"
#include "compat.h"

PG_FUNCTION_INFO_V1(apikey_acts_for);

typedef struct ApikeyOrgRolesCache
{
	Oid			nspid;
	Oid			relid;
	Oid			index;			/* primary key (org_id, role_name) */
	AttrNumber	role_att;
	bool		valid;
} ApikeyOrgRolesCache;

static ApikeyOrgRolesCache apikey_org_roles = {InvalidOid, InvalidOid, InvalidOid, 0, false};
static bool apikey_org_roles_callback = false;

static void
apikey_org_roles_invalidate(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == apikey_org_roles.relid ||
		relid == apikey_org_roles.index)
		apikey_org_roles.valid = false;
}

static void
apikey_org_roles_lookup(Oid nspid)
{
	Relation	rel;

	if (!apikey_org_roles_callback)
	{
		CacheRegisterRelcacheCallback(apikey_org_roles_invalidate, (Datum) 0);
		apikey_org_roles_callback = true;
	}
	if (apikey_org_roles.valid && apikey_org_roles.nspid == nspid)
		return;
	apikey_org_roles.nspid = nspid;
	apikey_org_roles.relid = get_relname_relid("apikey_org_roles", nspid);
	apikey_org_roles.index = get_relname_relid("apikey_org_roles_pkey", nspid);
	if (!OidIsValid(apikey_org_roles.relid) || !OidIsValid(apikey_org_roles.index))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table apikey_org_roles or its primary key not found"),
				 errhint("Update the extension: ALTER EXTENSION apikey UPDATE.")));
	rel = table_open(apikey_org_roles.relid, AccessShareLock);
	apikey_org_roles.role_att = get_attnum(apikey_org_roles.relid, "role_name");
	table_close(rel, AccessShareLock);
	apikey_org_roles.valid = true;
}

/*
 * apikey_acts_for(org_id text) returns boolean
 * Does the calling role act for org_id (see above)?  NULL org_id: false.
 */
Datum
apikey_acts_for(PG_FUNCTION_ARGS)
{
	Oid			me = GetUserId();
	Relation	rel;
	Relation	idx;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	ScanKeyData skey;
	bool		acts = false;

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(false);
	apikey_org_roles_lookup(apikey_fn_namespace(fcinfo));

	rel = table_open(apikey_org_roles.relid, AccessShareLock);
	idx = index_open(apikey_org_roles.index, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	ScanKeyInit(&skey, 1, BTEqualStrategyNumber, F_TEXTEQ, PG_GETARG_DATUM(0));
	skey.sk_collation = idx->rd_indcollation[0];
	scan = apikey_index_beginscan(rel, idx, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, &skey, 1, NULL, 0);
	while (!acts && index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		role = slot_getattr(slot, apikey_org_roles.role_att, &isnull);

		CHECK_FOR_INTERRUPTS();
		if (!isnull && has_privs_of_role(me, DatumGetObjectId(role)))
			acts = true;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(idx, AccessShareLock);
	table_close(rel, AccessShareLock);
	PG_RETURN_BOOL(acts);
}
