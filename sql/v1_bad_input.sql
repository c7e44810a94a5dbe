--
-- v1_bad_input: bad arguments to every 1.0 function.
--
-- Pins down: apikey_generate and apikey_deactivate reject NULL, empty,
-- blank, oversized and malformed arguments with a clear error (message and
-- hint name the argument) and write nothing; apikey_verify never raises for
-- a bad token (it answers MALFORMED) and the only error it gives is
-- PostgreSQL's own for an argument that is not an inet; direct INSERTs that
-- break the table's rules fail with errors that say which rule.
--
CREATE EXTENSION apikey VERSION '1.0';

-- Errors with their DETAIL and HINT, but without PL/pgSQL CONTEXT lines
-- (which name internal line numbers).
\set VERBOSITY default
\set SHOW_CONTEXT never

-- Some keys that must survive everything below unchanged.
SELECT key_id AS k1, key AS t1 FROM apikey_generate('user-1', 'good key') \gset
SELECT count(*) AS keys_before FROM apikey_keys \gset
SELECT count(*) AS usage_before FROM apikey_usage \gset
SELECT md5(string_agg(k::text, ',' ORDER BY key_id)) AS rows_before FROM apikey_keys k \gset

--
-- apikey_generate: user_id
--
SELECT * FROM apikey_generate(NULL, 'name');
SELECT * FROM apikey_generate('', 'name');
SELECT * FROM apikey_generate('   ', 'name');
-- Blank means any white space, not only spaces.  (If this ever succeeds, the
-- output shows only "t", never the token.)
SELECT key_id IS NOT NULL AS generated FROM apikey_generate(E'\t', 'name');
SELECT * FROM apikey_generate(repeat('u', 10000), 'name');
SELECT * FROM apikey_generate(repeat('u', 201), 'name');

--
-- apikey_generate: key_name
--
SELECT * FROM apikey_generate('user-1', NULL);
SELECT * FROM apikey_generate('user-1', '');
SELECT key_id IS NOT NULL AS generated FROM apikey_generate('user-1', E' \t\n ');
SELECT * FROM apikey_generate('user-1', repeat('n', 10000));
SELECT * FROM apikey_generate('user-1', repeat('n', 201));

--
-- apikey_generate: environment must match [a-z][a-z0-9]{0,15}
--
SELECT * FROM apikey_generate('user-1', 'name', 'Live');
SELECT * FROM apikey_generate('user-1', 'name', '1abc');
SELECT * FROM apikey_generate('user-1', 'name', '');
SELECT * FROM apikey_generate('user-1', 'name', 'a-b');
SELECT * FROM apikey_generate('user-1', 'name', 'a_b');
SELECT * FROM apikey_generate('user-1', 'name', 'live ');
SELECT * FROM apikey_generate('user-1', 'name', repeat('a', 17));
SELECT * FROM apikey_generate('user-1', 'name', NULL);

--
-- apikey_generate: rate_limit_per_hour must be 0 (unlimited) or more
--
SELECT * FROM apikey_generate('user-1', 'name', rate_limit_per_hour => -1);
SELECT * FROM apikey_generate('user-1', 'name', rate_limit_per_hour => NULL);

--
-- apikey_generate: expires_at must be in the future (or NULL)
--
SELECT * FROM apikey_generate('user-1', 'name', expires_at => '2001-02-03 04:05:06+00');
SELECT * FROM apikey_generate('user-1', 'name', expires_at => '-infinity');

-- None of that wrote a row.
SELECT count(*) = :keys_before AS no_key_written FROM apikey_keys;

-- A generate that fails inside a transaction leaves the transaction aborted
-- and, rolled back, nothing behind (no partial key).
BEGIN;
SELECT key_id IS NOT NULL AS generated FROM apikey_generate('user-tx', 'in tx');
SELECT * FROM apikey_generate('user-tx', 'bad', 'BAD');
ROLLBACK;
SELECT count(*) AS user_tx_keys FROM apikey_keys WHERE user_id = 'user-tx';

--
-- apikey_deactivate: NULL and empty key_ids are errors; an unknown one is
-- simply false (there was nothing to deactivate).
--
SELECT apikey_deactivate(NULL);
SELECT apikey_deactivate('');
SELECT apikey_deactivate(repeat('k', 10000));
SELECT apikey_deactivate('nonexistent') AS deactivated;
-- A key_id is matched exactly: not by prefix, pattern or case.
SELECT apikey_deactivate(left(:'k1', 10)) AS by_prefix,
       apikey_deactivate('%') AS by_pattern,
       apikey_deactivate(upper(:'k1')) AS by_case;
-- ... and so the good key still works.
SELECT valid, code FROM apikey_verify(:'t1');

--
-- apikey_verify never raises for a bad token: it answers MALFORMED, with
-- no key_id and no user_id.
--
SELECT label, v.valid, v.code, v.key_id IS NULL AS no_key_id, v.user_id IS NULL AS no_user_id
  FROM (VALUES ('NULL', NULL::text),
               ('empty', ''),
               ('blanks', E'  \t\n '),
               ('10 kB of x', repeat('x', 10000)),
               ('1 MB of x', repeat('x', 1024 * 1024)),
               ('10 kB after our prefix', 'ak_live_' || repeat('a', 10000)),
               ('our prefix, too short', 'ak_live_abc'),
               ('our prefix, bad checksum', left(:'t1', -1) || CASE WHEN right(:'t1', 1) = '0' THEN '1' ELSE '0' END),
               ('our prefix, bad environment', 'ak_LIVE_' || substr(:'t1', 9)),
               ('our prefix, non-base62 body', overlay(:'t1' PLACING '-' FROM 20 FOR 1)),
               ('token and trailing junk', :'t1' || 'x'),
               ('token twice', :'t1' || :'t1')) AS c(label, token),
       LATERAL apikey_verify(c.token) v;
-- The same with a client address (failures per address are counted, not
-- raised).
SELECT valid, code FROM apikey_verify(repeat('x', 10000), '192.0.2.1');
SELECT valid, code FROM apikey_verify(NULL, NULL);

-- A client_ip that is not an address is PostgreSQL's own input error for
-- type inet, raised before apikey_verify runs.
SELECT * FROM apikey_verify('ak_live_token', 'not-an-ip');
SELECT * FROM apikey_verify('ak_live_token', '');
SELECT * FROM apikey_verify('ak_live_token', '10.0.0.256');

-- Verification wrote nothing either, and the good key is untouched.
SELECT count(*) = :keys_before AS no_key_written FROM apikey_keys;
SELECT count(*) = :usage_before AS no_usage_written FROM apikey_usage;
SELECT md5(string_agg(k::text, ',' ORDER BY key_id)) = :'rows_before' AS rows_unchanged
  FROM apikey_keys k;

--
-- Direct DML is held to the same rules by the table's constraints.  (Terse:
-- a failing-row DETAIL would print the random created_at.)
--
\set VERBOSITY terse
-- the reference row, which is fine:
INSERT INTO apikey_keys (key_id, user_id, name, hint, hash, environment)
VALUES ('key_direct', 'user-d', 'direct', 'ak_live_abcd', sha256('direct'), 'live');
-- empty or missing user_id
INSERT INTO apikey_keys (key_id, user_id, name, hint, hash, environment)
VALUES ('key_direct1', '', 'direct', 'ak_live_abcd', sha256('direct1'), 'live');
INSERT INTO apikey_keys (key_id, user_id, name, hint, hash, environment)
VALUES ('key_direct1', NULL, 'direct', 'ak_live_abcd', sha256('direct1'), 'live');
-- empty name
INSERT INTO apikey_keys (key_id, user_id, name, hint, hash, environment)
VALUES ('key_direct1', 'user-d', '', 'ak_live_abcd', sha256('direct1'), 'live');
-- bad environment
INSERT INTO apikey_keys (key_id, user_id, name, hint, hash, environment)
VALUES ('key_direct1', 'user-d', 'direct', 'ak_live_abcd', sha256('direct1'), 'Prod');
-- a hash that is not 32 bytes (not a SHA-256)
INSERT INTO apikey_keys (key_id, user_id, name, hint, hash, environment)
VALUES ('key_direct1', 'user-d', 'direct', 'ak_live_abcd', '\x00ff', 'live');
INSERT INTO apikey_keys (key_id, user_id, name, hint, hash, environment)
VALUES ('key_direct1', 'user-d', 'direct', 'ak_live_abcd', convert_to('plain-token', 'UTF8'), 'live');
-- the same hash twice
INSERT INTO apikey_keys (key_id, user_id, name, hint, hash, environment)
VALUES ('key_direct1', 'user-d', 'direct', 'ak_live_abcd', sha256('direct'), 'live');
-- the same key_id twice
INSERT INTO apikey_keys (key_id, user_id, name, hint, hash, environment)
VALUES ('key_direct', 'user-d', 'direct', 'ak_live_abcd', sha256('direct1'), 'live');
-- a negative rate limit, or an allowlist with a NULL network
INSERT INTO apikey_keys (key_id, user_id, name, hint, hash, environment, rate_limit)
VALUES ('key_direct1', 'user-d', 'direct', 'ak_live_abcd', sha256('direct1'), 'live', -5);
INSERT INTO apikey_keys (key_id, user_id, name, hint, hash, environment, allowed_ips)
VALUES ('key_direct1', 'user-d', 'direct', 'ak_live_abcd', sha256('direct1'), 'live', '{10.0.0.0/8,NULL}');
-- an UPDATE is checked too
UPDATE apikey_keys SET user_id = '' WHERE key_id = 'key_direct';
UPDATE apikey_keys SET environment = 'a-b' WHERE key_id = 'key_direct';
\set VERBOSITY default

SELECT count(*) - :keys_before AS rows_added, count(*) FILTER (WHERE key_id = 'key_direct1') AS bad_rows
  FROM apikey_keys;
SELECT user_id, environment FROM apikey_keys WHERE key_id = 'key_direct';

DROP EXTENSION apikey CASCADE;
