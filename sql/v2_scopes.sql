--
-- v2_scopes: scopes in 2.0.
--
-- A scope is resource:action, each side [a-z0-9_.-]+ or *, a bare * meaning
-- *:*.  A granted scope covers a required one iff each side of the grant is
-- * or equal.  A "*" on the required side is matched literally: only a grant
-- with * on that side covers it.  An empty grant array is full access.
-- Required scopes are ANDed.  Invalid scope text anywhere is an ERROR that
-- names the element, and nothing is written.  Also: apikey_scopes(jsonb),
-- apikey_preset, and apikey_scope_matches being IMMUTABLE and usable in RLS
-- policies and indexes.
--
CREATE EXTENSION apikey;
-- errors show message, detail and hint; not the PL/pgSQL context lines
\set SHOW_CONTEXT never
SET apikey.default_rate_limit = 0;     -- no rate limit gets in the way here

-- ---------------------------------------------------------------------------
-- apikey_scope_matches(granted, required): the matching table
-- ---------------------------------------------------------------------------
SELECT granted, required, apikey_scope_matches(granted, required) AS matches,
       apikey_scope_matches(granted, required) = expected AS as_expected
  FROM (VALUES
    -- exact
    ('{documents:read}'::text[],              'documents:read',   true),
    ('{documents:read}',                      'documents:create', false),
    ('{documents:read}',                      'plugins:read',     false),
    -- no prefix or partial matching
    ('{doc:read}',                            'documents:read',   false),
    ('{documents:read}',                      'documents:readx',  false),
    ('{documents:re}',                        'documents:read',   false),
    -- * as the resource
    ('{*:read}',                              'documents:read',   true),
    ('{*:read}',                              'plugins:read',     true),
    ('{*:read}',                              'documents:create', false),
    -- * as the action
    ('{documents:*}',                         'documents:delete', true),
    ('{documents:*}',                         'plugins:execute',  false),
    -- a bare * is *:*
    ('{*}',                                   'plugins:execute',  true),
    ('{*:*}',                                 'plugins:execute',  true),
    -- an empty grant is full access
    ('{}',                                    'documents:read',   true),
    ('{}',                                    '*',                true),
    ('{}',                                    'documents:*',      true),
    -- * on the required side is literal: only covered by a * grant
    ('{documents:read,documents:create}',     'documents:*',      false),
    ('{documents:*}',                         'documents:*',      true),
    ('{*:*}',                                 'documents:*',      true),
    ('{*:read}',                              'documents:*',      false),
    ('{documents:read}',                      '*:read',           false),
    ('{*:read}',                              '*:read',           true),
    ('{documents:*}',                         '*',                false),
    ('{*:read}',                              '*',                false),
    ('{*}',                                   '*',                true),
    ('{*:*}',                                 '*:*',              true),
    ('{*}',                                   '*:*',              true),
    -- several grants: any one may cover the requirement
    ('{documents:read,plugins:execute}',      'plugins:execute',  true),
    ('{documents:read,plugins:execute}',      'plugins:install',  false),
    ('{documents:read,plugins:*,billing:view}', 'plugins:install', true),
    -- every allowed character
    ('{my_res.v2-x:do_it.now-1}',             'my_res.v2-x:do_it.now-1', true),
    ('{my_res.v2-x:*}',                       'my_res.v2-x:do_it', true)
  ) AS t(granted, required, expected);

-- Immutable and strict: NULL in, NULL out (an RLS policy treats it as false)
SELECT apikey_scope_matches(NULL, 'documents:read') IS NULL AS null_granted,
       apikey_scope_matches('{}', NULL) IS NULL AS null_required;
SELECT proname, provolatile, proisstrict, proparallel
  FROM pg_proc WHERE proname IN ('apikey_scope_matches', 'apikey_scopes', 'apikey_preset')
 ORDER BY proname;

-- Invalid scope text on either side is an error naming the element, not a
-- quiet false.
SELECT apikey_scope_matches('{documents:read}', 'Documents:read');
SELECT apikey_scope_matches('{documents:read}', 'documents');
SELECT apikey_scope_matches('{documents:read}', '');
SELECT apikey_scope_matches('{documents:read}', 'documents:read:write');
SELECT apikey_scope_matches('{documents:read,Plugins:run}', 'documents:read');
SELECT apikey_scope_matches('{documents:read,NULL}', 'documents:read');
SELECT apikey_scope_matches('{{documents:read},{plugins:run}}', 'documents:read');

-- ---------------------------------------------------------------------------
-- apikey_verify: the required scopes are ANDed, each must be covered
-- ---------------------------------------------------------------------------
SELECT token AS t_two FROM apikey_create('acme', 'two scopes', '{documents:read,plugins:execute}') \gset
SELECT token AS t_full FROM apikey_create('acme', 'full access', '{}') \gset
SELECT token AS t_docs FROM apikey_create('acme', 'all documents', '{documents:*}') \gset
SELECT token AS t_star FROM apikey_create('acme', 'star', '{*}') \gset

SELECT name, required, (apikey_verify(token, required)).code
  FROM (VALUES ('two scopes', :'t_two'), ('full access', :'t_full'),
               ('all documents', :'t_docs'), ('star', :'t_star')) AS k(name, token),
       (VALUES ('{}'::text[]),
               ('{documents:read}'),
               ('{documents:read,plugins:execute}'),
               ('{plugins:execute,documents:read,documents:read}'),
               ('{documents:read,documents:create}'),
               ('{documents:create,documents:delete}'),
               ('{documents:*}'),
               ('{*}'),
               ('{billing:view}')) AS r(required)
 ORDER BY 1, 2;

-- ---------------------------------------------------------------------------
-- Invalid scopes are an error naming the element; nothing is written.
-- ---------------------------------------------------------------------------
SELECT count(*) AS keys_before FROM apikey_keys \gset
SELECT count(*) AS events_before FROM apikey_events \gset

SELECT * FROM apikey_create('acme', 'bad', '{Documents:read}');
SELECT * FROM apikey_create('acme', 'bad', '{documents}');
SELECT * FROM apikey_create('acme', 'bad', '{documents:}');
SELECT * FROM apikey_create('acme', 'bad', '{:read}');
SELECT * FROM apikey_create('acme', 'bad', '{docs:read write}');
SELECT * FROM apikey_create('acme', 'bad', '{documents:read,NULL}');
SELECT * FROM apikey_create('acme', 'bad', ARRAY['documents:read', NULL]);
SELECT * FROM apikey_create('acme', 'bad', '{documents:read,plugins:run,""}');
SELECT * FROM apikey_create('acme', 'bad', '{**}');
SELECT * FROM apikey_create('acme', 'bad', '{*:**}');
SELECT * FROM apikey_create('acme', 'bad', '{documents:read:write}');
SELECT * FROM apikey_create('acme', 'bad', '{"documents :read"}');
SELECT * FROM apikey_create('acme', 'bad', '{documénts:read}');
SELECT * FROM apikey_create('acme', 'bad', '{{documents:read},{plugins:run}}');
SELECT * FROM apikey_create('acme', 'bad', ARRAY[repeat('a', 300) || ':read']);
SELECT * FROM apikey_create('acme', 'bad', NULL);

-- the same rules on a direct UPDATE or INSERT (a CHECK constraint)
UPDATE apikey_keys SET scopes = '{documents:read,Bad}' WHERE name = 'two scopes';
UPDATE apikey_keys SET scopes = '{documents:read,NULL}' WHERE name = 'two scopes';
INSERT INTO apikey_keys (key_id, org_id, name, hint, hash, environment, scopes)
VALUES ('key_x', 'acme', 'direct', 'ak_live_xxxx', apikey_token_hash('x'), 'live', '{Bad:read}');

-- the required scopes of a verification; even a bad token does not hide
-- the caller's mistake
SELECT * FROM apikey_verify(:'t_two', '{documents:read,Plugins:execute}');
SELECT * FROM apikey_verify(:'t_two', '{documents}');
SELECT * FROM apikey_verify(:'t_two', '{documents:read,NULL}');
SELECT * FROM apikey_verify(:'t_two', '{""}');
SELECT * FROM apikey_verify('garbage', '{documents:}');
SELECT * FROM apikey_verify(:'t_two', NULL);

SELECT count(*) = :keys_before AS no_keys_written FROM apikey_keys;
SELECT count(*) = :events_before AS no_events_written FROM apikey_events;
SELECT name, scopes FROM apikey_keys WHERE name = 'two scopes';

-- ---------------------------------------------------------------------------
-- apikey_scopes(jsonb): the JSON form to text[]
-- ---------------------------------------------------------------------------
SELECT apikey_scopes('[{"resource": "documents", "actions": ["read", "create"]}]');
SELECT apikey_scopes('[{"resource": "documents", "actions": ["read"]},
                       {"resource": "plugins", "actions": ["*"]},
                       {"resource": "*", "actions": ["view"], "note": "extra keys are ignored"}]');
-- an empty list converts to the empty array, which is full access (the
-- same as apikey_preset('full'))
SELECT apikey_scopes('[]') AS empty_list, apikey_scopes('[]') = apikey_preset('full') AS is_full;
-- what it returns is accepted by apikey_create and used by apikey_verify
SELECT token AS t_json
  FROM apikey_create('acme', 'from json',
                     apikey_scopes('[{"resource": "documents", "actions": ["read", "create"]}]')) \gset
SELECT (apikey_verify(:'t_json', '{documents:create}')).code AS create_ok,
       (apikey_verify(:'t_json', '{documents:delete}')).code AS delete_denied;
-- errors
SELECT apikey_scopes('{"resource": "documents", "actions": ["read"]}');
SELECT apikey_scopes('"documents:read"');
SELECT apikey_scopes('null');
SELECT apikey_scopes('["documents:read"]');
SELECT apikey_scopes('[{"resource": "documents", "actions": ["read"]}, 42]');
SELECT apikey_scopes('[{"actions": ["read"]}]');
SELECT apikey_scopes('[{"resource": 7, "actions": ["read"]}]');
SELECT apikey_scopes('[{"resource": "documents"}]');
SELECT apikey_scopes('[{"resource": "documents", "actions": []}]');
SELECT apikey_scopes('[{"resource": "documents", "actions": "read"}]');
SELECT apikey_scopes('[{"resource": "documents", "actions": ["read", 1]}]');
SELECT apikey_scopes('[{"resource": "documents", "actions": ["read", null]}]');
SELECT apikey_scopes('[{"resource": "documents", "actions": ["read"]}, {"resource": "Plugins", "actions": ["run"]}]');
SELECT apikey_scopes('[{"resource": "documents", "actions": ["read write"]}]');
SELECT apikey_scopes('[{"resource": "", "actions": ["read"]}]');
SELECT apikey_scopes('[{"resource": "docs:x", "actions": ["read"]}]');

-- ---------------------------------------------------------------------------
-- apikey_preset(name)
-- ---------------------------------------------------------------------------
SELECT p, apikey_preset(p) FROM unnest('{full,conversations,documents,plugins}'::text[]) AS p;
SELECT apikey_preset('admin');
SELECT apikey_preset('Full');
SELECT apikey_preset('');
-- a preset's grant in use
SELECT token AS t_preset FROM apikey_create('acme', 'plugins only', apikey_preset('plugins')) \gset
SELECT (apikey_verify(:'t_preset', '{plugins:execute}')).code AS execute,
       (apikey_verify(:'t_preset', '{plugins:install}')).code AS install;

-- ---------------------------------------------------------------------------
-- In a row-level security policy: a role sees only the rows whose grants
-- cover documents:read.  And in an expression index (needs IMMUTABLE).
-- ---------------------------------------------------------------------------
CREATE TABLE v2s_grants (id int PRIMARY KEY, label text, granted text[] NOT NULL);
INSERT INTO v2s_grants VALUES
    (1, 'full access',      '{}'),
    (2, 'documents:read',   '{documents:read}'),
    (3, 'documents:*',      '{documents:*}'),
    (4, 'plugins only',     '{plugins:execute}'),
    (5, '*:read',           '{*:read}'),
    (6, 'documents:create', '{documents:create,billing:view}');
CREATE INDEX v2s_grants_docs_read ON v2s_grants ((apikey_scope_matches(granted, 'documents:read')));
ALTER TABLE v2s_grants ENABLE ROW LEVEL SECURITY;
CREATE POLICY v2s_can_read ON v2s_grants FOR SELECT
    USING (apikey_scope_matches(granted, 'documents:read'));
CREATE ROLE v2s_reader;
GRANT SELECT ON v2s_grants TO v2s_reader;
-- PUBLIC may execute apikey_scope_matches: the policy works for any role
SELECT has_function_privilege('v2s_reader', 'apikey_scope_matches(text[], text)', 'EXECUTE');
SET ROLE v2s_reader;
SELECT id, label FROM v2s_grants ORDER BY id;
RESET ROLE;
-- the owner (superuser) is not subject to the policy
SELECT count(*) AS all_rows FROM v2s_grants;

DROP TABLE v2s_grants;
DROP ROLE v2s_reader;
DROP EXTENSION apikey CASCADE;
