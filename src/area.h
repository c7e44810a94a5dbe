/*
 * area.h
 *		The dynamic shared memory area that holds apikey's per-key and
 *		per-address tables and the sessions' journals of pending counts, and
 *		the key by which those tables are looked up.
 *
 *		As PostgreSQL's own cumulative statistics do (pgstat_shmem.c), the
 *		area starts in a small piece of plain shared memory and grows in
 *		dynamic shared memory segments as entries are added, so that memory
 *		follows use instead of being reserved at start.
 */
#ifndef APIKEY_AREA_H
#define APIKEY_AREA_H

#include "lib/dshash.h"
#include "utils/dsa.h"

#include "apikey.h"

/* The tables that live in the area. */
typedef enum ApikeyTableKind
{
	APIKEY_TABLE_WINDOWS,		/* rate-limit windows (ratelimit.c) */
	APIKEY_TABLE_CLIENTS,		/* failures per client address (failures.c) */
	APIKEY_NUM_TABLES
} ApikeyTableKind;

/*
 * Which key, in which database.  Zero-padded so that the whole struct can be
 * hashed and compared as bytes (dshash_memhash / dshash_memcmp).
 */
typedef struct ApikeyKeyRef
{
	Oid			dbid;
	char		key_id[APIKEY_KEY_ID_MAXLEN + 1];
} ApikeyKeyRef;

extern void apikey_keyref_init(ApikeyKeyRef *ref, Oid dbid, const char *key_id);

extern Size apikey_area_shmem_size(void);
extern void apikey_area_shmem_init(void);
extern bool apikey_area_ready(void);
extern void apikey_require_preload(void);
extern void apikey_area_register_table(ApikeyTableKind kind,
									   const dshash_parameters *params);
extern dshash_table *apikey_area_table(ApikeyTableKind kind);
extern int	apikey_area_tranche(void);
extern Size apikey_area_bytes(void);

/* dshash puts a 16-byte header (next item, hash) before each entry. */
#define APIKEY_DSHASH_ITEM_HEADER	16
extern Size apikey_area_entry_bytes(Size entry_size);

/* Insert without ever raising an ERROR for lack of shared memory. */
typedef void (*ApikeyEntryInit) (void *entry, void *arg);
extern bool apikey_area_insert(ApikeyTableKind kind, const void *key,
							   ApikeyEntryInit init, void *arg);
extern dsa_area *apikey_area_dsa(void);
extern dsa_pointer apikey_area_allocate(Size size);
extern bool apikey_area_exhausted(void);
extern bool apikey_area_pressed(void);

#endif							/* APIKEY_AREA_H */
