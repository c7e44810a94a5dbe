--
-- v22_management: managing keys through functions (2.2).
--
-- apikey_keys_of(org_id) lists an organization's keys without their hashes;
-- apikey_update(key_id, ...) changes a live key's name, scopes, expiry, rate
-- limit, allowlist and metadata -- a null argument leaves its column as it
-- is, 'infinity' removes the expiry, '{}' the allowlist, 0 the limit -- and
-- checks every value as apikey_create does, writing nothing on error.  Both
-- run with the caller's rights: EXECUTE, table and column privileges and
-- row-level security apply; apikey_update sets only the columns it is given,
-- so a role that may update some columns can change exactly those.  Every
-- change is audited as an 'updated' event with the changed columns.
--
CREATE EXTENSION apikey;
\set SHOW_CONTEXT never

-- The events of one key after event_id "after", oldest first, with times,
-- key_ids and hints masked and the superuser running this test shown as (me).
CREATE FUNCTION v22m_events(k text, after bigint DEFAULT 0)
    RETURNS TABLE(event text, actor text, details text)
    LANGUAGE sql
    AS $$ SELECT e.event, CASE WHEN e.actor = current_user THEN '(me)' ELSE e.actor END,
                 regexp_replace(regexp_replace(regexp_replace(e.details::text,
                     '"\d{4}-\d\d-\d\dT[^"]*"', '"<time>"', 'g'),
                     'key_[0-9A-Za-z]{16}', '<key_id>', 'g'),
                     '"ak_[a-z0-9]+_[0-9A-Za-z]{4}"', '"<hint>"', 'g')
            FROM apikey_events e WHERE e.key_id = k AND e.event_id > after ORDER BY e.event_id $$;
-- The last event_id so far.
CREATE FUNCTION v22m_last_event() RETURNS bigint
    LANGUAGE sql AS $$ SELECT coalesce(max(event_id), 0) FROM apikey_events $$;

-- What apikey_update may change of a key, as one line (to show that a
-- failed call left it as it was).
CREATE FUNCTION v22m_key(k text) RETURNS text
    LANGUAGE sql
    AS $$ SELECT format('name=%s scopes=%s expires=%s rate_limit=%s allowed_ips=%s metadata=%s events=%s',
                        k.name, k.scopes,
                        CASE WHEN k.expires_at IS NULL THEN 'never'
                             WHEN k.expires_at > now() THEN 'future' ELSE 'past' END,
                        coalesce(k.rate_limit::text, 'null'), coalesce(k.allowed_ips::text, 'null'),
                        k.metadata, (SELECT count(*) FROM apikey_events e WHERE e.key_id = k.key_id))
            FROM apikey_keys k WHERE k.key_id = $1 $$;

-- Run a statement: its result, or its SQLSTATE, message and hint with
-- key_ids and times masked (for errors that name them).
CREATE FUNCTION v22m_try(q text) RETURNS text
    LANGUAGE plpgsql
    AS $$
    DECLARE
        r text;
        hint text;
    BEGIN
        EXECUTE q INTO r;
        RETURN r;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS hint = PG_EXCEPTION_HINT;
        RETURN SQLSTATE || ': '
            || regexp_replace(regexp_replace(SQLERRM, 'key_[0-9A-Za-z]{16}', '<key_id>', 'g'),
                              'expires_at .* is not', 'expires_at <time> is not')
            || coalesce(' (' || nullif(hint, '') || ')', '');
    END $$;

SELECT key_id AS a1, token AS ta1
  FROM apikey_create('acme', 'billing worker', '{documents:read,plugins:execute}', 'staging',
                     now() + interval '30 days', 250, '{10.0.0.0/8}', '{"team": "billing"}',
                     'alice') \gset
SELECT key_id AS a2, token AS ta2 FROM apikey_create('acme', 'ci deploy', rate_limit => 10) \gset
SELECT key_id AS a3 FROM apikey_create('acme', 'old laptop') \gset
SELECT apikey_revoke(:'a3', 'laptop lost');
SELECT key_id AS g1, token AS tg1 FROM apikey_create('globex', 'globex key') \gset

-- ===========================================================================
-- apikey_keys_of
-- ===========================================================================

-- Every key of the organization, revoked ones too (is_active says which),
-- oldest first; the hint is what the token starts with.
SELECT key_id = :'a1' AS is_a1, key_id = :'a2' AS is_a2, key_id = :'a3' AS is_a3,
       name, hint ~ '^ak_(staging|live)_[0-9A-Za-z]{4}$' AS hint_shape, scopes, environment,
       is_active, expires_at > now() AS expires_in_future, created_at <= now() AS created,
       last_used_at, usage_count
  FROM apikey_keys_of('acme');
SELECT hint = left(:'ta1', 15) AS hint_matches_token FROM apikey_keys_of('acme') WHERE key_id = :'a1';
-- its result never carries the hash: these are all its columns
SELECT proargnames, proallargtypes::regtype[] FROM pg_proc WHERE proname = 'apikey_keys_of';
-- other organizations' keys are not listed; an unknown organization has none
SELECT count(*) AS globex_keys FROM apikey_keys_of('globex');
SELECT count(*) AS unknown_org_keys FROM apikey_keys_of('no such org');
-- usage_count and last_used_at are the table's, up to date after a flush
SELECT (apikey_verify(:'ta2')).code, (apikey_verify(:'ta2')).code;
SELECT apikey_flush() > 0 AS flushed;
SELECT usage_count, last_used_at IS NOT NULL AS used FROM apikey_keys_of('acme') WHERE key_id = :'a2';
-- the organization is checked as apikey_create checks it
SELECT * FROM apikey_keys_of(NULL);
SELECT * FROM apikey_keys_of('');
SELECT * FROM apikey_keys_of('   ');
SELECT * FROM apikey_keys_of(repeat('x', 201));

-- ===========================================================================
-- apikey_update: each argument on its own
-- ===========================================================================
SELECT v22m_key(:'a1') AS before;

-- name
SELECT apikey_update(:'a1', name => 'billing worker v2');
SELECT v22m_key(:'a1');
-- scopes, in force for the next verification
SELECT apikey_update(:'a1', scopes => '{documents:read}');
SELECT v22m_key(:'a1');
SELECT (apikey_verify(:'ta1', '{documents:read}', '10.0.0.1')).code AS read,
       (apikey_verify(:'ta1', '{plugins:execute}', '10.0.0.1')).code AS plugins;
-- expires_at, shown by the verification
SELECT apikey_update(:'a1', expires_at => now() + interval '7 days');
SELECT v22m_key(:'a1');
SELECT v.expires_at = k.expires_at AS verify_shows_new_expiry,
       k.expires_at BETWEEN now() + interval '7 days' - interval '1 minute'
                        AND now() + interval '7 days' AS seven_days
  FROM apikey_verify(:'ta1', '{}', '10.0.0.1') v, apikey_keys k WHERE k.key_id = :'a1';
-- rate_limit, in force for the next verification
SELECT apikey_update(:'a1', rate_limit => 100);
SELECT v22m_key(:'a1');
SELECT rate_limit, rate_remaining < 100 AS counting FROM apikey_verify(:'ta1', '{}', '10.0.0.1');
-- allowed_ips
SELECT apikey_update(:'a1', allowed_ips => '{192.0.2.0/24,10.1.0.0/16}');
SELECT v22m_key(:'a1');
SELECT (apikey_verify(:'ta1', '{}', '10.0.0.1')).code AS old_network,
       (apikey_verify(:'ta1', '{}', '192.0.2.7')).code AS new_network;
-- metadata, replaced as a whole (not merged)
SELECT apikey_update(:'a1', metadata => '{"owner": "ops"}');
SELECT v22m_key(:'a1');
SELECT metadata FROM apikey_verify(:'ta1', '{}', '192.0.2.7');
-- to merge, pass the merged object
SELECT apikey_update(:'a1', metadata => (SELECT metadata FROM apikey_keys WHERE key_id = :'a1')
                                       || '{"tier": 2}');
SELECT v22m_key(:'a1');

-- one 'updated' event per call, with the changed column's old and new value
SELECT * FROM v22m_events(:'a1');
SELECT v22m_last_event() AS ev \gset

-- ---------------------------------------------------------------------------
-- The special values
-- ---------------------------------------------------------------------------
-- expires_at => 'infinity' removes the expiry
SELECT apikey_update(:'a1', expires_at => 'infinity');
SELECT expires_at IS NULL AS no_expiry FROM apikey_keys WHERE key_id = :'a1';
SELECT expires_at FROM apikey_verify(:'ta1', '{}', '192.0.2.7');
-- allowed_ips => '{}' removes the allowlist: any address, or none
SELECT apikey_update(:'a1', allowed_ips => '{}');
SELECT allowed_ips IS NULL AS no_allowlist FROM apikey_keys WHERE key_id = :'a1';
SELECT (apikey_verify(:'ta1', '{}', '203.0.113.9')).code AS any_address,
       (apikey_verify(:'ta1', '{}', NULL)).code AS no_address;
-- rate_limit => 0 means unlimited
SELECT apikey_update(:'a1', rate_limit => 0);
SELECT code, rate_limit, rate_remaining, rate_reset FROM apikey_verify(:'ta1');
-- scopes => '{}' grants full access (as in apikey_create): a widening,
-- recorded like any other change
SELECT apikey_update(:'a2', scopes => '{documents:read}');
SELECT (apikey_verify(:'ta2', '{plugins:execute}')).code AS narrowed;
SELECT apikey_update(:'a2', scopes => '{}');
SELECT (apikey_verify(:'ta2', '{plugins:execute}')).code AS full_access;
SELECT * FROM v22m_events(:'a1', :ev);
SELECT * FROM v22m_events(:'a2', :ev);
SELECT v22m_last_event() AS ev \gset

-- ---------------------------------------------------------------------------
-- Several arguments at once: one UPDATE, one event listing each column.
-- Nothing given, or values equal to the stored ones: true, and no event.
-- ---------------------------------------------------------------------------
SELECT apikey_update(:'a1', name => 'billing', scopes => '{documents:*}', rate_limit => 50,
                     expires_at => now() + interval '1 day', allowed_ips => '{10.0.0.0/8}',
                     metadata => '{}');
SELECT v22m_key(:'a1');
SELECT * FROM v22m_events(:'a1', :ev);
SELECT v22m_last_event() AS ev \gset
SELECT apikey_update(:'a1');
SELECT apikey_update(:'a1', name => 'billing', rate_limit => 50, metadata => '{}');
SELECT v22m_key(:'a1') AS unchanged;
SELECT count(*) AS new_events FROM apikey_events WHERE event_id > :ev;

-- ---------------------------------------------------------------------------
-- false for a key that does not exist; no event
-- ---------------------------------------------------------------------------
SELECT apikey_update('key_doesnotexist00', name => 'x');
SELECT count(*) AS events FROM apikey_events WHERE key_id = 'key_doesnotexist00';

-- ---------------------------------------------------------------------------
-- Bad input: the errors of apikey_create, and nothing written -- not even
-- the valid arguments given with the bad one.
-- ---------------------------------------------------------------------------
SELECT v22m_key(:'a1') AS before \gset
-- key_id
SELECT apikey_update(NULL, name => 'x');
SELECT apikey_update('', name => 'x');
SELECT apikey_update(repeat('k', 65), name => 'x');
-- name: empty, blank, too long
SELECT apikey_update(:'a1', name => '');
SELECT apikey_update(:'a1', name => '   ');
SELECT apikey_update(:'a1', name => repeat('n', 201));
-- scopes: malformed, a null element, too many
SELECT apikey_update(:'a1', name => 'renamed', scopes => '{documents:read,"Documents:Read"}');
SELECT apikey_update(:'a1', scopes => '{documents:read,NULL}');
SELECT apikey_update(:'a1', scopes => '{{a:b},{c:d}}');
SELECT apikey_update(:'a1', scopes => (SELECT array_agg('r' || g || ':read') FROM generate_series(1, 1001) g));
-- expires_at: in the past, now, -infinity
SELECT v22m_try(format('SELECT apikey_update(%L, name => %L, expires_at => now() - interval %L)',
                       :'a1', 'renamed', '1 second'));
SELECT v22m_try(format('SELECT apikey_update(%L, expires_at => now())', :'a1'));
SELECT v22m_try(format('SELECT apikey_update(%L, expires_at => %L)', :'a1', '-infinity'));
-- rate_limit: negative
SELECT apikey_update(:'a1', name => 'renamed', rate_limit => -1);
-- allowed_ips: a NULL element
SELECT apikey_update(:'a1', name => 'renamed', allowed_ips => '{10.0.0.0/8,NULL}');
-- metadata: not an object (a JSON null is not SQL NULL)
SELECT apikey_update(:'a1', name => 'renamed', metadata => '[1, 2]');
SELECT apikey_update(:'a1', metadata => '"text"');
SELECT apikey_update(:'a1', metadata => 'null');
-- nothing changed, no event
SELECT v22m_key(:'a1') = :'before' AS unchanged;

-- ---------------------------------------------------------------------------
-- Keys that can no longer verify cannot be changed: an error that says why
-- (a silent false would read as "no such key"), nothing written.
-- ---------------------------------------------------------------------------
-- revoked
SELECT v22m_key(:'a3') AS before \gset
SELECT v22m_try(format('SELECT apikey_update(%L, name => %L)', :'a3', 'x'));
SELECT v22m_try(format('SELECT apikey_update(%L, expires_at => %L)', :'a3', 'infinity'));
SELECT v22m_try(format('SELECT apikey_update(%L)', :'a3'));
SELECT v22m_key(:'a3') = :'before' AS unchanged;
-- expired (before and after the sweep deactivates it)
SELECT key_id AS e1, token AS te1 FROM apikey_create('acme', 'expiring') \gset
UPDATE apikey_keys SET expires_at = now() - interval '1 minute' WHERE key_id = :'e1';
SELECT (apikey_verify(:'te1')).code;
SELECT v22m_try(format('SELECT apikey_update(%L, expires_at => now() + interval %L)', :'e1', '1 day'));
SELECT expired FROM apikey_sweep();
SELECT is_active FROM apikey_keys WHERE key_id = :'e1';
SELECT v22m_try(format('SELECT apikey_update(%L, name => %L)', :'e1', 'x'));
-- deactivated by other means (here: directly)
SELECT key_id AS d1 FROM apikey_create('acme', 'deactivated') \gset
UPDATE apikey_keys SET is_active = false WHERE key_id = :'d1';
SELECT v22m_try(format('SELECT apikey_update(%L, name => %L)', :'d1', 'x'));
-- a key rotated away but still in its grace period can be changed (e.g.
-- narrowed until it ends)
SELECT key_id AS r1 FROM apikey_rotate(:'a2', '1 hour') \gset
SELECT apikey_update(:'a2', scopes => '{documents:read}');
SELECT (apikey_verify(:'ta2', '{plugins:execute}')).code AS old_key_narrowed;

-- ===========================================================================
-- Privileges
-- ===========================================================================
CREATE ROLE regress_v22m_nobody;
CREATE ROLE regress_v22m_exec;
CREATE ROLE regress_v22m_tenant;
GRANT EXECUTE ON FUNCTION
    apikey_keys_of(text),
    apikey_update(text, text, text[], timestamptz, integer, cidr[], jsonb)
  TO regress_v22m_exec, regress_v22m_tenant;

-- PUBLIC may execute neither function
SELECT p.proname, has_function_privilege('regress_v22m_nobody', p.oid, 'EXECUTE') AS nobody_may
  FROM pg_proc p WHERE p.proname IN ('apikey_keys_of', 'apikey_update') ORDER BY 1;
SET ROLE regress_v22m_nobody;
SELECT * FROM apikey_keys_of('acme');
SELECT apikey_update(:'a1', name => 'nobody');
RESET ROLE;

-- EXECUTE alone reads and changes nothing: the table privileges apply
SET ROLE regress_v22m_exec;
SELECT * FROM apikey_keys_of('acme');
SELECT apikey_update(:'a1', name => 'exec');
RESET ROLE;

-- The tenant recipe: the tenant may read its organization's keys (every
-- column but the hash) and change only some columns -- not rate_limit.
-- Row-level security with the 2.1 tenant binding confines it to acme.
GRANT SELECT (key_id, org_id, name, hint, scopes, environment, is_active, expires_at,
              rate_limit, rate_window, allowed_ips, metadata, created_by, created_at,
              revoked_at, revoked_reason, rotated_from, replaced_by, last_used_at, usage_count)
   ON apikey_keys TO regress_v22m_tenant;
GRANT UPDATE (name, scopes, metadata, allowed_ips, expires_at) ON apikey_keys TO regress_v22m_tenant;
INSERT INTO apikey_org_roles (org_id, role_name) VALUES ('acme', 'regress_v22m_tenant');
ALTER TABLE apikey_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY v22m_tenant_keys ON apikey_keys TO regress_v22m_tenant
    USING (apikey_acts_for(org_id)) WITH CHECK (apikey_acts_for(org_id));

SELECT v22m_last_event() AS ev \gset
SET ROLE regress_v22m_tenant;
-- its own organization's keys, without the hash (it may not read that column)
SELECT name, is_active FROM apikey_keys_of('acme') ORDER BY created_at, key_id;
SELECT hash FROM apikey_keys LIMIT 1;
-- another organization's keys are invisible
SELECT count(*) AS globex_keys FROM apikey_keys_of('globex');
-- the columns it may update
SELECT apikey_update(:'a1', name => 'tenant renamed', scopes => '{documents:read}',
                     metadata => '{"by": "tenant"}', allowed_ips => '{}',
                     expires_at => now() + interval '2 days');
-- not rate_limit, alone or with allowed columns: nothing written
SELECT apikey_update(:'a1', rate_limit => 0);
SELECT apikey_update(:'a1', name => 'sneaky', rate_limit => 0);
-- another organization's key: not found, not changed
SELECT apikey_update(:'g1', name => 'hijacked');
RESET ROLE;
SELECT v22m_key(:'a1');
SELECT name FROM apikey_keys WHERE key_id = :'g1';
-- the tenant's change is audited with the tenant as actor
SELECT * FROM v22m_events(:'a1', :ev);
SELECT count(*) AS globex_events_by_tenant FROM apikey_events
 WHERE key_id = :'g1' AND actor = 'regress_v22m_tenant';

DROP POLICY v22m_tenant_keys ON apikey_keys;
ALTER TABLE apikey_keys DISABLE ROW LEVEL SECURITY;
DROP EXTENSION apikey CASCADE;
DROP FUNCTION v22m_events(text, bigint);
DROP FUNCTION v22m_last_event();
DROP FUNCTION v22m_key(text);
DROP FUNCTION v22m_try(text);
DROP ROLE regress_v22m_nobody;
DROP ROLE regress_v22m_exec;
DROP ROLE regress_v22m_tenant;
