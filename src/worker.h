/*
 * worker.h
 *		Shared memory of the launcher and its per-database visits.
 */
#ifndef APIKEY_WORKER_H
#define APIKEY_WORKER_H

extern Size apikey_worker_shmem_size(void);
extern void apikey_worker_shmem_init(void);

#endif							/* APIKEY_WORKER_H */
