-- Rows 7r/7o, the flood: a client sending malformed tokens, each from a
-- client address drawn from 16 million (10.0.0.0/8), so that every failure
-- lands on a different per-address counter.  Run next to verify.sql; the
-- row measures the verifying client, not this one.
\set a random(0, 16777215)
SELECT v.code FROM apikey_verify('ak_live_flood', '{}', '10.0.0.0'::inet + :a) v;
