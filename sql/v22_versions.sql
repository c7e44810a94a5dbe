--
-- v22_versions: 2.2 as installed and as an update, and the way back.
--
-- CREATE EXTENSION apikey installs 2.2 (2.0, then the 2.0--2.1 and 2.1--2.2
-- updates); an existing 2.1 database gets exactly the same objects from
-- ALTER EXTENSION apikey UPDATE.  2.2 added only functions and a view, so
-- apikey--2.2--2.1.sql drops them and nothing else: keys, events and usage
-- stay, and from 2.1 the way back to 1.1 is open as before.
--
\set SHOW_CONTEXT never

-- What 2.2 adds, as the catalog has it: identity, rights-bearing settings,
-- who may use it (PUBLIC, pg_monitor), and a digest of its definition.
CREATE FUNCTION v22v_objects()
    RETURNS TABLE(object text, secdef boolean, config text[], public_may boolean,
                  pg_monitor_may boolean, definition text)
    LANGUAGE sql
    AS $$
    SELECT p.oid::regprocedure::text, p.prosecdef, p.proconfig,
           has_function_privilege('public', p.oid, 'EXECUTE'),
           has_function_privilege('pg_monitor', p.oid, 'EXECUTE'),
           md5(pg_get_functiondef(p.oid))
      FROM pg_proc p
     WHERE p.proname IN ('apikey_keys_of', 'apikey_update', 'apikey_usage_series',
                         'apikey_metrics_internal')
    UNION ALL
    SELECT c.oid::regclass::text, NULL, c.reloptions,
           has_table_privilege('public', c.oid, 'SELECT'),
           has_table_privilege('pg_monitor', c.oid, 'SELECT'),
           md5(pg_get_viewdef(c.oid))
      FROM pg_class c WHERE c.relname = 'apikey_metrics'
    ORDER BY 1 $$;

-- ---------------------------------------------------------------------------
-- A fresh install is 2.2
-- ---------------------------------------------------------------------------
CREATE EXTENSION apikey;
SELECT extversion FROM pg_extension WHERE extname = 'apikey';
SELECT object, secdef, config, public_may, pg_monitor_may FROM v22v_objects();
CREATE TEMP TABLE v22v_fresh AS SELECT * FROM v22v_objects();
DROP EXTENSION apikey;

-- ---------------------------------------------------------------------------
-- 2.1 updated to 2.2: the same objects, definitions and rights
-- ---------------------------------------------------------------------------
CREATE EXTENSION apikey VERSION '2.1';
SELECT count(*) AS objects_of_22 FROM v22v_objects();
-- (full access: the way down to 1.1 deactivates keys with limited scopes)
SELECT key_id AS k, token AS t FROM apikey_create('acme', 'kept', created_by => 'alice') \gset
SELECT (apikey_verify(:'t')).code;
SELECT apikey_flush() > 0 AS flushed;
ALTER EXTENSION apikey UPDATE TO '2.2';
SELECT extversion FROM pg_extension WHERE extname = 'apikey';
(SELECT * FROM v22v_objects() EXCEPT SELECT * FROM v22v_fresh)
UNION ALL
(SELECT * FROM v22v_fresh EXCEPT SELECT * FROM v22v_objects());
-- and they work on the keys 2.1 made
SELECT apikey_update(:'k', name => 'kept, renamed');
SELECT name, usage_count FROM apikey_keys_of('acme');
SELECT sum(requests) AS requests FROM apikey_usage_series(now() - interval '1 hour', key_id => :'k');

-- ---------------------------------------------------------------------------
-- 2.2 back to 2.1
-- ---------------------------------------------------------------------------
-- an object of the user's built on 2.2 stops the downgrade, which changes
-- nothing
CREATE VIEW v22v_dashboard AS SELECT * FROM apikey_metrics;
ALTER EXTENSION apikey UPDATE TO '2.1';
SELECT extversion FROM pg_extension WHERE extname = 'apikey';
DROP VIEW v22v_dashboard;
-- without it, 2.2's objects go and nothing else
SELECT count(*) AS events_before FROM apikey_events \gset
ALTER EXTENSION apikey UPDATE TO '2.1';
SELECT extversion FROM pg_extension WHERE extname = 'apikey';
SELECT count(*) AS objects_of_22 FROM v22v_objects();
SELECT name, usage_count FROM apikey_keys WHERE key_id = :'k';
SELECT count(*) - :events_before AS events_added_or_lost FROM apikey_events;
SELECT sum(requests) AS usage_kept FROM apikey_usage WHERE key_id = :'k';
SELECT (apikey_verify(:'t')).code;

-- and on to 1.1 (2.1's rollback of the org migration), and all the way
-- back up to 2.2 in one step
SET client_min_messages = error;    -- (the migration's warnings)
ALTER EXTENSION apikey UPDATE TO '1.1';
SELECT extversion FROM pg_extension WHERE extname = 'apikey';
SELECT valid, code, user_id FROM apikey_verify(:'t');
SET apikey.org_mapping = 'SELECT ''alice''::text AS user_id, ''acme''::text AS org_id';
ALTER EXTENSION apikey UPDATE TO '2.2';
RESET apikey.org_mapping;
RESET client_min_messages;
SELECT extversion FROM pg_extension WHERE extname = 'apikey';
(SELECT * FROM v22v_objects() EXCEPT SELECT * FROM v22v_fresh)
UNION ALL
(SELECT * FROM v22v_fresh EXCEPT SELECT * FROM v22v_objects());
SELECT name, is_active FROM apikey_keys_of('acme');
SELECT (apikey_verify(:'t')).code;

DROP EXTENSION apikey;
DROP FUNCTION v22v_objects();
