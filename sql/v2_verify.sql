--
-- v2_verify: apikey_verify(token, required_scopes, client_ip) in 2.0.
--
-- Pins down every result code, the order in which the checks are made (when
-- a key fails several checks, the first one in the contract's order wins),
-- exactly which result columns each code fills, that failures do not use up
-- rate quota, that "Bearer <token>" is accepted, that a prepared statement
-- keeps working, and that verification writes nothing to any table.
--
-- Keys are made with apikey_create; states that take time to reach (expiry)
-- are set up by direct UPDATEs as superuser.  Tokens and key_ids are random:
-- they are captured with \gset and never printed.
--
CREATE EXTENSION apikey;
-- Rate windows are aligned to multiples of the window length; a 31-day
-- window makes it practically impossible for this test to straddle a window
-- boundary, so remaining counts are deterministic.
SET apikey.default_rate_window = '31d';

-- Which columns of an apikey_verification are filled (non-null), in column
-- order.  Printing this instead of the values keeps random data out of the
-- expected output while showing exactly what each code reveals.
CREATE FUNCTION v2v_filled(v apikey_verification) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT string_agg(key, ',') FROM json_each(row_to_json(v)) WHERE value::text <> 'null' $$;

-- ---------------------------------------------------------------------------
-- MALFORMED: no key is looked up, so key_id is NULL and only valid/code are
-- filled.
-- ---------------------------------------------------------------------------
SELECT key_id AS k_ok, token AS t_ok
  FROM apikey_create('acme', 'ok key', '{documents:read,documents:create}',
                     metadata => '{"team": "billing"}', rate_limit => 100) \gset

SELECT v.code, v2v_filled(v) FROM apikey_verify(NULL) v;
SELECT v.code, v2v_filled(v) FROM apikey_verify('') v;
SELECT v.code, v2v_filled(v) FROM apikey_verify('   ') v;
SELECT v.code, v2v_filled(v) FROM apikey_verify('Bearer ') v;
-- our prefix, but the wrong shape (too short, missing environment, bad env)
SELECT v.code, v2v_filled(v) FROM apikey_verify('ak_live_abc') v;
SELECT v.code, v2v_filled(v) FROM apikey_verify('ak_' || substr(:'t_ok', 9)) v;
SELECT v.code, v2v_filled(v) FROM apikey_verify(replace(:'t_ok', 'ak_live_', 'ak_LIVE_')) v;
-- our prefix and shape, one body character changed: the checksum catches it
SELECT v.code, v2v_filled(v)
  FROM apikey_verify(overlay(:'t_ok' PLACING
                             CASE WHEN substr(:'t_ok', 12, 1) = 'x' THEN 'y' ELSE 'x' END
                             FROM 12 FOR 1)) v;
-- a valid token with characters appended or removed
SELECT v.code, v2v_filled(v) FROM apikey_verify(:'t_ok' || 'a') v;
SELECT v.code, v2v_filled(v) FROM apikey_verify(left(:'t_ok', -1)) v;
-- more than 255 bytes with our prefix
SELECT v.code, v2v_filled(v) FROM apikey_verify('ak_live_' || repeat('a', 300)) v;

-- ---------------------------------------------------------------------------
-- NOT_FOUND: well formed, checksum right, but no such key: key_id NULL.
-- apikey_new_token mints a token without storing it.
-- ---------------------------------------------------------------------------
SELECT token AS t_unknown FROM apikey_new_token('live') \gset
SELECT v.code, v2v_filled(v) FROM apikey_verify(:'t_unknown') v;
-- a token without our prefix (imported from elsewhere) is looked up by hash
SELECT v.code, v2v_filled(v) FROM apikey_verify('sk_test_0123456789abcdef') v;

-- ---------------------------------------------------------------------------
-- VALID fills org_id, name, scopes, environment, metadata, the rate fields
-- (and expires_at, which this key does not have).
-- ---------------------------------------------------------------------------
SELECT v.valid, v.code, v.key_id = :'k_ok' AS key_ok, v.org_id, v.name, v.scopes,
       v.environment, v.expires_at, v.rate_limit, v.rate_remaining,
       v.rate_reset > now() AS reset_in_future, v.metadata, v2v_filled(v)
  FROM apikey_verify(:'t_ok') v;
-- with required scopes and an address; expires_at filled when the key has one
SELECT key_id AS k_exp, token AS t_exp
  FROM apikey_create('acme', 'expiring', '{}', 'test', now() + interval '7 days',
                     rate_limit => 0) \gset
SELECT v.valid, v.code, v.key_id = :'k_exp' AS key_ok, v.org_id, v.name, v.scopes,
       v.environment, v.expires_at = k.expires_at AS expires_ok, v.rate_limit,
       v.rate_remaining, v.rate_reset, v2v_filled(v)
  FROM apikey_verify(:'t_exp', '{documents:delete,plugins:execute}', '192.0.2.7') v,
       apikey_keys k WHERE k.key_id = :'k_exp';
-- rate_limit 0 is unlimited: no remaining count, no reset time (above).

-- The Authorization header value is accepted as is: "Bearer <token>",
-- scheme in any case, blanks around it ignored.
SELECT v.code, v.key_id = :'k_ok' AS key_ok FROM apikey_verify('Bearer ' || :'t_ok') v;
SELECT v.code, v.key_id = :'k_ok' AS key_ok FROM apikey_verify('  bEaReR   ' || :'t_ok' || '  ') v;
SELECT v.code, v.key_id = :'k_ok' AS key_ok FROM apikey_verify(' ' || :'t_ok' || E'\t') v;
-- but not another scheme
SELECT v.code, v2v_filled(v) FROM apikey_verify('Basic ' || :'t_ok') v;

-- ---------------------------------------------------------------------------
-- REVOKED, EXPIRED, FORBIDDEN, INSUFFICIENT_SCOPE: only valid, code and
-- key_id are filled; every other column is NULL.
-- ---------------------------------------------------------------------------
SELECT key_id AS k_rev, token AS t_rev FROM apikey_create('acme', 'revoked') \gset
SELECT apikey_revoke(:'k_rev', 'leaked');
SELECT v.valid, v.code, v.key_id = :'k_rev' AS key_ok, v2v_filled(v) FROM apikey_verify(:'t_rev') v;

-- deactivated by hand (is_active false, not expired) also reads as REVOKED
SELECT key_id AS k_off, token AS t_off FROM apikey_create('acme', 'deactivated') \gset
UPDATE apikey_keys SET is_active = false WHERE key_id = :'k_off';
SELECT v.valid, v.code, v.key_id = :'k_off' AS key_ok, v2v_filled(v) FROM apikey_verify(:'t_off') v;

SELECT key_id AS k_old, token AS t_old FROM apikey_create('acme', 'expired') \gset
UPDATE apikey_keys SET expires_at = now() - interval '1 minute' WHERE key_id = :'k_old';
SELECT v.valid, v.code, v.key_id = :'k_old' AS key_ok, v2v_filled(v) FROM apikey_verify(:'t_old') v;
-- still EXPIRED once the sweeper has made it inactive (not "revoked")
SELECT expired FROM apikey_sweep();
SELECT is_active, revoked_at IS NULL AS not_revoked FROM apikey_keys WHERE key_id = :'k_old';
SELECT v.code, v2v_filled(v) FROM apikey_verify(:'t_old') v;

SELECT key_id AS k_ip, token AS t_ip
  FROM apikey_create('acme', 'office only', '{documents:read}',
                     allowed_ips => '{10.0.0.0/8,2001:db8::/32,192.0.2.1/32}') \gset
SELECT v.valid, v.code, v.key_id = :'k_ip' AS key_ok, v2v_filled(v) FROM apikey_verify(:'t_ip', '{}', '192.0.2.2') v;
-- a key with an allowlist needs an address: NULL is FORBIDDEN
SELECT v.code, v2v_filled(v) FROM apikey_verify(:'t_ip') v;
SELECT v.code, v2v_filled(v) FROM apikey_verify(:'t_ip', '{}', NULL) v;
-- inside any listed network: VALID (IPv4, IPv6, a /32)
SELECT v.code FROM apikey_verify(:'t_ip', '{}', '10.200.3.4') v;
SELECT v.code FROM apikey_verify(:'t_ip', '{}', '2001:db8:1::5') v;
SELECT v.code FROM apikey_verify(:'t_ip', '{}', '192.0.2.1') v;
SELECT v.code FROM apikey_verify(:'t_ip', '{}', '11.0.0.1') v;
SELECT v.code FROM apikey_verify(:'t_ip', '{}', '2001:db9::1') v;

SELECT v.valid, v.code, v.key_id = :'k_ok' AS key_ok, v2v_filled(v)
  FROM apikey_verify(:'t_ok', '{documents:delete}') v;

-- ---------------------------------------------------------------------------
-- Precedence: when a key fails several checks, the first in the order
-- MALFORMED, NOT_FOUND, REVOKED, EXPIRED, FORBIDDEN, INSUFFICIENT_SCOPE,
-- RATE_LIMITED is reported.
-- ---------------------------------------------------------------------------
-- revoked AND expired -> REVOKED
SELECT key_id AS k_p1, token AS t_p1 FROM apikey_create('acme', 'revoked and expired') \gset
SELECT apikey_revoke(:'k_p1');
UPDATE apikey_keys SET expires_at = now() - interval '1 day' WHERE key_id = :'k_p1';
SELECT v.code FROM apikey_verify(:'t_p1') v;

-- expired with a bad address (and missing scope) -> EXPIRED
SELECT key_id AS k_p2, token AS t_p2
  FROM apikey_create('acme', 'expired, bad ip', '{documents:read}', allowed_ips => '{10.0.0.0/8}') \gset
UPDATE apikey_keys SET expires_at = now() - interval '1 second' WHERE key_id = :'k_p2';
SELECT v.code FROM apikey_verify(:'t_p2', '{plugins:execute}', '192.0.2.9') v;

-- bad address AND insufficient scope -> FORBIDDEN
SELECT key_id AS k_p3, token AS t_p3
  FROM apikey_create('acme', 'bad ip, bad scope', '{documents:read}', allowed_ips => '{10.0.0.0/8}') \gset
SELECT v.code FROM apikey_verify(:'t_p3', '{plugins:execute}', '192.0.2.9') v;

-- insufficient scope AND rate limited -> INSUFFICIENT_SCOPE
SELECT key_id AS k_p4, token AS t_p4
  FROM apikey_create('acme', 'bad scope, limited', '{documents:read}', rate_limit => 1) \gset
SELECT v.code, v.rate_remaining FROM apikey_verify(:'t_p4', '{documents:read}') v;  -- uses the one request
SELECT v.code, v2v_filled(v) FROM apikey_verify(:'t_p4', '{documents:read}') v;     -- now limited
SELECT v.code, v2v_filled(v) FROM apikey_verify(:'t_p4', '{plugins:execute}') v;    -- scope wins

-- a revoked key is REVOKED whatever the address or scopes asked
SELECT v.code FROM apikey_verify(:'t_rev', '{plugins:execute}', '192.0.2.9') v;

-- ---------------------------------------------------------------------------
-- RATE_LIMITED fills key_id, code and the rate fields only: rate_remaining
-- 0 and a rate_reset in the future (for Retry-After); org_id, name, scopes,
-- environment, expires_at and metadata are NULL.
-- ---------------------------------------------------------------------------
SELECT key_id AS k_rl, token AS t_rl
  FROM apikey_create('acme', 'limited', '{documents:read}', 'live', now() + interval '1 day',
                     rate_limit => 2, metadata => '{"a": 1}') \gset
SELECT v.code, v.rate_limit, v.rate_remaining FROM apikey_verify(:'t_rl') v;
SELECT v.code, v.rate_limit, v.rate_remaining FROM apikey_verify(:'t_rl') v;
SELECT v.valid, v.code, v.key_id = :'k_rl' AS key_ok, v.org_id, v.name, v.scopes,
       v.environment, v.expires_at, v.rate_limit, v.rate_remaining,
       v.rate_reset > now() AS reset_in_future, v.metadata, v2v_filled(v)
  FROM apikey_verify(:'t_rl') v;
-- the reset time is the end of the current window, the same in every answer
SELECT count(DISTINCT (v).rate_reset) AS distinct_resets, count(*) AS answers
  FROM (SELECT apikey_verify(:'t_rl') AS v FROM generate_series(1, 3)) s;

-- ---------------------------------------------------------------------------
-- A failed verification does not use up rate quota: failures of every kind
-- on a key with a limit of 2, then both requests are still available.
-- ---------------------------------------------------------------------------
SELECT key_id AS k_q, token AS t_q
  FROM apikey_create('acme', 'quota', '{documents:read}', rate_limit => 2,
                     allowed_ips => '{10.0.0.0/8}') \gset
SELECT (v).code, count(*)
  FROM (SELECT apikey_verify(:'t_q', '{}', '192.0.2.1') AS v FROM generate_series(1, 5)) s GROUP BY 1;
SELECT (v).code, count(*)
  FROM (SELECT apikey_verify(:'t_q', '{}', NULL) AS v FROM generate_series(1, 5)) s GROUP BY 1;
SELECT (v).code, count(*)
  FROM (SELECT apikey_verify(:'t_q', '{plugins:execute}', '10.0.0.1') AS v FROM generate_series(1, 5)) s GROUP BY 1;
SELECT rate_limit, remaining, reset_at > now() AS reset_in_future
  FROM apikey_rate_limit_status(:'k_q');
SELECT v.code, v.rate_remaining FROM apikey_verify(:'t_q', '{}', '10.0.0.1') v;
SELECT v.code, v.rate_remaining FROM apikey_verify(:'t_q', '{}', '10.0.0.1') v;
SELECT v.code, v.rate_remaining FROM apikey_verify(:'t_q', '{}', '10.0.0.1') v;
-- only the two VALID answers were counted as requests; the 15 failures and
-- the RATE_LIMITED answer are denials
SELECT requests, denied, denied_forbidden, denied_scope, denied_rate_limited
  FROM apikey_stats WHERE key_id = :'k_q';

-- ---------------------------------------------------------------------------
-- A prepared statement keeps working past the switch to a generic plan
-- (more than five executions), with changing tokens, scopes and addresses.
-- ---------------------------------------------------------------------------
PREPARE v(text, text[], inet) AS SELECT code FROM apikey_verify($1, $2, $3);
EXECUTE v(:'t_ok', '{documents:read}', NULL);
EXECUTE v(:'t_ok', '{documents:read,documents:create}', '192.0.2.1');
EXECUTE v(:'t_ok', '{documents:delete}', NULL);
EXECUTE v(:'t_ip', '{}', '10.0.0.1');
EXECUTE v(:'t_ip', '{}', '192.0.2.2');
EXECUTE v(:'t_rev', '{}', NULL);
EXECUTE v(:'t_old', '{}', NULL);
EXECUTE v(:'t_unknown', '{}', NULL);
EXECUTE v(NULL, '{}', NULL);
EXECUTE v('Bearer ' || :'t_ok', '{documents:read}', NULL);
EXECUTE v(:'t_ok', '{}', NULL);
-- a key revoked between executions is seen at once
SELECT apikey_revoke(:'k_ok');
EXECUTE v(:'t_ok', '{}', NULL);
DEALLOCATE v;

-- the one- and two-argument forms use the defaults ('{}' and NULL)
SELECT key_id AS k_d, token AS t_d FROM apikey_create('acme', 'defaults', '{documents:read}') \gset
SELECT code FROM apikey_verify(:'t_d');
SELECT code FROM apikey_verify(:'t_d', '{documents:read}');
SELECT code FROM apikey_verify(token => :'t_d', client_ip => '192.0.2.1');

-- ---------------------------------------------------------------------------
-- Verification writes no table row: in a transaction that verifies VALID
-- and failing keys, no transaction id is assigned, no tuple is inserted or
-- updated, the key row keeps its xmin and usage_count, and no usage bucket
-- or event appears.  The counts wait in shared memory for apikey_flush().
-- ---------------------------------------------------------------------------
SELECT key_id AS k_w, token AS t_w FROM apikey_create('acme', 'no writes') \gset
SELECT xmin AS xmin_before, usage_count AS uc_before FROM apikey_keys WHERE key_id = :'k_w' \gset
SELECT count(*) AS events_before FROM apikey_events \gset
SELECT count(*) AS usage_before FROM apikey_usage \gset
BEGIN;
SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del + n_tup_hot_upd), 0) AS tup_before
  FROM pg_stat_xact_user_tables
 WHERE relname IN ('apikey_keys', 'apikey_usage', 'apikey_events') \gset
SELECT (v).code, count(*)
  FROM (SELECT apikey_verify(:'t_w') AS v FROM generate_series(1, 10)) s GROUP BY 1;
SELECT (v).code, count(*)
  FROM (SELECT apikey_verify(:'t_rev') AS v FROM generate_series(1, 3)) s GROUP BY 1;
SELECT (v).code, count(*)
  FROM (SELECT apikey_verify(:'t_unknown', '{}', '192.0.2.1') AS v FROM generate_series(1, 3)) s GROUP BY 1;
SELECT txid_current_if_assigned() IS NULL AS no_xid_assigned;
SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del + n_tup_hot_upd), 0) = :tup_before AS no_tuples_written
  FROM pg_stat_xact_user_tables
 WHERE relname IN ('apikey_keys', 'apikey_usage', 'apikey_events');
COMMIT;
SELECT xmin = :'xmin_before' AS same_xmin, usage_count = :uc_before AS same_usage_count,
       last_used_at IS NULL AS never_flushed
  FROM apikey_keys WHERE key_id = :'k_w';
SELECT count(*) = :events_before AS no_new_events FROM apikey_events;
SELECT count(*) = :usage_before AS no_new_usage FROM apikey_usage;
SELECT requests, denied FROM apikey_stats WHERE key_id = :'k_w';
-- the flush is what writes them
SELECT apikey_flush() > 0 AS flushed;
SELECT usage_count, last_used_at IS NOT NULL AS used FROM apikey_keys WHERE key_id = :'k_w';

DROP FUNCTION v2v_filled(apikey_verification);
DROP EXTENSION apikey CASCADE;
