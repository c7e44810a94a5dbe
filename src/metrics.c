/*
 * metrics.c
 *		apikey_metrics_internal(): the numbers behind the apikey_metrics view
 *		(2.2), for monitoring.  Server-wide aggregates only -- no key_id, no
 *		org_id -- so a least-privilege monitoring role may read them without
 *		seeing any tenant's data.  One row per series: (name, value, labels).
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "apikey.h"
#include "area.h"
#include "compat.h"
#include "failures.h"
#include "launcher_state.h"
#include "pending.h"
#include "ratelimit.h"

PG_FUNCTION_INFO_V1(apikey_metrics_internal);

static void
apikey_metric(ReturnSetInfo *rsinfo, const char *name, double value,
			  const char *labels_json)
{
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	values[0] = CStringGetTextDatum(name);
	values[1] = Float8GetDatum(value);
	values[2] = DirectFunctionCall1(jsonb_in, CStringGetDatum(labels_json ? labels_json : "{}"));
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* A JSON string literal (the names here need no escaping but a quote). */
static char *
apikey_json_str(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	escape_json(&buf, s);
	return buf.data;
}

/*
 * apikey_metrics_internal()
 *		returns table(name text, value double precision, labels jsonb)
 */
Datum
apikey_metrics_internal(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		by_code[APIKEY_NUM_CODES];
	ApikeyRatelimitTotals rl;
	ApikeyFailureTotals fl;
	ApikeyOverflowCounts overflow;
	TimestampTz now = GetCurrentTimestamp();
	Size		area;
	static const char *const steps[APIKEY_NUM_STEPS] = {"flush", "fold", "sweep"};

	InitMaterializedSRF(fcinfo, 0);
	apikey_metric(rsinfo, "apikey_preloaded", apikey_area_ready() ? 1 : 0, NULL);
	if (!apikey_area_ready())
		return (Datum) 0;

	apikey_totals_read(by_code);
	for (int c = 0; c < APIKEY_NUM_CODES; c++)
		apikey_metric(rsinfo, "apikey_verifications_total", (double) by_code[c],
					  psprintf("{\"code\": %s}", apikey_json_str(apikey_code_names[c])));

	apikey_ratelimit_totals(&rl);
	apikey_failures_totals(&fl);
	apikey_metric(rsinfo, "apikey_tracked_keys", (double) rl.entries, "{\"kind\": \"rate_windows\"}");
	apikey_metric(rsinfo, "apikey_tracked_keys", (double) apikey_pending_entries(), "{\"kind\": \"pending_counts\"}");
	apikey_metric(rsinfo, "apikey_tracked_keys_max", apikey_max_tracked_keys, NULL);
	apikey_metric(rsinfo, "apikey_tracked_clients", (double) fl.entries, NULL);
	apikey_metric(rsinfo, "apikey_tracked_clients_max", apikey_max_tracked_clients, NULL);
	apikey_metric(rsinfo, "apikey_rate_limited_untracked_total", (double) rl.refused_untracked, NULL);
	apikey_metric(rsinfo, "apikey_failures_untracked_total", (double) fl.untracked, NULL);

	/* memory: what the entries take, and what the bounds would */
	apikey_metric(rsinfo, "apikey_shared_memory_bytes",
				  (double) rl.entries * apikey_ratelimit_entry_bytes(), "{\"kind\": \"rate_windows\"}");
	apikey_metric(rsinfo, "apikey_shared_memory_bytes",
				  (double) apikey_pending_bytes(), "{\"kind\": \"pending_counts\"}");
	apikey_metric(rsinfo, "apikey_shared_memory_bytes",
				  (double) fl.entries * apikey_failures_entry_bytes(), "{\"kind\": \"clients\"}");
	apikey_metric(rsinfo, "apikey_shared_memory_bytes_max",
				  (double) apikey_max_tracked_keys *
				  (apikey_ratelimit_entry_bytes() + apikey_pending_entry_bytes()) +
				  (double) apikey_max_tracked_clients * apikey_failures_entry_bytes(), NULL);
	area = apikey_area_bytes();
	if (area > 0)
		apikey_metric(rsinfo, "apikey_shared_memory_area_bytes", (double) area, NULL);

	/* counts of this database that found no room for a key */
	apikey_pending_overflow(MyDatabaseId, &overflow);
	apikey_metric(rsinfo, "apikey_untracked_requests_total", (double) overflow.requests, NULL);
	apikey_metric(rsinfo, "apikey_untracked_denied_total", (double) overflow.denied, NULL);

	/* the workers, per database they have visited */
	{
		Oid			dbids[128];
		int			n = apikey_launcher_step_databases(dbids, lengthof(dbids));

		for (int i = 0; i < n; i++)
		{
			char	   *datname = get_database_name(dbids[i]);

			if (datname == NULL)
				continue;
			for (int s = 0; s < APIKEY_NUM_STEPS; s++)
			{
				TimestampTz at = apikey_launcher_step_time(dbids[i], (ApikeyVisitStep) s);

				if (at == 0)
					continue;
				apikey_metric(rsinfo, "apikey_seconds_since_last", (double) (now - at) / USECS_PER_SEC,
							  psprintf("{\"step\": \"%s\", \"database\": %s}", steps[s],
									   apikey_json_str(datname)));
			}
		}
	}
	return (Datum) 0;
}
