-- Row 0, the ceiling: fetching the token by id and nothing else.  No
-- verification can run faster than this in this harness.
\set id random(1, :nkeys)
SELECT length(t.token) FROM bench_tokens t WHERE t.id = :id;
