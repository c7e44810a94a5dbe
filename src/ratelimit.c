/*
 * ratelimit.c
 *		Rate-limit windows in shared memory.
 *
 *		One small entry per rate-limited key with a running window, in a
 *		dshash table of the apikey area.  A verification finds its key's entry
 *		under the entry's partition lock (exclusive: it counts), asks
 *		ratewindow.c, and lets go; verifications of different keys rarely
 *		share a partition, and those of one key are exact because they
 *		serialize on it (specs/rate_limit_exact.spec).
 *
 *		An entry must live until its window ends: forgetting it would give
 *		the key a fresh quota.  So entries are only removed once their window
 *		is over (by the launcher's housekeeping, never on the request path),
 *		and when apikey.max_tracked_keys windows are running, or shared
 *		memory is exhausted, a new window cannot be tracked: the request is
 *		refused as RATE_LIMITED.  Limits never fail open.  A WARNING at most
 *		once a minute names the setting to raise.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/shmem.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "ratelimit.h"

#define APIKEY_WARN_EVERY_USEC	(60 * USECS_PER_SEC)

typedef struct ApikeyRatelimitShared
{
	pg_atomic_uint32 entries;	/* windows tracked (reserved before insert) */
	pg_atomic_uint64 refused;	/* requests refused for want of room */
	pg_atomic_uint64 warned_at; /* TimestampTz of the last WARNING */
} ApikeyRatelimitShared;

static ApikeyRatelimitShared *apikey_rl = NULL;

void
apikey_ratelimit_register(void)
{
	dshash_parameters params = {
		sizeof(ApikeyKeyRef), sizeof(ApikeyWindowEntry),
		dshash_memcmp, dshash_memhash APIKEY_DSHASH_COPY_FUNCTION
	};

	apikey_area_register_table(APIKEY_TABLE_WINDOWS, &params);
}

Size
apikey_ratelimit_shmem_size(void)
{
	return MAXALIGN(sizeof(ApikeyRatelimitShared));
}

void
apikey_ratelimit_shmem_init(void)
{
	bool		found;

	apikey_rl = ShmemInitStruct("apikey rate limits", sizeof(ApikeyRatelimitShared),
								&found);
	if (!found)
	{
		pg_atomic_init_u32(&apikey_rl->entries, 0);
		pg_atomic_init_u64(&apikey_rl->refused, 0);
		pg_atomic_init_u64(&apikey_rl->warned_at, 0);
	}
}

/* Bytes one tracked window costs, for the manual and apikey_metrics. */
Size
apikey_ratelimit_entry_bytes(void)
{
	return apikey_area_entry_bytes(sizeof(ApikeyWindowEntry));
}

/* Claim room for one more window; false at the bound. */
static bool
apikey_ratelimit_reserve(void)
{
	uint32		before = pg_atomic_fetch_add_u32(&apikey_rl->entries, 1);

	if (before >= (uint32) apikey_max_tracked_keys)
	{
		pg_atomic_fetch_sub_u32(&apikey_rl->entries, 1);
		return false;
	}
	return true;
}

typedef struct ApikeyWindowInit
{
	bool		inserted;
} ApikeyWindowInit;

static void
apikey_window_init(void *entry, void *arg)
{
	ApikeyWindowEntry *e = entry;

	memset(&e->w, 0, sizeof(e->w));
	((ApikeyWindowInit *) arg)->inserted = true;
}

/* Refuse a request whose window cannot be tracked, and say so. */
static void
apikey_ratelimit_refuse(int32 limit, int64 window_usec, TimestampTz now,
						ApikeyRateState *rate)
{
	uint64		warned = pg_atomic_read_u64(&apikey_rl->warned_at);

	rate->admitted = false;
	rate->untracked = true;
	rate->remaining = 0;
	/* windows are aligned, so running ones end (and free room) then */
	rate->reset_at = apikey_window_start(now, window_usec) + window_usec;
	pg_atomic_fetch_add_u64(&apikey_rl->refused, 1);
	if ((uint64) now >= warned + APIKEY_WARN_EVERY_USEC &&
		pg_atomic_compare_exchange_u64(&apikey_rl->warned_at, &warned, (uint64) now))
		ereport(WARNING,
				(errmsg("apikey cannot track more rate-limit windows: requests of rate-limited keys without one are refused"),
				 errdetail("%u windows are running, the limit set by apikey.max_tracked_keys is %d%s.",
						   pg_atomic_read_u32(&apikey_rl->entries), apikey_max_tracked_keys,
						   apikey_area_exhausted() ? ", and shared memory is exhausted" : ""),
				 errhint("Raise apikey.max_tracked_keys (and make room in /dev/shm); "
						 "windows free up when they end.")));
}

/*
 * Judge one request of a key limited to `limit` (> 0) requests per
 * window_usec.  consume = false only looks (apikey_rate_limit_status):
 * it never creates an entry, and an untracked key shows its full quota.
 */
void
apikey_ratelimit_admit(Oid dbid, const char *key_id, int32 limit,
					   int64 window_usec, TimestampTz now, bool consume,
					   ApikeyRateState *rate)
{
	dshash_table *t = apikey_area_table(APIKEY_TABLE_WINDOWS);
	ApikeyKeyRef key;
	ApikeyWindowEntry *e;
	ApikeyWindowAnswer a;

	memset(rate, 0, sizeof(*rate));
	rate->limited = true;
	apikey_keyref_init(&key, dbid, key_id);

	/* Two tries: an entry we inserted may be removed before we use it. */
	for (int attempt = 0; attempt < 2; attempt++)
	{
		ApikeyWindowInit init = {false};

		e = dshash_find(t, &key, true);
		if (e != NULL)
		{
			a = apikey_window_admit(&e->w, limit, window_usec, now, consume);
			dshash_release_lock(t, e);
			rate->admitted = a.admitted;
			rate->remaining = a.remaining;
			rate->reset_at = a.reset_at;
			return;
		}
		if (!consume)
		{
			ApikeyWindow fresh = {0, 0, 0};

			a = apikey_window_admit(&fresh, limit, window_usec, now, false);
			rate->admitted = true;
			rate->remaining = a.remaining;
			rate->reset_at = a.reset_at;
			return;
		}
		if (!apikey_ratelimit_reserve())
			break;
		if (!apikey_area_insert(APIKEY_TABLE_WINDOWS, &key, apikey_window_init, &init))
		{
			pg_atomic_fetch_sub_u32(&apikey_rl->entries, 1);
			break;
		}
		if (!init.inserted)		/* another backend was faster */
			pg_atomic_fetch_sub_u32(&apikey_rl->entries, 1);
	}
	apikey_ratelimit_refuse(limit, window_usec, now, rate);
}

/*
 * Remove the windows that have ended.  Run by the launcher, a partition at
 * a time, never on the request path.  Returns how many went.
 */
int64
apikey_ratelimit_housekeep(TimestampTz now)
{
	dshash_seq_status status;
	ApikeyWindowEntry *e;
	int64		removed = 0;

	dshash_seq_init(&status, apikey_area_table(APIKEY_TABLE_WINDOWS), true);
	while ((e = dshash_seq_next(&status)) != NULL)
	{
		if (apikey_window_expired(&e->w, now))
		{
			dshash_delete_current(&status);
			pg_atomic_fetch_sub_u32(&apikey_rl->entries, 1);
			removed++;
		}
	}
	dshash_seq_term(&status);
	return removed;
}

/* A database was dropped, or the extension left it: its windows go. */
void
apikey_ratelimit_forget_database(Oid dbid)
{
	dshash_seq_status status;
	ApikeyWindowEntry *e;

	dshash_seq_init(&status, apikey_area_table(APIKEY_TABLE_WINDOWS), true);
	while ((e = dshash_seq_next(&status)) != NULL)
	{
		if (e->key.dbid == dbid)
		{
			dshash_delete_current(&status);
			pg_atomic_fetch_sub_u32(&apikey_rl->entries, 1);
		}
	}
	dshash_seq_term(&status);
}

/*
 * The running windows of dbid, in palloc'd *out (sized before the scan: no
 * allocation under a partition lock; if windows were added meanwhile beyond
 * it, the scan is repeated with more room).
 */
int
apikey_ratelimit_snapshot(Oid dbid, TimestampTz now, ApikeyWindowEntry **out)
{
	for (;;)
	{
		int			cap = (int) pg_atomic_read_u32(&apikey_rl->entries) + 64;
		ApikeyWindowEntry *w = palloc_extended(cap * sizeof(ApikeyWindowEntry),
											   MCXT_ALLOC_HUGE);
		dshash_seq_status status;
		ApikeyWindowEntry *e;
		int			n = 0;
		bool		full = false;

		dshash_seq_init(&status, apikey_area_table(APIKEY_TABLE_WINDOWS), false);
		while ((e = dshash_seq_next(&status)) != NULL)
		{
			if (e->key.dbid != dbid || apikey_window_expired(&e->w, now))
				continue;
			if (n == cap)
			{
				full = true;
				break;
			}
			w[n++] = *e;
		}
		dshash_seq_term(&status);
		if (!full)
		{
			*out = w;
			return n;
		}
		pfree(w);
		CHECK_FOR_INTERRUPTS();
	}
}

void
apikey_ratelimit_totals(ApikeyRatelimitTotals *totals)
{
	totals->entries = pg_atomic_read_u32(&apikey_rl->entries);
	totals->refused_untracked = (int64) pg_atomic_read_u64(&apikey_rl->refused);
}

/*
 * Write every running window to the shutdown dump; returns how many, or -1
 * if writing failed.  Called by the launcher at shutdown.  fwrite is plain
 * stdio (no ERROR can escape it), so batches are written while the scan
 * holds a partition lock in shared mode.
 */
int64
apikey_ratelimit_dump(FILE *file, TimestampTz now)
{
#define DUMP_BATCH 256
	ApikeyWindowEntry batch[DUMP_BATCH];
	dshash_seq_status status;
	ApikeyWindowEntry *e;
	int			n = 0;
	int64		written = 0;
	bool		ok = true;

	dshash_seq_init(&status, apikey_area_table(APIKEY_TABLE_WINDOWS), false);
	while ((e = dshash_seq_next(&status)) != NULL)
	{
		if (apikey_window_expired(&e->w, now))
			continue;
		batch[n++] = *e;
		if (n == DUMP_BATCH)
		{
			ok &= fwrite(batch, sizeof(ApikeyWindowEntry), n, file) == (size_t) n;
			written += n;
			n = 0;
		}
	}
	dshash_seq_term(&status);
	if (n > 0)
	{
		ok &= fwrite(batch, sizeof(ApikeyWindowEntry), n, file) == (size_t) n;
		written += n;
	}
	return ok ? written : -1;
#undef DUMP_BATCH
}

/*
 * Merge one saved window back in: the counts of a window a backend already
 * started meanwhile are added, so nothing is admitted twice.  False when
 * there is no room.
 */
bool
apikey_ratelimit_restore(const ApikeyWindowEntry *saved, TimestampTz now)
{
	dshash_table *t = apikey_area_table(APIKEY_TABLE_WINDOWS);
	ApikeyWindowInit init = {false};
	ApikeyWindowEntry *e;

	if (apikey_window_expired(&saved->w, now))
		return true;
	if (!apikey_ratelimit_reserve())
		return false;
	if (!apikey_area_insert(APIKEY_TABLE_WINDOWS, &saved->key, apikey_window_init, &init))
	{
		pg_atomic_fetch_sub_u32(&apikey_rl->entries, 1);
		return false;
	}
	if (!init.inserted)
		pg_atomic_fetch_sub_u32(&apikey_rl->entries, 1);
	e = dshash_find(t, &saved->key, true);
	if (e == NULL)
		return false;
	if (e->w.start == saved->w.start && e->w.usec == saved->w.usec)
		e->w.count = (int32) Min((int64) e->w.count + saved->w.count, PG_INT32_MAX);
	else if (e->w.count == 0 || e->w.start < saved->w.start)
		e->w = saved->w;
	dshash_release_lock(t, e);
	return true;
}
