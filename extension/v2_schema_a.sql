-- ---------------------------------------------------------------------------
-- 1.0 -> 2.0, schema steps before the data moves.  Shared by the update
-- script and by the fresh 2.0 install, so that both end in the same catalog.
-- ---------------------------------------------------------------------------

-- The 1.0 API is replaced.
DROP VIEW apikey_activity;
DROP VIEW apikey_stats;
DROP FUNCTION apikey_generate(text, text, text, integer, timestamptz);
DROP FUNCTION apikey_verify(text, inet);
DROP FUNCTION apikey_deactivate(text);
DROP FUNCTION apikey_sweep_batch(integer);

-- Organization ownership, scopes, revocation and rotation.  Constant
-- defaults: no table rewrite, however many keys there are.
ALTER TABLE apikey_keys
    ADD COLUMN org_id         text,
    ADD COLUMN scopes         text[] NOT NULL DEFAULT '{}',
    ADD COLUMN metadata       jsonb  NOT NULL DEFAULT '{}',
    ADD COLUMN created_by     text,
    ADD COLUMN revoked_at     timestamptz,
    ADD COLUMN revoked_reason text,
    ADD COLUMN rotated_from   text,
    ADD COLUMN replaced_by    text;

-- The audit trail.  A downgrade to 1.0 keeps it, hence IF NOT EXISTS.
CREATE TABLE IF NOT EXISTS apikey_events (
    event_id bigserial   NOT NULL,
    at       timestamptz NOT NULL DEFAULT now(),
    org_id   text,
    key_id   text,
    event    text        NOT NULL,
    actor    text        NOT NULL,
    details  jsonb       NOT NULL DEFAULT '{}',
    CONSTRAINT apikey_events_pkey PRIMARY KEY (event_id)
);
CREATE INDEX IF NOT EXISTS apikey_events_key_id_idx ON apikey_events (key_id, event_id);
CREATE INDEX IF NOT EXISTS apikey_events_org_id_idx ON apikey_events (org_id, at);
COMMENT ON TABLE apikey_events IS 'Audit trail of every change to apikey_keys';
SELECT pg_catalog.pg_extension_config_dump('apikey_events', '');
SELECT pg_catalog.pg_extension_config_dump('apikey_events_event_id_seq', '');
