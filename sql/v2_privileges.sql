--
-- v2_privileges: who may do what with 2.0 keys.
--
-- PUBLIC may verify (and use the pure scope helpers); everything that writes
-- or reveals keys is for roles the DBA grants it to, and a role without
-- rights gets a permission error, not data.  SECURITY DEFINER functions pin
-- search_path.  Then the recommended role setup (an application role that
-- can only verify, an admin role).  The setup statements are written to be
-- copied into the documentation.  Tenant isolation (row-level security and
-- an org binding a session cannot forge) is security_tenants' topic.
--
CREATE EXTENSION apikey;
\set SHOW_CONTEXT never

SELECT key_id AS k_acme, token AS t_acme FROM apikey_create('acme', 'acme key', '{documents:read}') \gset
SELECT key_id AS k_other, token AS t_other FROM apikey_create('other', 'other key') \gset
SELECT (apikey_verify(:'t_acme')).code AS counted_in_stats;

-- ---------------------------------------------------------------------------
-- A role with no grants at all
-- ---------------------------------------------------------------------------
CREATE ROLE v2p_nobody;

-- What PUBLIC may execute, and what it may not
SELECT p.proname, has_function_privilege('v2p_nobody', p.oid, 'EXECUTE') AS public_may_execute
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'apikey'
 ORDER BY 2 DESC, 1;
-- no table, view or sequence of the extension is accessible to PUBLIC
SELECT c.relname, c.relkind,
       has_table_privilege('v2p_nobody', c.oid, 'SELECT,INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER')
           AS any_table_privilege
  FROM pg_class c
  JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'apikey'
 WHERE c.relkind IN ('r', 'v') ORDER BY 1;
SELECT has_sequence_privilege('v2p_nobody', 'apikey_events_event_id_seq', 'USAGE,SELECT,UPDATE') AS seq_privilege;

SET ROLE v2p_nobody;
-- verification works for anyone: it is what an application calls
SELECT code, org_id FROM apikey_verify(:'t_acme', '{documents:read}');
SELECT code FROM apikey_verify('Bearer ' || :'t_other');
SELECT code FROM apikey_verify('not a token');
SELECT apikey_scope_matches('{documents:*}', 'documents:read'), apikey_preset('documents');
-- but the keys, the audit trail and the usage are not readable
SELECT * FROM apikey_keys;
SELECT key_id FROM apikey_keys WHERE key_id = :'k_acme';
SELECT * FROM apikey_events;
SELECT * FROM apikey_usage;
SELECT * FROM apikey_stats;
SELECT * FROM apikey_activity;
-- apikey_recent_usage is PUBLIC's to call, but runs with the caller's rights
SELECT * FROM apikey_recent_usage();
-- nor writable
INSERT INTO apikey_keys (key_id, org_id, name, hint, hash, environment)
VALUES ('key_x', 'acme', 'x', 'x', apikey_token_hash('x'), 'live');
UPDATE apikey_keys SET is_active = true;
DELETE FROM apikey_keys;
INSERT INTO apikey_events (event, actor) VALUES ('created', 'forged');
-- and no management function may be called
SELECT * FROM apikey_create('acme', 'sneaky');
SELECT apikey_revoke(:'k_acme');
SELECT apikey_revoke_org('acme');
SELECT * FROM apikey_rotate(:'k_acme');
SELECT apikey_flush();
SELECT * FROM apikey_sweep();
SELECT * FROM apikey_sweep_batch(10);
SELECT apikey_record(:'k_acme', '/x', 200, 1);
SELECT * FROM apikey_rate_limit_status(:'k_acme');
SELECT * FROM apikey_stats_internal();
RESET ROLE;
-- nothing changed
SELECT key_id = :'k_acme' AS acme, is_active, revoked_at IS NULL AS not_revoked
  FROM apikey_keys ORDER BY org_id;

-- ---------------------------------------------------------------------------
-- SECURITY DEFINER functions all pin search_path
-- ---------------------------------------------------------------------------
SELECT p.proname, p.proconfig
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'apikey'
 WHERE p.prosecdef ORDER BY 1;
SELECT count(*) AS secdef_without_search_path
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'apikey'
 WHERE p.prosecdef
   AND NOT EXISTS (SELECT FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%');
-- the write functions run with the caller's rights (row-level security
-- applies to them)
SELECT p.proname, p.prosecdef FROM pg_proc p
 WHERE p.proname IN ('apikey_create', 'apikey_revoke', 'apikey_revoke_org', 'apikey_rotate')
 ORDER BY 1;

-- ---------------------------------------------------------------------------
-- The recommended setup.
--
-- An application role that can only verify: nothing to grant, PUBLIC may
-- execute apikey_verify.
-- ---------------------------------------------------------------------------
CREATE ROLE v2p_app;

-- An admin role that manages keys: read and write apikey_keys (no DELETE:
-- keys are revoked, not removed), read the audit trail and the usage, run
-- the management functions.  The views are security_invoker: reading
-- apikey_stats and apikey_activity also needs apikey_stats_internal().
CREATE ROLE v2p_admin;
GRANT SELECT, INSERT, UPDATE ON apikey_keys TO v2p_admin;
GRANT SELECT ON apikey_events, apikey_usage, apikey_usage_log, apikey_stats, apikey_activity TO v2p_admin;
GRANT EXECUTE ON FUNCTION
    apikey_create(text, text, text[], text, timestamptz, integer, cidr[], jsonb, text),
    apikey_revoke(text, text),
    apikey_revoke_org(text, text),
    apikey_rotate(text, interval),
    apikey_rate_limit_status(text),
    apikey_stats_internal()
  TO v2p_admin;

SET ROLE v2p_app;
SELECT code FROM apikey_verify(:'t_acme');
SELECT count(*) FROM apikey_keys;
SELECT * FROM apikey_create('acme', 'app may not');
RESET ROLE;

SET ROLE v2p_admin;
SELECT key_id AS k_adm, token AS t_adm FROM apikey_create('acme', 'made by admin', '{documents:*}') \gset
SELECT org_id, name, scopes, created_by FROM apikey_keys WHERE key_id = :'k_adm';
SELECT code FROM apikey_verify(:'t_adm', '{documents:delete}');
SELECT key_id AS k_adm2, token AS t_adm2 FROM apikey_rotate(:'k_adm', '1 hour') \gset
SELECT (apikey_verify(:'t_adm2')).code AS successor;
SELECT apikey_revoke(:'k_adm2', 'done');
SELECT rate_limit, remaining FROM apikey_rate_limit_status(:'k_acme');
SELECT event, actor FROM apikey_events WHERE key_id IN (:'k_adm', :'k_adm2') ORDER BY event_id;
SELECT count(*) >= 0 AS can_read_usage FROM apikey_usage;
SELECT name, requests FROM apikey_stats WHERE key_id = :'k_acme';
SELECT name, requests FROM apikey_activity WHERE key_id = :'k_acme';
-- what the admin may not do
DELETE FROM apikey_keys WHERE key_id = :'k_adm';
TRUNCATE apikey_keys;
INSERT INTO apikey_events (event, actor) VALUES ('revoked', 'forged');
SELECT apikey_flush();
SELECT * FROM apikey_sweep();
RESET ROLE;

-- ---------------------------------------------------------------------------
-- Clean up
-- ---------------------------------------------------------------------------
DROP EXTENSION apikey CASCADE;
DROP ROLE v2p_nobody;
DROP ROLE v2p_app;
DROP ROLE v2p_admin;
