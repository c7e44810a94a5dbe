--
-- token_format: the token format that versions 1.0 and 2.0 share, as seen
-- through the 2.0 API.
--
-- Pins down: the shape {prefix}_{environment}_{32 base62 body}{6 base62
-- checksum}; that any single changed character is caught by the checksum
-- (MALFORMED) without touching the table; size limits; the Bearer form;
-- what is stored (SHA-256 of the token, a hint, never the token); that
-- tokens, key_ids and hashes are unique; that tokens without our prefix
-- (imported keys, or keys issued under an earlier prefix) are looked up by
-- hash; and the apikey.token_prefix setting.
--
-- Random values (tokens, key_ids, hashes) are captured with \gset and only
-- booleans, codes and counts are printed.
--
CREATE EXTENSION apikey;
\set VERBOSITY default

SELECT key_id AS k, token AS t FROM apikey_create('org-tf', 'format') \gset

--
-- Shape: ak_live_ + 38 base62 characters (32 body + 6 checksum) by default;
-- the environment is part of the token.
--
SELECT :'t' ~ '^ak_live_[0-9A-Za-z]{38}$' AS default_shape,
       length(:'t') AS token_length,
       :'k' ~ '^key_[0-9A-Za-z]{16}$' AS key_id_shape;
SELECT key_id AS k_test, token AS t_test
  FROM apikey_create('org-tf', 'test env', environment => 'test') \gset
SELECT key_id AS k_stg, token AS t_stg
  FROM apikey_create('org-tf', 'staging env', environment => 'staging2') \gset
SELECT :'t_test' ~ '^ak_test_[0-9A-Za-z]{38}$' AS test_shape,
       :'t_stg' ~ '^ak_staging2_[0-9A-Za-z]{38}$' AS staging2_shape;
SELECT (apikey_verify(:'t_test')).code AS test_code,
       (apikey_verify(:'t_test')).environment AS test_environment,
       (apikey_verify(:'t_stg')).environment AS staging2_environment;

-- The true token is VALID.
SELECT (v).valid, (v).code, (v).key_id = :'k' AS same_key_id, (v).org_id
  FROM (SELECT apikey_verify(:'t') AS v) s;

--
-- Checksum: changing any single character of the environment, the body or
-- the checksum gives MALFORMED.  Changing the prefix or its "_" makes the
-- token foreign (not our prefix): it is then looked up by hash and not
-- found.  Every position is tried, with a different base62 character.
--
SELECT CASE WHEN i <= 3 THEN '1 prefix "ak_"'
            WHEN i <= 8 THEN '2 environment "live_"'
            WHEN i <= 40 THEN '3 body'
            ELSE '4 checksum' END AS part,
       count(*) AS variants,
       string_agg(DISTINCT (apikey_verify(v)).code, ',') AS codes
  FROM (SELECT i, overlay(:'t' PLACING
                          CASE WHEN substr(:'t', i, 1) = 'A' THEN 'B' ELSE 'A' END
                          FROM i FOR 1) AS v
          FROM generate_series(1, length(:'t')) i) s
 GROUP BY 1 ORDER BY 1;
-- Lower/upper case is significant, and so is every digit.
SELECT count(*) AS variants,
       count(*) FILTER (WHERE (apikey_verify(v)).code = 'MALFORMED') AS malformed
  FROM (SELECT overlay(:'t' PLACING
                       translate(substr(:'t', i, 1),
                                 '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz',
                                 '1234567890abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ')
                       FROM i FOR 1) AS v
          FROM generate_series(9, length(:'t')) i) s;
-- Dropping, adding or swapping characters is caught as well.
SELECT label, (apikey_verify(v)).code
  FROM (VALUES ('last character dropped', left(:'t', -1)),
               ('first body character dropped', 'ak_live_' || substr(:'t', 10)),
               ('character appended', :'t' || 'A'),
               ('body character inserted', 'ak_live_A' || substr(:'t', 9)),
               ('checksum only', 'ak_live_' || right(:'t', 6)),
               ('body only', left(:'t', -6)),
               ('checksum of another token', left(:'t', -6) || right(:'t_test', 6)))
       AS c(label, v);
-- Two adjacent different body characters swapped.
SELECT (apikey_verify(overlay(:'t' PLACING substr(:'t', i + 1, 1) || substr(:'t', i, 1)
                              FROM i FOR 2))).code AS swapped
  FROM (SELECT min(i) AS i FROM generate_series(9, 39) i
         WHERE substr(:'t', i, 1) <> substr(:'t', i + 1, 1)) s;

--
-- A wrong checksum is judged from the text alone: the key table's hash index
-- is not even read.  (pg_stat_get_xact_numscans counts this transaction's
-- scans of the index.)
--
BEGIN;
SELECT pg_stat_get_xact_numscans('apikey_keys_hash_key'::regclass) AS scans_before \gset
SELECT (apikey_verify(left(:'t', -1) || CASE WHEN right(:'t', 1) = 'A' THEN 'B' ELSE 'A' END)).code
       AS bad_checksum,
       (apikey_verify('ak_live_short')).code AS bad_shape,
       (apikey_verify('')).code AS empty;
SELECT pg_stat_get_xact_numscans('apikey_keys_hash_key'::regclass) - :scans_before AS index_scans;
-- ... whereas a well-formed token is looked up (once).
SELECT (apikey_verify(:'t')).code AS true_token;
SELECT pg_stat_get_xact_numscans('apikey_keys_hash_key'::regclass) - :scans_before AS index_scans;
COMMIT;

-- A well-formed token with a correct checksum that no row records is
-- NOT_FOUND (not MALFORMED): here a key created, then deleted.
SELECT key_id AS k_gone, token AS t_gone FROM apikey_create('org-tf', 'gone') \gset
DELETE FROM apikey_keys WHERE key_id = :'k_gone';
SELECT (v).code, (v).key_id IS NULL AS no_key_id
  FROM (SELECT apikey_verify(:'t_gone') AS v) s;

--
-- Sizes: NULL, empty and blank tokens are MALFORMED, as is anything over
-- 255 bytes, of any prefix, however large: never an error.
--
SELECT label, (v).valid, (v).code, (v).key_id IS NULL AS no_key_id
  FROM (VALUES ('NULL', NULL::text),
               ('empty', ''),
               ('blanks', E' \t\r\n '),
               ('ours, 256 bytes', 'ak_live_' || repeat('a', 248)),
               ('foreign, 256 bytes', repeat('y', 256)),
               ('foreign, 128 two-byte characters', repeat(U&'\00E9', 128)),
               ('foreign, 255 bytes (allowed: not found)', repeat('y', 255)),
               ('foreign, 127 two-byte characters and 1 (allowed)', repeat(U&'\00E9', 127) || 'y'),
               ('1 MB', repeat('x', 1024 * 1024)),
               ('1 MB after our prefix', 'ak_live_' || repeat('x', 1024 * 1024)),
               ('1 MB after Bearer', 'Bearer ' || repeat('x', 1024 * 1024))) AS c(label, tok),
       LATERAL (SELECT apikey_verify(c.tok) AS v) s;

--
-- The HTTP Authorization form: "Bearer <token>", scheme in any case,
-- surrounding blanks (spaces, tabs, line ends) ignored.
--
SELECT label, (apikey_verify(h)).code
  FROM (VALUES ('Bearer', 'Bearer ' || :'t'),
               ('lower case, extra blanks', 'bearer  ' || :'t' || '  '),
               ('upper case, tab', E'BEARER\t' || :'t'),
               ('mixed case, leading blanks', '  BeArEr ' || :'t'),
               ('line end after', 'Bearer ' || :'t' || E'\r\n'),
               ('bare token with blanks', E' \t' || :'t' || ' ')) AS c(label, h);
-- "Bearer" with no token carries no credential: MALFORMED, like an empty
-- token.  Other schemes, a missing blank, or Bearer twice are not unwrapped.
SELECT label, (apikey_verify(h)).code
  FROM (VALUES ('Bearer alone', 'Bearer'),
               ('Bearer and blanks', '  Bearer   '),
               ('Basic scheme', 'Basic ' || :'t'),
               ('no blank after Bearer', 'Bearer' || :'t'),
               ('Bearer twice', 'Bearer Bearer ' || :'t'),
               ('blank inside the token', left(:'t', 20) || ' ' || substr(:'t', 21))) AS c(label, h);

--
-- What is stored: the SHA-256 of the token's bytes (32 bytes), which
-- apikey_token_hash computes too, and a hint: the prefix, environment and
-- first 4 body characters, a prefix of the token.
--
SELECT hash = sha256(convert_to(:'t', 'UTF8')) AS hash_is_sha256,
       length(hash) AS hash_bytes,
       hash = apikey_token_hash(:'t') AS same_as_apikey_token_hash,
       hint = left(:'t', 12) AS hint_is_first_12,
       starts_with(:'t', hint) AS hint_is_prefix,
       hint ~ '^ak_live_[0-9A-Za-z]{4}$' AS hint_shape
  FROM apikey_keys WHERE key_id = :'k';
SELECT hint ~ '^ak_staging2_[0-9A-Za-z]{4}$' AS staging2_hint
  FROM apikey_keys WHERE key_id = :'k_stg';
-- Neither the token nor its secret part (after the hint) appears in any
-- column of any key or event row.
SELECT count(*) AS key_rows_with_token
  FROM apikey_keys k
 WHERE k::text LIKE '%' || :'t' || '%'
    OR k::text LIKE '%' || substr(:'t', 13) || '%'
    OR k::text LIKE '%' || :'t_test' || '%'
    OR k::text LIKE '%' || :'t_stg' || '%';
SELECT count(*) AS event_rows, count(*) FILTER (WHERE e::text LIKE '%' || :'t' || '%'
                                                   OR e::text LIKE '%' || substr(:'t', 13) || '%'
                                                   OR e::text LIKE '%' || :'t_gone' || '%')
       AS event_rows_with_token
  FROM apikey_events e;

--
-- 200 new keys: distinct tokens, key_ids and hashes, every one verifies,
-- and the bodies use the whole base62 alphabet (not hex, not a subset).
--
CREATE TEMP TABLE many AS
SELECT c.key_id, c.token
  FROM generate_series(1, 200) g, LATERAL apikey_create('org-many', 'key ' || g) c;
SELECT count(*) AS keys, count(DISTINCT key_id) AS key_ids, count(DISTINCT token) AS tokens,
       bool_and(token ~ '^ak_live_[0-9A-Za-z]{38}$') AS all_shaped,
       bool_and(key_id ~ '^key_[0-9A-Za-z]{16}$') AS all_key_ids_shaped
  FROM many;
SELECT count(*) AS rows, count(DISTINCT hash) AS hashes
  FROM apikey_keys WHERE org_id = 'org-many';
SELECT count(*) AS valid
  FROM many m, LATERAL (SELECT apikey_verify(m.token) AS v) s
 WHERE (s.v).valid AND (s.v).key_id = m.key_id;
SELECT count(DISTINCT ch) AS distinct_body_characters
  FROM many, LATERAL regexp_split_to_table(substr(token, 9, 32), '') ch;
DROP TABLE many;

--
-- Foreign tokens: a key imported from another system is stored by the
-- SHA-256 of its token (apikey_token_hash) and found by hash, without a
-- checksum; a token one character off is simply not found.
--
SELECT apikey_token_hash('legacy-token-123') = sha256('legacy-token-123'::bytea) AS token_hash_is_sha256;
INSERT INTO apikey_keys (key_id, org_id, name, hint, hash, environment, is_active)
VALUES ('key_legacy123', 'org-legacy', 'imported', 'legacy-t',
        apikey_token_hash('legacy-token-123'), 'live', true);
SELECT label, (v).valid, (v).code, (v).key_id, (v).org_id, (v).name
  FROM (VALUES ('imported token', 'legacy-token-123'),
               ('one character off', 'legacy-token-124'),
               ('as Bearer', 'Bearer legacy-token-123'),
               ('different case', 'LEGACY-TOKEN-123')) AS c(label, tok),
       LATERAL (SELECT apikey_verify(c.tok) AS v) s;
-- The 255-byte limit holds for imported tokens too: a stored 255-byte token
-- verifies (also inside a Bearer header with blanks); apikey_token_hash
-- refuses a longer one, and a 256-byte token stored by its bare SHA-256
-- can never verify.
INSERT INTO apikey_keys (key_id, org_id, name, hint, hash, environment, is_active)
VALUES ('key_legacy255', 'org-legacy', '255 bytes', 'yyyyyyyy',
        apikey_token_hash(repeat('y', 255)), 'live', true);
SELECT apikey_token_hash(repeat('y', 256));
INSERT INTO apikey_keys (key_id, org_id, name, hint, hash, environment, is_active)
VALUES ('key_legacy256', 'org-legacy', '256 bytes', 'yyyyyyyy',
        sha256(convert_to(repeat('y', 256), 'UTF8')), 'live', true);
SELECT label, (v).code, (v).key_id
  FROM (VALUES ('255 bytes', repeat('y', 255)),
               ('255 bytes as Bearer', E'  Bearer \t' || repeat('y', 255) || '  '),
               ('256 bytes', repeat('y', 256))) AS c(label, tok),
       LATERAL (SELECT apikey_verify(c.tok) AS v) s;

--
-- apikey.token_prefix: after a change, tokens issued under the old prefix
-- are foreign but still VALID (looked up by hash); a damaged old token is
-- then NOT_FOUND rather than MALFORMED, because its checksum is no longer
-- checked.  New tokens carry the new prefix, which is now checked.
--
SET apikey.token_prefix = 'zz';
SHOW apikey.token_prefix;
SELECT (apikey_verify(:'t')).code AS old_prefix_token,
       (apikey_verify(left(:'t', -1) || CASE WHEN right(:'t', 1) = 'A' THEN 'B' ELSE 'A' END)).code
       AS damaged_old_prefix_token;
SELECT key_id AS k_zz, token AS t_zz FROM apikey_create('org-tf', 'zz key') \gset
SELECT :'t_zz' ~ '^zz_live_[0-9A-Za-z]{38}$' AS zz_shape,
       (SELECT hint ~ '^zz_live_[0-9A-Za-z]{4}$' FROM apikey_keys WHERE key_id = :'k_zz') AS zz_hint,
       (apikey_verify(:'t_zz')).code AS zz_token,
       (apikey_verify(left(:'t_zz', -1) || CASE WHEN right(:'t_zz', 1) = 'A' THEN 'B' ELSE 'A' END)).code
       AS damaged_zz_token;
RESET apikey.token_prefix;
SHOW apikey.token_prefix;
-- Back to ak: the zz token is foreign and still VALID, damaged ak tokens are
-- MALFORMED again.
SELECT (apikey_verify(:'t_zz')).code AS zz_token,
       (apikey_verify(:'t')).code AS ak_token,
       (apikey_verify(left(:'t', -1) || CASE WHEN right(:'t', 1) = 'A' THEN 'B' ELSE 'A' END)).code
       AS damaged_ak_token;

-- A prefix must match [a-z][a-z0-9]{0,15}; anything else is refused by SET
-- and leaves the setting as it was.
SET apikey.token_prefix = 'Bad';
SET apikey.token_prefix = '';
SET apikey.token_prefix = 'toolongprefix12345';
SET apikey.token_prefix = 'z_z';
SET apikey.token_prefix = '9z';
SHOW apikey.token_prefix;
-- 16 characters is the longest prefix allowed.
SET apikey.token_prefix = 'p23456789012345x';
SELECT token ~ '^p23456789012345x_live_[0-9A-Za-z]{38}$' AS long_prefix_shape,
       (apikey_verify(token)).code AS long_prefix_code
  FROM apikey_create('org-tf', 'long prefix');
RESET apikey.token_prefix;

-- Only a superuser may change the prefix (it decides which tokens must
-- carry a checksum).
CREATE ROLE apikey_token_format_user;
SET ROLE apikey_token_format_user;
SET apikey.token_prefix = 'zz';
SHOW apikey.token_prefix;
RESET ROLE;
DROP ROLE apikey_token_format_user;

DROP EXTENSION apikey CASCADE;
