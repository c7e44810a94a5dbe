-- apikey 2.0--2.1, the security release: this file is frozen once released.
\echo Use "ALTER EXTENSION apikey UPDATE TO '2.1'" to load this file. \quit

-- ---------------------------------------------------------------------------
-- The extension's schema must not be writable by roles other than its owner
-- and superusers: CREATE EXTENSION (which installs 2.0 and then runs this
-- script) refuses such a schema; updating an existing installation warns.
-- ---------------------------------------------------------------------------
CREATE FUNCTION apikey_check_schema() RETURNS void
    AS 'MODULE_PATHNAME', 'apikey_check_schema'
    LANGUAGE C VOLATILE;
SELECT @extschema@.apikey_check_schema();
DROP FUNCTION apikey_check_schema();

-- ---------------------------------------------------------------------------
-- Everything that runs with the extension owner's rights is now C, and pins
-- search_path with pg_temp last: in 2.0 pg_temp was searched first for types
-- and relations, which let a caller's temporary domain run code as the owner.
-- ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION apikey_audit() RETURNS trigger
    AS 'MODULE_PATHNAME', 'apikey_audit_2_1'
    LANGUAGE C
    SECURITY DEFINER SET search_path = pg_catalog, @extschema@, pg_temp;

CREATE OR REPLACE FUNCTION apikey_sweep_batch(batch_size integer)
    RETURNS TABLE(expired bigint, usage_purged bigint)
    AS 'MODULE_PATHNAME', 'apikey_sweep_batch_1_1'
    LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, @extschema@, pg_temp;

CREATE OR REPLACE FUNCTION apikey_sweep() RETURNS TABLE(expired bigint, usage_purged bigint)
    AS 'MODULE_PATHNAME', 'apikey_sweep_1_1'
    LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, @extschema@, pg_temp;

ALTER FUNCTION apikey_flush() SET search_path = pg_catalog, @extschema@, pg_temp;

-- apikey_rate_limit_status runs with the caller's rights: it answers only
-- for keys the caller may see in apikey_keys (privileges and row-level
-- security), or, for a role the DBA granted EXECUTE but no SELECT on
-- apikey_keys, any key while row-level security is off (as in 2.0).
ALTER FUNCTION apikey_rate_limit_status(text) SECURITY INVOKER;
ALTER FUNCTION apikey_rate_limit_status(text) SET search_path = pg_catalog, @extschema@, pg_temp;

-- The functions that run with the caller's rights pin pg_temp last too.
ALTER FUNCTION apikey_create(text, text, text[], text, timestamptz, integer, cidr[], jsonb, text)
    SET search_path = pg_catalog, @extschema@, pg_temp;
ALTER FUNCTION apikey_revoke(text, text) SET search_path = pg_catalog, @extschema@, pg_temp;
ALTER FUNCTION apikey_revoke_org(text, text) SET search_path = pg_catalog, @extschema@, pg_temp;
ALTER FUNCTION apikey_rotate_key(text, interval) SET search_path = pg_catalog, @extschema@, pg_temp;
ALTER FUNCTION apikey_rotate(text, interval) SET search_path = pg_catalog, @extschema@, pg_temp;
ALTER FUNCTION apikey_require_text(text, text, integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION apikey_require_future(timestamptz) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION apikey_preset(text) SET search_path = pg_catalog, pg_temp;

-- ---------------------------------------------------------------------------
-- Usage not yet folded (the usage log and shared memory), for the keys the
-- caller may see.  The log mixes organizations in one row, so it is read by
-- this function, not granted to tenants.  apikey_recent_usage (behind
-- apikey_activity) is built on it and no longer resolves anything through
-- the caller's search_path.
-- ---------------------------------------------------------------------------
CREATE FUNCTION apikey_pending_usage(
    OUT key_id text, OUT bucket timestamptz, OUT requests bigint, OUT denied bigint,
    OUT responses bigint, OUT response_ms double precision, OUT client_errors bigint,
    OUT server_errors bigint, OUT last_used timestamptz)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'apikey_pending_usage'
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, @extschema@, pg_temp;

CREATE OR REPLACE FUNCTION apikey_recent_usage()
    RETURNS TABLE(key_id text, requests numeric, denied numeric, responses numeric,
                  response_ms double precision, last_used_at timestamptz)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, @extschema@, pg_temp
AS $$
SELECT x.key_id, pg_catalog.sum(x.requests), pg_catalog.sum(x.denied),
       pg_catalog.sum(x.responses), pg_catalog.sum(x.response_ms), pg_catalog.max(x.last_used)
  FROM (SELECT b.key_id, b.bucket, b.requests, b.denied, b.responses, b.response_ms,
               NULL::pg_catalog.timestamptz AS last_used
          FROM @extschema@.apikey_usage b
        UNION ALL
        SELECT p.key_id, p.bucket, p.requests, p.denied, p.responses, p.response_ms, p.last_used
          FROM @extschema@.apikey_pending_usage() p) x
 WHERE x.bucket OPERATOR(pg_catalog.>=)
       pg_catalog.date_trunc('hour', pg_catalog.now() OPERATOR(pg_catalog.-) '24 hours'::pg_catalog.interval)
 GROUP BY x.key_id
$$;

-- ---------------------------------------------------------------------------
-- Alerts are rows readable only by roles granted the table; the NOTIFY on
-- apikey_alerts carries only the alert's id and kind.
-- ---------------------------------------------------------------------------
CREATE TABLE apikey_alerts (
    alert_id bigserial   NOT NULL,
    at       timestamptz NOT NULL DEFAULT now(),
    kind     text        NOT NULL,
    details  jsonb       NOT NULL DEFAULT '{}',
    CONSTRAINT apikey_alerts_pkey PRIMARY KEY (alert_id)
);
CREATE INDEX apikey_alerts_at_idx ON apikey_alerts (at);
COMMENT ON TABLE apikey_alerts IS 'Security alerts (failed verifications per client address); NOTIFY apikey_alerts carries their alert_id and kind';
SELECT pg_catalog.pg_extension_config_dump('apikey_alerts', '');
SELECT pg_catalog.pg_extension_config_dump('apikey_alerts_alert_id_seq', '');

-- ---------------------------------------------------------------------------
-- The tenant binding for row-level security: a role acts for the
-- organizations bound to roles it has the privileges of.  Only the owner
-- writes this table; apikey_acts_for reads it for the caller.
-- ---------------------------------------------------------------------------
CREATE TABLE apikey_org_roles (
    org_id    text    NOT NULL,
    role_name regrole NOT NULL,
    CONSTRAINT apikey_org_roles_pkey PRIMARY KEY (org_id, role_name),
    CONSTRAINT apikey_org_roles_org_id_check CHECK (org_id <> '')
);
COMMENT ON TABLE apikey_org_roles IS 'Which roles act for which organization (see apikey_acts_for)';
SELECT pg_catalog.pg_extension_config_dump('apikey_org_roles', '');

CREATE FUNCTION apikey_acts_for(org_id text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'apikey_acts_for'
    LANGUAGE C STABLE PARALLEL SAFE
    SET search_path = pg_catalog, @extschema@, pg_temp;
