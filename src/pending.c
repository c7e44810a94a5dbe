/*
 * pending.c
 *		Usage counts not yet written to the tables.
 *
 *		Verification writes no row, and looks nothing up to count: each
 *		session appends a record (key, hour, what to add) to a journal of its
 *		own in the apikey area, a list of fixed-size chunks.  A record of a
 *		key the session counted since the last flush is added to instead of
 *		appended (a local index finds it), so a session verifying twenty
 *		thousand keys writes about that many records per flush, and one
 *		verifying a million keys about one record per verification.  The
 *		journal's spinlock is the session's own (a flush takes it for a
 *		moment), so two sessions never wait for each other,
 *		and what they write is sequential memory: before journals, each
 *		verification looked its key up in a shared table of a million
 *		entries, and that lookup cost two sessions about a tenth of their
 *		throughput (manual, Performance).
 *
 *		A journal outlives its session until its records are logged; a new
 *		session of the same database takes over such a journal, so their
 *		number stays near the number of sessions.  Chunks are taken as
 *		records are appended and freed once logged: memory follows traffic.
 *		The bound: apikey.max_tracked_keys records, plus one chunk per
 *		journal; past it (or when dynamic shared memory runs out) counts go
 *		to the database's overflow totals (shown by apikey_stats, not
 *		attributable to a key).
 *
 *		Flushing claims ranges of records: a range [start, end) with the
 *		flushing transaction's id, marked as that flush's while it runs.
 *		Nothing is removed: if the transaction aborts, its ranges are taken
 *		back and the records are claimed again later; if it commits, the
 *		range stays, with its transaction id, until every snapshot sees that
 *		transaction as committed; then its records are dropped and chunks
 *		wholly before the first kept record are freed.
 *
 *		Readers are exact: a record counts as pending for a reader unless it
 *		lies in a range whose transaction the reader's snapshot sees as
 *		committed (then the reader sees those counts in the usage log).  So
 *		an in-flight flush is not counted twice, and a committed one that
 *		the reader's snapshot does not see yet is not lost.
 *
 *		Nothing allocates or can raise an ERROR while a spinlock is held;
 *		chunks are freed only under the journal's LWLock held exclusively,
 *		which readers and flushes hold shared while they read records.
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "area.h"
#include "compat.h"
#include "launcher_state.h"
#include "pending.h"

/* Databases with their own overflow totals; the rest share one. */
#define APIKEY_OVERFLOW_DBS			32

/*
 * The denials a known key can get: every code from REVOKED on (a MALFORMED
 * or NOT_FOUND token finds no key).  A record keeps only these.
 */
#define APIKEY_FIRST_KEY_DENIAL		APIKEY_REVOKED
#define APIKEY_KEY_DENIALS			(APIKEY_NUM_CODES - APIKEY_FIRST_KEY_DENIAL)

/* One key's counts in one hour, in a journal. */
typedef struct ApikeyRecord
{
	char		key_id[APIKEY_KEY_ID_MAXLEN + 1];
	TimestampTz bucket;			/* start of the hour */
	TimestampTz last_used;		/* latest VALID, 0 = none */
	int64		requests;
	int64		responses;
	double		response_ms;
	int32		client_errors;
	int32		server_errors;
	int32		denied[APIKEY_KEY_DENIALS]; /* by code, from FIRST_KEY_DENIAL */
} ApikeyRecord;

/*
 * Chunks of 32 kB: dsa gives allocations above 8 kB whole pages, so a chunk
 * costs exactly its size, and a session's first chunk is all a server with
 * few keys in use holds per session.
 */
#define APIKEY_CHUNK_BYTES			(32 * 1024)

typedef struct ApikeyChunk
{
	dsa_pointer next;			/* newer chunk, or InvalidDsaPointer */
	uint64		first;			/* position of rec[0] in the journal */
	ApikeyRecord rec[FLEXIBLE_ARRAY_MEMBER];
} ApikeyChunk;

#define APIKEY_CHUNK_RECORDS \
	((APIKEY_CHUNK_BYTES - offsetof(ApikeyChunk, rec)) / sizeof(ApikeyRecord))

/* A claimed range ends at end; it starts where the previous one ends. */
typedef struct ApikeyRange
{
	uint64		end;
	TransactionId xid;			/* the flush that logged (or logs) it */
} ApikeyRange;

/* Ranges a journal keeps; past that, the oldest committed one is dropped. */
#define APIKEY_JOURNAL_RANGES		16

/*
 * Positions count records appended since the journal was taken:
 * kept <= claimed <= head.  [kept, claimed) is covered by the ranges, in
 * order; [claimed, head) is not claimed by any flush yet.
 */
typedef struct ApikeyJournal
{
	LWLock		lock;			/* shared: reading records; exclusive: freeing */
	slock_t		mutex;			/* everything below */
	Oid			dbid;			/* InvalidOid: free */
	int			owner;			/* procno of the session appending, or -1 */
	int			flusher;		/* procno of the flush holding ranges, or -1 */
	dsa_pointer first_chunk;	/* oldest chunk kept */
	dsa_pointer last_chunk;		/* the chunk being appended to */
	uint64		kept;
	uint64		claimed;
	uint64		head;
	int			nranges;
	ApikeyRange ranges[APIKEY_JOURNAL_RANGES];
} ApikeyJournal;

typedef struct ApikeyOverflowSlot
{
	slock_t		mutex;
	Oid			dbid;			/* InvalidOid: free, or the shared last slot */
	ApikeyOverflowCounts counts;
} ApikeyOverflowSlot;

typedef struct ApikeyPendingShared
{
	int			lock_tranche;
	int			njournals;
	pg_atomic_uint32 journals_used;
	pg_atomic_uint32 chunks;	/* allocated, in all journals */
	pg_atomic_uint64 by_code[APIKEY_NUM_CODES]; /* verifications since start */
	ApikeyOverflowSlot overflow[APIKEY_OVERFLOW_DBS];
	ApikeyJournal journals[FLEXIBLE_ARRAY_MEMBER];
} ApikeyPendingShared;

static ApikeyPendingShared *apikey_pd = NULL;

/*
 * A process appending to a journal: the session to its own, or a process
 * reloading the shutdown dump to one per database in turn.
 */
typedef struct ApikeyWriter
{
	int			journal;		/* index, or -1 */
	ApikeyChunk *chunk;			/* the journal's last chunk, mapped */
	dsa_pointer chunk_dp;
} ApikeyWriter;

static ApikeyWriter apikey_session = {-1, NULL, InvalidDsaPointer};
static ApikeyWriter apikey_restorer = {-1, NULL, InvalidDsaPointer};

/*
 * Where the session's unflushed records are, to add to one instead of
 * appending another: the last record of each key, by a hash of its key_id,
 * in sets of four ways (a tag of the hash, and the record's position + 1 in
 * 32 bits: what is not flushed yet lies within 2^32 records of the head;
 * the way with the oldest record is replaced), and the session's last
 * chunks by number (position / APIKEY_CHUNK_RECORDS), with their first
 * positions, so that a way of a freed chunk is never followed.  A way can
 * be stale or another key's: the record's own key and hour decide, and
 * records a flush has claimed are never added to (checked under the
 * spinlock).
 *
 * The sets grow with the keys the session counts between two flushes: 1,024
 * at first (48 kB in all, what a session with up to 1,024 keys keeps), four
 * times as many each time its unflushed records outnumber the sets (past a
 * key a set, a key loses its way to four others too often), up to 16,384
 * (528 kB; before, every session that counted took that much).
 * The index lives in a memory context of its own, "apikey session index",
 * so pg_backend_memory_contexts shows its size.  A grown index starts
 * empty, so the keys counted just before get a second record each; records
 * of one key and hour are summed when logged.  With 20,000 keys in use, 1.2
 * keys per set on average, a key loses its way to four others between two
 * uses about once in thirty.
 */
#define APIKEY_RECENT_SETS_MIN		1024
#define APIKEY_RECENT_SETS_MAX		16384
#define APIKEY_RECENT_WAYS			4
#define APIKEY_SESSION_CHUNKS		1024

typedef struct ApikeyRecentSet
{
	uint32		tag[APIKEY_RECENT_WAYS];
	uint32		pos[APIKEY_RECENT_WAYS];	/* + 1; 0: none */
} ApikeyRecentSet;

typedef struct ApikeyRecentIndex
{
	uint32		nsets;
	bool		full;			/* more unflushed records than sets: grow */
	uint64		chunk_first[APIKEY_SESSION_CHUNKS];	/* + 1; 0: none */
	ApikeyChunk *chunk[APIKEY_SESSION_CHUNKS];
	ApikeyRecentSet set[FLEXIBLE_ARRAY_MEMBER];
} ApikeyRecentIndex;

#define APIKEY_RECENT_BYTES(nsets) \
	(offsetof(ApikeyRecentIndex, set) + (Size) (nsets) * sizeof(ApikeyRecentSet))

/* The session's index (NULL until it counts, or if it could not be had). */
static ApikeyRecentIndex *apikey_recent = NULL;
static MemoryContext apikey_recent_cxt = NULL;

/* Journals: twice the server's processes (sessions, and journals left). */
static int
apikey_njournals(void)
{
	return 2 * MaxBackends + 8;
}

Size
apikey_pending_shmem_size(void)
{
	return add_size(offsetof(ApikeyPendingShared, journals),
					mul_size(apikey_njournals(), sizeof(ApikeyJournal)));
}

void
apikey_pending_shmem_init(void)
{
	bool		found;

	apikey_pd = ShmemInitStruct("apikey pending counts", apikey_pending_shmem_size(),
								&found);
	if (!found)
	{
		memset(apikey_pd, 0, apikey_pending_shmem_size());
		apikey_pd->lock_tranche = LWLockNewTrancheId();
		apikey_pd->njournals = apikey_njournals();
		pg_atomic_init_u32(&apikey_pd->journals_used, 0);
		pg_atomic_init_u32(&apikey_pd->chunks, 0);
		for (int c = 0; c < APIKEY_NUM_CODES; c++)
			pg_atomic_init_u64(&apikey_pd->by_code[c], 0);
		for (int i = 0; i < APIKEY_OVERFLOW_DBS; i++)
			SpinLockInit(&apikey_pd->overflow[i].mutex);
		for (int i = 0; i < apikey_pd->njournals; i++)
		{
			ApikeyJournal *j = &apikey_pd->journals[i];

			LWLockInitialize(&j->lock, apikey_pd->lock_tranche);
			SpinLockInit(&j->mutex);
			j->dbid = InvalidOid;
			j->owner = -1;
			j->flusher = -1;
			j->first_chunk = InvalidDsaPointer;
			j->last_chunk = InvalidDsaPointer;
		}
	}
}

/* Bytes per record, as apikey_metrics shows them (chunks are all records). */
Size
apikey_pending_entry_bytes(void)
{
	return (APIKEY_CHUNK_BYTES + APIKEY_CHUNK_RECORDS - 1) / APIKEY_CHUNK_RECORDS;
}

/* Records held, logged or not, in all journals. */
int64
apikey_pending_entries(void)
{
	int64		n = 0;

	for (int i = 0; i < apikey_pd->njournals; i++)
	{
		ApikeyJournal *j = &apikey_pd->journals[i];

		SpinLockAcquire(&j->mutex);
		if (j->dbid != InvalidOid)
			n += (int64) (j->head - j->kept);
		SpinLockRelease(&j->mutex);
	}
	return n;
}

/* Bytes of the chunks all journals hold. */
Size
apikey_pending_bytes(void)
{
	return (Size) pg_atomic_read_u32(&apikey_pd->chunks) * APIKEY_CHUNK_BYTES;
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

/* Add to a denial counter; it stops at the top instead of wrapping. */
static inline void
apikey_denials_add(int32 *counter, int64 n)
{
	*counter = (int32) Min((int64) *counter + n, (int64) PG_INT32_MAX);
}

static TimestampTz
apikey_hour_of(TimestampTz t)
{
	return t - (t % USECS_PER_HOUR);
}

/*
 * The slot of a key's two that counts for bucket: its own, a free one, or
 * else the older one (counts of a third hour, when flushes have been away
 * for that long, go with the older hour).
 */
static ApikeyUsageSlot *
apikey_slot_for(ApikeyUsageSlot slots[APIKEY_PENDING_SLOTS], TimestampTz bucket)
{
	for (int s = 0; s < APIKEY_PENDING_SLOTS; s++)
		if (slots[s].bucket == bucket)
			return &slots[s];
	for (int s = 0; s < APIKEY_PENDING_SLOTS; s++)
		if (apikey_slot_empty(&slots[s]))
		{
			slots[s].bucket = bucket;
			return &slots[s];
		}
	return slots[0].bucket < slots[1].bucket ? &slots[0] : &slots[1];
}

/* Add a record to a key's slots and denials by code. */
static void
apikey_record_add_to(const ApikeyRecord *r, ApikeyUsageSlot slots[APIKEY_PENDING_SLOTS],
					 int32 denied_by[APIKEY_NUM_CODES])
{
	ApikeyUsageSlot *s = apikey_slot_for(slots, r->bucket);

	s->requests += r->requests;
	s->responses += r->responses;
	s->response_ms += r->response_ms;
	s->client_errors += r->client_errors;
	s->server_errors += r->server_errors;
	if (r->last_used > s->last_used)
		s->last_used = r->last_used;
	for (int c = 0; c < APIKEY_KEY_DENIALS; c++)
	{
		s->denied += r->denied[c];
		apikey_denials_add(&denied_by[APIKEY_FIRST_KEY_DENIAL + c], r->denied[c]);
	}
}

/* ---- journals ----------------------------------------------------------- */

static inline ApikeyJournal *
apikey_journal(int i)
{
	return &apikey_pd->journals[i];
}

static inline ApikeyChunk *
apikey_chunk(dsa_pointer dp)
{
	return (ApikeyChunk *) dsa_get_address(apikey_area_dsa(), dp);
}

static void
apikey_journals_attach(void)
{
	static bool registered = false;

	if (!registered)
	{
		LWLockRegisterTranche(apikey_pd->lock_tranche, "apikey journals");
		registered = true;
	}
}

/* The record at pos, which lies at or after chunk c. */
static ApikeyRecord *
apikey_record_at(ApikeyChunk **c, uint64 pos)
{
	while (pos >= (*c)->first + APIKEY_CHUNK_RECORDS)
		*c = apikey_chunk((*c)->next);
	return &(*c)->rec[pos - (*c)->first];
}

/*
 * Take a journal for dbid, to append to: one another session of dbid left,
 * or a free one.  false when all are taken.
 */
static bool
apikey_journal_acquire(ApikeyWriter *w, Oid dbid)
{
	int			me = apikey_my_procno();

	apikey_journals_attach();
	for (int pass = 0; pass < 2; pass++)
	{
		for (int i = 0; i < apikey_pd->njournals; i++)
		{
			ApikeyJournal *j = apikey_journal(i);
			bool		mine = false;
			dsa_pointer last = InvalidDsaPointer;

			SpinLockAcquire(&j->mutex);
			if (pass == 0 && j->dbid == dbid && j->owner == -1)
			{
				j->owner = me;
				last = j->last_chunk;
				mine = true;
			}
			else if (pass == 1 && j->dbid == InvalidOid)
			{
				j->dbid = dbid;
				j->owner = me;
				j->flusher = -1;
				j->first_chunk = j->last_chunk = InvalidDsaPointer;
				j->kept = j->claimed = j->head = 0;
				j->nranges = 0;
				mine = true;
			}
			SpinLockRelease(&j->mutex);
			if (mine)
			{
				if (pass == 1)
					pg_atomic_fetch_add_u32(&apikey_pd->journals_used, 1);
				w->journal = i;
				w->chunk_dp = last;
				w->chunk = DsaPointerIsValid(last) ? apikey_chunk(last) : NULL;
				return true;
			}
		}
	}
	return false;
}

/* Free a journal's chunks from dp on (the caller has unlinked them). */
static void
apikey_chunks_free(dsa_pointer dp, dsa_pointer stop)
{
	while (DsaPointerIsValid(dp) && dp != stop)
	{
		dsa_pointer next = apikey_chunk(dp)->next;

		dsa_free(apikey_area_dsa(), dp);
		pg_atomic_fetch_sub_u32(&apikey_pd->chunks, 1);
		dp = next;
	}
}

/*
 * Free what a journal no longer needs: chunks wholly before its first kept
 * record (not the one being appended to), and the whole journal when nobody
 * appends to it and it holds nothing.  Chunk headers are read without the
 * spinlock (mapping a segment can allocate): under the LWLock held
 * exclusively only the session appending changes the list, at its end.
 */
static void
apikey_journal_trim(ApikeyJournal *j)
{
	dsa_pointer first;
	dsa_pointer last;
	dsa_pointer dp;
	uint64		kept;
	bool		whole;

	LWLockAcquire(&j->lock, LW_EXCLUSIVE);
	SpinLockAcquire(&j->mutex);
	whole = j->dbid != InvalidOid && j->owner == -1 && j->flusher == -1 &&
		j->nranges == 0 && j->kept == j->head;
	first = j->first_chunk;
	last = j->last_chunk;
	kept = j->kept;
	if (whole)
	{
		j->first_chunk = j->last_chunk = InvalidDsaPointer;
		j->dbid = InvalidOid;
	}
	SpinLockRelease(&j->mutex);

	if (whole)
	{
		apikey_chunks_free(first, InvalidDsaPointer);
		pg_atomic_fetch_sub_u32(&apikey_pd->journals_used, 1);
	}
	else if (DsaPointerIsValid(first))
	{
		for (dp = first; dp != last &&
			 apikey_chunk(dp)->first + APIKEY_CHUNK_RECORDS <= kept;)
			dp = apikey_chunk(dp)->next;
		if (dp != first)
		{
			SpinLockAcquire(&j->mutex);
			j->first_chunk = dp;
			SpinLockRelease(&j->mutex);
			apikey_chunks_free(first, dp);
		}
	}
	LWLockRelease(&j->lock);
}

/* Let go of a writer's journal: it is left to the flushes. */
static void
apikey_writer_release(ApikeyWriter *w, bool trim)
{
	ApikeyJournal *j;

	if (w->journal < 0)
		return;
	j = apikey_journal(w->journal);
	SpinLockAcquire(&j->mutex);
	j->owner = -1;
	SpinLockRelease(&j->mutex);
	w->journal = -1;
	w->chunk = NULL;
	w->chunk_dp = InvalidDsaPointer;
	/* an empty journal is freed at once */
	if (trim && !LWLockHeldByMe(&j->lock))
		apikey_journal_trim(j);
}

static void
apikey_journal_exit(int code, Datum arg)
{
	apikey_writer_release(&apikey_session, true);
	apikey_writer_release(&apikey_restorer, true);
}

/*
 * Append a chunk to a journal the writer owns.  false, never an ERROR, at
 * the bound or when there is no shared memory for it.
 */
static bool
apikey_journal_grow(ApikeyWriter *w, ApikeyJournal *j)
{
	uint32		bound = (uint32) Min((int64) apikey_max_tracked_keys / APIKEY_CHUNK_RECORDS + 1 +
									 pg_atomic_read_u32(&apikey_pd->journals_used),
									 (int64) PG_UINT32_MAX);
	uint32		before = pg_atomic_fetch_add_u32(&apikey_pd->chunks, 1);
	dsa_pointer dp;
	ApikeyChunk *c;

	if (before >= bound / 10 * 9)
		apikey_launcher_wake(false);	/* a flush frees chunks */
	if (before >= bound)
	{
		pg_atomic_fetch_sub_u32(&apikey_pd->chunks, 1);
		return false;
	}
	dp = apikey_area_allocate(APIKEY_CHUNK_BYTES);
	if (!DsaPointerIsValid(dp))
	{
		pg_atomic_fetch_sub_u32(&apikey_pd->chunks, 1);
		return false;
	}
	c = apikey_chunk(dp);
	c->next = InvalidDsaPointer;
	SpinLockAcquire(&j->mutex);
	c->first = j->head;
	if (w->chunk != NULL)
		w->chunk->next = dp;
	else
		j->first_chunk = dp;
	j->last_chunk = dp;
	SpinLockRelease(&j->mutex);
	w->chunk = c;
	w->chunk_dp = dp;
	return true;
}

/* Note a chunk the session appends to in its index. */
static void
apikey_recent_add_chunk(ApikeyRecentIndex *idx, ApikeyChunk *c)
{
	int			ci = (c->first / APIKEY_CHUNK_RECORDS) % APIKEY_SESSION_CHUNKS;

	idx->chunk_first[ci] = c->first + 1;
	idx->chunk[ci] = c;
}

/*
 * How far back from the journal's head a way's record is; 0 when the way is
 * empty or its record was claimed by a flush (never to be added to).
 */
static inline uint64
apikey_recent_back(const ApikeyJournal *j, uint32 pos1)
{
	uint64		back = pos1 == 0 ? 0 : (uint32) ((uint32) j->head - (pos1 - 1));

	return back > j->head - j->claimed ? 0 : back;
}

/*
 * The session's unclaimed record of key_id in hour bucket that the set of
 * hash h knows; NULL if none.  Spinlock held: reads the journal's positions
 * and the session's own chunks, nothing else.
 */
static ApikeyRecord *
apikey_recent_find(ApikeyRecentIndex *idx, uint32 h, const ApikeyJournal *j,
				   const char *key_id, TimestampTz bucket)
{
	ApikeyRecentSet *set = &idx->set[h % idx->nsets];

	for (int w = 0; w < APIKEY_RECENT_WAYS; w++)
	{
		uint64		back = apikey_recent_back(j, set->pos[w]);
		uint64		pos;
		int			ci;
		ApikeyRecord *r;

		if (set->tag[w] != h || back == 0)
			continue;
		pos = j->head - back;
		ci = (pos / APIKEY_CHUNK_RECORDS) % APIKEY_SESSION_CHUNKS;
		if (idx->chunk_first[ci] == 0 || pos + 1 < idx->chunk_first[ci] ||
			pos + 1 >= idx->chunk_first[ci] + APIKEY_CHUNK_RECORDS)
			continue;
		r = &idx->chunk[ci]->rec[pos + 1 - idx->chunk_first[ci]];
		if (r->bucket == bucket && strcmp(r->key_id, key_id) == 0)
			return r;
	}
	return NULL;
}

/* Note the record just appended at the head in the set of hash h. */
static void
apikey_recent_note(ApikeyRecentIndex *idx, uint32 h, const ApikeyJournal *j)
{
	ApikeyRecentSet *set = &idx->set[h % idx->nsets];
	int			victim = 0;
	uint64		oldest = 0;

	for (int w = 0; w < APIKEY_RECENT_WAYS; w++)
	{
		uint64		back = apikey_recent_back(j, set->pos[w]);

		if (back == 0)
		{
			victim = w;			/* empty, or claimed by a flush */
			break;
		}
		if (back > oldest)
		{
			oldest = back;
			victim = w;
		}
	}
	set->tag[victim] = h;
	set->pos[victim] = (uint32) (j->head + 1);
	/* a flag only: the index grows outside the spinlock */
	if (idx->nsets < APIKEY_RECENT_SETS_MAX && j->head + 1 - j->claimed > idx->nsets)
		idx->full = true;
}

/*
 * The record to add a count of key_id in hour bucket to, with the journal's
 * spinlock held (the caller adds, then releases it); NULL when there is no
 * room.  idx (the session's index, or NULL) finds the key's unflushed record
 * by the key_id's hash h.
 */
static ApikeyRecord *
apikey_journal_record(ApikeyWriter *w, Oid dbid, const char *key_id,
					  TimestampTz bucket, ApikeyRecentIndex *idx, uint32 h,
					  ApikeyJournal **jp)
{
	ApikeyJournal *j;

	if (w->journal < 0)
	{
		static bool exit_registered = false;

		if (!apikey_journal_acquire(w, dbid))
			return NULL;
		if (idx != NULL)
		{
			uint32		nsets = idx->nsets;

			memset(idx, 0, APIKEY_RECENT_BYTES(nsets));
			idx->nsets = nsets;
			if (w->chunk != NULL)	/* a journal taken over: its last chunk */
				apikey_recent_add_chunk(idx, w->chunk);
		}
		if (!exit_registered)
			before_shmem_exit(apikey_journal_exit, 0);
		exit_registered = true;
	}
	j = apikey_journal(w->journal);
	for (;;)
	{
		ApikeyRecord *r;

		SpinLockAcquire(&j->mutex);
		if (idx != NULL && (r = apikey_recent_find(idx, h, j, key_id, bucket)) != NULL)
		{
			*jp = j;
			return r;
		}
		if (w->chunk != NULL && j->head < w->chunk->first + APIKEY_CHUNK_RECORDS)
		{
			r = &w->chunk->rec[j->head - w->chunk->first];
			memset(r, 0, sizeof(*r));
			strlcpy(r->key_id, key_id, sizeof(r->key_id));
			r->bucket = bucket;
			if (idx != NULL)
				apikey_recent_note(idx, h, j);
			j->head++;
			*jp = j;
			return r;
		}
		SpinLockRelease(&j->mutex);
		if (!apikey_journal_grow(w, j))
			return NULL;
		if (idx != NULL)
			apikey_recent_add_chunk(idx, w->chunk);
	}
}

/*
 * Give the session an index with more sets (the first, or four times the
 * last): empty, with the chunks the last one knew.  Never an ERROR: a
 * session that cannot have an index appends every count, one that cannot
 * have a bigger one keeps its own.
 */
static void
apikey_recent_grow(void)
{
	ApikeyRecentIndex *old = apikey_recent;
	uint32		nsets = old == NULL ? APIKEY_RECENT_SETS_MIN :
		Min(old->nsets * 4, APIKEY_RECENT_SETS_MAX);
	ApikeyRecentIndex *idx;

	if (old != NULL)
		old->full = false;		/* if it cannot grow now, at the next filling */
	if (apikey_recent_cxt == NULL)
		apikey_recent_cxt = AllocSetContextCreate(TopMemoryContext, "apikey session index",
												  ALLOCSET_SMALL_SIZES);
	idx = MemoryContextAllocExtended(apikey_recent_cxt, APIKEY_RECENT_BYTES(nsets),
									 MCXT_ALLOC_NO_OOM | MCXT_ALLOC_ZERO);
	if (idx == NULL)
		return;
	idx->nsets = nsets;
	if (old != NULL)
	{
		memcpy(idx->chunk_first, old->chunk_first, sizeof(idx->chunk_first));
		memcpy(idx->chunk, old->chunk, sizeof(idx->chunk));
		pfree(old);
	}
	apikey_recent = idx;
}

/* The session's record for key_id in the hour of now, spinlock held. */
static ApikeyRecord *
apikey_session_record(Oid dbid, const char *key_id, TimestampTz now, ApikeyJournal **jp)
{
	uint32		h = hash_bytes((const unsigned char *) key_id, strlen(key_id));

	if (apikey_recent == NULL || apikey_recent->full)
		apikey_recent_grow();
	return apikey_journal_record(&apikey_session, dbid, key_id, apikey_hour_of(now),
								 apikey_recent, h, jp);
}

/* ---- the request path --------------------------------------------------- */

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
	ApikeyJournal *j;
	ApikeyRecord *r = apikey_session_record(dbid, key_id, now, &j);

	if (r == NULL)
	{
		apikey_overflow_add(dbid, code == APIKEY_VALID, code != APIKEY_VALID, 0, 0);
		return;
	}
	if (code == APIKEY_VALID)
	{
		r->requests++;
		r->last_used = now;
	}
	else
	{
		Assert(code >= APIKEY_FIRST_KEY_DENIAL);
		if (code >= APIKEY_FIRST_KEY_DENIAL)	/* always, for a known key */
			apikey_denials_add(&r->denied[code - APIKEY_FIRST_KEY_DENIAL], 1);
	}
	SpinLockRelease(&j->mutex);
}

/* Count one served request reported by apikey_record. */
void
apikey_pending_count_response(Oid dbid, const char *key_id, int32 status_code,
							  double response_ms, TimestampTz now)
{
	ApikeyJournal *j;
	ApikeyRecord *r = apikey_session_record(dbid, key_id, now, &j);

	if (r == NULL)
	{
		apikey_overflow_add(dbid, 0, 0, 1, response_ms);
		return;
	}
	r->responses++;
	r->response_ms += response_ms;
	if (status_code >= 500)
		r->server_errors++;
	else if (status_code >= 400)
		r->client_errors++;
	SpinLockRelease(&j->mutex);
}

/* ---- flushing ----------------------------------------------------------- */

/*
 * Drop the ranges every snapshot sees as committed, then free what that
 * leaves unused.  Only while no other flush holds ranges of the journal: a
 * flush that aborted takes its ranges back before it lets go, so a range
 * found with the journal let go is committed.
 */
static void
apikey_journal_prune(ApikeyJournal *j, TransactionId horizon, int me)
{
	bool		dropped = false;

	SpinLockAcquire(&j->mutex);
	if (j->flusher == -1 || j->flusher == me)
	{
		int			drop = 0;

		while (drop < j->nranges && TransactionIdPrecedes(j->ranges[drop].xid, horizon))
			drop++;
		if (drop > 0)
		{
			j->kept = j->ranges[drop - 1].end;
			j->nranges -= drop;
			memmove(j->ranges, j->ranges + drop, j->nranges * sizeof(ApikeyRange));
			dropped = true;
		}
	}
	SpinLockRelease(&j->mutex);
	if (dropped || j->owner == -1)
		apikey_journal_trim(j);
}

/* Where in a flush's buffer each key's counts go. */
typedef struct ApikeyTakenIndex
{
	char		key_id[APIKEY_KEY_ID_MAXLEN + 1];
	int			i;
} ApikeyTakenIndex;

static int
apikey_taken_index(HTAB *index, ApikeyTakenKey *buf, int *n, Oid dbid,
				   const char *key_id)
{
	bool		found;
	ApikeyTakenIndex *e = hash_search(index, key_id, HASH_ENTER, &found);

	if (!found)
	{
		ApikeyTakenKey *t = &buf[*n];

		memset(t, 0, sizeof(*t));
		apikey_keyref_init(&t->key, dbid, key_id);
		e->i = (*n)++;
	}
	return e->i;
}

/*
 * Copy the counts of database dbid into buf, up to max keys, claiming the
 * records they come from for this transaction; claims[] (capacity
 * APIKEY_TAKE_MAX_CLAIMS, registered with the transaction callbacks by the
 * caller before this is called) says which, and *nclaims is counted up
 * before each claim is made, so that an ERROR leaves no claim unknown.  The
 * walk starts at cursor->journal and leaves there the journal where it
 * stopped; cursor->more is set when counts were left (buf full, or a
 * journal held by another flush).
 */
void
apikey_pending_take(Oid dbid, ApikeyTakenKey *buf, int max, int *n,
					ApikeyClaim *claims, int *nclaims, ApikeyTakeCursor *cursor)
{
	int			me = apikey_my_procno();
	TransactionId xid = GetTopTransactionId();	/* before any lock */
	TransactionId horizon = GetOldestNonRemovableTransactionId(NULL);
	HASHCTL		ctl;
	HTAB	   *index;
	bool		full = false;
	int			ji;

	apikey_journals_attach();
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = APIKEY_KEY_ID_MAXLEN + 1;
	ctl.entrysize = sizeof(ApikeyTakenIndex);
	ctl.hcxt = CurrentMemoryContext;
	index = hash_create("apikey taken keys", Max(max, 16), &ctl,
						HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	for (ji = cursor->journal; ji < apikey_pd->njournals; ji++)
	{
		ApikeyJournal *j = apikey_journal(ji);

		if (j->dbid != dbid)	/* checked again under the spinlock */
			continue;
		apikey_journal_prune(j, horizon, me);

		LWLockAcquire(&j->lock, LW_SHARED);
		while (*n < max)
		{
			uint64		start;
			uint64		end;
			dsa_pointer first;
			ApikeyChunk *c;
			ApikeyClaim *claim;

			SpinLockAcquire(&j->mutex);
			if (j->dbid != dbid || j->claimed == j->head)
			{
				SpinLockRelease(&j->mutex);
				break;
			}
			if (j->flusher != -1 && j->flusher != me)
			{
				SpinLockRelease(&j->mutex);
				cursor->held_elsewhere = true;
				break;
			}
			if (j->nranges == APIKEY_JOURNAL_RANGES &&
				j->ranges[j->nranges - 1].xid != xid)
			{
				/*
				 * A snapshot older than this many flushes holds the ranges:
				 * the oldest committed one is dropped rather than stop
				 * logging (such a snapshot, which does not see that flush's
				 * log row, then misses its records).
				 */
				if (j->ranges[0].xid == xid)
				{
					SpinLockRelease(&j->mutex);
					full = true;
					break;
				}
				j->kept = j->ranges[0].end;
				j->nranges--;
				memmove(j->ranges, j->ranges + 1, j->nranges * sizeof(ApikeyRange));
			}
			start = j->claimed;
			end = Min(j->head, start + (uint64) (max - *n));
			/* extend this transaction's claim, or record a new one */
			if (*nclaims > 0 && claims[*nclaims - 1].journal == ji &&
				claims[*nclaims - 1].xid == xid && claims[*nclaims - 1].end == start)
				claim = &claims[*nclaims - 1];
			else if (*nclaims == APIKEY_TAKE_MAX_CLAIMS)
			{
				SpinLockRelease(&j->mutex);
				full = true;
				break;
			}
			else
			{
				claim = &claims[(*nclaims)++];
				claim->journal = ji;
				claim->start = start;
				claim->xid = xid;
			}
			claim->end = end;
			if (j->nranges > 0 && j->ranges[j->nranges - 1].xid == xid)
				j->ranges[j->nranges - 1].end = end;
			else
			{
				j->ranges[j->nranges].end = end;
				j->ranges[j->nranges].xid = xid;
				j->nranges++;
			}
			j->claimed = end;
			j->flusher = me;
			first = j->first_chunk;
			SpinLockRelease(&j->mutex);

			/* claimed records no longer change; our shared lock keeps them */
			c = apikey_chunk(first);
			for (uint64 pos = start; pos < end; pos++)
			{
				ApikeyRecord *r = apikey_record_at(&c, pos);
				int			i = apikey_taken_index(index, buf, n, dbid, r->key_id);

				apikey_record_add_to(r, buf[i].slot, buf[i].denied_by);
			}
		}
		LWLockRelease(&j->lock);
		if (full || *n == max)
		{
			full = true;
			break;
		}
		CHECK_FOR_INTERRUPTS();
	}
	hash_destroy(index);
	cursor->journal = ji;
	cursor->more = full || cursor->held_elsewhere;
}

/*
 * End a flush's claims.  logged: its transaction committed, so the ranges
 * stay, as logged, for readers; otherwise they are taken back (newest
 * first: the claims of a subtransaction are the newest of their journal).
 * Never allocates and never raises an ERROR: it runs in transaction
 * callbacks.
 */
void
apikey_pending_settle(const ApikeyClaim *claims, int nclaims, bool logged)
{
	int			me = apikey_my_procno();

	for (int i = nclaims - 1; i >= 0; i--)
	{
		const ApikeyClaim *c = &claims[i];
		ApikeyJournal *j = apikey_journal(c->journal);

		SpinLockAcquire(&j->mutex);
		if (j->flusher == me && j->nranges > 0 &&
			j->ranges[j->nranges - 1].xid == c->xid)
		{
			if (!logged && j->claimed == c->end)
			{
				uint64		range_start = j->nranges > 1 ?
					j->ranges[j->nranges - 2].end : j->kept;

				j->claimed = c->start;
				if (c->start <= range_start)
					j->nranges--;
				else
					j->ranges[j->nranges - 1].end = c->start;
			}
			/* still holding: ranges of this transaction left (subtransactions) */
			if (logged || j->nranges == 0 || j->ranges[j->nranges - 1].xid != c->xid)
				j->flusher = -1;
		}
		SpinLockRelease(&j->mutex);
	}
}

/*
 * The distinct databases whose counts some journal holds, at most max of
 * them.  Read without the journals' locks: a database seen here existed when
 * its counts were recorded, which is all the launcher needs to tell a dropped
 * one (no visit can enter it to log or prune its journals, which would
 * otherwise be kept, each with its chunks, until every journal was taken).
 * With more databases than max, each call starts where the last one stopped,
 * so every journal is looked at in turn.
 */
int
apikey_pending_databases_held(Oid *dbids, int max)
{
	static int	next = 0;
	int			n = 0;
	int			looked = 0;

	for (; looked < apikey_pd->njournals && n < max; looked++)
	{
		Oid			dbid;
		bool		known = false;

		next = (next + 1) % apikey_pd->njournals;
		dbid = apikey_journal(next)->dbid;
		if (dbid == InvalidOid)
			continue;
		for (int k = 0; k < n && !known; k++)
			known = dbids[k] == dbid;
		if (!known)
			dbids[n++] = dbid;
	}
	return n;
}

/* A database was dropped, or the extension left it: its counts go. */
void
apikey_pending_forget_database(Oid dbid)
{
	for (int i = 0; i < apikey_pd->njournals; i++)
	{
		ApikeyJournal *j = apikey_journal(i);

		if (j->dbid != dbid)
			continue;
		SpinLockAcquire(&j->mutex);
		if (j->dbid == dbid && j->flusher == -1)
		{
			j->kept = j->claimed = j->head;
			j->nranges = 0;
		}
		SpinLockRelease(&j->mutex);
		apikey_journal_trim(j);
	}

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

/* What a reader copies of a journal before reading its records. */
typedef struct ApikeyJournalView
{
	dsa_pointer first_chunk;
	uint64		kept;
	uint64		head;
	int			nranges;
	ApikeyRange ranges[APIKEY_JOURNAL_RANGES];
	bool		logged[APIKEY_JOURNAL_RANGES];	/* the reader sees it in the log */
} ApikeyJournalView;

/*
 * Copy journal j's positions if it is of dbid (any database if dbid is
 * InvalidOid); the caller holds its LWLock shared.
 */
static bool
apikey_journal_view(ApikeyJournal *j, Oid dbid, ApikeyJournalView *v, Oid *of_db)
{
	bool		ok;

	SpinLockAcquire(&j->mutex);
	ok = j->dbid != InvalidOid && (dbid == InvalidOid || j->dbid == dbid) &&
		DsaPointerIsValid(j->first_chunk) && j->kept < j->head;
	if (ok)
	{
		*of_db = j->dbid;
		v->first_chunk = j->first_chunk;
		v->kept = j->kept;
		v->head = j->head;
		v->nranges = j->nranges;
		memcpy(v->ranges, j->ranges, j->nranges * sizeof(ApikeyRange));
	}
	SpinLockRelease(&j->mutex);
	return ok;
}

/*
 * Visit every record of the journals of dbid (all databases if InvalidOid)
 * that is not logged as seen by snap (NULL: as seen by a transaction that
 * started now, after every flush that committed).
 */
static void
apikey_journals_scan(Oid dbid, Snapshot snap,
					 void (*visit) (Oid dbid, const ApikeyRecord *r, void *arg), void *arg)
{
	apikey_journals_attach();
	for (int i = 0; i < apikey_pd->njournals; i++)
	{
		ApikeyJournal *j = apikey_journal(i);
		ApikeyJournalView v;
		Oid			of_db;
		ApikeyChunk *c;
		uint64		range_start;
		int			r = 0;

		if (j->dbid == InvalidOid || (dbid != InvalidOid && j->dbid != dbid))
			continue;
		LWLockAcquire(&j->lock, LW_SHARED);
		if (!apikey_journal_view(j, dbid, &v, &of_db))
		{
			LWLockRelease(&j->lock);
			continue;
		}
		for (int k = 0; k < v.nranges; k++)
		{
			TransactionId xid = v.ranges[k].xid;

			if (TransactionIdIsCurrentTransactionId(xid))
				v.logged[k] = true; /* our own flush: we see our log row */
			else if (snap == NULL)
				v.logged[k] = TransactionIdDidCommit(xid);
			else
				v.logged[k] = !XidInMVCCSnapshot(xid, snap) && TransactionIdDidCommit(xid);
		}
		c = apikey_chunk(v.first_chunk);
		range_start = v.kept;
		for (uint64 pos = v.kept; pos < v.head; pos++)
		{
			while (r < v.nranges && pos >= v.ranges[r].end)
				range_start = v.ranges[r++].end;
			if (r < v.nranges && pos >= range_start && v.logged[r])
			{
				pos = v.ranges[r].end - 1;	/* skip the whole range */
				continue;
			}
			visit(of_db, apikey_record_at(&c, pos), arg);
		}
		LWLockRelease(&j->lock);
		CHECK_FOR_INTERRUPTS();
	}
}

typedef struct ApikeySnapshotEntry
{
	char		key_id[APIKEY_KEY_ID_MAXLEN + 1];
	ApikeyPendingRow row;
} ApikeySnapshotEntry;

static void
apikey_snapshot_visit(Oid dbid, const ApikeyRecord *r, void *arg)
{
	bool		found;
	ApikeySnapshotEntry *e = hash_search((HTAB *) arg, r->key_id, HASH_ENTER, &found);

	if (!found)
	{
		memset(&e->row, 0, sizeof(e->row));
		strlcpy(e->row.key_id, r->key_id, sizeof(e->row.key_id));
	}
	apikey_record_add_to(r, e->row.slot, e->row.denied_by);
}

/*
 * Every key of dbid with pending counts as a reader with snapshot snap
 * sees them, in palloc'd *rows.
 */
int
apikey_pending_snapshot(Oid dbid, Snapshot snap, ApikeyPendingRow **rows)
{
	HASHCTL		ctl;
	HTAB	   *keys;
	HASH_SEQ_STATUS seq;
	ApikeySnapshotEntry *e;
	int			n = 0;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = APIKEY_KEY_ID_MAXLEN + 1;
	ctl.entrysize = sizeof(ApikeySnapshotEntry);
	ctl.hcxt = CurrentMemoryContext;
	keys = hash_create("apikey pending keys", 1024, &ctl,
					   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	apikey_journals_scan(dbid, snap, apikey_snapshot_visit, keys);

	*rows = palloc_extended(Max(hash_get_num_entries(keys), 1) * sizeof(ApikeyPendingRow),
							MCXT_ALLOC_HUGE);
	hash_seq_init(&seq, keys);
	while ((e = hash_seq_search(&seq)) != NULL)
		(*rows)[n++] = e->row;
	hash_destroy(keys);
	return n;
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

static void
apikey_dump_visit(Oid dbid, const ApikeyRecord *r, void *arg)
{
	ApikeyKeyRef key;
	bool		found;
	ApikeyTakenKey *e;

	apikey_keyref_init(&key, dbid, r->key_id);
	e = hash_search((HTAB *) arg, &key, HASH_ENTER, &found);
	if (!found)
	{
		memset((char *) e + sizeof(ApikeyKeyRef), 0, sizeof(*e) - sizeof(ApikeyKeyRef));
	}
	apikey_record_add_to(r, e->slot, e->denied_by);
}

/* Write every key's unlogged counts; returns how many, -1 if writing failed. */
int64
apikey_pending_dump(FILE *file)
{
	HASHCTL		ctl;
	HTAB	   *keys;
	HASH_SEQ_STATUS seq;
	ApikeyTakenKey *e;
	int64		written = 0;
	bool		ok = true;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(ApikeyKeyRef);
	ctl.entrysize = sizeof(ApikeyTakenKey);
	ctl.hcxt = CurrentMemoryContext;
	keys = hash_create("apikey dump keys", 1024, &ctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	apikey_journals_scan(InvalidOid, NULL, apikey_dump_visit, keys);
	hash_seq_init(&seq, keys);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		ok &= fwrite(e, sizeof(ApikeyTakenKey), 1, file) == 1;
		written++;
	}
	hash_destroy(keys);
	return ok ? written : -1;
}

/*
 * Add saved counts back, to a journal of the key's database; false when
 * there is no room.  The denials by code go with the hours in order, as
 * many to each as its slot says.
 */
bool
apikey_pending_restore(const ApikeyTakenKey *saved)
{
	ApikeyWriter *w = &apikey_restorer;
	int32		denied_left[APIKEY_KEY_DENIALS];
	int			newest = -1;

	if (w->journal >= 0 && apikey_journal(w->journal)->dbid != saved->key.dbid)
		apikey_pending_restore_done();
	for (int c = 0; c < APIKEY_KEY_DENIALS; c++)
		denied_left[c] = Max(saved->denied_by[APIKEY_FIRST_KEY_DENIAL + c], 0);
	for (int s = 0; s < APIKEY_PENDING_SLOTS; s++)
		if (!apikey_slot_empty(&saved->slot[s]) &&
			(newest < 0 || saved->slot[s].bucket > saved->slot[newest].bucket))
			newest = s;
	for (int s = 0; s < APIKEY_PENDING_SLOTS; s++)
	{
		const ApikeyUsageSlot *slot = &saved->slot[s];
		ApikeyJournal *j;
		ApikeyRecord *r;
		int64		denied;

		if (apikey_slot_empty(slot))
			continue;
		r = apikey_journal_record(w, saved->key.dbid, saved->key.key_id, slot->bucket,
								  NULL, 0, &j);
		if (r == NULL)
			return false;
		r->last_used = slot->last_used;
		r->requests = slot->requests;
		r->responses = slot->responses;
		r->response_ms = slot->response_ms;
		r->client_errors = (int32) Min(slot->client_errors, PG_INT32_MAX);
		r->server_errors = (int32) Min(slot->server_errors, PG_INT32_MAX);
		/* the newest hour takes what the others leave */
		denied = s == newest ? PG_INT64_MAX : slot->denied;
		for (int c = 0; c < APIKEY_KEY_DENIALS && denied > 0; c++)
		{
			int32		d = (int32) Min((int64) denied_left[c], denied);

			r->denied[c] = d;
			denied_left[c] -= d;
			denied -= d;
		}
		SpinLockRelease(&j->mutex);
	}
	return true;
}

/* The reload is over: its journals are left to the flushes. */
void
apikey_pending_restore_done(void)
{
	apikey_writer_release(&apikey_restorer, false);
}
