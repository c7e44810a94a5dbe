/*
 * apikey.c
 *		Module entry: PG_MODULE_MAGIC, _PG_init, the apikey.* GUCs and the
 *		shared-memory hooks.  Everything else lives under src/, one file per
 *		concern.
 */
#include "postgres.h"

#include <limits.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"

#include "apikey.h"
#include "area.h"
#include "dump.h"
#include "compat.h"
#include "failures.h"
#include "flush.h"
#include "launcher_state.h"
#include "pending.h"
#include "ratelimit.h"
#include "token.h"
#include "worker.h"

PG_MODULE_MAGIC;

char	   *apikey_token_prefix = NULL;
int			apikey_default_rate_limit = 1000;
int			apikey_default_rate_window_s = 3600;
char	   *apikey_org_mapping = NULL;
int			apikey_flush_interval_ms = 10000;
int			apikey_fold_interval_ms = 5 * 60 * 1000;
int			apikey_sweep_interval_ms = 60000;
int			apikey_usage_retention_min = 30 * 24 * 60;
int			apikey_max_tracked_keys = 2000000;
int			apikey_max_tracked_clients = 100000;
int			apikey_alert_failures = 100;
bool		apikey_workers_enabled = true;

const char *const apikey_code_names[APIKEY_NUM_CODES] = {
	"VALID", "MALFORMED", "NOT_FOUND", "REVOKED", "EXPIRED", "FORBIDDEN",
	"INSUFFICIENT_SCOPE", "RATE_LIMITED"
};

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

void		_PG_init(void);

static bool
apikey_check_prefix(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || !apikey_valid_name(*newval, strlen(*newval)))
	{
		GUC_check_errdetail("The token prefix must match [a-z][a-z0-9]{0,15}.");
		return false;
	}
	return true;
}

/*
 * Shared memory, added up in one place as core's CalculateShmemSize does:
 * each module sizes and initializes its own part.  The per-key and
 * per-address tables are not sized here at all: they live in a DSA area
 * that grows with use (area.c).
 */
static Size
apikey_shmem_size(void)
{
	Size		size = 0;

	size = add_size(size, apikey_area_shmem_size());
	size = add_size(size, apikey_ratelimit_shmem_size());
	size = add_size(size, apikey_pending_shmem_size());
	size = add_size(size, apikey_failures_shmem_size());
	size = add_size(size, apikey_launcher_shmem_size());
	size = add_size(size, apikey_worker_shmem_size());
	size = add_size(size, apikey_dump_shmem_size());
	return size;
}

static void
apikey_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(apikey_shmem_size());
}

static void
apikey_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	apikey_ratelimit_shmem_init();
	apikey_pending_shmem_init();
	apikey_failures_shmem_init();
	apikey_launcher_shmem_init();
	apikey_worker_shmem_init();
	apikey_dump_shmem_init();
	apikey_area_shmem_init();	/* last: creates the tables registered above */
	LWLockRelease(AddinShmemInitLock);
}

void
_PG_init(void)
{
	/*
	 * The prefix decides which tokens must carry a valid checksum.  SUSET:
	 * a DBA may set it per database (ALTER DATABASE ... SET), an
	 * application must not be able to switch checksum checking off.
	 */
	DefineCustomStringVariable("apikey.token_prefix",
							   "Prefix of the tokens this server issues.",
							   "Tokens with this prefix must carry a valid checksum; others are looked up by hash.",
							   &apikey_token_prefix, "ak", PGC_SUSET, 0,
							   apikey_check_prefix, NULL, NULL);

	/* Defaults applied when a key is created: SUSET, a DBA's policy. */
	DefineCustomIntVariable("apikey.default_rate_limit",
							"Requests per window for keys created without a rate_limit (0 = unlimited).",
							NULL, &apikey_default_rate_limit, 1000, 0, INT_MAX,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("apikey.default_rate_window",
							"Rate limit window for new keys.",
							NULL, &apikey_default_rate_window_s, 3600, 1, 31 * 24 * 3600,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);

	/*
	 * The user -> organization query run by ALTER EXTENSION UPDATE to 2.x.
	 * SUSET: it is executed by the updating superuser.
	 */
	DefineCustomStringVariable("apikey.org_mapping",
							   "Query returning (user_id text, org_id text), read by the 1.x -> 2.x update.",
							   NULL, &apikey_org_mapping, NULL, PGC_SUSET, 0,
							   NULL, NULL, NULL);

	/* Worker cadence and retention: SIGHUP, one setting for the server. */
	DefineCustomIntVariable("apikey.flush_interval",
							"How often pending usage counts are logged to the tables (durably).",
							NULL, &apikey_flush_interval_ms, 10000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("apikey.fold_interval",
							"How often the usage log is folded into apikey_keys and apikey_usage.",
							"usage_count, last_used_at and apikey_usage lag real use by up to this long.",
							&apikey_fold_interval_ms, 5 * 60 * 1000, 100, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("apikey.sweep_interval",
							"How often expired keys and old usage buckets are swept.",
							NULL, &apikey_sweep_interval_ms, 60000, 1000, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("apikey.usage_retention",
							"How long hourly usage buckets and alerts are kept.",
							NULL, &apikey_usage_retention_min, 30 * 24 * 60, 60, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MIN, NULL, NULL, NULL);
	DefineCustomIntVariable("apikey.alert_failures",
							"Failed verifications per minute from one client address before an alert (0 = off).",
							NULL, &apikey_alert_failures, 100, 0, INT_MAX,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	/*
	 * Bounds on shared memory.  SIGHUP: memory is taken as keys are used,
	 * not reserved at start, so the bounds can move without a restart.
	 */
	DefineCustomIntVariable("apikey.max_tracked_keys",
							"Most keys tracked in shared memory at once (rate-limit windows, and pending counts).",
							NULL, &apikey_max_tracked_keys, 2000000, 100, 100 * 1000 * 1000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("apikey.max_tracked_clients",
							"Most client addresses whose failed verifications are counted at once.",
							NULL, &apikey_max_tracked_clients, 100000, 100, 10 * 1000 * 1000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	/*
	 * SIGHUP: off keeps the launcher idle, for DBAs who run apikey_flush()
	 * and apikey_sweep() from pg_cron, and for deterministic tests.
	 */
	DefineCustomBoolVariable("apikey.workers",
							 "Run the background workers that flush counters and sweep keys.",
							 NULL, &apikey_workers_enabled, true,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);

	MarkGUCPrefixReserved("apikey");
	apikey_flush_xact_init();

	/*
	 * Without preloading there is no shared memory: apikey_verify says what
	 * is missing, and the management functions work without it.
	 */
	if (!process_shared_preload_libraries_in_progress)
		return;

	apikey_ratelimit_register();
	apikey_failures_register();
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = apikey_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = apikey_shmem_startup;
	apikey_worker_register_launcher();
}
