-- apikey 1.0--1.1, the security release of the legacy version: this file is frozen once released.
\echo Use "ALTER EXTENSION apikey UPDATE TO '1.1'" to load this file. \quit

-- ---------------------------------------------------------------------------
-- The extension's schema must not be writable by roles other than its owner
-- and superusers: CREATE EXTENSION (which installs 1.0 and then runs this
-- script) refuses such a schema; updating an existing installation warns.
-- ---------------------------------------------------------------------------
CREATE FUNCTION apikey_check_schema() RETURNS void
    AS 'MODULE_PATHNAME', 'apikey_check_schema'
    LANGUAGE C VOLATILE;
SELECT @extschema@.apikey_check_schema();
DROP FUNCTION apikey_check_schema();

-- ---------------------------------------------------------------------------
-- Everything that runs with the extension owner's rights is now C, and pins
-- search_path with pg_temp last: in 1.0 pg_temp was searched first for types
-- and relations, which let a caller's temporary domain run code as the owner.
-- ---------------------------------------------------------------------------
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
-- apikey_keys, any key while row-level security is off (as in 1.0).
ALTER FUNCTION apikey_rate_limit_status(text) SECURITY INVOKER;
ALTER FUNCTION apikey_rate_limit_status(text) SET search_path = pg_catalog, pg_temp;

-- The functions that run with the caller's rights search pg_catalog and
-- pg_temp only (and name the extension's own objects with their schema): a
-- superuser may call them, and an overload planted in the extension's schema
-- must never be picked up.  In 1.0 their search_path included the schema.
ALTER FUNCTION apikey_generate(text, text, text, integer, timestamptz)
    SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION apikey_deactivate(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION apikey_require_text(text, text, integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION apikey_require_future(timestamptz) SET search_path = pg_catalog, pg_temp;

-- ---------------------------------------------------------------------------
-- Usage not yet folded (the usage log and shared memory), for the keys the
-- caller may see.  The log mixes users' keys in one row, so it is read by
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
    SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION apikey_recent_usage()
    RETURNS TABLE(key_id text, requests numeric, denied numeric, responses numeric,
                  response_ms double precision, last_used_at timestamptz)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
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
