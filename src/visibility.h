/*
 * visibility.h
 *		Which keys the calling role may see: the rows of apikey_keys its
 *		privileges and row-level security let it SELECT.
 */
#ifndef APIKEY_VISIBILITY_H
#define APIKEY_VISIBILITY_H

#include "utils/hsearch.h"

typedef struct ApikeyVisibility
{
	bool		all;			/* no filter applies to this role */
	HTAB	   *keys;			/* else: the visible key_ids */
} ApikeyVisibility;

extern void apikey_visibility_precheck(Oid nspid, bool granted_execute);
extern bool apikey_key_visible(Oid nspid, const char *key_id, bool granted_execute);
extern ApikeyVisibility *apikey_visibility(Oid nspid, const char *const *key_ids, int n,
										   bool granted_execute);
extern bool apikey_visible(const ApikeyVisibility *v, const char *key_id);

#endif							/* APIKEY_VISIBILITY_H */
