-- Row 6c, the floor of row 6: one small indexed INSERT per transaction, no
-- extension.  Every durable commit waits for its WAL flush, so this is as
-- fast as anything that writes one row per commit can be on this disk.
\set org random(1, 1000)
INSERT INTO bench_commit_floor (org_id, hash) VALUES ('org' || :org, sha256(random()::text::bytea));
