/*
 * worker.c
 *		The launcher and its per-database visits.
 *
 *		As in TimescaleDB's loader (and unlike pg_cron's single
 *		cron.database_name), one launcher, connected to no database, reads
 *		pg_database and sends a short-lived "visit" worker into each database
 *		that needs one: every apikey.flush_interval into databases with
 *		pending counters or alerts, every apikey.sweep_interval into every
 *		database.  A visit checks whether the extension is installed, logs
 *		pending counters (flush.c), sends alerts, and on a sweep folds the
 *		usage log into the tables and sweeps in small transactions; then it
 *		exits.
 *
 *		Short visits are what let the workers never block DROP DATABASE (which
 *		waits a few seconds for other sessions to leave), DROP EXTENSION or
 *		shutdown, and cope with the extension appearing or disappearing: no
 *		worker holds a connection or a lock between visits.  Visits never run
 *		during recovery: the launcher starts only once recovery has finished,
 *		so a hot standby writes nothing.
 *
 *		A visit that fails is retried with exponential back-off per database;
 *		the launcher itself is restarted by the postmaster if it dies.
 */
#include "postgres.h"

#include <sys/resource.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "apikey.h"
#include "counters.h"
#include "worker.h"

/* Visits running at once: small, so the workers never crowd out others. */
#define APIKEY_MAX_VISITS		2
/* Fold the usage log early once it holds this many times max_tracked_keys. */
#define APIKEY_LOG_FOLD_FACTOR 4

/* Rows per sweep transaction. */
#define APIKEY_SWEEP_BATCH		1000
/* Niceness of visits: below backends, above nothing in particular. */
#define APIKEY_VISIT_NICE		10
/* Longest back-off after repeated failures in one database. */
#define APIKEY_MAX_BACKOFF_MS	(5 * 60 * 1000)

typedef enum ApikeyVisitOutcome
{
	APIKEY_VISIT_UNKNOWN = 0,	/* still running, or died */
	APIKEY_VISIT_DONE,
	APIKEY_VISIT_NOT_INSTALLED
} ApikeyVisitOutcome;

/* Shared: each visit reports how it ended in its slot. */
typedef struct ApikeyWorkerShared
{
	int			outcome[APIKEY_MAX_VISITS];
} ApikeyWorkerShared;

/* Passed to a visit in bgw_extra. */
typedef struct ApikeyVisitArgs
{
	int			slot;
	bool		sweep;
} ApikeyVisitArgs;

/* The launcher's private view of one database. */
typedef struct ApikeyDatabase
{
	Oid			dboid;
	bool		seen;			/* still in pg_database */
	bool		installed;		/* extension found on the last visit */
	TimestampTz next_sweep;
	TimestampTz next_flush;
	int			failures;
} ApikeyDatabase;

typedef struct ApikeyVisitSlot
{
	BackgroundWorkerHandle *handle;
	Oid			dboid;
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

/* ---- launcher ---------------------------------------------------------- */

static void
apikey_launcher_detach(int code, Datum arg)
{
	apikey_counters_set_launcher(-1);
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
			(*dbs)[i].next_sweep = now;
			(*dbs)[i].next_flush = now;
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

static bool
apikey_start_visit(ApikeyVisitSlot *slot, int slotno, Oid dboid, bool sweep)
{
	BackgroundWorker bgw;
	ApikeyVisitArgs args = {slotno, sweep};

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
	if (!RegisterDynamicBackgroundWorker(&bgw, &slot->handle))
		return false;			/* no free worker slot now; try later */
	slot->dboid = dboid;
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

/* Note how finished visits ended; schedule their next visit. */
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
		if (outcome == APIKEY_VISIT_UNKNOWN)
		{
			int64		backoff = Min((int64) apikey_flush_interval_ms << Min(db->failures, 10),
									  APIKEY_MAX_BACKOFF_MS);

			db->failures++;
			db->next_flush = db->next_sweep =
				TimestampTzPlusMilliseconds(now, backoff);
			ereport(LOG,
					(errmsg("apikey worker for database %u failed, retrying in %lld ms",
							db->dboid, (long long) backoff)));
		}
		else
		{
			db->failures = 0;
			db->installed = outcome == APIKEY_VISIT_DONE;
		}
	}
}

void
apikey_launcher_main(Datum main_arg)
{
	ApikeyDatabase *dbs;
	int			ndbs = 0;
	int			cap = 16;
	ApikeyVisitSlot slots[APIKEY_MAX_VISITS];
	MemoryContext launcher_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("apikey launcher");

	launcher_cxt = AllocSetContextCreate(TopMemoryContext, "apikey launcher",
										 ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(launcher_cxt);
	dbs = palloc(sizeof(ApikeyDatabase) * cap);
	memset(slots, 0, sizeof(slots));

	apikey_counters_set_launcher(MyProc->pgprocno);
	before_shmem_exit(apikey_launcher_detach, (Datum) 0);

	for (;;)
	{
		TimestampTz now;
		Oid			pending[64];
		int			npending;
		bool		all_pending;
		bool		early;
		Oid			existing[1024];
		int			nexisting;
		long		timeout;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			TimestampTz reload = GetCurrentTimestamp();

			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			/* a shortened interval applies now, not after the old one ends */
			for (int i = 0; i < ndbs; i++)
			{
				dbs[i].next_sweep = Min(dbs[i].next_sweep,
										TimestampTzPlusMilliseconds(reload, apikey_sweep_interval_ms));
				dbs[i].next_flush = Min(dbs[i].next_flush,
										TimestampTzPlusMilliseconds(reload, apikey_flush_interval_ms));
			}
		}

		apikey_reap_visits(slots, dbs, ndbs);
		/* before the scan: a database with counts now existed when counted */
		npending = apikey_counters_pending_databases(pending, lengthof(pending), &all_pending);
		early = apikey_counters_early_flush_requested();
		MemoryContextSwitchTo(launcher_cxt);
		apikey_scan_databases(&dbs, &ndbs, &cap, existing, &nexisting, lengthof(existing));
		MemoryContextSwitchTo(launcher_cxt);
		now = GetCurrentTimestamp();

		/* counts of databases dropped since can never be written */
		if (nexisting < (int) lengthof(existing))
		{
			for (int p = 0; p < npending; p++)
			{
				bool		exists = false;

				for (int i = 0; i < nexisting; i++)
					exists |= (existing[i] == pending[p]);
				if (!exists)
					apikey_counters_forget_database(pending[p]);
			}
		}

		for (int i = 0; i < ndbs; i++)
		{
			ApikeyDatabase *db = &dbs[i];
			bool		busy = false;
			bool		has_pending = false;
			bool		sweep_due = now >= db->next_sweep;
			bool		flush_due;
			int			free_slot = -1;

			for (int s = 0; s < APIKEY_MAX_VISITS; s++)
			{
				if (slots[s].handle != NULL && slots[s].dboid == db->dboid)
					busy = true;
				else if (slots[s].handle == NULL && free_slot < 0)
					free_slot = s;
			}
			has_pending = all_pending;
			for (int p = 0; p < npending; p++)
				has_pending |= (pending[p] == db->dboid);
			flush_due = has_pending && (early || now >= db->next_flush);
			if (!apikey_workers_enabled || busy || free_slot < 0 ||
				!(sweep_due || flush_due))
				continue;

			if (apikey_start_visit(&slots[free_slot], free_slot, db->dboid, sweep_due))
			{
				db->next_flush = TimestampTzPlusMilliseconds(now, apikey_flush_interval_ms);
				if (sweep_due)
					db->next_sweep = TimestampTzPlusMilliseconds(now, apikey_sweep_interval_ms);
			}
		}

		timeout = Min(apikey_flush_interval_ms, 1000);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ---- a visit ----------------------------------------------------------- */

/* One step of a visit, in C, run in a transaction of its own. */
typedef int64 (*ApikeyVisitStep) (Oid nspid);

static int64
apikey_visit_step(const char *activity, ApikeyVisitStep step, Oid nspid)
{
	int64		result;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	result = step(nspid);
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	return result;
}

static int64
apikey_visit_log(Oid nspid)
{
	int64		logged = apikey_log_pending(nspid);

	apikey_send_alerts();
	return logged;
}

/* Run one statement in its own transaction; returns its first int8 column. */
static int64
apikey_visit_exec(const char *activity, const char *sql, int64 *second)
{
	int64		first = 0;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	if (SPI_execute(sql, false, 0) == SPI_OK_SELECT && SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		first = isnull ? 0 : DatumGetInt64(d);
		if (second)
		{
			d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
			*second = isnull ? 0 : DatumGetInt64(d);
		}
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	return first;
}

void
apikey_visit_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	ApikeyVisitArgs args;
	char	   *nsp = NULL;
	Oid			nspid = InvalidOid;
	char	   *sql;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));

	/*
	 * Flushing is deferred work: at a lower CPU priority it fills idle time
	 * instead of taking a core from the sessions verifying keys.  (Raising
	 * one's own niceness needs no privilege.)
	 */
	if (setpriority(PRIO_PROCESS, 0, APIKEY_VISIT_NICE) != 0)
		ereport(DEBUG1, (errmsg("could not lower the apikey worker's priority: %m")));
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("apikey worker");

	/* Never wait long behind a user's lock: the next visit retries. */
	SetConfigOption("lock_timeout", "5s", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("statement_timeout", "5min", PGC_SUSET, PGC_S_OVERRIDE);
	/* a fold aggregates a whole sweep interval of flushes */
	SetConfigOption("work_mem", "64MB", PGC_SUSET, PGC_S_OVERRIDE);

	/* Is the extension here, and in which schema? */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute("SELECT pg_catalog.quote_ident(n.nspname), n.oid"
					"  FROM pg_catalog.pg_extension e"
					"  JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace"
					" WHERE e.extname = 'apikey'", true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		bool		isnull;

		nsp = MemoryContextStrdup(TopMemoryContext,
								  SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
		nspid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 2, &isnull));
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();

	if (nsp == NULL)
	{
		/* dropped (or never created): its pending counts have nowhere to go */
		apikey_counters_forget_database(MyDatabaseId);
		apikey_worker_shared->outcome[args.slot] = APIKEY_VISIT_NOT_INSTALLED;
		proc_exit(0);
	}

	apikey_visit_step("apikey: flushing counters", apikey_visit_log, nspid);

	/*
	 * Fold the log into the tables at every sweep, or sooner if it has grown
	 * past what shared memory could hold a few times over.
	 */
	if (args.sweep ||
		apikey_visit_step("apikey: sizing the usage log", apikey_usage_log_entries, nspid) >
		APIKEY_LOG_FOLD_FACTOR * (int64) apikey_max_tracked_keys)
		apikey_visit_step("apikey: folding the usage log", apikey_fold_usage_log, nspid);

	if (args.sweep)
	{
		/* Small transactions: never one long one holding locks. */
		sql = psprintf("SELECT expired, usage_purged FROM %s.apikey_sweep_batch(%d)",
					   nsp, APIKEY_SWEEP_BATCH);
		for (;;)
		{
			int64		purged = 0;
			int64		expired = apikey_visit_exec("apikey: sweeping", sql, &purged);

			CHECK_FOR_INTERRUPTS();
			if (expired < APIKEY_SWEEP_BATCH && purged < APIKEY_SWEEP_BATCH)
				break;
		}
	}
	apikey_worker_shared->outcome[args.slot] = APIKEY_VISIT_DONE;
	proc_exit(0);
}
