/*
 * apikey.c
 *		Module entry: PG_MODULE_MAGIC, _PG_init, the apikey.* GUCs and the
 *		hooks.  Everything else lives under src/, one file per concern.
 */
#include "postgres.h"

#include <limits.h>

#include "miscadmin.h"
#include "utils/guc.h"

#include "apikey.h"
#include "counters.h"
#include "token.h"

PG_MODULE_MAGIC;

char	   *apikey_token_prefix = NULL;
int			apikey_default_rate_limit = 1000;
int			apikey_default_rate_window_s = 3600;
char	   *apikey_org_mapping = NULL;
int			apikey_flush_interval_ms = 10000;
int			apikey_sweep_interval_ms = 60000;
int			apikey_usage_retention_min = 30 * 24 * 60;
int			apikey_max_tracked_keys = 10000;
int			apikey_alert_failures = 100;
bool		apikey_workers_enabled = true;

const char *const apikey_code_names[APIKEY_NUM_CODES] = {
	"VALID", "MALFORMED", "NOT_FOUND", "REVOKED", "EXPIRED", "FORBIDDEN",
	"INSUFFICIENT_SCOPE", "RATE_LIMITED"
};

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
	 * The user -> organization query run by ALTER EXTENSION UPDATE TO 2.0.
	 * SUSET: it is executed by the updating superuser.
	 */
	DefineCustomStringVariable("apikey.org_mapping",
							   "Query returning (user_id text, org_id text), read by the 1.0 -> 2.0 update.",
							   NULL, &apikey_org_mapping, NULL, PGC_SUSET, 0,
							   NULL, NULL, NULL);

	/* Worker cadence and retention: SIGHUP, one setting for the server. */
	DefineCustomIntVariable("apikey.flush_interval",
							"How often pending usage counters are written to the tables.",
							NULL, &apikey_flush_interval_ms, 10000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("apikey.sweep_interval",
							"How often expired keys and old usage buckets are swept.",
							NULL, &apikey_sweep_interval_ms, 60000, 1000, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("apikey.usage_retention",
							"How long hourly usage buckets are kept.",
							NULL, &apikey_usage_retention_min, 30 * 24 * 60, 60, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MIN, NULL, NULL, NULL);
	DefineCustomIntVariable("apikey.alert_failures",
							"Failed verifications per minute from one client address before a NOTIFY on apikey_alerts (0 = off).",
							NULL, &apikey_alert_failures, 100, 0, INT_MAX,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	/*
	 * SIGHUP: off keeps the launcher idle, for DBAs who run apikey_flush()
	 * and apikey_sweep() from pg_cron, and for deterministic tests.
	 */
	DefineCustomBoolVariable("apikey.workers",
							 "Run the background workers that flush counters and sweep keys.",
							 NULL, &apikey_workers_enabled, true,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);

	apikey_flush_xact_init();

	/*
	 * Without preloading there is no shared memory to size: define nothing
	 * PGC_POSTMASTER (PostgreSQL refuses that after start-up) and leave
	 * apikey_verify to say what is missing.
	 */
	if (!process_shared_preload_libraries_in_progress)
	{
		MarkGUCPrefixReserved("apikey");
		return;
	}

	/* Sizes shared memory: POSTMASTER, it can only change at start. */
	DefineCustomIntVariable("apikey.max_tracked_keys",
							"Keys whose counters and rate limits are tracked in shared memory.",
							NULL, &apikey_max_tracked_keys, 10000, 100, 10 * 1000 * 1000,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	MarkGUCPrefixReserved("apikey");

	apikey_counters_install_hooks();
	apikey_worker_register_launcher();
}
