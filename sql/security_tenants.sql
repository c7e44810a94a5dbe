--
-- security_tenants: the tenant-isolation recipe, attacked by two hostile
-- tenants.
--
-- Two organizations, acme and globex, each administer their own keys in
-- one database.  The recipe (the manual quotes it verbatim, from "THE
-- RECIPE" to "END OF THE RECIPE"):
--   * the binding of a session to an organization is role membership,
--     recorded in apikey_org_roles, which only its owner may write, and
--     checked by apikey_acts_for(org_id) inside the policies -- not a
--     setting such as app.org_id, which any session may set;
--   * row-level security on every table a tenant reads: apikey_keys,
--     apikey_events, apikey_usage (the usage log and the alerts, which mix
--     organizations in one row, are not granted; the functions that read
--     shared memory and the log show a tenant only the keys it may see);
--   * column privileges: a tenant never reads a hash, and cannot change
--     one, nor a key's limits, organization or key_id; a policy keeps what
--     it inserts within its organization and limits, and revoked keys out
--     of reach of UPDATE;
--   * a quota of keys per organization, so that no tenant can fill the
--     rate-limit windows that every organization shares.
-- Then each tenant attacks the other, and its own limits, as a login role
-- of its own (\c), and fails; while each sees and manages its own keys,
-- events and usage, and apikey_verify keeps answering for every key.
--
CREATE EXTENSION apikey;
\set SHOW_CONTEXT never
SELECT current_user AS su \gset
-- earlier tests may have left counts pending: write them now
SELECT apikey_flush() >= 0 AS flushed_leftovers;

-- Run a statement; 'ok' or its SQLSTATE and message, key_ids masked.
CREATE FUNCTION regress_sec_try(q text) RETURNS text
    LANGUAGE plpgsql
AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, 'key_[0-9A-Za-z]{16}', '<key_id>', 'g');
END
$$;

-- THE RECIPE ------------------------------------------------------------------

-- One role per organization; its administrators are its members.  The
-- privileges go to one role that every organization's role is granted.
CREATE ROLE regress_sec_tenant NOLOGIN;
CREATE ROLE regress_sec_acme_admins NOLOGIN IN ROLE regress_sec_tenant;
CREATE ROLE regress_sec_globex_admins NOLOGIN IN ROLE regress_sec_tenant;
CREATE ROLE regress_sec_alice LOGIN IN ROLE regress_sec_acme_admins;
CREATE ROLE regress_sec_gabe LOGIN IN ROLE regress_sec_globex_admins;

-- The binding: who acts for which organization.
INSERT INTO apikey_org_roles (org_id, role_name)
VALUES ('acme', 'regress_sec_acme_admins'),
       ('globex', 'regress_sec_globex_admins');

-- What a tenant may read and write: every column but the hash; inserts of
-- what apikey_create and apikey_rotate insert; updates of what an
-- administrator may change (not the hash, the limits, the organization or
-- the key_id).  No DELETE or TRUNCATE: keys are revoked.
GRANT SELECT (key_id, org_id, name, hint, scopes, environment, is_active, expires_at,
              rate_limit, rate_window, allowed_ips, metadata, created_by, created_at,
              revoked_at, revoked_reason, rotated_from, replaced_by, last_used_at,
              usage_count)
    ON apikey_keys TO regress_sec_tenant;
GRANT INSERT (key_id, org_id, name, hint, hash, scopes, environment, expires_at,
              rate_limit, rate_window, allowed_ips, metadata, created_by, rotated_from)
    ON apikey_keys TO regress_sec_tenant;
GRANT UPDATE (name, scopes, metadata, allowed_ips, expires_at, is_active,
              revoked_at, revoked_reason, replaced_by)
    ON apikey_keys TO regress_sec_tenant;
GRANT SELECT ON apikey_events, apikey_usage, apikey_stats, apikey_activity TO regress_sec_tenant;
GRANT EXECUTE ON FUNCTION
    apikey_create(text, text, text[], text, timestamptz, integer, cidr[], jsonb, text),
    apikey_revoke(text, text), apikey_revoke_org(text, text), apikey_rotate(text, interval),
    apikey_rate_limit_status(text), apikey_stats_internal()
  TO regress_sec_tenant;

-- Row-level security on every table a tenant reads.
ALTER TABLE apikey_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE apikey_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE apikey_usage ENABLE ROW LEVEL SECURITY;

-- A tenant sees its organizations' keys; creates keys only for them, with
-- a limit of 1 to 1000 requests an hour; changes only live keys (not
-- revoked, deactivated or expired: as apikey_update refuses to, so that an
-- expired key cannot be brought back).
CREATE POLICY tenant_select ON apikey_keys FOR SELECT TO regress_sec_tenant
    USING (apikey_acts_for(org_id));
CREATE POLICY tenant_insert ON apikey_keys FOR INSERT TO regress_sec_tenant
    WITH CHECK (apikey_acts_for(org_id)
                AND rate_limit BETWEEN 1 AND 1000
                AND rate_window = interval '1 hour');
CREATE POLICY tenant_update ON apikey_keys FOR UPDATE TO regress_sec_tenant
    USING (apikey_acts_for(org_id) AND revoked_at IS NULL AND is_active
           AND (expires_at IS NULL OR expires_at > now()))
    WITH CHECK (apikey_acts_for(org_id));
-- At most 10,000 keys per organization, counted as they are created (and
-- deleted, which only the DBA may).  Every rate-limited key a tenant
-- verifies holds a window in shared memory for its hour, and all
-- organizations and databases share one bound (apikey.max_tracked_keys):
-- without a quota, one tenant could create and verify keys until it is
-- reached, and the limited keys of every other tenant whose windows then
-- start would be refused (RATE_LIMITED) for the rest of the hour.  The
-- count is a row per organization in a table of its own, which no tenant
-- may read or write, updated by a SECURITY DEFINER trigger: concurrent
-- inserts for one organization wait for each other's row (or fail to
-- serialize), so none can count below the quota.  If keys exist already:
--   INSERT INTO regress_sec_key_quota SELECT org_id, count(*) FROM apikey_keys GROUP BY 1;
CREATE TABLE regress_sec_key_quota (org_id text PRIMARY KEY, keys bigint NOT NULL);
REVOKE ALL ON regress_sec_key_quota FROM PUBLIC;
CREATE FUNCTION regress_sec_key_quota() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    org text;
    n bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE public.regress_sec_key_quota q SET keys = q.keys - d.n
          FROM (SELECT k.org_id, count(*) AS n FROM old_keys k GROUP BY 1) d
         WHERE q.org_id = d.org_id;
        RETURN NULL;
    END IF;
    FOR org, n IN
        INSERT INTO public.regress_sec_key_quota AS q (org_id, keys)
        SELECT k.org_id, count(*) FROM new_keys k GROUP BY 1 ORDER BY 1
        ON CONFLICT (org_id) DO UPDATE SET keys = q.keys + excluded.keys
        RETURNING q.org_id, q.keys
    LOOP
        IF n > 10000 THEN
            RAISE EXCEPTION 'organization "%" would have % keys, more than its quota of 10000', org, n
                USING ERRCODE = 'program_limit_exceeded',
                      HINT = 'Revoke keys that are not used, or ask the DBA for a higher quota.';
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION regress_sec_key_quota() FROM PUBLIC;
CREATE TRIGGER regress_sec_key_quota AFTER INSERT ON apikey_keys
    REFERENCING NEW TABLE AS new_keys
    FOR EACH STATEMENT EXECUTE FUNCTION regress_sec_key_quota();
CREATE TRIGGER regress_sec_key_quota_delete AFTER DELETE ON apikey_keys
    REFERENCING OLD TABLE AS old_keys
    FOR EACH STATEMENT EXECUTE FUNCTION regress_sec_key_quota();
CREATE POLICY tenant_select ON apikey_events FOR SELECT TO regress_sec_tenant
    USING (apikey_acts_for(org_id));
-- Usage of the tenant's keys, from each key's creation on: a key_id freed
-- by deleting a key (its history stays until apikey.usage_retention) and
-- taken by another organization does not bring that history with it.
CREATE POLICY tenant_select ON apikey_usage FOR SELECT TO regress_sec_tenant
    USING (EXISTS (SELECT FROM apikey_keys k
                    WHERE k.key_id = apikey_usage.key_id
                      AND apikey_usage.bucket >= date_trunc('hour', k.created_at)));

-- Once row-level security is on, every other role that reads these tables
-- needs a policy too.  The key administrators of all organizations:
CREATE ROLE regress_sec_admin NOLOGIN;
GRANT SELECT, INSERT, UPDATE ON apikey_keys TO regress_sec_admin;
GRANT SELECT ON apikey_events, apikey_usage, apikey_usage_log, apikey_stats, apikey_activity
    TO regress_sec_admin;
GRANT EXECUTE ON FUNCTION
    apikey_create(text, text, text[], text, timestamptz, integer, cidr[], jsonb, text),
    apikey_revoke(text, text), apikey_revoke_org(text, text), apikey_rotate(text, interval),
    apikey_rate_limit_status(text), apikey_stats_internal()
  TO regress_sec_admin;
CREATE POLICY admin_all ON apikey_keys TO regress_sec_admin USING (true) WITH CHECK (true);
CREATE POLICY admin_all ON apikey_events FOR SELECT TO regress_sec_admin USING (true);
CREATE POLICY admin_all ON apikey_usage FOR SELECT TO regress_sec_admin USING (true);
-- The application, which verifies (PUBLIC may), records responses and
-- reads rate-limit status for the headers: apikey_rate_limit_status shows
-- a key to a role that may see it in apikey_keys.
CREATE ROLE regress_sec_app LOGIN;
GRANT EXECUTE ON FUNCTION apikey_record(text, text, integer, double precision),
                          apikey_rate_limit_status(text) TO regress_sec_app;
GRANT SELECT (key_id) ON apikey_keys TO regress_sec_app;
CREATE POLICY app_key_ids ON apikey_keys FOR SELECT TO regress_sec_app USING (true);

-- END OF THE RECIPE ----------------------------------------------------------

GRANT EXECUTE ON FUNCTION regress_sec_try(text) TO regress_sec_tenant, regress_sec_app;

-- Each organization's keys, made by the DBA; some traffic, written and
-- pending.
SELECT key_id AS a1, token AS ta1 FROM apikey_create('acme', 'acme one', '{documents:read}', rate_limit => 100) \gset
SELECT key_id AS a2, token AS ta2 FROM apikey_create('acme', 'acme two') \gset
SELECT key_id AS a_revoked FROM apikey_create('acme', 'acme revoked') \gset
SELECT apikey_revoke(:'a_revoked', 'compromised');
SELECT key_id AS a_expired FROM apikey_create('acme', 'acme expired') \gset
UPDATE apikey_keys SET expires_at = now() - interval '1 day', is_active = false
 WHERE key_id = :'a_expired';
SELECT key_id AS g1, token AS tg1 FROM apikey_create('globex', 'globex one', '{billing:*}', rate_limit => 100) \gset
SELECT key_id AS g2, token AS tg2 FROM apikey_create('globex', 'globex two') \gset
SELECT count(*) FROM (SELECT apikey_verify(t) FROM unnest(ARRAY[:'ta1', :'ta2', :'tg1', :'tg2']) t) s;
SELECT apikey_flush() > 0 AS flushed;
SELECT count(*) FROM (SELECT apikey_verify(t) FROM unnest(ARRAY[:'ta1', :'tg1', :'tg1']) t) s;
SELECT apikey_record(:'g1', '/billing', 200, 10), apikey_record(:'a1', '/documents', 200, 20);

-- ---------------------------------------------------------------------------
-- Alice, an acme administrator, logs in.
-- ---------------------------------------------------------------------------
\c - regress_sec_alice
SELECT session_user, current_user;
\set SHOW_CONTEXT never

-- She sees and manages acme's keys, events and usage.
SELECT org_id, name, scopes, is_active, revoked_at IS NOT NULL AS revoked
  FROM apikey_keys ORDER BY name, revoked;
SELECT key_id AS a3, token AS ta3 FROM apikey_create('acme', 'acme three', '{documents:*}') \gset
UPDATE apikey_keys SET name = 'acme three (renamed)', scopes = '{documents:read}',
                       metadata = '{"team": "docs"}'
 WHERE key_id = :'a3';
SELECT key_id AS a4, token AS ta4 FROM apikey_rotate(:'a3', '1 hour') \gset
SELECT apikey_revoke(:'a4', 'rotated by mistake');
SELECT org_id, event, count(*) FROM apikey_events GROUP BY 1, 2 ORDER BY 1, 2;
SELECT DISTINCT u.key_id = :'a1' OR u.key_id = :'a2' AS own_key, sum(requests) > 0 AS requests
  FROM apikey_usage u GROUP BY 1;
SELECT name, requests FROM apikey_stats ORDER BY name;
SELECT name, requests FROM apikey_activity ORDER BY name;
SELECT count(*) AS pending_rows, bool_and(p.key_id IN (:'a1', :'a2')) AS all_acme
  FROM apikey_pending_usage() p;
SELECT rate_limit, remaining IS NOT NULL AS has_window FROM apikey_rate_limit_status(:'a1');

-- Forged bindings.  A setting binds nothing:
SET app.org_id = 'globex';
SELECT count(*) AS globex_keys_seen FROM apikey_keys WHERE org_id = 'globex';
RESET app.org_id;
-- the binding table is not hers to write, nor to read:
INSERT INTO apikey_org_roles VALUES ('globex', 'regress_sec_acme_admins');
UPDATE apikey_org_roles SET org_id = 'globex';
DELETE FROM apikey_org_roles;
SELECT * FROM apikey_org_roles;
-- she cannot become globex's role, nor the admin:
SET ROLE regress_sec_globex_admins;
SET ROLE regress_sec_admin;
SET SESSION AUTHORIZATION regress_sec_gabe;
-- a function of her own named apikey_acts_for changes nothing: the
-- policies call the extension's, bound when they were created
CREATE FUNCTION pg_temp.apikey_acts_for(org_id text) RETURNS boolean
    LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION public.apikey_acts_for(org_id text) RETURNS boolean
    LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION public.apikey_acts_for(org_id varchar) RETURNS boolean
    LANGUAGE sql AS 'SELECT true';
SET search_path = pg_temp, public;
SELECT count(*) AS globex_keys_seen FROM apikey_keys WHERE org_id = 'globex';
SELECT count(*) AS globex_events_seen FROM apikey_events WHERE org_id = 'globex';
RESET search_path;
DISCARD TEMP;
SELECT apikey_acts_for('acme') AS acts_for_acme, apikey_acts_for('globex') AS acts_for_globex;

-- Cross-tenant reads, through every path: nothing of globex.
SELECT count(*) FROM apikey_keys WHERE org_id = 'globex' OR key_id IN (:'g1', :'g2');
SELECT count(*) FROM apikey_events WHERE org_id = 'globex' OR key_id IN (:'g1', :'g2');
SELECT count(*) FROM apikey_usage WHERE key_id IN (:'g1', :'g2');
SELECT count(*) FROM apikey_stats WHERE org_id = 'globex' OR key_id IN (:'g1', :'g2');
SELECT count(*) FROM apikey_activity WHERE org_id = 'globex' OR key_id IN (:'g1', :'g2');
SELECT count(*) FROM apikey_rate_limit_status(:'g1');
SELECT count(*) FROM apikey_stats_internal() WHERE key_id IN (:'g1', :'g2');
SELECT count(*) FROM apikey_pending_usage() WHERE key_id IN (:'g1', :'g2');
SELECT count(*) FROM apikey_recent_usage() WHERE key_id IN (:'g1', :'g2');
-- what mixes organizations is not hers at all
SELECT * FROM apikey_usage_log;
SELECT * FROM apikey_alerts;
-- nor is any hash, her own included
SELECT hash FROM apikey_keys;
SELECT * FROM apikey_keys;

-- Cross-tenant writes: nothing of globex changes.
SELECT * FROM apikey_create('globex', 'planted by acme');
INSERT INTO apikey_keys (key_id, org_id, name, hint, hash, environment, rate_limit, rate_window)
VALUES ('key_planted', 'globex', 'planted', 'x', apikey_token_hash('x'), 'live', 10, '1 hour');
-- an upsert that collides with a globex key does not reach it either
INSERT INTO apikey_keys (key_id, org_id, name, hint, hash, environment, rate_limit, rate_window)
VALUES (:'g1', 'acme', 'upsert', 'x', apikey_token_hash('z'), 'live', 10, '1 hour')
    ON CONFLICT (key_id) DO UPDATE SET name = 'hijacked', scopes = '{}';
SELECT apikey_revoke(:'g1', 'by acme');
SELECT apikey_revoke_org('globex', 'by acme');
SELECT regress_sec_try(format('SELECT * FROM apikey_rotate(%L)', :'g1')) AS rotate_globex;
UPDATE apikey_keys SET name = 'hijacked', scopes = '{}' WHERE key_id IN (:'g1', :'g2')
 RETURNING key_id;
UPDATE apikey_keys SET is_active = false WHERE org_id = 'globex' RETURNING key_id;
-- nor can one of hers move to globex, or be deleted
UPDATE apikey_keys SET org_id = 'globex' WHERE key_id = :'a2';
DELETE FROM apikey_keys WHERE key_id = :'a2';
TRUNCATE apikey_keys;
INSERT INTO apikey_events (org_id, key_id, event, actor) VALUES ('globex', :'g1', 'revoked', 'forged');

-- Within acme: no hash of her choosing, no key back from revocation or
-- expiry, no limit lifted or raised.
UPDATE apikey_keys SET hash = apikey_token_hash('ak_live_chosen') WHERE key_id = :'a2';
UPDATE apikey_keys SET revoked_at = NULL, is_active = true WHERE key_id = :'a_revoked'
 RETURNING key_id;
UPDATE apikey_keys SET revoked_at = NULL WHERE key_id = :'a_revoked' RETURNING key_id;
-- nor from expiry (the sweep deactivates expired keys)
UPDATE apikey_keys SET is_active = true, expires_at = NULL WHERE key_id = :'a_expired'
 RETURNING key_id;
UPDATE apikey_keys SET expires_at = NULL WHERE key_id = :'a_expired' RETURNING key_id;
UPDATE apikey_keys SET rate_limit = 0 WHERE key_id = :'a1';
UPDATE apikey_keys SET rate_limit = NULL WHERE key_id = :'a1';
UPDATE apikey_keys SET rate_window = '1 second' WHERE key_id = :'a1';
UPDATE apikey_keys SET key_id = 'key_renamed' WHERE key_id = :'a1';
SELECT * FROM apikey_create('acme', 'unlimited', rate_limit => 0);
SELECT * FROM apikey_create('acme', 'huge', rate_limit => 1000000);
INSERT INTO apikey_keys (key_id, org_id, name, hint, hash, environment)
VALUES ('key_no_limit', 'acme', 'no limit', 'x', apikey_token_hash('y'), 'live');
-- nor more keys than the quota, whose windows could fill the bound that
-- every organization shares: in one statement, or one at a time
SELECT count(*) AS acme_keys FROM apikey_keys \gset
INSERT INTO apikey_keys (key_id, org_id, name, hint, hash, environment, rate_limit, rate_window)
SELECT 'key_flood_' || g, 'acme', 'flood', 'x', apikey_token_hash('flood-' || g), 'live', 1, '1 hour'
  FROM generate_series(1, 10001 - :acme_keys) g;
INSERT INTO apikey_keys (key_id, org_id, name, hint, hash, environment, rate_limit, rate_window)
SELECT 'key_flood_' || g, 'acme', 'flood', 'x', apikey_token_hash('flood-' || g), 'live', 1, '1 hour'
  FROM generate_series(1, 10000 - :acme_keys) g;
SELECT regress_sec_try($$SELECT * FROM apikey_create('acme', 'one too many', rate_limit => 10)$$)
    AS one_too_many;
SELECT count(*) AS acme_keys FROM apikey_keys;
DELETE FROM apikey_keys WHERE name = 'flood';   -- not hers to do
\c - :su
\set SHOW_CONTEXT never
DELETE FROM apikey_keys WHERE name = 'flood';
\c - regress_sec_alice
\set SHOW_CONTEXT never
-- what she could do was done to acme's keys only
SELECT name, is_active, revoked_at IS NOT NULL AS revoked, rate_limit
  FROM apikey_keys ORDER BY name, revoked;

-- ---------------------------------------------------------------------------
-- Gabe, a globex administrator: the same from the other side, briefly.
-- ---------------------------------------------------------------------------
\c - regress_sec_gabe
\set SHOW_CONTEXT never
SELECT org_id, name, is_active FROM apikey_keys ORDER BY name;
SELECT DISTINCT org_id FROM apikey_events ORDER BY 1;
SELECT count(*) FROM apikey_keys WHERE key_id IN (:'a1', :'a2', :'a3', :'a4');
SELECT count(*) FROM apikey_rate_limit_status(:'a1');
SELECT count(*) FROM apikey_stats_internal() WHERE key_id IN (:'a1', :'a2');
SELECT apikey_revoke(:'a1', 'by globex');
SELECT apikey_revoke_org('acme', 'by globex');
SELECT name, requests FROM apikey_activity ORDER BY name;
-- gabe manages his own
SELECT count(*) FROM apikey_create('globex', 'globex three', '{billing:read}');
SELECT apikey_revoke(:'g2', 'done');

-- ---------------------------------------------------------------------------
-- The application and the DBA.
-- ---------------------------------------------------------------------------
\c - regress_sec_app
\set SHOW_CONTEXT never
-- verification is not subject to row-level security: every key answers
SELECT t.name, (apikey_verify(t.token)).code
  FROM (VALUES ('acme one', :'ta1'), ('acme two', :'ta2'), ('acme three (renamed)', :'ta3'),
               ('acme three, rotated and revoked', :'ta4'),
               ('globex one', :'tg1'), ('globex two', :'tg2')) t(name, token)
 ORDER BY 1;
-- the rate-limit status of any key, for the headers
SELECT rate_limit FROM apikey_rate_limit_status(:'a1');
SELECT rate_limit FROM apikey_rate_limit_status(:'g1');
SELECT apikey_record(:'g1', '/billing', 200, 3);
-- and nothing else
SELECT name FROM apikey_keys;
SELECT count(*) FROM apikey_events;

\c - :su
\set SHOW_CONTEXT never
-- an application confined to acme by its policy records acme's responses
-- and not globex's, whose key_id it names (key_ids are no secret)
ALTER POLICY app_key_ids ON apikey_keys USING (org_id = 'acme');
SELECT sum(responses) AS g1_before FROM apikey_pending_usage() WHERE key_id = :'g1' \gset
SELECT sum(responses) AS a1_before FROM apikey_pending_usage() WHERE key_id = :'a1' \gset
SET ROLE regress_sec_app;
SELECT apikey_record(:'g1', '/billing', 500, 86400000), apikey_record(:'a1', '/documents', 200, 1);
RESET ROLE;
SELECT sum(responses) - :g1_before AS globex_added FROM apikey_pending_usage() WHERE key_id = :'g1';
SELECT sum(responses) - :a1_before AS acme_added FROM apikey_pending_usage() WHERE key_id = :'a1';
-- without its policy, the application role sees no key once row-level
-- security is on: no rate-limit status, no responses recorded
DROP POLICY app_key_ids ON apikey_keys;
SELECT sum(responses) AS responses_before FROM apikey_pending_usage() WHERE key_id = :'a1' \gset
SET ROLE regress_sec_app;
SELECT count(*) AS without_policy FROM apikey_rate_limit_status(:'a1');
SELECT apikey_record(:'a1', '/documents', 200, 1);
RESET ROLE;
SELECT sum(responses) - :responses_before AS added FROM apikey_pending_usage() WHERE key_id = :'a1';
-- and without SELECT (key_id) it is told what to grant
REVOKE SELECT (key_id) ON apikey_keys FROM regress_sec_app;
SET ROLE regress_sec_app;
SELECT * FROM apikey_rate_limit_status(:'a1');
SELECT apikey_record(:'a1', '/documents', 200, 1);
RESET ROLE;
-- the key administrator sees every organization
SET ROLE regress_sec_admin;
SELECT org_id, count(*) FROM apikey_keys GROUP BY 1 ORDER BY 1;
SELECT count(DISTINCT org_id) FROM apikey_events;
RESET ROLE;
-- every change is in the audit trail, under the name of who made it (the
-- flood within acme's quota aside)
SELECT org_id, event, actor, count(*) FROM apikey_events
 WHERE actor <> :'su' AND details ->> 'name' IS DISTINCT FROM 'flood'
 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
-- globex's keys are as globex left them
SELECT name, is_active, revoked_reason FROM apikey_keys WHERE org_id = 'globex' ORDER BY name;

-- ---------------------------------------------------------------------------
-- A key_id freed by deleting a key.  The DBA deletes globex two (the recipe
-- gives tenants no DELETE), whose usage history stays; its last use is made
-- two hours old here.  Alice takes the key_id for an acme key: she sees
-- none of globex's history or events under it.
-- ---------------------------------------------------------------------------
UPDATE apikey_usage SET bucket = bucket - interval '2 hours' WHERE key_id = :'g2';
SELECT count(*) AS globex_two_history FROM apikey_usage WHERE key_id = :'g2';
DELETE FROM apikey_keys WHERE key_id = :'g2';
\c - regress_sec_alice
\set SHOW_CONTEXT never
INSERT INTO apikey_keys (key_id, org_id, name, hint, hash, environment, rate_limit, rate_window)
VALUES (:'g2', 'acme', 'reused key_id', 'x', apikey_token_hash('w'), 'live', 10, '1 hour');
SELECT count(*) AS history_seen FROM apikey_usage WHERE key_id = :'g2';
SELECT org_id, event FROM apikey_events WHERE key_id = :'g2' ORDER BY event_id;
\c - :su
\set SHOW_CONTEXT never

-- ---------------------------------------------------------------------------
-- Clean up
-- ---------------------------------------------------------------------------
DROP EXTENSION apikey;
DROP FUNCTION regress_sec_try(text);
DROP FUNCTION regress_sec_key_quota();
DROP TABLE regress_sec_key_quota;
DROP ROLE regress_sec_alice, regress_sec_gabe, regress_sec_acme_admins, regress_sec_globex_admins,
          regress_sec_tenant, regress_sec_admin, regress_sec_app;
