-- apikey 2.2--2.1, back to the security release: this file is frozen once released.
\echo Use "ALTER EXTENSION apikey UPDATE TO '2.1'" to load this file. \quit

-- 2.2 added functions and a view, no table or column: dropping them is all
-- it takes, and no key, event or usage count is touched.  (From 2.1 the way
-- back to the legacy version is 2.1--1.1.)  A view or function of the
-- user's own built on one of these makes this stop with an error, and
-- nothing changes.
DROP VIEW apikey_metrics;
DROP FUNCTION apikey_metrics_internal();
DROP FUNCTION apikey_usage_series(timestamptz, timestamptz, text, text, interval);
DROP FUNCTION apikey_update(text, text, text[], timestamptz, integer, cidr[], jsonb);
DROP FUNCTION apikey_keys_of(text);
