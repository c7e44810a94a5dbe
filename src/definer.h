/*
 * definer.h
 *		What apikey runs with its owner's rights (see definer.c).
 */
#ifndef APIKEY_DEFINER_H
#define APIKEY_DEFINER_H

/* Rows per sweep transaction (the workers commit after each batch). */
#define APIKEY_SWEEP_BATCH		1000

extern void apikey_sweep_batch_internal(Oid nspid, int batch, int64 *expired,
										int64 *purged);

#endif							/* APIKEY_DEFINER_H */
