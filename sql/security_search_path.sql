--
-- security_search_path: nothing a caller plants in pg_temp runs with
-- another role's rights.
--
-- A function with SET search_path = 'pg_catalog, <schema>' (pg_temp not
-- named) searches pg_temp FIRST for relations and types.  In 2.0 that let
-- any role allowed to call one of our SECURITY DEFINER functions, or to
-- fire the audit trigger, make itself superuser with a temporary domain
-- named int8 or jsonb (issue 14, attack 1).  From 2.1 on every SECURITY
-- DEFINER function pins "pg_catalog, <schema>, pg_temp", and the C code
-- runs its SQL schema-qualified with search_path "pg_catalog, pg_temp".
--
-- The attack, performed here by the two roles the manual recommends (an
-- application role and a key administrator), each in its own session's
-- pg_temp:
--   * domains named like the built-in types that the extension's code
--     uses, whose CHECK calls a planted function;
--   * relations named like the extension's tables (views that call the
--     planted function when read, with INSTEAD OF triggers that call it
--     when written);
-- then every function the role may call, and direct DML on apikey_keys
-- (which fires the audit trigger, SECURITY DEFINER).  The planted function
-- records the role it runs as and tries to make the attacker superuser.
-- The test asserts that it never ran as anyone but the attacker, and that
-- the attackers are not superusers.
--
CREATE EXTENSION apikey;
\set SHOW_CONTEXT never
-- 31-day rate windows: no window ends during the test
SET apikey.default_rate_window = '31d';
-- earlier tests may have left counts pending: write them now, so that the
-- flushes below see only this test's
SELECT apikey_flush() >= 0 AS flushed_leftovers;

CREATE ROLE regress_sec_app;     -- the application (verify, record, rate-limit headers)
CREATE ROLE regress_sec_admin;   -- a key administrator

-- The application role, as the manual recommends.
GRANT EXECUTE ON FUNCTION apikey_record(text, text, integer, double precision),
                          apikey_rate_limit_status(text) TO regress_sec_app;
-- The key administrator, as the manual recommends, and more: DELETE and
-- TRUNCATE fire the audit trigger too, and apikey_sweep_batch is the
-- sweep's other entry point.
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON apikey_keys TO regress_sec_admin;
GRANT SELECT ON apikey_events, apikey_usage, apikey_usage_log, apikey_alerts,
                apikey_stats, apikey_activity TO regress_sec_admin;
GRANT EXECUTE ON FUNCTION
    apikey_create(text, text, text[], text, timestamptz, integer, cidr[], jsonb, text),
    apikey_revoke(text, text), apikey_revoke_org(text, text), apikey_rotate(text, interval),
    apikey_rate_limit_status(text), apikey_record(text, text, integer, double precision),
    apikey_stats_internal(), apikey_flush(), apikey_sweep(), apikey_sweep_batch(integer)
  TO regress_sec_admin;

-- Where the planted code reports.  Any role may write it: the attacker's
-- code must be able to report whatever role it runs as.
CREATE SCHEMA regress_sec_trap;
GRANT USAGE ON SCHEMA regress_sec_trap TO PUBLIC;
CREATE TABLE regress_sec_trap.ran (
    n         bigserial,
    via       text    NOT NULL,    -- which planted object
    ran_as    name    NOT NULL,    -- current_user when it ran
    escalated boolean NOT NULL     -- did ALTER ROLE ... SUPERUSER succeed?
);
GRANT INSERT ON regress_sec_trap.ran TO PUBLIC;
GRANT USAGE ON SEQUENCE regress_sec_trap.ran_n_seq TO PUBLIC;

-- What the attacker runs in its own session: plants the objects in its
-- pg_temp.  SECURITY INVOKER, so everything it creates is the caller's.
-- The planted function is created first, the domains last (once a domain
-- named text exists, "text" in this session means the domain).
CREATE FUNCTION regress_sec_trap.plant() RETURNS void
    LANGUAGE plpgsql
AS $plant$
DECLARE
    t text;
BEGIN
    -- The payload: report, then try to become superuser.
    EXECUTE $f$
    CREATE FUNCTION pg_temp.sec_evil(via pg_catalog.text) RETURNS pg_catalog.bool
        LANGUAGE plpgsql
    AS $b$
    DECLARE
        escalated pg_catalog.bool := false;
    BEGIN
        BEGIN
            EXECUTE 'ALTER ROLE regress_sec_app SUPERUSER';
            EXECUTE 'ALTER ROLE regress_sec_admin SUPERUSER';
            escalated := true;
        EXCEPTION WHEN OTHERS THEN
            escalated := false;
        END;
        INSERT INTO regress_sec_trap.ran (via, ran_as, escalated)
        VALUES (via, current_user, escalated);
        RETURN true;
    END
    $b$ $f$;
    EXECUTE $f$
    CREATE FUNCTION pg_temp.sec_evil_trg() RETURNS trigger
        LANGUAGE plpgsql
    AS $b$
    BEGIN
        PERFORM pg_temp.sec_evil(pg_catalog.format('%s pg_temp.%s', TG_OP, TG_TABLE_NAME));
        RETURN NULL;
    END
    $b$ $f$;

    -- Relations named like the extension's: read, they run the payload
    -- (a function scan); written, their INSTEAD OF trigger does.
    FOREACH t IN ARRAY ARRAY['apikey_keys', 'apikey_events', 'apikey_usage',
                             'apikey_usage_log', 'apikey_alerts', 'apikey_org_roles']
    LOOP
        CONTINUE WHEN pg_catalog.to_regclass('public.' || t) IS NULL;  -- 1.x has fewer
        EXECUTE pg_catalog.format($f$
            CREATE FUNCTION pg_temp.%1$s_rows() RETURNS SETOF public.%1$s
                LANGUAGE plpgsql
            AS $b$ BEGIN PERFORM pg_temp.sec_evil('SELECT pg_temp.%1$s'); END $b$ $f$, t);
        EXECUTE pg_catalog.format('CREATE VIEW pg_temp.%1$s AS SELECT * FROM pg_temp.%1$s_rows()', t);
        EXECUTE pg_catalog.format('CREATE TRIGGER sec_evil INSTEAD OF INSERT OR UPDATE OR DELETE'
                                  ' ON pg_temp.%1$s FOR EACH ROW EXECUTE FUNCTION pg_temp.sec_evil_trg()', t);
    END LOOP;

    -- Domains named like the types the extension's code uses.
    FOREACH t IN ARRAY ARRAY['int8', 'int4', 'int2', 'float8', 'numeric', 'bool', 'text',
                             'varchar', 'name', 'bytea', 'jsonb', 'json', 'timestamptz',
                             'interval', 'inet', 'cidr', 'regrole', 'regclass', 'oid']
    LOOP
        EXECUTE pg_catalog.format('CREATE DOMAIN pg_temp.%1$s AS pg_catalog.%1$s'
                                  ' CHECK (pg_temp.sec_evil(''domain %1$s''))', t);
    END LOOP;
END
$plant$;

-- Has planted code run as a role other than the attacker?  Are the
-- attackers superusers?  (Run as the test's superuser, after the attacker's
-- session dropped its pg_temp.)
CREATE FUNCTION regress_sec_trap.verdict(attacker name)
    RETURNS TABLE(planted_code_ran_as_another_role bigint, escalated bigint,
                  app_is_superuser boolean, admin_is_superuser boolean)
    LANGUAGE sql
AS $$
SELECT (SELECT count(*) FROM regress_sec_trap.ran r WHERE r.ran_as <> attacker),
       (SELECT count(*) FROM regress_sec_trap.ran r WHERE r.escalated),
       (SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_sec_app'),
       (SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_sec_admin')
$$;

-- Keys to attack with.
SELECT key_id AS k1, token AS t1 FROM apikey_create('acme', 'one', '{documents:read}', rate_limit => 100) \gset
SELECT key_id AS k2, token AS t2 FROM apikey_create('acme', 'two', allowed_ips => '{10.0.0.0/8}',
                                                    expires_at => now() + interval '1 day') \gset
SELECT key_id AS k3 FROM apikey_create('globex', 'three') \gset

-- ---------------------------------------------------------------------------
-- Every SECURITY DEFINER function pins search_path with pg_temp last.
-- ---------------------------------------------------------------------------
SELECT p.proname, p.proconfig
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'apikey'
 WHERE p.prosecdef ORDER BY 1;
SELECT count(*) AS secdef_without_pg_temp_last
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'apikey'
 WHERE p.prosecdef
   AND NOT EXISTS (SELECT FROM unnest(p.proconfig) c WHERE c ~ '^search_path=.*\mpg_temp$');
-- the audit trigger is one of them, and it is what apikey_keys fires
SELECT t.tgname, p.proname, p.prosecdef
  FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
 WHERE t.tgrelid = 'apikey_keys'::regclass AND NOT t.tgisinternal ORDER BY 1;

-- ---------------------------------------------------------------------------
-- The application role attacks.
-- ---------------------------------------------------------------------------
SET ROLE regress_sec_app;
SELECT regress_sec_trap.plant();
-- the trap is armed: in the attacker's own session, "int8" and
-- "apikey_keys" are now the planted objects (this runs as the attacker)
SELECT 1::int8 AS armed;
SELECT count(*) AS armed FROM apikey_keys;

-- what it may call
SELECT rate_limit, remaining FROM apikey_rate_limit_status(:'k1');
SELECT rate_limit, remaining FROM apikey_rate_limit_status(:'k2');
SELECT apikey_record(:'k1', '/documents', 200, 12.5);
SELECT apikey_record(:'k2', '/documents', 503, 100);
SELECT apikey_record('key_nosuchkey', '/documents', 200, 1);
SELECT (apikey_verify(:'t1', '{documents:read}')).code;
SELECT (apikey_verify(:'t2', '{}', '10.1.2.3')).code;
SELECT (apikey_verify(:'t2', '{}', '192.0.2.1')).code;
SELECT apikey_acts_for('acme');
-- failed verifications from one client address, for an alert at the
-- admin's flush (apikey.alert_failures is 100 per minute)
SELECT count(*) AS failures
  FROM (SELECT apikey_verify('ak_live_nosuchtoken', '{}', '203.0.113.66')
          FROM generate_series(1, 250)) s;
-- what PUBLIC may call, and is refused without table rights
SELECT * FROM apikey_pending_usage();
SELECT * FROM apikey_recent_usage();
SELECT * FROM apikey_rotate_key(:'k1', '1 hour');
-- what it may not call at all
SELECT * FROM apikey_stats_internal();
SELECT apikey_flush();
SELECT * FROM apikey_sweep();
SELECT * FROM apikey_sweep_batch(10);
SELECT * FROM apikey_create('acme', 'app may not');
INSERT INTO public.apikey_keys (key_id, org_id, name, hint, hash, environment)
VALUES ('key_app', 'acme', 'x', 'x', apikey_token_hash('x'), 'live');
-- gone with the session in real life; here the test's superuser goes on in
-- this session, so the attacker clears its pg_temp first
DISCARD TEMP;
RESET ROLE;

SELECT * FROM regress_sec_trap.verdict('regress_sec_app');
SELECT count(*) > 0 AS the_trap_went_off_for_the_attacker FROM regress_sec_trap.ran;
TRUNCATE regress_sec_trap.ran;

-- ---------------------------------------------------------------------------
-- The key administrator attacks.
-- ---------------------------------------------------------------------------
SET ROLE regress_sec_admin;
SELECT regress_sec_trap.plant();
SELECT 1::int8 AS armed;

-- the write functions (SECURITY INVOKER) and the audit trigger they fire
SELECT key_id AS k4, token AS t4
  FROM apikey_create('acme', 'four', '{documents:*}', 'test', now() + interval '1 hour', 10,
                     '{192.0.2.0/24}', '{"team": "x"}', 'admin') \gset
SELECT key_id AS k5 FROM apikey_rotate(:'k4', '1 hour') \gset
SELECT apikey_revoke(:'k5', 'attack');
SELECT apikey_revoke_org('globex', 'attack');
-- direct DML, each audited by the trigger
INSERT INTO public.apikey_keys (key_id, org_id, name, hint, hash, environment, metadata)
VALUES ('key_direct_insert', 'acme', 'direct', 'ak_live_xxxx', apikey_token_hash('direct'),
        'live', '{}');
UPDATE public.apikey_keys SET name = 'renamed', scopes = '{documents:read}', metadata = '{"a": 1}'
 WHERE key_id = 'key_direct_insert';
-- a key past its expiry, for the sweep to expire (audited as 'expired')
UPDATE public.apikey_keys SET expires_at = now() - interval '1 minute' WHERE key_id = :'k2';

-- counting, flushing (log, fold, alerts), the views over the counters
SELECT (apikey_verify(:'t1')).code;
SELECT apikey_record(:'k1', '/x', 404, 3);
SELECT count(*) > 0 AS has_pending FROM apikey_stats_internal();
SELECT count(*) > 0 AS has_stats FROM apikey_stats;
SELECT apikey_flush() > 0 AS flushed;
SELECT (apikey_verify(:'t1')).code;
SELECT count(*) > 0 AS has_pending_usage FROM apikey_pending_usage();
SELECT count(*) > 0 AS has_recent_usage FROM apikey_recent_usage();
SELECT count(*) > 0 AS has_activity FROM apikey_activity;
SELECT rate_limit FROM apikey_rate_limit_status(:'k1');
SELECT apikey_flush() > 0 AS flushed_again;
SELECT count(*) > 0 AS alert_recorded FROM public.apikey_alerts WHERE kind = 'failed_verifications';
-- sweeping
SELECT * FROM apikey_sweep();
SELECT * FROM apikey_sweep_batch(10);
-- deleting and truncating are audited too
DELETE FROM public.apikey_keys WHERE key_id = 'key_direct_insert';
TRUNCATE public.apikey_keys;
DISCARD TEMP;
RESET ROLE;

SELECT * FROM regress_sec_trap.verdict('regress_sec_admin');
SELECT count(*) > 0 AS the_trap_went_off_for_the_attacker FROM regress_sec_trap.ran;
-- and the code did its work in the extension's own tables
SELECT event, actor, count(*) FROM apikey_events
 WHERE actor = 'regress_sec_admin' GROUP BY 1, 2 ORDER BY 1;
SELECT count(*) AS keys_left FROM apikey_keys;

DROP EXTENSION apikey;
TRUNCATE regress_sec_trap.ran;

-- ---------------------------------------------------------------------------
-- Installations updated from 2.0 and 1.0 get the fix: in 2.0 and 1.0 the
-- audit trigger and the sweep were PL/pgSQL with pg_temp searched first,
-- and a temporary domain named jsonb or int8 ran as their owner.
-- ---------------------------------------------------------------------------
CREATE EXTENSION apikey VERSION '2.0';
ALTER EXTENSION apikey UPDATE TO '2.1';
GRANT SELECT, INSERT, UPDATE ON apikey_keys TO regress_sec_admin;
GRANT EXECUTE ON FUNCTION
    apikey_create(text, text, text[], text, timestamptz, integer, cidr[], jsonb, text),
    apikey_flush(), apikey_sweep(), apikey_sweep_batch(integer)
  TO regress_sec_admin;
SELECT key_id AS k6, token AS t6 FROM apikey_create('acme', 'six') \gset
SET ROLE regress_sec_admin;
SELECT regress_sec_trap.plant();
SELECT 1::int8 AS armed;
SELECT count(*) FROM apikey_create('acme', 'seven', expires_at => now() + interval '1 hour');
INSERT INTO public.apikey_keys (key_id, org_id, name, hint, hash, environment)
VALUES ('key_direct_insert', 'acme', 'direct', 'ak_live_xxxx', apikey_token_hash('direct'), 'live');
UPDATE public.apikey_keys SET expires_at = now() - interval '1 minute' WHERE key_id = :'k6';
SELECT (apikey_verify(:'t6')).code;
SELECT apikey_flush() >= 0 AS flushed;
SELECT * FROM apikey_sweep();
SELECT * FROM apikey_sweep_batch(10);
DISCARD TEMP;
RESET ROLE;
SELECT * FROM regress_sec_trap.verdict('regress_sec_admin');
SELECT event, count(*) FROM apikey_events WHERE actor = 'regress_sec_admin' GROUP BY 1 ORDER BY 1;
DROP EXTENSION apikey;
TRUNCATE regress_sec_trap.ran;

CREATE EXTENSION apikey VERSION '1.0';
ALTER EXTENSION apikey UPDATE TO '1.1';
GRANT SELECT, INSERT, UPDATE ON apikey_keys TO regress_sec_admin;
GRANT EXECUTE ON FUNCTION
    apikey_generate(text, text, text, integer, timestamptz), apikey_deactivate(text),
    apikey_rate_limit_status(text), apikey_record(text, text, integer, double precision),
    apikey_flush(), apikey_sweep(), apikey_sweep_batch(integer)
  TO regress_sec_admin;
SELECT key_id AS k8, key AS t8 FROM apikey_generate('u1', 'eight') \gset
SET ROLE regress_sec_admin;
SELECT regress_sec_trap.plant();
SELECT 1::int8 AS armed;
SELECT count(*) FROM apikey_generate('u1', 'nine');
SELECT apikey_deactivate(:'k8');
SELECT (apikey_verify(:'t8')).code;
SELECT rate_limit FROM apikey_rate_limit_status(:'k8');
SELECT apikey_record(:'k8', '/x', 200, 1);
SELECT apikey_flush() >= 0 AS flushed;
SELECT * FROM apikey_sweep();
SELECT * FROM apikey_sweep_batch(10);
DISCARD TEMP;
RESET ROLE;
SELECT * FROM regress_sec_trap.verdict('regress_sec_admin');
SELECT count(*) > 0 AS the_trap_went_off_for_the_attacker FROM regress_sec_trap.ran;

-- ---------------------------------------------------------------------------
-- Clean up
-- ---------------------------------------------------------------------------
DROP SCHEMA regress_sec_trap CASCADE;
DROP EXTENSION apikey;
DROP ROLE regress_sec_app;
DROP ROLE regress_sec_admin;
