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
