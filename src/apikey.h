/*
 * apikey.h
 *		What every part of apikey shares: the GUC values and the result
 *		codes.  Each module has its own header for its functions.
 */
#ifndef APIKEY_H
#define APIKEY_H

/* GUCs (apikey.c) */
extern char *apikey_token_prefix;
extern int	apikey_default_rate_limit;
extern int	apikey_default_rate_window_s;
extern char *apikey_org_mapping;
extern int	apikey_flush_interval_ms;
extern int	apikey_fold_interval_ms;
extern int	apikey_sweep_interval_ms;
extern int	apikey_usage_retention_min;
extern int	apikey_max_tracked_keys;
extern int	apikey_max_tracked_clients;
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

#endif							/* APIKEY_H */
