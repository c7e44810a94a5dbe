--
-- v22_metrics: the apikey_metrics view (2.2), for monitoring.
--
-- One row per series (name, value, labels): verifications by result code
-- since the server started, keys and client addresses tracked in shared
-- memory and the bytes they take against their bounds, counts that found no
-- room, and -- once a worker has visited -- seconds since each database's
-- last flush, fold and sweep.  Server-wide numbers and database names only:
-- the predefined role pg_monitor reads it and still cannot read any key,
-- event or usage count.
--
-- The counters are the server's, shared by every test of this instance, so
-- this test shows which series exist and by how much its own actions move
-- them, not their absolute values.  (The workers are off in the regression
-- instance, so there are no apikey_seconds_since_last series here;
-- monitoring/test.sh runs the workers and finds them.)
--
CREATE EXTENSION apikey;
\set SHOW_CONTEXT never

-- Run a statement as the current role: 'ok', or its SQLSTATE and message.
CREATE FUNCTION v22x_try(q text) RETURNS text
    LANGUAGE plpgsql
    AS $$ BEGIN
        EXECUTE q;
        RETURN 'ok';
    EXCEPTION WHEN OTHERS THEN
        RETURN SQLSTATE || ': ' || SQLERRM;
    END $$;
GRANT EXECUTE ON FUNCTION v22x_try(text) TO PUBLIC;

-- The view's columns
SELECT attname, format_type(atttypid, atttypmod)
  FROM pg_attribute WHERE attrelid = 'apikey_metrics'::regclass AND attnum > 0 ORDER BY attnum;

-- The series, with the keys of their labels.  (apikey_shared_memory_area_bytes,
-- the size of the dynamic shared memory area, exists where the server can
-- report it: PostgreSQL 17 and later.)
SELECT m.name, count(*) AS series, string_agg(DISTINCT k, ', ') AS label_keys
  FROM apikey_metrics m LEFT JOIN LATERAL jsonb_object_keys(m.labels) k ON true
 WHERE m.name <> 'apikey_shared_memory_area_bytes'
 GROUP BY m.name ORDER BY m.name;
SELECT labels->>'code' AS code FROM apikey_metrics WHERE name = 'apikey_verifications_total' ORDER BY 1;
SELECT name, labels->>'kind' AS kind FROM apikey_metrics
 WHERE labels ? 'kind' ORDER BY 1, 2;
-- every value a finite, non-negative number; the library is preloaded; the
-- bounds are the settings
SELECT bool_and(value >= 0 AND value < 'infinity') AS plausible FROM apikey_metrics;
SELECT value AS preloaded FROM apikey_metrics WHERE name = 'apikey_preloaded';
SELECT value = current_setting('apikey.max_tracked_keys')::float8 AS keys_bound
  FROM apikey_metrics WHERE name = 'apikey_tracked_keys_max';
SELECT value = current_setting('apikey.max_tracked_clients')::float8 AS clients_bound
  FROM apikey_metrics WHERE name = 'apikey_tracked_clients_max';
SELECT value > 0 AS memory_bound FROM apikey_metrics WHERE name = 'apikey_shared_memory_bytes_max';

-- ---------------------------------------------------------------------------
-- The values move with what happens
-- ---------------------------------------------------------------------------
SELECT key_id AS k, token AS t FROM apikey_create('acme', 'counted', '{documents:read}', rate_limit => 1) \gset
SELECT key_id AS kr, token AS tr FROM apikey_create('acme', 'revoked') \gset
SELECT apikey_revoke(:'kr');
SELECT key_id AS ki, token AS ti FROM apikey_create('acme', 'ip-bound', rate_limit => 0,
                                                    allowed_ips => '{10.0.0.0/8}') \gset
SELECT key_id AS ke, token AS te FROM apikey_create('acme', 'expired', rate_limit => 0) \gset
UPDATE apikey_keys SET expires_at = now() - interval '1 second' WHERE key_id = :'ke';

CREATE TEMP TABLE v22x_before AS SELECT name, labels, value FROM apikey_metrics;

-- one of each result, and a few more valid ones
SELECT (apikey_verify(:'t', '{documents:read}')).code;                 -- VALID, uses the one request
SELECT (apikey_verify(:'t', '{documents:read}')).code;                 -- RATE_LIMITED
SELECT (apikey_verify(:'t', '{documents:delete}')).code;               -- INSUFFICIENT_SCOPE
SELECT (apikey_verify(:'tr')).code;
SELECT (apikey_verify(:'te')).code;
SELECT (apikey_verify(:'ti', '{}', '192.0.2.1')).code;
SELECT (v).code, count(*) FROM (SELECT apikey_verify(:'ti', '{}', '10.0.0.1') AS v
                                  FROM generate_series(1, 3)) s GROUP BY 1;
SELECT (apikey_verify('ak_live_nonsense', '{}', '198.51.100.77')).code;
SELECT (v).code, count(*) FROM (SELECT apikey_verify('sk_unknown_token', '{}', '198.51.100.77') AS v
                                  FROM generate_series(1, 2)) s GROUP BY 1;

-- verifications by code: exactly what this test did
SELECT a.labels->>'code' AS code, a.value - b.value AS added
  FROM apikey_metrics a JOIN v22x_before b USING (name, labels)
 WHERE a.name = 'apikey_verifications_total' ORDER BY 1;
-- keys with pending counts or a running rate window, and the client address
-- whose failures are counted, are tracked in memory, which takes bytes
SELECT a.name, a.labels->>'kind' AS kind, a.value > 0 AS tracked,
       a.value >= b.value AS not_fewer
  FROM apikey_metrics a JOIN v22x_before b USING (name, labels)
 WHERE a.name IN ('apikey_tracked_keys', 'apikey_tracked_clients', 'apikey_shared_memory_bytes')
   AND NOT (a.labels @> '{"kind": "clients"}' OR a.name = 'apikey_tracked_clients')
 ORDER BY 1, 2;
SELECT (SELECT value FROM apikey_metrics WHERE name = 'apikey_tracked_clients') > 0 AS client_tracked,
       (SELECT value FROM apikey_metrics
         WHERE name = 'apikey_shared_memory_bytes' AND labels = '{"kind": "clients"}') > 0 AS client_bytes;
-- bytes per entry are what dsa allocates: the item (dshash's 16-byte header
-- and the entry) rounded up to a dsa size class, plus an 8-byte bucket
SELECT m.labels->>'kind' AS kind,
       m.value / coalesce(k.value, c.value) AS bytes_per_entry
  FROM apikey_metrics m
  LEFT JOIN apikey_metrics k ON k.name = 'apikey_tracked_keys' AND k.labels = m.labels
  LEFT JOIN apikey_metrics c ON c.name = 'apikey_tracked_clients' AND m.labels->>'kind' = 'clients'
 WHERE m.name = 'apikey_shared_memory_bytes' AND m.labels->>'kind' <> 'pending_counts'
 ORDER BY 1;
-- pending counts are records in sessions' journals, in whole 32 kB chunks
-- of at most 227 records (144 bytes each)
SELECT m.value::bigint % 32768 AS past_whole_chunks,
       m.value >= k.value * 144 AS room_for_records
  FROM apikey_metrics m
  JOIN apikey_metrics k ON k.name = 'apikey_tracked_keys' AND k.labels = m.labels
 WHERE m.name = 'apikey_shared_memory_bytes' AND m.labels->>'kind' = 'pending_counts';
-- none of them lacked room
SELECT a.name, a.value - b.value AS added
  FROM apikey_metrics a JOIN v22x_before b USING (name, labels)
 WHERE a.name IN ('apikey_untracked_requests_total', 'apikey_untracked_denied_total',
                  'apikey_rate_limited_untracked_total', 'apikey_failures_untracked_total')
 ORDER BY 1;

-- nothing in it names a key, an organization or a client address
SELECT DISTINCT k AS label_key FROM apikey_metrics, jsonb_object_keys(labels) k ORDER BY 1;
SELECT count(*) AS rows_naming_tenant_data FROM apikey_metrics m
 WHERE strpos(m::text, :'k') > 0 OR strpos(m::text, 'acme') > 0
    OR strpos(m::text, '198.51.100.77') > 0 OR strpos(m::text, '10.0.0.1') > 0;

-- ---------------------------------------------------------------------------
-- Who may read it: pg_monitor, and roles granted the view and its function;
-- not PUBLIC
-- ---------------------------------------------------------------------------
CREATE ROLE regress_v22x_monitor;
GRANT pg_monitor TO regress_v22x_monitor;
CREATE ROLE regress_v22x_nobody;
CREATE ROLE regress_v22x_custom;
GRANT SELECT ON apikey_metrics TO regress_v22x_custom;
GRANT EXECUTE ON FUNCTION apikey_metrics_internal() TO regress_v22x_custom;
CREATE ROLE regress_v22x_half;
GRANT SELECT ON apikey_metrics TO regress_v22x_half;

SELECT r AS role,
       has_table_privilege(r, 'apikey_metrics', 'SELECT') AS select_view,
       has_function_privilege(r, 'apikey_metrics_internal()', 'EXECUTE') AS execute_function
  FROM unnest(ARRAY['pg_monitor', 'regress_v22x_monitor', 'regress_v22x_custom',
                    'regress_v22x_half', 'regress_v22x_nobody']) r;

-- a role that is only a member of pg_monitor reads every series ...
SELECT count(*) AS nseries FROM apikey_metrics \gset
SET ROLE regress_v22x_monitor;
SELECT count(*) = :nseries AS reads_all_series FROM apikey_metrics;
SELECT value > 0 AS valid_counted FROM apikey_metrics
 WHERE name = 'apikey_verifications_total' AND labels->>'code' = 'VALID';
-- ... and nothing of the keys, their audit trail, usage, alerts or bindings
SELECT replace(q, :'k', '<key_id>') AS statement, v22x_try(q) AS result FROM unnest(ARRAY[
    'SELECT key_id FROM apikey_keys',
    'SELECT * FROM apikey_events',
    'SELECT * FROM apikey_usage',
    'SELECT * FROM apikey_usage_log',
    'SELECT * FROM apikey_alerts',
    'SELECT * FROM apikey_org_roles',
    'SELECT * FROM apikey_stats',
    'SELECT * FROM apikey_activity',
    'SELECT * FROM apikey_stats_internal()',
    'SELECT * FROM apikey_pending_usage()',
    'SELECT * FROM apikey_recent_usage()',
    'SELECT * FROM apikey_keys_of(''acme'')',
    'SELECT * FROM apikey_usage_series(now())',
    format('SELECT * FROM apikey_rate_limit_status(%L)', :'k')]) q;
RESET ROLE;

-- a custom role with the two grants reads it too
SET ROLE regress_v22x_custom;
SELECT count(*) > 0 AS reads FROM apikey_metrics;
RESET ROLE;
-- the view alone is not enough: the function behind it is checked for the
-- caller as well
SET ROLE regress_v22x_half;
SELECT count(*) FROM apikey_metrics;
RESET ROLE;
-- and a role with neither reads nothing
SET ROLE regress_v22x_nobody;
SELECT count(*) FROM apikey_metrics;
SELECT count(*) FROM apikey_metrics_internal();
RESET ROLE;

DROP TABLE v22x_before;
DROP EXTENSION apikey CASCADE;
DROP FUNCTION v22x_try(text);
DROP ROLE regress_v22x_monitor;
DROP ROLE regress_v22x_nobody;
DROP ROLE regress_v22x_custom;
DROP ROLE regress_v22x_half;
