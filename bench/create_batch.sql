-- Row 6b: apikey_create, ten keys per transaction (bulk provisioning): the
-- commit's WAL flush is shared by ten keys.
\set org random(1, 1000)
SELECT count(c.key_id) FROM generate_series(1, 10) g,
       apikey_create('org' || :org, 'bench created', ARRAY['documents' || chr(58) || 'read']) c;
