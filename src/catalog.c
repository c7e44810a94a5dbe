/*
 * catalog.c
 *		Finds apikey_keys and its hash index in the schema of the calling
 *		function (which is the extension's schema) and caches their OIDs and
 *		column numbers.  A relcache callback drops the cache whenever the
 *		table or index changes (ALTER EXTENSION UPDATE, DROP EXTENSION), so a
 *		stale OID is never used.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "catalog/pg_index.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/syscache.h"

#include "catalog.h"

static ApikeyKeysLayout apikey_layout;
static bool apikey_layout_valid = false;
static bool apikey_callback_registered = false;

static void
apikey_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == apikey_layout.relid ||
		relid == apikey_layout.hash_index)
		apikey_layout_valid = false;
}

/* A function changed (e.g. ALTER EXTENSION UPDATE replaced it): look again. */
static void
apikey_proc_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	apikey_layout_valid = false;
}

static Oid
apikey_find_hash_index(Relation rel, AttrNumber hash_att)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	Oid			result = InvalidOid;

	foreach(lc, indexes)
	{
		Relation	idx = index_open(lfirst_oid(lc), AccessShareLock);
		Form_pg_index form = idx->rd_index;

		if (form->indisunique && form->indisvalid && form->indnkeyatts == 1 &&
			form->indkey.values[0] == hash_att &&
			RelationGetIndexPredicate(idx) == NIL)
			result = RelationGetRelid(idx);
		index_close(idx, AccessShareLock);
		if (OidIsValid(result))
			break;
	}
	list_free(indexes);
	return result;
}

static void
apikey_build_layout(Oid fn_oid)
{
	ApikeyKeysLayout l;
	Relation	rel;
	Oid			nspid = get_func_namespace(fn_oid);

	memset(&l, 0, sizeof(l));
	l.fn_oid = fn_oid;
	l.rettype = get_func_rettype(fn_oid);
	l.nspid = nspid;
	l.relid = get_relname_relid("apikey_keys", nspid);
	if (!OidIsValid(l.relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table apikey_keys not found in schema \"%s\"",
						get_namespace_name(nspid)),
				 errhint("Reinstall the extension with DROP EXTENSION apikey; CREATE EXTENSION apikey.")));

	l.key_id = get_attnum(l.relid, "key_id");
	l.hash = get_attnum(l.relid, "hash");
	l.is_active = get_attnum(l.relid, "is_active");
	l.expires_at = get_attnum(l.relid, "expires_at");
	l.revoked_at = get_attnum(l.relid, "revoked_at");
	l.rate_limit = get_attnum(l.relid, "rate_limit");
	l.rate_window = get_attnum(l.relid, "rate_window");
	l.allowed_ips = get_attnum(l.relid, "allowed_ips");
	l.user_id = get_attnum(l.relid, "user_id");
	l.org_id = get_attnum(l.relid, "org_id");
	l.name = get_attnum(l.relid, "name");
	l.scopes = get_attnum(l.relid, "scopes");
	l.environment = get_attnum(l.relid, "environment");
	l.metadata = get_attnum(l.relid, "metadata");
	if (l.key_id == InvalidAttrNumber || l.hash == InvalidAttrNumber ||
		l.is_active == InvalidAttrNumber || l.expires_at == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("table apikey_keys lacks the columns apikey needs"),
				 errhint("Reinstall or update the extension; do not alter its tables by hand.")));

	rel = table_open(l.relid, AccessShareLock);
	l.hash_index = apikey_find_hash_index(rel, l.hash);
	l.natts = RelationGetNumberOfAttributes(rel);
	table_close(rel, AccessShareLock);
	if (!OidIsValid(l.hash_index))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("apikey_keys has no valid unique index on hash"),
				 errhint("REINDEX TABLE apikey_keys, or reinstall the extension.")));

	apikey_layout = l;
	apikey_layout_valid = true;
}

/*
 * The layout of apikey_keys in the schema of the function fn_oid.  The
 * function and the table always share the extension's schema.  Cached by
 * function OID, so a verification costs no catalog lookup at all.
 */
const ApikeyKeysLayout *
apikey_keys_layout(Oid fn_oid)
{
	if (!apikey_callback_registered)
	{
		CacheRegisterRelcacheCallback(apikey_relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(PROCOID, apikey_proc_callback, (Datum) 0);
		apikey_callback_registered = true;
	}
	if (!apikey_layout_valid || apikey_layout.fn_oid != fn_oid)
		apikey_build_layout(fn_oid);
	return &apikey_layout;
}
