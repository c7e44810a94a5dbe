/*
 * dump.c
 *		The shutdown dump: pg_stat/apikey.stat.
 *
 *		At a clean shutdown the launcher writes every running rate-limit
 *		window and every key's pending counts, after the sessions that could
 *		still count have gone (it waits a few seconds for them), and the next
 *		start reads them back, as pg_stat_statements does with its file.
 *		After a crash there is no file: at most one flush interval of counts
 *		is lost and windows start afresh.
 *
 *		The file is read back by whichever process first needs the counters
 *		(a verification, or the launcher), and everyone else waits for that:
 *		a rate-limited key must not be admitted from a fresh window while
 *		its saved window is still on disk.
 *
 *		The file starts with a versioned header that records the layout of
 *		its records.  A file written by another version of the library, or
 *		with another layout (the format of apikey 2.0 and 1.0 included), is
 *		discarded with a LOG line, never misread.  The file is read once and
 *		then removed, so that a crash later cannot load it twice.
 */
#include "postgres.h"

#include <unistd.h>

#include "access/xact.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/shmem.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "utils/timestamp.h"

#include "dump.h"
#include "launcher_state.h"
#include "pending.h"
#include "ratelimit.h"

#define APIKEY_DUMP_FILE	PGSTAT_STAT_PERMANENT_DIRECTORY "/apikey.stat"
#define APIKEY_DUMP_TMP		APIKEY_DUMP_FILE ".tmp"
#define APIKEY_DUMP_MAGIC	0x41504b32	/* "APK2"; 2.0's file began "APK1" */
#define APIKEY_DUMP_FORMAT	1
/* Windows are 1 s to 31 days (the table's CHECK); anything far past is damage. */
#define APIKEY_DUMP_MAX_WINDOW_USEC	(366 * USECS_PER_DAY)

typedef struct ApikeyDumpHeader
{
	uint32		magic;
	uint32		format;
	uint32		window_record;	/* sizeof(ApikeyWindowEntry) */
	uint32		pending_record; /* sizeof(ApikeyTakenKey) */
	uint32		key_id_max;		/* APIKEY_KEY_ID_MAXLEN */
	uint32		num_codes;		/* APIKEY_NUM_CODES */
	int64		nwindows;
	int64		npending;
	TimestampTz written_at;
	uint64		lifetime;		/* of the shared memory that wrote it */
} ApikeyDumpHeader;

typedef enum ApikeyDumpState
{
	APIKEY_DUMP_NOT_LOADED = 0,
	APIKEY_DUMP_LOADING,
	APIKEY_DUMP_LOADED
} ApikeyDumpState;

typedef struct ApikeyDumpShared
{
	pg_atomic_uint32 state;
	ConditionVariable loaded;
	uint64		lifetime;		/* tells this shared memory's dumps apart */
	pg_atomic_uint32 counts_on_disk;	/* ApikeyDumpCounts */
} ApikeyDumpShared;

/* Does a dump of this run hold counts (apikey_dump_forget_counts)? */
typedef enum ApikeyDumpCounts
{
	APIKEY_DUMP_NO_COUNTS = 0,
	APIKEY_DUMP_COUNTS_WRITING, /* the launcher is writing a dump */
	APIKEY_DUMP_COUNTS_SAVED,
	APIKEY_DUMP_COUNTS_DROPPING /* a flush is dropping them from the file */
} ApikeyDumpCounts;

static ApikeyDumpShared *apikey_ds = NULL;

Size
apikey_dump_shmem_size(void)
{
	return MAXALIGN(sizeof(ApikeyDumpShared));
}

void
apikey_dump_shmem_init(void)
{
	bool		found;

	apikey_ds = ShmemInitStruct("apikey dump", sizeof(ApikeyDumpShared), &found);
	if (!found)
	{
		pg_atomic_init_u32(&apikey_ds->state, APIKEY_DUMP_NOT_LOADED);
		ConditionVariableInit(&apikey_ds->loaded);
		pg_atomic_init_u32(&apikey_ds->counts_on_disk, APIKEY_DUMP_NO_COUNTS);
		apikey_ds->lifetime = (uint64) GetCurrentTimestamp() ^ ((uint64) getpid() << 32);
	}
}

static void
apikey_dump_header_init(ApikeyDumpHeader *h)
{
	memset(h, 0, sizeof(*h));
	h->magic = APIKEY_DUMP_MAGIC;
	h->format = APIKEY_DUMP_FORMAT;
	h->window_record = sizeof(ApikeyWindowEntry);
	h->pending_record = sizeof(ApikeyTakenKey);
	h->key_id_max = APIKEY_KEY_ID_MAXLEN;
	h->num_codes = APIKEY_NUM_CODES;
}

/*
 * Write the dump.  Failures are logged, not raised: a shutdown must not
 * fail because of it.
 */
void
apikey_dump_write(void)
{
	ApikeyDumpHeader h;
	FILE	   *file;
	TimestampTz now = GetCurrentTimestamp();

	apikey_dump_header_init(&h);
	h.written_at = now;
	h.lifetime = apikey_ds->lifetime;
	/* a flush that would log counts waits until they are saved, then drops them */
	pg_atomic_write_u32(&apikey_ds->counts_on_disk, APIKEY_DUMP_COUNTS_WRITING);
	file = AllocateFile(APIKEY_DUMP_TMP, PG_BINARY_W);
	if (file == NULL)
		goto error;
	/* a header with the counts follows the records' writing */
	if (fwrite(&h, sizeof(h), 1, file) != 1)
		goto error;
	h.nwindows = apikey_ratelimit_dump(file, now);
	h.npending = apikey_pending_dump(file);
	if (h.nwindows < 0 || h.npending < 0)
		goto error;
	if (fseek(file, 0, SEEK_SET) != 0 || fwrite(&h, sizeof(h), 1, file) != 1)
		goto error;
	if (FreeFile(file) != 0)
	{
		file = NULL;
		goto error;
	}
	pg_atomic_write_u32(&apikey_ds->counts_on_disk,
						durable_rename(APIKEY_DUMP_TMP, APIKEY_DUMP_FILE, LOG) == 0 && h.npending > 0 ?
						APIKEY_DUMP_COUNTS_SAVED : APIKEY_DUMP_NO_COUNTS);
	ereport(DEBUG1,
			(errmsg("apikey saved %lld rate-limit windows and pending counts of %lld keys",
					(long long) h.nwindows, (long long) h.npending)));
	return;

error:
	ereport(LOG,
			(errcode_for_file_access(),
			 errmsg("could not write file \"%s\": %m", APIKEY_DUMP_TMP)));
	if (file)
		FreeFile(file);
	unlink(APIKEY_DUMP_TMP);
	pg_atomic_write_u32(&apikey_ds->counts_on_disk, APIKEY_DUMP_NO_COUNTS);
}

/*
 * Is a saved window one this library could have written?  Only the server's
 * owner can write the file, but a damaged one must not give a key a negative
 * count (more than its limit) or overflow the window's arithmetic.
 */
static bool
apikey_dump_window_valid(const ApikeyWindowEntry *w)
{
	return w->key.dbid != InvalidOid && w->key.key_id[0] != '\0' &&
		w->w.count >= 0 && w->w.start > 0 &&
		w->w.usec > 0 && w->w.usec <= APIKEY_DUMP_MAX_WINDOW_USEC;
}

static bool
apikey_dump_counts_valid(const ApikeyTakenKey *p)
{
	if (p->key.dbid == InvalidOid || p->key.key_id[0] == '\0')
		return false;
	for (int s = 0; s < APIKEY_PENDING_SLOTS; s++)
	{
		const ApikeyUsageSlot *slot = &p->slot[s];

		if (slot->requests < 0 || slot->denied < 0 || slot->responses < 0 ||
			slot->client_errors < 0 || slot->server_errors < 0 ||
			!(slot->response_ms >= 0))
			return false;
	}
	return true;
}

/* The key's name, ended and zero-padded as apikey_keyref_init makes it. */
static void
apikey_dump_clean_key(ApikeyKeyRef *key)
{
	ApikeyKeyRef read = *key;

	read.key_id[APIKEY_KEY_ID_MAXLEN] = '\0';
	apikey_keyref_init(key, read.dbid, read.key_id);
}

/*
 * Reload the dump's records, h->nwindows windows then h->npending keys'
 * counts.  false if the file ends early.  Each key's name is copied into a
 * zeroed reference (apikey_dump_clean_key): keys are hashed as bytes, so
 * bytes after the name's end would make an entry nothing finds.
 */
static bool
apikey_dump_load_records(FILE *file, const ApikeyDumpHeader *h, TimestampTz now,
						 int64 *lost, int64 *invalid)
{
	for (int64 i = 0; i < h->nwindows; i++)
	{
		ApikeyWindowEntry w;

		CHECK_FOR_INTERRUPTS();
		if (fread(&w, sizeof(w), 1, file) != 1)
			return false;
		apikey_dump_clean_key(&w.key);
		if (!apikey_dump_window_valid(&w))
			(*invalid)++;
		else if (!apikey_ratelimit_restore(&w, now))
			(*lost)++;
	}
	for (int64 i = 0; i < h->npending; i++)
	{
		ApikeyTakenKey p;

		CHECK_FOR_INTERRUPTS();
		if (fread(&p, sizeof(p), 1, file) != 1)
			return false;
		apikey_dump_clean_key(&p.key);
		if (!apikey_dump_counts_valid(&p))
			(*invalid)++;
		else if (!apikey_pending_restore(&p))
			(*lost)++;
		else
			apikey_launcher_note_pending(p.key.dbid);
	}
	return true;
}

/*
 * Read the dump back and remove it.  A file written by this same shared
 * memory (by a launcher that was terminated, not at a shutdown) is removed
 * unread: everything in it is still in memory.
 */
static void
apikey_dump_load(void)
{
	FILE	   *file = AllocateFile(APIKEY_DUMP_FILE, PG_BINARY_R);
	ApikeyDumpHeader h;
	ApikeyDumpHeader expect;
	TimestampTz now = GetCurrentTimestamp();
	int64		lost = 0;
	int64		invalid = 0;
	bool		truncated;

	if (file == NULL)
	{
		if (errno != ENOENT)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not read file \"%s\": %m", APIKEY_DUMP_FILE)));
		return;
	}
	apikey_dump_header_init(&expect);
	if (fread(&h, sizeof(h), 1, file) != 1 || h.magic != expect.magic ||
		h.format != expect.format || h.window_record != expect.window_record ||
		h.pending_record != expect.pending_record ||
		h.key_id_max != expect.key_id_max || h.num_codes != expect.num_codes ||
		h.nwindows < 0 || h.npending < 0)
	{
		ereport(LOG,
				(errmsg("discarding apikey counter file \"%s\": written by another version of apikey",
						APIKEY_DUMP_FILE),
				 errdetail("Rate-limit windows start afresh and counts pending at the last shutdown are lost.")));
		goto done;
	}
	if (h.lifetime == apikey_ds->lifetime)
	{
		/* a terminated launcher's: everything in it is still in memory */
		FreeFile(file);
		unlink(APIKEY_DUMP_FILE);
		pg_atomic_write_u32(&apikey_ds->counts_on_disk, APIKEY_DUMP_NO_COUNTS);
		return;
	}

	/*
	 * Removed before its records are read (the open file stays readable):
	 * an ERROR while reading them must not leave it for the next launcher
	 * to load a second time.
	 */
	unlink(APIKEY_DUMP_FILE);
	PG_TRY();
	{
		truncated = !apikey_dump_load_records(file, &h, now, &lost, &invalid);
	}
	PG_FINALLY();
	{
		apikey_pending_restore_done();
	}
	PG_END_TRY();
	if (truncated)
		ereport(LOG,
				(errmsg("apikey counter file \"%s\" is truncated; what it held was partly reloaded",
						APIKEY_DUMP_FILE)));
	if (invalid > 0)
		ereport(LOG,
				(errmsg("apikey skipped %lld invalid records of counter file \"%s\"",
						(long long) invalid, APIKEY_DUMP_FILE)));
	if (lost > 0)
		ereport(LOG,
				(errmsg("apikey could not reload %lld saved windows or counts: no room",
						(long long) lost),
				 errhint("Raise apikey.max_tracked_keys.")));

done:
	FreeFile(file);
	unlink(APIKEY_DUMP_FILE);
}

/*
 * Counts are about to be taken for logging.  A dump this run already wrote
 * (a launcher that was terminated writes one, not knowing whether the server
 * is shutting down) holds counts this take may log; were the server then
 * stopped before a restarted launcher removed it or wrote a fresh one, the
 * next start would count them a second time.  So the counts are dropped from
 * the file first (its windows stay): a clean shutdown in that moment, with
 * no launcher to save what is pending, then loses the counts not yet logged,
 * as a crash does, and never counts any twice.  One atomic read when there
 * is no such file.
 */
void
apikey_dump_forget_counts(void)
{
	FILE	   *file;
	ApikeyDumpHeader h;
	bool		rewritten = false;

	for (;;)
	{
		uint32		state = pg_atomic_read_u32(&apikey_ds->counts_on_disk);

		if (state == APIKEY_DUMP_NO_COUNTS)
			return;
		if (state == APIKEY_DUMP_COUNTS_SAVED &&
			pg_atomic_compare_exchange_u32(&apikey_ds->counts_on_disk, &state,
										   APIKEY_DUMP_COUNTS_DROPPING))
			break;
		/* a dump being written, or another taker at it: never take before */
		CHECK_FOR_INTERRUPTS();
		pg_usleep(1000L);
	}
	PG_TRY();
	{
		file = AllocateFile(APIKEY_DUMP_FILE, "r+b");
		if (file == NULL)
			rewritten = errno == ENOENT;
		else
		{
			if (fread(&h, sizeof(h), 1, file) == 1 && h.magic == APIKEY_DUMP_MAGIC &&
				h.lifetime == apikey_ds->lifetime)
			{
				h.npending = 0;
				rewritten = fseek(file, 0, SEEK_SET) == 0 &&
					fwrite(&h, sizeof(h), 1, file) == 1 &&
					fflush(file) == 0 && pg_fsync(fileno(file)) == 0;
			}
			else
				rewritten = true;	/* not this run's: the next start reads it */
			if (FreeFile(file) != 0)
				rewritten = false;
		}
		if (!rewritten && unlink(APIKEY_DUMP_FILE) != 0 && errno != ENOENT)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not remove file \"%s\": %m", APIKEY_DUMP_FILE),
					 errdetail("It holds counts that this flush would log a second time."),
					 errhint("Remove the file; counts are logged again once it is gone.")));
	}
	PG_CATCH();
	{
		/* nothing taken: the next flush tries again */
		pg_atomic_write_u32(&apikey_ds->counts_on_disk, APIKEY_DUMP_COUNTS_SAVED);
		PG_RE_THROW();
	}
	PG_END_TRY();
	pg_atomic_write_u32(&apikey_ds->counts_on_disk, APIKEY_DUMP_NO_COUNTS);
}

/*
 * Make sure the previous run's dump has been read before counting: the
 * first process to get here reads it, any other waits until it is done.
 * Cheap once done (one atomic read).
 */
void
apikey_dump_ensure_loaded(void)
{
	uint32		expected = APIKEY_DUMP_NOT_LOADED;

	if (pg_atomic_read_u32(&apikey_ds->state) == APIKEY_DUMP_LOADED)
		return;
	if (pg_atomic_compare_exchange_u32(&apikey_ds->state, &expected, APIKEY_DUMP_LOADING))
	{
		PG_TRY();
		{
			apikey_dump_load();
		}
		PG_FINALLY();
		{
			/* even after an ERROR: waiting for ever would be worse */
			pg_atomic_write_u32(&apikey_ds->state, APIKEY_DUMP_LOADED);
			ConditionVariableBroadcast(&apikey_ds->loaded);
		}
		PG_END_TRY();
		return;
	}
	ConditionVariablePrepareToSleep(&apikey_ds->loaded);
	while (pg_atomic_read_u32(&apikey_ds->state) != APIKEY_DUMP_LOADED)
		ConditionVariableSleep(&apikey_ds->loaded, PG_WAIT_EXTENSION);
	ConditionVariableCancelSleep();
}

/*
 * For a launcher (re)starting: load the previous run's dump if nobody has,
 * and remove a file a terminated launcher of this run left behind.
 */
void
apikey_dump_launcher_start(void)
{
	apikey_dump_ensure_loaded();
	apikey_dump_load();
}
