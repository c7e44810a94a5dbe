/*
 * catalog.h
 *		Where the extension's tables are and what their columns look like,
 *		cached per backend so that verification costs no catalog lookups.
 */
#ifndef APIKEY_CATALOG_H
#define APIKEY_CATALOG_H

#include "access/attnum.h"

/*
 * Column numbers of apikey_keys.  Looked up by name because version 1.0
 * and 2.0 (and a table migrated between them) place columns differently;
 * a column the installed version lacks is InvalidAttrNumber.
 */
typedef struct ApikeyKeysLayout
{
	Oid			fn_oid;			/* the function this was looked up for */
	Oid			rettype;		/* its result type */
	Oid			nspid;
	Oid			relid;
	Oid			hash_index;
	int			natts;			/* including dropped columns */
	AttrNumber	key_id;
	AttrNumber	hash;
	AttrNumber	is_active;
	AttrNumber	expires_at;
	AttrNumber	revoked_at;		/* 2.0 */
	AttrNumber	rate_limit;
	AttrNumber	rate_window;
	AttrNumber	allowed_ips;
	AttrNumber	user_id;		/* 1.0 */
	AttrNumber	org_id;			/* 2.0 */
	AttrNumber	name;
	AttrNumber	scopes;			/* 2.0 */
	AttrNumber	environment;
	AttrNumber	metadata;		/* 2.0 */
} ApikeyKeysLayout;

extern const ApikeyKeysLayout *apikey_keys_layout(Oid fn_oid);

#endif							/* APIKEY_CATALOG_H */
