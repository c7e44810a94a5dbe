--
-- v2_write: the write side of 2.0 and its audit trail.
--
-- apikey_create (token returned once, every column stored as given, the
-- default rate limit and window), apikey_revoke, apikey_revoke_org,
-- apikey_rotate (successor inherits everything but the token, grace
-- period), the audit trail in apikey_events for every change through the
-- functions or by direct DML with the acting role (SET ROLE respected), and
-- apikey_sweep (expiry and usage retention).
--
CREATE EXTENSION apikey;
\set SHOW_CONTEXT never

-- The events of one key, oldest first.  Random values in the details
-- (times, key_ids, hints) are masked; the actor is shown as (me) when it is
-- the superuser running this test.
CREATE FUNCTION v2w_events(k text) RETURNS TABLE(event text, actor text, details text)
    LANGUAGE sql
    AS $$ SELECT e.event, CASE WHEN e.actor = current_user THEN '(me)' ELSE e.actor END,
                 regexp_replace(regexp_replace(regexp_replace(e.details::text,
                     '"\d{4}-\d\d-\d\dT[^"]*"', '"<time>"', 'g'),
                     'key_[0-9A-Za-z]{16}', '<key_id>', 'g'),
                     '"ak_[a-z0-9]+_[0-9A-Za-z]{4}"', '"<hint>"', 'g')
            FROM apikey_events e WHERE e.key_id = k ORDER BY e.event_id $$;

-- Run a statement; 'ok' or its SQLSTATE and message with key_ids masked
-- (for errors whose message names a random key_id).
CREATE FUNCTION v2w_try(q text) RETURNS text
    LANGUAGE plpgsql
    AS $$ BEGIN
        EXECUTE q;
        RETURN 'ok';
    EXCEPTION WHEN OTHERS THEN
        RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, 'key_[0-9A-Za-z]{16}', '<key_id>', 'g');
    END $$;

-- Is a timestamp within a few seconds before expected?  (Each statement
-- here is its own transaction, so now() moves on between them.)
CREATE FUNCTION v2w_near(ts timestamptz, expected timestamptz) RETURNS boolean
    LANGUAGE sql
    AS $$ SELECT ts BETWEEN expected - interval '10 seconds' AND expected $$;

-- ---------------------------------------------------------------------------
-- apikey_create returns key_id and token once; only a hash and a hint are
-- stored; every argument is stored as given.
-- ---------------------------------------------------------------------------
SELECT count(*) AS rows, min(key_id) AS k1, min(token) AS t1
  FROM apikey_create('acme', 'billing worker', '{documents:read,plugins:execute}', 'staging',
                     now() + interval '30 days', 250, '{10.0.0.0/8,192.0.2.1/32}',
                     '{"team": "billing", "tier": 2}', 'alice') \gset
SELECT :rows AS rows_returned,
       :'k1' ~ '^key_[0-9A-Za-z]{16}$' AS key_id_shape,
       :'t1' ~ '^ak_staging_[0-9A-Za-z]{38}$' AS token_shape;
SELECT org_id, name, scopes, environment,
       v2w_near(expires_at, now() + interval '30 days') AS expires_as_given,
       rate_limit, rate_window, allowed_ips, metadata, created_by,
       is_active, v2w_near(created_at, now()) AS created_now, usage_count, last_used_at,
       revoked_at, revoked_reason, rotated_from, replaced_by,
       hint = left(:'t1', 15) AS hint_is_prefix_env_and_4,
       hash = sha256(convert_to(:'t1', 'UTF8')) AS hash_is_sha256
  FROM apikey_keys WHERE key_id = :'k1';
-- the token itself is stored nowhere
SELECT count(*) AS rows_with_token FROM apikey_keys k WHERE strpos(k::text, :'t1') > 0;
SELECT count(*) AS events_with_token FROM apikey_events e WHERE strpos(e::text, :'t1') > 0;
SELECT (apikey_verify(:'t1', '{documents:read}', '10.9.8.7')).code;

-- Defaults: scopes '{}' (full access), environment live, no expiry,
-- apikey.default_rate_limit per apikey.default_rate_window, any address,
-- metadata '{}', created_by NULL.
SELECT key_id AS k2, token AS t2 FROM apikey_create('acme', 'defaults') \gset
SELECT :'t2' ~ '^ak_live_' AS live_token, scopes, environment, expires_at, rate_limit,
       rate_window, allowed_ips, metadata, created_by
  FROM apikey_keys WHERE key_id = :'k2';
SHOW apikey.default_rate_limit;
SHOW apikey.default_rate_window;

-- rate_limit NULL takes apikey.default_rate_limit, and rate_window
-- apikey.default_rate_window, as they are when the key is created
SET apikey.default_rate_limit = 50;
SET apikey.default_rate_window = '15min';
SELECT key_id AS k3, token AS t3 FROM apikey_create('acme', 'default limit 50') \gset
SELECT key_id AS k3b FROM apikey_create('acme', 'explicit 7', rate_limit => 7) \gset
SELECT name, rate_limit, rate_window FROM apikey_keys WHERE key_id IN (:'k3', :'k3b') ORDER BY name;
SELECT v.rate_limit, v.rate_remaining FROM apikey_verify(:'t3') v;
RESET apikey.default_rate_window;
-- rate_limit 0 is unlimited, even with a default set
SELECT key_id AS k4, token AS t4 FROM apikey_create('acme', 'unlimited', rate_limit => 0) \gset
SELECT rate_limit FROM apikey_keys WHERE key_id = :'k4';
SELECT v.code, v.rate_limit, v.rate_remaining, v.rate_reset FROM apikey_verify(:'t4') v;
RESET apikey.default_rate_limit;
-- an empty allowlist is stored as NULL (any address)
SELECT key_id AS k5, token AS t5 FROM apikey_create('acme', 'empty allowlist', allowed_ips => '{}') \gset
SELECT allowed_ips IS NULL AS stored_as_null FROM apikey_keys WHERE key_id = :'k5';
SELECT (apikey_verify(:'t5', '{}', NULL)).code;

-- the 'created' event
SELECT * FROM v2w_events(:'k1');

-- ---------------------------------------------------------------------------
-- apikey_revoke: true the first time, false when already revoked or unknown
-- ---------------------------------------------------------------------------
SELECT apikey_revoke(:'k2', 'leaked in a log');
SELECT is_active, v2w_near(revoked_at, now()) AS revoked_now, revoked_reason FROM apikey_keys WHERE key_id = :'k2';
SELECT apikey_revoke(:'k2', 'again');
SELECT revoked_reason FROM apikey_keys WHERE key_id = :'k2';
SELECT apikey_revoke('key_doesnotexist00');
SELECT apikey_revoke(:'k5');    -- the reason is optional
SELECT revoked_reason IS NULL AS no_reason FROM apikey_keys WHERE key_id = :'k5';
-- one 'revoked' event each, none for the calls that changed nothing
SELECT * FROM v2w_events(:'k2');
SELECT (apikey_verify(:'t2')).code;

-- ---------------------------------------------------------------------------
-- apikey_revoke_org: revokes every live key of one org, returns the count
-- ---------------------------------------------------------------------------
SELECT key_id AS o1 FROM apikey_create('globex', 'g1') \gset
SELECT key_id AS o2 FROM apikey_create('globex', 'g2') \gset
SELECT key_id AS o3 FROM apikey_create('globex', 'g3') \gset
SELECT apikey_revoke(:'o3');
SELECT key_id AS i1, token AS ti1 FROM apikey_create('initech', 'i1') \gset
SELECT apikey_revoke_org('globex', 'contract ended');
SELECT name, is_active, revoked_reason FROM apikey_keys WHERE org_id = 'globex' ORDER BY name;
-- other orgs untouched
SELECT is_active, revoked_at IS NULL AS not_revoked FROM apikey_keys WHERE key_id = :'i1';
SELECT (apikey_verify(:'ti1')).code;
SELECT apikey_revoke_org('globex');
SELECT apikey_revoke_org('nobody');
SELECT event, count(*) FROM apikey_events WHERE org_id = 'globex' GROUP BY event ORDER BY event;

-- ---------------------------------------------------------------------------
-- apikey_rotate: a successor with the same org, name, scopes, environment,
-- limits, allowlist, metadata, expiry and creator; the old key keeps
-- working until least(its expiry, now() + grace).
-- ---------------------------------------------------------------------------
SELECT expires_at AS k1_expires FROM apikey_keys WHERE key_id = :'k1' \gset
SELECT key_id AS r1, token AS tr1 FROM apikey_rotate(:'k1', '2 hours') \gset
SELECT :'r1' <> :'k1' AS new_key_id, :'tr1' <> :'t1' AS new_token,
       :'tr1' ~ '^ak_staging_' AS same_env_in_token;
SELECT n.org_id = o.org_id AS org, n.name = o.name AS name, n.scopes = o.scopes AS scopes,
       n.environment = o.environment AS env, n.rate_limit = o.rate_limit AS rate_limit,
       n.rate_window = o.rate_window AS rate_window, n.allowed_ips = o.allowed_ips AS ips,
       n.metadata = o.metadata AS metadata, n.created_by = o.created_by AS created_by,
       n.expires_at = :'k1_expires' AS kept_original_expiry,
       n.hash <> o.hash AS new_hash, n.rotated_from = o.key_id AS rotated_from,
       o.replaced_by = n.key_id AS replaced_by,
       v2w_near(o.expires_at, now() + interval '2 hours') AS old_ends_after_grace,
       o.is_active AS old_active, n.is_active AS new_active, n.usage_count
  FROM apikey_keys n, apikey_keys o WHERE n.key_id = :'r1' AND o.key_id = :'k1';
-- both keys work during the grace period
SELECT (apikey_verify(:'t1', '{documents:read}', '10.0.0.1')).code AS old_key,
       (apikey_verify(:'tr1', '{documents:read}', '10.0.0.1')).code AS new_key,
       (apikey_verify(:'tr1', '{documents:delete}', '10.0.0.1')).code AS new_key_same_scopes,
       (apikey_verify(:'tr1', '{documents:read}', '192.0.2.99')).code AS new_key_same_ips;
-- the old key's events: created, rotated; the new key's: created (from the old)
SELECT * FROM v2w_events(:'k1');
SELECT * FROM v2w_events(:'r1');
SELECT details->>'replaced_by' = :'r1' AS names_successor FROM apikey_events
 WHERE key_id = :'k1' AND event = 'rotated';
SELECT details->>'rotated_from' = :'k1' AS names_predecessor FROM apikey_events
 WHERE key_id = :'r1' AND event = 'created';

-- a key that expires before the grace ends keeps its own expiry
SELECT key_id AS k6 FROM apikey_create('acme', 'soon', expires_at => now() + interval '1 hour') \gset
-- (default grace: 24 hours)
SELECT key_id AS r6 FROM apikey_rotate(:'k6') \gset
SELECT v2w_near(o.expires_at, now() + interval '1 hour') AS old_keeps_own_expiry,
       n.expires_at = o.expires_at AS new_same_expiry
  FROM apikey_keys o, apikey_keys n WHERE o.key_id = :'k6' AND n.key_id = :'r6';
-- without an expiry: the default grace is 24 hours
SELECT key_id AS k7 FROM apikey_create('acme', 'no expiry') \gset
-- (named notation)
SELECT key_id AS r7 FROM apikey_rotate(key_id => :'k7') \gset
SELECT v2w_near(o.expires_at, now() + interval '24 hours') AS old_ends_in_24h, n.expires_at IS NULL AS new_never
  FROM apikey_keys o, apikey_keys n WHERE o.key_id = :'k7' AND n.key_id = :'r7';

-- grace '0': the old key is EXPIRED at once, the new one VALID
SELECT key_id AS k8, token AS t8 FROM apikey_create('acme', 'hard rotate') \gset
SELECT key_id AS r8, token AS tr8 FROM apikey_rotate(:'k8', '0') \gset
SELECT (apikey_verify(:'t8')).code AS old_key, (apikey_verify(:'tr8')).code AS new_key;

-- a key can be rotated once; its successor can be rotated in turn
SELECT v2w_try(format('SELECT apikey_rotate(%L)', :'k1')) AS rotate_twice;
SELECT count(*) AS rotated_again FROM apikey_rotate(:'r1', '1 hour');
-- revoked, expired or unknown keys cannot be rotated
SELECT v2w_try(format('SELECT apikey_rotate(%L)', :'k2')) AS rotate_revoked;
SELECT key_id AS k9 FROM apikey_create('acme', 'expired') \gset
UPDATE apikey_keys SET expires_at = now() - interval '1 minute' WHERE key_id = :'k9';
SELECT v2w_try(format('SELECT apikey_rotate(%L)', :'k9')) AS rotate_expired;
SELECT v2w_try('SELECT apikey_rotate(''key_doesnotexist00'')') AS rotate_unknown;
-- nothing was written by the failed rotations
SELECT count(*) AS successors FROM apikey_keys WHERE rotated_from IN (:'k2', :'k9');

-- ---------------------------------------------------------------------------
-- Direct DML is audited too, with the changed columns in the details; a
-- no-op UPDATE or one of the usage counters only writes no event.
-- ---------------------------------------------------------------------------
SELECT key_id AS k10 FROM apikey_create('acme', 'old name', '{documents:read}') \gset
UPDATE apikey_keys SET name = 'new name' WHERE key_id = :'k10';
UPDATE apikey_keys SET scopes = '{documents:*}', metadata = '{"x": 1}' WHERE key_id = :'k10';
SELECT count(*) AS events_before FROM apikey_events \gset
UPDATE apikey_keys SET name = name WHERE key_id = :'k10';                        -- no-op
UPDATE apikey_keys SET name = 'new name', scopes = '{documents:*}' WHERE key_id = :'k10';   -- same values
UPDATE apikey_keys SET usage_count = usage_count + 5 WHERE key_id = :'k10';     -- counters only
UPDATE apikey_keys SET last_used_at = now() WHERE key_id = :'k10';
UPDATE apikey_keys SET usage_count = usage_count + 1, last_used_at = now() WHERE key_id = :'k10';
SELECT count(*) - :events_before AS new_events FROM apikey_events;
-- revoking and expiring by hand are named as such
SELECT key_id AS k11 FROM apikey_create('acme', 'revoked by hand') \gset
UPDATE apikey_keys SET is_active = false, revoked_at = now(), revoked_reason = 'manual'
 WHERE key_id = :'k11';
INSERT INTO apikey_keys (key_id, org_id, name, hint, hash, environment)
VALUES ('key_importedkey0001', 'acme', 'imported', 'xx_live_abcd', apikey_token_hash('xx_live_abcdef'), 'live');
DELETE FROM apikey_keys WHERE key_id = :'k10';
SELECT * FROM v2w_events(:'k10');
SELECT * FROM v2w_events(:'k11');
SELECT * FROM v2w_events('key_importedkey0001');
-- the audit records which org the key belonged to
SELECT DISTINCT org_id FROM apikey_events WHERE key_id = :'k10';
-- an imported key without our prefix is found by its hash
SELECT (apikey_verify('xx_live_abcdef')).code;

-- ---------------------------------------------------------------------------
-- The actor is the role in effect, SET ROLE included, also when the change
-- happens inside a SECURITY DEFINER function (apikey_sweep).
-- ---------------------------------------------------------------------------
CREATE ROLE v2w_keyadmin;
GRANT SELECT, INSERT, UPDATE, DELETE ON apikey_keys TO v2w_keyadmin;
GRANT EXECUTE ON FUNCTION apikey_create(text, text, text[], text, timestamptz, integer, cidr[], jsonb, text),
                          apikey_revoke(text, text), apikey_rotate(text, interval), apikey_sweep()
   TO v2w_keyadmin;
SET ROLE v2w_keyadmin;
SELECT key_id AS ka FROM apikey_create('acme', 'made by keyadmin') \gset
UPDATE apikey_keys SET name = 'renamed by keyadmin' WHERE key_id = :'ka';
SELECT key_id AS kar FROM apikey_rotate(:'ka', '1 hour') \gset
SELECT apikey_revoke(:'kar');
UPDATE apikey_keys SET expires_at = now() - interval '1 second' WHERE key_id = :'ka';
SELECT expired FROM apikey_sweep();
DELETE FROM apikey_keys WHERE key_id = :'ka';
RESET ROLE;
SELECT key_id = :'ka' AS old_key, event, actor FROM apikey_events
 WHERE key_id IN (:'ka', :'kar') ORDER BY event_id;
-- the audit trail itself is not writable by the key admin
SET ROLE v2w_keyadmin;
INSERT INTO apikey_events (event, actor) VALUES ('created', 'someone else');
RESET ROLE;

-- ---------------------------------------------------------------------------
-- apikey_sweep: keys past expires_at become inactive, each with an
-- 'expired' event; usage buckets older than apikey.usage_retention go.
-- ---------------------------------------------------------------------------
-- (the keys that expired above, k8 rotated with grace 0 and k9, were swept
-- by v2w_keyadmin already)
SELECT * FROM apikey_sweep();
SELECT key_id AS s1, token AS ts1 FROM apikey_create('acme', 'sweep me 1') \gset
SELECT key_id AS s2 FROM apikey_create('acme', 'sweep me 2', expires_at => now() + interval '1 day') \gset
SELECT key_id AS s3 FROM apikey_create('acme', 'not yet') \gset
SELECT key_id AS s4 FROM apikey_create('acme', 'revoked, expired') \gset
SELECT apikey_revoke(:'s4');
UPDATE apikey_keys SET expires_at = now() - interval '1 hour'
 WHERE key_id IN (:'s1', :'s2', :'s4');
UPDATE apikey_keys SET expires_at = now() + interval '1 hour' WHERE key_id = :'s3';
SELECT (apikey_verify(:'ts1')).code;
SHOW apikey.usage_retention;
INSERT INTO apikey_usage (key_id, bucket, requests) VALUES
    (:'s3', date_trunc('hour', now()) - interval '40 days', 1),
    (:'s3', date_trunc('hour', now()) - interval '31 days', 2),
    (:'s3', date_trunc('hour', now()) - interval '29 days', 3),
    (:'s3', date_trunc('hour', now()), 4),
    ('key_deletedlongago', date_trunc('hour', now()) - interval '60 days', 5);
SELECT * FROM apikey_sweep();
SELECT name, is_active, revoked_at IS NOT NULL AS revoked FROM apikey_keys
 WHERE key_id IN (:'s1', :'s2', :'s3', :'s4') ORDER BY name;
SELECT requests FROM apikey_usage WHERE key_id IN (:'s3', 'key_deletedlongago') ORDER BY bucket;
SELECT * FROM v2w_events(:'s1');
SELECT event FROM apikey_events WHERE key_id = :'s4' ORDER BY event_id;   -- no 'expired'
-- an expired key stays EXPIRED after the sweep
SELECT (apikey_verify(:'ts1')).code;
-- nothing left to do
SELECT * FROM apikey_sweep();

-- ---------------------------------------------------------------------------
-- TRUNCATE is audited as one 'truncated' event
-- ---------------------------------------------------------------------------
TRUNCATE apikey_keys;
SELECT event, org_id, key_id, actor = current_user AS by_me FROM apikey_events
 WHERE event_id = (SELECT max(event_id) FROM apikey_events);

DROP FUNCTION v2w_events(text);
DROP FUNCTION v2w_try(text);
DROP FUNCTION v2w_near(timestamptz, timestamptz);
DROP EXTENSION apikey CASCADE;
DROP ROLE v2w_keyadmin;
