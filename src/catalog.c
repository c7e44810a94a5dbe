/*
 * catalog.c
 *		Finds apikey_keys and its unique indexes on hash and key_id in the
 *		extension's schema, caches their OIDs and column numbers, and looks
 *		one row up with a direct index scan: no planning, no SQL, and so no
 *		search_path in the way.
 *
 *		A relcache callback drops the cached layout whenever the table or an
 *		index changes.  A lookup opens the table first and then checks that
 *		the layout it holds is still valid (opening the table is what
 *		processes a concurrent ALTER TABLE's invalidation), and copies out
 *		only the columns it knows, by number, from the row in hand: a column
 *		added or dropped by someone else can never make it read or write past
 *		what it allocated.  Each column's type is checked when the layout is
 *		built, so that a column altered to another type is an ERROR, not a
 *		misread datum.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "apikey.h"
#include "catalog.h"
#include "compat.h"

static ApikeyKeysLayout apikey_layout;
static bool apikey_layout_valid = false;
static bool apikey_callback_registered = false;

static void
apikey_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == apikey_layout.relid ||
		relid == apikey_layout.hash_index || relid == apikey_layout.key_id_index)
		apikey_layout_valid = false;
}

/* A namespace changed (renamed, dropped): look again. */
static void
apikey_namespace_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	apikey_layout_valid = false;
}

/* What a call site remembers about its function, in fn_extra. */
typedef struct ApikeyFnCache
{
	Oid			nspid;
	Oid			rettype;
} ApikeyFnCache;

static ApikeyFnCache *
apikey_fn_cache(FunctionCallInfo fcinfo)
{
	ApikeyFnCache *cached = (ApikeyFnCache *) fcinfo->flinfo->fn_extra;

	if (cached == NULL)
	{
		Oid			fn = fcinfo->flinfo->fn_oid;

		cached = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(ApikeyFnCache));
		cached->nspid = get_func_namespace(fn);
		cached->rettype = get_func_rettype(fn);
		if (!OidIsValid(cached->nspid))
			elog(ERROR, "cache lookup failed for function %u", fn);
		fcinfo->flinfo->fn_extra = cached;
	}
	return cached;
}

/*
 * The schema of the calling function, which is the extension's schema;
 * looked up once per call site.
 */
Oid
apikey_fn_namespace(FunctionCallInfo fcinfo)
{
	return apikey_fn_cache(fcinfo)->nspid;
}

Oid
apikey_fn_rettype(FunctionCallInfo fcinfo)
{
	return apikey_fn_cache(fcinfo)->rettype;
}

/* The unique, valid, non-partial, single-column index on column att. */
static Oid
apikey_find_unique_index(Relation rel, AttrNumber att)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	Oid			result = InvalidOid;

	foreach(lc, indexes)
	{
		Relation	idx = index_open(lfirst_oid(lc), AccessShareLock);
		Form_pg_index form = idx->rd_index;

		if (form->indisunique && form->indisvalid && form->indnkeyatts == 1 &&
			form->indkey.values[0] == att && idx->rd_rel->relam == BTREE_AM_OID &&
			RelationGetIndexPredicate(idx) == NIL &&
			RelationGetIndexExpressions(idx) == NIL)
			result = RelationGetRelid(idx);
		index_close(idx, AccessShareLock);
		if (OidIsValid(result))
			break;
	}
	list_free(indexes);
	return result;
}

/* The number of column name, checked to be of type typid (or absent). */
static AttrNumber
apikey_column(Oid relid, const char *name, Oid typid, bool required)
{
	AttrNumber	att = get_attnum(relid, name);

	if (att == InvalidAttrNumber)
	{
		if (required)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("table apikey_keys lacks the column \"%s\" that apikey needs", name),
					 errhint("Reinstall or update the extension; do not alter its tables by hand.")));
		return InvalidAttrNumber;
	}
	if (get_atttype(relid, att) != typid)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" of apikey_keys has type %s, not %s", name,
						format_type_be(get_atttype(relid, att)), format_type_be(typid)),
				 errhint("Restore the column's type; do not alter the extension's tables by hand.")));
	return att;
}

static void
apikey_build_layout(Oid nspid)
{
	ApikeyKeysLayout l;
	Relation	rel;

	memset(&l, 0, sizeof(l));
	l.nspid = nspid;
	l.relid = get_relname_relid("apikey_keys", nspid);
	if (!OidIsValid(l.relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table apikey_keys not found in the schema of the apikey extension"),
				 errhint("Reinstall the extension with DROP EXTENSION apikey; CREATE EXTENSION apikey.")));

	l.key_id = apikey_column(l.relid, "key_id", TEXTOID, true);
	l.hash = apikey_column(l.relid, "hash", BYTEAOID, true);
	l.is_active = apikey_column(l.relid, "is_active", BOOLOID, true);
	l.expires_at = apikey_column(l.relid, "expires_at", TIMESTAMPTZOID, true);
	l.revoked_at = apikey_column(l.relid, "revoked_at", TIMESTAMPTZOID, false);
	l.rate_limit = apikey_column(l.relid, "rate_limit", INT4OID, false);
	l.rate_window = apikey_column(l.relid, "rate_window", INTERVALOID, false);
	l.allowed_ips = apikey_column(l.relid, "allowed_ips", CIDRARRAYOID, false);
	l.user_id = apikey_column(l.relid, "user_id", TEXTOID, false);
	l.org_id = apikey_column(l.relid, "org_id", TEXTOID, false);
	l.name = apikey_column(l.relid, "name", TEXTOID, false);
	l.scopes = apikey_column(l.relid, "scopes", TEXTARRAYOID, false);
	l.environment = apikey_column(l.relid, "environment", TEXTOID, false);
	l.metadata = apikey_column(l.relid, "metadata", JSONBOID, false);

	rel = table_open(l.relid, AccessShareLock);
	l.hash_index = apikey_find_unique_index(rel, l.hash);
	l.key_id_index = apikey_find_unique_index(rel, l.key_id);
	table_close(rel, AccessShareLock);
	if (!OidIsValid(l.hash_index) || !OidIsValid(l.key_id_index))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("apikey_keys has no valid unique index on %s",
						OidIsValid(l.hash_index) ? "key_id" : "hash"),
				 errhint("REINDEX TABLE apikey_keys, or reinstall the extension.")));

	apikey_layout = l;
	apikey_layout_valid = true;
}

/* The layout of apikey_keys in schema nspid (the extension's). */
const ApikeyKeysLayout *
apikey_keys_layout(Oid nspid)
{
	if (!apikey_callback_registered)
	{
		CacheRegisterRelcacheCallback(apikey_relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, apikey_namespace_callback, (Datum) 0);
		apikey_callback_registered = true;
	}
	if (!apikey_layout_valid || apikey_layout.nspid != nspid)
		apikey_build_layout(nspid);
	return &apikey_layout;
}

int64
apikey_interval_usec(const Interval *iv)
{
	return iv->time + iv->day * USECS_PER_DAY +
		(int64) iv->month * DAYS_PER_MONTH * USECS_PER_DAY;
}

/* A varlena column of the slot, detoasted into the current context. */
static void *
apikey_slot_varlena(TupleTableSlot *slot, AttrNumber att)
{
	bool		isnull;
	Datum		d;

	if (att == InvalidAttrNumber)
		return NULL;
	d = slot_getattr(slot, att, &isnull);
	return isnull ? NULL : PG_DETOAST_DATUM_COPY(d);
}

static void
apikey_copy_row(const ApikeyKeysLayout *l, TupleTableSlot *slot, bool full,
				ApikeyKeyRow *row)
{
	bool		isnull;
	Datum		d;

	memset(row, 0, sizeof(*row));
	row->key_id = apikey_slot_varlena(slot, l->key_id);
	row->hash = apikey_slot_varlena(slot, l->hash);
	d = slot_getattr(slot, l->is_active, &isnull);
	row->is_active = !isnull && DatumGetBool(d);
	d = slot_getattr(slot, l->expires_at, &isnull);
	row->has_expiry = !isnull;
	row->expires_at = isnull ? 0 : DatumGetTimestampTz(d);
	if (l->revoked_at != InvalidAttrNumber)
	{
		(void) slot_getattr(slot, l->revoked_at, &isnull);
		row->revoked = !isnull;
	}
	if (l->rate_limit != InvalidAttrNumber)
	{
		d = slot_getattr(slot, l->rate_limit, &isnull);
		row->has_rate_limit = !isnull;
		row->rate_limit = isnull ? 0 : DatumGetInt32(d);
	}
	row->window_usec = (int64) apikey_default_rate_window_s * USECS_PER_SEC;
	if (l->rate_window != InvalidAttrNumber)
	{
		d = slot_getattr(slot, l->rate_window, &isnull);
		if (!isnull)
			row->window_usec = apikey_interval_usec(DatumGetIntervalP(d));
	}
	row->allowed_ips = apikey_slot_varlena(slot, l->allowed_ips);
	if (!full)
		return;
	row->owner_id = apikey_slot_varlena(slot, l->org_id != InvalidAttrNumber ?
										l->org_id : l->user_id);
	row->name = apikey_slot_varlena(slot, l->name);
	row->scopes = apikey_slot_varlena(slot, l->scopes);
	row->environment = apikey_slot_varlena(slot, l->environment);
	row->metadata = PointerGetDatum(apikey_slot_varlena(slot, l->metadata));
}

/*
 * Find the row whose indexed column equals value (bytea hash or text
 * key_id) and copy it out.  The latest snapshot, not the transaction's: a
 * revoke is in force the moment it commits, even for a caller inside a
 * long REPEATABLE READ transaction.
 */
static bool
apikey_fetch(Oid nspid, bool by_hash, Datum value, bool full, ApikeyKeyRow *row)
{
	for (int attempt = 0;; attempt++)
	{
		const ApikeyKeysLayout *l = apikey_keys_layout(nspid);
		Relation	rel = try_table_open(l->relid, AccessShareLock);
		Relation	idx;
		Snapshot	snapshot;
		IndexScanDesc scan;
		TupleTableSlot *slot;
		ScanKeyData skey;
		bool		found;

		if (rel == NULL || !apikey_layout_valid)
		{
			/* dropped or altered since the layout was built: look again */
			if (rel != NULL)
				table_close(rel, AccessShareLock);
			apikey_layout_valid = false;
			if (attempt >= 3)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_IN_USE),
						 errmsg("apikey_keys is being altered concurrently"),
						 errhint("Retry the call.")));
			continue;
		}
		idx = index_open(by_hash ? l->hash_index : l->key_id_index, AccessShareLock);
		snapshot = RegisterSnapshot(GetLatestSnapshot());
		slot = table_slot_create(rel, NULL);
		ScanKeyInit(&skey, 1, BTEqualStrategyNumber,
					by_hash ? F_BYTEAEQ : F_TEXTEQ, value);
		/* compare as the index orders (key_id: the column's collation) */
		skey.sk_collation = idx->rd_indcollation[0];
		scan = apikey_index_beginscan(rel, idx, snapshot, 1, 0);
		index_rescan(scan, &skey, 1, NULL, 0);
		found = index_getnext_slot(scan, ForwardScanDirection, slot);
		if (found)
			apikey_copy_row(l, slot, full, row);
		index_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);
		UnregisterSnapshot(snapshot);
		index_close(idx, NoLock);
		table_close(rel, NoLock);
		return found;
	}
}

bool
apikey_fetch_by_hash(Oid nspid, const uint8 hash[APIKEY_HASH_LEN], bool full,
					 ApikeyKeyRow *row)
{
	bytea	   *key = palloc(VARHDRSZ + APIKEY_HASH_LEN);

	SET_VARSIZE(key, VARHDRSZ + APIKEY_HASH_LEN);
	memcpy(VARDATA(key), hash, APIKEY_HASH_LEN);
	return apikey_fetch(nspid, true, PointerGetDatum(key), full, row);
}

bool
apikey_fetch_by_key_id(Oid nspid, const char *key_id, bool full, ApikeyKeyRow *row)
{
	return apikey_fetch(nspid, false, CStringGetTextDatum(key_id), full, row);
}
