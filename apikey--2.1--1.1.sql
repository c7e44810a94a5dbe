-- apikey 2.1--1.1, the rollback of the org migration: this file is frozen once released.
\echo Use "ALTER EXTENSION apikey UPDATE TO '1.1'" to load this file. \quit
-- Refuse a schema others can write to: this script runs with the updating
-- superuser's rights and must not pick up anything planted there.
CREATE FUNCTION apikey_check_schema(refuse boolean) RETURNS void
    AS 'MODULE_PATHNAME', 'apikey_check_schema'
    LANGUAGE C VOLATILE;
SELECT @extschema@.apikey_check_schema(true);
DROP FUNCTION apikey_check_schema(boolean);
-- ---------------------------------------------------------------------------
-- 2.1 -> 1.1: keys go back to their users (created_by).  1.x cannot express
-- scopes, so a key with limited scopes is deactivated rather than widened.
-- Orphans deleted on the way up stay deleted; the audit trail is kept.
-- ---------------------------------------------------------------------------
DO $downgrade$
DECLARE
    -- functions and operators of this block resolve in pg_catalog only
    script_path constant text := pg_catalog.current_setting('search_path');
    pinned      text := pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    unowned     bigint;
    example     text;
    deactivated bigint;
BEGIN
    SELECT count(*), min(key_id) INTO unowned, example
      FROM @extschema@.apikey_keys WHERE created_by IS NULL OR created_by = '';
    IF unowned > 0 THEN
        RAISE EXCEPTION 'cannot downgrade apikey to 1.1: % key(s) have no created_by (for example %)',
                        unowned, example
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = '1.x keys belong to users, and created_by is where a key''s user is kept. Nothing was changed.',
                  HINT = 'Set created_by to the owning user of each such key, or revoke and delete those keys, then retry.';
    END IF;

    INSERT INTO @extschema@.apikey_events (org_id, key_id, event, actor, details)
    SELECT k.org_id, k.key_id, 'updated', @extschema@.apikey_actor(),
           jsonb_build_object('is_active', jsonb_build_object('old', true, 'new', false),
                              'reason', 'downgrade to 1.1: scoped keys cannot be expressed',
                              'scopes', k.scopes)
      FROM @extschema@.apikey_keys k
     WHERE k.is_active AND k.scopes <> '{}';
    GET DIAGNOSTICS deactivated = ROW_COUNT;
    ALTER TABLE @extschema@.apikey_keys DISABLE TRIGGER USER;
    UPDATE @extschema@.apikey_keys SET is_active = false WHERE is_active AND scopes <> '{}';
    IF deactivated > 0 THEN
        RAISE WARNING 'apikey downgrade deactivated % key(s) with limited scopes', deactivated
            USING DETAIL = 'Version 1.x cannot express scopes; keeping those keys active would widen their access.',
                  HINT = 'Issue replacement keys after reviewing them, or update back to 2.1 and reactivate them.';
    END IF;
    PERFORM pg_catalog.set_config('search_path', script_path, true);
END
$downgrade$;

DROP VIEW apikey_activity;
DROP VIEW apikey_stats;
-- The tenant binding belongs to organizations, which 1.x does not have.
DROP FUNCTION apikey_acts_for(text);
DROP TABLE apikey_org_roles;
DROP FUNCTION apikey_verify(text, text[], inet);
DROP TYPE apikey_verification;
DROP FUNCTION apikey_rotate(text, interval);
DROP FUNCTION apikey_rotate_key(text, interval);
DROP FUNCTION apikey_revoke_org(text, text);
DROP FUNCTION apikey_revoke(text, text);
DROP FUNCTION apikey_create(text, text, text[], text, timestamptz, integer, cidr[], jsonb, text);
DROP TRIGGER apikey_keys_audit_truncate ON apikey_keys;
DROP TRIGGER apikey_keys_audit ON apikey_keys;
DROP FUNCTION apikey_audit();
DROP INDEX apikey_keys_expiring_idx;

ALTER TABLE apikey_keys ADD COLUMN user_id text;
UPDATE apikey_keys SET user_id = created_by;
ALTER TABLE apikey_keys
    ALTER COLUMN user_id SET NOT NULL,
    ADD CONSTRAINT apikey_keys_user_id_check CHECK (user_id <> ''),
    DROP COLUMN org_id,
    DROP COLUMN scopes,
    DROP COLUMN metadata,
    DROP COLUMN created_by,
    DROP COLUMN revoked_at,
    DROP COLUMN revoked_reason,
    DROP COLUMN rotated_from,
    DROP COLUMN replaced_by;

DROP FUNCTION apikey_preset(text);
DROP FUNCTION apikey_scopes(jsonb);
DROP FUNCTION apikey_scope_matches(text[], text);
DROP FUNCTION apikey_scopes_valid(text[]);
-- ---------------------------------------------------------------------------
-- Version 1.1 API: keys owned by users.
-- ---------------------------------------------------------------------------

CREATE FUNCTION apikey_generate(user_id text, key_name text,
                                environment text DEFAULT 'live',
                                rate_limit_per_hour integer DEFAULT 1000,
                                expires_at timestamptz DEFAULT NULL)
    RETURNS TABLE(key_id text, key text)
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
BEGIN
    PERFORM @extschema@.apikey_require_text(user_id, 'user_id');
    PERFORM @extschema@.apikey_require_text(key_name, 'key_name');
    PERFORM @extschema@.apikey_require_text(environment, 'environment', 16);
    PERFORM @extschema@.apikey_environment_valid(environment);
    IF rate_limit_per_hour IS NULL OR rate_limit_per_hour < 0 THEN
        RAISE EXCEPTION 'rate_limit_per_hour must be 0 (unlimited) or more, not %',
                        coalesce(rate_limit_per_hour::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the number of requests allowed per hour.';
    END IF;
    PERFORM @extschema@.apikey_require_future(expires_at);

    t := @extschema@.apikey_new_token(environment);
    INSERT INTO @extschema@.apikey_keys
        (key_id, user_id, name, hint, hash, environment, expires_at,
         rate_limit, rate_window)
    VALUES (t.key_id, user_id, key_name, t.hint, t.hash, environment, expires_at,
            rate_limit_per_hour, interval '1 hour');
    key_id := t.key_id;
    key := t.token;
    RETURN NEXT;
END
$$;

CREATE FUNCTION apikey_verify(key text, client_ip inet DEFAULT NULL)
    RETURNS TABLE(valid boolean, code text, key_id text, user_id text)
    AS 'MODULE_PATHNAME', 'apikey_verify_1_0'
    LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1;

CREATE FUNCTION apikey_deactivate(key_id text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@.apikey_require_text(key_id, 'key_id', 64);
    UPDATE @extschema@.apikey_keys k SET is_active = false
     WHERE k.key_id = $1 AND k.is_active;
    RETURN FOUND;
END
$$;

CREATE VIEW apikey_stats WITH (security_invoker = true) AS
SELECT s.key_id, k.user_id, k.name, s.requests, s.denied,
       s.denied_revoked, s.denied_expired, s.denied_forbidden,
       s.denied_scope, s.denied_rate_limited, s.responses, s.response_ms,
       s.last_used_at, s.rate_window_count, s.overflow
  FROM @extschema@.apikey_stats_internal() s
  LEFT JOIN @extschema@.apikey_keys k ON k.key_id = s.key_id
 WHERE s.overflow OR k.key_id IS NOT NULL;

CREATE VIEW apikey_activity WITH (security_invoker = true) AS
SELECT k.key_id, k.user_id, k.name, r.requests, r.denied,
       r.response_ms / nullif(r.responses, 0) AS avg_response_ms,
       greatest(k.last_used_at, r.last_used_at) AS last_used_at
  FROM @extschema@.apikey_keys k
  JOIN @extschema@.apikey_recent_usage() r ON r.key_id = k.key_id
 ORDER BY 4 DESC, 1;

REVOKE ALL ON FUNCTION apikey_generate(text, text, text, integer, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION apikey_deactivate(text) FROM PUBLIC;
