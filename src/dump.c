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
} ApikeyDumpShared;

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
	(void) durable_rename(APIKEY_DUMP_TMP, APIKEY_DUMP_FILE, LOG);
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
		goto done;
	for (int64 i = 0; i < h.nwindows; i++)
	{
		ApikeyWindowEntry w;

		if (fread(&w, sizeof(w), 1, file) != 1)
			goto truncated;
		w.key.key_id[APIKEY_KEY_ID_MAXLEN] = '\0';
		if (!apikey_ratelimit_restore(&w, now))
			lost++;
	}
	for (int64 i = 0; i < h.npending; i++)
	{
		ApikeyTakenKey p;

		if (fread(&p, sizeof(p), 1, file) != 1)
			goto truncated;
		p.key.key_id[APIKEY_KEY_ID_MAXLEN] = '\0';
		if (!apikey_pending_restore(&p))
			lost++;
		else
			apikey_launcher_note_pending(p.key.dbid);
	}
	apikey_pending_restore_done();
	if (lost > 0)
		ereport(LOG,
				(errmsg("apikey could not reload %lld saved windows or counts: no room",
						(long long) lost),
				 errhint("Raise apikey.max_tracked_keys.")));
	goto done;

truncated:
	apikey_pending_restore_done();
	ereport(LOG,
			(errmsg("apikey counter file \"%s\" is truncated; what it held was partly reloaded",
					APIKEY_DUMP_FILE)));
done:
	FreeFile(file);
	unlink(APIKEY_DUMP_FILE);
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
