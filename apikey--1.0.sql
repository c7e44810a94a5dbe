-- apikey 1.0, as released: this file is frozen. Any change to SQL objects goes into a new version's update script.
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
