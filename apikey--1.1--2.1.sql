-- apikey 1.1--2.1, the org migration from the legacy security release: this file is frozen once released.
\echo Use "ALTER EXTENSION apikey UPDATE TO '2.1'" to load this file. \quit
-- Refuse a schema others can write to: this script runs with the updating
-- superuser's rights and must not pick up anything planted there.
CREATE FUNCTION apikey_check_schema(refuse boolean) RETURNS void
    AS 'MODULE_PATHNAME', 'apikey_check_schema'
    LANGUAGE C VOLATILE;
SELECT @extschema@.apikey_check_schema(true);
DROP FUNCTION apikey_check_schema(boolean);
-- ---------------------------------------------------------------------------
-- 1.1 -> 2.1: the same steps as 1.0 -> 2.0, in the same order (so that a
-- fresh 2.1, 1.0 -> 2.0 -> 2.1 and 1.1 -> 2.1 end in the same catalog), with
-- the 2.1 definitions.  Schema steps before the data moves.
-- ---------------------------------------------------------------------------

-- The 1.1 API is replaced (apikey_sweep_batch is shared by 1.1 and 2.1).
DROP VIEW apikey_activity;
DROP VIEW apikey_stats;
DROP FUNCTION apikey_generate(text, text, text, integer, timestamptz);
DROP FUNCTION apikey_verify(text, inet);
DROP FUNCTION apikey_deactivate(text);

-- Organization ownership, scopes, revocation and rotation.  Constant
-- defaults: no table rewrite, however many keys there are.
ALTER TABLE apikey_keys
    ADD COLUMN org_id         text,
    ADD COLUMN scopes         text[] NOT NULL DEFAULT '{}',
    ADD COLUMN metadata       jsonb  NOT NULL DEFAULT '{}',
    ADD COLUMN created_by     text,
    ADD COLUMN revoked_at     timestamptz,
    ADD COLUMN revoked_reason text,
    ADD COLUMN rotated_from   text,
    ADD COLUMN replaced_by    text;

-- The audit trail.  A downgrade to 1.x keeps it, hence IF NOT EXISTS.
CREATE TABLE IF NOT EXISTS apikey_events (
    event_id bigserial   NOT NULL,
    at       timestamptz NOT NULL DEFAULT now(),
    org_id   text,
    key_id   text,
    event    text        NOT NULL,
    actor    text        NOT NULL,
    details  jsonb       NOT NULL DEFAULT '{}',
    CONSTRAINT apikey_events_pkey PRIMARY KEY (event_id)
);
CREATE INDEX IF NOT EXISTS apikey_events_key_id_idx ON apikey_events (key_id, event_id);
CREATE INDEX IF NOT EXISTS apikey_events_org_id_idx ON apikey_events (org_id, at);
COMMENT ON TABLE apikey_events IS 'Audit trail of every change to apikey_keys';
SELECT pg_catalog.pg_extension_config_dump('apikey_events', '');
SELECT pg_catalog.pg_extension_config_dump('apikey_events_event_id_seq', '');
-- ---------------------------------------------------------------------------
-- 1.1 -> 2.1, the data: every user's keys move to the user's organization.
-- Runs inside ALTER EXTENSION's transaction: any error leaves 1.1 intact.
-- ---------------------------------------------------------------------------
DO $migrate$
DECLARE
    -- this block resolves functions and operators in pg_catalog only (an
    -- overload planted in the extension's schema must not run as the
    -- updating superuser); only the DBA's mapping query runs with the
    -- script's own search_path
    script_path constant text := pg_catalog.current_setting('search_path');
    pinned   text := pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    mapping  text := nullif(btrim(current_setting('apikey.org_mapping', true)), '');
    cols     text[];
    dup      record;
    migrated bigint;
    orphans  bigint;
    hint     constant text := 'Before updating, set the user -> organization query, e.g. '
        'SET apikey.org_mapping = ''SELECT id::text AS user_id, organization_id::text AS org_id FROM users'';';
BEGIN
    IF mapping IS NULL THEN
        RAISE EXCEPTION 'apikey.org_mapping is not set'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Version 2.x keys belong to organizations; the update must know the organization of each user. Nothing was changed.',
                  HINT = hint;
    END IF;
    mapping := regexp_replace(mapping, ';\s*$', '');

    -- As a subquery, so that the mapping can only ever be one query.
    BEGIN
        PERFORM pg_catalog.set_config('search_path', script_path, true);
        EXECUTE format('CREATE TEMP TABLE apikey_org_map_raw AS SELECT * FROM (%s) AS m', mapping);
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'apikey.org_mapping query failed: %', SQLERRM
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The query was: %s. Nothing was changed.', mapping),
                  HINT = hint;
    END;
    SELECT array_agg(attname::text ORDER BY attname) INTO cols
      FROM pg_catalog.pg_attribute
     WHERE attrelid = 'pg_temp.apikey_org_map_raw'::regclass AND attnum > 0 AND NOT attisdropped;
    IF cols IS DISTINCT FROM ARRAY['org_id', 'user_id'] THEN
        RAISE EXCEPTION 'apikey.org_mapping must return exactly the columns user_id and org_id, not %',
                        array_to_string(cols, ', ')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Nothing was changed.',
                  HINT = hint;
    END IF;

    CREATE TEMP TABLE apikey_org_map AS
        SELECT DISTINCT user_id::text AS user_id, org_id::text AS org_id
          FROM pg_temp.apikey_org_map_raw
         WHERE user_id IS NOT NULL AND org_id IS NOT NULL AND org_id::text <> '';
    SELECT user_id, count(*) AS n INTO dup
      FROM pg_temp.apikey_org_map GROUP BY user_id HAVING count(*) > 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'apikey.org_mapping maps user % to % organizations', dup.user_id, dup.n
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Each user must belong to at most one organization. Nothing was changed.',
                  HINT = hint;
    END IF;
    CREATE INDEX ON pg_temp.apikey_org_map (user_id);
    ANALYZE pg_temp.apikey_org_map;

    -- Orphans: keys of users without an organization.  Recorded, then gone.
    INSERT INTO @extschema@.apikey_events (org_id, key_id, event, actor, details)
    SELECT NULL, k.key_id, 'orphan_deleted', @extschema@.apikey_actor(),
           jsonb_build_object('user_id', k.user_id, 'name', k.name, 'hint', k.hint,
                              'reason', 'user has no organization in apikey.org_mapping')
      FROM @extschema@.apikey_keys k
     WHERE NOT EXISTS (SELECT FROM pg_temp.apikey_org_map m WHERE m.user_id = k.user_id)
     ORDER BY k.key_id;
    GET DIAGNOSTICS orphans = ROW_COUNT;
    DELETE FROM @extschema@.apikey_usage u
     USING @extschema@.apikey_keys k
     WHERE k.key_id = u.key_id
       AND NOT EXISTS (SELECT FROM pg_temp.apikey_org_map m WHERE m.user_id = k.user_id);
    DELETE FROM @extschema@.apikey_keys k
     WHERE NOT EXISTS (SELECT FROM pg_temp.apikey_org_map m WHERE m.user_id = k.user_id);

    -- Everyone else: same token, hash, limits, history; now an org's key.
    UPDATE @extschema@.apikey_keys k
       SET org_id = m.org_id, created_by = k.user_id
      FROM pg_temp.apikey_org_map m
     WHERE m.user_id = k.user_id;
    GET DIAGNOSTICS migrated = ROW_COUNT;
    INSERT INTO @extschema@.apikey_events (org_id, key_id, event, actor, details)
    SELECT k.org_id, k.key_id, 'migrated', @extschema@.apikey_actor(),
           jsonb_build_object('user_id', k.user_id, 'from_version', '1.1', 'to_version', '2.1')
      FROM @extschema@.apikey_keys k
     ORDER BY k.key_id;

    DROP TABLE pg_temp.apikey_org_map;
    DROP TABLE pg_temp.apikey_org_map_raw;

    RAISE WARNING '%', format(E'API KEY MIGRATION WARNING\n'
        'Migrated %s API key(s) from user ownership to organization ownership.\n'
        'Deleted %s orphaned key(s) whose users have no organization '
        '(recorded in apikey_events as orphan_deleted).\n'
        'Migrated keys keep full access (scopes = ''{}''), exactly as in 1.x.\n'
        'ACTION REQUIRED: review your API keys:\n'
        '  SELECT key_id, org_id, created_by, name, scopes, is_active FROM @extschema@.apikey_keys ORDER BY org_id, created_by;',
        migrated, orphans);
    PERFORM pg_catalog.set_config('search_path', script_path, true);
END
$migrate$;
-- ---------------------------------------------------------------------------
-- 1.1 -> 2.1, schema steps after the data moved, and the 2.1 API.
-- ---------------------------------------------------------------------------

-- Scope functions (C): immutable, usable in RLS policies and CHECKs.
CREATE FUNCTION apikey_scopes_valid(scopes text[]) RETURNS boolean
    AS 'MODULE_PATHNAME', 'apikey_scopes_valid'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION apikey_scope_matches(granted text[], required text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'apikey_scope_matches'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION apikey_scopes(definitions jsonb) RETURNS text[]
    AS 'MODULE_PATHNAME', 'apikey_scopes_from_json'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION apikey_preset(name text) RETURNS text[]
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

-- The table in its 2.x shape.
ALTER TABLE apikey_keys
    ALTER COLUMN org_id SET NOT NULL,
    DROP COLUMN user_id,
    ADD CONSTRAINT apikey_keys_org_id_check CHECK (org_id <> ''),
    ADD CONSTRAINT apikey_keys_scopes_check CHECK (apikey_scopes_valid(scopes)),
    ADD CONSTRAINT apikey_keys_metadata_check CHECK (jsonb_typeof(metadata) = 'object'),
    ADD CONSTRAINT apikey_keys_revoked_check CHECK (revoked_at IS NULL OR NOT is_active);
CREATE INDEX apikey_keys_org_id_idx ON apikey_keys (org_id);
-- What the sweeper looks for: active keys with an expiry.
CREATE INDEX apikey_keys_expiring_idx ON apikey_keys (expires_at)
    WHERE is_active AND expires_at IS NOT NULL;

-- ---------------------------------------------------------------------------
-- Audit: every change to apikey_keys, through the functions or by direct
-- DML, becomes an event.  The event name is read from the change itself, so
-- nothing a caller sets can relabel it.  SECURITY DEFINER: writers of keys
-- need no right to write events (and cannot forge them); in C, with every
-- statement schema-qualified (definer.c).
-- ---------------------------------------------------------------------------
CREATE FUNCTION apikey_audit() RETURNS trigger
    AS 'MODULE_PATHNAME', 'apikey_audit_2_1'
    LANGUAGE C
    SECURITY DEFINER SET search_path = pg_catalog, @extschema@, pg_temp;

-- usage_count and last_used_at are counters, written by every flush: not
-- audited (UPDATE OF lists every other column).
CREATE TRIGGER apikey_keys_audit
    AFTER INSERT OR DELETE OR UPDATE OF key_id, name, hint, hash, environment, is_active,
        expires_at, rate_limit, rate_window, allowed_ips, created_at, org_id, scopes,
        metadata, created_by, revoked_at, revoked_reason, rotated_from, replaced_by
    ON apikey_keys FOR EACH ROW EXECUTE FUNCTION apikey_audit();
CREATE TRIGGER apikey_keys_audit_truncate
    AFTER TRUNCATE ON apikey_keys
    FOR EACH STATEMENT EXECUTE FUNCTION apikey_audit();

-- ---------------------------------------------------------------------------
-- The write side.  SECURITY INVOKER: the caller's table rights and row-level
-- security apply, so an org admin confined by a policy stays in its org.
-- ---------------------------------------------------------------------------
CREATE FUNCTION apikey_create(org_id text, name text, scopes text[] DEFAULT '{}',
                              environment text DEFAULT 'live',
                              expires_at timestamptz DEFAULT NULL,
                              rate_limit integer DEFAULT NULL,
                              allowed_ips cidr[] DEFAULT NULL,
                              metadata jsonb DEFAULT '{}',
                              created_by text DEFAULT NULL)
    RETURNS TABLE(key_id text, token text)
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
BEGIN
    PERFORM @extschema@.apikey_require_text(org_id, 'org_id');
    PERFORM @extschema@.apikey_require_text(name, 'name');
    PERFORM @extschema@.apikey_require_text(environment, 'environment', 16);
    PERFORM @extschema@.apikey_environment_valid(environment);
    IF scopes IS NULL THEN
        RAISE EXCEPTION 'scopes must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass ''{}'' for full access, or a list like ''{documents:read}''.';
    END IF;
    PERFORM @extschema@.apikey_scopes_valid(scopes);
    PERFORM @extschema@.apikey_require_future(expires_at);
    IF rate_limit < 0 THEN
        RAISE EXCEPTION 'rate_limit must be 0 (unlimited) or more, not %', rate_limit
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL for apikey.default_rate_limit, 0 for no limit.';
    END IF;
    IF array_position(allowed_ips, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'allowed_ips must not contain NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass networks like ''{10.0.0.0/8,192.0.2.1/32}'', or NULL for any address.';
    END IF;
    IF metadata IS NULL OR jsonb_typeof(metadata) <> 'object' THEN
        RAISE EXCEPTION 'metadata must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass ''{}'' or an object like ''{"team": "billing"}''.';
    END IF;
    IF created_by IS NOT NULL THEN
        PERFORM @extschema@.apikey_require_text(created_by, 'created_by');
    END IF;

    t := @extschema@.apikey_new_token(environment);
    INSERT INTO @extschema@.apikey_keys
        (key_id, org_id, name, hint, hash, scopes, environment, expires_at,
         rate_limit, rate_window, allowed_ips, metadata, created_by)
    VALUES (t.key_id, org_id, name, t.hint, t.hash, scopes, environment, expires_at,
            coalesce(rate_limit, current_setting('apikey.default_rate_limit')::integer),
            current_setting('apikey.default_rate_window')::interval,
            nullif(allowed_ips, '{}'), metadata, created_by);
    key_id := t.key_id;
    token := t.token;
    RETURN NEXT;
END
$$;

CREATE FUNCTION apikey_revoke(key_id text, reason text DEFAULT NULL) RETURNS boolean
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@.apikey_require_text(key_id, 'key_id', 64);
    IF length(reason) > 1000 THEN
        RAISE EXCEPTION 'reason is too long (% characters)', length(reason)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use at most 1000 characters.';
    END IF;
    UPDATE @extschema@.apikey_keys k
       SET is_active = false, revoked_at = now(), revoked_reason = $2
     WHERE k.key_id = $1 AND k.revoked_at IS NULL;
    RETURN FOUND;
END
$$;

CREATE FUNCTION apikey_revoke_org(org_id text, reason text DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM @extschema@.apikey_require_text(org_id, 'org_id');
    IF length(reason) > 1000 THEN
        RAISE EXCEPTION 'reason is too long (% characters)', length(reason)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use at most 1000 characters.';
    END IF;
    UPDATE @extschema@.apikey_keys k
       SET is_active = false, revoked_at = now(), revoked_reason = $2
     WHERE k.org_id = $1 AND k.revoked_at IS NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- A successor with everything but the token; the old key lives on until
-- least(its expiry, now() + grace).  The work is done here; apikey_rotate
-- below only renames, since PL/pgSQL cannot have an argument and a result
-- column both called key_id, as the contract names them.
CREATE FUNCTION apikey_rotate_key(old_id text, grace interval)
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

CREATE FUNCTION apikey_rotate(key_id text, grace interval DEFAULT '24 hours')
    RETURNS TABLE(key_id text, token text)
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM @extschema@.apikey_rotate_key($1, $2) $$;

-- ---------------------------------------------------------------------------
-- Verification (C): the request path.
-- ---------------------------------------------------------------------------
CREATE TYPE apikey_verification AS (
    valid          boolean,
    code           text,
    key_id         text,
    org_id         text,
    name           text,
    scopes         text[],
    environment    text,
    expires_at     timestamptz,
    rate_limit     integer,
    rate_remaining integer,
    rate_reset     timestamptz,
    metadata       jsonb
);

CREATE FUNCTION apikey_verify(token text, required_scopes text[] DEFAULT '{}',
                              client_ip inet DEFAULT NULL)
    RETURNS apikey_verification
    AS 'MODULE_PATHNAME', 'apikey_verify_2_0'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- ---------------------------------------------------------------------------
-- Views.  security_invoker: they show what the caller may see of the keys.
-- ---------------------------------------------------------------------------
CREATE VIEW apikey_stats WITH (security_invoker = true) AS
SELECT s.key_id, k.org_id, k.name, s.requests, s.denied,
       s.denied_revoked, s.denied_expired, s.denied_forbidden,
       s.denied_scope, s.denied_rate_limited, s.responses, s.response_ms,
       s.last_used_at, s.rate_window_count, s.overflow
  FROM @extschema@.apikey_stats_internal() s
  LEFT JOIN @extschema@.apikey_keys k ON k.key_id = s.key_id
 WHERE s.overflow OR k.key_id IS NOT NULL;

CREATE VIEW apikey_activity WITH (security_invoker = true) AS
SELECT k.key_id, k.org_id, k.name, r.requests, r.denied,
       r.response_ms / nullif(r.responses, 0) AS avg_response_ms,
       greatest(k.last_used_at, r.last_used_at) AS last_used_at
  FROM @extschema@.apikey_keys k
  JOIN @extschema@.apikey_recent_usage() r ON r.key_id = k.key_id
 ORDER BY 4 DESC, 1;

-- ---------------------------------------------------------------------------
-- Privileges: PUBLIC may verify and use the pure scope helpers; everything
-- that writes or reveals keys is for roles the DBA grants it to.
-- ---------------------------------------------------------------------------
REVOKE ALL ON FUNCTION apikey_create(text, text, text[], text, timestamptz, integer, cidr[], jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION apikey_revoke(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION apikey_revoke_org(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION apikey_rotate(text, interval) FROM PUBLIC;
-- apikey_rotate_key keeps PUBLIC's EXECUTE: the apikey_rotate wrapper runs
-- it with the caller's rights, and as SECURITY INVOKER it needs the caller's
-- table privileges (and passes row-level security) like apikey_rotate.
REVOKE ALL ON FUNCTION apikey_audit() FROM PUBLIC;

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
