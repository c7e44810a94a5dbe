/*
 * dump.h
 *		Rate-limit windows and pending counts across a clean restart: the
 *		launcher writes them to pg_stat/apikey.stat when the server shuts
 *		down and reads them back when it starts.
 */
#ifndef APIKEY_DUMP_H
#define APIKEY_DUMP_H

extern Size apikey_dump_shmem_size(void);
extern void apikey_dump_shmem_init(void);
extern void apikey_dump_write(void);
extern void apikey_dump_ensure_loaded(void);
extern void apikey_dump_launcher_start(void);
extern void apikey_dump_forget_counts(void);

#endif							/* APIKEY_DUMP_H */
