--
-- v2_usage: usage counting, apikey_flush, apikey_record, apikey_stats,
-- apikey_activity and apikey_rate_limit_status.
--
-- Verification counts in shared memory: a VALID answer is a request, a
-- failure of a known key is a denial.  apikey_stats shows what is pending;
-- apikey_flush() writes it into apikey_keys (usage_count, last_used_at) and
-- the hourly apikey_usage buckets exactly once: a flush whose transaction
-- or subtransaction rolls back gives its counts back.  The workers are off
-- in the regression instance (test/preload.conf), so nothing moves unless
-- this test calls apikey_flush(): the counts are deterministic.  Buckets
-- are summed per key, so the test also passes across the top of an hour.
--
CREATE EXTENSION apikey;
\set SHOW_CONTEXT never
-- 31-day rate windows: this test never straddles a window boundary
SET apikey.default_rate_window = '31d';
-- earlier tests may have left counts of their (dropped) keys pending: write
-- them (they are dropped, their keys being gone) so that flush counts below
-- are this test's own
SELECT apikey_flush() >= 0 AS flushed_leftovers;

SELECT key_id AS k, token AS t
  FROM apikey_create('acme', 'busy', '{documents:read}', rate_limit => 100,
                     allowed_ips => '{10.0.0.0/8}') \gset
SELECT key_id AS k2, token AS t2 FROM apikey_create('acme', 'quiet', rate_limit => 0) \gset

-- Pending counts of one key (apikey_stats): requests, denied, responses, used.
CREATE FUNCTION v2u_pending(key text)
    RETURNS TABLE(requests bigint, denied bigint, responses bigint, used boolean)
    LANGUAGE sql
    AS $$ SELECT coalesce(sum(s.requests), 0)::bigint, coalesce(sum(s.denied), 0)::bigint,
                 coalesce(sum(s.responses), 0)::bigint, bool_or(s.last_used_at IS NOT NULL)
            FROM apikey_stats s WHERE s.key_id = key $$;
-- What has been written for one key: the key row and its buckets, summed.
CREATE FUNCTION v2u_written(key text)
    RETURNS TABLE(usage_count bigint, last_used boolean, requests bigint, denied bigint,
                  responses bigint, response_ms double precision,
                  client_errors bigint, server_errors bigint)
    LANGUAGE sql
    AS $$ SELECT (SELECT k.usage_count FROM apikey_keys k WHERE k.key_id = key),
                 (SELECT k.last_used_at IS NOT NULL FROM apikey_keys k WHERE k.key_id = key),
                 coalesce(sum(u.requests), 0)::bigint, coalesce(sum(u.denied), 0)::bigint,
                 coalesce(sum(u.responses), 0)::bigint, coalesce(sum(u.response_ms), 0),
                 coalesce(sum(u.client_errors), 0)::bigint, coalesce(sum(u.server_errors), 0)::bigint
            FROM apikey_usage u WHERE u.key_id = key $$;

-- ---------------------------------------------------------------------------
-- 7 VALID and 5 failed verifications
-- ---------------------------------------------------------------------------
SELECT (v).code, count(*) FROM (
    SELECT apikey_verify(:'t', '{documents:read}', '10.0.0.1') AS v FROM generate_series(1, 7)
    UNION ALL
    SELECT apikey_verify(:'t', '{}', '192.0.2.1') FROM generate_series(1, 2)
    UNION ALL
    SELECT apikey_verify(:'t', '{}', NULL)
    UNION ALL
    SELECT apikey_verify(:'t', '{documents:delete}', '10.0.0.1') FROM generate_series(1, 2)
) s GROUP BY 1 ORDER BY 1;
-- failures that name no key are not attributed to one
SELECT (apikey_verify('ak_live_nonsense')).code, (apikey_verify('sk_unknown_token')).code;

-- pending in shared memory, nothing written yet
SELECT * FROM v2u_pending(:'k');
SELECT denied_forbidden, denied_scope, denied_revoked, denied_expired, denied_rate_limited,
       rate_window_count, overflow
  FROM apikey_stats WHERE key_id = :'k';
SELECT * FROM v2u_written(:'k');

-- the flush writes them, once
SELECT apikey_flush() > 0 AS flushed;
SELECT * FROM v2u_written(:'k');
SELECT last_used_at BETWEEN created_at AND now() AS last_used_plausible FROM apikey_keys WHERE key_id = :'k';
SELECT requests, denied FROM v2u_pending(:'k');
SELECT apikey_flush() AS nothing_pending;
SELECT * FROM v2u_written(:'k');
-- the key that was not used has no bucket and no count
SELECT * FROM v2u_written(:'k2');

-- ---------------------------------------------------------------------------
-- apikey_record: served requests, response times and error classes, added
-- to the same buckets by the next flush
-- ---------------------------------------------------------------------------
SELECT apikey_record(:'k', '/v1/documents', 200, 10);
SELECT apikey_record(:'k', '/v1/documents/9', 404, 20);
SELECT apikey_record(:'k', '/v1/documents', 503, 30);
SELECT apikey_record(:'k', '/v1/documents', 302, 0.5);
SELECT responses FROM v2u_pending(:'k');
SELECT apikey_flush() > 0 AS flushed;
SELECT * FROM v2u_written(:'k');
-- a record for a key that does not exist is accepted and dropped at the flush
SELECT apikey_record('key_nosuchkey000000', '/x', 200, 1);
SELECT apikey_flush() >= 0 AS flushed;
SELECT count(*) AS rows_for_unknown FROM apikey_usage WHERE key_id = 'key_nosuchkey000000';

-- ---------------------------------------------------------------------------
-- apikey_activity: per key over the last 24 hours, flushed and pending
-- counts together, most active first
-- ---------------------------------------------------------------------------
SELECT (apikey_verify(:'t2')).code, (apikey_verify(:'t2')).code;
SELECT (apikey_verify(:'t', '{}', '10.0.0.1')).code;     -- pending, not flushed
SELECT name, requests, denied, avg_response_ms, last_used_at IS NOT NULL AS used
  FROM apikey_activity;
-- buckets older than 24 hours do not count
INSERT INTO apikey_usage (key_id, bucket, requests, denied)
VALUES (:'k2', date_trunc('hour', now()) - interval '3 days', 1000, 1000);
SELECT name, requests, denied FROM apikey_activity WHERE key_id = :'k2';

-- ---------------------------------------------------------------------------
-- apikey_rate_limit_status: the current window, without using quota
-- ---------------------------------------------------------------------------
-- 8 VALID so far for the busy key (limit 100)
SELECT rate_limit, remaining, reset_at > now() AS reset_in_future FROM apikey_rate_limit_status(:'k');
SELECT rate_limit, remaining FROM apikey_rate_limit_status(:'k');
SELECT rate_limit, remaining FROM apikey_rate_limit_status(:'k');
SELECT v.rate_remaining, v.rate_reset = s.reset_at AS same_reset
  FROM apikey_verify(:'t', '{}', '10.0.0.1') v, apikey_rate_limit_status(:'k') s;
-- flushing does not reset the window
SELECT apikey_flush() > 0 AS flushed;
SELECT remaining FROM apikey_rate_limit_status(:'k');
-- a key never verified has its whole quota
SELECT key_id AS k3 FROM apikey_create('acme', 'fresh', rate_limit => 5) \gset
SELECT rate_limit, remaining, reset_at > now() AS reset_in_future FROM apikey_rate_limit_status(:'k3');
-- unlimited (0, or NULL stored by hand): no remaining count, no reset time
SELECT rate_limit, remaining, reset_at FROM apikey_rate_limit_status(:'k2');
UPDATE apikey_keys SET rate_limit = NULL WHERE key_id = :'k3';
SELECT rate_limit, remaining, reset_at FROM apikey_rate_limit_status(:'k3');
-- unknown key: no row
SELECT count(*) AS rows FROM apikey_rate_limit_status('key_nosuchkey000000');

-- ---------------------------------------------------------------------------
-- A flush in a transaction that rolls back loses nothing and writes nothing;
-- the next flush writes the counts exactly once.
-- ---------------------------------------------------------------------------
SELECT * FROM v2u_written(:'k2') \gset before_
SELECT (v).code, count(*) FROM (SELECT apikey_verify(:'t2') AS v FROM generate_series(1, 4)) s GROUP BY 1;
BEGIN;
SELECT apikey_flush() > 0 AS flushed_in_transaction;
SELECT usage_count - :before_usage_count AS added_inside FROM v2u_written(:'k2');
SELECT requests AS pending_inside FROM v2u_pending(:'k2');
ROLLBACK;
SELECT usage_count - :before_usage_count AS added_after_rollback,
       requests - :before_requests AS bucket_added_after_rollback FROM v2u_written(:'k2');
SELECT requests AS pending_again FROM v2u_pending(:'k2');
SELECT apikey_flush() > 0 AS flushed;
SELECT usage_count - :before_usage_count AS added, requests - :before_requests AS bucket_added
  FROM v2u_written(:'k2');
SELECT apikey_flush() AS nothing_pending;

-- the same with a savepoint rolled back, and a second flush in the same
-- transaction
SELECT * FROM v2u_written(:'k2') \gset before_
SELECT (v).code, count(*) FROM (SELECT apikey_verify(:'t2') AS v FROM generate_series(1, 3)) s GROUP BY 1;
BEGIN;
SAVEPOINT s1;
SELECT apikey_flush() > 0 AS flushed_in_savepoint;
ROLLBACK TO SAVEPOINT s1;
SELECT requests AS pending_after_rollback_to FROM v2u_pending(:'k2');
SELECT apikey_flush() > 0 AS flushed_again;
COMMIT;
SELECT usage_count - :before_usage_count AS added, requests - :before_requests AS bucket_added
  FROM v2u_written(:'k2');
SELECT requests AS pending FROM v2u_pending(:'k2');

-- a savepoint released into a transaction that then rolls back gives the
-- counts back too
SELECT * FROM v2u_written(:'k2') \gset before_
SELECT (v).code, count(*) FROM (SELECT apikey_verify(:'t2') AS v FROM generate_series(1, 2)) s GROUP BY 1;
BEGIN;
SAVEPOINT s1;
SELECT apikey_flush() > 0 AS flushed_in_savepoint;
RELEASE SAVEPOINT s1;
ROLLBACK;
SELECT requests AS pending_after_rollback FROM v2u_pending(:'k2');
SELECT apikey_flush() > 0 AS flushed;
SELECT usage_count - :before_usage_count AS added, requests - :before_requests AS bucket_added
  FROM v2u_written(:'k2');

-- a flush that fails (here: its transaction is aborted by an error after
-- the flush) gives the counts back as well
SELECT * FROM v2u_written(:'k2') \gset before_
SELECT (apikey_verify(:'t2')).code;
BEGIN;
SELECT apikey_flush() > 0 AS flushed;
SELECT 1 / 0;
ROLLBACK;
SELECT requests AS pending_after_error FROM v2u_pending(:'k2');
SELECT apikey_flush() > 0 AS flushed;
SELECT usage_count - :before_usage_count AS added FROM v2u_written(:'k2');

-- ---------------------------------------------------------------------------
-- Counts of a key deleted before the flush are dropped without error; the
-- other keys' counts in the same flush are written.
-- ---------------------------------------------------------------------------
SELECT key_id AS kd, token AS td FROM apikey_create('acme', 'doomed') \gset
SELECT * FROM v2u_written(:'k2') \gset before_
SELECT (v).code, count(*) FROM (SELECT apikey_verify(:'td') AS v FROM generate_series(1, 3)) s GROUP BY 1;
SELECT (apikey_verify(:'t2')).code;
SELECT apikey_record(:'kd', '/x', 200, 5);
DELETE FROM apikey_keys WHERE key_id = :'kd';
-- (no longer shown as pending: apikey_stats lists existing keys)
SELECT count(*) AS stats_rows FROM apikey_stats WHERE key_id = :'kd';
SELECT apikey_flush() > 0 AS flushed;
SELECT count(*) AS usage_rows_for_deleted FROM apikey_usage WHERE key_id = :'kd';
SELECT usage_count - :before_usage_count AS other_key_added FROM v2u_written(:'k2');
SELECT apikey_flush() AS nothing_pending;

-- ---------------------------------------------------------------------------
-- The usage log.  Every flush interval the worker appends the pending counts
-- to apikey_usage_log, one row per flush; apikey_activity shows them at
-- once.  The sweep (or apikey_flush()) folds the log into apikey_usage and
-- apikey_keys: a key and hour seen by several flushes is added up into one
-- bucket, counts of keys that no longer exist are dropped, the log empties.
-- Two log rows stand in for two worker flushes here (workers are off).
-- ---------------------------------------------------------------------------
SELECT apikey_flush() >= 0 AS flushed;
SELECT * FROM v2u_written(:'k2') \gset before_
SELECT requests AS activity_before FROM apikey_activity WHERE key_id = :'k2' \gset
INSERT INTO apikey_usage_log (entries, key_ids, buckets, requests, denied, responses,
                              response_ms, client_errors, server_errors, last_used)
VALUES (2, ARRAY[:'k2', 'no_such_key'], ARRAY[date_trunc('hour', now()), date_trunc('hour', now())],
        '{4,7}', '{1,0}', '{0,0}', '{0,0}', '{0,0}', '{0,0}', ARRAY[now(), now()]),
       (1, ARRAY[:'k2'], ARRAY[date_trunc('hour', now())],
        '{3}', '{0}', '{2}', '{30}', '{1}', '{0}', ARRAY[now()]);
SELECT requests - :activity_before AS activity_added FROM apikey_activity WHERE key_id = :'k2';
SELECT apikey_flush() AS taken_from_shared_memory;
SELECT usage_count - :before_usage_count AS usage_count_added,
       requests - :before_requests AS requests_added,
       denied - :before_denied AS denied_added,
       responses - :before_responses AS responses_added,
       response_ms - :before_response_ms AS response_ms_added,
       client_errors - :before_client_errors AS client_errors_added
  FROM v2u_written(:'k2');
SELECT count(*) AS buckets_this_hour FROM apikey_usage
 WHERE key_id = :'k2' AND bucket = date_trunc('hour', now());
SELECT count(*) AS usage_rows_for_unknown_key FROM apikey_usage WHERE key_id = 'no_such_key';
SELECT count(*) AS log_rows_left FROM apikey_usage_log;
SELECT requests - :activity_before AS activity_added_after_fold FROM apikey_activity WHERE key_id = :'k2';

-- ---------------------------------------------------------------------------
-- The session's index of its unflushed records (pending.c), which finds a
-- key's record to add to, follows the keys the session counts: small for a
-- few keys, bigger once it counts thousands between two flushes.  A grown
-- index starts empty, so some keys get a second record: counts stay exact.
-- ---------------------------------------------------------------------------
SELECT apikey_flush() >= 0 AS flushed;
SELECT total_bytes BETWEEN 48 * 1024 AND 64 * 1024 AS index_small_for_few_keys
  FROM pg_backend_memory_contexts WHERE name = 'apikey session index';
-- 1,500 keys twice, round-robin: the index grows at the 1,025th record, and
-- the keys noted before that get a second record in the second round.
CREATE TEMP TABLE v2u_many AS
    SELECT c.key_id, c.token FROM generate_series(1, 1500) g,
           apikey_create('acme', 'many ' || g, rate_limit => 1000) c;
SELECT count(*) FILTER (WHERE v.valid) AS valid_of_3000
  FROM (SELECT m.token FROM generate_series(1, 2) r, v2u_many m ORDER BY r, m.key_id OFFSET 0) x,
       LATERAL apikey_verify(x.token) v;
SELECT total_bytes > 64 * 1024 AS index_grew, total_bytes < 528 * 1024 AS index_not_at_most
  FROM pg_backend_memory_contexts WHERE name = 'apikey session index';
SELECT sum(p.requests) AS pending_requests, count(*) FILTER (WHERE p.requests = 2) AS keys_with_2
  FROM v2u_many m, v2u_pending(m.key_id) p;
SELECT apikey_flush() > 0 AS flushed;
SELECT sum(k.usage_count) AS usage_count_sum, count(*) FILTER (WHERE k.usage_count = 2) AS keys_counted_2
  FROM apikey_keys k JOIN v2u_many m USING (key_id);

DROP FUNCTION v2u_pending(text);
DROP FUNCTION v2u_written(text);
DROP EXTENSION apikey CASCADE;
