-- Row 4: malformed tokens (a wrong checksum): answered without touching apikey_keys.
\set id random(1, :nkeys)
SELECT v.valid FROM bench_tokens t, apikey_verify(t.token || 'x', ARRAY['documents' || chr(58) || 'read'], '10.1.2.3') v
 WHERE t.id = :id;
