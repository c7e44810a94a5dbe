-- Row 1, the floor: one probe of the unique hash index, no logic.
\set id random(1, :nkeys)
SELECT k.key_id FROM bench_tokens t
  JOIN apikey_keys k ON k.hash = sha256(convert_to(t.token, 'UTF8'))
 WHERE t.id = :id;
