-- Benchmark data: :nkeys keys over 1000 orgs, their tokens kept in a
-- bench-only table, and the hand-written baseline of row 5.
\set ON_ERROR_STOP on
CREATE EXTENSION apikey;
CREATE EXTENSION pgcrypto;
CREATE TABLE bench_tokens (id int PRIMARY KEY, token text NOT NULL);

-- Keys are issued in batches with the extension's own token minting and
-- stored like apikey_create stores them (the audit trigger records each).
CREATE PROCEDURE bench_issue(n int) LANGUAGE plpgsql AS $$
DECLARE
    lo int := 1;
BEGIN
    WHILE lo <= n LOOP
        WITH m AS MATERIALIZED (
            SELECT g, apikey_new_token('live') AS t
              FROM generate_series(lo, least(lo + 49999, n)) g),
        k AS (
            INSERT INTO apikey_keys (key_id, org_id, name, hint, hash, scopes, environment,
                                     rate_limit, rate_window)
            SELECT (t).key_id, 'org' || (g % 1000), 'bench key ' || g, (t).hint, (t).hash,
                   '{documents:read,documents:create}', 'live', 1000000000, '1 hour'
              FROM m)
        INSERT INTO bench_tokens SELECT g, (t).token FROM m;
        COMMIT;
        lo := lo + 50000;
    END LOOP;
END $$;
CALL bench_issue(:nkeys);

-- Row 5's baseline: a typical hand-written key table and check.
CREATE TABLE bench_handwritten_keys (
    id serial PRIMARY KEY,
    org_id text NOT NULL,
    key_hash bytea NOT NULL UNIQUE,
    scopes jsonb NOT NULL,
    usage_count bigint NOT NULL DEFAULT 0,
    last_used_at timestamptz
);
INSERT INTO bench_handwritten_keys (org_id, key_hash, scopes)
SELECT 'org' || (t.id % 1000), digest(t.token, 'sha256'), '["documents:read", "documents:create"]'
  FROM bench_tokens t;
CREATE FUNCTION bench_handwritten_verify(token text, scope text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    k bench_handwritten_keys;
BEGIN
    SELECT * INTO k FROM bench_handwritten_keys WHERE key_hash = digest(token, 'sha256');
    IF NOT FOUND OR NOT (k.scopes ? scope) THEN
        RETURN false;
    END IF;
    UPDATE bench_handwritten_keys SET usage_count = usage_count + 1, last_used_at = now()
     WHERE id = k.id;
    RETURN true;
END $$;

VACUUM ANALYZE;

-- Row 6c's table: a key-sized row with a random unique hash.
CREATE TABLE bench_commit_floor (
    id bigserial PRIMARY KEY,
    org_id text NOT NULL,
    hash bytea NOT NULL UNIQUE
);
