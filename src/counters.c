/*
 * counters.c
 *		Shared memory for counting without writing: per-key usage counters
 *		and rate-limit windows, per-client-address failure counters.
 *
 *		Layout follows pg_stat_statements: memory is requested in
 *		shmem_request_hook and attached in shmem_startup_hook; one LWLock
 *		(tranche "apikey") guards the hash tables' shape -- shared to find an
 *		entry, exclusive to add or evict one -- and a spinlock per entry guards
 *		its counters, so concurrent verifications of different keys never
 *		wait on each other and those of one key wait only for a few
 *		instructions.
 *
 *		Flushing "takes" pending counts out of an entry (zeroing them) and
 *		gives them back if its transaction aborts, so two flushers can never
 *		write the same count twice and a failed flush loses nothing.
 *
 *		At a clean shutdown the postmaster writes every entry that still has
 *		pending counts or a live rate-limit window to pg_stat/apikey.stat and
 *		the next start reads it back; after a crash that file does not exist
 *		and at most one flush interval of counts is lost.
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "counters.h"
#include "worker.h"

#define APIKEY_DUMP_FILE	PGSTAT_STAT_PERMANENT_DIRECTORY "/apikey.stat"
#define APIKEY_DUMP_MAGIC	0x41504b31	/* "APK1" */

typedef struct ApikeyCounterKey
{
	Oid			dbid;
	char		key_id[APIKEY_KEY_ID_MAXLEN + 1];
} ApikeyCounterKey;

typedef struct ApikeyCounterEntry
{
	ApikeyCounterKey key;		/* hash key: must be first */
	slock_t		mutex;
	ApikeyUsageSlot cur;		/* pending counts of the newest hour */
	ApikeyUsageSlot prev;		/* pending counts of an older hour, if any */
	TimestampTz window_start;	/* fixed rate-limit window */
	int64		window_usec;
	int32		window_count;
	int64		denied_by[APIKEY_NUM_CODES];	/* since server start */
} ApikeyCounterEntry;

typedef struct ApikeyFailureKey
{
	Oid			dbid;
	inet		addr;			/* zero-padded, so usable as a hash key */
} ApikeyFailureKey;

typedef struct ApikeyFailureEntry
{
	ApikeyFailureKey key;
	slock_t		mutex;
	TimestampTz minute;			/* the minute being counted */
	int32		count;
	bool		alert_pending;	/* passed the threshold, NOTIFY not yet sent */
	bool		alerted;		/* already alerted for this minute */
} ApikeyFailureEntry;

/* Databases the launcher is told about without scanning the counters. */
#define APIKEY_MAX_DIRTY_DBS 64

typedef struct ApikeySharedState
{
	LWLock	   *lock;
	slock_t		mutex;			/* guards the fields below */
	ApikeyStatsRow overflow;	/* counts that found no free entry */
	TimestampTz evict_retry_at; /* no eviction scan before this time */
	int			launcher_pgprocno;	/* -1 when no launcher runs */
	bool		early_flush;	/* nearly full: flush without waiting */

	/*
	 * Databases with counts or alerts pending, so that the launcher never
	 * scans the counter table (a scan of a million entries takes a fifth of
	 * a second, and holds off every new entry meanwhile).  dirty_overflow:
	 * more databases than slots, the launcher treats every one as dirty.
	 * clean_gen moves on whenever a database is taken off the list, which
	 * tells backends that their "already marked" memo is stale.
	 */
	Oid			dirty_db[APIKEY_MAX_DIRTY_DBS];
	int			ndirty;
	bool		dirty_overflow;
	pg_atomic_uint64 clean_gen;
} ApikeySharedState;

static ApikeySharedState *apikey_state = NULL;
static HTAB *apikey_counter_hash = NULL;
static HTAB *apikey_failure_hash = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static int
apikey_max_failure_entries(void)
{
	return Max(256, apikey_max_tracked_keys / 4);
}

static Size
apikey_shmem_size(void)
{
	Size		size = MAXALIGN(sizeof(ApikeySharedState));

	size = add_size(size, hash_estimate_size(apikey_max_tracked_keys,
											 sizeof(ApikeyCounterEntry)));
	size = add_size(size, hash_estimate_size(apikey_max_failure_entries(),
											 sizeof(ApikeyFailureEntry)));
	size = add_size(size, apikey_worker_shmem_size());
	return size;
}

static void
apikey_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(apikey_shmem_size());
	RequestNamedLWLockTranche("apikey", 1);
}

static void apikey_shmem_shutdown(int code, Datum arg);
static void apikey_load_dump(void);

static void
apikey_shmem_startup(void)
{
	bool		found;
	HASHCTL		info;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	apikey_state = ShmemInitStruct("apikey state", sizeof(ApikeySharedState),
								   &found);
	if (!found)
	{
		memset(apikey_state, 0, sizeof(ApikeySharedState));
		apikey_state->lock = &(GetNamedLWLockTranche("apikey"))->lock;
		SpinLockInit(&apikey_state->mutex);
		apikey_state->launcher_pgprocno = -1;
		pg_atomic_init_u64(&apikey_state->clean_gen, 0);
	}

	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(ApikeyCounterKey);
	info.entrysize = sizeof(ApikeyCounterEntry);
	apikey_counter_hash = ShmemInitHash("apikey counters",
										apikey_max_tracked_keys,
										apikey_max_tracked_keys,
										&info, HASH_ELEM | HASH_BLOBS);
	info.keysize = sizeof(ApikeyFailureKey);
	info.entrysize = sizeof(ApikeyFailureEntry);
	apikey_failure_hash = ShmemInitHash("apikey failures",
										apikey_max_failure_entries(),
										apikey_max_failure_entries(),
										&info, HASH_ELEM | HASH_BLOBS);
	apikey_worker_shmem_init();
	LWLockRelease(AddinShmemInitLock);

	/* Only the postmaster loads the dump and writes it at shutdown. */
	if (!IsUnderPostmaster)
	{
		on_shmem_exit(apikey_shmem_shutdown, (Datum) 0);
		if (!found)
			apikey_load_dump();
	}
}

void
apikey_counters_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = apikey_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = apikey_shmem_startup;
}

bool
apikey_counters_ready(void)
{
	return apikey_state != NULL && apikey_counter_hash != NULL;
}

/*
 * Verification needs the counters; without them it would silently skip
 * rate limits, so it refuses instead (the contract: never a half-mode).
 */
void
apikey_require_preload(void)
{
	if (!apikey_counters_ready())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("apikey must be loaded via shared_preload_libraries"),
				 errdetail("Key verification counts usage and enforces rate limits in shared memory."),
				 errhint("Add apikey to shared_preload_libraries in postgresql.conf, "
						 "e.g. shared_preload_libraries = 'apikey', and restart the server.")));
}

/* ---- entries ---------------------------------------------------------- */

static inline bool
apikey_slot_empty(const ApikeyUsageSlot *s)
{
	return s->bucket == 0;
}

static void
apikey_slot_add(ApikeyUsageSlot *dst, const ApikeyUsageSlot *src)
{
	dst->requests += src->requests;
	dst->denied += src->denied;
	dst->responses += src->responses;
	dst->response_ms += src->response_ms;
	dst->client_errors += src->client_errors;
	dst->server_errors += src->server_errors;
	if (src->last_used > dst->last_used)
		dst->last_used = src->last_used;
}

/*
 * The slot that counts for the hour starting at bucket.  Two slots cover
 * the normal case of an hour turning over between flushes; if the worker
 * has been away for longer, older hours are folded into the older slot.
 */
static ApikeyUsageSlot *
apikey_slot_for(ApikeyCounterEntry *e, TimestampTz bucket)
{
	if (e->cur.bucket == bucket)
		return &e->cur;
	if (e->prev.bucket == bucket)
		return &e->prev;
	if (apikey_slot_empty(&e->cur))
	{
		e->cur.bucket = bucket;
		return &e->cur;
	}
	if (bucket < e->cur.bucket)
	{
		if (apikey_slot_empty(&e->prev))
			e->prev.bucket = bucket;
		return &e->prev;
	}
	/* a newer hour: the current slot becomes (or joins) the older one */
	if (apikey_slot_empty(&e->prev))
		e->prev = e->cur;
	else
		apikey_slot_add(&e->prev, &e->cur);
	memset(&e->cur, 0, sizeof(e->cur));
	e->cur.bucket = bucket;
	return &e->cur;
}

static TimestampTz
apikey_hour_of(TimestampTz t)
{
	return t - (t % USECS_PER_HOUR);
}

static void
apikey_make_key(ApikeyCounterKey *key, Oid dbid, const char *key_id)
{
	memset(key, 0, sizeof(*key));
	key->dbid = dbid;
	strlcpy(key->key_id, key_id, sizeof(key->key_id));
}

/*
 * Ask the launcher for an early flush (the table is nearly full, and only a
 * flush makes entries evictable).  The latch is set once per request, not
 * once per caller.
 */
static void
apikey_wake_launcher(void)
{
	int			procno = -1;

	SpinLockAcquire(&apikey_state->mutex);
	if (!apikey_state->early_flush)
	{
		apikey_state->early_flush = true;
		procno = apikey_state->launcher_pgprocno;
	}
	SpinLockRelease(&apikey_state->mutex);
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

/* For the launcher: was an early flush asked for since the last call? */
bool
apikey_counters_early_flush_requested(void)
{
	bool		requested;

	SpinLockAcquire(&apikey_state->mutex);
	requested = apikey_state->early_flush;
	apikey_state->early_flush = false;
	SpinLockRelease(&apikey_state->mutex);
	return requested;
}

/* Put dbid on the dirty list; false if the list was full. */
static bool
apikey_list_dirty(Oid dbid)
{
	bool		listed = false;

	SpinLockAcquire(&apikey_state->mutex);
	for (int i = 0; i < apikey_state->ndirty && !listed; i++)
		listed = apikey_state->dirty_db[i] == dbid;
	if (!listed && apikey_state->ndirty < APIKEY_MAX_DIRTY_DBS)
	{
		apikey_state->dirty_db[apikey_state->ndirty++] = dbid;
		listed = true;
	}
	else if (!listed)
		apikey_state->dirty_overflow = true;
	SpinLockRelease(&apikey_state->mutex);
	return listed;
}

/*
 * Note that dbid has something pending.  Called after the count is in its
 * entry.  A backend remembers the database it marked and the clean_gen it
 * saw, so the spinlock is taken once per flush, not once per verification:
 * a flush first takes the database off the list and moves clean_gen on, and
 * only then takes the counts, so a count it misses is always marked again.
 */
static void
apikey_mark_dirty(Oid dbid)
{
	static Oid	marked_db = InvalidOid;
	static uint64 marked_gen = 0;
	uint64		gen = pg_atomic_read_u64(&apikey_state->clean_gen);

	if (dbid == marked_db && gen == marked_gen)
		return;
	if (apikey_list_dirty(dbid))	/* else: mark again next time */
	{
		marked_db = dbid;
		marked_gen = gen;
	}
}

/* Take dbid off the dirty list: its pending counts are about to be taken. */
static void
apikey_mark_clean(Oid dbid)
{
	SpinLockAcquire(&apikey_state->mutex);
	for (int i = 0; i < apikey_state->ndirty; i++)
	{
		if (apikey_state->dirty_db[i] == dbid)
		{
			apikey_state->dirty_db[i] = apikey_state->dirty_db[--apikey_state->ndirty];
			break;
		}
	}
	SpinLockRelease(&apikey_state->mutex);
	pg_atomic_fetch_add_u64(&apikey_state->clean_gen, 1);
}

void
apikey_counters_set_launcher(int pgprocno)
{
	SpinLockAcquire(&apikey_state->mutex);
	apikey_state->launcher_pgprocno = pgprocno;
	SpinLockRelease(&apikey_state->mutex);
}

/*
 * Free room by evicting entries that hold nothing: no pending counts and
 * no rate-limit window still running.  Called with the lock exclusive.
 */
static int
apikey_evict_idle(TimestampTz now)
{
	HASH_SEQ_STATUS status;
	ApikeyCounterEntry *e;
	int			evicted = 0;
	int			wanted = Max(1, apikey_max_tracked_keys / 10);

	/*
	 * A scan that found nothing is not repeated for a second: with the
	 * table full of running windows, every new key would otherwise pay a
	 * full scan under the exclusive lock.  (Only written under that lock.)
	 */
	if (now < apikey_state->evict_retry_at)
		return 0;
	hash_seq_init(&status, apikey_counter_hash);
	while ((e = hash_seq_search(&status)) != NULL)
	{
		if (apikey_slot_empty(&e->cur) && apikey_slot_empty(&e->prev) &&
			(e->window_count == 0 || now >= e->window_start + e->window_usec))
		{
			hash_search(apikey_counter_hash, &e->key, HASH_REMOVE, NULL);
			if (++evicted >= wanted)
			{
				hash_seq_term(&status);
				break;
			}
		}
	}
	if (evicted == 0)
		apikey_state->evict_retry_at = now + USECS_PER_SEC;
	return evicted;
}

/*
 * Find or create the entry of a key in the current database, with the lock
 * held in the returned mode (caller releases).  NULL when the table is full
 * of entries that cannot be evicted yet: the caller counts into overflow.
 */
static ApikeyCounterEntry *
apikey_entry(Oid dbid, const char *key_id, TimestampTz now)
{
	ApikeyCounterKey key;
	ApikeyCounterEntry *e;
	bool		found;

	apikey_make_key(&key, dbid, key_id);
	LWLockAcquire(apikey_state->lock, LW_SHARED);
	e = hash_search(apikey_counter_hash, &key, HASH_FIND, NULL);
	if (e != NULL)
		return e;
	LWLockRelease(apikey_state->lock);

	LWLockAcquire(apikey_state->lock, LW_EXCLUSIVE);
	if (hash_get_num_entries(apikey_counter_hash) >= apikey_max_tracked_keys &&
		apikey_evict_idle(now) == 0)
	{
		e = hash_search(apikey_counter_hash, &key, HASH_FIND, NULL);
		if (e == NULL)
		{
			LWLockRelease(apikey_state->lock);
			apikey_wake_launcher(); /* a flush makes entries evictable */
			return NULL;
		}
		return e;
	}
	e = hash_search(apikey_counter_hash, &key, HASH_ENTER, &found);
	if (!found)
	{
		memset((char *) e + sizeof(ApikeyCounterKey), 0,
			   sizeof(ApikeyCounterEntry) - sizeof(ApikeyCounterKey));
		SpinLockInit(&e->mutex);
	}
	/* nearly full: ask for an early flush so entries become evictable */
	if (hash_get_num_entries(apikey_counter_hash) > apikey_max_tracked_keys * 9 / 10)
		apikey_wake_launcher();
	return e;
}

/* Fixed window aligned to multiples of its length since 2000-01-01. */
static void
apikey_rate_check(ApikeyCounterEntry *e, int32 limit, int64 window_usec,
				  TimestampTz now, bool consume, ApikeyRateState *rate)
{
	TimestampTz start;

	rate->limited = limit > 0 && window_usec > 0;
	rate->admitted = true;
	rate->remaining = 0;
	rate->reset_at = 0;
	if (!rate->limited)
		return;

	start = now - (now % window_usec);
	if (e->window_start != start || e->window_usec != window_usec)
	{
		e->window_start = start;
		e->window_usec = window_usec;
		e->window_count = 0;
	}
	rate->reset_at = start + window_usec;
	if (e->window_count >= limit)
	{
		rate->admitted = false;
		rate->remaining = 0;
		return;
	}
	if (consume)
		e->window_count++;
	rate->remaining = limit - e->window_count;
}

static void
apikey_overflow_add(bool valid, ApikeyCode code)
{
	SpinLockAcquire(&apikey_state->mutex);
	if (valid)
		apikey_state->overflow.requests++;
	else
	{
		apikey_state->overflow.denied++;
		apikey_state->overflow.denied_by[code]++;
	}
	SpinLockRelease(&apikey_state->mutex);
}

/*
 * Count one verification of a known key.  code is the result of every check
 * before the rate limit; when it is VALID, the rate limiter decides, and only
 * an admitted request uses quota.  rate is filled either way.
 */
void
apikey_count_key_result(const char *key_id, ApikeyCode code,
						int32 rate_limit, int64 window_usec, TimestampTz now,
						ApikeyRateState *rate)
{
	ApikeyCounterEntry *e = apikey_entry(MyDatabaseId, key_id, now);
	ApikeyUsageSlot *slot;

	memset(rate, 0, sizeof(*rate));
	rate->admitted = true;
	if (e == NULL)
	{
		/*
		 * No room: the request is admitted without a window (failing closed
		 * would turn a sizing problem into an outage) and counted in the
		 * overflow row of apikey_stats, which tells the DBA to raise
		 * apikey.max_tracked_keys.
		 */
		apikey_overflow_add(code == APIKEY_VALID, code);
		return;
	}

	SpinLockAcquire(&e->mutex);
	slot = apikey_slot_for(e, apikey_hour_of(now));
	if (code == APIKEY_VALID)
	{
		apikey_rate_check(e, rate_limit, window_usec, now, true, rate);
		if (rate->admitted)
		{
			slot->requests++;
			slot->last_used = now;
		}
		else
			code = APIKEY_RATE_LIMITED;
	}
	if (code != APIKEY_VALID)
	{
		slot->denied++;
		e->denied_by[code]++;
	}
	SpinLockRelease(&e->mutex);
	LWLockRelease(apikey_state->lock);
	apikey_mark_dirty(MyDatabaseId);
}

/* The current window of a key, without using quota. */
void
apikey_rate_peek(const char *key_id, int32 rate_limit, int64 window_usec,
				 TimestampTz now, ApikeyRateState *rate)
{
	ApikeyCounterEntry *e = apikey_entry(MyDatabaseId, key_id, now);

	memset(rate, 0, sizeof(*rate));
	if (e == NULL)
	{
		rate->limited = rate_limit > 0;
		rate->admitted = true;
		rate->remaining = rate_limit;
		return;
	}
	SpinLockAcquire(&e->mutex);
	apikey_rate_check(e, rate_limit, window_usec, now, false, rate);
	SpinLockRelease(&e->mutex);
	LWLockRelease(apikey_state->lock);
}

void
apikey_count_response(const char *key_id, int32 status_code,
					  double response_ms, TimestampTz now)
{
	ApikeyCounterEntry *e = apikey_entry(MyDatabaseId, key_id, now);
	ApikeyUsageSlot *slot;

	if (e == NULL)
	{
		SpinLockAcquire(&apikey_state->mutex);
		apikey_state->overflow.responses++;
		apikey_state->overflow.response_ms += response_ms;
		SpinLockRelease(&apikey_state->mutex);
		return;
	}
	SpinLockAcquire(&e->mutex);
	slot = apikey_slot_for(e, apikey_hour_of(now));
	slot->responses++;
	slot->response_ms += response_ms;
	if (status_code >= 500)
		slot->server_errors++;
	else if (status_code >= 400)
		slot->client_errors++;
	SpinLockRelease(&e->mutex);
	LWLockRelease(apikey_state->lock);
	apikey_mark_dirty(MyDatabaseId);
}

/* ---- failures per client address ------------------------------------- */

/*
 * Count a failed verification from addr.  When the count for the current
 * minute reaches apikey.alert_failures, mark an alert for the worker to
 * send (a NOTIFY from here would be transactional and impossible on a
 * standby).
 */
void
apikey_count_client_failure(const inet *addr, TimestampTz now)
{
	ApikeyFailureKey key;
	ApikeyFailureEntry *e;
	TimestampTz minute = now - (now % USECS_PER_MINUTE);
	bool		found;
	bool		alert = false;

	if (apikey_alert_failures <= 0)
		return;
	memset(&key, 0, sizeof(key));
	key.dbid = MyDatabaseId;
	/* addr may have a short varlena header: copy field by field */
	SET_VARSIZE(&key.addr, VARHDRSZ + offsetof(inet_struct, ipaddr) +
				ip_addrsize(addr));
	ip_family(&key.addr) = ip_family(addr);
	ip_bits(&key.addr) = ip_bits(addr);
	memcpy(ip_addr(&key.addr), ip_addr(addr), ip_addrsize(addr));

	LWLockAcquire(apikey_state->lock, LW_SHARED);
	e = hash_search(apikey_failure_hash, &key, HASH_FIND, NULL);
	if (e == NULL)
	{
		LWLockRelease(apikey_state->lock);
		LWLockAcquire(apikey_state->lock, LW_EXCLUSIVE);
		if (hash_get_num_entries(apikey_failure_hash) >= apikey_max_failure_entries())
		{
			HASH_SEQ_STATUS status;
			ApikeyFailureEntry *old;

			/* forget addresses with nothing in the current minute */
			hash_seq_init(&status, apikey_failure_hash);
			while ((old = hash_seq_search(&status)) != NULL)
			{
				if (old->minute < minute && !old->alert_pending)
					hash_search(apikey_failure_hash, &old->key, HASH_REMOVE, NULL);
			}
		}
		e = hash_search(apikey_failure_hash, &key, HASH_ENTER_NULL, &found);
		if (e == NULL)
		{
			LWLockRelease(apikey_state->lock);
			return;
		}
		if (!found)
		{
			memset((char *) e + sizeof(key), 0, sizeof(*e) - sizeof(key));
			SpinLockInit(&e->mutex);
		}
	}
	SpinLockAcquire(&e->mutex);
	if (e->minute != minute)
	{
		e->minute = minute;
		e->count = 0;
		e->alerted = false;
	}
	e->count++;
	if (e->count >= apikey_alert_failures && !e->alerted)
	{
		e->alerted = true;
		e->alert_pending = true;
		alert = true;
	}
	SpinLockRelease(&e->mutex);
	LWLockRelease(apikey_state->lock);
	if (alert)
		apikey_mark_dirty(MyDatabaseId);
}

int
apikey_counters_take_alerts(Oid dbid, ApikeyAlert **out)
{
	HASH_SEQ_STATUS status;
	ApikeyFailureEntry *e;
	int			n = 0;
	int			cap = 8;

	*out = palloc(cap * sizeof(ApikeyAlert));
	LWLockAcquire(apikey_state->lock, LW_SHARED);
	hash_seq_init(&status, apikey_failure_hash);
	while ((e = hash_seq_search(&status)) != NULL)
	{
		if (e->key.dbid != dbid)
			continue;
		SpinLockAcquire(&e->mutex);
		if (e->alert_pending)
		{
			if (n == cap)
			{
				cap *= 2;
				*out = repalloc(*out, cap * sizeof(ApikeyAlert));
			}
			(*out)[n].addr = e->key.addr;
			(*out)[n].failures = e->count;
			(*out)[n].minute = e->minute;
			n++;
			e->alert_pending = false;
		}
		SpinLockRelease(&e->mutex);
	}
	LWLockRelease(apikey_state->lock);
	return n;
}

/* ---- flushing --------------------------------------------------------- */

static bool
apikey_entry_pending(const ApikeyCounterEntry *e)
{
	return !apikey_slot_empty(&e->cur) || !apikey_slot_empty(&e->prev);
}

/*
 * The databases that have pending counts or alerts, for the launcher.
 * *all: the list overflowed; treat every database as having something.
 */
int
apikey_counters_pending_databases(Oid *dbids, int max, bool *all)
{
	int			n;

	SpinLockAcquire(&apikey_state->mutex);
	n = Min(apikey_state->ndirty, max);
	memcpy(dbids, apikey_state->dirty_db, n * sizeof(Oid));
	*all = apikey_state->dirty_overflow || apikey_state->ndirty > max;
	apikey_state->dirty_overflow = false;	/* marked again by new counts */
	SpinLockRelease(&apikey_state->mutex);
	return n;
}

/*
 * Drop every entry of a database whose counts can never be written: it was
 * dropped, or the extension is no longer installed in it.  Otherwise they
 * would hold their entries (and the shutdown dump) for good.
 */
void
apikey_counters_forget_database(Oid dbid)
{
	HASH_SEQ_STATUS status;
	ApikeyCounterEntry *e;
	ApikeyFailureEntry *f;

	apikey_mark_clean(dbid);
	LWLockAcquire(apikey_state->lock, LW_EXCLUSIVE);
	hash_seq_init(&status, apikey_counter_hash);
	while ((e = hash_seq_search(&status)) != NULL)
	{
		if (e->key.dbid == dbid)
			hash_search(apikey_counter_hash, &e->key, HASH_REMOVE, NULL);
	}
	hash_seq_init(&status, apikey_failure_hash);
	while ((f = hash_seq_search(&status)) != NULL)
	{
		if (f->key.dbid == dbid)
			hash_search(apikey_failure_hash, &f->key, HASH_REMOVE, NULL);
	}
	LWLockRelease(apikey_state->lock);
}

/*
 * Take every pending slot of a database out of shared memory.  The caller
 * writes them and, should its transaction abort, gives them back.
 */
int
apikey_counters_take(Oid dbid, ApikeyTakenSlot **out)
{
	HASH_SEQ_STATUS status;
	ApikeyCounterEntry *e;
	int			n = 0;
	int			cap = 64;

	*out = palloc(cap * sizeof(ApikeyTakenSlot));
	apikey_mark_clean(dbid);	/* before the scan: see apikey_mark_dirty */
	LWLockAcquire(apikey_state->lock, LW_SHARED);
	hash_seq_init(&status, apikey_counter_hash);
	while ((e = hash_seq_search(&status)) != NULL)
	{
		ApikeyUsageSlot *slots[2];

		if (e->key.dbid != dbid)
			continue;
		if (n + 2 > cap)
		{
			cap *= 2;
			*out = repalloc(*out, cap * sizeof(ApikeyTakenSlot));
		}
		SpinLockAcquire(&e->mutex);
		slots[0] = &e->prev;
		slots[1] = &e->cur;
		for (int i = 0; i < 2; i++)
		{
			if (apikey_slot_empty(slots[i]))
				continue;
			(*out)[n].dbid = dbid;
			memcpy((*out)[n].key_id, e->key.key_id, sizeof(e->key.key_id));
			(*out)[n].slot = *slots[i];
			memset(slots[i], 0, sizeof(ApikeyUsageSlot));
			n++;
		}
		SpinLockRelease(&e->mutex);
	}
	LWLockRelease(apikey_state->lock);
	return n;
}

/* Put taken slots back, e.g. because the flush's transaction aborted. */
void
apikey_counters_give_back(const ApikeyTakenSlot *slots, int n)
{
	for (int i = 0; i < n; i++)
	{
		const ApikeyTakenSlot *t = &slots[i];
		ApikeyCounterEntry *e = apikey_entry(t->dbid, t->key_id, t->slot.bucket);

		if (e == NULL)
		{
			SpinLockAcquire(&apikey_state->mutex);
			apikey_state->overflow.requests += t->slot.requests;
			apikey_state->overflow.denied += t->slot.denied;
			SpinLockRelease(&apikey_state->mutex);
			continue;
		}
		SpinLockAcquire(&e->mutex);
		apikey_slot_add(apikey_slot_for(e, t->slot.bucket), &t->slot);
		SpinLockRelease(&e->mutex);
		LWLockRelease(apikey_state->lock);
		apikey_list_dirty(t->dbid);
	}
}

/* ---- apikey_stats ----------------------------------------------------- */

int
apikey_counters_stats(Oid dbid, ApikeyStatsRow **out, ApikeyStatsRow *overflow)
{
	HASH_SEQ_STATUS status;
	ApikeyCounterEntry *e;
	int			n = 0;
	int			cap = 64;

	*out = palloc(cap * sizeof(ApikeyStatsRow));
	LWLockAcquire(apikey_state->lock, LW_SHARED);
	hash_seq_init(&status, apikey_counter_hash);
	while ((e = hash_seq_search(&status)) != NULL)
	{
		ApikeyStatsRow *r;

		if (e->key.dbid != dbid)
			continue;
		if (n == cap)
		{
			cap *= 2;
			*out = repalloc(*out, cap * sizeof(ApikeyStatsRow));
		}
		r = &(*out)[n++];
		memset(r, 0, sizeof(*r));
		memcpy(r->key_id, e->key.key_id, sizeof(r->key_id));
		SpinLockAcquire(&e->mutex);
		r->requests = e->cur.requests + e->prev.requests;
		r->denied = e->cur.denied + e->prev.denied;
		r->responses = e->cur.responses + e->prev.responses;
		r->response_ms = e->cur.response_ms + e->prev.response_ms;
		r->last_used = Max(e->cur.last_used, e->prev.last_used);
		memcpy(r->denied_by, e->denied_by, sizeof(r->denied_by));
		r->window_start = e->window_start;
		r->window_count = e->window_count;
		SpinLockRelease(&e->mutex);
	}
	LWLockRelease(apikey_state->lock);

	SpinLockAcquire(&apikey_state->mutex);
	*overflow = apikey_state->overflow;
	SpinLockRelease(&apikey_state->mutex);
	return n;
}

/* ---- dump at shutdown, load at start ----------------------------------- */

static void
apikey_shmem_shutdown(int code, Datum arg)
{
	FILE	   *file;
	HASH_SEQ_STATUS status;
	ApikeyCounterEntry *e;
	uint32		header[2] = {APIKEY_DUMP_MAGIC, 0};
	TimestampTz now = GetCurrentTimestamp();

	/* After a crash the counters cannot be trusted; start clean. */
	if (code != 0 || !apikey_state || !apikey_counter_hash)
		return;

	file = AllocateFile(APIKEY_DUMP_FILE ".tmp", PG_BINARY_W);
	if (file == NULL)
		goto error;
	hash_seq_init(&status, apikey_counter_hash);
	while ((e = hash_seq_search(&status)) != NULL)
	{
		if (apikey_entry_pending(e) ||
			(e->window_count > 0 && now < e->window_start + e->window_usec))
			header[1]++;
	}
	if (fwrite(header, sizeof(header), 1, file) != 1)
		goto error;
	hash_seq_init(&status, apikey_counter_hash);
	while ((e = hash_seq_search(&status)) != NULL)
	{
		if (!(apikey_entry_pending(e) ||
			  (e->window_count > 0 && now < e->window_start + e->window_usec)))
			continue;
		if (fwrite(e, sizeof(*e), 1, file) != 1)
		{
			hash_seq_term(&status);
			goto error;
		}
	}
	if (FreeFile(file))
	{
		file = NULL;
		goto error;
	}
	(void) durable_rename(APIKEY_DUMP_FILE ".tmp", APIKEY_DUMP_FILE, LOG);
	return;

error:
	ereport(LOG,
			(errcode_for_file_access(),
			 errmsg("could not write file \"%s\": %m", APIKEY_DUMP_FILE ".tmp")));
	if (file)
		FreeFile(file);
	unlink(APIKEY_DUMP_FILE ".tmp");
}

static void
apikey_load_dump(void)
{
	FILE	   *file = AllocateFile(APIKEY_DUMP_FILE, PG_BINARY_R);
	uint32		header[2];

	if (file == NULL)
	{
		if (errno != ENOENT)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not read file \"%s\": %m", APIKEY_DUMP_FILE)));
		return;
	}
	if (fread(header, sizeof(header), 1, file) != 1 ||
		header[0] != APIKEY_DUMP_MAGIC)
	{
		ereport(LOG,
				(errmsg("ignoring invalid apikey counter file \"%s\"", APIKEY_DUMP_FILE)));
		goto done;
	}
	for (uint32 i = 0; i < header[1]; i++)
	{
		ApikeyCounterEntry tmp;
		ApikeyCounterEntry *e;
		bool		found;

		if (fread(&tmp, sizeof(tmp), 1, file) != 1)
			break;
		if (hash_get_num_entries(apikey_counter_hash) >= apikey_max_tracked_keys)
		{
			ereport(LOG,
					(errmsg("apikey.max_tracked_keys is too small to reload all saved counters"),
					 errhint("Raise apikey.max_tracked_keys.")));
			break;
		}
		e = hash_search(apikey_counter_hash, &tmp.key, HASH_ENTER, &found);
		memcpy(e, &tmp, sizeof(tmp));
		SpinLockInit(&e->mutex);
		if (apikey_entry_pending(e))
			apikey_list_dirty(e->key.dbid);
	}
done:
	FreeFile(file);
	/* Loaded once: a crash before the next clean shutdown must not reload it. */
	unlink(APIKEY_DUMP_FILE);
}
