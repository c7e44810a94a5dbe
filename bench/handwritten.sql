-- Row 5: what an application team writes without apikey (see setup.sql).
\set id random(1, :nkeys)
SELECT bench_handwritten_verify(t.token, 'documents' || chr(58) || 'read') FROM bench_tokens t WHERE t.id = :id;
