-- apikey 2.1--2.2, key management and monitoring: this file is frozen once released.
\echo Use "ALTER EXTENSION apikey UPDATE TO '2.2'" to load this file. \quit

-- Everything added here runs with the caller's rights (SECURITY INVOKER): the
-- caller's table and column privileges and row-level security decide what it
-- may read and change, as for its own SQL.  Like 2.1's functions of that
-- kind, each searches pg_catalog and pg_temp only (pg_temp last) and names
-- the extension's objects with their schema: a superuser calls them too, and
-- an overload planted in the extension's schema must never be picked up.

-- ---------------------------------------------------------------------------
-- apikey_keys_of(org_id): an organization's keys, every column a key admin
-- needs and never the hash.  All keys, active or not (is_active says which),
-- oldest first.  usage_count and last_used_at are the table's: they may lag
-- real use by up to apikey.fold_interval (apikey_usage_series is exact).
-- ---------------------------------------------------------------------------
CREATE FUNCTION apikey_keys_of(org_id text)
    RETURNS TABLE(key_id text, name text, hint text, scopes text[], environment text,
                  is_active boolean, expires_at timestamptz, created_at timestamptz,
                  last_used_at timestamptz, usage_count bigint)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@.apikey_require_text($1, 'org_id', 200);
    RETURN QUERY
    SELECT k.key_id, k.name, k.hint, k.scopes, k.environment, k.is_active, k.expires_at,
           k.created_at, k.last_used_at, k.usage_count
      FROM @extschema@.apikey_keys k
     WHERE k.org_id = $1
     ORDER BY k.created_at, k.key_id;
END
$$;

-- ---------------------------------------------------------------------------
-- apikey_update: change what may change of a live key.  A null argument
-- leaves its column as it is; expires_at => 'infinity' removes the expiry,
-- allowed_ips => '{}' the allowlist, rate_limit => 0 the limit.  Values are
-- checked as apikey_create checks them, before anything is read or written.
--
-- The UPDATE sets only the columns given, so a role granted UPDATE on some
-- columns of apikey_keys (the tenant recipe: not rate_limit) can change
-- those and is refused the others.  It is audited by the trigger like any
-- UPDATE: an 'updated' event with each changed column's old and new value.
--
-- Revoked, expired and deactivated keys cannot be changed: nothing would
-- make them verify again, and an admin who narrows the scopes of a key that
-- is already dead has the wrong key in mind -- an error says so, where a
-- silent false would read as "no such key".  false: no key with this key_id
-- that the caller may see (and lock: SELECT ... FOR UPDATE needs UPDATE on
-- at least one column).
-- ---------------------------------------------------------------------------
CREATE FUNCTION apikey_update(key_id text, name text DEFAULT NULL, scopes text[] DEFAULT NULL,
                              expires_at timestamptz DEFAULT NULL,
                              rate_limit integer DEFAULT NULL,
                              allowed_ips cidr[] DEFAULT NULL,
                              metadata jsonb DEFAULT NULL)
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sets    text[] := '{}';
    new_exp timestamptz := $4;
    new_ips cidr[] := $6;
    cur     record;
    changed bigint;
BEGIN
    PERFORM @extschema@.apikey_require_text($1, 'key_id', 64);
    IF $2 IS NOT NULL THEN
        PERFORM @extschema@.apikey_require_text($2, 'name', 200);
        sets := sets || 'name = $2'::text;
    END IF;
    IF $3 IS NOT NULL THEN
        PERFORM @extschema@.apikey_scopes_valid($3);
        sets := sets || 'scopes = $3'::text;
    END IF;
    IF $4 IS NOT NULL THEN
        IF $4 = 'infinity'::timestamptz THEN
            new_exp := NULL;
        ELSE
            PERFORM @extschema@.apikey_require_future($4);
        END IF;
        sets := sets || 'expires_at = $4'::text;
    END IF;
    IF $5 IS NOT NULL THEN
        IF $5 < 0 THEN
            RAISE EXCEPTION 'rate_limit must be 0 (unlimited) or more, not %', $5
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Pass the number of requests per window, 0 for no limit, or NULL to leave it unchanged.';
        END IF;
        sets := sets || 'rate_limit = $5'::text;
    END IF;
    IF $6 IS NOT NULL THEN
        IF array_position($6, NULL) IS NOT NULL THEN
            RAISE EXCEPTION 'allowed_ips must not contain NULL'
                USING ERRCODE = 'null_value_not_allowed',
                      HINT = 'Pass networks like ''{10.0.0.0/8,192.0.2.1/32}'', or ''{}'' to allow any address.';
        END IF;
        IF cardinality($6) = 0 THEN
            new_ips := NULL;
        END IF;
        sets := sets || 'allowed_ips = $6'::text;
    END IF;
    IF $7 IS NOT NULL THEN
        IF jsonb_typeof($7) <> 'object' THEN
            RAISE EXCEPTION 'metadata must be a JSON object'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Pass an object like ''{"team": "billing"}'' (it replaces the old one), or NULL to leave it unchanged.';
        END IF;
        sets := sets || 'metadata = $7'::text;
    END IF;

    SELECT k.revoked_at, k.is_active, k.expires_at INTO cur
      FROM @extschema@.apikey_keys k
     WHERE k.key_id = $1
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF cur.revoked_at IS NOT NULL THEN
        RAISE EXCEPTION 'API key "%" is revoked and cannot be changed', $1
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Create a new key with apikey_create instead.';
    END IF;
    IF cur.expires_at <= now() THEN
        RAISE EXCEPTION 'API key "%" has expired and cannot be changed', $1
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Create a new key with apikey_create instead.';
    END IF;
    IF NOT cur.is_active THEN
        RAISE EXCEPTION 'API key "%" is deactivated and cannot be changed', $1
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Create a new key with apikey_create instead.';
    END IF;
    IF cardinality(sets) = 0 THEN
        RETURN true;    -- nothing to change
    END IF;

    EXECUTE 'UPDATE @extschema@.apikey_keys k SET '
            || array_to_string(sets, ', ')
            || ' WHERE k.key_id = $1'
      USING $1, $2, $3, new_exp, $5, new_ips, $7;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RETURN changed > 0;
END
$$;

-- ---------------------------------------------------------------------------
-- apikey_usage_series: requests, denied, responses and the average response
-- time per step, for dashboards.  Exact up to now: the folded hourly buckets
-- (apikey_usage) plus what is not folded yet (apikey_pending_usage: the
-- usage log and shared memory), read in one statement, so under one
-- snapshot -- a flush moves counts from memory to the log, and a fold from
-- the log to apikey_usage, in one commit each, and nothing is counted twice.
--
-- Only keys the caller may see in apikey_keys count (its privileges and
-- row-level security decide); usage of deleted keys does not.
--
-- The data is hourly, so steps are whole hours.  Rows start at the hour
-- (UTC) that contains from_ts and follow each other by step while they start
-- at or before to_ts; a row sums the hours in [bucket, bucket + step) that
-- start at or before to_ts.  Every step has a row, zeros included.
-- ---------------------------------------------------------------------------
CREATE FUNCTION apikey_usage_series(from_ts timestamptz, to_ts timestamptz DEFAULT now(),
                                    key_id text DEFAULT NULL, org_id text DEFAULT NULL,
                                    step interval DEFAULT '1 hour')
    RETURNS TABLE(bucket timestamptz, requests bigint, denied bigint, responses bigint,
                  avg_response_ms double precision)
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f_from  timestamptz := $1;
    f_to    timestamptz := coalesce($2, now());
    f_key   text := $3;
    f_org   text := $4;
    f_step  interval := $5;
    secs    numeric;
    t0      timestamptz;
    n       numeric;
BEGIN
    IF f_from IS NULL THEN
        RAISE EXCEPTION 'from_ts must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass the start of the series, e.g. now() - interval ''24 hours''.';
    END IF;
    IF f_step IS NULL THEN
        RAISE EXCEPTION 'step must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass a whole number of hours, e.g. ''1 hour'' or ''1 day'', or leave it out for ''1 hour''.';
    END IF;
    IF NOT isfinite(f_from) OR NOT isfinite(f_to) THEN
        RAISE EXCEPTION 'from_ts and to_ts must be finite'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass actual times, e.g. from_ts => now() - interval ''7 days'', to_ts => now().';
    END IF;
    IF f_key IS NOT NULL THEN
        PERFORM @extschema@.apikey_require_text(f_key, 'key_id', 64);
    END IF;
    IF f_org IS NOT NULL THEN
        PERFORM @extschema@.apikey_require_text(f_org, 'org_id', 200);
    END IF;

    -- Months have no fixed length; a day counts as 24 hours (UTC has no DST).
    secs := extract(epoch FROM f_step);
    IF extract(year FROM f_step) <> 0 OR extract(month FROM f_step) <> 0
       OR secs <= 0 OR secs % 3600 <> 0 THEN
        RAISE EXCEPTION 'step must be a positive whole number of hours, not "%"', f_step
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Usage is counted per hour, so a series can only add up whole hours.',
                  HINT = 'Pass a step like ''1 hour'', ''6 hours'', ''1 day'' or ''7 days'' (a day is 24 hours).';
    END IF;
    IF f_from > f_to THEN
        RAISE EXCEPTION 'from_ts (%) is after to_ts (%)', f_from, f_to
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass a from_ts at or before to_ts (which defaults to now()).';
    END IF;

    t0 := timezone('UTC', date_trunc('hour', timezone('UTC', f_from)));
    n := floor(extract(epoch FROM f_to - t0) / secs) + 1;
    IF n > 10000 THEN
        RAISE EXCEPTION 'the series would have % steps, more than 10000', n
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass a larger step or a shorter range from from_ts to to_ts.';
    END IF;

    RETURN QUERY
    WITH hourly AS (
        SELECT u.bucket AS h, u.requests, u.denied, u.responses, u.response_ms
          FROM @extschema@.apikey_usage u
          JOIN @extschema@.apikey_keys k ON k.key_id = u.key_id
         WHERE u.bucket >= t0 AND u.bucket <= f_to
           AND (f_key IS NULL OR u.key_id = f_key)
           AND (f_org IS NULL OR k.org_id = f_org)
        UNION ALL   -- not folded yet: the usage log and shared memory
        SELECT p.bucket, p.requests, p.denied, p.responses, p.response_ms
          FROM @extschema@.apikey_pending_usage() p
          JOIN @extschema@.apikey_keys k ON k.key_id = p.key_id
         WHERE p.bucket >= t0 AND p.bucket <= f_to
           AND (f_key IS NULL OR p.key_id = f_key)
           AND (f_org IS NULL OR k.org_id = f_org)
    ), per_step AS (
        SELECT floor(extract(epoch FROM x.h - t0) / secs)::bigint AS step_no,
               sum(x.requests) AS requests, sum(x.denied) AS denied,
               sum(x.responses) AS responses, sum(x.response_ms) AS response_ms
          FROM hourly x
         GROUP BY 1
    )
    SELECT t0 + '1 second'::interval * (s.i * secs)::float8,
           coalesce(d.requests, 0)::bigint,
           coalesce(d.denied, 0)::bigint,
           coalesce(d.responses, 0)::bigint,
           d.response_ms / nullif(d.responses, 0)::float8
      FROM generate_series(0::bigint, n::bigint - 1) AS s(i)
      LEFT JOIN per_step d ON d.step_no = s.i
     ORDER BY s.i;
END
$$;

-- ---------------------------------------------------------------------------
-- apikey_metrics: numbers for monitoring, one row per series (name, value,
-- labels): verifications by result code since start, keys and clients
-- tracked in memory and what that takes against the bounds, counts that
-- found no room, seconds since each database's last flush, fold and sweep.
-- Server-wide aggregates and database names only -- no key, organization or
-- client address -- so the predefined role pg_monitor may read it without
-- being able to read any tenant's data.
-- ---------------------------------------------------------------------------
CREATE FUNCTION apikey_metrics_internal(OUT name text, OUT value double precision, OUT labels jsonb)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'apikey_metrics_internal'
    LANGUAGE C VOLATILE
    SET search_path = pg_catalog, pg_temp;

CREATE VIEW apikey_metrics WITH (security_invoker = true) AS
SELECT m.name, m.value, m.labels FROM @extschema@.apikey_metrics_internal() m;
COMMENT ON VIEW apikey_metrics IS 'Monitoring series (name, value, labels) without tenant data; readable by pg_monitor';

-- ---------------------------------------------------------------------------
-- Privileges.  The management functions are for the roles a DBA grants
-- them to, like apikey_create; they also need the table privileges they
-- use.  Monitoring: pg_monitor, or any role granted these two.
-- ---------------------------------------------------------------------------
REVOKE ALL ON FUNCTION apikey_keys_of(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION apikey_update(text, text, text[], timestamptz, integer, cidr[], jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION apikey_usage_series(timestamptz, timestamptz, text, text, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION apikey_metrics_internal() FROM PUBLIC;
REVOKE ALL ON apikey_metrics FROM PUBLIC;
GRANT EXECUTE ON FUNCTION apikey_metrics_internal() TO pg_monitor;
GRANT SELECT ON apikey_metrics TO pg_monitor;
