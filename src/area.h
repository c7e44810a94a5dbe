/*
 * area.h
 *		The dynamic shared memory area that holds apikey's per-key and
 *		per-address tables, and the key by which those tables are looked up.
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

/*
 * Stripes of the pending-counts table.  A flush takes counts in chunks of
 * bounded size, with a transaction (or at least a log row) per chunk, and a
 * dshash walk cannot be resumed once its partition locks are let go; with
 * one table, each chunk walked again from the start (at a million entries,
 * a flush walked the table some ten times, under exclusive partition locks).
 * With stripes, a chunk goes on from the stripe where the last one stopped.
 */
#define APIKEY_PENDING_STRIPES	32

/* The tables that live in the area. */
typedef enum ApikeyTableKind
{
	APIKEY_TABLE_WINDOWS,		/* rate-limit windows (ratelimit.c) */
	APIKEY_TABLE_CLIENTS,		/* failures per client address (failures.c) */
	APIKEY_TABLE_PENDING,		/* counts not yet logged (pending.c): the
								 * first of APIKEY_PENDING_STRIPES tables */
	APIKEY_NUM_TABLES = APIKEY_TABLE_PENDING + APIKEY_PENDING_STRIPES
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
extern bool apikey_area_exhausted(void);
extern bool apikey_area_pressed(void);

#endif							/* APIKEY_AREA_H */
