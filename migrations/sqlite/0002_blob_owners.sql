-- Blobs stored before ownership was tracked belong to the accounts whose runs refer to them.
-- Idempotent, so a database on which the older, hand-rolled migration of the same name ran
-- gains nothing twice. `WHERE true` lets SQLite parse ON CONFLICT after a SELECT.
INSERT INTO blob_owners (account, sha256) SELECT DISTINCT runs.account, files.sha256
    FROM files JOIN runs ON runs.id = files.run_id WHERE true ON CONFLICT DO NOTHING;
-- The older code's record of applied migrations; `_sqlx_migrations` replaces it.
DROP TABLE IF EXISTS migrations;
