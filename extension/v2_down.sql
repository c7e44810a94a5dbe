-- ---------------------------------------------------------------------------
-- 2.0 -> 1.0: keys go back to their users (created_by).  1.0 cannot express
-- scopes, so a key with limited scopes is deactivated rather than widened.
-- Orphans deleted on the way up stay deleted; the audit trail is kept.
-- ---------------------------------------------------------------------------
DO $downgrade$
DECLARE
    unowned     bigint;
    example     text;
    deactivated bigint;
BEGIN
    SELECT count(*), min(key_id) INTO unowned, example
      FROM @extschema@.apikey_keys WHERE created_by IS NULL OR created_by = '';
    IF unowned > 0 THEN
        RAISE EXCEPTION 'cannot downgrade apikey to 1.0: % key(s) have no created_by (for example %)',
                        unowned, example
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = '1.0 keys belong to users, and created_by is where a key''s user is kept. Nothing was changed.',
                  HINT = 'Set created_by to the owning user of each such key, or revoke and delete those keys, then retry.';
    END IF;

    INSERT INTO @extschema@.apikey_events (org_id, key_id, event, actor, details)
    SELECT k.org_id, k.key_id, 'updated', @extschema@.apikey_actor(),
           jsonb_build_object('is_active', jsonb_build_object('old', true, 'new', false),
                              'reason', 'downgrade to 1.0: scoped keys cannot be expressed',
                              'scopes', k.scopes)
      FROM @extschema@.apikey_keys k
     WHERE k.is_active AND k.scopes <> '{}';
    GET DIAGNOSTICS deactivated = ROW_COUNT;
    ALTER TABLE @extschema@.apikey_keys DISABLE TRIGGER USER;
    UPDATE @extschema@.apikey_keys SET is_active = false WHERE is_active AND scopes <> '{}';
    IF deactivated > 0 THEN
        RAISE WARNING 'apikey downgrade deactivated % key(s) with limited scopes', deactivated
            USING DETAIL = 'Version 1.0 cannot express scopes; keeping those keys active would widen their access.',
                  HINT = 'Issue replacement keys after reviewing them, or update back to 2.0 and reactivate them.';
    END IF;
END
$downgrade$;

DROP VIEW apikey_activity;
DROP VIEW apikey_stats;
DROP FUNCTION apikey_sweep_batch(integer);
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
