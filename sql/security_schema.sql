--
-- security_schema: the extension's schema and what others plant in it.
--
-- A role that can create objects in the extension's schema can plant
-- functions, operators and aggregates there that win over pg_catalog's in
-- overload resolution (an argument type that matches better than
-- pg_catalog's polymorphic or "any" one), and run them as whoever calls the
-- extension's code (issue 14, attack 2; PostgreSQL's own CVE-2018-1058).
-- Hence:
--   * CREATE EXTENSION refuses a schema on which PUBLIC or another role
--     than the schema's owner and superusers has CREATE, and says how to
--     fix it; updating an existing 2.0 or 1.0 installation in such a schema
--     warns, and the org migration (1.1 -> 2.1) and its rollback refuse it;
--   * if the schema becomes writable later, nothing planted runs: every
--     pg_catalog function and operator used by code that runs with
--     elevated rights is schema-qualified.
-- The attacker, regress_sec_mallory, has no privilege but CREATE on the
-- schema; the superuser then uses everything the extension does with
-- elevated rights: the write functions and the audit trigger, the sweep,
-- flushing and folding, alerts, the views.
--
\set SHOW_CONTEXT never
-- 31-day rate windows: no window ends during the test
SET apikey.default_rate_window = '31d';
SELECT current_user AS bootstrap_superuser \gset
CREATE ROLE regress_sec_mallory;

-- Run a statement; 'ok', or its SQLSTATE.
CREATE FUNCTION regress_sec_try(q text) RETURNS text
    LANGUAGE plpgsql
AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;

-- Where planted code reports.  Any role may write it: the planted code must
-- be able to report whatever role it runs as.
CREATE SCHEMA regress_sec_trap;
GRANT USAGE ON SCHEMA regress_sec_trap TO PUBLIC;
CREATE TABLE regress_sec_trap.ran (
    via       text    NOT NULL,    -- which planted object
    ran_as    name    NOT NULL,    -- current_user when it ran
    escalated boolean NOT NULL     -- did ALTER ROLE ... SUPERUSER succeed?
);
GRANT INSERT ON regress_sec_trap.ran TO PUBLIC;

-- What mallory plants in schema nsp: a payload that reports and tries to
-- make mallory superuser, and overloads of what code might call.  Each
-- overload matches some call better than pg_catalog's own (VARIADIC "any",
-- anyarray, anyelement) or has the same signature (then only its place on
-- search_path decides).  SECURITY INVOKER: everything it creates belongs to
-- the caller.
CREATE FUNCTION regress_sec_trap.plant(nsp name) RETURNS void
    LANGUAGE plpgsql
AS $plant$
DECLARE
    s text := pg_catalog.quote_ident(nsp);
BEGIN
    EXECUTE pg_catalog.format($f$
    CREATE FUNCTION %1$s.regress_sec_evil(via pg_catalog.text) RETURNS pg_catalog.bool
        LANGUAGE plpgsql
    AS $b$
    DECLARE
        escalated pg_catalog.bool := false;
    BEGIN
        BEGIN
            EXECUTE 'ALTER ROLE regress_sec_mallory SUPERUSER';
            escalated := true;
        EXCEPTION WHEN OTHERS THEN
            escalated := false;
        END;
        INSERT INTO regress_sec_trap.ran (via, ran_as, escalated)
        VALUES (via, current_user, escalated);
        RETURN true;
    END
    $b$ $f$, s);

    -- functions
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION %1$s.jsonb_build_object(pg_catalog.text, pg_catalog.timestamptz)
            RETURNS pg_catalog.jsonb LANGUAGE plpgsql
        AS $b$ BEGIN PERFORM %1$s.regress_sec_evil('jsonb_build_object(text, timestamptz)');
                     RETURN '{}'; END $b$ $f$, s);
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION %1$s.jsonb_build_object(pg_catalog.text, pg_catalog.text)
            RETURNS pg_catalog.jsonb LANGUAGE plpgsql
        AS $b$ BEGIN PERFORM %1$s.regress_sec_evil('jsonb_build_object(text, text)');
                     RETURN '{}'; END $b$ $f$, s);
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION %1$s.jsonb_build_object(pg_catalog.text, pg_catalog.text,
                                                pg_catalog.text, pg_catalog.text)
            RETURNS pg_catalog.jsonb LANGUAGE plpgsql
        AS $b$ BEGIN PERFORM %1$s.regress_sec_evil('jsonb_build_object(text, text, text, text)');
                     RETURN '{}'; END $b$ $f$, s);
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION %1$s.json_build_object(pg_catalog.text, pg_catalog.int8,
                                               pg_catalog.text, pg_catalog.text)
            RETURNS pg_catalog.json LANGUAGE plpgsql
        AS $b$ BEGIN PERFORM %1$s.regress_sec_evil('json_build_object(text, int8, text, text)');
                     RETURN '{}'; END $b$ $f$, s);
    IF pg_catalog.to_regtype(nsp || '.apikey_keys') IS NOT NULL THEN
        EXECUTE pg_catalog.format($f$
            CREATE FUNCTION %1$s.to_jsonb(%1$s.apikey_keys)
                RETURNS pg_catalog.jsonb LANGUAGE plpgsql
            AS $b$ BEGIN PERFORM %1$s.regress_sec_evil('to_jsonb(apikey_keys)');
                         RETURN '{}'; END $b$ $f$, s);
    END IF;
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION %1$s.unnest(pg_catalog.text[]) RETURNS SETOF pg_catalog.text
            LANGUAGE plpgsql
        AS $b$ BEGIN PERFORM %1$s.regress_sec_evil('unnest(text[])'); END $b$ $f$, s);
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION %1$s.array_position(pg_catalog.cidr[], pg_catalog.cidr)
            RETURNS pg_catalog.int4 LANGUAGE plpgsql
        AS $b$ BEGIN PERFORM %1$s.regress_sec_evil('array_position(cidr[], cidr)');
                     RETURN NULL; END $b$ $f$, s);
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION %1$s.now() RETURNS pg_catalog.timestamptz LANGUAGE plpgsql
        AS $b$ BEGIN PERFORM %1$s.regress_sec_evil('now()');
                     RETURN pg_catalog.now(); END $b$ $f$, s);
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION %1$s.current_setting(pg_catalog.text) RETURNS pg_catalog.text
            LANGUAGE plpgsql
        AS $b$ BEGIN PERFORM %1$s.regress_sec_evil('current_setting(text)');
                     RETURN pg_catalog.current_setting($1); END $b$ $f$, s);
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION %1$s.length(pg_catalog.text) RETURNS pg_catalog.int4 LANGUAGE plpgsql
        AS $b$ BEGIN PERFORM %1$s.regress_sec_evil('length(text)');
                     RETURN pg_catalog.length($1); END $b$ $f$, s);
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION %1$s.pg_notify(pg_catalog.text, pg_catalog.text) RETURNS void
            LANGUAGE plpgsql
        AS $b$ BEGIN PERFORM %1$s.regress_sec_evil('pg_notify(text, text)'); END $b$ $f$, s);
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION %1$s.date_trunc(pg_catalog.text, pg_catalog.timestamptz)
            RETURNS pg_catalog.timestamptz LANGUAGE plpgsql
        AS $b$ BEGIN PERFORM %1$s.regress_sec_evil('date_trunc(text, timestamptz)');
                     RETURN pg_catalog.date_trunc($1, $2); END $b$ $f$, s);

    -- operators
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION %1$s.regress_sec_eq(pg_catalog.text, pg_catalog.text)
            RETURNS pg_catalog.bool LANGUAGE plpgsql
        AS $b$ BEGIN PERFORM %1$s.regress_sec_evil('=(text, text)');
                     RETURN $1 OPERATOR(pg_catalog.=) $2; END $b$ $f$, s);
    EXECUTE pg_catalog.format('CREATE OPERATOR %1$s.= (FUNCTION = %1$s.regress_sec_eq,'
                              ' LEFTARG = pg_catalog.text, RIGHTARG = pg_catalog.text)', s);
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION %1$s.regress_sec_eq(pg_catalog.cidr[], pg_catalog.cidr[])
            RETURNS pg_catalog.bool LANGUAGE plpgsql
        AS $b$ BEGIN PERFORM %1$s.regress_sec_evil('=(cidr[], cidr[])');
                     RETURN $1 OPERATOR(pg_catalog.=) $2; END $b$ $f$, s);
    EXECUTE pg_catalog.format('CREATE OPERATOR %1$s.= (FUNCTION = %1$s.regress_sec_eq,'
                              ' LEFTARG = pg_catalog.cidr[], RIGHTARG = pg_catalog.cidr[])', s);
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION %1$s.regress_sec_ge(pg_catalog.timestamptz, pg_catalog.timestamptz)
            RETURNS pg_catalog.bool LANGUAGE plpgsql
        AS $b$ BEGIN PERFORM %1$s.regress_sec_evil('>=(timestamptz, timestamptz)');
                     RETURN $1 OPERATOR(pg_catalog.>=) $2; END $b$ $f$, s);
    EXECUTE pg_catalog.format('CREATE OPERATOR %1$s.>= (FUNCTION = %1$s.regress_sec_ge,'
                              ' LEFTARG = pg_catalog.timestamptz, RIGHTARG = pg_catalog.timestamptz)', s);

    -- aggregates
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION %1$s.regress_sec_count_sf(pg_catalog.int8, pg_catalog.text)
            RETURNS pg_catalog.int8 LANGUAGE plpgsql
        AS $b$ BEGIN PERFORM %1$s.regress_sec_evil('count(text)'); RETURN 0; END $b$ $f$, s);
    EXECUTE pg_catalog.format('CREATE AGGREGATE %1$s.count(pg_catalog.text)'
                              ' (SFUNC = %1$s.regress_sec_count_sf, STYPE = pg_catalog.int8)', s);
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION %1$s.regress_sec_agg_sf(pg_catalog.text[], pg_catalog.text)
            RETURNS pg_catalog.text[] LANGUAGE plpgsql
        AS $b$ BEGIN PERFORM %1$s.regress_sec_evil('array_agg(text)'); RETURN '{}'; END $b$ $f$, s);
    EXECUTE pg_catalog.format('CREATE AGGREGATE %1$s.array_agg(pg_catalog.text)'
                              ' (SFUNC = %1$s.regress_sec_agg_sf, STYPE = pg_catalog.text[])', s);
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION %1$s.regress_sec_obj_sf(pg_catalog.jsonb, pg_catalog.text, pg_catalog.jsonb)
            RETURNS pg_catalog.jsonb LANGUAGE plpgsql
        AS $b$ BEGIN PERFORM %1$s.regress_sec_evil('jsonb_object_agg(text, jsonb)');
                     RETURN '{}'; END $b$ $f$, s);
    EXECUTE pg_catalog.format('CREATE AGGREGATE %1$s.jsonb_object_agg(pg_catalog.text, pg_catalog.jsonb)'
                              ' (SFUNC = %1$s.regress_sec_obj_sf, STYPE = pg_catalog.jsonb)', s);
END
$plant$;

-- What planted code ran as another role than mallory, and is mallory a
-- superuser now?
CREATE FUNCTION regress_sec_trap.ran_as_another_role()
    RETURNS TABLE(via text, ran_as name, escalated boolean)
    LANGUAGE sql
AS $$ SELECT DISTINCT r.via, r.ran_as, r.escalated FROM regress_sec_trap.ran r
       WHERE r.ran_as <> 'regress_sec_mallory' ORDER BY 1, 2 $$;
CREATE FUNCTION regress_sec_trap.mallory_is_superuser() RETURNS boolean
    LANGUAGE sql
AS $$ SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_sec_mallory' $$;

-- ---------------------------------------------------------------------------
-- CREATE EXTENSION refuses a schema others may create objects in.
-- ---------------------------------------------------------------------------
CREATE SCHEMA regress_sec_shared;
GRANT USAGE ON SCHEMA regress_sec_shared TO PUBLIC;
-- PUBLIC may create objects in it
GRANT CREATE ON SCHEMA regress_sec_shared TO PUBLIC;
CREATE EXTENSION apikey SCHEMA regress_sec_shared;
-- a role other than the owner may
REVOKE CREATE ON SCHEMA regress_sec_shared FROM PUBLIC;
GRANT CREATE ON SCHEMA regress_sec_shared TO regress_sec_mallory;
CREATE EXTENSION apikey SCHEMA regress_sec_shared;
-- the legacy version checks too, when installed as 1.1
CREATE EXTENSION apikey VERSION '1.1' SCHEMA regress_sec_shared;
-- public, on a cluster that began before PostgreSQL 15, grants CREATE to PUBLIC
GRANT CREATE ON SCHEMA public TO PUBLIC;
CREATE EXTENSION apikey;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
-- nothing was left behind
SELECT count(*) AS installed FROM pg_extension WHERE extname = 'apikey';
-- once only its owner may create objects there, it installs
REVOKE CREATE ON SCHEMA regress_sec_shared FROM regress_sec_mallory;
CREATE EXTENSION apikey SCHEMA regress_sec_shared;
SELECT extversion, extnamespace::regnamespace FROM pg_extension WHERE extname = 'apikey';

-- ---------------------------------------------------------------------------
-- The schema becomes writable later: nothing planted runs.
-- ---------------------------------------------------------------------------
GRANT CREATE ON SCHEMA regress_sec_shared TO PUBLIC;
SET ROLE regress_sec_mallory;
SELECT regress_sec_trap.plant('regress_sec_shared');
-- The overloads are armed: in a query that resolves names through the
-- schema, each wins over pg_catalog's (this runs as mallory).
SET search_path = regress_sec_shared, pg_catalog;
SELECT array_position('{10.0.0.0/8}'::cidr[], NULL) IS NULL AS planted,
       jsonb_build_object('expires_at', now()) = '{}' AS planted,
       (SELECT count(*) FROM unnest('{a,b}'::text[])) = 0 AS planted,
       nullif('{10.0.0.0/8}'::cidr[], '{}') IS NOT NULL AS planted;
RESET search_path;
-- mallory itself gets nothing from the extension
SELECT * FROM regress_sec_shared.apikey_keys;
SELECT regress_sec_shared.apikey_flush();
RESET ROLE;
SELECT via, ran_as FROM regress_sec_trap.ran ORDER BY 1;
TRUNCATE regress_sec_trap.ran;

-- Now the superuser uses everything.  Calls are fully typed: a call with
-- untyped literals is resolved among every function of that name in the
-- schema, mallory's too (that is the caller's statement, not the
-- extension's code, and why the schema must not be writable).
SELECT key_id AS k1, token AS t1
  FROM regress_sec_shared.apikey_create(org_id => 'acme'::text, name => 'one'::text,
                                        scopes => '{documents:read}'::text[],
                                        rate_limit => 100::integer) \gset
SELECT key_id AS k2, token AS t2
  FROM regress_sec_shared.apikey_create(org_id => 'acme'::text, name => 'two'::text,
                                        expires_at => now() + interval '1 day',
                                        allowed_ips => '{10.0.0.0/8}'::cidr[],
                                        metadata => '{"team": "x"}'::jsonb,
                                        created_by => 'dba'::text) \gset
SELECT key_id AS k3 FROM regress_sec_shared.apikey_create(org_id => 'globex'::text, name => 'three'::text) \gset
SELECT key_id AS k4 FROM regress_sec_shared.apikey_rotate(:'k1'::text, interval '1 hour') \gset
SELECT regress_sec_shared.apikey_revoke(:'k4'::text, 'attack'::text);
SELECT regress_sec_shared.apikey_revoke_org('globex'::text, 'attack'::text);
-- direct DML, audited
INSERT INTO regress_sec_shared.apikey_keys (key_id, org_id, name, hint, hash, environment)
VALUES ('key_direct_insert', 'acme', 'direct', 'ak_live_xxxx',
        regress_sec_shared.apikey_token_hash('direct'::text), 'live');
UPDATE regress_sec_shared.apikey_keys SET name = 'renamed', metadata = '{"a": 1}'
 WHERE key_id = 'key_direct_insert';
DELETE FROM regress_sec_shared.apikey_keys WHERE key_id = 'key_direct_insert';
-- a key past its expiry for the sweep (audited as 'expired')
UPDATE regress_sec_shared.apikey_keys SET expires_at = now() - interval '1 minute'
 WHERE key_id = :'k2';
-- counts, responses and an alert (apikey.alert_failures is 100 a minute)
SELECT (regress_sec_shared.apikey_verify(:'t1'::text, '{documents:read}'::text[], '10.1.1.1'::inet)).code;
SELECT (regress_sec_shared.apikey_verify(:'t2'::text)).code;
SELECT count(*) AS failures
  FROM (SELECT regress_sec_shared.apikey_verify('ak_live_nosuchtoken'::text, '{}'::text[],
                                                '203.0.113.77'::inet)
          FROM generate_series(1, 250)) s;
SELECT regress_sec_shared.apikey_record(:'k1'::text, '/x'::text, 200::integer, 5::float8);
SELECT regress_sec_shared.apikey_record(:'k1'::text, '/x'::text, 500::integer, 7::float8);
-- what shows counts before they are written
SELECT count(*) > 0 AS pending FROM regress_sec_shared.apikey_stats_internal();
SELECT count(*) > 0 AS pending FROM regress_sec_shared.apikey_stats;
SELECT rate_limit, remaining FROM regress_sec_shared.apikey_rate_limit_status(:'k1'::text);
-- flushing: the usage log, the fold into apikey_keys and apikey_usage, alerts
SELECT regress_sec_shared.apikey_flush() > 0 AS flushed;
SELECT (regress_sec_shared.apikey_verify(:'t1'::text)).code;
SELECT count(*) > 0 AS pending FROM regress_sec_shared.apikey_pending_usage();
SELECT count(*) > 0 AS recent FROM regress_sec_shared.apikey_recent_usage();
SELECT count(*) > 0 AS activity FROM regress_sec_shared.apikey_activity;
SELECT regress_sec_shared.apikey_flush() > 0 AS flushed;
SELECT usage_count FROM regress_sec_shared.apikey_keys WHERE key_id = :'k1';
SELECT count(*) > 0 AS alerted FROM regress_sec_shared.apikey_alerts;
-- sweeping
SELECT * FROM regress_sec_shared.apikey_sweep();
SELECT * FROM regress_sec_shared.apikey_sweep_batch(10::integer);
-- the helpers
SELECT regress_sec_shared.apikey_acts_for('acme'::text);
SELECT regress_sec_shared.apikey_scopes('[{"resource": "documents", "actions": ["read"]}]'::jsonb);
SELECT regress_sec_shared.apikey_preset('documents'::text);
SELECT regress_sec_shared.apikey_scope_matches('{documents:*}'::text[], 'documents:read'::text);
-- the audit trail is complete
SELECT event, count(*) FROM regress_sec_shared.apikey_events GROUP BY 1 ORDER BY 1;

-- Nothing mallory planted ran as anyone else, and mallory is not superuser.
SELECT * FROM regress_sec_trap.ran_as_another_role();
SELECT regress_sec_trap.mallory_is_superuser();

ALTER ROLE regress_sec_mallory NOSUPERUSER;
DROP OWNED BY regress_sec_mallory;
DROP EXTENSION apikey;
DROP SCHEMA regress_sec_shared;
TRUNCATE regress_sec_trap.ran;

-- ---------------------------------------------------------------------------
-- A schema whose owner is not a superuser is one that owner can write to:
-- a schema created AUTHORIZATION mallory, or public in a database mallory
-- owns (public belongs to pg_database_owner).  Either CREATE EXTENSION
-- refuses it, or nothing mallory plants there runs: what the superuser
-- does next must not make mallory superuser.
-- ---------------------------------------------------------------------------
CREATE SCHEMA regress_sec_owned AUTHORIZATION regress_sec_mallory;
SELECT regress_sec_try('CREATE EXTENSION apikey SCHEMA regress_sec_owned') IN ('ok', '42501')
       AS installed_or_refused;
SET ROLE regress_sec_mallory;
SELECT regress_sec_trap.plant('regress_sec_owned');
RESET ROLE;
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_extension WHERE extname = 'apikey') THEN
        PERFORM regress_sec_owned.apikey_create(org_id => 'acme'::text, name => 'x'::text);
        PERFORM regress_sec_owned.apikey_create(org_id => 'acme'::text, name => 'y'::text,
                                                allowed_ips => '{10.0.0.0/8}'::cidr[]);
        PERFORM regress_sec_owned.apikey_flush();
        PERFORM regress_sec_owned.apikey_sweep();
    END IF;
END
$$;
SELECT * FROM regress_sec_trap.ran_as_another_role();
SELECT regress_sec_trap.mallory_is_superuser();
ALTER ROLE regress_sec_mallory NOSUPERUSER;
SET client_min_messages = warning;
DROP SCHEMA regress_sec_owned CASCADE;  -- and the extension, if it is there
RESET client_min_messages;
TRUNCATE regress_sec_trap.ran;

ALTER DATABASE :"DBNAME" OWNER TO regress_sec_mallory;
SELECT regress_sec_try('CREATE EXTENSION apikey') IN ('ok', '42501') AS installed_or_refused;
SET ROLE regress_sec_mallory;
SELECT regress_sec_trap.plant('public');
RESET ROLE;
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_extension WHERE extname = 'apikey') THEN
        PERFORM public.apikey_create(org_id => 'acme'::text, name => 'x'::text);
        PERFORM public.apikey_create(org_id => 'acme'::text, name => 'y'::text,
                                     allowed_ips => '{10.0.0.0/8}'::cidr[]);
        PERFORM public.apikey_flush();
        PERFORM public.apikey_sweep();
    END IF;
END
$$;
SELECT * FROM regress_sec_trap.ran_as_another_role();
SELECT regress_sec_trap.mallory_is_superuser();
ALTER ROLE regress_sec_mallory NOSUPERUSER;
ALTER DATABASE :"DBNAME" OWNER TO :"bootstrap_superuser";
DROP OWNED BY regress_sec_mallory;
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS apikey;
RESET client_min_messages;
TRUNCATE regress_sec_trap.ran;

-- ---------------------------------------------------------------------------
-- Updating an installation in a writable schema: 2.0 -> 2.1 and 1.0 -> 1.1
-- warn (the update is what removes 2.0's and 1.0's holes, so it must not be
-- refused; the schema should still be fixed); the org migration and its
-- rollback, which run PL/pgSQL with the updating superuser's rights,
-- refuse.
-- ---------------------------------------------------------------------------
CREATE SCHEMA regress_sec_old;
CREATE EXTENSION apikey VERSION '2.0' SCHEMA regress_sec_old;
GRANT CREATE ON SCHEMA regress_sec_old TO PUBLIC;
ALTER EXTENSION apikey UPDATE TO '2.1';
SELECT extversion FROM pg_extension WHERE extname = 'apikey';
DROP EXTENSION apikey;

REVOKE CREATE ON SCHEMA regress_sec_old FROM PUBLIC;
CREATE EXTENSION apikey VERSION '1.0' SCHEMA regress_sec_old;
GRANT CREATE ON SCHEMA regress_sec_old TO PUBLIC;
ALTER EXTENSION apikey UPDATE TO '1.1';
SELECT extversion FROM pg_extension WHERE extname = 'apikey';
SELECT count(*) FROM regress_sec_old.apikey_generate('u1', 'legacy');
-- the org migration from 1.1 is refused, and 1.1 stays
SET apikey.org_mapping = 'SELECT ''u1'' AS user_id, ''acme'' AS org_id';
ALTER EXTENSION apikey UPDATE TO '2.1';
SELECT extversion FROM pg_extension WHERE extname = 'apikey';
-- once the schema is fixed, it runs; its rollback to 1.1 is refused in a
-- writable schema
REVOKE CREATE ON SCHEMA regress_sec_old FROM PUBLIC;
ALTER EXTENSION apikey UPDATE TO '2.1';
GRANT CREATE ON SCHEMA regress_sec_old TO regress_sec_mallory;
ALTER EXTENSION apikey UPDATE TO '1.1';
SELECT extversion FROM pg_extension WHERE extname = 'apikey';
RESET apikey.org_mapping;
DROP EXTENSION apikey;
DROP SCHEMA regress_sec_old CASCADE;

-- ---------------------------------------------------------------------------
-- Clean up
-- ---------------------------------------------------------------------------
DROP SCHEMA regress_sec_trap CASCADE;
DROP FUNCTION regress_sec_try(text);
DROP ROLE regress_sec_mallory;
