/*
 * definer.c
 *		Everything apikey runs with its owner's rights, in one file: the
 *		audit trigger, the sweep, and the schema check of the install
 *		scripts.  From 1.1 and 2.1 on these are the only SECURITY DEFINER
 *		functions besides apikey_flush, and they are written in C so that no
 *		PL/pgSQL body resolves a type or a function through a search_path:
 *		every statement they run goes through safesql.c (schema-qualified,
 *		search_path pinned to "pg_catalog, pg_temp").
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "apikey.h"
#include "catalog.h"
#include "compat.h"
#include "definer.h"
#include "safesql.h"

PG_FUNCTION_INFO_V1(apikey_audit_2_1);
PG_FUNCTION_INFO_V1(apikey_sweep_batch_1_1);
PG_FUNCTION_INFO_V1(apikey_sweep_1_1);
PG_FUNCTION_INFO_V1(apikey_check_schema);

/* ---- the audit trigger --------------------------------------------------- */

/*
 * Is this INSERT part of restoring a dump (a superuser's COPY into
 * apikey_keys, as pg_dump writes it)?  The dump carries the keys' events
 * too, so recording the rows again would duplicate the trail.  Only a COPY
 * *into apikey_keys* counts: a COPY (SELECT apikey_create(...)) TO STDOUT
 * is audited like any other creation.
 */
static bool
apikey_is_restore(void)
{
	Datum		matches;

	if (debug_query_string == NULL || !superuser_arg(GetOuterUserId()))
		return false;
	matches = DirectFunctionCall2Coll(texticregexeq, C_COLLATION_OID,
									  CStringGetTextDatum(debug_query_string),
									  CStringGetTextDatum("^\\s*copy\\s+((\\w+|\"[^\"]+\")\\s*\\.\\s*)?"
														  "(apikey_keys|\"apikey_keys\")\\s*"
														  "(\\([^)]*\\))?\\s*from\\s"));
	return DatumGetBool(matches);
}

/* The details of each event, as SQL over $1 = OLD (or NEW) and $2 = NEW. */
static const char *const apikey_audit_details_created =
"SELECT pg_catalog.jsonb_build_object('name', ($2).name, 'hint', ($2).hint,"
" 'scopes', ($2).scopes, 'environment', ($2).environment,"
" 'expires_at', ($2).expires_at, 'rate_limit', ($2).rate_limit)"
" OPERATOR(pg_catalog.||) CASE WHEN ($2).rotated_from IS NULL THEN '{}'::pg_catalog.jsonb"
" ELSE pg_catalog.jsonb_build_object('rotated_from', ($2).rotated_from) END";
static const char *const apikey_audit_details_deleted =
"SELECT pg_catalog.jsonb_build_object('name', ($1).name, 'hint', ($1).hint)";
static const char *const apikey_audit_details_revoked =
"SELECT pg_catalog.jsonb_build_object('reason', ($2).revoked_reason)";
static const char *const apikey_audit_details_rotated =
"SELECT pg_catalog.jsonb_build_object('replaced_by', ($2).replaced_by, 'expires_at', ($2).expires_at)";
static const char *const apikey_audit_details_expired =
"SELECT pg_catalog.jsonb_build_object('expires_at', ($2).expires_at)";
/*
 * The changed columns, old and new (the hash only as "changed"), but for
 * those in $3: the counters, which are not audited, and the columns that an
 * event of another kind, recorded for the same change, already describes.
 */
static const char *const apikey_audit_details_updated =
"SELECT pg_catalog.jsonb_object_agg(n.key,"
"   CASE WHEN n.key OPERATOR(pg_catalog.=) 'hash' THEN '\"changed\"'::pg_catalog.jsonb"
"        ELSE pg_catalog.jsonb_build_object('old', pg_catalog.to_jsonb($1) OPERATOR(pg_catalog.->) n.key,"
"                                           'new', n.value) END)"
"  FROM pg_catalog.jsonb_each(pg_catalog.to_jsonb($2)) n"
" WHERE n.key OPERATOR(pg_catalog.<>) ALL ($3)"
"   AND n.value IS DISTINCT FROM (pg_catalog.to_jsonb($1) OPERATOR(pg_catalog.->) n.key)";

/* What apikey_audit_details_updated leaves out after each kind of event. */
#define APIKEY_AUDIT_COUNTERS	"usage_count", "last_used_at"
static const char *const apikey_audit_skip_updated[] = {APIKEY_AUDIT_COUNTERS, NULL};
static const char *const apikey_audit_skip_revoked[] =
{APIKEY_AUDIT_COUNTERS, "is_active", "revoked_at", "revoked_reason", NULL};
static const char *const apikey_audit_skip_rotated[] =
{APIKEY_AUDIT_COUNTERS, "replaced_by", "expires_at", NULL};
/* a rotation that also lifts or extends the expiry: that is an update too */
static const char *const apikey_audit_skip_rotated_later[] =
{APIKEY_AUDIT_COUNTERS, "replaced_by", NULL};
static const char *const apikey_audit_skip_expired[] = {APIKEY_AUDIT_COUNTERS, "is_active", "expires_at", NULL};

/*
 * apikey_audit() trigger, AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW and
 * AFTER TRUNCATE FOR EACH STATEMENT on apikey_keys: every change becomes an
 * event in apikey_events, named from the change itself so that nothing a
 * caller sets can relabel it.  SECURITY DEFINER: writers of keys need (and
 * get) no right to write events.
 */
/*
 * A key_id is at most APIKEY_KEY_ID_MAXLEN *bytes*: shared memory keeps it
 * in a field of that size.  The table's CHECK counts characters, so a key_id
 * of 64 multibyte characters would pass it and be cut there (mid-character,
 * and two long ids sharing their first 64 bytes would share one rate
 * window).  The trigger sees every INSERT and every UPDATE OF key_id, on
 * every installed 2.x version, so it refuses them here.
 */
static void
apikey_check_key_id_bytes(Relation rel, HeapTuple tup)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			attno = SPI_fnumber(desc, "key_id");
	bool		isnull;
	Datum		d;

	if (attno <= 0)
		elog(ERROR, "apikey_audit: apikey_keys has no key_id column");
	d = heap_getattr(tup, attno, desc, &isnull);
	if (!isnull && VARSIZE_ANY_EXHDR(DatumGetPointer(d)) > APIKEY_KEY_ID_MAXLEN)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("key_id is longer than %d bytes", APIKEY_KEY_ID_MAXLEN),
				 errdetail("It is %zu bytes long in the server's encoding.",
						   (size_t) VARSIZE_ANY_EXHDR(DatumGetPointer(d))),
				 errhint("Use key_ids of at most %d bytes; apikey_create makes ASCII ones.",
						 APIKEY_KEY_ID_MAXLEN)));
}

/* The text[] of the names in a NULL-terminated list. */
static Datum
apikey_audit_name_array(const char *const *names)
{
	Datum		elems[16];
	int			n = 0;

	for (; names[n] != NULL; n++)
	{
		Assert(n < lengthof(elems));
		elems[n] = CStringGetTextDatum(names[n]);
	}
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * Run a details query over $1 the old row, $2 the new one (each null when
 * there is none) and $3 the columns an "updated" event leaves out.  Inside
 * SPI; the result lives in the SPI procedure's context.
 */
static Datum
apikey_audit_details(const char *sql, Oid rowtype, Datum old_row, Datum new_row,
					 const char *const *skip, bool *isnull)
{
	Oid			argtypes[3] = {rowtype, rowtype, TEXTARRAYOID};
	Datum		args[3] = {old_row, new_row, apikey_audit_name_array(skip)};
	char		nulls[3] = {old_row == (Datum) 0 ? 'n' : ' ',
	new_row == (Datum) 0 ? 'n' : ' ', ' '};
	Datum		details;

	if (SPI_execute_with_args(sql, 3, argtypes, args, nulls, true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "apikey_audit: could not build the event details");
	details = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull);
	return *isnull ? (Datum) 0 : datumCopy(details, false, -1);
}

/* Insert one event about row (details null: an empty object).  Inside SPI. */
static void
apikey_audit_record(Relation rel, Datum row, const char *event, Datum details)
{
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	Oid			argtypes[4] = {rel->rd_rel->reltype, TEXTOID, TEXTOID, JSONBOID};

	args[0] = row;
	nulls[0] = row == (Datum) 0 ? 'n' : ' ';
	args[1] = CStringGetTextDatum(event);
	args[2] = CStringGetTextDatum(GetUserNameFromId(GetOuterUserId(), false));
	args[3] = details != (Datum) 0 ? details :
		DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
	if (SPI_execute_with_args(psprintf("INSERT INTO %s (org_id, key_id, event, actor, details)"
									   " VALUES (($1).org_id, ($1).key_id, $2, $3, $4)",
									   apikey_qualified(RelationGetNamespace(rel), "apikey_events")),
							  4, argtypes, args, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "apikey_audit: could not record the event");
}

Datum
apikey_audit_2_1(PG_FUNCTION_ARGS)
{
	TriggerData *trig = (TriggerData *) fcinfo->context;
	Relation	rel;
	HeapTuple	old_tup = NULL;
	HeapTuple	new_tup = NULL;
	const char *event;
	const char *details_sql = NULL;

	/*
	 * An UPDATE that revokes, rotates or expires a key is recorded as that
	 * event, whose details describe only these columns: whatever else the
	 * same UPDATE changed (the hash, the scopes, the allowlist ...) is an
	 * "updated" event beside it, or it would go unrecorded.
	 */
	const char *const *also_updated = NULL;
	Datum		old_row = (Datum) 0;
	Datum		new_row = (Datum) 0;
	Datum		details = (Datum) 0;
	bool		details_null = true;
	int			nestlevel;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_AFTER(trig->tg_event))
		elog(ERROR, "apikey_audit must be called as an AFTER trigger");
	rel = trig->tg_relation;

	if (TRIGGER_FIRED_BY_TRUNCATE(trig->tg_event))
		event = "truncated";
	else if (TRIGGER_FIRED_BY_INSERT(trig->tg_event))
	{
		if (apikey_is_restore())
			return PointerGetDatum(NULL);
		new_tup = trig->tg_trigtuple;
		apikey_check_key_id_bytes(rel, new_tup);
		event = "created";
		details_sql = apikey_audit_details_created;
	}
	else if (TRIGGER_FIRED_BY_DELETE(trig->tg_event))
	{
		old_tup = trig->tg_trigtuple;
		event = "deleted";
		details_sql = apikey_audit_details_deleted;
	}
	else
	{
		TupleDesc	desc = RelationGetDescr(rel);
		int			revoked_at = SPI_fnumber(desc, "revoked_at");
		int			replaced_by = SPI_fnumber(desc, "replaced_by");
		int			is_active = SPI_fnumber(desc, "is_active");
		int			expires_at = SPI_fnumber(desc, "expires_at");
		bool		isnull;
		TimestampTz expiry;

		old_tup = trig->tg_trigtuple;
		new_tup = trig->tg_newtuple;
		apikey_check_key_id_bytes(rel, new_tup);
		if (revoked_at <= 0 || replaced_by <= 0 || is_active <= 0 || expires_at <= 0)
			elog(ERROR, "apikey_audit: apikey_keys lacks the 2.x columns");
		expiry = DatumGetTimestampTz(heap_getattr(new_tup, expires_at, desc, &isnull));
		if (isnull)
			expiry = DT_NOEND;

		if (heap_attisnull(old_tup, revoked_at, desc) && !heap_attisnull(new_tup, revoked_at, desc))
		{
			event = "revoked";
			details_sql = apikey_audit_details_revoked;
			also_updated = apikey_audit_skip_revoked;
		}
		else if (heap_attisnull(old_tup, replaced_by, desc) &&
				 !heap_attisnull(new_tup, replaced_by, desc))
		{
			TimestampTz old_expiry;

			old_expiry = DatumGetTimestampTz(heap_getattr(old_tup, expires_at, desc, &isnull));
			if (isnull)
				old_expiry = DT_NOEND;
			event = "rotated";
			details_sql = apikey_audit_details_rotated;
			/* apikey_rotate only ever brings the expiry forward */
			also_updated = expiry > old_expiry ? apikey_audit_skip_rotated_later :
				apikey_audit_skip_rotated;
		}
		else if (DatumGetBool(heap_getattr(old_tup, is_active, desc, &isnull)) &&
				 !DatumGetBool(heap_getattr(new_tup, is_active, desc, &isnull)) &&
				 expiry <= GetCurrentTransactionStartTimestamp())
		{
			event = "expired";
			details_sql = apikey_audit_details_expired;
			also_updated = apikey_audit_skip_expired;
		}
		else
		{
			event = "updated";
			details_sql = apikey_audit_details_updated;
		}
	}

	SPI_connect();
	nestlevel = apikey_safesql_begin();
	if (old_tup != NULL)
		old_row = heap_copy_tuple_as_datum(old_tup, RelationGetDescr(rel));
	if (new_tup != NULL)
		new_row = heap_copy_tuple_as_datum(new_tup, RelationGetDescr(rel));
	if (details_sql != NULL)
	{
		details = apikey_audit_details(details_sql, rel->rd_rel->reltype, old_row, new_row,
									   apikey_audit_skip_updated, &details_null);
		if (strcmp(event, "updated") == 0 && details_null)
		{
			/* only counters changed (or nothing): not an event */
			apikey_safesql_end(nestlevel);
			SPI_finish();
			return PointerGetDatum(NULL);
		}
	}
	apikey_audit_record(rel, new_row != (Datum) 0 ? new_row : old_row, event, details);
	if (also_updated != NULL)
	{
		details = apikey_audit_details(apikey_audit_details_updated, rel->rd_rel->reltype,
									   old_row, new_row, also_updated, &details_null);
		if (!details_null)
			apikey_audit_record(rel, new_row, "updated", details);
	}
	apikey_safesql_end(nestlevel);
	SPI_finish();
	return PointerGetDatum(NULL);
}

/* ---- the sweep ------------------------------------------------------------ */

/*
 * One batch of sweeping in schema nspid: up to batch keys past expires_at
 * become inactive (2.x, audited as 'expired'; 1.x has no audit trail and
 * leaves them to verification, which answers EXPIRED), and up to batch
 * usage buckets and alerts older than apikey.usage_retention are deleted.
 */
void
apikey_sweep_batch_internal(Oid nspid, int batch, int64 *expired, int64 *purged)
{
	const ApikeyKeysLayout *l = apikey_keys_layout(nspid);
	Datum		args[2];
	Oid			types[2] = {INT4OID, INTERVALOID};
	int			nestlevel;
	Interval   *retention = palloc0(sizeof(Interval));

	retention->time = (int64) apikey_usage_retention_min * USECS_PER_MINUTE;
	args[0] = Int32GetDatum(batch);
	args[1] = IntervalPGetDatum(retention);
	*expired = 0;
	*purged = 0;

	SPI_connect();
	nestlevel = apikey_safesql_begin();
	if (l->revoked_at != InvalidAttrNumber)
	{
		const char *keys = apikey_qualified(nspid, "apikey_keys");

		if (SPI_execute_with_args(psprintf("UPDATE %s k SET is_active = false"
										   " WHERE k.key_id OPERATOR(pg_catalog.=) ANY (ARRAY("
										   "  SELECT x.key_id FROM %s x"
										   "   WHERE x.is_active AND x.expires_at IS NOT NULL"
										   "     AND x.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now()"
										   "   ORDER BY x.expires_at LIMIT $1"
										   "   FOR UPDATE SKIP LOCKED))", keys, keys),
								  1, types, args, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "apikey sweep: could not expire keys");
		*expired = SPI_processed;
	}
	{
		const char *usage = apikey_qualified(nspid, "apikey_usage");

		if (SPI_execute_with_args(psprintf("DELETE FROM %s u WHERE u.ctid OPERATOR(pg_catalog.=) ANY (ARRAY("
										   "  SELECT x.ctid FROM %s x"
										   "   WHERE x.bucket OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $2)"
										   "   LIMIT $1 FOR UPDATE SKIP LOCKED))", usage, usage),
								  2, types, args, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "apikey sweep: could not purge usage");
		*purged = SPI_processed;
	}
	if (apikey_relation_exists(nspid, "apikey_alerts"))
	{
		const char *alerts = apikey_qualified(nspid, "apikey_alerts");

		if (SPI_execute_with_args(psprintf("DELETE FROM %s a WHERE a.alert_id OPERATOR(pg_catalog.=) ANY (ARRAY("
										   "  SELECT x.alert_id FROM %s x"
										   "   WHERE x.at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $2)"
										   "   LIMIT $1 FOR UPDATE SKIP LOCKED))", alerts, alerts),
								  2, types, args, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "apikey sweep: could not purge alerts");
		*purged = Max(*purged, (int64) SPI_processed);
	}
	apikey_safesql_end(nestlevel);
	SPI_finish();
}

static void
apikey_check_batch_size(int32 batch)
{
	if (batch < 1 || batch > 100000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must be between 1 and 100000, not %d", batch)));
}

/*
 * apikey_sweep_batch(batch_size integer)
 *		returns table(expired bigint, usage_purged bigint)
 */
Datum
apikey_sweep_batch_1_1(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	int64		expired;
	int64		purged;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("batch_size must not be null")));
	apikey_check_batch_size(PG_GETARG_INT32(0));
	InitMaterializedSRF(fcinfo, 0);
	apikey_sweep_batch_internal(apikey_fn_namespace(fcinfo), PG_GETARG_INT32(0),
								&expired, &purged);
	values[0] = Int64GetDatum(expired);
	values[1] = Int64GetDatum(purged);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

/*
 * apikey_sweep() returns table(expired bigint, usage_purged bigint)
 * What the workers run, in the caller's transaction: batches until one is
 * not full.  (The workers commit after each batch.)
 */
Datum
apikey_sweep_1_1(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			nspid = apikey_fn_namespace(fcinfo);
	Datum		values[2];
	bool		nulls[2] = {false, false};
	int64		expired = 0;
	int64		purged = 0;

	InitMaterializedSRF(fcinfo, 0);
	for (;;)
	{
		int64		e,
					p;

		CHECK_FOR_INTERRUPTS();
		apikey_sweep_batch_internal(nspid, APIKEY_SWEEP_BATCH, &e, &p);
		expired += e;
		purged += p;
		if (e < APIKEY_SWEEP_BATCH && p < APIKEY_SWEEP_BATCH)
			break;
	}
	values[0] = Int64GetDatum(expired);
	values[1] = Int64GetDatum(purged);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

/* ---- the schema check of the install and update scripts ------------------ */

/*
 * apikey_check_schema([refuse boolean]) returns void, called by the install
 * and update scripts.  If roles other than the schema's owner and
 * superusers may create objects in the extension's schema: when the
 * extension is being created, or refuse is true (the migration scripts,
 * which run PL/pgSQL with the updating superuser's rights), refuse; when an
 * existing installation is updated to 1.1 or 2.1, warn (everything that
 * runs with elevated rights is schema-qualified from these versions on, so
 * planted objects are harmless, but the schema should still be fixed).
 */
Datum
apikey_check_schema(PG_FUNCTION_ARGS)
{
	Oid			nspid = apikey_fn_namespace(fcinfo);
	char	   *who = NULL;
	char	   *nspname;
	Relation	rel;
	bool		creating;

	if (!apikey_schema_unsafe(nspid, &who))
		PG_RETURN_VOID();
	nspname = get_namespace_name(nspid);

	/* the table created in this transaction: CREATE EXTENSION, not UPDATE */
	rel = table_open(apikey_keys_layout(nspid)->relid, AccessShareLock);
	creating = rel->rd_createSubid != InvalidSubTransactionId;
	table_close(rel, AccessShareLock);
	if (PG_NARGS() > 0 && !PG_ARGISNULL(0) && PG_GETARG_BOOL(0))
		creating = true;

	ereport(creating ? ERROR : WARNING,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg(creating ?
					"cannot install or migrate extension apikey in schema \"%s\": %s may create objects in it" :
					"schema \"%s\" of extension apikey is writable by %s",
					nspname, who),
			 errdetail("A role that can create objects in the extension's schema could plant functions "
					   "or types that code running with the extension owner's rights picks up."),
			 errhint("REVOKE CREATE ON SCHEMA %s FROM %s; or create the extension in a schema "
					 "only its owner can write to (CREATE SCHEMA apikey; CREATE EXTENSION apikey SCHEMA apikey;).",
					 quote_identifier(nspname), who)));
	PG_RETURN_VOID();
}
