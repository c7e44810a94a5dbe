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
