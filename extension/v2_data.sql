-- ---------------------------------------------------------------------------
-- 1.0 -> 2.0, the data: every user's keys move to the user's organization.
-- Runs inside ALTER EXTENSION's transaction: any error leaves 1.0 intact.
-- ---------------------------------------------------------------------------
DO $migrate$
DECLARE
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
                  DETAIL = 'Version 2.0 keys belong to organizations; the update must know the organization of each user. Nothing was changed.',
                  HINT = hint;
    END IF;
    mapping := regexp_replace(mapping, ';\s*$', '');

    -- As a subquery, so that the mapping can only ever be one query.
    BEGIN
        EXECUTE format('CREATE TEMP TABLE apikey_org_map_raw AS SELECT * FROM (%s) AS m', mapping);
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
           jsonb_build_object('user_id', k.user_id, 'from_version', '1.0', 'to_version', '2.0')
      FROM @extschema@.apikey_keys k
     ORDER BY k.key_id;

    DROP TABLE pg_temp.apikey_org_map;
    DROP TABLE pg_temp.apikey_org_map_raw;

    RAISE WARNING '%', format(E'API KEY MIGRATION WARNING\n'
        'Migrated %s API key(s) from user ownership to organization ownership.\n'
        'Deleted %s orphaned key(s) whose users have no organization '
        '(recorded in apikey_events as orphan_deleted).\n'
        'Migrated keys keep full access (scopes = ''{}''), exactly as in 1.0.\n'
        'ACTION REQUIRED: review your API keys:\n'
        '  SELECT key_id, org_id, created_by, name, scopes, is_active FROM @extschema@.apikey_keys ORDER BY org_id, created_by;',
        migrated, orphans);
END
$migrate$;
