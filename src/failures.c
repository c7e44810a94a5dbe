/*
 * failures.c
 *		Failed verifications per client address, for alerts.
 *
 *		One entry per (database, address) that failed in the current minute,
 *		in its own dshash table of the apikey area, at most
 *		apikey.max_tracked_clients of them.  Counting a failure takes the
 *		partition lock in shared mode and updates the entry with atomics
 *		(the minute and its count are one 64-bit word, so a minute turning
 *		over never loses or resets a concurrent count): clients failing from
 *		the same address never wait for each other.  Only inserting a new
 *		address, and the launcher's and the flush's passes, lock an entry
 *		exclusively, which excludes the atomic updates.  A new address may
 *		insert, and once the bound is reached further new addresses are not
 *		tracked (counted as "untracked") until the launcher's housekeeping
 *		removes entries of past minutes.  Nothing on the request path scans
 *		the table or waits for a lock that valid verifications take, so a
 *		flood of failures from millions of addresses costs its sender, not
 *		other clients.
 *
 *		When an address reaches apikey.alert_failures in a minute, its entry
 *		gets a pending alert; a visit of the database records it (flush.c)
 *		and a pending alert keeps the entry alive until then.  As with
 *		pending counts, taking an alert only marks it; it is cleared when the
 *		recording transaction commits and pending again if it aborts.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "apikey.h"
#include "area.h"
#include "compat.h"
#include "failures.h"

typedef enum ApikeyAlertState
{
	APIKEY_ALERT_NONE = 0,
	APIKEY_ALERT_PENDING,		/* raised, not recorded yet */
	APIKEY_ALERT_TAKEN			/* being recorded by alert_owner */
} ApikeyAlertState;

typedef struct ApikeyClientEntry
{
	ApikeyClientAddr key;		/* hash key: must be first */
	pg_atomic_uint64 minute_count;	/* minute number << 32 | failures in it */
	pg_atomic_uint32 alert_state;
	int32		alert_owner;	/* procno, while TAKEN */
	int32		alert_failures; /* written by the raiser only */
	pg_atomic_uint64 alert_minute;	/* minute number an alert was raised for */
} ApikeyClientEntry;

/* Minutes since the PostgreSQL epoch: fits 32 bits for 8,000 years. */
static inline uint32
apikey_minute_number(TimestampTz now)
{
	return (uint32) (now / USECS_PER_MINUTE);
}

static inline uint32
apikey_mc_minute(uint64 mc)
{
	return (uint32) (mc >> 32);
}

static inline int32
apikey_mc_count(uint64 mc)
{
	return (int32) (mc & PG_INT32_MAX);
}

typedef struct ApikeyFailuresShared
{
	pg_atomic_uint32 entries;
	pg_atomic_uint64 untracked;
} ApikeyFailuresShared;

static ApikeyFailuresShared *apikey_fs = NULL;

void
apikey_failures_register(void)
{
	dshash_parameters params = {
		sizeof(ApikeyClientAddr), sizeof(ApikeyClientEntry),
		dshash_memcmp, dshash_memhash APIKEY_DSHASH_COPY_FUNCTION
	};

	apikey_area_register_table(APIKEY_TABLE_CLIENTS, &params);
}

Size
apikey_failures_shmem_size(void)
{
	return MAXALIGN(sizeof(ApikeyFailuresShared));
}

void
apikey_failures_shmem_init(void)
{
	bool		found;

	apikey_fs = ShmemInitStruct("apikey failures", sizeof(ApikeyFailuresShared), &found);
	if (!found)
	{
		pg_atomic_init_u32(&apikey_fs->entries, 0);
		pg_atomic_init_u64(&apikey_fs->untracked, 0);
	}
}

Size
apikey_failures_entry_bytes(void)
{
	return apikey_area_entry_bytes(sizeof(ApikeyClientEntry));
}

static void
apikey_client_key(ApikeyClientAddr *key, Oid dbid, const inet *addr)
{
	memset(key, 0, sizeof(*key));
	key->dbid = dbid;
	key->family = ip_family(addr);
	key->bits = ip_bits(addr);
	memcpy(key->addr, ip_addr(addr), Min(ip_addrsize((inet *) addr), sizeof(key->addr)));
}

/* The address as an inet datum (palloc'd). */
inet *
apikey_client_inet(const ApikeyClientAddr *client)
{
	inet	   *dst = palloc0(sizeof(inet));
	int			size = client->family == PGSQL_AF_INET ? 4 : 16;

	ip_family(dst) = client->family;
	ip_bits(dst) = client->bits;
	memcpy(ip_addr(dst), client->addr, size);
	SET_VARSIZE(dst, VARHDRSZ + offsetof(inet_struct, ipaddr) + size);
	return dst;
}

typedef struct ApikeyClientInit
{
	bool		inserted;
} ApikeyClientInit;

static void
apikey_client_entry_init(void *entry, void *arg)
{
	ApikeyClientEntry *e = entry;

	memset((char *) e + sizeof(ApikeyClientAddr), 0,
		   sizeof(ApikeyClientEntry) - sizeof(ApikeyClientAddr));
	pg_atomic_init_u64(&e->minute_count, 0);
	pg_atomic_init_u32(&e->alert_state, APIKEY_ALERT_NONE);
	pg_atomic_init_u64(&e->alert_minute, 0);
	((ApikeyClientInit *) arg)->inserted = true;
}

static bool
apikey_failures_reserve(void)
{
	uint32		before = pg_atomic_fetch_add_u32(&apikey_fs->entries, 1);

	if (before >= (uint32) apikey_max_tracked_clients)
	{
		pg_atomic_fetch_sub_u32(&apikey_fs->entries, 1);
		return false;
	}
	return true;
}

/*
 * Count one failed verification from addr (already normalized: see
 * apikey_normalize_client).  Returns true when this failure raised an
 * alert, so that the caller tells the launcher the database needs a visit.
 */
bool
apikey_failures_count(Oid dbid, const inet *addr, TimestampTz now)
{
	dshash_table *t;
	ApikeyClientAddr key;
	ApikeyClientEntry *e = NULL;
	uint32		minute = apikey_minute_number(now);
	uint64		mc;
	uint64		next;
	int32		count;
	bool		raised = false;

	if (apikey_alert_failures <= 0)
		return false;
	t = apikey_area_table(APIKEY_TABLE_CLIENTS);
	apikey_client_key(&key, dbid, addr);
	for (int attempt = 0; attempt < 2 && e == NULL; attempt++)
	{
		ApikeyClientInit init = {false};

		e = dshash_find(t, &key, false);
		if (e != NULL)
			break;
		if (!apikey_failures_reserve())
			break;
		if (!apikey_area_insert(APIKEY_TABLE_CLIENTS, &key, apikey_client_entry_init, &init))
		{
			pg_atomic_fetch_sub_u32(&apikey_fs->entries, 1);
			break;
		}
		if (!init.inserted)
			pg_atomic_fetch_sub_u32(&apikey_fs->entries, 1);
	}
	if (e == NULL)
	{
		pg_atomic_fetch_add_u64(&apikey_fs->untracked, 1);
		return false;
	}

	/* count it in this minute; the first failure of a minute starts it */
	mc = pg_atomic_read_u64(&e->minute_count);
	do
	{
		if (apikey_mc_minute(mc) == minute)
			next = apikey_mc_count(mc) == PG_INT32_MAX ? mc : mc + 1;
		else
			next = ((uint64) minute << 32) | 1;
	} while (!pg_atomic_compare_exchange_u64(&e->minute_count, &mc, next));
	count = apikey_mc_count(next);

	/*
	 * One alert per address and minute.  The state goes NONE -> PENDING by
	 * compare-and-swap, so one failure raises it; it goes back to NONE only
	 * under the exclusive lock (settle), which cannot happen while we hold
	 * the shared one.
	 */
	if (count >= apikey_alert_failures &&
		pg_atomic_read_u64(&e->alert_minute) != minute)
	{
		uint32		expected = APIKEY_ALERT_NONE;

		/*
		 * A session that read alert_minute before the raiser of this minute
		 * wrote it finds the state PENDING here (it cannot have been settled
		 * back to NONE meanwhile), so only one failure raises the alert.
		 */
		if (pg_atomic_compare_exchange_u32(&e->alert_state, &expected,
										   APIKEY_ALERT_PENDING))
		{
			e->alert_failures = count;
			pg_atomic_write_u64(&e->alert_minute, minute);
			raised = true;
		}
	}
	dshash_release_lock(t, e);
	return raised;
}

/*
 * Remove entries of past minutes that hold no alert; run by the launcher,
 * not on the request path.  *pressed: the table is more than half full,
 * so the launcher comes back sooner.
 */
int64
apikey_failures_housekeep(TimestampTz now, bool *pressed)
{
	dshash_seq_status status;
	ApikeyClientEntry *e;
	uint32		minute = apikey_minute_number(now);
	int64		removed = 0;

	dshash_seq_init(&status, apikey_area_table(APIKEY_TABLE_CLIENTS), true);
	while ((e = dshash_seq_next(&status)) != NULL)
	{
		if (apikey_mc_minute(pg_atomic_read_u64(&e->minute_count)) < minute &&
			pg_atomic_read_u32(&e->alert_state) == APIKEY_ALERT_NONE)
		{
			dshash_delete_current(&status);
			pg_atomic_fetch_sub_u32(&apikey_fs->entries, 1);
			removed++;
		}
	}
	dshash_seq_term(&status);
	*pressed = pg_atomic_read_u32(&apikey_fs->entries) >
		(uint32) apikey_max_tracked_clients / 2;
	return removed;
}

void
apikey_failures_forget_database(Oid dbid)
{
	dshash_seq_status status;
	ApikeyClientEntry *e;

	dshash_seq_init(&status, apikey_area_table(APIKEY_TABLE_CLIENTS), true);
	while ((e = dshash_seq_next(&status)) != NULL)
	{
		if (e->key.dbid == dbid)
		{
			dshash_delete_current(&status);
			pg_atomic_fetch_sub_u32(&apikey_fs->entries, 1);
		}
	}
	dshash_seq_term(&status);
}

/*
 * Copy up to max pending alerts of dbid into buf and mark them taken by
 * this backend, counting them in *n as it goes; *more when some were left.
 * The caller settles them.
 */
void
apikey_alerts_take(Oid dbid, ApikeyAlert *buf, int max, int *n, bool *more)
{
	dshash_seq_status status;
	ApikeyClientEntry *e;

	*more = false;
	dshash_seq_init(&status, apikey_area_table(APIKEY_TABLE_CLIENTS), true);
	while ((e = dshash_seq_next(&status)) != NULL)
	{
		uint64		mc;
		uint32		alert_minute;

		if (e->key.dbid != dbid ||
			pg_atomic_read_u32(&e->alert_state) != APIKEY_ALERT_PENDING)
			continue;
		if (*n == max)
		{
			*more = true;
			break;
		}
		mc = pg_atomic_read_u64(&e->minute_count);
		alert_minute = (uint32) pg_atomic_read_u64(&e->alert_minute);
		buf[*n].client = e->key;
		/* the count so far in the alert's minute, at least the threshold */
		buf[*n].failures = apikey_mc_minute(mc) == alert_minute ?
			apikey_mc_count(mc) : e->alert_failures;
		buf[*n].minute = (TimestampTz) alert_minute * USECS_PER_MINUTE;
		pg_atomic_write_u32(&e->alert_state, APIKEY_ALERT_TAKEN);
		e->alert_owner = apikey_my_procno();
		(*n)++;
	}
	dshash_seq_term(&status);
}

/*
 * recorded: the alerts are in a table row being committed; else pending
 * again (also after they were settled as recorded, if the commit failed).
 */
void
apikey_alerts_settle(const ApikeyAlert *alerts, int n, bool recorded)
{
	dshash_table *t = apikey_area_table(APIKEY_TABLE_CLIENTS);
	int			me = apikey_my_procno();

	for (int i = 0; i < n; i++)
	{
		ApikeyClientEntry *e = dshash_find(t, &alerts[i].client, true);
		uint32		state;

		if (e == NULL)
			continue;
		state = pg_atomic_read_u32(&e->alert_state);

		/*
		 * Settled as recorded before the commit (flush.c), an alert is NONE
		 * with this backend still its owner, until the commit does happen.
		 */
		if (e->alert_owner == me &&
			(state == APIKEY_ALERT_TAKEN || (!recorded && state == APIKEY_ALERT_NONE)))
			pg_atomic_write_u32(&e->alert_state,
								recorded ? APIKEY_ALERT_NONE : APIKEY_ALERT_PENDING);
		dshash_release_lock(t, e);
	}
}

void
apikey_failures_totals(ApikeyFailureTotals *totals)
{
	totals->entries = pg_atomic_read_u32(&apikey_fs->entries);
	totals->untracked = (int64) pg_atomic_read_u64(&apikey_fs->untracked);
}
