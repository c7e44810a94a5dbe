-- apikey 2.0, as released: this file is frozen. Any change to SQL objects goes into a new version's update script.
\echo Use "CREATE EXTENSION apikey" (or ALTER EXTENSION apikey UPDATE) to load this file. \quit
-- ---------------------------------------------------------------------------
-- Version 1.0 tables: legacy per-user keys.
-- Constraint names are explicit so that every upgrade path yields the same
-- catalog as a fresh install.
-- ---------------------------------------------------------------------------

-- Validators used by CHECK constraints; they raise errors that name the bad
-- value.  Pure and harmless, so PUBLIC may execute them (a CHECK runs them
-- with the privileges of whoever writes the row).
CREATE FUNCTION apikey_environment_valid(environment text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'apikey_environment_valid'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE TABLE apikey_keys (
    key_id       text        NOT NULL,
    user_id      text        NOT NULL,
    name         text        NOT NULL,
    hint         text        NOT NULL,
    hash         bytea       NOT NULL,
    environment  text        NOT NULL,
    is_active    boolean     NOT NULL DEFAULT true,
    expires_at   timestamptz,
    rate_limit   integer,
    rate_window  interval,
    allowed_ips  cidr[],
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    usage_count  bigint      NOT NULL DEFAULT 0,
    CONSTRAINT apikey_keys_pkey PRIMARY KEY (key_id),
    CONSTRAINT apikey_keys_hash_key UNIQUE (hash),
    CONSTRAINT apikey_keys_key_id_check CHECK (length(key_id) BETWEEN 1 AND 64),
    CONSTRAINT apikey_keys_user_id_check CHECK (user_id <> ''),
    CONSTRAINT apikey_keys_name_check CHECK (name <> '' AND length(name) <= 200),
    CONSTRAINT apikey_keys_hash_check CHECK (length(hash) = 32),
    CONSTRAINT apikey_keys_environment_check CHECK (apikey_environment_valid(environment)),
    CONSTRAINT apikey_keys_rate_limit_check CHECK (rate_limit >= 0),
    CONSTRAINT apikey_keys_rate_window_check
        CHECK (rate_window >= interval '1 second' AND rate_window <= interval '31 days'),
    CONSTRAINT apikey_keys_allowed_ips_check
        CHECK (array_position(allowed_ips, NULL) IS NULL),
    CONSTRAINT apikey_keys_usage_count_check CHECK (usage_count >= 0)
) WITH (fillfactor = 70);
-- fillfactor: every flush updates usage_count/last_used_at, which no index
-- covers; room on the page lets those updates be HOT (no index inserts).
COMMENT ON TABLE apikey_keys IS 'API keys; only the SHA-256 of each token is stored';

-- Hourly usage buckets, written by the worker (or apikey_flush) from the
-- shared-memory counters.  No foreign key: history outlives a deleted key
-- until apikey.usage_retention removes it.
CREATE TABLE apikey_usage (
    key_id        text             NOT NULL,
    bucket        timestamptz      NOT NULL,
    requests      bigint           NOT NULL DEFAULT 0,
    denied        bigint           NOT NULL DEFAULT 0,
    responses     bigint           NOT NULL DEFAULT 0,
    response_ms   double precision NOT NULL DEFAULT 0,
    client_errors bigint           NOT NULL DEFAULT 0,
    server_errors bigint           NOT NULL DEFAULT 0,
    CONSTRAINT apikey_usage_pkey PRIMARY KEY (key_id, bucket)
) WITH (fillfactor = 70);  -- each flush in the hour updates the same bucket row
CREATE INDEX apikey_usage_bucket_idx ON apikey_usage (bucket);
COMMENT ON TABLE apikey_usage IS 'Requests per key and hour';

-- Counts flushed from shared memory and not yet folded into apikey_usage
-- and apikey_keys: one row of parallel arrays per flush (see flush.c).  The
-- sweep, and apikey_flush(), fold and delete them.
CREATE TABLE apikey_usage_log (
    log_id        bigserial     NOT NULL,
    logged_at     timestamptz   NOT NULL DEFAULT now(),
    entries       integer       NOT NULL,
    key_ids       text[]        NOT NULL,
    buckets       timestamptz[] NOT NULL,
    requests      bigint[]      NOT NULL,
    denied        bigint[]      NOT NULL,
    responses     bigint[]      NOT NULL,
    response_ms   double precision[] NOT NULL,
    client_errors bigint[]      NOT NULL,
    server_errors bigint[]      NOT NULL,
    last_used     timestamptz[] NOT NULL,
    CONSTRAINT apikey_usage_log_pkey PRIMARY KEY (log_id)
);
COMMENT ON TABLE apikey_usage_log IS 'Flushed usage counts not yet folded into apikey_usage and apikey_keys';

-- pg_dump must carry the keys and their history.
SELECT pg_catalog.pg_extension_config_dump('apikey_keys', '');
SELECT pg_catalog.pg_extension_config_dump('apikey_usage', '');
SELECT pg_catalog.pg_extension_config_dump('apikey_usage_log', '');
SELECT pg_catalog.pg_extension_config_dump('apikey_usage_log_log_id_seq', '');
-- ---------------------------------------------------------------------------
-- Functions that every version shares.  Their C symbols never change
-- meaning, so old and new SQL can both call them.
-- ---------------------------------------------------------------------------

-- A fresh token and what is stored of it.  Stores nothing itself, so a
-- token it returns that no key row records is worthless.
CREATE FUNCTION apikey_new_token(environment text,
                                 OUT key_id text, OUT token text,
                                 OUT hint text, OUT hash bytea)
    AS 'MODULE_PATHNAME', 'apikey_new_token'
    LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED;

-- SHA-256 of a token as stored, for importing keys from another system.
CREATE FUNCTION apikey_token_hash(token text) RETURNS bytea
    AS 'MODULE_PATHNAME', 'apikey_token_hash'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- The role acting at the top level, for the audit trail.
CREATE FUNCTION apikey_actor() RETURNS text
    AS 'MODULE_PATHNAME', 'apikey_actor'
    LANGUAGE C STABLE PARALLEL SAFE;

-- Argument checks shared by the write functions: clear errors, nothing
-- written.
CREATE FUNCTION apikey_require_text(value text, what text, max_length integer DEFAULT 200)
    RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog
AS $$
BEGIN
    IF value IS NULL THEN
        RAISE EXCEPTION '% must not be null', what
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = format('Pass a non-empty %s.', what);
    END IF;
    IF value ~ '^\s*$' THEN
        RAISE EXCEPTION '% must not be empty', what
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Pass a non-empty %s.', what);
    END IF;
    IF length(value) > max_length THEN
        RAISE EXCEPTION '% is too long (% characters)', what, length(value)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Use at most %s characters.', max_length);
    END IF;
    RETURN value;
END
$$;

CREATE FUNCTION apikey_require_future(expires_at timestamptz) RETURNS timestamptz
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog
AS $$
BEGIN
    IF expires_at IS NOT NULL AND expires_at <= now() THEN
        RAISE EXCEPTION 'expires_at % is not in the future', expires_at
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass a future time, or NULL for a key that does not expire.';
    END IF;
    RETURN expires_at;
END
$$;

-- Write pending shared-memory counters into the tables now (the worker
-- does this every apikey.flush_interval).
CREATE FUNCTION apikey_flush() RETURNS bigint
    AS 'MODULE_PATHNAME', 'apikey_flush'
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    SECURITY DEFINER SET search_path = pg_catalog, @extschema@;

-- Counters of this database still in shared memory.
CREATE FUNCTION apikey_stats_internal(
    OUT key_id text, OUT requests bigint, OUT denied bigint,
    OUT denied_revoked bigint, OUT denied_expired bigint,
    OUT denied_forbidden bigint, OUT denied_scope bigint,
    OUT denied_rate_limited bigint, OUT responses bigint,
    OUT response_ms double precision, OUT last_used_at timestamptz,
    OUT rate_window_count integer, OUT overflow boolean)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'apikey_stats_internal'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Each key's last 24 hours: the folded hourly buckets, the usage log not
-- folded yet, and the counters still in shared memory.  apikey_activity
-- (of either version) adds the owner and name.  A plain SQL function, so the
-- planner inlines it, and SECURITY INVOKER: it shows a caller only what the
-- caller may already read (apikey_usage, apikey_usage_log and
-- apikey_stats_internal), which is why PUBLIC may keep EXECUTE.
CREATE FUNCTION apikey_recent_usage()
    RETURNS TABLE(key_id text, requests numeric, denied numeric, responses numeric,
                  response_ms double precision, last_used_at timestamptz)
    LANGUAGE sql STABLE
AS $$
SELECT coalesce(u.key_id, s.key_id),
       coalesce(u.requests, 0) + coalesce(s.requests, 0),
       coalesce(u.denied, 0) + coalesce(s.denied, 0),
       coalesce(u.responses, 0) + coalesce(s.responses, 0),
       coalesce(u.response_ms, 0) + coalesce(s.response_ms, 0),
       greatest(u.last_used_at, s.last_used_at)
  FROM (SELECT x.key_id, sum(x.requests) AS requests, sum(x.denied) AS denied,
               sum(x.responses) AS responses, sum(x.response_ms) AS response_ms,
               max(x.last_used) AS last_used_at
          FROM (SELECT b.key_id, b.bucket, b.requests, b.denied, b.responses,
                       b.response_ms, NULL::timestamptz AS last_used
                  FROM @extschema@.apikey_usage b
                UNION ALL  -- flushed by the worker, not folded yet
                SELECT l.* FROM @extschema@.apikey_usage_log j,
                       ROWS FROM (unnest(j.key_ids), unnest(j.buckets), unnest(j.requests),
                                  unnest(j.denied), unnest(j.responses),
                                  unnest(j.response_ms), unnest(j.last_used))
                         AS l(key_id, bucket, requests, denied, responses,
                              response_ms, last_used)) x
         WHERE x.bucket >= date_trunc('hour', now() - interval '24 hours')
         GROUP BY x.key_id) u
  FULL JOIN @extschema@.apikey_stats_internal() s ON s.key_id = u.key_id
 WHERE coalesce(u.key_id, s.key_id) IS NOT NULL
$$;

CREATE FUNCTION apikey_record(key_id text, endpoint text, status_code integer,
                              response_ms double precision) RETURNS void
    AS 'MODULE_PATHNAME', 'apikey_record'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION apikey_rate_limit_status(key_id text)
    RETURNS TABLE(rate_limit integer, remaining integer, reset_at timestamptz)
    AS 'MODULE_PATHNAME', 'apikey_rate_limit_status'
    LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1
    SECURITY DEFINER SET search_path = pg_catalog, @extschema@;

-- What the workers run, callable by hand or from pg_cron: sweep batches
-- until none is full.  apikey_sweep_batch is the version-specific part.
CREATE FUNCTION apikey_sweep() RETURNS TABLE(expired bigint, usage_purged bigint)
    LANGUAGE plpgsql VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, @extschema@
AS $$
DECLARE
    b record;
BEGIN
    expired := 0;
    usage_purged := 0;
    LOOP
        b := @extschema@.apikey_sweep_batch(1000);
        expired := expired + b.expired;
        usage_purged := usage_purged + b.usage_purged;
        EXIT WHEN b.expired < 1000 AND b.usage_purged < 1000;
    END LOOP;
    RETURN NEXT;
END
$$;

-- Operational functions are for the roles a DBA grants them to.
REVOKE ALL ON FUNCTION apikey_flush() FROM PUBLIC;
REVOKE ALL ON FUNCTION apikey_stats_internal() FROM PUBLIC;
REVOKE ALL ON FUNCTION apikey_record(text, text, integer, double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION apikey_rate_limit_status(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION apikey_sweep() FROM PUBLIC;
-- ---------------------------------------------------------------------------
-- Version 1.0 API: keys owned by users.
-- ---------------------------------------------------------------------------

CREATE FUNCTION apikey_generate(user_id text, key_name text,
                                environment text DEFAULT 'live',
                                rate_limit_per_hour integer DEFAULT 1000,
                                expires_at timestamptz DEFAULT NULL)
    RETURNS TABLE(key_id text, key text)
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, @extschema@
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
    SET search_path = pg_catalog, @extschema@
AS $$
BEGIN
    PERFORM @extschema@.apikey_require_text(key_id, 'key_id', 64);
    UPDATE @extschema@.apikey_keys k SET is_active = false
     WHERE k.key_id = $1 AND k.is_active;
    RETURN FOUND;
END
$$;

-- One batch of sweeping: usage buckets older than apikey.usage_retention.
-- (1.0 has no audit trail, so expired keys are left to apikey_verify,
-- which reports them EXPIRED.)
CREATE FUNCTION apikey_sweep_batch(batch_size integer)
    RETURNS TABLE(expired bigint, usage_purged bigint)
    LANGUAGE plpgsql VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, @extschema@
AS $$
BEGIN
    expired := 0;
    DELETE FROM @extschema@.apikey_usage u
     WHERE u.ctid IN (SELECT x.ctid FROM @extschema@.apikey_usage x
                       WHERE x.bucket < now() - current_setting('apikey.usage_retention')::interval
                       LIMIT batch_size);
    GET DIAGNOSTICS usage_purged = ROW_COUNT;
    RETURN NEXT;
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
REVOKE ALL ON FUNCTION apikey_sweep_batch(integer) FROM PUBLIC;
-- ---------------------------------------------------------------------------
-- 1.0 -> 2.0, schema steps before the data moves.  Shared by the update
-- script and by the fresh 2.0 install, so that both end in the same catalog.
-- ---------------------------------------------------------------------------

-- The 1.0 API is replaced.
DROP VIEW apikey_activity;
DROP VIEW apikey_stats;
DROP FUNCTION apikey_generate(text, text, text, integer, timestamptz);
DROP FUNCTION apikey_verify(text, inet);
DROP FUNCTION apikey_deactivate(text);
DROP FUNCTION apikey_sweep_batch(integer);

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

-- The audit trail.  A downgrade to 1.0 keeps it, hence IF NOT EXISTS.
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
-- 1.0 -> 2.0, schema steps after the data moved, and the 2.0 API.  Shared by
-- the update script and by the fresh 2.0 install.
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
    SET search_path = pg_catalog
AS $$
BEGIN
    CASE name
        WHEN 'full' THEN RETURN '{}'::text[];
        WHEN 'conversations' THEN RETURN '{conversations:*}'::text[];
        WHEN 'documents' THEN RETURN '{documents:*}'::text[];
        WHEN 'plugins' THEN RETURN '{plugins:execute}'::text[];
        ELSE
            RAISE EXCEPTION 'unknown scope preset "%"', coalesce(name, 'NULL')
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'The presets are full, conversations, documents and plugins.';
    END CASE;
END
$$;

-- The table in its 2.0 shape.
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
-- need no right to write events (and cannot forge them).
-- ---------------------------------------------------------------------------
CREATE FUNCTION apikey_audit() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, @extschema@
AS $$
DECLARE
    r       record;
    ev      text;
    details jsonb := '{}';
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO @extschema@.apikey_events (event, actor, details)
        VALUES ('truncated', @extschema@.apikey_actor(), '{}');
        RETURN NULL;
    ELSIF TG_OP = 'INSERT' THEN
        r := NEW;
        -- A restore (pg_restore or psql loading a dump: COPY, as a superuser,
        -- who could disable this trigger anyway) brings the keys' events
        -- with it; recording the rows again would duplicate the trail and
        -- collide with the restored event ids.
        IF current_query() ~* '^\s*COPY\s'
           AND (SELECT rolsuper FROM pg_catalog.pg_roles
                 WHERE rolname = @extschema@.apikey_actor()) THEN
            RETURN NULL;
        END IF;
        ev := 'created';
        details := jsonb_build_object('name', NEW.name, 'hint', NEW.hint,
                                      'scopes', NEW.scopes, 'environment', NEW.environment,
                                      'expires_at', NEW.expires_at, 'rate_limit', NEW.rate_limit)
                   || CASE WHEN NEW.rotated_from IS NULL THEN '{}'::jsonb
                           ELSE jsonb_build_object('rotated_from', NEW.rotated_from) END;
    ELSIF TG_OP = 'DELETE' THEN
        r := OLD;
        ev := 'deleted';
        details := jsonb_build_object('name', OLD.name, 'hint', OLD.hint);
    ELSE
        r := NEW;
        IF OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL THEN
            ev := 'revoked';
            details := jsonb_build_object('reason', NEW.revoked_reason);
        ELSIF OLD.replaced_by IS NULL AND NEW.replaced_by IS NOT NULL THEN
            ev := 'rotated';
            details := jsonb_build_object('replaced_by', NEW.replaced_by,
                                          'expires_at', NEW.expires_at);
        ELSIF OLD.is_active AND NOT NEW.is_active AND NEW.expires_at <= now() THEN
            ev := 'expired';
            details := jsonb_build_object('expires_at', NEW.expires_at);
        ELSE
            ev := 'updated';
            -- the changed columns, old and new (the hash only as "changed")
            SELECT coalesce(jsonb_object_agg(n.key,
                       CASE WHEN n.key = 'hash' THEN to_jsonb('changed'::text)
                            ELSE jsonb_build_object('old', to_jsonb(OLD) -> n.key, 'new', n.value) END), '{}')
              INTO details
              FROM jsonb_each(to_jsonb(NEW)) n
             WHERE n.value IS DISTINCT FROM to_jsonb(OLD) -> n.key
               AND n.key NOT IN ('usage_count', 'last_used_at');
            IF details = '{}' THEN
                RETURN NULL;    -- nothing changed
            END IF;
        END IF;
    END IF;
    INSERT INTO @extschema@.apikey_events (org_id, key_id, event, actor, details)
    VALUES (r.org_id, r.key_id, ev, @extschema@.apikey_actor(), details);
    RETURN NULL;
END
$$;

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
    SET search_path = pg_catalog, @extschema@
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
    SET search_path = pg_catalog, @extschema@
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
    SET search_path = pg_catalog, @extschema@
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
    SET search_path = pg_catalog, @extschema@
AS $$
DECLARE
    old    @extschema@.apikey_keys;
    t      record;
BEGIN
    PERFORM @extschema@.apikey_require_text(old_id, 'key_id', 64);
    IF grace IS NULL OR grace < interval '0' THEN
        RAISE EXCEPTION 'grace must be a non-negative interval'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass how long the old key keeps working, e.g. ''24 hours'', or ''0'' to end it now.';
    END IF;
    SELECT * INTO old FROM @extschema@.apikey_keys k WHERE k.key_id = old_id FOR UPDATE;
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
    SET search_path = pg_catalog, @extschema@
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
-- Sweeping: expired keys become inactive (audited as 'expired'), old usage
-- buckets go.  One batch per call; the worker commits between batches.
-- ---------------------------------------------------------------------------
CREATE FUNCTION apikey_sweep_batch(batch_size integer)
    RETURNS TABLE(expired bigint, usage_purged bigint)
    LANGUAGE plpgsql VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, @extschema@
AS $$
BEGIN
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be positive'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE @extschema@.apikey_keys k SET is_active = false
     WHERE k.key_id IN (SELECT x.key_id FROM @extschema@.apikey_keys x
                         WHERE x.is_active AND x.expires_at IS NOT NULL
                           AND x.expires_at <= now()
                         ORDER BY x.expires_at
                         LIMIT batch_size
                         FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS expired = ROW_COUNT;
    DELETE FROM @extschema@.apikey_usage u
     WHERE u.ctid IN (SELECT x.ctid FROM @extschema@.apikey_usage x
                       WHERE x.bucket < now() - current_setting('apikey.usage_retention')::interval
                       LIMIT batch_size);
    GET DIAGNOSTICS usage_purged = ROW_COUNT;
    RETURN NEXT;
END
$$;

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
REVOKE ALL ON FUNCTION apikey_sweep_batch(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION apikey_audit() FROM PUBLIC;
