/*
 * worker.c
 *		The launcher and its per-database visits.
 *
 *		As in TimescaleDB's loader (and unlike pg_cron's single
 *		cron.database_name), one launcher, connected to no database, reads
 *		pg_database and sends a short-lived "visit" worker into each database
 *		that needs one: every apikey.flush_interval into databases with
 *		pending counts or alerts (logging them), every apikey.fold_interval to
 *		fold the usage log into the tables, and every apikey.sweep_interval
 *		into every database to sweep expired keys and old usage.  The
 *		launcher also removes ended rate-limit windows and past minutes'
 *		failure counts from shared memory, and at a clean shutdown saves
 *		windows and pending counts to disk (dump.c).
 *
 *		Short visits are what let the workers never block DROP DATABASE, DROP
 *		EXTENSION or shutdown, and cope with the extension appearing or
 *		disappearing: no worker holds a connection or a lock between visits.
 *		Inside a visit, every step gives way to users.  It takes the locks of
 *		every table it will touch up front and without waiting: if any is
 *		taken, the step is left for the next visit rather than queued behind
 *		(or in a cycle with) a user's DDL; so is a fold while a user's
 *		apikey_flush() holds the schema's fold lock.  Row locks are skipped (SKIP
 *		LOCKED) where the work can wait, and any other lock wait ends after
 *		lock_timeout, set below half the server's deadlock_timeout: a user
 *		transaction that closes a cycle with a visit finds the visit gone
 *		before its own deadlock check runs.  (PostgreSQL checks for a
 *		deadlock once per wait, so a short deadlock_timeout in the visit
 *		alone is not enough: a cycle closed after the visit's check is
 *		found by the user's, and the user's statement would be cancelled.)
 *		Each step runs in its own transaction and a failed step does not stop
 *		the others: a fold blocked by a locked row never stops counts from
 *		being logged.  Visits never run during recovery: the launcher starts
 *		once recovery has finished.
 *
 *		A visit that fails is retried with exponential back-off per database
 *		(and per step: logging and folding back off separately); the
 *		launcher itself is restarted by the postmaster if it dies.
 */
#include "postgres.h"

#include <sys/resource.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "apikey.h"
#include "area.h"
#include "compat.h"
#include "definer.h"
#include "dump.h"
#include "failures.h"
#include "flush.h"
#include "launcher_state.h"
#include "pending.h"
#include "ratelimit.h"
#include "safesql.h"
#include "worker.h"

/* Visits running at once: small, so the workers never crowd out others. */
#define APIKEY_MAX_VISITS		2
/* Fold the usage log early once it holds this many times max_tracked_keys. */
#define APIKEY_LOG_FOLD_FACTOR	4
/* Niceness of folding and sweeping: below backends. */
#define APIKEY_VISIT_NICE		10
/* Longest back-off after repeated failures in one database. */
#define APIKEY_MAX_BACKOFF_MS	(5 * 60 * 1000)
/* How often the launcher cleans shared memory (more often when pressed). */
#define APIKEY_HOUSEKEEP_MS		10000
#define APIKEY_HOUSEKEEP_PRESSED_MS	1000
/* How long a clean shutdown waits for sessions before saving counters. */
#define APIKEY_SHUTDOWN_WAIT_MS 5000

/* What a visit is asked to do (bgw_extra), beyond logging pending counts. */
#define APIKEY_DO_FOLD			0x01
#define APIKEY_DO_SWEEP			0x02
/* In deferred[]: the fold was left because another session was folding. */
#define APIKEY_FOLD_BUSY		0x04

/* How a visit ended, reported in its slot. */
typedef enum ApikeyVisitOutcome
{
	APIKEY_VISIT_UNKNOWN = 0,	/* still running, or died */
	APIKEY_VISIT_DONE,
	APIKEY_VISIT_NOT_INSTALLED,
	APIKEY_VISIT_UNSAFE,		/* schema writable by others: nothing run */
	APIKEY_VISIT_LOG_FAILED		/* logging failed (folding not tried) */
} ApikeyVisitOutcome;

typedef struct ApikeyWorkerShared
{
	int			outcome[APIKEY_MAX_VISITS];
	/* APIKEY_DO_* steps asked for but not done (failed or gave way) */
	int			deferred[APIKEY_MAX_VISITS];
} ApikeyWorkerShared;

typedef struct ApikeyVisitArgs
{
	int			slot;
	int			what;
} ApikeyVisitArgs;

/* The launcher's private view of one database. */
typedef struct ApikeyDatabase
{
	Oid			dboid;
	bool		seen;			/* still in pg_database */
	bool		installed;		/* extension found on the last visit */
	TimestampTz next_flush;
	TimestampTz next_fold;
	TimestampTz next_sweep;
	int			failures;		/* consecutive failed visits */
	int			fold_failures;	/* consecutive folds not done */
	int			sweep_failures; /* consecutive sweeps not done */
} ApikeyDatabase;

typedef struct ApikeyVisitSlot
{
	BackgroundWorkerHandle *handle;
	Oid			dboid;
	int			what;
} ApikeyVisitSlot;

static ApikeyWorkerShared *apikey_worker_shared = NULL;

Size
apikey_worker_shmem_size(void)
{
	return MAXALIGN(sizeof(ApikeyWorkerShared));
}

void
apikey_worker_shmem_init(void)
{
	bool		found;

	apikey_worker_shared = ShmemInitStruct("apikey workers",
										   sizeof(ApikeyWorkerShared), &found);
	if (!found)
		memset(apikey_worker_shared, 0, sizeof(ApikeyWorkerShared));
}

void
apikey_worker_register_launcher(void)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 10;	/* seconds; after a crash or an error */
	strlcpy(bgw.bgw_library_name, "apikey", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "apikey_launcher_main", BGW_MAXLEN);
	strlcpy(bgw.bgw_name, "apikey launcher", BGW_MAXLEN);
	strlcpy(bgw.bgw_type, "apikey launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&bgw);
}

/* ---- the launcher -------------------------------------------------------- */

static void
apikey_launcher_on_exit(int code, Datum arg)
{
	apikey_launcher_detach();
}

/* Refresh the list of databases that can be visited. */
static void
apikey_scan_databases(ApikeyDatabase **dbs, int *ndbs, int *cap,
					  Oid *existing, int *nexisting, int max_existing)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	TimestampTz now = GetCurrentTimestamp();

	*nexisting = 0;
	for (int i = 0; i < *ndbs; i++)
		(*dbs)[i].seen = false;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		int			i;

		if (*nexisting < max_existing)
			existing[(*nexisting)++] = db->oid;
		/* templates are copied, not used: never write into them */
		if (!db->datallowconn || db->datistemplate)
			continue;
		for (i = 0; i < *ndbs; i++)
			if ((*dbs)[i].dboid == db->oid)
				break;
		if (i == *ndbs)
		{
			if (*ndbs == *cap)
			{
				*cap *= 2;
				*dbs = repalloc(*dbs, sizeof(ApikeyDatabase) * *cap);
			}
			memset(&(*dbs)[i], 0, sizeof(ApikeyDatabase));
			(*dbs)[i].dboid = db->oid;
			(*dbs)[i].next_flush = now;
			(*dbs)[i].next_fold = now;
			(*dbs)[i].next_sweep = now;
			(*ndbs)++;
		}
		(*dbs)[i].seen = true;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	PopActiveSnapshot();
	CommitTransactionCommand();

	/* forget dropped databases */
	for (int i = 0; i < *ndbs;)
	{
		if (!(*dbs)[i].seen)
			(*dbs)[i] = (*dbs)[--(*ndbs)];
		else
			i++;
	}
}

/* Shared memory of a database whose counts can never be written. */
static void
apikey_forget_database(Oid dbid)
{
	apikey_pending_forget_database(dbid);
	apikey_ratelimit_forget_database(dbid);
	apikey_failures_forget_database(dbid);
	apikey_launcher_forget_database(dbid);
}

static bool
apikey_oid_in(Oid oid, const Oid *oids, int n)
{
	for (int i = 0; i < n; i++)
		if (oids[i] == oid)
			return true;
	return false;
}

/* Forget the databases of either list (once each) that are not among existing. */
static void
apikey_forget_dropped(const Oid *pending, int npending, const Oid *held, int nheld,
					  const Oid *existing, int nexisting)
{
	for (int d = 0; d < npending; d++)
		if (!apikey_oid_in(pending[d], existing, nexisting))
			apikey_forget_database(pending[d]);
	for (int d = 0; d < nheld; d++)
		if (!apikey_oid_in(held[d], existing, nexisting) &&
			!apikey_oid_in(held[d], pending, npending))
			apikey_forget_database(held[d]);
}

static bool
apikey_start_visit(ApikeyVisitSlot *slot, int slotno, Oid dboid, int what)
{
	BackgroundWorker bgw;
	ApikeyVisitArgs args = {slotno, what};

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(bgw.bgw_library_name, "apikey", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "apikey_visit_main", BGW_MAXLEN);
	snprintf(bgw.bgw_name, BGW_MAXLEN, "apikey worker for database %u", dboid);
	strlcpy(bgw.bgw_type, "apikey worker", BGW_MAXLEN);
	bgw.bgw_main_arg = ObjectIdGetDatum(dboid);
	bgw.bgw_notify_pid = MyProcPid;
	memcpy(bgw.bgw_extra, &args, sizeof(args));

	apikey_worker_shared->outcome[slotno] = APIKEY_VISIT_UNKNOWN;
	apikey_worker_shared->deferred[slotno] = 0;
	if (!RegisterDynamicBackgroundWorker(&bgw, &slot->handle))
		return false;			/* no free worker slot now; try later */
	slot->dboid = dboid;
	slot->what = what;
	return true;
}

static ApikeyDatabase *
apikey_find_db(ApikeyDatabase *dbs, int ndbs, Oid dboid)
{
	for (int i = 0; i < ndbs; i++)
		if (dbs[i].dboid == dboid)
			return &dbs[i];
	return NULL;
}

static int64
apikey_backoff_ms(int base_ms, int failures)
{
	return Min((int64) base_ms << Min(failures, 12), APIKEY_MAX_BACKOFF_MS);
}

/*
 * After a visit asked to do a step (fold or sweep): if it was done, its
 * failures are forgotten; if it was not (it failed, or gave way to a user's
 * lock), it is retried after a back-off of its own, so that a sweep kept
 * from a locked apikey_keys never delays folding, nor the reverse.  A fold
 * left because another session was folding (busy) is no failure: that
 * fold is doing the work, and the next visit folds what it leaves.
 */
static void
apikey_reschedule_step(ApikeyDatabase *db, const char *step, bool asked,
					   bool deferred, bool busy, int *failures, TimestampTz *next,
					   TimestampTz now)
{
	int64		backoff;

	if (!asked)
		return;
	if (!deferred)
	{
		*failures = 0;
		return;
	}
	if (busy)
	{
		*next = TimestampTzPlusMilliseconds(now, apikey_flush_interval_ms);
		return;
	}
	backoff = apikey_backoff_ms(apikey_flush_interval_ms, (*failures)++);
	*next = TimestampTzPlusMilliseconds(now, backoff);
	ereport(LOG,
			(errmsg("apikey worker for database %u will retry its %s in %lld ms",
					db->dboid, step, (long long) backoff)));
}

/* Note how finished visits ended; schedule the next ones. */
static void
apikey_reap_visits(ApikeyVisitSlot *slots, ApikeyDatabase *dbs, int ndbs)
{
	TimestampTz now = GetCurrentTimestamp();

	for (int s = 0; s < APIKEY_MAX_VISITS; s++)
	{
		pid_t		pid;
		ApikeyDatabase *db;
		int			outcome;

		if (slots[s].handle == NULL ||
			GetBackgroundWorkerPid(slots[s].handle, &pid) != BGWH_STOPPED)
			continue;
		outcome = apikey_worker_shared->outcome[s];
		db = apikey_find_db(dbs, ndbs, slots[s].dboid);
		pfree(slots[s].handle);
		slots[s].handle = NULL;
		if (db == NULL)
			continue;
		switch (outcome)
		{
			case APIKEY_VISIT_DONE:
				db->installed = true;
				db->failures = 0;
				/* logging went on as usual; only a deferred step waits */
				apikey_reschedule_step(db, "fold", slots[s].what & APIKEY_DO_FOLD,
									   apikey_worker_shared->deferred[s] & APIKEY_DO_FOLD,
									   apikey_worker_shared->deferred[s] & APIKEY_FOLD_BUSY,
									   &db->fold_failures, &db->next_fold, now);
				apikey_reschedule_step(db, "sweep", slots[s].what & APIKEY_DO_SWEEP,
									   apikey_worker_shared->deferred[s] & APIKEY_DO_SWEEP, false,
									   &db->sweep_failures, &db->next_sweep, now);
				break;
			case APIKEY_VISIT_NOT_INSTALLED:
				db->installed = false;
				db->failures = 0;
				break;
			default:
				{
					int64		backoff = apikey_backoff_ms(apikey_flush_interval_ms,
															db->failures++);

					db->next_flush = db->next_fold = db->next_sweep =
						TimestampTzPlusMilliseconds(now, backoff);
					ereport(LOG,
							(errmsg("apikey worker for database %u failed, retrying in %lld ms",
									db->dboid, (long long) backoff)));
				}
				break;
		}
	}
}

/*
 * The sessions and visits that could still count: client backends and
 * background workers connected to a database (not walsenders, which stay
 * until the very end of a shutdown).
 */
static int
apikey_count_counting_backends(void)
{
	int			n = 0;
	int			nbackends;

	pgstat_clear_backend_activity_snapshot();
	nbackends = pgstat_fetch_stat_numbackends();
	for (int i = 1; i <= nbackends; i++)
	{
		LocalPgBackendStatus *local = apikey_local_beentry(i);
		PgBackendStatus *be;

		if (local == NULL)
			continue;
		be = &local->backendStatus;
		if (be->st_procpid != MyProcPid && OidIsValid(be->st_databaseid) &&
			(be->st_backendType == B_BACKEND || be->st_backendType == B_BG_WORKER))
			n++;
	}
	pgstat_clear_backend_activity_snapshot();
	return n;
}

/*
 * SIGTERM: the server is shutting down, or someone terminated the launcher.
 * A bgworker cannot tell which from the signal, so wait a little for the
 * sessions and visits that could still count: at a shutdown they all go,
 * and then windows and pending counts are saved; if they stay, this was
 * pg_terminate_backend and nothing is saved (memory keeps everything).
 * Either way exit with 1: the postmaster restarts a terminated launcher, and
 * during a shutdown it restarts nothing.
 */
static void
apikey_launcher_shutdown(void)
{
	TimestampTz give_up = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													  APIKEY_SHUTDOWN_WAIT_MS);
	int			counting;

	while ((counting = apikey_count_counting_backends()) > 0 &&
		   GetCurrentTimestamp() < give_up)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 50, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	if (counting == 0)
		apikey_dump_write();
	proc_exit(1);
}

/*
 * Load the shutdown dump of the previous server run.  (A launcher restarted
 * within this run finds no file, or one it removes unread: dump.c.)
 */
static void
apikey_launcher_load_dump(void)
{
	StartTransactionCommand();
	apikey_dump_launcher_start();
	CommitTransactionCommand();
}

/* Remove ended windows and past minutes' failures; returns when to return. */
static TimestampTz
apikey_housekeep(TimestampTz now)
{
	bool		pressed = false;

	(void) apikey_ratelimit_housekeep(now);
	(void) apikey_failures_housekeep(now, &pressed);
	pressed |= apikey_area_pressed();
	return TimestampTzPlusMilliseconds(now, pressed ? APIKEY_HOUSEKEEP_PRESSED_MS :
									   APIKEY_HOUSEKEEP_MS);
}

void
apikey_launcher_main(Datum main_arg)
{
	ApikeyDatabase *dbs;
	int			ndbs = 0;
	int			cap = 16;
	ApikeyVisitSlot slots[APIKEY_MAX_VISITS];
	MemoryContext launcher_cxt;
	TimestampTz next_housekeeping = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("apikey launcher");

	launcher_cxt = AllocSetContextCreate(TopMemoryContext, "apikey launcher",
										 ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(launcher_cxt);
	dbs = palloc(sizeof(ApikeyDatabase) * cap);
	memset(slots, 0, sizeof(slots));

	/* attach the tables now, so that shutdown needs no allocation */
	for (int k = 0; k < APIKEY_NUM_TABLES; k++)
		(void) apikey_area_table((ApikeyTableKind) k);
	apikey_launcher_attach(apikey_my_procno());
	before_shmem_exit(apikey_launcher_on_exit, (Datum) 0);
	apikey_launcher_load_dump();
	MemoryContextSwitchTo(launcher_cxt);

	for (;;)
	{
		TimestampTz now;
		Oid			pending[64];
		int			npending;
		Oid			held[128];
		int			nheld;
		bool		all_pending;
		Oid			existing[1024];
		int			nexisting;
		long		timeout;

		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			apikey_launcher_shutdown();
		if (ConfigReloadPending)
		{
			TimestampTz reload = GetCurrentTimestamp();

			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			/* a shortened interval applies now, not after the old one ends */
			for (int i = 0; i < ndbs; i++)
			{
				dbs[i].next_flush = Min(dbs[i].next_flush,
										TimestampTzPlusMilliseconds(reload, apikey_flush_interval_ms));
				dbs[i].next_fold = Min(dbs[i].next_fold,
									   TimestampTzPlusMilliseconds(reload, apikey_fold_interval_ms));
				dbs[i].next_sweep = Min(dbs[i].next_sweep,
										TimestampTzPlusMilliseconds(reload, apikey_sweep_interval_ms));
			}
		}

		now = GetCurrentTimestamp();
		if (apikey_launcher_housekeeping_requested() || now >= next_housekeeping)
			next_housekeeping = apikey_housekeep(now);

		apikey_reap_visits(slots, dbs, ndbs);
		/* before the scan: a database with counts now existed when counted */
		npending = apikey_launcher_pending_databases(pending, lengthof(pending), &all_pending);
		nheld = apikey_pending_databases_held(held, lengthof(held));
		MemoryContextSwitchTo(launcher_cxt);
		apikey_scan_databases(&dbs, &ndbs, &cap, existing, &nexisting, lengthof(existing));
		MemoryContextSwitchTo(launcher_cxt);
		now = GetCurrentTimestamp();

		/*
		 * Counts of databases dropped since can never be written: those of
		 * the databases with unlogged counts, and those the journals keep
		 * after a visit logged them (only a visit of the database prunes
		 * them, and none will come).  A journal a flush holds is skipped and
		 * found again here the next time.
		 */
		if (nexisting < (int) lengthof(existing))
			apikey_forget_dropped(pending, npending, held, nheld, existing, nexisting);

		for (int i = 0; i < ndbs; i++)
		{
			ApikeyDatabase *db = &dbs[i];
			bool		busy = false;
			bool		has_pending = all_pending;
			int			free_slot = -1;
			int			what = 0;

			for (int s = 0; s < APIKEY_MAX_VISITS; s++)
			{
				if (slots[s].handle != NULL && slots[s].dboid == db->dboid)
					busy = true;
				else if (slots[s].handle == NULL && free_slot < 0)
					free_slot = s;
			}
			has_pending |= apikey_oid_in(db->dboid, pending, npending);
			if (!apikey_workers_enabled || busy || free_slot < 0)
				continue;
			if (now >= db->next_sweep)
				what |= APIKEY_DO_SWEEP;
			if (db->installed && now >= db->next_fold)
				what |= APIKEY_DO_FOLD;
			if (what == 0 && !(has_pending && now >= db->next_flush))
				continue;

			if (apikey_start_visit(&slots[free_slot], free_slot, db->dboid, what))
			{
				db->next_flush = TimestampTzPlusMilliseconds(now, apikey_flush_interval_ms);
				if (what & APIKEY_DO_FOLD)
					db->next_fold = TimestampTzPlusMilliseconds(now, apikey_fold_interval_ms);
				if (what & APIKEY_DO_SWEEP)
					db->next_sweep = TimestampTzPlusMilliseconds(now, apikey_sweep_interval_ms);
			}
		}

		timeout = Min(apikey_flush_interval_ms, 1000);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ---- a visit ------------------------------------------------------------- */

typedef int64 (*ApikeyStepFn) (Oid nspid, void *arg);

/* A table a step touches, and the strongest lock the step takes on it. */
typedef struct ApikeyStepLock
{
	const char *relname;
	LOCKMODE	mode;
} ApikeyStepLock;

/* How a step ended. */
typedef enum ApikeyStepResult
{
	APIKEY_STEP_DONE,
	APIKEY_STEP_GAVE_WAY,		/* a table it needs was locked: not tried */
	APIKEY_STEP_FAILED			/* it raised an ERROR (reported) */
} ApikeyStepResult;

/* Tables of each step, in one order for all (keys, usage, log, the rest). */
static const ApikeyStepLock apikey_log_locks[] = {
	{"apikey_usage_log", RowExclusiveLock}, {NULL, NoLock}
};
static const ApikeyStepLock apikey_alert_locks[] = {
	{"apikey_alerts", RowExclusiveLock}, {NULL, NoLock}
};
static const ApikeyStepLock apikey_log_size_locks[] = {
	{"apikey_usage_log", AccessShareLock}, {NULL, NoLock}
};
static const ApikeyStepLock apikey_fold_locks[] = {
	{"apikey_keys", RowExclusiveLock}, {"apikey_usage", RowExclusiveLock},
	{"apikey_usage_log", RowExclusiveLock}, {"apikey_events", RowExclusiveLock},
	{NULL, NoLock}
};
static const ApikeyStepLock apikey_sweep_locks[] = {
	{"apikey_keys", RowExclusiveLock}, {"apikey_usage", RowExclusiveLock},
	{"apikey_events", RowExclusiveLock}, {"apikey_alerts", RowExclusiveLock},
	{NULL, NoLock}
};

/*
 * Take the locks of a step's tables without waiting.  A table that does
 * not exist (apikey_alerts and apikey_events before 1.1 and 2.0) is left
 * to the step.  Returns the name of a table someone else holds, or NULL
 * when all are ours.
 */
static const char *
apikey_visit_lock_tables(Oid nspid, const ApikeyStepLock *locks)
{
	for (; locks->relname != NULL; locks++)
	{
		Oid			relid = get_relname_relid(locks->relname, nspid);

		if (OidIsValid(relid) && !ConditionalLockRelationOid(relid, locks->mode))
			return locks->relname;
	}
	return NULL;
}

/*
 * Run one step of a visit in a transaction of its own, once it holds the
 * locks of all the tables it touches.  An ERROR is reported and ends only
 * this step.
 */
static ApikeyStepResult
apikey_visit_step(const char *activity, const ApikeyStepLock *locks,
				  ApikeyStepFn fn, Oid nspid, void *arg, int64 *result)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile ApikeyStepResult status = APIKEY_STEP_DONE;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	PG_TRY();
	{
		const char *busy = apikey_visit_lock_tables(nspid, locks);

		if (busy != NULL)
		{
			ereport(LOG,
					(errmsg("%s: left for a later visit, table \"%s\" is locked by another session",
							activity, busy)));
			status = APIKEY_STEP_GAVE_WAY;
			PopActiveSnapshot();
			AbortCurrentTransaction();
		}
		else
		{
			int64		r = fn(nspid, arg);

			if (result)
				*result = r;
			PopActiveSnapshot();
			CommitTransactionCommand();
		}
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		status = APIKEY_STEP_FAILED;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
	return status;
}

static int64
apikey_step_log_chunk(Oid nspid, void *arg)
{
	return apikey_log_chunk(nspid, (ApikeyTakeCursor *) arg);
}

static int64
apikey_step_alerts(Oid nspid, void *arg)
{
	return apikey_record_alerts(nspid, (bool *) arg);
}

static int64
apikey_step_fold(Oid nspid, void *arg)
{
	int64		folded = apikey_fold_usage_log(nspid, false);

	if (folded < 0)
		ereport(LOG,
				(errmsg("apikey: folding the usage log: left for a later visit, another session is folding it")));
	return folded;
}

static int64
apikey_step_log_size(Oid nspid, void *arg)
{
	return apikey_usage_log_entries(nspid);
}

static int64
apikey_step_sweep(Oid nspid, void *arg)
{
	int64		expired;
	int64		purged;

	apikey_sweep_batch_internal(nspid, APIKEY_SWEEP_BATCH, &expired, &purged);
	return Max(expired, purged);
}

/* Is the extension installed here, in which schema, and is it safe? */
static ApikeyVisitOutcome
apikey_visit_find_extension(Oid *nspid)
{
	ApikeyVisitOutcome outcome = APIKEY_VISIT_DONE;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	*nspid = apikey_extension_schema();
	if (!OidIsValid(*nspid) || get_namespace_name(*nspid) == NULL)
		outcome = APIKEY_VISIT_NOT_INSTALLED;
	else
	{
		char	   *who = NULL;

		/* as CREATE EXTENSION checked: never run SQL in a writable schema */
		if (apikey_schema_unsafe(*nspid, &who))
		{
			ereport(WARNING,
					(errmsg("apikey worker skips database \"%s\": schema \"%s\" of the extension is writable by %s",
							get_database_name(MyDatabaseId), get_namespace_name(*nspid), who),
					 errhint("REVOKE CREATE ON SCHEMA %s FROM %s;",
							 quote_identifier(get_namespace_name(*nspid)), who)));
			outcome = APIKEY_VISIT_UNSAFE;
		}
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	return outcome;
}

/*
 * lock_timeout of a visit: below half the deadlock_timeout the server runs
 * with (which user sessions inherit), and never above 500 ms.
 */
static void
apikey_visit_set_lock_timeouts(void)
{
	int			lock_timeout_ms = Max(1, Min(500, DeadlockTimeout / 2));

	SetConfigOption("lock_timeout", psprintf("%dms", lock_timeout_ms),
					PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("deadlock_timeout", psprintf("%dms", Max(1, lock_timeout_ms / 2)),
					PGC_SUSET, PGC_S_OVERRIDE);
}

void
apikey_visit_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	ApikeyVisitArgs args;
	Oid			nspid;
	ApikeyVisitOutcome outcome;
	ApikeyTakeCursor cursor = APIKEY_TAKE_CURSOR_INIT;
	bool		more;
	bool		ok;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("apikey worker");

	apikey_visit_set_lock_timeouts();
	SetConfigOption("statement_timeout", "5min", PGC_SUSET, PGC_S_OVERRIDE);
	/* a fold aggregates up to a fold interval of flushes */
	SetConfigOption("work_mem", "64MB", PGC_SUSET, PGC_S_OVERRIDE);

	outcome = apikey_visit_find_extension(&nspid);
	if (outcome == APIKEY_VISIT_NOT_INSTALLED)
	{
		/* dropped (or never created): its counts have nowhere to go */
		apikey_forget_database(MyDatabaseId);
		apikey_worker_shared->outcome[args.slot] = outcome;
		proc_exit(0);
	}
	if (outcome == APIKEY_VISIT_UNSAFE)
	{
		apikey_worker_shared->outcome[args.slot] = outcome;
		proc_exit(0);
	}

	/* Log pending counts, a chunk per transaction; then alerts. */
	apikey_launcher_mark_clean(MyDatabaseId);
	ok = true;
	while (ok && cursor.more)
	{
		int64		n = 0;

		ok = apikey_visit_step("apikey: logging counters", apikey_log_locks,
							   apikey_step_log_chunk, nspid, &cursor, &n) == APIKEY_STEP_DONE;
		if (n == 0)
			break;
	}
	if (ok && cursor.more)
		apikey_launcher_note_pending(MyDatabaseId);
	more = true;
	while (ok && more)
	{
		int64		n = 0;

		ok = apikey_visit_step("apikey: recording alerts", apikey_alert_locks,
							   apikey_step_alerts, nspid, &more, &n) == APIKEY_STEP_DONE;
		if (n == 0)
			break;
	}
	if (!ok)
	{
		apikey_launcher_note_pending(MyDatabaseId);
		apikey_worker_shared->outcome[args.slot] = APIKEY_VISIT_LOG_FAILED;
		proc_exit(0);
	}
	apikey_launcher_step_done(MyDatabaseId, APIKEY_STEP_FLUSH, GetCurrentTimestamp());

	/*
	 * Folding and sweeping are deferred work: at a lower CPU priority they
	 * fill idle time instead of taking a core from the sessions verifying
	 * keys.  (Logging, above, holds shared-memory locks briefly and so runs
	 * at normal priority; a process can lower its priority but not raise it
	 * again.)
	 */
	if (setpriority(PRIO_PROCESS, 0, APIKEY_VISIT_NICE) != 0)
		ereport(DEBUG1, (errmsg("could not lower the apikey worker's priority: %m")));

	/* Fold when due, or sooner if the log has grown past a few memories' worth. */
	if (!(args.what & APIKEY_DO_FOLD))
	{
		int64		entries = 0;

		if (apikey_visit_step("apikey: sizing the usage log", apikey_log_size_locks,
							  apikey_step_log_size, nspid, NULL, &entries) == APIKEY_STEP_DONE &&
			entries > APIKEY_LOG_FOLD_FACTOR * (int64) Min(apikey_max_tracked_keys, 1000000))
			args.what |= APIKEY_DO_FOLD;
	}
	if (args.what & APIKEY_DO_FOLD)
	{
		int64		folded = -1;
		ApikeyStepResult r;

		r = apikey_visit_step("apikey: folding the usage log", apikey_fold_locks,
							  apikey_step_fold, nspid, NULL, &folded);
		if (r == APIKEY_STEP_DONE && folded >= 0)
			apikey_launcher_step_done(MyDatabaseId, APIKEY_STEP_FOLD, GetCurrentTimestamp());
		else
			apikey_worker_shared->deferred[args.slot] |= APIKEY_DO_FOLD |
				(r == APIKEY_STEP_DONE ? APIKEY_FOLD_BUSY : 0);
	}

	if (args.what & APIKEY_DO_SWEEP)
	{
		/* Small transactions: never one long one holding locks. */
		for (;;)
		{
			int64		n = 0;

			CHECK_FOR_INTERRUPTS();
			if (apikey_visit_step("apikey: sweeping", apikey_sweep_locks,
								  apikey_step_sweep, nspid, NULL, &n) != APIKEY_STEP_DONE)
			{
				apikey_worker_shared->deferred[args.slot] |= APIKEY_DO_SWEEP;
				break;
			}
			if (n < APIKEY_SWEEP_BATCH)
			{
				apikey_launcher_step_done(MyDatabaseId, APIKEY_STEP_SWEEP, GetCurrentTimestamp());
				break;
			}
		}
	}
	apikey_worker_shared->outcome[args.slot] = APIKEY_VISIT_DONE;
	proc_exit(0);
}
