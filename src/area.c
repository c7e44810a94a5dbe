/*
 * area.c
 *		The DSA area behind apikey's shared tables and the sessions' journals
 *		of pending counts, and the one way memory is taken from it.
 *
 *		The postmaster creates the area in a small piece of plain shared
 *		memory, as pgstat_shmem.c does (the postmaster cannot use dynamic
 *		shared memory), and creates one dshash table per registered kind in
 *		it.  Every other process attaches on first use.  The area then grows
 *		in dynamic shared memory segments as entries and journal chunks are
 *		added, so a server with a thousand keys in use holds a few hundred
 *		kilobytes, not what apikey.max_tracked_keys could need.  Space that
 *		removed entries and freed chunks leave is reused, but dsa gives a
 *		segment back only when nothing is left in it and dshash never
 *		shrinks its buckets: after a burst of keys the area keeps about the
 *		peak of its tables until the server restarts, as PostgreSQL's own
 *		statistics area does.
 *
 *		Growing can fail: /dev/shm is 64 MB in a default container, and dsa
 *		raises an ERROR when it cannot create a segment.  Verification must
 *		never raise an ERROR for that, so apikey_area_insert and
 *		apikey_area_allocate catch it, release what the failed call held,
 *		and answer "no room", which the callers treat exactly like reaching
 *		their bound.  Finding and updating an existing entry allocates
 *		nothing.  After a failure nothing is tried for a second, so that a
 *		full /dev/shm does not cost a failed segment creation per request.
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "area.h"
#include "compat.h"

/* Plain shared memory the area starts in; it grows in DSM segments. */
#define APIKEY_AREA_INITIAL_SIZE	(1024 * 1024)
/* How long inserts are not tried after running out of memory. */
#define APIKEY_AREA_BACKOFF_USEC	USECS_PER_SEC
/* After running out, shared memory counts as short for this long. */
#define APIKEY_AREA_PRESSED_USEC	(60 * USECS_PER_SEC)
/* At most one LOG line per this long about running out of memory. */
#define APIKEY_AREA_WARN_USEC		(60 * USECS_PER_SEC)

typedef struct ApikeyAreaShared
{
	int			dsa_tranche;
	int			table_tranche;
	dshash_table_handle handles[APIKEY_NUM_TABLES];
	pg_atomic_uint64 exhausted_until;	/* TimestampTz: no insert before */
	pg_atomic_uint64 warned_at; /* TimestampTz of the last LOG line */
	char		raw_area[FLEXIBLE_ARRAY_MEMBER];	/* the in-place DSA area */
} ApikeyAreaShared;

static ApikeyAreaShared *apikey_area_shared = NULL;

/* Registered at _PG_init by each table's module. */
static dshash_parameters apikey_table_params[APIKEY_NUM_TABLES];
static bool apikey_table_registered[APIKEY_NUM_TABLES];

/* This process's attachment, made on first use. */
static dsa_area *apikey_dsa = NULL;
static dshash_table *apikey_tables[APIKEY_NUM_TABLES];

void
apikey_keyref_init(ApikeyKeyRef *ref, Oid dbid, const char *key_id)
{
	memset(ref, 0, sizeof(*ref));
	ref->dbid = dbid;
	strlcpy(ref->key_id, key_id, sizeof(ref->key_id));
}

void
apikey_area_register_table(ApikeyTableKind kind, const dshash_parameters *params)
{
	Assert(kind >= 0 && kind < APIKEY_NUM_TABLES);
	apikey_table_params[kind] = *params;
	apikey_table_registered[kind] = true;
}

Size
apikey_area_shmem_size(void)
{
	return add_size(MAXALIGN(offsetof(ApikeyAreaShared, raw_area)),
					APIKEY_AREA_INITIAL_SIZE);
}

/*
 * Create the area and its tables; in the postmaster, at every (re)start of
 * shared memory.  A backend started later only finds what is here.
 */
void
apikey_area_shmem_init(void)
{
	bool		found;

	apikey_area_shared = ShmemInitStruct("apikey area", apikey_area_shmem_size(),
										 &found);
	if (!found)
	{
		dsa_area   *dsa;

		apikey_area_shared->dsa_tranche = LWLockNewTrancheId();
		apikey_area_shared->table_tranche = LWLockNewTrancheId();
		pg_atomic_init_u64(&apikey_area_shared->exhausted_until, 0);
		pg_atomic_init_u64(&apikey_area_shared->warned_at, 0);

		dsa = dsa_create_in_place(apikey_area_shared->raw_area,
								  APIKEY_AREA_INITIAL_SIZE,
								  apikey_area_shared->dsa_tranche, NULL);
		dsa_pin(dsa);
		/* The tables' first buckets must fit in plain shared memory. */
		dsa_set_size_limit(dsa, APIKEY_AREA_INITIAL_SIZE);
		for (int i = 0; i < APIKEY_NUM_TABLES; i++)
		{
			dshash_table *t;

			if (!apikey_table_registered[i])
				elog(ERROR, "apikey table %d was not registered", i);
			apikey_table_params[i].tranche_id = apikey_area_shared->table_tranche;
			t = dshash_create(dsa, &apikey_table_params[i], NULL);
			apikey_area_shared->handles[i] = dshash_get_hash_table_handle(t);
			dshash_detach(t);
		}
		dsa_set_size_limit(dsa, (size_t) -1);
		dsa_detach(dsa);
	}
}

bool
apikey_area_ready(void)
{
	return apikey_area_shared != NULL;
}

/*
 * Verification needs the counters; without them it would silently skip
 * rate limits, so it refuses instead (the contract: never a half-mode).
 */
void
apikey_require_preload(void)
{
	if (apikey_area_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("apikey must be loaded via shared_preload_libraries"),
				 errdetail("Key verification counts usage and enforces rate limits in shared memory."),
				 errhint("Add apikey to shared_preload_libraries in postgresql.conf, "
						 "e.g. shared_preload_libraries = 'apikey', and restart the server.")));
}

int
apikey_area_tranche(void)
{
	return apikey_area_shared->table_tranche;
}

/* Attach the area in this process, for the rest of its life. */
static void
apikey_area_attach(void)
{
	MemoryContext old;

	Assert(apikey_area_shared != NULL);
	old = MemoryContextSwitchTo(TopMemoryContext);
	LWLockRegisterTranche(apikey_area_shared->dsa_tranche, "apikey area");
	LWLockRegisterTranche(apikey_area_shared->table_tranche, "apikey tables");
	apikey_dsa = dsa_attach_in_place(apikey_area_shared->raw_area, NULL);
	dsa_pin_mapping(apikey_dsa);
	MemoryContextSwitchTo(old);
}

/* The area itself, attached in this process. */
dsa_area *
apikey_area_dsa(void)
{
	if (apikey_dsa == NULL)
		apikey_area_attach();
	return apikey_dsa;
}

dshash_table *
apikey_area_table(ApikeyTableKind kind)
{
	if (apikey_tables[kind] == NULL)
	{
		dsa_area   *dsa = apikey_area_dsa();
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		apikey_table_params[kind].tranche_id = apikey_area_shared->table_tranche;
		apikey_tables[kind] = dshash_attach(dsa, &apikey_table_params[kind],
											apikey_area_shared->handles[kind], NULL);
		MemoryContextSwitchTo(old);
	}
	return apikey_tables[kind];
}

/*
 * Bytes the area holds (plain and dynamic shared memory), or 0 where this
 * PostgreSQL cannot tell; the callers then show their own estimate.
 */
Size
apikey_area_bytes(void)
{
#ifdef APIKEY_HAVE_DSA_GET_TOTAL_SIZE
	return dsa_get_total_size(apikey_area_dsa());
#else
	return 0;
#endif
}

/*
 * What one entry of entry_size bytes takes in a table: dsa rounds its item
 * (dshash's header and the entry) up to a size class (these are dsa.c's,
 * up to 1 kB), and the table keeps about one 8-byte bucket per entry.
 */
Size
apikey_area_entry_bytes(Size entry_size)
{
	static const uint16 size_classes[] = {
		8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256,
		320, 384, 448, 512, 640, 768, 896, 1024
	};
	Size		item = APIKEY_DSHASH_ITEM_HEADER + MAXALIGN(entry_size);

	for (int i = 0; i < lengthof(size_classes); i++)
	{
		if (item <= size_classes[i])
			return size_classes[i] + sizeof(dsa_pointer);
	}
	return item + sizeof(dsa_pointer);
}

/* Did an insert run out of memory less than a second ago? */
bool
apikey_area_exhausted(void)
{
	uint64		until = pg_atomic_read_u64(&apikey_area_shared->exhausted_until);

	return until != 0 && (uint64) GetCurrentTimestamp() < until;
}

/*
 * Did an insert run out of memory in the last minute?  Then whatever can be
 * freed early is (empty pending entries, ended windows: pending.c, the
 * launcher's housekeeping), not after the usual delays.
 */
bool
apikey_area_pressed(void)
{
	uint64		until = pg_atomic_read_u64(&apikey_area_shared->exhausted_until);

	return until != 0 &&
		(uint64) GetCurrentTimestamp() < until - APIKEY_AREA_BACKOFF_USEC + APIKEY_AREA_PRESSED_USEC;
}

/* Errors that mean "no more shared memory", as opposed to a bug. */
static bool
apikey_is_out_of_memory(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_OUT_OF_MEMORY ||
		sqlerrcode == ERRCODE_DISK_FULL ||
		sqlerrcode == ERRCODE_INSUFFICIENT_RESOURCES ||
		sqlerrcode == ERRCODE_CONFIGURATION_LIMIT_EXCEEDED;
}

static void
apikey_note_exhausted(ErrorData *edata)
{
	TimestampTz now = GetCurrentTimestamp();
	uint64		warned = pg_atomic_read_u64(&apikey_area_shared->warned_at);

	pg_atomic_write_u64(&apikey_area_shared->exhausted_until,
						(uint64) (now + APIKEY_AREA_BACKOFF_USEC));
	if ((uint64) now >= warned + APIKEY_AREA_WARN_USEC &&
		pg_atomic_compare_exchange_u64(&apikey_area_shared->warned_at, &warned,
									   (uint64) now))
		ereport(LOG,
				(errmsg("apikey ran out of dynamic shared memory: %s", edata->message),
				 errdetail("New keys and client addresses are treated as if apikey.max_tracked_keys "
						   "or apikey.max_tracked_clients had been reached: rate-limited keys are "
						   "answered RATE_LIMITED until memory frees up."),
				 errhint("Give /dev/shm more room, or lower apikey.max_tracked_keys.")));
}

/*
 * The resource owner an insert runs under.  A failed dsm_create leaves its
 * half-made segment registered with the current resource owner; with our
 * own, we release it at once instead of leaving it to the caller's
 * transaction (which would report it as leaked).  A segment that is made
 * is pinned by dsa (our mapping is pinned) and leaves the owner empty.
 */
static ResourceOwner
apikey_insert_owner(void)
{
	static ResourceOwner owner = NULL;

	if (owner == NULL)
		owner = ResourceOwnerCreate(NULL, "apikey area insert");
	return owner;
}

/*
 * Run fn(arg) so that running out of shared memory in it is answered with
 * false, never an ERROR.  Only dsa's making a new segment (dsm_create, in
 * dsa_allocate or in dshash's resize) can run out, and neither dsa nor
 * dshash has changed anything by then.  So instead of a subtransaction per
 * call (a quarter of what an insert cost: 0.7 of 2.8 us, measured in one
 * backend at a million keys), the failure is caught here and cleaned up as
 * AbortSubTransaction would clean it up: the LWLocks the failed call held
 * (a partition, the area and its size-class locks) are released, and the
 * half-made segment with our own resource owner.  The caller holds no
 * LWLock when it calls this (none of apikey's request paths do):
 * LWLockReleaseAll releases all.  Errors that are not "out of memory" are
 * raised again after the cleanup.  After a failure nothing is tried for a
 * second.
 */
static bool
apikey_area_guarded(void (*fn) (void *arg), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ResourceOwner insert_owner = apikey_insert_owner();
	volatile bool ok = false;

	if (apikey_area_exhausted())
		return false;

	CurrentResourceOwner = insert_owner;
	PG_TRY();
	{
		fn(arg);
		ok = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* errfinish has reset the interrupt holdoff count, as for any ERROR */
		LWLockReleaseAll();
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		/* as for an auxiliary process's owner: no parent, so "top level" */
		ResourceOwnerRelease(insert_owner, RESOURCE_RELEASE_BEFORE_LOCKS, false, true);
		ResourceOwnerRelease(insert_owner, RESOURCE_RELEASE_LOCKS, false, true);
		ResourceOwnerRelease(insert_owner, RESOURCE_RELEASE_AFTER_LOCKS, false, true);
		CurrentResourceOwner = owner;
		if (!apikey_is_out_of_memory(edata->sqlerrcode))
			ReThrowError(edata);
		apikey_note_exhausted(edata);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	CurrentResourceOwner = owner;
	return ok;
}

typedef struct ApikeyInsertCall
{
	dshash_table *table;
	const void *key;
	ApikeyEntryInit init;
	void	   *arg;
} ApikeyInsertCall;

static void
apikey_insert_call(void *arg)
{
	ApikeyInsertCall *c = arg;
	bool		found;
	void	   *entry = dshash_find_or_insert(c->table, c->key, &found);

	if (!found)
		c->init(entry, c->arg);
	dshash_release_lock(c->table, entry);
}

/*
 * Make sure an entry for key exists in the table of kind, creating it with
 * init(entry, arg) if need be.  Returns false, never an ERROR, when there
 * is no shared memory for it.  Takes and releases the partition lock: the
 * caller finds the entry again to use it (it may meanwhile have been
 * removed, which callers treat as a retry).
 */
bool
apikey_area_insert(ApikeyTableKind kind, const void *key,
				   ApikeyEntryInit init, void *arg)
{
	ApikeyInsertCall c = {apikey_area_table(kind), key, init, arg};

	return apikey_area_guarded(apikey_insert_call, &c);
}

typedef struct ApikeyAllocateCall
{
	Size		size;
	dsa_pointer result;
} ApikeyAllocateCall;

static void
apikey_allocate_call(void *arg)
{
	ApikeyAllocateCall *c = arg;

	c->result = dsa_allocate(apikey_dsa, c->size);
}

/*
 * Allocate size bytes in the area; InvalidDsaPointer, never an ERROR, when
 * there is no shared memory for them.
 */
dsa_pointer
apikey_area_allocate(Size size)
{
	ApikeyAllocateCall c = {size, InvalidDsaPointer};

	(void) apikey_area_dsa();
	if (!apikey_area_guarded(apikey_allocate_call, &c))
		return InvalidDsaPointer;
	return c.result;
}
