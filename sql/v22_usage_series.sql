--
-- v22_usage_series: apikey_usage_series(from_ts, to_ts, key_id, org_id, step),
-- usage per step for dashboards (2.2).
--
-- Exact up to now: a key's counts live in one of three places -- shared
-- memory (verifications and apikey_record, until a flush), the usage log
-- (flushed by a worker, until a fold) and apikey_usage (folded hourly
-- buckets) -- and the series adds all three, each count once, before and
-- after apikey_flush() moves them.  The workers are off in the regression
-- instance, so counts move only when this test flushes; the log's rows are
-- written here by hand, standing in for a worker's flush.
--
-- Rows start at the hour (UTC) that contains from_ts and follow by step
-- (whole hours) while they start at or before to_ts; every step has a row,
-- zeros included.  Only keys the caller may see in apikey_keys count.
-- Hours are shown relative to the hour that holds this test's shared-memory
-- counts (:h), so the output does not depend on when the test runs.
--
CREATE EXTENSION apikey;
\set SHOW_CONTEXT never
-- 31-day rate windows: no verification here is refused for its rate
SET apikey.default_rate_window = '31d';

SELECT key_id AS k1, token AS t1 FROM apikey_create('acme', 'busy', '{documents:read}') \gset
SELECT key_id AS k2, token AS t2 FROM apikey_create('acme', 'quiet') \gset
SELECT key_id AS g1, token AS tg1 FROM apikey_create('globex', 'globex key') \gset
SELECT key_id AS kd FROM apikey_create('acme', 'deleted later') \gset

-- A series shown with each row's hour relative to :h.
CREATE FUNCTION v22s(from_ts timestamptz, to_ts timestamptz, h timestamptz,
                     key_id text DEFAULT NULL, org_id text DEFAULT NULL,
                     step interval DEFAULT '1 hour')
    RETURNS TABLE(hour integer, requests bigint, denied bigint, responses bigint,
                  avg_response_ms double precision)
    LANGUAGE sql
    AS $$ SELECT (extract(epoch FROM s.bucket - h) / 3600)::integer, s.requests, s.denied,
                 s.responses, s.avg_response_ms
            FROM apikey_usage_series(from_ts, to_ts, key_id, org_id, step) s $$;

-- ---------------------------------------------------------------------------
-- Counts in shared memory: 3 VALID and 2 denied verifications and 2
-- recorded responses (10 ms and 30 ms) of k1, 1 VALID of k2, 4 of g1.
-- ---------------------------------------------------------------------------
SELECT (v).code, count(*) FROM (
    SELECT apikey_verify(:'t1', '{documents:read}') AS v FROM generate_series(1, 3)
    UNION ALL
    SELECT apikey_verify(:'t1', '{documents:delete}') FROM generate_series(1, 2)
    UNION ALL
    SELECT apikey_verify(:'t2')
    UNION ALL
    SELECT apikey_verify(:'tg1') FROM generate_series(1, 4)
) s GROUP BY 1 ORDER BY 1;
SELECT apikey_record(:'k1', '/v1/documents', 200, 10), apikey_record(:'k1', '/v1/documents', 500, 30);
-- the hour they are counted in
SELECT bucket AS h FROM apikey_pending_usage() WHERE key_id = :'k1' \gset
SELECT :'h'::timestamptz = date_trunc('hour', :'h'::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
       AS h_is_a_utc_hour;

-- Folded buckets (apikey_usage): k1 three, two and one hours before, and in
-- the same hour as its memory counts; k2 and g1 two hours before; and a key
-- that will be deleted.
INSERT INTO apikey_usage (key_id, bucket, requests, denied, responses, response_ms)
VALUES (:'k1', :'h'::timestamptz - interval '3 hours', 10, 1, 4, 100),
       (:'k1', :'h'::timestamptz - interval '1 hour', 5, 0, 0, 0),
       (:'k1', :'h', 100, 0, 0, 0),
       (:'k2', :'h'::timestamptz - interval '2 hours', 7, 0, 0, 0),
       (:'g1', :'h'::timestamptz - interval '2 hours', 20, 0, 0, 0),
       (:'kd', :'h'::timestamptz - interval '2 hours', 500, 0, 0, 0);
-- The usage log, as two worker flushes would leave it: k1 one hour before
-- and in the current hour, and a key that does not exist.
INSERT INTO apikey_usage_log (entries, key_ids, buckets, requests, denied, responses,
                              response_ms, client_errors, server_errors, last_used)
VALUES (2, ARRAY[:'k1', 'key_nosuchkey00000'],
        ARRAY[:'h'::timestamptz - interval '1 hour', :'h'::timestamptz - interval '1 hour'],
        '{2,9}', '{0,0}', '{1,0}', '{50,0}', '{0,0}', '{0,0}', ARRAY[now(), now()]),
       (1, ARRAY[:'k1'], ARRAY[:'h'::timestamptz], '{1000}', '{0}', '{0}', '{0}', '{0}', '{0}',
        ARRAY[now()]);
DELETE FROM apikey_keys WHERE key_id = :'kd';

-- ---------------------------------------------------------------------------
-- k1 hour by hour: memory + log + folded in the current hour (3 + 1000 +
-- 100 requests; 2 denied; 2 responses averaging 20 ms), log + folded the
-- hour before (2 + 5), folded three hours before, zeros in between.
-- ---------------------------------------------------------------------------
SELECT * FROM v22s(:'h'::timestamptz - interval '5 hours', :'h'::timestamptz + interval '30 minutes',
                   :'h', :'k1');
-- to_ts defaults to now(): everything up to now
SELECT sum(requests) AS requests, sum(denied) AS denied, sum(responses) AS responses
  FROM apikey_usage_series(:'h'::timestamptz - interval '5 hours', key_id => :'k1');
-- and NULL means now() as well
SELECT sum(requests) AS requests FROM apikey_usage_series(:'h'::timestamptz - interval '5 hours', NULL, :'k1');

-- apikey_flush() moves the memory counts through the log into apikey_usage
-- and folds the log: the series is the same, nothing lost or counted twice
SELECT apikey_flush() > 0 AS flushed;
SELECT count(*) AS log_rows_left FROM apikey_usage_log;
SELECT * FROM v22s(:'h'::timestamptz - interval '5 hours', :'h'::timestamptz + interval '30 minutes',
                   :'h', :'k1');

-- ---------------------------------------------------------------------------
-- Filters: an organization (its keys together), a key, both; without a
-- filter every key the caller may see.  Usage of deleted or unknown keys
-- is not counted.
-- ---------------------------------------------------------------------------
SELECT * FROM v22s(:'h'::timestamptz - interval '3 hours', :'h', :'h', org_id => 'acme');
SELECT * FROM v22s(:'h'::timestamptz - interval '3 hours', :'h', :'h', org_id => 'globex');
SELECT * FROM v22s(:'h'::timestamptz - interval '3 hours', :'h', :'h', key_id => :'k2');
SELECT * FROM v22s(:'h'::timestamptz - interval '3 hours', :'h', :'h', key_id => :'k2', org_id => 'globex');
SELECT * FROM v22s(:'h'::timestamptz - interval '3 hours', :'h', :'h');
SELECT sum(requests) AS unknown_key FROM apikey_usage_series(:'h'::timestamptz - interval '3 hours', key_id => 'key_nosuchkey00000');
SELECT sum(requests) AS deleted_key FROM apikey_usage_series(:'h'::timestamptz - interval '3 hours', key_id => :'kd');
SELECT sum(requests) AS unknown_org FROM apikey_usage_series(:'h'::timestamptz - interval '3 hours', org_id => 'nobody');

-- ---------------------------------------------------------------------------
-- Steps and alignment
-- ---------------------------------------------------------------------------
-- whole hours: 2 hours, 1 day (= 24 hours: UTC has no daylight saving)
SELECT * FROM v22s(:'h'::timestamptz - interval '5 hours', :'h'::timestamptz + interval '30 minutes',
                   :'h', :'k1', step => '2 hours');
SELECT * FROM v22s(:'h'::timestamptz - interval '5 hours', :'h', :'h', :'k1', step => '1 day');
SELECT * FROM v22s(:'h'::timestamptz - interval '5 hours', :'h', :'h', :'k1', step => '24 hours');
-- from_ts inside an hour: the series starts at that hour; to_ts inside an
-- hour: that hour is the last
SELECT * FROM v22s(:'h'::timestamptz - interval '3 hours' + interval '40 minutes',
                   :'h'::timestamptz - interval '1 hour' + interval '59 minutes', :'h', :'k1');
-- from_ts = to_ts: one row
SELECT * FROM v22s(:'h', :'h', :'h', :'k1');
-- Aligned in UTC whatever the session's time zone: in a zone 5:30 from
-- UTC, the buckets fall on the half hour and the counts are the same.
SET TimeZone = 'Asia/Kolkata';
SELECT bool_and(extract(minute FROM bucket AT TIME ZONE 'UTC') = 0) AS utc_hours,
       bool_and(extract(minute FROM bucket) = 30) AS local_half_hours, count(*) AS rows
  FROM apikey_usage_series(:'h'::timestamptz - interval '5 hours', :'h', :'k1');
SELECT * FROM v22s(:'h'::timestamptz - interval '5 hours', :'h', :'h', :'k1', step => '3 hours');
RESET TimeZone;

-- at most 10,000 steps
SELECT count(*) AS rows FROM apikey_usage_series(:'h'::timestamptz - interval '9999 hours', :'h', :'k1');
SELECT count(*) AS rows FROM apikey_usage_series(:'h'::timestamptz - interval '10000 hours', :'h', :'k1');
SELECT count(*) AS rows FROM apikey_usage_series(:'h'::timestamptz - interval '19999 hours', :'h', step => '2 hours');
SELECT count(*) AS rows FROM apikey_usage_series(:'h'::timestamptz - interval '20000 hours', :'h', step => '2 hours');

-- ---------------------------------------------------------------------------
-- Bad input: clear errors
-- ---------------------------------------------------------------------------
-- steps that are not a positive whole number of hours
SELECT * FROM apikey_usage_series(now() - interval '1 day', step => '90 minutes');
SELECT * FROM apikey_usage_series(now() - interval '1 day', step => '1 hour 1 second');
SELECT * FROM apikey_usage_series(now() - interval '1 day', step => '0');
SELECT * FROM apikey_usage_series(now() - interval '1 day', step => '-1 hour');
SELECT * FROM apikey_usage_series(now() - interval '1 day', step => '1 month');
SELECT * FROM apikey_usage_series(now() - interval '1 day', step => '1 year');
SELECT * FROM apikey_usage_series(now() - interval '1 day', step => NULL);
-- from_ts missing, after to_ts, or not finite
SELECT * FROM apikey_usage_series(NULL);
SELECT * FROM apikey_usage_series('2026-01-02 00:00+00', '2026-01-01 00:00+00');
SELECT * FROM apikey_usage_series('-infinity');
SELECT * FROM apikey_usage_series(now(), 'infinity');
-- empty filters
SELECT * FROM apikey_usage_series(now(), key_id => '');
SELECT * FROM apikey_usage_series(now(), org_id => '');

-- ---------------------------------------------------------------------------
-- New counts show at once, and once.  (They are counted in the current
-- hour, which may be past :h by now, so only totals are shown from here.)
-- ---------------------------------------------------------------------------
SELECT sum(requests) AS before FROM apikey_usage_series(:'h'::timestamptz - interval '5 hours', key_id => :'k1') \gset
SELECT count(apikey_verify(:'t1')) FROM generate_series(1, 4);
SELECT sum(requests) - :before AS added FROM apikey_usage_series(:'h'::timestamptz - interval '5 hours', key_id => :'k1');
SELECT apikey_flush() > 0 AS flushed;
SELECT sum(requests) - :before AS added_after_flush FROM apikey_usage_series(:'h'::timestamptz - interval '5 hours', key_id => :'k1');

-- ---------------------------------------------------------------------------
-- Privileges: the caller's.  PUBLIC may not execute it; a role granted it
-- needs SELECT on apikey_keys and apikey_usage, and row-level security on
-- apikey_keys confines its series to the keys it may see (the log and
-- shared memory included).
-- ---------------------------------------------------------------------------
CREATE ROLE regress_v22s_nobody;
CREATE ROLE regress_v22s_tenant;
GRANT EXECUTE ON FUNCTION apikey_usage_series(timestamptz, timestamptz, text, text, interval)
   TO regress_v22s_tenant;
SET ROLE regress_v22s_nobody;
SELECT * FROM apikey_usage_series(now());
RESET ROLE;
SET ROLE regress_v22s_tenant;
SELECT * FROM apikey_usage_series(now());
RESET ROLE;
GRANT SELECT ON apikey_keys, apikey_usage TO regress_v22s_tenant;
INSERT INTO apikey_org_roles (org_id, role_name) VALUES ('acme', 'regress_v22s_tenant');
ALTER TABLE apikey_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY v22s_tenant_keys ON apikey_keys TO regress_v22s_tenant USING (apikey_acts_for(org_id));
-- pending counts of both organizations, for the tenant to (not) see
SELECT (apikey_verify(:'t2')).code AS acme, (apikey_verify(:'tg1')).code AS globex;
SELECT sum(requests) AS acme_total FROM apikey_usage_series(:'h'::timestamptz - interval '5 hours', org_id => 'acme') \gset
SET ROLE regress_v22s_tenant;
SELECT sum(requests) = :acme_total AS sees_all_of_acme
  FROM apikey_usage_series(:'h'::timestamptz - interval '5 hours');
SELECT sum(requests) AS globex FROM apikey_usage_series(:'h'::timestamptz - interval '5 hours', org_id => 'globex');
SELECT sum(requests) AS globex_key FROM apikey_usage_series(:'h'::timestamptz - interval '5 hours', key_id => :'g1');
RESET ROLE;

DROP POLICY v22s_tenant_keys ON apikey_keys;
ALTER TABLE apikey_keys DISABLE ROW LEVEL SECURITY;
DROP FUNCTION v22s(timestamptz, timestamptz, timestamptz, text, text, interval);
DROP EXTENSION apikey CASCADE;
DROP ROLE regress_v22s_nobody;
DROP ROLE regress_v22s_tenant;
