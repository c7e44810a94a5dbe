/*
 * catalog.h
 *		Where the extension's key table is, what its columns are, and the
 *		direct index lookups of one key row (by token hash for verification,
 *		by key_id for apikey_record and apikey_rate_limit_status).  The
 *		layout is cached per backend, so a lookup costs no catalog access.
 */
#ifndef APIKEY_CATALOG_H
#define APIKEY_CATALOG_H

#include "access/attnum.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "utils/array.h"

#include "token.h"

/*
 * Column numbers of apikey_keys.  Looked up by name because 1.x and 2.x
 * (and a table migrated between them) place columns differently; a column
 * the installed version lacks is InvalidAttrNumber.
 */
typedef struct ApikeyKeysLayout
{
	Oid			nspid;
	Oid			relid;
	Oid			hash_index;
	Oid			key_id_index;
	AttrNumber	key_id;
	AttrNumber	hash;
	AttrNumber	is_active;
	AttrNumber	expires_at;
	AttrNumber	revoked_at;		/* 2.x */
	AttrNumber	rate_limit;
	AttrNumber	rate_window;
	AttrNumber	allowed_ips;
	AttrNumber	user_id;		/* 1.x */
	AttrNumber	org_id;			/* 2.x */
	AttrNumber	name;
	AttrNumber	scopes;			/* 2.x */
	AttrNumber	environment;
	AttrNumber	metadata;		/* 2.x */
} ApikeyKeysLayout;

/*
 * What a lookup copies out of one key row, in the caller's memory context
 * (detoasted).  Pointers are NULL for SQL NULLs and for columns the
 * installed version lacks, or that the caller did not ask for.
 */
typedef struct ApikeyKeyRow
{
	text	   *key_id;
	bytea	   *hash;
	bool		is_active;
	bool		revoked;
	bool		has_expiry;
	TimestampTz expires_at;
	bool		has_rate_limit;
	int32		rate_limit;
	int64		window_usec;	/* rate_window, or the default window */
	ArrayType  *allowed_ips;
	/* only with full = true: */
	text	   *owner_id;		/* org_id in 2.x, user_id in 1.x */
	text	   *name;
	ArrayType  *scopes;
	text	   *environment;
	Datum		metadata;		/* jsonb, 0 if none */
} ApikeyKeyRow;

extern Oid	apikey_fn_namespace(FunctionCallInfo fcinfo);
extern Oid	apikey_fn_rettype(FunctionCallInfo fcinfo);
extern const ApikeyKeysLayout *apikey_keys_layout(Oid nspid);
extern bool apikey_fetch_by_hash(Oid nspid, const uint8 hash[APIKEY_HASH_LEN],
								 bool full, ApikeyKeyRow *row);
extern bool apikey_fetch_by_key_id(Oid nspid, const char *key_id, bool full,
								   ApikeyKeyRow *row);
extern int64 apikey_interval_usec(const Interval *iv);

#endif							/* APIKEY_CATALOG_H */
