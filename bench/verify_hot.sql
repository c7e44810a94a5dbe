-- Row 3: the same for a hot set of 10 keys (contention on their counters).
\set id random(1, 10)
SELECT v.valid FROM bench_tokens t, apikey_verify(t.token, ARRAY['documents' || chr(58) || 'read'], '10.1.2.3') v
 WHERE t.id = :id;
