--
-- security_error_echo: invalid input is not echoed in full.
--
-- An error message that repeats what it was given lets a caller write
-- whatever it likes, as long as it likes, into the server log and into the
-- application's error reports.  Invalid scopes (and other values the
-- extension validates) are echoed truncated: the first 64 bytes, on a
-- character boundary, and "..." (issue 14, item 6).  Lengths are reported
-- as numbers.
--
CREATE EXTENSION apikey;
\set SHOW_CONTEXT never
\set VERBOSITY default

-- Run a statement; its SQLSTATE and message, or the message's length when
-- message, detail and hint together exceed 300 characters.
CREATE FUNCTION regress_sec_error(q text) RETURNS text
    LANGUAGE plpgsql
AS $$
DECLARE
    msg text;
    det text;
    hnt text;
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    IF length(msg) + coalesce(length(det), 0) + coalesce(length(hnt), 0) > 300 THEN
        RETURN format('%s: a message of %s characters', SQLSTATE,
                      length(msg) + coalesce(length(det), 0) + coalesce(length(hnt), 0));
    END IF;
    RETURN SQLSTATE || ': ' || msg;
END
$$;

-- The length of a statement's error message, detail and hint together.
CREATE FUNCTION regress_sec_error_length(q text) RETURNS integer
    LANGUAGE plpgsql
AS $$
DECLARE
    msg text;
    det text;
    hnt text;
BEGIN
    EXECUTE q;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    RETURN length(msg) + coalesce(length(det), 0) + coalesce(length(hnt), 0);
END
$$;

-- A megabyte of invalid scope, wherever a scope is accepted.
SELECT * FROM apikey_create('acme', 'x', ARRAY[repeat('A', 1048576)]);
SELECT * FROM apikey_create('acme', 'x', ARRAY['documents:read', 'documents:' || repeat('B', 1048576)]);
SELECT apikey_verify('ak_live_whatever', ARRAY[repeat('C', 1048576)]);
SELECT apikey_scope_matches('{documents:*}', repeat('D', 1048576));
SELECT apikey_scope_matches(ARRAY[repeat('E', 1048576)], 'documents:read');
SELECT apikey_scopes(jsonb_build_array(jsonb_build_object(
           'resource', repeat('F', 1048576), 'actions', jsonb_build_array('read'))));
SELECT apikey_scopes(jsonb_build_array(jsonb_build_object(
           'resource', 'documents', 'actions', jsonb_build_array(repeat('G', 1048576)))));
INSERT INTO apikey_keys (key_id, org_id, name, hint, hash, environment)
VALUES ('key_echo', 'acme', 'echo', 'x', apikey_token_hash('x'), 'live');
UPDATE apikey_keys SET scopes = ARRAY[repeat('H', 1048576)] WHERE key_id = 'key_echo';
-- multibyte characters are not cut in the middle
SELECT * FROM apikey_create('acme', 'x', ARRAY[repeat('é', 500000)]);
-- other validated values
SELECT apikey_environment_valid(repeat('I', 1048576));
UPDATE apikey_keys SET environment = repeat('j', 1048576) WHERE key_id = 'key_echo';
SELECT * FROM apikey_create(repeat('K', 1048576), 'x');
SELECT * FROM apikey_create('acme', repeat('L', 1048576));
SELECT apikey_revoke(repeat('M', 1048576));
SELECT apikey_new_token(repeat('N', 1048576));
-- a megabyte token is simply MALFORMED
SELECT (apikey_verify('ak_live_' || repeat('O', 1048576))).code;
-- the same through the wrapper: short messages
SELECT regress_sec_error($$SELECT * FROM apikey_create('acme', 'x', ARRAY[repeat('A', 1048576)])$$);
SELECT regress_sec_error($$SELECT apikey_verify('ak_live_whatever', ARRAY[repeat('C', 1048576)])$$);
SELECT regress_sec_error($$SELECT apikey_environment_valid(repeat('I', 1048576))$$);
-- an unknown preset name is not echoed in full either
SELECT regress_sec_error($$SELECT apikey_preset('nosuchpreset')$$);
SELECT regress_sec_error_length($$SELECT apikey_preset(repeat('P', 1048576))$$) <= 300
       AS preset_error_is_short;

-- ---------------------------------------------------------------------------
-- Clean up
-- ---------------------------------------------------------------------------
DROP FUNCTION regress_sec_error(text);
DROP FUNCTION regress_sec_error_length(text);
DROP EXTENSION apikey;
