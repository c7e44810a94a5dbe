/*
 * apikey.h
 *		Declarations shared by the server-side files: GUC values, result
 *		codes, and the entry points each file offers the others.
 */
#ifndef APIKEY_H
#define APIKEY_H

#include "datatype/timestamp.h"
#include "fmgr.h"

/* GUCs (apikey.c) */
extern char *apikey_token_prefix;
extern int	apikey_default_rate_limit;
extern int	apikey_default_rate_window_s;
extern char *apikey_org_mapping;
extern int	apikey_flush_interval_ms;
extern int	apikey_sweep_interval_ms;
extern int	apikey_usage_retention_min;
extern int	apikey_max_tracked_keys;
extern int	apikey_alert_failures;
extern bool apikey_workers_enabled;

/*
 * Verification result codes, in the contract's order of precedence.  The
 * order matters: counters index their "denied by code" arrays with it.
 */
typedef enum ApikeyCode
{
	APIKEY_VALID = 0,
	APIKEY_MALFORMED,
	APIKEY_NOT_FOUND,
	APIKEY_REVOKED,
	APIKEY_EXPIRED,
	APIKEY_FORBIDDEN,
	APIKEY_INSUFFICIENT_SCOPE,
	APIKEY_RATE_LIMITED
} ApikeyCode;
#define APIKEY_NUM_CODES (APIKEY_RATE_LIMITED + 1)

extern const char *const apikey_code_names[APIKEY_NUM_CODES];

/* key_id is a short identifier; the tables enforce this length. */
#define APIKEY_KEY_ID_MAXLEN	64

/* worker.c */
extern void apikey_worker_register_launcher(void);
PGDLLEXPORT void apikey_launcher_main(Datum main_arg);
PGDLLEXPORT void apikey_visit_main(Datum main_arg);

/* flush.c: log this database's pending counters, fold the log into tables */
extern int64 apikey_log_pending(Oid nspid);
extern int64 apikey_fold_usage_log(Oid nspid);
extern int64 apikey_usage_log_entries(Oid nspid);
extern int64 apikey_send_alerts(void);
extern void apikey_flush_xact_init(void);

#endif							/* APIKEY_H */
