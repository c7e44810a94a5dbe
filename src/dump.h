/*
 * dump.h
 *		Rate-limit windows and pending counts across a clean restart: the
 *		launcher writes them to pg_stat/apikey.stat when the server shuts
 *		down and reads them back when it starts.
 */
#ifndef APIKEY_DUMP_H
#define APIKEY_DUMP_H

extern void apikey_dump_write(void);
extern void apikey_dump_load(void);

#endif							/* APIKEY_DUMP_H */
