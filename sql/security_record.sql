--
-- security_record: apikey_record cannot be turned against the counters.
--
-- apikey_record(key_id, endpoint, status_code, response_ms) is what an
-- application calls after serving a request.  Before 2.1 it created a
-- shared-memory entry for any key_id it was given: a role allowed to call
-- it could fill the counters with invented key_ids, after which rate limits
-- were no longer enforced (issue 14, attack 3).  Now it counts only for
-- keys that exist (looked up inside: its callers have no table privileges)
-- and never creates an entry for an unknown key_id; and it rejects values
-- that are not a status code or a response time, which would otherwise
-- poison the sums.
--
CREATE EXTENSION apikey;
\set SHOW_CONTEXT never
-- 31-day rate windows: no window ends during the test
SET apikey.default_rate_window = '31d';
-- earlier tests may have left counts pending: write them now
SELECT apikey_flush() >= 0 AS flushed_leftovers;

-- The application role, as the manual recommends.
CREATE ROLE regress_sec_app;
GRANT EXECUTE ON FUNCTION apikey_record(text, text, integer, double precision),
                          apikey_rate_limit_status(text) TO regress_sec_app;

SELECT key_id AS k_gone FROM apikey_create('acme', 'deleted soon') \gset
DELETE FROM apikey_keys WHERE key_id = :'k_gone';

-- ---------------------------------------------------------------------------
-- The flood: ten thousand invented key_ids, and a deleted key's.
-- ---------------------------------------------------------------------------
SET ROLE regress_sec_app;
\o /dev/null
SELECT apikey_record('fake_' || g, '/', 200, 1) FROM generate_series(1, 10000) g;
\o
SELECT apikey_record(:'k_gone', '/', 200, 1);
RESET ROLE;

-- no entry for any of them: not in the counters, not pending, no overflow
SELECT count(*) AS entries_for_unknown_keys
  FROM apikey_stats_internal() s
 WHERE s.key_id LIKE 'fake\_%' OR s.key_id = :'k_gone';
SELECT count(*) AS overflow_rows FROM apikey_stats_internal() WHERE overflow;
SELECT count(*) AS pending_for_unknown_keys
  FROM apikey_pending_usage() p
 WHERE p.key_id LIKE 'fake\_%' OR p.key_id = :'k_gone';
SELECT count(*) AS in_apikey_stats FROM apikey_stats WHERE key_id LIKE 'fake\_%';
-- and nothing to write
SELECT apikey_flush() AS keys_flushed;
SELECT count(*) AS usage_rows FROM apikey_usage;
SELECT count(*) AS usage_log_rows FROM apikey_usage_log;

-- ---------------------------------------------------------------------------
-- Rate limits still hold: a key limited to 3 requests is VALID exactly 3
-- times of 10.
-- ---------------------------------------------------------------------------
SELECT key_id AS k3, token AS t3 FROM apikey_create('acme', 'limited', rate_limit => 3) \gset
SELECT string_agg(code, ',' ORDER BY g) AS codes
  FROM (SELECT g, (apikey_verify(:'t3')).code FROM generate_series(1, 10) g) s;
SET ROLE regress_sec_app;
SELECT rate_limit, remaining FROM apikey_rate_limit_status(:'k3');
-- the key's served requests are counted (responses, not requests)
SELECT apikey_record(:'k3', '/documents', 200, 12.5);
SELECT apikey_record(:'k3', '/documents', 404, 0);
RESET ROLE;
SELECT requests, denied, denied_rate_limited, responses, response_ms
  FROM apikey_stats WHERE key_id = :'k3';

-- ---------------------------------------------------------------------------
-- What is not a response is refused, and counts nothing.
-- ---------------------------------------------------------------------------
SET ROLE regress_sec_app;
-- response times: not a number, infinite, negative, absurd (over a day)
SELECT apikey_record(:'k3', '/', 200, 'NaN');
SELECT apikey_record(:'k3', '/', 200, 'Infinity');
SELECT apikey_record(:'k3', '/', 200, '-Infinity');
SELECT apikey_record(:'k3', '/', 200, -1);
SELECT apikey_record(:'k3', '/', 200, 1e308);
SELECT apikey_record(:'k3', '/', 200, 86400000.001);
-- the bounds themselves are accepted
SELECT apikey_record(:'k3', '/', 200, 0);
SELECT apikey_record(:'k3', '/', 200, 86400000);
-- status codes: only 100 to 599
SELECT apikey_record(:'k3', '/', 99, 1);
SELECT apikey_record(:'k3', '/', 600, 1);
SELECT apikey_record(:'k3', '/', 0, 1);
SELECT apikey_record(:'k3', '/', -200, 1);
SELECT apikey_record(:'k3', '/', 2147483647, 1);
SELECT apikey_record(:'k3', '/', 100, 1);
SELECT apikey_record(:'k3', '/', 599, 1);
-- nulls and key_ids that cannot be one
SELECT apikey_record(NULL, '/', 200, 1);
SELECT apikey_record(:'k3', '/', NULL, 1);
SELECT apikey_record(:'k3', '/', 200, NULL);
SELECT apikey_record('', '/', 200, 1);
SELECT apikey_record(repeat('k', 65), '/', 200, 1);
RESET ROLE;
-- two responses before, four accepted since
SELECT responses, response_ms FROM apikey_stats WHERE key_id = :'k3';

-- ---------------------------------------------------------------------------
-- Clean up
-- ---------------------------------------------------------------------------
DROP EXTENSION apikey;
DROP ROLE regress_sec_app;
