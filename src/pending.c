/*
 * pending.c
 *		Usage counts not yet written to the tables.
 *
 *		Verification writes no row: it adds to its key's entry in a dshash
 *		table of the apikey area, under the entry's partition lock.  The table
 *		is split in stripes by a hash of the key_id (area.h), so that a flush
 *		that takes counts in chunks walks it about once.  An entry
 *		holds two hourly slots (an hour can turn over between flushes), the
 *		denials by code, and when it was last counted into.  Entries are
 *		created as keys are used, up to apikey.max_tracked_keys of them, and
 *		removed by a flush once they have been empty and idle for a minute
 *		(at once when the table is nearly full, or shared memory ran out in
 *		the last minute): memory follows use.  A key
 *		that finds no room is still answered; its counts go to its
 *		database's overflow totals (shown by apikey_stats, not attributable
 *		to a key).
 *
 *		Flushing copies counts out and subtracts them only when the copy is
 *		durable.  A flush copies an entry's counts into the entry's "held"
 *		slots (leaving them in place, so readers still see them), with its
 *		transaction id, and marks the entry as its own; when its transaction
 *		has committed, it subtracts what it copied (counts added meanwhile
 *		stay) and leaves the held copy, now "logged", for readers.  If the
 *		transaction aborts, it only lets go of the entry: nothing was removed,
 *		so nothing has to be given back, and nothing needs memory that might
 *		no longer be there.  An entry marked by a flush is skipped by other
 *		flushes and never removed, so a count is logged exactly once.
 *
 *		Readers are exact: the held copy and its transaction id tell a reader
 *		whose snapshot sees the log row that the copy is in the log (so an
 *		in-flight copy is not counted twice), and a reader whose snapshot
 *		does not see it yet that the copy is not (so a copy already
 *		subtracted is added back).  A logged copy is dropped at the entry's
 *		next flush, a flush interval later; an empty entry whose logged copy
 *		every snapshot sees (its transaction is older than the oldest xmin)
 *		can be removed.
 *
 *		Nothing allocates or can raise an ERROR while a partition lock is
 *		held.
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "access/transam.h"
#include "access/xact.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "area.h"
#include "compat.h"
#include "pending.h"

/* An emptied entry is kept this long, so a key in steady use keeps it. */
#define APIKEY_PENDING_IDLE_USEC	(60 * USECS_PER_SEC)
/* Databases with their own overflow totals; the rest share one. */
#define APIKEY_OVERFLOW_DBS			32

/*
 * The denials a known key can get: every code from REVOKED on (a MALFORMED
 * or NOT_FOUND token finds no key).  An entry keeps only these, which puts
 * its dshash item at 384 bytes, one of dsa's size classes; with a counter
 * for every code it was 392 bytes, which dsa rounds up to 448.
 */
#define APIKEY_FIRST_KEY_DENIAL		APIKEY_REVOKED
#define APIKEY_KEY_DENIALS			(APIKEY_NUM_CODES - APIKEY_FIRST_KEY_DENIAL)

/*
 * What a verification writes comes right after the key, so that counting a
 * valid request touches the item's first two cache lines only.
 */
typedef struct ApikeyPendingEntry
{
	ApikeyKeyRef key;			/* hash key: must be first */
	TimestampTz touched;		/* last counted into */
	ApikeyUsageSlot slot[APIKEY_PENDING_SLOTS]; /* [0] newest hour */
	ApikeyUsageSlot held[APIKEY_PENDING_SLOTS]; /* what a flush copied */
	TransactionId held_xid;		/* its transaction; Invalid: no copy */
	int32		owner;			/* procno of the flush in flight, -1 */
	int32		denied[APIKEY_KEY_DENIALS]; /* by code, from FIRST_KEY_DENIAL */
} ApikeyPendingEntry;

StaticAssertDecl(APIKEY_DSHASH_ITEM_HEADER + MAXALIGN(sizeof(ApikeyPendingEntry)) <= 384,
				 "a pending-counts item fits dsa's 384-byte size class");

typedef struct ApikeyOverflowSlot
{
	slock_t		mutex;
	Oid			dbid;			/* InvalidOid: free, or the shared last slot */
	ApikeyOverflowCounts counts;
} ApikeyOverflowSlot;

typedef struct ApikeyPendingShared
{
	pg_atomic_uint32 entries;
	pg_atomic_uint64 by_code[APIKEY_NUM_CODES]; /* verifications since start */
	ApikeyOverflowSlot overflow[APIKEY_OVERFLOW_DBS];
} ApikeyPendingShared;

static ApikeyPendingShared *apikey_pd = NULL;

/* ---- stripes ------------------------------------------------------------ */

static inline ApikeyTableKind
apikey_pending_kind(int stripe)
{
	return (ApikeyTableKind) (APIKEY_TABLE_PENDING + stripe);
}

void
apikey_pending_register(void)
{
	dshash_parameters params = {
		sizeof(ApikeyKeyRef), sizeof(ApikeyPendingEntry),
		dshash_memcmp, dshash_memhash APIKEY_DSHASH_COPY_FUNCTION
	};

	for (int s = 0; s < APIKEY_PENDING_STRIPES; s++)
		apikey_area_register_table(apikey_pending_kind(s), &params);
}

static inline dshash_table *
apikey_pending_table(int stripe)
{
	return apikey_area_table(apikey_pending_kind(stripe));
}

/* The stripe of a key: from its key_id, independent of dshash's own hash. */
static inline int
apikey_pending_stripe_of(const ApikeyKeyRef *key)
{
	uint32		h = hash_bytes((const unsigned char *) key->key_id, strlen(key->key_id));

	return (int) (h % APIKEY_PENDING_STRIPES);
}

/*
 * A walk over the stripes from the given one to the last, as one dshash
 * walk: it holds one partition lock at a time, and nothing else.
 */
typedef struct ApikeyPendingWalk
{
	dshash_seq_status status;
	int			stripe;			/* the stripe being walked */
	bool		exclusive;
	bool		active;			/* status is initialized for stripe */
} ApikeyPendingWalk;

static void
apikey_walk_init(ApikeyPendingWalk *w, int first_stripe, bool exclusive)
{
	w->stripe = first_stripe;
	w->exclusive = exclusive;
	w->active = false;
}

static ApikeyPendingEntry *
apikey_walk_next(ApikeyPendingWalk *w)
{
	while (w->stripe < APIKEY_PENDING_STRIPES)
	{
		ApikeyPendingEntry *e;

		if (!w->active)
		{
			dshash_seq_init(&w->status, apikey_pending_table(w->stripe), w->exclusive);
			w->active = true;
		}
		e = dshash_seq_next(&w->status);
		if (e != NULL)
			return e;
		dshash_seq_term(&w->status);
		w->active = false;
		w->stripe++;
	}
	return NULL;
}

static void
apikey_walk_delete_current(ApikeyPendingWalk *w)
{
	Assert(w->active && w->exclusive);
	dshash_delete_current(&w->status);
}

static void
apikey_walk_term(ApikeyPendingWalk *w)
{
	if (w->active)
		dshash_seq_term(&w->status);
	w->active = false;
}

Size
apikey_pending_shmem_size(void)
{
	return MAXALIGN(sizeof(ApikeyPendingShared));
}

void
apikey_pending_shmem_init(void)
{
	bool		found;

	apikey_pd = ShmemInitStruct("apikey pending counts", sizeof(ApikeyPendingShared),
								&found);
	if (!found)
	{
		memset(apikey_pd, 0, sizeof(*apikey_pd));
		pg_atomic_init_u32(&apikey_pd->entries, 0);
		for (int c = 0; c < APIKEY_NUM_CODES; c++)
			pg_atomic_init_u64(&apikey_pd->by_code[c], 0);
		for (int i = 0; i < APIKEY_OVERFLOW_DBS; i++)
			SpinLockInit(&apikey_pd->overflow[i].mutex);
	}
}

Size
apikey_pending_entry_bytes(void)
{
	return apikey_area_entry_bytes(sizeof(ApikeyPendingEntry));
}

int64
apikey_pending_entries(void)
{
	return pg_atomic_read_u32(&apikey_pd->entries);
}

/* Every verification's result, for apikey_metrics (server-wide). */
void
apikey_totals_add(ApikeyCode code)
{
	pg_atomic_fetch_add_u64(&apikey_pd->by_code[code], 1);
}

void
apikey_totals_read(int64 by_code[APIKEY_NUM_CODES])
{
	for (int c = 0; c < APIKEY_NUM_CODES; c++)
		by_code[c] = (int64) pg_atomic_read_u64(&apikey_pd->by_code[c]);
}

/* ---- slots -------------------------------------------------------------- */

static inline bool
apikey_slot_empty(const ApikeyUsageSlot *s)
{
	return s->bucket == 0;
}

static bool
apikey_entry_empty(const ApikeyPendingEntry *e)
{
	return apikey_slot_empty(&e->slot[0]) && apikey_slot_empty(&e->slot[1]);
}

/* An entry's denials, by code (the codes no key can get are 0). */
static void
apikey_entry_denials(const ApikeyPendingEntry *e, int32 by_code[APIKEY_NUM_CODES])
{
	memset(by_code, 0, sizeof(int32) * APIKEY_FIRST_KEY_DENIAL);
	memcpy(by_code + APIKEY_FIRST_KEY_DENIAL, e->denied, sizeof(e->denied));
}

/* Add to a denial counter; it stops at the top instead of wrapping. */
static inline void
apikey_denials_add(int32 *counter, int32 n)
{
	*counter = (int32) Min((int64) *counter + n, (int64) PG_INT32_MAX);
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

static TimestampTz
apikey_hour_of(TimestampTz t)
{
	return t - (t % USECS_PER_HOUR);
}

/*
 * The slot that counts for the hour starting at bucket.  Two slots cover an
 * hour turning over between flushes; if flushes have been away for longer,
 * older hours are folded into the older slot.
 */
static ApikeyUsageSlot *
apikey_slot_for(ApikeyPendingEntry *e, TimestampTz bucket)
{
	ApikeyUsageSlot *cur = &e->slot[0];
	ApikeyUsageSlot *old = &e->slot[1];

	if (cur->bucket == bucket)
		return cur;
	if (old->bucket == bucket)
		return old;
	if (apikey_slot_empty(cur))
	{
		cur->bucket = bucket;
		return cur;
	}
	if (bucket < cur->bucket)
	{
		if (apikey_slot_empty(old))
			old->bucket = bucket;
		return old;
	}
	/* a newer hour: the current slot becomes (or joins) the older one */
	if (apikey_slot_empty(old))
		*old = *cur;
	else
		apikey_slot_add(old, cur);
	memset(cur, 0, sizeof(*cur));
	cur->bucket = bucket;
	return cur;
}

/*
 * The slot of a snapshot row that counts for bucket: its own, a free one,
 * or else the older one (as apikey_slot_for folds old hours).
 */
static ApikeyUsageSlot *
apikey_row_slot_for(ApikeyPendingRow *r, TimestampTz bucket)
{
	for (int s = 0; s < APIKEY_PENDING_SLOTS; s++)
		if (r->slot[s].bucket == bucket)
			return &r->slot[s];
	for (int s = 0; s < APIKEY_PENDING_SLOTS; s++)
		if (apikey_slot_empty(&r->slot[s]))
		{
			r->slot[s].bucket = bucket;
			return &r->slot[s];
		}
	return r->slot[0].bucket < r->slot[1].bucket ? &r->slot[0] : &r->slot[1];
}

/*
 * Take away counts a flush has made durable.  Counts added since it copied
 * them stay.  If the hour was merged into the older slot meanwhile, the
 * counts are taken from there.
 */
static void
apikey_slot_subtract(ApikeyUsageSlot *slots, const ApikeyUsageSlot *copy)
{
	ApikeyUsageSlot *s;

	if (apikey_slot_empty(copy))
		return;
	if (slots[0].bucket == copy->bucket)
		s = &slots[0];
	else if (slots[1].bucket != 0)
		s = &slots[1];
	else
		return;					/* cannot happen: the entry was ours */
	s->requests = Max(s->requests - copy->requests, 0);
	s->denied = Max(s->denied - copy->denied, 0);
	s->responses = Max(s->responses - copy->responses, 0);
	s->client_errors = Max(s->client_errors - copy->client_errors, 0);
	s->server_errors = Max(s->server_errors - copy->server_errors, 0);
	/* avoid a residue of floating-point rounding */
	s->response_ms = s->responses == 0 ? 0 : Max(s->response_ms - copy->response_ms, 0);
	if (s->requests == 0)
		s->last_used = 0;
	if (s->requests == 0 && s->denied == 0 && s->responses == 0)
		memset(s, 0, sizeof(*s));
}

/* ---- the request path --------------------------------------------------- */

static bool
apikey_pending_reserve(void)
{
	uint32		before = pg_atomic_fetch_add_u32(&apikey_pd->entries, 1);

	if (before >= (uint32) apikey_max_tracked_keys)
	{
		pg_atomic_fetch_sub_u32(&apikey_pd->entries, 1);
		return false;
	}
	return true;
}

typedef struct ApikeyPendingInit
{
	bool		inserted;
} ApikeyPendingInit;

static void
apikey_pending_entry_init(void *entry, void *arg)
{
	ApikeyPendingEntry *e = entry;

	memset((char *) e + sizeof(ApikeyKeyRef), 0,
		   sizeof(ApikeyPendingEntry) - sizeof(ApikeyKeyRef));
	e->owner = -1;
	e->touched = GetCurrentTimestamp();
	((ApikeyPendingInit *) arg)->inserted = true;
}

/*
 * The entry of a key, locked exclusively, created if need be; NULL when
 * there is no room.  The caller releases it with dshash_release_lock(*t, e).
 */
static ApikeyPendingEntry *
apikey_pending_entry(Oid dbid, const char *key_id, dshash_table **t)
{
	ApikeyKeyRef key;
	int			stripe;

	apikey_keyref_init(&key, dbid, key_id);
	stripe = apikey_pending_stripe_of(&key);
	*t = apikey_pending_table(stripe);
	for (int attempt = 0; attempt < 2; attempt++)
	{
		ApikeyPendingInit init = {false};
		ApikeyPendingEntry *e = dshash_find(*t, &key, true);

		if (e != NULL)
			return e;
		if (!apikey_pending_reserve())
			return NULL;
		if (!apikey_area_insert(apikey_pending_kind(stripe), &key,
								apikey_pending_entry_init, &init))
		{
			pg_atomic_fetch_sub_u32(&apikey_pd->entries, 1);
			return NULL;
		}
		if (!init.inserted)
			pg_atomic_fetch_sub_u32(&apikey_pd->entries, 1);
	}
	return NULL;
}

/* The overflow slot of a database: its own while there are free ones. */
static ApikeyOverflowSlot *
apikey_overflow_slot(Oid dbid)
{
	ApikeyOverflowSlot *shared = &apikey_pd->overflow[APIKEY_OVERFLOW_DBS - 1];

	for (int i = 0; i < APIKEY_OVERFLOW_DBS - 1; i++)
	{
		ApikeyOverflowSlot *o = &apikey_pd->overflow[i];
		bool		mine;

		SpinLockAcquire(&o->mutex);
		if (o->dbid == InvalidOid)
			o->dbid = dbid;
		mine = o->dbid == dbid;
		SpinLockRelease(&o->mutex);
		if (mine)
			return o;
	}
	return shared;
}

static void
apikey_overflow_add(Oid dbid, int64 requests, int64 denied, int64 responses,
					double response_ms)
{
	ApikeyOverflowSlot *o = apikey_overflow_slot(dbid);

	SpinLockAcquire(&o->mutex);
	o->counts.requests += requests;
	o->counts.denied += denied;
	o->counts.responses += responses;
	o->counts.response_ms += response_ms;
	SpinLockRelease(&o->mutex);
}

/*
 * Count one verification of a known key (code is its final result; VALID
 * uses the request counter, anything else is a denial).
 */
void
apikey_pending_count_verify(Oid dbid, const char *key_id, ApikeyCode code,
							TimestampTz now)
{
	dshash_table *t;
	ApikeyPendingEntry *e = apikey_pending_entry(dbid, key_id, &t);
	ApikeyUsageSlot *slot;

	if (e == NULL)
	{
		apikey_overflow_add(dbid, code == APIKEY_VALID, code != APIKEY_VALID, 0, 0);
		return;
	}
	slot = apikey_slot_for(e, apikey_hour_of(now));
	if (code == APIKEY_VALID)
	{
		slot->requests++;
		slot->last_used = now;
	}
	else
	{
		slot->denied++;
		Assert(code >= APIKEY_FIRST_KEY_DENIAL);
		if (code >= APIKEY_FIRST_KEY_DENIAL)	/* always, for a known key */
			apikey_denials_add(&e->denied[code - APIKEY_FIRST_KEY_DENIAL], 1);
	}
	e->touched = now;
	dshash_release_lock(t, e);
}

/* Count one served request reported by apikey_record. */
void
apikey_pending_count_response(Oid dbid, const char *key_id, int32 status_code,
							  double response_ms, TimestampTz now)
{
	dshash_table *t;
	ApikeyPendingEntry *e = apikey_pending_entry(dbid, key_id, &t);
	ApikeyUsageSlot *slot;

	if (e == NULL)
	{
		apikey_overflow_add(dbid, 0, 0, 1, response_ms);
		return;
	}
	slot = apikey_slot_for(e, apikey_hour_of(now));
	slot->responses++;
	slot->response_ms += response_ms;
	if (status_code >= 500)
		slot->server_errors++;
	else if (status_code >= 400)
		slot->client_errors++;
	e->touched = now;
	dshash_release_lock(t, e);
}

/* ---- flushing ----------------------------------------------------------- */

/*
 * Copy the counts of up to max keys of database dbid into buf and mark
 * their entries as this backend's, counting them in *n as it goes.  The walk
 * starts in cursor->stripe and leaves there the stripe where it stopped;
 * cursor->more is set when keys were left (buf full, or entries held by
 * another flush).  Entries that have stayed empty for a minute are removed on
 * the way (at once when the table is nearly full).  The caller must have
 * arranged for apikey_pending_settle to run whatever happens (flush.c's
 * transaction callbacks) before calling this.
 */
void
apikey_pending_take(Oid dbid, ApikeyTakenKey *buf, int max, int *n,
					TimestampTz now, ApikeyTakeCursor *cursor)
{
	ApikeyPendingWalk walk;
	ApikeyPendingEntry *e;
	int			me = apikey_my_procno();
	TransactionId xid = GetTopTransactionId();	/* before any lock */
	bool		pressed = pg_atomic_read_u32(&apikey_pd->entries) >
		(uint32) apikey_max_tracked_keys / 10 * 9 || apikey_area_pressed();
	/* every snapshot sees transactions before this one as ended */
	TransactionId horizon = GetOldestNonRemovableTransactionId(NULL);
	bool		full = false;

	apikey_walk_init(&walk, cursor->stripe, true);
	while ((e = apikey_walk_next(&walk)) != NULL)
	{
		if (e->key.dbid != dbid)
			continue;
		if (e->owner != -1)
		{
			/* another flush (or an earlier chunk of ours) holds it */
			if (e->owner != me)
				cursor->held_elsewhere = true;
			continue;
		}
		if (apikey_entry_empty(e))
		{
			/* a logged copy is for readers only until they all see it */
			if ((pressed || now - e->touched >= APIKEY_PENDING_IDLE_USEC) &&
				(e->held_xid == InvalidTransactionId ||
				 TransactionIdPrecedes(e->held_xid, horizon) ||
				 now - e->touched >= 2 * APIKEY_PENDING_IDLE_USEC))
			{
				apikey_walk_delete_current(&walk);
				pg_atomic_fetch_sub_u32(&apikey_pd->entries, 1);
			}
			continue;
		}
		if (*n == max)
		{
			full = true;
			break;
		}
		buf[*n].key = e->key;
		memcpy(buf[*n].slot, e->slot, sizeof(e->slot));
		apikey_entry_denials(e, buf[*n].denied_by);
		/* an earlier flush's logged copy is seen by everyone by now */
		memcpy(e->held, e->slot, sizeof(e->slot));
		e->held_xid = xid;
		e->owner = me;
		/* counted before the next entry: an ERROR leaves nothing unreleased */
		(*n)++;
	}
	/* the next chunk walks again only the stripe this one stopped in */
	cursor->stripe = walk.stripe;
	apikey_walk_term(&walk);
	cursor->more = full || cursor->held_elsewhere;
}

/*
 * End a flush's hold on the keys it took.  logged: its copy is (about to
 * be) durable, so subtract it; otherwise the counts simply stay.  Never
 * allocates and never raises an ERROR: it runs in transaction callbacks.
 */
void
apikey_pending_settle(const ApikeyTakenKey *keys, int n, bool logged)
{
	int			me = apikey_my_procno();

	for (int i = 0; i < n; i++)
	{
		dshash_table *t = apikey_pending_table(apikey_pending_stripe_of(&keys[i].key));
		ApikeyPendingEntry *e = dshash_find(t, &keys[i].key, true);

		if (e == NULL)
			continue;			/* its database was forgotten meanwhile */
		if (e->owner == me)
		{
			if (logged)
			{
				/* the held copy stays, as the logged part, for readers */
				for (int s = 0; s < APIKEY_PENDING_SLOTS; s++)
					apikey_slot_subtract(e->slot, &keys[i].slot[s]);
				for (int c = 0; c < APIKEY_KEY_DENIALS; c++)
					e->denied[c] = Max(e->denied[c] -
									   keys[i].denied_by[APIKEY_FIRST_KEY_DENIAL + c], 0);
			}
			else
			{
				memset(e->held, 0, sizeof(e->held));
				e->held_xid = InvalidTransactionId;
			}
			e->owner = -1;
		}
		dshash_release_lock(t, e);
	}
}

/* A database was dropped, or the extension left it: its counts go. */
void
apikey_pending_forget_database(Oid dbid)
{
	ApikeyPendingWalk walk;
	ApikeyPendingEntry *e;

	apikey_walk_init(&walk, 0, true);
	while ((e = apikey_walk_next(&walk)) != NULL)
	{
		if (e->key.dbid == dbid)
		{
			apikey_walk_delete_current(&walk);
			pg_atomic_fetch_sub_u32(&apikey_pd->entries, 1);
		}
	}
	apikey_walk_term(&walk);

	for (int i = 0; i < APIKEY_OVERFLOW_DBS - 1; i++)
	{
		ApikeyOverflowSlot *o = &apikey_pd->overflow[i];

		SpinLockAcquire(&o->mutex);
		if (o->dbid == dbid)
		{
			o->dbid = InvalidOid;
			memset(&o->counts, 0, sizeof(o->counts));
		}
		SpinLockRelease(&o->mutex);
	}
}

/* ---- reading ------------------------------------------------------------ */

/*
 * What a row shows to a reader with snapshot snap (see the head comment):
 * the entry's counts, less a copy the reader already sees in the log, plus
 * a copy already subtracted that the reader does not see in the log yet.
 */
static void
apikey_row_as_seen(ApikeyPendingRow *r, const ApikeyUsageSlot *held,
				   TransactionId xid, bool in_flight, Snapshot snap)
{
	bool		logged_visible;

	if (xid == InvalidTransactionId)
		return;
	if (TransactionIdIsCurrentTransactionId(xid))
		logged_visible = true;	/* our own flush: we see our log row */
	else
		logged_visible = !XidInMVCCSnapshot(xid, snap) && TransactionIdDidCommit(xid);
	if (in_flight && logged_visible)
	{
		for (int s = 0; s < APIKEY_PENDING_SLOTS; s++)
			apikey_slot_subtract(r->slot, &held[s]);
	}
	else if (!in_flight && !logged_visible)
	{
		for (int s = 0; s < APIKEY_PENDING_SLOTS; s++)
			if (!apikey_slot_empty(&held[s]))
				apikey_slot_add(apikey_row_slot_for(r, held[s].bucket), &held[s]);
	}
}

/*
 * Every key of dbid with pending counts as a reader with snapshot snap
 * sees them, in palloc'd *rows.  The array is sized before the scan (no
 * allocation under a partition lock); if keys were added meanwhile beyond
 * it, the scan is repeated with more room.
 */
int
apikey_pending_snapshot(Oid dbid, Snapshot snap, ApikeyPendingRow **rows)
{
	for (;;)
	{
		int			cap = (int) Min((int64) pg_atomic_read_u32(&apikey_pd->entries) + 64,
									(int64) (MaxAllocHugeSize / sizeof(ApikeyPendingRow)));
		ApikeyPendingRow *r = palloc_extended(cap * sizeof(ApikeyPendingRow),
											  MCXT_ALLOC_HUGE);
		ApikeyUsageSlot *held = palloc_extended(cap * sizeof(ApikeyUsageSlot[APIKEY_PENDING_SLOTS]),
												MCXT_ALLOC_HUGE);
		TransactionId *xids = palloc_extended(cap * sizeof(TransactionId), MCXT_ALLOC_HUGE);
		bool	   *in_flight = palloc_extended(cap * sizeof(bool), MCXT_ALLOC_HUGE);
		ApikeyPendingWalk walk;
		ApikeyPendingEntry *e;
		int			n = 0;
		bool		full = false;

		apikey_walk_init(&walk, 0, false);
		while ((e = apikey_walk_next(&walk)) != NULL)
		{
			if (e->key.dbid != dbid ||
				(apikey_entry_empty(e) && e->held_xid == InvalidTransactionId))
				continue;
			if (n == cap)
			{
				full = true;
				break;
			}
			memcpy(r[n].key_id, e->key.key_id, sizeof(r[n].key_id));
			memcpy(r[n].slot, e->slot, sizeof(e->slot));
			apikey_entry_denials(e, r[n].denied_by);
			memcpy(&held[n * APIKEY_PENDING_SLOTS], e->held, sizeof(e->held));
			xids[n] = e->held_xid;
			in_flight[n] = e->owner != -1;
			n++;
		}
		apikey_walk_term(&walk);
		if (!full)
		{
			int			kept = 0;

			/* clog lookups after the partition locks are released */
			for (int i = 0; i < n; i++)
			{
				apikey_row_as_seen(&r[i], &held[i * APIKEY_PENDING_SLOTS], xids[i],
								   in_flight[i], snap);
				if (!apikey_slot_empty(&r[i].slot[0]) || !apikey_slot_empty(&r[i].slot[1]))
					r[kept++] = r[i];
			}
			pfree(held);
			pfree(xids);
			pfree(in_flight);
			*rows = r;
			return kept;
		}
		pfree(r);
		pfree(held);
		pfree(xids);
		pfree(in_flight);
		CHECK_FOR_INTERRUPTS();
	}
}

void
apikey_pending_overflow(Oid dbid, ApikeyOverflowCounts *counts)
{
	memset(counts, 0, sizeof(*counts));
	for (int i = 0; i < APIKEY_OVERFLOW_DBS; i++)
	{
		ApikeyOverflowSlot *o = &apikey_pd->overflow[i];

		SpinLockAcquire(&o->mutex);
		if (o->dbid == dbid || i == APIKEY_OVERFLOW_DBS - 1)
		{
			counts->requests += o->counts.requests;
			counts->denied += o->counts.denied;
			counts->responses += o->counts.responses;
			counts->response_ms += o->counts.response_ms;
		}
		SpinLockRelease(&o->mutex);
	}
}

/* ---- the shutdown dump -------------------------------------------------- */

/* Write every entry with counts; returns how many, -1 if writing failed. */
int64
apikey_pending_dump(FILE *file)
{
#define DUMP_BATCH 64
	ApikeyTakenKey batch[DUMP_BATCH];
	ApikeyPendingWalk walk;
	ApikeyPendingEntry *e;
	int			n = 0;
	int64		written = 0;
	bool		ok = true;

	apikey_walk_init(&walk, 0, false);
	while ((e = apikey_walk_next(&walk)) != NULL)
	{
		if (apikey_entry_empty(e))
			continue;
		batch[n].key = e->key;
		memcpy(batch[n].slot, e->slot, sizeof(e->slot));
		apikey_entry_denials(e, batch[n].denied_by);
		if (++n == DUMP_BATCH)
		{
			ok &= fwrite(batch, sizeof(ApikeyTakenKey), n, file) == (size_t) n;
			written += n;
			n = 0;
		}
	}
	apikey_walk_term(&walk);
	if (n > 0)
	{
		ok &= fwrite(batch, sizeof(ApikeyTakenKey), n, file) == (size_t) n;
		written += n;
	}
	return ok ? written : -1;
#undef DUMP_BATCH
}

/* Add saved counts back; false when there is no room for the key. */
bool
apikey_pending_restore(const ApikeyTakenKey *saved)
{
	dshash_table *t;
	ApikeyPendingEntry *e = apikey_pending_entry(saved->key.dbid, saved->key.key_id, &t);

	if (e == NULL)
		return false;
	for (int s = 0; s < APIKEY_PENDING_SLOTS; s++)
	{
		if (!apikey_slot_empty(&saved->slot[s]))
			apikey_slot_add(apikey_slot_for(e, saved->slot[s].bucket), &saved->slot[s]);
	}
	for (int c = 0; c < APIKEY_KEY_DENIALS; c++)
		apikey_denials_add(&e->denied[c], Max(saved->denied_by[APIKEY_FIRST_KEY_DENIAL + c], 0));
	dshash_release_lock(t, e);
	return true;
}
