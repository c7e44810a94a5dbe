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
ALTER FUNCTION apikey_rate_limit_status(text) SET search_path = pg_catalog, pg_temp;

-- The functions that run with the caller's rights search pg_catalog and
-- pg_temp only (and name the extension's own objects with their schema): a
-- superuser may call them, and an overload planted in the extension's schema
-- by a role that can create objects there (its owner, say) must never be
-- picked up.  In 2.0 their search_path included the schema.
ALTER FUNCTION apikey_create(text, text, text[], text, timestamptz, integer, cidr[], jsonb, text)
    SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION apikey_revoke(text, text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION apikey_revoke_org(text, text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION apikey_rotate(text, interval) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION apikey_require_text(text, text, integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION apikey_require_future(timestamptz) SET search_path = pg_catalog, pg_temp;

-- Rotation reads only the columns it copies (not the hash), so that a role
-- without SELECT on hash may rotate; and an unknown preset name is echoed
-- only as its start.  (1.1--2.1 creates the same two functions.)
CREATE OR REPLACE FUNCTION apikey_rotate_key(old_id text, grace interval)
    RETURNS TABLE(new_key_id text, token text)
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old    record;
    t      record;
BEGIN
    PERFORM @extschema@.apikey_require_text(old_id, 'key_id', 64);
    IF grace IS NULL OR grace < interval '0' THEN
        RAISE EXCEPTION 'grace must be a non-negative interval'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass how long the old key keeps working, e.g. ''24 hours'', or ''0'' to end it now.';
    END IF;
    -- The columns a successor copies, and not the hash: a role that column
    -- privileges keep from reading hashes (the tenant recipe) may rotate.
    SELECT k.org_id, k.name, k.scopes, k.environment, k.expires_at, k.rate_limit,
           k.rate_window, k.allowed_ips, k.metadata, k.created_by, k.is_active,
           k.revoked_at, k.replaced_by
      INTO old
      FROM @extschema@.apikey_keys k WHERE k.key_id = old_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'API key "%" does not exist', old_id
            USING ERRCODE = 'no_data_found';
    END IF;
    IF old.revoked_at IS NOT NULL OR NOT old.is_active THEN
        RAISE EXCEPTION 'API key "%" is revoked and cannot be rotated', old_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Create a new key with apikey_create instead.';
    END IF;
    IF old.expires_at <= now() THEN
        RAISE EXCEPTION 'API key "%" has expired and cannot be rotated', old_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Create a new key with apikey_create instead.';
    END IF;
    IF old.replaced_by IS NOT NULL THEN
        RAISE EXCEPTION 'API key "%" was already rotated to "%"', old_id, old.replaced_by
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Rotate the newer key instead.';
    END IF;

    t := @extschema@.apikey_new_token(old.environment);
    INSERT INTO @extschema@.apikey_keys
        (key_id, org_id, name, hint, hash, scopes, environment, expires_at,
         rate_limit, rate_window, allowed_ips, metadata, created_by, rotated_from)
    VALUES (t.key_id, old.org_id, old.name, t.hint, t.hash, old.scopes, old.environment,
            old.expires_at, old.rate_limit, old.rate_window, old.allowed_ips,
            old.metadata, old.created_by, old_id);
    UPDATE @extschema@.apikey_keys k
       SET expires_at = least(coalesce(k.expires_at, 'infinity'), now() + grace),
           replaced_by = t.key_id
     WHERE k.key_id = old_id;
    new_key_id := t.key_id;
    token := t.token;
    RETURN NEXT;
END
$$;

CREATE OR REPLACE FUNCTION apikey_preset(name text) RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    CASE name
        WHEN 'full' THEN RETURN '{}'::text[];
        WHEN 'conversations' THEN RETURN '{conversations:*}'::text[];
        WHEN 'documents' THEN RETURN '{documents:*}'::text[];
        WHEN 'plugins' THEN RETURN '{plugins:execute}'::text[];
        ELSE
            -- (a name of any length is echoed only as its start)
            RAISE EXCEPTION 'unknown scope preset "%"',
                            coalesce(left(name, 64) || CASE WHEN length(name) > 64 THEN '...' ELSE '' END, 'NULL')
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'The presets are full, conversations, documents and plugins.';
    END CASE;
END
$$;


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
    SET search_path = pg_catalog, pg_temp;
