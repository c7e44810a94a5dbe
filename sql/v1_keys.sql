--
-- v1_keys: the legacy 1.0 API (keys owned by users).
--
-- Pins down: the 1.0 catalog (user_id, no org_id) and function signatures;
-- apikey_generate / apikey_verify / apikey_deactivate; every 1.0 result code
-- (VALID, NOT_FOUND, REVOKED, EXPIRED, FORBIDDEN, RATE_LIMITED); IP
-- allowlists; the per-hour rate limit (failed verifications use no quota,
-- 0 = unlimited); usage counting through apikey_flush(); and that only the
-- SHA-256 of a token is stored.
--
-- Random values (tokens, key_ids, hashes, times) are captured with \gset and
-- only booleans, codes and counts are printed.
--
CREATE EXTENSION apikey VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'apikey';

--
-- The 1.0 catalog: keys belong to a user; there is no org_id, no scopes and
-- no audit trail.
--
SELECT column_name, data_type, is_nullable
  FROM information_schema.columns
 WHERE table_schema = current_schema() AND table_name = 'apikey_keys'
 ORDER BY ordinal_position;
SELECT EXISTS (SELECT FROM information_schema.columns
                WHERE table_name = 'apikey_keys' AND column_name = 'user_id') AS has_user_id,
       EXISTS (SELECT FROM information_schema.columns
                WHERE table_name = 'apikey_keys' AND column_name = 'org_id') AS has_org_id,
       to_regclass('apikey_events') IS NULL AS no_events_table;

-- The contract's 1.0 functions, with its argument names, defaults and results.
SELECT p.proname, pg_get_function_arguments(p.oid) AS arguments,
       pg_get_function_result(p.oid) AS result
  FROM pg_proc p
 WHERE p.proname IN ('apikey_generate', 'apikey_verify', 'apikey_deactivate')
   AND p.pronamespace = current_schema()::regnamespace
 ORDER BY 1;
-- ... and none of the 2.0 API.
SELECT count(*) AS v2_functions
  FROM pg_proc
 WHERE proname IN ('apikey_create', 'apikey_revoke', 'apikey_revoke_org', 'apikey_rotate');

--
-- apikey_generate returns a key_id and the token (the only time the token is
-- ever shown), in the same format that 2.0 issues.
--
SELECT key_id AS k1, key AS t1 FROM apikey_generate('user-1', 'first key') \gset
SELECT :'k1' ~ '^key_[0-9A-Za-z]{16}$' AS key_id_shape,
       :'t1' ~ '^ak_live_[0-9A-Za-z]{38}$' AS token_shape;

-- What is stored: the owner, the defaults (live, 1000 per hour), a hint that
-- is a prefix of the token, and the SHA-256 of the token, never the token.
SELECT user_id, name, environment, is_active, expires_at IS NULL AS no_expiry,
       rate_limit, rate_window, allowed_ips IS NULL AS any_ip, usage_count,
       hint ~ '^ak_live_[0-9A-Za-z]{4}$' AS hint_shape,
       starts_with(:'t1', hint) AS hint_is_prefix,
       hash = sha256(convert_to(:'t1', 'UTF8')) AS hash_is_sha256,
       length(hash) AS hash_bytes
  FROM apikey_keys WHERE key_id = :'k1';
-- The token (or its secret body) appears in no column of any stored row.
SELECT count(*) AS rows_with_token
  FROM apikey_keys k
 WHERE k::text LIKE '%' || :'t1' || '%'
    OR k::text LIKE '%' || substr(:'t1', 9, 32) || '%';

-- A valid key answers with its key_id and the user who owns it.
SELECT valid, code, key_id = :'k1' AS same_key_id, user_id
  FROM apikey_verify(:'t1');
-- An HTTP Authorization value is accepted as it comes.
SELECT valid, code FROM apikey_verify('Bearer ' || :'t1');

-- Another environment is carried in the token and stored.
SELECT key_id AS kt, key AS tt FROM apikey_generate('user-1', 'test key', 'test') \gset
SELECT :'tt' ~ '^ak_test_[0-9A-Za-z]{38}$' AS test_token_shape,
       (SELECT environment FROM apikey_keys WHERE key_id = :'kt') AS environment;
SELECT valid, code, user_id FROM apikey_verify(:'tt');

-- A key with a future expiry works until then.
SELECT key_id AS kf, key AS tf
  FROM apikey_generate('user-2', 'expires tomorrow', expires_at => now() + interval '1 day') \gset
SELECT valid, code, user_id FROM apikey_verify(:'tf');

--
-- apikey_deactivate: true when it deactivates, false when there was nothing
-- to deactivate.  A deactivated key is REVOKED: key_id known, no user_id.
--
SELECT apikey_deactivate(:'k1') AS first_call;
SELECT apikey_deactivate(:'k1') AS second_call;
SELECT is_active FROM apikey_keys WHERE key_id = :'k1';
SELECT valid, code, key_id = :'k1' AS same_key_id, user_id IS NULL AS no_user_id
  FROM apikey_verify(:'t1');
-- Other keys of the same user are unaffected.
SELECT valid, code FROM apikey_verify(:'tt');
-- Verification reads the current row: reactivating the key makes it work again.
UPDATE apikey_keys SET is_active = true WHERE key_id = :'k1';
SELECT valid, code FROM apikey_verify(:'t1');
UPDATE apikey_keys SET is_active = false WHERE key_id = :'k1';
SELECT valid, code FROM apikey_verify(:'t1');

--
-- NOT_FOUND: a well-formed token (correct checksum) that no row records.
--
SELECT key_id AS kd, key AS td FROM apikey_generate('user-3', 'deleted') \gset
DELETE FROM apikey_keys WHERE key_id = :'kd';
SELECT valid, code, key_id IS NULL AS no_key_id, user_id IS NULL AS no_user_id
  FROM apikey_verify(:'td');

--
-- EXPIRED: expires_at in the past (set directly; apikey_generate refuses a
-- past expiry).  The key_id is reported, the user_id is not.
--
SELECT key_id AS ke, key AS te FROM apikey_generate('user-4', 'expiring') \gset
UPDATE apikey_keys SET expires_at = now() - interval '1 minute' WHERE key_id = :'ke';
SELECT valid, code, key_id = :'ke' AS same_key_id, user_id IS NULL AS no_user_id
  FROM apikey_verify(:'te');

--
-- IP allowlist: with allowed_ips set, client_ip must lie inside one of the
-- networks; a missing client_ip or one of the other address family is
-- FORBIDDEN.  An IPv4-mapped IPv6 address (::ffff:10.1.2.3, what a
-- dual-stack listener reports for an IPv4 client) is the IPv4 address.
--
SELECT key_id AS ki, key AS ti FROM apikey_generate('user-5', 'office only') \gset
UPDATE apikey_keys SET allowed_ips = '{10.0.0.0/8}' WHERE key_id = :'ki';
SELECT ip, v.valid, v.code, v.key_id = :'ki' AS same_key_id, v.user_id
  FROM (VALUES ('10.1.2.3'::inet), ('10.255.255.255'), ('11.0.0.1'),
               ('192.168.0.1'), ('::1'), ('::ffff:10.1.2.3'), (NULL)) AS c(ip),
       LATERAL apikey_verify(:'ti', c.ip) v;
-- Several networks, IPv4 and IPv6 mixed: any one of them admits.
UPDATE apikey_keys SET allowed_ips = '{192.0.2.7/32,2001:db8::/32}' WHERE key_id = :'ki';
SELECT ip, v.valid, v.code
  FROM (VALUES ('192.0.2.7'::inet), ('192.0.2.8'), ('2001:db8::1'), ('2001:db9::1')) AS c(ip),
       LATERAL apikey_verify(:'ti', c.ip) v;
-- An allowlisted key with a client_ip passes the other checks as usual:
-- deactivation still wins.
SELECT apikey_deactivate(:'ki');
SELECT valid, code FROM apikey_verify(:'ti', '192.0.2.7');

--
-- Rate limit per hour.  A failed verification (here FORBIDDEN) uses no
-- quota: five forbidden calls first, then the full quota of 3 is still
-- available, then RATE_LIMITED (with the key_id, without the user_id).
--
SELECT key_id AS kr, key AS tr
  FROM apikey_generate('user-6', 'three per hour', rate_limit_per_hour => 3) \gset
SELECT rate_limit, rate_window FROM apikey_keys WHERE key_id = :'kr';
UPDATE apikey_keys SET allowed_ips = '{10.0.0.0/8}' WHERE key_id = :'kr';
-- (Each row passes its own client address, so each row is a separate call.)
SELECT i, v.valid, v.code FROM generate_series(1, 5) i,
       LATERAL apikey_verify(:'tr', '192.168.1.0'::inet + i) v;
SELECT i, v.valid, v.code, v.key_id = :'kr' AS same_key_id, v.user_id
  FROM generate_series(1, 5) i,
       LATERAL apikey_verify(:'tr', '10.0.0.0'::inet + i) v;
-- A check that fails before the rate limit still reports its own code.
SELECT valid, code FROM apikey_verify(:'tr', '192.168.1.1');

-- rate_limit_per_hour => 0 means unlimited: more calls than the default
-- limit of 1000 all pass.
SELECT key_id AS ku, key AS tu
  FROM apikey_generate('user-7', 'unlimited', rate_limit_per_hour => 0) \gset
SELECT rate_limit FROM apikey_keys WHERE key_id = :'ku';
SELECT count(*) AS calls, count(*) FILTER (WHERE v.code = 'VALID') AS valid
  FROM generate_series(1, 1100) i, LATERAL apikey_verify(:'tu', '10.0.0.0'::inet + i) v;

--
-- Usage counting.  Verification writes no table row; the counts wait in
-- shared memory (apikey_stats) until apikey_flush() writes them into
-- apikey_keys.usage_count / last_used_at and one hourly apikey_usage bucket
-- (requests = successful verifications, denied = failed ones of that key).
--
SELECT key_id AS kc, key AS tc FROM apikey_generate('user-8', 'counted') \gset
SELECT count(*) AS valid
  FROM generate_series(1, 4) i, LATERAL apikey_verify(:'tc', '10.0.0.0'::inet + i) v
 WHERE v.valid;
UPDATE apikey_keys SET allowed_ips = '{10.0.0.0/8}' WHERE key_id = :'kc';
SELECT count(*) AS forbidden
  FROM generate_series(1, 2) i, LATERAL apikey_verify(:'tc', '192.168.0.0'::inet + i) v
 WHERE v.code = 'FORBIDDEN';
-- Nothing written yet ...
SELECT usage_count, last_used_at IS NULL AS never_used FROM apikey_keys WHERE key_id = :'kc';
SELECT count(*) AS usage_rows FROM apikey_usage WHERE key_id = :'kc';
-- ... the counts are pending in shared memory.
SELECT user_id, name, requests, denied
  FROM apikey_stats WHERE key_id = :'kc';
SELECT apikey_flush() > 0 AS flushed_something;
SELECT usage_count, last_used_at IS NOT NULL AS used,
       last_used_at <= now() AS not_in_future
  FROM apikey_keys WHERE key_id = :'kc';
SELECT count(*) AS buckets, sum(requests) AS requests, sum(denied) AS denied,
       bool_and(bucket = date_trunc('hour', bucket)) AS hour_aligned
  FROM apikey_usage WHERE key_id = :'kc';
-- After the flush nothing is pending for the key.
SELECT coalesce(sum(requests), 0) AS pending_requests, coalesce(sum(denied), 0) AS pending_denied
  FROM apikey_stats WHERE key_id = :'kc';
-- A second flush with nothing new leaves the totals as they are.
SELECT apikey_flush() >= 0 AS flushed;
SELECT usage_count FROM apikey_keys WHERE key_id = :'kc';
SELECT sum(requests) AS requests, sum(denied) AS denied FROM apikey_usage WHERE key_id = :'kc';
-- The rate-limited key: 3 admitted, 5 + 1 forbidden and 2 rate limited denied.
SELECT usage_count FROM apikey_keys WHERE key_id = :'kr';
SELECT sum(requests) AS requests, sum(denied) AS denied FROM apikey_usage WHERE key_id = :'kr';
-- The unlimited key counted every call.
SELECT usage_count FROM apikey_keys WHERE key_id = :'ku';

--
-- Hashes and key_ids are unique across everything generated here, and no
-- stored row holds any of the tokens.
--
SELECT count(*) = count(DISTINCT hash) AS hashes_unique,
       count(*) = count(DISTINCT key_id) AS key_ids_unique,
       bool_and(length(hash) = 32) AS all_sha256_sized
  FROM apikey_keys;
SELECT count(*) AS rows_with_a_token
  FROM apikey_keys k
 WHERE k::text LIKE ANY (ARRAY['%' || :'t1' || '%', '%' || :'tt' || '%',
                               '%' || :'tf' || '%', '%' || :'te' || '%',
                               '%' || :'ti' || '%', '%' || :'tr' || '%',
                               '%' || :'tu' || '%', '%' || :'tc' || '%']);

DROP EXTENSION apikey CASCADE;
