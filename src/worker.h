/*
 * worker.h
 *		The launcher and its per-database visits (worker.c).  The launcher's
 *		shared state is in launcher_state.h.
 */
#ifndef APIKEY_WORKER_H
#define APIKEY_WORKER_H

#include "fmgr.h"

extern Size apikey_worker_shmem_size(void);
extern void apikey_worker_shmem_init(void);
extern void apikey_worker_register_launcher(void);

PGDLLEXPORT void apikey_launcher_main(Datum main_arg);
PGDLLEXPORT void apikey_visit_main(Datum main_arg);

#endif							/* APIKEY_WORKER_H */
