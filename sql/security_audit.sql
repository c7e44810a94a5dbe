--
-- security_audit: the audit trail cannot be bypassed.
--
-- Every change to apikey_keys is an event in apikey_events (the trigger
-- apikey_audit, SECURITY DEFINER: writers need, and get, no right on the
-- events).  The one exception is restoring a dump: a superuser's COPY
-- *into* apikey_keys, whose events come with the dump.  Anything else that
-- merely contains the word COPY -- a superuser's
-- COPY (SELECT * FROM apikey_create(...)) TO STDOUT, which creates a key --
-- is audited (issue 14, item 6), and a key administrator can neither
-- switch the trigger off nor forge or remove events.
--
CREATE EXTENSION apikey;
\set SHOW_CONTEXT never

CREATE ROLE regress_sec_admin;
GRANT SELECT, INSERT, UPDATE ON apikey_keys TO regress_sec_admin;
GRANT SELECT ON apikey_events TO regress_sec_admin;
GRANT EXECUTE ON FUNCTION
    apikey_create(text, text, text[], text, timestamptz, integer, cidr[], jsonb, text)
  TO regress_sec_admin;

-- Events of keys by name: which events, by whom.
CREATE FUNCTION regress_sec_events(key_name text)
    RETURNS TABLE(event text, actor text)
    LANGUAGE sql
AS $$ SELECT e.event, CASE WHEN e.actor = session_user THEN 'superuser' ELSE e.actor END
        FROM apikey_events e
       WHERE e.details ->> 'name' = key_name
          OR e.key_id IN (SELECT k.key_id FROM apikey_keys k WHERE k.name = key_name)
       ORDER BY e.event_id $$;

-- ---------------------------------------------------------------------------
-- A superuser's COPY out of apikey_create creates a key, and an event.
-- ---------------------------------------------------------------------------
\o /dev/null
COPY (SELECT * FROM apikey_create('acme', 'copied out')) TO STDOUT;
copy (select * from apikey_create('acme', 'copied out, lowercase')) to stdout;
COPY (SELECT * FROM apikey_create('acme', 'copied out, csv')) TO STDOUT WITH (FORMAT csv);
\o
SELECT * FROM regress_sec_events('copied out');
SELECT * FROM regress_sec_events('copied out, lowercase');
SELECT * FROM regress_sec_events('copied out, csv');

-- ---------------------------------------------------------------------------
-- A restore -- a superuser's COPY into apikey_keys, as pg_dump writes it --
-- brings the events with the dump and is not audited again.
-- ---------------------------------------------------------------------------
COPY public.apikey_keys (key_id, org_id, name, hint, hash, environment, metadata) FROM stdin;
key_restored0000000	acme	restored	ak_live_aaaa	\\x0000000000000000000000000000000000000000000000000000000000000001	live	{}
\.
SELECT * FROM regress_sec_events('restored');

-- The same COPY by a key administrator is no restore: audited.
SET ROLE regress_sec_admin;
COPY apikey_keys (key_id, org_id, name, hint, hash, environment, metadata) FROM stdin;
key_copied_in000000	acme	copied in	ak_live_bbbb	\\x0000000000000000000000000000000000000000000000000000000000000002	live	{}
\.
RESET ROLE;
SELECT * FROM regress_sec_events('copied in');
-- (both rows are there)
SELECT key_id, name FROM apikey_keys WHERE name IN ('restored', 'copied in') ORDER BY 1;

-- ---------------------------------------------------------------------------
-- A key administrator cannot switch the audit off, nor write the trail.
-- ---------------------------------------------------------------------------
SET ROLE regress_sec_admin;
ALTER TABLE apikey_keys DISABLE TRIGGER apikey_keys_audit;
ALTER TABLE apikey_keys DISABLE TRIGGER ALL;
SET session_replication_role = replica;
DROP TRIGGER apikey_keys_audit ON apikey_keys;
SELECT apikey_audit();
INSERT INTO apikey_events (org_id, key_id, event, actor) VALUES ('acme', 'key_x', 'created', 'someone else');
UPDATE apikey_events SET actor = 'someone else';
DELETE FROM apikey_events;
-- so what it does is on record, under its name
SELECT count(*) FROM apikey_create('acme', 'by the admin');
UPDATE apikey_keys SET name = 'by the admin, renamed' WHERE name = 'by the admin';
RESET ROLE;
SELECT * FROM regress_sec_events('by the admin, renamed');

-- ---------------------------------------------------------------------------
-- An UPDATE that rotates, revokes or expires a key and changes other columns
-- too is recorded as both: the event, and an "updated" event with the other
-- columns.  (Before, only the rotation was recorded: a key administrator
-- could swap in a token hash of their choosing, lift the rate limit and
-- drop the allowlist, and the trail showed a rotation.)
-- ---------------------------------------------------------------------------
SET ROLE regress_sec_admin;
SELECT count(*) FROM apikey_create('acme', 'swapped', '{documents:read}', rate_limit => 10,
                                   allowed_ips => '{10.0.0.0/8}');
SELECT count(*) FROM apikey_create('acme', 'revoked and widened', '{documents:read}');
SELECT count(*) FROM apikey_create('acme', 'expired and widened', '{documents:read}');
SELECT count(*) FROM apikey_create('acme', 'rotated and lifted', expires_at => '2030-01-01 00:00+00');
UPDATE apikey_keys
   SET replaced_by = 'key_nonexistent', hash = apikey_token_hash('backdoor-token'),
       rate_limit = NULL, allowed_ips = NULL, scopes = '{}'
 WHERE name = 'swapped';
UPDATE apikey_keys
   SET is_active = false, revoked_at = now(), revoked_reason = 'gone', scopes = '{}'
 WHERE name = 'revoked and widened';
UPDATE apikey_keys
   SET is_active = false, expires_at = '2026-01-01 00:00+00', metadata = '{"tier": "gold"}'
 WHERE name = 'expired and widened';
-- a rotation brings the expiry forward; one that lifts it is an update too
UPDATE apikey_keys SET replaced_by = 'key_successor', expires_at = NULL
 WHERE name = 'rotated and lifted';
RESET ROLE;
SELECT e.event, e.details
  FROM apikey_events e JOIN apikey_keys k USING (key_id)
 WHERE k.name IN ('swapped', 'revoked and widened', 'expired and widened', 'rotated and lifted')
   AND e.event <> 'created'
 ORDER BY e.event_id;
-- a rotation, revocation or expiry that changes nothing else is one event
SELECT count(*) FROM apikey_create('acme', 'plain');
UPDATE apikey_keys SET replaced_by = 'key_successor' WHERE name = 'plain';
UPDATE apikey_keys SET is_active = false, revoked_at = now(), revoked_reason = 'r'
 WHERE name = 'plain';
UPDATE apikey_keys SET usage_count = usage_count + 1 WHERE name = 'plain';
SELECT * FROM regress_sec_events('plain');

-- ---------------------------------------------------------------------------
-- Clean up
-- ---------------------------------------------------------------------------
DROP FUNCTION regress_sec_events(text);
DROP EXTENSION apikey;
DROP ROLE regress_sec_admin;
