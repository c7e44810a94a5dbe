/*
 * launcher_state.c
 *		The launcher's mailbox in shared memory (see launcher_state.h).
 *
 *		Backends put their database on a short "dirty" list when they count
 *		something, once per flush rather than once per verification: each
 *		backend remembers the database it listed and the list's clean
 *		generation, and a flush first takes its database off the list and
 *		moves the generation on, and only then copies the counts, so a count
 *		it misses is always listed again.  The launcher never scans the
 *		counter tables to find work.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#include "launcher_state.h"

#define APIKEY_MAX_DIRTY_DBS	64
#define APIKEY_MAX_STEP_DBS		128
/* A process wakes the launcher for the same reason at most this often. */
#define APIKEY_WAKE_EVERY_USEC	(100 * 1000)

typedef struct ApikeyStepTimes
{
	Oid			dbid;
	TimestampTz at[APIKEY_NUM_STEPS];
} ApikeyStepTimes;

typedef struct ApikeyLauncherShared
{
	slock_t		mutex;			/* guards everything below */
	int			procno;			/* the launcher's, -1 when none runs */
	bool		housekeeping;	/* a table is full: clean up now */
	Oid			dirty_db[APIKEY_MAX_DIRTY_DBS];
	int			ndirty;
	bool		dirty_overflow; /* more databases than slots: all are dirty */
	ApikeyStepTimes steps[APIKEY_MAX_STEP_DBS];
	pg_atomic_uint64 clean_gen;
} ApikeyLauncherShared;

static ApikeyLauncherShared *apikey_ls = NULL;

Size
apikey_launcher_shmem_size(void)
{
	return MAXALIGN(sizeof(ApikeyLauncherShared));
}

void
apikey_launcher_shmem_init(void)
{
	bool		found;

	apikey_ls = ShmemInitStruct("apikey launcher", sizeof(ApikeyLauncherShared), &found);
	if (!found)
	{
		memset(apikey_ls, 0, sizeof(*apikey_ls));
		SpinLockInit(&apikey_ls->mutex);
		apikey_ls->procno = -1;
		pg_atomic_init_u64(&apikey_ls->clean_gen, 0);
	}
}

static void
apikey_set_launcher_latch(int procno)
{
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

/* Put dbid on the dirty list; false if the list was full. */
static bool
apikey_list_dirty(Oid dbid)
{
	bool		listed = false;

	SpinLockAcquire(&apikey_ls->mutex);
	for (int i = 0; i < apikey_ls->ndirty && !listed; i++)
		listed = apikey_ls->dirty_db[i] == dbid;
	if (!listed && apikey_ls->ndirty < APIKEY_MAX_DIRTY_DBS)
	{
		apikey_ls->dirty_db[apikey_ls->ndirty++] = dbid;
		listed = true;
	}
	else if (!listed)
		apikey_ls->dirty_overflow = true;
	SpinLockRelease(&apikey_ls->mutex);
	return listed;
}

/* Tell the launcher that dbid has counts or alerts waiting. */
void
apikey_launcher_note_pending(Oid dbid)
{
	static Oid	listed_db = InvalidOid;
	static uint64 listed_gen = 0;
	uint64		gen = pg_atomic_read_u64(&apikey_ls->clean_gen);

	if (dbid == listed_db && gen == listed_gen)
		return;
	if (apikey_list_dirty(dbid))	/* else: try again next time */
	{
		listed_db = dbid;
		listed_gen = gen;
	}
}

/*
 * Wake the launcher: to flush early (housekeeping = false), or because a
 * table reached its bound and ended windows or past minutes could be
 * removed (housekeeping = true).  At most every 100 ms per process and
 * reason: a table at its bound asks on every verification, and a signal
 * per verification would cost more than the verification.
 */
void
apikey_launcher_wake(bool housekeeping)
{
	static TimestampTz asked[2] = {0, 0};
	TimestampTz now = GetCurrentTimestamp();
	int			procno;

	if (now - asked[housekeeping] < APIKEY_WAKE_EVERY_USEC)
		return;
	asked[housekeeping] = now;
	SpinLockAcquire(&apikey_ls->mutex);
	if (housekeeping)
		apikey_ls->housekeeping = true;
	procno = apikey_ls->procno;
	SpinLockRelease(&apikey_ls->mutex);
	apikey_set_launcher_latch(procno);
}

void
apikey_launcher_attach(int procno)
{
	SpinLockAcquire(&apikey_ls->mutex);
	apikey_ls->procno = procno;
	SpinLockRelease(&apikey_ls->mutex);
}

void
apikey_launcher_detach(void)
{
	apikey_launcher_attach(-1);
}

bool
apikey_launcher_housekeeping_requested(void)
{
	bool		requested;

	SpinLockAcquire(&apikey_ls->mutex);
	requested = apikey_ls->housekeeping;
	apikey_ls->housekeeping = false;
	SpinLockRelease(&apikey_ls->mutex);
	return requested;
}

/*
 * The databases with something waiting.  *all: the list overflowed; treat
 * every database as having something.
 */
int
apikey_launcher_pending_databases(Oid *dbids, int max, bool *all)
{
	int			n;

	SpinLockAcquire(&apikey_ls->mutex);
	n = Min(apikey_ls->ndirty, max);
	memcpy(dbids, apikey_ls->dirty_db, n * sizeof(Oid));
	*all = apikey_ls->dirty_overflow || apikey_ls->ndirty > max;
	apikey_ls->dirty_overflow = false;	/* listed again by new counts */
	SpinLockRelease(&apikey_ls->mutex);
	return n;
}

/* Take dbid off the dirty list: its counts are about to be copied. */
void
apikey_launcher_mark_clean(Oid dbid)
{
	SpinLockAcquire(&apikey_ls->mutex);
	for (int i = 0; i < apikey_ls->ndirty; i++)
	{
		if (apikey_ls->dirty_db[i] == dbid)
		{
			apikey_ls->dirty_db[i] = apikey_ls->dirty_db[--apikey_ls->ndirty];
			break;
		}
	}
	SpinLockRelease(&apikey_ls->mutex);
	pg_atomic_fetch_add_u64(&apikey_ls->clean_gen, 1);
}

/* Record that a visit completed a step in dbid at time at. */
void
apikey_launcher_step_done(Oid dbid, ApikeyVisitStep step, TimestampTz at)
{
	int			free_slot = -1;

	SpinLockAcquire(&apikey_ls->mutex);
	for (int i = 0; i < APIKEY_MAX_STEP_DBS; i++)
	{
		if (apikey_ls->steps[i].dbid == dbid)
		{
			apikey_ls->steps[i].at[step] = at;
			free_slot = -2;
			break;
		}
		if (apikey_ls->steps[i].dbid == InvalidOid && free_slot == -1)
			free_slot = i;
	}
	if (free_slot >= 0)
	{
		apikey_ls->steps[free_slot].dbid = dbid;
		apikey_ls->steps[free_slot].at[step] = at;
	}
	SpinLockRelease(&apikey_ls->mutex);
}

/* When a step last completed in dbid; 0 if never (since start). */
TimestampTz
apikey_launcher_step_time(Oid dbid, ApikeyVisitStep step)
{
	TimestampTz at = 0;

	SpinLockAcquire(&apikey_ls->mutex);
	for (int i = 0; i < APIKEY_MAX_STEP_DBS; i++)
	{
		if (apikey_ls->steps[i].dbid == dbid)
		{
			at = apikey_ls->steps[i].at[step];
			break;
		}
	}
	SpinLockRelease(&apikey_ls->mutex);
	return at;
}

void
apikey_launcher_forget_database(Oid dbid)
{
	apikey_launcher_mark_clean(dbid);
	SpinLockAcquire(&apikey_ls->mutex);
	for (int i = 0; i < APIKEY_MAX_STEP_DBS; i++)
	{
		if (apikey_ls->steps[i].dbid == dbid)
			memset(&apikey_ls->steps[i], 0, sizeof(ApikeyStepTimes));
	}
	SpinLockRelease(&apikey_ls->mutex);
}

/* The databases with recorded step times, for monitoring; returns how many. */
int
apikey_launcher_step_databases(Oid *dbids, int max)
{
	int			n = 0;

	SpinLockAcquire(&apikey_ls->mutex);
	for (int i = 0; i < APIKEY_MAX_STEP_DBS && n < max; i++)
	{
		if (apikey_ls->steps[i].dbid != InvalidOid)
			dbids[n++] = apikey_ls->steps[i].dbid;
	}
	SpinLockRelease(&apikey_ls->mutex);
	return n;
}
