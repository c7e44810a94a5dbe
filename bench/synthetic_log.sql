-- bench/synthetic_log.sql — bench_log_flushes(flushes, per): write a
-- synthetic usage log into a database made by bench/setup.sql, for
-- bench/fold.sh and bench/fold_beside.sh (with apikey.workers = off, or a
-- worker would fold it).
SET client_min_messages = warning;
CREATE TABLE IF NOT EXISTS bench_key_ids AS
    SELECT row_number() OVER ()::int AS id, key_id FROM apikey_keys;
CREATE UNIQUE INDEX IF NOT EXISTS bench_key_ids_id ON bench_key_ids (id);
-- One flush's log row: per random keys (drawn with replacement), one
-- request each, in the current hour; the shape apikey_log_pending writes.
CREATE OR REPLACE PROCEDURE bench_log_flushes(flushes int, per int) LANGUAGE plpgsql AS $$
DECLARE
    nkeys int := (SELECT count(*) FROM bench_key_ids);
BEGIN
    FOR i IN 1..flushes LOOP
        INSERT INTO apikey_usage_log (entries, key_ids, buckets, requests, denied, responses,
                                      response_ms, client_errors, server_errors, last_used)
        SELECT count(*), array_agg(k.key_id), array_agg(date_trunc('hour', now())),
               array_agg(1::bigint), array_agg(0::bigint), array_agg(0::bigint),
               array_agg(0::float8), array_agg(0::bigint), array_agg(0::bigint), array_agg(now())
          FROM bench_key_ids k
         WHERE k.id IN (SELECT (random() * (nkeys - 1))::int + 1 FROM generate_series(1, per));
    END LOOP;
END $$;
