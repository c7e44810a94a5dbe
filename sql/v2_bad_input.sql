--
-- v2_bad_input: bad input for every 2.0 function.
--
-- apikey_verify never raises for a bad token (NULL, empty, blanks, 1 MB of
-- junk: MALFORMED), but does raise for a caller's mistake in the other
-- arguments (required_scopes NULL or invalid).  Every other function rejects
-- NULLs, empty strings, oversized text, invalid environments, scopes,
-- addresses, limits, expiry, metadata, grace periods and HTTP statuses with
-- a clear error (message, and a hint where it helps), and writes nothing:
-- the row counts of apikey_keys and apikey_events are the same at the end.
--
CREATE EXTENSION apikey;
\set SHOW_CONTEXT never

-- Run a statement; 'ok' or its SQLSTATE and message, with the time in an
-- "expires_at ... is not in the future" message masked.
CREATE FUNCTION v2b_try(q text) RETURNS text
    LANGUAGE plpgsql
    AS $$ BEGIN
        EXECUTE q;
        RETURN 'ok';
    EXCEPTION WHEN OTHERS THEN
        RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '^expires_at .* is not', 'expires_at <time> is not');
    END $$;

SELECT key_id AS k, token AS t FROM apikey_create('acme', 'the one good key') \gset
SELECT count(*) AS keys_before FROM apikey_keys \gset
SELECT count(*) AS events_before FROM apikey_events \gset

-- ---------------------------------------------------------------------------
-- apikey_verify: a bad token is an answer, not an error
-- ---------------------------------------------------------------------------
SELECT valid, code, key_id FROM apikey_verify(NULL);
SELECT valid, code, key_id FROM apikey_verify(NULL, '{}', NULL);
SELECT valid, code, key_id FROM apikey_verify('');
SELECT valid, code, key_id FROM apikey_verify('   ');
SELECT valid, code, key_id FROM apikey_verify(E'\t\n');
SELECT valid, code, key_id FROM apikey_verify('Bearer');
SELECT valid, code, key_id FROM apikey_verify('Bearer    ');
SELECT valid, code, key_id FROM apikey_verify('Bearer Bearer ' || :'t');
SELECT valid, code, key_id FROM apikey_verify(:'t' || E'\n' || :'t');
SELECT valid, code, key_id FROM apikey_verify('ak_live_');
SELECT valid, code, key_id FROM apikey_verify('ak__' || repeat('a', 38));
SELECT valid, code, key_id FROM apikey_verify('ak_live_' || repeat('é', 38));
SELECT valid, code, key_id FROM apikey_verify(repeat('a', 1000000));
SELECT valid, code, key_id FROM apikey_verify('Bearer ' || repeat('a', 1000000));
SELECT valid, code, key_id FROM apikey_verify('ak_live_' || repeat('a', 1000000));
SELECT valid, code, key_id FROM apikey_verify(:'t' || repeat(' ', 1000000));
-- longer than 255 bytes without our prefix: MALFORMED too (never looked up)
SELECT valid, code, key_id FROM apikey_verify(repeat('x', 256));
SELECT valid, code, key_id FROM apikey_verify(repeat('x', 255));
-- the good key still verifies, with the same arguments
SELECT valid, code FROM apikey_verify(:'t', '{}', '192.0.2.1');
-- a caller's mistake in the other arguments is an error
SELECT * FROM apikey_verify(:'t', NULL);
SELECT * FROM apikey_verify(NULL, NULL);
SELECT * FROM apikey_verify(:'t', '{NULL}');
SELECT * FROM apikey_verify(:'t', '{""}');
SELECT * FROM apikey_verify(:'t', '{{a:b},{c:d}}');
-- (an address that is not one fails as the inet type does, whatever the token)
SELECT * FROM apikey_verify('ak_live_x', '{}', 'not an address');
SELECT * FROM apikey_verify('ak_live_x', '{}', '');
SELECT * FROM apikey_verify('ak_live_x', '{}', '300.1.1.1');

-- ---------------------------------------------------------------------------
-- apikey_create
-- ---------------------------------------------------------------------------
-- org_id and name: not NULL, not empty or blank, at most 200 characters
SELECT * FROM apikey_create(NULL, 'n');
SELECT * FROM apikey_create('', 'n');
SELECT * FROM apikey_create('   ', 'n');
SELECT * FROM apikey_create(repeat('o', 10000), 'n');
SELECT * FROM apikey_create('acme', NULL);
SELECT * FROM apikey_create('acme', '');
SELECT * FROM apikey_create('acme', E' \t ');
SELECT * FROM apikey_create('acme', repeat('n', 10000));
SELECT * FROM apikey_create('acme', repeat('n', 201));
-- environment: [a-z][a-z0-9]{0,15}
SELECT * FROM apikey_create('acme', 'n', '{}', NULL);
SELECT * FROM apikey_create('acme', 'n', '{}', '');
SELECT * FROM apikey_create('acme', 'n', '{}', 'LIVE');
SELECT * FROM apikey_create('acme', 'n', '{}', 'live-eu');
SELECT * FROM apikey_create('acme', 'n', '{}', 'live_eu');
SELECT * FROM apikey_create('acme', 'n', '{}', '1live');
SELECT * FROM apikey_create('acme', 'n', '{}', 'live ');
SELECT * FROM apikey_create('acme', 'n', '{}', 'abcdefghijklmnopq');
SELECT * FROM apikey_create('acme', 'n', '{}', repeat('e', 10000));
-- scopes: not NULL, no NULL or invalid element
SELECT * FROM apikey_create('acme', 'n', NULL);
SELECT * FROM apikey_create('acme', 'n', '{NULL}');
SELECT * FROM apikey_create('acme', 'n', ARRAY[NULL, 'documents:read']);
SELECT * FROM apikey_create('acme', 'n', '{documents:read,""}');
-- expires_at: in the future, or NULL
SELECT * FROM apikey_create('acme', 'n', expires_at => '2000-01-01 00:00:00+00');
SELECT v2b_try($$SELECT apikey_create('acme', 'n', expires_at => now() - interval '1 second')$$);
SELECT v2b_try($$SELECT apikey_create('acme', 'n', expires_at => now())$$);
SELECT * FROM apikey_create('acme', 'n', expires_at => '-infinity');
-- rate_limit: NULL (default), 0 (unlimited) or more
SELECT * FROM apikey_create('acme', 'n', rate_limit => -1);
SELECT * FROM apikey_create('acme', 'n', rate_limit => -2147483648);
-- allowed_ips: valid networks, no NULL element
SELECT * FROM apikey_create('acme', 'n', allowed_ips => '{not-an-ip}');
SELECT * FROM apikey_create('acme', 'n', allowed_ips => '{10.0.0.1/8}');
SELECT * FROM apikey_create('acme', 'n', allowed_ips => '{10.0.0.0/33}');
SELECT * FROM apikey_create('acme', 'n', allowed_ips => '{""}');
SELECT * FROM apikey_create('acme', 'n', allowed_ips => '{10.0.0.0/8,NULL}');
-- metadata: a JSON object
SELECT * FROM apikey_create('acme', 'n', metadata => '[]');
SELECT * FROM apikey_create('acme', 'n', metadata => '"x"');
SELECT * FROM apikey_create('acme', 'n', metadata => '42');
SELECT * FROM apikey_create('acme', 'n', metadata => 'null');
SELECT * FROM apikey_create('acme', 'n', metadata => NULL);
SELECT * FROM apikey_create('acme', 'n', metadata => '{bad json');
-- created_by: NULL, or a non-empty name
SELECT * FROM apikey_create('acme', 'n', created_by => '');
SELECT * FROM apikey_create('acme', 'n', created_by => repeat('c', 10000));

-- ---------------------------------------------------------------------------
-- apikey_revoke / apikey_revoke_org
-- ---------------------------------------------------------------------------
SELECT apikey_revoke(NULL);
SELECT apikey_revoke('');
SELECT apikey_revoke(repeat('k', 10000));
SELECT apikey_revoke(:'k', repeat('r', 10000));
SELECT apikey_revoke_org(NULL);
SELECT apikey_revoke_org('');
SELECT apikey_revoke_org(repeat('o', 10000));
SELECT apikey_revoke_org('acme', repeat('r', 10000));
-- an unknown key or org is not an error: nothing to revoke
SELECT apikey_revoke('key_nosuchkey000000'), apikey_revoke_org('nosuchorg');

-- ---------------------------------------------------------------------------
-- apikey_rotate
-- ---------------------------------------------------------------------------
SELECT * FROM apikey_rotate(NULL);
SELECT * FROM apikey_rotate('');
SELECT * FROM apikey_rotate(repeat('k', 10000));
SELECT * FROM apikey_rotate('key_nosuchkey000000');
SELECT * FROM apikey_rotate(:'k', NULL);
SELECT * FROM apikey_rotate(:'k', '-1 hour');
SELECT * FROM apikey_rotate(:'k', '-1 second');
SELECT * FROM apikey_rotate('key_nosuchkey000000', 'forever');

-- ---------------------------------------------------------------------------
-- scope helpers
-- ---------------------------------------------------------------------------
SELECT apikey_scope_matches(NULL, NULL) IS NULL AS strict_null;
SELECT apikey_scope_matches('{}', '');
SELECT apikey_scope_matches('{NULL}', 'a:b');
SELECT apikey_scope_matches('{}', repeat('a', 10000) || ':read');
SELECT apikey_scopes(NULL) IS NULL AS strict_null;
SELECT apikey_scopes('{}');
SELECT apikey_scopes('[null]');
SELECT apikey_scopes('[{"resource": null, "actions": ["read"]}]');
SELECT apikey_preset(NULL);
SELECT apikey_preset('');

-- ---------------------------------------------------------------------------
-- apikey_record: a known HTTP status (100-599) and a finite, non-negative
-- response time; key_id 1 to 64 characters
-- ---------------------------------------------------------------------------
SELECT apikey_record(NULL, '/v1/docs', 200, 12.5);
SELECT apikey_record('', '/v1/docs', 200, 12.5);
SELECT apikey_record(repeat('k', 10000), '/v1/docs', 200, 12.5);
SELECT apikey_record(:'k', '/v1/docs', NULL, 12.5);
SELECT apikey_record(:'k', '/v1/docs', 99, 12.5);
SELECT apikey_record(:'k', '/v1/docs', 600, 12.5);
SELECT apikey_record(:'k', '/v1/docs', 0, 12.5);
SELECT apikey_record(:'k', '/v1/docs', -200, 12.5);
SELECT apikey_record(:'k', '/v1/docs', 200, -1);
SELECT apikey_record(:'k', '/v1/docs', 200, 'NaN');
SELECT apikey_record(:'k', '/v1/docs', 200, 'Infinity');
SELECT apikey_record(:'k', '/v1/docs', 200, '-Infinity');
SELECT apikey_record(:'k', '/v1/docs', 200, NULL);
-- nothing of the above was counted
SELECT count(*) AS pending_rows FROM apikey_stats WHERE key_id = :'k' AND responses > 0;
-- the edges are accepted
SELECT apikey_record(:'k', '/v1/docs', 100, 0);
SELECT apikey_record(:'k', NULL, 599, 0.001);
SELECT responses FROM apikey_stats WHERE key_id = :'k';

-- ---------------------------------------------------------------------------
-- apikey_rate_limit_status, apikey_sweep_batch
-- ---------------------------------------------------------------------------
SELECT * FROM apikey_rate_limit_status(NULL);
SELECT * FROM apikey_rate_limit_status('');
SELECT * FROM apikey_rate_limit_status(repeat('k', 10000));
SELECT count(*) AS rows_for_unknown_key FROM apikey_rate_limit_status('key_nosuchkey000000');
SELECT * FROM apikey_sweep_batch(NULL);
SELECT * FROM apikey_sweep_batch(0);
SELECT * FROM apikey_sweep_batch(-1);

-- ---------------------------------------------------------------------------
-- helpers exposed to PUBLIC
-- ---------------------------------------------------------------------------
SELECT apikey_token_hash(NULL) IS NULL AS strict_null;
SELECT apikey_token_hash('');
SELECT apikey_token_hash(repeat('t', 10000));
SELECT * FROM apikey_new_token('LIVE');
SELECT * FROM apikey_new_token('');

-- ---------------------------------------------------------------------------
-- key_ids longer than 64 bytes (shared memory's field): the table's CHECK
-- counts characters, the audit trigger counts bytes.  22 euro signs are 22
-- characters and 66 bytes; a direct INSERT and an UPDATE OF key_id are refused.
-- ---------------------------------------------------------------------------
SELECT v2b_try($$INSERT INTO apikey_keys (key_id, org_id, name, hint, hash, environment)
                 VALUES (repeat(U&'\20AC', 22), 'acme', 'n', 'h',
                         apikey_token_hash('ak_live_euro'), 'live')$$);
SELECT v2b_try(format($$UPDATE apikey_keys SET key_id = repeat(U&'\20AC', 22) WHERE key_id = %L$$, :'k'));
-- 21 of them (63 bytes) are fine; rolled back, so the counts below still hold.
BEGIN;
SELECT v2b_try($$INSERT INTO apikey_keys (key_id, org_id, name, hint, hash, environment)
                 VALUES (repeat(U&'\20AC', 21), 'acme', 'n', 'h',
                         apikey_token_hash('ak_live_euro'), 'live')$$);
ROLLBACK;

-- ---------------------------------------------------------------------------
-- Nothing was written by any of it
-- ---------------------------------------------------------------------------
SELECT count(*) = :keys_before AS same_keys FROM apikey_keys;
SELECT count(*) = :events_before AS same_events FROM apikey_events;
SELECT is_active, revoked_at IS NULL AS not_revoked, replaced_by IS NULL AS not_rotated
  FROM apikey_keys WHERE key_id = :'k';
SELECT (apikey_verify(:'t')).code;

DROP FUNCTION v2b_try(text);
DROP EXTENSION apikey CASCADE;
