-- Row 6: apikey_create throughput.
\set org random(1, 1000)
SELECT key_id FROM apikey_create('org' || :org, 'bench created', ARRAY['documents' || chr(58) || 'read']);
