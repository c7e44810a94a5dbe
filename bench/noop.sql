-- Row 0b: row 4's statement with a C function that has apikey_verify's
-- arguments and result and does nothing (bench/noop): what calling a
-- function in FROM costs, with no verification at all.
\set id random(1, :nkeys)
SELECT v.valid FROM bench_tokens t, apikey_bench_noop(t.token || 'x', ARRAY['documents' || chr(58) || 'read'], '10.1.2.3') v
 WHERE t.id = :id;
