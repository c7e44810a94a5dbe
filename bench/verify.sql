-- Row 2: apikey_verify of random valid tokens, required scope, counting and
-- rate limits on (limits too high to trigger).
-- (pgbench -M prepared turns every ":name" into a parameter, even inside a
-- string literal, hence chr(58) for the colon of a scope.)
\set id random(1, :nkeys)
SELECT v.valid FROM bench_tokens t, apikey_verify(t.token, ARRAY['documents' || chr(58) || 'read'], '10.1.2.3') v
 WHERE t.id = :id;
