/*
 * launcher_state.h
 *		The launcher's shared state, as autoprewarm's AutoPrewarmSharedState:
 *		how backends reach the launcher (its latch), which databases have
 *		counts or alerts waiting, and when each database was last flushed,
 *		folded and swept (for apikey_metrics).  Owned by the launcher
 *		(worker.c); backends only post to it.
 */
#ifndef APIKEY_LAUNCHER_STATE_H
#define APIKEY_LAUNCHER_STATE_H

#include "datatype/timestamp.h"

/* What a visit did last, per database. */
typedef enum ApikeyVisitStep
{
	APIKEY_STEP_FLUSH,
	APIKEY_STEP_FOLD,
	APIKEY_STEP_SWEEP,
	APIKEY_NUM_STEPS
} ApikeyVisitStep;

extern Size apikey_launcher_shmem_size(void);
extern void apikey_launcher_shmem_init(void);

/* Backends. */
extern void apikey_launcher_note_pending(Oid dbid);
extern void apikey_launcher_wake(bool housekeeping);

/* The launcher. */
extern void apikey_launcher_attach(int procno);
extern void apikey_launcher_detach(void);
extern int	apikey_launcher_pending_databases(Oid *dbids, int max, bool *all);
extern void apikey_launcher_mark_clean(Oid dbid);
extern bool apikey_launcher_housekeeping_requested(void);

/* Step times, for monitoring. */
extern void apikey_launcher_step_done(Oid dbid, ApikeyVisitStep step, TimestampTz at);
extern TimestampTz apikey_launcher_step_time(Oid dbid, ApikeyVisitStep step);
extern void apikey_launcher_forget_database(Oid dbid);
extern int	apikey_launcher_step_databases(Oid *dbids, int max);

#endif							/* APIKEY_LAUNCHER_STATE_H */
