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
 *		The file starts with a versioned header that records the layout of
 *		its records.  A file written by another version of the library, or
 *		with another layout (the format of apikey 2.0 and 1.0 included), is
 *		discarded with a LOG line, never misread.  The file is read once and
 *		then removed, so that a crash later cannot load it twice.
 */
#include "postgres.h"

#include <unistd.h>

#include "access/xact.h"
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
} ApikeyDumpHeader;

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
 * Read the dump back and remove it.  Runs in the launcher, in a transaction
 * (adding entries may need a subtransaction; see area.c).
 */
void
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
	if (lost > 0)
		ereport(LOG,
				(errmsg("apikey could not reload %lld saved windows or counts: no room",
						(long long) lost),
				 errhint("Raise apikey.max_tracked_keys.")));
	goto done;

truncated:
	ereport(LOG,
			(errmsg("apikey counter file \"%s\" is truncated; what it held was partly reloaded",
					APIKEY_DUMP_FILE)));
done:
	FreeFile(file);
	unlink(APIKEY_DUMP_FILE);
}
