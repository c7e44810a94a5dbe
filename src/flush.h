/*
 * flush.h
 *		Writing what shared memory holds into the tables: pending counts to
 *		the usage log, the usage log into apikey_keys and apikey_usage, and
 *		alerts into apikey_alerts.
 */
#ifndef APIKEY_FLUSH_H
#define APIKEY_FLUSH_H

extern void apikey_flush_xact_init(void);
struct ApikeyTakeCursor;
extern int64 apikey_log_chunk(Oid nspid, struct ApikeyTakeCursor *cursor);
extern int64 apikey_log_pending(Oid nspid);
extern int64 apikey_fold_usage_log(Oid nspid, bool wait);
extern int64 apikey_usage_log_entries(Oid nspid);
extern int64 apikey_record_alerts(Oid nspid, bool *more);

#endif							/* APIKEY_FLUSH_H */
